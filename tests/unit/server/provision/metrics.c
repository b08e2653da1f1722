/* metrics: the exposition text, line for line; sums across workers; writers racing a reader. */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common/buf.h"
#include "server/provision/metrics.h"

/* The exposition of an idle daemon, exactly. */
static const char idle_text[] =
    "# HELP keyfleet_http_requests_total HTTP requests answered, by endpoint and status.\n"
    "# TYPE keyfleet_http_requests_total counter\n"
    "# HELP keyfleet_enrollments_total Certificates issued, by kind of request.\n"
    "# TYPE keyfleet_enrollments_total counter\n"
    "keyfleet_enrollments_total{kind=\"simpleenroll\"} 0\n"
    "keyfleet_enrollments_total{kind=\"simplereenroll\"} 0\n"
    "keyfleet_enrollments_total{kind=\"register\"} 0\n"
    "# HELP keyfleet_refusals_total Requests refused, by reason.\n"
    "# TYPE keyfleet_refusals_total counter\n"
    "keyfleet_refusals_total{reason=\"client_certificate_required\"} 0\n"
    "keyfleet_refusals_total{reason=\"certificate_invalid\"} 0\n"
    "keyfleet_refusals_total{reason=\"certificate_revoked\"} 0\n"
    "keyfleet_refusals_total{reason=\"enrollment_not_found\"} 0\n"
    "keyfleet_refusals_total{reason=\"enrollment_disabled\"} 0\n"
    "keyfleet_refusals_total{reason=\"group_unverified\"} 0\n"
    "keyfleet_refusals_total{reason=\"device_disabled\"} 0\n"
    "keyfleet_refusals_total{reason=\"device_revoked\"} 0\n"
    "keyfleet_refusals_total{reason=\"network_denied\"} 0\n"
    "keyfleet_refusals_total{reason=\"csr_invalid\"} 0\n"
    "keyfleet_refusals_total{reason=\"csr_rejected\"} 0\n"
    "keyfleet_refusals_total{reason=\"subject_mismatch\"} 0\n"
    "keyfleet_refusals_total{reason=\"bad_request\"} 0\n"
    "keyfleet_refusals_total{reason=\"method_not_allowed\"} 0\n"
    "keyfleet_refusals_total{reason=\"not_found\"} 0\n"
    "keyfleet_refusals_total{reason=\"unsupported_media_type\"} 0\n"
    "keyfleet_refusals_total{reason=\"rate_limited\"} 0\n"
    "keyfleet_refusals_total{reason=\"overloaded\"} 0\n"
    "keyfleet_refusals_total{reason=\"body_too_large\"} 0\n"
    "keyfleet_refusals_total{reason=\"header_too_large\"} 0\n"
    "keyfleet_refusals_total{reason=\"request_timeout\"} 0\n"
    "keyfleet_refusals_total{reason=\"connection_limit\"} 0\n"
    "keyfleet_refusals_total{reason=\"internal_error\"} 0\n"
    "keyfleet_refusals_total{reason=\"enrolled_elsewhere\"} 0\n"
    "keyfleet_refusals_total{reason=\"name_conflict\"} 0\n"
    "keyfleet_refusals_total{reason=\"forbidden\"} 0\n"
    "keyfleet_refusals_total{reason=\"approval_rejected\"} 0\n"
    "keyfleet_refusals_total{reason=\"approval_conflict\"} 0\n"
    "keyfleet_refusals_total{reason=\"range_not_satisfiable\"} 0\n"
    "# HELP keyfleet_tls_handshakes_total TLS handshakes, by result.\n"
    "# TYPE keyfleet_tls_handshakes_total counter\n"
    "keyfleet_tls_handshakes_total{result=\"full\"} 0\n"
    "keyfleet_tls_handshakes_total{result=\"resumed\"} 0\n"
    "keyfleet_tls_handshakes_total{result=\"failed\"} 0\n"
    "# HELP keyfleet_request_duration_seconds Time taken to answer HTTP requests.\n"
    "# TYPE keyfleet_request_duration_seconds histogram\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.001\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.0025\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.005\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.01\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.025\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.05\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.1\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.25\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"0.5\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"1\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"2.5\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"5\"} 0\n"
    "keyfleet_request_duration_seconds_bucket{le=\"+Inf\"} 0\n"
    "keyfleet_request_duration_seconds_sum 0\n"
    "keyfleet_request_duration_seconds_count 0\n"
    "# HELP keyfleet_connections_open Client connections open.\n"
    "# TYPE keyfleet_connections_open gauge\n"
    "keyfleet_connections_open 7\n"
    "# HELP keyfleet_handshakes_in_flight TLS handshakes under way.\n"
    "# TYPE keyfleet_handshakes_in_flight gauge\n"
    "keyfleet_handshakes_in_flight 2\n"
    "# HELP keyfleet_store_queue_depth Writes waiting for the store.\n"
    "# TYPE keyfleet_store_queue_depth gauge\n"
    "keyfleet_store_queue_depth 3\n"
    "# HELP keyfleet_store_writes_total Writes the store ran.\n"
    "# TYPE keyfleet_store_writes_total counter\n"
    "keyfleet_store_writes_total 40\n"
    "# HELP keyfleet_store_commits_total Transactions the store committed; concurrent writes share "
    "one (group commit).\n"
    "# TYPE keyfleet_store_commits_total counter\n"
    "keyfleet_store_commits_total 9\n"
    "# HELP keyfleet_hub_connections MQTT clients connected to the hub.\n"
    "# TYPE keyfleet_hub_connections gauge\n"
    "keyfleet_hub_connections 0\n"
    "# HELP keyfleet_hub_connections_open Sockets the hub holds, counted against its per-address "
    "limits (before CONNECT and while closing too).\n"
    "# TYPE keyfleet_hub_connections_open gauge\n"
    "keyfleet_hub_connections_open 0\n"
    "# HELP keyfleet_hub_sessions MQTT sessions held, online or persistent.\n"
    "# TYPE keyfleet_hub_sessions gauge\n"
    "keyfleet_hub_sessions 0\n"
    "# HELP keyfleet_hub_retained Retained messages held.\n"
    "# TYPE keyfleet_hub_retained gauge\n"
    "keyfleet_hub_retained 0\n"
    "# HELP keyfleet_hub_queued Messages queued for sessions.\n"
    "# TYPE keyfleet_hub_queued gauge\n"
    "keyfleet_hub_queued 0\n"
    "# HELP keyfleet_hub_connects_total MQTT CONNECTs accepted.\n"
    "# TYPE keyfleet_hub_connects_total counter\n"
    "keyfleet_hub_connects_total 0\n"
    "# HELP keyfleet_hub_auth_failed_total Hub handshakes or CONNECTs refused for identity.\n"
    "# TYPE keyfleet_hub_auth_failed_total counter\n"
    "keyfleet_hub_auth_failed_total 0\n"
    "# HELP keyfleet_hub_refused_total Hub connections refused by a limit, a ban or the allow/deny "
    "list.\n"
    "# TYPE keyfleet_hub_refused_total counter\n"
    "keyfleet_hub_refused_total 0\n"
    "# HELP keyfleet_hub_malformed_total Hub connections closed for a malformed packet or a "
    "protocol error.\n"
    "# TYPE keyfleet_hub_malformed_total counter\n"
    "keyfleet_hub_malformed_total 0\n"
    "# HELP keyfleet_hub_acl_denied_total PUBLISH or SUBSCRIBE entries refused.\n"
    "# TYPE keyfleet_hub_acl_denied_total counter\n"
    "keyfleet_hub_acl_denied_total 0\n"
    "# HELP keyfleet_hub_tls_offloaded_total Hub connections whose TLS records keyfleet took over "
    "from OpenSSL once idle.\n"
    "# TYPE keyfleet_hub_tls_offloaded_total counter\n"
    "keyfleet_hub_tls_offloaded_total 0\n"
    "# HELP keyfleet_hub_rate_limited_total PUBLISH packets over a rate limit.\n"
    "# TYPE keyfleet_hub_rate_limited_total counter\n"
    "keyfleet_hub_rate_limited_total 0\n"
    "# HELP keyfleet_hub_messages_received_total PUBLISH packets accepted.\n"
    "# TYPE keyfleet_hub_messages_received_total counter\n"
    "keyfleet_hub_messages_received_total 0\n"
    "# HELP keyfleet_hub_messages_sent_total PUBLISH packets sent to clients.\n"
    "# TYPE keyfleet_hub_messages_sent_total counter\n"
    "keyfleet_hub_messages_sent_total 0\n"
    "# HELP keyfleet_hub_messages_dropped_total Messages dropped because a session's queue was "
    "full.\n"
    "# TYPE keyfleet_hub_messages_dropped_total counter\n"
    "keyfleet_hub_messages_dropped_total 0\n"
    "# HELP keyfleet_hub_store_waits_total Times a hub connection's reading paused until its "
    "writes to the store came back.\n"
    "# TYPE keyfleet_hub_store_waits_total counter\n"
    "keyfleet_hub_store_waits_total 0\n"
    "# HELP keyfleet_crl_number The number of the CRL keyfleetd checks against.\n"
    "# TYPE keyfleet_crl_number gauge\n"
    "keyfleet_crl_number 0\n"
    "# HELP keyfleet_crl_next_update_seconds When that CRL stops being valid (Unix time); past it "
    "every certificate is refused.\n"
    "# TYPE keyfleet_crl_next_update_seconds gauge\n"
    "keyfleet_crl_next_update_seconds 0\n";

