#include "server/provision/listener.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/cidr.h"
#include "common/ident.h"
#include "common/log.h"
#include "common/timefmt.h"
#include "common/est.h"
#include "common/htab.h"
#include "common/tuf.h"
#include "server/net/accept.h"
#include "server/ops/rollout.h"
#include "server/provision/metrics.h"
#include "server/provision/provision.h"

#define RESPONSE_MAX (1024 * 1024)

struct conn;

/* A store job on its way back to this worker. */
struct pending {
    struct kf_prov_listener *l;
    struct conn *c;
    struct kf_prov_job *job;
    enum kf_err rc;
    char errmsg[256];
    struct pending *next;
};

struct kf_prov_listener {
    struct kf_prov_service *svc;
    struct event_base *base;      /* borrowed: the worker's loop */
    struct kf_acceptor *acceptor; /* the provisioning listener on this loop */
    struct event *wake;           /* completions from the store's thread */
    pthread_mutex_t lock;         /* guards `completed` */
    struct pending *completed;
    struct conn *conns; /* all open connections */
    size_t n_conns;
    int draining;
    void (*idle_cb)(void *); /* while draining, the last connection went */
    void *idle_arg;
    struct kf_metrics metrics;
};

struct conn {
    struct kf_conn head; /* first: net/accept hands back this */
    struct kf_prov_listener *l;
    int busy;    /* a request is being answered */
    int closing; /* close once the output is written */
    int dead;    /* the peer went away while a job was out: free when it comes back */
    struct conn *prev, *next;
    /* the request being answered, for the log line and the metrics */
    struct timespec started;
    enum kf_endpoint ep;
    char label[KF_ID_MAX + 1]; /* the EST CA label of the request (RFC 7030 3.2.2), or "" */
    char method[KF_HTTP_METHOD_MAX];
    char path[KF_HTTP_TARGET_MAX];
    char id[KF_ID_MAX + 1];
    char serial[KF_SERIAL_HEX_MAX]; /* the certificate the answer carries, if any */
    char hub[KF_ID_MAX + 1];        /* the hub it assigns, if any */
    const char *error;              /* the refusal's code, if it is one (static) */
    /* a signed-update file being sent (dl_open): what is left of it, from dl_off, and to whom
     * (the key it counts under in the per-identity counts) */
    int dl_open, dl_fd, dl_status;
    char dl_key[KF_ID_MAX + 3];
    int abort; /* close at the next turn of the loop (set where the connection is still in use) */
    uint64_t dl_off, dl_left;
};

/* ---- answering ---- */

static int64_t elapsed_us(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000000 + (now.tv_nsec - since->tv_nsec) / 1000;
}

static void conn_free(struct conn *c);
static void conn_close(struct conn *c);
static void process(struct conn *c);

static void arm_deadline(struct conn *c)
{
    struct timeval tv = {c->l->svc->conf.accept.first_deadline_ms / 1000,
                         (c->l->svc->conf.accept.first_deadline_ms % 1000) * 1000};
    evtimer_add(c->head.timer, &tv);
}

/* The request is answered: counted, logged, and the connection free for the next one. */
static void request_done(struct conn *c, int status)
{
    char ms[32], st[8];
    kf_metrics_request(&c->l->metrics, c->ep, status, (double)elapsed_us(&c->started) / 1e6);
    snprintf(ms, sizeof(ms), "%.3f", (double)elapsed_us(&c->started) / 1000.0);
    snprintf(st, sizeof(st), "%d", status);
    kf_log(KF_LOG_INFO, "http", "request", "method", c->method, "path", c->path, "status", st, "ms",
           ms, "ip", c->head.ip_text, "id", c->id[0] ? c->id : NULL, "serial",
           c->serial[0] ? c->serial : NULL, "hub", c->hub[0] ? c->hub : NULL, "error", c->error,
           NULL);
    c->busy = 0;
}

/* Sends a whole response; the request ends when it has been written. */
static void send_response(struct conn *c, int status, const char *type, const char *extra,
                          const void *body, size_t len)
{
    struct kf_buf out;
    int close =
        c->closing || c->l->draining || __atomic_load_n(c->l->svc->draining, __ATOMIC_RELAXED);

    kf_buf_init(&out, RESPONSE_MAX + 4096);
    if (kf_http_response(&out, status, type, extra, close, body, len) != KF_OK) {
        kf_buf_reset(&out);
        kf_http_response(&out, 500, NULL, NULL, 1, NULL, 0);
        close = 1;
        status = 500;
    }
    bufferevent_write(c->head.bev, out.data, out.len);
    kf_buf_free(&out);
    c->closing = close;
    request_done(c, status);
}

static void send_json(struct conn *c, int status, json_t *j, const char *extra)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        send_response(c, 500, "application/json", NULL, "{\"error\":\"internal_error\"}", 26);
        return;
    }
    send_response(c, status, "application/json", extra, text, strlen(text));
    free(text);
}

/* Whether a refusal is a security event, and whether the identity in it had verified. */
enum { NO_EVENT = 0, EVENT_CLAIMED = 1, EVENT_VERIFIED = 2 };

/* The refusal answer: a JSON error, the counter, and (for policy refusals) a security event. */
static void send_refusal(struct conn *c, int status, enum kf_refusal reason, const char *message,
                         int event)
{
    char extra[160] = "";
    if (status < 400 || status > 599) {
        /* A refusal without its status is a bug of ours: say so, never send status 0. */
        kf_log(KF_LOG_ERROR, "http", "a refusal had no status", "reason", kf_refusal_name(reason),
               "message", message, NULL);
        status = 500;
        reason = KF_REFUSAL_INTERNAL_ERROR;
        if (!message || !*message) message = "internal error";
    }
    if (status == 429 || status == 503)
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", c->l->svc->conf.retry_after);
    if (status == 401) /* RFC 9110 15.5.2: a 401 carries a challenge */
        snprintf(extra, sizeof(extra), "%s", KF_EST_HEADER_AUTHENTICATE);
    kf_metrics_refusal(&c->l->metrics, reason);
    c->error = kf_refusal_name(reason);
    if (event) {
        struct kf_prov_refusal ref = {status, reason, "", event == EVENT_VERIFIED};
        snprintf(ref.message, sizeof(ref.message), "%s", message);
        kf_prov_event_denied(c->l->svc->events, &ref, c->id[0] ? c->id : NULL, c->head.ip_text);
    }
    send_json(c, status,
              json_pack("{s:s, s:s}", "error", kf_refusal_name(reason), "message", message),
              extra[0] ? extra : NULL);
}

