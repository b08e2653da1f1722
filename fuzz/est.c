/*
 * Fuzz target: keyfleet's EST codec (common/est), both directions' readers on every input:
 * simpleenroll bodies (base64 or PEM of a PKCS#10 CSR) with the CSR checks, as keyfleetd reads
 * them, and certs-only answers (base64 of a PKCS#7), as libkeyfleet reads them.
 */
#include <stdint.h>

#include "common/buf.h"
#include "common/est.h"
#include "common/pki_csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_csr *csr = NULL;
    struct kf_csr_policy p;
    enum kf_csr_rule rule;
    struct kf_buf body, pem;
    char cn[256];

    kf_buf_init(&body, size + 1);
    kf_buf_init(&pem, 1 << 20);
    if (kf_buf_append(&body, data, size) == KF_OK) (void)kf_est_certs_pem(&body, &pem);
    kf_buf_free(&body);
    kf_buf_free(&pem);

    if (kf_est_decode_csr(data, size, &csr) != KF_OK) return 0;
    kf_csr_policy_default(&p);
    kf_csr_check(csr, &p, &rule);
    kf_csr_subject_cn(csr, cn, sizeof(cn));
    kf_csr_free(csr);
    return 0;
}
