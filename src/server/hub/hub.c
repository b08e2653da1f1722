/* hub: the hub and its workers; its files share hub_internal.h. */
#include "server/hub/hub.h"

#include "server/hub/hub_internal.h"

/* The hub's settings from [hub]; what no key sets is the hub's to say. */
static void conf_of(const struct kf_config *cfg, struct kf_hub_conf *hc)
{
    *hc = cfg->hub;
    hc->accept.count_rate = 1; /* connect_rate_per_ip: new connections are the hub's requests */
    hc->broker.max_inflight_in = hc->max_inflight;
}

static void inbox_wake(void *arg)
{
    struct kf_hub_worker *hw = arg;
    event_active(hw->wake, EV_READ, 0);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_hub_worker *hw = arg;
    struct kf_broker_peer *peers[256];
    size_t n;
    kf_hub_tl.hw = hw;
    kf_hub_jobs_drain(hw);
    do {
        n = kf_broker_take(hw->hub->broker, &hw->inbox, peers, KF_ARRAY_LEN(peers));
        for (size_t i = 0; i < n; i++) {
            struct hconn *c = PEER_CONN(peers[i]);
            if (c->peer.kicked && !c->closing) {
                c->detached = 1; /* the session is the new connection's */
                kf_hub_shut(c, c->peer.kick_reason, "session_taken_over", 1, 1);
                kf_hub_maybe_free(c);
            } else {
                kf_hub_flush(c);
            }
        }
    } while (n == KF_ARRAY_LEN(peers));
}

/*
 * Closes the live connections of identities the registry now keeps out (`reg` non-NULL), and of
 * certificates past their notAfter: a session lasts no longer than the certificate that opened
 * it (the device renews at two thirds of its life, and reconnects with the new one).
 */
