#include "common/jsontext.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

char *kf_jsontext_pack(const char *fmt, ...)
{
    json_error_t err;
    json_t *j;
    char *s;
    va_list ap;

    va_start(ap, fmt);
    j = json_vpack_ex(&err, 0, fmt, ap);
    va_end(ap);
    s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return s ? s : strdup("{}");
}
