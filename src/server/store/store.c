/*
 * store: the back-end-independent half of the registry store: opening by URL, argument checks,
 * the reader pool, the write queue and its committer thread (group commit), and the audit hash
 * chain. The SQL lives in the back ends beside it (sqlite.c).
 */
#include "server/store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/ident.h"
#include "common/ossl.h"
#include "common/pki_crl.h"
#include "server/store/backend.h"

/*
 * Readers: a few idle connections are kept for reuse; more are opened while they are needed, up
 * to a hard maximum, so that a burst of readers neither waits nor opens connections without end.
 */
#define READERS_IDLE   4
#define READERS_MAX    32
#define READER_WAIT_MS 10000

/* Writes: the most callbacks one transaction carries (LevelDB bounds its group the same way). */
#define BATCH_MAX  256
#define BATCH_GOAL 32 /* a batch this large has shared its commit enough: no waiting for more */

/* Bounds on what one record may hold, so that one caller cannot fill the store in one write. */
#define JSON_MAX (64 * 1024) /* settings, event and audit details */
#define PEM_MAX  KF_CERT_FILE_MAX
#define TEXT_MAX 4096 /* subjects, key URIs, network lists */

#define ERRMSG_MAX 1024

/* The capacity of a fixed array member, for checking a string meant for it. */
#define FIELD_CAP(type, member) sizeof(((type *)0)->member)

struct kf_store {
    const struct kf_store_backend *be;
    struct kf_store_db *db;
    struct kf_store_conn *writer; /* used only by the committer thread */

    pthread_mutex_t rmu; /* guards the reader pool */
    pthread_cond_t rcv;  /* a reader was given back */
    struct kf_store_conn *idle[READERS_IDLE];
    size_t n_idle;
    size_t n_busy; /* readers handed out */

    pthread_mutex_t wmu; /* guards the write queue, the committer's state and the statistics */
    pthread_cond_t wcv;  /* the committer waits here for requests, or for the store to close */
    struct kf_store_req *head, *tail; /* queued, not yet taken into a batch */
    size_t n_submitted;               /* of them, from kf_store_submit */
    size_t n_lazy_submitted;          /* of those, lazy (KF_STORE_LAZY_MAX; the rest: QUEUE_MAX) */
    size_t n_queued;                  /* all of them */
    size_t n_eager;                   /* of them, not lazy: someone waits for the outcome */
    int lazy_wait; /* the committer is in wait_while_lazy: only what ends the wait wakes it */
    /* The commit hint (kf_store_commit_hint); set before the first write. */
    size_t (*hint_fn)(void *arg);
    void *hint_arg;
    unsigned hint_delay_us;
    int started;         /* the committer thread runs ... */
    pthread_t committer; /* ... as this thread */
    int closing;         /* kf_store_close has begun: nothing more is queued */
    struct kf_store_stats stats;
};

/* ---- names ---- */

const char *kf_device_status_name(enum kf_device_status s)
{
    switch (s) {
    case KF_DEVICE_ACTIVE: return "active";
    case KF_DEVICE_DISABLED: return "disabled";
    case KF_DEVICE_REVOKED: return "revoked";
    }
    return "unknown";
}

int kf_device_status_parse(const char *name)
{
    if (!name) return -1;
    for (int s = KF_DEVICE_ACTIVE; s <= KF_DEVICE_REVOKED; s++)
        if (strcmp(name, kf_device_status_name((enum kf_device_status)s)) == 0) return s;
    return -1;
}

const char *kf_cert_status_name(enum kf_cert_status s)
{
    switch (s) {
    case KF_CERT_VALID: return "valid";
    case KF_CERT_REVOKED: return "revoked";
    }
    return "unknown";
}

int kf_store_cert_status_parse(const char *name)
{
    if (!name) return -1;
    for (int s = KF_CERT_VALID; s <= KF_CERT_REVOKED; s++)
        if (strcmp(name, kf_cert_status_name((enum kf_cert_status)s)) == 0) return s;
    return -1;
}

const char *kf_service_status_name(enum kf_service_status s)
{
    switch (s) {
    case KF_SERVICE_ACTIVE: return "active";
    case KF_SERVICE_REVOKED: return "revoked";
    }
    return "unknown";
}

int kf_store_service_status_parse(const char *name)
{
    if (!name) return -1;
    for (int s = KF_SERVICE_ACTIVE; s <= KF_SERVICE_REVOKED; s++)
        if (strcmp(name, kf_service_status_name((enum kf_service_status)s)) == 0) return s;
    return -1;
}

const char *kf_store_enroll_kind_name(int kind)
{
    switch (kind) {
    case KF_ENROLL_INDIVIDUAL: return "individual";
    case KF_ENROLL_GROUP: return "group";
    }
    return NULL;
}

int kf_store_enroll_kind_parse(const char *name)
{
    if (!name) return -1;
    if (strcmp(name, "individual") == 0) return KF_ENROLL_INDIVIDUAL;
    if (strcmp(name, "group") == 0) return KF_ENROLL_GROUP;
    return -1;
}

const char *kf_audit_fault_name(enum kf_audit_fault f)
{
    switch (f) {
    case KF_AUDIT_INTACT: return "intact";
    case KF_AUDIT_ALTERED: return "altered";
    case KF_AUDIT_DELETED: return "deleted";
    case KF_AUDIT_REORDERED: return "reordered";
    case KF_AUDIT_BROKEN: return "broken";
    case KF_AUDIT_HEAD: return "truncated";
    case KF_AUDIT_REWRITTEN: return "rewritten";
    case KF_AUDIT_FORGED: return "forged";
    }
    return "unknown";
}

/* ---- records ---- */

void kf_ca_rec_clear(struct kf_ca_rec *r)
{
    if (!r) return;
    free(r->subject);
    free(r->cert_pem);
    /* A PKCS#11 URI may carry its PIN (pin-value=): do not leave it in freed memory. */
    if (r->key_uri) OPENSSL_cleanse(r->key_uri, strlen(r->key_uri));
    free(r->key_uri);
    memset(r, 0, sizeof(*r));
}

void kf_enrollment_clear(struct kf_enrollment_rec *e)
{
    if (!e) return;
    free(e->cert_pem);
    free(e->pubkey_pem);
    free(e->subject);
    free(e->networks);
    free(e->settings);
    memset(e, 0, sizeof(*e));
}

void kf_cert_rec_clear(struct kf_cert_rec *r)
{
    if (!r) return;
    free(r->subject);
    free(r->pem);
    memset(r, 0, sizeof(*r));
}

void kf_event_clear(struct kf_event_rec *e)
{
    if (!e) return;
    free(e->detail);
    memset(e, 0, sizeof(*e));
}

void kf_audit_rec_clear(struct kf_audit_rec *r)
{
    if (!r) return;
    free(r->detail);
    memset(r, 0, sizeof(*r));
}

/* ---- argument checks: bad input gets a sentence, never a crash or a half record ---- */

static enum kf_err need_txn(struct kf_txn *txn, const void *p)
{
    if (!txn || !p) return kf_fail(KF_E_INVALID, "store call without a transaction or an argument");
    return KF_OK;
}

static enum kf_err need_write(struct kf_txn *txn, const void *p, const char *what)
{
    enum kf_err rc = need_txn(txn, p);
    if (rc) return rc;
    if (!txn->write)
        return kf_fail(KF_E_INVALID, "cannot %s in a read transaction: use kf_store_write", what);
    return KF_OK;
}

/* A fixed array field: terminated inside its array, and not empty when `required`. */
static enum kf_err check_fixed(const char *what, const char *s, size_t cap, int required)
{
    if (!memchr(s, '\0', cap))
        return kf_fail(KF_E_INVALID, "%s is longer than %zu characters", what, cap - 1);
    if (required && !*s) return kf_fail(KF_E_INVALID, "%s is empty", what);
    return KF_OK;
}

/* A heap string: at most `max` bytes; NULL only when not `required`. */
static enum kf_err check_text(const char *what, const char *s, size_t max, int required)
{
    if (!s) return required ? kf_fail(KF_E_INVALID, "%s is missing", what) : KF_OK;
    if (strnlen(s, max + 1) > max)
        return kf_fail(KF_E_OVERSIZE, "%s is longer than %zu bytes", what, max);
    return KF_OK;
}

/* An id in a fixed array (or any string of capacity `cap`); "" allowed when `empty_ok`. */
static enum kf_err check_id(const char *what, const char *s, size_t cap, int empty_ok)
{
    enum kf_err rc;
    if (!s) return kf_fail(KF_E_INVALID, "%s is missing", what);
    rc = check_fixed(what, s, cap, !empty_ok);
    if (rc || !*s) return rc;
    return kf_id_check(what, s);
}

/* Lower-case hex of 1..cap-1 digits (exactly `len` when non-zero); "" allowed when `empty_ok`. */
static enum kf_err check_hex(const char *what, const char *s, size_t cap, size_t len, int empty_ok)
{
    enum kf_err rc;
    size_t n;
    if (!s) return kf_fail(KF_E_INVALID, "%s is missing", what);
    rc = check_fixed(what, s, cap, !empty_ok);
    if (rc || !*s) return rc;
    n = strlen(s);
    if (strspn(s, "0123456789abcdef") != n || (len && n != len)) {
        if (len) return kf_fail(KF_E_INVALID, "%s must be %zu lower-case hex digits", what, len);
        return kf_fail(KF_E_INVALID, "%s must be lower-case hex digits", what);
    }
    return KF_OK;
}

static enum kf_err check_json_object(const char *what, const char *s)
{
    json_error_t jerr;
    json_t *j;
    enum kf_err rc = check_text(what, s, JSON_MAX, 1);
    if (rc) return rc;
    j = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return kf_fail(KF_E_MALFORMED, "%s is not valid JSON: %s (line %d, column %d)", what,
                       jerr.text, jerr.line, jerr.column);
    if (!json_is_object(j)) rc = kf_fail(KF_E_MALFORMED, "%s is not a JSON object", what);
    json_decref(j);
    return rc;
}

