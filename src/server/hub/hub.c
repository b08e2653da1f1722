#include "server/hub/hub.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/cidr.h"
#include "common/htab.h"
#include "common/ident.h"
#include "common/log.h"
#include "common/ossl.h"
#include "common/mqtt_codec.h"
#include "common/timefmt.h"
#include "server/hub/broker.h"
#include "server/store/events.h"
#include "server/hub/acl.h"
#include "common/jsontext.h"
#include "server/net/limits.h"
#include "server/net/tls.h"
#include "server/hub/sesscache.h"
#include "server/net/tlsrec.h"
#include "server/net/accept.h"
#include "server/net/listen.h"

#define OUT_HIGH        (256 * 1024) /* stop pulling messages for a client beyond this */
#define OUT_LOW         (64 * 1024)  /* and go on below this */
#define PULL_BATCH      64
#define TOPIC_ALIAS_MAX 16
#define TICK_MS         250
#define CLOSE_GRACE_MS  2000  /* a closing client that does not read its last bytes */
#define RATE_EVENT_MS   10000 /* at most one hub.rate_limited event per connection this often */
#define NETS_KEPT       8     /* networks remembered per id, for hub.unusual_ip */
#define EVENT_BODY_MAX  16384 /* a device's security event */
#define ID_RECORDS_MAX  1000000

struct hub_conf {
    size_t max_packet;
    int connect_timeout_ms;
    struct kf_accept_conf accept; /* the listener's: hello and handshake deadlines, lists */
    double msg_rate, msg_burst, byte_rate, byte_burst;
    int rate_disconnect, acl_disconnect;
    uint16_t max_inflight;
    uint32_t expiry_max;
    unsigned flap_connects;
    int flap_window_s, flap_ban_s;
    int tls_offload;
    double dev_event_rate, dev_event_burst;
};

/* What the hub remembers of an id between connections: flapping and the networks it used. */
struct id_rec {
    struct kf_hnode node;
    char id[KF_ID_MAX + 3]; /* "d:" or "s:" then the id */
    int64_t window_start, banned_until, last_seen;
    unsigned count;
    double ev_tokens; /* the device's own events: a bucket that outlives its connections */
    int64_t ev_refill_ms;
    unsigned char nets[NETS_KEPT][8];
    unsigned n_nets;
};

struct kf_hubd {
    struct kf_deploy *deploy;
    struct kf_registry_holder *registry;
    struct kf_tls *tls;
    struct kf_sesscache *sesscache; /* NULL with stateless tickets */
    struct kf_broker *broker;
    struct kf_limits *limits;
    struct kf_events *events; /* borrowed: keyfleetd's sink */
    char host[64];
    int port;
    pthread_mutex_t lock; /* guards conf, ids, workers */
    struct hub_conf conf;
    struct kf_htab ids;
    struct kf_hub_worker *workers;
    int persistence; /* retained messages and persistent sessions go to the store (at start) */
    int ret_pending; /* the hub's writes on their way to the store (atomic) */
};

struct hconn;

struct kf_hub_worker {
    struct kf_hubd *hub;
    struct event_base *base;
    struct kf_acceptor *acceptor; /* the hub's listener on this worker */
    struct event *wake, *tick;
    struct kf_broker_inbox inbox;
    struct hconn *conns;
    size_t n_conns;
    int draining;
    void (*idle_cb)(void *);
    void *idle_arg;
    struct hub_conf conf;    /* this worker's copy, refreshed every tick */
    uint64_t reg_generation; /* of the snapshot last enforced */
    unsigned ticks;
    struct kf_hub_stats st; /* written by this worker only; read with relaxed loads */
    uint8_t *scratch;
    size_t scratch_cap;
    pthread_mutex_t jobs_lock; /* guards jobs_done (the store's thread adds to it) */
    struct hub_job *jobs_done; /* writes the store has finished, newest first */
    struct hub_job *behind;    /* deletes nobody waits for, gathered while one is in the store */
    int behind_busy;           /* a write-behind job is in the store */
    struct kf_hub_worker *next;
};

/*
 * An acknowledgement in the order its PUBLISH came (MQTT-4.6.0-2, -3): one that waits for the
 * store holds back those after it.
 */
struct ack {
    struct ack *next;
    uint8_t type, reason, ready;
    uint16_t id;
    size_t len; /* type 0: a whole packet (a SUBACK), these bytes */
    uint8_t bytes[];
};

/*
 * The hub's writes on their way: per connection (retained ones; all of them before its reading
 * pauses), and for the whole hub (of KF_STORE_QUEUE_MAX), so that no publisher can starve
 * provisioning, or the other publishers, of the store.
 */
#define RET_PENDING_PER_CONN 8
#define JOBS_PER_CONN        32
#define RET_PENDING_MAX      (KF_STORE_QUEUE_MAX / 4)

/* One change the broker said, as the store will write it. */
struct hub_op {
    struct hub_op *next;
    uint8_t type; /* enum kf_broker_op_type, but COMMIT */
    uint8_t kind;
    int64_t key;
    size_t topic_len; /* RETAIN: data is the topic, then the message (none: cleared) */
    size_t len;       /* of data */
    char session[KF_ID_MAX + 3];
    uint8_t data[];
};

/* What one broker call (or, write-behind, several) said, in one store request. */
struct hub_job {
    struct kf_store_req req;
    struct kf_hubd *hub;
    struct kf_hub_worker *hw; /* write-behind: back to its worker; else NULL */
    struct hconn *c;          /* the connection waiting for it (its acknowledgement); or NULL */
    struct ack *ack;
    enum kf_err rc;
    uint64_t seq; /* the broker's COMMIT: settled once done */
    int retained; /* it keeps a retained message (counted in c->ret_jobs) */
    int connack;  /* its ack is the connection's CONNACK: messages may go once it has */
    int lost;     /* an op of it could not be kept (out of memory): not durable */
    struct hub_job *next;
    struct hub_op *ops, **tail;
};

struct alias {
    uint8_t *p;
    uint16_t len;
};

struct hconn {
    struct kf_conn head;        /* first: net/accept hands back this */
    struct kf_broker_peer peer; /* the inbox hands back these (PEER_CONN) */
    struct kf_hub_worker *hw;
    int connected, closing, detached;
    int backlog; /* messages wait for room in the output (pull again when it drains) */
    uint8_t version;
    enum kf_acl_kind kind;
    char id[KF_ID_MAX + 1]; /* the certificate's device id or service name */
    /*
     * The identity as the hub keys its state (the broker's session, flapping and bans):
     * "d:<device id>" or "s:<service name>", so that a device and a service never share any.
     */
    char key[KF_ID_MAX + 3];
    char serial[KF_SERIAL_HEX_MAX];
    time_t not_before, not_after; /* the certificate's, also for a resumed session */
    char auth_reason[48];         /* why the handshake's chain was refused */
    uint16_t keep_alive;
    uint32_t client_max_packet; /* 0: the protocol's limit */
    uint32_t expiry;
    struct alias aliases[TOPIC_ALIAS_MAX + 1];
    struct kf_msg *will;
    uint32_t will_delay; /* MQTT 5 will delay interval, seconds */
    double msg_tokens, byte_tokens;
    int64_t refill_ms, last_rate_event, connected_at;
    int tls_resumed;
    /*
     * While OpenSSL holds the connection, what tlsrec needs to take it over; once it has, `rec`
     * carries the records and `bev` is a filter over a plain socket bufferevent.
     */
    struct kf_tlsrec_watch watch;
    struct kf_tlsrec *rec;
    int rec_eof;       /* close_notify read: the end, once what came before it is handled */
    int rec_bad;       /* tlsrec refused a record: the end, with the alert it calls for */
    int resumed_ident; /* kind, id and serial came back from the session cache */
    int verified;      /* the identity verified and its certificate stands: events name it */
    struct ack *acks, *acks_tail; /* acknowledgements held back behind one the store owes */
    unsigned jobs;                /* store writes that will come back to this connection */
    unsigned ret_jobs;            /* of them, those that keep retained messages */
    int paused;                   /* reading waits for the store (too many jobs) */
    int connack_wait;             /* its CONNACK waits for the store: no messages before it */
    int zombie;                   /* closed; freed when the last of them is back */
    struct hconn *prev, *next;
};

/* The connection a broker peer belongs to. */
#define PEER_CONN(p) ((struct hconn *)((char *)(p)-offsetof(struct hconn, peer)))

#define STAT_ADD(hw, field, n) __atomic_add_fetch(&(hw)->st.field, (n), __ATOMIC_RELAXED)
#define STAT_SUB(hw, field, n) __atomic_sub_fetch(&(hw)->st.field, (n), __ATOMIC_RELAXED)

static void conn_free(struct hconn *c);
static void flush(struct hconn *c);
static int is_device_events(const struct hconn *c, struct kf_mqtt_str t);
static int device_event(struct hconn *c, const uint8_t *payload, size_t len, const char **why,
                        int *over);
static void rate_event(struct hconn *c, const char *what);

/* ---- configuration ---- */

static void conf_from(const struct kf_config *cfg, struct hub_conf *hc)
{
    memset(hc, 0, sizeof(*hc));
    hc->max_packet = (size_t)cfg->hub_max_packet_bytes;
    hc->connect_timeout_ms = cfg->hub_connect_timeout_ms;
    hc->accept.hello_timeout_ms = cfg->hub_hello_timeout_ms;
    hc->accept.handshake_timeout_ms = cfg->hub_handshake_timeout_ms;
    hc->accept.first_deadline_ms = cfg->hub_connect_timeout_ms;
    hc->accept.count_rate = 1; /* connect_rate_per_ip: new connections are the hub's requests */
    hc->msg_rate = cfg->hub_msg_rate;
    hc->msg_burst = cfg->hub_msg_burst;
    hc->byte_rate = cfg->hub_byte_rate;
    hc->byte_burst = cfg->hub_byte_burst;
    hc->rate_disconnect = strcmp(cfg->hub_rate_action, "drop") != 0;
    hc->acl_disconnect = strcmp(cfg->hub_acl_action, "drop") != 0;
    hc->max_inflight = (uint16_t)cfg->hub_max_inflight;
    hc->expiry_max = (uint32_t)cfg->hub_session_expiry_max_s;
    hc->flap_connects = (unsigned)cfg->hub_flap_connects;
    hc->flap_window_s = cfg->hub_flap_window_s;
    hc->flap_ban_s = cfg->hub_flap_ban_s;
    hc->tls_offload = cfg->hub_tls_offload;
    hc->dev_event_rate = cfg->hub_device_event_rate;
    hc->dev_event_burst = cfg->hub_device_event_burst;
    /* Checked when the configuration was read. */
    if (strcmp(cfg->hub_allow, "any") != 0 &&
        kf_cidr_parse_list(cfg->hub_allow, &hc->accept.allow) == KF_OK)
        hc->accept.has_allow = 1;
    if (strcmp(cfg->hub_deny, "none") != 0 &&
        kf_cidr_parse_list(cfg->hub_deny, &hc->accept.deny) == KF_OK)
        hc->accept.has_deny = 1;
    kf_err_clear();
}

static void broker_conf_from(const struct kf_config *cfg, struct kf_broker_conf *bc)
{
    memset(bc, 0, sizeof(*bc));
    bc->max_queued = (unsigned)cfg->hub_max_queued;
    bc->max_retained = (unsigned)cfg->hub_max_retained;
    bc->max_retained_bytes = (size_t)cfg->hub_max_retained_bytes;
    bc->max_retained_per_id = (unsigned)cfg->hub_max_retained_per_id;
    bc->max_retained_bytes_per_id = (size_t)cfg->hub_max_retained_bytes_per_id;
    bc->max_subs = (unsigned)cfg->hub_max_subscriptions;
    bc->max_inflight_in = (unsigned)cfg->hub_max_inflight;
}

static void limits_conf_from(const struct kf_config *cfg, struct kf_limits_conf *lc)
{
    memset(lc, 0, sizeof(*lc));
    lc->max_conns = (unsigned)cfg->hub_max_connections;
    lc->max_conns_per_ip = (unsigned)cfg->hub_max_connections_per_ip;
    lc->rate_per_ip = cfg->hub_connect_rate_per_ip;
    lc->burst_per_ip = cfg->hub_connect_burst;
    lc->max_handshakes = (unsigned)cfg->hub_max_handshakes;
    lc->max_conns_per_net = (unsigned)cfg->hub_max_connections_per_net;
    lc->max_handshakes_per_ip = (unsigned)cfg->hub_max_handshakes_per_ip;
    lc->max_handshakes_per_net = (unsigned)cfg->hub_max_handshakes_per_net;
}

/* ---- events ---- */

/*
 * Once a connection's identity has verified, events name the device; before (or when it did not),
 * the identity its certificate claims is recorded apart, never as the device.
 */
static void who_of(const struct hconn *c, struct kf_event_who *w)
{
    int device = c->kind == KF_ACL_DEVICE && c->id[0];
    w->device = c->verified && device ? c->id : NULL;
    w->claimed = !c->verified && c->id[0] ? c->id : NULL;
    w->ip = c->head.ip_text;
}

/* What happens at most once per connection: recorded as it comes. */
static void event(struct hconn *c, const char *type, const char *severity, char *detail)
{
    struct kf_event_who w;
    who_of(c, &w);
    kf_events_submit(c->hw->hub->deploy->store, type, severity, w.device, w.claimed, "server", w.ip,
                     detail);
}

