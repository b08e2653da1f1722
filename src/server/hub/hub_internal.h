/*
 * hub_internal: what the hub's files share (like mosquitto's mosquitto_broker_internal.h): the
 * hub, its workers, a connection, the store jobs, and each file's functions the others call.
 * Only the hub's own files include it; the hub's API is hub.h.
 */
#ifndef KF_SERVER_HUB_HUB_INTERNAL_H
#define KF_SERVER_HUB_HUB_INTERNAL_H

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
#include "server/hub/decide.h"
#include "common/jsontext.h"
#include "server/net/limits.h"
#include "server/net/tls.h"
#include "server/hub/sesscache.h"
#include "server/net/tlsrec.h"
#include "server/net/accept.h"
#include "server/net/listen.h"

#define OUT_HIGH (256 * 1024) /* stop pulling messages for a client beyond this */

#define OUT_LOW (64 * 1024) /* and go on below this */

#define PULL_BATCH 64

#define TICK_MS 250

#define CLOSE_GRACE_MS 2000 /* a closing client that does not read its last bytes */

#define RATE_EVENT_MS 10000 /* at most one hub.rate_limited event per connection this often */

#define NETS_KEPT 8 /* networks remembered per id, for hub.unusual_ip */

#define ID_RECORDS_MAX 1000000

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
    struct kf_snapshot_holder *snapshot;
    struct kf_tls *tls;
    struct kf_sesscache *sesscache; /* NULL with stateless tickets */
    struct kf_broker *broker;
    struct kf_limits *limits;
    struct kf_events *events; /* borrowed: keyfleetd's sink */
    char host[64];
    int port;
    pthread_mutex_t lock; /* guards conf, ids, workers */
    struct kf_hub_conf conf;
    struct kf_htab ids;
    struct kf_hub_worker *workers;
    int persistence; /* retained messages and persistent sessions go to the store (at start) */
    int ret_pending; /* the hub's writes on their way to the store (atomic) */
};

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
    struct kf_hub_conf conf; /* this worker's copy, refreshed every tick */
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

#define JOBS_PER_CONN 32

#define RET_PENDING_MAX (KF_STORE_QUEUE_MAX / 4)

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
    struct kf_hub_alias aliases[KF_HUB_TOPIC_ALIAS_MAX + 1];
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

/* The accept path of the hub's listeners (conn.c). */
extern const struct kf_accept_ops kf_hub_accept_ops;

/* ---- conn.c: a connection: accept, TLS, reading, timers, ending; events ---- */

void kf_hub_event(struct hconn *c, const char *type, const char *severity, char *detail);
void kf_hub_refusal(struct hconn *c, const char *type, const char *reason, char *detail);
const char *kf_hub_kind_name(enum kf_acl_kind k);
void kf_hub_auth_failed(struct hconn *c, const char *reason, const char *message);
void kf_hub_arm(struct hconn *c, int ms);
/*
 * Ends the MQTT session's connection: the will (unless the client disconnected normally), the
 * broker, the event, and a DISCONNECT with `reason` for MQTT 5 clients when `tell`. The bytes
 * already written still go out; then the connection is freed (maybe_free).
 */
void kf_hub_shut(struct hconn *c, uint8_t reason, const char *why, int tell, int send_will);
void kf_hub_maybe_free(struct hconn *c);
void kf_hub_protocol_fail(struct hconn *c, uint8_t reason, const char *why);
void kf_hub_conn_free(struct hconn *c);
struct kf_tlsrec_watch *kf_hub_watch_get(const SSL *ssl);
void kf_hub_read_cb(struct bufferevent *bev, void *arg);

/* ---- out.c: what the hub writes to a client ---- */

uint8_t *kf_hub_scratch(struct kf_hub_worker *hw, size_t need);
void kf_hub_write_bytes(struct hconn *c, const uint8_t *p, size_t n);
struct ack *kf_hub_queue_ack(struct hconn *c, enum kf_mqtt_type type, uint16_t id, uint8_t reason,
                             int ready);
