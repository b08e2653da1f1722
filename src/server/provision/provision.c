#include "server/provision/provision.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/ident.h"
#include "common/log.h"
#include "common/pem.h"
#include "common/timefmt.h"
#include "server/ops/hub_assign.h"
#include "server/ca/ca.h"
#include "server/store/events.h"
#include "common/jsontext.h"

#define DAY 86400L

static enum kf_err refuse(struct kf_prov_refusal *ref, int status, enum kf_refusal reason,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum kf_err refuse(struct kf_prov_refusal *ref, int status, enum kf_refusal reason,
                          const char *fmt, ...)
{
    va_list ap;
    ref->status = status;
    ref->reason = reason;
    va_start(ap, fmt);
    vsnprintf(ref->message, sizeof(ref->message), fmt, ap);
    va_end(ap);
    return KF_E_DENIED;
}

static void sha256_hex(const void *data, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

/* SHA-256 of the DER of the first certificate in PEM text, without parsing it. */
static enum kf_err pem_cert_sha256(const char *pem, char *hex)
{
    char label[KF_PEM_LABEL_MAX];
    struct kf_buf der;
    size_t pos = 0;
    enum kf_err rc;
    kf_buf_init(&der, KF_CERT_FILE_MAX);
    rc = kf_pem_next(pem, strlen(pem), &pos, label, &der);
    if (!rc) sha256_hex(der.data, der.len, hex);
    kf_buf_free(&der);
    return rc;
}

/* What an enrollment decided for this device. */
struct verdict {
    char id[KF_ID_MAX + 1];
    int group; /* 0: individual */
    int enabled, verified;
    const struct kf_cidr_list *networks; /* NULL: any */
    struct kf_cidr_list individual_nets;
    char allocation[16];
    char hub[KF_ID_MAX + 1];
    int approval_manual, require_binding;
};

/* The individual enrollment for `id`, when the client's certificate is the one enrolled. */
static enum kf_err match_individual(const struct kf_enrollment_rec *e, const struct kf_cert *leaf,
                                    time_t now, struct verdict *v, struct kf_prov_refusal *ref)
{
    char got[KF_HASH_HEX], want[KF_HASH_HEX], when[KF_TIME_TEXT_MAX];

    if (e->cert_pem) {
        struct kf_buf der;
        kf_buf_init(&der, KF_CERT_FILE_MAX);
        if (kf_cert_der(leaf, &der) != KF_OK || pem_cert_sha256(e->cert_pem, want) != KF_OK) {
            kf_buf_free(&der);
            return kf_fail(KF_E_INTERNAL, "cannot compare with enrollment %s", e->id);
        }
        sha256_hex(der.data, der.len, got);
        kf_buf_free(&der);
        if (strcmp(got, want) != 0)
            return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                          "the client certificate is not the factory certificate enrolled for %s",
                          e->id);
    } else {
        struct kf_key *key = NULL;
        enum kf_err rc = kf_cert_public_key(leaf, &key);
        if (!rc) rc = kf_key_fingerprint(key, got);
        kf_key_free(key);
        if (rc) return rc;
        if (strcmp(got, e->key_fingerprint) != 0)
            return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                          "the client certificate's key is not the key enrolled for %s", e->id);
    }
    if (now > kf_cert_not_after(leaf)) {
        kf_time_rfc3339(kf_cert_not_after(leaf), when, sizeof(when));
        return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                      "the factory certificate of %s expired on %s", e->id, when);
    }
    if (now < kf_cert_not_before(leaf)) {
        kf_time_rfc3339(kf_cert_not_before(leaf), when, sizeof(when));
        return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                      "the factory certificate of %s is not valid before %s", e->id, when);
    }
    snprintf(v->id, sizeof(v->id), "%s", e->id);
    v->group = 0;
    v->enabled = e->enabled;
    v->verified = 1;
    if (e->networks && *e->networks) {
        if (kf_cidr_parse_list(e->networks, &v->individual_nets) != KF_OK)
            return kf_wrap(KF_E_INTERNAL, "enrollment %s has bad networks", e->id);
        v->networks = &v->individual_nets;
    }
    snprintf(v->allocation, sizeof(v->allocation), "%s", e->allocation);
    snprintf(v->hub, sizeof(v->hub), "%s", e->hub);
    v->approval_manual = e->approval_manual;
    v->require_binding = e->require_binding;
    return KF_OK;
}

