#include "server/ops/fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pki_crl.h"
#include "server/ca/ca.h"
#include "common/jsontext.h"

struct status_write {
    const char *actor, *id;
    int enable, changed;
};

static enum kf_err status_cb(struct kf_txn *txn, void *arg)
{
    struct status_write *w = arg;
    struct kf_device_rec dev;
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
    struct kf_device_rec dev;
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

struct move_write {
    const char *actor, *id, *to;
    char from[KF_ID_MAX + 1];
};

static enum kf_err move_cb(struct kf_txn *txn, void *arg)
{
    struct move_write *w = arg;
    struct kf_enrollment_rec e;
    struct kf_registration_rec reg;
    struct kf_device_rec dev;
    char object[KF_OBJECT_MAX], *detail;
    enum kf_err rc;

    rc = kf_txn_device_get(txn, w->id, &dev);
    if (rc == KF_E_NOT_FOUND) return kf_fail(rc, "no device %s", w->id);
    if (rc) return rc;
    snprintf(w->from, sizeof(w->from), "%s", dev.enrollment);
    if (dev.status == KF_DEVICE_REVOKED)
        return kf_fail(KF_E_REVOKED, "device %s is revoked; revocation is final", w->id);
    memset(&e, 0, sizeof(e));
    rc = kf_txn_enrollment_get(txn, w->to, &e);
    kf_enrollment_clear(&e);
    if (rc == KF_E_NOT_FOUND) return kf_fail(rc, "no enrollment %s", w->to);
    if (rc) return rc;
    if (strcmp(dev.enrollment, w->to) == 0) return KF_OK;
    snprintf(dev.enrollment, sizeof(dev.enrollment), "%s", w->to);
    dev.updated = time(NULL);
    rc = kf_txn_device_update(txn, &dev);
    if (rc) return rc;
    rc = kf_txn_registration_get(txn, w->id, &reg);
    if (rc == KF_OK) {
        snprintf(reg.enrollment, sizeof(reg.enrollment), "%s", w->to);
        rc = kf_txn_registration_put(txn, &reg);
    } else if (rc == KF_E_NOT_FOUND) {
        rc = KF_OK;
    }
    if (rc) return rc;
    snprintf(object, sizeof(object), "device:%s", w->id);
    detail = kf_jsontext_pack("{s:s, s:s}", "from", w->from, "to", w->to);
    rc = kf_txn_audit_append(txn, w->actor, "device.move", object, detail);
    free(detail);
    return rc;
}

enum kf_err kf_fleet_move(struct kf_deploy *d, const char *actor, const char *id,
                          const char *enrollment, char *from)
{
    struct move_write w;
    enum kf_err rc;
    memset(&w, 0, sizeof(w));
    w.actor = actor;
    w.id = id;
    w.to = enrollment;
    rc = kf_store_write(d->store, move_cb, &w);
    if (from) snprintf(from, KF_ID_MAX + 1, "%s", w.from);
    return rc;
}
