#include "server/ops/enroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/buf.h"
#include "common/cidr.h"
#include "common/ident.h"
#include "common/pki_key.h"
#include "common/timefmt.h"
#include "server/store/events.h"
#include "common/jsontext.h"

#define PEM_MAX (256 * 1024)

static enum kf_err new_code(char *code)
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return kf_fail(KF_E_CRYPTO, "cannot draw a random verification code");
    for (size_t i = 0; i < sizeof(raw); i++) {
        code[2 * i] = hex[raw[i] >> 4];
        code[2 * i + 1] = hex[raw[i] & 15];
    }
    code[2 * sizeof(raw)] = '\0';
    return KF_OK;
}

static enum kf_err check_networks(const char *networks, char *canon, size_t cap)
{
    struct kf_cidr_list l;
    enum kf_err rc;
    canon[0] = '\0';
    if (!networks) return KF_OK;
    rc = kf_cidr_parse_list(networks, &l);
    if (rc) return kf_wrap(rc, "--networks");
    return kf_cidr_format(&l, canon, cap);
}

/*
 * Resolves an allocation policy and hub as given (either may be NULL) into what the enrollment
 * gets: `policy` ("hashed" or "static", 16 bytes) and `hub` (KF_ID_MAX + 1; "" for hashed).
 * The hub's existence is checked in the write transaction (check_static_hub).
 */
static enum kf_err resolve_allocation(const char *allocation, const char *hub, char *policy,
                                      char *hub_out)
{
    char shown[96];
    enum kf_err rc;

    policy[0] = hub_out[0] = '\0';
    if (allocation && strcmp(allocation, "hashed") != 0 && strcmp(allocation, "static") != 0) {
        kf_text_quote(shown, sizeof(shown), allocation);
        return kf_fail(KF_E_USAGE, "allocation \"%s\" is unknown: it is hashed or static", shown);
    }
    if (allocation && strcmp(allocation, "hashed") == 0 && hub)
        return kf_fail(KF_E_USAGE,
                       "--hub names the hub of a static allocation; it does not go with "
                       "--allocation hashed");
    if (allocation && strcmp(allocation, "static") == 0 && !hub)
        return kf_fail(KF_E_USAGE, "static allocation needs a hub: give --hub NAME");
    if (hub) {
        rc = kf_id_check("hub name", hub);
        if (rc) return rc;
        snprintf(hub_out, KF_ID_MAX + 1, "%s", hub);
    }
    snprintf(policy, 16, "%s", hub ? "static" : "hashed");
    return KF_OK;
}

/* A static allocation's hub must exist when the enrollment names it. */
static enum kf_err check_static_hub(struct kf_txn *txn, const struct kf_enrollment_rec *e)
{
    struct kf_hub_rec h;
    enum kf_err rc;
    if (strcmp(e->allocation, "static") != 0) return KF_OK;
    rc = kf_txn_hub_get(txn, e->hub, &h);
    if (rc == KF_E_NOT_FOUND)
        return kf_fail(KF_E_NOT_FOUND,
                       "hub %s does not exist (keyfleet hub list shows the hubs; keyfleet hub add "
                       "makes one)",
                       e->hub);
    return rc;
}

struct add_write {
    const char *actor, *action;
    struct kf_enrollment_rec *e;
    const char *ca_fingerprint_unique; /* group: no other group may use this CA */
};

struct fp_search {
    const char *fp;
    char found[KF_ID_MAX + 1];
};

static enum kf_err find_fp_cb(const struct kf_enrollment_rec *e, void *arg)
{
    struct fp_search *s = arg;
    if (strcmp(e->key_fingerprint, s->fp) == 0) {
        snprintf(s->found, sizeof(s->found), "%s", e->id);
        return KF_E_EXISTS; /* stops the listing */
    }
    return KF_OK;
}

