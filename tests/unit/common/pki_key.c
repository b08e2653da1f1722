/* pki_key: generation, files, passphrases, public keys, policy, signing. */
#include "testutil.h"

#include <string.h>
#include <sys/stat.h>

#include "common/pki_key.h"

static void test_generate_each_type(void **state)
{
    static const struct {
        enum kf_key_type type;
        const char *desc;
        int bits;
    } cases[] = {
        {KF_KEY_EC_P256, "EC P-256", 256},  {KF_KEY_EC_P384, "EC P-384", 384},
        {KF_KEY_ED25519, "Ed25519", 256},   {KF_KEY_RSA2048, "RSA 2048", 2048},
        {KF_KEY_RSA3072, "RSA 3072", 3072},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kf_key *k = NULL;
        char desc[64], fp[KF_FINGERPRINT_HEX];
        KF_OK_OR_FAIL(kf_key_generate(cases[i].type, &k));
        assert_int_equal(kf_key_type(k), cases[i].type);
        kf_key_describe(k, desc, sizeof(desc));
        assert_string_equal(desc, cases[i].desc);
        assert_int_equal(kf_key_bits(k), cases[i].bits);
        assert_string_equal(kf_key_location(k), "memory");
        KF_OK_OR_FAIL(kf_key_fingerprint(k, fp));
        assert_int_equal(strlen(fp), 64);
        KF_OK_OR_FAIL(kf_key_check_allowed(k, KF_KEY_ALLOWED_DEFAULT, 2048, "the key"));
        kf_key_free(k);
    }
    KF_EXPECT_ERR(KF_E_INVALID, kf_key_generate(KF_KEY_OTHER, &(struct kf_key *){NULL}));
}

static void test_type_names(void **state)
{
    assert_int_equal(kf_key_type_parse("p256"), KF_KEY_EC_P256);
    assert_int_equal(kf_key_type_parse("P-256") == KF_KEY_NONE, 1);
    assert_int_equal(kf_key_type_parse("EC-P384"), KF_KEY_EC_P384);
    assert_int_equal(kf_key_type_parse("ed25519"), KF_KEY_ED25519);
    assert_int_equal(kf_key_type_parse("rsa3072"), KF_KEY_RSA3072);
    assert_int_equal(kf_key_type_parse("dsa"), KF_KEY_NONE);
    assert_int_equal(kf_key_type_parse(NULL), KF_KEY_NONE);
    assert_string_equal(kf_key_type_name(KF_KEY_RSA2048), "rsa2048");
}

static void test_save_and_load(void **state)
{
    struct kf_key *k = NULL, *back = NULL;
    const char *path = kf_test_path("p256.key");
    struct stat st;
    char uri[1100];

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    KF_OK_OR_FAIL(kf_key_save(k, path, NULL));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Never overwrites. */
    KF_EXPECT_ERR(KF_E_EXISTS, kf_key_save(k, path, NULL));
    KF_EXPECT_MSG("already exists");

    KF_OK_OR_FAIL(kf_key_load(path, NULL, &back));
    assert_true(kf_key_public_equal(k, back));
    assert_string_equal(kf_key_location(back), "file");
    kf_key_free(back);
    snprintf(uri, sizeof(uri), "file:%s", path);
    KF_OK_OR_FAIL(kf_key_load(uri, NULL, &back));
    assert_true(kf_key_public_equal(k, back));
    kf_key_free(back);
    /* openssl reads what we wrote. */
    assert_int_equal(kf_test_sh("openssl pkey -in '%s' -noout", path), 0);
    kf_key_free(k);
}

static void test_passphrase(void **state)
{
    struct kf_key *k = NULL, *back = NULL;
    const char *path = kf_test_path("enc.key");
    char *text;

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P384, &k));
    KF_OK_OR_FAIL(kf_key_save(k, path, "correct horse"));
    text = kf_test_read(path);
    assert_non_null(strstr(text, "BEGIN ENCRYPTED PRIVATE KEY"));
    free(text);
    KF_EXPECT_ERR(KF_E_DENIED, kf_key_load(path, NULL, &back));
    KF_EXPECT_MSG("is encrypted and no passphrase was given");
    KF_EXPECT_ERR(KF_E_DENIED, kf_key_load(path, "wrong", &back));
    KF_EXPECT_MSG("wrong passphrase");
    assert_null(back);
    KF_OK_OR_FAIL(kf_key_load(path, "correct horse", &back));
    assert_true(kf_key_public_equal(k, back));
    kf_key_free(back);
    kf_key_free(k);
}

