/*
 * keyfleet: the operator's command line.
 *
 *   keyfleet [--dir DIR] [--json] COMMAND [SUBCOMMAND] [OPTIONS]
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/ident.h"
#include "common/log.h"

struct command {
    const char *group; /* "enrollment", or NULL for a top-level command */
    const char *sub;   /* "add", "group create" */
    kf_cli_fn fn;
    const char *usage; /* after "keyfleet " */
    const char *summary;
};

static const struct command commands[] = {
    {NULL, "init", kf_cmd_init,
     "init [--dir DIR] [--hostname NAME]... [--key-type TYPE] [--issuing-key URI] [--name NAME]\n"
     "\n"
     "Creates a deployment in DIR (default ./keyfleet-data, or KEYFLEET_DIR): a root CA and an\n"
     "issuing CA, keyfleetd's server certificate, the SQLite store and a commented keyfleet.conf.\n"
     "Refuses to touch an existing deployment or a non-empty directory.\n"
     "\n"
     "  --hostname NAME    a DNS name or IP address for the server certificate (repeatable;\n"
     "                     default: localhost, this host's name, 127.0.0.1, ::1)\n"
     "  --key-type TYPE    p256 (default), p384, ed25519, rsa2048 or rsa3072\n"
     "  --issuing-key URI  keep the issuing CA's key in hardware instead of a file:\n"
     "                     pkcs11:token=T;object=O;type=private?module-path=M&pin-source=file:F\n"
     "                     tpm2:handle:0x81000010\n"
     "  --name NAME        the deployment's name, put in its certificates (default keyfleet)",
     "create a deployment"},
    {"enrollment", "add", kf_cmd_enrollment_add,
     "enrollment add --id ID (--cert FILE | --pubkey FILE) [--networks CIDR,...] [--disabled] "
     "[--allocation hashed|static] [--hub NAME] [--approval auto|manual] [--require-binding]\n"
     "\n"
     "Lets device ID provision with the factory certificate FILE (whose CN must be ID) or with\n"
     "the private key matching the public key FILE.\n"
     "\n"
     "  --networks CIDRS   only from these source networks (default: any)\n"
     "  --disabled         add it disabled\n"
     "  --allocation P     how the device gets its hub: hashed (default: weighted hashing of\n"
     "                     the device id over the enabled hubs) or static (the --hub)\n"
     "  --hub NAME         always this hub (implies --allocation static)\n"
     "  --approval MODE    auto (default), or manual: a new device waits (202, Retry-After)\n"
     "                     until an operator runs `enrollment approve` or `reject`\n"
     "  --require-binding  every CSR must carry the TLS channel binding in its\n"
     "                     challengePassword (RFC 7030 3.5; one that does is always checked)",
     "enroll one device by its factory certificate or key"},
    {"enrollment", "group create", kf_cmd_group_create,
     "enrollment group create --name NAME --ca FILE [--networks CIDR,...] [--disabled] "
     "[--allocation hashed|static] [--hub NAME] [--approval auto|manual] [--require-binding]\n"
     "\n"
     "Creates a group enrollment for the manufacturer CA certificate FILE and prints a\n"
     "verification code. The group takes effect once you prove you hold the CA's key: make a\n"
     "certificate whose CN is the code, signed by that CA, and pass it to `group verify`.\n"
     "The code is valid for 24 hours. --networks, --disabled, --allocation, --hub, --approval\n"
     "and --require-binding are as for `enrollment add`.",
     "enroll devices by their manufacturer CA"},
    {"enrollment", "group verify", kf_cmd_group_verify,
     "enrollment group verify --name NAME --cert FILE\n"
     "\n"
     "Completes proof of possession: FILE is a certificate with the verification code as its\n"
     "CN, signed by the group's CA key.",
     "prove possession of a group CA's key"},
    {"enrollment", "group code", kf_cmd_group_code,
     "enrollment group code --name NAME\n\nIssues a new verification code for an unverified group.",
     "get a new verification code"},
    {"enrollment", "list", kf_cmd_enrollment_list,
     "enrollment list [--kind individual|group] [--json]", "list enrollments"},
    {"enrollment", "show", kf_cmd_enrollment_show, "enrollment show ID [--json]",
     "show one enrollment"},
    {"enrollment", "set", kf_cmd_enrollment_set,
     "enrollment set ID [--allocation hashed|static] [--hub NAME] [--networks CIDR,... | "
     "--any-network] [--approval auto|manual] [--require-binding | --no-require-binding]\n"
     "\n"
     "Changes how an enrollment's devices get their hub, or where they may provision from.\n"
     "Takes effect when each device next registers (under hashed allocation, a device keeps an\n"
     "enabled hub it already has).\n"
     "\n"
     "  --allocation P     hashed (weighted hashing over the enabled hubs; clears the hub) or\n"
     "                     static (needs --hub)\n"
     "  --hub NAME         always this hub, which must exist (implies --allocation static)\n"
     "  --networks CIDRS   only from these source networks (replaces the list)\n"
     "  --any-network      from anywhere\n"
     "  --approval MODE    auto, or manual: new devices wait for `enrollment approve`\n"
     "  --require-binding  every CSR must carry the TLS channel binding (or no longer must)",
     "change an enrollment's hub allocation, networks, approval or binding"},
    {"enrollment", "pending", kf_cmd_enrollment_pending,
     "enrollment pending [--all] [--json]\n"
     "\n"
     "Lists the devices waiting for an operator's approval (enrollments with --approval\n"
     "manual), oldest first, with the factory key that asked; --all lists the approved and\n"
     "rejected ones too.",
     "list devices waiting for approval"},
    {"enrollment", "approve", kf_cmd_enrollment_approve,
     "enrollment approve DEVICE\n"
     "\n"
     "Approves a waiting device: it gets its certificate when it next asks, for the factory key\n"
     "that asked. Audited (approval.approve), with a provisioning.approved event.",
     "approve a waiting device"},
    {"enrollment", "reject", kf_cmd_enrollment_reject,
     "enrollment reject DEVICE\n"
     "\n"
     "Rejects a waiting (or approved, not yet provisioned) device: its requests are refused\n"
     "(403 approval_rejected). Audited (approval.reject), with a provisioning.rejected event.",
     "reject a waiting device"},
    {"enrollment", "enable", kf_cmd_enrollment_enable, "enrollment enable ID",
     "enable an enrollment"},
    {"enrollment", "disable", kf_cmd_enrollment_disable, "enrollment disable ID",
     "disable an enrollment (its devices can no longer provision)"},
    {"enrollment", "remove", kf_cmd_enrollment_remove, "enrollment remove ID",
     "remove an enrollment (its devices stay)"},
    {"release", "keys", kf_cmd_release_keys,
     "release keys [--json]\n"
     "\n"
     "Prints the public keys of the deployment's online TUF roles, timestamp and snapshot (made\n"
     "on first use, kept in DIR/updates/keys, mode 0600). The vendor names them in the root:\n"
     "save each line's object to a file for keyfleet-release init-root --timestamp/--snapshot.",
     "the online keys the vendor's root must trust"},
    {"release", "add", kf_cmd_release_add,
     "release add --root ROOT.json --targets TARGETS.json [--image NAME=PATH]...\n"
     "\n"
     "Publishes a release made and signed offline with keyfleet-release: checks the root (the\n"
     "published one, or version N+1 signed by a threshold of N's root keys and of its own; the\n"
     "first time, signed by itself), the targets' signatures by the root's targets keys and a\n"
     "version above the published one, each new target's image against the length and hashes the\n"
     "vendor signed; then writes the repository (DIR/updates/repo) with a new snapshot and\n"
     "timestamp signed by the online keys. Nothing is published when anything is refused.",
     "publish a vendor-signed release"},
    {"release", "list", kf_cmd_release_list, "release list [--json]", "list the published targets"},
    {"release", "show", kf_cmd_release_show,
     "release show NAME [--json]\n"
     "\n"
     "A published release: its length, SHA-256 and SHA-512, hardware and version as the vendor\n"
     "signed them, whether it is revoked, and its rollouts with their counts.",
     "one release, its hashes and its rollouts"},
    {"release", "revoke", kf_cmd_release_revoke,
     "release revoke NAME [--reason TEXT]\n"
     "\n"
     "Withdraws a release on the server: no rollout may offer it again (rollout create refuses\n"
     "it) and its rollouts (completed ones too) are aborted, so no device is offered it. Devices\n"
     "that installed it keep it (nothing goes down). The signed targets still list it until the\n"
     "vendor publishes targets without it (keyfleet-release targets --remove NAME). Audited\n"
     "(release.revoke, rollout.abort).",
     "withdraw a release: no rollout offers it again"},
    {"release", "refresh", kf_cmd_release_refresh,
     "release refresh\n"
     "\n"
     "Signs a new snapshot and timestamp now (keyfleetd renews them on its own before they\n"
     "expire: the timestamp lives a day, the snapshot a week).",
     "renew the online roles' metadata"},
    {"rollout", "create", kf_cmd_rollout_create,
     "rollout create --release NAME (--all | --enrollment ID | --devices FILE)\n"
     "               [--phases 1,10,50,100] [--soak 10m] [--max-failures 2%] [--min-done 0%]\n"
     "               [--json]\n"
     "\n"
     "Offers a published release (a target of keyfleet release list, for one hardware) to a set\n"
     "of active devices in phases: cumulative percentages of the set, in a random order made now.\n"
     "The first phase is offered at once; each next one once the phase before has run --soak\n"
     "(30s, 10m, 2h, 1d) with at most --max-failures of its devices failed (failed, reverted,\n"
     "or refused as a downgrade). Over that, the rollout pauses itself (update.rollout_paused).\n"
     "With --min-done, a phase also waits until that share of its devices has installed the\n"
     "release or failed (devices that never report then hold it).\n"
     "FILE: one device id a line (# comments). Devices are told on devices/<id>/updates/available\n"
     "and ask at every connect; each installs only a signed release for its hardware above its\n"
     "installed version. Audited (rollout.create); keyfleetd's steps are audited too.",
     "offer a release to devices in phases"},
    {"rollout", "list", kf_cmd_rollout_list, "rollout list [--json]",
     "list rollouts with their progress"},
    {"rollout", "show", kf_cmd_rollout_show,
     "rollout show ID [--json]\n"
     "\n"
     "The rollout's state and settings, and its devices counted per phase and per state:\n"
     "pending, downloading, verified, installing, installed, confirmed, failed, reverted,\n"
     "refused.",
     "a rollout's phases and device counts"},
    {"rollout", "pause", kf_cmd_rollout_pause, "rollout pause ID [--reason TEXT]",
     "stop offering a running rollout to more devices (audited)"},
    {"rollout", "resume", kf_cmd_rollout_resume,
     "rollout resume ID\n"
     "\n"
     "Runs a paused rollout again: the failures its phase has so far are accepted (only new ones\n"
     "count against --max-failures) and the phase soaks again from now. Audited.",
     "run a paused rollout again (audited)"},
    {"rollout", "abort", kf_cmd_rollout_abort, "rollout abort ID [--reason TEXT]",
     "end a rollout: nothing more is offered (audited)"},
    {"hub", "add", kf_cmd_hub_add,
     "hub add --name NAME --endpoint HOST:PORT [--weight N]\n"
     "\n"
     "Adds an MQTT hub that devices are told to connect to. HOST is a DNS name, an IPv4\n"
     "address or an IPv6 address in brackets ([2001:db8::1]:8883).\n"
     "\n"
     "  --weight N         0 to 1000 (default 1): hashed allocation gives each enabled hub a\n"
     "                     share of the devices in proportion to its weight; 0 takes no new\n"
     "                     devices",
     "add a hub"},
    {"hub", "list", kf_cmd_hub_list, "hub list [--json]", "list hubs"},
    {"hub", "show", kf_cmd_hub_show,
     "hub show NAME [--json]\n"
     "\n"
     "Shows a hub, how many devices are assigned to it, and the enrollments that allocate\n"
     "statically to it.",
     "show a hub and its devices"},
    {"hub", "enable", kf_cmd_hub_enable, "hub enable NAME", "enable a hub"},
    {"hub", "disable", kf_cmd_hub_disable,
     "hub disable NAME\n"
     "\n"
     "Stops assigning devices to the hub; its devices get another hub when they next register\n"
     "(those of a static enrollment naming it get none until it is enabled again).",
     "disable a hub (it takes no devices)"},
    {"hub", "weight", kf_cmd_hub_weight,
     "hub weight NAME N\n"
     "\n"
     "Sets the hub's weight, 0 to 1000: its share of the new devices that hashed allocation\n"
     "places. Devices already on the hub keep it; 0 takes no new devices.",
     "set a hub's share of hashed allocation"},
    {"hub", "remove", kf_cmd_hub_remove,
     "hub remove NAME\n"
     "\n"
     "Removes the hub; refused while an enrollment allocates statically to it. Its devices get\n"
     "another hub when they next register.",
     "remove a hub"},
    {"device", "list", kf_cmd_device_list,
     "device list [--status active|disabled|revoked] [--enrollment ID] [--json]", "list devices"},
    {"device", "show", kf_cmd_device_show, "device show ID [--json]",
     "show a device and its certificates"},
    {"device", "disable", kf_cmd_device_disable, "device disable ID", "disable a device"},
    {"device", "enable", kf_cmd_device_enable, "device enable ID", "enable a disabled device"},
    {"device", "revoke", kf_cmd_device_revoke,
     "device revoke ID [--reason REASON]\n"
     "\n"
     "Revokes the device for good and every valid certificate it has, and publishes a new CRL.\n"
     "REASON: unspecified (default), key-compromise, ca-compromise, affiliation-changed,\n"
     "superseded, cessation-of-operation, privilege-withdrawn",
     "revoke a device and its certificates"},
    {"device", "move", kf_cmd_device_move,
     "device move ID --enrollment ENROLLMENT\n"
     "\n"
     "A device belongs to the enrollment that first provisioned it: another enrollment's factory\n"
     "identity for the same id is refused (409 enrolled_elsewhere). This moves the device, so\n"
     "that ENROLLMENT (individual or group) provisions it from now on. Audited as device.move.",
     "move a device to another enrollment"},
    {"service", "add", kf_cmd_service_add,
     "service add --name NAME --role reader|commander (--csr FILE | --key-out FILE) [--out FILE]\n"
     "            [--days N] [--json]\n"
     "\n"
     "Adds a service identity: a back-end application that uses the hub with a role, and issues\n"
     "its first certificate (CN = NAME, role in the certificate, clientAuth, service_cert_days).\n"
     "--csr certifies the key of a CSR the service made (its CN must be NAME); --key-out makes a\n"
     "new P-256 key here and writes it to FILE (mode 0600). The certificate and the issuing CA\n"
     "go to --out FILE or standard output. Roles: reader subscribes to devices/+/telemetry/# and\n"
     "devices/+/events; commander may also publish to devices/+/commands/#.",
     "add a service identity for the hub"},
    {"service", "issue", kf_cmd_service_issue,
     "service issue NAME (--csr FILE | --key-out FILE) [--out FILE] [--days N] [--json]\n"
     "\n"
     "Issues another certificate for an active service (a renewal, or a second instance).",
     "issue another certificate for a service"},
    {"service", "list", kf_cmd_service_list, "service list [--json]", "list services"},
    {"service", "show", kf_cmd_service_show, "service show NAME [--json]",
     "show a service and its certificates"},
    {"service", "revoke", kf_cmd_service_revoke,
     "service revoke NAME [--reason REASON] [--json]\n"
     "\n"
     "Revokes the service and all its certificates for good, and publishes a new CRL.",
     "revoke a service and its certificates"},
    {"cert", "list", kf_cmd_cert_list,
     "cert list [--device ID] [--status valid|revoked] [--limit N] [--json]",
     "list certificates, newest first"},
    {"cert", "show", kf_cmd_cert_show, "cert show SERIAL [--pem] [--json]", "show a certificate"},
    {"cert", "issue", kf_cmd_cert_issue,
     "cert issue --device ID --csr FILE [--days N] [--out FILE]\n"
     "\n"
     "Issues a device certificate from a CSR (CN = ID) by hand, creating the device if needed.\n"
     "Prints the certificate followed by the issuing CA, or writes them to FILE.",
     "issue a device certificate from a CSR"},
    {"cert", "revoke", kf_cmd_cert_revoke, "cert revoke SERIAL [--reason REASON]",
     "revoke one certificate and publish a new CRL"},
    {"ca", "show", kf_cmd_ca_show, "ca show [--json]", "show the root and issuing CAs"},
    {"ca", "crl", kf_cmd_ca_crl,
     "ca crl [--out FILE]\n"
     "\n"
     "Signs a new CRL from the store's revocations, publishes it to the deployment's crl_file,\n"
     "and prints it (or writes it to FILE).",
     "publish a fresh CRL"},
    {"audit", "list", kf_cmd_audit_list, "audit list [--since TIME] [--json]",
     "list audit records (TIME: 2026-11-23 or 2026-11-23T10:00:00Z)"},
    {"audit", "verify", kf_cmd_audit_verify,
     "audit verify [--head HASH] [--json]\n"
     "\n"
     "Walks the hash chain of the audit log and reports the first record that was altered,\n"
     "deleted or re-ordered (exit 1). With --head, also checks that the log still contains the\n"
     "head HASH recorded earlier, which catches records cut off the end.",
     "prove the audit log whole"},
    {"events", "list", kf_cmd_events_list,
     "events list [--since TIME] [--type TYPE] [--device ID] [--limit N] [--json]\n"
     "\n"
     "Lists security events, oldest first: for example provisioning.denied (a refused device,\n"
     "with the reason, the registration id and the address) and provisioning.assigned (a\n"
     "certificate handed out). --limit N shows the first N that match.",
     "list security events"},
};