/* The SHA-256 of the key of keyfleet's CA `name` (KF_E_NOT_FOUND when there is none). */
static enum kf_err own_ca_key_fingerprint(struct kf_txn *txn, const char *name, char *fp)
{
    struct kf_ca_rec ca;
    struct kf_cert *cert = NULL;
    struct kf_key *key = NULL;
    enum kf_err rc = kf_txn_ca_get(txn, name, &ca);
    if (rc) return rc;
    rc = kf_cert_parse(ca.cert_pem, strlen(ca.cert_pem), &cert);
    if (!rc) rc = kf_cert_public_key(cert, &key);
    if (!rc) rc = kf_key_fingerprint(key, fp);
    kf_key_free(key);
    kf_cert_free(cert);
    kf_ca_rec_clear(&ca);
    return rc;
}

static enum kf_err add_cb(struct kf_txn *txn, void *arg)
{
    struct add_write *w = arg;
    char object[KF_OBJECT_MAX];
    char *detail;
    enum kf_err rc;

    if (w->ca_fingerprint_unique) {
        struct fp_search s = {w->ca_fingerprint_unique, ""};
        static const char *const own[] = {"root", "issuing"};
        /* keyfleet's own CAs sign operational certificates: never factory identities. */
        for (size_t i = 0; i < KF_ARRAY_LEN(own); i++) {
            char fp[KF_FINGERPRINT_HEX];
            rc = own_ca_key_fingerprint(txn, own[i], fp);
            if (rc == KF_E_NOT_FOUND) continue;
            if (rc) return rc;
            if (strcmp(fp, w->ca_fingerprint_unique) == 0)
                return kf_fail(KF_E_POLICY,
                               "that is keyfleet's own %s CA; a group enrollment names a "
                               "manufacturer's CA",
                               own[i]);
        }
        rc = kf_txn_enrollment_list(txn, KF_ENROLL_GROUP, find_fp_cb, &s);
        if (rc == KF_E_EXISTS)
            return kf_fail(KF_E_EXISTS, "group %s already uses this CA (same key)", s.found);
        if (rc) return rc;
    }
    rc = check_static_hub(txn, w->e);
    if (rc) return rc;
    rc = kf_txn_enrollment_insert(txn, w->e);
    if (rc == KF_E_EXISTS)
        return kf_fail(KF_E_EXISTS, "an enrollment named %s already exists", w->e->id);
    if (rc) return rc;
    snprintf(object, sizeof(object), "enrollment:%s", w->e->id);
    /* approval and require_binding appear when they differ from the defaults */
    detail = kf_jsontext_pack("{s:s, s:s, s:s, s:b, s:s?, s:s, s:s?, s:o*, s:o*}", "kind",
                              w->e->kind == KF_ENROLL_GROUP ? "group" : "individual", "subject",
                              w->e->subject ? w->e->subject : "", "key_fingerprint",
                              w->e->key_fingerprint, "enabled", w->e->enabled, "networks",
                              w->e->networks, "allocation", w->e->allocation, "hub",
                              w->e->hub[0] ? w->e->hub : NULL, "approval",
                              w->e->approval_manual ? json_string("manual") : NULL,
                              "require_binding", w->e->require_binding ? json_true() : NULL);
    rc = kf_txn_audit_append(txn, w->actor, w->action, object, detail);
    free(detail);
    return rc;
}

static enum kf_err cert_pem_of(const struct kf_cert *c, char **out)
{
    struct kf_buf pem;
    enum kf_err rc;
    kf_buf_init(&pem, PEM_MAX);
    rc = kf_cert_pem(c, &pem);
    *out = rc ? NULL : (char *)kf_buf_take(&pem, NULL);
    kf_buf_free(&pem);
    return rc;
}

