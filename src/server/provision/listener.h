/*
 * listener: the provisioning listener on one worker's loop: its HTTPS connections (through
 * net/accept), requests one after another under a deadline each, the routes (EST under
 * /.well-known/est/, with CA labels; the register API; /healthz; /metrics) and their answers.
 * A request that needs the store hands a job to the store's committer and waits; its completion
 * comes back to this loop, and only then does the answer leave. Nothing blocks the loop.
 */
#ifndef KF_SERVER_PROVISION_LISTENER_H
#define KF_SERVER_PROVISION_LISTENER_H

#include <stddef.h>

#include <event2/event.h>

#include "common/err.h"
#include "common/http.h"
#include "server/ca/deploy.h"
#include "server/net/accept.h"
#include "server/net/limits.h"
#include "server/net/tls.h"
#include "server/ops/snapshot.h"
#include "server/provision/metrics.h"
#include "server/store/events.h"

struct kf_prov_listener;
struct kf_prov_dl_ids; /* per-identity download counts */

/* What every provisioning listener shares; read-mostly, owned by keyfleetd's daemon. */
struct kf_prov_service {
    struct kf_deploy *deploy;            /* the store */
    struct kf_signer *signer;            /* the issuing CA */
    struct kf_tls *tls;                  /* the provisioning listener's TLS */
    struct kf_limits *limits;            /* its connection, handshake and request limits */
    struct kf_snapshot_holder *snapshot; /* the snapshot decisions are made from */
    struct kf_events *events;            /* the sink refusals go through */
    struct kf_prov_conf conf;            /* [provisioning], as keyfleet.conf sets it */
    const int *draining;                 /* atomic: keyfleetd is stopping */
    unsigned downloads;                  /* atomic: signed-update files being sent */
    struct kf_prov_dl_ids *dl_ids;       /* ... to each identity (kf_prov_service_init) */
    struct kf_prov_listener **listeners; /* every worker's, for /metrics */
    size_t n_listeners;
    /* /metrics: the gauges of the rest of keyfleetd (the hub's), filled in by the daemon */
    void (*gauges_cb)(void *arg, struct kf_metrics_gauges *g);
    void *gauges_arg;
};

/* Makes and frees what the listeners of `svc` share beyond the fields the daemon fills in. */
enum kf_err kf_prov_service_init(struct kf_prov_service *svc);
void kf_prov_service_free(struct kf_prov_service *svc);

/*
 * A provisioning listener on `base` over the listening socket `fd` (taken: closed on failure
 * too). `svc` is borrowed for its life. While draining, `idle_cb(idle_arg)` runs when its last
 * connection goes. `*out` owned by the caller.
 */
enum kf_err kf_prov_listener_new(struct kf_prov_service *svc, struct event_base *base,
                                 evutil_socket_t fd, void (*idle_cb)(void *), void *idle_arg,
                                 struct kf_prov_listener **out);

/* Stops accepting; idle connections close now, busy ones after their answer. On its loop. */
void kf_prov_listener_drain(struct kf_prov_listener *l);

/* Connections open (0 for NULL). */
size_t kf_prov_listener_conns(const struct kf_prov_listener *l);

/* Answers what the store finished, closes what is open and frees `l`; its loop stands still. */
void kf_prov_listener_free(struct kf_prov_listener *l);

#endif
