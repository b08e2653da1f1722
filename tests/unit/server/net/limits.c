/* limits: connections per address and in all, the handshake budget, and per-address rates. */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "server/net/limits.h"

static struct kf_ipaddr v4(const char *text)
{
    struct sockaddr_in sin;
    struct kf_ipaddr ip;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, text, &sin.sin_addr), 1);
    KF_OK_OR_FAIL(kf_ipaddr_from_sockaddr((struct sockaddr *)&sin, &ip));
    return ip;
}

static struct kf_ipaddr v6(const char *text)
{
    struct sockaddr_in6 sin6;
    struct kf_ipaddr ip;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
    KF_OK_OR_FAIL(kf_ipaddr_from_sockaddr((struct sockaddr *)&sin6, &ip));
    return ip;
}

static struct kf_limits *make(unsigned per_ip, unsigned total, double rate, double burst,
                              unsigned handshakes)
{
    struct kf_limits_conf c = {.max_conns_per_ip = per_ip,
                               .max_conns = total,
                               .rate_per_ip = rate,
                               .burst_per_ip = burst,
                               .max_handshakes = handshakes};
    struct kf_limits *l = NULL;
    KF_OK_OR_FAIL(kf_limits_new(&c, &l));
    return l;
}

static void test_addresses(void **state)
{
    struct kf_ipaddr a = v4("192.0.2.1"), b = v6("2001:db8::1");
    struct sockaddr sa;
    char text[64];
    kf_ipaddr_text(&a, text, sizeof(text));
    assert_string_equal(text, "192.0.2.1");
    kf_ipaddr_text(&b, text, sizeof(text));
    assert_string_equal(text, "2001:db8::1");
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    KF_EXPECT_ERR(KF_E_INVALID, kf_ipaddr_from_sockaddr(&sa, &a));
    KF_EXPECT_MSG("not an IP address");
}

static void test_connections_per_address(void **state)
{
    struct kf_limits *l = make(2, 0, 0, 1, 0);
    struct kf_ipaddr a = v4("192.0.2.1"), b = v4("192.0.2.2");
    int over = 0;
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_PER_IP);
    /* Another address is counted on its own. */
    assert_int_equal(kf_limits_conn_open(l, &b, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_connections(l), 3);
    kf_limits_conn_close(l, &a, 1);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_PER_IP);
    kf_limits_conn_close(l, &a, 1);
    kf_limits_conn_close(l, &a, 1);
    kf_limits_conn_close(l, &b, 1);
    assert_int_equal(kf_limits_connections(l), 0);
    assert_int_equal(kf_limits_handshakes(l), 0);
    kf_limits_free(l);
}

static void test_connections_in_all(void **state)
{
    struct kf_limits *l = make(0, 3, 0, 1, 0);
    /* four networks: one alone may hold only half of the connections */
    struct kf_ipaddr ip[4] = {v4("10.0.1.1"), v4("10.0.2.1"), v4("10.0.3.1"), v4("10.0.4.1")};
    int over = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kf_limits_conn_open(l, &ip[i], 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &ip[3], 0, &over), KF_LIMITS_TOTAL);
    kf_limits_conn_close(l, &ip[0], 1);
    assert_int_equal(kf_limits_conn_open(l, &ip[3], 0, &over), KF_LIMITS_OK);
    for (int i = 1; i < 4; i++)
        kf_limits_conn_close(l, &ip[i], 1);
    kf_limits_free(l);
}

/* Beyond the budget a connection is still counted, but flagged: it gets 503 after its handshake. */
static void test_handshake_budget(void **state)
{
    struct kf_limits *l = make(0, 0, 0, 1, 4);
    /* four networks: one network alone may hold only half of the budget */
    struct kf_ipaddr a[5] = {v4("192.0.2.9"), v4("198.51.100.9"), v4("203.0.113.9"),
                             v4("192.0.3.9"), v4("192.0.4.9")};
    int over = -1;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(kf_limits_conn_open(l, &a[i], 0, &over), KF_LIMITS_OK);
        assert_int_equal(over, 0);
    }
    assert_int_equal(kf_limits_conn_open(l, &a[4], 0, &over), KF_LIMITS_OK);
    assert_int_equal(over, 1);
    assert_int_equal(kf_limits_handshakes(l), 5);
    /* Two finish their handshakes: there is room again. */
    kf_limits_handshake_done(l, &a[0]);
    kf_limits_handshake_done(l, &a[1]);
    kf_limits_conn_close(l, &a[4], 1); /* the fifth closes before its handshake finished */
    assert_int_equal(kf_limits_handshakes(l), 2);
    assert_int_equal(kf_limits_conn_open(l, &a[4], 0, &over), KF_LIMITS_OK);
    assert_int_equal(over, 0);
    kf_limits_free(l);
}

