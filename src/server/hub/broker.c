#include "server/hub/broker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/htab.h"
#include "common/ident.h"

/* ---- the broker's state ---- */

struct sub {
    struct kf_session *s;
    struct bucket *bucket;   /* NULL: on the wildcard list */
    struct sub *prev, *next; /* in the bucket or the wildcard list */
    struct sub *s_next;      /* in the session */
    struct kf_broker_sub_opts opts;
    size_t len;
    uint8_t filter[];
};

struct retained {
    struct retained *next;
    struct kf_msg *msg;
};

/* What one publisher holds retained, for its quota. */
struct owner {
    struct kf_hnode node;
    unsigned n;
    size_t bytes;
    char id[KF_ID_MAX + 3];
};

/* Everything whose topic starts with the same two levels. */
struct bucket {
    struct kf_hnode node;
    struct sub *subs;
    struct retained *ret;
    size_t klen;
    uint8_t key[];
};

struct qitem {
    struct qitem *next;
    struct kf_msg *msg;
    uint8_t qos, retain;
    uint8_t dup;        /* it may have been sent before a restart */
    uint16_t packet_id; /* QoS 1 and 2: given when queued, so that the store keeps it */
    uint32_t sub_id;
    uint64_t seq; /* its row in the store (0: not stored); not sent before it is settled */
};

struct inflight {
    uint16_t packet_id;
    uint8_t qos;
    uint8_t released; /* QoS 2: PUBREC seen, awaiting PUBCOMP */
    uint8_t retain;
    uint32_t sub_id;
    uint64_t seq; /* its row in the store (0: not stored) */
    struct kf_msg *msg;
};

struct kf_session {
    struct kf_hnode node;
    char id[KF_ID_MAX + 3]; /* as the caller names it (the hub: "d:<id>", "s:<name>") */
    struct kf_broker_peer *peer;
    struct sub *subs;
    unsigned n_subs;
    struct qitem *qhead, *qtail;
    struct qitem *qid_first; /* the oldest queued item with a packet id */
    unsigned qlen;
    struct inflight *inflight;
    unsigned n_inflight, cap_inflight;
    unsigned resend; /* inflight entries still to send again after a resume */
    uint16_t next_id;
    uint16_t *qos2_in; /* inbound QoS 2 packet ids awaiting PUBREL */
    unsigned n_qos2_in, cap_qos2_in;
    uint32_t expiry_s;
    int64_t offline_since;
    struct kf_msg *will; /* a delayed will, published at will_at unless the client comes back */
    int64_t will_at;
    /* routing: the publish this session was last matched by, and its place in the match list */
    uint64_t stamp;
    size_t match_index;
    int stored;                               /* it outlives its connection: the store has it */
    int held;                                 /* on the broker's held list */
    struct kf_session *held_prev, *held_next; /* waiting for its head item to be settled */
};

struct match {
    struct kf_session *s;
    uint8_t qos, retain;
    uint32_t sub_id;
    size_t next; /* the session's next copy of this message (NO_MATCH: none) */
};

#define NO_MATCH ((size_t)-1)

struct kf_broker {
    pthread_mutex_t lock;
    struct kf_broker_conf conf;
    struct kf_htab sessions, buckets, owners;
    struct sub *wild;
    uint64_t stamp;
    struct match *matches;
    size_t n_matches, cap_matches;
    uint64_t n_online, n_subs, n_retained, n_queued, routed, dropped;
    size_t retained_bytes;
    kf_broker_change_cb change; /* NULL: nothing is persisted */
    void *change_arg;
    unsigned n_ops;      /* ops said during the current call */
    uint64_t seq;        /* the last message sequence number given */
    uint64_t commit_seq; /* the highest one the current call's ops hold */
    uint64_t settled;    /* messages up to this one may be sent */
    struct kf_session *held;
    struct kf_buf val; /* a row's value, being written */
};

static void will_now(struct kf_broker *b, struct kf_session *s);
static size_t publish_locked(struct kf_broker *b, struct kf_msg *m, size_t *lost);
static void unlock(struct kf_broker *b);
static void put_session(struct kf_broker *b, struct kf_session *s, int64_t offline_wall);
static void store_drop(struct kf_broker *b, struct kf_session *s);
static void store_delete(struct kf_broker *b, struct kf_session *s, int kind, int64_t key,
                         int behind);
static int store_msg(struct kf_broker *b, struct kf_session *s, struct qitem *q);
static void store_msg_released(struct kf_broker *b, struct kf_session *s, const struct inflight *f);
static void emit(struct kf_broker *b, const struct kf_broker_op *op);
static void hold(struct kf_broker *b, struct kf_session *s);
static void settle(struct kf_broker *b, uint64_t seq);
static struct kf_session *session_new(struct kf_broker *b, const char *name);
static int qos2_state(struct kf_broker *b, const struct kf_session *s, uint16_t packet_id);
static int qos2_record(struct kf_broker *b, struct kf_session *s, uint16_t packet_id);

/* ---- messages ---- */

struct kf_msg *kf_msg_new(const struct kf_mqtt_publish *p, struct kf_mqtt_str topic,
                          const char *origin, int64_t now_ms)
{
    const struct kf_mqtt_props *pr = &p->props;
    size_t need = sizeof(struct kf_msg) + topic.len + p->payload_len, pos = 0;
    struct kf_mqtt_str name, value;
    struct kf_mqtt_user_prop *up;
    struct kf_msg *m;
    uint8_t *data;
    size_t it = 0;

    need += pr->content_type.len + pr->response_topic.len + pr->correlation_data.len;
    need += pr->n_user_props * sizeof(struct kf_mqtt_user_prop) + (pr->raw_len ? pr->raw_len : 0);
    m = calloc(1, need);
    if (!m) return NULL;
    up = (struct kf_mqtt_user_prop *)(m + 1);
    data = (uint8_t *)(up + pr->n_user_props);
#define KEEP(dst, src)                          \
    do {                                        \
        memcpy(data + pos, (src).p, (src).len); \
        (dst).p = data + pos;                   \
        (dst).len = (src).len;                  \
        pos += (src).len;                       \
    } while (0)
    m->refs = 1;
    m->qos = p->qos;
    m->retain = (uint8_t)p->retain;
    KEEP(m->topic, topic);
    memcpy(data + pos, p->payload, p->payload_len);
    m->payload = data + pos;
    m->payload_len = p->payload_len;
    pos += p->payload_len;
    if (KF_MQTT_HAS(pr, KF_MQTT_P_PAYLOAD_FORMAT)) {
        m->has_payload_format = 1;
        m->payload_format = pr->payload_format;
    }
    if (KF_MQTT_HAS(pr, KF_MQTT_P_MESSAGE_EXPIRY))
        m->expires_ms = now_ms + (int64_t)pr->message_expiry * 1000;
    if (KF_MQTT_HAS(pr, KF_MQTT_P_CONTENT_TYPE)) KEEP(m->content_type, pr->content_type);
    if (KF_MQTT_HAS(pr, KF_MQTT_P_RESPONSE_TOPIC)) KEEP(m->response_topic, pr->response_topic);
    if (KF_MQTT_HAS(pr, KF_MQTT_P_CORRELATION_DATA))
        KEEP(m->correlation_data, pr->correlation_data);
    m->user = up;
    while (m->n_user < pr->n_user_props && kf_mqtt_user_props_next(pr, &it, &name, &value)) {
        KEEP(up[m->n_user].name, name);
        KEEP(up[m->n_user].value, value);
        m->n_user++;
    }
#undef KEEP
    snprintf(m->origin, sizeof(m->origin), "%s", origin ? origin : "");
    m->size = need;
    return m;
}

struct kf_msg *kf_msg_ref(struct kf_msg *m)
{
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void kf_msg_release(struct kf_msg *m)
{
    if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) free(m);
}

