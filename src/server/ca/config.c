#include "server/ca/config.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/file.h"

#define D struct kf_deployment_conf
static const struct kf_conf_key deployment_keys[] = {
    KF_CONF_TEXT_KEY(D, "name", name, "keyfleet",
                     "A name for this deployment: the O of the certificates it issues.", 0),
};
#undef D

#define S struct kf_store_conf
static const struct kf_conf_key store_keys[] = {
    KF_CONF_TEXT_KEY(S, "url", url, "keyfleet.db",
                     "The registry: a SQLite file (WAL, one writer, many readers).",
                     KF_CONF_SECRET),
};
#undef S

#define C struct kf_ca_conf
static const struct kf_conf_key ca_keys[] = {
    KF_CONF_TEXT_KEY(C, "key_type", key_type, "p256",
                     "Key type of the CA keys made at init (p256, p384, ed25519, rsa2048, "
                     "rsa3072).",
                     0),
    KF_CONF_TEXT_KEY(C, "root_cert", root_cert, "ca/root.crt", NULL, 0),
    KF_CONF_TEXT_KEY(C, "root_key", root_key, "ca/root.key",
                     "The root CA's private key. keyfleet needs it only to make a new issuing CA: "
                     "you may\nmove it offline after init (keep a backup!).",
                     KF_CONF_SECRET),
    KF_CONF_TEXT_KEY(C, "issuing_cert", issuing_cert, "ca/issuing.crt", NULL, 0),
    KF_CONF_TEXT_KEY(C, "issuing_key", issuing_key, "ca/issuing.key",
                     "The issuing CA's private key: a file, or a key in hardware:\n"
                     "  pkcs11:token=...;object=...;type=private?module-path=...&pin-source=file:"
                     "...\n  tpm2:handle:0x81000010",
                     KF_CONF_SECRET),
    KF_CONF_TEXT_KEY(C, "crl_file", crl_file, "ca/crl.pem",
                     "The published CRL, rewritten on every revocation and by `keyfleet ca crl`.",
                     0),
    KF_CONF_NUM_KEY(C, "device_cert_days", device_cert_days, 1, 3650, 30,
                    "Certificate lifetimes in days. Devices renew at two thirds of theirs."),
    KF_CONF_NUM_KEY(C, "device_cert_minutes", device_cert_minutes, 0, 5256000, 0,
                    "Instead, in minutes (0: use device_cert_days): short-lived certificates, "
                    "renewal tests."),
    KF_CONF_NUM_KEY(C, "service_cert_days", service_cert_days, 1, 3650, 365, NULL),
    KF_CONF_NUM_KEY(C, "server_cert_days", server_cert_days, 1, 3650, 365, NULL),
    KF_CONF_NUM_KEY(C, "crl_hours", crl_hours, 1, 8784, 24,
                    "How long each CRL is valid, in hours."),
    KF_CONF_TEXT_KEY(C, "update_timestamp_key", update_timestamp_key, "updates/keys/timestamp.key",
                     "The signed-update repository's online keys (docs/updates.md): files made on "
                     "first use\n(ed25519) by `keyfleet release keys`, or keys in hardware like "
                     "issuing_key (P-256).",
                     KF_CONF_SECRET),
    KF_CONF_TEXT_KEY(C, "update_snapshot_key", update_snapshot_key, "updates/keys/snapshot.key",
                     NULL, KF_CONF_SECRET),
};
#undef C

#define V struct kf_server_conf
static const struct kf_conf_key server_keys[] = {
    KF_CONF_TEXT_KEY(V, "cert", cert, "server/server.crt",
                     "keyfleetd's TLS certificate (with the issuing CA after it) and key.", 0),
    KF_CONF_TEXT_KEY(V, "key", key, "server/server.key", NULL, 0),
};
#undef V

#define SECTION(name, keys)                  \
    {                                        \
        name, NULL, keys, KF_ARRAY_LEN(keys) \
    }
const struct kf_conf_section kf_deployment_section = SECTION("deployment", deployment_keys),
                             kf_store_section = SECTION("store", store_keys),
                             kf_ca_section = SECTION("ca", ca_keys),
                             kf_server_section = SECTION("server", server_keys);

