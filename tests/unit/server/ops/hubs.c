/*
 * hubs: endpoints checked and put in one spelling, hubs added, enabled, disabled, re-weighted and
 * removed with an audit record each, the devices and static enrollments of a hub, and every
 * refusal leaving the store (hubs included) as it was.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "server/ops/enroll.h"
#include "server/ops/hubs.h"

struct fixture {
    struct kf_deploy *d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->d = kf_test_deploy_make("hubs");
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

static enum kf_err hub_text_cb(const struct kf_hub_rec *h, void *arg)
{
    return kf_buf_appendf(arg, "hub %s endpoint=%s weight=%d enabled=%d created=%lld\n", h->name,
                          h->endpoint, h->weight, h->enabled, (long long)h->created);
}

/* The hubs as text: testdeploy's state covers devices, enrollments, CAs and the audit log. */
static char *hubs_text(struct fixture *f)
{
    struct kf_txn *t = NULL;
    struct kf_buf b;
    char *s;
    kf_buf_init(&b, 1 << 20);
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(kf_txn_hub_list(t, hub_text_cb, &b));
    kf_txn_end(t);
    s = strdup(kf_buf_str(&b));
    kf_buf_free(&b);
    return s;
}

/* Runs `call` (an expression), which must fail with `want` and `needle` and change nothing. */
#define EXPECT_REFUSED(f, want, needle, call)                                         \
    do {                                                                              \
        struct kf_test_state before_;                                                 \
        char *hubs_ = hubs_text(f), *hubs_after_;                                     \
        kf_test_state_take((f)->d->store, &before_);                                  \
        KF_EXPECT_ERR(want, call);                                                    \
        KF_EXPECT_MSG(needle);                                                        \
        kf_test_state_expect((f)->d->store, &before_, needle);                        \
        hubs_after_ = hubs_text(f);                                                   \
        if (strcmp(hubs_, hubs_after_) != 0)                                          \
            fail_msg("%s: the hubs changed.\nbefore:\n%s\nafter:\n%s", needle, hubs_, \
                     hubs_after_);                                                    \
        free(hubs_);                                                                  \
        free(hubs_after_);                                                            \
        kf_test_state_free(&before_);                                                 \
    } while (0)

/* As EXPECT_REFUSED, for a call that succeeds without changing anything. */
#define EXPECT_NO_CHANGE(f, what, call)                                              \
    do {                                                                             \
        struct kf_test_state before_;                                                \
        char *hubs_ = hubs_text(f), *hubs_after_;                                    \
        kf_test_state_take((f)->d->store, &before_);                                 \
        KF_OK_OR_FAIL(call);                                                         \
        kf_test_state_expect((f)->d->store, &before_, what);                         \
        hubs_after_ = hubs_text(f);                                                  \
        if (strcmp(hubs_, hubs_after_) != 0) fail_msg("%s: the hubs changed", what); \
        free(hubs_);                                                                 \
        free(hubs_after_);                                                           \
        kf_test_state_free(&before_);                                                \
    } while (0)

static enum kf_err get_hub(struct fixture *f, const char *name, struct kf_hub_rec *h)
{
    struct kf_txn *t = NULL;
    enum kf_err rc;
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    rc = kf_txn_hub_get(t, name, h);
    kf_txn_end(t);
    return rc;
}

/* Expects exactly one audit record after `audit0`: `action` on hub `name` with `detail`. */
static void expect_one_audit(struct fixture *f, int64_t audit0, const char *action,
                             const char *name, const char *detail)
{
    struct kf_test_audit a;
    char object[KF_OBJECT_MAX];
    snprintf(object, sizeof(object), "hub:%s", name);
    kf_test_audit_after(f->d->store, audit0, &a);
    assert_int_equal(a.n, 1);
    kf_test_audit_expect(&a.r[0], action, object, detail);
    kf_test_audit_free(&a);
}

