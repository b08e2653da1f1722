/*
 * signer: opening a CA's signer (the key must be the certificate's, the certificate a CA), every
 * policy rule refusing with its sentence and without a signature spent, what it issues checked by
 * openssl, and CRLs.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/pki_crl.h"
#include "common/timefmt.h"
#include "server/ca/signer.h"

#define DAY 86400L

struct fixture {
    struct kf_test_pki pki;
    char root[1024], root_key[1024], issuing[1024], issuing_key[1024];
    struct kf_signer *root_signer, *issuer;
    struct kf_buf spki; /* a P-256 key's SubjectPublicKeyInfo */
};

static void save_key(const struct kf_key *k, const char *path)
{
    KF_OK_OR_FAIL(kf_key_save(k, path, NULL));
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct kf_key *k = NULL;

    kf_test_pki_make(&f->pki, KF_KEY_EC_P256);
    snprintf(f->root, sizeof(f->root), "%s", kf_test_path("root.pem"));
    snprintf(f->root_key, sizeof(f->root_key), "%s", kf_test_path("root.key"));
    snprintf(f->issuing, sizeof(f->issuing), "%s", kf_test_path("issuing.pem"));
    snprintf(f->issuing_key, sizeof(f->issuing_key), "%s", kf_test_path("issuing.key"));
    kf_test_save_cert(f->pki.root, f->root);
    kf_test_save_cert(f->pki.issuing, f->issuing);
    save_key(f->pki.root_key, f->root_key);
    save_key(f->pki.issuing_key, f->issuing_key);
    KF_OK_OR_FAIL(kf_signer_open(KF_SIGNER_ROOT, f->root, f->root_key, NULL, &f->root_signer));
    KF_OK_OR_FAIL(kf_signer_open(KF_SIGNER_ISSUING, f->issuing, f->issuing_key, NULL, &f->issuer));
    kf_buf_init(&f->spki, KF_SPKI_MAX);
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    KF_OK_OR_FAIL(kf_key_public_der(k, &f->spki));
    kf_key_free(k);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_signer_free(f->root_signer);
    kf_signer_free(f->issuer);
    kf_buf_free(&f->spki);
    kf_test_pki_free(&f->pki);
    free(f);
    return 0;
}

/* A device request for `id` from a minute ago for `days`. */
static struct kf_sign_request device_req(const struct fixture *f, const char *id, long days)
{
    struct kf_sign_request r;
    time_t now = time(NULL);
    memset(&r, 0, sizeof(r));
    r.profile = KF_PROFILE_DEVICE;
    r.spki = f->spki.data;
    r.spki_len = f->spki.len;
    r.cn = id;
    r.device_id = id;
    r.org = "unit";
    r.not_before = now - 60;
    r.not_after = now + days * DAY;
    return r;
}

/* Asserts that `s` refuses `r` with `want` and `needle`, issuing nothing and counting nothing. */
static void expect_refused(struct kf_signer *s, const struct kf_sign_request *r, enum kf_err want,
                           const char *needle)
{
    struct kf_cert *c = (struct kf_cert *)1;
    uint64_t before = kf_signer_count(s);
    KF_EXPECT_ERR(want, kf_signer_issue(s, r, &c));
    KF_EXPECT_MSG(needle);
    assert_null(c);
    assert_int_equal(kf_signer_count(s), before);
}

/* A key of a type keyfleet does not issue for, made by openssl, as SPKI DER into `out`. */
static void openssl_spki(const char *name, const char *genpkey_args, struct kf_buf *out)
{
    const char *path = kf_test_path(name);
    struct kf_key *k = NULL;
    if (kf_test_sh("openssl genpkey %s -out '%s' 2>/dev/null", genpkey_args, path) != 0)
        fail_msg("openssl genpkey %s failed", genpkey_args);
    KF_OK_OR_FAIL(kf_key_load(path, NULL, &k));
    KF_OK_OR_FAIL(kf_key_public_der(k, out));
    kf_key_free(k);
}

static void test_open(void **state)
{
    struct fixture *f = *state;
    char fp1[KF_FINGERPRINT_HEX], fp2[KF_FINGERPRINT_HEX];
    kf_cert_fingerprint(kf_signer_cert(f->issuer), fp1);
    kf_cert_fingerprint(f->pki.issuing, fp2);
    assert_string_equal(fp1, fp2);
    kf_cert_fingerprint(kf_signer_cert(f->root_signer), fp1);
    kf_cert_fingerprint(f->pki.root, fp2);
    assert_string_equal(fp1, fp2);
    assert_string_equal(kf_signer_key_location(f->issuer), "file");
}

