/* pki_cert: profiles checked by openssl as an independent judge; parsing; CA checks. */
#include "testutil.h"

#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/ident.h"
#include "common/pki_cert.h"

struct fixture {
    struct kf_test_pki pki;
    char root[1024], chain[1024];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    kf_test_pki_make(&f->pki, KF_KEY_EC_P256);
    snprintf(f->root, sizeof(f->root), "%s", kf_test_path("root.pem"));
    snprintf(f->chain, sizeof(f->chain), "%s", kf_test_path("issuing.pem"));
    kf_test_save_cert(f->pki.root, f->root);
    kf_test_save_cert(f->pki.issuing, f->chain);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_test_pki_free(&f->pki);
    free(f);
    return 0;
}

/* Runs `openssl x509 -text` on `path` and asserts that each needle appears. */
static void x509_text_has(const char *path, const char *const *needles, size_t n)
{
    char out[1024];
    char *text;
    snprintf(out, sizeof(out), "%s.txt", path);
    assert_int_equal(kf_test_sh("openssl x509 -in '%s' -noout -text > '%s'", path, out), 0);
    text = kf_test_read(out);
    for (size_t i = 0; i < n; i++)
        if (!strstr(text, needles[i]))
            fail_msg("openssl x509 -text of %s lacks \"%s\":\n%s", path, needles[i], text);
    free(text);
}

static void test_ca_profiles(void **state)
{
    struct fixture *f = *state;
    static const char *const root_has[] = {"CA:TRUE", "Certificate Sign, CRL Sign",
                                           "Subject Key Identifier",
                                           "Subject: O = keyfleet tests, CN = Test Root CA"};
    static const char *const issuing_has[] = {"CA:TRUE, pathlen:0", "Certificate Sign, CRL Sign",
                                              "Authority Key Identifier", "Version: 3 (0x2)"};
    x509_text_has(f->root, root_has, 4);
    x509_text_has(f->chain, issuing_has, 4);
    assert_true(kf_cert_is_ca(f->pki.root));
    assert_true(kf_cert_is_self_signed(f->pki.root));
    assert_false(kf_cert_is_self_signed(f->pki.issuing));
    assert_int_equal(kf_test_sh("openssl verify -CAfile '%s' '%s' >/dev/null", f->root, f->chain),
                     0);
}

static void test_device_profile(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *c = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "sensor-7", 0, 0, NULL);
    const char *path = kf_test_path("device.pem");
    static const char *const has[] = {"CA:FALSE", "TLS Web Client Authentication",
                                      "Digital Signature", "URI:urn:keyfleet:device:sensor-7",
                                      "Subject: CN = sensor-7"};
    char cn[64], id[200], serial[KF_SERIAL_HEX_MAX];

    kf_test_save_cert(c, path);
    x509_text_has(path, has, 5);
    assert_int_equal(kf_test_sh("openssl verify -purpose sslclient -CAfile '%s' -untrusted '%s' "
                                "'%s' >/dev/null",
                                f->root, f->chain, path),
                     0);
    /* A client certificate is not a server certificate. */
    assert_int_not_equal(kf_test_sh("openssl verify -purpose sslserver -CAfile '%s' -untrusted "
                                    "'%s' '%s' >/dev/null 2>&1",
                                    f->root, f->chain, path),
                         0);
    KF_OK_OR_FAIL(kf_cert_subject_cn(c, cn, sizeof(cn)));
    assert_string_equal(cn, "sensor-7");
    KF_OK_OR_FAIL(kf_cert_uri_san(c, "urn:keyfleet:device:", id, sizeof(id)));
    assert_string_equal(id, "sensor-7");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_cert_uri_san(c, "urn:keyfleet:service:", id, sizeof(id)));
    kf_cert_serial_hex(c, serial);
    assert_true(strlen(serial) >= 16 && strlen(serial) <= 32);
    assert_false(kf_cert_is_ca(c));
    kf_cert_free(c);
}