static void take_group(const struct kf_reg_group *g, struct verdict *v)
{
    snprintf(v->id, sizeof(v->id), "%s", g->id);
    v->group = 1;
    v->enabled = g->enabled;
    v->verified = g->verified;
    v->networks = g->has_networks ? &g->networks : NULL;
    snprintf(v->allocation, sizeof(v->allocation), "%s", g->allocation);
    snprintf(v->hub, sizeof(v->hub), "%s", g->hub);
    v->approval_manual = g->approval_manual;
    v->require_binding = g->require_binding;
}

/* The group whose CA the factory chain reaches (eligible ones first, to say why otherwise). */
static enum kf_err match_group(struct kf_snapshot *reg, const struct kf_prov_input *in,
                               const char *id, time_t now, struct verdict *v,
                               struct kf_prov_refusal *ref)
{
    struct kf_verify_result res;
    const struct kf_reg_group *g;
    enum kf_err rc;

    rc = kf_trust_verify(reg->eligible, in->leaf, in->chain, in->n_chain, now, KF_PURPOSE_CLIENT,
                         &res);
    if (rc == KF_OK && (g = kf_snapshot_group(reg, res.anchor)) != NULL) {
        /*
         * A group vouches for devices, not for more CAs: a CA certificate under its CA could
         * sign "devices" of its own. (An individual enrollment pins its certificate exactly, so
         * a self-signed factory certificate with CA:TRUE is fine there.)
         */
        if (kf_cert_is_ca(in->leaf))
            return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                          "the factory certificate of %s is a CA certificate (basicConstraints "
                          "CA:TRUE); a device's factory certificate must be an end-entity one",
                          id);
        take_group(g, v);
        return KF_OK;
    }
    /* Not an eligible group: find out whether a disabled or unverified one would match. */
    rc = kf_trust_verify(reg->all_groups, in->leaf, in->chain, in->n_chain, now, KF_PURPOSE_CLIENT,
                         &res);
    if (rc == KF_OK && (g = kf_snapshot_group(reg, res.anchor)) != NULL) {
        take_group(g, v);
        return KF_OK; /* the caller refuses it for being disabled or unverified */
    }
    if (res.reason == KF_VERIFY_UNKNOWN_ISSUER)
        return refuse(ref, 404, KF_REFUSAL_ENROLLMENT_NOT_FOUND,
                      "no enrollment for registration id %s: none for the id itself, and its "
                      "certificate's chain reaches no group CA",
                      id);
    return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                  "the factory certificate of %s does not verify: %s", id, kf_errmsg());
}

/* What the store says about a device before a certificate is spent on it. */
struct known {
    int have_device;
    int name_taken;     /* no such device, and its id is a service's name */
    char name_why[256]; /* why, when name_taken */
    struct kf_device_rec device;
    int have_registration;
    struct kf_registration_rec registration;
};

static enum kf_err device_allowed(const struct known *k, const char *id,
                                  struct kf_prov_refusal *ref)
{
    if (!k->have_device) return KF_OK;
    if (k->device.status == KF_DEVICE_DISABLED)
        return refuse(ref, 403, KF_REFUSAL_DEVICE_DISABLED, "device %s is disabled", id);
    if (k->device.status == KF_DEVICE_REVOKED)
        return refuse(ref, 403, KF_REFUSAL_DEVICE_REVOKED, "device %s is revoked", id);
    return KF_OK;
}

/* The hub: the one it has when that still stands, else what the enrollment's policy gives. */
static void choose_hub(struct kf_snapshot *reg, const struct verdict *v, const struct known *k,
                       const char *id, struct kf_prov_job *job)
{
    if (k->have_registration && k->registration.hub[0]) {
        for (size_t i = 0; i < reg->n_hubs; i++) {
            const struct kf_hub_rec *h = &reg->hubs[i];
            if (strcmp(h->name, k->registration.hub) == 0 && h->enabled &&
                (strcmp(v->allocation, "static") != 0 || strcmp(v->hub, h->name) == 0)) {
                job->hub = *h;
                job->has_hub = 1;
                return;
            }
        }
    }
    if (kf_hub_assign(reg->hubs, reg->n_hubs, id, v->allocation[0] ? v->allocation : "hashed",
                      v->hub, &job->hub) == KF_OK)
        job->has_hub = 1;
    else
        kf_err_clear(); /* no hub to give: the device is provisioned without one */
}

