/*
 * services: service identities added, issued and revoked on a real deployment: the certificate's
 * subject, URI SANs, EKU and validity as a TLS peer reads them, the service and certificate rows,
 * the audit records of each change and the CRL that follows a revocation; names shared with the
 * device namespace refused (with the event that records it); and every refusal saying what is
 * wrong and changing nothing.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/buf.h"
#include "common/ident.h"
#include "common/pki_crl.h"
#include "common/pki_trust.h"
#include "common/timefmt.h"
#include "server/ca/ca.h"
#include "server/ops/enroll.h"
#include "server/ops/services.h"

#define DAY 86400L

struct fixture {
    struct kf_deploy *d;
    char crl_path[KF_CONF_PATH_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->d = kf_test_deploy_make("services");
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

static enum kf_err service_text_cb(const struct kf_service_rec *s, void *arg)
{
    return kf_buf_appendf(arg, "service %s role=%s status=%d created=%lld updated=%lld\n", s->name,
                          s->role, (int)s->status, (long long)s->created, (long long)s->updated);
}

/* The services as text: testdeploy's state covers devices, certificates, enrollments, audit. */
static char *services_text(struct fixture *f)
{
    struct kf_txn *t = NULL;
    struct kf_buf b;
    char *s;
    kf_buf_init(&b, 1 << 20);
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(kf_txn_service_list(t, service_text_cb, &b));
    kf_txn_end(t);
    s = strdup(kf_buf_str(&b));
    kf_buf_free(&b);
    return s;
}

/*
 * Runs `call` (an expression), which must fail with `want` and a message holding `needle`, and
 * change nothing: store, services, audit log, CRL file.
 */
#define EXPECT_REFUSED(f, want, needle, call)                                            \
    do {                                                                                 \
        struct kf_test_state before_;                                                    \
        char *svc_ = services_text(f), *svc_after_;                                      \
        char *crl_ = kf_test_read((f)->crl_path), *crl_after_;                           \
        kf_test_state_take((f)->d->store, &before_);                                     \
        KF_EXPECT_ERR(want, call);                                                       \
        KF_EXPECT_MSG(needle);                                                           \
        kf_test_state_expect((f)->d->store, &before_, needle);                           \
        svc_after_ = services_text(f);                                                   \
        if (strcmp(svc_, svc_after_) != 0)                                               \
            fail_msg("%s: the services changed.\nbefore:\n%s\nafter:\n%s", needle, svc_, \
                     svc_after_);                                                        \
        crl_after_ = kf_test_read((f)->crl_path);                                        \
        if (strcmp(crl_, crl_after_) != 0) fail_msg("%s: the CRL file changed", needle); \
        free(svc_);                                                                      \
        free(svc_after_);                                                                \
        free(crl_);                                                                      \
        free(crl_after_);                                                                \
        kf_test_state_free(&before_);                                                    \
    } while (0)

static enum kf_err get_service(struct fixture *f, const char *name, struct kf_service_rec *s)
{
    struct kf_txn *t = NULL;
    enum kf_err rc;
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    rc = kf_txn_service_get(t, name, s);
    kf_txn_end(t);
    return rc;
}

/* The fixed fields of certificate `serial`'s row (its heap fields are dropped). */
static struct kf_cert_rec cert_row(struct fixture *f, const char *serial)
{
    struct kf_cert_rec r, fixed;
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, serial, &r));
    fixed = r;
    fixed.subject = fixed.pem = NULL;
    kf_cert_rec_clear(&r);
    return fixed;
}

struct count_arg {
    int status;
    int n;
};

static enum kf_err count_cb(const struct kf_cert_rec *r, void *arg)
{
    struct count_arg *c = arg;
    if (!c->status || (int)r->status == c->status) c->n++;
    return KF_OK;
}

/* How many certificates service `name` has with `status` (0: any). */
static int service_certs(struct fixture *f, const char *name, int status)
{
    struct kf_txn *t = NULL;
    struct count_arg c = {status, 0};
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(kf_txn_cert_list_service(t, name, count_cb, &c));
    kf_txn_end(t);
    return c.n;
}

static int64_t registry_version(struct fixture *f)
{
    struct kf_txn *t = NULL;
    int64_t v;
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(kf_txn_registry_version(t, &v));
    kf_txn_end(t);
    return v;
}

