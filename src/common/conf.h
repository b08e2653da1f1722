/*
 * conf: configuration sections declared as tables, the way an nginx module declares its
 * directives.
 *
 * A module that is configured owns the struct of its section and a table of its keys: each key
 * names a field of that struct (by offset), its kind, its bounds, its default and the comment
 * keyfleet.conf carries above it. This file does the rest for every section alike: defaults,
 * reading a value into its field (or saying why it is refused), reading a whole file into the
 * sections a program knows, writing a commented section, and saying what changed between two
 * configurations. A value goes from the file straight into the struct its module reads: nobody
 * copies fields by hand, and a key is written down once.
 */
#ifndef KF_COMMON_CONF_H
#define KF_COMMON_CONF_H

#include <stddef.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/cidr.h"
#include "common/err.h"

enum kf_conf_kind {
    KF_CONF_TEXT,   /* a char array; never empty */
    KF_CONF_NUM,    /* a whole number in [min, max] */
    KF_CONF_SWITCH, /* 0 or 1 (or true/false, yes/no, on/off), into an int */
    KF_CONF_CHOICE, /* one of the words in `choices` ("drop|disconnect"): its index, into an int */
    KF_CONF_NETS,   /* "any", "none" or a CIDR list, into a struct kf_conf_nets */
};

/* The C type of a KF_CONF_NUM field. */
enum kf_conf_ctype { KF_CONF_INT, KF_CONF_UINT, KF_CONF_SIZE, KF_CONF_U16, KF_CONF_DOUBLE };

#define KF_CONF_SECRET 1u /* the value may hold a secret: a diff says only that it changed */

struct kf_conf_key {
    const char *name;
    enum kf_conf_kind kind;
    enum kf_conf_ctype ctype; /* KF_CONF_NUM */
    size_t offset, size;      /* of the field in the section's struct */
    long long min, max;       /* KF_CONF_NUM */
    const char *def;          /* the default, as it is written in the file */
    const char *choices;      /* KF_CONF_CHOICE: the words, '|' between them */
    const char *help;         /* the comment above the key in a written file, or NULL */
    unsigned flags;
};

struct kf_conf_section {
    const char *name;
    const char *help; /* the comment under the section's header, or NULL */
    const struct kf_conf_key *keys;
    size_t nkeys;
};

/* Source networks as configured: "any", "none", or a list. All zero: nothing configured. */
#define KF_CONF_NETS_TEXT 1024
struct kf_conf_nets {
    char text[KF_CONF_NETS_TEXT];
    int word; /* 1: "any", 2: "none", 0: a list (or nothing) */
    struct kf_cidr_list list;
};

/* Whether `ip` (text) is in `n`; `unset` when nothing was configured. */
int kf_conf_nets_match(const struct kf_conf_nets *n, const char *ip, int unset);

/* ---- writing tables: T is the section's struct, f a field (a nested one too: a.b) ---- */

#define KF_CONF_CTYPE_OF(T, f)              \
    _Generic(((T *)0)->f, int               \
             : KF_CONF_INT, unsigned        \
             : KF_CONF_UINT, unsigned long  \
             : KF_CONF_SIZE, unsigned short \
             : KF_CONF_U16, double          \
             : KF_CONF_DOUBLE)
#define KF_CONF_FIELD(T, f) offsetof(T, f), sizeof(((T *)0)->f)

#define KF_CONF_TEXT_KEY(T, name, f, def, help, flags)                                     \
    {                                                                                      \
        name, KF_CONF_TEXT, KF_CONF_INT, KF_CONF_FIELD(T, f), 0, 0, def, NULL, help, flags \
    }
#define KF_CONF_NUM_KEY(T, name, f, lo, hi, def, help)                                            \
    {                                                                                             \
        name, KF_CONF_NUM, KF_CONF_CTYPE_OF(T, f), KF_CONF_FIELD(T, f), lo, hi, #def, NULL, help, \
            0                                                                                     \
    }
#define KF_CONF_SWITCH_KEY(T, name, f, def, help)                                         \
    {                                                                                     \
        name, KF_CONF_SWITCH, KF_CONF_INT, KF_CONF_FIELD(T, f), 0, 1, #def, NULL, help, 0 \
    }
#define KF_CONF_CHOICE_KEY(T, name, f, choices, def, help)                                  \
    {                                                                                       \
        name, KF_CONF_CHOICE, KF_CONF_INT, KF_CONF_FIELD(T, f), 0, 0, def, choices, help, 0 \
    }
#define KF_CONF_NETS_KEY(T, name, f, def, help)                                        \
    {                                                                                  \
        name, KF_CONF_NETS, KF_CONF_INT, KF_CONF_FIELD(T, f), 0, 0, def, NULL, help, 0 \
    }

/* ---- one section ---- */

/* Sets every key of `sec` in `obj` to its default (other fields are left as they are). */
enum kf_err kf_conf_defaults(const struct kf_conf_section *sec, void *obj);

/* The key `name` of `sec`, or NULL. */
const struct kf_conf_key *kf_conf_find(const struct kf_conf_section *sec, const char *name);

/*
 * Reads `value` into key `k` of `sec` in `obj`. KF_E_CONFIG naming section.key and what the
 * value must be; `obj` is unchanged then.
 */
enum kf_err kf_conf_set(const struct kf_conf_section *sec, const struct kf_conf_key *k, void *obj,
                        const char *value);

/* The value of `k` in `obj` as it is written in the file. */
void kf_conf_format(const struct kf_conf_key *k, const void *obj, char *out, size_t cap);

/*
 * Appends "[name]", the section's comment and every key with its comment and value to `out`.
 * KF_E_INVALID when a text value would not read back the same (empty, edge blanks, control
 * characters).
 */
enum kf_err kf_conf_write(struct kf_buf *out, const struct kf_conf_section *sec, const void *obj);

/*
 * Sets "section.key": {"from": A, "to": B} in the JSON object `diff` for each key that differs
 * between `a` and `b` ({"changed": true} for a KF_CONF_SECRET key).
 */
void kf_conf_diff(json_t *diff, const struct kf_conf_section *sec, const void *a, const void *b);

/* ---- a whole file ---- */

/* A section and the struct its values go into. */
struct kf_conf_bind {
    const struct kf_conf_section *sec;
    void *obj;
};

/*
 * Reads INI `text[0..len)` into the bound sections (over what they hold: call kf_conf_defaults
 * first). KF_E_CONFIG with "line N: ..." for a syntax error, an unknown section or key, a key
 * set twice or a refused value.
 */
enum kf_err kf_conf_parse(const char *text, size_t len, const struct kf_conf_bind *binds, size_t n);

#endif
