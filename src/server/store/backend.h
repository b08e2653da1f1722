/*
 * backend: what a store back end (SQLite today, PostgreSQL later) implements for store.c.
 *
 * store.c owns everything that does not depend on the database: URL parsing, argument checks,
 * the reader pool, group commit, the audit hash chain. A back end owns its connections and turns
 * each record operation into statements. Nothing here names a back end's types: a database and a
 * connection are the opaque `struct kf_store_db` and `struct kf_store_conn`, which each back end
 * casts to its own private structs.
 *
 * Contract for every operation below:
 *   - arguments were checked by store.c (ids well formed, strings bounded and terminated, enums in
 *     range, JSON well formed), so a back end only maps database outcomes to errors;
 *   - a failure records a sentence with kf_fail() that names the object ("enrollment dev-1 not
 *     found") and, for database errors, the store;
 *   - one operation is one statement or leaves nothing behind (never half a record);
 *   - `out` records are overwritten (their old contents are not freed); on failure they are left
 *     cleared;
 *   - records handed to list callbacks are borrowed for the call; a non-zero return from the
 *     callback stops the listing and is returned.
 *
 * A connection is used by one thread at a time; store.c guarantees it.
 */
#ifndef KF_SERVER_STORE_BACKEND_H
#define KF_SERVER_STORE_BACKEND_H

#include <stdint.h>

#include "server/store/store.h"

struct kf_store_db;   /* a back end's open store: its location, its schema version, ... */
struct kf_store_conn; /* one connection with its prepared statements */

/* A transaction as the callers see it: a connection, and whether it may write. */
struct kf_txn {
    struct kf_store *store;     /* borrowed */
    struct kf_store_conn *conn; /* borrowed from the reader pool or the writer */
    int write;                  /* 1 inside a write callback (on the committer thread) */
};

typedef enum kf_err (*kf_enrollment_cb)(const struct kf_enrollment_rec *e, void *arg);
typedef enum kf_err (*kf_device_cb)(const struct kf_device_rec *d, void *arg);
typedef enum kf_err (*kf_cert_cb)(const struct kf_cert_rec *r, void *arg);
typedef enum kf_err (*kf_hub_cb)(const struct kf_hub_rec *h, void *arg);
typedef enum kf_err (*kf_service_cb)(const struct kf_service_rec *s, void *arg);
typedef enum kf_err (*kf_event_cb)(const struct kf_event_rec *e, void *arg);
typedef enum kf_err (*kf_checkpoint_cb)(const struct kf_checkpoint_rec *cp, void *arg);
typedef enum kf_err (*kf_serial_cb)(const char *serial, void *arg);
typedef enum kf_err (*kf_audit_cb)(const struct kf_audit_rec *r, void *arg);
typedef enum kf_err (*kf_approval_cb)(const struct kf_approval_rec *a, void *arg);
typedef enum kf_err (*kf_rollout_cb)(const struct kf_rollout_rec *r, void *arg);
typedef enum kf_err (*kf_rollout_device_cb)(const struct kf_rollout_device_rec *d, void *arg);
typedef enum kf_err (*kf_retained_cb)(const void *topic, size_t topic_len, const void *msg,
                                      size_t msg_len, void *arg);
typedef enum kf_err (*kf_hub_state_cb)(const char *session, int kind, int64_t key,
                                       const void *value, size_t len, void *arg);

struct kf_store_backend {
    const char *name; /* "sqlite" */

    /*
     * Opens the store at `location` (a back-end-specific string: a path for SQLite), creating it
     * when `flags` has KF_STORE_CREATE, and runs pending migrations. On success `*db` is owned by
     * the caller (close) and `*writer` is the one connection that writes (owned by `*db`).
     */
    enum kf_err (*open)(const char *location, int flags, struct kf_store_db **db,
                        struct kf_store_conn **writer);
    /* Closes the store, its writer and its statements. Reader connections are closed before. */
    void (*close)(struct kf_store_db *db);
    int (*schema_version)(struct kf_store_db *db);
    /* A new reader connection, owned by the caller (reader_close). */
    enum kf_err (*reader_open)(struct kf_store_db *db, struct kf_store_conn **out);
    void (*reader_close)(struct kf_store_conn *conn);

    /* Read transaction: begins on a snapshot taken now, held until read_end. */
    enum kf_err (*read_begin)(struct kf_store_conn *conn);
    /* Ends it; an error means the connection is in an unknown state and must not be reused. */
    enum kf_err (*read_end)(struct kf_store_conn *conn);

    /*
     * Write transaction on the writer: begin takes the store's write lock (KF_E_BUSY when another
     * process holds it past the busy timeout); commit makes it durable; rollback drops it (and is
     * harmless when the database already rolled it back). The savepoint calls bracket one
     * callback: savepoint_rollback drops the callback's changes and releases the savepoint.
     */
    enum kf_err (*write_begin)(struct kf_store_conn *conn);
    enum kf_err (*write_commit)(struct kf_store_conn *conn);
    void (*write_rollback)(struct kf_store_conn *conn);
    enum kf_err (*savepoint)(struct kf_store_conn *conn);
    enum kf_err (*savepoint_release)(struct kf_store_conn *conn);
    enum kf_err (*savepoint_rollback)(struct kf_store_conn *conn);

