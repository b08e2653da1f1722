/*
 * deploy: keyfleet init's deployment directory (what it holds, its modes, its store and audit
 * log, judged by openssl where it can be), what it refuses to touch, that a failure leaves
 * nothing behind, and opening a deployment and its issuing CA.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/file.h"
#include "common/pki_crl.h"
#include "server/ca/deploy_init.h"

#define DAY 86400L

struct fixture {
    struct kf_deploy *d; /* a deployment shared by the tests that only read it */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->d = kf_test_deploy_make("shared");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_deploy_close(f->d);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static struct kf_init_opts opts(const char *dir)
{
    struct kf_init_opts o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.actor = KF_TEST_ACTOR;
    return o;
}

static int mode_of(const char *dir, const char *name)
{
    char path[2048];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (stat(path, &st) != 0) fail_msg("%s does not exist", path);
    return (int)(st.st_mode & 07777);
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Every file and directory under `dir` with its mode, size, time and contents' hash. */
static char *tree_text(const char *dir)
{
    const char *out = kf_test_path("tree.txt");
    /* SQLite's -shm file is an index in shared memory that readers write to: not content. */
    if (kf_test_sh("cd '%s' && { find . ! -name '*-shm' -printf '%%p %%m %%s %%T@\\n' | sort; "
                   "find . -type f ! -name '*-shm' -exec sha256sum {} + | sort; } > '%s'",
                   dir, out) != 0)
        fail_msg("cannot list %s", dir);
    return kf_test_read(out);
}

/* Fails if a temporary "DIR.init-*" directory is left beside `dir`. */
static void expect_no_temporary(const char *dir)
{
    if (kf_test_sh("ls -d '%s'.init-* >/dev/null 2>&1", dir) == 0)
        fail_msg("a temporary %s.init-* directory was left behind", dir);
}

static struct kf_cert *load_cert(const char *dir, const char *name)
{
    char path[2048];
    struct kf_cert *c = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    KF_OK_OR_FAIL(kf_cert_load_file(path, &c));
    return c;
}

static void expect_fingerprint(const struct kf_cert *c, const char *want)
{
    char fp[KF_FINGERPRINT_HEX];
    kf_cert_fingerprint(c, fp);
    assert_string_equal(fp, want);
}

static void expect_cert_rec(struct kf_store *s, const struct kf_cert *c, const char *profile,
                            const char *issuer)
{
    struct kf_cert_rec r;
    char serial[KF_SERIAL_HEX_MAX], fp[KF_FINGERPRINT_HEX];
    kf_cert_serial_hex(c, serial);
    kf_cert_fingerprint(c, fp);
    KF_OK_OR_FAIL(kf_test_cert_get(s, serial, &r));
    assert_string_equal(r.profile, profile);
    assert_string_equal(r.issuer, issuer);
    assert_string_equal(r.device_id, "");
    assert_string_equal(r.fingerprint, fp);
    assert_int_equal(r.status, KF_CERT_VALID);
    assert_int_equal(r.not_after, kf_cert_not_after(c));
    kf_cert_rec_clear(&r);
}

/* ---- init ---- */

static void test_init_fresh(void **state)
{
    static const char *const names[] = {"kf.example.com", "127.0.0.1"};
    const char *dir = kf_test_path("fresh");
    struct kf_init_opts o = opts(dir);
    struct kf_init_report rep;
    struct kf_config cfg;
    struct kf_store *s = NULL;
    struct kf_cert *root, *issuing, *server;
    struct kf_ca_rec ca;
    struct kf_test_audit a;
    struct kf_crl *crl;
    char path[2048], serial[KF_SERIAL_HEX_MAX], subject[KF_NAME_MAX], object[128], detail[1024];

    o.names = names;
    o.n_names = 2;
    o.name = "acme";
    KF_OK_OR_FAIL(kf_deploy_init(&o, &rep));
    expect_no_temporary(dir);

    /* The files, with keys and the directory private. */
    assert_int_equal(mode_of(dir, "."), 0700);
    assert_int_equal(mode_of(dir, "ca"), 0700);
    assert_int_equal(mode_of(dir, "server"), 0700);
    assert_int_equal(mode_of(dir, "ca/root.key"), 0600);
    assert_int_equal(mode_of(dir, "ca/issuing.key"), 0600);
    assert_int_equal(mode_of(dir, "server/server.key"), 0600);
    assert_int_equal(mode_of(dir, "keyfleet.conf"), 0600);
    assert_int_equal(mode_of(dir, "ca/root.crt"), 0644);
    assert_int_equal(mode_of(dir, "ca/chain.pem"), 0644);
    assert_int_equal(mode_of(dir, "ca/crl.pem"), 0644);
    assert_true(exists(kf_test_path("fresh/keyfleet.db")));

    /* The report describes what is on disk. */
    root = load_cert(dir, "ca/root.crt");
    issuing = load_cert(dir, "ca/issuing.crt");
    server = load_cert(dir, "server/server.crt");
    assert_string_equal(rep.dir, dir);
    assert_string_equal(rep.root_subject, "CN=acme Root CA,O=acme");
    assert_string_equal(rep.issuing_subject, "CN=acme Issuing CA,O=acme");
    expect_fingerprint(root, rep.root_fingerprint);
    expect_fingerprint(issuing, rep.issuing_fingerprint);
    expect_fingerprint(server, rep.server_fingerprint);
    assert_string_equal(rep.key_desc, "EC P-256");
    assert_string_equal(rep.issuing_key_location, "file");
    assert_string_equal(rep.names, "kf.example.com,127.0.0.1");
    assert_int_equal(rep.root_days, 20 * 365);
    assert_int_equal(rep.issuing_days, 10 * 365);
    assert_int_equal(rep.server_days, 365);
    assert_int_equal(kf_cert_not_after(server) - kf_cert_not_before(server), 365 * DAY + 60);

    /* The configuration reads back, with the defaults but for the name. */
    snprintf(path, sizeof(path), "%s/keyfleet.conf", dir);
    KF_OK_OR_FAIL(kf_config_load(path, &cfg));
    assert_string_equal(cfg.deployment.name, "acme");
    assert_string_equal(cfg.ca.key_type, "p256");
    assert_string_equal(cfg.ca.issuing_key, "ca/issuing.key");
    assert_int_equal(cfg.ca.device_cert_days, 30);

    /* openssl: the chain, the server's names, the CRL, the server key. */
    assert_int_equal(kf_test_sh("cd '%s' && openssl verify -CAfile ca/root.crt ca/issuing.crt "
                                ">/dev/null && openssl verify -purpose sslserver -CAfile "
                                "ca/root.crt -untrusted ca/chain.pem -verify_hostname "
                                "kf.example.com server/server.crt >/dev/null && openssl verify "
                                "-CAfile ca/root.crt -untrusted ca/issuing.crt -verify_ip "
                                "127.0.0.1 server/server.crt >/dev/null",
                                dir),
                     0);
    assert_int_not_equal(kf_test_sh("cd '%s' && openssl verify -CAfile ca/root.crt -untrusted "
                                    "ca/issuing.crt -verify_hostname other.example.com "
                                    "server/server.crt >/dev/null 2>&1",
                                    dir),
                         0);
    assert_int_equal(kf_test_sh("cd '%s' && openssl crl -in ca/crl.pem -CAfile ca/issuing.crt "
                                "-noout 2>&1 | grep -q 'verify OK' && openssl crl -in ca/crl.pem "
                                "-noout -crlnumber | grep -q 'crlNumber=0x01'",
                                dir),
                     0);
    assert_int_equal(kf_test_sh("cd '%s' && openssl pkey -in server/server.key -pubout > "
                                "srvpub.tmp && openssl x509 -in server/server.crt -noout -pubkey "
                                "| cmp -s - srvpub.tmp && rm srvpub.tmp && test $(grep -c BEGIN "
                                "ca/chain.pem) -eq 2 && test $(grep -c BEGIN server/server.crt) "
                                "-eq 2",
                                dir),
                     0);
    snprintf(path, sizeof(path), "%s/ca/crl.pem", dir);
    crl = kf_test_crl_load(path);
    assert_int_equal(kf_crl_number(crl), 1);
    assert_int_equal(kf_crl_count(crl), 0);
    assert_true(kf_crl_signed_by(crl, issuing));
    kf_crl_free(crl);

    /* The store: both CAs, the two certificates made, and five audit records. */
    snprintf(path, sizeof(path), "%s/keyfleet.db", dir);
    KF_OK_OR_FAIL(kf_store_open(path, 0, &s));
    kf_test_ca_get(s, "root", &ca);
    kf_cert_serial_hex(root, serial);
    assert_string_equal(ca.serial, serial);
    assert_string_equal(ca.subject, "CN=acme Root CA,O=acme");
    assert_string_equal(ca.key_uri, "ca/root.key");
    assert_int_equal(ca.crl_number, 0);
    assert_int_equal(ca.not_after, kf_cert_not_after(root));
    kf_ca_rec_clear(&ca);
    kf_test_ca_get(s, "issuing", &ca);
    kf_cert_serial_hex(issuing, serial);
    assert_string_equal(ca.serial, serial);
    assert_string_equal(ca.key_uri, "ca/issuing.key");
    assert_int_equal(ca.crl_number, 1);
    {
        struct kf_cert *c = NULL;
        KF_OK_OR_FAIL(kf_cert_parse(ca.cert_pem, strlen(ca.cert_pem), &c));
        expect_fingerprint(c, rep.issuing_fingerprint);
        kf_cert_free(c);
    }
    kf_ca_rec_clear(&ca);
    assert_int_equal(kf_test_cert_count(s, NULL, 0), 2);
    expect_cert_rec(s, issuing, "issuing-ca", "root");
    expect_cert_rec(s, server, "server", "issuing");

    kf_test_audit_after(s, 0, &a);
    assert_int_equal(a.n, 5);
    assert_int_equal(kf_test_audit_count(s), 5); /* and the chain verifies */
    kf_cert_serial_hex(root, serial);
    kf_cert_subject(root, subject, sizeof(subject));
    snprintf(detail, sizeof(detail), "{\"key\":\"file\",\"serial\":\"%s\",\"subject\":\"%s\"}",
             serial, subject);
    kf_test_audit_expect(&a.r[0], "ca.create", "root", detail);
    kf_test_audit_expect(&a.r[1], "ca.create", "issuing", NULL);
    kf_cert_serial_hex(issuing, serial);
    snprintf(object, sizeof(object), "cert:%s", serial);
    kf_test_audit_expect(&a.r[2], "cert.issue", object,
                         "{\"issuer\":\"root\",\"profile\":\"issuing-ca\"}");
    kf_cert_serial_hex(server, serial);
    snprintf(object, sizeof(object), "cert:%s", serial);
    kf_test_audit_expect(&a.r[3], "cert.issue", object,
                         "{\"issuer\":\"issuing\",\"profile\":\"server\"}");
    kf_test_audit_expect(&a.r[4], "crl.publish", "ca:issuing", "{\"number\":1,\"revoked\":0}");
    kf_test_audit_free(&a);

    kf_store_close(s);
    kf_cert_free(root);
    kf_cert_free(issuing);
    kf_cert_free(server);
}

static void test_init_default_names_and_ed25519(void **state)
{
    const char *dir = kf_test_path("ed");
    struct kf_init_opts o = opts(dir);
    struct kf_init_report rep;
    struct kf_key *k = NULL;
    char path[2048];

    o.key_type = KF_KEY_ED25519;
    KF_OK_OR_FAIL(kf_deploy_init(&o, &rep));
    assert_string_equal(rep.key_desc, "Ed25519");
    /* TLS peers do not all take Ed25519: the server key is P-256 whatever the CAs use. */
    snprintf(path, sizeof(path), "%s/server/server.key", dir);
    KF_OK_OR_FAIL(kf_key_load(path, NULL, &k));
    assert_int_equal(kf_key_type(k), KF_KEY_EC_P256);
    kf_key_free(k);
    /* Without names: localhost first, the loopback addresses last. */
    assert_int_equal(strncmp(rep.names, "localhost,", 10), 0);
    assert_non_null(strstr(rep.names, ",127.0.0.1,::1"));
    assert_int_equal(kf_test_sh("cd '%s' && grep -q '^key_type = ed25519$' keyfleet.conf && "
                                "openssl verify -CAfile ca/root.crt -untrusted ca/issuing.crt "
                                "-verify_ip ::1 server/server.crt >/dev/null",
                                dir),
                     0);
}

static void test_init_refuses_existing_deployment(void **state)
{
    struct fixture *f = *state;
    const char *dir = f->d->dir;
    char slash[2048];
    struct kf_init_opts o = opts(dir);
    struct kf_init_report rep;
    struct kf_test_state before;
    char *tree = tree_text(dir), *after;

    kf_test_state_take(f->d->store, &before);
    KF_EXPECT_ERR(KF_E_EXISTS, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("already holds a keyfleet deployment; refusing to overwrite it");
    KF_EXPECT_MSG(dir);
    snprintf(slash, sizeof(slash), "%s/", dir);
    o.dir = slash;
    KF_EXPECT_ERR(KF_E_EXISTS, kf_deploy_init(&o, &rep));
    after = tree_text(dir);
    assert_string_equal(after, tree);
    expect_no_temporary(dir);
    kf_test_state_expect(f->d->store, &before, "init over a deployment");
    kf_test_state_free(&before);
    free(tree);
    free(after);
}

static void test_init_refuses_non_empty(void **state)
{
    const char *full = kf_test_path("full"), *store_only = kf_test_path("store-only"),
               *file = kf_test_path("a-file");
    struct kf_init_opts o = opts(full);
    struct kf_init_report rep;
    struct kf_store *s = NULL;
    char *tree, *after;

    assert_int_equal(mkdir(full, 0755), 0);
    kf_test_write(kf_test_path("full/notes.txt"), "mine\n");
    tree = tree_text(full);
    KF_EXPECT_ERR(KF_E_EXISTS, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("is not empty; give a new or empty directory");
    KF_EXPECT_MSG(full);
    after = tree_text(full);
    assert_string_equal(after, tree);
    expect_no_temporary(full);
    free(tree);
    free(after);

    /* A store without a configuration is still a store. */
    assert_int_equal(mkdir(store_only, 0700), 0);
    KF_OK_OR_FAIL(kf_store_open(kf_test_path("store-only/keyfleet.db"), KF_STORE_CREATE, &s));
    kf_store_close(s);
    tree = tree_text(store_only);
    o.dir = store_only;
    KF_EXPECT_ERR(KF_E_EXISTS, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("already holds a keyfleet store; refusing to overwrite it");
    after = tree_text(store_only);
    assert_string_equal(after, tree);
    free(tree);
    free(after);

    kf_test_write(file, "not a directory\n");
    o.dir = file;
    KF_EXPECT_ERR(KF_E_EXISTS, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("exists and is not a directory");
    after = kf_test_read(file);
    assert_string_equal(after, "not a directory\n");
    free(after);
    expect_no_temporary(file);
}

static void test_init_into_empty_dir(void **state)
{
    const char *dir = kf_test_path("empty");
    char slash[2048];
    struct kf_init_opts o = opts(dir);
    struct kf_init_report rep;
    struct kf_deploy *d = NULL;

    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(slash, sizeof(slash), "%s/", dir);
    o.dir = slash;
    KF_OK_OR_FAIL(kf_deploy_init(&o, &rep));
    assert_string_equal(rep.dir, dir);
    assert_int_equal(mode_of(dir, "."), 0700);
    expect_no_temporary(dir);
    KF_OK_OR_FAIL(kf_deploy_open(dir, &d));
    assert_int_equal(kf_test_audit_count(d->store), 5);
    kf_deploy_close(d);
}

static void test_init_failure_leaves_nothing(void **state)
{
    const char *dir = kf_test_path("failed"), *empty = kf_test_path("failed-empty");
    const char *missing = kf_test_path("no-such.key"), *weak = kf_test_path("weak.key");
    struct kf_init_opts o = opts(dir);
    struct kf_init_report rep;
    char *tree;

    /* The issuing key is loaded after the root CA is made: the root CA must go too. */
    o.issuing_key = missing;
    assert_int_not_equal(kf_deploy_init(&o, &rep), KF_OK);
    KF_EXPECT_MSG("--issuing-key: ");
    KF_EXPECT_MSG(missing);
    assert_false(exists(dir));
    expect_no_temporary(dir);

    assert_int_equal(kf_test_sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 "
                                "-out '%s' 2>/dev/null",
                                weak),
                     0);
    o.issuing_key = weak;
    KF_EXPECT_ERR(KF_E_POLICY, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("the issuing CA key is RSA 1024: RSA keys must have at least 2048 bits");
    assert_false(exists(dir));
    expect_no_temporary(dir);

    o.issuing_key = "frob:key-1";
    KF_EXPECT_ERR(KF_E_UNSUPPORTED, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("unknown scheme");
    assert_false(exists(dir));
    expect_no_temporary(dir);

    /* An empty directory given stays as it was. */
    assert_int_equal(mkdir(empty, 0755), 0);
    tree = tree_text(empty);
    o.dir = empty;
    o.issuing_key = missing;
    assert_int_not_equal(kf_deploy_init(&o, &rep), KF_OK);
    {
        char *after = tree_text(empty);
        assert_string_equal(after, tree);
        free(after);
    }
    expect_no_temporary(empty);
    free(tree);
}

static void test_init_bad_arguments(void **state)
{
    const char *dir = kf_test_path("bad-args");
    struct kf_init_opts o = opts(dir);
    struct kf_init_report rep;
    const char *names[KF_INIT_MAX_NAMES + 1];

    o.name = "";
    KF_EXPECT_ERR(KF_E_INVALID, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("--name must be 1 to 48 letters");
    o.name = "0123456789012345678901234567890123456789012345678";
    KF_EXPECT_ERR(KF_E_INVALID, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("--name must be 1 to 48 letters");
    /* A newline would become a line of keyfleet.conf and a byte of every certificate's O. */
    o.name = "acme\n[store]\nurl = /tmp/evil.db";
    KF_EXPECT_ERR(KF_E_INVALID, kf_deploy_init(&o, &rep));
    o.name = " acme";
    KF_EXPECT_ERR(KF_E_INVALID, kf_deploy_init(&o, &rep));
    assert_false(kf_file_exists(dir));
    o.name = NULL;
    for (size_t i = 0; i < KF_ARRAY_LEN(names); i++)
        names[i] = "localhost";
    o.names = names;
    o.n_names = KF_ARRAY_LEN(names);
    KF_EXPECT_ERR(KF_E_INVALID, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("at most 16 --hostname names");
    o.n_names = 0;
    o.dir = "";
    KF_EXPECT_ERR(KF_E_INVALID, kf_deploy_init(&o, &rep));
    KF_EXPECT_MSG("no usable deployment directory given");
    o.dir = NULL;
    KF_EXPECT_ERR(KF_E_INVALID, kf_deploy_init(&o, &rep));
    assert_false(exists(dir));
    expect_no_temporary(dir);
}

/* An issuing key that already exists stays where it is, and the deployment uses it there. */
static void check_own_issuing_key(const char *dir, const char *key_path, const char *as_given)
{
    struct kf_init_opts o = opts(dir);
    struct kf_init_report rep;
    struct kf_deploy *d = NULL;
    struct kf_signer *s = NULL;
    struct kf_key *k = NULL, *pub = NULL;
    struct kf_cert *issuing;
    struct kf_ca_rec ca;
    char path[2048];

    o.issuing_key = as_given;
    KF_OK_OR_FAIL(kf_deploy_init(&o, &rep));
    assert_string_equal(rep.issuing_key_location, "file");
    snprintf(path, sizeof(path), "%s/ca/issuing.key", dir);
    assert_false(exists(path));
    issuing = load_cert(dir, "ca/issuing.crt");
    KF_OK_OR_FAIL(kf_key_load(key_path, NULL, &k));
    KF_OK_OR_FAIL(kf_cert_public_key(issuing, &pub));
    assert_true(kf_key_public_equal(k, pub));

    /* Opened later, from anywhere, the deployment finds the key. */
    KF_OK_OR_FAIL(kf_deploy_open(dir, &d));
    KF_OK_OR_FAIL(kf_deploy_issuer(d, &s));
    assert_string_equal(kf_signer_key_location(s), "file");
    kf_test_ca_get(d->store, "issuing", &ca);
    assert_string_equal(ca.key_uri, d->cfg.ca.issuing_key);
    kf_ca_rec_clear(&ca);
    kf_deploy_close(d);
    kf_key_free(k);
    kf_key_free(pub);
    kf_cert_free(issuing);
}

static void test_init_with_existing_issuing_key(void **state)
{
    const char *key = kf_test_path("own-issuing.key");
    char cwd[2048], uri[2100];
    struct kf_key *k = NULL;

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P384, &k));
    KF_OK_OR_FAIL(kf_key_save(k, key, NULL));
    kf_key_free(k);

    check_own_issuing_key(kf_test_path("own-abs"), key, key);

    snprintf(uri, sizeof(uri), "file:%s", key);
    check_own_issuing_key(kf_test_path("own-uri"), key, uri);

    /* Named relative to where init runs, not to the deployment. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(kf_test_dir()), 0);
    {
        struct kf_init_opts o = opts("own-rel");
        struct kf_init_report rep;
        o.issuing_key = "own-issuing.key";
        KF_OK_OR_FAIL(kf_deploy_init(&o, &rep));
    }
    assert_int_equal(chdir(cwd), 0);
    {
        struct kf_deploy *d = NULL;
        struct kf_signer *s = NULL;
        KF_OK_OR_FAIL(kf_deploy_open(kf_test_path("own-rel"), &d));
        KF_OK_OR_FAIL(kf_deploy_issuer(d, &s));
        kf_deploy_close(d);
    }
}

/* ---- open ---- */

static void test_open_missing(void **state)
{
    const char *dir = kf_test_path("nothing-here"), *half = kf_test_path("half");
    struct kf_deploy *d = (struct kf_deploy *)1;
    struct kf_config c;
    char want[2400], conf[2048];

    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_deploy_open(dir, &d));
    snprintf(want, sizeof(want), "no keyfleet deployment in %s (run: keyfleet init --dir %s)", dir,
             dir);
    KF_EXPECT_MSG(want);
    assert_null(d);

    /* A configuration without its store. */
    assert_int_equal(mkdir(half, 0700), 0);
    snprintf(conf, sizeof(conf), "%s/keyfleet.conf", half);
    kf_config_defaults(&c);
    KF_OK_OR_FAIL(kf_config_write(conf, &c, "test"));
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_deploy_open(half, &d));
    KF_EXPECT_MSG("no store at ");
    KF_EXPECT_MSG(half);
    assert_false(exists(kf_test_path("half/keyfleet.db")));

    /* A configuration with a mistake is reported as such. */
    assert_int_equal(unlink(conf), 0);
    kf_test_write(conf, "[ca]\ndevice_cert_days = forever\n");
    KF_EXPECT_ERR(KF_E_CONFIG, kf_deploy_open(half, &d));
    KF_EXPECT_MSG("line 2: ca.device_cert_days = \"forever\" is not a whole number");
    assert_null(d);
}

static void test_path(void **state)
{
    struct fixture *f = *state;
    char out[KF_CONF_PATH_MAX], want[KF_CONF_PATH_MAX + 32];
    KF_OK_OR_FAIL(kf_deploy_path(f->d, f->d->cfg.ca.crl_file, out, sizeof(out)));
    snprintf(want, sizeof(want), "%s/ca/crl.pem", f->d->dir);
    assert_string_equal(out, want);
    KF_OK_OR_FAIL(kf_deploy_path(f->d, "/etc/x.pem", out, sizeof(out)));
    assert_string_equal(out, "/etc/x.pem");
}

/* A request from a minute ago for `days` of `profile`, for a fresh P-256 key. */
static enum kf_err issue(struct kf_signer *s, enum kf_profile profile, long days,
                         struct kf_cert **out)
{
    static const char *const dns[] = {"hub.example.com"};
    struct kf_sign_request r;
    struct kf_key *k = NULL;
    struct kf_buf spki;
    time_t now = time(NULL);
    enum kf_err rc;

    kf_buf_init(&spki, KF_SPKI_MAX);
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    KF_OK_OR_FAIL(kf_key_public_der(k, &spki));
    memset(&r, 0, sizeof(r));
    r.profile = profile;
    r.spki = spki.data;
    r.spki_len = spki.len;
    r.cn = profile == KF_PROFILE_SERVER ? "hub.example.com" : "thing-1";
    r.device_id = "thing-1";
    r.service = "thing-1";
    r.role = "reader";
    r.dns_names = dns;
    r.n_dns = 1;
    r.not_before = now - 60;
    r.not_after = now + days * DAY;
    rc = kf_signer_issue(s, &r, out);
    kf_buf_free(&spki);
    kf_key_free(k);
    return rc;
}

static void test_issuer_applies_config_lifetimes(void **state)
{
    struct fixture *f = *state;
    const char *dir = kf_test_path("lifetimes");
    struct kf_deploy *d = NULL;
    struct kf_signer *s = NULL, *again = NULL;
    struct kf_cert *c = NULL, *issuing;
    char fp[KF_FINGERPRINT_HEX], want[KF_FINGERPRINT_HEX];

    /* A copy of the shared deployment with shorter lifetimes in its configuration. */
    assert_int_equal(kf_test_sh("cp -a '%s' '%s' && cd '%s' && sed -i -e "
                                "'s/^device_cert_days = .*/device_cert_days = 10/' -e "
                                "'s/^service_cert_days = .*/service_cert_days = 20/' -e "
                                "'s/^server_cert_days = .*/server_cert_days = 40/' keyfleet.conf",
                                f->d->dir, dir, dir),
                     0);
    KF_OK_OR_FAIL(kf_deploy_open(dir, &d));
    assert_int_equal(d->cfg.ca.device_cert_days, 10);
    assert_null(d->issuer);
    KF_OK_OR_FAIL(kf_deploy_issuer(d, &s));
    KF_OK_OR_FAIL(kf_deploy_issuer(d, &again));
    assert_ptr_equal(s, again);
    issuing = load_cert(dir, "ca/issuing.crt");
    kf_cert_fingerprint(kf_signer_cert(s), fp);
    kf_cert_fingerprint(issuing, want);
    assert_string_equal(fp, want);
    assert_string_equal(kf_signer_key_location(s), "file");

    KF_EXPECT_ERR(KF_E_DENIED, issue(s, KF_PROFILE_DEVICE, 11, &c));
    KF_EXPECT_MSG("device certificates get at most 10");
    KF_EXPECT_ERR(KF_E_DENIED, issue(s, KF_PROFILE_SERVICE, 21, &c));
    KF_EXPECT_MSG("service certificates get at most 20");
    KF_EXPECT_ERR(KF_E_DENIED, issue(s, KF_PROFILE_SERVER, 41, &c));
    KF_EXPECT_MSG("server certificates get at most 40");
    /* It is still the issuing CA: no issuing CAs. */
    KF_EXPECT_ERR(KF_E_DENIED, issue(s, KF_PROFILE_ISSUING_CA, 10, &c));
    KF_EXPECT_MSG("the issuing CA does not sign issuing-ca certificates");
    assert_int_equal(kf_signer_count(s), 0);
    KF_OK_OR_FAIL(issue(s, KF_PROFILE_DEVICE, 10, &c));
    assert_int_equal(kf_signer_count(s), 1);
    kf_test_save_cert(c, kf_test_path("lifetimes/thing-1.pem"));
    assert_int_equal(kf_test_sh("cd '%s' && openssl verify -purpose sslclient -CAfile ca/root.crt "
                                "-untrusted ca/issuing.crt thing-1.pem >/dev/null",
                                dir),
                     0);
    kf_cert_free(c);
    kf_cert_free(issuing);
    kf_deploy_close(d);
}

static void test_issuer_key_missing(void **state)
{
    struct fixture *f = *state;
    const char *dir = kf_test_path("keyless");
    struct kf_deploy *d = NULL;
    struct kf_signer *s = (struct kf_signer *)1;

    assert_int_equal(kf_test_sh("cp -a '%s' '%s' && mv '%s/ca/issuing.key' '%s/ca/away.key'",
                                f->d->dir, dir, dir, dir),
                     0);
    KF_OK_OR_FAIL(kf_deploy_open(dir, &d));
    assert_int_not_equal(kf_deploy_issuer(d, &s), KF_OK);
    KF_EXPECT_MSG("issuing CA: CA key: ");
    KF_EXPECT_MSG("ca/issuing.key");
    assert_null(d->issuer);
    /* Once the key is back, the same deployment opens it. */
    assert_int_equal(kf_test_sh("mv '%s/ca/away.key' '%s/ca/issuing.key'", dir, dir), 0);
    KF_OK_OR_FAIL(kf_deploy_issuer(d, &s));
    assert_non_null(s);
    kf_deploy_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_fresh),
        cmocka_unit_test(test_init_default_names_and_ed25519),
        cmocka_unit_test(test_init_refuses_existing_deployment),
        cmocka_unit_test(test_init_refuses_non_empty),
        cmocka_unit_test(test_init_into_empty_dir),
        cmocka_unit_test(test_init_failure_leaves_nothing),
        cmocka_unit_test(test_init_bad_arguments),
        cmocka_unit_test(test_init_with_existing_issuing_key),
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_issuer_applies_config_lifetimes),
        cmocka_unit_test(test_issuer_key_missing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
