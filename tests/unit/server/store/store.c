/*
 * store: the store's conformance suite: opening, every entity's operations, transactions, group
 * commit, isolation, asynchronous writes, another process beside us, the registry version. Every
 * store comes from kf_test_store_url() and is used through the store's API alone, so the same
 * tests run on every back end (KF_TEST_STORE picks it; SQLite files by default). What only the
 * SQLite back end has (its file, PRAGMAs, migration, edits with sqlite3) is tested in sqlite.c.
 */
#include "testutil.h"
#include "storetest.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/pki_crl.h"
#include "server/store/store.h"

/* ---- helpers ---- */

/* A new store named `name` (see kf_test_store_url). */
static struct kf_store *open_new(const char *name)
{
    return kf_st_open(kf_test_store_url(name), KF_STORE_CREATE);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- record makers and write callbacks (hub and device: storetest.h) ---- */

static struct kf_enrollment_rec enrollment(const char *id, enum kf_enroll_kind kind)
{
    struct kf_enrollment_rec e;
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", id);
    e.kind = kind;
    e.enabled = 1;
    e.verified = kind == KF_ENROLL_INDIVIDUAL;
    e.cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    memset(e.key_fingerprint, 'a', 64);
    e.created = e.updated = 1700000000;
    return e;
}

static struct kf_cert_rec cert(const char *serial, const char *dev, int64_t created)
{
    struct kf_cert_rec r;
    memset(&r, 0, sizeof(r));
    snprintf(r.serial, sizeof(r.serial), "%s", serial);
    snprintf(r.device_id, sizeof(r.device_id), "%s", dev);
    snprintf(r.profile, sizeof(r.profile), "%s", *dev ? "device" : "server");
    snprintf(r.issuer, sizeof(r.issuer), "issuing");
    r.subject = "CN=x";
    r.not_before = created;
    r.not_after = created + 30 * 86400;
    r.status = KF_CERT_VALID;
    memset(r.fingerprint, 'f', 64);
    r.pem = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
    r.created = created;
    return r;
}

static enum kf_err hub_update_cb(struct kf_txn *t, void *a)
{
    return kf_txn_hub_update(t, a);
}
static enum kf_err hub_delete_cb(struct kf_txn *t, void *a)
{
    return kf_txn_hub_delete(t, a);
}
static enum kf_err enroll_insert_cb(struct kf_txn *t, void *a)
{
    return kf_txn_enrollment_insert(t, a);
}
static enum kf_err enroll_update_cb(struct kf_txn *t, void *a)
{
    return kf_txn_enrollment_update(t, a);
}
static enum kf_err enroll_delete_cb(struct kf_txn *t, void *a)
{
    return kf_txn_enrollment_delete(t, a);
}
static enum kf_err cert_insert_cb(struct kf_txn *t, void *a)
{
    return kf_txn_cert_insert(t, a);
}
static enum kf_err ca_insert_cb(struct kf_txn *t, void *a)
{
    return kf_txn_ca_insert(t, a);
}
static enum kf_err reg_put_cb(struct kf_txn *t, void *a)
{
    return kf_txn_registration_put(t, a);
}

struct revoke_arg {
    const char *serial;
    int64_t when;
    int reason;
};
static enum kf_err revoke_cb(struct kf_txn *t, void *a)
{
    struct revoke_arg *r = a;
    return kf_txn_cert_revoke(t, r->serial, r->when, r->reason);
}

struct crl_arg {
    const char *name;
    int64_t number;
};
static enum kf_err crl_cb(struct kf_txn *t, void *a)
{
    struct crl_arg *c = a;
    return kf_txn_ca_next_crl_number(t, c->name, &c->number);
}

struct event_arg {
    struct kf_event_rec e;
    int64_t id;
};
static enum kf_err event_insert_cb(struct kf_txn *t, void *a)
{
    struct event_arg *ea = a;
    return kf_txn_event_insert(t, &ea->e, &ea->id);
}

/* Collects ids (or serials, names) in listing order into a comma-separated string. */
struct collect {
    char text[2048];
    int n;
};
static void collect_add(struct collect *c, const char *s)
{
    size_t len = strlen(c->text);
    snprintf(c->text + len, sizeof(c->text) - len, "%s%s", c->n++ ? "," : "", s);
}
static enum kf_err collect_enroll_cb(const struct kf_enrollment_rec *e, void *a)
{
    collect_add(a, e->id);
    return KF_OK;
}
static enum kf_err collect_device_cb(const struct kf_device_rec *d, void *a)
{
    collect_add(a, d->id);
    return KF_OK;
}
static enum kf_err collect_cert_cb(const struct kf_cert_rec *r, void *a)
{
    collect_add(a, r->serial);
    return KF_OK;
}
static enum kf_err collect_serial_cb(const char *serial, void *a)
{
    collect_add(a, serial);
    return KF_OK;
}
static enum kf_err collect_hub_cb(const struct kf_hub_rec *h, void *a)
{
    collect_add(a, h->name);
    return KF_OK;
}
static enum kf_err collect_event_cb(const struct kf_event_rec *e, void *a)
{
    char id[32];
    snprintf(id, sizeof(id), "%" PRId64, e->id);
    collect_add(a, id);
    return KF_OK;
}

/* ---- opening ---- */

/* Opening what is not there, creating, reopening. (SQLite's file: sqlite.c's test_open_path.) */
static void test_open_create_reopen(void **state)
{
    const char *url = kf_test_store_url("reopen");
    struct kf_store *s = NULL;
    struct kf_hub_rec h = kf_st_hub("hub-1"), got;
    struct kf_txn *t;

    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_open(url, 0, &s));
    KF_EXPECT_MSG("no store at ");
    assert_null(s);
    /* And nothing was created: asked again, there is still no store. */
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_open(url, 0, &s));
    assert_null(s);

    KF_OK_OR_FAIL(kf_store_open(url, KF_STORE_CREATE, &s));
    assert_int_equal(kf_store_schema_version(s), KF_STORE_SCHEMA_VERSION);
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h));
    kf_store_close(s);
    s = NULL;

    /* Reopened without KF_STORE_CREATE: the hub is still there. */
    KF_OK_OR_FAIL(kf_store_open(url, 0, &s));
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_get(t, "hub-1", &got));
    assert_string_equal(got.endpoint, "hub-1.example.net:8883");
    assert_int_equal(got.weight, 10);
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_open_urls(void **state)
{
    struct kf_store *s = NULL;
    KF_EXPECT_ERR(KF_E_UNSUPPORTED,
                  kf_store_open("postgresql://kf:hunter2@db.example.net/kf", 0, &s));
    KF_EXPECT_MSG("not built yet");
    /* The URL, with its password, is not repeated in the message. */
    if (strstr(kf_errmsg(), "hunter2"))
        fail_msg("the message repeats the password: %s", kf_errmsg());
    KF_EXPECT_ERR(KF_E_UNSUPPORTED, kf_store_open("ftp://example.net/x.db", 0, &s));
    KF_EXPECT_MSG("unknown store scheme \"ftp\"");
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_open("", 0, &s));
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_open("sqlite:", 0, &s));
    assert_null(s);
}

/* ---- entities ---- */

