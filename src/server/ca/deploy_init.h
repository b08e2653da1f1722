/*
 * deploy_init: making a deployment (`keyfleet init`): the root and issuing CAs, the server
 * certificate, the configuration and the store, in a temporary directory renamed into place.
 * A CA operation on top of deploy.h (which opens and closes a deployment) and ca.h.
 */
#ifndef KF_SERVER_CA_DEPLOY_INIT_H
#define KF_SERVER_CA_DEPLOY_INIT_H

#include "server/ca/deploy.h"

#define KF_INIT_MAX_NAMES 16

struct kf_init_opts {
    const char *dir;
    const char *const *names;  /* DNS names or IP addresses for the server certificate */
    size_t n_names;            /* 0: localhost, 127.0.0.1, ::1 and this host's name */
    enum kf_key_type key_type; /* KF_KEY_NONE: P-256 */
    const char *issuing_key;   /* NULL: generate a key file; else a pkcs11:/tpm2:/file URI */
    const char *name;          /* deployment name; NULL: "keyfleet" */
    const char *actor;         /* who, for the audit log */
};

struct kf_init_report {
    char dir[KF_CONF_PATH_MAX];
    char root_subject[KF_NAME_MAX], issuing_subject[KF_NAME_MAX];
    char root_fingerprint[KF_FINGERPRINT_HEX], issuing_fingerprint[KF_FINGERPRINT_HEX];
    char server_fingerprint[KF_FINGERPRINT_HEX];
    char key_desc[32];             /* "EC P-256" */
    char issuing_key_location[16]; /* "file", "pkcs11", "tpm2" */
    char names[512];               /* the server certificate's names, comma-separated */
    size_t n_dns, n_ips;           /* of which DNS names, IP addresses */
    long root_days, issuing_days, server_days;
};

/*
 * Creates a deployment in `o->dir`, which must not exist or be empty; refuses (KF_E_EXISTS) to
 * touch an existing deployment or a non-empty directory. Everything is made in a temporary
 * directory beside it and renamed into place at the end, so a failure or a crash leaves nothing
 * half-made.
 */
enum kf_err kf_deploy_init(const struct kf_init_opts *o, struct kf_init_report *report);

#endif
