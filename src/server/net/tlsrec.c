/* TLS 1.3 application records after OpenSSL's handshake (RFC 8446 sections 5, 7.1, 4.6.3). */
#include "server/net/tlsrec.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "common/ossl.h"

#define REC_MAX_PLAIN  16384
#define REC_MAX_CIPHER (16384 + 256)
#define TAG_LEN        16
#define IV_LEN         12

struct dir {
    EVP_CIPHER_CTX *ctx;
    uint8_t secret[48];
    uint8_t iv[IV_LEN];
    uint64_t seq;
};

struct kf_tlsrec {
    const EVP_CIPHER *cipher; /* fetched once for the process (algs) */
    const char *md;
    size_t key_len, secret_len;
    struct dir rd, wr;
    uint8_t fail_alert; /* the fatal alert the last refused record calls for (0: none) */
};

/* TLS alert descriptions (RFC 8446 6) for what a refused record calls for. */
enum {
    ALERT_UNEXPECTED_MESSAGE = 10,
    ALERT_BAD_RECORD_MAC = 20,
    ALERT_RECORD_OVERFLOW = 22,
    ALERT_INTERNAL_ERROR = 80,
};

static struct kf_tlsrec_watch *(*watch_of)(const SSL *ssl);

/* ---- watching OpenSSL's handshake ---- */

static int nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Hex digits up to a blank or the end into out[0..cap); -1 on anything else. (Every handshake
 * comes through here twice: no sscanf per byte.) */
static int unhex(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    size_t i = 0;
    while (s[0] && s[0] != ' ' && s[0] != '\n') {
        int hi = nibble(s[0]), lo = hi < 0 ? -1 : nibble(s[1]);
        if (i == cap || lo < 0) return -1;
        out[i++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    *n = i;
    return 0;
}

static void keylog_cb(const SSL *ssl, const char *line)
{
    struct kf_tlsrec_watch *w = watch_of ? watch_of(ssl) : NULL;
    const char *sp;
    uint8_t *dst;
    int bit;
    size_t n = 0;
    if (!w) return;
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) {
        dst = w->client_secret;
        bit = 1;
    } else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) {
        dst = w->server_secret;
        bit = 2;
    } else {
        return;
    }
    sp = strchr(line + 24, ' '); /* after the client random */
    if (!sp || unhex(sp + 1, dst, 48, &n) || (n != 32 && n != 48)) {
        w->unsafe = 1;
        return;
    }
    w->secret_len = (uint8_t)n;
    w->have |= (uint8_t)bit;
}

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    struct kf_tlsrec_watch *w = watch_of ? watch_of(ssl) : NULL;
    const uint8_t *b = buf;
    (void)version;
    (void)arg;
    if (!w) return;
    if (content_type == SSL3_RT_HEADER) {
        /* the record header comes before its content: a Finished's own record is not counted */
        if (write_p && w->write_epoch) w->write_seq++;
        if (!write_p && w->read_epoch) w->read_seq++;
        return;
    }
    if (content_type != SSL3_RT_HANDSHAKE || len < 1) return;
    if (b[0] == SSL3_MT_FINISHED) {
        if (write_p)
            w->write_epoch = 1;
        else
            w->read_epoch = 1;
    } else if (b[0] == SSL3_MT_KEY_UPDATE) {
        w->unsafe = 1; /* keys moved on inside OpenSSL: not followed */
    }
}

void kf_tlsrec_install(SSL_CTX *ctx, struct kf_tlsrec_watch *(*get)(const SSL *ssl))
{
    watch_of = get;
    SSL_CTX_set_keylog_callback(ctx, keylog_cb);
    SSL_CTX_set_msg_callback(ctx, msg_cb);
}

/*
 * The algorithms, fetched once: a takeover keys two directions (four HKDF expansions, two cipher
 * inits), and fetching them each time costs the provider store's locks and lookups every time.
 */
static struct {
    EVP_KDF *hkdf;
    EVP_CIPHER *aes128gcm, *aes256gcm, *chacha;
} algs;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

static void algs_free(void)
{
    EVP_KDF_free(algs.hkdf);
    EVP_CIPHER_free(algs.aes128gcm);
    EVP_CIPHER_free(algs.aes256gcm);
    EVP_CIPHER_free(algs.chacha);
    memset(&algs, 0, sizeof(algs));
}

static void algs_fetch(void)
{
    algs.hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    algs.aes128gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    algs.aes256gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    algs.chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    /* before OpenSSL tears itself down (see tpm2_cleanup in common/ossl.c) */
    if (!OPENSSL_atexit(algs_free)) atexit(algs_free);
}

/* The suite's hash name, cipher and key length; NULL for a suite tlsrec does not carry (or whose
 * algorithms this OpenSSL lacks). */
