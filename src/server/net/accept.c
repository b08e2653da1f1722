#include "server/net/accept.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>

#include "common/log.h"
#include "common/timefmt.h"

struct kf_acceptor {
    struct event_base *base;
    struct evconnlistener *listener;
    struct kf_limits *limits;
    struct kf_tls *tls;
    const struct kf_accept_conf *conf;
    const struct kf_accept_ops *ops;
    void *arg;
};

/* Milliseconds on the monotonic clock: deadlines do not move with the wall clock. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int min_ms(int a, int b)
{
    return a < b ? a : b;
}

void kf_conn_arm(struct kf_conn *c, struct event *ev, int deadline_ms)
{
    int64_t left = c->accepted_ms + deadline_ms - mono_ms();
    struct timeval tv;
    if (left < 1) left = 1;
    tv.tv_sec = (time_t)(left / 1000);
    tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
    event_add(ev, &tv);
}

void kf_conn_handshake_done(struct kf_conn *c)
{
    if (!c->handshake_pending) return;
    c->handshake_pending = 0;
    kf_limits_handshake_done(c->limits, &c->ip);
}

void kf_conn_release(struct kf_conn *c)
{
    if (c->wait) event_free(c->wait);
    c->wait = NULL;
    if (c->timer) event_free(c->timer);
    c->timer = NULL;
    if (c->fd >= 0) evutil_closesocket(c->fd);
    c->fd = -1;
    kf_limits_conn_close(c->limits, &c->ip, c->handshake_pending);
    c->handshake_pending = 0;
}

static void refuse(struct kf_acceptor *ac, evutil_socket_t fd, const char *ip_text,
                   enum kf_accept_refusal why, enum kf_log_level level, const char *text)
{
    if (ac->ops->refused) ac->ops->refused(ac->arg, why);
    kf_log(level, ac->ops->module, "connection refused", "ip", ip_text, "why", text, NULL);
    evutil_closesocket(fd);
}

/* The first bytes of the TLS handshake are there (or the hello deadline passed). */
static void hello_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_conn *c = arg;
    struct kf_acceptor *ac = c->acceptor;
    const struct kf_accept_ops *ops = ac->ops;
    SSL *ssl;

    event_free(c->wait);
    c->wait = NULL;
    if (what & EV_TIMEOUT) {
        kf_log(KF_LOG_DEBUG, ops->module, "no ClientHello in time", "ip", c->ip_text, NULL);
        ops->failed(c, 1);
        return;
    }
    ssl = kf_tls_ssl_new(ac->tls);
    if (ssl && ops->ssl_new) ops->ssl_new(c, ssl);
    c->bev = ssl ? bufferevent_openssl_socket_new(ac->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                  BEV_OPT_CLOSE_ON_FREE)
                 : NULL;
    if (!c->bev) {
        ops->failed(c, 0); /* its release closes the socket */
        return;
    }
    c->fd = -1; /* the bufferevent's now */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, ops->read_cb, ops->write_cb, ops->event_cb, c);
    if (ops->tls_started) ops->tls_started(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    kf_conn_arm(c, c->timer, min_ms(ac->conf->handshake_timeout_ms, ac->conf->first_deadline_ms));
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct kf_acceptor *ac = arg;
    const struct kf_accept_conf *conf = ac->conf;
    struct kf_ipaddr ip;
    char text[INET6_ADDRSTRLEN];
    struct kf_conn *c;
    int over = 0, one = 1;
    enum kf_limits_verdict v;

    if (kf_ipaddr_from_sockaddr(sa, &ip) != KF_OK) {
        evutil_closesocket(fd);
        return;
    }
    kf_ipaddr_text(&ip, text, sizeof(text));
    if (kf_conf_nets_match(&conf->deny, text, 0)) {
        refuse(ac, fd, text, KF_ACCEPT_DENIED, KF_LOG_INFO, "the address is on the deny list");
        return;
    }
    if (!kf_conf_nets_match(&conf->allow, text, 1)) {
        refuse(ac, fd, text, KF_ACCEPT_DENIED, KF_LOG_INFO, "the address is not on the allow list");
        return;
    }
    v = kf_limits_conn_open(ac->limits, &ip, kf_now_ms(), &over);
    if (v != KF_LIMITS_OK) {
        refuse(ac, fd, text, KF_ACCEPT_LIMITS, KF_LOG_WARN, kf_limits_verdict_text(v));
        return;
    }
    if (over) {
        kf_limits_conn_close(ac->limits, &ip, 1);
        refuse(ac, fd, text, KF_ACCEPT_LIMITS, KF_LOG_WARN, "too many TLS handshakes in flight");
        return;
    }
    if (conf->count_rate && kf_limits_request(ac->limits, &ip, kf_now_ms())) {
        kf_limits_conn_close(ac->limits, &ip, 1);
        refuse(ac, fd, text, KF_ACCEPT_RATE, KF_LOG_WARN,
               "too many new connections per second from this address");
        return;
    }
    c = calloc(1, ac->ops->conn_size);
    if (!c) {
        kf_limits_conn_close(ac->limits, &ip, 1);
        refuse(ac, fd, text, KF_ACCEPT_NOMEM, KF_LOG_ERROR, "out of memory");
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->acceptor = ac;
    c->limits = ac->limits;
    c->fd = fd;
    c->ip = ip;
    c->accepted_ms = mono_ms();
    memcpy(c->ip_text, text, sizeof(text));
    c->handshake_pending = 1;
    ac->ops->opened(ac->arg, c);
    c->wait = event_new(ac->base, fd, EV_READ, hello_cb, c);
    c->timer = evtimer_new(ac->base, ac->ops->timer_cb, c);
    if (!c->wait || !c->timer) {
        ac->ops->failed(c, 0);
        return;
    }
    kf_conn_arm(c, c->wait,
                min_ms(conf->hello_timeout_ms,
                       min_ms(conf->handshake_timeout_ms, conf->first_deadline_ms)));
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct kf_acceptor *ac = arg;
    kf_log(KF_LOG_WARN, ac->ops->module, "accept failed", "error",
           evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), NULL);
}

enum kf_err kf_acceptor_new(struct event_base *base, evutil_socket_t fd, struct kf_limits *limits,
                            struct kf_tls *tls, const struct kf_accept_conf *conf,
                            const struct kf_accept_ops *ops, void *arg, struct kf_acceptor **out)
{
    struct kf_acceptor *ac = calloc(1, sizeof(*ac));
    *out = NULL;
    if (!ac) {
        evutil_closesocket(fd);
        return kf_fail(KF_E_NOMEM, "out of memory");
    }
    ac->base = base;
    ac->limits = limits;
    ac->tls = tls;
    ac->conf = conf;
    ac->ops = ops;
    ac->arg = arg;
    /* 0: the socket listens already, with its backlog of 4096 (-1 would cut it to 128). */
    ac->listener = evconnlistener_new(base, accept_cb, ac, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!ac->listener) {
        evutil_closesocket(fd);
        free(ac);
        return kf_fail(KF_E_NOMEM, "cannot listen for %s", ops->module);
    }
    evconnlistener_set_error_cb(ac->listener, accept_error_cb);
    *out = ac;
    return KF_OK;
}

void kf_acceptor_pause(struct kf_acceptor *ac)
{
    if (ac) evconnlistener_disable(ac->listener);
}

void kf_acceptor_free(struct kf_acceptor *ac)
{
    if (!ac) return;
    evconnlistener_free(ac->listener);
    free(ac);
}
