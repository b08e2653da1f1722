/* Keys by type and by URI: files, PKCS#11 tokens (libp11 engine) and TPM 2.0 (tpm2 provider). */
#define OPENSSL_SUPPRESS_DEPRECATED /* ENGINE_load_private_key: the PKCS#11 path on OpenSSL 3.0 */

#include "common/pki_key.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "common/file.h"
#include "common/ossl.h"
#include "common/pem.h"

#define KEY_FILE_MAX (64 * 1024)
#define URI_MAX      2048
#define PIN_MAX      256

static const struct {
    enum kf_key_type type;
    const char *name;
} type_names[] = {
    {KF_KEY_EC_P256, "p256"},      {KF_KEY_EC_P256, "ec-p256"},   {KF_KEY_EC_P256, "prime256v1"},
    {KF_KEY_EC_P256, "secp256r1"}, {KF_KEY_EC_P256, "ecdsa"},     {KF_KEY_EC_P384, "p384"},
    {KF_KEY_EC_P384, "ec-p384"},   {KF_KEY_EC_P384, "secp384r1"}, {KF_KEY_ED25519, "ed25519"},
    {KF_KEY_RSA2048, "rsa2048"},   {KF_KEY_RSA2048, "rsa-2048"},  {KF_KEY_RSA2048, "rsa"},
    {KF_KEY_RSA3072, "rsa3072"},   {KF_KEY_RSA3072, "rsa-3072"},
};

const char *kf_key_type_name(enum kf_key_type type)
{
    switch (type) {
    case KF_KEY_EC_P256: return "p256";
    case KF_KEY_EC_P384: return "p384";
    case KF_KEY_ED25519: return "ed25519";
    case KF_KEY_RSA2048: return "rsa2048";
    case KF_KEY_RSA3072: return "rsa3072";
    case KF_KEY_OTHER: return "other";
    case KF_KEY_NONE: break;
    }
    return "none";
}

enum kf_key_type kf_key_type_parse(const char *name)
{
    char low[32];
    size_t i;
    if (!name || strlen(name) >= sizeof(low)) return KF_KEY_NONE;
    for (i = 0; name[i]; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[i] = '\0';
    for (i = 0; i < KF_ARRAY_LEN(type_names); i++)
        if (strcmp(low, type_names[i].name) == 0) return type_names[i].type;
    return KF_KEY_NONE;
}

enum kf_key_type kf_pkey_type(const EVP_PKEY *pkey)
{
    int bits = EVP_PKEY_get_bits(pkey);
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &glen)) {
            if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
                return KF_KEY_EC_P256;
            if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
                return KF_KEY_EC_P384;
            return KF_KEY_OTHER;
        }
        /* Keys behind an engine may not export their group; their size tells the curve. */
        ERR_clear_error();
        if (bits == 256) return KF_KEY_EC_P256;
        if (bits == 384) return KF_KEY_EC_P384;
        return KF_KEY_OTHER;
    }
    if (EVP_PKEY_is_a(pkey, "ED25519")) return KF_KEY_ED25519;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (bits >= 3072) return KF_KEY_RSA3072;
        if (bits >= 2048) return KF_KEY_RSA2048;
        return KF_KEY_OTHER;
    }
    return KF_KEY_OTHER;
}

enum kf_key_type kf_key_type(const struct kf_key *key)
{
    return kf_pkey_type(key->pkey);
}

int kf_key_bits(const struct kf_key *key)
{
    return EVP_PKEY_get_bits(key->pkey);
}

