#include "common/conf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/ini.h"

#define FIELD(obj, k)  ((char *)(obj) + (k)->offset)
#define CFIELD(obj, k) ((const char *)(obj) + (k)->offset)

int kf_conf_nets_match(const struct kf_conf_nets *n, const char *ip, int unset)
{
    if (n->word == 1) return 1;
    if (n->word == 2) return 0;
    if (!n->text[0]) return unset;
    return kf_cidr_match(&n->list, ip);
}

const struct kf_conf_key *kf_conf_find(const struct kf_conf_section *sec, const char *name)
{
    for (size_t i = 0; i < sec->nkeys; i++)
        if (strcmp(sec->keys[i].name, name) == 0) return &sec->keys[i];
    return NULL;
}

/* 1 or 0 for the words a switch may be written as (true/yes/on, false/no/off), else -1. */
static int switch_word(const char *value)
{
    static const char *const on[] = {"true", "yes", "on"}, *const off[] = {"false", "no", "off"};
    for (size_t i = 0; i < KF_ARRAY_LEN(on); i++) {
        if (strcasecmp(value, on[i]) == 0) return 1;
        if (strcasecmp(value, off[i]) == 0) return 0;
    }
    return -1;
}

/* The index of `value` among the '|'-separated `choices`, or -1. */
static int choice_index(const char *choices, const char *value)
{
    size_t n = strlen(value);
    int i = 0;
    for (const char *p = choices;; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return i;
        if (!bar) return -1;
        p = bar + 1;
    }
}

/* The `i`th word of `choices` into `out`. */
static void choice_word(const char *choices, int i, char *out, size_t cap)
{
    const char *p = choices;
    for (; i > 0 && p; i--) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) p = "";
    snprintf(out, cap, "%.*s", (int)strcspn(p, "|"), p);
}

static void put_num(const struct kf_conf_key *k, void *obj, long long v)
{
    char *f = FIELD(obj, k);
    switch (k->ctype) {
    case KF_CONF_INT: *(int *)f = (int)v; break;
    case KF_CONF_UINT: *(unsigned *)f = (unsigned)v; break;
    case KF_CONF_SIZE: *(size_t *)f = (size_t)v; break;
    case KF_CONF_U16: *(uint16_t *)f = (uint16_t)v; break;
    case KF_CONF_DOUBLE: *(double *)f = (double)v; break;
    }
}

static long long get_num(const struct kf_conf_key *k, const void *obj)
{
    const char *f = CFIELD(obj, k);
    switch (k->ctype) {
    case KF_CONF_INT: return *(const int *)f;
    case KF_CONF_UINT: return *(const unsigned *)f;
    case KF_CONF_SIZE: return (long long)*(const size_t *)f;
    case KF_CONF_U16: return *(const uint16_t *)f;
    case KF_CONF_DOUBLE: return (long long)*(const double *)f;
    }
    return 0;
}

static enum kf_err set_nets(const struct kf_conf_section *sec, const struct kf_conf_key *k,
                            void *obj, const char *value)
{
    struct kf_conf_nets *n = (struct kf_conf_nets *)FIELD(obj, k), tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (strlen(value) >= sizeof(tmp.text))
        return kf_fail(KF_E_CONFIG, "%s.%s is longer than %zu characters", sec->name, k->name,
                       sizeof(tmp.text) - 1);
    if (strcmp(value, "any") == 0)
        tmp.word = 1;
    else if (strcmp(value, "none") == 0)
        tmp.word = 2;
    else if (kf_cidr_parse_list(value, &tmp.list) != KF_OK)
        return kf_wrap(KF_E_CONFIG, "%s.%s", sec->name, k->name);
    snprintf(tmp.text, sizeof(tmp.text), "%s", value);
    *n = tmp;
    return KF_OK;
}

