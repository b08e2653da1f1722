/*
 * keyfleet-agent: libkeyfleet as a daemon for a Linux device. Provisions on first start,
 * stays connected to the hub, renews, publishes telemetry from commands it runs, runs the command
 * handlers it is allowed to, and turns failed logins into security events.
 *
 *   keyfleet-agent --config FILE
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 when it cannot start, 2 for a usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/file.h"
#include "common/ini.h"
#include "common/log.h"
#include "keyfleet/device.h"
#include "keyfleet/update.h"

#define MAX_SOURCES    32
#define MAX_HANDLERS   64
#define OUTPUT_MAX     (16 * 1024)
#define RUN_TIMEOUT_MS 10000

static const char usage[] =
    "usage: keyfleet-agent --config FILE [--check]\n"
    "\n"
    "Runs a device's life with keyfleet: provisions with the factory identity on first start,\n"
    "connects to the assigned hub over mutual TLS (MQTT), renews its certificate, publishes\n"
    "telemetry, runs allowed commands, and reports security events. Logs go to stderr (logfmt;\n"
    "KEYFLEET_LOG=debug|info|warn|error).\n"
    "\n"
    "  --config FILE  the agent's configuration (see docs/device-sdk.md)\n"
    "  --check        read the configuration and the factory identity, then exit\n"
    "  --help         this text\n"
    "  --version      the version\n"
    "\n"
    "Signals: SIGTERM or SIGINT flush and stop; SIGUSR1 renews the certificate now.\n"
    "Exit status: 0 after SIGTERM or SIGINT, 1 when it cannot start, 2 for a usage error.\n";

struct source {
    char name[64];
    int interval_s;
    char command[1024];
    uint64_t next_ms;
};

struct handler {
    char name[64];
    char path[1024];
};

struct agent {
    char data_dir[1024], url[1024], fcert[1024], fkey[2048], anchor[1024], hub[300];
    char user[64], logfile[1024];
    int use_est, mqtt_version, keep_alive, journal;
    struct source sources[MAX_SOURCES];
    int n_sources;
    struct handler handlers[MAX_HANDLERS];
    int n_handlers;
    /* log watch */
    int log_fd;
    FILE *journal_pipe;
    ino_t log_ino;
    off_t log_off;
    char line[4096];
    size_t line_len;
    /* [update]: signed software updates */
    char up_root[1024], up_hardware[72], up_handler[1024];
    char up_slot[2][1024], up_health[1024], up_restart[1024];
    int up_interval_s, up_confirm_s, up_handler_s;
    uint64_t up_health_next_ms;
    uint64_t up_next_ms;
    struct kf_device *dev;
};

static volatile sig_atomic_t stop_flag, renew_flag;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        renew_flag = 1;
    else
        stop_flag = 1;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- configuration ---- */