static enum kf_err check_one_of(const char *what, const char *s, size_t cap,
                                const char *const *names, size_t n)
{
    enum kf_err rc = check_fixed(what, s, cap, 1);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return KF_OK;
    return kf_fail(KF_E_INVALID, "%s \"%s\" is not one the store knows", what, s);
}

static enum kf_err check_limit(int64_t limit)
{
    if (limit < 0)
        return kf_fail(KF_E_INVALID, "a list limit cannot be negative (%" PRId64 ")", limit);
    return KF_OK;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- open and close ---- */

/*
 * Picks the back end from the URL. A URL is never echoed back: a PostgreSQL one may carry a
 * password.
 */
static enum kf_err parse_url(const char *url, const struct kf_store_backend **be,
                             const char **location)
{
    static const char scheme_chars[] = "abcdefghijklmnopqrstuvwxyz"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-";
    size_t n;

    if (!url || !*url)
        return kf_fail(KF_E_INVALID, "no store given: expected a path or sqlite:PATH");
    if (strncmp(url, "sqlite:", 7) == 0) {
        *be = &kf_store_sqlite_backend;
        *location = url + 7;
    } else {
        n = strspn(url, scheme_chars);
        if (n > 0 && strncmp(url + n, "://", 3) == 0) {
            if ((n == 10 && strncasecmp(url, "postgresql", n) == 0) ||
                (n == 8 && strncasecmp(url, "postgres", n) == 0))
                return kf_fail(KF_E_UNSUPPORTED, "PostgreSQL stores are not built yet: use a "
                                                 "SQLite store (a path or sqlite:PATH)");
            return kf_fail(KF_E_UNSUPPORTED,
                           "unknown store scheme \"%.*s\": expected a path, sqlite:PATH or "
                           "postgresql://...",
                           (int)(n > 32 ? 32 : n), url);
        }
        *be = &kf_store_sqlite_backend;
        *location = url;
    }
    if (!**location) return kf_fail(KF_E_INVALID, "the store URL names no file");
    if (strnlen(*location, PATH_MAX) >= PATH_MAX)
        return kf_fail(KF_E_OVERSIZE, "the store path is longer than %d bytes", PATH_MAX - 1);
    return KF_OK;
}

static enum kf_err init_sync(struct kf_store *s)
{
    pthread_condattr_t ca;
    int done = 0;

    if (pthread_condattr_init(&ca))
        return kf_fail(KF_E_INTERNAL, "cannot set up the store's locks");
    /* The reader wait is timed; a monotonic clock keeps it right when the wall clock jumps. */
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
        pthread_mutex_init(&s->rmu, NULL) == 0) {
        done = 1;
        if (pthread_cond_init(&s->rcv, &ca) == 0) {
            done = 2;
            if (pthread_mutex_init(&s->wmu, NULL) == 0) {
                done = 3;
                if (pthread_cond_init(&s->wcv, NULL) == 0) done = 4;
            }
        }
    }
    pthread_condattr_destroy(&ca);
    if (done == 4) return KF_OK;
    if (done >= 3) pthread_mutex_destroy(&s->wmu);
    if (done >= 2) pthread_cond_destroy(&s->rcv);
    if (done >= 1) pthread_mutex_destroy(&s->rmu);
    return kf_fail(KF_E_INTERNAL, "cannot set up the store's locks");
}

enum kf_err kf_store_open(const char *url, int flags, struct kf_store **out)
{
    const struct kf_store_backend *be = NULL;
    const char *location = NULL;
    struct kf_store *s = NULL;
    int synced = 0;
    enum kf_err rc;

    if (!out) return kf_fail(KF_E_INVALID, "kf_store_open needs somewhere to put the store");
    *out = NULL;
    rc = parse_url(url, &be, &location);
    if (rc) goto out;
    s = calloc(1, sizeof(*s));
    if (!s) {
        rc = kf_fail(KF_E_NOMEM, "out of memory opening the store");
        goto out;
    }
    rc = init_sync(s);
    if (rc) goto out;
    synced = 1;
    s->be = be;
    rc = be->open(location, flags, &s->db, &s->writer);
    if (rc) goto out;
    *out = s;
    s = NULL;
out:
    if (s) {
        if (synced) {
            pthread_cond_destroy(&s->wcv);
            pthread_mutex_destroy(&s->wmu);
            pthread_cond_destroy(&s->rcv);
            pthread_mutex_destroy(&s->rmu);
        }
        free(s);
    }
    return rc;
}

void kf_store_close(struct kf_store *store)
{
    int started;

    if (!store) return;
    /*
     * Refuse new requests, then let the committer run what is queued and stop: every request
     * accepted gets its callbacks. From a callback the join would wait for itself: our bug.
     */
    pthread_mutex_lock(&store->wmu);
    KF_ASSERT(!store->started || !pthread_equal(store->committer, pthread_self()));
    store->closing = 1;
    started = store->started;
    pthread_cond_signal(&store->wcv);
    pthread_mutex_unlock(&store->wmu);
    if (started) pthread_join(store->committer, NULL);

    /* A transaction still open here is our own bug: its connection would be closed under it. */
    KF_ASSERT(store->n_busy == 0 && !store->head);
    for (size_t i = 0; i < store->n_idle; i++)
        store->be->reader_close(store->idle[i]);
    store->be->close(store->db);
    pthread_cond_destroy(&store->wcv);
    pthread_mutex_destroy(&store->wmu);
    pthread_cond_destroy(&store->rcv);
    pthread_mutex_destroy(&store->rmu);
    free(store);
}

int kf_store_schema_version(struct kf_store *store)
{
    return store ? store->be->schema_version(store->db) : 0;
}

void kf_store_stats(struct kf_store *store, struct kf_store_stats *out)
{
    if (!store || !out) return;
    pthread_mutex_lock(&store->wmu);
    *out = store->stats;
    out->queued = (uint64_t)store->n_submitted;
    pthread_mutex_unlock(&store->wmu);
}

/* ---- reads ---- */

static enum kf_err reader_take(struct kf_store *s, struct kf_store_conn **out)
{
    struct timespec deadline;
    int timed_out = 0;
    enum kf_err rc;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += READER_WAIT_MS / 1000;
    pthread_mutex_lock(&s->rmu);
    for (;;) {
        if (s->n_idle > 0) {
            *out = s->idle[--s->n_idle];
            s->n_busy++;
            pthread_mutex_unlock(&s->rmu);
            return KF_OK;
        }
        if (s->n_idle + s->n_busy < READERS_MAX) break;
        if (timed_out) {
            pthread_mutex_unlock(&s->rmu);
            return kf_fail(KF_E_BUSY, "all %d reader connections of the store are in use",
                           READERS_MAX);
        }
        timed_out = pthread_cond_timedwait(&s->rcv, &s->rmu, &deadline) == ETIMEDOUT;
    }
    /* Count the new connection before opening it, outside the lock, so the maximum holds. */
    s->n_busy++;
    pthread_mutex_unlock(&s->rmu);
    rc = s->be->reader_open(s->db, out);
    if (rc) {
        pthread_mutex_lock(&s->rmu);
        s->n_busy--;
        pthread_cond_signal(&s->rcv);
        pthread_mutex_unlock(&s->rmu);
    }
    return rc;
}

/* Gives a reader back; one in an unknown state (`keep` 0) is closed rather than reused. */
static void reader_give(struct kf_store *s, struct kf_store_conn *c, int keep)
{
    pthread_mutex_lock(&s->rmu);
    s->n_busy--;
    if (keep && s->n_idle < READERS_IDLE) {
        s->idle[s->n_idle++] = c;
        c = NULL;
    }
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
    if (c) s->be->reader_close(c);
}

enum kf_err kf_store_read(struct kf_store *store, struct kf_txn **out)
{
    struct kf_store_conn *c = NULL;
    struct kf_txn *txn = NULL;
    enum kf_err rc;

    if (!store || !out) return kf_fail(KF_E_INVALID, "kf_store_read needs a store and an output");
    *out = NULL;
    txn = calloc(1, sizeof(*txn));
    if (!txn) return kf_fail(KF_E_NOMEM, "out of memory beginning a read transaction");
    rc = reader_take(store, &c);
    if (rc) goto out;
    rc = store->be->read_begin(c);
    if (rc) goto out;
    txn->store = store;
    txn->conn = c;
    txn->write = 0;
    *out = txn;
    txn = NULL;
    c = NULL;
out:
    if (c) reader_give(store, c, 0);
    free(txn);
    return rc;
}

void kf_txn_end(struct kf_txn *txn)
{
    enum kf_err rc;
    if (!txn) return;
    /* A write transaction belongs to kf_store_write; ending it here is our own bug. */
    KF_ASSERT(!txn->write);
    rc = txn->store->be->read_end(txn->conn);
    reader_give(txn->store, txn->conn, rc == KF_OK);
    free(txn);
}

/* ---- writes: the queue and its committer thread ---- */

/*
 * One thread, started by the first write, owns the writer connection: it takes what is queued
 * (up to BATCH_MAX requests), runs it in one transaction, commits once, then calls the done
 * callbacks in submission order, and starts over. Submitters only take the queue lock, so an
 * event loop never waits for a callback or an fsync; while one batch commits, the next queues up
 * (group commit). kf_store_write is a submit that waits for its own done callback, so there is
 * one batching mechanism and never two transactions on the writer at once.
 */

/* A kf_store_write caller: its request, and where the waiting thread learns the outcome. */
struct sync_req {
    struct kf_store_req req; /* first: the committer finds the rest from it */
    pthread_cond_t cv;       /* signalled, under wmu, once done */
    int done;
    enum kf_err rc;
    char msg[ERRMSG_MAX]; /* the whole sentence: req.errmsg holds only its start */
};

static void sync_done_cb(struct kf_store_req *req, enum kf_err rc, void *done_arg)
{
    struct kf_store *s = done_arg;
    struct sync_req *w = (struct sync_req *)req;

    pthread_mutex_lock(&s->wmu);
    w->rc = rc;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    /* Once the lock is released the waiter may return, and `w` is gone: touch it no more. */
    pthread_mutex_unlock(&s->wmu);
}

