#include "server/store/events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "common/htab.h"
#include "common/ident.h"
#include "common/log.h"
#include "common/timefmt.h"
#include "common/jsontext.h"

/* ---- one event, straight to the store ---- */

struct pending_event {
    struct kf_store_req req;
    struct kf_event_rec ev;
};

static enum kf_err write_cb(struct kf_txn *txn, void *arg)
{
    struct pending_event *p = arg;
    return kf_txn_event_insert(txn, &p->ev, NULL);
}

static void done_cb(struct kf_store_req *req, enum kf_err rc, void *arg)
{
    struct pending_event *p = arg;
    if (rc)
        kf_log(KF_LOG_WARN, "events", "an event was not stored", "type", p->ev.type, "error",
               req->errmsg, NULL);
    free(p->ev.detail);
    free(p);
}

/* An unverified identity as it may be shown and stored: printable, bounded. */
static void claimed_text(char *out, size_t cap, const char *claimed)
{
    out[0] = '\0';
    if (claimed && *claimed) kf_text_quote(out, cap, claimed);
}

int kf_events_submit(struct kf_store *store, const char *type, const char *severity,
                     const char *device, const char *claimed, const char *source, const char *ip,
                     char *detail)
{
    struct pending_event *p = calloc(1, sizeof(*p));
    enum kf_log_level level = strcmp(severity, "info") == 0 ? KF_LOG_INFO : KF_LOG_WARN;
    char shown[KF_ID_MAX + 1];

    claimed_text(shown, sizeof(shown), claimed);
    kf_log(level, "events", type, "device", device && *device ? device : NULL, "claimed",
           shown[0] ? shown : NULL, "ip", ip && *ip ? ip : NULL, "detail", detail, NULL);
    if (!p) {
        free(detail);
        return 0;
    }
    p->ev.time_ms = kf_now_ms();
    snprintf(p->ev.type, sizeof(p->ev.type), "%s", type);
    snprintf(p->ev.severity, sizeof(p->ev.severity), "%s", severity);
    if (device && kf_id_valid(device)) snprintf(p->ev.device, sizeof(p->ev.device), "%s", device);
    memcpy(p->ev.claimed, shown, sizeof(shown));
    snprintf(p->ev.source, sizeof(p->ev.source), "%s", source);
    snprintf(p->ev.ip, sizeof(p->ev.ip), "%s", ip ? ip : "");
    p->ev.detail = detail;
    p->req.cb = write_cb;
    p->req.arg = p;
    p->req.done_cb = done_cb;
    p->req.done_arg = p;
    p->req.lazy = 1; /* nothing waits for an event's commit: it may share a later one */
    if (kf_store_submit(store, &p->req) != KF_OK) {
        kf_log(KF_LOG_WARN, "events", "the store's event queue is full: an event was dropped",
               "type", type, NULL);
        kf_err_clear();
        free(p->ev.detail);
        free(p);
        return 0;
    }
    return 1;
}

void kf_events_name_conflict(struct kf_store *store, const char *actor, const char *name,
                             const char *wanted, const char *why)
{
    char keep[256];
    /* `why` is usually this thread's error message, which the caller still reports. */
    snprintf(keep, sizeof(keep), "%s", why);
    kf_events_submit(store, "registry.name_conflict", "warning", NULL, NULL, "server", NULL,
                     kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "actor", actor, "name", name,
                                      "wanted_as", wanted, "message", keep));
    kf_fail(KF_E_CONFLICT, "%s", keep);
}

/* ---- the sink: aggregation and a shared budget ---- */

#define SEED_LEN      16
#define KEY_MAX       (KF_EVENT_TYPE_MAX + 64 + 2 * (KF_ID_MAX + 1) + KF_IP_MAX + 5)
#define SUPPRESS_KEPT 8 /* types named in events.suppressed; the rest are "other" */

