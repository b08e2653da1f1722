/*
 * events: security events recorded without waiting for the store.
 *
 * keyfleetd's event loops never wait for a commit: an event joins the store's next group
 * commit and the loop goes on. When the store's queue is full the event is dropped and a
 * warning logged (an attack that floods events must not stall the hub or provisioning).
 * Every event is also logged, so an operator watching the log sees it at once.
 */
#ifndef KF_SERVER_EVENTS_H
#define KF_SERVER_EVENTS_H

#include "server/store.h"

/*
 * Queues the event `type` ("hub.acl_denied") with `severity` ("info", "warning", "critical")
 * for `device` (NULL or "" for none; an invalid id is left out), from `source` ("server",
 * "device"), seen from `ip` (may be NULL). `detail` (JSON object text, may be NULL) is taken:
 * it is freed whatever happens. Thread-safe.
 */
void kf_events_submit(struct kf_store *store, const char *type, const char *severity,
                      const char *device, const char *source, const char *ip, char *detail);

/*
 * Records that `actor` was refused a name because the other namespace holds it (a service named
 * like a device, a device id that is a service's name): a `registry.name_conflict` event with
 * the name, what it was wanted for ("device", "service") and the refusal `why`, which is left as
 * this thread's error (KF_E_CONFLICT) for the caller to report.
 */
void kf_events_name_conflict(struct kf_store *store, const char *actor, const char *name,
                             const char *wanted, const char *why);

#endif
