/*
 * checkpoint: signed checkpoints of the audit chain's head, on a real deployment: made once per
 * head, checked with the issuing CA's certificate, refused when signed by another key, and what
 * they catch (a rewritten record, a log cut off under one).
 */
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "server/ca/checkpoint.h"
#include "testdeploy.h"

static enum kf_err append_cb(struct kf_txn *t, void *a)
{
    return kf_txn_audit_append(t, KF_TEST_ACTOR, "test.thing", (const char *)a, "{}");
}

static enum kf_err verify(struct kf_deploy *d, const struct kf_cert *issuer,
                          struct kf_checkpoint_verdict *v)
{
    struct kf_txn *t = NULL;
    enum kf_err rc = kf_store_read(d->store, &t);
    if (!rc) rc = kf_checkpoint_verify(t, issuer, v);
    kf_txn_end(t);
    return rc;
}

static void sql(struct kf_deploy *d, const char *q)
{
    sqlite3 *db = NULL;
    char path[1100];
    snprintf(path, sizeof(path), "%s/keyfleet.db", d->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, q, NULL, NULL, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(db));
    sqlite3_close(db);
}

static void test_make_and_verify(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("cp");
    struct kf_checkpoint_verdict v;
    struct kf_signer *signer;
    struct kf_cert *other = NULL;
    int made = -1;
    (void)state;

    KF_OK_OR_FAIL(kf_deploy_issuer(d, &signer));
    /* init made the first one; nothing moved since */
    KF_OK_OR_FAIL(kf_checkpoint_make(d->store, signer, &made));
    assert_int_equal(made, 0);
    KF_OK_OR_FAIL(kf_store_write(d->store, append_cb, "thing:1"));
    KF_OK_OR_FAIL(verify(d, kf_signer_cert(signer), &v));
    assert_int_equal(v.uncovered, 1);
    KF_OK_OR_FAIL(kf_checkpoint_make(d->store, signer, &made));
    assert_int_equal(made, 1);
    KF_OK_OR_FAIL(verify(d, kf_signer_cert(signer), &v));
    assert_int_equal(v.uncovered, 0);
    assert_int_equal(v.checkpoints, 2);

    /* checked with another CA's key, the newest is forged */
    KF_OK_OR_FAIL(kf_cert_load_file(kf_test_path("cp/ca/root.crt"), &other));
    KF_EXPECT_ERR(KF_E_TAMPERED, verify(d, other, &v));
    assert_int_equal(v.fault, KF_AUDIT_FORGED);
    KF_EXPECT_MSG("does not verify with the issuing CA's key");

    /* a record rewritten, and the chain recomputed: the checkpoint no longer agrees */
    sql(d, "DROP TRIGGER audit_no_update; UPDATE audit SET hash = 'ff' || substr(hash, 3) "
           "WHERE seq = (SELECT max(seq) FROM audit)");
    KF_EXPECT_ERR(KF_E_TAMPERED, verify(d, kf_signer_cert(signer), &v));
    assert_int_equal(v.fault, KF_AUDIT_REWRITTEN);
    KF_EXPECT_MSG("the log was rewritten");

    /* records gone from under the newest checkpoint: cut off */
    sql(d,
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)");
    KF_EXPECT_ERR(KF_E_TAMPERED, verify(d, kf_signer_cert(signer), &v));
    assert_int_equal(v.fault, KF_AUDIT_HEAD);
    KF_EXPECT_MSG("cut off");
    kf_cert_free(other);
    kf_deploy_close(d);
}

/* The signer writes the statement itself, and checks the fields it is given. */
static void test_statement(void **state)
{
    struct kf_buf b;
    (void)state;
    kf_buf_init(&b, 512);
    KF_OK_OR_FAIL(kf_signer_checkpoint_statement(
        7, "00000000000000000000000000000000000000000000000000000000000000ab", 1700, &b));
    assert_string_equal(kf_buf_str(&b),
                        "keyfleet audit checkpoint v1\nseq 7\n"
                        "head 00000000000000000000000000000000000000000000000000000000000000ab\n"
                        "time 1700\n");
    KF_EXPECT_ERR(KF_E_INVALID, kf_signer_checkpoint_statement(0, "ab", 1, &b));
    KF_EXPECT_ERR(
        KF_E_INVALID,
        kf_signer_checkpoint_statement(
            1, "AB000000000000000000000000000000000000000000000000000000000000ab", 1, &b));
    kf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statement),
        cmocka_unit_test(test_make_and_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
