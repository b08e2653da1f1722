/*
 * signer: the one door to a CA's private key.
 *
 * Everything the CA signs goes through here, and the signer does not sign what it is handed: it
 * receives a request (profile, names, validity, and the public key as DER), parses the key,
 * checks the request against its policy, and only then builds and signs the certificate itself
 * (OpenSSH's monitor: the privileged side checks what it is asked to do). The request is plain
 * data, so the signer can later move into a separate key process without its callers changing.
 *
 * A signer is either the issuing CA (device, service and server certificates, CRLs, and the audit
 * log's checkpoints, whose statement it writes itself) or the root
 * CA (issuing CA certificates only). Its key may be a file, a PKCS#11 token or a TPM. Signing is
 * serialized per signer; a signer may be shared by threads.
 */
#ifndef KF_SERVER_CA_SIGNER_H
#define KF_SERVER_CA_SIGNER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/buf.h"
#include "common/pki_cert.h"
#include "common/pki_crl.h"
#include "common/pki_key.h"

struct kf_signer;

enum kf_signer_role {
    KF_SIGNER_ROOT = 1,    /* signs issuing CA certificates */
    KF_SIGNER_ISSUING = 2, /* signs device, service and server certificates and CRLs */
};

#define KF_SPKI_MAX 2048 /* the largest public key (DER) a request may carry */

struct kf_sign_request {
    enum kf_profile profile;
    const unsigned char *spki; /* DER SubjectPublicKeyInfo of the key to certify (borrowed) */
    size_t spki_len;
    const char *cn;
    const char *org;       /* NULL: none */
    const char *device_id; /* device profile */
    const char *service;   /* service profile */
    const char *role;      /* service profile */
    const char *const *dns_names;
    size_t n_dns;
    const char *const *ip_addrs;
    size_t n_ips;
    time_t not_before, not_after;
};

struct kf_signer_policy {
    int max_days[5];       /* longest validity per profile (indexed by enum kf_profile) */
    unsigned allowed_keys; /* mask of KF_KEY_BIT */
    int min_rsa_bits;
    int backdate_seconds; /* how far before now notBefore may be (clock skew) */
};

/* The defaults: at most 10 years for CAs, 2 years for devices, services and servers; every
 * issued key type; RSA >= 2048; 5 minutes of backdating. */
void kf_signer_policy_default(struct kf_signer_policy *p);

/*
 * Opens a signer for the CA certificate at `cert_path` whose private key is at `key_uri`
 * (a path, pkcs11: or tpm2: URI; `passphrase` may be NULL). Checks that the certificate is a
 * valid CA now, and that the key is its key. `*out` is owned by the caller.
 */
enum kf_err kf_signer_open(enum kf_signer_role role, const char *cert_path, const char *key_uri,
                           const char *passphrase, struct kf_signer **out);

/*
 * Takes `cert` and `key` (both taken, freed even on failure) as a signer, with the same checks
 * as kf_signer_open. For `keyfleet init`, which holds both in memory.
 */
enum kf_err kf_signer_wrap(enum kf_signer_role role, struct kf_cert *cert, struct kf_key *key,
                           struct kf_signer **out);

/* Replaces the policy (copied). */
void kf_signer_set_policy(struct kf_signer *s, const struct kf_signer_policy *p);

/*
 * Checks `req` against the policy and, when it passes, issues the certificate. KF_E_DENIED
 * naming the rule for a request the policy refuses (profile not for this CA, validity too long
 * or beyond the CA's own, backdated, key type or size), KF_E_INVALID or KF_E_MALFORMED for a
 * request that does not make sense. `*out` is owned by the caller.
 */
enum kf_err kf_signer_issue(struct kf_signer *s, const struct kf_sign_request *req,
                            struct kf_cert **out);

/*
 * Signs a CRL listing `revoked[0..n)` (issuing signer only). `*out` is owned by the caller.
 */
enum kf_err kf_signer_crl(struct kf_signer *s, const struct kf_revoked *revoked, size_t n,
                          uint64_t number, time_t this_update, time_t next_update,
                          struct kf_crl **out);

/*
 * The statement an audit checkpoint signs: that record `seq` (>= 1) of the deployment's audit
 * log had hash `head` (64 lower-case hex digits) at `time_ms`, as one line of text each after a
 * domain tag ("keyfleet audit checkpoint v1"), appended to `out`. KF_E_INVALID for bad fields.
 */
enum kf_err kf_signer_checkpoint_statement(int64_t seq, const char *head, int64_t time_ms,
                                           struct kf_buf *out);

/*
 * Signs an audit checkpoint (issuing signer only): builds the statement from the fields itself,
 * so it never signs bytes it was handed, and appends the signature to `sig`.
 */
enum kf_err kf_signer_checkpoint(struct kf_signer *s, int64_t seq, const char *head,
                                 int64_t time_ms, struct kf_buf *sig);

/* The CA certificate (borrowed, lives as long as the signer). */
const struct kf_cert *kf_signer_cert(const struct kf_signer *s);

/* Where the key lives ("file", "pkcs11", "tpm2", "memory"). */
const char *kf_signer_key_location(const struct kf_signer *s);

/* How many certificates and CRLs this signer has signed. */
uint64_t kf_signer_count(const struct kf_signer *s);

void kf_signer_free(struct kf_signer *s);

#endif
