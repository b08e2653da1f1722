/*
 * metrics: keyfleetd's counters, kept per worker thread without locks, and their rendering in
 * the Prometheus text exposition format 0.0.4 (served at GET /metrics).
 *
 * Each worker embeds one `struct kf_metrics` and is its only writer; the thread that renders
 * reads every worker's struct with relaxed atomic loads and sums them. A counter is one aligned
 * 64-bit word updated by a relaxed atomic load and store (no read-modify-write is needed with
 * one writer), so a reader sees each counter either before or after an update, never torn, and
 * never going backwards. Nothing on the recording path allocates, locks or fails. Every pointer
 * argument below is borrowed for the call; nothing is kept.
 *
 * What is exported; names and labels are stable (dashboards and alerts depend on them):
 *
 *   keyfleet_http_requests_total{endpoint, status}    counter
 *       HTTP requests answered. endpoint: cacerts, simpleenroll, simplereenroll, csrattrs,
 *       register, healthz, metrics, other. status: the HTTP status code, one of 200 204 400 401
 *       403 404 405 408 409 411 413 414 415 429 431 500 501 503 505, or "other". A series
 *       appears once its combination has been counted (160 mostly-zero series would swamp
 *       every scrape).
 *   keyfleet_enrollments_total{kind}                  counter
 *       Certificates issued. kind: simpleenroll, simplereenroll, register.
 *   keyfleet_refusals_total{reason}                   counter
 *       Requests refused, by the reasons of enum kf_refusal (kf_refusal_name()).
 *   keyfleet_tls_handshakes_total{result}             counter
 *       TLS handshakes. result: full, resumed, failed.
 *   keyfleet_request_duration_seconds                 histogram
 *       Time taken to answer a request. Buckets (le): 0.001 0.0025 0.005 0.01 0.025 0.05 0.1
 *       0.25 0.5 1 2.5 5 +Inf, with _bucket, _sum and _count.
 *   keyfleet_connections_open                         gauge
 *   keyfleet_handshakes_in_flight                     gauge
 *   keyfleet_store_queue_depth                        gauge
 *       Supplied by the caller at render time (struct kf_metrics_gauges).
 * Series with a fixed label set (enrollments, refusals, handshakes, the histogram, the gauges)
 * are always present, 0 until counted, so that rate() and alerts see them from the start.
 */
#ifndef KF_SERVER_PROVISION_METRICS_H
#define KF_SERVER_PROVISION_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "server/provision/refusal.h"

/* The Content-Type of a GET /metrics answer. */
#define KF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A buffer with this maximum always holds a rendering (every series at its largest value). */
#define KF_METRICS_RENDER_MAX (64 * 1024)

/* The most worker structs kf_metrics_render sums. */
#define KF_METRICS_WORKERS_MAX 1024

/* Durations are clamped to [0, this] seconds before they are counted. */
#define KF_METRICS_DURATION_CAP 1000000.0

/* X(enumerator suffix, label value) */
#define KF_ENDPOINT_MAP(X)              \
    X(CACERTS, "cacerts")               \
    X(SIMPLEENROLL, "simpleenroll")     \
    X(SIMPLEREENROLL, "simplereenroll") \
    X(CSRATTRS, "csrattrs")             \
    X(REGISTER, "register")             \
    X(HEALTHZ, "healthz")               \
    X(METRICS, "metrics")               \
    X(UPDATES, "updates")               \
    X(OTHER, "other")

/* What a request asked for. */
enum kf_endpoint {
#define KF_ENDPOINT_ENUM_(name, label) KF_EP_##name,
    KF_ENDPOINT_MAP(KF_ENDPOINT_ENUM_)
#undef KF_ENDPOINT_ENUM_
        KF_EP_COUNT
};

/* What kind of request a certificate was issued for. */
enum kf_issue_kind {
    KF_ISSUE_SIMPLEENROLL = 0,
    KF_ISSUE_SIMPLEREENROLL,
    KF_ISSUE_REGISTER,
    KF_ISSUE_COUNT
};

/* How a TLS handshake ended. */
enum kf_handshake_result {
    KF_HANDSHAKE_FULL = 0,
    KF_HANDSHAKE_RESUMED,
    KF_HANDSHAKE_FAILED,
    KF_HANDSHAKE_COUNT
};

