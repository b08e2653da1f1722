/*
 * keyfleet-release: the vendor's offline tool for signed updates (TUF 1.0).
 *
 * The root and targets keys are the vendor's: they are made, kept and used here, on the key
 * holders' own machines, and never reach keyfleetd. This program has no deployment, no store
 * and no network: it reads and writes files. Each key holder signs the same metadata file;
 * `combine` joins their signatures; keyfleetd (`keyfleet release add`) checks them against the
 * root before it publishes anything.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/buffer.h>
#include <openssl/pem.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/pki_key.h"
#include "common/tuf.h"

#define EXIT_USAGE 2
#define FILE_MAX   (4u << 20)
#define IMAGE_MAX  (64ull << 30)
#define KEYS_MAX   16
#define DAY        86400L

static const char usage_text[] =
    "usage: keyfleet-release COMMAND [OPTIONS]\n"
    "\n"
    "The vendor's offline tool for keyfleet's signed updates (TUF 1.0). Root and targets keys\n"
    "are made and used here and never reach the server.\n"
    "\n"
    "  keygen --out KEY [--type ed25519|p256] [--passphrase-file F | --no-passphrase]\n"
    "      a new key: KEY (PKCS#8, encrypted with the passphrase, mode 0600) and KEY.pub;\n"
    "      prints its key id\n"
    "  init-root --out FILE --root PUB... --root-threshold N --targets PUB...\n"
    "            --targets-threshold N --timestamp PUB --snapshot PUB [--version N]\n"
    "            [--expires DAYS]\n"
    "      root metadata, unsigned (PUB: a KEY.pub file, or a key object file such as\n"
    "      `keyfleet release keys` prints for the server's online keys). A new version of the\n"
    "      root (a rotation) must then be signed by a threshold of the old root's keys and of\n"
    "      its own\n"
    "  targets --out FILE [--from FILE] [--image PATH --name NAME --hardware ID --version N]\n"
    "          [--remove NAME]... [--expires DAYS]\n"
    "      targets metadata, unsigned: the targets of --from (its version + 1) and the image\n"
    "      (length, sha256, sha512, hardware id, version), without the targets --remove names\n"
    "      (a release withdrawn); --from alone renews them\n"
    "  sign --key KEY [--passphrase-file F] FILE...\n"
    "      adds KEY's signature to each metadata file, in place. KEY is a key file, or a key\n"
    "      in a PKCS#11 token (pkcs11:token=T;object=O;type=private, RFC 7512, P-256; the\n"
    "      module and PIN from KEYFLEET_PKCS11_MODULE and KEYFLEET_PKCS11_PIN, or the URI)\n"
    "  pub --key KEY --out PUB\n"
    "      the public half of KEY (a key file or a PKCS#11 token key) as PUB, for init-root;\n"
    "      prints its key id\n"
    "  combine --out FILE FILE...\n"
    "      one file with the signatures of copies signed apart (their signed parts must be the\n"
    "      same)\n"
    "  verify --root ROOT FILE...\n"
    "      whether each file is signed by a threshold of its role's keys in ROOT\n"
    "\n"
    "The passphrase: the first line of --passphrase-file, or KEYFLEET_RELEASE_PASSPHRASE.\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage error.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "keyfleet-release: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(keyfleet-release --help for the commands)\n");
    return EXIT_USAGE;
}

static int fail(void)
{
    fprintf(stderr, "keyfleet-release: %s\n", kf_errmsg());
    return 1;
}

/* A whole number for option `name` from `lo` to `hi`; -1 after a usage error. */
static long number(const char *name, const char *text, long lo, long hi)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "keyfleet-release: --%s must be a whole number from %ld to %ld\n", name, lo,
                hi);
        return -1;
    }
    return v;
}

/* ---- passphrases and keys ---- */

struct pass {
    char text[1024];
    int set;
};