/* The issuing CA, as the deployment's file holds it (owned by the caller). */
static struct kf_cert *issuing_ca(struct fixture *f)
{
    char path[KF_CONF_PATH_MAX];
    struct kf_cert *c = NULL;
    KF_OK_OR_FAIL(kf_deploy_path(f->d, f->d->cfg.ca.issuing_cert, path, sizeof(path)));
    KF_OK_OR_FAIL(kf_cert_load_file(path, &c));
    return c;
}

/* `c` as a TLS peer receives it: through its DER, parsed by OpenSSL itself (owned). */
static X509 *as_x509(const struct kf_cert *c)
{
    struct kf_buf der;
    const unsigned char *p;
    X509 *x;
    kf_buf_init(&der, 1 << 16);
    KF_OK_OR_FAIL(kf_cert_der(c, &der));
    p = der.data;
    x = d2i_X509(NULL, &p, (long)der.len);
    assert_non_null(x);
    kf_buf_free(&der);
    return x;
}

/* The URI SANs of `x`, comma-separated, in order, into `out`. */
static void uri_sans(X509 *x, char *out, size_t cap)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    out[0] = '\0';
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *n = sk_GENERAL_NAME_value(names, i);
        size_t len = strlen(out);
        if (n->type != GEN_URI) {
            snprintf(out + len, cap - len, "%s(not a URI)", len ? "," : "");
            continue;
        }
        snprintf(out + len, cap - len, "%s%.*s", len ? "," : "",
                 ASN1_STRING_length(n->d.uniformResourceIdentifier),
                 (const char *)ASN1_STRING_get0_data(n->d.uniformResourceIdentifier));
    }
    GENERAL_NAMES_free(names);
}

/*
 * Checks what a service certificate says, as a TLS peer reads it: subject, URI SANs, a leaf
 * for TLS clients only, its key the CSR's, signed by the issuing CA, valid from a minute ago
 * for `days`.
 */
static void expect_service_cert(struct fixture *f, const struct kf_cert *c,
                                const struct kf_csr *csr, const char *name, const char *role,
                                int days, time_t t0)
{
    char text[KF_NAME_MAX], want[KF_NAME_MAX], sans[1024];
    struct kf_key *cert_key = NULL, *csr_key = NULL;
    struct kf_cert *issuing = issuing_ca(f);
    struct kf_trust *trust = NULL;
    X509 *x = as_x509(c);
    uint32_t eku;

    KF_OK_OR_FAIL(kf_cert_subject_cn(c, text, sizeof(text)));
    assert_string_equal(text, name);
    kf_cert_subject(c, text, sizeof(text));
    snprintf(want, sizeof(want), "CN=%s,OU=%s,O=unit", name, role);
    assert_string_equal(text, want);
    kf_cert_issuer(c, text, sizeof(text));
    kf_cert_subject(issuing, want, sizeof(want));
    assert_string_equal(text, want);
    /* Exactly two URI SANs: the service's name and its role; no device URN. */
    uri_sans(x, sans, sizeof(sans));
    snprintf(want, sizeof(want), KF_URN_SERVICE "%s," KF_URN_ROLE "%s", name, role);
    assert_string_equal(sans, want);
    KF_OK_OR_FAIL(kf_cert_uri_san(c, KF_URN_SERVICE, text, sizeof(text)));
    assert_string_equal(text, name);
    KF_OK_OR_FAIL(kf_cert_uri_san(c, KF_URN_ROLE, text, sizeof(text)));
    assert_string_equal(text, role);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_cert_uri_san(c, KF_URN_DEVICE, text, sizeof(text)));
    /* A leaf, for TLS clients: EKU clientAuth alone, digitalSignature. */
    assert_false(kf_cert_is_ca(c));
    assert_int_equal(X509_check_ca(x), 0);
    eku = X509_get_extended_key_usage(x);
    assert_true(eku & XKU_SSL_CLIENT);
    assert_false(eku & XKU_SSL_SERVER);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    assert_false(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    /* The key is the one the CSR asked for. */
    KF_OK_OR_FAIL(kf_cert_public_key(c, &cert_key));
    KF_OK_OR_FAIL(kf_csr_public_key(csr, &csr_key));
    assert_true(kf_key_public_equal(cert_key, csr_key));
    /* Validity: from a minute before it was asked for, `days` long. */
    assert_in_range(kf_cert_not_before(c), t0 - 60, time(NULL) - 60);
    assert_int_equal(kf_cert_not_after(c) - kf_cert_not_before(c), days * DAY + 60);
    /* Signed by the issuing CA, and good as a TLS client certificate. */
    KF_OK_OR_FAIL(kf_trust_new(&trust));
    KF_OK_OR_FAIL(kf_trust_add_cert(trust, issuing));
    {
        struct kf_buf pem;
        struct kf_cert *presented = NULL;
        kf_buf_init(&pem, 1 << 16);
        KF_OK_OR_FAIL(kf_cert_pem(c, &pem));
        KF_OK_OR_FAIL(kf_cert_parse(pem.data, pem.len, &presented));
        KF_OK_OR_FAIL(
            kf_trust_verify(trust, presented, NULL, 0, time(NULL), KF_PURPOSE_CLIENT, NULL));
        KF_EXPECT_ERR(KF_E_WRONG_PURPOSE, kf_trust_verify(trust, presented, NULL, 0, time(NULL),
                                                          KF_PURPOSE_SERVER, NULL));
        kf_cert_free(presented);
        kf_buf_free(&pem);
    }
    kf_trust_free(trust);
    kf_key_free(cert_key);
    kf_key_free(csr_key);
    kf_cert_free(issuing);
    X509_free(x);
}