/*
 * The value of the sample `series` (its name and labels as rendered) in `text`; fails the test
 * when the series is absent.
 */
static uint64_t value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        if (!eol) fail_msg("exposition does not end in a line feed");
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtoull(line + n + 1, NULL, 10);
        line = eol + 1;
    }
    fail_msg("series %s missing from:\n%s", series, text);
    return 0;
}

static int has_series(const char *text, const char *series)
{
    char needle[256];
    snprintf(needle, sizeof(needle), "\n%s ", series);
    return strstr(text, needle) != NULL;
}

static void render(struct kf_metrics *const *w, size_t n, const struct kf_metrics_gauges *g,
                   struct kf_buf *out)
{
    kf_buf_reset(out);
    KF_OK_OR_FAIL(kf_metrics_render(w, n, g, out));
}

static void test_idle_exact(void **state)
{
    struct kf_metrics m = {0};
    struct kf_metrics *w[] = {&m};
    struct kf_metrics_gauges g = {.connections_open = 7,
                                  .handshakes_in_flight = 2,
                                  .store_queue_depth = 3,
                                  .store_writes = 40,
                                  .store_commits = 9};
    struct kf_buf out;

    kf_buf_init(&out, KF_METRICS_RENDER_MAX);
    render(w, 1, &g, &out);
    assert_string_equal(kf_buf_str(&out), idle_text);
    /* No workers at all renders the same counters. */
    render(NULL, 0, &g, &out);
    assert_string_equal(kf_buf_str(&out), idle_text);
    /* Without gauges, their three series are left out. */
    render(w, 1, NULL, &out);
    assert_null(strstr(kf_buf_str(&out), "keyfleet_connections_open"));
    assert_non_null(strstr(kf_buf_str(&out), "keyfleet_request_duration_seconds_count 0\n"));
    kf_buf_free(&out);
}

