/* One bounded HTTPS request/response over kf_tlsc. */
#include "device/https_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "common/ossl.h"
#include "common/pem.h"

/* The value of header `name` in `head` (NUL-terminated header block) into `out`; 0 if absent. */
static int header(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] && !(p[2] == '\r' && p[3] == '\n')) {
        const char *line = p + 2, *end = strstr(line, "\r\n");
        if (!end) return 0;
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t vl;
            while (*v == ' ' || *v == '\t')
                v++;
            vl = (size_t)(end - v);
            if (vl >= cap) vl = cap - 1;
            memcpy(out, v, vl);
            out[vl] = 0;
            return 1;
        }
        p = end;
    }
    return 0;
}

enum kf_err kf_https_request(struct kf_tlsc *t, const char *host, const char *port,
                             const char *method, const char *path, const char *content_type,
                             const void *body, size_t len, int timeout_ms,
                             struct kf_https_response *resp, char *problem, size_t cap)
{
    struct kf_tlsc_conn *c = NULL;
    struct kf_buf req, in;
    enum kf_err rc;
    char *head_end = NULL, val[64];
    size_t want = (size_t)-1, head_len = 0;

    memset(resp, 0, sizeof(*resp));
    kf_buf_init(&resp->body, KF_HTTPS_RESPONSE_MAX);
    kf_buf_init(&req, 16 * 1024 + len);
    kf_buf_init(&in, KF_HTTPS_RESPONSE_MAX + 16 * 1024);
    rc = kf_tlsc_connect(t, host, port, timeout_ms, &c, problem, cap);
    if (rc) goto out;
    rc = kf_buf_appendf(&req,
                        "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: libkeyfleet/" KF_VERSION
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
        rc = kf_tlsc_read_some(c, chunk, sizeof(chunk), &got, timeout_ms);
        if (rc) goto out;
        if (got == 0) break;
        rc = kf_buf_append(&in, chunk, got);
        if (rc) {
            rc = kf_fail(KF_E_OVERSIZE, "the answer from %s is larger than %d bytes", host,
                         KF_HTTPS_RESPONSE_MAX);
            goto out;
        }
        if (!head_end) {
            kf_buf_str(&in);
            head_end = strstr((char *)in.data, "\r\n\r\n");
            if (head_end) {
                head_len = (size_t)(head_end - (char *)in.data) + 4;
                head_end[2] = 0; /* the header block ends with its last CRLF */
                if (header((char *)in.data, "Content-Length", val, sizeof(val)))
                    want = strtoul(val, NULL, 10);
            }
        }
        if (head_end && want != (size_t)-1 && in.len - head_len >= want) break;
    }
    if (!head_end || sscanf((char *)in.data, "HTTP/1.%*d %d", &resp->status) != 1) {
        rc = kf_fail(KF_E_MALFORMED, "%s:%s did not answer in HTTP", host, port);
        goto out;
    }
    if (header((char *)in.data, "Retry-After", val, sizeof(val)))
        resp->retry_after_s = (unsigned)strtoul(val, NULL, 10);
    header((char *)in.data, "Content-Type", resp->content_type, sizeof(resp->content_type));
    if (want != (size_t)-1 && in.len - head_len > want) in.len = head_len + want;
    rc = kf_buf_append(&resp->body, in.data + head_len, in.len - head_len);
out:
    kf_tlsc_close(c);
    kf_buf_free(&req);
    kf_buf_free(&in);
    return rc;
}

enum kf_err kf_https_url_split(const char *url, char *host, size_t hcap, char *port, size_t pcap,
                               char *prefix, size_t xcap)
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
    return kf_hostport_split(hp, "the provisioning URL", host, hcap, port, pcap);
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
