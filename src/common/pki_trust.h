/*
 * pki_trust: chain verification against a trust set, at a given time and for a given purpose,
 * saying why a chain fails.
 */
#ifndef KF_COMMON_PKI_TRUST_H
#define KF_COMMON_PKI_TRUST_H

#include <stddef.h>
#include <time.h>

#include "common/pki_cert.h"
#include "common/pki_crl.h"

struct kf_trust;

enum kf_purpose {
    KF_PURPOSE_ANY = 0,
    KF_PURPOSE_CLIENT = 1, /* TLS client: EKU clientAuth when EKU is present */
    KF_PURPOSE_SERVER = 2, /* TLS server: EKU serverAuth when EKU is present */
};

enum kf_verify_reason {
    KF_VERIFY_OK = 0,
    KF_VERIFY_EXPIRED,
    KF_VERIFY_NOT_YET_VALID,
    KF_VERIFY_UNKNOWN_ISSUER,
    KF_VERIFY_REVOKED,
    KF_VERIFY_WRONG_PURPOSE,
    KF_VERIFY_BAD_SIGNATURE,
    KF_VERIFY_NOT_CA,      /* an intermediate that is not allowed to sign certificates */
    KF_VERIFY_CRL_INVALID, /* a CRL that is expired, not yet valid or badly signed */
    KF_VERIFY_OTHER,
};

/* "ok", "expired", "not_yet_valid", "unknown_issuer", "revoked", "wrong_purpose", ... */
const char *kf_verify_reason_name(enum kf_verify_reason reason);

struct kf_verify_result {
    enum kf_verify_reason reason;
    int depth;                 /* 0 = the leaf; where the failure was found */
    char subject[KF_NAME_MAX]; /* subject of the certificate at `depth` */
    /* On success: SHA-256 of the SubjectPublicKeyInfo of the trust anchor the chain reached. */
    char anchor[KF_FINGERPRINT_HEX];
};

/* A new, empty trust set; `*out` is owned by the caller. */
enum kf_err kf_trust_new(struct kf_trust **out);
void kf_trust_free(struct kf_trust *trust);

/*
 * Adds a trust anchor (borrowed; a reference is kept). An anchor may be an intermediate CA: a
 * chain that reaches it is trusted without going further up.
 */
enum kf_err kf_trust_add_cert(struct kf_trust *trust, const struct kf_cert *anchor);

/* Adds a CRL (borrowed; a reference is kept). Certificates its issuer issued are checked on it. */
enum kf_err kf_trust_add_crl(struct kf_trust *trust, const struct kf_crl *crl);

/*
 * Sets the one CRL of `issuer`, a trust anchor of this set, checking its signature here, once
 * (borrowed; references are kept; a second call replaces the first). A leaf `issuer` issued is
 * then looked up in it with nothing more to verify, where kf_trust_add_crl costs OpenSSL an
 * ECDSA verification of the CRL's signature on every chain (~60 µs a handshake). The outcome is
 * the same: a listed leaf is KF_VERIFY_REVOKED, and while the CRL is outside its thisUpdate ..
 * nextUpdate window every leaf of `issuer` is KF_VERIFY_CRL_INVALID, both ahead of any other
 * check, as OpenSSL orders them. KF_E_BAD_SIGNATURE if `issuer` did not sign the CRL;
 * KF_E_INVALID if it has a critical extension (which OpenSSL would refuse on every chain).
 */
enum kf_err kf_trust_set_issuer_crl(struct kf_trust *trust, const struct kf_crl *crl,
                                    const struct kf_cert *issuer);

/*
 * Verifies `leaf` with the help of `untrusted[0..n)` (intermediates the peer sent) against the
 * trust set, at time `at`, for `purpose`. Returns KF_OK, or an error matching the reason
 * (KF_E_EXPIRED, KF_E_NOT_YET_VALID, KF_E_UNKNOWN_ISSUER, KF_E_REVOKED, KF_E_WRONG_PURPOSE,
 * KF_E_BAD_SIGNATURE, KF_E_DENIED) with a sentence naming the certificate; `res` (may be NULL)
 * receives the details.
 */
enum kf_err kf_trust_verify(const struct kf_trust *trust, const struct kf_cert *leaf,
                            struct kf_cert *const *untrusted, size_t n, time_t at,
                            enum kf_purpose purpose, struct kf_verify_result *res);

#endif