/* ---- provisioning requests ---- */

static void job_done_cb(struct kf_store_req *req, enum kf_err rc, void *arg)
{
    struct pending *p = arg;
    struct kf_prov_listener *l = p->l;
    /* On the store's thread: hand it back to the worker's loop. */
    p->rc = rc;
    snprintf(p->errmsg, sizeof(p->errmsg), "%s", req->errmsg);
    pthread_mutex_lock(&l->lock);
    p->next = l->completed;
    l->completed = p;
    pthread_mutex_unlock(&l->lock);
    event_active(l->wake, EV_READ, 0);
}

static void answer_job(struct conn *c, struct kf_prov_job *job, enum kf_err rc, const char *why)
{
    struct kf_snapshot *reg;
    struct kf_buf body;
    char renew[KF_TIME_TEXT_MAX], endpoint[KF_ENDPOINT_MAX + 8];

    if (job->refused) {
        send_refusal(c, job->refusal.status, job->refusal.reason, job->refusal.message,
                     job->refusal.verified ? EVENT_VERIFIED : EVENT_CLAIMED);
        return;
    }
    if (rc) {
        kf_log(KF_LOG_ERROR, "provision", "could not record an enrollment", "device",
               job->device_id, "error", why, NULL);
        /* The store is busy or failing: the device should come back later. */
        c->closing = 1;
        send_refusal(c, 503, KF_REFUSAL_OVERLOADED,
                     "the enrollment could not be recorded; try again later", 0);
        return;
    }
    if (job->pending) {
        /* RFC 7030 4.2.3: 202 and Retry-After; the register API says "pending" too. */
        char extra[64], msg[2 * KF_ID_MAX + 160];
        unsigned wait = c->l->svc->conf.approval_retry_after;
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", wait);
        snprintf(msg, sizeof(msg),
                 "device %s waits for an operator's approval (keyfleet enrollment "
                 "approve %s); ask again in %u seconds",
                 job->device_id, job->device_id, wait);
        c->error = "pending";
        if (job->kind == KF_PROV_REGISTER)
            send_json(c, 202,
                      json_pack("{s:s, s:s, s:I, s:s}", "deviceId", job->device_id, "status",
                                "pending", "retryAfter", (json_int_t)wait, "message", msg),
                      extra);
        else
            send_response(c, 202, "text/plain; charset=utf-8", extra, msg, strlen(msg));
        return;
    }
    kf_metrics_enrollment(&c->l->metrics, job->kind == KF_PROV_REGISTER ? KF_ISSUE_REGISTER
                                          : job->kind == KF_PROV_SIMPLEENROLL
                                              ? KF_ISSUE_SIMPLEENROLL
                                              : KF_ISSUE_SIMPLEREENROLL);
    /* The request's log line names the certificate and the hub. */
    snprintf(c->serial, sizeof(c->serial), "%s", job->rec.serial);
    snprintf(c->hub, sizeof(c->hub), "%s", job->has_hub ? job->hub.name : "");
    if (job->kind != KF_PROV_REGISTER) {
        kf_buf_init(&body, RESPONSE_MAX);
        if (kf_est_certs_only(&job->cert, 1, &body) != KF_OK) {
            kf_buf_free(&body);
            send_refusal(c, 500, KF_REFUSAL_INTERNAL_ERROR, "cannot encode the certificate", 0);
            return;
        }
        send_response(c, 200, KF_EST_TYPE_CERTS_ONLY, KF_EST_HEADER_CTE, body.data, body.len);
        kf_buf_free(&body);
        return;
    }
    reg = kf_snapshot_get(c->l->svc->snapshot);
    kf_buf_init(&body, RESPONSE_MAX);
    kf_cert_pem(job->cert, &body);
    kf_buf_append(&body, reg->issuing_pem.data, reg->issuing_pem.len);
    kf_time_rfc3339(job->renew_after, renew, sizeof(renew));
    snprintf(endpoint, sizeof(endpoint), "%s", job->has_hub ? job->hub.endpoint : "");
    send_json(c, 200,
              json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}", "deviceId", job->device_id, "status",
                        job->has_hub ? "assigned" : "unassigned", "hub",
                        job->has_hub ? json_string(endpoint) : json_null(), "certificate",
                        kf_buf_str(&body), "trustBundle", kf_buf_str(&reg->root_pem), "renewAfter",
                        renew),
              NULL);
    kf_buf_free(&body);
    kf_snapshot_release(reg);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kf_prov_listener *l = arg;
    struct pending *list, *p;

    pthread_mutex_lock(&l->lock);
    list = l->completed;
    l->completed = NULL;
    pthread_mutex_unlock(&l->lock);
    while ((p = list) != NULL) {
        list = p->next;
        if (p->c->dead) {
            conn_free(p->c);
        } else {
            answer_job(p->c, p->job, p->rc, p->errmsg);
        }
        kf_prov_job_free(p->job);
        free(p);
    }
}

/* Decodes the body of a provisioning request into a CSR; 0 and an answer sent on failure. */
static int read_csr(struct conn *c, const struct kf_http_request *req, enum kf_prov_kind kind,
                    struct kf_csr **csr)
{
    const char *type = kf_http_header(req, "Content-Type");
    *csr = NULL;
    if (kind == KF_PROV_REGISTER) {
        json_error_t jerr;
        json_t *j, *pem;
        if (!type || strncasecmp(type, "application/json", 16) != 0) {
            send_refusal(c, 415, KF_REFUSAL_UNSUPPORTED_MEDIA_TYPE,
                         "send the request as application/json: {\"csr\": \"<PEM>\"}", 0);
            return 0;
        }
        j = json_loadb((const char *)req->body, req->content_length, JSON_REJECT_DUPLICATES, &jerr);
        pem = j ? json_object_get(j, "csr") : NULL;
        if (!j || !json_is_object(j) || !json_is_string(pem)) {
            char msg[300];
            snprintf(msg, sizeof(msg), "the body must be a JSON object {\"csr\": \"<PEM>\"}%s%s",
                     j ? "" : ": ", j ? "" : jerr.text);
            json_decref(j);
            send_refusal(c, 400, KF_REFUSAL_BAD_REQUEST, msg, 0);
            return 0;
        }
        if (kf_csr_parse(json_string_value(pem), json_string_length(pem), csr) != KF_OK) {
            char msg[600];
            snprintf(msg, sizeof(msg), "\"csr\" is not a PKCS#10 request: %s", kf_errmsg());
            json_decref(j);
            send_refusal(c, 400, KF_REFUSAL_CSR_INVALID, msg, 0);
            return 0;
        }
        json_decref(j);
        return 1;
    }
    if (!type || strncasecmp(type, KF_EST_TYPE_PKCS10, strlen(KF_EST_TYPE_PKCS10)) != 0) {
        send_refusal(c, 415, KF_REFUSAL_UNSUPPORTED_MEDIA_TYPE,
                     "send the CSR as application/pkcs10 (base64 DER, RFC 7030 and RFC 8951)", 0);
        return 0;
    }
    if (kf_est_decode_csr(req->body, req->content_length, csr) != KF_OK) {
        send_refusal(c, 400, KF_REFUSAL_CSR_INVALID, kf_errmsg(), 0);
        return 0;
    }
    return 1;
}

