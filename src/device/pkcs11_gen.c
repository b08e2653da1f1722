/* EC key pairs generated inside a PKCS#11 token through the module's own C_GenerateKeyPair. */
#include "device/pkcs11_gen.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <p11-kit/pkcs11.h>

#include "common/ossl.h"

#define URI_CAP 2048
#define PIN_CAP 256

/* The value of path attribute `name` ("token") of a PKCS#11 URI path, percent-decoded. */
static int uri_attr(const char *path, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name), j = 0;
    const char *p = strncmp(path, "pkcs11:", 7) == 0 ? path + 7 : path;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t i;
            for (i = nl + 1; i < len && j + 1 < cap; i++) {
                unsigned v;
                if (p[i] == '%' && i + 2 < len && sscanf(p + i + 1, "%2x", &v) == 1) {
                    out[j++] = (char)v;
                    i += 2;
                } else {
                    out[j++] = p[i];
                }
            }
            out[j] = 0;
            return 1;
        }
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

struct session {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    int open;
};

static void session_close(struct session *ss)
{
    if (ss->open) ss->f->C_CloseSession(ss->s);
    /* the module stays loaded and initialised: the engine in this process shares it */
}

/* Opens a logged-in read-write session on the token `like_uri` names. */
static enum kf_err session_open(const char *like_uri, struct session *ss, char *token, size_t tcap)
{
    char path[URI_CAP], module[URI_CAP], pin[PIN_CAP];
    CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64, i;
    CK_RV rv;
    int have_pin = 0;
    enum kf_err rc;

    memset(ss, 0, sizeof(*ss));
    rc = kf_pkcs11_uri_parse(like_uri, path, sizeof(path), module, sizeof(module), pin, sizeof(pin),
                             &have_pin);
    if (rc) goto out;
    if (!uri_attr(path, "token", token, tcap)) {
        rc = kf_fail(KF_E_INVALID, "PKCS#11 URI %s names no token (token=...)", path);
        goto out;
    }
    ss->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!ss->dl) {
        rc = kf_fail(KF_E_NOT_FOUND, "cannot load PKCS#11 module %s: %s", module, dlerror());
        goto out;
    }
    *(void **)&get_list = dlsym(ss->dl, "C_GetFunctionList");
    if (!get_list || get_list(&ss->f) != CKR_OK) {
        rc = kf_fail(KF_E_UNSUPPORTED, "%s is no PKCS#11 module", module);
        goto out;
    }
    rv = ss->f->C_Initialize(NULL);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        rc = kf_fail(KF_E_IO, "PKCS#11 module %s does not initialise (0x%lx)", module, rv);
        goto out;
    }
    if (ss->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK) n = 0;
    for (i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        char label[33];
        size_t l = 32;
        if (ss->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) continue;
        memcpy(label, ti.label, 32);
        while (l && label[l - 1] == ' ')
            l--;
        label[l] = 0;
        if (strcmp(label, token) == 0) break;
    }
    if (i == n) {
        rc = kf_fail(KF_E_NOT_FOUND, "no PKCS#11 token labelled \"%s\" in %s", token, module);
        goto out;
    }
    rv = ss->f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &ss->s);
    if (rv != CKR_OK) {
        rc = kf_fail(KF_E_IO, "cannot open a session on token \"%s\" (0x%lx)", token, rv);
        goto out;
    }
    ss->open = 1;
    rv = ss->f->C_Login(ss->s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        rc = kf_fail(KF_E_DENIED, "cannot log in to token \"%s\" (0x%lx: a wrong or missing PIN?)",
                     token, rv);
        goto out;
    }
out:
    OPENSSL_cleanse(pin, sizeof(pin));
    if (rc) session_close(ss);
    return rc;
}

enum kf_err kf_pkcs11_uri_with_query(const char *uri, const char *like_uri, char *out, size_t cap)
{
    const char *q = strchr(like_uri, '?');
    if ((size_t)snprintf(out, cap, "%s%s", uri, q && !strchr(uri, '?') ? q : "") >= cap)
        return kf_fail(KF_E_OVERSIZE, "PKCS#11 URI too long");
    return KF_OK;
}

enum kf_err kf_pkcs11_generate(const char *like_uri, const char *label, char *uri, size_t cap,
                               struct kf_key **out)
{
    static const CK_BYTE p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG ll = strlen(label);
    CK_ATTRIBUTE pub[] = {
        {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)label, ll},
        {CKA_ID, (void *)label, ll},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},      {CKA_LABEL, (void *)label, ll},
        {CKA_ID, (void *)label, ll},
    };
    CK_OBJECT_HANDLE hpub, hpriv;
    struct session ss;
    char token[128], full[URI_CAP];
    enum kf_err rc;
    CK_RV rv;

    *out = NULL;
    rc = session_open(like_uri, &ss, token, sizeof(token));
    if (rc) return kf_wrap(rc, "cannot make a key in the token");
    session_close(&ss);
    if ((size_t)snprintf(uri, cap, "pkcs11:token=%s;object=%s;type=private", token, label) >= cap)
        return kf_fail(KF_E_OVERSIZE, "PKCS#11 URI too long");
    rc = kf_pkcs11_uri_with_query(uri, like_uri, full, sizeof(full));
    if (rc) return rc;
    kf_pkcs11_destroy(full); /* a leftover of an attempt that crashed before it was used */
    rc = session_open(like_uri, &ss, token, sizeof(token));
    if (rc) return kf_wrap(rc, "cannot make a key in the token");
    rv = ss.f->C_GenerateKeyPair(ss.s, &mech, pub, sizeof(pub) / sizeof(pub[0]), priv,
                                 sizeof(priv) / sizeof(priv[0]), &hpub, &hpriv);
    session_close(&ss);
    if (rv != CKR_OK)
        return kf_fail(KF_E_CRYPTO, "token \"%s\" could not generate a P-256 key (0x%lx)", token,
                       rv);
    rc = kf_key_load(full, NULL, out);
    OPENSSL_cleanse(full, sizeof(full));
    return rc;
}

void kf_pkcs11_destroy(const char *uri_with_query)
{
    char path[URI_CAP], label[128], token[128];
    struct session ss;
    CK_ATTRIBUTE tmpl[1];
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG n = 0, i;

    if (strncmp(uri_with_query, "pkcs11:", 7) != 0) return;
    snprintf(path, sizeof(path), "%s", uri_with_query);
    if (strchr(path, '?')) *strchr(path, '?') = 0;
    if (!uri_attr(path, "object", label, sizeof(label))) return;
    if (session_open(uri_with_query, &ss, token, sizeof(token)) != KF_OK) {
        kf_err_clear();
        return;
    }
    tmpl[0].type = CKA_LABEL;
    tmpl[0].pValue = label;
    tmpl[0].ulValueLen = strlen(label);
    if (ss.f->C_FindObjectsInit(ss.s, tmpl, 1) == CKR_OK) {
        ss.f->C_FindObjects(ss.s, objs, 8, &n);
        ss.f->C_FindObjectsFinal(ss.s);
    }
    for (i = 0; i < n; i++)
        ss.f->C_DestroyObject(ss.s, objs[i]);
    session_close(&ss);
}
