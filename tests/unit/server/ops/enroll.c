/*
 * enroll: individual enrollments by certificate and by public key, group enrollments with proof
 * of possession made by openssl the way an operator makes it, and every refusal leaving the store
 * as it was.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/timefmt.h"
#include "server/ca/ca.h"
#include "server/ops/enroll.h"
#include "server/ops/hubs.h"

#define DAY 86400L

struct fixture {
    struct kf_deploy *d;
    struct kf_test_pki a, b; /* two manufacturers */
    char a_root[1024], a_key[1024], b_root[1024], b_key[1024];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->d = kf_test_deploy_make("enroll");
    kf_test_pki_make(&f->a, KF_KEY_EC_P256);
    kf_test_pki_make(&f->b, KF_KEY_EC_P256);
    snprintf(f->a_root, sizeof(f->a_root), "%s", kf_test_path("a-root.pem"));
    snprintf(f->a_key, sizeof(f->a_key), "%s", kf_test_path("a-root.key"));
    snprintf(f->b_root, sizeof(f->b_root), "%s", kf_test_path("b-root.pem"));
    snprintf(f->b_key, sizeof(f->b_key), "%s", kf_test_path("b-root.key"));
    kf_test_save_cert(f->a.root, f->a_root);
    kf_test_save_cert(f->b.root, f->b_root);
    KF_OK_OR_FAIL(kf_key_save(f->a.root_key, f->a_key, NULL));
    KF_OK_OR_FAIL(kf_key_save(f->b.root_key, f->b_key, NULL));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_deploy_close(f->d);
    kf_test_pki_free(&f->a);
    kf_test_pki_free(&f->b);
    free(f);
    return 0;
}

/* ---- helpers ---- */

/* A factory certificate for `id` from manufacturer `p`, written to `name`; its key to `*key`. */
static const char *factory_cert(struct kf_test_pki *p, const char *id, const char *name,
                                struct kf_key **key)
{
    const char *path = kf_test_path(name);
    struct kf_cert *c = kf_test_issue(p, KF_PROFILE_DEVICE, id, 0, 0, key);
    kf_test_save_cert(c, path);
    kf_cert_free(c);
    return path;
}

/* A public key PEM file for a fresh P-256 key; its fingerprint into `fp`. */
static const char *pubkey_file(const char *name, char *fp)
{
    const char *path = kf_test_path(name);
    struct kf_key *k = NULL;
    struct kf_buf pem;
    kf_buf_init(&pem, 1 << 16);
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    KF_OK_OR_FAIL(kf_key_public_pem(k, &pem));
    KF_OK_OR_FAIL(kf_key_fingerprint(k, fp));
    kf_test_write(path, kf_buf_str(&pem));
    kf_buf_free(&pem);
    kf_key_free(k);
    return path;
}

/* The proof of possession an operator makes: a certificate with subject `subj`, signed by CA. */
static const char *openssl_proof(const char *name, const char *subj, const char *ca,
                                 const char *ca_key)
{
    const char *path = kf_test_path(name);
    if (kf_test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                   "'%s.key' -subj '%s' -out '%s.csr' 2>/dev/null && openssl x509 -req -in "
                   "'%s.csr' -CA '%s' -CAkey '%s' -days 1 -out '%s' 2>/dev/null",
                   path, subj, path, path, ca, ca_key, path) != 0)
        fail_msg("openssl could not make the proof %s", name);
    return path;
}

static const char *proof_for(const char *name, const char *code, const char *ca, const char *ca_key)
{
    char subj[128];
    snprintf(subj, sizeof(subj), "/CN=%s", code);
    return openssl_proof(name, subj, ca, ca_key);
}

