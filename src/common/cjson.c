#include "common/cjson.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_MAX 64

static enum kf_err put_string(struct kf_buf *out, const char *s, size_t n)
{
    enum kf_err rc = kf_buf_append(out, "\"", 1);
    size_t from = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        if (s[i] != '"' && s[i] != '\\') continue;
        rc = kf_buf_append(out, s + from, i - from);
        if (!rc) rc = kf_buf_append(out, s[i] == '"' ? "\\\"" : "\\\\", 2);
        from = i + 1;
    }
    if (!rc) rc = kf_buf_append(out, s + from, n - from);
    if (!rc) rc = kf_buf_append(out, "\"", 1);
    return rc;
}

struct member {
    const char *key;
    size_t len;
    json_t *value;
};

static int by_bytes(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static enum kf_err encode(const json_t *j, struct kf_buf *out, int depth)
{
    enum kf_err rc = KF_OK;
    if (depth > DEPTH_MAX) return kf_fail(KF_E_INVALID, "canonical JSON: nested too deep");
    switch (json_typeof(j)) {
    case JSON_NULL: return kf_buf_append(out, "null", 4);
    case JSON_TRUE: return kf_buf_append(out, "true", 4);
    case JSON_FALSE: return kf_buf_append(out, "false", 5);
    case JSON_INTEGER: return kf_buf_appendf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
    case JSON_REAL: return kf_fail(KF_E_INVALID, "canonical JSON has no real numbers");
    case JSON_STRING: return put_string(out, json_string_value(j), json_string_length(j));
    case JSON_ARRAY:
        rc = kf_buf_append(out, "[", 1);
        for (size_t i = 0; !rc && i < json_array_size(j); i++) {
            if (i) rc = kf_buf_append(out, ",", 1);
            if (!rc) rc = encode(json_array_get(j, i), out, depth + 1);
        }
        return rc ? rc : kf_buf_append(out, "]", 1);
    case JSON_OBJECT: {
        size_t n = json_object_size(j), i = 0;
        struct member *m = calloc(n ? n : 1, sizeof(*m));
        const char *key;
        json_t *value;
        if (!m) return kf_fail(KF_E_NOMEM, "out of memory");
        json_object_foreach((json_t *)j, key, value)
        {
            m[i].key = key;
            m[i].len = strlen(key); /* jansson keys hold no NUL without JSON_ALLOW_NUL */
            m[i++].value = value;
        }
        qsort(m, n, sizeof(*m), by_bytes);
        rc = kf_buf_append(out, "{", 1);
        for (i = 0; !rc && i < n; i++) {
            if (i) rc = kf_buf_append(out, ",", 1);
            if (!rc) rc = put_string(out, m[i].key, m[i].len);
            if (!rc) rc = kf_buf_append(out, ":", 1);
            if (!rc) rc = encode(m[i].value, out, depth + 1);
        }
        free(m);
        return rc ? rc : kf_buf_append(out, "}", 1);
    }
    }
    return kf_fail(KF_E_INVALID, "canonical JSON: unknown value");
}

enum kf_err kf_cjson_encode(const json_t *j, struct kf_buf *out)
{
    if (!j) return kf_fail(KF_E_INVALID, "canonical JSON: no value");
    return encode(j, out, 0);
}
