/*
 * checkpoint: signed checkpoints of the audit chain's head.
 *
 * The audit log is a hash chain: `keyfleet audit verify` finds a record altered, deleted or
 * moved. But the chain is unkeyed, so whoever can write the store can rewrite a record and
 * recompute every hash after it, and the chain verifies again. A checkpoint closes that: the
 * issuing CA's signer signs "record N had hash H at time T" (the statement is the signer's own,
 * kf_signer_checkpoint_statement), and the signature cannot be recomputed without the CA's key,
 * which is not in the store (a file beside it with mode 0600, or a PKCS#11 token or a TPM). So a
 * log whose chain verifies but whose record N no longer has hash H was rewritten, and a log that
 * ends before a checkpoint's N was cut off. The signature is checked against the issuing CA's
 * certificate as the deployment holds it on disk, not the copy in the store, which the same
 * writer could replace.
 *
 * keyfleetd makes one every [audit] checkpoint_s when the head moved, and at its stop; the CLI
 * makes one when a command it ran added records. What a checkpoint cannot do: records after the
 * newest one are covered by the chain alone (verify says how many), and a writer who deletes the
 * newest checkpoints shrinks what is covered; `audit verify --head` with a head kept elsewhere
 * still catches that.
 */
#ifndef KF_SERVER_CA_CHECKPOINT_H
#define KF_SERVER_CA_CHECKPOINT_H

#include <stdint.h>

#include "common/conf.h"
#include "common/pki_cert.h"
#include "server/ca/signer.h"
#include "server/store/store.h"

/* [audit] */
struct kf_audit_conf {
    int checkpoint_s; /* keyfleetd signs a checkpoint of the audit log's head this often */
};
extern const struct kf_conf_section kf_audit_section;

/*
 * Signs and records a checkpoint of the log's current head, unless the newest checkpoint is of it
 * already (or the log is empty). `*made` (may be NULL) says whether one was made.
 */
enum kf_err kf_checkpoint_make(struct kf_store *store, struct kf_signer *signer, int *made);

struct kf_checkpoint_verdict {
    enum kf_audit_fault fault; /* KF_AUDIT_INTACT, _REWRITTEN, _FORGED or _HEAD */
    int64_t seq;               /* the record the failing checkpoint is of */
    int64_t checkpoints;       /* checkpoints in the store */
    int64_t newest_seq;        /* the newest checkpoint's record (0: none) */
    int64_t newest_time_ms;
    int64_t uncovered; /* records after the newest checkpoint: the chain alone covers them */
    char message[256];
};

/*
 * Checks the checkpoints in `txn` against the log (whose chain should verify first: see
 * kf_txn_audit_verify) and the newest one's signature, and any checkpoint the log disagrees
 * with, against `issuer` (the issuing CA's certificate, from the deployment's file). KF_OK when
 * they hold (also when there are none: `v->checkpoints` 0); KF_E_TAMPERED with `v` saying which
 * fault: REWRITTEN (a record no longer has the hash a valid checkpoint signed), FORGED (a
 * checkpoint's signature does not verify), HEAD (the log ends before a checkpoint's record).
 */
enum kf_err kf_checkpoint_verify(struct kf_txn *txn, const struct kf_cert *issuer,
                                 struct kf_checkpoint_verdict *v);

#endif
