/* identity: who a hub connection is: its certificate, across TLS resumption. */
#include "server/hub/hub_internal.h"

/*
 * The identity a certificate proves: a device id, or a service name and role, and the
 * certificate's validity. `id` gets the CN when it proves none (for the refusal's event). Takes
 * the reference `x`.
 */
static int cert_identity(X509 *x, enum kf_acl_kind *kind, char *id, size_t idcap, char *serial,
                         time_t *not_before, time_t *not_after)
{
    struct kf_cert *cert = x ? kf_cert_wrap(x) : NULL;
    char role[32];
    int ok = 0;

    if (!cert) return 0;
    kf_cert_serial_hex(cert, serial);
    *not_before = kf_cert_not_before(cert);
    *not_after = kf_cert_not_after(cert);
    if (kf_cert_uri_san(cert, KF_URN_DEVICE, id, idcap) == KF_OK) {
        *kind = KF_ACL_DEVICE;
        ok = 1;
    } else if (kf_cert_uri_san(cert, KF_URN_SERVICE, id, idcap) == KF_OK &&
               kf_cert_uri_san(cert, KF_URN_ROLE, role, sizeof(role)) == KF_OK) {
        switch (kf_role_parse(role)) {
        case KF_ROLE_READER: *kind = KF_ACL_READER, ok = 1; break;
        case KF_ROLE_COMMANDER: *kind = KF_ACL_COMMANDER, ok = 1; break;
        default: break;
        }
    }
    if (ok && kf_id_check("id", id) != KF_OK) ok = 0;
    kf_err_clear();
    if (!ok) kf_cert_subject_cn(cert, id, idcap);
    kf_err_clear();
    kf_cert_free(cert);
    return ok;
}

/*
 * The identity the handshake proved, or that the resumed session brought back, and whether its
 * certificate stands now: a resumed session had no chain check of OpenSSL's, so its certificate
 * is judged here as a full handshake's is (revoked first, as OpenSSL orders it, then its
 * validity). NULL when it may go on; else the reason and `*message`.
 */
const char *kf_hub_identify(struct hconn *c, const char **message)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->head.bev);
    X509 *x = SSL_get1_peer_certificate(ssl);
    struct kf_snapshot *reg;
    time_t now = time(NULL);
    int ok, revoked;

    if (!x)
        ok = c->resumed_ident && kf_id_valid(c->id);
    else
        ok = cert_identity(x, &c->kind, c->id, sizeof(c->id), c->serial, &c->not_before,
                           &c->not_after);
    if (!ok) {
        *message = "the certificate names no keyfleet device or service with a role";
        return "no_identity";
    }
    snprintf(c->key, sizeof(c->key), "%c:%s", c->kind == KF_ACL_DEVICE ? 'd' : 's', c->id);
    reg = kf_snapshot_get(c->hw->hub->snapshot);
    revoked = kf_snapshot_cert_revoked(reg, c->serial);
    kf_snapshot_release(reg);
    if (revoked) {
        *message = "the certificate is revoked";
        return "revoked";
    }
    if (now > c->not_after) {
        *message = c->tls_resumed ? "the certificate of the resumed session has expired"
                                  : "the certificate has expired";
        return "expired";
    }
    if (now < c->not_before) {
        *message = "the certificate is not valid yet";
        return "not_yet_valid";
    }
    return NULL;
}

/* The session of `ssl` lasts no longer than the certificate that proved it. */
static void session_bound(SSL_SESSION *sess, time_t not_after)
{
    long left = (long)(not_after - SSL_SESSION_get_time(sess));
    if (left < 1) left = 1;
    if (left < SSL_SESSION_get_timeout(sess)) SSL_SESSION_set_timeout(sess, left);
}

/* Stateless tickets: each ticket's lifetime ends with the certificate in it. */
int kf_hub_ticket_gen_cb(SSL *ssl, void *arg)
{
    SSL_SESSION *sess = SSL_get0_session(ssl);
    X509 *peer = sess ? SSL_SESSION_get0_peer(sess) : NULL;
    (void)arg;
    if (peer) session_bound(sess, kf_asn1_time(X509_get0_notAfter(peer)));
    return 1;
}

