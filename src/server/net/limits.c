#include "server/net/limits.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS          64
#define SLOTS_PER_SHARD 1024 /* 65,536 live addresses in all */

struct slot {
    struct kf_ipaddr ip; /* an address, or a network's first address (`net`) */
    uint8_t used, net;
    uint32_t conns, handshakes;
    double tokens;
    int64_t last_ms;
};

struct shard {
    pthread_mutex_t lock;
    struct slot slots[SLOTS_PER_SHARD];
};

struct kf_limits {
    pthread_mutex_t conf_lock;
    struct kf_limits_conf conf;
    uint64_t conns;      /* atomic */
    uint64_t handshakes; /* atomic */
    struct shard *shards;
};

enum kf_err kf_ipaddr_from_sockaddr(const struct sockaddr *sa, struct kf_ipaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->b[10] = 0xff;
        out->b[11] = 0xff;
        memcpy(out->b + 12, &in->sin_addr, 4);
        return KF_OK;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return KF_OK;
    }
    return kf_fail(KF_E_INVALID, "not an IP address (family %d)", sa->sa_family);
}

static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void kf_ipaddr_text(const struct kf_ipaddr *ip, char *out, size_t cap)
{
    if (memcmp(ip->b, mapped, 12) == 0)
        inet_ntop(AF_INET, ip->b + 12, out, (socklen_t)cap);
    else
        inet_ntop(AF_INET6, ip->b, out, (socklen_t)cap);
}

/* The network of an address: IPv4 /24, IPv6 /64. */
static struct kf_ipaddr net_of(const struct kf_ipaddr *ip)
{
    struct kf_ipaddr n = *ip;
    if (memcmp(ip->b, mapped, 12) == 0)
        n.b[15] = 0;
    else
        memset(n.b + 8, 0, 8);
    return n;
}

enum kf_err kf_limits_new(const struct kf_limits_conf *conf, struct kf_limits **out)
{
    struct kf_limits *l = calloc(1, sizeof(*l));
    if (l) l->shards = calloc(SHARDS, sizeof(*l->shards));
    if (!l || !l->shards) {
        free(l);
        return kf_fail(KF_E_NOMEM, "out of memory for the address table");
    }
    pthread_mutex_init(&l->conf_lock, NULL);
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&l->shards[i].lock, NULL);
    l->conf = *conf;
    *out = l;
    return KF_OK;
}

void kf_limits_free(struct kf_limits *l)
{
    if (!l) return;
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_destroy(&l->shards[i].lock);
    pthread_mutex_destroy(&l->conf_lock);
    free(l->shards);
    free(l);
}

void kf_limits_configure(struct kf_limits *l, const struct kf_limits_conf *conf)
{
    pthread_mutex_lock(&l->conf_lock);
    l->conf = *conf;
    pthread_mutex_unlock(&l->conf_lock);
}

static struct kf_limits_conf conf_of(struct kf_limits *l)
{
    struct kf_limits_conf c;
    pthread_mutex_lock(&l->conf_lock);
    c = l->conf;
    pthread_mutex_unlock(&l->conf_lock);
    return c;
}