/*
 * One address, one network (IPv4 /24, IPv6 /64): each holds at most its share of the
 * connections and of the handshakes in flight; another network is not touched by it.
 */
static void test_shares_per_address_and_network(void **state)
{
    struct kf_limits_conf c = {.max_conns = 100,
                               .max_conns_per_ip = 10,
                               .max_conns_per_net = 20,
                               .burst_per_ip = 1,
                               .max_handshakes = 100,
                               .max_handshakes_per_ip = 3,
                               .max_handshakes_per_net = 5};
    struct kf_limits *l = NULL;
    struct kf_ipaddr a1 = v4("192.0.2.1"), a2 = v4("192.0.2.2"), a3 = v4("192.0.2.3"),
                     b = v4("192.0.3.1");
    struct kf_ipaddr v6a = v6("2001:db8:1:2::1"), v6b = v6("2001:db8:1:2:ffff::9"),
                     v6c = v6("2001:db8:1:3::1");
    int over = 0;

    KF_OK_OR_FAIL(kf_limits_new(&c, &l));
    for (int i = 0; i < 3; i++)
        assert_int_equal(kf_limits_conn_open(l, &a1, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a1, 0, &over), KF_LIMITS_HANDSHAKES_PER_IP);
    assert_string_equal(kf_limits_verdict_text(KF_LIMITS_HANDSHAKES_PER_IP),
                        "too many TLS handshakes in flight from this address");
    /* the same /24: two more handshakes for the network, then none */
    assert_int_equal(kf_limits_conn_open(l, &a2, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a2, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a2, 0, &over), KF_LIMITS_HANDSHAKES_PER_NET);
    /* another /24 is its own */
    assert_int_equal(kf_limits_conn_open(l, &b, 0, &over), KF_LIMITS_OK);
    /* handshakes done: now connections count, per address then per network */
    for (int i = 0; i < 3; i++)
        kf_limits_handshake_done(l, &a1);
    kf_limits_handshake_done(l, &a2);
    kf_limits_handshake_done(l, &a2);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(kf_limits_conn_open(l, &a1, 0, &over), KF_LIMITS_OK);
        kf_limits_handshake_done(l, &a1);
    }
    assert_int_equal(kf_limits_conn_open(l, &a1, 0, &over), KF_LIMITS_PER_IP);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(kf_limits_conn_open(l, &a2, 0, &over), KF_LIMITS_OK);
        kf_limits_handshake_done(l, &a2);
    }
    assert_int_equal(kf_limits_conn_open(l, &a3, 0, &over), KF_LIMITS_PER_NET);
    /* IPv6: one /64, whatever the interface identifiers */
    for (int i = 0; i < 3; i++)
        assert_int_equal(kf_limits_conn_open(l, &v6a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &v6b, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &v6b, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &v6b, 0, &over), KF_LIMITS_HANDSHAKES_PER_NET);
    assert_int_equal(kf_limits_conn_open(l, &v6c, 0, &over), KF_LIMITS_OK);
    kf_limits_free(l);
}

/* Whatever is configured, a network holds at most half of a global budget. */
static void test_share_never_the_whole(void **state)
{
    struct kf_limits_conf c = {.max_conns = 10,
                               .max_conns_per_ip = 1000,
                               .max_conns_per_net = 1000,
                               .burst_per_ip = 1,
                               .max_handshakes = 4,
                               .max_handshakes_per_ip = 0,
                               .max_handshakes_per_net = 0};
    struct kf_limits *l = NULL;
    struct kf_ipaddr a = v4("192.0.2.1"), b = v4("198.51.100.1");
    int over = 0;
    KF_OK_OR_FAIL(kf_limits_new(&c, &l));
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_HANDSHAKES_PER_IP);
    assert_int_equal(kf_limits_conn_open(l, &b, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &b, 0, &over), KF_LIMITS_OK);
    assert_int_equal(over, 0);
    for (int i = 0; i < 2; i++) {
        kf_limits_handshake_done(l, &a);
        kf_limits_handshake_done(l, &b);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
        kf_limits_handshake_done(l, &a);
    }
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_PER_IP); /* 5 of 10 */
    kf_limits_free(l);
}