enum kf_err kf_enroll_add(struct kf_deploy *d, const char *actor, const char *id,
                          const char *cert_path, const char *pubkey_path,
                          const struct kf_enroll_opts *opts)
{
    struct kf_enrollment_rec e;
    struct kf_cert *cert = NULL;
    struct kf_key *key = NULL;
    struct kf_buf pem;
    char cn[KF_ID_MAX + 2], subject[KF_NAME_MAX], nets[KF_CIDR_TEXT_MAX], when[KF_TIME_TEXT_MAX];
    struct add_write w;
    time_t now = time(NULL);
    enum kf_err rc;

    memset(&e, 0, sizeof(e));
    kf_buf_init(&pem, PEM_MAX);
    rc = kf_id_check("registration id", id);
    if (rc) return rc;
    if (!cert_path == !pubkey_path)
        return kf_fail(KF_E_USAGE, "give either a factory certificate or a public key");
    rc = check_networks(opts ? opts->networks : NULL, nets, sizeof(nets));
    if (!rc) rc = kf_enroll_approval_check(opts ? opts->approval : NULL);
    if (!rc)
        rc = resolve_allocation(opts ? opts->allocation : NULL, opts ? opts->hub : NULL,
                                e.allocation, e.hub);
    if (rc) return rc;
    if (cert_path) {
        rc = kf_cert_load_file(cert_path, &cert);
        if (rc) goto out;
        if (kf_cert_subject_cn(cert, cn, sizeof(cn)) != KF_OK) {
            rc = kf_fail(KF_E_POLICY,
                         "certificate %s has no subject CN; a factory certificate's "
                         "CN is its registration id",
                         cert_path);
            goto out;
        }
        if (strcmp(cn, id) != 0) {
            char shown_cn[96];
            kf_text_quote(shown_cn, sizeof(shown_cn), cn);
            rc = kf_fail(KF_E_POLICY,
                         "certificate %s has CN \"%s\", but the registration id is \"%s\"",
                         cert_path, shown_cn, id);
            goto out;
        }
        if (kf_cert_is_ca(cert)) {
            rc = kf_fail(KF_E_POLICY,
                         "certificate %s is a CA certificate; an individual "
                         "enrollment takes the device's own certificate (for a CA, "
                         "use a group enrollment)",
                         cert_path);
            goto out;
        }
        if (now > kf_cert_not_after(cert)) {
            kf_time_rfc3339(kf_cert_not_after(cert), when, sizeof(when));
            rc = kf_fail(KF_E_EXPIRED, "certificate %s expired on %s", cert_path, when);
            goto out;
        }
        if (now < kf_cert_not_before(cert)) {
            kf_time_rfc3339(kf_cert_not_before(cert), when, sizeof(when));
            rc = kf_fail(KF_E_NOT_YET_VALID, "certificate %s is not valid before %s", cert_path,
                         when);
            goto out;
        }
        rc = kf_cert_public_key(cert, &key);
        if (!rc) rc = cert_pem_of(cert, &e.cert_pem);
        if (rc) goto out;
        kf_cert_subject(cert, subject, sizeof(subject));
        e.subject = subject;
    } else {
        rc = kf_key_load_public_file(pubkey_path, &key);
        if (rc) goto out;
        rc = kf_key_public_pem(key, &pem);
        if (rc) goto out;
        e.pubkey_pem = (char *)kf_buf_str(&pem);
    }
    rc = kf_key_check_allowed(key, KF_KEY_ALLOWED_DEFAULT, KF_KEY_MIN_RSA_BITS,
                              cert_path ? "the certificate's key" : "the public key");
    if (rc) {
        kf_wrap(rc, "%s", cert_path ? cert_path : pubkey_path);
        goto out;
    }
    rc = kf_key_fingerprint(key, e.key_fingerprint);
    if (rc) goto out;
    snprintf(e.id, sizeof(e.id), "%s", id);
    e.kind = KF_ENROLL_INDIVIDUAL;
    e.enabled = !(opts && opts->disabled);
    e.approval_manual = opts && opts->approval && strcmp(opts->approval, "manual") == 0;
    e.require_binding = opts && opts->require_binding;
    e.verified = 1;
    e.networks = nets[0] ? nets : NULL;
    e.created = e.updated = now;
    w = (struct add_write){actor, "enrollment.add", &e, NULL};
    rc = kf_store_write(d->store, add_cb, &w);
    if (rc == KF_E_CONFLICT) kf_events_name_conflict(d->store, actor, id, "device", kf_errmsg());
out:
    free(cert ? e.cert_pem : NULL);
    kf_buf_free(&pem);
    kf_cert_free(cert);
    kf_key_free(key);
    return rc;
}

