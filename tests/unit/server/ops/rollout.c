/*
 * rollout: what an operator types (phases, percentages, durations), and keyfleetd's engine on a
 * real store: phases offered after their soak and the devices told once, the devices' reports
 * moving their rows (only forward, only their own, only for the rollout's version, only after
 * it was made), pausing over the threshold in a phase or among all offered, resume accepting
 * what failed, completion, what a device is offered, and no write when nothing changed.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/ca/ca.h"
#include "server/ops/rollout.h"

#define N_DEV 10
#define T0    1800000000

struct fixture {
    struct kf_deploy *d;
    struct kf_rollout_engine *e;
    char told[64][KF_ID_MAX + 1];
    int n_told;
};

static int setup(void **state)
{
    static int n;
    struct fixture *f = calloc(1, sizeof(*f));
    char name[32];
    snprintf(name, sizeof(name), "rollout-%d", n++); /* a deployment of its own each */
    f->d = kf_test_deploy_make(name);
    for (int i = 0; i < N_DEV; i++) {
        char id[16];
        struct kf_csr *csr;
        struct kf_cert *c = NULL;
        snprintf(id, sizeof(id), "dev-%d", i);
        csr = kf_test_csr(KF_KEY_EC_P256, id);
        KF_OK_OR_FAIL(kf_ca_issue_device(f->d, KF_TEST_ACTOR, id, NULL, csr, 0, &c));
        kf_cert_free(c);
        kf_csr_free(csr);
    }
    KF_OK_OR_FAIL(kf_rollout_engine_new(&f->e));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_rollout_engine_free(f->e);
    kf_deploy_close(f->d);
    free(f);
    return 0;
}

/* ---- helpers ---- */

struct make {
    const char *doc;
    int64_t released, id;
    const char *hardware;
};

/* A rollout of gw/fw-2.bin (version 20000) to dev-0 .. dev-9 in that order, made at T0. */
static enum kf_err make_cb(struct kf_txn *txn, void *arg)
{
    struct make *m = arg;
    struct kf_rollout_rec r;
    enum kf_err rc;
    memset(&r, 0, sizeof(r));
    snprintf(r.state, sizeof(r.state), "running");
    snprintf(r.target, sizeof(r.target), "gw/fw-2.bin");
    snprintf(r.hardware, sizeof(r.hardware), "%s", m->hardware ? m->hardware : "gw-a");
    r.version = 20000;
    r.released = m->released;
    r.doc = (char *)m->doc;
    r.created = r.updated = T0;
    rc = kf_txn_rollout_insert(txn, &r, &m->id);
    for (int i = 0; i < N_DEV && !rc; i++) {
        struct kf_rollout_device_rec d;
        memset(&d, 0, sizeof(d));
        d.rollout = m->id;
        snprintf(d.device, sizeof(d.device), "dev-%d", i);
        d.ord = i;
        snprintf(d.state, sizeof(d.state), "pending");
        d.updated = T0;
        rc = kf_txn_rollout_device_put(txn, &d);
    }
    return rc;
}

static int64_t make_for(struct fixture *f, const char *hardware, const char *phases_json, int soak,
                        int max_bp, int64_t released)
{
    char doc[512];
    struct make m = {doc, released, 0, hardware};
    snprintf(doc, sizeof(doc),
             "{\"phases\":%s,\"soak\":%d,\"max_failures_bp\":%d,\"devices\":%d,\"phase\":0,"
             "\"phase_started\":%d,\"accepted\":0,\"selector\":{\"all\":true},\"by\":\"t\"}",
             phases_json, soak, max_bp, N_DEV, T0);
    KF_OK_OR_FAIL(kf_store_write(f->d->store, make_cb, &m));
    return m.id;
}

static int64_t make(struct fixture *f, const char *phases_json, int soak, int max_bp,
                    int64_t released)
{
    return make_for(f, NULL, phases_json, soak, max_bp, released);
}

struct ev {
    const char *device, *type, *source;
    int64_t version, time_ms;
    const char *name; /* the release the report names (NULL: none) */
};

