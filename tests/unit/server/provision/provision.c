/*
 * provision: kf_prov_decide and its store callback on a real deployment, with factory
 * certificates from test manufacturers, CSRs made like devices make them and the deployment's own
 * issuing CA as the signer: group and individual enrollments, every refusal with the status, code
 * and sentence a device gets (and nothing signed or stored), the certificate a job carries, and
 * the device, certificate, registration, audit record and event its callback writes, also when
 * the store changed between the decision and the write.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/ident.h"
#include "common/pki_crl.h"
#include "common/pki_trust.h"
#include "common/timefmt.h"
#include "server/ca/ca.h"
#include "server/ops/enroll.h"
#include "server/ops/fleet.h"
#include "server/ops/hubs.h"
#include "server/ops/snapshot.h"
#include "server/provision/provision.h"

#define DAY 86400L
#define IP  "192.0.2.10" /* where devices ask from, unless a test says otherwise */
#define HUB "hub-1"      /* the one hub: every device is given it */

struct fixture {
    struct kf_deploy *d;
    struct kf_signer *signer; /* the deployment's issuing CA (borrowed from d) */
    struct kf_test_pki a, b;  /* the manufacturers of groups vendor-a and vendor-b, verified */
};

/* A device's factory identity: its certificate, key, and the manufacturer's issuing CA above. */
struct factory {
    struct kf_cert *cert;
    struct kf_key *key;
    struct kf_cert *chain[1];
};

/* ---- a deployment, its enrollments ---- */

/*
 * Creates group `name` for the root CA of `p` and, when `verify`, proves possession of its key
 * the way an operator does: a certificate whose CN is the verification code, signed by the CA.
 */
static void group(struct fixture *f, struct kf_test_pki *p, const char *name,
                  const struct kf_enroll_opts *o, int verify)
{
    static const char *const dns[] = {"proof.example"};
    char ca[64], proof_path[64], code[KF_CODE_MAX];
    struct kf_cert_template t;
    struct kf_cert *proof = NULL;
    struct kf_key *k = NULL;
    time_t now = time(NULL);

    snprintf(ca, sizeof(ca), "%s-ca.pem", name);
    kf_test_save_cert(p->root, kf_test_path(ca));
    KF_OK_OR_FAIL(kf_enroll_group_create(f->d, KF_TEST_ACTOR, name, kf_test_path(ca), o, code));
    if (!verify) return;
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_SERVER;
    t.cn = code;
    t.key = k;
    t.dns_names = dns;
    t.n_dns = 1;
    t.not_before = now - 60;
    t.not_after = now + DAY;
    KF_OK_OR_FAIL(kf_cert_build(&t, p->root, p->root_key, &proof));
    snprintf(proof_path, sizeof(proof_path), "%s-proof.pem", name);
    kf_test_save_cert(proof, kf_test_path(proof_path));
    KF_OK_OR_FAIL(kf_enroll_group_verify(f->d, KF_TEST_ACTOR, name, kf_test_path(proof_path)));
    kf_cert_free(proof);
    kf_key_free(k);
}

/* Enrolls registration id `id` individually, bound to `fa`'s certificate, or (`by_key`) key. */
static void individual(struct fixture *f, const char *id, const struct factory *fa, int by_key,
                       const struct kf_enroll_opts *o)
{
    char name[160];
    snprintf(name, sizeof(name), "%s-enrolled.pem", id);
    if (by_key) {
        struct kf_buf pem;
        kf_buf_init(&pem, 1 << 16);
        KF_OK_OR_FAIL(kf_key_public_pem(fa->key, &pem));
        kf_test_write(kf_test_path(name), kf_buf_str(&pem));
        kf_buf_free(&pem);
        KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, id, NULL, kf_test_path(name), o));
    } else {
        kf_test_save_cert(fa->cert, kf_test_path(name));
        KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, id, kf_test_path(name), NULL, o));
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->d = kf_test_deploy_make("provision");
    KF_OK_OR_FAIL(kf_deploy_issuer(f->d, &f->signer));
    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, HUB, HUB ".example:8883", 1));
    kf_test_pki_make(&f->a, KF_KEY_EC_P256);
    kf_test_pki_make(&f->b, KF_KEY_EC_P256);
    group(f, &f->a, "vendor-a", NULL, 1);
    group(f, &f->b, "vendor-b", NULL, 1);
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

/* ---- devices and their requests ---- */

/* A factory certificate for `id` from manufacturer `p`, with a new key, valid for 30 days. */
static void factory(struct kf_test_pki *p, const char *id, struct factory *out)
{
    memset(out, 0, sizeof(*out));
    out->cert = kf_test_issue(p, KF_PROFILE_DEVICE, id, 0, 0, &out->key);
    out->chain[0] = kf_cert_ref(p->issuing);
}

/* Another factory certificate from `p` for the key of `fa` (the device's key, certified again). */
static void factory_same_key(struct kf_test_pki *p, const char *id, const struct factory *fa,
                             time_t nb, time_t na, struct factory *out)
{
    struct kf_cert_template t;
    memset(out, 0, sizeof(*out));
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_DEVICE;
    t.cn = id;
    t.device_id = id;
    t.key = fa->key;
    t.not_before = nb;
    t.not_after = na;
    KF_OK_OR_FAIL(kf_cert_build(&t, p->issuing, p->issuing_key, &out->cert));
    out->chain[0] = kf_cert_ref(p->issuing);
}

static void factory_free(struct factory *fa)
{
    kf_cert_free(fa->cert);
    kf_cert_free(fa->chain[0]);
    kf_key_free(fa->key);
    memset(fa, 0, sizeof(*fa));
}

/* What the worker hands kf_prov_decide for a request with a factory certificate (or none). */
static struct kf_prov_input request(enum kf_prov_kind kind, struct factory *fa,
                                    const struct kf_csr *csr)
{
    struct kf_prov_input in;
    memset(&in, 0, sizeof(in));
    in.kind = kind;
    in.ip = IP;
    in.leaf = fa ? fa->cert : NULL;
    in.chain = fa ? fa->chain : NULL;
    in.n_chain = fa ? 1 : 0;
    in.csr = csr;
    return in;
}

