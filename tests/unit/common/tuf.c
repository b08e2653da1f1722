/*
 * tuf: the client workflow of TUF 1.0 section 5 over repositories made here with ed25519 and
 * P-256 keys: a good repository is accepted and its target verified as its bytes arrive; each
 * attack of section 1.5.2 is refused for its reason: arbitrary installation, endless data,
 * fast-forward, indefinite freeze, malicious mirrors, mix-and-match, rollback, key compromise
 * below the threshold (one key counted twice too); root rotation as the specification says.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/tuf.h"

#define NOW   1800000000L /* 2027-01-15 */
#define DAY   86400L
#define NKEYS 8

/* A repository: its keys and its four metadata documents. */
struct repo {
    EVP_PKEY *key[NKEYS];
    char keyid[NKEYS][KF_TUF_KEYID_HEX];
    json_t *root, *timestamp, *snapshot, *targets;
    unsigned char image[1000];
};

static json_t *metadata(const char *type, int version, long expires_in)
{
    char when[32];
    kf_tuf_time(NOW + expires_in, when, sizeof(when));
    return json_pack("{s:{s:s, s:s, s:i, s:s}, s:[]}", "signed", "_type", type, "spec_version",
                     KF_TUF_SPEC_VERSION, "version", version, "expires", when, "signatures");
}

static json_t *S(json_t *doc)
{
    return json_object_get(doc, "signed");
}

/* Root metadata `version`: role r's keys are key indexes in ids[r] (-1 ends), threshold th[r]. */
static json_t *root_of(struct repo *r, int version, const int ids[4][NKEYS + 1], const int th[4])
{
    static const char *const roles[] = {"root", "timestamp", "snapshot", "targets"};
    json_t *doc = metadata("root", version, 365 * DAY), *keys = json_object(), *rl = json_object();
    for (int i = 0; i < 4; i++) {
        json_t *kids = json_array();
        for (int j = 0; ids[i][j] >= 0; j++) {
            int k = ids[i][j];
            json_t *key = NULL;
            char id[KF_TUF_KEYID_HEX];
            KF_OK_OR_FAIL(kf_tuf_key_of(r->key[k], &key, id));
            json_object_set_new(keys, id, key);
            json_array_append_new(kids, json_string(id));
        }
        json_object_set_new(rl, roles[i],
                            json_pack("{s:o, s:i}", "keyids", kids, "threshold", th[i]));
    }
    json_object_set_new(S(doc), "keys", keys);
    json_object_set_new(S(doc), "roles", rl);
    json_object_set_new(S(doc), "consistent_snapshot", json_true());
    return doc;
}

static void sign(json_t *doc, struct repo *r, int k)
{
    KF_OK_OR_FAIL(kf_tuf_sign(doc, r->key[k]));
}

/* The file's bytes (owned). */
static uint8_t *bytes(const json_t *doc, size_t *len)
{
    struct kf_buf b;
    kf_buf_init(&b, 1 << 22);
    KF_OK_OR_FAIL(kf_tuf_text(doc, &b));
    return kf_buf_take(&b, len);
}

/* The "meta" entry for a file: its version, and length and sha256 when `b` is given. */
static json_t *meta(int version, const uint8_t *b, size_t len)
{
    json_t *e = json_pack("{s:i}", "version", version);
    if (b) {
        unsigned char h[32];
        char hex[65];
        unsigned n = 0;
        EVP_Digest(b, len, h, &n, EVP_sha256(), NULL);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", h[i]);
        json_object_set_new(e, "length", json_integer((json_int_t)len));
        json_object_set_new(e, "hashes", json_pack("{s:s}", "sha256", hex));
    }
    return e;
}

