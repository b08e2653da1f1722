/*
 * mqtt_codec: MQTT 3.1.1 and 5.0 packets to and from bytes, shared by keyfleetd's hub and the
 * device SDK (libkeyfleet).
 *
 * Pure functions over (buffer, length): no I/O, no allocation, no globals, no OpenSSL, so that
 * it can run on a microcontroller and one fuzz target covers it. Decoded strings, binary data
 * and payloads point into the input buffer, which must outlive the decoded packet. Every length
 * read off the wire is checked against what remains before it is used.
 *
 * Decoding is strict: a packet that breaks a MUST of the specification is refused with the
 * reason code an MQTT 5 peer would disconnect with (0x81 malformed packet, 0x82 protocol error,
 * 0x95 packet too large, ...) and a short sentence naming the rule. UTF-8 strings are checked
 * as the specification says (well formed, no U+0000, no surrogates).
 *
 * Encoding writes into a caller's buffer and fails, writing nothing usable, when it is too small
 * or a value cannot be encoded (a string longer than 65,535 bytes, a packet longer than the
 * protocol allows).
 */
#ifndef KF_COMMON_MQTT_CODEC_H
#define KF_COMMON_MQTT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define KF_MQTT_V311 4 /* protocol level of MQTT 3.1.1 */
#define KF_MQTT_V5   5 /* protocol level of MQTT 5.0 */

#define KF_MQTT_REMAINING_MAX 268435455u /* the largest remaining length a varint holds */
#define KF_MQTT_HEADER_MAX    5          /* a fixed header: one byte and a 4-byte varint */

enum kf_mqtt_type {
    KF_MQTT_CONNECT = 1,
    KF_MQTT_CONNACK = 2,
    KF_MQTT_PUBLISH = 3,
    KF_MQTT_PUBACK = 4,
    KF_MQTT_PUBREC = 5,
    KF_MQTT_PUBREL = 6,
    KF_MQTT_PUBCOMP = 7,
    KF_MQTT_SUBSCRIBE = 8,
    KF_MQTT_SUBACK = 9,
    KF_MQTT_UNSUBSCRIBE = 10,
    KF_MQTT_UNSUBACK = 11,
    KF_MQTT_PINGREQ = 12,
    KF_MQTT_PINGRESP = 13,
    KF_MQTT_DISCONNECT = 14,
    KF_MQTT_AUTH = 15, /* MQTT 5 only */
};

/* "CONNECT", "PUBLISH", ...; "?" for anything else. Static. */
const char *kf_mqtt_type_name(int type);

