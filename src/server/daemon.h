/*
 * daemon: keyfleetd's subsystems (the deployment, TLS, limits, events, the registry snapshot,
 * the hub, the audit checkpoints, the workers) and what they share, owned through one table in
 * daemon.c: each subsystem is made, started, reloaded, ticked, drained, stopped and freed there,
 * in table order (and the reverse to stop and free). keyfleetd.c parses the flags, owns the
 * signals and calls these.
 */
#ifndef KF_SERVER_DAEMON_H
#define KF_SERVER_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "server/ca/deploy.h"
#include "server/net/limits.h"
#include "server/net/tls.h"
#include "server/ops/snapshot.h"
#include "server/provision/listener.h"
#include "server/store/events.h"

struct kf_worker;
struct kf_hubd;

/* What the workers share; read-mostly. Made by kf_daemon_open, freed by kf_daemon_close. */
struct kf_rollout_engine;

struct kf_daemon {
    struct kf_deploy *deploy; /* the store and the issuing CA's signer */
    struct kf_signer *signer; /* borrowed from deploy */
    struct kf_tls *tls;
    struct kf_limits *limits;
    struct kf_snapshot_holder snapshot; /* what the listeners decide from */
    int have_snapshot;
    struct kf_prov_service prov; /* what the provisioning listeners share */
    char listen_host[64];
    int listen_port;
    struct kf_hubd *hub;      /* NULL: no hub */
    struct kf_events *events; /* the sink refusals go through */
    int draining;             /* atomic: stop accepting, finish what is in flight */
    struct kf_worker **workers;
    size_t n_workers;
    /* the main thread's own */
    const char *dir;        /* the deployment (borrowed) */
    const char *conf_path;  /* NULL: DIR/keyfleet.conf (borrowed) */
    uint64_t snapshot_seen; /* the snapshot generation the hub was told of */
    uint64_t conn_peak;     /* connections at their peak since the heap was last trimmed */
    struct kf_rollout_engine *rollouts; /* phased software rollouts */
    int checkpoint_s;                   /* seconds since the last audit checkpoint */
    size_t opened;                      /* subsystems made, in table order */
};

/*
 * Opens the deployment in `dir` (its configuration from `conf_path`, or DIR/keyfleet.conf when
 * NULL; both borrowed for the daemon's life) and makes every subsystem, checking what would stop it
 * from serving (listen addresses, certificates). On failure the error names the problem and
 * what was made is freed (kf_daemon_close is still safe to call).
 */
enum kf_err kf_daemon_open(struct kf_daemon *d, const char *dir, const char *conf_path);

/* Starts the worker threads. */
enum kf_err kf_daemon_start(struct kf_daemon *d);

/* The main thread's clock: called four times a second (`quarter` counts the calls). */
void kf_daemon_tick(struct kf_daemon *d, unsigned quarter);

/* SIGHUP: reads the configuration again; a bad one is refused (logged and audited). */
void kf_daemon_reload(struct kf_daemon *d);

/* Stops accepting; what is in flight goes on. */
void kf_daemon_drain(struct kf_daemon *d);

/* 1 once every worker has finished what it had. */
int kf_daemon_drained(struct kf_daemon *d);

/* Stops what is left, then frees every subsystem in the reverse of the table's order. */
void kf_daemon_close(struct kf_daemon *d);

#endif
