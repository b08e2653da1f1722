#include "server/daemon.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/jsontext.h"
#include "common/log.h"
#include "common/timefmt.h"
#include "server/ca/checkpoint.h"
#include "server/hub/hub.h"
#include "server/net/listen.h"
#include "server/ops/rollout.h"
#include "server/ops/updates.h"
#include "server/worker.h"

/* The commit hint: every open connection may be about to write an enrollment. */
static size_t open_connections(void *limits)
{
    return (size_t)kf_limits_connections(limits);
}

/* ---- the subsystems ---- */

/* The deployment: its store, the issuing CA's signer, the configuration, the listen address. */
static enum kf_err deployment_open(struct kf_daemon *d)
{
    enum kf_err rc = kf_deploy_open_config(d->dir, d->conf_path, &d->deploy);
    if (rc) return rc;
    rc = kf_deploy_issuer(d->deploy, &d->signer);
    if (rc) return kf_wrap(rc, "cannot use the issuing CA");
    d->prov.conf = d->deploy->cfg.provisioning;
    rc = kf_listen_parse(d->deploy->cfg.provisioning.listen, d->listen_host, sizeof(d->listen_host),
                         &d->listen_port);
    if (!rc) rc = kf_listen_probe(d->listen_host, d->listen_port);
    return rc;
}

static enum kf_err deployment_reload(struct kf_daemon *d, const struct kf_config *cfg)
{
    if (strcmp(cfg->provisioning.listen, d->deploy->cfg.provisioning.listen) != 0 ||
        cfg->provisioning.workers != d->deploy->cfg.provisioning.workers ||
        strcmp(cfg->hub.listen, d->deploy->cfg.hub.listen) != 0)
        kf_log(KF_LOG_WARN, "keyfleetd", "listen and workers change only on restart", NULL);
    d->prov.conf = cfg->provisioning;
    return KF_OK;
}

/* The store closes first: what it still holds completes into the workers' queues. */
static void deployment_stop(struct kf_daemon *d)
{
    if (!d->deploy) return;
    kf_store_close(d->deploy->store);
    d->deploy->store = NULL;
}

static void deployment_free(struct kf_daemon *d)
{
    kf_deploy_close(d->deploy);
    d->deploy = NULL;
}

static enum kf_err tls_open(struct kf_daemon *d)
{
    char cert[KF_CONF_PATH_MAX], key[KF_CONF_PATH_MAX];
    struct kf_tls_conf tc;
    enum kf_err rc = kf_deploy_path(d->deploy, d->deploy->cfg.server.cert, cert, sizeof(cert));
    if (!rc) rc = kf_deploy_path(d->deploy, d->deploy->cfg.server.key, key, sizeof(key));
    memset(&tc, 0, sizeof(tc));
    tc.cert_chain_path = cert;
    tc.key_uri = key;
    tc.session_cache = (unsigned)d->deploy->cfg.provisioning.session_cache;
    if (!rc) rc = kf_tls_new(&tc, &d->tls);
    return rc ? kf_wrap(rc, "cannot set up TLS") : KF_OK;
}

static void tls_free(struct kf_daemon *d)
{
    kf_tls_free(d->tls);
    d->tls = NULL;
}

/* The provisioning listener's limits (the hub has its own), and the store's commit hint. */
static enum kf_err limits_open(struct kf_daemon *d)
{
    enum kf_err rc = kf_limits_new(&d->deploy->cfg.provisioning.limits, &d->limits);
    if (rc) return rc;
    kf_store_commit_hint(d->deploy->store, open_connections, d->limits,
                         (unsigned)d->deploy->cfg.provisioning.commit_delay_us);
    return KF_OK;
}

static enum kf_err limits_reload(struct kf_daemon *d, const struct kf_config *cfg)
{
    kf_limits_configure(d->limits, &cfg->provisioning.limits);
    return KF_OK;
}

/*
 * Gives the heap back to the system after a flood of connections has gone: glibc keeps freed
 * memory in its arenas otherwise, and an attack would leave keyfleetd at its peak for good.
 * Trims when the connections open fell well below the peak since the last trim.
 */
