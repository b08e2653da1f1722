#include "server/hub/acl.h"

#include <string.h>

#include "common/ident.h"

/* Level `i` of a topic or filter: its bytes and length; 0 when there are fewer levels. */
static int level(const uint8_t *t, size_t len, unsigned i, const uint8_t **p, size_t *n)
{
    size_t start = 0;
    for (unsigned k = 0; k < i; k++) {
        const uint8_t *slash = memchr(t + start, '/', len - start);
        if (!slash) return 0;
        start = (size_t)(slash - t) + 1;
    }
    if (start > len) return 0;
    {
        const uint8_t *slash = memchr(t + start, '/', len - start);
        *p = t + start;
        *n = slash ? (size_t)(slash - (t + start)) : len - start;
    }
    return 1;
}

static int levels(const uint8_t *t, size_t len)
{
    int n = 1;
    for (size_t i = 0; i < len; i++)
        n += t[i] == '/';
    return n;
}

static int is(const uint8_t *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

/*
 * Whether `f` stays inside "devices/<who>/<area>/#" (`tail` 1) or is exactly
 * "devices/<who>/<area>" (`tail` 0); `who` NULL means the "+" of a grant: any one id or "+".
 */
static int inside(const uint8_t *f, size_t len, const char *who, const char *area, int tail)
{
    const uint8_t *p;
    size_t n;
    int nl = levels(f, len);

    if (!level(f, len, 0, &p, &n) || !is(p, n, "devices")) return 0;
    if (!level(f, len, 1, &p, &n)) return 0;
    if (who) {
        if (!is(p, n, who)) return 0;
    } else if (!(n == 1 && p[0] == '+')) {
        char id[KF_ID_MAX + 1];
        if (n == 0 || n > KF_ID_MAX || memchr(p, '#', n)) return 0;
        memcpy(id, p, n);
        id[n] = '\0';
        if (kf_id_check("device id", id) != KF_OK) {
            kf_err_clear();
            return 0;
        }
    }
    if (!level(f, len, 2, &p, &n) || !is(p, n, area)) return 0;
    return tail ? 1 : nl == 3;
}

int kf_acl_publish(const struct kf_acl_identity *who, const uint8_t *topic, size_t len)
{
    switch (who->kind) {
    case KF_ACL_DEVICE:
        return inside(topic, len, who->id, "telemetry", 1) ||
               inside(topic, len, who->id, "events", 0);
    case KF_ACL_COMMANDER:
        /* A topic name has no wildcards, so "any id" is one real id here. */
        return inside(topic, len, NULL, "commands", 1) && !memchr(topic, '+', len);
    default: return 0;
    }
}

int kf_acl_subscribe(const struct kf_acl_identity *who, const uint8_t *filter, size_t len)
{
    switch (who->kind) {
    case KF_ACL_DEVICE:
        return inside(filter, len, who->id, "commands", 1) ||
               inside(filter, len, who->id, "updates", 1);
    case KF_ACL_READER:
    case KF_ACL_COMMANDER:
        return inside(filter, len, NULL, "telemetry", 1) || inside(filter, len, NULL, "events", 0);
    default: return 0;
    }
}
