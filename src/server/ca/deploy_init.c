#include "server/ca/deploy_init.h"

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
#include "server/ca/ca.h"
#include "server/ca/checkpoint.h"
#include "common/jsontext.h"

#define DAY          86400L
#define ROOT_DAYS    (20 * 365L)
#define ISSUING_DAYS (10 * 365L)
#define PEM_MAX      (256 * 1024)

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Removes what an init killed midway left beside `target` ("TARGET.init-XXXXXX" holding an
 * init.pid of a process that is gone), so that no stray key material stays behind.
 */
static void remove_stale_inits(const char *target)
{
    char copy[KF_CONF_PATH_MAX], base[KF_CONF_PATH_MAX], prefix[KF_CONF_PATH_MAX + 8];
    const char *parent;
    DIR *dh;
    struct dirent *e;

    snprintf(copy, sizeof(copy), "%s", target);
    snprintf(base, sizeof(base), "%s", basename(copy));
    snprintf(copy, sizeof(copy), "%s", target);
    parent = dirname(copy);
    snprintf(prefix, sizeof(prefix), "%s.init-", base);
    dh = opendir(parent);
    if (!dh) return;
    while ((e = readdir(dh)) != NULL) {
        char dir[KF_CONF_PATH_MAX], pidfile[KF_CONF_PATH_MAX];
        struct kf_buf text;
        long pid;
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        if (kf_path_join(dir, sizeof(dir), parent, e->d_name) ||
            kf_path_join(pidfile, sizeof(pidfile), dir, "init.pid"))
            continue;
        kf_buf_init(&text, 32);
        pid = kf_buf_read_file(&text, pidfile) == KF_OK ? strtol(kf_buf_str(&text), NULL, 10) : 0;
        kf_buf_free(&text);
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            remove_tree(dir);
            kf_log(KF_LOG_WARN, "deploy", "removed what an interrupted init left", "dir", dir,
                   NULL);
        }
    }
    closedir(dh);
    kf_err_clear();
}

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* What is in `dir` now: 0 nothing (or an empty directory), else an error explaining. */
static enum kf_err check_target(const char *dir)
{
    struct stat st;
    DIR *dh;
    struct dirent *e;
    int entries = 0;
    char conf[KF_CONF_PATH_MAX], db[KF_CONF_PATH_MAX];

    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT) return KF_OK;
        return kf_fail(KF_E_IO, "cannot look at %s: %s", dir, strerror(errno));
    }
    /* The deployment is renamed into place at the end, which a symbolic link would not survive. */
    if (S_ISLNK(st.st_mode))
        return kf_fail(KF_E_INVALID, "%s is a symbolic link; give the directory it points to", dir);
    if (!S_ISDIR(st.st_mode)) return kf_fail(KF_E_EXISTS, "%s exists and is not a directory", dir);
    if (kf_path_join(conf, sizeof(conf), dir, KF_CONF_NAME) == KF_OK && kf_file_exists(conf))
        return kf_fail(KF_E_EXISTS,
                       "%s already holds a keyfleet deployment; refusing to "
                       "overwrite it",
                       dir);
    if (kf_path_join(db, sizeof(db), dir, "keyfleet.db") == KF_OK && kf_file_exists(db))
        return kf_fail(KF_E_EXISTS, "%s already holds a keyfleet store; refusing to overwrite it",
                       dir);
    dh = opendir(dir);
    if (!dh) return kf_fail(KF_E_IO, "cannot read %s: %s", dir, strerror(errno));
    while ((e = readdir(dh)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) entries++;
    closedir(dh);
    if (entries) return kf_fail(KF_E_EXISTS, "%s is not empty; give a new or empty directory", dir);
    return KF_OK;
}

static enum kf_err write_pem(const char *dir, const char *name, const struct kf_cert *a,
                             const struct kf_cert *b)
{
    char path[KF_CONF_PATH_MAX];
    struct kf_buf pem;
    enum kf_err rc;
    kf_buf_init(&pem, PEM_MAX);
    rc = kf_path_join(path, sizeof(path), dir, name);
    if (!rc) rc = kf_cert_pem(a, &pem);
    if (!rc && b) rc = kf_cert_pem(b, &pem);
    if (!rc) rc = kf_file_write(path, pem.data, pem.len, 0644, 0);
    kf_buf_free(&pem);
    return rc;
}

