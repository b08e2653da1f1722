/*
 * snapshot: the snapshot keyfleetd's listeners decide from, loaded from a real deployment with
 * group enrollments (verified, unverified, disabled), hubs, disabled and revoked devices and a
 * revoked service: its groups, the trust sets built from them, who it keeps out, which
 * certificates it holds revoked (from the store and from the CRL file), and the holder: a reader
 * keeps its snapshot while the holder moves on, and kf_snapshot_fresh follows what another handle
 * on the deployment (the CLI) changed, and only that.
 */
#include "testutil.h"
#include "testdeploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/pki_crl.h"
#include "server/ca/ca.h"
#include "server/ops/enroll.h"
#include "server/ops/fleet.h"
#include "server/ops/hubs.h"
#include "server/ops/snapshot.h"
#include "server/ops/services.h"

#define DAY 86400L

/* ---- helpers ---- */

/* The SHA-256 of the SubjectPublicKeyInfo of `c`: how the registry finds a group. */
static void spki_fingerprint(const struct kf_cert *c, char *fp)
{
    struct kf_key *k = NULL;
    KF_OK_OR_FAIL(kf_cert_public_key(c, &k));
    KF_OK_OR_FAIL(kf_key_fingerprint(k, fp));
    kf_key_free(k);
}

/* The files of group `name`'s CA in deployment `d`: "<deployment>-<name>-root.pem" and ".key". */
static void group_files(struct kf_deploy *d, const char *name, char *ca, char *key)
{
    const char *deployment = strrchr(d->dir, '/') ? strrchr(d->dir, '/') + 1 : d->dir;
    char file[KF_CONF_PATH_MAX + KF_ID_MAX + 16];
    snprintf(file, sizeof(file), "%s-%s-root.pem", deployment, name);
    snprintf(ca, 1024, "%s", kf_test_path(file));
    snprintf(file, sizeof(file), "%s-%s-root.key", deployment, name);
    snprintf(key, 1024, "%s", kf_test_path(file));
}

/*
 * Proves possession of group `name`'s CA key for verification code `code` the way an operator
 * does: openssl signs a certificate whose CN is the code with the CA's key.
 */
static void prove(struct kf_deploy *d, const char *name, const char *code)
{
    char ca[1024], key[1024], proof[1024];
    group_files(d, name, ca, key);
    snprintf(proof, sizeof(proof), "%.*s-proof-%.8s.pem", (int)(strlen(ca) - strlen("-root.pem")),
             ca, code);
    if (kf_test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                   "-keyout '%s.key' -subj '/CN=%s' -out '%s.csr' 2>/dev/null && openssl x509 "
                   "-req -in '%s.csr' -CA '%s' -CAkey '%s' -days 1 -out '%s' 2>/dev/null",
                   proof, code, proof, proof, ca, key, proof) != 0)
        fail_msg("openssl could not make the proof for group %s", name);
    KF_OK_OR_FAIL(kf_enroll_group_verify(d, KF_TEST_ACTOR, name, proof));
}

/*
 * Creates group enrollment `name` for manufacturer `p`'s root CA with `o` (may be NULL), verified
 * when `verify`. The CA's SPKI fingerprint goes to `fp`.
 */
static void group(struct kf_deploy *d, const char *name, struct kf_test_pki *p, int verify,
                  const struct kf_enroll_opts *o, char *fp)
{
    char ca[1024], key[1024], code[KF_CODE_MAX];
    group_files(d, name, ca, key);
    kf_test_save_cert(p->root, ca);
    KF_OK_OR_FAIL(kf_key_save(p->root_key, key, NULL));
    KF_OK_OR_FAIL(kf_enroll_group_create(d, KF_TEST_ACTOR, name, ca, o, code));
    if (verify) prove(d, name, code);
    spki_fingerprint(p->root, fp);
}

/*
 * Issues a keyfleet certificate to device `id` (made on the first); its serial to `serial`.
 * Returned as a device presents it, parsed from the PEM it was handed: keyfleetd verifies only
 * certificates off the wire, and the object the signer returns (built from the key's SPKI, with
 * no key object) fails kf_trust_verify with OpenSSL's "unspecified" error.
 */
static struct kf_cert *issue(struct kf_deploy *d, const char *id, char *serial)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, id);
    struct kf_cert *c = NULL, *presented = NULL;
    struct kf_buf pem;
    kf_buf_init(&pem, 1 << 16);
    KF_OK_OR_FAIL(kf_ca_issue_device(d, KF_TEST_ACTOR, id, NULL, csr, 0, &c));
    if (serial) kf_cert_serial_hex(c, serial);
    KF_OK_OR_FAIL(kf_cert_pem(c, &pem));
    KF_OK_OR_FAIL(kf_cert_parse(pem.data, pem.len, &presented));
    kf_buf_free(&pem);
    kf_cert_free(c);
    kf_csr_free(csr);
    return presented;
}

/* Adds service `name` with `role` and a first certificate. */
static void service(struct kf_deploy *d, const char *name, const char *role)
{
    struct kf_csr *csr = kf_test_csr(KF_KEY_EC_P256, name);
    struct kf_cert *c = NULL;
    KF_OK_OR_FAIL(kf_services_add(d, KF_TEST_ACTOR, name, role, csr, 0, &c));
    kf_cert_free(c);
    kf_csr_free(csr);
}

static struct kf_snapshot *load(struct kf_deploy *d)
{
    struct kf_snapshot *r = NULL;
    KF_OK_OR_FAIL(kf_snapshot_load(d, &d->cfg, &r));
    assert_non_null(r);
    return r;
}

