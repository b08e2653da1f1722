/*
 * sesscache: the hub's TLS session cache, small. OpenSSL's own cache keeps each session as a live
 * object holding the client's parsed certificate and decoded key (about 6 KB); this one keeps the
 * session's DER encoding with the certificate taken out (a few hundred bytes) and, beside it, the
 * identity the hub read from that certificate. A resumed connection gets the identity back
 * instead of a certificate, so resumption stays as cheap as with OpenSSL's cache (no certificate
 * to parse) while an idle connection costs a fraction of it.
 *
 * Sessions are found by id, expire after the timeout, and the oldest go first beyond the bound.
 * One lock: the workers share the hub's SSL_CTX.
 */
#ifndef KF_SERVER_HUB_SESSCACHE_H
#define KF_SERVER_HUB_SESSCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "common/err.h"

#define KF_SESSCACHE_IDENT_MAX 224 /* bytes of identity kept per session */

struct kf_sesscache;

/*
 * `ident` fills `out` (capacity KF_SESSCACHE_IDENT_MAX) with the identity of a new session's
 * peer certificate (`peer` NULL on a resumed connection, whose session carried none: the identity
 * it was resumed with) and returns its length, or 0 to keep the session out of the cache; it sets
 * `*not_after` to the certificate's notAfter, beyond which the session is never resumed (nor is
 * it kept: a session lasts no longer than the certificate that proved it). `resumed` hands a
 * resumed connection its identity back. Both are called on the connection's worker.
 */
struct kf_sesscache_hooks {
    size_t (*ident)(SSL *ssl, X509 *peer, uint8_t *out, time_t *not_after);
    void (*resumed)(SSL *ssl, const uint8_t *ident, size_t len);
};

/* A cache of at most `max` sessions, each resumable for `timeout_s`, installed on `ctx`. */
enum kf_err kf_sesscache_new(SSL_CTX *ctx, size_t max, long timeout_s,
                             const struct kf_sesscache_hooks *hooks, struct kf_sesscache **out);
void kf_sesscache_free(struct kf_sesscache *sc);

/* Sessions held now, and the bytes they take. */
size_t kf_sesscache_count(struct kf_sesscache *sc);
size_t kf_sesscache_bytes(struct kf_sesscache *sc);

/*
 * Removes the [3] peer-certificate element from a DER SSL_SESSION into `out` (capacity `cap`;
 * `out` may be `der`, to strip in place); -1 when the encoding is not one it understands.
 * Exposed for the tests.
 */
long kf_sesscache_strip_peer(const uint8_t *der, size_t len, uint8_t *out, size_t cap);

#endif