static void test_open_refusals(void **state)
{
    struct fixture *f = *state;
    struct kf_signer *s = (struct kf_signer *)1;
    struct kf_key *dk = NULL;
    struct kf_cert *dev = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "dev-1", 0, 0, &dk);
    const char *dev_pem = kf_test_path("dev-1.pem"), *dev_key = kf_test_path("dev-1.key");

    /* Another CA's key. */
    KF_EXPECT_ERR(KF_E_INVALID,
                  kf_signer_open(KF_SIGNER_ISSUING, f->issuing, f->root_key, NULL, &s));
    KF_EXPECT_MSG("the file key is not the key of CA certificate \"");
    KF_EXPECT_MSG("Test Issuing CA");
    assert_null(s);
    /* A certificate that is not a CA, even with its own key. */
    kf_test_save_cert(dev, dev_pem);
    save_key(dk, dev_key);
    s = (struct kf_signer *)1;
    KF_EXPECT_ERR(KF_E_POLICY, kf_signer_open(KF_SIGNER_ISSUING, dev_pem, dev_key, NULL, &s));
    KF_EXPECT_MSG("is not a CA: basicConstraints CA:FALSE");
    assert_null(s);
    /* Missing files, named. */
    KF_EXPECT_ERR(KF_E_IO, kf_signer_open(KF_SIGNER_ISSUING, kf_test_path("none.pem"),
                                          f->issuing_key, NULL, &s));
    KF_EXPECT_MSG("CA certificate: ");
    KF_EXPECT_MSG("none.pem");
    assert_int_not_equal(
        kf_signer_open(KF_SIGNER_ISSUING, f->issuing, kf_test_path("none.key"), NULL, &s), KF_OK);
    KF_EXPECT_MSG("CA key: ");
    KF_EXPECT_MSG("none.key");
    assert_null(s);
    /* kf_signer_wrap takes both objects even when it refuses (the sanitizer build checks). */
    KF_EXPECT_ERR(KF_E_POLICY, kf_signer_wrap(KF_SIGNER_ISSUING, dev, dk, &s));
    assert_null(s);
}

static void test_issue_device(void **state)
{
    struct fixture *f = *state;
    struct kf_sign_request r = device_req(f, "sensor-1", 30);
    struct kf_cert *c = NULL;
    struct kf_key *pub = NULL, *want = NULL;
    const char *path = kf_test_path("sensor-1.pem");
    uint64_t before = kf_signer_count(f->issuer);
    char cn[64], id[64], issuer[KF_NAME_MAX], subject[KF_NAME_MAX];

    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    assert_int_equal(kf_signer_count(f->issuer), before + 1);
    KF_OK_OR_FAIL(kf_cert_subject_cn(c, cn, sizeof(cn)));
    assert_string_equal(cn, "sensor-1");
    KF_OK_OR_FAIL(kf_cert_uri_san(c, "urn:keyfleet:device:", id, sizeof(id)));
    assert_string_equal(id, "sensor-1");
    assert_int_equal(kf_cert_not_before(c), r.not_before);
    assert_int_equal(kf_cert_not_after(c), r.not_after);
    assert_false(kf_cert_is_ca(c));
    kf_cert_issuer(c, issuer, sizeof(issuer));
    kf_cert_subject(f->pki.issuing, subject, sizeof(subject));
    assert_string_equal(issuer, subject);
    KF_OK_OR_FAIL(kf_cert_public_key(c, &pub));
    KF_OK_OR_FAIL(kf_key_parse_public(f->spki.data, f->spki.len, &want));
    assert_true(kf_key_public_equal(pub, want));
    assert_true(kf_cert_signed_by(c, f->pki.issuing_key));
    kf_test_save_cert(c, path);
    assert_int_equal(kf_test_sh("openssl verify -purpose sslclient -CAfile '%s' -untrusted '%s' "
                                "'%s' >/dev/null",
                                f->root, f->issuing, path),
                     0);
    assert_int_equal(kf_test_sh("openssl x509 -in '%s' -noout -subject | grep -q 'O = unit'", path),
                     0);
    kf_key_free(pub);
    kf_key_free(want);
    kf_cert_free(c);
}

