/* X.509 certificates: parsing, fields, and building from keyfleet's profiles. */
#include "common/pki_cert.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/ident.h"
#include "common/ossl.h"
#include "common/pem.h"
#include "common/timefmt.h"

const char *kf_profile_name(enum kf_profile profile)
{
    switch (profile) {
    case KF_PROFILE_ROOT_CA: return "root-ca";
    case KF_PROFILE_ISSUING_CA: return "issuing-ca";
    case KF_PROFILE_DEVICE: return "device";
    case KF_PROFILE_SERVICE: return "service";
    case KF_PROFILE_SERVER: return "server";
    }
    return "unknown";
}

/* ---- parsing ---- */

static enum kf_err parse_der(const unsigned char *der, size_t len, struct kf_cert **out)
{
    const unsigned char *p = der;
    X509 *x;
    if (len == 0 || len > KF_CERT_FILE_MAX)
        return kf_fail(KF_E_MALFORMED, "empty or oversized certificate");
    x = d2i_X509(NULL, &p, (long)len);
    if (!x) return kf_ossl_fail(KF_E_MALFORMED, "not a valid X.509 certificate");
    if (p != der + len) {
        X509_free(x);
        return kf_fail(KF_E_MALFORMED, "not a valid X.509 certificate: %zu bytes of trailing data",
                       (size_t)(der + len - p));
    }
    *out = kf_cert_wrap(x);
    return *out ? KF_OK : KF_E_NOMEM;
}

enum kf_err kf_cert_parse(const void *data, size_t len, struct kf_cert **out)
{
    char label[KF_PEM_LABEL_MAX], first[KF_PEM_LABEL_MAX];
    struct kf_buf der;
    size_t pos = 0;
    enum kf_err rc;

    *out = NULL;
    if (kf_pem_first_label(data, len, first) != KF_OK) return parse_der(data, len, out);
    kf_buf_init(&der, KF_CERT_FILE_MAX);
    for (;;) {
        kf_buf_reset(&der);
        rc = kf_pem_next(data, len, &pos, label, &der);
        if (rc == KF_E_NOT_FOUND) {
            rc = kf_fail(KF_E_WRONG_TYPE, "holds a %s, not a certificate", first);
            break;
        }
        if (rc) break;
        if (strcmp(label, "CERTIFICATE") == 0) {
            rc = parse_der(der.data, der.len, out);
            break;
        }
    }
    kf_buf_free(&der);
    return rc;
}

enum kf_err kf_cert_load_file(const char *path, struct kf_cert **out)
{
    struct kf_buf text;
    enum kf_err rc;
    *out = NULL;
    kf_buf_init(&text, KF_CERT_FILE_MAX);
    rc = kf_buf_read_file(&text, path);
    if (!rc) {
        rc = kf_cert_parse(text.data, text.len, out);
        if (rc) kf_wrap(rc, "file %s", path);
    }
    kf_buf_free(&text);
    return rc;
}

void kf_cert_chain_free(struct kf_cert **certs, size_t n)
{
    if (!certs) return;
    for (size_t i = 0; i < n; i++)
        kf_cert_free(certs[i]);
    free(certs);
}

enum kf_err kf_cert_parse_chain(const void *data, size_t len, struct kf_cert ***out, size_t *n)
{
    char label[KF_PEM_LABEL_MAX];
    struct kf_cert **v = NULL;
    struct kf_buf der;
    size_t pos = 0, count = 0;
    enum kf_err rc = KF_OK;

