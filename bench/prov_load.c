/*
 * prov_load: a load generator for keyfleetd's provisioning. Before the clock starts it makes N
 * factory identities under a group CA (a key and a certificate each, CN = registration id) and,
 * for each, the CSR of a new operational key. Then it runs them through the whole flow: a fresh
 * TCP connection and a full TLS handshake with the factory certificate (the server verified
 * against the deployment's root and its IP SAN, as a device would), the request, and the
 * certificate back. Nothing is resumed or reused between devices.
 *
 *   prov_load --connect HOST:PORT --cacert ROOT --ca FACTORY.pem --ca-key FACTORY.key
 *             [--devices N] [--concurrency C] [--rate R] [--threads T] [--api register|est]
 *             [--prefix P]
 *
 * Closed loop by default: C devices in flight at all times, each slot starting the next device
 * as soon as its last one is answered. With --rate R, an open loop: devices arrive at R per
 * second whatever the server does (a fleet powering on), at most C in flight; a device that
 * arrives when C are in flight waits, and its wait counts in its latency.
 *
 * Latency is from the device's arrival to the whole answer. Prints one line:
 *   devices=N ok=N failed=0 seconds=.. enrollments_per_s=.. p50_ms=.. p99_ms=.. max_ms=..
 * and, when some failed, how (HTTP status, or connect/tls/read errors). Exit 1 if any failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define RESP_MAX (64 * 1024)

struct device {
    EVP_PKEY *key; /* factory key */
    X509 *cert;    /* factory certificate */
    char *req;     /* the whole HTTP request */
    size_t req_len;
    double arrive; /* when it turned up (open loop), or when its slot took it */
    double latency;
    int status; /* HTTP status; 0 when it never got one */
    const char *error;
};

enum state { S_IDLE, S_CONNECT, S_HANDSHAKE, S_WRITE, S_READ };

struct slot {
    enum state st;
    int fd;
    SSL *ssl;
    struct device *dev;
    size_t woff;
    char resp[RESP_MAX];
    size_t rlen;
};

struct opts {
    const char *connect, *cacert, *ca, *ca_key, *api, *prefix;
    long devices, concurrency, threads;
    double rate;
};

static struct opts o = {NULL, NULL, NULL, NULL, "register", "load", 1000, 64, 1, 0};
static struct sockaddr_in target;
static char target_host[64];
static struct device *devs;
static SSL_CTX *ctx;
static double t_start;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "prov_load: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}

/* ---- the devices, made before the clock starts ---- */

static EVP_PKEY *factory_ca_key;
static X509 *factory_ca;

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!x) die("cannot read a certificate");
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!k) die("cannot read a key");
    return k;
}

static void random_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn;
    RAND_bytes(b, sizeof(b));
    b[0] &= 0x7f;
    bn = BN_bin2bn(b, sizeof(b), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
}

/* Appends `s` to `out` as the inside of a JSON string. */
static size_t json_escape(char *out, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = s[i];
        }
    }
    return n;
}