static int64_t store_version(struct kf_store *s)
{
    struct kf_txn *t = NULL;
    int64_t v = -1;
    KF_OK_OR_FAIL(kf_store_read(s, &t));
    KF_OK_OR_FAIL(kf_txn_registry_version(t, &v));
    kf_txn_end(t);
    return v;
}

static const struct kf_hub_rec *hub_named(const struct kf_snapshot *r, const char *name)
{
    for (size_t i = 0; i < r->n_hubs; i++)
        if (strcmp(r->hubs[i].name, name) == 0) return &r->hubs[i];
    return NULL;
}

/* The deployment's file `rel` (as keyfleet.conf names it) as text. */
static char *deploy_file(struct kf_deploy *d, const char *rel)
{
    char path[KF_CONF_PATH_MAX];
    KF_OK_OR_FAIL(kf_deploy_path(d, rel, path, sizeof(path)));
    return kf_test_read(path);
}

/* Verifies `leaf` (with manufacturer intermediate `via`, may be NULL) against `trust`, now. */
static enum kf_err verify(const struct kf_trust *trust, const struct kf_cert *leaf,
                          struct kf_cert *via, struct kf_verify_result *res)
{
    struct kf_cert *untrusted[1] = {via};
    return kf_trust_verify(trust, leaf, via ? untrusted : NULL, via ? 1 : 0, time(NULL),
                           KF_PURPOSE_CLIENT, res);
}

/* Writes `crl` as the deployment's CRL file the way keyfleet does: a new file renamed over. */
static void write_crl(struct kf_deploy *d, const struct kf_crl *crl)
{
    char path[KF_CONF_PATH_MAX];
    struct kf_buf pem;
    kf_buf_init(&pem, 1 << 20);
    KF_OK_OR_FAIL(kf_crl_pem(crl, &pem));
    KF_OK_OR_FAIL(kf_deploy_path(d, d->cfg.ca.crl_file, path, sizeof(path)));
    KF_OK_OR_FAIL(kf_file_write(path, pem.data, pem.len, 0644, KF_FILE_REPLACE));
    kf_buf_free(&pem);
}

/* ---- what a snapshot holds ---- */