void kf_key_describe(const struct kf_key *key, char *out, size_t cap)
{
    int bits = EVP_PKEY_get_bits(key->pkey);
    if (EVP_PKEY_is_a(key->pkey, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        enum kf_key_type t = kf_pkey_type(key->pkey);
        if (t == KF_KEY_EC_P256)
            snprintf(out, cap, "EC P-256");
        else if (t == KF_KEY_EC_P384)
            snprintf(out, cap, "EC P-384");
        else if (EVP_PKEY_get_utf8_string_param(key->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                                sizeof(group), &glen))
            snprintf(out, cap, "EC %s", group);
        else
            snprintf(out, cap, "EC %d-bit", bits);
        ERR_clear_error();
    } else if (EVP_PKEY_is_a(key->pkey, "ED25519")) {
        snprintf(out, cap, "Ed25519");
    } else if (EVP_PKEY_is_a(key->pkey, "RSA")) {
        snprintf(out, cap, "RSA %d", bits);
    } else {
        const char *name = EVP_PKEY_get0_type_name(key->pkey);
        snprintf(out, cap, "%s %d-bit", name ? name : "unknown", bits);
    }
}

const char *kf_key_location(const struct kf_key *key)
{
    switch (key->loc) {
    case KF_KEYLOC_MEMORY: return "memory";
    case KF_KEYLOC_FILE: return "file";
    case KF_KEYLOC_PKCS11: return "pkcs11";
    case KF_KEYLOC_TPM2: return "tpm2";
    case KF_KEYLOC_NONE: break;
    }
    return "none";
}

void kf_key_free(struct kf_key *key)
{
    if (!key) return;
    EVP_PKEY_free(key->pkey);
    free(key);
}

enum kf_err kf_key_generate(enum kf_key_type type, struct kf_key **out)
{
    EVP_PKEY *pkey = NULL;
    *out = NULL;
    switch (type) {
    case KF_KEY_EC_P256: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); break;
    case KF_KEY_EC_P384: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"); break;
    case KF_KEY_ED25519: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"); break;
    case KF_KEY_RSA2048: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048); break;
    case KF_KEY_RSA3072: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072); break;
    default:
        return kf_fail(KF_E_INVALID,
                       "cannot generate a key of type %s (choose p256, p384, ed25519, rsa2048 or "
                       "rsa3072)",
                       kf_key_type_name(type));
    }
    if (!pkey) return kf_ossl_fail(KF_E_CRYPTO, "cannot generate a %s key", kf_key_type_name(type));
    *out = kf_key_wrap(pkey, KF_KEYLOC_MEMORY, NULL, NULL);
    return *out ? KF_OK : KF_E_NOMEM;
}

/* ---- files ---- */

struct pass_arg {
    const char *pass;
    int asked;
};

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    struct pass_arg *a = u;
    size_t n;
    a->asked = 1;
    if (!a->pass) return -1;
    n = strlen(a->pass);
    if (n > (size_t)size) return -1;
    memcpy(buf, a->pass, n);
    return (int)n;
}

static const char *printable_label(const char *label)
{
    return label[0] ? label : "something else";
}

static enum kf_err load_tpm2(const char *spec, const char *shown, struct kf_key **out);

static enum kf_err load_file(const char *path, const char *passphrase, struct kf_key **out)
{
    struct kf_buf text;
    char label[KF_PEM_LABEL_MAX] = "";
    struct pass_arg pa = {passphrase, 0};
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    enum kf_err rc;

    kf_buf_init_secret(&text, KEY_FILE_MAX);
    rc = kf_buf_read_file(&text, path);
    if (rc) goto out;
    if (kf_pem_first_label((const char *)text.data, text.len, label) == KF_OK) {
        if (strcmp(label, "TSS2 PRIVATE KEY") == 0) {
            rc = load_tpm2(path, path, out);
            goto out;
        }
        if (!strstr(label, "PRIVATE KEY")) {
            rc = kf_fail(KF_E_WRONG_TYPE, "file %s holds a %s, not a private key", path,
                         printable_label(label));
            goto out;
        }
    }
    kf_err_clear();
    bio = BIO_new_mem_buf(text.data, (int)text.len);
    if (!bio) {
        rc = kf_ossl_fail(KF_E_NOMEM, "out of memory");
        goto out;
    }
    if (label[0])
        pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, pass_cb, &pa, NULL, NULL);
    else
        pkey = d2i_PrivateKey_ex_bio(bio, NULL, NULL, NULL);
    if (!pkey) {
        int encrypted = strcmp(label, "ENCRYPTED PRIVATE KEY") == 0 ||
                        strstr((const char *)text.data, "ENCRYPTED") != NULL;
        if (!label[0])
            rc = kf_ossl_fail(KF_E_MALFORMED, "file %s is neither a PEM nor a DER private key",
                              path);
        else if (encrypted && !passphrase)
            rc = kf_ossl_fail(KF_E_DENIED,
                              "private key %s is encrypted and no passphrase was given", path);
        else if (encrypted)
            rc = kf_ossl_fail(KF_E_DENIED, "cannot decrypt private key %s: wrong passphrase", path);
        else
            rc = kf_ossl_fail(KF_E_MALFORMED, "file %s is not a valid %s", path, label);
        goto out;
    }
    *out = kf_key_wrap(pkey, KF_KEYLOC_FILE, NULL, NULL);
    rc = *out ? KF_OK : KF_E_NOMEM;
out:
    BIO_free(bio);
    kf_buf_free_secret(&text);
    return rc;
}

/* ---- TPM 2.0 ---- */

static enum kf_err load_tpm2(const char *spec, const char *shown, struct kf_key **out)
{
    OSSL_LIB_CTX *libctx = kf_ossl_tpm2_libctx();
    OSSL_STORE_CTX *sc;
    EVP_PKEY *pkey = NULL;

