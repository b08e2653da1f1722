/* keyfleet service add|issue|list|show|revoke: the identities of back-end applications. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/ident.h"
#include "common/file.h"
#include "common/pem.h"
#include "common/pki_crl.h"
#include "common/pki_csr.h"
#include "common/pki_key.h"
#include "server/ops/services.h"
#include "server/ca/signer.h"

struct issue_opts {
    const char *name, *role, *csr, *key_out, *out;
    long days;
};

/* The CSR to certify: read from --csr, or made here for a new key written to --key-out. */
static enum kf_err get_csr(const struct issue_opts *o, struct kf_csr **csr)
{
    struct kf_key *key = NULL;
    struct kf_buf text;
    enum kf_err rc;

    *csr = NULL;
    kf_buf_init(&text, KF_CSR_MAX + 1);
    if (o->csr) {
        rc = kf_buf_read_file(&text, o->csr);
        if (!rc) rc = kf_csr_parse(text.data, text.len, csr);
        if (rc) kf_wrap(rc, "file %s", o->csr);
    } else {
        /* The key never leaves this machine but into its 0600 file, written first. */
        rc = kf_key_generate(KF_KEY_EC_P256, &key);
        if (!rc) rc = kf_key_save(key, o->key_out, NULL);
        if (!rc) rc = kf_csr_create(key, o->name, &text);
        if (!rc) rc = kf_csr_parse(text.data, text.len, csr);
    }
    kf_key_free(key);
    kf_buf_free(&text);
    return rc;
}

/* Prints (or writes to --out) the certificate and the issuing CA after it. */
static int deliver(struct kf_cli *c, const struct issue_opts *o, const char *role,
                   struct kf_cert *cert)
{
    struct kf_signer *signer;
    struct kf_buf pem;
    char serial[KF_SERIAL_HEX_MAX];
    enum kf_err rc;

    kf_buf_init(&pem, 256 * 1024);
    kf_cert_serial_hex(cert, serial);
    rc = kf_cert_pem(cert, &pem);
    if (!rc) rc = kf_deploy_issuer(c->deploy, &signer);
    if (!rc) rc = kf_cert_pem(kf_signer_cert(signer), &pem);
    if (!rc && o->out) {
        rc = kf_file_write(o->out, pem.data, pem.len, 0644, 0);
        if (rc) {
            /* Issued and recorded already: hand it over rather than lose it. */
            kf_wrap(rc,
                    "certificate %s was issued and recorded but could not be written (it is "
                    "printed on standard output instead)",
                    serial);
            fputs(kf_buf_str(&pem), stdout);
        }
    }
    if (rc) {
        kf_buf_free(&pem);
        return kf_cli_fail(c, rc);
    }
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s}", "name", o->name,
                                    "role", role, "serial", serial, "not_after",
                                    kf_cli_time(kf_cert_not_after(cert)), "key", o->key_out,
                                    "certificate", o->out, "pem", kf_buf_str(&pem)));
    else if (o->out)
        printf("service %s (%s): certificate %s written to %s%s%s (valid until %s)\n", o->name,
               role, serial, o->out, o->key_out ? ", its key to " : "",
               o->key_out ? o->key_out : "", kf_cli_time(kf_cert_not_after(cert)));
    else
        fputs(kf_buf_str(&pem), stdout);
    kf_buf_free(&pem);
    return KF_EXIT_OK;
}

/* add and issue: the same options, the role only for add. */
static int issue_cmd(struct kf_cli *c, int argc, char **argv, int add)
{
    static const struct option opts[] = {{"name", required_argument, NULL, 'n'},
                                         {"role", required_argument, NULL, 'r'},
                                         {"csr", required_argument, NULL, 'c'},
                                         {"key-out", required_argument, NULL, 'k'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"days", required_argument, NULL, 'd'},
                                         {NULL, 0, NULL, 0}};
    struct issue_opts o = {NULL, NULL, NULL, NULL, NULL, 0};
    struct kf_csr *csr = NULL;
    struct kf_cert *cert = NULL;
    enum kf_err rc;
    int opt, code;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'n': o.name = optarg; break;
        case 'r':
            if (!add) return kf_cli_usage(c, "--role is given when the service is added");
            o.role = optarg;
            break;
        case 'c': o.csr = optarg; break;
        case 'k': o.key_out = optarg; break;
        case 'o': o.out = optarg; break;
        case 'd':
            o.days = kf_cli_number(c, "--days", optarg, 1, 3650);
            if (o.days < 0) return KF_EXIT_USAGE;
            break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc && !o.name && !add) o.name = argv[optind++];
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!o.name) return kf_cli_usage(c, "which service? give its --name");
    if (add && !o.role) return kf_cli_usage(c, "--role is required: " KF_ROLE_CHOICES);
    if (add && !kf_role_parse(o.role))
        return kf_cli_usage(c, "--role is " KF_ROLE_CHOICES ", not '%s'", o.role);
    if (!o.csr == !o.key_out)
        return kf_cli_usage(c, "give --csr FILE (the service's own key) or --key-out FILE (a new "
                               "key made here)");
    /* Refuse before issuing: every file the answer needs must be writable. */
    if (o.key_out && kf_cli_check_out(c, o.key_out, NULL)) return KF_EXIT_FAIL;
    if (o.out && kf_cli_check_out(c, o.out, NULL)) return KF_EXIT_FAIL;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = get_csr(&o, &csr);
    if (!rc)
        rc = add ? kf_services_add(c->deploy, c->actor, o.name, o.role, csr, (int)o.days, &cert)
                 : kf_services_issue(c->deploy, c->actor, o.name, csr, (int)o.days, &cert);
    kf_csr_free(csr);
    if (rc) {
        /* A key made for a certificate that was refused is of no use: it goes. */
        if (o.key_out) remove(o.key_out);
        return kf_cli_fail(c, rc);
    }
    if (!add) {
        struct kf_txn *txn = NULL;
        struct kf_service_rec s;
        memset(&s, 0, sizeof(s));
        if (kf_store_read(c->deploy->store, &txn) == KF_OK) kf_txn_service_get(txn, o.name, &s);
        kf_txn_end(txn);
        kf_err_clear();
        code = deliver(c, &o, s.role, cert);
    } else {
        code = deliver(c, &o, o.role, cert);
    }
    kf_cert_free(cert);
    return code;
}

