/*
 * sqlite: the SQLite back end of the store.
 *
 * One file, shared by several processes (keyfleetd and the keyfleet CLI): WAL journal so readers
 * never block the writer, synchronous=FULL so that a commit survives power loss, foreign keys on,
 * a busy timeout for the moments another process holds the write lock. The schema is versioned
 * with PRAGMA user_version and migrated at open; PRAGMA application_id marks the file as ours so
 * that another program's database is never migrated into a store.
 *
 * Every value is bound with sqlite3_bind_*; SQL text is only ever the constants below. Statements
 * are prepared once per connection (lazily, SQLITE_PREPARE_PERSISTENT) and reset after each use.
 */
#include "server/store/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/file.h"

#define BUSY_TIMEOUT_MS 5000
#define WAL_SIZE_LIMIT  "67108864" /* 64 MiB: the WAL is truncated back to this after a burst */
#define APP_ID          1262898260 /* 0x4B464C54, "KFLT" */

/* ---- schema ---- */

/*
 * Version 1: the whole initial schema. Times are seconds since the epoch, except time_ms (events,
 * audit) in milliseconds. Optional text is NULL, except where store.h presents "none" as "" and
 * nothing references the column. The audit table refuses UPDATE and DELETE: only a direct edit
 * of the file (which kf_txn_audit_verify detects) can change it.
 */
static const char schema_v1[] =
    "CREATE TABLE cas ("
    " name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 31),"
    " serial TEXT NOT NULL CHECK (length(serial) BETWEEN 1 AND 47),"
    " subject TEXT,"
    " cert_pem TEXT NOT NULL,"
    " key_uri TEXT,"
    " not_before INTEGER NOT NULL,"
    " not_after INTEGER NOT NULL,"
    " crl_number INTEGER NOT NULL DEFAULT 0 CHECK (crl_number >= 0),"
    " created INTEGER NOT NULL"
    ") STRICT;"

    "CREATE TABLE enrollments ("
    " id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),"
    " kind TEXT NOT NULL CHECK (kind IN ('individual', 'group')),"
    " enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),"
    " verified INTEGER NOT NULL CHECK (verified IN (0, 1)),"
    " cert_pem TEXT,"
    " pubkey_pem TEXT,"
    " key_fingerprint TEXT NOT NULL DEFAULT '' CHECK (length(key_fingerprint) IN (0, 64)),"
    " subject TEXT,"
    " verification_code TEXT NOT NULL DEFAULT '',"
    " code_expires INTEGER NOT NULL DEFAULT 0,"
    " allocation TEXT NOT NULL DEFAULT 'hashed' CHECK (allocation IN ('hashed', 'static')),"
    " hub TEXT NOT NULL DEFAULT '',"
    " networks TEXT,"
    " settings TEXT,"
    " created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL,"
    " CHECK (kind = 'individual' OR cert_pem IS NOT NULL)"
    ") STRICT;"

    "CREATE TABLE devices ("
    " id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),"
    " enrollment TEXT REFERENCES enrollments (id) ON DELETE SET NULL,"
    " status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),"
    " hub TEXT NOT NULL DEFAULT '',"
    " created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX devices_enrollment ON devices (enrollment);"
    "CREATE INDEX devices_status ON devices (status);"

    /* id keeps insertion order for "newest first" among certificates of the same second. */
    "CREATE TABLE certificates ("
    " id INTEGER PRIMARY KEY,"
    " serial TEXT NOT NULL UNIQUE CHECK (length(serial) BETWEEN 1 AND 47),"
    " device_id TEXT REFERENCES devices (id),"
    " profile TEXT NOT NULL"
    "  CHECK (profile IN ('root-ca', 'issuing-ca', 'device', 'service', 'server')),"
    " issuer TEXT NOT NULL,"
    " subject TEXT,"
    " not_before INTEGER NOT NULL,"
    " not_after INTEGER NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),"
    " revoked_at INTEGER NOT NULL DEFAULT 0,"
    " reason INTEGER NOT NULL DEFAULT 0 CHECK (reason IN (0, 1, 2, 3, 4, 5, 9)),"
    " fingerprint TEXT NOT NULL CHECK (length(fingerprint) = 64),"
    " pem TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " CHECK (status = 'revoked' OR (revoked_at = 0 AND reason = 0)),"
    " CHECK (status = 'valid' OR revoked_at > 0)"
    ") STRICT;"
    "CREATE INDEX certificates_device ON certificates (device_id, created);"
    "CREATE INDEX certificates_created ON certificates (created);"
    "CREATE INDEX certificates_revoked ON certificates (issuer, not_after)"
    " WHERE status = 'revoked';"

    /* enrollment and hub are history (what the device registered through), not references. */
    "CREATE TABLE registrations ("
    " device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),"
    " enrollment TEXT NOT NULL DEFAULT '',"
    " hub TEXT NOT NULL DEFAULT '',"
    " cert_serial TEXT NOT NULL DEFAULT '',"
    " source_ip TEXT NOT NULL DEFAULT '',"
    " first_at INTEGER NOT NULL,"
    " last_at INTEGER NOT NULL,"
    " renew_after INTEGER NOT NULL,"
    " count INTEGER NOT NULL CHECK (count >= 0)"
    ") STRICT;"

    "CREATE TABLE hubs ("
    " name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 128),"
    " endpoint TEXT NOT NULL CHECK (length(endpoint) BETWEEN 1 AND 255),"
    " weight INTEGER NOT NULL CHECK (weight >= 0),"
    " enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),"
    " created INTEGER NOT NULL"
    ") STRICT;"

    /*
     * device is not a reference: events about devices that do not exist (a refused
     * registration) are the point. AUTOINCREMENT: an event id is never reused after pruning.
     */
    "CREATE TABLE security_events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time_ms INTEGER NOT NULL,"
    " type TEXT NOT NULL CHECK (length(type) BETWEEN 1 AND 63),"
    " severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),"
    " device TEXT NOT NULL DEFAULT '',"
    " source TEXT NOT NULL CHECK (source IN ('server', 'device')),"
    " ip TEXT NOT NULL DEFAULT '',"
    " detail TEXT NOT NULL DEFAULT '{}'"
    ") STRICT;"
    "CREATE INDEX security_events_time ON security_events (time_ms);"
    "CREATE INDEX security_events_type ON security_events (type, time_ms);"
    "CREATE INDEX security_events_device ON security_events (device, time_ms);"

    "CREATE TABLE audit ("
    " seq INTEGER PRIMARY KEY CHECK (seq >= 1),"
    " time_ms INTEGER NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " object TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL"
    ") STRICT;"
    "CREATE INDEX audit_time ON audit (time_ms);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"

    "PRAGMA application_id = 1262898260;"
    "PRAGMA user_version = 1;";

/*
 * Version 2: the registry version, a counter in `meta` that triggers move whenever what
 * keyfleetd caches changes (enrollments, hubs, device and certificate statuses), whichever
 * process made the change. PRAGMA data_version would also see other processes' commits, but of
 * every table: each registration and event would then look like a registry change. A status
 * "change" is one that changes the value: registrations rewrite devices with their old status
 * (to assign a hub), and must not make every worker reload its caches.
 */
#define BUMP_VERSION " BEGIN UPDATE meta SET value = value + 1 WHERE key = 'registry_version'; END;"
/* clang-format off */
static const char schema_v2[] =
    "CREATE TABLE meta ("
    " key TEXT PRIMARY KEY NOT NULL,"
    " value INTEGER NOT NULL"
    ") STRICT;"
    "INSERT INTO meta (key, value) VALUES ('registry_version', 0);"
    "CREATE TRIGGER enrollments_version_insert AFTER INSERT ON enrollments" BUMP_VERSION
    "CREATE TRIGGER enrollments_version_update AFTER UPDATE ON enrollments" BUMP_VERSION
    "CREATE TRIGGER enrollments_version_delete AFTER DELETE ON enrollments" BUMP_VERSION
    "CREATE TRIGGER hubs_version_insert AFTER INSERT ON hubs" BUMP_VERSION
    "CREATE TRIGGER hubs_version_update AFTER UPDATE ON hubs" BUMP_VERSION
    "CREATE TRIGGER hubs_version_delete AFTER DELETE ON hubs" BUMP_VERSION
    "CREATE TRIGGER certificates_version_status AFTER UPDATE OF status ON certificates"
    " WHEN OLD.status IS NOT NEW.status" BUMP_VERSION
    "CREATE TRIGGER devices_version_status AFTER UPDATE OF status ON devices"
    " WHEN OLD.status IS NOT NEW.status" BUMP_VERSION
    "PRAGMA user_version = 2;";

/*
 * Version 3: service identities (back-end applications on the hub, with a role), and the link
 * from a service certificate to its service.
 */
static const char schema_v3[] =
    "CREATE TABLE services ("
    " name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 128),"
    " role TEXT NOT NULL CHECK (role IN ('reader', 'commander')),"
    " status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),"
    " created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL"
    ") STRICT;"
    "ALTER TABLE certificates ADD COLUMN service TEXT REFERENCES services (name);"
    "CREATE INDEX certificates_service ON certificates (service, created) WHERE service IS NOT NULL;"
    "CREATE TRIGGER services_version_insert AFTER INSERT ON services" BUMP_VERSION
    "CREATE TRIGGER services_version_update AFTER UPDATE ON services" BUMP_VERSION
    "CREATE TRIGGER services_version_delete AFTER DELETE ON services" BUMP_VERSION
    "PRAGMA user_version = 3;";
/*
 * Version 4: an identity that did not verify is recorded apart, as claimed, never as the device.
 */
static const char schema_v4[] =
    "ALTER TABLE security_events ADD COLUMN claimed TEXT NOT NULL DEFAULT ''"
    " CHECK (length(claimed) <= 128);"
    "PRAGMA user_version = 4;";
/*
 * Version 5: signed checkpoints of the audit chain's head, so that a rewrite of the log (records
 * changed and the chain recomputed) is caught without a head kept elsewhere. Append-only too.
 */
static const char schema_v5[] =
    "CREATE TABLE audit_checkpoints ("
    " seq INTEGER PRIMARY KEY CHECK (seq >= 1),"
    " head TEXT NOT NULL CHECK (length(head) = 64),"
    " time_ms INTEGER NOT NULL,"
    " signer TEXT NOT NULL,"
    " signature TEXT NOT NULL"
    ") STRICT;"
    "CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints"
    " BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
    "CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints"
    " BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
    "PRAGMA user_version = 5;";
/*
 * Version 6: enrollments that hold new devices for an operator's approval, or that require the
 * CSR to carry the TLS channel binding; the approvals asked for and given.
 */
static const char schema_v6[] =
    "ALTER TABLE enrollments ADD COLUMN approval TEXT NOT NULL DEFAULT 'auto'"
    " CHECK (approval IN ('auto', 'manual'));"
    "ALTER TABLE enrollments ADD COLUMN binding INTEGER NOT NULL DEFAULT 0"
    " CHECK (binding IN (0, 1));"
    "CREATE TABLE approvals ("
    " device_id TEXT PRIMARY KEY NOT NULL CHECK (length(device_id) BETWEEN 1 AND 128),"
    " enrollment TEXT NOT NULL CHECK (length(enrollment) BETWEEN 1 AND 128),"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),"
    " fingerprint TEXT NOT NULL CHECK (length(fingerprint) = 64),"
    " source_ip TEXT NOT NULL,"
    " requested INTEGER NOT NULL,"
    " last_request INTEGER NOT NULL,"
    " requests INTEGER NOT NULL CHECK (requests >= 1),"
    " decided INTEGER NOT NULL DEFAULT 0,"
    " decided_by TEXT NOT NULL DEFAULT ''"
    ") STRICT;"
    "CREATE INDEX approvals_state ON approvals (state, requested);"
    "CREATE TRIGGER approvals_version_insert AFTER INSERT ON approvals" BUMP_VERSION
    "CREATE TRIGGER approvals_version_update AFTER UPDATE ON approvals" BUMP_VERSION
    "CREATE TRIGGER approvals_version_delete AFTER DELETE ON approvals" BUMP_VERSION
    "PRAGMA user_version = 6;";
/*
 * Version 7: the hub's retained messages, so that a restart (or a crash) gives them back. Each is
 * its topic and the message as kf_msg_encode writes it.
 */
static const char schema_v7[] =
    "CREATE TABLE hub_retained ("
    " topic BLOB PRIMARY KEY NOT NULL CHECK (length(topic) BETWEEN 1 AND 65535),"
    " msg BLOB NOT NULL,"
    " updated INTEGER NOT NULL"
    ") STRICT;"
    "PRAGMA user_version = 7;";
/*
 * Version 8: the hub's persistent sessions, so that what the hub acknowledged survives a crash.
 * One row per session (kind 0: its expiry and subscriptions), per message queued for it or in
 * flight (kind 1, key: the broker's sequence number) and per inbound QoS 2 packet id awaiting
 * its PUBREL (kind 2, key: the id). The broker writes and reads the values.
 */
static const char schema_v8[] =
    "CREATE TABLE hub_state ("
    " session TEXT NOT NULL CHECK (length(session) BETWEEN 1 AND 300),"
    " kind INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 2),"
    " key INTEGER NOT NULL,"
    " value BLOB NOT NULL,"
    " PRIMARY KEY (session, kind, key)"
    ") STRICT, WITHOUT ROWID;"
    "PRAGMA user_version = 8;";