static void limits_tick(struct kf_daemon *d, unsigned quarter)
{
    uint64_t now;
    if (quarter % 4) return;
    now = kf_limits_connections(d->limits) + kf_hub_connections_open(d->hub);
    if (now > d->conn_peak) d->conn_peak = now;
    if (d->conn_peak >= 256 && now < d->conn_peak / 2) {
        malloc_trim(0);
        d->conn_peak = now;
    }
}

static void limits_free(struct kf_daemon *d)
{
    kf_limits_free(d->limits);
    d->limits = NULL;
}

static enum kf_err events_open(struct kf_daemon *d)
{
    return kf_events_new(d->deploy->store, &d->deploy->cfg.events, &d->events);
}

static enum kf_err events_reload(struct kf_daemon *d, const struct kf_config *cfg)
{
    kf_events_configure(d->events, &cfg->events);
    return KF_OK;
}

/* Once a second the aggregated counts are recorded; every ten seconds old events go. */
static void events_tick(struct kf_daemon *d, unsigned quarter)
{
    if (quarter % 4) return;
    kf_events_tick(d->events, kf_now_ms());
    if (quarter % 40 == 0) {
        struct kf_snapshot *cur = kf_snapshot_get(&d->snapshot);
        kf_events_prune(d->events, cur->cfg.events.retention_days, cur->cfg.events.max_rows);
        kf_snapshot_release(cur);
    }
}

/* What the sink still counts is recorded while the store is open. */
static void events_stop(struct kf_daemon *d)
{
    if (d->events) kf_events_tick(d->events, INT64_MAX);
}

static void events_free(struct kf_daemon *d)
{
    kf_events_free(d->events);
    d->events = NULL;
}

static enum kf_err snapshot_open(struct kf_daemon *d)
{
    struct kf_snapshot *reg = NULL;
    enum kf_err rc = kf_snapshot_load(d->deploy, &d->deploy->cfg, &reg);
    if (rc) return rc;
    kf_snapshot_holder_init(&d->snapshot, reg);
    d->have_snapshot = 1;
    return KF_OK;
}

static enum kf_err snapshot_reload(struct kf_daemon *d, const struct kf_config *cfg)
{
    return kf_snapshot_reload(&d->snapshot, d->deploy, cfg);
}

/*
 * Four times a second: a new snapshot when the store's registry version moved (another process,
 * the CLI say, changed it), so that a device disabled or revoked there loses its hub connection
 * within a second.
 */
static void snapshot_tick(struct kf_daemon *d, unsigned quarter)
{
    struct kf_snapshot *now = kf_snapshot_fresh(&d->snapshot, d->deploy);
    if (d->hub && now->generation != d->snapshot_seen) kf_hub_registry_changed(d->hub);
    d->snapshot_seen = now->generation;
    kf_snapshot_release(now);
}

static void snapshot_free(struct kf_daemon *d)
{
    if (d->have_snapshot) kf_snapshot_holder_destroy(&d->snapshot);
    d->have_snapshot = 0;
}

static enum kf_err hub_open(struct kf_daemon *d)
{
    char host[64];
    int port;
    enum kf_err rc;
    if (strcmp(d->deploy->cfg.hub.listen, "off") == 0) return KF_OK;
    rc = kf_listen_parse(d->deploy->cfg.hub.listen, host, sizeof(host), &port);
    if (!rc) rc = kf_listen_probe(host, port);
    if (!rc) rc = kf_hub_new(d->deploy, &d->snapshot, d->events, &d->deploy->cfg, &d->hub);
    return rc;
}

static enum kf_err hub_reload(struct kf_daemon *d, const struct kf_config *cfg)
{
    if (d->hub) kf_hub_configure(d->hub, cfg);
    return KF_OK;
}

static void hub_tick(struct kf_daemon *d, unsigned quarter)
{
    if (d->hub && quarter % 4 == 0) kf_hub_sweep(d->hub);
}

static void hub_free(struct kf_daemon *d)
{
    kf_hub_free(d->hub);
    d->hub = NULL;
}

static void checkpoint(struct kf_daemon *d)
{
    if (kf_checkpoint_make(d->deploy->store, d->signer, NULL) != KF_OK) {
        kf_log(KF_LOG_ERROR, "audit", "cannot checkpoint the audit log", "error", kf_errmsg(),
               NULL);
        kf_err_clear();
    }
}

