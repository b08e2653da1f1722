/* PKCS#10 certificate signing requests. */
#include "common/pki_csr.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rsa.h>
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
    case KF_CSR_RULE_DIGEST: return "digest";
    }
    return "unknown";
}

void kf_csr_policy_default(struct kf_csr_policy *p)
{
    p->allowed_key_types = KF_KEY_ALLOWED_DEFAULT;
    p->min_rsa_bits = KF_KEY_MIN_RSA_BITS;
    p->expected_cn = NULL;
    p->allow_org_units = 0;
    p->renewing = NULL;
}

/*
 * One DER TLV at *p, within end: its tag and class must be those given; on success *p moves
 * past it and *content / *content_len (may be NULL) give its contents. Indefinite lengths (BER)
 * are refused.
 */
static int der_tlv(const unsigned char **p, const unsigned char *end, int want_tag, int want_cls,
                   const unsigned char **content, size_t *content_len)
{
    const unsigned char *q = *p;
    long l;
    int tag, cls, r;
    if (*p >= end) return 0;
    r = ASN1_get_object(&q, &l, &tag, &cls, end - *p);
    if ((r & 0x80) || r == 0x21 || tag != want_tag || cls != want_cls || l > end - q) return 0;
    if (content) *content = q;
    if (content_len) *content_len = (size_t)l;
    *p = q + l;
    return 1;
}

/*
 * The challengePassword attribute (PKCS#9: one DirectoryString value of 1..255 characters) into
 * csr->challenge; NULL, or why it is refused.
 */
static const char *challenge_of(X509_ATTRIBUTE *attr, struct kf_csr *csr)
{
    ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(attr, 0);
    int n;
    if (csr->challenge) return "not a valid PKCS#10 CSR: two challengePassword attributes";
    if (X509_ATTRIBUTE_count(attr) != 1 || !t ||
        (t->type != V_ASN1_PRINTABLESTRING && t->type != V_ASN1_UTF8STRING &&
         t->type != V_ASN1_IA5STRING && t->type != V_ASN1_T61STRING &&
         t->type != V_ASN1_BMPSTRING && t->type != V_ASN1_UNIVERSALSTRING))
        return "not a valid PKCS#10 CSR: a challengePassword that is not one string";
    n = ASN1_STRING_to_UTF8((unsigned char **)&csr->challenge, t->value.asn1_string);
    if (n < 1 || n > 255 || strlen(csr->challenge) != (size_t)n) {
        OPENSSL_free(csr->challenge);
        csr->challenge = NULL;
        return "not a valid PKCS#10 CSR: a challengePassword of 0 or more than 255 characters";
    }
    return NULL;
}

/*
 * CertificationRequest ::= SEQUENCE {
 *   certificationRequestInfo SEQUENCE {
 *     version INTEGER (0), subject Name, subjectPKInfo SubjectPublicKeyInfo,
 *     attributes [0] IMPLICIT SET OF Attribute (sometimes left out) },
 *   signatureAlgorithm AlgorithmIdentifier, signature BIT STRING }   (RFC 2986)
 */
static enum kf_err parse_der(const unsigned char *der, size_t len, struct kf_csr **out)
{
    const unsigned char *p, *end, *req_end, *info, *info_end, *q, *v;
    size_t n, vlen;
    struct kf_csr *csr;
    const char *why = "not a valid PKCS#10 CSR";

