/*
 * sqlite: what only the SQLite back end (src/server/store/sqlite.c) has. A store is a file: its
 * mode, journal, tables and schema version, a bare path or sqlite:PATH; an empty file, garbage,
 * another program's database or a newer schema; a file from schema version 1, migrated. And an
 * operator (or an attacker) with the sqlite3 library on the file: the triggers that move the
 * registry version and that guard the audit log, and the audit log's verification after the file
 * was edited behind the store's back.
 *
 * Everything that holds for every back end is in the conformance suite (store.c and audit.c),
 * which runs on the store KF_TEST_STORE names; these tests always run on SQLite files of their own.
 */
#include "testutil.h"
#include "storetest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "server/store/store.h"

/* ---- helpers ---- */

/* Runs SQL on the file directly, as an operator (or an attacker) with the sqlite3 tool would. */
static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        fail_msg("cannot open %s: %s", path, sqlite3_errmsg(db));
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s on %s: %s", sql, path, err);
    sqlite3_close(db);
}

/* The first column of the first row of `sql`, as text, into `out`. */
static void sql_text(const char *path, const char *sql, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) fail_msg("cannot open %s", path);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
        fail_msg("%s on %s: %s", sql, path, sqlite3_errmsg(db));
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int64_t sql_int(const char *path, const char *sql)
{
    char buf[64];
    sql_text(path, sql, buf, sizeof(buf));
    return strtoll(buf, NULL, 10);
}

/* ---- the file ---- */

/*
 * A store is a file, named by a bare path or by sqlite:PATH. Opening one that is not there names
 * the path and creates nothing.
 */
static void test_open_path(void **state)
{
    const char *path = kf_test_path("reopen.db");
    struct kf_store *s = NULL;
    struct kf_hub_rec h = kf_st_hub("hub-1"), got;
    struct kf_txn *t;

    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_open(path, 0, &s));
    KF_EXPECT_MSG("no store at ");
    KF_EXPECT_MSG(path);
    assert_null(s);
    assert_int_equal(access(path, F_OK), -1); /* and nothing was created */

    KF_OK_OR_FAIL(kf_store_open(path, KF_STORE_CREATE, &s));
    assert_int_equal(kf_store_schema_version(s), KF_STORE_SCHEMA_VERSION);
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h));
    kf_store_close(s);
    s = NULL;

    /* Reopened without KF_STORE_CREATE, through the sqlite: form: the same file. */
    {
        char url[1100];
        snprintf(url, sizeof(url), "sqlite:%s", path);
        KF_OK_OR_FAIL(kf_store_open(url, 0, &s));
    }
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_get(t, "hub-1", &got));
    assert_string_equal(got.endpoint, "hub-1.example.net:8883");
    assert_int_equal(got.weight, 10);
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_open_empty_file_without_create(void **state)
{
    const char *path = kf_test_path("empty.db");
    struct kf_store *s = NULL;
    kf_test_write(path, "");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_open(path, 0, &s));
    KF_EXPECT_MSG("no store at");
    /* With KF_STORE_CREATE the empty file becomes a store. */
    KF_OK_OR_FAIL(kf_store_open(path, KF_STORE_CREATE, &s));
    kf_store_close(s);
}

static void test_open_garbage(void **state)
{
    const char *path = kf_test_path("garbage.db");
    struct kf_store *s = NULL;
    char junk[4097], *after;

    memset(junk, 'x', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    memcpy(junk, "this is not a database", 22);
    kf_test_write(path, junk);
    KF_EXPECT_ERR(KF_E_STORE, kf_store_open(path, 0, &s));
    KF_EXPECT_MSG(path);
    KF_EXPECT_MSG("not a keyfleet store");
    assert_null(s);
    /* KF_STORE_CREATE never overwrites what is there. */
    KF_EXPECT_ERR(KF_E_STORE, kf_store_open(path, KF_STORE_CREATE, &s));
    after = kf_test_read(path);
    assert_string_equal(after, junk);
    free(after);

    /* Another program's SQLite database is not migrated into a store either. */
    path = kf_test_path("other.db");
    sql_exec(path, "CREATE TABLE notes (x TEXT)");
    KF_EXPECT_ERR(KF_E_STORE, kf_store_open(path, KF_STORE_CREATE, &s));
    KF_EXPECT_MSG("some other program");
    assert_int_equal(sql_int(path, "SELECT count(*) FROM sqlite_schema"), 1);
}

static void test_open_newer_schema(void **state)
{
    const char *path = kf_test_path("newer.db");
    struct kf_store *s = kf_st_open(path, KF_STORE_CREATE);
    char want[128];

    kf_store_close(s);
    s = NULL;
    sql_exec(path, "PRAGMA user_version = 99");
    KF_EXPECT_ERR(KF_E_UNSUPPORTED, kf_store_open(path, 0, &s));
    snprintf(want, sizeof(want), "schema version 99, newer than this program supports (%d)",
             KF_STORE_SCHEMA_VERSION);
    KF_EXPECT_MSG(want);
    KF_EXPECT_MSG(path);
    assert_null(s);
}

static void test_schema_and_file(void **state)
{
    const char *path = kf_test_path("schema.db");
    char wal[1100], mode[32], tables[512];
    struct kf_store *s;
    struct kf_hub_rec h = kf_st_hub("h");
    struct stat sb;
    mode_t old = umask(0); /* the store must not depend on the umask for its privacy */

    s = kf_st_open(path, KF_STORE_CREATE);
    umask(old);
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h));

    assert_int_equal(sql_int(path, "PRAGMA user_version"), KF_STORE_SCHEMA_VERSION);
    sql_text(path, "PRAGMA journal_mode", mode, sizeof(mode));
    assert_string_equal(mode, "wal");
    sql_text(path,
             "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_schema "
             "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name)",
             tables, sizeof(tables));
    assert_string_equal(tables, "approvals,audit,audit_checkpoints,cas,certificates,devices,"
                                "enrollments,hub_retained,hub_state,hubs,meta,"
                                "registrations,rollout_devices,rollouts,security_events,services");

    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    kf_store_close(s);
}

