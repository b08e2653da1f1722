/*
 * keyfleetd: the keyfleet service: zero-touch provisioning (EST, RFC 7030, and the register API)
 * over mutually authenticated HTTPS, and the device hub (MQTT 3.1.1 and 5.0 over mutual TLS).
 *
 *   keyfleetd [--dir DIR] [--config FILE]
 *
 * Signals: SIGTERM (or SIGINT) stops accepting, lets requests in flight finish (up to
 * drain_timeout_ms) and exits 0; SIGHUP reloads the configuration's limits, the enrollments,
 * the hubs and the CRL without dropping connections. Exit codes: 0 after a clean stop, 1 when
 * it cannot start, 2 for a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "common/log.h"
#include "common/timefmt.h"
#include "server/ca/checkpoint.h"
#include "server/ca/deploy.h"
#include "server/hub/hub.h"
#include "common/jsontext.h"
#include "server/ops/registry.h"
#include "server/net/listen.h"
#include "server/worker.h"

static const char usage[] =
    "usage: keyfleetd [--dir DIR] [--config FILE]\n"
    "\n"
    "Serves the keyfleet deployment in DIR (default $KEYFLEET_DIR or ./keyfleet-data):\n"
    "  provisioning ([provisioning] listen, default :8443): EST (RFC 7030) at\n"
    "    /.well-known/est/ and the register API at /api/v1/register, over mutually\n"
    "    authenticated TLS, plus /healthz and /metrics;\n"
    "  the hub ([hub] listen, default :8883; \"off\" for none): MQTT 3.1.1 and 5.0 over\n"
    "    mutual TLS for devices and service identities with keyfleet certificates.\n"
    "\n"
    "  --dir DIR      the deployment made by `keyfleet init`\n"
    "  --config FILE  read this configuration instead of DIR/keyfleet.conf (paths in it still\n"
    "                 mean DIR)\n"
    "\n"
    "SIGTERM or SIGINT: finish requests in flight and exit. SIGHUP: reload the configuration's\n"
    "and hub limits, the enrollments, hubs and CRL. KEYFLEET_LOG sets the log level (debug, info, "
    "warn,\n"
    "error); logs are logfmt lines on stderr.\n";

static void events_from(const struct kf_config *c, struct kf_events_conf *e)
{
    kf_events_conf_default(e);
    e->interval_s = c->events_aggregate_s;
    e->rate = c->events_rate;
    e->burst = c->events_burst;
}

static void limits_from(const struct kf_config *c, struct kf_limits_conf *l)
{
    memset(l, 0, sizeof(*l));
    l->max_conns_per_ip = (unsigned)c->max_connections_per_ip;
    l->max_conns = (unsigned)c->max_connections;
    l->rate_per_ip = c->rate_per_ip;
    l->burst_per_ip = c->rate_burst;
    l->max_handshakes = (unsigned)c->max_handshakes;
    l->max_conns_per_net = (unsigned)c->max_connections_per_net;
    l->max_handshakes_per_ip = (unsigned)c->max_handshakes_per_ip;
    l->max_handshakes_per_net = (unsigned)c->max_handshakes_per_net;
}

/* The commit hint: every open connection may be about to write an enrollment. */
static size_t open_connections(void *limits)
{
    return (size_t)kf_limits_connections(limits);
}

static int fail(const char *what)
{
    fprintf(stderr, "keyfleetd: %s%s%s\n", what ? what : "", what ? ": " : "", kf_errmsg());
    return 1;
}

/*
 * Gives the heap back to the system after a flood of connections has gone: glibc keeps freed
 * memory in its arenas otherwise, and an attack would leave keyfleetd at its peak for good.
 * Called once a second; trims when the connections open fell well below the peak since the
 * last trim.
 */