/* One kind of event being counted: the first was recorded, repeats are counted. */
struct kind {
    struct kf_hnode node;
    struct kind *prev, *next;
    int64_t window_start;
    uint64_t repeats;
    char *detail; /* the last repeat's (owned) */
    char type[KF_EVENT_TYPE_MAX], severity[16], device[KF_ID_MAX + 1], claimed[KF_ID_MAX + 1],
        ip[KF_IP_MAX];
    size_t klen;
    uint8_t key[KEY_MAX];
};

struct kf_events {
    struct kf_store *store;
    pthread_mutex_t lock; /* guards everything below */
    struct kf_events_conf conf;
    uint8_t seed[SEED_LEN]; /* so that nobody can choose keys that collide in the table */
    struct kf_htab kinds;
    struct kind *list;
    double tokens;
    int64_t refilled_ms;
    struct {
        char type[KF_EVENT_TYPE_MAX];
        uint64_t n;
    } suppressed[SUPPRESS_KEPT + 1]; /* the last one: "other" */
    uint64_t n_suppressed;
    int64_t suppress_start;
    struct kf_events_stats st;
    /* retention: one prune request at a time, resubmitted while there is more */
    struct kf_store_req prune_req;
    int pruning, prune_batches;
    int64_t prune_before_ms, prune_keep_rows, prune_deleted;
};

#define E struct kf_events_conf
static const struct kf_conf_key events_keys[] = {
    KF_CONF_NUM_KEY(E, "aggregate_s", interval_s, 1, 3600, 10,
                    "Security events. Repeats of one refusal (same type, reason, identity and "
                    "address)\nare counted for aggregate_s seconds and recorded as one event with "
                    "\"repeats\"."),
    KF_CONF_NUM_KEY(E, "rate", rate, 1, 1000000, 100,
                    "Refusal events recorded per second in all, and the burst; beyond them they "
                    "are\ncounted into one events.suppressed event per interval."),
    KF_CONF_NUM_KEY(E, "burst", burst, 1, 10000000, 1000, NULL),
    KF_CONF_NUM_KEY(E, "retention_days", retention_days, 0, 36500, 30,
                    "Retention: events older than retention_days are deleted (0: never), and "
                    "the\noldest beyond max_rows (0: no bound). keyfleetd prunes once a minute."),
    KF_CONF_NUM_KEY(E, "max_rows", max_rows, 0, 2000000000, 1000000, NULL),
};
#undef E
const struct kf_conf_section kf_events_section = {"events", NULL, events_keys,
                                                  KF_ARRAY_LEN(events_keys)};

void kf_events_conf_default(struct kf_events_conf *c)
{
    memset(c, 0, sizeof(*c));
    kf_conf_defaults(&kf_events_section, c); /* the table's defaults are checked by unit.conf */
    kf_err_clear();
}

enum kf_err kf_events_new(struct kf_store *store, const struct kf_events_conf *conf,
                          struct kf_events **out)
{
    struct kf_events *ev = calloc(1, sizeof(*ev));
    *out = NULL;
    if (!ev) return kf_fail(KF_E_NOMEM, "out of memory");
    if (RAND_bytes(ev->seed, sizeof(ev->seed)) != 1) {
        free(ev);
        return kf_fail(KF_E_CRYPTO, "no randomness for the event table");
    }
    ev->store = store;
    ev->conf = *conf;
    ev->tokens = conf->burst;
    ev->refilled_ms = kf_now_ms();
    ev->suppress_start = ev->refilled_ms;
    pthread_mutex_init(&ev->lock, NULL);
    *out = ev;
    return KF_OK;
}

void kf_events_configure(struct kf_events *ev, const struct kf_events_conf *conf)
{
    pthread_mutex_lock(&ev->lock);
    ev->conf = *conf;
    pthread_mutex_unlock(&ev->lock);
}

void kf_events_stats(struct kf_events *ev, struct kf_events_stats *out)
{
    pthread_mutex_lock(&ev->lock);
    *out = ev->st;
    pthread_mutex_unlock(&ev->lock);
}

