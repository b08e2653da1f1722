/* keyfleet rollout ...: phased offers of a signed release to the fleet (server/ops/rollout). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/ident.h"
#include "server/ops/rollout.h"

#define DEVICES_FILE_MAX (64u << 20)

/* The ids of FILE, one a line ('#' comments and blank lines skipped), into `*ids` (owned). */
static enum kf_err read_devices(const char *path, char ***ids, size_t *n)
{
    struct kf_buf b;
    size_t cap = 0, line = 0;
    char *p, *next;
    enum kf_err rc;

    *ids = NULL;
    *n = 0;
    kf_buf_init(&b, DEVICES_FILE_MAX);
    rc = kf_buf_read_file(&b, path);
    if (rc) {
        kf_buf_free(&b);
        return kf_wrap(rc, "--devices %s", path);
    }
    for (p = (char *)kf_buf_str(&b); p && *p && !rc; p = next) {
        char *end;
        next = strchr(p, '\n');
        if (next) *next++ = '\0';
        line++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            *--end = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#') continue;
        if (kf_id_check("device id", p) != KF_OK) {
            rc = kf_wrap(KF_E_INVALID, "%s:%zu", path, line);
            break;
        }
        if (*n == cap) {
            void *q;
            cap = cap ? cap * 2 : 64;
            q = realloc(*ids, cap * sizeof(**ids));
            if (!q) {
                rc = kf_fail(KF_E_NOMEM, "out of memory");
                break;
            }
            *ids = q;
        }
        (*ids)[*n] = strdup(p);
        if (!(*ids)[*n])
            rc = kf_fail(KF_E_NOMEM, "out of memory");
        else
            (*n)++;
    }
    kf_buf_free(&b);
    if (!rc && !*n) rc = kf_fail(KF_E_INVALID, "--devices %s names no device", path);
    return rc;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

int kf_cmd_rollout_create(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"release", required_argument, NULL, 'r'},
                                         {"enrollment", required_argument, NULL, 'e'},
                                         {"devices", required_argument, NULL, 'd'},
                                         {"all", no_argument, NULL, 'a'},
                                         {"phases", required_argument, NULL, 'p'},
                                         {"soak", required_argument, NULL, 's'},
                                         {"max-failures", required_argument, NULL, 'm'},
                                         {"min-done", required_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    struct kf_rollout_spec s;
    const char *file = NULL, *phases = "1,10,50,100", *soak = "10m", *maxf = "2%", *mind = "0%";
    char **ids = NULL;
    size_t n_ids = 0;
    int64_t id = 0, n = 0;
    enum kf_err rc;
    int opt;

    memset(&s, 0, sizeof(s));
    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'r': s.release = optarg; break;
        case 'e': s.enrollment = optarg; break;
        case 'd': file = optarg; break;
        case 'a': s.all = 1; break;
        case 'p': phases = optarg; break;
        case 's': soak = optarg; break;
        case 'm': maxf = optarg; break;
        case 'n': mind = optarg; break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!s.release) return kf_cli_usage(c, "--release NAME is required (keyfleet release list)");
    if (!!s.all + !!s.enrollment + !!file != 1)
        return kf_cli_usage(c,
                            "name the devices one way: --all, --enrollment ID or --devices FILE");
    if (kf_rollout_parse_phases(phases, &s) || kf_rollout_parse_duration(soak, &s.soak_s))
        return kf_cli_usage(c, "%s", kf_errmsg());
    if (kf_rollout_parse_percent(maxf, &s.max_failures_bp))
        return kf_cli_usage(c, "--max-failures %s", kf_errmsg());
    if (kf_rollout_parse_percent(mind, &s.min_done_bp))
        return kf_cli_usage(c, "--min-done %s", kf_errmsg());
    if (file) {
        rc = read_devices(file, &ids, &n_ids);
        if (rc) {
            free_ids(ids, n_ids);
            return kf_cli_fail(c, rc);
        }
        s.devices = ids;
        s.n_devices = n_ids;
    }
    if (kf_cli_open(c)) {
        free_ids(ids, n_ids);
        return KF_EXIT_FAIL;
    }
    rc = kf_rollout_create(c->deploy, c->actor, &s, &id, &n);
    free_ids(ids, n_ids);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        json_t *j = NULL;
        rc = kf_rollout_show(c->deploy->store, id, &j);
        if (rc) return kf_cli_fail(c, rc);
        kf_cli_print_json(j);
    } else {
        printf("rollout %" PRId64 ": %s to %" PRId64 " devices in %zu phases (%s), soak %s, "
               "pausing over %s failures\n",
               id, s.release, n, s.n_phases, phases, soak, maxf);
    }
    return KF_EXIT_OK;
}

/* The rollout id of the arguments: > 0, 0 when help was printed, or -(exit code). */
static long rollout_id(struct kf_cli *c, int argc, char **argv, const char **reason)
{
    static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    const char *text = NULL;
    long id;
    int r = kf_cli_parse_name(c, argc, argv, reason ? opts : NULL,
                              reason ? kf_cli_reason_text : NULL, reason, "rollout", &text);
    if (r) return r < 0 ? 0 : -r;
    id = kf_cli_number(c, "rollout id", text, 1, 0x7fffffffL);
    return id < 0 ? -KF_EXIT_USAGE : id;
}

