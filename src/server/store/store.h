/*
 * store: the registry: CAs, enrollments, devices, certificates, registrations, hubs, security
 * events and the audit log, behind an interface with no SQL and no back-end types.
 *
 * Everything happens inside a transaction (`struct kf_txn`):
 *   - reads:  kf_store_read() begins a read-only transaction on a consistent snapshot; many
 *             readers run at once; kf_txn_end() ends it.
 *   - writes: a write is a callback that runs inside a write transaction, on the store's one
 *             committer thread. Requests queued between two commits share one commit (group
 *             commit): each callback runs under its own savepoint, so one failing callback rolls
 *             back only its own changes. kf_store_submit() queues a request and returns at once;
 *             its done callback runs once the commit is durable (or has failed).
 *             kf_store_write() is the same, waiting: it returns once the commit is durable.
 * Write calls (insert/update/delete/append) on a read transaction fail with KF_E_INVALID.
 *
 * Back ends: SQLite (default; WAL; synchronous=FULL; foreign keys on; schema migrations run at
 * open). The interface is shaped so that a PostgreSQL back end can be added behind the same calls.
 *
 * Strings in records: fixed arrays are bounded by the syntax of what they hold (ids, serials,
 * fingerprints); `char *` fields are heap strings owned by the record and freed by its _clear().
 * Records handed to list callbacks are borrowed for the duration of the call.
 */
#ifndef KF_SERVER_STORE_STORE_H
#define KF_SERVER_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/ident.h"
#include "common/pki_cert.h"
#include "common/pki_key.h"

struct kf_store;
struct kf_txn;

#define KF_STORE_SCHEMA_VERSION 9
#define KF_HASH_HEX             65 /* SHA-256 as lower-case hex, with the NUL */
#define KF_CODE_MAX             65 /* a verification code, with the NUL */
#define KF_IP_MAX               64 /* an IP address as text, with the NUL */
#define KF_ACTOR_MAX            128
#define KF_ACTION_MAX           64
#define KF_OBJECT_MAX           256
#define KF_EVENT_TYPE_MAX       64
#define KF_ENDPOINT_MAX         256
#define KF_LIST_ALL             0 /* `limit` meaning no limit */

enum kf_store_flags {
    KF_STORE_CREATE = 1, /* create the store when it does not exist (default: KF_E_NOT_FOUND) */
};

/*
 * Opens the store at `url`: a file path or "sqlite:PATH" (SQLite). Runs pending migrations.
 * Fails with KF_E_NOT_FOUND when there is no store and KF_STORE_CREATE is not given, with
 * KF_E_UNSUPPORTED for an unknown scheme or a schema newer than this program, KF_E_STORE for a
 * corrupt file. `*out` is owned by the caller (kf_store_close).
 */
enum kf_err kf_store_open(const char *url, int flags, struct kf_store **out);

/*
 * Closes the store: refuses new submissions (KF_E_INVALID), runs every request already queued
 * and calls its done callback, then stops the committer thread and closes the database. No read
 * transaction may be open, no other thread may still be calling into the store, and it must not
 * be called from a write or done callback. NULL is fine.
 */
void kf_store_close(struct kf_store *store);

/* The schema version the store is at. */
int kf_store_schema_version(struct kf_store *store);

/* Begins a read-only transaction on a consistent snapshot. `*out` ends with kf_txn_end(). */
enum kf_err kf_store_read(struct kf_store *store, struct kf_txn **out);

/* Ends a read transaction. NULL is fine. */
void kf_txn_end(struct kf_txn *txn);

/*
 * Write callback: makes its changes through `txn` and returns KF_OK to keep them or an error to
 * roll them back (the error is the request's result). It must not keep `txn`, and must have no
 * effects outside the transaction that would be wrong if the transaction were lost. It runs on
 * the store's committer thread, inside a transaction shared with other requests, so it must not
 * rely on thread-local state of the submitter, and should be quick: every request of its batch
 * waits for it. Its error message (kf_fail) is carried to the request. It may call
 * kf_store_submit (the request joins a later batch) but not kf_store_write (KF_E_INVALID).
 */
typedef enum kf_err (*kf_store_write_cb)(struct kf_txn *txn, void *arg);

