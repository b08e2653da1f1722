#include "server/ops/snapshot.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/est.h"

struct load {
    struct kf_snapshot *r;
    size_t cap_groups, cap_hubs, cap_blocked, cap_revoked;
    enum kf_err rc;
};

static enum kf_err group_cb(const struct kf_enrollment_rec *e, void *arg)
{
    struct load *l = arg;
    struct kf_reg_group *g;
    enum kf_err rc;

    if (l->r->n_groups == l->cap_groups) {
        size_t ncap = l->cap_groups ? l->cap_groups * 2 : 16;
        void *p = realloc(l->r->groups, ncap * sizeof(*l->r->groups));
        if (!p) return kf_fail(KF_E_NOMEM, "out of memory loading groups");
        l->r->groups = p;
        l->cap_groups = ncap;
    }
    g = &l->r->groups[l->r->n_groups];
    memset(g, 0, sizeof(*g));
    snprintf(g->id, sizeof(g->id), "%s", e->id);
    g->enabled = e->enabled;
    g->verified = e->verified;
    snprintf(g->fingerprint, sizeof(g->fingerprint), "%s", e->key_fingerprint);
    snprintf(g->allocation, sizeof(g->allocation), "%s", e->allocation);
    snprintf(g->hub, sizeof(g->hub), "%s", e->hub);
    g->approval_manual = e->approval_manual;
    g->require_binding = e->require_binding;
    rc = kf_cert_parse(e->cert_pem, strlen(e->cert_pem), &g->ca);
    if (rc) return kf_wrap(rc, "group %s: its CA certificate", e->id);
    if (e->networks && *e->networks) {
        rc = kf_cidr_parse_list(e->networks, &g->networks);
        if (rc) {
            kf_cert_free(g->ca);
            return kf_wrap(rc, "group %s: its networks", e->id);
        }
        g->has_networks = 1;
    }
    l->r->n_groups++;
    return KF_OK;
}

static enum kf_err hub_cb(const struct kf_hub_rec *h, void *arg)
{
    struct load *l = arg;
    if (l->r->n_hubs == l->cap_hubs) {
        size_t ncap = l->cap_hubs ? l->cap_hubs * 2 : 8;
        void *p = realloc(l->r->hubs, ncap * sizeof(*l->r->hubs));
        if (!p) return kf_fail(KF_E_NOMEM, "out of memory loading hubs");
        l->r->hubs = p;
        l->cap_hubs = ncap;
    }
    l->r->hubs[l->r->n_hubs++] = *h;
    return KF_OK;
}

static enum kf_err block(struct load *l, int service, const char *id, int status)
{
    struct kf_reg_blocked *b;
    if (l->r->n_blocked == l->cap_blocked) {
        size_t ncap = l->cap_blocked ? l->cap_blocked * 2 : 16;
        void *p = realloc(l->r->blocked, ncap * sizeof(*l->r->blocked));
        if (!p) return kf_fail(KF_E_NOMEM, "out of memory loading device statuses");
        l->r->blocked = p;
        l->cap_blocked = ncap;
    }
    b = &l->r->blocked[l->r->n_blocked++];
    b->service = service;
    snprintf(b->id, sizeof(b->id), "%s", id);
    b->status = status;
    return KF_OK;
}

static enum kf_err blocked_device_cb(const struct kf_device_rec *d, void *arg)
{
    return block(arg, 0, d->id, (int)d->status);
}

static enum kf_err revoked_service_cb(const struct kf_service_rec *s, void *arg)
{
    return s->status == KF_SERVICE_REVOKED ? block(arg, 1, s->name, (int)s->status) : KF_OK;
}

static enum kf_err revoked_cb(const char *serial, void *arg)
{
    struct load *l = arg;
    if (l->r->n_revoked == l->cap_revoked) {
        size_t ncap = l->cap_revoked ? l->cap_revoked * 2 : 64;
        void *p = realloc(l->r->revoked, ncap * sizeof(*l->r->revoked));
        if (!p) return kf_fail(KF_E_NOMEM, "out of memory loading revoked certificates");
        l->r->revoked = p;
        l->cap_revoked = ncap;
    }
    snprintf(l->r->revoked[l->r->n_revoked++], KF_SERIAL_HEX_MAX, "%s", serial);
    return KF_OK;
}

