/* log: logfmt lines on stderr, quoting, thresholds. */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

/* Runs `fn` with stderr sent to a file and returns what it wrote (malloc()ed). */
static char *capture(void (*fn)(void))
{
    const char *path = kf_test_path("stderr.txt");
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    return kf_test_read(path);
}

static void log_some(void)
{
    kf_log_set_level(KF_LOG_INFO);
    kf_log(KF_LOG_INFO, "store", "opened store", "path", "keyfleet.db", "readers", "4", NULL);
    kf_log(KF_LOG_DEBUG, "store", "not shown", NULL);
    kf_log(KF_LOG_WARN, "cli", "odd value", "value", "has \"quotes\" and spaces", "empty", "",
           "nul", NULL, NULL);
    kf_log(KF_LOG_ERROR, "tls", "bad\nline", "k", "a=b", NULL);
}

static void test_format(void **state)
{
    char *out = capture(log_some);
    char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    /* time=2026-11-23T19:08:01.123Z level=info module=store msg="opened store" ... */
    assert_memory_equal(l1, "time=", 5);
    assert_int_equal(l1[15], 'T');
    assert_int_equal(l1[28], 'Z');
    assert_non_null(strstr(l1, " level=info module=store msg=\"opened store\" path=keyfleet.db "
                               "readers=4\n"));
    assert_null(strstr(out, "not shown"));
    assert_non_null(strstr(l2, "level=warn module=cli msg=\"odd value\" "
                               "value=\"has \\\"quotes\\\" and spaces\" empty=\"\"\n"));
    assert_non_null(strstr(l3, "level=error module=tls msg=\"bad\\nline\" k=\"a=b\"\n"));
    assert_string_equal(strchr(l3, '\n'), "\n"); /* three lines, no more */
    free(out);
}

static void test_levels(void **state)
{
    assert_int_equal(kf_log_level_parse("debug"), KF_LOG_DEBUG);
    assert_int_equal(kf_log_level_parse("off"), KF_LOG_OFF);
    assert_int_equal(kf_log_level_parse("loud"), -1);
    assert_int_equal(kf_log_level_parse(NULL), -1);
    kf_log_set_level(KF_LOG_ERROR);
    assert_false(kf_log_enabled(KF_LOG_WARN));
    assert_true(kf_log_enabled(KF_LOG_ERROR));
    kf_log_set_level(KF_LOG_OFF);
    assert_false(kf_log_enabled(KF_LOG_ERROR));
    setenv("KEYFLEET_LOG", "debug", 1);
    kf_log_init_from_env();
    assert_true(kf_log_enabled(KF_LOG_DEBUG));
    setenv("KEYFLEET_LOG", "nonsense", 1);
    kf_log_init_from_env();
    assert_true(kf_log_enabled(KF_LOG_DEBUG)); /* unchanged */
}

static void long_line(void)
{
    char big[10000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    kf_log_set_level(KF_LOG_INFO);
    kf_log(KF_LOG_INFO, "t", "long", "v", big, "after", "y", NULL);
}

static void test_long_lines_are_cut_not_overrun(void **state)
{
    char *out = capture(long_line);
    size_t n = strlen(out);
    assert_true(n <= 4096);
    assert_int_equal(out[n - 1], '\n');
    assert_int_equal(strchr(out, '\n') - out, (long)n - 1);
    free(out);
}

static void test_logfmt_value(void **state)
{
    char out[16];
    kf_logfmt_value(out, sizeof(out), "plain");
    assert_string_equal(out, "plain");
    kf_logfmt_value(out, sizeof(out), "a b");
    assert_string_equal(out, "\"a b\"");
    kf_logfmt_value(out, sizeof(out), "\x01");
    assert_string_equal(out, "\"\\x01\"");
    kf_logfmt_value(out, 8, "a very long value with spaces");
    assert_true(strlen(out) < 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_long_lines_are_cut_not_overrun),
        cmocka_unit_test(test_logfmt_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
