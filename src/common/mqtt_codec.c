/* MQTT 3.1.1 and 5.0 packets: a strict decoder and an encoder, over caller-owned buffers. */
#include "common/mqtt_codec.h"

#include <string.h>

const char *kf_mqtt_type_name(int type)
{
    static const char *const names[] = {
        "?",       "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
        "PUBREL",  "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
    };
    return type >= 0 && type < (int)(sizeof(names) / sizeof(names[0])) ? names[type] : "?";
}

const char *kf_mqtt_reason_name(int reason)
{
    switch (reason) {
    case 0x00: return "success";
    case 0x01: return "granted_qos_1";
    case 0x02: return "granted_qos_2";
    case 0x04: return "disconnect_with_will";
    case 0x10: return "no_matching_subscribers";
    case 0x11: return "no_subscription_existed";
    case 0x18: return "continue_authentication";
    case 0x19: return "re_authenticate";
    case 0x80: return "unspecified_error";
    case 0x81: return "malformed_packet";
    case 0x82: return "protocol_error";
    case 0x83: return "implementation_specific_error";
    case 0x84: return "unsupported_protocol_version";
    case 0x85: return "client_identifier_not_valid";
    case 0x86: return "bad_user_name_or_password";
    case 0x87: return "not_authorized";
    case 0x88: return "server_unavailable";
    case 0x89: return "server_busy";
    case 0x8A: return "banned";
    case 0x8B: return "server_shutting_down";
    case 0x8C: return "bad_authentication_method";
    case 0x8D: return "keep_alive_timeout";
    case 0x8E: return "session_taken_over";
    case 0x8F: return "topic_filter_invalid";
    case 0x90: return "topic_name_invalid";
    case 0x91: return "packet_identifier_in_use";
    case 0x92: return "packet_identifier_not_found";
    case 0x93: return "receive_maximum_exceeded";
    case 0x94: return "topic_alias_invalid";
    case 0x95: return "packet_too_large";
    case 0x96: return "message_rate_too_high";
    case 0x97: return "quota_exceeded";
    case 0x98: return "administrative_action";
    case 0x99: return "payload_format_invalid";
    case 0x9A: return "retain_not_supported";
    case 0x9B: return "qos_not_supported";
    case 0x9C: return "use_another_server";
    case 0x9D: return "server_moved";
    case 0x9E: return "shared_subscriptions_not_supported";
    case 0x9F: return "connection_rate_exceeded";
    case 0xA0: return "maximum_connect_time";
    case 0xA1: return "subscription_identifiers_not_supported";
    case 0xA2: return "wildcard_subscriptions_not_supported";
    }
    return "unknown";
}

/* ---- UTF-8 and topics ---- */

int kf_mqtt_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        uint32_t cp;
        size_t n;
        if (c == 0) return 0; /* U+0000 [MQTT-1.5.4-2] */
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0; /* a continuation byte, an overlong lead (C0, C1) or beyond F4 */
        }
        if (len - i - 1 < n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
        if (cp >= 0xD800 && cp <= 0xDFFF) return 0; /* surrogates [MQTT-1.5.4-1] */
        i += n + 1;
    }
    return 1;
}

int kf_mqtt_topic_name_valid(const uint8_t *t, size_t len)
{
    if (len == 0 || len > 65535) return 0;
    for (size_t i = 0; i < len; i++)
        if (t[i] == '+' || t[i] == '#') return 0;
    return 1;
}

int kf_mqtt_topic_filter_valid(const uint8_t *f, size_t len)
{
    if (len == 0 || len > 65535) return 0;
    for (size_t i = 0; i < len; i++) {
        int starts = i == 0 || f[i - 1] == '/', ends = i + 1 == len || f[i + 1] == '/';
        if (f[i] == '#' && !(starts && i + 1 == len)) return 0;
        if (f[i] == '+' && !(starts && ends)) return 0;
    }
    return 1;
}

int kf_mqtt_topic_match(const uint8_t *filter, size_t flen, const uint8_t *name, size_t nlen)
{
    size_t f = 0, n = 0;
    if (nlen && name[0] == '$' && flen && (filter[0] == '+' || filter[0] == '#')) return 0;
    for (;;) {
        /* One level of each: filter[f, fe) and name[n, ne). */
        size_t fe = f, ne = n;
        while (fe < flen && filter[fe] != '/')
            fe++;
        while (ne < nlen && name[ne] != '/')
            ne++;
        if (fe - f == 1 && filter[f] == '#') return 1;
        if (!(fe - f == 1 && filter[f] == '+') &&
            (fe - f != ne - n || memcmp(filter + f, name + n, fe - f) != 0))
            return 0;
        if (fe == flen) return ne == nlen;
        f = fe + 1;
        if (ne == nlen) return flen - f == 1 && filter[f] == '#'; /* "a/#" matches "a" */
        n = ne + 1;
    }
}

/* ---- decoding ---- */

struct rd {
    const uint8_t *p, *end;
    struct kf_mqtt_error *err;
};

#define FAIL(r, reason_, why_)        \
    do {                              \
        (r)->err->reason = (reason_); \
        (r)->err->why = (why_);       \
        return -1;                    \
    } while (0)

#define MALFORMED(r, why_) FAIL(r, KF_MQTT_RC_MALFORMED, why_)
#define PROTOCOL(r, why_)  FAIL(r, KF_MQTT_RC_PROTOCOL_ERROR, why_)

static size_t left(const struct rd *r)
{
    return (size_t)(r->end - r->p);
}

static int rd_u8(struct rd *r, uint8_t *v, const char *what)
{
    if (left(r) < 1) MALFORMED(r, what);
    *v = *r->p++;
    return 0;
}

static int rd_u16(struct rd *r, uint16_t *v, const char *what)
{
    if (left(r) < 2) MALFORMED(r, what);
    *v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
    if (left(r) < 4) MALFORMED(r, what);
    *v = ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) | ((uint32_t)r->p[2] << 8) | r->p[3];
    r->p += 4;
    return 0;
}

/* A variable byte integer: at most 4 bytes, in the fewest bytes it takes [MQTT-1.5.5-1]. */
static int rd_varint(struct rd *r, uint32_t *v, const char *what)
{
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t b;
        if (left(r) < 1) MALFORMED(r, what);
        b = *r->p++;
        value |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                MALFORMED(r, "a variable byte integer is not in its shortest form");
            *v = value;
            return 0;
        }
    }
    MALFORMED(r, "a variable byte integer longer than 4 bytes");
}

