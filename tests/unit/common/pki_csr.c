/* pki_csr: parse, create, and each rule that can fail. */
#include "testutil.h"

#include <string.h>

#include "common/buf.h"
#include "common/ident.h"
#include "common/pem.h"
#include "common/pki_csr.h"

static struct kf_csr *csr_from_openssl(const char *keyopt, const char *subj)
{
    const char *key = kf_test_path("csr.key"), *req = kf_test_path("csr.pem");
    struct kf_csr *csr = NULL;
    char *text;
    kf_test_sh("rm -f '%s' '%s'", key, req);
    assert_int_equal(kf_test_sh("openssl req -new %s -nodes -keyout '%s' -out '%s' -subj '%s' "
                                "2>/dev/null",
                                keyopt, key, req, subj),
                     0);
    text = kf_test_read(req);
    KF_OK_OR_FAIL(kf_csr_parse(text, strlen(text), &csr));
    free(text);
    return csr;
}

static void expect_rule(struct kf_csr *csr, const struct kf_csr_policy *p, enum kf_err rc,
                        enum kf_csr_rule rule, const char *msg)
{
    enum kf_csr_rule failed = KF_CSR_RULE_NONE;
    KF_EXPECT_ERR(rc, kf_csr_check(csr, p, &failed));
    assert_int_equal(failed, rule);
    KF_EXPECT_MSG(kf_csr_rule_name(rule));
    KF_EXPECT_MSG(msg);
}

static void test_create_parse_check(void **state)
{
    struct kf_key *k = NULL, *pub = NULL;
    struct kf_buf pem;
    struct kf_csr *csr = NULL;
    struct kf_csr_policy p;
    enum kf_csr_rule failed;
    char cn[64];
    const char *path = kf_test_path("ours.csr");

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    kf_buf_init(&pem, 10000);
    KF_OK_OR_FAIL(kf_csr_create(k, "dev-42", &pem));
    kf_test_write(path, kf_buf_str(&pem));
    assert_int_equal(kf_test_sh("openssl req -in '%s' -verify -noout 2>/dev/null", path), 0);
    KF_OK_OR_FAIL(kf_csr_parse(pem.data, pem.len, &csr));
    KF_OK_OR_FAIL(kf_csr_subject_cn(csr, cn, sizeof(cn)));
    assert_string_equal(cn, "dev-42");
    KF_OK_OR_FAIL(kf_csr_public_key(csr, &pub));
    assert_true(kf_key_public_equal(k, pub));
    {
        struct kf_buf a, b;
        kf_buf_init(&a, 4096);
        kf_buf_init(&b, 4096);
        KF_OK_OR_FAIL(kf_csr_spki(csr, &a));
        KF_OK_OR_FAIL(kf_key_public_der(k, &b));
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        kf_buf_free(&a);
        kf_buf_free(&b);
    }
    kf_csr_policy_default(&p);
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, &failed));
    assert_int_equal(failed, KF_CSR_RULE_NONE);
    p.expected_cn = "dev-42";
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    p.expected_cn = "dev-43";
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_SUBJECT_MATCH, "is not the expected \"dev-43\"");
    p.expected_cn = NULL;
    p.allowed_key_types = KF_KEY_BIT(KF_KEY_ED25519);
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_KEY_TYPE, "EC P-256, which is not an allowed");
    kf_csr_free(csr);
    kf_key_free(pub);
    kf_key_free(k);
    kf_buf_free(&pem);
}

static void test_longest_id_csr(void **state)
{
    struct kf_key *k = NULL;
    struct kf_buf pem;
    struct kf_csr *csr = NULL;
    struct kf_csr_policy p;
    char id[KF_ID_MAX + 1];
    const char *path = kf_test_path("long.csr");
    memset(id, 'e', KF_ID_MAX);
    id[KF_ID_MAX] = '\0';
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    kf_buf_init(&pem, 10000);
    KF_OK_OR_FAIL(kf_csr_create(k, id, &pem));
    kf_test_write(path, kf_buf_str(&pem));
    assert_int_equal(kf_test_sh("openssl req -in '%s' -verify -noout 2>/dev/null", path), 0);
    KF_OK_OR_FAIL(kf_csr_parse(pem.data, pem.len, &csr));
    kf_csr_policy_default(&p);
    p.expected_cn = id;
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    kf_csr_free(csr);
    kf_key_free(k);
    kf_buf_free(&pem);
}