static void test_load_errors(void **state)
{
    struct kf_key *k = NULL;
    struct kf_test_pki pki;
    const char *certpath = kf_test_path("cert.pem");
    const char *trunc = kf_test_path("trunc.key");
    const char *garbage = kf_test_path("garbage.key");

    KF_EXPECT_ERR(KF_E_IO, kf_key_load(kf_test_path("nope.key"), NULL, &k));
    KF_EXPECT_MSG("nope.key");
    KF_EXPECT_ERR(KF_E_INVALID, kf_key_load("", NULL, &k));
    KF_EXPECT_ERR(KF_E_UNSUPPORTED, kf_key_load("vault:secret", NULL, &k));
    KF_EXPECT_MSG("unknown scheme");

    kf_test_pki_make(&pki, KF_KEY_EC_P256);
    kf_test_save_cert(pki.root, certpath);
    KF_EXPECT_ERR(KF_E_WRONG_TYPE, kf_key_load(certpath, NULL, &k));
    KF_EXPECT_MSG("holds a CERTIFICATE, not a private key");
    kf_test_pki_free(&pki);

    kf_test_write(trunc, "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n");
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_key_load(trunc, NULL, &k));
    kf_test_write(garbage, "this is not a key\n");
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_key_load(garbage, NULL, &k));
    KF_EXPECT_MSG("neither a PEM nor a DER private key");
    assert_null(k);
}

static void test_openssl_made_keys(void **state)
{
    struct kf_key *k = NULL;
    const char *sec1 = kf_test_path("sec1.key");
    const char *rsa1024 = kf_test_path("rsa1024.key");
    const char *p521 = kf_test_path("p521.key");
    char desc[64];

    assert_int_equal(
        kf_test_sh("openssl ecparam -name prime256v1 -genkey -noout -out '%s' 2>/dev/null", sec1),
        0);
    KF_OK_OR_FAIL(kf_key_load(sec1, NULL, &k));
    assert_int_equal(kf_key_type(k), KF_KEY_EC_P256);
    kf_key_free(k);

    assert_int_equal(
        kf_test_sh(
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out '%s' 2>/dev/null",
            rsa1024),
        0);
    KF_OK_OR_FAIL(kf_key_load(rsa1024, NULL, &k));
    assert_int_equal(kf_key_type(k), KF_KEY_OTHER);
    kf_key_describe(k, desc, sizeof(desc));
    assert_string_equal(desc, "RSA 1024");
    KF_EXPECT_ERR(KF_E_POLICY, kf_key_check_allowed(k, KF_KEY_ALLOWED_DEFAULT, 2048, "the CA key"));
    KF_EXPECT_MSG("the CA key is RSA 1024: RSA keys must have at least 2048 bits");
    kf_key_free(k);

    assert_int_equal(
        kf_test_sh(
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out '%s' 2>/dev/null",
            p521),
        0);
    KF_OK_OR_FAIL(kf_key_load(p521, NULL, &k));
    KF_EXPECT_ERR(KF_E_POLICY, kf_key_check_allowed(k, KF_KEY_ALLOWED_DEFAULT, 2048, "the key"));
    KF_EXPECT_MSG("not an allowed key type");
    kf_key_free(k);
}

static void test_public_keys(void **state)
{
    struct kf_key *k = NULL, *pub = NULL;
    struct kf_buf pem, der;
    struct kf_test_pki pki;
    const char *certpath = kf_test_path("pub-cert.pem");

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_ED25519, &k));
    kf_buf_init(&pem, 10000);
    kf_buf_init(&der, 10000);
    KF_OK_OR_FAIL(kf_key_public_pem(k, &pem));
    KF_OK_OR_FAIL(kf_key_parse_public(pem.data, pem.len, &pub));
    assert_true(kf_key_public_equal(k, pub));
    assert_string_equal(kf_key_location(pub), "none");
    kf_key_free(pub);
    KF_OK_OR_FAIL(kf_key_public_der(k, &der));
    KF_OK_OR_FAIL(kf_key_parse_public(der.data, der.len, &pub));
    assert_true(kf_key_public_equal(k, pub));
    kf_key_free(pub);
    pub = NULL;

    kf_test_pki_make(&pki, KF_KEY_EC_P256);
    kf_test_save_cert(pki.root, certpath);
    KF_EXPECT_ERR(KF_E_WRONG_TYPE, kf_key_load_public_file(certpath, &pub));
    KF_EXPECT_MSG("holds a CERTIFICATE, not a PUBLIC KEY");
    kf_test_pki_free(&pki);
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_key_parse_public("\x30\x03\x02\x01\x01", 5, &pub));
    assert_null(pub);
    kf_buf_free(&pem);
    kf_buf_free(&der);
    kf_key_free(k);
}

