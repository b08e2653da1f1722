/*
 * testdeploy: what the unit tests of the CA-side modules (deploy, ca, enroll, fleet) share: a real
 * deployment made by kf_deploy_init, the store's contents as text (so that a refused operation can
 * be shown to change nothing), the audit records an operation appended, and CSRs made like a
 * device makes them. Linked only into programs that link kf_server.
 */
#ifndef KF_TESTS_TESTDEPLOY_H
#define KF_TESTS_TESTDEPLOY_H

#include <stdint.h>

#include "common/pki_csr.h"
#include "server/ca/deploy.h"
#include "server/store/store.h"

#define KF_TEST_ACTOR "test:unit"

/*
 * Makes a deployment in kf_test_path(`name`) (P-256, server names localhost and 127.0.0.1,
 * deployment name "unit", actor KF_TEST_ACTOR) and opens it. Owned by the caller
 * (kf_deploy_close).
 */
struct kf_deploy *kf_test_deploy_make(const char *name);

/*
 * Everything in the store a refused operation must leave as it was: each device (status,
 * enrollment, hub, times), certificate (status, revocation), enrollment (every field), the CRL
 * numbers of both CAs, and the audit log's length and head hash, as one text.
 */
struct kf_test_state {
    char *text; /* owned */
    int64_t audit_records;
    char audit_head[KF_HASH_HEX];
};

/* Takes the state of `s`; the audit chain must verify. */
void kf_test_state_take(struct kf_store *s, struct kf_test_state *out);

/* Fails the test, naming `what`, unless the state of `s` is `before`. */
void kf_test_state_expect(struct kf_store *s, const struct kf_test_state *before, const char *what);

void kf_test_state_free(struct kf_test_state *st);

/* The audit records with seq > `after`, in order (each owned: kf_test_audit_free). */
struct kf_test_audit {
    struct kf_audit_rec r[128];
    int n;
};
void kf_test_audit_after(struct kf_store *s, int64_t after, struct kf_test_audit *out);
void kf_test_audit_free(struct kf_test_audit *a);

/* How many audit records there are (the chain must verify). */
int64_t kf_test_audit_count(struct kf_store *s);

/*
 * Fails unless `r` is by KF_TEST_ACTOR with `action` on `object`, and its detail is `detail`
 * exactly (NULL: any detail).
 */
void kf_test_audit_expect(const struct kf_audit_rec *r, const char *action, const char *object,
                          const char *detail);

/* Reads device `id` / certificate `serial` / enrollment `id` in a read transaction. */
enum kf_err kf_test_device_get(struct kf_store *s, const char *id, struct kf_device_rec *out);
enum kf_err kf_test_cert_get(struct kf_store *s, const char *serial, struct kf_cert_rec *out);
enum kf_err kf_test_enrollment_get(struct kf_store *s, const char *id,
                                   struct kf_enrollment_rec *out);
void kf_test_ca_get(struct kf_store *s, const char *name, struct kf_ca_rec *out);

/* Counts the certificates of `device_id` (NULL: all) with `status` (0: any). */
int64_t kf_test_cert_count(struct kf_store *s, const char *device_id, int status);

/* Sets the status of device `id` behind the modules' back (as another keyfleetd would). */
void kf_test_device_set_status(struct kf_store *s, const char *id, enum kf_device_status st);

/* A CSR with subject CN=`cn` signed by a fresh key of `type` (owned by the caller). */
struct kf_csr *kf_test_csr(enum kf_key_type type, const char *cn);

/* Parses the CRL at `path` (owned by the caller). */
struct kf_crl *kf_test_crl_load(const char *path);

#endif
