/*
 * accept: the one way a connection comes into keyfleetd, whatever the listener. In order:
 *   1. the listening socket's accept, on the worker's loop;
 *   2. the address lists (deny, then allow), when the listener has them;
 *   3. the limits: connections per address, per network and in all, TLS handshakes in flight
 *      (per address, per network, and the global budget), and, when the listener counts them,
 *      new connections per second from the address. A connection over any of them is closed at
 *      once, before any TLS work: finishing a handshake only to refuse the connection would
 *      spend the very work the handshake budget bounds;
 *   4. TCP_NODELAY, and a wait for the socket's first bytes without any TLS state (a socket that
 *      never sends its ClientHello costs a few hundred bytes and goes at the hello deadline);
 *   5. OpenSSL and a bufferevent, handed to the front end's callbacks.
 * Each front end's connection struct begins with a struct kf_conn that this module fills.
 */
#ifndef KF_SERVER_NET_ACCEPT_H
#define KF_SERVER_NET_ACCEPT_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "common/err.h"
#include "server/net/limits.h"
#include "server/net/tls.h"

struct kf_acceptor;

/* The head of every front end's connection struct. */
struct kf_conn {
    struct kf_acceptor *acceptor; /* borrowed: the listener that accepted it (until TLS starts) */
    struct kf_limits *limits;     /* borrowed: what it counts against (may outlive the acceptor) */
    struct bufferevent *bev;      /* NULL until the ClientHello's first bytes are there */
    struct event *wait;           /* until then: the socket's first bytes, or the hello deadline */
    struct event *timer;          /* the front end's deadlines (its timer_cb) */
    evutil_socket_t fd;           /* the socket, until the bufferevent owns it (then -1) */
    int64_t accepted_ms;          /* kf_now_ms() at accept */
    struct kf_ipaddr ip;
    char ip_text[INET6_ADDRSTRLEN];
    int handshake_pending; /* counted in the limits' handshakes in flight */
};

/* Why a connection was refused at accept (the front end counts them). */
enum kf_accept_refusal {
    KF_ACCEPT_DENIED = 1, /* the address lists */
    KF_ACCEPT_LIMITS,     /* a connection or handshake limit */
    KF_ACCEPT_RATE,       /* new connections per second from the address */
    KF_ACCEPT_NOMEM,
};

/* What a front end does with its connections. Every callback runs on the acceptor's loop. */
struct kf_accept_ops {
    const char *module; /* names the log lines ("hub", "provisioning") */
    size_t conn_size;   /* of the front end's struct, which begins with struct kf_conn */
    /* The connection passed every check and is zeroed but for its head: link it in. */
    void (*opened)(void *arg, struct kf_conn *c);
    /* A connection refused at accept (the log line is written already); may be NULL. */
    void (*refused)(void *arg, enum kf_accept_refusal why);
    /* A new SSL, before its handshake starts (to tag it); may be NULL. */
    void (*ssl_new)(struct kf_conn *c, SSL *ssl);
    /* The bufferevent is made (TLS accepting); callbacks, watermarks and deadlines are set. */
    void (*tls_started)(struct kf_conn *c);
    /* No first bytes by the hello deadline (timed_out), or no TLS state could be made: the
     * front end ends the connection (its free calls kf_conn_release). */
    void (*failed)(struct kf_conn *c, int timed_out);
    bufferevent_data_cb read_cb, write_cb;
    bufferevent_event_cb event_cb;
    event_callback_fn timer_cb; /* the connection's timer; its argument is the connection */
};

/*
 * A listener on `base` over the listening socket `fd` (taken: closed on failure too), counting
 * against `limits` and doing TLS with `tls` (both borrowed for the acceptor's life). `conf` is
 * borrowed for its life too and read at each accept; `ops` is static; `arg` goes to `opened` and
 * `refused`. `*out` owned by the caller.
 */
enum kf_err kf_acceptor_new(struct event_base *base, evutil_socket_t fd, struct kf_limits *limits,
                            struct kf_tls *tls, const struct kf_accept_conf *conf,
                            const struct kf_accept_ops *ops, void *arg, struct kf_acceptor **out);

/* Stops accepting (drain); connections already accepted go on. */
void kf_acceptor_pause(struct kf_acceptor *ac);

/*
 * Closes the listening socket. The connections are the front end's to end, before or after (a
 * connection still waiting for its first bytes must be ended before: its wait uses the acceptor).
 */
void kf_acceptor_free(struct kf_acceptor *ac);

/* Arms `ev` to fire when `deadline_ms` have passed since `c` was accepted (at least 1 ms on). */
void kf_conn_arm(struct kf_conn *c, struct event *ev, int deadline_ms);

/* The handshake of `c` finished (well or not): it leaves the handshakes in flight. Once. */
void kf_conn_handshake_done(struct kf_conn *c);

/*
 * What the head holds: the wait and the timer freed, the socket closed if no bufferevent took
 * it, and the connection's place in the limits given back. The bufferevent is the front end's
 * to free (before or after). The front end frees its struct after.
 */
void kf_conn_release(struct kf_conn *c);

#endif
