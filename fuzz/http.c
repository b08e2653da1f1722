/* Fuzz target: the HTTP/1.1 request parser, fed whole and byte by byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct kf_http_limits lim = {4096, 65536};
    struct kf_http_request req;
    unsigned char *buf = malloc(size ? size : 1);
    size_t off = 0;
    int st;
    const char *why;

    if (!buf) return 0;
    /* Consume pipelined requests the way a connection does. */
    while (off < size) {
        enum kf_http_status s;
        memcpy(buf, data + off, size - off);
        s = kf_http_parse(buf, size - off, &lim, &req, &st, &why);
        if (s != KF_HTTP_COMPLETE) break;
        if (req.head_len + req.content_length > size - off || req.head_len == 0) __builtin_trap();
        off += req.head_len + req.content_length;
    }
    free(buf);
    return 0;
}