static int is_sync(const struct kf_store_req *r)
{
    return r->done_cb == sync_done_cb;
}

/* Copies a sentence into `cap` bytes, cutting a longer one between characters, not inside one. */
static void copy_sentence(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap);
    if (n == cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Records why a request failed, for its done callback (and the whole of it for a waiter). */
static void req_fail(struct kf_store_req *r, const char *msg)
{
    copy_sentence(r->errmsg, sizeof(r->errmsg), msg);
    if (is_sync(r)) snprintf(((struct sync_req *)r)->msg, ERRMSG_MAX, "%s", msg);
}

/*
 * Runs a batch in one transaction, each callback under its own savepoint, and leaves each
 * request's result in `rcs`. A callback's error drops only that callback's changes; a failure of
 * the transaction itself (begin, savepoint, commit) drops the whole batch and is every request's
 * result.
 */
static void run_batch(struct kf_store *s, struct kf_store_req **batch, enum kf_err *rcs, size_t n,
                      uint64_t *ran, int *committed)
{
    const struct kf_store_backend *be = s->be;
    struct kf_txn txn = {.store = s, .conn = s->writer, .write = 1};
    char msg[ERRMSG_MAX];
    size_t i, kept = 0;
    enum kf_err rc;

    kf_err_clear();
    rc = be->write_begin(s->writer);
    if (rc) goto fail;
    for (i = 0; i < n; i++) {
        struct kf_store_req *r = batch[i];
        rc = be->savepoint(s->writer);
        if (rc) goto abort;
        kf_err_clear();
        rcs[i] = r->cb(&txn, r->arg);
        (*ran)++;
        if (rcs[i]) {
            /* A callback that failed without a sentence still gets one. */
            req_fail(r, kf_errlast() ? kf_errmsg() : kf_strerror(rcs[i]));
            rc = be->savepoint_rollback(s->writer);
        } else {
            rc = be->savepoint_release(s->writer);
            kept++;
        }
        if (rc) goto abort;
    }
    if (kept == 0) {
        /* Nothing to keep: no commit, and no fsync. */
        be->write_rollback(s->writer);
        return;
    }
    rc = be->write_commit(s->writer);
    if (rc) goto abort;
    *committed = 1;
    return;
abort:
    be->write_rollback(s->writer);
fail:
    snprintf(msg, sizeof(msg), "%s", kf_errmsg());
    for (i = 0; i < n; i++) {
        rcs[i] = rc;
        req_fail(batch[i], msg);
    }
}

/* hint_delay_us from now, for pthread_cond_timedwait on wcv. */
static struct timespec hint_deadline(const struct kf_store *s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)s->hint_delay_us * 1000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    return until;
}

/*
 * Before a batch starts, while fewer than BATCH_GOAL requests are queued and the hint says more
 * writers are on their way (more of them than are queued), wait for them, at most
 * hint_delay_us: a larger batch shares one commit. With nobody else coming there is no wait,
 * so a lone writer never pays for it. Called under wmu.
 */
static void wait_for_company(struct kf_store *s)
{
    struct timespec until = hint_deadline(s);
    while (s->n_queued < BATCH_GOAL && !s->closing && s->hint_fn(s->hint_arg) > s->n_queued)
        if (pthread_cond_timedwait(&s->wcv, &s->wmu, &until) != 0) break;
}

/*
 * While every queued request is lazy (nobody waits for them) and fewer than BATCH_GOAL are
 * queued, waits up to hint_delay_us for more: events arriving a few at a time then share one
 * commit instead of paying for one each. An eager request ends the wait at once. Called under
 * wmu.
 */
static void wait_while_lazy(struct kf_store *s)
{
    struct timespec until = hint_deadline(s);
    s->lazy_wait = 1;
    while (s->n_queued < BATCH_GOAL && !s->closing && s->n_eager == 0)
        if (pthread_cond_timedwait(&s->wcv, &s->wmu, &until) != 0) break;
    s->lazy_wait = 0;
}

static void *committer_main(void *arg)
{
    struct kf_store *s = arg;
    struct kf_store_req *batch[BATCH_MAX];
    enum kf_err rcs[BATCH_MAX];

    pthread_setname_np(pthread_self(), "kf-store"); /* for top -H, perf and gdb */
    pthread_mutex_lock(&s->wmu);
    for (;;) {
        uint64_t ran = 0;
        int committed = 0;
        size_t n = 0;

        while (!s->head && !s->closing)
            pthread_cond_wait(&s->wcv, &s->wmu);
        if (!s->head) break; /* closing, and everything accepted has been run */
        if (s->hint_fn) {
            if (s->n_eager == 0)
                wait_while_lazy(s);
            else
                wait_for_company(s);
        }
        while (s->head && n < BATCH_MAX) {
            struct kf_store_req *r = s->head;
            s->head = r->next;
            if (!is_sync(r)) {
                s->n_submitted--;
                if (r->lazy) s->n_lazy_submitted--;
            }
            if (!r->lazy) s->n_eager--;
            s->n_queued--;
            batch[n++] = r;
        }
        if (!s->head) s->tail = NULL;
        pthread_mutex_unlock(&s->wmu);

        run_batch(s, batch, rcs, n, &ran, &committed);

        /* Counted before anyone hears of the outcome, so a returned write is in the figures. */
        pthread_mutex_lock(&s->wmu);
        s->stats.writes += ran;
        s->stats.commits += (uint64_t)committed;
        pthread_mutex_unlock(&s->wmu);
        /*
         * In submission order, without the lock: a done callback may submit again. It may also
         * free its request, so each request is read only up to its own call.
         */
        for (size_t i = 0; i < n; i++)
            batch[i]->done_cb(batch[i], rcs[i], batch[i]->done_arg);
        pthread_mutex_lock(&s->wmu);
    }
    pthread_mutex_unlock(&s->wmu);
    return NULL;
}

/* Starts the committer; called under wmu. */
static enum kf_err start_committer(struct kf_store *s)
{
    sigset_t all, old;
    int e;

    /*
     * With every signal blocked, which the thread inherits: signals belong to the program's own
     * threads (keyfleetd's signal handling), never to the committer in the middle of a commit.
     */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&s->committer, NULL, committer_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e)
        return kf_fail(KF_E_INTERNAL, "cannot start the store's committer thread: %s", strerror(e));
    s->started = 1;
    return KF_OK;
}

void kf_store_commit_hint(struct kf_store *store, size_t (*fn)(void *arg), void *arg,
                          unsigned max_delay_us)
{
    pthread_mutex_lock(&store->wmu);
    store->hint_fn = max_delay_us ? fn : NULL;
    store->hint_arg = arg;
    store->hint_delay_us = max_delay_us > 100000 ? 100000 : max_delay_us;
    pthread_mutex_unlock(&store->wmu);
}

/*
 * Queues `r` behind what is queued; called under wmu. `bounded`: counts to KF_STORE_LAZY_MAX when
 * lazy, else to KF_STORE_QUEUE_MAX: two budgets, so that what nobody waits for (events) can never
 * take the room of what someone does (an enrollment).
 */
static enum kf_err enqueue(struct kf_store *s, struct kf_store_req *r, int bounded)
{
    enum kf_err rc;

    if (s->closing) return kf_fail(KF_E_INVALID, "the store is closing: it takes no more writes");
    if (bounded && r->lazy && s->n_lazy_submitted >= KF_STORE_LAZY_MAX)
        return kf_fail(KF_E_BUSY, "the store's queue for events is full (%d wait): dropped",
                       KF_STORE_LAZY_MAX);
    if (bounded && !r->lazy && s->n_submitted - s->n_lazy_submitted >= KF_STORE_QUEUE_MAX)
        return kf_fail(KF_E_BUSY,
                       "the store's write queue is full (%d requests wait for their commit): try "
                       "again shortly",
                       KF_STORE_QUEUE_MAX);
    if (!s->started) {
        rc = start_committer(s);
        if (rc) return rc;
    }
    r->errmsg[0] = '\0';
    r->next = NULL;
    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    if (bounded) s->n_submitted++;
    if (bounded && r->lazy) s->n_lazy_submitted++;
    if (!r->lazy) s->n_eager++;
    s->n_queued++;
    /* A lazy request that cannot end the committer's lazy wait need not wake it to say so. */
    if (!s->lazy_wait || !r->lazy || s->n_queued >= BATCH_GOAL) pthread_cond_signal(&s->wcv);
    return KF_OK;
}

enum kf_err kf_store_submit(struct kf_store *store, struct kf_store_req *req)
{
    enum kf_err rc;

    if (!store || !req || !req->cb || !req->done_cb)
        return kf_fail(KF_E_INVALID,
                       "kf_store_submit needs a store and a request with a callback and a done "
                       "callback");
    pthread_mutex_lock(&store->wmu);
    rc = enqueue(store, req, 1);
    pthread_mutex_unlock(&store->wmu);
    return rc;
}

enum kf_err kf_store_write(struct kf_store *store, kf_store_write_cb cb, void *arg)
{
    struct sync_req w;
    enum kf_err rc;

    if (!store || !cb) return kf_fail(KF_E_INVALID, "kf_store_write needs a store and a callback");
    memset(&w, 0, sizeof(w));
    w.req.cb = cb;
    w.req.arg = arg;
    w.req.done_cb = sync_done_cb;
    w.req.done_arg = store;
    if (pthread_cond_init(&w.cv, NULL))
        return kf_fail(KF_E_INTERNAL, "cannot set up a store write");

    pthread_mutex_lock(&store->wmu);
    if (store->started && pthread_equal(store->committer, pthread_self()))
        /* Waiting for our own batch to finish would wait forever. */
        rc = kf_fail(KF_E_INVALID,
                     "kf_store_write was called from inside a write callback or a done callback; "
                     "make the change through the callback's transaction, or submit it");
    else
        rc = enqueue(store, &w.req, 0);
    if (!rc)
        while (!w.done)
            pthread_cond_wait(&w.cv, &store->wmu);
    pthread_mutex_unlock(&store->wmu);
    pthread_cond_destroy(&w.cv);
    if (rc) return rc;
    if (w.rc) return kf_fail(w.rc, "%s", w.msg);
    return KF_OK;
}

