/* Certificate revocation lists. */
#include "common/pki_crl.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/ossl.h"
#include "common/pem.h"

#define CRL_MAX (16 * 1024 * 1024)

static const struct {
    int code;
    const char *name;
} reasons[] = {
    {KF_CRL_UNSPECIFIED, "unspecified"},
    {KF_CRL_KEY_COMPROMISE, "key-compromise"},
    {KF_CRL_CA_COMPROMISE, "ca-compromise"},
    {KF_CRL_AFFILIATION_CHANGED, "affiliation-changed"},
    {KF_CRL_SUPERSEDED, "superseded"},
    {KF_CRL_CESSATION_OF_OPERATION, "cessation-of-operation"},
    {KF_CRL_PRIVILEGE_WITHDRAWN, "privilege-withdrawn"},
};

const char *kf_crl_reason_name(int reason)
{
    for (size_t i = 0; i < KF_ARRAY_LEN(reasons); i++)
        if (reasons[i].code == reason) return reasons[i].name;
    return NULL;
}

int kf_crl_reason_parse(const char *name)
{
    for (size_t i = 0; name && i < KF_ARRAY_LEN(reasons); i++)
        if (strcmp(reasons[i].name, name) == 0) return reasons[i].code;
    return -1;
}

const char *kf_crl_reason_names(void)
{
    return "unspecified key-compromise ca-compromise affiliation-changed superseded "
           "cessation-of-operation privilege-withdrawn";
}

static enum kf_err add_entry(X509_CRL *crl, const struct kf_revoked *r)
{
    X509_REVOKED *rev = X509_REVOKED_new();
    ASN1_INTEGER *serial = kf_serial_from_hex(r->serial_hex);
    ASN1_TIME *when = ASN1_TIME_new();
    ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
    enum kf_err rc = KF_OK;

    if (!serial) {
        rc = kf_errlast();
        goto out;
    }
    if (!rev || !when || !reason || !ASN1_TIME_set(when, r->revoked_at) ||
        !X509_REVOKED_set_serialNumber(rev, serial) ||
        !X509_REVOKED_set_revocationDate(rev, when) || !ASN1_ENUMERATED_set(reason, r->reason) ||
        (r->reason != KF_CRL_UNSPECIFIED &&
         !X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0)) ||
        !X509_CRL_add0_revoked(crl, rev)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot add serial %s to the CRL", r->serial_hex);
        goto out;
    }
    rev = NULL; /* the CRL owns it now */
out:
    X509_REVOKED_free(rev);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    ASN1_ENUMERATED_free(reason);
    return rc;
}

enum kf_err kf_crl_build(const struct kf_cert *issuer, const struct kf_key *issuer_key,
                         const struct kf_revoked *revoked, size_t n, uint64_t crl_number,
                         time_t this_update, time_t next_update, struct kf_crl **out)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_new();
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    EVP_MD_CTX *mctx = NULL;
    X509V3_CTX ctx;
    X509_EXTENSION *aki = NULL;
    enum kf_err rc = KF_OK;

    *out = NULL;
    if (!crl || !t || !num) {
        rc = kf_ossl_fail(KF_E_NOMEM, "out of memory");
        goto out;
    }
    if (next_update <= this_update) {
        rc = kf_fail(KF_E_INVALID, "CRL nextUpdate must come after thisUpdate");
        goto out;
    }
    if (!X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->x509)) ||
        !ASN1_TIME_set(t, this_update) || !X509_CRL_set1_lastUpdate(crl, t) ||
        !ASN1_TIME_set(t, next_update) || !X509_CRL_set1_nextUpdate(crl, t) ||
        !ASN1_INTEGER_set_uint64(num, crl_number) ||
        !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot fill in the CRL");
        goto out;
    }
    X509V3_set_ctx(&ctx, issuer->x509, NULL, NULL, crl, 0);
    aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (!aki || !X509_CRL_add_ext(crl, aki, -1)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot add authorityKeyIdentifier to the CRL");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rc = add_entry(crl, &revoked[i]);
        if (rc) goto out;
    }
    X509_CRL_sort(crl);
    mctx = kf_key_sign_ctx(issuer_key);
    if (!mctx) {
        rc = kf_errlast();
        goto out;
    }
    if (X509_CRL_sign_ctx(crl, mctx) <= 0) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot sign the CRL");
        goto out;
    }
    *out = kf_crl_wrap(crl);
    crl = NULL;
    rc = *out ? KF_OK : KF_E_NOMEM;
