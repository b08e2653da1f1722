/*
 * keyfleet-sim: N virtual devices through the real protocols, for demos, tests and load.
 *
 *   keyfleet-sim --devices N --provisioning URL --trust ROOT [--factory-ca CERT --factory-ca-key
 * KEY]
 *
 * Each device gets a factory identity under the factory CA (made in --dir when none is given),
 * provisions with POST /api/v1/register over mutual TLS, connects to its assigned hub (MQTT over
 * mutual TLS, libkeyfleet's client), publishes telemetry at a rate, reports an occasional
 * security event, and renews (EST simplereenroll) when asked to. Worker threads each drive a
 * share of the devices: blocking for provisioning and handshakes, one poll loop for the MQTT
 * traffic. A progress line goes to stderr; a summary to stdout at the end.
 *
 * Exit status: 0 when every device provisioned and connected, 1 otherwise, 2 for a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/file.h"
#include "common/hostport.h"
#include "common/log.h"
#include "common/ossl.h"
#include "common/pki_cert.h"
#include "common/pki_csr.h"
#include "common/pki_key.h"
#include "common/timefmt.h"
#include "common/est.h"
#include "device/device_priv.h"
#include "device/https_client.h"
#include "device/tls_client.h"
#include "keyfleet/mqtt_client.h"
#include "keyfleet/update.h"

#define RX_CAP  4096
#define TX_CAP  4096
#define Q_CAP   16384
#define LAT_MAX (1 << 20)

static const char usage[] =
    "usage: keyfleet-sim --devices N --provisioning URL --trust ROOT.pem [options]\n"
    "\n"
    "Runs N virtual devices through keyfleet's real protocols: a factory identity each,\n"
    "provisioning (POST /api/v1/register over mutual TLS), the assigned hub (MQTT over mutual\n"
    "TLS), telemetry, security events, renewal, and signed updates offered by rollouts. Prints\n"
    "a progress line and a summary.\n"
    "\n"
    "  --devices N          virtual devices (default 100)\n"
    "  --provisioning URL   keyfleetd's provisioning endpoint (https://host:port)\n"
    "  --trust FILE         the deployment's root certificate (ca/root.crt)\n"
    "  --hub HOST:PORT      connect here instead of the assigned hub\n"
    "  --factory-ca FILE    the factory CA certificate (with --factory-ca-key); without it a\n"
    "                       factory CA is made in --dir and must be enrolled as a group\n"
    "  --factory-ca-key FILE\n"
    "  --dir DIR            where a made factory CA is kept, and the devices' update state\n"
    "                       (DIR/devices/ID) (default ./keyfleet-sim)\n"
    "  --prefix TEXT        device ids are PREFIX-0001, ... (default sim)\n"
    "  --duration SECONDS   how long devices stay connected (default 10)\n"
    "  --rate MSGS          telemetry messages per second per device (default 0.5)\n"
    "  --qos 0|1            telemetry QoS (default 1)\n"
    "  --event-every S      each device reports a security event every S seconds (default 30;\n"
    "                       0: none)\n"
    "  --renew-after S      each device renews S to 1.5 S seconds after it connected\n"
    "                       (default: never)\n"
    "  --threads N          worker threads (default 8)\n"
    "  --mqtt 4|5           MQTT 3.1.1 or 5 (default 4)\n"
    "  --update-root FILE   take part in rollouts: the vendor's TUF root the devices ship\n"
    "                       with; each verifies what it is offered (keyfleet/update.h),\n"
    "                       downloads it, \"installs\" it and confirms it, reporting each step\n"
    "  --hardware ID        the devices' hardware id (default sim)\n"
    "  --update-fail PCT    share of devices whose install fails (update.failed; default 0)\n"
    "  --update-unconfirmed PCT\n"
    "                       share that install but never confirm (update.reverted; default 0)\n"
    "  --confirm-within S   seconds from installed to confirmed or reverted (default 1)\n"
    "  --json               the summary as JSON\n"
    "  --quiet              no progress line\n"
    "  --make-factory-ca    only make the factory CA in --dir, print its paths, and exit\n";

static struct {
    long devices, threads;
    const char *url, *trust, *hub, *ca_cert, *ca_key, *dir, *prefix, *update_root, *hardware;
    double duration, rate, event_every, renew_after, update_fail, update_unconfirmed,
        confirm_within;
    int qos, mqtt, json, quiet, make_ca;
} o = {100, 8, NULL, NULL, NULL, NULL, NULL, "keyfleet-sim", "sim", NULL, "sim", 10, 0.5, 30, -1, 0,
       0,   1, 1,    4,    0,    0,    0};

/* counters shared by the threads */
static atomic_long n_identities, n_provisioned, n_prov_refused, n_prov_failed, n_connected,
    n_connect_failed, n_published, n_acked, n_events, n_renewed, n_renew_failed, n_disconnects,
    n_throttled, n_up_confirmed, n_up_failed, n_up_reverted, n_up_checks, n_up_errors;
static atomic_int stop_flag;
static volatile sig_atomic_t interrupted;

/* latencies in ms, appended under a lock */
struct lat {
    pthread_mutex_t lock;
    double *v;
    size_t n;
};
static struct lat lat_prov = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};
static struct lat lat_connect = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};
static struct lat lat_ack = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static struct kf_cert *factory_ca;
static struct kf_key *factory_ca_key;
static struct kf_buf trust_pem;
static char prov_host[256], prov_prefix[256];
static int prov_port;
static double t0;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ms(void)
{
    return (uint64_t)(now_s() * 1000.0);
}