static int rd_bin(struct rd *r, struct kf_mqtt_str *s, const char *what)
{
    uint16_t n;
    if (rd_u16(r, &n, what) || left(r) < n) MALFORMED(r, what);
    s->p = r->p;
    s->len = n;
    r->p += n;
    return 0;
}

static int rd_utf8(struct rd *r, struct kf_mqtt_str *s, const char *what, const char *bad)
{
    if (rd_bin(r, s, what)) return -1;
    if (!kf_mqtt_utf8_valid(s->p, s->len)) MALFORMED(r, bad);
    return 0;
}

/* Where a property may appear. */
enum {
    C_CONNECT = 1 << 0,
    C_CONNACK = 1 << 1,
    C_PUBLISH = 1 << 2,
    C_WILL = 1 << 3,
    C_ACK = 1 << 4, /* PUBACK, PUBREC, PUBREL, PUBCOMP */
    C_SUBSCRIBE = 1 << 5,
    C_SUBACK = 1 << 6,
    C_UNSUBSCRIBE = 1 << 7,
    C_UNSUBACK = 1 << 8,
    C_DISCONNECT = 1 << 9,
    C_AUTH = 1 << 10,
    C_ALL = 0x7FF,
};

enum ptype { T_BYTE, T_U16, T_U32, T_VARINT, T_UTF8, T_BIN, T_PAIR };

struct pdef {
    uint8_t id;
    uint8_t type;
    uint16_t where;
    uint8_t multi;
};

static const struct pdef pdefs[] = {
    {KF_MQTT_P_PAYLOAD_FORMAT, T_BYTE, C_PUBLISH | C_WILL, 0},
    {KF_MQTT_P_MESSAGE_EXPIRY, T_U32, C_PUBLISH | C_WILL, 0},
    {KF_MQTT_P_CONTENT_TYPE, T_UTF8, C_PUBLISH | C_WILL, 0},
    {KF_MQTT_P_RESPONSE_TOPIC, T_UTF8, C_PUBLISH | C_WILL, 0},
    {KF_MQTT_P_CORRELATION_DATA, T_BIN, C_PUBLISH | C_WILL, 0},
    {KF_MQTT_P_SUBSCRIPTION_ID, T_VARINT, C_PUBLISH | C_SUBSCRIBE, 1},
    {KF_MQTT_P_SESSION_EXPIRY, T_U32, C_CONNECT | C_CONNACK | C_DISCONNECT, 0},
    {KF_MQTT_P_ASSIGNED_CLIENT_ID, T_UTF8, C_CONNACK, 0},
    {KF_MQTT_P_SERVER_KEEP_ALIVE, T_U16, C_CONNACK, 0},
    {KF_MQTT_P_AUTH_METHOD, T_UTF8, C_CONNECT | C_CONNACK | C_AUTH, 0},
    {KF_MQTT_P_AUTH_DATA, T_BIN, C_CONNECT | C_CONNACK | C_AUTH, 0},
    {KF_MQTT_P_REQUEST_PROBLEM_INFO, T_BYTE, C_CONNECT, 0},
    {KF_MQTT_P_WILL_DELAY, T_U32, C_WILL, 0},
    {KF_MQTT_P_REQUEST_RESPONSE_INFO, T_BYTE, C_CONNECT, 0},
    {KF_MQTT_P_RESPONSE_INFO, T_UTF8, C_CONNACK, 0},
    {KF_MQTT_P_SERVER_REFERENCE, T_UTF8, C_CONNACK | C_DISCONNECT, 0},
    {KF_MQTT_P_REASON_STRING, T_UTF8,
     C_CONNACK | C_ACK | C_SUBACK | C_UNSUBACK | C_DISCONNECT | C_AUTH, 0},
    {KF_MQTT_P_RECEIVE_MAXIMUM, T_U16, C_CONNECT | C_CONNACK, 0},
    {KF_MQTT_P_TOPIC_ALIAS_MAXIMUM, T_U16, C_CONNECT | C_CONNACK, 0},
    {KF_MQTT_P_TOPIC_ALIAS, T_U16, C_PUBLISH, 0},
    {KF_MQTT_P_MAXIMUM_QOS, T_BYTE, C_CONNACK, 0},
    {KF_MQTT_P_RETAIN_AVAILABLE, T_BYTE, C_CONNACK, 0},
    {KF_MQTT_P_USER_PROPERTY, T_PAIR, C_ALL, 1},
    {KF_MQTT_P_MAXIMUM_PACKET_SIZE, T_U32, C_CONNECT | C_CONNACK, 0},
    {KF_MQTT_P_WILDCARD_SUB_AVAILABLE, T_BYTE, C_CONNACK, 0},
    {KF_MQTT_P_SUB_ID_AVAILABLE, T_BYTE, C_CONNACK, 0},
    {KF_MQTT_P_SHARED_SUB_AVAILABLE, T_BYTE, C_CONNACK, 0},
};

static const struct pdef *pdef_of(uint32_t id)
{
    for (size_t i = 0; i < sizeof(pdefs) / sizeof(pdefs[0]); i++)
        if (pdefs[i].id == id) return &pdefs[i];
    return NULL;
}

