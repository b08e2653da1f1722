/*
 * enroll: enrollments, which decide who may provision.
 *
 * Individual: one registration id bound to its factory certificate or public key.
 * Group: a manufacturer CA, usable only once its owner has proven possession of the CA's key:
 * keyfleet hands out a random verification code, and the owner returns a certificate with that
 * code as CN, signed by the CA's key.
 * Every change is audited in the same transaction.
 */
#ifndef KF_SERVER_OPS_ENROLL_H
#define KF_SERVER_OPS_ENROLL_H

#include "server/ca/deploy.h"

#define KF_CODE_TTL (24 * 3600) /* seconds a verification code stays valid */

/*
 * How devices of an enrollment get their hub:
 *   hashed   (the default) weighted hashing of the device id over the enabled hubs (kf_hub_assign)
 *   static   the one hub the enrollment names, which must exist
 * Naming a hub implies static; static without a hub, or hashed with one, is a usage error.
 */
struct kf_enroll_opts {
    const char *networks; /* comma-separated CIDRs allowed to provision; NULL: any */
    int disabled;         /* create it disabled */
    const char
        *allocation;      /* "hashed" or "static"; NULL: static when `hub` is given, else hashed */
    const char *hub;      /* the hub of a static allocation; NULL: none */
    const char *approval; /* "auto" (the default) or "manual": new devices wait for an operator */
    int require_binding;  /* 1: every CSR carries the TLS channel binding (RFC 7030 3.5) */
};

/*
 * An operator's decision on device `device_id`, which asked to provision through an enrollment
 * with approval manual: approved (it gets its certificate when it next asks) or rejected (it is
 * refused). Audited as approval.approve / approval.reject, with a provisioning.approved /
 * .rejected event. No change (and no record) when it already stands so; KF_E_NOT_FOUND when the
 * device never asked. `*out` (may be NULL): the approval as it now is.
 */
enum kf_err kf_enroll_decide(struct kf_deploy *d, const char *actor, const char *device_id,
                             int approve, struct kf_approval_rec *out, int *changed);

/* KF_E_USAGE unless `approval` is NULL, "auto" or "manual". */
enum kf_err kf_enroll_approval_check(const char *approval);

/*
 * Adds an individual enrollment for registration id `id`, bound to a factory certificate
 * (`cert_path`) or a public key (`pubkey_path`): exactly one of them. The certificate's CN must be
 * `id`, it must not be a CA, be within its validity, and carry an allowed key. `opts` (may be
 * NULL) as above; a static hub must exist (KF_E_NOT_FOUND).
 */
enum kf_err kf_enroll_add(struct kf_deploy *d, const char *actor, const char *id,
                          const char *cert_path, const char *pubkey_path,
                          const struct kf_enroll_opts *opts);

/*
 * Creates a group enrollment `name` for the CA certificate at `ca_path` (a valid CA with an
 * allowed key, not already used by another group) and writes its verification code to `code`
 * (KF_CODE_MAX).
 */
enum kf_err kf_enroll_group_create(struct kf_deploy *d, const char *actor, const char *name,
                                   const char *ca_path, const struct kf_enroll_opts *opts,
                                   char *code);

/* Issues a new verification code for an unverified group (the old one stops working). */
enum kf_err kf_enroll_group_code(struct kf_deploy *d, const char *actor, const char *name,
                                 char *code);

/*
 * Verifies group `name` with the certificate at `cert_path`: its CN must be the group's current
 * code and it must be signed by the group CA's key. KF_E_EXPIRED for an expired code,
 * KF_E_DENIED for a wrong CN or signature, KF_E_CONFLICT when already verified.
 */
enum kf_err kf_enroll_group_verify(struct kf_deploy *d, const char *actor, const char *name,
                                   const char *cert_path);

/* Enables or disables enrollment `id` (no change, and no audit record, when it already is). */
enum kf_err kf_enroll_set_enabled(struct kf_deploy *d, const char *actor, const char *id,
                                  int enabled, int *changed);

/* What kf_enroll_update changes; NULL / 0 leaves that part as it is. Strings are borrowed. */
struct kf_enroll_change {
    const char *allocation; /* "hashed" or "static" (static needs `hub`) */
    const char *hub;        /* a hub for static allocation; implies static */
    const char *networks;   /* comma-separated CIDRs that replace the enrollment's networks */
    int any_network;        /* 1: lift the network limit (not with `networks`) */
    const char *approval;   /* "auto" or "manual" */
    int require_binding;    /* -1: leave it, 0: no longer required, 1: required */
};

/*
 * Changes the allocation policy, static hub and allowed networks of enrollment `id`, and audits
 * "enrollment.update" with the fields that changed (the new values) as its detail. Going to
 * hashed clears the hub. `*changed` (may be NULL) says whether anything changed; no change means
 * no audit record. KF_E_USAGE when `c` asks for nothing or for a contradiction, KF_E_INVALID for
 * a bad value, KF_E_NOT_FOUND when the enrollment or the hub does not exist. Devices get their
 * new hub when they next register.
 */
enum kf_err kf_enroll_update(struct kf_deploy *d, const char *actor, const char *id,
                             const struct kf_enroll_change *c, int *changed);

/* Removes enrollment `id`; its devices stay, without an enrollment. */
enum kf_err kf_enroll_remove(struct kf_deploy *d, const char *actor, const char *id);

#endif
