/*
 * broker: the hub's sessions, subscriptions and retained messages, shared by every worker.
 *
 * A session is named by the caller (the hub names it by identity: "d:<device id>" or
 * "s:<service name>", never by the bare MQTT client id, so that a device and a service with the
 * same name never share a session) and outlives its
 * connection when it is persistent (MQTT 3.1.1 clean session 0; MQTT 5 session expiry > 0): its
 * subscriptions, the messages queued for it and those in flight stay in memory until it comes
 * back or expires.
 *
 * A connection takes part through a peer (struct kf_broker_peer, embedded in the hub's
 * connection and owned by its worker). Publishing routes a message to every matching session's
 * queue; a session whose peer is online is put on its worker's inbox and the worker is woken;
 * the worker then pulls what it may send (within the session's in-flight window) and writes it.
 * So a message crosses workers as a pointer, and the sender never touches another worker's
 * connection.
 *
 * One lock guards the broker. Routing is cheap because the ACL makes fan-out narrow:
 * subscriptions whose first two topic levels are literal ("devices/<id>/commands/#") are found
 * by hashing those levels; only the few wildcard ones (services' "devices/+/...") are scanned.
 *
 * Messages are immutable and reference-counted; every size is bounded by the configuration.
 */
#ifndef KF_SERVER_HUB_BROKER_H
#define KF_SERVER_HUB_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/ident.h"
#include "common/mqtt_codec.h"
#include "server/hub/conf.h"

struct kf_broker;
struct kf_session;

/* An application message, as routed: immutable once made, reference-counted. */
struct kf_msg {
    int refs; /* atomic */
    uint8_t qos;
    uint8_t retain;
    uint8_t payload_format;
    uint8_t has_payload_format;
    struct kf_mqtt_str topic;
    const uint8_t *payload;
    size_t payload_len;
    int64_t expires_ms; /* 0: never */
    struct kf_mqtt_str content_type, response_topic, correlation_data;
    struct kf_mqtt_user_prop *user;
    size_t n_user;
    char origin[KF_ID_MAX + 3]; /* the publisher's session name, for MQTT 5's no_local */
    size_t size;                /* bytes held, for the limits */
};

/*
 * Makes a message from a decoded PUBLISH (its topic already resolved from an alias into
 * `topic`), copying everything it keeps. `now_ms` starts its expiry. NULL when out of memory.
 */
struct kf_msg *kf_msg_new(const struct kf_mqtt_publish *p, struct kf_mqtt_str topic,
                          const char *origin, int64_t now_ms);
struct kf_msg *kf_msg_ref(struct kf_msg *m);
void kf_msg_release(struct kf_msg *m);

/* A worker's inbox: the peers that have something to send; woken from any thread. */
struct kf_broker_inbox {
    struct kf_broker_peer *head;
    void (*wake)(void *arg); /* called with the broker's lock held; must only signal */
    void *wake_arg;
};

/* One connection's end in the broker. Zero it, set `inbox`, then attach. */
struct kf_broker_peer {
    struct kf_broker_inbox *inbox;
    struct kf_session *session; /* NULL when detached or taken over (guarded by the lock) */
    uint16_t receive_max;       /* the client's in-flight window for QoS 1 and 2 */
    int kicked;                 /* the session was taken over: close with `kick_reason` */
    uint8_t kick_reason;        /* an MQTT 5 reason code */
    /* guarded by the lock */
    int queued;
    struct kf_broker_peer *prev, *next;
};

/* struct kf_broker_conf: in server/hub/conf.h, with the [hub] keys that set it. */

enum kf_err kf_broker_new(const struct kf_broker_conf *conf, struct kf_broker **out);

/*
 * ---- persistence ----
 * With a store attached (kf_broker_persist), the broker says what changes of its state must
 * outlive a crash: retained messages, and the sessions that outlive their connection (expiry
 * other than 0) with their subscriptions, the QoS 1 and 2 messages queued for them or in
 * flight, and the inbound QoS 2 packet ids awaiting PUBREL. Each change is an op; the ops of one
 * broker call end with KF_BROKER_COMMIT, all said with the broker's lock held, so the store sees
 * them in the order the broker made them.
 *
 * A message queued for a stored session is not sent before the commit that holds it is durable
 * (kf_broker_settled): what a subscriber receives was kept first, so that a crash cannot make the
 * hub deliver it once before and once after (QoS 2 is exactly once across restarts).
 */
enum kf_broker_op_type {
    KF_BROKER_RETAIN, /* `msg` is its topic's retained message now; an empty payload clears it */
    KF_BROKER_PUT,    /* the row (session, kind, key) is `value` now */
    KF_BROKER_DELETE, /* the row (session, kind, key) is gone */
    KF_BROKER_DROP,   /* every row of `session`: the session ended */
    KF_BROKER_COMMIT, /* the end of one broker call's ops */
};

