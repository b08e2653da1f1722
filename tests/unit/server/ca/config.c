/*
 * config: keyfleet.conf: the defaults, a file written by kf_config_write read back whole, every
 * kind of mistake named by file, line and what is wrong, and paths resolved against the file's
 * directory.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/ca/config.h"

/* Writes `text` to a new file `name` in the test directory and loads it. */
static enum kf_err load_text(const char *name, const char *text, struct kf_config *c)
{
    const char *path = kf_test_path(name);
    kf_test_write(path, text);
    return kf_config_load(path, c);
}

/* Asserts that loading `text` fails with KF_E_CONFIG, naming the file and each needle. */
static void expect_config_error(const char *name, const char *text, const char *const *needles,
                                size_t n)
{
    struct kf_config c;
    KF_EXPECT_ERR(KF_E_CONFIG, load_text(name, text, &c));
    KF_EXPECT_MSG(kf_test_path(name));
    for (size_t i = 0; i < n; i++)
        KF_EXPECT_MSG(needles[i]);
}

static void test_defaults(void **state)
{
    struct kf_config c;
    memset(&c, 0x5a, sizeof(c));
    kf_config_defaults(&c);
    assert_string_equal(c.dir, "");
    assert_string_equal(c.deployment.name, "keyfleet");
    assert_string_equal(c.store.url, "keyfleet.db");
    assert_string_equal(c.ca.key_type, "p256");
    assert_string_equal(c.ca.root_cert, "ca/root.crt");
    assert_string_equal(c.ca.root_key, "ca/root.key");
    assert_string_equal(c.ca.issuing_cert, "ca/issuing.crt");
    assert_string_equal(c.ca.issuing_key, "ca/issuing.key");
    assert_string_equal(c.ca.crl_file, "ca/crl.pem");
    assert_int_equal(c.ca.device_cert_days, 30);
    assert_int_equal(c.ca.service_cert_days, 365);
    assert_int_equal(c.ca.server_cert_days, 365);
    assert_int_equal(c.ca.crl_hours, 24);
    assert_string_equal(c.server.cert, "server/server.crt");
    assert_string_equal(c.server.key, "server/server.key");
    assert_string_equal(c.provisioning.listen, "0.0.0.0:8443");
    assert_string_equal(c.hub.listen, "0.0.0.0:8883");
}

/* A file that sets only some keys keeps the defaults of the others; `dir` is the file's. */
static void test_partial_file_keeps_defaults(void **state)
{
    struct kf_config c, def;
    const char *path = kf_test_path("partial.conf");
    char dir[1024];

    kf_test_write(path, "# a comment\n"
                        "; another comment\n"
                        "\n"
                        "[ca]\n"
                        "  device_cert_days   =   7  \n"
                        "[hub]\n"
                        "listen=127.0.0.1:1883\n");
    KF_OK_OR_FAIL(kf_config_load(path, &c));
    assert_int_equal(c.ca.device_cert_days, 7);
    assert_string_equal(c.hub.listen, "127.0.0.1:1883");
    snprintf(dir, sizeof(dir), "%s", kf_test_dir());
    assert_string_equal(c.dir, dir);
    kf_config_defaults(&def);
    assert_string_equal(c.deployment.name, def.deployment.name);
    assert_string_equal(c.ca.issuing_key, def.ca.issuing_key);
    assert_int_equal(c.ca.service_cert_days, def.ca.service_cert_days);
    assert_int_equal(c.ca.crl_hours, def.ca.crl_hours);
    assert_string_equal(c.provisioning.listen, def.provisioning.listen);
}

