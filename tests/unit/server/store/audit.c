/*
 * audit: the hash-chained audit log, part of the store's conformance suite: appending, the hash,
 * verification, appends from many threads and from two processes. Every store comes from
 * kf_test_store_url() and is used through the store's API alone, so the same tests run on every
 * back end. Verifying a log edited behind the store's back needs the back end's own tools (for
 * SQLite the sqlite3 library on the file): sqlite.c's test_audit_* tests.
 */
#include "testutil.h"
#include "storetest.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "server/store/store.h"

#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- the chain ---- */

static void test_append_chain(void **state)
{
    struct kf_store *s = kf_st_open(kf_test_store_url("chain"), KF_STORE_CREATE);
    const struct kf_st_entry three[3] = {
        {"keyfleetd", "cert.issue", "cert:0a", "{\"device\": \"dev-1\"}"},
        {"keyfleetd", "cert.issue", "cert:0b", NULL},
        {"keyfleetd", "registration", "device:dev-1", "{}"},
    };
    struct kf_st_batch b = {three, 3};
    struct kf_audit_verdict v;
    struct timespec ts;
    int64_t before, after;
    char h[KF_HASH_HEX];
    struct kf_st_log l;

    clock_gettime(CLOCK_REALTIME, &ts);
    before = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    kf_st_append(s, "operator:alice", "enrollment.add", "enrollment:dev-1",
                 "{\"kind\": \"individual\"}");
    kf_st_append(s, "operator:bob", "enrollment.disable", "enrollment:dev-1", NULL);
    /* Three appends in one transaction chain to each other as well. */
    KF_OK_OR_FAIL(kf_store_write(s, kf_st_append_cb, &b));
    clock_gettime(CLOCK_REALTIME, &ts);
    after = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

    kf_st_log_read(s, INT64_MIN, &l);
    assert_int_equal(l.n, 5);
    assert_string_equal(l.r[0].prev_hash, ZERO64);
    for (int i = 0; i < l.n; i++) {
        assert_int_equal(l.r[i].seq, i + 1);
        assert_true(l.r[i].time_ms >= before && l.r[i].time_ms <= after);
        assert_int_equal(strlen(l.r[i].hash), 64);
        kf_audit_hash(&l.r[i], h);
        assert_string_equal(h, l.r[i].hash);
        if (i > 0) assert_string_equal(l.r[i].prev_hash, l.r[i - 1].hash);
    }
    assert_string_equal(l.r[0].actor, "operator:alice");
    assert_string_equal(l.r[0].action, "enrollment.add");
    assert_string_equal(l.r[0].object, "enrollment:dev-1");
    assert_string_equal(l.r[0].detail, "{\"kind\": \"individual\"}");
    assert_string_equal(l.r[1].detail, "{}"); /* NULL detail */
    assert_string_equal(l.r[2].object, "cert:0a");

    KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
    assert_int_equal(v.fault, KF_AUDIT_INTACT);
    assert_int_equal(v.records, 5);
    assert_string_equal(v.head, l.r[4].hash);
    assert_non_null(strstr(v.message, "intact"));
    /* The current head, and an older one, are both still in the log. */
    KF_OK_OR_FAIL(kf_st_verify(s, l.r[4].hash, &v));
    KF_OK_OR_FAIL(kf_st_verify(s, l.r[1].hash, &v));
    kf_st_log_free(&l);

    /* Listing from a time on. */
    kf_st_log_read(s, after + 60000, &l);
    assert_int_equal(l.n, 0);
    kf_st_log_read(s, before, &l);
    assert_int_equal(l.n, 5);
    kf_st_log_free(&l);
    kf_store_close(s);
}

static void test_append_refuses_bad_input(void **state)
{
    struct kf_store *s = kf_st_open(kf_test_store_url("bad"), KF_STORE_CREATE);
    char long_actor[KF_ACTOR_MAX + 8];
    struct kf_st_entry e = {"operator:alice", "x.y", "z", "[1, 2]"};
    struct kf_st_batch b = {&e, 1};
    struct kf_st_log l;

    KF_EXPECT_ERR(KF_E_MALFORMED, kf_store_write(s, kf_st_append_cb, &b));
    KF_EXPECT_MSG("audit detail is not a JSON object");
    e.detail = "{\"a\": ";
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_store_write(s, kf_st_append_cb, &b));
    e.detail = NULL;
    e.actor = "";
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, kf_st_append_cb, &b));
    KF_EXPECT_MSG("the audit record has no actor");
    memset(long_actor, 'a', sizeof(long_actor) - 1);
    long_actor[sizeof(long_actor) - 1] = '\0';
    e.actor = long_actor;
    KF_EXPECT_ERR(KF_E_INVALID, kf_store_write(s, kf_st_append_cb, &b));
    kf_st_log_read(s, INT64_MIN, &l);
    assert_int_equal(l.n, 0);
    kf_store_close(s);
}

