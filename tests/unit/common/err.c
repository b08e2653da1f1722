/* err: codes, names and the thread-local message. */
#include "testutil.h"

#include <pthread.h>
#include <string.h>

#include "common/err.h"

static void test_codes_and_names(void **state)
{
    assert_int_equal(KF_OK, 0);
    assert_string_equal(kf_errcode(KF_E_MALFORMED), "malformed");
    assert_string_equal(kf_strerror(KF_E_OVERSIZE), "input larger than allowed");
    assert_string_equal(kf_errcode(KF_E_NOT_FOUND), "not_found");
    /* An out-of-range value still gives a string, never NULL. */
    assert_string_equal(kf_errcode((enum kf_err)9999), "unknown");
    assert_string_equal(kf_strerror((enum kf_err)9999), "unknown error");
}

static void test_fail_and_wrap(void **state)
{
    kf_err_clear();
    assert_string_equal(kf_errmsg(), "success");
    assert_int_equal(kf_fail(KF_E_IO, "cannot open %s", "x.pem"), KF_E_IO);
    assert_string_equal(kf_errmsg(), "cannot open x.pem");
    assert_int_equal(kf_errlast(), KF_E_IO);
    assert_int_equal(kf_wrap(KF_E_CONFIG, "loading %s", "keyfleet.conf"), KF_E_CONFIG);
    assert_string_equal(kf_errmsg(), "loading keyfleet.conf: cannot open x.pem");
    kf_err_clear();
    kf_wrap(KF_E_DENIED, "step");
    assert_string_equal(kf_errmsg(), "step: denied by policy");
}

static void test_long_message_is_truncated(void **state)
{
    char big[3000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    kf_fail(KF_E_INVALID, "%s", big);
    assert_true(strlen(kf_errmsg()) < 1024);
    kf_wrap(KF_E_INVALID, "%s", big);
    assert_true(strlen(kf_errmsg()) < 1024);
}

static void *other_thread(void *arg)
{
    kf_fail(KF_E_BUSY, "from another thread");
    return NULL;
}

static void test_message_is_per_thread(void **state)
{
    pthread_t t;
    kf_fail(KF_E_EXPIRED, "mine");
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, NULL);
    assert_string_equal(kf_errmsg(), "mine");
    assert_int_equal(kf_errlast(), KF_E_EXPIRED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_and_names),
        cmocka_unit_test(test_fail_and_wrap),
        cmocka_unit_test(test_long_message_is_truncated),
        cmocka_unit_test(test_message_is_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