static int serial_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int blocked_cmp(const void *a, const void *b)
{
    const struct kf_reg_blocked *x = a, *y = b;
    if (x->service != y->service) return x->service - y->service;
    return strcmp(x->id, y->id);
}

int kf_snapshot_blocked(const struct kf_snapshot *r, int service, const char *id)
{
    struct kf_reg_blocked key, *hit;
    if (!r->n_blocked || strlen(id) > KF_ID_MAX) return 0;
    key.service = service;
    snprintf(key.id, sizeof(key.id), "%s", id);
    hit = bsearch(&key, r->blocked, r->n_blocked, sizeof(key), blocked_cmp);
    return hit ? hit->status : 0;
}

int kf_snapshot_cert_revoked(const struct kf_snapshot *r, const char *serial_hex)
{
    if (r->n_revoked && strlen(serial_hex) < KF_SERIAL_HEX_MAX &&
        bsearch(serial_hex, r->revoked, r->n_revoked, sizeof(*r->revoked), serial_cmp))
        return 1;
    return r->crl && kf_crl_lists(r->crl, serial_hex, NULL);
}

/* What tells a replaced file from the one read: its inode, size and modification time. */
static void file_id(const char *path, struct kf_file_id *out)
{
    struct stat st;
    memset(out, 0, sizeof(*out));
    if (stat(path, &st) != 0) return;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out->size = (int64_t)st.st_size;
    out->ino = (int64_t)st.st_ino;
}

/* 1 when the CRL file is no longer the one `r` read. */
static int crl_file_changed(const struct kf_snapshot *r)
{
    char path[KF_CONF_PATH_MAX];
    struct kf_file_id now;
    if (kf_config_resolve(&r->cfg, r->cfg.ca.crl_file, path, sizeof(path)) != KF_OK) {
        kf_err_clear();
        return 0;
    }
    file_id(path, &now);
    return memcmp(&now, &r->crl_file, sizeof(now)) != 0;
}

static enum kf_err load_ca(struct kf_txn *txn, const char *name, struct kf_cert **out)
{
    struct kf_ca_rec ca;
    enum kf_err rc = kf_txn_ca_get(txn, name, &ca);
    if (rc) return rc;
    rc = kf_cert_parse(ca.cert_pem, strlen(ca.cert_pem), out);
    kf_ca_rec_clear(&ca);
    return rc ? kf_wrap(rc, "the %s CA", name) : KF_OK;
}

/* The issuing CA's CRL, when the published file is readable and signed by it. */
static void add_crl(struct kf_snapshot *r)
{
    char path[KF_CONF_PATH_MAX];
    struct kf_buf text;
    struct kf_crl *crl = NULL;
    int ours = 0;

    kf_buf_init(&text, 64 * 1024 * 1024);
    if (kf_config_resolve(&r->cfg, r->cfg.ca.crl_file, path, sizeof(path)) != KF_OK) {
        path[0] = '\0';
    } else {
        file_id(path, &r->crl_file); /* before reading: a newer file is never missed */
        if (kf_buf_read_file(&text, path) == KF_OK &&
            kf_crl_parse(text.data, text.len, &crl) == KF_OK) {
            ours = kf_crl_signed_by(crl, r->issuing);
            if (!ours) kf_fail(KF_E_DENIED, "the CRL is not signed by keyfleet's issuing CA");
        }
    }
    if (ours) {
        /* Its signature checked here once, not again on every device's handshake. */
        if (kf_trust_set_issuer_crl(r->operational, crl, r->issuing) != KF_OK)
            kf_log(KF_LOG_WARN, "registry", "cannot use the CRL", "path", path, "error",
                   kf_errmsg(), NULL);
        else
            r->crl = kf_crl_ref(crl);
    } else {
        kf_log(KF_LOG_WARN, "registry", "no usable CRL; revocations are checked in the store only",
               "path", path[0] ? path : r->cfg.ca.crl_file, "error", kf_errmsg(), NULL);
    }
    kf_crl_free(crl);
    kf_buf_free(&text);
    kf_err_clear();
}