static enum kf_err copy(char *dst, size_t cap, const char *v, const char *key)
{
    if (strlen(v) >= cap)
        return kf_fail(KF_E_CONFIG, "%s is longer than %zu characters", key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return KF_OK;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

static enum kf_err conf_cb(const char *section, const char *key, const char *value, int line,
                           void *arg)
{
    struct agent *a = arg;
    (void)line;
    if (!key) {
        if (strcmp(section, "device") && strcmp(section, "telemetry") &&
            strcmp(section, "commands") && strcmp(section, "logwatch") && strcmp(section, "update"))
            return kf_fail(KF_E_CONFIG,
                           "unknown section [%s] (device, telemetry, commands, "
                           "logwatch, update)",
                           section);
        return KF_OK;
    }
    if (strcmp(section, "device") == 0) {
        if (!strcmp(key, "provisioning_url")) return copy(a->url, sizeof(a->url), value, key);
        if (!strcmp(key, "factory_cert")) return copy(a->fcert, sizeof(a->fcert), value, key);
        if (!strcmp(key, "factory_key")) return copy(a->fkey, sizeof(a->fkey), value, key);
        if (!strcmp(key, "trust_anchor")) return copy(a->anchor, sizeof(a->anchor), value, key);
        if (!strcmp(key, "data_dir")) return copy(a->data_dir, sizeof(a->data_dir), value, key);
        if (!strcmp(key, "hub")) return copy(a->hub, sizeof(a->hub), value, key);
        if (!strcmp(key, "user")) return copy(a->user, sizeof(a->user), value, key);
        if (!strcmp(key, "enroll")) {
            if (strcmp(value, "register") && strcmp(value, "est"))
                return kf_fail(KF_E_CONFIG, "enroll must be register or est, not \"%s\"", value);
            a->use_est = strcmp(value, "est") == 0;
            return KF_OK;
        }
        if (!strcmp(key, "mqtt_version")) {
            if (strcmp(value, "4") && strcmp(value, "5") && strcmp(value, "3.1.1") &&
                strcmp(value, "5.0"))
                return kf_fail(KF_E_CONFIG, "mqtt_version must be 3.1.1 (4) or 5");
            a->mqtt_version = value[0] == '5' ? 5 : 4;
            return KF_OK;
        }
        if (!strcmp(key, "keep_alive")) {
            char *end;
            long v = strtol(value, &end, 10);
            if (*end || v < 5 || v > 3600)
                return kf_fail(KF_E_CONFIG, "keep_alive must be 5 to 3600 seconds");
            a->keep_alive = (int)v;
            return KF_OK;
        }
        return kf_fail(KF_E_CONFIG, "unknown key %s in [device]", key);
    }
    if (strcmp(section, "telemetry") == 0) {
        struct source *s;
        char *end;
        long iv;
        if (!valid_name(key))
            return kf_fail(KF_E_CONFIG, "telemetry source name \"%s\": letters, digits, _ - .",
                           key);
        if (a->n_sources == MAX_SOURCES)
            return kf_fail(KF_E_CONFIG, "at most %d telemetry sources", MAX_SOURCES);
        iv = strtol(value, &end, 10);
        if (end == value || iv < 1 || iv > 86400 || (*end != ' ' && *end != '\t'))
            return kf_fail(KF_E_CONFIG, "telemetry %s: \"SECONDS COMMAND\" (1 to 86400 seconds)",
                           key);
        while (*end == ' ' || *end == '\t')
            end++;
        if (!*end) return kf_fail(KF_E_CONFIG, "telemetry %s: no command", key);
        s = &a->sources[a->n_sources++];
        snprintf(s->name, sizeof(s->name), "%s", key);
        s->interval_s = (int)iv;
        return copy(s->command, sizeof(s->command), end, key);
    }
    if (strcmp(section, "commands") == 0) {
        struct handler *h;
        if (!valid_name(key))
            return kf_fail(KF_E_CONFIG, "command name \"%s\": letters, digits, _ - .", key);
        if (value[0] != '/')
            return kf_fail(KF_E_CONFIG, "command %s: the handler must be an absolute path", key);
        if (a->n_handlers == MAX_HANDLERS)
            return kf_fail(KF_E_CONFIG, "at most %d commands", MAX_HANDLERS);
        h = &a->handlers[a->n_handlers++];
        snprintf(h->name, sizeof(h->name), "%s", key);
        return copy(h->path, sizeof(h->path), value, key);
    }
    if (strcmp(section, "update") == 0) {
        if (!strcmp(key, "root")) return copy(a->up_root, sizeof(a->up_root), value, key);
        if (!strcmp(key, "hardware")) {
            if (!valid_name(value))
                return kf_fail(KF_E_CONFIG, "update hardware \"%s\": letters, digits, _ - .",
                               value);
            return copy(a->up_hardware, sizeof(a->up_hardware), value, key);
        }
        if (!strcmp(key, "handler")) {
            if (value[0] != '/') return kf_fail(KF_E_CONFIG, "update handler: an absolute path");
            return copy(a->up_handler, sizeof(a->up_handler), value, key);
        }
        if (!strcmp(key, "interval") || !strcmp(key, "confirm_within") ||
            !strcmp(key, "handler_timeout")) {
            char *end;
            long v = strtol(value, &end, 10);
            if (*end || v < 1 || v > 7 * 86400)
                return kf_fail(KF_E_CONFIG, "update %s must be 1 to 604800 seconds", key);
            *(key[0] == 'i'   ? &a->up_interval_s
              : key[0] == 'c' ? &a->up_confirm_s
                              : &a->up_handler_s) = (int)v;
            return KF_OK;
        }
        if (!strcmp(key, "slot_a") || !strcmp(key, "slot_b") || !strcmp(key, "health") ||
            !strcmp(key, "restart")) {
            char *dst = !strcmp(key, "slot_a")   ? a->up_slot[0]
                        : !strcmp(key, "slot_b") ? a->up_slot[1]
                        : key[0] == 'h'          ? a->up_health
                                                 : a->up_restart;
            if (value[0] != '/') return kf_fail(KF_E_CONFIG, "update %s: an absolute path", key);
            return copy(dst, 1024, value, key);
        }
        return kf_fail(KF_E_CONFIG,
                       "unknown key %s in [update] (root, hardware, handler, handler_timeout, "
                       "interval, slot_a, slot_b, health, confirm_within, restart)",
                       key);
    }
    /* logwatch */
    if (!strcmp(key, "file")) return copy(a->logfile, sizeof(a->logfile), value, key);
    if (!strcmp(key, "journal")) {
        a->journal = !strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1");
        return KF_OK;
    }
    return kf_fail(KF_E_CONFIG, "unknown key %s in [logwatch] (file, journal)", key);
}

static enum kf_err read_config(const char *path, struct agent *a)
{
    struct kf_buf b;
    enum kf_err rc;
    kf_buf_init(&b, 1024 * 1024);
    rc = kf_buf_read_file(&b, path);
    if (!rc) rc = kf_ini_parse((const char *)b.data, b.len, conf_cb, a);
    kf_buf_free(&b);
    if (rc) return kf_wrap(rc, "%s", path);
    if (!a->url[0] || !a->fcert[0] || !a->fkey[0] || !a->anchor[0] || !a->data_dir[0])
        return kf_fail(KF_E_CONFIG,
                       "%s: [device] needs provisioning_url, factory_cert, "
                       "factory_key, trust_anchor and data_dir",
                       path);
    if ((a->up_root[0] || a->up_hardware[0] || a->up_handler[0]) &&
        (!a->up_root[0] || !a->up_hardware[0] || !a->up_handler[0]))
        return kf_fail(KF_E_CONFIG, "%s: [update] needs root, hardware and handler", path);
    if (a->up_root[0] && !a->up_interval_s) a->up_interval_s = 3600;
    if (!a->up_slot[0][0] != !a->up_slot[1][0] || (a->up_health[0] && !a->up_slot[0][0]))
        return kf_fail(KF_E_CONFIG, "%s: [update] A/B needs slot_a, slot_b (and health)", path);
    if (a->up_slot[0][0] && !a->up_health[0])
        return kf_fail(KF_E_CONFIG, "%s: [update] slots need a health check", path);
    if (!a->up_confirm_s) a->up_confirm_s = 300;
    if (!a->up_handler_s) a->up_handler_s = 600; /* writing a slot takes longer than a command */
    return KF_OK;
}

/* ---- running programs ---- */

/*
 * Runs `argv` with `input` on its stdin, collecting at most OUTPUT_MAX bytes of stdout within
 * `timeout_ms` (then it is killed). `*status` is the exit status, or -1 when killed.
 */
static enum kf_err run_program_for(char *const argv[], const uint8_t *input, size_t in_len,
                                   struct kf_buf *out, int *status, uint64_t timeout_ms)
{
    int in[2], outp[2], st = 0;
    pid_t pid;
    uint64_t end = mono_ms() + timeout_ms;
    size_t written = 0;

    if (pipe2(in, O_CLOEXEC) != 0) return kf_fail(KF_E_IO, "pipe: %s", strerror(errno));
    if (pipe2(outp, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return kf_fail(KF_E_IO, "pipe: %s", strerror(errno));
    }
    pid = fork();
    if (pid < 0) {
        close(in[0]);
        close(in[1]);
        close(outp[0]);
        close(outp[1]);
        return kf_fail(KF_E_IO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        setpgid(0, 0); /* a group of its own: killed with whatever it started */
        dup2(in[0], 0);
        dup2(outp[1], 1);
        if (devnull >= 0) dup2(devnull, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    if (!in_len) {
        close(in[1]);
        in[1] = -1;
    }
    for (;;) {
        struct pollfd p[2] = {{outp[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
        uint64_t now = mono_ms();
        int r;
        /* past its time, or the agent is told to stop: the program and its children go */
        if (now >= end || stop_flag) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            break;
        }
        r = poll(p, in[1] >= 0 ? 2 : 1, end - now > 1000 ? 1000 : (int)(end - now));
        if (r < 0 && errno == EINTR) continue;
        if (in[1] >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(in[1], input + written, in_len - written);
            if (n > 0) written += (size_t)n;
            if (n < 0 || written == in_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP)) {
            char buf[4096];
            ssize_t n = read(outp[0], buf, sizeof(buf));
            if (n <= 0) break;
            if (out->len + (size_t)n <= OUTPUT_MAX) kf_buf_append(out, buf, (size_t)n);
        }
    }
    if (in[1] >= 0) close(in[1]);
    close(outp[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return KF_OK;
}

/* run_program_for within RUN_TIMEOUT_MS: commands, telemetry sources, health checks. */
static enum kf_err run_program(char *const argv[], const uint8_t *input, size_t in_len,
                               struct kf_buf *out, int *status)
{
    return run_program_for(argv, input, in_len, out, status, RUN_TIMEOUT_MS);
}

/* ---- signed updates ---- */

/*
 * A/B slots: update.slots in the data directory holds which slot is active, the release waiting
 * for its health check (pending), and the versions that failed theirs (never offered again):
 *   {"active": 0|1, "pending": {"version": V, "name": N, "since": T} | null, "failed": [V...]}
 * The active slot's directory is also the target of the symlink "active-slot" there, for
 * whatever starts the device's software.
 */
struct slots {
    int active;
    int pending;
    int64_t version, since;
    char name[256];
    int64_t failed[16];
    int n_failed;
};

static void slots_path(const struct agent *a, char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", a->data_dir, name);
}

static void slots_load(const struct agent *a, struct slots *st)
{
    char path[1200];
    json_error_t e;
    json_t *j, *p, *v;
    size_t i;
    memset(st, 0, sizeof(*st));
    slots_path(a, path, sizeof(path), "update.slots");
    j = json_load_file(path, 0, &e);
    if (!j) return;
    st->active = json_integer_value(json_object_get(j, "active")) == 1;
    p = json_object_get(j, "pending");
    if (json_is_object(p)) {
        st->pending = 1;
        st->version = json_integer_value(json_object_get(p, "version"));
        st->since = json_integer_value(json_object_get(p, "since"));
        const char *name = json_string_value(json_object_get(p, "name"));
        snprintf(st->name, sizeof(st->name), "%s", name ? name : "");
    }
    json_array_foreach(json_object_get(j, "failed"), i, v)
    {
        if (st->n_failed < 16) st->failed[st->n_failed++] = json_integer_value(v);
    }
    json_decref(j);
}

static enum kf_err slots_save(const struct agent *a, const struct slots *st)
{
    char path[1200], link_path[1200], tmp[1300];
    json_t *j =
        json_pack("{s:i, s:o, s:[]}", "active", st->active, "pending",
                  st->pending ? json_pack("{s:I, s:s, s:I}", "version", (json_int_t)st->version,
                                          "name", st->name, "since", (json_int_t)st->since)
                              : json_null(),
                  "failed");
    char *text;
    enum kf_err rc;
    for (int i = 0; i < st->n_failed; i++)
        json_array_append_new(json_object_get(j, "failed"), json_integer(st->failed[i]));
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) return kf_fail(KF_E_NOMEM, "out of memory");
    slots_path(a, path, sizeof(path), "update.slots");
    rc = kf_file_write(path, text, strlen(text), 0600, KF_FILE_REPLACE);
    free(text);
    /* The symlink that names the active slot, replaced atomically. */
    slots_path(a, link_path, sizeof(link_path), "active-slot");
    snprintf(tmp, sizeof(tmp), "%s.new", link_path);
    unlink(tmp);
    if (!rc && (symlink(a->up_slot[st->active], tmp) != 0 || rename(tmp, link_path) != 0))
        rc = kf_fail(KF_E_IO, "cannot point %s at %s: %s", link_path, a->up_slot[st->active],
                     strerror(errno));
    return rc;
}

static void update_event(struct agent *a, const char *type, const char *severity, json_t *detail)
{
    char *text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(detail);
    if (text && kf_report_event(a->dev, type, severity, text))
        kf_log(KF_LOG_WARN, "agent", "cannot queue an event", "type", type, NULL);
    free(text);
}

/*
 * A release waiting in the active slot: its health check confirms it (the installed version
 * rises); a check that has not passed within confirm_within, or an agent that comes back after
 * that, reverts to the previous slot. Returns 1 while one is pending (no new update meanwhile).
 */
static int poll_pending(struct agent *a)
{
    struct slots st;
    char version[32];
    struct kf_buf out;
    int status = -1;

    if (!a->up_slot[0][0]) return 0;
    slots_load(a, &st);
    if (!st.pending) return 0;
    snprintf(version, sizeof(version), "%lld", (long long)st.version);
    if (time(NULL) >= st.since + a->up_confirm_s) goto revert; /* not confirmed in time */
    if (mono_ms() < a->up_health_next_ms) return 1;
    a->up_health_next_ms = mono_ms() + 1000;
    {
        char *argv[] = {a->up_health, a->up_slot[st.active], version, NULL};
        kf_buf_init(&out, OUTPUT_MAX);
        if (run_program(argv, NULL, 0, &out, &status)) status = -1;
        kf_buf_free(&out);
    }
    if (status == 0) {
        if (kf_update_installed(a->dev, st.version)) {
            kf_log(KF_LOG_ERROR, "agent", "cannot record the installed version", "error",
                   kf_device_errmsg(), NULL);
            return 1;
        }
        st.pending = 0;
        if (slots_save(a, &st) == KF_OK)
            update_event(a, "update.confirmed", "info",
                         json_pack("{s:s, s:I, s:s}", "name", st.name, "version",
                                   (json_int_t)st.version, "slot", st.active ? "b" : "a"));
        kf_log(KF_LOG_INFO, "agent", "update confirmed", "version", version, NULL);
        return 0;
    }
    return 1; /* it may yet come up, until confirm_within */
revert:
    st.active = !st.active;
    st.pending = 0;
    if (st.n_failed < 16) st.failed[st.n_failed++] = st.version;
    if (slots_save(a, &st) == KF_OK)
        update_event(a, "update.reverted", "critical",
                     json_pack("{s:s, s:I, s:s, s:s}", "name", st.name, "version",
                               (json_int_t)st.version, "reason", "not_confirmed", "slot",
                               st.active ? "b" : "a"));
    kf_log(KF_LOG_WARN, "agent", "update reverted: not confirmed within confirm_within", "version",
           version, NULL);
    return 0;
}

/*
 * Checks for a release for this hardware, downloads and verifies it, and hands it to the
 * handler (HANDLER FILE VERSION NAME [SLOT_DIR]). Without slots, the installed version is
 * recorded once the handler succeeds. With slots, the handler installs into the inactive slot,
 * which becomes the active one (the restart command, if any, runs), and the release waits for
 * its health check (poll_pending). The installed version never goes down.
 */
static void poll_update(struct agent *a)
{
    struct kf_update_offer offer;
    char file[1200], version[32];
    struct kf_buf out;
    struct slots st;
    int status = 0;

    if (!a->up_root[0] || poll_pending(a) || mono_ms() < a->up_next_ms) return;
    a->up_next_ms = mono_ms() + (uint64_t)a->up_interval_s * 1000;
    if (kf_update_check(a->dev, a->up_root, a->up_hardware, 0, &offer)) {
        kf_log(KF_LOG_WARN, "agent", "update check failed", "error", kf_device_errmsg(), NULL);
        return;
    }
    if (!offer.available) return;
    slots_load(a, &st);
    for (int i = 0; i < st.n_failed; i++)
        if (st.failed[i] == offer.version) return; /* it failed its health check here */
    snprintf(file, sizeof(file), "%s/update.img", a->data_dir);
    kf_log(KF_LOG_INFO, "agent", "an update", "name", offer.name, NULL);
    if (kf_update_download(a->dev, &offer, file)) {
        kf_log(KF_LOG_WARN, "agent", "update download failed", "error", kf_device_errmsg(), NULL);
        a->up_next_ms = mono_ms() + 2000; /* a broken download resumes soon */
        return;
    }
    snprintf(version, sizeof(version), "%lld", (long long)offer.version);
    update_event(a, "update.installing", "info",
                 json_pack("{s:s, s:I}", "name", offer.name, "version", (json_int_t)offer.version));
    {
        char *argv[] = {a->up_handler,
                        file,
                        version,
                        offer.name,
                        a->up_slot[0][0] ? a->up_slot[!st.active] : NULL,
                        NULL};
        kf_buf_init(&out, OUTPUT_MAX);
        if (run_program_for(argv, NULL, 0, &out, &status, (uint64_t)a->up_handler_s * 1000))
            status = -1;
        kf_buf_free(&out);
    }
    unlink(file);
    if (status != 0) {
        update_event(a, "update.failed", "critical",
                     json_pack("{s:s, s:s, s:I, s:i}", "reason", "handler_failed", "name",
                               offer.name, "version", (json_int_t)offer.version, "status", status));
        return;
    }
    if (a->up_slot[0][0]) {
        /* Switch: the new slot is active, its release pending until its health check passes. */
        st.active = !st.active;
        st.pending = 1;
        st.version = offer.version;
        st.since = time(NULL);
        snprintf(st.name, sizeof(st.name), "%s", offer.name);
        if (slots_save(a, &st)) {
            kf_log(KF_LOG_ERROR, "agent", "cannot switch slots", "error", kf_errmsg(), NULL);
            return;
        }
        update_event(a, "update.installed", "info",
                     json_pack("{s:s, s:I, s:s}", "name", offer.name, "version",
                               (json_int_t)offer.version, "slot", st.active ? "b" : "a"));
        if (a->up_restart[0]) {
            char *argv[] = {a->up_restart, a->up_slot[st.active], NULL};
            kf_buf_init(&out, OUTPUT_MAX);
            run_program_for(argv, NULL, 0, &out, &status, (uint64_t)a->up_handler_s * 1000);
            kf_buf_free(&out);
            /* confirm_within counts from when the new slot runs, not from before a restart */
            st.since = time(NULL);
            if (slots_save(a, &st))
                kf_log(KF_LOG_ERROR, "agent", "cannot record the switch", "error", kf_errmsg(),
                       NULL);
        }
        a->up_health_next_ms = 0;
        return;
    }
    if (kf_update_installed(a->dev, offer.version)) {
        kf_log(KF_LOG_ERROR, "agent", "cannot record the installed version", "error",
               kf_device_errmsg(), NULL);
        return;
    }
    update_event(a, "update.installed", "info",
                 json_pack("{s:s, s:I}", "name", offer.name, "version", (json_int_t)offer.version));
    kf_log(KF_LOG_INFO, "agent", "update installed", "name", offer.name, "version", version, NULL);
}

static void poll_sources(struct agent *a)
{
    uint64_t now = mono_ms();
    int i;
    for (i = 0; i < a->n_sources; i++) {
        struct source *s = &a->sources[i];
        struct kf_buf out;
        char *argv[] = {"/bin/sh", "-c", s->command, NULL};
        int status = 0;
        json_error_t jerr;
        json_t *j;
        if (now < s->next_ms) continue;
        s->next_ms = now + (uint64_t)s->interval_s * 1000;
        kf_buf_init(&out, OUTPUT_MAX);
        if (run_program(argv, NULL, 0, &out, &status) || status != 0) {
            kf_log(KF_LOG_WARN, "agent", "telemetry source failed", "source", s->name, "status",
                   status == -1 ? "killed" : "nonzero", NULL);
            kf_buf_free(&out);
            continue;
        }
        j = json_loadb((const char *)out.data, out.len, 0, &jerr);
        if (!j) {
            kf_log(KF_LOG_WARN, "agent", "telemetry source printed no JSON", "source", s->name,
                   "error", jerr.text, NULL);
        } else if (kf_device_publish(a->dev, s->name, out.data, out.len, 1)) {
            kf_log(KF_LOG_WARN, "agent", "telemetry not queued", "source", s->name, "error",
                   kf_device_errmsg(), NULL);
        }
        json_decref(j);
        kf_buf_free(&out);
    }
}

static void command_cb(void *ctx, struct kf_device *dev, const char *name, const uint8_t *payload,
                       size_t len)
{
    struct agent *a = ctx;
    struct kf_buf out;
    json_t *result, *detail;
    char *text;
    int i, status = 0;

    for (i = 0; i < a->n_handlers; i++)
        if (strcmp(a->handlers[i].name, name) == 0) break;
    if (i == a->n_handlers) {
        detail = json_pack("{s:s, s:s}", "command", name, "reason", "not on the allow-list");
        text = json_dumps(detail, JSON_COMPACT);
        kf_log(KF_LOG_WARN, "agent", "command refused", "command", name, NULL);
        kf_report_event(dev, "device.command_refused", "warning", text);
        free(text);
        json_decref(detail);
        return;
    }
    kf_buf_init(&out, OUTPUT_MAX);
    {
        char *argv[] = {a->handlers[i].path, (char *)name, NULL};
        if (run_program(argv, payload, len, &out, &status)) status = -1;
    }
    kf_log(KF_LOG_INFO, "agent", "command ran", "command", name, "handler", a->handlers[i].path,
           "status", status == 0 ? "0" : "failed", NULL);
    result = json_pack("{s:s, s:i, s:s%}", "command", name, "exit", status, "output",
                       out.data ? (const char *)out.data : "", out.len);
    text = result ? json_dumps(result, JSON_COMPACT) : NULL;
    if (text && kf_device_publish(dev, "commands", text, strlen(text), 1))
        kf_log(KF_LOG_WARN, "agent", "command result not queued", "error", kf_device_errmsg(),
               NULL);
    free(text);
    json_decref(result);
    kf_buf_free(&out);
}

static void state_cb(void *ctx, struct kf_device *dev, const char *what, const char *detail)
{
    struct agent *a = ctx;
    (void)dev;
    (void)detail;
    /* A device that was offline asks for updates as soon as it is back; one offered a release
     * (devices/<id>/updates/available) asks at once. */
    if (a && (strcmp(what, "connected") == 0 || strcmp(what, "update") == 0)) a->up_next_ms = 0;
}

/* ---- log watch ---- */

/* "Failed password for [invalid user ]USER from ADDR" and PAM's "authentication failure". */
static void log_line(struct agent *a, const char *line)
{
    const char *p = strstr(line, "Failed password for ");
    char user[64] = "", from[64] = "";
    json_t *detail;
    char *text;
    if (p) {
        p += 20;
        if (strncmp(p, "invalid user ", 13) == 0) p += 13;
        sscanf(p, "%63s from %63s", user, from);
    } else if ((p = strstr(line, "authentication failure")) != NULL) {
        const char *u = strstr(line, " user=");
        const char *r = strstr(line, " rhost=");
        if (u) sscanf(u + 6, "%63s", user);
        if (r) sscanf(r + 7, "%63s", from);
    } else {
        return;
    }
    detail = json_pack("{s:s, s:s, s:s}", "user", user, "from", from, "line", line);
    text = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    if (text) kf_report_event(a->dev, "device.login_failed", "warning", text);
    free(text);
    json_decref(detail);
}

static void feed(struct agent *a, const char *buf, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            a->line[a->line_len] = 0;
            log_line(a, a->line);
            a->line_len = 0;
        } else if (a->line_len + 1 < sizeof(a->line)) {
            a->line[a->line_len++] = buf[i];
        }
    }
}

static void open_log(struct agent *a, int at_end)
{
    struct stat st;
    if (!a->logfile[0]) return;
    a->log_fd = open(a->logfile, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (a->log_fd < 0) return;
    fstat(a->log_fd, &st);
    a->log_ino = st.st_ino;
    a->log_off = at_end ? st.st_size : 0;
    lseek(a->log_fd, a->log_off, SEEK_SET);
}

static void poll_log(struct agent *a)
{
    char buf[8192];
    ssize_t n;
    struct stat st;
    if (a->journal_pipe) {
        while ((n = read(fileno(a->journal_pipe), buf, sizeof(buf))) > 0)
            feed(a, buf, (size_t)n);
    }
    if (!a->logfile[0]) return;
    if (a->log_fd < 0) {
        open_log(a, 0); /* it appeared: read it from its start */
        if (a->log_fd < 0) return;
    }
    /* rotated or truncated: start over on the new file */
    if (stat(a->logfile, &st) == 0 && (st.st_ino != a->log_ino || st.st_size < a->log_off)) {
        close(a->log_fd);
        open_log(a, 0);
        if (a->log_fd < 0) return;
    }
    while ((n = read(a->log_fd, buf, sizeof(buf))) > 0) {
        a->log_off += n;
        feed(a, buf, (size_t)n);
    }
}

/* ---- privileges ---- */

static enum kf_err drop_privileges(struct agent *a)
{
    const char *name = a->user[0] ? a->user : "nobody";
    struct passwd *pw;
    if (geteuid() != 0) return KF_OK;
    pw = getpwnam(name);
    if (!pw) return kf_fail(KF_E_CONFIG, "user %s does not exist (set [device] user)", name);
    if (pw->pw_uid == 0) return KF_OK; /* asked to stay root */
    if (chown(a->data_dir, pw->pw_uid, pw->pw_gid) != 0)
        return kf_fail(KF_E_IO, "cannot give %s to %s: %s", a->data_dir, name, strerror(errno));
    /* what the device wrote there as root (this run or an earlier one) is handed over too */
    {
        DIR *dir = opendir(a->data_dir);
        struct dirent *e;
        while (dir && (e = readdir(dir)) != NULL) {
            char path[2048];
            if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
                continue;
            snprintf(path, sizeof(path), "%s/%s", a->data_dir, e->d_name);
            if (lchown(path, pw->pw_uid, pw->pw_gid) != 0) {
                closedir(dir);
                return kf_fail(KF_E_IO, "cannot give %s to %s: %s", path, name, strerror(errno));
            }
        }
        if (dir) closedir(dir);
    }
    if (initgroups(name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
        return kf_fail(KF_E_IO, "cannot become %s: %s", name, strerror(errno));
    if (setuid(0) == 0) return kf_fail(KF_E_INTERNAL, "could regain root after dropping it");
    kf_log(KF_LOG_INFO, "agent", "running unprivileged", "user", name, NULL);
    return KF_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    struct agent *a = calloc(1, sizeof(*a));
    struct kf_device_config dc;
    const char *config = NULL;
    int opt, check = 0, rc = 1;
    struct sigaction sa;

    kf_log_init_from_env();
    if (!a) return 1;
    a->log_fd = -1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case 'k': check = 1; break;
        case 'h':
            fputs(usage, stdout);
            free(a);
            return 0;
        case 'V':
            puts("keyfleet-agent " KF_VERSION);
            free(a);
            return 0;
        default:
            fputs(usage, stderr);
            free(a);
            return 2;
        }
    }
    if (!config || optind != argc) {
        fprintf(stderr, "keyfleet-agent: %s\n%s",
                config ? "unexpected argument" : "--config is required", usage);
        free(a);
        return 2;
    }
    if (read_config(config, a)) {
        fprintf(stderr, "keyfleet-agent: %s\n", kf_errmsg());
        free(a);
        return 1;
    }
    memset(&dc, 0, sizeof(dc));
    dc.data_dir = a->data_dir;
    dc.provisioning_url = a->url;
    dc.factory_cert = a->fcert;
    dc.factory_key = a->fkey;
    dc.trust_anchor = a->anchor;
    dc.hub = a->hub[0] ? a->hub : NULL;
    dc.use_est = a->use_est;
    dc.mqtt_version = a->mqtt_version;
    dc.keep_alive_s = a->keep_alive;
    dc.command_cb = command_cb;
    dc.state_cb = state_cb;
    dc.ctx = a;
    if (getenv("KEYFLEET_AGENT_BACKOFF_MAX_MS"))
        dc.backoff_max_ms = (uint32_t)strtoul(getenv("KEYFLEET_AGENT_BACKOFF_MAX_MS"), NULL, 10);
    if (kf_device_open(&dc, &a->dev)) {
        fprintf(stderr, "keyfleet-agent: %s\n", kf_device_errmsg());
        free(a);
        return 1;
    }
    if (check) {
        struct kf_device_info info;
        kf_device_info(a->dev, &info);
        printf("configuration ok; factory key in %s; %s\n", info.key_location,
               info.provisioned ? "provisioned" : "not provisioned yet");
        kf_device_close(a->dev, 0);
        free(a);
        return 0;
    }
    open_log(a, 1);
    if (a->journal) {
        a->journal_pipe = popen("exec journalctl --follow --lines=0 --output=cat 2>/dev/null", "r");
        if (a->journal_pipe) fcntl(fileno(a->journal_pipe), F_SETFL, O_NONBLOCK);
    }
    if (drop_privileges(a)) {
        fprintf(stderr, "keyfleet-agent: %s\n", kf_errmsg());
        goto out;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    kf_log(KF_LOG_INFO, "agent", "started", "config", config, NULL);
    while (!stop_flag) {
        struct kf_device_info info;
        if (renew_flag) {
            renew_flag = 0;
            kf_log(KF_LOG_INFO, "agent", "renewing now (SIGUSR1)", NULL);
            kf_device_renew_soon(a->dev);
        }
        if (kf_device_run(a->dev, 200)) {
            fprintf(stderr, "keyfleet-agent: %s\n", kf_device_errmsg());
            goto out;
        }
        kf_device_info(a->dev, &info);
        if (info.provisioned) poll_sources(a);
        if (info.provisioned) poll_update(a);
        poll_log(a);
    }
    kf_log(KF_LOG_INFO, "agent", "stopping", NULL);
    rc = 0;
out:
    kf_device_close(a->dev, 3000);
    if (a->journal_pipe) pclose(a->journal_pipe);
    if (a->log_fd >= 0) close(a->log_fd);
    free(a);
    return rc;
}
