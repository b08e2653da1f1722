/*
 * cjson: canonical JSON, the form TUF signs (the OLPC "Canonical JSON" dialect that
 * securesystemslib, python-tuf and tuf-js use).
 *
 * Object keys sorted by their bytes, no whitespace, integers only (a real is an error), and in
 * strings only '"' and '\' escaped: every other byte, control characters and UTF-8 included, is
 * written as it is. Two encoders that follow these rules give the same bytes for the same
 * document, so a signature made over one verifies over the other.
 *
 * Keys are sorted by their UTF-8 bytes; tuf-js sorts by UTF-16 code units. The two orders
 * differ only between characters above U+FFFF and those from U+E000 to U+FFFF, which TUF's own
 * field names never use.
 */
#ifndef KF_COMMON_CJSON_H
#define KF_COMMON_CJSON_H

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

/*
 * Appends the canonical form of `j` to `out`. KF_E_INVALID naming the place for a real number
 * (canonical JSON has none); KF_E_OVERSIZE when `out` is full; nesting deeper than 64 levels is
 * refused too.
 */
enum kf_err kf_cjson_encode(const json_t *j, struct kf_buf *out);

#endif
