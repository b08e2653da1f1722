/*
 * pki_csr: certificate signing requests (PKCS#10): parsing, creating, and checking against rules.
 */
#ifndef KF_COMMON_PKI_CSR_H
#define KF_COMMON_PKI_CSR_H

#include <stddef.h>

#include "common/buf.h"
#include "common/pki_key.h"

struct kf_csr;

#define KF_CSR_MAX (64 * 1024)

/*
 * The rules a CSR is checked against, in this order: signature, digest, key_size, key_type,
 * subject_extra, subject_cn, subject_id, subject_match. The key rules read the CSR's
 * SubjectPublicKeyInfo exactly as the signer does (a named curve only, no explicit parameters),
 * so a CSR that passes is never refused by the signer for its key.
 */
enum kf_csr_rule {
    KF_CSR_RULE_NONE = 0,      /* all rules passed */
    KF_CSR_RULE_SIGNATURE,     /* the self-signature must verify with the CSR's own key */
    KF_CSR_RULE_KEY_TYPE,      /* the key type must be allowed */
    KF_CSR_RULE_KEY_SIZE,      /* an RSA key must be large enough */
    KF_CSR_RULE_SUBJECT_CN,    /* the subject must have exactly one CN */
    KF_CSR_RULE_SUBJECT_ID,    /* the CN must be a valid id */
    KF_CSR_RULE_SUBJECT_MATCH, /* the CN must equal the expected id */
    KF_CSR_RULE_SUBJECT_EXTRA, /* no attribute other than CN (and O/OU when allowed) */
    KF_CSR_RULE_DIGEST,        /* the self-signature's digest must be SHA-256 or stronger */
};

/* "signature", "digest", "key_type", "key_size", "subject_cn", "subject_id", "subject_match", ...
 */
const char *kf_csr_rule_name(enum kf_csr_rule rule);

struct kf_csr_policy {
    unsigned allowed_key_types; /* mask of KF_KEY_BIT */
    int min_rsa_bits;
    const char *expected_cn; /* borrowed; NULL: any valid id */
    int allow_org_units;     /* 1: O and OU may appear beside CN */
    /*
     * Borrowed; re-enrollment: the certificate being renewed. A subject identical to its subject
     * passes the subject_extra rule whatever it holds (RFC 7030 4.2.2).
     */
    const struct kf_cert *renewing;
};

/* Fills `p` with keyfleet's defaults: every issued type, RSA >= 2048, any valid id, CN only. */
void kf_csr_policy_default(struct kf_csr_policy *p);

/*
 * Parses a CSR: PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST") or DER, at most
 * KF_CSR_MAX bytes. PEM of another type fails with KF_E_WRONG_TYPE. `*out` is owned by the caller.
 */
enum kf_err kf_csr_parse(const void *data, size_t len, struct kf_csr **out);

void kf_csr_free(struct kf_csr *csr);

/*
 * Checks `csr` against `policy`. On failure returns KF_E_BAD_SIGNATURE (signature rule) or
 * KF_E_POLICY (the others) with a sentence naming the rule, and sets `*failed` (may be NULL).
 */
enum kf_err kf_csr_check(const struct kf_csr *csr, const struct kf_csr_policy *policy,
                         enum kf_csr_rule *failed);

/* Its challengePassword attribute (UTF-8), or NULL when it has none. */
const char *kf_csr_challenge(const struct kf_csr *csr);

/* The subject's CN; KF_E_NOT_FOUND when there is none. */
enum kf_err kf_csr_subject_cn(const struct kf_csr *csr, char *out, size_t cap);

/* The requested public key; `*out` is owned by the caller. */
enum kf_err kf_csr_public_key(const struct kf_csr *csr, struct kf_key **out);

/* Creates a CSR with subject CN=`cn`, signed by `key`, and appends it as PEM to `out`. */
enum kf_err kf_csr_create(const struct kf_key *key, const char *cn, struct kf_buf *out);

/* Appends the requested key as DER SubjectPublicKeyInfo (from the CSR's own bytes: cheap). */
enum kf_err kf_csr_spki(const struct kf_csr *csr, struct kf_buf *out);

/* Appends the CSR as DER. */
enum kf_err kf_csr_der(const struct kf_csr *csr, struct kf_buf *out);

#endif