    if (!libctx) return kf_wrap(kf_errlast(), "cannot load TPM key %s", shown);
    sc = OSSL_STORE_open_ex(spec, libctx, "?provider=tpm2", NULL, NULL, NULL, NULL, NULL);
    if (!sc)
        return kf_ossl_fail(KF_E_NOT_FOUND,
                            "cannot open TPM key %s (is TPM2OPENSSL_TCTI set and the TPM "
                            "reachable?)",
                            shown);
    OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY);
    while (!pkey && !OSSL_STORE_eof(sc)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(sc);
        if (!info) {
            if (OSSL_STORE_error(sc)) break;
            continue;
        }
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(sc);
    if (!pkey) return kf_ossl_fail(KF_E_NOT_FOUND, "no private key at TPM %s", shown);
    ERR_clear_error();
    *out = kf_key_wrap(pkey, KF_KEYLOC_TPM2, libctx, KF_TPM2_PROPQ);
    return *out ? KF_OK : KF_E_NOMEM;
}

/* ---- PKCS#11 ---- */

/* Percent-decodes `in[0..n)` into `out` (capacity `cap`); -1 if malformed or too long. */
static int pct_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%') {
            unsigned v;
            if (i + 2 >= n) return -1;
            if (!isxdigit((unsigned char)in[i + 1]) || !isxdigit((unsigned char)in[i + 2]))
                return -1;
            sscanf(in + i + 1, "%2x", &v);
            c = (char)v;
            i += 2;
        }
        if (j + 1 >= cap) return -1;
        out[j++] = c;
    }
    out[j] = '\0';
    return 0;
}

static enum kf_err read_pin_file(const char *path, char *pin, size_t cap)
{
    struct kf_buf b;
    struct stat st;
    enum kf_err rc;
    /* A PIN others can read is no secret: refuse it rather than use it. */
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077))
        return kf_fail(KF_E_DENIED, "PIN file %s can be read by others (mode %04o): chmod 600 it",
                       path, (unsigned)(st.st_mode & 07777));
    kf_buf_init_secret(&b, PIN_MAX);
    rc = kf_buf_read_file(&b, path);
    if (!rc) {
        size_t n = b.len;
        while (n && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r'))
            n--;
        if (n + 1 > cap)
            rc = kf_fail(KF_E_OVERSIZE, "PIN file %s is too long", path);
        else {
            memcpy(pin, b.data, n);
            pin[n] = '\0';
        }
    }
    kf_buf_free_secret(&b);
    return rc;
}

enum kf_err kf_pkcs11_uri_parse(const char *uri, char *path, size_t path_cap, char *module,
                                size_t module_cap, char *pin, size_t pin_cap, int *have_pin)
{
    char val[URI_MAX];
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    enum kf_err rc = KF_OK;

    *have_pin = 0;
    module[0] = pin[0] = '\0';
    if (plen >= path_cap)
        return kf_fail(KF_E_OVERSIZE, "PKCS#11 URI is longer than %d characters", URI_MAX);
    memcpy(path, uri, plen);
    path[plen] = '\0';
    /* The query attributes are ours to read (RFC 7512 section 2.3); the engine sees the path. */
    while (q && *q) {
        const char *attr = q + 1, *end = strchr(attr, '&'), *eq;
        size_t alen = end ? (size_t)(end - attr) : strlen(attr);
        q = end;
        eq = memchr(attr, '=', alen);
        if (!eq) {
            rc = kf_fail(KF_E_INVALID, "PKCS#11 URI %s: query attribute without '='", path);
            goto out;
        }
        if (pct_decode(eq + 1, alen - (size_t)(eq + 1 - attr), val, sizeof(val)) != 0) {
            rc = kf_fail(KF_E_INVALID, "PKCS#11 URI %s: bad percent-encoding", path);
            goto out;
        }
        if ((size_t)(eq - attr) == 11 && memcmp(attr, "module-path", 11) == 0) {
            snprintf(module, module_cap, "%s", val);
        } else if ((size_t)(eq - attr) == 9 && memcmp(attr, "pin-value", 9) == 0) {
            size_t plen_ = strlen(val);
            if (plen_ >= pin_cap) {
                rc = kf_fail(KF_E_OVERSIZE, "PKCS#11 URI %s: PIN too long", path);
                goto out;
            }
            memcpy(pin, val, plen_ + 1);
            *have_pin = 1;
        } else if ((size_t)(eq - attr) == 10 && memcmp(attr, "pin-source", 10) == 0) {
            const char *f = strncmp(val, "file:", 5) == 0 ? val + 5 : val;
            rc = read_pin_file(f, pin, pin_cap);
            if (rc) {
                kf_wrap(rc, "PKCS#11 URI %s: pin-source", path);
                goto out;
            }
            *have_pin = 1;
        }
        /* Other query attributes (module-name, ...) are not used. */
        OPENSSL_cleanse(val, sizeof(val));
    }
    if (!module[0] && getenv("KEYFLEET_PKCS11_MODULE"))
        snprintf(module, module_cap, "%s", getenv("KEYFLEET_PKCS11_MODULE"));
    if (!module[0]) {
        rc = kf_fail(KF_E_CONFIG,
                     "PKCS#11 URI %s names no module: add ?module-path=/path/to/module.so or set "
                     "KEYFLEET_PKCS11_MODULE",
                     path);
        goto out;
    }
    if (!*have_pin && getenv("KEYFLEET_PKCS11_PIN")) {
        snprintf(pin, pin_cap, "%s", getenv("KEYFLEET_PKCS11_PIN"));
        *have_pin = 1;
    }
out:
    OPENSSL_cleanse(val, sizeof(val));
    return rc;
}

