/* keyfleet events list: the security events in the store. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/timefmt.h"

static enum kf_err event_row_cb(const struct kf_event_rec *e, void *arg)
{
    struct kf_cli_list *l = arg;
    char who[KF_ID_MAX + 16];
    if (l->arr) {
        json_t *detail = json_loads(e->detail ? e->detail : "{}", 0, NULL);
        return kf_cli_list_json(
            l, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "id", (json_int_t)e->id,
                         "time", kf_cli_time_ms(e->time_ms), "type", e->type, "severity",
                         e->severity, "device", e->device, "claimed", e->claimed, "source",
                         e->source, "ip", e->ip, "detail", detail ? detail : json_object()));
    }
    /* An identity that did not verify is shown as what it is: a claim. */
    snprintf(who, sizeof(who), "%s%s", e->device[0] || !e->claimed[0] ? "" : "claimed:",
             e->device[0] ? e->device : e->claimed);
    return kf_cli_table_add(&l->t, kf_cli_time_ms(e->time_ms), e->severity, e->type, who, e->ip,
                            e->detail ? e->detail : "");
}

struct event_query {
    int64_t since_ms;
    const char *type, *device;
    long limit;
    struct kf_cli_list *l;
};

static enum kf_err event_query_cb(struct kf_txn *txn, void *arg)
{
    struct event_query *q = arg;
    return kf_txn_event_list(txn, q->since_ms, q->type, q->device, q->limit, event_row_cb, q->l);
}

int kf_cmd_events_list(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"since", required_argument, NULL, 's'},
                                         {"type", required_argument, NULL, 't'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    struct kf_cli_list l;
    struct event_query q = {0, NULL, NULL, KF_LIST_ALL, &l};
    time_t since = 0;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 's':
            if (kf_time_parse(optarg, &since)) return kf_cli_usage(c, "--since: %s", kf_errmsg());
            break;
        case 't': q.type = optarg; break;
        case 'd': q.device = optarg; break;
        case 'l':
            q.limit = kf_cli_number(c, "--limit", optarg, 1, 1000000000L);
            if (q.limit < 0) return KF_EXIT_USAGE;
            break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    q.since_ms = (int64_t)since * 1000;
    kf_cli_list_init(c, &l, 6, "TIME", "SEVERITY", "TYPE", "DEVICE", "IP", "DETAIL");
    return kf_cli_list_run(c, &l, event_query_cb, &q, "no events");
}
