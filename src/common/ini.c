#include "common/ini.h"

#include <string.h>

#include <openssl/crypto.h>

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Trims [*b, *e) of blanks. */
static void trim(const char **b, const char **e)
{
    while (*b < *e && blank(**b))
        (*b)++;
    while (*e > *b && blank((*e)[-1]))
        (*e)--;
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static int valid_name(const char *b, const char *e)
{
    if (b == e) return 0;
    for (; b < e; b++)
        if (!name_char(*b)) return 0;
    return 1;
}

enum kf_err kf_ini_parse(const char *text, size_t len, kf_ini_cb cb, void *arg)
{
    char section[KF_INI_SECTION_MAX] = "", key[KF_INI_KEY_MAX], value[KF_INI_VALUE_MAX];
    const char *p = text, *end = text + len;
    int line = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *b = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        line++;
        if (memchr(b, '\0', (size_t)(e - b)))
            return kf_fail(KF_E_CONFIG, "line %d: NUL byte", line);
        trim(&b, &e);
        if (b == e || *b == '#' || *b == ';') continue;
        if (*b == '[') {
            const char *nb = b + 1, *ne = e;
            if (e[-1] != ']' || e - b < 2)
                return kf_fail(KF_E_CONFIG, "line %d: a section header must end with ']'", line);
            ne = e - 1;
            trim(&nb, &ne);
            if (!valid_name(nb, ne) || (size_t)(ne - nb) >= sizeof(section))
                return kf_fail(KF_E_CONFIG, "line %d: bad section name", line);
            memcpy(section, nb, (size_t)(ne - nb));
            section[ne - nb] = '\0';
            {
                enum kf_err rc = cb(section, NULL, NULL, line, arg);
                if (rc) return kf_wrap(rc, "line %d", line);
            }
            continue;
        }
        {
            const char *eq = memchr(b, '=', (size_t)(e - b));
            const char *kb = b, *ke, *vb, *ve = e;
            enum kf_err rc;
            if (!eq)
                return kf_fail(KF_E_CONFIG, "line %d: expected \"key = value\" or \"[section]\"",
                               line);
            ke = eq;
            vb = eq + 1;
            trim(&kb, &ke);
            trim(&vb, &ve);
            if (!valid_name(kb, ke) || (size_t)(ke - kb) >= sizeof(key))
                return kf_fail(KF_E_CONFIG, "line %d: bad key name", line);
            if ((size_t)(ve - vb) >= sizeof(value))
                return kf_fail(KF_E_CONFIG, "line %d: value longer than %d characters", line,
                               KF_INI_VALUE_MAX - 1);
            if (!section[0])
                return kf_fail(KF_E_CONFIG, "line %d: key outside any [section]", line);
            memcpy(key, kb, (size_t)(ke - kb));
            key[ke - kb] = '\0';
            memcpy(value, vb, (size_t)(ve - vb));
            value[ve - vb] = '\0';
            rc = cb(section, key, value, line, arg);
            /* Values may be secrets (a PIN in a key URI): do not leave them on the stack. */
            OPENSSL_cleanse(value, sizeof(value));
            if (rc) return kf_wrap(rc, "line %d", line);
        }
    }
    return KF_OK;
}