/* A simplereenroll with the operational certificate `current` as the client certificate. */
static struct kf_prov_input renewal(struct kf_cert *current, const struct kf_csr *csr)
{
    struct kf_prov_input in;
    memset(&in, 0, sizeof(in));
    in.kind = KF_PROV_SIMPLEREENROLL;
    in.ip = IP;
    in.leaf = current;
    in.csr = csr;
    return in;
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
 * `c` as a device has it: its PEM parsed again. (A certificate as the signer returns it has its
 * key set from SPKI bytes and no key object, so OpenSSL cannot verify it in this process.)
 */
static struct kf_cert *as_received(const struct kf_cert *c)
{
    struct kf_cert *out = NULL;
    struct kf_buf pem;
    kf_buf_init(&pem, 1 << 16);
    KF_OK_OR_FAIL(kf_cert_pem(c, &pem));
    KF_OK_OR_FAIL(kf_cert_parse(pem.data, pem.len, &out));
    kf_buf_free(&pem);
    return out;
}

/* ---- deciding ---- */

/* kf_prov_decide on a snapshot of the registry taken now, as keyfleetd's worker takes it. */
static enum kf_err decide(struct fixture *f, const struct kf_prov_input *in,
                          struct kf_prov_job **job, struct kf_prov_refusal *ref)
{
    struct kf_snapshot *reg = NULL;
    enum kf_err rc;
    KF_OK_OR_FAIL(kf_snapshot_load(f->d, &f->d->cfg, &reg));
    rc = kf_prov_decide(reg, f->d->store, f->signer, in, time(NULL), job, ref);
    kf_snapshot_release(reg);
    return rc;
}

static void expect_refusal(const struct kf_prov_refusal *ref, int status, enum kf_refusal reason,
                           int verified, const char *message)
{
    if (ref->status != status || ref->reason != reason || strcmp(ref->message, message) != 0)
        fail_msg("refused with %d %s \"%s\"; expected %d %s \"%s\"", ref->status,
                 kf_refusal_name(ref->reason), ref->message, status, kf_refusal_name(reason),
                 message);
    assert_int_equal(ref->verified, verified);
}

/*
 * Decides `in`, which must be refused with `status`, `reason` and exactly `message`, with no job,
 * nothing signed and the store as it was.
 */
static void expect_refused(struct fixture *f, const struct kf_prov_input *in, int status,
                           enum kf_refusal reason, int verified, const char *message)
{
    struct kf_test_state before;
    struct kf_prov_job *job = (struct kf_prov_job *)1;
    struct kf_prov_refusal ref;
    uint64_t signed_before = kf_signer_count(f->signer);

    kf_test_state_take(f->d->store, &before);
    KF_EXPECT_ERR(KF_E_DENIED, decide(f, in, &job, &ref));
    assert_null(job);
    expect_refusal(&ref, status, reason, verified, message);
    assert_int_equal(kf_signer_count(f->signer), signed_before);
    kf_test_state_expect(f->d->store, &before, message);
    kf_test_state_free(&before);
}

/*
 * The certificate a job carries: CN and URI SAN the device id, O the deployment's name, the CSR's
 * key, a client certificate of keyfleet's issuing CA for the configured life, and its record.
 */
static void expect_device_cert(struct fixture *f, const struct kf_prov_job *job, const char *id,
                               const struct kf_csr *csr, time_t t0)
{
    char cn[KF_ID_MAX + 2], san[KF_ID_MAX + 2], subject[KF_NAME_MAX], want[KF_NAME_MAX];
    char serial[KF_SERIAL_HEX_MAX], fp[KF_HASH_HEX];
    struct kf_key *asked = NULL, *got = NULL;
    struct kf_trust *trust = NULL;
    struct kf_cert *received;
    struct kf_verify_result res;
    time_t nb, na;

    assert_non_null(job->cert);
    KF_OK_OR_FAIL(kf_cert_subject_cn(job->cert, cn, sizeof(cn)));
    assert_string_equal(cn, id);
    kf_cert_subject(job->cert, subject, sizeof(subject));
    snprintf(want, sizeof(want), "CN=%s,O=unit", id);
    assert_string_equal(subject, want);
    KF_OK_OR_FAIL(kf_cert_uri_san(job->cert, KF_URN_DEVICE, san, sizeof(san)));
    assert_string_equal(san, id);
    assert_false(kf_cert_is_ca(job->cert));
    KF_OK_OR_FAIL(kf_csr_public_key(csr, &asked));
    KF_OK_OR_FAIL(kf_cert_public_key(job->cert, &got));
    assert_true(kf_key_public_equal(asked, got));
    kf_key_free(asked);
    kf_key_free(got);

    /* As the device receives it, it is a client certificate of keyfleet's issuing CA. */
    received = as_received(job->cert);
    KF_OK_OR_FAIL(kf_trust_new(&trust));
    KF_OK_OR_FAIL(kf_trust_add_cert(trust, kf_signer_cert(f->signer)));
    KF_OK_OR_FAIL(kf_trust_verify(trust, received, NULL, 0, time(NULL), KF_PURPOSE_CLIENT, &res));
    kf_trust_free(trust);
    kf_cert_free(received);

    /* From a minute ago (clock skew) for device_cert_days; renewed at two thirds of that. */
    assert_int_equal(f->d->cfg.ca.device_cert_minutes, 0);
    nb = kf_cert_not_before(job->cert);
    na = kf_cert_not_after(job->cert);
    assert_true(nb >= t0 - 60 && nb <= time(NULL) - 60);
    assert_int_equal(na - nb, (time_t)f->d->cfg.ca.device_cert_days * DAY + 60);
    assert_int_equal(job->renew_after, nb + (na - nb) * 2 / 3);

    kf_cert_serial_hex(job->cert, serial);
    kf_cert_fingerprint(job->cert, fp);
    assert_string_equal(job->rec.serial, serial);
    assert_string_equal(job->rec.device_id, id);
    assert_string_equal(job->rec.profile, "device");
    assert_string_equal(job->rec.issuer, "issuing");
    assert_string_equal(job->rec.fingerprint, fp);
    assert_int_equal(job->rec.status, KF_CERT_VALID);
}

/*
 * Decides `in`, which must go ahead for device `id` under `enrollment` with a certificate
 * (checked), on the one hub. Returns the job (owned: kf_prov_job_free), not yet written.
 */
static struct kf_prov_job *expect_job(struct fixture *f, const struct kf_prov_input *in,
                                      const char *id, const char *enrollment)
{
    struct kf_prov_job *job = NULL;
    struct kf_prov_refusal ref;
    uint64_t signed_before = kf_signer_count(f->signer);
    time_t t0 = time(NULL);
    enum kf_err rc = decide(f, in, &job, &ref);

    if (rc == KF_E_DENIED)
        fail_msg("refused %s: %d %s \"%s\"", id, ref.status, kf_refusal_name(ref.reason),
                 ref.message);
    KF_OK_OR_FAIL(rc);
    assert_non_null(job);
    assert_int_equal(job->kind, in->kind);
    assert_string_equal(job->device_id, id);
    assert_string_equal(job->enrollment, enrollment);
    assert_string_equal(job->ip, in->ip);
    assert_int_equal(job->has_hub, 1);
    assert_string_equal(job->hub.name, HUB);
    assert_string_equal(job->hub.endpoint, HUB ".example:8883");
    assert_int_equal(job->pending, 0);
    assert_int_equal(job->refused, 0);
    assert_true(job->req.cb == kf_prov_write_cb);
    assert_ptr_equal(job->req.arg, job);
    assert_int_equal(kf_signer_count(f->signer), signed_before + 1);
    expect_device_cert(f, job, id, in->csr, t0);
    return job;
}

/* ---- what the store holds ---- */

static enum kf_err registration_get(struct fixture *f, const char *id,
                                    struct kf_registration_rec *r)
{
    struct kf_txn *t = NULL;
    enum kf_err rc;
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    rc = kf_txn_registration_get(t, id, r);
    kf_txn_end(t);
    return rc;
}

static enum kf_err approval_get(struct fixture *f, const char *id, struct kf_approval_rec *a)
{
    struct kf_txn *t = NULL;
    enum kf_err rc;
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    rc = kf_txn_approval_get(t, id, a);
    kf_txn_end(t);
    return rc;
}

/* The events of `type` for device `id`: how many, and the last one. */
struct events {
    int n;
    struct kf_event_rec last; /* detail points into `detail` */
    char detail[1024];
};

static enum kf_err event_cb(const struct kf_event_rec *e, void *arg)
{
    struct events *ev = arg;
    ev->n++;
    ev->last = *e;
    snprintf(ev->detail, sizeof(ev->detail), "%s", e->detail ? e->detail : "{}");
    ev->last.detail = ev->detail;
    return KF_OK;
}

static void events_of(struct fixture *f, const char *type, const char *id, struct events *out)
{
    struct kf_txn *t = NULL;
    memset(out, 0, sizeof(*out));
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(kf_txn_event_list(t, 0, type, id, KF_LIST_ALL, event_cb, out));
    kf_txn_end(t);
}

/* The one audit record appended since `audit0`: by keyfleetd, `action` on `object`, `detail`. */
static void expect_one_audit(struct fixture *f, int64_t audit0, const char *action,
                             const char *object, const char *detail)
{
    struct kf_test_audit a;
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    if (strcmp(a.r[0].actor, KF_PROV_ACTOR) != 0 || strcmp(a.r[0].action, action) != 0 ||
        strcmp(a.r[0].object, object) != 0 || strcmp(a.r[0].detail, detail) != 0)
        fail_msg("audit record is %s %s %s %s; expected %s %s %s %s", a.r[0].actor, a.r[0].action,
                 a.r[0].object, a.r[0].detail, KF_PROV_ACTOR, action, object, detail);
    kf_test_audit_free(&a);
}

static const char *kind_name(enum kf_prov_kind k)
{
    return k == KF_PROV_SIMPLEENROLL ? "simpleenroll"
           : k == KF_PROV_REGISTER   ? "register"
                                     : "simplereenroll";
}

/*
 * Runs the job's store callback as keyfleetd's store does (it must keep its changes), then checks
 * what it wrote: the device (active, under the job's enrollment, on the hub; `new_device` says
 * whether this write created it), the certificate, the registration (its `count`th), one audit
 * record cert.issue, and a provisioning.assigned event with the same detail.
 */
static void expect_written(struct fixture *f, struct kf_prov_job *job, int new_device,
                           int64_t count)
{
    int64_t audit0 = kf_test_audit_count(f->d->store);
    time_t t0 = time(NULL);
    char object[KF_OBJECT_MAX], when[KF_TIME_TEXT_MAX], detail[1024];
    struct kf_device_rec dev;
    struct kf_cert_rec rec;
    struct kf_registration_rec r;
    struct events ev;

    KF_OK_OR_FAIL(kf_store_write(f->d->store, job->req.cb, job->req.arg));
    assert_int_equal(job->refused, 0);
    assert_int_equal(job->new_device, new_device);

    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, job->device_id, &dev));
    assert_int_equal(dev.status, KF_DEVICE_ACTIVE);
    assert_string_equal(dev.enrollment, job->enrollment);
    assert_string_equal(dev.hub, HUB);
    if (new_device) {
        assert_true(dev.created >= t0 && dev.created <= time(NULL));
        assert_int_equal(dev.updated, dev.created);
    }

    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, job->rec.serial, &rec));
    assert_string_equal(rec.device_id, job->device_id);
    assert_string_equal(rec.profile, "device");
    assert_string_equal(rec.issuer, "issuing");
    assert_int_equal(rec.status, KF_CERT_VALID);
    assert_string_equal(rec.fingerprint, job->rec.fingerprint);
    assert_string_equal(rec.pem, job->rec.pem);
    kf_cert_rec_clear(&rec);

    KF_OK_OR_FAIL(registration_get(f, job->device_id, &r));
    assert_string_equal(r.enrollment, job->enrollment);
    assert_string_equal(r.hub, HUB);
    assert_string_equal(r.cert_serial, job->rec.serial);
    assert_string_equal(r.source_ip, job->ip);
    assert_int_equal(r.renew_after, job->renew_after);
    assert_int_equal(r.count, count);
    assert_true(r.last_at >= t0 && r.last_at <= time(NULL));
    if (new_device) assert_int_equal(r.first_at, r.last_at);

    kf_time_rfc3339(job->rec.not_after, when, sizeof(when));
    snprintf(detail, sizeof(detail),
             "{\"device\":\"%s\",\"enrollment\":\"%s\",\"hub\":\"%s\",\"ip\":\"%s\",\"kind\":"
             "\"%s\",\"new_device\":%s,\"not_after\":\"%s\"}",
             job->device_id, job->enrollment, HUB, job->ip, kind_name(job->kind),
             new_device ? "true" : "false", when);
    snprintf(object, sizeof(object), "cert:%s", job->rec.serial);
    expect_one_audit(f, audit0, "cert.issue", object, detail);

    events_of(f, "provisioning.assigned", job->device_id, &ev);
    assert_int_equal(ev.n, count);
    assert_string_equal(ev.last.severity, "info");
    assert_string_equal(ev.last.source, "server");
    assert_string_equal(ev.last.ip, job->ip);
    assert_string_equal(ev.last.detail, detail);
}

