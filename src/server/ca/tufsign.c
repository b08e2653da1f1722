#include "server/ca/tufsign.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "common/buf.h"
#include "common/pki_key.h"
#include "common/timefmt.h"

struct kf_tuf_signer {
    enum kf_tuf_role role;
    struct kf_key *key;
    json_t *kobj;
    char keyid[KF_TUF_KEYID_HEX];
};

static const char *role_name(enum kf_tuf_role r)
{
    return r == KF_TUF_TIMESTAMP ? "timestamp" : r == KF_TUF_SNAPSHOT ? "snapshot" : "?";
}

enum kf_err kf_tuf_signer_open(enum kf_tuf_role role, const char *key_uri,
                               struct kf_tuf_signer **out)
{
    struct kf_tuf_signer *s;
    struct kf_buf pem;
    EVP_PKEY *pk = NULL;
    BIO *bio = NULL;
    enum kf_err rc;

    *out = NULL;
    if (role != KF_TUF_TIMESTAMP && role != KF_TUF_SNAPSHOT)
        return kf_fail(KF_E_INVALID, "only the timestamp and snapshot roles are online");
    s = calloc(1, sizeof(*s));
    if (!s) return kf_fail(KF_E_NOMEM, "out of memory");
    s->role = role;
    rc = kf_key_load(key_uri, NULL, &s->key);
    if (rc) {
        char shown[512];
        kf_key_uri_redact(key_uri, shown, sizeof(shown));
        rc = kf_wrap(rc, "the %s key %s", role_name(role), shown);
    }
    if (!rc && kf_key_type(s->key) != KF_KEY_ED25519 && kf_key_type(s->key) != KF_KEY_EC_P256)
        rc = kf_fail(KF_E_INVALID, "the %s key is %s: online keys are ed25519 or P-256",
                     role_name(role), kf_key_type_name(kf_key_type(s->key)));
    kf_buf_init(&pem, 16384);
    if (!rc) rc = kf_key_public_pem(s->key, &pem);
    if (!rc) bio = BIO_new_mem_buf(pem.data, (int)pem.len);
    if (!rc) pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    if (!rc && !pk)
        rc = kf_fail(KF_E_CRYPTO, "cannot read the %s key's public half", role_name(role));
    if (!rc) rc = kf_tuf_key_of(pk, &s->kobj, s->keyid);
    BIO_free(bio);
    EVP_PKEY_free(pk);
    kf_buf_free(&pem);
    if (rc) {
        kf_tuf_signer_free(s);
        return rc;
    }
    *out = s;
    return KF_OK;
}

const json_t *kf_tuf_signer_key(const struct kf_tuf_signer *s)
{
    return s->kobj;
}

const char *kf_tuf_signer_keyid(const struct kf_tuf_signer *s)
{
    return s->keyid;
}

/* What the role's meta may name, each {"version": N, ...} with N from 1 to `max`. */
static enum kf_err meta_ok(enum kf_tuf_role role, const json_t *meta, int64_t max)
{
    const char *want = role == KF_TUF_TIMESTAMP ? "snapshot.json" : "targets.json";
    const json_t *e = json_object_get(meta, want), *v = json_object_get(e, "version");
    if (!json_is_object(meta) || json_object_size(meta) != 1 || !json_is_object(e))
        return kf_fail(KF_E_DENIED, "%s metadata must name %s alone in its meta", role_name(role),
                       want);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return kf_fail(KF_E_DENIED, "%s metadata: %s version must be 1 to %lld (published)",
                       role_name(role), want, (long long)max);
    return KF_OK;
}

enum kf_err kf_tuf_signer_sign(struct kf_tuf_signer *s, json_t *doc, int64_t published,
                               int64_t meta_max)
{
    const json_t *sg = json_object_get(doc, "signed");
    const char *type = json_string_value(json_object_get(sg, "_type"));
    const char *exp = json_string_value(json_object_get(sg, "expires"));
    long days = s->role == KF_TUF_TIMESTAMP ? KF_TUF_TIMESTAMP_DAYS : KF_TUF_SNAPSHOT_DAYS;
    time_t now = time(NULL), expires = 0;
    json_t *parsed = NULL;
    struct kf_buf text;
    char canon[32];
    int64_t version = 0;
    enum kf_tuf_refusal r;
    enum kf_err rc;

    if (!type || strcmp(type, role_name(s->role)) != 0)
        return kf_fail(KF_E_DENIED, "the %s key signs %s metadata only, not %s", role_name(s->role),
                       role_name(s->role), type ? type : "this");
    /* as every client will read it: the fields, their types, the expiry's exact form */
    kf_buf_init(&text, 1u << 20);
    rc = kf_tuf_text(doc, &text);
    r = rc ? KF_TUF_MALFORMED : kf_tuf_parse(text.data, text.len, s->role, &parsed, &version);
    kf_buf_free(&text);
    json_decref(parsed);
    if (rc || r) {
        kf_err_clear();
        return kf_fail(KF_E_DENIED, "%s metadata a client would refuse (%s)", type,
                       kf_tuf_refusal_name(r ? r : KF_TUF_MALFORMED));
    }
    if (published < 0 || version != published + 1)
        return kf_fail(KF_E_DENIED, "%s metadata version %lld: the next is %lld", type,
                       (long long)version, (long long)published + 1);
    if (!exp || kf_time_parse(exp, &expires) != KF_OK) {
        kf_err_clear();
        return kf_fail(KF_E_DENIED, "%s metadata without an expiry", type);
    }
    kf_tuf_time(expires, canon, sizeof(canon));
    if (strcmp(canon, exp) != 0 || expires <= now || expires > now + days * 86400L + 60)
        return kf_fail(KF_E_DENIED, "%s metadata must expire within %ld day%s, at %s", type, days,
                       days == 1 ? "" : "s", canon);
    rc = meta_ok(s->role, json_object_get(sg, "meta"), meta_max);
    if (rc) return rc;
    return kf_tuf_sign_with(doc, s->keyid, kf_tuf_sign_key, s->key);
}

void kf_tuf_signer_free(struct kf_tuf_signer *s)
{
    if (!s) return;
    kf_key_free(s->key);
    json_decref(s->kobj);
    free(s);
}