/*
 * Runs `cb(txn, arg)` in a write transaction, possibly shared with other requests (group
 * commit), and returns once the transaction is durable: the callback's error, or KF_E_BUSY /
 * KF_E_STORE when the transaction could not begin or commit (then nothing of it was kept), with
 * the whole sentence in kf_errmsg(). KF_E_INVALID when the store is closing, or when called from
 * a write or done callback (it would wait for itself). Blocks the calling thread, including
 * through the fsync: for the CLI, tests and threads that may block; an event loop uses
 * kf_store_submit. Not subject to KF_STORE_QUEUE_MAX: each caller holds one request and its
 * thread. Thread-safe.
 */
enum kf_err kf_store_write(struct kf_store *store, kf_store_write_cb cb, void *arg);

/*
 * The most submitted requests waiting for the committer; one more is refused with KF_E_BUSY.
 * Lazy requests (struct kf_store_req.lazy) have a budget of their own, KF_STORE_LAZY_MAX, so
 * that a flood of them (security events) never takes the room of the others (enrollments).
 */
#define KF_STORE_QUEUE_MAX 4096
#define KF_STORE_LAZY_MAX  1024

/*
 * An asynchronous write request. The caller fills in cb, arg, done_cb and done_arg; the store
 * owns errmsg and next while the request is queued. A request may be submitted again once its
 * done callback has run (also from inside it).
 */
struct kf_store_req {
    kf_store_write_cb cb; /* runs on the committer thread, inside the shared transaction */
    void *arg;
    /*
     * Runs on the committer thread once the transaction is durable (rc = cb's result; cb's
     * changes are kept exactly when it is KF_OK) or failed (rc = KF_E_BUSY/KF_E_STORE for every
     * request of the batch, and nothing of the batch was kept). Done callbacks run one at a time,
     * in submission order, with no store lock held. It must not block (the next batch waits for
     * it); it may call kf_store_submit and kf_store_read, not kf_store_write or kf_store_close. It
     * must not touch `req` after returning unless the caller owns it; it may free or resubmit it.
     */
    void (*done_cb)(struct kf_store_req *req, enum kf_err rc, void *done_arg);
    void *done_arg;
    /*
     * Nobody waits for this one's outcome (a security event, say): while only such requests are
     * queued, the committer may hold them up to the commit hint's delay (kf_store_commit_hint)
     * so that more share the commit. 0 (a reply waits on it): run as soon as the committer can.
     */
    int lazy;
    char errmsg[256];          /* the sentence for rc != KF_OK ("" for KF_OK), set before
                                  done_cb runs; a longer one is cut at a character boundary */
    struct kf_store_req *next; /* private to the store */
};

/*
 * Queues `req` (borrowed until done_cb has run) and returns at once; the committer thread (started
 * by the first write) runs it in the next batch. KF_E_BUSY when the queue holds
 * KF_STORE_QUEUE_MAX requests already (the caller answers 503), KF_E_INVALID when the store is
 * closing or `req` lacks cb or done_cb, KF_E_INTERNAL when the committer thread cannot be
 * started. On any error done_cb will not run and `req` is the caller's again. Never blocks on I/O
 * (it takes the queue lock only). Thread-safe; callable from write and done callbacks.
 */
enum kf_err kf_store_submit(struct kf_store *store, struct kf_store_req *req);

/*
 * Lets group commit grow with load. `fn(arg)` tells how many writers may be about to submit (for
 * keyfleetd, the client connections open); before each batch, while fewer than 32 requests are
 * queued and `fn` says more writers exist than are queued, the committer waits for them, at most
 * `max_delay_us` (capped at 100 ms; 0 turns the hint off). A lone writer never waits. `fn` runs
 * on the committer thread with the store's queue locked: it must be quick and must not call
 * into the store. Call before the first write, or with no write in flight.
 */
void kf_store_commit_hint(struct kf_store *store, size_t (*fn)(void *arg), void *arg,
                          unsigned max_delay_us);

/* Statistics of group commit, for benchmarks and metrics: both write paths count. */
struct kf_store_stats {
    uint64_t writes;  /* callbacks run */
    uint64_t commits; /* transactions committed */
    uint64_t queued;  /* submitted requests waiting for the committer now */
};
void kf_store_stats(struct kf_store *store, struct kf_store_stats *out);