static void make_device(long i)
{
    struct device *d = &devs[i];
    char cn[64];
    EVP_PKEY *op;
    X509_REQ *req;
    X509_NAME *name;
    BIO *bio;
    char *data, *body;
    long len;
    size_t blen = 0;

    snprintf(cn, sizeof(cn), "%s-%ld", o.prefix, i);
    d->key = EVP_EC_gen("P-256");
    op = EVP_EC_gen("P-256");
    d->cert = X509_new();
    req = X509_REQ_new();
    if (!d->key || !op || !d->cert || !req) die("out of memory making devices");
    /* The factory certificate. */
    X509_set_version(d->cert, 2);
    random_serial(d->cert);
    name = X509_get_subject_name(d->cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(d->cert, X509_get_subject_name(factory_ca));
    X509_gmtime_adj(X509_getm_notBefore(d->cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(d->cert), 30L * 86400);
    X509_set_pubkey(d->cert, d->key);
    if (!X509_sign(d->cert, factory_ca_key, EVP_sha256())) die("cannot sign a factory certificate");
    /* The CSR of its operational key. */
    name = X509_REQ_get_subject_name(req);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_pubkey(req, op);
    if (!X509_REQ_sign(req, op, EVP_sha256())) die("cannot sign a CSR");
    bio = BIO_new(BIO_s_mem());
    if (strcmp(o.api, "est") == 0) {
        BIO *b64 = BIO_new(BIO_f_base64());
        BIO_push(b64, bio);
        i2d_X509_REQ_bio(b64, req);
        (void)BIO_flush(b64);
        len = BIO_get_mem_data(bio, &data);
        body = malloc((size_t)len + 1);
        memcpy(body, data, (size_t)len);
        blen = (size_t)len;
        BIO_free_all(b64);
    } else {
        PEM_write_bio_X509_REQ(bio, req);
        len = BIO_get_mem_data(bio, &data);
        body = malloc((size_t)len * 2 + 32);
        blen = (size_t)sprintf(body, "{\"csr\": \"");
        blen += json_escape(body + blen, data, (size_t)len);
        blen += (size_t)sprintf(body + blen, "\"}");
        BIO_free(bio);
    }
    d->req = malloc(blen + 512);
    d->req_len = (size_t)sprintf(
        d->req,
        "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
        strcmp(o.api, "est") == 0 ? "/.well-known/est/simpleenroll" : "/api/v1/register",
        target_host, strcmp(o.api, "est") == 0 ? "application/pkcs10" : "application/json", blen);
    memcpy(d->req + d->req_len, body, blen);
    d->req_len += blen;
    free(body);
    X509_REQ_free(req);
    EVP_PKEY_free(op);
}

struct range {
    long from, to;
};

static void *make_range(void *arg)
{
    struct range *r = arg;
    for (long i = r->from; i < r->to; i++)
        make_device(i);
    return NULL;
}

static void make_devices(void)
{
    long t = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t th[64];
    struct range r[64];
    if (t < 1) t = 1;
    if (t > 64) t = 64;
    for (long i = 0; i < t; i++) {
        r[i].from = o.devices * i / t;
        r[i].to = o.devices * (i + 1) / t;
        pthread_create(&th[i], NULL, make_range, &r[i]);
    }
    for (long i = 0; i < t; i++)
        pthread_join(th[i], NULL);
}

/* ---- running them ---- */

struct runner {
    int index;
    long first, count; /* its share of the devices */
    long concurrency;
    pthread_t thread;
};

static void finish(struct slot *s, int status, const char *error)
{
    s->dev->latency = now_s() - s->dev->arrive;
    s->dev->status = status;
    s->dev->error = error;
    if (s->ssl) SSL_free(s->ssl);
    if (s->fd >= 0) close(s->fd);
    s->ssl = NULL;
    s->fd = -1;
    s->st = S_IDLE;
    s->dev = NULL;
}

/* The answer is whole when its head is and Content-Length bytes of body follow it. */
static int answer_whole(struct slot *s, int *status)
{
    char *end, *cl;
    size_t head;
    s->resp[s->rlen] = '\0';
    end = strstr(s->resp, "\r\n\r\n");
    if (!end) return 0;
    head = (size_t)(end - s->resp) + 4;
    cl = strcasestr(s->resp, "\r\nContent-Length:");
    if (!cl || cl > end) return -1;
    if (s->rlen < head + (size_t)strtoul(cl + 17, NULL, 10)) return 0;
    if (sscanf(s->resp, "HTTP/1.1 %d", status) != 1) return -1;
    return 1;
}

/* Moves a slot on until it would block; returns the events to wait for (0: it finished). */
static uint32_t step(struct slot *s)
{
    int r, e, status = 0;
    for (;;) {
        switch (s->st) {
        case S_IDLE: return 0;
        case S_CONNECT: {
            socklen_t l = sizeof(e);
            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0 || e != 0) {
                finish(s, 0, "connect");
                return 0;
            }
            s->ssl = SSL_new(ctx);
            SSL_set_fd(s->ssl, s->fd);
            SSL_use_certificate(s->ssl, s->dev->cert);
            SSL_use_PrivateKey(s->ssl, s->dev->key);
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), target_host);
            SSL_set_connect_state(s->ssl);
            s->st = S_HANDSHAKE;
            break;
        }
        case S_HANDSHAKE:
            r = SSL_do_handshake(s->ssl);
            if (r == 1) {
                s->st = S_WRITE;
                s->woff = 0;
                break;
            }
            e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ) return EPOLLIN;
            if (e == SSL_ERROR_WANT_WRITE) return EPOLLOUT;
            finish(s, 0, "tls");
            return 0;
        case S_WRITE:
            r = SSL_write(s->ssl, s->dev->req + s->woff, (int)(s->dev->req_len - s->woff));
            if (r > 0) {
                s->woff += (size_t)r;
                if (s->woff == s->dev->req_len) {
                    s->st = S_READ;
                    s->rlen = 0;
                }
                break;
            }
            e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ) return EPOLLIN;
            if (e == SSL_ERROR_WANT_WRITE) return EPOLLOUT;
            finish(s, 0, "write");
            return 0;
        case S_READ:
            if (s->rlen >= RESP_MAX - 1) {
                finish(s, 0, "answer too large");
                return 0;
            }
            r = SSL_read(s->ssl, s->resp + s->rlen, (int)(RESP_MAX - 1 - s->rlen));
            if (r > 0) {
                s->rlen += (size_t)r;
                r = answer_whole(s, &status);
                if (r < 0) {
                    finish(s, 0, "malformed answer");
                    return 0;
                }
                if (r == 1) {
                    /* A 200 must carry the certificate. */
                    if (status == 200 &&
                        !strstr(s->resp, strcmp(o.api, "est") == 0 ? "application/pkcs7-mime"
                                                                   : "BEGIN CERTIFICATE")) {
                        finish(s, 0, "200 without a certificate");
                        return 0;
                    }
                    finish(s, status, status == 200 ? NULL : "status");
                    return 0;
                }
                break;
            }
            e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ) return EPOLLIN;
            if (e == SSL_ERROR_WANT_WRITE) return EPOLLOUT;
            finish(s, 0, "read");
            return 0;
        }
    }
}