    *out = NULL;
    *n = 0;
    v = calloc(KF_CERT_CHAIN_MAX, sizeof(*v));
    if (!v) return kf_fail(KF_E_NOMEM, "out of memory");
    kf_buf_init(&der, KF_CERT_FILE_MAX);
    for (;;) {
        kf_buf_reset(&der);
        rc = kf_pem_next(data, len, &pos, label, &der);
        if (rc == KF_E_NOT_FOUND) {
            rc = KF_OK;
            break;
        }
        if (rc) break;
        if (strcmp(label, "CERTIFICATE") != 0) continue;
        if (count == KF_CERT_CHAIN_MAX) {
            rc = kf_fail(KF_E_OVERSIZE, "more than %d certificates", KF_CERT_CHAIN_MAX);
            break;
        }
        rc = parse_der(der.data, der.len, &v[count]);
        if (rc) {
            kf_wrap(rc, "certificate %zu", count + 1);
            break;
        }
        count++;
    }
    kf_buf_free(&der);
    if (!rc && count == 0) rc = kf_fail(KF_E_NOT_FOUND, "no CERTIFICATE block");
    if (rc) {
        kf_cert_chain_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return KF_OK;
}

struct kf_cert *kf_cert_ref(const struct kf_cert *cert)
{
    X509_up_ref(cert->x509);
    return kf_cert_wrap(cert->x509);
}

void kf_cert_free(struct kf_cert *cert)
{
    if (!cert) return;
    X509_free(cert->x509);
    free(cert);
}

enum kf_err kf_cert_der(const struct kf_cert *cert, struct kf_buf *out)
{
    unsigned char *der = NULL;
    int n = i2d_X509(cert->x509, &der);
    enum kf_err rc;
    if (n <= 0) return kf_ossl_fail(KF_E_CRYPTO, "cannot encode a certificate");
    rc = kf_buf_append(out, der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}

enum kf_err kf_cert_pem(const struct kf_cert *cert, struct kf_buf *out)
{
    struct kf_buf der;
    enum kf_err rc;
    kf_buf_init(&der, KF_CERT_FILE_MAX);
    rc = kf_cert_der(cert, &der);
    if (!rc) rc = kf_pem_encode("CERTIFICATE", der.data, der.len, out);
    kf_buf_free(&der);
    return rc;
}

/* ---- fields ---- */

static enum kf_err name_cn(const X509_NAME *name, char *out, size_t cap)
{
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    const ASN1_STRING *s;
    unsigned char *utf8 = NULL;
    int n;

    if (idx < 0) return kf_fail(KF_E_NOT_FOUND, "the subject has no CN");
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0) return kf_ossl_fail(KF_E_MALFORMED, "the subject CN is not valid text");
    if ((size_t)n >= cap || memchr(utf8, '\0', (size_t)n)) {
        OPENSSL_free(utf8);
        return kf_fail(KF_E_OVERSIZE, "the subject CN is too long or holds a NUL byte");
    }
    memcpy(out, utf8, (size_t)n);
    out[n] = '\0';
    OPENSSL_free(utf8);
    return KF_OK;
}

enum kf_err kf_cert_subject_cn(const struct kf_cert *cert, char *out, size_t cap)
{
    return name_cn(X509_get_subject_name(cert->x509), out, cap);
}

static void name_text(const X509_NAME *name, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *m;
    out[0] = '\0';
    if (!b) return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        BIO_get_mem_ptr(b, &m);
        snprintf(out, cap, "%.*s", (int)m->length, m->data);
    }
    BIO_free(b);
}

void kf_cert_subject(const struct kf_cert *cert, char *out, size_t cap)
{
    name_text(X509_get_subject_name(cert->x509), out, cap);
}

void kf_cert_issuer(const struct kf_cert *cert, char *out, size_t cap)
{
    name_text(X509_get_issuer_name(cert->x509), out, cap);
}

void kf_cert_serial_hex(const struct kf_cert *cert, char *out)
{
    kf_serial_to_hex(X509_get0_serialNumber(cert->x509), out);
}

enum kf_err kf_serial_normalize(const char *in, char *out)
{
    size_t j = 0;
    const char *p = in;

    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) p += 2;
    for (; *p; p++) {
        char c = *p;
        if (c == ':' && p != in && p[1]) continue;
        if (!isxdigit((unsigned char)c) || j == 40) {
            out[0] = '\0';
            return kf_fail(KF_E_INVALID,
                           "serial \"%.60s\" is not a hexadecimal number of at most 20 octets", in);
        }
        if (j == 0 && c == '0') continue;
        out[j++] = (char)tolower((unsigned char)c);
    }
    if (j == 0) {
        if (!*in || (p > in && p[-1] != '0')) {
            out[0] = '\0';
            return kf_fail(KF_E_INVALID, "serial \"%.60s\" is empty", in);
        }
        out[j++] = '0';
    }
    out[j] = '\0';
    return KF_OK;
}