static enum kf_err lookup(struct kf_store *store, const char *id, struct kf_enrollment_rec *e,
                          int *have_enrollment, struct known *k)
{
    struct kf_txn *txn = NULL;
    enum kf_err rc = kf_store_read(store, &txn), r;
    if (rc) return rc;
    *have_enrollment = 0;
    memset(k, 0, sizeof(*k));
    if (e) {
        r = kf_txn_enrollment_get(txn, id, e);
        if (r == KF_OK)
            *have_enrollment = 1;
        else if (r != KF_E_NOT_FOUND)
            rc = r;
    }
    r = rc ? rc : kf_txn_device_get(txn, id, &k->device);
    if (r == KF_OK) {
        k->have_device = 1;
    } else if (r != KF_E_NOT_FOUND) {
        rc = r;
    } else {
        r = kf_txn_name_free(txn, KF_NS_DEVICE, id);
        if (r == KF_E_CONFLICT) {
            k->name_taken = 1;
            snprintf(k->name_why, sizeof(k->name_why), "%s", kf_errmsg());
        } else if (r) {
            rc = r;
        }
    }
    r = rc ? rc : kf_txn_registration_get(txn, id, &k->registration);
    if (r == KF_OK)
        k->have_registration = 1;
    else if (r != KF_E_NOT_FOUND)
        rc = r;
    kf_txn_end(txn);
    kf_err_clear();
    return rc;
}

/*
 * A device belongs to the enrollment that created it: another enrollment's factory identity for
 * the same id would otherwise take it over (its certificate, its commands, its place). Moving a
 * device is an operator's act (kf_fleet_move).
 */
static enum kf_err owned_by(const struct known *k, const char *id, const char *enrollment,
                            struct kf_prov_refusal *ref)
{
    if (!k->have_device || strcmp(k->device.enrollment, enrollment) == 0) return KF_OK;
    if (!k->device.enrollment[0])
        return refuse(ref, 409, KF_REFUSAL_ENROLLED_ELSEWHERE,
                      "device %s belongs to no enrollment (it was enrolled by hand, or its "
                      "enrollment was removed), so enrollment %s may not provision it; an "
                      "operator can move it: keyfleet device move %s --enrollment %s",
                      id, enrollment, id, enrollment);
    return refuse(ref, 409, KF_REFUSAL_ENROLLED_ELSEWHERE,
                  "device %s belongs to enrollment %s, so enrollment %s may not provision it; an "
                  "operator can move it: keyfleet device move %s --enrollment %s",
                  id, k->device.enrollment, enrollment, id, enrollment);
}

/* Who is asking for a first certificate, from its factory certificate. */
static enum kf_err identify_factory(struct kf_snapshot *reg, struct kf_store *store,
                                    const struct kf_prov_input *in, time_t now, struct verdict *v,
                                    struct known *k, struct kf_prov_refusal *ref)
{
    char cn[KF_ID_MAX + 2], shown[96];
    struct kf_enrollment_rec e;
    int have = 0;
    enum kf_err rc;

    if (kf_cert_subject_cn(in->leaf, cn, sizeof(cn)) != KF_OK)
        return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                      "the client certificate has no usable CN; a factory certificate's CN is "
                      "the device's registration id");
    if (kf_id_check("registration id", cn) != KF_OK) {
        kf_text_quote(shown, sizeof(shown), cn);
        return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                      "the client certificate's CN \"%s\" is not a registration id: %s", shown,
                      kf_errmsg());
    }
    memset(&e, 0, sizeof(e));
    rc = lookup(store, cn, &e, &have, k);
    if (rc) return rc;
    if (have && e.kind == KF_ENROLL_INDIVIDUAL)
        rc = match_individual(&e, in->leaf, now, v, ref);
    else
        rc = match_group(reg, in, cn, now, v, ref);
    kf_enrollment_clear(&e);
    if (rc) return rc;
    rc = owned_by(k, cn, v->id, ref);
    if (rc) return rc;
    if (k->name_taken)
        return refuse(ref, 409, KF_REFUSAL_NAME_CONFLICT, "registration id %s", k->name_why);
    if (!v->enabled)
        return refuse(ref, 403, KF_REFUSAL_ENROLLMENT_DISABLED, "enrollment %s is disabled", v->id);
    if (!v->verified)
        return refuse(ref, 403, KF_REFUSAL_GROUP_UNVERIFIED,
                      "group %s has not proven possession of its CA's key yet", v->id);
    ref->verified = 1; /* an enrollment that may provision vouches for the id */
    if (v->networks && !kf_cidr_match(v->networks, in->ip))
        return refuse(ref, 403, KF_REFUSAL_NETWORK_DENIED,
                      "source address %s is outside the networks enrollment %s allows", in->ip,
                      v->id);
    return device_allowed(k, cn, ref);
}