/* ---- registry version ---- */

enum kf_err kf_txn_registry_version(struct kf_txn *txn, int64_t *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    return txn->store->be->registry_version(txn->conn, out);
}

/* ---- CAs ---- */

enum kf_err kf_txn_ca_insert(struct kf_txn *txn, const struct kf_ca_rec *r)
{
    enum kf_err rc = need_write(txn, r, "insert a CA");
    if (rc) return rc;
    rc = check_id("CA name", r->name, sizeof(r->name), 0);
    if (rc) return rc;
    rc = check_hex("CA serial", r->serial, sizeof(r->serial), 0, 0);
    if (rc) return rc;
    rc = check_text("CA subject", r->subject, TEXT_MAX, 0);
    if (rc) return rc;
    rc = check_text("CA certificate", r->cert_pem, PEM_MAX, 1);
    if (rc) return rc;
    rc = check_text("CA key URI", r->key_uri, TEXT_MAX, 0);
    if (rc) return rc;
    if (r->crl_number < 0)
        return kf_fail(KF_E_INVALID, "CA %s: the CRL number cannot be negative", r->name);
    return txn->store->be->ca_insert(txn->conn, r);
}

enum kf_err kf_txn_ca_get(struct kf_txn *txn, const char *name, struct kf_ca_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("CA name", name, sizeof(out->name), 0);
    if (rc) return rc;
    return txn->store->be->ca_get(txn->conn, name, out);
}

enum kf_err kf_txn_ca_next_crl_number(struct kf_txn *txn, const char *name, int64_t *out)
{
    enum kf_err rc = need_write(txn, out, "advance a CRL number");
    if (rc) return rc;
    rc = check_id("CA name", name, FIELD_CAP(struct kf_ca_rec, name), 0);
    if (rc) return rc;
    return txn->store->be->ca_next_crl_number(txn->conn, name, out);
}

/* ---- enrollments ---- */

/* Checks an enrollment and fills in its defaults into `copy` (strings stay borrowed). */
static enum kf_err enrollment_checked(const struct kf_enrollment_rec *e,
                                      struct kf_enrollment_rec *copy)
{
    static const char *const allocations[] = {"hashed", "static"};
    enum kf_err rc;

    rc = check_id("enrollment id", e->id, sizeof(e->id), 0);
    if (rc) return rc;
    if (!kf_store_enroll_kind_name((int)e->kind))
        return kf_fail(KF_E_INVALID, "enrollment %s has no kind (individual or group)", e->id);
    *copy = *e;
    copy->enabled = !!e->enabled;
    copy->verified = !!e->verified;
    if (!e->allocation[0]) snprintf(copy->allocation, sizeof(copy->allocation), "hashed");
    rc = check_one_of("allocation policy", copy->allocation, sizeof(copy->allocation), allocations,
                      KF_ARRAY_LEN(allocations));
    if (rc) return rc;
    rc = check_text("enrollment certificate", e->cert_pem, PEM_MAX, 0);
    if (rc) return rc;
    rc = check_text("enrollment public key", e->pubkey_pem, PEM_MAX, 0);
    if (rc) return rc;
    rc = check_hex("enrollment key fingerprint", e->key_fingerprint, sizeof(e->key_fingerprint),
                   KF_HASH_HEX - 1, 1);
    if (rc) return rc;
    rc = check_text("enrollment subject", e->subject, TEXT_MAX, 0);
    if (rc) return rc;
    rc = check_fixed("verification code", e->verification_code, sizeof(e->verification_code), 0);
    if (rc) return rc;
    rc = check_id("enrollment hub", e->hub, sizeof(e->hub), 1);
    if (rc) return rc;
    rc = check_text("enrollment networks", e->networks, TEXT_MAX, 0);
    if (rc) return rc;
    if (e->settings) {
        rc = check_json_object("enrollment settings", e->settings);
        if (rc) return rc;
    }
    if (e->kind == KF_ENROLL_GROUP && !e->cert_pem)
        return kf_fail(KF_E_INVALID, "group enrollment %s has no CA certificate", e->id);
    if (strcmp(copy->allocation, "static") == 0 && !e->hub[0])
        return kf_fail(KF_E_INVALID, "enrollment %s allocates statically but names no hub", e->id);
    return KF_OK;
}

/* ---- one name, one namespace ---- */

static enum kf_err name_free_for_device(struct kf_txn *txn, const char *id)
{
    struct kf_service_rec s;
    enum kf_err rc = txn->store->be->service_get(txn->conn, id, &s);
    if (rc == KF_OK)
        return kf_fail(KF_E_CONFLICT,
                       "%s is the name of a service; device ids and service names are never the "
                       "same",
                       id);
    if (rc != KF_E_NOT_FOUND) return rc;
    kf_err_clear();
    return KF_OK;
}

static enum kf_err name_free_for_service(struct kf_txn *txn, const char *name)
{
    struct kf_enrollment_rec e;
    struct kf_device_rec d;
    enum kf_err rc = txn->store->be->device_get(txn->conn, name, &d);
    if (rc == KF_OK)
        return kf_fail(KF_E_CONFLICT,
                       "%s is the id of a device; device ids and service names are never the same",
                       name);
    if (rc != KF_E_NOT_FOUND) return rc;
    memset(&e, 0, sizeof(e));
    rc = txn->store->be->enrollment_get(txn->conn, name, &e);
    if (rc == KF_OK) {
        int individual = e.kind == KF_ENROLL_INDIVIDUAL;
        kf_enrollment_clear(&e);
        if (individual)
            return kf_fail(KF_E_CONFLICT,
                           "%s is the registration id of an individual enrollment; device ids and "
                           "service names are never the same",
                           name);
    } else if (rc != KF_E_NOT_FOUND) {
        return rc;
    }
    kf_err_clear();
    return KF_OK;
}

enum kf_err kf_txn_name_free(struct kf_txn *txn, enum kf_namespace space, const char *name)
{
    enum kf_err rc = need_txn(txn, name);
    if (rc) return rc;
    rc = check_id(space == KF_NS_SERVICE ? "service name" : "device id", name, KF_ID_MAX + 1, 0);
    if (rc) return rc;
    return space == KF_NS_SERVICE ? name_free_for_service(txn, name)
                                  : name_free_for_device(txn, name);
}

enum kf_err kf_txn_enrollment_insert(struct kf_txn *txn, const struct kf_enrollment_rec *e)
{
    struct kf_enrollment_rec copy;
    enum kf_err rc = need_write(txn, e, "insert an enrollment");
    if (rc) return rc;
    rc = enrollment_checked(e, &copy);
    if (!rc && e->kind == KF_ENROLL_INDIVIDUAL) rc = name_free_for_device(txn, e->id);
    if (rc) return rc;
    return txn->store->be->enrollment_insert(txn->conn, &copy);
}

enum kf_err kf_txn_enrollment_get(struct kf_txn *txn, const char *id, struct kf_enrollment_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("enrollment id", id, sizeof(out->id), 0);
    if (rc) return rc;
    return txn->store->be->enrollment_get(txn->conn, id, out);
}

enum kf_err kf_txn_enrollment_update(struct kf_txn *txn, const struct kf_enrollment_rec *e)
{
    struct kf_enrollment_rec copy;
    enum kf_err rc = need_write(txn, e, "update an enrollment");
    if (rc) return rc;
    rc = enrollment_checked(e, &copy);
    if (rc) return rc;
    return txn->store->be->enrollment_update(txn->conn, &copy);
}

enum kf_err kf_txn_enrollment_delete(struct kf_txn *txn, const char *id)
{
    enum kf_err rc = need_write(txn, id, "delete an enrollment");
    if (rc) return rc;
    rc = check_id("enrollment id", id, KF_ID_MAX + 1, 0);
    if (rc) return rc;
    return txn->store->be->enrollment_delete(txn->conn, id);
}

enum kf_err kf_txn_enrollment_list(struct kf_txn *txn, int kind,
                                   enum kf_err (*cb)(const struct kf_enrollment_rec *e, void *arg),
                                   void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    if (kind != 0 && !kf_store_enroll_kind_name(kind))
        return kf_fail(KF_E_INVALID, "unknown enrollment kind %d", kind);
    return txn->store->be->enrollment_list(txn->conn, kind, cb, arg);
}

/* ---- devices ---- */

static enum kf_err device_checked(const struct kf_device_rec *d)
{
    enum kf_err rc = check_id("device id", d->id, sizeof(d->id), 0);
    if (rc) return rc;
    rc = check_id("device enrollment", d->enrollment, sizeof(d->enrollment), 1);
    if (rc) return rc;
    rc = check_id("device hub", d->hub, sizeof(d->hub), 1);
    if (rc) return rc;
    if (d->status < KF_DEVICE_ACTIVE || d->status > KF_DEVICE_REVOKED)
        return kf_fail(KF_E_INVALID, "device %s has an unknown status (%d)", d->id, (int)d->status);
    return KF_OK;
}

enum kf_err kf_txn_device_insert(struct kf_txn *txn, const struct kf_device_rec *d)
{
    enum kf_err rc = need_write(txn, d, "insert a device");
    if (rc) return rc;
    rc = device_checked(d);
    if (!rc) rc = name_free_for_device(txn, d->id);
    if (rc) return rc;
    return txn->store->be->device_insert(txn->conn, d);
}

enum kf_err kf_txn_device_get(struct kf_txn *txn, const char *id, struct kf_device_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("device id", id, sizeof(out->id), 0);
    if (rc) return rc;
    return txn->store->be->device_get(txn->conn, id, out);
}

enum kf_err kf_txn_device_update(struct kf_txn *txn, const struct kf_device_rec *d)
{
    enum kf_err rc = need_write(txn, d, "update a device");
    if (rc) return rc;
    rc = device_checked(d);
    if (rc) return rc;
    return txn->store->be->device_update(txn->conn, d);
}