/* One property's value: read, range-checked, stored. */
static int rd_prop(struct rd *r, const struct pdef *d, struct kf_mqtt_props *p)
{
    uint8_t b = 0;
    uint16_t s = 0;
    uint32_t v = 0;
    struct kf_mqtt_str str, str2;

    switch (d->type) {
    case T_BYTE:
        if (rd_u8(r, &b, "a property is cut short")) return -1;
        break;
    case T_U16:
        if (rd_u16(r, &s, "a property is cut short")) return -1;
        break;
    case T_U32:
        if (rd_u32(r, &v, "a property is cut short")) return -1;
        break;
    case T_VARINT:
        if (rd_varint(r, &v, "a property is cut short")) return -1;
        break;
    case T_UTF8:
        if (rd_utf8(r, &str, "a property is cut short", "a property is not valid UTF-8")) return -1;
        break;
    case T_BIN:
        if (rd_bin(r, &str, "a property is cut short")) return -1;
        break;
    case T_PAIR:
        if (rd_utf8(r, &str, "a user property is cut short",
                    "a user property is not valid UTF-8") ||
            rd_utf8(r, &str2, "a user property is cut short", "a user property is not valid UTF-8"))
            return -1;
        p->n_user_props++;
        return 0;
    }
    switch (d->id) {
    case KF_MQTT_P_PAYLOAD_FORMAT:
        if (b > 1) PROTOCOL(r, "the payload format indicator is neither 0 nor 1");
        p->payload_format = b;
        break;
    case KF_MQTT_P_MESSAGE_EXPIRY: p->message_expiry = v; break;
    case KF_MQTT_P_CONTENT_TYPE: p->content_type = str; break;
    case KF_MQTT_P_RESPONSE_TOPIC:
        if (!kf_mqtt_topic_name_valid(str.p, str.len))
            PROTOCOL(r, "the response topic is not a topic name");
        p->response_topic = str;
        break;
    case KF_MQTT_P_CORRELATION_DATA: p->correlation_data = str; break;
    case KF_MQTT_P_SUBSCRIPTION_ID:
        if (v == 0) PROTOCOL(r, "a subscription identifier of 0");
        if (!p->n_sub_ids) p->subscription_id = v;
        p->n_sub_ids++;
        break;
    case KF_MQTT_P_SESSION_EXPIRY: p->session_expiry = v; break;
    case KF_MQTT_P_ASSIGNED_CLIENT_ID: p->assigned_client_id = str; break;
    case KF_MQTT_P_SERVER_KEEP_ALIVE: p->server_keep_alive = s; break;
    case KF_MQTT_P_AUTH_METHOD: p->auth_method = str; break;
    case KF_MQTT_P_AUTH_DATA: p->auth_data = str; break;
    case KF_MQTT_P_REQUEST_PROBLEM_INFO:
        if (b > 1) PROTOCOL(r, "request problem information is neither 0 nor 1");
        p->request_problem_info = b;
        break;
    case KF_MQTT_P_WILL_DELAY: p->will_delay = v; break;
    case KF_MQTT_P_REQUEST_RESPONSE_INFO:
        if (b > 1) PROTOCOL(r, "request response information is neither 0 nor 1");
        p->request_response_info = b;
        break;
    case KF_MQTT_P_RESPONSE_INFO: p->response_info = str; break;
    case KF_MQTT_P_SERVER_REFERENCE: p->server_reference = str; break;
    case KF_MQTT_P_REASON_STRING: p->reason_string = str; break;
    case KF_MQTT_P_RECEIVE_MAXIMUM:
        if (s == 0) PROTOCOL(r, "a receive maximum of 0");
        p->receive_maximum = s;
        break;
    case KF_MQTT_P_TOPIC_ALIAS_MAXIMUM: p->topic_alias_maximum = s; break;
    case KF_MQTT_P_TOPIC_ALIAS:
        if (s == 0) FAIL(r, KF_MQTT_RC_TOPIC_ALIAS_INVALID, "a topic alias of 0");
        p->topic_alias = s;
        break;
    case KF_MQTT_P_MAXIMUM_QOS:
        if (b > 1) PROTOCOL(r, "a maximum QoS other than 0 or 1");
        p->maximum_qos = b;
        break;
    case KF_MQTT_P_RETAIN_AVAILABLE:
        if (b > 1) PROTOCOL(r, "retain available is neither 0 nor 1");
        p->retain_available = b;
        break;
    case KF_MQTT_P_MAXIMUM_PACKET_SIZE:
        if (v == 0) PROTOCOL(r, "a maximum packet size of 0");
        p->maximum_packet_size = v;
        break;
    case KF_MQTT_P_WILDCARD_SUB_AVAILABLE:
        if (b > 1) PROTOCOL(r, "wildcard subscription available is neither 0 nor 1");
        p->wildcard_sub_available = b;
        break;
    case KF_MQTT_P_SUB_ID_AVAILABLE:
        if (b > 1) PROTOCOL(r, "subscription identifier available is neither 0 nor 1");
        p->sub_id_available = b;
        break;
    case KF_MQTT_P_SHARED_SUB_AVAILABLE:
        if (b > 1) PROTOCOL(r, "shared subscription available is neither 0 nor 1");
        p->shared_sub_available = b;
        break;
    }
    return 0;
}

/* A property block (MQTT 5): its length, then each property allowed in `where`, at most once. */
static int rd_props(struct rd *r, unsigned where, struct kf_mqtt_props *p)
{
    uint32_t n;
    struct rd block;

    memset(p, 0, sizeof(*p));
    if (rd_varint(r, &n, "the property length is cut short")) return -1;
    if (n > left(r)) MALFORMED(r, "the properties run past the end of the packet");
    block.p = r->p;
    block.end = r->p + n;
    block.err = r->err;
    p->raw = r->p;
    p->raw_len = n;
    while (left(&block)) {
        uint32_t id;
        const struct pdef *d;
        if (rd_varint(&block, &id, "a property identifier is cut short")) return -1;
        d = pdef_of(id);
        if (!d) MALFORMED(r, "an unknown property identifier");
        if (!(d->where & where)) PROTOCOL(r, "a property this packet may not carry");
        if (!d->multi && (p->present >> id & 1u)) PROTOCOL(r, "a property given twice");
        if (rd_prop(&block, d, p)) return -1;
        p->present |= (uint64_t)1 << id;
    }
    if (where == C_SUBSCRIBE && p->n_sub_ids > 1) PROTOCOL(r, "a property given twice");
    if (KF_MQTT_HAS(p, KF_MQTT_P_AUTH_DATA) && !KF_MQTT_HAS(p, KF_MQTT_P_AUTH_METHOD))
        PROTOCOL(r, "authentication data without an authentication method");
    r->p = block.end;
    return 0;
}

/*
 * Finds the next property `want` of decoded `props` from `*pos`: 1 with `r` at its value, 0 at the
 * end. The block was checked whole when it was decoded.
 */
static int find_prop(const struct kf_mqtt_props *props, size_t *pos, uint32_t want, struct rd *r)
{
    if (!props->raw || *pos >= props->raw_len) return 0;
    r->p = props->raw + *pos;
    r->end = props->raw + props->raw_len;
    while (left(r)) {
        uint32_t id;
        const struct pdef *d;
        struct kf_mqtt_props scratch;
        if (rd_varint(r, &id, "") || !(d = pdef_of(id))) return 0;
        if (id == want) return 1;
        memset(&scratch, 0, sizeof(scratch));
        if (rd_prop(r, d, &scratch)) return 0;
    }
    *pos = props->raw_len;
    return 0;
}

int kf_mqtt_user_props_next(const struct kf_mqtt_props *props, size_t *pos,
                            struct kf_mqtt_str *name, struct kf_mqtt_str *value)
{
    struct kf_mqtt_error e;
    struct rd r = {NULL, NULL, &e};
    if (!find_prop(props, pos, KF_MQTT_P_USER_PROPERTY, &r) || rd_bin(&r, name, "") ||
        rd_bin(&r, value, ""))
        return 0;
    *pos = (size_t)(r.p - props->raw);
    return 1;
}

