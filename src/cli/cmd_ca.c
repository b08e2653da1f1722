/* keyfleet ca ... */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/file.h"
#include "common/pki_crl.h"
#include "server/ca/ca.h"

static json_t *ca_json(const struct kf_ca_rec *r, const char *key_where)
{
    struct kf_cert *cert = NULL;
    struct kf_key *key = NULL;
    char desc[64] = "", fp[KF_FINGERPRINT_HEX] = "";
    if (kf_cert_parse(r->cert_pem, strlen(r->cert_pem), &cert) == KF_OK) {
        kf_cert_fingerprint(cert, fp);
        if (kf_cert_public_key(cert, &key) == KF_OK) kf_key_describe(key, desc, sizeof(desc));
    }
    kf_key_free(key);
    kf_cert_free(cert);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "subject", r->subject, "serial",
                     r->serial, "key_type", desc, "key", key_where, "not_before",
                     kf_cli_time(r->not_before), "not_after", kf_cli_time(r->not_after), "sha256",
                     fp, "crl_number", (json_int_t)r->crl_number);
}

static const char *key_where(const char *uri)
{
    if (!uri) return "offline";
    if (strncmp(uri, "pkcs11:", 7) == 0) return "pkcs11";
    if (strncmp(uri, "tpm2:", 5) == 0) return "tpm2";
    return "file";
}

int kf_cmd_ca_show(struct kf_cli *c, int argc, char **argv)
{
    struct kf_ca_rec root, issuing;
    struct kf_txn *txn = NULL;
    json_t *j;
    enum kf_err rc;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", NULL)) != -1)
        return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    memset(&root, 0, sizeof(root));
    memset(&issuing, 0, sizeof(issuing));
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_ca_get(txn, "root", &root);
    if (!rc) rc = kf_txn_ca_get(txn, "issuing", &issuing);
    kf_txn_end(txn);
    if (rc) {
        kf_ca_rec_clear(&root);
        return kf_cli_fail(c, rc);
    }
    /* Where the issuing key is comes from the configuration, which is what keyfleetd uses. */
    j = json_pack("{s:o, s:o}", "root", ca_json(&root, key_where(root.key_uri)), "issuing",
                  ca_json(&issuing, key_where(c->deploy->cfg.ca.issuing_key)));
    if (c->json) {
        kf_cli_print_json(j);
    } else {
        const char *which[] = {"root", "issuing"};
        for (int i = 0; i < 2; i++) {
            json_t *o = json_object_get(j, which[i]);
            printf("%s CA\n", which[i]);
            printf("  subject     %s\n", json_string_value(json_object_get(o, "subject")));
            printf("  serial      %s\n", json_string_value(json_object_get(o, "serial")));
            printf("  key         %s, in %s\n", json_string_value(json_object_get(o, "key_type")),
                   json_string_value(json_object_get(o, "key")));
            printf("  valid       %s to %s\n", json_string_value(json_object_get(o, "not_before")),
                   json_string_value(json_object_get(o, "not_after")));
            printf("  sha256      %s\n", json_string_value(json_object_get(o, "sha256")));
            if (i == 1)
                printf("  CRL number  %lld\n",
                       (long long)json_integer_value(json_object_get(o, "crl_number")));
        }
        json_decref(j);
    }
    kf_ca_rec_clear(&root);
    kf_ca_rec_clear(&issuing);
    return KF_EXIT_OK;
}

static int holds_crl(const char *path)
{
    struct kf_buf text;
    struct kf_crl *crl = NULL;
    int yes;
    kf_buf_init(&text, 64 * 1024 * 1024);
    yes =
        kf_buf_read_file(&text, path) == KF_OK && kf_crl_parse(text.data, text.len, &crl) == KF_OK;
    kf_crl_free(crl);
    kf_buf_free(&text);
    kf_err_clear();
    return yes;
}

int kf_cmd_ca_crl(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
    const char *out = NULL;
    struct kf_crl *crl = NULL;
    struct kf_buf pem;
    enum kf_err rc;
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'o')
            out = optarg;
        else
            return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    /* Only a CRL may be replaced (publishing over a key or a certificate would be a disaster). */
    if (out && kf_cli_check_out(c, out, holds_crl)) return KF_EXIT_FAIL;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    kf_buf_init(&pem, 64 * 1024 * 1024);
    rc = kf_ca_publish_crl(c->deploy, c->actor, &crl);
    if (!rc) rc = kf_crl_pem(crl, &pem);
    if (!rc && out) rc = kf_file_write(out, pem.data, pem.len, 0644, KF_FILE_REPLACE);
    if (!rc) {
        if (c->json)
            kf_cli_print_json(
                json_pack("{s:I, s:I, s:s, s:s}", "number", (json_int_t)kf_crl_number(crl),
                          "revoked", (json_int_t)kf_crl_count(crl), "next_update",
                          kf_cli_time(kf_crl_next_update(crl)), "pem", kf_buf_str(&pem)));
        else if (out)
            printf("CRL %llu (%zu revoked, next update %s) written to %s\n",
                   (unsigned long long)kf_crl_number(crl), kf_crl_count(crl),
                   kf_cli_time(kf_crl_next_update(crl)), out);
        else
            fputs(kf_buf_str(&pem), stdout);
    }
    kf_buf_free(&pem);
    kf_crl_free(crl);
    return rc ? kf_cli_fail(c, rc) : KF_EXIT_OK;
}
