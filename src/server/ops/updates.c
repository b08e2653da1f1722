#include "server/ops/updates.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/jsontext.h"
#include "server/ca/tufsign.h"

#define PATH_CAP  (KF_CONF_PATH_MAX + KF_TUF_PATH_MAX + 256)
#define META_MAX  (4u << 20)
#define DAY       86400L
#define IMAGE_BUF 65536

static const char *const online[2] = {"timestamp", "snapshot"};

/* DIR/updates/REST into `out`. */
static enum kf_err upath(const struct kf_deploy *d, const char *rest, char *out)
{
    if ((size_t)snprintf(out, PATH_CAP, "%s/updates/%s", d->dir, rest) >= PATH_CAP)
        return kf_fail(KF_E_OVERSIZE, "path too long: updates/%.60s", rest);
    return KF_OK;
}

/* mkdir -p of `path`'s directories up to (not including) its last part. */
static enum kf_err mkdirs_for(const char *path)
{
    char p[PATH_CAP];
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return kf_fail(KF_E_IO, "cannot create %s: %s", p, strerror(errno));
        *s = '/';
    }
    return KF_OK;
}

static enum kf_err read_all(const char *path, struct kf_buf *b)
{
    kf_buf_init(b, META_MAX);
    return kf_buf_read_file(b, path);
}

/* ---- the online keys ---- */

/* Where [ca] keeps online key `i` (0 timestamp, 1 snapshot): a path or a pkcs11: / tpm2: URI. */
static enum kf_err key_uri(const struct kf_deploy *d, int i, char *out)
{
    return kf_deploy_path(
        d, i == 0 ? d->cfg.ca.update_timestamp_key : d->cfg.ca.update_snapshot_key, out, PATH_CAP);
}

static int is_file(const char *uri)
{
    return strncmp(uri, "pkcs11:", 7) != 0 && strncmp(uri, "tpm2:", 5) != 0;
}

/* The signer of online key `i` (server/ca/tufsign: it checks what it signs). */
static enum kf_err signer_of(const struct kf_deploy *d, int i, struct kf_tuf_signer **out)
{
    char uri[PATH_CAP];
    enum kf_err rc = key_uri(d, i, uri);
    *out = NULL;
    if (rc) return rc;
    if (is_file(uri)) {
        struct stat st;
        if (stat(uri, &st) != 0)
            return kf_fail(KF_E_NOT_FOUND,
                           "no %s key (%s): `keyfleet release keys` makes the online keys",
                           online[i], uri);
        if (st.st_mode & 077)
            return kf_fail(KF_E_DENIED,
                           "the %s key %s can be read by others (mode %04o): chmod 600 it",
                           online[i], uri, (unsigned)(st.st_mode & 07777));
    }
    return kf_tuf_signer_open(i == 0 ? KF_TUF_TIMESTAMP : KF_TUF_SNAPSHOT, uri, out);
}

/* A new ed25519 key in file `path` (0600, in a directory of its own made 0700). */
static enum kf_err key_make(const char *path, const char *role)
{
    char dir[PATH_CAP];
    BIO *bio = BIO_new(BIO_s_secmem());
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char *pem, *slash;
    long n;
    struct stat st;
    int existed;
    enum kf_err rc;
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    existed = slash && stat(dir, &st) == 0;
    rc = mkdirs_for(path);
    /* a directory made here holds only keys: owner only (one that was there is left alone) */
    if (!rc && slash && !existed && chmod(dir, 0700) != 0)
        rc = kf_fail(KF_E_IO, "cannot make %s private: %s", dir, strerror(errno));
    if (!rc && (!pk || !bio || PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) != 1))
        rc = kf_fail(KF_E_CRYPTO, "cannot make the %s key", role);
    if (!rc) {
        n = BIO_get_mem_data(bio, &pem);
        rc = kf_file_write(path, pem, (size_t)n, 0600, 0);
    }
    BIO_free(bio);
    EVP_PKEY_free(pk);
    return rc;
}

static enum kf_err audit_cb(struct kf_txn *txn, void *arg)
{
    const char **a = arg;
    return kf_txn_audit_append(txn, a[0], a[1], a[2], a[3]);
}

static enum kf_err audit(struct kf_deploy *d, const char *actor, const char *action,
                         const char *object, char *detail)
{
    const char *a[4] = {actor, action, object, detail};
    enum kf_err rc = kf_store_write(d->store, audit_cb, a);
    free(detail);
    return rc;
}

