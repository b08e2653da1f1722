/* keyfleet enrollment ... */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "server/ops/enroll.h"

static const char *kind_name(enum kf_enroll_kind k)
{
    return k == KF_ENROLL_GROUP ? "group" : "individual";
}

static json_t *enrollment_json(const struct kf_enrollment_rec *e)
{
    json_t *j = json_pack("{s:s, s:s, s:b, s:b, s:s, s:s, s:s, s:s, s:s}", "id", e->id, "kind",
                          kind_name(e->kind), "enabled", e->enabled, "verified", e->verified,
                          "subject", e->subject ? e->subject : "", "key_fingerprint",
                          e->key_fingerprint, "allocation", e->allocation, "created",
                          kf_cli_time(e->created), "updated", kf_cli_time(e->updated));
    if (!j) return NULL;
    json_object_set_new(j, "hub", e->hub[0] ? json_string(e->hub) : json_null());
    json_object_set_new(j, "networks", e->networks ? json_string(e->networks) : json_null());
    json_object_set_new(j, "approval", json_string(e->approval_manual ? "manual" : "auto"));
    json_object_set_new(j, "require_binding", json_boolean(e->require_binding));
    if (e->kind == KF_ENROLL_GROUP && !e->verified) {
        json_object_set_new(j, "verification_code", json_string(e->verification_code));
        json_object_set_new(j, "code_expires", json_string(kf_cli_time(e->code_expires)));
    }
    return j;
}

/* Parses the common "--id ID" or a single positional ID; 0 on success. */
static int one_id(struct kf_cli *c, int argc, char **argv, const char **id)
{
    static const struct option opts[] = {{"id", required_argument, NULL, 'i'}, {NULL, 0, NULL, 0}};
    int opt;
    *id = NULL;
    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'i')
            *id = optarg;
        else if (opt == 'h')
            return -1;
        else
            return KF_EXIT_USAGE;
    }
    if (optind < argc && !*id) *id = argv[optind++];
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!*id) return kf_cli_usage(c, "which enrollment? give its ID");
    return 0;
}

/*
 * The usage rules of --allocation and --hub, checked before the deployment is opened (the
 * service checks them too): 0 when they fit together, else the exit code after the message.
 */
static int allocation_args(struct kf_cli *c, const struct kf_enroll_opts *eo)
{
    if (!eo->allocation) return 0;
    if (strcmp(eo->allocation, "hashed") != 0 && strcmp(eo->allocation, "static") != 0)
        return kf_cli_usage(c, "--allocation is hashed or static");
    if (strcmp(eo->allocation, "hashed") == 0 && eo->hub)
        return kf_cli_usage(c, "--hub names the hub of a static allocation; it does not go with "
                               "--allocation hashed");
    if (strcmp(eo->allocation, "static") == 0 && !eo->hub)
        return kf_cli_usage(c, "static allocation needs a hub: give --hub NAME");
    return 0;
}

/* "hashed allocation" or "static allocation to hub NAME", for messages. */
static const char *allocation_text(const struct kf_enroll_opts *eo)
{
    static char text[KF_ID_MAX + 64];
    if (!eo->hub) return "hashed allocation";
    snprintf(text, sizeof(text), "static allocation to hub %s", eo->hub);
    return text;
}

int kf_cmd_enrollment_add(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},        {"cert", required_argument, NULL, 'c'},
        {"pubkey", required_argument, NULL, 'p'},    {"networks", required_argument, NULL, 'n'},
        {"disabled", no_argument, NULL, 'd'},        {"allocation", required_argument, NULL, 'A'},
        {"hub", required_argument, NULL, 'H'},       {"approval", required_argument, NULL, 'P'},
        {"require-binding", no_argument, NULL, 'B'}, {NULL, 0, NULL, 0},
    };
    const char *id = NULL, *cert = NULL, *pubkey = NULL;
    struct kf_enroll_opts eo = {NULL, 0, NULL, NULL, NULL, 0};
    enum kf_err rc;
    int opt, r;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'i': id = optarg; break;
        case 'c': cert = optarg; break;
        case 'p': pubkey = optarg; break;
        case 'n': eo.networks = optarg; break;
        case 'd': eo.disabled = 1; break;
        case 'A': eo.allocation = optarg; break;
        case 'H': eo.hub = optarg; break;
        case 'P': eo.approval = optarg; break;
        case 'B': eo.require_binding = 1; break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!id) return kf_cli_usage(c, "--id is required");
    if (!cert == !pubkey) return kf_cli_usage(c, "give exactly one of --cert and --pubkey");
    if ((r = allocation_args(c, &eo)) != 0) return r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_add(c->deploy, c->actor, id, cert, pubkey, &eo);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s, s:b, s:s, s:s?}", "id", id, "kind", "individual",
                                    "enabled", !eo.disabled, "allocation",
                                    eo.hub ? "static" : "hashed", "hub", eo.hub));
    else
        printf("enrollment %s added (individual, %s, %s)\n", id,
               eo.disabled ? "disabled" : "enabled", allocation_text(&eo));
    return KF_EXIT_OK;
}

