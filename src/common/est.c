/* EST message encodings (RFC 7030 section 4, RFC 8951). */
#include "common/est.h"

#include <string.h>

#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "common/ossl.h"
#include "common/pem.h"

/* Puts `out` back to `len` bytes after a failed append, so that no half answer is left. */
static void truncate_to(struct kf_buf *out, size_t len)
{
    out->len = len;
    if (out->data) out->data[len] = '\0';
}

enum kf_err kf_est_certs_only(struct kf_cert *const *certs, size_t n, struct kf_buf *out)
{
    size_t start = out->len;
    PKCS7 *p7 = NULL;
    unsigned char *der = NULL;
    int der_len;
    enum kf_err rc;

    if (n == 0 || n > KF_EST_CERTS_MAX)
        return kf_fail(KF_E_INVALID, "a certs-only answer holds 1 to %d certificates, not %zu",
                       KF_EST_CERTS_MAX, n);
    for (size_t i = 0; i < n; i++)
        if (!certs[i] || !certs[i]->x509)
            return kf_fail(KF_E_INVALID, "certificate %zu of a certs-only answer is missing", i);

    /*
     * The structure `openssl crl2pkcs7 -nocrl` builds: SignedData version 1, encapsulated
     * content type id-data with the content itself absent (not an empty OCTET STRING, which
     * PKCS7_content_new would add), the certificates, and empty digest and signer sets.
     */
    p7 = PKCS7_new();
    if (!p7 || !PKCS7_set_type(p7, NID_pkcs7_signed)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot make a PKCS#7 SignedData");
        goto out;
    }
    p7->d.sign->contents->type = OBJ_nid2obj(NID_pkcs7_data);
    for (size_t i = 0; i < n; i++) {
        if (!PKCS7_add_certificate(p7, certs[i]->x509)) {
            rc = kf_ossl_fail(KF_E_CRYPTO, "cannot add certificate %zu to a PKCS#7 SignedData", i);
            goto out;
        }
    }
    der_len = i2d_PKCS7(p7, &der);
    if (der_len <= 0) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot encode a PKCS#7 SignedData");
        goto out;
    }
    rc = kf_b64_encode(der, (size_t)der_len, out, 64);
    if (rc) rc = kf_wrap(rc, "the certs-only answer of %d bytes does not fit", der_len);
out:
    if (rc) truncate_to(out, start);
    OPENSSL_free(der);
    PKCS7_free(p7);
    return rc;
}

/* 1 when `der[0..len)` is exactly one DER X.509 certificate. */
static int is_certificate(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    int yes = x && p == der + len;
    X509_free(x);
    kf_ossl_clear();
    return yes;
}

/* Parses the DER of a CSR, telling a certificate sent by mistake from garbage. */
static enum kf_err parse_csr_der(const unsigned char *der, size_t len, struct kf_csr **out)
{
    enum kf_err rc = kf_csr_parse(der, len, out);
    if (rc == KF_E_MALFORMED && is_certificate(der, len))
        return kf_fail(KF_E_WRONG_TYPE, "EST request body holds an X.509 certificate, not a "
                                        "PKCS#10 certificate request");
    if (rc) return kf_wrap(rc, "EST request body");
    return KF_OK;
}

static enum kf_err decode_pem(const char *text, size_t len, const char *label, struct kf_buf *der)
{
    char got[KF_PEM_LABEL_MAX];
    size_t pos = 0;
    enum kf_err rc;

    if (strcmp(label, "CERTIFICATE REQUEST") != 0 && strcmp(label, "NEW CERTIFICATE REQUEST") != 0)
        return kf_fail(KF_E_WRONG_TYPE, "EST request body holds PEM %s, not a CERTIFICATE REQUEST",
                       label);
    rc = kf_pem_next(text, len, &pos, got, der);
    if (rc) return kf_wrap(rc, "EST request body");
    return KF_OK;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

enum kf_err kf_est_decode_csr(const void *body, size_t len, struct kf_csr **out)
{
    const char *text = body;
    char label[KF_PEM_LABEL_MAX];
    struct kf_buf der;
    size_t i;
    enum kf_err rc;

    *out = NULL;
    if (len > KF_EST_CSR_BODY_MAX)
        return kf_fail(KF_E_OVERSIZE, "EST request body of %zu bytes is larger than the %d allowed",
                       len, KF_EST_CSR_BODY_MAX);
    for (i = 0; i < len; i++)
        if (!is_space(text[i])) break;
    if (i == len)
        return kf_fail(KF_E_MALFORMED, "EST request body is empty: expected a base64 PKCS#10 "
                                       "certificate request");

    kf_buf_init(&der, KF_CSR_MAX);
    if (kf_pem_first_label(text, len, label) == KF_OK) {
        rc = decode_pem(text, len, label, &der);
    } else {
        rc = kf_b64_decode(text, len, &der);
        if (rc == KF_E_OVERSIZE)
            rc = kf_fail(rc, "EST request body decodes to more than the %d bytes a CSR may have",
                         KF_CSR_MAX);
        else if (rc)
            rc = kf_wrap(rc, "EST request body is not base64 (RFC 8951)");
    }
    if (!rc && der.len == 0) rc = kf_fail(KF_E_MALFORMED, "EST request body decodes to nothing");
    if (!rc) rc = parse_csr_der(der.data, der.len, out);
    kf_buf_free(&der);
    return rc;
}

/* keyfleet's CsrAttrs; est.h shows it as ASN.1. Checked against `openssl asn1parse -genconf`. */
static const unsigned char csrattrs_der[] = {
    0x30, 0x21,                                                 /* SEQUENCE (CsrAttrs) */
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, /* ecdsa-with-SHA256 */
    0x30, 0x15,                                                 /* SEQUENCE (Attribute) */
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,       /* id-ecPublicKey */
    0x31, 0x0a,                                                 /* SET */
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, /* prime256v1 */
};

enum kf_err kf_est_csrattrs(struct kf_buf *out)
{
    size_t start = out->len;
    enum kf_err rc = kf_b64_encode(csrattrs_der, sizeof(csrattrs_der), out, 64);
    if (rc) {
        truncate_to(out, start);
        return kf_wrap(rc, "the csrattrs answer does not fit");
    }
    return KF_OK;
}

/* The certificates of an EST certs-only answer (base64 DER PKCS#7), as a PEM chain. */
enum kf_err kf_est_certs_pem(const struct kf_buf *body, struct kf_buf *pem)
{
    struct kf_buf der;
    const unsigned char *p;
    PKCS7 *p7 = NULL;
    STACK_OF(X509) *certs = NULL;
    enum kf_err rc;
    int i;

    kf_buf_init(&der, body->len);
    rc = kf_b64_decode((const char *)body->data, body->len, &der);
    if (rc) {
        kf_buf_free(&der);
        return kf_wrap(rc, "the EST answer is not base64");
    }
    p = der.data;
    p7 = d2i_PKCS7(NULL, &p, (long)der.len);
    if (p7 && PKCS7_type_is_signed(p7) && p7->d.sign) certs = p7->d.sign->cert;
    if (!certs || sk_X509_num(certs) < 1) {
        rc = kf_ossl_fail(KF_E_MALFORMED, "the EST answer holds no certificate");
        goto out;
    }
    for (i = 0; i < sk_X509_num(certs) && !rc; i++) {
        struct kf_cert *c = kf_cert_wrap(X509_dup(sk_X509_value(certs, i)));
        rc = c ? kf_cert_pem(c, pem) : KF_E_NOMEM;
        kf_cert_free(c);
    }
out:
    PKCS7_free(p7);
    kf_buf_free(&der);
    return rc;
}
