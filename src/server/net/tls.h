/*
 * tls: keyfleetd's TLS server side.
 *
 * TLS 1.2 at least, 1.3 preferred; ECDHE with AEAD suites only; groups X25519, P-256, P-384.
 * Client certificates are requested, and the handshake proves the client holds its key, but the
 * chain is not judged during the handshake: the request handler judges it against the
 * enrollments (group CAs, individual certificates or keys, keyfleet's issuing CA), so that a
 * refused device gets an HTTP answer saying why, and a security event, instead of a bare alert.
 *
 * Session resumption: TLS 1.3 tickets and TLS 1.2 session ids, both stateful (the session stays
 * in a bounded server-side cache), so a resumed session still has the client's whole chain, and
 * the policy is applied again on every request. Reconnect storms skip the expensive part.
 */
#ifndef KF_SERVER_NET_TLS_H
#define KF_SERVER_NET_TLS_H

#include <stddef.h>

#include "common/err.h"
#include "common/pki_cert.h"

struct kf_tls;
struct ssl_st;

/*
 * Judges a client's chain during the handshake (the hub's way): `leaf` and `chain[0..n)` are
 * borrowed for the call. Returns 1 to accept, 0 to fail the handshake (the callback records why,
 * for its own event: the TLS alert tells the client only "bad certificate").
 */
typedef int (*kf_tls_verify_cb)(void *arg, struct ssl_st *ssl, struct kf_cert *leaf,
                                struct kf_cert **chain, size_t n);

struct kf_tls_conf {
    const char *cert_chain_path; /* leaf then the issuing CA, PEM */
    const char *key_uri;         /* the server's private key (a file; or pkcs11:/tpm2:) */
    unsigned session_cache;      /* sessions kept for resumption */
    long session_timeout;        /* seconds a session may be resumed */
    /*
     * 0: resumption from the server's session cache (fast; each cached session holds the peer's
     * parsed certificate, about 6 KB). 1: stateless TLS 1.3 tickets (the client holds the
     * session, encrypted; nothing kept here; each resumption parses the certificate again).
     */
    int stateless_tickets;
    const char *context; /* session id context: sessions never cross two contexts */
    /*
     * NULL: the chain is judged after the handshake (provisioning). Otherwise a client
     * certificate is required and `verify(verify_arg, ...)` judges it in the handshake.
     */
    kf_tls_verify_cb verify;
    void *verify_arg;
};

/* Makes the server context; errors name the file or the key. `*out` owned by the caller. */
enum kf_err kf_tls_new(const struct kf_tls_conf *conf, struct kf_tls **out);
void kf_tls_free(struct kf_tls *t);

/* A new server-side connection object for the context (owned by the caller: SSL_free). */
struct ssl_st *kf_tls_ssl_new(struct kf_tls *t);

/* The OpenSSL context (borrowed), for callbacks a user installs (the hub's tlsrec). */
struct ssl_ctx_st *kf_tls_ctx(struct kf_tls *t);

/*
 * The client's certificate and the chain it sent (borrowed references become owned copies):
 * `*leaf` is NULL when it sent none; `chain` receives up to `cap` intermediates in `*n`.
 */
enum kf_err kf_tls_peer(struct ssl_st *ssl, struct kf_cert **leaf, struct kf_cert **chain,
                        size_t cap, size_t *n);

/* Slot for the per-connection pointer a verify callback may keep on an SSL (SSL_set_ex_data). */
int kf_tls_ex_index(void);

/* 1 when the session was resumed. */
int kf_tls_resumed(struct ssl_st *ssl);

/* Room for a channel binding in base64, with its NUL. */
#define KF_TLS_BINDING_MAX 96

/*
 * The connection's channel binding, base64 as RFC 7030 3.5 carries it in a CSR's
 * challengePassword: tls-unique (RFC 5929: the first Finished message) on TLS 1.2, tls-exporter
 * (RFC 9266: 32 bytes of the exporter labelled "EXPORTER-Channel-Binding", no context) on TLS
 * 1.3. `*kind` (static) names which.
 */
enum kf_err kf_tls_channel_binding(struct ssl_st *ssl, char *out, size_t cap, const char **kind);

/* Which channel binding `ssl` has ("tls-unique" or "tls-exporter"), without deriving it. */
const char *kf_tls_channel_binding_kind(struct ssl_st *ssl);

/* Why the last handshake on `ssl` failed, drained from OpenSSL's queue ("" when unknown). */
void kf_tls_error(char *out, size_t cap);

#endif