static enum kf_err pass_read(struct pass *p, const char *file)
{
    const char *env = getenv("KEYFLEET_RELEASE_PASSPHRASE");
    memset(p, 0, sizeof(*p));
    if (file) {
        struct kf_buf b;
        enum kf_err rc;
        size_t n;
        kf_buf_init_secret(&b, sizeof(p->text) + 2);
        rc = kf_buf_read_file(&b, file);
        if (rc) {
            kf_buf_free(&b);
            return kf_wrap(rc, "the passphrase file");
        }
        n = strcspn(kf_buf_str(&b), "\r\n");
        if (n >= sizeof(p->text)) {
            kf_buf_free(&b);
            return kf_fail(KF_E_INVALID, "the passphrase is longer than %zu", sizeof(p->text) - 1);
        }
        memcpy(p->text, b.data, n);
        kf_buf_free(&b);
        p->set = 1;
    } else if (env) {
        snprintf(p->text, sizeof(p->text), "%s", env);
        p->set = 1;
    }
    if (p->set && !p->text[0]) return kf_fail(KF_E_INVALID, "the passphrase is empty");
    return KF_OK;
}

static void pass_wipe(struct pass *p)
{
    OPENSSL_cleanse(p, sizeof(*p));
}

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    struct pass *p = u;
    int n = (int)strlen(p->text);
    (void)rwflag;
    if (!p->set || n > size) return -1;
    memcpy(buf, p->text, (size_t)n);
    return n;
}

static enum kf_err key_load(const char *path, struct pass *p, EVP_PKEY **out)
{
    FILE *f = fopen(path, "r");
    if (!f) return kf_fail(KF_E_NOT_FOUND, "cannot open key %s: %s", path, strerror(errno));
    *out = PEM_read_PrivateKey(f, NULL, pass_cb, p);
    fclose(f);
    if (!*out)
        return kf_fail(KF_E_DENIED,
                       "cannot read key %s: not a PEM private key, or the passphrase is wrong "
                       "(--passphrase-file or KEYFLEET_RELEASE_PASSPHRASE)",
                       path);
    return KF_OK;
}

/* A public key object from a KEY.pub PEM file or a TUF key object file. */
static enum kf_err pub_load(const char *path, json_t **key, char keyid[KF_TUF_KEYID_HEX])
{
    struct kf_buf b;
    enum kf_err rc;
    kf_buf_init(&b, 64 * 1024);
    rc = kf_buf_read_file(&b, path);
    if (rc) {
        kf_buf_free(&b);
        return kf_wrap(rc, "public key %s", path);
    }
    if (b.len && b.data[0] == '{') {
        json_error_t e;
        *key = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &e);
        kf_buf_free(&b);
        if (!*key) return kf_fail(KF_E_INVALID, "%s: not JSON (%s)", path, e.text);
        if (!json_is_object(json_object_get(*key, "keyval")))
            rc = kf_fail(KF_E_INVALID, "%s: not a TUF key object", path);
        if (!rc) rc = kf_tuf_keyid(*key, keyid);
        return rc;
    } else {
        BIO *bio = BIO_new_mem_buf(b.data, (int)b.len);
        EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        kf_buf_free(&b);
        if (!pk) return kf_fail(KF_E_INVALID, "%s: not a PEM public key", path);
        rc = kf_tuf_key_of(pk, key, keyid);
        EVP_PKEY_free(pk);
        return rc ? kf_wrap(rc, "%s", path) : KF_OK;
    }
}

/* ---- files ---- */

static enum kf_err doc_load(const char *path, json_t **doc)
{
    struct kf_buf b;
    json_error_t e;
    enum kf_err rc;
    kf_buf_init(&b, FILE_MAX);
    rc = kf_buf_read_file(&b, path);
    if (!rc) {
        *doc = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &e);
        if (!*doc || !json_is_object(json_object_get(*doc, "signed")) ||
            !json_is_array(json_object_get(*doc, "signatures"))) {
            json_decref(*doc);
            *doc = NULL;
            rc = kf_fail(KF_E_INVALID, "%s: not TUF metadata", path);
        }
    }
    kf_buf_free(&b);
    return rc;
}