time_t kf_cert_not_before(const struct kf_cert *cert)
{
    return kf_asn1_time(X509_get0_notBefore(cert->x509));
}

time_t kf_cert_not_after(const struct kf_cert *cert)
{
    return kf_asn1_time(X509_get0_notAfter(cert->x509));
}

int kf_cert_is_ca(const struct kf_cert *cert)
{
    return (X509_get_extension_flags(cert->x509) & EXFLAG_CA) != 0;
}

int kf_cert_is_self_signed(const struct kf_cert *cert)
{
    int r = X509_self_signed(cert->x509, 1) == 1;
    ERR_clear_error();
    return r;
}

void kf_cert_fingerprint(const struct kf_cert *cert, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int n = 0;
    hex[0] = '\0';
    if (!X509_digest(cert->x509, EVP_sha256(), md, &n) || n != 32) return;
    for (unsigned i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * n] = '\0';
}

enum kf_err kf_cert_public_key(const struct kf_cert *cert, struct kf_key **out)
{
    EVP_PKEY *pkey = X509_get_pubkey(cert->x509);
    if (!pkey) {
        /* A certificate built here from SPKI bytes has no key object yet: build it from them. */
        unsigned char *der = NULL;
        int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert->x509), &der);
        enum kf_err rc;
        ERR_clear_error();
        if (n <= 0)
            return kf_ossl_fail(KF_E_MALFORMED, "the certificate's public key cannot be read");
        rc = kf_key_from_spki(der, (size_t)n, "the certificate's public key", out);
        OPENSSL_free(der);
        return rc;
    }
    *out = kf_key_wrap(pkey, KF_KEYLOC_NONE, NULL, NULL);
    return *out ? KF_OK : KF_E_NOMEM;
}

enum kf_err kf_cert_uri_san(const struct kf_cert *cert, const char *prefix, char *out, size_t cap)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert->x509, NID_subject_alt_name, NULL, NULL);
    size_t plen = strlen(prefix);
    enum kf_err rc = kf_fail(KF_E_NOT_FOUND, "no URI SAN starting with %s", prefix);

    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const unsigned char *s;
        size_t len;
        if (gn->type != GEN_URI) continue;
        s = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        len = (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (len < plen || memcmp(s, prefix, plen) != 0) continue;
        if (len - plen >= cap || memchr(s, '\0', len)) {
            rc = kf_fail(KF_E_MALFORMED, "URI SAN %s... is too long or holds a NUL byte", prefix);
            break;
        }
        memcpy(out, s + plen, len - plen);
        out[len - plen] = '\0';
        rc = KF_OK;
        break;
    }
    GENERAL_NAMES_free(names);
    ERR_clear_error();
    return rc;
}

int kf_cert_signed_by(const struct kf_cert *cert, const struct kf_key *issuer_key)
{
    int r = X509_verify(cert->x509, issuer_key->pkey) == 1;
    ERR_clear_error();
    return r;
}

enum kf_err kf_cert_check_ca(const struct kf_cert *cert, const char *name, time_t now)
{
    uint32_t flags = X509_get_extension_flags(cert->x509);
    char when[KF_TIME_TEXT_MAX];
    struct kf_key *key = NULL;
    enum kf_err rc;