static enum kf_err save_key(const char *dir, const char *name, const struct kf_key *key)
{
    char path[KF_CONF_PATH_MAX];
    enum kf_err rc = kf_path_join(path, sizeof(path), dir, name);
    return rc ? rc : kf_key_save(key, path, NULL);
}

static enum kf_err issue_with(struct kf_signer *s, enum kf_profile profile, const char *cn,
                              const char *org, const struct kf_key *key, long days,
                              const char *const *dns, size_t n_dns, const char *const *ips,
                              size_t n_ips, struct kf_cert **out)
{
    struct kf_sign_request r;
    struct kf_buf spki;
    time_t now = time(NULL);
    enum kf_err rc;

    kf_buf_init(&spki, KF_SPKI_MAX);
    rc = kf_key_public_der(key, &spki);
    if (rc) return rc;
    memset(&r, 0, sizeof(r));
    r.profile = profile;
    r.spki = spki.data;
    r.spki_len = spki.len;
    r.cn = cn;
    r.org = org;
    r.dns_names = dns;
    r.n_dns = n_dns;
    r.ip_addrs = ips;
    r.n_ips = n_ips;
    r.not_before = now - 60;
    r.not_after = now + days * DAY;
    rc = kf_signer_issue(s, &r, out);
    kf_buf_free(&spki);
    return rc;
}

struct init_write {
    const struct kf_init_opts *o;
    const struct kf_cert *root, *issuing, *server;
    const char *issuing_key_uri;
    struct kf_signer *issuer;
    const struct kf_config *cfg;
    struct kf_crl *crl; /* out */
};

static enum kf_err ca_row(struct kf_txn *txn, const char *name, const struct kf_cert *c,
                          const char *key_uri, const char *actor)
{
    struct kf_ca_rec r;
    struct kf_buf pem;
    char subject[KF_NAME_MAX], uri[KF_CONF_PATH_MAX];
    enum kf_err rc;

    memset(&r, 0, sizeof(r));
    /* The store shows where the key is; the PIN stays in keyfleet.conf (0600) only. */
    kf_key_uri_redact(key_uri, uri, sizeof(uri));
    kf_buf_init(&pem, PEM_MAX);
    rc = kf_cert_pem(c, &pem);
    if (rc) return rc;
    kf_cert_subject(c, subject, sizeof(subject));
    snprintf(r.name, sizeof(r.name), "%s", name);
    kf_cert_serial_hex(c, r.serial);
    r.subject = subject;
    r.cert_pem = (char *)kf_buf_str(&pem);
    r.key_uri = uri;
    r.not_before = kf_cert_not_before(c);
    r.not_after = kf_cert_not_after(c);
    r.created = time(NULL);
    rc = kf_txn_ca_insert(txn, &r);
    if (!rc) {
        char *detail =
            kf_jsontext_pack("{s:s, s:s, s:s}", "subject", subject, "serial", r.serial, "key",
                             strncmp(key_uri, "pkcs11:", 7) == 0 ? "pkcs11"
                             : strncmp(key_uri, "tpm2:", 5) == 0 ? "tpm2"
                                                                 : "file");
        rc = kf_txn_audit_append(txn, actor, "ca.create", name, detail);
        free(detail);
    }
    kf_buf_free(&pem);
    return rc;
}

static enum kf_err cert_row(struct kf_txn *txn, const struct kf_cert *c, enum kf_profile profile,
                            const char *issuer, const char *actor)
{
    struct kf_cert_rec r;
    char object[KF_OBJECT_MAX], *detail;
    enum kf_err rc = kf_ca_cert_record(c, profile, issuer, NULL, &r);
    if (rc) return rc;
    rc = kf_txn_cert_insert(txn, &r);
    if (!rc) {
        snprintf(object, sizeof(object), "cert:%s", r.serial);
        detail =
            kf_jsontext_pack("{s:s, s:s}", "profile", kf_profile_name(profile), "issuer", issuer);
        rc = kf_txn_audit_append(txn, actor, "cert.issue", object, detail);
        free(detail);
    }
    kf_cert_rec_clear(&r);
    return rc;
}

