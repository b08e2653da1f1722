/*
 * worker: one keyfleetd worker thread: an event loop carrying its provisioning listener and its
 * share of the hub (each with its own SO_REUSEPORT socket), drained and stopped from the main
 * thread.
 */
#include "server/worker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "server/hub/hub.h"
#include "server/net/listen.h"
#include "server/provision/listener.h"

struct kf_worker {
    struct kf_daemon *svc;
    int index;
    struct event_base *base;
    struct event *drain; /* drain requested */
    struct event *stop;  /* stop requested */
    pthread_t thread;
    int started, done, draining;
    struct kf_prov_listener *prov;
    struct kf_hub_worker *hub; /* NULL: no hub */
};

/* ---- the worker itself ---- */

/* While draining, a listener's last connection went: the loop ends once both have none. */
static void idle_cb(void *arg)
{
    struct kf_worker *w = arg;
    if (w->draining && kf_prov_listener_conns(w->prov) == 0 && kf_hub_worker_conns(w->hub) == 0)
        event_base_loopbreak(w->base);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_worker *w = arg;
    w->draining = 1;
    if (w->hub) kf_hub_worker_drain(w->hub);
    kf_prov_listener_drain(w->prov);
    idle_cb(w);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_worker *w = arg;
    event_base_loopbreak(w->base);
}

enum kf_err kf_worker_new(struct kf_daemon *svc, int index, struct kf_worker **out)
{
    struct kf_worker *w = calloc(1, sizeof(*w));
    int fd;

    *out = NULL;
    if (!w) return kf_fail(KF_E_NOMEM, "out of memory");
    w->svc = svc;
    w->index = index;
    w->base = event_base_new();
    if (!w->base) goto nomem;
    w->drain = event_new(w->base, -1, 0, drain_cb, w);
    w->stop = event_new(w->base, -1, 0, stop_cb, w);
    if (!w->drain || !w->stop) goto nomem;
    if (kf_listen_open(svc->listen_host, svc->listen_port, 1, &fd) != KF_OK ||
        kf_prov_listener_new(&svc->prov, w->base, fd, idle_cb, w, &w->prov) != KF_OK) {
        enum kf_err rc = kf_errlast();
        kf_worker_free(w);
        return rc;
    }
    svc->prov.listeners[index] = w->prov;
    if (svc->hub) {
        enum kf_err rc = kf_hub_worker_new(svc->hub, w->base, index, idle_cb, w, &w->hub);
        if (rc) {
            kf_worker_free(w);
            return rc;
        }
    }
    *out = w;
    return KF_OK;
nomem:
    kf_worker_free(w);
    return kf_fail(KF_E_NOMEM, "cannot set up worker %d", index);
}

static void *run(void *arg)
{
    struct kf_worker *w = arg;
    char name[16];
    /* Named for top -H, perf and gdb. */
    snprintf(name, sizeof(name), "kf-worker-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    event_base_dispatch(w->base);
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

enum kf_err kf_worker_start(struct kf_worker *w)
{
    int e = pthread_create(&w->thread, NULL, run, w);
    if (e) return kf_fail(KF_E_NOMEM, "cannot start worker %d: %s", w->index, strerror(e));
    w->started = 1;
    return KF_OK;
}

void kf_worker_drain(struct kf_worker *w)
{
    event_active(w->drain, EV_READ, 0);
}

void kf_worker_stop(struct kf_worker *w)
{
    event_active(w->stop, EV_READ, 0);
}

int kf_worker_done(struct kf_worker *w)
{
    return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
}

void kf_worker_join(struct kf_worker *w)
{
    if (w && w->started) pthread_join(w->thread, NULL);
    if (w) w->started = 0;
}

void kf_worker_free(struct kf_worker *w)
{
    if (!w) return;
    kf_worker_join(w);
    if (w->prov && w->svc->prov.listeners[w->index] == w->prov)
        w->svc->prov.listeners[w->index] = NULL;
    kf_prov_listener_free(w->prov);
    kf_hub_worker_free(w->hub);
    /*
     * A bufferevent freed while the loop stood still is only finalized by the loop: its
     * deferred callbacks hold a reference (and with it the SSL) that event_base_free would drop
     * unrun. Passes without waiting let them run and the TLS state go, once the worker's own
     * events are gone (a stop still active would break the pass before them).
     */
    if (w->drain) event_free(w->drain);
    if (w->stop) event_free(w->stop);
    for (int i = 0; w->base && i < 8; i++) {
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        if (!event_base_get_num_events(w->base, EVENT_BASE_COUNT_ACTIVE)) break;
    }
    if (w->base) event_base_free(w->base);
    free(w);
}
