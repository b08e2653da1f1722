/* The CLI's shared helpers: opening the deployment, errors, options, tables, JSON. */
#include "cli/cli.h"
#include "common/pki_crl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/timefmt.h"

int kf_cli_open(struct kf_cli *c)
{
    enum kf_err rc;
    if (c->deploy) return 0;
    rc = kf_deploy_open(c->dir, &c->deploy);
    if (rc) return kf_cli_fail(c, rc);
    return 0;
}

int kf_cli_fail(struct kf_cli *c, enum kf_err rc)
{
    fprintf(stderr, "keyfleet %s: %s\n", c->cmd ? c->cmd : "", kf_errmsg());
    return rc == KF_E_USAGE ? KF_EXIT_USAGE : KF_EXIT_FAIL;
}

int kf_cli_usage(struct kf_cli *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "keyfleet %s: ", c->cmd ? c->cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    if (c->usage) {
        const char *nl = strchr(c->usage, '\n');
        int n = nl ? (int)(nl - c->usage) : (int)strlen(c->usage);
        fprintf(stderr, "usage: keyfleet %.*s\n(keyfleet %s --help for more)\n", n, c->usage,
                c->cmd);
    }
    return KF_EXIT_USAGE;
}

int kf_cli_help(struct kf_cli *c)
{
    printf("usage: keyfleet %s\n", c->usage ? c->usage : c->cmd);
    return KF_EXIT_OK;
}

int kf_cli_getopt(struct kf_cli *c, int argc, char **argv, const char *shortopts,
                  const struct option *longopts)
{
    struct option all[32];
    char shorts[64];
    size_t n = 0;
    int opt;

    for (; longopts && longopts[n].name && n < 28; n++)
        all[n] = longopts[n];
    all[n++] = (struct option){"dir", required_argument, NULL, 'D'};
    all[n++] = (struct option){"json", no_argument, NULL, 'J'};
    all[n++] = (struct option){"help", no_argument, NULL, 'h'};
    all[n] = (struct option){NULL, 0, NULL, 0};
    snprintf(shorts, sizeof(shorts), ":%sh", shortopts ? shortopts : "");
    for (;;) {
        int idx = 0;
        opt = getopt_long(argc, argv, shorts, all, &idx);
        switch (opt) {
        case 'D': c->dir = optarg; continue;
        case 'J': c->json = 1; continue;
        case 'h': kf_cli_help(c); return 'h';
        case ':': kf_cli_usage(c, "option %s needs a value", argv[optind - 1]); return '?';
        case '?':
            if (optopt)
                kf_cli_usage(c, "unknown option -%c", optopt);
            else
                kf_cli_usage(c, "unknown option %s", argv[optind - 1]);
            return '?';
        default: return opt;
        }
    }
}

int kf_cli_check_out(struct kf_cli *c, const char *path, int (*may_replace)(const char *path))
{
    char copy[4096];
    const char *dir;
    struct stat st;

    snprintf(copy, sizeof(copy), "%s", path);
    /* dirname() may return a static "." for a bare file name rather than edit `copy`. */
    dir = dirname(copy);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        kf_fail(KF_E_IO, "cannot write %s: its directory does not exist", path);
        return kf_cli_fail(c, KF_E_IO);
    }
    if (access(dir, W_OK) != 0) {
        kf_fail(KF_E_IO, "cannot write %s: %s", path, strerror(errno));
        return kf_cli_fail(c, KF_E_IO);
    }
    if (lstat(path, &st) == 0 && !(may_replace && S_ISREG(st.st_mode) && may_replace(path))) {
        kf_fail(KF_E_EXISTS, "%s already exists; not overwriting it", path);
        return kf_cli_fail(c, KF_E_EXISTS);
    }
    return 0;
}

long kf_cli_number(struct kf_cli *c, const char *name, const char *value, long min, long max)
{
    char *end;
    long v = strtol(value, &end, 10);
    if (!*value || *end || v < min || v > max) {
        kf_cli_usage(c, "%s must be a whole number from %ld to %ld", name, min, max);
        return -1;
    }
    return v;
}

void kf_cli_print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(j);
}

const char *kf_cli_time(int64_t t)
{
    static char bufs[4][KF_TIME_TEXT_MAX];
    static int next;
    char *b = bufs[next++ % 4];
    if (t == 0) return "";
    kf_time_rfc3339((time_t)t, b, KF_TIME_TEXT_MAX);
    return b;
}

const char *kf_cli_time_ms(int64_t ms)
{
    static char bufs[4][KF_TIME_TEXT_MAX];
    static int next;
    char *b = bufs[next++ % 4];
    kf_time_rfc3339_ms(ms, b, KF_TIME_TEXT_MAX);
    return b;
}

/* ---- tables ---- */

void kf_cli_table_initv(struct kf_table *t, size_t ncols, va_list ap)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols < KF_TABLE_COLS ? ncols : KF_TABLE_COLS;
    for (size_t i = 0; i < t->ncols; i++)
        t->head[i] = va_arg(ap, const char *);
}

void kf_cli_table_init(struct kf_table *t, size_t ncols, ...)
{
    va_list ap;
    va_start(ap, ncols);
    kf_cli_table_initv(t, ncols, ap);
    va_end(ap);
}

