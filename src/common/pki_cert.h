/*
 * pki_cert: X.509 certificates: parsing, fields, and building from keyfleet's profiles.
 *
 * Profiles fix everything a certificate says beyond its subject, key, validity and names:
 *   root CA      CA:TRUE (critical), keyCertSign|cRLSign, self-signed
 *   issuing CA   CA:TRUE pathlen:0 (critical), keyCertSign|cRLSign
 *   device       CA:FALSE, digitalSignature, EKU clientAuth, URI SAN urn:keyfleet:device:<id>
 *   service      CA:FALSE, digitalSignature, EKU clientAuth, URI SANs urn:keyfleet:service:<name>
 *                and urn:keyfleet:role:<role>, subject OU = role
 *   server       CA:FALSE, digitalSignature (+keyEncipherment for RSA), EKU serverAuth,
 *                DNS and IP SANs
 * Every certificate gets a random 128-bit serial, SubjectKeyIdentifier and (unless self-signed)
 * AuthorityKeyIdentifier.
 */
#ifndef KF_COMMON_PKI_CERT_H
#define KF_COMMON_PKI_CERT_H

#include <stddef.h>
#include <time.h>

#include "common/buf.h"
#include "common/pki_key.h"

struct kf_cert;

#define KF_SERIAL_HEX_MAX 48  /* up to 20 octets as hex, with the NUL */
#define KF_NAME_MAX       512 /* a distinguished name as text */
#define KF_CERT_CHAIN_MAX 16  /* certificates read from one chain file */
#define KF_CERT_FILE_MAX  (256 * 1024)

enum kf_profile {
    KF_PROFILE_ROOT_CA = 0,
    KF_PROFILE_ISSUING_CA = 1,
    KF_PROFILE_DEVICE = 2,
    KF_PROFILE_SERVICE = 3,
    KF_PROFILE_SERVER = 4,
};

/* "root-ca", "issuing-ca", "device", "service", "server". */
const char *kf_profile_name(enum kf_profile profile);

/*
 * Parses one certificate: the first CERTIFICATE block of PEM text, or DER. PEM that holds no
 * certificate fails with KF_E_WRONG_TYPE naming what it holds ("holds a PRIVATE KEY, not a
 * certificate"). `*out` is owned by the caller.
 */
enum kf_err kf_cert_parse(const void *data, size_t len, struct kf_cert **out);

/* As kf_cert_parse, reading `path`; every error names the file. */
enum kf_err kf_cert_load_file(const char *path, struct kf_cert **out);

/*
 * Parses every CERTIFICATE block of PEM text (at most KF_CERT_CHAIN_MAX) into a new array.
 * `*out` and each element are owned by the caller (kf_cert_chain_free).
 */
enum kf_err kf_cert_parse_chain(const void *data, size_t len, struct kf_cert ***out, size_t *n);
void kf_cert_chain_free(struct kf_cert **certs, size_t n);

/* Another reference to the same certificate (freed with kf_cert_free). */
struct kf_cert *kf_cert_ref(const struct kf_cert *cert);

void kf_cert_free(struct kf_cert *cert);

/* Appends the certificate as PEM or DER. */
enum kf_err kf_cert_pem(const struct kf_cert *cert, struct kf_buf *out);
enum kf_err kf_cert_der(const struct kf_cert *cert, struct kf_buf *out);

/* The subject's first CN into `out`; KF_E_NOT_FOUND when there is none, KF_E_OVERSIZE if longer. */
enum kf_err kf_cert_subject_cn(const struct kf_cert *cert, char *out, size_t cap);

/* Subject and issuer as one-line text (RFC 2253 order), into `out` of KF_NAME_MAX. */
void kf_cert_subject(const struct kf_cert *cert, char *out, size_t cap);
void kf_cert_issuer(const struct kf_cert *cert, char *out, size_t cap);

/* The serial as lower-case hex without leading zeros ("0" for zero), KF_SERIAL_HEX_MAX. */
void kf_cert_serial_hex(const struct kf_cert *cert, char *out);

