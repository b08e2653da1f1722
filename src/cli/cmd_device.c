/* keyfleet device ... */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/pki_crl.h"
#include "server/ops/fleet.h"

static json_t *device_json(const struct kf_device_rec *d)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", d->id, "status",
                     kf_device_status_name(d->status), "enrollment", d->enrollment, "hub", d->hub,
                     "created", kf_cli_time(d->created), "updated", kf_cli_time(d->updated));
}

json_t *kf_cli_cert_json(const struct kf_cert_rec *r)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "serial", r->serial,
                          "device", r->device_id, "profile", r->profile, "issuer", r->issuer,
                          "subject", r->subject ? r->subject : "", "status",
                          kf_cert_status_name(r->status), "not_before", kf_cli_time(r->not_before),
                          "not_after", kf_cli_time(r->not_after), "sha256", r->fingerprint);
    if (j && r->service[0]) json_object_set_new(j, "service", json_string(r->service));
    if (j && r->status == KF_CERT_REVOKED) {
        json_object_set_new(j, "revoked_at", json_string(kf_cli_time(r->revoked_at)));
        json_object_set_new(j, "revocation_reason",
                            json_string(kf_crl_reason_name(r->reason)
                                            ? kf_crl_reason_name(r->reason)
                                            : "unspecified"));
    }
    return j;
}

static enum kf_err device_row_cb(const struct kf_device_rec *d, void *arg)
{
    struct kf_cli_list *l = arg;
    if (l->arr) return kf_cli_list_json(l, device_json(d));
    return kf_cli_table_add(&l->t, d->id, kf_device_status_name(d->status), d->enrollment, d->hub,
                            kf_cli_time(d->created));
}

struct device_query {
    int status;
    const char *enrollment;
    struct kf_cli_list *l;
};

static enum kf_err device_query_cb(struct kf_txn *txn, void *arg)
{
    struct device_query *q = arg;
    return kf_txn_device_list(txn, q->status, q->enrollment, device_row_cb, q->l);
}

int kf_cmd_device_list(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"status", required_argument, NULL, 's'},
                                         {"enrollment", required_argument, NULL, 'e'},
                                         {NULL, 0, NULL, 0}};
    struct kf_cli_list l;
    struct device_query q = {0, NULL, &l};
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 's') {
            q.status = kf_device_status_parse(optarg);
            if (q.status < 0) return kf_cli_usage(c, "--status is active, disabled or revoked");
        } else if (opt == 'e') {
            q.enrollment = optarg;
        } else {
            return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    kf_cli_list_init(c, &l, 5, "ID", "STATUS", "ENROLLMENT", "HUB", "CREATED");
    return kf_cli_list_run(c, &l, device_query_cb, &q, "no devices");
}

static enum kf_err cert_of_device_cb(const struct kf_cert_rec *r, void *arg)
{
    struct kf_cli_list *l = arg;
    if (l->arr) return kf_cli_list_json(l, kf_cli_cert_json(r));
    return kf_cli_table_add(&l->t, r->serial, kf_cert_status_name(r->status),
                            kf_cli_time(r->not_before), kf_cli_time(r->not_after));
}