static enum kf_err check_device_status_filter(int status)
{
    if (status != 0 && (status < KF_DEVICE_ACTIVE || status > KF_DEVICE_REVOKED))
        return kf_fail(KF_E_INVALID, "unknown device status %d", status);
    return KF_OK;
}

enum kf_err kf_txn_device_list(struct kf_txn *txn, int status, const char *enrollment,
                               enum kf_err (*cb)(const struct kf_device_rec *d, void *arg),
                               void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    rc = check_device_status_filter(status);
    if (rc) return rc;
    if (enrollment) {
        rc = check_id("enrollment id", enrollment, KF_ID_MAX + 1, 1);
        if (rc) return rc;
    }
    return txn->store->be->device_list(txn->conn, status, enrollment, cb, arg);
}

enum kf_err kf_txn_device_count(struct kf_txn *txn, int status, int64_t *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    rc = check_device_status_filter(status);
    if (rc) return rc;
    return txn->store->be->device_count(txn->conn, status, out);
}

/* ---- certificates ---- */

static enum kf_err check_serial(const char *s)
{
    return check_hex("certificate serial", s, KF_SERIAL_HEX_MAX, 0, 0);
}

static enum kf_err check_reason(int reason)
{
    if (!kf_crl_reason_name(reason))
        return kf_fail(KF_E_INVALID, "unknown revocation reason %d", reason);
    return KF_OK;
}

enum kf_err kf_txn_cert_insert(struct kf_txn *txn, const struct kf_cert_rec *r)
{
    const char *profiles[KF_PROFILE_SERVER + 1];
    enum kf_err rc = need_write(txn, r, "insert a certificate");

    if (rc) return rc;
    for (int p = 0; p <= KF_PROFILE_SERVER; p++)
        profiles[p] = kf_profile_name((enum kf_profile)p);
    rc = check_serial(r->serial);
    if (rc) return rc;
    rc = check_id("certificate device", r->device_id, sizeof(r->device_id), 1);
    if (rc) return rc;
    rc = check_id("certificate service", r->service, sizeof(r->service), 1);
    if (rc) return rc;
    if (r->device_id[0] && r->service[0])
        return kf_fail(KF_E_INVALID, "certificate %s cannot belong to a device and a service",
                       r->serial);
    rc = check_one_of("certificate profile", r->profile, sizeof(r->profile), profiles,
                      KF_ARRAY_LEN(profiles));
    if (rc) return rc;
    rc = check_id("certificate issuer", r->issuer, sizeof(r->issuer), 0);
    if (rc) return rc;
    rc = check_text("certificate subject", r->subject, TEXT_MAX, 0);
    if (rc) return rc;
    rc = check_hex("certificate fingerprint", r->fingerprint, sizeof(r->fingerprint),
                   KF_HASH_HEX - 1, 0);
    if (rc) return rc;
    rc = check_text("certificate", r->pem, PEM_MAX, 1);
    if (rc) return rc;
    rc = check_reason(r->reason);
    if (rc) return rc;
    if (r->not_after < r->not_before)
        return kf_fail(KF_E_INVALID, "certificate %s expires before it becomes valid", r->serial);
    if (r->status == KF_CERT_VALID) {
        if (r->revoked_at != 0 || r->reason != 0)
            return kf_fail(KF_E_INVALID, "certificate %s is valid but has a revocation", r->serial);
    } else if (r->status == KF_CERT_REVOKED) {
        if (r->revoked_at <= 0)
            return kf_fail(KF_E_INVALID, "certificate %s is revoked but has no revocation time",
                           r->serial);
    } else {
        return kf_fail(KF_E_INVALID, "certificate %s has an unknown status (%d)", r->serial,
                       (int)r->status);
    }
    return txn->store->be->cert_insert(txn->conn, r);
}

enum kf_err kf_txn_cert_get(struct kf_txn *txn, const char *serial, struct kf_cert_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_serial(serial);
    if (rc) return rc;
    return txn->store->be->cert_get(txn->conn, serial, out);
}

enum kf_err kf_txn_cert_revoke(struct kf_txn *txn, const char *serial, int64_t when, int reason)
{
    enum kf_err rc = need_write(txn, serial, "revoke a certificate");
    if (rc) return rc;
    rc = check_serial(serial);
    if (rc) return rc;
    rc = check_reason(reason);
    if (rc) return rc;
    /* 0 means "not revoked" in the record, so a revocation needs a real time. */
    if (when <= 0)
        return kf_fail(KF_E_INVALID, "certificate %s: the revocation time must be positive",
                       serial);
    return txn->store->be->cert_revoke(txn->conn, serial, when, reason);
}

enum kf_err kf_txn_cert_list(struct kf_txn *txn, const char *device_id, int status, int64_t limit,
                             enum kf_err (*cb)(const struct kf_cert_rec *r, void *arg), void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    if (device_id) {
        rc = check_id("device id", device_id, KF_ID_MAX + 1, 1);
        if (rc) return rc;
    }
    if (status != 0 && status != KF_CERT_VALID && status != KF_CERT_REVOKED)
        return kf_fail(KF_E_INVALID, "unknown certificate status %d", status);
    rc = check_limit(limit);
    if (rc) return rc;
    return txn->store->be->cert_list(txn->conn, device_id, status, limit, cb, arg);
}

enum kf_err kf_txn_cert_revoked_serials(struct kf_txn *txn, const char *issuer,
                                        enum kf_err (*cb)(const char *serial, void *arg), void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    rc = check_id("certificate issuer", issuer, FIELD_CAP(struct kf_cert_rec, issuer), 0);
    if (rc) return rc;
    return txn->store->be->cert_revoked_serials(txn->conn, issuer, cb, arg);
}

enum kf_err kf_txn_cert_revoked(struct kf_txn *txn, const char *issuer, int64_t now,
                                enum kf_err (*cb)(const struct kf_cert_rec *r, void *arg),
                                void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    rc = check_id("certificate issuer", issuer, FIELD_CAP(struct kf_cert_rec, issuer), 0);
    if (rc) return rc;
    return txn->store->be->cert_revoked(txn->conn, issuer, now, cb, arg);
}

/* ---- registrations ---- */

enum kf_err kf_txn_registration_put(struct kf_txn *txn, const struct kf_registration_rec *r)
{
    enum kf_err rc = need_write(txn, r, "record a registration");
    if (rc) return rc;
    rc = check_id("registration device", r->device_id, sizeof(r->device_id), 0);
    if (rc) return rc;
    rc = check_id("registration enrollment", r->enrollment, sizeof(r->enrollment), 1);
    if (rc) return rc;
    rc = check_id("registration hub", r->hub, sizeof(r->hub), 1);
    if (rc) return rc;
    rc = check_hex("registration certificate serial", r->cert_serial, sizeof(r->cert_serial), 0, 1);
    if (rc) return rc;
    rc = check_fixed("registration source address", r->source_ip, sizeof(r->source_ip), 0);
    if (rc) return rc;
    if (r->count < 0)
        return kf_fail(KF_E_INVALID, "registration of %s: the count cannot be negative",
                       r->device_id);
    return txn->store->be->registration_put(txn->conn, r);
}

enum kf_err kf_txn_registration_get(struct kf_txn *txn, const char *device_id,
                                    struct kf_registration_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("device id", device_id, sizeof(out->device_id), 0);
    if (rc) return rc;
    return txn->store->be->registration_get(txn->conn, device_id, out);
}

/* ---- approvals ---- */

const char *kf_approval_state_name(int state)
{
    switch (state) {
    case KF_APPROVAL_PENDING: return "pending";
    case KF_APPROVAL_APPROVED: return "approved";
    case KF_APPROVAL_REJECTED: return "rejected";
    }
    return NULL;
}

int kf_approval_state_parse(const char *s)
{
    for (int i = KF_APPROVAL_PENDING; i <= KF_APPROVAL_REJECTED; i++)
        if (strcmp(s, kf_approval_state_name(i)) == 0) return i;
    return -1;
}

static enum kf_err bad_state(int state)
{
    return kf_fail(KF_E_INVALID, "approval state %d is not one of pending, approved, rejected",
                   state);
}

enum kf_err kf_txn_approval_put(struct kf_txn *txn, const struct kf_approval_rec *a)
{
    enum kf_err rc = need_write(txn, a, "record an approval");
    if (rc) return rc;
    rc = check_id("approval device", a->device_id, sizeof(a->device_id), 0);
    if (!rc) rc = check_id("approval enrollment", a->enrollment, sizeof(a->enrollment), 0);
    if (!rc && !kf_approval_state_name((int)a->state)) rc = bad_state((int)a->state);
    if (!rc) rc = check_hex("approval fingerprint", a->fingerprint, sizeof(a->fingerprint), 64, 0);
    if (!rc) rc = check_fixed("approval source address", a->source_ip, sizeof(a->source_ip), 0);
    if (!rc) rc = check_fixed("approval decided by", a->decided_by, sizeof(a->decided_by), 0);
    if (!rc && a->requests < 1)
        rc = kf_fail(KF_E_INVALID, "an approval is asked for at least once");
    if (rc) return rc;
    return txn->store->be->approval_put(txn->conn, a);
}

enum kf_err kf_txn_approval_get(struct kf_txn *txn, const char *device_id,
                                struct kf_approval_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("device id", device_id, sizeof(out->device_id), 0);
    if (rc) return rc;
    return txn->store->be->approval_get(txn->conn, device_id, out);
}

enum kf_err kf_txn_approval_list(struct kf_txn *txn, int state,
                                 enum kf_err (*cb)(const struct kf_approval_rec *a, void *arg),
                                 void *arg)
{
    enum kf_err rc = need_txn(txn, cb);
    if (rc) return rc;
    if (state >= 0 && !kf_approval_state_name(state)) return bad_state(state);
    return txn->store->be->approval_list(txn->conn, state, cb, arg);
}

enum kf_err kf_txn_approval_count(struct kf_txn *txn, int state, int64_t *n)
{
    enum kf_err rc = need_txn(txn, n);
    if (rc) return rc;
    *n = 0;
    if (!kf_approval_state_name(state)) return bad_state(state);
    return txn->store->be->approval_count(txn->conn, state, n);
}

