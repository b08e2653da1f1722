/* keyfleet audit ... */
#include <stdio.h>
#include <ctype.h>
#include <string.h>

#include "cli/cli.h"
#include "common/timefmt.h"
#include "server/ca/checkpoint.h"

static enum kf_err audit_row_cb(const struct kf_audit_rec *r, void *arg)
{
    struct kf_cli_list *l = arg;
    char seq[24];
    if (l->arr) {
        json_t *detail = json_loads(r->detail ? r->detail : "{}", 0, NULL);
        return kf_cli_list_json(
            l, json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:s, s:s}", "seq", (json_int_t)r->seq,
                         "time", kf_cli_time_ms(r->time_ms), "actor", r->actor, "action", r->action,
                         "object", r->object, "detail",
                         detail ? detail : json_string(r->detail ? r->detail : ""), "prev_hash",
                         r->prev_hash, "hash", r->hash));
    }
    snprintf(seq, sizeof(seq), "%lld", (long long)r->seq);
    return kf_cli_table_add(&l->t, seq, kf_cli_time_ms(r->time_ms), r->actor, r->action, r->object,
                            r->detail ? r->detail : "");
}

struct audit_query {
    int64_t since_ms;
    struct kf_cli_list *l;
};

static enum kf_err audit_query_cb(struct kf_txn *txn, void *arg)
{
    struct audit_query *q = arg;
    return kf_txn_audit_list(txn, q->since_ms, audit_row_cb, q->l);
}

int kf_cmd_audit_list(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"since", required_argument, NULL, 's'},
                                         {NULL, 0, NULL, 0}};
    struct kf_cli_list l;
    struct audit_query q = {0, &l};
    time_t since = 0;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 's') {
            if (kf_time_parse(optarg, &since)) return kf_cli_usage(c, "--since: %s", kf_errmsg());
        } else {
            return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    q.since_ms = (int64_t)since * 1000;
    kf_cli_list_init(c, &l, 6, "SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "DETAIL");
    return kf_cli_list_run(c, &l, audit_query_cb, &q, "no audit records");
}

int kf_cmd_audit_verify(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"head", required_argument, NULL, 'H'},
                                         {NULL, 0, NULL, 0}};
    struct kf_audit_verdict v;
    struct kf_checkpoint_verdict cv;
    struct kf_cert *issuer = NULL;
    char path[KF_CONF_PATH_MAX];
    struct kf_txn *txn = NULL;
    const char *head = NULL;
    enum kf_err rc;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'H') {
            /* Hashes are kept in lower case; accept them as people paste them. */
            for (char *p = optarg; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            head = optarg;
            if (strlen(head) != 64 || strspn(head, "0123456789abcdef") != 64)
                return kf_cli_usage(c, "--head takes a SHA-256 hash: 64 lower-case hex digits");
        } else {
            return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    memset(&v, 0, sizeof(v));
    memset(&cv, 0, sizeof(cv));
    /* The checkpoints' signatures are checked with the issuing CA as the deployment holds it on
     * disk: the copy in the store is as writable as the log. */
    rc = kf_deploy_path(c->deploy, c->deploy->cfg.ca.issuing_cert, path, sizeof(path));
    if (!rc) rc = kf_cert_load_file(path, &issuer);
    if (rc) return kf_cli_fail(c, kf_wrap(rc, "cannot check the audit checkpoints"));
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_audit_verify(txn, head, &v);
    if (rc == KF_OK || (rc == KF_E_TAMPERED && v.fault == KF_AUDIT_HEAD)) {
        /* The chain holds (maybe short of an expected head): do the signed checkpoints agree? */
        enum kf_err crc = kf_checkpoint_verify(txn, issuer, &cv);
        if (crc == KF_E_TAMPERED && (cv.fault != KF_AUDIT_HEAD || rc == KF_OK)) {
            v.fault = cv.fault;
            v.seq = cv.seq;
            snprintf(v.message, sizeof(v.message), "%s", cv.message);
            rc = crc;
        } else if (crc && crc != KF_E_TAMPERED) {
            rc = crc;
        }
    }
    kf_txn_end(txn);
    kf_cert_free(issuer);
    if (rc && rc != KF_E_TAMPERED) return kf_cli_fail(c, rc);
    if (c->json) {
        json_t *j = json_pack("{s:b, s:I, s:s, s:I, s:I, s:I}", "intact", rc == KF_OK, "records",
                              (json_int_t)v.records, "head", v.head, "checkpoints",
                              (json_int_t)cv.checkpoints, "checkpoint_seq",
                              (json_int_t)cv.newest_seq, "uncovered", (json_int_t)cv.uncovered);
        if (cv.newest_seq)
            json_object_set_new(j, "checkpoint_time",
                                json_string(kf_cli_time_ms(cv.newest_time_ms)));
        if (rc) {
            json_object_set_new(j, "fault", json_string(kf_audit_fault_name(v.fault)));
            json_object_set_new(j, "seq", json_integer(v.seq));
            json_object_set_new(j, "message", json_string(v.message));
        }
        kf_cli_print_json(j);
    } else if (rc) {
        fprintf(stderr, "audit log TAMPERED: %s\n", v.message);
    } else {
        printf("audit log intact: %lld records, head %s\n", (long long)v.records,
               v.head[0] ? v.head : "(empty)");
        if (cv.newest_seq)
            printf("signed checkpoints: %lld, the newest of record %lld (%s); %lld record%s after "
                   "it covered by the chain alone\n",
                   (long long)cv.checkpoints, (long long)cv.newest_seq,
                   kf_cli_time_ms(cv.newest_time_ms), (long long)cv.uncovered,
                   cv.uncovered == 1 ? "" : "s");
        else if (v.records)
            printf("no signed checkpoint yet: the chain alone covers the log (keyfleetd signs one "
                   "every [audit] checkpoint_s)\n");
        printf("(keep the head: `keyfleet audit verify --head %s` later also catches records cut "
               "off the end)\n",
               v.head[0] ? v.head : "HASH");
    }
    return rc ? KF_EXIT_FAIL : KF_EXIT_OK;
}