static void test_ca(void **state)
{
    struct kf_store *s = open_new("ca");
    struct kf_ca_rec ca, got;
    struct crl_arg crl = {"issuing", 0};
    struct kf_txn *t;

    memset(&ca, 0, sizeof(ca));
    snprintf(ca.name, sizeof(ca.name), "issuing");
    snprintf(ca.serial, sizeof(ca.serial), "3fa2");
    ca.subject = "CN=keyfleet issuing CA";
    ca.cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    ca.key_uri = "file:/etc/keyfleet/issuing.key";
    ca.not_before = 1700000000;
    ca.not_after = 1900000000;
    ca.created = 1700000001;
    KF_OK_OR_FAIL(kf_store_write(s, ca_insert_cb, &ca));
    KF_EXPECT_ERR(KF_E_EXISTS, kf_store_write(s, ca_insert_cb, &ca));
    KF_EXPECT_MSG("CA issuing already exists");

    /* An offline root has no key URI. */
    snprintf(ca.name, sizeof(ca.name), "root");
    ca.key_uri = NULL;
    KF_OK_OR_FAIL(kf_store_write(s, ca_insert_cb, &ca));

    KF_OK_OR_FAIL(kf_store_write(s, crl_cb, &crl));
    assert_int_equal(crl.number, 1);
    KF_OK_OR_FAIL(kf_store_write(s, crl_cb, &crl));
    assert_int_equal(crl.number, 2);
    crl.name = "nope";
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, crl_cb, &crl));
    KF_EXPECT_MSG("CA nope not found");

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_ca_get(t, "issuing", &got));
    assert_string_equal(got.serial, "3fa2");
    assert_string_equal(got.subject, "CN=keyfleet issuing CA");
    assert_string_equal(got.key_uri, "file:/etc/keyfleet/issuing.key");
    assert_int_equal(got.not_after, 1900000000);
    assert_int_equal(got.crl_number, 2);
    assert_int_equal(got.created, 1700000001);
    kf_ca_rec_clear(&got);
    KF_OK_OR_FAIL(kf_txn_ca_get(t, "root", &got));
    assert_null(got.key_uri);
    assert_int_equal(got.crl_number, 0);
    kf_ca_rec_clear(&got);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_ca_get(t, "offline", &got));
    KF_EXPECT_MSG("CA offline not found");
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_enrollments(void **state)
{
    struct kf_store *s = open_new("enroll");
    struct kf_enrollment_rec ind = enrollment("dev-1", KF_ENROLL_INDIVIDUAL);
    struct kf_enrollment_rec grp = enrollment("factory-a", KF_ENROLL_GROUP);
    struct kf_enrollment_rec same = enrollment("dev-1", KF_ENROLL_GROUP), got;
    struct collect c;
    struct kf_txn *t;

    ind.networks = "10.0.0.0/8,192.168.1.0/24";
    ind.settings = "{\"interval\": 60}";
    KF_OK_OR_FAIL(kf_store_write(s, enroll_insert_cb, &ind));
    snprintf(grp.verification_code, sizeof(grp.verification_code), "c0de");
    grp.code_expires = 1700003600;
    snprintf(grp.allocation, sizeof(grp.allocation), "static");
    snprintf(grp.hub, sizeof(grp.hub), "hub-1");
    KF_OK_OR_FAIL(kf_store_write(s, enroll_insert_cb, &grp));
    /* One namespace for both kinds. */
    KF_EXPECT_ERR(KF_E_EXISTS, kf_store_write(s, enroll_insert_cb, &same));
    KF_EXPECT_MSG("enrollment dev-1 already exists");

    /* Refused before it reaches the back end: bad JSON, a group without its CA, bad ids. */
    same = enrollment("dev-2", KF_ENROLL_INDIVIDUAL);
    same.settings = "{\"interval\": ";
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_store_write(s, enroll_insert_cb, &same));
    KF_EXPECT_MSG("enrollment settings is not valid JSON");
    same.settings = "[1]";
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_store_write(s, enroll_insert_cb, &same));
    same = enrollment("grp-2", KF_ENROLL_GROUP);
    same.cert_pem = NULL;
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, enroll_insert_cb, &same));
    KF_EXPECT_MSG("group enrollment grp-2 has no CA certificate");
    same = enrollment("dev-2", KF_ENROLL_INDIVIDUAL);
    snprintf(same.allocation, sizeof(same.allocation), "random");
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, enroll_insert_cb, &same));
    KF_EXPECT_MSG("allocation policy \"random\"");
    same = enrollment("dev-2", KF_ENROLL_INDIVIDUAL);
    snprintf(same.allocation, sizeof(same.allocation), "static");
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, enroll_insert_cb, &same));
    KF_EXPECT_MSG("enrollment dev-2 allocates statically but names no hub");
    same = enrollment("Dev-2", KF_ENROLL_INDIVIDUAL);
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, enroll_insert_cb, &same));
    KF_EXPECT_MSG("enrollment id \"Dev-2\"");

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_enrollment_get(t, "dev-1", &got));
    assert_int_equal(got.kind, KF_ENROLL_INDIVIDUAL);
    assert_int_equal(got.enabled, 1);
    assert_int_equal(got.verified, 1);
    assert_string_equal(got.allocation, "hashed"); /* the default */
    assert_string_equal(got.networks, "10.0.0.0/8,192.168.1.0/24");
    assert_string_equal(got.settings, "{\"interval\": 60}");
    assert_string_equal(got.cert_pem, ind.cert_pem);
    assert_null(got.pubkey_pem);
    assert_int_equal(strlen(got.key_fingerprint), 64);
    kf_enrollment_clear(&got);
    KF_OK_OR_FAIL(kf_txn_enrollment_get(t, "factory-a", &got));
    assert_int_equal(got.kind, KF_ENROLL_GROUP);
    assert_int_equal(got.verified, 0);
    assert_string_equal(got.verification_code, "c0de");
    assert_int_equal(got.code_expires, 1700003600);
    assert_string_equal(got.allocation, "static");
    assert_string_equal(got.hub, "hub-1");
    assert_null(got.settings);
    kf_enrollment_clear(&got);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_enrollment_get(t, "dev-9", &got));
    KF_EXPECT_MSG("enrollment dev-9 not found");

    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_enrollment_list(t, 0, collect_enroll_cb, &c));
    assert_string_equal(c.text, "dev-1,factory-a");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_enrollment_list(t, KF_ENROLL_GROUP, collect_enroll_cb, &c));
    assert_string_equal(c.text, "factory-a");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_enrollment_list(t, KF_ENROLL_INDIVIDUAL, collect_enroll_cb, &c));
    assert_string_equal(c.text, "dev-1");
    kf_txn_end(t);

    /* Update replaces the fields; a missing one is named. */
    grp.verified = 1;
    grp.verification_code[0] = '\0';
    grp.code_expires = 0;
    grp.enabled = 0;
    grp.updated = 1700009999;
    KF_OK_OR_FAIL(kf_store_write(s, enroll_update_cb, &grp));
    same = enrollment("ghost", KF_ENROLL_INDIVIDUAL);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, enroll_update_cb, &same));
    KF_EXPECT_MSG("enrollment ghost not found");
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_enrollment_get(t, "factory-a", &got));
    assert_int_equal(got.verified, 1);
    assert_int_equal(got.enabled, 0);
    assert_string_equal(got.verification_code, "");
    assert_int_equal(got.updated, 1700009999);
    kf_enrollment_clear(&got);
    kf_txn_end(t);

    KF_OK_OR_FAIL(kf_store_write(s, enroll_delete_cb, "dev-1"));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, enroll_delete_cb, "dev-1"));
    KF_EXPECT_MSG("enrollment dev-1 not found");
    t = kf_st_read(s);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_enrollment_get(t, "dev-1", &got));
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_devices(void **state)
{
    struct kf_store *s = open_new("devices");
    struct kf_enrollment_rec g = enrollment("factory-a", KF_ENROLL_GROUP);
    struct kf_device_rec d1 = kf_st_device("dev-1", "factory-a", KF_DEVICE_ACTIVE);
    struct kf_device_rec d2 = kf_st_device("dev-2", "factory-a", KF_DEVICE_DISABLED);
    struct kf_device_rec d3 = kf_st_device("dev-3", "", KF_DEVICE_ACTIVE);
    struct kf_device_rec bad = kf_st_device("dev-4", "no-such", KF_DEVICE_ACTIVE), got;
    struct collect c;
    struct kf_txn *t;
    int64_t n = -1;

    KF_OK_OR_FAIL(kf_store_write(s, enroll_insert_cb, &g));
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d3));
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d1));
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d2));
    KF_EXPECT_ERR(KF_E_EXISTS, kf_store_write(s, kf_st_device_insert_cb, &d1));
    KF_EXPECT_MSG("device dev-1 already exists");
    /* The foreign key: a device's enrollment must exist. */
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, kf_st_device_insert_cb, &bad));
    KF_EXPECT_MSG("enrollment no-such not found");
    bad = kf_st_device("dev-4", "", (enum kf_device_status)7);
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, kf_st_device_insert_cb, &bad));

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_device_get(t, "dev-1", &got));
    assert_string_equal(got.enrollment, "factory-a");
    assert_int_equal(got.status, KF_DEVICE_ACTIVE);
    assert_string_equal(got.hub, "");
    KF_OK_OR_FAIL(kf_txn_device_get(t, "dev-3", &got));
    assert_string_equal(got.enrollment, "");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_device_get(t, "dev-9", &got));
    KF_EXPECT_MSG("device dev-9 not found");

    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_device_list(t, 0, NULL, collect_device_cb, &c));
    assert_string_equal(c.text, "dev-1,dev-2,dev-3");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_device_list(t, KF_DEVICE_ACTIVE, NULL, collect_device_cb, &c));
    assert_string_equal(c.text, "dev-1,dev-3");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_device_list(t, 0, "factory-a", collect_device_cb, &c));
    assert_string_equal(c.text, "dev-1,dev-2");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_device_list(t, KF_DEVICE_ACTIVE, "factory-a", collect_device_cb, &c));
    assert_string_equal(c.text, "dev-1");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_device_list(t, 0, "", collect_device_cb, &c));
    assert_string_equal(c.text, "dev-3");
    KF_OK_OR_FAIL(kf_txn_device_count(t, 0, &n));
    assert_int_equal(n, 3);
    KF_OK_OR_FAIL(kf_txn_device_count(t, KF_DEVICE_DISABLED, &n));
    assert_int_equal(n, 1);
    kf_txn_end(t);

    d2.status = KF_DEVICE_REVOKED;
    snprintf(d2.hub, sizeof(d2.hub), "hub-1");
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_update_cb, &d2));
    bad = kf_st_device("dev-9", "", KF_DEVICE_ACTIVE);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, kf_st_device_update_cb, &bad));
    KF_EXPECT_MSG("device dev-9 not found");
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_device_get(t, "dev-2", &got));
    assert_int_equal(got.status, KF_DEVICE_REVOKED);
    assert_string_equal(got.hub, "hub-1");
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_enrollment_delete_keeps_devices(void **state)
{
    struct kf_store *s = open_new("enroll-delete");
    struct kf_enrollment_rec g = enrollment("factory-a", KF_ENROLL_GROUP);
    struct kf_device_rec d1 = kf_st_device("dev-1", "factory-a", KF_DEVICE_ACTIVE), got;
    struct collect c;
    struct kf_txn *t;

    KF_OK_OR_FAIL(kf_store_write(s, enroll_insert_cb, &g));
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d1));
    KF_OK_OR_FAIL(kf_store_write(s, enroll_delete_cb, "factory-a"));
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_device_get(t, "dev-1", &got));
    assert_string_equal(got.enrollment, "");
    assert_int_equal(got.status, KF_DEVICE_ACTIVE);
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_device_list(t, 0, "", collect_device_cb, &c));
    assert_string_equal(c.text, "dev-1");
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_certificates(void **state)
{
    struct kf_store *s = open_new("certs");
    struct kf_device_rec d1 = kf_st_device("dev-1", "", KF_DEVICE_ACTIVE);
    struct kf_device_rec d2 = kf_st_device("dev-2", "", KF_DEVICE_ACTIVE);
    struct kf_cert_rec a = cert("0a", "dev-1", 1000), b = cert("0b", "dev-1", 2000);
    struct kf_cert_rec cc = cert("0c", "dev-2", 3000), srv = cert("0d", "", 1500), got;
    struct kf_cert_rec orphan = cert("0e", "dev-9", 1000);
    struct revoke_arg rv = {"0a", 5000, KF_CRL_KEY_COMPROMISE};
    struct collect c;
    struct kf_txn *t;

    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d1));
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d2));
    KF_OK_OR_FAIL(kf_store_write(s, cert_insert_cb, &a));
    KF_OK_OR_FAIL(kf_store_write(s, cert_insert_cb, &b));
    KF_OK_OR_FAIL(kf_store_write(s, cert_insert_cb, &cc));
    KF_OK_OR_FAIL(kf_store_write(s, cert_insert_cb, &srv));
    KF_EXPECT_ERR(KF_E_EXISTS, kf_store_write(s, cert_insert_cb, &a));
    KF_EXPECT_MSG("certificate 0a already exists");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, cert_insert_cb, &orphan));
    KF_EXPECT_MSG("device dev-9 not found");
    orphan = cert("0E", "dev-1", 1000);
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, cert_insert_cb, &orphan));
    KF_EXPECT_MSG("certificate serial must be lower-case hex digits");

    KF_OK_OR_FAIL(kf_store_write(s, revoke_cb, &rv));
    KF_EXPECT_ERR(KF_E_CONFLICT, kf_store_write(s, revoke_cb, &rv));
    KF_EXPECT_MSG("certificate 0a is already revoked");
    rv.serial = "ff";
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, revoke_cb, &rv));
    KF_EXPECT_MSG("certificate ff not found");
    rv.serial = "0b";
    rv.reason = 6; /* certificateHold: not offered */
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, revoke_cb, &rv));

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_cert_get(t, "0a", &got));
    assert_int_equal(got.status, KF_CERT_REVOKED);
    assert_int_equal(got.revoked_at, 5000);
    assert_int_equal(got.reason, KF_CRL_KEY_COMPROMISE);
    assert_string_equal(got.device_id, "dev-1");
    assert_string_equal(got.profile, "device");
    assert_string_equal(got.issuer, "issuing");
    assert_string_equal(got.subject, "CN=x");
    assert_string_equal(got.pem, a.pem);
    assert_int_equal(got.not_after, 1000 + 30 * 86400);
    kf_cert_rec_clear(&got);
    KF_OK_OR_FAIL(kf_txn_cert_get(t, "0d", &got));
    assert_string_equal(got.device_id, "");
    assert_int_equal(got.status, KF_CERT_VALID);
    assert_int_equal(got.revoked_at, 0);
    kf_cert_rec_clear(&got);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_cert_get(t, "99", &got));
    KF_EXPECT_MSG("certificate 99 not found");

    /* Newest first, with each filter and a limit. */
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_list(t, NULL, 0, KF_LIST_ALL, collect_cert_cb, &c));
    assert_string_equal(c.text, "0c,0b,0d,0a");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_list(t, "dev-1", 0, KF_LIST_ALL, collect_cert_cb, &c));
    assert_string_equal(c.text, "0b,0a");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_list(t, NULL, KF_CERT_VALID, KF_LIST_ALL, collect_cert_cb, &c));
    assert_string_equal(c.text, "0c,0b,0d");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_list(t, "dev-1", KF_CERT_REVOKED, KF_LIST_ALL, collect_cert_cb, &c));
    assert_string_equal(c.text, "0a");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_list(t, NULL, 0, 2, collect_cert_cb, &c));
    assert_string_equal(c.text, "0c,0b");
    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_cert_list(t, NULL, 0, -1, collect_cert_cb, &c));

    /* The CRL's list: revoked, by this issuer, not yet expired. */
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_revoked(t, "issuing", 2000, collect_cert_cb, &c));
    assert_string_equal(c.text, "0a");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_revoked(t, "issuing", 1000 + 30 * 86400 + 1, collect_cert_cb, &c));
    assert_string_equal(c.text, "");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_revoked(t, "root", 2000, collect_cert_cb, &c));
    assert_string_equal(c.text, "");
    /* Every revoked serial, the expired ones too: what keyfleetd keeps refusing. */
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_revoked_serials(t, "issuing", collect_serial_cb, &c));
    assert_string_equal(c.text, "0a");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_revoked_serials(t, "root", collect_serial_cb, &c));
    assert_string_equal(c.text, "");
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_registrations(void **state)
{
    struct kf_store *s = open_new("reg");
    struct kf_device_rec d1 = kf_st_device("dev-1", "", KF_DEVICE_ACTIVE);
    struct kf_registration_rec r, got;
    struct kf_txn *t;

    memset(&r, 0, sizeof(r));
    snprintf(r.device_id, sizeof(r.device_id), "dev-1");
    snprintf(r.enrollment, sizeof(r.enrollment), "factory-a");
    snprintf(r.hub, sizeof(r.hub), "hub-1");
    snprintf(r.cert_serial, sizeof(r.cert_serial), "0a");
    snprintf(r.source_ip, sizeof(r.source_ip), "192.0.2.7");
    r.first_at = r.last_at = 1000;
    r.renew_after = 2000;
    r.count = 1;
    /* A registration belongs to a device that exists. */
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, reg_put_cb, &r));
    KF_EXPECT_MSG("device dev-1 not found");
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d1));
    KF_OK_OR_FAIL(kf_store_write(s, reg_put_cb, &r));
    r.last_at = 3000;
    r.count = 2;
    snprintf(r.cert_serial, sizeof(r.cert_serial), "0b");
    KF_OK_OR_FAIL(kf_store_write(s, reg_put_cb, &r));

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_registration_get(t, "dev-1", &got));
    assert_string_equal(got.enrollment, "factory-a");
    assert_string_equal(got.hub, "hub-1");
    assert_string_equal(got.cert_serial, "0b");
    assert_string_equal(got.source_ip, "192.0.2.7");
    assert_int_equal(got.first_at, 1000);
    assert_int_equal(got.last_at, 3000);
    assert_int_equal(got.renew_after, 2000);
    assert_int_equal(got.count, 2);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_registration_get(t, "dev-2", &got));
    KF_EXPECT_MSG("registration of device dev-2 not found");
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_hubs(void **state)
{
    struct kf_store *s = open_new("hubs");
    struct kf_hub_rec a = kf_st_hub("hub-a"), b = kf_st_hub("hub-b"), got;
    struct collect c;
    struct kf_txn *t;

    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &b));
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &a));
    KF_EXPECT_ERR(KF_E_EXISTS, kf_store_write(s, kf_st_hub_insert_cb, &a));
    KF_EXPECT_MSG("hub hub-a already exists");
    a.weight = 3;
    a.enabled = 0;
    KF_OK_OR_FAIL(kf_store_write(s, hub_update_cb, &a));
    got = kf_st_hub("hub-z");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, hub_update_cb, &got));
    KF_EXPECT_MSG("hub hub-z not found");

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_get(t, "hub-a", &got));
    assert_int_equal(got.weight, 3);
    assert_int_equal(got.enabled, 0);
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_hub_list(t, collect_hub_cb, &c));
    assert_string_equal(c.text, "hub-a,hub-b");
    kf_txn_end(t);

    KF_OK_OR_FAIL(kf_store_write(s, hub_delete_cb, "hub-b"));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, hub_delete_cb, "hub-b"));
    KF_EXPECT_MSG("hub hub-b not found");
    t = kf_st_read(s);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "hub-b", &got));
    kf_txn_end(t);
    kf_store_close(s);
}

