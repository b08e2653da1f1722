/* The durable, bounded event queue: an append-only log and an acknowledged mark. */
#include "device/evqueue.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/file.h"

struct ev {
    uint64_t seq;
    char *json; /* owned */
    size_t len;
};

struct kf_evq {
    char log_path[4096], ack_path[4096];
    int fd;
    size_t max_bytes, log_bytes;
    uint64_t next_seq, acked, dropped;
    struct ev *evs; /* unacknowledged, oldest first */
    size_t n, cap;
};

static void drop_front(struct kf_evq *q, size_t k)
{
    size_t i;
    if (!k) return;
    for (i = 0; i < k; i++)
        free(q->evs[i].json);
    memmove(q->evs, q->evs + k, (q->n - k) * sizeof(*q->evs));
    q->n -= k;
}

static enum kf_err push(struct kf_evq *q, uint64_t seq, const char *json, size_t len)
{
    char *copy;
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        struct ev *ne = realloc(q->evs, nc * sizeof(*ne));
        if (!ne) return kf_fail(KF_E_NOMEM, "out of memory");
        q->evs = ne;
        q->cap = nc;
    }
    copy = malloc(len + 1);
    if (!copy) return kf_fail(KF_E_NOMEM, "out of memory");
    memcpy(copy, json, len);
    copy[len] = 0;
    q->evs[q->n].seq = seq;
    q->evs[q->n].json = copy;
    q->evs[q->n].len = len;
    q->n++;
    return KF_OK;
}

/* Rewrites the log with the unacknowledged events only. */
static enum kf_err compact(struct kf_evq *q)
{
    struct kf_buf b;
    enum kf_err rc = KF_OK;
    size_t i;
    kf_buf_init(&b, q->max_bytes + 4096);
    for (i = 0; i < q->n && !rc; i++)
        rc = kf_buf_appendf(&b, "%" PRIu64 " %s\n", q->evs[i].seq, q->evs[i].json);
    if (!rc)
        rc = kf_file_write(q->log_path, b.data ? (const char *)b.data : "", b.len, 0600,
                           KF_FILE_REPLACE);
    if (!rc) {
        if (q->fd >= 0) close(q->fd);
        q->fd = open(q->log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (q->fd < 0) rc = kf_fail(KF_E_IO, "cannot open %s: %s", q->log_path, strerror(errno));
        q->log_bytes = b.len;
    }
    kf_buf_free(&b);
    return rc;
}

enum kf_err kf_evq_open(const char *dir, size_t max_bytes, struct kf_evq **out)
{
    struct kf_evq *q = calloc(1, sizeof(*q));
    struct kf_buf b;
    enum kf_err rc;
    size_t off = 0;

    *out = NULL;
    if (!q) return kf_fail(KF_E_NOMEM, "out of memory");
    q->fd = -1;
    q->max_bytes = max_bytes < 4096 ? 4096 : max_bytes;
    q->next_seq = 1;
    if (kf_path_join(q->log_path, sizeof(q->log_path), dir, "events.log") ||
        kf_path_join(q->ack_path, sizeof(q->ack_path), dir, "events.acked")) {
        free(q);
        return kf_fail(KF_E_INVALID, "the data directory path is too long");
    }
    kf_buf_init(&b, 64);
    if (kf_buf_read_file(&b, q->ack_path) == KF_OK) {
        char *end;
        q->acked = strtoull(kf_buf_str(&b), &end, 10);
        q->next_seq = q->acked + 1;
    }
    kf_buf_free(&b);
    kf_err_clear();
    kf_buf_init(&b, q->max_bytes + 4096);
    rc = kf_file_exists(q->log_path) ? kf_buf_read_file(&b, q->log_path) : KF_OK;
    while (!rc && off < b.len) {
        char *line = (char *)b.data + off, *nl = memchr(line, '\n', b.len - off), *sp, *end;
        uint64_t seq;
        if (!nl) break; /* torn by a crash: not durable, so never acknowledged to anyone */
        *nl = 0;
        off = (size_t)(nl - (char *)b.data) + 1;
        seq = strtoull(line, &end, 10);
        sp = end;
        if (sp == line || *sp != ' ' || sp[1] != '{') continue; /* not one of ours: skip */
        if (seq >= q->next_seq) q->next_seq = seq + 1;
        if (seq <= q->acked) continue;
        rc = push(q, seq, sp + 1, (size_t)(nl - sp - 1));
    }
    kf_buf_free(&b);
    if (!rc) rc = compact(q); /* drops what is acknowledged and any torn tail */
    if (rc) {
        kf_evq_close(q);
        return rc;
    }
    *out = q;
    return KF_OK;
}

void kf_evq_close(struct kf_evq *q)
{
    if (!q) return;
    drop_front(q, q->n);
    free(q->evs);
    if (q->fd >= 0) close(q->fd);
    free(q);
}

enum kf_err kf_evq_append(struct kf_evq *q, const char *json, uint64_t *seq)
{
    char head[32];
    size_t len = strlen(json), hl;
    enum kf_err rc;