static int group_args(struct kf_cli *c, int argc, char **argv, const char **name, const char **file,
                      const char *file_opt, struct kf_enroll_opts *eo)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'N'},      {"ca", required_argument, NULL, 'a'},
        {"cert", required_argument, NULL, 'c'},      {"networks", required_argument, NULL, 'n'},
        {"disabled", no_argument, NULL, 'd'},        {"allocation", required_argument, NULL, 'A'},
        {"hub", required_argument, NULL, 'H'},       {"approval", required_argument, NULL, 'P'},
        {"require-binding", no_argument, NULL, 'B'}, {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'N': *name = optarg; break;
        case 'a':
        case 'c':
            if (!file_opt || (opt == 'a') != (strcmp(file_opt, "--ca") == 0))
                return kf_cli_usage(c, "does not take %s", opt == 'a' ? "--ca" : "--cert");
            *file = optarg;
            break;
        case 'n':
        case 'd':
        case 'A':
        case 'H':
        case 'P':
        case 'B':
            if (!eo)
                return kf_cli_usage(c, "--networks, --disabled, --allocation, --hub, --approval "
                                       "and --require-binding go with group create");
            if (opt == 'P')
                eo->approval = optarg;
            else if (opt == 'B')
                eo->require_binding = 1;
            else if (opt == 'n')
                eo->networks = optarg;
            else if (opt == 'd')
                eo->disabled = 1;
            else if (opt == 'A')
                eo->allocation = optarg;
            else
                eo->hub = optarg;
            break;
        case 'h': return -1;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!*name) return kf_cli_usage(c, "--name is required");
    if (file_opt && !*file) return kf_cli_usage(c, "%s is required", file_opt);
    return eo ? allocation_args(c, eo) : 0;
}

int kf_cmd_group_create(struct kf_cli *c, int argc, char **argv)
{
    const char *name = NULL, *ca = NULL;
    struct kf_enroll_opts eo = {NULL, 0, NULL, NULL, NULL, 0};
    char code[KF_CODE_MAX];
    enum kf_err rc;
    int r = group_args(c, argc, argv, &name, &ca, "--ca", &eo);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_group_create(c->deploy, c->actor, name, ca, &eo, code);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        kf_cli_print_json(json_pack("{s:s, s:s, s:b, s:s, s:s, s:s?}", "name", name, "kind",
                                    "group", "verified", 0, "verification_code", code, "allocation",
                                    eo.hub ? "static" : "hashed", "hub", eo.hub));
        return KF_EXIT_OK;
    }
    printf("group %s created (%s); it takes effect once verified.\n\n", name, allocation_text(&eo));
    printf("verification code: %s\n\n", code);
    printf(
        "Prove you hold the CA's key: make a certificate with CN=%s signed by it, e.g.\n"
        "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n"
        "      -keyout verify.key -subj /CN=%s -out verify.csr\n"
        "  openssl x509 -req -in verify.csr -CA %s -CAkey <the CA's key> -days 1 -out "
        "verify.pem\n"
        "  keyfleet enrollment group verify --name %s --cert verify.pem\n"
        "The code expires in 24 hours (keyfleet enrollment group code --name %s for a new one).\n",
        code, code, ca, name, name);
    return KF_EXIT_OK;
}