static enum kf_err doc_write(const char *path, const json_t *doc, int replace)
{
    struct kf_buf b;
    enum kf_err rc;
    kf_buf_init(&b, FILE_MAX);
    rc = kf_tuf_text(doc, &b);
    if (!rc) rc = kf_file_write(path, b.data, b.len, 0644, replace ? KF_FILE_REPLACE : 0);
    kf_buf_free(&b);
    return rc;
}

static json_t *metadata(const char *type, long version, long days)
{
    char when[32];
    kf_tuf_time(time(NULL) + days * DAY, when, sizeof(when));
    return json_pack("{s:{s:s, s:s, s:i, s:s}, s:[]}", "signed", "_type", type, "spec_version",
                     KF_TUF_SPEC_VERSION, "version", (json_int_t)version, "expires", when,
                     "signatures");
}

/* ---- commands ---- */

static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"out", 1, 0, 'o'},
                                         {"type", 1, 0, 't'},
                                         {"passphrase-file", 1, 0, 'p'},
                                         {"no-passphrase", 0, 0, 'n'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *type = "ed25519", *pfile = NULL;
    char pubpath[4096], keyid[KF_TUF_KEYID_HEX];
    int nopass = 0, c, rcode = 1;
    EVP_PKEY *pk = NULL;
    struct pass p;
    BIO *priv = NULL, *pub = NULL;
    json_t *key = NULL;
    char *data;
    long n;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 't')
            type = optarg;
        else if (c == 'p')
            pfile = optarg;
        else if (c == 'n')
            nopass = 1;
        else
            return usage_error("%s: unknown option", argv[optind - 1]);
    }
    if (!out) return usage_error("%s needs --out KEY", "keygen");
    if (strcmp(type, "ed25519") != 0 && strcmp(type, "p256") != 0)
        return usage_error("--type %s: ed25519 or p256", type);
    if (kf_file_exists(out)) {
        fprintf(stderr, "keyfleet-release: %s exists: a key is never overwritten\n", out);
        return 1;
    }
    if (pass_read(&p, pfile)) return fail();
    if (!p.set && !nopass) {
        pass_wipe(&p);
        return usage_error("%s: a key is kept encrypted: --passphrase-file F, "
                           "KEYFLEET_RELEASE_PASSPHRASE, or --no-passphrase to keep it in clear",
                           "keygen");
    }
    pk = strcmp(type, "p256") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                   : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    priv = BIO_new(BIO_s_secmem());
    pub = BIO_new(BIO_s_mem());
    snprintf(pubpath, sizeof(pubpath), "%s.pub", out);
    if (!pk || !priv || !pub ||
        PEM_write_bio_PKCS8PrivateKey(priv, pk, p.set ? EVP_aes_256_cbc() : NULL,
                                      p.set ? p.text : NULL, p.set ? (int)strlen(p.text) : 0, NULL,
                                      NULL) != 1 ||
        PEM_write_bio_PUBKEY(pub, pk) != 1) {
        kf_fail(KF_E_CRYPTO, "cannot make the key");
        goto done;
    }
    n = BIO_get_mem_data(priv, &data);
    if (kf_file_write(out, data, (size_t)n, 0600, 0)) goto done;
    n = BIO_get_mem_data(pub, &data);
    if (kf_file_write(pubpath, data, (size_t)n, 0644, KF_FILE_REPLACE)) goto done;
    if (kf_tuf_key_of(pk, &key, keyid)) goto done;
    printf("%s  %s (%s)\n", keyid, out, type);
    rcode = 0;
done:
    if (rcode) fail();
    pass_wipe(&p);
    json_decref(key);
    EVP_PKEY_free(pk);
    BIO_free(priv);
    BIO_free(pub);
    return rcode;
}

