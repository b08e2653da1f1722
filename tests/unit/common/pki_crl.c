/* pki_crl: build, sign, read back, and let openssl judge. */
#include "testutil.h"

#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/pki_crl.h"

static void test_build_and_judge(void **state)
{
    struct kf_test_pki pki;
    struct kf_cert *a, *b, *c;
    char sa[KF_SERIAL_HEX_MAX], sb[KF_SERIAL_HEX_MAX], sc[KF_SERIAL_HEX_MAX];
    struct kf_revoked rev[2];
    struct kf_crl *crl = NULL, *back = NULL;
    struct kf_buf pem;
    time_t now = time(NULL);
    const char *crlp = kf_test_path("crl.pem"), *iss = kf_test_path("iss.pem"),
               *root = kf_test_path("root.pem"), *txt = kf_test_path("crl.txt"),
               *devp = kf_test_path("dev.pem");
    char *text;
    int reason = -1;

    kf_test_pki_make(&pki, KF_KEY_EC_P256);
    a = kf_test_issue(&pki, KF_PROFILE_DEVICE, "a", 0, 0, NULL);
    b = kf_test_issue(&pki, KF_PROFILE_DEVICE, "b", 0, 0, NULL);
    c = kf_test_issue(&pki, KF_PROFILE_DEVICE, "c", 0, 0, NULL);
    kf_cert_serial_hex(a, sa);
    kf_cert_serial_hex(b, sb);
    kf_cert_serial_hex(c, sc);
    rev[0] = (struct kf_revoked){sa, now - 60, KF_CRL_KEY_COMPROMISE};
    rev[1] = (struct kf_revoked){sb, now - 30, KF_CRL_UNSPECIFIED};
    KF_OK_OR_FAIL(kf_crl_build(pki.issuing, pki.issuing_key, rev, 2, 7, now, now + 86400, &crl));
    assert_int_equal(kf_crl_count(crl), 2);
    assert_int_equal(kf_crl_number(crl), 7);
    assert_int_equal(kf_crl_next_update(crl), now + 86400);
    assert_true(kf_crl_lists(crl, sa, &reason));
    assert_int_equal(reason, KF_CRL_KEY_COMPROMISE);
    assert_true(kf_crl_lists(crl, sb, &reason));
    assert_int_equal(reason, KF_CRL_UNSPECIFIED);
    assert_false(kf_crl_lists(crl, sc, NULL));
    assert_true(kf_crl_signed_by(crl, pki.issuing));
    assert_false(kf_crl_signed_by(crl, pki.root));

    kf_buf_init(&pem, 100000);
    KF_OK_OR_FAIL(kf_crl_pem(crl, &pem));
    KF_OK_OR_FAIL(kf_crl_parse(pem.data, pem.len, &back));
    assert_int_equal(kf_crl_count(back), 2);
    kf_test_write(crlp, kf_buf_str(&pem));
    kf_test_save_cert(pki.issuing, iss);
    kf_test_save_cert(pki.root, root);

    /* openssl: the CRL verifies with the issuing CA and lists what we put in it. */
    assert_int_equal(
        kf_test_sh("openssl crl -in '%s' -CAfile '%s' -noout 2>&1 | grep -q 'verify OK'", crlp,
                   iss),
        0);
    assert_int_equal(kf_test_sh("openssl crl -in '%s' -noout -text > '%s'", crlp, txt), 0);
    text = kf_test_read(txt);
    assert_non_null(strstr(text, "X509v3 CRL Number"));
    assert_non_null(strstr(text, "Key Compromise"));
    assert_non_null(strstr(text, "Authority Key Identifier"));
    free(text);
    /* openssl verify -crl_check: a revoked certificate fails, a good one passes. */
    kf_test_save_cert(a, devp);
    assert_int_not_equal(
        kf_test_sh("openssl verify -crl_check -CRLfile '%s' -CAfile '%s' -untrusted "
                   "'%s' '%s' >/dev/null 2>&1",
                   crlp, root, iss, devp),
        0);
    kf_test_save_cert(c, devp);
    assert_int_equal(kf_test_sh("openssl verify -crl_check -CRLfile '%s' -CAfile '%s' -untrusted "
                                "'%s' '%s' >/dev/null",
                                crlp, root, iss, devp),
                     0);

    kf_crl_free(back);
    kf_crl_free(crl);
    kf_buf_free(&pem);
    kf_cert_free(a);
    kf_cert_free(b);
    kf_cert_free(c);
    kf_test_pki_free(&pki);
}

static void test_reasons_and_errors(void **state)
{
    struct kf_test_pki pki;
    struct kf_crl *crl = NULL;
    time_t now = time(NULL);
    struct kf_revoked bad = {"not-hex", now, 0};

    assert_int_equal(kf_crl_reason_parse("key-compromise"), KF_CRL_KEY_COMPROMISE);
    assert_int_equal(kf_crl_reason_parse("superseded"), KF_CRL_SUPERSEDED);
    assert_int_equal(kf_crl_reason_parse("certificate-hold"), -1);
    assert_string_equal(kf_crl_reason_name(KF_CRL_PRIVILEGE_WITHDRAWN), "privilege-withdrawn");
    assert_null(kf_crl_reason_name(8));
    kf_test_pki_make(&pki, KF_KEY_EC_P256);
    KF_EXPECT_ERR(KF_E_INVALID,
                  kf_crl_build(pki.issuing, pki.issuing_key, &bad, 1, 1, now, now + 10, &crl));
    KF_EXPECT_MSG("not a hexadecimal number");
    KF_EXPECT_ERR(KF_E_INVALID,
                  kf_crl_build(pki.issuing, pki.issuing_key, NULL, 0, 1, now, now, &crl));
    KF_EXPECT_ERR(KF_E_WRONG_TYPE, kf_crl_parse("-----BEGIN CERTIFICATE-----\n", 28, &crl));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_crl_parse("\x30\x01\x00", 3, &crl));
    assert_null(crl);
    /* An empty CRL is valid. */
    KF_OK_OR_FAIL(kf_crl_build(pki.issuing, pki.issuing_key, NULL, 0, 1, now, now + 10, &crl));
    assert_int_equal(kf_crl_count(crl), 0);
    kf_crl_free(crl);
    kf_test_pki_free(&pki);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_judge),
        cmocka_unit_test(test_reasons_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
