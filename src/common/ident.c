#include "common/ident.h"

#include <string.h>

static int id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
           c == '-';
}

void kf_text_quote(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '"') {
            out[n++] = (char)c;
        } else {
            static const char hex[] = "0123456789abcdef";
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (*s && n + 4 < cap) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

int kf_id_valid(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (len == 0 || len > KF_ID_MAX) return 0;
    if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= '0' && id[0] <= '9'))) return 0;
    for (size_t i = 1; i < len; i++)
        if (!id_char((unsigned char)id[i])) return 0;
    return 1;
}

enum kf_err kf_id_check(const char *what, const char *id)
{
    char shown[48];
    size_t len;

    if (!id || !*id) return kf_fail(KF_E_INVALID, "%s is empty", what);
    len = strlen(id);
    kf_text_quote(shown, sizeof(shown), id);
    if (len > KF_ID_MAX)
        return kf_fail(KF_E_INVALID, "%s \"%s\" is %zu characters long; the limit is %d", what,
                       shown, len, KF_ID_MAX);
    if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= '0' && id[0] <= '9')))
        return kf_fail(KF_E_INVALID,
                       "%s \"%s\" must start with a lower-case letter or a digit (allowed: "
                       "[a-z0-9][a-z0-9._:-]{0,127})",
                       what, shown);
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!id_char(c)) {
            char ch[8];
            if (c >= 0x20 && c < 0x7f)
                snprintf(ch, sizeof(ch), "'%c'", c);
            else
                snprintf(ch, sizeof(ch), "0x%02x", c);
            return kf_fail(KF_E_INVALID,
                           "%s \"%s\" holds %s at position %zu (allowed: lower-case letters, "
                           "digits, '.', '_', ':', '-')",
                           what, shown, ch, i + 1);
        }
    }
    return KF_OK;
}

static const char *const role_names[KF_ROLE_COUNT + 1] = {
    [KF_ROLE_READER] = "reader",
    [KF_ROLE_COMMANDER] = "commander",
};

const char *kf_role_name(enum kf_role role)
{
    return role > KF_ROLE_NONE && role <= KF_ROLE_COUNT ? role_names[role] : NULL;
}

enum kf_role kf_role_parse(const char *name)
{
    for (int r = 1; name && r <= KF_ROLE_COUNT; r++)
        if (strcmp(name, role_names[r]) == 0) return (enum kf_role)r;
    return KF_ROLE_NONE;
}
