/* libkeyfleet's MQTT client: a state machine over caller buffers, on the shared codec. */
#include "keyfleet/mqtt_client.h"

#include <string.h>

#include "common/mqtt_codec.h"

/* A queued message: this header, then the topic, then the payload. Copied in and out with
 * memcpy, so the queue buffer needs no alignment. */
struct rec {
    uint32_t size; /* the whole record */
    uint32_t tag;
    uint32_t payload_len;
    uint16_t packet_id; /* QoS 1, once sent */
    uint16_t topic_len;
    uint8_t qos;
    uint8_t state; /* REC_* */
    uint8_t dup;   /* sent on an earlier connection */
    uint8_t pad;
};

enum { REC_UNSENT = 0, REC_SENT = 1 };

#define MIN_BUF         128
#define DEFAULT_WINDOW  16
#define DEFAULT_CONNACK 10000u

const char *kf_mqttc_status_name(enum kf_mqttc_status st)
{
    switch (st) {
    case KF_MQTTC_OK: return "ok";
    case KF_MQTTC_FULL: return "queue_full";
    case KF_MQTTC_TOO_BIG: return "too_big";
    case KF_MQTTC_INVALID: return "invalid";
    case KF_MQTTC_CLOSED: return "closed";
    case KF_MQTTC_REFUSED: return "refused";
    case KF_MQTTC_PROTOCOL: return "protocol_error";
    case KF_MQTTC_TIMEOUT: return "timeout";
    case KF_MQTTC_DISCONNECTED: return "disconnected";
    }
    return "?";
}

static void rec_get(const struct kf_mqttc *c, size_t off, struct rec *r)
{
    memcpy(r, c->q + off, sizeof(*r));
}

static void rec_put(struct kf_mqttc *c, size_t off, const struct rec *r)
{
    memcpy(c->q + off, r, sizeof(*r));
}

static void rec_remove(struct kf_mqttc *c, size_t off, uint32_t size)
{
    memmove(c->q + off, c->q + off + size, c->q_len - off - size);
    c->q_len -= size;
    c->q_count--;
}

enum kf_mqttc_status kf_mqttc_init(struct kf_mqttc *c, const struct kf_mqttc_options *opt,
                                   const struct kf_mqttc_transport *io,
                                   const struct kf_mqttc_handlers *h, uint8_t *rx, size_t rx_cap,
                                   uint8_t *tx, size_t tx_cap, uint8_t *q, size_t q_cap)
{
    memset(c, 0, sizeof(*c));
    if (!opt || !io || !io->send || !io->recv || !opt->client_id || !rx || !tx || !q)
        return KF_MQTTC_INVALID;
    if (opt->version != KF_MQTT_V311 && opt->version != KF_MQTT_V5) return KF_MQTTC_INVALID;
    if (rx_cap < MIN_BUF || tx_cap < MIN_BUF || q_cap < MIN_BUF) return KF_MQTTC_INVALID;
    if (strlen(opt->client_id) > 65535 || opt->sub_qos > 1) return KF_MQTTC_INVALID;
    c->opt = *opt;
    if (!c->opt.max_inflight) c->opt.max_inflight = DEFAULT_WINDOW;
    if (!c->opt.connack_timeout_ms) c->opt.connack_timeout_ms = DEFAULT_CONNACK;
    c->io = *io;
    if (h) c->h = *h;
    c->rx = rx;
    c->rx_cap = rx_cap;
    c->tx = tx;
    c->tx_cap = tx_cap;
    c->q = q;
    c->q_cap = q_cap;
    c->state = KF_MQTTC_IDLE;
    return KF_MQTTC_OK;
}

static void requeue_all(struct kf_mqttc *c)
{
    size_t off = 0;
    while (off < c->q_len) {
        struct rec r;
        rec_get(c, off, &r);
        if (r.state == REC_SENT) {
            r.state = REC_UNSENT;
            r.dup = 1;
            rec_put(c, off, &r);
        }
        off += r.size;
    }
    c->inflight = 0;
}

enum kf_mqttc_status kf_mqttc_start(struct kf_mqttc *c, uint64_t now_ms)
{
    struct kf_mqtt_connect k;
    size_t n;