static void provision(struct conn *c, const struct kf_http_request *req, enum kf_prov_kind kind)
{
    struct kf_prov_service *svc = c->l->svc;
    struct kf_cert *leaf = NULL, *chain[KF_PROV_CHAIN_MAX];
    struct kf_prov_refusal ref;
    struct kf_prov_input in;
    struct kf_prov_job *job = NULL;
    struct kf_snapshot *reg;
    struct kf_csr *csr = NULL;
    struct pending *p;
    char binding[KF_TLS_BINDING_MAX];
    size_t n = 0;
    enum kf_err rc;

    if (!read_csr(c, req, kind, &csr)) return;
    rc = kf_tls_peer(bufferevent_openssl_get_ssl(c->head.bev), &leaf, chain, KF_PROV_CHAIN_MAX, &n);
    if (rc) goto internal;
    if (leaf) kf_cert_subject_cn(leaf, c->id, sizeof(c->id));
    kf_err_clear();
    memset(&in, 0, sizeof(in));
    in.kind = kind;
    in.ip = c->head.ip_text;
    in.leaf = leaf;
    in.chain = chain;
    in.n_chain = n;
    in.csr = csr;
    in.label = c->label[0] ? c->label : NULL;
    /* The binding is derived only for a CSR that carries one to compare (not on every request). */
    in.binding_kind = kf_tls_channel_binding_kind(bufferevent_openssl_get_ssl(c->head.bev));
    if (kf_csr_challenge(csr)) {
        if (kf_tls_channel_binding(bufferevent_openssl_get_ssl(c->head.bev), binding,
                                   sizeof(binding), &in.binding_kind) == KF_OK)
            in.binding = binding;
        kf_err_clear();
    }
    reg = kf_snapshot_fresh(svc->snapshot, svc->deploy);
    rc = kf_prov_decide(reg, svc->deploy->store, svc->signer, &in, time(NULL), &job, &ref);
    kf_snapshot_release(reg);
    if (rc == KF_E_DENIED) {
        send_refusal(c, ref.status, ref.reason, ref.message,
                     ref.verified ? EVENT_VERIFIED : EVENT_CLAIMED);
        goto out;
    }
    if (rc) goto internal;
    snprintf(c->id, sizeof(c->id), "%s", job->device_id);
    p = calloc(1, sizeof(*p));
    if (!p) goto internal;
    p->l = c->l;
    p->c = c;
    p->job = job;
    job->req.done_cb = job_done_cb;
    job->req.done_arg = p;
    rc = kf_store_submit(svc->deploy->store, &job->req);
    if (rc) {
        free(p);
        kf_prov_job_free(job);
        send_refusal(c, 503, KF_REFUSAL_OVERLOADED,
                     "too many enrollments in flight; try again later", 0);
        goto out;
    }
    /* The answer leaves when the store has made it durable (wake_cb). */
    goto out;
internal:
    kf_log(KF_LOG_ERROR, "provision", "internal error", "error", kf_errmsg(), NULL);
    send_refusal(c, 500, KF_REFUSAL_INTERNAL_ERROR, "internal error", 0);
out:
    kf_cert_free(leaf);
    for (size_t i = 0; i < n; i++)
        kf_cert_free(chain[i]);
    kf_csr_free(csr);
}

/* ---- routing ---- */

struct route {
    const char *path;
    const char *method;
    enum kf_endpoint ep;
};

static const struct route routes[] = {
    {"/.well-known/est/cacerts", "GET", KF_EP_CACERTS},
    {"/.well-known/est/csrattrs", "GET", KF_EP_CSRATTRS},
    {"/.well-known/est/simpleenroll", "POST", KF_EP_SIMPLEENROLL},
    {"/.well-known/est/simplereenroll", "POST", KF_EP_SIMPLEREENROLL},
    {"/api/v1/register", "POST", KF_EP_REGISTER},
    {"/healthz", "GET", KF_EP_HEALTHZ},
    {"/metrics", "GET", KF_EP_METRICS},
};

/*
 * An EST path with a CA label, /.well-known/est/<label>/<operation> (RFC 7030 3.2.2): the
 * operation's route, the label into `label`; NULL when it is not one.
 */
static const struct route *labelled_route(const char *path, char *label, size_t cap)
{
    static const char prefix[] = "/.well-known/est/";
    const char *seg = path + sizeof(prefix) - 1, *slash;
    char op[64];
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0) return NULL;
    slash = strchr(seg, '/');
    if (!slash || (size_t)(slash - seg) >= cap || slash == seg) return NULL;
    memcpy(label, seg, (size_t)(slash - seg));
    label[slash - seg] = '\0';
    if (!kf_id_valid(label)) {
        label[0] = '\0';
        return NULL;
    }
    snprintf(op, sizeof(op), "%s%s", prefix, slash + 1);
    for (size_t i = 0; i < 4; i++) /* the EST routes come first */
        if (strcmp(routes[i].path, op) == 0) return &routes[i];
    label[0] = '\0';
    return NULL;
}

/* Whether `label` names a group enrollment (in the registry as the store has it now). */
static int label_known(struct kf_prov_service *svc, const char *label)
{
    struct kf_snapshot *reg = kf_snapshot_fresh(svc->snapshot, svc->deploy);
    int found = kf_snapshot_group_named(reg, label) != NULL;
    kf_snapshot_release(reg);
    return found;
}

/*
 * Whose operational certificate `c` presented, if it stands now: a device's (1) or a keyfleet
 * service's (2), its name into `id`; 0 for none (no certificate, a factory one, one that does not
 * verify, or a revoked or disabled identity).
 */