/* Who is asking to renew, from its current operational certificate. */
static enum kf_err identify_operational(struct kf_snapshot *reg, struct kf_store *store,
                                        const struct kf_prov_input *in, time_t now,
                                        struct kf_prov_job *job, struct known *k,
                                        struct kf_prov_refusal *ref)
{
    struct kf_verify_result res;
    char id[KF_ID_MAX + 2], cn[KF_ID_MAX + 2];
    int have = 0;
    enum kf_err rc;

    rc = kf_trust_verify(reg->operational, in->leaf, in->chain, in->n_chain, now, KF_PURPOSE_CLIENT,
                         &res);
    if (rc == KF_E_REVOKED)
        return refuse(ref, 403, KF_REFUSAL_CERTIFICATE_REVOKED,
                      "the client certificate is revoked");
    if (rc)
        return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                      "re-enrollment needs a current certificate from this keyfleet: %s",
                      kf_errmsg());
    if (kf_cert_uri_san(in->leaf, KF_URN_DEVICE, id, sizeof(id)) != KF_OK ||
        kf_cert_subject_cn(in->leaf, cn, sizeof(cn)) != KF_OK || strcmp(cn, id) != 0 ||
        kf_id_check("device id", id) != KF_OK)
        return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                      "the client certificate is not a device certificate of this keyfleet");
    memcpy(job->device_id, id, strlen(id) + 1); /* an id: at most KF_ID_MAX characters */
    kf_cert_serial_hex(in->leaf, job->old_serial);
    rc = lookup(store, id, NULL, &have, k);
    if (rc) return rc;
    if (!k->have_device)
        return refuse(ref, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                      "device %s is not known to this keyfleet", id);
    ref->verified = 1;
    if (k->have_registration)
        snprintf(job->enrollment, sizeof(job->enrollment), "%s", k->registration.enrollment);
    else
        snprintf(job->enrollment, sizeof(job->enrollment), "%s", k->device.enrollment);
    return device_allowed(k, id, ref);
}

/*
 * Proof of possession (RFC 7030 3.5): a challengePassword must be this connection's channel
 * binding, so that a CSR made on (or for) another connection is refused, not ignored; keyfleet
 * takes no passwords. `required`: the enrollment wants it in every request.
 */
static enum kf_err check_binding(const struct kf_prov_input *in, const char *enrollment,
                                 int required, struct kf_prov_refusal *ref)
{
    const char *got = kf_csr_challenge(in->csr), *kind = in->binding_kind ? in->binding_kind : "";
    if (!got && !required) return KF_OK;
    if (!got)
        return refuse(ref, 400, KF_REFUSAL_CSR_REJECTED,
                      "enrollment %s requires proof of possession: the CSR's challengePassword "
                      "must be this TLS connection's %s channel binding, base64 (RFC 7030 3.5%s)",
                      enrollment, kind, strcmp(kind, "tls-exporter") == 0 ? ", RFC 9266" : "");
    if (!in->binding)
        return refuse(ref, 500, KF_REFUSAL_INTERNAL_ERROR,
                      "cannot derive this connection's channel binding");
    if (strlen(got) != strlen(in->binding) || CRYPTO_memcmp(got, in->binding, strlen(got)) != 0)
        return refuse(ref, 400, KF_REFUSAL_CSR_REJECTED,
                      "the CSR's challengePassword is not this TLS connection's %s channel "
                      "binding (RFC 7030 3.5): a CSR made for another connection is refused, and "
                      "keyfleet takes no passwords",
                      kind);
    return KF_OK;
}

static enum kf_err check_csr(const struct kf_prov_input *in, const char *id,
                             struct kf_prov_refusal *ref)
{
    struct kf_csr_policy p;
    char cn[KF_ID_MAX + 2], shown[96];