static enum kf_err ev_cb(struct kf_txn *txn, void *arg)
{
    const struct ev *v = arg;
    struct kf_event_rec e;
    char detail[128];
    memset(&e, 0, sizeof(e));
    e.time_ms = v->time_ms ? v->time_ms : (int64_t)T0 * 1000 + 500;
    snprintf(e.type, sizeof(e.type), "%s", v->type);
    snprintf(e.severity, sizeof(e.severity), "info");
    snprintf(e.device, sizeof(e.device), "%s", v->device);
    snprintf(e.source, sizeof(e.source), "%s", v->source ? v->source : "device");
    snprintf(detail, sizeof(detail), "{\"%s\":%" PRId64 ",\"reason\":\"hash\"%s%s%s}",
             strcmp(v->type, "update.rollback_refused") == 0 ? "offered" : "version", v->version,
             v->name ? ",\"name\":\"" : "", v->name ? v->name : "", v->name ? "\"" : "");
    e.detail = detail;
    return kf_txn_event_insert(txn, &e, NULL);
}

/* A report `type` by `device` about `version`. */
static void report(struct fixture *f, const char *device, const char *type, int64_t version)
{
    struct ev v = {device, type, NULL, version, 0, NULL};
    KF_OK_OR_FAIL(kf_store_write(f->d->store, ev_cb, &v));
}

static void notify_cb(void *arg, const char *device, const char *payload)
{
    struct fixture *f = arg;
    assert_non_null(strstr(payload, "\"target\":\"gw/fw-2.bin\""));
    if (f->n_told < 64) snprintf(f->told[f->n_told++], KF_ID_MAX + 1, "%s", device);
}

static json_t *show(struct fixture *f, int64_t id)
{
    json_t *j = NULL;
    KF_OK_OR_FAIL(kf_rollout_show(f->d->store, id, &j));
    return j;
}

static const char *state_of(json_t *j)
{
    return json_string_value(json_object_get(j, "state"));
}

static int64_t count(json_t *j, const char *state)
{
    return json_integer_value(json_object_get(json_object_get(j, "counts"), state));
}

static const char *offered(struct fixture *f, const char *device, const char *hardware)
{
    static char target[64];
    json_t *j = NULL;
    KF_OK_OR_FAIL(kf_rollout_assigned(f->d->store, device, hardware, &j));
    snprintf(target, sizeof(target), "%s",
             json_is_string(json_object_get(j, "target"))
                 ? json_string_value(json_object_get(j, "target"))
                 : "null");
    json_decref(j);
    return target;
}

/* ---- parsing ---- */

static void test_parse(void **state)
{
    struct kf_rollout_spec s;
    int64_t secs;
    int bp;
    (void)state;
    memset(&s, 0, sizeof(s));
    KF_OK_OR_FAIL(kf_rollout_parse_phases("1,10,50,100", &s));
    assert_int_equal(s.n_phases, 4);
    assert_int_equal(s.phases[1], 10);
    KF_OK_OR_FAIL(kf_rollout_parse_phases("100", &s));
    assert_int_equal(s.n_phases, 1);
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_phases("10,50", &s));
    KF_EXPECT_MSG("the last phase is 100");
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_phases("10,10,100", &s));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_phases("0,100", &s));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_phases("10,,100", &s));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_phases("10,100,", &s));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_phases("10,x", &s));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_phases("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,"
                                                        "17,18,19,20,100",
                                                        &s));
    KF_EXPECT_MSG("at most 20 phases");

    KF_OK_OR_FAIL(kf_rollout_parse_percent("2%", &bp));
    assert_int_equal(bp, 200);
    KF_OK_OR_FAIL(kf_rollout_parse_percent("0.5%", &bp));
    assert_int_equal(bp, 50);
    KF_OK_OR_FAIL(kf_rollout_parse_percent("100", &bp));
    assert_int_equal(bp, 10000);
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_percent("101%", &bp));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_percent("-1%", &bp));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_percent("2%%", &bp));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_percent("nan", &bp));

    KF_OK_OR_FAIL(kf_rollout_parse_duration("10m", &secs));
    assert_int_equal(secs, 600);
    KF_OK_OR_FAIL(kf_rollout_parse_duration("0", &secs));
    assert_int_equal(secs, 0);
    KF_OK_OR_FAIL(kf_rollout_parse_duration("1d", &secs));
    assert_int_equal(secs, 86400);
    KF_OK_OR_FAIL(kf_rollout_parse_duration("45s", &secs));
    assert_int_equal(secs, 45);
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_duration("31d", &secs));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_duration("10x", &secs));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_duration("-5s", &secs));
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_parse_duration("99999999999999999999", &secs));
}

