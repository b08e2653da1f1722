#include "server/ca/ca.h"
#include "server/store/events.h"
#include "common/jsontext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/timefmt.h"

#define PEM_MAX (256 * 1024)
#define DAY     86400L

enum kf_err kf_ca_cert_record(const struct kf_cert *cert, enum kf_profile profile,
                              const char *issuer, const char *device_id, struct kf_cert_rec *r)
{
    char subject[KF_NAME_MAX];
    struct kf_buf pem;
    enum kf_err rc;

    memset(r, 0, sizeof(*r));
    kf_buf_init(&pem, PEM_MAX);
    rc = kf_cert_pem(cert, &pem);
    if (rc) return rc;
    kf_cert_serial_hex(cert, r->serial);
    snprintf(r->device_id, sizeof(r->device_id), "%s", device_id ? device_id : "");
    snprintf(r->profile, sizeof(r->profile), "%s", kf_profile_name(profile));
    snprintf(r->issuer, sizeof(r->issuer), "%s", issuer);
    kf_cert_subject(cert, subject, sizeof(subject));
    r->subject = strdup(subject);
    r->not_before = kf_cert_not_before(cert);
    r->not_after = kf_cert_not_after(cert);
    r->status = KF_CERT_VALID;
    kf_cert_fingerprint(cert, r->fingerprint);
    r->pem = (char *)kf_buf_take(&pem, NULL);
    r->created = time(NULL);
    if (!r->subject || !r->pem) {
        kf_cert_rec_clear(r);
        return kf_fail(KF_E_NOMEM, "out of memory");
    }
    return KF_OK;
}

/* ---- issue ---- */

struct issue_write {
    const char *actor, *device_id, *enrollment;
    const struct kf_cert_rec *rec;
};

static enum kf_err device_usable(struct kf_txn *txn, const char *id, int *exists)
{
    struct kf_device_rec dev;
    enum kf_err rc = kf_txn_device_get(txn, id, &dev);
    *exists = 0;
    if (rc == KF_E_NOT_FOUND) return kf_txn_name_free(txn, KF_NS_DEVICE, id);
    if (rc) return rc;
    *exists = 1;
    if (dev.status == KF_DEVICE_DISABLED)
        return kf_fail(KF_E_DISABLED, "device %s is disabled (keyfleet device enable %s)", id, id);
    if (dev.status == KF_DEVICE_REVOKED)
        return kf_fail(KF_E_REVOKED, "device %s is revoked; revocation is final", id);
    return KF_OK;
}

static enum kf_err issue_write_cb(struct kf_txn *txn, void *arg)
{
    struct issue_write *w = arg;
    char object[KF_OBJECT_MAX], when[KF_TIME_TEXT_MAX];
    char *detail;
    int exists;
    enum kf_err rc;

    /* Checked again inside the transaction: the device may have changed since the signing. */
    rc = device_usable(txn, w->device_id, &exists);
    if (rc) return rc;
    if (!exists) {
        struct kf_device_rec d;
        memset(&d, 0, sizeof(d));
        snprintf(d.id, sizeof(d.id), "%s", w->device_id);
        snprintf(d.enrollment, sizeof(d.enrollment), "%s", w->enrollment ? w->enrollment : "");
        d.status = KF_DEVICE_ACTIVE;
        d.created = d.updated = time(NULL);
        rc = kf_txn_device_insert(txn, &d);
        if (rc) return rc;
    }
    rc = kf_txn_cert_insert(txn, w->rec);
    if (rc) return rc;
    kf_time_rfc3339(w->rec->not_after, when, sizeof(when));
    snprintf(object, sizeof(object), "cert:%s", w->rec->serial);
    detail = kf_jsontext_pack("{s:s, s:s, s:s, s:b}", "device", w->device_id, "profile", "device",
                              "not_after", when, "new_device", !exists);
    rc = kf_txn_audit_append(txn, w->actor, "cert.issue", object, detail);
    free(detail);
    return rc;
}