static enum kf_err load_pkcs11(const char *uri, struct kf_key **out)
{
    char path[URI_MAX], module[URI_MAX], pin[PIN_MAX];
    int have_pin = 0;
    enum kf_err rc;
    EVP_PKEY *pkey;
    ENGINE *e;

    rc = kf_pkcs11_uri_parse(uri, path, sizeof(path), module, sizeof(module), pin, sizeof(pin),
                             &have_pin);
    if (rc) goto out;
    e = kf_ossl_pkcs11_engine(module);
    if (!e) {
        rc = kf_wrap(kf_errlast(), "cannot load %s", path);
        goto out;
    }
    if (have_pin && !ENGINE_ctrl_cmd_string(e, "PIN", pin, 0)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot give the PIN to the PKCS#11 engine");
        goto out;
    }
    pkey = ENGINE_load_private_key(e, path, NULL, NULL);
    if (!pkey) {
        rc = kf_ossl_fail(KF_E_NOT_FOUND,
                          "cannot load private key %s from PKCS#11 module %s (no such object, "
                          "or a wrong or missing PIN)",
                          path, module);
        goto out;
    }
    ERR_clear_error();
    *out = kf_key_wrap(pkey, KF_KEYLOC_PKCS11, NULL, NULL);
    rc = *out ? KF_OK : KF_E_NOMEM;
out:
    OPENSSL_cleanse(pin, sizeof(pin));
    return rc;
}

void kf_key_uri_redact(const char *uri, char *out, size_t cap)
{
    size_t j = 0;
    const char *q = strncmp(uri, "pkcs11:", 7) == 0 ? strchr(uri, '?') : NULL;

    if (!cap) return;
    for (const char *p = uri; *p && j + 1 < cap;) {
        /* A query attribute "pin-value=..." runs to the next '&' or the end. */
        if (q && p > q && (p[-1] == '?' || p[-1] == '&') && strncmp(p, "pin-value=", 10) == 0) {
            const char *redacted = "pin-value=***";
            for (const char *r = redacted; *r && j + 1 < cap; r++)
                out[j++] = *r;
            p = strchr(p, '&');
            if (!p) break;
            continue;
        }
        out[j++] = *p++;
    }
    out[j] = '\0';
}

enum kf_err kf_key_load(const char *uri, const char *passphrase, struct kf_key **out)
{
    *out = NULL;
    if (!uri || !*uri) return kf_fail(KF_E_INVALID, "no key URI given");
    if (strncmp(uri, "pkcs11:", 7) == 0) return load_pkcs11(uri, out);
    if (strncmp(uri, "tpm2:", 5) == 0) {
        if (!uri[5])
            return kf_fail(KF_E_INVALID,
                           "TPM key URI %s names no key (tpm2:handle:0x81000010 or "
                           "tpm2:/path/key.tss2)",
                           uri);
        return load_tpm2(uri + 5, uri, out);
    }
    if (strncmp(uri, "file://", 7) == 0) return load_file(uri + 7, passphrase, out);
    if (strncmp(uri, "file:", 5) == 0) return load_file(uri + 5, passphrase, out);
    if (strchr(uri, ':') && !strchr(uri, '/') && strncmp(uri, "handle:", 7) != 0)
        return kf_fail(KF_E_UNSUPPORTED,
                       "key URI %s: unknown scheme (use a file path, pkcs11:... or tpm2:...)", uri);
    if (strncmp(uri, "handle:", 7) == 0) return load_tpm2(uri, uri, out);
    return load_file(uri, passphrase, out);
}

/* ---- public keys ---- */

