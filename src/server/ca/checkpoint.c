#include "server/ca/checkpoint.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/pki_key.h"
#include "common/timefmt.h"

static const char hexdigits[] = "0123456789abcdef";

static char *hex_of(const unsigned char *p, size_t n)
{
    char *out = malloc(2 * n + 1);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[p[i] >> 4];
        out[2 * i + 1] = hexdigits[p[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

/* Decodes lower-case hex into `out`; -1 when it is not that. */
static long unhex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n; i += 2) {
        const char *a = strchr(hexdigits, hex[i]), *b = strchr(hexdigits, hex[i + 1]);
        if (!hex[i] || !hex[i + 1] || !a || !b) return -1;
        out[i / 2] = (unsigned char)((a - hexdigits) << 4 | (b - hexdigits));
    }
    return (long)(n / 2);
}

/* ---- making one ---- */

static enum kf_err newest_cb(const struct kf_checkpoint_rec *cp, void *arg)
{
    *(int64_t *)arg = cp->seq; /* listed in seq order: the last one seen is the newest */
    return KF_OK;
}

static enum kf_err insert_cb(struct kf_txn *txn, void *arg)
{
    return kf_txn_checkpoint_insert(txn, arg);
}

enum kf_err kf_checkpoint_make(struct kf_store *store, struct kf_signer *signer, int *made)
{
    struct kf_checkpoint_rec cp;
    struct kf_txn *txn = NULL;
    struct kf_buf sig;
    int64_t newest = 0;
    enum kf_err rc;

    if (made) *made = 0;
    memset(&cp, 0, sizeof(cp));
    rc = kf_store_read(store, &txn);
    if (!rc) rc = kf_txn_audit_head(txn, &cp.seq, cp.head);
    if (!rc) rc = kf_txn_checkpoint_list(txn, newest_cb, &newest);
    kf_txn_end(txn);
    if (rc) return kf_wrap(rc, "cannot checkpoint the audit log");
    if (cp.seq == 0 || newest >= cp.seq) return KF_OK;
    cp.time_ms = kf_now_ms();
    kf_cert_serial_hex(kf_signer_cert(signer), cp.signer);
    kf_buf_init(&sig, 4096);
    rc = kf_signer_checkpoint(signer, cp.seq, cp.head, cp.time_ms, &sig);
    if (!rc && !(cp.signature = hex_of(sig.data, sig.len)))
        rc = kf_fail(KF_E_NOMEM, "out of memory");
    kf_buf_free(&sig);
    if (!rc) rc = kf_store_write(store, insert_cb, &cp);
    if (rc == KF_E_EXISTS)
        rc = KF_OK; /* another process made it meanwhile */
    else if (!rc && made)
        *made = 1;
    free(cp.signature);
    return rc ? kf_wrap(rc, "cannot checkpoint the audit log") : KF_OK;
}

/* ---- checking them ---- */

struct mark {
    int64_t seq, time_ms;
    char head[KF_HASH_HEX];
};

struct collect {
    struct mark *marks;
    size_t n, cap;
};

static enum kf_err collect_cb(const struct kf_checkpoint_rec *cp, void *arg)
{
    struct collect *c = arg;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        void *p = realloc(c->marks, ncap * sizeof(*c->marks));
        if (!p) return kf_fail(KF_E_NOMEM, "out of memory reading the audit checkpoints");
        c->marks = p;
        c->cap = ncap;
    }
    c->marks[c->n].seq = cp->seq;
    c->marks[c->n].time_ms = cp->time_ms;
    memcpy(c->marks[c->n].head, cp->head, KF_HASH_HEX);
    c->n++;
    return KF_OK;
}

/* The records' hashes at the checkpoints' seqs, found in one walk of the log. */
struct walk {
    const struct collect *c;
    size_t next;           /* the next mark to look for */
    size_t mismatch;       /* the first mark whose record has another hash (c->n: none) */
    char got[KF_HASH_HEX]; /* that record's hash */
    int64_t last_seq;
};

static enum kf_err walk_cb(const struct kf_audit_rec *r, void *arg)
{
    struct walk *w = arg;
    w->last_seq = r->seq;
    while (w->next < w->c->n && w->c->marks[w->next].seq < r->seq)
        w->next++; /* a checkpoint of a seq the log lacks: the chain check says so */
    if (w->next < w->c->n && w->c->marks[w->next].seq == r->seq) {
        if (w->mismatch == w->c->n && strcmp(w->c->marks[w->next].head, r->hash) != 0) {
            w->mismatch = w->next;
            memcpy(w->got, r->hash, sizeof(w->got));
        }
        w->next++;
    }
    return KF_OK;
}

/* Whether checkpoint `seq`'s signature (looked up again, for its bytes) verifies with `key`. */
struct sigcheck {
    int64_t seq;
    const struct kf_key *key;
    int found, valid;
};

