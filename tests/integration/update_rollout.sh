#!/bin/bash
# keyfleet rollout (issue 15): a signed release offered to 20 devices in phases 10,50,100 with a
# 5-second soak and at most 20% failures. Checked through the real listeners, with curl asking
# /updates/assigned as each device and mosquitto_sub/pub as each device on the hub:
#   - only the phase's devices are offered the release, and each is told on
#     devices/<id>/updates/available; the others (and a paused or aborted rollout) offer nothing;
#   - the devices' reports (update.* events) move their rows; a phase advances after its soak;
#     3 failures of phase 2's 8 devices pause the rollout (update.rollout_paused, audited as
#     keyfleetd's); resume accepts them; the last phase completes it;
#   - rollout show and list count per phase and per state; every change is in the audit log;
#   - a device cannot report for another, and bad requests are refused naming the problem.
. "$(dirname "$0")/lib.sh"

fleet_up || exit 1
vendor_root
head -c 200000 /dev/urandom >"$T/fw.bin"
vendor_targets "$V/t1.json" --image "$T/fw.bin" --name gw/fw-2.0.bin --hardware gw-a --version 20000
ok "release add" release add --root "$V/root.json" --targets "$V/t1.json" --image "gw/fw-2.0.bin=$T/fw.bin"

DEVS=$(seq -f "dev-%02g" 1 20)
for d in $DEVS; do
    fdev "$d" fca
    ocsr "$d"
    register "$T/$d.pem" "$T/$d.key" "$T/$d.op.csr"
    [ "$HTTP" = 200 ] || fail "$d provisioned: $HTTP"
    jq -r .certificate <<<"$BODY" >"$T/$d.op.pem"
done
pass

# assigned DEV: what keyfleetd offers DEV (its target, or "null")
assigned() {
    curl -s --cacert "$T/d/ca/root.crt" --cert "$T/$1.op.pem" --key "$T/$1.op.key" \
        "$URL/updates/assigned?hardware=gw-a" | jq -r .target
}
offered() { # the devices offered the release now, one a line
    for d in $DEVS; do [ "$(assigned "$d")" = gw/fw-2.0.bin ] && echo "$d"; done
}
report() { # report DEV TYPE [VERSION] [EXTRA DETAIL JSON]
    pub "$1" -q 1 -t "devices/$1/events" \
        -m "{\"type\":\"$2\",\"severity\":\"info\",\"detail\":{\"version\":${3:-20000}${4:+,$4}}}"
}
show() { "$KF" --dir "$T/d" rollout show "$1" --json; }
wait_state() { # wait_state ID JQ-CONDITION
    for _ in $(seq 1 60); do
        show "$1" | jq -e "$2" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    show "$1" >&2
    return 1
}

# ---- refusals: nothing is made ----
refused "an unknown release" 1 "gw/none.bin is not in the published targets" \
    rollout create --release gw/none.bin --all
refused "phases that never reach everyone" 2 "the last phase is 100" \
    rollout create --release gw/fw-2.0.bin --all --phases 10,50
refused "phases that go down" 2 "each above the one before" \
    rollout create --release gw/fw-2.0.bin --all --phases 50,10,100
refused "a soak that is not a duration" 2 "a duration such as 30s" \
    rollout create --release gw/fw-2.0.bin --all --soak 10x
refused "a failure threshold over 100%" 2 "--max-failures \"200%\": a percentage from 0% to 100%" \
    rollout create --release gw/fw-2.0.bin --all --max-failures 200%
refused "a min-done over 100%" 2 "--min-done \"150%\": a percentage" \
    rollout create --release gw/fw-2.0.bin --all --min-done 150%
refused "two ways of naming devices" 2 "name the devices one way" \
    rollout create --release gw/fw-2.0.bin --all --enrollment factory
printf 'dev-01\nnobody-here\n' >"$T/list"
refused "a list naming a device that does not exist" 1 "nobody-here not found" \
    rollout create --release gw/fw-2.0.bin --devices "$T/list"
printf 'dev-01\n  # a comment\ndev-01\n' >"$T/list"
refused "a list naming a device twice" 1 "dev-01 is named twice" \
    rollout create --release gw/fw-2.0.bin --devices "$T/list"
refused "an enrollment that does not exist" 1 "not found" \
    rollout create --release gw/fw-2.0.bin --enrollment nosuch
kf rollout list --json
equals "no rollout was made" "$(jq length <<<"$OUT")" 0

# ---- every device listens on its updates topic ----
for d in $DEVS; do
    # shellcheck disable=SC2046
    mosquitto_sub $(as "$d") -i "$d" -q 1 -t "devices/$d/updates/#" -W 60 -C 1 >"$T/$d.note" 2>/dev/null &
done
sleep 1.5

ok "rollout create" rollout create --release gw/fw-2.0.bin --enrollment factory --phases 10,50,100 \
    --soak 5s --max-failures 20%