/* What a peer can cause again and again (a refusal): aggregated by the sink. */
static void refusal(struct hconn *c, const char *type, const char *reason, char *detail)
{
    struct kf_event_who w;
    who_of(c, &w);
    kf_events_note(c->hw->hub->events, type, "warning", reason, &w, detail);
}

static const char *kind_name(enum kf_acl_kind k)
{
    switch (k) {
    case KF_ACL_DEVICE: return "device";
    case KF_ACL_READER: return kf_role_name(KF_ROLE_READER);
    case KF_ACL_COMMANDER: return kf_role_name(KF_ROLE_COMMANDER);
    default: return "unknown";
    }
}

static void auth_failed(struct hconn *c, const char *reason, const char *message)
{
    STAT_ADD(c->hw, auth_failed, 1);
    refusal(c, "hub.auth_failed", reason,
            kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "reason", reason, "message", message, "id",
                             c->id, "identity", kind_name(c->kind)));
}

/* ---- ids: flapping and networks ---- */

static struct id_rec *id_get(struct kf_hubd *h, struct hconn *c)
{
    size_t n = strlen(c->key);
    struct kf_hnode *node;
    struct id_rec *r;

    node = kf_htab_find(&h->ids, (const uint8_t *)c->key, n,
                        kf_hash_bytes((const uint8_t *)c->key, n));
    if (node) return (struct id_rec *)node;
    if (h->ids.n >= ID_RECORDS_MAX) return NULL;
    r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    memcpy(r->id, c->key, n + 1);
    r->node.key = (const uint8_t *)r->id;
    r->node.klen = n;
    r->node.hash = kf_hash_bytes(r->node.key, n);
    if (kf_htab_insert(&h->ids, &r->node)) {
        free(r);
        return NULL;
    }
    return r;
}

/* The network an address is on, for hub.unusual_ip: IPv4 /24, IPv6 /48. */
static void net_of(const struct kf_ipaddr *ip, unsigned char out[8])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, 8);
    if (memcmp(ip->b, mapped, 12) == 0) {
        out[0] = 4;
        memcpy(out + 1, ip->b + 12, 3);
    } else {
        out[0] = 6;
        memcpy(out + 1, ip->b, 6);
    }
}

/*
 * Counts a CONNECT by `c`'s id. Returns 1 when the id is banned for flapping (and emits
 * hub.flapping when the ban starts). Sets `*unusual` when the id comes from a network it has not
 * used before (it has used others).
 */
