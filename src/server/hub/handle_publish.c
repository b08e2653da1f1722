/* handle_publish: the hub's PUBLISH. */
#include "server/hub/hub_internal.h"

/*
 * A device's own security event (decide.h reads it), stored with source=device; 0 with `why`
 * when it is not one. Each takes a token of the device's event rate; beyond it, 0 with `*over`.
 */
int kf_hub_device_event(struct hconn *c, const uint8_t *payload, size_t len, const char **why,
                        int *over)
{
    struct kf_hub_device_event e;
    if (!kf_hub_parse_device_event(payload, len, &e, why)) return 0;
    if (!kf_hub_device_event_token(c)) {
        free(e.detail);
        *over = 1;
        *why = "over the device's event rate (hub.device_event_rate)";
        kf_hub_rate_event(c, "device_events");
        return 0;
    }
    kf_events_submit(c->hw->hub->deploy->store, e.type, e.severity, c->id, NULL, "device",
                     c->head.ip_text, e.detail);
    return 1;
}

/* Answers a QoS 1 or 2 PUBLISH with `reason` (MQTT 3.1.1 acks carry none). */
static void ack_publish(struct hconn *c, const struct kf_mqtt_publish *p, uint8_t reason)
{
    if (p->qos == 1) kf_hub_queue_ack(c, KF_MQTT_PUBACK, p->packet_id, reason, 1);
    if (p->qos == 2) kf_hub_queue_ack(c, KF_MQTT_PUBREC, p->packet_id, reason, 1);
}

/* Refused whole, and said so: a retained message is never dropped in silence. */
static void retained_refused(struct hconn *c, const struct kf_mqtt_publish *p,
                             struct kf_mqtt_str topic, const char *kind, const char *reason)
{
    char t[200];
    size_t n = topic.len < sizeof(t) - 1 ? topic.len : sizeof(t) - 1;
    memcpy(t, topic.p, n);
    t[n] = '\0';
    kf_hub_refusal(c, "hub.retained_refused", kind,
                   kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "identity",
                                    kf_hub_kind_name(c->kind), "topic", t, "reason", reason));
    ack_publish(c, p, c->version == KF_MQTT_V5 ? KF_MQTT_RC_QUOTA_EXCEEDED : 0);
}

void kf_hub_on_publish(struct hconn *c, const struct kf_mqtt_packet *pkt)
{
    const struct kf_mqtt_publish *p = &pkt->u.publish;
    struct kf_hub_who who = kf_hub_who_of(c);
    struct kf_mqtt_str topic;
    enum kf_hub_publish_verdict verdict;
    const char *why = NULL;
    uint8_t rc;
    struct kf_hubd *h = c->hw->hub;
    int64_t now = kf_now_ms();
    struct kf_msg *m;
    size_t routed;
    enum kf_retain_refusal unkept = KF_RETAIN_OK;

    rc = kf_hub_decide_topic(p, c->aliases, &topic, &why);
    if (rc == KF_MQTT_RC_SERVER_BUSY) {
        kf_hub_shut(c, rc, why, 1, 1);
        return;
    }
    if (rc) {
        kf_hub_protocol_fail(c, rc, why);
        return;
    }
    if (!kf_hub_take_tokens(c, 1, pkt->size, now)) {
        kf_hub_rate_event(c, "publish");
        if (c->hw->conf.rate_action == KF_HUB_DISCONNECT) {
            kf_hub_shut(c, KF_MQTT_RC_MESSAGE_RATE_TOO_HIGH, "message_rate_too_high", 1, 1);
            return;
        }
        ack_publish(c, p, KF_MQTT_RC_QUOTA_EXCEEDED);
        return;
    }
    verdict = kf_hub_decide_publish(c->version, c->hw->conf.acl_action, &who, topic);
    if (verdict != KF_HUB_PUBLISH_ROUTE) {
        char t[200];
        size_t n = topic.len < sizeof(t) - 1 ? topic.len : sizeof(t) - 1;
        memcpy(t, topic.p, n);
        t[n] = '\0';
        STAT_ADD(c->hw, acl_denied, 1);
        kf_hub_refusal(c, "hub.acl_denied", "publish",
                       kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "identity",
                                        kf_hub_kind_name(c->kind), "operation", "publish", "topic",
                                        t));
        if (verdict == KF_HUB_PUBLISH_DISCONNECT)
            kf_hub_shut(c, KF_MQTT_RC_NOT_AUTHORIZED, "not_authorized", 1, 1);
        else /* MQTT 5: the reason; 3.1.1: dropped, as configured */
            ack_publish(c, p, verdict == KF_HUB_PUBLISH_REFUSE ? KF_MQTT_RC_NOT_AUTHORIZED : 0);
        return;
    }
    if (p->qos == 2) {
        /* recorded with its message, below (kf_broker_publish_qos2) */
        int r = kf_broker_qos2_check(h->broker, &c->peer, p->packet_id);
        if (r < 0) {
            kf_hub_protocol_fail(c, KF_MQTT_RC_RECEIVE_MAX_EXCEEDED,
                                 "too many QoS 2 messages unreleased");
            return;
        }
        if (r == 0) { /* a duplicate: already routed */
            kf_hub_queue_ack(c, KF_MQTT_PUBREC, p->packet_id, 0, 1);
            return;
        }
    }
    if (kf_hub_is_event_topic(&who, topic)) {
        int over = 0;
        if (!kf_hub_device_event(c, p->payload, p->payload_len, &why, &over)) {
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
        kf_hub_shut(c, KF_MQTT_RC_SERVER_BUSY, "out_of_memory", 1, 1);
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
        kf_hub_ack_after(
            c, p->qos == 1 ? KF_MQTT_PUBACK : KF_MQTT_PUBREC, p->packet_id,
            c->version == KF_MQTT_V5 && routed == 0 ? KF_MQTT_RC_NO_MATCHING_SUBSCRIBERS : 0);
}