/* Every section of the file, in the order it is written, bound to `c`'s structs. */
static size_t binds_of(struct kf_config *c, struct kf_conf_bind *b)
{
    size_t n = 0;
    b[n++] = (struct kf_conf_bind){&kf_deployment_section, &c->deployment};
    b[n++] = (struct kf_conf_bind){&kf_store_section, &c->store};
    b[n++] = (struct kf_conf_bind){&kf_ca_section, &c->ca};
    b[n++] = (struct kf_conf_bind){&kf_server_section, &c->server};
    b[n++] = (struct kf_conf_bind){&kf_prov_section, &c->provisioning};
    b[n++] = (struct kf_conf_bind){&kf_hub_section, &c->hub};
    b[n++] = (struct kf_conf_bind){&kf_events_section, &c->events};
    b[n++] = (struct kf_conf_bind){&kf_audit_section, &c->audit};
    return n;
}
#define N_SECTIONS 8

void kf_config_defaults(struct kf_config *c)
{
    struct kf_conf_bind b[N_SECTIONS];
    size_t n;
    memset(c, 0, sizeof(*c));
    n = binds_of(c, b);
    /* Every default reads back through its own key (unit.config checks that none fails). */
    for (size_t i = 0; i < n; i++)
        kf_conf_defaults(b[i].sec, b[i].obj);
    kf_err_clear();
}

enum kf_err kf_config_load(const char *path, struct kf_config *c)
{
    struct kf_conf_bind b[N_SECTIONS];
    struct kf_buf text;
    char dir[KF_CONF_PATH_MAX];
    enum kf_err rc;

    kf_config_defaults(c);
    snprintf(dir, sizeof(dir), "%s", path);
    snprintf(c->dir, sizeof(c->dir), "%s", dirname(dir));
    /* The file may hold a PIN in a key URI: read it into memory that is wiped afterwards. */
    kf_buf_init_secret(&text, 256 * 1024);
    {
        struct stat st;
        if (stat(path, &st) != 0 && errno == ENOENT)
            return kf_fail(KF_E_NOT_FOUND, "no configuration file %s", path);
    }
    rc = kf_buf_read_file(&text, path);
    if (!rc) {
        rc = kf_conf_parse((const char *)text.data, text.len, b, binds_of(c, b));
        if (rc) rc = kf_wrap(KF_E_CONFIG, "%s", path);
    }
    kf_buf_free(&text);
    return rc;
}

char *kf_config_diff(const struct kf_config *a, const struct kf_config *b)
{
    struct kf_conf_bind ba[N_SECTIONS], bb[N_SECTIONS];
    size_t n = binds_of((struct kf_config *)a, ba);
    json_t *j = json_object();
    char *text;
    binds_of((struct kf_config *)b, bb);
    for (size_t i = 0; j && i < n; i++)
        kf_conf_diff(j, ba[i].sec, ba[i].obj, bb[i].obj);
    text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return text;
}

enum kf_err kf_config_resolve(const struct kf_config *c, const char *value, char *out, size_t cap)
{
    static const char *const schemes[] = {
        "pkcs11:", "tpm2:", "sqlite:", "postgresql:", "postgres:", "handle:"};
    for (size_t i = 0; i < KF_ARRAY_LEN(schemes); i++) {
        if (strncmp(value, schemes[i], strlen(schemes[i])) == 0) {
            if (strcmp(schemes[i], "sqlite:") == 0 && value[7] != '/')
                return kf_path_join(out, cap, c->dir, value + 7);
            if ((size_t)snprintf(out, cap, "%s", value) >= cap)
                return kf_fail(KF_E_OVERSIZE, "value too long: %.40s...", value);
            return KF_OK;
        }
    }
    return kf_path_join(out, cap, c->dir, value);
}

enum kf_err kf_config_write(const char *path, const struct kf_config *c, const char *when)
{
    struct kf_conf_bind b[N_SECTIONS];
    size_t n = binds_of((struct kf_config *)c, b);
    struct kf_buf out;
    enum kf_err rc;

    kf_buf_init(&out, 64 * 1024);
    rc = kf_buf_appendf(
        &out,
        "# keyfleet deployment configuration\n"
        "# %s\n"
        "#\n"
        "# Relative paths are relative to this file's directory, so the whole directory can be\n"
        "# moved. Unknown sections and keys are errors. keyfleetd reloads this file on SIGHUP.\n",
        when);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = kf_buf_appendf(&out, "\n");
        if (!rc) rc = kf_conf_write(&out, b[i].sec, b[i].obj);
    }
    if (!rc) rc = kf_file_write(path, out.data, out.len, 0600, 0);
    kf_buf_free(&out);
    return rc;
}