/* ---- buckets: the first two levels of a topic ---- */

/* The length of the first two levels of `t` ("a/b" of "a/b/c"; all of "a" or "a/b"). */
static size_t prefix_len(const uint8_t *t, size_t len)
{
    const uint8_t *s1 = memchr(t, '/', len), *s2;
    if (!s1) return len;
    s2 = memchr(s1 + 1, '/', len - (size_t)(s1 + 1 - t));
    return s2 ? (size_t)(s2 - t) : len;
}

/* 1 when a filter's two-level prefix is literal, so it can only match topics with that prefix. */
static int filter_literal(const uint8_t *f, size_t len, size_t *plen)
{
    *plen = prefix_len(f, len);
    return !memchr(f, '+', *plen) && !memchr(f, '#', *plen);
}

static struct bucket *bucket_find(struct kf_broker *b, const uint8_t *key, size_t klen)
{
    struct kf_hnode *n = kf_htab_find(&b->buckets, key, klen, kf_hash_bytes(key, klen));
    return n ? (struct bucket *)n : NULL;
}

static struct bucket *bucket_get(struct kf_broker *b, const uint8_t *key, size_t klen)
{
    struct bucket *k = bucket_find(b, key, klen);
    if (k) return k;
    k = calloc(1, sizeof(*k) + klen);
    if (!k) return NULL;
    memcpy(k->key, key, klen);
    k->klen = klen;
    k->node.key = k->key;
    k->node.klen = klen;
    k->node.hash = kf_hash_bytes(key, klen);
    if (kf_htab_insert(&b->buckets, &k->node)) {
        free(k);
        return NULL;
    }
    return k;
}

static void bucket_maybe_free(struct kf_broker *b, struct bucket *k)
{
    if (k->subs || k->ret) return;
    kf_htab_remove(&b->buckets, &k->node);
    free(k);
}

/* ---- sessions ---- */

static struct kf_session *session_find(struct kf_broker *b, const char *id)
{
    size_t n = strlen(id);
    struct kf_hnode *h =
        kf_htab_find(&b->sessions, (const uint8_t *)id, n, kf_hash_bytes((const uint8_t *)id, n));
    return h ? (struct kf_session *)h : NULL;
}

static void sub_unlink(struct kf_broker *b, struct sub *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else if (u->bucket)
        u->bucket->subs = u->next;
    else
        b->wild = u->next;
    if (u->next) u->next->prev = u->prev;
    if (u->bucket) bucket_maybe_free(b, u->bucket);
    b->n_subs--;
}

static void session_clear(struct kf_broker *b, struct kf_session *s)
{
    struct sub *u, *un;
    struct qitem *q, *qn;
    for (u = s->subs; u; u = un) {
        un = u->s_next;
        sub_unlink(b, u);
        free(u);
    }
    s->subs = NULL;
    s->n_subs = 0;
    for (q = s->qhead; q; q = qn) {
        qn = q->next;
        kf_msg_release(q->msg);
        free(q);
    }
    b->n_queued -= s->qlen;
    s->qhead = s->qtail = s->qid_first = NULL;
    s->qlen = 0;
    for (unsigned i = 0; i < s->n_inflight; i++)
        kf_msg_release(s->inflight[i].msg);
    s->n_inflight = 0;
    s->resend = 0;
    s->n_qos2_in = 0;
}

static void held_remove(struct kf_broker *b, struct kf_session *s)
{
    if (!s->held) return;
    if (s->held_prev)
        s->held_prev->held_next = s->held_next;
    else
        b->held = s->held_next;
    if (s->held_next) s->held_next->held_prev = s->held_prev;
    s->held = 0;
    s->held_prev = s->held_next = NULL;
}

static void session_free(struct kf_broker *b, struct kf_session *s)
{
    kf_msg_release(s->will);
    s->will = NULL;
    store_drop(b, s);
    held_remove(b, s);
    session_clear(b, s);
    kf_htab_remove(&b->sessions, &s->node);
    free(s->inflight);
    free(s->qos2_in);
    free(s);
}

static void inbox_push(struct kf_broker_peer *p)
{
    struct kf_broker_inbox *in = p->inbox;
    int was_empty;
    if (p->queued || !in) return;
    was_empty = in->head == NULL;
    p->queued = 1;
    p->prev = NULL;
    p->next = in->head;
    if (in->head) in->head->prev = p;
    in->head = p;
    if (was_empty && in->wake) in->wake(in->wake_arg);
}

static void inbox_remove(struct kf_broker_peer *p)
{
    if (!p->queued) return;
    if (p->prev)
        p->prev->next = p->next;
    else
        p->inbox->head = p->next;
    if (p->next) p->next->prev = p->prev;
    p->queued = 0;
    p->prev = p->next = NULL;
}

/* ---- the interface ---- */

enum kf_err kf_broker_new(const struct kf_broker_conf *conf, struct kf_broker **out)
{
    struct kf_broker *b = calloc(1, sizeof(*b));
    *out = NULL;
    if (!b) return kf_fail(KF_E_NOMEM, "out of memory");
    pthread_mutex_init(&b->lock, NULL);
    b->conf = *conf;
    kf_buf_init(&b->val, 17u * 1024 * 1024);
    *out = b;
    return KF_OK;
}