static void trim_after_flood(struct kf_daemon *svc, uint64_t *peak)
{
    uint64_t now = kf_limits_connections(svc->limits) + kf_hub_connections_open(svc->hub);
    if (now > *peak) *peak = now;
    if (*peak >= 256 && now < *peak / 2) {
        malloc_trim(0);
        *peak = now;
    }
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
static void audit_reload(struct kf_daemon *svc, const char *action, const char *path, char *detail)
{
    struct reload_audit a = {action, path, detail};
    if (detail && kf_store_write(svc->deploy->store, reload_audit_cb, &a) != KF_OK) {
        kf_log(KF_LOG_ERROR, "keyfleetd", "the reload could not be audited", "error", kf_errmsg(),
               NULL);
        kf_err_clear();
    }
    free(detail);
}

/* SIGHUP: the configuration's limits, then everything the registry holds. */
static void reload(struct kf_daemon *svc, const char *dir, const char *conf_path)
{
    struct kf_config cfg;
    struct kf_limits_conf lc;
    struct kf_events_conf ec;
    struct kf_registry *cur;
    char path[KF_CONF_PATH_MAX], *changed;
    enum kf_err rc;

    if (conf_path)
        snprintf(path, sizeof(path), "%s", conf_path);
    else
        snprintf(path, sizeof(path), "%s/%s", dir, KF_CONF_NAME);
    rc = kf_config_load(path, &cfg);
    if (rc) {
        kf_log(KF_LOG_ERROR, "keyfleetd", "reload refused: the configuration has an error", "error",
               kf_errmsg(), NULL);
        audit_reload(svc, "config.reload_refused", path,
                     kf_jsontext_pack("{s:s}", "error", kf_errmsg()));
        return;
    }
    snprintf(cfg.dir, sizeof(cfg.dir), "%s", dir);
    if (strcmp(cfg.provisioning_listen, svc->deploy->cfg.provisioning_listen) != 0 ||
        cfg.workers != svc->deploy->cfg.workers ||
        strcmp(cfg.hub_listen, svc->deploy->cfg.hub_listen) != 0)
        kf_log(KF_LOG_WARN, "keyfleetd", "listen and workers change only on restart", NULL);
    limits_from(&cfg, &lc);
    kf_limits_configure(svc->limits, &lc);
    events_from(&cfg, &ec);
    kf_events_configure(svc->events, &ec);
    if (svc->hub) kf_hub_configure(svc->hub, &cfg);
    svc->request_timeout_ms = cfg.request_timeout_ms;
    svc->hello_timeout_ms = cfg.hello_timeout_ms;
    svc->handshake_timeout_ms = cfg.handshake_timeout_ms;
    svc->retry_after = (unsigned)cfg.retry_after;
    svc->approval_retry_after = (unsigned)cfg.approval_retry_after;
    cur = kf_registry_get(&svc->registry);
    changed = kf_config_diff(&cur->cfg, &cfg);
    kf_registry_release(cur);
    rc = kf_registry_reload(&svc->registry, svc->deploy, &cfg);
    if (rc) {
        kf_log(KF_LOG_ERROR, "keyfleetd", "reload failed", "error", kf_errmsg(), NULL);
        free(changed);
        return;
    }
    kf_log(KF_LOG_INFO, "keyfleetd", "reloaded", "config", path, "changed", changed, NULL);
    if (changed && strcmp(changed, "{}") != 0) {
        char *detail =
            kf_jsontext_pack("{s:s, s:o}", "file", path, "changed", json_loads(changed, 0, NULL));
        audit_reload(svc, "config.reload", path, detail);
    }
    free(changed);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("KEYFLEET_DIR");
    const char *dir = env && *env ? env : "keyfleet-data", *conf_path = NULL;
    struct kf_daemon svc;
    struct kf_registry *reg = NULL;
    struct kf_tls_conf tc;
    struct kf_limits_conf lc;
    char cert[KF_CONF_PATH_MAX], key[KF_CONF_PATH_MAX], workers_text[16];
    sigset_t sigs;
    long cores;
    int opt, status = 1, stopping = 0;
    unsigned ticks = 0;
    uint64_t seen_generation = 0, conn_peak = 0;
    int checkpoint_ticks = 0; /* seconds since the last checkpoint */
    struct timespec stop_at = {0, 0};
    enum kf_err rc;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': dir = optarg; break;
        case 'c': conf_path = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("keyfleetd %s\n", KF_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "keyfleetd: unexpected argument '%s'\n\n%s", argv[optind], usage);
        return 2;
    }
    kf_log_init_from_env();

    /* Signals go to this thread only (sigtimedwait below); workers never see them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    memset(&svc, 0, sizeof(svc));
    rc = kf_deploy_open_config(dir, conf_path, &svc.deploy);
    if (rc) return fail(NULL);
    rc = kf_deploy_issuer(svc.deploy, &svc.signer);
    if (rc) {
        status = fail("cannot use the issuing CA");
        goto out;
    }
    rc = kf_listen_parse(svc.deploy->cfg.provisioning_listen, svc.listen_host,
                         sizeof(svc.listen_host), &svc.listen_port);
    if (!rc) rc = kf_listen_probe(svc.listen_host, svc.listen_port);
    if (rc) {
        status = fail(NULL);
        goto out;
    }
    rc = kf_deploy_path(svc.deploy, svc.deploy->cfg.server_cert, cert, sizeof(cert));
    if (!rc) rc = kf_deploy_path(svc.deploy, svc.deploy->cfg.server_key, key, sizeof(key));
    memset(&tc, 0, sizeof(tc));
    tc.cert_chain_path = cert;
    tc.key_uri = key;
    tc.session_cache = (unsigned)svc.deploy->cfg.session_cache;
    if (!rc) rc = kf_tls_new(&tc, &svc.tls);
    if (rc) {
        status = fail("cannot set up TLS");
        goto out;
    }
    limits_from(&svc.deploy->cfg, &lc);
    rc = kf_limits_new(&lc, &svc.limits);
    if (!rc) {
        struct kf_events_conf ec;
        events_from(&svc.deploy->cfg, &ec);
        rc = kf_events_new(svc.deploy->store, &ec, &svc.events);
    }
    if (!rc) rc = kf_registry_load(svc.deploy, &svc.deploy->cfg, &reg);
    if (rc) {
        status = fail(NULL);
        goto out;
    }
    kf_registry_holder_init(&svc.registry, reg);
    if (strcmp(svc.deploy->cfg.hub_listen, "off") != 0) {
        char host[64];
        int port;
        rc = kf_listen_parse(svc.deploy->cfg.hub_listen, host, sizeof(host), &port);
        if (!rc) rc = kf_listen_probe(host, port);
        if (!rc) rc = kf_hub_new(svc.deploy, &svc.registry, svc.events, &svc.deploy->cfg, &svc.hub);
        if (rc) {
            status = fail(NULL);
            goto out;
        }
    }
    kf_store_commit_hint(svc.deploy->store, open_connections, svc.limits,
                         (unsigned)svc.deploy->cfg.commit_delay_us);
    svc.http.max_head = (size_t)svc.deploy->cfg.max_header_bytes;
    svc.http.max_body = (size_t)svc.deploy->cfg.max_body_bytes;
    svc.request_timeout_ms = svc.deploy->cfg.request_timeout_ms;
    svc.hello_timeout_ms = svc.deploy->cfg.hello_timeout_ms;
    svc.handshake_timeout_ms = svc.deploy->cfg.handshake_timeout_ms;
    svc.retry_after = (unsigned)svc.deploy->cfg.retry_after;
    svc.approval_retry_after = (unsigned)svc.deploy->cfg.approval_retry_after;
    cores = sysconf(_SC_NPROCESSORS_ONLN);
    svc.n_workers =
        svc.deploy->cfg.workers ? (size_t)svc.deploy->cfg.workers : (size_t)(cores > 0 ? cores : 1);
    svc.workers = calloc(svc.n_workers, sizeof(*svc.workers));
    if (!svc.workers) {
        kf_fail(KF_E_NOMEM, "out of memory");
        status = fail(NULL);
        goto out;
    }
    for (size_t i = 0; i < svc.n_workers; i++) {
        rc = kf_worker_new(&svc, (int)i, &svc.workers[i]);
        if (rc) {
            status = fail(NULL);
            goto out;
        }
    }
    for (size_t i = 0; i < svc.n_workers; i++) {
        rc = kf_worker_start(svc.workers[i]);
        if (rc) {
            status = fail(NULL);
            stopping = 1;
            goto stop;
        }
    }
    snprintf(workers_text, sizeof(workers_text), "%zu", svc.n_workers);
    kf_log(KF_LOG_INFO, "keyfleetd", "serving", "provisioning", svc.deploy->cfg.provisioning_listen,
           "hub", svc.hub ? svc.deploy->cfg.hub_listen : "off", "workers", workers_text, "dir", dir,
           NULL);

    /*
     * The main thread waits for signals, and looks at the registry version four times a second,
     * so that a device disabled or revoked by the CLI loses its hub connection within a second.
     */
    for (;;) {
        struct timespec tick = {0, stopping ? 20000000 : 250000000};
        siginfo_t info;
        int sig = sigtimedwait(&sigs, &info, &tick);
        if (sig == SIGHUP) {
            reload(&svc, dir, conf_path);
        } else if (sig == SIGTERM || sig == SIGINT) {
            if (stopping) break; /* a second signal: stop now */
            stopping = 1;
            kf_log(KF_LOG_INFO, "keyfleetd", "stopping: finishing requests in flight", NULL);
            __atomic_store_n(&svc.draining, 1, __ATOMIC_RELAXED);
            for (size_t i = 0; i < svc.n_workers; i++)
                kf_worker_drain(svc.workers[i]);
            clock_gettime(CLOCK_MONOTONIC, &stop_at);
            stop_at.tv_sec += svc.deploy->cfg.drain_timeout_ms / 1000;
            stop_at.tv_nsec += (long)(svc.deploy->cfg.drain_timeout_ms % 1000) * 1000000L;
        } else if (sig < 0 && errno == EAGAIN && !stopping) {
            struct kf_registry *now = kf_registry_fresh(&svc.registry, svc.deploy);
            if (svc.hub && now->generation != seen_generation) kf_hub_registry_changed(svc.hub);
            seen_generation = now->generation;
            kf_registry_release(now);
            if (++ticks % 4 == 0) {
                struct kf_registry *cur = kf_registry_get(&svc.registry);
                if (svc.hub) kf_hub_sweep(svc.hub);
                kf_events_tick(svc.events, kf_now_ms());
                trim_after_flood(&svc, &conn_peak);
                if (++checkpoint_ticks >= cur->cfg.audit_checkpoint_s) {
                    checkpoint_ticks = 0;
                    if (kf_checkpoint_make(svc.deploy->store, svc.signer, NULL) != KF_OK) {
                        kf_log(KF_LOG_ERROR, "audit", "cannot checkpoint the audit log", "error",
                               kf_errmsg(), NULL);
                        kf_err_clear();
                    }
                }
                if (ticks % 40 == 0) /* every ten seconds */
                    kf_events_prune(svc.events, cur->cfg.events_retention_days,
                                    cur->cfg.events_max_rows);
                kf_registry_release(cur);
            }
        }
        if (stopping) {
            struct timespec now;
            size_t done = 0;
            for (size_t i = 0; i < svc.n_workers; i++)
                done += (size_t)kf_worker_done(svc.workers[i]);
            if (done == svc.n_workers) break;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec > stop_at.tv_sec ||
                (now.tv_sec == stop_at.tv_sec && now.tv_nsec >= stop_at.tv_nsec)) {
                kf_log(KF_LOG_WARN, "keyfleetd", "drain timeout: closing what is left", NULL);
                break;
            }
        }
    }
    status = 0;
