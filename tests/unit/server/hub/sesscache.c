/*
 * sesscache: the hub's compact session cache, with OpenSSL on both sides of an in-memory
 * mutual-TLS 1.3 connection: a ticket is cached without the client's certificate, a second
 * connection resumes from it and gets the identity back instead, expired sessions are not
 * resumed, the bound holds, and the DER surgery refuses what it does not understand.
 */
#include "testutil.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "server/hub/sesscache.h"

static int idents, resumes;
static char resumed_as[64];
static long cert_life = 3600; /* the peer certificate's notAfter, from now */

static size_t ident_cb(SSL *ssl, X509 *peer, uint8_t *out, time_t *not_after)
{
    (void)ssl;
    idents++;
    *not_after = time(NULL) + cert_life;
    if (!peer) { /* a resumed connection's new ticket */
        memcpy(out, resumed_as, strlen(resumed_as) + 1);
        return strlen(resumed_as) + 1;
    }
    return (size_t)X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
                                             (char *)out, 64) +
           1;
}

static void resumed_cb(SSL *ssl, const uint8_t *ident, size_t len)
{
    (void)ssl;
    resumes++;
    snprintf(resumed_as, sizeof(resumed_as), "%.*s", (int)len, (const char *)ident);
}

static int accept_cb(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

static SSL_CTX *sctx, *cctx;

static void contexts(void)
{
    char path[600];
    assert_int_equal(kf_test_sh("cd '%s' && for n in srv cli; do openssl req -x509 -newkey ec "
                                "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out "
                                "$n.pem -subj /CN=$n -days 2 2>/dev/null; done",
                                kf_test_dir()),
                     0);
    sctx = SSL_CTX_new(TLS_server_method());
    cctx = SSL_CTX_new(TLS_client_method());
#define LOAD(ctx, n)                                                                \
    snprintf(path, sizeof(path), "%s/" n ".pem", kf_test_dir());                    \
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM), 1); \
    snprintf(path, sizeof(path), "%s/" n ".key", kf_test_dir());                    \
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM), 1)
    LOAD(sctx, "srv");
    LOAD(cctx, "cli");
#undef LOAD
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_cb);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, accept_cb);
    SSL_CTX_set_options(sctx, SSL_OP_NO_TICKET); /* stateful: the ticket names a cached session */
    SSL_CTX_set_num_tickets(sctx, 1);
    SSL_CTX_set_session_id_context(sctx, (const unsigned char *)"t", 1);
    SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
}

