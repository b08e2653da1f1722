#include "server/ops/rollout.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "common/ident.h"
#include "common/log.h"
#include "common/tuf.h"
#include "server/ops/updates.h"
#include "server/store/events.h"

#define ENGINE_ACTOR  "keyfleetd"
#define EVENTS_A_TICK 5000 /* events read in one step (in id order: the primary key) */
/* devices told in one step: each is a store job for a persistent session, well below the
 * store's queue, so that enrollments never wait behind a phase's notifications */
#define NOTIFY_A_TICK 500
#define CURSOR_KEY    "rollout_cursor"

/* ---- device states ---- */

enum dstate {
    D_PENDING,
    D_DOWNLOADING,
    D_VERIFIED,
    D_INSTALLING,
    D_INSTALLED,
    D_CONFIRMED,
    D_FAILED,
    D_REVERTED,
    D_REFUSED,
    D_COUNT
};

static const char *const dnames[D_COUNT] = {
    "pending",   "downloading", "verified", "installing", "installed",
    "confirmed", "failed",      "reverted", "refused",
};

/* The report that moves a device to each state. */
static const struct {
    const char *type;
    enum dstate state;
} reports[] = {
    {"update.downloading", D_DOWNLOADING}, {"update.verified", D_VERIFIED},
    {"update.installing", D_INSTALLING},   {"update.installed", D_INSTALLED},
    {"update.confirmed", D_CONFIRMED},     {"update.failed", D_FAILED},
    {"update.reverted", D_REVERTED},       {"update.rollback_refused", D_REFUSED},
    {"update.current", D_CONFIRMED}, /* it runs that version already */
};

static int dstate_of(const char *name)
{
    for (int i = 0; i < D_COUNT; i++)
        if (strcmp(name, dnames[i]) == 0) return i;
    return -1;
}

static int failure(int s)
{
    return s == D_FAILED || s == D_REVERTED || s == D_REFUSED;
}

/*
 * A device's state moves forward only, and not past confirmed or a failure; except that a
 * device that failed and then installed the release (a download retried once the image was
 * right) is counted installed.
 */
static int moves(int from, int to)
{
    if (from == D_CONFIRMED) return 0;
    if (failure(from)) return to == D_INSTALLED || to == D_CONFIRMED;
    return failure(to) || to > from;
}

/* ---- settings (the rollout's doc) ---- */

struct settings {
    int phases[KF_ROLLOUT_PHASES_MAX];
    size_t n_phases;
    int64_t soak, devices, phase, phase_started;
    int max_bp, min_done_bp;
};

static enum kf_err settings_of(const struct kf_rollout_rec *r, struct settings *s, json_t **doc)
{
    json_t *j = json_loads(r->doc ? r->doc : "{}", 0, NULL), *p;
    size_t i;
    memset(s, 0, sizeof(*s));
    p = json_object_get(j, "phases");
    if (!j || !json_is_array(p) || json_array_size(p) < 1 ||
        json_array_size(p) > KF_ROLLOUT_PHASES_MAX) {
        json_decref(j);
        return kf_fail(KF_E_MALFORMED, "rollout %" PRId64 "'s settings do not read back", r->id);
    }
    s->n_phases = json_array_size(p);
    for (i = 0; i < s->n_phases; i++)
        s->phases[i] = (int)json_integer_value(json_array_get(p, i));
    s->soak = json_integer_value(json_object_get(j, "soak"));
    s->max_bp = (int)json_integer_value(json_object_get(j, "max_failures_bp"));
    s->min_done_bp = (int)json_integer_value(json_object_get(j, "min_done_bp"));
    s->devices = json_integer_value(json_object_get(j, "devices"));
    s->phase = json_integer_value(json_object_get(j, "phase"));
    s->phase_started = json_integer_value(json_object_get(j, "phase_started"));
    if (s->phase < 0 || (size_t)s->phase >= s->n_phases) s->phase = (int64_t)s->n_phases - 1;
    if (doc)
        *doc = j;
    else
        json_decref(j);
    return KF_OK;
}

/* How many devices phases 0..k offer the release to. */
static int64_t phase_end(const struct settings *s, int64_t k)
{
    int64_t n;
    if (k < 0 || s->devices <= 0) return 0;
    n = (s->devices * s->phases[k] + 99) / 100;
    if (n < 1) n = 1;
    return n > s->devices ? s->devices : n;
}

/* ---- parsing what an operator gives ---- */

enum kf_err kf_rollout_parse_phases(const char *text, struct kf_rollout_spec *s)
{
    const char *p = text;
    s->n_phases = 0;
    if (!text || !*text)
        return kf_fail(KF_E_INVALID, "--phases: give percentages, \"1,10,50,100\"");
    while (*p) {
        char *end;
        long v;
        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 100 || (*end && *end != ','))
            return kf_fail(KF_E_INVALID, "--phases \"%s\": each phase is a percentage, 1 to 100",
                           text);
        if (s->n_phases == KF_ROLLOUT_PHASES_MAX)
            return kf_fail(KF_E_INVALID, "--phases \"%s\": at most %d phases", text,
                           KF_ROLLOUT_PHASES_MAX);
        if (s->n_phases && v <= s->phases[s->n_phases - 1])
            return kf_fail(KF_E_INVALID,
                           "--phases \"%s\": phases are cumulative, each above the one before",
                           text);
        s->phases[s->n_phases++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end && !*p) return kf_fail(KF_E_INVALID, "--phases \"%s\" ends with a comma", text);
    }
    if (s->phases[s->n_phases - 1] != 100)
        return kf_fail(KF_E_INVALID, "--phases \"%s\": the last phase is 100 (the whole set)",
                       text);
    return KF_OK;
}

enum kf_err kf_rollout_parse_percent(const char *text, int *bp)
{
    char *end;
    double v;
    if (!text || !*text) return kf_fail(KF_E_INVALID, "give a percentage, \"2%%\"");
    errno = 0;
    v = strtod(text, &end);
    if (end == text || errno || (*end && strcmp(end, "%") != 0) || !(v >= 0 && v <= 100))
        return kf_fail(KF_E_INVALID, "\"%s\": a percentage from 0%% to 100%%", text);
    *bp = (int)(v * 100 + 0.5);
    return KF_OK;
}

