/*
 * hub: keyfleetd's MQTT 3.1.1 and 5.0 service over mutually authenticated TLS.
 *
 * Every worker has a second SO_REUSEPORT listener on the hub's address, in the same event loop
 * as provisioning. The handshake requires a client certificate from keyfleet's issuing CA,
 * checked against the CRL in memory; a refused handshake is a `hub.auth_failed` event naming
 * the reason. The identity comes from the certificate's URI SANs (a device id, or a service name
 * and role); the MQTT client id must be it (an empty one is given it), user names and passwords
 * are ignored, and the device's status is checked at CONNECT and whenever the registry changes,
 * so `keyfleet device disable` closes a live connection within a second.
 *
 * What each identity may publish and subscribe to is hub_acl's; the sessions and routing are
 * the broker's; the packets are mqtt_codec's. This file is the connection state machine and the
 * protections: per-address connection counts and rates, handshakes in flight, an allow/deny
 * list, per-connection message and byte rates, the packet size, flapping detection, and the
 * events (hub.connected, hub.disconnected, hub.acl_denied, hub.rate_limited, hub.flapping,
 * hub.unusual_ip, and the device's own events from devices/<id>/events).
 */
#ifndef KF_SERVER_HUB_HUB_H
#define KF_SERVER_HUB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "server/ca/config.h"
#include "server/ca/deploy.h"
#include "server/store/events.h"
#include "server/ops/snapshot.h"

struct kf_hubd;
struct kf_hub_worker;
struct event_base;

/* Counters, summed over the workers for /metrics. */
struct kf_hub_stats {
    uint64_t connections;       /* MQTT sessions connected now */
    uint64_t connects;          /* CONNECTs accepted */
    uint64_t auth_failed;       /* handshakes or CONNECTs refused for identity */
    uint64_t refused;           /* connections refused by a limit or the allow/deny list */
    uint64_t malformed;         /* connections closed for a malformed packet or protocol error */
    uint64_t acl_denied;        /* PUBLISH or SUBSCRIBE entries refused */
    uint64_t rate_limited;      /* PUBLISH packets over a rate */
    uint64_t messages_received; /* PUBLISH packets accepted */
    uint64_t messages_sent;     /* PUBLISH packets written */
    uint64_t tls_offloaded;     /* connections whose records tlsrec took over from OpenSSL */
    uint64_t store_waits;       /* times a connection's reading paused for the store */
    uint64_t sessions, retained, queued, dropped;
};

/*
 * Makes the hub from the deployment: its TLS context (the server certificate, client
 * certificates from the issuing CA), its broker and limits, configured from `cfg`. `registry`,
 * `deploy` and `events` (the sink its refusals go through) are borrowed for the hub's life.
 */
enum kf_err kf_hub_new(struct kf_deploy *deploy, struct kf_snapshot_holder *snapshot,
                       struct kf_events *events, const struct kf_config *cfg, struct kf_hubd **out);
void kf_hub_free(struct kf_hubd *h);

/* Takes the limits of a new configuration (SIGHUP); listen changes only on restart. */
void kf_hub_configure(struct kf_hubd *h, const struct kf_config *cfg);

/* Ends offline sessions past their expiry and forgets old flapping records (any thread). */
void kf_hub_sweep(struct kf_hubd *h);

/*
 * The registry changed (any thread): every worker looks at its live connections now instead of
 * at its next tick, so a disabled device is gone at once.
 */
void kf_hub_registry_changed(struct kf_hubd *h);

/*
 * Publishes `payload` (len bytes, borrowed) from keyfleetd itself to `topic` at QoS 1, not
 * retained: to the device's session if it has one (a persistent session keeps it while the
 * device is away). Any thread. Returns the number of sessions it was queued for.
 */
size_t kf_hub_notify(struct kf_hubd *h, const char *topic, const void *payload, size_t len);

/* Connections open on the hub's listeners now (TLS not done yet included). Any thread. */
uint64_t kf_hub_connections_open(struct kf_hubd *h);

/* Sums the workers' counters and the broker's. */
void kf_hub_stats(struct kf_hubd *h, struct kf_hub_stats *out);

/*
 * The hub's part of worker `index`: its listener (SO_REUSEPORT on the hub's address) in `base`.
 * `idle_cb(idle_arg)` runs in the worker's thread when the last hub connection of a draining
 * worker has closed. Errors name the address.
 */
enum kf_err kf_hub_worker_new(struct kf_hubd *h, struct event_base *base, int index,
                              void (*idle_cb)(void *), void *idle_arg, struct kf_hub_worker **out);

/* In the worker's thread: stop accepting; tell every client the server is shutting down. */
void kf_hub_worker_drain(struct kf_hub_worker *hw);

/* Connections open on this worker's hub listener. */
size_t kf_hub_worker_conns(const struct kf_hub_worker *hw);

/* Closes what is left and frees the worker's part (after its loop has ended). */
void kf_hub_worker_free(struct kf_hub_worker *hw);

#endif
