/*
 * pki_key: keys by type and by URI, over OpenSSL 3, without OpenSSL types in the interface.
 *
 * A `struct kf_key` is a public key, or a key pair whose private half lives in a file, in a
 * PKCS#11 token (through the libp11 engine) or in a TPM 2.0 (through the tpm2 provider). Whatever
 * holds it, the key signs through the same calls, so a CA key can move into an HSM without its
 * callers changing.
 *
 * Key URIs:
 *   /path/key.pem, file:/path/key.pem   PEM private key (PKCS#8, optionally passphrase-protected,
 *                                       or a TSS2 PRIVATE KEY blob, which goes to the TPM)
 *   pkcs11:token=T;object=O;type=private[?module-path=/lib.so&pin-value=P|pin-source=file:/f]
 *                                       RFC 7512; the module and PIN can also come from
 *                                       KEYFLEET_PKCS11_MODULE and KEYFLEET_PKCS11_PIN
 *   tpm2:handle:0x81000010              a persistent TPM key
 *   tpm2:/path/key.tss2                 a TSS2 key blob (meaningful only with its TPM)
 * The TPM is reached through TPM2OPENSSL_TCTI (for example a tpm2-abrmd bus name).
 */
#ifndef KF_COMMON_PKI_KEY_H
#define KF_COMMON_PKI_KEY_H

#include <stddef.h>

#include "common/buf.h"

struct kf_key;

enum kf_key_type {
    KF_KEY_NONE = 0,
    KF_KEY_EC_P256 = 1,
    KF_KEY_EC_P384 = 2,
    KF_KEY_ED25519 = 3,
    KF_KEY_RSA2048 = 4, /* also: any RSA key of 2048 to 3071 bits */
    KF_KEY_RSA3072 = 5, /* also: any RSA key of 3072 bits or more */
    KF_KEY_OTHER = 6,   /* a type or size keyfleet does not issue for (RSA-1024, P-521, ...) */
};

/* Bit for `type` in an allowed-types mask. */
#define KF_KEY_BIT(type) (1u << (type))
/* The types keyfleet accepts by default. */
#define KF_KEY_ALLOWED_DEFAULT                                                              \
    (KF_KEY_BIT(KF_KEY_EC_P256) | KF_KEY_BIT(KF_KEY_EC_P384) | KF_KEY_BIT(KF_KEY_ED25519) | \
     KF_KEY_BIT(KF_KEY_RSA2048) | KF_KEY_BIT(KF_KEY_RSA3072))
#define KF_KEY_MIN_RSA_BITS 2048

#define KF_FINGERPRINT_HEX 65 /* SHA-256 as lower-case hex, with the NUL */

/* "p256", "p384", "ed25519", "rsa2048", "rsa3072", "other"; never NULL. */
const char *kf_key_type_name(enum kf_key_type type);

/* Parses a type name (also "ec-p256", "prime256v1", "secp384r1", "rsa"); KF_KEY_NONE if unknown. */
enum kf_key_type kf_key_type_parse(const char *name);

/* Generates a fresh key pair of `type` in memory. `*out` is owned by the caller. */
enum kf_err kf_key_generate(enum kf_key_type type, struct kf_key **out);

/*
 * Loads a private key from `uri` (see above). `passphrase` (borrowed, may be NULL) unlocks an
 * encrypted PEM file. Errors name the URI and the reason: no such file, wrong passphrase, the file
 * holds a certificate, the token or handle is not there. `*out` is owned by the caller.
 */
enum kf_err kf_key_load(const char *uri, const char *passphrase, struct kf_key **out);

/*
 * Copies `uri` into `out` (capacity `cap`, truncated) with any PKCS#11 "pin-value" replaced by
 * "***", so that a key URI can be shown or stored without its PIN.
 */
void kf_key_uri_redact(const char *uri, char *out, size_t cap);

/*
 * Parses a public key: a PEM "PUBLIC KEY" block or DER SubjectPublicKeyInfo. A PEM file holding
 * something else fails with KF_E_WRONG_TYPE naming what it holds. `*out` is owned by the caller.
 */
enum kf_err kf_key_parse_public(const void *data, size_t len, struct kf_key **out);

