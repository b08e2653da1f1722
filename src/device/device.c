/* libkeyfleet's Linux layer: provisioning, the hub connection, renewal, events. */
#include "keyfleet/device.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/hostport.h"
#include "common/log.h"
#include "common/mqtt_codec.h"
#include "common/ossl.h"
#include "common/pem.h"
#include "common/timefmt.h"
#include "device/evqueue.h"
#include "common/est.h"
#include "device/https_client.h"
#include "device/keygen.h"
#include "device/pkcs11_gen.h"
#include "device/device_priv.h"
#include "device/tls_client.h"
#include "keyfleet/backoff.h"
#include "keyfleet/mqtt_client.h"

#define RX_BYTES        (64 * 1024)
#define TX_BYTES        (64 * 1024)
#define PEM_MAX         (64 * 1024)
#define IDENTITY_MAX    (256 * 1024)
#define UPDATE_NOTE_MAX 400
#define EVENT_TAG       0x80000000u
#define URI_CAP         2048

struct identity {
    char device_id[128];
    char hub[300];
    char key_uri[URI_CAP]; /* as stored: a pkcs11 URI without its query */
    struct kf_buf chain, trust;
    time_t not_before, not_after, renew_after;
    int generation;
    struct kf_key *key;
    struct kf_tlsc *tls; /* the hub context: this identity, the trust */
};

/* Kinds of failure, each remembered so that a repeated one is reported once. */
enum { FAIL_PROV = 0, FAIL_HUB = 1, FAIL_RENEW = 2, FAIL_SERVER_TLS = 3, FAIL_KINDS = 4 };

struct kf_device {
    struct kf_device_config cfg;
    char *dir, *url, *fcert, *fkey, *anchor, *hub_override;
    char prov_host[256], prov_prefix[256];
    int prov_port;
    char identity_path[4096], running_path[4096];
    struct kf_key *factory;
    struct kf_buf factory_chain, anchor_pem;
    struct identity id;
    int have_id;
    struct kf_evq *evq;
    struct kf_mqttc mqtt;
    uint8_t *rx, *tx, *q;
    struct kf_tlsc_conn *conn;
    char topic_telemetry[200], topic_events[200], sub_commands[200], sub_updates[200];
    const char *subs[2];
    struct kf_backoff prov_bo, conn_bo, renew_bo;
    uint64_t prov_at, connect_at, renew_retry_at;
    time_t renew_at;
    int renew_soon, expiring_reported;
    uint64_t ev_enqueued;               /* the last event put into the MQTT queue */
    char last_failure[FAIL_KINDS][512]; /* per kind: a repeated failure is reported once */
    uint64_t commands, renewals;
    int clean_close_marker;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t rand32(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) r = (uint32_t)mono_ms() * 2654435761u;
    return r;
}

const char *kf_device_errmsg(void)
{
    return kf_errmsg();
}

static void state(struct kf_device *d, const char *what, const char *detail)
{
    kf_log(KF_LOG_INFO, "device", what, "id", d->have_id ? d->id.device_id : NULL, "detail", detail,
           NULL);
    if (d->cfg.state_cb) d->cfg.state_cb(d->cfg.ctx, d, what, detail);
}

/* ---- events ---- */

/* "device.<name>", or "update.<name>" for the steps of a software update (keyfleet/update.h). */
static int type_ok(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    return n >= 8 && n <= 64 &&
           (strncmp(t, "device.", 7) == 0 || (strncmp(t, "update.", 7) == 0)) &&
           strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789._") == n;
}

