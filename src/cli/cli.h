/*
 * The keyfleet CLI's shared context and output helpers.
 *
 * Exit codes: 0 success, 1 refused / not found / failed, 2 usage error.
 */
#ifndef KF_CLI_CLI_H
#define KF_CLI_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "server/ca/deploy.h"
#include "server/store/store.h"

#define KF_EXIT_OK    0
#define KF_EXIT_FAIL  1
#define KF_EXIT_USAGE 2

struct kf_cli {
    const char *dir;          /* --dir, KEYFLEET_DIR, or ./keyfleet-data */
    int json;                 /* --json */
    char actor[KF_ACTOR_MAX]; /* "operator:<user>" for the audit log */
    const char *cmd;          /* "enrollment add": for messages */
    const char *usage;        /* the command's usage text */
    struct kf_deploy *deploy; /* opened by kf_cli_open() */
};

/* A command: argv[0] is its name; options are parsed with kf_cli_getopt(). */
typedef int (*kf_cli_fn)(struct kf_cli *c, int argc, char **argv);

/* Opens the deployment in c->dir; prints the error and returns non-zero on failure. */
int kf_cli_open(struct kf_cli *c);

/* Prints "keyfleet: <message>" for an error and returns the exit code for `rc`. */
int kf_cli_fail(struct kf_cli *c, enum kf_err rc);