/* Decides `in` (which must go ahead) and writes it, as above; returns the job, written. */
static struct kf_prov_job *provision(struct fixture *f, const struct kf_prov_input *in,
                                     const char *id, const char *enrollment, int new_device,
                                     int64_t count)
{
    struct kf_prov_job *job = expect_job(f, in, id, enrollment);
    expect_written(f, job, new_device, count);
    return job;
}

/* Provisions device `id` anew from manufacturer `p` (group `enrollment`); its job, written. */
static struct kf_prov_job *provision_new(struct fixture *f, struct kf_test_pki *p, const char *id,
                                         const char *enrollment, struct factory *fa)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, id);
    struct kf_prov_input in;
    struct kf_prov_job *job;
    factory(p, id, fa);
    in = request(KF_PROV_REGISTER, fa, csr);
    job = provision(f, &in, id, enrollment, 1, 1);
    kf_csr_free(csr);
    return job;
}

/* ---- 1. group enrollment ---- */

static void test_group(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "grp-1");
    struct kf_csr *again = kf_test_csr(KF_KEY_EC_P256, "grp-1");
    struct kf_device_rec dev, dev2;
    struct kf_prov_input in;
    struct kf_prov_job *job, *job2;
    struct factory fa;

    factory(&f->a, "grp-1", &fa);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_device_get(f->d->store, "grp-1", &dev));
    in = request(KF_PROV_REGISTER, &fa, csr);
    job = provision(f, &in, "grp-1", "vendor-a", 1, 1);
    assert_int_equal(kf_test_cert_count(f->d->store, "grp-1", KF_CERT_VALID), 1);
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "grp-1", &dev));

    /* The same device again, by EST: the same device, a second certificate and registration. */
    in = request(KF_PROV_SIMPLEENROLL, &fa, again);
    job2 = provision(f, &in, "grp-1", "vendor-a", 0, 2);
    assert_string_not_equal(job2->rec.serial, job->rec.serial);
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "grp-1", &dev2));
    assert_int_equal(dev2.created, dev.created);
    assert_int_equal(kf_test_cert_count(f->d->store, "grp-1", KF_CERT_VALID), 2);

    kf_prov_job_free(job);
    kf_prov_job_free(job2);
    kf_csr_free(csr);
    kf_csr_free(again);
    factory_free(&fa);
}

