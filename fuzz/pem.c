/* Fuzz target: PEM armour and base64. */
#include <stdint.h>
#include <string.h>

#include "common/pem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_buf out;
    char label[KF_PEM_LABEL_MAX];
    size_t pos = 0;
    int blocks = 0;

    kf_buf_init(&out, 1 << 20);
    kf_b64_decode((const char *)data, size, &out);
    kf_buf_reset(&out);
    kf_pem_first_label((const char *)data, size, label);
    while (blocks++ < 64) {
        size_t before = pos;
        kf_buf_reset(&out);
        if (kf_pem_next((const char *)data, size, &pos, label, &out) != KF_OK) break;
        if (pos <= before || pos > size)
            __builtin_trap(); /* the cursor must always move forward and stay in bounds */
    }
    /* What we encode, we decode back to the same bytes. */
    {
        struct kf_buf enc, dec;
        kf_buf_init(&enc, 4 << 20);
        kf_buf_init(&dec, 2 << 20);
        if (kf_b64_encode(data, size, &enc, 64) == KF_OK &&
            (kf_b64_decode((const char *)enc.data, enc.len, &dec) != KF_OK || dec.len != size ||
             (size && memcmp(dec.data, data, size) != 0)))
            __builtin_trap();
        kf_buf_free(&enc);
        kf_buf_free(&dec);
    }
    kf_buf_free(&out);
    return 0;
}
