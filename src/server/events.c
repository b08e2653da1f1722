#include "server/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ident.h"
#include "common/log.h"
#include "common/timefmt.h"

struct pending_event {
    struct kf_store_req req;
    struct kf_event ev;
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

void kf_events_submit(struct kf_store *store, const char *type, const char *severity,
                      const char *device, const char *source, const char *ip, char *detail)
{
    struct pending_event *p = calloc(1, sizeof(*p));
    enum kf_log_level level = strcmp(severity, "info") == 0 ? KF_LOG_INFO : KF_LOG_WARN;

    kf_log(level, "events", type, "device", device && *device ? device : NULL, "ip",
           ip && *ip ? ip : NULL, "detail", detail, NULL);
    if (!p) {
        free(detail);
        return;
    }
    p->ev.time_ms = kf_now_ms();
    snprintf(p->ev.type, sizeof(p->ev.type), "%s", type);
    snprintf(p->ev.severity, sizeof(p->ev.severity), "%s", severity);
    if (device && *device && kf_id_check("device id", device) == KF_OK)
        snprintf(p->ev.device, sizeof(p->ev.device), "%s", device);
    kf_err_clear();
    snprintf(p->ev.source, sizeof(p->ev.source), "%s", source);
    snprintf(p->ev.ip, sizeof(p->ev.ip), "%s", ip ? ip : "");
    p->ev.detail = detail;
    p->req.cb = write_cb;
    p->req.arg = p;
    p->req.done_cb = done_cb;
    p->req.done_arg = p;
    p->req.lazy = 1; /* nothing waits for an event's commit: it may share a later one */
    if (kf_store_submit(store, &p->req) != KF_OK) {
        kf_log(KF_LOG_WARN, "events", "store busy: an event was dropped", "type", type, NULL);
        free(p->ev.detail);
        free(p);
    }
}
