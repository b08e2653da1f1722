/*
 * Fuzz target: libkeyfleet's MQTT client state machine with the input as everything the broker
 * sends (after the client's CONNECT), arriving in pieces whose sizes the input also chooses.
 * Whatever the broker says, the client must not crash, read or write outside its buffers, or
 * lose count of its queue; queued messages stay until acknowledged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyfleet/mqtt_client.h"

struct pipe {
    const uint8_t *in;
    size_t len, off, chunk;
    size_t sent;
};

static long w_send(void *ctx, const uint8_t *buf, size_t len)
{
    struct pipe *p = ctx;
    p->sent += len;
    return (long)(len > 7 ? len - len / 3 : len); /* partial writes too */
}

static long w_recv(void *ctx, uint8_t *buf, size_t cap)
{
    struct pipe *p = ctx;
    size_t n = p->len - p->off;
    if (!n) return 0;
    if (n > p->chunk) n = p->chunk;
    if (n > cap) n = cap;
    memcpy(buf, p->in + p->off, n);
    p->off += n;
    return (long)n;
}

static volatile uint8_t sink;

/* Touches every byte it is given: ASan catches a pointer outside the receive buffer. */
static void message_cb(void *ctx, const char *topic, size_t tl, const uint8_t *pl, size_t n)
{
    size_t i;
    for (i = 0; i < tl; i++)
        sink ^= (uint8_t)topic[i];
    for (i = 0; i < n; i++)
        sink ^= pl[i];
    (void)ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t rx[2048], tx[1024], q[2048];
    static const char *const subs[] = {"devices/d/commands/#", "devices/d/updates/#"};
    struct kf_mqttc c;
    struct kf_mqttc_options o;
    struct pipe p;
    struct kf_mqttc_transport io = {&p, w_send, w_recv};
    struct kf_mqttc_handlers h = {&p, NULL, message_cb, NULL, NULL};
    uint64_t now = 1000;
    int i;

    if (size < 2) return 0;
    memset(&o, 0, sizeof(o));
    o.version = (data[0] & 1) ? 5 : 4;
    o.client_id = "d";
    o.keep_alive_s = 30;
    o.subscriptions = subs;
    o.n_subscriptions = 2;
    o.sub_qos = 1;
    o.max_inflight = 3;
    memset(&p, 0, sizeof(p));
    p.in = data + 2;
    p.len = size - 2;
    p.chunk = (size_t)(data[1] % 64) + 1;
    if (kf_mqttc_init(&c, &o, &io, &h, rx, sizeof(rx), tx, sizeof(tx), q, sizeof(q)))
        __builtin_trap();
    for (i = 0; i < 5; i++)
        kf_mqttc_publish(&c, "devices/d/telemetry", "{\"n\":1}", 7, (uint8_t)(i & 1), (uint32_t)i);
    if (kf_mqttc_queued(&c) != 5) __builtin_trap();
    kf_mqttc_start(&c, now);
    for (i = 0; i < 4096 && p.off < p.len; i++) {
        size_t before = kf_mqttc_queued(&c);
        enum kf_mqttc_status st = kf_mqttc_step(&c, now, NULL);
        now += 7;
        if (kf_mqttc_queued(&c) > before) __builtin_trap(); /* the broker cannot add to it */
        if (kf_mqttc_queue_free(&c) > sizeof(q)) __builtin_trap();
        if (st != KF_MQTTC_OK) {
            /* a new connection: everything unacknowledged is still there */
            if (kf_mqttc_queued(&c) > 5) __builtin_trap();
            kf_mqttc_start(&c, now);
        }
    }
    kf_mqttc_disconnect(&c, now);
    return 0;
}
