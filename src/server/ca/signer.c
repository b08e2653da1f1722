#include "server/ca/signer.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/ident.h"
#include "common/timefmt.h"

struct kf_signer {
    enum kf_signer_role role;
    struct kf_cert *cert;
    struct kf_key *key;
    struct kf_signer_policy policy;
    pthread_mutex_t lock; /* hardware keys take one operation at a time */
    uint64_t count;
};

void kf_signer_policy_default(struct kf_signer_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->max_days[KF_PROFILE_ROOT_CA] = 3650 * 3;
    p->max_days[KF_PROFILE_ISSUING_CA] = 3650;
    p->max_days[KF_PROFILE_DEVICE] = 730;
    p->max_days[KF_PROFILE_SERVICE] = 730;
    p->max_days[KF_PROFILE_SERVER] = 730;
    p->allowed_keys = KF_KEY_ALLOWED_DEFAULT;
    p->min_rsa_bits = KF_KEY_MIN_RSA_BITS;
    p->backdate_seconds = 300;
}

enum kf_err kf_signer_wrap(enum kf_signer_role role, struct kf_cert *cert, struct kf_key *key,
                           struct kf_signer **out)
{
    struct kf_key *pub = NULL;
    struct kf_signer *s = NULL;
    char subject[KF_NAME_MAX];
    enum kf_err rc;

    *out = NULL;
    kf_cert_subject(cert, subject, sizeof(subject));
    rc = kf_cert_check_ca(cert, subject, time(NULL));
    if (rc) goto fail;
    rc = kf_cert_public_key(cert, &pub);
    if (rc) goto fail;
    if (!kf_key_public_equal(pub, key)) {
        rc = kf_fail(KF_E_INVALID, "the %s key is not the key of CA certificate \"%s\"",
                     kf_key_location(key), subject);
        goto fail;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        rc = kf_fail(KF_E_NOMEM, "out of memory");
        goto fail;
    }
    s->role = role;
    s->cert = cert;
    s->key = key;
    kf_signer_policy_default(&s->policy);
    pthread_mutex_init(&s->lock, NULL);
    kf_key_free(pub);
    *out = s;
    return KF_OK;
fail:
    kf_key_free(pub);
    kf_cert_free(cert);
    kf_key_free(key);
    return rc;
}

enum kf_err kf_signer_open(enum kf_signer_role role, const char *cert_path, const char *key_uri,
                           const char *passphrase, struct kf_signer **out)
{
    struct kf_cert *cert = NULL;
    struct kf_key *key = NULL;
    enum kf_err rc;

    *out = NULL;
    rc = kf_cert_load_file(cert_path, &cert);
    if (rc) return kf_wrap(rc, "CA certificate");
    rc = kf_key_load(key_uri, passphrase, &key);
    if (rc) {
        kf_cert_free(cert);
        return kf_wrap(rc, "CA key");
    }
    return kf_signer_wrap(role, cert, key, out);
}

void kf_signer_set_policy(struct kf_signer *s, const struct kf_signer_policy *p)
{
    s->policy = *p;
}

static int profile_allowed(enum kf_signer_role role, enum kf_profile p)
{
    if (role == KF_SIGNER_ROOT) return p == KF_PROFILE_ISSUING_CA;
    return p == KF_PROFILE_DEVICE || p == KF_PROFILE_SERVICE || p == KF_PROFILE_SERVER;
}

static enum kf_err check_request(const struct kf_signer *s, const struct kf_sign_request *r,
                                 time_t now)
{
    const struct kf_signer_policy *p = &s->policy;
    char when[KF_TIME_TEXT_MAX];
    long long days;
    enum kf_err rc;

    if ((unsigned)r->profile > KF_PROFILE_SERVER)
        return kf_fail(KF_E_INVALID, "sign request: unknown profile %d", (int)r->profile);
    if (!profile_allowed(s->role, r->profile))
        return kf_fail(KF_E_DENIED, "the %s CA does not sign %s certificates",
                       s->role == KF_SIGNER_ROOT ? "root" : "issuing", kf_profile_name(r->profile));
    if (r->not_after <= r->not_before)
        return kf_fail(KF_E_INVALID, "sign request: validity ends before it begins");
    if (r->not_before < now - p->backdate_seconds)
        return kf_fail(KF_E_DENIED, "sign request: notBefore is more than %d seconds in the past",
                       p->backdate_seconds);
    /* The allowed backdating does not count against the lifetime, nor in what the message says. */
    days = ((long long)(r->not_after - r->not_before) - p->backdate_seconds + 86399) / 86400;
    if ((long long)(r->not_after - r->not_before) >
        (long long)p->max_days[r->profile] * 86400 + p->backdate_seconds)
        return kf_fail(KF_E_DENIED,
                       "sign request: %lld days of validity; %s certificates get at "
                       "most %d",
                       days, kf_profile_name(r->profile), p->max_days[r->profile]);
    if (r->not_after > kf_cert_not_after(s->cert)) {
        kf_time_rfc3339(kf_cert_not_after(s->cert), when, sizeof(when));
        return kf_fail(KF_E_DENIED,
                       "sign request: the certificate would outlive its CA, which expires on %s",
                       when);
    }
    /* The signer reads the key's bytes itself rather than trusting a key object. */
    rc = kf_spki_check(r->spki, r->spki_len, p->allowed_keys, p->min_rsa_bits, "the key to certify",
                       NULL);
    if (rc) return kf_wrap(rc == KF_E_MALFORMED ? rc : KF_E_DENIED, "sign request");
    if (r->profile == KF_PROFILE_DEVICE) {
        rc = kf_id_check("device id", r->device_id);
        if (rc) return kf_wrap(rc, "sign request");
        if (!r->cn || strcmp(r->cn, r->device_id) != 0)
            return kf_fail(KF_E_INVALID, "sign request: a device certificate's CN must be its id");
    }
    if (r->profile == KF_PROFILE_SERVICE) {
        rc = kf_id_check("service name", r->service);
        if (rc) return kf_wrap(rc, "sign request");
        if (!kf_role_parse(r->role))
            return kf_fail(KF_E_DENIED, "sign request: a service's role must be " KF_ROLE_CHOICES);
        if (!r->cn || strcmp(r->cn, r->service) != 0)
            return kf_fail(KF_E_INVALID,
                           "sign request: a service certificate's CN must be its name");
    }
    return KF_OK;
}

