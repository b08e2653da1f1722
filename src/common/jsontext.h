/*
 * jsontext: compact JSON text built with jansson's pack formats, for audit and event details,
 * so that every detail is escaped the same way and its keys come in the same (sorted) order.
 */
#ifndef KF_COMMON_JSONTEXT_H
#define KF_COMMON_JSONTEXT_H

/*
 * Returns compact JSON text (sorted keys) for the jansson pack format `fmt` and its arguments,
 * as a string the caller frees with free(); "{}" when the value cannot be built (never NULL,
 * except when even that allocation fails).
 */
char *kf_jsontext_pack(const char *fmt, ...);

#endif
