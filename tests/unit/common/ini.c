/* ini: the strict INI reader. */
#include "testutil.h"

#include <string.h>

#include "common/ini.h"

struct seen {
    char text[1024];
};

static enum kf_err collect(const char *section, const char *key, const char *value, int line,
                           void *arg)
{
    struct seen *s = arg;
    size_t n = strlen(s->text);
    if (!key) {
        if (strcmp(section, "bad") == 0) return kf_fail(KF_E_CONFIG, "no such section");
        snprintf(s->text + n, sizeof(s->text) - n, "[%s]@%d|", section, line);
        return KF_OK;
    }
    if (strcmp(key, "reject") == 0) return kf_fail(KF_E_CONFIG, "rejected %s", value);
    snprintf(s->text + n, sizeof(s->text) - n, "%s.%s=%s@%d|", section, key, value, line);
    return KF_OK;
}

static void test_parses(void **state)
{
    const char *text = "# comment\n; another\n\n[ca]\nissuing_key = pkcs11:token=a;object=b\n"
                       "  days=30  \r\n[server ]\nempty =\nhash = a#b\n";
    struct seen s = {""};
    KF_OK_OR_FAIL(kf_ini_parse(text, strlen(text), collect, &s));
    assert_string_equal(s.text, "[ca]@4|ca.issuing_key=pkcs11:token=a;object=b@5|ca.days=30@6|"
                                "[server]@7|server.empty=@8|server.hash=a#b@9|");
}

static void bad(const char *text, const char *msg)
{
    struct seen s = {""};
    KF_EXPECT_ERR(KF_E_CONFIG, kf_ini_parse(text, strlen(text), collect, &s));
    KF_EXPECT_MSG(msg);
}

static void test_errors_name_the_line(void **state)
{
    bad("[a]\nx = 1\nnonsense\n", "line 3: expected \"key = value\"");
    bad("x = 1\n", "line 1: key outside any [section]");
    bad("[a\n", "line 1: a section header must end with ']'");
    bad("[a b]\n", "line 1: bad section name");
    bad("[a]\n = 3\n", "line 2: bad key name");
    bad("[a]\nreject = me\n", "line 2: rejected me");
    bad("[a]\n\n[bad]\n", "line 3: no such section");
    {
        char big[KF_INI_VALUE_MAX + 32];
        memset(big, 'v', sizeof(big));
        memcpy(big, "[a]\nk=", 6);
        big[sizeof(big) - 1] = '\0';
        bad(big, "line 2: value longer than");
    }
    {
        const char nul[] = "[a]\nk=a\0b\n";
        struct seen s = {""};
        KF_EXPECT_ERR(KF_E_CONFIG, kf_ini_parse(nul, sizeof(nul) - 1, collect, &s));
        KF_EXPECT_MSG("line 2: NUL byte");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses),
        cmocka_unit_test(test_errors_name_the_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