/* A chain that reaches no group, a factory CA certificate, and a request under another label. */
static void test_group_refusals(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "grp-2");
    struct kf_csr *ca_csr = kf_test_csr(KF_KEY_EC_P256, "grp-ca");
    struct kf_test_pki stranger;
    struct kf_prov_input in;
    struct factory fa, ca;

    kf_test_pki_make(&stranger, KF_KEY_EC_P256);
    factory(&stranger, "grp-2", &fa);
    in = request(KF_PROV_REGISTER, &fa, csr);
    expect_refused(f, &in, 404, KF_REFUSAL_ENROLLMENT_NOT_FOUND, 0,
                   "no enrollment for registration id grp-2: none for the id itself, and its "
                   "certificate's chain reaches no group CA");
    factory_free(&fa);

    /*
     * A CA under the group's CA could make devices of its own: one fit for TLS client use
     * (digitalSignature, clientAuth), as openssl makes it with the manufacturer's issuing key.
     */
    memset(&ca, 0, sizeof(ca));
    kf_test_save_cert(f->a.issuing, kf_test_path("a-issuing.pem"));
    KF_OK_OR_FAIL(kf_key_save(f->a.issuing_key, kf_test_path("a-issuing.key"), NULL));
    if (kf_test_sh("cd '%s' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                   "-keyout grp-ca.key -subj /CN=grp-ca -addext "
                   "basicConstraints=critical,CA:TRUE -addext "
                   "keyUsage=critical,digitalSignature,keyCertSign -addext "
                   "extendedKeyUsage=clientAuth -out grp-ca.csr 2>/dev/null && openssl x509 -req "
                   "-in grp-ca.csr -CA a-issuing.pem -CAkey a-issuing.key -copy_extensions copyall "
                   "-days 30 -out grp-ca.pem 2>/dev/null",
                   kf_test_dir()) != 0)
        fail_msg("openssl could not make the CA factory certificate");
    KF_OK_OR_FAIL(kf_cert_load_file(kf_test_path("grp-ca.pem"), &ca.cert));
    assert_true(kf_cert_is_ca(ca.cert));
    ca.chain[0] = kf_cert_ref(f->a.issuing);
    in = request(KF_PROV_REGISTER, &ca, ca_csr);
    expect_refused(f, &in, 401, KF_REFUSAL_CERTIFICATE_INVALID, 0,
                   "the factory certificate of grp-ca is a CA certificate (basicConstraints "
                   "CA:TRUE); a device's factory certificate must be an end-entity one");
    factory_free(&ca);

    /* EST under the CA label of another group. */
    factory(&f->a, "grp-2", &fa);
    in = request(KF_PROV_SIMPLEENROLL, &fa, csr);
    in.label = "vendor-b";
    expect_refused(f, &in, 404, KF_REFUSAL_ENROLLMENT_NOT_FOUND, 1,
                   "device grp-2 is not of group vendor-b, the CA label this request came under "
                   "(it belongs to enrollment vendor-a)");
    factory_free(&fa);

    kf_test_pki_free(&stranger);
    kf_csr_free(csr);
    kf_csr_free(ca_csr);
}

/* ---- 2. individual enrollment ---- */

static void test_individual_by_cert(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "ind-1");
    struct kf_prov_input in;
    struct kf_prov_job *job;
    struct factory fa, other;

    /* From vendor-a's manufacturer, but enrolled for itself: the individual enrollment wins. */
    factory(&f->a, "ind-1", &fa);
    individual(f, "ind-1", &fa, 0, NULL);
    in = request(KF_PROV_REGISTER, &fa, csr);
    job = provision(f, &in, "ind-1", "ind-1", 1, 1);
    kf_prov_job_free(job);

    /* Another certificate for ind-1 that vendor-a would take: the pinned one is the only one. */
    factory(&f->a, "ind-1", &other);
    in = request(KF_PROV_REGISTER, &other, csr);
    expect_refused(f, &in, 401, KF_REFUSAL_CERTIFICATE_INVALID, 0,
                   "the client certificate is not the factory certificate enrolled for ind-1");
    /* Even with the same key: the certificate is what was enrolled. */
    factory_free(&other);
    factory_same_key(&f->a, "ind-1", &fa, time(NULL) - 60, time(NULL) + DAY, &other);
    in = request(KF_PROV_REGISTER, &other, csr);
    expect_refused(f, &in, 401, KF_REFUSAL_CERTIFICATE_INVALID, 0,
                   "the client certificate is not the factory certificate enrolled for ind-1");

    factory_free(&other);
    factory_free(&fa);
    kf_csr_free(csr);
}

static void test_individual_by_key(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "ind-2");
    struct kf_test_pki maker; /* enrolled nowhere: only the key counts */
    struct kf_prov_input in;
    struct kf_prov_job *job;
    struct factory fa, reissued, other, expired;
    char msg[256], when[KF_TIME_TEXT_MAX];
    time_t now = time(NULL);

    kf_test_pki_make(&maker, KF_KEY_EC_P256);
    factory(&maker, "ind-2", &fa);
    individual(f, "ind-2", &fa, 1, NULL);
    in = request(KF_PROV_REGISTER, &fa, csr);
    job = provision(f, &in, "ind-2", "ind-2", 1, 1);
    kf_prov_job_free(job);

    /* The same key in a new certificate is the device enrolled. */
    factory_same_key(&maker, "ind-2", &fa, now - 60, now + DAY, &reissued);
    in = request(KF_PROV_REGISTER, &reissued, csr);
    job = provision(f, &in, "ind-2", "ind-2", 0, 2);
    kf_prov_job_free(job);

    /* Another key is not. */
    factory(&maker, "ind-2", &other);
    in = request(KF_PROV_REGISTER, &other, csr);
    expect_refused(f, &in, 401, KF_REFUSAL_CERTIFICATE_INVALID, 0,
                   "the client certificate's key is not the key enrolled for ind-2");

    /* The right key in a certificate past its notAfter. */
    factory_same_key(&maker, "ind-2", &fa, now - 10 * DAY, now - DAY, &expired);
    in = request(KF_PROV_REGISTER, &expired, csr);
    kf_time_rfc3339(now - DAY, when, sizeof(when));
    snprintf(msg, sizeof(msg), "the factory certificate of ind-2 expired on %s", when);
    expect_refused(f, &in, 401, KF_REFUSAL_CERTIFICATE_INVALID, 0, msg);

    factory_free(&fa);
    factory_free(&reissued);
    factory_free(&other);
    factory_free(&expired);
    kf_test_pki_free(&maker);
    kf_csr_free(csr);
}

/* ---- 3. disabled enrollments, unverified groups ---- */