enum kf_err kf_key_parse_public(const void *data, size_t len, struct kf_key **out)
{
    char label[KF_PEM_LABEL_MAX];
    struct kf_buf der;
    const unsigned char *p;
    EVP_PKEY *pkey;
    enum kf_err rc;

    *out = NULL;
    kf_buf_init(&der, KEY_FILE_MAX);
    if (kf_pem_first_label(data, len, label) == KF_OK) {
        size_t pos = 0;
        if (strcmp(label, "PUBLIC KEY") != 0) {
            rc = kf_fail(KF_E_WRONG_TYPE, "holds a %s, not a PUBLIC KEY", label);
            goto out;
        }
        rc = kf_pem_next(data, len, &pos, label, &der);
        if (rc) goto out;
    } else {
        rc = kf_buf_append(&der, data, len);
        if (rc) goto out;
    }
    p = der.data;
    pkey = der.len ? d2i_PUBKEY(NULL, &p, (long)der.len) : NULL;
    if (!pkey || p != der.data + der.len) {
        EVP_PKEY_free(pkey);
        rc = kf_ossl_fail(KF_E_MALFORMED, "not a valid public key");
        goto out;
    }
    *out = kf_key_wrap(pkey, KF_KEYLOC_NONE, NULL, NULL);
    rc = *out ? KF_OK : KF_E_NOMEM;
out:
    kf_buf_free(&der);
    return rc;
}

enum kf_err kf_key_load_public_file(const char *path, struct kf_key **out)
{
    struct kf_buf text;
    enum kf_err rc;
    kf_buf_init(&text, KEY_FILE_MAX);
    rc = kf_buf_read_file(&text, path);
    if (!rc) {
        rc = kf_key_parse_public(text.data, text.len, out);
        if (rc) kf_wrap(rc, "file %s", path);
    }
    kf_buf_free(&text);
    return rc;
}

enum kf_err kf_key_public_der(const struct kf_key *key, struct kf_buf *out)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key->pkey, &der);
    enum kf_err rc;
    if (n <= 0) return kf_ossl_fail(KF_E_CRYPTO, "cannot encode the public key");
    rc = kf_buf_append(out, der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}

enum kf_err kf_key_public_pem(const struct kf_key *key, struct kf_buf *out)
{
    struct kf_buf der;
    enum kf_err rc;
    kf_buf_init(&der, KEY_FILE_MAX);
    rc = kf_key_public_der(key, &der);
    if (!rc) rc = kf_pem_encode("PUBLIC KEY", der.data, der.len, out);
    kf_buf_free(&der);
    return rc;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

enum kf_err kf_key_fingerprint(const struct kf_key *key, char *hex)
{
    struct kf_buf der;
    unsigned char md[32];
    enum kf_err rc;
    kf_buf_init(&der, KEY_FILE_MAX);
    rc = kf_key_public_der(key, &der);
    if (!rc) {
        if (!EVP_Digest(der.data, der.len, md, NULL, EVP_sha256(), NULL))
            rc = kf_ossl_fail(KF_E_CRYPTO, "cannot hash the public key");
        else
            hex_encode(md, sizeof(md), hex);
    }
    kf_buf_free(&der);
    return rc;
}

int kf_key_public_equal(const struct kf_key *a, const struct kf_key *b)
{
    struct kf_buf da, db;
    int eq;

    /* Cheap when both keys come from providers that can compare them... */
    eq = EVP_PKEY_eq(a->pkey, b->pkey);
    ERR_clear_error();
    if (eq == 1 || eq == 0) return eq;
    /* ...and by their encodings when they cannot (an engine key beside a provider key). */
    eq = 0;
    kf_buf_init(&da, KEY_FILE_MAX);
    kf_buf_init(&db, KEY_FILE_MAX);
    if (kf_key_public_der(a, &da) == KF_OK && kf_key_public_der(b, &db) == KF_OK)
        eq = da.len == db.len && memcmp(da.data, db.data, da.len) == 0;
    kf_buf_free(&da);
    kf_buf_free(&db);
    return eq;
}

enum kf_err kf_key_check_allowed(const struct kf_key *key, unsigned allowed, int min_rsa_bits,
                                 const char *what)
{
    enum kf_key_type t = kf_key_type(key);
    char desc[64];

    kf_key_describe(key, desc, sizeof(desc));
    if (EVP_PKEY_is_a(key->pkey, "RSA") && kf_key_bits(key) < min_rsa_bits)
        return kf_fail(KF_E_POLICY, "%s is %s: RSA keys must have at least %d bits", what, desc,
                       min_rsa_bits);
    if (t == KF_KEY_NONE || t == KF_KEY_OTHER || !(allowed & KF_KEY_BIT(t)))
        return kf_fail(KF_E_POLICY, "%s is %s, which is not an allowed key type", what, desc);
    return KF_OK;
}

/* ---- SubjectPublicKeyInfo without a key object ---- */

static pthread_once_t ec_groups_once = PTHREAD_ONCE_INIT;
static EC_GROUP *ec_p256, *ec_p384;

static void ec_groups_free(void)
{
    EC_GROUP_free(ec_p256);
    EC_GROUP_free(ec_p384);
}

static void ec_groups_init(void)
{
    ec_p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    ec_p384 = EC_GROUP_new_by_curve_name(NID_secp384r1);
    /* before OpenSSL tears itself down (see tpm2_cleanup in ossl.c) */
    if (!OPENSSL_atexit(ec_groups_free)) atexit(ec_groups_free);
}

/* 1 when `p[0..n)` encodes a point on the curve (and not the point at infinity). */
static int ec_point_on_curve(int curve, const unsigned char *p, size_t n)
{
    const EC_GROUP *g;
    EC_POINT *pt;
    int ok;

    pthread_once(&ec_groups_once, ec_groups_init);
    g = curve == NID_X9_62_prime256v1 ? ec_p256 : ec_p384;
    if (!g || !(pt = EC_POINT_new(g))) return 0;
    /* oct2point refuses encodings of points that are not on the curve. */
    ok = EC_POINT_oct2point(g, pt, p, n, NULL) == 1 && !EC_POINT_is_at_infinity(g, pt);
    EC_POINT_free(pt);
    ERR_clear_error();
    return ok;
}

/* Counts the significant bits of a big-endian unsigned integer. */
static int integer_bits(const unsigned char *p, size_t n)
{
    while (n && *p == 0)
        p++, n--;
    if (!n) return 0;
    {
        int bits = (int)(n - 1) * 8;
        for (unsigned char c = *p; c; c >>= 1)
            bits++;
        return bits;
    }
}

static enum kf_err rsa_bits(const unsigned char *key, size_t len, int *bits)
{
    const unsigned char *p = key, *end = key + len, *seq_end;
    long l;
    int tag, cls;

