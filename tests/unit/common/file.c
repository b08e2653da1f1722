/* file: whole-or-nothing writes, modes, no overwrite. */
#include "testutil.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"

static int leftovers(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp-")) n++;
    closedir(d);
    return n;
}

static void test_write_modes_and_refusal(void **state)
{
    const char *p = kf_test_path("a.key");
    struct stat st;
    char *text;

    KF_OK_OR_FAIL(kf_file_write(p, "secret", 6, 0600, 0));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    KF_EXPECT_ERR(KF_E_EXISTS, kf_file_write(p, "other", 5, 0600, 0));
    KF_EXPECT_MSG("already exists; not overwriting it");
    text = kf_test_read(p);
    assert_string_equal(text, "secret");
    free(text);
    KF_OK_OR_FAIL(kf_file_write(p, "replaced", 8, 0644, KF_FILE_REPLACE));
    text = kf_test_read(p);
    assert_string_equal(text, "replaced");
    free(text);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(leftovers(kf_test_dir(), "a.key"), 0);
}

static void test_write_errors(void **state)
{
    KF_EXPECT_ERR(KF_E_IO, kf_file_write(kf_test_path("nodir/x"), "x", 1, 0600, 0));
    KF_EXPECT_MSG("nodir/x");
}

static void test_mkdir_and_join(void **state)
{
    char out[32];
    const char *d = kf_test_path("sub");
    struct stat st;
    mode_t old = umask(077);
    KF_OK_OR_FAIL(kf_file_mkdir(d, 0750));
    umask(old);
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0750);
    KF_EXPECT_ERR(KF_E_EXISTS, kf_file_mkdir(d, 0700));
    assert_true(kf_file_exists(d));
    assert_false(kf_file_exists(kf_test_path("nothing")));
    KF_OK_OR_FAIL(kf_path_join(out, sizeof(out), "dir", "ca/root.crt"));
    assert_string_equal(out, "dir/ca/root.crt");
    KF_OK_OR_FAIL(kf_path_join(out, sizeof(out), "dir", "/abs/path"));
    assert_string_equal(out, "/abs/path");
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_path_join(out, 8, "directory", "file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_modes_and_refusal),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_mkdir_and_join),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