static int id_connect(struct hconn *c, int64_t now, int *unusual)
{
    struct kf_hubd *h = c->hw->hub;
    const struct hub_conf *hc = &c->hw->conf;
    unsigned char net[8];
    struct id_rec *r;
    int banned = 0, started = 0, known = 0;
    unsigned count = 0;

    *unusual = 0;
    net_of(&c->head.ip, net);
    pthread_mutex_lock(&h->lock);
    r = id_get(h, c);
    if (r) {
        r->last_seen = now;
        if (r->banned_until > now) {
            banned = 1;
        } else if (hc->flap_ban_s > 0) {
            if (now - r->window_start > (int64_t)hc->flap_window_s * 1000) {
                r->window_start = now;
                r->count = 0;
            }
            if (++r->count > hc->flap_connects) {
                r->banned_until = now + (int64_t)hc->flap_ban_s * 1000;
                banned = started = 1;
                count = r->count;
                r->count = 0;
                r->window_start = now;
            }
        }
        for (unsigned i = 0; i < r->n_nets; i++)
            if (memcmp(r->nets[i], net, 8) == 0) known = 1;
        if (!known && !banned) {
            *unusual = r->n_nets > 0;
            if (r->n_nets < NETS_KEPT) {
                memcpy(r->nets[r->n_nets++], net, 8);
            } else {
                memmove(r->nets[0], r->nets[1], (NETS_KEPT - 1) * 8);
                memcpy(r->nets[NETS_KEPT - 1], net, 8);
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (started)
        event(c, "hub.flapping", "warning",
              kf_jsontext_pack("{s:s, s:i, s:i, s:i}", "id", c->id, "connects", (int)count,
                               "window_s", hc->flap_window_s, "ban_s", hc->flap_ban_s));
    return banned;
}

/* ---- writing ---- */

static uint8_t *scratch(struct kf_hub_worker *hw, size_t need)
{
    if (need > hw->scratch_cap) {
        uint8_t *p = realloc(hw->scratch, need);
        if (!p) return NULL;
        hw->scratch = p;
        hw->scratch_cap = need;
    }
    return hw->scratch;
}

static void write_bytes(struct hconn *c, const uint8_t *p, size_t n)
{
    if (c->head.bev) bufferevent_write(c->head.bev, p, n);
}

static void send_ack(struct hconn *c, enum kf_mqtt_type type, uint16_t id, uint8_t reason)
{
    uint8_t buf[16];
    size_t n;
    struct kf_mqtt_ack a;
    memset(&a, 0, sizeof(a));
    a.packet_id = id;
    a.reason = reason;
    if (kf_mqtt_encode_ack(buf, sizeof(buf), c->version, type, &a, &n) == 0) write_bytes(c, buf, n);
}

static struct ack *ack_link(struct hconn *c, struct ack *a, int ready)
{
    a->ready = (uint8_t)ready;
    if (c->acks_tail)
        c->acks_tail->next = a;
    else
        c->acks = a;
    c->acks_tail = a;
    return a;
}

/* Sends an acknowledgement now, or queues it behind one still waiting; the queued one. */
static struct ack *queue_ack(struct hconn *c, enum kf_mqtt_type type, uint16_t id, uint8_t reason,
                             int ready)
{
    struct ack *a;
    if (!c->acks && ready) {
        send_ack(c, type, id, reason);
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (!a) {
        send_ack(c, type, id, reason); /* out of order rather than never */
        return NULL;
    }
    a->type = (uint8_t)type;
    a->id = id;
    a->reason = reason;
    return ack_link(c, a, ready);
}

/* Writes a packet (a SUBACK) now, or queues it behind an acknowledgement still waiting. */
static struct ack *queue_packet(struct hconn *c, const uint8_t *p, size_t n, int ready)
{
    struct ack *a;
    if (!c->acks && ready) {
        write_bytes(c, p, n);
        return NULL;
    }
    a = calloc(1, sizeof(*a) + n);
    if (!a) {
        write_bytes(c, p, n);
        return NULL;
    }
    memcpy(a->bytes, p, n);
    a->len = n;
    return ack_link(c, a, ready);
}

/* Sends the acknowledgements at the head of the queue that are ready. */
static void flush_acks(struct hconn *c)
{
    while (c->acks && c->acks->ready) {
        struct ack *a = c->acks;
        c->acks = a->next;
        if (!c->acks) c->acks_tail = NULL;
        if (!c->closing && a->len)
            write_bytes(c, a->bytes, a->len);
        else if (!c->closing)
            send_ack(c, (enum kf_mqtt_type)a->type, a->id, a->reason);
        free(a);
    }
}

static struct ack *queue_packet(struct hconn *c, const uint8_t *p, size_t n, int ready);

/*
 * A CONNACK. `wait` (a resumed stored session): it goes, and messages with it, once the store has
 * what earlier connections of the session left on their way there (the attach's write is behind
 * them), so that nothing this connection is told depends on a write not yet durable.
 */
static void connack(struct hconn *c, uint8_t v5_reason, uint8_t v311_code, int present,
                    const struct kf_mqtt_props *props, struct hub_job *wait)
{
    uint8_t buf[512];
    size_t n;
    struct kf_mqtt_connack a;
    memset(&a, 0, sizeof(a));
    a.session_present = present;
    a.reason = c->version == KF_MQTT_V5 ? v5_reason : v311_code;
    if (props && c->version == KF_MQTT_V5) a.props = *props;
    if (kf_mqtt_encode_connack(buf, sizeof(buf), c->version ? c->version : KF_MQTT_V311, &a, &n) !=
        0)
        return;
    if (wait) {
        wait->ack = queue_packet(c, buf, n, 0);
        wait->connack = 1;
        c->connack_wait = wait->ack != NULL;
        return;
    }
    write_bytes(c, buf, n);
}

static void send_connack(struct hconn *c, uint8_t v5_reason, uint8_t v311_code, int present,
                         const struct kf_mqtt_props *props)
{
    connack(c, v5_reason, v311_code, present, props, NULL);
}

static void send_disconnect(struct hconn *c, uint8_t reason, const char *why)
{
    uint8_t buf[300];
    size_t n;
    struct kf_mqtt_disconnect d;
    if (c->version != KF_MQTT_V5) return; /* MQTT 3.1.1 servers just close */
    memset(&d, 0, sizeof(d));
    d.reason = reason;
    if (why && *why) {
        d.props.present |= 1ull << KF_MQTT_P_REASON_STRING;
        d.props.reason_string.p = (const uint8_t *)why;
        d.props.reason_string.len = (uint16_t)strnlen(why, 200);
    }
    if (kf_mqtt_encode_disconnect(buf, sizeof(buf), KF_MQTT_V5, KF_MQTT_DISCONNECT, &d, &n) == 0)
        write_bytes(c, buf, n);
}

/* Drops a message that was taken to be sent, so that its session does not wait for it. */
static void forget(struct hconn *c, const struct kf_broker_out *o)
{
    struct kf_broker *b = c->hw->hub->broker;
    if (o->qos == 1) kf_broker_ack(b, &c->peer, KF_MQTT_PUBACK, o->packet_id);
    if (o->qos == 2) {
        kf_broker_ack(b, &c->peer, KF_MQTT_PUBREC, o->packet_id);
        kf_broker_ack(b, &c->peer, KF_MQTT_PUBCOMP, o->packet_id);
    }
}

static void send_item(struct hconn *c, const struct kf_broker_out *o, int64_t now)
{
    struct kf_mqtt_publish p;
    const struct kf_msg *m = o->msg;
    size_t need, n;
    uint8_t *buf;

    if (!m) {
        send_ack(c, KF_MQTT_PUBREL, o->packet_id, 0);
        return;
    }
    memset(&p, 0, sizeof(p));
    p.dup = o->dup;
    p.qos = o->qos;
    p.retain = o->retain;
    p.topic = m->topic;
    p.packet_id = o->packet_id;
    p.payload = m->payload;
    p.payload_len = m->payload_len;
    need = 16 + m->topic.len + m->payload_len;
    if (c->version == KF_MQTT_V5) {
        struct kf_mqtt_props *pr = &p.props;
        if (m->has_payload_format) {
            pr->present |= 1ull << KF_MQTT_P_PAYLOAD_FORMAT;
            pr->payload_format = m->payload_format;
        }
        if (m->expires_ms) {
            int64_t left = (m->expires_ms - now + 999) / 1000;
            pr->present |= 1ull << KF_MQTT_P_MESSAGE_EXPIRY;
            pr->message_expiry = (uint32_t)(left > 0 ? left : 1);
        }
        if (m->content_type.p) {
            pr->present |= 1ull << KF_MQTT_P_CONTENT_TYPE;
            pr->content_type = m->content_type;
        }
        if (m->response_topic.p) {
            pr->present |= 1ull << KF_MQTT_P_RESPONSE_TOPIC;
            pr->response_topic = m->response_topic;
        }
        if (m->correlation_data.p) {
            pr->present |= 1ull << KF_MQTT_P_CORRELATION_DATA;
            pr->correlation_data = m->correlation_data;
        }
        if (o->sub_id) {
            pr->present |= 1ull << KF_MQTT_P_SUBSCRIPTION_ID;
            pr->subscription_id = o->sub_id;
        }
        pr->user = m->user;
        pr->n_user = m->n_user;
        need += 32 + m->content_type.len + m->response_topic.len + m->correlation_data.len;
        for (size_t i = 0; i < m->n_user; i++)
            need += 5 + m->user[i].name.len + m->user[i].value.len;
    }
    buf = scratch(c->hw, need);
    if (!buf || kf_mqtt_encode_publish(buf, need, c->version, &p, &n) != 0) {
        forget(c, o);
        return;
    }
    /* The client said what it can take [MQTT-3.1.2-24]: the message is discarded for it. */
    if (c->client_max_packet && n > c->client_max_packet) {
        forget(c, o);
        return;
    }
    write_bytes(c, buf, n);
    STAT_ADD(c->hw, messages_sent, 1);
}

static void flush(struct hconn *c)
{
    struct kf_broker_out items[PULL_BATCH];
    int64_t now = kf_now_ms();
    int more = 1;

    if (!c->connected || c->closing || !c->head.bev || c->connack_wait) return;
    while (more && evbuffer_get_length(bufferevent_get_output(c->head.bev)) < OUT_HIGH) {
        size_t n = kf_broker_pull(c->hw->hub->broker, &c->peer, now, items, PULL_BATCH, &more);
        for (size_t i = 0; i < n; i++) {
            send_item(c, &items[i], now);
            kf_msg_release(items[i].msg);
        }
        if (!n) break;
    }
    c->backlog = more && evbuffer_get_length(bufferevent_get_output(c->head.bev)) >= OUT_HIGH;
}

/* ---- ending a connection ---- */

static void arm(struct hconn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->head.timer, &tv);
}

/* Arms `ev` to fire `deadline_ms` after the connection was accepted (at least 1 ms from now). */
/*
 * Ends the MQTT session's connection: the will (unless the client disconnected normally), the
 * broker, the event, and a DISCONNECT with `reason` for MQTT 5 clients when `tell`. The bytes
 * already written still go out; then the connection is freed (maybe_free).
 */
static void shut(struct hconn *c, uint8_t reason, const char *why, int tell, int send_will)
{
    struct kf_hubd *h = c->hw->hub;
    if (c->closing) return;
    c->closing = 1;
    if (c->head.bev) bufferevent_disable(c->head.bev, EV_READ);
    if (tell && c->connected) send_disconnect(c, reason, why);
    if (c->connected) {
        if (c->will && send_will && is_device_events(c, c->will->topic)) {
            /* A will on the device's events topic is one of its security events: recorded now. */
            const char *bad = NULL;
            int over = 0;
            if (device_event(c, c->will->payload, c->will->payload_len, &bad, &over))
                kf_broker_publish(h->broker, c->will, NULL, NULL);
            kf_broker_detach(h->broker, &c->peer, kf_now_ms());
        } else if (c->will && send_will) {
            kf_broker_detach_will(h->broker, &c->peer, c->will, c->will_delay, kf_now_ms());
        } else {
            kf_broker_detach(h->broker, &c->peer, kf_now_ms());
        }
        c->detached = 1;
        STAT_SUB(c->hw, connections, 1);
        event(c, "hub.disconnected", "info",
              kf_jsontext_pack("{s:s, s:s, s:s, s:I}", "id", c->id, "identity", kind_name(c->kind),
                               "reason", why, "seconds",
                               (json_int_t)((kf_now_ms() - c->connected_at) / 1000)));
    }
    kf_msg_release(c->will);
    c->will = NULL;
    arm(c, CLOSE_GRACE_MS);
}

/* Bytes written but not yet on the wire (with tlsrec: the filter's and the socket's). */
static size_t out_pending(const struct hconn *c)
{
    size_t n;
    if (!c->head.bev) return 0;
    n = evbuffer_get_length(bufferevent_get_output(c->head.bev));
    if (c->rec)
        n += evbuffer_get_length(bufferevent_get_output(bufferevent_get_underlying(c->head.bev)));
    return n;
}

static void maybe_free(struct hconn *c)
{
    if (!c->closing) return;
    if (out_pending(c) > 0) return;
    conn_free(c);
}

/* A packet the protocol forbids: counted, and the connection closed with its reason. */
static void protocol_fail(struct hconn *c, uint8_t reason, const char *why)
{
    STAT_ADD(c->hw, malformed, 1);
    kf_log(KF_LOG_INFO, "hub", "closing a connection for a bad packet", "ip", c->head.ip_text, "id",
           c->id[0] ? c->id : NULL, "reason", kf_mqtt_reason_name(reason), "why", why, NULL);
    /* Before CONNECT the version is unknown; only a bad protocol level has an answer. */
    if (!c->connected && reason == KF_MQTT_RC_UNSUPPORTED_VERSION) {
        c->version = KF_MQTT_V311;
        send_connack(c, reason, KF_MQTT_V311_BAD_VERSION, 0, NULL);
    }
    shut(c, reason, kf_mqtt_reason_name(reason), 1, 1);
}

/* ---- packets ---- */

static int is_device_events(const struct hconn *c, struct kf_mqtt_str t)
{
    char want[KF_ID_MAX + 20];
    int n = snprintf(want, sizeof(want), "devices/%s/events", c->id);
    return c->kind == KF_ACL_DEVICE && t.len == (size_t)n && memcmp(t.p, want, (size_t)n) == 0;
}

/*
 * A token of the device's own event rate, kept by id across its connections (so reconnecting does
 * not refill it). 0 when it has none: the event is refused.
 */
static int device_event_token(struct hconn *c)
{
    struct kf_hubd *h = c->hw->hub;
    const struct hub_conf *hc = &c->hw->conf;
    int64_t now = kf_now_ms();
    struct id_rec *r;
    int ok = 0;

    if (hc->dev_event_rate <= 0) return 1;
    pthread_mutex_lock(&h->lock);
    r = id_get(h, c);
    if (r) {
        if (!r->ev_refill_ms) r->ev_tokens = hc->dev_event_burst;
        if (now > r->ev_refill_ms && r->ev_refill_ms)
            r->ev_tokens += (double)(now - r->ev_refill_ms) / 1000.0 * hc->dev_event_rate;
        if (r->ev_tokens > hc->dev_event_burst) r->ev_tokens = hc->dev_event_burst;
        r->ev_refill_ms = now;
        if (r->ev_tokens >= 1) {
            r->ev_tokens -= 1;
            ok = 1;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/*
 * A device's own security event: {"type": "device.<name>", "severity": "info"|"warning"|
 * "critical", "detail": {...}}. Stored with source=device; 0 with `why` when it is not one.
 * Each takes a token of the device's event rate; beyond it, 0 with `*over` set.
 */
static int device_event(struct hconn *c, const uint8_t *payload, size_t len, const char **why,
                        int *over)
{
    json_error_t jerr;
    json_t *j, *type, *sev, *detail;
    const char *t, *s;
    char *text = NULL;

    if (len > EVENT_BODY_MAX) {
        *why = "a device event is at most 16 KiB";
        return 0;
    }
    j = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        *why = "a device event is a JSON object";
        return 0;
    }
    type = json_object_get(j, "type");
    sev = json_object_get(j, "severity");
    detail = json_object_get(j, "detail");
    t = json_string_value(type);
    s = sev ? json_string_value(sev) : "warning";
    if (!t || strncmp(t, "device.", 7) != 0 || strlen(t) > 64 || strlen(t) < 8 ||
        strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789._") != strlen(t)) {
        json_decref(j);
        *why = "\"type\" must be \"device.<name>\" (lower-case letters, digits, '.', '_')";
        return 0;
    }
    if (!s || (strcmp(s, "info") != 0 && strcmp(s, "warning") != 0 && strcmp(s, "critical") != 0)) {
        json_decref(j);
        *why = "\"severity\" must be info, warning or critical";
        return 0;
    }
    if (detail && !json_is_object(detail)) {
        json_decref(j);
        *why = "\"detail\" must be an object";
        return 0;
    }
    if (!device_event_token(c)) {
        json_decref(j);
        *over = 1;
        *why = "over the device's event rate (hub.device_event_rate)";
        rate_event(c, "device_events");
        return 0;
    }
    if (detail) text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    kf_events_submit(c->hw->hub->deploy->store, t, s, c->id, NULL, "device", c->head.ip_text, text);
    json_decref(j);
    return 1;
}

/*
 * Takes tokens for `msgs` inbound messages (a PUBLISH is one; a SUBSCRIBE or UNSUBSCRIBE one per
 * filter) of `bytes`; 0 when over a rate.
 */
static int take_tokens(struct hconn *c, double msgs, size_t bytes, int64_t now)
{
    const struct hub_conf *hc = &c->hw->conf;
    double dt = (double)(now - c->refill_ms) / 1000.0;
    c->refill_ms = now;
    /* a packet never needs more than a full bucket: one may always pass, after a wait */
    if (msgs > hc->msg_burst) msgs = hc->msg_burst;
    if (hc->msg_rate > 0) {
        c->msg_tokens += dt * hc->msg_rate;
        if (c->msg_tokens > hc->msg_burst) c->msg_tokens = hc->msg_burst;
        if (c->msg_tokens < msgs) return 0;
    }
    if (hc->byte_rate > 0) {
        c->byte_tokens += dt * hc->byte_rate;
        if (c->byte_tokens > hc->byte_burst) c->byte_tokens = hc->byte_burst;
        if (c->byte_tokens < (double)bytes) return 0;
    }
    if (hc->msg_rate > 0) c->msg_tokens -= msgs;
    if (hc->byte_rate > 0) c->byte_tokens -= (double)bytes;
    return 1;
}

/* Over a rate: counted, and one event per connection and interval (the sink aggregates). */
static void rate_event(struct hconn *c, const char *what)
{
    int64_t now = kf_now_ms();
    STAT_ADD(c->hw, rate_limited, 1);
    if (now - c->last_rate_event < RATE_EVENT_MS) return;
    c->last_rate_event = now;
    refusal(c, "hub.rate_limited", what,
            kf_jsontext_pack("{s:s, s:s, s:s, s:f, s:f}", "id", c->id, "limit", what, "action",
                             c->hw->conf.rate_disconnect ? "disconnect" : "drop", "msg_rate",
                             c->hw->conf.msg_rate, "byte_rate", c->hw->conf.byte_rate));
}

/* Answers a QoS 1 or 2 PUBLISH with `reason` (MQTT 3.1.1 acks carry none). */
static void ack_publish(struct hconn *c, const struct kf_mqtt_publish *p, uint8_t reason)
{
    if (p->qos == 1) queue_ack(c, KF_MQTT_PUBACK, p->packet_id, reason, 1);
    if (p->qos == 2) queue_ack(c, KF_MQTT_PUBREC, p->packet_id, reason, 1);
}

/* ---- retained messages and persistent sessions in the store ---- */

/*
 * The broker's changes of this thread's current call gather in `job`; the connection `c`, when
 * set, waits for them (its acknowledgement goes once they are durable): `submitted` is then the
 * last job sent for it. `hw`: the worker of this thread, whose write-behind takes deletes.
 */
static __thread struct {
    struct hconn *c;
    struct hub_job *job, *submitted;
    struct kf_hub_worker *hw;
    int lost; /* out of memory for an op of the current call */
} tl;

static enum kf_err job_cb(struct kf_txn *txn, void *arg)
{
    struct hub_job *j = arg;
    enum kf_err rc = KF_OK;
    for (struct hub_op *o = j->ops; o && !rc; o = o->next) {
        switch (o->type) {
        case KF_BROKER_RETAIN:
            rc = o->len == o->topic_len
                     ? kf_txn_hub_retained_delete(txn, o->data, o->topic_len)
                     : kf_txn_hub_retained_put(txn, o->data, o->topic_len, o->data + o->topic_len,
                                               o->len - o->topic_len);
            break;
        case KF_BROKER_PUT:
            rc = kf_txn_hub_state_put(txn, o->session, o->kind, o->key, o->data, o->len);
            break;
        case KF_BROKER_DELETE:
            rc = kf_txn_hub_state_delete(txn, o->session, o->kind, o->key);
            break;
        case KF_BROKER_DROP: rc = kf_txn_hub_state_drop(txn, o->session); break;
        default: break;
        }
    }
    return rc;
}

static void job_free(struct hub_job *j)
{
    while (j->ops) {
        struct hub_op *o = j->ops;
        j->ops = o->next;
        free(o);
    }
    free(j);
}

static struct hub_job *job_new(struct kf_hubd *h)
{
    struct hub_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->hub = h;
    j->tail = &j->ops;
    j->req.cb = job_cb;
    j->req.arg = j;
    j->req.done_arg = j;
    return j;
}

/* On the store's thread: the messages it held may go; back to the worker that waits, or done. */
static void job_done(struct kf_store_req *req, enum kf_err rc, void *arg)
{
    struct hub_job *j = arg;
    struct kf_hubd *h = j->hub;
    struct kf_hub_worker *hw = j->hw ? j->hw : j->c ? j->c->hw : NULL; /* c->hw never changes */
    uint64_t seq = j->seq;
    if (!j->hw) __atomic_sub_fetch(&h->ret_pending, 1, __ATOMIC_RELAXED);
    if (rc) {
        kf_log(KF_LOG_ERROR, "hub", "the hub's state could not be kept in the store", "error",
               req->errmsg, NULL);
    }
    if (hw) {
        /* first: a SUBACK that waited goes before the retained messages it let out */
        j->rc = rc;
        pthread_mutex_lock(&hw->jobs_lock);
        j->next = hw->jobs_done;
        hw->jobs_done = j;
        pthread_mutex_unlock(&hw->jobs_lock);
    } else {
        job_free(j);
    }
    if (seq) kf_broker_settled(h->broker, seq);
    if (hw) event_active(hw->wake, EV_READ, 0);
}

static void zombie_free(struct hconn *c)
{
    while (c->acks) {
        struct ack *a = c->acks;
        c->acks = a->next;
        free(a);
    }
    free(c);
}

/* The worker's write-behind goes to the store, unless one is there already. */
static void behind_submit(struct kf_hub_worker *hw)
{
    struct hub_job *j = hw->behind;
    struct kf_store *store = hw->hub->deploy ? hw->hub->deploy->store : NULL;
    if (!j || hw->behind_busy) return;
    j->req.done_cb = job_done;
    if (!store) return; /* stopping: freed with the worker */
    if (kf_store_submit(store, &j->req) != KF_OK) {
        kf_err_clear(); /* the store is full: again at the next commit or tick */
        return;
    }
    hw->behind = NULL;
    hw->behind_busy = 1;
}

static void read_cb(struct bufferevent *bev, void *arg);

/* Reading starts again once the store has taken what the connection waited for. */
static void maybe_resume(struct hconn *c)
{
    if (!c->paused || c->closing || !c->head.bev || (c->jobs && c->jobs >= JOBS_PER_CONN / 2) ||
        __atomic_load_n(&c->hw->hub->ret_pending, __ATOMIC_RELAXED) >= RET_PENDING_MAX)
        return;
    c->paused = 0;
    bufferevent_enable(c->head.bev, EV_READ);
    read_cb(c->head.bev, c); /* what waited in the input; may free c */
}

/* On the worker: the acknowledgements that waited for the store go, in order. */
static void jobs_drain(struct kf_hub_worker *hw)
{
    struct hub_job *list, *rev = NULL;
    pthread_mutex_lock(&hw->jobs_lock);
    list = hw->jobs_done;
    hw->jobs_done = NULL;
    pthread_mutex_unlock(&hw->jobs_lock);
    while (list) { /* oldest first */
        struct hub_job *j = list;
        list = j->next;
        j->next = rev;
        rev = j;
    }
    while (rev) {
        struct hub_job *j = rev;
        struct hconn *c = j->c;
        rev = j->next;
        if (j->hw) hw->behind_busy = 0;
        if (c) {
            c->jobs--;
            if (j->retained) c->ret_jobs--;
            if (j->ack) {
                j->ack->ready = 1;
                /* not durable: an MQTT 5 publisher hears so */
                if ((j->rc || j->lost) && c->version == KF_MQTT_V5 && !j->ack->len)
                    j->ack->reason = KF_MQTT_RC_UNSPECIFIED;
            }
            if (c->zombie) {
                if (!c->jobs) zombie_free(c);
            } else {
                flush_acks(c);
                if (j->connack) {
                    c->connack_wait = 0;
                    flush(c); /* what waited for the CONNACK */
                }
                maybe_resume(c);
            }
        }
        job_free(j);
    }
    behind_submit(hw);
}

/* Appends one op to `j` (NULL when out of memory: the change is kept in memory only). */
static struct hub_op *job_add(struct hub_job *j, const struct kf_broker_op *op, size_t extra)
{
    struct hub_op *o = calloc(1, sizeof(*o) + op->len + extra);
    if (!o) return NULL;
    o->type = (uint8_t)op->type;
    o->kind = (uint8_t)op->kind;
    o->key = op->key;
    if (op->session) snprintf(o->session, sizeof(o->session), "%s", op->session);
    if (op->len) memcpy(o->data, op->value, op->len);
    o->len = op->len;
    *j->tail = o;
    j->tail = &o->next;
    return o;
}

/* The broker's callback (its lock held): its changes go to the store, in its order. */
static int on_change(void *arg, const struct kf_broker_op *op)
{
    struct kf_hubd *h = arg;
    struct kf_store *store = h->deploy ? h->deploy->store : NULL;
    struct hub_job **jp = &tl.job;
    struct hub_job *j;

    if (!store) return 1; /* stopping: the store is closed */
    if (op->type == KF_BROKER_COMMIT) {
        int lost = tl.lost;
        j = tl.job;
        tl.job = NULL;
        tl.lost = 0;
        if (tl.hw) behind_submit(tl.hw);
        if (lost)
            kf_log(KF_LOG_ERROR, "hub",
                   "out of memory: part of the hub's state is kept in memory only", NULL);
        if (!j) return lost;
        j->lost = lost;
        j->seq = op->seq;
        j->c = tl.c;
        j->req.done_cb = job_done;
        if (kf_store_submit(store, &j->req) != KF_OK) {
            kf_log(KF_LOG_WARN, "hub", "the store is busy: the hub's state is kept in memory only",
                   "error", kf_errmsg(), NULL);
            kf_err_clear();
            job_free(j);
            return 1;
        }
        __atomic_add_fetch(&h->ret_pending, 1, __ATOMIC_RELAXED);
        if (j->c) {
            j->c->jobs++; /* it points at the connection until jobs_drain has it back */
            if (j->retained) j->c->ret_jobs++;
            tl.submitted = j;
        }
        return 0;
    }
    if (op->type == KF_BROKER_DELETE && op->behind && tl.hw) jp = &tl.hw->behind;
    if (!*jp && !(*jp = job_new(h))) {
        tl.lost = 1;
        return 0;
    }
    j = *jp;
    if (jp != &tl.job) j->hw = tl.hw;
    if (op->type == KF_BROKER_RETAIN) {
        const struct kf_msg *m = op->msg;
        struct kf_broker_op copy = {
            .type = KF_BROKER_RETAIN, .value = m->topic.p, .len = m->topic.len};
        struct kf_buf enc;
        struct hub_op *o;
        kf_buf_init(&enc, 16u * 1024 * 1024);
        if (m->payload_len && kf_msg_encode(m, &enc) != KF_OK) {
            kf_err_clear();
            kf_buf_free(&enc);
            tl.lost = 1;
            return 0;
        }
        o = job_add(j, &copy, enc.len);
        if (o) {
            if (enc.len) memcpy(o->data + m->topic.len, enc.data, enc.len);
            o->topic_len = m->topic.len;
            o->len += enc.len;
            j->retained = 1;
        } else {
            tl.lost = 1;
        }
        kf_buf_free(&enc);
        return 0;
    }
    if (!job_add(j, op, 0)) tl.lost = 1;
    return 0;
}

/* Around the broker calls of one packet of `c`, whose answer may wait for what they write. */
static void waits_begin(struct hconn *c)
{
    tl.c = c->hw->hub->persistence ? c : NULL;
    tl.submitted = NULL;
    tl.hw = c->hw;
}

static void waits_end(void)
{
    tl.c = NULL;
    tl.submitted = NULL;
}

/*
 * Takes the job the broker calls so far submitted for this packet: the answer that follows waits
 * for it. NULL when there is none (answer now) or it carries an answer already.
 */
static struct hub_job *take_wait(void)
{
    struct hub_job *j = tl.submitted;
    tl.submitted = NULL;
    return j && !j->ack ? j : NULL;
}

/* An acknowledgement after the broker call whose changes it waits for. */
static void ack_after(struct hconn *c, enum kf_mqtt_type type, uint16_t id, uint8_t reason)
{
    struct hub_job *j = take_wait();
    struct ack *a = queue_ack(c, type, id, reason, !j);
    if (j) j->ack = a;
}

/* The retained messages kept before: back into the broker (at start). */
static enum kf_err restore_one(const void *topic, size_t topic_len, const void *msg, size_t msg_len,
                               void *arg)
{
    struct kf_hubd *h = arg;
    struct kf_msg *m = kf_msg_decode(msg, msg_len);
    if (!m || m->topic.len != topic_len || memcmp(m->topic.p, topic, topic_len) != 0) {
        kf_log(KF_LOG_WARN, "hub", "a stored retained message does not read back; left out",
               "error", m ? "its topic differs" : kf_errmsg(), NULL);
        kf_err_clear();
        kf_msg_release(m);
        return KF_OK;
    }
    if (!m->expires_ms || m->expires_ms > kf_now_ms()) kf_broker_restore_retained(h->broker, m);
    kf_msg_release(m);
    return KF_OK;
}

static enum kf_err restore_retained(struct kf_hubd *h)
{
    struct kf_txn *txn = NULL;
    struct kf_broker_stats st;
    enum kf_err rc = kf_store_read(h->deploy->store, &txn);
    if (!rc) rc = kf_txn_hub_retained_list(txn, restore_one, h);
    kf_txn_end(txn);
    if (rc) return kf_wrap(rc, "cannot read the retained messages back");
    kf_broker_stats(h->broker, &st);
    if (st.retained) {
        char n[24];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)st.retained);
        kf_log(KF_LOG_INFO, "hub", "retained messages restored", "count", n, NULL);
    }
    return KF_OK;
}

/* The persistent sessions kept before: back into the broker, offline (at start). */
struct restoring {
    struct kf_broker *broker;
    int64_t now;
    size_t sessions, messages, bad;
};

static enum kf_err restore_row(const char *session, int kind, int64_t key, const void *value,
                               size_t len, void *arg)
{
    struct restoring *r = arg;
    enum kf_err rc = kf_broker_restore(r->broker, session, kind, key, value, len, r->now);
    if (rc == KF_E_NOMEM) return rc;
    if (rc) {
        /* once per session: the rest of its rows fail the same way */
        if (kind == KF_BROKER_ROW_SESSION || r->bad == 0)
            kf_log(KF_LOG_WARN, "hub", "a stored session's state does not read back; left out",
                   "session", session, "error", kf_errmsg(), NULL);
        kf_err_clear();
        r->bad++;
        return KF_OK;
    }
    if (kind == KF_BROKER_ROW_SESSION) r->sessions++;
    if (kind == KF_BROKER_ROW_MSG) r->messages++;
    return KF_OK;
}

static enum kf_err restore_sessions(struct kf_hubd *h)
{
    struct restoring r = {h->broker, kf_now_ms(), 0, 0, 0};
    struct kf_txn *txn = NULL;
    enum kf_err rc = kf_store_read(h->deploy->store, &txn);
    if (!rc) rc = kf_txn_hub_state_list(txn, restore_row, &r);
    kf_txn_end(txn);
    if (rc) return kf_wrap(rc, "cannot read the hub's sessions back");
    if (r.sessions || r.bad) {
        char n[24], q[24], b[24];
        snprintf(n, sizeof(n), "%zu", r.sessions);
        snprintf(q, sizeof(q), "%zu", r.messages);
        snprintf(b, sizeof(b), "%zu", r.bad);
        kf_log(KF_LOG_INFO, "hub", "persistent sessions restored", "sessions", n, "messages", q,
               "left_out", b, NULL);
    }
    return KF_OK;
}

/* Refused whole, and said so: a retained message is never dropped in silence. */
static void retained_refused(struct hconn *c, const struct kf_mqtt_publish *p,
                             struct kf_mqtt_str topic, const char *kind, const char *reason)
{
    char t[200];
    size_t n = topic.len < sizeof(t) - 1 ? topic.len : sizeof(t) - 1;
    memcpy(t, topic.p, n);
    t[n] = '\0';
    refusal(c, "hub.retained_refused", kind,
            kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "identity", kind_name(c->kind),
                             "topic", t, "reason", reason));
    ack_publish(c, p, c->version == KF_MQTT_V5 ? KF_MQTT_RC_QUOTA_EXCEEDED : 0);
}

static void on_publish(struct hconn *c, const struct kf_mqtt_packet *pkt)
{
    const struct kf_mqtt_publish *p = &pkt->u.publish;
    struct kf_acl_identity who = {c->kind, c->id};
    struct kf_mqtt_str topic = p->topic;
    struct kf_hubd *h = c->hw->hub;
    int64_t now = kf_now_ms();
    struct kf_msg *m;
    size_t routed;
    enum kf_retain_refusal unkept = KF_RETAIN_OK;

    /* A subscription identifier is the server's to send [MQTT-3.3.4-6]. */
    if (KF_MQTT_HAS(&p->props, KF_MQTT_P_SUBSCRIPTION_ID)) {
        protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "a subscription identifier in a PUBLISH");
        return;
    }
    /* Topic aliases (MQTT 5): the client maps short numbers to topics [MQTT-3.3.2.3.4]. */
    if (KF_MQTT_HAS(&p->props, KF_MQTT_P_TOPIC_ALIAS)) {
        uint16_t a = p->props.topic_alias;
        if (a == 0 || a > TOPIC_ALIAS_MAX) {
            protocol_fail(c, KF_MQTT_RC_TOPIC_ALIAS_INVALID, "topic alias out of range");
            return;
        }
        if (topic.len) {
            uint8_t *copy = malloc(topic.len);
            if (!copy) {
                shut(c, KF_MQTT_RC_SERVER_BUSY, "out_of_memory", 1, 1);
                return;
            }
            memcpy(copy, topic.p, topic.len);
            free(c->aliases[a].p);
            c->aliases[a].p = copy;
            c->aliases[a].len = topic.len;
        } else if (!c->aliases[a].p) {
            protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "an unknown topic alias");
            return;
        }
        topic.p = c->aliases[a].p;
        topic.len = c->aliases[a].len;
    } else if (!topic.len) {
        protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "an empty topic without an alias");
        return;
    }
    if (!take_tokens(c, 1, pkt->size, now)) {
        rate_event(c, "publish");
        if (c->hw->conf.rate_disconnect) {
            shut(c, KF_MQTT_RC_MESSAGE_RATE_TOO_HIGH, "message_rate_too_high", 1, 1);
            return;
        }
        ack_publish(c, p, KF_MQTT_RC_QUOTA_EXCEEDED);
        return;
    }
    if (!kf_acl_publish(&who, topic.p, topic.len)) {
        char t[200];
        size_t n = topic.len < sizeof(t) - 1 ? topic.len : sizeof(t) - 1;
        memcpy(t, topic.p, n);
        t[n] = '\0';
        STAT_ADD(c->hw, acl_denied, 1);
        refusal(c, "hub.acl_denied", "publish",
                kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "identity",
                                 kind_name(c->kind), "operation", "publish", "topic", t));
        if (c->version == KF_MQTT_V5) {
            ack_publish(c, p, KF_MQTT_RC_NOT_AUTHORIZED);
            return;
        }
        if (c->hw->conf.acl_disconnect) {
            shut(c, KF_MQTT_RC_NOT_AUTHORIZED, "not_authorized", 1, 1);
            return;
        }
        ack_publish(c, p, 0); /* dropped, as configured */
        return;
    }
    if (p->qos == 2) {
        /* recorded with its message, below (kf_broker_publish_qos2) */
        int r = kf_broker_qos2_check(h->broker, &c->peer, p->packet_id);
        if (r < 0) {
            protocol_fail(c, KF_MQTT_RC_RECEIVE_MAX_EXCEEDED, "too many QoS 2 messages unreleased");
            return;
        }
        if (r == 0) { /* a duplicate: already routed */
            queue_ack(c, KF_MQTT_PUBREC, p->packet_id, 0, 1);
            return;
        }
    }
    if (is_device_events(c, topic)) {
        const char *why = NULL;
        int over = 0;
        if (!device_event(c, p->payload, p->payload_len, &why, &over)) {
            kf_log(KF_LOG_DEBUG, "hub", "a device event was refused", "id", c->id, "why", why,
                   NULL);
            ack_publish(c, p,
                        c->version != KF_MQTT_V5 ? 0
                        : over                   ? KF_MQTT_RC_QUOTA_EXCEEDED
                                                 : KF_MQTT_RC_PAYLOAD_FORMAT_INVALID);
            return;
        }
    }
    m = kf_msg_new(p, topic, c->key, now);
    if (!m) {
        shut(c, KF_MQTT_RC_SERVER_BUSY, "out_of_memory", 1, 1);
        return;
    }
    /*
     * Retained writes share the store with provisioning: a connection may have a few on their
     * way, the hub a quarter of the store's queue, so that no publisher can starve enrollments
     * (or the other publishers) of it.
     */
    if (p->retain && h->persistence &&
        (c->ret_jobs >= RET_PENDING_PER_CONN ||
         __atomic_load_n(&h->ret_pending, __ATOMIC_RELAXED) >= RET_PENDING_MAX)) {
        kf_msg_release(m);
        retained_refused(c, p, topic, "store_busy",
                         "the store is busy with retained messages; publish again later");
        return;
    }
    routed = p->qos == 2
                 ? kf_broker_publish_qos2(h->broker, &c->peer, p->packet_id, m, NULL, &unkept)
                 : kf_broker_publish(h->broker, m, NULL, &unkept);
    kf_msg_release(m);
    if (unkept) {
        retained_refused(c, p, topic, unkept == KF_RETAIN_QUOTA ? "quota" : "full",
                         unkept == KF_RETAIN_QUOTA
                             ? "the identity holds its share of retained messages "
                               "(hub.max_retained_per_id, max_retained_bytes_per_id)"
                             : "the hub holds max_retained or max_retained_bytes");
        return;
    }
    STAT_ADD(c->hw, messages_received, 1);
    /* acknowledged once durable: the store's answer comes back through jobs_drain */
    if (p->qos)
        ack_after(c, p->qos == 1 ? KF_MQTT_PUBACK : KF_MQTT_PUBREC, p->packet_id,
                  c->version == KF_MQTT_V5 && routed == 0 ? KF_MQTT_RC_NO_MATCHING_SUBSCRIBERS : 0);
}

