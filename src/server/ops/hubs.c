#include "server/ops/hubs.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>

#include "common/ident.h"
#include "common/pki_cert.h"
#include "common/jsontext.h"

/* Longer input is refused before it is looked at: no endpoint that long can be valid. */
#define ENDPOINT_INPUT_MAX 1024

/* Parses the port after the host: 1 to 5 digits, 1 to 65535. 0 when it is not one. */
static long parse_port(const char *s)
{
    long v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (!isdigit((unsigned char)s[n]) || n >= 5) return 0;
        v = v * 10 + (s[n] - '0');
    }
    return n > 0 && v <= 65535 ? v : 0;
}

enum kf_err kf_hubs_endpoint_check(const char *endpoint, char *out, size_t cap)
{
    char shown[96], host[256], canon[sizeof(host) + 2];
    const char *port_text;
    unsigned char addr[16];
    size_t hostlen, len;
    long port;
    int n;

    if (cap) out[0] = '\0';
    if (!endpoint || !*endpoint)
        return kf_fail(KF_E_INVALID,
                       "the hub endpoint is empty; it is host:port, e.g. mqtt.example.com:8883");
    len = strlen(endpoint);
    kf_text_quote(shown, sizeof(shown), endpoint);
    if (len > ENDPOINT_INPUT_MAX)
        return kf_fail(KF_E_INVALID, "hub endpoint \"%s\" is %zu characters; the limit is %d",
                       shown, len, KF_ENDPOINT_MAX - 1);
    if (endpoint[0] == '[') {
        const char *close = strchr(endpoint, ']');
        if (!close)
            return kf_fail(KF_E_INVALID, "hub endpoint \"%s\": the IPv6 address has no closing ']'",
                           shown);
        hostlen = (size_t)(close - endpoint - 1);
        if (hostlen >= INET6_ADDRSTRLEN) hostlen = INET6_ADDRSTRLEN; /* fails below */
        memcpy(host, endpoint + 1, hostlen);
        host[hostlen] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1)
            return kf_fail(KF_E_INVALID,
                           "hub endpoint \"%s\": what is in brackets is not an IPv6 address",
                           shown);
        if (close[1] != ':')
            return kf_fail(KF_E_INVALID,
                           "hub endpoint \"%s\" has no port: it is [address]:port, e.g. [::1]:8883",
                           shown);
        port_text = close + 2;
        if (!inet_ntop(AF_INET6, addr, host, INET6_ADDRSTRLEN))
            return kf_fail(KF_E_INTERNAL, "cannot format an IPv6 address");
        snprintf(canon, sizeof(canon), "[%s]", host);
    } else {
        const char *colon = strrchr(endpoint, ':');
        if (!colon)
            return kf_fail(KF_E_INVALID,
                           "hub endpoint \"%s\" has no port: it is host:port, e.g. "
                           "mqtt.example.com:8883",
                           shown);
        hostlen = (size_t)(colon - endpoint);
        if (memchr(endpoint, ':', hostlen))
            return kf_fail(KF_E_INVALID,
                           "hub endpoint \"%s\": an IPv6 address goes in brackets, e.g. "
                           "[2001:db8::1]:8883",
                           shown);
        if (hostlen == 0)
            return kf_fail(KF_E_INVALID, "hub endpoint \"%s\" has no host before the port", shown);
        if (hostlen > 253)
            return kf_fail(KF_E_INVALID,
                           "hub endpoint \"%s\": the host is %zu characters; a DNS name has at "
                           "most 253",
                           shown, hostlen);
        memcpy(host, endpoint, hostlen);
        host[hostlen] = '\0';
        port_text = colon + 1;
        if (inet_pton(AF_INET, host, addr) == 1) {
            snprintf(canon, sizeof(canon), "%s", host);
        } else if (host[0] == '*') {
            return kf_fail(KF_E_INVALID,
                           "hub endpoint \"%s\": the host is a wildcard; devices need one host "
                           "to connect to",
                           shown);
        } else if (kf_dns_name_ok(host)) {
            for (size_t i = 0; i < hostlen; i++)
                host[i] = (char)tolower((unsigned char)host[i]);
            canon[0] = '\0'; /* the DNS name is written from `host` below */
        } else {
            char shown_host[96];
            kf_text_quote(shown_host, sizeof(shown_host), host);
            return kf_fail(KF_E_INVALID,
                           "hub endpoint \"%s\": \"%s\" is neither a DNS name nor an IPv4 "
                           "address",
                           shown, shown_host);
        }
    }
    port = parse_port(port_text);
    if (!port)
        return kf_fail(KF_E_INVALID,
                       "hub endpoint \"%s\": the port must be a number from 1 to 65535", shown);
    n = snprintf(out, cap, "%s:%ld", canon[0] ? canon : host, port);
    if (n < 0 || (size_t)n >= cap || (size_t)n >= KF_ENDPOINT_MAX) {
        if (cap) out[0] = '\0';
        return kf_fail(KF_E_INVALID, "hub endpoint \"%s\" is %d characters; the limit is %d", shown,
                       n, KF_ENDPOINT_MAX - 1);
    }
    return KF_OK;
}