static void test_serial_normalize(void **state)
{
    char out[KF_SERIAL_HEX_MAX];
    KF_OK_OR_FAIL(kf_serial_normalize("0F06AB", out));
    assert_string_equal(out, "f06ab");
    KF_OK_OR_FAIL(kf_serial_normalize("0f:06:ab", out));
    assert_string_equal(out, "f06ab");
    KF_OK_OR_FAIL(kf_serial_normalize("0x00f06ab", out));
    assert_string_equal(out, "f06ab");
    KF_OK_OR_FAIL(kf_serial_normalize("00", out));
    assert_string_equal(out, "0");
    KF_EXPECT_ERR(KF_E_INVALID, kf_serial_normalize("", out));
    KF_EXPECT_ERR(KF_E_INVALID, kf_serial_normalize("0x", out));
    KF_EXPECT_ERR(KF_E_INVALID, kf_serial_normalize("xyz", out));
    KF_EXPECT_MSG("serial \"xyz\" is not a hexadecimal number");
    KF_EXPECT_ERR(KF_E_INVALID, kf_serial_normalize(":ab", out));
    KF_EXPECT_ERR(KF_E_INVALID, kf_serial_normalize("ab:", out));
    KF_EXPECT_ERR(KF_E_INVALID,
                  kf_serial_normalize("1234567890123456789012345678901234567890a", out));
}

/* An id of the full 128 characters becomes the CN and the URI SAN, and openssl accepts it. */
static void test_longest_id(void **state)
{
    struct fixture *f = *state;
    char id[KF_ID_MAX + 1], cn[KF_ID_MAX + 1];
    const char *path = kf_test_path("long-id.pem");
    struct kf_cert *c;
    memset(id, 'd', KF_ID_MAX);
    id[KF_ID_MAX] = '\0';
    c = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, id, 0, 0, NULL);
    KF_OK_OR_FAIL(kf_cert_subject_cn(c, cn, sizeof(cn)));
    assert_string_equal(cn, id);
    kf_test_save_cert(c, path);
    assert_int_equal(kf_test_sh("openssl verify -purpose sslclient -CAfile '%s' -untrusted '%s' "
                                "'%s' >/dev/null",
                                f->root, f->chain, path),
                     0);
    kf_cert_free(c);
}

static void test_serials_random_128_bit(void **state)
{
    struct fixture *f = *state;
    char s1[KF_SERIAL_HEX_MAX], s2[KF_SERIAL_HEX_MAX];
    struct kf_cert *a = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "a", 0, 0, NULL);
    struct kf_cert *b = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "a", 0, 0, NULL);
    kf_cert_serial_hex(a, s1);
    kf_cert_serial_hex(b, s2);
    assert_string_not_equal(s1, s2);
    assert_true(strlen(s1) <= 32);
    kf_cert_free(a);
    kf_cert_free(b);
}

static void test_service_and_server_profiles(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *svc = kf_test_issue(&f->pki, KF_PROFILE_SERVICE, "analytics", 0, 0, NULL);
    struct kf_cert *srv = kf_test_issue(&f->pki, KF_PROFILE_SERVER, "keyfleet", 0, 0, NULL);
    const char *svcp = kf_test_path("svc.pem"), *srvp = kf_test_path("srv.pem");
    static const char *const svc_has[] = {"URI:urn:keyfleet:service:analytics",
                                          "URI:urn:keyfleet:role:reader", "OU = reader",
                                          "TLS Web Client Authentication"};
    static const char *const srv_has[] = {"TLS Web Server Authentication", "DNS:localhost",
                                          "DNS:hub.example.com", "IP Address:127.0.0.1",
                                          "IP Address:0:0:0:0:0:0:0:1"};
    kf_test_save_cert(svc, svcp);
    kf_test_save_cert(srv, srvp);
    x509_text_has(svcp, svc_has, 4);
    x509_text_has(srvp, srv_has, 5);
    assert_int_equal(kf_test_sh("openssl verify -purpose sslserver -CAfile '%s' -untrusted '%s' "
                                "-verify_hostname hub.example.com '%s' >/dev/null",
                                f->root, f->chain, srvp),
                     0);
    assert_int_equal(kf_test_sh("openssl verify -purpose sslserver -CAfile '%s' -untrusted '%s' "
                                "-verify_ip 127.0.0.1 '%s' >/dev/null",
                                f->root, f->chain, srvp),
                     0);
    kf_cert_free(svc);
    kf_cert_free(srv);
}

static void test_every_key_type_verifies(void **state)
{
    enum kf_key_type types[] = {KF_KEY_EC_P384, KF_KEY_ED25519, KF_KEY_RSA2048};
    for (size_t i = 0; i < 3; i++) {
        struct kf_test_pki pki;
        struct kf_cert *dev;
        const char *root = kf_test_path("kt-root.pem"), *iss = kf_test_path("kt-iss.pem"),
                   *devp = kf_test_path("kt-dev.pem");
        kf_test_pki_make(&pki, types[i]);
        dev = kf_test_issue(&pki, KF_PROFILE_DEVICE, "d1", 0, 0, NULL);
        kf_test_save_cert(pki.root, root);
        kf_test_save_cert(pki.issuing, iss);
        kf_test_save_cert(dev, devp);
        if (kf_test_sh("openssl verify -CAfile '%s' -untrusted '%s' '%s' >/dev/null", root, iss,
                       devp) != 0)
            fail_msg("openssl does not verify a chain of %s keys", kf_key_type_name(types[i]));
        kf_cert_free(dev);
        kf_test_pki_free(&pki);
    }
}