out:
    X509_EXTENSION_free(aki);
    EVP_MD_CTX_free(mctx);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return rc;
}

static enum kf_err parse_der(const unsigned char *der, size_t len, struct kf_crl **out)
{
    const unsigned char *p = der;
    X509_CRL *crl = len ? d2i_X509_CRL(NULL, &p, (long)len) : NULL;
    if (!crl) return kf_ossl_fail(KF_E_MALFORMED, "not a valid CRL");
    if (p != der + len) {
        X509_CRL_free(crl);
        return kf_fail(KF_E_MALFORMED, "not a valid CRL: trailing data");
    }
    *out = kf_crl_wrap(crl);
    return *out ? KF_OK : KF_E_NOMEM;
}

enum kf_err kf_crl_parse(const void *data, size_t len, struct kf_crl **out)
{
    char label[KF_PEM_LABEL_MAX];
    struct kf_buf der;
    size_t pos = 0;
    enum kf_err rc;

    *out = NULL;
    if (kf_pem_first_label(data, len, label) != KF_OK) return parse_der(data, len, out);
    if (strcmp(label, "X509 CRL") != 0)
        return kf_fail(KF_E_WRONG_TYPE, "holds a %s, not an X509 CRL", label);
    kf_buf_init(&der, CRL_MAX);
    rc = kf_pem_next(data, len, &pos, label, &der);
    if (!rc) rc = parse_der(der.data, der.len, out);
    kf_buf_free(&der);
    return rc;
}

enum kf_err kf_crl_der(const struct kf_crl *crl, struct kf_buf *out)
{
    unsigned char *der = NULL;
    int n = i2d_X509_CRL(crl->crl, &der);
    enum kf_err rc;
    if (n <= 0) return kf_ossl_fail(KF_E_CRYPTO, "cannot encode the CRL");
    rc = kf_buf_append(out, der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}

enum kf_err kf_crl_pem(const struct kf_crl *crl, struct kf_buf *out)
{
    struct kf_buf der;
    enum kf_err rc;
    kf_buf_init(&der, CRL_MAX);
    rc = kf_crl_der(crl, &der);
    if (!rc) rc = kf_pem_encode("X509 CRL", der.data, der.len, out);
    kf_buf_free(&der);
    return rc;
}

size_t kf_crl_count(const struct kf_crl *crl)
{
    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl->crl);
    return revs ? (size_t)sk_X509_REVOKED_num(revs) : 0;
}

int kf_crl_lists(const struct kf_crl *crl, const char *serial_hex, int *reason)
{
    ASN1_INTEGER *serial = kf_serial_from_hex(serial_hex);
    X509_REVOKED *rev = NULL;
    int found;
    if (!serial) return 0;
    found = X509_CRL_get0_by_serial(crl->crl, &rev, serial) == 1;
    ASN1_INTEGER_free(serial);
    if (found && reason) {
        int crit = 0;
        ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
        *reason = e ? (int)ASN1_ENUMERATED_get(e) : KF_CRL_UNSPECIFIED;
        ASN1_ENUMERATED_free(e);
    }
    ERR_clear_error();
    return found;
}

uint64_t kf_crl_number(const struct kf_crl *crl)
{
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl->crl, NID_crl_number, NULL, NULL);
    uint64_t v = 0;
    if (num && !ASN1_INTEGER_get_uint64(&v, num)) v = 0;
    ASN1_INTEGER_free(num);
    ERR_clear_error();
    return v;
}

time_t kf_crl_next_update(const struct kf_crl *crl)
{
    return kf_asn1_time(X509_CRL_get0_nextUpdate(crl->crl));
}

int kf_crl_signed_by(const struct kf_crl *crl, const struct kf_cert *issuer)
{
    EVP_PKEY *pkey = X509_get0_pubkey(issuer->x509);
    int r = pkey && X509_CRL_verify(crl->crl, pkey) == 1;
    ERR_clear_error();
    return r;
}

struct kf_crl *kf_crl_ref(const struct kf_crl *crl)
{
    X509_CRL_up_ref(crl->crl);
    return kf_crl_wrap(crl->crl);
}

void kf_crl_free(struct kf_crl *crl)
{
    if (!crl) return;
    X509_CRL_free(crl->crl);
    free(crl);
}
