/* Fuzz target: a stored hub message read back (kf_msg_decode), and written again the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "server/hub/broker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_msg *m = kf_msg_decode(data, size);
    struct kf_buf b;
    kf_err_clear();
    if (!m) return 0;
    /* what reads back writes back byte for byte */
    kf_buf_init(&b, 2 * size + 64);
    if (kf_msg_encode(m, &b) == KF_OK && (b.len != size || memcmp(b.data, data, size) != 0))
        abort();
    kf_buf_free(&b);
    kf_msg_release(m);
    return 0;
}
