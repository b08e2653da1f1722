/*
 * keyfleet/export.h: KF_EXPORT marks the functions of libkeyfleet's public API. libkeyfleet is
 * built with hidden visibility, so that only what carries this mark is exported from
 * libkeyfleet.so: the library's internal helpers stay internal even though they share the kf_
 * prefix (ctest layout.exports holds the exported set to the public headers).
 */
#ifndef KEYFLEET_EXPORT_H
#define KEYFLEET_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define KF_EXPORT __attribute__((visibility("default")))
#else
#define KF_EXPORT
#endif

#endif
