/* conn: one hub connection: accept, TLS and its offload, reading, timers, ending; its events. */
#include "server/hub/hub_internal.h"

static void packet(struct hconn *c, const struct kf_mqtt_packet *pkt);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void refused(void *arg, enum kf_accept_refusal why);
static void tls_started(struct kf_conn *head);
static void failed(struct kf_conn *head, int timed_out);

/*
 * Once a connection's identity has verified, events name the device; before (or when it did not),
 * the identity its certificate claims is recorded apart, never as the device.
 */
static void who_of(const struct hconn *c, struct kf_event_who *w)
{
    int device = c->kind == KF_ACL_DEVICE && c->id[0];
    w->device = c->verified && device ? c->id : NULL;
    w->claimed = !c->verified && c->id[0] ? c->id : NULL;
    w->ip = c->head.ip_text;
}

/* What happens at most once per connection: recorded as it comes. */
void kf_hub_event(struct hconn *c, const char *type, const char *severity, char *detail)
{
    struct kf_event_who w;
    who_of(c, &w);
    kf_events_submit(c->hw->hub->deploy->store, type, severity, w.device, w.claimed, "server", w.ip,
                     detail);
}

/* What a peer can cause again and again (a refusal): aggregated by the sink. */
void kf_hub_refusal(struct hconn *c, const char *type, const char *reason, char *detail)
{
    struct kf_event_who w;
    who_of(c, &w);
    kf_events_note(c->hw->hub->events, type, "warning", reason, &w, detail);
}

const char *kf_hub_kind_name(enum kf_acl_kind k)
{
    switch (k) {
    case KF_ACL_DEVICE: return "device";
    case KF_ACL_READER: return kf_role_name(KF_ROLE_READER);
    case KF_ACL_COMMANDER: return kf_role_name(KF_ROLE_COMMANDER);
    default: return "unknown";
    }
}

void kf_hub_auth_failed(struct hconn *c, const char *reason, const char *message)
{
    STAT_ADD(c->hw, auth_failed, 1);
    kf_hub_refusal(c, "hub.auth_failed", reason,
                   kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "reason", reason, "message", message,
                                    "id", c->id, "identity", kf_hub_kind_name(c->kind)));
}

void kf_hub_arm(struct hconn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->head.timer, &tv);
}

/* Arms `ev` to fire `deadline_ms` after the connection was accepted (at least 1 ms from now). */
/*
 * Ends the MQTT session's connection: the will (unless the client disconnected normally), the
 * broker, the event, and a DISCONNECT with `reason` for MQTT 5 clients when `tell`. The bytes
 * already written still go out; then the connection is freed (maybe_free).
 */
void kf_hub_shut(struct hconn *c, uint8_t reason, const char *why, int tell, int send_will)
{
    struct kf_hubd *h = c->hw->hub;
    if (c->closing) return;
    c->closing = 1;
    if (c->head.bev) bufferevent_disable(c->head.bev, EV_READ);
    if (tell && c->connected) kf_hub_send_disconnect(c, reason, why);
    if (c->connected) {
        struct kf_hub_who who = kf_hub_who_of(c);
        if (c->will && send_will && kf_hub_is_event_topic(&who, c->will->topic)) {
            /* A will on the device's events topic is one of its security events: recorded now. */
            const char *bad = NULL;
            int over = 0;
            if (kf_hub_device_event(c, c->will->payload, c->will->payload_len, &bad, &over))
                kf_broker_publish(h->broker, c->will, NULL, NULL);
            kf_broker_detach(h->broker, &c->peer, kf_now_ms());
        } else if (c->will && send_will) {
            kf_broker_detach_will(h->broker, &c->peer, c->will, c->will_delay, kf_now_ms());
        } else {
            kf_broker_detach(h->broker, &c->peer, kf_now_ms());
        }
        c->detached = 1;
        STAT_SUB(c->hw, connections, 1);
        kf_hub_event(c, "hub.disconnected", "info",
                     kf_jsontext_pack("{s:s, s:s, s:s, s:I}", "id", c->id, "identity",
                                      kf_hub_kind_name(c->kind), "reason", why, "seconds",
                                      (json_int_t)((kf_now_ms() - c->connected_at) / 1000)));
    }
    kf_msg_release(c->will);
    c->will = NULL;
    kf_hub_arm(c, CLOSE_GRACE_MS);
}