/* ---- the engine ---- */

static void test_phases_advance_and_tell_once(void **state)
{
    struct fixture *f = *state;
    int64_t id = make(f, "[10,50,100]", 60, 2000, 1), audits;
    json_t *j;

    /* the first step after a start tells nobody: devices ask when they connect */
    kf_rollout_tick(f->e, f->d, T0 + 1, notify_cb, f);
    assert_int_equal(f->n_told, 0);
    assert_string_equal(offered(f, "dev-0", "gw-a"), "gw/fw-2.bin");
    assert_string_equal(offered(f, "dev-1", "gw-a"), "null");
    assert_string_equal(offered(f, "dev-0", "gw-b"), "null"); /* another hardware's */
    assert_string_equal(offered(f, "dev-0", NULL), "gw/fw-2.bin");

    /* before the soak is over: nothing changes, nothing is written */
    audits = kf_test_audit_count(f->d->store);
    kf_rollout_tick(f->e, f->d, T0 + 59, notify_cb, f);
    assert_int_equal(kf_test_audit_count(f->d->store), audits);

    /* the soak is over: phase 2 (50% of 10) is offered and its 4 new devices told, once */
    kf_rollout_tick(f->e, f->d, T0 + 60, notify_cb, f);
    assert_int_equal(kf_test_audit_count(f->d->store), audits + 1);
    assert_int_equal(f->n_told, 4);
    assert_string_equal(f->told[0], "dev-1");
    assert_string_equal(f->told[3], "dev-4");
    assert_string_equal(offered(f, "dev-4", "gw-a"), "gw/fw-2.bin");
    assert_string_equal(offered(f, "dev-5", "gw-a"), "null");
    kf_rollout_tick(f->e, f->d, T0 + 61, notify_cb, f);
    assert_int_equal(f->n_told, 4);

    j = show(f, id);
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "offered")), 5);
    json_decref(j);

    /* phase 3, then completed: still offered to every device */
    kf_rollout_tick(f->e, f->d, T0 + 120, notify_cb, f);
    assert_int_equal(f->n_told, 9);
    kf_rollout_tick(f->e, f->d, T0 + 180, notify_cb, f);
    j = show(f, id);
    assert_string_equal(state_of(j), "completed");
    json_decref(j);
    assert_string_equal(offered(f, "dev-9", "gw-a"), "gw/fw-2.bin");
    kf_rollout_tick(f->e, f->d, T0 + 240, notify_cb, f);
    assert_int_equal(f->n_told, 9);
}

