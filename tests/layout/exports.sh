#!/bin/sh
# libkeyfleet.so exports exactly the functions its public headers mark KF_EXPORT: no internal
# helper leaks out under the kf_ prefix, and nothing public is missing.
# usage: exports.sh LIBKEYFLEET_SO INCLUDE_DIR
so=$1
inc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Declarations "KF_EXPORT type name(" in the headers (clang-format may break the line after the
# type, so the name is the word before the first parenthesis after KF_EXPORT).
sed -n '/KF_EXPORT/{N;p}' $(ls "$inc"/keyfleet/*.h | grep -v /export.h) | tr '\n' ' ' | grep -o 'KF_EXPORT[^(;]*(' |
    grep -o '[a-z_0-9]*($' | tr -d '(' | sort -u >"$tmp/declared"
# Defined dynamic symbols, less the loader's own.
nm -D --defined-only "$so" | awk '{print $3}' | grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' |
    sort -u >"$tmp/exported"
fail=0
n=$(wc -l <"$tmp/declared")
[ "$n" -gt 20 ] || { echo "FAIL: only $n KF_EXPORT declarations found in $inc/keyfleet"; fail=1; }
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -n "$extra" ]; then echo "FAIL: exported but not public:"; echo "$extra"; fail=1; fi
if [ -n "$missing" ]; then echo "FAIL: public but not exported:"; echo "$missing"; fail=1; fi
if [ "$fail" -eq 0 ]; then
    echo "ok: $(basename "$so") exports the $n public functions and nothing else"
    echo "1 passed, 0 failed"
else
    echo "0 passed, 1 failed"
fi
exit "$fail"
