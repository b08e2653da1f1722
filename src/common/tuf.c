#include "common/tuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/buf.h"
#include "common/cjson.h"
#include "common/pki_key.h"

#define METADATA_MAX (4u << 20) /* no metadata file of keyfleet's comes near this */
#define KEYS_MAX     64         /* keys a root may list */
#define SIG_MAX      256        /* bytes of one signature */

static const char *const role_names[KF_TUF_ROLES] = {"root", "timestamp", "snapshot", "targets"};

const char *kf_tuf_role_name(enum kf_tuf_role r)
{
    return (unsigned)r < KF_TUF_ROLES ? role_names[r] : "?";
}

const char *kf_tuf_refusal_name(enum kf_tuf_refusal r)
{
    static const char *const names[] = {
        "ok",   "malformed", "signatures",     "rollback", "expired",  "mix_and_match",
        "hash", "too_long",  "unknown_target", "order",    "unchanged"};
    return (unsigned)r < KF_ARRAY_LEN(names) ? names[r] : "?";
}

/* Records the message and returns `r`. */
static enum kf_tuf_refusal refuse(enum kf_tuf_refusal r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static enum kf_tuf_refusal refuse(enum kf_tuf_refusal r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kf_fail(r == KF_TUF_MALFORMED ? KF_E_INVALID : KF_E_DENIED, "%s", msg);
    return r;
}

/* ---- small helpers ---- */

int kf_tuf_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (!len || len >= KF_TUF_PATH_MAX || n[0] == '/' || n[len - 1] == '/' || strstr(n, "//") ||
        strstr(n, ".."))
        return 0;
    return strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/+") == len;
}