static void test_issue_service_server_and_issuing_ca(void **state)
{
    struct fixture *f = *state;
    struct kf_sign_request r = device_req(f, "x", 30);
    static const char *const dns[] = {"hub.example.com"};
    struct kf_cert *svc = NULL, *srv = NULL, *ca = NULL;
    const char *svcp = kf_test_path("svc.pem"), *srvp = kf_test_path("srv.pem"),
               *cap = kf_test_path("sub-ca.pem");
    uint64_t root_before = kf_signer_count(f->root_signer);

    r.profile = KF_PROFILE_SERVICE;
    r.cn = "analytics";
    r.device_id = NULL;
    r.service = "analytics";
    r.role = "reader";
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &svc));
    kf_test_save_cert(svc, svcp);
    assert_int_equal(kf_test_sh("openssl x509 -in '%s' -noout -ext subjectAltName | grep -q "
                                "'URI:urn:keyfleet:service:analytics'",
                                svcp),
                     0);
    r.profile = KF_PROFILE_SERVER;
    r.cn = "hub.example.com";
    r.dns_names = dns;
    r.n_dns = 1;
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &srv));
    kf_test_save_cert(srv, srvp);
    assert_int_equal(kf_test_sh("openssl verify -purpose sslserver -verify_hostname "
                                "hub.example.com -CAfile '%s' -untrusted '%s' '%s' >/dev/null",
                                f->root, f->issuing, srvp),
                     0);
    /* The root signs issuing CAs, and only those. */
    memset(&r, 0, sizeof(r));
    r.profile = KF_PROFILE_ISSUING_CA;
    r.spki = f->spki.data;
    r.spki_len = f->spki.len;
    r.cn = "Second Issuing CA";
    r.not_before = time(NULL) - 60;
    r.not_after = time(NULL) + 365 * DAY;
    KF_OK_OR_FAIL(kf_signer_issue(f->root_signer, &r, &ca));
    assert_int_equal(kf_signer_count(f->root_signer), root_before + 1);
    assert_true(kf_cert_is_ca(ca));
    kf_test_save_cert(ca, cap);
    assert_int_equal(kf_test_sh("openssl verify -CAfile '%s' '%s' >/dev/null", f->root, cap), 0);
    kf_cert_free(svc);
    kf_cert_free(srv);
    kf_cert_free(ca);
}

static void test_profile_not_for_this_ca(void **state)
{
    struct fixture *f = *state;
    struct kf_sign_request r = device_req(f, "dev-1", 30);
    expect_refused(f->root_signer, &r, KF_E_DENIED,
                   "the root CA does not sign device certificates");
    r.profile = KF_PROFILE_SERVER;
    expect_refused(f->root_signer, &r, KF_E_DENIED,
                   "the root CA does not sign server certificates");
    r.profile = KF_PROFILE_ISSUING_CA;
    expect_refused(f->issuer, &r, KF_E_DENIED,
                   "the issuing CA does not sign issuing-ca certificates");
    r.profile = KF_PROFILE_ROOT_CA;
    expect_refused(f->issuer, &r, KF_E_DENIED, "the issuing CA does not sign root-ca certificates");
    expect_refused(f->root_signer, &r, KF_E_DENIED,
                   "the root CA does not sign root-ca certificates");
    r.profile = (enum kf_profile)7;
    expect_refused(f->issuer, &r, KF_E_INVALID, "sign request: unknown profile 7");
}