    enum kf_err (*ca_insert)(struct kf_store_conn *c, const struct kf_ca_rec *r);
    enum kf_err (*ca_get)(struct kf_store_conn *c, const char *name, struct kf_ca_rec *out);
    enum kf_err (*ca_next_crl_number)(struct kf_store_conn *c, const char *name, int64_t *out);

    enum kf_err (*enrollment_insert)(struct kf_store_conn *c, const struct kf_enrollment_rec *e);
    enum kf_err (*enrollment_get)(struct kf_store_conn *c, const char *id,
                                  struct kf_enrollment_rec *out);
    enum kf_err (*enrollment_update)(struct kf_store_conn *c, const struct kf_enrollment_rec *e);
    enum kf_err (*enrollment_delete)(struct kf_store_conn *c, const char *id);
    enum kf_err (*enrollment_list)(struct kf_store_conn *c, int kind, kf_enrollment_cb cb,
                                   void *arg);

    enum kf_err (*device_insert)(struct kf_store_conn *c, const struct kf_device_rec *d);
    enum kf_err (*device_get)(struct kf_store_conn *c, const char *id, struct kf_device_rec *out);
    enum kf_err (*device_update)(struct kf_store_conn *c, const struct kf_device_rec *d);
    /* `enrollment` NULL: all; "": devices without an enrollment. */
    enum kf_err (*device_list)(struct kf_store_conn *c, int status, const char *enrollment,
                               kf_device_cb cb, void *arg);
    enum kf_err (*device_count)(struct kf_store_conn *c, int status, int64_t *out);

    enum kf_err (*cert_insert)(struct kf_store_conn *c, const struct kf_cert_rec *r);
    enum kf_err (*cert_get)(struct kf_store_conn *c, const char *serial, struct kf_cert_rec *out);
    enum kf_err (*cert_revoke)(struct kf_store_conn *c, const char *serial, int64_t when,
                               int reason);
    /* `limit` 0: no limit (store.c refuses negative limits). */
    enum kf_err (*cert_list)(struct kf_store_conn *c, const char *device_id, int status,
                             int64_t limit, kf_cert_cb cb, void *arg);
    /* Every revoked serial of `issuer`, expired or not, in serial order. */
    enum kf_err (*cert_revoked_serials)(struct kf_store_conn *c, const char *issuer,
                                        kf_serial_cb cb, void *arg);
    enum kf_err (*cert_revoked)(struct kf_store_conn *c, const char *issuer, int64_t now,
                                kf_cert_cb cb, void *arg);
    enum kf_err (*cert_list_service)(struct kf_store_conn *c, const char *name, kf_cert_cb cb,
                                     void *arg);

    enum kf_err (*service_insert)(struct kf_store_conn *c, const struct kf_service_rec *s);
    enum kf_err (*service_get)(struct kf_store_conn *c, const char *name,
                               struct kf_service_rec *out);
    enum kf_err (*service_update)(struct kf_store_conn *c, const struct kf_service_rec *s);
    enum kf_err (*service_list)(struct kf_store_conn *c, kf_service_cb cb, void *arg);

    enum kf_err (*registration_put)(struct kf_store_conn *c, const struct kf_registration_rec *r);
    enum kf_err (*registration_get)(struct kf_store_conn *c, const char *device_id,
                                    struct kf_registration_rec *out);

    enum kf_err (*approval_put)(struct kf_store_conn *c, const struct kf_approval_rec *a);
    enum kf_err (*approval_get)(struct kf_store_conn *c, const char *device_id,
                                struct kf_approval_rec *out);
    /* `state` -1: every state */
    enum kf_err (*approval_list)(struct kf_store_conn *c, int state, kf_approval_cb cb, void *arg);
    enum kf_err (*approval_count)(struct kf_store_conn *c, int state, int64_t *n);

    enum kf_err (*retained_put)(struct kf_store_conn *c, const uint8_t *topic, size_t topic_len,
                                const uint8_t *msg, size_t msg_len, int64_t now);
    enum kf_err (*retained_delete)(struct kf_store_conn *c, const uint8_t *topic, size_t topic_len);
    enum kf_err (*retained_list)(struct kf_store_conn *c, kf_retained_cb cb, void *arg);

    /* The hub's persistent sessions: rows (session, kind, key) -> value, listed in that order. */
    enum kf_err (*hub_state_put)(struct kf_store_conn *c, const char *session, int kind,
                                 int64_t key, const uint8_t *value, size_t len);
    enum kf_err (*hub_state_delete)(struct kf_store_conn *c, const char *session, int kind,
                                    int64_t key);
    /* Every row of `session`. */
    enum kf_err (*hub_state_drop)(struct kf_store_conn *c, const char *session);
    enum kf_err (*hub_state_list)(struct kf_store_conn *c, kf_hub_state_cb cb, void *arg);

