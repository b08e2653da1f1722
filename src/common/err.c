#include "common/err.h"

#include <string.h>

#define KF_ERRMSG_MAX 1024

static _Thread_local enum kf_err last_rc;
static _Thread_local int have_msg;
static _Thread_local char last_msg[KF_ERRMSG_MAX];

const char *kf_strerror(enum kf_err rc)
{
    switch (rc) {
#define KF_ERR_DESC_(name, num, code, desc) \
    case KF_##name: return desc;
        KF_ERR_MAP(KF_ERR_DESC_)
#undef KF_ERR_DESC_
    }
    return "unknown error";
}

const char *kf_errcode(enum kf_err rc)
{
    switch (rc) {
#define KF_ERR_CODE_(name, num, code, desc) \
    case KF_##name: return code;
        KF_ERR_MAP(KF_ERR_CODE_)
#undef KF_ERR_CODE_
    }
    return "unknown";
}

enum kf_err kf_vfail(enum kf_err rc, const char *fmt, va_list ap)
{
    last_rc = rc;
    vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    have_msg = 1;
    return rc;
}

enum kf_err kf_fail(enum kf_err rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kf_vfail(rc, fmt, ap);
    va_end(ap);
    return rc;
}

enum kf_err kf_wrap(enum kf_err rc, const char *fmt, ...)
{
    char joined[2 * KF_ERRMSG_MAX + 2];
    size_t n;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(joined, KF_ERRMSG_MAX, fmt, ap);
    va_end(ap);
    n = strlen(joined);
    memcpy(joined + n, ": ", 3);
    n += 2;
    /* The previous message, or the code's description when none was recorded. */
    memcpy(joined + n, have_msg ? last_msg : kf_strerror(rc),
           strlen(have_msg ? last_msg : kf_strerror(rc)) + 1);
    n = strlen(joined);
    if (n >= KF_ERRMSG_MAX) n = KF_ERRMSG_MAX - 1;
    memcpy(last_msg, joined, n);
    last_msg[n] = '\0';
    last_rc = rc;
    have_msg = 1;
    return rc;
}

const char *kf_errmsg(void)
{
    if (have_msg) return last_msg;
    return kf_strerror(last_rc);
}

enum kf_err kf_errlast(void)
{
    return last_rc;
}

void kf_err_clear(void)
{
    last_rc = KF_OK;
    have_msg = 0;
    last_msg[0] = '\0';
}