/* Reason codes of MQTT 5 (the subset keyfleet sends or must understand). */
enum kf_mqtt_reason {
    KF_MQTT_RC_SUCCESS = 0x00, /* also: normal disconnection, granted QoS 0 */
    KF_MQTT_RC_GRANTED_QOS1 = 0x01,
    KF_MQTT_RC_GRANTED_QOS2 = 0x02,
    KF_MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    KF_MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    KF_MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    KF_MQTT_RC_CONTINUE_AUTH = 0x18,
    KF_MQTT_RC_REAUTHENTICATE = 0x19,
    KF_MQTT_RC_UNSPECIFIED = 0x80,
    KF_MQTT_RC_MALFORMED = 0x81,
    KF_MQTT_RC_PROTOCOL_ERROR = 0x82,
    KF_MQTT_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    KF_MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    KF_MQTT_RC_CLIENT_ID_NOT_VALID = 0x85,
    KF_MQTT_RC_BAD_USERNAME_PASSWORD = 0x86,
    KF_MQTT_RC_NOT_AUTHORIZED = 0x87,
    KF_MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    KF_MQTT_RC_SERVER_BUSY = 0x89,
    KF_MQTT_RC_BANNED = 0x8A,
    KF_MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    KF_MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    KF_MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    KF_MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    KF_MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    KF_MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    KF_MQTT_RC_PACKET_ID_IN_USE = 0x91,
    KF_MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    KF_MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    KF_MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    KF_MQTT_RC_PACKET_TOO_LARGE = 0x95,
    KF_MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    KF_MQTT_RC_QUOTA_EXCEEDED = 0x97,
    KF_MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    KF_MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    KF_MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    KF_MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    KF_MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    KF_MQTT_RC_SERVER_MOVED = 0x9D,
    KF_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    KF_MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    KF_MQTT_RC_MAX_CONNECT_TIME = 0xA0,
    KF_MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    KF_MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* "malformed_packet", "not_authorized", ...: a stable name for logs and events. Static. */
const char *kf_mqtt_reason_name(int reason);

/* MQTT 3.1.1 CONNACK return codes. */
enum kf_mqtt_connack_v311 {
    KF_MQTT_V311_ACCEPTED = 0,
    KF_MQTT_V311_BAD_VERSION = 1,
    KF_MQTT_V311_ID_REJECTED = 2,
    KF_MQTT_V311_SERVER_UNAVAILABLE = 3,
    KF_MQTT_V311_BAD_USERNAME_PASSWORD = 4,
    KF_MQTT_V311_NOT_AUTHORIZED = 5,
};

/* A string or binary value: `len` bytes at `p` (not NUL-terminated; borrowed). */
struct kf_mqtt_str {
    const uint8_t *p;
    uint16_t len;
};

/* A user property's name and value, for encoding. */
struct kf_mqtt_user_prop {
    struct kf_mqtt_str name, value;
};

/* Property identifiers of MQTT 5. */
enum kf_mqtt_prop_id {
    KF_MQTT_P_PAYLOAD_FORMAT = 0x01,
    KF_MQTT_P_MESSAGE_EXPIRY = 0x02,
    KF_MQTT_P_CONTENT_TYPE = 0x03,
    KF_MQTT_P_RESPONSE_TOPIC = 0x08,
    KF_MQTT_P_CORRELATION_DATA = 0x09,
    KF_MQTT_P_SUBSCRIPTION_ID = 0x0B,
    KF_MQTT_P_SESSION_EXPIRY = 0x11,
    KF_MQTT_P_ASSIGNED_CLIENT_ID = 0x12,
    KF_MQTT_P_SERVER_KEEP_ALIVE = 0x13,
    KF_MQTT_P_AUTH_METHOD = 0x15,
    KF_MQTT_P_AUTH_DATA = 0x16,
    KF_MQTT_P_REQUEST_PROBLEM_INFO = 0x17,
    KF_MQTT_P_WILL_DELAY = 0x18,
    KF_MQTT_P_REQUEST_RESPONSE_INFO = 0x19,
    KF_MQTT_P_RESPONSE_INFO = 0x1A,
    KF_MQTT_P_SERVER_REFERENCE = 0x1C,
    KF_MQTT_P_REASON_STRING = 0x1F,
    KF_MQTT_P_RECEIVE_MAXIMUM = 0x21,
    KF_MQTT_P_TOPIC_ALIAS_MAXIMUM = 0x22,
    KF_MQTT_P_TOPIC_ALIAS = 0x23,
    KF_MQTT_P_MAXIMUM_QOS = 0x24,
    KF_MQTT_P_RETAIN_AVAILABLE = 0x25,
    KF_MQTT_P_USER_PROPERTY = 0x26,
    KF_MQTT_P_MAXIMUM_PACKET_SIZE = 0x27,
    KF_MQTT_P_WILDCARD_SUB_AVAILABLE = 0x28,
    KF_MQTT_P_SUB_ID_AVAILABLE = 0x29,
    KF_MQTT_P_SHARED_SUB_AVAILABLE = 0x2A,
};

/* The bit of property `id` in kf_mqtt_props.present (ids are below 64). */
#define KF_MQTT_HAS(props, id) (((props)->present >> (id)) & 1u)

/*
 * The properties of a packet (MQTT 5). Decoding sets `present` and the values it found, and
 * points `raw` at the whole property block so that user properties (and, for PUBLISH, every
 * subscription identifier) can be walked with kf_mqtt_user_props_next / kf_mqtt_sub_ids_next.
 * Encoding writes the values whose bit is set in `present`, then `user[0..n_user)`.
 */
struct kf_mqtt_props {
    uint64_t present; /* bit `id` for each property given */
    uint8_t payload_format, request_problem_info, request_response_info, maximum_qos,
        retain_available, wildcard_sub_available, sub_id_available, shared_sub_available;
    uint16_t server_keep_alive, receive_maximum, topic_alias_maximum, topic_alias;
    uint32_t message_expiry, session_expiry, will_delay, maximum_packet_size;
    uint32_t subscription_id; /* the first one */
    struct kf_mqtt_str content_type, response_topic, correlation_data, assigned_client_id,
        auth_method, auth_data, response_info, server_reference, reason_string;
    /* decoded */
    const uint8_t *raw;
    size_t raw_len;
    unsigned n_user_props, n_sub_ids;
    /* to encode */
    const struct kf_mqtt_user_prop *user;
    size_t n_user;
};

/*
 * Walks the user properties of decoded `props`: start with `*pos` = 0; returns 1 and the next
 * pair, or 0 at the end.
 */
int kf_mqtt_user_props_next(const struct kf_mqtt_props *props, size_t *pos,
                            struct kf_mqtt_str *name, struct kf_mqtt_str *value);

/* Walks the subscription identifiers of decoded `props` the same way. */
int kf_mqtt_sub_ids_next(const struct kf_mqtt_props *props, size_t *pos, uint32_t *id);

struct kf_mqtt_connect {
    uint8_t version; /* KF_MQTT_V311 or KF_MQTT_V5 */
    int clean_start;
    uint16_t keep_alive; /* seconds; 0: none */
    struct kf_mqtt_props props;
    struct kf_mqtt_str client_id;
    int will;
    uint8_t will_qos;
    int will_retain;
    struct kf_mqtt_props will_props;
    struct kf_mqtt_str will_topic, will_payload;
    int has_username, has_password;
    struct kf_mqtt_str username, password;
};

struct kf_mqtt_connack {
    int session_present;
    uint8_t reason; /* MQTT 5 reason code, or the MQTT 3.1.1 return code */
    struct kf_mqtt_props props;
};

struct kf_mqtt_publish {
    int dup;
    uint8_t qos;
    int retain;
    struct kf_mqtt_str topic; /* may be empty in MQTT 5 when a topic alias is given */
    uint16_t packet_id;       /* QoS 1 and 2 */
    struct kf_mqtt_props props;
    const uint8_t *payload;
    size_t payload_len;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
struct kf_mqtt_ack {
    uint16_t packet_id;
    uint8_t reason; /* 0 when the packet leaves it out */
    struct kf_mqtt_props props;
};

/*
 * One topic filter of a SUBSCRIBE and its options. The decoder checks that the filter is valid
 * UTF-8; whether it is a valid filter (kf_mqtt_topic_filter_valid) is the caller's to judge for
 * each entry, since MQTT 5 refuses that one filter (0x8F in the SUBACK), not the packet.
 */
struct kf_mqtt_sub {
    struct kf_mqtt_str filter;
    uint8_t qos;
    int no_local, retain_as_published; /* MQTT 5 */
    uint8_t retain_handling;           /* MQTT 5: 0, 1 or 2 */
};

/* SUBSCRIBE and UNSUBSCRIBE: their list, checked whole, walked with kf_mqtt_subs_next. */
struct kf_mqtt_subscribe {
    uint16_t packet_id;
    struct kf_mqtt_props props;
    const uint8_t *list;
    size_t list_len;
    unsigned count;
};

/* SUBACK and UNSUBACK: one reason code per filter (UNSUBACK of MQTT 3.1.1 has none). */
struct kf_mqtt_suback {
    uint16_t packet_id;
    struct kf_mqtt_props props;
    const uint8_t *codes;
    unsigned count;
};

/* DISCONNECT and AUTH. */
struct kf_mqtt_disconnect {
    uint8_t reason;
    struct kf_mqtt_props props;
};

struct kf_mqtt_packet {
    enum kf_mqtt_type type;
    uint8_t flags; /* the low nibble of the first byte */
    size_t size;   /* the whole packet, fixed header included */
    union {
        struct kf_mqtt_connect connect;
        struct kf_mqtt_connack connack;
        struct kf_mqtt_publish publish;
        struct kf_mqtt_ack ack;
        struct kf_mqtt_subscribe subscribe;   /* also UNSUBSCRIBE */
        struct kf_mqtt_suback suback;         /* also UNSUBACK */
        struct kf_mqtt_disconnect disconnect; /* also AUTH */
    } u;
};

/*
 * Walks the entries of a decoded SUBSCRIBE or UNSUBSCRIBE: start with `*pos` = 0; returns 1 and
 * the next entry (for UNSUBSCRIBE only `filter` is set), or 0 at the end.
 */
int kf_mqtt_subs_next(const struct kf_mqtt_packet *pkt, uint8_t version, size_t *pos,
                      struct kf_mqtt_sub *sub);

enum kf_mqtt_status {
    KF_MQTT_OK = 0,      /* a whole packet was decoded */
    KF_MQTT_PARTIAL = 1, /* more bytes are needed; nothing is wrong yet */
    KF_MQTT_BAD = 2,     /* refused: see the error */
};

struct kf_mqtt_error {
    uint8_t reason;  /* the MQTT 5 reason code to disconnect with */
    const char *why; /* a short sentence naming the rule (static) */
};

/*
 * Decodes the packet at the start of `buf[0..len)` on a connection of protocol `version`
 * (0 before CONNECT: then only a CONNECT is accepted, and it tells the version). A packet larger
 * than `max_packet` bytes (fixed header included; 0: the protocol's limit) is refused as soon as
 * its length is read, before its bytes arrive. On KF_MQTT_OK the packet is `pkt->size` bytes.
 * The codec checks what the specification says of each packet on its own; what depends on the
 * session (packet ids in use, topic aliases, who may send what) is the caller's.
 */
enum kf_mqtt_status kf_mqtt_decode(const uint8_t *buf, size_t len, uint8_t version,
                                   size_t max_packet, struct kf_mqtt_packet *pkt,
                                   struct kf_mqtt_error *err);

/* ---- encoding: each writes one whole packet; 0 and *len set on success, -1 when it cannot ---- */

int kf_mqtt_encode_connect(uint8_t *out, size_t cap, const struct kf_mqtt_connect *c, size_t *len);
int kf_mqtt_encode_connack(uint8_t *out, size_t cap, uint8_t version,
                           const struct kf_mqtt_connack *c, size_t *len);
int kf_mqtt_encode_publish(uint8_t *out, size_t cap, uint8_t version,
                           const struct kf_mqtt_publish *p, size_t *len);
/* `type`: KF_MQTT_PUBACK, PUBREC, PUBREL or PUBCOMP. */
int kf_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t version, enum kf_mqtt_type type,
                       const struct kf_mqtt_ack *a, size_t *len);
/* SUBSCRIBE (`subs` with their options) or, with `unsubscribe`, UNSUBSCRIBE (filters only). */
int kf_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint8_t version, int unsubscribe,
                             uint16_t packet_id, const struct kf_mqtt_props *props,
                             const struct kf_mqtt_sub *subs, size_t n, size_t *len);