static void lat_add(struct lat *l, double ms)
{
    pthread_mutex_lock(&l->lock);
    if (l->n < LAT_MAX) l->v[l->n++] = ms;
    pthread_mutex_unlock(&l->lock);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(struct lat *l, double p)
{
    size_t i;
    if (!l->n) return 0;
    qsort(l->v, l->n, sizeof(double), cmp_double);
    i = (size_t)(p * (double)(l->n - 1) + 0.5);
    return l->v[i];
}

struct vdev {
    char id[64];
    struct kf_key *fkey, *okey;
    struct kf_buf fchain, ochain;
    char hub_host[256];
    int hub_port;
    struct kf_tlsc *tls;
    struct kf_tlsc_conn *conn;
    struct kf_mqttc m;
    uint8_t rx[RX_CAP], tx[TX_CAP], q[Q_CAP];
    char topic_tel[128], topic_ev[128], sub[128];
    const char *subs[2];
    double next_pub, next_event, renew_at;
    double sent_at[64]; /* by tag % 64: when a QoS 1 message was queued */
    uint32_t seq;
    int up, dead;
    /* signed updates (--update-root) */
    char sub_up[128], dir[1100];
    int check;         /* to ask keyfleetd what it is offered */
    double check_at;   /* not before */
    double confirm_at; /* an installed release is confirmed (or reverted) then; 0: none */
    int64_t pending, failed_version;
    char pending_name[256];
};

static void delivered_cb(void *ctx, uint32_t tag, uint8_t reason)
{
    struct vdev *v = ctx;
    if (tag & 0x80000000u) return; /* an event */
    atomic_fetch_add(&n_acked, 1);
    if (o.qos == 1 && v->sent_at[tag % 64] > 0) {
        lat_add(&lat_ack, (now_s() - v->sent_at[tag % 64]) * 1000.0);
        v->sent_at[tag % 64] = 0;
    }
}

static void connected_cb(void *ctx, int sp)
{
    struct vdev *v = ctx;
    (void)sp;
    v->up = 1;
    /* a device that was away asks what it is offered as soon as it is back */
    v->check = o.update_root != NULL;
    v->check_at = 0;
}

/* devices/<id>/updates/available: keyfleetd offers a release; the device asks (and checks). */
static void message_cb(void *ctx, const char *topic, size_t tlen, const uint8_t *payload,
                       size_t len)
{
    struct vdev *v = ctx;
    size_t n = strlen(v->sub_up) - 1;
    (void)payload;
    (void)len;
    if (o.update_root && tlen > n && memcmp(topic, v->sub_up, n) == 0) {
        v->check = 1;
        v->check_at = 0;
    }
}

/* A factory identity: a P-256 key and a certificate under the factory CA, CN = the id. */
static enum kf_err make_identity(struct vdev *v, long i)
{
    struct kf_cert_template t;
    struct kf_cert *c = NULL;
    enum kf_err rc;
    time_t now = time(NULL);
    snprintf(v->id, sizeof(v->id), "%s-%04ld", o.prefix, i + 1);
    kf_buf_init(&v->fchain, 8192);
    kf_buf_init(&v->ochain, 16384);
    rc = kf_key_generate(KF_KEY_EC_P256, &v->fkey);
    if (rc) return rc;
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_DEVICE;
    t.cn = v->id;
    t.device_id = v->id;
    t.key = v->fkey;
    t.not_before = now - 3600;
    t.not_after = now + 365 * 86400;
    rc = kf_cert_build(&t, factory_ca, factory_ca_key, &c);
    if (!rc) rc = kf_cert_pem(c, &v->fchain);
    kf_cert_free(c);
    if (!rc) atomic_fetch_add(&n_identities, 1);
    return rc;
}

/* register (first time) or simplereenroll (renewal) with a fresh key; fills ochain/okey/hub */
static int enroll(struct vdev *v, int renewal)
{
    struct kf_tlsc *tls = NULL;
    struct kf_key *key = NULL;
    struct kf_buf csr;
    struct kf_https_response r;
    char problem[256];
    double start = now_s();
    enum kf_err rc;
    int ok = 0;

    kf_buf_init(&csr, 8192);
    memset(&r, 0, sizeof(r));
    kf_buf_init(&r.body, 1);
    rc = kf_key_generate(KF_KEY_EC_P256, &key);
    if (!rc) rc = kf_csr_create(key, v->id, &csr);
    if (!rc)
        rc = renewal ? kf_tlsc_new((const char *)v->ochain.data, v->ochain.len, v->okey,
                                   (const char *)trust_pem.data, trust_pem.len, &tls)
                     : kf_tlsc_new((const char *)v->fchain.data, v->fchain.len, v->fkey,
                                   (const char *)trust_pem.data, trust_pem.len, &tls);
    if (rc) goto out;
    for (int attempt = 0; attempt < 20; attempt++) {
        kf_buf_free(&r.body);
        rc = kf_enroll_post(tls, prov_host, prov_port, prov_prefix,
                            renewal ? "simplereenroll" : "register", &csr, 15000, &r, problem,
                            sizeof(problem));
        if (rc || (r.status != 429 && r.status != 503) || atomic_load(&stop_flag)) break;
        atomic_fetch_add(&n_throttled, 1);
        /* as the server asks, and a little more so that the fleet does not come back at once */
        usleep((useconds_t)(r.retry_after_s ? r.retry_after_s : 1) * 1000000u +
               (useconds_t)(rand() % 1000) * 1000u);
    }
    if (rc) {
        kf_log(KF_LOG_WARN, "sim", renewal ? "renewal failed" : "provisioning failed", "device",
               v->id, "error", kf_errmsg(), NULL);
        atomic_fetch_add(renewal ? &n_renew_failed : &n_prov_failed, 1);
        goto out;
    }
    if (r.status != 200) {
        kf_log(KF_LOG_WARN, "sim", "refused", "device", v->id, "answer", kf_buf_str(&r.body), NULL);
        atomic_fetch_add(renewal ? &n_renew_failed : &n_prov_refused, 1);
        goto out;
    }
    kf_buf_reset(&v->ochain);
    if (!renewal) {
        json_t *j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
        const char *cert = json_string_value(json_object_get(j, "certificate"));
        const char *hub = json_string_value(json_object_get(j, "hub"));
        if (cert) kf_buf_append_str(&v->ochain, cert);
        if (o.hub) hub = o.hub;
        if (!cert || !hub ||
            kf_hostport_split(hub, "the hub", v->hub_host, sizeof(v->hub_host), &v->hub_port)) {
            kf_log(KF_LOG_WARN, "sim", "no certificate or hub in the answer", "device", v->id,
                   NULL);
            atomic_fetch_add(&n_prov_failed, 1);
            json_decref(j);
            goto out;
        }
        json_decref(j);
    } else {
        kf_est_certs_pem(&r.body, &v->ochain);
        if (!v->ochain.len) {
            atomic_fetch_add(&n_renew_failed, 1);
            goto out;
        }
    }
    kf_key_free(v->okey);
    v->okey = key;
    key = NULL;
    kf_tlsc_free(v->tls);
    v->tls = NULL;
    if (kf_tlsc_new((const char *)v->ochain.data, v->ochain.len, v->okey,
                    (const char *)trust_pem.data, trust_pem.len, &v->tls)) {
        kf_log(KF_LOG_WARN, "sim", "unusable certificate", "device", v->id, "error", kf_errmsg(),
               NULL);
        atomic_fetch_add(renewal ? &n_renew_failed : &n_prov_failed, 1);
        goto out;
    }
    ok = 1;
    if (!renewal) {
        lat_add(&lat_prov, (now_s() - start) * 1000.0);
        atomic_fetch_add(&n_provisioned, 1);
    } else {
        atomic_fetch_add(&n_renewed, 1);
    }
out:
    kf_err_clear();
    kf_key_free(key);
    kf_tlsc_free(tls);
    kf_buf_free(&csr);
    kf_buf_free(&r.body);
    return ok;
}

static int connect_dev(struct vdev *v)
{
    struct kf_mqttc_options mo;
    struct kf_mqttc_transport io = {NULL, kf_tlsc_send, kf_tlsc_recv};
    struct kf_mqttc_handlers h = {v, connected_cb, message_cb, delivered_cb, NULL};
    char problem[256];
    double start = now_s();

    if (kf_tlsc_connect(v->tls, v->hub_host, v->hub_port, 15000, &v->conn, problem,
                        sizeof(problem))) {
        kf_log(KF_LOG_WARN, "sim", "cannot connect", "device", v->id, "error", kf_errmsg(), NULL);
        kf_err_clear();
        return 0;
    }
    if (v->m.opt.client_id == NULL) {
        memset(&mo, 0, sizeof(mo));
        mo.version = (uint8_t)o.mqtt;
        mo.client_id = v->id;
        mo.keep_alive_s = 60;
        mo.clean_start = 0;
        mo.session_expiry_s = 600;
        snprintf(v->sub, sizeof(v->sub), "devices/%s/commands/#", v->id);
        snprintf(v->sub_up, sizeof(v->sub_up), "devices/%s/updates/#", v->id);
        v->subs[0] = v->sub;
        v->subs[1] = v->sub_up;
        mo.subscriptions = v->subs;
        mo.n_subscriptions = o.update_root ? 2 : 1;
        mo.sub_qos = 1;
        kf_mqttc_init(&v->m, &mo, &io, &h, v->rx, sizeof(v->rx), v->tx, sizeof(v->tx), v->q,
                      sizeof(v->q));
        snprintf(v->topic_tel, sizeof(v->topic_tel), "devices/%s/telemetry", v->id);
        snprintf(v->topic_ev, sizeof(v->topic_ev), "devices/%s/events", v->id);
    }
    v->m.io.ctx = v->conn;
    v->up = 0;
    kf_mqttc_start(&v->m, now_ms());
    while (!v->up) {
        struct pollfd p = {kf_tlsc_fd(v->conn), POLLIN, 0};
        if (kf_mqttc_step(&v->m, now_ms(), NULL) || now_s() - start > 15) {
            kf_tlsc_close(v->conn);
            v->conn = NULL;
            return 0;
        }
        if (!v->up) poll(&p, 1, 50);
    }
    lat_add(&lat_connect, (now_s() - start) * 1000.0);
    return 1;
}

/* ---- signed updates ---- */

/* An event of the update, queued on the device's MQTT session like its others. */
static int up_report(void *ctx, const char *type, const char *severity, const char *detail)
{
    struct vdev *v = ctx;
    char ev[2048];
    int n = snprintf(ev, sizeof(ev), "{\"type\":\"%s\",\"severity\":\"%s\",\"detail\":%s}", type,
                     severity, detail ? detail : "{}");
    if (n < 0 || (size_t)n >= sizeof(ev)) return -1;
    return kf_mqttc_publish(&v->m, v->topic_ev, ev, (size_t)n, 1, 0x80000000u) == KF_MQTTC_OK ? 0
                                                                                              : -1;
}

static void up_event(struct vdev *v, const char *type, const char *severity, json_t *detail)
{
    char *text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(detail);
    if (text) up_report(v, type, severity, text);
    free(text);
}

/* Whether device `v` is among the `pct` percent that `salt` picks (the same ones every run). */
static int picked(const struct vdev *v, const char *salt, double pct)
{
    uint32_t h = 2166136261u;
    for (const char *p = v->id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = salt; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (double)(h % 10000) < pct * 100.0;
}

static void up_link(struct vdev *v, struct kf_device_link *l)
{
    memset(l, 0, sizeof(*l));
    l->tls = v->tls;
    l->host = prov_host;
    l->port = prov_port;
    l->prefix = prov_prefix;
    l->dir = v->dir;
    l->timeout_ms = 15000;
    l->report = up_report;
    l->report_ctx = v;
}

/* Asks what it is offered; verifies, downloads and "installs" it; the confirmation comes later. */
static void up_check(struct vdev *v, double now)
{
    struct kf_device_link l;
    struct kf_update_offer offer;
    char path[1200];
    up_link(v, &l);
    atomic_fetch_add(&n_up_checks, 1);
    if (kf_update_check_at(&l, o.update_root, o.hardware, 0, &offer)) {
        kf_log(KF_LOG_WARN, "sim", "update check failed", "device", v->id, "error", kf_errmsg(),
               NULL);
        kf_err_clear();
        atomic_fetch_add(&n_up_errors, 1);
        v->check = 1;
        v->check_at = now + 5 + (double)(rand() % 1000) / 200.0;
        return;
    }
    if (!offer.available || offer.version == v->failed_version || v->confirm_at > 0) return;
    snprintf(path, sizeof(path), "%s/update.img", v->dir);
    if (kf_update_download_at(&l, &offer, path)) {
        kf_log(KF_LOG_WARN, "sim", "update download failed", "device", v->id, "error", kf_errmsg(),
               NULL);
        kf_err_clear();
        atomic_fetch_add(&n_up_errors, 1);
        v->check = 1; /* a broken download resumes */
        v->check_at = now + 2;
        return;
    }
    unlink(path); /* what a handler would have written to the other slot */
    up_event(v, "update.installing", "info",
             json_pack("{s:s, s:I}", "name", offer.name, "version", (json_int_t)offer.version));
    if (picked(v, "fail", o.update_fail)) {
        up_event(v, "update.failed", "critical",
                 json_pack("{s:s, s:s, s:I, s:i}", "reason", "install", "name", offer.name,
                           "version", (json_int_t)offer.version, "simulated", 1));
        v->failed_version = offer.version;
        atomic_fetch_add(&n_up_failed, 1);
        return;
    }
    up_event(v, "update.installed", "info",
             json_pack("{s:s, s:I, s:s}", "name", offer.name, "version", (json_int_t)offer.version,
                       "slot", "b"));
    v->pending = offer.version;
    snprintf(v->pending_name, sizeof(v->pending_name), "%s", offer.name);
    v->confirm_at = now + o.confirm_within;
}

/* The health check after the "restart": confirmed (the floor rises), or reverted. */
static void up_confirm(struct vdev *v)
{
    struct kf_device_link l;
    up_link(v, &l);
    v->confirm_at = 0;
    if (picked(v, "unconfirmed", o.update_unconfirmed)) {
        up_event(v, "update.reverted", "critical",
                 json_pack("{s:s, s:I, s:s, s:s}", "name", v->pending_name, "version",
                           (json_int_t)v->pending, "reason", "not_confirmed", "slot", "a"));
        v->failed_version = v->pending;
        atomic_fetch_add(&n_up_reverted, 1);
        return;
    }
    if (kf_update_installed_at(&l, v->pending)) {
        kf_err_clear();
        atomic_fetch_add(&n_up_errors, 1);
        return;
    }
    up_event(v, "update.confirmed", "info",
             json_pack("{s:s, s:I, s:s}", "name", v->pending_name, "version",
                       (json_int_t)v->pending, "slot", "b"));
    atomic_fetch_add(&n_up_confirmed, 1);
}

struct worker {
    pthread_t th;
    long first, count;
    struct vdev *devs;
};

static void traffic(struct worker *w, struct vdev *v, double now)
{
    char payload[160];
    if (o.rate > 0 && now >= v->next_pub) {
        uint32_t tag = ++v->seq;
        int n = snprintf(payload, sizeof(payload),
                         "{\"seq\":%u,\"temperature\":%.1f,\"uptime_s\":%.0f}", tag,
                         20.0 + (double)(tag % 50) / 10.0, now - t0);
        if (kf_mqttc_publish(&v->m, v->topic_tel, payload, (size_t)n, (uint8_t)o.qos, tag) ==
            KF_MQTTC_OK) {
            v->sent_at[tag % 64] = now;
            atomic_fetch_add(&n_published, 1);
        }
        v->next_pub += 1.0 / o.rate;
        if (v->next_pub < now) v->next_pub = now + 1.0 / o.rate;
    }
    if (o.event_every > 0 && now >= v->next_event) {
        static const char ev[] = "{\"type\":\"device.login_failed\",\"severity\":\"warning\","
                                 "\"detail\":{\"user\":\"root\",\"from\":\"192.0.2.1\","
                                 "\"simulated\":true}}";
        if (kf_mqttc_publish(&v->m, v->topic_ev, ev, sizeof(ev) - 1, 1, 0x80000000u) == KF_MQTTC_OK)
            atomic_fetch_add(&n_events, 1);
        v->next_event = now + o.event_every;
    }
    (void)w;
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct pollfd *pfd = calloc((size_t)w->count, sizeof(*pfd));
    long i;

    for (i = 0; i < w->count && !atomic_load(&stop_flag); i++) {
        struct vdev *v = &w->devs[i];
        if (make_identity(v, w->first + i)) {
            kf_log(KF_LOG_ERROR, "sim", "cannot make a factory identity", "error", kf_errmsg(),
                   NULL);
            v->dead = 1;
        }
    }
    for (i = 0; i < w->count && !atomic_load(&stop_flag); i++) {
        struct vdev *v = &w->devs[i];
        if (!v->dead && !enroll(v, 0)) v->dead = 1;
        if (!v->dead && o.update_root) {
            snprintf(v->dir, sizeof(v->dir), "%s/devices/%s", o.dir, v->id);
            if (mkdir(v->dir, 0700) != 0 && errno != EEXIST) {
                kf_log(KF_LOG_ERROR, "sim", "cannot make the device's directory", "dir", v->dir,
                       NULL);
                v->dead = 1;
            }
        }
    }
    for (i = 0; i < w->count && !atomic_load(&stop_flag); i++) {
        struct vdev *v = &w->devs[i];
        double now = now_s();
        if (v->dead) continue;
        if (!connect_dev(v)) {
            atomic_fetch_add(&n_connect_failed, 1);
            v->dead = 1;
            continue;
        }
        atomic_fetch_add(&n_connected, 1);
        /* spread the fleet's traffic over the first interval */
        v->next_pub = now + (o.rate > 0 ? (double)(rand() % 1000) / 1000.0 / o.rate : 0);
        v->next_event =
            now + (o.event_every > 0 ? (double)(rand() % 1000) / 1000.0 * o.event_every : 0);
        /* S after it connected, spread over S/2 more: a fleet does not renew in one second */
        v->renew_at = o.renew_after >= 0
                          ? now + o.renew_after * (1.0 + (double)(rand() % 1000) / 2000.0)
                          : -1;
    }
    while (!atomic_load(&stop_flag)) {
        double now = now_s();
        long n = 0;
        for (i = 0; i < w->count; i++) {
            struct vdev *v = &w->devs[i];
            if (v->dead || !v->conn) continue;
            if (v->renew_at > 0 && now >= v->renew_at) {
                v->renew_at = -1;
                if (enroll(v, 1)) {
                    /* the new certificate takes over; the queue carries over */
                    kf_mqttc_disconnect(&v->m, now_ms());
                    kf_tlsc_close(v->conn);
                    v->conn = NULL;
                    if (!connect_dev(v)) {
                        v->dead = 1;
                        atomic_fetch_add(&n_connected, -1);
                        atomic_fetch_add(&n_connect_failed, 1);
                        continue;
                    }
                }
            }
            traffic(w, v, now);
            if (v->check && now >= v->check_at && v->up) {
                v->check = 0;
                up_check(v, now);
            }
            if (v->confirm_at > 0 && now >= v->confirm_at) up_confirm(v);
            if (kf_mqttc_step(&v->m, now_ms(), NULL) != KF_MQTTC_OK) {
                atomic_fetch_add(&n_disconnects, 1);
                kf_tlsc_close(v->conn);
                v->conn = NULL;
                if (!connect_dev(v)) {
                    v->dead = 1;
                    atomic_fetch_add(&n_connected, -1);
                    continue;
                }
            }
            pfd[n].fd = kf_tlsc_fd(v->conn);
            pfd[n].events = (short)(POLLIN | (kf_mqttc_want_write(&v->m) ? POLLOUT : 0));
            n++;
        }
        poll(pfd, (nfds_t)n, 20);
    }
    for (i = 0; i < w->count; i++) {
        struct vdev *v = &w->devs[i];
        if (v->conn) {
            /* deliver what is in flight, then say goodbye */
            uint64_t end = now_ms() + 1000;
            while (kf_mqttc_queued(&v->m) && now_ms() < end) {
                struct pollfd p = {kf_tlsc_fd(v->conn), POLLIN, 0};
                if (kf_mqttc_step(&v->m, now_ms(), NULL)) break;
                poll(&p, 1, 10);
            }
            kf_mqttc_disconnect(&v->m, now_ms());
            kf_tlsc_close(v->conn);
        }
        kf_tlsc_free(v->tls);
        kf_key_free(v->fkey);
        kf_key_free(v->okey);
        kf_buf_free(&v->fchain);
        kf_buf_free(&v->ochain);
    }
    free(pfd);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static enum kf_err make_factory_ca(char *cert_path, size_t ccap, char *key_path, size_t kcap)
{
    struct kf_cert_template t;
    struct kf_key *k = NULL;
    struct kf_cert *c = NULL;
    struct kf_buf pem;
    enum kf_err rc;
    time_t now = time(NULL);

    if (mkdir(o.dir, 0700) != 0 && errno != EEXIST)
        return kf_fail(KF_E_IO, "cannot create %s: %s", o.dir, strerror(errno));
    snprintf(cert_path, ccap, "%s/factory-ca.pem", o.dir);
    snprintf(key_path, kcap, "%s/factory-ca.key", o.dir);
    if (kf_file_exists(cert_path) && kf_file_exists(key_path)) return KF_OK;
    rc = kf_key_generate(KF_KEY_EC_P256, &k);
    if (rc) return rc;
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_ROOT_CA;
    t.cn = "keyfleet-sim factory CA";
    t.org = "keyfleet-sim";
    t.key = k;
    t.not_before = now - 3600;
    t.not_after = now + 10 * 365 * 86400L;
    rc = kf_cert_build(&t, NULL, k, &c);
    kf_buf_init(&pem, 16384);
    if (!rc) rc = kf_cert_pem(c, &pem);
    if (!rc) rc = kf_key_save(k, key_path, NULL);
    if (!rc) rc = kf_file_write(cert_path, pem.data, pem.len, 0644, 0);
    kf_buf_free(&pem);
    kf_cert_free(c);
    kf_key_free(k);
    return rc;
}

static void progress(int final)
{
    char line[320];
    snprintf(line, sizeof(line),
             "%5.1fs  identities %ld/%ld  provisioned %ld  connected %ld  messages %ld (acked %ld)"
             "  events %ld  renewed %ld  refused %ld  failed %ld",
             now_s() - t0, atomic_load(&n_identities), o.devices, atomic_load(&n_provisioned),
             atomic_load(&n_connected), atomic_load(&n_published), atomic_load(&n_acked),
             atomic_load(&n_events), atomic_load(&n_renewed), atomic_load(&n_prov_refused),
             atomic_load(&n_prov_failed) + atomic_load(&n_connect_failed) +
                 atomic_load(&n_renew_failed));
    if (o.update_root) {
        size_t n = strlen(line);
        snprintf(line + n, sizeof(line) - n, "  updated %ld (failed %ld, reverted %ld)",
                 atomic_load(&n_up_confirmed), atomic_load(&n_up_failed),
                 atomic_load(&n_up_reverted));
    }
    if (isatty(2))
        fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    else
        fprintf(stderr, "%s\n", line);
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < lo || v > hi || isnan(v)) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        O_DEVICES = 1,
        O_URL,
        O_TRUST,
        O_HUB,
        O_CA,
        O_CAKEY,
        O_DIR,
        O_PREFIX,
        O_DURATION,
        O_RATE,
        O_QOS,
        O_EVENT,
        O_RENEW,
        O_THREADS,
        O_MQTT,
        O_JSON,
        O_QUIET,
        O_MAKECA,
        O_UPROOT,
        O_HARDWARE,
        O_UPFAIL,
        O_UPUNCONF,
        O_CONFIRM,
        O_HELP,
    };
    static const struct option opts[] = {
        {"devices", 1, NULL, O_DEVICES},
        {"provisioning", 1, NULL, O_URL},
        {"trust", 1, NULL, O_TRUST},
        {"hub", 1, NULL, O_HUB},
        {"factory-ca", 1, NULL, O_CA},
        {"factory-ca-key", 1, NULL, O_CAKEY},
        {"dir", 1, NULL, O_DIR},
        {"prefix", 1, NULL, O_PREFIX},
        {"duration", 1, NULL, O_DURATION},
        {"rate", 1, NULL, O_RATE},
        {"qos", 1, NULL, O_QOS},
        {"event-every", 1, NULL, O_EVENT},
        {"renew-after", 1, NULL, O_RENEW},
        {"threads", 1, NULL, O_THREADS},
        {"mqtt", 1, NULL, O_MQTT},
        {"json", 0, NULL, O_JSON},
        {"quiet", 0, NULL, O_QUIET},
        {"make-factory-ca", 0, NULL, O_MAKECA},
        {"update-root", 1, NULL, O_UPROOT},
        {"hardware", 1, NULL, O_HARDWARE},
        {"update-fail", 1, NULL, O_UPFAIL},
        {"update-unconfirmed", 1, NULL, O_UPUNCONF},
        {"confirm-within", 1, NULL, O_CONFIRM},
        {"help", 0, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    char ca_cert[1200], ca_key[1200];
    struct worker *workers;
    struct vdev *devs;
    struct sigaction sa;
    double v, last = 0;
    long i, per;
    int opt, ok;

    kf_log_init_from_env();
    if (!getenv("KEYFLEET_LOG")) kf_log_set_level(KF_LOG_ERROR);
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *bad = NULL;
        switch (opt) {
        case O_DEVICES:
            if (parse_num(optarg, 1, 100000, &v)) bad = "--devices takes 1 to 100,000";
            o.devices = (long)v;
            break;
        case O_URL: o.url = optarg; break;
        case O_TRUST: o.trust = optarg; break;
        case O_HUB: o.hub = optarg; break;
        case O_CA: o.ca_cert = optarg; break;
        case O_CAKEY: o.ca_key = optarg; break;
        case O_DIR: o.dir = optarg; break;
        case O_PREFIX:
            o.prefix = optarg;
            if (!*optarg || strlen(optarg) > 40 ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(optarg))
                bad = "--prefix: lower-case letters, digits and '-', at most 40";
            break;
        case O_DURATION:
            if (parse_num(optarg, 0, 86400 * 30, &o.duration)) bad = "--duration: seconds";
            break;
        case O_RATE:
            if (parse_num(optarg, 0, 1000, &o.rate)) bad = "--rate: 0 to 1000 a second";
            break;
        case O_QOS:
            if (parse_num(optarg, 0, 1, &v) || (v != 0 && v != 1)) bad = "--qos: 0 or 1";
            o.qos = (int)v;
            break;
        case O_EVENT:
            if (parse_num(optarg, 0, 86400, &o.event_every)) bad = "--event-every: seconds";
            break;
        case O_RENEW:
            if (parse_num(optarg, 0, 86400 * 30, &o.renew_after)) bad = "--renew-after: seconds";
            break;
        case O_THREADS:
            if (parse_num(optarg, 1, 256, &v)) bad = "--threads: 1 to 256";
            o.threads = (long)v;
            break;
        case O_MQTT:
            if (parse_num(optarg, 4, 5, &v) || (v != 4 && v != 5)) bad = "--mqtt: 4 or 5";
            o.mqtt = (int)v;
            break;
        case O_JSON: o.json = 1; break;
        case O_QUIET: o.quiet = 1; break;
        case O_MAKECA: o.make_ca = 1; break;
        case O_UPROOT: o.update_root = optarg; break;
        case O_HARDWARE:
            o.hardware = optarg;
            if (!*optarg || strlen(optarg) > 127 ||
                strspn(optarg,
                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                    strlen(optarg))
                bad = "--hardware: letters, digits, _ - . (at most 127)";
            break;
        case O_UPFAIL:
            if (parse_num(optarg, 0, 100, &o.update_fail)) bad = "--update-fail: 0 to 100 (%)";
            break;
        case O_UPUNCONF:
            if (parse_num(optarg, 0, 100, &o.update_unconfirmed))
                bad = "--update-unconfirmed: 0 to 100 (%)";
            break;
        case O_CONFIRM:
            if (parse_num(optarg, 0, 3600, &o.confirm_within)) bad = "--confirm-within: seconds";
            break;
        case O_HELP: fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "keyfleet-sim: %s\n", bad);
            return 2;
        }
    }
    if (optind != argc || (!o.ca_cert) != (!o.ca_key)) {
        fprintf(stderr, "keyfleet-sim: %s\n%s",
                optind != argc ? "unexpected argument"
                               : "--factory-ca and --factory-ca-key go together",
                usage);
        return 2;
    }
    if (!o.ca_cert) {
        if (make_factory_ca(ca_cert, sizeof(ca_cert), ca_key, sizeof(ca_key))) {
            fprintf(stderr, "keyfleet-sim: %s\n", kf_errmsg());
            return 1;
        }
        o.ca_cert = ca_cert;
        o.ca_key = ca_key;
        if (o.make_ca) {
            printf("factory CA: %s\nfactory CA key: %s\n", ca_cert, ca_key);
            return 0;
        }
    }
    if (!o.url || !o.trust) {
        fprintf(stderr, "keyfleet-sim: --provisioning and --trust are required\n%s", usage);
        return 2;
    }
    kf_buf_init(&trust_pem, 65536);
    if (kf_cert_load_file(o.ca_cert, &factory_ca) || kf_key_load(o.ca_key, NULL, &factory_ca_key) ||
        kf_buf_read_file(&trust_pem, o.trust) ||
        kf_https_url_split(o.url, prov_host, sizeof(prov_host), &prov_port, prov_prefix,
                           sizeof(prov_prefix))) {
        fprintf(stderr, "keyfleet-sim: %s\n", kf_errmsg());
        return 1;
    }
    if (o.update_root) {
        char d[1100];
        snprintf(d, sizeof(d), "%s/devices", o.dir);
        if ((mkdir(o.dir, 0700) != 0 && errno != EEXIST) ||
            (mkdir(d, 0700) != 0 && errno != EEXIST) || !kf_file_exists(o.update_root)) {
            fprintf(stderr, "keyfleet-sim: cannot use %s and %s for updates: %s\n", d,
                    o.update_root,
                    kf_file_exists(o.update_root) ? strerror(errno) : "no such root");
            return 1;
        }
    }
    lat_prov.v = calloc(LAT_MAX, sizeof(double));
    lat_connect.v = calloc(LAT_MAX, sizeof(double));
    lat_ack.v = calloc(LAT_MAX, sizeof(double));
    if (o.threads > o.devices) o.threads = o.devices;
    devs = calloc((size_t)o.devices, sizeof(*devs));
    workers = calloc((size_t)o.threads, sizeof(*workers));
    if (!devs || !workers || !lat_prov.v || !lat_connect.v || !lat_ack.v) {
        fprintf(stderr, "keyfleet-sim: out of memory for %ld devices\n", o.devices);
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    t0 = now_s();
    per = o.devices / o.threads;
    for (i = 0; i < o.threads; i++) {
        workers[i].first = i * per;
        workers[i].count = i == o.threads - 1 ? o.devices - i * per : per;
        workers[i].devs = devs + workers[i].first;
        pthread_create(&workers[i].th, NULL, worker_run, &workers[i]);
    }
    /* up, then the run's duration counted from when the whole fleet is up (or has failed) */
    {
        double up_at = 0;
        while (!interrupted) {
            double now = now_s();
            long settled = atomic_load(&n_connected) + atomic_load(&n_connect_failed) +
                           atomic_load(&n_prov_failed) + atomic_load(&n_prov_refused);
            if (!up_at && settled >= o.devices) up_at = now;
            if (up_at && now - up_at >= o.duration) break;
            if (!o.quiet && now - last >= (isatty(2) ? 0.25 : 2.0)) {
                progress(0);
                last = now;
            }
            usleep(50000);
        }
    }
    atomic_store(&stop_flag, 1);
    for (i = 0; i < o.threads; i++)
        pthread_join(workers[i].th, NULL);
    if (!o.quiet) progress(1);

    ok = atomic_load(&n_provisioned) == o.devices && atomic_load(&n_connect_failed) == 0;
    if (o.json) {
        json_t *j = json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:f, s:f}, "
            "s:{s:f, s:f}, s:{s:f, s:f}, s:f, s:{s:I, s:I, s:I, s:I, s:I}}",
            "devices", (json_int_t)o.devices, "provisioned",
            (json_int_t)atomic_load(&n_provisioned), "refused",
            (json_int_t)atomic_load(&n_prov_refused), "provisioning_failed",
            (json_int_t)atomic_load(&n_prov_failed), "connected",
            (json_int_t)(atomic_load(&n_connected)), "connect_failed",
            (json_int_t)atomic_load(&n_connect_failed), "messages",
            (json_int_t)atomic_load(&n_published), "acked", (json_int_t)atomic_load(&n_acked),
            "events", (json_int_t)atomic_load(&n_events), "renewed",
            (json_int_t)atomic_load(&n_renewed), "renew_failed",
            (json_int_t)atomic_load(&n_renew_failed), "reconnects",
            (json_int_t)atomic_load(&n_disconnects), "throttled",
            (json_int_t)atomic_load(&n_throttled), "provisioning_ms", "p50", pct(&lat_prov, 0.5),
            "p99", pct(&lat_prov, 0.99), "connect_ms", "p50", pct(&lat_connect, 0.5), "p99",
            pct(&lat_connect, 0.99), "puback_ms", "p50", pct(&lat_ack, 0.5), "p99",
            pct(&lat_ack, 0.99), "seconds", now_s() - t0, "updates", "confirmed",
            (json_int_t)atomic_load(&n_up_confirmed), "failed",
            (json_int_t)atomic_load(&n_up_failed), "reverted",
            (json_int_t)atomic_load(&n_up_reverted), "checks",
            (json_int_t)atomic_load(&n_up_checks), "errors", (json_int_t)atomic_load(&n_up_errors));
        char *text = json_dumps(j, JSON_INDENT(2));
        puts(text);
        free(text);
        json_decref(j);
    } else {
        printf("keyfleet-sim: %ld devices in %.1f s\n", o.devices, now_s() - t0);
        printf("  provisioned   %ld (refused %ld, failed %ld, told to retry later %ld times)  p50 "
               "%.1f ms  p99 %.1f ms\n",
               atomic_load(&n_provisioned), atomic_load(&n_prov_refused),
               atomic_load(&n_prov_failed), atomic_load(&n_throttled), pct(&lat_prov, 0.5),
               pct(&lat_prov, 0.99));
        printf("  connected     %ld (failed %ld, reconnects %ld)  p50 %.1f ms  p99 %.1f ms\n",
               atomic_load(&n_connected), atomic_load(&n_connect_failed),
               atomic_load(&n_disconnects), pct(&lat_connect, 0.5), pct(&lat_connect, 0.99));
        printf("  telemetry     %ld messages, %ld delivered (QoS %d)  PUBACK p50 %.1f ms  p99 %.1f "
               "ms\n",
               atomic_load(&n_published), atomic_load(&n_acked), o.qos, pct(&lat_ack, 0.5),
               pct(&lat_ack, 0.99));
        printf("  events        %ld security events reported\n", atomic_load(&n_events));
        if (o.renew_after >= 0)
            printf("  renewed       %ld (failed %ld)\n", atomic_load(&n_renewed),
                   atomic_load(&n_renew_failed));
        if (o.update_root)
            printf("  updates       %ld confirmed, %ld failed, %ld reverted (%ld checks, %ld "
                   "errors)\n",
                   atomic_load(&n_up_confirmed), atomic_load(&n_up_failed),
                   atomic_load(&n_up_reverted), atomic_load(&n_up_checks),
                   atomic_load(&n_up_errors));
    }
    kf_cert_free(factory_ca);
    kf_key_free(factory_ca_key);
    kf_buf_free(&trust_pem);
    free(devs);
    free(workers);
    free(lat_prov.v);
    free(lat_connect.v);
    free(lat_ack.v);
    return ok ? 0 : 1;
}
