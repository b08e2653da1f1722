/*
 * log: logfmt lines on stderr.
 *
 *   time=2026-11-23T19:08:01.123Z level=info module=store msg="opened store" path=keyfleet.db
 *
 * Fields are key/value string pairs ended by NULL; values are quoted when they need it. Logging is
 * thread-safe (one write(2) a line) and costs nothing below the threshold.
 */
#ifndef KF_COMMON_LOG_H
#define KF_COMMON_LOG_H

#include <stddef.h>

enum kf_log_level {
    KF_LOG_DEBUG = 0,
    KF_LOG_INFO = 1,
    KF_LOG_WARN = 2,
    KF_LOG_ERROR = 3,
    KF_LOG_OFF = 4,
};

/* Sets the threshold; lines below it are not written. The default is KF_LOG_INFO. */
void kf_log_set_level(enum kf_log_level level);

/* Parses "debug", "info", "warn", "error" or "off"; returns -1 for anything else. */
int kf_log_level_parse(const char *name);

/* Reads KEYFLEET_LOG from the environment and sets the threshold when it names a level. */
void kf_log_init_from_env(void);

/* Whether a line at `level` would be written. */
int kf_log_enabled(enum kf_log_level level);

/*
 * Writes one line. `module` and `msg` are borrowed; the variadic part is key, value, key, value,
 * ..., NULL (all `const char *`; a field whose value is NULL is left out).
 */
void kf_log(enum kf_log_level level, const char *module, const char *msg, ...)
    __attribute__((sentinel));

/*
 * Appends `value` to `out` (capacity `cap`, always NUL-terminated) as a logfmt value: bare when it
 * has no space, quote, equals sign or control character, otherwise quoted with escapes. Returns
 * the length written, truncated to fit.
 */
size_t kf_logfmt_value(char *out, size_t cap, const char *value);

#endif