    /* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } */
    if (ASN1_get_object(&p, &l, &tag, &cls, (long)len) & 0x80 || tag != V_ASN1_SEQUENCE ||
        p + l != end)
        return KF_E_MALFORMED;
    seq_end = p + l;
    if (ASN1_get_object(&p, &l, &tag, &cls, seq_end - p) & 0x80 || tag != V_ASN1_INTEGER ||
        l <= 0 || p[0] & 0x80)
        return KF_E_MALFORMED;
    *bits = integer_bits(p, (size_t)l);
    p += l;
    if (ASN1_get_object(&p, &l, &tag, &cls, seq_end - p) & 0x80 || tag != V_ASN1_INTEGER ||
        l <= 0 || p + l != seq_end)
        return KF_E_MALFORMED;
    return KF_OK;
}

/* A SubjectPublicKeyInfo, read: its parts (owned) and what kind of key it holds. */
struct spki {
    X509_ALGOR *alg;
    ASN1_BIT_STRING *bits;
    enum kf_key_type
        type;      /* KF_KEY_OTHER for curves, sizes and algorithms keyfleet does not issue */
    int rsa_bits;  /* for RSA */
    char desc[64]; /* "EC P-256", "RSA 1024", "an unknown key type" */
};

static void spki_clear(struct spki *k)
{
    X509_ALGOR_free(k->alg);
    ASN1_BIT_STRING_free(k->bits);
    k->alg = NULL;
    k->bits = NULL;
}

/* Parses and classifies `der`; KF_E_MALFORMED (or KF_E_POLICY for an unnamed curve), naming `what`.
 */
static enum kf_err spki_read(const unsigned char *der, size_t len, const char *what, struct spki *k)
{
    const unsigned char *p = der;
    const ASN1_OBJECT *alg_obj;
    const void *param;
    long l;
    int tag, cls, ptype, nid;