/*
 * Version 9: software rollouts. A rollout offers one signed release to a fixed set of devices in
 * phases; `released` is how many of them (by `ord`, a shuffled order) have been offered it. Its
 * settings (phases, soak, failure threshold, progress) are the JSON `doc`, which only
 * server/ops/rollout reads. Each device's row follows what the device reports.
 */
static const char schema_v9[] =
    "CREATE TABLE rollouts ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'aborted', 'completed')),"
    " target TEXT NOT NULL CHECK (length(target) BETWEEN 1 AND 255),"
    " hardware TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " released INTEGER NOT NULL CHECK (released >= 0),"
    " doc TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE rollout_devices ("
    " rollout INTEGER NOT NULL REFERENCES rollouts (id),"
    " device TEXT NOT NULL REFERENCES devices (id),"
    " ord INTEGER NOT NULL CHECK (ord >= 0),"
    " state TEXT NOT NULL CHECK (length(state) BETWEEN 1 AND 15),"
    " reason TEXT NOT NULL DEFAULT '',"
    " updated INTEGER NOT NULL,"
    " accepted INTEGER NOT NULL DEFAULT 0 CHECK (accepted IN (0, 1)),"
    " PRIMARY KEY (rollout, device)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX rollout_devices_device ON rollout_devices (device, rollout);"
    "CREATE UNIQUE INDEX rollout_devices_ord ON rollout_devices (rollout, ord);"
    "PRAGMA user_version = 9;";
/* clang-format on */
#undef BUMP_VERSION

/*
 * Migration i takes the schema from version i to i + 1 and ends by setting user_version to
 * i + 1. Migrations run in order, all in one transaction, and are never edited once released.
 */
static const char *const migrations[] = {
    schema_v1, schema_v2, schema_v3, schema_v4, schema_v5,
    schema_v6, schema_v7, schema_v8, schema_v9,
};
_Static_assert(KF_ARRAY_LEN(migrations) == KF_STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- statements ---- */

#define ENROLL_COLS                                                                            \
    "id, kind, enabled, verified, cert_pem, pubkey_pem, key_fingerprint, subject, "            \
    "verification_code, code_expires, allocation, hub, networks, settings, created, updated, " \
    "approval, binding"
#define DEVICE_COLS "id, enrollment, status, hub, created, updated"
#define CERT_COLS                                                                              \
    "serial, device_id, profile, issuer, subject, not_before, not_after, status, revoked_at, " \
    "reason, fingerprint, pem, created, service"
#define REG_COLS \
    "device_id, enrollment, hub, cert_serial, source_ip, first_at, last_at, renew_after, count"
#define APPROVAL_COLS                                                                           \
    "device_id, enrollment, state, fingerprint, source_ip, requested, last_request, requests, " \
    "decided, decided_by"
#define HUB_COLS     "name, endpoint, weight, enabled, created"
#define SERVICE_COLS "name, role, status, created, updated"
#define EVENT_COLS   "id, time_ms, type, severity, device, source, ip, detail, claimed"
#define ROLLOUT_COLS "id, state, target, hardware, version, released, doc, created, updated"
#define RDEV_COLS    "rollout, device, ord, state, reason, updated, accepted"
#define AUDIT_COLS   "seq, time_ms, actor, action, object, detail, prev_hash, hash"
#define CA_COLS \
    "name, serial, subject, cert_pem, key_uri, not_before, not_after, crl_number, created"

enum stmt_id {
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SNAPSHOT,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_CA_INSERT,
    ST_CA_GET,
    ST_CA_NEXT_CRL,
    ST_ENROLL_INSERT,
    ST_ENROLL_GET,
    ST_ENROLL_UPDATE,
    ST_ENROLL_DELETE,
    ST_ENROLL_LIST,
    ST_ENROLL_LIST_KIND,
    ST_DEVICE_INSERT,
    ST_DEVICE_GET,
    ST_DEVICE_UPDATE,
    /* The four device lists, by filter: + 1 for status, + 2 for enrollment. */
    ST_DEVICE_LIST,
    ST_DEVICE_LIST_S,
    ST_DEVICE_LIST_E,
    ST_DEVICE_LIST_SE,
    ST_DEVICE_COUNT,
    ST_DEVICE_COUNT_S,
    ST_CERT_INSERT,
    ST_CERT_GET,
    ST_CERT_REVOKE,
    ST_CERT_EXISTS,
    /* The four certificate lists: + 1 for device, + 2 for status. */
    ST_CERT_LIST,
    ST_CERT_LIST_D,
    ST_CERT_LIST_S,
    ST_CERT_LIST_DS,
    ST_CERT_REVOKED,
    ST_CERT_REVOKED_SERIALS,
    ST_CERT_LIST_SERVICE,
    ST_SERVICE_INSERT,
    ST_SERVICE_GET,
    ST_SERVICE_UPDATE,
    ST_SERVICE_LIST,
    ST_REG_PUT,
    ST_REG_GET,
    ST_APPROVAL_PUT,
    ST_APPROVAL_GET,
    ST_APPROVAL_LIST,
    ST_APPROVAL_LIST_STATE,
    ST_APPROVAL_COUNT,
    ST_RETAINED_PUT,
    ST_RETAINED_DELETE,
    ST_RETAINED_LIST,
    ST_HUB_STATE_PUT,
    ST_HUB_STATE_DELETE,
    ST_HUB_STATE_DROP,
    ST_HUB_STATE_LIST,
    ST_HUB_INSERT,
    ST_HUB_GET,
    ST_HUB_UPDATE,
    ST_HUB_DELETE,
    ST_HUB_LIST,
    ST_EVENT_INSERT,
    ST_EVENT_PRUNE_AGE,
    ST_EVENT_PRUNE_ROWS,
    /* The four event lists: + 1 for type, + 2 for device. */
    ST_EVENT_LIST,
    ST_EVENT_LIST_T,
    ST_EVENT_LIST_D,
    ST_EVENT_LIST_TD,
    ST_EVENT_AFTER,
    ST_ROLLOUT_INSERT,
    ST_ROLLOUT_GET,
    ST_ROLLOUT_UPDATE,
    ST_ROLLOUT_LIST,
    ST_RDEV_PUT,
    ST_RDEV_LIST,
    ST_ROLLOUT_ASSIGNED,
    ST_RDEV_FIND,
    ST_META_GET,
    ST_META_PUT,
    ST_AUDIT_LAST,
    ST_AUDIT_INSERT,
    ST_AUDIT_LIST,
    ST_AUDIT_LIST_SINCE,
    ST_AUDIT_FIND_HASH,
    ST_CHECKPOINT_INSERT,
    ST_CHECKPOINT_LIST,
    ST_REGISTRY_VERSION,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* Reading a page pins the WAL snapshot now, not at the transaction's first real query. */
    [ST_SNAPSHOT] = "SELECT 1 FROM sqlite_schema LIMIT 1",
    [ST_SAVEPOINT] = "SAVEPOINT kf_cb",
    [ST_RELEASE] = "RELEASE kf_cb",
    [ST_ROLLBACK_TO] = "ROLLBACK TO kf_cb",

    [ST_CA_INSERT] = "INSERT INTO cas (" CA_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_CA_GET] = "SELECT " CA_COLS " FROM cas WHERE name = ?1",
    [ST_CA_NEXT_CRL] =
        "UPDATE cas SET crl_number = crl_number + 1 WHERE name = ?1 RETURNING crl_number",

    [ST_ENROLL_INSERT] = "INSERT INTO enrollments (" ENROLL_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, "
                         "?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    [ST_ENROLL_GET] = "SELECT " ENROLL_COLS " FROM enrollments WHERE id = ?1",
    [ST_ENROLL_UPDATE] = "UPDATE enrollments SET kind = ?2, enabled = ?3, verified = ?4, "
                         "cert_pem = ?5, pubkey_pem = ?6, key_fingerprint = ?7, subject = ?8, "
                         "verification_code = ?9, code_expires = ?10, allocation = ?11, "
                         "hub = ?12, networks = ?13, settings = ?14, created = ?15, "
                         "updated = ?16, approval = ?17, binding = ?18 WHERE id = ?1",
    [ST_ENROLL_DELETE] = "DELETE FROM enrollments WHERE id = ?1",
    [ST_ENROLL_LIST] = "SELECT " ENROLL_COLS " FROM enrollments ORDER BY id",
    [ST_ENROLL_LIST_KIND] = "SELECT " ENROLL_COLS " FROM enrollments WHERE kind = ?1 ORDER BY id",

    [ST_DEVICE_INSERT] = "INSERT INTO devices (" DEVICE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_DEVICE_GET] = "SELECT " DEVICE_COLS " FROM devices WHERE id = ?1",
    [ST_DEVICE_UPDATE] = "UPDATE devices SET enrollment = ?2, status = ?3, hub = ?4, "
                         "created = ?5, updated = ?6 WHERE id = ?1",
    [ST_DEVICE_LIST] = "SELECT " DEVICE_COLS " FROM devices ORDER BY id",
    [ST_DEVICE_LIST_S] = "SELECT " DEVICE_COLS " FROM devices WHERE status = ?1 ORDER BY id",
    [ST_DEVICE_LIST_E] = "SELECT " DEVICE_COLS " FROM devices WHERE enrollment IS ?2 ORDER BY id",
    [ST_DEVICE_LIST_SE] = "SELECT " DEVICE_COLS " FROM devices WHERE status = ?1 "
                          "AND enrollment IS ?2 ORDER BY id",
    [ST_DEVICE_COUNT] = "SELECT count(*) FROM devices",
    [ST_DEVICE_COUNT_S] = "SELECT count(*) FROM devices WHERE status = ?1",

    [ST_CERT_INSERT] = "INSERT INTO certificates (" CERT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                       "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    [ST_CERT_GET] = "SELECT " CERT_COLS " FROM certificates WHERE serial = ?1",
    [ST_CERT_REVOKE] = "UPDATE certificates SET status = 'revoked', revoked_at = ?2, reason = ?3 "
                       "WHERE serial = ?1 AND status = 'valid'",
    [ST_CERT_EXISTS] = "SELECT 1 FROM certificates WHERE serial = ?1",
    [ST_CERT_LIST] = "SELECT " CERT_COLS " FROM certificates "
                     "ORDER BY created DESC, id DESC LIMIT ?3",
    [ST_CERT_LIST_D] = "SELECT " CERT_COLS " FROM certificates WHERE device_id IS ?1 "
                       "ORDER BY created DESC, id DESC LIMIT ?3",
    [ST_CERT_LIST_S] = "SELECT " CERT_COLS " FROM certificates WHERE status = ?2 "
                       "ORDER BY created DESC, id DESC LIMIT ?3",
    [ST_CERT_LIST_DS] = "SELECT " CERT_COLS " FROM certificates WHERE device_id IS ?1 "
                        "AND status = ?2 ORDER BY created DESC, id DESC LIMIT ?3",
    [ST_CERT_REVOKED] = "SELECT " CERT_COLS " FROM certificates WHERE issuer = ?1 "
                        "AND status = 'revoked' AND not_after >= ?2 ORDER BY id",
    [ST_CERT_REVOKED_SERIALS] = "SELECT serial FROM certificates WHERE issuer = ?1 "
                                "AND status = 'revoked' ORDER BY serial",
    [ST_CERT_LIST_SERVICE] = "SELECT " CERT_COLS " FROM certificates WHERE service = ?1 "
                             "ORDER BY created DESC, id DESC",
    [ST_SERVICE_INSERT] = "INSERT INTO services (" SERVICE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_SERVICE_GET] = "SELECT " SERVICE_COLS " FROM services WHERE name = ?1",
    [ST_SERVICE_UPDATE] =
        "UPDATE services SET role = ?2, status = ?3, updated = ?5 WHERE name = ?1",
    [ST_SERVICE_LIST] = "SELECT " SERVICE_COLS " FROM services ORDER BY name",

    [ST_REG_PUT] = "INSERT INTO registrations (" REG_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                   "?8, ?9) ON CONFLICT (device_id) DO UPDATE SET "
                   "enrollment = excluded.enrollment, hub = excluded.hub, "
                   "cert_serial = excluded.cert_serial, source_ip = excluded.source_ip, "
                   "first_at = excluded.first_at, last_at = excluded.last_at, "
                   "renew_after = excluded.renew_after, count = excluded.count",
    [ST_REG_GET] = "SELECT " REG_COLS " FROM registrations WHERE device_id = ?1",

    [ST_APPROVAL_PUT] = "INSERT INTO approvals (" APPROVAL_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, "
                        "?6, ?7, ?8, ?9, ?10) ON CONFLICT (device_id) DO UPDATE SET "
                        "enrollment = excluded.enrollment, state = excluded.state, "
                        "fingerprint = excluded.fingerprint, source_ip = excluded.source_ip, "
                        "requested = excluded.requested, last_request = excluded.last_request, "
                        "requests = excluded.requests, decided = excluded.decided, "
                        "decided_by = excluded.decided_by",
    [ST_APPROVAL_GET] = "SELECT " APPROVAL_COLS " FROM approvals WHERE device_id = ?1",
    [ST_APPROVAL_LIST] = "SELECT " APPROVAL_COLS " FROM approvals ORDER BY requested, device_id",
    [ST_APPROVAL_LIST_STATE] = "SELECT " APPROVAL_COLS " FROM approvals WHERE state = ?1 "
                               "ORDER BY requested, device_id",
    [ST_APPROVAL_COUNT] = "SELECT count(*) FROM approvals WHERE state = ?1",

    [ST_RETAINED_PUT] = "INSERT INTO hub_retained (topic, msg, updated) VALUES (?1, ?2, ?3) "
                        "ON CONFLICT (topic) DO UPDATE SET msg = excluded.msg, "
                        "updated = excluded.updated",
    [ST_RETAINED_DELETE] = "DELETE FROM hub_retained WHERE topic = ?1",
    [ST_RETAINED_LIST] = "SELECT topic, msg FROM hub_retained ORDER BY topic",
    [ST_HUB_STATE_PUT] =
        "INSERT INTO hub_state (session, kind, key, value) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT (session, kind, key) DO UPDATE SET value = excluded.value",
    [ST_HUB_STATE_DELETE] = "DELETE FROM hub_state WHERE session = ?1 AND kind = ?2 AND key = ?3",
    [ST_HUB_STATE_DROP] = "DELETE FROM hub_state WHERE session = ?1",
    [ST_HUB_STATE_LIST] = "SELECT session, kind, key, value FROM hub_state "
                          "ORDER BY session, kind, key",

    [ST_HUB_INSERT] = "INSERT INTO hubs (" HUB_COLS ") VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_HUB_GET] = "SELECT " HUB_COLS " FROM hubs WHERE name = ?1",
    [ST_HUB_UPDATE] = "UPDATE hubs SET endpoint = ?2, weight = ?3, enabled = ?4, created = ?5 "
                      "WHERE name = ?1",
    [ST_HUB_DELETE] = "DELETE FROM hubs WHERE name = ?1",
    [ST_HUB_LIST] = "SELECT " HUB_COLS " FROM hubs ORDER BY name",

    [ST_EVENT_INSERT] = "INSERT INTO security_events (time_ms, type, severity, device, source, "
                        "ip, detail, claimed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_EVENT_PRUNE_AGE] = "DELETE FROM security_events WHERE id IN (SELECT id FROM "
                           "security_events WHERE time_ms < ?1 ORDER BY id LIMIT ?2)",
    [ST_EVENT_PRUNE_ROWS] = "DELETE FROM security_events WHERE id IN (SELECT id FROM "
                            "security_events ORDER BY id LIMIT max(0, min(?2, (SELECT count(*) "
                            "FROM security_events) - ?1)))",
    [ST_EVENT_LIST] = "SELECT " EVENT_COLS " FROM security_events WHERE time_ms >= ?1 "
                      "ORDER BY time_ms, id LIMIT ?4",
    [ST_EVENT_LIST_T] = "SELECT " EVENT_COLS " FROM security_events WHERE time_ms >= ?1 "
                        "AND type = ?2 ORDER BY time_ms, id LIMIT ?4",
    [ST_EVENT_LIST_D] = "SELECT " EVENT_COLS " FROM security_events WHERE time_ms >= ?1 "
                        "AND device = ?3 ORDER BY time_ms, id LIMIT ?4",
    [ST_EVENT_LIST_TD] = "SELECT " EVENT_COLS " FROM security_events WHERE time_ms >= ?1 "
                         "AND type = ?2 AND device = ?3 ORDER BY time_ms, id LIMIT ?4",

    [ST_EVENT_AFTER] = "SELECT " EVENT_COLS " FROM security_events WHERE id > ?1 "
                       "ORDER BY id LIMIT ?2",

    [ST_ROLLOUT_INSERT] = "INSERT INTO rollouts (state, target, hardware, version, released, "
                          "doc, created, updated) VALUES (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_ROLLOUT_GET] = "SELECT " ROLLOUT_COLS " FROM rollouts WHERE id = ?1",
    [ST_ROLLOUT_UPDATE] = "UPDATE rollouts SET state = ?2, released = ?6, doc = ?7, updated = ?9 "
                          "WHERE id = ?1",
    [ST_ROLLOUT_LIST] = "SELECT " ROLLOUT_COLS " FROM rollouts ORDER BY id",
    [ST_RDEV_PUT] = "INSERT OR REPLACE INTO rollout_devices (" RDEV_COLS ") "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_RDEV_LIST] = "SELECT " RDEV_COLS " FROM rollout_devices WHERE rollout = ?1 ORDER BY ord",
    [ST_ROLLOUT_ASSIGNED] = "SELECT r.id, r.state, r.target, r.hardware, r.version, r.released, "
                            "r.doc, r.created, r.updated FROM rollout_devices d "
                            "JOIN rollouts r ON r.id = d.rollout WHERE d.device = ?1 "
                            "AND (?2 = '' OR r.hardware = ?2) AND d.ord < r.released "
                            "ORDER BY r.id DESC LIMIT 1",
    [ST_RDEV_FIND] = "SELECT d.rollout, d.device, d.ord, d.state, d.reason, d.updated, "
                     "d.accepted FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout "
                     "WHERE d.device = ?1 AND (?2 < 0 OR r.version = ?2) "
                     "AND (?3 = '' OR r.target = ?3) AND d.ord < r.released "
                     "ORDER BY r.id DESC LIMIT 1",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_PUT] = "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",

    [ST_AUDIT_LAST] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
    [ST_AUDIT_INSERT] = "INSERT INTO audit (" AUDIT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                        "?8)",
    [ST_AUDIT_LIST] = "SELECT " AUDIT_COLS " FROM audit ORDER BY seq",
    [ST_CHECKPOINT_INSERT] = "INSERT INTO audit_checkpoints (seq, head, time_ms, signer, "
                             "signature) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_CHECKPOINT_LIST] = "SELECT seq, head, time_ms, signer, signature FROM audit_checkpoints "
                           "ORDER BY seq",
    [ST_AUDIT_LIST_SINCE] = "SELECT " AUDIT_COLS " FROM audit WHERE time_ms >= ?1 ORDER BY seq",
    [ST_AUDIT_FIND_HASH] = "SELECT seq FROM audit WHERE hash = ?1 AND seq <> ?2 "
                           "ORDER BY seq LIMIT 1",

    [ST_REGISTRY_VERSION] = "SELECT value FROM meta WHERE key = 'registry_version'",
};

