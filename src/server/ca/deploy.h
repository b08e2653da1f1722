/*
 * deploy: a keyfleet deployment directory, made by `keyfleet init` and used by every program.
 *
 *   DIR/keyfleet.conf        configuration (commented)
 *   DIR/keyfleet.db          the registry (SQLite)
 *   DIR/ca/root.crt, .key    root CA (the key may be taken offline after init)
 *   DIR/ca/issuing.crt, .key issuing CA (the key may live in an HSM or TPM instead)
 *   DIR/ca/chain.pem         issuing CA then root CA: what clients need to verify keyfleet's certs
 *   DIR/ca/crl.pem           the issuing CA's current CRL
 *   DIR/server/server.crt    keyfleetd's TLS certificate, followed by the issuing CA
 *   DIR/server/server.key
 * The directory is 0700 and every private key 0600.
 */
#ifndef KF_SERVER_CA_DEPLOY_H
#define KF_SERVER_CA_DEPLOY_H

#include <stddef.h>

#include "common/pki_key.h"
#include "server/ca/config.h"
#include "server/ca/signer.h"
#include "server/store/store.h"

struct kf_deploy {
    char dir[KF_CONF_PATH_MAX];
    char conf_path[KF_CONF_PATH_MAX];
    struct kf_config cfg;
    struct kf_store *store;    /* owned */
    struct kf_signer *issuer;  /* owned; opened on first use by kf_deploy_issuer() */
    int64_t audit_seq_at_open; /* the audit log's last seq when opened or last checkpointed */
};

/*
 * Opens the deployment in `dir`: reads keyfleet.conf and opens the store. KF_E_NOT_FOUND with
 * "no keyfleet deployment in DIR (run keyfleet init --dir DIR)" when there is none.
 * `*out` is owned by the caller (kf_deploy_close).
 */
enum kf_err kf_deploy_open(const char *dir, struct kf_deploy **out);

/*
 * As kf_deploy_open, with the configuration read from `conf_path` instead of DIR/keyfleet.conf.
 * Relative paths in it still mean the deployment directory.
 */
enum kf_err kf_deploy_open_config(const char *dir, const char *conf_path, struct kf_deploy **out);

void kf_deploy_close(struct kf_deploy *d);

/*
 * The issuing CA's signer, opened on first use (its key may be in an HSM that asks for a PIN
 * through the key URI or KEYFLEET_PKCS11_PIN; a passphrase-protected key file takes
 * KEYFLEET_CA_PASSPHRASE). Borrowed: lives as long as `d`.
 */
enum kf_err kf_deploy_issuer(struct kf_deploy *d, struct kf_signer **out);

/*
 * Signs a checkpoint of the audit log when records were added since the deployment was opened
 * (or since its last checkpoint here): see checkpoint.h. kf_deploy_close calls it; a failure
 * (the issuing key cannot be used) is logged, not returned: the records stay, unvouched for
 * until the next checkpoint.
 */
void kf_deploy_checkpoint(struct kf_deploy *d);

/* The issuing signer's policy that configuration `c` sets (the longest validity per profile). */
void kf_deploy_signer_policy(const struct kf_config *c, struct kf_signer_policy *p);

/* Resolves a path or URI from the configuration against the deployment directory. */
enum kf_err kf_deploy_path(const struct kf_deploy *d, const char *value, char *out, size_t cap);

#endif