static int is_code(const char *code)
{
    if (strlen(code) != 32) return 0;
    for (const char *p = code; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F'))) return 0;
    return 1;
}

static void get(struct fixture *f, const char *id, struct kf_enrollment_rec *e)
{
    KF_OK_OR_FAIL(kf_test_enrollment_get(f->d->store, id, e));
}

/* Runs `call` (an expression), which must fail with `want` and `needle` and change nothing. */
#define EXPECT_REFUSED(f, want, needle, call)                  \
    do {                                                       \
        struct kf_test_state before_;                          \
        kf_test_state_take((f)->d->store, &before_);           \
        KF_EXPECT_ERR(want, call);                             \
        KF_EXPECT_MSG(needle);                                 \
        kf_test_state_expect((f)->d->store, &before_, needle); \
        kf_test_state_free(&before_);                          \
    } while (0)

struct expires_arg {
    const char *id;
    int64_t when;
};

static enum kf_err set_expires_cb(struct kf_txn *t, void *arg)
{
    struct expires_arg *a = arg;
    struct kf_enrollment_rec e;
    enum kf_err rc = kf_txn_enrollment_get(t, a->id, &e);
    if (rc) return rc;
    e.code_expires = a->when;
    rc = kf_txn_enrollment_update(t, &e);
    kf_enrollment_clear(&e);
    return rc;
}

/* ---- individual ---- */

static void test_add_by_cert(void **state)
{
    struct fixture *f = *state;
    struct kf_key *k = NULL;
    const char *cert = factory_cert(&f->a, "dev-1", "dev-1.pem", &k);
    struct kf_enroll_opts o = {"10.0.0.0/8, 192.168.1.0/24", 0, NULL, NULL, NULL, 0};
    struct kf_enrollment_rec e;
    struct kf_test_audit a;
    int64_t audit0 = kf_test_audit_count(f->d->store);
    time_t t0 = time(NULL);
    char fp[KF_FINGERPRINT_HEX], detail[512], *pem = kf_test_read(cert);

    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-1", cert, NULL, &o));
    KF_OK_OR_FAIL(kf_key_fingerprint(k, fp));
    get(f, "dev-1", &e);
    assert_int_equal(e.kind, KF_ENROLL_INDIVIDUAL);
    assert_int_equal(e.enabled, 1);
    assert_int_equal(e.verified, 1);
    assert_string_equal(e.cert_pem, pem);
    assert_null(e.pubkey_pem);
    assert_string_equal(e.key_fingerprint, fp);
    assert_string_equal(e.subject, "CN=dev-1");
    assert_string_equal(e.verification_code, "");
    assert_int_equal(e.code_expires, 0);
    assert_string_equal(e.allocation, "hashed");
    assert_string_equal(e.hub, "");
    assert_string_equal(e.networks, "10.0.0.0/8,192.168.1.0/24");
    assert_true(e.created >= t0 && e.created <= time(NULL));
    kf_enrollment_clear(&e);
    /* The fingerprint is the SPKI's SHA-256, as openssl computes it. */
    assert_int_equal(kf_test_sh("test \"$(openssl x509 -in '%s' -noout -pubkey | openssl pkey "
                                "-pubin -outform DER | sha256sum | cut -d' ' -f1)\" = '%s'",
                                cert, fp),
                     0);

    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    snprintf(detail, sizeof(detail),
             "{\"allocation\":\"hashed\",\"enabled\":true,\"hub\":null,\"key_fingerprint\":"
             "\"%s\",\"kind\":\"individual\",\"networks\":\"10.0.0.0/8,192.168.1.0/24\","
             "\"subject\":\"CN=dev-1\"}",
             fp);
    kf_test_audit_expect(&a.r[0], "enrollment.add", "enrollment:dev-1", detail);
    kf_test_audit_free(&a);
    free(pem);
    kf_key_free(k);
}

static void test_add_by_pubkey(void **state)
{
    struct fixture *f = *state;
    char fp[KF_FINGERPRINT_HEX], detail[512];
    const char *pub = pubkey_file("dev-2.pub", fp);
    struct kf_enroll_opts o = {NULL, 1, NULL, NULL, NULL, 0};
    struct kf_enrollment_rec e;
    struct kf_test_audit a;
    int64_t audit0 = kf_test_audit_count(f->d->store);
    char *pem = kf_test_read(pub);

    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-2", NULL, pub, &o));
    get(f, "dev-2", &e);
    assert_int_equal(e.kind, KF_ENROLL_INDIVIDUAL);
    assert_int_equal(e.enabled, 0);
    assert_int_equal(e.verified, 1);
    assert_null(e.cert_pem);
    assert_string_equal(e.pubkey_pem, pem);
    assert_string_equal(e.key_fingerprint, fp);
    assert_null(e.networks);
    kf_enrollment_clear(&e);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    snprintf(detail, sizeof(detail),
             "{\"allocation\":\"hashed\",\"enabled\":false,\"hub\":null,\"key_fingerprint\":"
             "\"%s\",\"kind\":\"individual\",\"networks\":null,\"subject\":\"\"}",
             fp);
    kf_test_audit_expect(&a.r[0], "enrollment.add", "enrollment:dev-2", detail);
    kf_test_audit_free(&a);
    free(pem);
}

static void test_add_refusals(void **state)
{
    struct fixture *f = *state;
    time_t now = time(NULL);
    const char *dup = factory_cert(&f->a, "dup-1", "dup-1.pem", NULL);
    const char *ca = kf_test_path("factory-ca.pem"), *weak = kf_test_path("weak.pem");
    const char *old = kf_test_path("old-1.pem"), *early = kf_test_path("early-1.pem");
    struct kf_cert_template t;
    struct kf_cert *c;
    struct kf_key *k = NULL;
    struct kf_enroll_opts bad_net = {"10.0.0.1/8", 0, NULL, NULL, NULL, 0};
    struct kf_enroll_opts bad_prefix = {"10.0.0.0/33", 0, NULL, NULL, NULL, 0};
    struct kf_enroll_opts trailing = {"10.0.0.0/8,", 0, NULL, NULL, NULL, 0};
    char fp[KF_FINGERPRINT_HEX], when[KF_TIME_TEXT_MAX], msg[256];
    const char *pub = pubkey_file("dup-1.pub", fp);

    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "dup-1", dup, NULL, NULL));

    /* A CA certificate whose CN is a fine id. */
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_ISSUING_CA;
    t.cn = "factory-ca";
    t.key = k;
    t.not_before = now - 3600;
    t.not_after = now + 365 * DAY;
    KF_OK_OR_FAIL(kf_cert_build(&t, f->a.root, f->a.root_key, &c));
    kf_test_save_cert(c, ca);
    kf_cert_free(c);
    kf_key_free(k);
    /* Expired, and not yet valid. */
    c = kf_test_issue(&f->a, KF_PROFILE_DEVICE, "old-1", now - 10 * DAY, now - DAY, NULL);
    kf_test_save_cert(c, old);
    kf_cert_free(c);
    c = kf_test_issue(&f->a, KF_PROFILE_DEVICE, "early-1", now + DAY, now + 10 * DAY, NULL);
    kf_test_save_cert(c, early);
    kf_cert_free(c);
    assert_int_equal(kf_test_sh("openssl req -x509 -newkey rsa:1024 -nodes -keyout '%s.key' -out "
                                "'%s' -subj /CN=weak -days 30 -addext "
                                "'basicConstraints=critical,CA:FALSE' 2>/dev/null",
                                weak, weak),
                     0);

    snprintf(msg, sizeof(msg),
             "certificate %s has CN \"dup-1\", but the registration id is "
             "\"dev-9\"",
             dup);
    EXPECT_REFUSED(f, KF_E_POLICY, msg,
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-9", dup, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_POLICY, "is a CA certificate; an individual enrollment takes",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "factory-ca", ca, NULL, NULL));
    kf_time_rfc3339(now - DAY, when, sizeof(when));
    snprintf(msg, sizeof(msg), "certificate %s expired on %s", old, when);
    EXPECT_REFUSED(f, KF_E_EXPIRED, msg,
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "old-1", old, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_NOT_YET_VALID, "is not valid before",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "early-1", early, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_POLICY,
                   "the certificate's key is RSA 1024: RSA keys must have at least 2048 bits",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "weak", weak, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_EXISTS, "an enrollment named dup-1 already exists",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "dup-1", dup, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_EXISTS, "an enrollment named dup-1 already exists",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "dup-1", NULL, pub, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "registration id \"Dup-1\"",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "Dup-1", dup, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "registration id is empty",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "", dup, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "--networks: \"10.0.0.1/8\" has host bits set",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "net-1", dup, NULL, &bad_net));
    EXPECT_REFUSED(f, KF_E_INVALID, "--networks: \"10.0.0.0/33\": the prefix length must be 0 to",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "net-1", dup, NULL, &bad_prefix));
    EXPECT_REFUSED(f, KF_E_INVALID, "--networks: the network list ends with a comma",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "net-1", dup, NULL, &trailing));
    EXPECT_REFUSED(f, KF_E_USAGE, "give either a factory certificate or a public key",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-9", dup, pub, NULL));
    EXPECT_REFUSED(f, KF_E_USAGE, "give either a factory certificate or a public key",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-9", NULL, NULL, NULL));
    EXPECT_REFUSED(f, KF_E_WRONG_TYPE, "holds a CERTIFICATE, not a PUBLIC KEY",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-9", NULL, dup, NULL));
    EXPECT_REFUSED(
        f, KF_E_IO, "missing.pem",
        kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-9", kf_test_path("missing.pem"), NULL, NULL));
}

/* ---- group ---- */

static void test_group_create(void **state)
{
    struct fixture *f = *state;
    char code[KF_CODE_MAX], fp[KF_FINGERPRINT_HEX], detail[512], *pem = kf_test_read(f->a_root);
    struct kf_key *k = NULL;
    struct kf_enrollment_rec e;
    struct kf_test_audit a;
    struct kf_enroll_opts o = {"2001:db8::/32", 0, NULL, NULL, NULL, 0};
    int64_t audit0 = kf_test_audit_count(f->d->store);
    time_t t0 = time(NULL);

    KF_OK_OR_FAIL(kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-a", f->a_root, &o, code));
    assert_true(is_code(code));
    KF_OK_OR_FAIL(kf_cert_public_key(f->a.root, &k));
    KF_OK_OR_FAIL(kf_key_fingerprint(k, fp));
    get(f, "vendor-a", &e);
    assert_int_equal(e.kind, KF_ENROLL_GROUP);
    assert_int_equal(e.enabled, 1);
    assert_int_equal(e.verified, 0);
    assert_string_equal(e.verification_code, code);
    assert_true(e.code_expires >= t0 + KF_CODE_TTL && e.code_expires <= time(NULL) + KF_CODE_TTL);
    assert_string_equal(e.cert_pem, pem);
    assert_string_equal(e.key_fingerprint, fp);
    assert_string_equal(e.subject, "CN=Test Root CA,O=keyfleet tests");
    assert_string_equal(e.networks, "2001:db8::/32");
    kf_enrollment_clear(&e);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    snprintf(detail, sizeof(detail),
             "{\"allocation\":\"hashed\",\"enabled\":true,\"hub\":null,\"key_fingerprint\":"
             "\"%s\",\"kind\":\"group\",\"networks\":\"2001:db8::/32\",\"subject\":\"CN=Test "
             "Root CA,O=keyfleet tests\"}",
             fp);
    kf_test_audit_expect(&a.r[0], "enrollment.group.create", "enrollment:vendor-a", detail);
    kf_test_audit_free(&a);
    kf_key_free(k);
    free(pem);
}

static void test_group_create_refusals(void **state)
{
    struct fixture *f = *state;
    struct kf_test_pki d;
    char code[KF_CODE_MAX];
    const char *ca = kf_test_path("d-root.pem");
    const char *dev = factory_cert(&f->b, "dev-b", "dev-b.pem", NULL);
    struct kf_enroll_opts bad_net = {"10.0.0.1/8", 0, NULL, NULL, NULL, 0};

    kf_test_pki_make(&d, KF_KEY_EC_P256);
    kf_test_save_cert(d.root, ca);
    KF_OK_OR_FAIL(kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-d", ca, NULL, code));
    EXPECT_REFUSED(f, KF_E_EXISTS, "group vendor-d already uses this CA (same key)",
                   kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-z", ca, NULL, code));
    assert_string_equal(code, "");
    /* The same key under another certificate is the same CA. */
    {
        struct kf_cert_template t;
        struct kf_cert *again = NULL;
        const char *path = kf_test_path("d-root-again.pem");
        time_t now = time(NULL);
        memset(&t, 0, sizeof(t));
        t.profile = KF_PROFILE_ROOT_CA;
        t.cn = "Vendor D Root CA, reissued";
        t.key = d.root_key;
        t.not_before = now - 60;
        t.not_after = now + 365 * DAY;
        KF_OK_OR_FAIL(kf_cert_build(&t, NULL, d.root_key, &again));
        kf_test_save_cert(again, path);
        kf_cert_free(again);
        EXPECT_REFUSED(f, KF_E_EXISTS, "group vendor-d already uses this CA (same key)",
                       kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-z", path, NULL, code));
    }
    EXPECT_REFUSED(f, KF_E_EXISTS, "an enrollment named vendor-d already exists",
                   kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-d", f->b_root, NULL, code));
    EXPECT_REFUSED(f, KF_E_POLICY, "is not a CA: basicConstraints CA:FALSE",
                   kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-z", dev, NULL, code));
    EXPECT_REFUSED(f, KF_E_INVALID, "group name \"Vendor Z\"",
                   kf_enroll_group_create(f->d, KF_TEST_ACTOR, "Vendor Z", f->b_root, NULL, code));
    EXPECT_REFUSED(
        f, KF_E_INVALID, "has host bits set",
        kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-z", f->b_root, &bad_net, code));
    EXPECT_REFUSED(f, KF_E_WRONG_TYPE, "holds a PRIVATE KEY, not a certificate",
                   kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-z", f->b_key, NULL, code));
    assert_string_equal(code, "");
    kf_test_pki_free(&d);
}

static void test_group_verify(void **state)
{
    struct fixture *f = *state;
    struct kf_test_pki c;
    char code[KF_CODE_MAX], other[KF_CODE_MAX], bad[KF_CODE_MAX + 8], msg[512];
    const char *ca = kf_test_path("c-root.pem"), *key = kf_test_path("c-root.key");
    const char *good, *wrong_key, *wrong_cn, *no_cn;
    struct kf_enrollment_rec e;
    struct kf_test_audit a;
    int64_t audit0;
    char dev_msg[64];

    kf_test_pki_make(&c, KF_KEY_EC_P256);
    kf_test_save_cert(c.root, ca);
    KF_OK_OR_FAIL(kf_key_save(c.root_key, key, NULL));
    KF_OK_OR_FAIL(kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-c", ca, NULL, code));
    good = proof_for("c-good.pem", code, ca, key);
    wrong_key = proof_for("c-wrong-key.pem", code, f->b_root, f->b_key);
    snprintf(bad, sizeof(bad), "0000%s", code);
    wrong_cn = proof_for("c-wrong-cn.pem", bad, ca, key);
    no_cn = openssl_proof("c-no-cn.pem", "/O=vendor c", ca, key);

    EXPECT_REFUSED(f, KF_E_DENIED, "is not signed by the key of group vendor-c's CA",
                   kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-c", wrong_key));
    snprintf(msg, sizeof(msg),
             "certificate %s has CN \"%s\", which is not the verification code of group "
             "vendor-c",
             wrong_cn, bad);
    EXPECT_REFUSED(f, KF_E_DENIED, msg,
                   kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-c", wrong_cn));
    EXPECT_REFUSED(f, KF_E_DENIED, "has no CN; its CN must be the verification code of group",
                   kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-c", no_cn));
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "enrollment vendor-q not found",
                   kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-q", good));
    EXPECT_REFUSED(
        f, KF_E_IO, "missing.pem",
        kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-c", kf_test_path("missing.pem")));
    /* An individual enrollment has no code to prove. */
    {
        const char *dc = factory_cert(&f->a, "dev-c", "dev-c.pem", NULL);
        KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "dev-c", dc, NULL, NULL));
        snprintf(dev_msg, sizeof(dev_msg), "enrollment dev-c is individual, not a group");
        EXPECT_REFUSED(f, KF_E_WRONG_TYPE, dev_msg,
                       kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "dev-c", good));
        EXPECT_REFUSED(f, KF_E_WRONG_TYPE, dev_msg,
                       kf_enroll_group_code(f->d, KF_TEST_ACTOR, "dev-c", other));
    }

    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-c", good));
    get(f, "vendor-c", &e);
    assert_int_equal(e.verified, 1);
    assert_string_equal(e.verification_code, "");
    assert_int_equal(e.code_expires, 0);
    kf_enrollment_clear(&e);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], "enrollment.group.verify", "enrollment:vendor-c", "{}");
    kf_test_audit_free(&a);

    EXPECT_REFUSED(f, KF_E_CONFLICT, "group vendor-c is already verified",
                   kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-c", good));
    EXPECT_REFUSED(f, KF_E_CONFLICT, "group vendor-c is already verified",
                   kf_enroll_group_code(f->d, KF_TEST_ACTOR, "vendor-c", code));
    assert_string_equal(code, "");
    kf_test_pki_free(&c);
}

static void test_group_code_and_expiry(void **state)
{
    struct fixture *f = *state;
    char old[KF_CODE_MAX], code[KF_CODE_MAX], when[KF_TIME_TEXT_MAX], msg[256];
    const char *old_proof, *proof;
    struct kf_enrollment_rec e;
    struct kf_test_audit a;
    struct kf_cert_template t;
    struct kf_cert *stale;
    struct kf_key *k = NULL;
    int64_t audit0;
    time_t now = time(NULL);
    struct expires_arg ex = {"vendor-b", now - 10};
    static const char *const dns[] = {"proof.example"};

    KF_OK_OR_FAIL(kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-b", f->b_root, NULL, old));
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_enroll_group_code(f->d, KF_TEST_ACTOR, "vendor-b", code));
    assert_true(is_code(code));
    assert_string_not_equal(code, old);
    get(f, "vendor-b", &e);
    assert_string_equal(e.verification_code, code);
    assert_int_equal(e.verified, 0);
    assert_true(e.code_expires >= now + KF_CODE_TTL);
    kf_enrollment_clear(&e);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], "enrollment.group.code", "enrollment:vendor-b", "{}");
    kf_test_audit_free(&a);

    /* The old code stopped working. */
    old_proof = proof_for("b-old.pem", old, f->b_root, f->b_key);
    EXPECT_REFUSED(f, KF_E_DENIED, "which is not the verification code of group vendor-b",
                   kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-b", old_proof));

    /* A proof outside its own validity. */
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_SERVER;
    t.cn = code;
    t.key = k;
    t.dns_names = dns;
    t.n_dns = 1;
    t.not_before = now - 10 * DAY;
    t.not_after = now - DAY;
    KF_OK_OR_FAIL(kf_cert_build(&t, f->b.root, f->b.root_key, &stale));
    kf_test_save_cert(stale, kf_test_path("b-stale.pem"));
    kf_cert_free(stale);
    kf_key_free(k);
    EXPECT_REFUSED(
        f, KF_E_EXPIRED, "is outside its validity period",
        kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-b", kf_test_path("b-stale.pem")));

    /* The code itself expired: refused with what to do. */
    proof = proof_for("b-new.pem", code, f->b_root, f->b_key);
    KF_OK_OR_FAIL(kf_store_write(f->d->store, set_expires_cb, &ex));
    kf_time_rfc3339(now - 10, when, sizeof(when));
    snprintf(msg, sizeof(msg),
             "the verification code of group vendor-b expired on %s; get a new one with: "
             "keyfleet enrollment group code --name vendor-b",
             when);
    EXPECT_REFUSED(f, KF_E_EXPIRED, msg,
                   kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-b", proof));

    /* A new code, and a proof of it, and the group is verified. */
    KF_OK_OR_FAIL(kf_enroll_group_code(f->d, KF_TEST_ACTOR, "vendor-b", code));
    proof = proof_for("b-newer.pem", code, f->b_root, f->b_key);
    KF_OK_OR_FAIL(kf_enroll_group_verify(f->d, KF_TEST_ACTOR, "vendor-b", proof));
    get(f, "vendor-b", &e);
    assert_int_equal(e.verified, 1);
    kf_enrollment_clear(&e);
}

/* ---- enable, disable, remove ---- */

static void test_enable_disable(void **state)
{
    struct fixture *f = *state;
    const char *cert = factory_cert(&f->a, "tog-1", "tog-1.pem", NULL);
    struct kf_enrollment_rec e;
    struct kf_test_audit a;
    struct kf_test_state before;
    int64_t audit0;
    int changed = -1;

    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "tog-1", cert, NULL, NULL));
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "tog-1", 0, &changed));
    assert_int_equal(changed, 1);
    get(f, "tog-1", &e);
    assert_int_equal(e.enabled, 0);
    kf_enrollment_clear(&e);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], "enrollment.disable", "enrollment:tog-1", "{}");
    kf_test_audit_free(&a);

    /* Already disabled: no change, no audit record. */
    kf_test_state_take(f->d->store, &before);
    changed = -1;
    KF_OK_OR_FAIL(kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "tog-1", 0, &changed));
    assert_int_equal(changed, 0);
    kf_test_state_expect(f->d->store, &before, "disable twice");
    kf_test_state_free(&before);

    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "tog-1", 1, &changed));
    assert_int_equal(changed, 1);
    get(f, "tog-1", &e);
    assert_int_equal(e.enabled, 1);
    kf_enrollment_clear(&e);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], "enrollment.enable", "enrollment:tog-1", "{}");
    kf_test_audit_free(&a);

    kf_test_state_take(f->d->store, &before);
    KF_OK_OR_FAIL(kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "tog-1", 1, NULL));
    kf_test_state_expect(f->d->store, &before, "enable twice");
    kf_test_state_free(&before);

    changed = -1;
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "enrollment tog-9 not found",
                   kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "tog-9", 0, &changed));
    assert_int_equal(changed, 0);
    EXPECT_REFUSED(f, KF_E_INVALID, "enrollment id \"Tog-1\"",
                   kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "Tog-1", 0, &changed));
}

