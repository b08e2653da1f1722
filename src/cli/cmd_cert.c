/* keyfleet cert ... */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/file.h"
#include "common/pki_crl.h"
#include "common/pki_csr.h"
#include "server/ca/ca.h"

static enum kf_err cert_row_cb(const struct kf_cert_rec *r, void *arg)
{
    struct kf_cli_list *l = arg;
    if (l->arr) return kf_cli_list_json(l, kf_cli_cert_json(r));
    return kf_cli_table_add(&l->t, r->serial, r->profile, r->device_id,
                            kf_cert_status_name(r->status), kf_cli_time(r->not_after),
                            r->subject ? r->subject : "");
}

struct cert_query {
    const char *device;
    int status;
    long limit;
    struct kf_cli_list *l;
};

static enum kf_err cert_query_cb(struct kf_txn *txn, void *arg)
{
    struct cert_query *q = arg;
    return kf_txn_cert_list(txn, q->device, q->status, q->limit, cert_row_cb, q->l);
}

int kf_cmd_cert_list(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"device", required_argument, NULL, 'd'},
                                         {"status", required_argument, NULL, 's'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    struct kf_cli_list l;
    struct cert_query q = {NULL, 0, KF_LIST_ALL, &l};
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'd') {
            q.device = optarg;
        } else if (opt == 's') {
            if (strcmp(optarg, "valid") == 0)
                q.status = KF_CERT_VALID;
            else if (strcmp(optarg, "revoked") == 0)
                q.status = KF_CERT_REVOKED;
            else
                return kf_cli_usage(c, "--status is valid or revoked");
        } else if (opt == 'l') {
            q.limit = kf_cli_number(c, "--limit", optarg, 1, 1000000000L);
            if (q.limit < 0) return KF_EXIT_USAGE;
        } else {
            return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    kf_cli_list_init(c, &l, 6, "SERIAL", "PROFILE", "DEVICE", "STATUS", "NOT AFTER", "SUBJECT");
    return kf_cli_list_run(c, &l, cert_query_cb, &q, "no certificates");
}

static int parse_serial(struct kf_cli *c, int argc, char **argv, const struct option *extra,
                        int *flag, int *reason, const char **serial)
{
    struct option opts[6];
    size_t n = 0;
    int opt;
    for (; extra && extra[n].name; n++)
        opts[n] = extra[n];
    opts[n] = (struct option){NULL, 0, NULL, 0};
    *serial = NULL;
    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'p') {
            *flag = 1;
        } else if (opt == 'r') {
            *reason = kf_crl_reason_parse(optarg);
            if (*reason < 0)
                return kf_cli_usage(c, "unknown reason '%s' (%s)", optarg, kf_crl_reason_names());
        } else {
            return opt == 'h' ? -1 : KF_EXIT_USAGE;
        }
    }
    if (optind < argc) *serial = argv[optind++];
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!*serial) return kf_cli_usage(c, "which certificate? give its SERIAL (keyfleet cert list)");
    /* Serials are accepted as openssl prints them: upper case, leading zeros, colons. */
    {
        static char norm[KF_SERIAL_HEX_MAX];
        if (kf_serial_normalize(*serial, norm) != KF_OK) return kf_cli_usage(c, "%s", kf_errmsg());
        *serial = norm;
    }
    return 0;
}

int kf_cmd_cert_show(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"pem", no_argument, NULL, 'p'}, {NULL, 0, NULL, 0}};
    struct kf_cert_rec rec;
    struct kf_txn *txn = NULL;
    const char *serial;
    int pem = 0, reason = 0;
    enum kf_err rc;
    int r = parse_serial(c, argc, argv, opts, &pem, &reason, &serial);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_cert_get(txn, serial, &rec);
    kf_txn_end(txn);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        json_t *j = kf_cli_cert_json(&rec);
        json_object_set_new(j, "pem", json_string(rec.pem));
        kf_cli_print_json(j);
    } else if (pem) {
        fputs(rec.pem, stdout);
    } else {
        printf("serial       %s\n", rec.serial);
        printf("subject      %s\n", rec.subject);
        printf("profile      %s\n", rec.profile);
        printf("issuer       %s CA\n", rec.issuer);
        printf("device       %s\n", rec.device_id[0] ? rec.device_id : "-");
        printf("not before   %s\n", kf_cli_time(rec.not_before));
        printf("not after    %s\n", kf_cli_time(rec.not_after));
        printf("status       %s\n", kf_cert_status_name(rec.status));
        if (rec.status == KF_CERT_REVOKED)
            printf("revoked      %s (%s)\n", kf_cli_time(rec.revoked_at),
                   kf_crl_reason_name(rec.reason) ? kf_crl_reason_name(rec.reason) : "?");
        printf("sha256       %s\n", rec.fingerprint);
    }
    kf_cert_rec_clear(&rec);
    return KF_EXIT_OK;
}

