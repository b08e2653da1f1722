/*
 * mqtt_client: libkeyfleet's portable MQTT state machine against a scripted broker made of the
 * shared codec, over an in-memory transport (the TLS transport is covered by the agent's
 * integration tests against keyfleetd and Mosquitto).
 */
#include "testutil.h"

#include <string.h>

#include "common/mqtt_codec.h"
#include "keyfleet/backoff.h"
#include "keyfleet/mqtt_client.h"

/* The wire: what the client wrote (to the broker) and what the broker queued for it. */
struct wire {
    uint8_t up[65536];
    size_t up_len;
    uint8_t down[65536];
    size_t down_len, down_off;
    size_t send_limit; /* bytes the transport takes per call (0: all) */
    int broken;
    /* what the client reported */
    int connected, session_present;
    uint32_t delivered[64];
    uint8_t delivered_reason[64];
    int n_delivered;
    char message[256];
    int n_messages, n_refused;
};

static long w_send(void *ctx, const uint8_t *buf, size_t len)
{
    struct wire *w = ctx;
    if (w->broken) return -1;
    if (w->send_limit && len > w->send_limit) len = w->send_limit;
    assert_true(w->up_len + len <= sizeof(w->up));
    memcpy(w->up + w->up_len, buf, len);
    w->up_len += len;
    return (long)len;
}

static long w_recv(void *ctx, uint8_t *buf, size_t cap)
{
    struct wire *w = ctx;
    size_t n = w->down_len - w->down_off;
    if (w->broken) return -1;
    if (!n) return 0;
    if (n > cap) n = cap;
    memcpy(buf, w->down + w->down_off, n);
    w->down_off += n;
    return (long)n;
}

static void connected_cb(void *ctx, int sp)
{
    struct wire *w = ctx;
    w->connected++;
    w->session_present = sp;
}

static void message_cb(void *ctx, const char *topic, size_t tl, const uint8_t *p, size_t n)
{
    struct wire *w = ctx;
    snprintf(w->message, sizeof(w->message), "%.*s=%.*s", (int)tl, topic, (int)n, (const char *)p);
    w->n_messages++;
}

static void delivered_cb(void *ctx, uint32_t tag, uint8_t reason)
{
    struct wire *w = ctx;
    w->delivered_reason[w->n_delivered] = reason;
    w->delivered[w->n_delivered++] = tag;
}

static void refused_cb(void *ctx, const char *f, uint8_t r)
{
    ((struct wire *)ctx)->n_refused++;
}

/* Takes the next packet the client sent; 0 when there is none. */
static int next_up(struct wire *w, uint8_t version, struct kf_mqtt_packet *pkt, uint8_t *copy)
{
    struct kf_mqtt_error err;
    if (!w->up_len) return 0;
    memcpy(copy, w->up, w->up_len);
    assert_int_equal(kf_mqtt_decode(copy, w->up_len, version, 0, pkt, &err), KF_MQTT_OK);
    memmove(w->up, w->up + pkt->size, w->up_len - pkt->size);
    w->up_len -= pkt->size;
    return 1;
}

static void down_connack(struct wire *w, uint8_t version, uint8_t reason, int sp,
                         uint16_t receive_max)
{
    struct kf_mqtt_connack c;
    size_t n;
    memset(&c, 0, sizeof(c));
    c.reason = reason;
    c.session_present = sp;
    if (receive_max) {
        c.props.present |= 1ull << KF_MQTT_P_RECEIVE_MAXIMUM;
        c.props.receive_maximum = receive_max;
    }
    assert_int_equal(kf_mqtt_encode_connack(w->down + w->down_len, sizeof(w->down) - w->down_len,
                                            version, &c, &n),
                     0);
    w->down_len += n;
}