/* A signed checkpoint of the audit chain's head every [audit] checkpoint_s. */
static void audit_tick(struct kf_daemon *d, unsigned quarter)
{
    struct kf_snapshot *cur;
    if (quarter % 4) return;
    cur = kf_snapshot_get(&d->snapshot);
    if (++d->checkpoint_s >= cur->cfg.audit.checkpoint_s) {
        d->checkpoint_s = 0;
        checkpoint(d);
    }
    kf_snapshot_release(cur);
}

/*
 * The signed-update repository's online roles: a timestamp lives a day and a snapshot a week, so
 * keyfleetd signs new ones before half of that is gone, at start and then once a minute.
 */
static void updates_refresh(struct kf_daemon *d)
{
    int renewed = 0;
    if (kf_updates_refresh(d->deploy, 0, &renewed) != KF_OK)
        kf_log(KF_LOG_WARN, "updates", "cannot renew the repository's timestamp", "error",
               kf_errmsg(), NULL);
    else if (renewed)
        kf_log(KF_LOG_INFO, "updates", "renewed the repository's timestamp", NULL);
    kf_err_clear();
}

static enum kf_err updates_open(struct kf_daemon *d)
{
    updates_refresh(d);
    return kf_rollout_engine_new(&d->rollouts);
}

/* A device offered a release hears it on devices/<id>/updates/available. */
static void rollout_notify(void *arg, const char *device, const char *payload)
{
    struct kf_daemon *d = arg;
    char topic[KF_ID_MAX + 40];
    if (!d->hub) return;
    snprintf(topic, sizeof(topic), "devices/%s/updates/available", device);
    kf_hub_notify(d->hub, topic, payload, strlen(payload));
}

static void updates_tick(struct kf_daemon *d, unsigned quarter)
{
    if (quarter % 240 == 0) updates_refresh(d);
    /* rollouts: reports applied, phases paused or advanced, devices told, every second */
    if (quarter % 4 == 0)
        kf_rollout_tick(d->rollouts, d->deploy, (int64_t)time(NULL), rollout_notify, d);
}

static void updates_free(struct kf_daemon *d)
{
    kf_rollout_engine_free(d->rollouts);
    d->rollouts = NULL;
}

/* A last checkpoint: what this run added to the audit log is vouched for. */
static void audit_stop(struct kf_daemon *d)
{
    if (d->deploy && d->deploy->store && d->signer) checkpoint(d);
}

/* /metrics on the provisioning listeners: the hub's gauges. */
static void hub_gauges(void *arg, struct kf_metrics_gauges *g)
{
    struct kf_daemon *d = arg;
    struct kf_hub_stats hs;
    if (!d->hub) return;
    kf_hub_stats(d->hub, &hs);
    g->hub_connections = hs.connections;
    g->hub_connections_open = kf_hub_connections_open(d->hub);
    g->hub_sessions = hs.sessions;
    g->hub_retained = hs.retained;
    g->hub_queued = hs.queued;
    g->hub_connects = hs.connects;
    g->hub_auth_failed = hs.auth_failed;
    g->hub_refused = hs.refused;
    g->hub_malformed = hs.malformed;
    g->hub_tls_offloaded = hs.tls_offloaded;
    g->hub_acl_denied = hs.acl_denied;
    g->hub_rate_limited = hs.rate_limited;
    g->hub_store_waits = hs.store_waits;
    g->hub_received = hs.messages_received;
    g->hub_sent = hs.messages_sent;
    g->hub_dropped = hs.dropped;
}

/* The workers, each with its provisioning listener (on what the subsystems above made). */
static enum kf_err workers_open(struct kf_daemon *d)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    d->n_workers = d->deploy->cfg.provisioning.workers ? (size_t)d->deploy->cfg.provisioning.workers
                                                       : (size_t)(cores > 0 ? cores : 1);
    d->workers = calloc(d->n_workers, sizeof(*d->workers));
    d->prov.listeners = calloc(d->n_workers, sizeof(*d->prov.listeners));
    if (!d->workers || !d->prov.listeners) return kf_fail(KF_E_NOMEM, "out of memory");
    d->prov.n_listeners = d->n_workers;
    d->prov.deploy = d->deploy;
    d->prov.signer = d->signer;
    d->prov.tls = d->tls;
    d->prov.limits = d->limits;
    d->prov.snapshot = &d->snapshot;
    d->prov.events = d->events;
    d->prov.draining = &d->draining;
    d->prov.gauges_cb = hub_gauges;
    d->prov.gauges_arg = d;
    if (kf_prov_service_init(&d->prov)) return KF_E_NOMEM;
    for (size_t i = 0; i < d->n_workers; i++) {
        enum kf_err rc = kf_worker_new(d, (int)i, &d->workers[i]);
        if (rc) return rc;
    }
    return KF_OK;
}

