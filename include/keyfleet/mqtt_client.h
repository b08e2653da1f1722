/*
 * keyfleet/mqtt_client.h: libkeyfleet's MQTT client (3.1.1 and 5.0, QoS 0 and 1), the part of the
 * device SDK that could run on a microcontroller.
 *
 * It allocates nothing and owns no event loop (coreMQTT's shape): the caller gives it three
 * buffers (received bytes, bytes to send, the outbound queue), a transport (two callbacks that
 * move bytes without blocking), and the time at every call. The caller's loop waits for its
 * socket (readable, and writable when kf_mqttc_want_write() says so) or for the deadline that
 * kf_mqttc_step() returns, then calls kf_mqttc_step() again.
 *
 * The outbound queue lives in the caller's buffer and outlasts connections: a QoS 1 message stays
 * in it until the broker acknowledges it, and is sent again (DUP set) on the next connection,
 * whatever certificate that connection uses. A QoS 0 message leaves it once written. When the
 * queue is full, kf_mqttc_publish() says so and queues nothing: nothing is dropped silently.
 *
 * Packets are encoded and decoded by keyfleet's shared codec (src/common/mqtt_codec.c), the one
 * keyfleetd's hub uses, under the same fuzz target.
 */
#ifndef KEYFLEET_MQTT_CLIENT_H
#define KEYFLEET_MQTT_CLIENT_H

#include "keyfleet/export.h"

#include <stddef.h>
#include <stdint.h>

/* What kf_mqttc_step() and the others return. */
enum kf_mqttc_status {
    KF_MQTTC_OK = 0,
    KF_MQTTC_FULL = 1,         /* the queue has no room for this message now */
    KF_MQTTC_TOO_BIG = 2,      /* the message can never fit (buffers, or the broker's maximum) */
    KF_MQTTC_INVALID = 3,      /* a bad argument: an invalid topic, QoS above 1, not connected */
    KF_MQTTC_CLOSED = 4,       /* the transport failed or the broker closed the connection */
    KF_MQTTC_REFUSED = 5,      /* CONNACK refused: see kf_mqttc.reason */
    KF_MQTTC_PROTOCOL = 6,     /* the broker broke the protocol: see kf_mqttc.why */
    KF_MQTTC_TIMEOUT = 7,      /* no CONNACK, or no PINGRESP, in time */
    KF_MQTTC_DISCONNECTED = 8, /* the broker sent DISCONNECT (MQTT 5): see kf_mqttc.reason */
};

/* A short name for a status ("closed", "refused", ...); static. */
KF_EXPORT const char *kf_mqttc_status_name(enum kf_mqttc_status st);

/*
 * Moves bytes. Both return the number of bytes moved, 0 when the transport cannot move any now
 * (it would block), or -1 when the connection is gone. `ctx` is the caller's.
 */
struct kf_mqttc_transport {
    void *ctx;
    long (*send)(void *ctx, const uint8_t *buf, size_t len);
    long (*recv)(void *ctx, uint8_t *buf, size_t cap);
};

/* Called from inside kf_mqttc_step(); each may be NULL. Pointers are valid during the call. */
struct kf_mqttc_handlers {
    void *ctx;
    /* CONNACK accepted. */
    void (*connected_cb)(void *ctx, int session_present);
    /* A message on a subscribed topic (already acknowledged to the broker when QoS 1). */
    void (*message_cb)(void *ctx, const char *topic, size_t topic_len, const uint8_t *payload,
                       size_t payload_len);
    /* A queued message left the queue: a QoS 1 one acknowledged (`reason` is the PUBACK's, 0
     * for success; MQTT 5 brokers may refuse with 0x80 and above), a QoS 0 one written. */
    void (*delivered_cb)(void *ctx, uint32_t tag, uint8_t reason);
    /* The broker refused a subscription (SUBACK 0x80 or above). */
    void (*sub_refused_cb)(void *ctx, const char *filter, uint8_t reason);
};

struct kf_mqttc_options {
    uint8_t version;           /* 4 (MQTT 3.1.1) or 5 */
    const char *client_id;     /* borrowed for the client's lifetime */
    uint16_t keep_alive_s;     /* 0: none */
    int clean_start;           /* 0: resume the broker's session */
    uint32_t session_expiry_s; /* MQTT 5: how long the broker keeps the session */
    /* Subscribed at every CONNACK (borrowed for the client's lifetime). */
    const char *const *subscriptions;
    size_t n_subscriptions;
    uint8_t sub_qos;             /* 0 or 1 */
    uint16_t max_inflight;       /* QoS 1 messages awaiting PUBACK at once (0: 16) */
    uint32_t connack_timeout_ms; /* 0: 10,000 */
};