/*
 * The registry version: a number that grows whenever an enrollment, a hub or a service is added,
 * changed or deleted, or a device's or a certificate's status changes, by any process writing the
 * store (keyfleetd, the CLI). Other writes (certificates issued, registrations, events, audit
 * records) leave it alone. keyfleetd polls it (a read transaction is cheap) and refreshes its
 * caches of enrollments, hubs and statuses when it differs from the value it last loaded them at;
 * read it in the same transaction as the data it caches so the two agree. In a write transaction it
 * includes the changes made so far in that transaction.
 */
enum kf_err kf_txn_registry_version(struct kf_txn *txn, int64_t *out);

/* ---- names ---- */

/*
 * Device ids (with the registration ids of individual enrollments, which become device ids) and
 * service names are separate namespaces, and no name is ever in both: a name held by both would
 * read as either wherever an identity is a bare name (an MQTT client id, a log line, a person).
 * The inserts below refuse such a name themselves; this asks first (before a signature is spent).
 */
enum kf_namespace {
    KF_NS_DEVICE = 1,
    KF_NS_SERVICE = 2,
};

/*
 * KF_OK when `name` may be taken in `space`; KF_E_CONFLICT, with a sentence naming what holds
 * it, when the other namespace has it. Whether `space` itself has it is not checked.
 */
enum kf_err kf_txn_name_free(struct kf_txn *txn, enum kf_namespace space, const char *name);

/* ---- CAs ---- */

struct kf_ca_rec {
    char name[32];                  /* "root" or "issuing" */
    char serial[KF_SERIAL_HEX_MAX]; /* of the CA certificate */
    char *subject;
    char *cert_pem;
    char *key_uri;                 /* where its private key is; NULL when offline */
    int64_t not_before, not_after; /* seconds since the epoch */
    int64_t crl_number;            /* the last CRL number used (0: none yet) */
    int64_t created;
};
void kf_ca_rec_clear(struct kf_ca_rec *r);

/* KF_E_EXISTS when a CA of that name exists. */
enum kf_err kf_txn_ca_insert(struct kf_txn *txn, const struct kf_ca_rec *r);
/* KF_E_NOT_FOUND when there is none. */
enum kf_err kf_txn_ca_get(struct kf_txn *txn, const char *name, struct kf_ca_rec *out);
/* Increments the CA's CRL number and returns the new value. */
enum kf_err kf_txn_ca_next_crl_number(struct kf_txn *txn, const char *name, int64_t *out);

/* ---- enrollments ---- */

enum kf_enroll_kind {
    KF_ENROLL_INDIVIDUAL = 1,
    KF_ENROLL_GROUP = 2,
};

struct kf_enrollment_rec {
    char id[KF_ID_MAX + 1]; /* registration id, or group name: one namespace */
    enum kf_enroll_kind kind;
    int enabled;
    int verified;                        /* group: proof of possession done; individual: 1 */
    char *cert_pem;                      /* individual: factory certificate; group: its CA */
    char *pubkey_pem;                    /* individual enrolled by public key */
    char key_fingerprint[KF_HASH_HEX];   /* SHA-256 of the SPKI of that certificate or key */
    char *subject;                       /* subject of cert_pem, for display */
    char verification_code[KF_CODE_MAX]; /* group, until verified; "" otherwise */
    int64_t code_expires;                /* seconds since the epoch; 0 when no code */
    char allocation[16];                 /* "hashed" (default) or "static" */
    char hub[KF_ID_MAX + 1];             /* static allocation: the hub's name */
    char *networks; /* allowed source networks, comma-separated CIDRs; NULL: any */
    char *settings; /* initial device settings, JSON object; NULL: none */
    int64_t created, updated;
    int approval_manual; /* 1: a new device waits for an operator's approval */
    int require_binding; /* 1: the CSR must carry the TLS channel binding */
};
void kf_enrollment_clear(struct kf_enrollment_rec *e);

/*
 * KF_E_EXISTS when an enrollment with that id exists (of either kind); KF_E_CONFLICT when an
 * individual enrollment's id is a service's name (device ids and service names never meet).
 */
enum kf_err kf_txn_enrollment_insert(struct kf_txn *txn, const struct kf_enrollment_rec *e);
enum kf_err kf_txn_enrollment_get(struct kf_txn *txn, const char *id,
                                  struct kf_enrollment_rec *out);