int kf_mqtt_sub_ids_next(const struct kf_mqtt_props *props, size_t *pos, uint32_t *id)
{
    struct kf_mqtt_error e;
    struct rd r = {NULL, NULL, &e};
    if (!find_prop(props, pos, KF_MQTT_P_SUBSCRIPTION_ID, &r) || rd_varint(&r, id, "")) return 0;
    *pos = (size_t)(r.p - props->raw);
    return 1;
}

static int no_more(struct rd *r)
{
    if (left(r)) MALFORMED(r, "bytes left over at the end of the packet");
    return 0;
}

static int payload_utf8_ok(struct rd *r, const struct kf_mqtt_props *p, const uint8_t *data,
                           size_t len)
{
    if (KF_MQTT_HAS(p, KF_MQTT_P_PAYLOAD_FORMAT) && p->payload_format == 1 &&
        !kf_mqtt_utf8_valid(data, len))
        FAIL(r, KF_MQTT_RC_PAYLOAD_FORMAT_INVALID, "a payload marked UTF-8 that is not");
    return 0;
}

static int reason_in(uint8_t code, const uint8_t *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == code) return 1;
    return 0;
}

static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback5[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                     0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_suback311[] = {0x00, 0x01, 0x02, 0x80};
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                        0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                        0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};
static const uint8_t rc_connack5[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                      0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                      0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};

static int dec_connect(struct rd *r, struct kf_mqtt_connect *c)
{
    struct kf_mqtt_str name;
    uint8_t flags;

    memset(c, 0, sizeof(*c));
    if (rd_bin(r, &name, "the protocol name is cut short")) return -1;
    if (rd_u8(r, &c->version, "the protocol level is missing")) return -1;
    if (name.len != 4 || memcmp(name.p, "MQTT", 4) != 0) {
        if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0)
            FAIL(r, KF_MQTT_RC_UNSUPPORTED_VERSION, "MQTT 3.1 is not supported; use 3.1.1 or 5");
        PROTOCOL(r, "the protocol name is not MQTT");
    }
    if (c->version != KF_MQTT_V311 && c->version != KF_MQTT_V5)
        FAIL(r, KF_MQTT_RC_UNSUPPORTED_VERSION, "a protocol level other than 4 (3.1.1) or 5");
    if (rd_u8(r, &flags, "the connect flags are missing") ||
        rd_u16(r, &c->keep_alive, "the keep alive is missing"))
        return -1;
    if (flags & 0x01) MALFORMED(r, "the reserved connect flag is set");
    c->clean_start = (flags >> 1) & 1;
    c->will = (flags >> 2) & 1;
    c->will_qos = (flags >> 3) & 3;
    c->will_retain = (flags >> 5) & 1;
    c->has_password = (flags >> 6) & 1;
    c->has_username = (flags >> 7) & 1;
    if (c->will_qos == 3) MALFORMED(r, "a will QoS of 3");
    if (!c->will && (c->will_qos || c->will_retain))
        MALFORMED(r, "will QoS or will retain without a will");
    if (c->version == KF_MQTT_V311 && c->has_password && !c->has_username)
        MALFORMED(r, "a password without a user name");
    if (c->version == KF_MQTT_V5 && rd_props(r, C_CONNECT, &c->props)) return -1;
    if (rd_utf8(r, &c->client_id, "the client identifier is cut short",
                "the client identifier is not valid UTF-8"))
        return -1;
    if (c->will) {
        if (c->version == KF_MQTT_V5 && rd_props(r, C_WILL, &c->will_props)) return -1;
        if (rd_utf8(r, &c->will_topic, "the will topic is cut short",
                    "the will topic is not valid UTF-8") ||
            rd_bin(r, &c->will_payload, "the will payload is cut short"))
            return -1;
        if (!kf_mqtt_topic_name_valid(c->will_topic.p, c->will_topic.len))
            FAIL(r, KF_MQTT_RC_TOPIC_NAME_INVALID, "the will topic is not a topic name");
        if (payload_utf8_ok(r, &c->will_props, c->will_payload.p, c->will_payload.len)) return -1;
    }
    if (c->has_username &&
        rd_utf8(r, &c->username, "the user name is cut short", "the user name is not valid UTF-8"))
        return -1;
    if (c->has_password && rd_bin(r, &c->password, "the password is cut short")) return -1;
    return no_more(r);
}

static int dec_connack(struct rd *r, uint8_t version, struct kf_mqtt_connack *c)
{
    uint8_t flags;
    memset(c, 0, sizeof(*c));
    if (rd_u8(r, &flags, "CONNACK is cut short") || rd_u8(r, &c->reason, "CONNACK is cut short"))
        return -1;
    if (flags & 0xFE) MALFORMED(r, "reserved CONNACK flags are set");
    c->session_present = flags & 1;
    if (c->session_present && c->reason) PROTOCOL(r, "a session present with a refusal");
    if (version == KF_MQTT_V311) {
        if (c->reason > KF_MQTT_V311_NOT_AUTHORIZED) MALFORMED(r, "a reserved CONNACK return code");
    } else {
        if (!reason_in(c->reason, rc_connack5, sizeof(rc_connack5)))
            MALFORMED(r, "a reason code this packet may not carry");
        if (rd_props(r, C_CONNACK, &c->props)) return -1;
    }
    return no_more(r);
}

static int dec_publish(struct rd *r, uint8_t version, uint8_t flags, struct kf_mqtt_publish *p)
{
    memset(p, 0, sizeof(*p));
    p->dup = (flags >> 3) & 1;
    p->qos = (flags >> 1) & 3;
    p->retain = flags & 1;
    if (rd_utf8(r, &p->topic, "the topic name is cut short", "the topic name is not valid UTF-8"))
        return -1;
    if (p->qos > 0) {
        if (rd_u16(r, &p->packet_id, "the packet identifier is missing")) return -1;
        if (p->packet_id == 0) MALFORMED(r, "a packet identifier of 0");
    }
    if (version == KF_MQTT_V5 && rd_props(r, C_PUBLISH, &p->props)) return -1;
    if (p->topic.len == 0) {
        if (version != KF_MQTT_V5 || !KF_MQTT_HAS(&p->props, KF_MQTT_P_TOPIC_ALIAS))
            FAIL(r, KF_MQTT_RC_TOPIC_NAME_INVALID, "an empty topic name");
    } else if (!kf_mqtt_topic_name_valid(p->topic.p, p->topic.len)) {
        FAIL(r, KF_MQTT_RC_TOPIC_NAME_INVALID, "a topic name with a wildcard");
    }
    p->payload = r->p;
    p->payload_len = left(r);
    r->p = r->end;
    return payload_utf8_ok(r, &p->props, p->payload, p->payload_len);
}

