/*
 * Fuzz target: the TUF verifier. The input is up to four metadata files split by "\n--\n": the
 * root a client trusts, then timestamp, snapshot and targets, fed in the client's order at a
 * fixed time; then the first target's bytes (what follows a fifth separator) through the stream
 * check. The verifier must never crash, never trust a version lower than one it trusted, and
 * never pass more bytes than a target's length.
 */
#include <stdint.h>
#include <string.h>

#include "common/tuf.h"

#define NOW 1800000000L

static void first_target(const struct kf_tuf_target *tg, void *arg)
{
    struct kf_tuf_target *out = arg;
    if (!out->path[0]) *out = *tg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[6];
    size_t len[6], n = 0, from = 0;
    struct kf_tuf_trusted *t = NULL;
    struct kf_tuf_target tg;

    for (size_t i = 0; n < 5 && i + 4 <= size; i++)
        if (memcmp(data + i, "\n--\n", 4) == 0) {
            part[n] = data + from;
            len[n++] = i - from;
            from = i + 4;
            i += 3;
        }
    part[n] = data + from;
    len[n++] = size - from;
    if (kf_tuf_trusted_new(part[0], len[0], &t) != KF_TUF_OK) return 0;
    if (kf_tuf_root_done(t, NOW) == KF_TUF_OK && n > 1 &&
        kf_tuf_update_timestamp(t, part[1], len[1], NOW) == KF_TUF_OK && n > 2 &&
        kf_tuf_update_snapshot(t, part[2], len[2], NOW, 0) == KF_TUF_OK && n > 3 &&
        kf_tuf_update_targets(t, part[3], len[3], NOW, 0) == KF_TUF_OK) {
        int64_t v = kf_tuf_version(t, KF_TUF_TARGETS), want;
        uint64_t mlen;
        /* What was trusted is the version the snapshot names. */
        if (kf_tuf_meta_of(t, KF_TUF_TARGETS, &want, &mlen) != KF_TUF_OK || v != want)
            __builtin_trap();
        memset(&tg, 0, sizeof(tg));
        kf_tuf_targets_each(t, first_target, &tg);
        if (tg.path[0] && n > 4) {
            struct kf_tuf_stream s;
            if (kf_tuf_stream_init(&s, &tg) == KF_OK) {
                if (kf_tuf_stream_update(&s, part[4], len[4]) == KF_TUF_OK && s.seen > tg.length)
                    __builtin_trap();
                kf_tuf_stream_final(&s);
            }
        }
    }
    kf_tuf_trusted_free(t);
    kf_err_clear();
    return 0;
}