/* ---- the hub's retained messages ---- */

#define RETAINED_MSG_MAX (16u * 1024 * 1024)

enum kf_err kf_txn_hub_retained_put(struct kf_txn *txn, const uint8_t *topic, size_t topic_len,
                                    const uint8_t *msg, size_t msg_len)
{
    enum kf_err rc = need_write(txn, topic, "keep a retained message");
    if (rc) return rc;
    if (!msg || topic_len == 0 || topic_len > 65535 || msg_len == 0 || msg_len > RETAINED_MSG_MAX)
        return kf_fail(KF_E_INVALID, "a retained message needs a topic of 1 to 65535 bytes and "
                                     "a message of at most 16 MiB");
    return txn->store->be->retained_put(txn->conn, topic, topic_len, msg, msg_len, time(NULL));
}

enum kf_err kf_txn_hub_retained_delete(struct kf_txn *txn, const uint8_t *topic, size_t topic_len)
{
    enum kf_err rc = need_write(txn, topic, "clear a retained message");
    if (rc) return rc;
    if (topic_len == 0 || topic_len > 65535)
        return kf_fail(KF_E_INVALID, "a retained topic is 1 to 65535 bytes");
    return txn->store->be->retained_delete(txn->conn, topic, topic_len);
}

enum kf_err kf_txn_hub_retained_list(struct kf_txn *txn,
                                     enum kf_err (*cb)(const void *topic, size_t topic_len,
                                                       const void *msg, size_t msg_len, void *arg),
                                     void *arg)
{
    enum kf_err rc = need_txn(txn, cb);
    if (rc) return rc;
    return txn->store->be->retained_list(txn->conn, cb, arg);
}

/* ---- the hub's persistent sessions ---- */

static enum kf_err hub_state_checked(struct kf_txn *txn, const char *session, int kind,
                                     const char *what)
{
    enum kf_err rc = need_write(txn, session, what);
    if (rc) return rc;
    if (!session[0] || strlen(session) > 300 || kind < 0 || kind > 2)
        return kf_fail(KF_E_INVALID, "a hub session's state needs a session name of 1 to 300 "
                                     "bytes and a kind of 0 to 2");
    return KF_OK;
}

enum kf_err kf_txn_hub_state_put(struct kf_txn *txn, const char *session, int kind, int64_t key,
                                 const uint8_t *value, size_t len)
{
    enum kf_err rc = hub_state_checked(txn, session, kind, "keep a hub session's state");
    if (rc) return rc;
    if ((len && !value) || len > RETAINED_MSG_MAX)
        return kf_fail(KF_E_INVALID, "a hub session's state is at most 16 MiB");
    return txn->store->be->hub_state_put(txn->conn, session, kind, key, value, len);
}

enum kf_err kf_txn_hub_state_delete(struct kf_txn *txn, const char *session, int kind, int64_t key)
{
    enum kf_err rc = hub_state_checked(txn, session, kind, "delete a hub session's state");
    if (rc) return rc;
    return txn->store->be->hub_state_delete(txn->conn, session, kind, key);
}

enum kf_err kf_txn_hub_state_drop(struct kf_txn *txn, const char *session)
{
    enum kf_err rc = hub_state_checked(txn, session, 0, "end a hub session");
    if (rc) return rc;
    return txn->store->be->hub_state_drop(txn->conn, session);
}

enum kf_err kf_txn_hub_state_list(struct kf_txn *txn,
                                  enum kf_err (*cb)(const char *session, int kind, int64_t key,
                                                    const void *value, size_t len, void *arg),
                                  void *arg)
{
    enum kf_err rc = need_txn(txn, cb);
    if (rc) return rc;
    return txn->store->be->hub_state_list(txn->conn, cb, arg);
}

/* ---- hubs ---- */

static enum kf_err hub_checked(const struct kf_hub_rec *h, struct kf_hub_rec *copy)
{
    enum kf_err rc = check_id("hub name", h->name, sizeof(h->name), 0);
    if (rc) return rc;
    rc = check_fixed("hub endpoint", h->endpoint, sizeof(h->endpoint), 1);
    if (rc) return rc;
    if (h->weight < 0)
        return kf_fail(KF_E_INVALID, "hub %s: the weight cannot be negative", h->name);
    *copy = *h;
    copy->enabled = !!h->enabled;
    return KF_OK;
}

enum kf_err kf_txn_hub_insert(struct kf_txn *txn, const struct kf_hub_rec *h)
{
    struct kf_hub_rec copy;
    enum kf_err rc = need_write(txn, h, "insert a hub");
    if (rc) return rc;
    rc = hub_checked(h, &copy);
    if (rc) return rc;
    return txn->store->be->hub_insert(txn->conn, &copy);
}

enum kf_err kf_txn_hub_get(struct kf_txn *txn, const char *name, struct kf_hub_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("hub name", name, sizeof(out->name), 0);
    if (rc) return rc;
    return txn->store->be->hub_get(txn->conn, name, out);
}

enum kf_err kf_txn_hub_update(struct kf_txn *txn, const struct kf_hub_rec *h)
{
    struct kf_hub_rec copy;
    enum kf_err rc = need_write(txn, h, "update a hub");
    if (rc) return rc;
    rc = hub_checked(h, &copy);
    if (rc) return rc;
    return txn->store->be->hub_update(txn->conn, &copy);
}

enum kf_err kf_txn_hub_delete(struct kf_txn *txn, const char *name)
{
    enum kf_err rc = need_write(txn, name, "delete a hub");
    if (rc) return rc;
    rc = check_id("hub name", name, KF_ID_MAX + 1, 0);
    if (rc) return rc;
    return txn->store->be->hub_delete(txn->conn, name);
}

enum kf_err kf_txn_hub_list(struct kf_txn *txn,
                            enum kf_err (*cb)(const struct kf_hub_rec *h, void *arg), void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    return txn->store->be->hub_list(txn->conn, cb, arg);
}

enum kf_err kf_txn_cert_list_service(struct kf_txn *txn, const char *name,
                                     enum kf_err (*cb)(const struct kf_cert_rec *r, void *arg),
                                     void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (!rc) rc = check_id("service name", name, KF_ID_MAX + 1, 0);
    if (rc) return rc;
    return txn->store->be->cert_list_service(txn->conn, name, cb, arg);
}

/* ---- service identities ---- */

static enum kf_err service_checked(const struct kf_service_rec *s, struct kf_service_rec *copy)
{
    const char *roles[KF_ROLE_COUNT];
    enum kf_err rc = check_id("service name", s->name, sizeof(s->name), 0);
    if (rc) return rc;
    for (int r = 1; r <= KF_ROLE_COUNT; r++)
        roles[r - 1] = kf_role_name((enum kf_role)r);
    rc = check_one_of("service role", s->role, sizeof(s->role), roles, KF_ROLE_COUNT);
    if (rc) return rc;
    if (s->status != KF_SERVICE_ACTIVE && s->status != KF_SERVICE_REVOKED)
        return kf_fail(KF_E_INVALID, "service %s has an unknown status (%d)", s->name,
                       (int)s->status);
    *copy = *s;
    return KF_OK;
}

enum kf_err kf_txn_service_insert(struct kf_txn *txn, const struct kf_service_rec *s)
{
    struct kf_service_rec copy;
    enum kf_err rc = need_write(txn, s, "insert a service");
    if (!rc) rc = service_checked(s, &copy);
    if (!rc) rc = name_free_for_service(txn, s->name);
    if (rc) return rc;
    return txn->store->be->service_insert(txn->conn, &copy);
}

enum kf_err kf_txn_service_get(struct kf_txn *txn, const char *name, struct kf_service_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("service name", name, sizeof(out->name), 0);
    if (rc) return rc;
    return txn->store->be->service_get(txn->conn, name, out);
}

enum kf_err kf_txn_service_update(struct kf_txn *txn, const struct kf_service_rec *s)
{
    struct kf_service_rec copy;
    enum kf_err rc = need_write(txn, s, "update a service");
    if (!rc) rc = service_checked(s, &copy);
    if (rc) return rc;
    return txn->store->be->service_update(txn->conn, &copy);
}

enum kf_err kf_txn_service_list(struct kf_txn *txn,
                                enum kf_err (*cb)(const struct kf_service_rec *s, void *arg),
                                void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    return txn->store->be->service_list(txn->conn, cb, arg);
}

/* ---- security events ---- */

enum kf_err kf_txn_event_insert(struct kf_txn *txn, const struct kf_event_rec *e, int64_t *id)
{
    static const char *const severities[] = {"info", "warning", "critical"};
    static const char *const sources[] = {"server", "device"};
    char empty[] = "{}";
    struct kf_event_rec copy;
    enum kf_err rc = need_write(txn, e, "record an event");

    if (rc) return rc;
    rc = check_fixed("event type", e->type, sizeof(e->type), 1);
    if (rc) return rc;
    rc = check_one_of("event severity", e->severity, sizeof(e->severity), severities,
                      KF_ARRAY_LEN(severities));
    if (rc) return rc;
    rc = check_fixed("event device", e->device, sizeof(e->device), 0);
    if (rc) return rc;
    rc = check_fixed("event claimed identity", e->claimed, sizeof(e->claimed), 0);
    if (rc) return rc;
    rc = check_one_of("event source", e->source, sizeof(e->source), sources, KF_ARRAY_LEN(sources));
    if (rc) return rc;
    rc = check_fixed("event address", e->ip, sizeof(e->ip), 0);
    if (rc) return rc;
    if (e->detail) {
        rc = check_json_object("event detail", e->detail);
        if (rc) return rc;
    }
    copy = *e;
    if (!copy.detail) copy.detail = empty;
    return txn->store->be->event_insert(txn->conn, &copy, id);
}