/* Adds the keys in files `paths` to `keys` and their ids to `ids`. */
static enum kf_err add_keys(json_t *keys, json_t *ids, char **paths, int n)
{
    for (int i = 0; i < n; i++) {
        char keyid[KF_TUF_KEYID_HEX];
        json_t *key = NULL;
        enum kf_err rc = pub_load(paths[i], &key, keyid);
        if (rc) return rc;
        for (size_t j = 0; j < json_array_size(ids); j++)
            if (strcmp(json_string_value(json_array_get(ids, j)), keyid) == 0) {
                json_decref(key);
                return kf_fail(KF_E_INVALID, "%s: the same key is given twice for one role",
                               paths[i]);
            }
        json_object_set_new(keys, keyid, key);
        json_array_append_new(ids, json_string(keyid));
    }
    return KF_OK;
}

static int cmd_init_root(int argc, char **argv)
{
    static const struct option opts[] = {{"out", 1, 0, 'o'},
                                         {"root", 1, 0, 'r'},
                                         {"root-threshold", 1, 0, 'R'},
                                         {"targets", 1, 0, 't'},
                                         {"targets-threshold", 1, 0, 'T'},
                                         {"timestamp", 1, 0, 's'},
                                         {"snapshot", 1, 0, 'n'},
                                         {"version", 1, 0, 'v'},
                                         {"expires", 1, 0, 'e'},
                                         {0, 0, 0, 0}};
    static const char *const roles[] = {"root", "targets", "timestamp", "snapshot"};
    char *keyfiles[4][KEYS_MAX];
    int nkeys[4] = {0, 0, 0, 0}, c, at;
    long th[4] = {0, 0, 1, 1}, version = 1, days = 365;
    const char *out = NULL;
    json_t *doc, *keys, *rl;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'r':
        case 't':
        case 's':
        case 'n':
            at = c == 'r' ? 0 : c == 't' ? 1 : c == 's' ? 2 : 3;
            if (nkeys[at] >= KEYS_MAX) return usage_error("at most 16 keys for %s", roles[at]);
            keyfiles[at][nkeys[at]++] = optarg;
            break;
        case 'R':
            if ((th[0] = number("root-threshold", optarg, 1, KEYS_MAX)) < 0) return EXIT_USAGE;
            break;
        case 'T':
            if ((th[1] = number("targets-threshold", optarg, 1, KEYS_MAX)) < 0) return EXIT_USAGE;
            break;
        case 'v':
            if ((version = number("version", optarg, 1, 1000000)) < 0) return EXIT_USAGE;
            break;
        case 'e':
            if ((days = number("expires", optarg, 1, 3650)) < 0) return EXIT_USAGE;
            break;
        default: return usage_error("%s: unknown option", argv[optind - 1]);
        }
    }
    if (!out) return usage_error("%s needs --out FILE", "init-root");
    for (int i = 0; i < 4; i++) {
        if (!nkeys[i]) return usage_error("init-root needs --%s KEY.pub", roles[i]);
        if (!th[i]) return usage_error("init-root needs --%s-threshold N", roles[i]);
        if (th[i] > nkeys[i]) {
            fprintf(stderr, "keyfleet-release: --%s-threshold %ld is more than its %d keys\n",
                    roles[i], th[i], nkeys[i]);
            return EXIT_USAGE;
        }
    }
    doc = metadata("root", version, days);
    keys = json_object();
    rl = json_object();
    for (int i = 0; i < 4; i++) {
        json_t *ids = json_array();
        if (add_keys(keys, ids, keyfiles[i], nkeys[i])) {
            json_decref(ids);
            json_decref(keys);
            json_decref(rl);
            json_decref(doc);
            return fail();
        }
        json_object_set_new(rl, roles[i],
                            json_pack("{s:o, s:I}", "keyids", ids, "threshold", (json_int_t)th[i]));
    }
    json_object_set_new(json_object_get(doc, "signed"), "keys", keys);
    json_object_set_new(json_object_get(doc, "signed"), "roles", rl);
    json_object_set_new(json_object_get(doc, "signed"), "consistent_snapshot", json_true());
    if (doc_write(out, doc, 0)) {
        json_decref(doc);
        return fail();
    }
    json_decref(doc);
    printf(
        "%s: root version %ld, unsigned: each root key holder signs it (keyfleet-release sign)\n",
        out, version);
    return 0;
}