enum kf_mqttc_state {
    KF_MQTTC_IDLE = 0,   /* no connection */
    KF_MQTTC_CONNECTING, /* CONNECT sent, waiting for CONNACK */
    KF_MQTTC_CONNECTED,
};

/* Counters, for summaries and tests. */
struct kf_mqttc_stats {
    uint64_t published, delivered, resent, received, pings, connects;
};

/* The client. Its fields are the library's; read `state`, `reason`, `why` and `stats` only. */
struct kf_mqttc {
    struct kf_mqttc_options opt;
    struct kf_mqttc_transport io;
    struct kf_mqttc_handlers h;
    uint8_t *rx, *tx, *q;
    size_t rx_cap, rx_len, tx_cap, tx_len, tx_off, q_cap, q_len;
    size_t q_count;
    enum kf_mqttc_state state;
    uint64_t connect_ms, last_tx_ms, ping_ms;
    int ping_out;
    uint16_t next_id, inflight, window;
    uint32_t max_packet;         /* the broker's maximum packet size (0: none) */
    uint8_t reason;              /* CONNACK or DISCONNECT reason of the last failure */
    const char *why;             /* static sentence for the last failure */
    uint8_t pending_ack[4 * 16]; /* acks owed to the broker while tx was busy */
    size_t pending_ack_len;
    struct kf_mqttc_stats stats;
};

/*
 * Sets `c` up with borrowed options, transport, handlers and buffers. `rx` must hold the largest
 * packet the broker will send (it is told so in MQTT 5); `tx` the largest packet this client
 * sends; `q` the outbound queue (each message takes its topic, payload and 20 bytes). All stay the
 * caller's and must outlive `c`. Returns KF_MQTTC_INVALID for a version other than 4 or 5, a
 * missing client id, or buffers under 128 bytes.
 */
KF_EXPORT enum kf_mqttc_status kf_mqttc_init(struct kf_mqttc *c, const struct kf_mqttc_options *opt,
                                             const struct kf_mqttc_transport *io,
                                             const struct kf_mqttc_handlers *h, uint8_t *rx,
                                             size_t rx_cap, uint8_t *tx, size_t tx_cap, uint8_t *q,
                                             size_t q_cap);

/*
 * Begins a session on a transport the caller has just connected (TLS done): queues CONNECT and
 * marks every unacknowledged QoS 1 message to be sent again. `now_ms` is any monotonic clock.
 */
KF_EXPORT enum kf_mqttc_status kf_mqttc_start(struct kf_mqttc *c, uint64_t now_ms);

/*
 * Queues a message (copying topic and payload into the queue). `tag` comes back in delivered_cb.
 * Works while disconnected: the message waits for the next connection. KF_MQTTC_FULL when the
 * queue has no room now, KF_MQTTC_TOO_BIG when it never will, KF_MQTTC_INVALID for an invalid
 * topic name or a QoS other than 0 or 1.
 */
KF_EXPORT enum kf_mqttc_status kf_mqttc_publish(struct kf_mqttc *c, const char *topic,
                                                const void *payload, size_t len, uint8_t qos,
                                                uint32_t tag);

/*
 * Does what is due: reads and handles what arrived, writes what is queued (within the broker's
 * receive maximum), keeps the connection alive. `*next_ms` (may be NULL) gets the time by which
 * it wants to be called again even if the socket stays quiet. Anything but KF_MQTTC_OK means the
 * connection is over: the caller closes its transport, and calls kf_mqttc_start() on a new one.
 */
KF_EXPORT enum kf_mqttc_status kf_mqttc_step(struct kf_mqttc *c, uint64_t now_ms,
                                             uint64_t *next_ms);

/* 1 when bytes wait to be written (watch the socket for writability). */
KF_EXPORT int kf_mqttc_want_write(const struct kf_mqttc *c);

/* Queues DISCONNECT (normal) and writes what it can; the caller then closes the transport. */
KF_EXPORT void kf_mqttc_disconnect(struct kf_mqttc *c, uint64_t now_ms);

/* Tells the client its transport is gone without a step (the caller closed it). */
KF_EXPORT void kf_mqttc_lost(struct kf_mqttc *c);

/* Messages in the queue, and how many of its bytes are free. */
KF_EXPORT size_t kf_mqttc_queued(const struct kf_mqttc *c);
KF_EXPORT size_t kf_mqttc_queue_free(const struct kf_mqttc *c);

#endif
