/*
 * listen: the listening sockets of keyfleetd's listeners (provisioning and the hub), apart from
 * the event loops that accept on them.
 */
#ifndef KF_SERVER_NET_LISTEN_H
#define KF_SERVER_NET_LISTEN_H

#include "common/err.h"

/*
 * Checks that `host:port` is free to listen on, by binding it without SO_REUSEPORT (which
 * would let two keyfleetd share a port silently). Errors name the address.
 */
enum kf_err kf_listen_probe(const char *host, int port);

/*
 * Opens a non-blocking listening socket on `host:port` (with SO_REUSEPORT when `reuseport`),
 * backlog 4096, into `*fd`. Errors name the address.
 */
enum kf_err kf_listen_open(const char *host, int port, int reuseport, int *fd);

/* Splits "host:port" or "[v6]:port" into its parts; KF_E_CONFIG naming the value otherwise. */
enum kf_err kf_listen_parse(const char *text, char *host, size_t cap, int *port);

#endif
