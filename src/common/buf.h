/*
 * buf: a growable byte buffer with a hard maximum set at creation (curl's dynbuf).
 *
 * Appending past the maximum fails with KF_E_OVERSIZE and leaves the buffer as it was. The contents
 * are always followed by a NUL byte (not counted in `len`) so that text can be used as a C string.
 */
#ifndef KF_COMMON_BUF_H
#define KF_COMMON_BUF_H

#include <stddef.h>

#include "common/err.h"

struct kf_buf {
    unsigned char *data; /* owned; NULL until the first append */
    size_t len;          /* bytes used, not counting the trailing NUL */
    size_t cap;          /* bytes allocated */
    size_t max;          /* the most `len` may ever be */
    int secret;          /* wipe every copy: growth never leaves old contents in freed memory */
};

/* Prepares an empty buffer that will never hold more than `max` bytes. Allocates nothing. */
void kf_buf_init(struct kf_buf *b, size_t max);

/*
 * As kf_buf_init, for secrets (keys, PINs, passphrases): growth copies and wipes instead of
 * realloc()ing, and kf_buf_free() wipes, so no copy is left behind in freed memory.
 */
void kf_buf_init_secret(struct kf_buf *b, size_t max);

/* Frees the storage and leaves the buffer empty (its maximum is kept); wipes a secret buffer. */
void kf_buf_free(struct kf_buf *b);

/* As kf_buf_free, but first overwrites the contents: for keys, PINs and passphrases. */
void kf_buf_free_secret(struct kf_buf *b);

/* Empties the buffer without freeing its storage. */
void kf_buf_reset(struct kf_buf *b);

/* Appends `n` bytes from `p` (borrowed). KF_E_OVERSIZE beyond the maximum, KF_E_NOMEM. */
enum kf_err kf_buf_append(struct kf_buf *b, const void *p, size_t n);

/* Appends a C string without its NUL. */
enum kf_err kf_buf_append_str(struct kf_buf *b, const char *s);

/* Appends formatted text. */
enum kf_err kf_buf_appendf(struct kf_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The contents as a C string (never NULL: "" when empty). Borrowed; valid until the next change. */
const char *kf_buf_str(const struct kf_buf *b);

/*
 * Hands the storage to the caller (who frees it with free()) and leaves the buffer empty. Returns
 * NULL for an empty buffer only when nothing was ever appended; the length is in `*len` when given.
 */
unsigned char *kf_buf_take(struct kf_buf *b, size_t *len);

/*
 * Reads a whole file into `b` (which must be empty), failing with KF_E_OVERSIZE when it is larger
 * than the buffer's maximum and KF_E_IO (naming the file and the reason) when it cannot be read.
 */
enum kf_err kf_buf_read_file(struct kf_buf *b, const char *path);

#endif