enum kf_err kf_enroll_group_create(struct kf_deploy *d, const char *actor, const char *name,
                                   const char *ca_path, const struct kf_enroll_opts *opts,
                                   char *code)
{
    struct kf_enrollment_rec e;
    struct kf_cert *ca = NULL;
    struct kf_key *key = NULL;
    char subject[KF_NAME_MAX], nets[KF_CIDR_TEXT_MAX];
    struct add_write w;
    time_t now = time(NULL);
    enum kf_err rc;

    memset(&e, 0, sizeof(e));
    code[0] = '\0';
    rc = kf_id_check("group name", name);
    if (!rc) rc = check_networks(opts ? opts->networks : NULL, nets, sizeof(nets));
    if (!rc) rc = kf_enroll_approval_check(opts ? opts->approval : NULL);
    if (!rc)
        rc = resolve_allocation(opts ? opts->allocation : NULL, opts ? opts->hub : NULL,
                                e.allocation, e.hub);
    if (rc) return rc;
    rc = kf_cert_load_file(ca_path, &ca);
    if (rc) return rc;
    rc = kf_cert_check_ca(ca, ca_path, now);
    if (!rc) rc = kf_cert_public_key(ca, &key);
    if (!rc) rc = kf_key_fingerprint(key, e.key_fingerprint);
    if (!rc) rc = cert_pem_of(ca, &e.cert_pem);
    if (!rc) rc = new_code(e.verification_code);
    if (rc) goto out;
    kf_cert_subject(ca, subject, sizeof(subject));
    snprintf(e.id, sizeof(e.id), "%s", name);
    e.kind = KF_ENROLL_GROUP;
    e.enabled = !(opts && opts->disabled);
    e.approval_manual = opts && opts->approval && strcmp(opts->approval, "manual") == 0;
    e.require_binding = opts && opts->require_binding;
    e.verified = 0;
    e.subject = subject;
    e.code_expires = now + KF_CODE_TTL;
    e.networks = nets[0] ? nets : NULL;
    e.created = e.updated = now;
    w = (struct add_write){actor, "enrollment.group.create", &e, e.key_fingerprint};
    rc = kf_store_write(d->store, add_cb, &w);
    if (!rc) snprintf(code, KF_CODE_MAX, "%s", e.verification_code);
out:
    free(e.cert_pem);
    kf_cert_free(ca);
    kf_key_free(key);
    return rc;
}

/* ---- changes to an existing enrollment ---- */

enum change_kind { CH_CODE, CH_VERIFY, CH_ENABLE, CH_DISABLE, CH_REMOVE };

struct change_write {
    const char *actor, *id;
    enum change_kind kind;
    const struct kf_cert *proof; /* CH_VERIFY */
    const char *proof_name;
    char code[KF_CODE_MAX]; /* CH_CODE: out */
    int changed;
};

static enum kf_err check_proof(const struct kf_enrollment_rec *e, const struct kf_cert *proof,
                               const char *proof_name, time_t now)
{
    struct kf_cert *ca = NULL;
    struct kf_key *ca_key = NULL;
    char cn[KF_CODE_MAX + 8], when[KF_TIME_TEXT_MAX];
    enum kf_err rc;

    if (e->verified) return kf_fail(KF_E_CONFLICT, "group %s is already verified", e->id);
    if (!e->verification_code[0] || now > e->code_expires) {
        kf_time_rfc3339(e->code_expires, when, sizeof(when));
        return kf_fail(KF_E_EXPIRED,
                       "the verification code of group %s expired on %s; get a new one with: "
                       "keyfleet enrollment group code --name %s",
                       e->id, when, e->id);
    }
    if (kf_cert_subject_cn(proof, cn, sizeof(cn)) != KF_OK)
        return kf_fail(KF_E_DENIED,
                       "certificate %s has no CN; its CN must be the verification "
                       "code of group %s",
                       proof_name, e->id);
    /* Compared in constant time: the code is a challenge, and guessing it must not pay. */
    if (strlen(cn) != strlen(e->verification_code) ||
        CRYPTO_memcmp(cn, e->verification_code, strlen(cn)) != 0) {
        char shown_cn[96];
        kf_text_quote(shown_cn, sizeof(shown_cn), cn);
        return kf_fail(KF_E_DENIED,
                       "certificate %s has CN \"%s\", which is not the verification code of "
                       "group %s",
                       proof_name, shown_cn, e->id);
    }
    rc = kf_cert_parse(e->cert_pem, strlen(e->cert_pem), &ca);
    if (!rc) rc = kf_cert_public_key(ca, &ca_key);
    if (rc) goto out;
    if (!kf_cert_signed_by(proof, ca_key)) {
        rc = kf_fail(KF_E_DENIED, "certificate %s is not signed by the key of group %s's CA",
                     proof_name, e->id);
        goto out;
    }
    if (now > kf_cert_not_after(proof) || now < kf_cert_not_before(proof)) {
        rc = kf_fail(KF_E_EXPIRED, "certificate %s is outside its validity period", proof_name);
        goto out;
    }
out:
    kf_key_free(ca_key);
    kf_cert_free(ca);
    return rc;
}

