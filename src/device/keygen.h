/*
 * keygen: a device's new operational key, made where its factory key lives: in the TPM when the
 * factory key is a TPM key (kept as a TSS2 blob that only that TPM can use), in the PKCS#11
 * token when it is a token key, otherwise in memory and saved as a 0600 PKCS#8 file.
 */
#ifndef KF_DEVICE_KEYGEN_H
#define KF_DEVICE_KEYGEN_H

#include <stddef.h>

#include "common/err.h"
#include "common/pki_key.h"

/*
 * Generates an EC P-256 key beside `factory` (loaded from `factory_uri`). `base` is a path
 * without extension for the file forms ("DIR/op-3"); `label` names a token object
 * ("keyfleet-op-3"). `uri` (capacity `cap`) gets the URI that loads it again; `*out` the key.
 */
enum kf_err kf_keygen_like(const struct kf_key *factory, const char *factory_uri, const char *base,
                           const char *label, char *uri, size_t cap, struct kf_key **out);

/*
 * Removes a key made by kf_keygen_like (its file, or its token objects, reached with the
 * module and PIN of `factory_uri`); best effort.
 */
void kf_keygen_remove(const char *uri, const char *factory_uri);

#endif