enum kf_err kf_updates_keys(struct kf_deploy *d, const char *actor, json_t **out)
{
    int made = 0;
    enum kf_err rc = KF_OK;

    *out = json_object();
    if (!*out) return kf_fail(KF_E_NOMEM, "out of memory");
    for (int i = 0; !rc && i < 2; i++) {
        char uri[PATH_CAP];
        struct kf_tuf_signer *sg = NULL;
        rc = key_uri(d, i, uri);
        if (!rc && is_file(uri) && !kf_file_exists(uri)) {
            rc = key_make(uri, online[i]);
            made = 1;
        }
        if (!rc) rc = signer_of(d, i, &sg);
        if (!rc) json_object_set_new(*out, online[i], json_deep_copy(kf_tuf_signer_key(sg)));
        kf_tuf_signer_free(sg);
    }
    if (!rc && made)
        rc = audit(d, actor, "release.keys", "updates", kf_jsontext_pack("{s:O}", "keys", *out));
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- what is published ---- */

struct state {
    int64_t root, targets, snapshot, timestamp;
    time_t snapshot_expires, timestamp_expires;
};

static enum kf_err read_doc(const struct kf_deploy *d, const char *rest, enum kf_tuf_role role,
                            json_t **doc, int64_t *version)
{
    char path[PATH_CAP];
    struct kf_buf b;
    enum kf_err rc = upath(d, rest, path);
    if (!rc) rc = read_all(path, &b);
    if (!rc && kf_tuf_parse(b.data, b.len, role, doc, version) != KF_TUF_OK)
        rc = kf_wrap(KF_E_INVALID, "the published %s", rest);
    kf_buf_free(&b);
    return rc;
}

static time_t doc_expires(const json_t *doc)
{
    struct tm tm;
    const char *s = json_string_value(json_object_get(json_object_get(doc, "signed"), "expires"));
    memset(&tm, 0, sizeof(tm));
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) return 0;
    return timegm(&tm);
}

/* The versions published now (all 0 when nothing is). */
static enum kf_err state_read(const struct kf_deploy *d, struct state *st)
{
    char path[PATH_CAP], rest[64];
    json_t *doc = NULL;
    enum kf_err rc;

    memset(st, 0, sizeof(*st));
    if (upath(d, "repo/metadata/timestamp.json", path)) return KF_E_OVERSIZE;
    if (!kf_file_exists(path)) return KF_OK;
    rc = read_doc(d, "repo/metadata/timestamp.json", KF_TUF_TIMESTAMP, &doc, &st->timestamp);
    if (rc) return rc;
    st->timestamp_expires = doc_expires(doc);
    st->snapshot = json_integer_value(json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "signed"), "meta"), "snapshot.json"),
        "version"));
    json_decref(doc);
    snprintf(rest, sizeof(rest), "repo/metadata/%lld.snapshot.json", (long long)st->snapshot);
    rc = read_doc(d, rest, KF_TUF_SNAPSHOT, &doc, &st->snapshot);
    if (rc) return rc;
    st->snapshot_expires = doc_expires(doc);
    st->targets = json_integer_value(json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "signed"), "meta"), "targets.json"),
        "version"));
    json_decref(doc);
    rc = read_doc(d, "repo/metadata/root.json", KF_TUF_ROOT, &doc, &st->root);
    json_decref(doc);
    return rc;
}

/* The "meta" entry of a file: version, length and sha256. */
static json_t *meta_of(int64_t version, const struct kf_buf *b)
{
    unsigned char h[32];
    char hex[65];
    unsigned n = 0;
    EVP_Digest(b->data, b->len, h, &n, EVP_sha256(), NULL);
    kf_tuf_hex(h, sizeof(h), hex);
    return json_pack("{s:I, s:I, s:{s:s}}", "version", (json_int_t)version, "length",
                     (json_int_t)b->len, "hashes", "sha256", hex);
}

/* Signs `doc` with the online key of `role` (0 timestamp, 1 snapshot) and writes it to
 * repo/metadata/NAME. */
