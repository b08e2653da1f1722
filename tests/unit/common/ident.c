/* ident: the id syntax [a-z0-9][a-z0-9._:-]{0,127}. */
#include "testutil.h"

#include <string.h>

#include "common/ident.h"

static void test_valid_ids(void **state)
{
    char max[KF_ID_MAX + 1];
    KF_OK_OR_FAIL(kf_id_check("device id", "a"));
    KF_OK_OR_FAIL(kf_id_check("device id", "0"));
    KF_OK_OR_FAIL(kf_id_check("device id", "sensor-01.factory_a:line-3"));
    memset(max, 'x', KF_ID_MAX);
    max[KF_ID_MAX] = '\0';
    KF_OK_OR_FAIL(kf_id_check("device id", max));
}

static void test_invalid_ids(void **state)
{
    char long_id[KF_ID_MAX + 2];
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", ""));
    KF_EXPECT_MSG("device id is empty");
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", NULL));
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", "Sensor"));
    KF_EXPECT_MSG("must start with a lower-case letter or a digit");
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", "-x"));
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", "ab/c"));
    KF_EXPECT_MSG("holds '/' at position 3");
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", "abC"));
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", "a b"));
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("enrollment name", "a\nb"));
    KF_EXPECT_MSG("enrollment name \"a\\x0ab\" holds 0x0a at position 2");
    memset(long_id, 'x', KF_ID_MAX + 1);
    long_id[KF_ID_MAX + 1] = '\0';
    KF_EXPECT_ERR(KF_E_INVALID, kf_id_check("device id", long_id));
    KF_EXPECT_MSG("is 129 characters long; the limit is 128");
}

static void test_text_quote(void **state)
{
    char out[32];
    kf_text_quote(out, sizeof(out), "plain text");
    assert_string_equal(out, "plain text");
    kf_text_quote(out, sizeof(out), "\x1b[2J\"x\"");
    assert_string_equal(out, "\\x1b[2J\\x22x\\x22");
    kf_text_quote(out, sizeof(out), "0123456789012345678901234567890123456789");
    assert_true(strlen(out) < sizeof(out));
    assert_non_null(strstr(out, "..."));
}

/* The one role table: names both ways, and nothing else is a role. */
static void test_roles(void **state)
{
    (void)state;
    assert_string_equal(kf_role_name(KF_ROLE_READER), "reader");
    assert_string_equal(kf_role_name(KF_ROLE_COMMANDER), "commander");
    assert_null(kf_role_name(KF_ROLE_NONE));
    assert_null(kf_role_name((enum kf_role)(KF_ROLE_COUNT + 1)));
    for (int r = 1; r <= KF_ROLE_COUNT; r++)
        assert_int_equal(kf_role_parse(kf_role_name((enum kf_role)r)), r);
    assert_int_equal(kf_role_parse("Reader"), KF_ROLE_NONE);
    assert_int_equal(kf_role_parse("admin"), KF_ROLE_NONE);
    assert_int_equal(kf_role_parse(""), KF_ROLE_NONE);
    assert_int_equal(kf_role_parse(NULL), KF_ROLE_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_ids),
        cmocka_unit_test(test_invalid_ids),
        cmocka_unit_test(test_text_quote),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