/* One connection; returns the client's session (owned) and whether the server resumed. */
static SSL_SESSION *connect_once(SSL_SESSION *resume, int *reused, int *peer_seen)
{
    SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
    BIO *a, *b;
    int ds = 0, dc = 0, i;
    char buf[8];
    SSL_SESSION *s;
    assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
    SSL_set_bio(srv, a, a);
    SSL_set_bio(cli, b, b);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    if (resume) SSL_set_session(cli, resume);
    for (i = 0; i < 50 && (!ds || !dc); i++) {
        if (!dc) dc = SSL_do_handshake(cli) == 1;
        if (!ds) ds = SSL_do_handshake(srv) == 1;
    }
    assert_true(ds && dc);
    assert_int_equal(SSL_write(srv, "x", 1), 1);
    assert_int_equal(SSL_read(cli, buf, sizeof(buf)), 1); /* and the ticket */
    *reused = SSL_session_reused(srv);
    *peer_seen = SSL_get0_peer_certificate(srv) != NULL;
    s = SSL_get1_session(cli);
    /* shut down, or OpenSSL marks the client's session not resumable */
    SSL_set_shutdown(cli, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_shutdown(srv);
    SSL_free(srv);
    SSL_free(cli);
    ERR_clear_error();
    return s;
}

static void test_resume_without_certificate(void **state)
{
    static const struct kf_sesscache_hooks hooks = {ident_cb, resumed_cb};
    struct kf_sesscache *sc = NULL;
    SSL_SESSION *s1, *s2, *s3;
    int reused, peer;
    (void)state;

    contexts();
    KF_OK_OR_FAIL(kf_sesscache_new(sctx, 2, 3600, &hooks, &sc));
    s1 = connect_once(NULL, &reused, &peer);
    assert_false(reused);
    assert_true(peer);
    assert_int_equal(idents, 1);
    assert_int_equal(kf_sesscache_count(sc), 1);
    /* a few hundred bytes, not the live object's six thousand */
    assert_true(kf_sesscache_bytes(sc) < 800);
    s2 = connect_once(s1, &reused, &peer);
    assert_true(reused);
    assert_false(peer); /* no certificate in the resumed session: the identity instead */
    assert_int_equal(resumes, 1);
    assert_string_equal(resumed_as, "cli");
    /* the resumption was given a new ticket, itself resumable */
    SSL_SESSION_free(connect_once(s2, &reused, &peer));
    assert_true(reused);
    assert_int_equal(resumes, 2);
    /* the bound: at most two sessions kept */
    s3 = connect_once(NULL, &reused, &peer);
    SSL_SESSION_free(connect_once(NULL, &reused, &peer));
    assert_true(kf_sesscache_count(sc) <= 2);
    SSL_SESSION_free(s1);
    SSL_SESSION_free(s2);
    SSL_SESSION_free(s3);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    kf_sesscache_free(sc);
}

static void test_expired_sessions_are_not_resumed(void **state)
{
    static const struct kf_sesscache_hooks hooks = {ident_cb, resumed_cb};
    struct kf_sesscache *sc = NULL;
    SSL_SESSION *s1;
    int reused, peer, before;
    (void)state;
    contexts();
    KF_OK_OR_FAIL(kf_sesscache_new(sctx, 10, 1, &hooks, &sc));
    s1 = connect_once(NULL, &reused, &peer);
    sleep(2);
    before = resumes;
    SSL_SESSION_free(connect_once(s1, &reused, &peer));
    assert_false(reused);
    assert_int_equal(resumes, before);
    assert_true(peer); /* a full handshake, with the certificate */
    SSL_SESSION_free(s1);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    kf_sesscache_free(sc);
}

/* A session lasts no longer than the certificate that proved it. */
static void test_sessions_end_with_the_certificate(void **state)
{
    static const struct kf_sesscache_hooks hooks = {ident_cb, resumed_cb};
    struct kf_sesscache *sc = NULL;
    SSL_SESSION *s1;
    int reused, peer, before;
    (void)state;
    contexts();
    KF_OK_OR_FAIL(kf_sesscache_new(sctx, 10, 3600, &hooks, &sc));
    cert_life = 1;
    s1 = connect_once(NULL, &reused, &peer);
    assert_int_equal(kf_sesscache_count(sc), 1);
    /* the session's own timeout says so too, for OpenSSL's check */
    sleep(2);
    before = resumes;
    SSL_SESSION_free(connect_once(s1, &reused, &peer));
    assert_false(reused);
    assert_int_equal(resumes, before);
    assert_true(peer);
    SSL_SESSION_free(s1);
    /* an expired certificate's session is not kept at all */
    cert_life = -5;
    before = (int)kf_sesscache_count(sc);
    SSL_SESSION_free(connect_once(NULL, &reused, &peer));
    assert_int_equal((int)kf_sesscache_count(sc), before);
    cert_life = 3600;
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    kf_sesscache_free(sc);
}

static void test_strip_peer(void **state)
{
    /* SEQUENCE { INTEGER 1, [3] { OCTET STRING "x" }, [4] OCTET STRING "y" } */
    static const uint8_t der[] = {0x30, 0x0c, 0x02, 0x01, 0x01, 0xa3, 0x03,
                                  0x04, 0x01, 'x',  0xa4, 0x02, 0x04, 0x00};
    static const uint8_t want[] = {0x30, 0x07, 0x02, 0x01, 0x01, 0xa4, 0x02, 0x04, 0x00};
    uint8_t out[64];
    (void)state;
    assert_int_equal(kf_sesscache_strip_peer(der, sizeof(der), out, sizeof(out)), sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    /* truncated, a bad outer tag, trailing bytes, a length past the end: refused */
    assert_int_equal(kf_sesscache_strip_peer(der, sizeof(der) - 1, out, sizeof(out)), -1);
    out[0] = 0x31;
    memcpy(out + 1, der + 1, sizeof(der) - 1);
    assert_int_equal(kf_sesscache_strip_peer(out, sizeof(der), out + 32, 32), -1);
    {
        uint8_t bad[] = {0x30, 0x03, 0x02, 0x05, 0x01};
        assert_int_equal(kf_sesscache_strip_peer(bad, sizeof(bad), out, sizeof(out)), -1);
    }
    assert_int_equal(kf_sesscache_strip_peer(der, sizeof(der), out, 4), -1);
    /* nothing to strip: the same bytes back, in exactly their own room */
    assert_int_equal(kf_sesscache_strip_peer(want, sizeof(want), out, sizeof(want)), sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strip_peer),
        cmocka_unit_test(test_resume_without_certificate),
        cmocka_unit_test(test_expired_sessions_are_not_resumed),
        cmocka_unit_test(test_sessions_end_with_the_certificate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