enum kf_err kf_ca_check_request(const struct kf_csr *csr, const char *cn, int days, int max_days,
                                const char *kind)
{
    struct kf_csr_policy policy;
    if (days < 0) return kf_fail(KF_E_INVALID, "a certificate cannot last %d days", days);
    if (days > max_days)
        return kf_fail(KF_E_DENIED,
                       "%d days is more than the %d days %s certificates get (%s_cert_days in "
                       "keyfleet.conf)",
                       days, max_days, kind, kind);
    kf_csr_policy_default(&policy);
    policy.expected_cn = cn;
    return kf_csr_check(csr, &policy, NULL);
}

enum kf_err kf_ca_sign(struct kf_deploy *d, enum kf_profile profile, const char *cn,
                       const char *device_id, const char *service, const char *role, int days,
                       const struct kf_csr *csr, struct kf_cert **cert, struct kf_cert_rec *rec)
{
    struct kf_sign_request req;
    struct kf_signer *signer;
    struct kf_buf spki;
    time_t now = time(NULL);
    enum kf_err rc;

    *cert = NULL;
    memset(rec, 0, sizeof(*rec));
    kf_buf_init(&spki, KF_SPKI_MAX);
    rc = kf_deploy_issuer(d, &signer);
    if (!rc) rc = kf_csr_spki(csr, &spki);
    if (!rc) {
        memset(&req, 0, sizeof(req));
        req.profile = profile;
        req.spki = spki.data;
        req.spki_len = spki.len;
        req.cn = cn;
        req.device_id = device_id;
        req.service = service;
        req.role = role;
        req.org = d->cfg.deployment.name;
        req.not_before = now - 60;
        req.not_after = now + days * DAY;
        rc = kf_signer_issue(signer, &req, cert);
    }
    if (!rc) rc = kf_ca_cert_record(*cert, profile, "issuing", device_id, rec);
    if (!rc && service) snprintf(rec->service, sizeof(rec->service), "%s", service);
    if (rc) {
        kf_cert_free(*cert);
        *cert = NULL;
    }
    kf_buf_free(&spki);
    return rc;
}

enum kf_err kf_ca_revoke_with(struct kf_deploy *d, const char *actor, const char *what,
                              kf_store_write_cb write, void *arg)
{
    struct kf_signer *signer;
    enum kf_err rc = kf_deploy_issuer(d, &signer);
    if (rc) return kf_wrap(rc, "not revoking %s", what);
    rc = kf_store_write(d->store, write, arg);
    if (rc) return rc;
    rc = kf_ca_publish_crl(d, actor, NULL);
    if (rc)
        kf_wrap(rc,
                "%s is revoked, but the new CRL was not published (run keyfleet ca crl once this "
                "is fixed)",
                what);
    return rc;
}

enum kf_err kf_ca_issue_device(struct kf_deploy *d, const char *actor, const char *device_id,
                               const char *enrollment, const struct kf_csr *csr, int days,
                               struct kf_cert **out)
{
    struct kf_cert *cert = NULL;
    struct kf_cert_rec rec;
    struct kf_txn *txn = NULL;
    struct issue_write w;
    int exists;
    enum kf_err rc;

    *out = NULL;
    rc = kf_id_check("device id", device_id);
    if (!rc) rc = kf_ca_check_request(csr, device_id, days, d->cfg.ca.device_cert_days, "device");
    if (rc) return rc;
    /* Refuse early, before spending a signature, when the device may not have one. */
    rc = kf_store_read(d->store, &txn);
    if (rc) return rc;
    rc = device_usable(txn, device_id, &exists);
    kf_txn_end(txn);
    memset(&rec, 0, sizeof(rec));
    if (rc) goto out;
    rc = kf_ca_sign(d, KF_PROFILE_DEVICE, device_id, device_id, NULL, NULL,
                    days ? days : d->cfg.ca.device_cert_days, csr, &cert, &rec);
    if (rc) goto out;
    w = (struct issue_write){actor, device_id, enrollment, &rec};
    rc = kf_store_write(d->store, issue_write_cb, &w);
out:
    if (rc == KF_E_CONFLICT)
        kf_events_name_conflict(d->store, actor, device_id, "device", kf_errmsg());
    if (!rc) {
        *out = cert;
        cert = NULL;
    }
    kf_cert_rec_clear(&rec);
    kf_cert_free(cert);
    return rc;
}