/* An individual enrollment `id` by a fresh public key, with `opts`. */
static void enroll(struct fixture *f, const char *id, const struct kf_enroll_opts *opts)
{
    char name[160];
    struct kf_key *k = NULL;
    struct kf_buf pem;
    const char *path;
    snprintf(name, sizeof(name), "%s.pub", id);
    path = kf_test_path(name);
    kf_buf_init(&pem, 1 << 16);
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    KF_OK_OR_FAIL(kf_key_public_pem(k, &pem));
    kf_test_write(path, kf_buf_str(&pem));
    kf_buf_free(&pem);
    kf_key_free(k);
    KF_OK_OR_FAIL(kf_enroll_add(f->d, KF_TEST_ACTOR, id, NULL, path, opts));
}

struct device_arg {
    const char *id, *hub;
    enum kf_device_status status;
};

static enum kf_err device_insert_cb(struct kf_txn *t, void *arg)
{
    struct device_arg *a = arg;
    struct kf_device_rec d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "%s", a->id);
    snprintf(d.hub, sizeof(d.hub), "%s", a->hub);
    d.status = a->status;
    d.created = d.updated = time(NULL);
    return kf_txn_device_insert(t, &d);
}

/* A device on `hub` with `status`, as keyfleetd's provisioning makes it. */
static void device_on(struct fixture *f, const char *id, const char *hub,
                      enum kf_device_status status)
{
    struct device_arg a = {id, hub, status};
    KF_OK_OR_FAIL(kf_store_write(f->d->store, device_insert_cb, &a));
}

/* ---- endpoints ---- */

static void test_endpoint_good(void **state)
{
    static const char *const cases[][2] = {
        {"mqtt.example.com:8883", "mqtt.example.com:8883"},
        {"MQTT.Example.COM:8883", "mqtt.example.com:8883"},
        {"hub-1.eu-west.example:1883", "hub-1.eu-west.example:1883"},
        {"localhost:1", "localhost:1"},
        {"hub.example:65535", "hub.example:65535"},
        {"hub.example:08883", "hub.example:8883"},
        {"10.0.0.1:8883", "10.0.0.1:8883"},
        {"0.0.0.0:8883", "0.0.0.0:8883"},
        {"[::1]:8883", "[::1]:8883"},
        {"[2001:DB8:0:0:0:0:0:1]:8883", "[2001:db8::1]:8883"},
        {"[::ffff:192.0.2.1]:8883", "[::ffff:192.0.2.1]:8883"},
    };
    char out[KF_ENDPOINT_MAX];
    (void)state;
    for (size_t i = 0; i < KF_ARRAY_LEN(cases); i++) {
        memset(out, 'x', sizeof(out));
        if (kf_hubs_endpoint_check(cases[i][0], out, sizeof(out)) != KF_OK)
            fail_msg("%s refused: %s", cases[i][0], kf_errmsg());
        assert_string_equal(out, cases[i][1]);
    }
}

/* "aaa...a.aaa...a:8883" with a DNS name of `len` characters in labels of 63 (`out`: len + 6). */
static void host_port(char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = i % 64 == 63 ? '.' : 'a';
    memcpy(out + len, ":8883", 6);
}