static enum kf_err publish_doc(const struct kf_deploy *d, int role, json_t *doc, const char *name,
                               int64_t published, int64_t meta_max, struct kf_buf *out)
{
    char path[PATH_CAP], rest[128];
    struct kf_tuf_signer *sg = NULL;
    enum kf_err rc = signer_of(d, role, &sg);
    if (!rc) rc = kf_tuf_signer_sign(sg, doc, published, meta_max);

    kf_tuf_signer_free(sg);
    kf_buf_init(out, META_MAX);
    if (!rc) rc = kf_tuf_text(doc, out);
    snprintf(rest, sizeof(rest), "repo/metadata/%s", name);
    if (!rc) rc = upath(d, rest, path);
    if (!rc) rc = kf_file_write(path, out->data, out->len, 0644, KF_FILE_REPLACE);
    return rc;
}

static json_t *new_doc(const char *type, int64_t version, long days, time_t now)
{
    char when[32];
    kf_tuf_time(now + days * DAY, when, sizeof(when));
    return json_pack("{s:{s:s, s:s, s:I, s:s, s:{}}, s:[]}", "signed", "_type", type,
                     "spec_version", KF_TUF_SPEC_VERSION, "version", (json_int_t)version, "expires",
                     when, "meta", "signatures");
}

/* A new snapshot naming targets `targets` (its file's bytes read here), then a timestamp. */
static enum kf_err publish_online(const struct kf_deploy *d, struct state *st, int new_snapshot,
                                  time_t now)
{
    char rest[96], path[PATH_CAP];
    struct kf_buf tb, sb;
    json_t *doc;
    enum kf_err rc = KF_OK;

    kf_buf_init(&tb, 1);
    kf_buf_init(&sb, 1);
    if (new_snapshot) {
        snprintf(rest, sizeof(rest), "repo/metadata/%lld.targets.json", (long long)st->targets);
        kf_buf_free(&tb);
        rc = upath(d, rest, path);
        if (!rc) rc = read_all(path, &tb);
        doc = new_doc("snapshot", st->snapshot + 1, KF_UPDATES_SNAPSHOT_DAYS, now);
        if (!rc)
            json_object_set_new(json_object_get(json_object_get(doc, "signed"), "meta"),
                                "targets.json", meta_of(st->targets, &tb));
        snprintf(rest, sizeof(rest), "%lld.snapshot.json", (long long)st->snapshot + 1);
        kf_buf_free(&sb);
        if (!rc) rc = publish_doc(d, 1, doc, rest, st->snapshot, st->targets, &sb);
        json_decref(doc);
        if (!rc) st->snapshot++;
    } else {
        snprintf(rest, sizeof(rest), "repo/metadata/%lld.snapshot.json", (long long)st->snapshot);
        kf_buf_free(&sb);
        rc = upath(d, rest, path);
        if (!rc) rc = read_all(path, &sb);
    }
    if (!rc) {
        struct kf_buf out;
        doc = new_doc("timestamp", st->timestamp + 1, KF_UPDATES_TIMESTAMP_DAYS, now);
        json_object_set_new(json_object_get(json_object_get(doc, "signed"), "meta"),
                            "snapshot.json", meta_of(st->snapshot, &sb));
        rc = publish_doc(d, 0, doc, "timestamp.json", st->timestamp, st->snapshot, &out);
        kf_buf_free(&out);
        json_decref(doc);
        if (!rc) st->timestamp++;
    }
    kf_buf_free(&tb);
    kf_buf_free(&sb);
    return rc;
}

/* ---- adding a release ---- */

/* Whether the root's role `role` is one key of ours with threshold 1. */
static enum kf_err check_online(const json_t *root, const char *role, const json_t *key)
{
    const json_t *r =
        json_object_get(json_object_get(json_object_get(root, "signed"), "roles"), role);
    const json_t *ids = json_object_get(r, "keyids");
    char keyid[KF_TUF_KEYID_HEX];
    enum kf_err rc = kf_tuf_keyid(key, keyid);
    int listed = 0;
    for (size_t i = 0; !rc && i < json_array_size(ids); i++)
        listed |= json_is_string(json_array_get(ids, i)) &&
                  strcmp(json_string_value(json_array_get(ids, i)), keyid) == 0;
    if (rc) return rc;
    if (!listed)
        return kf_fail(KF_E_DENIED,
                       "the root does not trust this deployment's %s key %.16s...: make the root "
                       "with the keys `keyfleet release keys` prints",
                       role, keyid);
    if (json_integer_value(json_object_get(r, "threshold")) != 1)
        return kf_fail(KF_E_DENIED, "the root's %s threshold must be 1: keyfleetd signs it alone",
                       role);
    return KF_OK;
}

