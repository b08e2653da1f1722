#include "server/ca/config.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/cidr.h"
#include "common/file.h"
#include "common/ini.h"

enum kind { STR, INT };

struct key {
    const char *section, *name;
    enum kind kind;
    size_t offset, size; /* STR: a char array; INT: an int */
    int min, max;
};

#define S(sec, key, field)                                                                        \
    {                                                                                             \
        sec, key, STR, offsetof(struct kf_config, field), sizeof(((struct kf_config *)0)->field), \
            0, 0                                                                                  \
    }
#define I(sec, key, field, lo, hi)                                  \
    {                                                               \
        sec, key, INT, offsetof(struct kf_config, field), 0, lo, hi \
    }

static const struct key keys[] = {
    S("deployment", "name", name),
    S("store", "url", store_url),
    S("ca", "key_type", key_type),
    S("ca", "root_cert", root_cert),
    S("ca", "root_key", root_key),
    S("ca", "issuing_cert", issuing_cert),
    S("ca", "issuing_key", issuing_key),
    S("ca", "crl_file", crl_file),
    I("ca", "device_cert_days", device_cert_days, 1, 3650),
    I("ca", "device_cert_minutes", device_cert_minutes, 0, 3650 * 24 * 60),
    I("ca", "service_cert_days", service_cert_days, 1, 3650),
    I("ca", "server_cert_days", server_cert_days, 1, 3650),
    I("ca", "crl_hours", crl_hours, 1, 24 * 366),
    S("server", "cert", server_cert),
    S("server", "key", server_key),
    S("provisioning", "listen", provisioning_listen),
    I("provisioning", "workers", workers, 0, 256),
    I("provisioning", "request_timeout_ms", request_timeout_ms, 100, 600000),
    I("provisioning", "max_body_bytes", max_body_bytes, 1024, 1048576),
    I("provisioning", "max_header_bytes", max_header_bytes, 1024, 65536),
    I("provisioning", "max_connections", max_connections, 1, 1000000),
    I("provisioning", "max_connections_per_ip", max_connections_per_ip, 1, 1000000),
    I("provisioning", "rate_per_ip", rate_per_ip, 0, 1000000),
    I("provisioning", "rate_burst", rate_burst, 1, 1000000),
    I("provisioning", "max_handshakes", max_handshakes, 1, 1000000),
    I("provisioning", "max_connections_per_net", max_connections_per_net, 1, 1000000),
    I("provisioning", "max_handshakes_per_ip", max_handshakes_per_ip, 1, 1000000),
    I("provisioning", "max_handshakes_per_net", max_handshakes_per_net, 1, 1000000),
    I("provisioning", "hello_timeout_ms", hello_timeout_ms, 100, 600000),
    I("provisioning", "handshake_timeout_ms", handshake_timeout_ms, 100, 600000),
    I("provisioning", "retry_after", retry_after, 1, 3600),
    I("provisioning", "approval_retry_after", approval_retry_after, 1, 86400),
    I("provisioning", "drain_timeout_ms", drain_timeout_ms, 0, 600000),
    I("provisioning", "session_cache", session_cache, 0, 1000000),
    I("provisioning", "commit_delay_us", commit_delay_us, 0, 100000),
    S("provisioning", "metrics_allow", metrics_allow),
    I("provisioning", "metrics_certificate", metrics_certificate, 0, 1),
    S("hub", "listen", hub_listen),
    I("hub", "max_packet_bytes", hub_max_packet_bytes, 64, 268435460),
    I("hub", "connect_timeout_ms", hub_connect_timeout_ms, 100, 600000),
    I("hub", "max_connections", hub_max_connections, 1, 10000000),
    I("hub", "max_connections_per_ip", hub_max_connections_per_ip, 1, 10000000),
    I("hub", "connect_rate_per_ip", hub_connect_rate_per_ip, 0, 1000000),
    I("hub", "connect_burst", hub_connect_burst, 1, 1000000),
    I("hub", "max_handshakes", hub_max_handshakes, 1, 1000000),
    I("hub", "max_connections_per_net", hub_max_connections_per_net, 1, 10000000),
    I("hub", "max_handshakes_per_ip", hub_max_handshakes_per_ip, 1, 1000000),
    I("hub", "max_handshakes_per_net", hub_max_handshakes_per_net, 1, 1000000),
    I("hub", "hello_timeout_ms", hub_hello_timeout_ms, 100, 600000),
    I("hub", "handshake_timeout_ms", hub_handshake_timeout_ms, 100, 600000),
    I("hub", "msg_rate", hub_msg_rate, 0, 10000000),
    I("hub", "msg_burst", hub_msg_burst, 1, 10000000),
    I("hub", "byte_rate", hub_byte_rate, 0, 1000000000),
    I("hub", "byte_burst", hub_byte_burst, 1, 1000000000),
    S("hub", "rate_action", hub_rate_action),
    S("hub", "acl_action", hub_acl_action),
    I("hub", "max_queued", hub_max_queued, 1, 1000000),
    I("hub", "max_inflight", hub_max_inflight, 1, 65535),
    I("hub", "max_subscriptions", hub_max_subscriptions, 1, 100000),
    I("hub", "max_retained", hub_max_retained, 0, 10000000),
    I("hub", "max_retained_bytes", hub_max_retained_bytes, 0, 2000000000),
    I("hub", "max_retained_per_id", hub_max_retained_per_id, 0, 10000000),
    I("hub", "max_retained_bytes_per_id", hub_max_retained_bytes_per_id, 0, 2000000000),
    I("hub", "session_expiry_max_s", hub_session_expiry_max_s, 0, 2000000000),
    I("hub", "flap_connects", hub_flap_connects, 1, 1000000),
    I("hub", "flap_window_s", hub_flap_window_s, 1, 86400),
    I("hub", "flap_ban_s", hub_flap_ban_s, 0, 86400 * 30),
    I("hub", "tls_offload", hub_tls_offload, 0, 1),
    I("hub", "persistence", hub_persistence, 0, 1),
    S("hub", "tls_resumption", hub_tls_resumption),
    S("hub", "allow", hub_allow),
    S("hub", "deny", hub_deny),
    I("hub", "device_event_rate", hub_device_event_rate, 0, 100000),
    I("hub", "device_event_burst", hub_device_event_burst, 1, 1000000),
    I("events", "aggregate_s", events_aggregate_s, 1, 3600),
    I("events", "rate", events_rate, 1, 1000000),
    I("events", "burst", events_burst, 1, 10000000),
    I("events", "retention_days", events_retention_days, 0, 36500),
    I("events", "max_rows", events_max_rows, 0, 2000000000),
    I("audit", "checkpoint_s", audit_checkpoint_s, 1, 86400),
};