static void test_endpoint_bad(void **state)
{
    char host254[300], long_ep[1100], out[KF_ENDPOINT_MAX];
    const char *cases[][2] = {
        {"", "the hub endpoint is empty; it is host:port"},
        {"mqtt.example.com", "hub endpoint \"mqtt.example.com\" has no port: it is host:port"},
        {"mqtt.example.com:", "\"mqtt.example.com:\": the port must be a number from 1 to 65535"},
        {"mqtt.example.com:0", "the port must be a number from 1 to 65535"},
        {"mqtt.example.com:65536", "the port must be a number from 1 to 65535"},
        {"mqtt.example.com:123456", "the port must be a number from 1 to 65535"},
        {"mqtt.example.com:88a3", "the port must be a number from 1 to 65535"},
        {"mqtt.example.com:-1", "the port must be a number from 1 to 65535"},
        {"mqtt.example.com:+80", "the port must be a number from 1 to 65535"},
        {"mqtt.example.com: 80", "the port must be a number from 1 to 65535"},
        {"mqtt.example.com:8883\n", "\"mqtt.example.com:8883\\x0a\": the port must be"},
        {":8883", "hub endpoint \":8883\" has no host before the port"},
        {"::1:8883", "an IPv6 address goes in brackets, e.g. [2001:db8::1]:8883"},
        {"2001:db8::1", "an IPv6 address goes in brackets"},
        {"[::1]8883", "hub endpoint \"[::1]8883\" has no port: it is [address]:port"},
        {"[::1]", "has no port: it is [address]:port"},
        {"[::1:8883", "the IPv6 address has no closing ']'"},
        {"[192.0.2.1]:8883", "what is in brackets is not an IPv6 address"},
        {"[fe80::1%eth0]:8883", "what is in brackets is not an IPv6 address"},
        {"[]:8883", "what is in brackets is not an IPv6 address"},
        {"*.example.com:8883", "the host is a wildcard; devices need one host"},
        {"bad_host:8883", "\"bad_host\" is neither a DNS name nor an IPv4 address"},
        {"a..b:8883", "\"a..b\" is neither a DNS name nor an IPv4 address"},
        {"-a.example:8883", "is neither a DNS name nor an IPv4 address"},
        {"host name:8883", "\"host name\" is neither a DNS name"},
        {"192.0.2.256:8883", "\"192.0.2.256\" is neither a DNS name nor an IPv4 address"},
        {"1.2.3:8883", "\"1.2.3\" is neither a DNS name nor an IPv4 address"},
        {"mqtt.example.com.:8883", "is neither a DNS name nor an IPv4 address"},
        {"h\xc3\xa9.example:8883", "\"h\\xc3\\xa9.example\" is neither a DNS name"},
        {host254, "the host is 254 characters; a DNS name has at most 253"},
        {long_ep, "is 1025 characters; the limit is 255"},
    };
    (void)state;
    /* 254 characters of labels of 63: a DNS name one over its limit. */
    host_port(host254, 254);
    memset(long_ep, 'a', 1025);
    long_ep[1025] = '\0';
    for (size_t i = 0; i < KF_ARRAY_LEN(cases); i++) {
        memset(out, 'x', sizeof(out));
        if (kf_hubs_endpoint_check(cases[i][0], out, sizeof(out)) != KF_E_INVALID)
            fail_msg("endpoint %zu (%s) accepted or refused with %s: %s", i, cases[i][0],
                     kf_errcode(kf_errlast()), kf_errmsg());
        KF_EXPECT_MSG(cases[i][1]);
        assert_string_equal(out, "");
    }
    KF_EXPECT_ERR(KF_E_INVALID, kf_hubs_endpoint_check(NULL, out, sizeof(out)));
    KF_EXPECT_MSG("the hub endpoint is empty");
    /* The store keeps 255 characters: a 250-character name with ":8883" fits, 251 does not. */
    host_port(host254, 250);
    KF_OK_OR_FAIL(kf_hubs_endpoint_check(host254, out, sizeof(out)));
    assert_int_equal(strlen(out), 255);
    host_port(host254, 251);
    KF_EXPECT_ERR(KF_E_INVALID, kf_hubs_endpoint_check(host254, out, sizeof(out)));
    KF_EXPECT_MSG("is 256 characters; the limit is 255");
    assert_string_equal(out, "");
}

/* ---- add ---- */

static void test_add(void **state)
{
    struct fixture *f = *state;
    struct kf_hub_rec h;
    int64_t audit0 = kf_test_audit_count(f->d->store);
    time_t t0 = time(NULL);

    KF_OK_OR_FAIL(
        kf_hubs_add(f->d, KF_TEST_ACTOR, "hub-a", "MQTT-A.example:8883", KF_HUB_WEIGHT_DEFAULT));
    KF_OK_OR_FAIL(get_hub(f, "hub-a", &h));
    assert_string_equal(h.name, "hub-a");
    assert_string_equal(h.endpoint, "mqtt-a.example:8883");
    assert_int_equal(h.weight, 1);
    assert_int_equal(h.enabled, 1);
    assert_true(h.created >= t0 && h.created <= time(NULL));
    expect_one_audit(f, audit0, "hub.add", "hub-a",
                     "{\"enabled\":true,\"endpoint\":\"mqtt-a.example:8883\",\"weight\":1}");

    /* The ends of the weight's range. */
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "hub-0", "[2001:db8::10]:8883", 0));
    expect_one_audit(f, audit0, "hub.add", "hub-0",
                     "{\"enabled\":true,\"endpoint\":\"[2001:db8::10]:8883\",\"weight\":0}");
    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "hub-max", "192.0.2.7:8883", 1000));
    KF_OK_OR_FAIL(get_hub(f, "hub-max", &h));
    assert_int_equal(h.weight, 1000);
}