/* Copies `src` to `dst` checking it against `tg` as it goes; KF_E_DENIED on a mismatch. */
static enum kf_err copy_checked(const char *src, const char *dst, const struct kf_tuf_target *tg)
{
    char tmp[PATH_CAP + 8];
    FILE *in = fopen(src, "rb"), *out = NULL;
    unsigned char *buf = malloc(IMAGE_BUF);
    struct kf_tuf_stream s;
    enum kf_err rc = KF_OK;
    size_t n;

    if (!in) rc = kf_fail(KF_E_NOT_FOUND, "cannot open image %s: %s", src, strerror(errno));
    if (!rc && !buf) rc = kf_fail(KF_E_NOMEM, "out of memory");
    snprintf(tmp, sizeof(tmp), "%s.part", dst);
    if (!rc) rc = mkdirs_for(dst);
    if (!rc && !(out = fopen(tmp, "wb")))
        rc = kf_fail(KF_E_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (!rc) rc = kf_tuf_stream_init(&s, tg);
    if (!rc) {
        enum kf_tuf_refusal v = KF_TUF_OK;
        while (!v && (n = fread(buf, 1, IMAGE_BUF, in)) > 0) {
            v = kf_tuf_stream_update(&s, buf, n);
            if (!v && fwrite(buf, 1, n, out) != n) {
                rc = kf_fail(KF_E_IO, "cannot write %s", tmp);
                break;
            }
        }
        if (!v && !rc)
            v = kf_tuf_stream_final(&s);
        else
            kf_tuf_stream_free(&s);
        if (v && !rc)
            rc = kf_fail(KF_E_DENIED, "image %s is not target %s as signed (%s): %s", src, tg->path,
                         kf_tuf_refusal_name(v), kf_errmsg());
    }
    if (out && (fflush(out) != 0 || fsync(fileno(out)) != 0) && !rc)
        rc = kf_fail(KF_E_IO, "cannot write %s", tmp);
    if (out) fclose(out);
    if (in) fclose(in);
    free(buf);
    if (!rc && rename(tmp, dst) != 0) rc = kf_fail(KF_E_IO, "cannot rename to %s", dst);
    if (rc) unlink(tmp);
    return rc;
}

/* repo/targets/[dir/]HEX.base for the target's `hex` hash. */
static enum kf_err target_file(const struct kf_deploy *d, const char *name, const char *hex,
                               char *out)
{
    char rest[KF_TUF_PATH_MAX + 160];
    const char *slash = strrchr(name, '/');
    if (slash)
        snprintf(rest, sizeof(rest), "repo/targets/%.*s/%s.%s", (int)(slash - name), name, hex,
                 slash + 1);
    else
        snprintf(rest, sizeof(rest), "repo/targets/%s.%s", hex, name);
    return upath(d, rest, out);
}

struct add_ctx {
    const struct kf_deploy *d;
    const struct kf_updates_image *images;
    size_t n_images;
    size_t added;
    enum kf_err rc;
    json_t *names;
};

/* Each target: its image published under both hashes, from --image or already there. */
static void add_target(const struct kf_tuf_target *tg, void *arg)
{
    struct add_ctx *a = arg;
    char h256[65], h512[129], p256[PATH_CAP], p512[PATH_CAP];
    const char *src = NULL;
    if (a->rc) return;
    if (!kf_tuf_name_ok(tg->path) || !tg->has_sha256 || !tg->has_sha512) {
        a->rc = kf_fail(KF_E_INVALID,
                        "target %.80s: keyfleet publishes targets with a relative name of "
                        "letters, digits and ._-+/ and both sha256 and sha512",
                        tg->path);
        return;
    }
    kf_tuf_hex(tg->sha256, 32, h256);
    kf_tuf_hex(tg->sha512, 64, h512);
    if ((a->rc = target_file(a->d, tg->path, h256, p256)) ||
        (a->rc = target_file(a->d, tg->path, h512, p512)))
        return;
    for (size_t i = 0; i < a->n_images; i++)
        if (strcmp(a->images[i].name, tg->path) == 0) src = a->images[i].path;
    if (!src && kf_file_exists(p256)) return; /* published before */
    if (!src) {
        a->rc = kf_fail(KF_E_INVALID, "target %.80s has no image: --image %.80s=PATH", tg->path,
                        tg->path);
        return;
    }
    a->rc = copy_checked(src, p256, tg);
    if (!a->rc) {
        unlink(p512);
        if (link(p256, p512) != 0)
            a->rc = kf_fail(KF_E_IO, "cannot link %s: %s", p512, strerror(errno));
    }
    if (!a->rc) {
        a->added++;
        json_array_append_new(a->names, json_string(tg->path));
    }
}

enum kf_err kf_updates_add(struct kf_deploy *d, const char *actor, const char *root_path,
                           const char *targets_path, const struct kf_updates_image *images,
                           size_t n_images, struct kf_updates_result *out)
{
    struct kf_buf rb, tb, cur;
    struct kf_tuf_trusted *t = NULL;
    struct state st;
    json_t *keys = NULL, *root = NULL, *tdoc = NULL;
    int64_t rv = 0, tv = 0;
    enum kf_tuf_refusal v = KF_TUF_OK;
    time_t now = time(NULL);
    char path[PATH_CAP], rest[96];
    struct add_ctx a;
    int lock = -1;
    enum kf_err rc;

    memset(out, 0, sizeof(*out));
    memset(&a, 0, sizeof(a));
    kf_buf_init(&cur, 1);
    rc = kf_updates_keys(d, actor, &keys);
    if (!rc) rc = upath(d, "repo/metadata/x", path);
    if (!rc) rc = mkdirs_for(path);
    if (!rc) rc = kf_file_lock_dir(path, &lock);
    if (!rc) rc = state_read(d, &st);
    kf_buf_init(&rb, META_MAX);
    kf_buf_init(&tb, META_MAX);
    if (!rc) rc = kf_buf_read_file(&rb, root_path);
    if (!rc) rc = kf_buf_read_file(&tb, targets_path);
    if (rc) goto done;

    /* The root: the one published, or the next one, or (the first time) one signed by itself. */
    if (st.root) {
        kf_buf_free(&cur);
        rc = upath(d, "repo/metadata/root.json", path);
        if (!rc) rc = read_all(path, &cur);
        if (!rc && (v = kf_tuf_trusted_new(cur.data, cur.len, &t)) == KF_TUF_OK &&
            !(cur.len == rb.len && memcmp(cur.data, rb.data, rb.len) == 0))
            v = kf_tuf_update_root(t, rb.data, rb.len);
    } else {
        v = kf_tuf_trusted_new(rb.data, rb.len, &t);
    }
    if (!rc && !v) v = kf_tuf_root_done(t, now);
    if (!rc && v)
        rc = kf_wrap(KF_E_DENIED, "root %s refused (%s)", root_path, kf_tuf_refusal_name(v));
    if (rc) goto done;
    rv = kf_tuf_version(t, KF_TUF_ROOT);
    if (kf_tuf_parse(rb.data, rb.len, KF_TUF_ROOT, &root, &rv) != KF_TUF_OK) {
        rc = kf_wrap(KF_E_INVALID, "root %s", root_path);
        goto done;
    }
    rc = check_online(root, "timestamp", json_object_get(keys, "timestamp"));
    if (!rc) rc = check_online(root, "snapshot", json_object_get(keys, "snapshot"));
    if (rc) goto done;

    /* The targets: signed by the root's targets keys, newer than those published, fresh. */
    v = kf_tuf_verify_role(rb.data, rb.len, KF_TUF_TARGETS, tb.data, tb.len, &tv);
    if (!v && tv <= st.targets)
        v = KF_TUF_ROLLBACK,
        kf_fail(KF_E_DENIED, "targets version %lld: version %lld is published already",
                (long long)tv, (long long)st.targets);
    if (!v && kf_tuf_parse(tb.data, tb.len, KF_TUF_TARGETS, &tdoc, &tv) == KF_TUF_OK &&
        doc_expires(tdoc) <= now)
        v = KF_TUF_EXPIRED, kf_fail(KF_E_DENIED, "the targets metadata has expired");
    if (v) {
        rc = kf_wrap(KF_E_DENIED, "targets %s refused (%s)", targets_path, kf_tuf_refusal_name(v));
        goto done;
    }
    /* Its images, checked against what the vendor signed, before any metadata is written. */
    {
        const char *name;
        json_t *e;
        a.d = d;
        a.images = images;
        a.n_images = n_images;
        a.names = json_array();
        for (size_t i = 0; i < n_images; i++)
            if (!json_object_get(json_object_get(json_object_get(tdoc, "signed"), "targets"),
                                 images[i].name)) {
                rc = kf_fail(KF_E_INVALID, "--image %.80s: the targets metadata has no such target",
                             images[i].name);
                goto done;
            }
        json_object_foreach(json_object_get(json_object_get(tdoc, "signed"), "targets"), name, e)
        {
            struct kf_tuf_target tg;
            if (kf_tuf_target_of(name, e, &tg) != KF_TUF_OK) {
                rc = kf_wrap(KF_E_INVALID, "targets %s", targets_path);
                goto done;
            }
            add_target(&tg, &a);
            if (a.rc) {
                rc = a.rc;
                goto done;
            }
        }
    }
    /* The metadata: the root (if new), the vendor's targets as they came, snapshot, timestamp. */
    if (rv != st.root) {
        snprintf(rest, sizeof(rest), "repo/metadata/%lld.root.json", (long long)rv);
        rc = upath(d, rest, path);
        if (!rc) rc = kf_file_write(path, rb.data, rb.len, 0644, KF_FILE_REPLACE);
        if (!rc) rc = upath(d, "repo/metadata/root.json", path);
        if (!rc) rc = kf_file_write(path, rb.data, rb.len, 0644, KF_FILE_REPLACE);
    }
    snprintf(rest, sizeof(rest), "repo/metadata/%lld.targets.json", (long long)tv);
    if (!rc) rc = upath(d, rest, path);
    if (!rc) rc = kf_file_write(path, tb.data, tb.len, 0644, KF_FILE_REPLACE);
    st.root = rv;
    st.targets = tv;
    if (!rc) rc = publish_online(d, &st, 1, now);
    if (!rc)
        rc = audit(d, actor, "release.add", "updates",
                   kf_jsontext_pack("{s:I, s:I, s:I, s:I, s:O}", "root_version", (json_int_t)rv,
                                    "targets_version", (json_int_t)tv, "snapshot_version",
                                    (json_int_t)st.snapshot, "timestamp_version",
                                    (json_int_t)st.timestamp, "images", a.names));
    if (!rc) {
        out->root_version = st.root;
        out->targets_version = st.targets;
        out->snapshot_version = st.snapshot;
        out->timestamp_version = st.timestamp;
        out->images_added = a.added;
    }
done:
    kf_file_unlock(lock);
    kf_tuf_trusted_free(t);
    json_decref(keys);
    json_decref(root);
    json_decref(tdoc);
    json_decref(a.names);
    kf_buf_free(&rb);
    kf_buf_free(&tb);
    kf_buf_free(&cur);
    return rc;
}

enum kf_err kf_updates_refresh(struct kf_deploy *d, int force, int *renewed)
{
    char path[PATH_CAP];
    struct state st;
    time_t now = time(NULL);
    int lock = -1, snap;
    enum kf_err rc;

