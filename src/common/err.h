/*
 * err: keyfleet's error codes and the thread-local sentence that explains the last one.
 *
 * Every fallible function returns an `enum kf_err`; KF_OK is 0 so that `if (rc) goto out;` reads
 * naturally. A function that fails records a sentence a person understands with kf_fail(), and the
 * caller that reports the failure reads it with kf_errmsg(). The message is per thread (as
 * libgit2's git_error_last), so worker threads never see each other's errors.
 *
 * Codes come from one X-macro so that the enum, the names and the descriptions cannot drift apart
 * (libuv's UV_ERRNO_MAP). Numbers are never reused: a retired code keeps its number, commented out.
 */
#ifndef KF_COMMON_ERR_H
#define KF_COMMON_ERR_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* X(name, number, machine code, description) */
#define KF_ERR_MAP(X)                                                 \
    X(OK, 0, "ok", "success")                                         \
    X(E_INTERNAL, 1, "internal", "internal error")                    \
    X(E_NOMEM, 2, "no_memory", "out of memory")                       \
    X(E_INVALID, 3, "invalid", "invalid argument")                    \
    X(E_MALFORMED, 4, "malformed", "malformed input")                 \
    X(E_OVERSIZE, 5, "oversize", "input larger than allowed")         \
    X(E_DENIED, 6, "denied", "denied by policy")                      \
    X(E_NOT_FOUND, 7, "not_found", "not found")                       \
    X(E_EXISTS, 8, "exists", "already exists")                        \
    X(E_EXPIRED, 9, "expired", "expired")                             \
    X(E_NOT_YET_VALID, 10, "not_yet_valid", "not yet valid")          \
    X(E_REVOKED, 11, "revoked", "revoked")                            \
    X(E_BAD_SIGNATURE, 12, "bad_signature", "bad signature")          \
    X(E_UNKNOWN_ISSUER, 13, "unknown_issuer", "unknown issuer")       \
    X(E_WRONG_PURPOSE, 14, "wrong_purpose", "wrong purpose")          \
    X(E_UNSUPPORTED, 15, "unsupported", "not supported")              \
    X(E_IO, 16, "io", "input/output error")                           \
    X(E_CRYPTO, 17, "crypto", "cryptographic operation failed")       \
    X(E_STORE, 18, "store", "store error")                            \
    X(E_BUSY, 19, "busy", "busy, try again")                          \
    X(E_CONFIG, 20, "config", "configuration error")                  \
    X(E_POLICY, 21, "policy", "breaks a rule")                        \
    X(E_WRONG_TYPE, 22, "wrong_type", "wrong kind of object")         \
    X(E_TAMPERED, 23, "tampered", "integrity check failed")           \
    X(E_TIMEOUT, 24, "timeout", "timed out")                          \
    X(E_CONFLICT, 25, "conflict", "conflicts with the current state") \
    X(E_DISABLED, 26, "disabled", "disabled")                         \
    X(E_USAGE, 27, "usage", "usage error")

enum kf_err {
#define KF_ERR_ENUM_(name, num, code, desc) KF_##name = num,
    KF_ERR_MAP(KF_ERR_ENUM_)
#undef KF_ERR_ENUM_
};

/* Returns the fixed description of `rc` ("malformed input"); never NULL. */
const char *kf_strerror(enum kf_err rc);

/* Returns the stable machine code of `rc` ("malformed"), used in JSON errors; never NULL. */
const char *kf_errcode(enum kf_err rc);

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