static enum kf_err check_weight(const char *name, int weight)
{
    if (weight < 0 || weight > KF_HUB_WEIGHT_MAX)
        return kf_fail(KF_E_INVALID,
                       "weight %d for hub %s is out of range: it is 0 to %d (0 takes no new "
                       "devices)",
                       weight, name, KF_HUB_WEIGHT_MAX);
    return KF_OK;
}

/* ---- who refers to a hub ---- */

struct static_filter {
    const char *name;
    enum kf_err (*cb)(const struct kf_enrollment_rec *e, void *arg);
    void *arg;
};

static enum kf_err static_filter_cb(const struct kf_enrollment_rec *e, void *arg)
{
    struct static_filter *f = arg;
    if (strcmp(e->allocation, "static") != 0 || strcmp(e->hub, f->name) != 0) return KF_OK;
    return f->cb(e, f->arg);
}

enum kf_err kf_hubs_static_enrollments(struct kf_txn *txn, const char *name,
                                       enum kf_err (*cb)(const struct kf_enrollment_rec *e,
                                                         void *arg),
                                       void *arg)
{
    struct static_filter f = {name, cb, arg};
    return kf_txn_enrollment_list(txn, 0, static_filter_cb, &f);
}

struct device_count {
    const char *name;
    int64_t all, active;
};

static enum kf_err device_count_cb(const struct kf_device_rec *d, void *arg)
{
    struct device_count *c = arg;
    if (strcmp(d->hub, c->name) != 0) return KF_OK;
    c->all++;
    if (d->status == KF_DEVICE_ACTIVE) c->active++;
    return KF_OK;
}

enum kf_err kf_hubs_count_devices(struct kf_txn *txn, const char *name, int64_t *all,
                                  int64_t *active)
{
    struct device_count c = {name, 0, 0};
    enum kf_err rc = kf_txn_device_list(txn, 0, NULL, device_count_cb, &c);
    if (all) *all = rc ? 0 : c.all;
    if (active) *active = rc ? 0 : c.active;
    return rc;
}

/* ---- changes ---- */

enum hub_change { HC_ADD, HC_REMOVE, HC_ENABLE, HC_DISABLE, HC_WEIGHT };

struct hub_write {
    const char *actor, *name;
    enum hub_change kind;
    const char *endpoint; /* HC_ADD: canonical */
    int weight;           /* HC_ADD, HC_WEIGHT */
    int changed;
};

struct endpoint_search {
    const char *endpoint;
    char found[KF_ID_MAX + 1];
};

static enum kf_err find_endpoint_cb(const struct kf_hub_rec *h, void *arg)
{
    struct endpoint_search *s = arg;
    if (strcmp(h->endpoint, s->endpoint) != 0) return KF_OK;
    snprintf(s->found, sizeof(s->found), "%s", h->name);
    return KF_E_EXISTS; /* stops the listing */
}

struct static_users {
    char first[KF_ID_MAX + 1];
    int n;
};

static enum kf_err static_user_cb(const struct kf_enrollment_rec *e, void *arg)
{
    struct static_users *u = arg;
    if (u->n++ == 0) snprintf(u->first, sizeof(u->first), "%s", e->id);
    return KF_OK;
}

static enum kf_err add_cb(struct kf_txn *txn, struct hub_write *w, char *object)
{
    struct endpoint_search s = {w->endpoint, ""};
    struct kf_hub_rec h;
    char *detail;
    enum kf_err rc = kf_txn_hub_get(txn, w->name, &h);

    if (rc == KF_OK) return kf_fail(KF_E_EXISTS, "a hub named %s already exists", w->name);
    if (rc != KF_E_NOT_FOUND) return rc;
    rc = kf_txn_hub_list(txn, find_endpoint_cb, &s);
    if (rc == KF_E_EXISTS)
        return kf_fail(KF_E_EXISTS, "hub %s already has endpoint %s", s.found, w->endpoint);
    if (rc) return rc;
    memset(&h, 0, sizeof(h));
    snprintf(h.name, sizeof(h.name), "%s", w->name);
    snprintf(h.endpoint, sizeof(h.endpoint), "%s", w->endpoint);
    h.weight = w->weight;
    h.enabled = 1;
    h.created = time(NULL);
    rc = kf_txn_hub_insert(txn, &h);
    if (rc) return rc;
    detail = kf_jsontext_pack("{s:s, s:i, s:b}", "endpoint", h.endpoint, "weight", h.weight,
                              "enabled", 1);
    rc = kf_txn_audit_append(txn, w->actor, "hub.add", object, detail);
    free(detail);
    return rc;
}