    if (flags & EXFLAG_INVALID)
        return kf_fail(KF_E_MALFORMED, "certificate %s has malformed extensions", name);
    if (!(flags & EXFLAG_BCONS))
        return kf_fail(KF_E_POLICY, "certificate %s is not a CA: it has no basicConstraints", name);
    if (!(flags & EXFLAG_CA))
        return kf_fail(KF_E_POLICY, "certificate %s is not a CA: basicConstraints CA:FALSE", name);
    if ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(cert->x509) & KU_KEY_CERT_SIGN))
        return kf_fail(KF_E_POLICY, "certificate %s is not a CA: its keyUsage lacks keyCertSign",
                       name);
    if (now < kf_cert_not_before(cert)) {
        kf_time_rfc3339(kf_cert_not_before(cert), when, sizeof(when));
        return kf_fail(KF_E_NOT_YET_VALID, "certificate %s is not valid before %s", name, when);
    }
    if (now > kf_cert_not_after(cert)) {
        kf_time_rfc3339(kf_cert_not_after(cert), when, sizeof(when));
        return kf_fail(KF_E_EXPIRED, "certificate %s expired on %s", name, when);
    }
    rc = kf_cert_public_key(cert, &key);
    if (rc) return kf_wrap(rc, "certificate %s", name);
    rc = kf_key_check_allowed(key, KF_KEY_ALLOWED_DEFAULT, KF_KEY_MIN_RSA_BITS, "its key");
    if (rc) kf_wrap(rc, "certificate %s", name);
    kf_key_free(key);
    return rc;
}

/* ---- building ---- */

int kf_dns_name_ok(const char *s)
{
    size_t len = strlen(s), label = 0;
    int all_digits = 1;
    if (len == 0 || len > 253) return 0;
    if (s[0] == '*' && s[1] == '.') s += 2;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (label == 0 || p[-1] == '-') return 0;
            label = 0;
            all_digits = 1;
            continue;
        }
        if (!isalnum((unsigned char)*p) && !(*p == '-' && label > 0)) return 0;
        if (!isdigit((unsigned char)*p)) all_digits = 0;
        if (++label > 63) return 0;
    }
    return label > 0 && s[strlen(s) - 1] != '-' && !all_digits;
}

static enum kf_err add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok;
    if (!ext)
        return kf_ossl_fail(KF_E_CRYPTO, "cannot make extension %s = %s", OBJ_nid2sn(nid), value);
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (!ok) return kf_ossl_fail(KF_E_CRYPTO, "cannot add extension %s", OBJ_nid2sn(nid));
    return KF_OK;
}

static enum kf_err add_uri(GENERAL_NAMES *names, const char *prefix, const char *value)
{
    char uri[512];
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    snprintf(uri, sizeof(uri), "%s%s", prefix, value);
    if (!gn || !s || !ASN1_STRING_set(s, uri, (int)strlen(uri))) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    }
    GENERAL_NAME_set0_value(gn, GEN_URI, s);
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    }
    return KF_OK;
}

static enum kf_err add_dns(GENERAL_NAMES *names, const char *dns)
{
    GENERAL_NAME *gn;
    ASN1_IA5STRING *s;
    char low[254];
    size_t i;
    if (!kf_dns_name_ok(dns))
        return kf_fail(KF_E_INVALID, "\"%.64s\" is not a valid DNS name", dns);
    for (i = 0; dns[i] && i < sizeof(low) - 1; i++)
        low[i] = (char)tolower((unsigned char)dns[i]);
    low[i] = '\0';
    gn = GENERAL_NAME_new();
    s = ASN1_IA5STRING_new();
    if (!gn || !s || !ASN1_STRING_set(s, low, (int)i)) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    }
    return KF_OK;
}

static enum kf_err add_ip(GENERAL_NAMES *names, const char *ip)
{
    unsigned char bin[16];
    int len;
    GENERAL_NAME *gn;
    ASN1_OCTET_STRING *s;
    if (inet_pton(AF_INET, ip, bin) == 1)
        len = 4;
    else if (inet_pton(AF_INET6, ip, bin) == 1)
        len = 16;
    else
        return kf_fail(KF_E_INVALID, "\"%.64s\" is not a valid IP address", ip);
    gn = GENERAL_NAME_new();
    s = ASN1_OCTET_STRING_new();
    if (!gn || !s || !ASN1_OCTET_STRING_set(s, bin, len)) {
        GENERAL_NAME_free(gn);
        ASN1_OCTET_STRING_free(s);
        return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    }
    GENERAL_NAME_set0_value(gn, GEN_IPADD, s);
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    }
    return KF_OK;
}