static void test_broken_self_signature(void **state)
{
    struct kf_key *k = NULL;
    struct kf_buf pem, der;
    struct kf_csr *csr = NULL, *bad = NULL;
    struct kf_csr_policy p;

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    kf_buf_init(&pem, 10000);
    kf_buf_init(&der, 10000);
    KF_OK_OR_FAIL(kf_csr_create(k, "dev-1", &pem));
    KF_OK_OR_FAIL(kf_csr_parse(pem.data, pem.len, &csr));
    KF_OK_OR_FAIL(kf_csr_der(csr, &der));
    /* Flip a bit inside the CN: the signature no longer covers what is there. */
    for (size_t i = 0; i + 5 <= der.len; i++)
        if (memcmp(der.data + i, "dev-1", 5) == 0) der.data[i + 4] = '2';
    KF_OK_OR_FAIL(kf_csr_parse(der.data, der.len, &bad));
    kf_csr_policy_default(&p);
    expect_rule(bad, &p, KF_E_BAD_SIGNATURE, KF_CSR_RULE_SIGNATURE, "self-signature");
    kf_csr_free(bad);
    kf_csr_free(csr);
    kf_key_free(k);
    kf_buf_free(&pem);
    kf_buf_free(&der);
}

/*
 * ECDSA signature algorithms with a NULL parameter (what the TPM 2.0 provider for OpenSSL
 * writes) are accepted; Ed25519 with one is not.
 */
