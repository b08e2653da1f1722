/*
 * ca: issuing device certificates (the device and certificate rows, the audit record, the
 * certificate itself judged by openssl), every refusal leaving the store and the signer as they
 * were, revocation with the CRL that follows it, and a published CRL never going backwards.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/pki_crl.h"
#include "common/timefmt.h"
#include "server/ca/ca.h"

#define DAY 86400L

struct fixture {
    struct kf_deploy *d;
    char crl_path[KF_CONF_PATH_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->d = kf_test_deploy_make("ca");
    KF_OK_OR_FAIL(kf_deploy_path(f->d, f->d->cfg.ca.crl_file, f->crl_path, sizeof(f->crl_path)));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_deploy_close(f->d);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static struct kf_cert *issue(struct fixture *f, const char *id, const char *enrollment, int days)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, id);
    struct kf_cert *c = NULL;
    KF_OK_OR_FAIL(kf_ca_issue_device(f->d, KF_TEST_ACTOR, id, enrollment, csr, days, &c));
    kf_csr_free(csr);
    return c;
}

static uint64_t signed_so_far(struct fixture *f)
{
    struct kf_signer *s = NULL;
    KF_OK_OR_FAIL(kf_deploy_issuer(f->d, &s));
    return kf_signer_count(s);
}

/* A CSR made by openssl (`req_args` after "openssl req -new -nodes"). */
static struct kf_csr *openssl_csr(const char *name, const char *req_args)
{
    const char *path = kf_test_path(name);
    struct kf_csr *csr = NULL;
    char *pem;
    if (kf_test_sh("openssl req -new -nodes -keyout '%s.key' -out '%s' %s 2>/dev/null", path, path,
                   req_args) != 0)
        fail_msg("openssl req %s failed", req_args);
    pem = kf_test_read(path);
    KF_OK_OR_FAIL(kf_csr_parse(pem, strlen(pem), &csr));
    free(pem);
    return csr;
}

/*
 * Asserts that issuing for `id` from `csr` fails with `want` and `needle`, and that nothing was
 * signed, stored or audited.
 */
static void expect_issue_refused(struct fixture *f, const char *id, const char *enrollment,
                                 const struct kf_csr *csr, int days, enum kf_err want,
                                 const char *needle)
{
    struct kf_test_state before;
    struct kf_cert *c = (struct kf_cert *)1;
    uint64_t signed_before = signed_so_far(f);
    kf_test_state_take(f->d->store, &before);
    KF_EXPECT_ERR(want, kf_ca_issue_device(f->d, KF_TEST_ACTOR, id, enrollment, csr, days, &c));
    KF_EXPECT_MSG(needle);
    assert_null(c);
    kf_test_state_expect(f->d->store, &before, needle);
    kf_test_state_free(&before);
    if (want != KF_E_NOT_FOUND) assert_int_equal(signed_so_far(f), signed_before);
}

static void save(const struct kf_cert *c, const char *name)
{
    kf_test_save_cert(c, kf_test_path(name));
}

/* openssl verify of the certificate file `name` against the deployment's chain and CRL. */
static int openssl_verify(struct fixture *f, const char *name, int crl_check)
{
    return kf_test_sh("cd '%s' && openssl verify -purpose sslclient -CAfile ca/chain.pem %s%s "
                      "'%s' >/dev/null 2>&1",
                      f->d->dir, crl_check ? "-crl_check -CRLfile " : "",
                      crl_check ? f->crl_path : "", kf_test_path(name));
}

struct enroll_arg {
    const char *id;
};

static enum kf_err enrollment_insert_cb(struct kf_txn *t, void *arg)
{
    struct enroll_arg *a = arg;
    struct kf_enrollment_rec e;
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", a->id);
    e.kind = KF_ENROLL_INDIVIDUAL;
    e.enabled = 1;
    e.verified = 1;
    e.pubkey_pem = "-----BEGIN PUBLIC KEY-----\nMFk=\n-----END PUBLIC KEY-----\n";
    memset(e.key_fingerprint, 'a', 64);
    snprintf(e.allocation, sizeof(e.allocation), "hashed");
    e.created = e.updated = time(NULL);
    return kf_txn_enrollment_insert(t, &e);
}