int kf_report_event(struct kf_device *d, const char *type, const char *severity,
                    const char *detail_json)
{
    json_t *detail, *ev;
    json_error_t jerr;
    char when[32], *text;
    int rc;

    if (!type_ok(type))
        return kf_fail(KF_E_INVALID,
                       "event type \"%s\" must be device.<name> or update.<name> (lower-case "
                       "letters, "
                       "digits, '.', '_'; at most 64 characters)",
                       type ? type : "");
    if (!severity) severity = "warning";
    if (strcmp(severity, "info") && strcmp(severity, "warning") && strcmp(severity, "critical"))
        return kf_fail(KF_E_INVALID, "event severity \"%s\" must be info, warning or critical",
                       severity);
    detail = detail_json ? json_loads(detail_json, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    if (!detail || !json_is_object(detail)) {
        json_decref(detail);
        return kf_fail(KF_E_INVALID, "event detail must be a JSON object");
    }
    kf_time_rfc3339(time(NULL), when, sizeof(when));
    json_object_set_new(detail, "raised", json_string(when));
    ev = json_pack("{s:s, s:s, s:o}", "type", type, "severity", severity, "detail", detail);
    text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    if (!text) return kf_fail(KF_E_NOMEM, "cannot encode the event");
    if (strlen(text) > 15 * 1024) {
        free(text);
        return kf_fail(KF_E_OVERSIZE, "an event is at most 15 KiB");
    }
    rc = kf_evq_append(d->evq, text, NULL);
    kf_log(KF_LOG_INFO, "device", "event", "type", type, "severity", severity, "detail", text,
           NULL);
    free(text);
    return rc;
}

/* Reports an SDK event; `detail` is built by the caller and taken. */
static void sdk_event(struct kf_device *d, const char *type, const char *severity, json_t *detail)
{
    char *text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(detail);
    if (!text) return;
    if (kf_report_event(d, type, severity, text))
        kf_log(KF_LOG_WARN, "device", "cannot queue an event", "type", type, "error", kf_errmsg(),
               NULL);
    free(text);
}

/* A failure of `kind`: logged every time, reported as an event when it differs from the last. */
static void failure(struct kf_device *d, int kind, const char *type, const char *severity,
                    json_t *detail)
{
    char *key = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    int same = key && strcmp(d->last_failure[kind], key) == 0;
    kf_log(KF_LOG_WARN, "device", type, "detail", key, NULL);
    if (key) snprintf(d->last_failure[kind], sizeof(d->last_failure[kind]), "%s", key);
    free(key);
    if (same)
        json_decref(detail);
    else
        sdk_event(d, type, severity, detail);
}

/* ---- identity ---- */

/* Frees what `id` holds and zeroes it. */
static void identity_release(struct identity *id)
{
    kf_tlsc_free(id->tls);
    kf_key_free(id->key);
    kf_buf_free(&id->chain);
    kf_buf_free(&id->trust);
    memset(id, 0, sizeof(*id));
}

/* Releases `id` and makes it an empty identity, ready to be filled. */
static void identity_clear(struct identity *id)
{
    identity_release(id);
    kf_buf_init(&id->chain, PEM_MAX);
    kf_buf_init(&id->trust, PEM_MAX);
}

static enum kf_err load_uri_key(struct kf_device *d, const char *stored, struct kf_key **out)
{
    char full[URI_CAP];
    enum kf_err rc;
    if (strncmp(stored, "pkcs11:", 7) == 0) {
        rc = kf_pkcs11_uri_with_query(stored, d->fkey, full, sizeof(full));
        if (!rc) rc = kf_key_load(full, NULL, out);
        OPENSSL_cleanse(full, sizeof(full));
        return rc;
    }
    return kf_key_load(stored, NULL, out);
}

/*
 * Fills `id` from the certificate chain `chain` with `key`: checks that the leaf's key is the
 * operational key and that the chain verifies against the trust, and reads its times.
 */
static enum kf_err identity_check(struct kf_device *d, struct identity *id)
{
    struct kf_cert **certs = NULL;
    struct kf_key *pub = NULL;
    size_t n = 0;
    enum kf_err rc;

    rc = kf_cert_parse_chain(id->chain.data, id->chain.len, &certs, &n);
    if (rc) return kf_wrap(rc, "the stored certificate cannot be read");
    rc = kf_cert_public_key(certs[0], &pub);
    if (!rc && !kf_key_public_equal(pub, id->key))
        rc = kf_fail(KF_E_CONFLICT, "the stored certificate is not for the operational key");
    if (!rc) {
        id->not_before = kf_cert_not_before(certs[0]);
        id->not_after = kf_cert_not_after(certs[0]);
        if (!id->renew_after)
            id->renew_after = id->not_before + (id->not_after - id->not_before) * 2 / 3;
    }
    kf_key_free(pub);
    kf_cert_chain_free(certs, n);
    if (!rc)
        rc = kf_tlsc_new((const char *)id->chain.data, id->chain.len, id->key,
                         (const char *)id->trust.data, id->trust.len, &id->tls);
    return rc;
}

static enum kf_err identity_save(struct kf_device *d, const struct identity *id)
{
    char ra[32], na[32];
    json_t *j;
    char *text;
    enum kf_err rc;
    kf_time_rfc3339(id->renew_after, ra, sizeof(ra));
    kf_time_rfc3339(id->not_after, na, sizeof(na));
    j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "deviceId", id->device_id, "hub",
                  id->hub, "certificate", kf_buf_str(&id->chain), "trustBundle",
                  kf_buf_str(&id->trust), "renewAfter", ra, "notAfter", na, "key", id->key_uri,
                  "generation", id->generation);
    text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!text) return kf_fail(KF_E_NOMEM, "cannot encode the identity");
    rc = kf_file_write(d->identity_path, text, strlen(text), 0600, KF_FILE_REPLACE);
    free(text);
    return rc;
}

/* Reads identity.json; KF_E_NOT_FOUND when there is none; other errors when it is unusable. */
static enum kf_err identity_load(struct kf_device *d, struct identity *id)
{
    struct kf_buf b;
    json_t *j = NULL;
    json_error_t jerr;
    const char *s;
    enum kf_err rc;

