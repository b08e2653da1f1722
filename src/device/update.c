/* update: libkeyfleet's TUF client (keyfleet/update.h), on common/tuf's pure verifier. */
#include "keyfleet/update.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/log.h"
#include "common/tuf.h"
#include "device/device_priv.h"
#include "device/https_client.h"

#define META_MAX   (4u << 20)
#define PATH_CAP   4352
#define ROOTS_MAX  64 /* root versions walked in one check */
#define READ_CHUNK 65536

static const char *const files[KF_TUF_ROLES] = {"root.json", "timestamp.json", "snapshot.json",
                                                "targets.json"};

static void report(const struct kf_device_link *l, const char *type, const char *severity,
                   json_t *detail)
{
    char *text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(detail);
    if (text && l->report && l->report(l->report_ctx, type, severity, text) != 0)
        kf_log(KF_LOG_WARN, "update", "cannot queue an event", "type", type, NULL);
    kf_err_clear();
    free(text);
}

static void tuf_path(const struct kf_device_link *l, const char *name, char *out)
{
    snprintf(out, PATH_CAP, "%s/tuf/%s", l->dir, name);
}

/* A kept metadata file into `b` (empty when there is none). */
static void kept(const struct kf_device_link *l, enum kf_tuf_role role, struct kf_buf *b)
{
    char path[PATH_CAP];
    kf_buf_init(b, META_MAX);
    tuf_path(l, files[role], path);
    if (kf_file_exists(path) && kf_buf_read_file(b, path) != KF_OK) kf_buf_reset(b);
    kf_err_clear();
}

static enum kf_err keep(const struct kf_device_link *l, enum kf_tuf_role role,
                        const struct kf_buf *b)
{
    char path[PATH_CAP];
    tuf_path(l, files[role], path);
    return kf_file_write(path, b->data, b->len, 0600, KF_FILE_REPLACE);
}

static enum kf_err to_buf(void *arg, const void *p, size_t n)
{
    return kf_buf_append(arg, p, n);
}

/* GET /updates/metadata/NAME into `b`; `*status` 200, 404, ... */
static enum kf_err fetch_meta(const struct kf_device_link *l, const char *name, struct kf_buf *b,
                              int *status)
{
    char path[600], problem[256] = "";
    enum kf_err rc;
    kf_buf_init(b, META_MAX);
    snprintf(path, sizeof(path), "%s/updates/metadata/%s", l->prefix, name);
    rc = kf_https_get(l->tls, l->host, l->port, path, 0, l->timeout_ms, to_buf, b, status, problem,
                      sizeof(problem));
    if (!rc && *status != 200 && *status != 404)
        rc = kf_fail(KF_E_DENIED, "keyfleetd answered %d for %s", *status, name);
    return rc;
}

/* The refusal as the error, and an update.failed event naming it. */
static enum kf_err refused(const struct kf_device_link *l, enum kf_tuf_refusal r, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", kf_errmsg());
    report(l, "update.failed", "critical",
           json_pack("{s:s, s:s, s:s}", "reason", kf_tuf_refusal_name(r), "metadata", what,
                     "message", msg));
    return kf_fail(r == KF_TUF_MALFORMED ? KF_E_MALFORMED : KF_E_DENIED, "%s refused (%s): %s",
                   what, kf_tuf_refusal_name(r), msg);
}

enum kf_err kf_update_floor_at(const struct kf_device_link *l, int64_t *version)
{
    char path[PATH_CAP];
    struct kf_buf b;
    enum kf_err rc;
    *version = 0;
    snprintf(path, sizeof(path), "%s/update.floor", l->dir);
    if (!kf_file_exists(path)) return KF_OK;
    kf_buf_init(&b, 64);
    rc = kf_buf_read_file(&b, path);
    if (!rc) {
        char *end;
        long long v = strtoll(kf_buf_str(&b), &end, 10);
        if (end == kf_buf_str(&b) || (*end && *end != '\n') || v < 0)
            rc = kf_fail(KF_E_TAMPERED, "%s is not a version", path);
        else
            *version = v;
    }
    kf_buf_free(&b);
    return rc;
}

int kf_update_floor(struct kf_device *dev, int64_t *version)
{
    struct kf_device_link l;
    enum kf_err rc = kf_device_link(dev, &l);
    *version = 0;
    return rc ? rc : kf_update_floor_at(&l, version);
}