/* ---- issue ---- */

static void test_issue_new_device(void **state)
{
    struct fixture *f = *state;
    int64_t audit0 = kf_test_audit_count(f->d->store);
    uint64_t signed0 = signed_so_far(f);
    time_t t0 = time(NULL);
    struct kf_cert *c = issue(f, "cam-1", NULL, 0), *c2, *parsed = NULL;
    struct kf_device_rec dev, dev2;
    struct kf_cert_rec r;
    struct kf_test_audit a;
    char serial[KF_SERIAL_HEX_MAX], fp[KF_FINGERPRINT_HEX], cn[64], id[64], when[KF_TIME_TEXT_MAX];
    char object[128], detail[512];

    assert_int_equal(signed_so_far(f), signed0 + 1);
    /* The certificate. */
    KF_OK_OR_FAIL(kf_cert_subject_cn(c, cn, sizeof(cn)));
    assert_string_equal(cn, "cam-1");
    KF_OK_OR_FAIL(kf_cert_uri_san(c, "urn:keyfleet:device:", id, sizeof(id)));
    assert_string_equal(id, "cam-1");
    assert_int_equal(kf_cert_not_after(c) - kf_cert_not_before(c), 30 * DAY + 60);
    assert_true(kf_cert_not_before(c) >= t0 - 60 && kf_cert_not_before(c) <= time(NULL) - 60);
    save(c, "cam-1.pem");
    assert_int_equal(openssl_verify(f, "cam-1.pem", 1), 0);
    assert_int_equal(kf_test_sh("openssl x509 -in '%s' -noout -subject | grep -q 'O = unit, CN "
                                "= cam-1'",
                                kf_test_path("cam-1.pem")),
                     0);

    /* The device, new and active. */
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "cam-1", &dev));
    assert_int_equal(dev.status, KF_DEVICE_ACTIVE);
    assert_string_equal(dev.enrollment, "");
    assert_true(dev.created >= t0 && dev.created <= time(NULL));

    /* The certificate's row says what the certificate says. */
    kf_cert_serial_hex(c, serial);
    kf_cert_fingerprint(c, fp);
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, serial, &r));
    assert_string_equal(r.serial, serial);
    assert_string_equal(r.device_id, "cam-1");
    assert_string_equal(r.profile, "device");
    assert_string_equal(r.issuer, "issuing");
    assert_string_equal(r.subject, "CN=cam-1,O=unit");
    assert_int_equal(r.not_before, kf_cert_not_before(c));
    assert_int_equal(r.not_after, kf_cert_not_after(c));
    assert_int_equal(r.status, KF_CERT_VALID);
    assert_int_equal(r.revoked_at, 0);
    assert_string_equal(r.fingerprint, fp);
    KF_OK_OR_FAIL(kf_cert_parse(r.pem, strlen(r.pem), &parsed));
    kf_cert_fingerprint(parsed, fp);
    assert_string_equal(r.fingerprint, fp);
    kf_cert_free(parsed);
    kf_cert_rec_clear(&r);

    /* One audit record. */
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    snprintf(object, sizeof(object), "cert:%s", serial);
    kf_time_rfc3339(kf_cert_not_after(c), when, sizeof(when));
    snprintf(detail, sizeof(detail),
             "{\"device\":\"cam-1\",\"new_device\":true,\"not_after\":\"%s\",\"profile\":"
             "\"device\"}",
             when);
    kf_test_audit_expect(&a.r[0], "cert.issue", object, detail);
    kf_test_audit_free(&a);

    /* Again, for 5 days: the device is not made again. */
    audit0 = kf_test_audit_count(f->d->store);
    c2 = issue(f, "cam-1", NULL, 5);
    assert_int_equal(kf_cert_not_after(c2) - kf_cert_not_before(c2), 5 * DAY + 60);
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "cam-1", &dev2));
    assert_memory_equal(&dev, &dev2, sizeof(dev));
    assert_int_equal(kf_test_cert_count(f->d->store, "cam-1", KF_CERT_VALID), 2);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    assert_non_null(strstr(a.r[0].detail, "\"new_device\":false"));
    kf_test_audit_free(&a);
    kf_cert_free(c);
    kf_cert_free(c2);
}

