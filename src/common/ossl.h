/*
 * ossl: the OpenSSL side of pki, for the few callers that need OpenSSL types (TLS set-up in
 * keyfleetd and libkeyfleet, and the pki modules themselves). Everyone else uses the pki_*
 * headers, which hide these types.
 */
#ifndef KF_COMMON_OSSL_H
#define KF_COMMON_OSSL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/err.h"
#include "common/pki_cert.h"
#include "common/pki_crl.h"
#include "common/pki_csr.h"
#include "common/pki_key.h"

/* The property query that keeps digests out of the TPM and routes key operations to it. */
#define KF_TPM2_PROPQ "?provider=tpm2,tpm2.digest!=yes"

enum kf_key_loc {
    KF_KEYLOC_NONE = 0, /* public key only */
    KF_KEYLOC_MEMORY,   /* generated here, not yet saved */
    KF_KEYLOC_FILE,
    KF_KEYLOC_PKCS11,
    KF_KEYLOC_TPM2,
};

struct kf_key {
    EVP_PKEY *pkey; /* owned */
    enum kf_key_loc loc;
    OSSL_LIB_CTX *libctx; /* borrowed (process-wide); NULL = OpenSSL's default */
    const char *propq;    /* static; NULL = none */
};

struct kf_cert {
    X509 *x509; /* owned reference */
};

/*
 * A CSR as read by kf_csr_parse: its bytes, and pointers into them. The public key stays bytes
 * until someone needs it (OpenSSL 3.0's d2i_X509_REQ would run its key decoders, about 90 us).
 */
struct kf_csr {
    unsigned char *der; /* owned: the whole request */
    size_t der_len;
    const unsigned char *tbs; /* CertificationRequestInfo, as signed (into der) */
    size_t tbs_len;
    const unsigned char *spki; /* SubjectPublicKeyInfo (into der) */
    size_t spki_len;
    X509_NAME *subject;   /* owned */
    X509_ALGOR *sig_alg;  /* owned */
    ASN1_BIT_STRING *sig; /* owned */
    char *challenge;      /* owned: its challengePassword attribute, or NULL */
};

struct kf_crl {
    X509_CRL *crl; /* owned reference */
};

/*
 * Records `rc` with the formatted sentence followed by the reasons OpenSSL queued (": reason;
 * reason"), and empties OpenSSL's error queue. Returns `rc`.
 */
enum kf_err kf_ossl_fail(enum kf_err rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Empties OpenSSL's error queue without reporting it. */
void kf_ossl_clear(void);

/*
 * The library context with the tpm2 and default providers loaded, created on first use and kept
 * until exit. Returns NULL (with kf_fail) when the tpm2 provider cannot be loaded.
 */
OSSL_LIB_CTX *kf_ossl_tpm2_libctx(void);

/*
 * The libp11 "pkcs11" engine for `module_path`, initialised on first use and kept until exit.
 * Returns NULL (with kf_fail) when the engine or the module cannot be loaded, or when another
 * module is already in use (one PKCS#11 module per process).
 */
struct engine_st *kf_ossl_pkcs11_engine(const char *module_path);

/*
 * Splits a PKCS#11 key URI: `path` gets the URI without its query; `module` the module path (from
 * module-path or KEYFLEET_PKCS11_MODULE); `pin` the PIN (pin-value, pin-source, or
 * KEYFLEET_PKCS11_PIN) with `*have_pin`. The caller wipes `pin`. Errors name the URI.
 */
enum kf_err kf_pkcs11_uri_parse(const char *uri, char *path, size_t path_cap, char *module,
                                size_t module_cap, char *pin, size_t pin_cap, int *have_pin);

/* Wraps `pkey` (taken) as a key at `loc`; NULL on allocation failure (pkey is freed). */
struct kf_key *kf_key_wrap(EVP_PKEY *pkey, enum kf_key_loc loc, OSSL_LIB_CTX *libctx,
                           const char *propq);

/* Wraps `x509` (taken) as a certificate; NULL on allocation failure (x509 is freed). */
struct kf_cert *kf_cert_wrap(X509 *x509);

/* Wraps `crl` (taken); NULL on allocation failure (crl is freed). */
struct kf_crl *kf_crl_wrap(X509_CRL *crl);

/*
 * A digest-sign context for `key`, ready for X509_sign_ctx / X509_CRL_sign_ctx /
 * X509_REQ_sign_ctx, with the digest keyfleet uses for the key's type. Owned by the caller.
 */
EVP_MD_CTX *kf_key_sign_ctx(const struct kf_key *key);

/* The digest name for `key`'s type ("SHA256", "SHA384", or NULL for Ed25519). */
const char *kf_key_digest_name(const struct kf_key *key);

/* The classification behind kf_key_type(), for a bare EVP_PKEY. */
enum kf_key_type kf_pkey_type(const EVP_PKEY *pkey);

/* Parses a 128-bit-or-shorter hex serial into a new ASN1_INTEGER; NULL (with kf_fail) if bad. */
ASN1_INTEGER *kf_serial_from_hex(const char *hex);

/* Formats an ASN1_INTEGER as lower-case hex without leading zeros (KF_SERIAL_HEX_MAX). */
void kf_serial_to_hex(const ASN1_INTEGER *serial, char *out);

/*
 * Adds CN=`cn` to `name` as a UTF8String. Ids may be 128 characters while OpenSSL's string table
 * stops a CN at X.520's 64, so the entry is made directly. 0 on failure.
 */
int kf_name_add_cn(X509_NAME *name, const char *cn);

/* Converts an ASN1_TIME to time_t (0 when it cannot). */
time_t kf_asn1_time(const ASN1_TIME *t);

#endif