static void hex_hash(const EVP_MD *md, const void *p, size_t n, char *out)
{
    unsigned char h[64];
    unsigned len = 0;
    EVP_Digest(p, n, h, &len, md, NULL);
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/*
 * The repository: root 2-of-3 (keys 0 ed25519, 1 P-256, 2 ed25519), timestamp key 3, snapshot
 * key 4 (P-256), targets 2-of-2 (keys 5 ed25519, 6 P-256); one target, "fw-2.0.bin".
 */
static void repo_make(struct repo *r)
{
    static const int ids[4][NKEYS + 1] = {{0, 1, 2, -1}, {3, -1}, {4, -1}, {5, 6, -1}};
    static const int th[4] = {2, 1, 1, 2};
    char h256[129], h512[129];
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < NKEYS; i++)
        r->key[i] = i == 1 || i == 4 || i == 6 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                               : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    for (size_t i = 0; i < sizeof(r->image); i++)
        r->image[i] = (unsigned char)(i * 7);
    r->root = root_of(r, 1, ids, th);
    sign(r->root, r, 0);
    sign(r->root, r, 1);
    hex_hash(EVP_sha256(), r->image, sizeof(r->image), h256);
    hex_hash(EVP_sha512(), r->image, sizeof(r->image), h512);
    r->targets = metadata("targets", 1, 90 * DAY);
    json_object_set_new(S(r->targets), "targets",
                        json_pack("{s:{s:i, s:{s:s, s:s}, s:{s:s, s:i}}}", "fw-2.0.bin", "length",
                                  (int)sizeof(r->image), "hashes", "sha256", h256, "sha512", h512,
                                  "custom", "hardware", "gw-a", "version", 20000));
    sign(r->targets, r, 5);
    sign(r->targets, r, 6);
}

/* Snapshot `sv` naming targets version `tv`, and timestamp `tsv` naming the snapshot. */
static void publish(struct repo *r, int sv, int tv, int tsv)
{
    size_t tl, sl;
    uint8_t *tb = bytes(r->targets, &tl), *sb;
    json_decref(r->snapshot);
    json_decref(r->timestamp);
    r->snapshot = metadata("snapshot", sv, 7 * DAY);
    json_object_set_new(S(r->snapshot), "meta",
                        json_pack("{s:o}", "targets.json", meta(tv, tb, tl)));
    sign(r->snapshot, r, 4);
    sb = bytes(r->snapshot, &sl);
    r->timestamp = metadata("timestamp", tsv, 1 * DAY);
    json_object_set_new(S(r->timestamp), "meta",
                        json_pack("{s:o}", "snapshot.json", meta(sv, sb, sl)));
    sign(r->timestamp, r, 3);
    free(tb);
    free(sb);
}

static void repo_free(struct repo *r)
{
    for (int i = 0; i < NKEYS; i++)
        EVP_PKEY_free(r->key[i]);
    json_decref(r->root);
    json_decref(r->timestamp);
    json_decref(r->snapshot);
    json_decref(r->targets);
}

/* Feeds `doc` to the update call of its role; returns the verdict. */
static enum kf_tuf_refusal feed(struct kf_tuf_trusted *t, enum kf_tuf_role role, const json_t *doc,
                                time_t now, int local)
{
    size_t len;
    uint8_t *b = bytes(doc, &len);
    enum kf_tuf_refusal v = KF_TUF_ORDER;
    switch (role) {
    case KF_TUF_ROOT: v = kf_tuf_update_root(t, b, len); break;
    case KF_TUF_TIMESTAMP: v = kf_tuf_update_timestamp(t, b, len, now); break;
    case KF_TUF_SNAPSHOT: v = kf_tuf_update_snapshot(t, b, len, now, local); break;
    case KF_TUF_TARGETS: v = kf_tuf_update_targets(t, b, len, now, local); break;
    default: break;
    }
    free(b);
    return v;
}

static struct kf_tuf_trusted *trust(const struct repo *r)
{
    struct kf_tuf_trusted *t = NULL;
    size_t len;
    uint8_t *b = bytes(r->root, &len);
    assert_int_equal(kf_tuf_trusted_new(b, len, &t), KF_TUF_OK);
    free(b);
    return t;
}

