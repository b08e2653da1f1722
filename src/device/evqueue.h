/*
 * evqueue: the device's security events, queued durably in a bounded file until the hub has
 * acknowledged them, so that what happens while the device is offline (or just before it
 * crashes) still reaches the fleet, in order, once.
 *
 * Two files in the data directory: `events.log` (one "<seq> <json>" line an event, appended and
 * fdatasynced) and `events.acked` (the highest sequence number the hub acknowledged, replaced
 * atomically). A torn last line after a crash is dropped. When the log would pass its bound the
 * acknowledged lines are compacted away; if it is still full, the oldest events are dropped and
 * counted (kf_evq_dropped), so the newest always get in.
 */
#ifndef KF_DEVICE_EVQUEUE_H
#define KF_DEVICE_EVQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct kf_evq;

/* Opens (creating) the queue in `dir`, at most `max_bytes` of log. */
enum kf_err kf_evq_open(const char *dir, size_t max_bytes, struct kf_evq **out);
void kf_evq_close(struct kf_evq *q);

/* Appends one event (a JSON text, borrowed) durably; `*seq` gets its number. */
enum kf_err kf_evq_append(struct kf_evq *q, const char *json, uint64_t *seq);

/*
 * The first unacknowledged event whose number is above `after`: its number and text (valid until
 * the next change to the queue). 0 when there is none.
 */
int kf_evq_next(const struct kf_evq *q, uint64_t after, uint64_t *seq, const char **json);

/* Records that the hub acknowledged every event up to `seq`. */
enum kf_err kf_evq_ack(struct kf_evq *q, uint64_t seq);

/* Unacknowledged events, and events dropped because the log was full (since open). */
size_t kf_evq_pending(const struct kf_evq *q);
uint64_t kf_evq_dropped(const struct kf_evq *q);

#endif