enum kf_err kf_txn_event_prune(struct kf_txn *txn, int64_t before_ms, int64_t keep_rows,
                               int64_t limit, int64_t *deleted)
{
    int64_t n = 0;
    enum kf_err rc = need_write(txn, txn, "prune events");
    if (deleted) *deleted = 0;
    if (rc) return rc;
    if (before_ms < 0 || keep_rows < 0 || limit <= 0)
        return kf_fail(KF_E_INVALID, "pruning events needs a time or a row count >= 0 and a limit");
    rc = txn->store->be->event_prune(txn->conn, before_ms, keep_rows, limit, &n);
    if (deleted) *deleted = n;
    return rc;
}

enum kf_err kf_txn_event_list(struct kf_txn *txn, int64_t since_ms, const char *type,
                              const char *device, int64_t limit,
                              enum kf_err (*cb)(const struct kf_event_rec *e, void *arg), void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    if (type) {
        rc = check_fixed("event type", type, KF_EVENT_TYPE_MAX, 0);
        if (rc) return rc;
    }
    if (device) {
        rc = check_fixed("event device", device, KF_ID_MAX + 1, 0);
        if (rc) return rc;
    }
    rc = check_limit(limit);
    if (rc) return rc;
    return txn->store->be->event_list(txn->conn, since_ms, type, device, limit, cb, arg);
}

enum kf_err kf_txn_event_after(struct kf_txn *txn, int64_t after_id, int64_t limit,
                               enum kf_err (*cb)(const struct kf_event_rec *e, void *arg),
                               void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (!rc) rc = check_limit(limit);
    if (rc) return rc;
    return txn->store->be->event_after(txn->conn, after_id, limit, cb, arg);
}

/* ---- rollouts ---- */

void kf_rollout_rec_clear(struct kf_rollout_rec *r)
{
    if (!r) return;
    free(r->doc);
    memset(r, 0, sizeof(*r));
}

static enum kf_err rollout_checked(const struct kf_rollout_rec *r)
{
    static const char *const states[] = {"running", "paused", "aborted", "completed"};
    enum kf_err rc =
        check_one_of("rollout state", r->state, sizeof(r->state), states, KF_ARRAY_LEN(states));
    if (!rc) rc = check_fixed("rollout target", r->target, sizeof(r->target), 1);
    if (!rc) rc = check_fixed("rollout hardware", r->hardware, sizeof(r->hardware), 1);
    if (!rc && r->released < 0)
        rc = kf_fail(KF_E_INVALID, "a rollout cannot have offered a negative count");
    if (!rc) rc = check_text("rollout settings", r->doc, KF_ROLLOUT_DOC_MAX, 1);
    if (!rc) rc = check_json_object("rollout settings", r->doc);
    return rc;
}

enum kf_err kf_txn_rollout_insert(struct kf_txn *txn, const struct kf_rollout_rec *r, int64_t *id)
{
    enum kf_err rc = need_write(txn, r, "insert a rollout");
    if (!rc && !id) rc = need_txn(txn, id);
    if (!rc) rc = rollout_checked(r);
    if (rc) return rc;
    return txn->store->be->rollout_insert(txn->conn, r, id);
}

enum kf_err kf_txn_rollout_get(struct kf_txn *txn, int64_t id, struct kf_rollout_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    return txn->store->be->rollout_get(txn->conn, id, out);
}

enum kf_err kf_txn_rollout_update(struct kf_txn *txn, const struct kf_rollout_rec *r)
{
    enum kf_err rc = need_write(txn, r, "update a rollout");
    if (!rc) rc = rollout_checked(r);
    if (rc) return rc;
    return txn->store->be->rollout_update(txn->conn, r);
}

enum kf_err kf_txn_rollout_list(struct kf_txn *txn,
                                enum kf_err (*cb)(const struct kf_rollout_rec *r, void *arg),
                                void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    return txn->store->be->rollout_list(txn->conn, cb, arg);
}

enum kf_err kf_txn_rollout_device_put(struct kf_txn *txn, const struct kf_rollout_device_rec *d)
{
    enum kf_err rc = need_write(txn, d, "record a rollout's device");
    if (!rc) rc = check_id("rollout device", d->device, sizeof(d->device), 0);
    if (!rc) rc = check_fixed("rollout device state", d->state, sizeof(d->state), 1);
    if (!rc) rc = check_fixed("rollout device reason", d->reason, sizeof(d->reason), 0);
    if (!rc && d->ord < 0) rc = kf_fail(KF_E_INVALID, "a rollout's device order is negative");
    if (rc) return rc;
    return txn->store->be->rollout_device_put(txn->conn, d);
}

enum kf_err kf_txn_rollout_device_list(struct kf_txn *txn, int64_t rollout,
                                       enum kf_err (*cb)(const struct kf_rollout_device_rec *d,
                                                         void *arg),
                                       void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    return txn->store->be->rollout_device_list(txn->conn, rollout, cb, arg);
}

enum kf_err kf_txn_rollout_assigned(struct kf_txn *txn, const char *device, const char *hardware,
                                    struct kf_rollout_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("device id", device, KF_ID_MAX + 1, 0);
    if (!rc) rc = check_fixed("hardware", hardware ? hardware : "", sizeof(out->hardware), 0);
    if (rc) return rc;
    return txn->store->be->rollout_assigned(txn->conn, device, hardware ? hardware : "", out);
}

enum kf_err kf_txn_rollout_device_find(struct kf_txn *txn, const char *device, int64_t version,
                                       const char *target, struct kf_rollout_device_rec *out)
{
    enum kf_err rc = need_txn(txn, out);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    rc = check_id("device id", device, KF_ID_MAX + 1, 0);
    if (!rc) rc = check_fixed("target", target ? target : "", KF_ROLLOUT_TARGET_MAX, 0);
    if (rc) return rc;
    return txn->store->be->rollout_device_find(txn->conn, device, version, target ? target : "",
                                               out);
}

/* The counters a caller may keep (the registry version is the triggers'). */
static enum kf_err check_counter(const char *key)
{
    if (!key || strcmp(key, "rollout_cursor") != 0)
        return kf_fail(KF_E_INVALID, "no counter named \"%s\"", key ? key : "");
    return KF_OK;
}

enum kf_err kf_txn_counter_get(struct kf_txn *txn, const char *key, int64_t *value)
{
    enum kf_err rc = need_txn(txn, value);
    if (!rc) rc = check_counter(key);
    if (rc) return rc;
    return txn->store->be->meta_get(txn->conn, key, value);
}

enum kf_err kf_txn_counter_put(struct kf_txn *txn, const char *key, int64_t value)
{
    enum kf_err rc = need_write(txn, key, "write a counter");
    if (!rc) rc = check_counter(key);
    if (rc) return rc;
    return txn->store->be->meta_put(txn->conn, key, value);
}

/* ---- audit log ---- */

/* Adds one field to the hash as an 8-byte big-endian length and the bytes. */
static int hash_field(EVP_MD_CTX *ctx, const void *p, size_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return EVP_DigestUpdate(ctx, len, sizeof(len)) && EVP_DigestUpdate(ctx, p, n);
}

static int hash_int(EVP_MD_CTX *ctx, int64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
    return hash_field(ctx, b, sizeof(b));
}

static int hash_str(EVP_MD_CTX *ctx, const char *s, size_t cap)
{
    return hash_field(ctx, s, strnlen(s, cap));
}

void kf_audit_hash(const struct kf_audit_rec *r, char *hex)
{
    /* The tag keeps these hashes from ever being confused with hashes made for anything else. */
    static const char tag[] = "keyfleet-audit-v1";
    static const char digits[] = "0123456789abcdef";
    const char *detail = r->detail ? r->detail : "{}";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    hex[0] = '\0';
    ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
         hash_field(ctx, tag, sizeof(tag) - 1) && hash_int(ctx, r->seq) &&
         hash_int(ctx, r->time_ms) && hash_str(ctx, r->actor, sizeof(r->actor)) &&
         hash_str(ctx, r->action, sizeof(r->action)) &&
         hash_str(ctx, r->object, sizeof(r->object)) && hash_field(ctx, detail, strlen(detail)) &&
         hash_str(ctx, r->prev_hash, sizeof(r->prev_hash)) && EVP_DigestFinal_ex(ctx, md, &mdlen) &&
         mdlen == 32;
    EVP_MD_CTX_free(ctx);
    /* Never leave OpenSSL's queue for someone else to trip over; the empty hex is the failure. */
    kf_ossl_clear();
    if (!ok) return;
    for (unsigned int i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * mdlen] = '\0';
}

static void zero_hash(char *hex)
{
    memset(hex, '0', KF_HASH_HEX - 1);
    hex[KF_HASH_HEX - 1] = '\0';
}

/* Copies a bounded string argument into a fixed field. */
static enum kf_err copy_field(const char *what, char *dst, size_t cap, const char *src)
{
    size_t n;
    if (!src || !*src) return kf_fail(KF_E_INVALID, "the audit record has no %s", what);
    n = strnlen(src, cap);
    if (n >= cap)
        return kf_fail(KF_E_INVALID, "the audit %s is longer than %zu characters", what, cap - 1);
    memcpy(dst, src, n + 1);
    return KF_OK;
}