static void down_ack(struct wire *w, uint8_t version, enum kf_mqtt_type t, uint16_t id,
                     uint8_t reason)
{
    struct kf_mqtt_ack a;
    size_t n;
    memset(&a, 0, sizeof(a));
    a.packet_id = id;
    a.reason = reason;
    assert_int_equal(kf_mqtt_encode_ack(w->down + w->down_len, sizeof(w->down) - w->down_len,
                                        version, t, &a, &n),
                     0);
    w->down_len += n;
}

static void down_publish(struct wire *w, uint8_t version, const char *topic, const char *payload,
                         uint8_t qos, uint16_t id)
{
    struct kf_mqtt_publish p;
    size_t n;
    memset(&p, 0, sizeof(p));
    p.qos = qos;
    p.packet_id = id;
    p.topic.p = (const uint8_t *)topic;
    p.topic.len = (uint16_t)strlen(topic);
    p.payload = (const uint8_t *)payload;
    p.payload_len = strlen(payload);
    assert_int_equal(kf_mqtt_encode_publish(w->down + w->down_len, sizeof(w->down) - w->down_len,
                                            version, &p, &n),
                     0);
    w->down_len += n;
}

struct fixture {
    struct wire w;
    struct kf_mqttc c;
    uint8_t rx[4096], tx[4096], q[2048];
    const char *subs[1];
};

static void setup_client(struct fixture *f, uint8_t version, size_t q_cap)
{
    struct kf_mqttc_options o;
    struct kf_mqttc_transport io = {&f->w, w_send, w_recv};
    struct kf_mqttc_handlers h = {&f->w, connected_cb, message_cb, delivered_cb, refused_cb};
    memset(f, 0, sizeof(*f));
    io.ctx = &f->w;
    h.ctx = &f->w;
    memset(&o, 0, sizeof(o));
    o.version = version;
    o.client_id = "dev-1";
    o.keep_alive_s = 10;
    o.clean_start = 0;
    o.session_expiry_s = 600;
    f->subs[0] = "devices/dev-1/commands/#";
    o.subscriptions = f->subs;
    o.n_subscriptions = 1;
    o.sub_qos = 1;
    o.max_inflight = 4;
    assert_int_equal(
        kf_mqttc_init(&f->c, &o, &io, &h, f->rx, sizeof(f->rx), f->tx, sizeof(f->tx), f->q, q_cap),
        KF_MQTTC_OK);
}

/* CONNECT, CONNACK, SUBSCRIBE: a session up at time `now`. */
static void bring_up(struct fixture *f, uint8_t version, uint64_t now, int sp)
{
    struct kf_mqtt_packet pkt;
    uint8_t copy[8192];
    assert_int_equal(kf_mqttc_start(&f->c, now), KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_step(&f->c, now, NULL), KF_MQTTC_OK);
    assert_true(next_up(&f->w, version, &pkt, copy));
    assert_int_equal(pkt.type, KF_MQTT_CONNECT);
    assert_int_equal(pkt.u.connect.client_id.len, 5);
    assert_memory_equal(pkt.u.connect.client_id.p, "dev-1", 5);
    assert_int_equal(pkt.u.connect.clean_start, 0);
    assert_int_equal(pkt.u.connect.keep_alive, 10);
    down_connack(&f->w, version, 0, sp, 0);
    assert_int_equal(kf_mqttc_step(&f->c, now, NULL), KF_MQTTC_OK);
    assert_int_equal(f->c.state, KF_MQTTC_CONNECTED);
    assert_true(next_up(&f->w, version, &pkt, copy));
    assert_int_equal(pkt.type, KF_MQTT_SUBSCRIBE);
}