/* ---- revoking what a device or a service holds ---- */

struct valid_serials {
    char serials[64][KF_SERIAL_HEX_MAX];
    int n;
};

static enum kf_err collect_valid_cb(const struct kf_cert_rec *r, void *arg)
{
    struct valid_serials *l = arg;
    if (r->status != KF_CERT_VALID || l->n == 64) return KF_OK;
    snprintf(l->serials[l->n++], KF_SERIAL_HEX_MAX, "%s", r->serial);
    return KF_OK;
}

enum kf_err kf_ca_revoke_owned(struct kf_txn *txn, const char *actor, int service,
                               const char *owner, int reason, int *count)
{
    struct valid_serials l;
    char object[KF_OBJECT_MAX], *detail;
    time_t now = time(NULL);
    enum kf_err rc;

    *count = 0;
    /* In rounds of at most 64: each round shrinks the valid set, so none is missed. */
    do {
        memset(&l, 0, sizeof(l));
        rc = service ? kf_txn_cert_list_service(txn, owner, collect_valid_cb, &l)
                     : kf_txn_cert_list(txn, owner, KF_CERT_VALID, 64, collect_valid_cb, &l);
        for (int i = 0; !rc && i < l.n; i++) {
            rc = kf_txn_cert_revoke(txn, l.serials[i], now, reason);
            if (rc) break;
            snprintf(object, sizeof(object), "cert:%s", l.serials[i]);
            detail = kf_jsontext_pack("{s:s, s:s}", service ? "service" : "device", owner, "reason",
                                      kf_crl_reason_name(reason));
            rc = kf_txn_audit_append(txn, actor, "cert.revoke", object, detail);
            free(detail);
            (*count)++;
        }
    } while (!rc && l.n == 64);
    return rc;
}

/* ---- revoke ---- */

struct revoke_write {
    const char *actor, *serial;
    int reason;
};

static enum kf_err revoke_write_cb(struct kf_txn *txn, void *arg)
{
    struct revoke_write *w = arg;
    struct kf_cert_rec r;
    char object[KF_OBJECT_MAX];
    char *detail;
    enum kf_err rc;

    rc = kf_txn_cert_get(txn, w->serial, &r);
    if (rc) return rc;
    if (strcmp(r.profile, "issuing-ca") == 0 || strcmp(r.profile, "root-ca") == 0) {
        kf_cert_rec_clear(&r);
        return kf_fail(KF_E_DENIED,
                       "certificate %s is a CA certificate; keyfleet does not revoke "
                       "its own CAs",
                       w->serial);
    }
    rc = kf_txn_cert_revoke(txn, w->serial, time(NULL), w->reason);
    if (!rc) {
        snprintf(object, sizeof(object), "cert:%s", w->serial);
        detail = kf_jsontext_pack("{s:s, s:s}", "reason", kf_crl_reason_name(w->reason), "device",
                                  r.device_id);
        rc = kf_txn_audit_append(txn, w->actor, "cert.revoke", object, detail);
        free(detail);
    }
    kf_cert_rec_clear(&r);
    return rc;
}

enum kf_err kf_ca_revoke(struct kf_deploy *d, const char *actor, const char *serial, int reason)
{
    struct revoke_write w = {actor, serial, reason};
    struct kf_signer *signer;
    enum kf_err rc;
    if (!kf_crl_reason_name(reason))
        return kf_fail(KF_E_INVALID, "unknown revocation reason %d", reason);
    /* The CRL must follow the revocation: make sure it can be signed before revoking. */
    rc = kf_deploy_issuer(d, &signer);
    if (rc) return kf_wrap(rc, "not revoking certificate %s", serial);
    rc = kf_store_write(d->store, revoke_write_cb, &w);
    if (rc) return rc;
    rc = kf_ca_publish_crl(d, actor, NULL);
    if (rc)
        kf_wrap(rc,
                "certificate %s is revoked, but the new CRL was not published (run keyfleet "
                "ca crl once this is fixed)",
                serial);
    return rc;
}

/* ---- CRL ---- */

struct revoked_list {
    struct kf_revoked *v;
    char (*serials)[KF_SERIAL_HEX_MAX];
    size_t n, cap;
};