static enum kf_err change_cb(struct kf_txn *txn, void *arg)
{
    struct change_write *w = arg;
    struct kf_enrollment_rec e;
    char object[KF_OBJECT_MAX];
    const char *action = NULL;
    time_t now = time(NULL);
    enum kf_err rc;

    w->changed = 0;
    rc = kf_txn_enrollment_get(txn, w->id, &e);
    if (rc) return rc;
    switch (w->kind) {
    case CH_CODE:
    case CH_VERIFY:
        if (e.kind != KF_ENROLL_GROUP) {
            rc = kf_fail(KF_E_WRONG_TYPE, "enrollment %s is individual, not a group", w->id);
            goto out;
        }
        if (w->kind == CH_CODE) {
            if (e.verified) {
                rc = kf_fail(KF_E_CONFLICT, "group %s is already verified", w->id);
                goto out;
            }
            rc = new_code(e.verification_code);
            if (rc) goto out;
            e.code_expires = now + KF_CODE_TTL;
            snprintf(w->code, sizeof(w->code), "%s", e.verification_code);
            action = "enrollment.group.code";
        } else {
            rc = check_proof(&e, w->proof, w->proof_name, now);
            if (rc) goto out;
            e.verified = 1;
            e.verification_code[0] = '\0';
            e.code_expires = 0;
            action = "enrollment.group.verify";
        }
        break;
    case CH_ENABLE:
    case CH_DISABLE:
        if (e.enabled == (w->kind == CH_ENABLE)) goto out;
        e.enabled = w->kind == CH_ENABLE;
        action = e.enabled ? "enrollment.enable" : "enrollment.disable";
        break;
    case CH_REMOVE:
        rc = kf_txn_enrollment_delete(txn, w->id);
        if (rc) goto out;
        action = "enrollment.remove";
        break;
    }
    if (w->kind != CH_REMOVE) {
        e.updated = now;
        rc = kf_txn_enrollment_update(txn, &e);
        if (rc) goto out;
    }
    w->changed = 1;
    snprintf(object, sizeof(object), "enrollment:%s", w->id);
    rc = kf_txn_audit_append(txn, w->actor, action, object, "{}");
out:
    kf_enrollment_clear(&e);
    return rc;
}

static enum kf_err change(struct kf_deploy *d, struct change_write *w)
{
    enum kf_err rc = kf_id_check("enrollment id", w->id);
    if (rc) return rc;
    return kf_store_write(d->store, change_cb, w);
}

enum kf_err kf_enroll_group_code(struct kf_deploy *d, const char *actor, const char *name,
                                 char *code)
{
    struct change_write w = {actor, name, CH_CODE, NULL, NULL, "", 0};
    enum kf_err rc = change(d, &w);
    snprintf(code, KF_CODE_MAX, "%s", rc ? "" : w.code);
    return rc;
}

enum kf_err kf_enroll_group_verify(struct kf_deploy *d, const char *actor, const char *name,
                                   const char *cert_path)
{
    struct change_write w = {actor, name, CH_VERIFY, NULL, cert_path, "", 0};
    struct kf_cert *proof = NULL;
    enum kf_err rc = kf_cert_load_file(cert_path, &proof);
    if (rc) return rc;
    w.proof = proof;
    rc = change(d, &w);
    kf_cert_free(proof);
    return rc;
}

enum kf_err kf_enroll_set_enabled(struct kf_deploy *d, const char *actor, const char *id,
                                  int enabled, int *changed)
{
    struct change_write w = {actor, id, enabled ? CH_ENABLE : CH_DISABLE, NULL, NULL, "", 0};
    enum kf_err rc = change(d, &w);
    if (changed) *changed = w.changed;
    return rc;
}