void kf_config_defaults(struct kf_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "keyfleet");
    snprintf(c->store_url, sizeof(c->store_url), "keyfleet.db");
    snprintf(c->key_type, sizeof(c->key_type), "p256");
    snprintf(c->root_cert, sizeof(c->root_cert), "ca/root.crt");
    snprintf(c->root_key, sizeof(c->root_key), "ca/root.key");
    snprintf(c->issuing_cert, sizeof(c->issuing_cert), "ca/issuing.crt");
    snprintf(c->issuing_key, sizeof(c->issuing_key), "ca/issuing.key");
    snprintf(c->crl_file, sizeof(c->crl_file), "ca/crl.pem");
    c->device_cert_days = 30;
    c->service_cert_days = 365;
    c->server_cert_days = 365;
    c->crl_hours = 24;
    snprintf(c->server_cert, sizeof(c->server_cert), "server/server.crt");
    snprintf(c->server_key, sizeof(c->server_key), "server/server.key");
    snprintf(c->provisioning_listen, sizeof(c->provisioning_listen), "0.0.0.0:8443");
    c->workers = 0;
    c->request_timeout_ms = 10000;
    c->max_body_bytes = 65536;
    c->max_header_bytes = 8192;
    c->max_connections = 50000;
    c->max_connections_per_ip = 1024;
    c->max_connections_per_net = 4096;
    c->rate_per_ip = 100;
    c->rate_burst = 200;
    c->max_handshakes = 2048;
    c->max_handshakes_per_ip = 64;
    c->max_handshakes_per_net = 256;
    c->hello_timeout_ms = 2000;
    c->handshake_timeout_ms = 5000;
    c->retry_after = 2;
    c->approval_retry_after = 60;
    c->drain_timeout_ms = 10000;
    c->session_cache = 20000;
    c->commit_delay_us = 5000;
    snprintf(c->metrics_allow, sizeof(c->metrics_allow), "127.0.0.0/8,::1/128");
    c->metrics_certificate = 1;
    snprintf(c->hub_listen, sizeof(c->hub_listen), "0.0.0.0:8883");
    c->hub_max_packet_bytes = 262144;
    c->hub_connect_timeout_ms = 10000;
    c->hub_max_connections = 200000;
    c->hub_max_connections_per_ip = 10000;
    c->hub_max_connections_per_net = 50000;
    c->hub_max_handshakes_per_ip = 64;
    c->hub_max_handshakes_per_net = 512;
    c->hub_hello_timeout_ms = 2000;
    c->hub_handshake_timeout_ms = 5000;
    c->hub_connect_rate_per_ip = 50;
    c->hub_connect_burst = 200;
    c->hub_max_handshakes = 4096;
    c->hub_msg_rate = 1000;
    c->hub_msg_burst = 2000;
    c->hub_byte_rate = 4 * 1024 * 1024;
    c->hub_byte_burst = 8 * 1024 * 1024;
    snprintf(c->hub_rate_action, sizeof(c->hub_rate_action), "disconnect");
    snprintf(c->hub_acl_action, sizeof(c->hub_acl_action), "disconnect");
    c->hub_max_queued = 1000;
    c->hub_max_inflight = 32;
    c->hub_max_subscriptions = 64;
    c->hub_max_retained = 100000;
    c->hub_max_retained_bytes = 64 * 1024 * 1024;
    c->hub_max_retained_per_id = 100;
    c->hub_max_retained_bytes_per_id = 64 * 1024;
    c->hub_session_expiry_max_s = 86400;
    c->hub_flap_connects = 10;
    c->hub_flap_window_s = 60;
    c->hub_flap_ban_s = 300;
    c->hub_tls_offload = 1;
    c->hub_persistence = 1;
    snprintf(c->hub_tls_resumption, sizeof(c->hub_tls_resumption), "cache");
    snprintf(c->hub_allow, sizeof(c->hub_allow), "any");
    snprintf(c->hub_deny, sizeof(c->hub_deny), "none");
    c->hub_device_event_rate = 1;
    c->hub_device_event_burst = 20;
    c->events_aggregate_s = 10;
    c->events_rate = 100;
    c->events_burst = 1000;
    c->events_retention_days = 30;
    c->events_max_rows = 1000000;
    c->audit_checkpoint_s = 300;
}