static void test_issue_under_enrollment(void **state)
{
    struct fixture *f = *state;
    struct enroll_arg ea = {"line-a"};
    struct kf_device_rec dev;
    struct kf_cert *c;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "cam-2x");

    KF_OK_OR_FAIL(kf_store_write(f->d->store, enrollment_insert_cb, &ea));
    c = issue(f, "cam-2", "line-a", 0);
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "cam-2", &dev));
    assert_string_equal(dev.enrollment, "line-a");
    kf_cert_free(c);
    /* An enrollment that is not there: refused, nothing stored (the signature is spent). */
    expect_issue_refused(f, "cam-2x", "nope", csr, 0, KF_E_NOT_FOUND, "enrollment nope not found");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_device_get(f->d->store, "cam-2x", &dev));
    kf_csr_free(csr);
}

static void test_issue_refuses_bad_days_and_ids(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "cam-3");
    struct kf_csr *upper = kf_test_csr(KF_KEY_EC_P256, "Cam 3");
    struct kf_device_rec dev;
    expect_issue_refused(f, "cam-3", NULL, csr, 31, KF_E_DENIED,
                         "31 days is more than the 30 days device certificates get "
                         "(device_cert_days in keyfleet.conf)");
    expect_issue_refused(f, "cam-3", NULL, csr, 3650, KF_E_DENIED, "3650 days is more than");
    expect_issue_refused(f, "cam-3", NULL, csr, -1, KF_E_INVALID,
                         "a certificate cannot last -1 days");
    expect_issue_refused(f, "Cam 3", NULL, upper, 0, KF_E_INVALID, "device id \"Cam 3\"");
    expect_issue_refused(f, "", NULL, csr, 0, KF_E_INVALID, "device id is empty");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_device_get(f->d->store, "cam-3", &dev));
    kf_csr_free(csr);
    kf_csr_free(upper);
}

static void test_issue_refuses_bad_csrs(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *other = kf_test_csr(KF_KEY_EC_P256, "cam-x");
    struct kf_csr *weak = openssl_csr("weak.csr", "-newkey rsa:1024 -subj /CN=cam-4");
    struct kf_csr *p521 = openssl_csr("p521.csr", "-newkey ec -pkeyopt ec_paramgen_curve:P-521 "
                                                  "-subj /CN=cam-4");
    struct kf_csr *org = openssl_csr("org.csr", "-newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                                                "-subj /O=acme/CN=cam-4");
    struct kf_csr *good = kf_test_csr(KF_KEY_EC_P256, "cam-4"), *forged = NULL;
    struct kf_buf der;
    struct kf_device_rec dev;

    expect_issue_refused(f, "cam-4", NULL, other, 0, KF_E_POLICY,
                         "CSR breaks rule subject_match: its CN \"cam-x\" is not the expected "
                         "\"cam-4\"");
    expect_issue_refused(f, "cam-4", NULL, weak, 0, KF_E_POLICY,
                         "CSR breaks rule key_size: its key is RSA 1024");
    expect_issue_refused(f, "cam-4", NULL, p521, 0, KF_E_POLICY,
                         "CSR breaks rule key_type: its key is EC ");
    expect_issue_refused(f, "cam-4", NULL, org, 0, KF_E_POLICY,
                         "CSR breaks rule subject_extra: its subject holds O");
    /* A CSR whose signature was altered after signing. */
    kf_buf_init(&der, KF_CSR_MAX);
    KF_OK_OR_FAIL(kf_csr_der(good, &der));
    der.data[der.len - 1] ^= 0x01;
    KF_OK_OR_FAIL(kf_csr_parse(der.data, der.len, &forged));
    expect_issue_refused(f, "cam-4", NULL, forged, 0, KF_E_BAD_SIGNATURE,
                         "CSR breaks rule signature");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_device_get(f->d->store, "cam-4", &dev));
    kf_buf_free(&der);
    kf_csr_free(other);
    kf_csr_free(weak);
    kf_csr_free(p521);
    kf_csr_free(org);
    kf_csr_free(good);
    kf_csr_free(forged);
}

