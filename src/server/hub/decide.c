/* decide: the hub's answers to what a client sends, as pure functions (decide.h). */
#include "server/hub/decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/ident.h"

const char *kf_hub_decide_kept_out(const struct kf_hub_who *who, const struct kf_snapshot *reg)
{
    int status = kf_snapshot_blocked(reg, who->kind != KF_ACL_DEVICE, who->id);
    if (status == KF_DEVICE_DISABLED && who->kind == KF_ACL_DEVICE) return "device_disabled";
    if (status) return who->kind == KF_ACL_DEVICE ? "device_revoked" : "service_revoked";
    if (kf_snapshot_cert_revoked(reg, who->serial)) return "revoked";
    return NULL;
}

static int refuse(struct kf_hub_connect_refusal *r, uint8_t rc5, uint8_t rc311, const char *why,
                  int auth_failed)
{
    r->rc5 = rc5;
    r->rc311 = rc311;
    r->why = why;
    r->auth_failed = auth_failed;
    return 1;
}

int kf_hub_decide_connect(const struct kf_mqtt_connect *k, const struct kf_hub_who *who,
                          const struct kf_snapshot *reg, int *assigned,
                          struct kf_hub_connect_refusal *r)
{
    size_t idlen = strlen(who->id);
    const char *why;

    *assigned = 0;
    memset(r, 0, sizeof(*r));
    /* The certificate is the authentication: no enhanced authentication exchange. */
    if (KF_MQTT_HAS(&k->props, KF_MQTT_P_AUTH_METHOD))
        return refuse(r, KF_MQTT_RC_BAD_AUTH_METHOD, KF_MQTT_V311_NOT_AUTHORIZED, "bad_auth_method",
                      0);
    if (k->client_id.len == 0 && k->version != KF_MQTT_V5 && !k->clean_start)
        /* MQTT-3.1.3-8: no session can be kept for a client that has no name for it. */
        return refuse(r, KF_MQTT_RC_CLIENT_ID_NOT_VALID, KF_MQTT_V311_ID_REJECTED,
                      "empty_client_id_persistent", 0);
    if (k->client_id.len == 0)
        *assigned = 1;
    else if (k->client_id.len != idlen || memcmp(k->client_id.p, who->id, idlen) != 0)
        /* One identity, one name: a client id is its certificate's. */
        return refuse(r, KF_MQTT_RC_CLIENT_ID_NOT_VALID, KF_MQTT_V311_ID_REJECTED,
                      "client_id_mismatch", 1);
    why = reg ? kf_hub_decide_kept_out(who, reg) : NULL;
    if (why) return refuse(r, KF_MQTT_RC_NOT_AUTHORIZED, KF_MQTT_V311_NOT_AUTHORIZED, why, 1);
    return 0;
}

int kf_hub_decide_session(const struct kf_mqtt_connect *k, const struct kf_hub_who *who,
                          const struct kf_hub_conf *hc, struct kf_hub_session_terms *t)
{
    struct kf_acl_identity acl = {who->kind, who->id};
    memset(t, 0, sizeof(*t));
    if (k->will && !kf_acl_publish(&acl, k->will_topic.p, k->will_topic.len)) return 1;
    if (k->version == KF_MQTT_V5)
        t->expiry = KF_MQTT_HAS(&k->props, KF_MQTT_P_SESSION_EXPIRY) ? k->props.session_expiry : 0;
    else
        t->expiry = k->clean_start ? 0 : hc->expiry_max;
    if (t->expiry > hc->expiry_max) t->expiry = hc->expiry_max;
    t->receive_max = hc->max_inflight;
    if (KF_MQTT_HAS(&k->props, KF_MQTT_P_RECEIVE_MAXIMUM) &&
        k->props.receive_maximum < t->receive_max)
        t->receive_max = k->props.receive_maximum;
    if (KF_MQTT_HAS(&k->props, KF_MQTT_P_MAXIMUM_PACKET_SIZE))
        t->client_max_packet = k->props.maximum_packet_size;
    return 0;
}

int kf_hub_decide_filter(int version, const struct kf_hub_who *who, const uint8_t *filter,
                         size_t len, uint8_t *code, int *acl_denied)
{
    struct kf_acl_identity acl = {who->kind, who->id};
    int v5 = version == KF_MQTT_V5;
    *acl_denied = 0;
    *code = 0;
    if (!kf_mqtt_topic_filter_valid(filter, len)) {
        *code = v5 ? KF_MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
        return 0;
    }
    if (len >= 7 && memcmp(filter, "$share/", 7) == 0) {
        *code = v5 ? KF_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED : 0x80;
        return 0;
    }
    if (!kf_acl_subscribe(&acl, filter, len)) {
        *code = v5 ? KF_MQTT_RC_NOT_AUTHORIZED : 0x80;
        *acl_denied = 1;
        return 0;
    }
    return 1;
}

