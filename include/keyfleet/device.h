/*
 * keyfleet/device.h: libkeyfleet's Linux layer: a device's whole life with keyfleet behind a few
 * calls, on sockets, OpenSSL and files.
 *
 *   kf_device_open()     reads the data directory (identity, queued events), notices a crash
 *   kf_device_run()      one turn of the loop: provisions when there is no identity, connects
 *                        to the hub, renews at renewAfter, reconnects with back-off, delivers
 *                        queued telemetry and events, hands commands to the caller
 *   kf_device_publish()  telemetry on devices/<id>/telemetry[/<sub>]
 *   kf_report_event()    a security event, queued durably until the hub acknowledges it
 *   kf_device_close()    flushes, says goodbye to the hub, marks a clean end
 *
 * The caller owns the loop: call kf_device_run() with the longest wait it may take, as often as
 * you like, from one thread. The MQTT state machine underneath (keyfleet/mqtt_client.h) is the
 * portable core: it allocates nothing and is what a microcontroller port would keep.
 *
 * The data directory (created 0700) holds `identity.json` (device id, hub, certificate chain,
 * trust bundle, renewAfter, and the URI of the operational key, written atomically), the
 * operational key when it is a file (`op-<n>.key`, 0600) or a TPM blob (`op-<n>.tss2`), the event
 * log (`events.log`, `events.acked`) and `running` while the device runs. A key in a TPM or a
 * PKCS#11 token never leaves it: new keys are made where the factory key lives.
 *
 * Functions returning int return 0 or a keyfleet error code (enum kf_err, keyfleet/err.h);
 * kf_device_errmsg() has the sentence.
 */
#ifndef KEYFLEET_DEVICE_H
#define KEYFLEET_DEVICE_H

#include "keyfleet/export.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "keyfleet/err.h"

struct kf_device;

struct kf_device_config {
    const char *data_dir;         /* required */
    const char *provisioning_url; /* https://host:port of keyfleetd's provisioning */
    const char *factory_cert;     /* PEM file: the factory certificate (and its chain) */
    const char *factory_key;      /* key URI: a file, pkcs11:..., tpm2:handle:0x..., tpm2:/x.tss2 */
    const char *trust_anchor;     /* PEM file: the root that keyfleetd's certificates chain to */
    const char *hub;              /* "host:port" instead of the assigned hub (NULL: assigned) */
    int use_est;                  /* 1: first certificate by EST simpleenroll, not register */
    int mqtt_version;             /* 4 (3.1.1, the default) or 5 */
    int keep_alive_s;             /* 0: 60 */
    size_t queue_bytes;           /* outbound MQTT queue (0: 256 KiB) */
    size_t event_log_bytes;       /* bound of the event log (0: 1 MiB) */
    int io_timeout_ms;            /* each provisioning request, each handshake (0: 15,000) */
    uint32_t backoff_max_ms;      /* ceiling of the retry back-off (0: 300,000) */
    void *ctx;                    /* given back to the callbacks */
    /* A message on devices/<id>/commands/<name>; `name` is NUL-terminated. */
    void (*command_cb)(void *ctx, struct kf_device *dev, const char *name, const uint8_t *payload,
                       size_t len);
    /* "provisioned", "connected", "disconnected", "renewed": for logs and progress lines;
     * "update": keyfleetd offers the device a release (detail: its notice), time to call
     * kf_update_check() (keyfleet/update.h). */
    void (*state_cb)(void *ctx, struct kf_device *dev, const char *what, const char *detail);
};

struct kf_device_info {
    char device_id[128];
    char hub[300];
    int provisioned, connected;
    time_t not_after, renew_after;
    int generation;        /* how many certificates this device has had */
    size_t queued;         /* messages waiting in the MQTT queue */
    size_t events_pending; /* events not yet acknowledged by the hub */
    uint64_t published, delivered, commands, renewals, connects;
    const char *key_location; /* "file", "tpm2", "pkcs11" */
};

/* Opens the device (the config is copied). `*out` is freed with kf_device_close(). */
KF_EXPORT int kf_device_open(const struct kf_device_config *cfg, struct kf_device **out);

/*
 * Does what is due and waits for the network at most `timeout_ms`. Returns 0 while the device
 * goes on (failures to reach the servers are retried, reported and not returned); an error only
 * for what retrying cannot fix (an unusable data directory, a factory key that cannot be loaded).
 */
KF_EXPORT int kf_device_run(struct kf_device *dev, int timeout_ms);

/*
 * Queues telemetry on devices/<id>/telemetry, or devices/<id>/telemetry/<sub> when `sub` is
 * given, at `qos` 0 or 1. KF_E_BUSY when the queue is full (nothing queued), KF_E_DISABLED before
 * the device has an identity.
 */
KF_EXPORT int kf_device_publish(struct kf_device *dev, const char *sub, const void *payload,
                                size_t len, int qos);

/*
 * Reports a security event: `type` "device.<name>", `severity` "info", "warning" or "critical"
 * (NULL: warning), `detail_json` a JSON object (NULL: {}). It is written to the event log before
 * this returns and sent, in order, whenever the device is connected; the detail gains "seq" and
 * "raised" (RFC 3339). KF_E_INVALID for a bad type, severity or detail.
 */
KF_EXPORT int kf_report_event(struct kf_device *dev, const char *type, const char *severity,
                              const char *detail_json);

/* Renews the certificate at the next turn instead of at renewAfter. */
KF_EXPORT void kf_device_renew_soon(struct kf_device *dev);

/* The device's state now. */
KF_EXPORT void kf_device_info(const struct kf_device *dev, struct kf_device_info *out);

/* The socket to wait on (-1 when not connected), for callers with their own poll loop. */
KF_EXPORT int kf_device_fd(const struct kf_device *dev);

/*
 * Delivers what it can within `flush_ms`, disconnects, and frees. A device closed this way
 * reports no crash on its next open. NULL is fine.
 */
KF_EXPORT void kf_device_close(struct kf_device *dev, int flush_ms);

/* The sentence explaining the last error on this thread. */
KF_EXPORT const char *kf_device_errmsg(void);

#endif