static uint64_t seeded_hash(const struct kf_events *ev, const uint8_t *key, size_t n)
{
    uint8_t buf[SEED_LEN + KEY_MAX];
    memcpy(buf, ev->seed, SEED_LEN);
    memcpy(buf + SEED_LEN, key, n);
    return kf_hash_bytes(buf, SEED_LEN + n);
}

static void kind_unlink(struct kf_events *ev, struct kind *k)
{
    kf_htab_remove(&ev->kinds, &k->node);
    if (k->prev)
        k->prev->next = k->next;
    else
        ev->list = k->next;
    if (k->next) k->next->prev = k->prev;
    free(k->detail);
    free(k);
}

/* Counts `n` events of `type` that were not recorded, for events.suppressed. Under the lock. */
static void suppress(struct kf_events *ev, const char *type, uint64_t n)
{
    size_t i;
    for (i = 0; i < SUPPRESS_KEPT; i++)
        if (!ev->suppressed[i].type[0] || strcmp(ev->suppressed[i].type, type) == 0) break;
    if (i < SUPPRESS_KEPT && !ev->suppressed[i].type[0])
        snprintf(ev->suppressed[i].type, sizeof(ev->suppressed[i].type), "%s", type);
    ev->suppressed[i].n += n;
    ev->n_suppressed += n;
    ev->st.suppressed += n;
}

/* One token of the shared budget, if there is one. Under the lock. */
static int take_token(struct kf_events *ev, int64_t now)
{
    double burst = ev->conf.burst < 1 ? 1 : ev->conf.burst;
    if (now > ev->refilled_ms)
        ev->tokens += (double)(now - ev->refilled_ms) / 1000.0 * ev->conf.rate;
    if (ev->tokens > burst) ev->tokens = burst;
    ev->refilled_ms = now;
    if (ev->tokens < 1) return 0;
    ev->tokens -= 1;
    return 1;
}

void kf_events_note(struct kf_events *ev, const char *type, const char *severity,
                    const char *reason, const struct kf_event_who *who, char *detail)
{
    char claimed[KF_ID_MAX + 1], device[KF_ID_MAX + 1], ip[KF_IP_MAX];
    uint8_t key[KEY_MAX];
    int64_t now = kf_now_ms();
    struct kind *k;
    struct kf_hnode *n;
    uint64_t h;
    int klen, record = 0;

    claimed_text(claimed, sizeof(claimed), who ? who->claimed : NULL);
    snprintf(device, sizeof(device), "%s",
             who && who->device && kf_id_valid(who->device) ? who->device : "");
    snprintf(ip, sizeof(ip), "%s", who && who->ip ? who->ip : "");
    klen = snprintf((char *)key, sizeof(key), "%s\x1f%.63s\x1f%s\x1f%s\x1f%s", type,
                    reason ? reason : "", device, claimed, ip);
    if (klen < 0 || (size_t)klen >= sizeof(key)) klen = (int)sizeof(key) - 1;
    h = seeded_hash(ev, key, (size_t)klen);

    pthread_mutex_lock(&ev->lock);
    n = kf_htab_find(&ev->kinds, key, (size_t)klen, h);
    if (n) {
        k = (struct kind *)n;
        k->repeats++;
        free(k->detail);
        k->detail = detail;
        detail = NULL;
        ev->st.aggregated++;
    } else if (ev->kinds.n >= (ev->conf.max_kinds ? ev->conf.max_kinds : 4096) ||
               !take_token(ev, now)) {
        suppress(ev, type, 1);
    } else if ((k = calloc(1, sizeof(*k))) != NULL) {
        memcpy(k->key, key, (size_t)klen);
        k->klen = (size_t)klen;
        k->node.key = k->key;
        k->node.klen = k->klen;
        k->node.hash = h;
        k->window_start = now;
        snprintf(k->type, sizeof(k->type), "%s", type);
        snprintf(k->severity, sizeof(k->severity), "%s", severity);
        memcpy(k->device, device, sizeof(device));
        memcpy(k->claimed, claimed, sizeof(claimed));
        memcpy(k->ip, ip, sizeof(ip));
        if (kf_htab_insert(&ev->kinds, &k->node) != 0) {
            free(k);
            suppress(ev, type, 1);
        } else {
            k->next = ev->list;
            if (k->next) k->next->prev = k;
            ev->list = k;
            record = 1;
        }
    } else {
        suppress(ev, type, 1);
    }
    if (record) ev->st.recorded++;
    pthread_mutex_unlock(&ev->lock);
    if (record) {
        if (!kf_events_submit(ev->store, type, severity, device, claimed, "server", ip, detail)) {
            pthread_mutex_lock(&ev->lock);
            ev->st.dropped++;
            pthread_mutex_unlock(&ev->lock);
        }
    } else {
        free(detail);
    }
}