static void test_add_refusals(void **state)
{
    struct fixture *f = *state;

    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "dup", "dup.example:8883", 1));
    EXPECT_REFUSED(f, KF_E_EXISTS, "a hub named dup already exists",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "dup", "other.example:8883", 1));
    /* One endpoint has one spelling, so a second name for it is caught. */
    EXPECT_REFUSED(f, KF_E_EXISTS, "hub dup already has endpoint dup.example:8883",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "dup-2", "DUP.example:08883", 1));
    EXPECT_REFUSED(f, KF_E_INVALID, "hub name \"Dup-2\"",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "Dup-2", "dup2.example:8883", 1));
    EXPECT_REFUSED(f, KF_E_INVALID, "hub name is empty",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "", "dup2.example:8883", 1));
    EXPECT_REFUSED(f, KF_E_INVALID, "hub endpoint \"dup2.example\" has no port",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "dup-2", "dup2.example", 1));
    EXPECT_REFUSED(f, KF_E_INVALID, "an IPv6 address goes in brackets",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "dup-2", "::1:8883", 1));
    EXPECT_REFUSED(f, KF_E_INVALID, "the hub endpoint is empty",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "dup-2", NULL, 1));
    EXPECT_REFUSED(f, KF_E_INVALID,
                   "weight -1 for hub dup-2 is out of range: it is 0 to 1000 (0 takes no new "
                   "devices)",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "dup-2", "dup2.example:8883", -1));
    EXPECT_REFUSED(f, KF_E_INVALID, "weight 1001 for hub dup-2 is out of range",
                   kf_hubs_add(f->d, KF_TEST_ACTOR, "dup-2", "dup2.example:8883", 1001));
}

/* ---- enable, disable, weight ---- */

static void test_enable_disable(void **state)
{
    struct fixture *f = *state;
    struct kf_hub_rec h;
    int64_t audit0;
    int changed = -1;

    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "tog", "tog.example:8883", 1));
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "tog", 0, &changed));
    assert_int_equal(changed, 1);
    KF_OK_OR_FAIL(get_hub(f, "tog", &h));
    assert_int_equal(h.enabled, 0);
    assert_string_equal(h.endpoint, "tog.example:8883");
    assert_int_equal(h.weight, 1);
    expect_one_audit(f, audit0, "hub.disable", "tog", "{}");

    /* Already disabled: no change, no audit record. */
    changed = -1;
    EXPECT_NO_CHANGE(f, "disable twice",
                     kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "tog", 0, &changed));
    assert_int_equal(changed, 0);

    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "tog", 1, &changed));
    assert_int_equal(changed, 1);
    KF_OK_OR_FAIL(get_hub(f, "tog", &h));
    assert_int_equal(h.enabled, 1);
    expect_one_audit(f, audit0, "hub.enable", "tog", "{}");
    EXPECT_NO_CHANGE(f, "enable twice", kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "tog", 1, NULL));

    changed = -1;
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "hub tog-9 not found",
                   kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "tog-9", 0, &changed));
    assert_int_equal(changed, 0);
    EXPECT_REFUSED(f, KF_E_INVALID, "hub name \"Tog\"",
                   kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "Tog", 0, &changed));
}