/* Root, timestamp, snapshot, targets: what a client does each time. */
static enum kf_tuf_refusal refresh(struct kf_tuf_trusted *t, struct repo *r, time_t now)
{
    enum kf_tuf_refusal v = kf_tuf_root_done(t, now);
    if (!v) v = feed(t, KF_TUF_TIMESTAMP, r->timestamp, now, 0);
    if (!v) v = feed(t, KF_TUF_SNAPSHOT, r->snapshot, now, 0);
    if (!v) v = feed(t, KF_TUF_TARGETS, r->targets, now, 0);
    return v;
}

static void test_good_repository(void **state)
{
    struct repo r;
    struct kf_tuf_trusted *t;
    struct kf_tuf_target tg;
    struct kf_tuf_stream s;

    repo_make(&r);
    publish(&r, 1, 1, 1);
    t = trust(&r);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_OK);
    assert_int_equal(kf_tuf_version(t, KF_TUF_TARGETS), 1);
    assert_true(kf_tuf_consistent_snapshot(t));
    assert_int_equal(kf_tuf_target(t, "fw-2.0.bin", &tg), KF_TUF_OK);
    assert_int_equal(tg.length, sizeof(r.image));
    assert_string_equal(json_string_value(json_object_get(tg.custom, "hardware")), "gw-a");
    /* The image in pieces, as it arrives. */
    KF_OK_OR_FAIL(kf_tuf_stream_init(&s, &tg));
    assert_int_equal(kf_tuf_stream_update(&s, r.image, 300), KF_TUF_OK);
    assert_int_equal(kf_tuf_stream_update(&s, r.image + 300, sizeof(r.image) - 300), KF_TUF_OK);
    assert_int_equal(kf_tuf_stream_final(&s), KF_TUF_OK);
    assert_int_equal(kf_tuf_target(t, "fw-9.9.bin", &tg), KF_TUF_UNKNOWN);
    /* KF_TUF_SEED=FILE writes this repository as the fuzz target's input (fuzz/tuf.c). */
    if (getenv("KF_TUF_SEED")) {
        FILE *f = fopen(getenv("KF_TUF_SEED"), "wb");
        const json_t *docs[] = {r.root, r.timestamp, r.snapshot, r.targets};
        for (size_t i = 0; f && i < KF_ARRAY_LEN(docs); i++) {
            size_t len;
            uint8_t *b = bytes(docs[i], &len);
            fwrite(b, 1, len, f);
            fputs("\n--\n", f);
            free(b);
        }
        if (f) fwrite(r.image, 1, sizeof(r.image), f);
        if (f) fclose(f);
    }
    kf_tuf_trusted_free(t);
    repo_free(&r);
}

/* Arbitrary installation and endless data: the bytes are held to what the targets signed. */
static void test_target_bytes(void **state)
{
    struct repo r;
    struct kf_tuf_trusted *t;
    struct kf_tuf_target tg;
    struct kf_tuf_stream s;
    unsigned char evil[sizeof(r.image) + 1];

    repo_make(&r);
    publish(&r, 1, 1, 1);
    t = trust(&r);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_OK);
    assert_int_equal(kf_tuf_target(t, "fw-2.0.bin", &tg), KF_TUF_OK);
    memcpy(evil, r.image, sizeof(r.image));
    evil[500] ^= 1;
    KF_OK_OR_FAIL(kf_tuf_stream_init(&s, &tg));
    kf_tuf_stream_update(&s, evil, sizeof(r.image));
    assert_int_equal(kf_tuf_stream_final(&s), KF_TUF_HASH);
    /* One byte more than signed: refused as it arrives. */
    KF_OK_OR_FAIL(kf_tuf_stream_init(&s, &tg));
    assert_int_equal(kf_tuf_stream_update(&s, r.image, sizeof(r.image)), KF_TUF_OK);
    assert_int_equal(kf_tuf_stream_update(&s, "x", 1), KF_TUF_TOO_LONG);
    kf_tuf_stream_free(&s);
    /* One byte short. */
    KF_OK_OR_FAIL(kf_tuf_stream_init(&s, &tg));
    kf_tuf_stream_update(&s, r.image, sizeof(r.image) - 1);
    assert_int_equal(kf_tuf_stream_final(&s), KF_TUF_HASH);
    kf_tuf_trusted_free(t);
    repo_free(&r);
}