static void test_ecdsa_null_parameter(void **state)
{
    static const uint8_t absent[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                     0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
    struct kf_key *k = NULL;
    struct kf_buf pem, der, out;
    struct kf_csr *csr = NULL, *withnull = NULL;
    struct kf_csr_policy p;
    size_t i, body;

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    kf_buf_init(&pem, 10000);
    kf_buf_init(&der, 10000);
    kf_buf_init(&out, 10000);
    KF_OK_OR_FAIL(kf_csr_create(k, "dev-1", &pem));
    KF_OK_OR_FAIL(kf_csr_parse(pem.data, pem.len, &csr));
    KF_OK_OR_FAIL(kf_csr_der(csr, &der));
    assert_int_equal(der.data[0], 0x30);
    assert_int_equal(der.data[1], 0x81); /* a P-256 request is 128 to 255 bytes long */
    for (i = 3; i + sizeof(absent) <= der.len; i++)
        if (memcmp(der.data + i, absent, sizeof(absent)) == 0) break;
    assert_true(i + sizeof(absent) < der.len);
    /* the same request with the AlgorithmIdentifier's parameters an explicit NULL */
    body = der.len - 3 + 2;
    assert_true(body < 256);
    {
        uint8_t head[3] = {0x30, 0x81, (uint8_t)body}, alg[14];
        memcpy(alg, absent, sizeof(absent));
        alg[1] = 0x0c;
        alg[12] = 0x05;
        alg[13] = 0x00;
        kf_buf_append(&out, head, 3);
        kf_buf_append(&out, der.data + 3, i - 3);
        kf_buf_append(&out, alg, sizeof(alg));
        kf_buf_append(&out, der.data + i + sizeof(absent), der.len - i - sizeof(absent));
    }
    KF_OK_OR_FAIL(kf_csr_parse(out.data, out.len, &withnull));
    kf_csr_policy_default(&p);
    KF_OK_OR_FAIL(kf_csr_check(withnull, &p, NULL));
    kf_csr_free(withnull);
    kf_csr_free(csr);
    kf_key_free(k);
    kf_buf_free(&pem);
    kf_buf_free(&der);
    kf_buf_free(&out);
}

static void test_rules_with_openssl_csrs(void **state)
{
    struct kf_csr_policy p;
    struct kf_csr *csr;
    kf_csr_policy_default(&p);

    csr = csr_from_openssl("-newkey rsa:1024", "/CN=dev-1");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_KEY_SIZE, "RSA 1024");
    kf_csr_free(csr);

    csr = csr_from_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-521", "/CN=dev-1");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_KEY_TYPE, "not an allowed key type");
    kf_csr_free(csr);

    csr = csr_from_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/O=Acme/CN=dev-1");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_SUBJECT_EXTRA, "holds O");
    p.allow_org_units = 1;
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    p.allow_org_units = 0;
    kf_csr_free(csr);

    csr = csr_from_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=a/CN=b");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_SUBJECT_CN, "exactly one CN (it holds 2)");
    kf_csr_free(csr);

    csr = csr_from_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=Not An Id");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_SUBJECT_ID, "must start with a lower-case");
    kf_csr_free(csr);

    csr = csr_from_openssl("-newkey ed25519", "/CN=dev-ed");
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    kf_csr_free(csr);

    /* SHA-1 signatures, PKCS#1 and PSS (whose parameters name the digest), are refused. */
    csr = csr_from_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha1", "/CN=dev-1");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_DIGEST, "signed with SHA1");
    kf_csr_free(csr);
    csr = csr_from_openssl("-newkey rsa:2048 -sha1", "/CN=dev-1");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_DIGEST, "SHA-256 or stronger");
    kf_csr_free(csr);
    csr = csr_from_openssl("-newkey rsa:2048 -sigopt rsa_padding_mode:pss -sha1", "/CN=dev-1");
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_DIGEST, "signed with SHA1");
    kf_csr_free(csr);
    csr = csr_from_openssl("-newkey rsa:2048 -sigopt rsa_padding_mode:pss -sha256", "/CN=dev-1");
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    kf_csr_free(csr);
    csr = csr_from_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-384 -sha384", "/CN=dev-1");
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    kf_csr_free(csr);
}

/* P-256 with explicit curve parameters: the signer would refuse it, so the CSR check does. */
static void test_explicit_curve_parameters(void **state)
{
    const char *key = kf_test_path("explicit.key"), *req = kf_test_path("explicit.csr");
    struct kf_csr_policy p;
    struct kf_csr *csr = NULL;
    char *text;
    kf_csr_policy_default(&p);
    assert_int_equal(kf_test_sh("openssl ecparam -name prime256v1 -param_enc explicit -genkey "
                                "-noout -out '%s' && openssl req -new -key '%s' -subj /CN=dev-1 "
                                "-out '%s' 2>/dev/null",
                                key, key, req),
                     0);
    text = kf_test_read(req);
    KF_OK_OR_FAIL(kf_csr_parse(text, strlen(text), &csr));
    free(text);
    expect_rule(csr, &p, KF_E_POLICY, KF_CSR_RULE_KEY_TYPE, "without a named curve");
    kf_csr_free(csr);
}

static void test_parse_errors(void **state)
{
    struct kf_csr *csr = NULL;
    struct kf_test_pki pki;
    struct kf_buf pem, big;
    const char *trunc = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n";

    kf_buf_init(&pem, 100000);
    kf_test_pki_make(&pki, KF_KEY_EC_P256);
    KF_OK_OR_FAIL(kf_cert_pem(pki.root, &pem));
    KF_EXPECT_ERR(KF_E_WRONG_TYPE, kf_csr_parse(pem.data, pem.len, &csr));
    KF_EXPECT_MSG("holds a CERTIFICATE, not a CERTIFICATE REQUEST");
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_csr_parse(trunc, strlen(trunc), &csr));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_csr_parse("\x30\x00", 2, &csr));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_csr_parse("", 0, &csr));
    kf_buf_init(&big, KF_CSR_MAX + 10);
    for (int i = 0; i < KF_CSR_MAX + 1; i++)
        KF_OK_OR_FAIL(kf_buf_append(&big, "A", 1));
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_csr_parse(big.data, big.len, &csr));
    assert_null(csr);
    kf_buf_free(&big);
    kf_buf_free(&pem);
    kf_test_pki_free(&pki);
}

