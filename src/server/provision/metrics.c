/* Per-worker counters and their Prometheus text exposition (format 0.0.4). */
#include "server/provision/metrics.h"

#include <inttypes.h>
#include <string.h>

/* The status codes counted one by one; anything else is "other" (the last slot). */
static const int status_codes[KF_METRICS_STATUS_COUNT - 1] = {
    200, 204, 400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 415, 429, 431, 500, 501, 503, 505,
};

/*
 * Bucket bounds in nanoseconds, so that placing an observation compares integers: 0.001 s is
 * exactly 1000000 ns, where the double 0.001 is not exactly a thousandth.
 */
static const uint64_t bucket_ns[KF_METRICS_BUCKETS - 1] = {
    1000000,   2500000,   5000000,   10000000,   25000000,   50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000,
};
static const char *const bucket_le[KF_METRICS_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",  "0.5",    "1",     "2.5",  "5",     "+Inf",
};

static const char *const issue_names[KF_ISSUE_COUNT] = {"simpleenroll", "simplereenroll",
                                                        "register"};
static const char *const handshake_names[KF_HANDSHAKE_COUNT] = {"full", "resumed", "failed"};

/* One writer per counter: a relaxed load and store is enough, and cheaper than an atomic add. */
static void bump(uint64_t *c, uint64_t by)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

