/* keyfleet release ...: the deployment's repository of signed updates (server/ops/updates). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/ops/rollout.h"
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

struct one {
    const char *name;
    json_t *target;
};

static void one_cb(const struct kf_tuf_target *t, void *arg)
{
    struct one *o = arg;
    char h256[65], h512[129];
    if (strcmp(t->path, o->name) != 0) return;
    kf_tuf_hex(t->sha256, 32, h256);
    kf_tuf_hex(t->sha512, 64, h512);
    o->target = json_pack("{s:s, s:I, s:s, s:s, s:O?}", "name", t->path, "length",
                          (json_int_t)t->length, "sha256", t->has_sha256 ? h256 : "", "sha512",
                          t->has_sha512 ? h512 : "", "custom", t->custom);
}

static const struct option reason_opts[] = {{"reason", required_argument, NULL, 'r'},
                                            {NULL, 0, NULL, 0}};

/* Whether release `name` has rollouts (1), none (0), or -1 on an error. */
static int has_rollouts(struct kf_cli *c, const char *name)
{
    json_t *all = NULL;
    int found = 0;
    if (kf_rollout_list(c->deploy->store, &all)) return -1;
    for (size_t i = 0; i < json_array_size(all); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(all, i), "release")), name) ==
            0)
            found = 1;
    json_decref(all);
    return found;
}

int kf_cmd_release_show(struct kf_cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int parsed = kf_cli_parse_name(c, argc, argv, NULL, NULL, NULL, "release", &name);
    struct kf_updates_result res;
    struct one o = {name, NULL};
    json_t *revoked = NULL, *rollouts = NULL, *mine;
    size_t i;
    int yes = 0;
    enum kf_err rc;

    if (parsed) return parsed < 0 ? KF_EXIT_OK : parsed;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_updates_list(c->deploy, one_cb, &o, &res);
    if (!rc) rc = kf_updates_revoked(c->deploy, name, &yes, &revoked);
    if (!rc) rc = kf_rollout_list(c->deploy->store, &rollouts);
    if (rc) {
        json_decref(o.target);
        json_decref(revoked);
        json_decref(rollouts);
        return kf_cli_fail(c, rc);
    }
    mine = json_array();
    for (i = 0; i < json_array_size(rollouts); i++) {
        json_t *r = json_array_get(rollouts, i);
        if (strcmp(json_string_value(json_object_get(r, "release")), name) == 0)
            json_array_append_new(mine,
                                  json_pack("{s:O, s:O, s:O, s:O}", "id", json_object_get(r, "id"),
                                            "state", json_object_get(r, "state"), "devices",
                                            json_object_get(r, "devices"), "counts",
                                            json_object_get(r, "counts")));
    }
    json_decref(rollouts);
    if (!o.target && !yes && !json_array_size(mine)) {
        json_decref(mine);
        return kf_cli_fail(c,
                           kf_fail(KF_E_NOT_FOUND, "no release %s (keyfleet release list)", name));
    }
    if (c->json) {
        kf_cli_print_json(json_pack("{s:s, s:O?, s:b, s:O?, s:I, s:o}", "name", name, "target",
                                    o.target, "published", o.target != NULL, "revoked", revoked,
                                    "targets_version", (json_int_t)res.targets_version, "rollouts",
                                    mine));
    } else {
        const json_t *custom = json_object_get(o.target, "custom");
        printf("release %s\n", name);
        if (o.target) {
            printf("  in targets version %lld: %lld bytes, hardware %s, version %lld\n",
                   (long long)res.targets_version,
                   (long long)json_integer_value(json_object_get(o.target, "length")),
                   json_string_value(json_object_get(custom, "hardware"))
                       ? json_string_value(json_object_get(custom, "hardware"))
                       : "-",
                   (long long)json_integer_value(json_object_get(custom, "version")));
            printf("  sha256 %s\n  sha512 %s\n",
                   json_string_value(json_object_get(o.target, "sha256")),
                   json_string_value(json_object_get(o.target, "sha512")));
        } else {
            printf("  no longer in the signed targets (version %lld)\n",
                   (long long)res.targets_version);
        }
        if (revoked)
            printf("  REVOKED %s by %s%s%s\n",
                   json_string_value(json_object_get(revoked, "revoked")),
                   json_string_value(json_object_get(revoked, "by")),
                   json_object_get(revoked, "reason") ? ": " : "",
                   json_object_get(revoked, "reason")
                       ? json_string_value(json_object_get(revoked, "reason"))
                       : "");
        if (!json_array_size(mine)) printf("  no rollouts\n");
        for (i = 0; i < json_array_size(mine); i++) {
            json_t *r = json_array_get(mine, i), *n = json_object_get(r, "counts");
            printf("  rollout %lld %s: %lld devices, %lld confirmed, %lld installed, %lld "
                   "failed\n",
                   (long long)json_integer_value(json_object_get(r, "id")),
                   json_string_value(json_object_get(r, "state")),
                   (long long)json_integer_value(json_object_get(r, "devices")),
                   (long long)json_integer_value(json_object_get(n, "confirmed")),
                   (long long)json_integer_value(json_object_get(n, "installed")),
                   (long long)(json_integer_value(json_object_get(n, "failed")) +
                               json_integer_value(json_object_get(n, "reverted")) +
                               json_integer_value(json_object_get(n, "refused"))));
        }
        json_decref(mine);
    }
    json_decref(o.target);
    json_decref(revoked);
    return KF_EXIT_OK;
}

int kf_cmd_release_revoke(struct kf_cli *c, int argc, char **argv)
{
    const char *reason = NULL, *name = NULL;
    int r = kf_cli_parse_name(c, argc, argv, reason_opts, kf_cli_reason_text, &reason, "release",
                              &name);
    int64_t n = 0;
    int was = 0;
    enum kf_err rc;

    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    {
        int known = has_rollouts(c, name);
        if (known < 0) return kf_cli_fail(c, KF_E_IO);
        rc = kf_updates_revoke(c->deploy, c->actor, name, reason, known, &was);
    }
    if (!rc) rc = kf_rollout_end_release(c->deploy, c->actor, name, reason, &n);
    if (rc) return kf_cli_fail(c, rc);
    printf("%s %s; %lld rollout%s of it aborted. To take it out of the signed metadata too:\n"
           "  keyfleet-release targets --from CURRENT-targets.json --remove %s --out t.json\n"
           "  (sign it with the targets keys) and keyfleet release add --root ROOT --targets "
           "t.json\n",
           name, was ? "was revoked already" : "revoked", (long long)n, n == 1 ? "" : "s", name);
    return KF_EXIT_OK;
}
