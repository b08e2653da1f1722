/* out: what the hub writes to a client. */
#include "server/hub/hub_internal.h"

uint8_t *kf_hub_scratch(struct kf_hub_worker *hw, size_t need)
{
    if (need > hw->scratch_cap) {
        uint8_t *p = realloc(hw->scratch, need);
        if (!p) return NULL;
        hw->scratch = p;
        hw->scratch_cap = need;
    }
    return hw->scratch;
}

void kf_hub_write_bytes(struct hconn *c, const uint8_t *p, size_t n)
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
    if (kf_mqtt_encode_ack(buf, sizeof(buf), c->version, type, &a, &n) == 0)
        kf_hub_write_bytes(c, buf, n);
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
struct ack *kf_hub_queue_ack(struct hconn *c, enum kf_mqtt_type type, uint16_t id, uint8_t reason,
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
struct ack *kf_hub_queue_packet(struct hconn *c, const uint8_t *p, size_t n, int ready)
{
    struct ack *a;
    if (!c->acks && ready) {
        kf_hub_write_bytes(c, p, n);
        return NULL;
    }
    a = calloc(1, sizeof(*a) + n);
    if (!a) {
        kf_hub_write_bytes(c, p, n);
        return NULL;
    }
    memcpy(a->bytes, p, n);
    a->len = n;
    return ack_link(c, a, ready);
}

/* Sends the acknowledgements at the head of the queue that are ready. */
void kf_hub_flush_acks(struct hconn *c)
{
    while (c->acks && c->acks->ready) {
        struct ack *a = c->acks;
        c->acks = a->next;
        if (!c->acks) c->acks_tail = NULL;
        if (!c->closing && a->len)
            kf_hub_write_bytes(c, a->bytes, a->len);
        else if (!c->closing)
            send_ack(c, (enum kf_mqtt_type)a->type, a->id, a->reason);
        free(a);
    }
}

/*
 * A CONNACK. `wait` (a resumed stored session): it goes, and messages with it, once the store has
 * what earlier connections of the session left on their way there (the attach's write is behind
 * them), so that nothing this connection is told depends on a write not yet durable.
 */
void kf_hub_connack(struct hconn *c, uint8_t v5_reason, uint8_t v311_code, int present,
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
        wait->ack = kf_hub_queue_packet(c, buf, n, 0);
        wait->connack = 1;
        c->connack_wait = wait->ack != NULL;
        return;
    }
    kf_hub_write_bytes(c, buf, n);
}

void kf_hub_send_connack(struct hconn *c, uint8_t v5_reason, uint8_t v311_code, int present,
                         const struct kf_mqtt_props *props)
{
    kf_hub_connack(c, v5_reason, v311_code, present, props, NULL);
}

void kf_hub_send_disconnect(struct hconn *c, uint8_t reason, const char *why)
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
        kf_hub_write_bytes(c, buf, n);
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
    buf = kf_hub_scratch(c->hw, need);
    if (!buf || kf_mqtt_encode_publish(buf, need, c->version, &p, &n) != 0) {
        forget(c, o);
        return;
    }
    /* The client said what it can take [MQTT-3.1.2-24]: the message is discarded for it. */
    if (c->client_max_packet && n > c->client_max_packet) {
        forget(c, o);
        return;
    }
    kf_hub_write_bytes(c, buf, n);
    STAT_ADD(c->hw, messages_sent, 1);
}

void kf_hub_flush(struct hconn *c)
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
