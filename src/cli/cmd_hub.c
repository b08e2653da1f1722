/* keyfleet hub ... */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "server/ops/hubs.h"

static json_t *hub_json(const struct kf_hub_rec *h)
{
    return json_pack("{s:s, s:s, s:i, s:b, s:s}", "name", h->name, "endpoint", h->endpoint,
                     "weight", h->weight, "enabled", h->enabled, "created",
                     kf_cli_time(h->created));
}

/*
 * Parses a hub's NAME (positional or --name) and, when `weight` is given, its weight (a second
 * positional or --weight). 0 on success, -1 after --help, else the exit code.
 */
static int name_args(struct kf_cli *c, int argc, char **argv, const char **name,
                     const char **weight)
{
    static const struct option opts[] = {{"name", required_argument, NULL, 'N'},
                                         {"weight", required_argument, NULL, 'w'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    *name = NULL;
    if (weight) *weight = NULL;
    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'N')
            *name = optarg;
        else if (opt == 'w' && weight)
            *weight = optarg;
        else if (opt == 'w')
            return kf_cli_usage(c, "does not take --weight");
        else if (opt == 'h')
            return -1;
        else
            return KF_EXIT_USAGE;
    }
    if (optind < argc && !*name) *name = argv[optind++];
    if (weight && optind < argc && !*weight) *weight = argv[optind++];
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!*name) return kf_cli_usage(c, "which hub? give its NAME");
    if (weight && !*weight)
        return kf_cli_usage(c, "give the new weight (0 to %d)", KF_HUB_WEIGHT_MAX);
    return 0;
}

int kf_cmd_hub_add(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'N'},
        {"endpoint", required_argument, NULL, 'e'},
        {"weight", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    const char *name = NULL, *endpoint = NULL;
    char canon[KF_ENDPOINT_MAX];
    long weight = KF_HUB_WEIGHT_DEFAULT;
    enum kf_err rc;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'N': name = optarg; break;
        case 'e': endpoint = optarg; break;
        case 'w':
            weight = kf_cli_number(c, "--weight", optarg, 0, KF_HUB_WEIGHT_MAX);
            if (weight < 0) return KF_EXIT_USAGE;
            break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!name) return kf_cli_usage(c, "--name is required");
    if (!endpoint) return kf_cli_usage(c, "--endpoint is required (host:port)");
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_hubs_add(c->deploy, c->actor, name, endpoint, (int)weight);
    if (rc) return kf_cli_fail(c, rc);
    /* What was stored: the endpoint in its canonical form. */
    if (kf_hubs_endpoint_check(endpoint, canon, sizeof(canon)) != KF_OK)
        snprintf(canon, sizeof(canon), "%s", endpoint);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:i, s:b}", "name", name, "endpoint", canon,
                                    "weight", (int)weight, "enabled", 1));
    else
        printf("hub %s added: %s, weight %ld%s\n", name, canon, weight,
               weight == 0 ? " (takes no new devices until its weight is raised)" : "");
    return KF_EXIT_OK;
}

static enum kf_err hub_row_cb(const struct kf_hub_rec *h, void *arg)
{
    struct kf_cli_list *l = arg;
    char weight[16];
    if (l->arr) return kf_cli_list_json(l, hub_json(h));
    snprintf(weight, sizeof(weight), "%d", h->weight);
    return kf_cli_table_add(&l->t, h->name, h->endpoint, weight, h->enabled ? "yes" : "no",
                            kf_cli_time(h->created));
}

static enum kf_err hub_query_cb(struct kf_txn *txn, void *arg)
{
    return kf_txn_hub_list(txn, hub_row_cb, arg);
}

int kf_cmd_hub_list(struct kf_cli *c, int argc, char **argv)
{
    struct kf_cli_list l;
    int opt;

    opt = kf_cli_getopt(c, argc, argv, "", NULL);
    if (opt != -1) return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    kf_cli_list_init(c, &l, 5, "NAME", "ENDPOINT", "WEIGHT", "ENABLED", "CREATED");
    return kf_cli_list_run(c, &l, hub_query_cb, &l, "no hubs (keyfleet hub add makes one)");
}