enum kf_err kf_rollout_parse_duration(const char *text, int64_t *seconds)
{
    char *end;
    long long v, mult = 1;
    if (!text || !*text) return kf_fail(KF_E_INVALID, "--soak: give a duration, \"10m\"");
    errno = 0;
    v = strtoll(text, &end, 10);
    if (end != text && !errno && v >= 0 && v <= KF_ROLLOUT_SOAK_MAX) {
        if (strcmp(end, "m") == 0)
            mult = 60;
        else if (strcmp(end, "h") == 0)
            mult = 3600;
        else if (strcmp(end, "d") == 0)
            mult = 86400;
        else if (*end && strcmp(end, "s") != 0)
            mult = 0;
        if (mult && v * mult <= KF_ROLLOUT_SOAK_MAX) {
            *seconds = v * mult;
            return KF_OK;
        }
    }
    return kf_fail(KF_E_INVALID,
                   "--soak \"%s\": a duration such as 30s, 10m, 2h or 1d, at most 30 days", text);
}

/* ---- making one ---- */

struct release_find {
    const char *name;
    int found;
    int64_t version;
    char hardware[128];
};

static void release_cb(const struct kf_tuf_target *t, void *arg)
{
    struct release_find *f = arg;
    const char *hw = json_string_value(json_object_get(t->custom, "hardware"));
    const json_t *v = json_object_get(t->custom, "version");
    if (strcmp(t->path, f->name) != 0) return;
    f->found = 1;
    if (hw && strlen(hw) < sizeof(f->hardware) && json_is_integer(v)) {
        snprintf(f->hardware, sizeof(f->hardware), "%s", hw);
        f->version = json_integer_value(v);
        f->found = 2;
    }
}

struct ids {
    char (*id)[KF_ID_MAX + 1];
    size_t n, cap;
};

static enum kf_err ids_add(struct ids *l, const char *id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        void *p;
        if (l->n >= KF_ROLLOUT_DEVICES_MAX)
            return kf_fail(KF_E_OVERSIZE, "a rollout holds at most %d devices",
                           KF_ROLLOUT_DEVICES_MAX);
        p = realloc(l->id, cap * sizeof(*l->id));
        if (!p) return kf_fail(KF_E_NOMEM, "out of memory listing devices");
        l->id = p;
        l->cap = cap;
    }
    snprintf(l->id[l->n++], KF_ID_MAX + 1, "%s", id);
    return KF_OK;
}

static enum kf_err active_cb(const struct kf_device_rec *dev, void *arg)
{
    return ids_add(arg, dev->id);
}

struct create {
    struct kf_deploy *d;
    const struct kf_rollout_spec *s;
    const char *actor;
    struct release_find rel;
    int64_t now, id, n;
    struct ids ids;
};

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The devices the spec names, active ones only, without repeats. */
static enum kf_err gather(struct kf_txn *txn, struct create *c)
{
    const struct kf_rollout_spec *s = c->s;
    enum kf_err rc = KF_OK;
    c->ids.n = 0;
    if (s->all) return kf_txn_device_list(txn, KF_DEVICE_ACTIVE, NULL, active_cb, &c->ids);
    if (s->enrollment) {
        struct kf_enrollment_rec e;
        rc = kf_txn_enrollment_get(txn, s->enrollment, &e);
        kf_enrollment_clear(&e);
        if (rc) return rc;
        return kf_txn_device_list(txn, KF_DEVICE_ACTIVE, s->enrollment, active_cb, &c->ids);
    }
    for (size_t i = 0; i < s->n_devices && !rc; i++) {
        struct kf_device_rec dev;
        rc = kf_txn_device_get(txn, s->devices[i], &dev);
        if (!rc && dev.status != KF_DEVICE_ACTIVE)
            rc = kf_fail(KF_E_INVALID,
                         "device %s is %s: a rollout offers releases to active "
                         "devices",
                         s->devices[i], kf_device_status_name(dev.status));
        if (!rc) rc = ids_add(&c->ids, s->devices[i]);
    }
    if (rc) return rc;
    qsort(c->ids.id, c->ids.n, sizeof(*c->ids.id), id_cmp);
    for (size_t i = 1; i < c->ids.n; i++)
        if (strcmp(c->ids.id[i], c->ids.id[i - 1]) == 0)
            return kf_fail(KF_E_INVALID, "device %s is named twice", c->ids.id[i]);
    return KF_OK;
}

/* A random order: phase 1 is a sample of the set, not its first names. */
static enum kf_err shuffle(struct ids *l)
{
    for (size_t i = l->n; i > 1; i--) {
        uint64_t r;
        char tmp[KF_ID_MAX + 1];
        size_t j;
        if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
            return kf_fail(KF_E_CRYPTO, "no random numbers for the rollout's order");
        j = (size_t)(r % i);
        memcpy(tmp, l->id[i - 1], sizeof(tmp));
        memcpy(l->id[i - 1], l->id[j], sizeof(tmp));
        memcpy(l->id[j], tmp, sizeof(tmp));
    }
    return KF_OK;
}

static json_t *selector_of(const struct kf_rollout_spec *s, size_t n)
{
    if (s->all) return json_pack("{s:b}", "all", 1);
    if (s->enrollment) return json_pack("{s:s}", "enrollment", s->enrollment);
    return json_pack("{s:I}", "list", (json_int_t)n);
}

static char *dump(json_t *j)
{
    char *t = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return t;
}

static enum kf_err audit(struct kf_txn *txn, const char *actor, const char *action, int64_t id,
                         json_t *detail)
{
    char object[48], *text = dump(detail);
    enum kf_err rc;
    snprintf(object, sizeof(object), "rollout:%" PRId64, id);
    rc = text ? kf_txn_audit_append(txn, actor, action, object, text)
              : kf_fail(KF_E_NOMEM, "out of memory");
    free(text);
    return rc;
}

struct supersede {
    const char *hardware, *target; /* the rollouts for this hardware, or of this release */
    int64_t ids[64], n, newest;
};