static enum kf_err collect_revoked_cb(const struct kf_cert_rec *r, void *arg)
{
    struct revoked_list *l = arg;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        void *v = realloc(l->v, ncap * sizeof(*l->v));
        if (!v) return kf_fail(KF_E_NOMEM, "out of memory");
        l->v = v;
        v = realloc(l->serials, ncap * sizeof(*l->serials));
        if (!v) return kf_fail(KF_E_NOMEM, "out of memory");
        l->serials = v;
        l->cap = ncap;
    }
    snprintf(l->serials[l->n], KF_SERIAL_HEX_MAX, "%s", r->serial);
    l->v[l->n].revoked_at = r->revoked_at;
    l->v[l->n].reason = r->reason;
    l->n++;
    return KF_OK;
}

struct crl_write {
    const char *actor;
    struct kf_signer *signer;
    int hours;
    struct kf_crl *crl; /* out */
};

static enum kf_err crl_write_cb(struct kf_txn *txn, void *arg)
{
    struct crl_write *w = arg;
    struct revoked_list l = {0};
    time_t now = time(NULL);
    int64_t number;
    char *detail;
    enum kf_err rc;

    rc = kf_txn_cert_revoked(txn, "issuing", now, collect_revoked_cb, &l);
    if (!rc) rc = kf_txn_ca_next_crl_number(txn, "issuing", &number);
    if (rc) goto out;
    /* The serial pointers go in only now that the array no longer moves. */
    for (size_t i = 0; i < l.n; i++)
        l.v[i].serial_hex = l.serials[i];
    kf_crl_free(w->crl);
    w->crl = NULL;
    rc = kf_signer_crl(w->signer, l.v, l.n, (uint64_t)number, now - 60, now + w->hours * 3600L,
                       &w->crl);
    if (rc) goto out;
    detail =
        kf_jsontext_pack("{s:I, s:I}", "number", (json_int_t)number, "revoked", (json_int_t)l.n);
    rc = kf_txn_audit_append(txn, w->actor, "crl.publish", "ca:issuing", detail);
    free(detail);
out:
    free(l.v);
    free(l.serials);
    return rc;
}

/* Writes `crl` to the CRL file unless the file already holds a newer CRL. */
static enum kf_err write_crl_file(struct kf_deploy *d, const struct kf_crl *crl)
{
    char path[KF_CONF_PATH_MAX];
    struct kf_buf text;
    struct kf_crl *old = NULL;
    int lock = -1;
    enum kf_err rc;

    rc = kf_deploy_path(d, d->cfg.ca.crl_file, path, sizeof(path));
    if (rc) return rc;
    kf_buf_init(&text, 64 * 1024 * 1024);
    /*
     * Another process may be publishing too: compare and replace under an exclusive lock on the
     * CRL's directory, so that the file never goes back to an older CRL.
     */
    rc = kf_file_lock_dir(path, &lock);
    if (rc) goto out;
    if (kf_buf_read_file(&text, path) == KF_OK &&
        kf_crl_parse(text.data, text.len, &old) == KF_OK &&
        kf_crl_number(old) > kf_crl_number(crl)) {
        rc = KF_OK;
        goto out;
    }
    kf_err_clear();
    kf_buf_reset(&text);
    rc = kf_crl_pem(crl, &text);
    if (!rc) rc = kf_file_write(path, text.data, text.len, 0644, KF_FILE_REPLACE);
out:
    kf_file_unlock(lock);
    kf_crl_free(old);
    kf_buf_free(&text);
    return rc;
}

enum kf_err kf_ca_publish_crl(struct kf_deploy *d, const char *actor, struct kf_crl **out)
{
    struct crl_write w = {actor, NULL, d->cfg.ca.crl_hours, NULL};
    enum kf_err rc;

    if (out) *out = NULL;
    rc = kf_deploy_issuer(d, &w.signer);
    if (rc) return rc;
    rc = kf_store_write(d->store, crl_write_cb, &w);
    if (!rc) rc = write_crl_file(d, w.crl);
    if (!rc && out) {
        *out = w.crl;
        w.crl = NULL;
    }
    kf_crl_free(w.crl);
    return rc;
}