    if (len == 0) return kf_fail(KF_E_MALFORMED, "empty CSR");
    csr = calloc(1, sizeof(*csr));
    if (!csr || !(csr->der = malloc(len))) {
        free(csr);
        return kf_fail(KF_E_NOMEM, "out of memory");
    }
    memcpy(csr->der, der, len);
    csr->der_len = len;
    p = csr->der;
    end = p + len;
    if (!der_tlv(&p, end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &q, &n)) goto bad;
    if (p != end) {
        why = "not a valid PKCS#10 CSR: trailing data";
        goto bad;
    }
    req_end = q + n;
    /* The request info, kept whole: it is what the signature covers. */
    info = q;
    if (!der_tlv(&q, req_end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &p, &n)) goto bad;
    csr->tbs = info;
    csr->tbs_len = (size_t)(q - info);
    info_end = p + n;
    if (!der_tlv(&p, info_end, V_ASN1_INTEGER, V_ASN1_UNIVERSAL, &v, &vlen) || vlen != 1 ||
        v[0] != 0) {
        why = "not a valid PKCS#10 CSR: its version is not 1";
        goto bad;
    }
    csr->subject = d2i_X509_NAME(NULL, &p, info_end - p);
    if (!csr->subject) goto bad;
    csr->spki = p;
    if (!der_tlv(&p, info_end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, NULL, NULL)) goto bad;
    csr->spki_len = (size_t)(p - csr->spki);
    if (p < info_end) {
        /* The attributes: each one well formed, none of them needed. */
        const unsigned char *a, *a_end;
        if (!der_tlv(&p, info_end, 0, V_ASN1_CONTEXT_SPECIFIC, &a, &n)) goto bad;
        a_end = a + n;
        while (a < a_end) {
            X509_ATTRIBUTE *attr = d2i_X509_ATTRIBUTE(NULL, &a, a_end - a);
            if (!attr) {
                why = "not a valid PKCS#10 CSR: a malformed attribute";
                goto bad;
            }
            if (OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr)) == NID_pkcs9_challengePassword) {
                why = challenge_of(attr, csr);
                X509_ATTRIBUTE_free(attr);
                if (why) goto bad;
                why = "not a valid PKCS#10 CSR";
                continue;
            }
            X509_ATTRIBUTE_free(attr);
        }
    }
    if (p != info_end) goto bad;
    p = q;
    csr->sig_alg = d2i_X509_ALGOR(NULL, &p, req_end - p);
    if (!csr->sig_alg) goto bad;
    csr->sig = d2i_ASN1_BIT_STRING(NULL, &p, req_end - p);
    if (!csr->sig || p != req_end) goto bad;
    ERR_clear_error();
    *out = csr;
    return KF_OK;
bad:
    kf_csr_free(csr);
    return kf_ossl_fail(KF_E_MALFORMED, "%s", why);
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
    X509_NAME_free(csr->subject);
    if (csr->challenge) OPENSSL_clear_free(csr->challenge, strlen(csr->challenge));
    X509_ALGOR_free(csr->sig_alg);
    ASN1_BIT_STRING_free(csr->sig);
    free(csr->der);
    free(csr);
}

const char *kf_csr_challenge(const struct kf_csr *csr)
{
    return csr->challenge;
}

enum kf_err kf_csr_subject_cn(const struct kf_csr *csr, char *out, size_t cap)
{
    const X509_NAME *name = csr->subject;
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
    return kf_key_from_spki(csr->spki, csr->spki_len, "the CSR's public key", out);
}

/*
 * The digest an RSA-PSS signature's parameters name: SHA-1 when they name none (RFC 4055), -1
 * when they cannot be read.
 */
static int pss_digest(const X509_ALGOR *alg)
{
    RSA_PSS_PARAMS *pss;
    int nid = NID_sha1;
    if (!alg->parameter) return NID_sha1;
    if (alg->parameter->type != V_ASN1_SEQUENCE) return -1;
    pss = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(RSA_PSS_PARAMS), alg->parameter);
    if (!pss) return -1;
    if (pss->hashAlgorithm) nid = OBJ_obj2nid(pss->hashAlgorithm->algorithm);
    RSA_PSS_PARAMS_free(pss);
    return nid;
}

/*
 * The self-signature, with the CSR's own key (`key`). The algorithm must be one OpenSSL knows
 * for that key's type; RSA-PSS, whose parameters need OpenSSL's own reading, goes through a
 * whole X509_REQ. `*md` gets the digest it was made with (NID_undef for Ed25519).
 */
static int self_signature_ok(const struct kf_csr *csr, const struct kf_key *key, int *md)
{
    const ASN1_OBJECT *obj;
    const EVP_MD *evp_md = NULL;
    EVP_MD_CTX *mctx;
    int nid, md_nid = NID_undef, pk_nid = NID_undef, ok = 0, ptype;
    const void *param;

    *md = NID_undef;
    X509_ALGOR_get0(&obj, &ptype, &param, csr->sig_alg);
    nid = OBJ_obj2nid(obj);
    if (nid == NID_rsassaPss) {
        const unsigned char *p = csr->der;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)csr->der_len);
        ok = req && X509_REQ_verify(req, key->pkey) == 1;
        X509_REQ_free(req);
        *md = pss_digest(csr->sig_alg);
        return ok;
    }
    if (!OBJ_find_sigid_algs(nid, &md_nid, &pk_nid) || csr->sig->flags & 0x07) return 0;
    /*
     * Ed25519 carries no parameters; RSA PKCS#1 v1.5 a NULL at most; ECDSA should carry none
     * (RFC 5758), but the TPM 2.0 provider for OpenSSL writes a NULL, and refusing those would
     * refuse every device whose key is in a TPM: a NULL is accepted there too.
     */
    if (ptype != V_ASN1_UNDEF &&
        !((pk_nid == NID_rsaEncryption || pk_nid == NID_X9_62_id_ecPublicKey) &&
          ptype == V_ASN1_NULL))
        return 0;
    if (!EVP_PKEY_is_a(key->pkey, OBJ_nid2sn(pk_nid))) return 0;
    if (md_nid != NID_undef && !(evp_md = EVP_get_digestbynid(md_nid))) return 0;
    mctx = EVP_MD_CTX_new();
    ok = mctx && EVP_DigestVerifyInit(mctx, NULL, evp_md, NULL, key->pkey) == 1 &&
         EVP_DigestVerify(mctx, csr->sig->data, (size_t)csr->sig->length, csr->tbs, csr->tbs_len) ==
             1;
    EVP_MD_CTX_free(mctx);
    *md = md_nid;
    return ok;
}

