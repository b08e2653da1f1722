/*
 * tls_floor: what a bare OpenSSL mutual-TLS handshake costs, both sides, in one process and
 * over memory (no sockets, no application): the floor under any provisioning service built on
 * this OpenSSL, to stand beside keyfleetd's enrollments per second.
 *
 *   tls_floor SERVER_CHAIN SERVER_KEY CLIENT_CERT CLIENT_KEY TRUST HANDSHAKES
 *
 * The server is set up as keyfleetd is (TLS 1.2 minimum, client certificate requested, its chain
 * judged after the handshake, stateful resumption on); the client as prov_load is (fresh
 * handshakes, the server verified against TRUST). Prints the CPU time of each side:
 *   handshakes=2000 server_us=404 client_us=709 pairs_per_core_s=906
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
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
    double ts = 0, tc = 0;
    long n;

    if (argc != 7) {
        fputs("usage: tls_floor SERVER_CHAIN SERVER_KEY CLIENT_CERT CLIENT_KEY TRUST HANDSHAKES\n",
              stderr);
        return 2;
    }
    n = atol(argv[6]);
    s = SSL_CTX_new(TLS_server_method());
    c = SSL_CTX_new(TLS_client_method());
    if (!s || !c) die("no context");
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(s, (const unsigned char *)"floor", 5);
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(s, accept_chain_cb, NULL);
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
    for (long i = 0; i < n; i++) {
        SSL *srv = SSL_new(s), *cli = SSL_new(c);
        BIO *a = NULL, *b = NULL;
        int ds = 0, dc = 0;
        char byte = 'x';
        double t;
        if (!srv || !cli || !BIO_new_bio_pair(&a, 0, &b, 0)) die("out of memory");
        SSL_set_bio(srv, a, a);
        SSL_set_bio(cli, b, b);
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
        if (SSL_read(cli, &byte, 1) != 1) die("no data after the handshake");
        tc += cpu_s() - t;
        SSL_free(srv);
        SSL_free(cli);
    }
    printf("handshakes=%ld server_us=%.0f client_us=%.0f pairs_per_core_s=%.0f\n", n,
           ts / (double)n * 1e6, tc / (double)n * 1e6, (double)n / (ts + tc));
    SSL_CTX_free(s);
    SSL_CTX_free(c);
    return 0;
}