    memset(k, 0, sizeof(*k));
    k->type = KF_KEY_OTHER;
    snprintf(k->desc, sizeof(k->desc), "an unknown key type");
    if (!der || len == 0 || len > KEY_FILE_MAX ||
        ASN1_get_object(&p, &l, &tag, &cls, (long)len) & 0x80 || tag != V_ASN1_SEQUENCE ||
        p + l != der + len)
        goto malformed;
    k->alg = d2i_X509_ALGOR(NULL, &p, der + len - p);
    k->bits = k->alg ? d2i_ASN1_BIT_STRING(NULL, &p, der + len - p) : NULL;
    if (!k->alg || !k->bits || p != der + len || (k->bits->flags & 0x07)) goto malformed;
    X509_ALGOR_get0(&alg_obj, &ptype, &param, k->alg);
    nid = OBJ_obj2nid(alg_obj);
    if (nid == NID_X9_62_id_ecPublicKey) {
        int curve = ptype == V_ASN1_OBJECT ? OBJ_obj2nid(param) : NID_undef;
        size_t field = curve == NID_X9_62_prime256v1 ? 32 : curve == NID_secp384r1 ? 48 : 0;
        size_t n = (size_t)k->bits->length;
        const unsigned char *pt = k->bits->data;
        if (ptype != V_ASN1_OBJECT) {
            spki_clear(k);
            return kf_fail(KF_E_POLICY, "%s is an EC key without a named curve", what);
        }
        snprintf(k->desc, sizeof(k->desc), "EC %s",
                 curve == NID_X9_62_prime256v1 ? "P-256"
                 : curve == NID_secp384r1      ? "P-384"
                                               : OBJ_nid2sn(curve));
        if (field) {
            if (!((n == 2 * field + 1 && pt[0] == 0x04) ||
                  (n == field + 1 && (pt[0] == 0x02 || pt[0] == 0x03))) ||
                !ec_point_on_curve(curve, pt, n)) {
                spki_clear(k);
                return kf_fail(KF_E_MALFORMED, "%s is not a valid %s point", what, k->desc);
            }
            k->type = field == 32 ? KF_KEY_EC_P256 : KF_KEY_EC_P384;
        }
    } else if (nid == NID_ED25519) {
        snprintf(k->desc, sizeof(k->desc), "Ed25519");
        if (ptype != V_ASN1_UNDEF || k->bits->length != 32) {
            spki_clear(k);
            return kf_fail(KF_E_MALFORMED, "%s is not a valid Ed25519 key", what);
        }
        k->type = KF_KEY_ED25519;
    } else if (nid == NID_rsaEncryption) {
        if (rsa_bits(k->bits->data, (size_t)k->bits->length, &k->rsa_bits) != KF_OK) {
            spki_clear(k);
            return kf_fail(KF_E_MALFORMED, "%s is not a valid RSA key", what);
        }
        snprintf(k->desc, sizeof(k->desc), "RSA %d", k->rsa_bits);
        k->type = k->rsa_bits >= 3072   ? KF_KEY_RSA3072
                  : k->rsa_bits >= 2048 ? KF_KEY_RSA2048
                                        : KF_KEY_OTHER;
    } else if (nid != NID_undef) {
        snprintf(k->desc, sizeof(k->desc), "%s", OBJ_nid2ln(nid));
    }
    ERR_clear_error();
    return KF_OK;
malformed:
    spki_clear(k);
    ERR_clear_error();
    return kf_fail(KF_E_MALFORMED, "%s is not a DER SubjectPublicKeyInfo", what);
}

enum kf_err kf_spki_check(const unsigned char *der, size_t len, unsigned allowed, int min_rsa_bits,
                          const char *what, enum kf_key_type *type)
{
    struct spki k;
    enum kf_err rc;

    if (type) *type = KF_KEY_NONE;
    rc = spki_read(der, len, what, &k);
    if (rc) return rc;
    spki_clear(&k);
    if (k.rsa_bits && k.rsa_bits < min_rsa_bits)
        return kf_fail(KF_E_POLICY, "%s is %s: RSA keys must have at least %d bits", what, k.desc,
                       min_rsa_bits);
    if (type) *type = k.type;
    if (k.type == KF_KEY_OTHER || !(allowed & KF_KEY_BIT(k.type)))
        return kf_fail(KF_E_POLICY, "%s is %s, which is not an allowed key type", what, k.desc);
    return KF_OK;
}

/* The parts of an RSAPublicKey (whose structure rsa_bits has checked) as numbers. */
static EVP_PKEY *rsa_from_parts(const unsigned char *key, size_t len)
{
    const unsigned char *p = key, *end = key + len;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    long l;
    int tag, cls;

    if (!bld || ASN1_get_object(&p, &l, &tag, &cls, (long)len) & 0x80) goto out;
    if (ASN1_get_object(&p, &l, &tag, &cls, end - p) & 0x80) goto out;
    n = BN_bin2bn(p, (int)l, NULL);
    p += l;
    if (ASN1_get_object(&p, &l, &tag, &cls, end - p) & 0x80) goto out;
    e = BN_bin2bn(p, (int)l, NULL);
    if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto out;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

static EVP_PKEY *ec_from_point(const char *group, const unsigned char *pt, size_t n)
{
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, n);
    params[2] = OSSL_PARAM_construct_end();
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

enum kf_err kf_key_from_spki(const unsigned char *der, size_t len, const char *what,
                             struct kf_key **out)
{
    const unsigned char *p;
    EVP_PKEY *pkey = NULL;
    struct spki k;
    enum kf_err rc;

    *out = NULL;
    rc = spki_read(der, len, what, &k);
    if (rc == KF_E_MALFORMED) return rc;
    kf_err_clear();
    if (!rc) {
        const unsigned char *b = k.bits->data;
        size_t n = (size_t)k.bits->length;
        switch (k.type) {
        case KF_KEY_EC_P256: pkey = ec_from_point("P-256", b, n); break;
        case KF_KEY_EC_P384: pkey = ec_from_point("P-384", b, n); break;
        case KF_KEY_ED25519:
            pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, b, n);
            break;
        default:
            if (k.rsa_bits) pkey = rsa_from_parts(b, n);
            break;
        }
        spki_clear(&k);
    }
    if (!pkey) {
        /* Keys of other kinds, through the generic decoders. */
        p = der;
        pkey = d2i_PUBKEY(NULL, &p, (long)len);
        if (!pkey || p != der + len) {
            EVP_PKEY_free(pkey);
            return kf_ossl_fail(KF_E_MALFORMED, "%s is not a public key OpenSSL can use", what);
        }
    }
    ERR_clear_error();
    *out = kf_key_wrap(pkey, KF_KEYLOC_NONE, NULL, NULL);
    return *out ? KF_OK : kf_fail(KF_E_NOMEM, "out of memory");
}

/* ---- saving ---- */

enum kf_err kf_key_save(const struct kf_key *key, const char *path, const char *passphrase)
{
    BIO *bio;
    BUF_MEM *mem = NULL;
    enum kf_err rc;
    int ok;

