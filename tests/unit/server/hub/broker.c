/* broker: sessions, routing, retained messages, queues and the in-flight window. */
#include "testutil.h"

#include <string.h>

#include "server/hub/broker.h"

struct box {
    struct kf_broker_inbox inbox;
    int woken;
};

static void wake_cb(void *arg)
{
    ((struct box *)arg)->woken++;
}

static struct kf_broker *new_broker(unsigned max_queued)
{
    struct kf_broker_conf c = {.max_queued = max_queued,
                               .max_retained = 100,
                               .max_retained_bytes = 1 << 20,
                               .max_retained_per_id = 100,
                               .max_retained_bytes_per_id = 1 << 20,
                               .max_subs = 8,
                               .max_inflight_in = 4};
    struct kf_broker *b;
    KF_OK_OR_FAIL(kf_broker_new(&c, &b));
    return b;
}

static struct kf_msg *msg(const char *topic, const char *payload, uint8_t qos, int retain,
                          const char *origin)
{
    struct kf_mqtt_publish p;
    struct kf_mqtt_str t = {(const uint8_t *)topic, (uint16_t)strlen(topic)};
    memset(&p, 0, sizeof(p));
    p.qos = qos;
    p.retain = retain;
    p.topic = t;
    p.payload = (const uint8_t *)payload;
    p.payload_len = strlen(payload);
    return kf_msg_new(&p, t, origin, 0);
}

static size_t publish(struct kf_broker *b, const char *topic, const char *payload, uint8_t qos,
                      int retain)
{
    struct kf_msg *m = msg(topic, payload, qos, retain, "pub");
    size_t n;
    assert_non_null(m);
    n = kf_broker_publish(b, m, NULL, NULL);
    kf_msg_release(m);
    return n;
}

static void subscribe(struct kf_broker *b, struct kf_broker_peer *p, const char *f, uint8_t qos)
{
    struct kf_broker_sub_opts o;
    memset(&o, 0, sizeof(o));
    o.qos = qos;
    KF_OK_OR_FAIL(kf_broker_subscribe(b, p, (const uint8_t *)f, strlen(f), &o));
}

static void subscribe_id(struct kf_broker *b, struct kf_broker_peer *p, const char *f, uint8_t qos,
                         uint32_t sub_id)
{
    struct kf_broker_sub_opts o;
    memset(&o, 0, sizeof(o));
    o.qos = qos;
    o.sub_id = sub_id;
    KF_OK_OR_FAIL(kf_broker_subscribe(b, p, (const uint8_t *)f, strlen(f), &o));
}

static void attach(struct kf_broker *b, struct kf_broker_peer *p, struct box *box, const char *id,
                   int clean, uint32_t expiry, int *present)
{
    int dummy;
    memset(p, 0, sizeof(*p));
    p->inbox = &box->inbox;
    p->receive_max = 2;
    KF_OK_OR_FAIL(kf_broker_attach(b, p, id, clean, expiry, present ? present : &dummy));
}

/* Pulls everything sendable; returns the count and releases the messages. */
static size_t drain(struct kf_broker *b, struct kf_broker_peer *p, struct kf_broker_out *out,
                    size_t cap)
{
    int more;
    size_t n = kf_broker_pull(b, p, 0, out, cap, &more);
    for (size_t i = 0; i < n; i++)
        if (out[i].msg) kf_msg_release(out[i].msg);
    return n;
}

static void box_init(struct box *x)
{
    memset(x, 0, sizeof(*x));
    x->inbox.wake = wake_cb;
    x->inbox.wake_arg = x;
}

