/* est: certs-only, CSR bodies and csrattrs, judged by openssl. */
#include "testutil.h"

#include <string.h>

#include "common/buf.h"
#include "common/pem.h"
#include "common/pki_cert.h"
#include "common/pki_csr.h"
#include "common/est.h"

struct fixture {
    struct kf_test_pki pki;
    struct kf_cert *device;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    kf_test_pki_make(&f->pki, KF_KEY_EC_P256);
    f->device = kf_test_issue(&f->pki, KF_PROFILE_DEVICE, "dev-1", 0, 0, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kf_cert_free(f->device);
    kf_test_pki_free(&f->pki);
    free(f);
    return 0;
}

/* Asserts that every line of `text` is at most 64 characters and the text ends in "\n". */
static void lines_at_most_64(const char *text)
{
    size_t col = 0;
    assert_true(*text != '\0');
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            col = 0;
            continue;
        }
        assert_true(++col <= 64);
    }
    assert_int_equal(col, 0);
}

/* Reads a whole file into `b` (failing the test on error). */
static void read_into(struct kf_buf *b, const char *path)
{
    kf_buf_reset(b);
    KF_OK_OR_FAIL(kf_buf_read_file(b, path));
}

/*
 * kf_est_certs_only over `certs`: openssl reads the certificates back in order, and the DER is
 * what `openssl crl2pkcs7 -nocrl` makes of the same PEM file.
 */
static void check_certs_only(struct kf_cert *const *certs, size_t n, const char *const *subjects)
{
    const char *b64 = kf_test_path("certs.b64"), *der = kf_test_path("certs.der");
    const char *pem = kf_test_path("certs.pem"), *printed = kf_test_path("printed.txt");
    const char *ref = kf_test_path("ref.der");
    struct kf_buf out, a, b;
    char *text;
    const char *at;

    kf_buf_init(&out, 1 << 20);
    kf_buf_init(&a, 1 << 20);
    kf_buf_init(&b, 1 << 20);
    KF_OK_OR_FAIL(kf_est_certs_only(certs, n, &out));
    lines_at_most_64(kf_buf_str(&out));
    kf_test_write(b64, kf_buf_str(&out));
    assert_int_equal(kf_test_sh("openssl base64 -d -in '%s' -out '%s'", b64, der), 0);
    assert_int_equal(
        kf_test_sh("openssl pkcs7 -inform DER -in '%s' -print_certs -noout > '%s'", der, printed),
        0);
    text = kf_test_read(printed);
    at = text;
    for (size_t i = 0; i < n; i++) {
        at = strstr(at, subjects[i]);
        if (!at)
            fail_msg("certificate %zu (%s) missing or out of order in:\n%s", i, subjects[i], text);
        at += strlen(subjects[i]);
    }
    free(text);

    kf_buf_reset(&a);
    for (size_t i = 0; i < n; i++)
        KF_OK_OR_FAIL(kf_cert_pem(certs[i], &a));
    kf_test_write(pem, kf_buf_str(&a));
    assert_int_equal(
        kf_test_sh("openssl crl2pkcs7 -nocrl -certfile '%s' -outform DER -out '%s'", pem, ref), 0);
    read_into(&a, der);
    read_into(&b, ref);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    kf_buf_free(&out);
    kf_buf_free(&a);
    kf_buf_free(&b);
}

static void test_certs_only_cacerts(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *chain[] = {f->pki.issuing, f->pki.root};
    const char *const subjects[] = {"subject=O = keyfleet tests, CN = Test Issuing CA",
                                    "subject=O = keyfleet tests, CN = Test Root CA"};
    check_certs_only(chain, 2, subjects);
}

static void test_certs_only_issued(void **state)
{
    struct fixture *f = *state;
    const char *const subjects[] = {"subject=CN = dev-1"};
    check_certs_only(&f->device, 1, subjects);
}

static void test_certs_only_errors(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *many[KF_EST_CERTS_MAX + 1];
    struct kf_cert *with_null[] = {f->pki.issuing, NULL};
    struct kf_buf out;

    for (size_t i = 0; i < KF_ARRAY_LEN(many); i++)
        many[i] = f->pki.root;
    kf_buf_init(&out, 1 << 20);
    KF_EXPECT_ERR(KF_E_INVALID, kf_est_certs_only(many, 0, &out));
    KF_EXPECT_MSG("1 to 16 certificates, not 0");
    KF_EXPECT_ERR(KF_E_INVALID, kf_est_certs_only(many, KF_ARRAY_LEN(many), &out));
    KF_EXPECT_MSG("not 17");
    KF_OK_OR_FAIL(kf_est_certs_only(many, KF_EST_CERTS_MAX, &out));
    kf_buf_free(&out);

    KF_EXPECT_ERR(KF_E_INVALID, kf_est_certs_only(with_null, 2, &out));
    KF_EXPECT_MSG("certificate 1 of a certs-only answer is missing");

    /* Too small a buffer: an error, and what was in it stays as it was. */
    kf_buf_init(&out, 300);
    KF_OK_OR_FAIL(kf_buf_append_str(&out, "kept"));
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_est_certs_only(&f->device, 1, &out));
    KF_EXPECT_MSG("does not fit");
    assert_string_equal(kf_buf_str(&out), "kept");
    kf_buf_free(&out);
}