static void test_sign_verify(void **state)
{
    enum kf_key_type types[] = {KF_KEY_EC_P256, KF_KEY_EC_P384, KF_KEY_ED25519, KF_KEY_RSA2048};
    for (size_t i = 0; i < 4; i++) {
        struct kf_key *k = NULL, *other = NULL;
        struct kf_buf sig;
        kf_buf_init(&sig, 4096);
        KF_OK_OR_FAIL(kf_key_generate(types[i], &k));
        KF_OK_OR_FAIL(kf_key_generate(types[i], &other));
        KF_OK_OR_FAIL(kf_key_sign(k, "message", 7, &sig));
        KF_OK_OR_FAIL(kf_key_verify(k, "message", 7, sig.data, sig.len));
        KF_EXPECT_ERR(KF_E_BAD_SIGNATURE, kf_key_verify(k, "massage", 7, sig.data, sig.len));
        KF_EXPECT_ERR(KF_E_BAD_SIGNATURE, kf_key_verify(other, "message", 7, sig.data, sig.len));
        kf_buf_free(&sig);
        kf_key_free(k);
        kf_key_free(other);
    }
}

static void test_spki_check(void **state)
{
    enum kf_key_type types[] = {KF_KEY_EC_P256, KF_KEY_EC_P384, KF_KEY_ED25519, KF_KEY_RSA2048};
    struct kf_key *k = NULL;
    struct kf_buf der;
    enum kf_key_type got;
    const char *p521 = kf_test_path("spki-p521.key"), *rsa = kf_test_path("spki-rsa1024.key");

    kf_buf_init(&der, 10000);
    for (size_t i = 0; i < 4; i++) {
        KF_OK_OR_FAIL(kf_key_generate(types[i], &k));
        kf_buf_reset(&der);
        KF_OK_OR_FAIL(kf_key_public_der(k, &der));
        KF_OK_OR_FAIL(kf_spki_check(der.data, der.len, KF_KEY_ALLOWED_DEFAULT, 2048, "k", &got));
        assert_int_equal(got, types[i]);
        /* The same key refused when its type is not allowed. */
        KF_EXPECT_ERR(KF_E_POLICY, kf_spki_check(der.data, der.len, 0, 2048, "the key", &got));
        KF_EXPECT_MSG("which is not an allowed key type");
        /* Truncated and padded encodings are malformed. */
        KF_EXPECT_ERR(KF_E_MALFORMED, kf_spki_check(der.data, der.len - 1, ~0u, 0, "k", NULL));
        KF_OK_OR_FAIL(kf_buf_append(&der, "", 1));
        KF_EXPECT_ERR(KF_E_MALFORMED, kf_spki_check(der.data, der.len, ~0u, 0, "k", NULL));
        kf_key_free(k);
        k = NULL;
    }
    /* An EC point that is not a point encoding of its curve. */
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    kf_buf_reset(&der);
    KF_OK_OR_FAIL(kf_key_public_der(k, &der));
    der.data[der.len - 65] = 0x05;
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_spki_check(der.data, der.len, ~0u, 0, "the key", NULL));
    KF_EXPECT_MSG("not a valid EC P-256 point");
    /* The right length and prefix, but not a point on the curve: all zeros, and one bit off. */
    der.data[der.len - 65] = 0x04;
    der.data[der.len - 1] ^= 0x01;
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_spki_check(der.data, der.len, ~0u, 0, "the key", NULL));
    memset(der.data + der.len - 64, 0, 64);
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_spki_check(der.data, der.len, ~0u, 0, "the key", NULL));
    KF_EXPECT_MSG("not a valid EC P-256 point");
    kf_key_free(k);
    k = NULL;

    assert_int_equal(kf_test_sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 "
                                "-out '%s' 2>/dev/null",
                                p521),
                     0);
    KF_OK_OR_FAIL(kf_key_load(p521, NULL, &k));
    kf_buf_reset(&der);
    KF_OK_OR_FAIL(kf_key_public_der(k, &der));
    KF_EXPECT_ERR(KF_E_POLICY,
                  kf_spki_check(der.data, der.len, KF_KEY_ALLOWED_DEFAULT, 2048, "the key", &got));
    KF_EXPECT_MSG("EC secp521r1, which is not an allowed key type");
    assert_int_equal(got, KF_KEY_OTHER);
    kf_key_free(k);
    k = NULL;

    assert_int_equal(kf_test_sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 "
                                "-out '%s' 2>/dev/null",
                                rsa),
                     0);
    KF_OK_OR_FAIL(kf_key_load(rsa, NULL, &k));
    kf_buf_reset(&der);
    KF_OK_OR_FAIL(kf_key_public_der(k, &der));
    KF_EXPECT_ERR(KF_E_POLICY,
                  kf_spki_check(der.data, der.len, KF_KEY_ALLOWED_DEFAULT, 2048, "the key", NULL));
    KF_EXPECT_MSG("the key is RSA 1024: RSA keys must have at least 2048 bits");
    kf_key_free(k);
    KF_EXPECT_ERR(KF_E_MALFORMED,
                  kf_spki_check((const unsigned char *)"\x30\x00", 2, ~0u, 0, "k", NULL));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_spki_check(NULL, 0, ~0u, 0, "k", NULL));
    kf_buf_free(&der);
}

