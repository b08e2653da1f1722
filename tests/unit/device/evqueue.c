/* evqueue: the device's durable, bounded event log, on real files. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "device/evqueue.h"

static void test_order_ack_and_reopen(void **state)
{
    struct kf_evq *q;
    uint64_t s1, s2, s3, seq;
    const char *json;
    char dir[512];
    (void)state;
    snprintf(dir, sizeof(dir), "%s", kf_test_path("evq1"));
    assert_int_equal(kf_test_sh("mkdir -p %s", dir), 0);
    KF_OK_OR_FAIL(kf_evq_open(dir, 65536, &q));
    KF_OK_OR_FAIL(kf_evq_append(q, "{\"n\":1}", &s1));
    KF_OK_OR_FAIL(kf_evq_append(q, "{\"n\":2}", &s2));
    KF_OK_OR_FAIL(kf_evq_append(q, "{\"n\":3}", &s3));
    assert_true(s1 < s2 && s2 < s3);
    assert_true(kf_evq_next(q, 0, &seq, &json));
    assert_int_equal(seq, s1);
    assert_string_equal(json, "{\"n\":1}");
    assert_true(kf_evq_next(q, s1, &seq, &json));
    assert_string_equal(json, "{\"n\":2}");
    KF_OK_OR_FAIL(kf_evq_ack(q, s1));
    assert_int_equal(kf_evq_pending(q), 2);
    kf_evq_close(q);
    /* after a restart: the unacknowledged ones, in order, none of the acknowledged */
    KF_OK_OR_FAIL(kf_evq_open(dir, 65536, &q));
    assert_int_equal(kf_evq_pending(q), 2);
    assert_true(kf_evq_next(q, 0, &seq, &json));
    assert_int_equal(seq, s2);
    KF_OK_OR_FAIL(kf_evq_ack(q, s3));
    assert_int_equal(kf_evq_pending(q), 0);
    assert_false(kf_evq_next(q, 0, &seq, &json));
    KF_OK_OR_FAIL(kf_evq_append(q, "{\"n\":4}", &seq));
    assert_true(seq > s3); /* numbers are never reused */
    kf_evq_close(q);
}

static void test_torn_tail_and_junk(void **state)
{
    struct kf_evq *q;
    uint64_t seq;
    const char *json;
    char dir[512], path[600];
    (void)state;
    snprintf(dir, sizeof(dir), "%s", kf_test_path("evq2"));
    assert_int_equal(kf_test_sh("mkdir -p %s", dir), 0);
    snprintf(path, sizeof(path), "%s/events.log", dir);
    /* a good line, a line that is not ours, and a last line torn by a crash */
    kf_test_write(path, "5 {\"a\":1}\ngarbage\n6 {\"a\":");
    KF_OK_OR_FAIL(kf_evq_open(dir, 65536, &q));
    assert_int_equal(kf_evq_pending(q), 1);
    assert_true(kf_evq_next(q, 0, &seq, &json));
    assert_int_equal(seq, 5);
    KF_OK_OR_FAIL(kf_evq_append(q, "{\"b\":2}", &seq));
    assert_int_equal(seq, 6);
    kf_evq_close(q);
    {
        char *text = kf_test_read(path);
        assert_string_equal(text, "5 {\"a\":1}\n6 {\"b\":2}\n");
        free(text);
    }
}

static void test_bound_drops_oldest(void **state)
{
    struct kf_evq *q;
    uint64_t seq, first = 0;
    const char *json;
    char dir[512], ev[600];
    int i;
    (void)state;
    snprintf(dir, sizeof(dir), "%s", kf_test_path("evq3"));
    assert_int_equal(kf_test_sh("mkdir -p %s", dir), 0);
    KF_OK_OR_FAIL(kf_evq_open(dir, 4096, &q));
    for (i = 0; i < 20; i++) {
        snprintf(ev, sizeof(ev), "{\"i\":%d,\"pad\":\"%0400d\"}", i, 0);
        KF_OK_OR_FAIL(kf_evq_append(q, ev, &seq));
    }
    assert_true(kf_evq_dropped(q) > 0);
    assert_true(kf_evq_pending(q) < 20);
    assert_true(kf_evq_next(q, 0, &first, &json));
    /* what is left is the newest, still in order */
    assert_int_equal(first + kf_evq_pending(q) - 1, seq);
    assert_int_equal(kf_evq_append(q, "two\nlines", &seq), KF_E_INVALID);
    kf_evq_close(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_ack_and_reopen),
        cmocka_unit_test(test_torn_tail_and_junk),
        cmocka_unit_test(test_bound_drops_oldest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
