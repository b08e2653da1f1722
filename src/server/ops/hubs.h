/*
 * hubs: the deployment's MQTT hubs, the endpoints keyfleetd assigns devices to.
 *
 * A hub has a name (an id), an endpoint `host:port` that devices connect to, a weight and an
 * enabled flag. Hashed allocation (kf_hub_assign) spreads devices over the enabled hubs in
 * proportion to their weights; a weight of 0 takes no new devices. An enrollment with static
 * allocation names one hub, which therefore cannot be removed while it does.
 * Every change is audited in the same transaction; a refused change changes nothing.
 */
#ifndef KF_SERVER_OPS_HUBS_H
#define KF_SERVER_OPS_HUBS_H

#include <stddef.h>
#include <stdint.h>

#include "server/ca/deploy.h"

#define KF_HUB_WEIGHT_MAX     1000
#define KF_HUB_WEIGHT_DEFAULT 1

/*
 * Checks `endpoint` (borrowed) and writes its canonical form into `out` (capacity `cap`; at
 * least KF_ENDPOINT_MAX). An endpoint is `host:port`: the host a DNS name (no wildcard), an IPv4
 * address, or an IPv6 address in brackets (`[::1]:8883`); the port 1 to 65535. The canonical
 * form has the DNS name in lower case, the IPv6 address compressed (RFC 5952) and the port
 * without leading zeros, so that one endpoint has one spelling. KF_E_INVALID with a sentence
 * naming what is wrong.
 */
enum kf_err kf_hubs_endpoint_check(const char *endpoint, char *out, size_t cap);

/*
 * Adds hub `name` at `endpoint` with `weight` (0 to KF_HUB_WEIGHT_MAX), enabled. KF_E_INVALID for
 * a bad name, endpoint or weight; KF_E_EXISTS when a hub has that name or that endpoint. Strings
 * are borrowed.
 */
enum kf_err kf_hubs_add(struct kf_deploy *d, const char *actor, const char *name,
                        const char *endpoint, int weight);

/*
 * Removes hub `name`. KF_E_NOT_FOUND when there is none; KF_E_CONFLICT, naming the enrollment,
 * when an enrollment allocates statically to it. Devices assigned to it keep the name until they
 * register again and get another hub.
 */
enum kf_err kf_hubs_remove(struct kf_deploy *d, const char *actor, const char *name);

/*
 * Enables or disables hub `name`. `*changed` (may be NULL) says whether it changed; no change
 * means no audit record. KF_E_NOT_FOUND when there is none.
 */
enum kf_err kf_hubs_set_enabled(struct kf_deploy *d, const char *actor, const char *name,
                                int enabled, int *changed);

/*
 * Sets the weight of hub `name` (0 to KF_HUB_WEIGHT_MAX). `*changed` (may be NULL) says whether it
 * changed; no change means no audit record. KF_E_NOT_FOUND when there is none.
 */
enum kf_err kf_hubs_set_weight(struct kf_deploy *d, const char *actor, const char *name, int weight,
                               int *changed);

/*
 * Counts, in `txn`, the devices assigned to hub `name`: all of them into `*all` and the active
 * ones into `*active` (either may be NULL). The store has no count by hub, so this walks every
 * device: fine for the CLI, not for a hot path.
 */
enum kf_err kf_hubs_count_devices(struct kf_txn *txn, const char *name, int64_t *all,
                                  int64_t *active);

/*
 * Calls `cb(enrollment, arg)` in `txn` for each enrollment that allocates statically to hub
 * `name`, in id order; a non-zero return from `cb` stops and is returned. The record is borrowed
 * for the call.
 */
enum kf_err kf_hubs_static_enrollments(struct kf_txn *txn, const char *name,
                                       enum kf_err (*cb)(const struct kf_enrollment_rec *e,
                                                         void *arg),
                                       void *arg);

#endif
