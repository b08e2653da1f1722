/*
 * worker: one keyfleetd worker thread: an event loop carrying its provisioning listener
 * (provision/listener) and its share of the hub, each with its own SO_REUSEPORT socket. A
 * connection lives and dies on the worker that accepted it.
 */
#ifndef KF_SERVER_WORKER_H
#define KF_SERVER_WORKER_H

#include <stddef.h>

#include "common/err.h"
#include "server/daemon.h"

struct kf_worker;

/*
 * Makes worker `index`: its event loop, and its listener bound (SO_REUSEPORT) to the service's
 * address. Errors name the address ("cannot listen on 0.0.0.0:8443: Address already in use").
 */
enum kf_err kf_worker_new(struct kf_daemon *svc, int index, struct kf_worker **out);

/* Starts the worker's thread. */
enum kf_err kf_worker_start(struct kf_worker *w);

/* Asks the worker (from any thread) to stop accepting and finish what it has. */
void kf_worker_drain(struct kf_worker *w);

/* Asks the worker (from any thread) to stop now, closing what is left. */
void kf_worker_stop(struct kf_worker *w);

/* Waits for the worker's thread to end (after drain or stop). */
void kf_worker_join(struct kf_worker *w);

/*
 * Frees the worker (joining it first). Store jobs still out come back through the worker's
 * queue, so close the store before this: its remaining completions are then answered or freed.
 */
void kf_worker_free(struct kf_worker *w);

/* 1 once the worker's loop has ended. */
int kf_worker_done(struct kf_worker *w);

#endif