struct sq_db {
    char path[PATH_MAX];
    int version;
    struct sq_conn *writer;
};

struct sq_conn {
    struct sq_db *db; /* borrowed */
    sqlite3 *h;
    sqlite3_stmt *st[ST_COUNT];
};

static struct sq_conn *sq(struct kf_store_conn *c)
{
    return (struct sq_conn *)c;
}

/* ---- errors ---- */

/*
 * Records a database failure as "WHAT: store PATH: reason": KF_E_BUSY when another process holds
 * the lock past the busy timeout, KF_E_NOMEM, KF_E_STORE for everything else.
 */
__attribute__((format(printf, 3, 4))) static enum kf_err sq_fail(struct sq_conn *c, int rc,
                                                                 const char *fmt, ...)
{
    const char *reason = sqlite3_errstr(rc);
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (c->h && sqlite3_extended_errcode(c->h) == rc) reason = sqlite3_errmsg(c->h);
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return kf_fail(KF_E_BUSY, "%s: store %s is busy (another process held it for %d ms)", what,
                       c->db->path, BUSY_TIMEOUT_MS);
    case SQLITE_NOMEM: return kf_fail(KF_E_NOMEM, "%s: out of memory", what);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return kf_fail(KF_E_STORE, "%s: store %s is damaged or not a keyfleet store: %s", what,
                       c->db->path, reason);
    default: return kf_fail(KF_E_STORE, "%s: store %s: %s", what, c->db->path, reason);
    }
}

static int is_unique(int rc)
{
    return rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE;
}

/* A row that does not fit what the schema promises: the file was edited behind our back. */
static enum kf_err malformed(struct sq_conn *c, const char *what)
{
    return kf_fail(KF_E_STORE, "store %s holds a malformed %s row", c->db->path, what);
}

/* ---- statements, binding, columns ---- */

/*
 * The cached statement `id`, or a fresh one when the cached one is in use further up the stack
 * (a list callback calling back into the store); release() tells the two apart.
 */
static enum kf_err stmt(struct sq_conn *c, enum stmt_id id, sqlite3_stmt **out)
{
    sqlite3_stmt **slot = &c->st[id];
    sqlite3_stmt *fresh = NULL;
    int rc;

    if (*slot && !sqlite3_stmt_busy(*slot)) {
        *out = *slot;
        return KF_OK;
    }
    rc = sqlite3_prepare_v3(c->h, stmt_sql[id], -1, *slot ? 0 : SQLITE_PREPARE_PERSISTENT, &fresh,
                            NULL);
    if (rc != SQLITE_OK) return sq_fail(c, rc, "cannot prepare a statement");
    if (!*slot) *slot = fresh;
    *out = fresh;
    return KF_OK;
}

static void release(struct sq_conn *c, enum stmt_id id, sqlite3_stmt *st)
{
    if (!st) return;
    if (st != c->st[id]) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_reset(st);
    /* SQLITE_STATIC bindings point into the caller's records: drop them now. */
    sqlite3_clear_bindings(st);
}

/* Runs a statement without values or rows (transaction control). */
static enum kf_err run(struct sq_conn *c, enum stmt_id id, int *sqlite_rc)
{
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, id, &st);
    int s;
    if (rc) return rc;
    s = sqlite3_step(st);
    release(c, id, st);
    if (sqlite_rc) *sqlite_rc = s;
    if (s != SQLITE_DONE && s != SQLITE_ROW) return sq_fail(c, s, "%s failed", stmt_sql[id]);
    return KF_OK;
}

static int bind_s(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* "" is stored as NULL: for references whose "none" the API spells "". */
static int bind_ref(sqlite3_stmt *st, int i, const char *s)
{
    return bind_s(st, i, s && *s ? s : NULL);
}

static int bind_i(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, v);
}

static enum kf_err bind_fail(struct sq_conn *c, const char *what)
{
    return sq_fail(c, sqlite3_errcode(c->h), "cannot bind the values of %s", what);
}

enum { COL_BAD = 1, COL_NOMEM = 2 };

/* Column `i` into a fixed field (NULL: ""); COL_BAD when it does not fit or holds a NUL. */
static int col_fixed(sqlite3_stmt *st, int i, char *buf, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);

    buf[0] = '\0';
    if (!t) return sqlite3_column_type(st, i) == SQLITE_NULL ? 0 : COL_NOMEM;
    if (n >= cap || memchr(t, '\0', n)) return COL_BAD;
    memcpy(buf, t, n);
    buf[n] = '\0';
    return 0;
}

/* Column `i` as a heap string owned by the record (NULL: NULL). */
static int col_dup(sqlite3_stmt *st, int i, char **out)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);

    *out = NULL;
    if (!t) return sqlite3_column_type(st, i) == SQLITE_NULL ? 0 : COL_NOMEM;
    if (memchr(t, '\0', n)) return COL_BAD;
    *out = malloc(n + 1);
    if (!*out) return COL_NOMEM;
    memcpy(*out, t, n + 1);
    return 0;
}

static int64_t col_i(sqlite3_stmt *st, int i)
{
    return sqlite3_column_int64(st, i);
}

static enum kf_err col_result(struct sq_conn *c, int flags, const char *what)
{
    if (flags & COL_NOMEM) return kf_fail(KF_E_NOMEM, "out of memory reading a %s", what);
    if (flags & COL_BAD) return malformed(c, what);
    return KF_OK;
}

/* ---- connections ---- */

/* Steps a bound SELECT of one row: KF_OK on the row, KF_E_NOT_FOUND naming it when there is none.
 */
static enum kf_err step_row(struct sq_conn *c, sqlite3_stmt *st, const char *what, const char *key)
{
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) return KF_OK;
    if (s == SQLITE_DONE) return kf_fail(KF_E_NOT_FOUND, "%s %s not found", what, key);
    return sq_fail(c, s, "cannot read %s %s", what, key);
}

/* Steps a bound UPDATE or DELETE of one row: KF_E_NOT_FOUND naming it when no row matched. */
static enum kf_err step_change(struct sq_conn *c, sqlite3_stmt *st, const char *verb,
                               const char *what, const char *key)
{
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE) return sq_fail(c, s, "cannot %s %s %s", verb, what, key);
    if (sqlite3_changes(c->h) == 0) return kf_fail(KF_E_NOT_FOUND, "%s %s not found", what, key);
    return KF_OK;
}

static void conn_close(struct sq_conn *c)
{
    if (!c) return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close_v2(c->h);
    free(c);
}

static enum kf_err exec(struct sq_conn *c, const char *sql, const char *what)
{
    int rc = sqlite3_exec(c->h, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) return sq_fail(c, rc, "%s", what);
    return KF_OK;
}

/* The integer the one-row statement `sql` (a constant) answers. */
static enum kf_err query_int(struct sq_conn *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    enum kf_err rc = KF_OK;
    int s = sqlite3_prepare_v2(c->h, sql, -1, &st, NULL);

    if (s == SQLITE_OK) {
        s = sqlite3_step(st);
        if (s == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            s = SQLITE_OK;
        }
    }
    if (s != SQLITE_OK) rc = sq_fail(c, s, "cannot read the store (%s)", sql);
    sqlite3_finalize(st);
    return rc;
}

static enum kf_err conn_open(struct sq_db *db, int writer, struct sq_conn **out)
{
    struct sq_conn *c = calloc(1, sizeof(*c));
    enum kf_err rc = KF_OK;
    int s;