static void test_remove(void **state)
{
    struct fixture *f = *state;
    const char *cert = factory_cert(&f->a, "rm-1", "rm-1.pem", NULL);
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "rm-1");
    struct kf_cert *c = NULL;
    struct kf_device_rec dev;
    struct kf_enrollment_rec e;
    struct kf_test_audit a;
    int64_t audit0;

    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "rm-1", cert, NULL, NULL));
    KF_OK_OR_FAIL(kf_ca_issue_device(f->d, KF_TEST_ACTOR, "rm-1", "rm-1", csr, 0, &c));
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "rm-1", &dev));
    assert_string_equal(dev.enrollment, "rm-1");

    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_enroll_remove(f->d, KF_TEST_ACTOR, "rm-1"));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_enrollment_get(f->d->store, "rm-1", &e));
    /* The device stays, with its certificate, under no enrollment. */
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "rm-1", &dev));
    assert_string_equal(dev.enrollment, "");
    assert_int_equal(dev.status, KF_DEVICE_ACTIVE);
    assert_int_equal(kf_test_cert_count(f->d->store, "rm-1", KF_CERT_VALID), 1);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], "enrollment.remove", "enrollment:rm-1", "{}");
    kf_test_audit_free(&a);

    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "enrollment rm-1 not found",
                   kf_enroll_remove(f->d, KF_TEST_ACTOR, "rm-1"));
    EXPECT_REFUSED(f, KF_E_INVALID, "enrollment id is empty",
                   kf_enroll_remove(f->d, KF_TEST_ACTOR, ""));
    kf_cert_free(c);
    kf_csr_free(csr);
}