    requeue_all(c);
    c->rx_len = c->tx_len = c->tx_off = c->pending_ack_len = 0;
    c->ping_out = 0;
    c->reason = 0;
    c->why = NULL;
    c->window = c->opt.max_inflight;
    c->max_packet = 0;
    memset(&k, 0, sizeof(k));
    k.version = c->opt.version;
    k.clean_start = c->opt.clean_start;
    k.keep_alive = c->opt.keep_alive_s;
    k.client_id.p = (const uint8_t *)c->opt.client_id;
    k.client_id.len = (uint16_t)strlen(c->opt.client_id);
    if (c->opt.version == KF_MQTT_V5) {
        k.props.present |= 1ull << KF_MQTT_P_SESSION_EXPIRY;
        k.props.session_expiry = c->opt.session_expiry_s;
        k.props.present |= 1ull << KF_MQTT_P_RECEIVE_MAXIMUM;
        k.props.receive_maximum = 16;
        k.props.present |= 1ull << KF_MQTT_P_MAXIMUM_PACKET_SIZE;
        k.props.maximum_packet_size = (uint32_t)(c->rx_cap > 0xfffffff ? 0xfffffff : c->rx_cap);
    }
    if (kf_mqtt_encode_connect(c->tx, c->tx_cap, &k, &n) != 0) {
        c->why = "CONNECT does not fit the send buffer";
        return KF_MQTTC_TOO_BIG;
    }
    c->tx_len = n;
    c->state = KF_MQTTC_CONNECTING;
    c->connect_ms = c->last_tx_ms = now_ms;
    c->stats.connects++;
    return KF_MQTTC_OK;
}

/* The encoded size of a PUBLISH of this record (an upper bound for MQTT 5's empty props). */
static size_t publish_size(size_t topic_len, size_t payload_len, uint8_t qos, uint8_t version)
{
    size_t body = 2 + topic_len + (qos ? 2 : 0) + (version == KF_MQTT_V5 ? 1 : 0) + payload_len;
    return body + KF_MQTT_HEADER_MAX;
}

enum kf_mqttc_status kf_mqttc_publish(struct kf_mqttc *c, const char *topic, const void *payload,
                                      size_t len, uint8_t qos, uint32_t tag)
{
    struct rec r;
    size_t tlen = topic ? strlen(topic) : 0;
    size_t need;

    if (!topic || qos > 1 || tlen > 65535 || (len && !payload) ||
        !kf_mqtt_topic_name_valid((const uint8_t *)topic, tlen) ||
        !kf_mqtt_utf8_valid((const uint8_t *)topic, tlen))
        return KF_MQTTC_INVALID;
    if (len > KF_MQTT_REMAINING_MAX) return KF_MQTTC_TOO_BIG;
    need = sizeof(r) + tlen + len;
    if (publish_size(tlen, len, qos, c->opt.version) > c->tx_cap || need > c->q_cap)
        return KF_MQTTC_TOO_BIG;
    if (c->max_packet && publish_size(tlen, len, qos, c->opt.version) > c->max_packet)
        return KF_MQTTC_TOO_BIG;
    if (c->q_len + need > c->q_cap) return KF_MQTTC_FULL;
    memset(&r, 0, sizeof(r));
    r.size = (uint32_t)need;
    r.tag = tag;
    r.payload_len = (uint32_t)len;
    r.topic_len = (uint16_t)tlen;
    r.qos = qos;
    r.state = REC_UNSENT;
    rec_put(c, c->q_len, &r);
    memcpy(c->q + c->q_len + sizeof(r), topic, tlen);
    if (len) memcpy(c->q + c->q_len + sizeof(r) + tlen, payload, len);
    c->q_len += need;
    c->q_count++;
    c->stats.published++;
    return KF_MQTTC_OK;
}

size_t kf_mqttc_queued(const struct kf_mqttc *c)
{
    return c->q_count;
}

size_t kf_mqttc_queue_free(const struct kf_mqttc *c)
{
    return c->q_cap - c->q_len;
}

int kf_mqttc_want_write(const struct kf_mqttc *c)
{
    return c->tx_off < c->tx_len;
}

static enum kf_mqttc_status fail(struct kf_mqttc *c, enum kf_mqttc_status st, const char *why)
{
    c->why = why;
    c->state = KF_MQTTC_IDLE;
    requeue_all(c);
    return st;
}

