/* handle_subscribe: the hub's SUBSCRIBE and UNSUBSCRIBE. */
#include "server/hub/hub_internal.h"

void kf_hub_on_subscribe(struct hconn *c, const struct kf_mqtt_packet *pkt, int unsubscribe)
{
    const struct kf_mqtt_subscribe *s = &pkt->u.subscribe;
    struct kf_hub_who who = kf_hub_who_of(c);
    struct kf_hubd *h = c->hw->hub;
    uint8_t codes[256], *buf;
    struct kf_broker_filter fl[256];
    size_t at[256], nf = 0;
    struct kf_mqtt_sub e;
    size_t pos = 0, n = 0, len;

    if (s->count > sizeof(codes)) {
        kf_hub_protocol_fail(c, KF_MQTT_RC_QUOTA_EXCEEDED, "more than 256 filters in one packet");
        return;
    }
    /* Each filter is a message against the rates: a SUBSCRIBE is no way around them. */
    if (!kf_hub_take_tokens(c, s->count ? (double)s->count : 1, pkt->size, kf_now_ms())) {
        kf_hub_rate_event(c, unsubscribe ? "unsubscribe" : "subscribe");
        if (c->hw->conf.rate_action == KF_HUB_DISCONNECT) {
            kf_hub_shut(c, KF_MQTT_RC_MESSAGE_RATE_TOO_HIGH, "message_rate_too_high", 1, 1);
            return;
        }
        for (n = 0; n < s->count; n++)
            codes[n] = c->version == KF_MQTT_V5 ? KF_MQTT_RC_QUOTA_EXCEEDED : 0x80;
        if (unsubscribe && c->version != KF_MQTT_V5) n = 0; /* 3.1.1 UNSUBACK has none */
        buf = kf_hub_scratch(c->hw, 64 + n);
        if (buf && kf_mqtt_encode_suback(buf, 64 + n, c->version, unsubscribe, s->packet_id, NULL,
                                         codes, n, &len) == 0)
            kf_hub_write_bytes(c, buf, len);
        return;
    }
    /* The filters the broker takes go to it in one call: one commit for the whole packet. */
    while (kf_mqtt_subs_next(pkt, c->version, &pos, &e)) {
        uint8_t code = 0;
        int denied = 0;
        if (unsubscribe) {
            memset(&fl[nf], 0, sizeof(fl[nf]));
            fl[nf].filter = e.filter.p;
            fl[nf].len = e.filter.len;
            at[nf++] = n;
        } else if (!kf_hub_decide_filter(c->version, &who, e.filter.p, e.filter.len, &code,
                                         &denied)) {
            if (denied) {
                char f[200];
                size_t fn = e.filter.len < sizeof(f) - 1 ? e.filter.len : sizeof(f) - 1;
                memcpy(f, e.filter.p, fn);
                f[fn] = '\0';
                STAT_ADD(c->hw, acl_denied, 1);
                kf_hub_refusal(c, "hub.acl_denied", "subscribe",
                               kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "identity",
                                                kf_hub_kind_name(c->kind), "operation", "subscribe",
                                                "topic", f));
            }
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
    buf = kf_hub_scratch(c->hw, 64 + n);
    if (buf && kf_mqtt_encode_suback(buf, 64 + n, c->version, unsubscribe, s->packet_id, NULL,
                                     codes, n, &len) == 0) {
        /* a persistent session's subscriptions are durable before the SUBACK */
        struct hub_job *j = kf_hub_take_wait();
        struct ack *a = kf_hub_queue_packet(c, buf, len, !j);
        if (j) j->ack = a;
    }
    kf_hub_flush(c); /* retained messages */
}