static void test_groups_hubs_and_cas(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("groups");
    struct kf_test_pki ok, pending, off, ind;
    struct kf_enroll_opts ok_opts = {"10.0.0.0/8, 2001:db8::/32", 0, NULL, "hub-a", NULL, 0};
    struct kf_enroll_opts new_opts = {NULL, 0, NULL, NULL, "manual", 1};
    char fp_ok[KF_FINGERPRINT_HEX], fp_new[KF_FINGERPRINT_HEX], fp_off[KF_FINGERPRINT_HEX];
    char fp_ind[KF_FINGERPRINT_HEX], fp_ca[KF_FINGERPRINT_HEX], fp_want[KF_FINGERPRINT_HEX];
    const struct kf_reg_group *g;
    const struct kf_hub_rec *h;
    struct kf_snapshot *r;
    struct kf_cert *c;
    char *text;
    (void)state;

    kf_test_pki_make(&ok, KF_KEY_EC_P256);
    kf_test_pki_make(&pending, KF_KEY_EC_P256);
    kf_test_pki_make(&off, KF_KEY_EC_P256);
    kf_test_pki_make(&ind, KF_KEY_EC_P256);
    KF_OK_OR_FAIL(kf_hubs_add(d, KF_TEST_ACTOR, "hub-a", "hub-a.example:8883", 3));
    KF_OK_OR_FAIL(kf_hubs_add(d, KF_TEST_ACTOR, "hub-b", "[2001:db8::7]:8883", 1));
    KF_OK_OR_FAIL(kf_hubs_set_enabled(d, KF_TEST_ACTOR, "hub-b", 0, NULL));
    group(d, "vendor-ok", &ok, 1, &ok_opts, fp_ok);
    group(d, "vendor-new", &pending, 0, &new_opts, fp_new);
    group(d, "vendor-off", &off, 1, NULL, fp_off);
    KF_OK_OR_FAIL(kf_enroll_set_enabled(d, KF_TEST_ACTOR, "vendor-off", 0, NULL));
    /* An individual enrollment: not cached (a request looks its own up in the store). */
    c = kf_test_issue(&ind, KF_PROFILE_DEVICE, "dev-ind", 0, 0, NULL);
    kf_test_save_cert(c, kf_test_path("dev-ind.pem"));
    spki_fingerprint(c, fp_ind);
    kf_cert_free(c);
    KF_OK_OR_FAIL(
        kf_enroll_add(d, KF_TEST_ACTOR, "dev-ind", kf_test_path("dev-ind.pem"), NULL, NULL));

    r = load(d);
    assert_int_equal(r->refs, 1);
    assert_int_equal(r->version, store_version(d->store));
    assert_int_equal(r->n_groups, 3);

    g = kf_snapshot_group(r, fp_ok);
    assert_non_null(g);
    assert_ptr_equal(kf_snapshot_group_named(r, "vendor-ok"), g);
    assert_string_equal(g->id, "vendor-ok");
    assert_int_equal(g->enabled, 1);
    assert_int_equal(g->verified, 1);
    assert_string_equal(g->fingerprint, fp_ok);
    kf_cert_fingerprint(g->ca, fp_ca);
    kf_cert_fingerprint(ok.root, fp_want);
    assert_string_equal(fp_ca, fp_want);
    assert_int_equal(g->has_networks, 1);
    assert_true(kf_cidr_match(&g->networks, "10.200.3.4"));
    assert_true(kf_cidr_match(&g->networks, "2001:db8::42"));
    assert_false(kf_cidr_match(&g->networks, "192.168.1.1"));
    assert_string_equal(g->allocation, "static");
    assert_string_equal(g->hub, "hub-a");
    assert_int_equal(g->approval_manual, 0);
    assert_int_equal(g->require_binding, 0);

    g = kf_snapshot_group(r, fp_new);
    assert_non_null(g);
    assert_ptr_equal(kf_snapshot_group_named(r, "vendor-new"), g);
    assert_int_equal(g->enabled, 1);
    assert_int_equal(g->verified, 0);
    assert_int_equal(g->has_networks, 0);
    assert_string_equal(g->allocation, "hashed");
    assert_string_equal(g->hub, "");
    assert_int_equal(g->approval_manual, 1);
    assert_int_equal(g->require_binding, 1);

    g = kf_snapshot_group(r, fp_off);
    assert_non_null(g);
    assert_ptr_equal(kf_snapshot_group_named(r, "vendor-off"), g);
    assert_int_equal(g->enabled, 0);
    assert_int_equal(g->verified, 1);

    /* Neither the individual enrollment nor a key no group has. */
    assert_null(kf_snapshot_group(r, fp_ind));
    assert_null(kf_snapshot_group_named(r, "dev-ind"));
    assert_null(kf_snapshot_group_named(r, "vendor-zz"));
    assert_null(kf_snapshot_group(r, ""));
    spki_fingerprint(ok.issuing, fp_ca); /* the intermediate under a group's root: not a group */
    assert_null(kf_snapshot_group(r, fp_ca));

    assert_int_equal(r->n_hubs, 2);
    h = hub_named(r, "hub-a");
    assert_non_null(h);
    assert_string_equal(h->endpoint, "hub-a.example:8883");
    assert_int_equal(h->weight, 3);
    assert_int_equal(h->enabled, 1);
    h = hub_named(r, "hub-b");
    assert_non_null(h);
    assert_string_equal(h->endpoint, "[2001:db8::7]:8883");
    assert_int_equal(h->enabled, 0);

    /* keyfleet's own CAs, as the deployment's files hold them. */
    text = deploy_file(d, d->cfg.ca.root_cert);
    assert_string_equal(kf_buf_str(&r->root_pem), text);
    free(text);
    text = deploy_file(d, d->cfg.ca.issuing_cert);
    assert_string_equal(kf_buf_str(&r->issuing_pem), text);
    free(text);
    assert_true(kf_cert_is_self_signed(r->root));
    assert_false(kf_cert_is_self_signed(r->issuing));
    /* EST cacerts: base64 PKCS#7 with both CAs, as openssl reads it. */
    kf_test_write(kf_test_path("groups-cacerts.b64"), kf_buf_str(&r->cacerts));
    assert_int_equal(kf_test_sh("test \"$(openssl base64 -d -in '%s' | openssl pkcs7 -inform DER "
                                "-print_certs -noout | grep -c '^subject=')\" = 2",
                                kf_test_path("groups-cacerts.b64")),
                     0);
    assert_true(r->csrattrs.len > 0);
    /* The CRL init published, signed by the issuing CA. */
    assert_non_null(r->crl);
    assert_true(kf_crl_signed_by(r->crl, r->issuing));
    assert_int_equal(r->n_blocked, 0);
    assert_int_equal(r->n_revoked, 0);

    kf_snapshot_release(r);
    kf_test_pki_free(&ok);
    kf_test_pki_free(&pending);
    kf_test_pki_free(&off);
    kf_test_pki_free(&ind);
    kf_deploy_close(d);
}