/* Checks the row of certificate `c`: service `name`'s, valid, with its PEM and fingerprint. */
static void expect_cert_row(struct fixture *f, const struct kf_cert *c, const char *name)
{
    char serial[KF_SERIAL_HEX_MAX], fp[KF_FINGERPRINT_HEX];
    struct kf_cert_rec r;
    struct kf_buf pem;

    kf_cert_serial_hex(c, serial);
    kf_cert_fingerprint(c, fp);
    kf_buf_init(&pem, 1 << 16);
    KF_OK_OR_FAIL(kf_cert_pem(c, &pem));
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, serial, &r));
    assert_string_equal(r.service, name);
    assert_string_equal(r.device_id, "");
    assert_string_equal(r.profile, "service");
    assert_string_equal(r.issuer, "issuing");
    assert_int_equal(r.status, KF_CERT_VALID);
    assert_int_equal(r.revoked_at, 0);
    assert_int_equal(r.not_before, kf_cert_not_before(c));
    assert_int_equal(r.not_after, kf_cert_not_after(c));
    assert_string_equal(r.fingerprint, fp);
    assert_string_equal(r.pem, kf_buf_str(&pem));
    kf_cert_rec_clear(&r);
    kf_buf_free(&pem);
}

/* The cert.issue audit detail keyfleet writes for a service certificate. */
static void issue_detail(const struct kf_cert *c, const char *name, const char *role, char *out,
                         size_t cap)
{
    char when[KF_TIME_TEXT_MAX];
    kf_time_rfc3339(kf_cert_not_after(c), when, sizeof(when));
    snprintf(out, cap,
             "{\"not_after\":\"%s\",\"profile\":\"service\",\"role\":\"%s\",\"service\":\"%s\"}",
             when, role, name);
}

/* Adds service `name` with `role` (a fresh key); the certificate's serial to `serial`. */
static void add(struct fixture *f, const char *name, const char *role, char *serial)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, name);
    struct kf_cert *c = NULL;
    KF_OK_OR_FAIL(kf_services_add(f->d, KF_TEST_ACTOR, name, role, csr, 0, &c));
    if (serial) kf_cert_serial_hex(c, serial);
    kf_cert_free(c);
    kf_csr_free(csr);
}

/* Another certificate for service `name`; its serial to `serial`. */
static void issue(struct fixture *f, const char *name, char *serial)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, name);
    struct kf_cert *c = NULL;
    KF_OK_OR_FAIL(kf_services_issue(f->d, KF_TEST_ACTOR, name, csr, 0, &c));
    if (serial) kf_cert_serial_hex(c, serial);
    kf_cert_free(c);
    kf_csr_free(csr);
}

/* ---- add ---- */