/* The hex SHA-256 and SHA-512 and length of file `path`, read in pieces. */
static enum kf_err hash_file(const char *path, char *h256, char *h512, uint64_t *len)
{
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *a = EVP_MD_CTX_new(), *b = EVP_MD_CTX_new();
    unsigned char buf[65536], d[64];
    unsigned n = 0;
    size_t got;
    enum kf_err rc = KF_OK;
    *len = 0;
    if (!f) rc = kf_fail(KF_E_NOT_FOUND, "cannot open image %s: %s", path, strerror(errno));
    if (!rc && (!a || !b || EVP_DigestInit_ex(a, EVP_sha256(), NULL) != 1 ||
                EVP_DigestInit_ex(b, EVP_sha512(), NULL) != 1))
        rc = kf_fail(KF_E_CRYPTO, "cannot hash");
    while (!rc && (got = fread(buf, 1, sizeof(buf), f)) > 0) {
        *len += got;
        if (*len > IMAGE_MAX) rc = kf_fail(KF_E_OVERSIZE, "%s is larger than 64 GiB", path);
        EVP_DigestUpdate(a, buf, got);
        EVP_DigestUpdate(b, buf, got);
    }
    if (!rc && ferror(f)) rc = kf_fail(KF_E_IO, "cannot read %s", path);
    if (!rc) {
        EVP_DigestFinal_ex(a, d, &n);
        kf_tuf_hex(d, n, h256);
        EVP_DigestFinal_ex(b, d, &n);
        kf_tuf_hex(d, n, h512);
    }
    if (f) fclose(f);
    EVP_MD_CTX_free(a);
    EVP_MD_CTX_free(b);
    return rc;
}

