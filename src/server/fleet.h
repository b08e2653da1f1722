/*
 * fleet: operator actions on devices: disable, enable, revoke. Audited in the same transaction.
 */
#ifndef KF_SERVER_FLEET_H
#define KF_SERVER_FLEET_H

#include "server/deploy.h"

/*
 * Disables (`enable` 0) or enables an active/disabled device. `*changed` (may be NULL) says
 * whether the status changed; no change means no audit record. A revoked device cannot be
 * enabled (KF_E_REVOKED).
 */
enum kf_err kf_fleet_set_enabled(struct kf_deploy *d, const char *actor, const char *id, int enable,
                                 int *changed);

/*
 * Revokes device `id` for good: its status becomes revoked, each of its valid certificates is
 * revoked with `reason`, and a new CRL is published. `*count` (may be NULL) receives how many
 * certificates were revoked. KF_E_CONFLICT when the device is already revoked.
 */
enum kf_err kf_fleet_revoke(struct kf_deploy *d, const char *actor, const char *id, int reason,
                            int *count);

#endif