/* Replaces every field of the enrollment `e->id`; KF_E_NOT_FOUND when there is none. */
enum kf_err kf_txn_enrollment_update(struct kf_txn *txn, const struct kf_enrollment_rec *e);
/* KF_E_NOT_FOUND when there is none. Devices keep existing; their enrollment becomes "". */
enum kf_err kf_txn_enrollment_delete(struct kf_txn *txn, const char *id);
/* Lists in id order; `kind` 0 for both kinds. A non-zero return from `cb` stops and is returned. */
enum kf_err kf_txn_enrollment_list(struct kf_txn *txn, int kind,
                                   enum kf_err (*cb)(const struct kf_enrollment_rec *e, void *arg),
                                   void *arg);

/* ---- devices ---- */

enum kf_device_status {
    KF_DEVICE_ACTIVE = 1,
    KF_DEVICE_DISABLED = 2,
    KF_DEVICE_REVOKED = 3,
};
/* "active", "disabled", "revoked"; and back (-1 when unknown). */
const char *kf_device_status_name(enum kf_device_status s);
int kf_device_status_parse(const char *name);

struct kf_device_rec {
    char id[KF_ID_MAX + 1];
    char enrollment[KF_ID_MAX + 1]; /* "" when enrolled by an operator or the enrollment is gone */
    enum kf_device_status status;
    char hub[KF_ID_MAX + 1]; /* "" until assigned */
    int64_t created, updated;
};

/* KF_E_EXISTS when the id is taken; KF_E_CONFLICT when it is a service's name. */
enum kf_err kf_txn_device_insert(struct kf_txn *txn, const struct kf_device_rec *d);
enum kf_err kf_txn_device_get(struct kf_txn *txn, const char *id, struct kf_device_rec *out);
enum kf_err kf_txn_device_update(struct kf_txn *txn, const struct kf_device_rec *d);
/* Lists in id order; `status` 0 for all; `enrollment` NULL for all. */
enum kf_err kf_txn_device_list(struct kf_txn *txn, int status, const char *enrollment,
                               enum kf_err (*cb)(const struct kf_device_rec *d, void *arg),
                               void *arg);
/* Counts devices; `status` 0 for all. */
enum kf_err kf_txn_device_count(struct kf_txn *txn, int status, int64_t *out);

/* ---- certificates ---- */

enum kf_cert_status {
    KF_CERT_VALID = 1,
    KF_CERT_REVOKED = 2,
};
const char *kf_cert_status_name(enum kf_cert_status s);

struct kf_cert_rec {
    char serial[KF_SERIAL_HEX_MAX];
    char device_id[KF_ID_MAX + 1]; /* "" for CA, server and service certificates */
    char service[KF_ID_MAX + 1];   /* the service of a service certificate; "" otherwise */
    char profile[16];              /* kf_profile_name() */
    char issuer[32];               /* the issuing CA's name ("issuing", "root") */
    char *subject;
    int64_t not_before, not_after;
    enum kf_cert_status status;
    int64_t revoked_at;            /* 0 unless revoked */
    int reason;                    /* enum kf_crl_reason, when revoked */
    char fingerprint[KF_HASH_HEX]; /* SHA-256 of the DER certificate */
    char *pem;
    int64_t created;
};
void kf_cert_rec_clear(struct kf_cert_rec *r);

/* KF_E_EXISTS when the serial is taken. */
enum kf_err kf_txn_cert_insert(struct kf_txn *txn, const struct kf_cert_rec *r);
enum kf_err kf_txn_cert_get(struct kf_txn *txn, const char *serial, struct kf_cert_rec *out);
/* Marks a valid certificate revoked; KF_E_CONFLICT when it already is, KF_E_NOT_FOUND. */
enum kf_err kf_txn_cert_revoke(struct kf_txn *txn, const char *serial, int64_t when, int reason);
/*
 * Lists certificates, newest first; `device_id` NULL for all, `status` 0 for all, `limit`
 * KF_LIST_ALL for no limit.
 */
enum kf_err kf_txn_cert_list(struct kf_txn *txn, const char *device_id, int status, int64_t limit,
                             enum kf_err (*cb)(const struct kf_cert_rec *r, void *arg), void *arg);
/* Lists the certificates of service `name`, newest first. */
enum kf_err kf_txn_cert_list_service(struct kf_txn *txn, const char *name,
                                     enum kf_err (*cb)(const struct kf_cert_rec *r, void *arg),
                                     void *arg);
/*
 * Lists the serials of every certificate CA `issuer` issued that is revoked, expired or not (for
 * keyfleetd's memory: a revoked serial stays refused whatever a CRL says), cheaply: serials only.
 */