static struct event_arg event(int64_t t, const char *type, const char *dev, const char *detail)
{
    struct event_arg ea;
    memset(&ea, 0, sizeof(ea));
    ea.e.time_ms = t;
    snprintf(ea.e.type, sizeof(ea.e.type), "%s", type);
    snprintf(ea.e.severity, sizeof(ea.e.severity), "warning");
    snprintf(ea.e.device, sizeof(ea.e.device), "%s", dev);
    snprintf(ea.e.source, sizeof(ea.e.source), "server");
    snprintf(ea.e.ip, sizeof(ea.e.ip), "198.51.100.4");
    ea.e.detail = (char *)detail;
    return ea;
}

struct event_seen {
    struct kf_event_rec first;
    char detail[64];
    int n;
};
static enum kf_err event_seen_cb(const struct kf_event_rec *e, void *a)
{
    struct event_seen *s = a;
    if (s->n++ == 0) {
        s->first = *e;
        s->first.detail = NULL; /* borrowed: copy what we need */
        snprintf(s->detail, sizeof(s->detail), "%s", e->detail ? e->detail : "(null)");
    }
    return KF_OK;
}

static void test_events(void **state)
{
    struct kf_store *s = open_new("events");
    struct event_arg ev[5] = {
        event(1000, "provisioning.denied", "dev-1", NULL),
        event(2000, "hub.acl_denied", "dev-1", "{\"topic\": \"devices/dev-2/x\"}"),
        event(3000, "provisioning.denied", "dev-2", NULL),
        event(4000, "provisioning.denied", "", NULL),
        event(5000, "hub.acl_denied", "dev-2", NULL),
    };
    struct event_arg bad;
    struct event_seen seen;
    struct collect c;
    struct kf_txn *t;

    for (int i = 0; i < 5; i++) {
        KF_OK_OR_FAIL(kf_store_write(s, event_insert_cb, &ev[i]));
        if (i > 0) assert_true(ev[i].id > ev[i - 1].id);
    }
    bad = event(1, "x", "", NULL);
    snprintf(bad.e.severity, sizeof(bad.e.severity), "panic");
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, event_insert_cb, &bad));
    KF_EXPECT_MSG("event severity \"panic\"");
    bad = event(1, "x", "", "not json");
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_store_write(s, event_insert_cb, &bad));

    t = kf_st_read(s);
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_event_list(t, 0, NULL, NULL, KF_LIST_ALL, collect_event_cb, &c));
    assert_int_equal(c.n, 5);
    memset(&seen, 0, sizeof(seen));
    KF_OK_OR_FAIL(kf_txn_event_list(t, 2000, NULL, NULL, KF_LIST_ALL, event_seen_cb, &seen));
    assert_int_equal(seen.n, 4); /* at or after 2000, oldest first */
    assert_int_equal(seen.first.id, ev[1].id);
    assert_string_equal(seen.first.type, "hub.acl_denied");
    assert_string_equal(seen.first.severity, "warning");
    assert_string_equal(seen.first.source, "server");
    assert_string_equal(seen.first.ip, "198.51.100.4");
    assert_string_equal(seen.detail, "{\"topic\": \"devices/dev-2/x\"}");
    memset(&seen, 0, sizeof(seen));
    KF_OK_OR_FAIL(kf_txn_event_list(t, 0, NULL, NULL, 1, event_seen_cb, &seen));
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.detail, "{}"); /* NULL detail reads back as {} */

    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(
        kf_txn_event_list(t, 0, "provisioning.denied", NULL, KF_LIST_ALL, collect_event_cb, &c));
    assert_int_equal(c.n, 3);
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_event_list(t, 0, NULL, "dev-2", KF_LIST_ALL, collect_event_cb, &c));
    assert_int_equal(c.n, 2);
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(
        kf_txn_event_list(t, 0, "hub.acl_denied", "dev-2", KF_LIST_ALL, collect_event_cb, &c));
    assert_int_equal(c.n, 1);
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_event_list(t, 3500, "provisioning.denied", NULL, 1, collect_event_cb, &c));
    assert_int_equal(c.n, 1);
    kf_txn_end(t);
    kf_store_close(s);
}

/* ---- transactions ---- */

static void test_write_on_read_refused(void **state)
{
    struct kf_store *s = open_new("readonly");
    struct kf_hub_rec h = kf_st_hub("hub-1"), got;
    struct kf_txn *t = kf_st_read(s);

    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_hub_insert(t, &h));
    KF_EXPECT_MSG("in a read transaction");
    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_cert_revoke(t, "0a", 1, 0));
    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_enrollment_delete(t, "dev-1"));
    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_audit_append(t, "operator:alice", "hub.add", "hub:x", NULL));
    KF_EXPECT_MSG("cannot append to the audit log in a read transaction");
    {
        struct kf_cert_rec c = cert("0a", "", 1000);
        struct event_arg ea = event(1000, "x.y", "", NULL);
        KF_EXPECT_ERR(KF_E_INVALID, kf_txn_cert_insert(t, &c));
        KF_EXPECT_MSG("cannot insert a certificate in a read transaction");
        KF_EXPECT_ERR(KF_E_INVALID, kf_txn_event_insert(t, &ea.e, NULL));
        KF_EXPECT_MSG("cannot record an event in a read transaction");
    }
    kf_txn_end(t);
    t = kf_st_read(s);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "hub-1", &got));
    kf_txn_end(t);
    kf_store_close(s);
}

/* Inserts two hubs, then fails: neither may be kept. */
static enum kf_err half_then_fail_cb(struct kf_txn *t, void *a)
{
    struct kf_hub_rec h1 = kf_st_hub("half-1"), h2 = kf_st_hub("half-2");
    enum kf_err rc = kf_txn_hub_insert(t, &h1);
    if (!rc) rc = kf_txn_hub_insert(t, &h2);
    if (!rc) rc = kf_fail(KF_E_DENIED, "the callback changed its mind");
    return rc;
}

struct nested {
    struct kf_store *s;
    struct kf_hub_rec h;
};

static enum kf_err nested_write_cb(struct kf_txn *t, void *a)
{
    struct nested *n = a;
    return kf_store_write(n->s, kf_st_hub_insert_cb, &n->h);
}

static void test_callback_error_rolls_back(void **state)
{
    struct kf_store *s = open_new("rollback");
    struct nested nested = {s, kf_st_hub("nested")};
    struct kf_hub_rec got;
    struct kf_txn *t;

    KF_EXPECT_ERR(KF_E_DENIED, kf_store_write(s, half_then_fail_cb, NULL));
    KF_EXPECT_MSG("the callback changed its mind");
    /* A callback cannot call kf_store_write (it would wait for itself). */
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, nested_write_cb, &nested));
    KF_EXPECT_MSG("inside a write callback or a done callback");
    t = kf_st_read(s);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "half-1", &got));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "half-2", &got));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "nested", &got));
    kf_txn_end(t);
    kf_store_close(s);
}

/*
 * Holds the writer (inside its callback) until `arrived` other threads are about to write, and a
 * while longer so that they are queued: they then share the next batch.
 */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, arrived, want;
};

static enum kf_err blocker_cb(struct kf_txn *t, void *a)
{
    struct gate *g = a;
    struct kf_hub_rec h = kf_st_hub("blocker");
    pthread_mutex_lock(&g->mu);
    g->running = 1;
    pthread_cond_broadcast(&g->cv);
    while (g->arrived < g->want)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    sleep_ms(300);
    return kf_txn_hub_insert(t, &h);
}

static enum kf_err refuse_cb(struct kf_txn *t, void *a)
{
    struct kf_hub_rec h = kf_st_hub("refused");
    enum kf_err rc = kf_txn_hub_insert(t, &h);
    return rc ? rc : kf_fail(KF_E_CONFLICT, "callback b refuses after writing");
}

struct writer {
    struct kf_store *s;
    struct gate *g;
    kf_store_write_cb cb;
    void *arg;
    enum kf_err rc;
    char msg[256];
    pthread_t th;
};

