/* One bounded HTTPS request/response over kf_tlsc. */
#include "device/https_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "common/ossl.h"
#include "common/hostport.h"
#include "common/pem.h"

#define HEAD_MAX (16 * 1024)

/* 1 when the `n` bytes at `p` are the header name `name`, in any case. */
static int name_is(const char *p, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* Parses a decimal of at most 10 digits (no sign, no blanks); -1 otherwise. */
static long long decimal(const char *p, size_t n)
{
    long long v = 0;
    size_t i;
    if (!n || n > 10) return -1;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int kf_http_head_parse(const char *buf, size_t len, struct kf_http_head *h)
{
    const char *end = memmem(buf, len < HEAD_MAX ? len : HEAD_MAX, "\r\n\r\n", 4), *line, *eol;
    memset(h, 0, sizeof(*h));
    if (!end) return len >= HEAD_MAX ? -1 : 0;
    h->head_len = (size_t)(end - buf) + 4;
    /* the status line: HTTP/1.x SSS reason */
    if (h->head_len < 16 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
        (buf[12] != ' ' && buf[12] != '\r'))
        return -1;
    if (decimal(buf + 9, 3) < 100 || decimal(buf + 9, 3) > 599) return -1;
    h->status = (int)decimal(buf + 9, 3);
    line = (const char *)memchr(buf, '\n', h->head_len) + 1;
    while (line < end + 2) {
        const char *colon, *v, *ve;
        eol = memchr(line, '\r', (size_t)(end + 2 - line));
        if (!eol || eol[1] != '\n') return -1;
        colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line) return -1;
        v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (name_is(line, (size_t)(colon - line), "content-length")) {
            long long n = decimal(v, (size_t)(ve - v));
            if (n < 0 || h->has_length) return -1; /* one, and a number */
            h->content_length = (size_t)n;
            h->has_length = 1;
        } else if (name_is(line, (size_t)(colon - line), "retry-after")) {
            long long n = decimal(v, (size_t)(ve - v));
            h->retry_after_s = n > 0 && n < 86400 ? (unsigned)n : 0;
        } else if (name_is(line, (size_t)(colon - line), "content-type")) {
            size_t n = (size_t)(ve - v);
            if (n >= sizeof(h->content_type)) n = sizeof(h->content_type) - 1;
            memcpy(h->content_type, v, n);
            h->content_type[n] = 0;
        } else if (name_is(line, (size_t)(colon - line), "transfer-encoding")) {
            h->chunked = 1; /* any coding: keyfleetd sends none */
        }
        line = eol + 2;
    }
    return 1;
}

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

/* The certificates of an EST certs-only answer (base64 DER PKCS#7), as a PEM chain. */
enum kf_err kf_est_certs_pem(const struct kf_buf *body, struct kf_buf *pem)
{
    struct kf_buf der;
    const unsigned char *p;
    PKCS7 *p7 = NULL;
    STACK_OF(X509) *certs = NULL;
    enum kf_err rc;
    int i;

    kf_buf_init(&der, body->len);
    rc = kf_b64_decode((const char *)body->data, body->len, &der);
    if (rc) {
        kf_buf_free(&der);
        return kf_wrap(rc, "the EST answer is not base64");
    }
    p = der.data;
    p7 = d2i_PKCS7(NULL, &p, (long)der.len);
    if (p7 && PKCS7_type_is_signed(p7) && p7->d.sign) certs = p7->d.sign->cert;
    if (!certs || sk_X509_num(certs) < 1) {
        rc = kf_ossl_fail(KF_E_MALFORMED, "the EST answer holds no certificate");
        goto out;
    }
    for (i = 0; i < sk_X509_num(certs) && !rc; i++) {
        struct kf_cert *c = kf_cert_wrap(X509_dup(sk_X509_value(certs, i)));
        rc = c ? kf_cert_pem(c, pem) : KF_E_NOMEM;
        kf_cert_free(c);
    }
out:
    PKCS7_free(p7);
    kf_buf_free(&der);
    return rc;
}
