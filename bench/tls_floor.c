/*
 * tls_floor: what a bare OpenSSL mutual-TLS handshake costs, both sides, in one process and
 * over memory (no sockets, no application): the floor under any provisioning service built on
 * this OpenSSL, to stand beside keyfleetd's enrollments per second.
 *
 *   tls_floor [--tcp] SERVER_CHAIN SERVER_KEY CLIENT_CERT CLIENT_KEY TRUST HANDSHAKES [CLIENT_CA]
 *
 * The server is set up as keyfleetd is (TLS 1.2 minimum, client certificate requested, its chain
 * judged after the handshake, stateful resumption on); the client as prov_load is (fresh
 * handshakes, the server verified against TRUST). Without CLIENT_CA the server takes any client
 * chain, with it the server verifies the client's chain against it in the handshake (the least
 * an mTLS broker does). Prints the CPU time of each side:
 *   handshakes=2000 server_us=404 client_us=709 pairs_per_core_s=906
 *
 * With --tcp every handshake runs over a fresh loopback TCP connection (connect, accept, the
 * handshake, a byte each way, close), both ends driven by this one thread, so the figure also
 * holds the kernel's TCP work of both sides: the floor under any TLS server on this machine that
 * shares its cores with an OpenSSL client (a load generator). The split between the sides is
 * then not meaningful (loopback delivery runs in the sender's context); the process's CPU is:
 *   handshakes=2000 tcp=1 pair_us=1190 pairs_per_core_s=840
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double process_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int accept_chain_cb(X509_STORE_CTX *store, void *arg)
{
    (void)store;
    (void)arg;
    return 1;
}

static void die(const char *what)
{
    fprintf(stderr, "tls_floor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}

/* A loopback listener on a free port; its address in *addr. */
static int tcp_listener(struct sockaddr_in *addr)
{
    socklen_t len = sizeof(*addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0)
        die("cannot listen on loopback");
    return fd;
}

/* A fresh connection to the listener, both ends non-blocking with TCP_NODELAY (as the hub and
 * the load generators set them). */
static void tcp_pair(int lfd, const struct sockaddr_in *addr, int *cfd, int *sfd)
{
    int one = 1;
    *cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*cfd < 0) die("socket");
    if (connect(*cfd, (const struct sockaddr *)addr, sizeof(*addr)) != 0 && errno != EINPROGRESS)
        die("connect");
    *sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (*sfd < 0) die("accept");
    setsockopt(*cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(*sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* One step of one side; 1 when its handshake is done. */
static int drive(SSL *ssl, int *done, double *spent)
{
    double t = cpu_s();
    if (!*done) {
        int r = SSL_do_handshake(ssl);
        if (r == 1)
            *done = 1;
        else if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ)
            die("handshake failed");
    }
    *spent += cpu_s() - t;
    return *done;
}

int main(int argc, char **argv)
{
    SSL_CTX *s, *c;
    double ts = 0, tc = 0, t0;
    long n;
    int tcp = argc > 1 && strcmp(argv[1], "--tcp") == 0, lfd = -1;
    struct sockaddr_in addr;

    if (tcp) {
        argv++;
        argc--;
    }
    if ((argc != 7 && argc != 8) || (n = atol(argv[6])) <= 0) {
        fputs("usage: tls_floor [--tcp] SERVER_CHAIN SERVER_KEY CLIENT_CERT CLIENT_KEY TRUST "
              "HANDSHAKES [CLIENT_CA]\n",
              stderr);
        return 2;
    }
    if (tcp) lfd = tcp_listener(&addr);
    s = SSL_CTX_new(TLS_server_method());
    c = SSL_CTX_new(TLS_client_method());
    if (!s || !c) die("no context");
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(s, (const unsigned char *)"floor", 5);
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
    if (argc == 8) {
        /* An issuing CA is an anchor of its own, as in keyfleetd's trust sets. */
        if (SSL_CTX_load_verify_locations(s, argv[7], NULL) != 1 ||
            !X509_STORE_set_flags(SSL_CTX_get_cert_store(s), X509_V_FLAG_PARTIAL_CHAIN))
            die("client CA");
    } else {
        SSL_CTX_set_cert_verify_callback(s, accept_chain_cb, NULL);
    }
    if (SSL_CTX_use_certificate_chain_file(s, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(s, argv[2], SSL_FILETYPE_PEM) != 1)
        die("server certificate or key");
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_load_verify_locations(c, argv[5], NULL) != 1 ||
        SSL_CTX_use_certificate_file(c, argv[3], SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(c, argv[4], SSL_FILETYPE_PEM) != 1)
        die("client certificate, key or trust");
    t0 = process_cpu_s();
    for (long i = 0; i < n; i++) {
        SSL *srv = SSL_new(s), *cli = SSL_new(c);
        BIO *a = NULL, *b = NULL;
        int ds = 0, dc = 0, cfd = -1, sfd = -1;
        char byte = 'x';
        double t;
        if (!srv || !cli) die("out of memory");
        if (tcp) {
            tcp_pair(lfd, &addr, &cfd, &sfd);
            SSL_set_fd(srv, sfd);
            SSL_set_fd(cli, cfd);
        } else {
            if (!BIO_new_bio_pair(&a, 0, &b, 0)) die("out of memory");
            SSL_set_bio(srv, a, a);
            SSL_set_bio(cli, b, b);
        }
        SSL_set_accept_state(srv);
        SSL_set_connect_state(cli);
        while (!ds || !dc) {
            drive(cli, &dc, &tc);
            drive(srv, &ds, &ts);
        }
        /* A byte each way, so that the client also takes the server's session ticket. */
        t = cpu_s();
        SSL_write(srv, &byte, 1);
        ts += cpu_s() - t;
        t = cpu_s();
        for (int r; (r = SSL_read(cli, &byte, 1)) != 1;)
            if (!tcp || SSL_get_error(cli, r) != SSL_ERROR_WANT_READ)
                die("no data after the handshake");
        tc += cpu_s() - t;
        SSL_free(srv);
        SSL_free(cli);
        if (tcp) {
            close(cfd);
            close(sfd);
        }
    }
    if (tcp) {
        double all = process_cpu_s() - t0;
        printf("handshakes=%ld tcp=1 pair_us=%.0f pairs_per_core_s=%.0f\n", n,
               all / (double)n * 1e6, (double)n / all);
    } else {
        printf("handshakes=%ld server_us=%.0f client_us=%.0f pairs_per_core_s=%.0f\n", n,
               ts / (double)n * 1e6, tc / (double)n * 1e6, (double)n / (ts + tc));
    }
    if (lfd >= 0) close(lfd);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
    return 0;
}