static void test_counts_and_histogram(void **state)
{
    struct kf_metrics m;
    struct kf_metrics *w[] = {&m};
    struct kf_buf out;
    const char *t;

    kf_metrics_init(&m);
    kf_metrics_request(&m, KF_EP_CACERTS, 200, 0.0005);
    kf_metrics_request(&m, KF_EP_CACERTS, 200, 0.001);       /* le is inclusive: 0.001 */
    kf_metrics_request(&m, KF_EP_SIMPLEENROLL, 200, 0.0011); /* 0.0025 */
    kf_metrics_request(&m, KF_EP_SIMPLEENROLL, 403, 0.25);   /* 0.25 */
    kf_metrics_request(&m, KF_EP_REGISTER, 299, 5);          /* status other; 5 */
    kf_metrics_request(&m, (enum kf_endpoint)99, 404, 6);    /* endpoint other; +Inf */
    kf_metrics_request(&m, KF_EP_HEALTHZ, 204, -1);          /* clamped to 0 */
    kf_metrics_request(&m, KF_EP_HEALTHZ, 204, NAN);         /* counted as 0 */
    kf_metrics_request(&m, KF_EP_METRICS, 200, 1e300);       /* clamped to the cap */
    kf_metrics_enrollment(&m, KF_ISSUE_SIMPLEENROLL);
    kf_metrics_enrollment(&m, KF_ISSUE_REGISTER);
    kf_metrics_enrollment(&m, KF_ISSUE_REGISTER);
    kf_metrics_refusal(&m, KF_REFUSAL_CSR_REJECTED);
    kf_metrics_refusal(&m, KF_REFUSAL_CONNECTION_LIMIT);
    kf_metrics_handshake(&m, KF_HANDSHAKE_RESUMED);
    kf_metrics_handshake(&m, KF_HANDSHAKE_FAILED);
    kf_metrics_handshake(&m, KF_HANDSHAKE_FAILED);

    kf_buf_init(&out, KF_METRICS_RENDER_MAX);
    render(w, 1, NULL, &out);
    t = kf_buf_str(&out);
    /* Request series: only those counted, in endpoint then status order. */
    assert_non_null(
        strstr(t, "# TYPE keyfleet_http_requests_total counter\n"
                  "keyfleet_http_requests_total{endpoint=\"cacerts\",status=\"200\"} 2\n"
                  "keyfleet_http_requests_total{endpoint=\"simpleenroll\",status=\"200\"} 1\n"
                  "keyfleet_http_requests_total{endpoint=\"simpleenroll\",status=\"403\"} 1\n"
                  "keyfleet_http_requests_total{endpoint=\"register\",status=\"other\"} 1\n"
                  "keyfleet_http_requests_total{endpoint=\"healthz\",status=\"204\"} 2\n"
                  "keyfleet_http_requests_total{endpoint=\"metrics\",status=\"200\"} 1\n"
                  "keyfleet_http_requests_total{endpoint=\"other\",status=\"404\"} 1\n"
                  "# HELP keyfleet_enrollments_total"));
    assert_non_null(strstr(t, "keyfleet_enrollments_total{kind=\"simpleenroll\"} 1\n"
                              "keyfleet_enrollments_total{kind=\"simplereenroll\"} 0\n"
                              "keyfleet_enrollments_total{kind=\"register\"} 2\n"));
    assert_int_equal(value_of(t, "keyfleet_refusals_total{reason=\"csr_rejected\"}"), 1);
    assert_int_equal(value_of(t, "keyfleet_refusals_total{reason=\"connection_limit\"}"), 1);
    assert_int_equal(value_of(t, "keyfleet_refusals_total{reason=\"csr_invalid\"}"), 0);
    assert_non_null(strstr(t, "keyfleet_tls_handshakes_total{result=\"full\"} 0\n"
                              "keyfleet_tls_handshakes_total{result=\"resumed\"} 1\n"
                              "keyfleet_tls_handshakes_total{result=\"failed\"} 2\n"));
    /* Cumulative buckets; sum = 0.0005 + 0.001 + 0.0011 + 0.25 + 5 + 6 + 0 + 0 + 1000000. */
    assert_non_null(strstr(t, "keyfleet_request_duration_seconds_bucket{le=\"0.001\"} 4\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.0025\"} 5\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.005\"} 5\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.01\"} 5\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.025\"} 5\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.05\"} 5\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.1\"} 5\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.25\"} 6\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"0.5\"} 6\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"1\"} 6\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"2.5\"} 6\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"5\"} 7\n"
                              "keyfleet_request_duration_seconds_bucket{le=\"+Inf\"} 9\n"
                              "keyfleet_request_duration_seconds_sum 1000011.2526\n"
                              "keyfleet_request_duration_seconds_count 9\n"));
    kf_buf_free(&out);
}