/* Writes what tx holds. OK with bytes possibly left (the transport would block). */
static enum kf_mqttc_status flush(struct kf_mqttc *c, uint64_t now)
{
    while (c->tx_off < c->tx_len) {
        long n = c->io.send(c->io.ctx, c->tx + c->tx_off, c->tx_len - c->tx_off);
        if (n < 0) return fail(c, KF_MQTTC_CLOSED, "the connection failed while sending");
        if (n == 0) return KF_MQTTC_OK;
        c->tx_off += (size_t)n;
        c->last_tx_ms = now;
    }
    c->tx_off = c->tx_len = 0;
    return KF_MQTTC_OK;
}

/* Appends a small packet (an ack, PINGREQ, SUBSCRIBE) to tx; 0 when it does not fit now. */
static int tx_append(struct kf_mqttc *c, const uint8_t *p, size_t n)
{
    if (c->tx_len + n > c->tx_cap) return 0;
    memcpy(c->tx + c->tx_len, p, n);
    c->tx_len += n;
    return 1;
}

static void owe_ack(struct kf_mqttc *c, enum kf_mqtt_type type, uint16_t id)
{
    uint8_t buf[8];
    size_t n;
    struct kf_mqtt_ack a;
    memset(&a, 0, sizeof(a));
    a.packet_id = id;
    if (kf_mqtt_encode_ack(buf, sizeof(buf), c->opt.version, type, &a, &n) != 0) return;
    if (tx_append(c, buf, n)) return;
    /* tx is busy: keep the ack for the next fill; the pending buffer holds 16 */
    if (c->pending_ack_len + n <= sizeof(c->pending_ack)) {
        memcpy(c->pending_ack + c->pending_ack_len, buf, n);
        c->pending_ack_len += n;
    }
}

static enum kf_mqttc_status send_subscriptions(struct kf_mqttc *c)
{
    struct kf_mqtt_sub subs[16];
    size_t i, n, len;
    for (i = 0; i < c->opt.n_subscriptions; i += n) {
        size_t k;
        n = c->opt.n_subscriptions - i;
        if (n > 16) n = 16;
        for (k = 0; k < n; k++) {
            const char *f = c->opt.subscriptions[i + k];
            memset(&subs[k], 0, sizeof(subs[k]));
            subs[k].filter.p = (const uint8_t *)f;
            subs[k].filter.len = (uint16_t)strlen(f);
            subs[k].qos = c->opt.sub_qos;
        }
        if (kf_mqtt_encode_subscribe(c->tx + c->tx_len, c->tx_cap - c->tx_len, c->opt.version, 0,
                                     (uint16_t)(0xF000 + i / 16), NULL, subs, n, &len) != 0)
            return fail(c, KF_MQTTC_TOO_BIG, "the subscriptions do not fit the send buffer");
        c->tx_len += len;
    }
    return KF_MQTTC_OK;
}

static uint16_t next_packet_id(struct kf_mqttc *c)
{
    /* ids 0xF000 and above are the subscriptions' */
    c->next_id = (uint16_t)(c->next_id >= 0xEFFF ? 1 : c->next_id + 1);
    return c->next_id;
}

/* Moves queued messages into tx while they fit and the window allows. */
static void fill(struct kf_mqttc *c)
{
    size_t off = 0;
    if (c->pending_ack_len && tx_append(c, c->pending_ack, c->pending_ack_len))
        c->pending_ack_len = 0;
    while (off < c->q_len) {
        struct rec r;
        struct kf_mqtt_publish p;
        size_t n;
        rec_get(c, off, &r);
        if (r.state != REC_UNSENT || (r.qos && c->inflight >= c->window)) {
            off += r.size;
            continue;
        }
        memset(&p, 0, sizeof(p));
        p.qos = r.qos;
        p.dup = r.qos && r.dup;
        p.topic.p = c->q + off + sizeof(r);
        p.topic.len = r.topic_len;
        p.payload = c->q + off + sizeof(r) + r.topic_len;
        p.payload_len = r.payload_len;
        if (r.qos) {
            if (!r.packet_id) r.packet_id = next_packet_id(c);
            p.packet_id = r.packet_id;
        }
        if (kf_mqtt_encode_publish(c->tx + c->tx_len, c->tx_cap - c->tx_len, c->opt.version, &p,
                                   &n) != 0)
            return; /* tx is full for now */
        c->tx_len += n;
        if (r.dup) c->stats.resent++;
        if (r.qos) {
            r.state = REC_SENT;
            rec_put(c, off, &r);
            c->inflight++;
            off += r.size;
        } else {
            uint32_t tag = r.tag;
            rec_remove(c, off, r.size);
            c->stats.delivered++;
            if (c->h.delivered_cb) c->h.delivered_cb(c->h.ctx, tag, 0);
        }
    }
}

