/*
 * hostport: "host:port" and "[IPv6]:port" text split into its parts, for listen addresses,
 * hub endpoints and URLs alike.
 */
#ifndef KF_COMMON_HOSTPORT_H
#define KF_COMMON_HOSTPORT_H

#include <stddef.h>

#include "common/err.h"

/*
 * Splits `text` into `host` (capacity `cap`; the brackets of an IPv6 address dropped; may be
 * empty) and `port` (1 to 65535). KF_E_INVALID otherwise, with a sentence that starts with
 * `what` and quotes the text ("listen address \"x\" is not host:port").
 */
enum kf_err kf_hostport_split(const char *text, const char *what, char *host, size_t cap,
                              int *port);

#endif
