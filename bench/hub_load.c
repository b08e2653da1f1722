/*
 * hub_load: a load generator for MQTT brokers over mutual TLS, run the same way against
 * keyfleetd's hub and against Mosquitto (bench/run.sh), so that the two are compared on one run.
 *
 * Before the clock starts it makes N device identities: a P-256 key and a certificate signed by
 * the given CA (keyfleet's issuing CA), CN = the device id, URI SAN urn:keyfleet:device:<id>,
 * EKU clientAuth; the client id is the device id.
 *
 *   hub_load --connect HOST:PORT --cacert ROOT --ca ISSUING.pem --ca-key ISSUING.key
 *            --mode connect|idle|publish [--devices N] [--concurrency C] [--resume]
 *            [--broker-pid PID] [--announce] [--qos 0|1] [--seconds S] [--window W]
 *            [--sub-cert F --sub-key F --sub-id ID [--persistent]]
 *
 *   connect  N devices connect from zero (TCP, full TLS handshake, CONNECT, CONNACK), C at a time;
 *            with --resume a first, untimed pass collects each device's TLS session and the timed
 *            pass resumes it. Prints connects_per_s, and generator_cpu_us: this process's CPU
 *            (user + system) per connection during the timed pass; with --broker-pid PID also
 *            broker_cpu_us, the same for that process (read from /proc); with --announce it says
 *            "hub_load: the timed pass starts" on stderr first (to attach a profiler then).
 *   idle     connects N devices, prints "ready" and holds them for S seconds (the caller reads the
 *            broker's memory meanwhile).
 *   publish  connects N devices and a subscriber (the --sub identity) to devices/+/telemetry/#
 *            at the same QoS, then every device publishes to devices/<id>/telemetry for S
 *            seconds, each with up to W QoS 1 messages awaiting PUBACK (QoS 0: W per turn).
 *            Prints delivered_per_s (messages the subscriber received, acknowledged at QoS 1).
 *            With --persistent the subscriber's session outlives its connection (MQTT 3.1.1
 *            CleanSession 0), so that a broker with persistence keeps what it queues for it.
 *
 * One thread with epoll for the devices, and one for the subscriber so that the publishers
 * cannot starve it; everything non-blocking.
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

#include "common/mqtt_codec.h"

#define BUF 16384

enum state { S_OFF, S_CONNECTING, S_HANDSHAKE, S_MQTT, S_READY, S_FAILED };

struct client {
    enum state st;
    int fd, sub, ep; /* ep: the epoll set it is in */
    SSL *ssl;
    EVP_PKEY *key;
    X509 *cert;
    SSL_SESSION *session;
    char id[64];
    uint8_t in[BUF], out[BUF];
    size_t in_len, out_len;
    unsigned inflight;
    uint16_t next_id;
    uint32_t want; /* epoll events registered */
};

static struct {
    const char *connect, *cacert, *ca, *ca_key, *mode, *sub_cert, *sub_key, *sub_id;
    long devices, concurrency, window, broker_pid;
    int resume, announce, qos, persistent;
    double seconds;
} o = {NULL, NULL, NULL, NULL, "connect", NULL, NULL, "bench-sub", 1000, 100, 10, 0, 0, 0, 1, 0, 5};

