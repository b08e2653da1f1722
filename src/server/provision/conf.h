/*
 * provision/conf: [provisioning], the provisioning listener's section of keyfleet.conf.
 *
 * The struct the listener reads, and the table of its keys (common/conf.h): keyfleet.conf's
 * values go straight into it. It depends on nothing but common and net's limit structs, so the
 * deployment's configuration (ca/config.h) can hold it without seeing the listener.
 */
#ifndef KF_SERVER_PROVISION_CONF_H
#define KF_SERVER_PROVISION_CONF_H

#include "common/conf.h"
#include "common/http.h"
#include "server/net/limits.h"

struct kf_prov_conf {
    char listen[128];
    int workers;                  /* worker threads (0: one per core); for both listeners */
    struct kf_http_limits http;   /* request head and body bounds */
    struct kf_limits_conf limits; /* connections, handshakes and requests per second */
    /* hello and handshake deadlines; first_deadline_ms is request_timeout_ms, the deadline of a
     * whole request, TLS handshake included */
    struct kf_accept_conf accept;
    unsigned retry_after;                /* seconds, in 429 and 503 answers */
    unsigned approval_retry_after;       /* seconds, in 202 answers (awaiting approval) */
    int drain_timeout_ms;                /* on SIGTERM, how long in-flight requests may take */
    int session_cache;                   /* TLS sessions kept for resumption (both listeners) */
    int commit_delay_us;                 /* group commit: longest wait for more writers */
    unsigned max_downloads;              /* signed-update files being sent at once, in all */
    unsigned max_downloads_per_identity; /* ... to one device or service at once */
    struct kf_conf_nets metrics_allow;   /* who may read /metrics by address */
    int metrics_certificate;             /* 1: a keyfleet service certificate may, from anywhere */
};

extern const struct kf_conf_section kf_prov_section;

#endif