enum kf_err kf_txn_cert_revoked_serials(struct kf_txn *txn, const char *issuer,
                                        enum kf_err (*cb)(const char *serial, void *arg),
                                        void *arg);
/* Lists the revoked certificates issued by CA `issuer` that have not expired at `now`. */
enum kf_err kf_txn_cert_revoked(struct kf_txn *txn, const char *issuer, int64_t now,
                                enum kf_err (*cb)(const struct kf_cert_rec *r, void *arg),
                                void *arg);

/* ---- service identities ---- */

enum kf_service_status {
    KF_SERVICE_ACTIVE = 1,
    KF_SERVICE_REVOKED = 2, /* final */
};
const char *kf_service_status_name(enum kf_service_status s);

/*
 * A back-end application on the hub: a name (an id), a role that says which topics it may use
 * ("reader", "commander"), and its certificates (kf_cert_rec.service).
 */
struct kf_service_rec {
    char name[KF_ID_MAX + 1];
    char role[16];
    enum kf_service_status status;
    int64_t created, updated;
};

/*
 * KF_E_EXISTS when the name is taken; KF_E_CONFLICT when it is a device's id or an individual
 * enrollment's registration id (device ids and service names never meet).
 */
enum kf_err kf_txn_service_insert(struct kf_txn *txn, const struct kf_service_rec *s);
enum kf_err kf_txn_service_get(struct kf_txn *txn, const char *name, struct kf_service_rec *out);
/* Writes the role, status and updated time; KF_E_NOT_FOUND. */
enum kf_err kf_txn_service_update(struct kf_txn *txn, const struct kf_service_rec *s);
/* Lists services by name. */
enum kf_err kf_txn_service_list(struct kf_txn *txn,
                                enum kf_err (*cb)(const struct kf_service_rec *s, void *arg),
                                void *arg);

/* ---- registrations ---- */

struct kf_registration_rec {
    char device_id[KF_ID_MAX + 1];
    char enrollment[KF_ID_MAX + 1];
    char hub[KF_ID_MAX + 1];
    char cert_serial[KF_SERIAL_HEX_MAX]; /* the last certificate issued */
    char source_ip[KF_IP_MAX];
    int64_t first_at, last_at, renew_after;
    int64_t count; /* how many times it registered */
};

/* ---- approvals: new devices an enrollment with approval manual holds for an operator ---- */

enum kf_approval_state {
    KF_APPROVAL_PENDING = 0,
    KF_APPROVAL_APPROVED = 1,
    KF_APPROVAL_REJECTED = 2,
};
/* "pending", "approved", "rejected"; NULL for another value. */
const char *kf_approval_state_name(int state);
/* The state named `s`, or -1. */
int kf_approval_state_parse(const char *s);

struct kf_approval_rec {
    char device_id[KF_ID_MAX + 1];
    char enrollment[KF_ID_MAX + 1];
    enum kf_approval_state state;
    char fingerprint[KF_HASH_HEX];   /* SHA-256 of the SPKI of the factory certificate that asked */
    char source_ip[KF_IP_MAX];       /* where it last asked from */
    int64_t requested, last_request; /* seconds since the epoch */
    int64_t requests;                /* how many times it asked */
    int64_t decided;                 /* 0 while pending */
    char decided_by[KF_ACTOR_MAX];
};

/* Inserts or replaces the approval of `a->device_id`. */
enum kf_err kf_txn_approval_put(struct kf_txn *txn, const struct kf_approval_rec *a);
/* KF_E_NOT_FOUND when the device never asked. */
enum kf_err kf_txn_approval_get(struct kf_txn *txn, const char *device_id,
                                struct kf_approval_rec *out);
/* In the order they were first asked for; `state` -1 for every state. */
enum kf_err kf_txn_approval_list(struct kf_txn *txn, int state,
                                 enum kf_err (*cb)(const struct kf_approval_rec *a, void *arg),
                                 void *arg);
enum kf_err kf_txn_approval_count(struct kf_txn *txn, int state, int64_t *n);

/* ---- the hub's retained messages (topic -> the message as kf_msg_encode writes it) ---- */

/* Keeps `msg` as the retained message of `topic` (replacing the one before). */
enum kf_err kf_txn_hub_retained_put(struct kf_txn *txn, const uint8_t *topic, size_t topic_len,
                                    const uint8_t *msg, size_t msg_len);
