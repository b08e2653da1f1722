/* The hub's compact TLS session cache: DER sessions without the peer certificate, and an identity.
 */
#include "server/hub/sesscache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/htab.h"

struct entry {
    struct kf_hnode node;
    struct entry *older, *newer; /* age order: the oldest goes first */
    time_t expires;
    uint8_t id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    unsigned id_len;
    uint16_t ident_len, der_len;
    uint8_t data[]; /* identity, then the DER */
};

struct kf_sesscache {
    pthread_mutex_t lock;
    struct kf_htab tab;
    struct entry *oldest, *newest;
    size_t n, max, bytes;
    long timeout;
    struct kf_sesscache_hooks hooks;
};

static int ex_index = -1;

/* ---- DER: one TLV's extent ---- */

/* The whole length of the TLV at p[0..len) (header included); 0 when malformed. */
static size_t tlv_size(const uint8_t *p, size_t len, size_t *hdr)
{
    size_t n, l = 0, i;
    if (len < 2 || (p[0] & 0x1f) == 0x1f) return 0; /* no high tag numbers in a session */
    if (p[1] < 0x80) {
        l = p[1];
        *hdr = 2;
    } else {
        n = p[1] & 0x7f;
        if (n == 0 || n > 3 || len < 2 + n) return 0;
        for (i = 0; i < n; i++)
            l = (l << 8) | p[2 + i];
        *hdr = 2 + n;
    }
    if (l > len - *hdr) return 0;
    return *hdr + l;
}

long kf_sesscache_strip_peer(const uint8_t *der, size_t len, uint8_t *out, size_t cap)
{
    size_t hdr, total = tlv_size(der, len, &hdr), off, body = 0, o;
    if (!total || der[0] != 0x30 || total != len) return -1;
    /* the body without [3] */
    for (off = hdr; off < total;) {
        size_t h, t = tlv_size(der + off, total - off, &h);
        if (!t) return -1;
        if (der[off] != 0xa3) body += t;
        off += t;
    }
    if (body > 0xffff || cap < body + (body < 0x80 ? 2 : body < 0x100 ? 3 : 4)) return -1;
    out[0] = 0x30;
    if (body < 0x80) {
        out[1] = (uint8_t)body;
        o = 2;
    } else if (body < 0x100) {
        out[1] = 0x81;
        out[2] = (uint8_t)body;
        o = 3;
    } else {
        out[1] = 0x82;
        out[2] = (uint8_t)(body >> 8);
        out[3] = (uint8_t)body;
        o = 4;
    }
    /* o <= off all along (the new header is no longer than the old one): `out` may be `der` */
    for (off = hdr; off < total;) {
        size_t h, t = tlv_size(der + off, total - off, &h);
        if (der[off] != 0xa3) {
            memmove(out + o, der + off, t);
            o += t;
        }
        off += t;
    }
    return (long)o;
}

/* ---- the cache ---- */

static void unlink_entry(struct kf_sesscache *sc, struct entry *e)
{
    kf_htab_remove(&sc->tab, &e->node);
    if (e->older)
        e->older->newer = e->newer;
    else
        sc->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        sc->newest = e->older;
    sc->n--;
    sc->bytes -= sizeof(*e) + e->ident_len + e->der_len;
    OPENSSL_cleanse(e->data, e->ident_len + e->der_len); /* the DER holds the master secret */
    free(e);
}

static struct entry *find(struct kf_sesscache *sc, const uint8_t *id, size_t len)
{
    struct kf_hnode *n = kf_htab_find(&sc->tab, id, len, kf_hash_bytes(id, len));
    return n ? (struct entry *)n : NULL;
}