static int dec_ack(struct rd *r, uint8_t version, enum kf_mqtt_type type, struct kf_mqtt_ack *a)
{
    memset(a, 0, sizeof(*a));
    if (rd_u16(r, &a->packet_id, "the packet identifier is missing")) return -1;
    if (a->packet_id == 0) MALFORMED(r, "a packet identifier of 0");
    if (version == KF_MQTT_V5 && left(r)) {
        int pub = type == KF_MQTT_PUBACK || type == KF_MQTT_PUBREC;
        if (rd_u8(r, &a->reason, "the reason code is missing")) return -1;
        if (pub ? !reason_in(a->reason, rc_puback, sizeof(rc_puback))
                : !reason_in(a->reason, rc_pubrel, sizeof(rc_pubrel)))
            MALFORMED(r, "a reason code this packet may not carry");
        if (left(r) && rd_props(r, C_ACK, &a->props)) return -1;
    }
    return no_more(r);
}

/* The list of a SUBSCRIBE or UNSUBSCRIBE, checked whole: strings, options, at least one. */
static int dec_subscribe(struct rd *r, uint8_t version, int unsub, struct kf_mqtt_subscribe *s)
{
    memset(s, 0, sizeof(*s));
    if (rd_u16(r, &s->packet_id, "the packet identifier is missing")) return -1;
    if (s->packet_id == 0) MALFORMED(r, "a packet identifier of 0");
    if (version == KF_MQTT_V5 && rd_props(r, unsub ? C_UNSUBSCRIBE : C_SUBSCRIBE, &s->props))
        return -1;
    s->list = r->p;
    s->list_len = left(r);
    while (left(r)) {
        struct kf_mqtt_str f;
        uint8_t opt;
        if (rd_utf8(r, &f, "a topic filter is cut short", "a topic filter is not valid UTF-8"))
            return -1;
        if (!unsub) {
            if (rd_u8(r, &opt, "the subscription options are missing")) return -1;
            if (version == KF_MQTT_V311 && (opt & 0xFC))
                MALFORMED(r, "reserved bits of the requested QoS are set");
            if (version == KF_MQTT_V5 && (opt & 0xC0))
                MALFORMED(r, "reserved bits of the subscription options are set");
            if ((opt & 3) == 3) MALFORMED(r, "a requested QoS of 3");
            if (version == KF_MQTT_V5 && ((opt >> 4) & 3) == 3)
                PROTOCOL(r, "a retain handling of 3");
        }
        s->count++;
    }
    if (s->count == 0) PROTOCOL(r, "no topic filter");
    return 0;
}

int kf_mqtt_subs_next(const struct kf_mqtt_packet *pkt, uint8_t version, size_t *pos,
                      struct kf_mqtt_sub *sub)
{
    const struct kf_mqtt_subscribe *s = &pkt->u.subscribe;
    struct kf_mqtt_error e;
    struct rd r;
    uint8_t opt = 0;

    if (!s->list || *pos >= s->list_len) return 0;
    r.p = s->list + *pos;
    r.end = s->list + s->list_len;
    r.err = &e;
    memset(sub, 0, sizeof(*sub));
    if (rd_bin(&r, &sub->filter, "")) return 0;
    if (pkt->type == KF_MQTT_SUBSCRIBE) {
        if (rd_u8(&r, &opt, "")) return 0;
        sub->qos = opt & 3;
        if (version == KF_MQTT_V5) {
            sub->no_local = (opt >> 2) & 1;
            sub->retain_as_published = (opt >> 3) & 1;
            sub->retain_handling = (opt >> 4) & 3;
        }
    }
    *pos = (size_t)(r.p - s->list);
    return 1;
}

static int dec_suback(struct rd *r, uint8_t version, int unsub, struct kf_mqtt_suback *s)
{
    memset(s, 0, sizeof(*s));
    if (rd_u16(r, &s->packet_id, "the packet identifier is missing")) return -1;
    if (s->packet_id == 0) MALFORMED(r, "a packet identifier of 0");
    if (version == KF_MQTT_V5 && rd_props(r, unsub ? C_UNSUBACK : C_SUBACK, &s->props)) return -1;
    s->codes = r->p;
    s->count = (unsigned)left(r);
    if (unsub && version == KF_MQTT_V311) return no_more(r);
    if (s->count == 0) PROTOCOL(r, "no reason code");
    for (unsigned i = 0; i < s->count; i++) {
        int ok = unsub ? reason_in(s->codes[i], rc_unsuback, sizeof(rc_unsuback))
                 : version == KF_MQTT_V5
                     ? reason_in(s->codes[i], rc_suback5, sizeof(rc_suback5))
                     : reason_in(s->codes[i], rc_suback311, sizeof(rc_suback311));
        if (!ok) MALFORMED(r, "a reason code this packet may not carry");
    }
    r->p = r->end;
    return 0;
}

static int dec_disconnect(struct rd *r, uint8_t version, int auth, struct kf_mqtt_disconnect *d)
{
    memset(d, 0, sizeof(*d));
    if (version == KF_MQTT_V311) return no_more(r);
    if (left(r)) {
        if (rd_u8(r, &d->reason, "the reason code is missing")) return -1;
        if (auth ? !reason_in(d->reason, rc_auth, sizeof(rc_auth))
                 : !reason_in(d->reason, rc_disconnect, sizeof(rc_disconnect)))
            MALFORMED(r, "a reason code this packet may not carry");
        if (left(r) && rd_props(r, auth ? C_AUTH : C_DISCONNECT, &d->props)) return -1;
    }
    return no_more(r);
}

static enum kf_mqtt_status bad(struct kf_mqtt_error *err, uint8_t reason, const char *why)
{
    err->reason = reason;
    err->why = why;
    return KF_MQTT_BAD;
}

enum kf_mqtt_status kf_mqtt_decode(const uint8_t *buf, size_t len, uint8_t version,
                                   size_t max_packet, struct kf_mqtt_packet *pkt,
                                   struct kf_mqtt_error *err)
{
    uint32_t remaining = 0;
    size_t hlen = 0, total;
    struct rd r;
    uint8_t type, flags;
    int rc = 0;