/*
 * Normalizes a serial as people copy it (openssl's "0F06AB...", "0f:06:ab:...", "0x0f06ab") to
 * keyfleet's form (lower-case hex, no leading zeros) in `out` (KF_SERIAL_HEX_MAX). KF_E_INVALID
 * naming the text when it is not a hexadecimal number of at most 20 octets.
 */
enum kf_err kf_serial_normalize(const char *in, char *out);

time_t kf_cert_not_before(const struct kf_cert *cert);
time_t kf_cert_not_after(const struct kf_cert *cert);

/* 1 when basicConstraints says CA:TRUE. */
int kf_cert_is_ca(const struct kf_cert *cert);

/* 1 when subject equals issuer and the certificate's own key verifies its signature. */
int kf_cert_is_self_signed(const struct kf_cert *cert);

/* SHA-256 of the DER certificate, lower-case hex (KF_FINGERPRINT_HEX). */
void kf_cert_fingerprint(const struct kf_cert *cert, char *hex);

/* The certified public key; `*out` is owned by the caller. */
enum kf_err kf_cert_public_key(const struct kf_cert *cert, struct kf_key **out);

/*
 * The value after `prefix` of the first URI SAN that starts with it ("urn:keyfleet:device:"),
 * into `out`; KF_E_NOT_FOUND when there is none.
 */
enum kf_err kf_cert_uri_san(const struct kf_cert *cert, const char *prefix, char *out, size_t cap);

/* 1 when the certificate's signature verifies with `issuer_key`. */
int kf_cert_signed_by(const struct kf_cert *cert, const struct kf_key *issuer_key);

/*
 * Checks that `cert` can act as a CA at time `now`: basicConstraints CA:TRUE, keyCertSign in
 * keyUsage when keyUsage is present, within its validity, and a key keyfleet accepts. The error
 * names the certificate as `name` ("certificate factory-ca.pem is not a CA: basicConstraints
 * CA:FALSE").
 */
enum kf_err kf_cert_check_ca(const struct kf_cert *cert, const char *name, time_t now);

/*
 * 1 when `name` is a DNS name a server certificate can carry: labels of letters, digits and
 * hyphens (not at a label's edge), at most 63 characters each and 253 in all, an optional
 * leading "*." wildcard, and a last label that is not all digits (so "1.2.3.4.5" is no name).
 */
int kf_dns_name_ok(const char *name);

/* What a certificate should say; strings are borrowed for the call. */
struct kf_cert_template {
    enum kf_profile profile;
    const char *cn;            /* subject CN (required) */
    const char *org;           /* subject O (optional) */
    const struct kf_key *key;  /* the public key to certify, or NULL and: */
    const unsigned char *spki; /* its DER SubjectPublicKeyInfo (faster: no key object) */
    size_t spki_len;
    time_t not_before, not_after; /* validity */
    const char *device_id;        /* device profile: the id in the URI SAN */
    const char *service;          /* service profile: the service name */
    const char *role;             /* service profile: the role */
    const char *const *dns_names; /* server profile: DNS SANs */
    size_t n_dns;
    const char *const *ip_addrs; /* server profile: IP SANs (IPv4 or IPv6 text) */
    size_t n_ips;
};

#define KF_CERT_MAX_SANS 32

/*
 * Builds and signs a certificate from `t`. `issuer` and `issuer_key` sign it; with `issuer` NULL
 * the certificate is self-signed by `issuer_key` (which must be `t->key`'s pair; root CA only).
 * Validates the template (required fields, SAN syntax, counts) and fails with KF_E_INVALID naming
 * the field. `*out` is owned by the caller.
 *
 * This is the primitive behind the CA's signer: callers in keyfleetd go through the signer, which
 * checks policy before calling it. Built from `spki`, the certificate is made without a key object
 * (OpenSSL 3.0's key encoders cost more than the signature); kf_cert_public_key() decodes it when
 * asked.
 */
enum kf_err kf_cert_build(const struct kf_cert_template *t, const struct kf_cert *issuer,
                          const struct kf_key *issuer_key, struct kf_cert **out);

#endif