static void test_add(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "telemetry-sink");
    struct kf_cert *c = NULL;
    struct kf_service_rec s;
    struct kf_test_audit a;
    char serial[KF_SERIAL_HEX_MAX], object[KF_OBJECT_MAX], detail[512];
    int64_t audit0 = kf_test_audit_count(f->d->store), v0 = registry_version(f);
    time_t t0 = time(NULL);

    KF_OK_OR_FAIL(kf_services_add(f->d, KF_TEST_ACTOR, "telemetry-sink", "reader", csr, 0, &c));
    assert_non_null(c);
    assert_int_equal(f->d->cfg.ca.service_cert_days, 365);
    expect_service_cert(f, c, csr, "telemetry-sink", "reader", 365, t0);

    KF_OK_OR_FAIL(get_service(f, "telemetry-sink", &s));
    assert_string_equal(s.name, "telemetry-sink");
    assert_string_equal(s.role, "reader");
    assert_int_equal(s.status, KF_SERVICE_ACTIVE);
    assert_in_range(s.created, t0, time(NULL));
    assert_int_equal(s.updated, s.created);
    expect_cert_row(f, c, "telemetry-sink");
    kf_cert_serial_hex(c, serial);
    assert_int_equal(service_certs(f, "telemetry-sink", 0), 1);
    /* keyfleetd notices a new service (its registry version moves). */
    assert_true(registry_version(f) > v0);

    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 2);
    kf_test_audit_expect(&a.r[0], "service.add", "service:telemetry-sink", "{\"role\":\"reader\"}");
    snprintf(object, sizeof(object), "cert:%s", serial);
    issue_detail(c, "telemetry-sink", "reader", detail, sizeof(detail));
    kf_test_audit_expect(&a.r[1], "cert.issue", object, detail);
    kf_test_audit_free(&a);
    kf_cert_free(c);
    kf_csr_free(csr);
}

static void test_add_commander_with_days(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P384, "fleet-ops");
    struct kf_cert *c = NULL;
    struct kf_service_rec s;
    time_t t0 = time(NULL);

    KF_OK_OR_FAIL(kf_services_add(f->d, KF_TEST_ACTOR, "fleet-ops", "commander", csr, 30, &c));
    expect_service_cert(f, c, csr, "fleet-ops", "commander", 30, t0);
    KF_OK_OR_FAIL(get_service(f, "fleet-ops", &s));
    assert_string_equal(s.role, "commander");
    kf_cert_free(c);
    kf_csr_free(csr);
    /* The configured most is allowed (a day more is refused: test_add_refusals). */
    csr = kf_test_csr(KF_KEY_EC_P256, "fleet-ops-2");
    KF_OK_OR_FAIL(kf_services_add(f->d, KF_TEST_ACTOR, "fleet-ops-2", "reader", csr,
                                  f->d->cfg.ca.service_cert_days, &c));
    assert_int_equal(kf_cert_not_after(c) - kf_cert_not_before(c),
                     f->d->cfg.ca.service_cert_days * DAY + 60);
    kf_cert_free(c);
    kf_csr_free(csr);
}