    err->reason = KF_MQTT_RC_SUCCESS;
    err->why = NULL;
    memset(pkt, 0, sizeof(*pkt));
    if (len < 1) return KF_MQTT_PARTIAL;
    type = buf[0] >> 4;
    flags = buf[0] & 0x0F;
    /* The remaining length, refused at once when it could never be valid or allowed. */
    for (size_t i = 1;; i++) {
        if (i > 4) return bad(err, KF_MQTT_RC_MALFORMED, "a remaining length longer than 4 bytes");
        if (i >= len) return KF_MQTT_PARTIAL;
        remaining |= (uint32_t)(buf[i] & 0x7F) << (7 * (i - 1));
        if (!(buf[i] & 0x80)) {
            if (i > 1 && buf[i] == 0)
                return bad(err, KF_MQTT_RC_MALFORMED,
                           "a remaining length that is not in its shortest form");
            hlen = i + 1;
            break;
        }
    }
    total = hlen + remaining;
    if (type == 0 || (type == KF_MQTT_AUTH && version != KF_MQTT_V5))
        return bad(err, KF_MQTT_RC_MALFORMED, "a reserved packet type");
    if (version == 0 && type != KF_MQTT_CONNECT)
        return bad(err, KF_MQTT_RC_PROTOCOL_ERROR, "the first packet must be CONNECT");
    if (max_packet && total > max_packet)
        return bad(err, KF_MQTT_RC_PACKET_TOO_LARGE, "the packet is larger than the maximum");
    /* The flags each type must carry [MQTT-2.1.3-1]. */
    if (type == KF_MQTT_PUBLISH) {
        if (((flags >> 1) & 3) == 3) return bad(err, KF_MQTT_RC_MALFORMED, "a PUBLISH with QoS 3");
        if ((flags & 0x08) && !(flags & 0x06))
            return bad(err, KF_MQTT_RC_MALFORMED, "DUP set on a QoS 0 PUBLISH");
    } else if (type == KF_MQTT_PUBREL || type == KF_MQTT_SUBSCRIBE || type == KF_MQTT_UNSUBSCRIBE) {
        if (flags != 0x02) return bad(err, KF_MQTT_RC_MALFORMED, "reserved flags are wrong");
    } else if (flags != 0) {
        return bad(err, KF_MQTT_RC_MALFORMED, "reserved flags are set");
    }
    if (len < total) return KF_MQTT_PARTIAL;

    pkt->type = (enum kf_mqtt_type)type;
    pkt->flags = flags;
    pkt->size = total;
    r.p = buf + hlen;
    r.end = buf + total;
    r.err = err;
    switch (pkt->type) {
    case KF_MQTT_CONNECT: rc = dec_connect(&r, &pkt->u.connect); break;
    case KF_MQTT_CONNACK: rc = dec_connack(&r, version, &pkt->u.connack); break;
    case KF_MQTT_PUBLISH: rc = dec_publish(&r, version, flags, &pkt->u.publish); break;
    case KF_MQTT_PUBACK:
    case KF_MQTT_PUBREC:
    case KF_MQTT_PUBREL:
    case KF_MQTT_PUBCOMP: rc = dec_ack(&r, version, pkt->type, &pkt->u.ack); break;
    case KF_MQTT_SUBSCRIBE: rc = dec_subscribe(&r, version, 0, &pkt->u.subscribe); break;
    case KF_MQTT_UNSUBSCRIBE: rc = dec_subscribe(&r, version, 1, &pkt->u.subscribe); break;
    case KF_MQTT_SUBACK: rc = dec_suback(&r, version, 0, &pkt->u.suback); break;
    case KF_MQTT_UNSUBACK: rc = dec_suback(&r, version, 1, &pkt->u.suback); break;
    case KF_MQTT_PINGREQ:
    case KF_MQTT_PINGRESP: rc = no_more(&r); break;
    case KF_MQTT_DISCONNECT: rc = dec_disconnect(&r, version, 0, &pkt->u.disconnect); break;
    case KF_MQTT_AUTH: rc = dec_disconnect(&r, version, 1, &pkt->u.disconnect); break;
    }
    if (rc) {
        memset(&pkt->u, 0, sizeof(pkt->u));
        return KF_MQTT_BAD;
    }
    return KF_MQTT_OK;
}

/* ---- encoding ---- */

/* A bounded writer; with p == NULL it only counts. */
struct wr {
    uint8_t *p;
    size_t cap, n;
    int bad;
};

static void w_bytes(struct wr *w, const void *src, size_t n)
{
    if (w->bad) return;
    if (w->p) {
        if (w->cap - w->n < n) {
            w->bad = 1;
            return;
        }
        if (n) memcpy(w->p + w->n, src, n);
    }
    w->n += n;
}

static void w_u8(struct wr *w, uint8_t v)
{
    w_bytes(w, &v, 1);
}

static void w_u16(struct wr *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 2);
}

static void w_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 4);
}

static void w_varint(struct wr *w, uint32_t v)
{
    if (v > KF_MQTT_REMAINING_MAX) {
        w->bad = 1;
        return;
    }
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (v) b |= 0x80;
        w_u8(w, b);
    } while (v);
}

static void w_str(struct wr *w, struct kf_mqtt_str s)
{
    if (s.len && !s.p) {
        w->bad = 1;
        return;
    }
    w_u16(w, s.len);
    w_bytes(w, s.p, s.len);
}

static void w_cstr(struct wr *w, const char *s)
{
    size_t n = strlen(s);
    w_u16(w, (uint16_t)n);
    w_bytes(w, s, n);
}