static int cmd_targets(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", 1, 0, 'o'},     {"from", 1, 0, 'f'},     {"image", 1, 0, 'i'},
        {"name", 1, 0, 'n'},    {"hardware", 1, 0, 'w'}, {"version", 1, 0, 'v'},
        {"expires", 1, 0, 'e'}, {"remove", 1, 0, 'r'},   {0, 0, 0, 0}};
    const char *out = NULL, *from = NULL, *image = NULL, *name = NULL, *hw = NULL;
    const char *removes[64];
    size_t n_removes = 0;
    long version = -1, days = 90, c, mdv = 1;
    char h256[129], h512[129];
    uint64_t len;
    json_t *doc, *targets;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': from = optarg; break;
        case 'i': image = optarg; break;
        case 'n': name = optarg; break;
        case 'w': hw = optarg; break;
        case 'v':
            if ((version = number("version", optarg, 0, 2000000000)) < 0) return EXIT_USAGE;
            break;
        case 'e':
            if ((days = number("expires", optarg, 1, 3650)) < 0) return EXIT_USAGE;
            break;
        case 'r':
            if (n_removes == sizeof(removes) / sizeof(removes[0]))
                return usage_error("at most %zu --remove", n_removes);
            removes[n_removes++] = optarg;
            break;
        default: return usage_error("%s: unknown option", argv[optind - 1]);
        }
    }
    if (!out) return usage_error("%s needs --out FILE", "targets");
    if (n_removes && !from) return usage_error("%s --remove needs --from", "targets");
    if (!image && !from)
        return usage_error("%s needs --image (or --from alone, to sign the same targets again)",
                           "targets");
    if (image && (!name || !hw || version < 0))
        return usage_error("%s --image needs --name, --hardware and --version", "targets");
    if (image && !kf_tuf_name_ok(name))
        return usage_error("--name %s: a relative path of letters, digits and ._-+/", name);
    if (image && (!hw[0] || strlen(hw) > 64))
        return usage_error("--hardware %s: 1 to 64 characters", hw);
    if (image && hash_file(image, h256, h512, &len)) return fail();
    if (from) {
        json_t *old = NULL;
        if (doc_load(from, &old)) return fail();
        const char *type =
            json_string_value(json_object_get(json_object_get(old, "signed"), "_type"));
        if (!type || strcmp(type, "targets") != 0) {
            json_decref(old);
            fprintf(stderr, "keyfleet-release: %s is not targets metadata\n", from);
            return 1;
        }
        mdv = (long)json_integer_value(json_object_get(json_object_get(old, "signed"), "version")) +
              1;
        targets = json_deep_copy(json_object_get(json_object_get(old, "signed"), "targets"));
        json_decref(old);
    } else {
        targets = json_object();
    }
    if (!json_is_object(targets)) {
        json_decref(targets);
        fprintf(stderr, "keyfleet-release: %s has no targets\n", from);
        return 1;
    }
    for (size_t i = 0; i < n_removes; i++) {
        if (!json_object_get(targets, removes[i])) {
            json_decref(targets);
            fprintf(stderr, "keyfleet-release: %s has no target %s to remove\n", from, removes[i]);
            return 1;
        }
        json_object_del(targets, removes[i]);
    }
    if (image)
        json_object_set_new(targets, name,
                            json_pack("{s:I, s:{s:s, s:s}, s:{s:s, s:I}}", "length",
                                      (json_int_t)len, "hashes", "sha256", h256, "sha512", h512,
                                      "custom", "hardware", hw, "version", (json_int_t)version));
    doc = metadata("targets", mdv, days);
    json_object_set_new(json_object_get(doc, "signed"), "targets", targets);
    if (doc_write(out, doc, 0)) {
        json_decref(doc);
        return fail();
    }
    json_decref(doc);
    if (image)
        printf("%s: targets version %ld with %s (%llu bytes, hardware %s, version %ld), "
               "unsigned\n",
               out, mdv, name, (unsigned long long)len, hw, version);
    else if (n_removes)
        printf("%s: targets version %ld without %zu target%s, unsigned\n", out, mdv, n_removes,
               n_removes == 1 ? "" : "s");
    else
        printf("%s: targets version %ld, the same targets, unsigned\n", out, mdv);
    return 0;
}

/*
 * A signing key: a PEM key file (EVP_PKEY) or a key in a PKCS#11 token (struct kf_key, through
 * the libp11 engine), with its TUF key object and key id.
 */
struct signer {
    EVP_PKEY *pk;       /* a file's */
    struct kf_key *tok; /* a token's */
    json_t *kobj;
    char keyid[KF_TUF_KEYID_HEX];
};

static void signer_free(struct signer *g)
{
    EVP_PKEY_free(g->pk);
    kf_key_free(g->tok);
    json_decref(g->kobj);
    memset(g, 0, sizeof(*g));
}

static enum kf_err signer_open(const char *uri, const char *pfile, struct signer *g)
{
    enum kf_err rc;
    memset(g, 0, sizeof(*g));
    if (strncmp(uri, "pkcs11:", 7) == 0) {
        struct kf_buf pem;
        BIO *bio;
        rc = kf_key_load(uri, NULL, &g->tok);
        if (rc) return rc;
        if (kf_key_type(g->tok) != KF_KEY_EC_P256 && kf_key_type(g->tok) != KF_KEY_ED25519)
            return kf_fail(KF_E_INVALID, "the token key is %s: TUF keys are P-256 or ed25519",
                           kf_key_type_name(kf_key_type(g->tok)));
        kf_buf_init(&pem, 16384);
        rc = kf_key_public_pem(g->tok, &pem);
        bio = rc ? NULL : BIO_new_mem_buf(pem.data, (int)pem.len);
        g->pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        kf_buf_free(&pem);
        if (!rc && !g->pk) rc = kf_fail(KF_E_CRYPTO, "cannot read the token key's public half");
    } else {
        struct pass p;
        rc = pass_read(&p, pfile);
        if (!rc) rc = key_load(uri, &p, &g->pk);
        pass_wipe(&p);
    }
    if (!rc) rc = kf_tuf_key_of(g->pk, &g->kobj, g->keyid);
    return rc;
}

