/*
 * cjson: the canonical form TUF signs: keys sorted by bytes, no whitespace, only '"' and '\'
 * escaped, integers only; the same bytes whatever order or spacing the input had.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "common/cjson.h"

static char *canon(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    struct kf_buf b;
    char *out;
    if (!j) fail_msg("bad test JSON %s: %s", text, e.text);
    kf_buf_init(&b, 1 << 16);
    KF_OK_OR_FAIL(kf_cjson_encode(j, &b));
    out = strndup((const char *)b.data, b.len);
    kf_buf_free(&b);
    json_decref(j);
    return out;
}

static void expect(const char *in, const char *want)
{
    char *got = canon(in);
    if (strcmp(got, want) != 0) fail_msg("%s\n gave %s\n want %s", in, got, want);
    free(got);
}

static void test_form(void **state)
{
    expect("{ \"b\" : 1, \"a\" : [ true, false, null, -7 ] }",
           "{\"a\":[true,false,null,-7],\"b\":1}");
    /* Sorted by bytes: upper case before lower, a prefix before what it starts. */
    expect("{\"b\":0,\"B\":0,\"ab\":0,\"a\":0,\"_type\":0}",
           "{\"B\":0,\"_type\":0,\"a\":0,\"ab\":0,\"b\":0}");
    /* Nested objects are sorted too. */
    expect("{\"z\":{\"y\":1,\"x\":{\"w\":2,\"v\":3}}}",
           "{\"z\":{\"x\":{\"v\":3,\"w\":2},\"y\":1}}");
    /* Only '"' and '\' are escaped; a newline, a tab and UTF-8 go as they are. */
    expect("[\"a\\\"b\\\\c\\nd\\te\\u00e9/\"]", "[\"a\\\"b\\\\c\nd\te\xc3\xa9/\"]");
    expect("{}", "{}");
    expect("[]", "[]");
    expect("9007199254740993", "9007199254740993");
}

static void test_refusals(void **state)
{
    json_t *j = json_pack("{s:f}", "x", 1.5);
    struct kf_buf b;
    kf_buf_init(&b, 1024);
    KF_EXPECT_ERR(KF_E_INVALID, kf_cjson_encode(j, &b));
    KF_EXPECT_MSG("no real numbers");
    json_decref(j);
    /* Deep nesting is refused, not recursed into without end. */
    j = json_array();
    for (int i = 0; i < 100; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, j);
        j = outer;
    }
    kf_buf_reset(&b);
    KF_EXPECT_ERR(KF_E_INVALID, kf_cjson_encode(j, &b));
    json_decref(j);
    /* A full buffer is an error, not a cut form. */
    j = json_pack("{s:s}", "key", "a value longer than the buffer");
    kf_buf_free(&b);
    kf_buf_init(&b, 8);
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_cjson_encode(j, &b));
    json_decref(j);
    kf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