static const char *const shown_states[] = {"pending",    "downloading", "verified",
                                           "installing", "installed",   "confirmed",
                                           "failed",     "reverted",    "refused"};

static void print_rollout(const json_t *j, int phases)
{
    const json_t *counts = json_object_get(j, "counts"), *reason = json_object_get(j, "reason");
    json_int_t done = json_integer_value(json_object_get(counts, "installed")) +
                      json_integer_value(json_object_get(counts, "confirmed"));
    json_int_t failed = json_integer_value(json_object_get(counts, "failed")) +
                        json_integer_value(json_object_get(counts, "reverted")) +
                        json_integer_value(json_object_get(counts, "refused"));
    printf("rollout %lld  %s (version %lld, %s)  %s  phase %lld of %zu  offered %lld of %lld  "
           "done %lld  failed %lld\n",
           (long long)json_integer_value(json_object_get(j, "id")),
           json_string_value(json_object_get(j, "release")),
           (long long)json_integer_value(json_object_get(j, "version")),
           json_string_value(json_object_get(j, "hardware")),
           json_string_value(json_object_get(j, "state")),
           (long long)json_integer_value(json_object_get(j, "phase")),
           json_array_size(json_object_get(j, "phases")),
           (long long)json_integer_value(json_object_get(j, "offered")),
           (long long)json_integer_value(json_object_get(j, "devices")), (long long)done,
           (long long)failed);
    if (!phases) return;
    if (json_is_string(reason)) printf("  why: %s\n", json_string_value(reason));
    printf("  soak %llds, pauses over %s failures of a phase, advances once %s of it is done\n",
           (long long)json_integer_value(json_object_get(j, "soak")),
           json_string_value(json_object_get(j, "max_failures")),
           json_string_value(json_object_get(j, "min_done")));
    printf("  %-6s %-8s %-8s %-8s", "PHASE", "PERCENT", "DEVICES", "OFFERED");
    for (size_t i = 0; i < KF_ARRAY_LEN(shown_states); i++)
        printf(" %-11s", shown_states[i]);
    printf("\n");
    for (size_t k = 0; k < json_array_size(json_object_get(j, "phases")); k++) {
        const json_t *p = json_array_get(json_object_get(j, "phases"), k);
        char pct[16];
        snprintf(pct, sizeof(pct), "%lld%%",
                 (long long)json_integer_value(json_object_get(p, "percent")));
        printf("  %-6lld %-8s %-8lld %-8s",
               (long long)json_integer_value(json_object_get(p, "phase")), pct,
               (long long)json_integer_value(json_object_get(p, "devices")),
               json_is_true(json_object_get(p, "offered")) ? "yes" : "no");
        for (size_t i = 0; i < KF_ARRAY_LEN(shown_states); i++)
            printf(" %-11lld", (long long)json_integer_value(
                                   json_object_get(json_object_get(p, "counts"), shown_states[i])));
        printf("\n");
    }
}

int kf_cmd_rollout_show(struct kf_cli *c, int argc, char **argv)
{
    long id = rollout_id(c, argc, argv, NULL);
    json_t *j = NULL;
    enum kf_err rc;
    if (id <= 0) return id == 0 ? KF_EXIT_OK : (int)-id;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_rollout_show(c->deploy->store, id, &j);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        kf_cli_print_json(j);
        return KF_EXIT_OK;
    }
    print_rollout(j, 1);
    json_decref(j);
    return KF_EXIT_OK;
}

int kf_cmd_rollout_list(struct kf_cli *c, int argc, char **argv)
{
    json_t *j = NULL;
    enum kf_err rc;
    int opt = kf_cli_getopt(c, argc, argv, "", NULL);
    if (opt != -1) return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_rollout_list(c->deploy->store, &j);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        kf_cli_print_json(j);
        return KF_EXIT_OK;
    }
    if (!json_array_size(j)) printf("no rollouts (keyfleet rollout create makes one)\n");
    for (size_t i = 0; i < json_array_size(j); i++)
        print_rollout(json_array_get(j, i), 0);
    json_decref(j);
    return KF_EXIT_OK;
}

static int act(struct kf_cli *c, int argc, char **argv, enum kf_rollout_action a)
{
    const char *reason = NULL;
    long id = rollout_id(c, argc, argv, &reason);
    static const char *const done[] = {"", "paused", "resumed", "aborted"};
    enum kf_err rc;
    if (id <= 0) return id == 0 ? KF_EXIT_OK : (int)-id;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_rollout_act(c->deploy, c->actor, id, a, reason);
    if (rc) return kf_cli_fail(c, rc);
    printf("rollout %ld %s\n", id, done[a]);
    return KF_EXIT_OK;
}

int kf_cmd_rollout_pause(struct kf_cli *c, int argc, char **argv)
{
    return act(c, argc, argv, KF_ROLLOUT_PAUSE);
}

int kf_cmd_rollout_resume(struct kf_cli *c, int argc, char **argv)
{
    return act(c, argc, argv, KF_ROLLOUT_RESUME);
}

int kf_cmd_rollout_abort(struct kf_cli *c, int argc, char **argv)
{
    return act(c, argc, argv, KF_ROLLOUT_ABORT);
}