static void test_validity_rules(void **state)
{
    struct fixture *f = *state;
    struct kf_signer_policy p;
    struct kf_sign_request r = device_req(f, "dev-1", 731);
    struct kf_cert *c = NULL;
    time_t now = time(NULL);

    /* The default policy: two years for a device. */
    expect_refused(f->issuer, &r, KF_E_DENIED, "device certificates get at most 730");
    r = device_req(f, "dev-1", 730);
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);

    /* A policy of 30 days: 30 days (from a minute ago) pass, 31 do not. */
    kf_signer_policy_default(&p);
    p.max_days[KF_PROFILE_DEVICE] = 30;
    kf_signer_set_policy(f->issuer, &p);
    r = device_req(f, "dev-1", 31);
    expect_refused(f->issuer, &r, KF_E_DENIED,
                   "sign request: 31 days of validity; device certificates get at most 30");
    r = device_req(f, "dev-1", 30);
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);
    /* Other profiles keep their own limit. */
    r.profile = KF_PROFILE_SERVICE;
    r.cn = "svc";
    r.device_id = NULL;
    r.service = "svc";
    r.role = "reader";
    r.not_after = now + 700 * DAY;
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);
    /* A service certificate names its service, and a role keyfleet knows. */
    r.cn = "other";
    expect_refused(f->issuer, &r, KF_E_INVALID, "a service certificate's CN must be its name");
    r.cn = "svc";
    r.role = "admin";
    expect_refused(f->issuer, &r, KF_E_DENIED, "a service's role must be reader or commander");
    r.role = "reader";
    r.service = "Not A Name";
    expect_refused(f->issuer, &r, KF_E_INVALID, "service name");

    /* Backdating: five minutes of clock skew pass, more does not. */
    r = device_req(f, "dev-1", 10);
    r.not_before = now - 240;
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);
    r.not_before = now - 400;
    expect_refused(f->issuer, &r, KF_E_DENIED,
                   "sign request: notBefore is more than 300 seconds in the past");
    p.backdate_seconds = 3600;
    kf_signer_set_policy(f->issuer, &p);
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);
    kf_signer_policy_default(&p);
    kf_signer_set_policy(f->issuer, &p);

    /* Validity that ends before it begins. */
    r = device_req(f, "dev-1", 10);
    r.not_after = r.not_before;
    expect_refused(f->issuer, &r, KF_E_INVALID, "sign request: validity ends before it begins");
}

static void test_outliving_the_ca(void **state)
{
    struct fixture *f = *state;
    struct kf_cert_template t;
    struct kf_key *k = NULL;
    struct kf_cert *ca = NULL, *c = NULL;
    struct kf_signer *s = NULL;
    struct kf_sign_request r = device_req(f, "dev-1", 20);
    time_t now = time(NULL);
    char when[KF_TIME_TEXT_MAX], want[128];

    /* An issuing CA with ten days left. */
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_ISSUING_CA;
    t.cn = "Short Issuing CA";
    t.key = k;
    t.not_before = now - 3600;
    t.not_after = now + 10 * DAY;
    KF_OK_OR_FAIL(kf_cert_build(&t, f->pki.root, f->pki.root_key, &ca));
    KF_OK_OR_FAIL(kf_signer_wrap(KF_SIGNER_ISSUING, ca, k, &s));
    kf_time_rfc3339(now + 10 * DAY, when, sizeof(when));
    snprintf(want, sizeof(want), "the certificate would outlive its CA, which expires on %s", when);
    expect_refused(s, &r, KF_E_DENIED, want);
    r = device_req(f, "dev-1", 9);
    KF_OK_OR_FAIL(kf_signer_issue(s, &r, &c));
    assert_int_equal(kf_signer_count(s), 1);
    kf_cert_free(c);
    kf_signer_free(s);
}