    *renewed = 0;
    rc = upath(d, "repo/metadata/x", path);
    if (!rc && !kf_file_exists(path) && (rc = upath(d, "repo/metadata", path)) == KF_OK &&
        !kf_file_exists(path))
        return KF_OK; /* nothing published */
    if (!rc) rc = upath(d, "repo/metadata/x", path);
    if (!rc) rc = kf_file_lock_dir(path, &lock);
    if (!rc) rc = state_read(d, &st);
    if (!rc && st.timestamp) {
        snap = force || st.snapshot_expires - now < KF_UPDATES_SNAPSHOT_DAYS * DAY / 2;
        if (snap || st.timestamp_expires - now < KF_UPDATES_TIMESTAMP_DAYS * DAY / 2) {
            rc = publish_online(d, &st, snap, now);
            *renewed = !rc;
        }
    }
    kf_file_unlock(lock);
    return rc;
}

enum kf_err kf_updates_list(struct kf_deploy *d,
                            void (*cb)(const struct kf_tuf_target *t, void *arg), void *arg,
                            struct kf_updates_result *out)
{
    char rest[96];
    struct state st;
    json_t *doc = NULL;
    const char *name;
    json_t *e;
    int64_t v;
    enum kf_err rc = state_read(d, &st);

    memset(out, 0, sizeof(*out));
    if (rc || !st.timestamp) return rc;
    out->root_version = st.root;
    out->targets_version = st.targets;
    out->snapshot_version = st.snapshot;
    out->timestamp_version = st.timestamp;
    snprintf(rest, sizeof(rest), "repo/metadata/%lld.targets.json", (long long)st.targets);
    rc = read_doc(d, rest, KF_TUF_TARGETS, &doc, &v);
    if (rc) return rc;
    json_object_foreach(json_object_get(json_object_get(doc, "signed"), "targets"), name, e)
    {
        struct kf_tuf_target tg;
        if (kf_tuf_target_of(name, e, &tg) == KF_TUF_OK) cb(&tg, arg);
    }
    kf_err_clear();
    json_decref(doc);
    return KF_OK;
}

/* ---- revoked releases ---- */

static enum kf_err revoked_read(struct kf_deploy *d, json_t **out)
{
    char path[PATH_CAP];
    struct kf_buf b;
    enum kf_err rc = upath(d, "revoked.json", path);
    *out = NULL;
    if (rc) return rc;
    if (!kf_file_exists(path)) {
        *out = json_object();
        return *out ? KF_OK : kf_fail(KF_E_NOMEM, "out of memory");
    }
    rc = read_all(path, &b);
    if (!rc) {
        *out = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
            rc = kf_fail(KF_E_MALFORMED, "%s is not the list of revoked releases", path);
        }
    }
    kf_buf_free(&b);
    return rc;
}