int kf_cmd_device_show(struct kf_cli *c, int argc, char **argv)
{
    struct kf_device_rec d;
    struct kf_registration_rec reg;
    struct kf_cli_list l;
    struct kf_txn *txn = NULL;
    const char *id;
    int have_reg = 0;
    enum kf_err rc;
    int r = kf_cli_parse_name(c, argc, argv, NULL, NULL, NULL, "device", &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    kf_cli_list_init(c, &l, 4, "SERIAL", "STATUS", "NOT BEFORE", "NOT AFTER");
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_device_get(txn, id, &d);
    if (!rc) {
        enum kf_err rr = kf_txn_registration_get(txn, id, &reg);
        have_reg = rr == KF_OK;
        rc = kf_txn_cert_list(txn, id, 0, KF_LIST_ALL, cert_of_device_cb, &l);
    }
    kf_txn_end(txn);
    if (rc) {
        kf_cli_list_free(&l);
        return kf_cli_fail(c, rc);
    }
    if (c->json) {
        json_t *j = device_json(&d);
        json_object_set_new(j, "certificates", l.arr);
        l.arr = NULL;
        if (have_reg)
            json_object_set_new(
                j, "registration",
                json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "first_at", kf_cli_time(reg.first_at),
                          "last_at", kf_cli_time(reg.last_at), "renew_after",
                          kf_cli_time(reg.renew_after), "source_ip", reg.source_ip, "certificate",
                          reg.cert_serial, "count", (json_int_t)reg.count));
        kf_cli_print_json(j);
    } else {
        printf("id           %s\n", d.id);
        printf("status       %s\n", kf_device_status_name(d.status));
        printf("enrollment   %s\n", d.enrollment[0] ? d.enrollment : "(none)");
        printf("hub          %s\n", d.hub[0] ? d.hub : "(not assigned)");
        printf("created      %s\n", kf_cli_time(d.created));
        printf("updated      %s\n", kf_cli_time(d.updated));
        if (have_reg)
            printf("registered   %lld times, last %s from %s\n", (long long)reg.count,
                   kf_cli_time(reg.last_at), reg.source_ip);
        printf("\ncertificates:\n");
        kf_cli_table_print(&l.t, "(none)");
    }
    kf_cli_list_free(&l);
    return KF_EXIT_OK;
}

static int set_enabled(struct kf_cli *c, int argc, char **argv, int enable)
{
    const char *id;
    int changed = 0;
    enum kf_err rc;
    int r = kf_cli_parse_name(c, argc, argv, NULL, NULL, NULL, "device", &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_fleet_set_enabled(c->deploy, c->actor, id, enable, &changed);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:b}", "id", id, "status",
                                    enable ? "active" : "disabled", "changed", changed));
    else
        printf("device %s %s%s\n", id, changed ? "" : "was already ",
               enable ? "enabled" : "disabled");
    return KF_EXIT_OK;
}

int kf_cmd_device_disable(struct kf_cli *c, int argc, char **argv)
{
    return set_enabled(c, argc, argv, 0);
}

int kf_cmd_device_enable(struct kf_cli *c, int argc, char **argv)
{
    return set_enabled(c, argc, argv, 1);
}

int kf_cmd_device_revoke(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    const char *id;
    int reason = KF_CRL_UNSPECIFIED, count = 0;
    enum kf_err rc;
    int r = kf_cli_parse_name(c, argc, argv, opts, kf_cli_reason_opt, &reason, "device", &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_fleet_revoke(c->deploy, c->actor, id, reason, &count);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:s, s:i}", "id", id, "status", "revoked", "reason",
                                    kf_crl_reason_name(reason), "certificates_revoked", count));
    else
        printf("device %s revoked (%s); %d certificate%s revoked; CRL published\n", id,
               kf_crl_reason_name(reason), count, count == 1 ? "" : "s");
    return KF_EXIT_OK;
}

static int move_opt(struct kf_cli *c, int opt, void *arg)
{
    const char **to = arg;
    (void)c;
    if (opt != 'e') return 1;
    *to = optarg;
    return 0;
}

int kf_cmd_device_move(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"enrollment", required_argument, NULL, 'e'},
                                         {NULL, 0, NULL, 0}};
    const char *id, *to = NULL;
    char from[KF_ID_MAX + 1] = "";
    enum kf_err rc;
    int r = kf_cli_parse_name(c, argc, argv, opts, move_opt, &to, "device", &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (!to) return kf_cli_usage(c, "which enrollment? give --enrollment ID");
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_fleet_move(c->deploy, c->actor, id, to, from);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:s, s:b}", "id", id, "from", from, "enrollment",
                                    to, "changed", strcmp(from, to) != 0));
    else if (strcmp(from, to) == 0)
        printf("device %s was already in enrollment %s\n", id, to);
    else
        printf("device %s moved from enrollment %s to %s\n", id, from[0] ? from : "(none)", to);
    return KF_EXIT_OK;
}