static void test_weight(void **state)
{
    struct fixture *f = *state;
    struct kf_hub_rec h;
    int64_t audit0;
    int changed = -1;

    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "wt", "wt.example:8883", 1));
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_hubs_set_weight(f->d, KF_TEST_ACTOR, "wt", 250, &changed));
    assert_int_equal(changed, 1);
    KF_OK_OR_FAIL(get_hub(f, "wt", &h));
    assert_int_equal(h.weight, 250);
    assert_int_equal(h.enabled, 1);
    expect_one_audit(f, audit0, "hub.weight", "wt", "{\"previous\":1,\"weight\":250}");

    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_hubs_set_weight(f->d, KF_TEST_ACTOR, "wt", 0, &changed));
    assert_int_equal(changed, 1);
    expect_one_audit(f, audit0, "hub.weight", "wt", "{\"previous\":250,\"weight\":0}");

    changed = -1;
    EXPECT_NO_CHANGE(f, "same weight", kf_hubs_set_weight(f->d, KF_TEST_ACTOR, "wt", 0, &changed));
    assert_int_equal(changed, 0);
    changed = -1;
    EXPECT_REFUSED(f, KF_E_INVALID, "weight 1001 for hub wt is out of range",
                   kf_hubs_set_weight(f->d, KF_TEST_ACTOR, "wt", 1001, &changed));
    assert_int_equal(changed, 0);
    EXPECT_REFUSED(f, KF_E_INVALID, "weight -5 for hub wt is out of range",
                   kf_hubs_set_weight(f->d, KF_TEST_ACTOR, "wt", -5, NULL));
    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "hub wt-9 not found",
                   kf_hubs_set_weight(f->d, KF_TEST_ACTOR, "wt-9", 5, NULL));
    EXPECT_REFUSED(f, KF_E_INVALID, "hub name \"wt/9\"",
                   kf_hubs_set_weight(f->d, KF_TEST_ACTOR, "wt/9", 5, NULL));
}

/* ---- remove ---- */

static void test_remove(void **state)
{
    struct fixture *f = *state;
    struct kf_enroll_opts on_rm = {NULL, 0, NULL, "rm", NULL, 0};
    struct kf_enroll_change hashed = {"hashed", NULL, NULL, 0, NULL, -1};
    struct kf_device_rec dev;
    struct kf_hub_rec h;
    int64_t audit0;

    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "rm", "rm.example:8883", 7));
    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "rm-other", "rm-other.example:8883", 1));
    enroll(f, "rm-static-1", &on_rm);
    EXPECT_REFUSED(f, KF_E_CONFLICT,
                   "hub rm is the static hub of enrollment rm-static-1; give that enrollment "
                   "another hub first (keyfleet enrollment set rm-static-1 --hub NAME, or "
                   "--allocation hashed)",
                   kf_hubs_remove(f->d, KF_TEST_ACTOR, "rm"));
    enroll(f, "rm-static-2", &on_rm);
    enroll(f, "rm-static-3", &on_rm);
    EXPECT_REFUSED(f, KF_E_CONFLICT,
                   "hub rm is the static hub of enrollment rm-static-1 and 2 more",
                   kf_hubs_remove(f->d, KF_TEST_ACTOR, "rm"));
    /* Disabled, it is still named. */
    KF_OK_OR_FAIL(kf_hubs_set_enabled(f->d, KF_TEST_ACTOR, "rm", 0, NULL));
    EXPECT_REFUSED(f, KF_E_CONFLICT, "is the static hub of enrollment rm-static-1",
                   kf_hubs_remove(f->d, KF_TEST_ACTOR, "rm"));

    /* Once no enrollment names it, it goes; the devices on it keep the name until they next
     * register. */
    KF_OK_OR_FAIL(kf_enroll_update(f->d, KF_TEST_ACTOR, "rm-static-1", &hashed, NULL));
    KF_OK_OR_FAIL(kf_enroll_remove(f->d, KF_TEST_ACTOR, "rm-static-2"));
    KF_OK_OR_FAIL(kf_enroll_update(f->d, KF_TEST_ACTOR, "rm-static-3",
                                   &(struct kf_enroll_change){NULL, "rm-other", NULL, 0, NULL, -1},
                                   NULL));
    device_on(f, "rm-dev-1", "rm", KF_DEVICE_ACTIVE);
    audit0 = kf_test_audit_count(f->d->store);
    KF_OK_OR_FAIL(kf_hubs_remove(f->d, KF_TEST_ACTOR, "rm"));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, get_hub(f, "rm", &h));
    expect_one_audit(f, audit0, "hub.remove", "rm",
                     "{\"enabled\":false,\"endpoint\":\"rm.example:8883\",\"weight\":7}");
    KF_OK_OR_FAIL(kf_test_device_get(f->d->store, "rm-dev-1", &dev));
    assert_string_equal(dev.hub, "rm");

    EXPECT_REFUSED(f, KF_E_NOT_FOUND, "hub rm not found",
                   kf_hubs_remove(f->d, KF_TEST_ACTOR, "rm"));
    EXPECT_REFUSED(f, KF_E_INVALID, "hub name is empty", kf_hubs_remove(f->d, KF_TEST_ACTOR, ""));
    /* The name is free again, and so is the endpoint. */
    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "rm", "rm.example:8883", 1));
}