static void enforce(struct kf_hub_worker *hw, const struct kf_snapshot *reg)
{
    struct hconn *c, *next;
    time_t now = time(NULL);
    for (c = hw->conns; c; c = next) {
        const char *why;
        struct kf_hub_who who;
        next = c->next;
        if (!c->connected || c->closing) continue;
        who = kf_hub_who_of(c);
        why = reg ? kf_hub_decide_kept_out(&who, reg) : NULL;
        if (!why && now > c->not_after) why = "certificate_expired";
        if (!why) continue;
        kf_hub_shut(c, KF_MQTT_RC_ADMINISTRATIVE_ACTION, why, 1, 1);
        kf_hub_maybe_free(c);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_hub_worker *hw = arg;
    struct kf_hubd *h = hw->hub;
    struct kf_snapshot *reg;

    pthread_mutex_lock(&h->lock);
    hw->conf = h->conf;
    pthread_mutex_unlock(&h->lock);
    reg = kf_snapshot_get(h->snapshot);
    if (reg->generation != hw->reg_generation) {
        /* a new snapshot (the store's version moved, a new CRL, SIGHUP) */
        hw->reg_generation = reg->generation;
        enforce(hw, reg);
    } else if (++hw->ticks % (1000 / TICK_MS) == 0) {
        enforce(hw, NULL); /* certificates that expired, once a second */
    }
    kf_snapshot_release(reg);
    /* connections that waited for the hub's share of the store; deletes that waited for room */
    kf_hub_tl.hw = hw;
    kf_hub_behind_submit(hw);
    for (struct hconn *c = hw->conns, *next; c; c = next) {
        next = c->next;
        if (c->paused) kf_hub_maybe_resume(c);
    }
}

enum kf_err kf_hub_worker_new(struct kf_hubd *h, struct event_base *base, int index,
                              void (*idle_cb)(void *), void *idle_arg, struct kf_hub_worker **out)
{
    struct kf_hub_worker *hw = calloc(1, sizeof(*hw));
    struct kf_snapshot *reg;
    struct timeval tv = {0, TICK_MS * 1000};
    int fd;

    *out = NULL;
    if (!hw) return kf_fail(KF_E_NOMEM, "out of memory");
    hw->hub = h;
    hw->base = base;
    pthread_mutex_init(&hw->jobs_lock, NULL);
    hw->idle_cb = idle_cb;
    hw->idle_arg = idle_arg;
    hw->inbox.wake = inbox_wake;
    hw->inbox.wake_arg = hw;
    pthread_mutex_lock(&h->lock);
    hw->conf = h->conf;
    pthread_mutex_unlock(&h->lock);
    reg = kf_snapshot_get(h->snapshot);
    hw->reg_generation = reg->generation;
    kf_snapshot_release(reg);
    hw->wake = event_new(base, -1, EV_PERSIST, wake_cb, hw);
    hw->tick = event_new(base, -1, EV_PERSIST, tick_cb, hw);
    if (!hw->wake || !hw->tick) goto nomem;
    event_add(hw->wake, NULL);
    event_add(hw->tick, &tv);
    if (kf_listen_open(h->host, h->port, 1, &fd) != KF_OK) {
        enum kf_err rc = kf_errlast();
        kf_hub_worker_free(hw);
        return rc;
    }
    if (kf_acceptor_new(base, fd, h->limits, h->tls, &hw->conf.accept, &kf_hub_accept_ops, hw,
                        &hw->acceptor) != KF_OK) {
        enum kf_err rc = kf_errlast();
        kf_hub_worker_free(hw);
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    hw->next = h->workers;
    h->workers = hw;
    pthread_mutex_unlock(&h->lock);
    *out = hw;
    return KF_OK;
nomem:
    kf_hub_worker_free(hw);
    return kf_fail(KF_E_NOMEM, "cannot set up the hub on worker %d", index);
}

void kf_hub_worker_drain(struct kf_hub_worker *hw)
{
    struct hconn *c, *next;
    hw->draining = 1;
    kf_acceptor_pause(hw->acceptor);
    for (c = hw->conns; c; c = next) {
        next = c->next;
        kf_hub_shut(c, KF_MQTT_RC_SERVER_SHUTTING_DOWN, "server_shutting_down", 1, 0);
        kf_hub_maybe_free(c);
    }
}

size_t kf_hub_worker_conns(const struct kf_hub_worker *hw)
{
    return hw ? hw->n_conns : 0;
}

void kf_hub_worker_free(struct kf_hub_worker *hw)
{
    struct kf_hubd *h;
    if (!hw) return;
    h = hw->hub;
    hw->idle_cb = NULL;
    while (hw->conns) {
        struct hconn *c = hw->conns;
        if (c->head.bev) {
            struct evbuffer *o = bufferevent_get_output(c->head.bev);
            evbuffer_drain(o, evbuffer_get_length(o));
        }
        if (!c->closing) kf_hub_shut(c, 0, "server_stopped", 0, 0);
        kf_hub_conn_free(c);
    }
    /* The store is closed by now: what it owed has come back; zombies go with it. */
    kf_hub_jobs_drain(hw);
    if (hw->behind) kf_hub_job_free(hw->behind);
    hw->behind = NULL;
    if (kf_hub_tl.hw == hw) kf_hub_tl.hw = NULL;
    pthread_mutex_lock(&h->lock);
    for (struct kf_hub_worker **pp = &h->workers; *pp; pp = &(*pp)->next)
        if (*pp == hw) {
            *pp = hw->next;
            break;
        }
    pthread_mutex_unlock(&h->lock);
    kf_acceptor_free(hw->acceptor);
    if (hw->wake) event_free(hw->wake);
    if (hw->tick) event_free(hw->tick);
    free(hw->scratch);
    pthread_mutex_destroy(&hw->jobs_lock);
    free(hw);
}

enum kf_err kf_hub_new(struct kf_deploy *deploy, struct kf_snapshot_holder *snapshot,
                       struct kf_events *events, const struct kf_config *cfg, struct kf_hubd **out)
{
    struct kf_hubd *h = calloc(1, sizeof(*h));
    struct kf_tls_conf tc;
    char cert[KF_CONF_PATH_MAX], key[KF_CONF_PATH_MAX];
    enum kf_err rc;

    *out = NULL;
    if (!h) return kf_fail(KF_E_NOMEM, "out of memory");
    h->deploy = deploy;
    h->snapshot = snapshot;
    h->events = events;
    pthread_mutex_init(&h->lock, NULL);
    conf_of(cfg, &h->conf);
    rc = kf_listen_parse(cfg->hub.listen, h->host, sizeof(h->host), &h->port);
    if (rc) goto fail;
    rc = kf_deploy_path(deploy, cfg->server.cert, cert, sizeof(cert));
    if (!rc) rc = kf_deploy_path(deploy, cfg->server.key, key, sizeof(key));
    if (rc) goto fail;
    memset(&tc, 0, sizeof(tc));
    tc.cert_chain_path = cert;
    tc.key_uri = key;
    tc.session_cache = (unsigned)cfg->provisioning.session_cache;
    tc.stateless_tickets = cfg->hub.tls_resumption == KF_HUB_TICKETS;
    tc.context = "keyfleet-hub";
    tc.verify = kf_hub_verify_cb;
    tc.verify_arg = h;
    rc = kf_tls_new(&tc, &h->tls);
    if (rc) goto fail;
    kf_tlsrec_install(kf_tls_ctx(h->tls), kf_hub_watch_get);
    if (tc.stateless_tickets &&
        !SSL_CTX_set_session_ticket_cb(kf_tls_ctx(h->tls), kf_hub_ticket_gen_cb,
                                       kf_hub_ticket_dec_cb, h)) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot bound session tickets by certificate");
        goto fail;
    }
    if (!tc.stateless_tickets) {
        static const struct kf_sesscache_hooks hooks = {kf_hub_sess_ident_cb,
                                                        kf_hub_sess_resumed_cb};
        rc = kf_sesscache_new(kf_tls_ctx(h->tls), (size_t)cfg->provisioning.session_cache, 3600,
                              &hooks, &h->sesscache);
        if (rc) goto fail;
    }
    rc = kf_broker_new(&h->conf.broker, &h->broker);
    if (rc) goto fail;
    if (cfg->hub.persistence && deploy && deploy->store) {
        rc = kf_hub_restore_retained(h);
        if (!rc) rc = kf_hub_restore_sessions(h);
        if (rc) goto fail;
        h->persistence = 1;
        kf_broker_persist(h->broker, kf_hub_on_change, h);
    }
    rc = kf_limits_new(&h->conf.limits, &h->limits);
    if (rc) goto fail;
    *out = h;
    return KF_OK;
fail:
    kf_hub_free(h);
    return kf_wrap(rc, "the hub");
}

void kf_hub_free(struct kf_hubd *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->ids.n_slots; i++)
        while (h->ids.slots[i]) {
            struct kf_hnode *n = h->ids.slots[i];
            kf_htab_remove(&h->ids, n);
            free(n);
        }
    kf_htab_free(&h->ids);
    kf_broker_free(h->broker);
    kf_limits_free(h->limits);
    kf_tls_free(h->tls);
    kf_sesscache_free(h->sesscache);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void kf_hub_configure(struct kf_hubd *h, const struct kf_config *cfg)
{
    struct kf_hub_conf hc;
    conf_of(cfg, &hc);
    pthread_mutex_lock(&h->lock);
    h->conf = hc;
    pthread_mutex_unlock(&h->lock);
    kf_broker_configure(h->broker, &hc.broker);
    kf_limits_configure(h->limits, &hc.limits);
}

size_t kf_hub_notify(struct kf_hubd *h, const char *topic, const void *payload, size_t len)
{
    struct kf_mqtt_publish p;
    struct kf_mqtt_str t = {(const uint8_t *)topic, (uint16_t)strlen(topic)};
    struct kf_msg *m;
    size_t n;
    memset(&p, 0, sizeof(p));
    p.qos = 1;
    p.topic = t;
    p.payload = payload;
    p.payload_len = len;
    /* "k:" names no session a client can have ("d:" devices, "s:" services) */
    m = kf_msg_new(&p, t, "k:keyfleetd", kf_now_ms());
    if (!m) return 0;
    n = kf_broker_publish(h->broker, m, NULL, NULL);
    kf_msg_release(m);
    return n;
}

void kf_hub_sweep(struct kf_hubd *h)
{
    int64_t now = kf_now_ms(), keep;
    kf_broker_sweep(h->broker, now);
    pthread_mutex_lock(&h->lock);
    /* Flapping records are kept for their window and ban; networks for a month. */
    keep = 30LL * 86400 * 1000;
    for (size_t i = 0; i < h->ids.n_slots; i++) {
        struct kf_hnode *n = h->ids.slots[i], *next;
        for (; n; n = next) {
            struct id_rec *r = (struct id_rec *)n;
            next = n->next;
            if (now - r->last_seen > keep && r->banned_until < now) {
                kf_htab_remove(&h->ids, n);
                free(r);
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
}

void kf_hub_registry_changed(struct kf_hubd *h)
{
    pthread_mutex_lock(&h->lock);
    for (struct kf_hub_worker *hw = h->workers; hw; hw = hw->next)
        event_active(hw->tick, EV_TIMEOUT, 0);
    pthread_mutex_unlock(&h->lock);
}

uint64_t kf_hub_connections_open(struct kf_hubd *h)
{
    return h ? kf_limits_connections(h->limits) : 0;
}

void kf_hub_stats(struct kf_hubd *h, struct kf_hub_stats *out)
{
    struct kf_broker_stats bs;
    memset(out, 0, sizeof(*out));
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    for (struct kf_hub_worker *hw = h->workers; hw; hw = hw->next) {
#define SUM(f) out->f += __atomic_load_n(&hw->st.f, __ATOMIC_RELAXED)
        SUM(connections);
        SUM(connects);
        SUM(auth_failed);
        SUM(refused);
        SUM(malformed);
        SUM(acl_denied);
        SUM(rate_limited);
        SUM(messages_received);
        SUM(messages_sent);
        SUM(tls_offloaded);
        SUM(store_waits);
#undef SUM
    }
    pthread_mutex_unlock(&h->lock);
    kf_broker_stats(h->broker, &bs);
    out->sessions = bs.sessions;
    out->retained = bs.retained;
    out->queued = bs.queued;
    out->dropped = bs.dropped;
}
