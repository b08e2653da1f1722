/*
 * decide: what the hub answers to a CONNECT, a SUBSCRIBE filter and a PUBLISH, without a socket:
 * the client id against the certificate, identities the registry keeps out (from a snapshot of a
 * real deployment), the session a CONNECT gets, will and topic ACLs, topic aliases, and a
 * device's own events.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdlib.h>
#include <string.h>

#include "server/ca/ca.h"
#include "server/hub/decide.h"
#include "server/ops/fleet.h"
#include "server/ops/services.h"

#define S(text) ((struct kf_mqtt_str){(const uint8_t *)(text), (uint16_t)strlen(text)})

static struct kf_mqtt_connect connect_as(uint8_t version, const char *client_id, int clean)
{
    struct kf_mqtt_connect k;
    memset(&k, 0, sizeof(k));
    k.version = version;
    k.client_id = S(client_id);
    k.clean_start = clean;
    return k;
}

static char *issue(struct kf_deploy *d, const char *id, char *serial)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, id);
    struct kf_cert *c = NULL;
    KF_OK_OR_FAIL(kf_ca_issue_device(d, KF_TEST_ACTOR, id, NULL, csr, 0, &c));
    kf_cert_serial_hex(c, serial);
    kf_cert_free(c);
    kf_csr_free(csr);
    return serial;
}

static void test_connect_identity(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("decide");
    char ok_serial[KF_SERIAL_HEX_MAX], off_serial[KF_SERIAL_HEX_MAX];
    char rev_serial[KF_SERIAL_HEX_MAX], old_serial[KF_SERIAL_HEX_MAX];
    char new_serial[KF_SERIAL_HEX_MAX], svc_serial[KF_SERIAL_HEX_MAX] = "00";
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "svc-1");
    struct kf_cert *sc = NULL;
    struct kf_snapshot *reg = NULL;
    struct kf_hub_connect_refusal r;
    struct kf_mqtt_connect k;
    int assigned;

    issue(d, "dev-1", ok_serial);
    issue(d, "dev-off", off_serial);
    issue(d, "dev-rev", rev_serial);
    issue(d, "dev-old", old_serial);
    issue(d, "dev-old", new_serial); /* renewed: the old certificate is revoked below */
    KF_OK_OR_FAIL(kf_services_add(d, KF_TEST_ACTOR, "svc-1", "commander", csr, 0, &sc));
    kf_cert_serial_hex(sc, svc_serial);
    KF_OK_OR_FAIL(kf_fleet_set_enabled(d, KF_TEST_ACTOR, "dev-off", 0, NULL));
    KF_OK_OR_FAIL(kf_fleet_revoke(d, KF_TEST_ACTOR, "dev-rev", KF_CRL_KEY_COMPROMISE, NULL));
    KF_OK_OR_FAIL(kf_ca_revoke(d, KF_TEST_ACTOR, old_serial, KF_CRL_SUPERSEDED));
    KF_OK_OR_FAIL(kf_services_revoke(d, KF_TEST_ACTOR, "svc-1", KF_CRL_UNSPECIFIED, NULL));
    KF_OK_OR_FAIL(kf_snapshot_load(d, &d->cfg, &reg));

    {
        struct kf_hub_who dev = {KF_ACL_DEVICE, "dev-1", ok_serial};
        /* Its own name, or none (the session takes the certificate's). */
        k = connect_as(KF_MQTT_V311, "dev-1", 0);
        assert_int_equal(kf_hub_decide_connect(&k, &dev, reg, &assigned, &r), 0);
        assert_int_equal(assigned, 0);
        k = connect_as(KF_MQTT_V5, "", 0);
        assert_int_equal(kf_hub_decide_connect(&k, &dev, reg, &assigned, &r), 0);
        assert_int_equal(assigned, 1);
        k = connect_as(KF_MQTT_V311, "", 1);
        assert_int_equal(kf_hub_decide_connect(&k, &dev, reg, &assigned, &r), 0);
        assert_int_equal(assigned, 1);
        /* MQTT-3.1.3-8: no name, yet a session to keep. */
        k = connect_as(KF_MQTT_V311, "", 0);
        assert_int_equal(kf_hub_decide_connect(&k, &dev, reg, &assigned, &r), 1);
        assert_int_equal(r.rc311, KF_MQTT_V311_ID_REJECTED);
        assert_string_equal(r.why, "empty_client_id_persistent");
        assert_int_equal(r.auth_failed, 0);
        /* Another device's name, a longer one, a prefix: an authentication failure. */
        static const char *const others[] = {"dev-2", "dev-10", "dev-", "DEV-1"};
        for (size_t i = 0; i < KF_ARRAY_LEN(others); i++) {
            k = connect_as(KF_MQTT_V5, others[i], 1);
            assert_int_equal(kf_hub_decide_connect(&k, &dev, reg, &assigned, &r), 1);
            assert_int_equal(r.rc5, KF_MQTT_RC_CLIENT_ID_NOT_VALID);
            assert_string_equal(r.why, "client_id_mismatch");
            assert_int_equal(r.auth_failed, 1);
        }
        /* Enhanced authentication: the certificate is the only one. */
        k = connect_as(KF_MQTT_V5, "dev-1", 1);
        k.props.present |= 1ull << KF_MQTT_P_AUTH_METHOD;
        assert_int_equal(kf_hub_decide_connect(&k, &dev, reg, &assigned, &r), 1);
        assert_int_equal(r.rc5, KF_MQTT_RC_BAD_AUTH_METHOD);
        assert_string_equal(r.why, "bad_auth_method");
    }
    {
        /* The registry keeps them out, each for its reason. */
        static const struct {
            enum kf_acl_kind kind;
            const char *id, *why;
        } out[] = {{KF_ACL_DEVICE, "dev-off", "device_disabled"},
                   {KF_ACL_DEVICE, "dev-rev", "device_revoked"},
                   {KF_ACL_COMMANDER, "svc-1", "service_revoked"}};
        const char *serials[] = {off_serial, rev_serial, svc_serial};
        for (size_t i = 0; i < KF_ARRAY_LEN(out); i++) {
            struct kf_hub_who who = {out[i].kind, out[i].id, serials[i]};
            k = connect_as(KF_MQTT_V5, out[i].id, 1);
            assert_int_equal(kf_hub_decide_connect(&k, &who, reg, &assigned, &r), 1);
            assert_int_equal(r.rc5, KF_MQTT_RC_NOT_AUTHORIZED);
            assert_int_equal(r.rc311, KF_MQTT_V311_NOT_AUTHORIZED);
            assert_string_equal(r.why, out[i].why);
            assert_int_equal(r.auth_failed, 1);
            assert_string_equal(kf_hub_decide_kept_out(&who, reg), out[i].why);
        }
    }
    {
        /* A revoked certificate of an active device: the certificate is out, the device not. */
        struct kf_hub_who old = {KF_ACL_DEVICE, "dev-old", old_serial};
        struct kf_hub_who cur = {KF_ACL_DEVICE, "dev-old", new_serial};
        /* A service named like a disabled device is another identity. */
        struct kf_hub_who svc = {KF_ACL_READER, "dev-off", "01"};
        k = connect_as(KF_MQTT_V311, "dev-old", 1);
        assert_int_equal(kf_hub_decide_connect(&k, &old, reg, &assigned, &r), 1);
        assert_string_equal(r.why, "revoked");
        assert_int_equal(kf_hub_decide_connect(&k, &cur, reg, &assigned, &r), 0);
        assert_null(kf_hub_decide_kept_out(&svc, reg));
    }
    kf_snapshot_release(reg);
    kf_cert_free(sc);
    kf_csr_free(csr);
    kf_deploy_close(d);
}