static void *writer_main(void *a)
{
    struct writer *w = a;
    if (w->cb != blocker_cb) {
        pthread_mutex_lock(&w->g->mu);
        w->g->arrived++;
        pthread_cond_broadcast(&w->g->cv);
        pthread_mutex_unlock(&w->g->mu);
    }
    w->rc = kf_store_write(w->s, w->cb, w->arg);
    snprintf(w->msg, sizeof(w->msg), "%s", w->rc ? kf_errmsg() : "");
    return NULL;
}

static void test_batch_isolates_callback_errors(void **state)
{
    struct kf_store *s = open_new("batch");
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 2};
    struct kf_hub_rec kept = kf_st_hub("kept"), got;
    struct writer w[3] = {
        {.s = s, .g = &g, .cb = blocker_cb, .arg = &g},
        {.s = s, .g = &g, .cb = refuse_cb, .arg = NULL},
        {.s = s, .g = &g, .cb = kf_st_hub_insert_cb, .arg = &kept},
    };
    struct kf_store_stats before, after;
    struct kf_txn *t;

    kf_store_stats(s, &before);
    assert_int_equal(pthread_create(&w[0].th, NULL, writer_main, &w[0]), 0);
    pthread_mutex_lock(&g.mu);
    while (!g.running)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    assert_int_equal(pthread_create(&w[1].th, NULL, writer_main, &w[1]), 0);
    assert_int_equal(pthread_create(&w[2].th, NULL, writer_main, &w[2]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(w[i].th, NULL);
    kf_store_stats(s, &after);

    assert_int_equal(w[0].rc, KF_OK);
    assert_int_equal(w[1].rc, KF_E_CONFLICT);
    /* The error and its sentence reach the caller's thread, whichever thread ran the callback. */
    assert_string_equal(w[1].msg, "callback b refuses after writing");
    assert_int_equal(w[2].rc, KF_OK);
    /* Three callbacks, two transactions: the failing and the succeeding one shared a batch. */
    assert_int_equal(after.writes - before.writes, 3);
    assert_int_equal(after.commits - before.commits, 2);

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_get(t, "blocker", &got));
    KF_OK_OR_FAIL(kf_txn_hub_get(t, "kept", &got));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "refused", &got));
    kf_txn_end(t);
    kf_store_close(s);
}

/*
 * Another process with the same store open, as the CLI has it beside keyfleetd. Told to, it
 * begins a write (inserting hub "rival") and holds it, with the write lock, until told to let go;
 * then it rolls back. It knows the store's URL and API alone, so every back end meets the same
 * rival. No cmocka in the child: a failed assertion there would run the remaining tests twice.
 */
struct rival {
    pid_t pid;
    int to[2];   /* to the rival: 'L' take the write lock, then 'R' (or end of file) let go */
    int from[2]; /* from the rival: 'O' the store is open, then 'L' the lock is held */
};

static enum kf_err rival_hold_cb(struct kf_txn *t, void *a)
{
    struct rival *r = a;
    struct kf_hub_rec h = kf_st_hub("rival");
    enum kf_err rc = kf_txn_hub_insert(t, &h);
    char c = 'L';
    if (rc) return rc;
    if (write(r->from[1], &c, 1) != 1) return kf_fail(KF_E_IO, "the rival cannot answer");
    if (read(r->to[0], &c, 1) < 0) return kf_fail(KF_E_IO, "the rival cannot listen");
    return kf_fail(KF_E_DENIED, "the rival lets go");
}

/* Starts the rival on the store at `url` (which it creates); returns once it has it open. */
static void rival_start(struct rival *r, const char *url)
{
    char c = 0;

    /* A rival that died fails the test when it does not answer, instead of killing the program. */
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(pipe(r->to), 0);
    assert_int_equal(pipe(r->from), 0);
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        struct kf_store *s = NULL;
        int ok;
        close(r->to[1]);
        close(r->from[0]);
        ok = kf_store_open(url, KF_STORE_CREATE, &s) == KF_OK;
        c = ok ? 'O' : 'E';
        if (write(r->from[1], &c, 1) != 1 || !ok) _exit(1);
        if (read(r->to[0], &c, 1) != 1 || c != 'L') _exit(1);
        ok = kf_store_write(s, rival_hold_cb, r) == KF_E_DENIED;
        kf_store_close(s);
        _exit(ok ? 0 : 1);
    }
    close(r->to[0]);
    close(r->from[1]);
    if (read(r->from[0], &c, 1) != 1 || c != 'O')
        fail_msg("the rival process could not open the store");
}

/*
 * Has the rival take the write lock: 0 once it holds it, -1 if it cannot. Called from a done
 * callback too, so it records and never asserts.
 */
static int rival_lock(struct rival *r)
{
    char c = 'L';
    if (write(r->to[1], &c, 1) != 1) return -1;
    return read(r->from[0], &c, 1) == 1 && c == 'L' ? 0 : -1;
}

/* Lets the rival go, and checks that it held its write to the end and rolled it back. */
static void rival_release(struct rival *r)
{
    char c = 'R';
    int status = 0;
    assert_int_equal(write(r->to[1], &c, 1), 1);
    close(r->to[1]);
    close(r->from[0]);
    assert_int_equal(waitpid(r->pid, &status, 0), r->pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the rival process failed (status %d)", status);
}

/*
 * Another process holds the write lock past the busy timeout: every queued write fails with
 * KF_E_BUSY and a sentence, whether it led its batch or followed, and nothing is kept.
 */
static void test_locked_by_another_process(void **state)
{
    const char *url = kf_test_store_url("locked");
    struct kf_store *s = NULL;
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    struct kf_hub_rec h[3] = {kf_st_hub("locked-0"), kf_st_hub("locked-1"), kf_st_hub("locked-2")},
                      got;
    struct writer w[3];
    struct kf_store_stats before, after;
    struct rival other;
    struct kf_txn *t;

    /* Started before the store is open here: the fork copies no store and no thread of ours. */
    rival_start(&other, url);
    KF_OK_OR_FAIL(kf_store_open(url, 0, &s));
    assert_int_equal(rival_lock(&other), 0);
    kf_store_stats(s, &before);
    for (int i = 0; i < 3; i++) {
        w[i] = (struct writer){.s = s, .g = &g, .cb = kf_st_hub_insert_cb, .arg = &h[i]};
        assert_int_equal(pthread_create(&w[i].th, NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(w[i].th, NULL);
    kf_store_stats(s, &after);
    rival_release(&other);

    for (int i = 0; i < 3; i++) {
        if (w[i].rc != KF_E_BUSY)
            fail_msg("writer %d returned %s, expected busy", i, kf_errcode(w[i].rc));
        if (!strstr(w[i].msg, "the transaction could not begin") || !strstr(w[i].msg, "is busy"))
            fail_msg("writer %d: message \"%s\"", i, w[i].msg);
    }
    assert_int_equal(after.writes - before.writes, 0);
    assert_int_equal(after.commits - before.commits, 0);
    t = kf_st_read(s);
    for (int i = 0; i < 3; i++)
        KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, h[i].name, &got));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "rival", &got)); /* rolled back */
    kf_txn_end(t);
    /* Once the lock is gone, writing works again. */
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h[0]));
    kf_store_close(s);
}

#define THREADS 8
#define WRITES  200

struct loader {
    struct kf_store *s;
    int n;
    int failures;
    enum kf_err first;
    pthread_t th;
};

static void *loader_main(void *a)
{
    struct loader *l = a;
    char dev[32];
    snprintf(dev, sizeof(dev), "dev-%d", l->n);
    for (int i = 0; i < WRITES; i++) {
        struct event_arg ea = event(1000 + i, "load.test", dev, NULL);
        enum kf_err rc = kf_store_write(l->s, event_insert_cb, &ea);
        if (rc && !l->failures++) l->first = rc;
    }
    return NULL;
}

static void test_group_commit_threads(void **state)
{
    struct kf_store *s = open_new("group");
    struct loader l[THREADS];
    struct kf_store_stats st;
    struct collect c;
    struct kf_txn *t;
    int64_t rows = 0;

    for (int i = 0; i < THREADS; i++) {
        memset(&l[i], 0, sizeof(l[i]));
        l[i].s = s;
        l[i].n = i;
        assert_int_equal(pthread_create(&l[i].th, NULL, loader_main, &l[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(l[i].th, NULL);
    for (int i = 0; i < THREADS; i++)
        if (l[i].failures)
            fail_msg("thread %d: %d writes failed, the first with %s", i, l[i].failures,
                     kf_errcode(l[i].first));

    kf_store_stats(s, &st);
    print_message("group commit: %" PRIu64 " writes in %" PRIu64 " commits\n", st.writes,
                  st.commits);
    assert_int_equal(st.writes, THREADS * WRITES);
    assert_true(st.commits >= 1);
    assert_true(st.commits < st.writes);

    t = kf_st_read(s);
    for (int i = 0; i < THREADS; i++) {
        char dev[32];
        snprintf(dev, sizeof(dev), "dev-%d", i);
        memset(&c, 0, sizeof(c));
        KF_OK_OR_FAIL(kf_txn_event_list(t, 0, "load.test", dev, KF_LIST_ALL, collect_event_cb, &c));
        assert_int_equal(c.n, WRITES);
        rows += c.n;
    }
    assert_int_equal(rows, THREADS * WRITES);
    kf_txn_end(t);
    kf_store_close(s);
}

static void test_snapshot_isolation(void **state)
{
    struct kf_store *s = open_new("snapshot");
    struct kf_hub_rec h1 = kf_st_hub("hub-1"), h2 = kf_st_hub("hub-2"), got;
    struct collect c;
    struct kf_txn *t, *t2;

    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h1));
    /* The snapshot is taken when the read begins, not at its first query. */
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h2));
    h1.weight = 99;
    KF_OK_OR_FAIL(kf_store_write(s, hub_update_cb, &h1));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "hub-2", &got));
    KF_OK_OR_FAIL(kf_txn_hub_get(t, "hub-1", &got));
    assert_int_equal(got.weight, 10);
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_hub_list(t, collect_hub_cb, &c));
    assert_string_equal(c.text, "hub-1");

    /* A read begun after the commit sees it, while the old one still does not. */
    t2 = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_get(t2, "hub-2", &got));
    KF_OK_OR_FAIL(kf_txn_hub_get(t2, "hub-1", &got));
    assert_int_equal(got.weight, 99);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(t, "hub-2", &got));
    kf_txn_end(t);
    kf_txn_end(t2);
    kf_store_close(s);
}

/* Many read transactions at once: more than the idle pool keeps, all usable. */
static void test_many_readers(void **state)
{
    struct kf_store *s = open_new("readers");
    struct kf_hub_rec h = kf_st_hub("hub-1"), got;
    struct kf_txn *t[12];

    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h));
    for (int i = 0; i < 12; i++)
        t[i] = kf_st_read(s);
    for (int i = 0; i < 12; i++) {
        KF_OK_OR_FAIL(kf_txn_hub_get(t[i], "hub-1", &got));
        kf_txn_end(t[i]);
    }
    kf_store_close(s);
}

/* ---- asynchronous writes ---- */

/* Holds the committer inside a write callback until released, so that requests queue behind it. */
struct hold {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, released;
};
#define HOLD_INIT                                                 \
    {                                                             \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 \
    }

