#include "server/tls.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/ossl.h"

struct kf_tls {
    SSL_CTX *ctx;
};

/* The chain is judged by the request handler, against the enrollments (see tls.h). */
static int accept_any_chain_cb(X509_STORE_CTX *store, void *arg)
{
    return 1;
}

enum kf_err kf_tls_new(const struct kf_tls_conf *conf, struct kf_tls **out)
{
    static const unsigned char sid_ctx[] = "keyfleet-provisioning";
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
                                 SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL") ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                       "TLS_CHACHA20_POLY1305_SHA256") ||
        !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384")) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot set the TLS ciphers");
        goto fail;
    }
    /* Stateful resumption (SSL_OP_NO_TICKET makes TLS 1.3 tickets refer to the cache). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, conf->session_cache ? conf->session_cache : 20000);
    SSL_CTX_set_timeout(ctx, conf->session_timeout > 0 ? conf->session_timeout : 3600);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain_cb, NULL);

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