static void test_disabled_and_unverified(void **state)
{
    struct fixture *f = *state;
    struct kf_enroll_opts off = {NULL, 1, NULL, NULL, NULL, 0};
    struct kf_csr *csr1 = kf_test_csr(KF_KEY_EC_P256, "dis-1");
    struct kf_csr *csr2 = kf_test_csr(KF_KEY_EC_P256, "dis-2");
    struct kf_csr *csr3 = kf_test_csr(KF_KEY_EC_P256, "unv-1");
    struct kf_test_pki d, u;
    struct kf_prov_input in;
    struct kf_prov_job *job;
    struct factory fa1, fa2, fa3;

    /* An individual enrollment created disabled (vendor-a, which would take it, is not asked). */
    factory(&f->a, "dis-1", &fa1);
    individual(f, "dis-1", &fa1, 0, &off);
    in = request(KF_PROV_REGISTER, &fa1, csr1);
    expect_refused(f, &in, 403, KF_REFUSAL_ENROLLMENT_DISABLED, 0, "enrollment dis-1 is disabled");

    /* A verified group, disabled by an operator; and enabled again. */
    kf_test_pki_make(&d, KF_KEY_EC_P256);
    group(f, &d, "vendor-d", NULL, 1);
    KF_OK_OR_FAIL(kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "vendor-d", 0, NULL));
    factory(&d, "dis-2", &fa2);
    in = request(KF_PROV_REGISTER, &fa2, csr2);
    expect_refused(f, &in, 403, KF_REFUSAL_ENROLLMENT_DISABLED, 0,
                   "enrollment vendor-d is disabled");
    KF_OK_OR_FAIL(kf_enroll_set_enabled(f->d, KF_TEST_ACTOR, "vendor-d", 1, NULL));
    job = provision(f, &in, "dis-2", "vendor-d", 1, 1);
    kf_prov_job_free(job);

    /* A group whose owner never proved possession of the CA's key. */
    kf_test_pki_make(&u, KF_KEY_EC_P256);
    group(f, &u, "vendor-u", NULL, 0);
    factory(&u, "unv-1", &fa3);
    in = request(KF_PROV_REGISTER, &fa3, csr3);
    expect_refused(f, &in, 403, KF_REFUSAL_GROUP_UNVERIFIED, 0,
                   "group vendor-u has not proven possession of its CA's key yet");

    factory_free(&fa1);
    factory_free(&fa2);
    factory_free(&fa3);
    kf_test_pki_free(&d);
    kf_test_pki_free(&u);
    kf_csr_free(csr1);
    kf_csr_free(csr2);
    kf_csr_free(csr3);
}

/* ---- 4. no client certificate ---- */

static void test_no_client_certificate(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "anon-1");
    struct kf_prov_input in = request(KF_PROV_REGISTER, NULL, csr);

    expect_refused(f, &in, 401, KF_REFUSAL_CLIENT_CERTIFICATE_REQUIRED, 0,
                   "this endpoint needs a client certificate: the device's factory certificate");
    in.kind = KF_PROV_SIMPLEENROLL;
    expect_refused(f, &in, 401, KF_REFUSAL_CLIENT_CERTIFICATE_REQUIRED, 0,
                   "this endpoint needs a client certificate: the device's factory certificate");
    in = renewal(NULL, csr);
    expect_refused(f, &in, 401, KF_REFUSAL_CLIENT_CERTIFICATE_REQUIRED, 0,
                   "this endpoint needs a client certificate: the device's current certificate");
    kf_csr_free(csr);
}

/* ---- 5. the CSR ---- */

static void test_csr_rules(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *org = openssl_csr("csr-1.csr", "-newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                                                  "-subj '/O=Acme Devices/OU=line 3/CN=csr-1'");
    struct kf_csr *country = openssl_csr(
        "csr-2.csr", "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj '/C=DE/CN=csr-2'");
    struct kf_csr *serial = openssl_csr(
        "csr-3.csr",
        "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj '/CN=csr-2/serialNumber=42'");
    struct kf_csr *weak = openssl_csr("csr-4.csr", "-newkey rsa:1024 -subj /CN=csr-2");
    struct kf_csr *two_cn = openssl_csr(
        "csr-5.csr", "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj '/CN=csr-2/CN=csr-9'");
    struct kf_csr *wrong = kf_test_csr(KF_KEY_EC_P256, "csr-9");
    struct kf_device_rec dev;
    struct kf_prov_input in;
    struct kf_prov_job *job;
    struct factory fa1, fa2;

    /* First enrollment: O and OU may come, and the certificate says O=<deployment> anyway. */
    factory(&f->a, "csr-1", &fa1);
    in = request(KF_PROV_SIMPLEENROLL, &fa1, org);
    job = provision(f, &in, "csr-1", "vendor-a", 1, 1); /* its subject: CN=csr-1,O=unit */
    kf_prov_job_free(job);

    /* Nothing else beside CN; the CN is the registration id; the key is strong enough. */
    factory(&f->a, "csr-2", &fa2);
    in = request(KF_PROV_SIMPLEENROLL, &fa2, country);
    expect_refused(f, &in, 400, KF_REFUSAL_CSR_REJECTED, 1,
                   "CSR breaks rule subject_extra: its subject holds C; only CN (and O, OU, "
                   "which keyfleet replaces) is allowed");
    in.csr = serial;
    expect_refused(f, &in, 400, KF_REFUSAL_CSR_REJECTED, 1,
                   "CSR breaks rule subject_extra: its subject holds serialNumber; only CN (and "
                   "O, OU, which keyfleet replaces) is allowed");
    in.csr = two_cn;
    expect_refused(f, &in, 400, KF_REFUSAL_CSR_REJECTED, 1,
                   "CSR breaks rule subject_cn: its subject must hold exactly one CN (it holds 2)");
    in.csr = wrong;
    expect_refused(f, &in, 400, KF_REFUSAL_CSR_REJECTED, 1,
                   "CSR breaks rule subject_match: its CN \"csr-9\" is not the expected "
                   "\"csr-2\"");
    in.kind = KF_PROV_REGISTER;
    expect_refused(f, &in, 400, KF_REFUSAL_CSR_REJECTED, 1,
                   "CSR breaks rule subject_match: its CN \"csr-9\" is not the expected "
                   "\"csr-2\"");
    in.csr = weak;
    expect_refused(f, &in, 400, KF_REFUSAL_CSR_REJECTED, 1,
                   "CSR breaks rule key_size: its key is RSA 1024: RSA keys must have at least "
                   "2048 bits");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_device_get(f->d->store, "csr-2", &dev));

    factory_free(&fa1);
    factory_free(&fa2);
    kf_csr_free(org);
    kf_csr_free(country);
    kf_csr_free(serial);
    kf_csr_free(weak);
    kf_csr_free(two_cn);
    kf_csr_free(wrong);
}

/* ---- 6. disabled and revoked devices ---- */