/* SUBACK or, with `unsuback`, UNSUBACK (MQTT 3.1.1's carries no codes). */
int kf_mqtt_encode_suback(uint8_t *out, size_t cap, uint8_t version, int unsuback,
                          uint16_t packet_id, const struct kf_mqtt_props *props,
                          const uint8_t *codes, size_t n, size_t *len);
/* PINGREQ, PINGRESP, or MQTT 3.1.1's DISCONNECT: a type with no body. */
int kf_mqtt_encode_empty(uint8_t *out, size_t cap, enum kf_mqtt_type type, size_t *len);
/* DISCONNECT or AUTH (MQTT 5; for 3.1.1 a DISCONNECT is empty). */
int kf_mqtt_encode_disconnect(uint8_t *out, size_t cap, uint8_t version, enum kf_mqtt_type type,
                              const struct kf_mqtt_disconnect *d, size_t *len);

/* ---- topics ---- */

/*
 * 1 when `s` is valid UTF-8 as MQTT requires: well formed (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF) and without U+0000.
 */
int kf_mqtt_utf8_valid(const uint8_t *s, size_t len);

/* 1 when `t` may be a PUBLISH topic name: not empty, no '+' or '#'. */
int kf_mqtt_topic_name_valid(const uint8_t *t, size_t len);

/* 1 when `f` is a valid topic filter: '#' only as the whole last level, '+' only a whole level. */
int kf_mqtt_topic_filter_valid(const uint8_t *f, size_t len);

/*
 * 1 when topic `name` matches `filter` (both valid). A filter starting with a wildcard does not
 * match topic names starting with '$' [MQTT-4.7.2-1].
 */
int kf_mqtt_topic_match(const uint8_t *filter, size_t flen, const uint8_t *name, size_t nlen);

#endif
