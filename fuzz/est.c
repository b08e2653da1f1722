/* Fuzz target: EST simpleenroll bodies (base64 or PEM of a PKCS#10 CSR) and the CSR checks. */
#include <stdint.h>

#include "common/pki_csr.h"
#include "common/est.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_csr *csr = NULL;
    struct kf_csr_policy p;
    enum kf_csr_rule rule;
    char cn[256];

    if (kf_est_decode_csr(data, size, &csr) != KF_OK) return 0;
    kf_csr_policy_default(&p);
    kf_csr_check(csr, &p, &rule);
    kf_csr_subject_cn(csr, cn, sizeof(cn));
    kf_csr_free(csr);
    return 0;
}
