#include "server/fleet.h"

#include <stdio.h>
#include <string.h>

#include "common/pki_crl.h"
#include "server/ca.h"
#include "server/jsontext.h"

struct status_write {
    const char *actor, *id;
    int enable, changed;
};

static enum kf_err status_cb(struct kf_txn *txn, void *arg)
{
    struct status_write *w = arg;
    struct kf_device dev;
    char object[KF_OBJECT_MAX];
    enum kf_err rc;

    w->changed = 0;
    rc = kf_txn_device_get(txn, w->id, &dev);
    if (rc) return rc;
    if (dev.status == KF_DEVICE_REVOKED)
        return kf_fail(KF_E_REVOKED, "device %s is revoked; revocation is final", w->id);
    if ((dev.status == KF_DEVICE_ACTIVE) == !!w->enable) return KF_OK;
    dev.status = w->enable ? KF_DEVICE_ACTIVE : KF_DEVICE_DISABLED;
    dev.updated = time(NULL);
    rc = kf_txn_device_update(txn, &dev);
    if (rc) return rc;
    w->changed = 1;
    snprintf(object, sizeof(object), "device:%s", w->id);
    return kf_txn_audit_append(txn, w->actor, w->enable ? "device.enable" : "device.disable",
                               object, "{}");
}

enum kf_err kf_fleet_set_enabled(struct kf_deploy *d, const char *actor, const char *id, int enable,
                                 int *changed)
{
    struct status_write w = {actor, id, enable, 0};
    enum kf_err rc = kf_store_write(d->store, status_cb, &w);
    if (changed) *changed = w.changed;
    return rc;
}

struct revoke_write {
    const char *actor, *id;
    int reason, count;
};

struct serial_list {
    char serials[64][KF_SERIAL_HEX_MAX];
    int n, more;
};

static enum kf_err collect_valid_cb(const struct kf_cert_rec *r, void *arg)
{
    struct serial_list *l = arg;
    if (l->n == 64) {
        l->more = 1;
        return KF_OK;
    }
    snprintf(l->serials[l->n++], KF_SERIAL_HEX_MAX, "%s", r->serial);
    return KF_OK;
}

static enum kf_err revoke_cb(struct kf_txn *txn, void *arg)
{
    struct revoke_write *w = arg;
    struct kf_device dev;
    struct serial_list l;
    char object[KF_OBJECT_MAX], *detail;
    time_t now = time(NULL);
    enum kf_err rc;

    w->count = 0;
    rc = kf_txn_device_get(txn, w->id, &dev);
    if (rc) return rc;
    if (dev.status == KF_DEVICE_REVOKED)
        return kf_fail(KF_E_CONFLICT, "device %s is already revoked", w->id);
    dev.status = KF_DEVICE_REVOKED;
    dev.updated = now;
    rc = kf_txn_device_update(txn, &dev);
    if (rc) return rc;
    /* Revoke in rounds: the listing is bounded, and each round shrinks the valid set. */
    do {
        memset(&l, 0, sizeof(l));
        rc = kf_txn_cert_list(txn, w->id, KF_CERT_VALID, 64, collect_valid_cb, &l);
        for (int i = 0; !rc && i < l.n; i++) {
            rc = kf_txn_cert_revoke(txn, l.serials[i], now, w->reason);
            if (!rc) {
                snprintf(object, sizeof(object), "cert:%s", l.serials[i]);
                detail = kf_jsontext_pack("{s:s, s:s}", "device", w->id, "reason",
                                          kf_crl_reason_name(w->reason));
                rc = kf_txn_audit_append(txn, w->actor, "cert.revoke", object, detail);
                free(detail);
            }
            w->count++;
        }
    } while (!rc && l.n == 64);
    if (rc) return rc;
    snprintf(object, sizeof(object), "device:%s", w->id);
    detail = kf_jsontext_pack("{s:s, s:i}", "reason", kf_crl_reason_name(w->reason), "certificates",
                              w->count);
    rc = kf_txn_audit_append(txn, w->actor, "device.revoke", object, detail);
    free(detail);
    return rc;
}

enum kf_err kf_fleet_revoke(struct kf_deploy *d, const char *actor, const char *id, int reason,
                            int *count)
{
    struct revoke_write w = {actor, id, reason, 0};
    struct kf_signer *signer;
    enum kf_err rc;

    if (count) *count = 0;
    if (!kf_crl_reason_name(reason))
        return kf_fail(KF_E_INVALID, "unknown revocation reason %d", reason);
    /* The CRL must follow the revocation: make sure it can be signed before revoking. */
    rc = kf_deploy_issuer(d, &signer);
    if (rc) return kf_wrap(rc, "not revoking device %s", id);
    rc = kf_store_write(d->store, revoke_cb, &w);
    if (rc) return rc;
    if (count) *count = w.count;
    rc = kf_ca_publish_crl(d, actor, NULL);
    if (rc)
        kf_wrap(rc,
                "device %s is revoked, but the new CRL was not published (run keyfleet ca crl "
                "once this is fixed)",
                id);
    return rc;
}
