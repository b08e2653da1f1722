/* mqtt_codec: MQTT 3.1.1 and 5.0 packets, decoded strictly and encoded within bounds. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "common/mqtt_codec.h"

#define S(text) ((struct kf_mqtt_str){(const uint8_t *)(text), (uint16_t)strlen(text)})

static int str_is(struct kf_mqtt_str s, const char *text)
{
    return s.len == strlen(text) && memcmp(s.p, text, s.len) == 0;
}

/* Parses hex ("10 0c 00 04 4d 51") into `out`; returns the length. */
static size_t hex(const char *text, uint8_t *out)
{
    size_t n = 0;
    unsigned v;
    while (*text) {
        if (*text == ' ') {
            text++;
            continue;
        }
        assert_int_equal(sscanf(text, "%2x", &v), 1);
        out[n++] = (uint8_t)v;
        text += 2;
    }
    return n;
}

static enum kf_mqtt_status decode(const uint8_t *b, size_t n, uint8_t v, struct kf_mqtt_packet *p,
                                  struct kf_mqtt_error *e)
{
    return kf_mqtt_decode(b, n, v, 0, p, e);
}

/* The packet must be refused with `reason`, and a prefix of it must not be refused sooner... */
static void expect_bad(const char *hexbytes, uint8_t version, uint8_t reason, const char *why)
{
    uint8_t b[512];
    size_t n = hex(hexbytes, b);
    struct kf_mqtt_packet p;
    struct kf_mqtt_error e;
    enum kf_mqtt_status s = decode(b, n, version, &p, &e);
    if (s != KF_MQTT_BAD) fail_msg("accepted (%d): %s", s, hexbytes);
    if (e.reason != reason)
        fail_msg("reason 0x%02x (%s), expected 0x%02x, for %s", e.reason, e.why, reason, hexbytes);
    if (!e.why || !strstr(e.why, why)) fail_msg("why \"%s\" lacks \"%s\"", e.why, why);
}

static void test_utf8(void **state)
{
    static const struct {
        const char *bytes;
        int valid;
    } cases[] = {
        {"plain ascii", 1},
        {"caf\xc3\xa9", 1},
        {"\xe2\x82\xac", 1},     /* U+20AC */
        {"\xf0\x9f\x98\x80", 1}, /* U+1F600 */
        {"\xef\xbf\xbf", 1},     /* U+FFFF, a non-character, allowed */
        {"\xc0\x80", 0},         /* overlong NUL */
        {"\xe0\x80\xaf", 0},     /* overlong */
        {"\xed\xa0\x80", 0},     /* a surrogate */
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"\xc3", 0},             /* cut short */
        {"\x80", 0},             /* a lone continuation */
        {"ab\xe2\x82", 0},       /* cut short at the end */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (kf_mqtt_utf8_valid((const uint8_t *)cases[i].bytes, strlen(cases[i].bytes)) !=
            cases[i].valid)
            fail_msg("case %zu", i);
    assert_false(kf_mqtt_utf8_valid((const uint8_t *)"a\0b", 3)); /* U+0000 */
}

static int match(const char *f, const char *n)
{
    return kf_mqtt_topic_match((const uint8_t *)f, strlen(f), (const uint8_t *)n, strlen(n));
}

static int filter_ok(const char *f)
{
    return kf_mqtt_topic_filter_valid((const uint8_t *)f, strlen(f));
}

