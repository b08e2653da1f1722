/*
 * conf: a section declared as a table binds keyfleet.conf's values straight into its struct:
 * every kind of key, its defaults, refusals that leave the struct as it was, a whole file with
 * its line numbers, the written form read back the same, and a diff that hides secrets.
 */
#include "testutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf.h"

struct inner {
    unsigned count;
    double rate;
};

struct sample {
    char name[16];
    int days;
    size_t bytes;
    uint16_t window;
    struct inner in; /* a nested struct, bound by its fields */
    int on;
    int action;
    struct kf_conf_nets allow;
    char secret[32];
};

#define T struct sample
static const struct kf_conf_key keys[] = {
    KF_CONF_TEXT_KEY(T, "name", name, "fleet", "The name.", 0),
    KF_CONF_NUM_KEY(T, "days", days, 1, 10, 3, "Days, and the two lines\nof their comment."),
    KF_CONF_NUM_KEY(T, "bytes", bytes, 0, 4000000000LL, 65536, NULL),
    KF_CONF_NUM_KEY(T, "window", window, 1, 65535, 32, NULL),
    KF_CONF_NUM_KEY(T, "count", in.count, 0, 100, 7, NULL),
    KF_CONF_NUM_KEY(T, "rate", in.rate, 0, 1000000, 50, NULL),
    KF_CONF_SWITCH_KEY(T, "on", on, 1, NULL),
    KF_CONF_CHOICE_KEY(T, "action", action, "disconnect|drop|log", "drop", NULL),
    KF_CONF_NETS_KEY(T, "allow", allow, "any", NULL),
    KF_CONF_TEXT_KEY(T, "secret", secret, "file:pin", NULL, KF_CONF_SECRET),
};
#undef T
static const struct kf_conf_section sec = {"sample", "A section for the test.", keys,
                                           KF_ARRAY_LEN(keys)};

static const struct kf_conf_key *key(const char *name)
{
    const struct kf_conf_key *k = kf_conf_find(&sec, name);
    assert_non_null(k);
    return k;
}

static void test_defaults_land_in_their_fields(void **state)
{
    struct sample s;
    memset(&s, 0x5a, sizeof(s));
    KF_OK_OR_FAIL(kf_conf_defaults(&sec, &s));
    assert_string_equal(s.name, "fleet");
    assert_int_equal(s.days, 3);
    assert_int_equal(s.bytes, 65536);
    assert_int_equal(s.window, 32);
    assert_int_equal(s.in.count, 7);
    assert_true(s.in.rate == 50.0);
    assert_int_equal(s.on, 1);
    assert_int_equal(s.action, 1); /* "drop": the second word */
    assert_int_equal(s.allow.word, 1);
    assert_string_equal(s.allow.text, "any");
    assert_null(kf_conf_find(&sec, "no_such_key"));
}

static void test_values_and_refusals(void **state)
{
    struct sample s, before;
    KF_OK_OR_FAIL(kf_conf_defaults(&sec, &s));

    KF_OK_OR_FAIL(kf_conf_set(&sec, key("bytes"), &s, "4000000000"));
    assert_true(s.bytes == 4000000000ULL); /* beyond an int: a size_t field holds it */
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("window"), &s, "65535"));
    assert_int_equal(s.window, 65535);
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("action"), &s, "log"));
    assert_int_equal(s.action, 2);
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("on"), &s, "off"));
    assert_int_equal(s.on, 0);
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("allow"), &s, "10.0.0.0/8, 192.0.2.1"));
    assert_int_equal(s.allow.word, 0);
    assert_true(kf_conf_nets_match(&s.allow, "10.1.2.3", 0));
    assert_false(kf_conf_nets_match(&s.allow, "192.0.2.2", 1));
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("allow"), &s, "none"));
    assert_false(kf_conf_nets_match(&s.allow, "10.1.2.3", 1));

    /* Each refusal names section.key and leaves the struct as it was. */
    before = s;
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("window"), &s, "65536"));
    KF_EXPECT_MSG("sample.window = \"65536\" is not a whole number from 1 to 65535");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("days"), &s, "3 days"));
    KF_EXPECT_MSG("sample.days = \"3 days\" is not a whole number from 1 to 10");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("action"), &s, "panic"));
    KF_EXPECT_MSG("sample.action = \"panic\" must be disconnect or drop or log");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("action"), &s, "dro"));
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("on"), &s, "maybe"));
    KF_EXPECT_MSG("sample.on = \"maybe\" is not a switch");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("on"), &s, "2"));
    KF_EXPECT_MSG("is not a whole number from 0 to 1");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("name"), &s, ""));
    KF_EXPECT_MSG("sample.name is empty");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("name"), &s, "sixteen-chars-xx"));
    KF_EXPECT_MSG("sample.name is longer than 15 characters");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_set(&sec, key("allow"), &s, "10.0.0.1/8"));
    KF_EXPECT_MSG("sample.allow");
    assert_memory_equal(&before, &s, sizeof(s));
}