static void test_reports(void **state)
{
    struct fixture *f = *state;
    int64_t id = make(f, "[100]", 3600, 10000, N_DEV);
    json_t *j;

    report(f, "dev-0", "update.downloading", 20000);
    report(f, "dev-0", "update.installed", 20000);
    report(f, "dev-0", "update.downloading", 20000); /* late: never backwards */
    report(f, "dev-1", "update.confirmed", 20000);
    report(f, "dev-1", "update.failed", 20000); /* confirmed is final */
    report(f, "dev-2", "update.failed", 20000);
    report(f, "dev-2", "update.installed", 20000); /* retried and installed: counted so */
    report(f, "dev-3", "update.failed", 19999);    /* another version: not this rollout's */
    report(f, "dev-4", "update.rollback_refused", 20000);
    report(f, "dev-5", "update.reverted", 20000);
    report(f, "dev-6", "device.login_failed", 20000); /* not a report */
    report(f, "dev-9", "update.current", 20000);      /* runs it already: done */
    {
        struct ev old = {"dev-7", "update.failed", NULL, 20000, (int64_t)(T0 - 10) * 1000, NULL};
        struct ev server = {"dev-8", "update.failed", "server", 20000, 0, NULL};
        KF_OK_OR_FAIL(kf_store_write(f->d->store, ev_cb, &old));    /* before it was made */
        KF_OK_OR_FAIL(kf_store_write(f->d->store, ev_cb, &server)); /* not the device's */
    }
    kf_rollout_tick(f->e, f->d, T0 + 1, NULL, NULL);
    j = show(f, id);
    assert_int_equal(count(j, "installed"), 2);
    assert_int_equal(count(j, "confirmed"), 2);
    assert_int_equal(count(j, "failed"), 0);
    assert_int_equal(count(j, "refused"), 1);
    assert_int_equal(count(j, "reverted"), 1);
    assert_int_equal(count(j, "pending"), 4);
    /* 100% allowed: it never pauses */
    assert_string_equal(state_of(j), "running");
    json_decref(j);
}

static void test_pause_resume(void **state)
{
    struct fixture *f = *state;
    int64_t id = make(f, "[20,60,100]", 10, 2500, 2), audits;
    struct kf_test_audit a;
    json_t *j;

    /* phase 1 (2 devices): one failure is 50% > 25%: paused */
    report(f, "dev-1", "update.failed", 20000);
    audits = kf_test_audit_count(f->d->store);
    kf_rollout_tick(f->e, f->d, T0 + 1, NULL, NULL);
    j = show(f, id);
    assert_string_equal(state_of(j), "paused");
    assert_non_null(strstr(json_string_value(json_object_get(j, "reason")),
                           "1 of the 2 devices of phase 1 failed"));
    json_decref(j);
    kf_test_audit_after(f->d->store, audits, &a);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.r[0].actor, "keyfleetd");
    assert_string_equal(a.r[0].action, "rollout.pause");
    kf_test_audit_free(&a);
    /* paused: offered to nobody, not advanced past its soak */
    assert_string_equal(offered(f, "dev-0", "gw-a"), "null");
    kf_rollout_tick(f->e, f->d, T0 + 100, NULL, NULL);
    j = show(f, id);
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 1);
    json_decref(j);
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_act(f->d, KF_TEST_ACTOR, id, KF_ROLLOUT_PAUSE, NULL));
    KF_EXPECT_MSG("only a running one");

    /* resumed: that failure is accepted; the phase soaks again from now */
    KF_OK_OR_FAIL(kf_rollout_act(f->d, KF_TEST_ACTOR, id, KF_ROLLOUT_RESUME, NULL));
    kf_rollout_tick(f->e, f->d, time(NULL) + 1, NULL, NULL);
    j = show(f, id);
    assert_string_equal(state_of(j), "running");
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 1);
    json_decref(j);
    kf_rollout_tick(f->e, f->d, time(NULL) + 11, NULL, NULL);
    j = show(f, id);
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "offered")), 6);
    json_decref(j);

    /* a late failure of phase 1's other device: 2 of 6 offered is over 25% counting all, though
     * phase 2 has no failure: paused */
    report(f, "dev-0", "update.reverted", 20000);
    report(f, "dev-3", "update.failed", 20000);
    kf_rollout_tick(f->e, f->d, time(NULL) + 12, NULL, NULL);
    j = show(f, id);
    assert_string_equal(state_of(j), "paused");
    json_decref(j);

    KF_OK_OR_FAIL(kf_rollout_act(f->d, KF_TEST_ACTOR, id, KF_ROLLOUT_ABORT, "bad build"));
    j = show(f, id);
    assert_string_equal(state_of(j), "aborted");
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "bad build");
    json_decref(j);
    KF_EXPECT_ERR(KF_E_INVALID, kf_rollout_act(f->d, KF_TEST_ACTOR, id, KF_ROLLOUT_RESUME, NULL));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_rollout_act(f->d, KF_TEST_ACTOR, 999, KF_ROLLOUT_PAUSE, NULL));
}