static int operational_peer(struct conn *c, const struct kf_snapshot *reg, char *id, size_t cap)
{
    struct kf_cert *leaf = NULL, *chain[KF_PROV_CHAIN_MAX];
    char serial[KF_SERIAL_HEX_MAX];
    size_t n = 0;
    int kind = 0;

    if (kf_tls_peer(bufferevent_openssl_get_ssl(c->head.bev), &leaf, chain, KF_PROV_CHAIN_MAX,
                    &n) == KF_OK &&
        leaf &&
        kf_trust_verify(reg->operational, leaf, chain, n, time(NULL), KF_PURPOSE_CLIENT, NULL) ==
            KF_OK) {
        kf_cert_serial_hex(leaf, serial);
        if (kf_cert_uri_san(leaf, KF_URN_DEVICE, id, cap) == KF_OK)
            kind = 1;
        else if (kf_cert_uri_san(leaf, KF_URN_SERVICE, id, cap) == KF_OK)
            kind = 2;
        if (kind &&
            (kf_snapshot_blocked(reg, kind == 2, id) || kf_snapshot_cert_revoked(reg, serial)))
            kind = 0;
    }
    kf_err_clear();
    kf_cert_free(leaf);
    for (size_t i = 0; i < n; i++)
        kf_cert_free(chain[i]);
    return kind;
}

/*
 * Whether `c` may read /metrics: from [provisioning] metrics_allow (default: loopback), or with a
 * keyfleet service certificate that stands (metrics_certificate). The metrics tell the fleet's
 * size and load, refusal counts, the CRL's age: not for anyone who can reach the port.
 */
static int metrics_allowed(struct conn *c, const struct kf_snapshot *reg)
{
    char name[KF_ID_MAX + 1];
    if (kf_conf_nets_match(&reg->cfg.provisioning.metrics_allow, c->head.ip_text, 0)) return 1;
    return reg->cfg.provisioning.metrics_certificate &&
           operational_peer(c, reg, name, sizeof(name)) == 2;
}

static void serve_metrics(struct conn *c)
{
    struct kf_prov_service *svc = c->l->svc;
    struct kf_metrics *all[KF_METRICS_WORKERS_MAX];
    struct kf_metrics_gauges g;
    struct kf_store_stats st;
    struct kf_buf out;
    size_t n = 0;

    for (size_t i = 0; i < svc->n_listeners && n < KF_METRICS_WORKERS_MAX; i++)
        if (svc->listeners[i]) all[n++] = &svc->listeners[i]->metrics;
    memset(&g, 0, sizeof(g));
    g.connections_open = kf_limits_connections(svc->limits);
    g.handshakes_in_flight = kf_limits_handshakes(svc->limits);
    kf_store_stats(svc->deploy->store, &st);
    g.store_queue_depth = st.queued;
    g.store_writes = st.writes;
    g.store_commits = st.commits;
    if (svc->gauges_cb) svc->gauges_cb(svc->gauges_arg, &g); /* the rest of keyfleetd's (the hub) */
    {
        struct kf_snapshot *reg = kf_snapshot_get(svc->snapshot);
        if (reg->crl) {
            g.crl_number = (uint64_t)kf_crl_number(reg->crl);
            g.crl_next_update = (uint64_t)kf_crl_next_update(reg->crl);
        }
        kf_snapshot_release(reg);
    }
    kf_buf_init(&out, KF_METRICS_RENDER_MAX);
    if (kf_metrics_render(all, n, &g, &out) == KF_OK)
        send_response(c, 200, KF_METRICS_CONTENT_TYPE, NULL, out.data, out.len);
    else
        send_refusal(c, 500, KF_REFUSAL_INTERNAL_ERROR, "cannot render the metrics", 0);
    kf_buf_free(&out);
}

/* ---- signed updates: the repository's files, to devices and services ---- */

#define DL_CHUNK          65536 /* read from the file at a time */
#define KF_HARDWARE_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
#define DL_LOW            (256 * 1024) /* refilled when less than this is waiting to be sent */

/* Gives back the download slot and the file. */
/* ---- downloads per identity ---- */

struct dl_rec {
    struct kf_hnode node;
    unsigned n;
    char key[KF_ID_MAX + 3]; /* "d:" device, "s:" service */
};

struct kf_prov_dl_ids {
    pthread_mutex_t lock;
    struct kf_htab t;
};

enum kf_err kf_prov_service_init(struct kf_prov_service *svc)
{
    svc->dl_ids = calloc(1, sizeof(*svc->dl_ids));
    if (!svc->dl_ids) return kf_fail(KF_E_NOMEM, "out of memory");
    pthread_mutex_init(&svc->dl_ids->lock, NULL);
    return KF_OK;
}

void kf_prov_service_free(struct kf_prov_service *svc)
{
    struct kf_prov_dl_ids *ids = svc->dl_ids;
    if (!ids) return;
    for (size_t i = 0; i < ids->t.n_slots; i++)
        while (ids->t.slots[i]) {
            struct kf_hnode *n = ids->t.slots[i];
            kf_htab_remove(&ids->t, n);
            free(n);
        }
    kf_htab_free(&ids->t);
    pthread_mutex_destroy(&ids->lock);
    free(ids);
    svc->dl_ids = NULL;
}

/* One more download to `key`: 1, or 0 when it has `cap` going already (or memory is out). */
static int dl_id_take(struct kf_prov_service *svc, const char *key, unsigned cap)
{
    struct kf_prov_dl_ids *ids = svc->dl_ids;
    size_t len = strlen(key);
    uint64_t h = kf_hash_bytes((const uint8_t *)key, len);
    struct dl_rec *r;
    int ok = 0;
    if (!ids) return 1; /* no accounting (a listener made without kf_prov_service_init) */
    pthread_mutex_lock(&ids->lock);
    r = (struct dl_rec *)kf_htab_find(&ids->t, (const uint8_t *)key, len, h);
    if (!r && (r = calloc(1, sizeof(*r))) != NULL) {
        snprintf(r->key, sizeof(r->key), "%s", key);
        r->node.key = (const uint8_t *)r->key;
        r->node.klen = len;
        r->node.hash = h;
        if (kf_htab_insert(&ids->t, &r->node) != 0) {
            free(r);
            r = NULL;
        }
    }
    if (r && r->n < cap) {
        r->n++;
        ok = 1;
    }
    if (r && !r->n) { /* made for nothing */
        kf_htab_remove(&ids->t, &r->node);
        free(r);
    }
    pthread_mutex_unlock(&ids->lock);
    return ok;
}