static void test_sum_across_workers(void **state)
{
    struct kf_metrics a, b, c;
    struct kf_metrics *w[] = {&a, NULL, &b, &c};
    struct kf_buf out;
    const char *t;

    kf_metrics_init(&a);
    kf_metrics_init(&b);
    kf_metrics_init(&c);
    for (int i = 0; i < 3; i++)
        kf_metrics_request(&a, KF_EP_SIMPLEREENROLL, 200, 0.02);
    for (int i = 0; i < 4; i++)
        kf_metrics_request(&b, KF_EP_SIMPLEREENROLL, 200, 0.5);
    kf_metrics_request(&c, KF_EP_CSRATTRS, 429, 0.000001);
    kf_metrics_refusal(&b, KF_REFUSAL_RATE_LIMITED);
    kf_metrics_refusal(&c, KF_REFUSAL_RATE_LIMITED);
    kf_metrics_enrollment(&a, KF_ISSUE_SIMPLEREENROLL);
    kf_metrics_enrollment(&c, KF_ISSUE_SIMPLEREENROLL);

    kf_buf_init(&out, KF_METRICS_RENDER_MAX);
    render(w, KF_ARRAY_LEN(w), NULL, &out);
    t = kf_buf_str(&out);
    assert_int_equal(
        value_of(t, "keyfleet_http_requests_total{endpoint=\"simplereenroll\",status=\"200\"}"), 7);
    assert_int_equal(
        value_of(t, "keyfleet_http_requests_total{endpoint=\"csrattrs\",status=\"429\"}"), 1);
    assert_int_equal(value_of(t, "keyfleet_refusals_total{reason=\"rate_limited\"}"), 2);
    assert_int_equal(value_of(t, "keyfleet_enrollments_total{kind=\"simplereenroll\"}"), 2);
    assert_int_equal(value_of(t, "keyfleet_request_duration_seconds_bucket{le=\"0.025\"}"), 4);
    assert_int_equal(value_of(t, "keyfleet_request_duration_seconds_bucket{le=\"0.5\"}"), 8);
    assert_int_equal(value_of(t, "keyfleet_request_duration_seconds_count"), 8);
    assert_non_null(strstr(t, "keyfleet_request_duration_seconds_sum 2.060001\n"));
    kf_buf_free(&out);

    kf_buf_init(&out, KF_METRICS_RENDER_MAX);
    KF_EXPECT_ERR(KF_E_INVALID, kf_metrics_render(w, KF_METRICS_WORKERS_MAX + 1, NULL, &out));
    KF_EXPECT_MSG("1025 workers");
    kf_buf_free(&out);
}

