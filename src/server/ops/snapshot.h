/*
 * snapshot: what keyfleetd keeps in memory from the store and the deployment, as an immutable,
 * reference-counted snapshot that request handlers read without locks:
 *   - the group enrollments, their CAs parsed and gathered into two trust sets (the eligible
 *     groups, and all groups, so that a refusal can say a group is disabled or unverified);
 *   - the hubs;
 *   - keyfleet's root and issuing CAs, the issuing CA's CRL (for re-enrollment), and the answers
 *     that never change between snapshots (EST cacerts and csrattrs bodies, the trust bundle);
 *   - the configuration.
 * Individual enrollments are not cached: a request looks its own up in the store.
 *
 * A new snapshot is built when the store's registry version moves (any process changed
 * enrollments, hubs, or statuses) or on SIGHUP, and swapped in; requests in flight keep the
 * snapshot they started with.
 */
#ifndef KF_SERVER_OPS_SNAPSHOT_H
#define KF_SERVER_OPS_SNAPSHOT_H

#include <pthread.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cidr.h"
#include "common/pki_cert.h"
#include "common/pki_crl.h"
#include "common/pki_trust.h"
#include "server/ca/config.h"
#include "server/ca/deploy.h"
#include "server/store/store.h"

struct kf_reg_group {
    char id[KF_ID_MAX + 1];
    int enabled, verified;
    char fingerprint[KF_HASH_HEX]; /* SHA-256 of its CA's SubjectPublicKeyInfo */
    struct kf_cert *ca;
    int has_networks;
    struct kf_cidr_list networks;
    char allocation[16];
    char hub[KF_ID_MAX + 1];
    int approval_manual, require_binding;
};

struct kf_snapshot {
    int refs; /* atomic */
    int64_t version;
    uint64_t generation; /* grows with every snapshot built (SIGHUP and CRL reloads too) */
    struct kf_config cfg;
    struct kf_reg_group *groups;
    size_t n_groups;
    struct kf_trust *eligible;   /* enabled, verified group CAs */
    struct kf_trust *all_groups; /* every group CA */
    struct kf_hub_rec *hubs;
    size_t n_hubs;
    struct kf_cert *root, *issuing;
    struct kf_trust *operational; /* keyfleet's issuing CA, with its CRL when readable */
    struct kf_buf cacerts;        /* EST /cacerts body (base64 PKCS#7) */
    struct kf_buf csrattrs;       /* EST /csrattrs body */
    struct kf_buf root_pem;       /* the trust bundle handed to devices */
    struct kf_buf issuing_pem;    /* appended to issued certificates */
    struct kf_crl *crl;           /* the issuing CA's CRL, when readable; NULL otherwise */
    /* Devices that may not connect (disabled, revoked) and revoked services, sorted by id. */
    struct kf_reg_blocked *blocked;
    size_t n_blocked;
    /*
     * Every certificate of the issuing CA ever revoked, from the store, sorted: also those
     * past their notAfter, which a CRL leaves out, so that no window of the CRL's lets a revoked
     * serial back in (a resumed session carries no expiry check of OpenSSL's).
     */
    char (*revoked)[KF_SERIAL_HEX_MAX];
    size_t n_revoked;
    /* The CRL file as it was when this snapshot read it: a new one makes the snapshot stale. */
    struct kf_file_id {
        int64_t mtime_ns, size, ino;
    } crl_file;
};

/* A device or service the hub must keep out. */
struct kf_reg_blocked {
    int service; /* 0: a device, 1: a service */
    char id[KF_ID_MAX + 1];
    int status; /* enum kf_device_status, or KF_SERVICE_REVOKED */
};

/*
 * Builds a snapshot from the deployment's store and files, with `cfg` as its configuration
 * (copied). `*out` starts with one reference (kf_snapshot_release).
 */
enum kf_err kf_snapshot_load(struct kf_deploy *d, const struct kf_config *cfg,
                             struct kf_snapshot **out);

/* Another reference to `r`. */
struct kf_snapshot *kf_snapshot_ref(struct kf_snapshot *r);

/* Drops a reference; the last one frees the snapshot. NULL is fine. */
void kf_snapshot_release(struct kf_snapshot *r);

/* The group whose CA has SPKI fingerprint `fp`, or NULL. */
const struct kf_reg_group *kf_snapshot_group(const struct kf_snapshot *r, const char *fp);

/* The group enrollment named `id`, or NULL. */
const struct kf_reg_group *kf_snapshot_group_named(const struct kf_snapshot *r, const char *id);

/*
 * Whether device (`service` 0) or service (`service` 1) `id` is kept out: 0 when it may
 * connect, else its status (KF_DEVICE_DISABLED, KF_DEVICE_REVOKED, KF_SERVICE_REVOKED).
 */
int kf_snapshot_blocked(const struct kf_snapshot *r, int service, const char *id);

/*
 * 1 when certificate `serial_hex` (lower-case hex, as kf_cert_serial_hex writes it) is revoked:
 * the store says so (whether or not it has expired since), or the snapshot's CRL lists it.
 */
int kf_snapshot_cert_revoked(const struct kf_snapshot *r, const char *serial_hex);

/* The current snapshot, swapped atomically. */
struct kf_snapshot_holder {
    pthread_mutex_t lock;   /* guards `cur` */
    pthread_mutex_t reload; /* one reload at a time */
    struct kf_snapshot *cur;
};

void kf_snapshot_holder_init(struct kf_snapshot_holder *h, struct kf_snapshot *first);
void kf_snapshot_holder_destroy(struct kf_snapshot_holder *h);

/* A reference to the current snapshot (release it when done). */
struct kf_snapshot *kf_snapshot_get(struct kf_snapshot_holder *h);

/* Makes `next` (taken) current; the old one goes when its last user releases it. */
void kf_snapshot_set(struct kf_snapshot_holder *h, struct kf_snapshot *next);

/*
 * Builds a new snapshot from the deployment with `cfg` (copied) and makes it current. Reloads
 * are serialized, so a reload with a new configuration is never undone by one that started
 * before it with the old one. On error the current snapshot stays.
 */
enum kf_err kf_snapshot_reload(struct kf_snapshot_holder *h, struct kf_deploy *d,
                               const struct kf_config *cfg);

/*
 * The current snapshot, brought up to date first: when the store's registry version has moved
 * since it was loaded (the CLI or another process changed enrollments, hubs, statuses or
 * revocations), or the CRL file was replaced (`keyfleet ca crl`), it is reloaded with its own
 * configuration, by the first caller to notice while
 * the others wait for it. So a request that starts after `keyfleet enrollment disable` returned
 * sees the change. Costs one small read transaction when nothing changed. Never fails: when the
 * version cannot be read or the reload fails, the error is logged and the snapshot it has is
 * returned. Release the result.
 */
struct kf_snapshot *kf_snapshot_fresh(struct kf_snapshot_holder *h, struct kf_deploy *d);

#endif