static enum kf_err init_write_cb(struct kf_txn *txn, void *arg)
{
    struct init_write *w = arg;
    const char *actor = w->o->actor;
    time_t now = time(NULL);
    int64_t number;
    enum kf_err rc;

    rc = ca_row(txn, "root", w->root, w->cfg->ca.root_key, actor);
    if (!rc) rc = ca_row(txn, "issuing", w->issuing, w->issuing_key_uri, actor);
    if (!rc) rc = cert_row(txn, w->issuing, KF_PROFILE_ISSUING_CA, "root", actor);
    if (!rc) rc = cert_row(txn, w->server, KF_PROFILE_SERVER, "issuing", actor);
    if (!rc) rc = kf_txn_ca_next_crl_number(txn, "issuing", &number);
    if (!rc)
        rc = kf_signer_crl(w->issuer, NULL, 0, (uint64_t)number, now - 60,
                           now + w->cfg->ca.crl_hours * 3600L, &w->crl);
    if (!rc) {
        char *detail = kf_jsontext_pack("{s:I, s:i}", "number", (json_int_t)number, "revoked", 0);
        rc = kf_txn_audit_append(txn, actor, "crl.publish", "ca:issuing", detail);
        free(detail);
    }
    return rc;
}

/*
 * The issuing key URI as the configuration must hold it. The configuration resolves paths against
 * the deployment directory and does not know file: URIs, but the key was named relative to where
 * init runs: a key file (a path or a file: URI) is recorded as an absolute path.
 */
static enum kf_err config_key_uri(const char *uri, char *out, size_t cap)
{
    const char *path = uri;
    char cwd[KF_CONF_PATH_MAX];
    int n;

    const char *scheme = "";

    if (strncmp(uri, "pkcs11:", 7) == 0 || strncmp(uri, "handle:", 7) == 0 ||
        strncmp(uri, "tpm2:handle:", 12) == 0)
        path = NULL;
    else if (strncmp(uri, "tpm2:", 5) == 0) /* a TSS2 key file: tpm2:PATH */
        path = uri + 5, scheme = "tpm2:";
    else if (strncmp(uri, "file://", 7) == 0)
        path = uri + 7;
    else if (strncmp(uri, "file:", 5) == 0)
        path = uri + 5;
    if (path && path[0] != '/') {
        if (!getcwd(cwd, sizeof(cwd)))
            return kf_fail(KF_E_IO, "cannot tell the current directory: %s", strerror(errno));
        n = snprintf(out, cap, "%s%s/%s", scheme, cwd, path);
    } else {
        n = snprintf(out, cap, "%s%s", path ? scheme : "", path ? path : uri);
    }
    if (n < 0 || (size_t)n >= cap) return kf_fail(KF_E_OVERSIZE, "key URI too long: %.40s...", uri);
    return KF_OK;
}

