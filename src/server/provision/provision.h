/*
 * provision: the decisions of zero-touch provisioning, between an authenticated TLS peer and
 * a certificate. No I/O of its own: the worker hands it the peer's certificates and the CSR,
 * it decides (and signs) on the worker's thread, and its store callback makes the outcome
 * durable on the store's committer thread.
 *
 * Who the device is:
 *   - simpleenroll and register: the factory certificate's CN is the registration id. The
 *     individual enrollment for that id wins (the certificate, or its public key, must be the
 *     one enrolled); otherwise the first enabled, verified group whose CA the chain reaches.
 *   - simplereenroll: the client certificate is a current operational one, issued by keyfleet's
 *     issuing CA, not revoked; its URI SAN names the device; the CSR must ask for the same id.
 * Every refusal has a stable code (enum kf_refusal), an HTTP status and a sentence.
 */
#ifndef KF_SERVER_PROVISION_PROVISION_H
#define KF_SERVER_PROVISION_PROVISION_H

#include <time.h>

#include "common/pki_cert.h"
#include "common/pki_csr.h"
#include "server/store/events.h"
#include "server/net/limits.h"
#include "server/provision/refusal.h"
#include "server/ops/snapshot.h"
#include "server/ca/signer.h"
#include "server/store/store.h"

enum kf_prov_kind {
    KF_PROV_SIMPLEENROLL = 0,
    KF_PROV_SIMPLEREENROLL = 1,
    KF_PROV_REGISTER = 2,
};

#define KF_PROV_CHAIN_MAX 8
#define KF_PROV_ACTOR     "keyfleetd"

struct kf_prov_refusal {
    int status;             /* 400, 401, 403, 404, 409, 503 */
    enum kf_refusal reason; /* the stable code */
    char message[512];      /* a sentence for the device's developer */
    int verified;           /* the device's identity was established before the refusal */
};

/* What the worker knows of a request. All borrowed for kf_prov_decide. */
struct kf_prov_input {
    enum kf_prov_kind kind;
    const char *ip;               /* source address as text */
    struct kf_cert *leaf;         /* NULL when the client sent no certificate */
    struct kf_cert *const *chain; /* what it sent above its certificate */
    size_t n_chain;
    const struct kf_csr *csr;
    const char *binding;      /* the TLS channel binding, base64, when the CSR carries one */
    const char *binding_kind; /* "tls-unique", "tls-exporter" */
    const char *label;        /* the EST CA label the request came under, or NULL */
};

/* One enrollment from decision to answer. */
struct kf_prov_job {
    struct kf_store_req req; /* for kf_store_submit; the worker sets done_cb/done_arg */
    enum kf_prov_kind kind;
    char ip[KF_IP_MAX];
    char device_id[KF_ID_MAX + 1];
    char enrollment[KF_ID_MAX + 1];
    char old_serial[KF_SERIAL_HEX_MAX]; /* simplereenroll: the certificate presented */
    int has_hub;
    struct kf_hub_rec hub;
    struct kf_cert *cert;   /* the new certificate (owned) */
    struct kf_cert_rec rec; /* its store record (owned) */
    time_t renew_after;
    int new_device; /* set by the store callback */
    int refused;    /* set by the store callback when the device may not have it */
    int pending;    /* waiting for an operator's approval: no certificate, answer 202 */
    char fingerprint[KF_HASH_HEX]; /* the factory certificate's SPKI SHA-256 (approvals) */
    struct kf_prov_refusal refusal;
};

/*
 * Decides a request against the snapshot `reg` and the store, and when it may go ahead, signs
 * the certificate and returns the job to submit (`*job`, owned by the caller: kf_prov_job_free).
 * Otherwise fills `*ref` and returns KF_E_DENIED. Other errors are the server's own.
 */
enum kf_err kf_prov_decide(struct kf_snapshot *reg, struct kf_store *store,
                           struct kf_signer *signer, const struct kf_prov_input *in, time_t now,
                           struct kf_prov_job **job, struct kf_prov_refusal *ref);

/*
 * The store callback of a job (set as job->req.cb with arg = job): re-checks the device and the
 * presented certificate inside the transaction, then records the device, the certificate, the
 * registration, the audit record and a provisioning.assigned event. A device that may not have
 * the certificate sets job->refused and returns KF_E_DENIED (its changes are dropped).
 */
enum kf_err kf_prov_write_cb(struct kf_txn *txn, void *arg);

void kf_prov_job_free(struct kf_prov_job *job);

/* The most devices that may wait for approval at once (each a row in the store). */
#define KF_APPROVALS_PENDING_MAX 10000

/*
 * Records a provisioning.denied security event (reason, registration id, message, source
 * address) through the sink `events`, which aggregates repeats and bounds them all, so that
 * refusals cannot clog the store. `id` is the event's device when `ref->verified`, else the
 * identity claimed.
 */
void kf_prov_event_denied(struct kf_events *events, const struct kf_prov_refusal *ref,
                          const char *id, const char *ip);

#endif