static void on_puback(struct kf_mqttc *c, uint16_t id, uint8_t reason)
{
    size_t off = 0;
    while (off < c->q_len) {
        struct rec r;
        rec_get(c, off, &r);
        if (r.state == REC_SENT && r.packet_id == id) {
            uint32_t tag = r.tag;
            rec_remove(c, off, r.size);
            if (c->inflight) c->inflight--;
            c->stats.delivered++;
            if (c->h.delivered_cb) c->h.delivered_cb(c->h.ctx, tag, reason);
            return;
        }
        off += r.size;
    }
    /* an ack for nothing of ours (a duplicate after a resend): harmless */
}

static enum kf_mqttc_status on_packet(struct kf_mqttc *c, const struct kf_mqtt_packet *pkt)
{
    switch (pkt->type) {
    case KF_MQTT_CONNACK:
        if (c->state != KF_MQTTC_CONNECTING) return fail(c, KF_MQTTC_PROTOCOL, "a second CONNACK");
        if (pkt->u.connack.reason != 0) {
            c->reason = pkt->u.connack.reason;
            return fail(c, KF_MQTTC_REFUSED, "the broker refused the connection");
        }
        if (c->opt.version == KF_MQTT_V5) {
            const struct kf_mqtt_props *p = &pkt->u.connack.props;
            if (KF_MQTT_HAS(p, KF_MQTT_P_RECEIVE_MAXIMUM) && p->receive_maximum < c->window)
                c->window = p->receive_maximum;
            if (KF_MQTT_HAS(p, KF_MQTT_P_MAXIMUM_PACKET_SIZE))
                c->max_packet = p->maximum_packet_size;
            if (KF_MQTT_HAS(p, KF_MQTT_P_SERVER_KEEP_ALIVE))
                c->opt.keep_alive_s = p->server_keep_alive;
        }
        c->state = KF_MQTTC_CONNECTED;
        if (c->opt.n_subscriptions) {
            enum kf_mqttc_status st = send_subscriptions(c);
            if (st) return st;
        }
        if (c->h.connected_cb) c->h.connected_cb(c->h.ctx, pkt->u.connack.session_present);
        return KF_MQTTC_OK;
    case KF_MQTT_PUBLISH: {
        const struct kf_mqtt_publish *p = &pkt->u.publish;
        c->stats.received++;
        if (p->qos == 1) owe_ack(c, KF_MQTT_PUBACK, p->packet_id);
        if (p->qos == 2) owe_ack(c, KF_MQTT_PUBREC, p->packet_id);
        if (p->topic.len && c->h.message_cb)
            c->h.message_cb(c->h.ctx, (const char *)p->topic.p, p->topic.len, p->payload,
                            p->payload_len);
        return KF_MQTTC_OK;
    }
    case KF_MQTT_PUBREL: owe_ack(c, KF_MQTT_PUBCOMP, pkt->u.ack.packet_id); return KF_MQTTC_OK;
    case KF_MQTT_PUBACK: on_puback(c, pkt->u.ack.packet_id, pkt->u.ack.reason); return KF_MQTTC_OK;
    case KF_MQTT_SUBACK: {
        unsigned i;
        size_t base = (size_t)(pkt->u.suback.packet_id - 0xF000) * 16;
        for (i = 0; i < pkt->u.suback.count; i++) {
            uint8_t code = pkt->u.suback.codes[i];
            if (code >= 0x80 && c->h.sub_refused_cb)
                c->h.sub_refused_cb(
                    c->h.ctx,
                    base + i < c->opt.n_subscriptions ? c->opt.subscriptions[base + i] : "?", code);
        }
        return KF_MQTTC_OK;
    }
    case KF_MQTT_UNSUBACK: return KF_MQTTC_OK;
    case KF_MQTT_PINGRESP: c->ping_out = 0; return KF_MQTTC_OK;
    case KF_MQTT_DISCONNECT:
        c->reason = pkt->u.disconnect.reason;
        return fail(c, KF_MQTTC_DISCONNECTED, "the broker disconnected");
    default: return fail(c, KF_MQTTC_PROTOCOL, "the broker sent a packet a client never gets");
    }
}