/*
 * The CSR reader keeps the key as bytes and checks the signature itself: for every kind of
 * request openssl makes, its verdict must be OpenSSL's own (openssl req -verify).
 */
static void test_agrees_with_openssl(void **state)
{
    static const char *const kinds[] = {
        "-newkey ec -pkeyopt ec_paramgen_curve:P-256",
        "-newkey ec -pkeyopt ec_paramgen_curve:P-384 -sha384",
        "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha512",
        "-newkey ed25519",
        "-newkey rsa:2048",
        "-newkey rsa:2048 -sha384",
        "-newkey rsa-pss -pkeyopt rsa_keygen_bits:2048",
        "-newkey rsa:2048 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32",
        ("-newkey ec -pkeyopt ec_paramgen_curve:P-256 -addext subjectAltName=DNS:x.example "
         "-addext keyUsage=digitalSignature"),
    };
    struct kf_csr_policy p;
    kf_csr_policy_default(&p);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        struct kf_csr *csr = csr_from_openssl(kinds[i], "/CN=dev-1");
        struct kf_key *key = NULL;
        struct kf_buf der;
        enum kf_csr_rule failed = KF_CSR_RULE_NONE;
        kf_csr_check(csr, &p, &failed);
        /* Whatever the key policy says, the signature rule passes: openssl signed it. */
        if (failed == KF_CSR_RULE_SIGNATURE)
            fail_msg("%s: signature refused: %s", kinds[i], kf_errmsg());
        KF_OK_OR_FAIL(kf_csr_public_key(csr, &key));
        kf_key_free(key);
        /* The DER is the input, byte for byte. */
        kf_buf_init(&der, KF_CSR_MAX);
        KF_OK_OR_FAIL(kf_csr_der(csr, &der));
        {
            FILE *f = fopen(kf_test_path("csr.der"), "wb");
            assert_non_null(f);
            assert_int_equal(fwrite(der.data, 1, der.len, f), der.len);
            fclose(f);
        }
        assert_int_equal(kf_test_sh("openssl req -inform DER -in '%s' -noout -verify 2>/dev/null",
                                    kf_test_path("csr.der")),
                         0);
        kf_buf_free(&der);
        kf_csr_free(csr);
    }
}

