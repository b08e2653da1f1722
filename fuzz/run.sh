#!/bin/sh
# `make fuzz`: runs each libFuzzer target for SECONDS on a working copy of its seed corpus.
# New inputs it finds stay in BUILD/fuzz-corpus; crashes go to BUILD/fuzz-crashes and fail the run.
set -u
BUILD=$1
SECONDS_EACH=${2:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
status=0
mkdir -p "$BUILD/fuzz-crashes"
for t in $(cd "$HERE/corpus" && ls); do
    work="$BUILD/fuzz-corpus/$t"
    mkdir -p "$work"
    cp -n "$HERE/corpus/$t"/* "$work/" 2>/dev/null || true
    echo "== fuzz $t for ${SECONDS_EACH}s"
    if ! "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$BUILD/fuzz-crashes/$t-" -print_final_stats=1 \
        "$work" 2>"$BUILD/fuzz-$t.log"; then
        echo "fuzz $t FAILED: see $BUILD/fuzz-$t.log and $BUILD/fuzz-crashes/" >&2
        status=1
    fi
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$BUILD/fuzz-$t.log" || true
done
exit $status