    kf_buf_init(&b, IDENTITY_MAX);
    if (!kf_file_exists(d->identity_path)) return KF_E_NOT_FOUND;
    rc = kf_buf_read_file(&b, d->identity_path);
    if (rc) goto out;
    j = json_loadb((const char *)b.data, b.len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        rc = kf_fail(KF_E_MALFORMED, "%s is not JSON: %s", d->identity_path, jerr.text);
        goto out;
    }
#define GETS(name, dst, cap)                                                                       \
    if (!(s = json_string_value(json_object_get(j, name))) || strlen(s) >= (cap)) {                \
        rc = kf_fail(KF_E_MALFORMED, "%s: \"%s\" is missing or too long", d->identity_path, name); \
        goto out;                                                                                  \
    }                                                                                              \
    memcpy(dst, s, strlen(s) + 1)
    GETS("deviceId", id->device_id, sizeof(id->device_id));
    GETS("hub", id->hub, sizeof(id->hub));
    GETS("key", id->key_uri, sizeof(id->key_uri));
#undef GETS
    id->generation = (int)json_integer_value(json_object_get(j, "generation"));
    s = json_string_value(json_object_get(j, "renewAfter"));
    if (!s || kf_time_parse(s, &id->renew_after)) {
        rc = kf_fail(KF_E_MALFORMED, "%s: \"renewAfter\" is missing or no time", d->identity_path);
        goto out;
    }
    s = json_string_value(json_object_get(j, "certificate"));
    rc = s ? kf_buf_append_str(&id->chain, s)
           : kf_fail(KF_E_MALFORMED, "%s: no \"certificate\"", d->identity_path);
    if (rc) goto out;
    s = json_string_value(json_object_get(j, "trustBundle"));
    rc = kf_buf_append_str(&id->trust, s && *s ? s : kf_buf_str(&d->anchor_pem));
    if (rc) goto out;
    rc = load_uri_key(d, id->key_uri, &id->key);
    if (rc) goto out;
    rc = identity_check(d, id);
out:
    json_decref(j);
    kf_buf_free(&b);
    return rc;
}

/* ---- provisioning ---- */

static void schedule_renewal(struct kf_device *d)
{
    time_t life = d->id.not_after - d->id.not_before;
    time_t spread = life / 20 > 3600 ? 3600 : life / 20;
    d->renew_at = d->id.renew_after + (spread > 0 ? (time_t)(rand32() % (uint32_t)spread) : 0);
    d->expiring_reported = 0;
}

static void topics(struct kf_device *d)
{
    snprintf(d->topic_telemetry, sizeof(d->topic_telemetry), "devices/%s/telemetry",
             d->id.device_id);
    snprintf(d->topic_events, sizeof(d->topic_events), "devices/%s/events", d->id.device_id);
    snprintf(d->sub_commands, sizeof(d->sub_commands), "devices/%s/commands/#", d->id.device_id);
    snprintf(d->sub_updates, sizeof(d->sub_updates), "devices/%s/updates/#", d->id.device_id);
}

/* A refusal body {"error", "message"} into the detail. */
static void refusal_detail(json_t *detail, const struct kf_https_response *r)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)r->body.data, r->body.len, 0, &jerr);
    json_object_set_new(detail, "status", json_integer(r->status));
    if (j && json_is_object(j)) {
        json_t *e = json_object_get(j, "error"), *m = json_object_get(j, "message");
        if (json_is_string(e)) json_object_set(detail, "error", e);
        if (json_is_string(m)) json_object_set(detail, "message", m);
    }
    json_decref(j);
}

/*
 * Enrolls: a new key where the factory key (first time) lives, a CSR for `cn`, and one request
 * over `tls` (register, simpleenroll or simplereenroll). On success `next` is the new identity
 * (not yet saved).
 */
