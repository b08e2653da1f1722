/*
 * keyfleetd: the keyfleet service: zero-touch provisioning (EST, RFC 7030, and the register API)
 * over mutually authenticated HTTPS, and the device hub (MQTT 3.1.1 and 5.0 over mutual TLS).
 *
 *   keyfleetd [--dir DIR] [--config FILE]
 *
 * Signals: SIGTERM (or SIGINT) stops accepting, lets requests in flight finish (up to
 * drain_timeout_ms) and exits 0; SIGHUP reloads the configuration's limits, the enrollments,
 * the hubs and the CRL without dropping connections. Exit codes: 0 after a clean stop, 1 when
 * it cannot start, 2 for a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/log.h"
#include "server/daemon.h"

static const char usage[] =
    "usage: keyfleetd [--dir DIR] [--config FILE]\n"
    "\n"
    "Serves the keyfleet deployment in DIR (default $KEYFLEET_DIR or ./keyfleet-data):\n"
    "  provisioning ([provisioning] listen, default :8443): EST (RFC 7030) at\n"
    "    /.well-known/est/ and the register API at /api/v1/register, over mutually\n"
    "    authenticated TLS, plus /healthz and /metrics;\n"
    "  the hub ([hub] listen, default :8883; \"off\" for none): MQTT 3.1.1 and 5.0 over\n"
    "    mutual TLS for devices and service identities with keyfleet certificates.\n"
    "\n"
    "  --dir DIR      the deployment made by `keyfleet init`\n"
    "  --config FILE  read this configuration instead of DIR/keyfleet.conf (paths in it still\n"
    "                 mean DIR)\n"
    "\n"
    "SIGTERM or SIGINT: finish requests in flight and exit. SIGHUP: reload the configuration's\n"
    "and hub limits, the enrollments, hubs and CRL. KEYFLEET_LOG sets the log level (debug, info, "
    "warn,\n"
    "error); logs are logfmt lines on stderr.\n";

static int fail(const char *what)
{
    fprintf(stderr, "keyfleetd: %s%s%s\n", what ? what : "", what ? ": " : "", kf_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("KEYFLEET_DIR");
    const char *dir = env && *env ? env : "keyfleet-data", *conf_path = NULL;
    struct kf_daemon d;
    char workers_text[16];
    sigset_t sigs;
    int opt, status = 1, stopping = 0;
    unsigned quarter = 0;
    struct timespec stop_at = {0, 0};

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': dir = optarg; break;
        case 'c': conf_path = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("keyfleetd %s\n", KF_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "keyfleetd: unexpected argument '%s'\n\n%s", argv[optind], usage);
        return 2;
    }
    kf_log_init_from_env();

    /* Signals go to this thread only (sigtimedwait below); workers never see them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    if (kf_daemon_open(&d, dir, conf_path) != KF_OK) return fail(NULL);
    if (kf_daemon_start(&d) != KF_OK) {
        status = fail(NULL);
        goto out;
    }
    snprintf(workers_text, sizeof(workers_text), "%zu", d.n_workers);
    kf_log(KF_LOG_INFO, "keyfleetd", "serving", "provisioning", d.deploy->cfg.provisioning.listen,
           "hub", d.hub ? d.deploy->cfg.hub.listen : "off", "workers", workers_text, "dir", dir,
           NULL);

    /* The main thread waits for signals, and keeps the subsystems' clock four times a second. */
    for (;;) {
        struct timespec tick = {0, stopping ? 20000000 : 250000000};
        siginfo_t info;
        int sig = sigtimedwait(&sigs, &info, &tick);
        if (sig == SIGHUP) {
            kf_daemon_reload(&d);
        } else if (sig == SIGTERM || sig == SIGINT) {
            if (stopping) break; /* a second signal: stop now */
            stopping = 1;
            kf_log(KF_LOG_INFO, "keyfleetd", "stopping: finishing requests in flight", NULL);
            kf_daemon_drain(&d);
            clock_gettime(CLOCK_MONOTONIC, &stop_at);
            stop_at.tv_sec += d.deploy->cfg.provisioning.drain_timeout_ms / 1000;
            stop_at.tv_nsec +=
                (long)(d.deploy->cfg.provisioning.drain_timeout_ms % 1000) * 1000000L;
        } else if (sig < 0 && errno == EAGAIN && !stopping) {
            kf_daemon_tick(&d, ++quarter);
        }
        if (stopping) {
            struct timespec now;
            if (kf_daemon_drained(&d)) break;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec > stop_at.tv_sec ||
                (now.tv_sec == stop_at.tv_sec && now.tv_nsec >= stop_at.tv_nsec)) {
                kf_log(KF_LOG_WARN, "keyfleetd", "drain timeout: closing what is left", NULL);
                break;
            }
        }
    }
    status = 0;
out:
    kf_daemon_close(&d);
    if (status == 0) kf_log(KF_LOG_INFO, "keyfleetd", "stopped", NULL);
    return status;
}