static void test_names(void **state)
{
    static const char *const required[] = {
        "client_certificate_required",
        "certificate_invalid",
        "certificate_revoked",
        "enrollment_not_found",
        "enrollment_disabled",
        "group_unverified",
        "device_disabled",
        "device_revoked",
        "network_denied",
        "csr_invalid",
        "csr_rejected",
        "subject_mismatch",
        "bad_request",
        "rate_limited",
        "overloaded",
        "body_too_large",
        "header_too_large",
        "request_timeout",
        "connection_limit",
    };
    for (size_t i = 0; i < KF_ARRAY_LEN(required); i++) {
        int found = 0;
        for (int r = 0; r < KF_REFUSAL_COUNT; r++)
            found += strcmp(kf_refusal_name((enum kf_refusal)r), required[i]) == 0;
        if (found != 1) fail_msg("refusal %s found %d times", required[i], found);
    }
    for (int r = 0; r < KF_REFUSAL_COUNT; r++) {
        const char *name = kf_refusal_name((enum kf_refusal)r);
        assert_int_equal(strspn(name, "abcdefghijklmnopqrstuvwxyz_"), strlen(name));
        for (int s = 0; s < r; s++)
            assert_string_not_equal(name, kf_refusal_name((enum kf_refusal)s));
    }
    assert_string_equal(kf_refusal_name(KF_REFUSAL_COUNT), "unknown");
    assert_string_equal(kf_endpoint_name(KF_EP_CACERTS), "cacerts");
    assert_string_equal(kf_endpoint_name(KF_EP_SIMPLEREENROLL), "simplereenroll");
    assert_string_equal(kf_endpoint_name((enum kf_endpoint) - 1), "other");
}

