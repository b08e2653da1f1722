/* handle_connect: the hub's CONNECT. */
#include "server/hub/hub_internal.h"

void kf_hub_on_connect(struct hconn *c, const struct kf_mqtt_connect *k)
{
    struct kf_hub_worker *hw = c->hw;
    struct kf_hubd *h = hw->hub;
    const struct kf_hub_conf *hc = &hw->conf;
    struct kf_hub_who who = kf_hub_who_of(c);
    struct kf_hub_connect_refusal refused;
    struct kf_hub_session_terms terms;
    struct kf_mqtt_props props;
    struct kf_snapshot *reg;
    int64_t now = kf_now_ms();
    int assigned = 0, present = 0, unusual = 0, out;

    c->version = k->version;
    reg = kf_snapshot_get(h->snapshot);
    out = kf_hub_decide_connect(k, &who, reg, &assigned, &refused);
    kf_snapshot_release(reg);
    if (out) {
        if (refused.auth_failed && strcmp(refused.why, "client_id_mismatch") == 0) {
            char got[160], raw[KF_ID_MAX + 1];
            size_t n = k->client_id.len < KF_ID_MAX ? k->client_id.len : KF_ID_MAX;
            memcpy(raw, k->client_id.p, n);
            raw[n] = '\0';
            kf_text_quote(got, sizeof(got), raw);
            kf_hub_auth_failed(c, refused.why, got);
        } else if (refused.auth_failed) {
            kf_hub_auth_failed(c, refused.why, "the identity may not connect");
        }
        kf_hub_send_connack(c, refused.rc5, refused.rc311, 0, NULL);
        kf_hub_shut(c, 0, refused.why, 0, 0);
        return;
    }
    if (kf_hub_id_connect(c, now, &unusual)) {
        STAT_ADD(hw, refused, 1);
        kf_hub_send_connack(c, KF_MQTT_RC_BANNED, KF_MQTT_V311_NOT_AUTHORIZED, 0, NULL);
        kf_hub_shut(c, 0, "flapping", 0, 0);
        return;
    }
    if (kf_hub_decide_session(k, &who, hc, &terms)) {
        STAT_ADD(hw, acl_denied, 1);
        kf_hub_refusal(c, "hub.acl_denied", "will",
                       kf_jsontext_pack("{s:s, s:s, s:s, s:s%}", "id", c->id, "identity",
                                        kf_hub_kind_name(c->kind), "operation", "will", "topic",
                                        (const char *)k->will_topic.p, (size_t)k->will_topic.len));
        kf_hub_send_connack(c, KF_MQTT_RC_NOT_AUTHORIZED, KF_MQTT_V311_NOT_AUTHORIZED, 0, NULL);
        kf_hub_shut(c, 0, "will_not_authorized", 0, 0);
        return;
    }
    if (k->will) {
        struct kf_mqtt_publish wp;
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
    c->expiry = terms.expiry;
    c->peer.receive_max = terms.receive_max;
    if (terms.client_max_packet) c->client_max_packet = terms.client_max_packet;
    if (kf_broker_attach(h->broker, &c->peer, c->key, k->clean_start, terms.expiry, &present) !=
        KF_OK) {
        kf_err_clear();
        kf_hub_send_connack(c, KF_MQTT_RC_SERVER_UNAVAILABLE, KF_MQTT_V311_SERVER_UNAVAILABLE, 0,
                            NULL);
        kf_hub_shut(c, 0, "server_unavailable", 0, 0);
        return;
    }
    memset(&props, 0, sizeof(props));
    props.present = (1ull << KF_MQTT_P_RECEIVE_MAXIMUM) | (1ull << KF_MQTT_P_MAXIMUM_PACKET_SIZE) |
                    (1ull << KF_MQTT_P_TOPIC_ALIAS_MAXIMUM) |
                    (1ull << KF_MQTT_P_SHARED_SUB_AVAILABLE);
    props.receive_maximum = hc->max_inflight;
    props.maximum_packet_size = (uint32_t)hc->max_packet;
    props.topic_alias_maximum = KF_HUB_TOPIC_ALIAS_MAX;
    props.shared_sub_available = 0;
    if (assigned) {
        props.present |= 1ull << KF_MQTT_P_ASSIGNED_CLIENT_ID;
        props.assigned_client_id.p = (const uint8_t *)c->id;
        props.assigned_client_id.len = (uint16_t)strlen(c->id);
    }
    if (k->version == KF_MQTT_V5 && KF_MQTT_HAS(&k->props, KF_MQTT_P_SESSION_EXPIRY) &&
        terms.expiry != k->props.session_expiry) {
        props.present |= 1ull << KF_MQTT_P_SESSION_EXPIRY;
        props.session_expiry = terms.expiry;
    }
    {
        struct hub_job *j = kf_hub_take_wait();
        kf_hub_connack(c, KF_MQTT_RC_SUCCESS, KF_MQTT_V311_ACCEPTED, present, &props,
                       present ? j : NULL);
    }
    c->connected = 1;
    c->connected_at = now;
    c->keep_alive = k->keep_alive;
    c->refill_ms = now;
    c->msg_tokens = hc->msg_burst;
    c->byte_tokens = hc->byte_burst;
    evtimer_del(c->head.timer);
    /* A client that says nothing for one and a half keep-alive periods is gone [MQTT-3.1.2-24]. */
    if (c->keep_alive) kf_hub_arm(c, c->keep_alive * 1500);
    STAT_ADD(hw, connections, 1);
    STAT_ADD(hw, connects, 1);
    kf_hub_event(c, "hub.connected", "info",
                 kf_jsontext_pack("{s:s, s:s, s:i, s:b, s:b}", "id", c->id, "identity",
                                  kf_hub_kind_name(c->kind), "mqtt",
                                  k->version == KF_MQTT_V5 ? 5 : 4, "session_present", present,
                                  "tls_resumed", c->tls_resumed));
    if (unusual)
        kf_hub_event(c, "hub.unusual_ip", "warning",
                     kf_jsontext_pack("{s:s, s:s}", "id", c->id, "ip", c->head.ip_text));
    kf_hub_flush(c);
}
