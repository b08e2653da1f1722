/*
 * ident: the identifiers keyfleet accepts for devices, registrations and enrollments.
 *
 * An id is 1 to 128 characters: a lower-case letter or digit, then lower-case letters, digits and
 * `.`, `_`, `:` or `-` (`[a-z0-9][a-z0-9._:-]{0,127}`).
 *
 * A device's id is its certificates' CN. X.520 bounds a CN at 64 characters; keyfleet writes
 * longer ones itself, and OpenSSL and most TLS stacks read them, but some tools refuse to make
 * them (`openssl req -subj` among them): ids of 64 characters or fewer work everywhere.
 */
#ifndef KF_COMMON_IDENT_H
#define KF_COMMON_IDENT_H

#include "common/err.h"

#define KF_ID_MAX 128

/*
 * Returns KF_OK when `id` is a valid id; otherwise KF_E_INVALID with a message that quotes the id
 * (escaped, shortened) under the name `what` ("device id", "enrollment name") and says which rule
 * it breaks.
 */
enum kf_err kf_id_check(const char *what, const char *id);

/* 1 when `id` is a valid id, 0 otherwise; records no error (for code that must not clobber one). */
int kf_id_valid(const char *id);

/*
 * ---- identities in certificates ----
 * keyfleet's certificates carry who they are for in URI SANs: a device's id, or a service's
 * name and its role (common/pki_cert.h has the profiles). These are the prefixes.
 */
#define KF_URN_DEVICE  "urn:keyfleet:device:"
#define KF_URN_SERVICE "urn:keyfleet:service:"
#define KF_URN_ROLE    "urn:keyfleet:role:"

/*
 * The roles a service identity may hold, the one table of them (what each may do on the hub is
 * server/hub_acl.h's): a reader takes telemetry and events, a commander sends commands too.
 */
enum kf_role { KF_ROLE_NONE = 0, KF_ROLE_READER = 1, KF_ROLE_COMMANDER = 2 };
#define KF_ROLE_COUNT 2
/* For messages: the roles there are. */
#define KF_ROLE_CHOICES "reader or commander"

/* "reader", "commander"; NULL for KF_ROLE_NONE or a value that is no role. */
const char *kf_role_name(enum kf_role role);
/* The role named `name` (exactly), or KF_ROLE_NONE (also for NULL). */
enum kf_role kf_role_parse(const char *name);

/*
 * Copies untrusted text into `out` (capacity `cap`) for a message: printable ASCII is kept,
 * anything else (escape sequences, newlines, quotes, UTF-8 bytes) becomes \xNN, and text that
 * does not fit ends in "...".
 */
void kf_text_quote(char *out, size_t cap, const char *s);

#endif
