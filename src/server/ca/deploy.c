#include "server/ca/deploy.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/ident.h"
#include "common/log.h"
#include "common/timefmt.h"
#include "server/ca/checkpoint.h"
#include "common/jsontext.h"

#define DAY          86400L
#define ROOT_DAYS    (20 * 365L)
#define ISSUING_DAYS (10 * 365L)
#define PEM_MAX      (256 * 1024)

static int64_t audit_seq(struct kf_store *store);

enum kf_err kf_deploy_path(const struct kf_deploy *d, const char *value, char *out, size_t cap)
{
    return kf_config_resolve(&d->cfg, value, out, cap);
}

enum kf_err kf_deploy_open_config(const char *dir, const char *conf_path, struct kf_deploy **out)
{
    struct kf_deploy *d;
    char url[KF_CONF_PATH_MAX];
    enum kf_err rc;

    *out = NULL;
    d = calloc(1, sizeof(*d));
    if (!d) return kf_fail(KF_E_NOMEM, "out of memory");
    snprintf(d->dir, sizeof(d->dir), "%s", dir);
    if (conf_path)
        rc = (size_t)snprintf(d->conf_path, sizeof(d->conf_path), "%s", conf_path) <
                     sizeof(d->conf_path)
                 ? KF_OK
                 : kf_fail(KF_E_OVERSIZE, "path too long: %s", conf_path);
    else
        rc = kf_path_join(d->conf_path, sizeof(d->conf_path), dir, KF_CONF_NAME);
    if (rc) goto fail;
    {
        struct stat st;
        if (stat(d->conf_path, &st) != 0) {
            if (conf_path)
                rc = kf_fail(errno == ENOENT ? KF_E_NOT_FOUND : KF_E_IO,
                             "cannot read configuration %s: %s", conf_path, strerror(errno));
            else if (errno == ENOENT || errno == ENOTDIR)
                rc =
                    kf_fail(KF_E_NOT_FOUND,
                            "no keyfleet deployment in %s (run: keyfleet init --dir %s)", dir, dir);
            else
                rc = kf_fail(KF_E_IO, "cannot read the deployment in %s: %s", dir, strerror(errno));
            goto fail;
        }
    }
    rc = kf_config_load(d->conf_path, &d->cfg);
    if (rc) goto fail;
    /* Paths in any configuration file mean the deployment directory. */
    snprintf(d->cfg.dir, sizeof(d->cfg.dir), "%s", dir);
    rc = kf_deploy_path(d, d->cfg.store.url, url, sizeof(url));
    if (!rc) rc = kf_store_open(url, 0, &d->store);
    if (rc) goto fail;
    d->audit_seq_at_open = audit_seq(d->store);
    *out = d;
    return KF_OK;
fail:
    free(d);
    return rc;
}

enum kf_err kf_deploy_open(const char *dir, struct kf_deploy **out)
{
    return kf_deploy_open_config(dir, NULL, out);
}

/* The audit log's last seq (0 when empty or unreadable). */
static int64_t audit_seq(struct kf_store *store)
{
    struct kf_txn *txn = NULL;
    char head[KF_HASH_HEX];
    int64_t seq = 0;
    if (kf_store_read(store, &txn) != KF_OK || kf_txn_audit_head(txn, &seq, head) != KF_OK) seq = 0;
    kf_txn_end(txn);
    kf_err_clear();
    return seq;
}

void kf_deploy_checkpoint(struct kf_deploy *d)
{
    struct kf_signer *signer;
    if (!d || !d->store || audit_seq(d->store) == d->audit_seq_at_open) return;
    if (kf_deploy_issuer(d, &signer) != KF_OK || kf_checkpoint_make(d->store, signer, NULL)) {
        kf_log(KF_LOG_WARN, "audit",
               "the new audit records are not checkpointed yet (keyfleetd will, or the next "
               "command that can use the issuing CA's key)",
               "error", kf_errmsg(), NULL);
        kf_err_clear();
        return;
    }
    d->audit_seq_at_open = audit_seq(d->store);
}

void kf_deploy_close(struct kf_deploy *d)
{
    if (!d) return;
    kf_deploy_checkpoint(d);
    kf_signer_free(d->issuer);
    kf_store_close(d->store);
    OPENSSL_cleanse(&d->cfg, sizeof(d->cfg)); /* issuing_key may hold a PIN */
    free(d);
}

void kf_deploy_signer_policy(const struct kf_config *c, struct kf_signer_policy *p)
{
    kf_signer_policy_default(p);
    p->max_days[KF_PROFILE_DEVICE] = c->ca.device_cert_days;
    p->max_days[KF_PROFILE_SERVICE] = c->ca.service_cert_days;
    p->max_days[KF_PROFILE_SERVER] = c->ca.server_cert_days;
}

enum kf_err kf_deploy_issuer(struct kf_deploy *d, struct kf_signer **out)
{
    char cert[KF_CONF_PATH_MAX], key[KF_CONF_PATH_MAX];
    struct kf_signer_policy p;
    enum kf_err rc;

    if (!d->issuer) {
        rc = kf_deploy_path(d, d->cfg.ca.issuing_cert, cert, sizeof(cert));
        if (!rc) rc = kf_deploy_path(d, d->cfg.ca.issuing_key, key, sizeof(key));
        if (!rc)
            rc = kf_signer_open(KF_SIGNER_ISSUING, cert, key, getenv("KEYFLEET_CA_PASSPHRASE"),
                                &d->issuer);
        if (rc) return kf_wrap(rc, "issuing CA");
        kf_deploy_signer_policy(&d->cfg, &p);
        kf_signer_set_policy(d->issuer, &p);
    }
    *out = d->issuer;
    return KF_OK;
}
