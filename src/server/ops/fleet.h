/*
 * fleet: operator actions on devices: disable, enable, revoke. Audited in the same transaction.
 */
#ifndef KF_SERVER_OPS_FLEET_H
#define KF_SERVER_OPS_FLEET_H

#include "server/ca/deploy.h"

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

/*
 * Moves device `id` to enrollment `enrollment` (it must exist): from then on that enrollment's
 * factory identity for the id may provision it, and no other. A device belongs to the enrollment
 * that created it, so this is the only way another one takes it over; audited (device.move,
 * with from and to). `from` (may be NULL, KF_ID_MAX + 1 bytes) receives its enrollment before.
 * KF_E_REVOKED for a revoked device; KF_OK with nothing written when it is there already.
 */
enum kf_err kf_fleet_move(struct kf_deploy *d, const char *actor, const char *id,
                          const char *enrollment, char *from);

#endif