struct load_ctx {
    struct kf_config *c;
    int set_on[KF_ARRAY_LEN(keys)]; /* the line each key was set on (0: not set) */
};

/* The string keys whose values have a shape, checked where they are read (file and line). */
static enum kf_err check_str(const char *section, const char *name, const char *value)
{
    if (strcmp(section, "provisioning") == 0 && strcmp(name, "metrics_allow") == 0 &&
        strcmp(value, "any") != 0 && strcmp(value, "none") != 0) {
        struct kf_cidr_list list;
        if (kf_cidr_parse_list(value, &list) != KF_OK)
            return kf_wrap(KF_E_CONFIG, "provisioning.metrics_allow");
    }
    if (strcmp(section, "hub") != 0) return KF_OK;
    if (strcmp(name, "rate_action") == 0 || strcmp(name, "acl_action") == 0) {
        if (strcmp(value, "disconnect") != 0 && strcmp(value, "drop") != 0)
            return kf_fail(KF_E_CONFIG, "hub.%s = \"%.40s\" must be disconnect or drop", name,
                           value);
    } else if (strcmp(name, "tls_resumption") == 0) {
        if (strcmp(value, "cache") != 0 && strcmp(value, "tickets") != 0)
            return kf_fail(KF_E_CONFIG, "hub.tls_resumption = \"%.40s\" must be cache or tickets",
                           value);
    } else if ((strcmp(name, "allow") == 0 && strcmp(value, "any") != 0) ||
               (strcmp(name, "deny") == 0 && strcmp(value, "none") != 0)) {
        struct kf_cidr_list list;
        if (kf_cidr_parse_list(value, &list) != KF_OK) return kf_wrap(KF_E_CONFIG, "hub.%s", name);
    }
    return KF_OK;
}