static enum kf_err signer_sign(struct signer *g, json_t *doc)
{
    return g->tok ? kf_tuf_sign_with(doc, g->keyid, kf_tuf_sign_key, g->tok)
                  : kf_tuf_sign(doc, g->pk);
}

static int cmd_pub(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key", 1, 0, 'k'}, {"out", 1, 0, 'o'}, {"passphrase-file", 1, 0, 'p'}, {0, 0, 0, 0}};
    const char *keypath = NULL, *out = NULL, *pfile = NULL;
    struct signer g;
    struct kf_buf pem;
    BIO *bio;
    BUF_MEM *mem = NULL;
    int c, ok;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'k')
            keypath = optarg;
        else if (c == 'o')
            out = optarg;
        else if (c == 'p')
            pfile = optarg;
        else
            return usage_error("%s: unknown option", argv[optind - 1]);
    }
    if (!keypath || !out || optind != argc)
        return usage_error("%s needs --key KEY --out PUB", "pub");
    if (signer_open(keypath, pfile, &g)) {
        signer_free(&g);
        return fail();
    }
    bio = BIO_new(BIO_s_mem());
    ok = bio && PEM_write_bio_PUBKEY(bio, g.pk) == 1 && BIO_get_mem_ptr(bio, &mem) == 1;
    kf_buf_init(&pem, 16384);
    if (!ok || kf_buf_append(&pem, mem->data, mem->length) ||
        kf_file_write(out, pem.data, pem.len, 0644, 0)) {
        if (!ok) kf_fail(KF_E_CRYPTO, "cannot write the public key");
        BIO_free(bio);
        kf_buf_free(&pem);
        signer_free(&g);
        return fail();
    }
    BIO_free(bio);
    kf_buf_free(&pem);
    printf("%s: public key %s\n", out, g.keyid);
    signer_free(&g);
    return 0;
}

static int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key", 1, 0, 'k'}, {"passphrase-file", 1, 0, 'p'}, {0, 0, 0, 0}};
    const char *keypath = NULL, *pfile = NULL;
    struct signer g;
    int c, rcode = 0;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'k')
            keypath = optarg;
        else if (c == 'p')
            pfile = optarg;
        else
            return usage_error("%s: unknown option", argv[optind - 1]);
    }
    if (!keypath || optind >= argc) return usage_error("%s needs --key KEY and FILE...", "sign");
    if (signer_open(keypath, pfile, &g)) {
        signer_free(&g);
        return fail();
    }
    for (int i = optind; i < argc; i++) {
        json_t *doc = NULL;
        if (doc_load(argv[i], &doc) || signer_sign(&g, doc) || doc_write(argv[i], doc, 1)) {
            fail();
            rcode = 1;
        } else {
            printf("%s: signed by %s\n", argv[i], g.keyid);
        }
        json_decref(doc);
    }
    signer_free(&g);
    return rcode;
}

