#include "testutil.h"
#include "storetest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kf_store *kf_st_open(const char *url, int flags)
{
    struct kf_store *s = NULL;
    KF_OK_OR_FAIL(kf_store_open(url, flags, &s));
    return s;
}

struct kf_txn *kf_st_read(struct kf_store *s)
{
    struct kf_txn *t = NULL;
    KF_OK_OR_FAIL(kf_store_read(s, &t));
    return t;
}

/* ---- records and write callbacks ---- */

struct kf_hub_rec kf_st_hub(const char *name)
{
    struct kf_hub_rec h;
    memset(&h, 0, sizeof(h));
    snprintf(h.name, sizeof(h.name), "%s", name);
    snprintf(h.endpoint, sizeof(h.endpoint), "%s.example.net:8883", name);
    h.weight = 10;
    h.enabled = 1;
    h.created = 1700000000;
    return h;
}

struct kf_device_rec kf_st_device(const char *id, const char *enroll, enum kf_device_status st)
{
    struct kf_device_rec d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "%s", id);
    snprintf(d.enrollment, sizeof(d.enrollment), "%s", enroll);
    d.status = st;
    d.created = d.updated = 1700000000;
    return d;
}

enum kf_err kf_st_hub_insert_cb(struct kf_txn *t, void *a)
{
    return kf_txn_hub_insert(t, a);
}

enum kf_err kf_st_device_insert_cb(struct kf_txn *t, void *a)
{
    return kf_txn_device_insert(t, a);
}

enum kf_err kf_st_device_update_cb(struct kf_txn *t, void *a)
{
    return kf_txn_device_update(t, a);
}

/* ---- the registry version ---- */

int64_t kf_st_registry_version(struct kf_store *s)
{
    struct kf_txn *t = kf_st_read(s);
    int64_t v = -1;
    KF_OK_OR_FAIL(kf_txn_registry_version(t, &v));
    kf_txn_end(t);
    return v;
}

/* ---- the audit log ---- */

enum kf_err kf_st_append_cb(struct kf_txn *t, void *a)
{
    struct kf_st_batch *b = a;
    enum kf_err rc = KF_OK;
    for (int i = 0; i < b->n && !rc; i++)
        rc = kf_txn_audit_append(t, b->e[i].actor, b->e[i].action, b->e[i].object, b->e[i].detail);
    return rc;
}

void kf_st_append(struct kf_store *s, const char *actor, const char *action, const char *object,
                  const char *detail)
{
    struct kf_st_entry e = {actor, action, object, detail};
    struct kf_st_batch b = {&e, 1};
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_append_cb, &b));
}

void kf_st_append_n(struct kf_store *s, int n)
{
    for (int i = 1; i <= n; i++) {
        char object[64], detail[64];
        snprintf(object, sizeof(object), "device:dev-%d", i);
        snprintf(detail, sizeof(detail), "{\"n\": %d}", i);
        kf_st_append(s, "operator:alice", "device.add", object, detail);
    }
}

/* Copies each listed record into the struct kf_st_log `a`, its detail duplicated. */
static enum kf_err log_cb(const struct kf_audit_rec *r, void *a)
{
    struct kf_st_log *l = a;
    if (l->n >= (int)KF_ARRAY_LEN(l->r)) return kf_fail(KF_E_OVERSIZE, "test log full");
    l->r[l->n] = *r;
    l->r[l->n].detail = strdup(r->detail);
    l->n++;
    return KF_OK;
}

void kf_st_log_read(struct kf_store *s, int64_t since, struct kf_st_log *l)
{
    struct kf_txn *t = NULL;
    memset(l, 0, sizeof(*l));
    KF_OK_OR_FAIL(kf_store_read(s, &t));
    KF_OK_OR_FAIL(kf_txn_audit_list(t, since, log_cb, l));
    kf_txn_end(t);
}

void kf_st_log_free(struct kf_st_log *l)
{
    for (int i = 0; i < l->n; i++)
        kf_audit_rec_clear(&l->r[i]);
    l->n = 0;
}

enum kf_err kf_st_verify(struct kf_store *s, const char *head, struct kf_audit_verdict *v)
{
    struct kf_txn *t = NULL;
    enum kf_err rc;
    KF_OK_OR_FAIL(kf_store_read(s, &t));
    rc = kf_txn_audit_verify(t, head, v);
    kf_txn_end(t);
    return rc;
}
