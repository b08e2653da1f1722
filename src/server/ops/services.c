#include "server/ops/services.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ident.h"
#include "common/pki_crl.h"
#include "common/timefmt.h"
#include "server/ca/ca.h"
#include "server/store/events.h"
#include "common/jsontext.h"

/* KF_OK when `name` may have a certificate now: it exists and is active. */
static enum kf_err service_usable(struct kf_txn *txn, const char *name, struct kf_service_rec *s)
{
    enum kf_err rc = kf_txn_service_get(txn, name, s);
    if (rc == KF_E_NOT_FOUND)
        return kf_fail(KF_E_NOT_FOUND, "service %s not found (keyfleet service add --name %s)",
                       name, name);
    if (rc) return rc;
    if (s->status == KF_SERVICE_REVOKED)
        return kf_fail(KF_E_REVOKED, "service %s is revoked; revocation is final", name);
    return KF_OK;
}

struct issue_write {
    const char *actor, *name, *role; /* role: set when the service is new */
    const struct kf_cert_rec *rec;
};

static enum kf_err issue_write_cb(struct kf_txn *txn, void *arg)
{
    struct issue_write *w = arg;
    struct kf_service_rec s;
    char object[KF_OBJECT_MAX], when[KF_TIME_TEXT_MAX], *detail;
    enum kf_err rc;

    if (w->role) {
        memset(&s, 0, sizeof(s));
        snprintf(s.name, sizeof(s.name), "%s", w->name);
        snprintf(s.role, sizeof(s.role), "%s", w->role);
        s.status = KF_SERVICE_ACTIVE;
        s.created = s.updated = time(NULL);
        rc = kf_txn_service_insert(txn, &s);
        if (rc) return rc;
        snprintf(object, sizeof(object), "service:%s", w->name);
        detail = kf_jsontext_pack("{s:s}", "role", w->role);
        rc = kf_txn_audit_append(txn, w->actor, "service.add", object, detail);
        free(detail);
        if (rc) return rc;
    } else {
        /* Checked again inside the transaction: it may have been revoked since the signing. */
        rc = service_usable(txn, w->name, &s);
        if (rc) return rc;
    }
    rc = kf_txn_cert_insert(txn, w->rec);
    if (rc) return rc;
    kf_time_rfc3339(w->rec->not_after, when, sizeof(when));
    snprintf(object, sizeof(object), "cert:%s", w->rec->serial);
    detail = kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "service", w->name, "role", s.role, "profile",
                              "service", "not_after", when);
    rc = kf_txn_audit_append(txn, w->actor, "cert.issue", object, detail);
    free(detail);
    return rc;
}

/* Signs a service certificate for `csr` and records it (with the service when `new_role`). */
static enum kf_err issue(struct kf_deploy *d, const char *actor, const char *name,
                         const char *new_role, const struct kf_csr *csr, int days,
                         struct kf_cert **out)
{
    struct kf_service_rec s;
    struct kf_cert *cert = NULL;
    struct kf_cert_rec rec;
    struct kf_txn *txn = NULL;
    struct issue_write w;
    enum kf_err rc;

    *out = NULL;
    rc = kf_id_check("service name", name);
    if (!rc) rc = kf_ca_check_request(csr, name, days, d->cfg.ca.service_cert_days, "service");
    if (rc) return rc;
    /* Refuse early, before spending a signature. */
    rc = kf_store_read(d->store, &txn);
    if (rc) return rc;
    if (new_role) {
        rc = kf_txn_service_get(txn, name, &s);
        if (rc == KF_OK)
            rc = kf_fail(KF_E_EXISTS, "service %s already exists (with role %s)", name, s.role);
        else if (rc == KF_E_NOT_FOUND)
            rc = kf_txn_name_free(txn, KF_NS_SERVICE, name);
        snprintf(s.role, sizeof(s.role), "%s", new_role);
    } else {
        rc = service_usable(txn, name, &s);
    }
    kf_txn_end(txn);
    memset(&rec, 0, sizeof(rec));
    if (rc) goto out;
    rc = kf_ca_sign(d, KF_PROFILE_SERVICE, name, NULL, name, s.role,
                    days ? days : d->cfg.ca.service_cert_days, csr, &cert, &rec);
    if (rc) goto out;
    w = (struct issue_write){actor, name, new_role, &rec};
    rc = kf_store_write(d->store, issue_write_cb, &w);
out:
    if (rc == KF_E_CONFLICT) kf_events_name_conflict(d->store, actor, name, "service", kf_errmsg());
    if (!rc) {
        *out = cert;
        cert = NULL;
    }
    kf_cert_rec_clear(&rec);
    kf_cert_free(cert);
    return rc;
}

enum kf_err kf_services_add(struct kf_deploy *d, const char *actor, const char *name,
                            const char *role, const struct kf_csr *csr, int days,
                            struct kf_cert **out)
{
    *out = NULL;
    if (!kf_role_parse(role))
        return kf_fail(KF_E_INVALID, "role \"%.40s\" is not one of " KF_ROLE_CHOICES,
                       role ? role : "");
    return issue(d, actor, name, role, csr, days, out);
}

enum kf_err kf_services_issue(struct kf_deploy *d, const char *actor, const char *name,
                              const struct kf_csr *csr, int days, struct kf_cert **out)
{
    return issue(d, actor, name, NULL, csr, days, out);
}

/* ---- revoke ---- */

struct revoke_write {
    const char *actor, *name;
    int reason, count;
};

static enum kf_err revoke_cb(struct kf_txn *txn, void *arg)
{
    struct revoke_write *w = arg;
    struct kf_service_rec s;
    char object[KF_OBJECT_MAX], *detail;
    time_t now = time(NULL);
    enum kf_err rc;

    w->count = 0;
    rc = kf_txn_service_get(txn, w->name, &s);
    if (rc) return rc;
    if (s.status == KF_SERVICE_REVOKED)
        return kf_fail(KF_E_CONFLICT, "service %s is already revoked", w->name);
    s.status = KF_SERVICE_REVOKED;
    s.updated = now;
    rc = kf_txn_service_update(txn, &s);
    if (rc) return rc;
    rc = kf_ca_revoke_owned(txn, w->actor, 1, w->name, w->reason, &w->count);
    if (rc) return rc;
    snprintf(object, sizeof(object), "service:%s", w->name);
    detail = kf_jsontext_pack("{s:s, s:s, s:i}", "role", s.role, "reason",
                              kf_crl_reason_name(w->reason), "certificates", w->count);
    rc = kf_txn_audit_append(txn, w->actor, "service.revoke", object, detail);
    free(detail);
    return rc;
}

enum kf_err kf_services_revoke(struct kf_deploy *d, const char *actor, const char *name, int reason,
                               int *count)
{
    struct revoke_write w = {actor, name, reason, 0};
    char what[KF_ID_MAX + 16];
    enum kf_err rc;

    if (count) *count = 0;
    rc = kf_id_check("service name", name);
    if (rc) return rc;
    if (!kf_crl_reason_name(reason))
        return kf_fail(KF_E_INVALID, "unknown revocation reason %d", reason);
    snprintf(what, sizeof(what), "service %s", name);
    rc = kf_ca_revoke_with(d, actor, what, revoke_cb, &w);
    if (count) *count = w.count;
    return rc;
}