static void test_write_then_load(void **state)
{
    struct kf_config w, r;
    const char *path = kf_test_path("round.conf");
    struct stat st;
    char *text;

    kf_config_defaults(&w);
    snprintf(w.deployment.name, sizeof(w.deployment.name), "acme-fleet");
    snprintf(w.store.url, sizeof(w.store.url), "sqlite:/var/lib/keyfleet/registry.db");
    snprintf(w.ca.key_type, sizeof(w.ca.key_type), "p384");
    snprintf(w.ca.root_cert, sizeof(w.ca.root_cert), "/etc/keyfleet/root.crt");
    /* ';' and '#' are not comments inside a value: PKCS#11 URIs are full of them. */
    snprintf(w.ca.issuing_key, sizeof(w.ca.issuing_key),
             "pkcs11:token=keyfleet%%20ca;object=issuing;type=private?module-path=/usr/lib/"
             "softhsm/libsofthsm2.so&pin-source=file:/run/pin#1");
    snprintf(w.ca.crl_file, sizeof(w.ca.crl_file), "public/crl #2; current.pem");
    w.ca.device_cert_days = 3650;
    w.ca.service_cert_days = 1;
    w.ca.server_cert_days = 90;
    w.ca.crl_hours = 24 * 366;
    snprintf(w.server.cert, sizeof(w.server.cert), "tls/cert.pem");
    snprintf(w.server.key, sizeof(w.server.key), "tpm2:handle:0x81000010");
    snprintf(w.provisioning.listen, sizeof(w.provisioning.listen), "[::]:9443");
    snprintf(w.hub.listen, sizeof(w.hub.listen), "10.1.2.3:8883");

    KF_OK_OR_FAIL(kf_config_write(path, &w, "written by the config unit test"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    text = kf_test_read(path);
    assert_non_null(strstr(text, "# written by the config unit test\n"));
    free(text);

    KF_OK_OR_FAIL(kf_config_load(path, &r));
    assert_string_equal(r.dir, kf_test_dir());
    assert_string_equal(r.deployment.name, w.deployment.name);
    assert_string_equal(r.store.url, w.store.url);
    assert_string_equal(r.ca.key_type, w.ca.key_type);
    assert_string_equal(r.ca.root_cert, w.ca.root_cert);
    assert_string_equal(r.ca.root_key, w.ca.root_key);
    assert_string_equal(r.ca.issuing_cert, w.ca.issuing_cert);
    assert_string_equal(r.ca.issuing_key, w.ca.issuing_key);
    assert_string_equal(r.ca.crl_file, w.ca.crl_file);
    assert_int_equal(r.ca.device_cert_days, w.ca.device_cert_days);
    assert_int_equal(r.ca.service_cert_days, w.ca.service_cert_days);
    assert_int_equal(r.ca.server_cert_days, w.ca.server_cert_days);
    assert_int_equal(r.ca.crl_hours, w.ca.crl_hours);
    assert_string_equal(r.server.cert, w.server.cert);
    assert_string_equal(r.server.key, w.server.key);
    assert_string_equal(r.provisioning.listen, w.provisioning.listen);
    assert_string_equal(r.hub.listen, w.hub.listen);

    /* The writer never replaces a configuration. */
    KF_EXPECT_ERR(KF_E_EXISTS, kf_config_write(path, &r, "again"));
    text = kf_test_read(path);
    assert_null(strstr(text, "again"));
    free(text);
}

/* The defaults, written and read back, are the defaults. */
static void test_defaults_round_trip(void **state)
{
    struct kf_config w, r;
    const char *path = kf_test_path("defaults.conf");
    kf_config_defaults(&w);
    KF_OK_OR_FAIL(kf_config_write(path, &w, "defaults"));
    KF_OK_OR_FAIL(kf_config_load(path, &r));
    memset(r.dir, 0, sizeof(r.dir));
    assert_memory_equal(&w, &r, sizeof(w));
}

/* What a reload changed, for the audit log: values, but never a key URI that may hold a PIN. */
static void test_diff(void **state)
{
    struct kf_config a, b;
    char *text;
    kf_config_defaults(&a);
    b = a;
    text = kf_config_diff(&a, &b);
    assert_string_equal(text, "{}");
    free(text);
    b.hub.msg_rate = 5;
    KF_OK_OR_FAIL(kf_conf_set(&kf_hub_section, kf_conf_find(&kf_hub_section, "deny"), &b.hub,
                              "192.0.2.0/24"));
    snprintf(b.ca.issuing_key, sizeof(b.ca.issuing_key), "pkcs11:object=k?pin-value=1234");
    text = kf_config_diff(&a, &b);
    assert_string_equal(text, "{\"ca.issuing_key\":{\"changed\":true},"
                              "\"hub.deny\":{\"from\":\"none\",\"to\":\"192.0.2.0/24\"},"
                              "\"hub.msg_rate\":{\"from\":1000,\"to\":5}}");
    assert_null(strstr(text, "1234"));
    free(text);
}

/* Every section's defaults read back through their own keys, and no key is declared twice. */
static void test_every_section_table(void **state)
{
    static const struct kf_conf_section *const all[] = {
        &kf_deployment_section, &kf_store_section, &kf_ca_section,     &kf_server_section,
        &kf_prov_section,       &kf_hub_section,   &kf_events_section, &kf_audit_section};
    for (size_t i = 0; i < KF_ARRAY_LEN(all); i++) {
        struct kf_config scratch; /* larger than any one section's struct */
        memset(&scratch, 0, sizeof(scratch));
        KF_OK_OR_FAIL(kf_conf_defaults(all[i], &scratch));
        for (size_t a = 0; a < all[i]->nkeys; a++)
            for (size_t b = a + 1; b < all[i]->nkeys; b++)
                if (strcmp(all[i]->keys[a].name, all[i]->keys[b].name) == 0 ||
                    all[i]->keys[a].offset == all[i]->keys[b].offset)
                    fail_msg("[%s] %s and %s", all[i]->name, all[i]->keys[a].name,
                             all[i]->keys[b].name);
    }
}

/* A value goes straight into the struct of the module it configures. */
static void test_values_land_in_module_structs(void **state)
{
    struct kf_config c;
    KF_OK_OR_FAIL(load_text("modules.conf",
                            "[provisioning]\nmax_connections_per_ip = 3\nrate_burst = 9\n"
                            "request_timeout_ms = 1500\nmax_body_bytes = 2048\n"
                            "metrics_allow = 192.0.2.0/24\n"
                            "[hub]\nconnect_rate_per_ip = 7\nrate_action = drop\n"
                            "tls_resumption = tickets\nmax_subscriptions = 5\n"
                            "allow = 10.0.0.0/8\n"
                            "[events]\naggregate_s = 4\nmax_rows = 10\n"
                            "[audit]\ncheckpoint_s = 60\n",
                            &c));
    assert_int_equal(c.provisioning.limits.max_conns_per_ip, 3);
    assert_true(c.provisioning.limits.burst_per_ip == 9.0);
    assert_int_equal(c.provisioning.accept.first_deadline_ms, 1500);
    assert_int_equal(c.provisioning.http.max_body, 2048);
    assert_true(kf_conf_nets_match(&c.provisioning.metrics_allow, "192.0.2.7", 0));
    assert_false(kf_conf_nets_match(&c.provisioning.metrics_allow, "127.0.0.1", 1));
    assert_true(c.hub.limits.rate_per_ip == 7.0);
    assert_int_equal(c.hub.rate_action, KF_HUB_DROP);
    assert_int_equal(c.hub.acl_action, KF_HUB_DISCONNECT);
    assert_int_equal(c.hub.tls_resumption, KF_HUB_TICKETS);
    assert_int_equal(c.hub.broker.max_subs, 5);
    assert_true(kf_conf_nets_match(&c.hub.accept.allow, "10.9.9.9", 0));
    assert_false(kf_conf_nets_match(&c.hub.accept.allow, "192.0.2.1", 1));
    assert_false(kf_conf_nets_match(&c.hub.accept.deny, "10.9.9.9", 1)); /* "none" */
    assert_int_equal(c.events.interval_s, 4);
    assert_int_equal(c.events.max_rows, 10);
    assert_int_equal(c.audit.checkpoint_s, 60);
}

static void test_unknown_section_and_key(void **state)
{
    /* The section is reported on its header's line, even when it is empty. */
    static const char *const sec[] = {"line 3: ", "unknown section [cert]"};
    static const char *const empty_sec[] = {"line 2: ", "unknown section [provisoning]"};
    static const char *const key[] = {"line 4: ", "unknown key 'device_days' in section [ca]"};
    static const char *const key_elsewhere[] = {"line 2: ",
                                                "unknown key 'device_cert_days' in section [hub]"};
    expect_config_error("sec.conf", "[ca]\n\n[cert]\ndevice_cert_days = 3\n", sec, 2);
    expect_config_error("sec.conf", "[ca]\n[provisoning]\n", empty_sec, 2);
    expect_config_error("sec.conf", "# keys\n[ca]\ncrl_hours = 3\ndevice_days = 3\n", key, 2);
    /* A key of another section is still unknown where it is. */
    expect_config_error("sec.conf", "[hub]\ndevice_cert_days = 3\n", key_elsewhere, 2);
}

static void test_key_set_twice(void **state)
{
    static const char *const twice[] = {"line 5: ", "ca.crl_hours is set twice (first on line 2)"};
    /* Twice even when the section header is repeated in between. */
    expect_config_error("twice.conf", "[ca]\ncrl_hours = 1\n[hub]\n[ca]\ncrl_hours = 2\n", twice,
                        2);
}

static void test_bad_numbers(void **state)
{
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"[ca]\ndevice_cert_days = 0\n",
         "ca.device_cert_days = \"0\" is not a whole number from 1 to 3650"},
        {"[ca]\ndevice_cert_days = 3651\n",
         "ca.device_cert_days = \"3651\" is not a whole number from 1 to 3650"},
        {"[ca]\ndevice_cert_days = -30\n", "ca.device_cert_days = \"-30\" is not a whole number"},
        {"[ca]\ncrl_hours = 8785\n",
         "ca.crl_hours = \"8785\" is not a whole number from 1 to 8784"},
        {"[ca]\nserver_cert_days = 30d\n", "ca.server_cert_days = \"30d\" is not a whole number"},
        {"[ca]\nservice_cert_days = thirty\n",
         "ca.service_cert_days = \"thirty\" is not a whole number"},
        {"[ca]\nservice_cert_days = 1.5\n", "ca.service_cert_days = \"1.5\" is not a whole number"},
        {"[ca]\nservice_cert_days = 0x10\n",
         "ca.service_cert_days = \"0x10\" is not a whole number"},
        {"[ca]\ncrl_hours = 99999999999999999999\n", "is not a whole number from 1 to 8784"},
        {"[ca]\ncrl_hours =\n", "ca.crl_hours = \"\" is not a whole number"},
        {"[hub]\ntls_offload = maybe\n",
         "hub.tls_offload = \"maybe\" is not a switch: 0 or 1 (true/false, yes/no, on/off)"},
        {"[hub]\ntls_offload = 2\n", "hub.tls_offload = \"2\" is not a whole number from 0 to 1"},
    };
    struct kf_config c;
    for (size_t i = 0; i < KF_ARRAY_LEN(cases); i++) {
        if (load_text("num.conf", cases[i].text, &c) != KF_E_CONFIG)
            fail_msg("\"%s\" was accepted", cases[i].text);
        KF_EXPECT_MSG("line 2: ");
        KF_EXPECT_MSG(cases[i].needle);
    }
    /* The limits themselves are fine. */
    KF_OK_OR_FAIL(load_text("num.conf", "[ca]\ndevice_cert_days = 1\ncrl_hours = 8784\n", &c));
    assert_int_equal(c.ca.device_cert_days, 1);
    assert_int_equal(c.ca.crl_hours, 8784);
    /* Switches take the words people write for them too. */
    KF_OK_OR_FAIL(load_text("num.conf", "[hub]\ntls_offload = false\n", &c));
    assert_int_equal(c.hub.tls_offload, 0);
    KF_OK_OR_FAIL(load_text("num.conf", "[hub]\ntls_offload = Yes\n", &c));
    assert_int_equal(c.hub.tls_offload, 1);
    KF_OK_OR_FAIL(load_text("num.conf", "[hub]\ntls_offload = off\n", &c));
    assert_int_equal(c.hub.tls_offload, 0);
}

