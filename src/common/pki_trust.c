/* Chain verification against a trust set, saying why a chain fails. */
#include "common/pki_trust.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "common/ossl.h"
#include "common/timefmt.h"

struct kf_trust {
    X509_STORE *store;
    size_t n_crls;
    /* kf_trust_set_issuer_crl: a CRL whose signature was checked once, and its issuer. */
    X509_CRL *issuer_crl;
    X509 *crl_issuer;
};

const char *kf_verify_reason_name(enum kf_verify_reason reason)
{
    switch (reason) {
    case KF_VERIFY_OK: return "ok";
    case KF_VERIFY_EXPIRED: return "expired";
    case KF_VERIFY_NOT_YET_VALID: return "not_yet_valid";
    case KF_VERIFY_UNKNOWN_ISSUER: return "unknown_issuer";
    case KF_VERIFY_REVOKED: return "revoked";
    case KF_VERIFY_WRONG_PURPOSE: return "wrong_purpose";
    case KF_VERIFY_BAD_SIGNATURE: return "bad_signature";
    case KF_VERIFY_NOT_CA: return "not_ca";
    case KF_VERIFY_CRL_INVALID: return "crl_invalid";
    case KF_VERIFY_OTHER: break;
    }
    return "other";
}

enum kf_err kf_trust_new(struct kf_trust **out)
{
    struct kf_trust *t = calloc(1, sizeof(*t));
    if (!t) return kf_fail(KF_E_NOMEM, "out of memory");
    t->store = X509_STORE_new();
    if (!t->store) {
        free(t);
        return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    }
    *out = t;
    return KF_OK;
}

void kf_trust_free(struct kf_trust *trust)
{
    if (!trust) return;
    X509_STORE_free(trust->store);
    X509_CRL_free(trust->issuer_crl);
    X509_free(trust->crl_issuer);
    free(trust);
}

enum kf_err kf_trust_add_cert(struct kf_trust *trust, const struct kf_cert *anchor)
{
    if (!X509_STORE_add_cert(trust->store, anchor->x509)) {
        unsigned long e = ERR_peek_last_error();
        /* The same anchor twice is harmless. */
        if (ERR_GET_REASON(e) == X509_R_CERT_ALREADY_IN_HASH_TABLE) {
            ERR_clear_error();
            return KF_OK;
        }
        return kf_ossl_fail(KF_E_CRYPTO, "cannot add a trust anchor");
    }
    return KF_OK;
}

enum kf_err kf_trust_add_crl(struct kf_trust *trust, const struct kf_crl *crl)
{
    if (!X509_STORE_add_crl(trust->store, crl->crl))
        return kf_ossl_fail(KF_E_CRYPTO, "cannot add a CRL to the trust set");
    trust->n_crls++;
    return KF_OK;
}

enum kf_err kf_trust_set_issuer_crl(struct kf_trust *trust, const struct kf_crl *crl,
                                    const struct kf_cert *issuer)
{
    const STACK_OF(X509_EXTENSION) *exts = X509_CRL_get0_extensions(crl->crl);
    if (!kf_crl_signed_by(crl, issuer))
        return kf_fail(KF_E_BAD_SIGNATURE, "the CRL is not signed by its issuing CA");
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++)
        if (X509_EXTENSION_get_critical(sk_X509_EXTENSION_value(exts, i)))
            return kf_fail(KF_E_INVALID, "the CRL has a critical extension");
    if (!X509_CRL_up_ref(crl->crl) || !X509_up_ref(issuer->x509))
        return kf_ossl_fail(KF_E_CRYPTO, "cannot keep the CRL");
    X509_CRL_free(trust->issuer_crl);
    X509_free(trust->crl_issuer);
    trust->issuer_crl = crl->crl;
    trust->crl_issuer = issuer->x509;
    return KF_OK;
}

/* The issuer CRL's verdict on `leaf` at `at`: X509_V_OK, or the error OpenSSL would give. */
static int issuer_crl_check(const struct kf_trust *trust, X509 *leaf, time_t at)
{
    X509_CRL *crl = trust->issuer_crl;
    const ASN1_TIME *next;
    X509_REVOKED *rev = NULL;
    int c;

    if (!crl || X509_NAME_cmp(X509_get_issuer_name(leaf), X509_CRL_get_issuer(crl)) != 0)
        return X509_V_OK;
    next = X509_CRL_get0_nextUpdate(crl);
    c = X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &at);
    if (c == 0) return X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD;
    if (c > 0) return X509_V_ERR_CRL_NOT_YET_VALID;
    if (next) {
        c = X509_cmp_time(next, &at);
        if (c == 0) return X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD;
        if (c < 0) return X509_V_ERR_CRL_HAS_EXPIRED;
    }
    /* 2 is an entry with reason removeFromCRL, which un-revokes. */
    return X509_CRL_get0_by_cert(crl, &rev, leaf) == 1 ? X509_V_ERR_CERT_REVOKED : X509_V_OK;
}

/* CRLs apply where they exist: an issuer without one is not an error. */
static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_UNABLE_TO_GET_CRL) return 1;
    return ok;
}