int kf_cmd_cert_revoke(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    const char *serial;
    int flag = 0, reason = KF_CRL_UNSPECIFIED;
    enum kf_err rc;
    int r = parse_serial(c, argc, argv, opts, &flag, &reason, &serial);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_ca_revoke(c->deploy, c->actor, serial, reason);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:s}", "serial", serial, "status", "revoked",
                                    "reason", kf_crl_reason_name(reason)));
    else
        printf("certificate %s revoked (%s); CRL published\n", serial, kf_crl_reason_name(reason));
    return KF_EXIT_OK;
}

int kf_cmd_cert_issue(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"device", required_argument, NULL, 'd'},
                                         {"csr", required_argument, NULL, 'c'},
                                         {"days", required_argument, NULL, 'n'},
                                         {"out", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    const char *device = NULL, *csr_path = NULL, *out = NULL;
    struct kf_buf text, pem;
    struct kf_csr *csr = NULL;
    struct kf_cert *cert = NULL;
    struct kf_signer *signer;
    char serial[KF_SERIAL_HEX_MAX];
    long days = 0;
    enum kf_err rc;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'd': device = optarg; break;
        case 'c': csr_path = optarg; break;
        case 'o': out = optarg; break;
        case 'n':
            days = kf_cli_number(c, "--days", optarg, 1, 3650);
            if (days < 0) return KF_EXIT_USAGE;
            break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!device || !csr_path) return kf_cli_usage(c, "--device and --csr are required");
    /* Refuse before issuing: a certificate that cannot be delivered must not exist. */
    if (out && kf_cli_check_out(c, out, NULL)) return KF_EXIT_FAIL;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    kf_buf_init(&text, KF_CSR_MAX + 1);
    kf_buf_init(&pem, 256 * 1024);
    rc = kf_buf_read_file(&text, csr_path);
    if (!rc) {
        rc = kf_csr_parse(text.data, text.len, &csr);
        if (rc) kf_wrap(rc, "file %s", csr_path);
    }
    if (!rc) rc = kf_ca_issue_device(c->deploy, c->actor, device, NULL, csr, (int)days, &cert);
    if (!rc) rc = kf_cert_pem(cert, &pem);
    if (!rc) rc = kf_deploy_issuer(c->deploy, &signer);
    if (!rc) rc = kf_cert_pem(kf_signer_cert(signer), &pem);
    if (!rc && out) {
        rc = kf_file_write(out, pem.data, pem.len, 0644, 0);
        if (rc) {
            /* Issued and recorded already: hand it over rather than lose it. */
            kf_cert_serial_hex(cert, serial);
            kf_wrap(rc,
                    "certificate %s was issued and recorded but could not be written (it is "
                    "printed on standard output instead)",
                    serial);
            fputs(kf_buf_str(&pem), stdout);
        }
    }
    if (rc) {
        int code = kf_cli_fail(c, rc);
        kf_buf_free(&text);
        kf_buf_free(&pem);
        kf_csr_free(csr);
        kf_cert_free(cert);
        return code;
    }
    kf_cert_serial_hex(cert, serial);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:s, s:s}", "serial", serial, "device", device,
                                    "not_after", kf_cli_time(kf_cert_not_after(cert)), "pem",
                                    kf_buf_str(&pem)));
    else if (out)
        printf("certificate %s for device %s written to %s (valid until %s)\n", serial, device, out,
               kf_cli_time(kf_cert_not_after(cert)));
    else
        fputs(kf_buf_str(&pem), stdout);
    kf_buf_free(&text);
    kf_buf_free(&pem);
    kf_csr_free(csr);
    kf_cert_free(cert);
    return KF_EXIT_OK;
}
