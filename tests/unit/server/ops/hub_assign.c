/* alloc: the hash and score pinned, weights honoured, and devices moved only when they must. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "server/ops/hub_assign.h"

#define IDS 100000

static struct kf_hub_rec hub(const char *name, int weight, int enabled)
{
    struct kf_hub_rec h;
    memset(&h, 0, sizeof(h));
    snprintf(h.name, sizeof(h.name), "%s", name);
    snprintf(h.endpoint, sizeof(h.endpoint), "%s.example.com:8883", name);
    h.weight = weight;
    h.enabled = enabled;
    return h;
}

static void device_id(int i, char *out, size_t cap)
{
    snprintf(out, cap, "dev-%06d", i);
}

/* The hub `hubs` give each of IDS devices, as an index into `hubs` (hashed policy). */
static void assign_all(const struct kf_hub_rec *hubs, size_t n, int *out)
{
    char id[32];
    struct kf_hub_rec got;
    for (int i = 0; i < IDS; i++) {
        device_id(i, id, sizeof(id));
        KF_OK_OR_FAIL(kf_hub_assign(hubs, n, id, "hashed", NULL, &got));
        out[i] = -1;
        for (size_t k = 0; k < n; k++)
            if (strcmp(hubs[k].name, got.name) == 0) out[i] = (int)k;
        assert_true(out[i] >= 0);
    }
}

/* SipHash-2-4 by OpenSSL, the independent judge. */
static uint64_t openssl_siphash(const unsigned char key[16], const void *in, size_t n)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    EVP_MAC_CTX *ctx;
    unsigned char out[8];
    size_t len = 0;
    size_t size = 8;
    OSSL_PARAM params[] = {OSSL_PARAM_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_END};
    uint64_t v = 0;

    assert_non_null(mac);
    ctx = EVP_MAC_CTX_new(mac);
    assert_non_null(ctx);
    assert_int_equal(EVP_MAC_init(ctx, key, 16, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, in, n), 1);
    assert_int_equal(EVP_MAC_final(ctx, out, &len, sizeof(out)), 1);
    assert_int_equal(len, 8);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    for (int i = 7; i >= 0; i--)
        v = v << 8 | out[i];
    return v;
}