static void test_add_refusals(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "svc-r"), *other;
    struct kf_cert *c = NULL;
    char long_name[KF_ID_MAX + 2], msg[256];

    add(f, "svc-dup", "commander", NULL);
    EXPECT_REFUSED(f, KF_E_INVALID, "role \"admin\" is not one of reader or commander",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-r", "admin", csr, 0, &c));
    assert_null(c);
    EXPECT_REFUSED(f, KF_E_INVALID, "role \"Reader\" is not one of reader or commander",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-r", "Reader", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_INVALID, "role \"\" is not one of reader or commander",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-r", NULL, csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_INVALID, "role \"\" is not one of reader or commander",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-r", "", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_INVALID,
                   "service name \"Svc-r\" must start with a lower-case letter or a digit",
                   kf_services_add(f->d, KF_TEST_ACTOR, "Svc-r", "reader", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_INVALID, "service name is empty",
                   kf_services_add(f->d, KF_TEST_ACTOR, "", "reader", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_INVALID, "service name \"svc r\" holds ' ' at position 4",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc r", "reader", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_INVALID, "service name \"svc/r\" holds '/' at position 4",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc/r", "reader", csr, 0, &c));
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    EXPECT_REFUSED(f, KF_E_INVALID, "is 129 characters long; the limit is 128",
                   kf_services_add(f->d, KF_TEST_ACTOR, long_name, "reader", csr, 0, &c));
    /* The name is taken, whatever the role asked for. */
    other = kf_test_csr(KF_KEY_EC_P256, "svc-dup");
    EXPECT_REFUSED(f, KF_E_EXISTS, "service svc-dup already exists (with role commander)",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-dup", "reader", other, 0, &c));
    kf_csr_free(other);
    /* The CSR's CN must be the name. */
    EXPECT_REFUSED(f, KF_E_POLICY, "its CN \"svc-r\" is not the expected \"svc-q\"",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-q", "reader", csr, 0, &c));
    /* Lifetimes beyond the configured one, or below none. */
    snprintf(msg, sizeof(msg),
             "%d days is more than the %d days service certificates get (service_cert_days in "
             "keyfleet.conf)",
             f->d->cfg.ca.service_cert_days + 1, f->d->cfg.ca.service_cert_days);
    EXPECT_REFUSED(f, KF_E_DENIED, msg,
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-r", "reader", csr,
                                   f->d->cfg.ca.service_cert_days + 1, &c));
    EXPECT_REFUSED(f, KF_E_INVALID, "a certificate cannot last -1 days",
                   kf_services_add(f->d, KF_TEST_ACTOR, "svc-r", "reader", csr, -1, &c));
    assert_null(c);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, get_service(f, "svc-r", &(struct kf_service_rec){0}));
    kf_csr_free(csr);
}

/* ---- one name, one namespace ---- */

struct event_list {
    struct kf_event_rec ev[16];
    int n;
};

static enum kf_err event_cb(const struct kf_event_rec *e, void *arg)
{
    struct event_list *l = arg;
    if (l->n == (int)KF_ARRAY_LEN(l->ev)) return kf_fail(KF_E_OVERSIZE, "too many events");
    l->ev[l->n] = *e;
    l->ev[l->n].detail = strdup(e->detail ? e->detail : "{}");
    l->n++;
    return KF_OK;
}

static enum kf_err nothing_cb(struct kf_txn *txn, void *arg)
{
    return KF_OK;
}

/*
 * The registry.name_conflict events about `name`, once those queued have been written: events
 * join a later commit without anyone waiting, and a write of our own waits for its commit, which
 * runs after everything queued before it.
 */
static void name_conflicts(struct fixture *f, const char *name, struct event_list *out)
{
    struct event_list all;
    struct kf_txn *t = NULL;
    char want[KF_ID_MAX + 16];

    memset(&all, 0, sizeof(all));
    memset(out, 0, sizeof(*out));
    KF_OK_OR_FAIL(kf_store_write(f->d->store, nothing_cb, NULL));
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(
        kf_txn_event_list(t, 0, "registry.name_conflict", NULL, KF_LIST_ALL, event_cb, &all));
    kf_txn_end(t);
    snprintf(want, sizeof(want), "\"name\":\"%s\"", name);
    for (int i = 0; i < all.n; i++) {
        if (strstr(all.ev[i].detail, want))
            out->ev[out->n++] = all.ev[i];
        else
            free(all.ev[i].detail);
    }
}

static void event_list_free(struct event_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->ev[i].detail);
    l->n = 0;
}

static void expect_conflict_event(struct fixture *f, const char *name, const char *wanted_as,
                                  const char *message)
{
    struct event_list l;
    char detail[512];
    name_conflicts(f, name, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ev[0].type, "registry.name_conflict");
    assert_string_equal(l.ev[0].severity, "warning");
    assert_string_equal(l.ev[0].source, "server");
    assert_string_equal(l.ev[0].device, "");
    assert_string_equal(l.ev[0].claimed, "");
    snprintf(detail, sizeof(detail),
             "{\"actor\":\"%s\",\"message\":\"%s\",\"name\":\"%s\",\"wanted_as\":\"%s\"}",
             KF_TEST_ACTOR, message, name, wanted_as);
    assert_string_equal(l.ev[0].detail, detail);
    event_list_free(&l);
}

static void test_name_held_by_a_device(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *dev_csr = kf_test_csr(KF_KEY_EC_P256, "plant-7");
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "plant-7");
    struct kf_cert *c = NULL;
    struct event_list l;
    const char *msg = "plant-7 is the id of a device; device ids and service names are never the "
                      "same";

    KF_OK_OR_FAIL(kf_ca_issue_device(f->d, KF_TEST_ACTOR, "plant-7", NULL, dev_csr, 0, &c));
    kf_cert_free(c);
    c = NULL;
    name_conflicts(f, "plant-7", &l);
    assert_int_equal(l.n, 0);
    /* Refused before anything is signed or written; the refusal is an event, not an audit. */
    EXPECT_REFUSED(f, KF_E_CONFLICT, msg,
                   kf_services_add(f->d, KF_TEST_ACTOR, "plant-7", "reader", csr, 0, &c));
    assert_null(c);
    expect_conflict_event(f, "plant-7", "service", msg);
    /* The device's name is not a service's for any other operation either. */
    EXPECT_REFUSED(f, KF_E_NOT_FOUND,
                   "service plant-7 not found (keyfleet service add --name plant-7)",
                   kf_services_issue(f->d, KF_TEST_ACTOR, "plant-7", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "service plant-7 not found",
                   kf_services_revoke(f->d, KF_TEST_ACTOR, "plant-7", KF_CRL_UNSPECIFIED, NULL));
    kf_csr_free(csr);
    kf_csr_free(dev_csr);
}

static void test_name_held_by_an_individual_enrollment(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "sensor-9");
    struct kf_cert *c = NULL;
    struct kf_key *k = NULL;
    struct kf_buf pem;
    const char *pub = kf_test_path("sensor-9.pub");
    const char *msg = "sensor-9 is the registration id of an individual enrollment; device ids "
                      "and service names are never the same";

    /* Enrolled, not yet provisioned: the id is a device's to be. */
    kf_buf_init(&pem, 1 << 16);
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    KF_OK_OR_FAIL(kf_key_public_pem(k, &pem));
    kf_test_write(pub, kf_buf_str(&pem));
    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "sensor-9", NULL, pub, NULL));
    EXPECT_REFUSED(f, KF_E_CONFLICT, msg,
                   kf_services_add(f->d, KF_TEST_ACTOR, "sensor-9", "commander", csr, 0, &c));
    assert_null(c);
    expect_conflict_event(f, "sensor-9", "service", msg);
    kf_buf_free(&pem);
    kf_key_free(k);
    kf_csr_free(csr);
}