/* The examples of the specification (4.7), and keyfleet's own topics. */
static void test_topics(void **state)
{
    assert_true(filter_ok("sport/tennis/player1/#"));
    assert_true(filter_ok("#"));
    assert_true(filter_ok("+"));
    assert_true(filter_ok("+/tennis/#"));
    assert_true(filter_ok("sport/+/player1"));
    assert_true(filter_ok("/+"));
    assert_false(filter_ok("sport/tennis#"));
    assert_false(filter_ok("sport/tennis/#/ranking"));
    assert_false(filter_ok("sport+"));
    assert_false(filter_ok(""));
    assert_true(kf_mqtt_topic_name_valid((const uint8_t *)"a/b", 3));
    assert_false(kf_mqtt_topic_name_valid((const uint8_t *)"a/+", 3));
    assert_false(kf_mqtt_topic_name_valid((const uint8_t *)"a/#", 3));
    assert_false(kf_mqtt_topic_name_valid((const uint8_t *)"", 0));

    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1"));
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
    assert_true(match("sport/#", "sport"));
    assert_true(match("sport/tennis/+", "sport/tennis/player1"));
    assert_false(match("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert_false(match("sport/+", "sport"));
    assert_true(match("sport/+", "sport/"));
    assert_true(match("+/+", "/finance"));
    assert_true(match("/+", "/finance"));
    assert_false(match("+", "/finance"));
    assert_true(match("+", "finance"));
    assert_true(match("#", "anything/at/all"));
    assert_false(match("#", "$SYS/uptime"));
    assert_false(match("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert_true(match("$SYS/#", "$SYS/monitor/Clients"));
    assert_true(match("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert_true(match("devices/+/telemetry/#", "devices/dev-1/telemetry"));
    assert_true(match("devices/+/telemetry/#", "devices/dev-1/telemetry/temp"));
    assert_false(match("devices/+/telemetry/#", "devices/dev-1/events"));
    assert_false(match("devices/dev-1/commands/#", "devices/dev-10/commands/x"));
    assert_false(match("a/b", "a/b/c"));
    assert_false(match("a/b/c", "a/b"));
    assert_true(match("a//b", "a//b"));
    assert_false(match("a/+/b", "a/b"));
}

/* A CONNECT of MQTT 3.1.1 written by hand from the specification's layout. */
static void test_connect_v311_by_hand(void **state)
{
    uint8_t b[128];
    size_t n = hex("10 21 00 04 4d 51 54 54 04 ee 00 3c 00 05 64 65 76 2d 31 "
                   "00 01 77 00 02 6f 6b 00 02 75 31 00 03 70 77 64",
                   b);
    struct kf_mqtt_packet p;
    struct kf_mqtt_error e;
    const struct kf_mqtt_connect *c = &p.u.connect;

    /* flags 0xee: user name, password, will retain, will QoS 1, will, clean session */
    assert_int_equal(decode(b, n, 0, &p, &e), KF_MQTT_OK);
    assert_int_equal(p.type, KF_MQTT_CONNECT);
    assert_int_equal(p.size, n);
    assert_int_equal(c->version, KF_MQTT_V311);
    assert_true(c->clean_start);
    assert_int_equal(c->keep_alive, 60);
    assert_true(str_is(c->client_id, "dev-1"));
    assert_true(c->will);
    assert_int_equal(c->will_qos, 1);
    assert_true(c->will_retain);
    assert_true(str_is(c->will_topic, "w"));
    assert_true(str_is(c->will_payload, "ok"));
    assert_true(c->has_username && str_is(c->username, "u1"));
    assert_true(c->has_password && str_is(c->password, "pwd"));
    /* Every shorter prefix is only partial. */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(decode(b, k, 0, &p, &e), KF_MQTT_PARTIAL);
}

static void roundtrip(const uint8_t *b, size_t n, uint8_t version, struct kf_mqtt_packet *p)
{
    struct kf_mqtt_error e;
    enum kf_mqtt_status s = decode(b, n, version, p, &e);
    if (s != KF_MQTT_OK) fail_msg("decode: %d 0x%02x %s", s, e.reason, e.why);
    assert_int_equal(p->size, n);
    for (size_t k = 0; k < n; k++)
        if (decode(b, k, version, p, &e) != KF_MQTT_PARTIAL) fail_msg("prefix %zu not partial", k);
    assert_int_equal(decode(b, n, version, p, &e), KF_MQTT_OK);
}

static void test_connect_v5_roundtrip(void **state)
{
    const struct kf_mqtt_user_prop ups[] = {{S("fw"), S("1.4.2")}, {S("site"), S("b7")}};
    struct kf_mqtt_connect c;
    struct kf_mqtt_packet p;
    struct kf_mqtt_str name, value;
    uint8_t b[512];
    size_t n = 0, pos = 0;

    memset(&c, 0, sizeof(c));
    c.version = KF_MQTT_V5;
    c.clean_start = 1;
    c.keep_alive = 30;
    c.props.present = (1ull << KF_MQTT_P_SESSION_EXPIRY) | (1ull << KF_MQTT_P_RECEIVE_MAXIMUM) |
                      (1ull << KF_MQTT_P_MAXIMUM_PACKET_SIZE) |
                      (1ull << KF_MQTT_P_TOPIC_ALIAS_MAXIMUM);
    c.props.session_expiry = 3600;
    c.props.receive_maximum = 20;
    c.props.maximum_packet_size = 65536;
    c.props.topic_alias_maximum = 8;
    c.props.user = ups;
    c.props.n_user = 2;
    c.client_id = S("dev-7");
    c.will = 1;
    c.will_qos = 2;
    c.will_props.present = (1ull << KF_MQTT_P_WILL_DELAY) | (1ull << KF_MQTT_P_PAYLOAD_FORMAT);
    c.will_props.will_delay = 5;
    c.will_props.payload_format = 1;
    c.will_topic = S("devices/dev-7/events");
    c.will_payload = S("{\"type\":\"device.offline\"}");
    assert_int_equal(kf_mqtt_encode_connect(b, sizeof(b), &c, &n), 0);
    roundtrip(b, n, 0, &p);
    assert_int_equal(p.u.connect.version, KF_MQTT_V5);
    assert_int_equal(p.u.connect.keep_alive, 30);
    assert_int_equal(p.u.connect.props.session_expiry, 3600);
    assert_int_equal(p.u.connect.props.receive_maximum, 20);
    assert_int_equal(p.u.connect.props.maximum_packet_size, 65536);
    assert_int_equal(p.u.connect.props.topic_alias_maximum, 8);
    assert_int_equal(p.u.connect.props.n_user_props, 2);
    assert_true(kf_mqtt_user_props_next(&p.u.connect.props, &pos, &name, &value));
    assert_true(str_is(name, "fw") && str_is(value, "1.4.2"));
    assert_true(kf_mqtt_user_props_next(&p.u.connect.props, &pos, &name, &value));
    assert_true(str_is(name, "site") && str_is(value, "b7"));
    assert_false(kf_mqtt_user_props_next(&p.u.connect.props, &pos, &name, &value));
    assert_true(str_is(p.u.connect.client_id, "dev-7"));
    assert_int_equal(p.u.connect.will_qos, 2);
    assert_int_equal(p.u.connect.will_props.will_delay, 5);
    assert_true(str_is(p.u.connect.will_topic, "devices/dev-7/events"));
    assert_false(p.u.connect.has_username);

    /* The encoder needs exactly that much room, and refuses any less. */
    for (size_t cap = 0; cap < n; cap++) {
        size_t got = 0;
        assert_int_equal(kf_mqtt_encode_connect(b, cap, &c, &got), -1);
    }
}

static void test_publish_both_versions(void **state)
{
    struct kf_mqtt_publish pub;
    struct kf_mqtt_packet p;
    uint8_t b[256];
    size_t n = 0, pos = 0;
    uint32_t id;

    memset(&pub, 0, sizeof(pub));
    pub.qos = 1;
    pub.retain = 1;
    pub.dup = 1;
    pub.topic = S("devices/dev-1/telemetry/temp");
    pub.packet_id = 77;
    pub.payload = (const uint8_t *)"21.5";
    pub.payload_len = 4;
    assert_int_equal(kf_mqtt_encode_publish(b, sizeof(b), KF_MQTT_V311, &pub, &n), 0);
    assert_int_equal(b[0], 0x3b); /* PUBLISH, DUP, QoS 1, RETAIN */
    roundtrip(b, n, KF_MQTT_V311, &p);
    assert_true(str_is(p.u.publish.topic, "devices/dev-1/telemetry/temp"));
    assert_int_equal(p.u.publish.packet_id, 77);
    assert_int_equal(p.u.publish.qos, 1);
    assert_true(p.u.publish.dup && p.u.publish.retain);
    assert_int_equal(p.u.publish.payload_len, 4);
    assert_memory_equal(p.u.publish.payload, "21.5", 4);

    /* MQTT 5: an empty topic with an alias, expiry, and two subscription identifiers. */
    pub.topic = S("");
    pub.qos = 0;
    pub.dup = 0;
    pub.props.present = (1ull << KF_MQTT_P_TOPIC_ALIAS) | (1ull << KF_MQTT_P_MESSAGE_EXPIRY) |
                        (1ull << KF_MQTT_P_SUBSCRIPTION_ID);
    pub.props.topic_alias = 3;
    pub.props.message_expiry = 120;
    pub.props.subscription_id = 268435455;
    assert_int_equal(kf_mqtt_encode_publish(b, sizeof(b), KF_MQTT_V5, &pub, &n), 0);
    roundtrip(b, n, KF_MQTT_V5, &p);
    assert_int_equal(p.u.publish.topic.len, 0);
    assert_int_equal(p.u.publish.props.topic_alias, 3);
    assert_int_equal(p.u.publish.props.message_expiry, 120);
    assert_true(kf_mqtt_sub_ids_next(&p.u.publish.props, &pos, &id));
    assert_int_equal(id, 268435455);
    assert_false(kf_mqtt_sub_ids_next(&p.u.publish.props, &pos, &id));
    /* Without the alias the empty topic is refused. */
    pub.props.present &= ~(1ull << KF_MQTT_P_TOPIC_ALIAS);
    assert_int_equal(kf_mqtt_encode_publish(b, sizeof(b), KF_MQTT_V5, &pub, &n), 0);
    {
        struct kf_mqtt_error e;
        assert_int_equal(decode(b, n, KF_MQTT_V5, &p, &e), KF_MQTT_BAD);
        assert_int_equal(e.reason, KF_MQTT_RC_TOPIC_NAME_INVALID);
    }
}

static void test_acks_and_subscriptions(void **state)
{
    struct kf_mqtt_sub subs[3] = {{S("devices/dev-1/commands/#"), 1, 1, 0, 2},
                                  {S("devices/dev-1/updates/+"), 2, 0, 1, 0},
                                  {S("x/y"), 0, 0, 0, 1}},
                       got;
    struct kf_mqtt_props props;
    struct kf_mqtt_packet p;
    struct kf_mqtt_ack ack;
    struct kf_mqtt_disconnect d;
    uint8_t b[256], codes[3] = {0x01, 0x02, 0x87};
    size_t n = 0, pos = 0;
    int i = 0;

    memset(&props, 0, sizeof(props));
    props.present = 1ull << KF_MQTT_P_SUBSCRIPTION_ID;
    props.subscription_id = 9;
    assert_int_equal(kf_mqtt_encode_subscribe(b, sizeof(b), KF_MQTT_V5, 0, 42, &props, subs, 3, &n),
                     0);
    roundtrip(b, n, KF_MQTT_V5, &p);
    assert_int_equal(p.type, KF_MQTT_SUBSCRIBE);
    assert_int_equal(p.u.subscribe.packet_id, 42);
    assert_int_equal(p.u.subscribe.count, 3);
    assert_int_equal(p.u.subscribe.props.subscription_id, 9);
    while (kf_mqtt_subs_next(&p, KF_MQTT_V5, &pos, &got)) {
        assert_memory_equal(got.filter.p, subs[i].filter.p, subs[i].filter.len);
        assert_int_equal(got.qos, subs[i].qos);
        assert_int_equal(got.no_local, subs[i].no_local);
        assert_int_equal(got.retain_as_published, subs[i].retain_as_published);
        assert_int_equal(got.retain_handling, subs[i].retain_handling);
        i++;
    }
    assert_int_equal(i, 3);

    /* MQTT 3.1.1 keeps only the QoS. */
    assert_int_equal(kf_mqtt_encode_subscribe(b, sizeof(b), KF_MQTT_V311, 0, 43, NULL, subs, 2, &n),
                     0);
    roundtrip(b, n, KF_MQTT_V311, &p);
    pos = 0;
    assert_true(kf_mqtt_subs_next(&p, KF_MQTT_V311, &pos, &got));
    assert_int_equal(got.qos, 1);
    assert_false(got.no_local);

    assert_int_equal(kf_mqtt_encode_subscribe(b, sizeof(b), KF_MQTT_V5, 1, 44, NULL, subs, 2, &n),
                     0);
    roundtrip(b, n, KF_MQTT_V5, &p);
    assert_int_equal(p.type, KF_MQTT_UNSUBSCRIBE);
    assert_int_equal(p.u.subscribe.count, 2);

    assert_int_equal(kf_mqtt_encode_suback(b, sizeof(b), KF_MQTT_V5, 0, 42, NULL, codes, 3, &n), 0);
    roundtrip(b, n, KF_MQTT_V5, &p);
    assert_int_equal(p.u.suback.count, 3);
    assert_int_equal(p.u.suback.codes[2], KF_MQTT_RC_NOT_AUTHORIZED);
    codes[2] = 0x80;
    assert_int_equal(kf_mqtt_encode_suback(b, sizeof(b), KF_MQTT_V311, 0, 42, NULL, codes, 3, &n),
                     0);
    roundtrip(b, n, KF_MQTT_V311, &p);
    assert_int_equal(kf_mqtt_encode_suback(b, sizeof(b), KF_MQTT_V311, 1, 44, NULL, NULL, 0, &n),
                     0);
    assert_int_equal(n, 4); /* UNSUBACK of 3.1.1: the packet id only */
    roundtrip(b, n, KF_MQTT_V311, &p);

    /* Acks: v5 leaves out a success reason and empty properties. */
    memset(&ack, 0, sizeof(ack));
    ack.packet_id = 7;
    assert_int_equal(kf_mqtt_encode_ack(b, sizeof(b), KF_MQTT_V5, KF_MQTT_PUBACK, &ack, &n), 0);
    assert_int_equal(n, 4);
    roundtrip(b, n, KF_MQTT_V5, &p);
    ack.reason = KF_MQTT_RC_NOT_AUTHORIZED;
    ack.props.present = 1ull << KF_MQTT_P_REASON_STRING;
    ack.props.reason_string = S("devices may publish only under devices/<id>/");
    assert_int_equal(kf_mqtt_encode_ack(b, sizeof(b), KF_MQTT_V5, KF_MQTT_PUBACK, &ack, &n), 0);
    roundtrip(b, n, KF_MQTT_V5, &p);
    assert_int_equal(p.u.ack.reason, KF_MQTT_RC_NOT_AUTHORIZED);
    assert_true(
        str_is(p.u.ack.props.reason_string, "devices may publish only under devices/<id>/"));
    memset(&ack, 0, sizeof(ack));
    ack.packet_id = 8;
    assert_int_equal(kf_mqtt_encode_ack(b, sizeof(b), KF_MQTT_V311, KF_MQTT_PUBREL, &ack, &n), 0);
    assert_int_equal(b[0], 0x62);
    roundtrip(b, n, KF_MQTT_V311, &p);
    assert_int_equal(p.type, KF_MQTT_PUBREL);

    /* Ping, disconnect, auth. */
    assert_int_equal(kf_mqtt_encode_empty(b, sizeof(b), KF_MQTT_PINGREQ, &n), 0);
    roundtrip(b, n, KF_MQTT_V311, &p);
    assert_int_equal(p.type, KF_MQTT_PINGREQ);
    memset(&d, 0, sizeof(d));
    d.reason = KF_MQTT_RC_ADMINISTRATIVE_ACTION;
    d.props.present = 1ull << KF_MQTT_P_REASON_STRING;
    d.props.reason_string = S("device revoked");
    assert_int_equal(
        kf_mqtt_encode_disconnect(b, sizeof(b), KF_MQTT_V5, KF_MQTT_DISCONNECT, &d, &n), 0);
    roundtrip(b, n, KF_MQTT_V5, &p);
    assert_int_equal(p.u.disconnect.reason, KF_MQTT_RC_ADMINISTRATIVE_ACTION);
    assert_int_equal(
        kf_mqtt_encode_disconnect(b, sizeof(b), KF_MQTT_V311, KF_MQTT_DISCONNECT, &d, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(kf_mqtt_encode_disconnect(b, sizeof(b), KF_MQTT_V311, KF_MQTT_AUTH, &d, &n),
                     -1);
}

static void test_connack(void **state)
{
    struct kf_mqtt_connack c;
    struct kf_mqtt_packet p;
    uint8_t b[128];
    size_t n = 0;

    memset(&c, 0, sizeof(c));
    c.session_present = 1;
    assert_int_equal(kf_mqtt_encode_connack(b, sizeof(b), KF_MQTT_V311, &c, &n), 0);
    assert_int_equal(n, 4);
    roundtrip(b, n, KF_MQTT_V311, &p);
    assert_true(p.u.connack.session_present);
    c.session_present = 0;
    c.props.present = (1ull << KF_MQTT_P_ASSIGNED_CLIENT_ID) | (1ull << KF_MQTT_P_MAXIMUM_QOS) |
                      (1ull << KF_MQTT_P_RETAIN_AVAILABLE) |
                      (1ull << KF_MQTT_P_SHARED_SUB_AVAILABLE) |
                      (1ull << KF_MQTT_P_SERVER_KEEP_ALIVE);
    c.props.assigned_client_id = S("dev-3");
    c.props.maximum_qos = 1;
    c.props.retain_available = 1;
    c.props.server_keep_alive = 120;
    assert_int_equal(kf_mqtt_encode_connack(b, sizeof(b), KF_MQTT_V5, &c, &n), 0);
    roundtrip(b, n, KF_MQTT_V5, &p);
    assert_true(str_is(p.u.connack.props.assigned_client_id, "dev-3"));
    assert_int_equal(p.u.connack.props.server_keep_alive, 120);
    assert_int_equal(p.u.connack.props.shared_sub_available, 0);
    assert_true(KF_MQTT_HAS(&p.u.connack.props, KF_MQTT_P_SHARED_SUB_AVAILABLE));
    /* A property CONNACK may not carry is an encoding error, not a silent drop. */
    c.props.present |= 1ull << KF_MQTT_P_TOPIC_ALIAS;
    assert_int_equal(kf_mqtt_encode_connack(b, sizeof(b), KF_MQTT_V5, &c, &n), -1);
}

/* Each malformed packet is refused with the reason an MQTT 5 server would disconnect with. */
static void test_malformed(void **state)
{
    uint8_t b[64];
    struct kf_mqtt_packet p;
    struct kf_mqtt_error e;

    /* The fixed header. */
    expect_bad("30 ff ff ff ff 7f", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "longer than 4 bytes");
    expect_bad("30 80 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "shortest form");
    expect_bad("00 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "reserved packet type");
    expect_bad("f0 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "reserved packet type");
    expect_bad("80 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "reserved flags are wrong");
    expect_bad("c1 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "reserved flags are set");
    expect_bad("36 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "QoS 3");
    expect_bad("38 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "DUP set on a QoS 0");
    expect_bad("30 03 00 01 61", 0, KF_MQTT_RC_PROTOCOL_ERROR, "first packet must be CONNECT");
    /* CONNECT. */
    expect_bad("10 0c 00 06 4d 51 49 73 64 70 03 02 00 3c", 0, KF_MQTT_RC_UNSUPPORTED_VERSION,
               "MQTT 3.1");
    expect_bad("10 0a 00 04 4d 51 54 54 06 02 00 3c", 0, KF_MQTT_RC_UNSUPPORTED_VERSION,
               "protocol level");
    expect_bad("10 0a 00 04 4d 51 54 58 04 02 00 3c", 0, KF_MQTT_RC_PROTOCOL_ERROR, "not MQTT");
    expect_bad("10 0c 00 04 4d 51 54 54 04 03 00 3c 00 00", 0, KF_MQTT_RC_MALFORMED,
               "reserved connect flag");
    expect_bad("10 0c 00 04 4d 51 54 54 04 12 00 3c 00 00", 0, KF_MQTT_RC_MALFORMED,
               "without a will");
    expect_bad("10 10 00 04 4d 51 54 54 04 42 00 3c 00 00 00 02 70 77", 0, KF_MQTT_RC_MALFORMED,
               "password without a user name");
    expect_bad("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 61 c0 80", 0, KF_MQTT_RC_MALFORMED,
               "client identifier is not valid UTF-8");
    expect_bad("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 00 ff", 0, KF_MQTT_RC_MALFORMED,
               "left over");
    expect_bad("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 05 61", 0, KF_MQTT_RC_MALFORMED,
               "cut short");
    /* PUBLISH. */
    expect_bad("30 05 00 03 61 2f 2b", KF_MQTT_V311, KF_MQTT_RC_TOPIC_NAME_INVALID, "wildcard");
    expect_bad("30 05 00 05 61 62 63", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "cut short");
    expect_bad("30 05 00 03 ed a0 80", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "not valid UTF-8");
    expect_bad("32 05 00 01 61 00 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED,
               "packet identifier of 0");
    expect_bad("30 02 00 00", KF_MQTT_V311, KF_MQTT_RC_TOPIC_NAME_INVALID, "empty topic");
    /* MQTT 5 properties: twice, not for this packet, unknown, cut short, bad values. */
    expect_bad("30 08 00 01 61 04 02 00 00 00", KF_MQTT_V5, KF_MQTT_RC_MALFORMED, "cut short");
    expect_bad("30 0e 00 01 61 0a 02 00 00 00 01 02 00 00 00 01", KF_MQTT_V5,
               KF_MQTT_RC_PROTOCOL_ERROR, "given twice");
    expect_bad("30 06 00 01 61 02 24 01", KF_MQTT_V5, KF_MQTT_RC_PROTOCOL_ERROR, "may not carry");
    expect_bad("30 06 00 01 61 02 7f 01", KF_MQTT_V5, KF_MQTT_RC_MALFORMED, "unknown property");
    expect_bad("30 07 00 01 61 03 23 00 00", KF_MQTT_V5, KF_MQTT_RC_TOPIC_ALIAS_INVALID,
               "topic alias of 0");
    expect_bad("30 07 00 01 61 02 01 01 ff", KF_MQTT_V5, KF_MQTT_RC_PAYLOAD_FORMAT_INVALID,
               "marked UTF-8");
    expect_bad("30 06 00 01 61 09 01 01", KF_MQTT_V5, KF_MQTT_RC_MALFORMED, "run past the end");
    /* SUBSCRIBE. */
    expect_bad("82 02 00 01", KF_MQTT_V311, KF_MQTT_RC_PROTOCOL_ERROR, "no topic filter");
    expect_bad("82 06 00 01 00 01 61 04", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "reserved bits");
    expect_bad("82 06 00 01 00 01 61 03", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "QoS of 3");
    expect_bad("82 07 00 01 00 00 01 61 30", KF_MQTT_V5, KF_MQTT_RC_PROTOCOL_ERROR,
               "retain handling of 3");
    expect_bad("82 05 00 01 00 01 61", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "options are missing");
    /* Acks and the rest. */
    expect_bad("40 02 00 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "packet identifier of 0");
    expect_bad("40 03 00 01 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "left over");
    expect_bad("40 03 00 01 92", KF_MQTT_V5, KF_MQTT_RC_MALFORMED, "may not carry");
    expect_bad("90 03 00 01 03", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "may not carry");
    expect_bad("c0 01 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "left over");
    expect_bad("e0 01 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "left over");
    expect_bad("e0 01 05", KF_MQTT_V5, KF_MQTT_RC_MALFORMED, "may not carry");
    expect_bad("20 02 01 05", KF_MQTT_V311, KF_MQTT_RC_PROTOCOL_ERROR, "session present");
    expect_bad("20 02 02 00", KF_MQTT_V311, KF_MQTT_RC_MALFORMED, "reserved CONNACK flags");

    /* Too large: refused as soon as the length is read, before the bytes arrive. */
    {
        size_t n = hex("30 ff 7f", b);
        assert_int_equal(kf_mqtt_decode(b, n, KF_MQTT_V311, 1024, &p, &e), KF_MQTT_BAD);
        assert_int_equal(e.reason, KF_MQTT_RC_PACKET_TOO_LARGE);
        assert_int_equal(kf_mqtt_decode(b, n, KF_MQTT_V311, 0, &p, &e), KF_MQTT_PARTIAL);
    }
    /* The largest remaining length there is, and no more. */
    assert_int_equal(decode(b, hex("30 ff ff ff 7f", b), KF_MQTT_V311, &p, &e), KF_MQTT_PARTIAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_connect_v311_by_hand),
        cmocka_unit_test(test_connect_v5_roundtrip),
        cmocka_unit_test(test_publish_both_versions),
        cmocka_unit_test(test_acks_and_subscriptions),
        cmocka_unit_test(test_connack),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