static void print_overview(FILE *f)
{
    const char *group = "";
    fprintf(f, "usage: keyfleet [--dir DIR] [--json] COMMAND [OPTIONS]\n\n"
               "keyfleet manages a keyfleet deployment: its CAs, enrollments, hubs, devices,\n"
               "certificates and audit log. DIR defaults to $KEYFLEET_DIR or ./keyfleet-data.\n\n"
               "commands:\n");
    for (size_t i = 0; i < KF_ARRAY_LEN(commands); i++) {
        const struct command *c = &commands[i];
        char name[64];
        snprintf(name, sizeof(name), "%s%s%s", c->group ? c->group : "", c->group ? " " : "",
                 c->sub);
        if (c->group && strcmp(group, c->group) != 0) fprintf(f, "\n");
        group = c->group ? c->group : "";
        fprintf(f, "  %-26s %s\n", name, c->summary);
    }
    fprintf(f, "\n`keyfleet COMMAND --help` tells more. Exit codes: 0 ok, 1 refused or not "
               "found, 2 usage.\n");
}

static void print_group(FILE *f, const char *group)
{
    fprintf(f, "usage: keyfleet %s SUBCOMMAND\n\nsubcommands:\n", group);
    for (size_t i = 0; i < KF_ARRAY_LEN(commands); i++)
        if (commands[i].group && strcmp(commands[i].group, group) == 0)
            fprintf(f, "  %-16s %s\n", commands[i].sub, commands[i].summary);
}

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0;
}