/* Bytes written but not yet on the wire (with tlsrec: the filter's and the socket's). */
static size_t out_pending(const struct hconn *c)
{
    size_t n;
    if (!c->head.bev) return 0;
    n = evbuffer_get_length(bufferevent_get_output(c->head.bev));
    if (c->rec)
        n += evbuffer_get_length(bufferevent_get_output(bufferevent_get_underlying(c->head.bev)));
    return n;
}

void kf_hub_maybe_free(struct hconn *c)
{
    if (!c->closing) return;
    if (out_pending(c) > 0) return;
    kf_hub_conn_free(c);
}

/* A packet the protocol forbids: counted, and the connection closed with its reason. */
void kf_hub_protocol_fail(struct hconn *c, uint8_t reason, const char *why)
{
    STAT_ADD(c->hw, malformed, 1);
    kf_log(KF_LOG_INFO, "hub", "closing a connection for a bad packet", "ip", c->head.ip_text, "id",
           c->id[0] ? c->id : NULL, "reason", kf_mqtt_reason_name(reason), "why", why, NULL);
    /* Before CONNECT the version is unknown; only a bad protocol level has an answer. */
    if (!c->connected && reason == KF_MQTT_RC_UNSUPPORTED_VERSION) {
        c->version = KF_MQTT_V311;
        kf_hub_send_connack(c, reason, KF_MQTT_V311_BAD_VERSION, 0, NULL);
    }
    kf_hub_shut(c, reason, kf_mqtt_reason_name(reason), 1, 1);
}

static void packet(struct hconn *c, const struct kf_mqtt_packet *pkt)
{
    struct kf_hubd *h = c->hw->hub;
    if (!c->connected) {
        if (pkt->type != KF_MQTT_CONNECT) {
            kf_hub_protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "the first packet must be CONNECT");
            return;
        }
        kf_hub_on_connect(c, &pkt->u.connect);
        return;
    }
    if (c->keep_alive) kf_hub_arm(c, c->keep_alive * 1500);
    switch (pkt->type) {
    case KF_MQTT_PUBLISH: kf_hub_on_publish(c, pkt); return;
    case KF_MQTT_PUBACK:
    case KF_MQTT_PUBCOMP:
        kf_broker_ack(h->broker, &c->peer, pkt->type, pkt->u.ack.packet_id);
        return;
    case KF_MQTT_PUBREC:
        if (pkt->u.ack.reason >= 0x80) {
            /* refused: the message is acknowledged, no PUBREL follows [MQTT-4.3.3-4, 4.4.0-2] */
            if (kf_broker_ack(h->broker, &c->peer, KF_MQTT_PUBREC, pkt->u.ack.packet_id))
                kf_broker_ack(h->broker, &c->peer, KF_MQTT_PUBCOMP, pkt->u.ack.packet_id);
            return;
        }
        /* the PUBREL goes once the store knows it is the PUBREL to send again */
        if (kf_broker_ack(h->broker, &c->peer, KF_MQTT_PUBREC, pkt->u.ack.packet_id))
            kf_hub_ack_after(c, KF_MQTT_PUBREL, pkt->u.ack.packet_id, 0);
        else
            kf_hub_queue_ack(c, KF_MQTT_PUBREL, pkt->u.ack.packet_id,
                             c->version == KF_MQTT_V5 ? KF_MQTT_RC_PACKET_ID_NOT_FOUND : 0, 1);
        return;
    case KF_MQTT_PUBREL: {
        /* the PUBCOMP goes once the id is forgotten in the store too: the client may reuse it */
        int found = kf_broker_qos2_released(h->broker, &c->peer, pkt->u.ack.packet_id);
        kf_hub_ack_after(c, KF_MQTT_PUBCOMP, pkt->u.ack.packet_id,
                         found || c->version != KF_MQTT_V5 ? 0 : KF_MQTT_RC_PACKET_ID_NOT_FOUND);
        return;
    }
    case KF_MQTT_SUBSCRIBE: kf_hub_on_subscribe(c, pkt, 0); return;
    case KF_MQTT_UNSUBSCRIBE: kf_hub_on_subscribe(c, pkt, 1); return;
    case KF_MQTT_PINGREQ: {
        uint8_t buf[2];
        size_t n;
        if (kf_mqtt_encode_empty(buf, sizeof(buf), KF_MQTT_PINGRESP, &n) == 0)
            kf_hub_write_bytes(c, buf, n);
        return;
    }
    case KF_MQTT_DISCONNECT: {
        const struct kf_mqtt_disconnect *d = &pkt->u.disconnect;
        if (c->version == KF_MQTT_V5 && KF_MQTT_HAS(&d->props, KF_MQTT_P_SESSION_EXPIRY)) {
            /* A session that was to end with the connection cannot be made to last [MQTT-3.14.2-2].
             */
            if (c->expiry == 0 && d->props.session_expiry != 0) {
                kf_hub_protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR,
                                     "session expiry set at DISCONNECT");
                return;
            }
            c->expiry = d->props.session_expiry < c->hw->conf.expiry_max ? d->props.session_expiry
                                                                         : c->hw->conf.expiry_max;
            kf_broker_set_expiry(h->broker, &c->peer, c->expiry);
        }
        kf_hub_shut(c, 0, "client_disconnected", 0,
                    c->version == KF_MQTT_V5 && d->reason == KF_MQTT_RC_DISCONNECT_WITH_WILL);
        return;
    }
    case KF_MQTT_CONNECT:
        kf_hub_protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "a second CONNECT");
        return;
    default:
        kf_hub_protocol_fail(c, KF_MQTT_RC_PROTOCOL_ERROR, "a packet only a server sends");
        return;
    }
}

