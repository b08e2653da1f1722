/* libkeyfleet's TLS client over OpenSSL 3, with the key wherever it lives. */
#include "device/tls_client.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/ossl.h"

struct kf_tlsc {
    SSL_CTX *ctx;
    SSL_SESSION *last; /* for resumption on the next connection to the same server */
    char last_host[256];
};

struct kf_tlsc_conn {
    struct kf_tlsc *t;
    SSL *ssl;
    int fd;
    char host[256];
};

static int session_ex = -1;

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct kf_tlsc_conn *c = SSL_get_ex_data(ssl, session_ex);
    if (!c) return 0;
    SSL_SESSION_free(c->t->last);
    c->t->last = sess; /* taken: return 1 */
    snprintf(c->t->last_host, sizeof(c->t->last_host), "%s", c->host);
    return 1;
}

static enum kf_err load_chain(SSL_CTX *ctx, const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x;
    int first = 1;
    if (!bio) return kf_ossl_fail(KF_E_NOMEM, "cannot read the certificate");
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int ok = first ? SSL_CTX_use_certificate(ctx, x) : SSL_CTX_add1_chain_cert(ctx, x);
        X509_free(x);
        if (ok != 1) {
            BIO_free(bio);
            return kf_ossl_fail(KF_E_CRYPTO, "cannot use the device certificate");
        }
        first = 0;
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the PEM stream */
    if (first) return kf_fail(KF_E_MALFORMED, "the device certificate holds no PEM certificate");
    return KF_OK;
}

static enum kf_err load_trust(SSL_CTX *ctx, const char *pem, size_t len)
{
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x;
    int n = 0;
    if (!bio) return kf_ossl_fail(KF_E_NOMEM, "cannot read the trust anchor");
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(st, x);
        X509_free(x);
        n++;
    }
    BIO_free(bio);
    ERR_clear_error();
    if (!n) return kf_fail(KF_E_MALFORMED, "the trust anchor holds no PEM certificate");
    return KF_OK;
}

enum kf_err kf_tlsc_new(const char *chain_pem, size_t chain_len, const struct kf_key *key,
                        const char *trust_pem, size_t trust_len, struct kf_tlsc **out)
{
    struct kf_tlsc *t;
    enum kf_err rc;

    *out = NULL;
    if (session_ex < 0) session_ex = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    t = calloc(1, sizeof(*t));
    if (!t) return kf_fail(KF_E_NOMEM, "out of memory");
    t->ctx = SSL_CTX_new_ex(key ? key->libctx : NULL, key ? key->propq : NULL, TLS_client_method());
    if (!t->ctx) {
        free(t);
        return kf_ossl_fail(KF_E_CRYPTO, "cannot create a TLS context");
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(t->ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(t->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ctx, new_session_cb);
    rc = load_trust(t->ctx, trust_pem, trust_len);
    if (rc) goto fail;
    if (chain_pem) {
        rc = load_chain(t->ctx, chain_pem, chain_len);
        if (rc) goto fail;
        if (SSL_CTX_use_PrivateKey(t->ctx, key->pkey) != 1 ||
            SSL_CTX_check_private_key(t->ctx) != 1) {
            rc = kf_ossl_fail(KF_E_CRYPTO, "the key does not match the device certificate");
            goto fail;
        }
    }
    *out = t;
    return KF_OK;
fail:
    kf_tlsc_free(t);
    return rc;
}

void kf_tlsc_free(struct kf_tlsc *t)
{
    if (!t) return;
    SSL_SESSION_free(t->last);
    SSL_CTX_free(t->ctx);
    free(t);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        long long left = deadline - now_ms();
        int r;
        if (left <= 0) return 0;
        r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        return r > 0;
    }
}

static enum kf_err tcp_connect(const char *host, const char *port, long long deadline, int *fdp)
{
    struct addrinfo hints, *res = NULL, *ai;
    int e, fd = -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    e = getaddrinfo(host, port, &hints, &res);
    if (e) return kf_fail(KF_E_NOT_FOUND, "cannot resolve %s: %s", host, gai_strerror(e));
    e = ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        int one = 1, err = 0;
        socklen_t elen = sizeof(err);
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0)
            break;
        e = err ? err : (errno == EINPROGRESS ? ETIMEDOUT : errno);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return kf_fail(e == ETIMEDOUT ? KF_E_TIMEOUT : KF_E_IO, "cannot connect to %s:%s: %s", host,
                       port, strerror(e));
    *fdp = fd;
    return KF_OK;
}

static int is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