/* SHA-256 and stronger; none for Ed25519, which hashes inside the signature. */
static int digest_strong(int md_nid)
{
    switch (md_nid) {
    case NID_undef:
    case NID_sha256:
    case NID_sha384:
    case NID_sha512:
    case NID_sha3_256:
    case NID_sha3_384:
    case NID_sha3_512: return 1;
    default: return 0;
    }
}

static enum kf_err rule_fail(enum kf_csr_rule rule, enum kf_csr_rule *failed, enum kf_err rc)
{
    if (failed) *failed = rule;
    return kf_wrap(rc, "CSR breaks rule %s", kf_csr_rule_name(rule));
}

enum kf_err kf_csr_check(const struct kf_csr *csr, const struct kf_csr_policy *policy,
                         enum kf_csr_rule *failed)
{
    const X509_NAME *name = csr->subject;
    char cn[KF_ID_MAX + 2];
    struct kf_key *key = NULL;
    int n_cn = 0, md = NID_undef, same_subject;
    enum kf_err rc;

    if (failed) *failed = KF_CSR_RULE_NONE;
    rc = kf_csr_public_key(csr, &key);
    if (rc) return rule_fail(KF_CSR_RULE_SIGNATURE, failed, KF_E_BAD_SIGNATURE);
    if (!self_signature_ok(csr, key, &md)) {
        kf_key_free(key);
        kf_ossl_fail(KF_E_BAD_SIGNATURE, "its self-signature does not verify with its own key");
        return rule_fail(KF_CSR_RULE_SIGNATURE, failed, KF_E_BAD_SIGNATURE);
    }
    if (!digest_strong(md)) {
        const char *md_name = md > 0 ? OBJ_nid2sn(md) : NULL;
        kf_key_free(key);
        kf_fail(KF_E_POLICY, "it is signed with %s; sign it with SHA-256 or stronger",
                md_name ? md_name : "an unknown digest");
        return rule_fail(KF_CSR_RULE_DIGEST, failed, KF_E_POLICY);
    }
    if (EVP_PKEY_is_a(key->pkey, "RSA") && kf_key_bits(key) < policy->min_rsa_bits) {
        kf_key_check_allowed(key, policy->allowed_key_types, policy->min_rsa_bits, "its key");
        kf_key_free(key);
        return rule_fail(KF_CSR_RULE_KEY_SIZE, failed, KF_E_POLICY);
    }
    kf_key_free(key);
    /* From the CSR's own bytes, as the signer reads them: explicit curve parameters are refused. */
    rc = kf_spki_check(csr->spki, csr->spki_len, policy->allowed_key_types, policy->min_rsa_bits,
                       "its key", NULL);
    if (rc) return rule_fail(KF_CSR_RULE_KEY_TYPE, failed, rc);

    same_subject = policy->renewing && policy->renewing->x509 &&
                   X509_NAME_cmp(name, X509_get_subject_name(policy->renewing->x509)) == 0;
    for (int i = 0; i < X509_NAME_entry_count(name); i++) {
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(name, i)));
        if (nid == NID_commonName) {
            n_cn++;
        } else if (!same_subject &&
                   !(policy->allow_org_units &&
                     (nid == NID_organizationName || nid == NID_organizationalUnitName))) {
            const char *what = nid != NID_undef ? OBJ_nid2sn(nid) : "an unknown attribute";
            if (policy->renewing)
                kf_fail(KF_E_POLICY,
                        "its subject holds %s but is not the subject of the certificate being "
                        "renewed; re-enrollment repeats that subject exactly (RFC 7030 4.2.2) or "
                        "sends CN alone",
                        what);
            else
                kf_fail(KF_E_POLICY, "its subject holds %s; only CN%s is allowed", what,
                        policy->allow_org_units ? " (and O, OU, which keyfleet replaces)" : "");
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
    return kf_buf_append(out, csr->der, csr->der_len);
}

enum kf_err kf_csr_spki(const struct kf_csr *csr, struct kf_buf *out)
{
    return kf_buf_append(out, csr->spki, csr->spki_len);
}