static enum kf_err workers_start(struct kf_daemon *d)
{
    for (size_t i = 0; i < d->n_workers; i++) {
        enum kf_err rc = kf_worker_start(d->workers[i]);
        if (rc) return rc;
    }
    return KF_OK;
}

static void workers_drain(struct kf_daemon *d)
{
    __atomic_store_n(&d->draining, 1, __ATOMIC_RELAXED);
    for (size_t i = 0; i < d->n_workers; i++)
        if (d->workers[i]) kf_worker_drain(d->workers[i]);
}

static void workers_stop(struct kf_daemon *d)
{
    for (size_t i = 0; d->workers && i < d->n_workers; i++)
        if (d->workers[i]) kf_worker_stop(d->workers[i]);
    for (size_t i = 0; d->workers && i < d->n_workers; i++)
        if (d->workers[i]) kf_worker_join(d->workers[i]);
}

static void workers_free(struct kf_daemon *d)
{
    for (size_t i = 0; d->workers && i < d->n_workers; i++)
        kf_worker_free(d->workers[i]);
    free(d->workers);
    d->workers = NULL;
    d->n_workers = 0;
    free(d->prov.listeners);
    d->prov.listeners = NULL;
    d->prov.n_listeners = 0;
    kf_prov_service_free(&d->prov);
}

/*
 * The subsystems, in the order they are made and started; drained, stopped and freed in the
 * reverse. Each step may be NULL. A subsystem may use those above it in the table.
 */
struct subsystem {
    const char *name;
    enum kf_err (*open)(struct kf_daemon *d);
    enum kf_err (*start)(struct kf_daemon *d);
    enum kf_err (*reload)(struct kf_daemon *d, const struct kf_config *cfg);
    void (*tick)(struct kf_daemon *d, unsigned quarter); /* four times a second */
    void (*drain)(struct kf_daemon *d);
    void (*stop)(struct kf_daemon *d); /* after the drain, or when it took too long */
    void (*free)(struct kf_daemon *d);
};

static const struct subsystem subsystems[] = {
    {"deployment", deployment_open, NULL, deployment_reload, NULL, NULL, deployment_stop,
     deployment_free},
    {"tls", tls_open, NULL, NULL, NULL, NULL, NULL, tls_free},
    {"limits", limits_open, NULL, limits_reload, limits_tick, NULL, NULL, limits_free},
    {"events", events_open, NULL, events_reload, events_tick, NULL, events_stop, events_free},
    {"snapshot", snapshot_open, NULL, NULL, snapshot_tick, NULL, NULL, snapshot_free},
    {"hub", hub_open, NULL, hub_reload, hub_tick, NULL, NULL, hub_free},
    {"audit", NULL, NULL, NULL, audit_tick, NULL, audit_stop, NULL},
    {"updates", updates_open, NULL, NULL, updates_tick, NULL, NULL, updates_free},
    {"workers", workers_open, workers_start, NULL, NULL, workers_drain, workers_stop, workers_free},
};
#define N_SUBSYSTEMS (sizeof(subsystems) / sizeof(subsystems[0]))

enum kf_err kf_daemon_open(struct kf_daemon *d, const char *dir, const char *conf_path)
{
    memset(d, 0, sizeof(*d));
    d->dir = dir;
    d->conf_path = conf_path;
    for (d->opened = 0; d->opened < N_SUBSYSTEMS; d->opened++) {
        const struct subsystem *s = &subsystems[d->opened];
        enum kf_err rc = s->open ? s->open(d) : KF_OK;
        if (rc) {
            /* this one's free too: each frees what it made of itself before it failed */
            d->opened++;
            kf_daemon_close(d);
            return rc;
        }
    }
    return KF_OK;
}

