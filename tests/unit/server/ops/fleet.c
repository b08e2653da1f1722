/*
 * fleet: disabling and enabling devices (and saying whether anything changed), revoking a device
 * with every certificate it holds and the CRL that follows, and refusals that change nothing.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pki_crl.h"
#include "server/ca/ca.h"
#include "server/ops/fleet.h"

struct fixture {
    struct kf_deploy *d;
    char crl_path[KF_CONF_PATH_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->d = kf_test_deploy_make("fleet");
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

/* Issues a certificate to device `id` (made on the first) and returns its serial in `serial`. */
static void issue(struct fixture *f, const char *id, char *serial)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, id);
    struct kf_cert *c = NULL;
    KF_OK_OR_FAIL(kf_ca_issue_device(f->d, KF_TEST_ACTOR, id, NULL, csr, 0, &c));
    if (serial) kf_cert_serial_hex(c, serial);
    kf_cert_free(c);
    kf_csr_free(csr);
}

static enum kf_device_status status_of(struct fixture *f, const char *id)
{
    struct kf_device_rec d;
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, id, &d));
    return d.status;
}

static struct kf_cert_rec cert_of(struct fixture *f, const char *serial)
{
    struct kf_cert_rec r, fixed;
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, serial, &r));
    fixed = r; /* the fixed fields only: the heap ones go with r */
    fixed.subject = fixed.pem = NULL;
    kf_cert_rec_clear(&r);
    return fixed;
}

static int64_t crl_number(struct fixture *f)
{
    struct kf_ca_rec ca;
    int64_t n;
    kf_test_ca_get(f->d->store, "issuing", &ca);
    n = ca.crl_number;
    kf_ca_rec_clear(&ca);
    return n;
}

/* Runs `call`, which must fail with `want` and `needle` and change neither store nor CRL. */
#define EXPECT_REFUSED(f, want, needle, call)                         \
    do {                                                              \
        struct kf_test_state before_;                                 \
        char *crl_before_ = kf_test_read((f)->crl_path), *crl_after_; \
        kf_test_state_take((f)->d->store, &before_);                  \
        KF_EXPECT_ERR(want, call);                                    \
        KF_EXPECT_MSG(needle);                                        \
        kf_test_state_expect((f)->d->store, &before_, needle);        \
        crl_after_ = kf_test_read((f)->crl_path);                     \
        assert_string_equal(crl_after_, crl_before_);                 \
        free(crl_before_);                                            \
        free(crl_after_);                                             \
        kf_test_state_free(&before_);                                 \
    } while (0)

struct device_arg {
    const char *id;
};

static enum kf_err device_insert_cb(struct kf_txn *t, void *arg)
{
    struct device_arg *a = arg;
    struct kf_device_rec d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "%s", a->id);
    d.status = KF_DEVICE_ACTIVE;
    d.created = d.updated = time(NULL);
    return kf_txn_device_insert(t, &d);
}

/* ---- enable and disable ---- */

static void test_set_enabled(void **state)
{
    struct fixture *f = *state;
    struct kf_test_audit a;
    struct kf_test_state before;
    int64_t audit0;
    int changed = -1;

    issue(f, "fl-1", NULL);
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-1", 0, &changed));
    assert_int_equal(changed, 1);
    assert_int_equal(status_of(f, "fl-1"), KF_DEVICE_DISABLED);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], "device.disable", "device:fl-1", "{}");
    kf_test_audit_free(&a);

    /* No change: nothing written, nothing audited. */
    kf_test_state_take(f->d->store, &before);
    changed = -1;
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-1", 0, &changed));
    assert_int_equal(changed, 0);
    kf_test_state_expect(f->d->store, &before, "disable twice");
    kf_test_state_free(&before);

    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-1", 1, &changed));
    assert_int_equal(changed, 1);
    assert_int_equal(status_of(f, "fl-1"), KF_DEVICE_ACTIVE);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], "device.enable", "device:fl-1", "{}");
    kf_test_audit_free(&a);

    kf_test_state_take(f->d->store, &before);
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-1", 1, &changed));
    assert_int_equal(changed, 0);
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-1", 1, NULL));
    kf_test_state_expect(f->d->store, &before, "enable twice");
    kf_test_state_free(&before);

    changed = -1;
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "device fl-9 not found",
                   kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-9", 0, &changed));
    assert_int_equal(changed, 0);
}