int kf_cmd_group_verify(struct kf_cli *c, int argc, char **argv)
{
    const char *name = NULL, *cert = NULL;
    enum kf_err rc;
    int r = group_args(c, argc, argv, &name, &cert, "--cert", NULL);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_group_verify(c->deploy, c->actor, name, cert);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:b}", "name", name, "verified", 1));
    else
        printf("group %s verified: devices whose chain reaches its CA may now provision\n", name);
    return KF_EXIT_OK;
}

int kf_cmd_group_code(struct kf_cli *c, int argc, char **argv)
{
    const char *name = NULL;
    char code[KF_CODE_MAX];
    enum kf_err rc;
    int r = group_args(c, argc, argv, &name, NULL, NULL, NULL);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_group_code(c->deploy, c->actor, name, code);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:s}", "name", name, "verification_code", code));
    else
        printf("verification code for group %s: %s (valid 24 hours)\n", name, code);
    return KF_EXIT_OK;
}

static enum kf_err enrollment_row_cb(const struct kf_enrollment_rec *e, void *arg)
{
    struct kf_cli_list *l = arg;
    if (l->arr) return kf_cli_list_json(l, enrollment_json(e));
    return kf_cli_table_add(&l->t, e->id, kind_name(e->kind), e->enabled ? "yes" : "no",
                            e->verified ? "yes" : "no", e->subject ? e->subject : "(public key)",
                            kf_cli_time(e->created));
}

struct enrollment_query {
    int kind;
    struct kf_cli_list *l;
};

static enum kf_err enrollment_query_cb(struct kf_txn *txn, void *arg)
{
    struct enrollment_query *q = arg;
    return kf_txn_enrollment_list(txn, q->kind, enrollment_row_cb, q->l);
}

int kf_cmd_enrollment_list(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"kind", required_argument, NULL, 'k'},
                                         {NULL, 0, NULL, 0}};
    struct kf_cli_list l;
    struct enrollment_query q = {0, &l};
    int opt;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        if (opt == 'k') {
            if (strcmp(optarg, "individual") == 0)
                q.kind = KF_ENROLL_INDIVIDUAL;
            else if (strcmp(optarg, "group") == 0)
                q.kind = KF_ENROLL_GROUP;
            else
                return kf_cli_usage(c, "--kind is individual or group");
        } else {
            return opt == 'h' ? KF_EXIT_OK : KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    kf_cli_list_init(c, &l, 6, "ID", "KIND", "ENABLED", "VERIFIED", "SUBJECT", "CREATED");
    return kf_cli_list_run(c, &l, enrollment_query_cb, &q, "no enrollments");
}

int kf_cmd_enrollment_show(struct kf_cli *c, int argc, char **argv)
{
    struct kf_enrollment_rec e;
    struct kf_txn *txn = NULL;
    const char *id;
    enum kf_err rc;
    int r = one_id(c, argc, argv, &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    memset(&e, 0, sizeof(e));
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_enrollment_get(txn, id, &e);
    kf_txn_end(txn);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        json_t *j = enrollment_json(&e);
        if (e.cert_pem) json_object_set_new(j, "certificate", json_string(e.cert_pem));
        if (e.pubkey_pem) json_object_set_new(j, "public_key", json_string(e.pubkey_pem));
        kf_cli_print_json(j);
    } else {
        printf("id               %s\n", e.id);
        printf("kind             %s\n", kind_name(e.kind));
        printf("enabled          %s\n", e.enabled ? "yes" : "no");
        if (e.kind == KF_ENROLL_GROUP) {
            printf("verified         %s\n", e.verified ? "yes" : "no");
            if (!e.verified)
                printf("verification     code %s, expires %s\n", e.verification_code,
                       kf_cli_time(e.code_expires));
        }
        printf("%-16s %s\n", e.kind == KF_ENROLL_GROUP ? "CA subject" : "subject",
               e.subject ? e.subject : "(enrolled by public key)");
        printf("key sha256       %s\n", e.key_fingerprint);
        printf("networks         %s\n", e.networks ? e.networks : "any");
        printf("approval         %s\n", e.approval_manual ? "manual (new devices wait for an "
                                                            "operator)"
                                                          : "auto");
        printf("channel binding  %s\n",
               e.require_binding ? "required in every CSR" : "checked when sent");
        printf("allocation       %s\n", e.allocation);
        if (e.hub[0]) printf("hub              %s\n", e.hub);
        printf("created          %s\n", kf_cli_time(e.created));
        printf("updated          %s\n", kf_cli_time(e.updated));
    }
    kf_enrollment_clear(&e);
    return KF_EXIT_OK;
}

