/* keyfleet init */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/pki_key.h"
#include "server/ca/deploy_init.h"

/* What a device dialing an address would meet, said where the names are chosen. */
#define NO_IP_NOTE                                                                         \
    "the server certificate names no IP address: a device that dials one (127.0.0.1 too) " \
    "fails the name check; add --hostname ADDRESS for each address devices dial"

int kf_cmd_init(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"hostname", required_argument, NULL, 'n'},
        {"key-type", required_argument, NULL, 'k'},
        {"issuing-key", required_argument, NULL, 'i'},
        {"name", required_argument, NULL, 'N'},
        {NULL, 0, NULL, 0},
    };
    const char *names[KF_INIT_MAX_NAMES];
    struct kf_init_opts o;
    struct kf_init_report rep;
    enum kf_err rc;
    int opt;

    memset(&o, 0, sizeof(o));
    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'n':
            if (o.n_names == KF_INIT_MAX_NAMES)
                return kf_cli_usage(c, "at most %d --hostname names", KF_INIT_MAX_NAMES);
            names[o.n_names++] = optarg;
            break;
        case 'k':
            o.key_type = kf_key_type_parse(optarg);
            if (o.key_type == KF_KEY_NONE)
                return kf_cli_usage(
                    c, "unknown key type '%s' (p256, p384, ed25519, rsa2048, rsa3072)", optarg);
            break;
        case 'i': o.issuing_key = optarg; break;
        case 'N': o.name = optarg; break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    o.dir = c->dir;
    o.names = names;
    o.actor = c->actor;
    rc = kf_deploy_init(&o, &rep);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        json_t *list = json_array(), *notes = json_array();
        char names_copy[sizeof(rep.names)], *save = NULL;
        snprintf(names_copy, sizeof(names_copy), "%s", rep.names);
        for (char *n = strtok_r(names_copy, ",", &save); n; n = strtok_r(NULL, ",", &save))
            json_array_append_new(list, json_string(n));
        if (rep.n_ips == 0) json_array_append_new(notes, json_string(NO_IP_NOTE));
        kf_cli_print_json(json_pack(
            "{s:s, s:{s:s, s:s, s:i}, s:{s:s, s:s, s:s, s:i}, s:{s:o, s:s, s:i}, s:s, s:s, s:o}",
            "dir", rep.dir, "root_ca", "subject", rep.root_subject, "sha256", rep.root_fingerprint,
            "days", (int)rep.root_days, "issuing_ca", "subject", rep.issuing_subject, "sha256",
            rep.issuing_fingerprint, "key", rep.issuing_key_location, "days", (int)rep.issuing_days,
            "server", "names", list, "sha256", rep.server_fingerprint, "days", (int)rep.server_days,
            "store", "keyfleet.db", "config", "keyfleet.conf", "notes", notes));
        return KF_EXIT_OK;
    }
    printf("Created a keyfleet deployment in %s\n\n", rep.dir);
    printf("  root CA      %s (%s, %ld years)\n", rep.root_subject, rep.key_desc,
           rep.root_days / 365);
    printf("               sha256 %s\n", rep.root_fingerprint);
    printf("               key ca/root.key: keep a copy offline, keyfleet needs it only to make "
           "a new issuing CA\n");
    printf("  issuing CA   %s (%ld years)\n", rep.issuing_subject, rep.issuing_days / 365);
    printf("               sha256 %s\n", rep.issuing_fingerprint);
    if (o.issuing_key) {
        char shown[1024];
        kf_key_uri_redact(o.issuing_key, shown, sizeof(shown));
        printf("               key in %s: %s\n", rep.issuing_key_location, shown);
    } else
        printf("               key ca/issuing.key\n");
    printf("  server       %s (%ld days)\n", rep.names, rep.server_days);
    printf("               sha256 %s\n", rep.server_fingerprint);
    if (rep.n_ips == 0) printf("               note: %s\n", NO_IP_NOTE);
    printf("  CRL          ca/crl.pem (number 1, empty)\n");
    printf("  trust        ca/chain.pem (issuing + root): what devices and clients trust\n");
    printf("  store        keyfleet.db (SQLite)\n");
    printf("  config       keyfleet.conf\n\n");
    printf("Next:\n  keyfleet --dir %s ca show\n  keyfleet --dir %s enrollment --help\n", rep.dir,
           rep.dir);
    return KF_EXIT_OK;
}
