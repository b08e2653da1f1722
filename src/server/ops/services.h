/*
 * services: the identities of back-end applications on the hub. A service has a name (an id),
 * a role, and certificates from the issuing CA with the service profile (CN = name, URI SANs
 * urn:keyfleet:service:<name> and urn:keyfleet:role:<role>, EKU clientAuth). The hub grants
 * each role its topics:
 *   reader     subscribes to devices/+/telemetry/# and devices/+/events
 *   commander  what reader may, and publishes to devices/+/commands/#
 * Every change is audited in the same transaction (service.add, service.revoke, cert.issue,
 * cert.revoke). Revocation is final and publishes a new CRL.
 */
#ifndef KF_SERVER_OPS_SERVICES_H
#define KF_SERVER_OPS_SERVICES_H

#include "common/pki_cert.h"
#include "common/pki_csr.h"
#include "server/ca/deploy.h"

/*
 * Adds service `name` with `role` and issues its first certificate for the key in `csr` (whose
 * CN, when it has one, must be the name), valid `days` (0: service_cert_days). `*out` is the
 * certificate (owned by the caller). KF_E_EXISTS when the name is taken; KF_E_INVALID for a bad
 * name or role; the CSR's own errors as kf_csr_check gives them.
 */
enum kf_err kf_services_add(struct kf_deploy *d, const char *actor, const char *name,
                            const char *role, const struct kf_csr *csr, int days,
                            struct kf_cert **out);

/* Issues another certificate for active service `name` (a renewal, a second instance). */
enum kf_err kf_services_issue(struct kf_deploy *d, const char *actor, const char *name,
                              const struct kf_csr *csr, int days, struct kf_cert **out);

/*
 * Revokes service `name` for good, and each of its valid certificates with `reason` (enum
 * kf_crl_reason), then publishes a new CRL. `*count` (may be NULL): certificates revoked.
 * KF_E_CONFLICT when it is revoked already, KF_E_NOT_FOUND.
 */
enum kf_err kf_services_revoke(struct kf_deploy *d, const char *actor, const char *name, int reason,
                               int *count);

#endif