enum kf_err kf_snapshot_load(struct kf_deploy *d, const struct kf_config *cfg,
                             struct kf_snapshot **out)
{
    struct kf_snapshot *r = calloc(1, sizeof(*r));
    struct kf_txn *txn = NULL;
    struct load l;
    enum kf_err rc;

    *out = NULL;
    if (!r) return kf_fail(KF_E_NOMEM, "out of memory");
    static uint64_t generations;
    r->refs = 1;
    r->generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    r->cfg = *cfg;
    kf_buf_init(&r->cacerts, 64 * 1024);
    kf_buf_init(&r->csrattrs, 4096);
    kf_buf_init(&r->root_pem, 64 * 1024);
    kf_buf_init(&r->issuing_pem, 64 * 1024);
    memset(&l, 0, sizeof(l));
    l.r = r;
    rc = kf_trust_new(&r->eligible);
    if (!rc) rc = kf_trust_new(&r->all_groups);
    if (!rc) rc = kf_trust_new(&r->operational);
    if (!rc) rc = kf_store_read(d->store, &txn);
    /* One snapshot of the store: the version read with what it stands for. */
    if (!rc) rc = kf_txn_registry_version(txn, &r->version);
    if (!rc) rc = kf_txn_enrollment_list(txn, KF_ENROLL_GROUP, group_cb, &l);
    if (!rc) rc = kf_txn_hub_list(txn, hub_cb, &l);
    if (!rc) rc = kf_txn_device_list(txn, KF_DEVICE_DISABLED, NULL, blocked_device_cb, &l);
    if (!rc) rc = kf_txn_device_list(txn, KF_DEVICE_REVOKED, NULL, blocked_device_cb, &l);
    if (!rc) rc = kf_txn_service_list(txn, revoked_service_cb, &l);
    if (!rc) rc = kf_txn_cert_revoked_serials(txn, "issuing", revoked_cb, &l);
    if (!rc) rc = load_ca(txn, "root", &r->root);
    if (!rc) rc = load_ca(txn, "issuing", &r->issuing);
    kf_txn_end(txn);
    if (rc) goto fail;
    if (r->n_blocked) qsort(r->blocked, r->n_blocked, sizeof(*r->blocked), blocked_cmp);
    /* Listed in serial order already; sorted again all the same, bsearch relies on it. */
    if (r->n_revoked) qsort(r->revoked, r->n_revoked, sizeof(*r->revoked), serial_cmp);
    for (size_t i = 0; i < r->n_groups && !rc; i++) {
        const struct kf_reg_group *g = &r->groups[i];
        rc = kf_trust_add_cert(r->all_groups, g->ca);
        if (!rc && g->enabled && g->verified) rc = kf_trust_add_cert(r->eligible, g->ca);
    }
    if (!rc) rc = kf_trust_add_cert(r->operational, r->issuing);
    if (rc) goto fail;
    add_crl(r);
    {
        struct kf_cert *cas[2] = {r->issuing, r->root};
        rc = kf_est_certs_only(cas, 2, &r->cacerts);
    }
    if (!rc) rc = kf_est_csrattrs(&r->csrattrs);
    if (!rc) rc = kf_cert_pem(r->root, &r->root_pem);
    if (!rc) rc = kf_cert_pem(r->issuing, &r->issuing_pem);
    if (rc) goto fail;
    *out = r;
    return KF_OK;
fail:
    kf_snapshot_release(r);
    return kf_wrap(rc, "loading the registry");
}

struct kf_snapshot *kf_snapshot_ref(struct kf_snapshot *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
    return r;
}