/* Row kinds: the session (key 0), a message (key: its sequence number), an inbound QoS 2 id. */
#define KF_BROKER_ROW_SESSION 0
#define KF_BROKER_ROW_MSG     1
#define KF_BROKER_ROW_QOS2    2

struct kf_broker_op {
    enum kf_broker_op_type type;
    const char *session;
    int kind;
    int64_t key;
    const uint8_t *value; /* PUT: borrowed for the call */
    size_t len;
    const struct kf_msg *msg; /* RETAIN: borrowed for the call */
    int behind;   /* DELETE: nobody waits for it; it may be written later, with others */
    uint64_t seq; /* COMMIT: the highest message sequence number its PUTs hold (0: none) */
};

/*
 * Called with the lock held; it must be quick and must not call the broker. For COMMIT it
 * returns nonzero when what was said cannot be kept (the store is full or closing): the messages
 * it held are then sent without waiting. NULL: nothing is persisted.
 */
typedef int (*kf_broker_change_cb)(void *arg, const struct kf_broker_op *op);
void kf_broker_persist(struct kf_broker *b, kf_broker_change_cb cb, void *arg);

/* The commits up to the one whose COMMIT said `seq` are durable (or failed): their messages go. */
void kf_broker_settled(struct kf_broker *b, uint64_t seq);

/* Puts back a retained message kept from before (a restart): no callback, no limits. */
void kf_broker_restore_retained(struct kf_broker *b, struct kf_msg *m);

/*
 * Puts back one stored row (at start, before any client, in the order (session, kind, key)):
 * a session comes back offline, its messages queued to be sent again (marked dup, with their
 * packet ids) and those whose PUBREC had come as awaiting PUBCOMP. `now_ms` is the wall clock.
 * KF_E_MALFORMED (with kf_fail) for a row that does not read back, KF_E_NOT_FOUND for a row of a
 * session that has no session row; either is left out.
 */
enum kf_err kf_broker_restore(struct kf_broker *b, const char *session, int kind, int64_t key,
                              const uint8_t *value, size_t len, int64_t now_ms);

/*
 * A message as bytes that kf_msg_decode reads back: what it holds and when it expires (an
 * absolute time, so it keeps counting down while stored). For the store.
 */
enum kf_err kf_msg_encode(const struct kf_msg *m, struct kf_buf *out);
/* NULL (with kf_fail) when `data` is not what kf_msg_encode wrote. */
struct kf_msg *kf_msg_decode(const uint8_t *data, size_t len);
void kf_broker_free(struct kf_broker *b);

/* Replaces the limits (SIGHUP); what is held already stays. */
void kf_broker_configure(struct kf_broker *b, const struct kf_broker_conf *conf);

/*
 * Attaches `peer` to the session `client_id` (at most KF_ID_MAX + 2 characters, else
 * KF_E_INVALID): `clean` drops what a previous session held;
 * `expiry_s` is how long the session outlives the connection (0: it ends with it;
 * 0xFFFFFFFF: never). A peer attached there already is kicked (KF_MQTT_RC_SESSION_TAKEN_OVER)
 * and woken. `*present` is set when an earlier session was resumed; its messages in flight are
 * sent again (dup) on the next pull.
 */
enum kf_err kf_broker_attach(struct kf_broker *b, struct kf_broker_peer *peer,
                             const char *client_id, int clean, uint32_t expiry_s, int *present);

/* Changes the session's expiry (MQTT 5 DISCONNECT may). */
void kf_broker_set_expiry(struct kf_broker *b, struct kf_broker_peer *peer, uint32_t expiry_s);

/* Detaches `peer` (its connection is closing); a session that does not persist ends here. */
void kf_broker_detach(struct kf_broker *b, struct kf_broker_peer *peer, int64_t now_ms);

/*
 * MQTT 5's will delay: detaches `peer` like kf_broker_detach, but its will `m` (a reference is
 * taken) is published only `delay_s` seconds from `now_ms`, or when its session ends if that is
 * sooner [MQTT-3.1.3-9], and not at all if the client resumes the session before (a new
 * connection with clean start publishes it at once). Published by kf_broker_sweep.
 */
void kf_broker_detach_will(struct kf_broker *b, struct kf_broker_peer *peer, struct kf_msg *m,
                           uint32_t delay_s, int64_t now_ms);

/* Why a retained message was refused (it is then not routed either). */
enum kf_retain_refusal {
    KF_RETAIN_OK = 0,
    KF_RETAIN_QUOTA = 1, /* its publisher (m->origin) holds its share already */
    KF_RETAIN_FULL = 2,  /* the broker holds max_retained or max_retained_bytes */
};