static void test_trust_sets(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("trust");
    struct kf_test_pki ok, pending, off, stranger;
    char fp_ok[KF_FINGERPRINT_HEX], fp_new[KF_FINGERPRINT_HEX], fp_off[KF_FINGERPRINT_HEX];
    char code[KF_CODE_MAX];
    struct kf_cert *dev_ok, *dev_new, *dev_off, *dev_stranger, *ours;
    struct kf_verify_result res;
    struct kf_snapshot *r, *r2;
    (void)state;

    kf_test_pki_make(&ok, KF_KEY_EC_P256);
    kf_test_pki_make(&pending, KF_KEY_EC_P256);
    kf_test_pki_make(&off, KF_KEY_EC_P256);
    kf_test_pki_make(&stranger, KF_KEY_EC_P256);
    group(d, "vendor-ok", &ok, 1, NULL, fp_ok);
    group(d, "vendor-new", &pending, 0, NULL, fp_new);
    group(d, "vendor-off", &off, 1, NULL, fp_off);
    KF_OK_OR_FAIL(kf_enroll_set_enabled(d, KF_TEST_ACTOR, "vendor-off", 0, NULL));
    /* Factory certificates, issued by each manufacturer's intermediate under the enrolled root. */
    dev_ok = kf_test_issue(&ok, KF_PROFILE_DEVICE, "f-ok", 0, 0, NULL);
    dev_new = kf_test_issue(&pending, KF_PROFILE_DEVICE, "f-new", 0, 0, NULL);
    dev_off = kf_test_issue(&off, KF_PROFILE_DEVICE, "f-off", 0, 0, NULL);
    dev_stranger = kf_test_issue(&stranger, KF_PROFILE_DEVICE, "f-x", 0, 0, NULL);
    ours = issue(d, "op-1", NULL);

    r = load(d);
    /* Eligible: enabled and verified groups only; the anchor reached names the group. */
    memset(&res, 0, sizeof(res));
    KF_OK_OR_FAIL(verify(r->eligible, dev_ok, ok.issuing, &res));
    assert_string_equal(res.anchor, fp_ok);
    assert_ptr_equal(kf_snapshot_group(r, res.anchor), kf_snapshot_group_named(r, "vendor-ok"));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->eligible, dev_new, pending.issuing, &res));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->eligible, dev_off, off.issuing, &res));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->eligible, dev_stranger, stranger.issuing, &res));
    /* All groups: so that a refusal can say which group, and why it is not eligible. */
    KF_OK_OR_FAIL(verify(r->all_groups, dev_new, pending.issuing, &res));
    assert_string_equal(res.anchor, fp_new);
    KF_OK_OR_FAIL(verify(r->all_groups, dev_off, off.issuing, &res));
    assert_string_equal(res.anchor, fp_off);
    KF_OK_OR_FAIL(verify(r->all_groups, dev_ok, ok.issuing, &res));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->all_groups, dev_stranger, stranger.issuing, &res));
    /* Operational: keyfleet's issuing CA, and nothing a manufacturer issued. */
    KF_OK_OR_FAIL(verify(r->operational, ours, NULL, &res));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->operational, dev_ok, ok.issuing, &res));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->eligible, ours, NULL, &res));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->all_groups, ours, NULL, &res));

    /* vendor-new proves possession, vendor-off is enabled: the next snapshot takes both. */
    KF_OK_OR_FAIL(kf_enroll_group_code(d, KF_TEST_ACTOR, "vendor-new", code));
    prove(d, "vendor-new", code);
    KF_OK_OR_FAIL(kf_enroll_set_enabled(d, KF_TEST_ACTOR, "vendor-off", 1, NULL));
    r2 = load(d);
    assert_true(r2->version > r->version);
    KF_OK_OR_FAIL(verify(r2->eligible, dev_new, pending.issuing, &res));
    assert_string_equal(res.anchor, fp_new);
    KF_OK_OR_FAIL(verify(r2->eligible, dev_off, off.issuing, &res));
    assert_string_equal(res.anchor, fp_off);
    /* The earlier snapshot is immutable: it still refuses what it refused. */
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->eligible, dev_new, pending.issuing, &res));
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(r->eligible, dev_off, off.issuing, &res));
    assert_int_equal(kf_snapshot_group_named(r, "vendor-new")->verified, 0);
    assert_int_equal(kf_snapshot_group_named(r2, "vendor-new")->verified, 1);

    kf_snapshot_release(r);
    kf_snapshot_release(r2);
    kf_cert_free(dev_ok);
    kf_cert_free(dev_new);
    kf_cert_free(dev_off);
    kf_cert_free(dev_stranger);
    kf_cert_free(ours);
    kf_test_pki_free(&ok);
    kf_test_pki_free(&pending);
    kf_test_pki_free(&off);
    kf_test_pki_free(&stranger);
    kf_deploy_close(d);
}

/* ---- who is kept out ---- */

static void test_blocked(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("blocked");
    struct kf_snapshot *r, *r2;
    char long_id[KF_ID_MAX + 2];
    struct kf_cert *c;
    (void)state;

    c = issue(d, "dev-act", NULL);
    kf_cert_free(c);
    c = issue(d, "dev-off", NULL);
    kf_cert_free(c);
    c = issue(d, "dev-rev", NULL);
    kf_cert_free(c);
    service(d, "svc-ok", "reader");
    service(d, "svc-rev", "commander");
    memset(long_id, 'a', KF_ID_MAX);
    long_id[KF_ID_MAX] = '\0';
    c = issue(d, long_id, NULL);
    kf_cert_free(c);
    KF_OK_OR_FAIL(kf_fleet_set_enabled(d, KF_TEST_ACTOR, "dev-off", 0, NULL));
    KF_OK_OR_FAIL(kf_fleet_set_enabled(d, KF_TEST_ACTOR, long_id, 0, NULL));
    KF_OK_OR_FAIL(kf_fleet_revoke(d, KF_TEST_ACTOR, "dev-rev", KF_CRL_KEY_COMPROMISE, NULL));
    KF_OK_OR_FAIL(kf_services_revoke(d, KF_TEST_ACTOR, "svc-rev", KF_CRL_UNSPECIFIED, NULL));

    r = load(d);
    assert_int_equal(r->n_blocked, 4);
    assert_int_equal(kf_snapshot_blocked(r, 0, "dev-act"), 0);
    assert_int_equal(kf_snapshot_blocked(r, 0, "dev-off"), KF_DEVICE_DISABLED);
    assert_int_equal(kf_snapshot_blocked(r, 0, "dev-rev"), KF_DEVICE_REVOKED);
    assert_int_equal(kf_snapshot_blocked(r, 1, "svc-ok"), 0);
    assert_int_equal(kf_snapshot_blocked(r, 1, "svc-rev"), KF_SERVICE_REVOKED);
    /* Devices and services are looked up each in their own namespace. */
    assert_int_equal(kf_snapshot_blocked(r, 1, "dev-off"), 0);
    assert_int_equal(kf_snapshot_blocked(r, 1, "dev-rev"), 0);
    assert_int_equal(kf_snapshot_blocked(r, 0, "svc-rev"), 0);
    /* Unknown and empty ids are not blocked. */
    assert_int_equal(kf_snapshot_blocked(r, 0, "dev-none"), 0);
    assert_int_equal(kf_snapshot_blocked(r, 0, ""), 0);
    /* The longest id is found whole; one character more is another id, not a prefix match. */
    assert_int_equal(kf_snapshot_blocked(r, 0, long_id), KF_DEVICE_DISABLED);
    strcat(long_id, "a");
    assert_int_equal(kf_snapshot_blocked(r, 0, long_id), 0);
    /* A device's revoked certificate is revoked in the snapshot too. */
    assert_int_equal(r->n_revoked, 2); /* dev-rev's and svc-rev's certificates */

    /* Enabled again: the next snapshot lets it in; the one before still keeps it out. */
    KF_OK_OR_FAIL(kf_fleet_set_enabled(d, KF_TEST_ACTOR, "dev-off", 1, NULL));
    r2 = load(d);
    assert_int_equal(kf_snapshot_blocked(r2, 0, "dev-off"), 0);
    assert_int_equal(r2->n_blocked, 3);
    assert_int_equal(kf_snapshot_blocked(r, 0, "dev-off"), KF_DEVICE_DISABLED);
    kf_snapshot_release(r);
    kf_snapshot_release(r2);
    kf_deploy_close(d);
}