stop:
    for (size_t i = 0; i < svc.n_workers; i++)
        if (svc.workers[i]) kf_worker_stop(svc.workers[i]);
    for (size_t i = 0; i < svc.n_workers; i++)
        kf_worker_join(svc.workers[i]);
out:
    /* What the event sink still counts is recorded; then the store closes, first: what it
     * still holds completes into the workers' queues. */
    if (svc.events) kf_events_tick(svc.events, INT64_MAX);
    /* A last checkpoint: what this run added to the audit log is vouched for. */
    if (svc.deploy && svc.signer && kf_checkpoint_make(svc.deploy->store, svc.signer, NULL)) {
        kf_log(KF_LOG_ERROR, "audit", "cannot checkpoint the audit log", "error", kf_errmsg(),
               NULL);
        kf_err_clear();
    }
    if (svc.deploy) {
        kf_store_close(svc.deploy->store);
        svc.deploy->store = NULL;
    }
    for (size_t i = 0; svc.workers && i < svc.n_workers; i++)
        kf_worker_free(svc.workers[i]);
    free(svc.workers);
    if (reg) kf_registry_holder_destroy(&svc.registry);
    kf_hub_free(svc.hub);
    kf_events_free(svc.events);
    kf_limits_free(svc.limits);
    kf_tls_free(svc.tls);
    kf_deploy_close(svc.deploy);
    if (status == 0) kf_log(KF_LOG_INFO, "keyfleetd", "stopped", NULL);
    return status;
}