static const char *suite_by_name(const char *name, const EVP_CIPHER **cipher, size_t *key_len)
{
    pthread_once(&algs_once, algs_fetch);
    if (!algs.hkdf) return NULL;
    if (strcmp(name, "TLS_AES_128_GCM_SHA256") == 0) {
        *cipher = algs.aes128gcm;
        *key_len = 16;
        return *cipher ? "SHA256" : NULL;
    }
    if (strcmp(name, "TLS_AES_256_GCM_SHA384") == 0) {
        *cipher = algs.aes256gcm;
        *key_len = 32;
        return *cipher ? "SHA384" : NULL;
    }
    if (strcmp(name, "TLS_CHACHA20_POLY1305_SHA256") == 0) {
        *cipher = algs.chacha;
        *key_len = 32;
        return *cipher ? "SHA256" : NULL;
    }
    return NULL;
}

static const char *suite_name(const SSL *ssl)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    return c ? SSL_CIPHER_standard_name(c) : "";
}

static const char *suite_md(const SSL *ssl, const EVP_CIPHER **cipher, size_t *key_len)
{
    return suite_by_name(suite_name(ssl), cipher, key_len);
}

int kf_tlsrec_ready(SSL *ssl, const struct kf_tlsrec_watch *w)
{
    const EVP_CIPHER *c;
    size_t kl;
    return SSL_version(ssl) == TLS1_3_VERSION && suite_md(ssl, &c, &kl) && w->have == 3 &&
           !w->unsafe && w->read_epoch && w->write_epoch && !SSL_has_pending(ssl) &&
           SSL_want(ssl) == SSL_NOTHING && SSL_is_init_finished(ssl);
}

/* ---- keys ---- */

/* HKDF-Expand-Label(secret, label, "", n) of RFC 8446 section 7.1. */
static int expand_label(const char *md, const uint8_t *secret, size_t slen, const char *label,
                        uint8_t *out, size_t n)
{
    uint8_t info[2 + 1 + 6 + 32 + 1];
    size_t ll = strlen(label), il = 0;
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(algs.hkdf); /* fetched by suite_by_name, before any key */
    OSSL_PARAM p[5];
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ok;
    info[il++] = (uint8_t)(n >> 8);
    info[il++] = (uint8_t)n;
    info[il++] = (uint8_t)(6 + ll);
    memcpy(info + il, "tls13 ", 6);
    il += 6;
    memcpy(info + il, label, ll);
    il += ll;
    info[il++] = 0; /* empty context */
    p[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    p[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
    p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, slen);
    p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, il);
    p[4] = OSSL_PARAM_construct_end();
    ok = k && EVP_KDF_derive(k, out, n, p) == 1;
    EVP_KDF_CTX_free(k);
    return ok ? 0 : -1;
}

/* (Re)keys one direction from its secret; seq back to 0. */
static int rekey(struct kf_tlsrec *r, struct dir *d, int enc)
{
    uint8_t key[32];
    int ok = expand_label(r->md, d->secret, r->secret_len, "key", key, r->key_len) == 0 &&
             expand_label(r->md, d->secret, r->secret_len, "iv", d->iv, IV_LEN) == 0 &&
             EVP_CipherInit_ex(d->ctx, r->cipher, NULL, key, NULL, enc) == 1;
    OPENSSL_cleanse(key, sizeof(key));
    d->seq = 0;
    return ok ? 0 : -1;
}

/* The next generation of a direction's secret (RFC 8446 section 7.2). */
static int update(struct kf_tlsrec *r, struct dir *d, int enc)
{
    uint8_t next[48];
    if (expand_label(r->md, d->secret, r->secret_len, "traffic upd", next, r->secret_len))
        return -1;
    memcpy(d->secret, next, r->secret_len);
    OPENSSL_cleanse(next, sizeof(next));
    return rekey(r, d, enc);
}

enum kf_err kf_tlsrec_new(const char *suite, const uint8_t *read_secret,
                          const uint8_t *write_secret, size_t len, uint64_t read_seq,
                          uint64_t write_seq, struct kf_tlsrec **out)
{
    struct kf_tlsrec *r;
    *out = NULL;
    if (len != 32 && len != 48) return kf_fail(KF_E_INVALID, "a traffic secret is 32 or 48 bytes");
    r = calloc(1, sizeof(*r));
    if (!r) return kf_fail(KF_E_NOMEM, "out of memory");
    r->md = suite_by_name(suite, &r->cipher, &r->key_len);
    if (!r->md) {
        free(r);
        return kf_fail(KF_E_UNSUPPORTED, "suite %s is not one tlsrec carries", suite);
    }
    r->secret_len = len;
    memcpy(r->rd.secret, read_secret, len);
    memcpy(r->wr.secret, write_secret, len);
    r->rd.ctx = EVP_CIPHER_CTX_new();
    r->wr.ctx = EVP_CIPHER_CTX_new();
    if (!r->rd.ctx || !r->wr.ctx || rekey(r, &r->rd, 0) || rekey(r, &r->wr, 1)) {
        kf_tlsrec_free(r);
        return kf_ossl_fail(KF_E_CRYPTO, "cannot set up the record keys");
    }
    r->rd.seq = read_seq;
    r->wr.seq = write_seq;
    *out = r;
    return KF_OK;
}

