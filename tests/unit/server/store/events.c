/*
 * events: the sink over a real store: the first of a kind is recorded at once, its repeats are
 * counted into one event at the interval's end, the shared budget and the bound on kinds turn
 * the rest into events.suppressed, claimed identities stay apart from devices, and retention
 * prunes by age and by rows.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/timefmt.h"
#include "server/store/events.h"
#include "common/jsontext.h"

struct seen {
    int n;
    char text[8192];
};

static enum kf_err collect_cb(const struct kf_event_rec *e, void *arg)
{
    struct seen *s = arg;
    size_t len = strlen(s->text);
    s->n++;
    snprintf(s->text + len, sizeof(s->text) - len, "%s|%s|%s|%s|%s\n", e->type, e->device,
             e->claimed, e->ip, e->detail ? e->detail : "");
    return KF_OK;
}

static struct kf_store *open_store(const char *name)
{
    struct kf_store *s = NULL;
    KF_OK_OR_FAIL(kf_store_open(kf_test_path(name), KF_STORE_CREATE, &s));
    return s;
}

/* The store's events, after the queued ones are written (closing and opening again). */
static struct seen list(struct kf_store **s, const char *name)
{
    struct seen out;
    struct kf_txn *t;
    memset(&out, 0, sizeof(out));
    kf_store_close(*s);
    *s = open_store(name);
    KF_OK_OR_FAIL(kf_store_read(*s, &t));
    KF_OK_OR_FAIL(kf_txn_event_list(t, 0, NULL, NULL, KF_LIST_ALL, collect_cb, &out));
    kf_txn_end(t);
    return out;
}

static enum kf_err insert_cb(struct kf_txn *t, void *e)
{
    return kf_txn_event_insert(t, e, NULL);
}

static char *detail(int n)
{
    return kf_jsontext_pack("{s:i}", "n", n);
}

static void test_repeats_are_one_event(void **state)
{
    struct kf_store *s = open_store("agg.db");
    struct kf_events_conf c;
    struct kf_events *ev;
    struct kf_events_stats st;
    struct kf_event_who who = {"dev-1", NULL, "192.0.2.1"}, other = {NULL, "dev-1", "192.0.2.1"};
    struct seen got;
    int64_t now = kf_now_ms();
    (void)state;

    kf_events_conf_default(&c);
    KF_OK_OR_FAIL(kf_events_new(s, &c, &ev));
    for (int i = 0; i < 500; i++)
        kf_events_note(ev, "hub.acl_denied", "warning", "subscribe", &who, detail(i));
    /* another reason, and the same name unverified: kinds of their own */
    kf_events_note(ev, "hub.acl_denied", "warning", "publish", &who, detail(1));
    kf_events_note(ev, "hub.acl_denied", "warning", "subscribe", &other, detail(2));
    kf_events_tick(ev, now + 1000); /* the interval is not over: nothing more */
    kf_events_stats(ev, &st);
    assert_int_equal(st.recorded, 3);
    assert_int_equal(st.aggregated, 499);
    kf_events_tick(ev, now + 10500);
    kf_events_stats(ev, &st);
    assert_int_equal(st.recorded, 4); /* one summary: the other kinds had no repeats */
    got = list(&s, "agg.db");
    assert_int_equal(got.n, 4);
    if (!strstr(got.text,
                "hub.acl_denied|dev-1||192.0.2.1|{\"interval_s\":10,\"n\":499,\"repeats\":499}"))
        fail_msg("no summary with the last detail and the count in:\n%s", got.text);
    if (!strstr(got.text, "hub.acl_denied||dev-1|192.0.2.1|"))
        fail_msg("the unverified one is not recorded as claimed:\n%s", got.text);
    kf_events_free(ev);
    kf_store_close(s);
}

static void test_budget_and_kinds_are_bounded(void **state)
{
    struct kf_store *s = open_store("bound.db");
    struct kf_events_conf c;
    struct kf_events *ev;
    struct kf_events_stats st;
    struct seen got;
    char ip[32];
    (void)state;

    kf_events_conf_default(&c);
    c.rate = 1;
    c.burst = 5;
    c.max_kinds = 3;
    KF_OK_OR_FAIL(kf_events_new(s, &c, &ev));
    /* many addresses: the first 3 kinds get recorded (within the burst), the rest suppressed */
    for (int i = 0; i < 50; i++) {
        struct kf_event_who who = {NULL, "\x1b[31mred", ip};
        snprintf(ip, sizeof(ip), "198.51.100.%d", i);
        kf_events_note(ev, "hub.auth_failed", "warning", "no_certificate", &who, detail(i));
    }
    kf_events_stats(ev, &st);
    assert_int_equal(st.recorded, 3);
    assert_int_equal(st.suppressed, 47);
    kf_events_tick(ev, INT64_MAX);
    got = list(&s, "bound.db");
    assert_int_equal(got.n, 4);
    if (!strstr(got.text,
                "events.suppressed||||{\"by_type\":{\"hub.auth_failed\":47},\"count\":47"))
        fail_msg("no events.suppressed with the count in:\n%s", got.text);
    /* a claimed identity is stored quoted: no escape sequence reaches a terminal */
    if (!strstr(got.text, "|\\x1b[31mred|")) fail_msg("claimed not quoted in:\n%s", got.text);
    kf_events_free(ev);
    kf_store_close(s);
}