static struct sockaddr_in target;
static SSL_CTX *ctx;
static int ep;
static long ready_count, failed_count, connack_count;
static unsigned long long received, sent;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double process_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The CPU (user + system) process PID has used so far, in seconds; -1 if it cannot be read. */
static double pid_cpu_s(long pid)
{
    char path[64], buf[1024], *p;
    unsigned long long utime, stime;
    FILE *f;
    size_t n;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15, counted after the command name, which may hold spaces. */
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                     &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void die(const char *what)
{
    fprintf(stderr, "hub_load: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!x) die(path);
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!k) die(path);
    return k;
}

static void make_identity(struct client *c, long i, X509 *ca, EVP_PKEY *ca_key)
{
    unsigned char serial[16];
    char uri[128];
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    BIGNUM *bn;

    snprintf(c->id, sizeof(c->id), "bench-%ld", i);
    c->key = EVP_EC_gen("P-256");
    c->cert = X509_new();
    if (!c->key || !c->cert) die("out of memory");
    X509_set_version(c->cert, 2);
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c->cert));
    BN_free(bn);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(c->cert), "CN", MBSTRING_ASC,
                               (const unsigned char *)c->id, -1, -1, 0);
    X509_set_issuer_name(c->cert, X509_get_subject_name(ca));
    X509_gmtime_adj(X509_getm_notBefore(c->cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c->cert), 86400);
    X509_set_pubkey(c->cert, c->key);
    X509V3_set_ctx(&v3, ca, c->cert, NULL, NULL, 0);
    snprintf(uri, sizeof(uri), "URI:urn:keyfleet:device:%s", c->id);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, uri);
    X509_add_ext(c->cert, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "clientAuth");
    X509_add_ext(c->cert, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,digitalSignature");
    X509_add_ext(c->cert, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:FALSE");
    X509_add_ext(c->cert, ext, -1);
    X509_EXTENSION_free(ext);
    if (!X509_sign(c->cert, ca_key, EVP_sha256())) die("cannot sign a device certificate");
}

static void watch(struct client *c, uint32_t events)
{
    struct epoll_event ev = {events, {.ptr = c}};
    if (c->want == events) return;
    epoll_ctl(c->ep, c->want ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->want = events;
}

static void fail(struct client *c)
{
    if (c->st == S_FAILED || c->st == S_OFF) return;
    c->st = S_FAILED;
    failed_count++;
    epoll_ctl(c->ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->want = 0;
}

static void hangup(struct client *c)
{
    if (c->ssl) {
        /* A session freed without close_notify is marked not resumable. */
        SSL_shutdown(c->ssl);
        if (o.resume && !c->session) c->session = SSL_get1_session(c->ssl);
        SSL_free(c->ssl);
    }
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->want = 0;
    c->st = S_OFF;
    c->in_len = c->out_len = 0;
    c->inflight = 0;
}

static void queue(struct client *c, const uint8_t *p, size_t n)
{
    if (c->out_len + n > sizeof(c->out)) return; /* the caller keeps within the window */
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void flush_out(struct client *c)
{
    while (c->out_len) {
        int r = SSL_write(c->ssl, c->out, (int)c->out_len);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                watch(c, EPOLLIN | EPOLLOUT);
                return;
            }
            fail(c);
            return;
        }
        memmove(c->out, c->out + r, c->out_len - (size_t)r);
        c->out_len -= (size_t)r;
    }
    watch(c, EPOLLIN);
}

static void send_connect(struct client *c)
{
    struct kf_mqtt_connect k;
    uint8_t buf[256];
    size_t n;
    memset(&k, 0, sizeof(k));
    k.version = KF_MQTT_V311;
    k.clean_start = !(c->sub && o.persistent);
    k.keep_alive = 300;
    k.client_id.p = (const uint8_t *)c->id;
    k.client_id.len = (uint16_t)strlen(c->id);
    if (kf_mqtt_encode_connect(buf, sizeof(buf), &k, &n) != 0) die("cannot encode CONNECT");
    queue(c, buf, n);
}

static void publish_some(struct client *c)
{
    char topic[96];
    static const char payload[] = "{\"temperature\":21.5,\"humidity\":40}";
    struct kf_mqtt_publish p;
    uint8_t buf[256];
    size_t n;
    long budget = o.window;

    snprintf(topic, sizeof(topic), "devices/%s/telemetry", c->id);
    memset(&p, 0, sizeof(p));
    p.qos = (uint8_t)o.qos;
    p.topic.p = (const uint8_t *)topic;
    p.topic.len = (uint16_t)strlen(topic);
    p.payload = (const uint8_t *)payload;
    p.payload_len = sizeof(payload) - 1;
    while (budget-- > 0 && (o.qos == 0 || c->inflight < (unsigned)o.window) &&
           c->out_len + 256 < sizeof(c->out)) {
        if (o.qos) {
            c->next_id = c->next_id == 65535 ? 1 : (uint16_t)(c->next_id + 1);
            p.packet_id = c->next_id;
            c->inflight++;
        }
        if (kf_mqtt_encode_publish(buf, sizeof(buf), KF_MQTT_V311, &p, &n) != 0) die("encode");
        queue(c, buf, n);
        sent++;
    }
}

static void on_packet(struct client *c, const struct kf_mqtt_packet *pkt)
{
    uint8_t buf[16];
    size_t n;
    switch (pkt->type) {
    case KF_MQTT_CONNACK:
        if (pkt->u.connack.reason != 0) {
            fail(c);
            return;
        }
        connack_count++;
        if (c->sub) {
            struct kf_mqtt_sub s;
            uint8_t sb[128];
            memset(&s, 0, sizeof(s));
            s.filter.p = (const uint8_t *)"devices/+/telemetry/#";
            s.filter.len = 21;
            s.qos = (uint8_t)o.qos;
            if (kf_mqtt_encode_subscribe(sb, sizeof(sb), KF_MQTT_V311, 0, 1, NULL, &s, 1, &n) == 0)
                queue(c, sb, n);
        } else {
            c->st = S_READY;
            ready_count++;
        }
        return;
    case KF_MQTT_SUBACK:
        c->st = S_READY;
        ready_count++;
        return;
    case KF_MQTT_PUBACK:
        if (c->inflight) c->inflight--;
        return;
    case KF_MQTT_PUBLISH:
        __atomic_add_fetch(&received, 1, __ATOMIC_RELAXED);
        if (pkt->u.publish.qos == 1) {
            struct kf_mqtt_ack a = {pkt->u.publish.packet_id, 0, {0}};
            if (kf_mqtt_encode_ack(buf, sizeof(buf), KF_MQTT_V311, KF_MQTT_PUBACK, &a, &n) == 0)
                queue(c, buf, n);
        }
        return;
    default: return;
    }
}

static void on_readable(struct client *c)
{
    for (;;) {
        int r = SSL_read(c->ssl, c->in + c->in_len, (int)(sizeof(c->in) - c->in_len));
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
            fail(c);
            return;
        }
        c->in_len += (size_t)r;
        for (;;) {
            struct kf_mqtt_packet pkt;
            struct kf_mqtt_error err;
            enum kf_mqtt_status st = kf_mqtt_decode(c->in, c->in_len, KF_MQTT_V311, 0, &pkt, &err);
            if (st == KF_MQTT_PARTIAL) break;
            if (st == KF_MQTT_BAD) {
                fail(c);
                return;
            }
            on_packet(c, &pkt);
            if (c->st == S_FAILED) return;
            memmove(c->in, c->in + pkt.size, c->in_len - pkt.size);
            c->in_len -= pkt.size;
        }
    }
}

static void step(struct client *c)
{
    int r, e;
    socklen_t l = sizeof(e);
    switch (c->st) {
    case S_CONNECTING:
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0 || e != 0) {
            fail(c);
            return;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_use_certificate(c->ssl, c->cert);
        SSL_use_PrivateKey(c->ssl, c->key);
        if (c->session) SSL_set_session(c->ssl, c->session);
        SSL_set_connect_state(c->ssl);
        c->st = S_HANDSHAKE;
        /* fall through */
    case S_HANDSHAKE:
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                watch(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE)
                watch(c, EPOLLOUT);
            else
                fail(c);
            return;
        }
        c->st = S_MQTT;
        send_connect(c);
        flush_out(c);
        return;
    default:
        on_readable(c);
        if (c->st != S_FAILED) flush_out(c);
        return;
    }
}