static void test_routing(void **state)
{
    struct kf_broker *b = new_broker(100);
    struct kf_broker_peer dev, svc, *taken[4];
    struct kf_broker_out out[8];
    struct box box;
    int more;

    box_init(&box);
    attach(b, &dev, &box, "d1", 1, 0, NULL);
    attach(b, &svc, &box, "svc", 1, 0, NULL);
    subscribe(b, &dev, "devices/d1/commands/#", 1);
    subscribe(b, &svc, "devices/+/telemetry/#", 1);
    subscribe(b, &svc, "devices/d1/telemetry/temp", 0); /* overlapping */
    assert_int_equal(publish(b, "devices/d1/telemetry/temp", "21", 1, 0), 1);
    assert_int_equal(publish(b, "devices/d1/commands/reboot", "now", 0, 0), 1);
    assert_int_equal(publish(b, "devices/d2/commands/reboot", "x", 0, 0), 0);
    assert_int_equal(publish(b, "elsewhere", "x", 0, 0), 0);
    assert_int_equal(box.woken, 1); /* once, however many peers wait */
    assert_int_equal(kf_broker_take(b, &box.inbox, taken, 4), 2);
    /* One copy for overlapping subscriptions, at the higher QoS. */
    assert_int_equal(kf_broker_pull(b, &svc, 0, out, 8, &more), 1);
    assert_int_equal(out[0].qos, 1);
    assert_int_not_equal(out[0].packet_id, 0);
    assert_memory_equal(out[0].msg->payload, "21", 2);
    kf_msg_release(out[0].msg);
    assert_int_equal(kf_broker_pull(b, &dev, 0, out, 8, &more), 1);
    assert_int_equal(out[0].qos, 0);
    kf_msg_release(out[0].msg);
    assert_int_equal(kf_broker_unsubscribe(b, &dev, (const uint8_t *)"devices/d1/commands/#", 21),
                     1);
    assert_int_equal(kf_broker_unsubscribe(b, &dev, (const uint8_t *)"devices/d1/commands/#", 21),
                     0);
    assert_int_equal(publish(b, "devices/d1/commands/reboot", "now", 0, 0), 0);
    kf_broker_detach(b, &dev, 0);
    kf_broker_detach(b, &svc, 0);
    kf_broker_free(b);
}

/* Overlapping subscriptions with identifiers: a copy per identifier, each carrying its own. */
static void test_subscription_ids(void **state)
{
    struct kf_broker *b = new_broker(100);
    struct kf_broker_peer svc;
    struct kf_broker_out out[8];
    struct box box;
    int more;
    uint32_t seen = 0;

    box_init(&box);
    attach(b, &svc, &box, "svc", 1, 0, NULL);
    subscribe_id(b, &svc, "devices/+/telemetry/#", 0, 7);
    subscribe_id(b, &svc, "devices/d1/telemetry/temp", 1, 9);
    subscribe(b, &svc, "devices/d2/#", 0);                 /* no identifier: rides with a copy */
    subscribe_id(b, &svc, "devices/d1/telemetry/#", 0, 9); /* the same identifier: one copy */
    assert_int_equal(publish(b, "devices/d1/telemetry/temp", "21", 1, 0), 2);
    assert_int_equal(kf_broker_pull(b, &svc, 0, out, 8, &more), 2);
    for (int i = 0; i < 2; i++) {
        seen |= 1u << out[i].sub_id;
        /* each copy at its own subscriptions' QoS */
        assert_int_equal(out[i].qos, out[i].sub_id == 9 ? 1 : 0);
        kf_msg_release(out[i].msg);
    }
    assert_int_equal(seen, (1u << 7) | (1u << 9));
    /* One identifier matched (and one without): one copy, carrying it. */
    assert_int_equal(publish(b, "devices/d2/telemetry/x", "1", 1, 0), 1);
    assert_int_equal(kf_broker_pull(b, &svc, 0, out, 8, &more), 1);
    assert_int_equal(out[0].sub_id, 7);
    kf_msg_release(out[0].msg);
    kf_broker_detach(b, &svc, 0);
    kf_broker_free(b);
}

/* A message as bytes for the store, and back; anything else is refused, never half read. */
static void test_msg_encoding(void **state)
{
    struct kf_msg *m = msg("devices/d1/commands/fw", "v2", 2, 1, "s:ops"), *back;
    struct kf_buf b;
    assert_non_null(m);
    m->expires_ms = 1234567890123;
    kf_buf_init(&b, 4096);
    KF_OK_OR_FAIL(kf_msg_encode(m, &b));
    back = kf_msg_decode(b.data, b.len);
    assert_non_null(back);
    assert_int_equal(back->qos, 2);
    assert_int_equal(back->retain, 1);
    assert_int_equal(back->expires_ms, 1234567890123);
    assert_int_equal(back->topic.len, m->topic.len);
    assert_memory_equal(back->topic.p, m->topic.p, m->topic.len);
    assert_int_equal(back->payload_len, 2);
    assert_memory_equal(back->payload, "v2", 2);
    assert_string_equal(back->origin, "s:ops");
    assert_null(back->content_type.p);
    kf_msg_release(back);
    /* every truncation, and a byte too many, is refused */
    for (size_t n = 0; n < b.len; n++) {
        back = kf_msg_decode(b.data, n);
        assert_null(back);
        kf_err_clear();
    }
    KF_OK_OR_FAIL(kf_buf_append(&b, "x", 1));
    assert_null(kf_msg_decode(b.data, b.len));
    KF_EXPECT_MSG("does not read back");
    kf_buf_free(&b);
    kf_msg_release(m);
}