static void on_subscribe(struct hconn *c, const struct kf_mqtt_packet *pkt, int unsubscribe)
{
    const struct kf_mqtt_subscribe *s = &pkt->u.subscribe;
    struct kf_acl_identity who = {c->kind, c->id};
    struct kf_hubd *h = c->hw->hub;
    uint8_t codes[256], *buf;
    struct kf_broker_filter fl[256];
    size_t at[256], nf = 0;
    struct kf_mqtt_sub e;
    size_t pos = 0, n = 0, len;

    if (s->count > sizeof(codes)) {
        protocol_fail(c, KF_MQTT_RC_QUOTA_EXCEEDED, "more than 256 filters in one packet");
        return;
    }
    /* Each filter is a message against the rates: a SUBSCRIBE is no way around them. */
    if (!take_tokens(c, s->count ? (double)s->count : 1, pkt->size, kf_now_ms())) {
        rate_event(c, unsubscribe ? "unsubscribe" : "subscribe");
        if (c->hw->conf.rate_disconnect) {
            shut(c, KF_MQTT_RC_MESSAGE_RATE_TOO_HIGH, "message_rate_too_high", 1, 1);
            return;
        }
        for (n = 0; n < s->count; n++)
            codes[n] = c->version == KF_MQTT_V5 ? KF_MQTT_RC_QUOTA_EXCEEDED : 0x80;
        if (unsubscribe && c->version != KF_MQTT_V5) n = 0; /* 3.1.1 UNSUBACK has none */
        buf = scratch(c->hw, 64 + n);
        if (buf && kf_mqtt_encode_suback(buf, 64 + n, c->version, unsubscribe, s->packet_id, NULL,
                                         codes, n, &len) == 0)
            write_bytes(c, buf, len);
        return;
    }
    /* The filters the broker takes go to it in one call: one commit for the whole packet. */
    while (kf_mqtt_subs_next(pkt, c->version, &pos, &e)) {
        uint8_t code = 0;
        if (unsubscribe) {
            memset(&fl[nf], 0, sizeof(fl[nf]));
            fl[nf].filter = e.filter.p;
            fl[nf].len = e.filter.len;
            at[nf++] = n;
        } else if (!kf_mqtt_topic_filter_valid(e.filter.p, e.filter.len)) {
            code = c->version == KF_MQTT_V5 ? KF_MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
        } else if (e.filter.len >= 7 && memcmp(e.filter.p, "$share/", 7) == 0) {
            code = c->version == KF_MQTT_V5 ? KF_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED : 0x80;
        } else if (!kf_acl_subscribe(&who, e.filter.p, e.filter.len)) {
            char f[200];
            size_t fn = e.filter.len < sizeof(f) - 1 ? e.filter.len : sizeof(f) - 1;
            memcpy(f, e.filter.p, fn);
            f[fn] = '\0';
            STAT_ADD(c->hw, acl_denied, 1);
            refusal(c, "hub.acl_denied", "subscribe",
                    kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "identity",
                                     kind_name(c->kind), "operation", "subscribe", "topic", f));
            code = c->version == KF_MQTT_V5 ? KF_MQTT_RC_NOT_AUTHORIZED : 0x80;
        } else {
            struct kf_broker_sub_opts o;
            memset(&o, 0, sizeof(o));
            o.qos = e.qos > 2 ? 2 : e.qos;
            o.no_local = e.no_local;
            o.retain_as_published = e.retain_as_published;
            o.retain_handling = e.retain_handling;
            if (KF_MQTT_HAS(&s->props, KF_MQTT_P_SUBSCRIPTION_ID))
                o.sub_id = s->props.subscription_id;
            fl[nf].filter = e.filter.p;
            fl[nf].len = e.filter.len;
            fl[nf].opts = o;
            at[nf++] = n;
        }
        codes[n++] = code;
    }
    if (unsubscribe) {
        kf_broker_unsubscribe_many(h->broker, &c->peer, fl, nf);
        for (size_t i = 0; i < nf; i++)
            codes[at[i]] = fl[i].result ? KF_MQTT_RC_SUCCESS : KF_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    } else if (nf) {
        kf_broker_subscribe_many(h->broker, &c->peer, fl, nf);
        for (size_t i = 0; i < nf; i++)
            codes[at[i]] = fl[i].result == KF_OK      ? fl[i].opts.qos
                           : c->version == KF_MQTT_V5 ? KF_MQTT_RC_QUOTA_EXCEEDED
                                                      : 0x80;
        kf_err_clear();
    }
    buf = scratch(c->hw, 64 + n);
    if (buf && kf_mqtt_encode_suback(buf, 64 + n, c->version, unsubscribe, s->packet_id, NULL,
                                     codes, n, &len) == 0) {
        /* a persistent session's subscriptions are durable before the SUBACK */
        struct hub_job *j = take_wait();
        struct ack *a = queue_packet(c, buf, len, !j);
        if (j) j->ack = a;
    }
    flush(c); /* retained messages */
}