contains "says what it made" "$OUT" "rollout 1: gw/fw-2.0.bin to 20 devices in 3 phases"
P1=$(offered)
equals "phase 1 (10%) offers it to 2 devices" "$(wc -l <<<"$P1")" 2
told() { for d in $1; do [ -s "$T/$d.note" ] || return 1; done; }
for _ in $(seq 1 20); do told "$P1" && break; sleep 0.25; done
check "phase 1's devices are told on devices/<id>/updates/available" told "$P1"
equals "what they are told" "$(jq -c . "$T/$(head -1 <<<"$P1").note")" \
    '{"rollout":1,"target":"gw/fw-2.0.bin","version":20000}'
equals "nobody else is told" "$(for d in $DEVS; do [ -s "$T/$d.note" ] && echo "$d"; done)" "$P1"
equals "another hardware is offered nothing" "$(curl -s --cacert "$T/d/ca/root.crt" \
    --cert "$T/dev-01.op.pem" --key "$T/dev-01.op.key" "$URL/updates/assigned?hardware=gw-b" | jq -c .)" \
    '{"rollout":null,"target":null,"version":null}'
HTTP=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/d/ca/root.crt" "$URL/updates/assigned?hardware=gw-a")
equals "without a device certificate: 403" "$HTTP" 403
HTTP=$(curl -s -o "$T/body" -w '%{http_code}' --cacert "$T/d/ca/root.crt" --cert "$T/dev-01.op.pem" \
    --key "$T/dev-01.op.key" "$URL/updates/assigned")
equals "without its hardware: 400" "$HTTP" 400
HTTP=$(curl -s -o "$T/body" -w '%{http_code}' --cacert "$T/d/ca/root.crt" --cert "$T/dev-01.op.pem" \
    --key "$T/dev-01.op.key" "$URL/updates/assigned?hardware=gw%2Fa")
equals "a hardware id that is not one: 400" "$HTTP" 400

for d in $P1; do
    report "$d" update.downloading
    report "$d" update.installed
    report "$d" update.confirmed
done
check "phase 1 confirmed" wait_state 1 '.counts.confirmed == 2 and .phases[0].counts.confirmed == 2'
check "after the soak, phase 2 (50%)" wait_state 1 '.phase == 2 and .offered == 10'
P2=$(offered | grep -vxF "$P1")
equals "phase 2 offers it to 8 more" "$(wc -l <<<"$P2")" 8
for _ in $(seq 1 20); do told "$P2" && break; sleep 0.25; done
check "and tells them" told "$P2"

# 3 of phase 2's 8 fail: 37.5% > 20%: paused
for d in $(sed -n 2,4p <<<"$P2"); do report "$d" update.failed 20000 '"reason":"hash"'; done
check "the rollout pauses itself" wait_state 1 '.state == "paused" and .phases[1].counts.failed == 3'
check "update.rollout_paused" event_with update.rollout_paused \
    '.source == "server" and .detail.rollout == 1 and .detail.failed == 3 and .detail.devices == 8'
kf rollout show 1
contains "show says why" "$OUT" "why: 3 of the 8 devices of phase 2 failed: over the 20% allowed"
contains "show counts per phase" "$OUT" "PHASE"
equals "paused, it offers nothing" "$(offered | wc -l)" 0
check "the pause is audited as keyfleetd's" sh -c \
    "'$KF' --dir '$T/d' audit list --json | jq -e '[.[] | select(.action == \"rollout.pause\" and .actor == \"keyfleetd\" and .object == \"rollout:1\")] | length == 1'"
# A device reporting for another: the ACL refuses the topic; a detail naming another device is
# its own report all the same.
OTHER=$(sed -n 1p <<<"$P2")
REPORTER=$(sed -n 8p <<<"$P2")
pub "$REPORTER" -q 1 -t "devices/$OTHER/events" \
    -m '{"type":"update.failed","severity":"info","detail":{"version":20000}}'
# (not an event of OTHER; a version other than the rollout's is not counted either)
report "$REPORTER" update.failed 19999 "\"device\":\"$OTHER\""
sleep 1.5
check "nothing counted against another device" wait_state 1 '.counts.failed == 3 and .phases[1].counts.failed == 3'

refused "pausing a paused rollout" 1 "only a running one" rollout pause 1
sleep 4
check "paused, it does not advance" wait_state 1 '.phase == 2 and .state == "paused"'

ok "resume" rollout resume 1
check "running again, its 3 failures accepted" wait_state 1 '.state == "running" and .accepted == 3'
report "$(sed -n 5p <<<"$P2")" update.confirmed
check "after the soak, phase 3 (100%)" wait_state 1 '.phase == 3 and .offered == 20'
equals "all 20 offered it" "$(offered | wc -l)" 20
check "after the last soak, completed" wait_state 1 '.state == "completed"'
equals "completed, it is still offered (a device offline all along learns it)" \
    "$(assigned "$(sed -n 1p <<<"$DEVS")")" gw/fw-2.0.bin
