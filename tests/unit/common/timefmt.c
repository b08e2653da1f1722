/* timefmt: RFC 3339 out and in. */
#include "testutil.h"

#include <string.h>

#include "common/timefmt.h"

static void test_format(void **state)
{
    char out[KF_TIME_TEXT_MAX];
    kf_time_rfc3339(0, out, sizeof(out));
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    kf_time_rfc3339(1795460881, out, sizeof(out));
    assert_string_equal(out, "2026-11-23T19:08:01Z");
    kf_time_rfc3339_ms(1795460881123LL, out, sizeof(out));
    assert_string_equal(out, "2026-11-23T19:08:01.123Z");
    assert_true(kf_now_ms() > 1700000000000LL);
}

static void test_parse(void **state)
{
    time_t t;
    KF_OK_OR_FAIL(kf_time_parse("2026-11-23T19:08:01Z", &t));
    assert_int_equal(t, 1795460881);
    KF_OK_OR_FAIL(kf_time_parse("2026-11-23T20:08:01.999+01:00", &t));
    assert_int_equal(t, 1795460881);
    KF_OK_OR_FAIL(kf_time_parse("2026-11-23t18:08:01-01:00", &t));
    assert_int_equal(t, 1795460881);
    KF_OK_OR_FAIL(kf_time_parse("2026-11-23", &t));
    assert_int_equal(t, 1795392000);
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("yesterday", &t));
    KF_EXPECT_MSG("time \"yesterday\" is not RFC 3339");
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-13-01", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-02-31", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-02-29", &t));
    KF_OK_OR_FAIL(kf_time_parse("2028-02-29", &t));
    KF_OK_OR_FAIL(kf_time_parse("2026-04-30", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-04-31", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-11-23T25:00:00Z", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-11-23T19:08:01", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-11-23T19:08:01Zjunk", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("2026-11-23T19:08:01.Z", &t));
    KF_EXPECT_ERR(KF_E_INVALID, kf_time_parse("", &t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