static void start(struct slot *s, struct device *d, int ep)
{
    struct epoll_event ev;
    int one = 1;
    s->dev = d;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        finish(s, 0, "socket");
        return;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(s->fd, (struct sockaddr *)&target, sizeof(target)) != 0 && errno != EINPROGRESS) {
        finish(s, 0, "connect");
        return;
    }
    s->st = S_CONNECT;
    ev.events = EPOLLOUT;
    ev.data.ptr = s;
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void *run(void *arg)
{
    struct runner *rn = arg;
    struct slot *slots = calloc((size_t)rn->concurrency, sizeof(*slots));
    struct epoll_event evs[256];
    long next = 0, done = 0, busy = 0;
    int ep = epoll_create1(EPOLL_CLOEXEC);

    if (!slots || ep < 0) die("out of memory");
    for (long i = 0; i < rn->concurrency; i++)
        slots[i].fd = -1;
    while (done < rn->count) {
        double t = now_s();
        int timeout = 100, n;
        /* Give free slots the devices that have arrived. */
        for (long i = 0; i < rn->concurrency && next < rn->count; i++) {
            struct device *d = &devs[rn->first + next];
            if (slots[i].st != S_IDLE) continue;
            if (o.rate > 0) {
                /* Device k of this runner arrives at k / (rate / threads) seconds. */
                double at = t_start + (double)next * (double)o.threads / o.rate;
                if (at > t) {
                    int ms = (int)((at - t) * 1000) + 1;
                    if (ms < timeout) timeout = ms;
                    break;
                }
                d->arrive = at;
            } else {
                d->arrive = t;
            }
            next++;
            busy++;
            start(&slots[i], d, ep);
            if (slots[i].st == S_IDLE) {
                busy--;
                done++;
            }
        }
        n = epoll_wait(ep, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            struct slot *s = evs[i].data.ptr;
            uint32_t want = step(s);
            if (want) {
                struct epoll_event ev = {want, {.ptr = s}};
                epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
            } else {
                busy--;
                done++;
            }
        }
    }
    close(ep);
    free(slots);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char usage[] =
    "usage: prov_load --connect HOST:PORT --cacert ROOT --ca FACTORY.pem --ca-key FACTORY.key\n"
    "                 [--devices N] [--concurrency C] [--rate R] [--threads T]\n"
    "                 [--api register|est] [--prefix P]\n";

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"connect", required_argument, NULL, 'c'}, {"cacert", required_argument, NULL, 'r'},
        {"ca", required_argument, NULL, 'a'},      {"ca-key", required_argument, NULL, 'k'},
        {"devices", required_argument, NULL, 'n'}, {"concurrency", required_argument, NULL, 'C'},
        {"rate", required_argument, NULL, 'R'},    {"threads", required_argument, NULL, 'T'},
        {"api", required_argument, NULL, 'A'},     {"prefix", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    struct runner rn[64];
    double *lat, secs;
    long ok = 0, failed = 0, per;
    char *colon;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (opt) {
        case 'c': o.connect = optarg; break;
        case 'r': o.cacert = optarg; break;
        case 'a': o.ca = optarg; break;
        case 'k': o.ca_key = optarg; break;
        case 'n': o.devices = atol(optarg); break;
        case 'C': o.concurrency = atol(optarg); break;
        case 'R': o.rate = atof(optarg); break;
        case 'T': o.threads = atol(optarg); break;
        case 'A': o.api = optarg; break;
        case 'p': o.prefix = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!o.connect || !o.cacert || !o.ca || !o.ca_key || o.devices < 1 || o.concurrency < 1 ||
        o.threads < 1 || o.threads > 64 || o.concurrency < o.threads ||
        (strcmp(o.api, "register") != 0 && strcmp(o.api, "est") != 0)) {
        fputs(usage, stderr);
        return 2;
    }
    colon = strrchr(o.connect, ':');
    if (!colon || (size_t)(colon - o.connect) >= sizeof(target_host)) die("--connect HOST:PORT");
    memcpy(target_host, o.connect, (size_t)(colon - o.connect));
    memset(&target, 0, sizeof(target));
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, target_host, &target.sin_addr) != 1)
        die("--connect needs an IPv4 address");

    factory_ca = load_cert(o.ca);
    factory_ca_key = load_key(o.ca_key);
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, o.cacert, NULL) != 1) die("cannot use --cacert");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    devs = calloc((size_t)o.devices, sizeof(*devs));
    lat = calloc((size_t)o.devices, sizeof(*lat));
    if (!devs || !lat) die("out of memory");
    make_devices();

    t_start = now_s();
    per = o.devices / o.threads;
    for (long i = 0; i < o.threads; i++) {
        rn[i].index = (int)i;
        rn[i].first = i * per;
        rn[i].count = i == o.threads - 1 ? o.devices - i * per : per;
        rn[i].concurrency = o.concurrency / o.threads + (i < o.concurrency % o.threads);
        pthread_create(&rn[i].thread, NULL, run, &rn[i]);
    }
    for (long i = 0; i < o.threads; i++)
        pthread_join(rn[i].thread, NULL);
    secs = now_s() - t_start;

    for (long i = 0; i < o.devices; i++) {
        lat[i] = devs[i].latency * 1000;
        if (devs[i].status == 200)
            ok++;
        else
            failed++;
    }
    qsort(lat, (size_t)o.devices, sizeof(*lat), cmp_double);
    printf("devices=%ld concurrency=%ld rate=%.0f threads=%ld api=%s ok=%ld failed=%ld "
           "seconds=%.3f enrollments_per_s=%.0f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
           o.devices, o.concurrency, o.rate, o.threads, o.api, ok, failed, secs, (double)ok / secs,
           lat[o.devices / 2], lat[(o.devices * 99) / 100], lat[o.devices - 1]);
    if (failed) {
        /* How they failed: the first few, each with its reason. */
        int shown = 0;
        for (long i = 0; i < o.devices && shown < 10; i++) {
            if (devs[i].status == 200) continue;
            fprintf(stderr, "failed: device %ld: %s (status %d)\n", i,
                    devs[i].error ? devs[i].error : "?", devs[i].status);
            shown++;
        }
    }
    for (long i = 0; i < o.devices; i++) {
        EVP_PKEY_free(devs[i].key);
        X509_free(devs[i].cert);
        free(devs[i].req);
    }
    free(devs);
    free(lat);
    SSL_CTX_free(ctx);
    X509_free(factory_ca);
    EVP_PKEY_free(factory_ca_key);
    return failed ? 1 : 0;
}
