/*
 * cidr: lists of IPv4/IPv6 networks ("10.0.0.0/8,2001:db8::/32") and matching addresses on them.
 */
#ifndef KF_COMMON_CIDR_H
#define KF_COMMON_CIDR_H

#include <stddef.h>

#include "common/err.h"

#define KF_CIDR_LIST_MAX 32

struct kf_cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address, host bits cleared */
    int prefix;             /* prefix length */
};

struct kf_cidr_list {
    struct kf_cidr nets[KF_CIDR_LIST_MAX];
    size_t n;
};

/*
 * Parses a comma-separated list (spaces allowed; an address without "/n" is a single host).
 * KF_E_INVALID naming the bad entry, or KF_E_OVERSIZE beyond KF_CIDR_LIST_MAX entries. A network
 * with host bits set ("10.0.0.1/8") is refused: it is almost always a typo.
 */
enum kf_err kf_cidr_parse_list(const char *text, struct kf_cidr_list *out);

/* 1 when the address text `ip` (IPv4, IPv6, or IPv4-mapped IPv6) is on one of the networks. */
int kf_cidr_match(const struct kf_cidr_list *list, const char *ip);

/* The most a canonical list can take: KF_CIDR_LIST_MAX IPv6 networks with their prefixes. */
#define KF_CIDR_TEXT_MAX (KF_CIDR_LIST_MAX * 45)

/*
 * Writes the list in canonical form ("10.0.0.0/8,2001:db8::/32") into `out`. KF_E_OVERSIZE (and
 * `out` empty) when it does not fit: a list is never cut short, which could widen it.
 */
enum kf_err kf_cidr_format(const struct kf_cidr_list *list, char *out, size_t cap);

#endif