static void test_connect_and_publish_qos1(void **state)
{
    static struct fixture f;
    struct kf_mqtt_packet pkt;
    uint8_t copy[8192];
    uint16_t id;
    (void)state;
    setup_client(&f, KF_MQTT_V311, sizeof(f.q));
    bring_up(&f, KF_MQTT_V311, 1000, 0);
    assert_int_equal(f.w.connected, 1);
    assert_int_equal(kf_mqttc_publish(&f.c, "devices/dev-1/telemetry", "{\"t\":1}", 7, 1, 42),
                     KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_queued(&f.c), 1);
    assert_int_equal(kf_mqttc_step(&f.c, 1001, NULL), KF_MQTTC_OK);
    assert_true(next_up(&f.w, KF_MQTT_V311, &pkt, copy));
    assert_int_equal(pkt.type, KF_MQTT_PUBLISH);
    assert_int_equal(pkt.u.publish.qos, 1);
    assert_int_equal(pkt.u.publish.dup, 0);
    id = pkt.u.publish.packet_id;
    assert_int_equal(kf_mqttc_queued(&f.c), 1); /* held until PUBACK */
    down_ack(&f.w, KF_MQTT_V311, KF_MQTT_PUBACK, id, 0);
    assert_int_equal(kf_mqttc_step(&f.c, 1002, NULL), KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_queued(&f.c), 0);
    assert_int_equal(f.w.n_delivered, 1);
    assert_int_equal(f.w.delivered[0], 42);
}

static void test_resend_with_dup_after_reconnect(void **state)
{
    static struct fixture f;
    struct kf_mqtt_packet pkt;
    uint8_t copy[8192];
    uint16_t id;
    (void)state;
    setup_client(&f, KF_MQTT_V5, sizeof(f.q));
    bring_up(&f, KF_MQTT_V5, 0, 0);
    assert_int_equal(kf_mqttc_publish(&f.c, "devices/dev-1/events", "{}", 2, 1, 7), KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_step(&f.c, 1, NULL), KF_MQTTC_OK);
    assert_true(next_up(&f.w, KF_MQTT_V5, &pkt, copy));
    id = pkt.u.publish.packet_id;
    /* the connection dies before the PUBACK */
    f.w.broken = 1;
    assert_int_equal(kf_mqttc_step(&f.c, 2, NULL), KF_MQTTC_CLOSED);
    assert_int_equal(f.c.state, KF_MQTTC_IDLE);
    assert_int_equal(kf_mqttc_queued(&f.c), 1);
    /* a new connection (say, with a renewed certificate): the message goes again, DUP set */
    f.w.broken = 0;
    f.w.down_len = f.w.down_off = 0;
    bring_up(&f, KF_MQTT_V5, 3, 1);
    assert_int_equal(f.w.session_present, 1);
    assert_int_equal(kf_mqttc_step(&f.c, 4, NULL), KF_MQTTC_OK);
    assert_true(next_up(&f.w, KF_MQTT_V5, &pkt, copy));
    assert_int_equal(pkt.type, KF_MQTT_PUBLISH);
    assert_int_equal(pkt.u.publish.dup, 1);
    assert_int_equal(pkt.u.publish.packet_id, id);
    assert_int_equal(f.c.stats.resent, 1);
    down_ack(&f.w, KF_MQTT_V5, KF_MQTT_PUBACK, id, 0);
    assert_int_equal(kf_mqttc_step(&f.c, 5, NULL), KF_MQTTC_OK);
    assert_int_equal(f.w.n_delivered, 1);
    assert_int_equal(kf_mqttc_queued(&f.c), 0);
}

static void test_window_and_qos0(void **state)
{
    static struct fixture f;
    struct kf_mqtt_packet pkt;
    uint8_t copy[8192];
    int i, sent = 0;
    (void)state;
    setup_client(&f, KF_MQTT_V311, sizeof(f.q));
    bring_up(&f, KF_MQTT_V311, 0, 0);
    for (i = 0; i < 6; i++)
        assert_int_equal(kf_mqttc_publish(&f.c, "devices/dev-1/telemetry", "x", 1, 1, (uint32_t)i),
                         KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_publish(&f.c, "devices/dev-1/telemetry", "q0", 2, 0, 99),
                     KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_step(&f.c, 1, NULL), KF_MQTTC_OK);
    while (next_up(&f.w, KF_MQTT_V311, &pkt, copy))
        sent++;
    /* 4 QoS 1 in flight (max_inflight), and the QoS 0 one, which leaves the queue at once */
    assert_int_equal(sent, 5);
    assert_int_equal(kf_mqttc_queued(&f.c), 6);
    assert_int_equal(f.w.n_delivered, 1);
    assert_int_equal(f.w.delivered[0], 99);
}

