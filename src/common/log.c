#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static enum kf_log_level threshold = KF_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void kf_log_set_level(enum kf_log_level level)
{
    threshold = level;
}

int kf_log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (name && strcmp(name, level_names[i]) == 0) return (int)i;
    return -1;
}

void kf_log_init_from_env(void)
{
    int lvl = kf_log_level_parse(getenv("KEYFLEET_LOG"));
    if (lvl >= 0) threshold = (enum kf_log_level)lvl;
}

int kf_log_enabled(enum kf_log_level level)
{
    return level >= threshold && level < KF_LOG_OFF;
}

static int needs_quotes(const char *v)
{
    if (*v == '\0') return 1;
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) return 1;
    }
    return 0;
}

size_t kf_logfmt_value(char *out, size_t cap, const char *value)
{
    size_t n = 0;
    if (cap == 0) return 0;
    if (!value) value = "";
    if (!needs_quotes(value)) {
        n = strlen(value);
        if (n >= cap) n = cap - 1;
        memcpy(out, value, n);
        out[n] = '\0';
        return n;
    }
#define PUT(ch)                      \
    do {                             \
        if (n + 1 >= cap) goto done; \
        out[n++] = (ch);             \
    } while (0)
    PUT('"');
    for (const char *p = value; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            if (n + 3 >= cap) goto done;
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c == '\n') {
            if (n + 3 >= cap) goto done;
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (c < ' ' || c == 0x7f) {
            if (n + 5 >= cap) goto done;
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
        } else {
            if (n + 2 >= cap) goto done;
            out[n++] = (char)c;
        }
    }
    PUT('"');
#undef PUT
done:
    out[n] = '\0';
    return n;
}

static size_t put(char *line, size_t n, const char *s)
{
    size_t len = strlen(s);
    if (n >= LOG_LINE_MAX - 2) return n;
    if (n + len >= LOG_LINE_MAX - 1) len = LOG_LINE_MAX - 2 - n;
    memcpy(line + n, s, len);
    return n + len;
}

static size_t put_field(char *line, size_t n, const char *key, const char *value)
{
    char v[LOG_LINE_MAX];
    if (n >= LOG_LINE_MAX - 2) return n;
    n = put(line, n, " ");
    n = put(line, n, key);
    n = put(line, n, "=");
    kf_logfmt_value(v, sizeof(v), value);
    return put(line, n, v);
}

void kf_log(enum kf_log_level level, const char *module, const char *msg, ...)
{
    char line[LOG_LINE_MAX];
    char ts[80];
    struct timespec now;
    struct tm tm;
    size_t n = 0;
    va_list ap;

    if (!kf_log_enabled(level)) return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(now.tv_nsec / 1000000));
    n = put(line, n, "time=");
    n = put(line, n, ts);
    n = put_field(line, n, "level", level_names[level]);
    n = put_field(line, n, "module", module);
    n = put_field(line, n, "msg", msg);
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        const char *v;
        if (!k) break;
        v = va_arg(ap, const char *);
        if (v) n = put_field(line, n, k, v); /* a field with no value is left out */
    }
    va_end(ap);
    line[n++] = '\n';
    /* One write per line so that lines from several threads never interleave. */
    if (write(STDERR_FILENO, line, n) < 0) {
        /* Nowhere left to report a failure to write the log. */
    }
}