static void test_device_disabled_revoked(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr1 = kf_test_csr(KF_KEY_EC_P256, "st-1");
    struct kf_csr *csr2 = kf_test_csr(KF_KEY_EC_P256, "st-2");
    struct kf_prov_job *job1, *job2, *job;
    struct kf_cert *cur1, *cur2; /* their operational certificates */
    struct kf_prov_input in;
    struct factory fa1, fa2;
    int count = 0;

    job1 = provision_new(f, &f->a, "st-1", "vendor-a", &fa1);
    job2 = provision_new(f, &f->a, "st-2", "vendor-a", &fa2);
    cur1 = as_received(job1->cert);
    cur2 = as_received(job2->cert);

    /* Disabled: neither its factory identity nor its operational one gets a certificate. */
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "st-1", 0, NULL));
    in = request(KF_PROV_REGISTER, &fa1, csr1);
    expect_refused(f, &in, 403, KF_REFUSAL_DEVICE_DISABLED, 1, "device st-1 is disabled");
    in = renewal(cur1, csr1);
    expect_refused(f, &in, 403, KF_REFUSAL_DEVICE_DISABLED, 1, "device st-1 is disabled");
    /* Enabled again, it does. */
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "st-1", 1, NULL));
    in = request(KF_PROV_REGISTER, &fa1, csr1);
    job = provision(f, &in, "st-1", "vendor-a", 0, 2);
    kf_prov_job_free(job);

    /* Revoked, for good: its certificates with it (the CRL says so). */
    KF_OK_OR_FAIL(kf_fleet_revoke(f->d, KF_TEST_ACTOR, "st-2", KF_CRL_KEY_COMPROMISE, &count));
    assert_int_equal(count, 1);
    in = request(KF_PROV_REGISTER, &fa2, csr2);
    expect_refused(f, &in, 403, KF_REFUSAL_DEVICE_REVOKED, 1, "device st-2 is revoked");
    in = renewal(cur2, csr2);
    expect_refused(f, &in, 403, KF_REFUSAL_CERTIFICATE_REVOKED, 0,
                   "the client certificate is revoked");

    kf_cert_free(cur1);
    kf_cert_free(cur2);
    kf_prov_job_free(job1);
    kf_prov_job_free(job2);
    factory_free(&fa1);
    factory_free(&fa2);
    kf_csr_free(csr1);
    kf_csr_free(csr2);
}

/* ---- 7. a device belongs to the enrollment that created it ---- */

static void test_enrolled_elsewhere(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "own-1");
    struct kf_prov_job *job;
    struct kf_prov_input in;
    struct factory fa, fb;
    char from[KF_ID_MAX + 1];

    job = provision_new(f, &f->a, "own-1", "vendor-a", &fa);
    kf_prov_job_free(job);

    /* vendor-b's factory identity for the same id: a takeover. */
    factory(&f->b, "own-1", &fb);
    in = request(KF_PROV_REGISTER, &fb, csr);
    expect_refused(f, &in, 409, KF_REFUSAL_ENROLLED_ELSEWHERE, 0,
                   "device own-1 belongs to enrollment vendor-a, so enrollment vendor-b may not "
                   "provision it; an operator can move it: keyfleet device move own-1 "
                   "--enrollment vendor-b");

    /* Moved by an operator, it is vendor-b's, and vendor-a's identity is the stranger now. */
    KF_OK_OR_FAIL(kf_fleet_move(f->d, KF_TEST_ACTOR, "own-1", "vendor-b", from));
    assert_string_equal(from, "vendor-a");
    job = provision(f, &in, "own-1", "vendor-b", 0, 2);
    kf_prov_job_free(job);
    in = request(KF_PROV_REGISTER, &fa, csr);
    expect_refused(f, &in, 409, KF_REFUSAL_ENROLLED_ELSEWHERE, 0,
                   "device own-1 belongs to enrollment vendor-b, so enrollment vendor-a may not "
                   "provision it; an operator can move it: keyfleet device move own-1 "
                   "--enrollment vendor-a");

    factory_free(&fa);
    factory_free(&fb);
    kf_csr_free(csr);
}

/* ---- 8. allowed networks ---- */

static void test_network(void **state)
{
    struct fixture *f = *state;
    struct kf_enroll_opts ind_nets = {"10.0.0.0/8, 2001:db8::/32", 0, NULL, NULL, NULL, 0};
    struct kf_enroll_opts group_nets = {"198.51.100.0/24", 0, NULL, NULL, NULL, 0};
    struct kf_csr *csr1 = kf_test_csr(KF_KEY_EC_P256, "net-1");
    struct kf_csr *csr2 = kf_test_csr(KF_KEY_EC_P256, "net-2");
    struct kf_test_pki n;
    struct kf_prov_input in;
    struct kf_prov_job *job;
    struct factory fa1, fa2;

    factory(&f->a, "net-1", &fa1);
    individual(f, "net-1", &fa1, 0, &ind_nets);
    in = request(KF_PROV_REGISTER, &fa1, csr1);
    in.ip = "192.0.2.7";
    expect_refused(f, &in, 403, KF_REFUSAL_NETWORK_DENIED, 1,
                   "source address 192.0.2.7 is outside the networks enrollment net-1 allows");
    in.ip = "11.0.0.1";
    expect_refused(f, &in, 403, KF_REFUSAL_NETWORK_DENIED, 1,
                   "source address 11.0.0.1 is outside the networks enrollment net-1 allows");
    in.ip = "10.20.30.40";
    job = provision(f, &in, "net-1", "net-1", 1, 1);
    kf_prov_job_free(job);
    in.ip = "2001:db8::5";
    job = provision(f, &in, "net-1", "net-1", 0, 2);
    kf_prov_job_free(job);

    kf_test_pki_make(&n, KF_KEY_EC_P256);
    group(f, &n, "vendor-n", &group_nets, 1);
    factory(&n, "net-2", &fa2);
    in = request(KF_PROV_REGISTER, &fa2, csr2);
    expect_refused(f, &in, 403, KF_REFUSAL_NETWORK_DENIED, 1,
                   "source address " IP " is outside the networks enrollment vendor-n allows");
    in.ip = "198.51.100.20";
    job = provision(f, &in, "net-2", "vendor-n", 1, 1);
    kf_prov_job_free(job);

    factory_free(&fa1);
    factory_free(&fa2);
    kf_test_pki_free(&n);
    kf_csr_free(csr1);
    kf_csr_free(csr2);
}

/* ---- 9. approval manual ---- */

/* Decides `in`, which must be held for approval: a job with no certificate, nothing signed. */
static struct kf_prov_job *expect_held(struct fixture *f, const struct kf_prov_input *in,
                                       const char *id, const char *enrollment,
                                       const struct factory *fa)
{
    struct kf_prov_job *job = NULL;
    struct kf_prov_refusal ref;
    char fp[KF_FINGERPRINT_HEX];
    uint64_t signed_before = kf_signer_count(f->signer);

    KF_OK_OR_FAIL(decide(f, in, &job, &ref));
    assert_non_null(job);
    assert_int_equal(job->pending, 1);
    assert_null(job->cert);
    assert_string_equal(job->device_id, id);
    assert_string_equal(job->enrollment, enrollment);
    KF_OK_OR_FAIL(kf_key_fingerprint(fa->key, fp));
    assert_string_equal(job->fingerprint, fp);
    assert_true(job->req.cb == kf_prov_write_cb);
    assert_int_equal(kf_signer_count(f->signer), signed_before);
    return job;
}