/* ---- revoked certificates ---- */

static enum kf_err cert_insert_cb(struct kf_txn *txn, void *arg)
{
    return kf_txn_cert_insert(txn, arg);
}

/*
 * A certificate for device `id` that keyfleet's issuing CA signed 40 days ago and that expired 10
 * days ago, recorded in the store as keyfleet records what it issues; its serial to `serial`.
 */
static void record_expired(struct kf_deploy *d, const char *id, char *serial)
{
    char cert_path[KF_CONF_PATH_MAX], key_path[KF_CONF_PATH_MAX];
    struct kf_cert *issuing = NULL, *c = NULL;
    struct kf_key *issuing_key = NULL, *k = NULL;
    struct kf_cert_template t;
    struct kf_cert_rec rec;
    time_t now = time(NULL);

    KF_OK_OR_FAIL(kf_deploy_path(d, d->cfg.ca.issuing_cert, cert_path, sizeof(cert_path)));
    KF_OK_OR_FAIL(kf_deploy_path(d, d->cfg.ca.issuing_key, key_path, sizeof(key_path)));
    KF_OK_OR_FAIL(kf_cert_load_file(cert_path, &issuing));
    KF_OK_OR_FAIL(kf_key_load(key_path, NULL, &issuing_key));
    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    memset(&t, 0, sizeof(t));
    t.profile = KF_PROFILE_DEVICE;
    t.cn = id;
    t.device_id = id;
    t.key = k;
    t.not_before = now - 40 * DAY;
    t.not_after = now - 10 * DAY;
    KF_OK_OR_FAIL(kf_cert_build(&t, issuing, issuing_key, &c));
    KF_OK_OR_FAIL(kf_ca_cert_record(c, KF_PROFILE_DEVICE, "issuing", id, &rec));
    kf_cert_serial_hex(c, serial);
    KF_OK_OR_FAIL(kf_store_write(d->store, cert_insert_cb, &rec));
    kf_cert_rec_clear(&rec);
    kf_cert_free(c);
    kf_cert_free(issuing);
    kf_key_free(issuing_key);
    kf_key_free(k);
}

static void test_cert_revoked(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("revoked");
    char s1[KF_SERIAL_HEX_MAX], s2[KF_SERIAL_HEX_MAX], expired[KF_SERIAL_HEX_MAX];
    char crl_path[KF_CONF_PATH_MAX], long_serial[KF_SERIAL_HEX_MAX + 16];
    struct kf_cert *c1, *c2;
    struct kf_snapshot *r0, *r1, *r2;
    struct kf_verify_result res;
    struct kf_crl *crl;
    int reason = -1;
    (void)state;

    KF_OK_OR_FAIL(kf_deploy_path(d, d->cfg.ca.crl_file, crl_path, sizeof(crl_path)));
    c1 = issue(d, "dev-1", s1);
    c2 = issue(d, "dev-1", s2);
    r0 = load(d);
    assert_false(kf_snapshot_cert_revoked(r0, s1));
    assert_false(kf_snapshot_cert_revoked(r0, s2));
    KF_OK_OR_FAIL(verify(r0->operational, c1, NULL, &res));

    /* Revoked through the CA layer, as `keyfleet cert revoke` does. */
    KF_OK_OR_FAIL(kf_ca_revoke(d, KF_TEST_ACTOR, s1, KF_CRL_KEY_COMPROMISE));
    r1 = load(d);
    assert_true(r1->version > r0->version);
    assert_true(kf_snapshot_cert_revoked(r1, s1));
    assert_false(kf_snapshot_cert_revoked(r1, s2));
    assert_int_equal(r1->n_revoked, 1);
    assert_string_equal(r1->revoked[0], s1);
    /* The snapshot's CRL is the one just published, and the TLS trust set checks it. */
    assert_non_null(r1->crl);
    assert_true(kf_crl_lists(r1->crl, s1, &reason));
    assert_int_equal(reason, KF_CRL_KEY_COMPROMISE);
    assert_true(kf_crl_number(r1->crl) > kf_crl_number(r0->crl));
    memset(&res, 0, sizeof(res));
    KF_EXPECT_ERR(KF_E_REVOKED, verify(r1->operational, c1, NULL, &res));
    assert_int_equal(res.reason, KF_VERIFY_REVOKED);
    KF_OK_OR_FAIL(verify(r1->operational, c2, NULL, &res));
    /* The snapshot taken before does not change under its readers. */
    assert_false(kf_snapshot_cert_revoked(r0, s1));
    KF_OK_OR_FAIL(verify(r0->operational, c1, NULL, &res));

    /*
     * Revoked and expired since: the CRL leaves it out (RFC 5280 allows that), the snapshot
     * does not, so that no CRL of the past lets the serial back in on a resumed session.
     */
    record_expired(d, "dev-1", expired);
    KF_OK_OR_FAIL(kf_ca_revoke(d, KF_TEST_ACTOR, expired, KF_CRL_KEY_COMPROMISE));
    crl = kf_test_crl_load(crl_path);
    assert_false(kf_crl_lists(crl, expired, NULL));
    assert_true(kf_crl_lists(crl, s1, NULL));
    kf_crl_free(crl);
    r2 = load(d);
    assert_false(kf_crl_lists(r2->crl, expired, NULL));
    assert_true(kf_snapshot_cert_revoked(r2, expired));
    assert_true(kf_snapshot_cert_revoked(r2, s1));
    assert_false(kf_snapshot_cert_revoked(r2, s2));
    assert_int_equal(r2->n_revoked, 2);

    /* Serials nobody issued, and text no serial can be. */
    assert_false(kf_snapshot_cert_revoked(r2, "1234abcd"));
    assert_false(kf_snapshot_cert_revoked(r2, ""));
    memset(long_serial, 'f', sizeof(long_serial) - 1);
    long_serial[sizeof(long_serial) - 1] = '\0';
    assert_false(kf_snapshot_cert_revoked(r2, long_serial));

    kf_snapshot_release(r0);
    kf_snapshot_release(r1);
    kf_snapshot_release(r2);
    kf_cert_free(c1);
    kf_cert_free(c2);
    kf_deploy_close(d);
}