static void test_issue_refuses_disabled_and_revoked_devices(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *c = issue(f, "cam-5", NULL, 0);
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "cam-5");

    kf_test_device_set_status(f->d->store, "cam-5", KF_DEVICE_DISABLED);
    expect_issue_refused(f, "cam-5", NULL, csr, 0, KF_E_DISABLED,
                         "device cam-5 is disabled (keyfleet device enable cam-5)");
    kf_test_device_set_status(f->d->store, "cam-5", KF_DEVICE_REVOKED);
    expect_issue_refused(f, "cam-5", NULL, csr, 0, KF_E_REVOKED,
                         "device cam-5 is revoked; revocation is final");
    assert_int_equal(kf_test_cert_count(f->d->store, "cam-5", 0), 1);
    kf_csr_free(csr);
    kf_cert_free(c);
}

static void test_cert_record(void **state)
{
    struct fixture *f = *state;
    struct kf_signer *s = NULL;
    struct kf_cert_rec r;
    char serial[KF_SERIAL_HEX_MAX];

    KF_OK_OR_FAIL(kf_deploy_issuer(f->d, &s));
    KF_OK_OR_FAIL(kf_ca_cert_record(kf_signer_cert(s), KF_PROFILE_ISSUING_CA, "root", NULL, &r));
    kf_cert_serial_hex(kf_signer_cert(s), serial);
    assert_string_equal(r.serial, serial);
    assert_string_equal(r.device_id, "");
    assert_string_equal(r.profile, "issuing-ca");
    assert_string_equal(r.issuer, "root");
    assert_string_equal(r.subject, "CN=unit Issuing CA,O=unit");
    assert_int_equal(r.status, KF_CERT_VALID);
    assert_non_null(strstr(r.pem, "-----BEGIN CERTIFICATE-----"));
    kf_cert_rec_clear(&r);
}

/* ---- revoke ---- */

static void test_revoke(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *c1 = issue(f, "cam-6", NULL, 0), *c2 = issue(f, "cam-6", NULL, 0);
    char s1[KF_SERIAL_HEX_MAX], s2[KF_SERIAL_HEX_MAX], object[128], detail[256];
    struct kf_ca_rec ca;
    struct kf_cert_rec r;
    struct kf_device_rec dev;
    struct kf_test_audit a;
    struct kf_crl *crl;
    int64_t audit0 = kf_test_audit_count(f->d->store), number0, revoked;
    time_t t0 = time(NULL);
    int reason = -1;

    kf_cert_serial_hex(c1, s1);
    kf_cert_serial_hex(c2, s2);
    save(c1, "cam-6a.pem");
    save(c2, "cam-6b.pem");
    kf_test_ca_get(f->d->store, "issuing", &ca);
    number0 = ca.crl_number;
    kf_ca_rec_clear(&ca);

    KF_OK_OR_FAIL(kf_ca_revoke(f->d, KF_TEST_ACTOR, s1, KF_CRL_KEY_COMPROMISE));

    /* The row. */
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, s1, &r));
    assert_int_equal(r.status, KF_CERT_REVOKED);
    assert_int_equal(r.reason, KF_CRL_KEY_COMPROMISE);
    assert_true(r.revoked_at >= t0 && r.revoked_at <= time(NULL));
    kf_cert_rec_clear(&r);
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, s2, &r));
    assert_int_equal(r.status, KF_CERT_VALID);
    kf_cert_rec_clear(&r);
    /* Revoking a certificate leaves its device as it was. */
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "cam-6", &dev));
    assert_int_equal(dev.status, KF_DEVICE_ACTIVE);

    /* The CRL number moved on, and the audit log says both what and why. */
    kf_test_ca_get(f->d->store, "issuing", &ca);
    assert_int_equal(ca.crl_number, number0 + 1);
    kf_ca_rec_clear(&ca);
    revoked = kf_test_cert_count(f->d->store, NULL, KF_CERT_REVOKED);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 2);
    snprintf(object, sizeof(object), "cert:%s", s1);
    kf_test_audit_expect(&a.r[0], "cert.revoke", object,
                         "{\"device\":\"cam-6\",\"reason\":\"key-compromise\"}");
    snprintf(detail, sizeof(detail), "{\"number\":%lld,\"revoked\":%lld}", (long long)(number0 + 1),
             (long long)revoked);
    kf_test_audit_expect(&a.r[1], "crl.publish", "ca:issuing", detail);
    kf_test_audit_free(&a);

    /* The published CRL, read by keyfleet and by openssl. */
    crl = kf_test_crl_load(f->crl_path);
    assert_int_equal(kf_crl_number(crl), number0 + 1);
    assert_int_equal(kf_crl_count(crl), revoked);
    assert_true(kf_crl_lists(crl, s1, &reason));
    assert_int_equal(reason, KF_CRL_KEY_COMPROMISE);
    assert_false(kf_crl_lists(crl, s2, NULL));
    kf_crl_free(crl);
    assert_int_not_equal(openssl_verify(f, "cam-6a.pem", 1), 0);
    assert_int_equal(kf_test_sh("cd '%s' && openssl verify -crl_check -CAfile ca/chain.pem "
                                "-CRLfile '%s' '%s' 2>&1 | grep -q 'certificate revoked'",
                                f->d->dir, f->crl_path, kf_test_path("cam-6a.pem")),
                     0);
    assert_int_equal(openssl_verify(f, "cam-6b.pem", 1), 0);
    assert_int_equal(kf_test_sh("openssl crl -in '%s' -noout -text | grep -iEq 'Serial Number: "
                                "0?%s$'",
                                f->crl_path, s1),
                     0);
    kf_cert_free(c1);
    kf_cert_free(c2);
}