static enum kf_err change_cb(struct kf_txn *txn, void *arg)
{
    struct hub_write *w = arg;
    struct kf_hub_rec h;
    struct static_users u;
    char object[KF_OBJECT_MAX], *detail = NULL;
    const char *action;
    enum kf_err rc;

    w->changed = 0;
    snprintf(object, sizeof(object), "hub:%s", w->name);
    if (w->kind == HC_ADD) {
        rc = add_cb(txn, w, object);
        if (!rc) w->changed = 1;
        return rc;
    }
    rc = kf_txn_hub_get(txn, w->name, &h);
    if (rc) return rc;
    switch (w->kind) {
    case HC_REMOVE:
        memset(&u, 0, sizeof(u));
        rc = kf_hubs_static_enrollments(txn, w->name, static_user_cb, &u);
        if (rc) return rc;
        if (u.n == 1)
            return kf_fail(KF_E_CONFLICT,
                           "hub %s is the static hub of enrollment %s; give that enrollment "
                           "another hub first (keyfleet enrollment set %s --hub NAME, or "
                           "--allocation hashed)",
                           w->name, u.first, u.first);
        if (u.n > 1)
            return kf_fail(KF_E_CONFLICT,
                           "hub %s is the static hub of enrollment %s and %d more; give them "
                           "another hub first (keyfleet enrollment set ID --hub NAME, or "
                           "--allocation hashed)",
                           w->name, u.first, u.n - 1);
        rc = kf_txn_hub_delete(txn, w->name);
        if (rc) return rc;
        action = "hub.remove";
        detail = kf_jsontext_pack("{s:s, s:i, s:b}", "endpoint", h.endpoint, "weight", h.weight,
                                  "enabled", h.enabled);
        break;
    case HC_ENABLE:
    case HC_DISABLE:
        if (!!h.enabled == (w->kind == HC_ENABLE)) return KF_OK;
        h.enabled = w->kind == HC_ENABLE;
        rc = kf_txn_hub_update(txn, &h);
        if (rc) return rc;
        action = h.enabled ? "hub.enable" : "hub.disable";
        break;
    case HC_WEIGHT:
        if (h.weight == w->weight) return KF_OK;
        detail = kf_jsontext_pack("{s:i, s:i}", "weight", w->weight, "previous", h.weight);
        h.weight = w->weight;
        rc = kf_txn_hub_update(txn, &h);
        if (rc) {
            free(detail);
            return rc;
        }
        action = "hub.weight";
        break;
    default: return kf_fail(KF_E_INTERNAL, "unknown hub change %d", (int)w->kind);
    }
    rc = kf_txn_audit_append(txn, w->actor, action, object, detail ? detail : "{}");
    free(detail);
    if (!rc) w->changed = 1;
    return rc;
}

static enum kf_err change(struct kf_deploy *d, struct hub_write *w, int *changed)
{
    enum kf_err rc = kf_id_check("hub name", w->name);
    if (!rc) rc = kf_store_write(d->store, change_cb, w);
    if (changed) *changed = rc ? 0 : w->changed;
    return rc;
}

enum kf_err kf_hubs_add(struct kf_deploy *d, const char *actor, const char *name,
                        const char *endpoint, int weight)
{
    char canon[KF_ENDPOINT_MAX];
    struct hub_write w = {actor, name, HC_ADD, canon, weight, 0};
    enum kf_err rc = kf_id_check("hub name", name);
    if (!rc) rc = kf_hubs_endpoint_check(endpoint, canon, sizeof(canon));
    if (!rc) rc = check_weight(name, weight);
    if (rc) return rc;
    return change(d, &w, NULL);
}

enum kf_err kf_hubs_remove(struct kf_deploy *d, const char *actor, const char *name)
{
    struct hub_write w = {actor, name, HC_REMOVE, NULL, 0, 0};
    return change(d, &w, NULL);
}

enum kf_err kf_hubs_set_enabled(struct kf_deploy *d, const char *actor, const char *name,
                                int enabled, int *changed)
{
    struct hub_write w = {actor, name, enabled ? HC_ENABLE : HC_DISABLE, NULL, 0, 0};
    return change(d, &w, changed);
}

enum kf_err kf_hubs_set_weight(struct kf_deploy *d, const char *actor, const char *name, int weight,
                               int *changed)
{
    struct hub_write w = {actor, name, HC_WEIGHT, NULL, weight, 0};
    enum kf_err rc = kf_id_check("hub name", name);
    if (!rc) rc = check_weight(name, weight);
    if (rc) {
        if (changed) *changed = 0;
        return rc;
    }
    return change(d, &w, changed);
}