void kf_tuf_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Decodes lower- or upper-case hex into `out` (at most `cap`); -1 when it is not hex. */
static long hex_to(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= (unsigned)(c - 'A' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return (long)(n / 2);
}

static int sha(const EVP_MD *md, const void *p, size_t n, unsigned char *out)
{
    unsigned len = 0;
    return EVP_Digest(p, n, out, &len, md, NULL) == 1;
}

/* "YYYY-MM-DDTHH:MM:SSZ" to a time; -1 when it is not one. */
static time_t parse_time(const char *s)
{
    struct tm tm;
    char tail = 0;
    memset(&tm, 0, sizeof(tm));
    if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z')
        return -1;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &tail) != 7 ||
        tail != 'Z' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

void kf_tuf_time(time_t when, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- keys ---- */

struct key {
    char keyid[KF_TUF_KEYID_HEX];
    EVP_PKEY *pk;
    int ecdsa;              /* 0: ed25519 */
    unsigned char spki[32]; /* SHA-256 of the DER public key: one key under two ids is one */
};

static EVP_PKEY *pem_public(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return pk;
}

/* A usable key from key object `k`, or 0 (a type or form keyfleet does not verify). */
static int key_from(const json_t *k, const char *keyid, struct key *out)
{
    const char *type = json_string_value(json_object_get(k, "keytype"));
    const char *scheme = json_string_value(json_object_get(k, "scheme"));
    const char *pub = json_string_value(json_object_get(json_object_get(k, "keyval"), "public"));
    char id[KF_TUF_KEYID_HEX];
    unsigned char *der = NULL;
    int der_len;

    memset(out, 0, sizeof(out[0]));
    if (!type || !scheme || !pub) return 0;
    if (kf_tuf_keyid(k, id) != KF_OK || strcmp(id, keyid) != 0) {
        kf_err_clear();
        return 0; /* an id that is not the key's own counts for nothing */
    }
    if (strcmp(type, "ed25519") == 0 && strcmp(scheme, "ed25519") == 0) {
        unsigned char raw[32];
        if (hex_to(pub, raw, sizeof(raw)) == 32)
            out->pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, sizeof(raw));
        else if (strncmp(pub, "-----BEGIN PUBLIC KEY-----", 26) == 0)
            out->pk = pem_public(pub);
        if (out->pk && EVP_PKEY_get_id(out->pk) != EVP_PKEY_ED25519) {
            EVP_PKEY_free(out->pk);
            out->pk = NULL;
        }
    } else if ((strcmp(type, "ecdsa") == 0 || strcmp(type, "ecdsa-sha2-nistp256") == 0) &&
               strcmp(scheme, "ecdsa-sha2-nistp256") == 0) {
        char curve[32] = "";
        out->pk = pem_public(pub);
        out->ecdsa = 1;
        if (out->pk &&
            (EVP_PKEY_get_id(out->pk) != EVP_PKEY_EC ||
             !EVP_PKEY_get_utf8_string_param(out->pk, "group", curve, sizeof(curve), NULL) ||
             strcmp(curve, "prime256v1") != 0)) {
            EVP_PKEY_free(out->pk);
            out->pk = NULL;
        }
    }
    if (!out->pk) return 0;
    der_len = i2d_PUBKEY(out->pk, &der);
    if (der_len <= 0 || !sha(EVP_sha256(), der, (size_t)der_len, out->spki)) {
        OPENSSL_free(der);
        EVP_PKEY_free(out->pk);
        out->pk = NULL;
        return 0;
    }
    OPENSSL_free(der);
    snprintf(out->keyid, sizeof(out->keyid), "%s", keyid);
    return 1;
}

static int verify_sig(const struct key *k, const struct kf_buf *msg, const unsigned char *sig,
                      size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx &&
             EVP_DigestVerifyInit(ctx, NULL, k->ecdsa ? EVP_sha256() : NULL, NULL, k->pk) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, msg->data, msg->len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* ---- the trusted set ---- */

struct role {
    char (*keyids)[KF_TUF_KEYID_HEX];
    size_t n;
    unsigned threshold;
};

struct root {
    struct key keys[KEYS_MAX];
    size_t n_keys;
    struct role roles[KF_TUF_ROLES];
    int consistent;
};

struct held {
    json_t *doc; /* the whole file, NULL: none trusted */
    int64_t version;
    time_t expires;
};

struct kf_tuf_trusted {
    struct root root;
    struct held held[KF_TUF_ROLES];
};

static void root_clear(struct root *r)
{
    for (size_t i = 0; i < r->n_keys; i++)
        EVP_PKEY_free(r->keys[i].pk);
    for (int i = 0; i < KF_TUF_ROLES; i++)
        free(r->roles[i].keyids);
    memset(r, 0, sizeof(*r));
}

void kf_tuf_trusted_free(struct kf_tuf_trusted *t)
{
    if (!t) return;
    root_clear(&t->root);
    for (int i = 0; i < KF_TUF_ROLES; i++)
        json_decref(t->held[i].doc);
    free(t);
}

static json_t *signed_of(const json_t *doc)
{
    return json_object_get(doc, "signed");
}

static int is_hex64(const char *s)
{
    unsigned char b[32];
    return s && strlen(s) == 64 && hex_to(s, b, sizeof(b)) == 32;
}

/* Refuses with the message made while `d` is still alive (the message may quote it), then frees it.
 */
#define FAIL_DOC(...)                                 \
    do {                                              \
        enum kf_tuf_refusal r_ = refuse(__VA_ARGS__); \
        json_decref(d);                               \
        return r_;                                    \
    } while (0)

enum kf_tuf_refusal kf_tuf_parse(const uint8_t *b, size_t len, enum kf_tuf_role role, json_t **doc,
                                 int64_t *version)
{
    json_error_t jerr;
    json_t *d, *s, *sigs, *v, *sig;
    const char *type, *spec, *expires;
    size_t i;

    *doc = NULL;
    if (len > METADATA_MAX)
        return refuse(KF_TUF_TOO_LONG, "%s metadata of %zu bytes: at most %u", role_names[role],
                      len, METADATA_MAX);
    d = json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!d || !json_is_object(d)) {
        FAIL_DOC(KF_TUF_MALFORMED, "%s metadata is not a JSON object (%s)", role_names[role],
                 jerr.text);
    }
    s = json_object_get(d, "signed");
    sigs = json_object_get(d, "signatures");
    type = json_string_value(json_object_get(s, "_type"));
    spec = json_string_value(json_object_get(s, "spec_version"));
    expires = json_string_value(json_object_get(s, "expires"));
    v = json_object_get(s, "version");
    if (json_object_size(d) != 2 || !json_is_object(s) || !json_is_array(sigs)) {
        FAIL_DOC(KF_TUF_MALFORMED, "%s metadata must be {\"signed\": ..., \"signatures\": [...]}",
                 role_names[role]);
    }
    if (!type || strcmp(type, role_names[role]) != 0) {
        FAIL_DOC(KF_TUF_MALFORMED, "expected %s metadata, got \"%.20s\"", role_names[role],
                 type ? type : "");
    }
    if (!spec || strncmp(spec, "1.", 2) != 0) {
        FAIL_DOC(KF_TUF_MALFORMED, "%s metadata: spec_version \"%.20s\" is not 1.x",
                 role_names[role], spec ? spec : "");
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        FAIL_DOC(KF_TUF_MALFORMED, "%s metadata: version must be a whole number from 1",
                 role_names[role]);
    }
    if (!expires || parse_time(expires) < 0) {
        FAIL_DOC(KF_TUF_MALFORMED, "%s metadata: expires must be YYYY-MM-DDTHH:MM:SSZ",
                 role_names[role]);
    }
    json_array_foreach(sigs, i, sig)
    {
        const char *keyid = json_string_value(json_object_get(sig, "keyid"));
        const char *hex = json_string_value(json_object_get(sig, "sig"));
        if (!is_hex64(keyid) || !hex || strlen(hex) > 2 * SIG_MAX) {
            FAIL_DOC(KF_TUF_MALFORMED, "%s metadata: signature %zu is not {\"keyid\", \"sig\"}",
                     role_names[role], i);
        }
    }
    *doc = d;
    *version = json_integer_value(v);
    return KF_TUF_OK;
}

/* Reads root metadata's keys and roles into `r`. */
static enum kf_tuf_refusal root_read(const json_t *doc, struct root *r)
{
    const json_t *s = signed_of(doc), *keys = json_object_get(s, "keys"),
                 *roles = json_object_get(s, "roles"),
                 *cs = json_object_get(s, "consistent_snapshot");
    const char *keyid;
    json_t *k;

    memset(r, 0, sizeof(*r));
    if (!json_is_object(keys) || !json_is_object(roles))
        return refuse(KF_TUF_MALFORMED, "root metadata without keys or roles");
    if (json_object_size(keys) > KEYS_MAX)
        return refuse(KF_TUF_MALFORMED, "root metadata lists more than %d keys", KEYS_MAX);
    if (cs && !json_is_boolean(cs))
        return refuse(KF_TUF_MALFORMED, "root metadata: consistent_snapshot must be true or false");
    r->consistent = json_is_true(cs);
    json_object_foreach((json_t *)keys, keyid, k)
    {
        if (!json_is_object(k)) {
            root_clear(r);
            return refuse(KF_TUF_MALFORMED, "root metadata: key %.64s is not an object", keyid);
        }
        if (key_from(k, keyid, &r->keys[r->n_keys])) r->n_keys++;
    }
    for (int i = 0; i < KF_TUF_ROLES; i++) {
        const json_t *role = json_object_get(roles, role_names[i]),
                     *ids = json_object_get(role, "keyids"),
                     *th = json_object_get(role, "threshold"), *id;
        size_t j;
        if (!json_is_array(ids) || !json_is_integer(th) || json_integer_value(th) < 1 ||
            json_integer_value(th) > KEYS_MAX || json_array_size(ids) > KEYS_MAX) {
            root_clear(r);
            return refuse(KF_TUF_MALFORMED,
                          "root metadata: role %s needs keyids and a threshold from 1 to %d",
                          role_names[i], KEYS_MAX);
        }
        r->roles[i].threshold = (unsigned)json_integer_value(th);
        r->roles[i].keyids = calloc(json_array_size(ids) + 1, sizeof(*r->roles[i].keyids));
        if (!r->roles[i].keyids) {
            root_clear(r);
            return refuse(KF_TUF_MALFORMED, "out of memory");
        }
        json_array_foreach(ids, j, id)
        {
            if (!is_hex64(json_string_value(id))) {
                root_clear(r);
                return refuse(KF_TUF_MALFORMED, "root metadata: role %s has a bad key id",
                              role_names[i]);
            }
            snprintf(r->roles[i].keyids[r->roles[i].n++], KF_TUF_KEYID_HEX, "%s",
                     json_string_value(id));
        }
    }
    return KF_TUF_OK;
}

/* Whether a threshold of `role`'s keys in `r` signed `doc`: each key counted once. */
static enum kf_tuf_refusal verify_role(const struct root *r, enum kf_tuf_role role,
                                       const json_t *doc, const char *what)
{
    const struct role *ro = &r->roles[role];
    const struct key *counted[KEYS_MAX];
    size_t n_counted = 0, i;
    struct kf_buf msg;
    json_t *sig;

    kf_buf_init(&msg, METADATA_MAX);
    if (kf_cjson_encode(signed_of(doc), &msg) != KF_OK) {
        kf_buf_free(&msg);
        return refuse(KF_TUF_MALFORMED, "%s metadata has no canonical form (%s)", what,
                      kf_errmsg());
    }
    json_array_foreach(json_object_get(doc, "signatures"), i, sig)
    {
        const char *keyid = json_string_value(json_object_get(sig, "keyid"));
        unsigned char raw[SIG_MAX];
        long n = hex_to(json_string_value(json_object_get(sig, "sig")), raw, sizeof(raw));
        const struct key *k = NULL;
        int listed = 0, again = 0;
        for (size_t j = 0; j < ro->n; j++)
            listed |= strcmp(ro->keyids[j], keyid) == 0;
        for (size_t j = 0; listed && j < r->n_keys; j++)
            if (strcmp(r->keys[j].keyid, keyid) == 0) k = &r->keys[j];
        if (!k || n <= 0) continue;
        for (size_t j = 0; j < n_counted; j++)
            again |= memcmp(counted[j]->spki, k->spki, sizeof(k->spki)) == 0;
        if (again || n_counted >= KEYS_MAX) continue;
        if (verify_sig(k, &msg, raw, (size_t)n)) counted[n_counted++] = k;
    }
    kf_buf_free(&msg);
    if (n_counted < ro->threshold)
        return refuse(KF_TUF_SIGNATURES,
                      "%s metadata has %zu good signatures of %s keys: %u needed", what, n_counted,
                      role_names[role], ro->threshold);
    return KF_TUF_OK;
}

static time_t expires_of(const json_t *doc)
{
    return parse_time(json_string_value(json_object_get(signed_of(doc), "expires")));
}

enum kf_tuf_refusal kf_tuf_trusted_new(const uint8_t *root, size_t len, struct kf_tuf_trusted **out)
{
    struct kf_tuf_trusted *t = calloc(1, sizeof(*t));
    enum kf_tuf_refusal r;
    json_t *doc = NULL;
    int64_t version;

    *out = NULL;
    if (!t) return refuse(KF_TUF_MALFORMED, "out of memory");
    r = kf_tuf_parse(root, len, KF_TUF_ROOT, &doc, &version);
    if (!r) r = root_read(doc, &t->root);
    if (!r) r = verify_role(&t->root, KF_TUF_ROOT, doc, "the trusted root");
    if (r) {
        json_decref(doc);
        kf_tuf_trusted_free(t);
        return r;
    }
    t->held[KF_TUF_ROOT] = (struct held){doc, version, expires_of(doc)};
    *out = t;
    return KF_TUF_OK;
}

enum kf_tuf_refusal kf_tuf_verify_role(const uint8_t *root, size_t root_len, enum kf_tuf_role role,
                                       const uint8_t *b, size_t len, int64_t *version)
{
    struct root r;
    json_t *rdoc = NULL, *doc = NULL;
    int64_t rv;
    enum kf_tuf_refusal v = kf_tuf_parse(root, root_len, KF_TUF_ROOT, &rdoc, &rv);
    if (!v) v = root_read(rdoc, &r);
    if (v) {
        json_decref(rdoc);
        return v;
    }
    v = kf_tuf_parse(b, len, role, &doc, version);
    if (!v) v = verify_role(&r, role, doc, role_names[role]);
    root_clear(&r);
    json_decref(rdoc);
    json_decref(doc);
    return v;
}

enum kf_tuf_refusal kf_tuf_update_root(struct kf_tuf_trusted *t, const uint8_t *b, size_t len)
{
    struct root next;
    enum kf_tuf_refusal r;
    json_t *doc = NULL;
    int64_t version;

    if (t->held[KF_TUF_TIMESTAMP].doc)
        return refuse(KF_TUF_ORDER, "the root cannot change after the timestamp was trusted");
    r = kf_tuf_parse(b, len, KF_TUF_ROOT, &doc, &version);
    if (r) return r;
    /* Signed by a threshold of the keys trusted now ... */
    r = verify_role(&t->root, KF_TUF_ROOT, doc, "the new root (by the trusted root's keys)");
    if (!r && version != t->held[KF_TUF_ROOT].version + 1)
        r = refuse(KF_TUF_ROLLBACK, "root version %lld follows %lld: only %lld may",
                   (long long)version, (long long)t->held[KF_TUF_ROOT].version,
                   (long long)t->held[KF_TUF_ROOT].version + 1);
    /* ... and by a threshold of its own. */
    if (!r) r = root_read(doc, &next);
    if (!r) {
        r = verify_role(&next, KF_TUF_ROOT, doc, "the new root (by its own keys)");
        if (r) root_clear(&next);
    }
    if (r) {
        json_decref(doc);
        return r;
    }
    root_clear(&t->root);
    t->root = next;
    json_decref(t->held[KF_TUF_ROOT].doc);
    t->held[KF_TUF_ROOT] = (struct held){doc, version, expires_of(doc)};
    return KF_TUF_OK;
}

enum kf_tuf_refusal kf_tuf_root_done(struct kf_tuf_trusted *t, time_t now)
{
    if (now >= t->held[KF_TUF_ROOT].expires)
        return refuse(KF_TUF_EXPIRED, "the root metadata (version %lld) has expired",
                      (long long)t->held[KF_TUF_ROOT].version);
    return KF_TUF_OK;
}

/* What metadata `from` says of the file `name`: version, and length and hashes when given. */
static enum kf_tuf_refusal meta_entry(const json_t *from, const char *what, const char *name,
                                      int64_t *version, const json_t **entry)
{
    const json_t *e = json_object_get(json_object_get(signed_of(from), "meta"), name),
                 *v = json_object_get(e, "version"), *l = json_object_get(e, "length"),
                 *h = json_object_get(e, "hashes");
    if (!json_is_object(e) || !json_is_integer(v) || json_integer_value(v) < 1 ||
        (l && (!json_is_integer(l) || json_integer_value(l) < 0)) || (h && !json_is_object(h)))
        return refuse(KF_TUF_MALFORMED, "%s metadata does not describe %s", what, name);
    *version = json_integer_value(v);
    *entry = e;
    return KF_TUF_OK;
}

/* The bytes of a file against the length and hashes an entry gives (those it gives). */
static enum kf_tuf_refusal check_file(const json_t *entry, const char *name, const uint8_t *b,
                                      size_t len)
{
    const json_t *l = json_object_get(entry, "length"), *h = json_object_get(entry, "hashes");
    static const struct {
        const char *name;
        size_t n;
    } algs[] = {{"sha256", 32}, {"sha512", 64}};
    if (l && (uint64_t)json_integer_value(l) != len)
        return refuse(KF_TUF_HASH, "%s has %zu bytes, not the %lld the metadata gives", name, len,
                      (long long)json_integer_value(l));
    if (h && !json_string_value(json_object_get(h, "sha256")) &&
        !json_string_value(json_object_get(h, "sha512")))
        return refuse(KF_TUF_HASH, "%s: hashes given, but no sha256 or sha512 to check", name);
    for (size_t i = 0; h && i < KF_ARRAY_LEN(algs); i++) {
        const char *want = json_string_value(json_object_get(h, algs[i].name));
        unsigned char got[64];
        char hex[129];
        if (!want) continue;
        sha(i ? EVP_sha512() : EVP_sha256(), b, len, got);
        kf_tuf_hex(got, algs[i].n, hex);
        if (strcasecmp(want, hex) != 0)
            return refuse(KF_TUF_HASH, "%s: its %s is not the one the metadata gives", name,
                          algs[i].name);
    }
    return KF_TUF_OK;
}

/* Parses and verifies a timestamp, snapshot or targets file by the trusted root. */
static enum kf_tuf_refusal take(struct kf_tuf_trusted *t, enum kf_tuf_role role, const uint8_t *b,
                                size_t len, json_t **doc, int64_t *version)
{
    enum kf_tuf_refusal r = kf_tuf_parse(b, len, role, doc, version);
    if (!r) r = verify_role(&t->root, role, *doc, role_names[role]);
    if (r) {
        json_decref(*doc);
        *doc = NULL;
    }
    return r;
}

static void hold(struct kf_tuf_trusted *t, enum kf_tuf_role role, json_t *doc, int64_t version)
{
    json_decref(t->held[role].doc);
    t->held[role] = (struct held){doc, version, expires_of(doc)};
}

static enum kf_tuf_refusal check_expiry(const struct kf_tuf_trusted *t, enum kf_tuf_role role,
                                        time_t now)
{
    if (now >= t->held[role].expires)
        return refuse(KF_TUF_EXPIRED, "the %s metadata (version %lld) has expired",
                      role_names[role], (long long)t->held[role].version);
    return KF_TUF_OK;
}

enum kf_tuf_refusal kf_tuf_update_timestamp(struct kf_tuf_trusted *t, const uint8_t *b, size_t len,
                                            time_t now)
{
    const struct held *old = &t->held[KF_TUF_TIMESTAMP];
    const json_t *entry;
    int64_t version, snap_new, snap_old;
    enum kf_tuf_refusal r;
    json_t *doc = NULL;

    if (t->held[KF_TUF_SNAPSHOT].doc)
        return refuse(KF_TUF_ORDER, "the timestamp cannot change after the snapshot was trusted");
    r = take(t, KF_TUF_TIMESTAMP, b, len, &doc, &version);
    if (!r) r = meta_entry(doc, "timestamp", "snapshot.json", &snap_new, &entry);
    if (!r && old->doc) {
        if (version < old->version)
            r = refuse(KF_TUF_ROLLBACK, "timestamp version %lld is older than the trusted %lld",
                       (long long)version, (long long)old->version);
        else if (version == old->version)
            r = KF_TUF_UNCHANGED;
        else if (meta_entry(old->doc, "timestamp", "snapshot.json", &snap_old, &entry) ==
                     KF_TUF_OK &&
                 snap_new < snap_old)
            r = refuse(KF_TUF_ROLLBACK,
                       "the timestamp names snapshot version %lld, older than the trusted %lld",
                       (long long)snap_new, (long long)snap_old);
    }
    if (r) {
        json_decref(doc);
        return r;
    }
    hold(t, KF_TUF_TIMESTAMP, doc, version);
    return check_expiry(t, KF_TUF_TIMESTAMP, now);
}

enum kf_tuf_refusal kf_tuf_update_snapshot(struct kf_tuf_trusted *t, const uint8_t *b, size_t len,
                                           time_t now, int local)
{
    const struct held *old = &t->held[KF_TUF_SNAPSHOT];
    const json_t *entry, *meta;
    int64_t version, want;
    enum kf_tuf_refusal r;
    const char *name;
    json_t *doc = NULL, *e;

    if (!t->held[KF_TUF_TIMESTAMP].doc)
        return refuse(KF_TUF_ORDER, "no trusted timestamp to check the snapshot against");
    if (t->held[KF_TUF_TARGETS].doc)
        return refuse(KF_TUF_ORDER, "the snapshot cannot change after the targets were trusted");
    r = check_expiry(t, KF_TUF_TIMESTAMP, now);
    if (!r)
        r = meta_entry(t->held[KF_TUF_TIMESTAMP].doc, "timestamp", "snapshot.json", &want, &entry);
    if (!r && !local) r = check_file(entry, "snapshot.json", b, len);
    if (!r) r = take(t, KF_TUF_SNAPSHOT, b, len, &doc, &version);
    if (r) return r;
    meta = json_object_get(signed_of(doc), "meta");
    if (!json_is_object(meta) || !json_is_object(json_object_get(meta, "targets.json"))) {
        json_decref(doc);
        return refuse(KF_TUF_MALFORMED, "snapshot metadata does not describe targets.json");
    }
    /* No file the trusted snapshot lists may go, or go back. */
    json_object_foreach(old->doc ? json_object_get(signed_of(old->doc), "meta") : NULL, name, e)
    {
        int64_t was = json_integer_value(json_object_get(e, "version")), now_v;
        const json_t *ne = json_object_get(meta, name);
        now_v = json_integer_value(json_object_get(ne, "version"));
        if (!ne || now_v < was) {
            json_decref(doc);
            return refuse(KF_TUF_ROLLBACK, "the snapshot takes %s back from version %lld", name,
                          (long long)was);
        }
    }
    hold(t, KF_TUF_SNAPSHOT, doc, version);
    if (version != want)
        return refuse(KF_TUF_MIX_AND_MATCH, "snapshot version %lld, but the timestamp names %lld",
                      (long long)version, (long long)want);
    return check_expiry(t, KF_TUF_SNAPSHOT, now);
}

enum kf_tuf_refusal kf_tuf_update_targets(struct kf_tuf_trusted *t, const uint8_t *b, size_t len,
                                          time_t now, int local)
{
    const json_t *entry, *targets;
    int64_t version, want;
    enum kf_tuf_refusal r;
    json_t *doc = NULL;

    if (!t->held[KF_TUF_SNAPSHOT].doc)
        return refuse(KF_TUF_ORDER, "no trusted snapshot to check the targets against");
    /* The snapshot held must be the one the timestamp names (one kept only to bound what comes
     * next, refused as mix-and-match, does not count). */
    r = meta_entry(t->held[KF_TUF_TIMESTAMP].doc, "timestamp", "snapshot.json", &want, &entry);
    if (!r && want != t->held[KF_TUF_SNAPSHOT].version)
        r = refuse(KF_TUF_MIX_AND_MATCH,
                   "the trusted snapshot is version %lld, the timestamp names %lld",
                   (long long)t->held[KF_TUF_SNAPSHOT].version, (long long)want);
    if (r) return r;
    r = check_expiry(t, KF_TUF_SNAPSHOT, now);
    if (!r) r = meta_entry(t->held[KF_TUF_SNAPSHOT].doc, "snapshot", "targets.json", &want, &entry);
    if (!r && !local) r = check_file(entry, "targets.json", b, len);
    if (!r) r = take(t, KF_TUF_TARGETS, b, len, &doc, &version);
    if (r) return r;
    targets = json_object_get(signed_of(doc), "targets");
    if (!json_is_object(targets)) {
        json_decref(doc);
        return refuse(KF_TUF_MALFORMED, "targets metadata without targets");
    }
    if (version != want) {
        json_decref(doc);
        return refuse(KF_TUF_MIX_AND_MATCH, "targets version %lld, but the snapshot names %lld",
                      (long long)version, (long long)want);
    }
    hold(t, KF_TUF_TARGETS, doc, version);
    return check_expiry(t, KF_TUF_TARGETS, now);
}

int64_t kf_tuf_version(const struct kf_tuf_trusted *t, enum kf_tuf_role role)
{
    return t->held[role].doc ? t->held[role].version : 0;
}

time_t kf_tuf_expires(const struct kf_tuf_trusted *t, enum kf_tuf_role role)
{
    return t->held[role].doc ? t->held[role].expires : 0;
}

int kf_tuf_consistent_snapshot(const struct kf_tuf_trusted *t)
{
    return t->root.consistent;
}

enum kf_tuf_refusal kf_tuf_meta_of(const struct kf_tuf_trusted *t, enum kf_tuf_role role,
                                   int64_t *version, uint64_t *length)
{
    const json_t *entry;
    enum kf_tuf_refusal r;
    *version = 0;
    *length = 0;
    if (role == KF_TUF_SNAPSHOT && t->held[KF_TUF_TIMESTAMP].doc)
        r = meta_entry(t->held[KF_TUF_TIMESTAMP].doc, "timestamp", "snapshot.json", version,
                       &entry);
    else if (role == KF_TUF_TARGETS && t->held[KF_TUF_SNAPSHOT].doc)
        r = meta_entry(t->held[KF_TUF_SNAPSHOT].doc, "snapshot", "targets.json", version, &entry);
    else
        return refuse(KF_TUF_ORDER, "nothing trusted names the %s file", role_names[role]);
    if (!r && json_object_get(entry, "length"))
        *length = (uint64_t)json_integer_value(json_object_get(entry, "length"));
    return r;
}

/* ---- targets ---- */

enum kf_tuf_refusal kf_tuf_target_of(const char *path, const json_t *e, struct kf_tuf_target *out)
{
    const json_t *l = json_object_get(e, "length"), *h = json_object_get(e, "hashes"),
                 *c = json_object_get(e, "custom");
    const char *h256 = json_string_value(json_object_get(h, "sha256")),
               *h512 = json_string_value(json_object_get(h, "sha512"));
    memset(out, 0, sizeof(*out));
    if (strlen(path) >= sizeof(out->path) || !json_is_integer(l) || json_integer_value(l) < 0 ||
        !json_is_object(h) || (c && !json_is_object(c)))
        return refuse(KF_TUF_MALFORMED, "target %.80s: needs a length and hashes", path);
    snprintf(out->path, sizeof(out->path), "%s", path);
    out->length = (uint64_t)json_integer_value(l);
    if (h256) {
        if (hex_to(h256, out->sha256, sizeof(out->sha256)) != 32)
            return refuse(KF_TUF_MALFORMED, "target %.80s: a bad sha256", path);
        out->has_sha256 = 1;
    }
    if (h512) {
        if (hex_to(h512, out->sha512, sizeof(out->sha512)) != 64)
            return refuse(KF_TUF_MALFORMED, "target %.80s: a bad sha512", path);
        out->has_sha512 = 1;
    }
    if (!out->has_sha256 && !out->has_sha512)
        return refuse(KF_TUF_MALFORMED, "target %.80s: no sha256 or sha512 hash", path);
    out->custom = c;
    return KF_TUF_OK;
}

enum kf_tuf_refusal kf_tuf_target(const struct kf_tuf_trusted *t, const char *path,
                                  struct kf_tuf_target *out)
{
    const json_t *e;
    memset(out, 0, sizeof(*out));
    if (!t->held[KF_TUF_TARGETS].doc) return refuse(KF_TUF_ORDER, "no trusted targets metadata");
    e = json_object_get(json_object_get(signed_of(t->held[KF_TUF_TARGETS].doc), "targets"), path);
    if (!e) return refuse(KF_TUF_UNKNOWN, "no target %.80s", path);
    return kf_tuf_target_of(path, e, out);
}

struct sorted {
    const char *path;
    const json_t *e;
};

static int by_path(const void *a, const void *b)
{
    return strcmp(((const struct sorted *)a)->path, ((const struct sorted *)b)->path);
}

void kf_tuf_targets_each(const struct kf_tuf_trusted *t,
                         void (*cb)(const struct kf_tuf_target *tg, void *arg), void *arg)
{
    const json_t *all;
    struct sorted *s;
    const char *path;
    json_t *e;
    size_t n = 0;

    if (!t->held[KF_TUF_TARGETS].doc) return;
    all = json_object_get(signed_of(t->held[KF_TUF_TARGETS].doc), "targets");
    s = calloc(json_object_size(all) + 1, sizeof(*s));
    if (!s) return;
    json_object_foreach((json_t *)all, path, e) s[n++] = (struct sorted){path, e};
    qsort(s, n, sizeof(*s), by_path);
    for (size_t i = 0; i < n; i++) {
        struct kf_tuf_target tg;
        if (kf_tuf_target_of(s[i].path, s[i].e, &tg) == KF_TUF_OK) cb(&tg, arg);
    }
    kf_err_clear();
    free(s);
}

enum kf_err kf_tuf_stream_init(struct kf_tuf_stream *s, const struct kf_tuf_target *target)
{
    memset(s, 0, sizeof(*s));
    s->target = *target;
    if (target->has_sha256 &&
        (!(s->sha256 = EVP_MD_CTX_new()) || EVP_DigestInit_ex(s->sha256, EVP_sha256(), NULL) != 1))
        goto fail;
    if (target->has_sha512 &&
        (!(s->sha512 = EVP_MD_CTX_new()) || EVP_DigestInit_ex(s->sha512, EVP_sha512(), NULL) != 1))
        goto fail;
    return KF_OK;
fail:
    kf_tuf_stream_free(s);
    return kf_fail(KF_E_CRYPTO, "cannot start the target's hashes");
}

enum kf_tuf_refusal kf_tuf_stream_update(struct kf_tuf_stream *s, const void *p, size_t n)
{
    if (n > s->target.length - s->seen)
        return refuse(KF_TUF_TOO_LONG, "target %.80s: more than its %llu bytes", s->target.path,
                      (unsigned long long)s->target.length);
    s->seen += n;
    if ((s->sha256 && EVP_DigestUpdate(s->sha256, p, n) != 1) ||
        (s->sha512 && EVP_DigestUpdate(s->sha512, p, n) != 1))
        return refuse(KF_TUF_HASH, "target %.80s: cannot hash", s->target.path);
    return KF_TUF_OK;
}

enum kf_tuf_refusal kf_tuf_stream_final(struct kf_tuf_stream *s)
{
    unsigned char got[64];
    unsigned len = 0;
    enum kf_tuf_refusal r = KF_TUF_OK;
    if (s->seen != s->target.length)
        r = refuse(KF_TUF_HASH, "target %.80s: %llu bytes of %llu", s->target.path,
                   (unsigned long long)s->seen, (unsigned long long)s->target.length);
    if (!r && s->sha256 &&
        (EVP_DigestFinal_ex(s->sha256, got, &len) != 1 || len != 32 ||
         CRYPTO_memcmp(got, s->target.sha256, 32) != 0))
        r = refuse(KF_TUF_HASH, "target %.80s: its sha256 is not the signed one", s->target.path);
    if (!r && s->sha512 &&
        (EVP_DigestFinal_ex(s->sha512, got, &len) != 1 || len != 64 ||
         CRYPTO_memcmp(got, s->target.sha512, 64) != 0))
        r = refuse(KF_TUF_HASH, "target %.80s: its sha512 is not the signed one", s->target.path);
    kf_tuf_stream_free(s);
    return r;
}

void kf_tuf_stream_free(struct kf_tuf_stream *s)
{
    EVP_MD_CTX_free(s->sha256);
    EVP_MD_CTX_free(s->sha512);
    s->sha256 = s->sha512 = NULL;
}

/* ---- making metadata ---- */

enum kf_err kf_tuf_keyid(const json_t *key, char keyid[KF_TUF_KEYID_HEX])
{
    struct kf_buf b;
    unsigned char h[32];
    enum kf_err rc;
    kf_buf_init(&b, 64 * 1024);
    rc = kf_cjson_encode(key, &b);
    if (!rc && !sha(EVP_sha256(), b.data, b.len, h)) rc = kf_fail(KF_E_CRYPTO, "SHA-256 failed");
    if (!rc) kf_tuf_hex(h, sizeof(h), keyid);
    kf_buf_free(&b);
    return rc;
}

enum kf_err kf_tuf_key_of(EVP_PKEY *pk, json_t **key, char keyid[KF_TUF_KEYID_HEX])
{
    *key = NULL;
    if (EVP_PKEY_get_id(pk) == EVP_PKEY_ED25519) {
        unsigned char raw[32];
        char hex[65];
        size_t n = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(pk, raw, &n) != 1 || n != 32)
            return kf_fail(KF_E_CRYPTO, "cannot read the ed25519 public key");
        kf_tuf_hex(raw, 32, hex);
        *key = json_pack("{s:s, s:s, s:{s:s}}", "keytype", "ed25519", "scheme", "ed25519", "keyval",
                         "public", hex);
    } else if (EVP_PKEY_get_id(pk) == EVP_PKEY_EC) {
        char curve[32] = "", *pem = NULL;
        BIO *bio = BIO_new(BIO_s_mem());
        long n;
        if (!EVP_PKEY_get_utf8_string_param(pk, "group", curve, sizeof(curve), NULL) ||
            strcmp(curve, "prime256v1") != 0) {
            BIO_free(bio);
            return kf_fail(KF_E_INVALID, "an ECDSA key for TUF must be on P-256");
        }
        if (!bio || PEM_write_bio_PUBKEY(bio, pk) != 1) {
            BIO_free(bio);
            return kf_fail(KF_E_CRYPTO, "cannot write the public key");
        }
        n = BIO_get_mem_data(bio, &pem);
        *key = json_pack("{s:s, s:s, s:{s:s%}}", "keytype", "ecdsa", "scheme",
                         "ecdsa-sha2-nistp256", "keyval", "public", pem, (size_t)n);
        BIO_free(bio);
    } else {
        return kf_fail(KF_E_INVALID, "TUF keys are ed25519 or ECDSA P-256");
    }
    if (!*key) return kf_fail(KF_E_NOMEM, "out of memory");
    return kf_tuf_keyid(*key, keyid);
}