    *out = NULL;
    if (!c) return kf_fail(KF_E_NOMEM, "out of memory opening store %s", db->path);
    c->db = db;
    /*
     * NOMUTEX: a connection is only ever used by one thread at a time (the reader pool and the
     * committer thread see to it), so SQLite's own per-connection mutex is wasted work.
     */
    s = sqlite3_open_v2(db->path, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (s != SQLITE_OK) {
        rc = sq_fail(c, s, "cannot open store %s", db->path);
        goto out;
    }
    sqlite3_extended_result_codes(c->h, 1);
    sqlite3_busy_timeout(c->h, BUSY_TIMEOUT_MS);
    /* Defensive: no SQL can corrupt the file (writable_schema and the like); no schema code. */
    sqlite3_db_config(c->h, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(c->h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    rc = exec(c, "PRAGMA foreign_keys = ON", "cannot turn foreign keys on");
    if (rc) goto out;
    if (writer) {
        rc = exec(c, "PRAGMA synchronous = FULL", "cannot make commits durable");
        if (rc) goto out;
        rc = exec(c, "PRAGMA journal_size_limit = " WAL_SIZE_LIMIT, "cannot limit the WAL");
    } else {
        /* A reader that tries to write is our bug; make SQLite refuse it too. */
        rc = exec(c, "PRAGMA query_only = ON", "cannot make a reader read-only");
    }
    if (rc) goto out;
    *out = c;
    c = NULL;
out:
    conn_close(c);
    return rc;
}

/* ---- open and migrate ---- */

/* Makes sure the file exists (creating it 0600 when allowed); `*created` when we made it. */
static enum kf_err ensure_file(const char *path, int flags, int *created)
{
    struct stat sb;
    int fd;

    *created = 0;
    if (stat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            return kf_fail(KF_E_STORE, "store %s is not a regular file", path);
        return KF_OK;
    }
    if (errno != ENOENT)
        return kf_fail(KF_E_IO, "cannot reach store %s: %s", path, strerror(errno));
    if (!(flags & KF_STORE_CREATE)) return kf_fail(KF_E_NOT_FOUND, "no store at %s", path);
    /* Created here, not by SQLite, so that its mode (which the -wal and -shm copy) is 0600. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST) return KF_OK;
        return kf_fail(KF_E_IO, "cannot create store %s: %s", path, strerror(errno));
    }
    if (fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        return kf_fail(KF_E_IO, "cannot set the mode of store %s: %s", path, strerror(e));
    }
    close(fd);
    *created = 1;
    return KF_OK;
}

static enum kf_err set_wal(struct sq_conn *c)
{
    sqlite3_stmt *st = NULL;
    enum kf_err rc = KF_OK;
    const unsigned char *mode;
    int s = sqlite3_prepare_v2(c->h, "PRAGMA journal_mode = WAL", -1, &st, NULL);

    if (s == SQLITE_OK) s = sqlite3_step(st);
    if (s != SQLITE_ROW) {
        rc = sq_fail(c, s, "cannot turn on the write-ahead log");
    } else {
        mode = sqlite3_column_text(st, 0);
        if (!mode || strcmp((const char *)mode, "wal") != 0)
            rc = kf_fail(KF_E_STORE,
                         "store %s cannot use a write-ahead log (its journal stays \"%s\"): is "
                         "it on a network file system?",
                         c->db->path, mode ? (const char *)mode : "");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs the migrations from `from` up, all in one transaction, under the write lock. */
static enum kf_err migrate(struct sq_conn *c)
{
    int64_t version = 0, target = 0;
    enum kf_err rc;

    rc = exec(c, "BEGIN IMMEDIATE", "cannot begin the schema migration");
    if (rc) return rc;
    /* Read again under the lock: another process may have migrated since we looked. */
    rc = query_int(c, "PRAGMA user_version", &version);
    if (rc) goto out;
    if (version > KF_STORE_SCHEMA_VERSION) {
        rc = kf_fail(KF_E_UNSUPPORTED,
                     "store %s has schema version %" PRId64
                     ", newer than this program supports (%d): upgrade keyfleet",
                     c->db->path, version, KF_STORE_SCHEMA_VERSION);
        goto out;
    }
    for (int64_t v = version; v < KF_STORE_SCHEMA_VERSION; v++) {
        int64_t now = 0;
        target = v + 1;
        rc = exec(c, migrations[v], "cannot run the migration");
        if (rc) goto out;
        rc = query_int(c, "PRAGMA user_version", &now);
        if (rc) goto out;
        if (now != target) {
            rc = kf_fail(KF_E_INTERNAL, "the migration left schema version %" PRId64, now);
            goto out;
        }
    }
    target = 0;
    rc = exec(c, "COMMIT", "cannot commit the schema migration");
out:
    if (rc && target)
        kf_wrap(rc, "migrating store %s to schema version %" PRId64, c->db->path, target);
    if (rc && !sqlite3_get_autocommit(c->h)) sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void db_free(struct sq_db *db)
{
    if (!db) return;
    conn_close(db->writer);
    free(db);
}

static enum kf_err sq_open(const char *location, int flags, struct kf_store_db **out,
                           struct kf_store_conn **writer)
{
    struct sq_db *db = NULL;
    struct sq_conn *c = NULL;
    int64_t app = 0, version = 0, objects = 0;
    int created = 0;
    enum kf_err rc;

    *out = NULL;
    *writer = NULL;
    if (!sqlite3_threadsafe())
        return kf_fail(KF_E_UNSUPPORTED, "this SQLite library was built without threads");
    db = calloc(1, sizeof(*db));
    if (!db) return kf_fail(KF_E_NOMEM, "out of memory opening store %s", location);
    if (snprintf(db->path, sizeof(db->path), "%s", location) >= (int)sizeof(db->path)) {
        rc = kf_fail(KF_E_OVERSIZE, "the store path is too long");
        goto out;
    }
    rc = ensure_file(db->path, flags, &created);
    if (rc) goto out;
    rc = conn_open(db, 1, &c);
    if (rc) goto out;
    db->writer = c;

    /* The first reads of the file: a file that is not a database fails here. */
    rc = query_int(c, "PRAGMA application_id", &app);
    if (rc) goto out;
    rc = query_int(c, "PRAGMA user_version", &version);
    if (rc) goto out;
    rc = query_int(c, "SELECT count(*) FROM sqlite_schema", &objects);
    if (rc) goto out;
    if ((app != 0 && app != APP_ID) || (app == 0 && (objects > 0 || version != 0))) {
        rc = kf_fail(KF_E_STORE,
                     "%s is a SQLite database of some other program, not a keyfleet "
                     "store",
                     db->path);
        goto out;
    }
    if (version > KF_STORE_SCHEMA_VERSION) {
        rc = kf_fail(KF_E_UNSUPPORTED,
                     "store %s has schema version %" PRId64
                     ", newer than this program supports (%d): upgrade keyfleet",
                     db->path, version, KF_STORE_SCHEMA_VERSION);
        goto out;
    }
    if (app == 0 && !(flags & KF_STORE_CREATE)) {
        /* An empty file (touched, or left by a creation that failed): not a store yet. */
        rc = kf_fail(KF_E_NOT_FOUND, "no store at %s (the file is empty)", db->path);
        goto out;
    }

    rc = set_wal(c);
    if (rc) goto out;
    if (version < KF_STORE_SCHEMA_VERSION) {
        rc = migrate(c);
        if (rc) goto out;
    }
    db->version = KF_STORE_SCHEMA_VERSION;
    if (created) {
        /* The new file's directory entry must survive power loss as its first commit does. */
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", db->path);
        rc = kf_file_sync_dir(dirname(dir));
        if (rc) goto out;
    }
    *out = (struct kf_store_db *)db;
    *writer = (struct kf_store_conn *)c;
    db = NULL;
out:
    db_free(db);
    return rc;
}

static void sq_close(struct kf_store_db *kdb)
{
    db_free((struct sq_db *)kdb);
}

static int sq_schema_version(struct kf_store_db *kdb)
{
    return ((struct sq_db *)kdb)->version;
}

static enum kf_err sq_reader_open(struct kf_store_db *kdb, struct kf_store_conn **out)
{
    struct sq_conn *c = NULL;
    enum kf_err rc = conn_open((struct sq_db *)kdb, 0, &c);
    *out = (struct kf_store_conn *)c;
    return rc;
}

static void sq_reader_close(struct kf_store_conn *c)
{
    conn_close(sq(c));
}

/* ---- transactions ---- */

static enum kf_err sq_read_begin(struct kf_store_conn *kc)
{
    struct sq_conn *c = sq(kc);
    enum kf_err rc = run(c, ST_BEGIN, NULL);
    if (rc) return rc;
    rc = run(c, ST_SNAPSHOT, NULL);
    if (rc) sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static enum kf_err sq_read_end(struct kf_store_conn *kc)
{
    struct sq_conn *c = sq(kc);
    enum kf_err rc = run(c, ST_ROLLBACK, NULL);
    if (rc) return rc;
    if (!sqlite3_get_autocommit(c->h))
        return kf_fail(KF_E_STORE, "store %s: a read transaction did not end", c->db->path);
    return KF_OK;
}

/* A transaction that cannot begin or commit is KF_E_BUSY (the lock) or KF_E_STORE (the rest). */
static enum kf_err txn_fail(enum kf_err rc, const char *what)
{
    return kf_wrap(rc == KF_E_BUSY ? KF_E_BUSY : KF_E_STORE, "%s", what);
}

static enum kf_err sq_write_begin(struct kf_store_conn *kc)
{
    enum kf_err rc = run(sq(kc), ST_BEGIN_IMMEDIATE, NULL);
    return rc ? txn_fail(rc, "the transaction could not begin") : KF_OK;
}

static enum kf_err sq_write_commit(struct kf_store_conn *kc)
{
    enum kf_err rc = run(sq(kc), ST_COMMIT, NULL);
    return rc ? txn_fail(rc, "the transaction could not commit") : KF_OK;
}

static void sq_write_rollback(struct kf_store_conn *kc)
{
    struct sq_conn *c = sq(kc);
    /* After some errors (disk full, I/O) SQLite has already rolled back on its own. */
    if (!sqlite3_get_autocommit(c->h)) run(c, ST_ROLLBACK, NULL);
}

static enum kf_err sq_savepoint(struct kf_store_conn *kc)
{
    return run(sq(kc), ST_SAVEPOINT, NULL);
}

static enum kf_err sq_savepoint_release(struct kf_store_conn *kc)
{
    return run(sq(kc), ST_RELEASE, NULL);
}

static enum kf_err sq_savepoint_rollback(struct kf_store_conn *kc)
{
    struct sq_conn *c = sq(kc);
    enum kf_err rc;
    if (sqlite3_get_autocommit(c->h))
        return kf_fail(KF_E_STORE,
                       "store %s rolled the whole transaction back after a callback's error",
                       c->db->path);
    rc = run(c, ST_ROLLBACK_TO, NULL);
    if (rc) return rc;
    return run(c, ST_RELEASE, NULL);
}

/* ---- CAs ---- */

static enum kf_err row_ca(struct sq_conn *c, sqlite3_stmt *st, struct kf_ca_rec *r)
{
    int f = 0;
    enum kf_err rc;
    f |= col_fixed(st, 0, r->name, sizeof(r->name));
    f |= col_fixed(st, 1, r->serial, sizeof(r->serial));
    f |= col_dup(st, 2, &r->subject);
    f |= col_dup(st, 3, &r->cert_pem);
    f |= col_dup(st, 4, &r->key_uri);
    r->not_before = col_i(st, 5);
    r->not_after = col_i(st, 6);
    r->crl_number = col_i(st, 7);
    r->created = col_i(st, 8);
    rc = col_result(c, f, "CA");
    if (rc) kf_ca_rec_clear(r);
    return rc;
}

static enum kf_err sq_ca_insert(struct kf_store_conn *kc, const struct kf_ca_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CA_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, r->name) | bind_s(st, 2, r->serial) | bind_s(st, 3, r->subject) |
        bind_s(st, 4, r->cert_pem) | bind_s(st, 5, r->key_uri) | bind_i(st, 6, r->not_before) |
        bind_i(st, 7, r->not_after) | bind_i(st, 8, r->crl_number) | bind_i(st, 9, r->created)) {
        rc = bind_fail(c, "a CA");
        goto out;
    }
    s = sqlite3_step(st);
    if (is_unique(s))
        rc = kf_fail(KF_E_EXISTS, "CA %s already exists", r->name);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot insert CA %s", r->name);
out:
    release(c, ST_CA_INSERT, st);
    return rc;
}

static enum kf_err sq_ca_get(struct kf_store_conn *kc, const char *name, struct kf_ca_rec *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CA_GET, &st);

    if (rc) return rc;
    if (bind_s(st, 1, name)) {
        rc = bind_fail(c, "a CA");
        goto out;
    }
    rc = step_row(c, st, "CA", name);
    if (!rc) rc = row_ca(c, st, out);
out:
    release(c, ST_CA_GET, st);
    return rc;
}

static enum kf_err sq_ca_next_crl_number(struct kf_store_conn *kc, const char *name, int64_t *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CA_NEXT_CRL, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, name)) {
        rc = bind_fail(c, "a CA");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *out = col_i(st, 0);
        s = sqlite3_step(st);
        if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot advance the CRL number of CA %s", name);
    } else if (s == SQLITE_DONE) {
        rc = kf_fail(KF_E_NOT_FOUND, "CA %s not found", name);
    } else {
        rc = sq_fail(c, s, "cannot advance the CRL number of CA %s", name);
    }
out:
    release(c, ST_CA_NEXT_CRL, st);
    return rc;
}

/* ---- enrollments ---- */

static int bind_enrollment(sqlite3_stmt *st, const struct kf_enrollment_rec *e)
{
    return bind_s(st, 1, e->id) | bind_s(st, 2, kf_store_enroll_kind_name((int)e->kind)) |
           bind_i(st, 3, e->enabled) | bind_i(st, 4, e->verified) | bind_s(st, 5, e->cert_pem) |
           bind_s(st, 6, e->pubkey_pem) | bind_s(st, 7, e->key_fingerprint) |
           bind_s(st, 8, e->subject) | bind_s(st, 9, e->verification_code) |
           bind_i(st, 10, e->code_expires) | bind_s(st, 11, e->allocation) |
           bind_s(st, 12, e->hub) | bind_s(st, 13, e->networks) | bind_s(st, 14, e->settings) |
           bind_i(st, 15, e->created) | bind_i(st, 16, e->updated) |
           bind_s(st, 17, e->approval_manual ? "manual" : "auto") |
           bind_i(st, 18, e->require_binding ? 1 : 0);
}

static enum kf_err row_enrollment(struct sq_conn *c, sqlite3_stmt *st, struct kf_enrollment_rec *e)
{
    char kind[16], approval[16];
    int f = 0, k;
    enum kf_err rc;