static void test_queue_full_and_invalid(void **state)
{
    static struct fixture f;
    char payload[300];
    int i, ok = 0;
    (void)state;
    memset(payload, 'a', sizeof(payload));
    setup_client(&f, KF_MQTT_V311, 1024);
    for (i = 0; i < 10; i++)
        if (kf_mqttc_publish(&f.c, "devices/dev-1/telemetry", payload, sizeof(payload), 1, 0) ==
            KF_MQTTC_OK)
            ok++;
    assert_int_equal(ok, 2); /* 1024 / (20 + 23 + 300) */
    assert_int_equal(kf_mqttc_publish(&f.c, "devices/dev-1/telemetry", "x", 1, 1, 0), KF_MQTTC_OK);
    assert_int_equal(
        kf_mqttc_publish(&f.c, "devices/dev-1/telemetry", payload, sizeof(payload), 1, 0),
        KF_MQTTC_FULL);
    assert_int_equal(kf_mqttc_publish(&f.c, "devices/+/telemetry", "x", 1, 0, 0), KF_MQTTC_INVALID);
    assert_int_equal(kf_mqttc_publish(&f.c, "t", "x", 1, 2, 0), KF_MQTTC_INVALID);
    assert_int_equal(kf_mqttc_publish(&f.c, "t", payload, 5000, 0, 0), KF_MQTTC_TOO_BIG);
}

static void test_incoming_and_keepalive(void **state)
{
    static struct fixture f;
    struct kf_mqtt_packet pkt;
    uint8_t copy[8192];
    uint64_t next = 0;
    (void)state;
    setup_client(&f, KF_MQTT_V311, sizeof(f.q));
    bring_up(&f, KF_MQTT_V311, 0, 0);
    down_publish(&f.w, KF_MQTT_V311, "devices/dev-1/commands/reboot", "now", 1, 9);
    assert_int_equal(kf_mqttc_step(&f.c, 1, &next), KF_MQTTC_OK);
    assert_string_equal(f.w.message, "devices/dev-1/commands/reboot=now");
    assert_true(next_up(&f.w, KF_MQTT_V311, &pkt, copy));
    assert_int_equal(pkt.type, KF_MQTT_PUBACK);
    assert_int_equal(pkt.u.ack.packet_id, 9);
    /* quiet for the keep-alive: PINGREQ; no PINGRESP for another keep-alive: timeout */
    assert_true(next <= 10001);
    assert_int_equal(kf_mqttc_step(&f.c, 10001, NULL), KF_MQTTC_OK);
    assert_true(next_up(&f.w, KF_MQTT_V311, &pkt, copy));
    assert_int_equal(pkt.type, KF_MQTT_PINGREQ);
    assert_int_equal(kf_mqttc_step(&f.c, 15000, NULL), KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_step(&f.c, 20002, NULL), KF_MQTTC_TIMEOUT);
}