/* ---- allocation and networks ---- */

struct update_write {
    const char *actor, *id;
    const char *policy;   /* NULL: unchanged; else "hashed" or "static" with `hub` */
    const char *hub;      /* "" for hashed */
    const char *networks; /* canonical; "": any; NULL: unchanged */
    int approval;         /* -1: unchanged, 0: auto, 1: manual */
    int binding;          /* -1: unchanged, 0, 1 */
    int changed;
};

static int text_differs(const char *a, const char *b)
{
    return !a != !b || (a && strcmp(a, b) != 0);
}

static enum kf_err update_cb(struct kf_txn *txn, void *arg)
{
    struct update_write *w = arg;
    struct kf_enrollment_rec e;
    char object[KF_OBJECT_MAX], *detail, *old_networks;
    int alloc_changed = 0, hub_changed = 0, nets_changed = 0, appr_changed = 0, bind_changed = 0;
    enum kf_err rc;

    w->changed = 0;
    rc = kf_txn_enrollment_get(txn, w->id, &e);
    if (rc) return rc;
    old_networks = e.networks;
    if (w->policy) {
        alloc_changed = strcmp(e.allocation, w->policy) != 0;
        hub_changed = strcmp(e.hub, w->hub) != 0;
        snprintf(e.allocation, sizeof(e.allocation), "%s", w->policy);
        snprintf(e.hub, sizeof(e.hub), "%s", w->hub);
        rc = check_static_hub(txn, &e);
        if (rc) goto out;
    }
    if (w->networks) {
        /* Borrowed from `w` until the record is written; put back before it is cleared. */
        e.networks = w->networks[0] ? (char *)w->networks : NULL;
        nets_changed = text_differs(old_networks, e.networks);
    }
    if (w->approval >= 0) {
        appr_changed = e.approval_manual != w->approval;
        e.approval_manual = w->approval;
    }
    if (w->binding >= 0) {
        bind_changed = e.require_binding != w->binding;
        e.require_binding = w->binding;
    }
    if (!alloc_changed && !hub_changed && !nets_changed && !appr_changed && !bind_changed) goto out;
    e.updated = time(NULL);
    rc = kf_txn_enrollment_update(txn, &e);
    if (rc) goto out;
    /* The detail holds what changed, with its new value (null: none). */
    detail = kf_jsontext_pack(
        "{s:o*, s:o*, s:o*, s:o*, s:o*}", "allocation",
        alloc_changed ? json_string(e.allocation) : NULL, "hub",
        hub_changed ? (e.hub[0] ? json_string(e.hub) : json_null()) : NULL, "networks",
        nets_changed ? (e.networks ? json_string(e.networks) : json_null()) : NULL, "approval",
        appr_changed ? json_string(e.approval_manual ? "manual" : "auto") : NULL, "require_binding",
        bind_changed ? json_boolean(e.require_binding) : NULL);
    snprintf(object, sizeof(object), "enrollment:%s", w->id);
    rc = kf_txn_audit_append(txn, w->actor, "enrollment.update", object, detail);
    free(detail);
    if (!rc) w->changed = 1;
out:
    e.networks = old_networks;
    kf_enrollment_clear(&e);
    return rc;
}

enum kf_err kf_enroll_update(struct kf_deploy *d, const char *actor, const char *id,
                             const struct kf_enroll_change *c, int *changed)
{
    struct update_write w = {actor, id, NULL, NULL, NULL, -1, -1, 0};
    char policy[16], hub[KF_ID_MAX + 1], nets[KF_CIDR_TEXT_MAX];
    enum kf_err rc;

    if (changed) *changed = 0;
    rc = kf_id_check("enrollment id", id);
    if (rc) return rc;
    if (!c || (!c->allocation && !c->hub && !c->networks && !c->any_network && !c->approval &&
               c->require_binding < 0))
        return kf_fail(KF_E_USAGE, "nothing to change: give --allocation, --hub, --networks, "
                                   "--any-network, --approval or --require-binding");
    if (c->approval) {
        rc = kf_enroll_approval_check(c->approval);
        if (rc) return rc;
        w.approval = strcmp(c->approval, "manual") == 0;
    }
    w.binding = c->require_binding;
    if (c->networks && c->any_network)
        return kf_fail(KF_E_USAGE, "give --networks or --any-network, not both");
    if (c->allocation || c->hub) {
        rc = resolve_allocation(c->allocation, c->hub, policy, hub);
        if (rc) return rc;
        w.policy = policy;
        w.hub = hub;
    }
    if (c->networks) {
        rc = check_networks(c->networks, nets, sizeof(nets));
        if (rc) return rc;
        w.networks = nets;
    } else if (c->any_network) {
        w.networks = "";
    }
    rc = kf_store_write(d->store, update_cb, &w);
    if (changed) *changed = rc ? 0 : w.changed;
    return rc;
}