/*
 * Routes `m` (borrowed; the broker takes its own references) to every matching subscription
 * and, when it is retained, keeps it (an empty retained payload deletes the topic's). A retained
 * message that cannot be kept, because its publisher (m->origin) has its quota or the broker is
 * full, is refused whole: not routed, and `*refused` (may be NULL) says why; a client should be
 * told (MQTT 5: 0x97). Returns the number of sessions it was queued for; `*dropped` (may be
 * NULL) counts sessions whose queue was full.
 */
size_t kf_broker_publish(struct kf_broker *b, struct kf_msg *m, size_t *dropped,
                         enum kf_retain_refusal *refused);

struct kf_broker_sub_opts {
    uint8_t qos;
    int no_local, retain_as_published;
    uint8_t retain_handling;
    uint32_t sub_id; /* 0: none */
};

/*
 * Adds or replaces the subscription `filter` (a valid, granted filter) of `peer`'s session and
 * queues the retained messages it should receive. KF_E_OVERSIZE when the session holds
 * max_subs already.
 */
enum kf_err kf_broker_subscribe(struct kf_broker *b, struct kf_broker_peer *peer,
                                const uint8_t *filter, size_t len,
                                const struct kf_broker_sub_opts *opts);

/* Several filters of one SUBSCRIBE or UNSUBSCRIBE in one call: one commit for all of them. */
struct kf_broker_filter {
    const uint8_t *filter;
    size_t len;
    struct kf_broker_sub_opts opts; /* subscribing */
    int result; /* out: subscribing, KF_OK or why not (kf_errmsg); unsubscribing, 1 if it existed */
};
void kf_broker_subscribe_many(struct kf_broker *b, struct kf_broker_peer *peer,
                              struct kf_broker_filter *f, size_t n);
void kf_broker_unsubscribe_many(struct kf_broker *b, struct kf_broker_peer *peer,
                                struct kf_broker_filter *f, size_t n);

/* Removes a subscription: 1 when it existed. */
int kf_broker_unsubscribe(struct kf_broker *b, struct kf_broker_peer *peer, const uint8_t *filter,
                          size_t len);

/* What a worker is to write: a PUBLISH (with `msg`, a reference it releases) or a PUBREL. */
struct kf_broker_out {
    struct kf_msg *msg; /* NULL: a PUBREL for `packet_id` */
    uint8_t qos;
    uint8_t dup;
    uint8_t retain;
    uint16_t packet_id;
    uint32_t sub_id;
};

/*
 * Takes the peers on `inbox` that have something to send (at most `cap`; the rest stay). A peer
 * is on it once however many messages wait.
 */
size_t kf_broker_take(struct kf_broker *b, struct kf_broker_inbox *inbox,
                      struct kf_broker_peer **out, size_t cap);

/*
 * Takes up to `cap` things to send for `peer`: first what was in flight when the session
 * resumed, then queued messages as far as the in-flight window allows. `*more` is set when more
 * wait (pull again when the output has room). Expired messages are dropped.
 */
size_t kf_broker_pull(struct kf_broker *b, struct kf_broker_peer *peer, int64_t now_ms,
                      struct kf_broker_out *out, size_t cap, int *more);

/*
 * The client acknowledged `packet_id`: `type` KF_MQTT_PUBACK or PUBCOMP ends it, PUBREC moves it
 * to awaiting PUBCOMP (the caller sends PUBREL). Returns 1 when it was in flight in that state.
 */
int kf_broker_ack(struct kf_broker *b, struct kf_broker_peer *peer, enum kf_mqtt_type type,
                  uint16_t packet_id);

/*
 * Inbound QoS 2: the client sent PUBLISH `packet_id`. Returns 1 when it is new (route it),
 * 0 for a duplicate (do not route again), -1 when the client has max_inflight_in unreleased.
 */
int kf_broker_qos2_received(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id);

/* Like kf_broker_qos2_received, recording nothing (the id goes with its message, below). */
int kf_broker_qos2_check(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id);

/*
 * kf_broker_publish for QoS 2 PUBLISH `packet_id` of `peer`'s client (checked new with
 * kf_broker_qos2_check): the id is recorded as awaiting PUBREL in the same commit as the message
 * is routed, so that a crash keeps both or neither. Not recorded when the message is refused.
 */
size_t kf_broker_publish_qos2(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id,
                              struct kf_msg *m, size_t *dropped, enum kf_retain_refusal *refused);

/* Inbound QoS 2: PUBREL `packet_id`. Returns 1 when it was pending. */
int kf_broker_qos2_released(struct kf_broker *b, struct kf_broker_peer *peer, uint16_t packet_id);

/* Publishes delayed wills that are due and ends offline sessions whose expiry has passed (with
 * their wills). Returns how many sessions ended. */
size_t kf_broker_sweep(struct kf_broker *b, int64_t now_ms);

struct kf_broker_stats {
    uint64_t sessions, sessions_online, subscriptions, retained, queued;
    uint64_t routed, dropped;
};
void kf_broker_stats(struct kf_broker *b, struct kf_broker_stats *out);

#endif
