/* Fuzz target: certificate parsing and every field keyfleet reads from one. */
#include <stdint.h>
#include <time.h>

#include "common/pki_cert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_cert *c = NULL, **chain = NULL;
    struct kf_key *k = NULL;
    char buf[KF_NAME_MAX], serial[KF_SERIAL_HEX_MAX], fp[KF_FINGERPRINT_HEX];
    size_t n = 0;

    if (kf_cert_parse(data, size, &c) == KF_OK) {
        kf_cert_subject_cn(c, buf, sizeof(buf));
        kf_cert_subject(c, buf, sizeof(buf));
        kf_cert_issuer(c, buf, sizeof(buf));
        kf_cert_serial_hex(c, serial);
        kf_cert_fingerprint(c, fp);
        kf_cert_uri_san(c, "urn:keyfleet:device:", buf, sizeof(buf));
        kf_cert_is_ca(c);
        kf_cert_is_self_signed(c);
        kf_cert_check_ca(c, "fuzz", 1700000000);
        if (kf_cert_public_key(c, &k) == KF_OK) {
            kf_key_describe(k, buf, sizeof(buf));
            kf_key_check_allowed(k, KF_KEY_ALLOWED_DEFAULT, 2048, "key");
            kf_key_free(k);
        }
        kf_cert_free(c);
    }
    if (kf_cert_parse_chain(data, size, &chain, &n) == KF_OK) kf_cert_chain_free(chain, n);
    return 0;
}
