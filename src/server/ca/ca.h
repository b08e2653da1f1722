/*
 * ca: the certificate authority's operations on a deployment: issue, revoke, publish the CRL.
 *
 * Each operation changes the store and appends its audit records in one transaction, and a
 * certificate is handed out only after that transaction is durable.
 */
#ifndef KF_SERVER_CA_CA_H
#define KF_SERVER_CA_CA_H

#include "common/pki_crl.h"
#include "common/pki_csr.h"
#include "server/ca/deploy.h"

/*
 * Fills `r` from `cert` (heap fields owned by `r`: kf_cert_rec_clear). `device_id` may be NULL.
 */
enum kf_err kf_ca_cert_record(const struct kf_cert *cert, enum kf_profile profile,
                              const char *issuer, const char *device_id, struct kf_cert_rec *r);

/*
 * What device and service certificates issued by hand share: the lifetime asked for (`days`,
 * 0: `max_days`) checked against the configured `max_days` of `kind` ("device", "service"),
 * and the CSR checked (its CN must be `cn`). Nothing is signed.
 */
enum kf_err kf_ca_check_request(const struct kf_csr *csr, const char *cn, int days, int max_days,
                                const char *kind);

/*
 * Signs a certificate of `profile` (device or service) for the key in `csr` with the issuing
 * CA: CN `cn`, valid from a minute ago for `days`, with `device_id` or `service` and `role`
 * (unused ones NULL). `*cert` (owned) and its store record `*rec` (kf_cert_rec_clear) on success.
 */
enum kf_err kf_ca_sign(struct kf_deploy *d, enum kf_profile profile, const char *cn,
                       const char *device_id, const char *service, const char *role, int days,
                       const struct kf_csr *csr, struct kf_cert **cert, struct kf_cert_rec *rec);

/*
 * How every revocation goes: checks that the CRL can be signed before anything is revoked,
 * runs `write(txn, arg)` (which revokes), then publishes the new CRL. `what` names the object
 * ("device dev-1") in the message when the CRL could not follow.
 */
enum kf_err kf_ca_revoke_with(struct kf_deploy *d, const char *actor, const char *what,
                              kf_store_write_cb write, void *arg);

/*
 * Issues an operational certificate for device `device_id` from `csr` (whose CN must be the
 * id), valid `days` (0: the configured device_cert_days). Creates the device (active, under
 * `enrollment`, which may be NULL) when it does not exist; refuses a disabled or revoked device.
 * Records the certificate and audits "cert.issue" as `actor`. `*out` is owned by the caller.
 */
enum kf_err kf_ca_issue_device(struct kf_deploy *d, const char *actor, const char *device_id,
                               const char *enrollment, const struct kf_csr *csr, int days,
                               struct kf_cert **out);

/*
 * Inside `txn`: revokes every valid certificate of device `owner` (`service` 0) or of service
 * `owner` (`service` 1) with `reason`, auditing each as "cert.revoke" by `actor`; `*count`
 * receives how many. The caller publishes the CRL once the transaction is durable.
 */
enum kf_err kf_ca_revoke_owned(struct kf_txn *txn, const char *actor, int service,
                               const char *owner, int reason, int *count);

/*
 * Revokes the certificate with `serial` (reason: enum kf_crl_reason), audits "cert.revoke", and
 * publishes a new CRL. KF_E_CONFLICT when it is already revoked, KF_E_NOT_FOUND.
 */
enum kf_err kf_ca_revoke(struct kf_deploy *d, const char *actor, const char *serial, int reason);

/*
 * Signs a new CRL from the store's revocations with the next CRL number, audits "crl.publish",
 * and writes it to the configured crl_file (unless a newer one is already there). `*out` (may
 * be NULL) receives the CRL, owned by the caller.
 */
enum kf_err kf_ca_publish_crl(struct kf_deploy *d, const char *actor, struct kf_crl **out);

#endif
