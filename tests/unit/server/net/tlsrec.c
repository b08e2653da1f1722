/*
 * tlsrec: the TLS 1.3 record layer that takes a connection over from OpenSSL after the
 * handshake, checked against OpenSSL itself as the peer (over a BIO pair): data both ways, many
 * records, each suite, KeyUpdate asked by the client, close_notify, tampering, partial records.
 */
#include "testutil.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "server/net/tlsrec.h"

static struct kf_tlsrec_watch watch;
static SSL *watched;

static struct kf_tlsrec_watch *get_watch(const SSL *ssl)
{
    return ssl == watched ? &watch : NULL;
}

static int accept_cb(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

static void make_cert(const char *name)
{
    assert_int_equal(kf_test_sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
                                "ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.pem "
                                "-subj /CN=%s -days 2 2>/dev/null",
                                kf_test_dir(), name, name, name),
                     0);
}

struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *srv, *cli;
    BIO *a, *b; /* a: the server's end (ours after the take-over), b: the client's */
    int own_a;
    struct kf_tlsrec *r;
};

/* Moves whatever one side wrote to the other until both handshakes are done. */
static void handshake(struct pair *p)
{
    int ds = 0, dc = 0, i;
    for (i = 0; i < 100 && (!ds || !dc); i++) {
        if (!dc) dc = SSL_do_handshake(p->cli) == 1;
        if (!ds) ds = SSL_do_handshake(p->srv) == 1;
    }
    assert_true(ds && dc);
}

static void setup_pair(struct pair *p, const char *suite)
{
    char path[600];
    memset(p, 0, sizeof(p[0]));
    memset(&watch, 0, sizeof(watch));
    make_cert("srv");
    make_cert("cli");
    p->sctx = SSL_CTX_new(TLS_server_method());
    p->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->sctx);
    snprintf(path, sizeof(path), "%s/srv.pem", kf_test_dir());
    assert_int_equal(SSL_CTX_use_certificate_file(p->sctx, path, SSL_FILETYPE_PEM), 1);
    snprintf(path, sizeof(path), "%s/srv.key", kf_test_dir());
    assert_int_equal(SSL_CTX_use_PrivateKey_file(p->sctx, path, SSL_FILETYPE_PEM), 1);
    snprintf(path, sizeof(path), "%s/cli.pem", kf_test_dir());
    assert_int_equal(SSL_CTX_use_certificate_file(p->cctx, path, SSL_FILETYPE_PEM), 1);
    snprintf(path, sizeof(path), "%s/cli.key", kf_test_dir());
    assert_int_equal(SSL_CTX_use_PrivateKey_file(p->cctx, path, SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_verify(p->sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_cb);
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, accept_cb);
    SSL_CTX_set_num_tickets(p->sctx, 1);
    SSL_CTX_set_min_proto_version(p->cctx, TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_set_ciphersuites(p->cctx, suite), 1);
    kf_tlsrec_install(p->sctx, get_watch);
    p->srv = SSL_new(p->sctx);
    p->cli = SSL_new(p->cctx);
    watched = p->srv;
    assert_int_equal(BIO_new_bio_pair(&p->a, 1 << 18, &p->b, 1 << 18), 1);
    SSL_set_bio(p->srv, p->a, p->a);
    SSL_set_bio(p->cli, p->b, p->b);
    SSL_set_accept_state(p->srv);
    SSL_set_connect_state(p->cli);
    handshake(p);
}

/* The client writes, the server (still OpenSSL) reads, and back: records before the take-over. */
static void some_openssl_traffic(struct pair *p, int rounds)
{
    char buf[64];
    int i;
    for (i = 0; i < rounds; i++) {
        assert_int_equal(SSL_write(p->cli, "abc", 3), 3);
        assert_int_equal(SSL_read(p->srv, buf, sizeof(buf)), 3);
        assert_int_equal(SSL_write(p->srv, "xyz!", 4), 4);
        assert_int_equal(SSL_read(p->cli, buf, sizeof(buf)), 4); /* the ticket is read here too */
    }
}