    if (memchr(json, '\n', len) || len + 32 > q->max_bytes)
        return kf_fail(KF_E_INVALID, "an event must be one line of at most %zu bytes",
                       q->max_bytes - 32);
    hl = (size_t)snprintf(head, sizeof(head), "%" PRIu64 " ", q->next_seq);
    if (q->log_bytes + hl + len + 1 > q->max_bytes) {
        size_t k = 0, bytes = 0, i;
        for (i = 0; i < q->n; i++)
            bytes += q->evs[i].len + 22;
        /* drop the oldest until the new one fits beside the rest */
        while (k < q->n && bytes + hl + len + 1 > q->max_bytes) {
            bytes -= q->evs[k].len + 22;
            k++;
        }
        q->dropped += k;
        drop_front(q, k);
        rc = compact(q);
        if (rc) return rc;
    }
    {
        struct kf_buf line;
        kf_buf_init(&line, hl + len + 1);
        rc = kf_buf_append(&line, head, hl);
        if (!rc) rc = kf_buf_append(&line, json, len);
        if (!rc) rc = kf_buf_append(&line, "\n", 1);
        if (!rc && (write(q->fd, line.data, line.len) != (ssize_t)line.len || fdatasync(q->fd)))
            rc = kf_fail(KF_E_IO, "cannot write %s: %s", q->log_path, strerror(errno));
        if (!rc) q->log_bytes += line.len;
        kf_buf_free(&line);
    }
    if (!rc) rc = push(q, q->next_seq, json, len);
    if (rc) return rc;
    if (seq) *seq = q->next_seq;
    q->next_seq++;
    return KF_OK;
}

int kf_evq_next(const struct kf_evq *q, uint64_t after, uint64_t *seq, const char **json)
{
    size_t i;
    for (i = 0; i < q->n; i++)
        if (q->evs[i].seq > after) {
            *seq = q->evs[i].seq;
            *json = q->evs[i].json;
            return 1;
        }
    return 0;
}

enum kf_err kf_evq_ack(struct kf_evq *q, uint64_t seq)
{
    char text[32];
    size_t k = 0;
    enum kf_err rc;
    if (seq <= q->acked) return KF_OK;
    snprintf(text, sizeof(text), "%" PRIu64 "\n", seq);
    rc = kf_file_write(q->ack_path, text, strlen(text), 0600, KF_FILE_REPLACE);
    if (rc) return rc;
    q->acked = seq;
    while (k < q->n && q->evs[k].seq <= seq)
        k++;
    drop_front(q, k);
    if (q->n == 0 || q->log_bytes > q->max_bytes / 2) return compact(q);
    return KF_OK;
}

size_t kf_evq_pending(const struct kf_evq *q)
{
    return q->n;
}

uint64_t kf_evq_dropped(const struct kf_evq *q)
{
    return q->dropped;
}