static enum kf_err older_cb(const struct kf_rollout_rec *r, void *arg)
{
    struct supersede *w = arg;
    if (r->id != w->newest &&
        (w->hardware ? strcmp(r->hardware, w->hardware) : strcmp(r->target, w->target)) == 0 &&
        (strcmp(r->state, "running") == 0 || strcmp(r->state, "paused") == 0 ||
         /* a completed rollout offers its release still: not a revoked one */
         (w->target && strcmp(r->state, "completed") == 0)) &&
        w->n < (int64_t)KF_ARRAY_LEN(w->ids))
        w->ids[w->n++] = r->id;
    return KF_OK;
}

/*
 * A new rollout for a hardware ends the running or paused ones for it (the newest decides what
 * a device is offered: an older one would go on counting devices that no longer hear of it).
 */
static enum kf_err end_rollouts(struct kf_txn *txn, const char *actor, struct supersede *w,
                                int64_t now, const char *why_text);
static enum kf_err end_batch(struct kf_txn *txn, const char *actor, struct supersede *w,
                             int64_t now, const char *why_text, int64_t newest);

static enum kf_err supersede(struct kf_txn *txn, const char *actor, const char *hardware,
                             int64_t newest, int64_t now)
{
    struct supersede w;
    char why[64];
    memset(&w, 0, sizeof(w));
    w.hardware = hardware;
    w.newest = newest;
    snprintf(why, sizeof(why), "superseded by rollout %" PRId64, newest);
    return end_rollouts(txn, actor, &w, now, why);
}

/* Aborts the running or paused rollouts `w` matches, each audited with `why_text`. */
static enum kf_err end_rollouts(struct kf_txn *txn, const char *actor, struct supersede *w,
                                int64_t now, const char *why_text)
{
    int64_t newest = w->newest, total = 0;
    enum kf_err rc = KF_OK;
    /* in batches until none is left (each batch aborted no longer matches) */
    do {
        w->n = 0;
        rc = kf_txn_rollout_list(txn, older_cb, w);
        if (!rc) rc = end_batch(txn, actor, w, now, why_text, newest);
        total += w->n;
    } while (!rc && w->n == (int64_t)KF_ARRAY_LEN(w->ids));
    w->n = total;
    return rc;
}

static enum kf_err end_batch(struct kf_txn *txn, const char *actor, struct supersede *w,
                             int64_t now, const char *why_text, int64_t newest)
{
    enum kf_err rc = KF_OK;
    for (int64_t i = 0; i < w->n && !rc; i++) {
        struct kf_rollout_rec r;
        json_t *doc = NULL;
        const char *why = why_text;
        rc = kf_txn_rollout_get(txn, w->ids[i], &r);
        if (!rc) doc = json_loads(r.doc ? r.doc : "{}", 0, NULL);
        if (!rc && !doc)
            rc = kf_fail(KF_E_MALFORMED, "rollout %" PRId64 " does not read back", r.id);
        if (!rc) {
            snprintf(r.state, sizeof(r.state), "aborted");
            if (json_object_set_new(doc, "reason", json_string(why)) != 0)
                rc = kf_fail(KF_E_INVALID, "the reason is not UTF-8 text");
            free(r.doc);
            r.doc = dump(json_incref(doc));
            r.updated = now;
            rc = r.doc ? kf_txn_rollout_update(txn, &r) : kf_fail(KF_E_NOMEM, "out of memory");
        }
        if (!rc)
            rc = audit(txn, actor, "rollout.abort", r.id,
                       newest ? json_pack("{s:s, s:s, s:I}", "release", r.target, "reason", why,
                                          "superseded_by", (json_int_t)newest)
                              : json_pack("{s:s, s:s}", "release", r.target, "reason", why));
        json_decref(doc);
        kf_rollout_rec_clear(&r);
    }
    return rc;
}

static enum kf_err create_cb(struct kf_txn *txn, void *arg)
{
    struct create *c = arg;
    const struct kf_rollout_spec *s = c->s;
    struct kf_rollout_rec r;
    struct settings st;
    json_t *phases = json_array(), *doc;
    int revoked = 0;
    /* checked here, in the transaction: a revoke that writes its file before this commits finds
     * this rollout and ends it; one after sees the file (kf_updates_revoke writes it first) */
    enum kf_err rc = kf_updates_revoked(c->d, s->release, &revoked, NULL);
    if (!rc && revoked)
        rc = kf_fail(KF_E_DENIED,
                     "%s is revoked (keyfleet release show %s): it is offered to nobody",
                     s->release, s->release);
    if (!rc) rc = gather(txn, c);
    if (!rc && c->ids.n == 0)
        rc = kf_fail(KF_E_INVALID, "no active device to roll out to%s%s",
                     s->enrollment ? " in enrollment " : "", s->enrollment ? s->enrollment : "");
    if (!rc) rc = shuffle(&c->ids);
    if (rc) {
        json_decref(phases);
        return rc;
    }
    for (size_t i = 0; i < s->n_phases; i++)
        json_array_append_new(phases, json_integer(s->phases[i]));
    doc = json_pack("{s:o, s:I, s:i, s:i, s:I, s:i, s:I, s:o, s:s}", "phases", phases, "soak",
                    (json_int_t)s->soak_s, "max_failures_bp", s->max_failures_bp, "min_done_bp",
                    s->min_done_bp, "devices", (json_int_t)c->ids.n, "phase", 0, "phase_started",
                    (json_int_t)c->now, "selector", selector_of(s, c->ids.n), "by", c->actor);
    memset(&r, 0, sizeof(r));
    snprintf(r.state, sizeof(r.state), "running");
    snprintf(r.target, sizeof(r.target), "%s", s->release);
    snprintf(r.hardware, sizeof(r.hardware), "%s", c->rel.hardware);
    r.version = c->rel.version;
    r.created = r.updated = c->now;
    r.doc = dump(json_incref(doc));
    memset(&st, 0, sizeof(st));
    memcpy(st.phases, s->phases, sizeof(st.phases));
    st.n_phases = s->n_phases;
    st.devices = (int64_t)c->ids.n;
    r.released = phase_end(&st, 0);
    rc = r.doc ? kf_txn_rollout_insert(txn, &r, &c->id) : kf_fail(KF_E_NOMEM, "out of memory");
    for (size_t i = 0; i < c->ids.n && !rc; i++) {
        struct kf_rollout_device_rec d;
        memset(&d, 0, sizeof(d));
        d.rollout = c->id;
        snprintf(d.device, sizeof(d.device), "%s", c->ids.id[i]);
        d.ord = (int64_t)i;
        snprintf(d.state, sizeof(d.state), "%s", dnames[D_PENDING]);
        d.updated = c->now;
        rc = kf_txn_rollout_device_put(txn, &d);
    }
    if (!rc) {
        json_object_set_new(doc, "release", json_string(s->release));
        json_object_set_new(doc, "version", json_integer(r.version));
        json_object_set_new(doc, "hardware", json_string(r.hardware));
        json_object_del(doc, "by");
        json_object_del(doc, "phase_started");
        json_object_del(doc, "phase");
        rc = audit(txn, c->actor, "rollout.create", c->id, json_incref(doc));
    }
    if (!rc) rc = supersede(txn, c->actor, r.hardware, c->id, c->now);
    c->n = (int64_t)c->ids.n;
    json_decref(doc);
    free(r.doc);
    return rc;
}