/* Clears the retained message of `topic` (none is fine). */
enum kf_err kf_txn_hub_retained_delete(struct kf_txn *txn, const uint8_t *topic, size_t topic_len);
/* Every retained message, in topic order (bytes borrowed for the call). */
enum kf_err kf_txn_hub_retained_list(struct kf_txn *txn,
                                     enum kf_err (*cb)(const void *topic, size_t topic_len,
                                                       const void *msg, size_t msg_len, void *arg),
                                     void *arg);

/*
 * ---- the hub's persistent sessions ----
 * Rows (session, kind, key) -> value that the broker writes and reads back (kind 0: the session,
 * 1: a message queued or in flight, 2: an inbound QoS 2 id); session names are 1 to 300 bytes,
 * values at most 16 MiB.
 */
enum kf_err kf_txn_hub_state_put(struct kf_txn *txn, const char *session, int kind, int64_t key,
                                 const uint8_t *value, size_t len);
/* Deletes one row (none is fine). */
enum kf_err kf_txn_hub_state_delete(struct kf_txn *txn, const char *session, int kind, int64_t key);
/* Deletes every row of `session` (the session ended). */
enum kf_err kf_txn_hub_state_drop(struct kf_txn *txn, const char *session);
/* Every row, ordered by session, kind, key (strings and bytes borrowed for the call). */
enum kf_err kf_txn_hub_state_list(struct kf_txn *txn,
                                  enum kf_err (*cb)(const char *session, int kind, int64_t key,
                                                    const void *value, size_t len, void *arg),
                                  void *arg);

/* Inserts or replaces the registration of `r->device_id`. */
enum kf_err kf_txn_registration_put(struct kf_txn *txn, const struct kf_registration_rec *r);
enum kf_err kf_txn_registration_get(struct kf_txn *txn, const char *device_id,
                                    struct kf_registration_rec *out);

/* ---- hubs ---- */

struct kf_hub_rec {
    char name[KF_ID_MAX + 1];
    char endpoint[KF_ENDPOINT_MAX]; /* host:port */
    int weight;
    int enabled;
    int64_t created;
};

enum kf_err kf_txn_hub_insert(struct kf_txn *txn, const struct kf_hub_rec *h);
enum kf_err kf_txn_hub_get(struct kf_txn *txn, const char *name, struct kf_hub_rec *out);
enum kf_err kf_txn_hub_update(struct kf_txn *txn, const struct kf_hub_rec *h);
enum kf_err kf_txn_hub_delete(struct kf_txn *txn, const char *name);
enum kf_err kf_txn_hub_list(struct kf_txn *txn,
                            enum kf_err (*cb)(const struct kf_hub_rec *h, void *arg), void *arg);

/* ---- security events ---- */

struct kf_event_rec {
    int64_t id; /* assigned on insert */
    int64_t time_ms;
    char type[KF_EVENT_TYPE_MAX]; /* "provisioning.denied", "hub.acl_denied", ... */
    char severity[16];            /* "info", "warning", "critical" */
    char device[KF_ID_MAX + 1];   /* "" when none: only an identity that was verified */
    char claimed[KF_ID_MAX + 1];  /* an identity that did not verify, as it was claimed; "" */
    char source[32];              /* "server", "device" */
    char ip[KF_IP_MAX];           /* "" when none */
    char *detail;                 /* JSON object; NULL: {} */
};
void kf_event_clear(struct kf_event_rec *e);

/* Inserts `e` and sets `*id` (may be NULL) to its id. */
enum kf_err kf_txn_event_insert(struct kf_txn *txn, const struct kf_event_rec *e, int64_t *id);
/*
 * Deletes events, oldest first, at most `limit` of them in one call (so a prune never holds the
 * write lock long): those older than `before_ms` (0: none by age), then the oldest beyond the
 * newest `keep_rows` (0: no bound on rows). `*deleted` (may be NULL) says how many went.
 */
enum kf_err kf_txn_event_prune(struct kf_txn *txn, int64_t before_ms, int64_t keep_rows,
                               int64_t limit, int64_t *deleted);
/* Lists events at or after `since_ms`, oldest first; `type`/`device` NULL for all. */
enum kf_err kf_txn_event_list(struct kf_txn *txn, int64_t since_ms, const char *type,
                              const char *device, int64_t limit,
                              enum kf_err (*cb)(const struct kf_event_rec *e, void *arg),
                              void *arg);