/* And the other way: a device cannot take a service's name. */
static void test_device_refused_a_services_name(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "billing");
    struct kf_cert *c = NULL;
    struct kf_device_rec dev;
    const char *msg = "billing is the name of a service; device ids and service names are never "
                      "the same";

    add(f, "billing", "reader", NULL);
    EXPECT_REFUSED(f, KF_E_CONFLICT, msg,
                   kf_ca_issue_device(f->d, KF_TEST_ACTOR, "billing", NULL, csr, 0, &c));
    assert_null(c);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_device_get(f->d->store, "billing", &dev));
    expect_conflict_event(f, "billing", "device", msg);
    kf_csr_free(csr);
}

/* ---- issue ---- */

static void test_issue(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_ED25519, "archiver");
    struct kf_cert *c = NULL;
    struct kf_service_rec before, after;
    struct kf_test_audit a;
    char first[KF_SERIAL_HEX_MAX], serial[KF_SERIAL_HEX_MAX], object[KF_OBJECT_MAX];
    char detail[512];
    int64_t audit0, v0;
    time_t t0;

    add(f, "archiver", "commander", first);
    KF_OK_OR_FAIL(get_service(f, "archiver", &before));
    audit0 = kf_test_audit_count(f->d->store);
    v0 = registry_version(f);
    t0 = time(NULL);

    /* A second instance: the role is the service's, not asked for again. */
    KF_OK_OR_FAIL(kf_services_issue(f->d, KF_TEST_ACTOR, "archiver", csr, 10, &c));
    expect_service_cert(f, c, csr, "archiver", "commander", 10, t0);
    expect_cert_row(f, c, "archiver");
    kf_cert_serial_hex(c, serial);
    assert_string_not_equal(serial, first);
    assert_int_equal(service_certs(f, "archiver", KF_CERT_VALID), 2);
    assert_int_equal(cert_row(f, first).status, KF_CERT_VALID);
    KF_OK_OR_FAIL(get_service(f, "archiver", &after));
    assert_string_equal(after.role, before.role);
    assert_int_equal(after.status, KF_SERVICE_ACTIVE);
    assert_int_equal(after.created, before.created);
    assert_int_equal(after.updated, before.updated);
    assert_int_equal(registry_version(f), v0); /* a certificate issued is no registry change */
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    snprintf(object, sizeof(object), "cert:%s", serial);
    issue_detail(c, "archiver", "commander", detail, sizeof(detail));
    kf_test_audit_expect(&a.r[0], "cert.issue", object, detail);
    kf_test_audit_free(&a);
    kf_cert_free(c);
    kf_csr_free(csr);
}