struct end_release {
    const char *actor, *name, *reason;
    int64_t now, n;
};

static enum kf_err end_release_cb(struct kf_txn *txn, void *arg)
{
    struct end_release *e = arg;
    struct supersede w;
    char why[600];
    memset(&w, 0, sizeof(w));
    w.target = e->name;
    snprintf(why, sizeof(why), "release revoked%s%s", e->reason ? ": " : "",
             e->reason ? e->reason : "");
    e->n = 0;
    {
        enum kf_err rc = end_rollouts(txn, e->actor, &w, e->now, why);
        e->n = w.n;
        return rc;
    }
}

enum kf_err kf_rollout_end_release(struct kf_deploy *d, const char *actor, const char *name,
                                   const char *reason, int64_t *n)
{
    struct end_release e = {actor, name, reason, (int64_t)time(NULL), 0};
    enum kf_err rc = kf_store_write(d->store, end_release_cb, &e);
    if (n) *n = rc ? 0 : e.n;
    return rc;
}

enum kf_err kf_rollout_create(struct kf_deploy *d, const char *actor,
                              const struct kf_rollout_spec *s, int64_t *id, int64_t *n_devices)
{
    struct kf_updates_result cur;
    struct create c;
    enum kf_err rc;
    int ways = !!s->all + !!s->enrollment + !!s->n_devices;

    if (ways != 1)
        return kf_fail(KF_E_INVALID,
                       "name the devices one way: --all, --enrollment E or --devices FILE");
    if (!s->release || !kf_tuf_name_ok(s->release))
        return kf_fail(KF_E_INVALID, "--release: the name of a published target (keyfleet "
                                     "release list)");
    if (s->n_phases < 1 || s->phases[s->n_phases - 1] != 100)
        return kf_fail(KF_E_INVALID, "the last phase must be 100%%");
    if (s->soak_s < 0 || s->soak_s > KF_ROLLOUT_SOAK_MAX || s->max_failures_bp < 0 ||
        s->max_failures_bp > 10000 || s->min_done_bp < 0 || s->min_done_bp > 10000)
        return kf_fail(KF_E_INVALID, "soak or failure threshold out of range");
    memset(&c, 0, sizeof(c));
    c.d = d;
    c.s = s;
    c.actor = actor;
    c.rel.name = s->release;
    rc = kf_updates_list(d, release_cb, &c.rel, &cur);
    if (rc) return rc;
    if (!cur.timestamp_version)
        return kf_fail(KF_E_NOT_FOUND, "no release is published: keyfleet release add first");
    if (!c.rel.found)
        return kf_fail(KF_E_NOT_FOUND,
                       "%s is not in the published targets (targets version %" PRId64
                       "): keyfleet release list",
                       s->release, cur.targets_version);
    if (c.rel.found != 2)
        return kf_fail(KF_E_INVALID,
                       "%s has no hardware or no version in its signed custom data: devices "
                       "could not tell whether it is theirs or newer",
                       s->release);
    c.now = (int64_t)time(NULL);
    rc = kf_store_write(d->store, create_cb, &c);
    free(c.ids.id);
    if (rc) return rc;
    *id = c.id;
    if (n_devices) *n_devices = c.n;
    return KF_OK;
}

/* ---- counting ---- */

struct tally {
    const struct settings *s;
    int64_t (*phase)[D_COUNT]; /* per phase */
    int64_t all[D_COUNT];
    int64_t cur_failed;     /* failures among the current phase's devices (not accepted) */
    int64_t cur_done;       /* the current phase's devices installed, confirmed or failed */
    int64_t offered_failed; /* failures among all the devices offered it so far (same) */
    int64_t accepted;       /* failures an operator accepted */
    /* the failed rows, for resume to accept them */
    struct kf_rollout_device_rec *accept;
    size_t n_accept, cap_accept;
    int64_t released; /* how many were offered it */
    /* the devices from `from` up to `to` (by ord), for telling them */
    int64_t from, to;
    char (*tell)[KF_ID_MAX + 1];
    size_t n_tell;
};

static int64_t phase_of(const struct settings *s, int64_t ord)
{
    for (size_t k = 0; k < s->n_phases; k++)
        if (ord < phase_end(s, (int64_t)k)) return (int64_t)k;
    return (int64_t)s->n_phases - 1;
}

static enum kf_err tally_cb(const struct kf_rollout_device_rec *d, void *arg)
{
    struct tally *t = arg;
    int st = dstate_of(d->state);
    int64_t k = phase_of(t->s, d->ord);
    if (st < 0) st = D_PENDING;
    t->all[st]++;
    if (t->phase) t->phase[k][st]++;
    if (failure(st) && d->accepted) t->accepted++;
    if (k == t->s->phase && (st == D_INSTALLED || st == D_CONFIRMED || failure(st))) t->cur_done++;
    if (failure(st) && !d->accepted) {
        if (k == t->s->phase) t->cur_failed++;
        if (d->ord < t->released) t->offered_failed++;
        if (t->accept && t->n_accept < t->cap_accept) t->accept[t->n_accept++] = *d;
    }
    if (t->tell && d->ord >= t->from && d->ord < t->to)
        snprintf(t->tell[t->n_tell++], KF_ID_MAX + 1, "%s", d->device);
    return KF_OK;
}

