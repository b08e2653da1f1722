/*
 * config: keyfleet.conf, the deployment's INI file.
 *
 * Every key has a default; unknown sections and keys are errors (a typo must not silently fall
 * back to a default); every error names the file, the line and what is wrong. Paths in the file
 * are relative to the file's own directory, so a deployment directory can be moved whole.
 */
#ifndef KF_SERVER_CA_CONFIG_H
#define KF_SERVER_CA_CONFIG_H

#include <limits.h>

#include "common/err.h"

#define KF_CONF_PATH_MAX 1024
#define KF_CONF_NAME     "keyfleet.conf"

struct kf_config {
    char dir[KF_CONF_PATH_MAX]; /* the directory paths are relative to */
    /* [deployment] */
    char name[64];
    /* [store] */
    char store_url[KF_CONF_PATH_MAX];
    /* [ca] */
    char key_type[16];
    char root_cert[KF_CONF_PATH_MAX];
    char root_key[KF_CONF_PATH_MAX];
    char issuing_cert[KF_CONF_PATH_MAX];
    char issuing_key[KF_CONF_PATH_MAX]; /* a path, or a pkcs11: / tpm2: URI */
    char crl_file[KF_CONF_PATH_MAX];
    int device_cert_days;
    int device_cert_minutes; /* 0: device_cert_days */
    int service_cert_days;
    int server_cert_days;
    int crl_hours;
    /* [server] */
    char server_cert[KF_CONF_PATH_MAX];
    char server_key[KF_CONF_PATH_MAX];
    /* [provisioning] */
    char provisioning_listen[128];
    int workers;                 /* 0: one per core */
    int request_timeout_ms;      /* a whole request, TLS handshake included */
    int max_body_bytes;          /* request body (a CSR) */
    int max_header_bytes;        /* request line and headers */
    int max_connections;         /* in all */
    int max_connections_per_ip;  /* per source address */
    int rate_per_ip;             /* requests per second per source address; 0: no limit */
    int rate_burst;              /* requests a source address may send at once */
    int max_handshakes;          /* TLS handshakes in flight; beyond: 503 */
    int max_connections_per_net; /* per IPv4 /24, IPv6 /64 */
    int max_handshakes_per_ip;   /* handshakes in flight from one address; beyond: closed */
    int max_handshakes_per_net;  /* ... from one network */
    int hello_timeout_ms;        /* a new connection must send its ClientHello within this */
    int handshake_timeout_ms;    /* and finish the TLS handshake within this */
    int retry_after;             /* seconds, in 429 and 503 answers */
    int approval_retry_after;    /* seconds, in 202 answers to devices awaiting approval */
    int drain_timeout_ms;        /* on SIGTERM, how long in-flight requests may take */
    int session_cache;           /* TLS sessions kept for resumption */
    int commit_delay_us;         /* group commit: longest wait for more writers to share a commit */
    char metrics_allow[KF_CONF_PATH_MAX]; /* CIDRs that may read /metrics ("any", "none") */
    int metrics_certificate;              /* 1: a keyfleet service certificate may, from anywhere */
    /* [hub] */
    char hub_listen[128];       /* "off": no hub */
    int hub_max_packet_bytes;   /* largest MQTT packet either way */
    int hub_connect_timeout_ms; /* TLS handshake and CONNECT must arrive within this */
    int hub_max_connections;    /* in all */
    int hub_max_connections_per_ip;
    int hub_connect_rate_per_ip; /* new connections per second from one address; 0: no limit */
    int hub_connect_burst;
    int hub_max_handshakes; /* TLS handshakes in flight; beyond: closed at once */
    int hub_max_connections_per_net;
    int hub_max_handshakes_per_ip;
    int hub_max_handshakes_per_net;
    int hub_hello_timeout_ms;
    int hub_handshake_timeout_ms;
    int hub_msg_rate; /* inbound PUBLISH per second per connection; 0: no limit */
    int hub_msg_burst;
    int hub_byte_rate; /* inbound bytes per second per connection; 0: no limit */
    int hub_byte_burst;
    char hub_rate_action[16];  /* "disconnect" or "drop" */
    char hub_acl_action[16];   /* MQTT 3.1.1 refused PUBLISH: "disconnect" or "drop" */
    int hub_max_queued;        /* messages a session may hold */
    int hub_max_inflight;      /* QoS 1 and 2 messages in flight to a client */
    int hub_max_subscriptions; /* per session */
    int hub_max_retained;      /* retained messages in all */
    int hub_max_retained_bytes;
    int hub_max_retained_per_id; /* retained messages one identity may hold */
    int hub_max_retained_bytes_per_id;
    int hub_session_expiry_max_s; /* persistent sessions end this long after their client left */
    int hub_flap_connects;        /* more connects than this by one id ... */
    int hub_flap_window_s;        /* ... within this many seconds ... */
    int hub_flap_ban_s;           /* ... ban the id for this long (0: no flapping check) */
    char hub_allow[KF_CONF_PATH_MAX]; /* CIDRs allowed to connect ("" or "any": all) */
    char hub_deny[KF_CONF_PATH_MAX];  /* CIDRs refused ("" or "none": none) */
    int hub_tls_offload;              /* 1: idle TLS 1.3 connections leave OpenSSL for tlsrec */
    int hub_persistence;              /* 1: retained messages are kept in the store */
    char hub_tls_resumption[16];      /* "cache" (server session cache) or "tickets" (stateless) */
    int hub_device_event_rate;        /* a device's own events per second (devices/<id>/events) */
    int hub_device_event_burst;
    /* [events] */
    int events_aggregate_s;    /* repeats of one refusal are counted this long, then one event */
    int events_rate;           /* refusal events recorded per second in all ... */
    int events_burst;          /* ... and the burst */
    int events_retention_days; /* events older than this are deleted (0: kept for ever) */
    int events_max_rows;       /* and the oldest beyond this many (0: no bound) */
    /* [audit] */
    int audit_checkpoint_s; /* keyfleetd signs a checkpoint of the audit log's head this often */
};

/* Fills `c` with the defaults (relative paths; `dir` empty). */
void kf_config_defaults(struct kf_config *c);

/*
 * Reads `path` over the defaults. `c->dir` becomes the file's directory. KF_E_CONFIG with
 * "PATH:LINE: what is wrong" for a syntax error, an unknown section or key, or a bad value;
 * KF_E_NOT_FOUND when the file does not exist.
 */
enum kf_err kf_config_load(const char *path, struct kf_config *c);

/*
 * Writes `c` as a commented keyfleet.conf to `path` (mode 0600; refuses to overwrite). `when`
 * is a line saying who wrote it, for the header.
 */
enum kf_err kf_config_write(const char *path, const struct kf_config *c, const char *when);

/*
 * What differs between `a` and `b`, as JSON object text (owned; NULL when out of memory):
 * {"hub.msg_rate": {"from": 1000, "to": 5}, ...}. Keys whose values may hold a secret (the CA key
 * URIs, which may carry a PIN; the store URL) say only {"changed": true}. "{}" when nothing did.
 */
char *kf_config_diff(const struct kf_config *a, const struct kf_config *b);

/*
 * Resolves a path or URI from the config: URIs (pkcs11:, tpm2:, sqlite:, postgresql:) and
 * absolute paths are copied; relative paths are joined to `c->dir`.
 */
enum kf_err kf_config_resolve(const struct kf_config *c, const char *value, char *out, size_t cap);

#endif