    if (in->kind == KF_PROV_SIMPLEREENROLL && kf_csr_subject_cn(in->csr, cn, sizeof(cn)) == KF_OK &&
        strcmp(cn, id) != 0) {
        kf_text_quote(shown, sizeof(shown), cn);
        return refuse(ref, 409, KF_REFUSAL_SUBJECT_MISMATCH,
                      "the CSR asks for \"%s\", but this certificate belongs to device %s: "
                      "re-enrollment keeps the subject",
                      shown, id);
    }
    kf_csr_policy_default(&p);
    p.expected_cn = id;
    /*
     * First enrollment: O and OU may come (EST clients fill them in from a template), and the
     * certificate carries O=<deployment> and CN=<id> whatever they said. Re-enrollment: the
     * subject of the certificate being renewed, exactly (RFC 7030 4.2.2), or CN alone.
     */
    if (in->kind == KF_PROV_SIMPLEREENROLL)
        p.renewing = in->leaf;
    else
        p.allow_org_units = 1;
    if (kf_csr_check(in->csr, &p, NULL) != KF_OK)
        return refuse(ref, 400, KF_REFUSAL_CSR_REJECTED, "%s", kf_errmsg());
    return KF_OK;
}

static enum kf_err sign(struct kf_snapshot *reg, struct kf_signer *signer,
                        const struct kf_prov_input *in, time_t now, struct kf_prov_job *job)
{
    struct kf_sign_request r;
    struct kf_buf spki;
    enum kf_err rc;

    kf_buf_init(&spki, KF_SPKI_MAX);
    rc = kf_csr_spki(in->csr, &spki);
    if (rc) goto out;
    memset(&r, 0, sizeof(r));
    r.profile = KF_PROFILE_DEVICE;
    r.spki = spki.data;
    r.spki_len = spki.len;
    r.cn = job->device_id;
    r.device_id = job->device_id;
    r.org = reg->cfg.deployment.name;
    r.not_before = now - 60;
    r.not_after =
        now + (reg->cfg.ca.device_cert_minutes ? (time_t)reg->cfg.ca.device_cert_minutes * 60
                                               : (time_t)reg->cfg.ca.device_cert_days * DAY);
    rc = kf_signer_issue(signer, &r, &job->cert);
    if (!rc)
        rc = kf_ca_cert_record(job->cert, KF_PROFILE_DEVICE, "issuing", job->device_id, &job->rec);
    /* Renew at two thirds of the life. */
    job->renew_after = r.not_before + (r.not_after - r.not_before) * 2 / 3;
out:
    kf_buf_free(&spki);
    return rc;
}

/*
 * An enrollment with approval manual: a new device gets its certificate once an operator has
 * approved it, for the factory key that asked. Until then the request is held (job->pending:
 * the store callback records it and the answer is 202); a rejected one is refused; another key
 * asking for an id already held is refused too, so that nobody can slip in behind a request.
 */
static enum kf_err held(struct kf_store *store, const struct kf_prov_input *in,
                        const struct verdict *v, struct kf_prov_job *job,
                        struct kf_prov_refusal *ref)
{
    struct kf_approval_rec a;
    struct kf_txn *txn = NULL;
    struct kf_key *key = NULL;
    enum kf_err rc = kf_cert_public_key(in->leaf, &key);
    if (!rc) rc = kf_key_fingerprint(key, job->fingerprint);
    kf_key_free(key);
    if (!rc) rc = kf_store_read(store, &txn);
    if (rc) return rc;
    rc = kf_txn_approval_get(txn, job->device_id, &a);
    kf_txn_end(txn);
    if (rc == KF_E_NOT_FOUND) {
        kf_err_clear();
        job->pending = 1;
        return KF_OK;
    }
    if (rc) return rc;
    ref->verified = 1;
    if (strcmp(a.fingerprint, job->fingerprint) != 0)
        return refuse(ref, 409, KF_REFUSAL_APPROVAL_CONFLICT,
                      "device %s waits for approval (or was decided) with another factory key; "
                      "an operator rejects that one first: keyfleet enrollment reject %s",
                      job->device_id, job->device_id);
    if (a.state == KF_APPROVAL_REJECTED)
        return refuse(ref, 403, KF_REFUSAL_APPROVAL_REJECTED,
                      "device %s was rejected by %s; enrollment %s will not provision it",
                      job->device_id, a.decided_by[0] ? a.decided_by : "an operator", v->id);
    if (a.state == KF_APPROVAL_PENDING) job->pending = 1;
    return KF_OK;
}

/* The audit record `action` on `object`, and an info event `type` for the job's device, with
 * the same detail, in the job's transaction. */
