#include "testutil.h"
#include "testdeploy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/pki_crl.h"
#include "server/ca/deploy_init.h"

struct kf_deploy *kf_test_deploy_make(const char *name)
{
    static const char *const names[] = {"localhost", "127.0.0.1"};
    struct kf_init_opts o;
    struct kf_init_report rep;
    struct kf_deploy *d = NULL;

    memset(&o, 0, sizeof(o));
    o.dir = kf_test_path(name);
    o.names = names;
    o.n_names = 2;
    o.name = "unit";
    o.actor = KF_TEST_ACTOR;
    KF_OK_OR_FAIL(kf_deploy_init(&o, &rep));
    KF_OK_OR_FAIL(kf_deploy_open(o.dir, &d));
    return d;
}

static struct kf_txn *read_txn(struct kf_store *s)
{
    struct kf_txn *t = NULL;
    KF_OK_OR_FAIL(kf_store_read(s, &t));
    return t;
}

/* ---- the store as text ---- */

static enum kf_err device_text_cb(const struct kf_device_rec *d, void *arg)
{
    return kf_buf_appendf(
        arg, "device %s status=%d enrollment=%s hub=%s created=%" PRId64 " updated=%" PRId64 "\n",
        d->id, (int)d->status, d->enrollment, d->hub, d->created, d->updated);
}

static enum kf_err cert_text_cb(const struct kf_cert_rec *r, void *arg)
{
    return kf_buf_appendf(
        arg, "cert %s device=%s profile=%s status=%d revoked_at=%" PRId64 " reason=%d fp=%s\n",
        r->serial, r->device_id, r->profile, (int)r->status, r->revoked_at, r->reason,
        r->fingerprint);
}

static enum kf_err enrollment_text_cb(const struct kf_enrollment_rec *e, void *arg)
{
    return kf_buf_appendf(arg,
                          "enrollment %s kind=%d enabled=%d verified=%d fp=%s subject=%s "
                          "code=%s expires=%" PRId64 " allocation=%s hub=%s networks=%s "
                          "settings=%s created=%" PRId64 " updated=%" PRId64 "\n%s%s",
                          e->id, (int)e->kind, e->enabled, e->verified, e->key_fingerprint,
                          e->subject ? e->subject : "-", e->verification_code, e->code_expires,
                          e->allocation, e->hub, e->networks ? e->networks : "-",
                          e->settings ? e->settings : "-", e->created, e->updated,
                          e->cert_pem ? e->cert_pem : "", e->pubkey_pem ? e->pubkey_pem : "");
}

void kf_test_state_take(struct kf_store *s, struct kf_test_state *out)
{
    struct kf_txn *t = read_txn(s);
    struct kf_audit_verdict v;
    struct kf_buf b;
    static const char *const cas[] = {"root", "issuing"};

    memset(out, 0, sizeof(*out));
    kf_buf_init(&b, 64 * 1024 * 1024);
    KF_OK_OR_FAIL(kf_txn_device_list(t, 0, NULL, device_text_cb, &b));
    KF_OK_OR_FAIL(kf_txn_cert_list(t, NULL, 0, KF_LIST_ALL, cert_text_cb, &b));
    KF_OK_OR_FAIL(kf_txn_enrollment_list(t, 0, enrollment_text_cb, &b));
    for (size_t i = 0; i < KF_ARRAY_LEN(cas); i++) {
        struct kf_ca_rec ca;
        KF_OK_OR_FAIL(kf_txn_ca_get(t, cas[i], &ca));
        KF_OK_OR_FAIL(kf_buf_appendf(&b, "ca %s serial=%s crl_number=%" PRId64 " key=%s\n", ca.name,
                                     ca.serial, ca.crl_number, ca.key_uri ? ca.key_uri : "-"));
        kf_ca_rec_clear(&ca);
    }
    KF_OK_OR_FAIL(kf_txn_audit_verify(t, NULL, &v));
    kf_txn_end(t);
    out->audit_records = v.records;
    snprintf(out->audit_head, sizeof(out->audit_head), "%s", v.head);
    out->text = strdup(kf_buf_str(&b));
    kf_buf_free(&b);
}

void kf_test_state_expect(struct kf_store *s, const struct kf_test_state *before, const char *what)
{
    struct kf_test_state now;
    kf_test_state_take(s, &now);
    if (now.audit_records != before->audit_records ||
        strcmp(now.audit_head, before->audit_head) != 0)
        fail_msg(
            "%s: the audit log changed (%" PRId64 " records, head %s; before: %" PRId64 ", %s)",
            what, now.audit_records, now.audit_head, before->audit_records, before->audit_head);
    if (strcmp(now.text, before->text) != 0)
        fail_msg("%s: the store changed.\nbefore:\n%s\nafter:\n%s", what, before->text, now.text);
    kf_test_state_free(&now);
}

void kf_test_state_free(struct kf_test_state *st)
{
    free(st->text);
    st->text = NULL;
}

/* ---- the audit log ---- */

struct audit_collect {
    struct kf_test_audit *a;
    int64_t after;
};

