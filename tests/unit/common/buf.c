/* buf: bounded growth, files, secrets. */
#include "testutil.h"

#include <string.h>

#include "common/buf.h"

static void test_append_within_bound(void **state)
{
    struct kf_buf b;
    kf_buf_init(&b, 10);
    assert_string_equal(kf_buf_str(&b), "");
    KF_OK_OR_FAIL(kf_buf_append_str(&b, "hello"));
    KF_OK_OR_FAIL(kf_buf_appendf(&b, "%d", 12345));
    assert_int_equal(b.len, 10);
    assert_string_equal(kf_buf_str(&b), "hello12345");
    kf_buf_free(&b);
}

static void test_oversize_leaves_buffer_unchanged(void **state)
{
    struct kf_buf b;
    kf_buf_init(&b, 8);
    KF_OK_OR_FAIL(kf_buf_append_str(&b, "abcdef"));
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_buf_append_str(&b, "xyz"));
    assert_string_equal(kf_buf_str(&b), "abcdef");
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_buf_appendf(&b, "%s", "123"));
    assert_int_equal(b.len, 6);
    /* A huge length cannot wrap the bound check around. */
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_buf_append(&b, "x", (size_t)-1));
    kf_buf_free(&b);
}

static void test_take_and_reset(void **state)
{
    struct kf_buf b;
    unsigned char *p;
    size_t n;
    kf_buf_init(&b, 100);
    KF_OK_OR_FAIL(kf_buf_append(&b, "abc", 3));
    kf_buf_reset(&b);
    assert_int_equal(b.len, 0);
    KF_OK_OR_FAIL(kf_buf_append(&b, "xyz", 3));
    p = kf_buf_take(&b, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "xyz", 3);
    assert_null(b.data);
    free(p);
}

static void test_secret_buffer_grows(void **state)
{
    struct kf_buf b;
    kf_buf_init_secret(&b, 100000);
    for (int i = 0; i < 1000; i++)
        KF_OK_OR_FAIL(kf_buf_append_str(&b, "secret-"));
    assert_int_equal(b.len, 7000);
    assert_memory_equal(b.data + 6993, "secret-", 7);
    kf_buf_free(&b);
}

static void test_read_file(void **state)
{
    struct kf_buf b;
    const char *p = kf_test_path("f.txt");
    kf_test_write(p, "0123456789");
    kf_buf_init(&b, 100);
    KF_OK_OR_FAIL(kf_buf_read_file(&b, p));
    assert_string_equal(kf_buf_str(&b), "0123456789");
    kf_buf_free(&b);

    kf_buf_init(&b, 5);
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_buf_read_file(&b, p));
    KF_EXPECT_MSG("larger than the 5 bytes allowed");
    kf_buf_free(&b);

    kf_buf_init(&b, 100);
    KF_EXPECT_ERR(KF_E_IO, kf_buf_read_file(&b, kf_test_path("missing")));
    KF_EXPECT_MSG("No such file");
    KF_EXPECT_ERR(KF_E_IO, kf_buf_read_file(&b, kf_test_dir()));
    KF_EXPECT_MSG("directory");
    kf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_within_bound),
        cmocka_unit_test(test_oversize_leaves_buffer_unchanged),
        cmocka_unit_test(test_take_and_reset),
        cmocka_unit_test(test_secret_buffer_grows),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