static enum kf_err audit_and_event(struct kf_txn *txn, const char *action, const char *object,
                                   char *detail, const char *type, const struct kf_prov_job *job)
{
    struct kf_event_rec ev;
    enum kf_err rc = kf_txn_audit_append(txn, KF_PROV_ACTOR, action, object, detail);
    if (rc) return rc;
    memset(&ev, 0, sizeof(ev));
    ev.time_ms = kf_now_ms();
    snprintf(ev.type, sizeof(ev.type), "%s", type);
    snprintf(ev.severity, sizeof(ev.severity), "info");
    snprintf(ev.device, sizeof(ev.device), "%s", job->device_id);
    snprintf(ev.source, sizeof(ev.source), "server");
    snprintf(ev.ip, sizeof(ev.ip), "%s", job->ip);
    ev.detail = detail;
    return kf_txn_event_insert(txn, &ev, NULL);
}

/* The store callback of a held request: the approval asked for, recorded (bounded). */
static enum kf_err hold_cb(struct kf_txn *txn, struct kf_prov_job *job, time_t now)
{
    struct kf_approval_rec a;
    char object[KF_OBJECT_MAX], *detail;
    int64_t n = 0;
    enum kf_err rc = kf_txn_approval_get(txn, job->device_id, &a);

    if (rc == KF_OK) {
        if (strcmp(a.fingerprint, job->fingerprint) != 0 || a.state != KF_APPROVAL_PENDING) {
            /* decided, or asked by another key, since the decision: the next request says */
            return KF_OK;
        }
        a.last_request = now;
        a.requests++;
        snprintf(a.source_ip, sizeof(a.source_ip), "%s", job->ip);
        return kf_txn_approval_put(txn, &a);
    }
    if (rc != KF_E_NOT_FOUND) return rc;
    kf_err_clear();
    rc = kf_txn_approval_count(txn, KF_APPROVAL_PENDING, &n);
    if (rc) return rc;
    if (n >= KF_APPROVALS_PENDING_MAX) {
        refuse(&job->refusal, 503, KF_REFUSAL_OVERLOADED,
               "%lld devices wait for approval already, the most keyfleet holds; decide some "
               "first (keyfleet enrollment pending)",
               (long long)n);
        job->refused = 1;
        return kf_fail(KF_E_DENIED, "%s", job->refusal.message);
    }
    memset(&a, 0, sizeof(a));
    snprintf(a.device_id, sizeof(a.device_id), "%s", job->device_id);
    snprintf(a.enrollment, sizeof(a.enrollment), "%s", job->enrollment);
    a.state = KF_APPROVAL_PENDING;
    snprintf(a.fingerprint, sizeof(a.fingerprint), "%s", job->fingerprint);
    snprintf(a.source_ip, sizeof(a.source_ip), "%s", job->ip);
    a.requested = a.last_request = now;
    a.requests = 1;
    rc = kf_txn_approval_put(txn, &a);
    if (rc) return rc;
    snprintf(object, sizeof(object), "device:%s", job->device_id);
    detail = kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "device", job->device_id, "enrollment",
                              job->enrollment, "key_fingerprint", job->fingerprint, "ip", job->ip);
    rc = audit_and_event(txn, "approval.request", object, detail, "provisioning.pending", job);
    free(detail);
    return rc;
}

enum kf_err kf_prov_decide(struct kf_snapshot *reg, struct kf_store *store,
                           struct kf_signer *signer, const struct kf_prov_input *in, time_t now,
                           struct kf_prov_job **out, struct kf_prov_refusal *ref)
{
    struct kf_prov_job *job;
    struct verdict v;
    struct known k;
    enum kf_err rc;

