/* persist: the hub's retained messages and persistent sessions in the store. */
#include "server/hub/hub_internal.h"

__thread struct kf_hub_tl kf_hub_tl;

static enum kf_err job_cb(struct kf_txn *txn, void *arg)
{
    struct hub_job *j = arg;
    enum kf_err rc = KF_OK;
    for (struct hub_op *o = j->ops; o && !rc; o = o->next) {
        switch (o->type) {
        case KF_BROKER_RETAIN:
            rc = o->len == o->topic_len
                     ? kf_txn_hub_retained_delete(txn, o->data, o->topic_len)
                     : kf_txn_hub_retained_put(txn, o->data, o->topic_len, o->data + o->topic_len,
                                               o->len - o->topic_len);
            break;
        case KF_BROKER_PUT:
            rc = kf_txn_hub_state_put(txn, o->session, o->kind, o->key, o->data, o->len);
            break;
        case KF_BROKER_DELETE:
            rc = kf_txn_hub_state_delete(txn, o->session, o->kind, o->key);
            break;
        case KF_BROKER_DROP: rc = kf_txn_hub_state_drop(txn, o->session); break;
        default: break;
        }
    }
    return rc;
}

void kf_hub_job_free(struct hub_job *j)
{
    while (j->ops) {
        struct hub_op *o = j->ops;
        j->ops = o->next;
        free(o);
    }
    free(j);
}

static struct hub_job *job_new(struct kf_hubd *h)
{
    struct hub_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->hub = h;
    j->tail = &j->ops;
    j->req.cb = job_cb;
    j->req.arg = j;
    j->req.done_arg = j;
    return j;
}

/* On the store's thread: the messages it held may go; back to the worker that waits, or done. */
static void job_done(struct kf_store_req *req, enum kf_err rc, void *arg)
{
    struct hub_job *j = arg;
    struct kf_hubd *h = j->hub;
    struct kf_hub_worker *hw = j->hw ? j->hw : j->c ? j->c->hw : NULL; /* c->hw never changes */
    uint64_t seq = j->seq;
    if (!j->hw) __atomic_sub_fetch(&h->ret_pending, 1, __ATOMIC_RELAXED);
    if (rc) {
        kf_log(KF_LOG_ERROR, "hub", "the hub's state could not be kept in the store", "error",
               req->errmsg, NULL);
    }
    if (hw) {
        /* first: a SUBACK that waited goes before the retained messages it let out */
        j->rc = rc;
        pthread_mutex_lock(&hw->jobs_lock);
        j->next = hw->jobs_done;
        hw->jobs_done = j;
        pthread_mutex_unlock(&hw->jobs_lock);
    } else {
        kf_hub_job_free(j);
    }
    if (seq) kf_broker_settled(h->broker, seq);
    if (hw) event_active(hw->wake, EV_READ, 0);
}

void kf_hub_zombie_free(struct hconn *c)
{
    while (c->acks) {
        struct ack *a = c->acks;
        c->acks = a->next;
        free(a);
    }
    free(c);
}

/* The worker's write-behind goes to the store, unless one is there already. */
void kf_hub_behind_submit(struct kf_hub_worker *hw)
{
    struct hub_job *j = hw->behind;
    struct kf_store *store = hw->hub->deploy ? hw->hub->deploy->store : NULL;
    if (!j || hw->behind_busy) return;
    j->req.done_cb = job_done;
    if (!store) return; /* stopping: freed with the worker */
    if (kf_store_submit(store, &j->req) != KF_OK) {
        kf_err_clear(); /* the store is full: again at the next commit or tick */
        return;
    }
    hw->behind = NULL;
    hw->behind_busy = 1;
}

/* Reading starts again once the store has taken what the connection waited for. */
void kf_hub_maybe_resume(struct hconn *c)
{
    if (!c->paused || c->closing || !c->head.bev || (c->jobs && c->jobs >= JOBS_PER_CONN / 2) ||
        __atomic_load_n(&c->hw->hub->ret_pending, __ATOMIC_RELAXED) >= RET_PENDING_MAX)
        return;
    c->paused = 0;
    bufferevent_enable(c->head.bev, EV_READ);
    kf_hub_read_cb(c->head.bev, c); /* what waited in the input; may free c */
}