/* 1 or 0 for the words a switch may be written as (true/yes/on, false/no/off), else -1. */
static int switch_word(const char *value)
{
    static const char *const on[] = {"true", "yes", "on"}, *const off[] = {"false", "no", "off"};
    for (size_t i = 0; i < KF_ARRAY_LEN(on); i++) {
        if (strcasecmp(value, on[i]) == 0) return 1;
        if (strcasecmp(value, off[i]) == 0) return 0;
    }
    return -1;
}
static enum kf_err on_value(const char *section, const char *name, const char *value, int line,
                            void *arg)
{
    struct load_ctx *lc = arg;
    const struct key *k = NULL;
    size_t idx = 0;
    int known_sec = 0;

    for (size_t i = 0; i < KF_ARRAY_LEN(keys); i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        known_sec = 1;
        if (name && strcmp(keys[i].name, name) == 0) {
            k = &keys[i];
            idx = i;
        }
    }
    if (!known_sec) return kf_fail(KF_E_CONFIG, "unknown section [%s]", section);
    if (!name) return KF_OK; /* a known section's header */
    if (!k) return kf_fail(KF_E_CONFIG, "unknown key '%s' in section [%s]", name, section);
    if (lc->set_on[idx])
        return kf_fail(KF_E_CONFIG, "%s.%s is set twice (first on line %d)", section, name,
                       lc->set_on[idx]);
    lc->set_on[idx] = line;
    if (k->kind == STR) {
        if (strlen(value) >= k->size)
            return kf_fail(KF_E_CONFIG, "%s.%s is longer than %zu characters", section, name,
                           k->size - 1);
        if (!value[0]) return kf_fail(KF_E_CONFIG, "%s.%s is empty", section, name);
        snprintf((char *)lc->c + k->offset, k->size, "%s", value);
        return check_str(section, name, value);
    } else {
        char *end;
        long v;
        errno = 0;
        v = strtol(value, &end, 10);
        if (k->min == 0 && k->max == 1 && (end == value || *end)) {
            /* a switch: 0 and 1, or the words people write for them */
            v = switch_word(value);
            if (v < 0)
                return kf_fail(KF_E_CONFIG,
                               "%s.%s = \"%.40s\" is not a switch: 0 or 1 (true/false, yes/no, "
                               "on/off)",
                               section, name, value);
        } else if (errno || end == value || *end || v < k->min || v > k->max) {
            return kf_fail(KF_E_CONFIG, "%s.%s = \"%.40s\" is not a whole number from %d to %d",
                           section, name, value, k->min, k->max);
        }
        *(int *)((char *)lc->c + k->offset) = (int)v;
    }
    return KF_OK;
}

enum kf_err kf_config_load(const char *path, struct kf_config *c)
{
    struct load_ctx lc;
    struct kf_buf text;
    char dir[KF_CONF_PATH_MAX];
    enum kf_err rc;