/* The properties set in `p` (those allowed in `where`), without their length. */
static void w_props_body(struct wr *w, const struct kf_mqtt_props *p, unsigned where)
{
    if (!p) return;
    for (size_t i = 0; i < sizeof(pdefs) / sizeof(pdefs[0]); i++) {
        const struct pdef *d = &pdefs[i];
        uint32_t v = 0;
        uint16_t s = 0;
        uint8_t b = 0;
        struct kf_mqtt_str str = {NULL, 0};
        if (d->type == T_PAIR || !KF_MQTT_HAS(p, d->id)) continue;
        if (!(d->where & where)) {
            w->bad = 1; /* a property this packet may not carry */
            return;
        }
        switch (d->id) {
        case KF_MQTT_P_PAYLOAD_FORMAT: b = p->payload_format; break;
        case KF_MQTT_P_MESSAGE_EXPIRY: v = p->message_expiry; break;
        case KF_MQTT_P_CONTENT_TYPE: str = p->content_type; break;
        case KF_MQTT_P_RESPONSE_TOPIC: str = p->response_topic; break;
        case KF_MQTT_P_CORRELATION_DATA: str = p->correlation_data; break;
        case KF_MQTT_P_SUBSCRIPTION_ID: v = p->subscription_id; break;
        case KF_MQTT_P_SESSION_EXPIRY: v = p->session_expiry; break;
        case KF_MQTT_P_ASSIGNED_CLIENT_ID: str = p->assigned_client_id; break;
        case KF_MQTT_P_SERVER_KEEP_ALIVE: s = p->server_keep_alive; break;
        case KF_MQTT_P_AUTH_METHOD: str = p->auth_method; break;
        case KF_MQTT_P_AUTH_DATA: str = p->auth_data; break;
        case KF_MQTT_P_REQUEST_PROBLEM_INFO: b = p->request_problem_info; break;
        case KF_MQTT_P_WILL_DELAY: v = p->will_delay; break;
        case KF_MQTT_P_REQUEST_RESPONSE_INFO: b = p->request_response_info; break;
        case KF_MQTT_P_RESPONSE_INFO: str = p->response_info; break;
        case KF_MQTT_P_SERVER_REFERENCE: str = p->server_reference; break;
        case KF_MQTT_P_REASON_STRING: str = p->reason_string; break;
        case KF_MQTT_P_RECEIVE_MAXIMUM: s = p->receive_maximum; break;
        case KF_MQTT_P_TOPIC_ALIAS_MAXIMUM: s = p->topic_alias_maximum; break;
        case KF_MQTT_P_TOPIC_ALIAS: s = p->topic_alias; break;
        case KF_MQTT_P_MAXIMUM_QOS: b = p->maximum_qos; break;
        case KF_MQTT_P_RETAIN_AVAILABLE: b = p->retain_available; break;
        case KF_MQTT_P_MAXIMUM_PACKET_SIZE: v = p->maximum_packet_size; break;
        case KF_MQTT_P_WILDCARD_SUB_AVAILABLE: b = p->wildcard_sub_available; break;
        case KF_MQTT_P_SUB_ID_AVAILABLE: b = p->sub_id_available; break;
        case KF_MQTT_P_SHARED_SUB_AVAILABLE: b = p->shared_sub_available; break;
        }
        w_u8(w, d->id);
        switch (d->type) {
        case T_BYTE: w_u8(w, b); break;
        case T_U16: w_u16(w, s); break;
        case T_U32: w_u32(w, v); break;
        case T_VARINT: w_varint(w, v); break;
        default: w_str(w, str); break;
        }
    }
    for (size_t i = 0; i < p->n_user; i++) {
        w_u8(w, KF_MQTT_P_USER_PROPERTY);
        w_str(w, p->user[i].name);
        w_str(w, p->user[i].value);
    }
}

static size_t props_len(const struct kf_mqtt_props *p, unsigned where, int *bad)
{
    struct wr c = {NULL, 0, 0, 0};
    w_props_body(&c, p, where);
    if (c.bad) *bad = 1;
    return c.n;
}

static void w_props(struct wr *w, const struct kf_mqtt_props *p, unsigned where)
{
    int bad = 0;
    size_t n = props_len(p, where, &bad);
    if (bad || n > KF_MQTT_REMAINING_MAX) {
        w->bad = 1;
        return;
    }
    w_varint(w, (uint32_t)n);
    w_props_body(w, p, where);
}

/* What an encoder writes after the fixed header. */
struct body {
    int (*fn)(struct wr *w, const void *arg);
    const void *arg;
};

/* Writes the fixed header and the body (measured first), or fails writing nothing usable. */
static int emit(uint8_t *out, size_t cap, uint8_t first, const struct body *b, size_t *len)
{
    struct wr count = {NULL, 0, 0, 0}, w = {out, cap, 0, 0};
    if (b->fn(&count, b->arg) || count.bad || count.n > KF_MQTT_REMAINING_MAX) return -1;
    w_u8(&w, first);
    w_varint(&w, (uint32_t)count.n);
    if (b->fn(&w, b->arg) || w.bad) return -1;
    *len = w.n;
    return 0;
}

static int body_connect(struct wr *w, const void *arg)
{
    const struct kf_mqtt_connect *c = arg;
    uint8_t flags = 0;
    if ((c->version != KF_MQTT_V311 && c->version != KF_MQTT_V5) || c->will_qos > 2 ||
        (!c->will && (c->will_qos || c->will_retain)))
        return -1;
    flags |= c->clean_start ? 0x02 : 0;
    flags |= c->will ? 0x04 : 0;
    flags |= (uint8_t)(c->will_qos << 3);
    flags |= c->will_retain ? 0x20 : 0;
    flags |= c->has_password ? 0x40 : 0;
    flags |= c->has_username ? 0x80 : 0;
    w_cstr(w, "MQTT");
    w_u8(w, c->version);
    w_u8(w, flags);
    w_u16(w, c->keep_alive);
    if (c->version == KF_MQTT_V5) w_props(w, &c->props, C_CONNECT);
    w_str(w, c->client_id);
    if (c->will) {
        if (c->version == KF_MQTT_V5) w_props(w, &c->will_props, C_WILL);
        w_str(w, c->will_topic);
        w_str(w, c->will_payload);
    }
    if (c->has_username) w_str(w, c->username);
    if (c->has_password) w_str(w, c->password);
    return 0;
}

int kf_mqtt_encode_connect(uint8_t *out, size_t cap, const struct kf_mqtt_connect *c, size_t *len)
{
    struct body b = {body_connect, c};
    return emit(out, cap, KF_MQTT_CONNECT << 4, &b, len);
}

struct connack_arg {
    uint8_t version;
    const struct kf_mqtt_connack *c;
};

static int body_connack(struct wr *w, const void *arg)
{
    const struct connack_arg *a = arg;
    w_u8(w, a->c->session_present ? 1 : 0);
    w_u8(w, a->c->reason);
    if (a->version == KF_MQTT_V5) w_props(w, &a->c->props, C_CONNACK);
    return 0;
}

int kf_mqtt_encode_connack(uint8_t *out, size_t cap, uint8_t version,
                           const struct kf_mqtt_connack *c, size_t *len)
{
    struct connack_arg a = {version, c};
    struct body b = {body_connack, &a};
    return emit(out, cap, KF_MQTT_CONNACK << 4, &b, len);
}

struct publish_arg {
    uint8_t version;
    const struct kf_mqtt_publish *p;
};