static int new_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct kf_sesscache *sc = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index);
    uint8_t ident[KF_SESSCACHE_IDENT_MAX], *der = NULL, *p;
    unsigned id_len;
    const uint8_t *id = SSL_SESSION_get_id(sess, &id_len);
    X509 *peer = SSL_SESSION_get0_peer(sess);
    size_t ilen;
    int dlen;
    long slen;
    struct entry *e;
    time_t now = time(NULL), not_after = 0, expires;

    /* a ticket given on a resumed connection has no certificate: the hook knows the identity */
    if (!sc || !id_len || id_len > SSL_MAX_SSL_SESSION_ID_LENGTH) return 0;
    ilen = sc->hooks.ident(ssl, peer, ident, &not_after);
    if (!ilen || ilen > KF_SESSCACHE_IDENT_MAX) return 0;
    /* Never beyond the certificate: an expired one must not come back by resumption. */
    expires = now + sc->timeout;
    if (not_after < expires) expires = not_after;
    if (expires <= now) return 0;
    SSL_SESSION_set_timeout(sess, (long)(expires - SSL_SESSION_get_time(sess)));
    dlen = i2d_SSL_SESSION(sess, NULL);
    if (dlen <= 0 || dlen > 65535) return 0;
    der = OPENSSL_secure_malloc((size_t)dlen);
    p = der;
    if (!der || i2d_SSL_SESSION(sess, &p) != dlen) {
        OPENSSL_secure_clear_free(der, der ? (size_t)dlen : 0);
        return 0;
    }
    /* stripped in place, so that the entry holds only what is kept */
    slen = kf_sesscache_strip_peer(der, (size_t)dlen, der, (size_t)dlen);
    e = slen > 0 ? malloc(sizeof(*e) + ilen + (size_t)slen) : NULL;
    if (e) memcpy(e->data + ilen, der, (size_t)slen);
    OPENSSL_secure_clear_free(der, (size_t)dlen);
    if (!e) return 0;
    memcpy(e->data, ident, ilen);
    memcpy(e->id, id, id_len);
    e->id_len = id_len;
    e->ident_len = (uint16_t)ilen;
    e->der_len = (uint16_t)slen;
    e->expires = expires;
    e->node.key = e->id;
    e->node.klen = id_len;
    e->node.hash = kf_hash_bytes(e->id, id_len);
    pthread_mutex_lock(&sc->lock);
    {
        struct entry *old = find(sc, e->id, id_len);
        if (old) unlink_entry(sc, old);
    }
    while (sc->n >= sc->max && sc->oldest)
        unlink_entry(sc, sc->oldest);
    if (kf_htab_insert(&sc->tab, &e->node) != 0) {
        pthread_mutex_unlock(&sc->lock);
        free(e);
        return 0;
    }
    e->older = sc->newest;
    e->newer = NULL;
    if (sc->newest)
        sc->newest->newer = e;
    else
        sc->oldest = e;
    sc->newest = e;
    sc->n++;
    sc->bytes += sizeof(*e) + ilen + (size_t)slen;
    pthread_mutex_unlock(&sc->lock);
    return 0; /* not keeping OpenSSL's object */
}

static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    struct kf_sesscache *sc = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index);
    SSL_SESSION *sess = NULL;
    uint8_t ident[KF_SESSCACHE_IDENT_MAX], der[2048];
    size_t ilen = 0, dlen = 0;
    struct entry *e;

    *copy = 0;
    if (!sc || len <= 0) return NULL;
    pthread_mutex_lock(&sc->lock);
    e = find(sc, id, (size_t)len);
    if (e && e->expires <= time(NULL)) {
        unlink_entry(sc, e);
        e = NULL;
    }
    if (e && e->der_len <= sizeof(der)) {
        ilen = e->ident_len;
        dlen = e->der_len;
        memcpy(ident, e->data, ilen);
        memcpy(der, e->data + ilen, dlen);
    }
    pthread_mutex_unlock(&sc->lock);
    if (dlen) {
        const unsigned char *p = der;
        sess = d2i_SSL_SESSION(NULL, &p, (long)dlen);
        if (sess) sc->hooks.resumed(ssl, ident, ilen);
    }
    OPENSSL_cleanse(der, sizeof(der));
    return sess;
}

static void remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    struct kf_sesscache *sc = SSL_CTX_get_ex_data(ctx, ex_index);
    unsigned id_len;
    const uint8_t *id = SSL_SESSION_get_id(sess, &id_len);
    struct entry *e;
    if (!sc) return;
    pthread_mutex_lock(&sc->lock);
    e = find(sc, id, id_len);
    if (e) unlink_entry(sc, e);
    pthread_mutex_unlock(&sc->lock);
}

enum kf_err kf_sesscache_new(SSL_CTX *ctx, size_t max, long timeout_s,
                             const struct kf_sesscache_hooks *hooks, struct kf_sesscache **out)
{
    struct kf_sesscache *sc;
    *out = NULL;
    if (ex_index < 0) ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    sc = calloc(1, sizeof(*sc));
    if (!sc || ex_index < 0) {
        free(sc);
        return kf_fail(KF_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&sc->lock, NULL);
    sc->max = max ? max : 20000;
    sc->timeout = timeout_s > 0 ? timeout_s : 3600;
    sc->hooks = *hooks;
    SSL_CTX_set_ex_data(ctx, ex_index, sc);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, new_cb);
    SSL_CTX_sess_set_get_cb(ctx, get_cb);
    SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
    *out = sc;
    return KF_OK;
}

void kf_sesscache_free(struct kf_sesscache *sc)
{
    if (!sc) return;
    while (sc->oldest)
        unlink_entry(sc, sc->oldest);
    kf_htab_free(&sc->tab);
    pthread_mutex_destroy(&sc->lock);
    free(sc);
}

size_t kf_sesscache_count(struct kf_sesscache *sc)
{
    size_t n;
    pthread_mutex_lock(&sc->lock);
    n = sc->n;
    pthread_mutex_unlock(&sc->lock);
    return n;
}

size_t kf_sesscache_bytes(struct kf_sesscache *sc)
{
    size_t n;
    pthread_mutex_lock(&sc->lock);
    n = sc->bytes;
    pthread_mutex_unlock(&sc->lock);
    return n;
}