static void test_retained(void **state)
{
    struct kf_broker *b = new_broker(100);
    struct kf_broker_peer p;
    struct kf_broker_out out[8];
    struct kf_broker_stats st;
    struct box box;
    int more;

    box_init(&box);
    publish(b, "devices/d1/commands/config", "v1", 1, 1);
    publish(b, "devices/d1/commands/config", "v2", 1, 1); /* replaces */
    publish(b, "devices/d2/commands/config", "other", 1, 1);
    kf_broker_stats(b, &st);
    assert_int_equal(st.retained, 2);
    attach(b, &p, &box, "d1", 1, 0, NULL);
    subscribe(b, &p, "devices/d1/commands/#", 1);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 1);
    assert_int_equal(out[0].retain, 1);
    assert_memory_equal(out[0].msg->payload, "v2", 2);
    kf_msg_release(out[0].msg);
    /* to an established subscription, a retained message goes with RETAIN 0 [MQTT-3.3.1-9] */
    publish(b, "devices/d1/commands/config", "v3", 1, 1);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 1);
    assert_int_equal(out[0].retain, 0);
    assert_memory_equal(out[0].msg->payload, "v3", 2);
    kf_msg_release(out[0].msg);
    publish(b, "devices/d1/commands/config", "", 0, 1); /* deletes */
    kf_broker_stats(b, &st);
    assert_int_equal(st.retained, 1);
    kf_broker_detach(b, &p, 0);
    kf_broker_free(b);
}

static void test_offline_session(void **state)
{
    struct kf_broker *b = new_broker(3);
    struct kf_broker_peer p;
    struct kf_broker_out out[8];
    struct box box;
    size_t dropped = 0;
    int present = 0, more;
    struct kf_msg *m;

    box_init(&box);
    attach(b, &p, &box, "d1", 1, 3600, &present);
    assert_false(present);
    subscribe(b, &p, "devices/d1/commands/#", 2);
    kf_broker_detach(b, &p, 1000);
    publish(b, "devices/d1/commands/a", "1", 1, 0);
    publish(b, "devices/d1/commands/b", "2", 0, 0); /* QoS 0: not kept offline */
    publish(b, "devices/d1/commands/c", "3", 2, 0);
    publish(b, "devices/d1/commands/d", "4", 1, 0);
    m = msg("devices/d1/commands/e", "5", 1, 0, "x");
    kf_broker_publish(b, m, &dropped, NULL); /* the queue holds 3 */
    kf_msg_release(m);
    assert_int_equal(dropped, 1);
    attach(b, &p, &box, "d1", 0, 3600, &present);
    assert_true(present);
    /* The window is 2: two go out, the third waits for an ack. */
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 2);
    assert_memory_equal(out[0].msg->payload, "1", 1);
    assert_memory_equal(out[1].msg->payload, "3", 1);
    assert_int_equal(out[1].qos, 2);
    assert_false(more);
    kf_msg_release(out[0].msg);
    kf_msg_release(out[1].msg);
    assert_true(kf_broker_ack(b, &p, KF_MQTT_PUBACK, out[0].packet_id));
    assert_false(kf_broker_ack(b, &p, KF_MQTT_PUBACK, out[0].packet_id));
    assert_false(kf_broker_ack(b, &p, KF_MQTT_PUBACK, out[1].packet_id)); /* QoS 2 wants PUBREC */
    assert_true(kf_broker_ack(b, &p, KF_MQTT_PUBREC, out[1].packet_id));
    /* Reconnect before PUBCOMP: the PUBREL is sent again, not the message. */
    kf_broker_detach(b, &p, 2000);
    attach(b, &p, &box, "d1", 0, 3600, &present);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 2);
    assert_null(out[0].msg);
    assert_int_not_equal(out[0].packet_id, 0);
    assert_memory_equal(out[1].msg->payload, "4", 1);
    kf_msg_release(out[1].msg);
    assert_true(kf_broker_ack(b, &p, KF_MQTT_PUBCOMP, out[0].packet_id));
    /* Resumed again: the unacknowledged QoS 1 goes out again, marked dup. */
    kf_broker_detach(b, &p, 3000);
    attach(b, &p, &box, "d1", 0, 3600, &present);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 1);
    assert_true(out[0].dup);
    assert_memory_equal(out[0].msg->payload, "4", 1);
    kf_msg_release(out[0].msg);
    /* Clean start forgets it all. */
    kf_broker_detach(b, &p, 4000);
    attach(b, &p, &box, "d1", 1, 0, &present);
    assert_false(present);
    assert_int_equal(drain(b, &p, out, 8), 0);
    kf_broker_detach(b, &p, 5000);
    kf_broker_free(b);
}