static enum kf_err enroll(struct kf_device *d, struct kf_tlsc *tls, const char *endpoint,
                          const char *cn, int generation, struct identity *next, int kind,
                          uint32_t *retry_after_ms)
{
    char base[4200], label[64], problem[256];
    struct kf_buf csr;
    struct kf_https_response r;
    enum kf_err rc;
    int reg = strcmp(endpoint, "register") == 0;
    json_t *j = NULL;

    *retry_after_ms = 0;
    kf_buf_init(&csr, PEM_MAX);
    memset(&r, 0, sizeof(r));
    kf_buf_init(&r.body, 1);
    snprintf(base, sizeof(base), "%s/op-%d", d->dir, generation);
    snprintf(label, sizeof(label), "keyfleet-op-%d", generation);
    rc = kf_keygen_like(d->factory, d->fkey, base, label, next->key_uri, sizeof(next->key_uri),
                        &next->key);
    if (rc) {
        kf_wrap(rc, "cannot make the operational key");
        goto out;
    }
    if (strncmp(next->key_uri, "pkcs11:", 7) != 0 && strchr(next->key_uri, '?'))
        *strchr(next->key_uri, '?') = 0;
    next->generation = generation;
    rc = kf_csr_create(next->key, cn, &csr);
    if (rc) goto out;
    rc = kf_enroll_post(tls, d->prov_host, d->prov_port, d->prov_prefix, endpoint, &csr,
                        d->cfg.io_timeout_ms, &r, problem, sizeof(problem));
    if (rc) {
        json_t *detail = json_pack("{s:s, s:s, s:s}", "server", d->url, "stage", endpoint,
                                   "message", kf_errmsg());
        if (rc == KF_E_DENIED) {
            json_object_set_new(detail, "problem", json_string(problem));
            failure(d, FAIL_SERVER_TLS, "device.tls_failed", "critical",
                    json_pack("{s:s, s:s, s:s}", "peer", "provisioning", "server", d->url,
                              "problem", problem));
        }
        failure(d, kind,
                kind == FAIL_RENEW ? "device.renewal_failed" : "device.provisioning_failed",
                "warning", detail);
        goto out;
    }
    if (r.status != 200) {
        json_t *detail = json_pack("{s:s, s:s}", "server", d->url, "stage", endpoint);
        refusal_detail(detail, &r);
        if (r.status == 429 || r.status == 503) *retry_after_ms = r.retry_after_s * 1000;
        rc = kf_fail(r.status == 429 || r.status == 503 ? KF_E_BUSY : KF_E_DENIED,
                     "%s refused %s with HTTP %d: %.200s", d->url, endpoint, r.status,
                     kf_buf_str(&r.body));
        failure(d, kind,
                kind == FAIL_RENEW ? "device.renewal_failed" : "device.provisioning_failed",
                "warning", detail);
        goto out;
    }
    if (reg) {
        json_error_t jerr;
        const char *id, *hub, *cert, *trust, *ra;
        j = json_loadb((const char *)r.body.data, r.body.len, 0, &jerr);
        id = json_string_value(json_object_get(j, "deviceId"));
        hub = json_string_value(json_object_get(j, "hub"));
        cert = json_string_value(json_object_get(j, "certificate"));
        trust = json_string_value(json_object_get(j, "trustBundle"));
        ra = json_string_value(json_object_get(j, "renewAfter"));
        if (!id || !cert || !ra || strlen(id) >= sizeof(next->device_id) ||
            kf_time_parse(ra, &next->renew_after)) {
            rc = kf_fail(KF_E_MALFORMED, "the register answer lacks deviceId, certificate or "
                                         "renewAfter");
            goto out;
        }
        snprintf(next->device_id, sizeof(next->device_id), "%s", id);
        snprintf(next->hub, sizeof(next->hub), "%s", hub ? hub : "");
        rc = kf_buf_append_str(&next->chain, cert);
        if (!rc) rc = kf_buf_append_str(&next->trust, trust ? trust : kf_buf_str(&d->anchor_pem));
    } else {
        rc = kf_est_certs_pem(&r.body, &next->chain);
        if (!rc && d->have_id) {
            /* the issuing CA as the previous chain had it, when the answer holds the leaf only */
            const char *second = strstr(kf_buf_str(&d->id.chain) + 1, "-----BEGIN CERTIFICATE");
            if (second && !strstr(kf_buf_str(&next->chain) + 1, "-----BEGIN CERTIFICATE"))
                rc = kf_buf_append_str(&next->chain, second);
        }
        if (!rc)
            rc = kf_buf_append_str(&next->trust, d->have_id ? kf_buf_str(&d->id.trust)
                                                            : kf_buf_str(&d->anchor_pem));
        if (!rc) {
            struct kf_cert *leaf = NULL;
            rc = kf_cert_parse(next->chain.data, next->chain.len, &leaf);
            if (!rc) rc = kf_cert_subject_cn(leaf, next->device_id, sizeof(next->device_id));
            kf_cert_free(leaf);
        }
        snprintf(next->hub, sizeof(next->hub), "%s", d->have_id ? d->id.hub : "");
    }
    if (rc) goto out;
    rc = identity_check(d, next);
    if (rc) kf_wrap(rc, "the certificate from %s is unusable", d->url);
out:
    if (rc && next->key_uri[0]) kf_keygen_remove(next->key_uri, d->fkey);
    json_decref(j);
    kf_buf_free(&csr);
    kf_buf_free(&r.body);
    return rc;
}

/* Adopts `next` as the identity (saved first: a crash leaves the old one or the new). */
static enum kf_err adopt(struct kf_device *d, struct identity *next)
{
    char old_uri[URI_CAP];
    enum kf_err rc = identity_save(d, next);
    if (rc) return rc;
    snprintf(old_uri, sizeof(old_uri), "%s", d->id.key_uri);
    identity_clear(&d->id);
    d->id = *next;
    memset(next, 0, sizeof(*next));
    d->have_id = 1;
    topics(d);
    schedule_renewal(d);
    if (old_uri[0] && strcmp(old_uri, d->id.key_uri) != 0) kf_keygen_remove(old_uri, d->fkey);
    return KF_OK;
}

static void provision(struct kf_device *d, uint64_t now)
{
    struct kf_tlsc *tls = NULL;
    struct identity next;
    struct kf_cert *fc = NULL;
    char cn[128] = "";
    uint32_t retry = 0;
    enum kf_err rc;

    memset(&next, 0, sizeof(next));
    identity_clear(&next);
    rc = kf_cert_parse(d->factory_chain.data, d->factory_chain.len, &fc);
    if (!rc) rc = kf_cert_subject_cn(fc, cn, sizeof(cn));
    kf_cert_free(fc);
    if (!rc)
        rc = kf_tlsc_new((const char *)d->factory_chain.data, d->factory_chain.len, d->factory,
                         (const char *)d->anchor_pem.data, d->anchor_pem.len, &tls);
    if (rc) {
        failure(d, FAIL_PROV, "device.provisioning_failed", "warning",
                json_pack("{s:s, s:s}", "stage", "factory_identity", "message", kf_errmsg()));
    } else {
        rc = enroll(d, tls, d->cfg.use_est ? "simpleenroll" : "register", cn, d->id.generation + 1,
                    &next, FAIL_PROV, &retry);
    }
    if (!rc) rc = adopt(d, &next);
    kf_tlsc_free(tls);
    identity_release(&next);
    if (rc) {
        /* from the answer, not from the request: Retry-After counts from when it arrived (RFC
         * 9110 10.2.3), and the attempt itself may have taken a while */
        d->prov_at = mono_ms() + kf_backoff_next(&d->prov_bo, rand32(), retry);
        kf_log(KF_LOG_WARN, "device", "provisioning failed", "error", kf_errmsg(), NULL);
        return;
    }
    kf_backoff_reset(&d->prov_bo);
    d->last_failure[FAIL_PROV][0] = d->last_failure[FAIL_SERVER_TLS][0] = 0;
    state(d, "provisioned", d->id.hub);
}