int kf_cmd_service_add(struct kf_cli *c, int argc, char **argv)
{
    return issue_cmd(c, argc, argv, 1);
}

int kf_cmd_service_issue(struct kf_cli *c, int argc, char **argv)
{
    return issue_cmd(c, argc, argv, 0);
}

/* ---- list and show ---- */

struct count_arg {
    int valid, all;
};

static enum kf_err count_cb(const struct kf_cert_rec *r, void *arg)
{
    struct count_arg *n = arg;
    n->all++;
    if (r->status == KF_CERT_VALID) n->valid++;
    return KF_OK;
}

static json_t *service_json(const struct kf_service_rec *s)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", s->name, "role", s->role, "status",
                     kf_service_status_name(s->status), "created", kf_cli_time(s->created),
                     "updated", kf_cli_time(s->updated));
}

struct list_arg {
    struct kf_txn *txn;
    struct kf_cli_list *l;
};

static enum kf_err service_row_cb(const struct kf_service_rec *s, void *arg)
{
    struct list_arg *a = arg;
    struct count_arg n = {0, 0};
    char certs[32];
    enum kf_err rc = kf_txn_cert_list_service(a->txn, s->name, count_cb, &n);
    if (rc) return rc;
    if (a->l->arr) {
        json_t *j = service_json(s);
        json_object_set_new(j, "valid_certificates", json_integer(n.valid));
        return kf_cli_list_json(a->l, j);
    }
    snprintf(certs, sizeof(certs), "%d of %d", n.valid, n.all);
    return kf_cli_table_add(&a->l->t, s->name, s->role, kf_service_status_name(s->status), certs,
                            kf_cli_time(s->created));
}

static enum kf_err service_query_cb(struct kf_txn *txn, void *arg)
{
    struct list_arg a = {txn, arg};
    return kf_txn_service_list(txn, service_row_cb, &a);
}

int kf_cmd_service_list(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{NULL, 0, NULL, 0}};
    struct kf_cli_list l;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1)
        return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    kf_cli_list_init(c, &l, 5, "NAME", "ROLE", "STATUS", "VALID CERTS", "CREATED");
    return kf_cli_list_run(c, &l, service_query_cb, &l, "no services");
}

static enum kf_err cert_row_cb(const struct kf_cert_rec *r, void *arg)
{
    struct kf_cli_list *l = arg;
    if (l->arr) return kf_cli_list_json(l, kf_cli_cert_json(r));
    return kf_cli_table_add(&l->t, r->serial, kf_cert_status_name(r->status),
                            kf_cli_time(r->not_before), kf_cli_time(r->not_after));
}

int kf_cmd_service_show(struct kf_cli *c, int argc, char **argv)
{
    struct kf_service_rec s;
    struct kf_cli_list l;
    struct kf_txn *txn = NULL;
    const char *name;
    enum kf_err rc;
    int r = kf_cli_parse_name(c, argc, argv, NULL, NULL, NULL, "service", &name);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    kf_cli_list_init(c, &l, 4, "SERIAL", "STATUS", "NOT BEFORE", "NOT AFTER");
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_service_get(txn, name, &s);
    if (!rc) rc = kf_txn_cert_list_service(txn, name, cert_row_cb, &l);
    kf_txn_end(txn);
    if (rc) {
        kf_cli_list_free(&l);
        return kf_cli_fail(c, rc);
    }
    if (c->json) {
        json_t *j = service_json(&s);
        json_object_set_new(j, "certificates", l.arr);
        l.arr = NULL;
        kf_cli_print_json(j);
    } else {
        printf("name         %s\n", s.name);
        printf("role         %s\n", s.role);
        printf("status       %s\n", kf_service_status_name(s.status));
        printf("created      %s\n", kf_cli_time(s.created));
        printf("updated      %s\n", kf_cli_time(s.updated));
        printf("\ncertificates:\n");
        kf_cli_table_print(&l.t, "(none)");
    }
    kf_cli_list_free(&l);
    return KF_EXIT_OK;
}

int kf_cmd_service_revoke(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    const char *name;
    int reason = KF_CRL_UNSPECIFIED, count = 0;
    enum kf_err rc;
    int r = kf_cli_parse_name(c, argc, argv, opts, kf_cli_reason_opt, &reason, "service", &name);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_services_revoke(c->deploy, c->actor, name, reason, &count);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:s, s:i}", "name", name, "status", "revoked",
                                    "reason", kf_crl_reason_name(reason), "certificates_revoked",
                                    count));
    else
        printf("service %s revoked (%s); %d certificate%s revoked; CRL published\n", name,
               kf_crl_reason_name(reason), count, count == 1 ? "" : "s");
    return KF_EXIT_OK;
}