static void test_takeover_expiry_qos2(void **state)
{
    struct kf_broker *b = new_broker(10);
    struct kf_broker_peer a, c, *taken[4];
    struct kf_broker_stats st;
    struct box box;

    box_init(&box);
    attach(b, &a, &box, "d1", 1, 10, NULL);
    attach(b, &c, &box, "d1", 0, 10, NULL);
    assert_true(a.kicked);
    assert_int_equal(a.kick_reason, KF_MQTT_RC_SESSION_TAKEN_OVER);
    assert_null(a.session);
    assert_int_equal(kf_broker_take(b, &box.inbox, taken, 4), 1);
    assert_ptr_equal(taken[0], &a);
    kf_broker_detach(b, &a, 0); /* the old connection going changes nothing */
    kf_broker_stats(b, &st);
    assert_int_equal(st.sessions_online, 1);
    /* Inbound QoS 2: a duplicate is not routed twice; the bound holds. */
    assert_int_equal(kf_broker_qos2_received(b, &c, 7), 1);
    assert_int_equal(kf_broker_qos2_received(b, &c, 7), 0);
    assert_true(kf_broker_qos2_released(b, &c, 7));
    assert_false(kf_broker_qos2_released(b, &c, 7));
    for (uint16_t i = 1; i <= 4; i++)
        assert_int_equal(kf_broker_qos2_received(b, &c, i), 1);
    assert_int_equal(kf_broker_qos2_received(b, &c, 5), -1);
    kf_broker_detach(b, &c, 1000);
    assert_int_equal(kf_broker_sweep(b, 5000), 0);
    assert_int_equal(kf_broker_sweep(b, 11000), 1);
    kf_broker_stats(b, &st);
    assert_int_equal(st.sessions, 0);
    kf_broker_free(b);
}

static void test_no_local(void **state)
{
    struct kf_broker *b = new_broker(10);
    struct kf_broker_peer p;
    struct kf_broker_sub_opts o;
    struct kf_msg *m;
    struct box box;

    box_init(&box);
    attach(b, &p, &box, "svc", 1, 0, NULL);
    memset(&o, 0, sizeof(o));
    o.no_local = 1;
    KF_OK_OR_FAIL(kf_broker_subscribe(b, &p, (const uint8_t *)"devices/+/events", 16, &o));
    m = msg("devices/x/events", "{}", 0, 0, "svc");
    assert_int_equal(kf_broker_publish(b, m, NULL, NULL), 0);
    kf_msg_release(m);
    assert_int_equal(publish(b, "devices/x/events", "{}", 0, 0), 1);
    kf_broker_detach(b, &p, 0);
    kf_broker_free(b);
}