static void take_over(struct pair *p)
{
    assert_true(kf_tlsrec_ready(p->srv, &watch));
    KF_OK_OR_FAIL(kf_tlsrec_take(p->srv, &watch, &p->r));
    BIO_up_ref(p->a); /* the BIO outlives the SSL: it is ours now */
    SSL_free(p->srv);
    p->srv = NULL;
    p->own_a = 1;
    watched = NULL;
}

/* What the client sent, through our record layer. */
static enum kf_tlsrec_status server_reads(struct pair *p, struct kf_buf *plain,
                                          struct kf_buf *reply, const char **why)
{
    static uint8_t raw[200000];
    size_t used = 0;
    int n = BIO_read(p->a, raw, sizeof(raw));
    enum kf_tlsrec_status st;
    assert_true(n > 0);
    st = kf_tlsrec_open(p->r, raw, (size_t)n, &used, plain, reply, why);
    if (st == KF_TLSREC_OK) assert_int_equal(used, (size_t)n);
    return st;
}

static void server_writes(struct pair *p, const struct kf_buf *rec)
{
    assert_int_equal(BIO_write(p->a, rec->data, (int)rec->len), (int)rec->len);
}

static void free_pair(struct pair *p)
{
    kf_tlsrec_free(p->r);
    SSL_free(p->cli);
    if (p->srv) SSL_free(p->srv);
    if (p->own_a) BIO_free(p->a);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
}

static void round_trip(const char *suite)
{
    struct pair p;
    struct kf_buf plain, out, reply;
    const char *why = NULL;
    static uint8_t big[40000], got[40000];
    size_t have = 0;
    int i;

    setup_pair(&p, suite);
    some_openssl_traffic(&p, 3);
    take_over(&p);
    kf_buf_init(&plain, 1 << 20);
    kf_buf_init(&out, 1 << 20);
    kf_buf_init(&reply, 4096);
    /* client -> server */
    assert_int_equal(SSL_write(p.cli, "ping", 4), 4);
    assert_int_equal(server_reads(&p, &plain, &reply, &why), KF_TLSREC_OK);
    assert_int_equal(plain.len, 4);
    assert_memory_equal(plain.data, "ping", 4);
    /* server -> client, several records at once, one larger than a record */
    for (i = 0; i < (int)sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    KF_OK_OR_FAIL(kf_tlsrec_seal(p.r, (const uint8_t *)"pong", 4, &out));
    KF_OK_OR_FAIL(kf_tlsrec_seal(p.r, big, sizeof(big), &out));
    server_writes(&p, &out);
    assert_int_equal(SSL_read(p.cli, got, 4), 4);
    assert_memory_equal(got, "pong", 4);
    while (have < sizeof(big)) {
        int n = SSL_read(p.cli, got + have, (int)(sizeof(big) - have));
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, big, sizeof(big));
    /* the client asks for a KeyUpdate: both directions move to new keys */
    assert_int_equal(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED), 1);
    assert_int_equal(SSL_write(p.cli, "after", 5), 5);
    kf_buf_reset(&plain);
    assert_int_equal(server_reads(&p, &plain, &reply, &why), KF_TLSREC_OK);
    assert_int_equal(plain.len, 5);
    assert_true(reply.len > 0); /* our own KeyUpdate */
    server_writes(&p, &reply);
    kf_buf_reset(&out);
    KF_OK_OR_FAIL(kf_tlsrec_seal(p.r, (const uint8_t *)"new keys", 8, &out));
    server_writes(&p, &out);
    assert_int_equal(SSL_read(p.cli, got, sizeof(got)), 8);
    assert_memory_equal(got, "new keys", 8);
    /* close_notify from the client */
    SSL_shutdown(p.cli);
    kf_buf_reset(&plain);
    assert_int_equal(server_reads(&p, &plain, &reply, &why), KF_TLSREC_CLOSED);
    kf_buf_free(&plain);
    kf_buf_free(&out);
    kf_buf_free(&reply);
    free_pair(&p);
}