enum kf_err kf_tuf_sign_pkey(const uint8_t *msg, size_t len, uint8_t *sig, size_t *siglen,
                             void *arg)
{
    EVP_PKEY *pk = arg;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ecdsa = EVP_PKEY_get_id(pk) == EVP_PKEY_EC;
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, ecdsa ? EVP_sha256() : NULL, NULL, pk) == 1 &&
             EVP_DigestSign(ctx, sig, siglen, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? KF_OK : kf_fail(KF_E_CRYPTO, "cannot sign the metadata");
}

enum kf_err kf_tuf_sign_key(const uint8_t *msg, size_t len, uint8_t *sig, size_t *siglen, void *arg)
{
    struct kf_buf b;
    enum kf_err rc;
    kf_buf_init(&b, SIG_MAX);
    rc = kf_key_sign(arg, msg, len, &b);
    if (!rc && b.len > *siglen) rc = kf_fail(KF_E_OVERSIZE, "the signature is too long");
    if (!rc) {
        memcpy(sig, b.data, b.len);
        *siglen = b.len;
    }
    kf_buf_free(&b);
    return rc;
}

enum kf_err kf_tuf_sign_with(json_t *doc, const char *keyid, kf_tuf_sign_cb sign, void *arg)
{
    json_t *sigs = json_object_get(doc, "signatures"), *s;
    unsigned char sig[SIG_MAX];
    char hex[2 * SIG_MAX + 1];
    size_t siglen = sizeof(sig), i;
    struct kf_buf msg;
    enum kf_err rc;

