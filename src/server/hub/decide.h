/*
 * decide: the hub's answers to what a client sends, as pure functions.
 *
 * Given a packet, who sent it (its certificate's identity), the registry snapshot and the hub's
 * settings, each says what the hub answers and why. No I/O, no locks, no clock, no events: the
 * handlers (handle_connect.c, handle_publish.c, handle_subscribe.c) apply the verdicts, write
 * the packets and record the events, and tests/unit/server/hub/decide.c tests the decisions
 * without a socket.
 */
#ifndef KF_SERVER_HUB_DECIDE_H
#define KF_SERVER_HUB_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "common/mqtt_codec.h"
#include "server/hub/acl.h"
#include "server/hub/conf.h"
#include "server/ops/snapshot.h"

#define KF_HUB_TOPIC_ALIAS_MAX 16    /* topic aliases a client may set (CONNACK says so) */
#define KF_HUB_EVENT_BODY_MAX  16384 /* a device's own security event */

/* Who a connection is: its certificate's identity. */
struct kf_hub_who {
    enum kf_acl_kind kind;
    const char *id;     /* the device id or service name */
    const char *serial; /* the certificate's serial, hex */
};

/* A refused CONNECT: the CONNACK's codes, and why (the close reason and the event's). */
struct kf_hub_connect_refusal {
    uint8_t rc5, rc311;
    const char *why;
    int auth_failed; /* an authentication failure: a hub.auth_failed event */
};

/*
 * Why the registry keeps `who` out ("device_disabled", "device_revoked", "service_revoked",
 * "revoked": the certificate itself), or NULL.
 */
const char *kf_hub_decide_kept_out(const struct kf_hub_who *who, const struct kf_snapshot *reg);

/*
 * CONNECT, before any session: the authentication method, the client id against the
 * certificate's, the registry. 0: accepted (`*assigned` 1 when the client sent no id and the
 * session takes the certificate's); 1: refused, with `*r` filled.
 */
int kf_hub_decide_connect(const struct kf_mqtt_connect *k, const struct kf_hub_who *who,
                          const struct kf_snapshot *reg, int *assigned,
                          struct kf_hub_connect_refusal *r);

/* The session a CONNECT gets. */
struct kf_hub_session_terms {
    uint32_t expiry;            /* seconds its session outlives the connection */
    uint16_t receive_max;       /* QoS 1 and 2 messages in flight to the client */
    uint32_t client_max_packet; /* the largest packet the client takes (0: the protocol's) */
};

/*
 * The will and the session of an accepted CONNECT. 0 with `*t` filled; 1 when the will's topic
 * is one the identity may not publish to (refused: KF_MQTT_RC_NOT_AUTHORIZED,
 * "will_not_authorized", a hub.acl_denied event).
 */
int kf_hub_decide_session(const struct kf_mqtt_connect *k, const struct kf_hub_who *who,
                          const struct kf_hub_conf *hc, struct kf_hub_session_terms *t);

/*
 * One SUBSCRIBE filter: 1 when it goes to the broker; 0 with its SUBACK `*code` (MQTT 5 reason
 * or 3.1.1's 0x80) and `*acl_denied` 1 when the identity may not use it (an event).
 */
int kf_hub_decide_filter(int version, const struct kf_hub_who *who, const uint8_t *filter,
                         size_t len, uint8_t *code, int *acl_denied);

/* A topic alias the client set: the topic it stands for (owned). */
struct kf_hub_alias {
    uint8_t *p;
    uint16_t len;
};

/*
 * A PUBLISH's topic: its subscription identifier (the server's alone), its topic alias (set or
 * used, in `aliases[0..KF_HUB_TOPIC_ALIAS_MAX]`), an empty topic. 0 with `*topic` the topic
 * (borrowed from the packet or the alias table); else the reason code to close with
 * (KF_MQTT_RC_SERVER_BUSY when out of memory) and `*why`.
 */
uint8_t kf_hub_decide_topic(const struct kf_mqtt_publish *p, struct kf_hub_alias *aliases,
                            struct kf_mqtt_str *topic, const char **why);

/* What becomes of a PUBLISH by its topic. */
enum kf_hub_publish_verdict {
    KF_HUB_PUBLISH_ROUTE = 0,  /* it may: on to the broker */
    KF_HUB_PUBLISH_REFUSE,     /* MQTT 5: acknowledged with KF_MQTT_RC_NOT_AUTHORIZED */
    KF_HUB_PUBLISH_DISCONNECT, /* MQTT 3.1.1, acl_action disconnect */
    KF_HUB_PUBLISH_DROP,       /* MQTT 3.1.1, acl_action drop: acknowledged, not routed */
};

/* Whether `who` may publish to `topic`, and if not, what the hub does (a hub.acl_denied event). */
enum kf_hub_publish_verdict kf_hub_decide_publish(int version, int acl_action,
                                                  const struct kf_hub_who *who,
                                                  struct kf_mqtt_str topic);

/* Whether `topic` is `who`'s own event topic, devices/<id>/events. */
int kf_hub_is_event_topic(const struct kf_hub_who *who, struct kf_mqtt_str topic);

/* A device's own security event, read from its payload. */
struct kf_hub_device_event {
    char type[72];     /* "device.<name>" */
    char severity[16]; /* info, warning, critical */
    char *detail;      /* compact JSON object text (owned), or NULL */
};

/*
 * Reads {"type": "device.<name>", "severity": "info"|"warning"|"critical", "detail": {...}}
 * (severity defaults to warning). 1 with `*e` filled (free e->detail); 0 with `*why`.
 */
int kf_hub_parse_device_event(const uint8_t *payload, size_t len, struct kf_hub_device_event *e,
                              const char **why);

#endif
