/*
 * testutil: what the unit tests share: cmocka, a fresh temporary directory per test program, store
 * URLs that let the store tests run on any back end, and assertions that print keyfleet's error
 * message when a call fails.
 */
#ifndef KF_TESTS_TESTUTIL_H
#define KF_TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/err.h"

/* Asserts that `expr` returns KF_OK, printing kf_errmsg() when it does not. */
#define KF_OK_OR_FAIL(expr)                                                                    \
    do {                                                                                       \
        enum kf_err rc_ = (expr);                                                              \
        if (rc_ != KF_OK) fail_msg("%s returned %s: %s", #expr, kf_errcode(rc_), kf_errmsg()); \
    } while (0)

/* Asserts that `expr` returns `want`, printing both codes and the message when it does not. */
#define KF_EXPECT_ERR(want, expr)                                                             \
    do {                                                                                      \
        enum kf_err rc_ = (expr);                                                             \
        if (rc_ != (want))                                                                    \
            fail_msg("%s returned %s (%s), expected %s", #expr, kf_errcode(rc_), kf_errmsg(), \
                     kf_errcode(want));                                                       \
    } while (0)

/* Asserts that this thread's last error message contains `needle`. */
#define KF_EXPECT_MSG(needle)                                                     \
    do {                                                                          \
        if (!strstr(kf_errmsg(), (needle)))                                       \
            fail_msg("error message \"%s\" lacks \"%s\"", kf_errmsg(), (needle)); \
    } while (0)

/*
 * A new empty directory for this test program (under $KF_TEST_TMP or /tmp), removed with its
 * contents at exit. Returns a static string.
 */
const char *kf_test_dir(void);

/* Joins kf_test_dir() and `name` into a static buffer (one of 8 rotating ones). */
const char *kf_test_path(const char *name);

/*
 * The URL of a fresh store named `name`, for the tests that must run unchanged on every store back
 * end (tests/unit/server/store/store.c and audit.c). `name` is 1 to 48 characters; in the URL every
 * character of it other than a-z and 0-9 becomes '_' ("submit-mixed" is "submit_mixed").
 *
 * KF_TEST_STORE unset or empty: the URL is "sqlite:" and kf_test_path() of the name as the URL
 * spells it, a SQLite file in this program's temporary directory.
 *
 * KF_TEST_STORE set: it is a prefix, and the URL is KF_TEST_STORE followed by the name. With
 * KF_TEST_STORE=postgresql://kf@127.0.0.1:54329/kft_ the store "reopen" is
 * postgresql://kf@127.0.0.1:54329/kft_reopen. Whoever sets it (a runner that started a database
 * server for this run) promises that nothing exists yet under the prefix, since a test creates its
 * store with KF_STORE_CREATE and counts on it being empty, and removes what the tests leave there.
 *
 * A name may be asked for once per program: a second call with it (or with a name that becomes the
 * same in the URL) fails the test, since two tests would share one store. Returns a static string
 * that lives until the program exits.
 */
const char *kf_test_store_url(const char *name);

/* Writes `text` to `path` (mode 0644), failing the test on error. */
void kf_test_write(const char *path, const char *text);

/* Reads `path` into a malloc()ed NUL-terminated string, failing the test on error. */
char *kf_test_read(const char *path);

/* Runs a shell command; returns its exit status (the test fails if it cannot be run). */
int kf_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- a small PKI for tests ---- */
#include "common/pki_cert.h"
#include "common/pki_key.h"

struct kf_test_pki {
    struct kf_key *root_key, *issuing_key;
    struct kf_cert *root, *issuing;
};

/* Makes a root CA and an issuing CA with keys of `type`, valid from an hour ago for ten years. */
void kf_test_pki_make(struct kf_test_pki *p, enum kf_key_type type);
void kf_test_pki_free(struct kf_test_pki *p);

/*
 * Issues a device certificate for `id` from the issuing CA, valid [nb, na] (both 0: an hour ago
 * to 30 days on). The new P-256 key goes to `*key` when given, else it is freed.
 */
struct kf_cert *kf_test_issue(struct kf_test_pki *p, enum kf_profile profile, const char *id,
                              time_t nb, time_t na, struct kf_key **key);

/* Writes a certificate as PEM to `path` (failing the test on error). */
void kf_test_save_cert(const struct kf_cert *c, const char *path);

#endif