enum kf_err kf_txn_audit_append(struct kf_txn *txn, const char *actor, const char *action,
                                const char *object, const char *detail_json)
{
    const char *detail = detail_json ? detail_json : "{}";
    struct kf_audit_rec r;
    int64_t last = 0;
    enum kf_err rc;

    memset(&r, 0, sizeof(r));
    rc = need_write(txn, txn, "append to the audit log");
    if (rc) goto out;
    rc = copy_field("actor", r.actor, sizeof(r.actor), actor);
    if (rc) goto out;
    rc = copy_field("action", r.action, sizeof(r.action), action);
    if (rc) goto out;
    rc = copy_field("object", r.object, sizeof(r.object), object);
    if (rc) goto out;
    rc = check_json_object("audit detail", detail);
    if (rc) goto out;
    r.detail = strdup(detail);
    if (!r.detail) {
        rc = kf_fail(KF_E_NOMEM, "out of memory appending to the audit log");
        goto out;
    }
    /*
     * The last record is read inside this write transaction, which holds the store's write lock:
     * appends from other processes, and earlier appends of this batch, are all seen.
     */
    rc = txn->store->be->audit_last(txn->conn, &last, r.prev_hash);
    if (rc == KF_E_NOT_FOUND) {
        last = 0;
        zero_hash(r.prev_hash);
        rc = KF_OK;
    }
    if (rc) goto out;
    if (!r.prev_hash[0]) {
        /* Only an edit of the file leaves a hash that does not fit: do not build on it. */
        rc = kf_fail(KF_E_TAMPERED,
                     "audit record %" PRId64 " has a malformed hash, so the log cannot be "
                     "extended: run keyfleet audit verify",
                     last);
        goto out;
    }
    if (last == INT64_MAX) {
        rc = kf_fail(KF_E_STORE, "the audit log is full");
        goto out;
    }
    r.seq = last + 1;
    r.time_ms = now_ms();
    kf_audit_hash(&r, r.hash);
    if (!r.hash[0]) {
        rc = kf_fail(KF_E_CRYPTO, "cannot hash audit record %" PRId64, r.seq);
        goto out;
    }
    rc = txn->store->be->audit_insert(txn->conn, &r);
out:
    kf_audit_rec_clear(&r);
    return rc;
}

enum kf_err kf_txn_audit_list(struct kf_txn *txn, int64_t since_ms,
                              enum kf_err (*cb)(const struct kf_audit_rec *r, void *arg), void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    return txn->store->be->audit_list(txn->conn, since_ms, cb, arg);
}

enum kf_err kf_txn_audit_head(struct kf_txn *txn, int64_t *seq, char *hash)
{
    enum kf_err rc = need_txn(txn, seq);
    if (rc) return rc;
    *seq = 0;
    hash[0] = '\0';
    rc = txn->store->be->audit_last(txn->conn, seq, hash);
    if (rc == KF_E_NOT_FOUND) {
        *seq = 0;
        hash[0] = '\0';
        kf_err_clear();
        return KF_OK;
    }
    return rc;
}

enum kf_err kf_txn_checkpoint_insert(struct kf_txn *txn, const struct kf_checkpoint_rec *cp)
{
    enum kf_err rc = need_write(txn, cp, "record an audit checkpoint");
    if (rc) return rc;
    if (cp->seq < 1 || strnlen(cp->head, KF_HASH_HEX) != KF_HASH_HEX - 1 ||
        strspn(cp->head, "0123456789abcdef") != KF_HASH_HEX - 1)
        return kf_fail(KF_E_INVALID, "an audit checkpoint needs a seq >= 1 and a SHA-256 head");
    rc = check_fixed("checkpoint signer", cp->signer, sizeof(cp->signer), 1);
    if (!rc) rc = check_text("checkpoint signature", cp->signature, 4096, 1);
    if (rc) return rc;
    return txn->store->be->checkpoint_insert(txn->conn, cp);
}

enum kf_err kf_txn_checkpoint_list(struct kf_txn *txn,
                                   enum kf_err (*cb)(const struct kf_checkpoint_rec *cp, void *arg),
                                   void *arg)
{
    enum kf_err rc = need_txn(txn, (const void *)cb);
    if (rc) return rc;
    return txn->store->be->checkpoint_list(txn->conn, cb, arg);
}

struct verify_walk {
    const char *expected_head; /* NULL: none */
    int head_seen;
    int64_t records;
    int64_t prev_seq;            /* 0 before the first record */
    char prev_hash[KF_HASH_HEX]; /* stored hash of the record before */
    enum kf_audit_fault fault;
    int64_t seq;            /* where the fault is */
    int64_t gap_to;         /* DELETED: the seq found instead */
    char link[KF_HASH_HEX]; /* BROKEN candidate: the link that did not match */
    enum kf_err error;      /* a failure that is not a fault (no memory, crypto) */
};

/* Checks one record: its seq follows on, then its link, then its contents. */
static enum kf_err verify_cb(const struct kf_audit_rec *r, void *arg)
{
    struct verify_walk *w = arg;
    char want[KF_HASH_HEX], got[KF_HASH_HEX];

    w->records++;
    if (r->seq != w->prev_seq + 1) {
        if (r->seq > w->prev_seq + 1) {
            w->fault = KF_AUDIT_DELETED;
            w->seq = w->prev_seq + 1;
            w->gap_to = r->seq;
        } else {
            /* Only a seq below 1 can get here (seq is unique and ascending): not ours. */
            w->fault = KF_AUDIT_ALTERED;
            w->seq = r->seq;
        }
        return KF_E_TAMPERED;
    }
    if (w->prev_seq == 0)
        zero_hash(want);
    else
        memcpy(want, w->prev_hash, sizeof(want));
    if (strcmp(r->prev_hash, want) != 0) {
        /* REORDERED or BROKEN: told apart after the walk, by looking the link up. */
        w->fault = KF_AUDIT_BROKEN;
        w->seq = r->seq;
        memcpy(w->link, r->prev_hash, sizeof(w->link));
        return KF_E_TAMPERED;
    }
    kf_audit_hash(r, got);
    if (!got[0]) {
        w->error = kf_fail(KF_E_CRYPTO, "cannot hash audit record %" PRId64, r->seq);
        return w->error;
    }
    if (strcmp(got, r->hash) != 0) {
        w->fault = KF_AUDIT_ALTERED;
        w->seq = r->seq;
        return KF_E_TAMPERED;
    }
    if (w->expected_head && strcmp(r->hash, w->expected_head) == 0) w->head_seen = 1;
    w->prev_seq = r->seq;
    memcpy(w->prev_hash, r->hash, sizeof(w->prev_hash));
    return KF_OK;
}

enum kf_err kf_txn_audit_verify(struct kf_txn *txn, const char *expected_head,
                                struct kf_audit_verdict *out)
{
    const struct kf_store_backend *be;
    struct verify_walk w;
    char head[KF_HASH_HEX];
    int64_t other = 0, last = 0;
    enum kf_err rc = need_txn(txn, out);

    if (rc) return rc;
    be = txn->store->be;
    memset(out, 0, sizeof(*out));
    memset(&w, 0, sizeof(w));
    if (expected_head && *expected_head) {
        /* Accept the hash as an operator may paste it, in either case. */
        if (strnlen(expected_head, KF_HASH_HEX) != KF_HASH_HEX - 1 ||
            strspn(expected_head, "0123456789abcdefABCDEF") != KF_HASH_HEX - 1)
            return kf_fail(KF_E_INVALID,
                           "the expected head is not a SHA-256 hash: it must be %d hex digits",
                           KF_HASH_HEX - 1);
        for (int i = 0; i < KF_HASH_HEX; i++)
            head[i] = (char)(expected_head[i] >= 'A' && expected_head[i] <= 'F'
                                 ? expected_head[i] - 'A' + 'a'
                                 : expected_head[i]);
        w.expected_head = head;
    }

    rc = be->audit_list(txn->conn, INT64_MIN, verify_cb, &w);
    if (rc == KF_E_TAMPERED && w.fault != KF_AUDIT_INTACT) rc = KF_OK;
    if (rc) return rc;
    out->records = w.records;

    if (w.fault == KF_AUDIT_BROKEN) {
        /* A link to some other record of the log means records were moved, not replaced. */
        rc = be->audit_find_hash(txn->conn, w.link, w.seq, &other);
        if (rc == KF_OK)
            w.fault = KF_AUDIT_REORDERED;
        else if (rc != KF_E_NOT_FOUND)
            return rc;
    } else if (w.fault == KF_AUDIT_INTACT && w.expected_head && !w.head_seen) {
        w.fault = KF_AUDIT_HEAD;
        w.seq = w.prev_seq + 1;
    }

    /* The head is the last record's stored hash, wherever the walk stopped. */
    if (w.fault == KF_AUDIT_INTACT) {
        if (w.records > 0) memcpy(out->head, w.prev_hash, sizeof(out->head));
    } else {
        rc = be->audit_last(txn->conn, &last, out->head);
        if (rc == KF_E_NOT_FOUND)
            out->head[0] = '\0';
        else if (rc)
            return rc;
    }

    out->fault = w.fault;
    out->seq = w.fault == KF_AUDIT_INTACT ? 0 : w.seq;
    switch (w.fault) {
    case KF_AUDIT_INTACT:
        if (w.records == 0)
            snprintf(out->message, sizeof(out->message), "the audit log is empty");
        else
            snprintf(out->message, sizeof(out->message),
                     "the audit log is intact: %" PRId64 " records, head %s", w.records, out->head);
        return KF_OK;
    case KF_AUDIT_DELETED:
        if (w.seq == 1)
            snprintf(out->message, sizeof(out->message),
                     "record 1 was deleted: the log starts at record %" PRId64, w.gap_to);
        else
            snprintf(out->message, sizeof(out->message),
                     "record %" PRId64 " was deleted: the log jumps from record %" PRId64
                     " to record %" PRId64,
                     w.seq, w.seq - 1, w.gap_to);
        break;
    case KF_AUDIT_REORDERED:
        snprintf(out->message, sizeof(out->message),
                 "record %" PRId64 " is out of order: it links to record %" PRId64
                 " instead of the record before it",
                 w.seq, other);
        break;
    case KF_AUDIT_BROKEN:
        snprintf(out->message, sizeof(out->message),
                 "record %" PRId64 " is broken off: its link matches no record, so the record "
                 "before it was replaced",
                 w.seq);
        break;
    case KF_AUDIT_ALTERED:
        snprintf(out->message, sizeof(out->message),
                 "record %" PRId64 " was altered: its contents no longer match its hash", w.seq);
        break;
    case KF_AUDIT_HEAD:
        snprintf(out->message, sizeof(out->message),
                 "the log was cut off: head %s is gone (the log now ends at record %" PRId64 ")",
                 w.expected_head, w.seq - 1);
        break;
    case KF_AUDIT_REWRITTEN:
    case KF_AUDIT_FORGED: break; /* checkpoints' faults: checkpoint.c finds them */
    }
    return kf_fail(KF_E_TAMPERED, "%s", out->message);
}