/* ---- what refers to a hub ---- */

static enum kf_err collect_cb(const struct kf_enrollment_rec *e, void *arg)
{
    return kf_buf_appendf(arg, "%s,", e->id);
}

static void test_devices_and_enrollments(void **state)
{
    struct fixture *f = *state;
    struct kf_enroll_opts on_cnt = {NULL, 0, "static", "cnt", NULL, 0};
    struct kf_txn *t = NULL;
    struct kf_buf b;
    int64_t all = -1, active = -1;

    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "cnt", "cnt.example:8883", 1));
    KF_OK_OR_FAIL(kf_hubs_add(f->d, KF_TEST_ACTOR, "cnt-2", "cnt-2.example:8883", 1));
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(kf_hubs_count_devices(t, "cnt", &all, &active));
    kf_txn_end(t);
    assert_int_equal(all, 0);
    assert_int_equal(active, 0);

    device_on(f, "cnt-dev-1", "cnt", KF_DEVICE_ACTIVE);
    device_on(f, "cnt-dev-2", "cnt", KF_DEVICE_ACTIVE);
    device_on(f, "cnt-dev-3", "cnt", KF_DEVICE_DISABLED);
    device_on(f, "cnt-dev-4", "cnt", KF_DEVICE_REVOKED);
    device_on(f, "cnt-dev-5", "cnt-2", KF_DEVICE_ACTIVE);
    device_on(f, "cnt-dev-6", "", KF_DEVICE_ACTIVE);
    enroll(f, "cnt-b", &on_cnt);
    enroll(f, "cnt-a", &on_cnt);
    enroll(f, "cnt-hashed", NULL);

    kf_buf_init(&b, 4096);
    KF_OK_OR_FAIL(kf_store_read(f->d->store, &t));
    KF_OK_OR_FAIL(kf_hubs_count_devices(t, "cnt", &all, &active));
    assert_int_equal(all, 4);
    assert_int_equal(active, 2);
    KF_OK_OR_FAIL(kf_hubs_count_devices(t, "cnt-2", &all, NULL));
    assert_int_equal(all, 1);
    KF_OK_OR_FAIL(kf_hubs_count_devices(t, "nobody", NULL, &active));
    assert_int_equal(active, 0);
    KF_OK_OR_FAIL(kf_hubs_static_enrollments(t, "cnt", collect_cb, &b));
    assert_string_equal(kf_buf_str(&b), "cnt-a,cnt-b,");
    kf_buf_reset(&b);
    KF_OK_OR_FAIL(kf_hubs_static_enrollments(t, "cnt-2", collect_cb, &b));
    assert_string_equal(kf_buf_str(&b), "");
    kf_txn_end(t);
    kf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_good),
        cmocka_unit_test(test_endpoint_bad),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_add_refusals),
        cmocka_unit_test(test_enable_disable),
        cmocka_unit_test(test_weight),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_devices_and_enrollments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
