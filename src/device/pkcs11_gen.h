/*
 * pkcs11_gen: key pairs generated inside a PKCS#11 token, for libkeyfleet's operational keys.
 * The libp11 engine that loads token keys cannot generate EC keys (libp11 0.4.12), so this calls
 * the module's C_GenerateKeyPair itself: the private half is made in the token, sensitive and
 * not extractable, and never exists anywhere else.
 */
#ifndef KF_DEVICE_PKCS11_GEN_H
#define KF_DEVICE_PKCS11_GEN_H

#include <stddef.h>

#include "common/err.h"
#include "common/pki_key.h"

/*
 * Generates an EC P-256 key pair labelled `label` in the token named by `like_uri` (a key URI
 * with token=..., its module and PIN as kf_key_load takes them). `uri` gets the new key's URI
 * without the query (no PIN in it); `*out` the key, loaded through the engine.
 */
enum kf_err kf_pkcs11_generate(const char *like_uri, const char *label, char *uri, size_t cap,
                               struct kf_key **out);

/*
 * Appends the query of `like_uri` (module, PIN) to `uri` into `out`: what kf_key_load needs for
 * a key stored by kf_pkcs11_generate.
 */
enum kf_err kf_pkcs11_uri_with_query(const char *uri, const char *like_uri, char *out, size_t cap);

/* Destroys the objects labelled as the key of `uri_with_query` is; best effort. */
void kf_pkcs11_destroy(const char *uri_with_query);

#endif