/* Makes a CSR with openssl for CN=`cn` with key options `keyopt`, in DER at `der`. */
static void openssl_csr(const char *keyopt, const char *cn, const char *der)
{
    const char *key = kf_test_path("req.key");
    assert_int_equal(kf_test_sh("openssl req -new %s -nodes -keyout '%s' -subj '/CN=%s' "
                                "-outform DER -out '%s' 2>/dev/null",
                                keyopt, key, cn, der),
                     0);
}

/* Decodes the file at `path` as a simpleenroll body and checks the CSR it holds. */
static void expect_csr(const char *path, const char *cn)
{
    struct kf_buf body;
    struct kf_csr *csr = NULL;
    struct kf_csr_policy p;
    char got[64];

    kf_buf_init(&body, 1 << 20);
    read_into(&body, path);
    KF_OK_OR_FAIL(kf_est_decode_csr(body.data, body.len, &csr));
    assert_non_null(csr);
    KF_OK_OR_FAIL(kf_csr_subject_cn(csr, got, sizeof(got)));
    assert_string_equal(got, cn);
    kf_csr_policy_default(&p);
    p.expected_cn = cn;
    KF_OK_OR_FAIL(kf_csr_check(csr, &p, NULL));
    kf_csr_free(csr);
    kf_buf_free(&body);
}