static void test_session_terms(void **state)
{
    struct kf_hub_conf hc;
    struct kf_hub_who dev = {KF_ACL_DEVICE, "dev-1", "01"};
    struct kf_hub_session_terms t;
    struct kf_mqtt_connect k;

    memset(&hc, 0, sizeof(hc));
    KF_OK_OR_FAIL(kf_conf_defaults(&kf_hub_section, &hc));
    hc.expiry_max = 3600;
    hc.max_inflight = 32;

    /* MQTT 3.1.1: a clean session ends with its connection, another lasts expiry_max. */
    k = connect_as(KF_MQTT_V311, "dev-1", 1);
    assert_int_equal(kf_hub_decide_session(&k, &dev, &hc, &t), 0);
    assert_int_equal(t.expiry, 0);
    assert_int_equal(t.receive_max, 32);
    k = connect_as(KF_MQTT_V311, "dev-1", 0);
    kf_hub_decide_session(&k, &dev, &hc, &t);
    assert_int_equal(t.expiry, 3600);
    /* MQTT 5: the client's expiry, at most the hub's; its receive maximum when smaller. */
    k = connect_as(KF_MQTT_V5, "dev-1", 0);
    k.props.present |= (1ull << KF_MQTT_P_SESSION_EXPIRY) | (1ull << KF_MQTT_P_RECEIVE_MAXIMUM) |
                       (1ull << KF_MQTT_P_MAXIMUM_PACKET_SIZE);
    k.props.session_expiry = 0xFFFFFFFF;
    k.props.receive_maximum = 5;
    k.props.maximum_packet_size = 4096;
    kf_hub_decide_session(&k, &dev, &hc, &t);
    assert_int_equal(t.expiry, 3600);
    assert_int_equal(t.receive_max, 5);
    assert_int_equal(t.client_max_packet, 4096);
    k.props.session_expiry = 60;
    k.props.receive_maximum = 1000;
    kf_hub_decide_session(&k, &dev, &hc, &t);
    assert_int_equal(t.expiry, 60);
    assert_int_equal(t.receive_max, 32);
    k = connect_as(KF_MQTT_V5, "dev-1", 0); /* no Session Expiry: 0 [MQTT-3.1.2-11] */
    kf_hub_decide_session(&k, &dev, &hc, &t);
    assert_int_equal(t.expiry, 0);

    /* A will goes where its device may publish, and nowhere else. */
    k = connect_as(KF_MQTT_V311, "dev-1", 1);
    k.will = 1;
    k.will_topic = S("devices/dev-1/events");
    assert_int_equal(kf_hub_decide_session(&k, &dev, &hc, &t), 0);
    k.will_topic = S("devices/dev-1/telemetry/last");
    assert_int_equal(kf_hub_decide_session(&k, &dev, &hc, &t), 0);
    k.will_topic = S("devices/dev-2/events");
    assert_int_equal(kf_hub_decide_session(&k, &dev, &hc, &t), 1);
    k.will_topic = S("devices/dev-1/commands");
    assert_int_equal(kf_hub_decide_session(&k, &dev, &hc, &t), 1);
}