/* ---- the hub ---- */

static void drop_connection(struct kf_device *d, const char *why, uint64_t now, int retry_now)
{
    if (d->conn) {
        kf_tlsc_close(d->conn);
        d->conn = NULL;
    }
    kf_mqttc_lost(&d->mqtt);
    /* the MQTT queue keeps the events it holds: they go again on the next connection */
    d->connect_at = retry_now ? now : now + kf_backoff_next(&d->conn_bo, rand32(), 0);
    state(d, "disconnected", why);
}

static void connect_hub(struct kf_device *d, uint64_t now)
{
    char host[256], problem[256];
    const char *hub = d->hub_override ? d->hub_override : d->id.hub;
    enum kf_err rc;
    int port = 0;

    rc = kf_hostport_split(hub, "the hub endpoint", host, sizeof(host), &port);
    if (!rc)
        rc = kf_tlsc_connect(d->id.tls, host, port, d->cfg.io_timeout_ms, &d->conn, problem,
                             sizeof(problem));
    if (!rc) {
        d->mqtt.io.ctx = d->conn;
        if (kf_mqttc_start(&d->mqtt, now))
            rc = kf_fail(KF_E_INTERNAL, "%s", d->mqtt.why ? d->mqtt.why : "cannot start MQTT");
    }
    if (rc) {
        if (rc == KF_E_DENIED)
            failure(d, FAIL_HUB, "device.tls_failed", "critical",
                    json_pack("{s:s, s:s, s:s}", "peer", "hub", "server", hub, "problem", problem));
        else
            kf_log(KF_LOG_WARN, "device", "cannot reach the hub", "hub", hub, "error", kf_errmsg(),
                   NULL);
        kf_tlsc_close(d->conn);
        d->conn = NULL;
        d->connect_at = now + kf_backoff_next(&d->conn_bo, rand32(), 0);
        return;
    }
    kf_log(KF_LOG_DEBUG, "device", "TLS up", "hub", hub, "resumed",
           kf_tlsc_resumed(d->conn) ? "yes" : "no", NULL);
}

static void connected_cb(void *ctx, int session_present)
{
    struct kf_device *d = ctx;
    kf_backoff_reset(&d->conn_bo);
    d->last_failure[FAIL_HUB][0] = 0;
    state(d, "connected", session_present ? "session resumed" : "new session");
}

static void message_cb(void *ctx, const char *topic, size_t tlen, const uint8_t *payload,
                       size_t len)
{
    struct kf_device *d = ctx;
    size_t pl = strlen(d->sub_commands) - 1; /* "devices/<id>/commands/" */
    size_t ul = strlen(d->sub_updates) - 1;  /* "devices/<id>/updates/" */
    char name[128];
    if (tlen > ul && memcmp(topic, d->sub_updates, ul) == 0) {
        /* keyfleetd offers a release: the caller checks (kf_update_check), which trusts only
         * the signed metadata; the payload names the target, for logs */
        char what[UPDATE_NOTE_MAX];
        size_t n = len < sizeof(what) - 1 ? len : sizeof(what) - 1;
        memcpy(what, payload, n);
        what[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)what[i] < 0x20 || what[i] == 0x7f) what[i] = ' ';
        state(d, "update", what);
        return;
    }
    if (tlen <= pl || memcmp(topic, d->sub_commands, pl) != 0 || tlen - pl >= sizeof(name)) return;
    memcpy(name, topic + pl, tlen - pl);
    name[tlen - pl] = 0;
    d->commands++;
    if (d->cfg.command_cb) d->cfg.command_cb(d->cfg.ctx, d, name, payload, len);
}

static void delivered_cb(void *ctx, uint32_t tag, uint8_t reason)
{
    struct kf_device *d = ctx;
    if (!(tag & EVENT_TAG)) return;
    if (reason >= 0x80)
        kf_log(KF_LOG_WARN, "device", "the hub refused an event", "reason",
               kf_mqtt_reason_name(reason), NULL);
    if (kf_evq_ack(d->evq, tag & ~EVENT_TAG))
        kf_log(KF_LOG_WARN, "device", "cannot record an acknowledged event", "error", kf_errmsg(),
               NULL);
}

static void sub_refused_cb(void *ctx, const char *filter, uint8_t reason)
{
    kf_log(KF_LOG_WARN, "device", "subscription refused", "filter", filter, "reason",
           kf_mqtt_reason_name(reason), NULL);
}

/* Puts the events the MQTT queue does not hold yet into it, in order, while there is room. */
static void pump_events(struct kf_device *d)
{
    uint64_t seq;
    const char *json;
    if (!d->have_id) return;
    while (kf_evq_next(d->evq, d->ev_enqueued, &seq, &json)) {
        enum kf_mqttc_status st = kf_mqttc_publish(&d->mqtt, d->topic_events, json, strlen(json), 1,
                                                   EVENT_TAG | (uint32_t)(seq & 0x7fffffff));
        if (st == KF_MQTTC_FULL) return;
        if (st) {
            kf_log(KF_LOG_WARN, "device", "an event cannot be sent", "error",
                   kf_mqttc_status_name(st), NULL);
            kf_evq_ack(d->evq, seq); /* it never will be: do not block the others */
        }
        d->ev_enqueued = seq;
    }
}