static json_t *counts_json(const int64_t *n)
{
    json_t *o = json_object();
    for (int i = 0; i < D_COUNT; i++)
        json_object_set_new(o, dnames[i], json_integer(n[i]));
    return o;
}

static json_t *show_json(const struct kf_rollout_rec *r, const struct settings *s,
                         const struct tally *t, json_t *doc)
{
    json_t *phases = json_array();
    char pct[32], done[32];
    for (size_t k = 0; k < s->n_phases; k++) {
        int64_t end = phase_end(s, (int64_t)k), start = phase_end(s, (int64_t)k - 1);
        json_array_append_new(phases, json_pack("{s:I, s:i, s:I, s:b, s:o}", "phase",
                                                (json_int_t)k + 1, "percent", s->phases[k],
                                                "devices", (json_int_t)(end - start), "offered",
                                                end <= r->released && end > start, "counts",
                                                counts_json(t->phase[k])));
    }
    snprintf(pct, sizeof(pct), "%g%%", s->max_bp / 100.0);
    snprintf(done, sizeof(done), "%g%%", s->min_done_bp / 100.0);
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:s, s:s, s:I, s:O?, "
        "s:O?, s:s?, s:I, s:I}",
        "id", (json_int_t)r->id, "state", r->state, "release", r->target, "hardware", r->hardware,
        "version", (json_int_t)r->version, "devices", (json_int_t)s->devices, "offered",
        (json_int_t)r->released, "phase", (json_int_t)s->phase + 1, "phases", phases, "counts",
        counts_json(t->all), "soak", (json_int_t)s->soak, "max_failures", pct, "min_done", done,
        "accepted", (json_int_t)t->accepted, "selector", json_object_get(doc, "selector"), "reason",
        json_object_get(doc, "reason"), "by", json_string_value(json_object_get(doc, "by")),
        "created", (json_int_t)r->created, "updated", (json_int_t)r->updated);
}

/* Counts rollout `r`'s devices; `*out` (may be NULL) its JSON. */
static enum kf_err tally_of(struct kf_txn *txn, const struct kf_rollout_rec *r, struct settings *s,
                            struct tally *t, json_t **out)
{
    json_t *doc = NULL;
    enum kf_err rc = settings_of(r, s, &doc);
    t->s = s;
    t->released = r->released;
    if (!rc) t->phase = calloc(s->n_phases, sizeof(*t->phase));
    if (!rc && !t->phase) rc = kf_fail(KF_E_NOMEM, "out of memory");
    if (!rc) rc = kf_txn_rollout_device_list(txn, r->id, tally_cb, t);
    if (!rc && out) {
        *out = show_json(r, s, t, doc);
        if (!*out) rc = kf_fail(KF_E_NOMEM, "out of memory");
    }
    json_decref(doc);
    free(t->phase);
    t->phase = NULL;
    return rc;
}

enum kf_err kf_rollout_show(struct kf_store *store, int64_t id, json_t **out)
{
    struct kf_txn *txn = NULL;
    struct kf_rollout_rec r;
    struct settings s;
    struct tally t;
    enum kf_err rc = kf_store_read(store, &txn);
    memset(&r, 0, sizeof(r));
    memset(&t, 0, sizeof(t));
    if (!rc) rc = kf_txn_rollout_get(txn, id, &r);
    if (!rc) rc = tally_of(txn, &r, &s, &t, out);
    kf_rollout_rec_clear(&r);
    kf_txn_end(txn);
    return rc;
}

struct list {
    struct kf_txn *txn;
    json_t *arr;
};

static enum kf_err list_cb(const struct kf_rollout_rec *r, void *arg)
{
    struct list *l = arg;
    struct settings s;
    struct tally t;
    json_t *j = NULL;
    enum kf_err rc;
    memset(&t, 0, sizeof(t));
    rc = tally_of(l->txn, r, &s, &t, &j);
    if (!rc) json_array_append_new(l->arr, j);
    return rc;
}

enum kf_err kf_rollout_list(struct kf_store *store, json_t **out)
{
    struct list l = {NULL, json_array()};
    enum kf_err rc = kf_store_read(store, &l.txn);
    if (!rc) rc = kf_txn_rollout_list(l.txn, list_cb, &l);
    kf_txn_end(l.txn);
    if (rc) {
        json_decref(l.arr);
        return rc;
    }
    *out = l.arr;
    return KF_OK;
}

enum kf_err kf_rollout_assigned(struct kf_store *store, const char *device, const char *hardware,
                                json_t **out)
{
    struct kf_txn *txn = NULL;
    struct kf_rollout_rec r;
    enum kf_err rc = kf_store_read(store, &txn);
    memset(&r, 0, sizeof(r));
    if (!rc) rc = kf_txn_rollout_assigned(txn, device, hardware, &r);
    kf_txn_end(txn);
    /* the newest rollout decides: paused or aborted, it offers nothing (never an older one) */
    if (rc == KF_E_NOT_FOUND ||
        (!rc && strcmp(r.state, "running") != 0 && strcmp(r.state, "completed") != 0)) {
        kf_err_clear();
        *out = json_pack("{s:n, s:n, s:n}", "rollout", "target", "version");
        rc = KF_OK;
    } else if (!rc) {
        *out = json_pack("{s:I, s:s, s:I}", "rollout", (json_int_t)r.id, "target", r.target,
                         "version", (json_int_t)r.version);
    }
    kf_rollout_rec_clear(&r);
    if (!rc && !*out) rc = kf_fail(KF_E_NOMEM, "out of memory");
    return rc;
}

/* ---- operators' changes ---- */

struct act {
    const char *actor, *reason;
    int64_t id, now;
    enum kf_rollout_action a;
};

static const char *const act_names[] = {"", "pause", "resume", "abort"};

/* Marks every failed device of `r` accepted; `*n` says how many. */
static enum kf_err accept_failures(struct kf_txn *txn, const struct kf_rollout_rec *r, int64_t *n)
{
    struct kf_rollout_device_rec batch[512];
    enum kf_err rc = KF_OK;
    *n = 0;
    for (;;) {
        struct settings s;
        struct tally t;
        memset(&t, 0, sizeof(t));
        t.accept = batch;
        t.cap_accept = KF_ARRAY_LEN(batch);
        rc = tally_of(txn, r, &s, &t, NULL);
        for (size_t i = 0; i < t.n_accept && !rc; i++) {
            batch[i].accepted = 1;
            rc = kf_txn_rollout_device_put(txn, &batch[i]);
        }
        *n += (int64_t)t.n_accept;
        if (rc || t.n_accept < t.cap_accept) return rc;
    }
}