struct find_target {
    const char *name;
    int found;
};

static void find_cb(const struct kf_tuf_target *t, void *arg)
{
    struct find_target *f = arg;
    if (strcmp(t->path, f->name) == 0) f->found = 1;
}

enum kf_err kf_updates_revoke(struct kf_deploy *d, const char *actor, const char *name,
                              const char *reason, int known, int *was)
{
    struct find_target f = {name, 0};
    struct kf_updates_result cur;
    char path[PATH_CAP], object[KF_TUF_PATH_MAX + 16], when[32];
    json_t *all = NULL, *rec = NULL, *detail = NULL;
    struct kf_buf out;
    enum kf_err rc;

    if (was) *was = 0;
    if (!name || !kf_tuf_name_ok(name)) return kf_fail(KF_E_INVALID, "not a release name");
    if (reason && strlen(reason) > 500) return kf_fail(KF_E_OVERSIZE, "the reason is too long");
    rc = revoked_read(d, &all);
    if (rc) return rc;
    if (json_object_get(all, name)) {
        if (was) *was = 1;
        json_decref(all);
        return KF_OK;
    }
    rc = kf_updates_list(d, find_cb, &f, &cur);
    /* one the vendor took out of the targets already may still have rollouts to end */
    if (!rc && !f.found && !known)
        rc = kf_fail(KF_E_NOT_FOUND, "%s is not in the published targets (keyfleet release list)",
                     name);
    kf_tuf_time(time(NULL), when, sizeof(when));
    if (!rc) {
        rec = json_pack("{s:s, s:s, s:s?}", "revoked", when, "by", actor, "reason", reason);
        detail = json_pack("{s:s?}", "reason", reason);
        if (!rec || !detail || json_object_set(all, name, rec) != 0)
            rc = kf_fail(KF_E_INVALID, "the reason is not UTF-8 text");
    }
    /* audited first: a revocation that is in effect is always in the audit log */
    snprintf(object, sizeof(object), "release:%s", name);
    if (!rc)
        rc = audit(d, actor, "release.revoke", object,
                   json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS));
    kf_buf_init(&out, META_MAX);
    if (!rc) rc = upath(d, "revoked.json", path);
    if (!rc) rc = kf_tuf_text(all, &out);
    if (!rc) rc = kf_file_write(path, out.data, out.len, 0600, KF_FILE_REPLACE);
    kf_buf_free(&out);
    json_decref(rec);
    json_decref(detail);
    json_decref(all);
    return rc;
}

enum kf_err kf_updates_revoked(struct kf_deploy *d, const char *name, int *yes, json_t **why)
{
    json_t *all = NULL, *r;
    enum kf_err rc = revoked_read(d, &all);
    *yes = 0;
    if (why) *why = NULL;
    if (rc) return rc;
    r = json_object_get(all, name);
    *yes = r != NULL;
    if (why && r) *why = json_incref(r);
    json_decref(all);
    return KF_OK;
}