static void test_uri_redact(void **state)
{
    char out[256];
    kf_key_uri_redact("pkcs11:token=a;object=b?module-path=/m.so&pin-value=1234&x=y", out,
                      sizeof(out));
    assert_string_equal(out, "pkcs11:token=a;object=b?module-path=/m.so&pin-value=***&x=y");
    kf_key_uri_redact("pkcs11:token=a?pin-value=1234", out, sizeof(out));
    assert_string_equal(out, "pkcs11:token=a?pin-value=***");
    kf_key_uri_redact("pkcs11:token=pin-value=1?pin-source=file:/p", out, sizeof(out));
    assert_string_equal(out, "pkcs11:token=pin-value=1?pin-source=file:/p");
    kf_key_uri_redact("/path/pin-value=1.key", out, sizeof(out));
    assert_string_equal(out, "/path/pin-value=1.key");
    kf_key_uri_redact("pkcs11:token=a?pin-value=12345678", out, 20);
    assert_null(strstr(out, "1234"));
}

static void test_pkcs11_needs_module(void **state)
{
    struct kf_key *k = NULL;
    unsetenv("KEYFLEET_PKCS11_MODULE");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_key_load("pkcs11:token=x;object=y;type=private", NULL, &k));
    KF_EXPECT_MSG("names no module");
    KF_EXPECT_ERR(KF_E_INVALID, kf_key_load("pkcs11:token=x?module-path=%zz", NULL, &k));
    KF_EXPECT_MSG("bad percent-encoding");
    /* A PIN file others can read is refused. */
    {
        const char *pin = kf_test_path("pin-open");
        char uri[1200];
        kf_test_write(pin, "1234");
        chmod(pin, 0644);
        snprintf(uri, sizeof(uri), "pkcs11:token=x?module-path=/nonexistent.so&pin-source=file:%s",
                 pin);
        KF_EXPECT_ERR(KF_E_DENIED, kf_key_load(uri, NULL, &k));
        KF_EXPECT_MSG("can be read by others (mode 0644): chmod 600 it");
    }
    /* The PIN never appears in an error message. */
    KF_EXPECT_ERR(KF_E_INVALID,
                  kf_key_load("pkcs11:token=x?pin-value=s3cr3t&module-path=%zz", NULL, &k));
    assert_null(strstr(kf_errmsg(), "s3cr3t"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_each_type),  cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_save_and_load),       cmocka_unit_test(test_passphrase),
        cmocka_unit_test(test_load_errors),         cmocka_unit_test(test_openssl_made_keys),
        cmocka_unit_test(test_public_keys),         cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_pkcs11_needs_module), cmocka_unit_test(test_spki_check),
        cmocka_unit_test(test_uri_redact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
