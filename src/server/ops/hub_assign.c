/* Hub allocation: static, or weighted rendezvous hashing. hub_assign.h fixes the score. */
#include "server/ops/hub_assign.h"

#include <float.h>
#include <string.h>

/*
 * The score must come out bit for bit the same everywhere: IEEE-754 doubles evaluated at their
 * own precision (not x87's), and no fused multiply-add, which rounds once where the source says
 * twice. GCC fuses only outside ISO C mode (the build uses -std=c11); clang obeys the pragma.
 */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "alloc.c needs doubles evaluated in double precision (FLT_EVAL_METHOD 0)"
#endif
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
#error "alloc.c must be compiled in ISO C mode (-std=c11): GCC would fuse multiply-adds"
#endif

/* ---- SipHash-2-4, streamed a byte at a time ---- */

struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* bytes of the current 8-byte block, little-endian */
    size_t len;    /* bytes hashed so far */
};

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void sip_round(struct sip *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void sip_init(struct sip *s, const unsigned char key[16])
{
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    s->v0 = k0 ^ 0x736f6d6570736575ULL;
    s->v1 = k1 ^ 0x646f72616e646f6dULL;
    s->v2 = k0 ^ 0x6c7967656e657261ULL;
    s->v3 = k1 ^ 0x7465646279746573ULL;
    s->tail = 0;
    s->len = 0;
}

static void sip_compress(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

static void sip_update(struct sip *s, const void *in, size_t n)
{
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        s->tail |= (uint64_t)p[i] << (8 * (s->len % 8));
        if (++s->len % 8 == 0) {
            sip_compress(s, s->tail);
            s->tail = 0;
        }
    }
}

static uint64_t sip_final(struct sip *s)
{
    sip_compress(s, s->tail | (uint64_t)s->len << 56);
    s->v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t kf_hub_assign_siphash(const unsigned char key[16], const void *in, size_t n)
{
    struct sip s;
    sip_init(&s, key);
    sip_update(&s, in, n);
    return sip_final(&s);
}

static const unsigned char alloc_key[16] = {'k', 'e', 'y', 'f', 'l', 'e', 'e', 't',
                                            '-', 'a', 'l', 'l', 'o', 'c', '-', '1'};

uint64_t kf_hub_assign_hash(const char *hub, const char *device_id)
{
    struct sip s;
    sip_init(&s, alloc_key);
    sip_update(&s, hub, strlen(hub));
    sip_update(&s, "", 1);
    sip_update(&s, device_id, strlen(device_id));
    return sip_final(&s);
}

/* ---- the score ---- */

#define LN2   0.69314718055994530942 /* rounds to the double nearest ln 2 */
#define SQRT2 1.41421356237309504880

/*
 * ln(q / 2^53) for an odd q < 2^53, from basic IEEE operations only. With q / 2^53 = m * 2^e and
 * m in (sqrt(1/2), sqrt(2)], ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) where
 * s = (m - 1) / (m + 1), |s| < 0.172; twelve terms leave an error far below a double's last bit.
 */
static double ln_unit(uint64_t q)
{
    int bits = 64 - __builtin_clzll(q);                  /* q in [2^(bits-1), 2^bits) */
    double m = (double)q / (double)(1ULL << (bits - 1)); /* exact: in [1, 2) */
    int e = bits - 1 - 53;
    double s, z, p;

    if (m > SQRT2) {
        m /= 2; /* exact */
        e += 1;
    }
    s = (m - 1) / (m + 1);
    z = s * s;
    p = 1.0 / 23;
    p = p * z + 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    p = p * z + 1.0;
    return (double)e * LN2 + 2 * s * p;
}

double kf_hub_assign_score(int weight, uint64_t h)
{
    /* U = ((h >> 12) + 0.5) / 2^52 = (2 (h >> 12) + 1) / 2^53: exact, and never 0 or 1. */
    uint64_t q = 2 * (h >> 12) + 1;
    return -(double)weight / ln_unit(q);
}

/* ---- allocation ---- */

static int name_ok(const struct kf_hub_rec *h)
{
    return memchr(h->name, '\0', sizeof(h->name)) != NULL;
}

static enum kf_err alloc_static(const struct kf_hub_rec *hubs, size_t n, const char *name,
                                struct kf_hub_rec *out)
{
    if (!name || !*name) return kf_fail(KF_E_INVALID, "static allocation names no hub");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(hubs[i].name, name) != 0) continue;
        if (!hubs[i].enabled)
            return kf_fail(KF_E_DISABLED, "hub \"%.*s\" of the static allocation is disabled",
                           KF_ID_MAX, name);
        *out = hubs[i];
        return KF_OK;
    }
    return kf_fail(KF_E_NOT_FOUND, "hub \"%.*s\" of the static allocation does not exist",
                   KF_ID_MAX, name);
}

static enum kf_err alloc_hashed(const struct kf_hub_rec *hubs, size_t n, const char *device_id,
                                struct kf_hub_rec *out)
{
    const struct kf_hub_rec *best = NULL;
    double best_score = 0;

    for (size_t i = 0; i < n; i++) {
        const struct kf_hub_rec *h = &hubs[i];
        double score;
        if (!h->enabled || h->weight <= 0) continue;
        score = kf_hub_assign_score(h->weight, kf_hub_assign_hash(h->name, device_id));
        if (!best || score > best_score ||
            (score == best_score && strcmp(h->name, best->name) < 0)) {
            best = h;
            best_score = score;
        }
    }
    if (!best) return kf_fail(KF_E_NOT_FOUND, "no enabled hub to assign");
    *out = *best;
    return KF_OK;
}

enum kf_err kf_hub_assign(const struct kf_hub_rec *hubs, size_t n, const char *device_id,
                          const char *policy, const char *static_hub, struct kf_hub_rec *out)
{
    size_t id_len;

    if (n > KF_ALLOC_HUBS_MAX)
        return kf_fail(KF_E_INVALID, "%zu hubs to allocate from, more than the %d allowed", n,
                       KF_ALLOC_HUBS_MAX);
    if (n && !hubs) return kf_fail(KF_E_INVALID, "no hub list to allocate from");
    for (size_t i = 0; i < n; i++)
        if (!name_ok(&hubs[i])) return kf_fail(KF_E_INVALID, "hub %zu has no valid name", i);
    id_len = device_id ? strnlen(device_id, KF_ID_MAX + 1) : 0;
    if (id_len == 0 || id_len > KF_ID_MAX)
        return kf_fail(KF_E_INVALID, "cannot allocate a hub without a device id of 1 to %d bytes",
                       KF_ID_MAX);

    if (!policy || !*policy || strcmp(policy, "hashed") == 0)
        return alloc_hashed(hubs, n, device_id, out);
    if (strcmp(policy, "static") == 0) return alloc_static(hubs, n, static_hub, out);
    return kf_fail(KF_E_INVALID, "unknown allocation policy \"%.32s\" (expected hashed or static)",
                   policy);
}