enum kf_err kf_enroll_approval_check(const char *approval)
{
    char shown[64];
    if (!approval || strcmp(approval, "auto") == 0 || strcmp(approval, "manual") == 0) return KF_OK;
    kf_text_quote(shown, sizeof(shown), approval);
    return kf_fail(KF_E_USAGE, "approval \"%s\" is unknown: it is auto or manual", shown);
}

enum kf_err kf_enroll_remove(struct kf_deploy *d, const char *actor, const char *id)
{
    struct change_write w = {actor, id, CH_REMOVE, NULL, NULL, "", 0};
    return change(d, &w);
}

/* ---- approvals ---- */

struct decide_write {
    const char *actor, *id;
    int approve;
    struct kf_approval_rec a;
    int changed;
};

static enum kf_err decide_cb(struct kf_txn *txn, void *arg)
{
    struct decide_write *w = arg;
    enum kf_approval_state want = w->approve ? KF_APPROVAL_APPROVED : KF_APPROVAL_REJECTED;
    char object[KF_OBJECT_MAX], *detail;
    struct kf_event_rec ev;
    enum kf_err rc;

    w->changed = 0;
    rc = kf_txn_approval_get(txn, w->id, &w->a);
    if (rc == KF_E_NOT_FOUND)
        return kf_fail(KF_E_NOT_FOUND,
                       "device %s has not asked for approval (keyfleet enrollment pending lists "
                       "those that have)",
                       w->id);
    if (rc) return rc;
    if (w->a.state == want) return KF_OK;
    w->a.state = want;
    w->a.decided = time(NULL);
    snprintf(w->a.decided_by, sizeof(w->a.decided_by), "%s", w->actor);
    rc = kf_txn_approval_put(txn, &w->a);
    if (rc) return rc;
    snprintf(object, sizeof(object), "device:%s", w->id);
    detail = kf_jsontext_pack("{s:s, s:s, s:s}", "enrollment", w->a.enrollment, "key_fingerprint",
                              w->a.fingerprint, "ip", w->a.source_ip);
    rc = kf_txn_audit_append(txn, w->actor, w->approve ? "approval.approve" : "approval.reject",
                             object, detail);
    if (!rc) {
        memset(&ev, 0, sizeof(ev));
        ev.time_ms = kf_now_ms();
        snprintf(ev.type, sizeof(ev.type), "%s",
                 w->approve ? "provisioning.approved" : "provisioning.rejected");
        snprintf(ev.severity, sizeof(ev.severity), "%s", w->approve ? "info" : "warning");
        snprintf(ev.device, sizeof(ev.device), "%s", w->id);
        snprintf(ev.source, sizeof(ev.source), "server");
        ev.detail = detail;
        rc = kf_txn_event_insert(txn, &ev, NULL);
    }
    free(detail);
    if (!rc) w->changed = 1;
    return rc;
}

enum kf_err kf_enroll_decide(struct kf_deploy *d, const char *actor, const char *device_id,
                             int approve, struct kf_approval_rec *out, int *changed)
{
    struct decide_write w;
    enum kf_err rc = kf_id_check("device id", device_id);
    if (changed) *changed = 0;
    if (rc) return rc;
    memset(&w, 0, sizeof(w));
    w.actor = actor;
    w.id = device_id;
    w.approve = approve;
    rc = kf_store_write(d->store, decide_cb, &w);
    if (!rc && out) *out = w.a;
    if (!rc && changed) *changed = w.changed;
    return rc;
}