/* `detail` (JSON object text or NULL) with "repeats" and "interval_s" added. Owned. */
static char *with_repeats(const char *detail, uint64_t repeats, int interval_s)
{
    json_t *j = detail ? json_loads(detail, 0, NULL) : NULL;
    char *text;
    if (!json_is_object(j)) {
        json_decref(j);
        j = json_object();
    }
    json_object_set_new(j, "repeats", json_integer((json_int_t)repeats));
    json_object_set_new(j, "interval_s", json_integer(interval_s));
    text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

struct summary {
    struct summary *next;
    char type[KF_EVENT_TYPE_MAX], severity[16], device[KF_ID_MAX + 1], claimed[KF_ID_MAX + 1],
        ip[KF_IP_MAX];
    char *detail;
};

/* Intervals ended by `now` (all of them when `now` is INT64_MAX). */
static void tick(struct kf_events *ev, int64_t now)
{
    struct summary *out = NULL, *s;
    struct kind *k, *next;
    int64_t interval;

    pthread_mutex_lock(&ev->lock);
    interval = (int64_t)(ev->conf.interval_s > 0 ? ev->conf.interval_s : 1) * 1000;
    for (k = ev->list; k; k = next) {
        next = k->next;
        if (now != INT64_MAX && now - k->window_start < interval) continue;
        if (!k->repeats) {
            kind_unlink(ev, k);
            continue;
        }
        /* A summary costs a token too; without one it joins events.suppressed. */
        if (now == INT64_MAX || take_token(ev, now)) {
            s = calloc(1, sizeof(*s));
            if (s) {
                memcpy(s->type, k->type, sizeof(s->type));
                memcpy(s->severity, k->severity, sizeof(s->severity));
                memcpy(s->device, k->device, sizeof(s->device));
                memcpy(s->claimed, k->claimed, sizeof(s->claimed));
                memcpy(s->ip, k->ip, sizeof(s->ip));
                s->detail = with_repeats(k->detail, k->repeats, (int)(interval / 1000));
                s->next = out;
                out = s;
                ev->st.recorded++;
            }
        } else {
            suppress(ev, k->type, k->repeats);
        }
        if (now == INT64_MAX) {
            kind_unlink(ev, k);
            continue;
        }
        /* The kind stays for another interval: a flood that goes on is one event per interval. */
        k->repeats = 0;
        k->window_start = now;
        free(k->detail);
        k->detail = NULL;
    }
    if (ev->n_suppressed && (now == INT64_MAX || now - ev->suppress_start >= interval)) {
        json_t *by = json_object();
        for (size_t i = 0; i <= SUPPRESS_KEPT; i++)
            if (ev->suppressed[i].n)
                json_object_set_new(by, i < SUPPRESS_KEPT ? ev->suppressed[i].type : "other",
                                    json_integer((json_int_t)ev->suppressed[i].n));
        s = calloc(1, sizeof(*s));
        if (s) {
            json_t *j = json_pack("{s:I, s:i, s:o}", "count", (json_int_t)ev->n_suppressed,
                                  "interval_s", (int)(interval / 1000), "by_type", by);
            snprintf(s->type, sizeof(s->type), "events.suppressed");
            snprintf(s->severity, sizeof(s->severity), "warning");
            s->detail = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            json_decref(j);
            s->next = out;
            out = s;
            ev->st.recorded++;
        } else {
            json_decref(by);
        }
        memset(ev->suppressed, 0, sizeof(ev->suppressed));
        ev->n_suppressed = 0;
    }
    if (!ev->n_suppressed) ev->suppress_start = now;
    pthread_mutex_unlock(&ev->lock);
    while ((s = out) != NULL) {
        out = s->next;
        if (!kf_events_submit(ev->store, s->type, s->severity, s->device, s->claimed, "server",
                              s->ip, s->detail)) {
            pthread_mutex_lock(&ev->lock);
            ev->st.dropped++;
            pthread_mutex_unlock(&ev->lock);
        }
        free(s);
    }
}

void kf_events_tick(struct kf_events *ev, int64_t now_ms)
{
    if (ev) tick(ev, now_ms);
}

void kf_events_free(struct kf_events *ev)
{
    struct kind *k;
    if (!ev) return;
    while ((k = ev->list) != NULL)
        kind_unlink(ev, k);
    kf_htab_free(&ev->kinds);
    pthread_mutex_destroy(&ev->lock);
    free(ev);
}

/* ---- retention ---- */

#define PRUNE_BATCH       10000 /* rows deleted in one transaction */
#define PRUNE_BATCHES_MAX 20    /* batches in one kf_events_prune */

static enum kf_err prune_cb(struct kf_txn *txn, void *arg)
{
    struct kf_events *ev = arg;
    return kf_txn_event_prune(txn, ev->prune_before_ms, ev->prune_keep_rows, PRUNE_BATCH,
                              &ev->prune_deleted);
}

static void prune_done_cb(struct kf_store_req *req, enum kf_err rc, void *arg)
{
    struct kf_events *ev = arg;
    int again;
    pthread_mutex_lock(&ev->lock);
    if (!rc) ev->st.pruned += (uint64_t)ev->prune_deleted;
    again = !rc && ev->prune_deleted == PRUNE_BATCH && ++ev->prune_batches < PRUNE_BATCHES_MAX;
    pthread_mutex_unlock(&ev->lock);
    if (rc) kf_log(KF_LOG_WARN, "events", "pruning old events failed", "error", req->errmsg, NULL);
    if (again && kf_store_submit(ev->store, req) == KF_OK) return;
    kf_err_clear();
    pthread_mutex_lock(&ev->lock);
    ev->pruning = 0;
    pthread_mutex_unlock(&ev->lock);
}

void kf_events_prune(struct kf_events *ev, int retention_days, int64_t max_rows)
{
    int go;
    if (!ev || (retention_days <= 0 && max_rows <= 0)) return;
    pthread_mutex_lock(&ev->lock);
    go = !ev->pruning;
    if (go) {
        ev->pruning = 1;
        ev->prune_batches = 0;
        ev->prune_before_ms =
            retention_days > 0 ? kf_now_ms() - (int64_t)retention_days * 86400 * 1000 : 0;
        ev->prune_keep_rows = max_rows > 0 ? max_rows : 0;
    }
    pthread_mutex_unlock(&ev->lock);
    if (!go) return;
    memset(&ev->prune_req, 0, sizeof(ev->prune_req));
    ev->prune_req.cb = prune_cb;
    ev->prune_req.arg = ev;
    ev->prune_req.done_cb = prune_done_cb;
    ev->prune_req.done_arg = ev;
    ev->prune_req.lazy = 1;
    if (kf_store_submit(ev->store, &ev->prune_req) != KF_OK) {
        kf_err_clear();
        pthread_mutex_lock(&ev->lock);
        ev->pruning = 0;
        pthread_mutex_unlock(&ev->lock);
    }
}