static void test_generations(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("generations");
    struct kf_snapshot *a, *b, *c;
    (void)state;

    a = load(d);
    b = load(d);
    /* Nothing changed: the same version, but every snapshot built has a generation of its own. */
    assert_int_equal(b->version, a->version);
    assert_true(b->generation > a->generation);
    KF_OK_OR_FAIL(kf_hubs_add(d, KF_TEST_ACTOR, "hub-g", "hub-g.example:8883", 1));
    c = load(d);
    assert_true(c->version > b->version);
    assert_true(c->generation > b->generation);
    kf_snapshot_release(a);
    kf_snapshot_release(b);
    kf_snapshot_release(c);
    kf_deploy_close(d);
}

/* ---- the holder ---- */

static void test_holder_keeps_readers_snapshot(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("holder");
    struct kf_snapshot_holder h;
    struct kf_snapshot *first, *reader, *cur, *next, *again;
    struct kf_test_pki p;
    struct kf_verify_result res;
    struct kf_cert *dev;
    char fp[KF_FINGERPRINT_HEX], *cacerts;
    size_t cacerts_len;
    uint64_t gen;
    (void)state;

    kf_test_pki_make(&p, KF_KEY_EC_P256);
    group(d, "vendor-h", &p, 1, NULL, fp);
    dev = kf_test_issue(&p, KF_PROFILE_DEVICE, "f-h", 0, 0, NULL);
    first = load(d);
    gen = first->generation;
    kf_snapshot_holder_init(&h, first); /* takes the load's reference */

    reader = kf_snapshot_get(&h);
    assert_ptr_equal(reader, first);
    assert_int_equal(reader->refs, 2);
    cacerts = strdup(kf_buf_str(&reader->cacerts));
    cacerts_len = reader->cacerts.len;

    /* An operator disables the group; keyfleetd reloads (SIGHUP). */
    KF_OK_OR_FAIL(kf_enroll_set_enabled(d, KF_TEST_ACTOR, "vendor-h", 0, NULL));
    KF_OK_OR_FAIL(kf_snapshot_reload(&h, d, &d->cfg));
    cur = kf_snapshot_get(&h);
    assert_ptr_not_equal(cur, reader);
    assert_true(cur->generation > gen);
    assert_int_equal(cur->refs, 2);
    assert_int_equal(kf_snapshot_group_named(cur, "vendor-h")->enabled, 0);
    KF_EXPECT_ERR(KF_E_UNKNOWN_ISSUER, verify(cur->eligible, dev, p.issuing, &res));

    /*
     * The holder let go of the old snapshot; the reader's reference keeps it whole: every part of
     * it is still readable (under ASan a freed one would be a heap-use-after-free here).
     */
    assert_int_equal(reader->refs, 1);
    assert_int_equal(reader->generation, gen);
    assert_int_equal(kf_snapshot_group(reader, fp)->enabled, 1);
    assert_string_equal(kf_snapshot_group_named(reader, "vendor-h")->id, "vendor-h");
    KF_OK_OR_FAIL(verify(reader->eligible, dev, p.issuing, &res));
    assert_string_equal(res.anchor, fp);
    assert_int_equal(reader->cacerts.len, cacerts_len);
    assert_string_equal(kf_buf_str(&reader->cacerts), cacerts);
    assert_true(kf_crl_signed_by(reader->crl, reader->issuing));
    kf_snapshot_release(reader); /* the last reference: it goes now */

    /* kf_snapshot_set takes the new snapshot's reference and drops the holder's old one. */
    next = load(d);
    kf_snapshot_set(&h, next);
    assert_int_equal(cur->refs, 1); /* ours only */
    assert_int_equal(next->refs, 1);
    again = kf_snapshot_get(&h);
    assert_ptr_equal(again, next);
    assert_int_equal(next->refs, 2);
    /* The one we still hold is readable after the swap. */
    assert_int_equal(kf_snapshot_group_named(cur, "vendor-h")->enabled, 0);
    /* kf_snapshot_ref is one more reference, given back with one release. */
    assert_ptr_equal(kf_snapshot_ref(again), next);
    assert_int_equal(next->refs, 3);
    kf_snapshot_release(again);
    kf_snapshot_release(again);
    assert_int_equal(next->refs, 1);
    kf_snapshot_release(cur);
    kf_snapshot_release(NULL); /* fine */

    kf_snapshot_holder_destroy(&h); /* the holder's reference: next goes (LSan sees a leak) */
    free(cacerts);
    kf_cert_free(dev);
    kf_test_pki_free(&p);
    kf_deploy_close(d);
}