    f |= col_fixed(st, 0, e->id, sizeof(e->id));
    f |= col_fixed(st, 1, kind, sizeof(kind));
    e->enabled = (int)col_i(st, 2);
    e->verified = (int)col_i(st, 3);
    f |= col_dup(st, 4, &e->cert_pem);
    f |= col_dup(st, 5, &e->pubkey_pem);
    f |= col_fixed(st, 6, e->key_fingerprint, sizeof(e->key_fingerprint));
    f |= col_dup(st, 7, &e->subject);
    f |= col_fixed(st, 8, e->verification_code, sizeof(e->verification_code));
    e->code_expires = col_i(st, 9);
    f |= col_fixed(st, 10, e->allocation, sizeof(e->allocation));
    f |= col_fixed(st, 11, e->hub, sizeof(e->hub));
    f |= col_dup(st, 12, &e->networks);
    f |= col_dup(st, 13, &e->settings);
    e->created = col_i(st, 14);
    e->updated = col_i(st, 15);
    f |= col_fixed(st, 16, approval, sizeof(approval));
    e->approval_manual = strcmp(approval, "manual") == 0;
    e->require_binding = col_i(st, 17) != 0;
    k = kf_store_enroll_kind_parse(kind);
    if (k < 0) f |= COL_BAD;
    e->kind = (enum kf_enroll_kind)(k < 0 ? 0 : k);
    rc = col_result(c, f, "enrollment");
    if (rc) kf_enrollment_clear(e);
    return rc;
}

static enum kf_err sq_enrollment_insert(struct kf_store_conn *kc, const struct kf_enrollment_rec *e)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_ENROLL_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_enrollment(st, e)) {
        rc = bind_fail(c, "an enrollment");
        goto out;
    }
    s = sqlite3_step(st);
    if (is_unique(s))
        rc = kf_fail(KF_E_EXISTS, "enrollment %s already exists", e->id);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot insert enrollment %s", e->id);
out:
    release(c, ST_ENROLL_INSERT, st);
    return rc;
}

static enum kf_err sq_enrollment_get(struct kf_store_conn *kc, const char *id,
                                     struct kf_enrollment_rec *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_ENROLL_GET, &st);

    if (rc) return rc;
    if (bind_s(st, 1, id)) {
        rc = bind_fail(c, "an enrollment");
        goto out;
    }
    rc = step_row(c, st, "enrollment", id);
    if (!rc) rc = row_enrollment(c, st, out);
out:
    release(c, ST_ENROLL_GET, st);
    return rc;
}

static enum kf_err sq_enrollment_update(struct kf_store_conn *kc, const struct kf_enrollment_rec *e)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_ENROLL_UPDATE, &st);

    if (rc) return rc;
    if (bind_enrollment(st, e)) {
        rc = bind_fail(c, "an enrollment");
        goto out;
    }
    rc = step_change(c, st, "update", "enrollment", e->id);
out:
    release(c, ST_ENROLL_UPDATE, st);
    return rc;
}

static enum kf_err sq_enrollment_delete(struct kf_store_conn *kc, const char *id)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_ENROLL_DELETE, &st);

    if (rc) return rc;
    if (bind_s(st, 1, id)) {
        rc = bind_fail(c, "an enrollment");
        goto out;
    }
    /* Its devices stay: the foreign key sets their enrollment to NULL (shown as ""). */
    rc = step_change(c, st, "delete", "enrollment", id);
out:
    release(c, ST_ENROLL_DELETE, st);
    return rc;
}

static enum kf_err sq_enrollment_list(struct kf_store_conn *kc, int kind, kf_enrollment_cb cb,
                                      void *arg)
{
    enum stmt_id id = kind ? ST_ENROLL_LIST_KIND : ST_ENROLL_LIST;
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_enrollment_rec e;
    enum kf_err rc = stmt(c, id, &st);
    int s;

    if (rc) return rc;
    if (kind && bind_s(st, 1, kf_store_enroll_kind_name(kind))) {
        rc = bind_fail(c, "the enrollment list");
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&e, 0, sizeof(e));
        rc = row_enrollment(c, st, &e);
        if (rc) goto out;
        rc = cb(&e, arg);
        kf_enrollment_clear(&e);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list enrollments");
out:
    release(c, id, st);
    return rc;
}

/* ---- devices ---- */

static int bind_device(sqlite3_stmt *st, const struct kf_device_rec *d)
{
    return bind_s(st, 1, d->id) | bind_ref(st, 2, d->enrollment) |
           bind_s(st, 3, kf_device_status_name(d->status)) | bind_s(st, 4, d->hub) |
           bind_i(st, 5, d->created) | bind_i(st, 6, d->updated);
}

static enum kf_err row_device(struct sq_conn *c, sqlite3_stmt *st, struct kf_device_rec *d)
{
    char status[16];
    int f = 0, s;

    f |= col_fixed(st, 0, d->id, sizeof(d->id));
    f |= col_fixed(st, 1, d->enrollment, sizeof(d->enrollment));
    f |= col_fixed(st, 2, status, sizeof(status));
    f |= col_fixed(st, 3, d->hub, sizeof(d->hub));
    d->created = col_i(st, 4);
    d->updated = col_i(st, 5);
    s = kf_device_status_parse(status);
    if (s < 0) f |= COL_BAD;
    d->status = (enum kf_device_status)(s < 0 ? 0 : s);
    return col_result(c, f, "device");
}

/* A write of device `d` failed on a constraint or otherwise. */
static enum kf_err device_write_fail(struct sq_conn *c, int s, const struct kf_device_rec *d,
                                     const char *verb)
{
    if (s == SQLITE_CONSTRAINT_FOREIGNKEY)
        return kf_fail(KF_E_NOT_FOUND, "cannot %s device %s: enrollment %s not found", verb, d->id,
                       d->enrollment);
    if (is_unique(s)) return kf_fail(KF_E_EXISTS, "device %s already exists", d->id);
    return sq_fail(c, s, "cannot %s device %s", verb, d->id);
}

static enum kf_err sq_device_insert(struct kf_store_conn *kc, const struct kf_device_rec *d)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_DEVICE_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_device(st, d)) {
        rc = bind_fail(c, "a device");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = device_write_fail(c, s, d, "insert");
out:
    release(c, ST_DEVICE_INSERT, st);
    return rc;
}

static enum kf_err sq_device_get(struct kf_store_conn *kc, const char *id,
                                 struct kf_device_rec *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_DEVICE_GET, &st);

    if (rc) return rc;
    if (bind_s(st, 1, id)) {
        rc = bind_fail(c, "a device");
        goto out;
    }
    rc = step_row(c, st, "device", id);
    if (!rc) rc = row_device(c, st, out);
out:
    release(c, ST_DEVICE_GET, st);
    return rc;
}

static enum kf_err sq_device_update(struct kf_store_conn *kc, const struct kf_device_rec *d)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_DEVICE_UPDATE, &st);
    int s;

    if (rc) return rc;
    if (bind_device(st, d)) {
        rc = bind_fail(c, "a device");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = device_write_fail(c, s, d, "update");
    else if (sqlite3_changes(c->h) == 0)
        rc = kf_fail(KF_E_NOT_FOUND, "device %s not found", d->id);
out:
    release(c, ST_DEVICE_UPDATE, st);
    return rc;
}

static enum kf_err sq_device_list(struct kf_store_conn *kc, int status, const char *enrollment,
                                  kf_device_cb cb, void *arg)
{
    enum stmt_id id = ST_DEVICE_LIST + (status ? 1 : 0) + (enrollment ? 2 : 0);
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_device_rec d;
    enum kf_err rc = stmt(c, id, &st);
    int s;

    if (rc) return rc;
    if ((status && bind_s(st, 1, kf_device_status_name((enum kf_device_status)status))) ||
        (enrollment && bind_ref(st, 2, enrollment))) {
        rc = bind_fail(c, "the device list");
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&d, 0, sizeof(d));
        rc = row_device(c, st, &d);
        if (rc) goto out;
        rc = cb(&d, arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list devices");
out:
    release(c, id, st);
    return rc;
}

static enum kf_err sq_device_count(struct kf_store_conn *kc, int status, int64_t *out)
{
    enum stmt_id id = status ? ST_DEVICE_COUNT_S : ST_DEVICE_COUNT;
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, id, &st);
    int s;

    if (rc) return rc;
    if (status && bind_s(st, 1, kf_device_status_name((enum kf_device_status)status))) {
        rc = bind_fail(c, "the device count");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *out = col_i(st, 0);
    else
        rc = sq_fail(c, s, "cannot count devices");
out:
    release(c, id, st);
    return rc;
}

/* ---- certificates ---- */

static enum kf_err row_cert(struct sq_conn *c, sqlite3_stmt *st, struct kf_cert_rec *r)
{
    char status[16];
    int f = 0, s;
    enum kf_err rc;

    f |= col_fixed(st, 0, r->serial, sizeof(r->serial));
    f |= col_fixed(st, 1, r->device_id, sizeof(r->device_id));
    f |= col_fixed(st, 2, r->profile, sizeof(r->profile));
    f |= col_fixed(st, 3, r->issuer, sizeof(r->issuer));
    f |= col_dup(st, 4, &r->subject);
    r->not_before = col_i(st, 5);
    r->not_after = col_i(st, 6);
    f |= col_fixed(st, 7, status, sizeof(status));
    r->revoked_at = col_i(st, 8);
    r->reason = (int)col_i(st, 9);
    f |= col_fixed(st, 10, r->fingerprint, sizeof(r->fingerprint));
    f |= col_dup(st, 11, &r->pem);
    r->created = col_i(st, 12);
    f |= col_fixed(st, 13, r->service, sizeof(r->service));
    s = kf_store_cert_status_parse(status);
    if (s < 0) f |= COL_BAD;
    r->status = (enum kf_cert_status)(s < 0 ? 0 : s);
    rc = col_result(c, f, "certificate");
    if (rc) kf_cert_rec_clear(r);
    return rc;
}

static enum kf_err sq_cert_insert(struct kf_store_conn *kc, const struct kf_cert_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CERT_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, r->serial) | bind_ref(st, 2, r->device_id) | bind_s(st, 3, r->profile) |
        bind_s(st, 4, r->issuer) | bind_s(st, 5, r->subject) | bind_i(st, 6, r->not_before) |
        bind_i(st, 7, r->not_after) | bind_s(st, 8, kf_cert_status_name(r->status)) |
        bind_i(st, 9, r->revoked_at) | bind_i(st, 10, r->reason) | bind_s(st, 11, r->fingerprint) |
        bind_s(st, 12, r->pem) | bind_i(st, 13, r->created) | bind_ref(st, 14, r->service)) {
        rc = bind_fail(c, "a certificate");
        goto out;
    }
    s = sqlite3_step(st);
    if (is_unique(s))
        rc = kf_fail(KF_E_EXISTS, "certificate %s already exists", r->serial);
    else if (s == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = kf_fail(KF_E_NOT_FOUND, "cannot insert certificate %s: %s %s not found", r->serial,
                     r->service[0] ? "service" : "device",
                     r->service[0] ? r->service : r->device_id);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot insert certificate %s", r->serial);
out:
    release(c, ST_CERT_INSERT, st);
    return rc;
}

static enum kf_err sq_cert_get(struct kf_store_conn *kc, const char *serial,
                               struct kf_cert_rec *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CERT_GET, &st);

    if (rc) return rc;
    if (bind_s(st, 1, serial)) {
        rc = bind_fail(c, "a certificate");
        goto out;
    }
    rc = step_row(c, st, "certificate", serial);
    if (!rc) rc = row_cert(c, st, out);
out:
    release(c, ST_CERT_GET, st);
    return rc;
}

static enum kf_err sq_cert_revoke(struct kf_store_conn *kc, const char *serial, int64_t when,
                                  int reason)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL, *ex = NULL;
    enum kf_err rc = stmt(c, ST_CERT_REVOKE, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, serial) | bind_i(st, 2, when) | bind_i(st, 3, reason)) {
        rc = bind_fail(c, "a revocation");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) {
        rc = sq_fail(c, s, "cannot revoke certificate %s", serial);
        goto out;
    }
    if (sqlite3_changes(c->h) > 0) goto out;
    /* Nothing changed: either there is no such certificate or it is revoked already. */
    rc = stmt(c, ST_CERT_EXISTS, &ex);
    if (rc) goto out;
    if (bind_s(ex, 1, serial)) {
        rc = bind_fail(c, "a certificate");
        goto out;
    }
    s = sqlite3_step(ex);
    if (s == SQLITE_ROW)
        rc = kf_fail(KF_E_CONFLICT, "certificate %s is already revoked", serial);
    else if (s == SQLITE_DONE)
        rc = kf_fail(KF_E_NOT_FOUND, "certificate %s not found", serial);
    else
        rc = sq_fail(c, s, "cannot read certificate %s", serial);