static void test_subscribe_filters(void **state)
{
    struct kf_hub_who dev = {KF_ACL_DEVICE, "dev-1", "01"};
    struct kf_hub_who reader = {KF_ACL_READER, "dash", "02"};
    const struct {
        const struct kf_hub_who *who;
        const char *filter;
        int ok;
        uint8_t v5, v311;
        int denied;
    } cases[] = {
        {&dev, "devices/dev-1/commands/#", 1, 0, 0, 0},
        {&dev, "devices/dev-2/commands/#", 0, KF_MQTT_RC_NOT_AUTHORIZED, 0x80, 1},
        {&dev, "devices/+/commands/#", 0, KF_MQTT_RC_NOT_AUTHORIZED, 0x80, 1},
        {&dev, "#", 0, KF_MQTT_RC_NOT_AUTHORIZED, 0x80, 1},
        {&dev, "devices/dev-1/#/x", 0, KF_MQTT_RC_TOPIC_FILTER_INVALID, 0x80, 0},
        {&dev, "devices/dev-1/comm+", 0, KF_MQTT_RC_TOPIC_FILTER_INVALID, 0x80, 0},
        {&dev, "$share/g/devices/dev-1/commands/#", 0, KF_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED, 0x80,
         0},
        {&reader, "devices/+/telemetry/#", 1, 0, 0, 0},
    };
    for (size_t i = 0; i < KF_ARRAY_LEN(cases); i++) {
        const char *f = cases[i].filter;
        for (int v5 = 0; v5 <= 1; v5++) {
            uint8_t code = 0xEE;
            int denied = -1;
            int ok = kf_hub_decide_filter(v5 ? KF_MQTT_V5 : KF_MQTT_V311, cases[i].who,
                                          (const uint8_t *)f, strlen(f), &code, &denied);
            if (ok != cases[i].ok || (!ok && code != (v5 ? cases[i].v5 : cases[i].v311)) ||
                denied != cases[i].denied)
                fail_msg("%s (MQTT %s): %d code 0x%02x denied %d", f, v5 ? "5" : "3.1.1", ok, code,
                         denied);
        }
    }
}