/* The hash as the format says: SHA-256 over the tag and each field, 8-byte length-prefixed. */
static void reference_hash(const struct kf_audit_rec *r, char *hex)
{
    const char *fields[] = {
        "keyfleet-audit-v1",          NULL,        NULL, r->actor, r->action, r->object,
        r->detail ? r->detail : "{}", r->prev_hash};
    unsigned char ints[2][8], md[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    for (int i = 0; i < 8; i++) {
        ints[0][i] = (unsigned char)((uint64_t)r->seq >> (56 - 8 * i));
        ints[1][i] = (unsigned char)((uint64_t)r->time_ms >> (56 - 8 * i));
    }
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    for (size_t f = 0; f < KF_ARRAY_LEN(fields); f++) {
        const unsigned char *p = f == 1 || f == 2 ? ints[f - 1] : (const unsigned char *)fields[f];
        uint64_t n = f == 1 || f == 2 ? 8 : strlen(fields[f]);
        unsigned char len[8];
        for (int i = 0; i < 8; i++)
            len[i] = (unsigned char)(n >> (56 - 8 * i));
        EVP_DigestUpdate(ctx, len, 8);
        EVP_DigestUpdate(ctx, p, n);
    }
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void test_hash(void **state)
{
    struct kf_audit_rec r, m;
    char h[KF_HASH_HEX], h2[KF_HASH_HEX], want[KF_HASH_HEX];

    memset(&r, 0, sizeof(r));
    r.seq = 7;
    r.time_ms = 1700000000123;
    snprintf(r.actor, sizeof(r.actor), "operator:alice");
    snprintf(r.action, sizeof(r.action), "cert.revoke");
    snprintf(r.object, sizeof(r.object), "cert:3fa2");
    r.detail = "{\"reason\": \"key-compromise\"}";
    snprintf(r.prev_hash, sizeof(r.prev_hash), "%s", ZERO64);

    kf_audit_hash(&r, h);
    kf_audit_hash(&r, h2);
    assert_string_equal(h, h2); /* deterministic */
    assert_int_equal(strlen(h), 64);
    assert_int_equal(strspn(h, "0123456789abcdef"), 64);
    reference_hash(&r, want);
    assert_string_equal(h, want);

    /* Every field is covered. */
#define CHANGED(mutation)                                                    \
    do {                                                                     \
        m = r;                                                               \
        mutation;                                                            \
        kf_audit_hash(&m, h2);                                               \
        if (strcmp(h, h2) == 0) fail_msg("the hash ignores: %s", #mutation); \
    } while (0)
    CHANGED(m.seq = 8);
    CHANGED(m.time_ms += 1);
    CHANGED(m.actor[0] = 'O');
    CHANGED(m.action[0] = 'C');
    CHANGED(m.object[5] = 'X');
    CHANGED(m.detail = "{\"reason\": \"superseded\"}");
    CHANGED(m.prev_hash[63] = '1');
    /* Field boundaries cannot be shifted: "ab"+"c" is not "a"+"bc". */
    CHANGED((snprintf(m.actor, sizeof(m.actor), "operator:alicecert.revoke"), m.action[0] = '\0'));
#undef CHANGED

    /* A NULL detail is the empty object. */
    m = r;
    m.detail = NULL;
    kf_audit_hash(&m, h);
    m.detail = "{}";
    kf_audit_hash(&m, h2);
    assert_string_equal(h, h2);
}

/* ---- verification ---- */

static void test_verify_empty(void **state)
{
    struct kf_store *s = kf_st_open(kf_test_store_url("empty"), KF_STORE_CREATE);
    struct kf_audit_verdict v;
    KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
    assert_int_equal(v.fault, KF_AUDIT_INTACT);
    assert_int_equal(v.records, 0);
    assert_string_equal(v.head, "");
    /* Nothing can be cut off a log that expects nothing; a log that expected a head lost it. */
    KF_EXPECT_ERR(KF_E_TAMPERED, kf_st_verify(s, ZERO64, &v));
    assert_int_equal(v.fault, KF_AUDIT_HEAD);
    KF_EXPECT_ERR(KF_E_INVALID, kf_st_verify(s, "not-a-hash", &v));
    KF_EXPECT_MSG("the expected head is not a SHA-256 hash");
    kf_store_close(s);
}

/*
 * The expected head may be given in upper case, as it may have been copied. (The head gone, the
 * log cut off: sqlite.c's test_audit_cut_off.)
 */
static void test_verify_head_any_case(void **state)
{
    struct kf_store *s = kf_st_open(kf_test_store_url("upper"), KF_STORE_CREATE);
    char head[KF_HASH_HEX], upper[KF_HASH_HEX];
    struct kf_audit_verdict v;

    kf_st_append_n(s, 5);
    KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
    memcpy(head, v.head, KF_HASH_HEX);
    for (int i = 0; i < KF_HASH_HEX; i++)
        upper[i] = (char)(head[i] >= 'a' && head[i] <= 'f' ? head[i] - 'a' + 'A' : head[i]);
    KF_OK_OR_FAIL(kf_st_verify(s, upper, &v));
    kf_store_close(s);
}

/* ---- concurrency ---- */

#define THREADS 8
#define APPENDS 50

struct appender {
    struct kf_store *s;
    int n, failures;
    pthread_t th;
};

static void *appender_main(void *a)
{
    struct appender *p = a;
    for (int i = 0; i < APPENDS; i++) {
        char object[64];
        struct kf_st_entry e = {"keyfleetd", "cert.issue", object, NULL};
        struct kf_st_batch b = {&e, 1};
        snprintf(object, sizeof(object), "cert:%02x%02x", p->n, i);
        if (kf_store_write(p->s, kf_st_append_cb, &b)) p->failures++;
    }
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    struct kf_store *s = kf_st_open(kf_test_store_url("concurrent"), KF_STORE_CREATE);
    struct appender p[THREADS];
    struct kf_store_stats st;
    struct kf_audit_verdict v;

    for (int i = 0; i < THREADS; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        p[i].s = s;
        p[i].n = i;
        assert_int_equal(pthread_create(&p[i].th, NULL, appender_main, &p[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(p[i].th, NULL);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(p[i].failures, 0);
    kf_store_stats(s, &st);
    /* Appends shared commits, and still form one unbroken chain. */
    assert_true(st.commits < st.writes);
    KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
    assert_int_equal(v.records, THREADS * APPENDS);
    kf_store_close(s);
}

/* Two processes appending to the same store at once (keyfleetd and the CLI) chain correctly. */
static void test_two_processes_append(void **state)
{
    const char *url = kf_test_store_url("processes");
    struct kf_audit_verdict v;
    struct kf_store *s;
    int status = 0;
    pid_t pid;

    s = kf_st_open(url, KF_STORE_CREATE);
    kf_store_close(s);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct kf_store *cs = NULL;
        int bad = kf_store_open(url, 0, &cs) != KF_OK;
        for (int i = 0; i < 100 && !bad; i++) {
            struct kf_st_entry e = {"operator:cli", "device.disable", "device:x", NULL};
            struct kf_st_batch b = {&e, 1};
            bad = kf_store_write(cs, kf_st_append_cb, &b) != KF_OK;
        }
        kf_store_close(cs);
        _exit(bad);
    }
    s = kf_st_open(url, 0);
    for (int i = 0; i < 100; i++)
        kf_st_append(s, "keyfleetd", "cert.issue", "cert:0a", NULL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    KF_OK_OR_FAIL(kf_st_verify(s, NULL, &v));
    assert_int_equal(v.records, 200);
    kf_store_close(s);
}

static void test_fault_names(void **state)
{
    assert_string_equal(kf_audit_fault_name(KF_AUDIT_INTACT), "intact");
    assert_string_equal(kf_audit_fault_name(KF_AUDIT_ALTERED), "altered");
    assert_string_equal(kf_audit_fault_name(KF_AUDIT_DELETED), "deleted");
    assert_string_equal(kf_audit_fault_name(KF_AUDIT_REORDERED), "reordered");
    assert_string_equal(kf_audit_fault_name(KF_AUDIT_BROKEN), "broken");
    assert_string_equal(kf_audit_fault_name(KF_AUDIT_HEAD), "truncated");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_chain),
        cmocka_unit_test(test_append_refuses_bad_input),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_verify_empty),
        cmocka_unit_test(test_verify_head_any_case),
        cmocka_unit_test(test_concurrent_appends),
        cmocka_unit_test(test_two_processes_append),
        cmocka_unit_test(test_fault_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