static int cmd_combine(int argc, char **argv)
{
    static const struct option opts[] = {{"out", 1, 0, 'o'}, {0, 0, 0, 0}};
    const char *out = NULL;
    json_t *doc = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else
            return usage_error("%s: unknown option", argv[optind - 1]);
    }
    if (!out || argc - optind < 2)
        return usage_error("%s needs --out FILE and two FILEs or more", "combine");
    for (int i = optind; i < argc; i++) {
        json_t *d = NULL, *s;
        size_t j;
        if (doc_load(argv[i], &d)) {
            json_decref(doc);
            return fail();
        }
        if (!doc) {
            doc = d;
            continue;
        }
        if (!json_equal(json_object_get(doc, "signed"), json_object_get(d, "signed"))) {
            fprintf(stderr,
                    "keyfleet-release: %s signs other contents than %s: only copies of one file "
                    "combine\n",
                    argv[i], argv[optind]);
            json_decref(d);
            json_decref(doc);
            return 1;
        }
        json_array_foreach(json_object_get(d, "signatures"), j, s)
        {
            json_t *all = json_object_get(doc, "signatures"), *have;
            size_t k;
            int dup = 0;
            json_array_foreach(all, k, have) dup |=
                json_equal(json_object_get(have, "keyid"), json_object_get(s, "keyid"));
            if (!dup) json_array_append(all, s);
        }
        json_decref(d);
    }
    if (doc_write(out, doc, 0)) {
        json_decref(doc);
        return fail();
    }
    printf("%s: %zu signatures\n", out, json_array_size(json_object_get(doc, "signatures")));
    json_decref(doc);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {{"root", 1, 0, 'r'}, {0, 0, 0, 0}};
    const char *root = NULL;
    struct kf_buf rb;
    int c, rcode = 0;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r')
            root = optarg;
        else
            return usage_error("%s: unknown option", argv[optind - 1]);
    }
    if (!root || optind >= argc) return usage_error("%s needs --root ROOT and FILE...", "verify");
    kf_buf_init(&rb, FILE_MAX);
    if (kf_buf_read_file(&rb, root)) {
        kf_buf_free(&rb);
        return fail();
    }
    for (int i = optind; i < argc; i++) {
        struct kf_buf b;
        json_t *doc = NULL;
        const char *type;
        enum kf_tuf_role role = KF_TUF_ROLES;
        int64_t version = 0;
        enum kf_tuf_refusal v;
        kf_buf_init(&b, FILE_MAX);
        if (kf_buf_read_file(&b, argv[i]) || doc_load(argv[i], &doc)) {
            fail();
            rcode = 1;
            kf_buf_free(&b);
            continue;
        }
        type = json_string_value(json_object_get(json_object_get(doc, "signed"), "_type"));
        for (int r = 0; type && r < KF_TUF_ROLES; r++)
            if (strcmp(type, kf_tuf_role_name((enum kf_tuf_role)r)) == 0)
                role = (enum kf_tuf_role)r;
        json_decref(doc);
        if (role == KF_TUF_ROLES) {
            fprintf(stderr, "keyfleet-release: %s: not root, timestamp, snapshot or targets\n",
                    argv[i]);
            rcode = 1;
        } else if ((v = kf_tuf_verify_role(rb.data, rb.len, role, b.data, b.len, &version))) {
            fprintf(stderr, "keyfleet-release: %s: refused (%s): %s\n", argv[i],
                    kf_tuf_refusal_name(v), kf_errmsg());
            rcode = 1;
        } else {
            printf("%s: %s version %lld, signed by a threshold of its keys\n", argv[i],
                   kf_tuf_role_name(role), (long long)version);
        }
        kf_buf_free(&b);
    }
    kf_buf_free(&rb);
    return rcode;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"keygen", cmd_keygen}, {"init-root", cmd_init_root}, {"targets", cmd_targets},
                {"sign", cmd_sign},     {"combine", cmd_combine},     {"verify", cmd_verify},
                {"pub", cmd_pub}};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(argv[1], cmds[i].name) == 0) {
            for (int j = 2; j < argc; j++)
                if (strcmp(argv[j], "--help") == 0) {
                    fputs(usage_text, stdout);
                    return 0;
                }
            return cmds[i].fn(argc - 1, argv + 1);
        }
    return usage_error("unknown command '%s'", argv[1]);
}
