/*
 * acl: which topics an identity on the hub may use. Pure functions over topic bytes.
 *
 *   a device <id>      publishes  devices/<id>/telemetry, devices/<id>/telemetry/..., and
 *                                 devices/<id>/events;
 *                      subscribes devices/<id>/commands/# and devices/<id>/updates/# (or any
 *                                 filter inside them);
 *   a service, reader  subscribes devices/+/telemetry/# and devices/+/events (or any filter
 *                                 inside them: one device, one telemetry stream);
 *   commander          what a reader may, and publishes devices/<any id>/commands[/...].
 *
 * A filter is granted only when every topic it can match is granted, so "devices/#" is refused
 * to everyone, and "devices/+/commands/#" to devices.
 */
#ifndef KF_SERVER_HUB_ACL_H
#define KF_SERVER_HUB_ACL_H

#include <stddef.h>
#include <stdint.h>

enum kf_acl_kind {
    KF_ACL_DEVICE = 1,
    KF_ACL_READER = 2,
    KF_ACL_COMMANDER = 3,
};

struct kf_acl_identity {
    enum kf_acl_kind kind;
    const char *id; /* the device id or the service name (borrowed) */
};

/* 1 when `who` may publish to topic name `topic[0..len)` (a valid topic name). */
int kf_acl_publish(const struct kf_acl_identity *who, const uint8_t *topic, size_t len);

/* 1 when `who` may subscribe to `filter[0..len)` (a valid topic filter). */
int kf_acl_subscribe(const struct kf_acl_identity *who, const uint8_t *filter, size_t len);

#endif