static void test_newest_decides(void **state)
{
    struct fixture *f = *state;
    int64_t first = make(f, "[100]", 0, 10000, N_DEV), second;
    kf_rollout_tick(f->e, f->d, T0 + 1, NULL, NULL);
    second = make(f, "[100]", 3600, 10000, N_DEV);
    assert_true(second > first);
    KF_OK_OR_FAIL(kf_rollout_act(f->d, KF_TEST_ACTOR, second, KF_ROLLOUT_PAUSE, NULL));
    /* the newest is paused: nothing, not the older completed one */
    assert_string_equal(offered(f, "dev-3", "gw-a"), "null");
}

/* With min_done, a phase waits for its devices to have installed it (or failed), soak or not. */
static void test_min_done(void **state)
{
    struct fixture *f = *state;
    char doc[512];
    struct make m = {doc, 1, 0, NULL};
    json_t *j;
    snprintf(doc, sizeof(doc),
             "{\"phases\":[10,100],\"soak\":0,\"max_failures_bp\":10000,\"min_done_bp\":5000,"
             "\"devices\":%d,\"phase\":0,\"phase_started\":%d,\"selector\":{\"all\":true},"
             "\"by\":\"t\"}",
             N_DEV, T0);
    KF_OK_OR_FAIL(kf_store_write(f->d->store, make_cb, &m));
    kf_rollout_tick(f->e, f->d, T0 + 5, NULL, NULL);
    j = show(f, m.id);
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 1); /* dev-0 said nothing */
    assert_string_equal(json_string_value(json_object_get(j, "min_done")), "50%");
    json_decref(j);
    report(f, "dev-0", "update.downloading", 20000);
    kf_rollout_tick(f->e, f->d, T0 + 6, NULL, NULL);
    j = show(f, m.id);
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 1); /* not done yet */
    json_decref(j);
    report(f, "dev-0", "update.installed", 20000);
    kf_rollout_tick(f->e, f->d, T0 + 7, NULL, NULL);
    j = show(f, m.id);
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 2);
    json_decref(j);
}

/* A rollout that completes in the step that first sees it still tells its devices. */
static void test_told_when_completed_at_once(void **state)
{
    struct fixture *f = *state;
    int64_t id;
    json_t *j;
    kf_rollout_tick(f->e, f->d, T0, notify_cb, f); /* keyfleetd running before it is made */
    id = make(f, "[100]", 0, 10000, N_DEV);
    kf_rollout_tick(f->e, f->d, T0 + 1, notify_cb, f);
    j = show(f, id);
    assert_string_equal(state_of(j), "completed");
    json_decref(j);
    assert_int_equal(f->n_told, N_DEV);
    kf_rollout_tick(f->e, f->d, T0 + 2, notify_cb, f);
    assert_int_equal(f->n_told, N_DEV);
}

/* A report counts only in the rollout of the release it names, and only once offered. */
static void test_reports_find_their_rollout(void **state)
{
    struct fixture *f = *state;
    int64_t a = make_for(f, "gw-a", "[10,100]", 3600, 10000, 1);
    int64_t b = make_for(f, "gw-b", "[100]", 3600, 10000, N_DEV); /* same version, newer */
    struct ev named = {"dev-0", "update.failed", NULL, 20000, 0, "gw/fw-2.bin"};
    struct ev other = {"dev-1", "update.failed", NULL, 20000, 0, "gw/fw-9.bin"};
    json_t *ja, *jb;
    (void)a;
    KF_OK_OR_FAIL(kf_store_write(f->d->store, ev_cb, &named));
    KF_OK_OR_FAIL(kf_store_write(f->d->store, ev_cb, &other)); /* no rollout of that release */
    kf_rollout_tick(f->e, f->d, T0 + 1, NULL, NULL);
    ja = show(f, a);
    jb = show(f, b);
    /* both rollouts release gw/fw-2.bin 20000: the newest that offered it to dev-0 is b */
    assert_int_equal(count(jb, "failed"), 1);
    assert_int_equal(count(ja, "failed"), 0);
    json_decref(ja);
    json_decref(jb);
}