/*
 * Lists events with an id above `after_id`, in id order, at most `limit` (a walk of the primary
 * key: a reader that keeps the last id it saw misses none and reads each once).
 */
enum kf_err kf_txn_event_after(struct kf_txn *txn, int64_t after_id, int64_t limit,
                               enum kf_err (*cb)(const struct kf_event_rec *e, void *arg),
                               void *arg);

/* ---- software rollouts (server/ops/rollout) ---- */

#define KF_ROLLOUT_TARGET_MAX 256 /* a TUF target path (KF_TUF_PATH_MAX) */
#define KF_ROLLOUT_STATE_MAX  16
#define KF_ROLLOUT_DOC_MAX    (64u * 1024)

struct kf_rollout_rec {
    int64_t id;                         /* assigned on insert */
    char state[KF_ROLLOUT_STATE_MAX];   /* "running", "paused", "aborted", "completed" */
    char target[KF_ROLLOUT_TARGET_MAX]; /* the release: a target in the signed metadata */
    char hardware[128];                 /* its hardware id */
    int64_t version;                    /* its version */
    int64_t released;                   /* devices offered it: those with ord < released */
    char *doc;                          /* JSON object: phases, soak, ... (owned) */
    int64_t created, updated;           /* seconds */
};
void kf_rollout_rec_clear(struct kf_rollout_rec *r);

struct kf_rollout_device_rec {
    int64_t rollout;
    char device[KF_ID_MAX + 1];
    int64_t ord; /* its place in the rollout (0, 1, ...): phases take a prefix */
    char state[KF_ROLLOUT_STATE_MAX]; /* "pending", "downloading", ..., "confirmed", "failed" */
    char reason[64];                  /* why it failed ("" otherwise) */
    int64_t updated;
    int accepted; /* a failure an operator accepted (rollout resume): no longer counted */
};

/* Inserts `r` (its id is ignored) and sets `*id`. */
enum kf_err kf_txn_rollout_insert(struct kf_txn *txn, const struct kf_rollout_rec *r, int64_t *id);
/* `out` owned by the caller (kf_rollout_rec_clear); KF_E_NOT_FOUND naming it. */
enum kf_err kf_txn_rollout_get(struct kf_txn *txn, int64_t id, struct kf_rollout_rec *out);
/* Writes state, released, doc and updated of rollout `r->id`. */
enum kf_err kf_txn_rollout_update(struct kf_txn *txn, const struct kf_rollout_rec *r);
/* Every rollout, oldest first (records borrowed for the call). */
enum kf_err kf_txn_rollout_list(struct kf_txn *txn,
                                enum kf_err (*cb)(const struct kf_rollout_rec *r, void *arg),
                                void *arg);
/* Inserts or replaces the row (rollout, device). */
enum kf_err kf_txn_rollout_device_put(struct kf_txn *txn, const struct kf_rollout_device_rec *d);
/* The devices of `rollout` in ord order. */
enum kf_err kf_txn_rollout_device_list(struct kf_txn *txn, int64_t rollout,
                                       enum kf_err (*cb)(const struct kf_rollout_device_rec *d,
                                                         void *arg),
                                       void *arg);
/*
 * The newest rollout of a release for `hardware` ("" or NULL: any) that has offered it to
 * `device`, whatever its state (KF_E_NOT_FOUND, without a message, when none).
 */
enum kf_err kf_txn_rollout_assigned(struct kf_txn *txn, const char *device, const char *hardware,
                                    struct kf_rollout_rec *out);
/*
 * The device's row in the newest rollout that has offered it release `target` ("" or NULL: any)
 * of version `version` (< 0: any), KF_E_NOT_FOUND without a message when none: where its report
 * about that release counts.
 */
enum kf_err kf_txn_rollout_device_find(struct kf_txn *txn, const char *device, int64_t version,
                                       const char *target, struct kf_rollout_device_rec *out);

/*
 * A counter kept in the store ("rollout_cursor": the last event the rollout engine read): 0 when
 * it was never written. The registry version is not one of them.
 */
enum kf_err kf_txn_counter_get(struct kf_txn *txn, const char *key, int64_t *value);
enum kf_err kf_txn_counter_put(struct kf_txn *txn, const char *key, int64_t value);

/* ---- audit log ---- */