/* Malicious mirrors and stolen keys below the threshold: signatures are counted, once a key. */
static void test_signatures(void **state)
{
    struct repo r;
    struct kf_tuf_trusted *t;
    json_t *copy, *sigs;

    repo_make(&r);
    publish(&r, 1, 1, 1);

    /* Targets signed by one of its two keys: below the threshold. */
    t = trust(&r);
    copy = json_deep_copy(r.targets);
    json_array_clear(json_object_get(copy, "signatures"));
    sign(copy, &r, 5);
    json_decref(r.targets);
    r.targets = copy;
    publish(&r, 1, 1, 1);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_SIGNATURES);
    kf_tuf_trusted_free(t);

    /* ... and that one signature twice: still one key. */
    t = trust(&r);
    sigs = json_object_get(r.targets, "signatures");
    json_array_append(sigs, json_array_get(sigs, 0));
    publish(&r, 1, 1, 1);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_SIGNATURES);
    kf_tuf_trusted_free(t);

    /* Signed by the timestamp key (an online key) instead of a targets key. */
    t = trust(&r);
    json_array_clear(sigs);
    sign(r.targets, &r, 3);
    sign(r.targets, &r, 5);
    publish(&r, 1, 1, 1);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_SIGNATURES);
    kf_tuf_trusted_free(t);

    /* A changed byte after signing: no signature holds. */
    t = trust(&r);
    json_array_clear(sigs);
    sign(r.targets, &r, 5);
    sign(r.targets, &r, 6);
    json_object_set_new(json_object_get(json_object_get(S(r.targets), "targets"), "fw-2.0.bin"),
                        "length", json_integer(999));
    publish(&r, 1, 1, 1);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_SIGNATURES);
    kf_tuf_trusted_free(t);

    /* A timestamp signed by a key that is no timestamp key. */
    repo_free(&r);
    repo_make(&r);
    publish(&r, 1, 1, 1);
    t = trust(&r);
    json_array_clear(json_object_get(r.timestamp, "signatures"));
    sign(r.timestamp, &r, 7);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_SIGNATURES);
    kf_tuf_trusted_free(t);
    repo_free(&r);
}

/* Indefinite freeze: expired metadata is refused at the time the client trusts. */
static void test_freeze(void **state)
{
    struct repo r;
    struct kf_tuf_trusted *t;
    repo_make(&r);
    publish(&r, 1, 1, 1);
    t = trust(&r);
    assert_int_equal(refresh(t, &r, NOW + 2 * DAY), KF_TUF_EXPIRED); /* the timestamp's day */
    kf_tuf_trusted_free(t);
    t = trust(&r);
    assert_int_equal(kf_tuf_root_done(t, NOW + 400 * DAY), KF_TUF_EXPIRED);
    kf_tuf_trusted_free(t);
    /* A fresh timestamp over a stale snapshot. */
    json_object_set_new(S(r.snapshot), "expires", json_string("2020-01-01T00:00:00Z"));
    {
        size_t sl;
        uint8_t *sb;
        json_array_clear(json_object_get(r.snapshot, "signatures"));
        sign(r.snapshot, &r, 4);
        sb = bytes(r.snapshot, &sl);
        json_object_set_new(json_object_get(S(r.timestamp), "meta"), "snapshot.json",
                            meta(1, sb, sl));
        json_array_clear(json_object_get(r.timestamp, "signatures"));
        sign(r.timestamp, &r, 3);
        free(sb);
    }
    t = trust(&r);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_EXPIRED);
    kf_tuf_trusted_free(t);
    repo_free(&r);
}

