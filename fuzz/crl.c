/* Fuzz target: CRL parsing. */
#include <stdint.h>

#include "common/pki_crl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_crl *crl = NULL;
    int reason;
    if (kf_crl_parse(data, size, &crl) != KF_OK) return 0;
    kf_crl_count(crl);
    kf_crl_number(crl);
    kf_crl_next_update(crl);
    kf_crl_lists(crl, "1", &reason);
    kf_crl_free(crl);
    return 0;
}