/* ---- registry version ---- */

/*
 * An operator's edits with sqlite3 move the registry version as keyfleet's own do (the triggers
 * count them, not the back end's code): keyfleetd notices changes from outside by it. What moves
 * it through the store is the conformance suite's test_registry_version.
 */
static void test_registry_version_sqlite3(void **state)
{
    const char *path = kf_test_path("regver.db");
    struct kf_store *s = kf_st_open(path, KF_STORE_CREATE);
    struct kf_device_rec d = kf_st_device("dev-1", "", KF_DEVICE_DISABLED);
    int64_t v;

    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d));
    v = kf_st_registry_version(s);
    kf_store_close(s);

    /* A status change moves it... */
    sql_exec(path, "UPDATE devices SET status = 'active' WHERE id = 'dev-1'");
    s = kf_st_open(path, 0);
    assert_int_equal(kf_st_registry_version(s), v + 1);
    kf_store_close(s);
    /* ...an event does not. */
    sql_exec(path, "INSERT INTO security_events (time_ms, type, severity, source) "
                   "VALUES (1, 'x.y', 'info', 'server')");
    s = kf_st_open(path, 0);
    assert_int_equal(kf_st_registry_version(s), v + 1);
    kf_store_close(s);
}

/* ---- migration ---- */

/*
 * The schema as keyfleet with schema version 1 wrote it: a frozen copy of migration 1. Opening
 * such a file must migrate it to exactly what a new store gets; if migration 1 were ever edited,
 * the two would differ.
 * It repeats migration 1 of src/server/store/sqlite.c on purpose: the old schema as it was, frozen.
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

/* The schema of the store at `path`, one object a line, into a malloc()ed string. */
static char *schema_of(const char *path)
{
    static char buf[64 * 1024];
    sql_text(path,
             "SELECT group_concat(line, char(10)) FROM (SELECT type || ' ' || name || ' ' || "
             "tbl_name || ': ' || coalesce(sql, '') AS line FROM sqlite_schema ORDER BY name)",
             buf, sizeof(buf));
    assert_true(strlen(buf) < sizeof(buf) - 1);
    return strdup(buf);
}