enum kf_err kf_cli_table_add(struct kf_table *t, ...)
{
    va_list ap;
    if (t->rows == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 32;
        char **cells = realloc(t->cells, ncap * t->ncols * sizeof(*cells));
        if (!cells) return kf_fail(KF_E_NOMEM, "out of memory");
        t->cells = cells;
        t->cap = ncap;
    }
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        char *copy = strdup(s ? s : "");
        if (!copy) {
            for (size_t j = 0; j < i; j++)
                free(t->cells[t->rows * t->ncols + j]);
            va_end(ap);
            return kf_fail(KF_E_NOMEM, "out of memory");
        }
        t->cells[t->rows * t->ncols + i] = copy;
    }
    va_end(ap);
    t->rows++;
    return KF_OK;
}

void kf_cli_table_print(const struct kf_table *t, const char *empty)
{
    size_t w[KF_TABLE_COLS];
    if (t->rows == 0) {
        fprintf(stderr, "%s\n", empty);
        return;
    }
    for (size_t i = 0; i < t->ncols; i++)
        w[i] = strlen(t->head[i]);
    for (size_t r = 0; r < t->rows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            if (l > w[i]) w[i] = l;
        }
    for (size_t i = 0; i < t->ncols; i++)
        printf("%-*s%s", i + 1 < t->ncols ? (int)w[i] : 0, t->head[i],
               i + 1 < t->ncols ? "  " : "\n");
    for (size_t r = 0; r < t->rows; r++)
        for (size_t i = 0; i < t->ncols; i++)
            printf("%-*s%s", i + 1 < t->ncols ? (int)w[i] : 0, t->cells[r * t->ncols + i],
                   i + 1 < t->ncols ? "  " : "\n");
}

void kf_cli_table_free(struct kf_table *t)
{
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

/* ---- listings ---- */

void kf_cli_list_init(struct kf_cli *c, struct kf_cli_list *l, size_t ncols, ...)
{
    va_list ap;
    memset(l, 0, sizeof(*l));
    if (c->json) {
        l->arr = json_array();
        return;
    }
    va_start(ap, ncols);
    kf_cli_table_initv(&l->t, ncols, ap);
    va_end(ap);
}

enum kf_err kf_cli_list_json(struct kf_cli_list *l, json_t *j)
{
    if (!j || json_array_append_new(l->arr, j) != 0)
        return kf_fail(KF_E_NOMEM, "out of memory building the JSON listing");
    return KF_OK;
}

void kf_cli_list_free(struct kf_cli_list *l)
{
    json_decref(l->arr);
    kf_cli_table_free(&l->t);
    l->arr = NULL;
}

int kf_cli_list_run(struct kf_cli *c, struct kf_cli_list *l,
                    enum kf_err (*query)(struct kf_txn *txn, void *arg), void *arg,
                    const char *empty)
{
    struct kf_txn *txn = NULL;
    enum kf_err rc;

    if (kf_cli_open(c)) {
        kf_cli_list_free(l);
        return KF_EXIT_FAIL;
    }
    if (c->json && !l->arr) {
        kf_cli_list_free(l);
        kf_fail(KF_E_NOMEM, "out of memory");
        return kf_cli_fail(c, KF_E_NOMEM);
    }
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = query(txn, arg);
    kf_txn_end(txn);
    if (!rc) {
        if (l->arr) {
            kf_cli_print_json(l->arr);
            l->arr = NULL;
        } else {
            kf_cli_table_print(&l->t, empty);
        }
    }
    kf_cli_list_free(l);
    return rc ? kf_cli_fail(c, rc) : KF_EXIT_OK;
}

int kf_cli_parse_name(struct kf_cli *c, int argc, char **argv, const struct option *extra_opts,
                      int (*extra)(struct kf_cli *c, int opt, void *arg), void *arg,
                      const char *what, const char **name)
{
    int device = strcmp(what, "device") == 0;
    struct option opts[8];
    size_t n = 0;
    int opt;
    for (; extra_opts && extra_opts[n].name && n < 6; n++)
        opts[n] = extra_opts[n];
    opts[n++] = (struct option){device ? "id" : "name", required_argument, NULL, 'i'};
    opts[n] = (struct option){NULL, 0, NULL, 0};
    *name = NULL;
    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'i')
            *name = optarg;
        else if (opt == 'h')
            return -1;
        else if (opt == '?' || !extra)
            return KF_EXIT_USAGE;
        else if (extra(c, opt, arg))
            return KF_EXIT_USAGE;
    }
    if (optind < argc && !*name) *name = argv[optind++];
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!*name) return kf_cli_usage(c, "which %s? give its %s", what, device ? "ID" : "NAME");
    return 0;
}

int kf_cli_reason_text(struct kf_cli *c, int opt, void *arg)
{
    (void)c;
    if (opt != 'r') return 1;
    *(const char **)arg = optarg;
    return 0;
}

int kf_cli_reason_opt(struct kf_cli *c, int opt, void *arg)
{
    int *reason = arg;
    if (opt != 'r') return 1;
    *reason = kf_crl_reason_parse(optarg);
    if (*reason < 0) {
        kf_cli_usage(c, "unknown reason '%s' (%s)", optarg, kf_crl_reason_names());
        return 1;
    }
    return 0;
}