/* Rollback and mix-and-match: versions only go up, and each is the one named above it. */
static void test_versions(void **state)
{
    struct repo r;
    struct kf_tuf_trusted *t;
    json_t *old_ts, *old_snap;

    repo_make(&r);
    publish(&r, 1, 1, 1);
    old_ts = json_incref(r.timestamp);
    old_snap = json_incref(r.snapshot);
    publish(&r, 2, 1, 2);

    /* A timestamp older than the trusted one. */
    t = trust(&r);
    assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.timestamp, NOW, 0), KF_TUF_OK);
    assert_int_equal(feed(t, KF_TUF_TIMESTAMP, old_ts, NOW, 0), KF_TUF_ROLLBACK);
    assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.timestamp, NOW, 0), KF_TUF_UNCHANGED);
    kf_tuf_trusted_free(t);

    /* A snapshot other than the one the timestamp names: its bytes differ (hash), and with no
     * hash given, its version (mix-and-match). */
    t = trust(&r);
    assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.timestamp, NOW, 0), KF_TUF_OK);
    assert_int_equal(feed(t, KF_TUF_SNAPSHOT, old_snap, NOW, 0), KF_TUF_HASH);
    assert_int_equal(feed(t, KF_TUF_SNAPSHOT, old_snap, NOW, 1), KF_TUF_MIX_AND_MATCH);
    kf_tuf_trusted_free(t);

    /* A newer timestamp naming an older snapshot than the trusted timestamp did. */
    t = trust(&r);
    assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.timestamp, NOW, 0), KF_TUF_OK);
    json_object_set_new(S(old_ts), "version", json_integer(3));
    json_array_clear(json_object_get(old_ts, "signatures"));
    sign(old_ts, &r, 3);
    assert_int_equal(feed(t, KF_TUF_TIMESTAMP, old_ts, NOW, 0), KF_TUF_ROLLBACK);
    kf_tuf_trusted_free(t);

    /* A snapshot that takes targets.json back from the version the kept snapshot gives. */
    {
        json_t *kept;
        json_object_set_new(S(r.targets), "version", json_integer(4));
        json_array_clear(json_object_get(r.targets, "signatures"));
        sign(r.targets, &r, 5);
        sign(r.targets, &r, 6);
        publish(&r, 5, 4, 5);
        kept = json_incref(r.snapshot); /* the client kept snapshot 5 (targets 4) */
        publish(&r, 6, 3, 6);           /* the repository now names targets 3 */
        t = trust(&r);
        assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.timestamp, NOW, 0), KF_TUF_OK);
        /* the kept copy is older than the timestamp names: held for the check, not used */
        assert_int_equal(feed(t, KF_TUF_SNAPSHOT, kept, NOW, 1), KF_TUF_MIX_AND_MATCH);
        /* ... and is no ground for targets */
        assert_int_equal(feed(t, KF_TUF_TARGETS, r.targets, NOW, 1), KF_TUF_MIX_AND_MATCH);
        assert_int_equal(feed(t, KF_TUF_SNAPSHOT, r.snapshot, NOW, 0), KF_TUF_ROLLBACK);
        kf_tuf_trusted_free(t);
        /* Targets other than the version the snapshot names. */
        publish(&r, 7, 5, 7);
        t = trust(&r);
        assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.timestamp, NOW, 0), KF_TUF_OK);
        assert_int_equal(feed(t, KF_TUF_SNAPSHOT, r.snapshot, NOW, 0), KF_TUF_OK);
        assert_int_equal(feed(t, KF_TUF_TARGETS, r.targets, NOW, 1), KF_TUF_MIX_AND_MATCH);
        kf_tuf_trusted_free(t);
        json_decref(kept);
    }
    /* A timestamp that gives hashes for the snapshot, none of them one a client can check. */
    publish(&r, 8, 5, 8);
    json_object_set_new(json_object_get(json_object_get(S(r.timestamp), "meta"), "snapshot.json"),
                        "hashes", json_pack("{s:s}", "md5", "00"));
    json_array_clear(json_object_get(r.timestamp, "signatures"));
    sign(r.timestamp, &r, 3);
    t = trust(&r);
    assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.timestamp, NOW, 0), KF_TUF_OK);
    assert_int_equal(feed(t, KF_TUF_SNAPSHOT, r.snapshot, NOW, 0), KF_TUF_HASH);
    kf_tuf_trusted_free(t);
    json_decref(old_ts);
    json_decref(old_snap);
    repo_free(&r);
}

