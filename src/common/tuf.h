/*
 * tuf: The Update Framework 1.0's metadata: verified the way section 5 of the specification
 * tells a client, and made and signed for the vendor's tools and keyfleetd.
 *
 * The verifier is pure: no I/O and no clock (the caller passes the time it trusts), bytes in,
 * a verdict out, over jansson and OpenSSL. It holds the client's trusted set: root, then
 * timestamp, snapshot and targets, each accepted only when the one before it allows:
 *
 *   kf_tuf_trusted_new(root it shipped with)        the root it trusts, signed by itself
 *   kf_tuf_update_root(N+1.root.json) ...            each signed by a threshold of the old
 *                                                    root's keys and of its own, version N+1
 *   kf_tuf_root_done(now)                            the final root has not expired
 *   kf_tuf_update_timestamp(timestamp.json, now)     no rollback, not expired
 *   kf_tuf_update_snapshot(N.snapshot.json, now)     the length and hashes the timestamp
 *                                                    gives, the version it names, no rollback
 *   kf_tuf_update_targets(N.targets.json, now)       the length, hashes and version the
 *                                                    snapshot gives
 *   kf_tuf_target(path) and kf_tuf_stream_*          a target's length and hashes, enforced
 *                                                    as its bytes arrive
 *
 * Signatures count toward a role's threshold once per key: two signatures by one key, or one
 * key listed under two key ids, count once. A key's id must be the SHA-256 of its canonical
 * form (section 4.2), else it counts for nothing. Key types: ed25519, and ecdsa-sha2-nistp256
 * (PEM public keys, DER signatures over SHA-256). Delegated targets roles are not followed:
 * keyfleet's repositories have none.
 *
 * Each call returns KF_TUF_OK or why it refused, and leaves the details as this thread's error
 * message (kf_errmsg); the names (kf_tuf_refusal_name) are stable, for events.
 */
#ifndef KF_COMMON_TUF_H
#define KF_COMMON_TUF_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "common/buf.h"
#include "common/err.h"

#define KF_TUF_SPEC_VERSION "1.0.31"
#define KF_TUF_KEYID_HEX    65 /* 64 hex digits and the NUL */
#define KF_TUF_PATH_MAX     256

enum kf_tuf_role { KF_TUF_ROOT, KF_TUF_TIMESTAMP, KF_TUF_SNAPSHOT, KF_TUF_TARGETS, KF_TUF_ROLES };

enum kf_tuf_refusal {
    KF_TUF_OK = 0,
    KF_TUF_MALFORMED,     /* not TUF metadata of that role: JSON, fields, types, sizes */
    KF_TUF_SIGNATURES,    /* fewer good signatures than the role's threshold */
    KF_TUF_ROLLBACK,      /* a version lower than one trusted (or a root that is not N+1) */
    KF_TUF_EXPIRED,       /* expired at the time given: a freeze */
    KF_TUF_MIX_AND_MATCH, /* not the version the metadata above it names */
    KF_TUF_HASH,          /* not the length or hashes the metadata above it gives */
    KF_TUF_TOO_LONG,      /* more bytes than it may have: endless data */
    KF_TUF_UNKNOWN,       /* no such target */
    KF_TUF_ORDER,         /* called before what it depends on was trusted */
    KF_TUF_UNCHANGED,     /* the same timestamp version as the trusted one: nothing new */
};

/* "malformed", "signatures", "rollback", "expired", "mix_and_match", "hash", "too_long", ... */
const char *kf_tuf_refusal_name(enum kf_tuf_refusal r);

/* "root", "timestamp", "snapshot", "targets" */
const char *kf_tuf_role_name(enum kf_tuf_role r);

/* ---- the client: a trusted set ---- */

struct kf_tuf_trusted;

/*
 * A trusted set from the root metadata the client already trusts (`root[0..len)`), which must
 * be signed by a threshold of its own root keys. `*out` owned by the caller.
 */