    *out = NULL;
    memset(ref, 0, sizeof(*ref));
    if (!in->leaf)
        return refuse(ref, 401, KF_REFUSAL_CLIENT_CERTIFICATE_REQUIRED,
                      "this endpoint needs a client certificate: the device's %s certificate",
                      in->kind == KF_PROV_SIMPLEREENROLL ? "current" : "factory");
    job = calloc(1, sizeof(*job));
    if (!job) return kf_fail(KF_E_NOMEM, "out of memory");
    job->kind = in->kind;
    snprintf(job->ip, sizeof(job->ip), "%s", in->ip);
    memset(&v, 0, sizeof(v));
    if (in->kind == KF_PROV_SIMPLEREENROLL) {
        rc = identify_operational(reg, store, in, now, job, &k, ref);
    } else {
        rc = identify_factory(reg, store, in, now, &v, &k, ref);
        if (!rc) {
            kf_cert_subject_cn(in->leaf, job->device_id, sizeof(job->device_id));
            snprintf(job->enrollment, sizeof(job->enrollment), "%s", v.id);
        }
    }
    if (!rc && in->label && strcmp(in->label, job->enrollment) != 0)
        rc = refuse(ref, 404, KF_REFUSAL_ENROLLMENT_NOT_FOUND,
                    "device %s is not of group %s, the CA label this request came under (it "
                    "belongs to enrollment %s)",
                    job->device_id, in->label, job->enrollment[0] ? job->enrollment : "none");
    if (!rc) rc = check_csr(in, job->device_id, ref);
    if (!rc) {
        int required = v.require_binding;
        if (in->kind == KF_PROV_SIMPLEREENROLL) {
            const struct kf_reg_group *g = kf_snapshot_group_named(reg, job->enrollment);
            required = g && g->require_binding;
        }
        rc = check_binding(in, job->enrollment, required, ref);
    }
    if (rc) goto fail;
    if (in->kind == KF_PROV_SIMPLEREENROLL) {
        struct verdict keep;
        memset(&keep, 0, sizeof(keep));
        snprintf(keep.allocation, sizeof(keep.allocation), "hashed");
        choose_hub(reg, &keep, &k, job->device_id, job);
    } else {
        choose_hub(reg, &v, &k, job->device_id, job);
    }
    if (!rc && in->kind != KF_PROV_SIMPLEREENROLL && v.approval_manual && !k.have_device) {
        rc = held(store, in, &v, job, ref);
        if (rc || job->pending) goto held_out;
    }
    rc = sign(reg, signer, in, now, job);
    if (rc == KF_E_POLICY || rc == KF_E_INVALID || rc == KF_E_MALFORMED || rc == KF_E_DENIED ||
        rc == KF_E_UNSUPPORTED) {
        /* The signer checks every request again: its refusal is the CSR's, in its words. */
        rc = refuse(ref, 400, KF_REFUSAL_CSR_REJECTED, "%s", kf_errmsg());
    }
    if (rc) goto fail;
held_out:
    if (rc) goto fail;
    job->req.cb = kf_prov_write_cb;
    job->req.arg = job;
    *out = job;
    return KF_OK;
fail:
    kf_prov_job_free(job);
    return rc;
}

void kf_prov_job_free(struct kf_prov_job *job)
{
    if (!job) return;
    kf_cert_free(job->cert);
    kf_cert_rec_clear(&job->rec);
    free(job);
}

static const char *kind_name(enum kf_prov_kind k)
{
    switch (k) {
    case KF_PROV_SIMPLEENROLL: return "simpleenroll";
    case KF_PROV_SIMPLEREENROLL: return "simplereenroll";
    case KF_PROV_REGISTER: return "register";
    }
    return "?";
}

enum kf_err kf_prov_write_cb(struct kf_txn *txn, void *arg)
{
    struct kf_prov_job *job = arg;
    struct kf_device_rec dev;
    struct kf_registration_rec reg;
    char object[KF_OBJECT_MAX], when[KF_TIME_TEXT_MAX];
    char *detail;
    time_t now = time(NULL);
    enum kf_err rc;

