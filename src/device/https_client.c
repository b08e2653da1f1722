/* One bounded HTTPS request/response over kf_tlsc. */
#include "device/https_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include "common/ossl.h"
#include "common/hostport.h"
#include "common/pem.h"

enum kf_err kf_https_request(struct kf_tlsc *t, const char *host, int port, const char *method,
                             const char *path, const char *content_type, const void *body,
                             size_t len, int timeout_ms, struct kf_https_response *resp,
                             char *problem, size_t cap)
{
    struct kf_tlsc_conn *c = NULL;
    struct kf_buf req, in;
    enum kf_err rc;
    struct kf_http_head head;
    int have_head = 0;

    memset(resp, 0, sizeof(*resp));
    kf_buf_init(&resp->body, KF_HTTPS_RESPONSE_MAX);
    kf_buf_init(&req, 16 * 1024 + len);
    kf_buf_init(&in, KF_HTTPS_RESPONSE_MAX + 16 * 1024);
    rc = kf_tlsc_connect(t, host, port, timeout_ms, &c, problem, cap);
    if (rc) goto out;
    rc = kf_buf_appendf(&req,
                        "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: libkeyfleet/" KF_VERSION
                        "\r\nAccept: */*\r\nConnection: close\r\n",
                        method, path, host, port);
    if (!rc && body)
        rc = kf_buf_appendf(&req, "Content-Type: %s\r\nContent-Length: %zu\r\n", content_type, len);
    if (!rc) rc = kf_buf_append_str(&req, "\r\n");
    if (!rc && body) rc = kf_buf_append(&req, body, len);
    if (rc) goto out;
    rc = kf_tlsc_write_all(c, req.data, req.len, timeout_ms);
    if (rc) goto out;
    for (;;) {
        char chunk[8192];
        size_t got = 0;
        int hp;
        rc = kf_tlsc_read_some(c, chunk, sizeof(chunk), &got, timeout_ms);
        if (rc) goto out;
        if (got == 0) break;
        rc = kf_buf_append(&in, chunk, got);
        if (rc) {
            rc = kf_fail(KF_E_OVERSIZE, "the answer from %s is larger than %d bytes", host,
                         KF_HTTPS_RESPONSE_MAX);
            goto out;
        }
        if (!have_head) {
            hp = kf_http_head_parse((const char *)in.data, in.len, &head);
            if (hp < 0) break;
            have_head = hp;
        }
        if (have_head && head.has_length && in.len - head.head_len >= head.content_length) break;
    }
    if (!have_head || kf_http_head_parse((const char *)in.data, in.len, &head) != 1) {
        rc = kf_fail(KF_E_MALFORMED, "%s:%d did not answer in HTTP", host, port);
        goto out;
    }
    if (head.chunked) {
        rc = kf_fail(KF_E_UNSUPPORTED,
                     "%s:%d answered with a Transfer-Encoding this client does "
                     "not take",
                     host, port);
        goto out;
    }
    if (head.has_length && in.len - head.head_len < head.content_length) {
        rc = kf_fail(KF_E_MALFORMED, "the answer from %s:%d was cut short", host, port);
        goto out;
    }
    resp->status = head.status;
    resp->retry_after_s = head.retry_after_s;
    snprintf(resp->content_type, sizeof(resp->content_type), "%s", head.content_type);
    rc = kf_buf_append(&resp->body, in.data + head.head_len,
                       head.has_length ? head.content_length : in.len - head.head_len);
out:
    kf_tlsc_close(c);
    kf_buf_free(&req);
    kf_buf_free(&in);
    return rc;
}