out:
    release(c, ST_CERT_EXISTS, ex);
    release(c, ST_CERT_REVOKE, st);
    return rc;
}

static enum kf_err cert_rows(struct sq_conn *c, sqlite3_stmt *st, kf_cert_cb cb, void *arg)
{
    struct kf_cert_rec r;
    enum kf_err rc;
    int s;

    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&r, 0, sizeof(r));
        rc = row_cert(c, st, &r);
        if (rc) return rc;
        rc = cb(&r, arg);
        kf_cert_rec_clear(&r);
        if (rc) return rc;
    }
    if (s != SQLITE_DONE) return sq_fail(c, s, "cannot list certificates");
    return KF_OK;
}

static enum kf_err sq_cert_list(struct kf_store_conn *kc, const char *device_id, int status,
                                int64_t limit, kf_cert_cb cb, void *arg)
{
    enum stmt_id id = ST_CERT_LIST + (device_id ? 1 : 0) + (status ? 2 : 0);
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, id, &st);

    if (rc) return rc;
    /* SQLite reads a negative LIMIT as none. */
    if ((device_id && bind_ref(st, 1, device_id)) ||
        (status && bind_s(st, 2, kf_cert_status_name((enum kf_cert_status)status))) ||
        bind_i(st, 3, limit == KF_LIST_ALL ? -1 : limit)) {
        rc = bind_fail(c, "the certificate list");
        goto out;
    }
    rc = cert_rows(c, st, cb, arg);
out:
    release(c, id, st);
    return rc;
}

static enum kf_err sq_cert_revoked(struct kf_store_conn *kc, const char *issuer, int64_t now,
                                   kf_cert_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CERT_REVOKED, &st);

    if (rc) return rc;
    if (bind_s(st, 1, issuer) | bind_i(st, 2, now)) {
        rc = bind_fail(c, "the revoked list");
        goto out;
    }
    rc = cert_rows(c, st, cb, arg);
out:
    release(c, ST_CERT_REVOKED, st);
    return rc;
}

static enum kf_err sq_cert_revoked_serials(struct kf_store_conn *kc, const char *issuer,
                                           kf_serial_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    char serial[KF_SERIAL_HEX_MAX];
    enum kf_err rc = stmt(c, ST_CERT_REVOKED_SERIALS, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, issuer)) {
        rc = bind_fail(c, "the revoked serials");
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (col_fixed(st, 0, serial, sizeof(serial))) continue; /* not a serial of ours */
        rc = cb(serial, arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list the revoked serials");
out:
    release(c, ST_CERT_REVOKED_SERIALS, st);
    return rc;
}

static enum kf_err sq_cert_list_service(struct kf_store_conn *kc, const char *name, kf_cert_cb cb,
                                        void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CERT_LIST_SERVICE, &st);

    if (rc) return rc;
    if (bind_s(st, 1, name)) {
        rc = bind_fail(c, "the certificate list");
        goto out;
    }
    rc = cert_rows(c, st, cb, arg);
out:
    release(c, ST_CERT_LIST_SERVICE, st);
    return rc;
}

/* ---- service identities ---- */

static enum kf_err row_service(struct sq_conn *c, sqlite3_stmt *st, struct kf_service_rec *r)
{
    char status[16];
    int f = 0, v;
    f |= col_fixed(st, 0, r->name, sizeof(r->name));
    f |= col_fixed(st, 1, r->role, sizeof(r->role));
    f |= col_fixed(st, 2, status, sizeof(status));
    r->created = col_i(st, 3);
    r->updated = col_i(st, 4);
    v = kf_store_service_status_parse(status);
    if (v < 0) f |= COL_BAD;
    r->status = (enum kf_service_status)(v < 0 ? 0 : v);
    return col_result(c, f, "service");
}

static int bind_service(sqlite3_stmt *st, const struct kf_service_rec *r)
{
    return bind_s(st, 1, r->name) | bind_s(st, 2, r->role) |
           bind_s(st, 3, kf_service_status_name(r->status)) | bind_i(st, 4, r->created) |
           bind_i(st, 5, r->updated);
}

static enum kf_err sq_service_insert(struct kf_store_conn *kc, const struct kf_service_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_SERVICE_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_service(st, r)) {
        rc = bind_fail(c, "a service");
        goto out;
    }
    s = sqlite3_step(st);
    if (is_unique(s))
        rc = kf_fail(KF_E_EXISTS, "service %s already exists", r->name);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot insert service %s", r->name);
out:
    release(c, ST_SERVICE_INSERT, st);
    return rc;
}

static enum kf_err sq_service_get(struct kf_store_conn *kc, const char *name,
                                  struct kf_service_rec *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_SERVICE_GET, &st);

    if (rc) return rc;
    if (bind_s(st, 1, name)) {
        rc = bind_fail(c, "a service");
        goto out;
    }
    rc = step_row(c, st, "service", name);
    if (!rc) rc = row_service(c, st, out);
out:
    release(c, ST_SERVICE_GET, st);
    return rc;
}

static enum kf_err sq_service_update(struct kf_store_conn *kc, const struct kf_service_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_SERVICE_UPDATE, &st);

    if (rc) return rc;
    if (bind_service(st, r)) {
        rc = bind_fail(c, "a service");
        goto out;
    }
    rc = step_change(c, st, "update", "service", r->name);
out:
    release(c, ST_SERVICE_UPDATE, st);
    return rc;
}

static enum kf_err sq_service_list(struct kf_store_conn *kc, kf_service_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_service_rec r;
    enum kf_err rc = stmt(c, ST_SERVICE_LIST, &st);
    int s;

    if (rc) return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&r, 0, sizeof(r));
        rc = row_service(c, st, &r);
        if (!rc) rc = cb(&r, arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list services");
out:
    release(c, ST_SERVICE_LIST, st);
    return rc;
}

/* ---- registrations ---- */

static enum kf_err sq_registration_put(struct kf_store_conn *kc,
                                       const struct kf_registration_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_REG_PUT, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, r->device_id) | bind_s(st, 2, r->enrollment) | bind_s(st, 3, r->hub) |
        bind_s(st, 4, r->cert_serial) | bind_s(st, 5, r->source_ip) | bind_i(st, 6, r->first_at) |
        bind_i(st, 7, r->last_at) | bind_i(st, 8, r->renew_after) | bind_i(st, 9, r->count)) {
        rc = bind_fail(c, "a registration");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = kf_fail(KF_E_NOT_FOUND,
                     "cannot record the registration of device %s: device %s not "
                     "found",
                     r->device_id, r->device_id);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot record the registration of device %s", r->device_id);
out:
    release(c, ST_REG_PUT, st);
    return rc;
}

static enum kf_err sq_registration_get(struct kf_store_conn *kc, const char *device_id,
                                       struct kf_registration_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_REG_GET, &st);
    int s, f = 0;

    if (rc) return rc;
    if (bind_s(st, 1, device_id)) {
        rc = bind_fail(c, "a registration");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        f |= col_fixed(st, 0, r->device_id, sizeof(r->device_id));
        f |= col_fixed(st, 1, r->enrollment, sizeof(r->enrollment));
        f |= col_fixed(st, 2, r->hub, sizeof(r->hub));
        f |= col_fixed(st, 3, r->cert_serial, sizeof(r->cert_serial));
        f |= col_fixed(st, 4, r->source_ip, sizeof(r->source_ip));
        r->first_at = col_i(st, 5);
        r->last_at = col_i(st, 6);
        r->renew_after = col_i(st, 7);
        r->count = col_i(st, 8);
        rc = col_result(c, f, "registration");
    } else if (s == SQLITE_DONE) {
        rc = kf_fail(KF_E_NOT_FOUND, "registration of device %s not found", device_id);
    } else {
        rc = sq_fail(c, s, "cannot read the registration of device %s", device_id);
    }
out:
    release(c, ST_REG_GET, st);
    return rc;
}

/* ---- approvals ---- */

static enum kf_err sq_approval_put(struct kf_store_conn *kc, const struct kf_approval_rec *a)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_APPROVAL_PUT, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, a->device_id) | bind_s(st, 2, a->enrollment) |
        bind_s(st, 3, kf_approval_state_name((int)a->state)) | bind_s(st, 4, a->fingerprint) |
        bind_s(st, 5, a->source_ip) | bind_i(st, 6, a->requested) | bind_i(st, 7, a->last_request) |
        bind_i(st, 8, a->requests) | bind_i(st, 9, a->decided) | bind_s(st, 10, a->decided_by)) {
        rc = bind_fail(c, "an approval");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot record the approval of device %s", a->device_id);
out:
    release(c, ST_APPROVAL_PUT, st);
    return rc;
}

static enum kf_err row_approval(struct sq_conn *c, sqlite3_stmt *st, struct kf_approval_rec *a)
{
    char state[16];
    int f = 0, k;
    f |= col_fixed(st, 0, a->device_id, sizeof(a->device_id));
    f |= col_fixed(st, 1, a->enrollment, sizeof(a->enrollment));
    f |= col_fixed(st, 2, state, sizeof(state));
    f |= col_fixed(st, 3, a->fingerprint, sizeof(a->fingerprint));
    f |= col_fixed(st, 4, a->source_ip, sizeof(a->source_ip));
    a->requested = col_i(st, 5);
    a->last_request = col_i(st, 6);
    a->requests = col_i(st, 7);
    a->decided = col_i(st, 8);
    f |= col_fixed(st, 9, a->decided_by, sizeof(a->decided_by));
    k = kf_approval_state_parse(state);
    if (k < 0) f |= COL_BAD;
    a->state = (enum kf_approval_state)(k < 0 ? 0 : k);
    return col_result(c, f, "approval");
}

static enum kf_err sq_approval_get(struct kf_store_conn *kc, const char *device_id,
                                   struct kf_approval_rec *a)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_APPROVAL_GET, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, device_id)) {
        rc = bind_fail(c, "an approval");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        rc = row_approval(c, st, a);
    else if (s == SQLITE_DONE)
        rc = kf_fail(KF_E_NOT_FOUND, "device %s never asked for approval", device_id);
    else
        rc = sq_fail(c, s, "cannot read the approval of device %s", device_id);
out:
    release(c, ST_APPROVAL_GET, st);
    return rc;
}

static enum kf_err sq_approval_list(struct kf_store_conn *kc, int state, kf_approval_cb cb,
                                    void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum stmt_id id = state < 0 ? ST_APPROVAL_LIST : ST_APPROVAL_LIST_STATE;
    struct kf_approval_rec a;
    enum kf_err rc = stmt(c, id, &st);
    int s;

    if (rc) return rc;
    if (state >= 0 && bind_s(st, 1, kf_approval_state_name(state))) {
        rc = bind_fail(c, "approvals");
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&a, 0, sizeof(a));
        rc = row_approval(c, st, &a);
        if (!rc) rc = cb(&a, arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list approvals");
out:
    release(c, id, st);
    return rc;
}

static enum kf_err sq_approval_count(struct kf_store_conn *kc, int state, int64_t *n)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_APPROVAL_COUNT, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, kf_approval_state_name(state))) {
        rc = bind_fail(c, "approvals");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *n = col_i(st, 0);
    else
        rc = sq_fail(c, s, "cannot count approvals");
out:
    release(c, ST_APPROVAL_COUNT, st);
    return rc;
}

/* ---- the hub's retained messages ---- */

static enum kf_err sq_retained_put(struct kf_store_conn *kc, const uint8_t *topic, size_t tlen,
                                   const uint8_t *msg, size_t mlen, int64_t now)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_RETAINED_PUT, &st);
    int s;

    if (rc) return rc;
    if (sqlite3_bind_blob(st, 1, topic, (int)tlen, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(st, 2, msg, (int)mlen, SQLITE_STATIC) != SQLITE_OK ||
        bind_i(st, 3, now)) {
        rc = bind_fail(c, "a retained message");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot keep a retained message");
out:
    release(c, ST_RETAINED_PUT, st);
    return rc;
}

static enum kf_err sq_retained_delete(struct kf_store_conn *kc, const uint8_t *topic, size_t tlen)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_RETAINED_DELETE, &st);
    int s;

    if (rc) return rc;
    if (sqlite3_bind_blob(st, 1, topic, (int)tlen, SQLITE_STATIC) != SQLITE_OK) {
        rc = bind_fail(c, "a retained message");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot clear a retained message");
out:
    release(c, ST_RETAINED_DELETE, st);
    return rc;
}

static enum kf_err sq_retained_list(struct kf_store_conn *kc, kf_retained_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_RETAINED_LIST, &st);
    int s;

    if (rc) return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        rc = cb(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list the retained messages");
out:
    release(c, ST_RETAINED_LIST, st);
    return rc;
}

/* ---- the hub's persistent sessions ---- */

/* Runs statement `which` with (session, kind, key, value) bound as far as `n` of them. */
static enum kf_err hub_state_run(struct sq_conn *c, int which, int n, const char *session, int kind,
                                 int64_t key, const uint8_t *value, size_t len, const char *what)
{
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, which, &st);
    int s;

    if (rc) return rc;
    if (sqlite3_bind_text(st, 1, session, -1, SQLITE_STATIC) != SQLITE_OK ||
        (n > 1 && (bind_i(st, 2, kind) || bind_i(st, 3, key))) ||
        (n > 3 && sqlite3_bind_blob(st, 4, len ? (const void *)value : "", (int)len,
                                    SQLITE_STATIC) != SQLITE_OK)) {
        rc = bind_fail(c, "a hub session's state");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "%s", what);
