/*
 * Fuzz target: the MQTT codec. Each input is decoded as a first packet (version 0) and as a
 * packet of MQTT 3.1.1 and of 5.0, with and without a size limit; what decodes must stay inside
 * the input, walk its lists without error, and come back the same when a PUBLISH or SUBSCRIBE is
 * encoded again and decoded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/mqtt_codec.h"

static void inside(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
    if (n && (p < buf || p + n > buf + len)) __builtin_trap();
}

static void check(const uint8_t *buf, size_t len, uint8_t version, const struct kf_mqtt_packet *pkt)
{
    static uint8_t out[70000];
    struct kf_mqtt_packet again;
    struct kf_mqtt_error e;
    struct kf_mqtt_str a, b;
    struct kf_mqtt_sub sub, subs[64];
    size_t pos = 0, n = 0, k = 0;
    uint32_t id;

    if (pkt->size > len || pkt->size < 2) __builtin_trap();
    switch (pkt->type) {
    case KF_MQTT_PUBLISH: {
        const struct kf_mqtt_publish *p = &pkt->u.publish;
        struct kf_mqtt_publish copy = *p;
        inside(p->topic.p, p->topic.len, buf, len);
        inside(p->payload, p->payload_len, buf, len);
        while (kf_mqtt_user_props_next(&p->props, &pos, &a, &b))
            k++;
        if (k != p->props.n_user_props) __builtin_trap();
        pos = 0;
        k = 0;
        while (kf_mqtt_sub_ids_next(&p->props, &pos, &id))
            k++;
        if (k != p->props.n_sub_ids) __builtin_trap();
        copy.props.n_user = 0;
        copy.props.user = NULL;
        if (p->props.n_sub_ids > 1) break; /* the encoder writes one */
        if (kf_mqtt_encode_publish(out, sizeof(out), version, &copy, &n) != 0) __builtin_trap();
        if (kf_mqtt_decode(out, n, version, 0, &again, &e) != KF_MQTT_OK) __builtin_trap();
        if (again.u.publish.qos != p->qos || again.u.publish.packet_id != p->packet_id ||
            again.u.publish.payload_len != p->payload_len ||
            again.u.publish.topic.len != p->topic.len ||
            memcmp(again.u.publish.payload, p->payload, p->payload_len) != 0)
            __builtin_trap();
        break;
    }
    case KF_MQTT_SUBSCRIBE:
    case KF_MQTT_UNSUBSCRIBE:
        while (kf_mqtt_subs_next(pkt, version, &pos, &sub)) {
            inside(sub.filter.p, sub.filter.len, buf, len);
            if (k < 64) subs[k] = sub;
            k++;
        }
        if (k != pkt->u.subscribe.count) __builtin_trap();
        if (k <= 64 && pkt->u.subscribe.props.n_user_props == 0) {
            if (kf_mqtt_encode_subscribe(
                    out, sizeof(out), version, pkt->type == KF_MQTT_UNSUBSCRIBE,
                    pkt->u.subscribe.packet_id, &pkt->u.subscribe.props, subs, k, &n) != 0)
                __builtin_trap();
            if (kf_mqtt_decode(out, n, version, 0, &again, &e) != KF_MQTT_OK ||
                again.u.subscribe.count != k)
                __builtin_trap();
        }
        break;
    case KF_MQTT_CONNECT:
        inside(pkt->u.connect.client_id.p, pkt->u.connect.client_id.len, buf, len);
        inside(pkt->u.connect.password.p, pkt->u.connect.password.len, buf, len);
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t versions[] = {0, KF_MQTT_V311, KF_MQTT_V5};
    for (size_t i = 0; i < sizeof(versions); i++) {
        for (int limited = 0; limited < 2; limited++) {
            struct kf_mqtt_packet pkt;
            struct kf_mqtt_error e;
            enum kf_mqtt_status s =
                kf_mqtt_decode(data, size, versions[i], limited ? 256 : 0, &pkt, &e);
            if (s == KF_MQTT_BAD && (!e.why || e.reason < 0x80)) __builtin_trap();
            if (s == KF_MQTT_OK)
                check(data, size, pkt.type == KF_MQTT_CONNECT ? pkt.u.connect.version : versions[i],
                      &pkt);
        }
    }
    return 0;
}