static void test_siphash(void **state)
{
    unsigned char key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
    /* The published vectors: the paper's example (15 bytes) and the empty message. */
    assert_true(kf_hub_assign_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
    assert_true(kf_hub_assign_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    /* Every length across block boundaries, against OpenSSL. */
    for (size_t n = 0; n <= 64; n++)
        assert_true(kf_hub_assign_siphash(key, msg, n) == openssl_siphash(key, msg, n));
    /* kf_hub_assign_hash is the keyed hash of "hub\0device". */
    assert_true(kf_hub_assign_hash("hub-a", "dev-1") ==
                openssl_siphash((const unsigned char *)"keyfleet-alloc-1", "hub-a\0dev-1", 11));
}

/*
 * Values fixed once and forever: computed by an independent implementation of what hub_assign.h
 * specifies (Python: its own SipHash-2-4 and math.log). If this test fails, devices would move
 * between hubs on upgrade: change the code back, never the numbers.
 */
static void test_pinned(void **state)
{
    static const struct {
        const char *hub, *device;
        uint64_t h;
    } hashes[] = {
        {"hub-a", "dev-1", 0xc31ffcb341ef0950ULL},
        {"hub-b", "dev-1", 0xb1cd3792f11cd59fULL},
        {"eu-west-1", "sensor-0001", 0x74b3e8d451127417ULL},
    };
    static const struct {
        uint64_t h;
        int weight;
        double score;
    } scores[] = {
        {0, 1, 0.027220661148848368},
        {0, 3, 0.0816619834465451},
        {0xffffffffffffffffULL, 1, 9007199254740992.0},
        {0x8000000000000000ULL, 1, 1.4426950408889638},
        {0x0123456789abcdefULL, 3, 0.5539040596032807},
        {0xfedcba9876543210ULL, 3, 673.4988864127935},
    };
    static const struct {
        const char *device, *hub;
    } picks[] = {
        {"dev-1", "hub-b"},
        {"dev-2", "hub-c"},
        {"dev-3", "hub-c"},
        {"sensor-0001", "hub-c"},
        {"gw.plant-7:line-3", "hub-c"},
        {"x", "hub-b"},
        {"0", "hub-c"},
        {"dev-100000", "hub-c"},
    };
    const struct kf_hub_rec hubs[] = {hub("hub-a", 1, 1), hub("hub-b", 2, 1), hub("hub-c", 3, 1)};
    struct kf_hub_rec got;

    for (size_t i = 0; i < KF_ARRAY_LEN(hashes); i++)
        if (kf_hub_assign_hash(hashes[i].hub, hashes[i].device) != hashes[i].h)
            fail_msg("hash of (%s, %s) changed", hashes[i].hub, hashes[i].device);
    /* Our ln agrees with libm's to within a few units in the last place. */
    for (size_t i = 0; i < KF_ARRAY_LEN(scores); i++) {
        double s = kf_hub_assign_score(scores[i].weight, scores[i].h), want = scores[i].score;
        double rel = (s - want) / want;
        if (rel > 1e-15 || rel < -1e-15)
            fail_msg("score of %d, %016llx is %.17g, expected %.17g", scores[i].weight,
                     (unsigned long long)scores[i].h, s, want);
    }
    for (size_t i = 0; i < KF_ARRAY_LEN(picks); i++) {
        KF_OK_OR_FAIL(kf_hub_assign(hubs, 3, picks[i].device, "hashed", NULL, &got));
        if (strcmp(got.name, picks[i].hub) != 0)
            fail_msg("%s went to %s, expected %s", picks[i].device, got.name, picks[i].hub);
    }
}

/* The exact bits of a few scores: the guard against a compiler fusing or reordering the math. */
static void test_score_bits(void **state)
{
    static const struct {
        uint64_t h;
        int weight;
        double bits;
    } exact[] = {
        {0, 1, 0x1.bdfbba5a3a303p-6},
        {0x8000000000000000ULL, 1, 0x1.71547652b83p+0},
        {0x0123456789abcdefULL, 3, 0x1.1b99501a3c468p-1},
        {0xfedcba9876543210ULL, 3, 0x1.50bfdb828daeep+9},
        {0xffffffffffffffffULL, 1, 0x1p+53},
        {0x1000ULL, 1, 0x1.cbbb47b609816p-6},
        {0x7fffffffffffffffULL, 2, 0x1.71547652b82fcp+1},
    };
    for (size_t i = 0; i < KF_ARRAY_LEN(exact); i++) {
        double s = kf_hub_assign_score(exact[i].weight, exact[i].h);
        if (memcmp(&s, &exact[i].bits, sizeof(s)) != 0)
            fail_msg("score %zu is %a, pinned %a", i, s, exact[i].bits);
    }
}

static void test_distribution(void **state)
{
    const struct kf_hub_rec hubs[] = {hub("hub-a", 1, 1), hub("hub-b", 2, 1), hub("hub-c", 3, 1)};
    int *where = malloc(IDS * sizeof(*where));
    int count[3] = {0};
    char id[32];
    struct kf_hub_rec again;

    assign_all(hubs, 3, where);
    for (int i = 0; i < IDS; i++)
        count[where[i]]++;
    for (int k = 0; k < 3; k++) {
        double share = (double)count[k] / IDS, want = (k + 1) / 6.0;
        print_message("%s (weight %d): %.4f of devices, expected %.4f\n", hubs[k].name,
                      hubs[k].weight, share, want);
        assert_true(share > want - 0.02 && share < want + 0.02);
    }
    /* The same answer every time, with the whole record copied out. */
    for (int i = 0; i < IDS; i += 997) {
        device_id(i, id, sizeof(id));
        KF_OK_OR_FAIL(kf_hub_assign(hubs, 3, id, NULL, NULL, &again));
        assert_string_equal(again.name, hubs[where[i]].name);
        assert_string_equal(again.endpoint, hubs[where[i]].endpoint);
        assert_int_equal(again.weight, hubs[where[i]].weight);
    }
    free(where);
}

static void test_order_does_not_matter(void **state)
{
    const struct kf_hub_rec fwd[] = {hub("hub-a", 1, 1), hub("hub-b", 2, 1), hub("hub-c", 3, 1),
                                     hub("hub-d", 1, 1)};
    const struct kf_hub_rec rev[] = {fwd[3], fwd[2], fwd[1], fwd[0]};
    struct kf_hub_rec a, b;
    char id[32];
    for (int i = 0; i < 5000; i++) {
        device_id(i, id, sizeof(id));
        KF_OK_OR_FAIL(kf_hub_assign(fwd, 4, id, "", NULL, &a));
        KF_OK_OR_FAIL(kf_hub_assign(rev, 4, id, "hashed", NULL, &b));
        assert_string_equal(a.name, b.name);
    }
}

static void test_adding_a_hub(void **state)
{
    /* hub-d is added last; the others keep their indexes. */
    const struct kf_hub_rec before[] = {hub("hub-a", 1, 1), hub("hub-b", 2, 1), hub("hub-c", 3, 1)};
    const struct kf_hub_rec after[] = {before[0], before[1], before[2], hub("hub-d", 2, 1)};
    int *was = malloc(IDS * sizeof(*was)), *now = malloc(IDS * sizeof(*now));
    int moved = 0;

    assign_all(before, 3, was);
    assign_all(after, 4, now);
    for (int i = 0; i < IDS; i++) {
        if (was[i] == now[i]) continue;
        if (now[i] != 3) fail_msg("device %d moved from hub %d to hub %d", i, was[i], now[i]);
        moved++;
    }
    /* hub-d holds 2 of 8 weight units: about a quarter of the devices move, all to it. */
    print_message("adding hub-d moved %.4f of devices, expected 0.25\n", (double)moved / IDS);
    assert_true((double)moved / IDS > 0.23 && (double)moved / IDS < 0.27);
    free(was);
    free(now);
}

static void test_removing_or_disabling_a_hub(void **state)
{
    const struct kf_hub_rec all[] = {hub("hub-a", 1, 1), hub("hub-b", 2, 1), hub("hub-c", 3, 1)};
    const struct kf_hub_rec removed[] = {all[0], all[1]};
    const struct kf_hub_rec disabled[] = {all[0], all[1], hub("hub-c", 3, 0)};
    const struct kf_hub_rec drained[] = {all[0], all[1], hub("hub-c", 0, 1)};
    const struct kf_hub_rec *variants[] = {removed, disabled, drained};
    const size_t lens[] = {2, 3, 3};
    int *was = malloc(IDS * sizeof(*was)), *now = malloc(IDS * sizeof(*now));

    assign_all(all, 3, was);
    for (size_t v = 0; v < KF_ARRAY_LEN(variants); v++) {
        int from_c = 0, to_a = 0;
        assign_all(variants[v], lens[v], now);
        for (int i = 0; i < IDS; i++) {
            assert_true(now[i] != 2);
            if (was[i] != 2) {
                if (now[i] != was[i])
                    fail_msg("variant %zu: device %d left hub %d, which stayed", v, i, was[i]);
                continue;
            }
            from_c++;
            to_a += now[i] == 0;
        }
        /* hub-c's devices spread 1:2 over hub-a and hub-b. */
        assert_true((double)to_a / from_c > 1 / 3.0 - 0.02 &&
                    (double)to_a / from_c < 1 / 3.0 + 0.02);
    }
    free(was);
    free(now);
}

static void test_no_hub(void **state)
{
    const struct kf_hub_rec none_usable[] = {hub("hub-a", 1, 0), hub("hub-b", 0, 1),
                                             hub("hub-c", -5, 1)};
    struct kf_hub_rec got = hub("untouched", 1, 1);

    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_hub_assign(NULL, 0, "dev-1", "hashed", NULL, &got));
    KF_EXPECT_MSG("no enabled hub to assign");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_hub_assign(none_usable, 3, "dev-1", NULL, NULL, &got));
    KF_EXPECT_MSG("no enabled hub to assign");
    assert_string_equal(got.name, "untouched");
}