/* One packet, with what its acknowledgement waits for in the store. */
static void on_packet(struct hconn *c, const struct kf_mqtt_packet *pkt)
{
    kf_hub_waits_begin(c);
    packet(c, pkt);
    kf_hub_waits_end();
}

void kf_hub_conn_free(struct hconn *c)
{
    struct kf_hub_worker *hw = c->hw;
    if (!c->closing) kf_hub_shut(c, 0, "closed", 0, 1);
    if (!c->detached) kf_broker_detach(hw->hub->broker, &c->peer, kf_now_ms());
    if (c->prev)
        c->prev->next = c->next;
    else
        hw->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    hw->n_conns--;
    if (c->head.bev && c->rec) {
        /* close_notify (or the fatal alert a refused record calls for), best effort, as
         * SSL_shutdown does it below */
        struct kf_buf b;
        kf_buf_init(&b, 64);
        if (c->rec_bad ? kf_tlsrec_fatal_alert(c->rec, &b)
                       : kf_tlsrec_close_notify(c->rec, &b) == KF_OK)
            (void)!send(bufferevent_getfd(bufferevent_get_underlying(c->head.bev)), b.data, b.len,
                        MSG_DONTWAIT | MSG_NOSIGNAL);
        kf_buf_free(&b);
        bufferevent_free(c->head.bev);
    } else if (c->head.bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->head.bev);
        if (ssl && !c->head.handshake_pending) SSL_shutdown(ssl);
        bufferevent_free(c->head.bev);
    }
    kf_tlsrec_free(c->rec);
    OPENSSL_cleanse(&c->watch, sizeof(c->watch));
    kf_conn_release(&c->head); /* the wait, the timer, the socket if no bufferevent took it,
                                * and its place in the limits */
    for (int i = 0; i <= KF_HUB_TOPIC_ALIAS_MAX; i++)
        free(c->aliases[i].p);
    kf_msg_release(c->will);
    if (c->jobs) {
        c->zombie = 1; /* a store write still points here: jobs_drain frees it */
    } else {
        kf_hub_zombie_free(c);
    }
    if (hw->draining && hw->n_conns == 0 && hw->idle_cb) hw->idle_cb(hw->idle_arg);
}