static enum kf_err act_cb(struct kf_txn *txn, void *arg)
{
    struct act *a = arg;
    struct kf_rollout_rec r;
    struct settings s;
    struct tally t;
    json_t *doc = NULL;
    char action[32];
    int64_t accepted = 0;
    enum kf_err rc = kf_txn_rollout_get(txn, a->id, &r);
    if (rc) return rc;
    memset(&t, 0, sizeof(t));
    rc = tally_of(txn, &r, &s, &t, NULL);
    if (!rc) rc = settings_of(&r, &s, &doc);
    if (rc) goto out;
    if ((a->a == KF_ROLLOUT_PAUSE && strcmp(r.state, "running") != 0) ||
        (a->a == KF_ROLLOUT_RESUME && strcmp(r.state, "paused") != 0) ||
        (a->a == KF_ROLLOUT_ABORT && strcmp(r.state, "running") != 0 &&
         strcmp(r.state, "paused") != 0)) {
        rc = kf_fail(KF_E_INVALID, "rollout %" PRId64 " is %s: it cannot be %s", r.id, r.state,
                     a->a == KF_ROLLOUT_PAUSE    ? "paused (only a running one)"
                     : a->a == KF_ROLLOUT_RESUME ? "resumed (only a paused one)"
                                                 : "aborted (it is over)");
        goto out;
    }
    snprintf(r.state, sizeof(r.state), "%s",
             a->a == KF_ROLLOUT_PAUSE    ? "paused"
             : a->a == KF_ROLLOUT_RESUME ? "running"
                                         : "aborted");
    if (a->a == KF_ROLLOUT_RESUME) {
        /* the failures seen so far are accepted (those devices, not a count: one that
         * recovers does not hide a new one); the phase soaks again from now */
        rc = accept_failures(txn, &r, &accepted);
        if (rc) goto out;
        json_object_set_new(doc, "phase_started", json_integer(a->now));
        json_object_del(doc, "reason");
    } else if (a->reason) {
        json_object_set_new(doc, "reason", json_string(a->reason));
    } else {
        json_object_set_new(doc, "reason", json_sprintf("%s by %s", act_names[a->a], a->actor));
    }
    free(r.doc);
    r.doc = dump(json_incref(doc));
    r.updated = a->now;
    rc = r.doc ? kf_txn_rollout_update(txn, &r) : kf_fail(KF_E_NOMEM, "out of memory");
    snprintf(action, sizeof(action), "rollout.%s", act_names[a->a]);
    if (!rc)
        rc = audit(txn, a->actor, action, r.id,
                   json_pack("{s:s, s:I, s:I, s:s?}", "release", r.target, "phase",
                             (json_int_t)s.phase + 1, "accepted_failures", (json_int_t)accepted,
                             "reason", a->reason));
out:
    json_decref(doc);
    kf_rollout_rec_clear(&r);
    return rc;
}

enum kf_err kf_rollout_act(struct kf_deploy *d, const char *actor, int64_t id,
                           enum kf_rollout_action a, const char *reason)
{
    struct act w = {actor, reason, id, (int64_t)time(NULL), a};
    if (a < KF_ROLLOUT_PAUSE || a > KF_ROLLOUT_ABORT)
        return kf_fail(KF_E_INVALID, "no such rollout change");
    if (reason && strlen(reason) > 500) return kf_fail(KF_E_OVERSIZE, "the reason is too long");
    return kf_store_write(d->store, act_cb, &w);
}

/* ---- the engine ---- */

struct told {
    int64_t id, upto; /* rollout `id`'s devices below `upto` were told */
};

struct kf_rollout_engine {
    int64_t cursor; /* the last event read */
    int started;    /* the first step was taken */
    struct told *told;
    size_t n_told, cap_told;
};

enum kf_err kf_rollout_engine_new(struct kf_rollout_engine **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? KF_OK : kf_fail(KF_E_NOMEM, "out of memory");
}

void kf_rollout_engine_free(struct kf_rollout_engine *e)
{
    if (!e) return;
    free(e->told);
    free(e);
}

static struct told *told_of(struct kf_rollout_engine *e, int64_t id, int64_t initial)
{
    for (size_t i = 0; i < e->n_told; i++)
        if (e->told[i].id == id) return &e->told[i];
    if (e->n_told == e->cap_told) {
        size_t cap = e->cap_told ? e->cap_told * 2 : 16;
        void *p = realloc(e->told, cap * sizeof(*e->told));
        if (!p) return NULL;
        e->told = p;
        e->cap_told = cap;
    }
    e->told[e->n_told].id = id;
    e->told[e->n_told].upto = initial;
    return &e->told[e->n_told++];
}

struct note {
    int64_t rollout, from, to; /* tell devices with ord in [from, to) */
};

struct step {
    struct kf_rollout_engine *e;
    struct kf_txn *txn;
    int64_t now, cursor, stored; /* the last event read; the cursor the store keeps */
    int64_t scanned;             /* events read this step */
    int write, changed;
    /* what to do once committed */
    json_t *paused; /* details of update.rollout_paused events */
    struct note notes[64];
    size_t n_notes;
    int64_t budget;
};

/*
 * A device's report about a release: its row in the newest rollout that offered it that release
 * moves. The report names the release ("name", or "target" for a refusal) and its version
 * ("version", "offered" for a refusal); a report naming neither is about nothing of ours.
 */
static enum kf_err report_cb(const struct kf_event_rec *ev, void *arg)
{
    struct step *st = arg;
    struct kf_rollout_device_rec d;
    struct kf_rollout_rec r;
    json_t *detail;
    const json_t *v;
    const char *why, *name;
    int to = -1, from;
    enum kf_err rc;