static void test_label_escape(void **state)
{
    struct kf_buf out;
    kf_buf_init(&out, 64);
    KF_OK_OR_FAIL(kf_metrics_label_escape("a\"b\\c\nd", &out));
    assert_string_equal(kf_buf_str(&out), "a\\\"b\\\\c\\nd");
    kf_buf_reset(&out);
    KF_OK_OR_FAIL(kf_metrics_label_escape("plain/üñí", &out));
    assert_string_equal(kf_buf_str(&out), "plain/üñí");
    kf_buf_free(&out);
}

static void test_bounds(void **state)
{
    struct kf_metrics m;
    struct kf_metrics *w[] = {&m};
    struct kf_metrics_gauges g;
    struct kf_buf out;

    memset(&g, 0xff, sizeof(g));

    /* Every series present with a 20-digit value: the largest rendering fits the maximum. */
    memset(&m, 0xff, sizeof(m));
    kf_buf_init(&out, KF_METRICS_RENDER_MAX);
    render(w, 1, &g, &out);
    assert_true(out.len < KF_METRICS_RENDER_MAX / 2);
    assert_true(has_series(kf_buf_str(&out),
                           "keyfleet_http_requests_total{endpoint=\"other\",status=\"other\"}"));
    kf_buf_free(&out);

    /* Too small a buffer: an error, and the buffer keeps what it had. */
    kf_metrics_init(&m);
    kf_buf_init(&out, 1000);
    KF_OK_OR_FAIL(kf_buf_append_str(&out, "kept\n"));
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_metrics_render(w, 1, &g, &out));
    KF_EXPECT_MSG("rendering the metrics");
    assert_string_equal(kf_buf_str(&out), "kept\n");
    kf_buf_free(&out);
}

/* ---- writers racing a reader ---- */

#define WRITERS      4
#define CHANGES_SEEN 200     /* renderings that must see the writers' progress */
#define RENDERS_MAX  1000000 /* give up (and fail) after this many */

