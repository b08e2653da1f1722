/*
 * device_example: a complete device on libkeyfleet's Linux layer, the one docs/device-sdk.md
 * walks through. It provisions with its factory identity on first start, connects to its hub,
 * reports that it booted, sends three temperature readings, answers "ping" commands with a
 * "pong" reading, and stops on Ctrl-C (or, with "once", when everything it sent is delivered).
 *
 *   device_example DATA_DIR PROVISIONING_URL FACTORY_CERT FACTORY_KEY_URI TRUST_ANCHOR [once]
 *
 * Build (from a keyfleet build tree):
 *   cc device_example.c -Iinclude build/src/device/libkeyfleet.a
 * build/src/device/libkeyfleet_core.a \ build/src/common/libkf_common.a
 * build/src/common/libkf_codec.a -lssl -lcrypto -ljansson -ldl -lpthread
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <keyfleet/device.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Commands arrive on devices/<id>/commands/<name>; this device knows one. */
static void on_command(void *ctx, struct kf_device *dev, const char *name, const uint8_t *payload,
                       size_t len)
{
    (void)ctx;
    printf("command %s: %.*s\n", name, (int)len, (const char *)payload);
    if (strcmp(name, "ping") == 0) {
        kf_device_publish(dev, "pong", payload, len, 1);
    } else {
        /* anything else is refused, and the fleet hears about it */
        char detail[160];
        snprintf(detail, sizeof(detail), "{\"command\": \"%.64s\"}", name);
        kf_report_event(dev, "device.command_refused", "warning", detail);
    }
}

static void on_state(void *ctx, struct kf_device *dev, const char *what, const char *detail)
{
    (void)ctx;
    (void)dev;
    printf("%s%s%s\n", what, detail && *detail ? ": " : "", detail ? detail : "");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct kf_device_config cfg;
    struct kf_device *dev;
    struct kf_device_info info;
    int sent = 0, once = argc == 7 && strcmp(argv[6], "once") == 0;

    if (argc != 6 && !once) {
        fprintf(stderr,
                "usage: %s DATA_DIR PROVISIONING_URL FACTORY_CERT FACTORY_KEY_URI TRUST [once]\n",
                argv[0]);
        return 2;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.data_dir = argv[1];
    cfg.provisioning_url = argv[2];
    cfg.factory_cert = argv[3];
    cfg.factory_key = argv[4]; /* a file, pkcs11:..., or tpm2:handle:0x81000010 */
    cfg.trust_anchor = argv[5];
    cfg.command_cb = on_command;
    cfg.state_cb = on_state;
    if (kf_device_open(&cfg, &dev) != 0) {
        fprintf(stderr, "device_example: %s\n", kf_device_errmsg());
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    /* queued on disk now, delivered once connected */
    if (kf_report_event(dev, "device.booted", "info", "{\"firmware\": \"1.0.0\"}") != 0)
        fprintf(stderr, "device_example: %s\n", kf_device_errmsg());

    while (!stop) {
        if (kf_device_run(dev, 500) != 0) { /* only what retrying cannot fix */
            fprintf(stderr, "device_example: %s\n", kf_device_errmsg());
            break;
        }
        kf_device_info(dev, &info);
        if (info.connected && sent < 3) {
            char reading[64];
            int n = snprintf(reading, sizeof(reading), "{\"celsius\": %d.5}", 20 + sent);
            if (kf_device_publish(dev, NULL, reading, (size_t)n, 1) == 0) sent++;
            continue; /* let it go out before judging whether all is delivered */
        }
        if (once && sent == 3 && info.queued == 0 && info.events_pending == 0) break;
    }
    kf_device_info(dev, &info);
    printf("device %s: %llu published, %llu delivered\n", info.device_id,
           (unsigned long long)info.published, (unsigned long long)info.delivered);
    kf_device_close(dev, 2000);
    return 0;
}