    memset(&lc, 0, sizeof(lc));
    lc.c = c;
    kf_config_defaults(c);
    snprintf(dir, sizeof(dir), "%s", path);
    snprintf(c->dir, sizeof(c->dir), "%s", dirname(dir));
    /* The file may hold a PIN in a key URI: read it into memory that is wiped afterwards. */
    kf_buf_init_secret(&text, 256 * 1024);
    {
        struct stat st;
        if (stat(path, &st) != 0 && errno == ENOENT)
            return kf_fail(KF_E_NOT_FOUND, "no configuration file %s", path);
    }
    rc = kf_buf_read_file(&text, path);
    if (!rc) {
        rc = kf_ini_parse((const char *)text.data, text.len, on_value, &lc);
        if (rc) rc = kf_wrap(KF_E_CONFIG, "%s", path);
    }
    kf_buf_free(&text);
    return rc;
}

/* Keys whose values may carry a secret: a diff says only that they changed. */
static int secret_key(const struct key *k)
{
    return strcmp(k->section, "store") == 0 ||
           (strcmp(k->section, "ca") == 0 &&
            (strcmp(k->name, "issuing_key") == 0 || strcmp(k->name, "root_key") == 0));
}

char *kf_config_diff(const struct kf_config *a, const struct kf_config *b)
{
    json_t *j = json_object();
    char *text;
    for (size_t i = 0; j && i < KF_ARRAY_LEN(keys); i++) {
        const struct key *k = &keys[i];
        const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
        char name[96];
        json_t *change;
        if (k->kind == STR ? strcmp(pa, pb) == 0 : *(const int *)pa == *(const int *)pb) continue;
        snprintf(name, sizeof(name), "%s.%s", k->section, k->name);
        if (secret_key(k))
            change = json_pack("{s:b}", "changed", 1);
        else if (k->kind == STR)
            change = json_pack("{s:s, s:s}", "from", pa, "to", pb);
        else
            change = json_pack("{s:i, s:i}", "from", *(const int *)pa, "to", *(const int *)pb);
        json_object_set_new(j, name, change);
    }
    text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return text;
}

enum kf_err kf_config_resolve(const struct kf_config *c, const char *value, char *out, size_t cap)
{
    static const char *const schemes[] = {
        "pkcs11:", "tpm2:", "sqlite:", "postgresql:", "postgres:", "handle:"};
    for (size_t i = 0; i < KF_ARRAY_LEN(schemes); i++) {
        if (strncmp(value, schemes[i], strlen(schemes[i])) == 0) {
            if (strcmp(schemes[i], "sqlite:") == 0 && value[7] != '/')
                return kf_path_join(out, cap, c->dir, value + 7);
            if ((size_t)snprintf(out, cap, "%s", value) >= cap)
                return kf_fail(KF_E_OVERSIZE, "value too long: %.40s...", value);
            return KF_OK;
        }
    }
    return kf_path_join(out, cap, c->dir, value);
}

enum kf_err kf_config_write(const char *path, const struct kf_config *c, const char *when)
{
    struct kf_buf b;
    enum kf_err rc;