uint8_t kf_hub_decide_topic(const struct kf_mqtt_publish *p, struct kf_hub_alias *aliases,
                            struct kf_mqtt_str *topic, const char **why)
{
    *topic = p->topic;
    /* A subscription identifier is the server's to send [MQTT-3.3.4-6]. */
    if (KF_MQTT_HAS(&p->props, KF_MQTT_P_SUBSCRIPTION_ID)) {
        *why = "a subscription identifier in a PUBLISH";
        return KF_MQTT_RC_PROTOCOL_ERROR;
    }
    /* Topic aliases (MQTT 5): the client maps short numbers to topics [MQTT-3.3.2.3.4]. */
    if (KF_MQTT_HAS(&p->props, KF_MQTT_P_TOPIC_ALIAS)) {
        uint16_t a = p->props.topic_alias;
        if (a == 0 || a > KF_HUB_TOPIC_ALIAS_MAX) {
            *why = "topic alias out of range";
            return KF_MQTT_RC_TOPIC_ALIAS_INVALID;
        }
        if (p->topic.len) {
            uint8_t *copy = malloc(p->topic.len);
            if (!copy) {
                *why = "out_of_memory";
                return KF_MQTT_RC_SERVER_BUSY;
            }
            memcpy(copy, p->topic.p, p->topic.len);
            free(aliases[a].p);
            aliases[a].p = copy;
            aliases[a].len = p->topic.len;
        } else if (!aliases[a].p) {
            *why = "an unknown topic alias";
            return KF_MQTT_RC_PROTOCOL_ERROR;
        }
        topic->p = aliases[a].p;
        topic->len = aliases[a].len;
    } else if (!p->topic.len) {
        *why = "an empty topic without an alias";
        return KF_MQTT_RC_PROTOCOL_ERROR;
    }
    return 0;
}

enum kf_hub_publish_verdict kf_hub_decide_publish(int version, int acl_action,
                                                  const struct kf_hub_who *who,
                                                  struct kf_mqtt_str topic)
{
    struct kf_acl_identity acl = {who->kind, who->id};
    if (kf_acl_publish(&acl, topic.p, topic.len)) return KF_HUB_PUBLISH_ROUTE;
    if (version == KF_MQTT_V5) return KF_HUB_PUBLISH_REFUSE;
    return acl_action == KF_HUB_DISCONNECT ? KF_HUB_PUBLISH_DISCONNECT : KF_HUB_PUBLISH_DROP;
}

int kf_hub_is_event_topic(const struct kf_hub_who *who, struct kf_mqtt_str t)
{
    char want[KF_ID_MAX + 20];
    int n = snprintf(want, sizeof(want), "devices/%s/events", who->id);
    return who->kind == KF_ACL_DEVICE && t.len == (size_t)n && memcmp(t.p, want, (size_t)n) == 0;
}

int kf_hub_parse_device_event(const uint8_t *payload, size_t len, struct kf_hub_device_event *e,
                              const char **why)
{
    json_error_t jerr;
    json_t *j, *detail;
    const char *t, *s;

    memset(e, 0, sizeof(*e));
    if (len > KF_HUB_EVENT_BODY_MAX) {
        *why = "a device event is at most 16 KiB";
        return 0;
    }
    j = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        *why = "a device event is a JSON object";
        return 0;
    }
    detail = json_object_get(j, "detail");
    t = json_string_value(json_object_get(j, "type"));
    s = json_object_get(j, "severity") ? json_string_value(json_object_get(j, "severity"))
                                       : "warning";
    if (!t || (strncmp(t, "device.", 7) != 0 && strncmp(t, "update.", 7) != 0) || strlen(t) > 64 ||
        strlen(t) < 8 || strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789._") != strlen(t)) {
        json_decref(j);
        *why = "\"type\" must be \"device.<name>\" or \"update.<name>\" (lower-case letters, "
               "digits, '.', '_')";
        return 0;
    }
    if (strncmp(t, "update.rollout_", 15) == 0) {
        /* keyfleetd's own (update.rollout_paused): a device cannot raise them */
        json_decref(j);
        *why = "\"update.rollout_*\" events are keyfleetd's";
        return 0;
    }
    if (!s || (strcmp(s, "info") != 0 && strcmp(s, "warning") != 0 && strcmp(s, "critical") != 0)) {
        json_decref(j);
        *why = "\"severity\" must be info, warning or critical";
        return 0;
    }
    if (detail && !json_is_object(detail)) {
        json_decref(j);
        *why = "\"detail\" must be an object";
        return 0;
    }
    snprintf(e->type, sizeof(e->type), "%s", t);
    snprintf(e->severity, sizeof(e->severity), "%s", s);
    if (detail) e->detail = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return 1;
}
