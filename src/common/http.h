/*
 * http: keyfleet's HTTP/1.1 codec, pure (bytes in, a message out, no I/O), shared by both ends:
 * keyfleetd reads requests with it and writes its answers (kf_http_parse, kf_http_response);
 * libkeyfleet and keyfleet-sim read the head of those answers (kf_http_head_parse). One fuzz
 * target (fuzz/http.c) covers both readers.
 *
 * Why not evhttp: libevent 2.1's evhttp has no hook between accept and the TLS handshake, so
 * per-address limits and the handshake budget could only act after the expensive part, and it
 * has no deadline for a whole request. See docs/decisions.md.
 *
 * What is accepted: a request line "METHOD SP target SP HTTP/1.x" (origin-form), header fields
 * "name: value" (token names, no obs-fold), an optional body sized by Content-Length.
 * Transfer-Encoding is refused (411), as are duplicate Content-Length headers, control characters,
 * and anything over the configured bounds (431 for headers, 413 for the body).
 */
#ifndef KF_COMMON_HTTP_H
#define KF_COMMON_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define KF_HTTP_MAX_HEADERS 32
#define KF_HTTP_METHOD_MAX  8
#define KF_HTTP_TARGET_MAX  256

struct kf_http_header {
    const char *name; /* points into the parsed buffer; NUL-terminated there */
    const char *value;
};

struct kf_http_request {
    char method[KF_HTTP_METHOD_MAX];
    char path[KF_HTTP_TARGET_MAX];  /* the target without its query */
    char query[KF_HTTP_TARGET_MAX]; /* after '?', "" when none */
    int minor;                      /* HTTP/1.minor */
    struct kf_http_header headers[KF_HTTP_MAX_HEADERS];
    size_t n_headers;
    size_t head_len; /* bytes of request line + headers + blank line */
    size_t content_length;
    int keep_alive;            /* 1 unless "Connection: close" (or HTTP/1.0 without keep-alive) */
    const unsigned char *body; /* points into the caller's buffer; content_length bytes */
};

/* Outcomes of kf_http_parse besides a complete request. */
enum kf_http_status {
    KF_HTTP_COMPLETE = 0, /* a whole request: head and body */
    KF_HTTP_PARTIAL = 1,  /* need more bytes */
    KF_HTTP_BAD = 2,      /* malformed: answer `error_status` and close */
};

struct kf_http_limits {
    size_t max_head; /* request line + headers, bytes */
    size_t max_body; /* Content-Length at most */
};

/*
 * Parses the request at the start of `buf[0..len)`. The head is parsed in place: `buf` must be
 * writable (names and values are NUL-terminated inside it) and outlive `req`. It is written to
 * only when the request is whole (KF_HTTP_COMPLETE), so after KF_HTTP_PARTIAL the same bytes,
 * with more appended, can be parsed again. On KF_HTTP_BAD,
 * `*error_status` holds the status to answer (400, 411, 413, 414, 431, 505, 501) and
 * `*error_text` a short reason. A request is complete only when its whole body has arrived;
 * `req->head_len + req->content_length` bytes of `buf` belong to it.
 */
enum kf_http_status kf_http_parse(unsigned char *buf, size_t len, const struct kf_http_limits *lim,
                                  struct kf_http_request *req, int *error_status,
                                  const char **error_text);

/* The first value of header `name` (case-insensitive), or NULL. */
const char *kf_http_header(const struct kf_http_request *req, const char *name);

/* The reason phrase for `status` ("Too Many Requests"); "Unknown" for others. */
const char *kf_http_reason(int status);

/*
 * Appends a complete response to `out`: status line, Content-Type (when `type` is given),
 * Content-Length, `extra` header lines (each ending in "\r\n"; may be NULL), "Connection: close"
 * when `close` is set, then the body.
 */
enum kf_err kf_http_response(struct kf_buf *out, int status, const char *type, const char *extra,
                             int close, const void *body, size_t body_len);

/* The head of an HTTP/1.x answer, as kf_http_head_parse reads it. */
struct kf_http_head {
    int status;
    unsigned retry_after_s; /* Retry-After in seconds (0: absent, or an HTTP date) */
    char content_type[96];
    size_t head_len;       /* bytes up to and including the blank line */
    size_t content_length; /* when has_length */
    int has_length, chunked;
};

/* The longest answer head kf_http_head_parse reads. */
#define KF_HTTP_HEAD_MAX (16 * 1024)

/*
 * Parses the head of an HTTP answer in `buf[0..len)` (not NUL-terminated). Returns 1 when the
 * head is whole (`*h` filled), 0 when more bytes are needed, -1 when it is malformed (no status
 * line, a bad or repeated Content-Length, a head longer than KF_HTTP_HEAD_MAX). No allocation.
 */
int kf_http_head_parse(const char *buf, size_t len, struct kf_http_head *h);

#endif