enum kf_err kf_update_installed_at(const struct kf_device_link *l, int64_t version)
{
    char path[PATH_CAP], text[32];
    int64_t floor = 0;
    enum kf_err rc = kf_update_floor_at(l, &floor);
    if (rc) return rc;
    if (version < floor)
        return kf_fail(KF_E_DENIED, "version %lld is below the installed %lld: never downgraded",
                       (long long)version, (long long)floor);
    snprintf(path, sizeof(path), "%s/update.floor", l->dir);
    snprintf(text, sizeof(text), "%lld\n", (long long)version);
    return kf_file_write(path, text, strlen(text), 0600, KF_FILE_REPLACE);
}

int kf_update_installed(struct kf_device *dev, int64_t version)
{
    struct kf_device_link l;
    enum kf_err rc = kf_device_link(dev, &l);
    return rc ? rc : kf_update_installed_at(&l, version);
}

/*
 * Reports an answer to an offer once per (event, target, its signed version): a device that
 * checks every few minutes must not repeat the same refusal all day.
 */
static void report_once(const struct kf_device_link *l, const struct kf_tuf_trusted *t,
                        const char *type, const char *severity, const char *target, json_t *detail)
{
    char path[PATH_CAP], text[KF_TUF_PATH_MAX + 96];
    struct kf_tuf_target tg;
    struct kf_buf seen;
    /* the same answer to the same signed release is said once, whatever metadata comes after
     * (a new targets version around it is not a new offer); one not signed, per targets version */
    const json_t *v =
        kf_tuf_target(t, target, &tg) == KF_TUF_OK ? json_object_get(tg.custom, "version") : NULL;
    kf_err_clear();
    snprintf(text, sizeof(text), "%s %s %s%lld\n", type, target, json_is_integer(v) ? "v" : "t",
             (long long)(json_is_integer(v) ? json_integer_value(v)
                                            : kf_tuf_version(t, KF_TUF_TARGETS)));
    tuf_path(l, "refused.reported", path);
    kf_buf_init(&seen, sizeof(text));
    if (!kf_file_exists(path) || kf_buf_read_file(&seen, path) != KF_OK ||
        strcmp(kf_buf_str(&seen), text) != 0) {
        json_object_set_new(detail, "target", json_string(target));
        json_object_set_new(detail, "targets_version",
                            json_integer(kf_tuf_version(t, KF_TUF_TARGETS)));
        report(l, type, severity, detail);
        kf_file_write(path, text, strlen(text), 0600, KF_FILE_REPLACE);
    } else {
        json_decref(detail);
    }
    kf_buf_free(&seen);
    kf_err_clear();
}

/* GET /updates/assigned: the target keyfleetd offers this device ("" for none). */
static enum kf_err fetch_assigned(const struct kf_device_link *l, const char *hardware,
                                  char *target, size_t cap)
{
    char path[800], problem[256] = "";
    struct kf_buf b;
    json_t *j;
    const char *name;
    int status = 0;
    enum kf_err rc;

    target[0] = '\0';
    kf_buf_init(&b, 16384);
    snprintf(path, sizeof(path), "%s/updates/assigned?hardware=%s", l->prefix, hardware);
    rc = kf_https_get(l->tls, l->host, l->port, path, 0, l->timeout_ms, to_buf, &b, &status,
                      problem, sizeof(problem));
    if (!rc && status == 404) { /* a keyfleetd without rollouts offers nothing */
        kf_buf_free(&b);
        return KF_OK;
    }
    if (!rc && status != 200)
        rc = kf_fail(KF_E_DENIED, "keyfleetd answered %d for the assigned release%s%s", status,
                     problem[0] ? ": " : "", problem);
    if (rc) {
        kf_buf_free(&b);
        return rc;
    }
    j = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    kf_buf_free(&b);
    name = json_string_value(json_object_get(j, "target"));
    if (!json_is_object(j) || (name && (!kf_tuf_name_ok(name) || strlen(name) >= cap)))
        rc = kf_fail(KF_E_MALFORMED, "keyfleetd's answer for the assigned release is not one");
    else if (name)
        snprintf(target, cap, "%s", name);
    json_decref(j);
    return rc;
}