/* ---- TLS offload: idle TLS 1.3 connections carried by tlsrec instead of OpenSSL ---- */

struct kf_tlsrec_watch *kf_hub_watch_get(const SSL *ssl)
{
    struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
    return c ? &c->watch : NULL;
}

static enum bufferevent_filter_result in_filter(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *arg)
{
    struct hconn *c = arg;
    size_t len = evbuffer_get_length(src), used = 0;
    struct kf_buf plain, reply;
    const char *why = NULL;
    enum kf_tlsrec_status st;
    (void)limit;
    (void)mode;
    if (!len) return BEV_NEED_MORE;
    kf_buf_init(&plain, len);
    kf_buf_init(&reply, 256);
    st = kf_tlsrec_open(c->rec, evbuffer_pullup(src, -1), len, &used, &plain, &reply, &why);
    evbuffer_drain(src, used);
    if (plain.len) evbuffer_add(dst, plain.data, plain.len);
    if (reply.len)
        bufferevent_write(bufferevent_get_underlying(c->head.bev), reply.data, reply.len);
    kf_buf_free(&plain);
    kf_buf_free(&reply);
    if (st == KF_TLSREC_BAD || st == KF_TLSREC_CLOSED) {
        /*
         * libevent does nothing with a filter's BEV_ERROR: the end is the connection's own to
         * handle, outside the filter. What arrived before it is read first (read_cb ends the
         * connection then); with nothing before it, the timer's callback ends it now.
         */
        if (st == KF_TLSREC_BAD) {
            kf_log(KF_LOG_INFO, "hub", "TLS record refused", "id", c->id, "ip", c->head.ip_text,
                   "why", why, NULL);
            STAT_ADD(c->hw, malformed, 1);
            c->rec_bad = 1;
        } else {
            c->rec_eof = 1;
        }
        evbuffer_drain(src, evbuffer_get_length(src)); /* nothing after the end is read */
        event_active(c->head.timer, EV_TIMEOUT, 1);
        return BEV_OK;
    }
    return used ? BEV_OK : BEV_NEED_MORE;
}

static enum bufferevent_filter_result out_filter(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *arg)
{
    struct hconn *c = arg;
    size_t len = evbuffer_get_length(src);
    struct kf_buf rec;
    enum kf_err rc;
    (void)limit;
    (void)mode;
    if (!len) return BEV_NEED_MORE;
    kf_buf_init(&rec, len + (len / 16384 + 1) * 32);
    rc = kf_tlsrec_seal(c->rec, evbuffer_pullup(src, -1), len, &rec);
    if (!rc) {
        evbuffer_add(dst, rec.data, rec.len);
        evbuffer_drain(src, len);
    }
    kf_buf_free(&rec);
    return rc ? BEV_ERROR : BEV_OK;
}

/*
 * When a connected TLS 1.3 connection is quiet (nothing buffered anywhere), tlsrec takes its
 * records over and the SSL, with its buffers and handshake state, is freed; the session stays in
 * the cache for resumption. Anything unusual and the connection simply stays with OpenSSL.
 */
