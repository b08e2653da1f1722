#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_CAP 4096

static enum kf_err write_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return KF_E_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return KF_OK;
}

enum kf_err kf_file_sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return kf_fail(KF_E_IO, "cannot open directory %s: %s", path, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return kf_fail(KF_E_IO, "cannot sync directory %s: %s", path, strerror(e));
    }
    close(fd);
    return KF_OK;
}

enum kf_err kf_file_write(const char *path, const void *data, size_t len, mode_t mode, int flags)
{
    char tmp[PATH_CAP], dir[PATH_CAP];
    enum kf_err rc = KF_OK;
    int fd, n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) return kf_fail(KF_E_OVERSIZE, "path too long: %s", path);
    snprintf(dir, sizeof(dir), "%s", path);
    if (!(flags & KF_FILE_REPLACE) && access(path, F_OK) == 0)
        return kf_fail(KF_E_EXISTS, "%s already exists; not overwriting it", path);

    fd = mkstemp(tmp);
    if (fd < 0)
        return kf_fail(KF_E_IO, "cannot create a file beside %s: %s", path, strerror(errno));
    if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != KF_OK || fsync(fd) != 0) {
        rc = kf_fail(KF_E_IO, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (close(fd) != 0) {
        rc = kf_fail(KF_E_IO, "cannot write %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flags & KF_FILE_REPLACE) {
        if (rename(tmp, path) != 0) {
            rc = kf_fail(KF_E_IO, "cannot replace %s: %s", path, strerror(errno));
            goto fail;
        }
    } else {
        /* link() refuses an existing target, so a race cannot overwrite a file either. */
        if (link(tmp, path) != 0) {
            if (errno == EEXIST)
                rc = kf_fail(KF_E_EXISTS, "%s already exists; not overwriting it", path);
            else
                rc = kf_fail(KF_E_IO, "cannot create %s: %s", path, strerror(errno));
            goto fail;
        }
        unlink(tmp);
    }
    return kf_file_sync_dir(dirname(dir));
fail:
    unlink(tmp);
    return rc;
}

enum kf_err kf_file_mkdir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0) {
        if (errno == EEXIST) return kf_fail(KF_E_EXISTS, "%s already exists", path);
        return kf_fail(KF_E_IO, "cannot create directory %s: %s", path, strerror(errno));
    }
    /* mkdir() honours the umask; the mode asked for is the mode wanted. */
    if (chmod(path, mode) != 0)
        return kf_fail(KF_E_IO, "cannot set the mode of %s: %s", path, strerror(errno));
    return KF_OK;
}

enum kf_err kf_file_lock_dir(const char *path, int *fd)
{
    char dir[PATH_CAP];
    snprintf(dir, sizeof(dir), "%s", path);
    *fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return kf_fail(KF_E_IO, "cannot open the directory of %s: %s", path, strerror(errno));
    while (flock(*fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        {
            int e = errno;
            close(*fd);
            *fd = -1;
            return kf_fail(KF_E_IO, "cannot lock the directory of %s: %s", path, strerror(e));
        }
    }
    return KF_OK;
}

void kf_file_unlock(int fd)
{
    if (fd >= 0) close(fd); /* closing releases the flock */
}

int kf_file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

enum kf_err kf_path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n;
    if (name[0] == '/' || !dir || !*dir)
        n = snprintf(out, cap, "%s", name);
    else
        n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return kf_fail(KF_E_OVERSIZE, "path too long: %s/%s", dir ? dir : "", name);
    return KF_OK;
}