static void test_will_delay(void **state)
{
    struct kf_broker *b = new_broker(10);
    struct kf_broker_peer dev, svc;
    struct kf_broker_out out[4];
    struct kf_msg *will = msg("devices/d1/telemetry/status", "gone", 1, 0, "d1");
    struct box box;
    int present;

    box_init(&box);
    attach(b, &svc, &box, "svc", 1, 0, NULL);
    subscribe(b, &svc, "devices/+/telemetry/#", 1);
    /* Delayed, then due. */
    attach(b, &dev, &box, "d1", 1, 60, NULL);
    kf_broker_detach_will(b, &dev, will, 2, 1000);
    kf_broker_sweep(b, 2500);
    assert_int_equal(drain(b, &svc, out, 4), 0);
    kf_broker_sweep(b, 3000);
    assert_int_equal(drain(b, &svc, out, 4), 1);
    /* Delayed, and the client is back in time: never sent. */
    attach(b, &dev, &box, "d1", 0, 60, &present);
    kf_broker_detach_will(b, &dev, will, 2, 4000);
    attach(b, &dev, &box, "d1", 0, 60, &present);
    assert_true(present);
    kf_broker_sweep(b, 10000);
    assert_int_equal(drain(b, &svc, out, 4), 0);
    /* Taken over while connected: a delayed will is not sent (the session has a client). */
    {
        struct kf_broker_peer again;
        attach(b, &again, &box, "d1", 0, 60, &present);
        assert_true(dev.kicked);
        kf_broker_detach_will(b, &dev, will, 2, 5000);
        kf_broker_sweep(b, 20000);
        assert_int_equal(drain(b, &svc, out, 4), 0);
        kf_broker_detach(b, &again, 20000);
        attach(b, &dev, &box, "d1", 0, 60, &present);
    }
    /* A session that ends with its connection sends its will at once. */
    kf_broker_detach(b, &dev, 10000);
    attach(b, &dev, &box, "d2", 1, 0, NULL);
    kf_broker_detach_will(b, &dev, will, 30, 11000);
    assert_int_equal(drain(b, &svc, out, 4), 1);
    kf_msg_release(will);
    kf_broker_detach(b, &svc, 0);
    kf_broker_free(b);
}

/* Each publisher has a share of the retained store; beyond it, and when all is full, refused. */
static void test_retained_quota(void **state)
{
    struct kf_broker_conf c = {.max_queued = 10,
                               .max_retained = 5,
                               .max_retained_bytes = 1 << 20,
                               .max_retained_per_id = 2,
                               .max_retained_bytes_per_id = 1 << 20,
                               .max_subs = 8,
                               .max_inflight_in = 4};
    struct kf_broker *b;
    struct kf_broker_peer p;
    struct box box;
    enum kf_retain_refusal why;
    struct kf_broker_stats st;
    int present;
    (void)state;
#define RETAIN(origin, topic, payload, want)                   \
    do {                                                       \
        struct kf_msg *m_ = msg(topic, payload, 0, 1, origin); \
        kf_broker_publish(b, m_, NULL, &why);                  \
        kf_msg_release(m_);                                    \
        assert_int_equal(why, want);                           \
    } while (0)
    KF_OK_OR_FAIL(kf_broker_new(&c, &b));
    memset(&box, 0, sizeof(box));
    box.inbox.wake = wake_cb;
    box.inbox.wake_arg = &box;
    attach(b, &p, &box, "d:sub", 1, 0, &present);
    subscribe(b, &p, "#", 0);
    RETAIN("d:a", "devices/a/1", "x", KF_RETAIN_OK);
    RETAIN("d:a", "devices/a/2", "x", KF_RETAIN_OK);
    RETAIN("d:a", "devices/a/3", "x", KF_RETAIN_QUOTA);
    RETAIN("d:a", "devices/a/2", "replaced", KF_RETAIN_OK); /* its own: no more than before */
    RETAIN("d:b", "devices/b/1", "x", KF_RETAIN_OK);        /* another's share is its own */
    kf_broker_stats(b, &st);
    assert_int_equal(st.retained, 3);
    assert_int_equal(st.routed, 4);                 /* the refused one was not routed either */
    RETAIN("d:a", "devices/a/1", "", KF_RETAIN_OK); /* deleting frees its share */
    RETAIN("d:a", "devices/a/3", "x", KF_RETAIN_OK);
    RETAIN("d:b", "devices/b/2", "x", KF_RETAIN_OK);
    RETAIN("d:c", "devices/c/1", "x", KF_RETAIN_OK); /* 5 of 5 */
    RETAIN("d:c", "devices/c/2", "x", KF_RETAIN_FULL);
    kf_broker_detach(b, &p, 0);
    kf_broker_free(b);
#undef RETAIN
}

/* ---- persistence: the ops the broker says, applied to a table as the store would ---- */

#define ROWS_MAX 64