/* ---- fresh: following the CLI ---- */

static void test_fresh_follows_another_handle(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("fresh"), *cli = NULL;
    struct kf_snapshot_holder h;
    struct kf_snapshot *first, *a, *b, *c;
    struct kf_test_pki p;
    struct kf_cert *cert;
    char fp[KF_FINGERPRINT_HEX];
    int64_t v0;
    (void)state;

    kf_test_pki_make(&p, KF_KEY_EC_P256);
    group(d, "vendor-f", &p, 1, NULL, fp);
    cert = issue(d, "dev-f", NULL);
    kf_cert_free(cert);
    kf_snapshot_holder_init(&h, load(d));
    first = kf_snapshot_get(&h);
    /* The CLI: its own handle on the same deployment (its own store connection). */
    KF_OK_OR_FAIL(kf_deploy_open(d->dir, &cli));

    /* Nothing changed: the same snapshot, nothing rebuilt. */
    a = kf_snapshot_fresh(&h, d);
    assert_ptr_equal(a, first);
    assert_int_equal(a->generation, first->generation);
    kf_snapshot_release(a);

    /* A write that is no registry change (a certificate issued): still the same snapshot. */
    v0 = store_version(d->store);
    cert = issue(cli, "dev-f", NULL);
    kf_cert_free(cert);
    assert_int_equal(store_version(d->store), v0);
    a = kf_snapshot_fresh(&h, d);
    assert_ptr_equal(a, first);
    kf_snapshot_release(a);

    /* `keyfleet enrollment disable` through the other handle: the next request sees it. */
    KF_OK_OR_FAIL(kf_enroll_set_enabled(cli, KF_TEST_ACTOR, "vendor-f", 0, NULL));
    b = kf_snapshot_fresh(&h, d);
    assert_ptr_not_equal(b, first);
    assert_true(b->generation > first->generation);
    assert_int_equal(b->version, store_version(d->store));
    assert_int_equal(kf_snapshot_group(b, fp)->enabled, 0);
    /* It is the holder's current snapshot now, and asking again changes nothing. */
    c = kf_snapshot_get(&h);
    assert_ptr_equal(c, b);
    kf_snapshot_release(c);
    c = kf_snapshot_fresh(&h, d);
    assert_ptr_equal(c, b);
    assert_int_equal(c->generation, b->generation);
    kf_snapshot_release(c);
    /* The reader that started before keeps what it had. */
    assert_int_equal(kf_snapshot_group(first, fp)->enabled, 1);

    /* A status written straight through the store API (another keyfleetd). */
    kf_test_device_set_status(cli->store, "dev-f", KF_DEVICE_DISABLED);
    c = kf_snapshot_fresh(&h, d);
    assert_ptr_not_equal(c, b);
    assert_int_equal(kf_snapshot_blocked(c, 0, "dev-f"), KF_DEVICE_DISABLED);
    assert_int_equal(kf_snapshot_blocked(b, 0, "dev-f"), 0);
    kf_snapshot_release(c);

    /* A hub added by the CLI. */
    KF_OK_OR_FAIL(kf_hubs_add(cli, KF_TEST_ACTOR, "hub-f", "hub-f.example:8883", 2));
    c = kf_snapshot_fresh(&h, d);
    assert_int_equal(c->n_hubs, 1);
    assert_string_equal(c->hubs[0].name, "hub-f");
    assert_int_equal(b->n_hubs, 0);
    kf_snapshot_release(c);

    kf_snapshot_release(b);
    kf_snapshot_release(first);
    kf_snapshot_holder_destroy(&h);
    kf_deploy_close(cli);
    kf_test_pki_free(&p);
    kf_deploy_close(d);
}

