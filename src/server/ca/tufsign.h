/*
 * tufsign: the one door to the signed-update repository's online keys (timestamp, snapshot).
 *
 * Like the CA's signer, it does not sign what it is handed: it signs only metadata of its own
 * role that it has read back and checked (the TUF fields, a version, an expiry no further than
 * the role's lifetime, and meta that names only what the role may name: the snapshot for a
 * timestamp, the targets for a snapshot), so that whoever reaches this call cannot make it vouch
 * for anything else. The key may be a file (ed25519 or P-256, made by keyfleet release keys) or
 * a key in hardware, as the issuing CA's: pkcs11: (P-256) or tpm2: URIs (pki_key).
 */
#ifndef KF_SERVER_CA_TUFSIGN_H
#define KF_SERVER_CA_TUFSIGN_H

#include <time.h>

#include <jansson.h>

#include "common/err.h"
#include "common/tuf.h"

struct kf_tuf_signer;

/*
 * Opens the key at `key_uri` for online role `role` (KF_TUF_TIMESTAMP or KF_TUF_SNAPSHOT). Only
 * ed25519 and P-256 keys (the TUF key types keyfleet uses). `*out` owned by the caller.
 */
enum kf_err kf_tuf_signer_open(enum kf_tuf_role role, const char *key_uri,
                               struct kf_tuf_signer **out);

/* The TUF key object of the signer's key (borrowed) and its key id. */
const json_t *kf_tuf_signer_key(const struct kf_tuf_signer *s);
const char *kf_tuf_signer_keyid(const struct kf_tuf_signer *s);

/* How long the metadata of each online role may live (the signer refuses longer). */
#define KF_TUF_TIMESTAMP_DAYS 1
#define KF_TUF_SNAPSHOT_DAYS  7

/*
 * Adds the signer's signature to `doc` ({"signed": ..., "signatures": [...]}) once it has
 * checked it: of the signer's role, well formed as clients read it (kf_tuf_parse), version
 * `published` + 1 (the version published before: never a jump that would freeze devices),
 * expiring after now (the signer's own clock) and within the role's lifetime, its meta naming
 * only "snapshot.json" (timestamp) or "targets.json" (snapshot) with a version no higher than
 * `meta_max` (what is published). KF_E_DENIED naming what is wrong otherwise.
 */
enum kf_err kf_tuf_signer_sign(struct kf_tuf_signer *s, json_t *doc, int64_t published,
                               int64_t meta_max);

void kf_tuf_signer_free(struct kf_tuf_signer *s);

#endif