static void test_revoked_stays_revoked(void **state)
{
    struct fixture *f = *state;
    int changed = -1;
    issue(f, "fl-2", NULL);
    KF_OK_OR_FAIL(kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-2", KF_CRL_UNSPECIFIED, NULL));
    EXPECT_REFUSED(f, KF_E_REVOKED, "device fl-2 is revoked; revocation is final",
                   kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-2", 1, &changed));
    assert_int_equal(changed, 0);
    EXPECT_REFUSED(f, KF_E_REVOKED, "device fl-2 is revoked; revocation is final",
                   kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "fl-2", 0, &changed));
    assert_int_equal(status_of(f, "fl-2"), KF_DEVICE_REVOKED);
}

/* ---- revoke ---- */

/* Writes the certificate `serial` from its row to `name` in the test directory. */
static const char *save_from_row(struct fixture *f, const char *serial, const char *name)
{
    struct kf_cert_rec r;
    const char *path = kf_test_path(name);
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, serial, &r));
    kf_test_write(path, r.pem);
    kf_cert_rec_clear(&r);
    return path;
}

static int openssl_crl_check(struct fixture *f, const char *cert)
{
    return kf_test_sh("cd '%s' && openssl verify -crl_check -CAfile ca/chain.pem -CRLfile '%s' "
                      "'%s' >/dev/null 2>&1",
                      f->d->dir, f->crl_path, cert);
}

static void test_revoke(void **state)
{
    struct fixture *f = *state;
    char s[3][KF_SERIAL_HEX_MAX], other[KF_SERIAL_HEX_MAX], object[KF_OBJECT_MAX], detail[256];
    struct kf_cert_rec earlier, r;
    struct kf_test_audit a;
    struct kf_crl *crl;
    const char *pem0, *pem_other;
    int64_t audit0, number0, revoked;
    time_t t0;
    int count = -1, seen[3] = {0, 0, 0};

    for (int i = 0; i < 3; i++)
        issue(f, "fl-3", s[i]);
    issue(f, "fl-3b", other);
    pem0 = save_from_row(f, s[0], "fl-3-0.pem");
    pem_other = save_from_row(f, other, "fl-3b.pem");
    assert_int_equal(openssl_crl_check(f, pem0), 0);
    /* One of its certificates was revoked before: it is not revoked again. */
    KF_OK_OR_FAIL(kf_ca_revoke(f->d, KF_TEST_ACTOR, s[2], KF_CRL_SUPERSEDED));
    earlier = cert_of(f, s[2]);

    audit0 = kf_test_audit_count(f->d->store);
    number0 = crl_number(f);
    t0 = time(NULL);
    KF_OK_OR_FAIL(kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-3", KF_CRL_KEY_COMPROMISE, &count));
    assert_int_equal(count, 2);
    assert_int_equal(status_of(f, "fl-3"), KF_DEVICE_REVOKED);
    for (int i = 0; i < 2; i++) {
        r = cert_of(f, s[i]);
        assert_int_equal(r.status, KF_CERT_REVOKED);
        assert_int_equal(r.reason, KF_CRL_KEY_COMPROMISE);
        assert_true(r.revoked_at >= t0 && r.revoked_at <= time(NULL));
    }
    r = cert_of(f, s[2]);
    assert_int_equal(r.reason, KF_CRL_SUPERSEDED);
    assert_int_equal(r.revoked_at, earlier.revoked_at);
    assert_int_equal(kf_test_cert_count(f->d->store, "fl-3", KF_CERT_VALID), 0);
    /* Other devices are not touched. */
    assert_int_equal(status_of(f, "fl-3b"), KF_DEVICE_ACTIVE);
    assert_int_equal(cert_of(f, other).status, KF_CERT_VALID);

    /* Audit: each certificate, then the device, then the CRL. */
    revoked = kf_test_cert_count(f->d->store, NULL, KF_CERT_REVOKED);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 4);
    for (int i = 0; i < 2; i++) {
        kf_test_audit_expect(&a.r[i], "cert.revoke", a.r[i].object,
                             "{\"device\":\"fl-3\",\"reason\":\"key-compromise\"}");
        for (int j = 0; j < 3; j++) {
            snprintf(object, sizeof(object), "cert:%s", s[j]);
            if (strcmp(a.r[i].object, object) == 0) seen[j]++;
        }
    }
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 0);
    kf_test_audit_expect(&a.r[2], "device.revoke", "device:fl-3",
                         "{\"certificates\":2,\"reason\":\"key-compromise\"}");
    snprintf(detail, sizeof(detail), "{\"number\":%lld,\"revoked\":%lld}", (long long)(number0 + 1),
             (long long)revoked);
    kf_test_audit_expect(&a.r[3], "crl.publish", "ca:issuing", detail);
    kf_test_audit_free(&a);

    /* The CRL lists all three, and openssl now refuses the device's certificate. */
    assert_int_equal(crl_number(f), number0 + 1);
    crl = kf_test_crl_load(f->crl_path);
    assert_int_equal(kf_crl_number(crl), number0 + 1);
    for (int i = 0; i < 3; i++)
        assert_true(kf_crl_lists(crl, s[i], NULL));
    assert_false(kf_crl_lists(crl, other, NULL));
    assert_int_equal(kf_crl_count(crl), revoked);
    kf_crl_free(crl);
    assert_int_equal(kf_test_sh("cd '%s' && openssl verify -crl_check -CAfile ca/chain.pem "
                                "-CRLfile '%s' '%s' 2>&1 | grep -q 'certificate revoked'",
                                f->d->dir, f->crl_path, pem0),
                     0);
    assert_int_equal(openssl_crl_check(f, pem_other), 0);
}