struct row {
    int used;
    char session[40];
    int kind;
    int64_t key;
    uint8_t value[512];
    size_t len;
};

struct fake_store {
    struct row rows[ROWS_MAX];
    int commits, behind, puts;
    uint64_t last_seq;
    int refuse; /* COMMIT answers "not kept" */
};

static struct row *row_find(struct fake_store *f, const char *session, int kind, int64_t key)
{
    for (int i = 0; i < ROWS_MAX; i++)
        if (f->rows[i].used && !strcmp(f->rows[i].session, session) && f->rows[i].kind == kind &&
            f->rows[i].key == key)
            return &f->rows[i];
    return NULL;
}

static int count_rows(struct fake_store *f, int kind)
{
    int n = 0;
    for (int i = 0; i < ROWS_MAX; i++)
        n += f->rows[i].used && f->rows[i].kind == kind;
    return n;
}

static int fake_change(void *arg, const struct kf_broker_op *op)
{
    struct fake_store *f = arg;
    struct row *r;
    switch (op->type) {
    case KF_BROKER_PUT:
        f->puts++;
        r = row_find(f, op->session, op->kind, op->key);
        for (int i = 0; !r && i < ROWS_MAX; i++)
            if (!f->rows[i].used) r = &f->rows[i];
        assert_non_null(r);
        assert_true(op->len <= sizeof(r->value));
        r->used = 1;
        snprintf(r->session, sizeof(r->session), "%s", op->session);
        r->kind = op->kind;
        r->key = op->key;
        if (op->len) memcpy(r->value, op->value, op->len);
        r->len = op->len;
        break;
    case KF_BROKER_DELETE:
        f->behind += op->behind;
        r = row_find(f, op->session, op->kind, op->key);
        if (r) r->used = 0;
        break;
    case KF_BROKER_DROP:
        for (int i = 0; i < ROWS_MAX; i++)
            if (f->rows[i].used && !strcmp(f->rows[i].session, op->session)) f->rows[i].used = 0;
        break;
    case KF_BROKER_COMMIT:
        f->commits++;
        if (op->seq) f->last_seq = op->seq;
        return f->refuse;
    default: break;
    }
    return 0;
}

/* A new broker with the rows of `f` read back, sessions first (the store's order). */
static struct kf_broker *restored(struct fake_store *f)
{
    struct kf_broker *b = new_broker(8);
    for (int kind = 0; kind <= 2; kind++)
        for (int i = 0; i < ROWS_MAX; i++)
            if (f->rows[i].used && f->rows[i].kind == kind)
                KF_OK_OR_FAIL(kf_broker_restore(b, f->rows[i].session, kind, f->rows[i].key,
                                                f->rows[i].value, f->rows[i].len, 5000));
    return b;
}