/* On the worker: the acknowledgements that waited for the store go, in order. */
void kf_hub_jobs_drain(struct kf_hub_worker *hw)
{
    struct hub_job *list, *rev = NULL;
    pthread_mutex_lock(&hw->jobs_lock);
    list = hw->jobs_done;
    hw->jobs_done = NULL;
    pthread_mutex_unlock(&hw->jobs_lock);
    while (list) { /* oldest first */
        struct hub_job *j = list;
        list = j->next;
        j->next = rev;
        rev = j;
    }
    while (rev) {
        struct hub_job *j = rev;
        struct hconn *c = j->c;
        rev = j->next;
        if (j->hw) hw->behind_busy = 0;
        if (c) {
            c->jobs--;
            if (j->retained) c->ret_jobs--;
            if (j->ack) {
                j->ack->ready = 1;
                /* not durable: an MQTT 5 publisher hears so */
                if ((j->rc || j->lost) && c->version == KF_MQTT_V5 && !j->ack->len)
                    j->ack->reason = KF_MQTT_RC_UNSPECIFIED;
            }
            if (c->zombie) {
                if (!c->jobs) kf_hub_zombie_free(c);
            } else {
                kf_hub_flush_acks(c);
                if (j->connack) {
                    c->connack_wait = 0;
                    kf_hub_flush(c); /* what waited for the CONNACK */
                }
                kf_hub_maybe_resume(c);
            }
        }
        kf_hub_job_free(j);
    }
    kf_hub_behind_submit(hw);
}

/* Appends one op to `j` (NULL when out of memory: the change is kept in memory only). */
static struct hub_op *job_add(struct hub_job *j, const struct kf_broker_op *op, size_t extra)
{
    struct hub_op *o = calloc(1, sizeof(*o) + op->len + extra);
    if (!o) return NULL;
    o->type = (uint8_t)op->type;
    o->kind = (uint8_t)op->kind;
    o->key = op->key;
    if (op->session) snprintf(o->session, sizeof(o->session), "%s", op->session);
    if (op->len) memcpy(o->data, op->value, op->len);
    o->len = op->len;
    *j->tail = o;
    j->tail = &o->next;
    return o;
}

/* The broker's callback (its lock held): its changes go to the store, in its order. */
int kf_hub_on_change(void *arg, const struct kf_broker_op *op)
{
    struct kf_hubd *h = arg;
    struct kf_store *store = h->deploy ? h->deploy->store : NULL;
    struct hub_job **jp = &kf_hub_tl.job;
    struct hub_job *j;

    if (!store) return 1; /* stopping: the store is closed */
    if (op->type == KF_BROKER_COMMIT) {
        int lost = kf_hub_tl.lost;
        j = kf_hub_tl.job;
        kf_hub_tl.job = NULL;
        kf_hub_tl.lost = 0;
        if (kf_hub_tl.hw) kf_hub_behind_submit(kf_hub_tl.hw);
        if (lost)
            kf_log(KF_LOG_ERROR, "hub",
                   "out of memory: part of the hub's state is kept in memory only", NULL);
        if (!j) return lost;
        j->lost = lost;
        j->seq = op->seq;
        j->c = kf_hub_tl.c;
        j->req.done_cb = job_done;
        if (kf_store_submit(store, &j->req) != KF_OK) {
            kf_log(KF_LOG_WARN, "hub", "the store is busy: the hub's state is kept in memory only",
                   "error", kf_errmsg(), NULL);
            kf_err_clear();
            kf_hub_job_free(j);
            return 1;
        }
        __atomic_add_fetch(&h->ret_pending, 1, __ATOMIC_RELAXED);
        if (j->c) {
            j->c->jobs++; /* it points at the connection until jobs_drain has it back */
            if (j->retained) j->c->ret_jobs++;
            kf_hub_tl.submitted = j;
        }
        return 0;
    }
    if (op->type == KF_BROKER_DELETE && op->behind && kf_hub_tl.hw) jp = &kf_hub_tl.hw->behind;
    if (!*jp && !(*jp = job_new(h))) {
        kf_hub_tl.lost = 1;
        return 0;
    }
    j = *jp;
    if (jp != &kf_hub_tl.job) j->hw = kf_hub_tl.hw;
    if (op->type == KF_BROKER_RETAIN) {
        const struct kf_msg *m = op->msg;
        struct kf_broker_op copy = {
            .type = KF_BROKER_RETAIN, .value = m->topic.p, .len = m->topic.len};
        struct kf_buf enc;
        struct hub_op *o;
        kf_buf_init(&enc, 16u * 1024 * 1024);
        if (m->payload_len && kf_msg_encode(m, &enc) != KF_OK) {
            kf_err_clear();
            kf_buf_free(&enc);
            kf_hub_tl.lost = 1;
            return 0;
        }
        o = job_add(j, &copy, enc.len);
        if (o) {
            if (enc.len) memcpy(o->data + m->topic.len, enc.data, enc.len);
            o->topic_len = m->topic.len;
            o->len += enc.len;
            j->retained = 1;
        } else {
            kf_hub_tl.lost = 1;
        }
        kf_buf_free(&enc);
        return 0;
    }
    if (!job_add(j, op, 0)) kf_hub_tl.lost = 1;
    return 0;
}