/* Built from SPKI bytes (the signer's path): the same certificate, and its key readable. */
static void test_build_from_spki(void **state)
{
    struct fixture *f = *state;
    enum kf_key_type types[] = {KF_KEY_EC_P256, KF_KEY_ED25519, KF_KEY_RSA2048};
    for (size_t i = 0; i < 3; i++) {
        struct kf_key *k = NULL, *back = NULL;
        struct kf_cert *c = NULL;
        struct kf_buf der;
        const char *path = kf_test_path("spki-dev.pem");
        time_t now = time(NULL);
        struct kf_cert_template t = {
            .profile = KF_PROFILE_SERVER, .cn = "srv", .not_before = now, .not_after = now + 3600};
        const char *const dns[] = {"srv.example"};
        char text[2048];
        t.dns_names = dns;
        t.n_dns = 1;
        kf_buf_init(&der, 10000);
        KF_OK_OR_FAIL(kf_key_generate(types[i], &k));
        KF_OK_OR_FAIL(kf_key_public_der(k, &der));
        t.spki = der.data;
        t.spki_len = der.len;
        KF_OK_OR_FAIL(kf_cert_build(&t, f->pki.issuing, f->pki.issuing_key, &c));
        KF_OK_OR_FAIL(kf_cert_public_key(c, &back));
        assert_true(kf_key_public_equal(k, back));
        kf_test_save_cert(c, path);
        assert_int_equal(
            kf_test_sh("openssl verify -purpose sslserver -CAfile '%s' -untrusted '%s' "
                       "'%s' >/dev/null",
                       f->root, f->chain, path),
            0);
        /* RSA server keys also get keyEncipherment. */
        snprintf(
            text, sizeof(text),
            "openssl x509 -in '%s' -noout -text | grep -q 'Digital Signature, Key Encipherment'",
            path);
        assert_int_equal(kf_test_sh("%s", text) == 0, types[i] == KF_KEY_RSA2048);
        kf_key_free(back);
        kf_key_free(k);
        kf_cert_free(c);
        kf_buf_free(&der);
    }
}

static void test_template_errors(void **state)
{
    struct fixture *f = *state;
    struct kf_key *k = NULL;
    struct kf_cert *c = NULL;
    time_t now = time(NULL);
    const char *const bad_dns[] = {"bad_name!.example"};
    struct kf_cert_template t = {.profile = KF_PROFILE_DEVICE,
                                 .cn = "dev-1",
                                 .device_id = "dev-2",
                                 .not_before = now,
                                 .not_after = now + 100};
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    t.key = k;
    KF_EXPECT_ERR(KF_E_INVALID, kf_cert_build(&t, f->pki.issuing, f->pki.issuing_key, &c));
    KF_EXPECT_MSG("differs from device id");
    t.device_id = "Dev 1";
    KF_EXPECT_ERR(KF_E_INVALID, kf_cert_build(&t, f->pki.issuing, f->pki.issuing_key, &c));
    t.device_id = "dev-1";
    t.not_after = now - 1;
    KF_EXPECT_ERR(KF_E_INVALID, kf_cert_build(&t, f->pki.issuing, f->pki.issuing_key, &c));
    KF_EXPECT_MSG("notAfter");
    t.not_after = now + 100;
    /* The signing key must belong to the issuer. */
    KF_EXPECT_ERR(KF_E_INVALID, kf_cert_build(&t, f->pki.issuing, f->pki.root_key, &c));
    KF_EXPECT_MSG("does not belong to the issuer");
    /* Only a root is self-signed. */
    KF_EXPECT_ERR(KF_E_INVALID, kf_cert_build(&t, NULL, k, &c));
    t.profile = KF_PROFILE_SERVER;
    KF_EXPECT_ERR(KF_E_INVALID, kf_cert_build(&t, f->pki.issuing, f->pki.issuing_key, &c));
    KF_EXPECT_MSG("no DNS name or IP address");
    t.dns_names = bad_dns;
    t.n_dns = 1;
    KF_EXPECT_ERR(KF_E_INVALID, kf_cert_build(&t, f->pki.issuing, f->pki.issuing_key, &c));
    KF_EXPECT_MSG("not a valid DNS name");
    assert_null(c);
    kf_key_free(k);
}