static void hold_running(struct hold *h)
{
    pthread_mutex_lock(&h->mu);
    h->running = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static enum kf_err hold_cb(struct kf_txn *t, void *a)
{
    struct hold *h = a;
    struct kf_hub_rec holder = kf_st_hub("holder");
    hold_running(h);
    pthread_mutex_lock(&h->mu);
    while (!h->released)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    return kf_txn_hub_insert(t, &holder);
}

static void hold_wait_running(struct hold *h)
{
    pthread_mutex_lock(&h->mu);
    while (!h->running)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

static void hold_release(struct hold *h)
{
    pthread_mutex_lock(&h->mu);
    h->released = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Done callbacks, counted, with the order they ran in and the thread they ran on. */
struct tally {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int order[8192]; /* request numbers, in the order their done callbacks ran */
    pthread_t thread;
    int other_thread; /* a done callback ran on another thread than the first one did */
};

static struct tally *tally_new(void)
{
    struct tally *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    assert_int_equal(pthread_mutex_init(&t->mu, NULL), 0);
    assert_int_equal(pthread_cond_init(&t->cv, NULL), 0);
    return t;
}

static void tally_free(struct tally *t)
{
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Waits until `want` done callbacks have run (a minute at most: a lost one fails, not hangs). */
static void tally_wait(struct tally *t, int want)
{
    struct timespec deadline;
    int timed_out = 0;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&t->mu);
    while (t->done < want && !timed_out)
        timed_out = pthread_cond_timedwait(&t->cv, &t->mu, &deadline) != 0;
    pthread_mutex_unlock(&t->mu);
    if (t->done < want) fail_msg("%d of %d done callbacks ran", t->done, want);
}

/* An asynchronous request that inserts a hub (or runs another callback), and what became of it. */
struct areq {
    struct kf_store_req req;
    struct tally *tally;
    int n; /* its number, recorded in the tally */
    struct kf_hub_rec hub;
    int free_me; /* heap-allocated: freed by its done callback */
    /* In the done callback: whether the hub can be read, and a kf_store_write attempt. */
    struct kf_store *check_visible, *try_write;
    struct rival *lock_rival; /* in the done callback: have this rival take the write lock */
    /* The outcome. */
    int calls, visible, lock_rc, wrong_req;
    enum kf_err rc, write_rc;
    char errmsg[256], write_msg[256];
};

static enum kf_err areq_hub_cb(struct kf_txn *t, void *a)
{
    struct areq *r = a;
    return kf_txn_hub_insert(t, &r->hub);
}

static void areq_done_cb(struct kf_store_req *req, enum kf_err rc, void *done_arg)
{
    struct areq *r = done_arg;
    struct tally *t = r->tally;
    struct kf_hub_rec got;
    struct kf_txn *txn = NULL;

    /* cmocka's asserts belong to the test's thread: record, check there. */
    if (req != &r->req) r->wrong_req = 1;
    if (r->check_visible && kf_store_read(r->check_visible, &txn) == KF_OK) {
        r->visible = kf_txn_hub_get(txn, r->hub.name, &got) == KF_OK;
        kf_txn_end(txn);
    }
    if (r->try_write) {
        r->write_rc = kf_store_write(r->try_write, areq_hub_cb, r);
        snprintf(r->write_msg, sizeof(r->write_msg), "%s", kf_errmsg());
    }
    if (r->lock_rival) r->lock_rc = rival_lock(r->lock_rival);
    pthread_mutex_lock(&t->mu);
    r->calls++;
    r->rc = rc;
    snprintf(r->errmsg, sizeof(r->errmsg), "%s", req->errmsg);
    if (t->done == 0)
        t->thread = pthread_self();
    else if (!pthread_equal(t->thread, pthread_self()))
        t->other_thread = 1;
    if (t->done < (int)KF_ARRAY_LEN(t->order)) t->order[t->done] = r->n;
    t->done++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    /* The request is the caller's again: freeing it here is allowed, and ASan checks the store
     * does not touch it afterwards. */
    if (r->free_me) free(r);
}

/* `cb` NULL: insert a hub named `name`. */
static void areq_init(struct areq *r, struct tally *t, int n, const char *name,
                      kf_store_write_cb cb, void *arg)
{
    memset(r, 0, sizeof(*r));
    r->tally = t;
    r->n = n;
    r->hub = kf_st_hub(name);
    r->req.cb = cb ? cb : areq_hub_cb;
    r->req.arg = cb ? arg : r;
    r->req.done_cb = areq_done_cb;
    r->req.done_arg = r;
}

static struct areq *areq_new(struct tally *t, int n, const char *name)
{
    struct areq *r = malloc(sizeof(*r));
    assert_non_null(r);
    areq_init(r, t, n, name, NULL, NULL);
    r->free_me = 1;
    return r;
}

static enum kf_err count_hub_cb(const struct kf_hub_rec *h, void *a)
{
    (*(int *)a)++;
    return KF_OK;
}

/* Hubs in the store at `url`, counted after opening it afresh. */
static int hubs_after_reopen(const char *url)
{
    struct kf_store *s = NULL;
    struct kf_txn *t;
    int n = 0;
    KF_OK_OR_FAIL(kf_store_open(url, 0, &s));
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_list(t, count_hub_cb, &n));
    kf_txn_end(t);
    kf_store_close(s);
    return n;
}

#define SUBMITTERS 8
#define SUBMITS    200

struct submitter {
    struct kf_store *s;
    struct areq *reqs; /* everyone's: each thread fills the ones it numbers */
    struct tally *tally;
    pthread_mutex_t *mu; /* held across numbering and submitting: numbers are submission order */
    int *next;
    int failures;
    enum kf_err first;
    char msg[256];
    pthread_t th;
};

static void *submitter_main(void *a)
{
    struct submitter *p = a;
    for (int i = 0; i < SUBMITS; i++) {
        char name[32];
        enum kf_err rc;
        int n;
        pthread_mutex_lock(p->mu);
        n = (*p->next)++;
        snprintf(name, sizeof(name), "h-%d", n);
        areq_init(&p->reqs[n], p->tally, n, name, NULL, NULL);
        p->reqs[n].check_visible = p->s;
        rc = kf_store_submit(p->s, &p->reqs[n].req);
        pthread_mutex_unlock(p->mu);
        if (rc && !p->failures++) {
            p->first = rc;
            snprintf(p->msg, sizeof(p->msg), "%s", kf_errmsg());
        }
    }
    return NULL;
}

/*
 * Workers submit at once from many threads: every done callback runs exactly once, on one
 * thread that is none of theirs, after its commit, in submission order; commits are shared; and
 * every row is in the store when it is opened again.
 */
static void test_submit_many_threads(void **state)
{
    const char *url = kf_test_store_url("submit");
    struct kf_store *s;
    struct tally *t = tally_new();
    struct areq *reqs = calloc(SUBMITTERS * SUBMITS, sizeof(*reqs));
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    struct submitter p[SUBMITTERS];
    struct kf_store_stats before, after;
    int next = 0;

    KF_OK_OR_FAIL(kf_store_open(url, KF_STORE_CREATE, &s));
    assert_non_null(reqs);
    kf_store_stats(s, &before);
    for (int i = 0; i < SUBMITTERS; i++) {
        p[i] = (struct submitter){.s = s, .reqs = reqs, .tally = t, .mu = &mu, .next = &next};
        assert_int_equal(pthread_create(&p[i].th, NULL, submitter_main, &p[i]), 0);
    }
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(p[i].th, NULL);
    for (int i = 0; i < SUBMITTERS; i++)
        if (p[i].failures)
            fail_msg("thread %d: %d submits failed, the first with %s: %s", i, p[i].failures,
                     kf_errcode(p[i].first), p[i].msg);
    tally_wait(t, SUBMITTERS * SUBMITS);
    kf_store_stats(s, &after);

    for (int n = 0; n < SUBMITTERS * SUBMITS; n++) {
        if (reqs[n].calls != 1) fail_msg("request %d: %d done callbacks", n, reqs[n].calls);
        if (reqs[n].rc) fail_msg("request %d: %s: %s", n, kf_errcode(reqs[n].rc), reqs[n].errmsg);
        assert_false(reqs[n].wrong_req);
        assert_string_equal(reqs[n].errmsg, "");
        /* Done means durable: a read begun in the done callback already sees the row. */
        if (!reqs[n].visible) fail_msg("request %d: its row was not visible when done", n);
        if (t->order[n] != n)
            fail_msg("done callback %d was request %d's: not in submission order", n, t->order[n]);
    }
    assert_false(t->other_thread);
    assert_false(pthread_equal(t->thread, pthread_self()));
    for (int i = 0; i < SUBMITTERS; i++)
        assert_false(pthread_equal(t->thread, p[i].th));

    print_message("async group commit: %" PRIu64 " writes in %" PRIu64 " commits\n",
                  after.writes - before.writes, after.commits - before.commits);
    assert_int_equal(after.writes - before.writes, SUBMITTERS * SUBMITS);
    assert_true(after.commits - before.commits >= 1);
    assert_true(after.commits - before.commits < after.writes - before.writes);
    kf_store_close(s);
    assert_int_equal(hubs_after_reopen(url), SUBMITTERS * SUBMITS);
    free(reqs);
    tally_free(t);
}

/* Fails with a sentence longer than errmsg holds, cut where a two-byte character straddles it. */
#define LONG_TAIL "\xc3\xa9 and the rest of a long sentence"
static enum kf_err long_refusal_cb(struct kf_txn *t, void *a)
{
    char msg[400];
    memset(msg, 'x', 254);
    snprintf(msg + 254, sizeof(msg) - 254, "%s", LONG_TAIL);
    return kf_fail(KF_E_DENIED, "%s", msg);
}

/*
 * Requests queued behind a held committer share one batch: a failing callback loses only its own
 * changes and gets its own sentence; the others are kept. A done callback cannot wait for a write.
 */
static void test_submit_batch_isolates_errors(void **state)
{
    struct kf_store *s = open_new("submit-batch");
    struct hold h = HOLD_INIT;
    struct tally *t = tally_new();
    struct kf_store_stats before, after;
    struct areq r[5];
    struct kf_hub_rec got;
    struct kf_txn *txn;
    char xs[255];

    kf_store_stats(s, &before);
    areq_init(&r[0], t, 0, "holder", hold_cb, &h);
    KF_OK_OR_FAIL(kf_store_submit(s, &r[0].req));
    hold_wait_running(&h);
    areq_init(&r[1], t, 1, "kept-a", NULL, NULL);
    areq_init(&r[2], t, 2, "refused", refuse_cb, NULL);
    areq_init(&r[3], t, 3, "long", long_refusal_cb, NULL);
    areq_init(&r[4], t, 4, "kept-d", NULL, NULL);
    r[4].try_write = s;
    for (int i = 1; i < 5; i++)
        KF_OK_OR_FAIL(kf_store_submit(s, &r[i].req));
    hold_release(&h);
    tally_wait(t, 5);
    kf_store_stats(s, &after);

    for (int i = 0; i < 5; i++) {
        assert_int_equal(t->order[i], i);
        assert_int_equal(r[i].calls, 1);
    }
    assert_int_equal(r[0].rc, KF_OK);
    assert_int_equal(r[1].rc, KF_OK);
    assert_string_equal(r[1].errmsg, "");
    assert_int_equal(r[2].rc, KF_E_CONFLICT);
    assert_string_equal(r[2].errmsg, "callback b refuses after writing");
    /* Cut to fit, before the character that would not, and still terminated. */
    assert_int_equal(r[3].rc, KF_E_DENIED);
    memset(xs, 'x', 254);
    xs[254] = '\0';
    assert_string_equal(r[3].errmsg, xs);
    assert_int_equal(r[4].rc, KF_OK);
    assert_int_equal(r[4].write_rc, KF_E_INVALID);
    assert_non_null(strstr(r[4].write_msg, "inside a write callback or a done callback"));
    /* Five callbacks, two commits: the holder's, and one for the four behind it. */
    assert_int_equal(after.writes - before.writes, 5);
    assert_int_equal(after.commits - before.commits, 2);

    txn = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_hub_get(txn, "holder", &got));
    KF_OK_OR_FAIL(kf_txn_hub_get(txn, "kept-a", &got));
    KF_OK_OR_FAIL(kf_txn_hub_get(txn, "kept-d", &got));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(txn, "refused", &got));
    kf_txn_end(txn);

    /* A waiting writer still gets the whole sentence. */
    KF_EXPECT_ERR(KF_E_DENIED, kf_store_write(s, long_refusal_cb, NULL));
    assert_int_equal(strlen(kf_errmsg()), 254 + strlen(LONG_TAIL));
    KF_EXPECT_MSG(LONG_TAIL);

    /* A request is the caller's again once done: submitted again, it meets its own hub. */
    KF_OK_OR_FAIL(kf_store_submit(s, &r[1].req));
    tally_wait(t, 6);
    assert_int_equal(r[1].calls, 2);
    assert_int_equal(r[1].rc, KF_E_EXISTS);
    assert_string_equal(r[1].errmsg, "hub kept-a already exists");
    kf_store_close(s);
    tally_free(t);
}