static void test_rate(void **state)
{
    struct kf_limits *l = make(0, 0, 2, 3, 0);
    struct kf_ipaddr a = v4("198.51.100.7"), b = v4("198.51.100.8");
    int64_t t = 1000000;
    /* The burst, then a wait of whole seconds, at least one. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(kf_limits_request(l, &a, t), 0);
    assert_int_equal(kf_limits_request(l, &a, t), 1);
    assert_int_equal(kf_limits_request(l, &b, t), 0);
    /* Two per second: after half a second, one more. */
    assert_int_equal(kf_limits_request(l, &a, t + 500), 0);
    assert_int_equal(kf_limits_request(l, &a, t + 500), 1);
    /* A long pause refills up to the burst, not beyond. */
    t += 60000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kf_limits_request(l, &a, t), 0);
    assert_int_equal(kf_limits_request(l, &a, t), 1);
    kf_limits_free(l);
}

static void test_slow_rate_retry_after(void **state)
{
    struct kf_limits *l = make(0, 0, 0.1, 1, 0); /* one request every ten seconds */
    struct kf_ipaddr a = v6("2001:db8::7");
    assert_int_equal(kf_limits_request(l, &a, 5000), 0);
    assert_int_equal(kf_limits_request(l, &a, 5000), 10);
    assert_int_equal(kf_limits_request(l, &a, 9000), 6);
    kf_limits_free(l);
}

/* SIGHUP: a new configuration applies at once, and counts already taken stay. */
static void test_configure(void **state)
{
    struct kf_limits *l = make(1, 0, 0, 1, 0);
    struct kf_limits_conf c = {.max_conns_per_ip = 3, .rate_per_ip = 1, .burst_per_ip = 1};
    struct kf_ipaddr a = v4("203.0.113.5");
    int over = 0;
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_PER_IP);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kf_limits_request(l, &a, 0), 0); /* no rate limit yet */
    kf_limits_configure(l, &c);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_OK);
    assert_int_equal(kf_limits_conn_open(l, &a, 0, &over), KF_LIMITS_PER_IP);
    assert_int_equal(kf_limits_request(l, &a, 100), 0);
    assert_int_equal(kf_limits_request(l, &a, 100), 1);
    assert_int_equal(kf_limits_connections(l), 3);
    for (int i = 0; i < 3; i++)
        kf_limits_conn_close(l, &a, 1);
    kf_limits_free(l);
}

/*
 * The table is bounded: with every slot held by an address with an open connection, a new
 * address is refused; once those close, their slots are reused and new addresses get in.
 */
static void test_table_bounded_and_reused(void **state)
{
    enum { N = 70000 }; /* more than the table holds */
    struct kf_limits *l = make(0, 0, 0, 1, 0);
    static struct kf_ipaddr ips[N];
    static unsigned char open[N];
    int over = 0, full = 0;
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof(text), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        ips[i] = v4(text);
        enum kf_limits_verdict v = kf_limits_conn_open(l, &ips[i], 0, &over);
        if (v == KF_LIMITS_OK)
            open[i] = 1;
        else if (v == KF_LIMITS_TABLE_FULL)
            full++;
        else
            fail_msg("unexpected verdict %d", v);
    }
    assert_true(full > 0);
    assert_true(kf_limits_connections(l) <= 65536);
    for (int i = 0; i < N; i++)
        if (open[i]) kf_limits_conn_close(l, &ips[i], 1);
    assert_int_equal(kf_limits_connections(l), 0);
    /* The past takes no room: the addresses refused before now get in. */
    for (int i = 0; i < N; i++) {
        if (open[i]) continue;
        assert_int_equal(kf_limits_conn_open(l, &ips[i], 0, &over), KF_LIMITS_OK);
        kf_limits_conn_close(l, &ips[i], 1);
    }
    kf_limits_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_connections_per_address),
        cmocka_unit_test(test_connections_in_all),
        cmocka_unit_test(test_handshake_budget),
        cmocka_unit_test(test_shares_per_address_and_network),
        cmocka_unit_test(test_share_never_the_whole),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_slow_rate_retry_after),
        cmocka_unit_test(test_configure),
        cmocka_unit_test(test_table_bounded_and_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