static enum kf_err static_name_cb(const struct kf_enrollment_rec *e, void *arg)
{
    if (json_array_append_new(arg, json_string(e->id)) != 0)
        return kf_fail(KF_E_NOMEM, "out of memory listing enrollments");
    return KF_OK;
}

int kf_cmd_hub_show(struct kf_cli *c, int argc, char **argv)
{
    struct kf_hub_rec h;
    struct kf_txn *txn = NULL;
    json_t *statics;
    int64_t all = 0, active = 0;
    const char *name;
    enum kf_err rc;
    int r = name_args(c, argc, argv, &name, NULL);

    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    statics = json_array();
    if (!statics) return kf_cli_fail(c, kf_fail(KF_E_NOMEM, "out of memory"));
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_hub_get(txn, name, &h);
    if (!rc) rc = kf_hubs_count_devices(txn, name, &all, &active);
    if (!rc) rc = kf_hubs_static_enrollments(txn, name, static_name_cb, statics);
    kf_txn_end(txn);
    if (rc) {
        json_decref(statics);
        return kf_cli_fail(c, rc);
    }
    if (c->json) {
        json_t *j = hub_json(&h);
        if (j) {
            json_object_set_new(j, "devices", json_integer(all));
            json_object_set_new(j, "active_devices", json_integer(active));
            json_object_set(j, "static_enrollments", statics);
        }
        kf_cli_print_json(j);
    } else {
        size_t i;
        json_t *v;
        printf("name           %s\n", h.name);
        printf("endpoint       %s\n", h.endpoint);
        printf("weight         %d%s\n", h.weight, h.weight == 0 ? " (takes no new devices)" : "");
        printf("enabled        %s\n", h.enabled ? "yes" : "no");
        printf("devices        %lld (%lld active)\n", (long long)all, (long long)active);
        printf("static hub of  ");
        if (json_array_size(statics) == 0) printf("no enrollment");
        json_array_foreach(statics, i, v) printf("%s%s", i ? ", " : "", json_string_value(v));
        printf("\n");
        printf("created        %s\n", kf_cli_time(h.created));
    }
    json_decref(statics);
    return KF_EXIT_OK;
}

static int set_enabled(struct kf_cli *c, int argc, char **argv, int enable)
{
    const char *name;
    int changed = 0;
    enum kf_err rc;
    int r = name_args(c, argc, argv, &name, NULL);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_hubs_set_enabled(c->deploy, c->actor, name, enable, &changed);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(
            json_pack("{s:s, s:b, s:b}", "name", name, "enabled", enable, "changed", changed));
    else
        printf("hub %s %s%s\n", name, changed ? "" : "was already ",
               enable ? "enabled" : "disabled");
    return KF_EXIT_OK;
}

int kf_cmd_hub_enable(struct kf_cli *c, int argc, char **argv)
{
    return set_enabled(c, argc, argv, 1);
}

int kf_cmd_hub_disable(struct kf_cli *c, int argc, char **argv)
{
    return set_enabled(c, argc, argv, 0);
}

int kf_cmd_hub_weight(struct kf_cli *c, int argc, char **argv)
{
    const char *name, *text;
    long weight;
    int changed = 0;
    enum kf_err rc;
    int r = name_args(c, argc, argv, &name, &text);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    weight = kf_cli_number(c, "the weight", text, 0, KF_HUB_WEIGHT_MAX);
    if (weight < 0) return KF_EXIT_USAGE;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_hubs_set_weight(c->deploy, c->actor, name, (int)weight, &changed);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(
            json_pack("{s:s, s:i, s:b}", "name", name, "weight", (int)weight, "changed", changed));
    else
        printf("hub %s %s weight %ld%s\n", name, changed ? "now has" : "already had", weight,
               weight == 0 ? " (takes no new devices)" : "");
    return KF_EXIT_OK;
}

int kf_cmd_hub_remove(struct kf_cli *c, int argc, char **argv)
{
    const char *name;
    enum kf_err rc;
    int r = name_args(c, argc, argv, &name, NULL);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_hubs_remove(c->deploy, c->actor, name);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:b}", "name", name, "removed", 1));
    else
        printf("hub %s removed; its devices get another hub when they next register\n", name);
    return KF_EXIT_OK;
}
