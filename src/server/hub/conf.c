#include "server/hub/conf.h"

#define H struct kf_hub_conf
static const struct kf_conf_key keys[] = {
    KF_CONF_TEXT_KEY(H, "listen", listen, "0.0.0.0:8883", NULL, 0),
    KF_CONF_NUM_KEY(H, "max_packet_bytes", max_packet, 64, 268435460, 262144,
                    "Largest MQTT packet, either way (CONNACK tells clients)."),
    KF_CONF_NUM_KEY(H, "connect_timeout_ms", accept.first_deadline_ms, 100, 600000, 10000,
                    "The TLS handshake and CONNECT must arrive within this time; the "
                    "ClientHello\nwithin hello_timeout_ms, the handshake within "
                    "handshake_timeout_ms."),
    KF_CONF_NUM_KEY(H, "hello_timeout_ms", accept.hello_timeout_ms, 100, 600000, 2000, NULL),
    KF_CONF_NUM_KEY(H, "handshake_timeout_ms", accept.handshake_timeout_ms, 100, 600000, 5000,
                    NULL),
    KF_CONF_NUM_KEY(H, "max_connections", limits.max_conns, 1, 10000000, 200000,
                    "Connections in all, from one address and from one network (IPv4 /24, IPv6 "
                    "/64);\nnew connections per second from one address (0: no limit) and its "
                    "burst; TLS\nhandshakes in flight, in all, per address and per network. A "
                    "network never gets\nmore than half of a global budget, an address never "
                    "more than its network."),
    KF_CONF_NUM_KEY(H, "max_connections_per_ip", limits.max_conns_per_ip, 1, 10000000, 10000, NULL),
    KF_CONF_NUM_KEY(H, "max_connections_per_net", limits.max_conns_per_net, 1, 10000000, 50000,
                    NULL),
    KF_CONF_NUM_KEY(H, "connect_rate_per_ip", limits.rate_per_ip, 0, 1000000, 50, NULL),
    KF_CONF_NUM_KEY(H, "connect_burst", limits.burst_per_ip, 1, 1000000, 200, NULL),
    KF_CONF_NUM_KEY(H, "max_handshakes", limits.max_handshakes, 1, 1000000, 4096, NULL),
    KF_CONF_NUM_KEY(H, "max_handshakes_per_ip", limits.max_handshakes_per_ip, 1, 1000000, 64, NULL),
    KF_CONF_NUM_KEY(H, "max_handshakes_per_net", limits.max_handshakes_per_net, 1, 1000000, 512,
                    NULL),
    KF_CONF_NUM_KEY(H, "msg_rate", msg_rate, 0, 10000000, 1000,
                    "What one connection may send: PUBLISH packets and bytes per second (0: "
                    "no\nlimit) with their bursts; beyond them, rate_action: disconnect or drop."),
    KF_CONF_NUM_KEY(H, "msg_burst", msg_burst, 1, 10000000, 2000, NULL),
    KF_CONF_NUM_KEY(H, "byte_rate", byte_rate, 0, 1000000000, 4194304, NULL),
    KF_CONF_NUM_KEY(H, "byte_burst", byte_burst, 1, 1000000000, 8388608, NULL),
    KF_CONF_CHOICE_KEY(H, "rate_action", rate_action, "disconnect|drop", "disconnect", NULL),
    KF_CONF_CHOICE_KEY(H, "acl_action", acl_action, "disconnect|drop", "disconnect",
                       "An MQTT 3.1.1 client's refused PUBLISH: disconnect, or drop it silently "
                       "(MQTT 5\nclients get a reason code)."),
    KF_CONF_NUM_KEY(H, "max_queued", broker.max_queued, 1, 1000000, 1000,
                    "Per session: messages queued, QoS 1/2 messages in flight, subscriptions."),
    KF_CONF_NUM_KEY(H, "max_inflight", max_inflight, 1, 65535, 32, NULL),
    KF_CONF_NUM_KEY(H, "max_subscriptions", broker.max_subs, 1, 100000, 64, NULL),
    KF_CONF_NUM_KEY(H, "max_retained", broker.max_retained, 0, 10000000, 100000,
                    "Retained messages kept, and their bytes, in all; and what one identity may "
                    "hold\nof them (beyond, a retained message is refused: MQTT 5 PUBACK 0x97, an "
                    "event)."),
    KF_CONF_NUM_KEY(H, "max_retained_bytes", broker.max_retained_bytes, 0, 2000000000, 67108864,
                    NULL),
    KF_CONF_NUM_KEY(H, "max_retained_per_id", broker.max_retained_per_id, 0, 10000000, 100, NULL),
    KF_CONF_NUM_KEY(H, "max_retained_bytes_per_id", broker.max_retained_bytes_per_id, 0, 2000000000,
                    65536, NULL),
    KF_CONF_NUM_KEY(H, "session_expiry_max_s", expiry_max, 0, 2000000000, 86400,
                    "A persistent session ends this long after its client left (seconds)."),
    KF_CONF_NUM_KEY(H, "flap_connects", flap_connects, 1, 1000000, 10,
                    "Flapping: more than flap_connects connects by one id within "
                    "flap_window_s\nseconds bans the id for flap_ban_s seconds (0: never)."),
    KF_CONF_NUM_KEY(H, "flap_window_s", flap_window_s, 1, 86400, 60, NULL),
    KF_CONF_NUM_KEY(H, "flap_ban_s", flap_ban_s, 0, 2592000, 300, NULL),
    KF_CONF_NETS_KEY(H, "allow", accept.allow, "any",
                     "Source networks (CIDR lists) allowed (\"any\") and refused (\"none\")."),
    KF_CONF_NETS_KEY(H, "deny", accept.deny, "none", NULL),
    KF_CONF_SWITCH_KEY(H, "tls_offload", tls_offload, 1,
                       "Idle TLS 1.3 connections: 1 lets keyfleetd's own record layer carry them "
                       "after the\nhandshake so that OpenSSL's per-connection state can go (about "
                       "15 KB each); 0 keeps\nevery connection in OpenSSL."),
    KF_CONF_SWITCH_KEY(H, "persistence", persistence, 1,
                       "Retained messages and persistent sessions kept in the store, so that a "
                       "restart or a\ncrash gives them back; what a QoS 1 or 2 message needs kept "
                       "is written before it is\nacknowledged or delivered (at restart)."),
    KF_CONF_CHOICE_KEY(H, "tls_resumption", tls_resumption, "cache|tickets", "cache",
                       "TLS resumption: cache (the server keeps each session: fastest "
                       "reconnects, about\n6 KB a connection) or tickets (stateless: the client "
                       "keeps it, nothing here)."),
    KF_CONF_NUM_KEY(H, "device_event_rate", dev_event_rate, 0, 100000, 1,
                    "A device's own security events (devices/<id>/events) per second, and the "
                    "burst;\nbeyond them they are refused (MQTT 5: 0x97) and counted in one event "
                    "(0: no limit)."),
    KF_CONF_NUM_KEY(H, "device_event_burst", dev_event_burst, 1, 1000000, 20, NULL),
};
#undef H

const struct kf_conf_section kf_hub_section = {
    "hub", "MQTT 3.1.1 and 5.0 over mutual TLS (\"off\": no hub).", keys, KF_ARRAY_LEN(keys)};