enum kf_err kf_https_get(struct kf_tlsc *t, const char *host, int port, const char *path,
                         uint64_t from, int timeout_ms,
                         enum kf_err (*body_cb)(void *arg, const void *p, size_t n), void *arg,
                         int *status, char *problem, size_t cap)
{
    struct kf_tlsc_conn *c = NULL;
    struct kf_buf req, head_buf;
    struct kf_http_head head;
    uint64_t left = 0;
    int have_head = 0;
    enum kf_err rc;

    *status = 0;
    kf_buf_init(&req, 4096);
    kf_buf_init(&head_buf, KF_HTTP_HEAD_MAX + 8192);
    rc = kf_tlsc_connect(t, host, port, timeout_ms, &c, problem, cap);
    if (!rc)
        rc = kf_buf_appendf(&req,
                            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: libkeyfleet/" KF_VERSION
                            "\r\nAccept: */*\r\nConnection: close\r\n",
                            path, host, port);
    if (!rc && from) rc = kf_buf_appendf(&req, "Range: bytes=%llu-\r\n", (unsigned long long)from);
    if (!rc) rc = kf_buf_append_str(&req, "\r\n");
    if (!rc) rc = kf_tlsc_write_all(c, req.data, req.len, timeout_ms);
    while (!rc) {
        char chunk[16384];
        size_t got = 0;
        rc = kf_tlsc_read_some(c, chunk, sizeof(chunk), &got, timeout_ms);
        if (rc || got == 0) break;
        if (!have_head) {
            int hp;
            if (kf_buf_append(&head_buf, chunk, got) != KF_OK) {
                rc = kf_fail(KF_E_MALFORMED, "%s:%d: the answer's head is too long", host, port);
                break;
            }
            hp = kf_http_head_parse((const char *)head_buf.data, head_buf.len, &head);
            if (hp < 0 || (hp == 1 && (head.chunked || !head.has_length))) {
                rc = kf_fail(KF_E_MALFORMED, "%s:%d did not answer in HTTP with a length", host,
                             port);
                break;
            }
            if (!hp) continue;
            have_head = 1;
            *status = head.status;
            left = head.content_length;
            if (head.status != 200 && head.status != 206) break;
            got = head_buf.len - head.head_len;
            if (got > left) got = (size_t)left;
            if (got) rc = body_cb(arg, head_buf.data + head.head_len, got);
            left -= got;
        } else {
            if (got > left) got = (size_t)left;
            if (got) rc = body_cb(arg, chunk, got);
            left -= got;
        }
        if (have_head && !left) break;
    }
    if (!rc && !have_head) rc = kf_fail(KF_E_MALFORMED, "%s:%d did not answer", host, port);
    if (!rc && (*status == 200 || *status == 206) && left)
        rc = kf_fail(KF_E_MALFORMED, "the answer from %s:%d was cut short", host, port);
    kf_tlsc_close(c);
    kf_buf_free(&req);
    kf_buf_free(&head_buf);
    return rc;
}

enum kf_err kf_https_url_split(const char *url, char *host, size_t hcap, int *port, char *prefix,
                               size_t xcap)
{
    const char *p, *slash;
    char hp[300];
    size_t n;
    if (!url || strncmp(url, "https://", 8) != 0)
        return kf_fail(KF_E_INVALID, "the provisioning URL \"%s\" must start with https://",
                       url ? url : "");
    p = url + 8;
    slash = strchr(p, '/');
    n = slash ? (size_t)(slash - p) : strlen(p);
    if (!n || n >= sizeof(hp)) return kf_fail(KF_E_INVALID, "the provisioning URL has no host");
    memcpy(hp, p, n);
    hp[n] = 0;
    snprintf(prefix, xcap, "%s", slash && slash[1] ? slash : "");
    n = strlen(prefix);
    if (n && prefix[n - 1] == '/') prefix[n - 1] = 0;
    if (!strchr(hp, ':') || (hp[0] == '[' && !strstr(hp, "]:"))) {
        if (strlen(hp) + 5 >= sizeof(hp))
            return kf_fail(KF_E_INVALID, "the URL's host is too long");
        strcat(hp, ":443");
    }
    return kf_hostport_split(hp, "the provisioning URL", host, hcap, port);
}

enum kf_err kf_enroll_post(struct kf_tlsc *t, const char *host, int port, const char *prefix,
                           const char *endpoint, const struct kf_buf *csr_pem, int timeout_ms,
                           struct kf_https_response *resp, char *problem, size_t cap)
{
    int reg = strcmp(endpoint, "register") == 0;
    struct kf_buf body, der;
    char path[600];
    enum kf_err rc;

    memset(resp, 0, sizeof(*resp));
    kf_buf_init(&resp->body, 1);
    kf_buf_init(&body, csr_pem->len * 2 + 64);
    kf_buf_init(&der, csr_pem->len);
    if (reg) {
        json_t *req = json_pack("{s:s}", "csr", kf_buf_str(csr_pem));
        char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        rc = text ? kf_buf_append_str(&body, text) : kf_fail(KF_E_NOMEM, "out of memory");
        free(text);
        snprintf(path, sizeof(path), "%s/api/v1/register", prefix);
    } else {
        char label[KF_PEM_LABEL_MAX];
        size_t pos = 0;
        rc = kf_pem_next((const char *)csr_pem->data, csr_pem->len, &pos, label, &der);
        if (!rc) rc = kf_b64_encode(der.data, der.len, &body, 64);
        snprintf(path, sizeof(path), "%s/.well-known/est/%s", prefix, endpoint);
    }
    if (!rc)
        rc = kf_https_request(t, host, port, "POST", path,
                              reg ? "application/json" : "application/pkcs10", body.data, body.len,
                              timeout_ms, resp, problem, cap);
    kf_buf_free(&body);
    kf_buf_free(&der);
    return rc;
}
