/*
 * limits: what keyfleetd allows each source address, each source network and itself, shared by
 * all worker threads.
 *
 *   - connections per source address, per source network (IPv4 /24, IPv6 /64), and in all;
 *   - TLS handshakes in flight (accepted, not yet finished, the wait for the ClientHello
 *     included) per address, per network, and in all;
 *   - requests per second per source address (a token bucket: `rate` per second, up to `burst`).
 *
 * The per-address and per-network bounds are what keeps one peer from taking a global budget:
 * whatever they are configured to, a network never holds more than half of a global budget and
 * an address never more than its network, so no single address or network can hold more than a
 * bounded share of any of them.
 *
 * Addresses and networks are tracked in a bounded table split into locked shards; one with no
 * open connection whose bucket has refilled takes no room, so the table does not fill with the
 * past. When it is full of live ones, new addresses are refused like an over-limit one.
 */
#ifndef KF_SERVER_NET_LIMITS_H
#define KF_SERVER_NET_LIMITS_H

#include <stdint.h>
#include <sys/socket.h>

#include "common/conf.h"
#include "common/err.h"

struct kf_limits;

struct kf_limits_conf {
    unsigned max_conns_per_ip;       /* 0: no limit */
    unsigned max_conns;              /* in all; 0: no limit */
    double rate_per_ip;              /* requests per second; 0: no limit */
    double burst_per_ip;             /* bucket size (at least 1) */
    unsigned max_handshakes;         /* in flight; 0: no limit */
    unsigned max_conns_per_net;      /* per IPv4 /24 or IPv6 /64; 0: no limit */
    unsigned max_handshakes_per_ip;  /* in flight from one address; 0: no limit */
    unsigned max_handshakes_per_net; /* in flight from one network; 0: no limit */
};

/*
 * A listener's admission settings (net/accept.h reads them); the front end owns them and may
 * change them on its loop's thread. Its configuration section binds them directly.
 */
struct kf_accept_conf {
    int hello_timeout_ms;      /* from accept to the ClientHello's first bytes */
    int handshake_timeout_ms;  /* from accept to the end of the TLS handshake */
    int first_deadline_ms;     /* from accept to the front end's first deadline (bounds both) */
    int count_rate;            /* 1: new connections count against the per-address rate */
    struct kf_conf_nets allow; /* nothing configured: every address */
    struct kf_conf_nets deny;  /* nothing configured: none */
};

/* A source address, IPv4 held as IPv4-mapped IPv6. */
struct kf_ipaddr {
    unsigned char b[16];
};

/* Fills `out` from a socket address; KF_E_INVALID for another family. */
enum kf_err kf_ipaddr_from_sockaddr(const struct sockaddr *sa, struct kf_ipaddr *out);

/* The address as text ("192.0.2.1", "2001:db8::1") into `out` (at least 46 bytes). */
void kf_ipaddr_text(const struct kf_ipaddr *ip, char *out, size_t cap);

/* A new set of limits; `*out` is owned by the caller (kf_limits_free). */
enum kf_err kf_limits_new(const struct kf_limits_conf *conf, struct kf_limits **out);
void kf_limits_free(struct kf_limits *l);

/* Replaces the configuration (SIGHUP); counts already taken stay. Thread-safe. */
void kf_limits_configure(struct kf_limits *l, const struct kf_limits_conf *conf);

enum kf_limits_verdict {
    KF_LIMITS_OK = 0,
    KF_LIMITS_PER_IP,            /* the address has too many connections */
    KF_LIMITS_TOTAL,             /* the server has too many connections */
    KF_LIMITS_TABLE_FULL,        /* too many distinct live addresses */
    KF_LIMITS_PER_NET,           /* the address's network has too many connections */
    KF_LIMITS_HANDSHAKES_PER_IP, /* the address has too many handshakes in flight */
    KF_LIMITS_HANDSHAKES_PER_NET /* its network has too many handshakes in flight */
};

/* A sentence for a refusing verdict ("too many connections from this address"). Static. */
const char *kf_limits_verdict_text(enum kf_limits_verdict v);

/*
 * A connection from `ip` was accepted: counts it against the limits and starts its handshake.
 * KF_LIMITS_OK means it is counted (release it with kf_limits_conn_close); anything else means
 * it was not, and should be closed at once. `*over_handshakes` is set when the global handshake
 * budget is spent: the connection may finish its handshake but gets 503 instead of service.
 */
enum kf_limits_verdict kf_limits_conn_open(struct kf_limits *l, const struct kf_ipaddr *ip,
                                           int64_t now_ms, int *over_handshakes);

/*
 * The handshake of a connection from `ip` finished (successfully or not). Call at most once
 * per connection.
 */
void kf_limits_handshake_done(struct kf_limits *l, const struct kf_ipaddr *ip);

/* The connection closed; `handshake_pending` when its handshake never finished. */
void kf_limits_conn_close(struct kf_limits *l, const struct kf_ipaddr *ip, int handshake_pending);

/*
 * Takes one request from `ip`'s bucket. Returns 0 when allowed, else the whole seconds until a
 * request would be (for Retry-After, at least 1).
 */
unsigned kf_limits_request(struct kf_limits *l, const struct kf_ipaddr *ip, int64_t now_ms);

/* Connections open and handshakes in flight now. */
uint64_t kf_limits_connections(const struct kf_limits *l);
uint64_t kf_limits_handshakes(const struct kf_limits *l);

#endif