static void dl_id_give(struct kf_prov_service *svc, const char *key)
{
    struct kf_prov_dl_ids *ids = svc->dl_ids;
    size_t len = strlen(key);
    struct dl_rec *r;
    if (!ids) return;
    pthread_mutex_lock(&ids->lock);
    r = (struct dl_rec *)kf_htab_find(&ids->t, (const uint8_t *)key, len,
                                      kf_hash_bytes((const uint8_t *)key, len));
    if (r && r->n && --r->n == 0) {
        kf_htab_remove(&ids->t, &r->node);
        free(r);
    }
    pthread_mutex_unlock(&ids->lock);
}

static void dl_end(struct conn *c)
{
    if (!c->dl_open) return;
    close(c->dl_fd);
    c->dl_open = 0;
    c->dl_fd = -1;
    __atomic_fetch_sub(&c->l->svc->downloads, 1, __ATOMIC_RELAXED);
    dl_id_give(c->l->svc, c->dl_key);
    if (c->head.bev) bufferevent_setwatermark(c->head.bev, EV_WRITE, 0, 0);
}

/* Queues more of the file while little is waiting; the request ends with its last byte. */
static void dl_refill(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->head.bev);
    while (c->dl_left && evbuffer_get_length(out) < DL_LOW) {
        struct evbuffer_iovec v;
        size_t want = c->dl_left < DL_CHUNK ? (size_t)c->dl_left : DL_CHUNK;
        ssize_t got;
        if (evbuffer_reserve_space(out, (ev_ssize_t)want, &v, 1) < 1) break;
        got = pread(c->dl_fd, v.iov_base, want, (off_t)c->dl_off);
        if (got <= 0) {
            /* The file changed under us: the answer cannot be finished. The connection is closed
             * from the timer, not here: the caller may still be using it. */
            kf_log(KF_LOG_WARN, "http", "an update file could not be read", "path", c->path, NULL);
            dl_end(c);
            c->busy = 0;
            c->closing = 1;
            c->abort = 1;
            event_active(c->head.timer, EV_TIMEOUT, 0);
            return;
        }
        v.iov_len = (size_t)got;
        evbuffer_commit_space(out, &v, 1);
        c->dl_off += (uint64_t)got;
        c->dl_left -= (uint64_t)got;
    }
    if (c->dl_left) {
        /* A reader too slow to take DL_LOW bytes within the request deadline holds no slot. */
        arm_deadline(c);
        return;
    }
    dl_end(c);
    /* The last bytes may still wait in the output: a reader that never takes them is cut off at
     * the deadline all the same (timeout_cb closes an idle connection). */
    arm_deadline(c);
    request_done(c, c->dl_status);
}

/*
 * A Range header (RFC 9110 14.2): one range, "bytes=first-last", "first-" or "-suffix". 1 with
 * [*first, *last] (inclusive, within `size`); 0 when there is none or it is not one this
 * server takes (then the whole file is sent, as the RFC allows); -1 when it cannot be satisfied.
 */