#define KF_METRICS_STATUS_COUNT 20 /* the 19 status codes counted one by one, and "other" */
#define KF_METRICS_BUCKETS      13 /* 12 finite bucket bounds and +Inf */

/*
 * One worker's counters. Zero-initialised (or kf_metrics_init) it is ready. The fields are
 * private: they are written only by the kf_metrics_* recording functions, on the worker's own
 * thread, and read only by kf_metrics_render.
 */
struct kf_metrics {
    uint64_t requests[KF_EP_COUNT][KF_METRICS_STATUS_COUNT];
    uint64_t enrollments[KF_ISSUE_COUNT];
    uint64_t refusals[KF_REFUSAL_COUNT];
    uint64_t handshakes[KF_HANDSHAKE_COUNT];
    uint64_t duration_bucket[KF_METRICS_BUCKETS]; /* per bucket (not cumulative); last: +Inf */
    uint64_t duration_sum_ns;
};

/* Values of the gauges, read by the caller just before rendering. */
struct kf_metrics_gauges {
    uint64_t connections_open;
    uint64_t handshakes_in_flight;
    uint64_t store_queue_depth;
    uint64_t store_writes;  /* a counter: writes the store ran */
    uint64_t store_commits; /* a counter: transactions it committed (writes share them) */
    /* the hub (all 0 without one) */
    uint64_t hub_connections, hub_sessions, hub_retained, hub_queued;
    uint64_t hub_connections_open; /* sockets the hub holds, before CONNECT and while closing too */
    uint64_t hub_connects, hub_auth_failed, hub_refused, hub_malformed, hub_acl_denied,
        hub_rate_limited, hub_received, hub_sent, hub_dropped, hub_tls_offloaded,
        hub_store_waits; /* counters */
    /* the CRL in use (0 without one): its number, and when it stops being valid (Unix time) */
    uint64_t crl_number, crl_next_update;
};

/* Zeroes `m`. Only before the worker starts writing (it is not atomic). */
void kf_metrics_init(struct kf_metrics *m);

/* The label of `ep` ("simpleenroll"); "other" for values out of range. Static, never NULL. */
const char *kf_endpoint_name(enum kf_endpoint ep);

/*
 * Counts one answered request to `ep` with HTTP `status` that took `seconds` (clamped to
 * [0, KF_METRICS_DURATION_CAP]; NaN counts as 0). A status outside the table counts as
 * "other", an endpoint out of range as KF_EP_OTHER. `m` is the calling worker's own (borrowed).
 */
void kf_metrics_request(struct kf_metrics *m, enum kf_endpoint ep, int status, double seconds);

/* Counts one certificate issued for a request of `kind`. `kind` must be in range (asserted). */
void kf_metrics_enrollment(struct kf_metrics *m, enum kf_issue_kind kind);

/* Counts one refusal for `reason`. `reason` must be in range (asserted). */
void kf_metrics_refusal(struct kf_metrics *m, enum kf_refusal reason);

/* Counts one TLS handshake that ended with `result`. `result` must be in range (asserted). */
void kf_metrics_handshake(struct kf_metrics *m, enum kf_handshake_result result);

/*
 * Appends the exposition of the sum of `workers[0..n)` (borrowed; NULL elements are skipped)
 * and the gauges `g` (borrowed; NULL leaves the three gauges out) to `out`. Safe while the
 * workers keep writing: each counter is read once, atomically, and the histogram's _count is
 * its +Inf bucket, so the two always agree. Fails with KF_E_INVALID when `n` exceeds
 * KF_METRICS_WORKERS_MAX, KF_E_OVERSIZE when `out` cannot hold the text (a maximum of
 * KF_METRICS_RENDER_MAX always suffices); on failure `out` is left as it was.
 */
enum kf_err kf_metrics_render(struct kf_metrics *const *workers, size_t n,
                              const struct kf_metrics_gauges *g, struct kf_buf *out);

/*
 * Appends `value` (borrowed, NUL-terminated) escaped as a label value of the exposition format:
 * backslash, double quote and line feed become \\, \" and \n. For callers that render their own
 * series beside these.
 */
enum kf_err kf_metrics_label_escape(const char *value, struct kf_buf *out);

#endif
