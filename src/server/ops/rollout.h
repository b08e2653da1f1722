/*
 * rollout: offering a signed release to a fleet in phases that stop themselves.
 *
 * A rollout names one target of the published (vendor-signed) targets metadata and a fixed set
 * of devices, put in a random order when it is made. Its phases are cumulative percentages
 * ("1,10,50,100"): phase k offers the release to the first ceil(N * p_k / 100) devices of that
 * order. A device asks keyfleetd what it is to install (kf_rollout_assigned: the release of the
 * newest rollout for its hardware that has offered it one, if that rollout is running or
 * completed; a paused or aborted one offers nothing, not an older one either) and is told on its
 * MQTT topic devices/<id>/updates/available when it is offered one; whatever it is offered, it
 * installs only a vendor-signed target for its hardware above its installed version, so this is the
 * server's choice among signed releases, never a way to install or downgrade anything
 * (docs/updates.md).
 *
 * What each device reports (its update.* events) moves its row: pending, downloading, verified,
 * installing, installed, confirmed; or failed, reverted, refused (a downgrade it would not take).
 * keyfleetd's engine (kf_rollout_tick, every second) applies those reports, and for each running
 * rollout: when more than max_failures of the current phase's devices failed, or of all the
 * devices offered it so far (beyond failures an operator accepted by resuming), it pauses the
 * rollout and raises `update.rollout_paused`; else,
 * once the phase has soaked, it offers the next phase, and after the last one the rollout is
 * completed (with --min-done, only once that share of the phase's devices has installed it or
 * failed: devices that never report then hold the rollout instead of letting it run on). Every
 * change, the engine's too, is in the audit log.
 */
#ifndef KF_SERVER_OPS_ROLLOUT_H
#define KF_SERVER_OPS_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "server/ca/deploy.h"

#define KF_ROLLOUT_PHASES_MAX  20
#define KF_ROLLOUT_SOAK_MAX    (30L * 86400) /* 30 days */
#define KF_ROLLOUT_DEVICES_MAX 1000000 /* each rollout's devices are written in one transaction */

struct kf_rollout_spec {
    const char *release; /* a target path of the published targets metadata */
    /* the devices: exactly one of all, enrollment, devices (active devices only) */
    int all;
    const char *enrollment;
    char *const *devices; /* device ids */
    size_t n_devices;
    int phases[KF_ROLLOUT_PHASES_MAX]; /* cumulative percentages, rising, the last 100 */
    size_t n_phases;
    int64_t soak_s;      /* how long a phase runs before the next one */
    int max_failures_bp; /* failures of a phase's devices that pause it, in 1/10,000 */
    int min_done_bp;     /* a phase advances only once this share of its devices is done
                            (installed, confirmed or failed), in 1/10,000; 0: on its soak */
};

/* "1,10,50,100" into `s->phases` (errors name the bad part). */
enum kf_err kf_rollout_parse_phases(const char *text, struct kf_rollout_spec *s);
/* "2%", "0.5%", "2" (percent) into 1/10,000 (0..10,000). */
enum kf_err kf_rollout_parse_percent(const char *text, int *bp);
/* "30s", "10m", "2h", "1d", "0" into seconds (at most KF_ROLLOUT_SOAK_MAX). */
enum kf_err kf_rollout_parse_duration(const char *text, int64_t *seconds);

/*
 * Makes a rollout and offers its first phase at once: the release must be published (with its
 * hardware and version) and not revoked, the devices must exist and be active (a list names the
 * first that is not). Running or paused rollouts for the same hardware are aborted (superseded: the
 * newest decides what a device is offered). Audited "rollout.create" (and "rollout.abort"). `*id`
 * is the new rollout's, `*n_devices` (may be NULL) how many devices it holds.
 */
enum kf_err kf_rollout_create(struct kf_deploy *d, const char *actor,
                              const struct kf_rollout_spec *s, int64_t *id, int64_t *n_devices);

/*
 * Aborts the running, paused or completed rollouts of release `name` (a release revoked:
 * keyfleet release revoke), each audited "rollout.abort"; `*n` (may be NULL) says how many.
 */
enum kf_err kf_rollout_end_release(struct kf_deploy *d, const char *actor, const char *name,
                                   const char *reason, int64_t *n);

enum kf_rollout_action { KF_ROLLOUT_PAUSE = 1, KF_ROLLOUT_RESUME, KF_ROLLOUT_ABORT };

/*
 * pause (a running rollout), resume (a paused one: the failures seen so far in its phase are
 * accepted and the phase soaks again from now), abort (running or paused: nothing more is
 * offered). `reason` (may be NULL) goes to the audit record. KF_E_INVALID for a change the
 * state does not allow, saying why.
 */
enum kf_err kf_rollout_act(struct kf_deploy *d, const char *actor, int64_t id,
                           enum kf_rollout_action a, const char *reason);

/*
 * A rollout as JSON: its settings, state, phase, and per-phase and per-state device counts.
 * `*out` owned by the caller.
 */
enum kf_err kf_rollout_show(struct kf_store *store, int64_t id, json_t **out);
/* Every rollout as kf_rollout_show gives it, oldest first (a JSON array). */
enum kf_err kf_rollout_list(struct kf_store *store, json_t **out);

/*
 * What `device` is offered: {"rollout": id, "target": path, "version": v} from the newest
 * rollout for `hardware` that offered it one if that one is running or completed, else all
 * three null.
 */
enum kf_err kf_rollout_assigned(struct kf_store *store, const char *device, const char *hardware,
                                json_t **out);

/* keyfleetd's engine: what it told devices so far (in memory). */
struct kf_rollout_engine;
enum kf_err kf_rollout_engine_new(struct kf_rollout_engine **out);
void kf_rollout_engine_free(struct kf_rollout_engine *e);

/* Tells `device` that it is offered a release: `payload` is JSON (borrowed for the call). */
typedef void (*kf_rollout_notify_cb)(void *arg, const char *device, const char *payload);

/*
 * One step of the engine at `now` (seconds): applies the devices' reports, pauses, advances and
 * completes rollouts, and tells the devices offered a release since the last step through
 * `notify` (at most a few thousand a step; the rest at the next). Writes only when something
 * changed. Errors are logged and retried at the next step.
 */
void kf_rollout_tick(struct kf_rollout_engine *e, struct kf_deploy *d, int64_t now,
                     kf_rollout_notify_cb notify, void *arg);

#endif
