/* http: the strict request parser and the response writer. */
#include "testutil.h"

#include <string.h>

#include "common/http.h"

static const struct kf_http_limits lim = {1024, 100};

static enum kf_http_status parse(const char *text, struct kf_http_request *req, int *st,
                                 const char **why, unsigned char *buf)
{
    size_t n = strlen(text);
    memcpy(buf, text, n);
    return kf_http_parse(buf, n, &lim, req, st, why);
}

static void test_get_and_post(void **state)
{
    unsigned char buf[2048];
    struct kf_http_request r;
    int st = 0;
    const char *why = NULL;
    assert_int_equal(
        parse("GET /.well-known/est/cacerts?x=1 HTTP/1.1\r\nHost: kf\r\n\r\n", &r, &st, &why, buf),
        KF_HTTP_COMPLETE);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.path, "/.well-known/est/cacerts");
    assert_string_equal(r.query, "x=1");
    assert_int_equal(r.minor, 1);
    assert_true(r.keep_alive);
    assert_string_equal(kf_http_header(&r, "host"), "kf");
    assert_null(kf_http_header(&r, "accept"));

    assert_int_equal(parse("POST /api/v1/register HTTP/1.1\r\nContent-Type:  application/json \r\n"
                           "Content-Length: 5\r\nConnection: close\r\n\r\nhello+next",
                           &r, &st, &why, buf),
                     KF_HTTP_COMPLETE);
    assert_string_equal(kf_http_header(&r, "Content-Type"), "application/json");
    assert_int_equal(r.content_length, 5);
    assert_memory_equal(r.body, "hello", 5);
    assert_false(r.keep_alive);
    assert_int_equal(r.head_len + r.content_length, strlen("POST /api/v1/register HTTP/1.1\r\n"
                                                           "Content-Type:  application/json \r\n"
                                                           "Content-Length: 5\r\nConnection: "
                                                           "close\r\n\r\nhello"));
    /* HTTP/1.0 closes unless asked not to; bare LF line ends are tolerated. */
    assert_int_equal(parse("GET / HTTP/1.0\n\n", &r, &st, &why, buf), KF_HTTP_COMPLETE);
    assert_false(r.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, &st, &why, buf),
                     KF_HTTP_COMPLETE);
    assert_true(r.keep_alive);
}

static void test_partial(void **state)
{
    unsigned char buf[2048];
    struct kf_http_request r;
    int st = 0;
    const char *why = NULL;
    const char *full = "POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
    for (size_t n = 0; n < strlen(full); n++) {
        memcpy(buf, full, n);
        assert_int_equal(kf_http_parse(buf, n, &lim, &r, &st, &why), KF_HTTP_PARTIAL);
    }
    memcpy(buf, full, strlen(full));
    assert_int_equal(kf_http_parse(buf, strlen(full), &lim, &r, &st, &why), KF_HTTP_COMPLETE);
}

/*
 * As keyfleetd reads: the bytes arrive a few at a time into one buffer, parsed again after each
 * arrival without being copied afresh. A PARTIAL parse must leave the buffer as it was.
 */
static void test_partial_same_buffer(void **state)
{
    unsigned char buf[2048], before[2048];
    struct kf_http_request r;
    int st = 0;
    const char *why = NULL;
    const char *full =
        "POST /api/v1/register HTTP/1.1\r\nHost: kf\r\nContent-Type: application/json\r\n"
        "Content-Length: 8\r\nConnection: close\r\n\r\n{\"a\": 1}";
    size_t len = strlen(full);
    for (size_t n = 0; n < len; n++) {
        buf[n] = (unsigned char)full[n];
        memcpy(before, buf, n + 1);
        assert_int_equal(kf_http_parse(buf, n + 1, &lim, &r, &st, &why),
                         n + 1 < len ? KF_HTTP_PARTIAL : KF_HTTP_COMPLETE);
        if (n + 1 < len) assert_memory_equal(buf, before, n + 1);
    }
    assert_string_equal(kf_http_header(&r, "content-type"), "application/json");
    assert_string_equal(kf_http_header(&r, "host"), "kf");
    assert_int_equal(r.content_length, 8);
    assert_false(r.keep_alive);
    assert_memory_equal(r.body, "{\"a\": 1}", 8);
}

static void expect_bad(const char *text, int status)
{
    unsigned char buf[4096];
    struct kf_http_request r;
    int st = 0;
    const char *why = NULL;
    if (parse(text, &r, &st, &why, buf) != KF_HTTP_BAD) fail_msg("accepted: %s", text);
    if (st != status) fail_msg("status %d (%s), expected %d for: %s", st, why, status, text);
    assert_non_null(why);
}