static void test_revoke_refusals(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *c = issue(f, "cam-7", NULL, 0);
    char serial[KF_SERIAL_HEX_MAX], msg[128];
    struct kf_test_state before;
    struct kf_ca_rec ca;
    char *crl_before, *crl_after;

    kf_cert_serial_hex(c, serial);
    KF_OK_OR_FAIL(kf_ca_revoke(f->d, KF_TEST_ACTOR, serial, KF_CRL_SUPERSEDED));
    crl_before = kf_test_read(f->crl_path);
    kf_test_state_take(f->d->store, &before);

    KF_EXPECT_ERR(KF_E_CONFLICT, kf_ca_revoke(f->d, KF_TEST_ACTOR, serial, KF_CRL_UNSPECIFIED));
    snprintf(msg, sizeof(msg), "certificate %s is already revoked", serial);
    KF_EXPECT_MSG(msg);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_ca_revoke(f->d, KF_TEST_ACTOR, "abc123", 0));
    KF_EXPECT_MSG("certificate abc123 not found");
    KF_EXPECT_ERR(KF_E_INVALID, kf_ca_revoke(f->d, KF_TEST_ACTOR, serial, 7));
    KF_EXPECT_MSG("unknown revocation reason 7");
    KF_EXPECT_ERR(KF_E_INVALID, kf_ca_revoke(f->d, KF_TEST_ACTOR, "abc123", -1));
    kf_test_ca_get(f->d->store, "issuing", &ca);
    KF_EXPECT_ERR(KF_E_DENIED, kf_ca_revoke(f->d, KF_TEST_ACTOR, ca.serial, 0));
    snprintf(msg, sizeof(msg), "certificate %s is a CA certificate; keyfleet does not revoke",
             ca.serial);
    KF_EXPECT_MSG(msg);
    kf_ca_rec_clear(&ca);

    kf_test_state_expect(f->d->store, &before, "refused revocations");
    crl_after = kf_test_read(f->crl_path);
    assert_string_equal(crl_after, crl_before);
    free(crl_before);
    free(crl_after);
    kf_test_state_free(&before);
    kf_cert_free(c);
}

/* ---- CRL ---- */

