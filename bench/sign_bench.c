/*
 * sign_bench: device certificates issued per second through the signer (CSR parsed and checked,
 * policy checked, certificate built and signed), for comparison with the raw signatures per
 * second that `openssl speed` reports for the same key type on the same run.
 *
 *   sign_bench SECONDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pki_csr.h"
#include "server/ca/signer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0, t0, dt;
    struct kf_key *root_key = NULL, *iss_key = NULL, *dev_key = NULL, *pub = NULL;
    struct kf_cert *root = NULL, *iss = NULL;
    struct kf_signer *signer = NULL;
    struct kf_cert_template t;
    struct kf_buf csr_pem, spki;
    struct kf_csr_policy policy;
    time_t now = time(NULL);
    long n = 0;

    memset(&t, 0, sizeof(t));
    if (kf_key_generate(KF_KEY_EC_P256, &root_key) || kf_key_generate(KF_KEY_EC_P256, &iss_key) ||
        kf_key_generate(KF_KEY_EC_P256, &dev_key))
        return 1;
    t.profile = KF_PROFILE_ROOT_CA;
    t.cn = "bench root";
    t.key = root_key;
    t.not_before = now - 60;
    t.not_after = now + 86400L * 3650;
    if (kf_cert_build(&t, NULL, root_key, &root)) return 1;
    t.profile = KF_PROFILE_ISSUING_CA;
    t.cn = "bench issuing";
    t.key = iss_key;
    if (kf_cert_build(&t, root, root_key, &iss)) return 1;
    if (kf_signer_wrap(KF_SIGNER_ISSUING, iss, iss_key, &signer)) return 1;
    kf_buf_init(&csr_pem, 65536);
    kf_buf_init(&spki, 4096);
    if (kf_csr_create(dev_key, "bench-device", &csr_pem)) return 1;
    kf_csr_policy_default(&policy);
    policy.expected_cn = "bench-device";

    t0 = now_s();
    do {
        for (int i = 0; i < 50; i++) {
            struct kf_csr *csr = NULL;
            struct kf_cert *cert = NULL;
            struct kf_sign_request r;
            if (kf_csr_parse(csr_pem.data, csr_pem.len, &csr) || kf_csr_check(csr, &policy, NULL) ||
                kf_csr_public_key(csr, &pub))
                return 1;
            kf_buf_reset(&spki);
            kf_key_public_der(pub, &spki);
            memset(&r, 0, sizeof(r));
            r.profile = KF_PROFILE_DEVICE;
            r.spki = spki.data;
            r.spki_len = spki.len;
            r.cn = r.device_id = "bench-device";
            r.not_before = now - 60;
            r.not_after = now + 30L * 86400;
            if (kf_signer_issue(signer, &r, &cert)) {
                fprintf(stderr, "%s\n", kf_errmsg());
                return 1;
            }
            kf_cert_free(cert);
            kf_key_free(pub);
            kf_csr_free(csr);
            n++;
        }
        dt = now_s() - t0;
    } while (dt < seconds);
    printf("issued=%ld seconds=%.3f certs_per_s=%.0f\n", n, dt, n / dt);
    kf_signer_free(signer);
    kf_cert_free(root);
    kf_key_free(root_key);
    kf_key_free(dev_key);
    kf_buf_free(&csr_pem);
    kf_buf_free(&spki);
    return 0;
}
