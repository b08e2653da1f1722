#!/bin/sh
# scripts/check_includes.py refuses what it is there to refuse: run on tests/layout/bad, a tree
# with one include of each kind it must catch, it exits 1 and names each.
here=$(dirname "$0")
out=$(python3 "$here/../../scripts/check_includes.py" "$here/bad")
rc=$?
echo "$out"
fail=0
[ "$rc" -eq 1 ] || { echo "FAIL: exit status $rc, not 1"; fail=1; }
for want in \
    "server/hub/front.c:2: includes server/provision/decide.h, of layer server/provision" \
    "server/store/low.c:2: includes server/ops/up.h, of layer server/ops" \
    "include cycle among server/ops/round, server/ops/up"; do
    case "$out" in
    *"$want"*) echo "ok: $want" ;;
    *) echo "FAIL: not reported: $want"; fail=1 ;;
    esac
done
[ "$fail" -eq 0 ] && echo "3 passed, 0 failed" || echo "the check missed something"
exit "$fail"