    if (key->loc != KF_KEYLOC_MEMORY && key->loc != KF_KEYLOC_FILE)
        return kf_fail(KF_E_UNSUPPORTED, "a %s key cannot be written to a file",
                       kf_key_location(key));
    /* A secure-memory BIO wipes what it held when it is freed. */
    bio = BIO_new(BIO_s_secmem());
    if (!bio) return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    if (passphrase)
        ok = PEM_write_bio_PKCS8PrivateKey(bio, key->pkey, EVP_aes_256_cbc(), passphrase,
                                           (int)strlen(passphrase), NULL, NULL);
    else
        ok = PEM_write_bio_PKCS8PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL);
    if (!ok) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot encode the private key for %s", path);
        goto out;
    }
    BIO_get_mem_ptr(bio, &mem);
    rc = kf_file_write(path, mem->data, mem->length, 0600, 0);
out:
    BIO_free(bio);
    return rc;
}

/* ---- signing ---- */

const char *kf_key_digest_name(const struct kf_key *key)
{
    switch (kf_key_type(key)) {
    case KF_KEY_EC_P384: return "SHA384";
    case KF_KEY_ED25519: return NULL;
    default: return "SHA256";
    }
}

EVP_MD_CTX *kf_key_sign_ctx(const struct kf_key *key)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        kf_ossl_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    if (EVP_DigestSignInit_ex(ctx, NULL, kf_key_digest_name(key), key->libctx, key->propq,
                              key->pkey, NULL) != 1) {
        kf_ossl_fail(KF_E_CRYPTO, "cannot start signing with the %s key", kf_key_location(key));
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

enum kf_err kf_key_sign(const struct kf_key *key, const void *data, size_t len, struct kf_buf *sig)
{
    EVP_MD_CTX *ctx = kf_key_sign_ctx(key);
    unsigned char *s = NULL;
    size_t slen = 0;
    enum kf_err rc = KF_OK;

    if (!ctx) return kf_errlast();
    if (EVP_DigestSign(ctx, NULL, &slen, data, len) != 1 || !(s = OPENSSL_malloc(slen)) ||
        EVP_DigestSign(ctx, s, &slen, data, len) != 1)
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot sign with the %s key", kf_key_location(key));
    else
        rc = kf_buf_append(sig, s, slen);
    OPENSSL_free(s);
    EVP_MD_CTX_free(ctx);
    return rc;
}

enum kf_err kf_key_verify(const struct kf_key *key, const void *data, size_t len, const void *sig,
                          size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;
    if (!ctx) return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    ok = EVP_DigestVerifyInit_ex(ctx, NULL, kf_key_digest_name(key), NULL, NULL, key->pkey, NULL) ==
             1 &&
         EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) return kf_ossl_fail(KF_E_BAD_SIGNATURE, "signature does not verify");
    return KF_OK;
}