/* ---- hub allocation ---- */

/* Adds hub `name` once (the tests share one deployment). */
static void hub(struct fixture *f, const char *name)
{
    char endpoint[KF_ID_MAX + 16];
    struct kf_txn *t = NULL;
    struct kf_hub_rec h;
    enum kf_err rc;
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    rc = kf_txn_hub_get(t, name, &h);
    kf_txn_end(t);
    if (rc == KF_OK) return;
    snprintf(endpoint, sizeof(endpoint), "%s.example:8883", name);
    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, name, endpoint, 1));
}

static void expect_allocation(struct fixture *f, const char *id, const char *allocation,
                              const char *hub_name)
{
    struct kf_enrollment_rec e;
    get(f, id, &e);
    assert_string_equal(e.allocation, allocation);
    assert_string_equal(e.hub, hub_name);
    kf_enrollment_clear(&e);
}

static void test_allocation_on_add(void **state)
{
    struct fixture *f = *state;
    char fp[KF_FINGERPRINT_HEX], detail[512];
    struct kf_enroll_opts by_hub = {NULL, 0, NULL, "alloc-a", NULL, 0};
    struct kf_enroll_opts both = {NULL, 0, "static", "alloc-a", NULL, 0};
    struct kf_enroll_opts hashed = {NULL, 0, "hashed", NULL, NULL, 0};
    struct kf_enroll_opts static_no_hub = {NULL, 0, "static", NULL, NULL, 0};
    struct kf_enroll_opts hashed_hub = {NULL, 0, "hashed", "alloc-a", NULL, 0};
    struct kf_enroll_opts unknown = {NULL, 0, "round-robin", NULL, NULL, 0};
    struct kf_enroll_opts no_such_hub = {NULL, 0, NULL, "alloc-z", NULL, 0};
    struct kf_enroll_opts bad_hub = {NULL, 0, NULL, "Alloc-A", NULL, 0};
    struct kf_test_audit a;
    const char *pub;
    int64_t audit0;

    hub(f, "alloc-a");
    /* --hub alone means static. */
    pub = pubkey_file("al-1.pub", fp);
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, "al-1", NULL, pub, &by_hub));
    expect_allocation(f, "al-1", "static", "alloc-a");
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    snprintf(detail, sizeof(detail),
             "{\"allocation\":\"static\",\"enabled\":true,\"hub\":\"alloc-a\",\"key_fingerprint\":"
             "\"%s\",\"kind\":\"individual\",\"networks\":null,\"subject\":\"\"}",
             fp);
    kf_test_audit_expect(&a.r[0], "enrollment.add", "enrollment:al-1", detail);
    kf_test_audit_free(&a);
    KF_OK_OR_FAIL(
        kf_enroll_add(f->d, KF_TEST_ACTOR, "al-2", NULL, pubkey_file("al-2.pub", fp), &both));
    expect_allocation(f, "al-2", "static", "alloc-a");
    KF_OK_OR_FAIL(
        kf_enroll_add(f->d, KF_TEST_ACTOR, "al-3", NULL, pubkey_file("al-3.pub", fp), &hashed));
    expect_allocation(f, "al-3", "hashed", "");

    pub = pubkey_file("al-9.pub", fp);
    EXPECT_REFUSED(f, KF_E_USAGE, "static allocation needs a hub: give --hub NAME",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "al-9", NULL, pub, &static_no_hub));
    EXPECT_REFUSED(f, KF_E_USAGE,
                   "--hub names the hub of a static allocation; it does not go with "
                   "--allocation hashed",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "al-9", NULL, pub, &hashed_hub));
    EXPECT_REFUSED(f, KF_E_USAGE, "allocation \"round-robin\" is unknown: it is hashed or static",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "al-9", NULL, pub, &unknown));
    EXPECT_REFUSED(f, KF_E_NOT_FOUND,
                   "hub alloc-z does not exist (keyfleet hub list shows the hubs; keyfleet hub "
                   "add makes one)",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "al-9", NULL, pub, &no_such_hub));
    EXPECT_REFUSED(f, KF_E_INVALID, "hub name \"Alloc-A\"",
                   kf_enroll_add(f->d, KF_TEST_ACTOR, "al-9", NULL, pub, &bad_hub));
}