enum kf_err kf_daemon_start(struct kf_daemon *d)
{
    for (size_t i = 0; i < d->opened; i++) {
        enum kf_err rc = subsystems[i].start ? subsystems[i].start(d) : KF_OK;
        if (rc) return rc;
    }
    return KF_OK;
}

void kf_daemon_tick(struct kf_daemon *d, unsigned quarter)
{
    for (size_t i = 0; i < d->opened; i++)
        if (subsystems[i].tick) subsystems[i].tick(d, quarter);
}

struct reload_audit {
    const char *action, *path;
    char *detail;
};

static enum kf_err reload_audit_cb(struct kf_txn *txn, void *arg)
{
    struct reload_audit *a = arg;
    char object[KF_OBJECT_MAX];
    snprintf(object, sizeof(object), "config:%s", a->path);
    return kf_txn_audit_append(txn, "keyfleetd", a->action, object, a->detail);
}

/* A reload, applied or refused, in the audit log with what changed (or why not). */
static void audit_reload(struct kf_daemon *d, const char *action, const char *path, char *detail)
{
    struct reload_audit a = {action, path, detail};
    if (detail && kf_store_write(d->deploy->store, reload_audit_cb, &a) != KF_OK) {
        kf_log(KF_LOG_ERROR, "keyfleetd", "the reload could not be audited", "error", kf_errmsg(),
               NULL);
        kf_err_clear();
    }
    free(detail);
}

void kf_daemon_reload(struct kf_daemon *d)
{
    struct kf_config cfg;
    struct kf_snapshot *cur;
    char path[KF_CONF_PATH_MAX], *changed;
    enum kf_err rc;

    if (d->conf_path)
        snprintf(path, sizeof(path), "%s", d->conf_path);
    else
        snprintf(path, sizeof(path), "%s/%s", d->dir, KF_CONF_NAME);
    rc = kf_config_load(path, &cfg);
    if (rc) {
        kf_log(KF_LOG_ERROR, "keyfleetd", "reload refused: the configuration has an error", "error",
               kf_errmsg(), NULL);
        audit_reload(d, "config.reload_refused", path,
                     kf_jsontext_pack("{s:s}", "error", kf_errmsg()));
        return;
    }
    snprintf(cfg.dir, sizeof(cfg.dir), "%s", d->dir);
    cur = kf_snapshot_get(&d->snapshot);
    changed = kf_config_diff(&cur->cfg, &cfg);
    kf_snapshot_release(cur);
    for (size_t i = 0; i < d->opened; i++) {
        rc = subsystems[i].reload ? subsystems[i].reload(d, &cfg) : KF_OK;
        if (rc) {
            kf_log(KF_LOG_ERROR, "keyfleetd", "reload failed", "part", subsystems[i].name, "error",
                   kf_errmsg(), NULL);
            free(changed);
            return;
        }
    }
    /* Last: the registry's snapshot takes the new configuration whole. */
    rc = snapshot_reload(d, &cfg);
    if (rc) {
        kf_log(KF_LOG_ERROR, "keyfleetd", "reload failed", "error", kf_errmsg(), NULL);
        free(changed);
        return;
    }
    kf_log(KF_LOG_INFO, "keyfleetd", "reloaded", "config", path, "changed", changed, NULL);
    if (changed && strcmp(changed, "{}") != 0) {
        char *detail =
            kf_jsontext_pack("{s:s, s:o}", "file", path, "changed", json_loads(changed, 0, NULL));
        audit_reload(d, "config.reload", path, detail);
    }
    free(changed);
}

void kf_daemon_drain(struct kf_daemon *d)
{
    for (size_t i = d->opened; i-- > 0;)
        if (subsystems[i].drain) subsystems[i].drain(d);
}

int kf_daemon_drained(struct kf_daemon *d)
{
    for (size_t i = 0; i < d->n_workers; i++)
        if (!kf_worker_done(d->workers[i])) return 0;
    return 1;
}

void kf_daemon_close(struct kf_daemon *d)
{
    for (size_t i = d->opened; i-- > 0;)
        if (subsystems[i].stop) subsystems[i].stop(d);
    for (size_t i = d->opened; i-- > 0;)
        if (subsystems[i].free) subsystems[i].free(d);
    d->opened = 0;
}
