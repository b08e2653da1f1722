/*
 * Fuzz target: keyfleet's HTTP/1.1 codec (common/http), both of its readers on every input.
 * - The request parser (keyfleetd's side), fed whole, and grown a byte at a time in one buffer
 *   the way a connection reads: the verdict on the whole must not depend on how it arrived.
 * - The answer-head reader (libkeyfleet's side): what it reports must lie inside the input, and
 *   arriving a byte at a time must give the same verdict as arriving whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/http.h"

static void request(const uint8_t *data, size_t size)
{
    static const struct kf_http_limits lim = {4096, 65536};
    struct kf_http_request req, grown;
    unsigned char *buf = malloc(size ? size : 1), *inc = malloc(size ? size : 1);
    size_t off = 0;
    int st = 0, st2 = 0;
    const char *why = NULL, *why2 = NULL;
    enum kf_http_status whole = KF_HTTP_PARTIAL, last = KF_HTTP_PARTIAL;

    if (!buf || !inc) goto out;
    /* Consume pipelined requests the way a connection does. */
    while (off < size) {
        enum kf_http_status s;
        memcpy(buf, data + off, size - off);
        s = kf_http_parse(buf, size - off, &lim, &req, &st, &why);
        if (off == 0) whole = s;
        if (s != KF_HTTP_COMPLETE) break;
        if (req.head_len + req.content_length > size - off || req.head_len == 0) __builtin_trap();
        off += req.head_len + req.content_length;
    }
    /* The first request, arriving a byte at a time: parsed again as each byte lands. */
    for (size_t n = 1; n <= size && size <= 8192; n++) {
        inc[n - 1] = data[n - 1];
        last = kf_http_parse(inc, n, &lim, &grown, &st2, &why2);
        if (last != KF_HTTP_PARTIAL) break;
    }
    if (size && size <= 8192 && last != whole) __builtin_trap();
out:
    free(buf);
    free(inc);
}

static void answer_head(const uint8_t *data, size_t size)
{
    struct kf_http_head h, g;
    char *buf = malloc(size ? size : 1);
    int whole, last = 0;
    size_t n;

    if (!buf) return;
    memcpy(buf, data, size); /* an exact-size copy: any read past it is caught */
    whole = kf_http_head_parse(buf, size, &h);
    if (whole == 1) {
        if (h.head_len > size || h.head_len < 16) __builtin_trap();
        if (h.status < 100 || h.status > 599) __builtin_trap();
        if (memchr(h.content_type, 0, sizeof(h.content_type)) == NULL) __builtin_trap();
    }
    for (n = 1; n <= size && size <= 4096; n++) {
        last = kf_http_head_parse(buf, n, &g);
        if (last != 0) break;
    }
    if (size && size <= 4096 && whole != 0 && last != whole) __builtin_trap();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request(data, size);
    answer_head(data, size);
    return 0;
}
