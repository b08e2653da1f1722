/*
 * tls_client: libkeyfleet's Linux layer for TLS: a client context holding the device's
 * certificate and key (wherever the key lives) and the trust anchors, and connections over TCP
 * that verify the server's chain and name.
 */
#ifndef KF_DEVICE_TLS_CLIENT_H
#define KF_DEVICE_TLS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/pki_key.h"

struct kf_tlsc;      /* a context: identity + trust */
struct kf_tlsc_conn; /* one connection */

/*
 * A context presenting `chain_pem` (leaf first, borrowed bytes) with `key` (borrowed; must
 * outlive the context), trusting the certificates in `trust_pem`. Errors name what is wrong (a
 * key that does not match the certificate, no certificate in the trust).
 */
enum kf_err kf_tlsc_new(const char *chain_pem, size_t chain_len, const struct kf_key *key,
                        const char *trust_pem, size_t trust_len, struct kf_tlsc **out);
void kf_tlsc_free(struct kf_tlsc *t);

/*
 * Connects to host:port and completes the handshake within `timeout_ms`, checking the server's
 * chain against the trust and its name against `host` (a DNS name or an IP address). On a
 * verification failure KF_E_DENIED, and `problem` (capacity `cap`, may be NULL) gets OpenSSL's
 * words for it ("certificate verify failed: hostname mismatch"). The connection is
 * non-blocking afterwards.
 */
enum kf_err kf_tlsc_connect(struct kf_tlsc *t, const char *host, int port, int timeout_ms,
                            struct kf_tlsc_conn **out, char *problem, size_t cap);

/* The socket, to poll. */
int kf_tlsc_fd(const struct kf_tlsc_conn *c);

/* 1 when the handshake resumed a session. */
int kf_tlsc_resumed(const struct kf_tlsc_conn *c);

/* Non-blocking moves with kf_mqttc_transport's contract: bytes, 0 (would block), -1 (gone). */
long kf_tlsc_send(void *conn, const uint8_t *buf, size_t len);
long kf_tlsc_recv(void *conn, uint8_t *buf, size_t cap);

/* Blocking: writes all of `buf`, or reads at least one byte, within `timeout_ms`. */
enum kf_err kf_tlsc_write_all(struct kf_tlsc_conn *c, const void *buf, size_t len, int timeout_ms);
enum kf_err kf_tlsc_read_some(struct kf_tlsc_conn *c, void *buf, size_t cap, size_t *got,
                              int timeout_ms);

/* Sends close_notify (best effort) and frees. NULL is fine. */
void kf_tlsc_close(struct kf_tlsc_conn *c);

#endif
