#include "common/pem.h"

#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

enum kf_err kf_b64_encode(const void *in, size_t n, struct kf_buf *out, size_t line_width)
{
    const unsigned char *p = in;
    char quad[4];
    size_t col = 0;
    enum kf_err rc;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        size_t left = n - i;
        if (left > 1) v |= (unsigned)p[i + 1] << 8;
        if (left > 2) v |= p[i + 2];
        quad[0] = b64_alphabet[(v >> 18) & 63];
        quad[1] = b64_alphabet[(v >> 12) & 63];
        quad[2] = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
        quad[3] = left > 2 ? b64_alphabet[v & 63] : '=';
        for (int k = 0; k < 4; k++) {
            rc = kf_buf_append(out, &quad[k], 1);
            if (rc) return rc;
            if (line_width && ++col == line_width) {
                rc = kf_buf_append(out, "\n", 1);
                if (rc) return rc;
                col = 0;
            }
        }
    }
    if (line_width && col) return kf_buf_append(out, "\n", 1);
    return KF_OK;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

enum kf_err kf_b64_decode(const char *in, size_t n, struct kf_buf *out)
{
    unsigned vals[4];
    size_t got = 0, pad = 0, start = out->len;
    enum kf_err rc;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        int v;
        if (is_space(c)) continue;
        if (c == '=') {
            /* Padding may only fill the last one or two places of the final group. */
            if (got < 2) {
                rc = kf_fail(KF_E_MALFORMED, "bad base64: padding at offset %zu", i);
                goto fail;
            }
            pad++;
            vals[got++] = 0;
        } else {
            v = b64_value(c);
            if (v < 0) {
                rc = kf_fail(KF_E_MALFORMED, "bad base64: character 0x%02x at offset %zu", c, i);
                goto fail;
            }
            if (pad) {
                rc = kf_fail(KF_E_MALFORMED, "bad base64: data after padding at offset %zu", i);
                goto fail;
            }
            vals[got++] = (unsigned)v;
        }
        if (got == 4) {
            unsigned char bytes[3];
            unsigned w = vals[0] << 18 | vals[1] << 12 | vals[2] << 6 | vals[3];
            bytes[0] = (unsigned char)(w >> 16);
            bytes[1] = (unsigned char)(w >> 8);
            bytes[2] = (unsigned char)w;
            rc = kf_buf_append(out, bytes, 3 - pad);
            if (rc) goto fail;
            got = 0;
            if (pad) {
                /* Only white space may follow a padded group. */
                for (size_t j = i + 1; j < n; j++) {
                    if (!is_space((unsigned char)in[j])) {
                        rc = kf_fail(KF_E_MALFORMED, "bad base64: data after padding at offset %zu",
                                     j);
                        goto fail;
                    }
                }
                return KF_OK;
            }
        }
    }
    if (got != 0) {
        rc = kf_fail(KF_E_MALFORMED, "bad base64: truncated (%zu characters left over)", got);
        goto fail;
    }
    return KF_OK;
fail:
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return rc;
}

/* Finds `needle` in text[from..len); returns its offset or `len` when absent. */
static size_t find(const char *text, size_t len, size_t from, const char *needle)
{
    size_t nl = strlen(needle);
    if (nl > len) return len;
    for (size_t i = from; i + nl <= len; i++)
        if (memcmp(text + i, needle, nl) == 0) return i;
    return len;
}

static size_t line_end(const char *text, size_t len, size_t from)
{
    while (from < len && text[from] != '\n')
        from++;
    return from;
}

/* Reads the label of a "-----BEGIN X-----" line starting at `at`; returns its length or 0. */
static size_t read_label(const char *text, size_t len, size_t at, size_t prefix_len, char *label)
{
    size_t i = at + prefix_len, n = 0;
    while (i < len && text[i] != '-' && text[i] != '\n' && n < KF_PEM_LABEL_MAX - 1) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c > 0x7e) return 0;
        label[n++] = (char)c;
        i++;
    }
    label[n] = '\0';
    if (i + 5 > len || memcmp(text + i, "-----", 5) != 0) return 0;
    return n;
}

enum kf_err kf_pem_first_label(const char *text, size_t len, char *label)
{
    size_t at = 0;
    for (;;) {
        at = find(text, len, at, "-----BEGIN ");
        if (at >= len) return kf_fail(KF_E_NOT_FOUND, "no PEM BEGIN line");
        if (read_label(text, len, at, 11, label)) return KF_OK;
        at += 11;
    }
}

enum kf_err kf_pem_next(const char *text, size_t len, size_t *pos, char *label, struct kf_buf *der)
{
    char end_label[KF_PEM_LABEL_MAX];
    size_t at = *pos, body, end, eol;

    for (;;) {
        at = find(text, len, at, "-----BEGIN ");
        if (at >= len) return kf_fail(KF_E_NOT_FOUND, "no PEM BEGIN line");
        if (read_label(text, len, at, 11, label)) break;
        at += 11;
    }
    body = line_end(text, len, at);
    if (body < len) body++;
    end = find(text, len, body, "-----END ");
    if (end >= len)
        return kf_fail(KF_E_MALFORMED, "truncated PEM: BEGIN %s without an END line", label);
    if (!read_label(text, len, end, 9, end_label) || strcmp(label, end_label) != 0)
        return kf_fail(KF_E_MALFORMED, "malformed PEM: BEGIN %s ends with END %s", label,
                       end_label);
    /* Skip RFC 1421 header lines: they hold a colon and end at a blank line. */
    {
        size_t le = line_end(text, len, body);
        if (memchr(text + body, ':', le - body)) {
            size_t p = body;
            while (p < end) {
                size_t e = line_end(text, len, p);
                size_t l = e - p;
                if (l == 0 || (l == 1 && text[p] == '\r')) {
                    body = e + 1;
                    break;
                }
                p = e + 1;
            }
        }
    }
    if (body > end) body = end;
    {
        enum kf_err rc = kf_b64_decode(text + body, end - body, der);
        if (rc) return kf_wrap(rc, "PEM block %s", label);
    }
    eol = line_end(text, len, end);
    *pos = eol < len ? eol + 1 : len;
    return KF_OK;
}

enum kf_err kf_pem_encode(const char *label, const void *der, size_t n, struct kf_buf *out)
{
    enum kf_err rc = kf_buf_appendf(out, "-----BEGIN %s-----\n", label);
    if (!rc) rc = kf_b64_encode(der, n, out, 64);
    if (!rc) rc = kf_buf_appendf(out, "-----END %s-----\n", label);
    return rc;
}