static void test_key_rules(void **state)
{
    struct fixture *f = *state;
    struct kf_signer_policy p;
    struct kf_buf rsa1024, p521, ed, rsa2048;
    struct kf_sign_request r = device_req(f, "dev-1", 10);
    struct kf_key *k = NULL;
    struct kf_cert *c = NULL;

    kf_buf_init(&rsa1024, KF_SPKI_MAX);
    kf_buf_init(&p521, KF_SPKI_MAX);
    kf_buf_init(&ed, KF_SPKI_MAX);
    kf_buf_init(&rsa2048, KF_SPKI_MAX);
    openssl_spki("rsa1024.key", "-algorithm RSA -pkeyopt rsa_keygen_bits:1024", &rsa1024);
    openssl_spki("p521.key", "-algorithm EC -pkeyopt ec_paramgen_curve:P-521", &p521);
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_ED25519, &k));
    KF_OK_OR_FAIL(kf_key_public_der(k, &ed));
    kf_key_free(k);
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_RSA2048, &k));
    KF_OK_OR_FAIL(kf_key_public_der(k, &rsa2048));
    kf_key_free(k);

    r.spki = rsa1024.data;
    r.spki_len = rsa1024.len;
    expect_refused(f->issuer, &r, KF_E_DENIED,
                   "sign request: the key to certify is RSA 1024: RSA keys must have at least "
                   "2048 bits");
    r.spki = p521.data;
    r.spki_len = p521.len;
    expect_refused(f->issuer, &r, KF_E_DENIED, "which is not an allowed key type");
    KF_EXPECT_MSG("sign request: the key to certify is EC ");

    /* What the default policy allows, a narrower one refuses. */
    r.spki = ed.data;
    r.spki_len = ed.len;
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);
    r.spki = rsa2048.data;
    r.spki_len = rsa2048.len;
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);
    kf_signer_policy_default(&p);
    p.allowed_keys =
        KF_KEY_BIT(KF_KEY_EC_P256) | KF_KEY_BIT(KF_KEY_RSA2048) | KF_KEY_BIT(KF_KEY_RSA3072);
    p.min_rsa_bits = 3072;
    kf_signer_set_policy(f->issuer, &p);
    r.spki = ed.data;
    r.spki_len = ed.len;
    expect_refused(f->issuer, &r, KF_E_DENIED,
                   "the key to certify is Ed25519, which is not an allowed key type");
    r.spki = rsa2048.data;
    r.spki_len = rsa2048.len;
    expect_refused(f->issuer, &r, KF_E_DENIED,
                   "the key to certify is RSA 2048: RSA keys must have at least 3072 bits");
    r.spki = f->spki.data;
    r.spki_len = f->spki.len;
    KF_OK_OR_FAIL(kf_signer_issue(f->issuer, &r, &c));
    kf_cert_free(c);
    kf_signer_policy_default(&p);
    kf_signer_set_policy(f->issuer, &p);

    kf_buf_free(&rsa1024);
    kf_buf_free(&p521);
    kf_buf_free(&ed);
    kf_buf_free(&rsa2048);
}

static void test_malformed_keys(void **state)
{
    struct fixture *f = *state;
    struct kf_sign_request r = device_req(f, "dev-1", 10);
    unsigned char big[KF_SPKI_MAX + 1], bad_point[256];
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};

    r.spki = NULL;
    r.spki_len = 0;
    expect_refused(f->issuer, &r, KF_E_MALFORMED, "sign request: no public key, or one over 2048");
    memset(big, 0x30, sizeof(big));
    r.spki = big;
    r.spki_len = sizeof(big);
    expect_refused(f->issuer, &r, KF_E_MALFORMED, "sign request: no public key, or one over 2048");
    r.spki = junk;
    r.spki_len = sizeof(junk);
    expect_refused(f->issuer, &r, KF_E_MALFORMED,
                   "sign request: the key to certify is not a DER SubjectPublicKeyInfo");
    r.spki = f->spki.data;
    r.spki_len = f->spki.len - 1;
    expect_refused(f->issuer, &r, KF_E_MALFORMED, "is not a DER SubjectPublicKeyInfo");
    /* A P-256 key whose point is neither compressed nor uncompressed. */
    assert_true(f->spki.len <= sizeof(bad_point));
    memcpy(bad_point, f->spki.data, f->spki.len);
    assert_int_equal(bad_point[f->spki.len - 65], 0x04);
    bad_point[f->spki.len - 65] = 0x07;
    r.spki = bad_point;
    r.spki_len = f->spki.len;
    expect_refused(f->issuer, &r, KF_E_MALFORMED, "is not a valid EC P-256 point");
}

static void test_device_names(void **state)
{
    struct fixture *f = *state;
    struct kf_sign_request r = device_req(f, "dev-1", 10);
    r.cn = "dev-2";
    expect_refused(f->issuer, &r, KF_E_INVALID, "a device certificate's CN must be its id");
    r.cn = NULL;
    expect_refused(f->issuer, &r, KF_E_INVALID, "a device certificate's CN must be its id");
    r.cn = "Dev 1";
    r.device_id = "Dev 1";
    expect_refused(f->issuer, &r, KF_E_INVALID, "sign request: device id \"Dev 1\"");
    r.device_id = NULL;
    expect_refused(f->issuer, &r, KF_E_INVALID, "sign request: device id is empty");
}