/* ---- renewal ---- */

static void renew(struct kf_device *d, uint64_t now)
{
    struct identity next;
    uint32_t retry = 0;
    enum kf_err rc;

    memset(&next, 0, sizeof(next));
    identity_clear(&next);
    rc = enroll(d, d->id.tls, "simplereenroll", d->id.device_id, d->id.generation + 1, &next,
                FAIL_RENEW, &retry);
    if (!rc) rc = adopt(d, &next);
    identity_release(&next);
    if (rc) {
        d->renew_retry_at = mono_ms() + kf_backoff_next(&d->renew_bo, rand32(), retry);
        kf_log(KF_LOG_WARN, "device", "renewal failed", "error", kf_errmsg(), NULL);
        return;
    }
    d->renew_soon = 0;
    d->renewals++;
    kf_backoff_reset(&d->renew_bo);
    d->last_failure[FAIL_RENEW][0] = d->last_failure[FAIL_SERVER_TLS][0] = 0;
    {
        char na[32];
        kf_time_rfc3339(d->id.not_after, na, sizeof(na));
        state(d, "renewed", na);
    }
    /* The new certificate takes over the connection now; the queue carries over. */
    if (d->conn) {
        kf_mqttc_disconnect(&d->mqtt, now);
        drop_connection(d, "switching to the renewed certificate", now, 1);
    }
}

static void check_expiry(struct kf_device *d, time_t wall)
{
    time_t life = d->id.not_after - d->id.not_before;
    if (d->expiring_reported || wall < d->id.not_after - life / 6) return;
    d->expiring_reported = 1;
    sdk_event(d, "device.cert_expiring", wall >= d->id.not_after ? "critical" : "warning",
              json_pack("{s:I, s:I}", "not_after", (json_int_t)d->id.not_after, "seconds_left",
                        (json_int_t)(d->id.not_after - wall)));
}

/* ---- the loop ---- */

int kf_device_run(struct kf_device *d, int timeout_ms)
{
    uint64_t now = mono_ms(), deadline = now + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    time_t wall = time(NULL);

    if (!d->have_id) {
        if (now >= d->prov_at) provision(d, now);
        if (!d->have_id) {
            uint64_t wake = d->prov_at < deadline ? d->prov_at : deadline;
            if (wake > now) usleep((useconds_t)((wake - now) * 1000));
            return 0;
        }
    }
    if (wall >= d->id.not_after) {
        /* Too late to renew with it: the factory identity provisions the device again. */
        sdk_event(d, "device.cert_expired", "critical",
                  json_pack("{s:I}", "not_after", (json_int_t)d->id.not_after));
        kf_log(KF_LOG_WARN, "device", "the certificate expired: provisioning again", NULL);
        if (d->conn) drop_connection(d, "certificate expired", now, 1);
        d->have_id = 0;
        d->prov_at = now;
        return 0;
    }
    if ((wall >= d->renew_at || d->renew_soon) && now >= d->renew_retry_at) renew(d, now);
    check_expiry(d, wall);
    if (!d->conn && now >= d->connect_at) connect_hub(d, now);
    pump_events(d);
    for (;;) {
        uint64_t next = deadline;
        now = mono_ms();
        if (d->conn) {
            uint64_t mnext = 0;
            struct pollfd p;
            int r;
            enum kf_mqttc_status st = kf_mqttc_step(&d->mqtt, now, &mnext);
            if (st) {
                char why[160];
                snprintf(why, sizeof(why), "%s%s%s", kf_mqttc_status_name(st),
                         d->mqtt.why ? ": " : "", d->mqtt.why ? d->mqtt.why : "");
                if (st == KF_MQTTC_REFUSED || st == KF_MQTTC_DISCONNECTED) {
                    size_t l = strlen(why);
                    snprintf(why + l, sizeof(why) - l, " (%s)",
                             kf_mqtt_reason_name(d->mqtt.reason));
                }
                drop_connection(d, why, now, 0);
                return 0;
            }
            pump_events(d);
            if (mnext < next) next = mnext;
            /* the caller's turn comes at the deadline, however busy the socket is */
            if (now >= deadline) return 0;
            p.fd = kf_tlsc_fd(d->conn);
            p.events = (short)(POLLIN | (kf_mqttc_want_write(&d->mqtt) ? POLLOUT : 0));
            p.revents = 0;
            r = poll(&p, 1, next > now ? (int)(next - now) : 1); /* never a busy loop */
            if (r < 0) return 0; /* a signal: the caller looks at its flags */
            if (mono_ms() >= deadline) return 0;
        } else {
            if (d->connect_at < next) next = d->connect_at;
            if (next > now) usleep((useconds_t)((next - now) * 1000));
            return 0;
        }
    }
}

/* ---- open, publish, close ---- */

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

