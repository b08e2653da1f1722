/*
 * timefmt: RFC 3339 times, the only way keyfleet writes and reads time as text.
 */
#ifndef KF_COMMON_TIMEFMT_H
#define KF_COMMON_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"

#define KF_TIME_TEXT_MAX 32

/* Formats `t` as "2026-11-23T19:08:01Z" into `out` (KF_TIME_TEXT_MAX). */
void kf_time_rfc3339(time_t t, char *out, size_t cap);

/* Formats milliseconds since the epoch as "2026-11-23T19:08:01.123Z" (KF_TIME_TEXT_MAX). */
void kf_time_rfc3339_ms(int64_t ms, char *out, size_t cap);

/*
 * Parses "2026-11-23T19:08:01Z" (with optional fractional seconds and a "+01:00" offset), or a bare
 * date "2026-11-23" (midnight UTC), into `*out`. KF_E_INVALID with the text quoted otherwise.
 */
enum kf_err kf_time_parse(const char *text, time_t *out);

/* Milliseconds since the epoch, from the real-time clock. */
int64_t kf_now_ms(void);

#endif
