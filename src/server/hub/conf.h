/*
 * hub/conf: [hub], the hub's section of keyfleet.conf.
 *
 * The structs the hub, its listener and its broker read, and the table of their keys
 * (common/conf.h): keyfleet.conf's values go straight into them. It depends on nothing but
 * common and net's limit structs, so the deployment's configuration (ca/config.h) can hold it
 * without seeing the hub.
 */
#ifndef KF_SERVER_HUB_CONF_H
#define KF_SERVER_HUB_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "server/net/limits.h"

/* What the broker allows each session and keeps in all. */
struct kf_broker_conf {
    unsigned max_queued;              /* messages a session may hold queued */
    unsigned max_retained;            /* retained messages in all */
    size_t max_retained_bytes;        /* bytes they may hold in all */
    unsigned max_retained_per_id;     /* retained messages one publisher (origin) may hold */
    size_t max_retained_bytes_per_id; /* and their bytes */
    unsigned max_subs;                /* subscriptions a session may hold */
    unsigned max_inflight_in;         /* QoS 2 messages a client may have unreleased */
};

/* rate_action and acl_action */
enum kf_hub_action { KF_HUB_DISCONNECT = 0, KF_HUB_DROP = 1 };
/* tls_resumption */
enum kf_hub_resumption { KF_HUB_SESSION_CACHE = 0, KF_HUB_TICKETS = 1 };

struct kf_hub_conf {
    char listen[128];  /* "off": no hub */
    size_t max_packet; /* largest MQTT packet either way */
    /* the ClientHello, the handshake, and (first_deadline_ms) the CONNECT deadlines; the
     * allow and deny lists */
    struct kf_accept_conf accept;
    struct kf_limits_conf limits; /* connections, handshakes, new connections per second */
    double msg_rate, msg_burst;   /* inbound PUBLISH per second per connection (0: no limit) */
    double byte_rate, byte_burst; /* inbound bytes per second per connection (0: no limit) */
    int rate_action, acl_action;  /* enum kf_hub_action */
    uint16_t max_inflight;        /* QoS 1 and 2 messages in flight, either way */
    struct kf_broker_conf broker; /* its max_inflight_in is max_inflight */
    unsigned expiry_max;          /* persistent sessions end this long after their client left */
    unsigned flap_connects;       /* more connects than this by one id ... */
    int flap_window_s;            /* ... within this many seconds ... */
    int flap_ban_s;               /* ... ban the id for this long (0: no flapping check) */
    int tls_offload;              /* 1: idle TLS 1.3 connections leave OpenSSL for tlsrec */
    int persistence;              /* 1: retained messages and sessions are kept in the store */
    int tls_resumption;           /* enum kf_hub_resumption */
    double dev_event_rate, dev_event_burst; /* a device's own events per second, and the burst */
};

extern const struct kf_conf_section kf_hub_section;

#endif