static void test_persistence(void **state)
{
    struct kf_broker *b = new_broker(8), *b2;
    struct fake_store f;
    struct kf_broker_peer p, q;
    struct kf_broker_out out[8];
    struct box box;
    int present = 0, more;
    uint16_t id1, id2;

    memset(&f, 0, sizeof(f));
    box_init(&box);
    kf_broker_persist(b, fake_change, &f);
    /* A session that ends with its connection is never stored. */
    attach(b, &q, &box, "s:clean", 1, 0, &present);
    subscribe(b, &q, "devices/+/telemetry/#", 1);
    assert_int_equal(f.puts, 0);
    /* One that outlives it is, with its subscriptions. */
    attach(b, &p, &box, "s:dash", 1, 3600, &present);
    assert_non_null(row_find(&f, "s:dash", KF_BROKER_ROW_SESSION, 0));
    subscribe(b, &p, "devices/+/telemetry/#", 2);
    f.commits = 0;
    /* A QoS 1 message: a row, in a COMMIT that names its sequence number; held until settled. */
    box.woken = 0;
    assert_int_equal(publish(b, "devices/d1/telemetry", "one", 1, 0), 2);
    assert_int_equal(f.commits, 1);
    assert_int_equal(count_rows(&f, KF_BROKER_ROW_MSG), 1);
    assert_true(f.last_seq > 0);
    assert_int_equal(kf_broker_take(b, &box.inbox, (struct kf_broker_peer *[8]){0}, 8), 2);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 0);
    assert_false(more);
    /* the clean session's copy is not held */
    assert_int_equal(kf_broker_pull(b, &q, 0, out, 8, &more), 1);
    kf_broker_ack(b, &q, KF_MQTT_PUBACK, out[0].packet_id);
    kf_msg_release(out[0].msg);
    box.woken = 0;
    kf_broker_settled(b, f.last_seq);
    assert_true(box.woken > 0);
    assert_int_equal(kf_broker_take(b, &box.inbox, (struct kf_broker_peer *[8]){0}, 8), 1);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 1);
    assert_memory_equal(out[0].msg->payload, "one", 3);
    id1 = out[0].packet_id;
    assert_true(id1 != 0);
    kf_msg_release(out[0].msg);
    /* A QoS 2 one, PUBREC'd: its row says released, written before the PUBREL. */
    assert_int_equal(publish(b, "devices/d1/telemetry", "two", 2, 0), 2);
    kf_broker_settled(b, f.last_seq);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 1);
    id2 = out[0].packet_id;
    kf_msg_release(out[0].msg);
    assert_true(kf_broker_ack(b, &p, KF_MQTT_PUBREC, id2));
    /* An inbound QoS 2 id awaiting PUBREL. */
    assert_int_equal(kf_broker_qos2_received(b, &p, 77), 1);
    assert_non_null(row_find(&f, "s:dash", KF_BROKER_ROW_QOS2, 77));
    /* A QoS 2 PUBLISH: its id and its message in one commit (a crash keeps both or neither). */
    {
        struct kf_msg *m = msg("devices/d3/telemetry", "q2", 2, 0, "d3");
        int before = f.commits, rows = count_rows(&f, KF_BROKER_ROW_MSG);
        assert_int_equal(kf_broker_qos2_check(b, &q, 78), 1);
        assert_int_equal(f.commits, before); /* checking records nothing */
        kf_broker_publish_qos2(b, &p, 78, m, NULL, NULL);
        kf_msg_release(m);
        assert_int_equal(f.commits, before + 1);
        assert_non_null(row_find(&f, "s:dash", KF_BROKER_ROW_QOS2, 78));
        assert_int_equal(count_rows(&f, KF_BROKER_ROW_MSG), rows + 1);
        assert_int_equal(kf_broker_qos2_check(b, &p, 78), 0);
        assert_true(kf_broker_qos2_released(b, &p, 78));
        kf_broker_settled(b, f.last_seq);
    }
    /* Three filters of one SUBSCRIBE: one commit. */
    {
        struct kf_broker_filter fl[3];
        int before = f.commits;
        memset(fl, 0, sizeof(fl));
        fl[0].filter = (const uint8_t *)"a/#";
        fl[1].filter = (const uint8_t *)"b/#";
        fl[2].filter = (const uint8_t *)"c/#";
        for (int i = 0; i < 3; i++) {
            fl[i].len = 3;
            fl[i].opts.qos = 1;
        }
        kf_broker_subscribe_many(b, &p, fl, 3);
        assert_int_equal(f.commits, before + 1);
        for (int i = 0; i < 3; i++)
            assert_int_equal(fl[i].result, KF_OK);
        kf_broker_unsubscribe_many(b, &p, fl, 3);
        assert_int_equal(f.commits, before + 2);
        for (int i = 0; i < 3; i++)
            assert_int_equal(fl[i].result, 1);
    }
    /* The crash: a new broker from the rows. */
    b2 = restored(&f);
    kf_broker_persist(b2, fake_change, &f); /* as the hub does: before any client */
    attach(b2, &p, &box, "s:dash", 0, 3600, &present);
    assert_true(present);
    /* The released one goes as a PUBREL, the unacknowledged one again, dup, same id. */
    assert_int_equal(kf_broker_pull(b2, &p, 0, out, 8, &more), 2);
    assert_null(out[0].msg);
    assert_int_equal(out[0].packet_id, id2);
    assert_non_null(out[1].msg);
    assert_memory_equal(out[1].msg->payload, "one", 3);
    assert_int_equal(out[1].packet_id, id1);
    assert_true(out[1].dup);
    kf_msg_release(out[1].msg);
    assert_int_equal(kf_broker_qos2_received(b2, &p, 77), 0); /* known: a duplicate */
    /* The subscription came back: a new message is routed to the session. */
    f.behind = 0;
    assert_int_equal(publish(b2, "devices/d2/telemetry", "four", 1, 0), 1);
    /* Acknowledgements delete rows, behind: nobody waits for them. */
    assert_true(kf_broker_ack(b2, &p, KF_MQTT_PUBACK, id1));
    assert_true(kf_broker_ack(b2, &p, KF_MQTT_PUBCOMP, id2));
    assert_int_equal(f.behind, 2);
    assert_true(kf_broker_qos2_released(b2, &p, 77));
    assert_null(row_find(&f, "s:dash", KF_BROKER_ROW_QOS2, 77));
    /* A clean start drops the stored session. */
    kf_broker_detach(b2, &p, 6000);
    attach(b2, &p, &box, "s:dash", 1, 0, &present);
    assert_int_equal(count_rows(&f, KF_BROKER_ROW_SESSION), 0);
    assert_int_equal(count_rows(&f, KF_BROKER_ROW_MSG), 0);
    kf_broker_detach(b2, &p, 7000);
    kf_broker_free(b2);
    kf_broker_detach(b, &p, 0);
    kf_broker_detach(b, &q, 0);
    kf_broker_free(b);
}