kf rollout show 1 --json
equals "per-state counts" "$(jq -c '[.counts.pending, .counts.confirmed, .counts.failed]' <<<"$OUT")" "[14,3,3]"
equals "per-phase devices" "$(jq -c '[.phases[].devices]' <<<"$OUT")" "[2,8,10]"
refused "aborting a completed rollout" 1 "it is over" rollout abort 1

# A second rollout to three devices, aborted: they are offered nothing, not the older one.
printf 'dev-01\ndev-02\n# and\ndev-03\n' >"$T/list"
ok "a rollout to a list" rollout create --release gw/fw-2.0.bin --devices "$T/list" --phases 100 --soak 1h
ok "abort it" rollout abort 2 --reason "wrong day"
equals "aborted, the newest rollout offers nothing" "$(assigned dev-02)" null
equals "the others keep the first" "$(assigned dev-04)" gw/fw-2.0.bin
kf rollout list
contains "rollout list" "$OUT" "rollout 2  gw/fw-2.0.bin (version 20000, gw-a)  aborted"

# A device cannot pause a rollout by raising the server's event: the hub refuses it.
ok "a third rollout" rollout create --release gw/fw-2.0.bin --devices "$T/list" --phases 100 --soak 1h
report dev-01 update.rollout_paused 20000 '"rollout":3'
sleep 1.5
check "a device's update.rollout_paused pauses nothing" wait_state 3 '.state == "running"'
kf events list --type update.rollout_paused --json
equals "and is not recorded as one" "$(jq '[.[] | select(.source == "device")] | length' <<<"$OUT")" 0
# A fourth for the same hardware supersedes the third (the newest decides what is offered).
ok "a fourth rollout" rollout create --release gw/fw-2.0.bin --devices "$T/list" --phases 100 --soak 1h
check "the third is aborted, superseded" wait_state 3 '.state == "aborted" and .reason == "superseded by rollout 4"'

# ---- release show and revoke ----
kf release show gw/fw-2.0.bin --json
equals "release show: the signed SHA-256" "$(jq -r .target.sha256 <<<"$OUT")" "$(sha256sum "$T/fw.bin" | cut -d' ' -f1)"
equals "its hardware and version" "$(jq -c '[.target.custom.hardware, .target.custom.version]' <<<"$OUT")" '["gw-a",20000]'
equals "its rollouts" "$(jq -c '[.rollouts[] | .id]' <<<"$OUT")" "[1,2,3,4]"
refused "release show of no release" 1 "no release gw/none.bin" release show gw/none.bin
ok "release revoke" release revoke gw/fw-2.0.bin --reason "a bad build"
contains "says what it ended" "$OUT" "revoked; 2 rollouts of it aborted"
equals "revoked: offered to nobody (rollout 1 was completed)" "$(offered | wc -l)" 0
check "rollout 1 is aborted, with the reason" wait_state 1 '.state == "aborted" and .reason == "release revoked: a bad build"'
refused "no rollout of a revoked release" 1 "gw/fw-2.0.bin is revoked" \
    rollout create --release gw/fw-2.0.bin --all
kf release show gw/fw-2.0.bin
contains "release show says it is revoked" "$OUT" "REVOKED"
equals "the revocations are kept owner-only" "$(stat -c %a "$T/d/updates/revoked.json")" 600
# the vendor takes it out of the signed targets too
vendor_targets "$V/t2.json" --from "$V/t1.json" --remove gw/fw-2.0.bin
ok "targets without it" release add --root "$V/root.json" --targets "$V/t2.json"
kf release show gw/fw-2.0.bin
contains "no longer signed" "$OUT" "no longer in the signed targets (version 2)"
kf release list --json
equals "release list has it no more" "$(jq '.targets | length' <<<"$OUT")" 0
# An online key others can read is not used.
chmod 644 "$T/d/updates/keys/timestamp.key"
refused "an online key readable by others" 1 "can be read by others (mode 0644): chmod 600 it" release refresh
chmod 600 "$T/d/updates/keys/timestamp.key"
ok "owner-only again: renewed" release refresh

kf audit list --json
equals "every change audited, in order" \
    "$(jq -r '[.[] | select(.action | startswith("rollout.")) | .action] | join(",")' <<<"$OUT")" \
    "rollout.create,rollout.advance,rollout.pause,rollout.resume,rollout.advance,rollout.complete,rollout.create,rollout.abort,rollout.create,rollout.create,rollout.abort,rollout.abort,rollout.abort"
equals "release.revoke audited" \
    "$(jq '[.[] | select(.action == "release.revoke" and .object == "release:gw/fw-2.0.bin")] | length' <<<"$OUT")" 1
ok "the audit chain holds" audit verify
finish