    job->refused = 0;
    job->new_device = 0;
    if (job->pending) return hold_cb(txn, job, now);
    /* The presented certificate, for a renewal: revoked since the decision? */
    if (job->kind == KF_PROV_SIMPLEREENROLL) {
        struct kf_cert_rec old;
        rc = kf_txn_cert_get(txn, job->old_serial, &old);
        if (rc == KF_E_NOT_FOUND) {
            refuse(&job->refusal, 401, KF_REFUSAL_CERTIFICATE_INVALID,
                   "certificate %s is not known to this keyfleet", job->old_serial);
            goto refused;
        }
        if (rc) return rc;
        if (old.status == KF_CERT_REVOKED || strcmp(old.device_id, job->device_id) != 0) {
            kf_cert_rec_clear(&old);
            refuse(&job->refusal, 403, KF_REFUSAL_CERTIFICATE_REVOKED, "certificate %s is revoked",
                   job->old_serial);
            goto refused;
        }
        kf_cert_rec_clear(&old);
    }
    /* The device, checked again inside the transaction. */
    rc = kf_txn_device_get(txn, job->device_id, &dev);
    if (rc == KF_E_NOT_FOUND && job->kind != KF_PROV_SIMPLEREENROLL) {
        memset(&dev, 0, sizeof(dev));
        snprintf(dev.id, sizeof(dev.id), "%s", job->device_id);
        snprintf(dev.enrollment, sizeof(dev.enrollment), "%s", job->enrollment);
        snprintf(dev.hub, sizeof(dev.hub), "%s", job->has_hub ? job->hub.name : "");
        dev.status = KF_DEVICE_ACTIVE;
        dev.created = dev.updated = now;
        rc = kf_txn_device_insert(txn, &dev);
        if (rc == KF_E_CONFLICT) {
            /* A service took the name since the decision. */
            refuse(&job->refusal, 409, KF_REFUSAL_NAME_CONFLICT, "registration id %s", kf_errmsg());
            goto refused;
        }
        if (rc) return rc;
        job->new_device = 1;
    } else if (rc) {
        return rc;
    } else if (dev.status != KF_DEVICE_ACTIVE) {
        int disabled = dev.status == KF_DEVICE_DISABLED;
        job->refusal.verified = 1;
        refuse(&job->refusal, 403,
               disabled ? KF_REFUSAL_DEVICE_DISABLED : KF_REFUSAL_DEVICE_REVOKED, "device %s is %s",
               job->device_id, disabled ? "disabled" : "revoked");
        goto refused;
    } else if (job->kind != KF_PROV_SIMPLEREENROLL &&
               strcmp(dev.enrollment, job->enrollment) != 0) {
        /* Moved, or made by another enrollment, since the decision. */
        struct known k;
        memset(&k, 0, sizeof(k));
        k.have_device = 1;
        k.device = dev;
        owned_by(&k, job->device_id, job->enrollment, &job->refusal);
        goto refused;
    } else {
        const char *hub = job->has_hub ? job->hub.name : dev.hub;
        if (strcmp(dev.hub, hub) != 0) {
            snprintf(dev.hub, sizeof(dev.hub), "%s", hub);
            dev.updated = now;
            rc = kf_txn_device_update(txn, &dev);
            if (rc) return rc;
        }
    }
    rc = kf_txn_cert_insert(txn, &job->rec);
    if (rc) return rc;

    /* The registration: what a device that registers again is answered from. */
    rc = kf_txn_registration_get(txn, job->device_id, &reg);
    if (rc == KF_E_NOT_FOUND) {
        memset(&reg, 0, sizeof(reg));
        snprintf(reg.device_id, sizeof(reg.device_id), "%s", job->device_id);
        reg.first_at = now;
    } else if (rc) {
        return rc;
    }
    if (job->kind != KF_PROV_SIMPLEREENROLL)
        snprintf(reg.enrollment, sizeof(reg.enrollment), "%s", job->enrollment);
    snprintf(reg.hub, sizeof(reg.hub), "%s", dev.hub);
    snprintf(reg.cert_serial, sizeof(reg.cert_serial), "%s", job->rec.serial);
    snprintf(reg.source_ip, sizeof(reg.source_ip), "%s", job->ip);
    reg.last_at = now;
    reg.renew_after = job->renew_after;
    reg.count++;
    rc = kf_txn_registration_put(txn, &reg);
    if (rc) return rc;

    kf_time_rfc3339(job->rec.not_after, when, sizeof(when));
    snprintf(object, sizeof(object), "cert:%s", job->rec.serial);
    detail =
        kf_jsontext_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "device", job->device_id,
                         "enrollment", job->enrollment, "kind", kind_name(job->kind), "ip", job->ip,
                         "not_after", when, "hub", dev.hub, "new_device", job->new_device);
    rc = audit_and_event(txn, "cert.issue", object, detail, "provisioning.assigned", job);
    free(detail);
    return rc;
refused:
    job->refused = 1;
    return kf_fail(KF_E_DENIED, "%s", job->refusal.message);
}

/* ---- refusal events, not waited for ---- */

void kf_prov_event_denied(struct kf_events *events, const struct kf_prov_refusal *ref,
                          const char *id, const char *ip)
{
    /* Another enrollment's identity for a device: a takeover, unless an operator erred. */
    const char *severity = ref->reason == KF_REFUSAL_ENROLLED_ELSEWHERE ? "critical" : "warning";
    struct kf_event_who who = {ref->verified ? id : NULL, ref->verified ? NULL : id, ip};
    kf_events_note(events, "provisioning.denied", severity, kf_refusal_name(ref->reason), &who,
                   kf_jsontext_pack("{s:s, s:s, s:s, s:i}", "reason", kf_refusal_name(ref->reason),
                                    "id", id ? id : "", "message", ref->message, "status",
                                    ref->status));
}