    if (!json_is_object(signed_of(doc)) || !json_is_array(sigs))
        return kf_fail(KF_E_INVALID, "not metadata: {\"signed\": ..., \"signatures\": [...]}");
    kf_buf_init(&msg, METADATA_MAX);
    rc = kf_cjson_encode(signed_of(doc), &msg);
    if (!rc) rc = sign(msg.data, msg.len, sig, &siglen, arg);
    kf_buf_free(&msg);
    if (rc) return rc;
    kf_tuf_hex(sig, siglen, hex);
    json_array_foreach(sigs, i, s)
    {
        const char *has = json_string_value(json_object_get(s, "keyid"));
        if (has && strcmp(has, keyid) == 0) {
            json_array_remove(sigs, i);
            break;
        }
    }
    if (json_array_append_new(sigs, json_pack("{s:s, s:s}", "keyid", keyid, "sig", hex)) != 0)
        return kf_fail(KF_E_NOMEM, "out of memory");
    return KF_OK;
}

enum kf_err kf_tuf_sign(json_t *doc, EVP_PKEY *key)
{
    char keyid[KF_TUF_KEYID_HEX];
    json_t *k = NULL;
    enum kf_err rc = kf_tuf_key_of(key, &k, keyid);
    json_decref(k);
    return rc ? rc : kf_tuf_sign_with(doc, keyid, kf_tuf_sign_pkey, key);
}

enum kf_err kf_tuf_text(const json_t *doc, struct kf_buf *out)
{
    char *text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
    enum kf_err rc;
    if (!text) return kf_fail(KF_E_NOMEM, "out of memory");
    rc = kf_buf_append_str(out, text);
    if (!rc) rc = kf_buf_append(out, "\n", 1);
    free(text);
    return rc;
}
