/*
 * keyfleet/update.h: signed software updates on the device (TUF 1.0, docs/updates.md).
 *
 *   kf_update_check()     refreshes the update metadata from keyfleetd over the device's mutual
 *                         TLS, verifying it the way TUF's client workflow says (root chain,
 *                         timestamp, snapshot, targets: signatures, thresholds, versions, expiry,
 *                         hashes), keeps what it trusts, asks keyfleetd which release a rollout
 *                         offers this device, and offers it only if it is signed, for this
 *                         hardware and newer than the installed one
 *   kf_update_download()  fetches it, resuming a broken download, refusing any byte beyond the
 *                         signed length and any content whose hashes are not the signed ones
 *   kf_update_installed() raises the installed version, which never goes down (anti-rollback)
 *
 * The data directory keeps `tuf/` (the metadata trusted so far, written atomically; its first
 * root is the one the device shipped with) and `update.floor` (the installed version). A release
 * offered below the floor is refused and reported (`update.rollback_refused`); one for other
 * hardware or not signed is `update.failed`; the installed one again is `update.current` (each
 * once per release offered). Each step is an event,
 * queued durably like the device's own: `update.downloading`, `update.verified`, `update.failed`
 * (with a reason), and the caller's `update.installing`, `update.installed`, `update.confirmed`,
 * `update.reverted`.
 *
 * Functions return 0 or a keyfleet error code (keyfleet/err.h); kf_device_errmsg() has the
 * sentence. They block for the network (each request bounded by the device's io_timeout_ms):
 * call them from the thread that runs the device.
 */
#ifndef KEYFLEET_UPDATE_H
#define KEYFLEET_UPDATE_H

#include "keyfleet/export.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "keyfleet/device.h"

struct kf_update_offer {
    int available;     /* 1: a release newer than the installed one, for this hardware */
    char name[256];    /* the target's name in the repository */
    uint64_t length;   /* bytes */
    int64_t version;   /* its version (the target's custom "version") */
    int64_t installed; /* the installed version (the floor) */
};

/*
 * Refreshes and verifies the metadata. `root_path`: the TUF root the device shipped with (used
 * the first time only; later the trusted one in the data directory). `hardware`: this device's
 * hardware id. `now`: the time the device trusts (0: the clock).
 */
KF_EXPORT int kf_update_check(struct kf_device *dev, const char *root_path, const char *hardware,
                              time_t now, struct kf_update_offer *offer);

/*
 * Downloads the offer into `path` (through `path`.part, renamed once verified). A part left by a
 * broken download is checked and resumed. On a length or hash mismatch the part is deleted.
 */
KF_EXPORT int kf_update_download(struct kf_device *dev, const struct kf_update_offer *offer,
                                 const char *path);

/* The installed version (0: none recorded). */
KF_EXPORT int kf_update_floor(struct kf_device *dev, int64_t *version);

/* Records `version` as installed; KF_E_DENIED for a version below the recorded one. */
KF_EXPORT int kf_update_installed(struct kf_device *dev, int64_t version);

#endif
