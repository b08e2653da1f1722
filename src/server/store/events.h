/*
 * events: security events recorded without waiting for the store, and bounded.
 *
 * keyfleetd's event loops never wait for a commit: an event joins the store's next group
 * commit and the loop goes on. Events are lazy store requests, with a queue budget of their own
 * (KF_STORE_LAZY_MAX), so a flood of them never takes the room enrollments need; when that queue
 * is full an event is dropped and counted. Every event is also logged.
 *
 * Refusals, which an attacker can cause at will, go through the sink (struct kf_events): the
 * first of a kind (its type, reason, identity and source address) in an interval is recorded at
 * once, and the others of that interval are counted and recorded as one event at its end, with
 * "repeats" (how many) and "interval_s", carrying the last one's detail. Recording the first of
 * each kind also takes a token from a bucket shared by all (`rate` per second, `burst`), and
 * the kinds tracked are bounded (`max_kinds`): what is over either is counted into one
 * `events.suppressed` event per interval. So neither one source nor many (addresses spread over
 * the Internet) can write more than about rate + 2 * max_kinds / interval events a second.
 *
 * An identity that did not verify is recorded as `claimed`, never as the event's device.
 */
#ifndef KF_SERVER_STORE_EVENTS_H
#define KF_SERVER_STORE_EVENTS_H

#include <stdint.h>

#include "common/conf.h"
#include "server/store/store.h"

/*
 * Queues the event `type` ("hub.connected") with `severity` ("info", "warning", "critical")
 * for the verified `device` and the unverified `claimed` identity (each NULL or "" for none; an
 * invalid device id is left out; a claimed one is quoted and shortened), from `source`
 * ("server", "device"), seen from `ip` (may be NULL). `detail` (JSON object text, may be NULL)
 * is taken: it is freed whatever happens. Not aggregated: for what happens at most once per
 * connection or per operator action. Thread-safe. Returns 0 when it was dropped.
 */
int kf_events_submit(struct kf_store *store, const char *type, const char *severity,
                     const char *device, const char *claimed, const char *source, const char *ip,
                     char *detail);

/*
 * Records that `actor` was refused a name because the other namespace holds it (a service named
 * like a device, a device id that is a service's name): a `registry.name_conflict` event with
 * the name, what it was wanted for ("device", "service") and the refusal `why`, which is left as
 * this thread's error (KF_E_CONFLICT) for the caller to report.
 */
void kf_events_name_conflict(struct kf_store *store, const char *actor, const char *name,
                             const char *wanted, const char *why);

struct kf_events;

struct kf_events_conf {
    int interval_s;     /* repeats of one kind are counted this long, then recorded as one */
    double rate, burst; /* first-of-a-kind events recorded per second in all, and the burst */
    unsigned max_kinds; /* kinds counted at once (0: 4096) */
    int retention_days; /* events older than this are deleted (0: kept for ever) */
    int max_rows;       /* and the oldest beyond this many (0: no bound) */
};

/* [events]: the struct above, as keyfleet.conf sets it. */
extern const struct kf_conf_section kf_events_section;

/* The defaults of [events]: 10 s, 100/s with a burst of 1000, 30 days, a million rows. */
void kf_events_conf_default(struct kf_events_conf *c);

/* keyfleetd's sink over `store` (borrowed for its life). `*out` owned by the caller. */
enum kf_err kf_events_new(struct kf_store *store, const struct kf_events_conf *conf,
                          struct kf_events **out);

/*
 * Frees the sink. What it still counts is lost: call kf_events_tick(ev, INT64_MAX) first, while
 * the store is open, to record it. No kf_events_note may run during or after this.
 */
void kf_events_free(struct kf_events *ev);

/* Takes a new configuration (SIGHUP); what is counted stays. Thread-safe. */
void kf_events_configure(struct kf_events *ev, const struct kf_events_conf *conf);

/* Who and where an event is about: each may be NULL. */
struct kf_event_who {
    const char *device;  /* a verified device id */
    const char *claimed; /* an identity that did not verify, as presented */
    const char *ip;      /* the source address */
};

/*
 * A repeatable event, source "server": `reason` (static or borrowed, may be NULL) tells kinds of
 * the same type apart (a refusal's code). `detail` is taken. Thread-safe; never blocks on I/O.
 */
void kf_events_note(struct kf_events *ev, const char *type, const char *severity,
                    const char *reason, const struct kf_event_who *who, char *detail);

/*
 * Records the counts of intervals ended by `now_ms` (INT64_MAX: all of them, as at a stop).
 * keyfleetd's main loop calls it each second.
 */
void kf_events_tick(struct kf_events *ev, int64_t now_ms);

/*
 * Retention: deletes events older than `retention_days` (0: none by age) and the oldest beyond
 * `max_rows` (0: no bound), in batches that never hold the store long, without waiting. A prune
 * still running makes this a no-op. keyfleetd calls it every few seconds.
 */
void kf_events_prune(struct kf_events *ev, int retention_days, int64_t max_rows);

struct kf_events_stats {
    uint64_t recorded;   /* events handed to the store (summaries included) */
    uint64_t aggregated; /* counted into a summary instead of recorded one by one */
    uint64_t suppressed; /* over the rate or the kinds, counted into events.suppressed */
    uint64_t dropped;    /* the store's event queue was full */
    uint64_t pruned;     /* deleted by retention */
};
void kf_events_stats(struct kf_events *ev, struct kf_events_stats *out);

#endif