static void test_persistence_refused(void **state)
{
    struct kf_broker *b = new_broker(8);
    struct fake_store f;
    struct kf_broker_peer p;
    struct kf_broker_out out[8];
    struct box box;
    int present = 0, more;
    static const uint8_t junk[] = {9, 9, 9};

    memset(&f, 0, sizeof(f));
    box_init(&box);
    kf_broker_persist(b, fake_change, &f);
    attach(b, &p, &box, "s:dash", 1, 3600, &present);
    subscribe(b, &p, "devices/#", 1);
    /* The store could not take it: the message goes anyway (in memory only). */
    f.refuse = 1;
    publish(b, "devices/d1/telemetry", "one", 1, 0);
    assert_int_equal(kf_broker_pull(b, &p, 0, out, 8, &more), 1);
    kf_msg_release(out[0].msg);
    kf_broker_detach(b, &p, 0);
    kf_broker_free(b);
    /* Rows that do not read back are refused, and change nothing. */
    b = new_broker(8);
    KF_EXPECT_ERR(KF_E_MALFORMED,
                  kf_broker_restore(b, "s:x", KF_BROKER_ROW_SESSION, 0, junk, 3, 0));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_broker_restore(b, "s:x", KF_BROKER_ROW_MSG, 1, junk, 3, 0));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_broker_restore(b, "s:x", 7, 1, junk, 3, 0));
    {
        /* a session row, then a message row with a sequence number it could never have given */
        struct fake_store f2;
        struct kf_broker *b1 = new_broker(8);
        struct kf_broker_peer p1;
        struct box box1;
        int present1;
        memset(&f2, 0, sizeof(f2));
        box_init(&box1);
        kf_broker_persist(b1, fake_change, &f2);
        attach(b1, &p1, &box1, "s:y", 1, 3600, &present1);
        kf_broker_detach(b1, &p1, 0);
        kf_broker_free(b1);
        KF_OK_OR_FAIL(kf_broker_restore(b, "s:y", KF_BROKER_ROW_SESSION, 0, f2.rows[0].value,
                                        f2.rows[0].len, 0));
        KF_EXPECT_ERR(KF_E_MALFORMED,
                      kf_broker_restore(b, "s:y", KF_BROKER_ROW_MSG, -5, junk, 3, 0));
        KF_EXPECT_ERR(KF_E_MALFORMED,
                      kf_broker_restore(b, "s:y", KF_BROKER_ROW_MSG, 3, junk, 3, 0));
    }
    {
        struct kf_broker_stats st;
        kf_broker_stats(b, &st);
        assert_int_equal(st.sessions, 1); /* s:y alone */
        assert_int_equal(st.queued, 0);
    }
    kf_broker_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_subscription_ids),
        cmocka_unit_test(test_msg_encoding),
        cmocka_unit_test(test_retained),
        cmocka_unit_test(test_retained_quota),
        cmocka_unit_test(test_offline_session),
        cmocka_unit_test(test_takeover_expiry_qos2),
        cmocka_unit_test(test_no_local),
        cmocka_unit_test(test_will_delay),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_persistence_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
