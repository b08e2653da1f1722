/*
 * Fuzz target: the head of an HTTP answer as libkeyfleet's provisioning client reads it
 * (kf_http_head_parse). What it reports must lie inside the input, and arriving a byte at a time
 * must give the same verdict as arriving whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "device/https_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_http_head h, g;
    char *buf = malloc(size ? size : 1);
    int whole, last = 0;
    size_t n;

    if (!buf) return 0;
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
    return 0;
}