static void test_decode_csr_from_openssl(void **state)
{
    const char *der = kf_test_path("req.der"), *b64 = kf_test_path("req.b64");

    openssl_csr("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "dev-ec", der);
    /* openssl's 64-character lines, coreutils' 76, one long line, CRLF, and padding by blanks */
    assert_int_equal(kf_test_sh("openssl base64 -in '%s' -out '%s'", der, b64), 0);
    expect_csr(b64, "dev-ec");
    assert_int_equal(kf_test_sh("base64 '%s' > '%s'", der, b64), 0);
    expect_csr(b64, "dev-ec");
    assert_int_equal(kf_test_sh("base64 -w0 '%s' > '%s'", der, b64), 0);
    expect_csr(b64, "dev-ec");
    assert_int_equal(kf_test_sh("base64 -w 20 '%s' | sed 's/$/\\r/' > '%s'", der, b64), 0);
    expect_csr(b64, "dev-ec");
    assert_int_equal(
        kf_test_sh("(printf '\\r\\n  '; base64 -w0 '%s'; printf ' \\t\\r\\n') > '%s'", der, b64),
        0);
    expect_csr(b64, "dev-ec");

    openssl_csr("-newkey rsa:2048", "dev-rsa", der);
    assert_int_equal(kf_test_sh("base64 '%s' > '%s'", der, b64), 0);
    expect_csr(b64, "dev-rsa");

    openssl_csr("-newkey ed25519", "dev-ed", der);
    assert_int_equal(kf_test_sh("base64 '%s' > '%s'", der, b64), 0);
    expect_csr(b64, "dev-ed");
}

static void test_decode_csr_pem(void **state)
{
    const char *der = kf_test_path("req.der"), *pem = kf_test_path("req.pem");

    openssl_csr("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "dev-pem", der);
    assert_int_equal(kf_test_sh("openssl req -inform DER -in '%s' -out '%s'", der, pem), 0);
    expect_csr(pem, "dev-pem");
    /* Some clients send the "NEW CERTIFICATE REQUEST" label of old Netscape tools. */
    assert_int_equal(
        kf_test_sh("sed -i 's/CERTIFICATE REQUEST/NEW CERTIFICATE REQUEST/' '%s'", pem), 0);
    expect_csr(pem, "dev-pem");
}

/* Expects kf_est_decode_csr on `body[0..len)` to fail with `rc` and a message holding `msg`. */
static void expect_refused(const void *body, size_t len, enum kf_err rc, const char *msg)
{
    struct kf_csr *csr = (struct kf_csr *)&csr; /* not NULL: the call must reset it */
    KF_EXPECT_ERR(rc, kf_est_decode_csr(body, len, &csr));
    KF_EXPECT_MSG("EST request body");
    KF_EXPECT_MSG(msg);
    assert_null(csr);
}

static void expect_refused_str(const char *body, enum kf_err rc, const char *msg)
{
    expect_refused(body, strlen(body), rc, msg);
}

static void test_decode_csr_refusals(void **state)
{
    struct fixture *f = *state;
    const char *der = kf_test_path("req.der");
    struct kf_buf csr_der, b64, tmp;
    char *big;

    expect_refused_str("", KF_E_MALFORMED, "is empty");
    expect_refused_str(" \r\n\t\r\n", KF_E_MALFORMED, "is empty");
    expect_refused_str("hello world!", KF_E_MALFORMED,
                       "is not base64 (RFC 8951): bad base64: character 0x21 at offset 11");
    expect_refused_str("MIIB\x01", KF_E_MALFORMED, "character 0x01 at offset 4");
    expect_refused_str("aGVsbG8gd29ybGQ=", KF_E_MALFORMED, "not a valid PKCS#10 CSR");
    expect_refused_str("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n", KF_E_MALFORMED,
                       "without an END line");

    /* A real CSR, then broken in the ways a network breaks things. */
    openssl_csr("-newkey ec -pkeyopt ec_paramgen_curve:P-256", "dev-1", der);
    kf_buf_init(&csr_der, 1 << 20);
    kf_buf_init(&b64, 1 << 20);
    kf_buf_init(&tmp, 1 << 20);
    read_into(&csr_der, der);
    KF_OK_OR_FAIL(kf_b64_encode(csr_der.data, csr_der.len, &b64, 0));
    /* cut at a base64 group boundary: valid base64, truncated DER */
    expect_refused(b64.data, (b64.len / 2) & ~(size_t)3, KF_E_MALFORMED, "not a valid PKCS#10");
    /* cut inside a group */
    expect_refused(b64.data, b64.len - 3, KF_E_MALFORMED, "truncated (1 characters left over)");
    /* one byte too many after the DER */
    kf_buf_reset(&tmp);
    KF_OK_OR_FAIL(kf_buf_append(&csr_der, "\0", 1));
    KF_OK_OR_FAIL(kf_b64_encode(csr_der.data, csr_der.len, &tmp, 64));
    expect_refused(tmp.data, tmp.len, KF_E_MALFORMED, "trailing data");

    /* a certificate where the CSR should be, as base64 DER and as PEM */
    kf_buf_reset(&csr_der);
    kf_buf_reset(&tmp);
    KF_OK_OR_FAIL(kf_cert_der(f->device, &csr_der));
    KF_OK_OR_FAIL(kf_b64_encode(csr_der.data, csr_der.len, &tmp, 64));
    expect_refused(tmp.data, tmp.len, KF_E_WRONG_TYPE,
                   "holds an X.509 certificate, not a PKCS#10 certificate request");
    kf_buf_reset(&tmp);
    KF_OK_OR_FAIL(kf_cert_pem(f->device, &tmp));
    expect_refused(tmp.data, tmp.len, KF_E_WRONG_TYPE, "holds PEM CERTIFICATE, not a");

    /* too large to read, and small enough to read but too large to be a CSR */
    big = malloc(KF_EST_CSR_BODY_MAX + 1);
    memset(big, 'A', KF_EST_CSR_BODY_MAX + 1);
    expect_refused(big, KF_EST_CSR_BODY_MAX + 1, KF_E_OVERSIZE,
                   "of 98305 bytes is larger than the 98304 allowed");
    expect_refused(big, 90000, KF_E_OVERSIZE, "decodes to more than the 65536 bytes");
    free(big);

    kf_buf_free(&csr_der);
    kf_buf_free(&b64);
    kf_buf_free(&tmp);
}

static void test_csrattrs(void **state)
{
    const char *b64 = kf_test_path("attrs.b64"), *der = kf_test_path("attrs.der");
    const char *parsed = kf_test_path("attrs.txt"), *conf = kf_test_path("attrs.cnf");
    const char *ref = kf_test_path("attrs-ref.der");
    struct kf_buf out, a, b;
    char *text;

    kf_buf_init(&out, 4096);
    kf_buf_init(&a, 4096);
    kf_buf_init(&b, 4096);
    KF_OK_OR_FAIL(kf_est_csrattrs(&out));
    lines_at_most_64(kf_buf_str(&out));
    kf_test_write(b64, kf_buf_str(&out));
    assert_int_equal(kf_test_sh("openssl base64 -d -in '%s' -out '%s'", b64, der), 0);
    assert_int_equal(kf_test_sh("openssl asn1parse -inform DER -in '%s' -i > '%s'", der, parsed),
                     0);
    text = kf_test_read(parsed);
    /* The exact shape: a SEQUENCE of an OID and an Attribute { id-ecPublicKey, SET { curve } } */
    {
        static const char *const want[] = {
            "0:d=0  hl=2 l=  33 cons: SEQUENCE",
            "2:d=1  hl=2 l=   8 prim:  OBJECT            :ecdsa-with-SHA256",
            "12:d=1  hl=2 l=  21 cons:  SEQUENCE",
            "14:d=2  hl=2 l=   7 prim:   OBJECT            :id-ecPublicKey",
            "23:d=2  hl=2 l=  10 cons:   SET",
            "25:d=3  hl=2 l=   8 prim:    OBJECT            :prime256v1",
        };
        const char *at = text;
        for (size_t i = 0; i < KF_ARRAY_LEN(want); i++) {
            at = strstr(at, want[i]);
            if (!at) fail_msg("asn1parse output lacks \"%s\":\n%s", want[i], text);
        }
    }
    free(text);

    /* The same bytes as openssl builds from the ASN.1 written out. */
    kf_test_write(conf, "asn1=SEQUENCE:attrs\n"
                        "[attrs]\n"
                        "alg=OID:ecdsa-with-SHA256\n"
                        "key=SEQUENCE:ecpub\n"
                        "[ecpub]\n"
                        "type=OID:id-ecPublicKey\n"
                        "curve=SETWRAP,OID:prime256v1\n");
    assert_int_equal(kf_test_sh("openssl asn1parse -genconf '%s' -out '%s' -noout", conf, ref), 0);
    read_into(&a, der);
    read_into(&b, ref);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);

    /* Appends; a buffer too small is an error and keeps what it had. */
    KF_OK_OR_FAIL(kf_est_csrattrs(&out));
    assert_int_equal(out.len, 2 * strlen("MCEGCCqGSM49BAMCMBUGByqGSM49AgExCgYIKoZIzj0DAQc=\n"));
    assert_string_equal(kf_buf_str(&out), "MCEGCCqGSM49BAMCMBUGByqGSM49AgExCgYIKoZIzj0DAQc=\n"
                                          "MCEGCCqGSM49BAMCMBUGByqGSM49AgExCgYIKoZIzj0DAQc=\n");
    kf_buf_free(&out);
    kf_buf_init(&out, 10);
    KF_OK_OR_FAIL(kf_buf_append_str(&out, "kept"));
    KF_EXPECT_ERR(KF_E_OVERSIZE, kf_est_csrattrs(&out));
    assert_string_equal(kf_buf_str(&out), "kept");
    kf_buf_free(&out);
    kf_buf_free(&a);
    kf_buf_free(&b);
}

/* What keyfleetd writes as certs-only, libkeyfleet reads back as the same PEM chain. */
static void test_certs_pem_reads_back(void **state)
{
    struct fixture *f = *state;
    struct kf_cert *chain[] = {f->device, f->pki.issuing, f->pki.root};
    struct kf_buf body, pem, want;
    kf_buf_init(&body, 1 << 20);
    kf_buf_init(&pem, 1 << 20);
    kf_buf_init(&want, 1 << 20);
    KF_OK_OR_FAIL(kf_est_certs_only(chain, 3, &body));
    KF_OK_OR_FAIL(kf_est_certs_pem(&body, &pem));
    for (size_t i = 0; i < 3; i++)
        KF_OK_OR_FAIL(kf_cert_pem(chain[i], &want));
    assert_int_equal(pem.len, want.len);
    assert_memory_equal(pem.data, want.data, pem.len);

    /* not base64, base64 of no PKCS#7, a PKCS#7 with no certificate: errors with a sentence */
    kf_buf_reset(&body);
    kf_buf_reset(&pem);
    KF_OK_OR_FAIL(kf_buf_append_str(&body, "*** not base64 ***"));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_est_certs_pem(&body, &pem));
    KF_EXPECT_MSG("not base64");
    kf_buf_reset(&body);
    KF_OK_OR_FAIL(kf_buf_append_str(&body, "aGVsbG8gd29ybGQ=\n"));
    KF_EXPECT_ERR(KF_E_MALFORMED, kf_est_certs_pem(&body, &pem));
    KF_EXPECT_MSG("no certificate");
    assert_int_equal(pem.len, 0);
    kf_buf_free(&body);
    kf_buf_free(&pem);
    kf_buf_free(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_certs_only_cacerts), cmocka_unit_test(test_certs_only_issued),
        cmocka_unit_test(test_certs_only_errors),  cmocka_unit_test(test_decode_csr_from_openssl),
        cmocka_unit_test(test_decode_csr_pem),     cmocka_unit_test(test_decode_csr_refusals),
        cmocka_unit_test(test_csrattrs),           cmocka_unit_test(test_certs_pem_reads_back),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