int kf_device_open(const struct kf_device_config *cfg, struct kf_device **out)
{
    struct kf_device *d;
    struct kf_mqttc_options mo;
    struct kf_mqttc_transport io = {NULL, kf_tlsc_send, kf_tlsc_recv};
    struct kf_mqttc_handlers h;
    enum kf_err rc;
    int crashed;

    *out = NULL;
    if (!cfg->data_dir || !cfg->provisioning_url || !cfg->factory_cert || !cfg->factory_key ||
        !cfg->trust_anchor)
        return kf_fail(KF_E_CONFIG, "a device needs a data directory, a provisioning URL, a "
                                    "factory certificate and key, and a trust anchor");
    d = calloc(1, sizeof(*d));
    if (!d) return kf_fail(KF_E_NOMEM, "out of memory");
    d->cfg = *cfg;
    if (!d->cfg.keep_alive_s) d->cfg.keep_alive_s = 60;
    if (!d->cfg.queue_bytes) d->cfg.queue_bytes = 256 * 1024;
    if (!d->cfg.event_log_bytes) d->cfg.event_log_bytes = 1024 * 1024;
    if (!d->cfg.io_timeout_ms) d->cfg.io_timeout_ms = 15000;
    if (!d->cfg.mqtt_version) d->cfg.mqtt_version = 4;
    d->dir = dupstr(cfg->data_dir);
    d->url = dupstr(cfg->provisioning_url);
    d->fcert = dupstr(cfg->factory_cert);
    d->fkey = dupstr(cfg->factory_key);
    d->anchor = dupstr(cfg->trust_anchor);
    d->hub_override = cfg->hub && *cfg->hub ? dupstr(cfg->hub) : NULL;
    d->prov_bo.max_ms = d->conn_bo.max_ms = d->renew_bo.max_ms = d->cfg.backoff_max_ms;
    kf_buf_init(&d->factory_chain, PEM_MAX);
    kf_buf_init(&d->anchor_pem, PEM_MAX);
    memset(&d->id, 0, sizeof(d->id));
    identity_clear(&d->id);
    d->rx = malloc(RX_BYTES);
    d->tx = malloc(TX_BYTES);
    d->q = malloc(d->cfg.queue_bytes);
    if (!d->dir || !d->url || !d->fcert || !d->fkey || !d->anchor || !d->rx || !d->tx || !d->q) {
        rc = kf_fail(KF_E_NOMEM, "out of memory");
        goto fail;
    }
    rc = kf_https_url_split(d->url, d->prov_host, sizeof(d->prov_host), &d->prov_port,
                            d->prov_prefix, sizeof(d->prov_prefix));
    if (rc) goto fail;
    if (mkdir(d->dir, 0700) != 0 && errno != EEXIST) {
        rc = kf_fail(KF_E_IO, "cannot create the data directory %s: %s", d->dir, strerror(errno));
        goto fail;
    }
    if (kf_path_join(d->identity_path, sizeof(d->identity_path), d->dir, "identity.json") ||
        kf_path_join(d->running_path, sizeof(d->running_path), d->dir, "running")) {
        rc = kf_fail(KF_E_INVALID, "the data directory path is too long");
        goto fail;
    }
    rc = kf_buf_read_file(&d->factory_chain, d->fcert);
    if (!rc) rc = kf_buf_read_file(&d->anchor_pem, d->anchor);
    if (rc) goto fail;
    rc = kf_key_load(d->fkey, NULL, &d->factory);
    if (rc) {
        char shown[URI_CAP];
        kf_key_uri_redact(d->fkey, shown, sizeof(shown));
        kf_wrap(rc, "cannot load the factory key %s", shown);
        goto fail;
    }
    rc = kf_evq_open(d->dir, d->cfg.event_log_bytes, &d->evq);
    if (rc) goto fail;

    memset(&mo, 0, sizeof(mo));
    mo.version = (uint8_t)d->cfg.mqtt_version;
    mo.keep_alive_s = (uint16_t)d->cfg.keep_alive_s;
    mo.clean_start = 0;
    mo.session_expiry_s = 3600;
    mo.subscriptions = d->subs;
    mo.n_subscriptions = 2;
    mo.sub_qos = 1;
    mo.client_id = d->id.device_id; /* filled in when the identity is known */
    d->subs[0] = d->sub_commands;
    d->subs[1] = d->sub_updates;
    io.ctx = NULL;
    memset(&h, 0, sizeof(h));
    h.ctx = d;
    h.connected_cb = connected_cb;
    h.message_cb = message_cb;
    h.delivered_cb = delivered_cb;
    h.sub_refused_cb = sub_refused_cb;
    if (kf_mqttc_init(&d->mqtt, &mo, &io, &h, d->rx, RX_BYTES, d->tx, TX_BYTES, d->q,
                      d->cfg.queue_bytes)) {
        rc = kf_fail(KF_E_CONFIG, "mqtt_version must be 4 (3.1.1) or 5");
        goto fail;
    }

    crashed = kf_file_exists(d->running_path);
    {
        char pid[32];
        snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        rc = kf_file_write(d->running_path, pid, strlen(pid), 0600, KF_FILE_REPLACE);
        if (rc) goto fail;
    }
    rc = identity_load(d, &d->id);
    if (rc == KF_OK) {
        d->have_id = 1;
        topics(d);
        schedule_renewal(d);
    } else if (rc == KF_E_NOT_FOUND) {
        kf_err_clear();
        identity_clear(&d->id);
    } else {
        /* Unusable: kept aside for a person to look at; the factory identity provisions anew. */
        char aside[4200];
        json_t *detail = json_pack("{s:s, s:s}", "file", d->identity_path, "message", kf_errmsg());
        kf_log(KF_LOG_ERROR, "device", "the stored identity is unusable", "error", kf_errmsg(),
               NULL);
        snprintf(aside, sizeof(aside), "%s.corrupt", d->identity_path);
        rename(d->identity_path, aside);
        kf_file_sync_dir(d->dir);
        identity_clear(&d->id);
        sdk_event(d, "device.identity_corrupt", "critical", detail);
    }
    if (crashed)
        sdk_event(d, "device.crash_recovered", "warning",
                  json_pack("{s:s}", "message", "the previous run did not end cleanly"));
    d->mqtt.io.ctx = NULL;
    *out = d;
    return 0;
fail:
    kf_device_close(d, 0);
    return rc;
}