enum kf_tuf_refusal kf_tuf_trusted_new(const uint8_t *root, size_t len,
                                       struct kf_tuf_trusted **out);
void kf_tuf_trusted_free(struct kf_tuf_trusted *t);

/* The next root, version N+1: signed by a threshold of the trusted root's keys and its own. */
enum kf_tuf_refusal kf_tuf_update_root(struct kf_tuf_trusted *t, const uint8_t *b, size_t len);

/* Once no newer root is found: the final root must not have expired at `now`. */
enum kf_tuf_refusal kf_tuf_root_done(struct kf_tuf_trusted *t, time_t now);

/*
 * Timestamp metadata. KF_TUF_UNCHANGED when it has the trusted one's version (the trusted one
 * stays). A newer one becomes trusted even when it has expired (so that it bounds what comes
 * next), and KF_TUF_EXPIRED is returned: the client must not go on, nor keep it.
 */
enum kf_tuf_refusal kf_tuf_update_timestamp(struct kf_tuf_trusted *t, const uint8_t *b, size_t len,
                                            time_t now);

/*
 * Snapshot metadata. `local`: a copy the client kept, whose length and hashes are not checked
 * against the timestamp (its version still is). Expired: trusted, KF_TUF_EXPIRED returned.
 */
enum kf_tuf_refusal kf_tuf_update_snapshot(struct kf_tuf_trusted *t, const uint8_t *b, size_t len,
                                           time_t now, int local);

/* Top-level targets metadata (`local` as for the snapshot). */
enum kf_tuf_refusal kf_tuf_update_targets(struct kf_tuf_trusted *t, const uint8_t *b, size_t len,
                                          time_t now, int local);

/* The trusted version of `role` (0: none trusted) and its expiry. */
int64_t kf_tuf_version(const struct kf_tuf_trusted *t, enum kf_tuf_role role);
time_t kf_tuf_expires(const struct kf_tuf_trusted *t, enum kf_tuf_role role);

/* Whether the root says files are named by version ("N.snapshot.json") and targets by hash. */
int kf_tuf_consistent_snapshot(const struct kf_tuf_trusted *t);

/* The version and length (0: not given) the trusted metadata gives for `role`'s file. */
enum kf_tuf_refusal kf_tuf_meta_of(const struct kf_tuf_trusted *t, enum kf_tuf_role role,
                                   int64_t *version, uint64_t *length);

/*
 * Whether `b[0..len)` is metadata of `role` signed by a threshold of that role's keys in root
 * metadata `root` (itself checked only for form): what a vendor checks before publishing, and
 * keyfleetd before it takes targets metadata. `*version` is the metadata's version.
 */
enum kf_tuf_refusal kf_tuf_verify_role(const uint8_t *root, size_t root_len, enum kf_tuf_role role,
                                       const uint8_t *b, size_t len, int64_t *version);

/* ---- targets ---- */

struct kf_tuf_target {
    char path[KF_TUF_PATH_MAX];
    uint64_t length;
    int has_sha256, has_sha512;
    unsigned char sha256[32], sha512[64];
    const json_t *custom; /* borrowed from the trusted targets (NULL: none) */
};

/* Reads target `path`'s entry `e` of targets metadata (verified elsewhere) into `out`. */
enum kf_tuf_refusal kf_tuf_target_of(const char *path, const json_t *e, struct kf_tuf_target *out);

/* The target `path` in the trusted targets metadata: KF_TUF_UNKNOWN when there is none. */
enum kf_tuf_refusal kf_tuf_target(const struct kf_tuf_trusted *t, const char *path,
                                  struct kf_tuf_target *out);

/* Calls `cb` for each target of the trusted targets metadata, in path order. */
void kf_tuf_targets_each(const struct kf_tuf_trusted *t,
                         void (*cb)(const struct kf_tuf_target *tg, void *arg), void *arg);