struct ack *kf_hub_queue_packet(struct hconn *c, const uint8_t *p, size_t n, int ready);
void kf_hub_flush_acks(struct hconn *c);
void kf_hub_connack(struct hconn *c, uint8_t v5_reason, uint8_t v311_code, int present,
                    const struct kf_mqtt_props *props, struct hub_job *wait);
void kf_hub_send_connack(struct hconn *c, uint8_t v5_reason, uint8_t v311_code, int present,
                         const struct kf_mqtt_props *props);
void kf_hub_send_disconnect(struct hconn *c, uint8_t reason, const char *why);
void kf_hub_flush(struct hconn *c);

/* ---- identity.c: who a connection is: its certificate, across resumption ---- */

const char *kf_hub_identify(struct hconn *c, const char **message);
int kf_hub_ticket_gen_cb(SSL *ssl, void *arg);
SSL_TICKET_RETURN kf_hub_ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
                                       size_t name_len, SSL_TICKET_STATUS status, void *arg);
size_t kf_hub_sess_ident_cb(SSL *ssl, X509 *peer, uint8_t *out, time_t *not_after);
void kf_hub_sess_resumed_cb(SSL *ssl, const uint8_t *ident, size_t len);
int kf_hub_verify_cb(void *arg, struct ssl_st *ssl, struct kf_cert *leaf, struct kf_cert **chain,
                     size_t n);

/* ---- protect.c: protection: flapping, unusual addresses, rates ---- */

int kf_hub_id_connect(struct hconn *c, int64_t now, int *unusual);
int kf_hub_device_event_token(struct hconn *c);
int kf_hub_take_tokens(struct hconn *c, double msgs, size_t bytes, int64_t now);
void kf_hub_rate_event(struct hconn *c, const char *what);

/* ---- handle_connect.c: CONNECT ---- */

/* Who `c` is, for decide.h. */
static inline struct kf_hub_who kf_hub_who_of(const struct hconn *c)
{
    struct kf_hub_who w = {c->kind, c->id, c->serial};
    return w;
}
void kf_hub_on_connect(struct hconn *c, const struct kf_mqtt_connect *k);

/* ---- handle_publish.c: PUBLISH ---- */

int kf_hub_device_event(struct hconn *c, const uint8_t *payload, size_t len, const char **why,
                        int *over);
void kf_hub_on_publish(struct hconn *c, const struct kf_mqtt_packet *pkt);

/* ---- handle_subscribe.c: SUBSCRIBE and UNSUBSCRIBE ---- */

void kf_hub_on_subscribe(struct hconn *c, const struct kf_mqtt_packet *pkt, int unsubscribe);

/*
 * The broker's changes of this thread's current call gather in `job`; the connection `c`, when
 * set, waits for them (its acknowledgement goes once they are durable): `submitted` is then the
 * last job sent for it. `hw`: the worker of this thread, whose write-behind takes deletes.
 */
struct kf_hub_tl {
    struct hconn *c;
    struct hub_job *job, *submitted;
    struct kf_hub_worker *hw;
    int lost; /* out of memory for an op of the current call */
};
extern __thread struct kf_hub_tl kf_hub_tl;

/* ---- persist.c: retained messages and persistent sessions in the store ---- */

void kf_hub_job_free(struct hub_job *j);
void kf_hub_zombie_free(struct hconn *c);
void kf_hub_behind_submit(struct kf_hub_worker *hw);
void kf_hub_maybe_resume(struct hconn *c);
void kf_hub_jobs_drain(struct kf_hub_worker *hw);
int kf_hub_on_change(void *arg, const struct kf_broker_op *op);
void kf_hub_waits_begin(struct hconn *c);
void kf_hub_waits_end(void);
struct hub_job *kf_hub_take_wait(void);
void kf_hub_ack_after(struct hconn *c, enum kf_mqtt_type type, uint16_t id, uint8_t reason);
enum kf_err kf_hub_restore_retained(struct kf_hubd *h);
enum kf_err kf_hub_restore_sessions(struct kf_hubd *h);

#endif