enum kf_err kf_tlsrec_take(SSL *ssl, struct kf_tlsrec_watch *w, struct kf_tlsrec **out)
{
    enum kf_err rc;
    *out = NULL;
    if (!kf_tlsrec_ready(ssl, w))
        return kf_fail(KF_E_CONFLICT, "the connection cannot be taken over");
    rc = kf_tlsrec_new(suite_name(ssl), w->client_secret, w->server_secret, w->secret_len,
                       w->read_seq, w->write_seq, out);
    OPENSSL_cleanse(w, sizeof(*w));
    return rc;
}

void kf_tlsrec_free(struct kf_tlsrec *r)
{
    if (!r) return;
    EVP_CIPHER_CTX_free(r->rd.ctx);
    EVP_CIPHER_CTX_free(r->wr.ctx);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

size_t kf_tlsrec_size(const struct kf_tlsrec *r)
{
    return r ? sizeof(*r) : 0;
}

/* ---- records ---- */

static void nonce(const struct dir *d, uint8_t *n)
{
    int i;
    memcpy(n, d->iv, IV_LEN);
    for (i = 0; i < 8; i++)
        n[IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

/* Appends one record of inner type `type` holding `data[0..len)` (len <= 16 KiB). */
static enum kf_err seal_one(struct kf_tlsrec *r, uint8_t type, const uint8_t *data, size_t len,
                            struct kf_buf *out)
{
    /* header, encrypted content and type, tag: built here, appended once */
    uint8_t rec[5 + REC_MAX_PLAIN + 1 + TAG_LEN], n[IV_LEN];
    uint8_t *ct = rec + 5;
    size_t clen = len + 1, total = 5 + clen + TAG_LEN;
    int l1 = 0, l2 = 0, l3 = 0;
    enum kf_err rc;

    rec[0] = 23;
    rec[1] = 3;
    rec[2] = 3;
    rec[3] = (uint8_t)((clen + TAG_LEN) >> 8);
    rec[4] = (uint8_t)(clen + TAG_LEN);
    nonce(&r->wr, n);
    if (EVP_EncryptInit_ex(r->wr.ctx, NULL, NULL, NULL, n) != 1 ||
        EVP_EncryptUpdate(r->wr.ctx, NULL, &l1, rec, 5) != 1 ||
        EVP_EncryptUpdate(r->wr.ctx, ct, &l1, data, (int)len) != 1 ||
        EVP_EncryptUpdate(r->wr.ctx, ct + l1, &l2, &type, 1) != 1 ||
        EVP_EncryptFinal_ex(r->wr.ctx, ct + l1 + l2, &l3) != 1 ||
        EVP_CIPHER_CTX_ctrl(r->wr.ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, ct + clen) != 1)
        return kf_ossl_fail(KF_E_CRYPTO, "cannot seal a record");
    r->wr.seq++;
    rc = kf_buf_append(out, rec, total);
    OPENSSL_cleanse(rec, total);
    return rc;
}

enum kf_err kf_tlsrec_seal(struct kf_tlsrec *r, const uint8_t *data, size_t len, struct kf_buf *out)
{
    while (len) {
        size_t n = len > REC_MAX_PLAIN ? REC_MAX_PLAIN : len;
        enum kf_err rc = seal_one(r, 23, data, n, out);
        if (rc) return rc;
        data += n;
        len -= n;
    }
    return KF_OK;
}

enum kf_err kf_tlsrec_close_notify(struct kf_tlsrec *r, struct kf_buf *out)
{
    static const uint8_t alert[2] = {1, 0}; /* warning, close_notify */
    return seal_one(r, 21, alert, sizeof(alert), out);
}

int kf_tlsrec_fatal_alert(struct kf_tlsrec *r, struct kf_buf *out)
{
    uint8_t alert[2] = {2, r->fail_alert}; /* fatal */
    if (!r->fail_alert) return 0;
    return seal_one(r, 21, alert, sizeof(alert), out) == KF_OK;
}

/* Refuses a record: what it was, and the alert to end the connection with (0: none). */
static enum kf_tlsrec_status refuse(struct kf_tlsrec *r, uint8_t alert, const char **why,
                                    const char *text)
{
    r->fail_alert = alert;
    *why = text;
    return KF_TLSREC_BAD;
}

/* A handshake message after the handshake: only KeyUpdate is acceptable from a client. */
static enum kf_tlsrec_status post_handshake(struct kf_tlsrec *r, const uint8_t *p, size_t n,
                                            struct kf_buf *reply, const char **why)
{
    if (n != 5 || p[0] != SSL3_MT_KEY_UPDATE || p[1] || p[2] || p[3] != 1 || p[4] > 1) {
        return refuse(r, ALERT_UNEXPECTED_MESSAGE, why,
                      "unexpected handshake message after the handshake");
    }
    if (update(r, &r->rd, 0)) {
        return refuse(r, ALERT_INTERNAL_ERROR, why, "cannot update the read keys");
    }
    if (p[4] == 1) { /* update_requested: answer with ours (not requested), then switch */
        static const uint8_t ku[5] = {SSL3_MT_KEY_UPDATE, 0, 0, 1, 0};
        if (seal_one(r, 22, ku, sizeof(ku), reply) || update(r, &r->wr, 1)) {
            return refuse(r, ALERT_INTERNAL_ERROR, why, "cannot update the write keys");
        }
    }
    return KF_TLSREC_OK;
}

enum kf_tlsrec_status kf_tlsrec_open(struct kf_tlsrec *r, const uint8_t *in, size_t len,
                                     size_t *used, struct kf_buf *plain, struct kf_buf *reply,
                                     const char **why)
{
    uint8_t pt[REC_MAX_CIPHER];
    size_t off = 0;

    *used = 0;
    *why = NULL;
    while (len - off >= 5) {
        const uint8_t *h = in + off;
        size_t rl = ((size_t)h[3] << 8) | h[4], plen;
        uint8_t n[IV_LEN], type;
        int l1 = 0, l2 = 0;
        enum kf_tlsrec_status st = KF_TLSREC_OK;

        if (h[0] != 23 || h[1] != 3) {
            return refuse(r, ALERT_UNEXPECTED_MESSAGE, why,
                          "a record that is not application data after the handshake");
        }
        if (rl < TAG_LEN + 1 || rl > REC_MAX_CIPHER) {
            return refuse(r, ALERT_RECORD_OVERFLOW, why, "a record of an impossible length");
        }
        if (len - off < 5 + rl) break; /* the rest has not arrived */
        nonce(&r->rd, n);
        if (EVP_DecryptInit_ex(r->rd.ctx, NULL, NULL, NULL, n) != 1 ||
            EVP_DecryptUpdate(r->rd.ctx, NULL, &l1, h, 5) != 1 ||
            EVP_DecryptUpdate(r->rd.ctx, pt, &l1, h + 5, (int)(rl - TAG_LEN)) != 1 ||
            EVP_CIPHER_CTX_ctrl(r->rd.ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN,
                                (void *)(h + 5 + rl - TAG_LEN)) != 1 ||
            EVP_DecryptFinal_ex(r->rd.ctx, pt + l1, &l2) != 1) {
            kf_ossl_clear();
            return refuse(r, ALERT_BAD_RECORD_MAC, why,
                          "a record that does not decrypt (bad_record_mac)");
        }
        r->rd.seq++;
        plen = rl - TAG_LEN;
        while (plen && pt[plen - 1] == 0)
            plen--; /* padding */
        if (!plen) {
            return refuse(r, ALERT_UNEXPECTED_MESSAGE, why, "a record with no content type");
        }
        type = pt[--plen];
        off += 5 + rl;
        if (type == 23) {
            if (plen > REC_MAX_PLAIN) {
                return refuse(r, ALERT_RECORD_OVERFLOW, why, "a record longer than 16 KiB");
            }
            if (kf_buf_append(plain, pt, plen)) {
                return refuse(r, ALERT_INTERNAL_ERROR, why,
                              "more data than the connection may hold");
            }
        } else if (type == 21) {
            *used = off;
            if (plen == 2 && pt[1] == 0) return KF_TLSREC_CLOSED;
            /* a fatal alert of the peer's: nothing is sent back (RFC 8446 6.2) */
            return refuse(r, 0, why, "an alert from the peer");
        } else if (type == 22) {
            st = post_handshake(r, pt, plen, reply, why);
        } else {
            st = refuse(r, ALERT_UNEXPECTED_MESSAGE, why, "a record of an unknown content type");
        }
        OPENSSL_cleanse(pt, plen + 1);
        if (st) return st;
    }
    *used = off;
    return KF_TLSREC_OK;
}
