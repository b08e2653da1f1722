#include "common/http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int tchar(unsigned char c)
{
    /* RFC 9110 token characters. */
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static enum kf_http_status bad(int *status, const char **text, int code, const char *why)
{
    *status = code;
    *text = why;
    return KF_HTTP_BAD;
}

/* Finds "\r\n" (or a bare "\n") in p[0..n); returns the line length, or -1 when none yet. */
static long line_end(const unsigned char *p, size_t n, size_t *eol_len)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            *eol_len = (i > 0 && p[i - 1] == '\r') ? 2 : 1;
            return (long)(i + 1 - *eol_len);
        }
    }
    return -1;
}

static enum kf_http_status parse_request_line(unsigned char *p, size_t n,
                                              struct kf_http_request *req, int *st,
                                              const char **why)
{
    unsigned char *sp1 = memchr(p, ' ', n), *sp2, *q;
    size_t mlen, tlen;

    if (!sp1) return bad(st, why, 400, "malformed request line");
    mlen = (size_t)(sp1 - p);
    if (mlen == 0 || mlen >= KF_HTTP_METHOD_MAX) return bad(st, why, 501, "unknown method");
    for (size_t i = 0; i < mlen; i++)
        if (!isupper(p[i])) return bad(st, why, 400, "malformed method");
    sp2 = memchr(sp1 + 1, ' ', n - mlen - 1);
    if (!sp2) return bad(st, why, 400, "malformed request line");
    tlen = (size_t)(sp2 - sp1 - 1);
    if (tlen == 0 || sp1[1] != '/') return bad(st, why, 400, "the target must be a path");
    if (tlen >= KF_HTTP_TARGET_MAX) return bad(st, why, 414, "request target too long");
    for (size_t i = 0; i < tlen; i++)
        if (sp1[1 + i] <= 0x20 || sp1[1 + i] >= 0x7f)
            return bad(st, why, 400, "bad character in the request target");
    if ((size_t)(p + n - sp2 - 1) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return bad(st, why, 505, "only HTTP/1.x is spoken here");
    if (sp2[8] != '0' && sp2[8] != '1') return bad(st, why, 505, "only HTTP/1.0 and 1.1");
    req->minor = sp2[8] - '0';
    memcpy(req->method, p, mlen);
    req->method[mlen] = '\0';
    q = memchr(sp1 + 1, '?', tlen);
    if (q) {
        memcpy(req->path, sp1 + 1, (size_t)(q - sp1 - 1));
        req->path[q - sp1 - 1] = '\0';
        memcpy(req->query, q + 1, (size_t)(sp2 - q - 1));
        req->query[sp2 - q - 1] = '\0';
    } else {
        memcpy(req->path, sp1 + 1, tlen);
        req->path[tlen] = '\0';
        req->query[0] = '\0';
    }
    return KF_HTTP_COMPLETE;
}

/* 1 when the `n` bytes at `p` are the header name `want`, in any case. */
static int is_name(const unsigned char *p, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp((const char *)p, want, n) == 0;
}

/* 1 when `word` appears, in any case, in the `n` bytes at `p`. */
static int has_token(const unsigned char *p, size_t n, const char *word)
{
    size_t w = strlen(word);
    for (size_t i = 0; i + w <= n; i++)
        if (strncasecmp((const char *)p + i, word, w) == 0) return 1;
    return 0;
}

enum kf_http_status kf_http_parse(unsigned char *buf, size_t len, const struct kf_http_limits *lim,
                                  struct kf_http_request *req, int *st, const char **why)
{
    size_t pos = 0, eol, limit = len < lim->max_head ? len : lim->max_head;
    size_t name_len[KF_HTTP_MAX_HEADERS], value_len[KF_HTTP_MAX_HEADERS];
    long l;
    int have_cl = 0, conn_close = 0, conn_keep = 0;
    enum kf_http_status s;

    memset(req, 0, sizeof(*req));
    /* Tolerate empty lines before the request line (RFC 9112 2.2). */
    while (pos < limit && (buf[pos] == '\r' || buf[pos] == '\n'))
        pos++;
    l = line_end(buf + pos, limit - pos, &eol);
    if (l < 0) {
        /* An overlong target is refused as soon as it is seen, complete line or not. */
        unsigned char *sp = memchr(buf + pos, ' ', limit - pos), *sp2;
        if (sp) {
            sp2 = memchr(sp + 1, ' ', (size_t)(buf + limit - sp - 1));
            if ((size_t)((sp2 ? sp2 : buf + limit) - sp - 1) >= KF_HTTP_TARGET_MAX)
                return bad(st, why, 414, "request target too long");
        }
        return len >= lim->max_head ? bad(st, why, 431, "request head too large") : KF_HTTP_PARTIAL;
    }
    s = parse_request_line(buf + pos, (size_t)l, req, st, why);
    if (s != KF_HTTP_COMPLETE) return s;
    pos += (size_t)l + eol;

    /*
     * Nothing is written into `buf` until the request is known to be whole: a request that is
     * still PARTIAL is parsed again from the same bytes when more arrive.
     */
    for (;;) {
        unsigned char *name, *colon, *v, *vend;
        size_t nlen, vlen;
        l = line_end(buf + pos, limit - pos, &eol);
        if (l < 0)
            return len >= lim->max_head ? bad(st, why, 431, "request head too large")
                                        : KF_HTTP_PARTIAL;
        if (l == 0) {
            pos += eol;
            break;
        }
        name = buf + pos;
        if (*name == ' ' || *name == '\t') return bad(st, why, 400, "folded header lines");
        colon = memchr(name, ':', (size_t)l);
        if (!colon || colon == name) return bad(st, why, 400, "malformed header line");
        for (unsigned char *c = name; c < colon; c++)
            if (!tchar(*c)) return bad(st, why, 400, "bad character in a header name");
        v = colon + 1;
        vend = name + l;
        while (v < vend && (*v == ' ' || *v == '\t'))
            v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        for (unsigned char *c = v; c < vend; c++)
            if ((*c < 0x20 && *c != '\t') || *c == 0x7f)
                return bad(st, why, 400, "control character in a header value");
        if (req->n_headers == KF_HTTP_MAX_HEADERS) return bad(st, why, 431, "too many headers");
        nlen = (size_t)(colon - name);
        vlen = (size_t)(vend - v);
        req->headers[req->n_headers].name = (const char *)name;
        req->headers[req->n_headers].value = (const char *)v;
        name_len[req->n_headers] = nlen;
        value_len[req->n_headers] = vlen;
        req->n_headers++;
        if (is_name(name, nlen, "Content-Length")) {
            size_t cl = 0;
            if (have_cl) return bad(st, why, 400, "more than one Content-Length");
            if (v == vend) return bad(st, why, 400, "empty Content-Length");
            for (unsigned char *c = v; c < vend; c++) {
                if (!isdigit(*c)) return bad(st, why, 400, "Content-Length is not a number");
                if (cl > (lim->max_body + 1) / 10 + 1) return bad(st, why, 413, "body too large");
                cl = cl * 10 + (size_t)(*c - '0');
            }
            if (cl > lim->max_body) return bad(st, why, 413, "body too large");
            req->content_length = cl;
            have_cl = 1;
        } else if (is_name(name, nlen, "Transfer-Encoding")) {
            return bad(st, why, 411, "send the body with a Content-Length");
        } else if (is_name(name, nlen, "Connection")) {
            if (has_token(v, vlen, "close")) conn_close = 1;
            if (has_token(v, vlen, "keep-alive")) conn_keep = 1;
        }
        pos += (size_t)l + eol;
    }
    req->head_len = pos;
    req->keep_alive = req->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    if (len - pos < req->content_length) return KF_HTTP_PARTIAL;
    /* Whole: now the names and values are terminated in place. */
    for (size_t i = 0; i < req->n_headers; i++) {
        ((unsigned char *)req->headers[i].name)[name_len[i]] = '\0';
        ((unsigned char *)req->headers[i].value)[value_len[i]] = '\0';
    }
    req->body = buf + pos;
    return KF_HTTP_COMPLETE;
}

const char *kf_http_header(const struct kf_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

const char *kf_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

enum kf_err kf_http_response(struct kf_buf *out, int status, const char *type, const char *extra,
                             int close, const void *body, size_t body_len)
{
    enum kf_err rc;
    /* A response without a real status is our bug; it must never reach a client. */
    if (status < 200 || status > 599)
        return kf_fail(KF_E_INTERNAL, "no HTTP status %d is ever sent", status);
    rc = kf_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, kf_http_reason(status));
    if (!rc && type) rc = kf_buf_appendf(out, "Content-Type: %s\r\n", type);
    if (!rc) rc = kf_buf_appendf(out, "Content-Length: %zu\r\n", body_len);
    if (!rc && extra) rc = kf_buf_append_str(out, extra);
    if (!rc && close) rc = kf_buf_append_str(out, "Connection: close\r\n");
    if (!rc) rc = kf_buf_append_str(out, "\r\n");
    if (!rc && body_len) rc = kf_buf_append(out, body, body_len);
    return rc;
}

/* ---- the head of an answer (the client's side) ---- */

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
    const char *end = memmem(buf, len < KF_HTTP_HEAD_MAX ? len : KF_HTTP_HEAD_MAX, "\r\n\r\n", 4),
               *line, *eol;
    memset(h, 0, sizeof(*h));
    if (!end) return len >= KF_HTTP_HEAD_MAX ? -1 : 0;
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
        if (is_name((const unsigned char *)line, (size_t)(colon - line), "content-length")) {
            long long n = decimal(v, (size_t)(ve - v));
            if (n < 0 || h->has_length) return -1; /* one, and a number */
            h->content_length = (size_t)n;
            h->has_length = 1;
        } else if (is_name((const unsigned char *)line, (size_t)(colon - line), "retry-after")) {
            long long n = decimal(v, (size_t)(ve - v));
            h->retry_after_s = n > 0 && n < 86400 ? (unsigned)n : 0;
        } else if (is_name((const unsigned char *)line, (size_t)(colon - line), "content-type")) {
            size_t n = (size_t)(ve - v);
            if (n >= sizeof(h->content_type)) n = sizeof(h->content_type) - 1;
            memcpy(h->content_type, v, n);
            h->content_type[n] = 0;
        } else if (is_name((const unsigned char *)line, (size_t)(colon - line),
                           "transfer-encoding")) {
            h->chunked = 1; /* any coding: keyfleetd sends none */
        }
        line = eol + 2;
    }
    return 1;
}