/* Around the broker calls of one packet of `c`, whose answer may wait for what they write. */
void kf_hub_waits_begin(struct hconn *c)
{
    kf_hub_tl.c = c->hw->hub->persistence ? c : NULL;
    kf_hub_tl.submitted = NULL;
    kf_hub_tl.hw = c->hw;
}

void kf_hub_waits_end(void)
{
    kf_hub_tl.c = NULL;
    kf_hub_tl.submitted = NULL;
}

/*
 * Takes the job the broker calls so far submitted for this packet: the answer that follows waits
 * for it. NULL when there is none (answer now) or it carries an answer already.
 */
struct hub_job *kf_hub_take_wait(void)
{
    struct hub_job *j = kf_hub_tl.submitted;
    kf_hub_tl.submitted = NULL;
    return j && !j->ack ? j : NULL;
}

/* An acknowledgement after the broker call whose changes it waits for. */
void kf_hub_ack_after(struct hconn *c, enum kf_mqtt_type type, uint16_t id, uint8_t reason)
{
    struct hub_job *j = kf_hub_take_wait();
    struct ack *a = kf_hub_queue_ack(c, type, id, reason, !j);
    if (j) j->ack = a;
}

/* The retained messages kept before: back into the broker (at start). */
static enum kf_err restore_one(const void *topic, size_t topic_len, const void *msg, size_t msg_len,
                               void *arg)
{
    struct kf_hubd *h = arg;
    struct kf_msg *m = kf_msg_decode(msg, msg_len);
    if (!m || m->topic.len != topic_len || memcmp(m->topic.p, topic, topic_len) != 0) {
        kf_log(KF_LOG_WARN, "hub", "a stored retained message does not read back; left out",
               "error", m ? "its topic differs" : kf_errmsg(), NULL);
        kf_err_clear();
        kf_msg_release(m);
        return KF_OK;
    }
    if (!m->expires_ms || m->expires_ms > kf_now_ms()) kf_broker_restore_retained(h->broker, m);
    kf_msg_release(m);
    return KF_OK;
}

enum kf_err kf_hub_restore_retained(struct kf_hubd *h)
{
    struct kf_txn *txn = NULL;
    struct kf_broker_stats st;
    enum kf_err rc = kf_store_read(h->deploy->store, &txn);
    if (!rc) rc = kf_txn_hub_retained_list(txn, restore_one, h);
    kf_txn_end(txn);
    if (rc) return kf_wrap(rc, "cannot read the retained messages back");
    kf_broker_stats(h->broker, &st);
    if (st.retained) {
        char n[24];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)st.retained);
        kf_log(KF_LOG_INFO, "hub", "retained messages restored", "count", n, NULL);
    }
    return KF_OK;
}

/* The persistent sessions kept before: back into the broker, offline (at start). */
struct restoring {
    struct kf_broker *broker;
    int64_t now;
    size_t sessions, messages, bad;
};

static enum kf_err restore_row(const char *session, int kind, int64_t key, const void *value,
                               size_t len, void *arg)
{
    struct restoring *r = arg;
    enum kf_err rc = kf_broker_restore(r->broker, session, kind, key, value, len, r->now);
    if (rc == KF_E_NOMEM) return rc;
    if (rc) {
        /* once per session: the rest of its rows fail the same way */
        if (kind == KF_BROKER_ROW_SESSION || r->bad == 0)
            kf_log(KF_LOG_WARN, "hub", "a stored session's state does not read back; left out",
                   "session", session, "error", kf_errmsg(), NULL);
        kf_err_clear();
        r->bad++;
        return KF_OK;
    }
    if (kind == KF_BROKER_ROW_SESSION) r->sessions++;
    if (kind == KF_BROKER_ROW_MSG) r->messages++;
    return KF_OK;
}

enum kf_err kf_hub_restore_sessions(struct kf_hubd *h)
{
    struct restoring r = {h->broker, kf_now_ms(), 0, 0, 0};
    struct kf_txn *txn = NULL;
    enum kf_err rc = kf_store_read(h->deploy->store, &txn);
    if (!rc) rc = kf_txn_hub_state_list(txn, restore_row, &r);
    kf_txn_end(txn);
    if (rc) return kf_wrap(rc, "cannot read the hub's sessions back");
    if (r.sessions || r.bad) {
        char n[24], q[24], b[24];
        snprintf(n, sizeof(n), "%zu", r.sessions);
        snprintf(q, sizeof(q), "%zu", r.messages);
        snprintf(b, sizeof(b), "%zu", r.bad);
        kf_log(KF_LOG_INFO, "hub", "persistent sessions restored", "sessions", n, "messages", q,
               "left_out", b, NULL);
    }
    return KF_OK;
}
