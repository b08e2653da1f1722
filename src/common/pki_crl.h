/*
 * pki_crl: certificate revocation lists: building a signed CRL and reading one.
 */
#ifndef KF_COMMON_PKI_CRL_H
#define KF_COMMON_PKI_CRL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/buf.h"
#include "common/pki_cert.h"

struct kf_crl;

/* RFC 5280 CRLReason codes keyfleet uses (certificateHold is not offered: revocation is final). */
enum kf_crl_reason {
    KF_CRL_UNSPECIFIED = 0,
    KF_CRL_KEY_COMPROMISE = 1,
    KF_CRL_CA_COMPROMISE = 2,
    KF_CRL_AFFILIATION_CHANGED = 3,
    KF_CRL_SUPERSEDED = 4,
    KF_CRL_CESSATION_OF_OPERATION = 5,
    KF_CRL_PRIVILEGE_WITHDRAWN = 9,
};

/* "unspecified", "key-compromise", ... ; NULL for a code outside the list. */
const char *kf_crl_reason_name(int reason);

/* Parses a reason name; -1 when unknown. */
int kf_crl_reason_parse(const char *name);

/* A space-separated list of every reason name, for usage messages. */
const char *kf_crl_reason_names(void);

struct kf_revoked {
    const char *serial_hex; /* borrowed */
    time_t revoked_at;
    int reason; /* enum kf_crl_reason */
};

/*
 * Builds a CRL (v2, with crlNumber and AuthorityKeyIdentifier) listing `revoked[0..n)`, signed by
 * `issuer_key` for `issuer`. `*out` is owned by the caller.
 */
enum kf_err kf_crl_build(const struct kf_cert *issuer, const struct kf_key *issuer_key,
                         const struct kf_revoked *revoked, size_t n, uint64_t crl_number,
                         time_t this_update, time_t next_update, struct kf_crl **out);

/* Parses a PEM ("X509 CRL") or DER CRL. `*out` is owned by the caller. */
enum kf_err kf_crl_parse(const void *data, size_t len, struct kf_crl **out);

/* Appends the CRL as PEM or DER. */
enum kf_err kf_crl_pem(const struct kf_crl *crl, struct kf_buf *out);
enum kf_err kf_crl_der(const struct kf_crl *crl, struct kf_buf *out);

/* Number of entries; 1 when `serial_hex` is listed (and its reason into `*reason` if given). */
size_t kf_crl_count(const struct kf_crl *crl);
int kf_crl_lists(const struct kf_crl *crl, const char *serial_hex, int *reason);

/* The CRL's crlNumber (0 when it has none) and its nextUpdate. */
uint64_t kf_crl_number(const struct kf_crl *crl);
time_t kf_crl_next_update(const struct kf_crl *crl);

/* 1 when the CRL's signature verifies with the issuer's key. */
int kf_crl_signed_by(const struct kf_crl *crl, const struct kf_cert *issuer);

struct kf_crl *kf_crl_ref(const struct kf_crl *crl);
void kf_crl_free(struct kf_crl *crl);

#endif
