/*
 * device_priv: what libkeyfleet's own modules (the update client) need of a device, behind
 * the public API: its operational TLS identity toward keyfleetd's provisioning URL and its data
 * directory. Not installed, not exported.
 */
#ifndef KF_DEVICE_DEVICE_PRIV_H
#define KF_DEVICE_DEVICE_PRIV_H

#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "device/tls_client.h"

struct kf_device;

struct kf_device_link {
    struct kf_tlsc *tls; /* the operational identity and the trust (borrowed) */
    const char *host, *prefix, *dir;
    int port, timeout_ms;
    /* how the device reports an event (type, severity, detail as JSON object text) */
    int (*report)(void *ctx, const char *type, const char *severity, const char *detail_json);
    void *report_ctx;
};

/* Fills `out` (borrowed from `d`); KF_E_CONFLICT while the device is not provisioned. */
enum kf_err kf_device_link(struct kf_device *d, struct kf_device_link *out);

/*
 * The update client (keyfleet/update.h) on a link rather than a device: what keyfleet-sim's
 * virtual devices use. Same contracts as kf_update_check, _download, _floor, _installed; the
 * data directory is l->dir.
 */
struct kf_update_offer;
enum kf_err kf_update_check_at(const struct kf_device_link *l, const char *root_path,
                               const char *hardware, time_t now, struct kf_update_offer *offer);
enum kf_err kf_update_download_at(const struct kf_device_link *l,
                                  const struct kf_update_offer *offer, const char *path);
enum kf_err kf_update_floor_at(const struct kf_device_link *l, int64_t *version);
enum kf_err kf_update_installed_at(const struct kf_device_link *l, int64_t version);

#endif
