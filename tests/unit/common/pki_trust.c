/* pki_trust: chain verification names why it fails. */
#include "testutil.h"

#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/pki_trust.h"

struct fixture {
    struct kf_test_pki pki;
    struct kf_cert *dev;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    kf_test_pki_make(&f->pki, KF_KEY_EC_P256);
    f->dev = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "dev-1", 0, 0, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_cert_free(f->dev);
    kf_test_pki_free(&f->pki);
    free(f);
    return 0;
}

static struct kf_trust *trust_of(const struct kf_cert *anchor)
{
    struct kf_trust *t = NULL;
    KF_OK_OR_FAIL(kf_trust_new(&t));
    if (anchor) KF_OK_OR_FAIL(kf_trust_add_cert(t, anchor));
    return t;
}

static void test_good_chain(void **state)
{
    struct fixture *f = *state;
    struct kf_trust *t = trust_of(f->pki.root);
    struct kf_verify_result r;
    KF_OK_OR_FAIL(
        kf_trust_verify(t, f->dev, &f->pki.issuing, 1, time(NULL), KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_OK);
    {
        /* The anchor the chain reached is named by its key. */
        char fp[KF_FINGERPRINT_HEX];
        KF_OK_OR_FAIL(kf_key_fingerprint(f->pki.root_key, fp));
        assert_string_equal(r.anchor, fp);
    }
    /* Adding the same anchor twice is harmless. */
    KF_OK_OR_FAIL(kf_trust_add_cert(t, f->pki.root));
    kf_trust_free(t);
    /* An intermediate may be the anchor (a manufacturer's issuing CA). */
    t = trust_of(f->pki.issuing);
    KF_OK_OR_FAIL(kf_trust_verify(t, f->dev, NULL, 0, time(NULL), KF_PURPOSE_ANY, &r));
    {
        char fp[KF_FINGERPRINT_HEX];
        KF_OK_OR_FAIL(kf_key_fingerprint(f->pki.issuing_key, fp));
        assert_string_equal(r.anchor, fp);
    }
    kf_trust_free(t);
}

static void test_failures_are_named(void **state)
{
    struct fixture *f = *state;
    struct kf_trust *t = trust_of(f->pki.root);
    struct kf_verify_result r;
    time_t now = time(NULL);

    KF_EXPECT_ERR(KF_E_EXPIRED, kf_trust_verify(t, f->dev, &f->pki.issuing, 1, now + 40L * 86400,
                                                KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_EXPIRED);
    assert_int_equal(r.depth, 0);
    assert_string_equal(r.subject, "CN=dev-1");
    KF_EXPECT_MSG("certificate \"CN=dev-1\" expired on");

    KF_EXPECT_ERR(KF_E_NOT_YET_VALID, kf_trust_verify(t, f->dev, &f->pki.issuing, 1, now - 7200,
                                                      KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_NOT_YET_VALID);

    KF_EXPECT_ERR(KF_E_WRONG_PURPOSE,
                  kf_trust_verify(t, f->dev, &f->pki.issuing, 1, now, KF_PURPOSE_SERVER, &r));
    assert_int_equal(r.reason, KF_VERIFY_WRONG_PURPOSE);
    KF_EXPECT_MSG("wrong_purpose");

    /* Without the intermediate, the chain does not reach the root. */
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER,
                  kf_trust_verify(t, f->dev, NULL, 0, now, KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_UNKNOWN_ISSUER);
    kf_trust_free(t);

    /* Another root entirely. */
    {
        struct kf_test_pki other;
        kf_test_pki_make(&other, KF_KEY_EC_P256);
        t = trust_of(other.root);
        KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER,
                      kf_trust_verify(t, f->dev, &f->pki.issuing, 1, now, KF_PURPOSE_CLIENT, &r));
        kf_trust_free(t);
        kf_test_pki_free(&other);
    }
    /* An empty trust set trusts nothing. */
    t = trust_of(NULL);
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER,
                  kf_trust_verify(t, f->dev, &f->pki.issuing, 1, now, KF_PURPOSE_CLIENT, &r));
    kf_trust_free(t);
}

static void test_bad_signature(void **state)
{
    struct fixture *f = *state;
    struct kf_trust *t = trust_of(f->pki.root);
    struct kf_verify_result r;
    struct kf_buf der;
    struct kf_cert *forged = NULL;

    kf_buf_init(&der, 100000);
    KF_OK_OR_FAIL(kf_cert_der(f->dev, &der));
    /* The last bytes are the signature's: change one. */
    der.data[der.len - 3] ^= 0x01;
    KF_OK_OR_FAIL(kf_cert_parse(der.data, der.len, &forged));
    KF_EXPECT_ERR(KF_E_BAD_SIGNATURE, kf_trust_verify(t, forged, &f->pki.issuing, 1, time(NULL),
                                                      KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_BAD_SIGNATURE);
    kf_cert_free(forged);
    kf_buf_free(&der);
    kf_trust_free(t);
}

static void test_revoked(void **state)
{
    struct fixture *f = *state;
    struct kf_trust *t = trust_of(f->pki.root);
    struct kf_verify_result r;
    struct kf_crl *crl = NULL;
    char serial[KF_SERIAL_HEX_MAX];
    time_t now = time(NULL);
    struct kf_cert *other = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "dev-2", 0, 0, NULL);
    struct kf_revoked rev;

    kf_cert_serial_hex(f->dev, serial);
    rev = (struct kf_revoked){serial, now - 10, KF_CRL_KEY_COMPROMISE};
    KF_OK_OR_FAIL(
        kf_crl_build(f->pki.issuing, f->pki.issuing_key, &rev, 1, 1, now - 60, now + 3600, &crl));
    KF_OK_OR_FAIL(kf_trust_add_crl(t, crl));
    KF_EXPECT_ERR(KF_E_REVOKED,
                  kf_trust_verify(t, f->dev, &f->pki.issuing, 1, now, KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_REVOKED);
    /* Another certificate of the same CA is still good; the root has no CRL and needs none. */
    KF_OK_OR_FAIL(kf_trust_verify(t, other, &f->pki.issuing, 1, now, KF_PURPOSE_CLIENT, &r));
    kf_crl_free(crl);
    kf_cert_free(other);
    kf_trust_free(t);
}

/* The issuer CRL, checked once: the same verdicts as OpenSSL's CRL check, in the same order. */
static void test_issuer_crl(void **state)
{
    struct fixture *f = *state;
    struct kf_trust *t = trust_of(f->pki.issuing);
    struct kf_verify_result r;
    struct kf_crl *crl = NULL, *stale = NULL, *early = NULL, *foreign = NULL;
    char serial[KF_SERIAL_HEX_MAX];
    time_t now = time(NULL);
    struct kf_cert *other = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "dev-2", 0, 0, NULL);
    struct kf_cert *gone =
        kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "dev-3", now - 7200, now - 3600, NULL);
    struct kf_revoked rev[2];
    char gone_serial[KF_SERIAL_HEX_MAX];

    kf_cert_serial_hex(f->dev, serial);
    kf_cert_serial_hex(gone, gone_serial);
    rev[0] = (struct kf_revoked){serial, now - 10, KF_CRL_KEY_COMPROMISE};
    rev[1] = (struct kf_revoked){gone_serial, now - 10, KF_CRL_SUPERSEDED};
    KF_OK_OR_FAIL(
        kf_crl_build(f->pki.issuing, f->pki.issuing_key, rev, 2, 1, now - 60, now + 3600, &crl));
    /* A CRL the anchor did not sign is refused when it is set, not on every chain. */
    KF_OK_OR_FAIL(
        kf_crl_build(f->pki.root, f->pki.root_key, rev, 1, 1, now - 60, now + 3600, &foreign));
    KF_EXPECT_ERR(KF_E_BAD_SIGNATURE, kf_trust_set_issuer_crl(t, foreign, f->pki.issuing));
    KF_OK_OR_FAIL(kf_trust_set_issuer_crl(t, crl, f->pki.issuing));
    KF_EXPECT_ERR(KF_E_REVOKED, kf_trust_verify(t, f->dev, NULL, 0, now, KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_REVOKED);
    assert_non_null(strstr(kf_errmsg(), "revoked"));
    /* Revoked and expired: revoked, as OpenSSL says it. */
    KF_EXPECT_ERR(KF_E_REVOKED, kf_trust_verify(t, gone, NULL, 0, now, KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_REVOKED);
    KF_OK_OR_FAIL(kf_trust_verify(t, other, NULL, 0, now, KF_PURPOSE_CLIENT, &r));
    /* Outside its window the CRL refuses every certificate of its issuer. */
    KF_OK_OR_FAIL(kf_crl_build(f->pki.issuing, f->pki.issuing_key, rev, 1, 2, now - 7200,
                               now - 3600, &stale));
    KF_OK_OR_FAIL(kf_trust_set_issuer_crl(t, stale, f->pki.issuing));
    KF_EXPECT_ERR(KF_E_DENIED, kf_trust_verify(t, other, NULL, 0, now, KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_CRL_INVALID);
    KF_OK_OR_FAIL(kf_crl_build(f->pki.issuing, f->pki.issuing_key, rev, 1, 3, now + 3600,
                               now + 7200, &early));
    KF_OK_OR_FAIL(kf_trust_set_issuer_crl(t, early, f->pki.issuing));
    KF_EXPECT_ERR(KF_E_DENIED, kf_trust_verify(t, other, NULL, 0, now, KF_PURPOSE_CLIENT, &r));
    assert_int_equal(r.reason, KF_VERIFY_CRL_INVALID);
    /* Replaced by the good one again: back to the verdicts above. */
    KF_OK_OR_FAIL(kf_trust_set_issuer_crl(t, crl, f->pki.issuing));
    KF_OK_OR_FAIL(kf_trust_verify(t, other, NULL, 0, now, KF_PURPOSE_CLIENT, &r));
    kf_crl_free(crl);
    kf_crl_free(stale);
    kf_crl_free(early);
    kf_crl_free(foreign);
    kf_cert_free(other);
    kf_cert_free(gone);
    kf_trust_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_chain),    cmocka_unit_test(test_failures_are_named),
        cmocka_unit_test(test_bad_signature), cmocka_unit_test(test_revoked),
        cmocka_unit_test(test_issuer_crl),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
