#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

void kf_buf_init(struct kf_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->secret = 0;
}

void kf_buf_init_secret(struct kf_buf *b, size_t max)
{
    kf_buf_init(b, max);
    b->secret = 1;
}

void kf_buf_free(struct kf_buf *b)
{
    if (b->secret && b->data) OPENSSL_cleanse(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void kf_buf_free_secret(struct kf_buf *b)
{
    if (b->data) OPENSSL_cleanse(b->data, b->cap);
    kf_buf_free(b);
}

void kf_buf_reset(struct kf_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

static enum kf_err reserve(struct kf_buf *b, size_t extra)
{
    size_t need, ncap;
    unsigned char *p;

    if (extra > b->max || b->len > b->max - extra)
        return kf_fail(KF_E_OVERSIZE, "more than %zu bytes", b->max);
    need = b->len + extra + 1; /* room for the NUL */
    if (need <= b->cap) return KF_OK;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap = ncap > ((size_t)-1) / 2 ? need : ncap * 2;
    if (ncap > b->max + 1) ncap = b->max + 1;
    if (b->secret) {
        p = malloc(ncap);
        if (p && b->data) {
            memcpy(p, b->data, b->len + 1);
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
    } else {
        p = realloc(b->data, ncap);
    }
    if (!p) return kf_fail(KF_E_NOMEM, "out of memory growing a buffer to %zu bytes", ncap);
    b->data = p;
    b->cap = ncap;
    return KF_OK;
}

enum kf_err kf_buf_append(struct kf_buf *b, const void *p, size_t n)
{
    enum kf_err rc = reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KF_OK;
}

enum kf_err kf_buf_append_str(struct kf_buf *b, const char *s)
{
    return kf_buf_append(b, s, strlen(s));
}

enum kf_err kf_buf_appendf(struct kf_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    enum kf_err rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return kf_fail(KF_E_INTERNAL, "bad format string");
    rc = reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return KF_OK;
}

const char *kf_buf_str(const struct kf_buf *b)
{
    return b->data ? (const char *)b->data : "";
}

unsigned char *kf_buf_take(struct kf_buf *b, size_t *len)
{
    unsigned char *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

enum kf_err kf_buf_read_file(struct kf_buf *b, const char *path)
{
    unsigned char chunk[8192];
    enum kf_err rc = KF_OK;
    struct stat st;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kf_fail(KF_E_IO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return kf_fail(KF_E_IO, "cannot read %s: it is a directory", path);
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = kf_fail(KF_E_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        rc = kf_buf_append(b, chunk, (size_t)n);
        if (rc) {
            if (rc == KF_E_OVERSIZE)
                kf_fail(rc, "file %s is larger than the %zu bytes allowed", path, b->max);
            break;
        }
    }
    OPENSSL_cleanse(chunk, sizeof(chunk));
    close(fd);
    return rc;
}