static void test_revoke_refusals(void **state)
{
    struct fixture *f = *state;
    int count = -1;

    issue(f, "fl-4", NULL);
    KF_OK_OR_FAIL(
        kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-4", KF_CRL_CESSATION_OF_OPERATION, &count));
    assert_int_equal(count, 1);
    count = -1;
    EXPECT_REFUSED(f, KF_E_CONFLICT, "device fl-4 is already revoked",
                   kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-4", KF_CRL_UNSPECIFIED, &count));
    assert_int_equal(count, 0);
    count = -1;
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "device fl-9 not found",
                   kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-9", KF_CRL_UNSPECIFIED, &count));
    assert_int_equal(count, 0);
    issue(f, "fl-4b", NULL);
    EXPECT_REFUSED(f, KF_E_INVALID, "unknown revocation reason 8",
                   kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-4b", 8, &count));
    EXPECT_REFUSED(f, KF_E_INVALID, "unknown revocation reason -1",
                   kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-4b", -1, NULL));
    assert_int_equal(status_of(f, "fl-4b"), KF_DEVICE_ACTIVE);
}

/* A device with no certificate is revoked all the same, and says so. */
static void test_revoke_without_certificates(void **state)
{
    struct fixture *f = *state;
    struct device_arg da = {"fl-5"};
    struct kf_test_audit a;
    int64_t audit0;
    int count = -1;

    KF_OK_OR_FAIL(kf_store_write(f->d->store, device_insert_cb, &da));
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-5", KF_CRL_PRIVILEGE_WITHDRAWN, &count));
    assert_int_equal(count, 0);
    assert_int_equal(status_of(f, "fl-5"), KF_DEVICE_REVOKED);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 2);
    kf_test_audit_expect(&a.r[0], "device.revoke", "device:fl-5",
                         "{\"certificates\":0,\"reason\":\"privilege-withdrawn\"}");
    kf_test_audit_expect(&a.r[1], "crl.publish", "ca:issuing", NULL);
    kf_test_audit_free(&a);
}

/* More certificates than one listing round (64) holds: every one is revoked. */
static void test_revoke_many_certificates(void **state)
{
    struct fixture *f = *state;
    enum { N = 65 };
    static char s[N][KF_SERIAL_HEX_MAX];
    struct kf_test_audit a;
    struct kf_crl *crl;
    int64_t audit0;
    int count = -1, cert_records = 0;

    for (int i = 0; i < N; i++)
        issue(f, "fl-6", s[i]);
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_fleet_revoke(f->d, KF_TEST_ACTOR, "fl-6", KF_CRL_KEY_COMPROMISE, &count));
    assert_int_equal(count, N);
    assert_int_equal(kf_test_cert_count(f->d->store, "fl-6", KF_CERT_VALID), 0);
    assert_int_equal(kf_test_cert_count(f->d->store, "fl-6", KF_CERT_REVOKED), N);
    kf_test_audit_after(f->d->store, audit0, &a);
    for (int i = 0; i < a.n; i++)
        cert_records += strcmp(a.r[i].action, "cert.revoke") == 0;
    assert_int_equal(cert_records, N);
    assert_int_equal(a.n, N + 2);
    assert_non_null(strstr(a.r[N].detail, "\"certificates\":65"));
    kf_test_audit_free(&a);
    crl = kf_test_crl_load(f->crl_path);
    for (int i = 0; i < N; i++)
        assert_true(kf_crl_lists(crl, s[i], NULL));
    kf_crl_free(crl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_enabled),
        cmocka_unit_test(test_revoked_stays_revoked),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_revoke_refusals),
        cmocka_unit_test(test_revoke_without_certificates),
        cmocka_unit_test(test_revoke_many_certificates),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