static int body_publish(struct wr *w, const void *arg)
{
    const struct publish_arg *a = arg;
    const struct kf_mqtt_publish *p = a->p;
    if (p->qos > 2 || (p->qos && p->packet_id == 0)) return -1;
    w_str(w, p->topic);
    if (p->qos) w_u16(w, p->packet_id);
    if (a->version == KF_MQTT_V5) w_props(w, &p->props, C_PUBLISH);
    w_bytes(w, p->payload, p->payload_len);
    return 0;
}

int kf_mqtt_encode_publish(uint8_t *out, size_t cap, uint8_t version,
                           const struct kf_mqtt_publish *p, size_t *len)
{
    struct publish_arg a = {version, p};
    struct body b = {body_publish, &a};
    uint8_t first = (uint8_t)(KF_MQTT_PUBLISH << 4 | (p->dup && p->qos ? 0x08 : 0) |
                              (p->qos & 3) << 1 | (p->retain ? 1 : 0));
    return emit(out, cap, first, &b, len);
}

struct ack_arg {
    uint8_t version;
    const struct kf_mqtt_ack *a;
};

static int body_ack(struct wr *w, const void *arg)
{
    const struct ack_arg *x = arg;
    int bad = 0;
    if (x->a->packet_id == 0) return -1;
    w_u16(w, x->a->packet_id);
    if (x->version == KF_MQTT_V5) {
        size_t n = props_len(&x->a->props, C_ACK, &bad);
        if (bad) return -1;
        /* The reason and properties may be left out when there is nothing to say. */
        if (x->a->reason || n) w_u8(w, x->a->reason);
        if (n) w_props(w, &x->a->props, C_ACK);
    }
    return 0;
}

int kf_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t version, enum kf_mqtt_type type,
                       const struct kf_mqtt_ack *a, size_t *len)
{
    struct ack_arg x = {version, a};
    struct body b = {body_ack, &x};
    if (type < KF_MQTT_PUBACK || type > KF_MQTT_PUBCOMP) return -1;
    return emit(out, cap, (uint8_t)(type << 4 | (type == KF_MQTT_PUBREL ? 0x02 : 0)), &b, len);
}

struct sub_arg {
    uint8_t version;
    int unsub;
    uint16_t packet_id;
    const struct kf_mqtt_props *props;
    const struct kf_mqtt_sub *subs;
    size_t n;
};

static int body_subscribe(struct wr *w, const void *arg)
{
    const struct sub_arg *a = arg;
    if (a->packet_id == 0 || a->n == 0) return -1;
    w_u16(w, a->packet_id);
    if (a->version == KF_MQTT_V5) w_props(w, a->props, a->unsub ? C_UNSUBSCRIBE : C_SUBSCRIBE);
    for (size_t i = 0; i < a->n; i++) {
        const struct kf_mqtt_sub *s = &a->subs[i];
        w_str(w, s->filter);
        if (!a->unsub) {
            uint8_t opt = s->qos & 3;
            if (s->qos > 2 || s->retain_handling > 2) return -1;
            if (a->version == KF_MQTT_V5)
                opt |= (uint8_t)((s->no_local ? 0x04 : 0) | (s->retain_as_published ? 0x08 : 0) |
                                 (s->retain_handling << 4));
            w_u8(w, opt);
        }
    }
    return 0;
}

int kf_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint8_t version, int unsubscribe,
                             uint16_t packet_id, const struct kf_mqtt_props *props,
                             const struct kf_mqtt_sub *subs, size_t n, size_t *len)
{
    struct sub_arg a = {version, unsubscribe, packet_id, props, subs, n};
    struct body b = {body_subscribe, &a};
    return emit(out, cap,
                (uint8_t)((unsubscribe ? KF_MQTT_UNSUBSCRIBE : KF_MQTT_SUBSCRIBE) << 4 | 0x02), &b,
                len);
}

struct suback_arg {
    uint8_t version;
    int unsub;
    uint16_t packet_id;
    const struct kf_mqtt_props *props;
    const uint8_t *codes;
    size_t n;
};

static int body_suback(struct wr *w, const void *arg)
{
    const struct suback_arg *a = arg;
    if (a->packet_id == 0) return -1;
    w_u16(w, a->packet_id);
    if (a->unsub && a->version == KF_MQTT_V311) return 0;
    if (a->n == 0) return -1;
    if (a->version == KF_MQTT_V5) w_props(w, a->props, a->unsub ? C_UNSUBACK : C_SUBACK);
    w_bytes(w, a->codes, a->n);
    return 0;
}

int kf_mqtt_encode_suback(uint8_t *out, size_t cap, uint8_t version, int unsuback,
                          uint16_t packet_id, const struct kf_mqtt_props *props,
                          const uint8_t *codes, size_t n, size_t *len)
{
    struct suback_arg a = {version, unsuback, packet_id, props, codes, n};
    struct body b = {body_suback, &a};
    return emit(out, cap, (uint8_t)((unsuback ? KF_MQTT_UNSUBACK : KF_MQTT_SUBACK) << 4), &b, len);
}

static int body_empty(struct wr *w, const void *arg)
{
    (void)w;
    (void)arg;
    return 0;
}

int kf_mqtt_encode_empty(uint8_t *out, size_t cap, enum kf_mqtt_type type, size_t *len)
{
    struct body b = {body_empty, NULL};
    if (type != KF_MQTT_PINGREQ && type != KF_MQTT_PINGRESP && type != KF_MQTT_DISCONNECT)
        return -1;
    return emit(out, cap, (uint8_t)(type << 4), &b, len);
}

struct disc_arg {
    int auth;
    const struct kf_mqtt_disconnect *d;
};

static int body_disconnect(struct wr *w, const void *arg)
{
    const struct disc_arg *a = arg;
    int bad = 0;
    size_t n = props_len(&a->d->props, a->auth ? C_AUTH : C_DISCONNECT, &bad);
    if (bad) return -1;
    if (a->d->reason || n) w_u8(w, a->d->reason);
    if (n) w_props(w, &a->d->props, a->auth ? C_AUTH : C_DISCONNECT);
    return 0;
}

int kf_mqtt_encode_disconnect(uint8_t *out, size_t cap, uint8_t version, enum kf_mqtt_type type,
                              const struct kf_mqtt_disconnect *d, size_t *len)
{
    struct disc_arg a = {type == KF_MQTT_AUTH, d};
    struct body b = {body_disconnect, &a};
    if (type != KF_MQTT_DISCONNECT && type != KF_MQTT_AUTH) return -1;
    if (version != KF_MQTT_V5)
        return type == KF_MQTT_AUTH ? -1 : kf_mqtt_encode_empty(out, cap, type, len);
    return emit(out, cap, (uint8_t)(type << 4), &b, len);
}
