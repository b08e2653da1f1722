/*
 * err: keyfleet's error codes and the thread-local sentence that explains the last one.
 *
 * Every fallible function returns an `enum kf_err`; KF_OK is 0 so that `if (rc) goto out;` reads
 * naturally. A function that fails records a sentence a person understands with kf_fail(), and the
 * caller that reports the failure reads it with kf_errmsg(). The message is per thread (as
 * libgit2's git_error_last), so worker threads never see each other's errors.
 *
 * The codes themselves are public, in include/keyfleet/err.h (the device SDK returns them).
 */
#ifndef KF_COMMON_ERR_H
#define KF_COMMON_ERR_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "keyfleet/err.h"

/*
 * Records `rc` and a formatted sentence as this thread's last error and returns `rc`, so that
 * `return kf_fail(KF_E_MALFORMED, "file %s: no END line", path);` both explains and propagates.
 */
enum kf_err kf_fail(enum kf_err rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
enum kf_err kf_vfail(enum kf_err rc, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * Prefixes this thread's last message with context ("loading issuing key: <old message>") and
 * returns `rc` unchanged. When no message was recorded, the description of `rc` is used.
 */
enum kf_err kf_wrap(enum kf_err rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's last error message; the description of the last code when none was recorded. */
const char *kf_errmsg(void);

/* This thread's last recorded code (KF_OK when none). */
enum kf_err kf_errlast(void);

/* Forgets this thread's last error. */
void kf_err_clear(void);

/* Aborts with file and line: for our own bugs only, never for bad input. */
#define KF_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "keyfleet: assertion failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                           \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#define KF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
