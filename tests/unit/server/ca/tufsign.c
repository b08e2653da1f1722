/*
 * tufsign: the online keys sign only what they are for. A timestamp key refuses snapshot or
 * targets metadata, an expiry beyond the role's lifetime, in the past or in a form clients
 * refuse, a version other than the next one (a jump would freeze devices), meta naming anything
 * but the snapshot (or, for the snapshot key, the targets) or a version above the published one;
 * what it signs verifies under a root that names it (kf_tuf_verify_role), ed25519 and P-256.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/pki_key.h"
#include "server/ca/tufsign.h"

#define NOW ((long)time(NULL))

static struct kf_tuf_signer *open_new(enum kf_tuf_role role, enum kf_key_type type,
                                      const char *name)
{
    struct kf_key *k = NULL;
    struct kf_tuf_signer *s = NULL;
    const char *path = kf_test_path(name);
    KF_OK_OR_FAIL(kf_key_generate(type, &k));
    KF_OK_OR_FAIL(kf_key_save(k, path, NULL));
    kf_key_free(k);
    KF_OK_OR_FAIL(kf_tuf_signer_open(role, path, &s));
    return s;
}

/* Metadata of `type`, expiring `days` from NOW, with meta entry `meta` (version 3). */
static json_t *doc_of(const char *type, int64_t version, long days, const char *meta)
{
    char when[32];
    kf_tuf_time(NOW + days * 86400, when, sizeof(when));
    return json_pack("{s:{s:s, s:s, s:I, s:s, s:{s:{s:i}}}, s:[]}", "signed", "_type", type,
                     "spec_version", KF_TUF_SPEC_VERSION, "version", (json_int_t)version, "expires",
                     when, "meta", meta, "version", 3, "signatures");
}

/* A root naming `s`'s key for `role` (and for every other role, which do not matter here). */
static void verify(struct kf_tuf_signer *s, enum kf_tuf_role role, json_t *doc)
{
    struct kf_buf rb, db;
    json_t *root;
    const char *id = kf_tuf_signer_keyid(s);
    char when[32];
    int64_t v = 0;
    kf_tuf_time(NOW + 365 * 86400L, when, sizeof(when));
    root = json_pack("{s:{s:s, s:s, s:i, s:s, s:b, s:{s:O}, s:{s:{s:[s], s:i}, s:{s:[s], s:i}, "
                     "s:{s:[s], s:i}, s:{s:[s], s:i}}}, s:[]}",
                     "signed", "_type", "root", "spec_version", KF_TUF_SPEC_VERSION, "version", 1,
                     "expires", when, "consistent_snapshot", 1, "keys", id, kf_tuf_signer_key(s),
                     "roles", "root", "keyids", id, "threshold", 1, "targets", "keyids", id,
                     "threshold", 1, "snapshot", "keyids", id, "threshold", 1, "timestamp",
                     "keyids", id, "threshold", 1, "signatures");
    kf_buf_init(&rb, 1 << 20);
    kf_buf_init(&db, 1 << 20);
    KF_OK_OR_FAIL(kf_tuf_text(root, &rb));
    KF_OK_OR_FAIL(kf_tuf_text(doc, &db));
    assert_int_equal(kf_tuf_verify_role(rb.data, rb.len, role, db.data, db.len, &v), KF_TUF_OK);
    assert_int_equal(v, 7);
    kf_buf_free(&rb);
    kf_buf_free(&db);
    json_decref(root);
}