/* Root rotation: N+1 signed by a threshold of N's keys and of its own, nothing else. */
static void test_root_rotation(void **state)
{
    static const int ids2[4][NKEYS + 1] = {{1, 2, 7, -1}, {3, -1}, {4, -1}, {5, 6, -1}};
    static const int th2[4] = {2, 1, 1, 2};
    struct repo r;
    struct kf_tuf_trusted *t;
    json_t *v2, *v3;

    repo_make(&r);
    publish(&r, 1, 1, 1);
    v2 = root_of(&r, 2, ids2, th2); /* key 0 goes, key 7 comes */
    /* Only the new keys (1 and 7) sign: key 1 is one of the old root's, below its threshold. */
    sign(v2, &r, 1);
    sign(v2, &r, 7);
    t = trust(&r);
    assert_int_equal(feed(t, KF_TUF_ROOT, v2, NOW, 0), KF_TUF_SIGNATURES);
    /* Old keys 0 and 1 sign, but of the new root's keys only 1: below its own threshold. */
    json_array_clear(json_object_get(v2, "signatures"));
    sign(v2, &r, 0);
    sign(v2, &r, 1);
    assert_int_equal(feed(t, KF_TUF_ROOT, v2, NOW, 0), KF_TUF_SIGNATURES);
    /* 0, 1 and 7: two of the old, two of the new. */
    sign(v2, &r, 7);
    assert_int_equal(feed(t, KF_TUF_ROOT, v2, NOW, 0), KF_TUF_OK);
    assert_int_equal(kf_tuf_version(t, KF_TUF_ROOT), 2);
    /* The same version again, or one skipped (fast-forward): refused. */
    assert_int_equal(feed(t, KF_TUF_ROOT, v2, NOW, 0), KF_TUF_ROLLBACK);
    v3 = root_of(&r, 4, ids2, th2);
    sign(v3, &r, 1);
    sign(v3, &r, 7);
    assert_int_equal(feed(t, KF_TUF_ROOT, v3, NOW, 0), KF_TUF_ROLLBACK);
    /* Key 0 is no longer trusted: a version 3 signed by 0 and 1 is refused. */
    json_object_set_new(S(v3), "version", json_integer(3));
    json_array_clear(json_object_get(v3, "signatures"));
    sign(v3, &r, 0);
    sign(v3, &r, 1);
    assert_int_equal(feed(t, KF_TUF_ROOT, v3, NOW, 0), KF_TUF_SIGNATURES);
    assert_int_equal(refresh(t, &r, NOW), KF_TUF_OK);
    /* After the timestamp, the root no longer changes. */
    assert_int_equal(feed(t, KF_TUF_ROOT, v3, NOW, 0), KF_TUF_ORDER);
    kf_tuf_trusted_free(t);
    json_decref(v2);
    json_decref(v3);
    repo_free(&r);
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"signed\":{},\"signatures\":[]}",
        "{\"signed\":{\"_type\":\"root\"},\"signatures\":[],\"extra\":1}",
        "{\"signed\":{\"_type\":\"timestamp\",\"spec_version\":\"1.0.31\",\"version\":1,"
        "\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[]}",
        "{\"signed\":{\"_type\":\"root\",\"spec_version\":\"2.0.0\",\"version\":1,"
        "\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[]}",
        "{\"signed\":{\"_type\":\"root\",\"spec_version\":\"1.0.31\",\"version\":0,"
        "\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[]}",
        "{\"signed\":{\"_type\":\"root\",\"spec_version\":\"1.0.31\",\"version\":1,"
        "\"expires\":\"2030-01-01 00:00:00\"},\"signatures\":[]}",
        "{\"signed\":{\"_type\":\"root\",\"spec_version\":\"1.0.31\",\"version\":1.5,"
        "\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[]}",
        "{\"signed\":{\"_type\":\"root\",\"_type\":\"root\"},\"signatures\":[]}",
        "{\"signed\":{\"_type\":\"root\",\"spec_version\":\"1.0.31\",\"version\":1,"
        "\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[{\"keyid\":\"zz\",\"sig\":\"00\"}]}",
        "{\"signed\":{\"_type\":\"root\",\"spec_version\":\"1.0.31\",\"version\":1,"
        "\"expires\":\"2030-01-01T00:00:00Z\"},\"signatures\":[]}", /* no keys, no roles */
    };
    for (size_t i = 0; i < KF_ARRAY_LEN(bad); i++) {
        struct kf_tuf_trusted *t = NULL;
        enum kf_tuf_refusal v = kf_tuf_trusted_new((const uint8_t *)bad[i], strlen(bad[i]), &t);
        if (v != KF_TUF_MALFORMED) fail_msg("%zu: %s gave %s", i, bad[i], kf_tuf_refusal_name(v));
        assert_null(t);
    }
    /* A snapshot is not a timestamp. */
    {
        struct repo r;
        struct kf_tuf_trusted *t;
        repo_make(&r);
        publish(&r, 1, 1, 1);
        t = trust(&r);
        assert_int_equal(feed(t, KF_TUF_TIMESTAMP, r.snapshot, NOW, 0), KF_TUF_MALFORMED);
        /* Out of order: a snapshot before any timestamp. */
        assert_int_equal(feed(t, KF_TUF_SNAPSHOT, r.snapshot, NOW, 0), KF_TUF_ORDER);
        kf_tuf_trusted_free(t);
        repo_free(&r);
    }
}