static int parse_range(const char *v, uint64_t size, uint64_t *first, uint64_t *last)
{
    unsigned long long a = 0, b = 0;
    int has_a = 0, has_b = 0;
    const char *p;
    if (!v || strncmp(v, "bytes=", 6) != 0 || strchr(v, ',')) return 0;
    p = v + 6;
    for (; *p >= '0' && *p <= '9'; p++, has_a = 1) {
        if (a > (~0ULL - 9) / 10) return 0;
        a = a * 10 + (unsigned)(*p - '0');
    }
    if (*p++ != '-') return 0;
    for (; *p >= '0' && *p <= '9'; p++, has_b = 1) {
        if (b > (~0ULL - 9) / 10) return 0;
        b = b * 10 + (unsigned)(*p - '0');
    }
    if (*p || (!has_a && !has_b) || (has_a && has_b && b < a)) return 0;
    if (!has_a) { /* the last b bytes */
        if (b == 0 || size == 0) return -1;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (a >= size) return -1;
    *first = a;
    *last = has_b && b < size ? b : size - 1;
    return 1;
}

/* The file a /updates/ path names in the repository, or 0 (not a name the repository has). */
static int update_file(const struct kf_prov_service *svc, const char *path, char *out, size_t cap,
                       int *metadata)
{
    static const char meta[] = "/updates/metadata/", tgt[] = "/updates/targets/";
    const char *name;
    *metadata = strncmp(path, meta, sizeof(meta) - 1) == 0;
    if (!*metadata && strncmp(path, tgt, sizeof(tgt) - 1) != 0) return 0;
    name = path + (*metadata ? sizeof(meta) : sizeof(tgt)) - 1;
    /* Metadata: root.json, timestamp.json, N.root|snapshot|targets.json; targets: TUF names. */
    if (*metadata) {
        size_t digits = strspn(name, "0123456789");
        if (strcmp(name, "root.json") != 0 && strcmp(name, "timestamp.json") != 0 &&
            !(digits > 0 && digits < 19 &&
              (strcmp(name + digits, ".root.json") == 0 ||
               strcmp(name + digits, ".snapshot.json") == 0 ||
               strcmp(name + digits, ".targets.json") == 0)))
            return 0;
    } else if (!kf_tuf_name_ok(name)) {
        return 0;
    }
    return (size_t)snprintf(out, cap, "%s/updates/repo/%s/%s", svc->deploy->dir,
                            *metadata ? "metadata" : "targets", name) < cap;
}

/*
 * GET /updates/assigned?hardware=ID: the release the device is offered by a rollout for its
 * hardware (or nulls). A device is told only what it may install; it checks the signed metadata
 * before it trusts any of it. A service is offered nothing.
 */
static void serve_assigned(struct conn *c, const struct kf_http_request *req, int kind)
{
    char hardware[128] = "";
    const char *q = req->query;
    json_t *j = NULL;
    while (*q) {
        size_t n = strcspn(q, "&");
        if (n > 9 && strncmp(q, "hardware=", 9) == 0) {
            if (n - 9 >= sizeof(hardware) || strspn(q + 9, KF_HARDWARE_CHARS) < n - 9) {
                send_refusal(c, 400, KF_REFUSAL_BAD_REQUEST,
                             "hardware: letters, digits, _ - . (at most 127)", NO_EVENT);
                return;
            }
            memcpy(hardware, q + 9, n - 9);
            hardware[n - 9] = '\0';
        }
        q += n + (q[n] == '&');
    }
    if (!hardware[0]) {
        send_refusal(c, 400, KF_REFUSAL_BAD_REQUEST,
                     "say the device's hardware: /updates/assigned?hardware=ID", NO_EVENT);
        return;
    }
    if (kind != 1) {
        send_json(c, 200, json_pack("{s:n, s:n, s:n}", "rollout", "target", "version"),
                  "Cache-Control: no-store\r\n");
        return;
    }
    if (kf_rollout_assigned(c->l->svc->deploy->store, c->id, hardware, &j) != KF_OK) {
        kf_log(KF_LOG_ERROR, "provisioning", "cannot read the rollouts", "error", kf_errmsg(),
               NULL);
        kf_err_clear();
        send_refusal(c, 503, KF_REFUSAL_OVERLOADED, "the store cannot be read now; come back later",
                     NO_EVENT);
        return;
    }
    send_json(c, 200, j, "Cache-Control: no-store\r\n");
}

static void serve_update(struct conn *c, const struct kf_http_request *req)
{
    struct kf_prov_service *svc = c->l->svc;
    char path[KF_CONF_PATH_MAX + KF_HTTP_TARGET_MAX], head[512];
    uint64_t first = 0, last = 0, size;
    struct kf_snapshot *reg;
    struct stat st;
    int metadata, kind, fd, range, close_after;

    if (strcmp(req->method, "GET") != 0) {
        kf_metrics_refusal(&c->l->metrics, KF_REFUSAL_METHOD_NOT_ALLOWED);
        c->error = kf_refusal_name(KF_REFUSAL_METHOD_NOT_ALLOWED);
        send_json(c, 405,
                  json_pack("{s:s, s:s}", "error", "method_not_allowed", "message", "use GET"),
                  "Allow: GET\r\n");
        return;
    }
    reg = kf_snapshot_get(svc->snapshot);
    kind = operational_peer(c, reg, c->id, sizeof(c->id));
    kf_snapshot_release(reg);
    if (!kind) {
        c->id[0] = '\0';
        send_refusal(c, 403, KF_REFUSAL_FORBIDDEN,
                     "signed updates are served to devices and services with a certificate of "
                     "this deployment that stands",
                     EVENT_CLAIMED);
        return;
    }
    if (strcmp(req->path, "/updates/assigned") == 0) {
        serve_assigned(c, req, kind);
        return;
    }
    if (!update_file(svc, req->path, path, sizeof(path), &metadata)) {
        send_refusal(c, 404, KF_REFUSAL_NOT_FOUND, "no such update file", NO_EVENT);
        return;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        send_refusal(c, 404, KF_REFUSAL_NOT_FOUND, "no such update file", NO_EVENT);
        return;
    }
    size = (uint64_t)st.st_size;
    range = parse_range(kf_http_header(req, "Range"), size, &first, &last);
    if (range < 0) {
        char extra[64];
        close(fd);
        kf_metrics_refusal(&c->l->metrics, KF_REFUSAL_RANGE_NOT_SATISFIABLE);
        c->error = kf_refusal_name(KF_REFUSAL_RANGE_NOT_SATISFIABLE);
        snprintf(extra, sizeof(extra), "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
        send_json(c, 416,
                  json_pack("{s:s, s:s}", "error", "range_not_satisfiable", "message",
                            "the range is beyond the file"),
                  extra);
        return;
    }
    if (!range && size) last = size - 1;
    /* one identity's share first: it cannot take the slots of the others */
    snprintf(c->dl_key, sizeof(c->dl_key), "%s:%s", kind == 2 ? "s" : "d", c->id);
    if (!dl_id_take(svc, c->dl_key, svc->conf.max_downloads_per_identity)) {
        char msg[160];
        close(fd);
        snprintf(msg, sizeof(msg),
                 "this %s has %u update downloads going already "
                 "(provisioning.max_downloads_per_identity); come back later",
                 kind == 2 ? "service" : "device", svc->conf.max_downloads_per_identity);
        send_refusal(c, 429, KF_REFUSAL_RATE_LIMITED, msg, EVENT_VERIFIED);
        return;
    }
    if (__atomic_fetch_add(&svc->downloads, 1, __ATOMIC_RELAXED) >= svc->conf.max_downloads) {
        dl_id_give(svc, c->dl_key);
        __atomic_fetch_sub(&svc->downloads, 1, __ATOMIC_RELAXED);
        close(fd);
        send_refusal(c, 503, KF_REFUSAL_OVERLOADED,
                     "too many update downloads at once (provisioning.max_downloads); come back "
                     "later",
                     NO_EVENT);
        return;
    }
    close_after = c->closing || c->l->draining || __atomic_load_n(svc->draining, __ATOMIC_RELAXED);
    c->closing = close_after;
    c->dl_status = range ? 206 : 200;
    c->dl_fd = fd;
    c->dl_open = 1;
    c->dl_off = first;
    c->dl_left = size ? last - first + 1 : 0;
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %llu\r\n"
             "Accept-Ranges: bytes\r\n%s%s",
             c->dl_status, kf_http_reason(c->dl_status),
             metadata ? "application/json" : "application/octet-stream",
             (unsigned long long)c->dl_left, metadata ? "Cache-Control: no-store\r\n" : "",
             close_after ? "Connection: close\r\n" : "");
    bufferevent_write(c->head.bev, head, strlen(head));
    if (range)
        evbuffer_add_printf(bufferevent_get_output(c->head.bev),
                            "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)first,
                            (unsigned long long)last, (unsigned long long)size);
    bufferevent_write(c->head.bev, "\r\n", 2);
    bufferevent_setwatermark(c->head.bev, EV_WRITE, DL_LOW, 0);
    dl_refill(c);
}

static void dispatch(struct conn *c, const struct kf_http_request *req)
{
    struct kf_prov_service *svc = c->l->svc;
    const struct route *r = NULL;
    unsigned wait;

    for (size_t i = 0; i < KF_ARRAY_LEN(routes); i++)
        if (strcmp(routes[i].path, req->path) == 0) r = &routes[i];
    c->label[0] = '\0';
    if (!r) r = labelled_route(req->path, c->label, sizeof(c->label));
    c->ep = r ? r->ep : KF_EP_OTHER;
    if (!r && strncmp(req->path, "/updates/", 9) == 0) c->ep = KF_EP_UPDATES;
    if (c->l->draining || __atomic_load_n(svc->draining, __ATOMIC_RELAXED)) {
        c->closing = 1;
        send_refusal(c, 503, KF_REFUSAL_OVERLOADED, "keyfleetd is shutting down", 0);
        return;
    }
    wait = kf_limits_request(svc->limits, &c->head.ip, kf_now_ms());
    if (wait) {
        char extra[64];
        kf_metrics_refusal(&c->l->metrics, KF_REFUSAL_RATE_LIMITED);
        c->error = kf_refusal_name(KF_REFUSAL_RATE_LIMITED);
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", wait);
        send_json(c, 429,
                  json_pack("{s:s, s:s}", "error", "rate_limited", "message",
                            "too many requests from this address; slow down"),
                  extra);
        return;
    }
    if (c->ep == KF_EP_UPDATES) {
        serve_update(c, req);
        return;
    }
    if (!r) {
        send_refusal(c, 404, KF_REFUSAL_NOT_FOUND, "no such endpoint", 0);
        return;
    }
    if (c->label[0] && !label_known(svc, c->label)) {
        char msg[KF_ID_MAX + 96];
        snprintf(msg, sizeof(msg), "no CA label \"%s\": a label is the name of a group enrollment",
                 c->label);
        send_refusal(c, 404, KF_REFUSAL_NOT_FOUND, msg, 0);
        return;
    }
    if (strcmp(req->method, r->method) != 0) {
        char extra[40];
        kf_metrics_refusal(&c->l->metrics, KF_REFUSAL_METHOD_NOT_ALLOWED);
        c->error = kf_refusal_name(KF_REFUSAL_METHOD_NOT_ALLOWED);
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", r->method);
        send_json(c, 405,
                  json_pack("{s:s, s:s}", "error", "method_not_allowed", "message",
                            strcmp(r->method, "GET") == 0 ? "use GET" : "use POST"),
                  extra);
        return;
    }
    switch (r->ep) {
    case KF_EP_CACERTS:
    case KF_EP_CSRATTRS: {
        struct kf_snapshot *reg = kf_snapshot_get(svc->snapshot);
        const struct kf_buf *b = r->ep == KF_EP_CACERTS ? &reg->cacerts : &reg->csrattrs;
        send_response(c, 200, r->ep == KF_EP_CACERTS ? KF_EST_TYPE_CACERTS : KF_EST_TYPE_CSRATTRS,
                      KF_EST_HEADER_CTE, b->data, b->len);
        kf_snapshot_release(reg);
        return;
    }
    case KF_EP_HEALTHZ: send_json(c, 200, json_pack("{s:s}", "status", "ok"), NULL); return;
    case KF_EP_METRICS: {
        struct kf_snapshot *reg = kf_snapshot_get(svc->snapshot);
        int allowed = metrics_allowed(c, reg);
        kf_snapshot_release(reg);
        if (!allowed) {
            send_refusal(c, 403, KF_REFUSAL_FORBIDDEN,
                         "/metrics is served to provisioning.metrics_allow and to clients with a "
                         "keyfleet service certificate (provisioning.metrics_certificate)",
                         NO_EVENT);
            return;
        }
        serve_metrics(c);
        return;
    }
    case KF_EP_SIMPLEENROLL: provision(c, req, KF_PROV_SIMPLEENROLL); return;
    case KF_EP_SIMPLEREENROLL: provision(c, req, KF_PROV_SIMPLEREENROLL); return;
    case KF_EP_REGISTER: provision(c, req, KF_PROV_REGISTER); return;
    default: send_refusal(c, 404, KF_REFUSAL_NOT_FOUND, "no such endpoint", 0); return;
    }
}

/* Parses and answers the next request in the input, if a whole one is there. */
static void process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->head.bev);
    struct kf_http_request req;
    const char *why = NULL;
    size_t len = evbuffer_get_length(in), used;
    unsigned char *data;
    int status = 0;
    enum kf_http_status s;

    if (c->busy || c->closing || len == 0) return;
    data = evbuffer_pullup(in, -1);
    s = kf_http_parse(data, len, &c->l->svc->conf.http, &req, &status, &why);
    if (s == KF_HTTP_PARTIAL) return;
    evtimer_del(c->head.timer);
    c->busy = 1;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->id[0] = c->serial[0] = c->hub[0] = '\0';
    c->error = NULL;
    if (s == KF_HTTP_BAD) {
        snprintf(c->method, sizeof(c->method), "-");
        snprintf(c->path, sizeof(c->path), "-");
        c->ep = KF_EP_OTHER;
        c->closing = 1; /* what follows a bad request cannot be trusted to be a request */
        if (kf_log_enabled(KF_LOG_DEBUG)) {
            char raw[120], head[200];
            size_t n = len < sizeof(raw) - 1 ? len : sizeof(raw) - 1;
            memcpy(raw, data, n);
            raw[n] = '\0';
            kf_text_quote(head, sizeof(head), raw);
            kf_log(KF_LOG_DEBUG, "http", "bad request", "why", why, "ip", c->head.ip_text, "start",
                   head, NULL);
        }
        send_refusal(c, status,
                     status == 413   ? KF_REFUSAL_BODY_TOO_LARGE
                     : status == 431 ? KF_REFUSAL_HEADER_TOO_LARGE
                                     : KF_REFUSAL_BAD_REQUEST,
                     why, 0);
        evbuffer_drain(in, len);
        return;
    }
    snprintf(c->method, sizeof(c->method), "%s", req.method);
    snprintf(c->path, sizeof(c->path), "%s", req.path);
    if (!req.keep_alive) c->closing = 1;
    used = req.head_len + req.content_length;
    dispatch(c, &req);
    /* Everything the request pointed into is no longer needed: handlers copied what they keep. */
    evbuffer_drain(in, used);
}