static void test_refused_and_bad_packets(void **state)
{
    static struct fixture f;
    uint8_t junk[] = {0x20, 0x02, 0x00}; /* a CONNACK cut short, then garbage */
    (void)state;
    setup_client(&f, KF_MQTT_V5, sizeof(f.q));
    assert_int_equal(kf_mqttc_start(&f.c, 0), KF_MQTTC_OK);
    down_connack(&f.w, KF_MQTT_V5, KF_MQTT_RC_NOT_AUTHORIZED, 0, 0);
    assert_int_equal(kf_mqttc_step(&f.c, 1, NULL), KF_MQTTC_REFUSED);
    assert_int_equal(f.c.reason, KF_MQTT_RC_NOT_AUTHORIZED);
    /* no CONNACK at all */
    f.w.down_len = f.w.down_off = 0;
    assert_int_equal(kf_mqttc_start(&f.c, 100), KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_step(&f.c, 200, NULL), KF_MQTTC_OK);
    assert_int_equal(kf_mqttc_step(&f.c, 10100, NULL), KF_MQTTC_TIMEOUT);
    /* a first packet that is not CONNACK */
    f.w.down_len = f.w.down_off = 0;
    assert_int_equal(kf_mqttc_start(&f.c, 0), KF_MQTTC_OK);
    down_publish(&f.w, KF_MQTT_V5, "a", "b", 0, 0);
    assert_int_equal(kf_mqttc_step(&f.c, 1, NULL), KF_MQTTC_PROTOCOL);
    /* malformed bytes */
    f.w.down_len = f.w.down_off = 0;
    assert_int_equal(kf_mqttc_start(&f.c, 0), KF_MQTTC_OK);
    junk[1] = 0x01;
    memcpy(f.w.down, junk, 3);
    f.w.down_len = 3;
    assert_int_not_equal(kf_mqttc_step(&f.c, 1, NULL), KF_MQTTC_OK);
}

static void test_receive_maximum_and_partial_writes(void **state)
{
    static struct fixture f;
    struct kf_mqtt_packet pkt;
    uint8_t copy[8192];
    int i, sent = 0;
    (void)state;
    setup_client(&f, KF_MQTT_V5, sizeof(f.q));
    f.w.send_limit = 3; /* the transport takes three bytes at a time */
    assert_int_equal(kf_mqttc_start(&f.c, 0), KF_MQTTC_OK);
    for (i = 0; i < 40; i++)
        kf_mqttc_step(&f.c, 0, NULL);
    assert_true(next_up(&f.w, KF_MQTT_V5, &pkt, copy));
    assert_int_equal(pkt.type, KF_MQTT_CONNECT);
    down_connack(&f.w, KF_MQTT_V5, 0, 0, 2); /* the broker takes two in flight */
    for (i = 0; i < 5; i++)
        assert_int_equal(kf_mqttc_publish(&f.c, "devices/dev-1/telemetry", "m", 1, 1, (uint32_t)i),
                         KF_MQTTC_OK);
    for (i = 0; i < 200; i++)
        assert_int_equal(kf_mqttc_step(&f.c, 1, NULL), KF_MQTTC_OK);
    while (next_up(&f.w, KF_MQTT_V5, &pkt, copy))
        if (pkt.type == KF_MQTT_PUBLISH) sent++;
    assert_int_equal(sent, 2);
}

static void test_backoff(void **state)
{
    struct kf_backoff b = {1000, 8000, 0};
    uint32_t w;
    int i;
    (void)state;
    w = kf_backoff_next(&b, 0, 0);
    assert_int_equal(w, 500);
    w = kf_backoff_next(&b, 0xffffffff, 0);
    assert_true(w >= 1000 && w <= 2000);
    for (i = 0; i < 10; i++)
        w = kf_backoff_next(&b, 12345, 0);
    assert_true(w >= 4000 && w <= 8000);                    /* capped */
    assert_int_equal(kf_backoff_next(&b, 0, 30000), 30000); /* Retry-After wins */
    kf_backoff_reset(&b);
    assert_true(kf_backoff_next(&b, 7, 0) <= 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_and_publish_qos1),
        cmocka_unit_test(test_resend_with_dup_after_reconnect),
        cmocka_unit_test(test_window_and_qos0),
        cmocka_unit_test(test_queue_full_and_invalid),
        cmocka_unit_test(test_incoming_and_keepalive),
        cmocka_unit_test(test_refused_and_bad_packets),
        cmocka_unit_test(test_receive_maximum_and_partial_writes),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
