/* OpenSSL glue shared by the pki modules: error draining, the TPM and PKCS#11 back ends. */
#define OPENSSL_SUPPRESS_DEPRECATED /* the libp11 engine is the PKCS#11 path on OpenSSL 3.0 */

#include "common/ossl.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/provider.h>

void kf_ossl_clear(void)
{
    ERR_clear_error();
}

enum kf_err kf_ossl_fail(enum kf_err rc, const char *fmt, ...)
{
    char msg[1024];
    size_t n;
    unsigned long e;
    const char *data;
    int flags, count = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n = strlen(msg);
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        const char *reason = ERR_reason_error_string(e);
        char code[32];
        if (!reason) {
            snprintf(code, sizeof(code), "error %lx", e);
            reason = code;
        }
        if (n < sizeof(msg) - 1) {
            int w = snprintf(msg + n, sizeof(msg) - n, "%s%s", count ? "; " : ": ", reason);
            if (w > 0) n += (size_t)w < sizeof(msg) - n ? (size_t)w : sizeof(msg) - n - 1;
        }
        if ((flags & ERR_TXT_STRING) && data && *data && n < sizeof(msg) - 1) {
            int w = snprintf(msg + n, sizeof(msg) - n, " (%s)", data);
            if (w > 0) n += (size_t)w < sizeof(msg) - n ? (size_t)w : sizeof(msg) - n - 1;
        }
        count++;
    }
    return kf_fail(rc, "%s", msg);
}

/* ---- TPM 2.0 through the tpm2 provider ---- */

static pthread_mutex_t tpm2_lock = PTHREAD_MUTEX_INITIALIZER;
static OSSL_LIB_CTX *tpm2_ctx;
static OSSL_PROVIDER *tpm2_prov, *tpm2_default;

static void tpm2_cleanup(void)
{
    if (tpm2_prov) OSSL_PROVIDER_unload(tpm2_prov);
    if (tpm2_default) OSSL_PROVIDER_unload(tpm2_default);
    OSSL_LIB_CTX_free(tpm2_ctx);
    tpm2_prov = tpm2_default = NULL;
    tpm2_ctx = NULL;
}

OSSL_LIB_CTX *kf_ossl_tpm2_libctx(void)
{
    OSSL_LIB_CTX *ctx;

    pthread_mutex_lock(&tpm2_lock);
    if (!tpm2_ctx) {
        OSSL_LIB_CTX *c = OSSL_LIB_CTX_new();
        if (!c) {
            kf_ossl_fail(KF_E_NOMEM, "cannot create an OpenSSL library context");
            goto out;
        }
        tpm2_default = OSSL_PROVIDER_load(c, "default");
        tpm2_prov = OSSL_PROVIDER_load(c, "tpm2");
        if (!tpm2_default || !tpm2_prov) {
            kf_ossl_fail(KF_E_UNSUPPORTED,
                         "cannot load the OpenSSL tpm2 provider (package tpm2-openssl; the TPM "
                         "is reached through TPM2OPENSSL_TCTI)");
            if (tpm2_prov) OSSL_PROVIDER_unload(tpm2_prov);
            if (tpm2_default) OSSL_PROVIDER_unload(tpm2_default);
            tpm2_prov = tpm2_default = NULL;
            OSSL_LIB_CTX_free(c);
            goto out;
        }
        tpm2_ctx = c;
        /*
         * Freed by OpenSSL's own cleanup, before it tears itself down: a plain atexit() handler
         * registered here can run after OpenSSL's (libssl registers its handler when it is
         * first used, which may be later), and then frees the context into a dead library.
         */
        if (!OPENSSL_atexit(tpm2_cleanup)) atexit(tpm2_cleanup);
    }
out:
    ctx = tpm2_ctx;
    pthread_mutex_unlock(&tpm2_lock);
    return ctx;
}

/* ---- PKCS#11 through the libp11 engine ---- */

static pthread_mutex_t p11_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * The engine stays initialised until the process ends, on purpose: finishing it from an atexit
 * handler after a failed key lookup crashes SoftHSM 2.6 inside C_CloseAllSessions (seen with
 * libp11 0.4.12). The process exits anyway, and the token sessions end with it.
 */
