/*
 * keyfleet/err.h: the error codes keyfleet's functions return (0 is success), for the device
 * SDK's users: keyfleet/device.h's functions return one of these, and kf_device_errmsg() has the
 * sentence that explains it.
 *
 * Codes come from one X-macro so that the enum, the names and the descriptions cannot drift apart
 * (libuv's UV_ERRNO_MAP). Numbers are never reused: a retired code keeps its number, commented out.
 */
#ifndef KEYFLEET_ERR_H
#define KEYFLEET_ERR_H

#include "keyfleet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

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
KF_EXPORT const char *kf_strerror(enum kf_err rc);

/* Returns the stable machine code of `rc` ("malformed"), used in JSON errors; never NULL. */
KF_EXPORT const char *kf_errcode(enum kf_err rc);

#ifdef __cplusplus
}
#endif

#endif