/* Why the registry keeps `c`'s identity out ("device_disabled", "revoked", ...), or NULL. */
static const char *kept_out(const struct hconn *c, const struct kf_registry *reg)
{
    int status = kf_registry_blocked(reg, c->kind != KF_ACL_DEVICE, c->id);
    if (status == KF_DEVICE_DISABLED && c->kind == KF_ACL_DEVICE) return "device_disabled";
    if (status) return c->kind == KF_ACL_DEVICE ? "device_revoked" : "service_revoked";
    if (kf_registry_cert_revoked(reg, c->serial)) return "revoked";
    return NULL;
}

static void on_connect(struct hconn *c, const struct kf_mqtt_connect *k)
{
    struct kf_hub_worker *hw = c->hw;
    struct kf_hubd *h = hw->hub;
    const struct hub_conf *hc = &hw->conf;
    struct kf_mqtt_props props;
    struct kf_registry *reg;
    int64_t now = kf_now_ms();
    int assigned = 0, present = 0, unusual = 0;
    uint32_t expiry;
    const char *why = NULL;

    c->version = k->version;
    if (KF_MQTT_HAS(&k->props, KF_MQTT_P_AUTH_METHOD)) {
        send_connack(c, KF_MQTT_RC_BAD_AUTH_METHOD, KF_MQTT_V311_NOT_AUTHORIZED, 0, NULL);
        shut(c, 0, "bad_auth_method", 0, 0);
        return;
    }
    if (k->client_id.len == 0 && k->version != KF_MQTT_V5 && !k->clean_start) {
        /* MQTT-3.1.3-8: no session can be kept for a client that has no name for it. */
        send_connack(c, KF_MQTT_RC_CLIENT_ID_NOT_VALID, KF_MQTT_V311_ID_REJECTED, 0, NULL);
        shut(c, 0, "empty_client_id_persistent", 0, 0);
        return;
    } else if (k->client_id.len == 0) {
        assigned = 1;
    } else if (k->client_id.len != strlen(c->id) || memcmp(k->client_id.p, c->id, strlen(c->id))) {
        char got[160];
        char raw[KF_ID_MAX + 1];
        size_t n = k->client_id.len < KF_ID_MAX ? k->client_id.len : KF_ID_MAX;
        memcpy(raw, k->client_id.p, n);
        raw[n] = '\0';
        kf_text_quote(got, sizeof(got), raw);
        auth_failed(c, "client_id_mismatch", got);
        send_connack(c, KF_MQTT_RC_CLIENT_ID_NOT_VALID, KF_MQTT_V311_ID_REJECTED, 0, NULL);
        shut(c, 0, "client_id_mismatch", 0, 0);
        return;
    }
    reg = kf_registry_get(h->registry);
    why = kept_out(c, reg);
    kf_registry_release(reg);
    if (why) {
        auth_failed(c, why, "the identity may not connect");
        send_connack(c, KF_MQTT_RC_NOT_AUTHORIZED, KF_MQTT_V311_NOT_AUTHORIZED, 0, NULL);
        shut(c, 0, why, 0, 0);
        return;
    }
    if (id_connect(c, now, &unusual)) {
        STAT_ADD(hw, refused, 1);
        send_connack(c, KF_MQTT_RC_BANNED, KF_MQTT_V311_NOT_AUTHORIZED, 0, NULL);
        shut(c, 0, "flapping", 0, 0);
        return;
    }
    if (k->will) {
        struct kf_acl_identity who = {c->kind, c->id};
        struct kf_mqtt_publish wp;
        if (!kf_acl_publish(&who, k->will_topic.p, k->will_topic.len)) {
            STAT_ADD(hw, acl_denied, 1);
            refusal(c, "hub.acl_denied", "will",
                    kf_jsontext_pack("{s:s, s:s, s:s, s:s%}", "id", c->id, "identity",
                                     kind_name(c->kind), "operation", "will", "topic",
                                     (const char *)k->will_topic.p, (size_t)k->will_topic.len));
            send_connack(c, KF_MQTT_RC_NOT_AUTHORIZED, KF_MQTT_V311_NOT_AUTHORIZED, 0, NULL);
            shut(c, 0, "will_not_authorized", 0, 0);
            return;
        }
        memset(&wp, 0, sizeof(wp));
        wp.qos = k->will_qos;
        wp.retain = k->will_retain;
        wp.topic = k->will_topic;
        wp.payload = k->will_payload.p;
        wp.payload_len = k->will_payload.len;
        wp.props = k->will_props;
        c->will = kf_msg_new(&wp, k->will_topic, c->key, now);
        if (KF_MQTT_HAS(&k->will_props, KF_MQTT_P_WILL_DELAY))
            c->will_delay = k->will_props.will_delay;
    }
    if (k->version == KF_MQTT_V5)
        expiry = KF_MQTT_HAS(&k->props, KF_MQTT_P_SESSION_EXPIRY) ? k->props.session_expiry : 0;
    else
        expiry = k->clean_start ? 0 : hc->expiry_max;
    if (expiry > hc->expiry_max) expiry = hc->expiry_max;
    c->expiry = expiry;
    c->peer.receive_max = hc->max_inflight;
    if (KF_MQTT_HAS(&k->props, KF_MQTT_P_RECEIVE_MAXIMUM) &&
        k->props.receive_maximum < c->peer.receive_max)
        c->peer.receive_max = k->props.receive_maximum;
    if (KF_MQTT_HAS(&k->props, KF_MQTT_P_MAXIMUM_PACKET_SIZE))
        c->client_max_packet = k->props.maximum_packet_size;
    if (kf_broker_attach(h->broker, &c->peer, c->key, k->clean_start, expiry, &present) != KF_OK) {
        kf_err_clear();
        send_connack(c, KF_MQTT_RC_SERVER_UNAVAILABLE, KF_MQTT_V311_SERVER_UNAVAILABLE, 0, NULL);
        shut(c, 0, "server_unavailable", 0, 0);
        return;
    }
    memset(&props, 0, sizeof(props));
    props.present = (1ull << KF_MQTT_P_RECEIVE_MAXIMUM) | (1ull << KF_MQTT_P_MAXIMUM_PACKET_SIZE) |
                    (1ull << KF_MQTT_P_TOPIC_ALIAS_MAXIMUM) |
                    (1ull << KF_MQTT_P_SHARED_SUB_AVAILABLE);
    props.receive_maximum = hc->max_inflight;
    props.maximum_packet_size = (uint32_t)hc->max_packet;
    props.topic_alias_maximum = TOPIC_ALIAS_MAX;
    props.shared_sub_available = 0;
    if (assigned) {
        props.present |= 1ull << KF_MQTT_P_ASSIGNED_CLIENT_ID;
        props.assigned_client_id.p = (const uint8_t *)c->id;
        props.assigned_client_id.len = (uint16_t)strlen(c->id);
    }
    if (k->version == KF_MQTT_V5 && KF_MQTT_HAS(&k->props, KF_MQTT_P_SESSION_EXPIRY) &&
        expiry != k->props.session_expiry) {
        props.present |= 1ull << KF_MQTT_P_SESSION_EXPIRY;
        props.session_expiry = expiry;
    }
    {
        struct hub_job *j = take_wait();
        connack(c, KF_MQTT_RC_SUCCESS, KF_MQTT_V311_ACCEPTED, present, &props, present ? j : NULL);
    }
    c->connected = 1;
    c->connected_at = now;
    c->keep_alive = k->keep_alive;
    c->refill_ms = now;
    c->msg_tokens = hc->msg_burst;
    c->byte_tokens = hc->byte_burst;
    evtimer_del(c->head.timer);
    /* A client that says nothing for one and a half keep-alive periods is gone [MQTT-3.1.2-24]. */
    if (c->keep_alive) arm(c, c->keep_alive * 1500);
    STAT_ADD(hw, connections, 1);
    STAT_ADD(hw, connects, 1);
    event(c, "hub.connected", "info",
          kf_jsontext_pack("{s:s, s:s, s:i, s:b, s:b}", "id", c->id, "identity", kind_name(c->kind),
                           "mqtt", k->version == KF_MQTT_V5 ? 5 : 4, "session_present", present,
                           "tls_resumed", c->tls_resumed));
    if (unusual)
        event(c, "hub.unusual_ip", "warning",
              kf_jsontext_pack("{s:s, s:s}", "id", c->id, "ip", c->head.ip_text));
    flush(c);
}