int kf_device_publish(struct kf_device *d, const char *sub, const void *payload, size_t len,
                      int qos)
{
    char topic[400];
    enum kf_mqttc_status st;
    if (!d->have_id) return kf_fail(KF_E_DISABLED, "the device has no identity yet");
    if ((size_t)snprintf(topic, sizeof(topic), "%s%s%s", d->topic_telemetry, sub ? "/" : "",
                         sub ? sub : "") >= sizeof(topic))
        return kf_fail(KF_E_INVALID, "telemetry sub-topic too long");
    st = kf_mqttc_publish(&d->mqtt, topic, payload, len, (uint8_t)qos, 0);
    if (st == KF_MQTTC_FULL)
        return kf_fail(KF_E_BUSY, "the outbound queue is full (%zu messages)",
                       kf_mqttc_queued(&d->mqtt));
    if (st)
        return kf_fail(KF_E_INVALID, "cannot publish on %s: %s", topic, kf_mqttc_status_name(st));
    return 0;
}

void kf_device_renew_soon(struct kf_device *d)
{
    d->renew_soon = 1;
    d->renew_retry_at = 0;
}

void kf_device_info(const struct kf_device *d, struct kf_device_info *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->device_id, sizeof(out->device_id), "%s", d->id.device_id);
    snprintf(out->hub, sizeof(out->hub), "%s", d->hub_override ? d->hub_override : d->id.hub);
    out->provisioned = d->have_id;
    out->connected = d->mqtt.state == KF_MQTTC_CONNECTED;
    out->not_after = d->id.not_after;
    out->renew_after = d->id.renew_after;
    out->generation = d->id.generation;
    out->queued = kf_mqttc_queued(&d->mqtt);
    out->events_pending = d->evq ? kf_evq_pending(d->evq) : 0;
    out->published = d->mqtt.stats.published;
    out->delivered = d->mqtt.stats.delivered;
    out->commands = d->commands;
    out->renewals = d->renewals;
    out->connects = d->mqtt.stats.connects;
    out->key_location = d->id.key    ? kf_key_location(d->id.key)
                        : d->factory ? kf_key_location(d->factory)
                                     : "none";
}

int kf_device_fd(const struct kf_device *d)
{
    return d->conn ? kf_tlsc_fd(d->conn) : -1;
}

void kf_device_close(struct kf_device *d, int flush_ms)
{
    if (!d) return;
    if (d->conn) {
        uint64_t end = mono_ms() + (uint64_t)(flush_ms > 0 ? flush_ms : 0);
        while (mono_ms() < end && d->mqtt.state == KF_MQTTC_CONNECTED &&
               (kf_mqttc_queued(&d->mqtt) || kf_mqttc_want_write(&d->mqtt))) {
            uint64_t next;
            struct pollfd p = {kf_tlsc_fd(d->conn), POLLIN, 0};
            if (kf_mqttc_step(&d->mqtt, mono_ms(), &next)) break;
            if (kf_mqttc_want_write(&d->mqtt)) p.events |= POLLOUT;
            poll(&p, 1, 50);
        }
        kf_mqttc_disconnect(&d->mqtt, mono_ms());
        kf_tlsc_close(d->conn);
    }
    if (d->evq && d->running_path[0]) unlink(d->running_path);
    if (d->dir) kf_file_sync_dir(d->dir);
    kf_evq_close(d->evq);
    identity_release(&d->id);
    kf_key_free(d->factory);
    kf_buf_free(&d->factory_chain);
    kf_buf_free(&d->anchor_pem);
    free(d->rx);
    free(d->tx);
    free(d->q);
    free(d->dir);
    free(d->url);
    free(d->fcert);
    free(d->fkey);
    free(d->anchor);
    free(d->hub_override);
    free(d);
}

static int link_report(void *ctx, const char *type, const char *severity, const char *detail)
{
    return kf_report_event(ctx, type, severity, detail);
}

enum kf_err kf_device_link(struct kf_device *d, struct kf_device_link *out)
{
    memset(out, 0, sizeof(*out));
    if (!d->have_id || !d->id.tls)
        return kf_fail(KF_E_CONFLICT, "the device is not provisioned yet");
    out->tls = d->id.tls;
    out->host = d->prov_host;
    out->port = d->prov_port;
    out->prefix = d->prov_prefix;
    out->dir = d->dir;
    out->timeout_ms = d->cfg.io_timeout_ms;
    out->report = link_report;
    out->report_ctx = d;
    return KF_OK;
}