static enum kf_err sigcheck_cb(const struct kf_checkpoint_rec *cp, void *arg)
{
    struct sigcheck *s = arg;
    unsigned char sig[2048];
    struct kf_buf text;
    long n;
    if (cp->seq != s->seq) return KF_OK;
    s->found = 1;
    n = unhex(cp->signature, sig, sizeof(sig));
    kf_buf_init(&text, 256);
    s->valid = n > 0 &&
               kf_signer_checkpoint_statement(cp->seq, cp->head, cp->time_ms, &text) == KF_OK &&
               kf_key_verify(s->key, text.data, text.len, sig, (size_t)n) == KF_OK;
    kf_buf_free(&text);
    kf_err_clear();
    return KF_OK;
}

static int signature_valid(struct kf_txn *txn, const struct kf_key *key, int64_t seq)
{
    struct sigcheck s = {seq, key, 0, 0};
    if (kf_txn_checkpoint_list(txn, sigcheck_cb, &s) != KF_OK) kf_err_clear();
    return s.found && s.valid;
}

enum kf_err kf_checkpoint_verify(struct kf_txn *txn, const struct kf_cert *issuer,
                                 struct kf_checkpoint_verdict *v)
{
    struct collect c = {NULL, 0, 0};
    struct walk w;
    struct kf_key *key = NULL;
    char when[KF_TIME_TEXT_MAX];
    const struct mark *newest;
    enum kf_err rc;

    memset(v, 0, sizeof(*v));
    rc = kf_txn_checkpoint_list(txn, collect_cb, &c);
    if (!rc && c.n) rc = kf_cert_public_key(issuer, &key);
    if (rc || !c.n) goto out;
    memset(&w, 0, sizeof(w));
    w.c = &c;
    w.mismatch = c.n;
    rc = kf_txn_audit_list(txn, INT64_MIN, walk_cb, &w);
    if (rc) goto out;
    newest = &c.marks[c.n - 1];
    v->checkpoints = (int64_t)c.n;
    v->newest_seq = newest->seq;
    v->newest_time_ms = newest->time_ms;
    v->uncovered = w.last_seq > newest->seq ? w.last_seq - newest->seq : 0;
    kf_time_rfc3339((time_t)(newest->time_ms / 1000), when, sizeof(when));
    if (w.mismatch < c.n) {
        const struct mark *m = &c.marks[w.mismatch];
        v->seq = m->seq;
        if (signature_valid(txn, key, m->seq)) {
            /* The checkpoint before it still holds: the change lies between the two. */
            int64_t from = w.mismatch ? c.marks[w.mismatch - 1].seq + 1 : 1;
            v->fault = KF_AUDIT_REWRITTEN;
            snprintf(v->message, sizeof(v->message),
                     "the log was rewritten: record %" PRId64 " no longer has the hash a "
                     "checkpoint signed for it, though the chain verifies (it was recomputed); "
                     "the change is in records %" PRId64 " to %" PRId64,
                     m->seq, from, m->seq);
        } else {
            v->fault = KF_AUDIT_FORGED;
            snprintf(v->message, sizeof(v->message),
                     "the checkpoint of record %" PRId64 " is forged: its signature does not "
                     "verify with the issuing CA's key",
                     m->seq);
        }
    } else if (!signature_valid(txn, key, newest->seq)) {
        v->fault = KF_AUDIT_FORGED;
        v->seq = newest->seq;
        snprintf(v->message, sizeof(v->message),
                 "the newest checkpoint (record %" PRId64 ") is forged: its signature does not "
                 "verify with the issuing CA's key",
                 newest->seq);
    } else if (w.last_seq < newest->seq) {
        v->fault = KF_AUDIT_HEAD;
        v->seq = w.last_seq + 1;
        snprintf(v->message, sizeof(v->message),
                 "the log was cut off: a checkpoint signed at %s vouches for record %" PRId64
                 ", and the log now ends at record %" PRId64,
                 when, newest->seq, w.last_seq);
    }
    if (v->fault) rc = kf_fail(KF_E_TAMPERED, "%s", v->message);
out:
    kf_key_free(key);
    free(c.marks);
    return rc;
}

#define A struct kf_audit_conf
static const struct kf_conf_key audit_keys[] = {
    KF_CONF_NUM_KEY(
        A, "checkpoint_s", checkpoint_s, 1, 86400, 300,
        "keyfleetd signs a checkpoint of the audit log's head with the issuing CA's key "
        "this\noften (seconds), when it moved, so that a rewrite of the log is caught by\n"
        "keyfleet audit verify without a head kept elsewhere."),
};
#undef A
const struct kf_conf_section kf_audit_section = {"audit", NULL, audit_keys,
                                                 KF_ARRAY_LEN(audit_keys)};