/* FNV-1a over the address and whether it is a network: spreads them over shards and slots. */
static uint64_t ip_hash(const struct kf_ipaddr *ip, int net)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)net;
    for (int i = 0; i < 16; i++) {
        h ^= ip->b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Refills a bucket up to now. */
static void refill(struct slot *s, const struct kf_limits_conf *c, int64_t now_ms)
{
    double burst = c->burst_per_ip < 1 ? 1 : c->burst_per_ip;
    if (now_ms > s->last_ms) s->tokens += (double)(now_ms - s->last_ms) / 1000.0 * c->rate_per_ip;
    if (s->tokens > burst) s->tokens = burst;
    s->last_ms = now_ms;
}

/* A slot with no connection, no handshake and a full bucket carries no state: it can go. */
static int stale(struct slot *s, const struct kf_limits_conf *c, int64_t now_ms)
{
    double burst = c->burst_per_ip < 1 ? 1 : c->burst_per_ip;
    if (s->conns || s->handshakes) return 0;
    if (s->net) return 1;
    refill(s, c, now_ms);
    return c->rate_per_ip <= 0 || s->tokens >= burst;
}

/*
 * Finds the slot of `ip` (an address, or a network when `net`) in its shard (locked by the
 * caller), or makes one when `create`. Slots are never emptied, only reused, so a probe chain is
 * never broken: a lookup goes on past others until it finds this one or a never-used slot.
 */
static struct slot *find(struct shard *sh, const struct kf_ipaddr *ip, int net, uint64_t h,
                         const struct kf_limits_conf *c, int64_t now_ms, int create)
{
    struct slot *reusable = NULL;
    size_t start = (size_t)(h >> 6) % SLOTS_PER_SHARD;
    for (size_t i = 0; i < SLOTS_PER_SHARD; i++) {
        struct slot *s = &sh->slots[(start + i) % SLOTS_PER_SHARD];
        if (!s->used) {
            if (!create) return NULL;
            if (!reusable) reusable = s;
            break;
        }
        if (s->net == net && memcmp(s->ip.b, ip->b, 16) == 0) return s;
        if (create && !reusable && stale(s, c, now_ms)) reusable = s;
    }
    if (!reusable) return NULL;
    memset(reusable, 0, sizeof(*reusable));
    reusable->used = 1;
    reusable->net = (uint8_t)net;
    reusable->ip = *ip;
    reusable->tokens = c->burst_per_ip < 1 ? 1 : c->burst_per_ip;
    reusable->last_ms = now_ms;
    return reusable;
}

/*
 * Counts a new connection (and its handshake) for one slot, within `max_conns` and
 * `max_handshakes` (0: none). `net` says which kind of slot, for the verdicts.
 */
static enum kf_limits_verdict take(struct kf_limits *l, const struct kf_ipaddr *ip, int net,
                                   unsigned max_conns, unsigned max_handshakes,
                                   const struct kf_limits_conf *c, int64_t now_ms)
{
    uint64_t h = ip_hash(ip, net);
    struct shard *sh = &l->shards[h % SHARDS];
    enum kf_limits_verdict v = KF_LIMITS_OK;
    struct slot *s;
    pthread_mutex_lock(&sh->lock);
    s = find(sh, ip, net, h, c, now_ms, 1);
    if (!s)
        v = KF_LIMITS_TABLE_FULL;
    else if (max_conns && s->conns >= max_conns)
        v = net ? KF_LIMITS_PER_NET : KF_LIMITS_PER_IP;
    else if (max_handshakes && s->handshakes >= max_handshakes)
        v = net ? KF_LIMITS_HANDSHAKES_PER_NET : KF_LIMITS_HANDSHAKES_PER_IP;
    else
        s->conns++, s->handshakes++;
    pthread_mutex_unlock(&sh->lock);
    return v;
}

/* Gives back what `take` counted: a connection (`conns`) and/or its handshake (`handshakes`). */
static void give(struct kf_limits *l, const struct kf_ipaddr *ip, int net, int conns,
                 int handshakes, const struct kf_limits_conf *c)
{
    uint64_t h = ip_hash(ip, net);
    struct shard *sh = &l->shards[h % SHARDS];
    struct slot *s;
    pthread_mutex_lock(&sh->lock);
    s = find(sh, ip, net, h, c, 0, 0);
    if (s && conns && s->conns) s->conns--;
    if (s && handshakes && s->handshakes) s->handshakes--;
    pthread_mutex_unlock(&sh->lock);
}

/*
 * A source's share of a global budget `all` (0: none): what it is configured to (`share`, 0:
 * none), but never more than `within` (0: no bound) nor more than half of `all`, so that no
 * single network, and no address in it, can hold a whole budget whatever the configuration says.
 */
static unsigned share_of(unsigned share, unsigned within, unsigned all)
{
    unsigned half = all ? (all / 2 ? all / 2 : 1) : 0;
    if (half && (!share || share > half)) share = half;
    if (within && (!share || share > within)) share = within;
    return share;
}

enum kf_limits_verdict kf_limits_conn_open(struct kf_limits *l, const struct kf_ipaddr *ip,
                                           int64_t now_ms, int *over_handshakes)
{
    struct kf_limits_conf c = conf_of(l);
    struct kf_ipaddr net = net_of(ip);
    unsigned net_conns = share_of(c.max_conns_per_net, 0, c.max_conns);
    unsigned net_hs = share_of(c.max_handshakes_per_net, 0, c.max_handshakes);
    enum kf_limits_verdict v;
    uint64_t hs;

    *over_handshakes = 0;
    if (c.max_conns && __atomic_load_n(&l->conns, __ATOMIC_RELAXED) >= c.max_conns)
        return KF_LIMITS_TOTAL;
    v = take(l, ip, 0, share_of(c.max_conns_per_ip, net_conns, c.max_conns),
             share_of(c.max_handshakes_per_ip, net_hs, c.max_handshakes), &c, now_ms);
    if (v) return v;
    v = take(l, &net, 1, net_conns, net_hs, &c, now_ms);
    if (v) {
        give(l, ip, 0, 1, 1, &c);
        return v;
    }
    __atomic_add_fetch(&l->conns, 1, __ATOMIC_RELAXED);
    hs = __atomic_add_fetch(&l->handshakes, 1, __ATOMIC_RELAXED);
    if (c.max_handshakes && hs > c.max_handshakes) *over_handshakes = 1;
    return KF_LIMITS_OK;
}

void kf_limits_handshake_done(struct kf_limits *l, const struct kf_ipaddr *ip)
{
    struct kf_limits_conf c = conf_of(l);
    struct kf_ipaddr net = net_of(ip);
    __atomic_sub_fetch(&l->handshakes, 1, __ATOMIC_RELAXED);
    give(l, ip, 0, 0, 1, &c);
    give(l, &net, 1, 0, 1, &c);
}

void kf_limits_conn_close(struct kf_limits *l, const struct kf_ipaddr *ip, int handshake_pending)
{
    struct kf_limits_conf c = conf_of(l);
    struct kf_ipaddr net = net_of(ip);
    if (handshake_pending) __atomic_sub_fetch(&l->handshakes, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&l->conns, 1, __ATOMIC_RELAXED);
    give(l, ip, 0, 1, handshake_pending, &c);
    give(l, &net, 1, 1, handshake_pending, &c);
}

unsigned kf_limits_request(struct kf_limits *l, const struct kf_ipaddr *ip, int64_t now_ms)
{
    struct kf_limits_conf c = conf_of(l);
    uint64_t h = ip_hash(ip, 0);
    struct shard *sh = &l->shards[h % SHARDS];
    unsigned wait = 0;
    struct slot *s;

    if (c.rate_per_ip <= 0) return 0;
    pthread_mutex_lock(&sh->lock);
    s = find(sh, ip, 0, h, &c, now_ms, 1);
    if (!s) {
        wait = 1; /* no room to remember the address: treat it as over its rate */
    } else {
        refill(s, &c, now_ms);
        if (s->tokens >= 1) {
            s->tokens -= 1;
        } else {
            double secs = (1 - s->tokens) / c.rate_per_ip;
            wait = (unsigned)ceil(secs);
            if (wait < 1) wait = 1;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return wait;
}

uint64_t kf_limits_connections(const struct kf_limits *l)
{
    return __atomic_load_n(&l->conns, __ATOMIC_RELAXED);
}

uint64_t kf_limits_handshakes(const struct kf_limits *l)
{
    return __atomic_load_n(&l->handshakes, __ATOMIC_RELAXED);
}

const char *kf_limits_verdict_text(enum kf_limits_verdict v)
{
    switch (v) {
    case KF_LIMITS_OK: return "allowed";
    case KF_LIMITS_PER_IP: return "too many connections from this address";
    case KF_LIMITS_TOTAL: return "too many connections";
    case KF_LIMITS_TABLE_FULL: return "too many addresses";
    case KF_LIMITS_PER_NET: return "too many connections from this address's network";
    case KF_LIMITS_HANDSHAKES_PER_IP: return "too many TLS handshakes in flight from this address";
    case KF_LIMITS_HANDSHAKES_PER_NET:
        return "too many TLS handshakes in flight from this address's network";
    }
    return "refused";
}
