/*
 * ini: a strict INI reader that names the line of every problem.
 *
 * Syntax: "[section]" headers, "key = value" pairs, blank lines, and whole-line comments starting
 * with '#' or ';'. There are no inline comments, so ';' and '#' may appear in values (PKCS#11 URIs
 * have ';'). Keys and values are trimmed of surrounding blanks; a value may be empty.
 *
 * Why not inih (the library DESIGN.md names): Debian's libinih is built without line numbers in
 * its callback and with lines capped at 200 characters, so errors could not name their line and
 * a long key URI would be silently split. See docs/decisions.md.
 */
#ifndef KF_COMMON_INI_H
#define KF_COMMON_INI_H

#include <stddef.h>

#include "common/err.h"

#define KF_INI_SECTION_MAX 64
#define KF_INI_KEY_MAX     64
#define KF_INI_VALUE_MAX   4096

/*
 * Called for each "[section]" header (with `key` and `value` NULL) and for each key. Returns
 * KF_OK to go on; any other value stops the parse and is returned (the callback records its own
 * message with kf_fail, without the line: the parser adds it).
 */
typedef enum kf_err (*kf_ini_cb)(const char *section, const char *key, const char *value, int line,
                                 void *arg);

/*
 * Parses `text[0..len)`. Returns KF_OK, the callback's error, or KF_E_CONFIG for a syntax error.
 * Every error message starts with "line N: ".
 */
enum kf_err kf_ini_parse(const char *text, size_t len, kf_ini_cb cb, void *arg);

#endif