/* Who acts, for the audit log: the login behind sudo when there is one. */
static void set_actor(struct kf_cli *c)
{
    struct passwd *pw = getpwuid(getuid());
    const char *user = pw ? pw->pw_name : getenv("USER");
    const char *sudo = getenv("SUDO_USER");
    if (getuid() == 0 && sudo && *sudo && kf_id_check("user", sudo) == KF_OK)
        snprintf(c->actor, sizeof(c->actor), "operator:%s(sudo)", sudo);
    else
        snprintf(c->actor, sizeof(c->actor), "operator:%s", user && *user ? user : "unknown");
    kf_err_clear();
}

int main(int argc, char **argv)
{
    struct kf_cli c;
    const char *env = getenv("KEYFLEET_DIR");
    int i = 1, rc;

    memset(&c, 0, sizeof(c));
    c.dir = env && *env ? env : "keyfleet-data";
    kf_log_init_from_env();
    set_actor(&c);

    /* Options before the command. */
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--json") == 0) {
            c.json = 1;
        } else if (strcmp(argv[i], "--dir") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "keyfleet: option --dir needs a value\n");
                return KF_EXIT_USAGE;
            }
            c.dir = argv[++i];
        } else if (strncmp(argv[i], "--dir=", 6) == 0) {
            c.dir = argv[i] + 6;
        } else if (is_help(argv[i])) {
            print_overview(stdout);
            return KF_EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("keyfleet %s\n", KF_VERSION);
            return KF_EXIT_OK;
        } else {
            fprintf(stderr, "keyfleet: unknown option %s\n\n", argv[i]);
            print_overview(stderr);
            return KF_EXIT_USAGE;
        }
        i++;
    }
    if (i >= argc) {
        print_overview(stderr);
        return KF_EXIT_USAGE;
    }
    if (is_help(argv[i])) {
        print_overview(stdout);
        return KF_EXIT_OK;
    }
    if (strcmp(argv[i], "version") == 0) {
        printf("keyfleet %s\n", KF_VERSION);
        return KF_EXIT_OK;
    }

    for (size_t k = 0; k < KF_ARRAY_LEN(commands); k++) {
        const struct command *cmd = &commands[k];
        char full[64];
        int words = 1;
        if (!cmd->group) {
            if (strcmp(argv[i], cmd->sub) != 0) continue;
        } else {
            const char *space = strchr(cmd->sub, ' ');
            if (strcmp(argv[i], cmd->group) != 0 || i + 1 >= argc) continue;
            if (space) {
                /* "group create": two words after the group. */
                if (i + 2 >= argc ||
                    strncmp(argv[i + 1], cmd->sub, (size_t)(space - cmd->sub)) != 0 ||
                    strlen(argv[i + 1]) != (size_t)(space - cmd->sub) ||
                    strcmp(argv[i + 2], space + 1) != 0)
                    continue;
                words = 3;
            } else {
                if (strcmp(argv[i + 1], cmd->sub) != 0) continue;
                words = 2;
            }
        }
        snprintf(full, sizeof(full), "%s%s%s", cmd->group ? cmd->group : "", cmd->group ? " " : "",
                 cmd->sub);
        c.cmd = full;
        c.usage = cmd->usage;
        /* The command sees its own name as argv[0] and its options after it. */
        i += words - 1;
        argv[i] = full;
        optind = 1;
        rc = cmd->fn(&c, argc - i, argv + i);
        kf_deploy_close(c.deploy);
        return rc;
    }

    /* A known group with a missing or unknown subcommand. */
    for (size_t k = 0; k < KF_ARRAY_LEN(commands); k++) {
        if (commands[k].group && strcmp(commands[k].group, argv[i]) == 0) {
            if (i + 1 < argc && is_help(argv[i + 1])) {
                print_group(stdout, argv[i]);
                return KF_EXIT_OK;
            }
            if (strcmp(argv[i], "enrollment") == 0 && i + 1 < argc &&
                strcmp(argv[i + 1], "group") == 0) {
                fprintf(stderr, "keyfleet: enrollment group takes create, verify or code\n\n");
            } else if (i + 1 < argc) {
                fprintf(stderr, "keyfleet: %s has no subcommand '%s'\n\n", argv[i], argv[i + 1]);
            } else {
                fprintf(stderr, "keyfleet: %s needs a subcommand\n\n", argv[i]);
            }
            print_group(stderr, argv[i]);
            return KF_EXIT_USAGE;
        }
    }
    fprintf(stderr, "keyfleet: unknown command '%s'\n\n", argv[i]);
    print_overview(stderr);
    return KF_EXIT_USAGE;
}