static void test_publish_topics_and_aliases(void **state)
{
    struct kf_hub_alias aliases[KF_HUB_TOPIC_ALIAS_MAX + 1];
    struct kf_hub_who dev = {KF_ACL_DEVICE, "dev-1", "01"};
    struct kf_mqtt_publish p;
    struct kf_mqtt_str topic;
    const char *why = NULL;

    memset(aliases, 0, sizeof(aliases));
    memset(&p, 0, sizeof(p));
    p.topic = S("devices/dev-1/telemetry/t");
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why), 0);
    assert_memory_equal(topic.p, "devices/dev-1/telemetry/t", topic.len);
    /* A topic alias: set with a topic, then used with none. */
    p.props.present = 1ull << KF_MQTT_P_TOPIC_ALIAS;
    p.props.topic_alias = 3;
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why), 0);
    p.topic = S("");
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why), 0);
    assert_int_equal(topic.len, strlen("devices/dev-1/telemetry/t"));
    assert_memory_equal(topic.p, "devices/dev-1/telemetry/t", topic.len);
    /* Refused: an alias never set, out of range, no topic at all, a subscription id. */
    p.props.topic_alias = 4;
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why), KF_MQTT_RC_PROTOCOL_ERROR);
    assert_string_equal(why, "an unknown topic alias");
    p.props.topic_alias = 0;
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why),
                     KF_MQTT_RC_TOPIC_ALIAS_INVALID);
    p.props.topic_alias = KF_HUB_TOPIC_ALIAS_MAX + 1;
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why),
                     KF_MQTT_RC_TOPIC_ALIAS_INVALID);
    p.props.present = 0;
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why), KF_MQTT_RC_PROTOCOL_ERROR);
    assert_string_equal(why, "an empty topic without an alias");
    p.topic = S("devices/dev-1/telemetry/t");
    p.props.present = 1ull << KF_MQTT_P_SUBSCRIPTION_ID;
    assert_int_equal(kf_hub_decide_topic(&p, aliases, &topic, &why), KF_MQTT_RC_PROTOCOL_ERROR);
    assert_string_equal(why, "a subscription identifier in a PUBLISH");
    for (size_t i = 0; i < KF_ARRAY_LEN(aliases); i++)
        free(aliases[i].p);

    /* Where it may publish, and what becomes of the rest. */
    assert_int_equal(kf_hub_decide_publish(KF_MQTT_V311, KF_HUB_DISCONNECT, &dev,
                                           S("devices/dev-1/telemetry/t")),
                     KF_HUB_PUBLISH_ROUTE);
    assert_int_equal(
        kf_hub_decide_publish(KF_MQTT_V5, KF_HUB_DISCONNECT, &dev, S("devices/dev-2/telemetry/t")),
        KF_HUB_PUBLISH_REFUSE);
    assert_int_equal(kf_hub_decide_publish(KF_MQTT_V311, KF_HUB_DISCONNECT, &dev,
                                           S("devices/dev-2/telemetry/t")),
                     KF_HUB_PUBLISH_DISCONNECT);
    assert_int_equal(
        kf_hub_decide_publish(KF_MQTT_V311, KF_HUB_DROP, &dev, S("devices/dev-1/commands/x")),
        KF_HUB_PUBLISH_DROP);
}

