/*
 * config: keyfleet.conf, the deployment's INI file.
 *
 * Every key has a default; unknown sections and keys are errors (a typo must not silently fall
 * back to a default); every error names the file, the line and what is wrong. Paths in the file
 * are relative to the file's own directory, so a deployment directory can be moved whole.
 */
#ifndef KF_SERVER_CA_CONFIG_H
#define KF_SERVER_CA_CONFIG_H

#include <limits.h>

#include "common/conf.h"
#include "common/err.h"
#include "server/ca/checkpoint.h"
#include "server/hub/conf.h"
#include "server/provision/conf.h"
#include "server/store/events.h"

#define KF_CONF_PATH_MAX 1024
#define KF_CONF_NAME     "keyfleet.conf"

/* [deployment] */
struct kf_deployment_conf {
    char name[64]; /* the O of the certificates the deployment issues */
};

/* [store] */
struct kf_store_conf {
    char url[KF_CONF_PATH_MAX]; /* a SQLite file, sqlite:PATH (or, later, postgresql://) */
};

/* [ca]: the CA files and the lifetimes of what it signs */
struct kf_ca_conf {
    char key_type[16];
    char root_cert[KF_CONF_PATH_MAX];
    char root_key[KF_CONF_PATH_MAX];
    char issuing_cert[KF_CONF_PATH_MAX];
    char issuing_key[KF_CONF_PATH_MAX]; /* a path, or a pkcs11: / tpm2: URI */
    char crl_file[KF_CONF_PATH_MAX];
    int device_cert_days;
    int device_cert_minutes; /* 0: device_cert_days */
    int service_cert_days;
    int server_cert_days;
    int crl_hours;
    /* the signed-update repository's online keys: files (made on first use), or in hardware */
    char update_timestamp_key[KF_CONF_PATH_MAX];
    char update_snapshot_key[KF_CONF_PATH_MAX];
};

/* [server]: keyfleetd's own TLS certificate */
struct kf_server_conf {
    char cert[KF_CONF_PATH_MAX];
    char key[KF_CONF_PATH_MAX];
};

extern const struct kf_conf_section kf_deployment_section, kf_store_section, kf_ca_section,
    kf_server_section;

/*
 * The whole file: every section in the struct of the module it configures (each module declares
 * its section's keys beside its struct: provision/conf.h, hub/conf.h, store/events.h,
 * ca/checkpoint.h, and this file for the deployment's own).
 */
struct kf_config {
    char dir[KF_CONF_PATH_MAX]; /* the directory paths are relative to */
    struct kf_deployment_conf deployment;
    struct kf_store_conf store;
    struct kf_ca_conf ca;
    struct kf_server_conf server;
    struct kf_prov_conf provisioning;
    struct kf_hub_conf hub;
    struct kf_events_conf events;
    struct kf_audit_conf audit;
};

/* Fills `c` with the defaults (relative paths; `dir` empty). */
void kf_config_defaults(struct kf_config *c);

/*
 * Reads `path` over the defaults. `c->dir` becomes the file's directory. KF_E_CONFIG with
 * "PATH:LINE: what is wrong" for a syntax error, an unknown section or key, or a bad value;
 * KF_E_NOT_FOUND when the file does not exist.
 */
enum kf_err kf_config_load(const char *path, struct kf_config *c);

/*
 * Writes `c` as a commented keyfleet.conf to `path` (mode 0600; refuses to overwrite). `when`
 * is a line saying who wrote it, for the header.
 */
enum kf_err kf_config_write(const char *path, const struct kf_config *c, const char *when);

/*
 * What differs between `a` and `b`, as JSON object text (owned; NULL when out of memory):
 * {"hub.msg_rate": {"from": 1000, "to": 5}, ...}. Keys whose values may hold a secret (the CA key
 * URIs, which may carry a PIN; the store URL) say only {"changed": true}. "{}" when nothing did.
 */
char *kf_config_diff(const struct kf_config *a, const struct kf_config *b);

/*
 * Resolves a path or URI from the config: URIs (pkcs11:, tpm2:, sqlite:, postgresql:) and
 * absolute paths are copied; relative paths are joined to `c->dir`.
 */
enum kf_err kf_config_resolve(const struct kf_config *c, const char *value, char *out, size_t cap);

#endif
