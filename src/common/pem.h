/*
 * pem: base64 (RFC 4648) and PEM armour (RFC 7468) as pure functions over (buf, len).
 *
 * Decoding is strict about the alphabet and padding and tolerant of white space, which is what EST
 * bodies (RFC 7030 / RFC 8951) and PEM files need. Errors name what is wrong and where.
 */
#ifndef KF_COMMON_PEM_H
#define KF_COMMON_PEM_H

#include <stddef.h>

#include "common/buf.h"

#define KF_PEM_LABEL_MAX 64

/*
 * Appends the base64 encoding of `in[0..n)` to `out`, with a line break every `line_width`
 * characters when `line_width` is positive (64 for PEM), none when it is 0.
 */
enum kf_err kf_b64_encode(const void *in, size_t n, struct kf_buf *out, size_t line_width);

/*
 * Appends the bytes that the base64 text `in[0..n)` encodes to `out`. Spaces, tabs, CR and LF are
 * skipped; any other character outside the alphabet, misplaced padding or a truncated final group
 * fails with KF_E_MALFORMED naming the offset.
 */
enum kf_err kf_b64_decode(const char *in, size_t n, struct kf_buf *out);

/*
 * Finds the next PEM block in `text[0..len)` at or after `*pos`, copies its label (for example
 * "CERTIFICATE") into `label` (capacity KF_PEM_LABEL_MAX), appends the DER it holds to `der`
 * and moves `*pos` past its END line. RFC 1421 header lines ("Proc-Type: ...") are skipped.
 * Returns KF_E_NOT_FOUND when no BEGIN line is left, KF_E_MALFORMED for a block without its END
 * line, with a different END label, or with bad base64.
 */
enum kf_err kf_pem_next(const char *text, size_t len, size_t *pos, char *label, struct kf_buf *der);

/* Appends `der` armoured as a PEM block with `label` (64-character lines, final newline). */
enum kf_err kf_pem_encode(const char *label, const void *der, size_t n, struct kf_buf *out);

/*
 * Copies the label of the first BEGIN line in `text[0..len)` into `label` (capacity
 * KF_PEM_LABEL_MAX) without decoding anything. Returns KF_E_NOT_FOUND when there is none.
 */
enum kf_err kf_pem_first_label(const char *text, size_t len, char *label);

#endif
