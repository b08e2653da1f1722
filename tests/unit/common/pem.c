/* pem: base64 and PEM armour. */
#include "testutil.h"

#include <string.h>

#include "common/pem.h"

static void roundtrip(const char *in, const char *b64)
{
    struct kf_buf enc, dec;
    kf_buf_init(&enc, 1000);
    kf_buf_init(&dec, 1000);
    KF_OK_OR_FAIL(kf_b64_encode(in, strlen(in), &enc, 0));
    assert_string_equal(kf_buf_str(&enc), b64);
    KF_OK_OR_FAIL(kf_b64_decode((const char *)enc.data, enc.len, &dec));
    assert_int_equal(dec.len, strlen(in));
    assert_memory_equal(dec.data, in, dec.len);
    kf_buf_free(&enc);
    kf_buf_free(&dec);
}

static void test_rfc4648_vectors(void **state)
{
    roundtrip("", "");
    roundtrip("f", "Zg==");
    roundtrip("fo", "Zm8=");
    roundtrip("foo", "Zm9v");
    roundtrip("foob", "Zm9vYg==");
    roundtrip("fooba", "Zm9vYmE=");
    roundtrip("foobar", "Zm9vYmFy");
}

static void test_decode_skips_whitespace(void **state)
{
    struct kf_buf dec;
    kf_buf_init(&dec, 100);
    KF_OK_OR_FAIL(kf_b64_decode("Zm9v\r\nYmFy \t\n", 13, &dec));
    assert_string_equal(kf_buf_str(&dec), "foobar");
    kf_buf_free(&dec);
}

static void bad(const char *in, const char *msg)
{
    struct kf_buf dec;
    kf_buf_init(&dec, 100);
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_b64_decode(in, strlen(in), &dec));
    KF_EXPECT_MSG(msg);
    assert_int_equal(dec.len, 0);
    kf_buf_free(&dec);
}

static void test_decode_rejects_bad_input(void **state)
{
    bad("Zm9v!", "character 0x21 at offset 4");
    bad("Zm9", "truncated");
    bad("Z===", "padding at offset 1");
    bad("Zg==Zg==", "data after padding");
    bad("Zg=a", "data after padding");
}

static void test_decode_bounded(void **state)
{
    struct kf_buf dec;
    kf_buf_init(&dec, 2);
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_b64_decode("Zm9v", 4, &dec));
    kf_buf_free(&dec);
}

static void test_encode_wraps_lines(void **state)
{
    struct kf_buf enc;
    unsigned char data[100];
    memset(data, 0xab, sizeof(data));
    kf_buf_init(&enc, 1000);
    KF_OK_OR_FAIL(kf_b64_encode(data, sizeof(data), &enc, 64));
    assert_int_equal(strchr(kf_buf_str(&enc), '\n') - kf_buf_str(&enc), 64);
    assert_int_equal(enc.data[enc.len - 1], '\n');
    kf_buf_free(&enc);
}

static void test_pem_roundtrip_and_multiple_blocks(void **state)
{
    struct kf_buf text, der;
    char label[KF_PEM_LABEL_MAX];
    size_t pos = 0;
    kf_buf_init(&text, 10000);
    kf_buf_init(&der, 10000);
    KF_OK_OR_FAIL(kf_buf_append_str(&text, "junk before\n"));
    KF_OK_OR_FAIL(kf_pem_encode("CERTIFICATE", "abc", 3, &text));
    KF_OK_OR_FAIL(kf_pem_encode("X509 CRL", "defgh", 5, &text));
    KF_OK_OR_FAIL(kf_pem_first_label((const char *)text.data, text.len, label));
    assert_string_equal(label, "CERTIFICATE");
    KF_OK_OR_FAIL(kf_pem_next((const char *)text.data, text.len, &pos, label, &der));
    assert_string_equal(label, "CERTIFICATE");
    assert_int_equal(der.len, 3);
    kf_buf_reset(&der);
    KF_OK_OR_FAIL(kf_pem_next((const char *)text.data, text.len, &pos, label, &der));
    assert_string_equal(label, "X509 CRL");
    assert_memory_equal(der.data, "defgh", 5);
    KF_EXPECT_ERR(KF_E_NOT_FOUND,
                  kf_pem_next((const char *)text.data, text.len, &pos, label, &der));
    kf_buf_free(&text);
    kf_buf_free(&der);
}

static void test_pem_errors(void **state)
{
    struct kf_buf der;
    char label[KF_PEM_LABEL_MAX];
    size_t pos = 0;
    const char *truncated = "-----BEGIN CERTIFICATE-----\nZm9v\n";
    const char *mismatch = "-----BEGIN CERTIFICATE-----\nZm9v\n-----END PUBLIC KEY-----\n";
    const char *badb64 = "-----BEGIN CERTIFICATE-----\nZm9v$$\n-----END CERTIFICATE-----\n";
    kf_buf_init(&der, 1000);
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_pem_next(truncated, strlen(truncated), &pos, label, &der));
    KF_EXPECT_MSG("truncated PEM: BEGIN CERTIFICATE without an END line");
    pos = 0;
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_pem_next(mismatch, strlen(mismatch), &pos, label, &der));
    KF_EXPECT_MSG("ends with END PUBLIC KEY");
    pos = 0;
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_pem_next(badb64, strlen(badb64), &pos, label, &der));
    KF_EXPECT_MSG("PEM block CERTIFICATE: bad base64");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_pem_first_label("nothing here", 12, label));
    kf_buf_free(&der);
}

static void test_pem_headers_skipped(void **state)
{
    const char *text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
                       "DEK-Info: AES-128-CBC,00\n\nZm9v\n-----END RSA PRIVATE KEY-----\n";
    struct kf_buf der;
    char label[KF_PEM_LABEL_MAX];
    size_t pos = 0;
    kf_buf_init(&der, 1000);
    KF_OK_OR_FAIL(kf_pem_next(text, strlen(text), &pos, label, &der));
    assert_string_equal(kf_buf_str(&der), "foo");
    kf_buf_free(&der);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_decode_skips_whitespace),
        cmocka_unit_test(test_decode_rejects_bad_input),
        cmocka_unit_test(test_decode_bounded),
        cmocka_unit_test(test_encode_wraps_lines),
        cmocka_unit_test(test_pem_roundtrip_and_multiple_blocks),
        cmocka_unit_test(test_pem_errors),
        cmocka_unit_test(test_pem_headers_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
