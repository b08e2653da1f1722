/*
 * storetest: what the store's three test programs share: store.c and audit.c (the conformance
 * suite, on kf_test_store_url()) and sqlite.c (the SQLite back end's own). Opening a store and
 * reading from it, failing the test on error; the hub and device records they write and the write
 * callbacks that write them; the registry version; and the audit log appended to, read back and
 * verified. Everything goes through the store's API alone, so it serves every back end. Linked
 * into test_store, test_audit and test_store_sqlite only.
 */
#ifndef KF_TESTS_STORETEST_H
#define KF_TESTS_STORETEST_H

#include <inttypes.h>
#include <stdint.h>

#include "server/store/store.h"
#include "testutil.h" /* KF_ST_EXPECT_BUMP uses its KF_OK_OR_FAIL and cmocka's fail_msg */

/*
 * Opens the store at `url` (a store URL or, for SQLite, a bare path; borrowed) with `flags`
 * (KF_STORE_*), failing the test on error. Returned owned (kf_store_close).
 */
struct kf_store *kf_st_open(const char *url, int flags);

/* Begins a read transaction on `s`, failing the test on error. Returned owned (kf_txn_end). */
struct kf_txn *kf_st_read(struct kf_store *s);

/* ---- records and write callbacks ---- */

/*
 * A hub named `name` (copied): endpoint NAME.example.net:8883, weight 10, enabled, created
 * 1700000000. Returned by value; it points at nothing.
 */
struct kf_hub_rec kf_st_hub(const char *name);

/*
 * A device `id` of enrollment `enroll` ("" for none; both copied) with status `st`, created and
 * updated 1700000000, on no hub. Returned by value; it points at nothing.
 */
struct kf_device_rec kf_st_device(const char *id, const char *enroll, enum kf_device_status st);

/*
 * Write callbacks for kf_store_write: `a` is the record (struct kf_hub_rec or struct kf_device_rec,
 * borrowed for the call). Return what the kf_txn_* call returns.
 */
enum kf_err kf_st_hub_insert_cb(struct kf_txn *t, void *a);
enum kf_err kf_st_device_insert_cb(struct kf_txn *t, void *a);
enum kf_err kf_st_device_update_cb(struct kf_txn *t, void *a);

/* ---- the registry version ---- */

/* The registry version of `s`, read in a read transaction of its own (the test fails on error). */
int64_t kf_st_registry_version(struct kf_store *s);

/*
 * Runs the write `expr` (an enum kf_err expression that must return KF_OK) and fails the test
 * unless it moved the registry version of store `s` by exactly `by`. A macro, not a function, so
 * that the message names `expr` as written and the failure is reported at the test's own line.
 */
#define KF_ST_EXPECT_BUMP(s, by, expr)                                                           \
    do {                                                                                         \
        int64_t before_ = kf_st_registry_version(s), moved_;                                     \
        KF_OK_OR_FAIL(expr);                                                                     \
        moved_ = kf_st_registry_version(s) - before_;                                            \
        if (moved_ != (by))                                                                      \
            fail_msg("%s moved the registry version by %" PRId64 ", expected %d", #expr, moved_, \
                     (by));                                                                      \
    } while (0)

/* ---- the audit log ---- */

/* One audit record to append; the strings are borrowed (detail NULL: the empty object). */
struct kf_st_entry {
    const char *actor, *action, *object, *detail;
};

/* `n` entries (borrowed) to append in one write transaction: kf_st_append_cb's argument. */
struct kf_st_batch {
    const struct kf_st_entry *e;
    int n;
};

/*
 * Write callback for kf_store_write: appends the entries of the struct kf_st_batch `a` (borrowed)
 * in order, stopping at the first error, which it returns.
 */
enum kf_err kf_st_append_cb(struct kf_txn *t, void *a);

/* Appends one record in a write transaction of its own (the test fails on error). */
void kf_st_append(struct kf_store *s, const char *actor, const char *action, const char *object,
                  const char *detail);

/* Appends records 1..n with distinct contents, by operator:alice, one transaction each. */
void kf_st_append_n(struct kf_store *s, int n);

/*
 * The log as kf_txn_audit_list gives it, copied out of the listing (the records there are
 * borrowed): each detail is owned, so a log that was read must be freed with kf_st_log_free.
 */
struct kf_st_log {
    struct kf_audit_rec r[512];
    int n;
};

/*
 * Reads into `l` (emptied first; what it held is not freed) the records of `s` from `since`
 * (ms, INT64_MIN: all) on, failing the test on error or if there are more than 512.
 */
void kf_st_log_read(struct kf_store *s, int64_t since, struct kf_st_log *l);

/* Frees what kf_st_log_read copied and empties `l`. */
void kf_st_log_free(struct kf_st_log *l);

/*
 * Verifies the audit chain of `s` against the expected head `head` (NULL: none) in a read
 * transaction of its own, filling `v`. Returns what kf_txn_audit_verify returns; failing to begin
 * the transaction fails the test.
 */
enum kf_err kf_st_verify(struct kf_store *s, const char *head, struct kf_audit_verdict *v);

#endif