enum kf_err kf_update_check_at(const struct kf_device_link *lp, const char *root_path,
                               const char *hardware, time_t now, struct kf_update_offer *offer)
{
    struct kf_device_link l = *lp;
    struct kf_tuf_trusted *t = NULL;
    struct kf_buf b;
    enum kf_tuf_refusal r;
    char dir[PATH_CAP], name[64], assigned[KF_TUF_PATH_MAX];
    struct kf_tuf_target tg;
    const json_t *v;
    const char *hw;
    int status = 0;
    enum kf_err rc;

    memset(offer, 0, sizeof(*offer));
    if (!hardware || !*hardware || strlen(hardware) > 127 ||
        strspn(hardware, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
            strlen(hardware))
        return kf_fail(KF_E_INVALID, "hardware id: 1 to 127 letters, digits, _ - .");
    rc = kf_update_floor_at(&l, &offer->installed);
    if (rc) return rc;
    if (!now) now = time(NULL);
    snprintf(dir, sizeof(dir), "%s/tuf", l.dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return kf_fail(KF_E_IO, "cannot create %s: %s", dir, strerror(errno));

    /* The root: the trusted one, or the one shipped with the device. */
    kept(&l, KF_TUF_ROOT, &b);
    if (!b.len) {
        if (!root_path) {
            kf_buf_free(&b);
            return kf_fail(KF_E_CONFIG, "no trusted update root: give the root it shipped with");
        }
        rc = kf_buf_read_file(&b, root_path);
        if (rc) {
            kf_buf_free(&b);
            return kf_wrap(rc, "the update root");
        }
    }
    r = kf_tuf_trusted_new(b.data, b.len, &t);
    if (!r) rc = keep(&l, KF_TUF_ROOT, &b);
    kf_buf_free(&b);
    if (r) return refused(&l, r, "the trusted root");
    if (rc) goto done;

    /* Each next root (N+1, N+2, ...) until there is none. */
    for (int i = 0; i < ROOTS_MAX; i++) {
        snprintf(name, sizeof(name), "%lld.root.json",
                 (long long)kf_tuf_version(t, KF_TUF_ROOT) + 1);
        rc = fetch_meta(&l, name, &b, &status);
        if (!rc && status == 200) {
            r = kf_tuf_update_root(t, b.data, b.len);
            if (!r) rc = keep(&l, KF_TUF_ROOT, &b);
        }
        kf_buf_free(&b);
        if (rc || r || status == 404) break;
    }
    if (!rc && !r) r = kf_tuf_root_done(t, now);
    if (r) {
        rc = refused(&l, r, "the root");
        goto done;
    }
    if (rc) goto done;

    /* The timestamp: the kept one bounds the new one. */
    kept(&l, KF_TUF_TIMESTAMP, &b);
    if (b.len) kf_tuf_update_timestamp(t, b.data, b.len, now); /* rotated keys: not kept */
    kf_buf_free(&b);
    kf_err_clear();
    rc = fetch_meta(&l, "timestamp.json", &b, &status);
    if (!rc && status != 200) rc = kf_fail(KF_E_NOT_FOUND, "keyfleetd publishes no updates");
    if (!rc) {
        r = kf_tuf_update_timestamp(t, b.data, b.len, now);
        if (!r) rc = keep(&l, KF_TUF_TIMESTAMP, &b);
        if (r == KF_TUF_UNCHANGED) r = KF_TUF_OK;
    }
    kf_buf_free(&b);
    if (!rc && r) rc = refused(&l, r, "timestamp.json");
    if (rc) goto done;

    /* The snapshot and the targets: the kept copies when they are the versions named. */
    for (int role = KF_TUF_SNAPSHOT; role <= KF_TUF_TARGETS; role++) {
        int64_t want;
        uint64_t len;
        kept(&l, (enum kf_tuf_role)role, &b);
        r = b.len ? (role == KF_TUF_SNAPSHOT ? kf_tuf_update_snapshot(t, b.data, b.len, now, 1)
                                             : kf_tuf_update_targets(t, b.data, b.len, now, 1))
                  : KF_TUF_ORDER;
        kf_buf_free(&b);
        kf_err_clear();
        if (!r) continue;
        r = kf_tuf_meta_of(t, (enum kf_tuf_role)role, &want, &len);
        if (r) break;
        snprintf(name, sizeof(name), "%lld.%s", (long long)want, files[role]);
        rc = fetch_meta(&l, name, &b, &status);
        if (!rc && status != 200) rc = kf_fail(KF_E_NOT_FOUND, "keyfleetd has no %s", name);
        if (!rc) {
            r = role == KF_TUF_SNAPSHOT ? kf_tuf_update_snapshot(t, b.data, b.len, now, 0)
                                        : kf_tuf_update_targets(t, b.data, b.len, now, 0);
            if (!r) rc = keep(&l, (enum kf_tuf_role)role, &b);
        }
        kf_buf_free(&b);
        if (rc || r) {
            if (!rc) rc = refused(&l, r, name);
            goto done;
        }
    }
    if (r) {
        rc = refused(&l, r, "the update metadata");
        goto done;
    }

    /* What keyfleetd offers: installed only if it is signed, for this hardware, and newer. */
    rc = fetch_assigned(&l, hardware, assigned, sizeof(assigned));
    if (rc || !assigned[0]) goto done;
    if (kf_tuf_target(t, assigned, &tg) != KF_TUF_OK) {
        kf_err_clear();
        report_once(&l, t, "update.failed", "critical", assigned,
                    json_pack("{s:s}", "reason", "unsigned"));
        goto done;
    }
    hw = json_string_value(json_object_get(tg.custom, "hardware"));
    v = json_object_get(tg.custom, "version");
    if (!json_is_integer(v) || !hw || strcmp(hw, hardware) != 0) {
        report_once(&l, t, "update.failed", "critical", assigned,
                    json_pack("{s:s, s:s?, s:I}", "reason", "hardware", "hardware", hw, "version",
                              (json_int_t)json_integer_value(v)));
        goto done;
    }
    if (json_integer_value(v) < offer->installed) {
        /* an older signed release: a rollback, refused (the floor only goes up) */
        report_once(&l, t, "update.rollback_refused", "critical", assigned,
                    json_pack("{s:I, s:I}", "offered", (json_int_t)json_integer_value(v),
                              "installed", (json_int_t)offer->installed));
        goto done;
    }
    if (json_integer_value(v) == offer->installed) {
        /* installed already: said once, so that the rollout counts this device as done */
        report_once(&l, t, "update.current", "info", assigned,
                    json_pack("{s:I}", "version", (json_int_t)offer->installed));
        goto done;
    }
    offer->available = 1;
    snprintf(offer->name, sizeof(offer->name), "%s", tg.path);
    offer->length = tg.length;
    offer->version = json_integer_value(v);
done:
    kf_tuf_trusted_free(t);
    return rc;
}

int kf_update_check(struct kf_device *dev, const char *root_path, const char *hardware, time_t now,
                    struct kf_update_offer *offer)
{
    struct kf_device_link l;
    enum kf_err rc;
    memset(offer, 0, sizeof(*offer));
    rc = kf_device_link(dev, &l);
    return rc ? rc : kf_update_check_at(&l, root_path, hardware, now, offer);
}

struct sink {
    struct kf_tuf_stream s;
    int fd;
    enum kf_tuf_refusal r;
};

static enum kf_err to_part(void *arg, const void *p, size_t n)
{
    struct sink *k = arg;
    const char *c = p;
    k->r = kf_tuf_stream_update(&k->s, p, n);
    if (k->r) return kf_fail(KF_E_DENIED, "%s", kf_errmsg());
    while (n) {
        ssize_t w = write(k->fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return kf_fail(KF_E_IO, "cannot write the download: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
    return KF_OK;
}

enum kf_err kf_update_download_at(const struct kf_device_link *lp,
                                  const struct kf_update_offer *offer, const char *path)
{
    struct kf_device_link l = *lp;
    struct kf_tuf_target tg;
    char part[PATH_CAP], url[PATH_CAP + 600], tpath[PATH_CAP], hex[65], problem[256] = "";
    struct kf_buf b;
    json_t *doc = NULL;
    struct sink k;
    struct stat st;
    int64_t v;
    uint64_t have = 0;
    int status = 0;
    enum kf_err rc;

    if (!offer || !offer->available) return kf_fail(KF_E_INVALID, "no update on offer");
    if (!kf_tuf_name_ok(offer->name))
        return kf_fail(KF_E_INVALID, "\"%.80s\" is not a target name", offer->name);
    /* The target as the trusted targets metadata has it (kept by kf_update_check). */
    kept(&l, KF_TUF_TARGETS, &b);
    if (!b.len || kf_tuf_parse(b.data, b.len, KF_TUF_TARGETS, &doc, &v) != KF_TUF_OK ||
        kf_tuf_target_of(offer->name,
                         json_object_get(json_object_get(json_object_get(doc, "signed"), "targets"),
                                         offer->name),
                         &tg) != KF_TUF_OK ||
        !tg.has_sha256) {
        json_decref(doc);
        kf_buf_free(&b);
        return kf_fail(KF_E_NOT_FOUND, "no trusted target %s: check for updates first",
                       offer->name);
    }
    json_decref(doc);
    kf_buf_free(&b);
    snprintf(part, sizeof(part), "%s.part", path);
    memset(&k, 0, sizeof(k));
    rc = kf_tuf_stream_init(&k.s, &tg);
    if (rc) return rc;
    k.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (k.fd < 0) {
        kf_tuf_stream_free(&k.s);
        return kf_fail(KF_E_IO, "cannot open %s: %s", part, strerror(errno));
    }
    /* A part from a broken download: its bytes go through the check first, then resume. */
    if (fstat(k.fd, &st) == 0 && st.st_size > 0) {
        unsigned char *buf = malloc(READ_CHUNK);
        ssize_t got;
        while (buf && (got = read(k.fd, buf, READ_CHUNK)) > 0) {
            if (kf_tuf_stream_update(&k.s, buf, (size_t)got) != KF_TUF_OK) break;
            have += (uint64_t)got;
        }
        free(buf);
        if (have != (uint64_t)st.st_size) { /* longer than signed, or unreadable: start over */
            kf_tuf_stream_free(&k.s);
            kf_tuf_stream_init(&k.s, &tg);
            have = 0;
            if (ftruncate(k.fd, 0) != 0 || lseek(k.fd, 0, SEEK_SET) != 0) {
                close(k.fd);
                kf_tuf_stream_free(&k.s);
                return kf_fail(KF_E_IO, "cannot restart %s", part);
            }
        }
    }
    report(&l, "update.downloading", "info",
           json_pack("{s:s, s:I, s:I, s:I}", "name", offer->name, "version",
                     (json_int_t)offer->version, "length", (json_int_t)tg.length, "from",
                     (json_int_t)have));
    kf_tuf_hex(tg.sha256, 32, hex);
    {
        const char *slash = strrchr(offer->name, '/');
        if (slash)
            snprintf(tpath, sizeof(tpath), "%.*s/%s.%s", (int)(slash - offer->name), offer->name,
                     hex, slash + 1);
        else
            snprintf(tpath, sizeof(tpath), "%s.%s", hex, offer->name);
    }
    snprintf(url, sizeof(url), "%s/updates/targets/%s", l.prefix, tpath);
    if (have < tg.length)
        rc = kf_https_get(l.tls, l.host, l.port, url, have, l.timeout_ms, to_part, &k, &status,
                          problem, sizeof(problem));
    if (!rc && have < tg.length && status != 206 && status != 200)
        rc = kf_fail(KF_E_DENIED, "keyfleetd answered %d for %s", status, offer->name);
    if (!rc && status == 200 && have) /* the server sent it all again: not a resumption */
        rc = kf_fail(KF_E_MALFORMED, "keyfleetd did not resume %s", offer->name);
    if (!rc) {
        k.r = kf_tuf_stream_final(&k.s);
        if (k.r) rc = kf_fail(KF_E_DENIED, "%s", kf_errmsg());
    } else {
        kf_tuf_stream_free(&k.s);
    }
    if (!rc && fsync(k.fd) != 0) rc = kf_fail(KF_E_IO, "cannot write %s", part);
    close(k.fd);
    if (k.r) {
        /* Bytes that are not the signed ones: never kept, never resumed. */
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", kf_errmsg());
        unlink(part);
        report(&l, "update.failed", "critical",
               json_pack("{s:s, s:s, s:I, s:s}", "reason", kf_tuf_refusal_name(k.r), "name",
                         offer->name, "version", (json_int_t)offer->version, "message", msg));
        return kf_fail(KF_E_TAMPERED, "%s refused (%s): %s", offer->name, kf_tuf_refusal_name(k.r),
                       msg);
    }
    if (rc) return rc; /* a broken connection: the part stays, to resume */
    if (rename(part, path) != 0)
        return kf_fail(KF_E_IO, "cannot rename %s: %s", part, strerror(errno));
    report(&l, "update.verified", "info",
           json_pack("{s:s, s:I, s:I}", "name", offer->name, "version", (json_int_t)offer->version,
                     "length", (json_int_t)tg.length));
    return KF_OK;
}

int kf_update_download(struct kf_device *dev, const struct kf_update_offer *offer, const char *path)
{
    struct kf_device_link l;
    enum kf_err rc = kf_device_link(dev, &l);
    return rc ? rc : kf_update_download_at(&l, offer, path);
}