static void test_allocation_on_group_create(void **state)
{
    struct fixture *f = *state;
    struct kf_test_pki g, h;
    char code[KF_CODE_MAX];
    const char *g_root = kf_test_path("g-root.pem"), *h_root = kf_test_path("h-root.pem");
    struct kf_enroll_opts on_hub = {NULL, 0, NULL, "alloc-g", NULL, 0};
    struct kf_enroll_opts no_such_hub = {NULL, 0, "static", "alloc-z", NULL, 0};
    struct kf_enroll_opts static_no_hub = {NULL, 0, "static", NULL, NULL, 0};
    struct kf_test_audit a;
    int64_t audit0;

    hub(f, "alloc-g");
    kf_test_pki_make(&g, KF_KEY_EC_P256);
    kf_test_pki_make(&h, KF_KEY_EC_P256);
    kf_test_save_cert(g.root, g_root);
    kf_test_save_cert(h.root, h_root);
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-g", g_root, &on_hub, code));
    expect_allocation(f, "vendor-g", "static", "alloc-g");
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    assert_non_null(strstr(a.r[0].detail, "\"allocation\":\"static\""));
    assert_non_null(strstr(a.r[0].detail, "\"hub\":\"alloc-g\""));
    kf_test_audit_free(&a);

    EXPECT_REFUSED(
        f, KF_E_NOT_FOUND, "hub alloc-z does not exist",
        kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-h", h_root, &no_such_hub, code));
    assert_string_equal(code, "");
    EXPECT_REFUSED(
        f, KF_E_USAGE, "static allocation needs a hub",
        kf_enroll_group_create(f->d, KF_TEST_ACTOR, "vendor-h", h_root, &static_no_hub, code));
    kf_test_pki_free(&g);
    kf_test_pki_free(&h);
}

static void test_update(void **state)
{
    struct fixture *f = *state;
    char fp[KF_FINGERPRINT_HEX];
    struct kf_enroll_change to_a = {NULL, "upd-a", NULL, 0, NULL, -1};
    struct kf_enroll_change to_b = {"static", "upd-b", NULL, 0, NULL, -1};
    struct kf_enroll_change to_hashed = {"hashed", NULL, NULL, 0, NULL, -1};
    struct kf_enroll_change nets = {NULL, NULL, "192.168.0.0/16, 10.0.0.0/8", 0, NULL, -1};
    struct kf_enroll_change any = {NULL, NULL, NULL, 1, NULL, -1};
    struct kf_enroll_change all = {NULL, "upd-a", "10.0.0.0/8", 0, NULL, -1};
    struct kf_enroll_change nothing = {NULL, NULL, NULL, 0, NULL, -1};
    struct kf_enroll_change nets_and_any = {NULL, NULL, "10.0.0.0/8", 1, NULL, -1};
    struct kf_enroll_change static_no_hub = {"static", NULL, NULL, 0, NULL, -1};
    struct kf_enroll_change hashed_hub = {"hashed", "upd-a", NULL, 0, NULL, -1};
    struct kf_enroll_change unknown = {"sticky", NULL, NULL, 0, NULL, -1};
    struct kf_enroll_change no_such_hub = {NULL, "upd-z", NULL, 0, NULL, -1};
    struct kf_enroll_change bad_nets = {NULL, NULL, "10.0.0.1/8", 0, NULL, -1};
    struct kf_enroll_change bad_hub = {NULL, "upd a", NULL, 0, NULL, -1};
    struct kf_enrollment_rec e, before;
    int64_t audit0;
    int changed = -1;

    hub(f, "upd-a");
    hub(f, "upd-b");
    KF_OK_OR_FAIL(
        kf_enroll_add(f->d, KF_TEST_ACTOR, "upd-1", NULL, pubkey_file("upd-1.pub", fp), NULL));
    get(f, "upd-1", &before);

    /* Each change: the record, and one audit record with what changed. */
    struct {
        const struct kf_enroll_change *c;
        const char *allocation, *hub, *networks, *detail;
    } steps[] = {
        {&to_a, "static", "upd-a", NULL, "{\"allocation\":\"static\",\"hub\":\"upd-a\"}"},
        {&to_b, "static", "upd-b", NULL, "{\"hub\":\"upd-b\"}"},
        {&nets, "static", "upd-b", "192.168.0.0/16,10.0.0.0/8",
         "{\"networks\":\"192.168.0.0/16,10.0.0.0/8\"}"},
        {&any, "static", "upd-b", NULL, "{\"networks\":null}"},
        {&to_hashed, "hashed", "", NULL, "{\"allocation\":\"hashed\",\"hub\":null}"},
        {&all, "static", "upd-a", "10.0.0.0/8",
         "{\"allocation\":\"static\",\"hub\":\"upd-a\",\"networks\":\"10.0.0.0/8\"}"},
    };
    for (size_t i = 0; i < KF_ARRAY_LEN(steps); i++) {
        struct kf_test_audit a;
        audit0 = kf_test_audit_count(f->d->store);
        changed = -1;
        KF_OK_OR_FAIL(kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", steps[i].c, &changed));
        assert_int_equal(changed, 1);
        get(f, "upd-1", &e);
        assert_string_equal(e.allocation, steps[i].allocation);
        assert_string_equal(e.hub, steps[i].hub);
        if (steps[i].networks)
            assert_string_equal(e.networks, steps[i].networks);
        else
            assert_null(e.networks);
        /* Nothing else moved. */
        assert_int_equal(e.enabled, before.enabled);
        assert_string_equal(e.key_fingerprint, before.key_fingerprint);
        assert_string_equal(e.pubkey_pem, before.pubkey_pem);
        assert_int_equal(e.created, before.created);
        assert_true(e.updated >= before.updated);
        kf_enrollment_clear(&e);
        kf_test_audit_after(f->d->store, audit0, &a);
        assert_int_equal(a.n, 1);
        kf_test_audit_expect(&a.r[0], "enrollment.update", "enrollment:upd-1", steps[i].detail);
        kf_test_audit_free(&a);
    }
    kf_enrollment_clear(&before);

    /* The same again: nothing changes, nothing is audited. */
    {
        struct kf_test_state st;
        kf_test_state_take(f->d->store, &st);
        changed = -1;
        KF_OK_OR_FAIL(kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &all, &changed));
        assert_int_equal(changed, 0);
        KF_OK_OR_FAIL(kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &to_a, NULL));
        kf_test_state_expect(f->d->store, &st, "update to what it already is");
        kf_test_state_free(&st);
    }

    changed = -1;
    EXPECT_REFUSED(f, KF_E_USAGE,
                   "nothing to change: give --allocation, --hub, --networks, --any-network, "
                   "--approval or --require-binding",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &nothing, &changed));
    assert_int_equal(changed, 0);
    EXPECT_REFUSED(f, KF_E_USAGE, "nothing to change",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", NULL, NULL));
    EXPECT_REFUSED(f, KF_E_USAGE, "give --networks or --any-network, not both",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &nets_and_any, NULL));
    EXPECT_REFUSED(f, KF_E_USAGE, "static allocation needs a hub: give --hub NAME",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &static_no_hub, NULL));
    EXPECT_REFUSED(f, KF_E_USAGE, "it does not go with --allocation hashed",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &hashed_hub, NULL));
    EXPECT_REFUSED(f, KF_E_USAGE, "allocation \"sticky\" is unknown",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &unknown, NULL));
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "hub upd-z does not exist",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &no_such_hub, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "hub name \"upd a\"",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &bad_hub, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "--networks: \"10.0.0.1/8\" has host bits set",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &bad_nets, NULL));
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "enrollment upd-9 not found",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-9", &to_a, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "enrollment id \"Upd-1\"",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "Upd-1", &to_a, NULL));

    /* A hub that goes away cannot be chosen; one named by an enrollment cannot go. */
    EXPECT_REFUSED(f, KF_E_CONFLICT, "hub upd-a is the static hub of enrollment upd-1",
                   kf_hubs_remove(f->d, KF_TEST_ACTOR, "upd-a"));
    KF_OK_OR_FAIL(kf_hubs_remove(f->d, KF_TEST_ACTOR, "upd-b"));
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "hub upd-b does not exist",
                   kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &to_b, NULL));
    /* A disabled hub can still be named: it just gives no device a hub until enabled. */
    KF_OK_OR_FAIL(kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "upd-a", 0, NULL));
    KF_OK_OR_FAIL(kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &to_hashed, NULL));
    KF_OK_OR_FAIL(kf_enroll_update(f->d, KF_TEST_ACTOR, "upd-1", &to_a, &changed));
    assert_int_equal(changed, 1);
    expect_allocation(f, "upd-1", "static", "upd-a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_by_cert),
        cmocka_unit_test(test_add_by_pubkey),
        cmocka_unit_test(test_add_refusals),
        cmocka_unit_test(test_group_create),
        cmocka_unit_test(test_group_create_refusals),
        cmocka_unit_test(test_group_verify),
        cmocka_unit_test(test_group_code_and_expiry),
        cmocka_unit_test(test_enable_disable),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_allocation_on_add),
        cmocka_unit_test(test_allocation_on_group_create),
        cmocka_unit_test(test_update),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