/* ---- connections ---- */

static void conn_free(struct conn *c)
{
    struct kf_prov_listener *l = c->l;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    l->n_conns--;
    kf_conn_release(&c->head);
    free(c);
    if (l->draining && l->n_conns == 0 && l->idle_cb) l->idle_cb(l->idle_arg);
}

/* Ends a connection: now, or when its store job comes back. */
static void conn_close(struct conn *c)
{
    if (c->head.handshake_pending) kf_metrics_handshake(&c->l->metrics, KF_HANDSHAKE_FAILED);
    if (c->head.bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->head.bev);
        if (ssl && !c->head.handshake_pending) SSL_shutdown(ssl);
        bufferevent_free(c->head.bev);
        c->head.bev = NULL;
    }
    if (c->head.timer) evtimer_del(c->head.timer);
    if (c->dl_open) { /* a download has no job out: nothing to wait for */
        dl_end(c);
        c->busy = 0;
    }
    if (c->busy) {
        c->dead = 1; /* wake_cb frees it */
        return;
    }
    conn_free(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    size_t cap = c->l->svc->conf.http.max_head + c->l->svc->conf.http.max_body;
    process(c);
    /* Bounded input: never hold more than one request's worth while busy. */
    if (c->head.bev && evbuffer_get_length(bufferevent_get_input(bev)) > cap)
        bufferevent_disable(bev, EV_READ);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->dl_open) {
        dl_refill(c);
        return;
    }
    if (c->busy) return;
    if (c->closing) {
        conn_close(c);
        return;
    }
    /* Ready for the next request, under a fresh deadline. */
    bufferevent_enable(bev, EV_READ);
    arm_deadline(c);
    process(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        kf_conn_handshake_done(&c->head);
        kf_metrics_handshake(&c->l->metrics,
                             kf_tls_resumed(ssl) ? KF_HANDSHAKE_RESUMED : KF_HANDSHAKE_FULL);
        /* The rest of the request's deadline, which counts from the accept. */
        kf_conn_arm(&c->head, c->head.timer, c->l->svc->conf.accept.first_deadline_ms);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (c->head.handshake_pending && kf_log_enabled(KF_LOG_DEBUG)) {
            char why[128];
            kf_tls_error(why, sizeof(why));
            kf_log(KF_LOG_DEBUG, "tls", "handshake failed", "ip", c->head.ip_text, "error", why,
                   NULL);
        }
        ERR_clear_error();
        conn_close(c);
    }
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->abort) {
        conn_close(c);
        return;
    }
    kf_metrics_refusal(&c->l->metrics, KF_REFUSAL_REQUEST_TIMEOUT);
    if (c->head.handshake_pending || c->busy) {
        conn_close(c);
        return;
    }
    /* A slow client: tell it why, then drop it. */
    snprintf(c->method, sizeof(c->method), "-");
    snprintf(c->path, sizeof(c->path), "-");
    c->ep = KF_EP_OTHER;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->busy = 1;
    c->closing = 1;
    c->id[0] = c->serial[0] = c->hub[0] = '\0';
    c->error = NULL;
    if (evbuffer_get_length(bufferevent_get_input(c->head.bev)) == 0) {
        /* an idle keep-alive connection: nothing to answer */
        c->busy = 0;
        conn_close(c);
        return;
    }
    c->error = kf_refusal_name(KF_REFUSAL_REQUEST_TIMEOUT);
    send_json(c, 408,
              json_pack("{s:s, s:s}", "error", "request_timeout", "message",
                        "the request took too long to arrive"),
              NULL);
}

