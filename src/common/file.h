/*
 * file: writing files so that a crash leaves the old contents or the new, never half.
 */
#ifndef KF_COMMON_FILE_H
#define KF_COMMON_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

enum kf_file_flags {
    KF_FILE_REPLACE = 1, /* replace an existing file (default: fail with KF_E_EXISTS) */
};

/*
 * Writes `data[0..len)` to `path` with `mode`: into a temporary file beside it, fsync, then rename
 * (KF_FILE_REPLACE) or link (refusing an existing file), then fsync of the directory. The
 * temporary file is wiped from disk on failure. Errors name the path and the reason.
 */
enum kf_err kf_file_write(const char *path, const void *data, size_t len, mode_t mode, int flags);

/* Creates directory `path` with `mode` (KF_E_EXISTS if it exists). */
enum kf_err kf_file_mkdir(const char *path, mode_t mode);

/* fsyncs directory `path`. */
enum kf_err kf_file_sync_dir(const char *path);

/*
 * Takes an exclusive advisory lock (flock) on the directory holding `path`, waiting for other
 * holders, and sets `*fd` to release with kf_file_unlock(). For read-compare-replace sequences
 * that several processes may run at once.
 */
enum kf_err kf_file_lock_dir(const char *path, int *fd);

/* Releases a lock taken by kf_file_lock_dir; -1 is fine. */
void kf_file_unlock(int fd);

/* 1 when `path` exists (any type). */
int kf_file_exists(const char *path);

/*
 * Joins `dir` and `name` into `out` (capacity `cap`); KF_E_OVERSIZE when it does not fit. A `name`
 * that is absolute is copied as is.
 */
enum kf_err kf_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