static void test_bad_strings(void **state)
{
    static const char *const empty[] = {"line 2: ", "deployment.name is empty"};
    static const char *const empty_key[] = {"line 3: ", "ca.issuing_key is empty"};
    static const char *const too_long[] = {"line 2: ", "deployment.name is longer than 63"};
    char text[256];

    expect_config_error("str.conf", "[deployment]\nname =\n", empty, 2);
    expect_config_error("str.conf", "[ca]\nkey_type = p256\nissuing_key =    \n", empty_key, 2);
    snprintf(text, sizeof(text), "[deployment]\nname = %064d\n", 0);
    expect_config_error("str.conf", text, too_long, 2);
    /* 63 characters fit. */
    {
        struct kf_config c;
        snprintf(text, sizeof(text), "[deployment]\nname = %063d\n", 0);
        KF_OK_OR_FAIL(load_text("str.conf", text, &c));
        assert_int_equal(strlen(c.deployment.name), 63);
    }
}

static void test_syntax_errors(void **state)
{
    static const char *const header[] = {"line 2: ", "a section header must end with ']'"};
    static const char *const no_eq[] = {"line 3: ", "expected \"key = value\" or \"[section]\""};
    static const char *const outside[] = {"line 1: ", "key outside any [section]"};
    expect_config_error("syn.conf", "\n[ca\ncrl_hours = 1\n", header, 2);
    expect_config_error("syn.conf", "[ca]\ncrl_hours = 1\ncrl_hours 2\n", no_eq, 2);
    expect_config_error("syn.conf", "name = x\n[deployment]\n", outside, 2);
}