/* Prints a usage error for the current command and returns KF_EXIT_USAGE. */
int kf_cli_usage(struct kf_cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the current command's usage to stdout and returns KF_EXIT_OK. */
int kf_cli_help(struct kf_cli *c);

/*
 * getopt_long over the command's arguments with the common options (--dir, --json, --help)
 * added to `longopts` (which ends with a zero entry). Returns the option's value as getopt_long
 * does; the common ones are handled here. -1 when done, '?' on an unknown option (after printing
 * the usage error: the caller returns KF_EXIT_USAGE). 'h' means help was printed.
 */
int kf_cli_getopt(struct kf_cli *c, int argc, char **argv, const char *shortopts,
                  const struct option *longopts);

/*
 * Checks before any work is done that an output file can be written: its directory exists and
 * is writable, and `path` does not exist, or `may_replace(path)` (may be NULL) says that what is
 * there may be replaced. Prints the error and returns KF_EXIT_FAIL when not; 0 when it can.
 */
int kf_cli_check_out(struct kf_cli *c, const char *path, int (*may_replace)(const char *path));

/* Parses a positive whole number for option `name`; -1 after printing a usage error. */
long kf_cli_number(struct kf_cli *c, const char *name, const char *value, long min, long max);

/* Prints `j` (taken) as indented JSON on stdout. */
void kf_cli_print_json(json_t *j);

/* RFC 3339 text of seconds / milliseconds since the epoch, into a static rotating buffer. */
const char *kf_cli_time(int64_t t);
const char *kf_cli_time_ms(int64_t ms);

/* ---- tables ---- */

#define KF_TABLE_COLS 8

struct kf_table {
    size_t ncols;
    const char *head[KF_TABLE_COLS];
    char **cells; /* rows * ncols strings, owned */
    size_t rows, cap;
};

void kf_cli_table_init(struct kf_table *t, size_t ncols, ...);
void kf_cli_table_initv(struct kf_table *t, size_t ncols, va_list ap);
/* Adds a row of `ncols` strings (copied). */
enum kf_err kf_cli_table_add(struct kf_table *t, ...);
/* Prints the table with aligned columns, or `empty` on stderr when it has no rows. */
void kf_cli_table_print(const struct kf_table *t, const char *empty);
void kf_cli_table_free(struct kf_table *t);

/* ---- listings: a JSON array under --json, else an aligned table ---- */

struct kf_cli_list {
    json_t *arr;       /* under --json */
    struct kf_table t; /* otherwise */
};

/* Prepares a listing; the table's `ncols` column names follow. */
void kf_cli_list_init(struct kf_cli *c, struct kf_cli_list *l, size_t ncols, ...);

/* Appends `j` (taken) to a JSON listing. */
enum kf_err kf_cli_list_json(struct kf_cli_list *l, json_t *j);

/*
 * Opens the deployment, runs `query(txn, arg)` in a read transaction (it fills `l` from its
 * rows), prints the listing (`empty` on stderr for a table without rows), frees it, and returns
 * the exit code.
 */
int kf_cli_list_run(struct kf_cli *c, struct kf_cli_list *l,
                    enum kf_err (*query)(struct kf_txn *txn, void *arg), void *arg,
                    const char *empty);

/* Frees a listing (kf_cli_list_run does it). */
void kf_cli_list_free(struct kf_cli_list *l);

/*
 * The object a command acts on: one positional NAME, or --id NAME for a device (`what` is
 * "device"), --name NAME for anything else; options in `extra_opts` (at most 6) go to
 * `extra(c, opt, arg)`, which returns non-zero after a usage error. Returns 0 with `*name` set,
 * -1 when help was printed, or KF_EXIT_USAGE.
 */
int kf_cli_parse_name(struct kf_cli *c, int argc, char **argv, const struct option *extra_opts,
                      int (*extra)(struct kf_cli *c, int opt, void *arg), void *arg,
                      const char *what, const char **name);

/* An `extra` for kf_cli_parse_name: --reason (option 'r') into the int at `arg`. */
int kf_cli_reason_opt(struct kf_cli *c, int opt, void *arg);
/* An `extra` for kf_cli_parse_name: --reason (option 'r') as free text into the `const char *`
 * at `arg` (an audit record's reason). */
int kf_cli_reason_text(struct kf_cli *c, int opt, void *arg);

/* A certificate record as JSON (new reference). */
json_t *kf_cli_cert_json(const struct kf_cert_rec *r);

/* Commands. */
int kf_cmd_init(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_add(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_enable(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_disable(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_remove(struct kf_cli *c, int argc, char **argv);
int kf_cmd_group_create(struct kf_cli *c, int argc, char **argv);
int kf_cmd_group_verify(struct kf_cli *c, int argc, char **argv);
int kf_cmd_group_code(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_set(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_pending(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_approve(struct kf_cli *c, int argc, char **argv);
int kf_cmd_enrollment_reject(struct kf_cli *c, int argc, char **argv);
int kf_cmd_release_keys(struct kf_cli *c, int argc, char **argv);
int kf_cmd_release_add(struct kf_cli *c, int argc, char **argv);
int kf_cmd_release_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_release_refresh(struct kf_cli *c, int argc, char **argv);
int kf_cmd_release_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_release_revoke(struct kf_cli *c, int argc, char **argv);
int kf_cmd_rollout_create(struct kf_cli *c, int argc, char **argv);
int kf_cmd_rollout_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_rollout_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_rollout_pause(struct kf_cli *c, int argc, char **argv);
int kf_cmd_rollout_resume(struct kf_cli *c, int argc, char **argv);
int kf_cmd_rollout_abort(struct kf_cli *c, int argc, char **argv);
int kf_cmd_hub_add(struct kf_cli *c, int argc, char **argv);
int kf_cmd_hub_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_hub_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_hub_enable(struct kf_cli *c, int argc, char **argv);
int kf_cmd_hub_disable(struct kf_cli *c, int argc, char **argv);
int kf_cmd_hub_weight(struct kf_cli *c, int argc, char **argv);
int kf_cmd_hub_remove(struct kf_cli *c, int argc, char **argv);
int kf_cmd_device_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_device_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_device_disable(struct kf_cli *c, int argc, char **argv);
int kf_cmd_device_enable(struct kf_cli *c, int argc, char **argv);
int kf_cmd_device_revoke(struct kf_cli *c, int argc, char **argv);
int kf_cmd_device_move(struct kf_cli *c, int argc, char **argv);
int kf_cmd_cert_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_cert_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_cert_issue(struct kf_cli *c, int argc, char **argv);
int kf_cmd_cert_revoke(struct kf_cli *c, int argc, char **argv);
int kf_cmd_ca_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_ca_crl(struct kf_cli *c, int argc, char **argv);
int kf_cmd_audit_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_audit_verify(struct kf_cli *c, int argc, char **argv);
int kf_cmd_events_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_service_add(struct kf_cli *c, int argc, char **argv);
int kf_cmd_service_issue(struct kf_cli *c, int argc, char **argv);
int kf_cmd_service_list(struct kf_cli *c, int argc, char **argv);
int kf_cmd_service_show(struct kf_cli *c, int argc, char **argv);
int kf_cmd_service_revoke(struct kf_cli *c, int argc, char **argv);

#endif