static void test_aes128(void **state)
{
    (void)state;
    round_trip("TLS_AES_128_GCM_SHA256");
}

static void test_aes256(void **state)
{
    (void)state;
    round_trip("TLS_AES_256_GCM_SHA384");
}

static void test_chacha(void **state)
{
    (void)state;
    round_trip("TLS_CHACHA20_POLY1305_SHA256");
}

static void test_partial_tampered_and_refusals(void **state)
{
    struct pair p;
    struct kf_buf plain, reply, out;
    const char *why = NULL;
    uint8_t raw[4096];
    size_t used = 0;
    int n;
    (void)state;

    setup_pair(&p, "TLS_AES_128_GCM_SHA256");
    /* not ready while the server has not finished its side of the exchange */
    assert_true(kf_tlsrec_ready(p.srv, &watch));
    take_over(&p);
    kf_buf_init(&plain, 1 << 16);
    kf_buf_init(&reply, 4096);
    kf_buf_init(&out, 4096);
    assert_int_equal(SSL_write(p.cli, "0123456789", 10), 10);
    n = BIO_read(p.a, raw, sizeof(raw));
    assert_true(n > 10);
    /* a record arriving in two pieces */
    assert_int_equal(kf_tlsrec_open(p.r, raw, 7, &used, &plain, &reply, &why), KF_TLSREC_OK);
    assert_int_equal(used, 0);
    assert_int_equal(kf_tlsrec_open(p.r, raw, (size_t)n, &used, &plain, &reply, &why),
                     KF_TLSREC_OK);
    assert_int_equal(used, (size_t)n);
    assert_int_equal(plain.len, 10);
    /* a flipped bit fails the tag */
    assert_int_equal(SSL_write(p.cli, "second", 6), 6);
    n = BIO_read(p.a, raw, sizeof(raw));
    raw[n - 3] ^= 1;
    assert_int_equal(kf_tlsrec_open(p.r, raw, (size_t)n, &used, &plain, &reply, &why),
                     KF_TLSREC_BAD);
    assert_non_null(strstr(why, "bad_record_mac"));
    /* a plaintext record type after the handshake */
    raw[0] = 22;
    assert_int_equal(kf_tlsrec_open(p.r, raw, (size_t)n, &used, &plain, &reply, &why),
                     KF_TLSREC_BAD);
    /* an impossible length */
    raw[0] = 23;
    raw[3] = 0xff;
    raw[4] = 0xff;
    assert_int_equal(kf_tlsrec_open(p.r, raw, (size_t)n, &used, &plain, &reply, &why),
                     KF_TLSREC_BAD);
    /* our close_notify reaches the client as one */
    KF_OK_OR_FAIL(kf_tlsrec_close_notify(p.r, &out));
    server_writes(&p, &out);
    assert_int_equal(SSL_read(p.cli, raw, sizeof(raw)), 0);
    assert_int_equal(SSL_get_error(p.cli, 0), SSL_ERROR_ZERO_RETURN);
    ERR_clear_error();
    kf_buf_free(&plain);
    kf_buf_free(&reply);
    kf_buf_free(&out);
    free_pair(&p);
}

static void test_not_taken_over(void **state)
{
    struct pair p;
    struct kf_tlsrec *r = NULL;
    (void)state;
    setup_pair(&p, "TLS_AES_128_GCM_SHA256");
    /* a KeyUpdate while OpenSSL still holds the connection: not followed, so not taken */
    assert_int_equal(SSL_key_update(p.cli, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    some_openssl_traffic(&p, 1);
    assert_false(kf_tlsrec_ready(p.srv, &watch));
    assert_int_not_equal(kf_tlsrec_take(p.srv, &watch, &r), KF_OK);
    assert_null(r);
    kf_err_clear();
    free_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aes128),         cmocka_unit_test(test_aes256),
        cmocka_unit_test(test_chacha),         cmocka_unit_test(test_partial_tampered_and_refusals),
        cmocka_unit_test(test_not_taken_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