static void test_retention(void **state)
{
    struct kf_store *s = open_store("prune.db");
    struct kf_events_conf c;
    struct kf_events *ev;
    struct seen got;
    int64_t now = kf_now_ms();
    (void)state;

    for (int i = 0; i < 30; i++) {
        struct kf_event_rec e;
        memset(&e, 0, sizeof(e));
        e.time_ms = i < 10 ? now - 40LL * 86400 * 1000 : now - i; /* ten are 40 days old */
        snprintf(e.type, sizeof(e.type), "device.t%d", i);
        snprintf(e.severity, sizeof(e.severity), "info");
        snprintf(e.source, sizeof(e.source), "device");
        KF_OK_OR_FAIL(kf_store_write(s, insert_cb, &e));
    }
    kf_events_conf_default(&c);
    KF_OK_OR_FAIL(kf_events_new(s, &c, &ev));
    kf_events_prune(ev, 30, 0);
    got = list(&s, "prune.db"); /* closing runs the prune */
    assert_int_equal(got.n, 20);
    kf_events_free(ev);
    KF_OK_OR_FAIL(kf_events_new(s, &c, &ev));
    kf_events_prune(ev, 0, 5);
    got = list(&s, "prune.db");
    assert_int_equal(got.n, 5);
    assert_non_null(strstr(got.text, "device.t29"));
    assert_null(strstr(got.text, "device.t24|"));
    kf_events_free(ev);
    kf_store_close(s);
}

/* One-off events: an invalid device id is left out, a claimed one kept apart and quoted. */
static void test_submit_and_name_conflict(void **state)
{
    struct kf_store *s = open_store("submit.db");
    struct seen got;
    (void)state;

    assert_int_equal(kf_events_submit(s, "hub.connected", "info", "dev-1", NULL, "server",
                                      "192.0.2.9", detail(1)),
                     1);
    kf_events_submit(s, "hub.auth_failed", "warning", "bad id!", "bad id!", "server", NULL, NULL);
    kf_events_name_conflict(s, "alice", "gw-1", "service", "gw-1 is a device's id");
    KF_EXPECT_MSG("gw-1 is a device's id");
    got = list(&s, "submit.db");
    assert_int_equal(got.n, 3);
    if (!strstr(got.text, "hub.connected|dev-1||192.0.2.9|{\"n\":1}"))
        fail_msg("no hub.connected in:\n%s", got.text);
    if (!strstr(got.text, "hub.auth_failed||bad id!||")) /* never recorded as a device */
        fail_msg("an invalid id was recorded as a device:\n%s", got.text);
    if (!strstr(got.text, "registry.name_conflict||||{\"actor\":\"alice\",\"message\":\"gw-1 "
                          "is a device's id\",\"name\":\"gw-1\",\"wanted_as\":\"service\"}"))
        fail_msg("no registry.name_conflict in:\n%s", got.text);
    kf_store_close(s);
}

/* A reload's new budget applies at once; what was counted stays counted. */
static void test_configure_keeps_counts(void **state)
{
    struct kf_store *s = open_store("conf.db");
    struct kf_events_conf c;
    struct kf_events *ev;
    struct kf_events_stats st;
    struct kf_event_who who = {"dev-1", NULL, "192.0.2.1"};
    char ip[32];
    (void)state;

    kf_events_conf_default(&c);
    KF_OK_OR_FAIL(kf_events_new(s, &c, &ev));
    for (int i = 0; i < 3; i++)
        kf_events_note(ev, "hub.acl_denied", "warning", "publish", &who, NULL);
    c.rate = 1;
    c.burst = 1; /* the bucket shrinks to one token */
    kf_events_configure(ev, &c);
    for (int i = 0; i < 10; i++) {
        struct kf_event_who each = {NULL, NULL, ip};
        snprintf(ip, sizeof(ip), "198.51.100.%d", i);
        kf_events_note(ev, "hub.auth_failed", "warning", "expired", &each, NULL);
    }
    kf_events_stats(ev, &st);
    assert_int_equal(st.aggregated, 2); /* from before the reload */
    assert_true(st.recorded >= 1 && st.recorded <= 3);
    assert_int_equal(st.recorded - 1 + st.suppressed, 10); /* every note counted somewhere */
    kf_events_tick(ev, INT64_MAX);
    kf_events_free(ev);
    kf_store_close(s);
}

struct noter {
    struct kf_events *ev;
    int id;
};

static void *note_many(void *arg)
{
    struct noter *n = arg;
    char ip[32];
    for (int i = 0; i < 2000; i++) {
        struct kf_event_who who = {NULL, NULL, ip};
        snprintf(ip, sizeof(ip), "203.0.113.%d", (n->id * 7 + i) % 40);
        kf_events_note(n->ev, "provisioning.denied", "warning", i % 2 ? "rate" : "handshakes", &who,
                       NULL);
    }
    return NULL;
}

/* Notes from several threads at once: each one lands in exactly one count. */
static void test_threads_share_one_sink(void **state)
{
    struct kf_store *s = open_store("threads.db");
    struct kf_events_conf c;
    struct kf_events *ev;
    struct kf_events_stats st;
    pthread_t t[4];
    struct noter n[4];
    (void)state;

    kf_events_conf_default(&c);
    c.max_kinds = 50;
    KF_OK_OR_FAIL(kf_events_new(s, &c, &ev));
    for (int i = 0; i < 4; i++) {
        n[i] = (struct noter){ev, i};
        assert_int_equal(pthread_create(&t[i], NULL, note_many, &n[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    kf_events_stats(ev, &st);
    assert_int_equal(st.recorded + st.aggregated + st.suppressed, 4 * 2000);
    assert_true(st.recorded <= 50); /* at most one first event per kind */
    kf_events_tick(ev, INT64_MAX);
    kf_events_free(ev);
    kf_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repeats_are_one_event),
        cmocka_unit_test(test_budget_and_kinds_are_bounded),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_submit_and_name_conflict),
        cmocka_unit_test(test_configure_keeps_counts),
        cmocka_unit_test(test_threads_share_one_sink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