/* A connection net/accept let in: one of this listener's. */
static void opened(void *arg, struct kf_conn *head)
{
    struct kf_prov_listener *l = arg;
    struct conn *c = (struct conn *)head;
    c->l = l;
    c->next = l->conns;
    if (l->conns) l->conns->prev = c;
    l->conns = c;
    l->n_conns++;
}

static void refused(void *arg, enum kf_accept_refusal why)
{
    struct kf_prov_listener *l = arg;
    kf_metrics_refusal(&l->metrics, KF_REFUSAL_CONNECTION_LIMIT);
}

/* No ClientHello by the hello deadline, or no TLS state for it. */
static void failed(struct kf_conn *head, int timed_out)
{
    struct conn *c = (struct conn *)head;
    if (timed_out) kf_metrics_refusal(&c->l->metrics, KF_REFUSAL_REQUEST_TIMEOUT);
    conn_close(c);
}

static const struct kf_accept_ops accept_ops = {
    .module = "provisioning",
    .conn_size = sizeof(struct conn),
    .opened = opened,
    .refused = refused,
    .failed = failed,
    .read_cb = read_cb,
    .write_cb = write_cb,
    .event_cb = event_cb,
    .timer_cb = timeout_cb,
};

/* ---- the listener ---- */

enum kf_err kf_prov_listener_new(struct kf_prov_service *svc, struct event_base *base,
                                 evutil_socket_t fd, void (*idle_cb)(void *), void *idle_arg,
                                 struct kf_prov_listener **out)
{
    struct kf_prov_listener *l = calloc(1, sizeof(*l));
    enum kf_err rc;

    *out = NULL;
    if (!l) {
        evutil_closesocket(fd);
        return kf_fail(KF_E_NOMEM, "out of memory");
    }
    l->svc = svc;
    l->base = base;
    l->idle_cb = idle_cb;
    l->idle_arg = idle_arg;
    pthread_mutex_init(&l->lock, NULL);
    kf_metrics_init(&l->metrics);
    l->wake = event_new(base, -1, EV_PERSIST, wake_cb, l);
    if (!l->wake) {
        evutil_closesocket(fd);
        kf_prov_listener_free(l);
        return kf_fail(KF_E_NOMEM, "out of memory");
    }
    event_add(l->wake, NULL);
    rc = kf_acceptor_new(base, fd, svc->limits, svc->tls, &svc->conf.accept, &accept_ops, l,
                         &l->acceptor);
    if (rc) {
        kf_prov_listener_free(l);
        return rc;
    }
    *out = l;
    return KF_OK;
}

void kf_prov_listener_drain(struct kf_prov_listener *l)
{
    struct conn *c, *next;
    l->draining = 1;
    kf_acceptor_pause(l->acceptor);
    /* Idle connections go now; busy ones after their answer (send_response closes them). */
    for (c = l->conns; c; c = next) {
        next = c->next;
        if (!c->head.bev ||
            (!c->busy && evbuffer_get_length(bufferevent_get_output(c->head.bev)) == 0))
            conn_close(c);
    }
    if (l->n_conns == 0 && l->idle_cb) l->idle_cb(l->idle_arg);
}

size_t kf_prov_listener_conns(const struct kf_prov_listener *l)
{
    return l ? l->n_conns : 0;
}

void kf_prov_listener_free(struct kf_prov_listener *l)
{
    if (!l) return;
    /* Jobs the store finished after the loop ended (the store is closed before this). */
    wake_cb(-1, 0, l);
    l->idle_cb = NULL;
    while (l->conns) {
        struct conn *c = l->conns;
        c->busy = 0;
        conn_close(c);
    }
    kf_acceptor_free(l->acceptor);
    l->acceptor = NULL;
    if (l->wake) event_free(l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