#define MIXERS 4
#define MIXES  100

struct mixer {
    struct kf_store *s;
    int n, sync;
    struct areq *reqs; /* MIXES of them, for an asynchronous mixer */
    struct tally *tally;
    int failures;
    enum kf_err first;
    char msg[256];
    pthread_t th;
};

static void *mixer_main(void *a)
{
    struct mixer *m = a;
    for (int i = 0; i < MIXES; i++) {
        char name[32];
        enum kf_err rc;
        snprintf(name, sizeof(name), "%s-%d-%d", m->sync ? "sync" : "async", m->n, i);
        if (m->sync) {
            struct kf_hub_rec h = kf_st_hub(name), got;
            struct kf_txn *t = NULL;
            rc = kf_store_write(m->s, kf_st_hub_insert_cb, &h);
            /* Returned means durable: a read begun now sees it. */
            if (!rc) rc = kf_store_read(m->s, &t);
            if (!rc) {
                rc = kf_txn_hub_get(t, name, &got);
                kf_txn_end(t);
            }
        } else {
            areq_init(&m->reqs[i], m->tally, m->n * MIXES + i, name, NULL, NULL);
            rc = kf_store_submit(m->s, &m->reqs[i].req);
        }
        if (rc && !m->failures++) {
            m->first = rc;
            snprintf(m->msg, sizeof(m->msg), "%s", kf_errmsg());
        }
    }
    return NULL;
}

/* kf_store_write from some threads and kf_store_submit from others share the one writer. */
static void test_submit_mixed_with_write(void **state)
{
    const char *url = kf_test_store_url("submit-mixed");
    struct kf_store *s;
    struct tally *t = tally_new();
    struct areq *reqs = calloc(MIXERS * MIXES, sizeof(*reqs));
    struct mixer m[2 * MIXERS];
    struct kf_store_stats before, after;

    KF_OK_OR_FAIL(kf_store_open(url, KF_STORE_CREATE, &s));
    assert_non_null(reqs);
    kf_store_stats(s, &before);
    for (int i = 0; i < 2 * MIXERS; i++) {
        m[i] = (struct mixer){.s = s, .n = i / 2, .sync = i % 2, .tally = t};
        if (!m[i].sync) m[i].reqs = reqs + (i / 2) * MIXES;
        assert_int_equal(pthread_create(&m[i].th, NULL, mixer_main, &m[i]), 0);
    }
    for (int i = 0; i < 2 * MIXERS; i++)
        pthread_join(m[i].th, NULL);
    for (int i = 0; i < 2 * MIXERS; i++)
        if (m[i].failures)
            fail_msg("%s thread %d: %d writes failed, the first with %s: %s",
                     m[i].sync ? "sync" : "async", i, m[i].failures, kf_errcode(m[i].first),
                     m[i].msg);
    tally_wait(t, MIXERS * MIXES);
    kf_store_stats(s, &after);
    for (int n = 0; n < MIXERS * MIXES; n++) {
        if (reqs[n].calls != 1) fail_msg("request %d: %d done callbacks", n, reqs[n].calls);
        if (reqs[n].rc) fail_msg("request %d: %s: %s", n, kf_errcode(reqs[n].rc), reqs[n].errmsg);
    }
    assert_int_equal(t->done, MIXERS * MIXES); /* waiters' requests call no one else's callback */
    assert_int_equal(after.writes - before.writes, 2 * MIXERS * MIXES);
    assert_true(after.commits - before.commits < after.writes - before.writes);
    kf_store_close(s);
    assert_int_equal(hubs_after_reopen(url), 2 * MIXERS * MIXES);
    free(reqs);
    tally_free(t);
}

/* A full queue refuses a submit at once, without losing what it holds; waiters are not refused. */
static void test_submit_queue_full(void **state)
{
    const char *url = kf_test_store_url("submit-full");
    struct kf_store *s;
    struct hold h = HOLD_INIT;
    struct tally *t = tally_new();
    struct areq *r = calloc(KF_STORE_QUEUE_MAX + 2, sizeof(*r));
    struct areq bad;
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    struct kf_hub_rec late = kf_st_hub("late-sync");
    struct writer w = {.g = &g, .cb = kf_st_hub_insert_cb, .arg = &late};
    const int over = KF_STORE_QUEUE_MAX + 1;

    KF_OK_OR_FAIL(kf_store_open(url, KF_STORE_CREATE, &s));
    assert_non_null(r);
    w.s = s;

    /* A request needs both callbacks. */
    areq_init(&bad, t, -1, "bad", NULL, NULL);
    bad.req.cb = NULL;
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_submit(s, &bad.req));
    areq_init(&bad, t, -1, "bad", NULL, NULL);
    bad.req.done_cb = NULL;
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_submit(s, &bad.req));
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_submit(NULL, &bad.req));

    areq_init(&r[0], t, 0, "holder", hold_cb, &h);
    KF_OK_OR_FAIL(kf_store_submit(s, &r[0].req));
    hold_wait_running(&h);
    for (int i = 1; i <= KF_STORE_QUEUE_MAX; i++) {
        char name[32];
        enum kf_err rc;
        snprintf(name, sizeof(name), "q-%d", i);
        areq_init(&r[i], t, i, name, NULL, NULL);
        rc = kf_store_submit(s, &r[i].req);
        if (rc)
            fail_msg("submit %d of %d: %s: %s", i, KF_STORE_QUEUE_MAX, kf_errcode(rc), kf_errmsg());
    }
    areq_init(&r[over], t, over, "over", NULL, NULL);
    KF_EXPECT_ERR(KF_E_BUSY, kf_store_submit(s, &r[over].req));
    KF_EXPECT_MSG("write queue is full");

    /*
     * A waiting writer queues behind the full queue instead of being refused. The pause only
     * lets it reach the queue before the release; without it the check would be weaker, never
     * wrong.
     */
    assert_int_equal(pthread_create(&w.th, NULL, writer_main, &w), 0);
    sleep_ms(200);
    hold_release(&h);
    pthread_join(w.th, NULL);
    if (w.rc) fail_msg("the waiting writer got %s: %s", kf_errcode(w.rc), w.msg);
    tally_wait(t, KF_STORE_QUEUE_MAX + 1);
    for (int i = 0; i <= KF_STORE_QUEUE_MAX; i++) {
        if (r[i].calls != 1 || r[i].rc)
            fail_msg("request %d: %d done callbacks, %s", i, r[i].calls, kf_errcode(r[i].rc));
        assert_int_equal(t->order[i], i);
    }
    /* The refused request never reached the committer, and is the caller's to submit again. */
    assert_int_equal(r[over].calls, 0);
    KF_OK_OR_FAIL(kf_store_submit(s, &r[over].req));
    tally_wait(t, KF_STORE_QUEUE_MAX + 2);
    assert_int_equal(r[over].rc, KF_OK);
    kf_store_close(s);
    /* holder, the queue, the one refused then resubmitted, the waiting writer's */
    assert_int_equal(hubs_after_reopen(url), 1 + KF_STORE_QUEUE_MAX + 1 + 1);
    free(r);
    tally_free(t);
}

/* Inside the held batch, submits until the store refuses because it is closing. */
struct prober {
    struct kf_store *s;
    struct tally *tally;
    struct hold h; /* `running` only */
    int accepted;
    enum kf_err refused;
    char msg[256];
};

static enum kf_err probe_until_closing_cb(struct kf_txn *t, void *a)
{
    struct prober *p = a;
    struct kf_hub_rec holder = kf_st_hub("holder");
    hold_running(&p->h);
    for (int k = 0; k < 10000; k++) {
        char name[32];
        struct areq *q;
        enum kf_err rc;
        snprintf(name, sizeof(name), "probe-%d", k);
        q = areq_new(p->tally, 100000 + k, name);
        rc = kf_store_submit(p->s, &q->req);
        if (rc) {
            p->refused = rc;
            snprintf(p->msg, sizeof(p->msg), "%s", kf_errmsg());
            free(q);
            break;
        }
        p->accepted++;
        sleep_ms(1);
    }
    return kf_txn_hub_insert(t, &holder);
}

/*
 * kf_store_close while requests wait: it refuses new ones, runs every one it accepted (their
 * done callbacks free them), and only then returns.
 */
static void test_close_drains(void **state)
{
    const char *url = kf_test_store_url("submit-close");
    struct kf_store *s;
    struct tally *t = tally_new();
    struct prober p = {.h = HOLD_INIT};
    struct areq holder;
    int last_q = 0, last_probe = 0, n_q = 0, n_probe = 0;

    KF_OK_OR_FAIL(kf_store_open(url, KF_STORE_CREATE, &s));
    p.s = s;
    p.tally = t;
    areq_init(&holder, t, 0, "holder", probe_until_closing_cb, &p);
    KF_OK_OR_FAIL(kf_store_submit(s, &holder.req));
    hold_wait_running(&p.h);
    for (int i = 1; i <= 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "q-%d", i);
        KF_OK_OR_FAIL(kf_store_submit(s, &areq_new(t, i, name)->req));
    }
    kf_store_close(s);

    /* Closed: every accepted request has had its done callback, once, in its submitter's order. */
    assert_int_equal(p.refused, KF_E_INVALID);
    assert_non_null(strstr(p.msg, "the store is closing"));
    assert_int_equal(t->done, 1 + 100 + p.accepted);
    assert_int_equal(holder.rc, KF_OK);
    for (int i = 1; i < t->done; i++) {
        int n = t->order[i];
        if (n >= 100000) {
            assert_int_equal(n - 100000, last_probe++);
            n_probe++;
        } else {
            assert_int_equal(n, ++last_q);
            n_q++;
        }
    }
    assert_int_equal(n_q, 100);
    assert_int_equal(n_probe, p.accepted);
    assert_int_equal(hubs_after_reopen(url), 1 + 100 + p.accepted);
    tally_free(t);
}

/*
 * Another process takes the write lock between two batches and holds it past the busy timeout:
 * every request of the next batch gets KF_E_BUSY and a sentence, and nothing of it is kept.
 */