static void test_fresh_follows_the_crl_file(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("fresh-crl"), *cli = NULL;
    struct kf_snapshot_holder h;
    struct kf_snapshot *first, *a, *b, *c, *e;
    struct kf_revoked listed = {"1234abcd", 0, KF_CRL_KEY_COMPROMISE};
    struct kf_signer *signer;
    struct kf_crl *crl = NULL;
    struct kf_test_pki stranger;
    struct kf_verify_result res;
    struct kf_cert *ours;
    char crl_path[KF_CONF_PATH_MAX];
    uint64_t n0;
    int64_t v0;
    time_t now = time(NULL);
    (void)state;

    KF_OK_OR_FAIL(kf_deploy_path(d, d->cfg.ca.crl_file, crl_path, sizeof(crl_path)));
    ours = issue(d, "dev-c", NULL);
    kf_snapshot_holder_init(&h, load(d));
    first = kf_snapshot_get(&h);
    assert_non_null(first->crl);
    n0 = kf_crl_number(first->crl);
    v0 = first->version;
    KF_OK_OR_FAIL(kf_deploy_open(d->dir, &cli));

    /* `keyfleet ca crl`: a new CRL file, and no registry change. */
    KF_OK_OR_FAIL(kf_ca_publish_crl(cli, KF_TEST_ACTOR, NULL));
    assert_int_equal(store_version(d->store), v0);
    a = kf_snapshot_fresh(&h, d);
    assert_ptr_not_equal(a, first);
    assert_int_equal(a->version, v0);
    assert_int_equal(kf_crl_number(a->crl), n0 + 1);
    assert_int_equal(kf_crl_number(first->crl), n0);
    /* It is the holder's snapshot now, and the file is read once, not on every call. */
    c = kf_snapshot_get(&h);
    assert_ptr_equal(c, a);
    kf_snapshot_release(c);
    c = kf_snapshot_fresh(&h, d);
    assert_ptr_equal(c, a);
    kf_snapshot_release(c);

    /* A CRL of the issuing CA listing a serial the store does not know: the CRL is believed. */
    assert_false(kf_snapshot_cert_revoked(a, listed.serial_hex));
    KF_OK_OR_FAIL(kf_deploy_issuer(cli, &signer));
    listed.revoked_at = now - 60;
    KF_OK_OR_FAIL(kf_signer_crl(signer, &listed, 1, n0 + 10, now - 60, now + DAY, &crl));
    write_crl(d, crl);
    kf_crl_free(crl);
    b = kf_snapshot_fresh(&h, d);
    assert_ptr_not_equal(b, a);
    assert_int_equal(b->version, v0);
    assert_int_equal(kf_crl_number(b->crl), n0 + 10);
    assert_true(kf_snapshot_cert_revoked(b, "1234abcd"));
    assert_false(kf_snapshot_cert_revoked(a, "1234abcd"));
    KF_OK_OR_FAIL(verify(b->operational, ours, NULL, &res));
    kf_snapshot_release(a);

    /* A CRL someone else signed is not used: revocations come from the store only. */
    kf_test_pki_make(&stranger, KF_KEY_EC_P256);
    KF_OK_OR_FAIL(kf_crl_build(stranger.issuing, stranger.issuing_key, &listed, 1, n0 + 20,
                               now - 60, now + DAY, &crl));
    write_crl(d, crl);
    kf_crl_free(crl);
    c = kf_snapshot_fresh(&h, d);
    assert_ptr_not_equal(c, b);
    assert_null(c->crl);
    assert_false(kf_snapshot_cert_revoked(c, "1234abcd"));
    KF_OK_OR_FAIL(verify(c->operational, ours, NULL, &res));
    /* b, still held, keeps its CRL. */
    assert_true(kf_snapshot_cert_revoked(b, "1234abcd"));
    kf_snapshot_release(c);

    /* No CRL file at all: noticed once, and then no reload on every call. */
    assert_int_equal(unlink(crl_path), 0);
    c = kf_snapshot_fresh(&h, d);
    assert_null(c->crl);
    e = kf_snapshot_fresh(&h, d);
    assert_ptr_equal(e, c);
    assert_int_equal(e->generation, c->generation);
    kf_snapshot_release(e);
    kf_snapshot_release(c);

    kf_snapshot_release(b);
    kf_snapshot_release(first);
    kf_snapshot_holder_destroy(&h);
    kf_cert_free(ours);
    kf_test_pki_free(&stranger);
    kf_deploy_close(cli);
    kf_deploy_close(d);
}

/*
 * A store whose registry version went back (restored from an older copy, say): the snapshot
 * follows it once, and then takes the fast path again. (Before, a version below the snapshot's
 * was never "newer": every request took the reload lock and the snapshot stayed stale.)
 */
static void test_fresh_follows_a_version_that_went_back(void **state)
{
    struct kf_deploy *d = kf_test_deploy_make("fresh-back");
    struct kf_snapshot_holder h;
    struct kf_snapshot *a, *b, *c;
    struct kf_cert *cert;
    char path[KF_CONF_PATH_MAX];
    sqlite3 *db = NULL;
    (void)state;

    cert = issue(d, "dev-b", NULL);
    kf_cert_free(cert);
    kf_test_device_set_status(d->store, "dev-b", KF_DEVICE_DISABLED);
    kf_test_device_set_status(d->store, "dev-b", KF_DEVICE_ACTIVE);
    kf_test_device_set_status(d->store, "dev-b", KF_DEVICE_DISABLED);
    kf_snapshot_holder_init(&h, load(d));
    a = kf_snapshot_get(&h);
    assert_true(a->version >= 3);
    assert_int_equal(kf_snapshot_blocked(a, 0, "dev-b"), KF_DEVICE_DISABLED);

    /* The older copy: the device active, the counter where it stood then. */
    KF_OK_OR_FAIL(kf_deploy_path(d, d->cfg.store.url, path, sizeof(path)));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE devices SET status = 'active' WHERE id = 'dev-b';"
                                  "UPDATE meta SET value = 1 WHERE key = 'registry_version';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_version(d->store), 1);

    b = kf_snapshot_fresh(&h, d);
    assert_ptr_not_equal(b, a);
    assert_int_equal(b->version, 1);
    assert_int_equal(kf_snapshot_blocked(b, 0, "dev-b"), 0);
    /* and then the same snapshot, without a rebuild */
    c = kf_snapshot_fresh(&h, d);
    assert_ptr_equal(c, b);
    assert_int_equal(c->generation, b->generation);

    kf_snapshot_release(c);
    kf_snapshot_release(b);
    kf_snapshot_release(a);
    kf_snapshot_holder_destroy(&h);
    kf_deploy_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups_hubs_and_cas),
        cmocka_unit_test(test_trust_sets),
        cmocka_unit_test(test_blocked),
        cmocka_unit_test(test_cert_revoked),
        cmocka_unit_test(test_generations),
        cmocka_unit_test(test_holder_keeps_readers_snapshot),
        cmocka_unit_test(test_fresh_follows_another_handle),
        cmocka_unit_test(test_fresh_follows_the_crl_file),
        cmocka_unit_test(test_fresh_follows_a_version_that_went_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
