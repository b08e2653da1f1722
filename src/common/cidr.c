#include "common/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static enum kf_err parse_one(const char *s, size_t len, struct kf_cidr *out)
{
    char text[80], *slash;
    int max, bytes;

    if (len == 0) return kf_fail(KF_E_INVALID, "empty network in the list");
    if (len >= sizeof(text)) return kf_fail(KF_E_INVALID, "network \"%.40s...\" is too long", s);
    memcpy(text, s, len);
    text[len] = '\0';
    slash = strchr(text, '/');
    if (slash) *slash = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return kf_fail(KF_E_INVALID, "\"%s\" is not an IP address", text);
    }
    out->prefix = max;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || p < 0 || p > max)
            return kf_fail(KF_E_INVALID, "\"%s/%s\": the prefix length must be 0 to %d", text,
                           slash + 1, max);
        out->prefix = (int)p;
    }
    bytes = max / 8;
    for (int bit = out->prefix; bit < bytes * 8; bit++) {
        if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
            if (slash) *slash = '/';
            return kf_fail(KF_E_INVALID, "\"%s\" has host bits set beyond its /%d prefix", text,
                           out->prefix);
        }
    }
    return KF_OK;
}

enum kf_err kf_cidr_parse_list(const char *text, struct kf_cidr_list *out)
{
    const char *p = text;
    memset(out, 0, sizeof(*out));
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        enum kf_err rc;
        while (len && *s == ' ')
            s++, len--;
        while (len && s[len - 1] == ' ')
            len--;
        if (out->n == KF_CIDR_LIST_MAX)
            return kf_fail(KF_E_OVERSIZE, "more than %d networks", KF_CIDR_LIST_MAX);
        rc = parse_one(s, len, &out->nets[out->n]);
        if (rc) return rc;
        out->n++;
        if (!end) break;
        p = end + 1;
        if (!*p) return kf_fail(KF_E_INVALID, "the network list ends with a comma");
    }
    if (out->n == 0) return kf_fail(KF_E_INVALID, "the network list is empty");
    return KF_OK;
}

static int on_net(const struct kf_cidr *n, const unsigned char *addr)
{
    int full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, addr, (size_t)full) != 0) return 0;
    if (rest) {
        unsigned char mask = (unsigned char)(0xff << (8 - rest));
        return (n->addr[full] & mask) == (addr[full] & mask);
    }
    return 1;
}

int kf_cidr_match(const struct kf_cidr_list *list, const char *ip)
{
    unsigned char a6[16], a4[4];
    int is4 = inet_pton(AF_INET, ip, a4) == 1;
    int is6 = !is4 && inet_pton(AF_INET6, ip, a6) == 1;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (is6 && memcmp(a6, mapped, 12) == 0) {
        memcpy(a4, a6 + 12, 4);
        is4 = 1;
    }
    for (size_t i = 0; i < list->n; i++) {
        const struct kf_cidr *n = &list->nets[i];
        if (n->family == AF_INET && is4 && on_net(n, a4)) return 1;
        if (n->family == AF_INET6 && is6 && on_net(n, a6)) return 1;
    }
    return 0;
}

enum kf_err kf_cidr_format(const struct kf_cidr_list *list, char *out, size_t cap)
{
    size_t used = 0;
    if (cap == 0) return kf_fail(KF_E_OVERSIZE, "no room for the network list");
    out[0] = '\0';
    for (size_t i = 0; i < list->n; i++) {
        char a[INET6_ADDRSTRLEN];
        int w;
        inet_ntop(list->nets[i].family, list->nets[i].addr, a, sizeof(a));
        w = snprintf(out + used, cap - used, "%s%s/%d", i ? "," : "", a, list->nets[i].prefix);
        if (w < 0 || (size_t)w >= cap - used) {
            out[0] = '\0';
            return kf_fail(KF_E_OVERSIZE, "the network list does not fit in %zu characters", cap);
        }
        used += (size_t)w;
    }
    return KF_OK;
}