static void test_approval(void **state)
{
    struct fixture *f = *state;
    struct kf_enroll_opts manual = {NULL, 0, NULL, NULL, "manual", 0};
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "held-1");
    struct kf_csr *csr2 = kf_test_csr(KF_KEY_EC_P256, "held-2");
    struct kf_test_pki m;
    struct kf_prov_input in;
    struct kf_prov_job *job;
    struct kf_approval_rec a;
    struct kf_device_rec dev;
    struct kf_test_state before;
    struct events ev;
    struct factory fa, intruder, fb;
    char detail[512];
    int64_t audit0;
    int changed = 0;

    kf_test_pki_make(&m, KF_KEY_EC_P256);
    group(f, &m, "vendor-m", &manual, 1);
    factory(&m, "held-1", &fa);
    in = request(KF_PROV_REGISTER, &fa, csr);

    /* Held: the callback records the request (audited, with an event), nothing else. */
    job = expect_held(f, &in, "held-1", "vendor-m", &fa);
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_store_write(f->d->store, job->req.cb, job->req.arg));
    assert_int_equal(job->refused, 0);
    KF_OK_OR_FAIL(approval_get(f, "held-1", &a));
    assert_int_equal(a.state, KF_APPROVAL_PENDING);
    assert_string_equal(a.enrollment, "vendor-m");
    assert_string_equal(a.fingerprint, job->fingerprint);
    assert_string_equal(a.source_ip, IP);
    assert_int_equal(a.requests, 1);
    assert_int_equal(a.decided, 0);
    snprintf(detail, sizeof(detail),
             "{\"device\":\"held-1\",\"enrollment\":\"vendor-m\",\"ip\":\"" IP
             "\",\"key_fingerprint\":\"%s\"}",
             job->fingerprint);
    expect_one_audit(f, audit0, "approval.request", "device:held-1", detail);
    events_of(f, "provisioning.pending", "held-1", &ev);
    assert_int_equal(ev.n, 1);
    assert_string_equal(ev.last.detail, detail);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_device_get(f->d->store, "held-1", &dev));
    assert_int_equal(kf_test_cert_count(f->d->store, "held-1", 0), 0);
    kf_prov_job_free(job);

    /* Asking again, from elsewhere: still held, counted, not audited again. */
    in.ip = "192.0.2.99";
    job = expect_held(f, &in, "held-1", "vendor-m", &fa);
    kf_test_state_take(f->d->store, &before);
    KF_OK_OR_FAIL(kf_store_write(f->d->store, job->req.cb, job->req.arg));
    kf_test_state_expect(f->d->store, &before, "asking again");
    kf_test_state_free(&before);
    KF_OK_OR_FAIL(approval_get(f, "held-1", &a));
    assert_int_equal(a.state, KF_APPROVAL_PENDING);
    assert_int_equal(a.requests, 2);
    assert_string_equal(a.source_ip, "192.0.2.99");
    kf_prov_job_free(job);

    /* Another factory key for the id waiting: nobody slips in behind the request. */
    factory(&m, "held-1", &intruder);
    in = request(KF_PROV_REGISTER, &intruder, csr);
    expect_refused(f, &in, 409, KF_REFUSAL_APPROVAL_CONFLICT, 1,
                   "device held-1 waits for approval (or was decided) with another factory key; "
                   "an operator rejects that one first: keyfleet enrollment reject held-1");

    /* Approved: the key that asked gets its certificate, and the device is created. */
    KF_OK_OR_FAIL(kf_enroll_decide(f->d, KF_TEST_ACTOR, "held-1", 1, &a, &changed));
    assert_int_equal(changed, 1);
    assert_int_equal(a.state, KF_APPROVAL_APPROVED);
    in = request(KF_PROV_REGISTER, &fa, csr);
    job = provision(f, &in, "held-1", "vendor-m", 1, 1);
    kf_prov_job_free(job);

    /* Rejected: refused from then on. */
    factory(&m, "held-2", &fb);
    in = request(KF_PROV_REGISTER, &fb, csr2);
    job = expect_held(f, &in, "held-2", "vendor-m", &fb);
    KF_OK_OR_FAIL(kf_store_write(f->d->store, job->req.cb, job->req.arg));
    kf_prov_job_free(job);
    KF_OK_OR_FAIL(kf_enroll_decide(f->d, KF_TEST_ACTOR, "held-2", 0, NULL, &changed));
    assert_int_equal(changed, 1);
    expect_refused(f, &in, 403, KF_REFUSAL_APPROVAL_REJECTED, 1,
                   "device held-2 was rejected by " KF_TEST_ACTOR
                   "; enrollment vendor-m will not provision it");

    factory_free(&fa);
    factory_free(&fb);
    factory_free(&intruder);
    kf_test_pki_free(&m);
    kf_csr_free(csr);
    kf_csr_free(csr2);
}

/* ---- 10. re-enrollment ---- */

static void test_reenroll(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "re-1");
    struct kf_csr *other = kf_test_csr(KF_KEY_EC_P256, "re-9");
    struct kf_csr *same_subject = openssl_csr(
        "re-1-same.csr", "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj '/O=unit/CN=re-1'");
    struct kf_csr *ou = openssl_csr(
        "re-1-ou.csr", "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj '/OU=line 3/CN=re-1'");
    struct kf_prov_job *first, *second, *third;
    struct kf_cert *cur1, *cur2; /* the operational certificates, as the device has them */
    struct kf_device_rec before, after;
    struct kf_cert_rec old;
    struct kf_prov_input in;
    struct factory fa;
    char serial[KF_SERIAL_HEX_MAX];

    first = provision_new(f, &f->a, "re-1", "vendor-a", &fa);
    cur1 = as_received(first->cert);
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "re-1", &before));

    /* With its current certificate and a new key: a new certificate, the same device. */
    in = renewal(cur1, csr);
    second = expect_job(f, &in, "re-1", "vendor-a");
    kf_cert_serial_hex(first->cert, serial);
    assert_string_equal(second->old_serial, serial);
    expect_written(f, second, 0, 2);
    assert_string_not_equal(second->rec.serial, first->rec.serial);
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "re-1", &after));
    assert_int_equal(after.created, before.created);
    /* The one renewed stays valid until it expires (or is revoked). */
    KF_OK_OR_FAIL(kf_test_cert_get(f->d->store, first->rec.serial, &old));
    assert_int_equal(old.status, KF_CERT_VALID);
    kf_cert_rec_clear(&old);
    assert_int_equal(kf_test_cert_count(f->d->store, "re-1", KF_CERT_VALID), 2);
    cur2 = as_received(second->cert);

    /* The subject of the certificate being renewed, exactly, is fine too (RFC 7030 4.2.2). */
    in = renewal(cur2, same_subject);
    third = provision(f, &in, "re-1", "vendor-a", 0, 3);
    kf_prov_job_free(third);

    /* Another id, or another subject, is not. */
    in = renewal(cur2, other);
    expect_refused(f, &in, 409, KF_REFUSAL_SUBJECT_MISMATCH, 1,
                   "the CSR asks for \"re-9\", but this certificate belongs to device re-1: "
                   "re-enrollment keeps the subject");
    in = renewal(cur2, ou);
    expect_refused(f, &in, 400, KF_REFUSAL_CSR_REJECTED, 1,
                   "CSR breaks rule subject_extra: its subject holds OU but is not the subject "
                   "of the certificate being renewed; re-enrollment repeats that subject exactly "
                   "(RFC 7030 4.2.2) or sends CN alone");

    /* A factory certificate is not a certificate of this keyfleet. */
    in = renewal(fa.cert, csr);
    in.chain = fa.chain;
    in.n_chain = 1;
    {
        struct kf_prov_job *job = (struct kf_prov_job *)1;
        struct kf_prov_refusal ref;
        KF_EXPECT_ERR(KF_E_DENIED, decide(f, &in, &job, &ref));
        assert_null(job);
        assert_int_equal(ref.status, 401);
        assert_int_equal(ref.reason, KF_REFUSAL_CERTIFICATE_INVALID);
        assert_int_equal(ref.verified, 0);
        if (strncmp(ref.message,
                    "re-enrollment needs a current certificate from this keyfleet: ", 62) != 0)
            fail_msg("refused with \"%s\"", ref.message);
    }

    kf_cert_free(cur1);
    kf_cert_free(cur2);
    kf_prov_job_free(first);
    kf_prov_job_free(second);
    factory_free(&fa);
    kf_csr_free(csr);
    kf_csr_free(other);
    kf_csr_free(same_subject);
    kf_csr_free(ou);
}