static void test_submit_locked_by_another_process(void **state)
{
    const char *url = kf_test_store_url("submit-locked");
    struct kf_store *s = NULL;
    struct hold h = HOLD_INIT;
    struct tally *t = tally_new();
    struct kf_store_stats before, after;
    struct areq r[4];
    struct rival other;
    struct kf_hub_rec got;
    struct kf_txn *txn;

    rival_start(&other, url); /* before the store is open here, as in the test above */
    KF_OK_OR_FAIL(kf_store_open(url, 0, &s));
    kf_store_stats(s, &before);
    /* The holder's done callback runs after its commit and before the next batch begins. */
    areq_init(&r[0], t, 0, "holder", hold_cb, &h);
    r[0].lock_rival = &other;
    KF_OK_OR_FAIL(kf_store_submit(s, &r[0].req));
    hold_wait_running(&h);
    for (int i = 1; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "locked-%d", i);
        areq_init(&r[i], t, i, name, NULL, NULL);
        KF_OK_OR_FAIL(kf_store_submit(s, &r[i].req));
    }
    hold_release(&h);
    tally_wait(t, 4);
    kf_store_stats(s, &after);
    rival_release(&other);

    assert_int_equal(r[0].rc, KF_OK);
    assert_int_equal(r[0].lock_rc, 0);
    for (int i = 1; i < 4; i++) {
        if (r[i].rc != KF_E_BUSY)
            fail_msg("request %d got %s, expected busy", i, kf_errcode(r[i].rc));
        if (!strstr(r[i].errmsg, "the transaction could not begin") ||
            !strstr(r[i].errmsg, "is busy"))
            fail_msg("request %d: message \"%s\"", i, r[i].errmsg);
    }
    /* Only the holder ran and committed. */
    assert_int_equal(after.writes - before.writes, 1);
    assert_int_equal(after.commits - before.commits, 1);
    txn = kf_st_read(s);
    for (int i = 1; i < 4; i++)
        KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(txn, r[i].hub.name, &got));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_hub_get(txn, "rival", &got)); /* rolled back */
    kf_txn_end(txn);
    /* Once the lock is gone, the same request goes through. */
    KF_OK_OR_FAIL(kf_store_submit(s, &r[1].req));
    tally_wait(t, 5);
    assert_int_equal(r[1].rc, KF_OK);
    kf_store_close(s);
    tally_free(t);
}

/* ---- registry version ---- */

static enum kf_err audit_one_cb(struct kf_txn *t, void *a)
{
    return kf_txn_audit_append(t, "operator:alice", "hub.add", "hub:x", NULL);
}

/* Inside one write transaction the version counts the changes made so far. */
static enum kf_err version_in_txn_cb(struct kf_txn *t, void *a)
{
    int64_t *moved = a, v0 = 0, v1 = 0;
    struct kf_hub_rec h = kf_st_hub("in-txn");
    enum kf_err rc = kf_txn_registry_version(t, &v0);
    if (!rc) rc = kf_txn_hub_insert(t, &h);
    if (!rc) rc = kf_txn_registry_version(t, &v1);
    *moved = v1 - v0;
    return rc;
}

/* An operator's edits with sqlite3 move it too: sqlite.c's test_registry_version_sqlite3. */
static void test_registry_version(void **state)
{
    const char *url = kf_test_store_url("regver");
    struct kf_store *s;
    struct kf_enrollment_rec e = enrollment("factory-a", KF_ENROLL_GROUP);
    struct kf_device_rec d = kf_st_device("dev-1", "factory-a", KF_DEVICE_ACTIVE);
    struct kf_cert_rec c = cert("0a", "dev-1", 1000);
    struct revoke_arg rv = {"0a", 5000, KF_CRL_KEY_COMPROMISE};
    struct kf_hub_rec h = kf_st_hub("hub-1");
    struct event_arg ev = event(1000, "provisioning.denied", "dev-1", NULL);
    struct kf_registration_rec reg;
    struct kf_ca_rec ca;
    struct crl_arg crl = {"issuing", 0};
    int64_t moved = 0, v;
    int status = 0;
    pid_t pid;

    KF_OK_OR_FAIL(kf_store_open(url, KF_STORE_CREATE, &s));
    assert_int_equal(kf_st_registry_version(s), 0);

    /* What keyfleetd caches moves it, once per change. */
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, enroll_insert_cb, &e));
    e.enabled = 0;
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, enroll_update_cb, &e));
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, kf_st_hub_insert_cb, &h));
    h.weight = 5;
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, hub_update_cb, &h));
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, hub_delete_cb, "hub-1"));
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, kf_st_device_insert_cb, &d));
    d.status = KF_DEVICE_DISABLED;
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, kf_st_device_update_cb, &d));
    /* A device rewritten with the status it had (a hub assigned) is not a status change. */
    snprintf(d.hub, sizeof(d.hub), "hub-2");
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, kf_st_device_update_cb, &d));
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, cert_insert_cb, &c));
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, revoke_cb, &rv));

    /* Everything else leaves it alone. */
    memset(&reg, 0, sizeof(reg));
    snprintf(reg.device_id, sizeof(reg.device_id), "dev-1");
    reg.first_at = reg.last_at = 1000;
    reg.count = 1;
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, reg_put_cb, &reg));
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, event_insert_cb, &ev));
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, audit_one_cb, NULL));
    memset(&ca, 0, sizeof(ca));
    snprintf(ca.name, sizeof(ca.name), "issuing");
    snprintf(ca.serial, sizeof(ca.serial), "01");
    ca.cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, ca_insert_cb, &ca));
    KF_ST_EXPECT_BUMP(s, 0, kf_store_write(s, crl_cb, &crl));
    /* A change that was rolled back was no change. */
    v = kf_st_registry_version(s);
    KF_EXPECT_ERR(KF_E_DENIED, kf_store_write(s, half_then_fail_cb, NULL));
    assert_int_equal(kf_st_registry_version(s), v);

    /* Deleting an enrollment unlinks its devices, but changes no status: one change. */
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, enroll_delete_cb, "factory-a"));
    KF_OK_OR_FAIL(kf_store_write(s, version_in_txn_cb, &moved));
    assert_int_equal(moved, 1);
    v = kf_st_registry_version(s);
    kf_store_close(s);

    /* Another process's changes move it too: the CLI's, through the store. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct kf_store *cs = NULL;
        struct kf_hub_rec ch = kf_st_hub("from-cli");
        int bad = kf_store_open(url, 0, &cs) != KF_OK ||
                  kf_store_write(cs, kf_st_hub_insert_cb, &ch) != KF_OK;
        kf_store_close(cs);
        _exit(bad);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    KF_OK_OR_FAIL(kf_store_open(url, 0, &s));
    assert_int_equal(kf_st_registry_version(s), v + 1);
    kf_store_close(s);

    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_registry_version(NULL, &v));
}

static void test_status_names(void **state)
{
    assert_string_equal(kf_device_status_name(KF_DEVICE_ACTIVE), "active");
    assert_string_equal(kf_device_status_name(KF_DEVICE_DISABLED), "disabled");
    assert_string_equal(kf_device_status_name(KF_DEVICE_REVOKED), "revoked");
    assert_int_equal(kf_device_status_parse("disabled"), KF_DEVICE_DISABLED);
    assert_int_equal(kf_device_status_parse("Active"), -1);
    assert_int_equal(kf_device_status_parse(NULL), -1);
    assert_string_equal(kf_cert_status_name(KF_CERT_VALID), "valid");
    assert_string_equal(kf_cert_status_name(KF_CERT_REVOKED), "revoked");
}

/* ---- the hub's persistent sessions ---- */

static enum kf_err hub_state_cb(struct kf_txn *txn, void *arg)
{
    enum kf_err rc;
    (void)arg;
    rc = kf_txn_hub_state_put(txn, "s:svc", 0, 0, (const uint8_t *)"S", 1);
    if (!rc) rc = kf_txn_hub_state_put(txn, "d:a", 1, 7, (const uint8_t *)"m7", 2);
    if (!rc) rc = kf_txn_hub_state_put(txn, "d:a", 0, 0, (const uint8_t *)"A", 1);
    if (!rc) rc = kf_txn_hub_state_put(txn, "d:a", 1, 3, (const uint8_t *)"m3", 2);
    if (!rc) rc = kf_txn_hub_state_put(txn, "d:a", 1, 3, (const uint8_t *)"M3", 2); /* replaced */
    if (!rc) rc = kf_txn_hub_state_put(txn, "d:a", 2, 9, NULL, 0);
    if (!rc) rc = kf_txn_hub_state_put(txn, "s:svc", 1, 1, (const uint8_t *)"x", 1);
    if (!rc) rc = kf_txn_hub_state_delete(txn, "d:a", 1, 7);
    if (!rc) rc = kf_txn_hub_state_delete(txn, "d:a", 1, 8); /* none: fine */
    return rc;
}

static enum kf_err hub_state_drop_cb(struct kf_txn *txn, void *arg)
{
    return kf_txn_hub_state_drop(txn, arg);
}

static enum kf_err hub_state_bad_cb(struct kf_txn *txn, void *arg)
{
    int which = *(int *)arg;
    if (which == 0) return kf_txn_hub_state_put(txn, "", 0, 0, NULL, 0);
    if (which == 1) return kf_txn_hub_state_put(txn, "d:a", 3, 0, NULL, 0);
    return kf_txn_hub_state_put(txn, "d:a", 1, 1, NULL, 5);
}

static enum kf_err hub_state_list_cb(const char *session, int kind, int64_t key, const void *value,
                                     size_t len, void *arg)
{
    struct kf_buf *b = arg;
    kf_buf_appendf(b, "%s/%d/%lld=%.*s;", session, kind, (long long)key, (int)len,
                   (const char *)value);
    return KF_OK;
}

static void list_hub_state(struct kf_store *s, struct kf_buf *b)
{
    struct kf_txn *t = NULL;
    kf_buf_reset(b);
    KF_OK_OR_FAIL(kf_store_read(s, &t));
    KF_OK_OR_FAIL(kf_txn_hub_state_list(t, hub_state_list_cb, b));
    kf_txn_end(t);
}

static void test_hub_state(void **state)
{
    struct kf_store *s = open_new("hubstate");
    struct kf_buf b;
    int which;
    (void)state;
    kf_buf_init(&b, 4096);
    KF_OK_OR_FAIL(kf_store_write(s, hub_state_cb, NULL));
    list_hub_state(s, &b);
    /* ordered by session, kind, key: a session's row before its messages */
    assert_string_equal(kf_buf_str(&b), "d:a/0/0=A;d:a/1/3=M3;d:a/2/9=;s:svc/0/0=S;s:svc/1/1=x;");
    KF_OK_OR_FAIL(kf_store_write(s, hub_state_drop_cb, "d:a"));
    list_hub_state(s, &b);
    assert_string_equal(kf_buf_str(&b), "s:svc/0/0=S;s:svc/1/1=x;");
    for (which = 0; which < 3; which++)
        KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, hub_state_bad_cb, &which));
    list_hub_state(s, &b);
    assert_string_equal(kf_buf_str(&b), "s:svc/0/0=S;s:svc/1/1=x;");
    kf_buf_free(&b);
    kf_store_close(s);
}

/* ---- the commit hint ---- */

static size_t hint_value(void *arg)
{
    return *(size_t *)arg;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* With more writers on their way than are queued, the committer waits for them: one commit. */
static void test_commit_hint_gathers(void **state)
{
    struct kf_store *s = open_new("hint");
    struct tally *t = tally_new();
    struct kf_store_stats before, after;
    struct areq r[4];
    size_t writers = 4;
    char name[16];

    kf_store_commit_hint(s, hint_value, &writers, 2000000); /* capped at 100 ms */
    kf_store_stats(s, &before);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "gather-%d", i);
        areq_init(&r[i], t, i, name, NULL, NULL);
        KF_OK_OR_FAIL(kf_store_submit(s, &r[i].req));
        usleep(10000); /* they arrive apart, as devices do */
    }
    tally_wait(t, 4);
    kf_store_stats(s, &after);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].rc, KF_OK);
    assert_int_equal(after.writes - before.writes, 4);
    assert_int_equal(after.commits - before.commits, 1);
    kf_store_close(s);
    tally_free(t);
}