    st->cursor = ev->id;
    st->scanned++;
    if (strncmp(ev->type, "update.", 7) != 0 || strcmp(ev->source, "device") != 0 || !ev->device[0])
        return KF_OK;
    for (size_t i = 0; i < KF_ARRAY_LEN(reports); i++)
        if (strcmp(ev->type, reports[i].type) == 0) to = (int)reports[i].state;
    if (to < 0) return KF_OK;
    detail = json_loads(ev->detail ? ev->detail : "{}", 0, NULL);
    v = json_object_get(detail, to == D_REFUSED ? "offered" : "version");
    name = json_string_value(json_object_get(detail, "name"));
    if (!name) name = json_string_value(json_object_get(detail, "target"));
    if ((!json_is_integer(v) && !name) || (name && strlen(name) >= KF_ROLLOUT_TARGET_MAX)) {
        json_decref(detail);
        return KF_OK;
    }
    memset(&r, 0, sizeof(r));
    rc = kf_txn_rollout_device_find(st->txn, ev->device,
                                    json_is_integer(v) ? json_integer_value(v) : -1, name, &d);
    if (!rc) rc = kf_txn_rollout_get(st->txn, d.rollout, &r);
    if (rc == KF_E_NOT_FOUND) { /* not part of a rollout of that version */
        kf_err_clear();
        rc = KF_OK;
        goto out;
    }
    from = dstate_of(d.state);
    /* a report from before the rollout was made is about something else */
    if (rc || ev->time_ms / 1000 < r.created || !moves(from < 0 ? D_PENDING : from, to)) goto out;
    st->changed = 1;
    if (!st->write) goto out;
    snprintf(d.state, sizeof(d.state), "%s", dnames[to]);
    if (failure(to)) d.accepted = 0; /* a new failure counts, whatever was accepted before */
    why = json_string_value(json_object_get(detail, "reason"));
    snprintf(d.reason, sizeof(d.reason), "%s",
             to == D_REFUSED    ? "rollback"
             : to == D_REVERTED ? "not confirmed"
             : failure(to)      ? (why ? why : "failed")
                                : "");
    d.updated = st->now;
    rc = kf_txn_rollout_device_put(st->txn, &d);
out:
    kf_rollout_rec_clear(&r);
    json_decref(detail);
    return rc;
}

struct recs {
    struct kf_rollout_rec *r;
    size_t n, cap;
};

static void recs_free(struct recs *l)
{
    for (size_t i = 0; i < l->n; i++)
        kf_rollout_rec_clear(&l->r[i]);
    free(l->r);
    memset(l, 0, sizeof(*l));
}

static enum kf_err running_cb(const struct kf_rollout_rec *r, void *arg)
{
    struct recs *l = arg;
    /* running ones are judged; completed ones may still have devices to tell */
    if (strcmp(r->state, "running") != 0 && strcmp(r->state, "completed") != 0) return KF_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *p = realloc(l->r, cap * sizeof(*l->r));
        if (!p) return kf_fail(KF_E_NOMEM, "out of memory");
        l->r = p;
        l->cap = cap;
    }
    l->r[l->n] = *r;
    l->r[l->n].doc = strdup(r->doc ? r->doc : "{}");
    if (!l->r[l->n].doc) return kf_fail(KF_E_NOMEM, "out of memory");
    l->n++;
    return KF_OK;
}

/* Rollout `r` (running): pause it, advance it, complete it, or leave it; which devices to tell. */
static enum kf_err eval(struct step *st, struct kf_rollout_rec *r)
{
    struct told *told = told_of(st->e, r->id, st->e->started ? 0 : r->released);
    const char *action = NULL;
    json_t *doc = NULL, *detail = NULL;
    struct settings s;
    struct tally t;
    int64_t start, end, size, failed, all_failed;
    enum kf_err rc = KF_OK;

    if (strcmp(r->state, "completed") == 0) goto tell; /* (completed in a step before) */
    memset(&t, 0, sizeof(t));
    rc = tally_of(st->txn, r, &s, &t, NULL);
    if (!rc) rc = settings_of(r, &s, &doc);
    if (rc) return rc;
    start = phase_end(&s, s.phase - 1);
    end = phase_end(&s, s.phase);
    size = end - start;
    failed = t.cur_failed;
    all_failed = t.offered_failed;
    /* over the threshold in the phase, or among all offered it so far (late failures of an
     * earlier phase count too) */
    if ((size > 0 && failed * 10000 > (int64_t)s.max_bp * size) ||
        (r->released > 0 && all_failed * 10000 > (int64_t)s.max_bp * r->released)) {
        char why[200];
        if (!(size > 0 && failed * 10000 > (int64_t)s.max_bp * size)) {
            failed = all_failed;
            size = r->released;
            snprintf(why, sizeof(why),
                     "%" PRId64 " of the %" PRId64 " devices offered it failed: over the %g%% "
                     "allowed",
                     failed, size, s.max_bp / 100.0);
        } else {
            snprintf(why, sizeof(why),
                     "%" PRId64 " of the %" PRId64 " devices of phase %" PRId64
                     " failed: over the %g%% allowed",
                     failed, size, s.phase + 1, s.max_bp / 100.0);
        }
        action = "rollout.pause";
        snprintf(r->state, sizeof(r->state), "paused");
        json_object_set_new(doc, "reason", json_string(why));
        detail = json_pack("{s:I, s:s, s:I, s:I, s:I, s:s}", "rollout", (json_int_t)r->id,
                           "release", r->target, "phase", (json_int_t)s.phase + 1, "failed",
                           (json_int_t)failed, "devices", (json_int_t)size, "reason", why);
    } else if (st->now >= s.phase_started + s.soak &&
               t.cur_done * 10000 >= (int64_t)s.min_done_bp * size) {
        if ((size_t)s.phase + 1 < s.n_phases) {
            s.phase++;
            r->released = phase_end(&s, s.phase);
            action = "rollout.advance";
            json_object_set_new(doc, "phase", json_integer(s.phase));
            json_object_set_new(doc, "phase_started", json_integer(st->now));
            detail = json_pack("{s:s, s:I, s:i, s:I}", "release", r->target, "phase",
                               (json_int_t)s.phase + 1, "percent", s.phases[s.phase], "offered",
                               (json_int_t)r->released);
        } else {
            action = "rollout.complete";
            snprintf(r->state, sizeof(r->state), "completed");
            detail = json_pack("{s:s, s:o}", "release", r->target, "counts", counts_json(t.all));
        }
    }
    if (action) {
        st->changed = 1;
        if (st->write) {
            free(r->doc);
            r->doc = dump(json_incref(doc));
            r->updated = st->now;
            rc = r->doc ? kf_txn_rollout_update(st->txn, r) : kf_fail(KF_E_NOMEM, "out of memory");
            if (!rc)
                rc = audit(st->txn, ENGINE_ACTOR, action, r->id,
                           json_deep_copy(detail)); /* the paused event keeps its own */
            if (!rc && strcmp(action, "rollout.pause") == 0) json_array_append(st->paused, detail);
        }
    }
    json_decref(detail);
    json_decref(doc);
tell:
    /* a rollout offered (running, or completed: perhaps in this very step) is told about */
    if (!rc && told && strcmp(r->state, "paused") != 0 && strcmp(r->state, "aborted") != 0 &&
        told->upto < r->released && st->budget > 0 && st->n_notes < KF_ARRAY_LEN(st->notes)) {
        int64_t to = r->released - told->upto > st->budget ? told->upto + st->budget : r->released;
        st->notes[st->n_notes++] = (struct note){r->id, told->upto, to};
        st->budget -= to - told->upto;
    }
    return rc;
}