static void test_device_events(void **state)
{
    struct kf_hub_who dev = {KF_ACL_DEVICE, "dev-1", "01"};
    struct kf_hub_who svc = {KF_ACL_COMMANDER, "dev-1", "02"};
    struct kf_hub_device_event e;
    const char *why = NULL;
    char *big;
    static const struct {
        const char *body, *why;
    } bad[] = {
        {"[1]", "a device event is a JSON object"},
        {"{\"type\":\"device.x\",\"type\":\"device.y\"}", "a device event is a JSON object"},
        {"{\"severity\":\"info\"}", "\"type\" must be"},
        {"{\"type\":\"hub.connected\"}", "\"type\" must be"},
        {"{\"type\":\"device.Login\"}", "\"type\" must be"},
        {"{\"type\":\"device.\"}", "\"type\" must be"},
        {"{\"type\":\"device.login\",\"severity\":\"panic\"}", "\"severity\" must be"},
        {"{\"type\":\"device.login\",\"detail\":[1]}", "\"detail\" must be an object"},
    };

    assert_true(kf_hub_is_event_topic(&dev, S("devices/dev-1/events")));
    assert_false(kf_hub_is_event_topic(&dev, S("devices/dev-1/events/x")));
    assert_false(kf_hub_is_event_topic(&dev, S("devices/dev-10/events")));
    assert_false(kf_hub_is_event_topic(&svc, S("devices/dev-1/events")));

    {
        static const char good[] = "{\"type\":\"device.login_failed\",\"detail\":{\"b\":1,"
                                   "\"a\":\"x\"}}";
        assert_int_equal(kf_hub_parse_device_event((const uint8_t *)good, strlen(good), &e, &why),
                         1);
    }
    assert_string_equal(e.type, "device.login_failed");
    assert_string_equal(e.severity, "warning");
    assert_string_equal(e.detail, "{\"a\":\"x\",\"b\":1}");
    free(e.detail);
    for (size_t i = 0; i < KF_ARRAY_LEN(bad); i++) {
        why = NULL;
        if (kf_hub_parse_device_event((const uint8_t *)bad[i].body, strlen(bad[i].body), &e,
                                      &why) != 0 ||
            !why || !strstr(why, bad[i].why))
            fail_msg("%s: accepted or \"%s\"", bad[i].body, why ? why : "");
        assert_null(e.detail);
    }
    /* The steps of a software update are the device's own events too; the server's are not. */
    {
        static const char step[] = "{\"type\":\"update.verified\",\"severity\":\"info\"}";
        assert_int_equal(kf_hub_parse_device_event((const uint8_t *)step, strlen(step), &e, &why),
                         1);
        assert_string_equal(e.type, "update.verified");
        free(e.detail);
    }
    big = calloc(1, KF_HUB_EVENT_BODY_MAX + 2);
    memset(big, ' ', KF_HUB_EVENT_BODY_MAX + 1);
    assert_int_equal(
        kf_hub_parse_device_event((const uint8_t *)big, KF_HUB_EVENT_BODY_MAX + 1, &e, &why), 0);
    assert_string_equal(why, "a device event is at most 16 KiB");
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_identity),  cmocka_unit_test(test_session_terms),
        cmocka_unit_test(test_subscribe_filters), cmocka_unit_test(test_publish_topics_and_aliases),
        cmocka_unit_test(test_device_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