/* ... and a ticket whose certificate no longer stands is not resumed (a full handshake instead). */
SSL_TICKET_RETURN kf_hub_ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
                                       size_t name_len, SSL_TICKET_STATUS status, void *arg)
{
    X509 *peer = sess ? SSL_SESSION_get0_peer(sess) : NULL;
    time_t now = time(NULL);
    (void)ssl;
    (void)name;
    (void)name_len;
    (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        if (!peer || X509_cmp_time(X509_get0_notAfter(peer), &now) < 0 ||
            X509_cmp_time(X509_get0_notBefore(peer), &now) > 0)
            return SSL_TICKET_RETURN_IGNORE;
        return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
    case SSL_TICKET_FATAL_ERR_MALLOC:
    case SSL_TICKET_FATAL_ERR_OTHER: return SSL_TICKET_RETURN_ABORT;
    default: return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
}

/*
 * The session cache's view of an identity: kind, id and serial (NUL-terminated), then the
 * certificate's notBefore and notAfter (8 bytes each, as int64_t).
 */
size_t kf_hub_sess_ident_cb(SSL *ssl, X509 *peer, uint8_t *out, time_t *not_after)
{
    enum kf_acl_kind kind = KF_ACL_DEVICE;
    char id[KF_ID_MAX + 1], serial[KF_SERIAL_HEX_MAX];
    time_t nb, na;
    int64_t times[2];
    size_t il, sl, n;
    if (!peer) {
        /* a new ticket on a resumed connection: the identity it was resumed with */
        struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
        if (!c || !c->resumed_ident) return 0;
        kind = c->kind;
        snprintf(id, sizeof(id), "%s", c->id);
        snprintf(serial, sizeof(serial), "%s", c->serial);
        nb = c->not_before;
        na = c->not_after;
    } else {
        X509_up_ref(peer); /* cert_identity takes one reference */
        if (!cert_identity(peer, &kind, id, sizeof(id), serial, &nb, &na)) return 0;
    }
    il = strlen(id);
    sl = strlen(serial);
    n = 1 + il + 1 + sl + 1;
    if (n + sizeof(times) > KF_SESSCACHE_IDENT_MAX) return 0;
    out[0] = (uint8_t)kind;
    memcpy(out + 1, id, il + 1);
    memcpy(out + 2 + il, serial, sl + 1);
    times[0] = (int64_t)nb;
    times[1] = (int64_t)na;
    memcpy(out + n, times, sizeof(times));
    *not_after = na;
    return n + sizeof(times);
}

void kf_hub_sess_resumed_cb(SSL *ssl, const uint8_t *ident, size_t len)
{
    struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
    const char *id = (const char *)ident + 1, *serial;
    int64_t times[2];
    size_t il, sl, strs;
    if (!c || len < 3 + sizeof(times)) return;
    strs = len - sizeof(times); /* kind, id, serial */
    il = strnlen(id, strs - 1);
    if (il + 2 >= strs || il >= sizeof(c->id)) return;
    serial = id + il + 1;
    sl = strnlen(serial, strs - il - 2);
    if (1 + il + 1 + sl + 1 != strs || sl >= sizeof(c->serial)) return;
    memcpy(times, ident + strs, sizeof(times));
    c->kind = (enum kf_acl_kind)ident[0];
    memcpy(c->id, id, il + 1);
    memcpy(c->serial, serial, sl + 1);
    c->not_before = (time_t)times[0];
    c->not_after = (time_t)times[1];
    c->resumed_ident = 1;
}

/* Runs in the handshake: the chain must reach keyfleet's issuing CA and not be revoked. */
int kf_hub_verify_cb(void *arg, struct ssl_st *ssl, struct kf_cert *leaf, struct kf_cert **chain,
                     size_t n)
{
    struct kf_hubd *h = arg;
    struct hconn *c = SSL_get_ex_data(ssl, kf_tls_ex_index());
    struct kf_snapshot *reg = kf_snapshot_get(h->snapshot);
    struct kf_verify_result res;
    enum kf_err rc;

    memset(&res, 0, sizeof(res));
    rc = kf_trust_verify(reg->operational, leaf, chain, n, time(NULL), KF_PURPOSE_CLIENT, &res);
    kf_snapshot_release(reg);
    if (rc && c) {
        const char *r = kf_verify_reason_name(res.reason);
        snprintf(c->auth_reason, sizeof(c->auth_reason), "%s",
                 res.reason == KF_VERIFY_UNKNOWN_ISSUER ? "unknown_ca" : r);
        if (kf_cert_uri_san(leaf, KF_URN_DEVICE, c->id, sizeof(c->id)) == KF_OK)
            c->kind = KF_ACL_DEVICE;
        else
            kf_cert_subject_cn(leaf, c->id, sizeof(c->id));
    }
    kf_err_clear();
    return rc == KF_OK;
}