/* One pass over the reports and the running rollouts, reading only or writing. */
static enum kf_err pass(struct kf_txn *txn, struct step *st)
{
    struct recs l;
    enum kf_err rc;
    st->txn = txn;
    st->changed = 0;
    st->scanned = 0;
    st->n_notes = 0;
    st->budget = NOTIFY_A_TICK;
    json_array_clear(st->paused);
    memset(&l, 0, sizeof(l));
    /* where the last step that wrote left off (another keyfleetd run, say), or further */
    rc = kf_txn_counter_get(txn, CURSOR_KEY, &st->stored);
    st->cursor = st->stored > st->e->cursor ? st->stored : st->e->cursor;
    /* every event in id order (the primary key), the reports picked out here */
    if (!rc) rc = kf_txn_event_after(txn, st->cursor, EVENTS_A_TICK, report_cb, st);
    /* catching up on a backlog (after a restart): no rollout is judged on half of it */
    if (!rc && st->scanned >= EVENTS_A_TICK) goto out;
    if (!rc) rc = kf_txn_rollout_list(txn, running_cb, &l);
    for (size_t i = 0; i < l.n && !rc; i++)
        rc = eval(st, &l.r[i]);
out:
    /* the cursor is kept once it is well ahead of what the store has */
    if (!rc && st->cursor - st->stored >= EVENTS_A_TICK) st->changed = 1;
    if (!rc && st->write && st->cursor != st->stored)
        rc = kf_txn_counter_put(txn, CURSOR_KEY, st->cursor);
    recs_free(&l);
    return rc;
}

static enum kf_err write_cb(struct kf_txn *txn, void *arg)
{
    struct step *st = arg;
    st->write = 1;
    return pass(txn, st);
}

/* Tells the devices of each note, then remembers they were told. */
static void tell(struct step *st, struct kf_deploy *d, kf_rollout_notify_cb notify, void *arg)
{
    struct kf_txn *txn = NULL;
    if (!st->n_notes) return;
    if (kf_store_read(d->store, &txn) != KF_OK) {
        kf_log(KF_LOG_WARN, "rollout", "cannot read the devices to tell", "error", kf_errmsg(),
               NULL);
        kf_err_clear();
        return;
    }
    for (size_t i = 0; i < st->n_notes; i++) {
        const struct note *n = &st->notes[i];
        struct kf_rollout_rec r;
        struct settings s;
        struct tally t;
        struct told *told;
        char *payload = NULL;
        memset(&t, 0, sizeof(t));
        memset(&r, 0, sizeof(r));
        t.from = n->from;
        t.to = n->to;
        t.tell = calloc((size_t)(n->to - n->from), sizeof(*t.tell));
        /* paused or aborted since the step decided: told when it runs again */
        if (t.tell && kf_txn_rollout_get(txn, n->rollout, &r) == KF_OK &&
            (strcmp(r.state, "running") == 0 || strcmp(r.state, "completed") == 0) &&
            tally_of(txn, &r, &s, &t, NULL) == KF_OK)
            payload = dump(json_pack("{s:I, s:s, s:I}", "rollout", (json_int_t)r.id, "target",
                                     r.target, "version", (json_int_t)r.version));
        if (payload) {
            for (size_t k = 0; k < t.n_tell; k++)
                notify(arg, t.tell[k], payload);
            told = told_of(st->e, n->rollout, 0);
            if (told) told->upto = n->to;
        }
        kf_err_clear();
        free(payload);
        free(t.tell);
        kf_rollout_rec_clear(&r);
    }
    kf_txn_end(txn);
}

void kf_rollout_tick(struct kf_rollout_engine *e, struct kf_deploy *d, int64_t now,
                     kf_rollout_notify_cb notify, void *arg)
{
    struct step st;
    struct kf_txn *txn = NULL;
    enum kf_err rc;

    memset(&st, 0, sizeof(st));
    st.e = e;
    st.now = now;
    st.paused = json_array();
    if (!st.paused) return;
    /* Read first: most steps change nothing and must not cost a commit. */
    rc = kf_store_read(d->store, &txn);
    if (!rc) rc = pass(txn, &st);
    kf_txn_end(txn);
    if (!rc && st.changed) rc = kf_store_write(d->store, write_cb, &st);
    if (rc) {
        kf_log(KF_LOG_WARN, "rollout", "the rollout step failed; again in a second", "error",
               kf_errmsg(), NULL);
        kf_err_clear();
        json_decref(st.paused);
        return;
    }
    e->cursor = st.cursor;
    for (size_t i = 0; i < json_array_size(st.paused); i++) {
        json_t *detail = json_array_get(st.paused, i);
        kf_log(KF_LOG_WARN, "rollout", "a rollout paused itself", "reason",
               json_string_value(json_object_get(detail, "reason")), NULL);
        kf_events_submit(d->store, "update.rollout_paused", "warning", NULL, NULL, "server", NULL,
                         dump(json_incref(detail)));
    }
    json_decref(st.paused);
    if (notify) tell(&st, d, notify, arg);
    e->started = 1;
}