enum kf_err kf_conf_set(const struct kf_conf_section *sec, const struct kf_conf_key *k, void *obj,
                        const char *value)
{
    char *end;
    long long v;
    int i;

    switch (k->kind) {
    case KF_CONF_TEXT:
        if (strlen(value) >= k->size)
            return kf_fail(KF_E_CONFIG, "%s.%s is longer than %zu characters", sec->name, k->name,
                           k->size - 1);
        if (!value[0]) return kf_fail(KF_E_CONFIG, "%s.%s is empty", sec->name, k->name);
        snprintf(FIELD(obj, k), k->size, "%s", value);
        return KF_OK;
    case KF_CONF_NETS: return set_nets(sec, k, obj, value);
    case KF_CONF_CHOICE:
        i = choice_index(k->choices, value);
        if (i < 0) {
            char words[128], *p;
            snprintf(words, sizeof(words), "%s", k->choices);
            /* "a|b|c" reads "a or b or c" */
            char said[256] = "";
            for (p = strtok(words, "|"); p; p = strtok(NULL, "|")) {
                size_t used = strlen(said);
                snprintf(said + used, sizeof(said) - used, "%s%s", used ? " or " : "", p);
            }
            return kf_fail(KF_E_CONFIG, "%s.%s = \"%.40s\" must be %s", sec->name, k->name, value,
                           said);
        }
        *(int *)FIELD(obj, k) = i;
        return KF_OK;
    case KF_CONF_SWITCH:
    case KF_CONF_NUM:
        errno = 0;
        v = strtoll(value, &end, 10);
        if (k->kind == KF_CONF_SWITCH && (end == value || *end)) {
            /* a switch: 0 and 1, or the words people write for them */
            v = switch_word(value);
            if (v < 0)
                return kf_fail(KF_E_CONFIG,
                               "%s.%s = \"%.40s\" is not a switch: 0 or 1 (true/false, yes/no, "
                               "on/off)",
                               sec->name, k->name, value);
        } else if (errno || end == value || *end || v < k->min || v > k->max)
            return kf_fail(KF_E_CONFIG, "%s.%s = \"%.40s\" is not a whole number from %lld to %lld",
                           sec->name, k->name, value, k->min, k->max);
        if (k->kind == KF_CONF_SWITCH)
            *(int *)FIELD(obj, k) = (int)v;
        else
            put_num(k, obj, v);
        return KF_OK;
    }
    return kf_fail(KF_E_INTERNAL, "%s.%s: unknown kind", sec->name, k->name);
}

void kf_conf_format(const struct kf_conf_key *k, const void *obj, char *out, size_t cap)
{
    switch (k->kind) {
    case KF_CONF_TEXT: snprintf(out, cap, "%s", CFIELD(obj, k)); return;
    case KF_CONF_NETS:
        snprintf(out, cap, "%s", ((const struct kf_conf_nets *)CFIELD(obj, k))->text);
        return;
    case KF_CONF_CHOICE: choice_word(k->choices, *(const int *)CFIELD(obj, k), out, cap); return;
    case KF_CONF_SWITCH: snprintf(out, cap, "%d", *(const int *)CFIELD(obj, k)); return;
    case KF_CONF_NUM: snprintf(out, cap, "%lld", get_num(k, obj)); return;
    }
    if (cap) out[0] = 0;
}

enum kf_err kf_conf_defaults(const struct kf_conf_section *sec, void *obj)
{
    for (size_t i = 0; i < sec->nkeys; i++) {
        enum kf_err rc = kf_conf_set(sec, &sec->keys[i], obj, sec->keys[i].def);
        if (rc) return kf_wrap(rc, "the default of %s.%s", sec->name, sec->keys[i].name);
    }
    return KF_OK;
}

/* Each line of `text` as a comment. */
static enum kf_err comment(struct kf_buf *out, const char *text)
{
    enum kf_err rc = KF_OK;
    while (!rc && text && *text) {
        size_t n = strcspn(text, "\n");
        rc = kf_buf_appendf(out, "#%s%.*s\n", n ? " " : "", (int)n, text);
        text += n + (text[n] == '\n');
    }
    return rc;
}