struct kf_audit_rec {
    int64_t seq; /* 1, 2, 3, ... */
    int64_t time_ms;
    char actor[KF_ACTOR_MAX];    /* "operator:alice", "keyfleetd" */
    char action[KF_ACTION_MAX];  /* "enrollment.add", "cert.issue", ... */
    char object[KF_OBJECT_MAX];  /* what it acted on: "enrollment:dev-1", "cert:3fa2..." */
    char *detail;                /* JSON object */
    char prev_hash[KF_HASH_HEX]; /* hash of the record before ("0"*64 for the first) */
    char hash[KF_HASH_HEX];      /* SHA-256 over this record's fields and prev_hash */
};
void kf_audit_rec_clear(struct kf_audit_rec *r);

/*
 * Appends an audit record in this write transaction: seq and prev_hash follow the last record
 * (including those appended earlier in the same transaction), time is now, hash is computed with
 * kf_audit_hash(). `detail_json` must be a JSON object (NULL: "{}").
 */
enum kf_err kf_txn_audit_append(struct kf_txn *txn, const char *actor, const char *action,
                                const char *object, const char *detail_json);

/* Lists records with time at or after `since_ms`, in seq order. */
enum kf_err kf_txn_audit_list(struct kf_txn *txn, int64_t since_ms,
                              enum kf_err (*cb)(const struct kf_audit_rec *r, void *arg),
                              void *arg);

/*
 * The hash of `r`: SHA-256 over a domain tag and each of seq, time_ms, actor, action, object,
 * detail and prev_hash, length-prefixed, as lower-case hex into `hex` (KF_HASH_HEX).
 */
void kf_audit_hash(const struct kf_audit_rec *r, char *hex);

/*
 * The chain's head: the seq and stored hash of the last record (`*seq` 0 and `hash` "" when the
 * log is empty).
 */
enum kf_err kf_txn_audit_head(struct kf_txn *txn, int64_t *seq, char *hash);

/*
 * A signed checkpoint: the issuing CA's signer vouched, at `time_ms`, that audit record `seq`
 * had hash `head`. Whoever can write the store can rewrite records and recompute the chain, but
 * not sign; so a record that no longer has the hash a checkpoint gives was rewritten.
 */
struct kf_checkpoint_rec {
    int64_t seq;
    char head[KF_HASH_HEX];
    int64_t time_ms;
    char signer[KF_SERIAL_HEX_MAX]; /* the serial of the certificate whose key signed */
    char *signature;                /* lower-case hex (heap, owned by the record) */
};

/* KF_E_EXISTS when `cp->seq` has a checkpoint already. */
enum kf_err kf_txn_checkpoint_insert(struct kf_txn *txn, const struct kf_checkpoint_rec *cp);
/* Lists checkpoints in seq order (records borrowed for the call). */
enum kf_err kf_txn_checkpoint_list(struct kf_txn *txn,
                                   enum kf_err (*cb)(const struct kf_checkpoint_rec *cp, void *arg),
                                   void *arg);

enum kf_audit_fault {
    KF_AUDIT_INTACT = 0,
    KF_AUDIT_ALTERED,   /* a record's contents no longer match its hash */
    KF_AUDIT_DELETED,   /* a record is missing (a gap in the sequence) */
    KF_AUDIT_REORDERED, /* a record's link points at a record other than the one before it */
    KF_AUDIT_BROKEN,    /* a record's link matches no record: its predecessor was replaced */
    KF_AUDIT_HEAD,      /* the log ends before the expected head: records were cut off */
    KF_AUDIT_REWRITTEN, /* the chain verifies, but a signed checkpoint does not: rewritten */
    KF_AUDIT_FORGED,    /* a checkpoint's signature does not verify */
};
const char *kf_audit_fault_name(enum kf_audit_fault f);

struct kf_audit_verdict {
    enum kf_audit_fault fault;
    int64_t seq;            /* the first record found wrong (fault != INTACT) */
    int64_t records;        /* records checked */
    char head[KF_HASH_HEX]; /* hash of the last record ("" when the log is empty) */
    char message[256];      /* a sentence for the operator */
};

/*
 * Walks the whole chain in `txn` and reports the first fault. When `expected_head` is given (a
 * hash recorded earlier), a log that no longer contains it is reported as cut off. Returns KF_OK
 * when the chain is intact, KF_E_TAMPERED with the verdict filled in otherwise.
 */
enum kf_err kf_txn_audit_verify(struct kf_txn *txn, const char *expected_head,
                                struct kf_audit_verdict *out);

#endif