int kf_cmd_enrollment_set(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"allocation", required_argument, NULL, 'A'},
        {"hub", required_argument, NULL, 'H'},
        {"networks", required_argument, NULL, 'n'},
        {"any-network", no_argument, NULL, 'a'},
        {"approval", required_argument, NULL, 'P'},
        {"require-binding", no_argument, NULL, 'B'},
        {"no-require-binding", no_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    struct kf_enroll_change ch = {NULL, NULL, NULL, 0, NULL, -1};
    struct kf_enroll_opts eo = {NULL, 0, NULL, NULL, NULL, 0};
    struct kf_enrollment_rec e;
    struct kf_txn *txn = NULL;
    const char *id = NULL;
    int changed = 0, opt, r;
    enum kf_err rc;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'i': id = optarg; break;
        case 'A': ch.allocation = optarg; break;
        case 'H': ch.hub = optarg; break;
        case 'n': ch.networks = optarg; break;
        case 'a': ch.any_network = 1; break;
        case 'P': ch.approval = optarg; break;
        case 'B': ch.require_binding = 1; break;
        case 'b': ch.require_binding = 0; break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc && !id) id = argv[optind++];
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (!id) return kf_cli_usage(c, "which enrollment? give its ID");
    if (!ch.allocation && !ch.hub && !ch.networks && !ch.any_network && !ch.approval &&
        ch.require_binding < 0)
        return kf_cli_usage(c, "nothing to change: give --allocation, --hub, --networks, "
                               "--any-network, --approval or --require-binding");
    if (ch.networks && ch.any_network)
        return kf_cli_usage(c, "give --networks or --any-network, not both");
    eo.allocation = ch.allocation;
    eo.hub = ch.hub;
    if ((r = allocation_args(c, &eo)) != 0) return r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_update(c->deploy, c->actor, id, &ch, &changed);
    if (rc) return kf_cli_fail(c, rc);
    /* Show the enrollment as it now is. */
    memset(&e, 0, sizeof(e));
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_enrollment_get(txn, id, &e);
    kf_txn_end(txn);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        kf_cli_print_json(json_pack(
            "{s:s, s:b, s:s, s:o, s:o, s:s, s:b}", "id", id, "changed", changed, "allocation",
            e.allocation, "hub", e.hub[0] ? json_string(e.hub) : json_null(), "networks",
            e.networks ? json_string(e.networks) : json_null(), "approval",
            e.approval_manual ? "manual" : "auto", "require_binding", e.require_binding));
    } else {
        printf("enrollment %s %s: %s allocation%s%s, networks %s, approval %s%s\n", id,
               changed ? "changed" : "unchanged", e.allocation, e.hub[0] ? " to hub " : "", e.hub,
               e.networks ? e.networks : "any", e.approval_manual ? "manual" : "auto",
               e.require_binding ? ", channel binding required" : "");
    }
    kf_enrollment_clear(&e);
    return KF_EXIT_OK;
}

