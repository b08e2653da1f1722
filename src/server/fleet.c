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

static enum kf_err revoke_cb(struct kf_txn *txn, void *arg)
{
    struct revoke_write *w = arg;
    struct kf_device dev;
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
    rc = kf_ca_revoke_owned(txn, w->actor, 0, w->id, w->reason, &w->count);
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
    char what[KF_ID_MAX + 16];
    enum kf_err rc;

    if (count) *count = 0;
    if (!kf_crl_reason_name(reason))
        return kf_fail(KF_E_INVALID, "unknown revocation reason %d", reason);
    snprintf(what, sizeof(what), "device %s", id);
    rc = kf_ca_revoke_with(d, actor, what, revoke_cb, &w);
    if (count) *count = w.count;
    return rc;
}