static void test_parse(void **state)
{
    struct fixture *f = *state;
    struct kf_buf der, pem;
    struct kf_cert *c = NULL, **chain = NULL;
    char fp1[KF_FINGERPRINT_HEX], fp2[KF_FINGERPRINT_HEX];
    size_t n = 0;
    const char *keyfile = kf_test_path("a.key");
    struct kf_key *k = NULL;

    kf_buf_init(&der, 100000);
    kf_buf_init(&pem, 100000);
    KF_OK_OR_FAIL(kf_cert_der(f->pki.issuing, &der));
    KF_OK_OR_FAIL(kf_cert_parse(der.data, der.len, &c));
    kf_cert_fingerprint(c, fp1);
    kf_cert_fingerprint(f->pki.issuing, fp2);
    assert_string_equal(fp1, fp2);
    kf_cert_free(c);
    c = NULL;
    /* Trailing bytes after the DER are refused. */
    KF_OK_OR_FAIL(kf_buf_append(&der, "x", 1));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_cert_parse(der.data, der.len, &c));
    /* Truncated DER. */
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_cert_parse(der.data, der.len / 2, &c));

    KF_OK_OR_FAIL(kf_cert_pem(f->pki.issuing, &pem));
    KF_OK_OR_FAIL(kf_cert_pem(f->pki.root, &pem));
    KF_OK_OR_FAIL(kf_cert_parse_chain(pem.data, pem.len, &chain, &n));
    assert_int_equal(n, 2);
    kf_cert_chain_free(chain, n);
    /* A truncated PEM file. */
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_cert_parse(pem.data, pem.len / 3, &c));
    KF_EXPECT_MSG("truncated PEM");

    /* A key where a certificate is expected. */
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    KF_OK_OR_FAIL(kf_key_save(k, keyfile, NULL));
    KF_EXPECT_ERR(KF_E_WRONG_TYPE, kf_cert_load_file(keyfile, &c));
    KF_EXPECT_MSG("a.key: holds a PRIVATE KEY, not a certificate");
    KF_EXPECT_ERR(KF_E_IO, kf_cert_load_file(kf_test_path("none.pem"), &c));
    assert_null(c);
    kf_key_free(k);
    kf_buf_free(&der);
    kf_buf_free(&pem);
}

static void test_check_ca(void **state)
{
    struct fixture *f = *state;
    time_t now = time(NULL);
    struct kf_cert *dev = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "d", 0, 0, NULL);
    const char *rsa = kf_test_path("rsa1024-ca.pem"), *rsakey = kf_test_path("rsa1024-ca.key");
    struct kf_cert *weak = NULL;

    KF_OK_OR_FAIL(kf_cert_check_ca(f->pki.root, "root.pem", now));
    KF_EXPECT_ERR(KF_E_POLICY, kf_cert_check_ca(dev, "factory-ca.pem", now));
    KF_EXPECT_MSG("certificate factory-ca.pem is not a CA: basicConstraints CA:FALSE");
    KF_EXPECT_ERR(KF_E_EXPIRED, kf_cert_check_ca(f->pki.root, "old.pem", now + 20L * 365 * 86400));
    KF_EXPECT_MSG("certificate old.pem expired on");
    KF_EXPECT_ERR(KF_E_NOT_YET_VALID, kf_cert_check_ca(f->pki.root, "new.pem", now - 86400));
    assert_int_equal(kf_test_sh("openssl req -x509 -newkey rsa:1024 -nodes -keyout '%s' -out '%s' "
                                "-subj /CN=weak -days 10 2>/dev/null",
                                rsakey, rsa),
                     0);
    KF_OK_OR_FAIL(kf_cert_load_file(rsa, &weak));
    /* openssl dated it when it made it, which may be seconds after `now` on a slow build. */
    KF_EXPECT_ERR(KF_E_POLICY, kf_cert_check_ca(weak, "weak.pem", time(NULL) + 60));
    KF_EXPECT_MSG("RSA 1024");
    kf_cert_free(weak);
    kf_cert_free(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_profiles),
        cmocka_unit_test(test_device_profile),
        cmocka_unit_test(test_serial_normalize),
        cmocka_unit_test(test_longest_id),
        cmocka_unit_test(test_serials_random_128_bit),
        cmocka_unit_test(test_service_and_server_profiles),
        cmocka_unit_test(test_every_key_type_verifies),
        cmocka_unit_test(test_build_from_spki),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_check_ca),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