static uint64_t peek(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

void kf_metrics_init(struct kf_metrics *m)
{
    memset(m, 0, sizeof(*m));
}

const char *kf_endpoint_name(enum kf_endpoint ep)
{
    switch (ep) {
#define KF_ENDPOINT_NAME_(name, label) \
    case KF_EP_##name: return label;
        KF_ENDPOINT_MAP(KF_ENDPOINT_NAME_)
#undef KF_ENDPOINT_NAME_
    case KF_EP_COUNT: break;
    }
    return "other";
}

static size_t status_index(int status)
{
    for (size_t i = 0; i < KF_ARRAY_LEN(status_codes); i++)
        if (status_codes[i] == status) return i;
    return KF_METRICS_STATUS_COUNT - 1;
}

void kf_metrics_request(struct kf_metrics *m, enum kf_endpoint ep, int status, double seconds)
{
    uint64_t ns;
    size_t b = 0;

    if ((unsigned)ep >= KF_EP_COUNT) ep = KF_EP_OTHER;
    bump(&m->requests[ep][status_index(status)], 1);
    /* `!(seconds > 0)` also catches NaN. */
    if (!(seconds > 0))
        ns = 0;
    else if (seconds >= KF_METRICS_DURATION_CAP)
        ns = (uint64_t)(KF_METRICS_DURATION_CAP * 1e9);
    else
        ns = (uint64_t)(seconds * 1e9 + 0.5);
    while (b < KF_ARRAY_LEN(bucket_ns) && ns > bucket_ns[b])
        b++;
    bump(&m->duration_bucket[b], 1);
    bump(&m->duration_sum_ns, ns);
}

void kf_metrics_enrollment(struct kf_metrics *m, enum kf_issue_kind kind)
{
    KF_ASSERT((unsigned)kind < KF_ISSUE_COUNT);
    bump(&m->enrollments[kind], 1);
}

void kf_metrics_refusal(struct kf_metrics *m, enum kf_refusal reason)
{
    KF_ASSERT((unsigned)reason < KF_REFUSAL_COUNT);
    bump(&m->refusals[reason], 1);
}

void kf_metrics_handshake(struct kf_metrics *m, enum kf_handshake_result result)
{
    KF_ASSERT((unsigned)result < KF_HANDSHAKE_COUNT);
    bump(&m->handshakes[result], 1);
}

enum kf_err kf_metrics_label_escape(const char *value, struct kf_buf *out)
{
    enum kf_err rc = KF_OK;
    for (const char *p = value; *p && !rc; p++) {
        if (*p == '\\')
            rc = kf_buf_append(out, "\\\\", 2);
        else if (*p == '"')
            rc = kf_buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            rc = kf_buf_append(out, "\\n", 2);
        else
            rc = kf_buf_append(out, p, 1);
    }
    return rc;
}

/* Adds every counter of `m` into `sum` (a plain, private snapshot). */
static void add_worker(struct kf_metrics *sum, const struct kf_metrics *m)
{
    for (size_t e = 0; e < KF_EP_COUNT; e++)
        for (size_t s = 0; s < KF_METRICS_STATUS_COUNT; s++)
            sum->requests[e][s] += peek(&m->requests[e][s]);
    for (size_t i = 0; i < KF_ISSUE_COUNT; i++)
        sum->enrollments[i] += peek(&m->enrollments[i]);
    for (size_t i = 0; i < KF_REFUSAL_COUNT; i++)
        sum->refusals[i] += peek(&m->refusals[i]);
    for (size_t i = 0; i < KF_HANDSHAKE_COUNT; i++)
        sum->handshakes[i] += peek(&m->handshakes[i]);
    for (size_t i = 0; i < KF_METRICS_BUCKETS; i++)
        sum->duration_bucket[i] += peek(&m->duration_bucket[i]);
    sum->duration_sum_ns += peek(&m->duration_sum_ns);
}

static enum kf_err header(struct kf_buf *out, const char *name, const char *type, const char *help)
{
    return kf_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} count */
static enum kf_err sample1(struct kf_buf *out, const char *name, const char *label,
                           const char *value, uint64_t count)
{
    enum kf_err rc = kf_buf_appendf(out, "%s{%s=\"", name, label);
    if (!rc) rc = kf_metrics_label_escape(value, out);
    if (!rc) rc = kf_buf_appendf(out, "\"} %" PRIu64 "\n", count);
    return rc;
}

/* Nanoseconds as exact decimal seconds without trailing zeros: 1500000000 -> "1.5". */
static enum kf_err seconds_text(struct kf_buf *out, uint64_t ns)
{
    char frac[16];
    int n;
    if (ns % 1000000000 == 0) return kf_buf_appendf(out, "%" PRIu64, ns / 1000000000);
    n = snprintf(frac, sizeof(frac), "%09" PRIu64, ns % 1000000000);
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    return kf_buf_appendf(out, "%" PRIu64 ".%s", ns / 1000000000, frac);
}

static enum kf_err render_requests(const struct kf_metrics *s, struct kf_buf *out)
{
    static const char name[] = "keyfleet_http_requests_total";
    enum kf_err rc =
        header(out, name, "counter", "HTTP requests answered, by endpoint and status.");
    for (size_t e = 0; e < KF_EP_COUNT && !rc; e++) {
        for (size_t st = 0; st < KF_METRICS_STATUS_COUNT && !rc; st++) {
            char status[16];
            if (!s->requests[e][st]) continue;
            if (st < KF_ARRAY_LEN(status_codes))
                snprintf(status, sizeof(status), "%d", status_codes[st]);
            else
                memcpy(status, "other", sizeof("other"));
            rc = kf_buf_appendf(out, "%s{endpoint=\"", name);
            if (!rc) rc = kf_metrics_label_escape(kf_endpoint_name((enum kf_endpoint)e), out);
            if (!rc) rc = kf_buf_append_str(out, "\",status=\"");
            if (!rc) rc = kf_metrics_label_escape(status, out);
            if (!rc) rc = kf_buf_appendf(out, "\"} %" PRIu64 "\n", s->requests[e][st]);
        }
    }
    return rc;
}

static enum kf_err render_counters(const struct kf_metrics *s, struct kf_buf *out)
{
    static const char enr[] = "keyfleet_enrollments_total", ref[] = "keyfleet_refusals_total",
                      tls[] = "keyfleet_tls_handshakes_total";
    enum kf_err rc = header(out, enr, "counter", "Certificates issued, by kind of request.");
    for (size_t i = 0; i < KF_ISSUE_COUNT && !rc; i++)
        rc = sample1(out, enr, "kind", issue_names[i], s->enrollments[i]);
    if (!rc) rc = header(out, ref, "counter", "Requests refused, by reason.");
    for (size_t i = 0; i < KF_REFUSAL_COUNT && !rc; i++)
        rc = sample1(out, ref, "reason", kf_refusal_name((enum kf_refusal)i), s->refusals[i]);
    if (!rc) rc = header(out, tls, "counter", "TLS handshakes, by result.");
    for (size_t i = 0; i < KF_HANDSHAKE_COUNT && !rc; i++)
        rc = sample1(out, tls, "result", handshake_names[i], s->handshakes[i]);
    return rc;
}

static enum kf_err render_histogram(const struct kf_metrics *s, struct kf_buf *out)
{
    static const char name[] = "keyfleet_request_duration_seconds";
    uint64_t cumulative = 0;
    enum kf_err rc = header(out, name, "histogram", "Time taken to answer HTTP requests.");
    for (size_t b = 0; b < KF_METRICS_BUCKETS && !rc; b++) {
        cumulative += s->duration_bucket[b];
        rc = kf_buf_appendf(out, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, bucket_le[b],
                            cumulative);
    }
    if (!rc) rc = kf_buf_appendf(out, "%s_sum ", name);
    if (!rc) rc = seconds_text(out, s->duration_sum_ns);
    /* The count is the +Inf bucket, read once: the two cannot disagree mid-update. */
    if (!rc) rc = kf_buf_appendf(out, "\n%s_count %" PRIu64 "\n", name, cumulative);
    return rc;
}

static enum kf_err render_gauges(const struct kf_metrics_gauges *g, struct kf_buf *out)
{
    const struct {
        const char *name, *type, *help;
        uint64_t value;
    } series[] = {
        {"keyfleet_connections_open", "gauge", "Client connections open.", g->connections_open},
        {"keyfleet_handshakes_in_flight", "gauge", "TLS handshakes under way.",
         g->handshakes_in_flight},
        {"keyfleet_store_queue_depth", "gauge", "Writes waiting for the store.",
         g->store_queue_depth},
        {"keyfleet_store_writes_total", "counter", "Writes the store ran.", g->store_writes},
        {"keyfleet_store_commits_total", "counter",
         "Transactions the store committed; concurrent writes share one (group commit).",
         g->store_commits},
        {"keyfleet_hub_connections", "gauge", "MQTT clients connected to the hub.",
         g->hub_connections},
        {"keyfleet_hub_connections_open", "gauge",
         "Sockets the hub holds, counted against its per-address limits (before CONNECT and "
         "while closing too).",
         g->hub_connections_open},
        {"keyfleet_hub_sessions", "gauge", "MQTT sessions held, online or persistent.",
         g->hub_sessions},
        {"keyfleet_hub_retained", "gauge", "Retained messages held.", g->hub_retained},
        {"keyfleet_hub_queued", "gauge", "Messages queued for sessions.", g->hub_queued},
        {"keyfleet_hub_connects_total", "counter", "MQTT CONNECTs accepted.", g->hub_connects},
        {"keyfleet_hub_auth_failed_total", "counter",
         "Hub handshakes or CONNECTs refused for identity.", g->hub_auth_failed},
        {"keyfleet_hub_refused_total", "counter",
         "Hub connections refused by a limit, a ban or the allow/deny list.", g->hub_refused},
        {"keyfleet_hub_malformed_total", "counter",
         "Hub connections closed for a malformed packet or a protocol error.", g->hub_malformed},
        {"keyfleet_hub_acl_denied_total", "counter", "PUBLISH or SUBSCRIBE entries refused.",
         g->hub_acl_denied},
        {"keyfleet_hub_tls_offloaded_total", "counter",
         "Hub connections whose TLS records keyfleet took over from OpenSSL once idle.",
         g->hub_tls_offloaded},
        {"keyfleet_hub_rate_limited_total", "counter", "PUBLISH packets over a rate limit.",
         g->hub_rate_limited},
        {"keyfleet_hub_messages_received_total", "counter", "PUBLISH packets accepted.",
         g->hub_received},
        {"keyfleet_hub_messages_sent_total", "counter", "PUBLISH packets sent to clients.",
         g->hub_sent},
        {"keyfleet_hub_messages_dropped_total", "counter",
         "Messages dropped because a session's queue was full.", g->hub_dropped},
        {"keyfleet_hub_store_waits_total", "counter",
         "Times a hub connection's reading paused until its writes to the store came back.",
         g->hub_store_waits},
        {"keyfleet_crl_number", "gauge", "The number of the CRL keyfleetd checks against.",
         g->crl_number},
        {"keyfleet_crl_next_update_seconds", "gauge",
         "When that CRL stops being valid (Unix time); past it every certificate is refused.",
         g->crl_next_update},
    };
    enum kf_err rc = KF_OK;
    for (size_t i = 0; i < KF_ARRAY_LEN(series) && !rc; i++) {
        rc = header(out, series[i].name, series[i].type, series[i].help);
        if (!rc) rc = kf_buf_appendf(out, "%s %" PRIu64 "\n", series[i].name, series[i].value);
    }
    return rc;
}

enum kf_err kf_metrics_render(struct kf_metrics *const *workers, size_t n,
                              const struct kf_metrics_gauges *g, struct kf_buf *out)
{
    struct kf_metrics sum;
    size_t start = out->len;
    enum kf_err rc;

    if (n > KF_METRICS_WORKERS_MAX)
        return kf_fail(KF_E_INVALID, "cannot render the metrics of %zu workers (at most %d)", n,
                       KF_METRICS_WORKERS_MAX);
    memset(&sum, 0, sizeof(sum));
    for (size_t i = 0; i < n; i++)
        if (workers[i]) add_worker(&sum, workers[i]);
    rc = render_requests(&sum, out);
    if (!rc) rc = render_counters(&sum, out);
    if (!rc) rc = render_histogram(&sum, out);
    if (!rc && g) rc = render_gauges(g, out);
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = '\0';
        return kf_wrap(rc, "rendering the metrics");
    }
    return KF_OK;
}