/* A target's bytes checked as they arrive: never more than its length, then its hashes. */
struct kf_tuf_stream {
    struct kf_tuf_target target;
    uint64_t seen;
    EVP_MD_CTX *sha256, *sha512;
};
enum kf_err kf_tuf_stream_init(struct kf_tuf_stream *s, const struct kf_tuf_target *target);
/* KF_TUF_TOO_LONG as soon as more than the target's length has come. */
enum kf_tuf_refusal kf_tuf_stream_update(struct kf_tuf_stream *s, const void *p, size_t n);
/* KF_TUF_HASH when fewer bytes came or a hash differs. Frees what init took. */
enum kf_tuf_refusal kf_tuf_stream_final(struct kf_tuf_stream *s);
void kf_tuf_stream_free(struct kf_tuf_stream *s);

/* ---- making metadata (the vendor's tool, keyfleetd's online roles) ---- */

/*
 * The TUF key object of public key `pk` ({"keytype", "scheme", "keyval": {"public"}}: ed25519 as
 * hex, P-256 as PEM) and its key id. KF_E_INVALID for another key type.
 */
enum kf_err kf_tuf_key_of(EVP_PKEY *pk, json_t **key, char keyid[KF_TUF_KEYID_HEX]);

/* The key id of a key object: the SHA-256 of its canonical form, hex. */
enum kf_err kf_tuf_keyid(const json_t *key, char keyid[KF_TUF_KEYID_HEX]);

/* Signs `msg[0..len)` into `sig` (at most `*siglen` bytes; set to the length). */
typedef enum kf_err (*kf_tuf_sign_cb)(const uint8_t *msg, size_t len, uint8_t *sig, size_t *siglen,
                                      void *arg);

/*
 * Adds the signature of key `keyid` over the canonical form of `doc`'s "signed" to its
 * "signatures", replacing one by the same key id. `doc` is {"signed": ..., "signatures": [...]}.
 */
enum kf_err kf_tuf_sign_with(json_t *doc, const char *keyid, kf_tuf_sign_cb sign, void *arg);

/* kf_tuf_sign_with over private key `key` (ed25519 or P-256). */
enum kf_err kf_tuf_sign(json_t *doc, EVP_PKEY *key);

/* Sign callback over an EVP_PKEY (`arg`): ed25519 raw, P-256 SHA-256 DER. */
enum kf_err kf_tuf_sign_pkey(const uint8_t *msg, size_t len, uint8_t *sig, size_t *siglen,
                             void *arg);

/*
 * Sign callback over a `struct kf_key` (`arg`, common/pki_key: a key file, or one in a PKCS#11
 * token or a TPM): ed25519 raw, P-256 SHA-256 DER, as TUF's schemes want.
 */
enum kf_err kf_tuf_sign_key(const uint8_t *msg, size_t len, uint8_t *sig, size_t *siglen,
                            void *arg);

/*
 * Whether `name` may name a target keyfleet publishes: a relative path of letters, digits and
 * ._-+/, no empty level, no "..", shorter than KF_TUF_PATH_MAX (it becomes a file path).
 */
int kf_tuf_name_ok(const char *name);

/* `n` bytes as lower-case hex into `out` (2n+1 bytes). */
void kf_tuf_hex(const unsigned char *b, size_t n, char *out);

/* "2026-12-07T10:00:00Z" for `when` (UTC) into `out` (at least 21 bytes). */
void kf_tuf_time(time_t when, char *out, size_t cap);

/* `doc` as the text of a metadata file (sorted keys, indented, a newline at the end). */
enum kf_err kf_tuf_text(const json_t *doc, struct kf_buf *out);

/*
 * Reads and checks one metadata file of `role` without trusting it: the JSON, the fields, the
 * signatures' form. `*doc` is the whole document (owned); `*version` its version.
 */
enum kf_tuf_refusal kf_tuf_parse(const uint8_t *b, size_t len, enum kf_tuf_role role, json_t **doc,
                                 int64_t *version);

#endif