static ENGINE *p11_engine;
static char *p11_module;

struct engine_st *kf_ossl_pkcs11_engine(const char *module_path)
{
    ENGINE *e = NULL;

    pthread_mutex_lock(&p11_lock);
    if (p11_engine) {
        if (strcmp(p11_module, module_path) != 0) {
            kf_fail(KF_E_UNSUPPORTED,
                    "PKCS#11 module %s is already in use; one module per process (asked for %s)",
                    p11_module, module_path);
            goto out;
        }
        e = p11_engine;
        goto out;
    }
    ENGINE_load_dynamic();
    e = ENGINE_by_id("pkcs11");
    if (!e) {
        kf_ossl_fail(KF_E_UNSUPPORTED,
                     "cannot load the OpenSSL pkcs11 engine (package libengine-pkcs11-openssl)");
        goto out;
    }
    if (!ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module_path, 0) || !ENGINE_init(e)) {
        kf_ossl_fail(KF_E_UNSUPPORTED, "cannot initialise PKCS#11 module %s", module_path);
        ENGINE_free(e);
        e = NULL;
        goto out;
    }
    p11_module = strdup(module_path);
    if (!p11_module) {
        ENGINE_finish(e);
        ENGINE_free(e);
        e = NULL;
        kf_fail(KF_E_NOMEM, "out of memory");
        goto out;
    }
    p11_engine = e;
out:
    pthread_mutex_unlock(&p11_lock);
    return e;
}

/* ---- wrappers ---- */

struct kf_key *kf_key_wrap(EVP_PKEY *pkey, enum kf_key_loc loc, OSSL_LIB_CTX *libctx,
                           const char *propq)
{
    struct kf_key *k = calloc(1, sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pkey);
        kf_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    k->pkey = pkey;
    k->loc = loc;
    k->libctx = libctx;
    k->propq = propq;
    return k;
}

struct kf_cert *kf_cert_wrap(X509 *x509)
{
    struct kf_cert *c = calloc(1, sizeof(*c));
    if (!c) {
        X509_free(x509);
        kf_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    c->x509 = x509;
    return c;
}

struct kf_crl *kf_crl_wrap(X509_CRL *crl)
{
    struct kf_crl *c = calloc(1, sizeof(*c));
    if (!c) {
        X509_CRL_free(crl);
        kf_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    c->crl = crl;
    return c;
}

ASN1_INTEGER *kf_serial_from_hex(const char *hex)
{
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai;
    size_t len = strlen(hex);

    if (len == 0 || len > 40 || strspn(hex, "0123456789abcdefABCDEF") != len) {
        kf_fail(KF_E_INVALID, "serial \"%.48s\" is not a hexadecimal number of at most 20 octets",
                hex);
        return NULL;
    }
    if (!BN_hex2bn(&bn, hex)) {
        kf_ossl_fail(KF_E_INVALID, "serial %s", hex);
        return NULL;
    }
    ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (!ai) kf_ossl_fail(KF_E_NOMEM, "serial %s", hex);
    return ai;
}

void kf_serial_to_hex(const ASN1_INTEGER *serial, char *out)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    size_t j = 0;

    out[0] = '\0';
    if (hex) {
        const char *p = hex;
        if (*p == '-') out[j++] = '-', p++;
        while (*p == '0' && p[1])
            p++;
        for (; *p && j < KF_SERIAL_HEX_MAX - 1; p++)
            out[j++] = (char)((*p >= 'A' && *p <= 'F') ? *p - 'A' + 'a' : *p);
        out[j] = '\0';
    }
    OPENSSL_free(hex);
    BN_free(bn);
}

int kf_name_add_cn(X509_NAME *name, const char *cn)
{
    X509_NAME_ENTRY *e = X509_NAME_ENTRY_create_by_NID(NULL, NID_commonName, V_ASN1_UTF8STRING,
                                                       (const unsigned char *)cn, (int)strlen(cn));
    int ok = e && X509_NAME_add_entry(name, e, -1, 0);
    X509_NAME_ENTRY_free(e);
    return ok;
}

time_t kf_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm)) return 0;
    return timegm(&tm);
}