/* ---- 11. the store callback checks again ---- */

/* Runs `job`'s callback, which must refuse it and leave the store as it was. */
static void expect_write_refused(struct fixture *f, struct kf_prov_job *job, int status,
                                 enum kf_refusal reason, int verified, const char *message)
{
    struct kf_test_state before;
    struct kf_registration_rec r0, r1;
    struct kf_cert_rec rec;
    struct events ev0, ev1;
    int have_reg = registration_get(f, job->device_id, &r0) == KF_OK;

    events_of(f, NULL, job->device_id, &ev0);
    kf_test_state_take(f->d->store, &before);
    KF_EXPECT_ERR(KF_E_DENIED, kf_store_write(f->d->store, job->req.cb, job->req.arg));
    KF_EXPECT_MSG(message);
    assert_int_equal(job->refused, 1);
    assert_int_equal(job->new_device, 0);
    expect_refusal(&job->refusal, status, reason, verified, message);
    kf_test_state_expect(f->d->store, &before, message);
    kf_test_state_free(&before);
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_test_cert_get(f->d->store, job->rec.serial, &rec));
    if (have_reg) {
        KF_OK_OR_FAIL(registration_get(f, job->device_id, &r1));
        assert_string_equal(r1.cert_serial, r0.cert_serial);
        assert_int_equal(r1.count, r0.count);
    }
    events_of(f, NULL, job->device_id, &ev1);
    assert_int_equal(ev1.n, ev0.n);
}

static void test_write_rechecks_device(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "race-1");
    struct kf_prov_job *first, *job;
    struct kf_prov_input in;
    struct kf_cert *cur;
    struct factory fa;

    first = provision_new(f, &f->a, "race-1", "vendor-a", &fa);
    cur = as_received(first->cert);
    in = request(KF_PROV_REGISTER, &fa, csr);
    job = expect_job(f, &in, "race-1", "vendor-a");
    /* An operator disables it while the job waits for the store. */
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "race-1", 0, NULL));
    expect_write_refused(f, job, 403, KF_REFUSAL_DEVICE_DISABLED, 1, "device race-1 is disabled");
    kf_prov_job_free(job);

    /* The same for a renewal, and a revocation behind it (as another keyfleetd would). */
    KF_OK_OR_FAIL(kf_fleet_set_enabled(f->d, KF_TEST_ACTOR, "race-1", 1, NULL));
    in = renewal(cur, csr);
    job = expect_job(f, &in, "race-1", "vendor-a");
    kf_test_device_set_status(f->d->store, "race-1", KF_DEVICE_REVOKED);
    expect_write_refused(f, job, 403, KF_REFUSAL_DEVICE_REVOKED, 1, "device race-1 is revoked");
    kf_prov_job_free(job);

    kf_cert_free(cur);
    kf_prov_job_free(first);
    factory_free(&fa);
    kf_csr_free(csr);
}

static void test_write_rechecks_certificate(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "race-2");
    struct kf_prov_job *first, *job;
    struct kf_prov_input in;
    struct kf_cert *cur;
    struct factory fa;
    char msg[128];

    first = provision_new(f, &f->a, "race-2", "vendor-a", &fa);
    cur = as_received(first->cert);
    in = renewal(cur, csr);
    job = expect_job(f, &in, "race-2", "vendor-a");
    /* The certificate presented is revoked while the renewal waits for the store. */
    KF_OK_OR_FAIL(kf_ca_revoke(f->d, KF_TEST_ACTOR, first->rec.serial, KF_CRL_KEY_COMPROMISE));
    snprintf(msg, sizeof(msg), "certificate %s is revoked", first->rec.serial);
    expect_write_refused(f, job, 403, KF_REFUSAL_CERTIFICATE_REVOKED, 0, msg);
    kf_prov_job_free(job);

    kf_cert_free(cur);
    kf_prov_job_free(first);
    factory_free(&fa);
    kf_csr_free(csr);
}

static void test_write_rechecks_owner(void **state)
{
    struct fixture *f = *state;
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, "race-3");
    struct kf_prov_job *job, *winner;
    struct kf_prov_input in;
    struct factory fa, fb;

    /* vendor-b's device race-3 is decided first, then vendor-a's identity creates it. */
    factory(&f->b, "race-3", &fb);
    in = request(KF_PROV_REGISTER, &fb, csr);
    job = expect_job(f, &in, "race-3", "vendor-b");
    winner = provision_new(f, &f->a, "race-3", "vendor-a", &fa);
    expect_write_refused(f, job, 409, KF_REFUSAL_ENROLLED_ELSEWHERE, 0,
                         "device race-3 belongs to enrollment vendor-a, so enrollment vendor-b "
                         "may not provision it; an operator can move it: keyfleet device move "
                         "race-3 --enrollment vendor-b");
    kf_prov_job_free(job);

    kf_prov_job_free(winner);
    factory_free(&fa);
    factory_free(&fb);
    kf_csr_free(csr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group),
        cmocka_unit_test(test_group_refusals),
        cmocka_unit_test(test_individual_by_cert),
        cmocka_unit_test(test_individual_by_key),
        cmocka_unit_test(test_disabled_and_unverified),
        cmocka_unit_test(test_no_client_certificate),
        cmocka_unit_test(test_csr_rules),
        cmocka_unit_test(test_device_disabled_revoked),
        cmocka_unit_test(test_enrolled_elsewhere),
        cmocka_unit_test(test_network),
        cmocka_unit_test(test_approval),
        cmocka_unit_test(test_reenroll),
        cmocka_unit_test(test_write_rechecks_device),
        cmocka_unit_test(test_write_rechecks_certificate),
        cmocka_unit_test(test_write_rechecks_owner),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