enum kf_err kf_conf_write(struct kf_buf *out, const struct kf_conf_section *sec, const void *obj)
{
    enum kf_err rc = kf_buf_appendf(out, "[%s]\n", sec->name);
    if (!rc) rc = comment(out, sec->help);
    for (size_t i = 0; !rc && i < sec->nkeys; i++) {
        const struct kf_conf_key *k = &sec->keys[i];
        char v[KF_INI_VALUE_MAX];
        size_t n;
        kf_conf_format(k, obj, v, sizeof(v));
        n = strlen(v);
        /* Write only what reads back the same. */
        if (n == 0 || v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
            return kf_fail(KF_E_INVALID, "%s.%s is empty or starts or ends with a blank", sec->name,
                           k->name);
        for (size_t j = 0; j < n; j++)
            if ((unsigned char)v[j] < 0x20 || v[j] == 0x7f)
                return kf_fail(KF_E_INVALID, "%s.%s holds a control character", sec->name, k->name);
        rc = comment(out, k->help);
        if (!rc) rc = kf_buf_appendf(out, "%s = %s\n", k->name, v);
    }
    return rc;
}

void kf_conf_diff(json_t *diff, const struct kf_conf_section *sec, const void *a, const void *b)
{
    for (size_t i = 0; diff && i < sec->nkeys; i++) {
        const struct kf_conf_key *k = &sec->keys[i];
        char va[KF_INI_VALUE_MAX], vb[KF_INI_VALUE_MAX], name[160];
        json_t *change;
        kf_conf_format(k, a, va, sizeof(va));
        kf_conf_format(k, b, vb, sizeof(vb));
        if (strcmp(va, vb) == 0) continue;
        snprintf(name, sizeof(name), "%s.%s", sec->name, k->name);
        if (k->flags & KF_CONF_SECRET)
            change = json_pack("{s:b}", "changed", 1);
        else if (k->kind == KF_CONF_NUM || k->kind == KF_CONF_SWITCH)
            change = json_pack("{s:I, s:I}", "from", (json_int_t)strtoll(va, NULL, 10), "to",
                               (json_int_t)strtoll(vb, NULL, 10));
        else
            change = json_pack("{s:s, s:s}", "from", va, "to", vb);
        json_object_set_new(diff, name, change);
    }
}

/* ---- a whole file ---- */

struct parse_ctx {
    const struct kf_conf_bind *binds;
    size_t n;
    int *set_on; /* per key of every section, in order: the line it was set on (0: not set) */
};

static enum kf_err on_value(const char *section, const char *name, const char *value, int line,
                            void *arg)
{
    struct parse_ctx *pc = arg;
    size_t base = 0;
    for (size_t b = 0; b < pc->n; b++) {
        const struct kf_conf_section *sec = pc->binds[b].sec;
        const struct kf_conf_key *k;
        int *on;
        if (strcmp(sec->name, section) != 0) {
            base += sec->nkeys;
            continue;
        }
        if (!name) return KF_OK; /* a known section's header */
        k = kf_conf_find(sec, name);
        if (!k) return kf_fail(KF_E_CONFIG, "unknown key '%s' in section [%s]", name, section);
        on = &pc->set_on[base + (size_t)(k - sec->keys)];
        if (*on)
            return kf_fail(KF_E_CONFIG, "%s.%s is set twice (first on line %d)", section, name,
                           *on);
        *on = line;
        return kf_conf_set(sec, k, pc->binds[b].obj, value);
    }
    return kf_fail(KF_E_CONFIG, "unknown section [%s]", section);
}

enum kf_err kf_conf_parse(const char *text, size_t len, const struct kf_conf_bind *binds, size_t n)
{
    struct parse_ctx pc = {binds, n, NULL};
    size_t keys = 0;
    enum kf_err rc;
    for (size_t b = 0; b < n; b++)
        keys += binds[b].sec->nkeys;
    pc.set_on = calloc(keys ? keys : 1, sizeof(*pc.set_on));
    if (!pc.set_on) return kf_fail(KF_E_NOMEM, "out of memory");
    rc = kf_ini_parse(text, len, on_value, &pc);
    free(pc.set_on);
    return rc;
}