static enum kf_err add_sans(X509 *x, const struct kf_cert_template *t)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    enum kf_err rc = KF_OK;

    if (!names) return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    switch (t->profile) {
    case KF_PROFILE_DEVICE: rc = add_uri(names, KF_URN_DEVICE, t->device_id); break;
    case KF_PROFILE_SERVICE:
        rc = add_uri(names, KF_URN_SERVICE, t->service);
        if (!rc) rc = add_uri(names, KF_URN_ROLE, t->role);
        break;
    case KF_PROFILE_SERVER:
        for (size_t i = 0; !rc && i < t->n_dns; i++)
            rc = add_dns(names, t->dns_names[i]);
        for (size_t i = 0; !rc && i < t->n_ips; i++)
            rc = add_ip(names, t->ip_addrs[i]);
        break;
    default: break;
    }
    if (!rc && sk_GENERAL_NAME_num(names) > 0) {
        /* RFC 5280 4.2.1.6: critical only when the subject is empty; ours never is. */
        if (!X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT))
            rc = kf_ossl_fail(KF_E_CRYPTO, "cannot add subjectAltName");
    }
    GENERAL_NAMES_free(names);
    return rc;
}

static enum kf_err check_template(const struct kf_cert_template *t)
{
    enum kf_err rc;
    if (!t->cn || !*t->cn) return kf_fail(KF_E_INVALID, "certificate template: no subject CN");
    /* Device and service ids reach 128 characters (beyond X.520's 64 for a CN, see ident.h). */
    if (strlen(t->cn) > KF_ID_MAX)
        return kf_fail(KF_E_INVALID, "certificate template: CN longer than %d characters",
                       KF_ID_MAX);
    if (!t->key && !t->spki) return kf_fail(KF_E_INVALID, "certificate template: no public key");
    if (t->not_after <= t->not_before)
        return kf_fail(KF_E_INVALID, "certificate template: notAfter is not after notBefore");
    if (t->org && strlen(t->org) > 64)
        return kf_fail(KF_E_INVALID, "certificate template: O longer than 64 characters");
    switch (t->profile) {
    case KF_PROFILE_ROOT_CA:
    case KF_PROFILE_ISSUING_CA: break;
    case KF_PROFILE_DEVICE:
        rc = kf_id_check("device id", t->device_id);
        if (rc) return rc;
        if (strcmp(t->cn, t->device_id) != 0)
            return kf_fail(KF_E_INVALID, "device certificate: CN \"%s\" differs from device id %s",
                           t->cn, t->device_id);
        break;
    case KF_PROFILE_SERVICE:
        rc = kf_id_check("service name", t->service);
        if (!rc) rc = kf_id_check("role", t->role);
        if (rc) return rc;
        break;
    case KF_PROFILE_SERVER:
        if (t->n_dns + t->n_ips == 0)
            return kf_fail(KF_E_INVALID, "server certificate: no DNS name or IP address");
        if (t->n_dns + t->n_ips > KF_CERT_MAX_SANS)
            return kf_fail(KF_E_INVALID, "server certificate: more than %d names",
                           KF_CERT_MAX_SANS);
        break;
    default: return kf_fail(KF_E_INVALID, "certificate template: unknown profile %d", t->profile);
    }
    return KF_OK;
}

static enum kf_err set_random_serial(X509 *x)
{
    unsigned char raw[16];
    BIGNUM *bn = NULL;
    enum kf_err rc = KF_OK;

