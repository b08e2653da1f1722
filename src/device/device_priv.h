/*
 * device_priv: what libkeyfleet's own modules (the update client) need of a device, behind
 * the public API: its operational TLS identity toward keyfleetd's provisioning URL and its data
 * directory. Not installed, not exported.
 */
#ifndef KF_DEVICE_DEVICE_PRIV_H
#define KF_DEVICE_DEVICE_PRIV_H

#include "common/err.h"
#include "device/tls_client.h"

struct kf_device;

struct kf_device_link {
    struct kf_tlsc *tls; /* the operational identity and the trust (borrowed) */
    const char *host, *prefix, *dir;
    int port, timeout_ms;
};

/* Fills `out` (borrowed from `d`); KF_E_CONFLICT while the device is not provisioned. */
enum kf_err kf_device_link(struct kf_device *d, struct kf_device_link *out);

#endif