static enum kf_verify_reason classify(int err)
{
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED: return KF_VERIFY_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID: return KF_VERIFY_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return KF_VERIFY_UNKNOWN_ISSUER;
    case X509_V_ERR_CERT_REVOKED: return KF_VERIFY_REVOKED;
    case X509_V_ERR_INVALID_PURPOSE: return KF_VERIFY_WRONG_PURPOSE;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return KF_VERIFY_BAD_SIGNATURE;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return KF_VERIFY_NOT_CA;
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE: return KF_VERIFY_CRL_INVALID;
    default: return KF_VERIFY_OTHER;
    }
}

static enum kf_err reason_err(enum kf_verify_reason r)
{
    switch (r) {
    case KF_VERIFY_OK: return KF_OK;
    case KF_VERIFY_EXPIRED: return KF_E_EXPIRED;
    case KF_VERIFY_NOT_YET_VALID: return KF_E_NOT_YET_VALID;
    case KF_VERIFY_UNKNOWN_ISSUER: return KF_E_UNKNOWN_ISSUER;
    case KF_VERIFY_REVOKED: return KF_E_REVOKED;
    case KF_VERIFY_WRONG_PURPOSE: return KF_E_WRONG_PURPOSE;
    case KF_VERIFY_BAD_SIGNATURE: return KF_E_BAD_SIGNATURE;
    default: return KF_E_DENIED;
    }
}

/* SHA-256 of a certificate's SubjectPublicKeyInfo as hex (the same as kf_key_fingerprint). */
static void anchor_fingerprint(X509 *x, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char *der = NULL, md[32];
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    hex[0] = '\0';
    if (n > 0 && EVP_Digest(der, (size_t)n, md, NULL, EVP_sha256(), NULL)) {
        for (int i = 0; i < 32; i++) {
            hex[2 * i] = digits[md[i] >> 4];
            hex[2 * i + 1] = digits[md[i] & 15];
        }
        hex[64] = '\0';
    }
    OPENSSL_free(der);
}

enum kf_err kf_trust_verify(const struct kf_trust *trust, const struct kf_cert *leaf,
                            struct kf_cert *const *untrusted, size_t n, time_t at,
                            enum kf_purpose purpose, struct kf_verify_result *res)
{
    struct kf_verify_result local;
    STACK_OF(X509) *chain = NULL;
    X509_STORE_CTX *ctx = NULL;
    X509_VERIFY_PARAM *param;
    unsigned long flags = X509_V_FLAG_PARTIAL_CHAIN;
    enum kf_err rc = KF_OK;
    int err, depth;
    X509 *bad;

    if (!res) res = &local;
    memset(res, 0, sizeof(*res));
    chain = sk_X509_new_null();
    ctx = X509_STORE_CTX_new();
    if (!chain || !ctx) {
        rc = kf_ossl_fail(KF_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!sk_X509_push(chain, untrusted[i]->x509)) {
            rc = kf_ossl_fail(KF_E_NOMEM, "out of memory");
            goto out;
        }
    }
    if (!X509_STORE_CTX_init(ctx, trust->store, leaf->x509, chain)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot start chain verification");
        goto out;
    }
    param = X509_STORE_CTX_get0_param(ctx);
    if (trust->n_crls) flags |= X509_V_FLAG_CRL_CHECK;
    X509_VERIFY_PARAM_set_flags(param, flags);
    X509_VERIFY_PARAM_set_time(param, at);
    if (purpose == KF_PURPOSE_CLIENT)
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    else if (purpose == KF_PURPOSE_SERVER)
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    X509_STORE_CTX_set_verify_cb(ctx, verify_cb);

    /* The issuer's CRL first: OpenSSL, too, checks revocation before signatures and times. */
    err = issuer_crl_check(trust, leaf->x509, at);
    if (err != X509_V_OK) {
        depth = 0;
        bad = leaf->x509;
    } else if (X509_verify_cert(ctx) == 1) {
        STACK_OF(X509) *built = X509_STORE_CTX_get0_chain(ctx);
        X509 *top = built ? sk_X509_value(built, sk_X509_num(built) - 1) : NULL;
        res->reason = KF_VERIFY_OK;
        if (top) anchor_fingerprint(top, res->anchor);
        goto out;
    } else {
        err = X509_STORE_CTX_get_error(ctx);
        depth = X509_STORE_CTX_get_error_depth(ctx);
        bad = X509_STORE_CTX_get_current_cert(ctx);
    }
    res->reason = classify(err);
    res->depth = depth;
    if (!bad) bad = leaf->x509;
    {
        struct kf_cert view = {bad};
        char when[KF_TIME_TEXT_MAX];
        kf_cert_subject(&view, res->subject, sizeof(res->subject));
        rc = reason_err(res->reason);
        if (res->reason == KF_VERIFY_EXPIRED) {
            kf_time_rfc3339(kf_cert_not_after(&view), when, sizeof(when));
            kf_fail(rc, "certificate \"%s\" expired on %s", res->subject, when);
        } else if (res->reason == KF_VERIFY_NOT_YET_VALID) {
            kf_time_rfc3339(kf_cert_not_before(&view), when, sizeof(when));
            kf_fail(rc, "certificate \"%s\" is not valid before %s", res->subject, when);
        } else {
            kf_fail(rc, "certificate \"%s\": %s (%s)", res->subject,
                    kf_verify_reason_name(res->reason), X509_verify_cert_error_string(err));
        }
    }
    ERR_clear_error();
out:
    X509_STORE_CTX_free(ctx);
    sk_X509_free(chain);
    return rc;
}