    do {
        if (RAND_bytes(raw, sizeof(raw)) != 1)
            return kf_ossl_fail(KF_E_CRYPTO, "cannot draw a random serial");
        BN_free(bn);
        bn = BN_bin2bn(raw, sizeof(raw), NULL);
        if (!bn) return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    } while (BN_is_zero(bn));
    if (!BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot set the serial");
    BN_free(bn);
    return rc;
}

static enum kf_err set_subject(X509 *x, const struct kf_cert_template *t)
{
    X509_NAME *name = X509_get_subject_name(x);
    if (t->org && *t->org &&
        !X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
                                    (const unsigned char *)t->org, -1, -1, 0))
        return kf_ossl_fail(KF_E_INVALID, "bad subject O");
    if (t->profile == KF_PROFILE_SERVICE &&
        !X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, MBSTRING_UTF8,
                                    (const unsigned char *)t->role, -1, -1, 0))
        return kf_ossl_fail(KF_E_INVALID, "bad subject OU");
    if (!kf_name_add_cn(name, t->cn)) return kf_ossl_fail(KF_E_INVALID, "bad subject CN");
    return KF_OK;
}

/* The subject key's type, from the key or from its SPKI. */
static enum kf_key_type subject_key_type(const struct kf_cert_template *t)
{
    enum kf_key_type type = KF_KEY_NONE;
    if (t->key) return kf_key_type(t->key);
    kf_spki_check(t->spki, t->spki_len, ~0u, 0, "the key", &type);
    return type;
}

/* Sets the certificate's key straight from SPKI bytes: no key object, no encoder round trip. */
static enum kf_err set_pubkey_from_spki(X509 *x, const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    const ASN1_OBJECT *obj;
    const void *pval;
    X509_ALGOR *alg = NULL;
    ASN1_BIT_STRING *bits = NULL;
    ASN1_OBJECT *param = NULL;
    unsigned char *enc = NULL;
    enum kf_err rc = KF_OK;
    long l;
    int tag, cls, ptype;

    if (kf_spki_check(der, len, ~0u, 0, "the key to certify", NULL) == KF_E_MALFORMED)
        return kf_errlast();
    kf_err_clear();
    ASN1_get_object(&p, &l, &tag, &cls, (long)len);
    alg = d2i_X509_ALGOR(NULL, &p, der + len - p);
    bits = alg ? d2i_ASN1_BIT_STRING(NULL, &p, der + len - p) : NULL;
    if (!alg || !bits) {
        rc = kf_ossl_fail(KF_E_MALFORMED, "the key to certify is not a SubjectPublicKeyInfo");
        goto out;
    }
    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    if (ptype == V_ASN1_OBJECT && !(param = OBJ_dup(pval))) {
        rc = kf_ossl_fail(KF_E_NOMEM, "out of memory");
        goto out;
    }
    if (ptype != V_ASN1_OBJECT && ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF) {
        rc = kf_fail(KF_E_UNSUPPORTED, "the key to certify has algorithm parameters keyfleet does "
                                       "not carry");
        goto out;
    }
    enc = OPENSSL_memdup(bits->data, (size_t)bits->length);
    if ((bits->length && !enc) || !X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_dup(obj),
                                                          ptype, param, enc, bits->length)) {
        OPENSSL_free(enc);
        ASN1_OBJECT_free(param);
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot set the certificate's key");
        goto out;
    }
out:
    X509_ALGOR_free(alg);
    ASN1_BIT_STRING_free(bits);
    return rc;
}

static enum kf_err add_profile_exts(X509 *x, X509V3_CTX *ctx, const struct kf_cert_template *t)
{
    enum kf_err rc = KF_OK;
    enum kf_key_type type = subject_key_type(t);
    int rsa = type == KF_KEY_RSA2048 || type == KF_KEY_RSA3072;