    /* Write only what reads back the same: no control characters, no edge blanks, no empties. */
    for (size_t i = 0; i < KF_ARRAY_LEN(keys); i++) {
        const char *v = (const char *)c + keys[i].offset;
        size_t n;
        if (keys[i].kind != STR) continue;
        n = strlen(v);
        if (n == 0 || v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
            return kf_fail(KF_E_INVALID, "%s.%s is empty or starts or ends with a blank",
                           keys[i].section, keys[i].name);
        for (size_t j = 0; j < n; j++)
            if ((unsigned char)v[j] < 0x20 || v[j] == 0x7f)
                return kf_fail(KF_E_INVALID, "%s.%s holds a control character", keys[i].section,
                               keys[i].name);
    }
    kf_buf_init(&b, 64 * 1024);
    rc = kf_buf_appendf(
        &b,
        "# keyfleet deployment configuration\n"
        "# %s\n"
        "#\n"
        "# Relative paths are relative to this file's directory, so the whole directory can be\n"
        "# moved. Unknown sections and keys are errors. keyfleetd reloads this file on SIGHUP.\n"
        "\n"
        "[deployment]\n"
        "# A name for this deployment: the O of the certificates it issues.\n"
        "name = %s\n"
        "\n"
        "[store]\n"
        "# The registry: a SQLite file (WAL, one writer, many readers).\n"
        "url = %s\n"
        "\n"
        "[ca]\n"
        "# Key type of the CA keys made at init (p256, p384, ed25519, rsa2048, rsa3072).\n"
        "key_type = %s\n"
        "root_cert = %s\n"
        "# The root CA's private key. keyfleet needs it only to make a new issuing CA: you may\n"
        "# move it offline after init (keep a backup!).\n"
        "root_key = %s\n"
        "issuing_cert = %s\n"
        "# The issuing CA's private key: a file, or a key in hardware:\n"
        "#   pkcs11:token=...;object=...;type=private?module-path=...&pin-source=file:...\n"
        "#   tpm2:handle:0x81000010\n"
        "issuing_key = %s\n"
        "# The published CRL, rewritten on every revocation and by `keyfleet ca crl`.\n"
        "crl_file = %s\n"
        "# Certificate lifetimes in days. Devices renew at two thirds of theirs.\n"
        "device_cert_days = %d\n"
        "# Instead, in minutes (0: use device_cert_days): short-lived certificates, renewal "
        "tests.\n"
        "device_cert_minutes = %d\n"
        "service_cert_days = %d\n"
        "server_cert_days = %d\n"
        "# How long each CRL is valid, in hours.\n"
        "crl_hours = %d\n"
        "\n"
        "[server]\n"
        "# keyfleetd's TLS certificate (with the issuing CA after it) and key.\n"
        "cert = %s\n"
        "key = %s\n"
        "\n"
        "[provisioning]\n"
        "# Zero-touch provisioning (EST and the register API) over mutual TLS.\n"
        "listen = %s\n"
        "# Worker threads, each with its own event loop and listener (0: one per core).\n"
        "workers = %d\n"
        "# A whole request, TLS handshake included, must arrive within this time.\n"
        "request_timeout_ms = %d\n"
        "# Largest request body (a CSR) and request head.\n"
        "max_body_bytes = %d\n"
        "max_header_bytes = %d\n"
        "# Connections in all, from one source address, and from one source network (IPv4\n"
        "# /24, IPv6 /64). A network never gets more than half of a global budget, and an\n"
        "# address never more than its network, whatever is set here.\n"
        "max_connections = %d\n"
        "max_connections_per_ip = %d\n"
        "max_connections_per_net = %d\n"
        "# Requests per second from one source address (0: no limit), and the burst allowed;\n"
        "# beyond them: 429 with Retry-After.\n"
        "rate_per_ip = %d\n"
        "rate_burst = %d\n"
        "# TLS handshakes in flight (a connection that has not sent its ClientHello yet is\n"
        "# one); connections beyond get 503 with Retry-After. From one address or network,\n"
        "# beyond their share, a connection is closed at once.\n"
        "max_handshakes = %d\n"
        "max_handshakes_per_ip = %d\n"
        "max_handshakes_per_net = %d\n"
        "# A new connection must send its ClientHello within hello_timeout_ms and finish the\n"
        "# TLS handshake within handshake_timeout_ms (both within request_timeout_ms).\n"
        "hello_timeout_ms = %d\n"
        "handshake_timeout_ms = %d\n"
        "retry_after = %d\n"
        "# A device that waits for an operator's approval (--approval manual) is told when to\n"
        "# come back: after this many seconds (202 and Retry-After).\n"
        "approval_retry_after = %d\n"
        "# On SIGTERM, how long requests in flight may take to finish.\n"
        "drain_timeout_ms = %d\n"
        "# TLS sessions kept for resumption (cheap reconnects).\n"
        "session_cache = %d\n"
        "# Group commit: while more devices are on their way, the store may wait this long for\n"
        "# them so that their records share one durable commit (0: never wait).\n"
        "commit_delay_us = %d\n"
        "# Who may read /metrics: these source networks (\"any\", \"none\"), and with\n"
        "# metrics_certificate = 1 a client with a keyfleet service certificate, from anywhere.\n"
        "metrics_allow = %s\n"
        "metrics_certificate = %d\n"
        "\n"
        "[hub]\n"
        "# MQTT 3.1.1 and 5.0 over mutual TLS (\"off\": no hub).\n"
        "listen = %s\n",
        when, c->name, c->store_url, c->key_type, c->root_cert, c->root_key, c->issuing_cert,
        c->issuing_key, c->crl_file, c->device_cert_days, c->device_cert_minutes,
        c->service_cert_days, c->server_cert_days, c->crl_hours, c->server_cert, c->server_key,
        c->provisioning_listen, c->workers, c->request_timeout_ms, c->max_body_bytes,
        c->max_header_bytes, c->max_connections, c->max_connections_per_ip,
        c->max_connections_per_net, c->rate_per_ip, c->rate_burst, c->max_handshakes,
        c->max_handshakes_per_ip, c->max_handshakes_per_net, c->hello_timeout_ms,
        c->handshake_timeout_ms, c->retry_after, c->approval_retry_after, c->drain_timeout_ms,
        c->session_cache, c->commit_delay_us, c->metrics_allow, c->metrics_certificate,
        c->hub_listen);
    if (!rc)
        rc = kf_buf_appendf(
            &b,
            "# Largest MQTT packet, either way (CONNACK tells clients).\n"
            "max_packet_bytes = %d\n"
            "# The TLS handshake and CONNECT must arrive within this time; the ClientHello\n"
            "# within hello_timeout_ms, the handshake within handshake_timeout_ms.\n"
            "connect_timeout_ms = %d\n"
            "hello_timeout_ms = %d\n"
            "handshake_timeout_ms = %d\n"
            "# Connections in all, from one address and from one network (IPv4 /24, IPv6 /64);\n"
            "# new connections per second from one address (0: no limit) and its burst; TLS\n"
            "# handshakes in flight, in all, per address and per network. A network never gets\n"
            "# more than half of a global budget, an address never more than its network.\n"
            "max_connections = %d\n"
            "max_connections_per_ip = %d\n"
            "max_connections_per_net = %d\n"
            "connect_rate_per_ip = %d\n"
            "connect_burst = %d\n"
            "max_handshakes = %d\n"
            "max_handshakes_per_ip = %d\n"
            "max_handshakes_per_net = %d\n"
            "# What one connection may send: PUBLISH packets and bytes per second (0: no\n"
            "# limit) with their bursts; beyond them, rate_action: disconnect or drop.\n"
            "msg_rate = %d\n"
            "msg_burst = %d\n"
            "byte_rate = %d\n"
            "byte_burst = %d\n"
            "rate_action = %s\n"
            "# An MQTT 3.1.1 client's refused PUBLISH: disconnect, or drop it silently (MQTT 5\n"
            "# clients get a reason code).\n"
            "acl_action = %s\n"
            "# Per session: messages queued, QoS 1/2 messages in flight, subscriptions.\n"
            "max_queued = %d\n"
            "max_inflight = %d\n"
            "max_subscriptions = %d\n"
            "# Retained messages kept, and their bytes, in all; and what one identity may hold\n"
            "# of them (beyond, a retained message is refused: MQTT 5 PUBACK 0x97, an event).\n"
            "max_retained = %d\n"
            "max_retained_bytes = %d\n"
            "max_retained_per_id = %d\n"
            "max_retained_bytes_per_id = %d\n"
            "# A persistent session ends this long after its client left (seconds).\n"
            "session_expiry_max_s = %d\n"
            "# Flapping: more than flap_connects connects by one id within flap_window_s\n"
            "# seconds bans the id for flap_ban_s seconds (0: never).\n"
            "flap_connects = %d\n"
            "flap_window_s = %d\n"
            "flap_ban_s = %d\n"
            "# Source networks (CIDR lists) allowed (\"any\") and refused (\"none\").\n"
            "allow = %s\n"
            "deny = %s\n"
            "# Idle TLS 1.3 connections: 1 lets keyfleetd's own record layer carry them after the\n"
            "# handshake so that OpenSSL's per-connection state can go (about 15 KB each); 0 "
            "keeps\n"
            "# every connection in OpenSSL.\n"
            "tls_offload = %d\n"
            "# Retained messages and persistent sessions kept in the store, so that a restart or "
            "a\n"
            "# crash gives them back; what a QoS 1 or 2 message needs kept is written before it "
            "is\n"
            "# acknowledged or delivered (at restart).\n"
            "persistence = %d\n"
            "# TLS resumption: cache (the server keeps each session: fastest reconnects, about\n"
            "# 6 KB a connection) or tickets (stateless: the client keeps it, nothing here).\n"
            "tls_resumption = %s\n"
            "# A device's own security events (devices/<id>/events) per second, and the burst;\n"
            "# beyond them they are refused (MQTT 5: 0x97) and counted in one event (0: no "
            "limit).\n"
            "device_event_rate = %d\n"
            "device_event_burst = %d\n"
            "\n"
            "[events]\n"
            "# Security events. Repeats of one refusal (same type, reason, identity and address)\n"
            "# are counted for aggregate_s seconds and recorded as one event with \"repeats\".\n"
            "aggregate_s = %d\n"
            "# Refusal events recorded per second in all, and the burst; beyond them they are\n"
            "# counted into one events.suppressed event per interval.\n"
            "rate = %d\n"
            "burst = %d\n"
            "# Retention: events older than retention_days are deleted (0: never), and the\n"
            "# oldest beyond max_rows (0: no bound). keyfleetd prunes once a minute.\n"
            "retention_days = %d\n"
            "max_rows = %d\n"
            "\n"
            "[audit]\n"
            "# keyfleetd signs a checkpoint of the audit log's head with the issuing CA's key "
            "this\n"
            "# often (seconds), when it moved, so that a rewrite of the log is caught by\n"
            "# keyfleet audit verify without a head kept elsewhere.\n"
            "checkpoint_s = %d\n",
            c->hub_max_packet_bytes, c->hub_connect_timeout_ms, c->hub_hello_timeout_ms,
            c->hub_handshake_timeout_ms, c->hub_max_connections, c->hub_max_connections_per_ip,
            c->hub_max_connections_per_net, c->hub_connect_rate_per_ip, c->hub_connect_burst,
            c->hub_max_handshakes, c->hub_max_handshakes_per_ip, c->hub_max_handshakes_per_net,
            c->hub_msg_rate, c->hub_msg_burst, c->hub_byte_rate, c->hub_byte_burst,
            c->hub_rate_action, c->hub_acl_action, c->hub_max_queued, c->hub_max_inflight,
            c->hub_max_subscriptions, c->hub_max_retained, c->hub_max_retained_bytes,
            c->hub_max_retained_per_id, c->hub_max_retained_bytes_per_id,
            c->hub_session_expiry_max_s, c->hub_flap_connects, c->hub_flap_window_s,
            c->hub_flap_ban_s, c->hub_allow, c->hub_deny, c->hub_tls_offload, c->hub_persistence,
            c->hub_tls_resumption, c->hub_device_event_rate, c->hub_device_event_burst,
            c->events_aggregate_s, c->events_rate, c->events_burst, c->events_retention_days,
            c->events_max_rows, c->audit_checkpoint_s);
    if (!rc) rc = kf_file_write(path, b.data, b.len, 0600, 0);
    kf_buf_free(&b);
    return rc;
}