static void test_file_with_lines(void **state)
{
    static const char ok[] = "# comment\n[sample]\ndays = 9\ncount = 0\nallow = 192.0.2.0/24\n";
    struct sample s;
    struct kf_conf_bind b = {&sec, &s};
    KF_OK_OR_FAIL(kf_conf_defaults(&sec, &s));
    KF_OK_OR_FAIL(kf_conf_parse(ok, strlen(ok), &b, 1));
    assert_int_equal(s.days, 9);
    assert_int_equal(s.in.count, 0);
    assert_string_equal(s.name, "fleet"); /* not in the file: the default stays */

    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_parse("[sample]\n\ndays = 11\n", 20, &b, 1));
    KF_EXPECT_MSG("line 3: sample.days = \"11\"");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_parse("[other]\n", 8, &b, 1));
    KF_EXPECT_MSG("line 1: unknown section [other]");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_conf_parse("[sample]\ndayz = 1\n", 18, &b, 1));
    KF_EXPECT_MSG("line 2: unknown key 'dayz' in section [sample]");
    KF_EXPECT_ERR(KF_E_CONFIG,
                  kf_conf_parse("[sample]\ndays = 1\n[sample]\ndays = 2\n", 36, &b, 1));
    KF_EXPECT_MSG("line 4: sample.days is set twice (first on line 2)");
}

static void test_written_form_reads_back(void **state)
{
    struct sample w, r;
    struct kf_conf_bind b = {&sec, &r};
    struct kf_buf out;
    char *text;

    memset(&w, 0, sizeof(w)); /* compared whole below: the bytes after each string too */
    KF_OK_OR_FAIL(kf_conf_defaults(&sec, &w));
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("action"), &w, "disconnect"));
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("allow"), &w, "2001:db8::/32"));
    kf_buf_init(&out, 4096);
    KF_OK_OR_FAIL(kf_conf_write(&out, &sec, &w));
    text = strndup((const char *)out.data, out.len);
    assert_non_null(
        strstr(text, "[sample]\n# A section for the test.\n# The name.\nname = fleet\n"));
    assert_non_null(strstr(text, "# Days, and the two lines\n# of their comment.\ndays = 3\n"));
    assert_non_null(strstr(text, "\naction = disconnect\n"));
    assert_non_null(strstr(text, "\nallow = 2001:db8::/32\n"));
    assert_non_null(strstr(text, "\nrate = 50\n"));

    memset(&r, 0, sizeof(r));
    KF_OK_OR_FAIL(kf_conf_defaults(&sec, &r));
    KF_OK_OR_FAIL(kf_conf_parse((const char *)out.data, out.len, &b, 1));
    assert_memory_equal(&w, &r, sizeof(w));
    free(text);
    kf_buf_free(&out);

    /* What would not read back the same is refused, not written. */
    snprintf(w.name, sizeof(w.name), "bad\nname");
    kf_buf_init(&out, 4096);
    KF_EXPECT_ERR(KF_E_INVALID, kf_conf_write(&out, &sec, &w));
    KF_EXPECT_MSG("sample.name holds a control character");
    kf_buf_free(&out);
}

static void test_diff_hides_secrets(void **state)
{
    struct sample a, b;
    json_t *d = json_object();
    char *text;
    KF_OK_OR_FAIL(kf_conf_defaults(&sec, &a));
    b = a;
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("rate"), &b, "5"));
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("action"), &b, "log"));
    KF_OK_OR_FAIL(kf_conf_set(&sec, key("secret"), &b, "pin-value=1234"));
    kf_conf_diff(d, &sec, &a, &b);
    text = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"sample.action\":{\"from\":\"drop\",\"to\":\"log\"},"
                              "\"sample.rate\":{\"from\":50,\"to\":5},"
                              "\"sample.secret\":{\"changed\":true}}");
    free(text);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_land_in_their_fields),
        cmocka_unit_test(test_values_and_refusals),
        cmocka_unit_test(test_file_with_lines),
        cmocka_unit_test(test_written_form_reads_back),
        cmocka_unit_test(test_diff_hides_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