static void test_static(void **state)
{
    const struct kf_hub_rec hubs[] = {hub("hub-a", 1, 1), hub("hub-b", 0, 1), hub("hub-c", 3, 0)};
    struct kf_hub_rec got = hub("untouched", 1, 1);

    KF_OK_OR_FAIL(kf_hub_assign(hubs, 3, "dev-1", "static", "hub-a", &got));
    assert_string_equal(got.name, "hub-a");
    assert_string_equal(got.endpoint, "hub-a.example.com:8883");
    /* Weight 0 only keeps a hub out of hashing: named statically, it is used. */
    KF_OK_OR_FAIL(kf_hub_assign(hubs, 3, "dev-1", "static", "hub-b", &got));
    assert_string_equal(got.name, "hub-b");

    got = hub("untouched", 1, 1);
    KF_EXPECT_ERR(KF_E_DISABLED, kf_hub_assign(hubs, 3, "dev-1", "static", "hub-c", &got));
    KF_EXPECT_MSG("hub \"hub-c\" of the static allocation is disabled");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_hub_assign(hubs, 3, "dev-1", "static", "hub-z", &got));
    KF_EXPECT_MSG("hub \"hub-z\" of the static allocation does not exist");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_hub_assign(NULL, 0, "dev-1", "static", "hub-a", &got));
    KF_EXPECT_MSG("hub \"hub-a\" of the static allocation does not exist");
    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(hubs, 3, "dev-1", "static", NULL, &got));
    KF_EXPECT_MSG("static allocation names no hub");
    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(hubs, 3, "dev-1", "static", "", &got));
    KF_EXPECT_MSG("static allocation names no hub");
    assert_string_equal(got.name, "untouched");
}

