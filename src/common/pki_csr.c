/* PKCS#10 certificate signing requests. */
#include "common/pki_csr.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "common/ident.h"
#include "common/ossl.h"
#include "common/pem.h"

const char *kf_csr_rule_name(enum kf_csr_rule rule)
{
    switch (rule) {
    case KF_CSR_RULE_NONE: return "none";
    case KF_CSR_RULE_SIGNATURE: return "signature";
    case KF_CSR_RULE_KEY_TYPE: return "key_type";
    case KF_CSR_RULE_KEY_SIZE: return "key_size";
    case KF_CSR_RULE_SUBJECT_CN: return "subject_cn";
    case KF_CSR_RULE_SUBJECT_ID: return "subject_id";
    case KF_CSR_RULE_SUBJECT_MATCH: return "subject_match";
    case KF_CSR_RULE_SUBJECT_EXTRA: return "subject_extra";
    }
    return "unknown";
}

void kf_csr_policy_default(struct kf_csr_policy *p)
{
    p->allowed_key_types = KF_KEY_ALLOWED_DEFAULT;
    p->min_rsa_bits = KF_KEY_MIN_RSA_BITS;
    p->expected_cn = NULL;
    p->allow_org_units = 0;
}

static enum kf_err parse_der(const unsigned char *der, size_t len, struct kf_csr **out)
{
    const unsigned char *p = der;
    X509_REQ *req;
    if (len == 0) return kf_fail(KF_E_MALFORMED, "empty CSR");
    req = d2i_X509_REQ(NULL, &p, (long)len);
    if (!req) return kf_ossl_fail(KF_E_MALFORMED, "not a valid PKCS#10 CSR");
    if (p != der + len) {
        X509_REQ_free(req);
        return kf_fail(KF_E_MALFORMED, "not a valid PKCS#10 CSR: trailing data");
    }
    *out = calloc(1, sizeof(**out));
    if (!*out) {
        X509_REQ_free(req);
        return kf_fail(KF_E_NOMEM, "out of memory");
    }
    (*out)->req = req;
    return KF_OK;
}

enum kf_err kf_csr_parse(const void *data, size_t len, struct kf_csr **out)
{
    char label[KF_PEM_LABEL_MAX];
    struct kf_buf der;
    size_t pos = 0;
    enum kf_err rc;

    *out = NULL;
    if (len > KF_CSR_MAX)
        return kf_fail(KF_E_OVERSIZE, "CSR of %zu bytes is larger than the %d allowed", len,
                       KF_CSR_MAX);
    if (kf_pem_first_label(data, len, label) != KF_OK) return parse_der(data, len, out);
    if (strcmp(label, "CERTIFICATE REQUEST") != 0 && strcmp(label, "NEW CERTIFICATE REQUEST") != 0)
        return kf_fail(KF_E_WRONG_TYPE, "holds a %s, not a CERTIFICATE REQUEST", label);
    kf_buf_init(&der, KF_CSR_MAX);
    rc = kf_pem_next(data, len, &pos, label, &der);
    if (!rc) rc = parse_der(der.data, der.len, out);
    kf_buf_free(&der);
    return rc;
}

void kf_csr_free(struct kf_csr *csr)
{
    if (!csr) return;
    X509_REQ_free(csr->req);
    free(csr);
}

enum kf_err kf_csr_subject_cn(const struct kf_csr *csr, char *out, size_t cap)
{
    const X509_NAME *name = X509_REQ_get_subject_name(csr->req);
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int n;
    if (idx < 0) return kf_fail(KF_E_NOT_FOUND, "the CSR's subject has no CN");
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
    if (n < 0) return kf_ossl_fail(KF_E_MALFORMED, "the CSR's CN is not valid text");
    if ((size_t)n >= cap || memchr(utf8, '\0', (size_t)n)) {
        OPENSSL_free(utf8);
        return kf_fail(KF_E_OVERSIZE, "the CSR's CN is too long or holds a NUL byte");
    }
    memcpy(out, utf8, (size_t)n);
    out[n] = '\0';
    OPENSSL_free(utf8);
    return KF_OK;
}

enum kf_err kf_csr_public_key(const struct kf_csr *csr, struct kf_key **out)
{
    EVP_PKEY *pkey = X509_REQ_get_pubkey(csr->req);
    if (!pkey) return kf_ossl_fail(KF_E_MALFORMED, "the CSR's public key cannot be read");
    *out = kf_key_wrap(pkey, KF_KEYLOC_NONE, NULL, NULL);
    return *out ? KF_OK : KF_E_NOMEM;
}

static enum kf_err rule_fail(enum kf_csr_rule rule, enum kf_csr_rule *failed, enum kf_err rc)
{
    if (failed) *failed = rule;
    return kf_wrap(rc, "CSR breaks rule %s", kf_csr_rule_name(rule));
}

