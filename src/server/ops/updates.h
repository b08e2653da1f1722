/*
 * updates: the deployment's TUF repository of signed software (updates/ in the deployment).
 *
 * The vendor signs root and targets metadata offline (keyfleet-release); keyfleet never holds
 * their keys. What it holds are the two online roles' keys ([ca] update_timestamp_key and
 * update_snapshot_key: files in updates/keys/, mode 0600, or keys in hardware; each used
 * through server/ca/tufsign, which checks what it signs): it makes and signs snapshot and
 * timestamp metadata, which say which targets metadata is current and
 * that the repository is fresh. Everything it publishes goes to updates/repo/:
 *
 *   metadata/N.root.json  every root version (a client walks the chain from the one it has)
 *   metadata/root.json    the newest root
 *   metadata/N.targets.json, metadata/N.snapshot.json, metadata/timestamp.json
 *   targets/[dir/]HASH.name   each image under its sha256 and its sha512 (consistent snapshots)
 *
 * timestamp.json is written last, so a client never sees a timestamp naming a file that is not
 * there yet. What comes in is checked before anything is written: the root chain (a new root is
 * version N+1 signed by a threshold of N's root keys and of its own), the targets' signatures by
 * the root's targets keys, versions that only go up, each image against the length and hashes
 * the vendor signed, and a root that trusts this deployment's online keys.
 */
#ifndef KF_SERVER_OPS_UPDATES_H
#define KF_SERVER_OPS_UPDATES_H

#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "common/tuf.h"
#include "server/ca/deploy.h"
#include "server/ca/tufsign.h"

/* a timestamp expires after a day, a snapshot after a week (the signer refuses longer): keyfleetd
 * renews them */
#define KF_UPDATES_TIMESTAMP_DAYS KF_TUF_TIMESTAMP_DAYS
#define KF_UPDATES_SNAPSHOT_DAYS  KF_TUF_SNAPSHOT_DAYS

/*
 * The online keys' public TUF key objects, {"timestamp": {...}, "snapshot": {...}}; a key file
 * that is not there yet is made (ed25519, audited "release.keys"), a key in hardware must be. The
 * vendor names them in the root (keyfleet-release init-root --timestamp --snapshot). `*out` owned
 * by the caller.
 */
enum kf_err kf_updates_keys(struct kf_deploy *d, const char *actor, json_t **out);

/* An image given for a target: its name in the targets metadata and the file. */
struct kf_updates_image {
    const char *name;
    const char *path;
};

struct kf_updates_result {
    int64_t root_version, targets_version, snapshot_version, timestamp_version;
    size_t images_added;
};

/*
 * Publishes vendor-signed `root_path` (the current root again, or version N+1) and
 * `targets_path` (a version above the current one) with the images of its new targets, then a
 * new snapshot and timestamp. Refusals name what failed and why (the TUF refusal name); nothing
 * is published then. Audited "release.add".
 */
enum kf_err kf_updates_add(struct kf_deploy *d, const char *actor, const char *root_path,
                           const char *targets_path, const struct kf_updates_image *images,
                           size_t n_images, struct kf_updates_result *out);

/*
 * Renews the online roles before they expire: a new snapshot when less than half of its life is
 * left, and a new timestamp when less than half of its life is left (or a new snapshot came),
 * or both when `force`. `*renewed` says whether anything was written. Nothing published: a no-op.
 */
enum kf_err kf_updates_refresh(struct kf_deploy *d, int force, int *renewed);

/*
 * The published targets (from the current targets metadata), each with `cb`; and the current
 * versions in `out` (all 0: nothing published).
 */
enum kf_err kf_updates_list(struct kf_deploy *d,
                            void (*cb)(const struct kf_tuf_target *t, void *arg), void *arg,
                            struct kf_updates_result *out);

/*
 * Revokes release `name` on the server (a target of the published targets, or, with `known`,
 * a name the caller knows from elsewhere, such as a rollout of a release the vendor took out
 * already; KF_E_NOT_FOUND otherwise): audited "release.revoke", then kept in
 * DIR/updates/revoked.json (0600), which kf_rollout_create reads in its transaction, so that no
 * rollout offers it again. The signed metadata still lists it until the vendor publishes
 * targets without it (keyfleet-release targets --remove). `*was` (may be NULL) says whether it
 * was revoked already.
 */
enum kf_err kf_updates_revoke(struct kf_deploy *d, const char *actor, const char *name,
                              const char *reason, int known, int *was);

/* Whether `name` is revoked; `*why` (may be NULL, owned by the caller) the record. */
enum kf_err kf_updates_revoked(struct kf_deploy *d, const char *name, int *yes, json_t **why);

#endif