out:
    release(c, which, st);
    return rc;
}

static enum kf_err sq_hub_state_put(struct kf_store_conn *kc, const char *session, int kind,
                                    int64_t key, const uint8_t *value, size_t len)
{
    return hub_state_run(sq(kc), ST_HUB_STATE_PUT, 4, session, kind, key, value, len,
                         "cannot keep a hub session's state");
}

static enum kf_err sq_hub_state_delete(struct kf_store_conn *kc, const char *session, int kind,
                                       int64_t key)
{
    return hub_state_run(sq(kc), ST_HUB_STATE_DELETE, 3, session, kind, key, NULL, 0,
                         "cannot delete a hub session's state");
}

static enum kf_err sq_hub_state_drop(struct kf_store_conn *kc, const char *session)
{
    return hub_state_run(sq(kc), ST_HUB_STATE_DROP, 1, session, 0, 0, NULL, 0,
                         "cannot end a hub session");
}

static enum kf_err sq_hub_state_list(struct kf_store_conn *kc, kf_hub_state_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_HUB_STATE_LIST, &st);
    int s;

    if (rc) return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        rc = cb((const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1),
                sqlite3_column_int64(st, 2), sqlite3_column_blob(st, 3),
                (size_t)sqlite3_column_bytes(st, 3), arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list the hub's sessions");
out:
    release(c, ST_HUB_STATE_LIST, st);
    return rc;
}

/* ---- hubs ---- */

static enum kf_err row_hub(struct sq_conn *c, sqlite3_stmt *st, struct kf_hub_rec *h)
{
    int f = 0;
    f |= col_fixed(st, 0, h->name, sizeof(h->name));
    f |= col_fixed(st, 1, h->endpoint, sizeof(h->endpoint));
    h->weight = (int)col_i(st, 2);
    h->enabled = (int)col_i(st, 3);
    h->created = col_i(st, 4);
    return col_result(c, f, "hub");
}

static int bind_hub(sqlite3_stmt *st, const struct kf_hub_rec *h)
{
    return bind_s(st, 1, h->name) | bind_s(st, 2, h->endpoint) | bind_i(st, 3, h->weight) |
           bind_i(st, 4, h->enabled) | bind_i(st, 5, h->created);
}

static enum kf_err sq_hub_insert(struct kf_store_conn *kc, const struct kf_hub_rec *h)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_HUB_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_hub(st, h)) {
        rc = bind_fail(c, "a hub");
        goto out;
    }
    s = sqlite3_step(st);
    if (is_unique(s))
        rc = kf_fail(KF_E_EXISTS, "hub %s already exists", h->name);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot insert hub %s", h->name);
out:
    release(c, ST_HUB_INSERT, st);
    return rc;
}

static enum kf_err sq_hub_get(struct kf_store_conn *kc, const char *name, struct kf_hub_rec *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_HUB_GET, &st);

    if (rc) return rc;
    if (bind_s(st, 1, name)) {
        rc = bind_fail(c, "a hub");
        goto out;
    }
    rc = step_row(c, st, "hub", name);
    if (!rc) rc = row_hub(c, st, out);
out:
    release(c, ST_HUB_GET, st);
    return rc;
}

static enum kf_err sq_hub_update(struct kf_store_conn *kc, const struct kf_hub_rec *h)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_HUB_UPDATE, &st);

    if (rc) return rc;
    if (bind_hub(st, h)) {
        rc = bind_fail(c, "a hub");
        goto out;
    }
    rc = step_change(c, st, "update", "hub", h->name);
out:
    release(c, ST_HUB_UPDATE, st);
    return rc;
}

static enum kf_err sq_hub_delete(struct kf_store_conn *kc, const char *name)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_HUB_DELETE, &st);

    if (rc) return rc;
    if (bind_s(st, 1, name)) {
        rc = bind_fail(c, "a hub");
        goto out;
    }
    rc = step_change(c, st, "delete", "hub", name);
out:
    release(c, ST_HUB_DELETE, st);
    return rc;
}

static enum kf_err sq_hub_list(struct kf_store_conn *kc, kf_hub_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_hub_rec h;
    enum kf_err rc = stmt(c, ST_HUB_LIST, &st);
    int s;

    if (rc) return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&h, 0, sizeof(h));
        rc = row_hub(c, st, &h);
        if (rc) goto out;
        rc = cb(&h, arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list hubs");
out:
    release(c, ST_HUB_LIST, st);
    return rc;
}

/* ---- security events ---- */

static enum kf_err sq_event_insert(struct kf_store_conn *kc, const struct kf_event_rec *e,
                                   int64_t *id)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_EVENT_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_i(st, 1, e->time_ms) | bind_s(st, 2, e->type) | bind_s(st, 3, e->severity) |
        bind_s(st, 4, e->device) | bind_s(st, 5, e->source) | bind_s(st, 6, e->ip) |
        bind_s(st, 7, e->detail) | bind_s(st, 8, e->claimed)) {
        rc = bind_fail(c, "an event");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot record event %s", e->type);
    else if (id)
        *id = sqlite3_last_insert_rowid(c->h);
out:
    release(c, ST_EVENT_INSERT, st);
    return rc;
}

static enum kf_err row_event(struct sq_conn *c, sqlite3_stmt *st, struct kf_event_rec *e)
{
    int f = 0;
    enum kf_err rc;
    e->id = col_i(st, 0);
    e->time_ms = col_i(st, 1);
    f |= col_fixed(st, 2, e->type, sizeof(e->type));
    f |= col_fixed(st, 3, e->severity, sizeof(e->severity));
    f |= col_fixed(st, 4, e->device, sizeof(e->device));
    f |= col_fixed(st, 5, e->source, sizeof(e->source));
    f |= col_fixed(st, 6, e->ip, sizeof(e->ip));
    f |= col_dup(st, 7, &e->detail);
    f |= col_fixed(st, 8, e->claimed, sizeof(e->claimed));
    rc = col_result(c, f, "security event");
    if (rc) kf_event_clear(e);
    return rc;
}

/* Steps the bound event list `st` (statement `id`), each event to `cb`, then releases it. */
static enum kf_err events_each(struct sq_conn *c, enum stmt_id id, sqlite3_stmt *st, kf_event_cb cb,
                               void *arg)
{
    struct kf_event_rec e;
    enum kf_err rc = KF_OK;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&e, 0, sizeof(e));
        rc = row_event(c, st, &e);
        if (rc) goto out;
        rc = cb(&e, arg);
        kf_event_clear(&e);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list events");
out:
    release(c, id, st);
    return rc;
}

static enum kf_err sq_event_list(struct kf_store_conn *kc, int64_t since_ms, const char *type,
                                 const char *device, int64_t limit, kf_event_cb cb, void *arg)
{
    enum stmt_id id = ST_EVENT_LIST + (type ? 1 : 0) + (device ? 2 : 0);
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, id, &st);

    if (rc) return rc;
    if (bind_i(st, 1, since_ms) || (type && bind_s(st, 2, type)) ||
        (device && bind_s(st, 3, device)) || bind_i(st, 4, limit == KF_LIST_ALL ? -1 : limit)) {
        release(c, id, st);
        return bind_fail(c, "the event list");
    }
    return events_each(c, id, st, cb, arg);
}

static enum kf_err sq_event_after(struct kf_store_conn *kc, int64_t after_id, int64_t limit,
                                  kf_event_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_EVENT_AFTER, &st);

    if (rc) return rc;
    if (bind_i(st, 1, after_id) || bind_i(st, 2, limit == KF_LIST_ALL ? -1 : limit)) {
        release(c, ST_EVENT_AFTER, st);
        return bind_fail(c, "the event list");
    }
    return events_each(c, ST_EVENT_AFTER, st, cb, arg);
}

/* ---- rollouts ---- */

static enum kf_err row_rollout(struct sq_conn *c, sqlite3_stmt *st, struct kf_rollout_rec *r)
{
    int f = 0;
    enum kf_err rc;
    r->id = col_i(st, 0);
    f |= col_fixed(st, 1, r->state, sizeof(r->state));
    f |= col_fixed(st, 2, r->target, sizeof(r->target));
    f |= col_fixed(st, 3, r->hardware, sizeof(r->hardware));
    r->version = col_i(st, 4);
    r->released = col_i(st, 5);
    f |= col_dup(st, 6, &r->doc);
    r->created = col_i(st, 7);
    r->updated = col_i(st, 8);
    rc = col_result(c, f, "rollout");
    if (rc) kf_rollout_rec_clear(r);
    return rc;
}

static int bind_rollout(sqlite3_stmt *st, const struct kf_rollout_rec *r, int with_id)
{
    int f = with_id ? bind_i(st, 1, r->id) : 0;
    return f | bind_s(st, 2, r->state) | bind_s(st, 3, r->target) | bind_s(st, 4, r->hardware) |
           bind_i(st, 5, r->version) | bind_i(st, 6, r->released) | bind_s(st, 7, r->doc) |
           bind_i(st, 8, r->created) | bind_i(st, 9, r->updated);
}

static enum kf_err sq_rollout_insert(struct kf_store_conn *kc, const struct kf_rollout_rec *r,
                                     int64_t *id)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_ROLLOUT_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_rollout(st, r, 0)) {
        rc = bind_fail(c, "a rollout");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot insert a rollout of %s", r->target);
    else
        *id = sqlite3_last_insert_rowid(c->h);
out:
    release(c, ST_ROLLOUT_INSERT, st);
    return rc;
}

/* One-row SELECT of a rollout by `which` bound to `bind_id` or `bind_text` (and `bind_text2`). */
static enum kf_err rollout_one(struct sq_conn *c, enum stmt_id which, int64_t bind_id,
                               const char *bind_text, const char *bind_text2, const char *key,
                               int quiet, struct kf_rollout_rec *out)
{
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, which, &st);
    int s;

    if (rc) return rc;
    if ((bind_text ? bind_s(st, 1, bind_text) : bind_i(st, 1, bind_id)) ||
        (bind_text2 && bind_s(st, 2, bind_text2))) {
        rc = bind_fail(c, "a rollout");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        rc = row_rollout(c, st, out);
    else if (s == SQLITE_DONE)
        rc = quiet ? KF_E_NOT_FOUND : kf_fail(KF_E_NOT_FOUND, "rollout %s not found", key);
    else
        rc = sq_fail(c, s, "cannot read rollout %s", key);
out:
    release(c, which, st);
    return rc;
}

static enum kf_err sq_rollout_get(struct kf_store_conn *kc, int64_t id, struct kf_rollout_rec *out)
{
    char key[24];
    snprintf(key, sizeof(key), "%" PRId64, id);
    return rollout_one(sq(kc), ST_ROLLOUT_GET, id, NULL, NULL, key, 0, out);
}

static enum kf_err sq_rollout_assigned(struct kf_store_conn *kc, const char *device,
                                       const char *hardware, struct kf_rollout_rec *out)
{
    return rollout_one(sq(kc), ST_ROLLOUT_ASSIGNED, 0, device, hardware, device, 1, out);
}

static enum kf_err sq_rollout_update(struct kf_store_conn *kc, const struct kf_rollout_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_ROLLOUT_UPDATE, &st);
    char key[24];

    if (rc) return rc;
    snprintf(key, sizeof(key), "%" PRId64, r->id);
    if (bind_rollout(st, r, 1)) {
        rc = bind_fail(c, "a rollout");
        goto out;
    }
    rc = step_change(c, st, "update", "rollout", key);
out:
    release(c, ST_ROLLOUT_UPDATE, st);
    return rc;
}

static enum kf_err sq_rollout_list(struct kf_store_conn *kc, kf_rollout_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_rollout_rec r;
    enum kf_err rc = stmt(c, ST_ROLLOUT_LIST, &st);
    int s;

    if (rc) return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&r, 0, sizeof(r));
        rc = row_rollout(c, st, &r);
        if (rc) goto out;
        rc = cb(&r, arg);
        kf_rollout_rec_clear(&r);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list rollouts");
out:
    release(c, ST_ROLLOUT_LIST, st);
    return rc;
}

static enum kf_err row_rdev(struct sq_conn *c, sqlite3_stmt *st, struct kf_rollout_device_rec *d)
{
    int f = 0;
    d->rollout = col_i(st, 0);
    f |= col_fixed(st, 1, d->device, sizeof(d->device));
    d->ord = col_i(st, 2);
    f |= col_fixed(st, 3, d->state, sizeof(d->state));
    f |= col_fixed(st, 4, d->reason, sizeof(d->reason));
    d->updated = col_i(st, 5);
    d->accepted = (int)col_i(st, 6);
    return col_result(c, f, "rollout device");
}

static enum kf_err sq_rollout_device_put(struct kf_store_conn *kc,
                                         const struct kf_rollout_device_rec *d)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_RDEV_PUT, &st);
    int s;

    if (rc) return rc;
    if (bind_i(st, 1, d->rollout) | bind_s(st, 2, d->device) | bind_i(st, 3, d->ord) |
        bind_s(st, 4, d->state) | bind_s(st, 5, d->reason) | bind_i(st, 6, d->updated) |
        bind_i(st, 7, d->accepted ? 1 : 0)) {
        rc = bind_fail(c, "a rollout device");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot record device %s in rollout %" PRId64, d->device, d->rollout);
out:
    release(c, ST_RDEV_PUT, st);
    return rc;
}