void kf_broker_free(struct kf_broker *b)
{
    if (!b) return;
    b->change = NULL; /* what is stored stays stored */
    for (size_t i = 0; i < b->sessions.n_slots; i++)
        while (b->sessions.slots[i])
            session_free(b, (struct kf_session *)b->sessions.slots[i]);
    for (size_t i = 0; i < b->buckets.n_slots; i++)
        while (b->buckets.slots[i]) {
            struct bucket *k = (struct bucket *)b->buckets.slots[i];
            struct retained *r, *rn;
            for (r = k->ret; r; r = rn) {
                rn = r->next;
                kf_msg_release(r->msg);
                free(r);
            }
            k->ret = NULL;
            bucket_maybe_free(b, k);
        }
    for (size_t i = 0; i < b->owners.n_slots; i++)
        while (b->owners.slots[i]) {
            struct kf_hnode *n = b->owners.slots[i];
            kf_htab_remove(&b->owners, n);
            free(n);
        }
    kf_htab_free(&b->sessions);
    kf_htab_free(&b->buckets);
    kf_htab_free(&b->owners);
    free(b->matches);
    kf_buf_free(&b->val);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void kf_broker_configure(struct kf_broker *b, const struct kf_broker_conf *conf)
{
    pthread_mutex_lock(&b->lock);
    b->conf = *conf;
    unlock(b);
}

enum kf_err kf_broker_attach(struct kf_broker *b, struct kf_broker_peer *peer,
                             const char *client_id, int clean, uint32_t expiry_s, int *present)
{
    struct kf_session *s;
    enum kf_err rc = KF_OK;

    *present = 0;
    pthread_mutex_lock(&b->lock);
    s = session_find(b, client_id);
    if (s && s->peer) {
        struct kf_broker_peer *old = s->peer;
        old->session = NULL;
        old->kicked = 1;
        old->kick_reason = KF_MQTT_RC_SESSION_TAKEN_OVER;
        s->peer = NULL;
        b->n_online--;
        inbox_push(old);
    }
    /* A delayed will: the session ends now (clean start) or its client is back in time. */
    if (s && clean) will_now(b, s);
    if (s && s->will) {
        kf_msg_release(s->will);
        s->will = NULL;
    }
    if (s && clean) {
        store_drop(b, s);
        held_remove(b, s);
        session_clear(b, s);
    }
    if (s && !clean) {
        *present = 1;
        s->resend = s->n_inflight;
    }
    if (!s) {
        s = session_new(b, client_id);
        if (!s) {
            rc = kf_errlast();
            goto out;
        }
    }
    s->expiry_s = expiry_s;
    s->peer = peer;
    peer->session = s;
    peer->kicked = 0;
    b->n_online++;
    if (b->change && expiry_s) {
        s->stored = 1;
        put_session(b, s, 0);
    } else {
        store_drop(b, s); /* it ends with this connection now */
    }
    /* Something may be waiting already (a resumed session). */
    if (s->qlen || s->resend) inbox_push(peer);
out:
    unlock(b);
    return rc;
}

void kf_broker_set_expiry(struct kf_broker *b, struct kf_broker_peer *peer, uint32_t expiry_s)
{
    pthread_mutex_lock(&b->lock);
    if (peer->session) {
        peer->session->expiry_s = expiry_s;
        if (peer->session->stored && expiry_s) put_session(b, peer->session, 0);
    }
    unlock(b);
}

void kf_broker_detach_will(struct kf_broker *b, struct kf_broker_peer *peer, struct kf_msg *m,
                           uint32_t delay_s, int64_t now_ms)
{
    struct kf_session *s;
    size_t lost;
    pthread_mutex_lock(&b->lock);
    s = peer->session;
    if (!s) {
        /* Taken over: a new connection to the session came before any delay ran out. */
        if (delay_s == 0) publish_locked(b, m, &lost);
    } else if (s->expiry_s != 0 && delay_s > 0) {
        kf_msg_release(s->will);
        s->will = kf_msg_ref(m);
        s->will_at = now_ms + (int64_t)delay_s * 1000;
    } else {
        publish_locked(b, m, &lost);
    }
    unlock(b);
    kf_broker_detach(b, peer, now_ms);
}

void kf_broker_detach(struct kf_broker *b, struct kf_broker_peer *peer, int64_t now_ms)
{
    struct kf_session *s;
    pthread_mutex_lock(&b->lock);
    inbox_remove(peer);
    s = peer->session;
    peer->session = NULL;
    if (s) {
        s->peer = NULL;
        b->n_online--;
        s->offline_since = now_ms;
        if (s->expiry_s == 0)
            session_free(b, s);
        else if (s->stored)
            put_session(b, s, now_ms);
    }
    unlock(b);
}

static int id_in_use(const struct kf_session *s, uint16_t id)
{
    for (unsigned i = 0; i < s->n_inflight; i++)
        if (s->inflight[i].packet_id == id) return 1;
    return 0;
}

static struct qitem *next_with_id(struct qitem *q)
{
    while (q && !q->packet_id)
        q = q->next;
    return q;
}

/*
 * The packet id for a QoS 1 or 2 message queued now: the next one in turn that is not in flight.
 * Queued messages hold ids given in turn from the oldest (qid_first) on, so the next id can only
 * meet one of them by going round to that oldest: then the session holds too much (0).
 */
static int next_packet_id(struct kf_session *s, uint16_t *out)
{
    uint16_t first = s->qid_first ? s->qid_first->packet_id : 0;
    for (unsigned tries = 0; tries < 65535; tries++) {
        uint16_t id = s->next_id == 65535 ? 1 : (uint16_t)(s->next_id + 1);
        if (id == first) return 0;
        s->next_id = id;
        if (!id_in_use(s, id)) {
            *out = id;
            return 1;
        }
    }
    return 0;
}

static void queue_append(struct kf_broker *b, struct kf_session *s, struct qitem *q)
{
    if (q->packet_id && !s->qid_first) s->qid_first = q;
    if (s->qtail)
        s->qtail->next = q;
    else
        s->qhead = q;
    s->qtail = q;
    s->qlen++;
    b->n_queued++;
}

/*
 * `arr` with room for one more element (`n` used of `*cap`): itself, or grown (then `*cap` is
 * its new capacity); NULL when out of memory, `arr` unchanged.
 */
static void *room(void *arr, unsigned *cap, unsigned n, size_t size)
{
    unsigned ncap;
    void *p;
    if (n < *cap) return arr;
    ncap = *cap ? *cap * 2 : 8;
    p = realloc(arr, ncap * size);
    if (p) *cap = ncap;
    return p;
}

static int inflight_room(struct kf_session *s)
{
    void *p = room(s->inflight, &s->cap_inflight, s->n_inflight, sizeof(*s->inflight));
    if (p) s->inflight = p;
    return p != NULL;
}

static int qos2_room(struct kf_session *s)
{
    void *p = room(s->qos2_in, &s->cap_qos2_in, s->n_qos2_in, sizeof(*s->qos2_in));
    if (p) s->qos2_in = p;
    return p != NULL;
}

/* Queues `m` for session `s`; 0 when its queue is full (the message is dropped for it). */
static int enqueue(struct kf_broker *b, struct kf_session *s, struct kf_msg *m, uint8_t qos,
                   uint8_t retain, uint32_t sub_id)
{
    struct qitem *q;
    uint16_t id = 0;
    /* An offline session keeps only what it must be given (QoS 1 and 2), as brokers do. */
    if (!s->peer && qos == 0) return 1;
    if (s->qlen >= b->conf.max_queued) return 0;
    if (qos && !next_packet_id(s, &id)) return 0;
    q = malloc(sizeof(*q));
    if (!q) return 0;
    q->next = NULL;
    q->msg = kf_msg_ref(m);
    q->qos = qos;
    q->retain = retain;
    q->sub_id = sub_id;
    q->dup = 0;
    q->packet_id = id;
    q->seq = 0;
    if (qos && s->stored && !store_msg(b, s, q)) {
        kf_msg_release(q->msg);
        free(q);
        return 0;
    }
    queue_append(b, s, q);
    if (s->peer) inbox_push(s->peer);
    return 1;
}

/* One more entry at the end of the match list; 0 when there is no memory for it. */
static int add_match(struct kf_broker *b)
{
    if (b->n_matches == b->cap_matches) {
        size_t ncap = b->cap_matches ? b->cap_matches * 2 : 64;
        void *p = realloc(b->matches, ncap * sizeof(*b->matches));
        if (!p) return 0;
        b->matches = p;
        b->cap_matches = ncap;
    }
    b->n_matches++;
    return 1;
}

static void match_sub(struct kf_broker *b, struct sub *u, const struct kf_msg *m)
{
    struct kf_session *s = u->s;
    struct match *x;
    if (!kf_mqtt_topic_match(u->filter, u->len, m->topic.p, m->topic.len)) return;
    if (u->opts.no_local && strcmp(s->id, m->origin) == 0) return;
    if (s->stamp == b->stamp) {
        /*
         * Overlapping subscriptions: one copy for all that carry no subscription identifier or
         * the same one, at the highest QoS they grant [MQTT-3.3.4-2], and one more copy for
         * each further identifier, carrying it [MQTT-3.3.4-5]. A copy carries every identifier
         * of the subscriptions it stands for [MQTT-3.3.4-4].
         */
        size_t i = s->match_index, last = i;
        for (; i != NO_MATCH; last = i, i = b->matches[i].next) {
            x = &b->matches[i];
            if (x->sub_id && u->opts.sub_id && x->sub_id != u->opts.sub_id) continue;
            if (u->opts.qos > x->qos) x->qos = u->opts.qos;
            if (u->opts.retain_as_published) x->retain = m->retain;
            if (!x->sub_id) x->sub_id = u->opts.sub_id;
            return;
        }
        if (!add_match(b)) return;
        b->matches[last].next = b->n_matches - 1;
    } else {
        if (!add_match(b)) return;
        s->stamp = b->stamp;
        s->match_index = b->n_matches - 1;
    }
    x = &b->matches[b->n_matches - 1];
    x->s = s;
    x->qos = u->opts.qos;
    x->retain = u->opts.retain_as_published ? m->retain : 0;
    x->sub_id = u->opts.sub_id;
    x->next = NO_MATCH;
}

static struct owner *owner_find(struct kf_broker *b, const char *id)
{
    size_t n = strlen(id);
    struct kf_hnode *h =
        kf_htab_find(&b->owners, (const uint8_t *)id, n, kf_hash_bytes((const uint8_t *)id, n));
    return h ? (struct owner *)h : NULL;
}

/* Counts `m` held retained (+1) or given up (-1) against its publisher. */
static void owner_count(struct kf_broker *b, const struct kf_msg *m, int sign)
{
    struct owner *o = owner_find(b, m->origin);
    if (!o && sign > 0) {
        o = calloc(1, sizeof(*o));
        if (!o) return; /* uncounted: the global bound still holds */
        snprintf(o->id, sizeof(o->id), "%s", m->origin);
        o->node.key = (const uint8_t *)o->id;
        o->node.klen = strlen(o->id);
        o->node.hash = kf_hash_bytes(o->node.key, o->node.klen);
        if (kf_htab_insert(&b->owners, &o->node)) {
            free(o);
            return;
        }
    }
    if (!o) return;
    if (sign > 0) {
        o->n++;
        o->bytes += m->size;
    } else {
        o->n -= o->n ? 1 : 0;
        o->bytes -= o->bytes >= m->size ? m->size : o->bytes;
    }
    if (!o->n) {
        kf_htab_remove(&b->owners, &o->node);
        free(o);
    }
}

/* The retained entry for `m`'s topic, or where one would go; `*k` its bucket (may be NULL). */
static struct retained **retained_slot(struct kf_broker *b, const struct kf_msg *m,
                                       struct bucket **k)
{
    size_t plen = prefix_len(m->topic.p, m->topic.len);
    struct retained **pp;
    *k = bucket_find(b, m->topic.p, plen);
    if (!*k) return NULL;
    for (pp = &(*k)->ret; *pp; pp = &(*pp)->next)
        if ((*pp)->msg->topic.len == m->topic.len &&
            memcmp((*pp)->msg->topic.p, m->topic.p, m->topic.len) == 0)
            return pp;
    return NULL;
}

/*
 * Whether retained `m` (a non-empty payload) may be kept: within its publisher's share and the
 * broker's bounds, counting what it would replace as given up.
 */
static enum kf_retain_refusal retain_allowed(struct kf_broker *b, const struct kf_msg *m)
{
    struct bucket *k;
    struct retained **pp = retained_slot(b, m, &k);
    const struct kf_msg *old = pp ? (*pp)->msg : NULL;
    struct owner *o = owner_find(b, m->origin);
    size_t n = o ? o->n : 0, bytes = o ? o->bytes : 0;
    size_t all_n = b->n_retained, all_bytes = b->retained_bytes;

    if (old) {
        all_n--;
        all_bytes -= old->size;
        if (strcmp(old->origin, m->origin) == 0) {
            n--;
            bytes -= old->size;
        }
    }
    if (n + 1 > b->conf.max_retained_per_id || bytes + m->size > b->conf.max_retained_bytes_per_id)
        return KF_RETAIN_QUOTA;
    if (all_n + 1 > b->conf.max_retained || all_bytes + m->size > b->conf.max_retained_bytes)
        return KF_RETAIN_FULL;
    return KF_RETAIN_OK;
}

/* Keeps retained `m` (allowed by retain_allowed), or with an empty payload deletes the topic's. */
static void retain_msg(struct kf_broker *b, struct kf_msg *m)
{
    size_t plen = prefix_len(m->topic.p, m->topic.len);
    struct bucket *k;
    struct retained **pp = retained_slot(b, m, &k), *r;

    if (pp) {
        r = *pp;
        /* Replace or, with an empty payload, delete. */
        b->retained_bytes -= r->msg->size;
        owner_count(b, r->msg, -1);
        kf_msg_release(r->msg);
        if (m->payload_len == 0) {
            *pp = r->next;
            free(r);
            b->n_retained--;
            bucket_maybe_free(b, k);
        } else {
            r->msg = kf_msg_ref(m);
            b->retained_bytes += m->size;
            owner_count(b, m, 1);
        }
        return;
    }
    if (m->payload_len == 0) return;
    if (!k) k = bucket_get(b, m->topic.p, plen);
    r = k ? malloc(sizeof(*r)) : NULL;
    if (!r) {
        if (k) bucket_maybe_free(b, k);
        return;
    }
    r->msg = kf_msg_ref(m);
    r->next = k->ret;
    k->ret = r;
    b->n_retained++;
    b->retained_bytes += m->size;
    owner_count(b, m, 1);
}

void kf_broker_restore_retained(struct kf_broker *b, struct kf_msg *m)
{
    pthread_mutex_lock(&b->lock);
    if (m->payload_len) retain_msg(b, m);
    pthread_mutex_unlock(&b->lock);
}

/* ---- messages as bytes ---- */

#define MSG_FORMAT 1

static int put32(struct kf_buf *out, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return kf_buf_append(out, b, 4) != KF_OK;
}

static int put_str(struct kf_buf *out, const uint8_t *p, size_t n)
{
    return put32(out, (uint32_t)n) | (n && kf_buf_append(out, p, n) != KF_OK);
}

enum kf_err kf_msg_encode(const struct kf_msg *m, struct kf_buf *out)
{
    uint8_t head[4] = {MSG_FORMAT, m->qos, m->retain,
                       (uint8_t)((m->has_payload_format ? 1 : 0) | (m->content_type.p ? 2 : 0) |
                                 (m->response_topic.p ? 4 : 0) | (m->correlation_data.p ? 8 : 0))};
    size_t before = out->len;
    int bad = kf_buf_append(out, head, sizeof(head)) != KF_OK;
    bad |= kf_buf_append(out, &m->payload_format, 1) != KF_OK;
    bad |= put32(out, (uint32_t)((uint64_t)m->expires_ms >> 32));
    bad |= put32(out, (uint32_t)m->expires_ms);
    bad |= put_str(out, m->topic.p, m->topic.len);
    bad |= put_str(out, m->payload, m->payload_len);
    bad |= put_str(out, m->content_type.p, m->content_type.len);
    bad |= put_str(out, m->response_topic.p, m->response_topic.len);
    bad |= put_str(out, m->correlation_data.p, m->correlation_data.len);
    bad |= put_str(out, (const uint8_t *)m->origin, strlen(m->origin));
    bad |= put32(out, (uint32_t)m->n_user);
    for (size_t i = 0; i < m->n_user; i++) {
        bad |= put_str(out, m->user[i].name.p, m->user[i].name.len);
        bad |= put_str(out, m->user[i].value.p, m->user[i].value.len);
    }
    if (bad) {
        out->len = before;
        return kf_fail(KF_E_NOMEM, "cannot encode a message");
    }
    return KF_OK;
}

struct reader {
    const uint8_t *p;
    size_t left;
    int bad;
};

static uint32_t get32(struct reader *r)
{
    uint32_t v;
    if (r->left < 4) {
        r->bad = 1;
        return 0;
    }
    v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->left -= 4;
    return v;
}

static struct kf_mqtt_str get_str(struct reader *r)
{
    struct kf_mqtt_str s = {NULL, 0};
    uint32_t n = get32(r);
    if (r->bad || n > r->left || n > 0xFFFFFFu) {
        r->bad = 1;
        return s;
    }
    s.p = r->p;
    s.len = n;
    r->p += n;
    r->left -= n;
    return s;
}

struct kf_msg *kf_msg_decode(const uint8_t *data, size_t len)
{
    struct reader r = {data, len, 0};
    struct kf_mqtt_str topic, payload, ct, rt, cd, origin, names[256], values[256];
    uint8_t flags, pf;
    uint32_t n_user;
    int64_t expires;
    size_t need, pos = 0;
    struct kf_msg *m;
    struct kf_mqtt_user_prop *up;
    uint8_t *d;

    if (len < 13 || data[0] != MSG_FORMAT || data[1] > 2 || data[2] > 1) goto bad;
    flags = data[3];
    pf = data[4];
    r.p += 5;
    r.left -= 5;
    {
        uint64_t hi = get32(&r), lo = get32(&r);
        expires = (int64_t)(hi << 32 | lo);
    }
    topic = get_str(&r);
    payload = get_str(&r);
    ct = get_str(&r);
    rt = get_str(&r);
    cd = get_str(&r);
    origin = get_str(&r);
    n_user = get32(&r);
    if (r.bad || n_user > 256 || !topic.len || origin.len > KF_ID_MAX + 2 || (flags & ~0x0Fu) ||
        (!(flags & 2) && ct.len) || (!(flags & 4) && rt.len) || (!(flags & 8) && cd.len) ||
        memchr(origin.p, '\0', origin.len))
        goto bad;
    need = sizeof(*m) + n_user * sizeof(*up) + topic.len + payload.len + ct.len + rt.len + cd.len;
    for (uint32_t i = 0; i < n_user; i++) {
        names[i] = get_str(&r);
        values[i] = get_str(&r);
        need += names[i].len + values[i].len;
    }
    if (r.bad || r.left) goto bad;
    m = calloc(1, need);
    if (!m) {
        kf_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    up = (struct kf_mqtt_user_prop *)(m + 1);
    d = (uint8_t *)(up + n_user);
#define KEEP(dst, src)                                      \
    do {                                                    \
        if ((src).len) memcpy(d + pos, (src).p, (src).len); \
        (dst).p = d + pos;                                  \
        (dst).len = (src).len;                              \
        pos += (src).len;                                   \
    } while (0)
    m->refs = 1;
    m->qos = data[1];
    m->retain = data[2];
    m->has_payload_format = flags & 1;
    m->payload_format = pf;
    m->expires_ms = expires;
    KEEP(m->topic, topic);
    if (payload.len) memcpy(d + pos, payload.p, payload.len);
    m->payload = d + pos;
    m->payload_len = payload.len;
    pos += payload.len;
    if (flags & 2) KEEP(m->content_type, ct);
    if (flags & 4) KEEP(m->response_topic, rt);
    if (flags & 8) KEEP(m->correlation_data, cd);
    m->user = up;
    for (uint32_t i = 0; i < n_user; i++) {
        KEEP(up[i].name, names[i]);
        KEEP(up[i].value, values[i]);
    }
    m->n_user = n_user;
#undef KEEP
    memcpy(m->origin, origin.p, origin.len);
    m->origin[origin.len] = '\0';
    m->size = need;
    return m;
bad:
    kf_fail(KF_E_MALFORMED, "a stored message that does not read back (%zu bytes)", len);
    return NULL;
}

/* Routes `m` with the lock held; `*lost` counts sessions whose queue was full. */
static size_t publish_locked(struct kf_broker *b, struct kf_msg *m, size_t *lost)
{
    size_t plen = prefix_len(m->topic.p, m->topic.len), queued = 0;
    struct bucket *k;

    *lost = 0;
    b->stamp++;
    b->n_matches = 0;
    k = bucket_find(b, m->topic.p, plen);
    for (struct sub *u = k ? k->subs : NULL; u; u = u->next)
        match_sub(b, u, m);
    for (struct sub *u = b->wild; u; u = u->next)
        match_sub(b, u, m);
    for (size_t i = 0; i < b->n_matches; i++) {
        struct match *x = &b->matches[i];
        uint8_t qos = x->qos < m->qos ? x->qos : m->qos;
        if (enqueue(b, x->s, m, qos, x->retain, x->sub_id))
            queued++;
        else
            (*lost)++;
    }
    /* A will is published whatever its retain flag can get: kept only within the bounds. */
    if (m->retain && (!m->payload_len || retain_allowed(b, m) == KF_RETAIN_OK)) {
        retain_msg(b, m);
        if (b->change) {
            struct kf_broker_op op = {.type = KF_BROKER_RETAIN, .msg = m};
            emit(b, &op);
        }
    }
    b->routed += queued;
    b->dropped += *lost;
    return queued;
}

size_t kf_broker_publish(struct kf_broker *b, struct kf_msg *m, size_t *dropped,
                         enum kf_retain_refusal *refused)
{
    return kf_broker_publish_qos2(b, NULL, 0, m, dropped, refused);
}

size_t kf_broker_publish_qos2(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id,
                              struct kf_msg *m, size_t *dropped, enum kf_retain_refusal *refused)
{
    enum kf_retain_refusal why = KF_RETAIN_OK;
    size_t queued = 0, lost = 0;
    pthread_mutex_lock(&b->lock);
    if (m->retain && m->payload_len) why = retain_allowed(b, m);
    if (!why && peer && peer->session && qos2_state(b, peer->session, packet_id) == 1)
        qos2_record(b, peer->session, packet_id);
    if (!why) queued = publish_locked(b, m, &lost);
    unlock(b);
    if (dropped) *dropped = lost;
    if (refused) *refused = why;
    return queued;
}

/* Publishes and forgets the session's delayed will, if it has one. */
static void will_now(struct kf_broker *b, struct kf_session *s)
{
    size_t lost;
    if (!s->will) return;
    publish_locked(b, s->will, &lost);
    kf_msg_release(s->will);
    s->will = NULL;
}

static void queue_retained(struct kf_broker *b, struct kf_session *s, struct bucket *k,
                           const struct sub *u)
{
    for (struct retained *r = k->ret; r; r = r->next) {
        struct kf_msg *m = r->msg;
        if (!kf_mqtt_topic_match(u->filter, u->len, m->topic.p, m->topic.len)) continue;
        /* Retained messages go out with the retain flag set [MQTT-3.3.1-8]. */
        enqueue(b, s, m, m->qos < u->opts.qos ? m->qos : u->opts.qos, 1, u->opts.sub_id);
    }
}

/*
 * Adds or updates the subscription `filter` of `s`: NULL with kf_fail when it holds max_subs
 * already (`limit`) or out of memory. `*existed` says whether it was there.
 */
static struct sub *sub_add(struct kf_broker *b, struct kf_session *s, const uint8_t *filter,
                           size_t len, const struct kf_broker_sub_opts *opts, int limit,
                           int *existed)
{
    struct sub *u;
    size_t plen;

    *existed = 0;
    for (u = s->subs; u; u = u->s_next)
        if (u->len == len && memcmp(u->filter, filter, len) == 0) break;
    if (u) {
        *existed = 1;
        u->opts = *opts;
        return u;
    }
    if (limit && s->n_subs >= b->conf.max_subs) {
        kf_fail(KF_E_OVERSIZE, "the session holds %u subscriptions already", s->n_subs);
        return NULL;
    }
    u = calloc(1, sizeof(*u) + len);
    if (!u) {
        kf_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(u->filter, filter, len);
    u->len = len;
    u->s = s;
    u->opts = *opts;
    if (filter_literal(filter, len, &plen)) {
        u->bucket = bucket_get(b, filter, plen);
        if (!u->bucket) {
            free(u);
            kf_fail(KF_E_NOMEM, "out of memory");
            return NULL;
        }
        u->next = u->bucket->subs;
        if (u->next) u->next->prev = u;
        u->bucket->subs = u;
    } else {
        u->next = b->wild;
        if (u->next) u->next->prev = u;
        b->wild = u;
    }
    u->s_next = s->subs;
    s->subs = u;
    s->n_subs++;
    b->n_subs++;
    return u;
}

void kf_broker_subscribe_many(struct kf_broker *b, struct kf_broker_peer *peer,
                              struct kf_broker_filter *f, size_t n)
{
    struct kf_session *s;
    int changed = 0;

    pthread_mutex_lock(&b->lock);
    s = peer->session;
    for (size_t i = 0; i < n; i++) {
        const struct kf_broker_sub_opts *opts = &f[i].opts;
        int existed = 0;
        struct sub *u = s ? sub_add(b, s, f[i].filter, f[i].len, opts, 1, &existed) : NULL;
        f[i].result = !s ? KF_OK : u ? KF_OK : kf_errlast();
        if (!u) continue;
        changed = 1;
        if (opts->retain_handling == 0 || (opts->retain_handling == 1 && !existed)) {
            if (u->bucket) {
                queue_retained(b, s, u->bucket, u);
            } else {
                for (size_t k = 0; k < b->buckets.n_slots; k++)
                    for (struct kf_hnode *x = b->buckets.slots[k]; x; x = x->next)
                        queue_retained(b, s, (struct bucket *)x, u);
            }
        }
    }
    /* one row for the whole SUBSCRIBE, written before its SUBACK */
    if (changed && s->stored) put_session(b, s, 0);
    unlock(b);
}

enum kf_err kf_broker_subscribe(struct kf_broker *b, struct kf_broker_peer *peer,
                                const uint8_t *filter, size_t len,
                                const struct kf_broker_sub_opts *opts)
{
    struct kf_broker_filter f = {filter, len, *opts, 0};
    kf_broker_subscribe_many(b, peer, &f, 1);
    return (enum kf_err)f.result;
}

void kf_broker_unsubscribe_many(struct kf_broker *b, struct kf_broker_peer *peer,
                                struct kf_broker_filter *f, size_t n)
{
    struct kf_session *s;
    int changed = 0;
    pthread_mutex_lock(&b->lock);
    s = peer->session;
    for (size_t i = 0; i < n; i++) {
        struct sub **pp;
        f[i].result = 0;
        for (pp = s ? &s->subs : NULL; pp && *pp; pp = &(*pp)->s_next) {
            struct sub *u = *pp;
            if (u->len != f[i].len || memcmp(u->filter, f[i].filter, f[i].len) != 0) continue;
            *pp = u->s_next;
            sub_unlink(b, u);
            free(u);
            s->n_subs--;
            f[i].result = 1;
            changed = 1;
            break;
        }
    }
    if (changed && s->stored) put_session(b, s, 0);
    unlock(b);
}

int kf_broker_unsubscribe(struct kf_broker *b, struct kf_broker_peer *peer, const uint8_t *filter,
                          size_t len)
{
    struct kf_broker_filter f = {filter, len, {0}, 0};
    kf_broker_unsubscribe_many(b, peer, &f, 1);
    return f.result;
}

size_t kf_broker_take(struct kf_broker *b, struct kf_broker_inbox *inbox,
                      struct kf_broker_peer **out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&b->lock);
    while (inbox->head && n < cap) {
        struct kf_broker_peer *p = inbox->head;
        inbox_remove(p);
        out[n++] = p;
    }
    unlock(b);
    return n;
}

size_t kf_broker_pull(struct kf_broker *b, struct kf_broker_peer *peer, int64_t now_ms,
                      struct kf_broker_out *out, size_t cap, int *more)
{
    struct kf_session *s;
    size_t n = 0;
    unsigned window;

    *more = 0;
    pthread_mutex_lock(&b->lock);
    s = peer->session;
    if (!s) goto out;
    window = peer->receive_max ? peer->receive_max : 1;
    /* What was in flight when the session resumed goes first, in order, marked dup. */
    while (s->resend && n < cap) {
        struct inflight *f = &s->inflight[s->n_inflight - s->resend];
        struct kf_broker_out *o = &out[n++];
        memset(o, 0, sizeof(*o));
        o->packet_id = f->packet_id;
        if (!f->released) {
            o->msg = kf_msg_ref(f->msg);
            o->qos = f->qos;
            o->dup = 1;
            o->retain = f->retain;
            o->sub_id = f->sub_id;
        }
        s->resend--;
    }
    while (s->qhead && n < cap) {
        struct qitem *q = s->qhead;
        struct kf_broker_out *o;
        if (q->seq > b->settled) {
            hold(b, s); /* not durable yet: kf_broker_settled wakes the peer */
            break;
        }
        if (q->qos > 0 && s->n_inflight >= window) break;
        s->qhead = q->next;
        if (!s->qhead) s->qtail = NULL;
        if (s->qid_first == q) s->qid_first = next_with_id(q->next);
        s->qlen--;
        b->n_queued--;
        if (q->msg->expires_ms && q->msg->expires_ms <= now_ms) {
            if (q->seq && s->stored) store_delete(b, s, KF_BROKER_ROW_MSG, (int64_t)q->seq, 1);
            kf_msg_release(q->msg);
            free(q);
            continue;
        }
        o = &out[n++];
        memset(o, 0, sizeof(*o));
        o->msg = q->msg; /* the queue's reference moves to the caller */
        o->qos = q->qos;
        o->dup = q->dup;
        o->retain = q->retain;
        o->sub_id = q->sub_id;
        if (q->qos > 0) {
            struct inflight *f;
            if (!inflight_room(s)) {
                /* Put it back; try again later. */
                n--;
                q->next = s->qhead;
                s->qhead = q;
                if (!s->qtail) s->qtail = q;
                s->qid_first = q;
                s->qlen++;
                b->n_queued++;
                break;
            }
            f = &s->inflight[s->n_inflight++];
            f->packet_id = q->packet_id;
            f->qos = q->qos;
            f->released = 0;
            f->retain = q->retain;
            f->sub_id = q->sub_id;
            f->seq = q->seq;
            f->msg = kf_msg_ref(q->msg);
            o->packet_id = f->packet_id;
        }
        free(q);
    }
    *more = s->resend > 0 || (s->qhead && s->qhead->seq <= b->settled &&
                              (s->qhead->qos == 0 || s->n_inflight < window));
out:
    unlock(b);
    return n;
}

int kf_broker_ack(struct kf_broker *b, struct kf_broker_peer *peer, enum kf_mqtt_type type,
                  uint16_t packet_id)
{
    struct kf_session *s;
    int ok = 0;
    pthread_mutex_lock(&b->lock);
    s = peer->session;
    for (unsigned i = 0; s && i < s->n_inflight; i++) {
        struct inflight *f = &s->inflight[i];
        if (f->packet_id != packet_id) continue;
        if (type == KF_MQTT_PUBREC) {
            if (f->qos == 2 && !f->released) {
                f->released = 1;
                kf_msg_release(f->msg);
                f->msg = NULL;
                ok = 1;
                /* before the PUBREL goes: after a restart it is the PUBREL that is sent again */
                if (f->seq && s->stored) store_msg_released(b, s, f);
            }
            break;
        }
        if ((type == KF_MQTT_PUBACK && f->qos == 1) ||
            (type == KF_MQTT_PUBCOMP && f->qos == 2 && f->released)) {
            if (f->seq && s->stored) store_delete(b, s, KF_BROKER_ROW_MSG, (int64_t)f->seq, 1);
            kf_msg_release(f->msg);
            /* An entry still waiting to be sent again leaves that region too. */
            if (i >= s->n_inflight - s->resend) s->resend--;
            /* Keep the order: what is left is resent in the order it was sent. */
            memmove(f, f + 1, (s->n_inflight - i - 1) * sizeof(*f));
            s->n_inflight--;
            ok = 1;
            if (s->qhead) inbox_push(peer);
        }
        break;
    }
    unlock(b);
    return ok;
}

/* Whether inbound QoS 2 `packet_id` is new (1), known (0) or one too many (-1); lock held. */
static int qos2_state(struct kf_broker *b, const struct kf_session *s, uint16_t packet_id)
{
    for (unsigned i = 0; i < s->n_qos2_in; i++)
        if (s->qos2_in[i] == packet_id) return 0;
    return s->n_qos2_in >= b->conf.max_inflight_in ? -1 : 1;
}

/* Records inbound QoS 2 `packet_id` (new, and room for it): 1, or -1 out of memory. */
static int qos2_record(struct kf_broker *b, struct kf_session *s, uint16_t packet_id)
{
    if (!qos2_room(s)) return -1; /* grown as used (the bound may change on SIGHUP) */
    s->qos2_in[s->n_qos2_in++] = packet_id;
    if (s->stored) {
        /* in the commit of its message: a PUBLISH sent again after a restart is then known for
         * a duplicate exactly when its message was kept */
        struct kf_broker_op op = {
            .type = KF_BROKER_PUT, .session = s->id, .kind = KF_BROKER_ROW_QOS2, .key = packet_id};
        emit(b, &op);
    }
    return 1;
}

int kf_broker_qos2_check(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id)
{
    int r = 1;
    pthread_mutex_lock(&b->lock);
    if (peer->session) r = qos2_state(b, peer->session, packet_id);
    pthread_mutex_unlock(&b->lock);
    return r;
}

int kf_broker_qos2_received(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id)
{
    struct kf_session *s;
    int r = 1;
    pthread_mutex_lock(&b->lock);
    s = peer->session;
    if (s) {
        r = qos2_state(b, s, packet_id);
        if (r == 1) r = qos2_record(b, s, packet_id);
    }
    unlock(b);
    return r;
}

int kf_broker_qos2_released(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id)
{
    struct kf_session *s;
    int found = 0;
    pthread_mutex_lock(&b->lock);
    s = peer->session;
    for (unsigned i = 0; s && i < s->n_qos2_in; i++)
        if (s->qos2_in[i] == packet_id) {
            s->qos2_in[i] = s->qos2_in[--s->n_qos2_in];
            found = 1;
            /* before the PUBCOMP goes: the client may use the id again after it */
            if (s->stored) store_delete(b, s, KF_BROKER_ROW_QOS2, packet_id, 0);
            break;
        }
    unlock(b);
    return found;
}

size_t kf_broker_sweep(struct kf_broker *b, int64_t now_ms)
{
    size_t ended = 0;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->sessions.n_slots; i++) {
        struct kf_hnode *n = b->sessions.slots[i], *next;
        for (; n; n = next) {
            struct kf_session *s = (struct kf_session *)n;
            next = n->next;
            if (s->peer) continue;
            if (s->will && s->will_at <= now_ms) will_now(b, s);
            if (s->expiry_s == 0xFFFFFFFFu) continue;
            if (now_ms - s->offline_since >= (int64_t)s->expiry_s * 1000) {
                will_now(b, s); /* the session ends first [MQTT-3.1.3-9] */
                session_free(b, s);
                ended++;
            }
        }
    }
    unlock(b);
    return ended;
}

void kf_broker_stats(struct kf_broker *b, struct kf_broker_stats *out)
{
    pthread_mutex_lock(&b->lock);
    out->sessions = b->sessions.n;
    out->sessions_online = b->n_online;
    out->subscriptions = b->n_subs;
    out->retained = b->n_retained;
    out->queued = b->n_queued;
    out->routed = b->routed;
    out->dropped = b->dropped;
    pthread_mutex_unlock(&b->lock);
}

/* ---- persistence ---- */

void kf_broker_persist(struct kf_broker *b, kf_broker_change_cb cb, void *arg)
{
    pthread_mutex_lock(&b->lock);
    b->change = cb;
    b->change_arg = arg;
    pthread_mutex_unlock(&b->lock);
}

/* Ends a broker call: its ops go to the store as one commit, then the lock goes. */
static void unlock(struct kf_broker *b)
{
    if (b->n_ops && b->change) {
        struct kf_broker_op op = {.type = KF_BROKER_COMMIT, .seq = b->commit_seq};
        if (b->change(b->change_arg, &op) && b->commit_seq > b->settled) settle(b, b->commit_seq);
    }
    b->n_ops = 0;
    b->commit_seq = 0;
    pthread_mutex_unlock(&b->lock);
}

static void emit(struct kf_broker *b, const struct kf_broker_op *op)
{
    b->n_ops++;
    b->change(b->change_arg, op);
}

static int put16(struct kf_buf *out, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return kf_buf_append(out, x, 2) != KF_OK;
}

static uint16_t get16(struct reader *r)
{
    uint16_t v;
    if (r->left < 2) {
        r->bad = 1;
        return 0;
    }
    v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    r->left -= 2;
    return v;
}

static uint8_t get8(struct reader *r)
{
    if (r->left < 1) {
        r->bad = 1;
        return 0;
    }
    r->left--;
    return *r->p++;
}

#define SESSION_FORMAT 1

/*
 * The session's row: format, expiry, when it went offline (wall clock, ms; 0: online) and its
 * subscriptions (filter, qos, options, identifier).
 */
static void put_session(struct kf_broker *b, struct kf_session *s, int64_t offline_wall)
{
    struct kf_buf *v = &b->val;
    uint8_t head = SESSION_FORMAT;
    int bad;
    if (!s->stored || !b->change) return;
    kf_buf_reset(v);
    bad = kf_buf_append(v, &head, 1) != KF_OK;
    bad |= put32(v, s->expiry_s);
    bad |= put32(v, (uint32_t)((uint64_t)offline_wall >> 32));
    bad |= put32(v, (uint32_t)offline_wall);
    bad |= put32(v, s->n_subs);
    for (struct sub *u = s->subs; u; u = u->s_next) {
        uint8_t o[2] = {u->opts.qos, (uint8_t)((u->opts.no_local ? 1 : 0) |
                                               (u->opts.retain_as_published ? 2 : 0) |
                                               (u->opts.retain_handling << 2))};
        bad |= put_str(v, u->filter, u->len);
        bad |= kf_buf_append(v, o, 2) != KF_OK;
        bad |= put32(v, u->opts.sub_id);
    }
    if (bad) return; /* out of memory: the row keeps what it held */
    {
        struct kf_broker_op op = {.type = KF_BROKER_PUT,
                                  .session = s->id,
                                  .kind = KF_BROKER_ROW_SESSION,
                                  .value = v->data,
                                  .len = v->len};
        emit(b, &op);
    }
}

/* The session ends (or ends with its connection now): its rows go. */
static void store_drop(struct kf_broker *b, struct kf_session *s)
{
    struct kf_broker_op op = {.type = KF_BROKER_DROP, .session = s->id};
    if (!s->stored) return;
    s->stored = 0;
    if (b->change) emit(b, &op);
}

static void store_delete(struct kf_broker *b, struct kf_session *s, int kind, int64_t key,
                         int behind)
{
    struct kf_broker_op op = {
        .type = KF_BROKER_DELETE, .session = s->id, .kind = kind, .key = key, .behind = behind};
    if (b->change) emit(b, &op);
}

#define MSG_ROW_RETAIN   1
#define MSG_ROW_RELEASED 2

/* A message row: packet id, qos, flags, subscription id, then the message (none once released). */
static int msg_row(struct kf_buf *v, uint16_t packet_id, uint8_t qos, uint8_t flags,
                   uint32_t sub_id, const struct kf_msg *m)
{
    uint8_t x[2] = {qos, flags};
    int bad;
    kf_buf_reset(v);
    bad = put16(v, packet_id);
    bad |= kf_buf_append(v, x, 2) != KF_OK;
    bad |= put32(v, sub_id);
    if (!bad && m && kf_msg_encode(m, v) != KF_OK) {
        kf_err_clear();
        bad = 1;
    }
    return !bad;
}

/* Gives queued `q` of stored session `s` its row; 0 when it cannot be written (out of memory). */
static int store_msg(struct kf_broker *b, struct kf_session *s, struct qitem *q)
{
    struct kf_broker_op op = {.type = KF_BROKER_PUT, .session = s->id, .kind = KF_BROKER_ROW_MSG};
    if (!msg_row(&b->val, q->packet_id, q->qos, q->retain ? MSG_ROW_RETAIN : 0, q->sub_id, q->msg))
        return 0;
    q->seq = ++b->seq;
    b->commit_seq = q->seq;
    op.key = (int64_t)q->seq;
    op.value = b->val.data;
    op.len = b->val.len;
    emit(b, &op);
    return 1;
}

static void store_msg_released(struct kf_broker *b, struct kf_session *s, const struct inflight *f)
{
    struct kf_broker_op op = {
        .type = KF_BROKER_PUT, .session = s->id, .kind = KF_BROKER_ROW_MSG, .key = (int64_t)f->seq};
    if (!msg_row(&b->val, f->packet_id, 2, MSG_ROW_RELEASED, 0, NULL)) return;
    op.value = b->val.data;
    op.len = b->val.len;
    emit(b, &op);
}

static void hold(struct kf_broker *b, struct kf_session *s)
{
    if (s->held) return;
    s->held = 1;
    s->held_prev = NULL;
    s->held_next = b->held;
    if (b->held) b->held->held_prev = s;
    b->held = s;
}

/* Messages up to `seq` may go: the sessions that waited for them are woken. */
static void settle(struct kf_broker *b, uint64_t seq)
{
    struct kf_session *s, *next;
    if (seq > b->settled) b->settled = seq;
    for (s = b->held; s; s = next) {
        next = s->held_next;
        if (s->qhead && s->qhead->seq > b->settled) continue;
        held_remove(b, s);
        if (s->peer) inbox_push(s->peer);
    }
}

void kf_broker_settled(struct kf_broker *b, uint64_t seq)
{
    pthread_mutex_lock(&b->lock);
    settle(b, seq);
    pthread_mutex_unlock(&b->lock);
}

static struct kf_session *session_new(struct kf_broker *b, const char *name)
{
    struct kf_session *s;
    if (strlen(name) >= sizeof(s->id)) {
        kf_fail(KF_E_INVALID, "a session name of %zu characters", strlen(name));
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        kf_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(s->id, sizeof(s->id), "%s", name);
    s->node.key = (const uint8_t *)s->id;
    s->node.klen = strlen(s->id);
    s->node.hash = kf_hash_bytes(s->node.key, s->node.klen);
    s->next_id = 1;
    if (kf_htab_insert(&b->sessions, &s->node)) {
        free(s);
        kf_fail(KF_E_NOMEM, "out of memory");
        return NULL;
    }
    return s;
}

static enum kf_err restore_session(struct kf_broker *b, const char *name, struct reader *r,
                                   int64_t now_ms)
{
    struct kf_session *s;
    uint32_t expiry, n_subs;
    int64_t offline;
    uint64_t hi, lo;

    if (get8(r) != SESSION_FORMAT) r->bad = 1;
    expiry = get32(r);
    hi = get32(r);
    lo = get32(r);
    offline = (int64_t)(hi << 32 | lo);
    n_subs = get32(r);
    if (r->bad || expiry == 0 || session_find(b, name)) goto bad;
    s = session_new(b, name);
    if (!s) return kf_errlast();
    s->stored = 1;
    s->expiry_s = expiry;
    /* It went offline then, or (it was online) at the crash: now. */
    s->offline_since = offline > 0 && offline < now_ms ? offline : now_ms;
    for (uint32_t i = 0; i < n_subs && !r->bad; i++) {
        struct kf_mqtt_str f = get_str(r);
        struct kf_broker_sub_opts o;
        uint8_t qos = get8(r), fl = get8(r);
        int existed;
        memset(&o, 0, sizeof(o));
        o.sub_id = get32(r);
        o.qos = qos;
        o.no_local = fl & 1;
        o.retain_as_published = (fl >> 1) & 1;
        o.retain_handling = (uint8_t)(fl >> 2);
        if (r->bad || qos > 2 || o.retain_handling > 2 || !kf_mqtt_topic_filter_valid(f.p, f.len)) {
            r->bad = 1;
            break;
        }
        if (!sub_add(b, s, f.p, f.len, &o, 0, &existed)) {
            session_free(b, s);
            return kf_errlast();
        }
    }
    if (r->bad || r->left) {
        s->stored = 0; /* its row stays for an operator to look at */
        session_free(b, s);
        goto bad;
    }
    return KF_OK;
bad:
    return kf_fail(KF_E_MALFORMED, "the stored session %s does not read back", name);
}

static enum kf_err restore_msg(struct kf_broker *b, struct kf_session *s, uint64_t seq,
                               struct reader *r)
{
    uint16_t id = get16(r);
    uint8_t qos = get8(r), flags = get8(r);
    uint32_t sub_id = get32(r);
    struct kf_msg *m = NULL;

    if (r->bad || !id || qos < 1 || qos > 2 || (flags & ~3u) || !seq) goto bad;
    if (flags & MSG_ROW_RELEASED) {
        struct inflight *f;
        if (qos != 2 || r->left) goto bad;
        if (!inflight_room(s)) return kf_fail(KF_E_NOMEM, "out of memory");
        f = &s->inflight[s->n_inflight++];
        memset(f, 0, sizeof(*f));
        f->packet_id = id;
        f->qos = 2;
        f->released = 1;
        f->seq = seq;
    } else {
        struct qitem *q;
        m = kf_msg_decode(r->p, r->left);
        if (!m) goto bad;
        q = malloc(sizeof(*q));
        if (!q) {
            kf_msg_release(m);
            return kf_fail(KF_E_NOMEM, "out of memory");
        }
        q->next = NULL;
        q->msg = m;
        q->qos = qos;
        q->retain = flags & MSG_ROW_RETAIN;
        q->dup = 1; /* it may have gone out before the restart */
        q->packet_id = id;
        q->sub_id = sub_id;
        q->seq = seq;
        queue_append(b, s, q);
    }
    s->next_id = id;
    if (seq > b->seq) b->seq = seq;
    b->settled = b->seq;
    return KF_OK;
bad:
    kf_err_clear();
    return kf_fail(KF_E_MALFORMED, "a stored message of session %s does not read back", s->id);
}

enum kf_err kf_broker_restore(struct kf_broker *b, const char *session, int kind, int64_t key,
                              const uint8_t *value, size_t len, int64_t now_ms)
{
    struct reader r = {value, len, 0};
    struct kf_session *s;
    enum kf_err rc;

    pthread_mutex_lock(&b->lock);
    if (kind < KF_BROKER_ROW_SESSION || kind > KF_BROKER_ROW_QOS2) {
        rc = kf_fail(KF_E_MALFORMED, "a stored row of session %s of an unknown kind", session);
        goto out;
    }
    if (kind == KF_BROKER_ROW_SESSION) {
        rc = restore_session(b, session, &r, now_ms);
        goto out;
    }
    s = session_find(b, session);
    if (!s || !s->stored) {
        rc = kf_fail(KF_E_NOT_FOUND, "a stored row of session %s, which has no session row",
                     session);
        goto out;
    }
    if (kind == KF_BROKER_ROW_MSG) {
        /* a sequence number the broker could have given: never one near the top of its range */
        rc = key > 0 && key < INT64_MAX / 2
                 ? restore_msg(b, s, (uint64_t)key, &r)
                 : kf_fail(KF_E_MALFORMED, "a stored message of session %s with sequence %lld",
                           session, (long long)key);
    } else if (kind == KF_BROKER_ROW_QOS2 && key > 0 && key <= 65535 && !len) {
        rc = KF_OK;
        if (!qos2_room(s)) {
            rc = kf_fail(KF_E_NOMEM, "out of memory");
            goto out;
        }
        s->qos2_in[s->n_qos2_in++] = (uint16_t)key;
    } else {
        rc = kf_fail(KF_E_MALFORMED, "a stored row of session %s of an unknown kind", session);
    }
out:
    pthread_mutex_unlock(&b->lock);
    return rc;
}