static void test_bad_arguments(void **state)
{
    struct kf_hub_rec hubs[] = {hub("hub-a", 1, 1), hub("hub-b", 1, 1)};
    char long_id[KF_ID_MAX + 2];
    struct kf_hub_rec got;

    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(hubs, 2, "dev-1", "round-robin", NULL, &got));
    KF_EXPECT_MSG("unknown allocation policy \"round-robin\" (expected hashed or static)");
    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(hubs, 2, NULL, "hashed", NULL, &got));
    KF_EXPECT_MSG("without a device id");
    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(hubs, 2, "", "hashed", NULL, &got));
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(hubs, 2, long_id, "hashed", NULL, &got));
    long_id[KF_ID_MAX] = '\0';
    KF_OK_OR_FAIL(kf_hub_assign(hubs, 2, long_id, "hashed", NULL, &got));
    KF_EXPECT_ERR(KF_E_INVALID,
                  kf_hub_assign(hubs, KF_ALLOC_HUBS_MAX + 1, "dev-1", "hashed", NULL, &got));
    KF_EXPECT_MSG("more than the 4096 allowed");
    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(NULL, 2, "dev-1", "hashed", NULL, &got));
    /* A name that fills its field without a NUL is refused, not read past. */
    memset(hubs[1].name, 'b', sizeof(hubs[1].name));
    KF_EXPECT_ERR(KF_E_INVALID, kf_hub_assign(hubs, 2, "dev-1", "hashed", NULL, &got));
    KF_EXPECT_MSG("hub 1 has no valid name");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash),
        cmocka_unit_test(test_pinned),
        cmocka_unit_test(test_score_bits),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_order_does_not_matter),
        cmocka_unit_test(test_adding_a_hub),
        cmocka_unit_test(test_removing_or_disabling_a_hub),
        cmocka_unit_test(test_no_hub),
        cmocka_unit_test(test_static),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