struct writer {
    pthread_t thread;
    struct kf_metrics m;
    int stop;            /* set by the reader (atomic) */
    uint64_t iterations; /* done so far (atomic) */
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t i;
    for (i = 0; !__atomic_load_n(&w->stop, __ATOMIC_RELAXED); i++) {
        kf_metrics_request(&w->m, KF_EP_SIMPLEENROLL, 200, (double)(i % 7) * 0.01);
        kf_metrics_refusal(&w->m, KF_REFUSAL_OVERLOADED);
        if (i % 2) kf_metrics_handshake(&w->m, KF_HANDSHAKE_FULL);
        if (i % 4 == 0) kf_metrics_enrollment(&w->m, KF_ISSUE_REGISTER);
        __atomic_store_n(&w->iterations, i + 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* What each rendering is checked for; request series appear only once counted. */
static const struct {
    const char *series;
    int may_be_absent;
} watched[] = {
    {"keyfleet_refusals_total{reason=\"overloaded\"}", 0},
    {"keyfleet_tls_handshakes_total{result=\"full\"}", 0},
    {"keyfleet_enrollments_total{kind=\"register\"}", 0},
    {"keyfleet_request_duration_seconds_bucket{le=\"0.01\"}", 0},
    {"keyfleet_request_duration_seconds_bucket{le=\"0.05\"}", 0},
    {"keyfleet_request_duration_seconds_count", 0},
    {"keyfleet_http_requests_total{endpoint=\"simpleenroll\",status=\"200\"}", 1},
};

/*
 * Checks one rendering taken while writers run: every watched counter at least what the last
 * rendering showed (nothing torn, nothing going backwards), buckets cumulative, and the count
 * equal to the +Inf bucket. Returns 1 when the first counter moved.
 */
static int check_snapshot(const char *t, uint64_t *last)
{
    uint64_t prev_bucket = 0, first = last[0];
    for (size_t i = 0; i < KF_ARRAY_LEN(watched); i++) {
        const char *series = watched[i].series;
        uint64_t v = watched[i].may_be_absent && !has_series(t, series) ? 0 : value_of(t, series);
        if (v < last[i] || v > (uint64_t)1 << 40)
            fail_msg("%s went from %" PRIu64 " to %" PRIu64, series, last[i], v);
        last[i] = v;
    }
    for (const char *p = t; (p = strstr(p, "keyfleet_request_duration_seconds_bucket{"));) {
        const char *sp = strchr(p, ' ');
        uint64_t v = strtoull(sp + 1, NULL, 10);
        assert_true(v >= prev_bucket);
        prev_bucket = v;
        p = sp;
    }
    assert_int_equal(prev_bucket, value_of(t, "keyfleet_request_duration_seconds_count"));
    return last[0] != first;
}

static void test_concurrent_writers(void **state)
{
    struct writer *ws = calloc(WRITERS, sizeof(*ws));
    struct kf_metrics *w[WRITERS];
    uint64_t last[KF_ARRAY_LEN(watched)] = {0}, total = 0, low = 0;
    struct kf_buf out;
    const char *t;
    int renders = 0, changes = 0;

    kf_buf_init(&out, KF_METRICS_RENDER_MAX);
    for (int i = 0; i < WRITERS; i++) {
        kf_metrics_init(&ws[i].m);
        w[i] = &ws[i].m;
    }
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&ws[i].thread, NULL, writer_main, &ws[i]), 0);
    /* Render while they write, until enough renderings have seen them move. */
    while (changes < CHANGES_SEEN && renders < RENDERS_MAX) {
        render(w, WRITERS, NULL, &out);
        changes += check_snapshot(kf_buf_str(&out), last);
        renders++;
    }
    for (int i = 0; i < WRITERS; i++)
        __atomic_store_n(&ws[i].stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_join(ws[i].thread, NULL), 0);
    print_message("%d renderings, %d of them saw the writers move\n", renders, changes);
    assert_int_equal(changes, CHANGES_SEEN);

    /* Once they stop, the sums are exact. */
    for (int i = 0; i < WRITERS; i++) {
        uint64_t n = ws[i].iterations;
        total += n;
        low += n / 7 * 2 + (n % 7 > 0) + (n % 7 > 1);       /* i % 7 in {0, 1}: at most 0.01 s */
        kf_metrics_enrollment(&ws[i].m, KF_ISSUE_REGISTER); /* the reader's thread may write now */
    }
    render(w, WRITERS, NULL, &out);
    t = kf_buf_str(&out);
    assert_int_equal(
        value_of(t, "keyfleet_http_requests_total{endpoint=\"simpleenroll\",status=\"200\"}"),
        total);
    assert_int_equal(value_of(t, "keyfleet_refusals_total{reason=\"overloaded\"}"), total);
    assert_int_equal(value_of(t, "keyfleet_request_duration_seconds_count"), total);
    assert_int_equal(value_of(t, "keyfleet_request_duration_seconds_bucket{le=\"0.01\"}"), low);
    {
        uint64_t full = 0, reg = 0;
        for (int i = 0; i < WRITERS; i++) {
            full += ws[i].iterations / 2;
            reg += (ws[i].iterations + 3) / 4 + 1;
        }
        assert_int_equal(value_of(t, "keyfleet_tls_handshakes_total{result=\"full\"}"), full);
        assert_int_equal(value_of(t, "keyfleet_enrollments_total{kind=\"register\"}"), reg);
    }
    kf_buf_free(&out);
    free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_exact),         cmocka_unit_test(test_counts_and_histogram),
        cmocka_unit_test(test_sum_across_workers), cmocka_unit_test(test_names),
        cmocka_unit_test(test_label_escape),       cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_concurrent_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