static void test_missing_file(void **state)
{
    struct kf_config c;
    const char *path = kf_test_path("no-such-dir/keyfleet.conf");
    KF_EXPECT_ERR(KF_E_NOT_FOUND, kf_config_load(path, &c));
    KF_EXPECT_MSG("no configuration file ");
    KF_EXPECT_MSG(path);
}

static void test_resolve(void **state)
{
    struct kf_config c;
    char out[KF_CONF_PATH_MAX], want[KF_CONF_PATH_MAX + 64];
    static const char *const verbatim[] = {
        "/etc/keyfleet/issuing.key",
        "pkcs11:token=ca;object=issuing;type=private?pin-source=file:/run/pin",
        "tpm2:handle:0x81000010",
        "tpm2:/var/lib/keyfleet/key.tss2",
        "handle:0x81000010",
        "sqlite:/var/lib/keyfleet/keyfleet.db",
        "postgresql://keyfleet@db.example/keyfleet",
        "postgres://db.example/keyfleet",
    };

    kf_config_defaults(&c);
    snprintf(c.dir, sizeof(c.dir), "/srv/fleet");
    KF_OK_OR_FAIL(kf_config_resolve(&c, "ca/issuing.key", out, sizeof(out)));
    assert_string_equal(out, "/srv/fleet/ca/issuing.key");
    KF_OK_OR_FAIL(kf_config_resolve(&c, "keyfleet.db", out, sizeof(out)));
    assert_string_equal(out, "/srv/fleet/keyfleet.db");
    /* A relative sqlite: path is relative to the file's directory too. */
    KF_OK_OR_FAIL(kf_config_resolve(&c, "sqlite:data/kf.db", out, sizeof(out)));
    assert_string_equal(out, "/srv/fleet/data/kf.db");
    for (size_t i = 0; i < KF_ARRAY_LEN(verbatim); i++) {
        KF_OK_OR_FAIL(kf_config_resolve(&c, verbatim[i], out, sizeof(out)));
        assert_string_equal(out, verbatim[i]);
    }
    /* Too long for the caller's buffer: an error, never a cut path. */
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_config_resolve(&c, "ca/issuing.key", out, 12));
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_config_resolve(&c, "pkcs11:token=ca;object=x", out, 12));
    KF_EXPECT_MSG("value too long: pkcs11:token=ca;object=x");

    /* After a load, relative paths are relative to the file, wherever the caller is. */
    KF_OK_OR_FAIL(load_text("resolve.conf", "[ca]\nissuing_key = keys/issuing.key\n", &c));
    KF_OK_OR_FAIL(kf_config_resolve(&c, c.ca.issuing_key, out, sizeof(out)));
    snprintf(want, sizeof(want), "%s/keys/issuing.key", kf_test_dir());
    assert_string_equal(out, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_partial_file_keeps_defaults),
        cmocka_unit_test(test_write_then_load),
        cmocka_unit_test(test_defaults_round_trip),
        cmocka_unit_test(test_every_section_table),
        cmocka_unit_test(test_values_land_in_module_structs),
        cmocka_unit_test(test_unknown_section_and_key),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_key_set_twice),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
