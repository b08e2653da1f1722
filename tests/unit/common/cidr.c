/* cidr: network lists and matching. */
#include "testutil.h"

#include <string.h>

#include "common/cidr.h"

static void test_parse_and_match(void **state)
{
    struct kf_cidr_list l;
    char text[256];
    KF_OK_OR_FAIL(kf_cidr_parse_list("10.0.0.0/8, 192.168.1.7,2001:db8::/32", &l));
    assert_int_equal(l.n, 3);
    KF_OK_OR_FAIL(kf_cidr_format(&l, text, sizeof(text)));
    assert_string_equal(text, "10.0.0.0/8,192.168.1.7/32,2001:db8::/32");
    assert_true(kf_cidr_match(&l, "10.1.2.3"));
    assert_true(kf_cidr_match(&l, "192.168.1.7"));
    assert_false(kf_cidr_match(&l, "192.168.1.8"));
    assert_true(kf_cidr_match(&l, "2001:db8:1::5"));
    assert_false(kf_cidr_match(&l, "2001:db9::1"));
    assert_true(kf_cidr_match(&l, "::ffff:10.9.9.9"));
    assert_false(kf_cidr_match(&l, "not an ip"));
    KF_OK_OR_FAIL(kf_cidr_parse_list("172.16.0.0/12", &l));
    assert_true(kf_cidr_match(&l, "172.31.255.255"));
    assert_false(kf_cidr_match(&l, "172.32.0.0"));
    KF_OK_OR_FAIL(kf_cidr_parse_list("0.0.0.0/0", &l));
    assert_true(kf_cidr_match(&l, "8.8.8.8"));
    assert_false(kf_cidr_match(&l, "::1"));
}

/* The longest list there can be formats whole; a buffer too small is an error, never a cut. */
static void test_format_never_cuts(void **state)
{
    struct kf_cidr_list l;
    char text[8192], out[KF_CIDR_TEXT_MAX], small[64];
    size_t n = 0;
    text[0] = '\0';
    for (int i = 0; i < KF_CIDR_LIST_MAX; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "%s2001:db8:aaaa:bbbb:cccc:dddd:eeee:%x/128", i ? "," : "",
                              0x1000 + i);
    KF_OK_OR_FAIL(kf_cidr_parse_list(text, &l));
    assert_int_equal(l.n, KF_CIDR_LIST_MAX);
    KF_OK_OR_FAIL(kf_cidr_format(&l, out, sizeof(out)));
    assert_string_equal(out, text);
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_cidr_format(&l, small, sizeof(small)));
    assert_string_equal(small, "");
}

static void test_errors(void **state)
{
    struct kf_cidr_list l;
    KF_EXPECT_ERR(KF_E_INVALID, kf_cidr_parse_list("10.0.0.1/8", &l));
    KF_EXPECT_MSG("host bits set");
    KF_EXPECT_ERR(KF_E_INVALID, kf_cidr_parse_list("10.0.0.0/33", &l));
    KF_EXPECT_MSG("prefix length must be 0 to 32");
    KF_EXPECT_ERR(KF_E_INVALID, kf_cidr_parse_list("example.com", &l));
    KF_EXPECT_MSG("not an IP address");
    KF_EXPECT_ERR(KF_E_INVALID, kf_cidr_parse_list("10.0.0.0/8,", &l));
    KF_EXPECT_ERR(KF_E_INVALID, kf_cidr_parse_list("", &l));
    KF_EXPECT_ERR(KF_E_INVALID, kf_cidr_parse_list("10.0.0.0/", &l));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_match),
        cmocka_unit_test(test_format_never_cuts),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
