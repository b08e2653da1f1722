/*
 * https_client: one HTTPS request on a fresh kf_tlsc connection, the way libkeyfleet talks to
 * keyfleetd's provisioning endpoints (register and EST). Answers are bounded.
 */
#ifndef KF_DEVICE_HTTPS_CLIENT_H
#define KF_DEVICE_HTTPS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/http.h"
#include "device/tls_client.h"

#define KF_HTTPS_RESPONSE_MAX (256 * 1024)

struct kf_https_response {
    int status;
    unsigned retry_after_s; /* Retry-After in seconds, 0 when absent */
    char content_type[96];
    struct kf_buf body; /* owned: kf_buf_free */
};

/*
 * Sends `method path` with `body` (may be NULL) of `content_type` to `url_host:url_port` and
 * reads the whole answer. Verification failures of the server come back as KF_E_DENIED with the
 * reason in `problem` (see kf_tlsc_connect). `resp->body` is initialised even on failure.
 */
enum kf_err kf_https_request(struct kf_tlsc *t, const char *host, int port, const char *method,
                             const char *path, const char *content_type, const void *body,
                             size_t len, int timeout_ms, struct kf_https_response *resp,
                             char *problem, size_t cap);

/*
 * GET `path` from `host:port`, asking for the bytes from `from` on when it is not 0 (Range), and
 * hands the body to `body_cb` as it arrives (a non-zero return stops the read and is returned).
 * `*status` is the answer's status; the body of an answer other than 200 or 206 is not handed
 * over. The answer must carry a Content-Length. Nothing is held but one chunk.
 */
enum kf_err kf_https_get(struct kf_tlsc *t, const char *host, int port, const char *path,
                         uint64_t from, int timeout_ms,
                         enum kf_err (*body_cb)(void *arg, const void *p, size_t n), void *arg,
                         int *status, char *problem, size_t cap);

/* Splits "https://host:port[/prefix]" into host, port (default 443) and a path prefix. */
enum kf_err kf_https_url_split(const char *url, char *host, size_t hcap, int *port, char *prefix,
                               size_t xcap);

/*
 * Sends the CSR `csr_pem` to keyfleetd's provisioning `endpoint` under `prefix` (the URL's
 * path): "register" (POST /api/v1/register, JSON {"csr": PEM}) or an EST one, "simpleenroll" or
 * "simplereenroll" (base64 DER, application/pkcs10). As kf_https_request otherwise.
 */
enum kf_err kf_enroll_post(struct kf_tlsc *t, const char *host, int port, const char *prefix,
                           const char *endpoint, const struct kf_buf *csr_pem, int timeout_ms,
                           struct kf_https_response *resp, char *problem, size_t cap);

#endif