static void test_migrate_from_v1(void **state)
{
    char path[1024], fresh_path[1024];
    struct kf_store *s = NULL;
    struct kf_enrollment_rec e;
    struct kf_device_rec d = kf_st_device("dev-1", "factory-a", KF_DEVICE_DISABLED), got;
    struct kf_hub_rec h;
    struct kf_txn *t;
    char *migrated, *fresh;

    snprintf(path, sizeof(path), "%s", kf_test_path("v1.db"));
    snprintf(fresh_path, sizeof(fresh_path), "%s", kf_test_path("v2-fresh.db"));
    sql_exec(path, schema_v1);
    sql_exec(path,
             "INSERT INTO hubs VALUES ('hub-1', 'hub-1.example.net:8883', 7, 1, 1700000000);"
             "INSERT INTO enrollments (id, kind, enabled, verified, cert_pem, created, updated)"
             " VALUES ('factory-a', 'group', 1, 1, 'PEM', 1700000000, 1700000001);"
             "INSERT INTO devices (id, enrollment, status, hub, created, updated)"
             " VALUES ('dev-1', 'factory-a', 'active', 'hub-1', 1700000000, 1700000000);");
    assert_int_equal(sql_int(path, "PRAGMA user_version"), 1);

    KF_OK_OR_FAIL(kf_store_open(path, 0, &s));
    assert_int_equal(kf_store_schema_version(s), KF_STORE_SCHEMA_VERSION);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), KF_STORE_SCHEMA_VERSION);
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_get(t, "hub-1", &h));
    assert_int_equal(h.weight, 7);
    KF_OK_OR_FAIL(kf_txn_enrollment_get(t, "factory-a", &e));
    assert_int_equal(e.kind, KF_ENROLL_GROUP);
    assert_int_equal(e.updated, 1700000001);
    kf_enrollment_clear(&e);
    KF_OK_OR_FAIL(kf_txn_device_get(t, "dev-1", &got));
    assert_string_equal(got.hub, "hub-1");
    kf_txn_end(t);
    /* The data a migrated store already had is where the version starts. */
    assert_int_equal(kf_st_registry_version(s), 0);
    snprintf(d.hub, sizeof(d.hub), "hub-1");
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, kf_st_device_update_cb, &d));
    kf_store_close(s);

    /* Migrated, the file has the schema a new store has, object for object. */
    s = kf_st_open(fresh_path, KF_STORE_CREATE);
    kf_store_close(s);
    migrated = schema_of(path);
    fresh = schema_of(fresh_path);
    assert_string_equal(migrated, fresh);
    assert_non_null(strstr(migrated, "table meta meta"));
    assert_non_null(strstr(migrated, "trigger devices_version_status devices"));
    free(migrated);
    free(fresh);
}

/* ---- the audit log, edited behind the store's back ---- */

/* The append-only triggers stop accidents, not attackers: an attacker drops them first. */
#define DROP_GUARDS "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; "

/* A store at `name` with `n` records; the store is closed, ready to be tampered with. */
static const char *log_file(const char *name, int n, char *head)
{
    const char *path = kf_test_path(name);
    struct kf_store *s = kf_st_open(path, KF_STORE_CREATE);
    struct kf_audit_verdict v;
    kf_st_append_n(s, n);
    KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
    if (head) memcpy(head, v.head, KF_HASH_HEX);
    kf_store_close(s);
    return path;
}

static void expect_fault(const char *path, const char *head, enum kf_audit_fault fault, int64_t seq,
                         const char *message)
{
    struct kf_store *s = kf_st_open(path, 0);
    struct kf_audit_verdict v;
    KF_EXPECT_ERR(KF_E_TAMPERED, kf_st_verify(s, head, &v));
    KF_EXPECT_MSG(message);
    if (v.fault != fault)
        fail_msg("fault %s (%s), expected %s", kf_audit_fault_name(v.fault), v.message,
                 kf_audit_fault_name(fault));
    assert_int_equal(v.seq, seq);
    assert_non_null(strstr(v.message, message));
    kf_store_close(s);
}

static void test_audit_guards_refuse_edits(void **state)
{
    const char *path = log_file("guarded.db", 3, NULL);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_not_equal(
        sqlite3_exec(db, "UPDATE audit SET detail = '{}' WHERE seq = 2", NULL, NULL, NULL),
        SQLITE_OK);
    assert_non_null(strstr(sqlite3_errmsg(db), "append-only"));
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 3", NULL, NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(db);
    {
        struct kf_store *s = kf_st_open(path, 0);
        struct kf_audit_verdict v;
        KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
        assert_int_equal(v.records, 3);
        kf_store_close(s);
    }
}

static void test_audit_altered(void **state)
{
    const char *path = log_file("altered.db", 7, NULL);
    sql_exec(path, DROP_GUARDS "UPDATE audit SET detail = '{\"n\": 70}' WHERE seq = 7");
    expect_fault(path, NULL, KF_AUDIT_ALTERED, 7,
                 "record 7 was altered: its contents no longer match its hash");

    path = log_file("altered-actor.db", 5, NULL);
    sql_exec(path, DROP_GUARDS "UPDATE audit SET actor = 'operator:mallory' WHERE seq = 3");
    expect_fault(path, NULL, KF_AUDIT_ALTERED, 3, "record 3 was altered");

    /* A field too long to be ours is still reported, not a listing failure. */
    path = log_file("altered-long.db", 5, NULL);
    sql_exec(path, DROP_GUARDS "UPDATE audit SET action = printf('%.300c', 'x') WHERE seq = 4");
    expect_fault(path, NULL, KF_AUDIT_ALTERED, 4, "record 4 was altered");

    /*
     * Bytes hidden after a NUL: C sees "{}", the same as what was hashed, but the file holds more.
     * A record that is not what we wrote must not pass for one that is.
     */
    path = kf_test_path("altered-nul.db");
    {
        struct kf_store *s = kf_st_open(path, KF_STORE_CREATE);
        for (int i = 0; i < 3; i++)
            kf_st_append(s, "keyfleetd", "cert.issue", "cert:0a", NULL);
        kf_store_close(s);
    }
    sql_exec(path, DROP_GUARDS "UPDATE audit SET detail = CAST(X'7B7D006576696C' AS TEXT) "
                               "WHERE seq = 2");
    expect_fault(path, NULL, KF_AUDIT_ALTERED, 2, "record 2 was altered");

    /* A log whose last hash was mangled is not extended: the new record would link to nothing. */
    path = log_file("altered-head.db", 3, NULL);
    sql_exec(path, DROP_GUARDS "UPDATE audit SET hash = printf('%.100c', 'a') WHERE seq = 3");
    {
        struct kf_store *s = kf_st_open(path, 0);
        struct kf_st_entry e = {"keyfleetd", "cert.issue", "cert:0a", NULL};
        struct kf_st_batch b = {&e, 1};
        KF_EXPECT_ERR(KF_E_TAMPERED, kf_store_write(s, kf_st_append_cb, &b));
        KF_EXPECT_MSG("audit record 3 has a malformed hash");
        kf_store_close(s);
    }
    expect_fault(path, NULL, KF_AUDIT_ALTERED, 3, "record 3 was altered");
}