    enum kf_err (*hub_insert)(struct kf_store_conn *c, const struct kf_hub_rec *h);
    enum kf_err (*hub_get)(struct kf_store_conn *c, const char *name, struct kf_hub_rec *out);
    enum kf_err (*hub_update)(struct kf_store_conn *c, const struct kf_hub_rec *h);
    enum kf_err (*hub_delete)(struct kf_store_conn *c, const char *name);
    enum kf_err (*hub_list)(struct kf_store_conn *c, kf_hub_cb cb, void *arg);

    /* `detail` of the event is never NULL here. */
    enum kf_err (*event_insert)(struct kf_store_conn *c, const struct kf_event_rec *e, int64_t *id);
    enum kf_err (*event_list)(struct kf_store_conn *c, int64_t since_ms, const char *type,
                              const char *device, int64_t limit, kf_event_cb cb, void *arg);
    enum kf_err (*event_after)(struct kf_store_conn *c, int64_t after_id, int64_t limit,
                               kf_event_cb cb, void *arg);
    /* Deletes at most `limit` events, oldest first: those before `before_ms` (> 0), then those
     * beyond the newest `keep_rows` (> 0); `*deleted` says how many. */
    enum kf_err (*event_prune)(struct kf_store_conn *c, int64_t before_ms, int64_t keep_rows,
                               int64_t limit, int64_t *deleted);

    /*
     * The audit table is written only through audit_insert with a record store.c completed (seq,
     * prev_hash, hash). audit_last gives the seq and stored hash of the record with the highest
     * seq (KF_E_NOT_FOUND, without a message, when the log is empty; "" for a stored hash that
     * does not fit, which only an edit of the file makes). audit_list with since_ms
     * INT64_MIN lists the whole log. audit_find_hash finds a record other than `not_seq` whose
     * stored hash is `hash` (KF_E_NOT_FOUND, without a message, when none).
     */
    enum kf_err (*audit_last)(struct kf_store_conn *c, int64_t *seq, char *hash);
    enum kf_err (*audit_insert)(struct kf_store_conn *c, const struct kf_audit_rec *r);
    enum kf_err (*audit_list)(struct kf_store_conn *c, int64_t since_ms, kf_audit_cb cb, void *arg);
    /* Checkpoints: KF_E_EXISTS for a seq checkpointed already; listed in seq order. */
    enum kf_err (*checkpoint_insert)(struct kf_store_conn *c, const struct kf_checkpoint_rec *cp);
    enum kf_err (*checkpoint_list)(struct kf_store_conn *c, kf_checkpoint_cb cb, void *arg);
    enum kf_err (*audit_find_hash)(struct kf_store_conn *c, const char *hash, int64_t not_seq,
                                   int64_t *seq);

    enum kf_err (*rollout_insert)(struct kf_store_conn *c, const struct kf_rollout_rec *r,
                                  int64_t *id);
    enum kf_err (*rollout_get)(struct kf_store_conn *c, int64_t id, struct kf_rollout_rec *out);
    enum kf_err (*rollout_update)(struct kf_store_conn *c, const struct kf_rollout_rec *r);
    enum kf_err (*rollout_list)(struct kf_store_conn *c, kf_rollout_cb cb, void *arg);
    enum kf_err (*rollout_device_put)(struct kf_store_conn *c,
                                      const struct kf_rollout_device_rec *d);
    enum kf_err (*rollout_device_list)(struct kf_store_conn *c, int64_t rollout,
                                       kf_rollout_device_cb cb, void *arg);
    /* `hardware` "": any */
    enum kf_err (*rollout_assigned)(struct kf_store_conn *c, const char *device,
                                    const char *hardware, struct kf_rollout_rec *out);
    /* `version` < 0: any; `target` "": any */
    enum kf_err (*rollout_device_find)(struct kf_store_conn *c, const char *device, int64_t version,
                                       const char *target, struct kf_rollout_device_rec *out);
    /* Counters in the meta table (KF_OK and 0 when there is none). */
    enum kf_err (*meta_get)(struct kf_store_conn *c, const char *key, int64_t *value);
    enum kf_err (*meta_put)(struct kf_store_conn *c, const char *key, int64_t value);

    /*
     * The registry version (see kf_txn_registry_version). The back end keeps it in the database
     * itself (SQLite: triggers), so that every process's writes move it.
     */
    enum kf_err (*registry_version)(struct kf_store_conn *c, int64_t *out);
};

extern const struct kf_store_backend kf_store_sqlite_backend;

/*
 * Enrollment kinds as stored ("individual", "group"; NULL when out of range) and back (-1 when
 * unknown); certificate statuses back from kf_cert_status_name() (-1 when unknown).
 */
const char *kf_store_enroll_kind_name(int kind);
int kf_store_enroll_kind_parse(const char *name);
int kf_store_cert_status_parse(const char *name);
int kf_store_service_status_parse(const char *name);

#endif
