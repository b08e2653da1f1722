#!/bin/sh
# `make bench`: each benchmark beside its peer in the same run, so ratios hold on a noisy box.
# Prints a Markdown fragment; bench/BENCHMARKS.md records the figures and what they mean.
set -eu
BUILD=${1:-build-bench}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kfbench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SECONDS_SIGN=${BENCH_SECONDS:-3}

echo "## Run on $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -m), $(openssl version)"
echo
echo "### Durable small writes: group commit vs one transaction per write"
echo
echo "| writers | keyfleet (group commit) writes/s | commits | SQLite, one txn per write, writes/s | ratio |"
echo "|---:|---:|---:|---:|---:|"
for threads in 1 8 64; do
    per=$((3200 / threads))
    out=$("$BUILD/bench/store_bench" "$WORK" "$threads" "$per")
    g=$(printf '%s\n' "$out" | sed -n 's/^mode=group.*writes_per_s=\([0-9]*\).*/\1/p')
    c=$(printf '%s\n' "$out" | sed -n 's/^mode=group.*commits=\([0-9]*\).*/\1/p')
    s=$(printf '%s\n' "$out" | sed -n 's/^mode=single.*writes_per_s=\([0-9]*\).*/\1/p')
    echo "| $threads | $g | $c | $s | $(awk "BEGIN{printf \"%.1fx\", $g/$s}") |"
done
echo
echo "### Device certificates issued per second (one core) vs raw ECDSA P-256 signatures"
echo
kf=$("$BUILD/bench/sign_bench" "$SECONDS_SIGN" | sed -n 's/.*certs_per_s=\([0-9]*\).*/\1/p')
raw=$(openssl speed -seconds "$SECONDS_SIGN" ecdsap256 2>/dev/null | awk '/nistp256/ {print int($(NF-1))}')
echo "| keyfleet: CSR parsed + checked, policy checked, certificate built + signed | openssl speed ecdsap256 sign/s | share of the ceiling |"
echo "|---:|---:|---:|"
echo "| $kf | $raw | $(awk "BEGIN{printf \"%.0f%%\", 100*$kf/$raw}") |"
