#include "server/net/tls.h"

#include <pthread.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/ossl.h"

#define CHAIN_MAX 8

struct kf_tls {
    SSL_CTX *ctx;
    kf_tls_verify_cb verify;
    void *verify_arg;
};

/* The chain is judged by the request handler, against the enrollments (see tls.h). */
static int accept_any_chain_cb(X509_STORE_CTX *store, void *arg)
{
    return 1;
}

static int ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_index_init(void)
{
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int kf_tls_ex_index(void)
{
    pthread_once(&ex_once, ex_index_init);
    return ex_index;
}

/* Hands the chain to the context's judge, as keyfleet certificates. */
static int judge_chain_cb(X509_STORE_CTX *store, void *arg)
{
    struct kf_tls *t = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *leaf = X509_STORE_CTX_get0_cert(store);
    STACK_OF(X509) *sk = X509_STORE_CTX_get0_untrusted(store);
    struct kf_cert *kleaf = NULL, *chain[CHAIN_MAX];
    size_t n = 0;
    int ok = 0;

    if (!ssl || !leaf) return 0;
    X509_up_ref(leaf);
    kleaf = kf_cert_wrap(leaf);
    /* The untrusted stack starts with the leaf itself. */
    for (int i = 0; kleaf && sk && i < sk_X509_num(sk) && n < CHAIN_MAX; i++) {
        X509 *c = sk_X509_value(sk, i);
        if (X509_cmp(c, leaf) == 0) continue;
        X509_up_ref(c);
        chain[n] = kf_cert_wrap(c);
        if (!chain[n]) break;
        n++;
    }
    if (kleaf) ok = t->verify(t->verify_arg, ssl, kleaf, chain, n);
    kf_cert_free(kleaf);
    for (size_t i = 0; i < n; i++)
        kf_cert_free(chain[i]);
    if (!ok) X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return ok;
}

enum kf_err kf_tls_new(const struct kf_tls_conf *conf, struct kf_tls **out)
{
    const char *sid_ctx = conf->context ? conf->context : "keyfleet-provisioning";
    struct kf_tls *t = calloc(1, sizeof(*t));
    struct kf_key *key = NULL;
    enum kf_err rc = KF_OK;
    SSL_CTX *ctx;

    *out = NULL;
    if (!t) return kf_fail(KF_E_NOMEM, "out of memory");
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        free(t);
        return kf_ossl_fail(KF_E_CRYPTO, "cannot create a TLS context");
    }
    t->ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION |
                                 (conf->stateless_tickets ? 0 : SSL_OP_NO_TICKET));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL") ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                       "TLS_CHACHA20_POLY1305_SHA256") ||
        !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384")) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot set the TLS ciphers");
        goto fail;
    }
    /* Stateful resumption (SSL_OP_NO_TICKET makes TLS 1.3 tickets refer to the cache). */
    SSL_CTX_set_session_cache_mode(ctx, conf->stateless_tickets ? SSL_SESS_CACHE_OFF
                                                                : SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, conf->session_cache ? conf->session_cache : 20000);
    SSL_CTX_set_timeout(ctx, conf->session_timeout > 0 ? conf->session_timeout : 3600);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sid_ctx, (unsigned)strlen(sid_ctx));
    if (conf->verify) {
        t->verify = conf->verify;
        t->verify_arg = conf->verify_arg;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_cert_verify_callback(ctx, judge_chain_cb, t);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain_cb, NULL);
    }

    if (SSL_CTX_use_certificate_chain_file(ctx, conf->cert_chain_path) != 1) {
        rc = kf_ossl_fail(KF_E_IO, "cannot use the server certificate %s", conf->cert_chain_path);
        goto fail;
    }
    rc = kf_key_load(conf->key_uri, NULL, &key);
    if (rc) {
        kf_wrap(rc, "the server key");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key->pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        rc = kf_ossl_fail(KF_E_INVALID, "the server key %s does not match the certificate %s",
                          conf->key_uri, conf->cert_chain_path);
        goto fail;
    }
    kf_key_free(key);
    *out = t;
    return KF_OK;
fail:
    kf_key_free(key);
    kf_tls_free(t);
    return rc;
}

void kf_tls_free(struct kf_tls *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    free(t);
}

struct ssl_ctx_st *kf_tls_ctx(struct kf_tls *t)
{
    return t->ctx;
}

struct ssl_st *kf_tls_ssl_new(struct kf_tls *t)
{
    return SSL_new(t->ctx);
}

enum kf_err kf_tls_peer(struct ssl_st *ssl, struct kf_cert **leaf, struct kf_cert **chain,
                        size_t cap, size_t *n)
{
    X509 *x = SSL_get1_peer_certificate(ssl);
    STACK_OF(X509) *sk = SSL_get_peer_cert_chain(ssl);

    *leaf = NULL;
    *n = 0;
    if (!x) return KF_OK;
    *leaf = kf_cert_wrap(x);
    if (!*leaf) return KF_E_NOMEM;
    /* On the server side the chain the client sent excludes its own certificate. */
    for (int i = 0; sk && i < sk_X509_num(sk) && *n < cap; i++) {
        X509 *c = sk_X509_value(sk, i);
        X509_up_ref(c);
        chain[*n] = kf_cert_wrap(c);
        if (!chain[*n]) return KF_E_NOMEM;
        (*n)++;
    }
    return KF_OK;
}

int kf_tls_resumed(struct ssl_st *ssl)
{
    return SSL_session_reused(ssl);
}

void kf_tls_error(char *out, size_t cap)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, cap, "%s", r ? r : "");
    ERR_clear_error();
}

const char *kf_tls_channel_binding_kind(SSL *ssl)
{
    return ssl && SSL_version(ssl) >= TLS1_3_VERSION ? "tls-exporter" : "tls-unique";
}

enum kf_err kf_tls_channel_binding(SSL *ssl, char *out, size_t cap, const char **kind)
{
    static const char label[] = "EXPORTER-Channel-Binding";
    unsigned char raw[64];
    size_t n;

    *kind = NULL;
    if (!ssl) return kf_fail(KF_E_INVALID, "no TLS connection");
    *kind = kf_tls_channel_binding_kind(ssl);
    if (SSL_version(ssl) >= TLS1_3_VERSION) {
        n = 32;
        if (SSL_export_keying_material(ssl, raw, n, label, sizeof(label) - 1, NULL, 0, 0) != 1)
            return kf_ossl_fail(KF_E_INTERNAL, "cannot derive the tls-exporter channel binding");
    } else {
        /* The first Finished of the handshake: the client's in a full one, ours in a resumed one.
         */
        n = SSL_session_reused(ssl) ? SSL_get_finished(ssl, raw, sizeof(raw))
                                    : SSL_get_peer_finished(ssl, raw, sizeof(raw));
        if (n == 0 || n > sizeof(raw))
            return kf_fail(KF_E_INTERNAL, "no Finished message for the tls-unique channel binding");
    }
    if (cap < 4 * ((n + 2) / 3) + 1) return kf_fail(KF_E_OVERSIZE, "channel binding too long");
    EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
    OPENSSL_cleanse(raw, sizeof(raw));
    return KF_OK;
}