    switch (t->profile) {
    case KF_PROFILE_ROOT_CA:
        rc = add_ext(x, ctx, NID_basic_constraints, "critical,CA:TRUE");
        if (!rc) rc = add_ext(x, ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
        break;
    case KF_PROFILE_ISSUING_CA:
        rc = add_ext(x, ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
        if (!rc) rc = add_ext(x, ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
        break;
    case KF_PROFILE_DEVICE:
    case KF_PROFILE_SERVICE:
        rc = add_ext(x, ctx, NID_basic_constraints, "critical,CA:FALSE");
        if (!rc) rc = add_ext(x, ctx, NID_key_usage, "critical,digitalSignature");
        if (!rc) rc = add_ext(x, ctx, NID_ext_key_usage, "clientAuth");
        break;
    case KF_PROFILE_SERVER:
        rc = add_ext(x, ctx, NID_basic_constraints, "critical,CA:FALSE");
        if (!rc)
            rc = add_ext(x, ctx, NID_key_usage,
                         rsa ? "critical,digitalSignature,keyEncipherment"
                             : "critical,digitalSignature");
        if (!rc) rc = add_ext(x, ctx, NID_ext_key_usage, "serverAuth");
        break;
    }
    return rc;
}

enum kf_err kf_cert_build(const struct kf_cert_template *t, const struct kf_cert *issuer,
                          const struct kf_key *issuer_key, struct kf_cert **out)
{
    X509V3_CTX ctx;
    X509 *x = NULL;
    EVP_MD_CTX *mctx = NULL;
    struct kf_key *issuer_pub = NULL;
    enum kf_err rc;

    *out = NULL;
    rc = check_template(t);
    if (rc) return rc;
    if (!issuer && t->profile != KF_PROFILE_ROOT_CA)
        return kf_fail(KF_E_INVALID, "only a root CA certificate can be self-signed");
    if (issuer && t->profile == KF_PROFILE_ROOT_CA)
        return kf_fail(KF_E_INVALID, "a root CA certificate must be self-signed");
    if (!issuer && (!t->key || !kf_key_public_equal(t->key, issuer_key)))
        return kf_fail(KF_E_INVALID, "a self-signed certificate must be signed by its own key");
    if (issuer) {
        rc = kf_cert_public_key(issuer, &issuer_pub);
        if (rc) return rc;
        if (!kf_key_public_equal(issuer_pub, issuer_key)) {
            kf_key_free(issuer_pub);
            return kf_fail(KF_E_INVALID,
                           "the signing key does not belong to the issuer certificate");
        }
        kf_key_free(issuer_pub);
        if (!kf_cert_is_ca(issuer))
            return kf_fail(KF_E_INVALID, "the issuer certificate is not a CA");
    }

    x = X509_new();
    if (!x) return kf_ossl_fail(KF_E_NOMEM, "out of memory");
    if (!X509_set_version(x, X509_VERSION_3)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot set the version");
        goto out;
    }
    rc = set_random_serial(x);
    if (!rc) rc = set_subject(x, t);
    if (rc) goto out;
    if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->x509)
                                        : X509_get_subject_name(x)) ||
        !ASN1_TIME_set(X509_getm_notBefore(x), t->not_before) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), t->not_after)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot fill in the certificate");
        goto out;
    }
    if (t->key && !X509_set_pubkey(x, t->key->pkey)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot set the certificate's key");
        goto out;
    }
    if (!t->key) {
        rc = set_pubkey_from_spki(x, t->spki, t->spki_len);
        if (rc) goto out;
    }
    X509V3_set_ctx(&ctx, issuer ? issuer->x509 : x, x, NULL, NULL, 0);
    rc = add_profile_exts(x, &ctx, t);
    if (!rc) rc = add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    if (!rc && issuer) rc = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    if (!rc) rc = add_sans(x, t);
    if (rc) goto out;
    mctx = kf_key_sign_ctx(issuer_key);
    if (!mctx) {
        rc = kf_errlast();
        goto out;
    }
    if (X509_sign_ctx(x, mctx) <= 0) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot sign the %s certificate with the %s key",
                          kf_profile_name(t->profile), kf_key_location(issuer_key));
        goto out;
    }
    *out = kf_cert_wrap(x);
    x = NULL;
    rc = *out ? KF_OK : KF_E_NOMEM;
out:
    EVP_MD_CTX_free(mctx);
    X509_free(x);
    return rc;
}