/* A key's id must be its own hash: one listed under another id counts for nothing. */
static void test_keyids(void **state)
{
    struct repo r;
    struct kf_tuf_trusted *t = NULL;
    json_t *keys, *key;
    char id[KF_TUF_KEYID_HEX], fake[KF_TUF_KEYID_HEX];
    size_t len;
    uint8_t *b;

    repo_make(&r);
    KF_OK_OR_FAIL(kf_tuf_key_of(r.key[0], &key, id));
    /* The id is the SHA-256 of the canonical key object, as securesystemslib makes it. */
    {
        char again[KF_TUF_KEYID_HEX];
        KF_OK_OR_FAIL(kf_tuf_keyid(key, again));
        assert_string_equal(id, again);
    }
    /* Root threshold 2 met by key 0 twice, under its own id and a made-up one. */
    keys = json_object_get(S(r.root), "keys");
    memset(fake, 'a', 64);
    fake[64] = '\0';
    json_object_set(keys, fake, key);
    json_array_append_new(
        json_object_get(json_object_get(json_object_get(S(r.root), "roles"), "root"), "keyids"),
        json_string(fake));
    json_array_clear(json_object_get(r.root, "signatures"));
    sign(r.root, &r, 0);
    json_array_append_new(
        json_object_get(r.root, "signatures"),
        json_pack("{s:s, s:s}", "keyid", fake, "sig",
                  json_string_value(json_object_get(
                      json_array_get(json_object_get(r.root, "signatures"), 0), "sig"))));
    b = bytes(r.root, &len);
    assert_int_equal(kf_tuf_trusted_new(b, len, &t), KF_TUF_SIGNATURES);
    free(b);
    json_decref(key);
    repo_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_repository), cmocka_unit_test(test_target_bytes),
        cmocka_unit_test(test_signatures),      cmocka_unit_test(test_freeze),
        cmocka_unit_test(test_versions),        cmocka_unit_test(test_root_rotation),
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_keyids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