/* Reads a DER file made by the test into `buf`; returns its length. */
static size_t read_der(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* Replaces the one occurrence of `from` with `to` (same length) in buf. */
static void patch(unsigned char *buf, size_t n, const void *from, const void *to, size_t len)
{
    for (size_t i = 0; i + len <= n; i++) {
        if (memcmp(buf + i, from, len) == 0) {
            memcpy(buf + i, to, len);
            return;
        }
    }
    fail_msg("pattern not found");
}

/*
 * Requests whose signature does not hold: a byte changed in what is signed, or the signature
 * algorithm relabelled. They parse, and the signature rule refuses them, as OpenSSL does.
 */
static void test_tampered_requests(void **state)
{
    static const unsigned char sha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
    static const unsigned char sha384[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
    unsigned char buf[4096];
    struct kf_csr_policy p;
    struct kf_csr *csr = NULL;
    size_t n;

    kf_csr_policy_default(&p);
    assert_int_equal(kf_test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                                "-nodes -keyout '%s' -subj /CN=dev-1 -outform DER -out '%s' "
                                "2>/dev/null",
                                kf_test_path("t.key"), kf_test_path("t.der")),
                     0);
    /* The subject's "dev-1" becomes "dev-2". */
    n = read_der(kf_test_path("t.der"), buf, sizeof(buf));
    patch(buf, n, "dev-1", "dev-2", 5);
    KF_OK_OR_FAIL(kf_csr_parse(buf, n, &csr));
    expect_rule(csr, &p, KF_E_BAD_SIGNATURE, KF_CSR_RULE_SIGNATURE, "does not verify");
    kf_csr_free(csr);
    /* ecdsa-with-SHA256 relabelled ecdsa-with-SHA384. */
    n = read_der(kf_test_path("t.der"), buf, sizeof(buf));
    patch(buf, n, sha256, sha384, sizeof(sha256));
    KF_OK_OR_FAIL(kf_csr_parse(buf, n, &csr));
    expect_rule(csr, &p, KF_E_BAD_SIGNATURE, KF_CSR_RULE_SIGNATURE, "does not verify");
    kf_csr_free(csr);
    /* The untouched request passes: the patches above are what broke them. */
    n = read_der(kf_test_path("t.der"), buf, sizeof(buf));
    KF_OK_OR_FAIL(kf_csr_parse(buf, n, &csr));
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    kf_csr_free(csr);
}

/* Structures that are not DER PKCS#10: each refused as malformed, none crashes. */
/* A CSR from openssl with config `conf` (which names its own subject and attributes). */
static struct kf_csr *csr_from_config(const char *conf)
{
    const char *cnf = kf_test_path("csr.cnf"), *req = kf_test_path("csr.pem");
    struct kf_csr *csr = NULL;
    char *text;
    FILE *f = fopen(cnf, "w");
    assert_non_null(f);
    fputs(conf, f);
    fclose(f);
    kf_test_sh("rm -f '%s'", req);
    assert_int_equal(kf_test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                                "-nodes -keyout '%s' -out '%s' -config '%s' 2>/dev/null",
                                kf_test_path("csr.key"), req, cnf),
                     0);
    text = kf_test_read(req);
    KF_OK_OR_FAIL(kf_csr_parse(text, strlen(text), &csr));
    free(text);
    return csr;
}

/* The challengePassword attribute (PKCS#9), read for the channel binding check. */
static void test_challenge_password(void **state)
{
    struct kf_csr *csr = csr_from_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=d");
    assert_null(kf_csr_challenge(csr));
    kf_csr_free(csr);
    csr = csr_from_config("[req]\nprompt = no\ndistinguished_name = dn\nattributes = a\n"
                          "[dn]\nCN = d\n[a]\nchallengePassword = c2VjcmV0K2JpbmRpbmc=\n");
    assert_string_equal(kf_csr_challenge(csr), "c2VjcmV0K2JpbmRpbmc=");
    kf_csr_free(csr);
}

static void test_malformed_structures(void **state)
{
    static const struct {
        const char *hex, *why;
    } cases[] = {
        {"3080", "indefinite length (BER)"},
        {"3003020100", "an info that is not a SEQUENCE"},
        {"3005300302010100", "trailing data after the request"},
        {"30083006020101300100", "version 2"},
        {"3006300402010030", "a truncated subject"},
        {"30ff", "a length past the end"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char der[64];
        size_t n = strlen(cases[i].hex) / 2;
        struct kf_csr *csr = NULL;
        for (size_t j = 0; j < n; j++)
            sscanf(cases[i].hex + 2 * j, "%2hhx", &der[j]);
        if (kf_csr_parse(der, n, &csr) != KF_E_MALFORMED) fail_msg("accepted: %s", cases[i].why);
        assert_null(csr);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_parse_check),
        cmocka_unit_test(test_longest_id_csr),
        cmocka_unit_test(test_broken_self_signature),
        cmocka_unit_test(test_ecdsa_null_parameter),
        cmocka_unit_test(test_rules_with_openssl_csrs),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_agrees_with_openssl),
        cmocka_unit_test(test_tampered_requests),
        cmocka_unit_test(test_malformed_structures),
        cmocka_unit_test(test_challenge_password),
        cmocka_unit_test(test_explicit_curve_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