static void test_not_offered_yet(void **state)
{
    struct fixture *f = *state;
    int64_t id = make(f, "[10,100]", 60, 2000, 1);
    json_t *j;
    /* dev-5 is in phase 2, not offered yet: its "failure" is not the rollout's */
    report(f, "dev-5", "update.failed", 20000);
    report(f, "dev-6", "update.failed", 20000);
    kf_rollout_tick(f->e, f->d, T0 + 61, NULL, NULL);
    j = show(f, id);
    assert_string_equal(state_of(j), "running");
    assert_int_equal(json_integer_value(json_object_get(j, "phase")), 2);
    assert_int_equal(count(j, "failed"), 0);
    json_decref(j);
}

/* What resume accepts are those devices: one that recovers does not hide a new failure. */
static void test_accepted_are_devices(void **state)
{
    struct fixture *f = *state;
    int64_t id = make(f, "[100]", 3600, 1000, N_DEV); /* 10%: one device of ten */
    json_t *j;
    report(f, "dev-0", "update.failed", 20000);
    report(f, "dev-1", "update.failed", 20000);
    kf_rollout_tick(f->e, f->d, T0 + 1, NULL, NULL);
    j = show(f, id);
    assert_string_equal(state_of(j), "paused");
    json_decref(j);
    KF_OK_OR_FAIL(kf_rollout_act(f->d, KF_TEST_ACTOR, id, KF_ROLLOUT_RESUME, NULL));
    j = show(f, id);
    assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 2);
    json_decref(j);
    /* both recover, one new failure: 1 of 10 is not over 10% */
    report(f, "dev-0", "update.installed", 20000);
    report(f, "dev-1", "update.installed", 20000);
    report(f, "dev-2", "update.failed", 20000);
    kf_rollout_tick(f->e, f->d, time(NULL) + 1, NULL, NULL); /* resumed now */
    j = show(f, id);
    assert_string_equal(state_of(j), "running");
    json_decref(j);
    /* a second new one is: paused again */
    report(f, "dev-3", "update.failed", 20000);
    kf_rollout_tick(f->e, f->d, time(NULL) + 2, NULL, NULL);
    j = show(f, id);
    assert_string_equal(state_of(j), "paused");
    json_decref(j);
}

/* The engine's place in the events is kept: a restarted keyfleetd reads on from there. */
static void test_cursor_kept(void **state)
{
    struct fixture *f = *state;
    struct kf_rollout_engine *again = NULL;
    struct kf_txn *txn = NULL;
    int64_t id = make(f, "[100]", 3600, 10000, N_DEV), cursor = 0;
    json_t *j;
    report(f, "dev-0", "update.failed", 20000);
    kf_rollout_tick(f->e, f->d, T0 + 1, NULL, NULL);
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &txn));
    KF_OK_OR_FAIL(kf_txn_counter_get(txn, "rollout_cursor", &cursor));
    kf_txn_end(txn);
    assert_true(cursor > 0);
    /* dev-0 recovers after a restart; its old failure is not read again */
    KF_OK_OR_FAIL(kf_rollout_engine_new(&again));
    report(f, "dev-0", "update.installed", 20000);
    kf_rollout_tick(again, f->d, T0 + 2, NULL, NULL);
    j = show(f, id);
    assert_int_equal(count(j, "installed"), 1);
    assert_int_equal(count(j, "failed"), 0);
    json_decref(j);
    kf_rollout_engine_free(again);
    KF_EXPECT_ERR(KF_E_INVALID, kf_txn_counter_get(NULL, "registry_version", &cursor));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test_setup_teardown(test_phases_advance_and_tell_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newest_decides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_told_when_completed_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reports_find_their_rollout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_offered_yet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accepted_are_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