static void maybe_offload(struct hconn *c)
{
    struct bufferevent *old = c->head.bev, *raw, *f;
    struct kf_tlsrec *rec = NULL;
    SSL *ssl;
    int fd;

    if (c->rec || !c->connected || c->closing || !old || !c->hw->conf.tls_offload) return;
    if (evbuffer_get_length(bufferevent_get_output(old)) ||
        evbuffer_get_length(bufferevent_get_input(old)))
        return;
    ssl = bufferevent_openssl_get_ssl(old);
    if (!ssl || !kf_tlsrec_ready(ssl, &c->watch)) return;
    fd = fcntl(bufferevent_getfd(old), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return;
    if (kf_tlsrec_take(ssl, &c->watch, &rec) != KF_OK) {
        kf_err_clear();
        close(fd);
        c->watch.unsafe = 1;
        return;
    }
    raw = bufferevent_socket_new(c->hw->base, fd, BEV_OPT_CLOSE_ON_FREE);
    f = raw ? bufferevent_filter_new(raw, in_filter, out_filter, BEV_OPT_CLOSE_ON_FREE, NULL, c)
            : NULL;
    if (!f) {
        /* the SSL is untouched: it keeps the connection */
        if (raw)
            bufferevent_free(raw);
        else
            close(fd);
        kf_tlsrec_free(rec);
        c->watch.unsafe = 1;
        return;
    }
    /* freed as if shut down, so that OpenSSL keeps the session for resumption */
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_ex_data(ssl, kf_tls_ex_index(), NULL);
    c->rec = rec;
    c->head.bev = f;
    bufferevent_free(old);
    bufferevent_setwatermark(raw, EV_WRITE, 0, OUT_HIGH);
    bufferevent_setcb(f, kf_hub_read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(f, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(f, EV_READ | EV_WRITE);
    STAT_ADD(c->hw, tls_offloaded, 1);
    kf_log(KF_LOG_DEBUG, "hub", "TLS records taken over from OpenSSL", "id", c->id, NULL);
}

/*
 * tlsrec read the client's close_notify, or refused a record: the connection ends as if TCP had
 * closed (the will goes, unless the client disconnected normally), answered with our
 * close_notify or the fatal alert the record called for.
 */
static void rec_ended(struct hconn *c)
{
    if (c->rec_bad && !c->closing) kf_hub_shut(c, 0, "tls_record_refused", 0, 1);
    event_cb(c->head.bev, BEV_EVENT_EOF | BEV_EVENT_READING, c); /* frees c */
}

/*
 * Whether the connection must wait for the store before its next packet: it has JOBS_PER_CONN
 * writes there, or the hub has its share (one packet's writes are one commit, so the share is
 * exceeded by at most a packet per worker). Its reading pauses (TCP pushes back on the client)
 * and starts again as they come back (maybe_resume, and the tick).
 */
static int must_wait(const struct hconn *c)
{
    return c->jobs >= JOBS_PER_CONN ||
           (c->hw->hub->persistence &&
            __atomic_load_n(&c->hw->hub->ret_pending, __ATOMIC_RELAXED) >= RET_PENDING_MAX);
}

void kf_hub_read_cb(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    while (!c->closing) {
        size_t len = evbuffer_get_length(in);
        struct kf_mqtt_packet pkt;
        struct kf_mqtt_error err = {0, NULL};
        enum kf_mqtt_status st;
        const uint8_t *data;

        if (!len) break;
        if (must_wait(c)) {
            STAT_ADD(c->hw, store_waits, 1);
            c->paused = 1;
            bufferevent_disable(bev, EV_READ);
            return;
        }
        data = evbuffer_pullup(in, -1);
        st = kf_mqtt_decode(data, len, c->connected ? c->version : 0, c->hw->conf.max_packet, &pkt,
                            &err);
        if (st == KF_MQTT_PARTIAL) break;
        if (st == KF_MQTT_BAD) {
            kf_hub_protocol_fail(c, err.reason, err.why ? err.why : "malformed packet");
            break;
        }
        on_packet(c, &pkt);
        if (c->head.bev) evbuffer_drain(in, pkt.size);
    }
    if (c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        kf_hub_maybe_free(c);
        return;
    }
    if (c->rec_eof || c->rec_bad) {
        rec_ended(c); /* frees c */
        return;
    }
    maybe_offload(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    if (c->closing) {
        kf_hub_maybe_free(c);
        return;
    }
    /* New messages come through the inbox; here only what waited for room in the output. */
    if (c->backlog) kf_hub_flush(c);
    maybe_offload(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hconn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        const char *why, *message = NULL;
        kf_conn_handshake_done(&c->head);
        c->tls_resumed = kf_tls_resumed(bufferevent_openssl_get_ssl(c->head.bev));
        /* CONNECT must come within what is left of connect_timeout_ms. */
        kf_conn_arm(&c->head, c->head.timer, c->hw->conf.accept.first_deadline_ms);
        why = kf_hub_identify(c, &message);
        if (why) {
            kf_hub_auth_failed(c, why, message);
            kf_hub_shut(c, 0, why, 0, 0);
            kf_hub_maybe_free(c);
            return;
        }
        c->verified = 1;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->head.handshake_pending) {
            char why[128] = "";
            unsigned long e = bufferevent_get_openssl_error(bev);
            /* libevent keeps the handshake's OpenSSL errors on the bufferevent. */
            if (e && ERR_reason_error_string(e))
                snprintf(why, sizeof(why), "%s", ERR_reason_error_string(e));
            while (bufferevent_get_openssl_error(bev))
                ;
            if (c->auth_reason[0])
                kf_hub_auth_failed(c, c->auth_reason, "the client certificate was refused");
            else if (strstr(why, "certificate"))
                kf_hub_auth_failed(c, "no_certificate", why);
            else
                kf_log(KF_LOG_DEBUG, "hub", "handshake failed", "ip", c->head.ip_text, "error", why,
                       NULL);
        }
        ERR_clear_error();
        if (!c->closing) kf_hub_shut(c, 0, "connection_lost", 0, 1);
        if (c->head.bev) {
            /* Nothing more can be written: drop what is left. */
            struct evbuffer *out = bufferevent_get_output(c->head.bev);
            evbuffer_drain(out, evbuffer_get_length(out));
        }
        kf_hub_conn_free(c);
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hconn *c = arg;
    if (c->rec_eof || c->rec_bad) {
        rec_ended(c);
        return;
    }
    if (c->closing) {
        kf_hub_conn_free(c); /* it did not read its last bytes in time */
        return;
    }
    if (c->connected && c->paused) {
        kf_hub_arm(c, c->keep_alive * 1500); /* not silent: it is the hub that does not read */
        return;
    }
    if (c->connected) {
        kf_hub_shut(c, KF_MQTT_RC_KEEP_ALIVE_TIMEOUT, "keep_alive_timeout", 1, 1);
    } else {
        kf_log(KF_LOG_INFO, "hub", "no CONNECT in time", "ip", c->head.ip_text, NULL);
        kf_hub_shut(c, 0, "connect_timeout", 0, 0);
    }
    kf_hub_maybe_free(c);
}

/* A connection net/accept let in: one of this worker's. */
static void opened(void *arg, struct kf_conn *head)
{
    struct kf_hub_worker *hw = arg;
    struct hconn *c = (struct hconn *)head;
    c->hw = hw;
    c->peer.inbox = &hw->inbox;
    c->next = hw->conns;
    if (hw->conns) hw->conns->prev = c;
    hw->conns = c;
    hw->n_conns++;
}

static void refused(void *arg, enum kf_accept_refusal why)
{
    struct kf_hub_worker *hw = arg;
    STAT_ADD(hw, refused, 1);
}

/* The SSL finds its connection again (the key-log and message callbacks of TLS offload). */
static void ssl_new(struct kf_conn *head, SSL *ssl)
{
    SSL_set_ex_data(ssl, kf_tls_ex_index(), head);
}

static void tls_started(struct kf_conn *head)
{
    bufferevent_setwatermark(head->bev, EV_WRITE, OUT_LOW, 0);
}

/* No ClientHello by the hello deadline, or no TLS state for it. */
static void failed(struct kf_conn *head, int timed_out)
{
    struct hconn *c = (struct hconn *)head;
    c->closing = 1;
    kf_hub_conn_free(c);
}

const struct kf_accept_ops kf_hub_accept_ops = {
    .module = "hub",
    .conn_size = sizeof(struct hconn),
    .opened = opened,
    .refused = refused,
    .ssl_new = ssl_new,
    .tls_started = tls_started,
    .failed = failed,
    .read_cb = kf_hub_read_cb,
    .write_cb = write_cb,
    .event_cb = event_cb,
    .timer_cb = timer_cb,
};
