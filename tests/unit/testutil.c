#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];

static void cleanup(void)
{
    char cmd[600];
    if (!dir[0] || getenv("KF_TEST_KEEP")) return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

const char *kf_test_dir(void)
{
    const char *base;
    if (dir[0]) return dir;
    base = getenv("KF_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    snprintf(dir, sizeof(dir), "%s/kfunit-XXXXXX", base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
        abort();
    }
    atexit(cleanup);
    return dir;
}

const char *kf_test_path(const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 1024, "%s/%s", kf_test_dir(), name);
    return b;
}

#define STORE_NAME_MAX 48
#define STORES_MAX     128

const char *kf_test_store_url(const char *name)
{
    static struct {
        char name[STORE_NAME_MAX + 1];
        char url[1100];
    } stores[STORES_MAX];
    static int n_stores;
    const char *prefix = getenv("KF_TEST_STORE");
    char clean[STORE_NAME_MAX + 1];
    size_t len = name ? strlen(name) : 0;
    int n;

    if (len < 1 || len > STORE_NAME_MAX)
        fail_msg("store name \"%s\" is not 1 to %d characters", name ? name : "(null)",
                 STORE_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        int keep = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9');
        clean[i] = keep ? name[i] : '_';
    }
    clean[len] = '\0';
    for (int i = 0; i < n_stores; i++)
        if (strcmp(stores[i].name, clean) == 0)
            fail_msg("store name \"%s\" is asked for twice: two tests would share a store", clean);
    if (n_stores == STORES_MAX) fail_msg("more than %d stores in one test program", STORES_MAX);
    if (prefix && *prefix)
        n = snprintf(stores[n_stores].url, sizeof(stores[n_stores].url), "%s%s", prefix, clean);
    else
        n = snprintf(stores[n_stores].url, sizeof(stores[n_stores].url), "sqlite:%s",
                     kf_test_path(clean));
    if (n < 0 || (size_t)n >= sizeof(stores[n_stores].url))
        fail_msg("the URL of store \"%s\" is too long", clean);
    snprintf(stores[n_stores].name, sizeof(stores[n_stores].name), "%s", clean);
    return stores[n_stores++].url;
}

void kf_test_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

char *kf_test_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) fail_msg("cannot read %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) fail_msg("cannot read %s", path);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

int kf_test_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    int st;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    st = system(cmd);
    if (st == -1) fail_msg("cannot run: %s", cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* ---- a small PKI for tests ---- */
#include <time.h>

#include "common/buf.h"

void kf_test_pki_make(struct kf_test_pki *p, enum kf_key_type type)
{
    time_t now = time(NULL);
    struct kf_cert_template t = {0};
    memset(p, 0, sizeof(*p));
    KF_OK_OR_FAIL(kf_key_generate(type, &p->root_key));
    KF_OK_OR_FAIL(kf_key_generate(type, &p->issuing_key));
    t.profile = KF_PROFILE_ROOT_CA;
    t.cn = "Test Root CA";
    t.org = "keyfleet tests";
    t.key = p->root_key;
    t.not_before = now - 3600;
    t.not_after = now + 10L * 365 * 86400;
    KF_OK_OR_FAIL(kf_cert_build(&t, NULL, p->root_key, &p->root));
    t.profile = KF_PROFILE_ISSUING_CA;
    t.cn = "Test Issuing CA";
    t.key = p->issuing_key;
    KF_OK_OR_FAIL(kf_cert_build(&t, p->root, p->root_key, &p->issuing));
}

void kf_test_pki_free(struct kf_test_pki *p)
{
    kf_key_free(p->root_key);
    kf_key_free(p->issuing_key);
    kf_cert_free(p->root);
    kf_cert_free(p->issuing);
    memset(p, 0, sizeof(*p));
}

struct kf_cert *kf_test_issue(struct kf_test_pki *p, enum kf_profile profile, const char *id,
                              time_t nb, time_t na, struct kf_key **key)
{
    struct kf_cert_template t = {0};
    struct kf_key *k = NULL;
    struct kf_cert *c = NULL;
    time_t now = time(NULL);
    static const char *const dns[] = {"localhost", "hub.example.com"};
    static const char *const ips[] = {"127.0.0.1", "::1"};

    KF_OK_OR_FAIL(kf_key_generate(KF_KEY_EC_P256, &k));
    t.profile = profile;
    t.cn = id;
    t.key = k;
    t.not_before = nb || na ? nb : now - 3600;
    t.not_after = nb || na ? na : now + 30L * 86400;
    t.device_id = id;
    t.service = id;
    t.role = "reader";
    t.dns_names = dns;
    t.n_dns = 2;
    t.ip_addrs = ips;
    t.n_ips = 2;
    KF_OK_OR_FAIL(kf_cert_build(&t, p->issuing, p->issuing_key, &c));
    if (key)
        *key = k;
    else
        kf_key_free(k);
    return c;
}

void kf_test_save_cert(const struct kf_cert *c, const char *path)
{
    struct kf_buf b;
    kf_buf_init(&b, 1 << 20);
    KF_OK_OR_FAIL(kf_cert_pem(c, &b));
    kf_test_write(path, kf_buf_str(&b));
    kf_buf_free(&b);
}
