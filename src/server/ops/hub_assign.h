/*
 * hub_assign: which hub a device is told to connect to, from the enrollment's allocation policy.
 *
 *   static   the hub the enrollment names; it must exist and be enabled.
 *   hashed   (the default) weighted rendezvous, or highest-random-weight, hashing of the device
 *            id over the enabled hubs of positive weight: every hub scores the device and the
 *            highest score wins. A device keeps its hub as long as that hub stays; adding a hub
 *            moves to it only the devices it now wins (about its share of the total weight),
 *            and removing or disabling a hub moves only the devices it had, spread over the
 *            others in proportion to their weights. The answer does not depend on the order of
 *            the hubs.
 *
 * The score, fixed forever (changing any part of it would move devices between hubs):
 *
 *   h     = SipHash-2-4 (Aumasson and Bernstein, 2012) with the 16-byte key "keyfleet-alloc-1"
 *           (ASCII) over the bytes of the hub name, one 0x00 byte, and the bytes of the device
 *           id; the 64-bit result as the reference implementation returns it (its 8 output
 *           bytes read little-endian).
 *   U     = ((h >> 12) + 0.5) / 2^52, a double strictly inside (0, 1), computed exactly.
 *   score = -weight / ln(U), with ln computed by kf_hub_assign_score's own routine from IEEE-754
 *           double additions, multiplications and divisions only (no libm, no fused
 *           multiply-add), so it is bit for bit the same on every machine, compiler and C
 *           library.
 *   Equal scores (never seen in practice) go to the hub whose name sorts first (strcmp).
 *
 * The key is not a secret: it only keeps these hashes apart from other uses of SipHash.
 */
#ifndef KF_SERVER_OPS_HUB_ASSIGN_H
#define KF_SERVER_OPS_HUB_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "server/store/store.h"

/* The most hubs kf_hub_assign considers in one call. */
#define KF_ALLOC_HUBS_MAX 4096

/*
 * Picks the hub for `device_id` (1 to KF_ID_MAX bytes) among `hubs[0..n)` by `policy`:
 * "hashed", "static", or NULL / "" for hashed. `static_hub` is the hub's name for the static
 * policy and ignored otherwise. All pointers are borrowed; on success the chosen hub is copied
 * into `*out` (left untouched on failure).
 *
 * Errors:
 *   KF_E_INVALID     unknown policy; static without a hub name; no device id, or one longer
 *                    than KF_ID_MAX; more than KF_ALLOC_HUBS_MAX hubs; a hub name not
 *                    terminated within its field
 *   KF_E_NOT_FOUND   static: "hub \"NAME\" of the static allocation does not exist";
 *                    hashed: "no enabled hub to assign" (none enabled with weight > 0)
 *   KF_E_DISABLED    static: "hub \"NAME\" of the static allocation is disabled"
 * A statically named hub may have weight 0: weight only steers hashed allocation.
 */
enum kf_err kf_hub_assign(const struct kf_hub_rec *hubs, size_t n, const char *device_id,
                          const char *policy, const char *static_hub, struct kf_hub_rec *out);

/*
 * The hash `h` above of (`hub`, `device_id`), both NUL-terminated and borrowed. Exposed so that
 * tests pin it; callers use kf_hub_assign.
 */
uint64_t kf_hub_assign_hash(const char *hub, const char *device_id);

/*
 * The score above of a hub of `weight` (> 0) whose hash with the device is `h`; larger wins.
 * Exposed so that tests pin it.
 */
double kf_hub_assign_score(int weight, uint64_t h);

/*
 * SipHash-2-4 of `in[0..n)` under the 16-byte `key`, both borrowed; the reference
 * implementation's output bytes read little-endian. Exposed so that tests check it against the
 * published vectors and OpenSSL.
 */
uint64_t kf_hub_assign_siphash(const unsigned char key[16], const void *in, size_t n);

#endif