static void test_issue_refusals(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "indexer"), *other;
    struct kf_cert *c = NULL;

    add(f, "indexer", "reader", NULL);
    other = kf_test_csr(KF_KEY_EC_P256, "ghost");
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "service ghost not found (keyfleet service add --name ghost)",
                   kf_services_issue(f->d, KF_TEST_ACTOR, "ghost", other, 0, &c));
    assert_null(c);
    kf_csr_free(other);
    EXPECT_REFUSED(f, KF_E_INVALID, "service name \"Indexer\" must start with a lower-case letter",
                   kf_services_issue(f->d, KF_TEST_ACTOR, "Indexer", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_POLICY, "its CN \"indexer\" is not the expected \"archiver\"",
                   kf_services_issue(f->d, KF_TEST_ACTOR, "archiver", csr, 0, &c));
    EXPECT_REFUSED(f, KF_E_DENIED, "more than the 365 days service certificates get",
                   kf_services_issue(f->d, KF_TEST_ACTOR, "indexer", csr, 400, &c));
    assert_null(c);
    assert_int_equal(service_certs(f, "indexer", 0), 1);
    kf_csr_free(csr);
}

/* ---- revoke ---- */

static void test_revoke(void **state)
{
    struct fixture *f = *state;
    char s[3][KF_SERIAL_HEX_MAX], object[KF_OBJECT_MAX], detail[256];
    struct kf_service_rec before, after;
    struct kf_cert_rec earlier, r;
    struct kf_test_audit a;
    struct kf_crl *crl;
    struct kf_ca_rec ca;
    int64_t audit0, number0, revoked, v0;
    int count = -1, seen[3] = {0, 0, 0}, reason = -1;
    time_t t0;

    add(f, "exporter", "reader", s[0]);
    issue(f, "exporter", s[1]);
    issue(f, "exporter", s[2]);
    /* One of its certificates was revoked before, on its own: it is not revoked again. */
    KF_OK_OR_FAIL(kf_ca_revoke(f->d, KF_TEST_ACTOR, s[2], KF_CRL_SUPERSEDED));
    earlier = cert_row(f, s[2]);
    KF_OK_OR_FAIL(get_service(f, "exporter", &before));
    audit0 = kf_test_audit_count(f->d->store);
    kf_test_ca_get(f->d->store, "issuing", &ca);
    number0 = ca.crl_number;
    kf_ca_rec_clear(&ca);
    v0 = registry_version(f);
    t0 = time(NULL);

    KF_OK_OR_FAIL(
        kf_services_revoke(f->d, KF_TEST_ACTOR, "exporter", KF_CRL_KEY_COMPROMISE, &count));
    assert_int_equal(count, 2);
    KF_OK_OR_FAIL(get_service(f, "exporter", &after));
    assert_int_equal(after.status, KF_SERVICE_REVOKED);
    assert_string_equal(after.role, "reader");
    assert_int_equal(after.created, before.created);
    assert_in_range(after.updated, t0, time(NULL));
    for (int i = 0; i < 2; i++) {
        r = cert_row(f, s[i]);
        assert_int_equal(r.status, KF_CERT_REVOKED);
        assert_int_equal(r.reason, KF_CRL_KEY_COMPROMISE);
        assert_in_range(r.revoked_at, t0, time(NULL));
    }
    r = cert_row(f, s[2]);
    assert_int_equal(r.reason, KF_CRL_SUPERSEDED);
    assert_int_equal(r.revoked_at, earlier.revoked_at);
    assert_int_equal(service_certs(f, "exporter", KF_CERT_VALID), 0);
    /* keyfleetd's registry sees it (and closes its connections). */
    assert_true(registry_version(f) > v0);

    /* Audit: each certificate, then the service, then the CRL. */
    revoked = kf_test_cert_count(f->d->store, NULL, KF_CERT_REVOKED);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 4);
    for (int i = 0; i < 2; i++) {
        kf_test_audit_expect(&a.r[i], "cert.revoke", a.r[i].object,
                             "{\"reason\":\"key-compromise\",\"service\":\"exporter\"}");
        for (int j = 0; j < 3; j++) {
            snprintf(object, sizeof(object), "cert:%s", s[j]);
            if (strcmp(a.r[i].object, object) == 0) seen[j]++;
        }
    }
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 0);
    kf_test_audit_expect(&a.r[2], "service.revoke", "service:exporter",
                         "{\"certificates\":2,\"reason\":\"key-compromise\",\"role\":\"reader\"}");
    snprintf(detail, sizeof(detail), "{\"number\":%lld,\"revoked\":%lld}", (long long)(number0 + 1),
             (long long)revoked);
    kf_test_audit_expect(&a.r[3], "crl.publish", "ca:issuing", detail);
    kf_test_audit_free(&a);

    /* The published CRL lists all three, each with its reason. */
    crl = kf_test_crl_load(f->crl_path);
    assert_int_equal(kf_crl_number(crl), number0 + 1);
    for (int i = 0; i < 2; i++) {
        assert_true(kf_crl_lists(crl, s[i], &reason));
        assert_int_equal(reason, KF_CRL_KEY_COMPROMISE);
    }
    assert_true(kf_crl_lists(crl, s[2], &reason));
    assert_int_equal(reason, KF_CRL_SUPERSEDED);
    kf_crl_free(crl);
}

