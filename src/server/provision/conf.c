#include "server/provision/conf.h"

#define P struct kf_prov_conf
static const struct kf_conf_key keys[] = {
    KF_CONF_TEXT_KEY(P, "listen", listen, "0.0.0.0:8443", NULL, 0),
    KF_CONF_NUM_KEY(P, "workers", workers, 0, 256, 0,
                    "Worker threads, each with its own event loop and listener (0: one per core)."),
    KF_CONF_NUM_KEY(P, "request_timeout_ms", accept.first_deadline_ms, 100, 600000, 10000,
                    "A whole request, TLS handshake included, must arrive within this time."),
    KF_CONF_NUM_KEY(P, "max_body_bytes", http.max_body, 1024, 1048576, 65536,
                    "Largest request body (a CSR) and request head."),
    KF_CONF_NUM_KEY(P, "max_header_bytes", http.max_head, 1024, 65536, 8192, NULL),
    KF_CONF_NUM_KEY(P, "max_connections", limits.max_conns, 1, 1000000, 50000,
                    "Connections in all, from one source address, and from one source network "
                    "(IPv4\n/24, IPv6 /64). A network never gets more than half of a global "
                    "budget, and an\naddress never more than its network, whatever is set here."),
    KF_CONF_NUM_KEY(P, "max_connections_per_ip", limits.max_conns_per_ip, 1, 1000000, 1024, NULL),
    KF_CONF_NUM_KEY(P, "max_connections_per_net", limits.max_conns_per_net, 1, 1000000, 4096, NULL),
    KF_CONF_NUM_KEY(P, "rate_per_ip", limits.rate_per_ip, 0, 1000000, 100,
                    "Requests per second from one source address (0: no limit), and the burst "
                    "allowed;\nbeyond them: 429 with Retry-After."),
    KF_CONF_NUM_KEY(P, "rate_burst", limits.burst_per_ip, 1, 1000000, 200, NULL),
    KF_CONF_NUM_KEY(P, "max_handshakes", limits.max_handshakes, 1, 1000000, 2048,
                    "TLS handshakes in flight (a connection that has not sent its ClientHello "
                    "yet is\none); connections beyond get 503 with Retry-After. From one address "
                    "or network,\nbeyond their share, a connection is closed at once."),
    KF_CONF_NUM_KEY(P, "max_handshakes_per_ip", limits.max_handshakes_per_ip, 1, 1000000, 64, NULL),
    KF_CONF_NUM_KEY(P, "max_handshakes_per_net", limits.max_handshakes_per_net, 1, 1000000, 256,
                    NULL),
    KF_CONF_NUM_KEY(P, "hello_timeout_ms", accept.hello_timeout_ms, 100, 600000, 2000,
                    "A new connection must send its ClientHello within hello_timeout_ms and "
                    "finish the\nTLS handshake within handshake_timeout_ms (both within "
                    "request_timeout_ms)."),
    KF_CONF_NUM_KEY(P, "handshake_timeout_ms", accept.handshake_timeout_ms, 100, 600000, 5000,
                    NULL),
    KF_CONF_NUM_KEY(P, "retry_after", retry_after, 1, 3600, 2, NULL),
    KF_CONF_NUM_KEY(P, "approval_retry_after", approval_retry_after, 1, 86400, 60,
                    "A device that waits for an operator's approval (--approval manual) is told "
                    "when to\ncome back: after this many seconds (202 and Retry-After)."),
    KF_CONF_NUM_KEY(P, "drain_timeout_ms", drain_timeout_ms, 0, 600000, 10000,
                    "On SIGTERM, how long requests in flight may take to finish."),
    KF_CONF_NUM_KEY(P, "session_cache", session_cache, 0, 1000000, 20000,
                    "TLS sessions kept for resumption (cheap reconnects)."),
    KF_CONF_NUM_KEY(P, "commit_delay_us", commit_delay_us, 0, 100000, 5000,
                    "Group commit: while more devices are on their way, the store may wait this "
                    "long for\nthem so that their records share one durable commit (0: never "
                    "wait)."),
    KF_CONF_NUM_KEY(P, "max_downloads", max_downloads, 1, 100000, 256,
                    "Signed-update files (metadata and images under /updates/) sent at once, in "
                    "all;\nbeyond: 503 with Retry-After. Each holds at most 320 KiB of buffers."),
    KF_CONF_NUM_KEY(P, "max_downloads_per_identity", max_downloads_per_identity, 1, 100000, 4,
                    "Of those, at most this many to one device or service at once (beyond: 429\n"
                    "with Retry-After), so that one identity cannot take the slots of the "
                    "others."),
    KF_CONF_NETS_KEY(P, "metrics_allow", metrics_allow, "127.0.0.0/8,::1/128",
                     "Who may read /metrics: these source networks (\"any\", \"none\"), and "
                     "with\nmetrics_certificate = 1 a client with a keyfleet service certificate, "
                     "from anywhere."),
    KF_CONF_SWITCH_KEY(P, "metrics_certificate", metrics_certificate, 1, NULL),
};
#undef P

const struct kf_conf_section kf_prov_section = {
    "provisioning", "Zero-touch provisioning (EST and the register API) over mutual TLS.", keys,
    KF_ARRAY_LEN(keys)};
