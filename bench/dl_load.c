/*
 * dl_load: many devices downloading one file at once over mutual TLS, the way devices fetch an
 * update image: each client a thread with its own connection, a full TLS handshake with the
 * device certificate (the server verified against the deployment's root), one GET, the whole
 * body read and counted (and its SHA-256 checked when --sha256 is given).
 *
 *   dl_load --connect HOST:PORT --path /updates/targets/X --cacert ROOT --cert C --key K
 *           [--clients N] [--length BYTES] [--sha256 HEX]
 *
 * All clients start together (after their handshakes, which are not timed: the figure is the
 * transfer). Prints one line:
 *   clients=N ok=N failed=0 seconds=.. mib=.. mib_per_s=..
 * Exit 1 if any download failed or came back short.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

struct opts {
    char host[64];
    int port;
    const char *path, *cacert, *cert, *key, *sha256;
    int clients;
    long long length;
};

struct client {
    const struct opts *o;
    SSL_CTX *ctx;
    pthread_barrier_t *go;
    int ok;
    long long got;
    double done;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    struct client *c = arg;
    const struct opts *o = c->o;
    struct sockaddr_in sa;
    char req[1024], buf[65536];
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, in_body = 0;
    SSL *ssl = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    long long body = 0, want = -1;
    size_t head_len = 0;
    char head[8192];

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->port);
    inet_pton(AF_INET, o->host, &sa.sin_addr);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) goto out;
    ssl = SSL_new(c->ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (SSL_connect(ssl) != 1) goto out;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", o->path,
             o->host);
    pthread_barrier_wait(c->go);
    if (SSL_write(ssl, req, (int)strlen(req)) <= 0) goto out;
    for (;;) {
        int n = SSL_read(ssl, buf, sizeof(buf));
        if (n <= 0) break;
        if (!in_body) {
            size_t take = (size_t)n < sizeof(head) - head_len ? (size_t)n : sizeof(head) - head_len;
            char *end, *cl;
            memcpy(head + head_len, buf, take);
            head_len += take;
            head[head_len < sizeof(head) ? head_len : sizeof(head) - 1] = '\0';
            end = strstr(head, "\r\n\r\n");
            if (!end) continue;
            if (strncmp(head, "HTTP/1.1 200", 12) != 0) break;
            cl = strcasestr(head, "content-length:");
            want = cl ? atoll(cl + 15) : -1;
            in_body = 1;
            {
                /* the body's first bytes are in this read, after the head */
                size_t hl = (size_t)(end + 4 - head), prev = head_len - take, from = hl - prev;
                body += (long long)((size_t)n - from);
                EVP_DigestUpdate(md, buf + from, (size_t)n - from);
            }
        } else {
            body += n;
            EVP_DigestUpdate(md, buf, (size_t)n);
        }
        if (want >= 0 && body >= want) break;
    }
    c->done = now_s();
    c->got = body;
    c->ok = in_body && want >= 0 && body == want && (o->length <= 0 || body == o->length);
    if (c->ok && o->sha256) {
        unsigned char h[32];
        char hex[65];
        unsigned len = 0;
        EVP_DigestFinal_ex(md, h, &len);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", h[i]);
        c->ok = strcmp(hex, o->sha256) == 0;
    }
out:
    if (!c->done) {
        c->done = now_s();
        pthread_barrier_wait(c->go); /* never leave the others waiting */
    }
    EVP_MD_CTX_free(md);
    if (ssl) SSL_free(ssl);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"connect", 1, 0, 'c'}, {"path", 1, 0, 'p'},   {"cacert", 1, 0, 'a'},
        {"cert", 1, 0, 'e'},    {"key", 1, 0, 'k'},    {"clients", 1, 0, 'n'},
        {"length", 1, 0, 'l'},  {"sha256", 1, 0, 's'}, {0, 0, 0, 0}};
    struct opts o = {.clients = 100};
    struct client *cs;
    pthread_t *th;
    pthread_barrier_t go;
    SSL_CTX *ctx;
    double start, end = 0;
    long long total = 0;
    int ok = 0, opt;
    char *colon;

    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'c':
            snprintf(o.host, sizeof(o.host), "%s", optarg);
            colon = strrchr(o.host, ':');
            if (!colon) return 2;
            *colon = '\0';
            o.port = atoi(colon + 1);
            break;
        case 'p': o.path = optarg; break;
        case 'a': o.cacert = optarg; break;
        case 'e': o.cert = optarg; break;
        case 'k': o.key = optarg; break;
        case 'n': o.clients = atoi(optarg); break;
        case 'l': o.length = atoll(optarg); break;
        case 's': o.sha256 = optarg; break;
        default: return 2;
        }
    }
    if (!o.port || !o.path || !o.cacert || !o.cert || !o.key || o.clients < 1) {
        fprintf(stderr, "usage: dl_load --connect HOST:PORT --path P --cacert R --cert C --key K "
                        "[--clients N] [--length L] [--sha256 HEX]\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, o.cacert, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, o.cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o.key, SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    cs = calloc((size_t)o.clients, sizeof(*cs));
    th = calloc((size_t)o.clients, sizeof(*th));
    pthread_barrier_init(&go, NULL, (unsigned)o.clients + 1);
    for (int i = 0; i < o.clients; i++) {
        cs[i] = (struct client){&o, ctx, &go, 0, 0, 0};
        pthread_create(&th[i], NULL, run, &cs[i]);
    }
    pthread_barrier_wait(&go);
    start = now_s();
    for (int i = 0; i < o.clients; i++) {
        pthread_join(th[i], NULL);
        ok += cs[i].ok;
        total += cs[i].got;
        if (cs[i].done > end) end = cs[i].done;
    }
    printf("clients=%d ok=%d failed=%d seconds=%.3f mib=%.1f mib_per_s=%.1f\n", o.clients, ok,
           o.clients - ok, end - start, (double)total / 1048576.0,
           (double)total / 1048576.0 / (end - start));
    return ok == o.clients ? 0 : 1;
}