enum kf_err kf_csr_check(const struct kf_csr *csr, const struct kf_csr_policy *policy,
                         enum kf_csr_rule *failed)
{
    const X509_NAME *name = X509_REQ_get_subject_name(csr->req);
    char cn[KF_ID_MAX + 2];
    struct kf_key *key = NULL;
    EVP_PKEY *pkey;
    int n_cn = 0;
    enum kf_err rc;

    if (failed) *failed = KF_CSR_RULE_NONE;
    pkey = X509_REQ_get0_pubkey(csr->req);
    if (!pkey || X509_REQ_verify(csr->req, pkey) != 1) {
        kf_ossl_fail(KF_E_BAD_SIGNATURE, "its self-signature does not verify with its own key");
        return rule_fail(KF_CSR_RULE_SIGNATURE, failed, KF_E_BAD_SIGNATURE);
    }
    rc = kf_csr_public_key(csr, &key);
    if (rc) return rule_fail(KF_CSR_RULE_SIGNATURE, failed, rc);
    if (EVP_PKEY_is_a(key->pkey, "RSA") && kf_key_bits(key) < policy->min_rsa_bits) {
        kf_key_check_allowed(key, policy->allowed_key_types, policy->min_rsa_bits, "its key");
        kf_key_free(key);
        return rule_fail(KF_CSR_RULE_KEY_SIZE, failed, KF_E_POLICY);
    }
    rc = kf_key_check_allowed(key, policy->allowed_key_types, policy->min_rsa_bits, "its key");
    kf_key_free(key);
    if (rc) return rule_fail(KF_CSR_RULE_KEY_TYPE, failed, rc);

    for (int i = 0; i < X509_NAME_entry_count(name); i++) {
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(name, i)));
        if (nid == NID_commonName) {
            n_cn++;
        } else if (!(policy->allow_org_units &&
                     (nid == NID_organizationName || nid == NID_organizationalUnitName))) {
            kf_fail(KF_E_POLICY, "its subject holds %s; only CN is allowed",
                    nid != NID_undef ? OBJ_nid2sn(nid) : "an unknown attribute");
            return rule_fail(KF_CSR_RULE_SUBJECT_EXTRA, failed, KF_E_POLICY);
        }
    }
    if (n_cn != 1) {
        kf_fail(KF_E_POLICY, "its subject must hold exactly one CN (it holds %d)", n_cn);
        return rule_fail(KF_CSR_RULE_SUBJECT_CN, failed, KF_E_POLICY);
    }
    rc = kf_csr_subject_cn(csr, cn, sizeof(cn));
    if (!rc) rc = kf_id_check("its CN", cn);
    if (rc) return rule_fail(KF_CSR_RULE_SUBJECT_ID, failed, KF_E_POLICY);
    if (policy->expected_cn && strcmp(cn, policy->expected_cn) != 0) {
        kf_fail(KF_E_POLICY, "its CN \"%s\" is not the expected \"%s\"", cn, policy->expected_cn);
        return rule_fail(KF_CSR_RULE_SUBJECT_MATCH, failed, KF_E_POLICY);
    }
    return KF_OK;
}

enum kf_err kf_csr_create(const struct kf_key *key, const char *cn, struct kf_buf *out)
{
    X509_REQ *req = X509_REQ_new();
    EVP_MD_CTX *mctx = NULL;
    unsigned char *der = NULL;
    enum kf_err rc = KF_OK;
    int n;

    if (!req) return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !kf_name_add_cn(X509_REQ_get_subject_name(req), cn) ||
        !X509_REQ_set_pubkey(req, key->pkey)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot fill in the CSR");
        goto out;
    }
    mctx = kf_key_sign_ctx(key);
    if (!mctx) {
        rc = kf_errlast();
        goto out;
    }
    if (X509_REQ_sign_ctx(req, mctx) <= 0) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot sign the CSR with the %s key", kf_key_location(key));
        goto out;
    }
    n = i2d_X509_REQ(req, &der);
    if (n <= 0) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot encode the CSR");
        goto out;
    }
    rc = kf_pem_encode("CERTIFICATE REQUEST", der, (size_t)n, out);
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(mctx);
    X509_REQ_free(req);
    return rc;
}

enum kf_err kf_csr_der(const struct kf_csr *csr, struct kf_buf *out)
{
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(csr->req, &der);
    enum kf_err rc;
    if (n <= 0) return kf_ossl_fail(KF_E_CRYPTO, "cannot encode the CSR");
    rc = kf_buf_append(out, der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}

enum kf_err kf_csr_spki(const struct kf_csr *csr, struct kf_buf *out)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(csr->req), &der);
    enum kf_err rc;
    if (n <= 0) return kf_ossl_fail(KF_E_MALFORMED, "the CSR's key cannot be encoded");
    rc = kf_buf_append(out, der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}