static void default_names(const char **names, size_t *n, char *host, size_t hostcap)
{
    *n = 0;
    names[(*n)++] = "localhost";
    if (gethostname(host, hostcap) == 0 && host[0] && strcmp(host, "localhost") != 0 &&
        kf_dns_name_ok(host)) {
        host[hostcap - 1] = '\0';
        for (char *p = host; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        names[(*n)++] = host;
    }
    names[(*n)++] = "127.0.0.1";
    names[(*n)++] = "::1";
}

enum kf_err kf_deploy_init(const struct kf_init_opts *o, struct kf_init_report *rep)
{
    const char *names[KF_INIT_MAX_NAMES + 4], *dns[KF_INIT_MAX_NAMES + 4],
        *ips[KF_INIT_MAX_NAMES + 4];
    size_t n_names = 0, n_dns = 0, n_ips = 0;
    char host[256], tmp[KF_CONF_PATH_MAX], path[KF_CONF_PATH_MAX], parent[KF_CONF_PATH_MAX];
    char target[KF_CONF_PATH_MAX], server_cn[80];
    char org[80], cn[160], when[KF_TIME_TEXT_MAX], header[256];
    enum kf_key_type type = o->key_type ? o->key_type : KF_KEY_EC_P256;
    struct kf_key *root_key = NULL, *issuing_key = NULL, *server_key = NULL;
    struct kf_cert *root = NULL, *issuing = NULL, *server = NULL;
    struct kf_signer *root_signer = NULL, *issuer = NULL;
    struct kf_store *store = NULL;
    struct kf_config cfg;
    struct init_write w;
    struct kf_buf crl_pem;
    struct kf_cert_template t;
    time_t now = time(NULL);
    int made_tmp = 0;
    enum kf_err rc;

    memset(rep, 0, sizeof(*rep));
    kf_buf_init(&crl_pem, PEM_MAX);
    kf_config_defaults(&cfg);
    if (o->name) {
        size_t nl = strlen(o->name);
        /* It becomes the O of every certificate and a line of keyfleet.conf: plain text only. */
        if (nl == 0 || nl > 48 || o->name[0] == ' ' || o->name[nl - 1] == ' ' ||
            strspn(o->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ._-") !=
                nl)
            return kf_fail(KF_E_INVALID,
                           "--name must be 1 to 48 letters, digits, spaces, '.', '_' or '-', not "
                           "starting or ending with a space");
        snprintf(cfg.deployment.name, sizeof(cfg.deployment.name), "%s", o->name);
    }
    snprintf(cfg.ca.key_type, sizeof(cfg.ca.key_type), "%s", kf_key_type_name(type));
    if (o->issuing_key) {
        rc = config_key_uri(o->issuing_key, cfg.ca.issuing_key, sizeof(cfg.ca.issuing_key));
        if (rc) return kf_wrap(rc, "--issuing-key");
    }

    /* Names for the server certificate. */
    if (o->n_names > KF_INIT_MAX_NAMES)
        return kf_fail(KF_E_INVALID, "at most %d --hostname names", KF_INIT_MAX_NAMES);
    if (o->n_names) {
        for (size_t i = 0; i < o->n_names; i++) {
            int seen = 0;
            char shown[80];
            if (!is_ip(o->names[i]) && !kf_dns_name_ok(o->names[i])) {
                kf_text_quote(shown, sizeof(shown), o->names[i]);
                return kf_fail(KF_E_INVALID, "--hostname \"%s\" is not a DNS name or IP address",
                               shown);
            }
            for (size_t k = 0; k < n_names; k++)
                seen |= strcasecmp(names[k], o->names[i]) == 0;
            if (!seen) names[n_names++] = o->names[i];
        }
    } else {
        default_names(names, &n_names, host, sizeof(host));
    }
    for (size_t i = 0; i < n_names; i++) {
        if (is_ip(names[i]))
            ips[n_ips++] = names[i];
        else
            dns[n_dns++] = names[i];
    }

    /* "data/" and "data" are the same directory; the temporary one goes beside it. */
    if (!o->dir || !*o->dir || strlen(o->dir) >= sizeof(target) - 16)
        return kf_fail(KF_E_INVALID, "no usable deployment directory given");
    snprintf(target, sizeof(target), "%s", o->dir);
    for (size_t l = strlen(target); l > 1 && target[l - 1] == '/'; l--)
        target[l - 1] = '\0';
    rc = check_target(target);
    if (rc) return rc;
    snprintf(parent, sizeof(parent), "%s", target);
    remove_stale_inits(target);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.init-XXXXXX", target) >= sizeof(tmp))
        return kf_fail(KF_E_OVERSIZE, "directory name too long: %s", target);
    if (!mkdtemp(tmp))
        return kf_fail(KF_E_IO, "cannot create a directory beside %s: %s", target, strerror(errno));
    made_tmp = 1;
    if (chmod(tmp, 0700) != 0) {
        rc = kf_fail(KF_E_IO, "cannot set the mode of %s: %s", tmp, strerror(errno));
        goto out;
    }
    /* Who is building it, so that a later init can clear it away if this one is killed. */
    {
        char pid[24];
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        rc = kf_path_join(path, sizeof(path), tmp, "init.pid");
        if (!rc) rc = kf_file_write(path, pid, (size_t)n, 0600, 0);
        if (rc) goto out;
    }
    rc = kf_path_join(path, sizeof(path), tmp, "ca");
    if (!rc) rc = kf_file_mkdir(path, 0700);
    if (!rc) rc = kf_path_join(path, sizeof(path), tmp, "server");
    if (!rc) rc = kf_file_mkdir(path, 0700);
    if (rc) goto out;

    /* The root CA: self-signed, the one certificate not made through a signer. */
    snprintf(org, sizeof(org), "%s", cfg.deployment.name);
    rc = kf_key_generate(type, &root_key);
    if (!rc) rc = save_key(tmp, cfg.ca.root_key, root_key);
    if (rc) goto out;
    snprintf(cn, sizeof(cn), "%s Root CA", cfg.deployment.name);
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_ROOT_CA;
    t.cn = cn;
    t.org = org;
    t.key = root_key;
    t.not_before = now - 60;
    t.not_after = now + ROOT_DAYS * DAY;
    rc = kf_cert_build(&t, NULL, root_key, &root);
    if (rc) goto out;
    rc = kf_signer_wrap(KF_SIGNER_ROOT, kf_cert_ref(root), root_key, &root_signer);
    root_key = NULL;
    if (rc) goto out;

    /* The issuing CA: its key generated here, or already in an HSM or TPM. */
    if (o->issuing_key) {
        rc = kf_key_load(o->issuing_key, getenv("KEYFLEET_CA_PASSPHRASE"), &issuing_key);
        if (rc) {
            kf_wrap(rc, "--issuing-key");
            goto out;
        }
        rc = kf_key_check_allowed(issuing_key, KF_KEY_ALLOWED_DEFAULT, KF_KEY_MIN_RSA_BITS,
                                  "the issuing CA key");
    } else {
        rc = kf_key_generate(type, &issuing_key);
        if (!rc) rc = save_key(tmp, cfg.ca.issuing_key, issuing_key);
    }
    if (rc) goto out;
    snprintf(cn, sizeof(cn), "%s Issuing CA", cfg.deployment.name);
    rc = issue_with(root_signer, KF_PROFILE_ISSUING_CA, cn, org, issuing_key, ISSUING_DAYS, NULL, 0,
                    NULL, 0, &issuing);
    if (rc) goto out;
    snprintf(rep->issuing_key_location, sizeof(rep->issuing_key_location), "%s",
             kf_key_location(issuing_key));
    if (strcmp(rep->issuing_key_location, "memory") == 0)
        snprintf(rep->issuing_key_location, sizeof(rep->issuing_key_location), "file");
    rc = kf_signer_wrap(KF_SIGNER_ISSUING, kf_cert_ref(issuing), issuing_key, &issuer);
    issuing_key = NULL;
    if (rc) goto out;
    {
        struct kf_signer_policy p;
        kf_deploy_signer_policy(&cfg, &p);
        kf_signer_set_policy(issuer, &p);
    }

    /*
     * keyfleetd's TLS certificate. Clients check its SANs; the CN is for people, and must stay
     * within 64 characters.
     */
    if (strlen(names[0]) <= 64)
        snprintf(server_cn, sizeof(server_cn), "%s", names[0]);
    else
        snprintf(server_cn, sizeof(server_cn), "%s server", cfg.deployment.name);
    rc = kf_key_generate(type == KF_KEY_ED25519 ? KF_KEY_EC_P256 : type, &server_key);
    if (!rc) rc = save_key(tmp, cfg.server.key, server_key);
    if (!rc)
        rc = issue_with(issuer, KF_PROFILE_SERVER, server_cn, org, server_key,
                        cfg.ca.server_cert_days, dns, n_dns, ips, n_ips, &server);
    if (rc) goto out;

    rc = write_pem(tmp, cfg.ca.root_cert, root, NULL);
    if (!rc) rc = write_pem(tmp, cfg.ca.issuing_cert, issuing, NULL);
    if (!rc) rc = write_pem(tmp, "ca/chain.pem", issuing, root);
    if (!rc) rc = write_pem(tmp, cfg.server.cert, server, issuing);
    if (rc) goto out;

    /* The registry, with the CAs, the certificates made so far and the first CRL. */
    rc = kf_path_join(path, sizeof(path), tmp, cfg.store.url);
    if (!rc) rc = kf_store_open(path, KF_STORE_CREATE, &store);
    if (rc) goto out;
    memset(&w, 0, sizeof(w));
    w.o = o;
    w.root = root;
    w.issuing = issuing;
    w.server = server;
    w.issuing_key_uri = cfg.ca.issuing_key;
    w.issuer = issuer;
    w.cfg = &cfg;
    rc = kf_store_write(store, init_write_cb, &w);
    /* The first records are vouched for from the start. */
    if (!rc) rc = kf_checkpoint_make(store, issuer, NULL);
    kf_store_close(store);
    store = NULL;
    if (!rc) rc = kf_crl_pem(w.crl, &crl_pem);
    kf_crl_free(w.crl);
    if (!rc) rc = kf_path_join(path, sizeof(path), tmp, cfg.ca.crl_file);
    if (!rc) rc = kf_file_write(path, crl_pem.data, crl_pem.len, 0644, 0);
    if (rc) goto out;

    kf_time_rfc3339(now, when, sizeof(when));
    snprintf(header, sizeof(header), "written by keyfleet init on %s", when);
    rc = kf_path_join(path, sizeof(path), tmp, KF_CONF_NAME);
    if (!rc) rc = kf_config_write(path, &cfg, header);
    if (!rc) rc = kf_path_join(path, sizeof(path), tmp, "init.pid");
    if (!rc && unlink(path) != 0)
        rc = kf_fail(KF_E_IO, "cannot remove %s: %s", path, strerror(errno));
    if (!rc) rc = kf_file_sync_dir(tmp);
    if (rc) goto out;
    /* The deployment appears whole or not at all. */
    if (rename(tmp, target) != 0) {
        rc = kf_fail(KF_E_IO, "cannot move %s to %s: %s", tmp, target, strerror(errno));
        goto out;
    }
    made_tmp = 0;
    kf_file_sync_dir(dirname(parent));

    snprintf(rep->dir, sizeof(rep->dir), "%s", target);
    kf_cert_subject(root, rep->root_subject, sizeof(rep->root_subject));
    kf_cert_subject(issuing, rep->issuing_subject, sizeof(rep->issuing_subject));
    kf_cert_fingerprint(root, rep->root_fingerprint);
    kf_cert_fingerprint(issuing, rep->issuing_fingerprint);
    kf_cert_fingerprint(server, rep->server_fingerprint);
    kf_key_describe(server_key, rep->key_desc, sizeof(rep->key_desc));
    {
        struct kf_key *rk = NULL;
        if (kf_cert_public_key(root, &rk) == KF_OK)
            kf_key_describe(rk, rep->key_desc, sizeof(rep->key_desc));
        kf_key_free(rk);
    }
    for (size_t i = 0, used = 0; i < n_names; i++) {
        int wlen =
            snprintf(rep->names + used, sizeof(rep->names) - used, "%s%s", i ? "," : "", names[i]);
        if (wlen < 0 || (size_t)wlen >= sizeof(rep->names) - used) break;
        used += (size_t)wlen;
    }
    rep->n_dns = n_dns;
    rep->n_ips = n_ips;
    rep->root_days = ROOT_DAYS;
    rep->issuing_days = ISSUING_DAYS;
    rep->server_days = cfg.ca.server_cert_days;
out:
    if (rc && made_tmp) remove_tree(tmp);
    kf_store_close(store);
    kf_buf_free(&crl_pem);
    kf_signer_free(root_signer);
    kf_signer_free(issuer);
    kf_key_free(root_key);
    kf_key_free(issuing_key);
    kf_key_free(server_key);
    kf_cert_free(root);
    kf_cert_free(issuing);
    kf_cert_free(server);
    return rc;
}