static void test_publish_crl(void **state)
{
    struct fixture *f = *state;
    struct kf_crl *crl = NULL, *newer = NULL, *file;
    struct kf_signer *s = NULL;
    struct kf_buf pem;
    struct kf_ca_rec ca;
    struct kf_test_audit a;
    int64_t audit0 = kf_test_audit_count(f->d->store), number0;
    time_t now = time(NULL);
    char detail[128], *text, *after;

    kf_test_ca_get(f->d->store, "issuing", &ca);
    number0 = ca.crl_number;
    kf_ca_rec_clear(&ca);
    KF_OK_OR_FAIL(kf_ca_publish_crl(f->d, KF_TEST_ACTOR, &crl));
    assert_int_equal(kf_crl_number(crl), number0 + 1);
    assert_int_equal(kf_crl_count(crl), kf_test_cert_count(f->d->store, NULL, KF_CERT_REVOKED));
    assert_true(kf_crl_next_update(crl) >= now + 24 * 3600 &&
                kf_crl_next_update(crl) <= time(NULL) + 24 * 3600);
    KF_OK_OR_FAIL(kf_deploy_issuer(f->d, &s));
    assert_true(kf_crl_signed_by(crl, kf_signer_cert(s)));
    /* What was returned is what was written. */
    kf_buf_init(&pem, 1 << 20);
    KF_OK_OR_FAIL(kf_crl_pem(crl, &pem));
    text = kf_test_read(f->crl_path);
    assert_string_equal(text, kf_buf_str(&pem));
    free(text);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    snprintf(detail, sizeof(detail), "{\"number\":%lld,\"revoked\":%zu}", (long long)(number0 + 1),
             kf_crl_count(crl));
    kf_test_audit_expect(&a.r[0], "crl.publish", "ca:issuing", detail);
    kf_test_audit_free(&a);
    kf_crl_free(crl);
    crl = NULL;
    assert_int_equal(kf_test_sh("cd '%s' && openssl crl -in '%s' -CAfile ca/chain.pem -noout "
                                "2>&1 | grep -q 'verify OK'",
                                f->d->dir, f->crl_path),
                     0);

    /* A file that is not a CRL is replaced. */
    assert_int_equal(unlink(f->crl_path), 0);
    kf_test_write(f->crl_path, "garbage\n");
    KF_OK_OR_FAIL(kf_ca_publish_crl(f->d, KF_TEST_ACTOR, NULL));
    file = kf_test_crl_load(f->crl_path);
    assert_int_equal(kf_crl_number(file), number0 + 2);
    kf_crl_free(file);

    /* Another publisher got further: its CRL stays, though this one is recorded. */
    KF_OK_OR_FAIL(kf_signer_crl(s, NULL, 0, 1000, now - 60, now + 3600, &newer));
    kf_buf_reset(&pem);
    KF_OK_OR_FAIL(kf_crl_pem(newer, &pem));
    assert_int_equal(unlink(f->crl_path), 0);
    kf_test_write(f->crl_path, kf_buf_str(&pem));
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_ca_publish_crl(f->d, KF_TEST_ACTOR, &crl));
    assert_int_equal(kf_crl_number(crl), number0 + 3);
    after = kf_test_read(f->crl_path);
    assert_string_equal(after, kf_buf_str(&pem));
    free(after);
    kf_test_ca_get(f->d->store, "issuing", &ca);
    assert_int_equal(ca.crl_number, number0 + 3);
    kf_ca_rec_clear(&ca);
    assert_int_equal(kf_test_audit_count(f->d->store), audit0 + 1);

    /* Without a file, the next one is written again. */
    assert_int_equal(unlink(f->crl_path), 0);
    kf_crl_free(crl);
    KF_OK_OR_FAIL(kf_ca_publish_crl(f->d, KF_TEST_ACTOR, &crl));
    file = kf_test_crl_load(f->crl_path);
    assert_int_equal(kf_crl_number(file), number0 + 4);
    kf_crl_free(file);
    kf_crl_free(crl);
    kf_crl_free(newer);
    kf_buf_free(&pem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_new_device),
        cmocka_unit_test(test_issue_under_enrollment),
        cmocka_unit_test(test_issue_refuses_bad_days_and_ids),
        cmocka_unit_test(test_issue_refuses_bad_csrs),
        cmocka_unit_test(test_issue_refuses_disabled_and_revoked_devices),
        cmocka_unit_test(test_cert_record),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_revoke_refusals),
        cmocka_unit_test(test_publish_crl),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
