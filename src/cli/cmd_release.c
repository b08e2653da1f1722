/* keyfleet release ...: the deployment's repository of signed updates (server/ops/updates). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/ops/updates.h"

#define IMAGES_MAX 64

static int no_args(struct kf_cli *c, int argc, char **argv)
{
    int opt = kf_cli_getopt(c, argc, argv, "", NULL);
    if (opt != -1) return opt == 'h' ? -1 : KF_EXIT_USAGE;
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    return 0;
}

int kf_cmd_release_keys(struct kf_cli *c, int argc, char **argv)
{
    json_t *keys = NULL;
    enum kf_err rc;
    int r = no_args(c, argc, argv);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_updates_keys(c->deploy, c->actor, &keys);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        kf_cli_print_json(keys);
        return KF_EXIT_OK;
    }
    /* One key object a file, as keyfleet-release init-root --timestamp/--snapshot reads it. */
    for (int i = 0; i < 2; i++) {
        const char *role = i ? "snapshot" : "timestamp";
        char *text = json_dumps(json_object_get(keys, role), JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s: %s\n", role, text ? text : "?");
        free(text);
    }
    json_decref(keys);
    return KF_EXIT_OK;
}

int kf_cmd_release_add(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"root", required_argument, NULL, 'r'},
                                         {"targets", required_argument, NULL, 't'},
                                         {"image", required_argument, NULL, 'i'},
                                         {NULL, 0, NULL, 0}};
    struct kf_updates_image images[IMAGES_MAX];
    char *copies[IMAGES_MAX];
    const char *root = NULL, *targets = NULL;
    struct kf_updates_result res;
    size_t n = 0;
    enum kf_err rc;
    int opt, code;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        char *eq;
        switch (opt) {
        case 'r': root = optarg; break;
        case 't': targets = optarg; break;
        case 'i':
            eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                return kf_cli_usage(c, "--image takes NAME=PATH (the target's name, the file)");
            if (n >= IMAGES_MAX) return kf_cli_usage(c, "at most %d images at once", IMAGES_MAX);
            copies[n] = strndup(optarg, (size_t)(eq - optarg));
            images[n].name = copies[n];
            images[n++].path = eq + 1;
            break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!root || !targets)
        return kf_cli_usage(c, "--root ROOT.json and --targets TARGETS.json are required");
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_updates_add(c->deploy, c->actor, root, targets, images, n, &res);
    for (size_t i = 0; i < n; i++)
        free(copies[i]);
    if (rc) return kf_cli_fail(c, rc);
    code = KF_EXIT_OK;
    if (c->json)
        kf_cli_print_json(json_pack(
            "{s:I, s:I, s:I, s:I, s:I}", "root_version", (json_int_t)res.root_version,
            "targets_version", (json_int_t)res.targets_version, "snapshot_version",
            (json_int_t)res.snapshot_version, "timestamp_version",
            (json_int_t)res.timestamp_version, "images_added", (json_int_t)res.images_added));
    else
        printf("published: root %lld, targets %lld, snapshot %lld, timestamp %lld (%zu new "
               "images)\n",
               (long long)res.root_version, (long long)res.targets_version,
               (long long)res.snapshot_version, (long long)res.timestamp_version, res.images_added);
    return code;
}

struct listing {
    json_t *arr;       /* --json */
    struct kf_table t; /* otherwise */
};

static void list_cb(const struct kf_tuf_target *t, void *arg)
{
    struct listing *l = arg;
    const char *hw = json_string_value(json_object_get(t->custom, "hardware"));
    json_int_t v = json_integer_value(json_object_get(t->custom, "version"));
    char len[32], ver[32];
    snprintf(len, sizeof(len), "%llu", (unsigned long long)t->length);
    snprintf(ver, sizeof(ver), "%lld", (long long)v);
    if (l->arr)
        json_array_append_new(l->arr, json_pack("{s:s, s:I, s:s, s:I}", "name", t->path, "length",
                                                (json_int_t)t->length, "hardware", hw ? hw : "",
                                                "version", v));
    else
        kf_cli_table_add(&l->t, t->path, hw ? hw : "-", ver, len);
}

int kf_cmd_release_list(struct kf_cli *c, int argc, char **argv)
{
    struct kf_updates_result res;
    struct listing l;
    enum kf_err rc;
    int r = no_args(c, argc, argv);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    memset(&l, 0, sizeof(l));
    if (c->json)
        l.arr = json_array();
    else
        kf_cli_table_init(&l.t, 4, "NAME", "HARDWARE", "VERSION", "BYTES");
    rc = kf_updates_list(c->deploy, list_cb, &l, &res);
    if (!rc && c->json)
        kf_cli_print_json(json_pack("{s:I, s:I, s:I, s:I, s:O}", "root_version",
                                    (json_int_t)res.root_version, "targets_version",
                                    (json_int_t)res.targets_version, "snapshot_version",
                                    (json_int_t)res.snapshot_version, "timestamp_version",
                                    (json_int_t)res.timestamp_version, "targets", l.arr));
    else if (!rc) {
        if (res.timestamp_version)
            printf("root %lld, targets %lld, snapshot %lld, timestamp %lld\n",
                   (long long)res.root_version, (long long)res.targets_version,
                   (long long)res.snapshot_version, (long long)res.timestamp_version);
        kf_cli_table_print(&l.t, "nothing published (keyfleet release add publishes a release)");
    }
    json_decref(l.arr);
    if (!c->json) kf_cli_table_free(&l.t);
    return rc ? kf_cli_fail(c, rc) : KF_EXIT_OK;
}

int kf_cmd_release_refresh(struct kf_cli *c, int argc, char **argv)
{
    int r = no_args(c, argc, argv), renewed = 0;
    enum kf_err rc;
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_updates_refresh(c->deploy, 1, &renewed);
    if (rc) return kf_cli_fail(c, rc);
    printf(renewed ? "snapshot and timestamp renewed\n" : "nothing published\n");
    return KF_EXIT_OK;
}