static void test_timestamp(void **state)
{
    struct kf_tuf_signer *s = open_new(KF_TUF_TIMESTAMP, KF_KEY_ED25519, "ts.key");
    json_t *d;
    (void)state;
    assert_string_equal(json_string_value(json_object_get(kf_tuf_signer_key(s), "keytype")),
                        "ed25519");

    d = doc_of("snapshot", 7, 1, "targets.json");
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    KF_EXPECT_MSG("signs timestamp metadata only, not snapshot");
    json_decref(d);
    d = doc_of("targets", 7, 1, "snapshot.json");
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    json_decref(d);
    d = doc_of("timestamp", 7, 30, "snapshot.json"); /* a freeze: a month */
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    KF_EXPECT_MSG("must expire within 1 day");
    json_decref(d);
    d = doc_of("timestamp", 7, -1, "snapshot.json"); /* expired */
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    json_decref(d);
    d = doc_of("timestamp", 0, 1, "snapshot.json");
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    json_decref(d);
    d = doc_of("timestamp", 7, 1, "snapshot.json"); /* a jump past the next version: a freeze */
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 3, 3));
    KF_EXPECT_MSG("the next is 4");
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 2)); /* naming a snapshot not out */
    KF_EXPECT_MSG("snapshot.json version must be 1 to 2");
    json_object_set_new(json_object_get(d, "signed"), "expires",
                        json_string("2099-01-01T00:00:00+00:00")); /* a form clients refuse */
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    KF_EXPECT_MSG("a client would refuse");
    json_decref(d);
    d = doc_of("timestamp", 7, 1, "targets.json"); /* naming what it may not */
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    KF_EXPECT_MSG("must name snapshot.json alone");
    json_decref(d);
    d = doc_of("timestamp", 7, 1, "snapshot.json");
    json_object_set_new(json_object_get(json_object_get(d, "signed"), "meta"), "evil.json",
                        json_pack("{s:i}", "version", 1));
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    assert_int_equal(json_array_size(json_object_get(d, "signatures")), 0);
    json_decref(d);

    d = doc_of("timestamp", 7, 1, "snapshot.json");
    KF_OK_OR_FAIL(kf_tuf_signer_sign(s, d, 6, 3));
    assert_int_equal(json_array_size(json_object_get(d, "signatures")), 1);
    verify(s, KF_TUF_TIMESTAMP, d);
    json_decref(d);
    kf_tuf_signer_free(s);
}

static void test_snapshot_p256(void **state)
{
    struct kf_tuf_signer *s = open_new(KF_TUF_SNAPSHOT, KF_KEY_EC_P256, "sn.key");
    json_t *d;
    (void)state;
    assert_string_equal(json_string_value(json_object_get(kf_tuf_signer_key(s), "scheme")),
                        "ecdsa-sha2-nistp256");
    d = doc_of("snapshot", 7, 7, "snapshot.json");
    KF_EXPECT_ERR(KF_E_DENIED, kf_tuf_signer_sign(s, d, 6, 3));
    KF_EXPECT_MSG("must name targets.json alone");
    json_decref(d);
    d = doc_of("snapshot", 7, 7, "targets.json");
    KF_OK_OR_FAIL(kf_tuf_signer_sign(s, d, 6, 3));
    verify(s, KF_TUF_SNAPSHOT, d);
    json_decref(d);
    kf_tuf_signer_free(s);
}

static void test_refusals(void **state)
{
    struct kf_tuf_signer *s = NULL;
    struct kf_key *k = NULL;
    (void)state;
    KF_EXPECT_ERR(KF_E_INVALID, kf_tuf_signer_open(KF_TUF_TARGETS, "whatever", &s));
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P384, &k));
    KF_OK_OR_FAIL(kf_key_save(k, kf_test_path("p384.key"), NULL));
    kf_key_free(k);
    KF_EXPECT_ERR(KF_E_INVALID, kf_tuf_signer_open(KF_TUF_TIMESTAMP, kf_test_path("p384.key"), &s));
    KF_EXPECT_MSG("online keys are ed25519 or P-256");
    assert_null(s);
    assert_int_not_equal(kf_tuf_signer_open(KF_TUF_TIMESTAMP, kf_test_path("none.key"), &s), KF_OK);
    KF_EXPECT_MSG("the timestamp key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_snapshot_p256),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