static void start(struct client *c)
{
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket (raise ulimit -n)");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->want = 0;
    if (connect(c->fd, (struct sockaddr *)&target, sizeof(target)) != 0 && errno != EINPROGRESS) {
        fail(c);
        return;
    }
    c->st = S_CONNECTING;
    watch(c, EPOLLOUT);
}

/* Connects clients[0..n) with at most C handshakes at a time; returns the seconds it took. */
static double connect_all(struct client *cl, long n)
{
    for (long i = 0; i < n; i++)
        cl[i].ep = ep;
    struct epoll_event evs[512];
    double t0 = now_s();
    long next = 0, pending = 0;
    ready_count = failed_count = 0;
    while (ready_count + failed_count < n) {
        while (next < n && pending < o.concurrency) {
            start(&cl[next++]);
            pending++;
        }
        int k = epoll_wait(ep, evs, 512, 1000);
        long before = ready_count + failed_count;
        for (int i = 0; i < k; i++)
            step(evs[i].data.ptr);
        pending -= ready_count + failed_count - before;
        if (now_s() - t0 > 120) die("connecting took more than two minutes");
    }
    return now_s() - t0;
}

/* The subscriber reads on a thread of its own, so that publishers cannot starve it. */
static volatile int sub_stop;

static void *sub_run(void *arg)
{
    struct client *c = arg;
    struct epoll_event evs[8];
    int sep = c->ep;
    watch(c, EPOLLIN);
    while (!sub_stop) {
        int k = epoll_wait(sep, evs, 8, 50);
        for (int i = 0; i < k; i++)
            step(evs[i].data.ptr);
    }
    close(sep);
    return NULL;
}