static void packet(struct hconn *c, const struct kf_mqtt_packet *pkt)
{
    struct kf_hubd *h = c->hw->hub;
    if (!c->connected) {
        if (pkt->type != KF_MQTT_CONNECT) {
            protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "the first packet must be CONNECT");
            return;
        }
        on_connect(c, &pkt->u.connect);
        return;
    }
    if (c->keep_alive) arm(c, c->keep_alive * 1500);
    switch (pkt->type) {
    case KF_MQTT_PUBLISH: on_publish(c, pkt); return;
    case KF_MQTT_PUBACK:
    case KF_MQTT_PUBCOMP:
        kf_broker_ack(h->broker, &c->peer, pkt->type, pkt->u.ack.packet_id);
        return;
    case KF_MQTT_PUBREC:
        if (pkt->u.ack.reason >= 0x80) {
            /* refused: the message is acknowledged, no PUBREL follows [MQTT-4.3.3-4, 4.4.0-2] */
            if (kf_broker_ack(h->broker, &c->peer, KF_MQTT_PUBREC, pkt->u.ack.packet_id))
                kf_broker_ack(h->broker, &c->peer, KF_MQTT_PUBCOMP, pkt->u.ack.packet_id);
            return;
        }
        /* the PUBREL goes once the store knows it is the PUBREL to send again */
        if (kf_broker_ack(h->broker, &c->peer, KF_MQTT_PUBREC, pkt->u.ack.packet_id))
            ack_after(c, KF_MQTT_PUBREL, pkt->u.ack.packet_id, 0);
        else
            queue_ack(c, KF_MQTT_PUBREL, pkt->u.ack.packet_id,
                      c->version == KF_MQTT_V5 ? KF_MQTT_RC_PACKET_ID_NOT_FOUND : 0, 1);
        return;
    case KF_MQTT_PUBREL: {
        /* the PUBCOMP goes once the id is forgotten in the store too: the client may reuse it */
        int found = kf_broker_qos2_released(h->broker, &c->peer, pkt->u.ack.packet_id);
        ack_after(c, KF_MQTT_PUBCOMP, pkt->u.ack.packet_id,
                  found || c->version != KF_MQTT_V5 ? 0 : KF_MQTT_RC_PACKET_ID_NOT_FOUND);
        return;
    }
    case KF_MQTT_SUBSCRIBE: on_subscribe(c, pkt, 0); return;
    case KF_MQTT_UNSUBSCRIBE: on_subscribe(c, pkt, 1); return;
    case KF_MQTT_PINGREQ: {
        uint8_t buf[2];
        size_t n;
        if (kf_mqtt_encode_empty(buf, sizeof(buf), KF_MQTT_PINGRESP, &n) == 0)
            write_bytes(c, buf, n);
        return;
    }
    case KF_MQTT_DISCONNECT: {
        const struct kf_mqtt_disconnect *d = &pkt->u.disconnect;
        if (c->version == KF_MQTT_V5 && KF_MQTT_HAS(&d->props, KF_MQTT_P_SESSION_EXPIRY)) {
            /* A session that was to end with the connection cannot be made to last [MQTT-3.14.2-2].
             */
            if (c->expiry == 0 && d->props.session_expiry != 0) {
                protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "session expiry set at DISCONNECT");
                return;
            }
            c->expiry = d->props.session_expiry < c->hw->conf.expiry_max ? d->props.session_expiry
                                                                         : c->hw->conf.expiry_max;
            kf_broker_set_expiry(h->broker, &c->peer, c->expiry);
        }
        shut(c, 0, "client_disconnected", 0,
             c->version == KF_MQTT_V5 && d->reason == KF_MQTT_RC_DISCONNECT_WITH_WILL);
        return;
    }
    case KF_MQTT_CONNECT: protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "a second CONNECT"); return;
    default: protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "a packet only a server sends"); return;
    }
}

/* One packet, with what its acknowledgement waits for in the store. */
static void on_packet(struct hconn *c, const struct kf_mqtt_packet *pkt)
{
    waits_begin(c);
    packet(c, pkt);
    waits_end();
}

/* ---- connections ---- */

static void conn_free(struct hconn *c)
{
    struct kf_hub_worker *hw = c->hw;
    if (!c->closing) shut(c, 0, "closed", 0, 1);
    if (!c->detached) kf_broker_detach(hw->hub->broker, &c->peer, kf_now_ms());
    if (c->prev)
        c->prev->next = c->next;
    else
        hw->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    hw->n_conns--;
    if (c->head.bev && c->rec) {
        /* close_notify (or the fatal alert a refused record calls for), best effort, as
         * SSL_shutdown does it below */
        struct kf_buf b;
        kf_buf_init(&b, 64);
        if (c->rec_bad ? kf_tlsrec_fatal_alert(c->rec, &b)
                       : kf_tlsrec_close_notify(c->rec, &b) == KF_OK)
            (void)!send(bufferevent_getfd(bufferevent_get_underlying(c->head.bev)), b.data, b.len,
                        MSG_DONTWAIT | MSG_NOSIGNAL);
        kf_buf_free(&b);
        bufferevent_free(c->head.bev);
    } else if (c->head.bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->head.bev);
        if (ssl && !c->head.handshake_pending) SSL_shutdown(ssl);
        bufferevent_free(c->head.bev);
    }
    kf_tlsrec_free(c->rec);
    OPENSSL_cleanse(&c->watch, sizeof(c->watch));
    kf_conn_release(&c->head); /* the wait, the timer, the socket if no bufferevent took it,
                                * and its place in the limits */
    for (int i = 0; i <= TOPIC_ALIAS_MAX; i++)
        free(c->aliases[i].p);
    kf_msg_release(c->will);
    if (c->jobs) {
        c->zombie = 1; /* a store write still points here: jobs_drain frees it */
    } else {
        zombie_free(c);
    }
    if (hw->draining && hw->n_conns == 0 && hw->idle_cb) hw->idle_cb(hw->idle_arg);
}

/* ---- TLS offload: idle TLS 1.3 connections carried by tlsrec instead of OpenSSL ---- */

static struct kf_tlsrec_watch *watch_get(const SSL *ssl)
{
    struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
    return c ? &c->watch : NULL;
}

static enum bufferevent_filter_result in_filter(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *arg)
{
    struct hconn *c = arg;
    size_t len = evbuffer_get_length(src), used = 0;
    struct kf_buf plain, reply;
    const char *why = NULL;
    enum kf_tlsrec_status st;
    (void)limit;
    (void)mode;
    if (!len) return BEV_NEED_MORE;
    kf_buf_init(&plain, len);
    kf_buf_init(&reply, 256);
    st = kf_tlsrec_open(c->rec, evbuffer_pullup(src, -1), len, &used, &plain, &reply, &why);
    evbuffer_drain(src, used);
    if (plain.len) evbuffer_add(dst, plain.data, plain.len);
    if (reply.len)
        bufferevent_write(bufferevent_get_underlying(c->head.bev), reply.data, reply.len);
    kf_buf_free(&plain);
    kf_buf_free(&reply);
    if (st == KF_TLSREC_BAD || st == KF_TLSREC_CLOSED) {
        /*
         * libevent does nothing with a filter's BEV_ERROR: the end is the connection's own to
         * handle, outside the filter. What arrived before it is read first (read_cb ends the
         * connection then); with nothing before it, the timer's callback ends it now.
         */
        if (st == KF_TLSREC_BAD) {
            kf_log(KF_LOG_INFO, "hub", "TLS record refused", "id", c->id, "ip", c->head.ip_text,
                   "why", why, NULL);
            STAT_ADD(c->hw, malformed, 1);
            c->rec_bad = 1;
        } else {
            c->rec_eof = 1;
        }
        evbuffer_drain(src, evbuffer_get_length(src)); /* nothing after the end is read */
        event_active(c->head.timer, EV_TIMEOUT, 1);
        return BEV_OK;
    }
    return used ? BEV_OK : BEV_NEED_MORE;
}

static enum bufferevent_filter_result out_filter(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *arg)
{
    struct hconn *c = arg;
    size_t len = evbuffer_get_length(src);
    struct kf_buf rec;
    enum kf_err rc;
    (void)limit;
    (void)mode;
    if (!len) return BEV_NEED_MORE;
    kf_buf_init(&rec, len + (len / 16384 + 1) * 32);
    rc = kf_tlsrec_seal(c->rec, evbuffer_pullup(src, -1), len, &rec);
    if (!rc) {
        evbuffer_add(dst, rec.data, rec.len);
        evbuffer_drain(src, len);
    }
    kf_buf_free(&rec);
    return rc ? BEV_ERROR : BEV_OK;
}

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/*
 * When a connected TLS 1.3 connection is quiet (nothing buffered anywhere), tlsrec takes its
 * records over and the SSL, with its buffers and handshake state, is freed; the session stays in
 * the cache for resumption. Anything unusual and the connection simply stays with OpenSSL.
 */