static int set_enabled(struct kf_cli *c, int argc, char **argv, int enable)
{
    const char *id;
    int changed = 0;
    enum kf_err rc;
    int r = one_id(c, argc, argv, &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_set_enabled(c->deploy, c->actor, id, enable, &changed);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(
            json_pack("{s:s, s:b, s:b}", "id", id, "enabled", enable, "changed", changed));
    else
        printf("enrollment %s %s%s\n", id, changed ? "" : "was already ",
               enable ? "enabled" : "disabled");
    return KF_EXIT_OK;
}

int kf_cmd_enrollment_enable(struct kf_cli *c, int argc, char **argv)
{
    return set_enabled(c, argc, argv, 1);
}

int kf_cmd_enrollment_disable(struct kf_cli *c, int argc, char **argv)
{
    return set_enabled(c, argc, argv, 0);
}

int kf_cmd_enrollment_remove(struct kf_cli *c, int argc, char **argv)
{
    const char *id;
    enum kf_err rc;
    int r = one_id(c, argc, argv, &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_remove(c->deploy, c->actor, id);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json)
        kf_cli_print_json(json_pack("{s:s, s:b}", "id", id, "removed", 1));
    else
        printf("enrollment %s removed\n", id);
    return KF_EXIT_OK;
}

/* ---- approvals ---- */

static json_t *approval_json(const struct kf_approval_rec *a)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:o}", "device", a->device_id,
                     "enrollment", a->enrollment, "state", kf_approval_state_name((int)a->state),
                     "key_fingerprint", a->fingerprint, "ip", a->source_ip, "requested",
                     kf_cli_time(a->requested), "last_request", kf_cli_time(a->last_request),
                     "requests", (json_int_t)a->requests, "decided",
                     a->decided ? json_string(kf_cli_time(a->decided)) : json_null(), "decided_by",
                     a->decided_by[0] ? json_string(a->decided_by) : json_null());
}

struct pending_list {
    json_t *all;
    size_t n;
};

static enum kf_err pending_row(const struct kf_approval_rec *a, void *arg)
{
    struct pending_list *l = arg;
    l->n++;
    if (l->all) {
        json_array_append_new(l->all, approval_json(a));
        return KF_OK;
    }
    if (l->n == 1)
        printf("%-24s %-16s %-9s %-20s %-15s %s\n", "DEVICE", "ENROLLMENT", "STATE", "FIRST ASKED",
               "FROM", "KEY SHA-256");
    printf("%-24s %-16s %-9s %-20s %-15s %.16s...\n", a->device_id, a->enrollment,
           kf_approval_state_name((int)a->state), kf_cli_time(a->requested), a->source_ip,
           a->fingerprint);
    return KF_OK;
}

int kf_cmd_enrollment_pending(struct kf_cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"all", no_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};
    struct pending_list l = {NULL, 0};
    struct kf_txn *txn = NULL;
    int all = 0, opt;
    enum kf_err rc;

    while ((opt = kf_cli_getopt(c, argc, argv, "", opts)) != -1) {
        switch (opt) {
        case 'a': all = 1; break;
        case 'h': return KF_EXIT_OK;
        default: return KF_EXIT_USAGE;
        }
    }
    if (optind < argc) return kf_cli_usage(c, "unexpected argument '%s'", argv[optind]);
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    if (c->json) l.all = json_array();
    rc = kf_store_read(c->deploy->store, &txn);
    if (!rc) rc = kf_txn_approval_list(txn, all ? -1 : KF_APPROVAL_PENDING, pending_row, &l);
    kf_txn_end(txn);
    if (rc) {
        json_decref(l.all);
        return kf_cli_fail(c, rc);
    }
    if (c->json)
        kf_cli_print_json(l.all);
    else if (!l.n)
        printf("%s\n", all ? "no device has asked for approval" : "no device waits for approval");
    return KF_EXIT_OK;
}

static int decide(struct kf_cli *c, int argc, char **argv, int approve)
{
    struct kf_approval_rec a;
    const char *id;
    int changed = 0;
    enum kf_err rc;
    int r = one_id(c, argc, argv, &id);
    if (r) return r < 0 ? KF_EXIT_OK : r;
    if (kf_cli_open(c)) return KF_EXIT_FAIL;
    rc = kf_enroll_decide(c->deploy, c->actor, id, approve, &a, &changed);
    if (rc) return kf_cli_fail(c, rc);
    if (c->json) {
        json_t *j = approval_json(&a);
        json_object_set_new(j, "changed", json_boolean(changed));
        kf_cli_print_json(j);
    } else {
        printf("device %s %s%s (enrollment %s)%s\n", id, changed ? "" : "was already ",
               approve ? "approved" : "rejected", a.enrollment,
               approve && changed ? ": it gets its certificate when it next asks" : "");
    }
    return KF_EXIT_OK;
}

int kf_cmd_enrollment_approve(struct kf_cli *c, int argc, char **argv)
{
    return decide(c, argc, argv, 1);
}

int kf_cmd_enrollment_reject(struct kf_cli *c, int argc, char **argv)
{
    return decide(c, argc, argv, 0);
}