enum kf_err kf_tlsc_connect(struct kf_tlsc *t, const char *host, int port_num, int timeout_ms,
                            struct kf_tlsc_conn **out, char *problem, size_t cap)
{
    long long deadline = now_ms() + timeout_ms;
    struct kf_tlsc_conn *c;
    enum kf_err rc;
    char port[8];

    *out = NULL;
    snprintf(port, sizeof(port), "%d", port_num);
    if (problem && cap) problem[0] = 0;
    c = calloc(1, sizeof(*c));
    if (!c) return kf_fail(KF_E_NOMEM, "out of memory");
    c->t = t;
    c->fd = -1;
    snprintf(c->host, sizeof(c->host), "%s", host);
    rc = tcp_connect(host, port, deadline, &c->fd);
    if (rc) goto fail;
    c->ssl = SSL_new(t->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot start TLS");
        goto fail;
    }
    SSL_set_ex_data(c->ssl, session_ex, c);
    if (is_ip(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, host);
        SSL_set1_host(c->ssl, host);
    }
    if (t->last && strcmp(t->last_host, host) == 0) SSL_set_session(c->ssl, t->last);
    for (;;) {
        int r = SSL_connect(c->ssl), e;
        if (r == 1) break;
        e = SSL_get_error(c->ssl, r);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
            wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
            continue;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            rc = kf_fail(KF_E_TIMEOUT, "TLS handshake with %s:%s timed out", host, port);
            goto fail;
        }
        if (SSL_get_verify_result(c->ssl) != X509_V_OK) {
            const char *why = X509_verify_cert_error_string(SSL_get_verify_result(c->ssl));
            if (problem) snprintf(problem, cap, "%s", why);
            kf_ossl_clear();
            rc = kf_fail(KF_E_DENIED, "the server %s:%s is not trusted: %s", host, port, why);
            goto fail;
        }
        rc = kf_ossl_fail(KF_E_IO, "TLS handshake with %s:%s failed", host, port);
        if (problem) snprintf(problem, cap, "%s", kf_errmsg());
        goto fail;
    }
    *out = c;
    return KF_OK;
fail:
    if (c->ssl) SSL_free(c->ssl);
    if (c->fd >= 0) close(c->fd);
    free(c);
    return rc;
}

int kf_tlsc_fd(const struct kf_tlsc_conn *c)
{
    return c->fd;
}

int kf_tlsc_resumed(const struct kf_tlsc_conn *c)
{
    return SSL_session_reused(c->ssl);
}

long kf_tlsc_send(void *conn, const uint8_t *buf, size_t len)
{
    struct kf_tlsc_conn *c = conn;
    int r, e;
    if (!len) return 0;
    r = SSL_write(c->ssl, buf, len > 1 << 20 ? 1 << 20 : (int)len);
    if (r > 0) return r;
    e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
}

long kf_tlsc_recv(void *conn, uint8_t *buf, size_t cap)
{
    struct kf_tlsc_conn *c = conn;
    int r, e;
    r = SSL_read(c->ssl, buf, cap > 1 << 20 ? 1 << 20 : (int)cap);
    if (r > 0) return r;
    e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
}

enum kf_err kf_tlsc_write_all(struct kf_tlsc_conn *c, const void *buf, size_t len, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    const uint8_t *p = buf;
    while (len) {
        long n = kf_tlsc_send(c, p, len);
        if (n < 0) return kf_fail(KF_E_IO, "the connection to %s failed while sending", c->host);
        if (n == 0) {
            if (!wait_fd(c->fd, POLLOUT | POLLIN, deadline))
                return kf_fail(KF_E_TIMEOUT, "sending to %s timed out", c->host);
            continue;
        }
        p += n;
        len -= (size_t)n;
    }
    return KF_OK;
}

enum kf_err kf_tlsc_read_some(struct kf_tlsc_conn *c, void *buf, size_t cap, size_t *got,
                              int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        long n = kf_tlsc_recv(c, buf, cap);
        if (n > 0) {
            *got = (size_t)n;
            return KF_OK;
        }
        if (n < 0) {
            *got = 0;
            return KF_OK; /* closed: the caller sees 0 bytes */
        }
        if (!wait_fd(c->fd, POLLIN, deadline))
            return kf_fail(KF_E_TIMEOUT, "no answer from %s in time", c->host);
    }
}

void kf_tlsc_close(struct kf_tlsc_conn *c)
{
    if (!c) return;
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    ERR_clear_error();
    if (c->fd >= 0) close(c->fd);
    free(c);
}