static void maybe_offload(struct hconn *c)
{
    struct bufferevent *old = c->head.bev, *raw, *f;
    struct kf_tlsrec *rec = NULL;
    SSL *ssl;
    int fd;

    if (c->rec || !c->connected || c->closing || !old || !c->hw->conf.tls_offload) return;
    if (evbuffer_get_length(bufferevent_get_output(old)) ||
        evbuffer_get_length(bufferevent_get_input(old)))
        return;
    ssl = bufferevent_openssl_get_ssl(old);
    if (!ssl || !kf_tlsrec_ready(ssl, &c->watch)) return;
    fd = fcntl(bufferevent_getfd(old), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return;
    if (kf_tlsrec_take(ssl, &c->watch, &rec) != KF_OK) {
        kf_err_clear();
        close(fd);
        c->watch.unsafe = 1;
        return;
    }
    raw = bufferevent_socket_new(c->hw->base, fd, BEV_OPT_CLOSE_ON_FREE);
    f = raw ? bufferevent_filter_new(raw, in_filter, out_filter, BEV_OPT_CLOSE_ON_FREE, NULL, c)
            : NULL;
    if (!f) {
        /* the SSL is untouched: it keeps the connection */
        if (raw)
            bufferevent_free(raw);
        else
            close(fd);
        kf_tlsrec_free(rec);
        c->watch.unsafe = 1;
        return;
    }
    /* freed as if shut down, so that OpenSSL keeps the session for resumption */
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_ex_data(ssl, kf_tls_ex_index(), NULL);
    c->rec = rec;
    c->head.bev = f;
    bufferevent_free(old);
    bufferevent_setwatermark(raw, EV_WRITE, 0, OUT_HIGH);
    bufferevent_setcb(f, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(f, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(f, EV_READ | EV_WRITE);
    STAT_ADD(c->hw, tls_offloaded, 1);
    kf_log(KF_LOG_DEBUG, "hub", "TLS records taken over from OpenSSL", "id", c->id, NULL);
}

/*
 * tlsrec read the client's close_notify, or refused a record: the connection ends as if TCP had
 * closed (the will goes, unless the client disconnected normally), answered with our
 * close_notify or the fatal alert the record called for.
 */
static void rec_ended(struct hconn *c)
{
    if (c->rec_bad && !c->closing) shut(c, 0, "tls_record_refused", 0, 1);
    event_cb(c->head.bev, BEV_EVENT_EOF | BEV_EVENT_READING, c); /* frees c */
}

/*
 * Whether the connection must wait for the store before its next packet: it has JOBS_PER_CONN
 * writes there, or the hub has its share (one packet's writes are one commit, so the share is
 * exceeded by at most a packet per worker). Its reading pauses (TCP pushes back on the client)
 * and starts again as they come back (maybe_resume, and the tick).
 */
static int must_wait(const struct hconn *c)
{
    return c->jobs >= JOBS_PER_CONN ||
           (c->hw->hub->persistence &&
            __atomic_load_n(&c->hw->hub->ret_pending, __ATOMIC_RELAXED) >= RET_PENDING_MAX);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    while (!c->closing) {
        size_t len = evbuffer_get_length(in);
        struct kf_mqtt_packet pkt;
        struct kf_mqtt_error err = {0, NULL};
        enum kf_mqtt_status st;
        const uint8_t *data;

        if (!len) break;
        if (must_wait(c)) {
            STAT_ADD(c->hw, store_waits, 1);
            c->paused = 1;
            bufferevent_disable(bev, EV_READ);
            return;
        }
        data = evbuffer_pullup(in, -1);
        st = kf_mqtt_decode(data, len, c->connected ? c->version : 0, c->hw->conf.max_packet, &pkt,
                            &err);
        if (st == KF_MQTT_PARTIAL) break;
        if (st == KF_MQTT_BAD) {
            protocol_fail(c, err.reason, err.why ? err.why : "malformed packet");
            break;
        }
        on_packet(c, &pkt);
        if (c->head.bev) evbuffer_drain(in, pkt.size);
    }
    if (c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        maybe_free(c);
        return;
    }
    if (c->rec_eof || c->rec_bad) {
        rec_ended(c); /* frees c */
        return;
    }
    maybe_offload(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    if (c->closing) {
        maybe_free(c);
        return;
    }
    /* New messages come through the inbox; here only what waited for room in the output. */
    if (c->backlog) flush(c);
    maybe_offload(c);
}

/*
 * The identity a certificate proves: a device id, or a service name and role, and the
 * certificate's validity. `id` gets the CN when it proves none (for the refusal's event). Takes
 * the reference `x`.
 */
static int cert_identity(X509 *x, enum kf_acl_kind *kind, char *id, size_t idcap, char *serial,
                         time_t *not_before, time_t *not_after)
{
    struct kf_cert *cert = x ? kf_cert_wrap(x) : NULL;
    char role[32];
    int ok = 0;

    if (!cert) return 0;
    kf_cert_serial_hex(cert, serial);
    *not_before = kf_cert_not_before(cert);
    *not_after = kf_cert_not_after(cert);
    if (kf_cert_uri_san(cert, KF_URN_DEVICE, id, idcap) == KF_OK) {
        *kind = KF_ACL_DEVICE;
        ok = 1;
    } else if (kf_cert_uri_san(cert, KF_URN_SERVICE, id, idcap) == KF_OK &&
               kf_cert_uri_san(cert, KF_URN_ROLE, role, sizeof(role)) == KF_OK) {
        switch (kf_role_parse(role)) {
        case KF_ROLE_READER: *kind = KF_ACL_READER, ok = 1; break;
        case KF_ROLE_COMMANDER: *kind = KF_ACL_COMMANDER, ok = 1; break;
        default: break;
        }
    }
    if (ok && kf_id_check("id", id) != KF_OK) ok = 0;
    kf_err_clear();
    if (!ok) kf_cert_subject_cn(cert, id, idcap);
    kf_err_clear();
    kf_cert_free(cert);
    return ok;
}

/*
 * The identity the handshake proved, or that the resumed session brought back, and whether its
 * certificate stands now: a resumed session had no chain check of OpenSSL's, so its certificate
 * is judged here as a full handshake's is (revoked first, as OpenSSL orders it, then its
 * validity). NULL when it may go on; else the reason and `*message`.
 */
static const char *identify(struct hconn *c, const char **message)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->head.bev);
    X509 *x = SSL_get1_peer_certificate(ssl);
    struct kf_registry *reg;
    time_t now = time(NULL);
    int ok, revoked;

    if (!x)
        ok = c->resumed_ident && kf_id_valid(c->id);
    else
        ok = cert_identity(x, &c->kind, c->id, sizeof(c->id), c->serial, &c->not_before,
                           &c->not_after);
    if (!ok) {
        *message = "the certificate names no keyfleet device or service with a role";
        return "no_identity";
    }
    snprintf(c->key, sizeof(c->key), "%c:%s", c->kind == KF_ACL_DEVICE ? 'd' : 's', c->id);
    reg = kf_registry_get(c->hw->hub->registry);
    revoked = kf_registry_cert_revoked(reg, c->serial);
    kf_registry_release(reg);
    if (revoked) {
        *message = "the certificate is revoked";
        return "revoked";
    }
    if (now > c->not_after) {
        *message = c->tls_resumed ? "the certificate of the resumed session has expired"
                                  : "the certificate has expired";
        return "expired";
    }
    if (now < c->not_before) {
        *message = "the certificate is not valid yet";
        return "not_yet_valid";
    }
    return NULL;
}

/* The session of `ssl` lasts no longer than the certificate that proved it. */
static void session_bound(SSL_SESSION *sess, time_t not_after)
{
    long left = (long)(not_after - SSL_SESSION_get_time(sess));
    if (left < 1) left = 1;
    if (left < SSL_SESSION_get_timeout(sess)) SSL_SESSION_set_timeout(sess, left);
}

/* Stateless tickets: each ticket's lifetime ends with the certificate in it. */
static int ticket_gen_cb(SSL *ssl, void *arg)
{
    SSL_SESSION *sess = SSL_get0_session(ssl);
    X509 *peer = sess ? SSL_SESSION_get0_peer(sess) : NULL;
    (void)arg;
    if (peer) session_bound(sess, kf_asn1_time(X509_get0_notAfter(peer)));
    return 1;
}

/* ... and a ticket whose certificate no longer stands is not resumed (a full handshake instead). */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
                                       size_t name_len, SSL_TICKET_STATUS status, void *arg)
{
    X509 *peer = sess ? SSL_SESSION_get0_peer(sess) : NULL;
    time_t now = time(NULL);
    (void)ssl;
    (void)name;
    (void)name_len;
    (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        if (!peer || X509_cmp_time(X509_get0_notAfter(peer), &now) < 0 ||
            X509_cmp_time(X509_get0_notBefore(peer), &now) > 0)
            return SSL_TICKET_RETURN_IGNORE;
        return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
    case SSL_TICKET_FATAL_ERR_MALLOC:
    case SSL_TICKET_FATAL_ERR_OTHER: return SSL_TICKET_RETURN_ABORT;
    default: return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
}

/*
 * The session cache's view of an identity: kind, id and serial (NUL-terminated), then the
 * certificate's notBefore and notAfter (8 bytes each, as int64_t).
 */
static size_t sess_ident_cb(SSL *ssl, X509 *peer, uint8_t *out, time_t *not_after)
{
    enum kf_acl_kind kind = KF_ACL_DEVICE;
    char id[KF_ID_MAX + 1], serial[KF_SERIAL_HEX_MAX];
    time_t nb, na;
    int64_t times[2];
    size_t il, sl, n;
    if (!peer) {
        /* a new ticket on a resumed connection: the identity it was resumed with */
        struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
        if (!c || !c->resumed_ident) return 0;
        kind = c->kind;
        snprintf(id, sizeof(id), "%s", c->id);
        snprintf(serial, sizeof(serial), "%s", c->serial);
        nb = c->not_before;
        na = c->not_after;
    } else {
        X509_up_ref(peer); /* cert_identity takes one reference */
        if (!cert_identity(peer, &kind, id, sizeof(id), serial, &nb, &na)) return 0;
    }
    il = strlen(id);
    sl = strlen(serial);
    n = 1 + il + 1 + sl + 1;
    if (n + sizeof(times) > KF_SESSCACHE_IDENT_MAX) return 0;
    out[0] = (uint8_t)kind;
    memcpy(out + 1, id, il + 1);
    memcpy(out + 2 + il, serial, sl + 1);
    times[0] = (int64_t)nb;
    times[1] = (int64_t)na;
    memcpy(out + n, times, sizeof(times));
    *not_after = na;
    return n + sizeof(times);
}

static void sess_resumed_cb(SSL *ssl, const uint8_t *ident, size_t len)
{
    struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
    const char *id = (const char *)ident + 1, *serial;
    int64_t times[2];
    size_t il, sl, strs;
    if (!c || len < 3 + sizeof(times)) return;
    strs = len - sizeof(times); /* kind, id, serial */
    il = strnlen(id, strs - 1);
    if (il + 2 >= strs || il >= sizeof(c->id)) return;
    serial = id + il + 1;
    sl = strnlen(serial, strs - il - 2);
    if (1 + il + 1 + sl + 1 != strs || sl >= sizeof(c->serial)) return;
    memcpy(times, ident + strs, sizeof(times));
    c->kind = (enum kf_acl_kind)ident[0];
    memcpy(c->id, id, il + 1);
    memcpy(c->serial, serial, sl + 1);
    c->not_before = (time_t)times[0];
    c->not_after = (time_t)times[1];
    c->resumed_ident = 1;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hconn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        const char *why, *message = NULL;
        kf_conn_handshake_done(&c->head);
        c->tls_resumed = kf_tls_resumed(bufferevent_openssl_get_ssl(c->head.bev));
        /* CONNECT must come within what is left of connect_timeout_ms. */
        kf_conn_arm(&c->head, c->head.timer, c->hw->conf.connect_timeout_ms);
        why = identify(c, &message);
        if (why) {
            auth_failed(c, why, message);
            shut(c, 0, why, 0, 0);
            maybe_free(c);
            return;
        }
        c->verified = 1;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->head.handshake_pending) {
            char why[128] = "";
            unsigned long e = bufferevent_get_openssl_error(bev);
            /* libevent keeps the handshake's OpenSSL errors on the bufferevent. */
            if (e && ERR_reason_error_string(e))
                snprintf(why, sizeof(why), "%s", ERR_reason_error_string(e));
            while (bufferevent_get_openssl_error(bev))
                ;
            if (c->auth_reason[0])
                auth_failed(c, c->auth_reason, "the client certificate was refused");
            else if (strstr(why, "certificate"))
                auth_failed(c, "no_certificate", why);
            else
                kf_log(KF_LOG_DEBUG, "hub", "handshake failed", "ip", c->head.ip_text, "error", why,
                       NULL);
        }
        ERR_clear_error();
        if (!c->closing) shut(c, 0, "connection_lost", 0, 1);
        if (c->head.bev) {
            /* Nothing more can be written: drop what is left. */
            struct evbuffer *out = bufferevent_get_output(c->head.bev);
            evbuffer_drain(out, evbuffer_get_length(out));
        }
        conn_free(c);
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hconn *c = arg;
    if (c->rec_eof || c->rec_bad) {
        rec_ended(c);
        return;
    }
    if (c->closing) {
        conn_free(c); /* it did not read its last bytes in time */
        return;
    }
    if (c->connected && c->paused) {
        arm(c, c->keep_alive * 1500); /* not silent: it is the hub that does not read */
        return;
    }
    if (c->connected) {
        shut(c, KF_MQTT_RC_KEEP_ALIVE_TIMEOUT, "keep_alive_timeout", 1, 1);
    } else {
        kf_log(KF_LOG_INFO, "hub", "no CONNECT in time", "ip", c->head.ip_text, NULL);
        shut(c, 0, "connect_timeout", 0, 0);
    }
    maybe_free(c);
}

/* Runs in the handshake: the chain must reach keyfleet's issuing CA and not be revoked. */
static int verify_cb(void *arg, struct ssl_st *ssl, struct kf_cert *leaf, struct kf_cert **chain,
                     size_t n)
{
    struct kf_hubd *h = arg;
    struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
    struct kf_registry *reg = kf_registry_get(h->registry);
    struct kf_verify_result res;
    enum kf_err rc;

    memset(&res, 0, sizeof(res));
    rc = kf_trust_verify(reg->operational, leaf, chain, n, time(NULL), KF_PURPOSE_CLIENT, &res);
    kf_registry_release(reg);
    if (rc && c) {
        const char *r = kf_verify_reason_name(res.reason);
        snprintf(c->auth_reason, sizeof(c->auth_reason), "%s",
                 res.reason == KF_VERIFY_UNKNOWN_ISSUER ? "unknown_ca" : r);
        if (kf_cert_uri_san(leaf, KF_URN_DEVICE, c->id, sizeof(c->id)) == KF_OK)
            c->kind = KF_ACL_DEVICE;
        else
            kf_cert_subject_cn(leaf, c->id, sizeof(c->id));
    }
    kf_err_clear();
    return rc == KF_OK;
}

/* A connection net/accept let in: one of this worker's. */
static void opened(void *arg, struct kf_conn *head)
{
    struct kf_hub_worker *hw = arg;
    struct hconn *c = (struct hconn *)head;
    c->hw = hw;
    c->peer.inbox = &hw->inbox;
    c->next = hw->conns;
    if (hw->conns) hw->conns->prev = c;
    hw->conns = c;
    hw->n_conns++;
}

static void refused(void *arg, enum kf_accept_refusal why)
{
    struct kf_hub_worker *hw = arg;
    STAT_ADD(hw, refused, 1);
}

/* The SSL finds its connection again (the key-log and message callbacks of TLS offload). */
static void ssl_new(struct kf_conn *head, SSL *ssl)
{
    SSL_set_ex_data(ssl, kf_tls_ex_index(), head);
}

static void tls_started(struct kf_conn *head)
{
    bufferevent_setwatermark(head->bev, EV_WRITE, OUT_LOW, 0);
}

/* No ClientHello by the hello deadline, or no TLS state for it. */
static void failed(struct kf_conn *head, int timed_out)
{
    struct hconn *c = (struct hconn *)head;
    c->closing = 1;
    conn_free(c);
}

static const struct kf_accept_ops accept_ops = {
    .module = "hub",
    .conn_size = sizeof(struct hconn),
    .opened = opened,
    .refused = refused,
    .ssl_new = ssl_new,
    .tls_started = tls_started,
    .failed = failed,
    .read_cb = read_cb,
    .write_cb = write_cb,
    .event_cb = event_cb,
    .timer_cb = timer_cb,
};

/* ---- the worker's part ---- */

static void inbox_wake(void *arg)
{
    struct kf_hub_worker *hw = arg;
    event_active(hw->wake, EV_READ, 0);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_hub_worker *hw = arg;
    struct kf_broker_peer *peers[256];
    size_t n;
    tl.hw = hw;
    jobs_drain(hw);
    do {
        n = kf_broker_take(hw->hub->broker, &hw->inbox, peers, KF_ARRAY_LEN(peers));
        for (size_t i = 0; i < n; i++) {
            struct hconn *c = PEER_CONN(peers[i]);
            if (c->peer.kicked && !c->closing) {
                c->detached = 1; /* the session is the new connection's */
                shut(c, c->peer.kick_reason, "session_taken_over", 1, 1);
                maybe_free(c);
            } else {
                flush(c);
            }
        }
    } while (n == KF_ARRAY_LEN(peers));
}

/*
 * Closes the live connections of identities the registry now keeps out (`reg` non-NULL), and of
 * certificates past their notAfter: a session lasts no longer than the certificate that opened
 * it (the device renews at two thirds of its life, and reconnects with the new one).
 */
static void enforce(struct kf_hub_worker *hw, const struct kf_registry *reg)
{
    struct hconn *c, *next;
    time_t now = time(NULL);
    for (c = hw->conns; c; c = next) {
        const char *why;
        next = c->next;
        if (!c->connected || c->closing) continue;
        why = reg ? kept_out(c, reg) : NULL;
        if (!why && now > c->not_after) why = "certificate_expired";
        if (!why) continue;
        shut(c, KF_MQTT_RC_ADMINISTRATIVE_ACTION, why, 1, 1);
        maybe_free(c);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_hub_worker *hw = arg;
    struct kf_hubd *h = hw->hub;
    struct kf_registry *reg;

    pthread_mutex_lock(&h->lock);
    hw->conf = h->conf;
    pthread_mutex_unlock(&h->lock);
    reg = kf_registry_get(h->registry);
    if (reg->generation != hw->reg_generation) {
        /* a new snapshot (the store's version moved, a new CRL, SIGHUP) */
        hw->reg_generation = reg->generation;
        enforce(hw, reg);
    } else if (++hw->ticks % (1000 / TICK_MS) == 0) {
        enforce(hw, NULL); /* certificates that expired, once a second */
    }
    kf_registry_release(reg);
    /* connections that waited for the hub's share of the store; deletes that waited for room */
    tl.hw = hw;
    behind_submit(hw);
    for (struct hconn *c = hw->conns, *next; c; c = next) {
        next = c->next;
        if (c->paused) maybe_resume(c);
    }
}

enum kf_err kf_hub_worker_new(struct kf_hubd *h, struct event_base *base, int index,
                              void (*idle_cb)(void *), void *idle_arg, struct kf_hub_worker **out)
{
    struct kf_hub_worker *hw = calloc(1, sizeof(*hw));
    struct kf_registry *reg;
    struct timeval tv = {0, TICK_MS * 1000};
    int fd;

    *out = NULL;
    if (!hw) return kf_fail(KF_E_NOMEM, "out of memory");
    hw->hub = h;
    hw->base = base;
    pthread_mutex_init(&hw->jobs_lock, NULL);
    hw->idle_cb = idle_cb;
    hw->idle_arg = idle_arg;
    hw->inbox.wake = inbox_wake;
    hw->inbox.wake_arg = hw;
    pthread_mutex_lock(&h->lock);
    hw->conf = h->conf;
    pthread_mutex_unlock(&h->lock);
    reg = kf_registry_get(h->registry);
    hw->reg_generation = reg->generation;
    kf_registry_release(reg);
    hw->wake = event_new(base, -1, EV_PERSIST, wake_cb, hw);
    hw->tick = event_new(base, -1, EV_PERSIST, tick_cb, hw);
    if (!hw->wake || !hw->tick) goto nomem;
    event_add(hw->wake, NULL);
    event_add(hw->tick, &tv);
    if (kf_listen_open(h->host, h->port, 1, &fd) != KF_OK) {
        enum kf_err rc = kf_errlast();
        kf_hub_worker_free(hw);
        return rc;
    }
    if (kf_acceptor_new(base, fd, h->limits, h->tls, &hw->conf.accept, &accept_ops, hw,
                        &hw->acceptor) != KF_OK) {
        enum kf_err rc = kf_errlast();
        kf_hub_worker_free(hw);
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    hw->next = h->workers;
    h->workers = hw;
    pthread_mutex_unlock(&h->lock);
    *out = hw;
    return KF_OK;
nomem:
    kf_hub_worker_free(hw);
    return kf_fail(KF_E_NOMEM, "cannot set up the hub on worker %d", index);
}

void kf_hub_worker_drain(struct kf_hub_worker *hw)
{
    struct hconn *c, *next;
    hw->draining = 1;
    kf_acceptor_pause(hw->acceptor);
    for (c = hw->conns; c; c = next) {
        next = c->next;
        shut(c, KF_MQTT_RC_SERVER_SHUTTING_DOWN, "server_shutting_down", 1, 0);
        maybe_free(c);
    }
}

size_t kf_hub_worker_conns(const struct kf_hub_worker *hw)
{
    return hw ? hw->n_conns : 0;
}

void kf_hub_worker_free(struct kf_hub_worker *hw)
{
    struct kf_hubd *h;
    if (!hw) return;
    h = hw->hub;
    hw->idle_cb = NULL;
    while (hw->conns) {
        struct hconn *c = hw->conns;
        if (c->head.bev) {
            struct evbuffer *o = bufferevent_get_output(c->head.bev);
            evbuffer_drain(o, evbuffer_get_length(o));
        }
        if (!c->closing) shut(c, 0, "server_stopped", 0, 0);
        conn_free(c);
    }
    /* The store is closed by now: what it owed has come back; zombies go with it. */
    jobs_drain(hw);
    if (hw->behind) job_free(hw->behind);
    hw->behind = NULL;
    if (tl.hw == hw) tl.hw = NULL;
    pthread_mutex_lock(&h->lock);
    for (struct kf_hub_worker **pp = &h->workers; *pp; pp = &(*pp)->next)
        if (*pp == hw) {
            *pp = hw->next;
            break;
        }
    pthread_mutex_unlock(&h->lock);
    kf_acceptor_free(hw->acceptor);
    if (hw->wake) event_free(hw->wake);
    if (hw->tick) event_free(hw->tick);
    free(hw->scratch);
    pthread_mutex_destroy(&hw->jobs_lock);
    free(hw);
}

/* ---- the hub ---- */

enum kf_err kf_hub_new(struct kf_deploy *deploy, struct kf_registry_holder *registry,
                       struct kf_events *events, const struct kf_config *cfg, struct kf_hubd **out)
{
    struct kf_hubd *h = calloc(1, sizeof(*h));
    struct kf_broker_conf bc;
    struct kf_limits_conf lc;
    struct kf_tls_conf tc;
    char cert[KF_CONF_PATH_MAX], key[KF_CONF_PATH_MAX];
    enum kf_err rc;

    *out = NULL;
    if (!h) return kf_fail(KF_E_NOMEM, "out of memory");
    h->deploy = deploy;
    h->registry = registry;
    h->events = events;
    pthread_mutex_init(&h->lock, NULL);
    conf_from(cfg, &h->conf);
    rc = kf_listen_parse(cfg->hub_listen, h->host, sizeof(h->host), &h->port);
    if (rc) goto fail;
    rc = kf_deploy_path(deploy, cfg->server_cert, cert, sizeof(cert));
    if (!rc) rc = kf_deploy_path(deploy, cfg->server_key, key, sizeof(key));
    if (rc) goto fail;
    memset(&tc, 0, sizeof(tc));
    tc.cert_chain_path = cert;
    tc.key_uri = key;
    tc.session_cache = (unsigned)cfg->session_cache;
    tc.stateless_tickets = strcmp(cfg->hub_tls_resumption, "tickets") == 0;
    tc.context = "keyfleet-hub";
    tc.verify = verify_cb;
    tc.verify_arg = h;
    rc = kf_tls_new(&tc, &h->tls);
    if (rc) goto fail;
    kf_tlsrec_install(kf_tls_ctx(h->tls), watch_get);
    if (tc.stateless_tickets &&
        !SSL_CTX_set_session_ticket_cb(kf_tls_ctx(h->tls), ticket_gen_cb, ticket_dec_cb, h)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot bound session tickets by certificate");
        goto fail;
    }
    if (!tc.stateless_tickets) {
        static const struct kf_sesscache_hooks hooks = {sess_ident_cb, sess_resumed_cb};
        rc = kf_sesscache_new(kf_tls_ctx(h->tls), (size_t)cfg->session_cache, 3600, &hooks,
                              &h->sesscache);
        if (rc) goto fail;
    }
    broker_conf_from(cfg, &bc);
    rc = kf_broker_new(&bc, &h->broker);
    if (rc) goto fail;
    if (cfg->hub_persistence && deploy && deploy->store) {
        rc = restore_retained(h);
        if (!rc) rc = restore_sessions(h);
        if (rc) goto fail;
        h->persistence = 1;
        kf_broker_persist(h->broker, on_change, h);
    }
    limits_conf_from(cfg, &lc);
    rc = kf_limits_new(&lc, &h->limits);
    if (rc) goto fail;
    *out = h;
    return KF_OK;
fail:
    kf_hub_free(h);
    return kf_wrap(rc, "the hub");
}

void kf_hub_free(struct kf_hubd *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->ids.n_slots; i++)
        while (h->ids.slots[i]) {
            struct kf_hnode *n = h->ids.slots[i];
            kf_htab_remove(&h->ids, n);
            free(n);
        }
    kf_htab_free(&h->ids);
    kf_broker_free(h->broker);
    kf_limits_free(h->limits);
    kf_tls_free(h->tls);
    kf_sesscache_free(h->sesscache);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void kf_hub_configure(struct kf_hubd *h, const struct kf_config *cfg)
{
    struct kf_broker_conf bc;
    struct kf_limits_conf lc;
    struct hub_conf hc;
    conf_from(cfg, &hc);
    pthread_mutex_lock(&h->lock);
    h->conf = hc;
    pthread_mutex_unlock(&h->lock);
    broker_conf_from(cfg, &bc);
    kf_broker_configure(h->broker, &bc);
    limits_conf_from(cfg, &lc);
    kf_limits_configure(h->limits, &lc);
}

void kf_hub_sweep(struct kf_hubd *h)
{
    int64_t now = kf_now_ms(), keep;
    kf_broker_sweep(h->broker, now);
    pthread_mutex_lock(&h->lock);
    /* Flapping records are kept for their window and ban; networks for a month. */
    keep = 30LL * 86400 * 1000;
    for (size_t i = 0; i < h->ids.n_slots; i++) {
        struct kf_hnode *n = h->ids.slots[i], *next;
        for (; n; n = next) {
            struct id_rec *r = (struct id_rec *)n;
            next = n->next;
            if (now - r->last_seen > keep && r->banned_until < now) {
                kf_htab_remove(&h->ids, n);
                free(r);
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
}

void kf_hub_registry_changed(struct kf_hubd *h)
{
    pthread_mutex_lock(&h->lock);
    for (struct kf_hub_worker *hw = h->workers; hw; hw = hw->next)
        event_active(hw->tick, EV_TIMEOUT, 0);
    pthread_mutex_unlock(&h->lock);
}

uint64_t kf_hub_connections_open(struct kf_hubd *h)
{
    return h ? kf_limits_connections(h->limits) : 0;
}

void kf_hub_stats(struct kf_hubd *h, struct kf_hub_stats *out)
{
    struct kf_broker_stats bs;
    memset(out, 0, sizeof(*out));
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    for (struct kf_hub_worker *hw = h->workers; hw; hw = hw->next) {
#define SUM(f) out->f += __atomic_load_n(&hw->st.f, __ATOMIC_RELAXED)
        SUM(connections);
        SUM(connects);
        SUM(auth_failed);
        SUM(refused);
        SUM(malformed);
        SUM(acl_denied);
        SUM(rate_limited);
        SUM(messages_received);
        SUM(messages_sent);
        SUM(tls_offloaded);
        SUM(store_waits);
#undef SUM
    }
    pthread_mutex_unlock(&h->lock);
    kf_broker_stats(h->broker, &bs);
    out->sessions = bs.sessions;
    out->retained = bs.retained;
    out->queued = bs.queued;
    out->dropped = bs.dropped;
}