/* A lone writer (the hint says nobody else is coming) never waits for company. */
static void test_commit_hint_lone_writer(void **state)
{
    struct kf_store *s = open_new("hint-lone");
    struct kf_hub_rec h = kf_st_hub("lone");
    size_t writers = 1;
    double t0;

    kf_store_commit_hint(s, hint_value, &writers, 100000);
    t0 = mono_s();
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h));
    assert_true(mono_s() - t0 < 0.08);
    /* And with company promised that never comes, the wait ends at the delay. */
    writers = 10;
    h = kf_st_hub("waits");
    t0 = mono_s();
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_hub_insert_cb, &h));
    assert_true(mono_s() - t0 >= 0.09);
    assert_true(mono_s() - t0 < 1.0);
    kf_store_close(s);
}

/*
 * Lazy requests (nobody waits for them) arriving apart share one commit, even with the hint
 * saying nobody else is coming; an eager request ends their wait at once, and all go together.
 */
static void test_lazy_requests_share_a_commit(void **state)
{
    struct kf_store *s = open_new("lazy");
    struct tally *t = tally_new();
    struct kf_store_stats before, after;
    struct areq r[5];
    size_t writers = 0;
    char name[16];
    double t0;

    kf_store_commit_hint(s, hint_value, &writers, 100000);
    kf_store_stats(s, &before);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "lazy-%d", i);
        areq_init(&r[i], t, i, name, NULL, NULL);
        r[i].req.lazy = 1;
        KF_OK_OR_FAIL(kf_store_submit(s, &r[i].req));
        usleep(10000);
    }
    /* 40 ms on, none has been committed: they wait for company, up to 100 ms. */
    kf_store_stats(s, &after);
    assert_int_equal(after.commits - before.commits, 0);
    areq_init(&r[4], t, 4, "eager", NULL, NULL);
    t0 = mono_s();
    KF_OK_OR_FAIL(kf_store_submit(s, &r[4].req));
    tally_wait(t, 5);
    assert_true(mono_s() - t0 < 0.05);
    kf_store_stats(s, &after);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].rc, KF_OK);
    assert_int_equal(after.writes - before.writes, 5);
    assert_int_equal(after.commits - before.commits, 1);
    /* Alone, a lazy request is committed by the end of the delay. */
    areq_init(&r[0], t, 5, "lazy-alone", NULL, NULL);
    r[0].req.lazy = 1;
    t0 = mono_s();
    KF_OK_OR_FAIL(kf_store_submit(s, &r[0].req));
    tally_wait(t, 6);
    assert_true(mono_s() - t0 >= 0.09);
    assert_true(mono_s() - t0 < 1.0);
    /* And closing the store does not wait for the delay. */
    areq_init(&r[1], t, 6, "lazy-closing", NULL, NULL);
    r[1].req.lazy = 1;
    KF_OK_OR_FAIL(kf_store_submit(s, &r[1].req));
    t0 = mono_s();
    kf_store_close(s);
    assert_true(mono_s() - t0 < 0.09);
    assert_int_equal(r[1].rc, KF_OK);
    tally_free(t);
}

/* ---- service identities ---- */

static struct kf_service_rec service(const char *name, const char *role)
{
    struct kf_service_rec r;
    memset(&r, 0, sizeof(r));
    snprintf(r.name, sizeof(r.name), "%s", name);
    snprintf(r.role, sizeof(r.role), "%s", role);
    r.status = KF_SERVICE_ACTIVE;
    r.created = r.updated = 1700000000;
    return r;
}

static enum kf_err service_insert_cb(struct kf_txn *t, void *a)
{
    return kf_txn_service_insert(t, a);
}

static enum kf_err service_update_cb(struct kf_txn *t, void *a)
{
    return kf_txn_service_update(t, a);
}

static enum kf_err collect_service_cb(const struct kf_service_rec *r, void *a)
{
    struct collect *c = a;
    char line[200];
    snprintf(line, sizeof(line), "%s:%s:%s", r->name, r->role, kf_service_status_name(r->status));
    collect_add(c, line);
    return KF_OK;
}

static enum kf_err collect_cert_serial_cb(const struct kf_cert_rec *r, void *a)
{
    collect_add(a, r->serial);
    return KF_OK;
}

static void test_services(void **state)
{
    struct kf_store *s = open_new("services");
    struct kf_service_rec dash = service("dashboard", "reader"), ops = service("ops", "commander");
    struct kf_service_rec bad = service("Bad Name", "reader"), got;
    struct kf_cert_rec c1 = cert("1a", "", 1000), c2 = cert("1b", "", 2000),
                       c3 = cert("1c", "", 3000);
    struct collect c;
    struct kf_txn *t;

    KF_OK_OR_FAIL(kf_store_write(s, service_insert_cb, &ops));
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, service_insert_cb, &dash));
    KF_EXPECT_ERR(KF_E_EXISTS, kf_store_write(s, service_insert_cb, &dash));
    KF_EXPECT_MSG("service dashboard already exists");
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, service_insert_cb, &bad));
    bad = service("x", "admin");
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, service_insert_cb, &bad));
    KF_EXPECT_MSG("service role");

    /* Certificates of a service; none may belong to a device as well, nor to a stranger. */
    snprintf(c1.service, sizeof(c1.service), "dashboard");
    snprintf(c1.profile, sizeof(c1.profile), "service");
    snprintf(c2.service, sizeof(c2.service), "dashboard");
    snprintf(c2.profile, sizeof(c2.profile), "service");
    snprintf(c3.service, sizeof(c3.service), "nobody");
    KF_OK_OR_FAIL(kf_store_write(s, cert_insert_cb, &c1));
    KF_OK_OR_FAIL(kf_store_write(s, cert_insert_cb, &c2));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, cert_insert_cb, &c3));
    KF_EXPECT_MSG("service nobody not found");

    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_service_get(t, "dashboard", &got));
    assert_string_equal(got.role, "reader");
    assert_int_equal(got.status, KF_SERVICE_ACTIVE);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_txn_service_get(t, "nobody", &got));
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_service_list(t, collect_service_cb, &c));
    assert_string_equal(c.text, "dashboard:reader:active,ops:commander:active");
    memset(&c, 0, sizeof(c));
    KF_OK_OR_FAIL(kf_txn_cert_list_service(t, "dashboard", collect_cert_serial_cb, &c));
    assert_string_equal(c.text, "1b,1a");
    KF_OK_OR_FAIL(kf_txn_cert_get(t, "1a", &c1));
    assert_string_equal(c1.service, "dashboard");
    assert_string_equal(c1.device_id, "");
    kf_cert_rec_clear(&c1);
    kf_txn_end(t);

    /* Revoking a service changes what the hub caches: the version moves. */
    dash.status = KF_SERVICE_REVOKED;
    dash.updated = 1700000100;
    KF_ST_EXPECT_BUMP(s, 1, kf_store_write(s, service_update_cb, &dash));
    got = service("ghost", "reader");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_store_write(s, service_update_cb, &got));
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_service_get(t, "dashboard", &got));
    assert_int_equal(got.status, KF_SERVICE_REVOKED);
    assert_int_equal(got.updated, 1700000100);
    kf_txn_end(t);
    kf_store_close(s);
}

/* Device ids and service names never meet: each insert refuses a name the other holds. */
static void test_one_name_one_namespace(void **state)
{
    struct kf_store *s = open_new("names");
    struct kf_service_rec dash = service("dash", "reader"), dev = service("dev-1", "reader"),
                          ind = service("ind-1", "reader"), grp = service("grp-1", "reader");
    struct kf_device_rec d1 = kf_st_device("dev-1", "", KF_DEVICE_ACTIVE),
                         d2 = kf_st_device("dash", "", KF_DEVICE_ACTIVE);
    struct kf_enrollment_rec e1 = enrollment("ind-1", KF_ENROLL_INDIVIDUAL),
                             e2 = enrollment("dash", KF_ENROLL_INDIVIDUAL),
                             g1 = enrollment("grp-1", KF_ENROLL_GROUP);
    struct kf_txn *t;

    KF_OK_OR_FAIL(kf_store_write(s, service_insert_cb, &dash));
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_device_insert_cb, &d1));
    KF_OK_OR_FAIL(kf_store_write(s, enroll_insert_cb, &e1));
    KF_OK_OR_FAIL(kf_store_write(s, enroll_insert_cb, &g1));
    KF_EXPECT_ERR(KF_E_CONFLICT, kf_store_write(s, kf_st_device_insert_cb, &d2));
    KF_EXPECT_MSG("dash is the name of a service");
    KF_EXPECT_ERR(KF_E_CONFLICT, kf_store_write(s, enroll_insert_cb, &e2));
    KF_EXPECT_MSG("never the same");
    KF_EXPECT_ERR(KF_E_CONFLICT, kf_store_write(s, service_insert_cb, &dev));
    KF_EXPECT_MSG("dev-1 is the id of a device");
    KF_EXPECT_ERR(KF_E_CONFLICT, kf_store_write(s, service_insert_cb, &ind));
    KF_EXPECT_MSG("registration id of an individual enrollment");
    /* a group's name is no device id: a service may share it */
    KF_OK_OR_FAIL(kf_store_write(s, service_insert_cb, &grp));
    t = kf_st_read(s);
    KF_OK_OR_FAIL(kf_txn_name_free(t, KF_NS_DEVICE, "dev-2"));
    KF_EXPECT_ERR(KF_E_CONFLICT, kf_txn_name_free(t, KF_NS_DEVICE, "dash"));
    KF_EXPECT_ERR(KF_E_CONFLICT, kf_txn_name_free(t, KF_NS_SERVICE, "dev-1"));
    KF_OK_OR_FAIL(kf_txn_name_free(t, KF_NS_SERVICE, "ops"));
    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_name_free(t, KF_NS_SERVICE, "Not An Id"));
    kf_txn_end(t);
    kf_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_create_reopen),
        cmocka_unit_test(test_open_urls),
        cmocka_unit_test(test_ca),
        cmocka_unit_test(test_enrollments),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_enrollment_delete_keeps_devices),
        cmocka_unit_test(test_certificates),
        cmocka_unit_test(test_registrations),
        cmocka_unit_test(test_hubs),
        cmocka_unit_test(test_services),
        cmocka_unit_test(test_one_name_one_namespace),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_write_on_read_refused),
        cmocka_unit_test(test_callback_error_rolls_back),
        cmocka_unit_test(test_batch_isolates_callback_errors),
        cmocka_unit_test(test_locked_by_another_process),
        cmocka_unit_test(test_group_commit_threads),
        cmocka_unit_test(test_commit_hint_gathers),
        cmocka_unit_test(test_commit_hint_lone_writer),
        cmocka_unit_test(test_lazy_requests_share_a_commit),
        cmocka_unit_test(test_snapshot_isolation),
        cmocka_unit_test(test_many_readers),
        cmocka_unit_test(test_submit_many_threads),
        cmocka_unit_test(test_submit_batch_isolates_errors),
        cmocka_unit_test(test_submit_mixed_with_write),
        cmocka_unit_test(test_submit_queue_full),
        cmocka_unit_test(test_close_drains),
        cmocka_unit_test(test_submit_locked_by_another_process),
        cmocka_unit_test(test_registry_version),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_hub_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