/* As kf_key_parse_public, reading `path`; errors name the file. */
enum kf_err kf_key_load_public_file(const char *path, struct kf_key **out);

/*
 * Writes the private key (which must be held in memory) to `path` as PKCS#8 PEM, encrypted with
 * AES-256 when `passphrase` is given. The file is created with mode 0600, never replaces an
 * existing file (KF_E_EXISTS), and is complete or absent after a crash (written aside, fsynced,
 * linked).
 */
enum kf_err kf_key_save(const struct kf_key *key, const char *path, const char *passphrase);

/* Appends the public key as PEM ("PUBLIC KEY") or as DER SubjectPublicKeyInfo. */
enum kf_err kf_key_public_pem(const struct kf_key *key, struct kf_buf *out);
enum kf_err kf_key_public_der(const struct kf_key *key, struct kf_buf *out);

/* SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex, into `hex` (KF_FINGERPRINT_HEX). */
enum kf_err kf_key_fingerprint(const struct kf_key *key, char *hex);

/* The key's type (KF_KEY_OTHER for sizes and curves keyfleet does not issue for). */
enum kf_key_type kf_key_type(const struct kf_key *key);

/* The key's size in bits (256 for P-256, 2048 for RSA-2048). */
int kf_key_bits(const struct kf_key *key);

/* A human description into `out`: "EC P-256", "Ed25519", "RSA 1024". */
void kf_key_describe(const struct kf_key *key, char *out, size_t cap);

/* Where the private half lives: "file", "memory", "pkcs11", "tpm2", or "none" (public only). */
const char *kf_key_location(const struct kf_key *key);

/* 1 when both keys have the same public half. */
int kf_key_public_equal(const struct kf_key *a, const struct kf_key *b);

/*
 * KF_OK when the key's type is in `allowed` (a mask of KF_KEY_BIT) and an RSA key has at least
 * `min_rsa_bits`; otherwise KF_E_POLICY with a sentence such as "RSA 1024 keys are too small: the
 * minimum is RSA 2048". `what` names the key in that sentence ("the CSR's key").
 */
enum kf_err kf_key_check_allowed(const struct kf_key *key, unsigned allowed, int min_rsa_bits,
                                 const char *what);

/*
 * Parses a DER SubjectPublicKeyInfo without building a key object (OpenSSL 3.0's key decoders
 * cost some 100 us a call; this costs well under 1 us): checks its structure, classifies it
 * into `*type` (KF_KEY_OTHER for curves and sizes keyfleet does not issue for), and checks it as
 * kf_key_check_allowed() does, naming it `what` in any message. An EC point must be a whole
 * uncompressed or compressed point of its curve; an Ed25519 key 32 bytes; an RSA key a
 * well-formed RSAPublicKey. KF_E_MALFORMED or KF_E_POLICY otherwise. `type` may be NULL.
 */
enum kf_err kf_spki_check(const unsigned char *der, size_t len, unsigned allowed, int min_rsa_bits,
                          const char *what, enum kf_key_type *type);

/*
 * Builds a public key from a DER SubjectPublicKeyInfo (`*out` owned by the caller). EC P-256 and
 * P-384, Ed25519 and RSA keys are built from their parts, without OpenSSL 3.0's generic key
 * decoders (some 90 us a call; this costs about 15); other keys go through the decoders.
 * KF_E_MALFORMED, naming `what`, when the bytes are no valid key.
 */
enum kf_err kf_key_from_spki(const unsigned char *der, size_t len, const char *what,
                             struct kf_key **out);

/*
 * Signs `data` with the private key (digest chosen by key type: SHA-256 for P-256 and RSA,
 * SHA-384 for P-384, none for Ed25519) and appends the signature. Used to prove that a key works.
 */
enum kf_err kf_key_sign(const struct kf_key *key, const void *data, size_t len, struct kf_buf *sig);

/* Verifies a signature made by kf_key_sign with the public half; KF_E_BAD_SIGNATURE if it fails. */
enum kf_err kf_key_verify(const struct kf_key *key, const void *data, size_t len, const void *sig,
                          size_t sig_len);

/* Frees the key; NULL is fine. */
void kf_key_free(struct kf_key *key);

#endif