static void pump(struct client *cl, long n, double seconds, int publish)
{
    struct epoll_event evs[512];
    double end = now_s() + seconds;
    while (now_s() < end) {
        if (publish)
            for (long i = 0; i < n; i++)
                if (cl[i].st == S_READY && (o.qos == 0 ? cl[i].out_len == 0 : 1)) {
                    publish_some(&cl[i]);
                    if (cl[i].out_len) flush_out(&cl[i]);
                }
        int k = epoll_wait(ep, evs, 512, publish ? 1 : 100);
        for (int i = 0; i < k; i++)
            step(evs[i].data.ptr);
    }
}

static const char usage[] =
    "usage: hub_load --connect HOST:PORT --cacert ROOT --ca CA.pem --ca-key CA.key\n"
    "                --mode connect|idle|publish [--devices N] [--concurrency C] [--resume]\n"
    "                [--broker-pid PID] [--announce] [--qos 0|1] [--seconds S] [--window W]\n"
    "                [--sub-cert F --sub-key F --sub-id ID [--persistent]]\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        /* clang-format off */
        {"connect", required_argument, NULL, 'c'},
        {"cacert", required_argument, NULL, 'r'},
        {"ca", required_argument, NULL, 'a'},
        {"ca-key", required_argument, NULL, 'k'},
        {"mode", required_argument, NULL, 'm'},
        {"devices", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'C'},
        {"resume", no_argument, NULL, 'R'},
        {"broker-pid", required_argument, NULL, 'P'},
        {"announce", no_argument, NULL, 'N'},
        {"qos", required_argument, NULL, 'q'},
        {"seconds", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},
        {"sub-cert", required_argument, NULL, 'S'},
        {"sub-key", required_argument, NULL, 'K'},
        {"sub-id", required_argument, NULL, 'I'},
        {"persistent", no_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
        /* clang-format on */
    };
    struct client *cl, sub;
    X509 *ca;
    EVP_PKEY *ca_key;
    char host[64];
    const char *colon;
    int opt;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': o.connect = optarg; break;
        case 'r': o.cacert = optarg; break;
        case 'a': o.ca = optarg; break;
        case 'k': o.ca_key = optarg; break;
        case 'm': o.mode = optarg; break;
        case 'n': o.devices = atol(optarg); break;
        case 'P': o.broker_pid = atol(optarg); break;
        case 'N': o.announce = 1; break;
        case 'C': o.concurrency = atol(optarg); break;
        case 'R': o.resume = 1; break;
        case 'q': o.qos = atoi(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'w': o.window = atol(optarg); break;
        case 'S': o.sub_cert = optarg; break;
        case 'K': o.sub_key = optarg; break;
        case 'I': o.sub_id = optarg; break;
        case 'p': o.persistent = 1; break;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!o.connect || !o.cacert || !o.ca || !o.ca_key || o.devices < 1 || o.concurrency < 1 ||
        (o.qos != 0 && o.qos != 1) || (strcmp(o.mode, "publish") == 0 && !o.sub_cert)) {
        fputs(usage, stderr);
        return 2;
    }
    colon = strrchr(o.connect, ':');
    if (!colon || (size_t)(colon - o.connect) >= sizeof(host)) die("--connect HOST:PORT");
    memcpy(host, o.connect, (size_t)(colon - o.connect));
    host[colon - o.connect] = '\0';
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) die("--connect needs an IPv4 address");

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    if (!SSL_CTX_load_verify_locations(ctx, o.cacert, NULL)) die(o.cacert);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);

    ca = load_cert(o.ca);
    ca_key = load_key(o.ca_key);
    cl = calloc((size_t)o.devices, sizeof(*cl));
    if (!cl) die("out of memory");
    for (long i = 0; i < o.devices; i++) {
        cl[i].fd = -1;
        make_identity(&cl[i], i, ca, ca_key);
    }

    if (strcmp(o.mode, "connect") == 0) {
        double secs;
        if (o.resume) {
            connect_all(cl, o.devices);
            /* Sessions arrive after the handshake (TLS 1.3): give them a moment. */
            pump(cl, o.devices, 0.3, 0);
            for (long i = 0; i < o.devices; i++)
                hangup(&cl[i]);
            usleep(300000);
        }
        /* For a profiler to attach to the broker for the timed pass only. */
        if (o.announce) fputs("hub_load: the timed pass starts\n", stderr);
        double cpu0 = process_cpu_s(), broker0 = o.broker_pid ? pid_cpu_s(o.broker_pid) : -1;
        secs = connect_all(cl, o.devices);
        double cpu = process_cpu_s() - cpu0;
        double broker = broker0 >= 0 ? pid_cpu_s(o.broker_pid) - broker0 : -1;
        long resumed = 0;
        for (long i = 0; i < o.devices; i++)
            if (cl[i].ssl && SSL_session_reused(cl[i].ssl)) resumed++;
        printf("mode=connect devices=%ld connected=%ld failed=%ld seconds=%.3f connects_per_s=%.0f "
               "resumed=%ld generator_cpu_us=%.0f",
               o.devices, ready_count, failed_count, secs, (double)ready_count / secs, resumed,
               ready_count ? cpu / (double)ready_count * 1e6 : 0.0);
        if (broker >= 0 && ready_count)
            printf(" broker_cpu_us=%.0f", broker / (double)ready_count * 1e6);
        putchar('\n');
        return failed_count ? 1 : 0;
    }
    if (strcmp(o.mode, "idle") == 0) {
        double secs = connect_all(cl, o.devices);
        printf("ready devices=%ld connected=%ld failed=%ld seconds=%.3f\n", o.devices, ready_count,
               failed_count, secs);
        fflush(stdout);
        pump(cl, o.devices, o.seconds, 0);
        return failed_count ? 1 : 0;
    }
    /* publish */
    memset(&sub, 0, sizeof(sub));
    sub.fd = -1;
    sub.sub = 1;
    sub.cert = load_cert(o.sub_cert);
    sub.key = load_key(o.sub_key);
    snprintf(sub.id, sizeof(sub.id), "%s", o.sub_id);
    connect_all(&sub, 1);
    if (sub.st != S_READY) die("the subscriber could not connect and subscribe");
    pthread_t th;
    {
        /* Moved to an epoll set of its own before its thread starts. */
        epoll_ctl(ep, EPOLL_CTL_DEL, sub.fd, NULL);
        sub.ep = epoll_create1(EPOLL_CLOEXEC);
        sub.want = 0;
        pthread_create(&th, NULL, sub_run, &sub);
    }
    connect_all(cl, o.devices);
    if (failed_count) die("devices could not connect");
    pump(cl, o.devices, 0.5, 1); /* warm up */
    {
        unsigned long long r0 = __atomic_load_n(&received, __ATOMIC_RELAXED), s0 = sent;
        double t0 = now_s(), secs;
        pump(cl, o.devices, o.seconds, 1);
        secs = now_s() - t0;
        printf("mode=publish qos=%d devices=%ld seconds=%.2f sent_per_s=%.0f delivered_per_s=%.0f "
               "failed=%ld\n",
               o.qos, o.devices, secs, (double)(sent - s0) / secs,
               (double)(__atomic_load_n(&received, __ATOMIC_RELAXED) - r0) / secs, failed_count);
        /* Stopped before exit() tears OpenSSL down under it. */
        sub_stop = 1;
        pthread_join(th, NULL);
    }
    return 0;
}