void kf_snapshot_release(struct kf_snapshot *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    for (size_t i = 0; i < r->n_groups; i++)
        kf_cert_free(r->groups[i].ca);
    free(r->groups);
    free(r->hubs);
    free(r->blocked);
    free(r->revoked);
    kf_crl_free(r->crl);
    kf_trust_free(r->eligible);
    kf_trust_free(r->all_groups);
    kf_trust_free(r->operational);
    kf_cert_free(r->root);
    kf_cert_free(r->issuing);
    kf_buf_free(&r->cacerts);
    kf_buf_free(&r->csrattrs);
    kf_buf_free(&r->root_pem);
    kf_buf_free(&r->issuing_pem);
    free(r);
}

const struct kf_reg_group *kf_snapshot_group(const struct kf_snapshot *r, const char *fp)
{
    for (size_t i = 0; i < r->n_groups; i++)
        if (strcmp(r->groups[i].fingerprint, fp) == 0) return &r->groups[i];
    return NULL;
}

const struct kf_reg_group *kf_snapshot_group_named(const struct kf_snapshot *r, const char *id)
{
    for (size_t i = 0; i < r->n_groups; i++)
        if (strcmp(r->groups[i].id, id) == 0) return &r->groups[i];
    return NULL;
}

void kf_snapshot_holder_init(struct kf_snapshot_holder *h, struct kf_snapshot *first)
{
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->reload, NULL);
    h->cur = first;
}

void kf_snapshot_holder_destroy(struct kf_snapshot_holder *h)
{
    kf_snapshot_release(h->cur);
    h->cur = NULL;
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->reload);
}

struct kf_snapshot *kf_snapshot_get(struct kf_snapshot_holder *h)
{
    struct kf_snapshot *r;
    pthread_mutex_lock(&h->lock);
    r = kf_snapshot_ref(h->cur);
    pthread_mutex_unlock(&h->lock);
    return r;
}

void kf_snapshot_set(struct kf_snapshot_holder *h, struct kf_snapshot *next)
{
    struct kf_snapshot *old;
    pthread_mutex_lock(&h->lock);
    old = h->cur;
    h->cur = next;
    pthread_mutex_unlock(&h->lock);
    kf_snapshot_release(old);
}

enum kf_err kf_snapshot_reload(struct kf_snapshot_holder *h, struct kf_deploy *d,
                               const struct kf_config *cfg)
{
    struct kf_snapshot *next = NULL;
    enum kf_err rc;
    pthread_mutex_lock(&h->reload);
    rc = kf_snapshot_load(d, cfg, &next);
    if (!rc) kf_snapshot_set(h, next);
    pthread_mutex_unlock(&h->reload);
    return rc;
}

static enum kf_err store_version(struct kf_store *store, int64_t *version)
{
    struct kf_txn *txn = NULL;
    enum kf_err rc = kf_store_read(store, &txn);
    if (!rc) rc = kf_txn_registry_version(txn, version);
    kf_txn_end(txn);
    return rc;
}

struct kf_snapshot *kf_snapshot_fresh(struct kf_snapshot_holder *h, struct kf_deploy *d)
{
    struct kf_snapshot *cur = kf_snapshot_get(h), *next = NULL;
    int64_t version = 0;

    if (store_version(d->store, &version) != KF_OK) {
        kf_log(KF_LOG_WARN, "registry", "cannot read the registry version", "error", kf_errmsg(),
               NULL);
        kf_err_clear();
        return cur;
    }
    if (version == cur->version && !crl_file_changed(cur)) return cur;
    pthread_mutex_lock(&h->reload);
    /* Someone may have reloaded while this thread waited. */
    kf_snapshot_release(cur);
    cur = kf_snapshot_get(h);
    /* Any other version: a store restored from an older copy counts down, and is followed too. */
    if (cur->version != version || crl_file_changed(cur)) {
        if (kf_snapshot_load(d, &cur->cfg, &next) == KF_OK) {
            kf_snapshot_set(h, kf_snapshot_ref(next));
            kf_snapshot_release(cur);
            cur = next;
            kf_log(KF_LOG_INFO, "registry", "the registry or the CRL changed; reloaded", NULL);
        } else {
            kf_log(KF_LOG_ERROR, "registry", "registry reload failed", "error", kf_errmsg(), NULL);
            kf_err_clear();
        }
    }
    pthread_mutex_unlock(&h->reload);
    return cur;
}
