/*
 * est: the message encodings of EST (RFC 7030 section 4, as amended by RFC 8951), as pure
 * functions over (buf, len) with no I/O: what keyfleetd puts in and takes out of the bodies of
 * /.well-known/est/{cacerts,simpleenroll,simplereenroll,csrattrs}.
 *
 * Every body is base64 of DER (RFC 8951: no Content-Transfer-Encoding needed, line breaks
 * allowed). Answers are written with 64-character lines ending in "\n".
 */
#ifndef KF_COMMON_EST_H
#define KF_COMMON_EST_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/pki_cert.h"
#include "common/pki_csr.h"

/*
 * Content-Type of the simpleenroll / simplereenroll answers (RFC 7030 4.2.3). Send it as
 * written: libest compares it byte for byte.
 */
#define KF_EST_TYPE_CERTS_ONLY "application/pkcs7-mime; smime-type=certs-only"
/* Content-Type of the /cacerts answer: RFC 7030 4.1.3 names the bare type, no parameter. */
#define KF_EST_TYPE_CACERTS "application/pkcs7-mime"
/*
 * The challenge of every 401 (RFC 9110 11.6.1 requires one). EST here authenticates by TLS
 * client certificate only; offering Basic would invite devices to send a password. The scheme
 * names what to present; the body says what was wrong with what came.
 */
#define KF_EST_HEADER_AUTHENTICATE \
    "WWW-Authenticate: ClientCertificate realm=\"keyfleet provisioning\"\r\n"
/* Content-Type of a simpleenroll / simplereenroll request (RFC 7030 4.2.1). */
#define KF_EST_TYPE_PKCS10 "application/pkcs10"
/* Content-Type of the /csrattrs answer (RFC 7030 4.5.2). */
#define KF_EST_TYPE_CSRATTRS "application/csrattrs"
/*
 * An extra response header line (for kf_http_response's `extra`). RFC 8951 says receivers must
 * ignore it; clients written to RFC 7030 alone look for it, and it costs nothing to send.
 */
#define KF_EST_HEADER_CTE "Content-Transfer-Encoding: base64\r\n"

/* The most certificates one certs-only answer carries. */
#define KF_EST_CERTS_MAX KF_CERT_CHAIN_MAX

/*
 * The largest simpleenroll body accepted: the base64 of a KF_CSR_MAX-byte DER CSR with a CRLF
 * every 64 characters (90,116 bytes), with room to spare. The daemon should refuse longer
 * bodies (413) before reading them; kf_est_decode_csr refuses them too.
 */
#define KF_EST_CSR_BODY_MAX (96 * 1024)

/*
 * Appends to `out` the base64 (64-character lines) of a degenerate certs-only CMS SignedData
 * (PKCS#7, RFC 5652 / RFC 8551 "certs-only") holding `certs[0..n)` in that order: version 1, no
 * digest algorithms, encapsulated content type id-data with no content, no CRLs, no signers.
 * The DER is byte for byte what `openssl crl2pkcs7 -nocrl` makes of the same certificates.
 *
 * `certs` and its elements are borrowed. `n` must be 1 to KF_EST_CERTS_MAX (KF_E_INVALID
 * otherwise). Fails with KF_E_OVERSIZE when `out` cannot hold the answer, KF_E_CRYPTO when
 * OpenSSL cannot encode it; on failure `out` is left as it was.
 */
enum kf_err kf_est_certs_only(struct kf_cert *const *certs, size_t n, struct kf_buf *out);

/*
 * Decodes the body of a simpleenroll / simplereenroll request, `body[0..len)` (borrowed), into
 * a new CSR in `*out` (owned by the caller, kf_csr_free; NULL on failure).
 *
 * Accepted: base64 of a DER PKCS#10 (RFC 8951), white space, CR and LF anywhere; and, for
 * lenient clients, PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST"). Binary DER is not
 * accepted: RFC 8951 requires base64.
 *
 * Errors, each with a sentence that starts "EST request body":
 *   KF_E_OVERSIZE    longer than KF_EST_CSR_BODY_MAX, or decodes to more than KF_CSR_MAX bytes
 *   KF_E_MALFORMED   empty; bad base64 (naming the character and its offset in the body); not a
 *                    PKCS#10 CSR (with OpenSSL's reasons); bad PEM
 *   KF_E_WRONG_TYPE  an X.509 certificate, or PEM of another type, instead of a CSR
 * The CSR is only parsed here: its signature and subject are checked by kf_csr_check.
 */
enum kf_err kf_est_decode_csr(const void *body, size_t len, struct kf_csr **out);

/*
 * Appends to `out` the base64 (64-character lines) of keyfleet's CsrAttrs (RFC 7030 4.5.2):
 *
 *   SEQUENCE {
 *     OBJECT IDENTIFIER ecdsa-with-SHA256 (1.2.840.10045.4.3.2)      -- sign the CSR with this
 *     SEQUENCE {                                                     -- an Attribute:
 *       OBJECT IDENTIFIER id-ecPublicKey (1.2.840.10045.2.1)         --   an EC key ...
 *       SET { OBJECT IDENTIFIER prime256v1 (1.2.840.10045.3.1.7) }   --   ... on P-256
 *     }
 *   }
 *
 * This is the form of RFC 7030's own example (there with secp384r1 and ecdsa-with-SHA384): a
 * bare OID for the signature algorithm and an Attribute whose value names the curve, which
 * libest and other stock clients parse. No challengePassword: keyfleet authenticates devices by
 * their TLS client certificate. Fails only with KF_E_OVERSIZE (`out`
 * too small; `out` is then left as it was).
 */
enum kf_err kf_est_csrattrs(struct kf_buf *out);

/*
 * Appends, as PEM, the certificates of an EST certs-only answer (RFC 7030: base64 of a DER
 * PKCS#7 SignedData). KF_E_MALFORMED when it holds none.
 */
enum kf_err kf_est_certs_pem(const struct kf_buf *body, struct kf_buf *pem);

#endif