static enum kf_err audit_cb(const struct kf_audit_rec *r, void *arg)
{
    struct audit_collect *c = arg;
    struct kf_test_audit *a = c->a;
    if (r->seq <= c->after) return KF_OK;
    if (a->n >= (int)KF_ARRAY_LEN(a->r)) return kf_fail(KF_E_OVERSIZE, "test audit list full");
    a->r[a->n] = *r;
    a->r[a->n].detail = strdup(r->detail ? r->detail : "");
    a->n++;
    return KF_OK;
}

void kf_test_audit_after(struct kf_store *s, int64_t after, struct kf_test_audit *out)
{
    struct kf_txn *t = read_txn(s);
    struct audit_collect c = {out, after};
    memset(out, 0, sizeof(*out));
    KF_OK_OR_FAIL(kf_txn_audit_list(t, 0, audit_cb, &c));
    kf_txn_end(t);
}

void kf_test_audit_free(struct kf_test_audit *a)
{
    for (int i = 0; i < a->n; i++)
        kf_audit_rec_clear(&a->r[i]);
    a->n = 0;
}

int64_t kf_test_audit_count(struct kf_store *s)
{
    struct kf_txn *t = read_txn(s);
    struct kf_audit_verdict v;
    KF_OK_OR_FAIL(kf_txn_audit_verify(t, NULL, &v));
    kf_txn_end(t);
    return v.records;
}

void kf_test_audit_expect(const struct kf_audit_rec *r, const char *action, const char *object,
                          const char *detail)
{
    if (strcmp(r->actor, KF_TEST_ACTOR) != 0 || strcmp(r->action, action) != 0 ||
        strcmp(r->object, object) != 0 || (detail && strcmp(r->detail, detail) != 0))
        fail_msg("audit record %" PRId64 " is %s %s %s %s; expected %s %s %s %s", r->seq, r->actor,
                 r->action, r->object, r->detail, KF_TEST_ACTOR, action, object,
                 detail ? detail : "(any detail)");
}

/* ---- records ---- */

enum kf_err kf_test_device_get(struct kf_store *s, const char *id, struct kf_device_rec *out)
{
    struct kf_txn *t = read_txn(s);
    enum kf_err rc = kf_txn_device_get(t, id, out);
    kf_txn_end(t);
    return rc;
}

enum kf_err kf_test_cert_get(struct kf_store *s, const char *serial, struct kf_cert_rec *out)
{
    struct kf_txn *t = read_txn(s);
    enum kf_err rc = kf_txn_cert_get(t, serial, out);
    kf_txn_end(t);
    return rc;
}

enum kf_err kf_test_enrollment_get(struct kf_store *s, const char *id,
                                   struct kf_enrollment_rec *out)
{
    struct kf_txn *t = read_txn(s);
    enum kf_err rc = kf_txn_enrollment_get(t, id, out);
    kf_txn_end(t);
    return rc;
}

void kf_test_ca_get(struct kf_store *s, const char *name, struct kf_ca_rec *out)
{
    struct kf_txn *t = read_txn(s);
    KF_OK_OR_FAIL(kf_txn_ca_get(t, name, out));
    kf_txn_end(t);
}

static enum kf_err count_cb(const struct kf_cert_rec *r, void *arg)
{
    (*(int64_t *)arg)++;
    return KF_OK;
}

int64_t kf_test_cert_count(struct kf_store *s, const char *device_id, int status)
{
    struct kf_txn *t = read_txn(s);
    int64_t n = 0;
    KF_OK_OR_FAIL(kf_txn_cert_list(t, device_id, status, KF_LIST_ALL, count_cb, &n));
    kf_txn_end(t);
    return n;
}

struct status_arg {
    const char *id;
    enum kf_device_status st;
};

static enum kf_err set_status_cb(struct kf_txn *t, void *arg)
{
    struct status_arg *a = arg;
    struct kf_device_rec d;
    enum kf_err rc = kf_txn_device_get(t, a->id, &d);
    if (rc) return rc;
    d.status = a->st;
    return kf_txn_device_update(t, &d);
}

void kf_test_device_set_status(struct kf_store *s, const char *id, enum kf_device_status st)
{
    struct status_arg a = {id, st};
    KF_OK_OR_FAIL(kf_store_write(s, set_status_cb, &a));
}

/* ---- devices' requests ---- */

struct kf_csr *kf_test_csr(enum kf_key_type type, const char *cn)
{
    struct kf_key *k = NULL;
    struct kf_csr *csr = NULL;
    struct kf_buf pem;
    kf_buf_init(&pem, KF_CSR_MAX);
    KF_OK_OR_FAIL(kf_key_generate(type, &k));
    KF_OK_OR_FAIL(kf_csr_create(k, cn, &pem));
    KF_OK_OR_FAIL(kf_csr_parse(pem.data, pem.len, &csr));
    kf_buf_free(&pem);
    kf_key_free(k);
    return csr;
}

struct kf_crl *kf_test_crl_load(const char *path)
{
    struct kf_buf b;
    struct kf_crl *crl = NULL;
    kf_buf_init(&b, 64 * 1024 * 1024);
    KF_OK_OR_FAIL(kf_buf_read_file(&b, path));
    KF_OK_OR_FAIL(kf_crl_parse(b.data, b.len, &crl));
    kf_buf_free(&b);
    return crl;
}