static void test_refusals(void **state)
{
    char big[2048];
    expect_bad("GET\r\n\r\n", 400);
    expect_bad("get / HTTP/1.1\r\n\r\n", 400);
    expect_bad("FROBNICATE / HTTP/1.1\r\n\r\n", 501);
    expect_bad("GET http://x/ HTTP/1.1\r\n\r\n", 400);
    expect_bad("GET / HTTP/2.0\r\n\r\n", 505);
    expect_bad("GET / HTTP/1.1 extra\r\n\r\n", 505);
    expect_bad("GET /a\x01 HTTP/1.1\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\n folded\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\nno colon\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400);
    expect_bad("GET / HTTP/1.1\r\nX: a\x01"
               "b\r\n\r\n",
               400);
    expect_bad("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413);
    expect_bad("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 413);
    expect_bad("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
    expect_bad("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400);
    expect_bad("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411);
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    big[sizeof(big) - 1] = '\0';
    expect_bad(big, 414);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    expect_bad(big, 431);
    {
        char many[4096] = "GET / HTTP/1.1\r\n";
        for (int i = 0; i < KF_HTTP_MAX_HEADERS + 1; i++)
            strcat(many, "A: b\r\n");
        strcat(many, "\r\n");
        expect_bad(many, 431);
    }
}

static void test_response(void **state)
{
    struct kf_buf b;
    kf_buf_init(&b, 4096);
    KF_OK_OR_FAIL(kf_http_response(&b, 429, "application/json", "Retry-After: 2\r\n", 1, "{}", 2));
    assert_string_equal(kf_buf_str(&b), "HTTP/1.1 429 Too Many Requests\r\n"
                                        "Content-Type: application/json\r\nContent-Length: 2\r\n"
                                        "Retry-After: 2\r\nConnection: close\r\n\r\n{}");
    kf_buf_free(&b);
    assert_string_equal(kf_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(kf_http_reason(299), "Unknown");
    /* No answer ever goes out without a real status: "HTTP/1.1 0 Unknown" was one. */
    kf_buf_reset(&b);
    KF_EXPECT_ERR(KF_E_INTERNAL, kf_http_response(&b, 0, NULL, NULL, 1, NULL, 0));
    KF_EXPECT_ERR(KF_E_INTERNAL, kf_http_response(&b, 99, NULL, NULL, 1, NULL, 0));
    KF_EXPECT_ERR(KF_E_INTERNAL, kf_http_response(&b, 600, NULL, NULL, 1, NULL, 0));
    kf_buf_free(&b);
}

/* The answer head as libkeyfleet reads it: what keyfleetd writes reads back. */
static void test_answer_head(void **state)
{
    struct kf_buf b;
    struct kf_http_head h;
    char big[KF_HTTP_HEAD_MAX + 64];
    kf_buf_init(&b, 4096);
    KF_OK_OR_FAIL(kf_http_response(&b, 429, "application/json", "Retry-After: 7\r\n", 1, "{}", 2));
    assert_int_equal(kf_http_head_parse((const char *)b.data, b.len, &h), 1);
    assert_int_equal(h.status, 429);
    assert_int_equal(h.retry_after_s, 7);
    assert_string_equal(h.content_type, "application/json");
    assert_int_equal(h.has_length, 1);
    assert_int_equal(h.content_length, 2);
    assert_int_equal(h.head_len, b.len - 2);
    assert_int_equal(h.chunked, 0);
    /* every shorter prefix of the head asks for more */
    for (size_t n = 0; n < h.head_len; n++)
        assert_int_equal(kf_http_head_parse((const char *)b.data, n, &h), 0);
    kf_buf_free(&b);

    /* refused: no status line, a status out of range, two lengths, a length that is no number */
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 600 High\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (kf_http_head_parse(bad[i], strlen(bad[i]), &h) != -1) fail_msg("accepted: %s", bad[i]);
    /* chunked is noticed; a head longer than the bound is malformed, not "more to come" */
    {
        static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_int_equal(kf_http_head_parse(chunked, sizeof(chunked) - 1, &h), 1);
    }
    assert_int_equal(h.chunked, 1);
    memset(big, 'a', sizeof(big));
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(kf_http_head_parse(big, sizeof(big), &h), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_post),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_partial_same_buffer),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_answer_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