static void test_audit_deleted(void **state)
{
    const char *path = log_file("deleted.db", 5, NULL);
    sql_exec(path, DROP_GUARDS "DELETE FROM audit WHERE seq = 3");
    expect_fault(path, NULL, KF_AUDIT_DELETED, 3,
                 "record 3 was deleted: the log jumps from record 2 to record 4");

    path = log_file("deleted-first.db", 5, NULL);
    sql_exec(path, DROP_GUARDS "DELETE FROM audit WHERE seq IN (1, 2)");
    expect_fault(path, NULL, KF_AUDIT_DELETED, 1, "record 1 was deleted");
}

static void test_audit_reordered(void **state)
{
    const char *path = log_file("reordered.db", 5, NULL);
    sql_exec(path, DROP_GUARDS "UPDATE audit SET seq = 1000 WHERE seq = 2;"
                               "UPDATE audit SET seq = 2 WHERE seq = 4;"
                               "UPDATE audit SET seq = 4 WHERE seq = 1000;");
    /* Record 2 is now old record 4, whose link names old record 3, which is still there. */
    expect_fault(path, NULL, KF_AUDIT_REORDERED, 2,
                 "record 2 is out of order: it links to record 3 instead of the record before it");
}

/*
 * An attacker who alters a record and recomputes its hash makes that record self-consistent; the
 * record after it still links to the old hash, which no record has any more.
 */
static void test_audit_rehashed(void **state)
{
    const char *path = log_file("rehashed.db", 5, NULL);
    struct kf_store *s = kf_st_open(path, 0);
    struct kf_audit_rec r;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;
    struct kf_st_log l;

    kf_st_log_read(s, INT64_MIN, &l);
    kf_store_close(s);
    r = l.r[2];
    assert_int_equal(r.seq, 3);
    r.detail = "{\"n\": 3, \"approved\": true}";
    kf_audit_hash(&r, r.hash);
    sql_exec(path, DROP_GUARDS);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit SET detail = ?1, hash = ?2 WHERE seq = 3",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, r.detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r.hash, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    kf_st_log_free(&l);

    expect_fault(path, NULL, KF_AUDIT_BROKEN, 4, "record 4 is broken off");
}

/*
 * The end of the log cut off: only the expected head shows it. (The head given in upper case is
 * audit.c's test_verify_head_any_case.)
 */
static void test_audit_cut_off(void **state)
{
    char head[KF_HASH_HEX];
    const char *path = log_file("cut.db", 5, head);
    struct kf_audit_verdict v;
    struct kf_store *s;
    char message[300];

    sql_exec(path, DROP_GUARDS "DELETE FROM audit WHERE seq = 5");
    s = kf_st_open(path, 0);
    /* Without the head the shorter log is consistent: cutting off the end leaves no gap. */
    KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
    assert_int_equal(v.records, 4);
    kf_store_close(s);
    snprintf(message, sizeof(message), "the log was cut off: head %s is gone", head);
    expect_fault(path, head, KF_AUDIT_HEAD, 5, message);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_path),
        cmocka_unit_test(test_open_empty_file_without_create),
        cmocka_unit_test(test_open_garbage),
        cmocka_unit_test(test_open_newer_schema),
        cmocka_unit_test(test_schema_and_file),
        cmocka_unit_test(test_registry_version_sqlite3),
        cmocka_unit_test(test_migrate_from_v1),
        cmocka_unit_test(test_audit_guards_refuse_edits),
        cmocka_unit_test(test_audit_altered),
        cmocka_unit_test(test_audit_deleted),
        cmocka_unit_test(test_audit_reordered),
        cmocka_unit_test(test_audit_rehashed),
        cmocka_unit_test(test_audit_cut_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
