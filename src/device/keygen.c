/* New operational keys where the factory key lives. */
#include "device/keygen.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>

#include "common/file.h"
#include "common/ossl.h"
#include "device/pkcs11_gen.h"

static enum kf_err gen_file(const char *base, char *uri, size_t cap, struct kf_key **out)
{
    struct kf_key *k = NULL;
    enum kf_err rc;
    if ((size_t)snprintf(uri, cap, "%s.key", base) >= cap)
        return kf_fail(KF_E_OVERSIZE, "key path too long");
    unlink(uri); /* a leftover of an attempt that crashed before it was used */
    rc = kf_key_generate(KF_KEY_EC_P256, &k);
    if (!rc) rc = kf_key_save(k, uri, NULL);
    if (rc) {
        kf_key_free(k);
        return rc;
    }
    *out = k;
    return KF_OK;
}

static enum kf_err gen_tpm2(const char *base, char *uri, size_t cap, struct kf_key **out)
{
    OSSL_LIB_CTX *libctx = kf_ossl_tpm2_libctx();
    OSSL_ENCODER_CTX *ectx = NULL;
    EVP_PKEY *pk = NULL;
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    char path[4096];
    enum kf_err rc;

    if (!libctx) return kf_wrap(kf_errlast(), "cannot make a key in the TPM");
    if ((size_t)snprintf(path, sizeof(path), "%s.tss2", base) >= sizeof(path) ||
        (size_t)snprintf(uri, cap, "tpm2:%s", path) >= cap)
        return kf_fail(KF_E_OVERSIZE, "key path too long");
    pk = EVP_PKEY_Q_keygen(libctx, "provider=tpm2", "EC", "P-256");
    if (!pk) return kf_ossl_fail(KF_E_CRYPTO, "the TPM could not generate a P-256 key");
    /* The tpm2 provider encodes its keys as TSS2 blobs: wrapped by the TPM, useless elsewhere. */
    ectx = OSSL_ENCODER_CTX_new_for_pkey(pk, EVP_PKEY_KEYPAIR, "PEM", NULL, "provider=tpm2");
    if (!ectx || OSSL_ENCODER_to_data(ectx, &pem, &pem_len) != 1) {
        rc = kf_ossl_fail(KF_E_CRYPTO, "cannot encode the TPM key");
        goto out;
    }
    if (!memmem(pem, pem_len, "TSS2 PRIVATE KEY", 16)) {
        rc = kf_fail(KF_E_CRYPTO, "the TPM key did not encode as a TSS2 blob");
        goto out;
    }
    unlink(path);
    rc = kf_file_write(path, pem, pem_len, 0600, 0);
    if (!rc) rc = kf_key_load(uri, NULL, out);
out:
    OPENSSL_free(pem);
    OSSL_ENCODER_CTX_free(ectx);
    EVP_PKEY_free(pk);
    return rc;
}

enum kf_err kf_keygen_like(const struct kf_key *factory, const char *factory_uri, const char *base,
                           const char *label, char *uri, size_t cap, struct kf_key **out)
{
    *out = NULL;
    switch (factory->loc) {
    case KF_KEYLOC_TPM2: return gen_tpm2(base, uri, cap, out);
    case KF_KEYLOC_PKCS11: return kf_pkcs11_generate(factory_uri, label, uri, cap, out);
    default: return gen_file(base, uri, cap, out);
    }
}

void kf_keygen_remove(const char *uri, const char *factory_uri)
{
    if (strncmp(uri, "pkcs11:", 7) == 0) {
        char full[2048];
        if (kf_pkcs11_uri_with_query(uri, factory_uri, full, sizeof(full)) == KF_OK)
            kf_pkcs11_destroy(full);
        OPENSSL_cleanse(full, sizeof(full));
        return;
    }
    if (strncmp(uri, "tpm2:", 5) == 0) uri += 5;
    if (strncmp(uri, "file:", 5) == 0) uri += 5;
    unlink(uri);
}