static void test_revoke_refusals(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "mailer");
    struct kf_cert *c = NULL;
    int count = -1;

    add(f, "mailer", "commander", NULL);
    add(f, "pager", "reader", NULL);
    KF_OK_OR_FAIL(kf_services_revoke(f->d, KF_TEST_ACTOR, "mailer", KF_CRL_UNSPECIFIED, NULL));
    /* Revocation is final: no new certificate, no second revocation, the name stays taken. */
    EXPECT_REFUSED(f, KF_E_REVOKED, "service mailer is revoked; revocation is final",
                   kf_services_issue(f->d, KF_TEST_ACTOR, "mailer", csr, 0, &c));
    assert_null(c);
    EXPECT_REFUSED(f, KF_E_CONFLICT, "service mailer is already revoked",
                   kf_services_revoke(f->d, KF_TEST_ACTOR, "mailer", KF_CRL_UNSPECIFIED, &count));
    assert_int_equal(count, 0);
    EXPECT_REFUSED(f, KF_E_EXISTS, "service mailer already exists (with role commander)",
                   kf_services_add(f->d, KF_TEST_ACTOR, "mailer", "commander", csr, 0, &c));
    count = -1;
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "service ghost not found",
                   kf_services_revoke(f->d, KF_TEST_ACTOR, "ghost", KF_CRL_UNSPECIFIED, &count));
    assert_int_equal(count, 0);
    EXPECT_REFUSED(f, KF_E_INVALID, "unknown revocation reason 8",
                   kf_services_revoke(f->d, KF_TEST_ACTOR, "pager", 8, &count));
    EXPECT_REFUSED(f, KF_E_INVALID, "unknown revocation reason -1",
                   kf_services_revoke(f->d, KF_TEST_ACTOR, "pager", -1, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "service name \"Pager\" must start with a lower-case letter",
                   kf_services_revoke(f->d, KF_TEST_ACTOR, "Pager", KF_CRL_UNSPECIFIED, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "service name is empty",
                   kf_services_revoke(f->d, KF_TEST_ACTOR, "", KF_CRL_UNSPECIFIED, NULL));
    assert_int_equal(service_certs(f, "pager", KF_CERT_VALID), 1);
    kf_csr_free(csr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_add_commander_with_days),
        cmocka_unit_test(test_add_refusals),
        cmocka_unit_test(test_name_held_by_a_device),
        cmocka_unit_test(test_name_held_by_an_individual_enrollment),
        cmocka_unit_test(test_device_refused_a_services_name),
        cmocka_unit_test(test_issue),
        cmocka_unit_test(test_issue_refusals),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_revoke_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