static enum kf_err sq_rollout_device_list(struct kf_store_conn *kc, int64_t rollout,
                                          kf_rollout_device_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_rollout_device_rec d;
    enum kf_err rc = stmt(c, ST_RDEV_LIST, &st);
    int s;

    if (rc) return rc;
    if (bind_i(st, 1, rollout)) {
        rc = bind_fail(c, "a rollout");
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&d, 0, sizeof(d));
        rc = row_rdev(c, st, &d);
        if (!rc) rc = cb(&d, arg);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot list the devices of rollout %" PRId64, rollout);
out:
    release(c, ST_RDEV_LIST, st);
    return rc;
}

static enum kf_err sq_rollout_device_find(struct kf_store_conn *kc, const char *device,
                                          int64_t version, const char *target,
                                          struct kf_rollout_device_rec *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_RDEV_FIND, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, device) | bind_i(st, 2, version) | bind_s(st, 3, target)) {
        rc = bind_fail(c, "a rollout device");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        rc = row_rdev(c, st, out);
    else if (s == SQLITE_DONE)
        rc = KF_E_NOT_FOUND;
    else
        rc = sq_fail(c, s, "cannot read the rollouts of device %s", device);
out:
    release(c, ST_RDEV_FIND, st);
    return rc;
}

static enum kf_err sq_meta_get(struct kf_store_conn *kc, const char *key, int64_t *value)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_META_GET, &st);
    int s;

    *value = 0;
    if (rc) return rc;
    if (bind_s(st, 1, key)) {
        rc = bind_fail(c, "a counter");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *value = col_i(st, 0);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot read counter %s", key);
out:
    release(c, ST_META_GET, st);
    return rc;
}

static enum kf_err sq_meta_put(struct kf_store_conn *kc, const char *key, int64_t value)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_META_PUT, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, key) | bind_i(st, 2, value)) {
        rc = bind_fail(c, "a counter");
        goto out;
    }
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot write counter %s", key);
out:
    release(c, ST_META_PUT, st);
    return rc;
}

static enum kf_err sq_event_prune(struct kf_store_conn *kc, int64_t before_ms, int64_t keep_rows,
                                  int64_t limit, int64_t *deleted)
{
    struct sq_conn *c = sq(kc);
    enum kf_err rc = KF_OK;
    *deleted = 0;
    for (int pass = 0; pass < 2 && !rc && *deleted < limit; pass++) {
        enum stmt_id id = pass == 0 ? ST_EVENT_PRUNE_AGE : ST_EVENT_PRUNE_ROWS;
        sqlite3_stmt *st = NULL;
        int s;
        if (pass == 0 && before_ms <= 0) continue;
        if (pass == 1 && keep_rows <= 0) continue;
        rc = stmt(c, id, &st);
        if (rc) break;
        if (bind_i(st, 1, pass == 0 ? before_ms : keep_rows) || bind_i(st, 2, limit - *deleted)) {
            rc = bind_fail(c, "the event pruning");
        } else {
            s = sqlite3_step(st);
            if (s != SQLITE_DONE)
                rc = sq_fail(c, s, "cannot prune security events");
            else
                *deleted += sqlite3_changes(c->h);
        }
        release(c, id, st);
    }
    return rc;
}

/* ---- audit log ---- */

static enum kf_err sq_audit_last(struct kf_store_conn *kc, int64_t *seq, char *hash)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_AUDIT_LAST, &st);
    int s;

    if (rc) return rc;
    s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *seq = col_i(st, 0);
        /* A stored hash that does not fit was tampered with: "" links to nothing. */
        if (col_fixed(st, 1, hash, KF_HASH_HEX) & COL_NOMEM)
            rc = kf_fail(KF_E_NOMEM, "out of memory reading the audit log");
    } else if (s == SQLITE_DONE) {
        rc = KF_E_NOT_FOUND;
    } else {
        rc = sq_fail(c, s, "cannot read the audit log");
    }
    release(c, ST_AUDIT_LAST, st);
    return rc;
}

static enum kf_err sq_audit_insert(struct kf_store_conn *kc, const struct kf_audit_rec *r)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_AUDIT_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_i(st, 1, r->seq) | bind_i(st, 2, r->time_ms) | bind_s(st, 3, r->actor) |
        bind_s(st, 4, r->action) | bind_s(st, 5, r->object) | bind_s(st, 6, r->detail) |
        bind_s(st, 7, r->prev_hash) | bind_s(st, 8, r->hash)) {
        rc = bind_fail(c, "an audit record");
        goto out;
    }
    s = sqlite3_step(st);
    if (is_unique(s))
        rc = kf_fail(KF_E_CONFLICT, "audit record %" PRId64 " already exists", r->seq);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot append audit record %" PRId64, r->seq);
out:
    release(c, ST_AUDIT_INSERT, st);
    return rc;
}

/*
 * An audit row. A field that does not fit (or a NULL detail, which we never write) was written
 * by someone else, so it cannot be what was hashed. Rather than fail the listing, the record is
 * handed on with an empty hash, which no recomputed hash matches: verification reports it as
 * altered, and a listing still shows the rest of the log.
 */
static enum kf_err row_audit(sqlite3_stmt *st, struct kf_audit_rec *r)
{
    int f = 0;
    r->seq = col_i(st, 0);
    r->time_ms = col_i(st, 1);
    f |= col_fixed(st, 2, r->actor, sizeof(r->actor));
    f |= col_fixed(st, 3, r->action, sizeof(r->action));
    f |= col_fixed(st, 4, r->object, sizeof(r->object));
    f |= col_dup(st, 5, &r->detail);
    f |= col_fixed(st, 6, r->prev_hash, sizeof(r->prev_hash));
    f |= col_fixed(st, 7, r->hash, sizeof(r->hash));
    if (!r->detail && !(f & COL_NOMEM)) {
        f |= COL_BAD;
        r->detail = strdup("{}");
        if (!r->detail) f |= COL_NOMEM;
    }
    if (f & COL_NOMEM) {
        kf_audit_rec_clear(r);
        return kf_fail(KF_E_NOMEM, "out of memory reading the audit log");
    }
    if (f & COL_BAD) r->hash[0] = '\0';
    return KF_OK;
}

static enum kf_err sq_audit_list(struct kf_store_conn *kc, int64_t since_ms, kf_audit_cb cb,
                                 void *arg)
{
    enum stmt_id id = since_ms == INT64_MIN ? ST_AUDIT_LIST : ST_AUDIT_LIST_SINCE;
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_audit_rec r;
    enum kf_err rc = stmt(c, id, &st);
    int s;

    if (rc) return rc;
    if (id == ST_AUDIT_LIST_SINCE && bind_i(st, 1, since_ms)) {
        rc = bind_fail(c, "the audit list");
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&r, 0, sizeof(r));
        rc = row_audit(st, &r);
        if (rc) goto out;
        rc = cb(&r, arg);
        kf_audit_rec_clear(&r);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list the audit log");
out:
    release(c, id, st);
    return rc;
}

static enum kf_err sq_checkpoint_insert(struct kf_store_conn *kc,
                                        const struct kf_checkpoint_rec *cp)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_CHECKPOINT_INSERT, &st);
    int s;

    if (rc) return rc;
    if (bind_i(st, 1, cp->seq) | bind_s(st, 2, cp->head) | bind_i(st, 3, cp->time_ms) |
        bind_s(st, 4, cp->signer) | bind_s(st, 5, cp->signature)) {
        rc = bind_fail(c, "an audit checkpoint");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_CONSTRAINT_PRIMARYKEY || (s & 0xff) == SQLITE_CONSTRAINT)
        rc = kf_fail(KF_E_EXISTS, "a checkpoint of audit record %" PRId64 " exists", cp->seq);
    else if (s != SQLITE_DONE)
        rc = sq_fail(c, s, "cannot record an audit checkpoint");
out:
    release(c, ST_CHECKPOINT_INSERT, st);
    return rc;
}

static enum kf_err sq_checkpoint_list(struct kf_store_conn *kc, kf_checkpoint_cb cb, void *arg)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    struct kf_checkpoint_rec cp;
    enum kf_err rc = stmt(c, ST_CHECKPOINT_LIST, &st);
    int s;

    if (rc) return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int f = 0;
        memset(&cp, 0, sizeof(cp));
        cp.seq = col_i(st, 0);
        f |= col_fixed(st, 1, cp.head, sizeof(cp.head));
        cp.time_ms = col_i(st, 2);
        f |= col_fixed(st, 3, cp.signer, sizeof(cp.signer));
        f |= col_dup(st, 4, &cp.signature);
        rc = col_result(c, f, "audit checkpoint");
        if (!rc) rc = cb(&cp, arg);
        free(cp.signature);
        if (rc) goto out;
    }
    if (s != SQLITE_DONE) rc = sq_fail(c, s, "cannot list the audit checkpoints");
out:
    release(c, ST_CHECKPOINT_LIST, st);
    return rc;
}

static enum kf_err sq_audit_find_hash(struct kf_store_conn *kc, const char *hash, int64_t not_seq,
                                      int64_t *seq)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_AUDIT_FIND_HASH, &st);
    int s;

    if (rc) return rc;
    if (bind_s(st, 1, hash) | bind_i(st, 2, not_seq)) {
        rc = bind_fail(c, "an audit lookup");
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *seq = col_i(st, 0);
    else if (s == SQLITE_DONE)
        rc = KF_E_NOT_FOUND;
    else
        rc = sq_fail(c, s, "cannot search the audit log");
out:
    release(c, ST_AUDIT_FIND_HASH, st);
    return rc;
}

/* ---- registry version ---- */

static enum kf_err sq_registry_version(struct kf_store_conn *kc, int64_t *out)
{
    struct sq_conn *c = sq(kc);
    sqlite3_stmt *st = NULL;
    enum kf_err rc = stmt(c, ST_REGISTRY_VERSION, &st);
    int s;

    if (rc) return rc;
    s = sqlite3_step(st);
    if (s == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER)
        *out = col_i(st, 0);
    else if (s == SQLITE_ROW)
        rc = malformed(c, "registry version");
    else if (s == SQLITE_DONE)
        /* The migration wrote the row and nothing of ours deletes it. */
        rc = kf_fail(KF_E_STORE, "store %s has lost its registry version: was it edited?",
                     c->db->path);
    else
        rc = sq_fail(c, s, "cannot read the registry version");
    release(c, ST_REGISTRY_VERSION, st);
    return rc;
}

const struct kf_store_backend kf_store_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .schema_version = sq_schema_version,
    .reader_open = sq_reader_open,
    .reader_close = sq_reader_close,
    .read_begin = sq_read_begin,
    .read_end = sq_read_end,
    .write_begin = sq_write_begin,
    .write_commit = sq_write_commit,
    .write_rollback = sq_write_rollback,
    .savepoint = sq_savepoint,
    .savepoint_release = sq_savepoint_release,
    .savepoint_rollback = sq_savepoint_rollback,
    .ca_insert = sq_ca_insert,
    .ca_get = sq_ca_get,
    .ca_next_crl_number = sq_ca_next_crl_number,
    .enrollment_insert = sq_enrollment_insert,
    .enrollment_get = sq_enrollment_get,
    .enrollment_update = sq_enrollment_update,
    .enrollment_delete = sq_enrollment_delete,
    .enrollment_list = sq_enrollment_list,
    .device_insert = sq_device_insert,
    .device_get = sq_device_get,
    .device_update = sq_device_update,
    .device_list = sq_device_list,
    .device_count = sq_device_count,
    .cert_insert = sq_cert_insert,
    .cert_get = sq_cert_get,
    .cert_revoke = sq_cert_revoke,
    .cert_list = sq_cert_list,
    .cert_revoked = sq_cert_revoked,
    .cert_revoked_serials = sq_cert_revoked_serials,
    .cert_list_service = sq_cert_list_service,
    .service_insert = sq_service_insert,
    .service_get = sq_service_get,
    .service_update = sq_service_update,
    .service_list = sq_service_list,
    .registration_put = sq_registration_put,
    .registration_get = sq_registration_get,
    .approval_put = sq_approval_put,
    .approval_get = sq_approval_get,
    .approval_list = sq_approval_list,
    .approval_count = sq_approval_count,
    .retained_put = sq_retained_put,
    .retained_delete = sq_retained_delete,
    .retained_list = sq_retained_list,
    .hub_state_put = sq_hub_state_put,
    .hub_state_delete = sq_hub_state_delete,
    .hub_state_drop = sq_hub_state_drop,
    .hub_state_list = sq_hub_state_list,
    .hub_insert = sq_hub_insert,
    .hub_get = sq_hub_get,
    .hub_update = sq_hub_update,
    .hub_delete = sq_hub_delete,
    .hub_list = sq_hub_list,
    .event_insert = sq_event_insert,
    .event_list = sq_event_list,
    .event_prune = sq_event_prune,
    .event_after = sq_event_after,
    .rollout_insert = sq_rollout_insert,
    .rollout_get = sq_rollout_get,
    .rollout_update = sq_rollout_update,
    .rollout_list = sq_rollout_list,
    .rollout_device_put = sq_rollout_device_put,
    .rollout_device_list = sq_rollout_device_list,
    .rollout_assigned = sq_rollout_assigned,
    .rollout_device_find = sq_rollout_device_find,
    .meta_get = sq_meta_get,
    .meta_put = sq_meta_put,
    .audit_last = sq_audit_last,
    .audit_insert = sq_audit_insert,
    .audit_list = sq_audit_list,
    .audit_find_hash = sq_audit_find_hash,
    .checkpoint_insert = sq_checkpoint_insert,
    .checkpoint_list = sq_checkpoint_list,
    .registry_version = sq_registry_version,
};