enum kf_err kf_signer_issue(struct kf_signer *s, const struct kf_sign_request *r,
                            struct kf_cert **out)
{
    struct kf_cert_template t;
    enum kf_err rc;

    *out = NULL;
    if (!r->spki || r->spki_len == 0 || r->spki_len > KF_SPKI_MAX)
        return kf_fail(KF_E_MALFORMED, "sign request: no public key, or one over %d bytes",
                       KF_SPKI_MAX);
    rc = check_request(s, r, time(NULL));
    if (rc) return rc;
    memset(&t, 0, sizeof(t));
    t.profile = r->profile;
    t.cn = r->cn;
    t.org = r->org;
    t.spki = r->spki;
    t.spki_len = r->spki_len;
    t.not_before = r->not_before;
    t.not_after = r->not_after;
    t.device_id = r->device_id;
    t.service = r->service;
    t.role = r->role;
    t.dns_names = r->dns_names;
    t.n_dns = r->n_dns;
    t.ip_addrs = r->ip_addrs;
    t.n_ips = r->n_ips;
    pthread_mutex_lock(&s->lock);
    rc = kf_cert_build(&t, s->cert, s->key, out);
    if (!rc) s->count++;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

enum kf_err kf_signer_crl(struct kf_signer *s, const struct kf_revoked *revoked, size_t n,
                          uint64_t number, time_t this_update, time_t next_update,
                          struct kf_crl **out)
{
    enum kf_err rc;
    *out = NULL;
    if (s->role != KF_SIGNER_ISSUING) return kf_fail(KF_E_DENIED, "only the issuing CA signs CRLs");
    if (number == 0) return kf_fail(KF_E_INVALID, "CRL numbers start at 1");
    pthread_mutex_lock(&s->lock);
    rc = kf_crl_build(s->cert, s->key, revoked, n, number, this_update, next_update, out);
    if (!rc) s->count++;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

enum kf_err kf_signer_checkpoint_statement(int64_t seq, const char *head, int64_t time_ms,
                                           struct kf_buf *out)
{
    if (seq < 1 || time_ms < 0 || !head || strlen(head) != 64 ||
        strspn(head, "0123456789abcdef") != 64)
        return kf_fail(KF_E_INVALID, "an audit checkpoint needs a seq >= 1, a SHA-256 head in "
                                     "lower-case hex and a time");
    return kf_buf_appendf(
        out, "keyfleet audit checkpoint v1\nseq %" PRId64 "\nhead %s\ntime %" PRId64 "\n", seq,
        head, time_ms);
}

enum kf_err kf_signer_checkpoint(struct kf_signer *s, int64_t seq, const char *head,
                                 int64_t time_ms, struct kf_buf *sig)
{
    struct kf_buf text;
    enum kf_err rc;
    if (s->role != KF_SIGNER_ISSUING)
        return kf_fail(KF_E_DENIED, "only the issuing CA signs audit checkpoints");
    kf_buf_init(&text, 256);
    rc = kf_signer_checkpoint_statement(seq, head, time_ms, &text);
    if (!rc) {
        pthread_mutex_lock(&s->lock);
        rc = kf_key_sign(s->key, text.data, text.len, sig);
        if (!rc) s->count++;
        pthread_mutex_unlock(&s->lock);
    }
    kf_buf_free(&text);
    return rc;
}

const struct kf_cert *kf_signer_cert(const struct kf_signer *s)
{
    return s->cert;
}

const char *kf_signer_key_location(const struct kf_signer *s)
{
    return kf_key_location(s->key);
}

uint64_t kf_signer_count(const struct kf_signer *s)
{
    return s->count;
}

void kf_signer_free(struct kf_signer *s)
{
    if (!s) return;
    kf_cert_free(s->cert);
    kf_key_free(s->key);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
