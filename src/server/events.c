#include "server/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ident.h"
#include "common/log.h"
#include "common/timefmt.h"
#include "server/jsontext.h"

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
    if (device && kf_id_valid(device)) snprintf(p->ev.device, sizeof(p->ev.device), "%s", device);
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

void kf_events_name_conflict(struct kf_store *store, const char *actor, const char *name,
                             const char *wanted, const char *why)
{
    char keep[256];
    /* `why` is usually this thread's error message, which the caller still reports. */
    snprintf(keep, sizeof(keep), "%s", why);
    kf_events_submit(store, "registry.name_conflict", "warning", NULL, "server", NULL,
                     kf_jsontext_pack("{s:s, s:s, s:s, s:s}", "actor", actor, "name", name,
                                      "wanted_as", wanted, "message", keep));
    kf_fail(KF_E_CONFLICT, "%s", keep);
}