static void test_crl(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *dev = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "gone", 0, 0, NULL);
    char serial[KF_SERIAL_HEX_MAX], upper[KF_SERIAL_HEX_MAX + 1];
    struct kf_revoked rv;
    struct kf_crl *crl = (struct kf_crl *)1;
    struct kf_buf pem;
    const char *path = kf_test_path("signer-crl.pem");
    time_t now = time(NULL);
    uint64_t before;
    int reason = -1;

    kf_cert_serial_hex(dev, serial);
    rv.serial_hex = serial;
    rv.revoked_at = now - 10;
    rv.reason = KF_CRL_KEY_COMPROMISE;
    before = kf_signer_count(f->root_signer);
    KF_EXPECT_ERR(KF_E_DENIED,
                  kf_signer_crl(f->root_signer, &rv, 1, 1, now - 60, now + 3600, &crl));
    KF_EXPECT_MSG("only the issuing CA signs CRLs");
    assert_null(crl);
    assert_int_equal(kf_signer_count(f->root_signer), before);
    before = kf_signer_count(f->issuer);
    crl = (struct kf_crl *)1;
    KF_EXPECT_ERR(KF_E_INVALID, kf_signer_crl(f->issuer, &rv, 1, 0, now - 60, now + 3600, &crl));
    KF_EXPECT_MSG("CRL numbers start at 1");
    assert_null(crl);
    assert_int_equal(kf_signer_count(f->issuer), before);

    KF_OK_OR_FAIL(kf_signer_crl(f->issuer, &rv, 1, 42, now - 60, now + 3600, &crl));
    assert_int_equal(kf_signer_count(f->issuer), before + 1);
    assert_int_equal(kf_crl_number(crl), 42);
    assert_int_equal(kf_crl_count(crl), 1);
    assert_true(kf_crl_lists(crl, serial, &reason));
    assert_int_equal(reason, KF_CRL_KEY_COMPROMISE);
    assert_int_equal(kf_crl_next_update(crl), now + 3600);
    assert_true(kf_crl_signed_by(crl, f->pki.issuing));
    kf_buf_init(&pem, 1 << 20);
    KF_OK_OR_FAIL(kf_crl_pem(crl, &pem));
    kf_test_write(path, kf_buf_str(&pem));
    /* openssl: the signature verifies, and the serial is listed with its reason. */
    assert_int_equal(
        kf_test_sh("openssl crl -in '%s' -CAfile '%s' -noout 2>&1 | grep -q 'verify OK'", path,
                   f->issuing),
        0);
    for (size_t i = 0; serial[i]; i++)
        upper[i] = (char)(serial[i] >= 'a' && serial[i] <= 'f' ? serial[i] - 32 : serial[i]);
    upper[strlen(serial)] = '\0';
    assert_int_equal(kf_test_sh("openssl crl -in '%s' -noout -text | grep -Eq 'Serial Number: "
                                "0?%s$' && openssl crl -in '%s' -noout -text | grep -q 'Key "
                                "Compromise' && openssl crl -in '%s' -noout -text | grep -A1 "
                                "'CRL Number' | grep -q '42'",
                                path, upper, path, path),
                     0);
    kf_buf_free(&pem);
    kf_crl_free(crl);
    kf_cert_free(dev);
}

/* Threads share a signer: every signature is counted once. */
struct thread_arg {
    struct fixture *f;
    int ok;
};

static void *issue_thread(void *arg)
{
    struct thread_arg *a = arg;
    for (int i = 0; i < 10; i++) {
        struct kf_sign_request r = device_req(a->f, "dev-t", 10);
        struct kf_cert *c = NULL;
        if (kf_signer_issue(a->f->issuer, &r, &c) == KF_OK) a->ok++;
        kf_cert_free(c);
    }
    return NULL;
}

static void test_count_across_threads(void **state)
{
    struct fixture *f = *state;
    pthread_t th[4];
    struct thread_arg args[4];
    uint64_t before = kf_signer_count(f->issuer);
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){f, 0};
        assert_int_equal(pthread_create(&th[i], NULL, issue_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 10);
    }
    assert_int_equal(kf_signer_count(f->issuer), before + 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_open_refusals),
        cmocka_unit_test(test_issue_device),
        cmocka_unit_test(test_issue_service_server_and_issuing_ca),
        cmocka_unit_test(test_profile_not_for_this_ca),
        cmocka_unit_test(test_validity_rules),
        cmocka_unit_test(test_outliving_the_ca),
        cmocka_unit_test(test_key_rules),
        cmocka_unit_test(test_malformed_keys),
        cmocka_unit_test(test_device_names),
        cmocka_unit_test(test_crl),
        cmocka_unit_test(test_count_across_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