static enum kf_mqttc_status receive(struct kf_mqttc *c)
{
    for (;;) {
        long n;
        if (c->rx_len == c->rx_cap)
            return fail(c, KF_MQTTC_PROTOCOL, "a packet larger than the receive buffer");
        n = c->io.recv(c->io.ctx, c->rx + c->rx_len, c->rx_cap - c->rx_len);
        if (n < 0) return fail(c, KF_MQTTC_CLOSED, "the broker closed the connection");
        if (n == 0) return KF_MQTTC_OK;
        c->rx_len += (size_t)n;
        for (;;) {
            struct kf_mqtt_packet pkt;
            struct kf_mqtt_error err;
            enum kf_mqttc_status st;
            enum kf_mqtt_status ds =
                kf_mqtt_decode(c->rx, c->rx_len, c->opt.version, c->rx_cap, &pkt, &err);
            if (ds == KF_MQTT_PARTIAL) break;
            if (ds == KF_MQTT_BAD) {
                c->reason = err.reason;
                return fail(c, KF_MQTTC_PROTOCOL, err.why);
            }
            if (c->state == KF_MQTTC_CONNECTING && pkt.type != KF_MQTT_CONNACK)
                return fail(c, KF_MQTTC_PROTOCOL, "the first packet was not CONNACK");
            st = on_packet(c, &pkt);
            if (st) return st;
            memmove(c->rx, c->rx + pkt.size, c->rx_len - pkt.size);
            c->rx_len -= pkt.size;
        }
    }
}

enum kf_mqttc_status kf_mqttc_step(struct kf_mqttc *c, uint64_t now, uint64_t *next_ms)
{
    enum kf_mqttc_status st;
    uint64_t next = now + 60000;
    uint64_t ka = (uint64_t)c->opt.keep_alive_s * 1000;

    if (c->state == KF_MQTTC_IDLE) return KF_MQTTC_CLOSED;
    st = flush(c, now);
    if (st) return st;
    st = receive(c);
    if (st) return st;
    if (c->state == KF_MQTTC_CONNECTING) {
        if (now - c->connect_ms >= c->opt.connack_timeout_ms)
            return fail(c, KF_MQTTC_TIMEOUT, "no CONNACK in time");
        next = c->connect_ms + c->opt.connack_timeout_ms;
    } else {
        fill(c);
        if (ka) {
            if (c->ping_out && now - c->ping_ms >= ka)
                return fail(c, KF_MQTTC_TIMEOUT, "no PINGRESP within the keep-alive");
            /* bytes that could not be written for a keep-alive and a half: the link is dead */
            if (c->tx_off < c->tx_len && now - c->last_tx_ms >= ka + ka / 2)
                return fail(c, KF_MQTTC_TIMEOUT, "the broker has taken nothing for too long");
            if (!c->ping_out && c->tx_len == 0 && now - c->last_tx_ms >= ka) {
                uint8_t b[2];
                size_t n;
                kf_mqtt_encode_empty(b, sizeof(b), KF_MQTT_PINGREQ, &n);
                tx_append(c, b, n);
                c->ping_out = 1;
                c->ping_ms = now;
                c->stats.pings++;
            }
        }
    }
    st = flush(c, now);
    if (st) return st;
    if (c->state == KF_MQTTC_CONNECTED && ka) {
        uint64_t due = c->ping_out ? c->ping_ms + ka : c->last_tx_ms + ka;
        if (due < next) next = due;
    }
    if (next_ms) *next_ms = next;
    return KF_MQTTC_OK;
}

void kf_mqttc_disconnect(struct kf_mqttc *c, uint64_t now)
{
    uint8_t b[8];
    size_t n;
    struct kf_mqtt_disconnect d;
    if (c->state == KF_MQTTC_IDLE) return;
    memset(&d, 0, sizeof(d));
    if (c->opt.version == KF_MQTT_V5)
        kf_mqtt_encode_disconnect(b, sizeof(b), KF_MQTT_V5, KF_MQTT_DISCONNECT, &d, &n);
    else
        kf_mqtt_encode_empty(b, sizeof(b), KF_MQTT_DISCONNECT, &n);
    if (!tx_append(c, b, n)) {
        /* what is half written must finish first; then DISCONNECT */
        flush(c, now);
        tx_append(c, b, n);
    }
    flush(c, now);
    c->state = KF_MQTTC_IDLE;
    requeue_all(c);
}

void kf_mqttc_lost(struct kf_mqttc *c)
{
    c->state = KF_MQTTC_IDLE;
    requeue_all(c);
}
