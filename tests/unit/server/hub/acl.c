/* hub_acl: what devices and services may publish and subscribe to. */
#include "testutil.h"

#include <string.h>

#include "server/hub/acl.h"

static int pub(enum kf_acl_kind k, const char *id, const char *topic)
{
    struct kf_acl_identity who = {k, id};
    return kf_acl_publish(&who, (const uint8_t *)topic, strlen(topic));
}

static int sub(enum kf_acl_kind k, const char *id, const char *filter)
{
    struct kf_acl_identity who = {k, id};
    return kf_acl_subscribe(&who, (const uint8_t *)filter, strlen(filter));
}

static void test_device(void **state)
{
    assert_true(pub(KF_ACL_DEVICE, "d1", "devices/d1/telemetry"));
    assert_true(pub(KF_ACL_DEVICE, "d1", "devices/d1/telemetry/temp/room1"));
    assert_true(pub(KF_ACL_DEVICE, "d1", "devices/d1/events"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "devices/d1/events/x"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "devices/d2/telemetry"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "devices/d10/telemetry"));
    assert_false(pub(KF_ACL_DEVICE, "d10", "devices/d1/telemetry"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "devices/d1/commands/x"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "devices/d1/telemetryx"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "devices/d1"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "$SYS/devices/d1/telemetry"));
    assert_false(pub(KF_ACL_DEVICE, "d1", "/devices/d1/telemetry"));

    assert_true(sub(KF_ACL_DEVICE, "d1", "devices/d1/commands/#"));
    assert_true(sub(KF_ACL_DEVICE, "d1", "devices/d1/commands"));
    assert_true(sub(KF_ACL_DEVICE, "d1", "devices/d1/commands/+/now"));
    assert_true(sub(KF_ACL_DEVICE, "d1", "devices/d1/updates/#"));
    assert_false(sub(KF_ACL_DEVICE, "d1", "devices/d1/#"));
    assert_false(sub(KF_ACL_DEVICE, "d1", "devices/+/commands/#"));
    assert_false(sub(KF_ACL_DEVICE, "d1", "devices/d2/commands/#"));
    assert_false(sub(KF_ACL_DEVICE, "d1", "#"));
    assert_false(sub(KF_ACL_DEVICE, "d1", "devices/d1/telemetry"));
    assert_false(sub(KF_ACL_DEVICE, "d1", "devices/d1/+/x"));
}

static void test_services(void **state)
{
    assert_true(sub(KF_ACL_READER, "dash", "devices/+/telemetry/#"));
    assert_true(sub(KF_ACL_READER, "dash", "devices/+/telemetry"));
    assert_true(sub(KF_ACL_READER, "dash", "devices/d1/telemetry/temp"));
    assert_true(sub(KF_ACL_READER, "dash", "devices/+/events"));
    assert_true(sub(KF_ACL_READER, "dash", "devices/d1/events"));
    assert_false(sub(KF_ACL_READER, "dash", "devices/#"));
    assert_false(sub(KF_ACL_READER, "dash", "devices/+/#"));
    assert_false(sub(KF_ACL_READER, "dash", "devices/+/+"));
    assert_false(sub(KF_ACL_READER, "dash", "devices/+/commands/#"));
    assert_false(sub(KF_ACL_READER, "dash", "devices/+/events/#"));
    assert_false(sub(KF_ACL_READER, "dash", "#"));
    assert_false(sub(KF_ACL_READER, "dash", "devices/Bad/telemetry"));
    assert_false(pub(KF_ACL_READER, "dash", "devices/d1/commands/x"));
    assert_false(pub(KF_ACL_READER, "dash", "devices/d1/telemetry"));

    assert_true(sub(KF_ACL_COMMANDER, "ops", "devices/+/telemetry/#"));
    assert_true(pub(KF_ACL_COMMANDER, "ops", "devices/d1/commands/reboot"));
    assert_true(pub(KF_ACL_COMMANDER, "ops", "devices/d1/commands"));
    assert_false(pub(KF_ACL_COMMANDER, "ops", "devices/d1/updates/x"));
    assert_false(pub(KF_ACL_COMMANDER, "ops", "devices/d1/telemetry"));
    assert_false(pub(KF_ACL_COMMANDER, "ops", "devices/UPPER/commands"));
    assert_false(sub(KF_ACL_COMMANDER, "ops", "devices/+/commands/#"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device),
        cmocka_unit_test(test_services),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
