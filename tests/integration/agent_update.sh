#!/bin/bash
# keyfleet-agent updates itself from keyfleetd (issue 15, the device side): offered a release by
# a rollout, it verifies the TUF metadata and the image over its mutual TLS, installs through
# its handler only a release for its hardware that is newer than the installed one, records the
# installed version (which never goes down), resumes a broken download, and reports every step
# as an event. With the server in an attacker's hands, an older signed release offered is
# refused (update.rollback_refused) and an image that is not the signed one is never handed to
# the handler (update.failed, reason hash).
. "$(dirname "$0")/lib.sh"

fleet_up || exit 1
fdev dev-1 fca

# ---- the vendor (keys in clear: the ceremony is update_release's subject) ----
vendor_root
for n in 1 2 3 5; do head -c $((1000000 + n * 100000)) /dev/urandom >"$T/fw-$n.bin"; done
head -c 3000000 /dev/urandom >"$T/other.bin"
# release N FROM IMAGE NAME VERSION [HARDWARE]: targets version N (from FROM's targets, or none)
# with IMAGE, published
release() {
    local from=()
    [ "$2" = - ] || from=(--from "$V/t$2.json")
    vendor_targets "$V/t$1.json" "${from[@]}" --image "$3" --name "$4" --hardware "${6:-gw-a}" \
        --version "$5"
    ok "release $1" release add --root "$V/root.json" --targets "$V/t$1.json" --image "$4=$3"
}
release 1 - "$T/fw-1.bin" gw/fw-1.bin 10000
release 2 1 "$T/other.bin" other/fw-9.bin 99999 gw-b # another device class, a higher version

# ---- the device ----
chmod 755 "$T"
mkdir -m 777 "$T/slot"
cat >"$T/install.sh" <<'EOF'
#!/bin/sh
# install FILE VERSION NAME: into the inactive slot (a directory here)
cp "$1" "$(dirname "$0")/slot/image" && echo "$2 $3" >>"$(dirname "$0")/slot/installed"
EOF
chmod 755 "$T/install.sh"
update_agent a1 "$T/dev-1.pem" "$T/dev-1.key"
start_agent a1
check "the agent provisioned" wait_file "$T/a1.data/identity.json"
sleep 2
check "published is not offered: nothing installed without a rollout" test ! -e "$T/slot/installed"
offer_all gw/fw-1.bin
offer_all other/fw-9.bin # another device class's release, offered after: not this device's
# installed VERSION: waits until the handler installed VERSION
installed() {
    for _ in $(seq 1 100); do
        grep -q "^$1 " "$T/slot/installed" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}
check "release 1 installed" installed 10000
check "the image installed is the signed one" cmp "$T/slot/image" "$T/fw-1.bin"
check "the other device class's release was never installed" sh -c "! grep -q 99999 '$T/slot/installed'"
equals "the installed version is recorded" "$(cat "$T/a1.data/update.floor")" 10000
check "the trusted metadata is kept, owner-only" test "$(stat -c %a "$T/a1.data/tuf/targets.json")" = 600
check "every step is an event, from the device" event_with update.installed \
    '.source == "device" and .device == "dev-1" and .detail.version == 10000'
kf events list --json
equals "the steps in order" \
    "$(jq -r '[.[] | select((.type | startswith("update.")) and .type != "update.current" and .detail.version == 10000)] | sort_by(.id) | map(.type) | join(",")' <<<"$OUT")" \
    "update.downloading,update.verified,update.installing,update.installed"

release 3 2 "$T/fw-2.bin" gw/fw-2.bin 20000
offer_all gw/fw-2.bin
check "release 3 (version 20000) installed" installed 20000
check "its image" cmp "$T/slot/image" "$T/fw-2.bin"
equals "the floor rose" "$(cat "$T/a1.data/update.floor")" 20000

# ---- the server in an attacker's hands ----
# An older signed release offered (the vendor's own version 10000 again), and the newest taken
# out of the targets: refused.
"$REL" targets --out "$V/t4.json" --from "$V/t3.json" >/dev/null
jq 'del(.signed.targets["gw/fw-2.bin"])' "$V/t4.json" >"$V/t4b.json" && mv "$V/t4b.json" "$V/t4.json"
"$REL" sign --key "$V/tg.key" "$V/t4.json" >/dev/null
ok "a release set without the newest" release add --root "$V/root.json" --targets "$V/t4.json"
offer_all gw/fw-1.bin
check "a downgrade offer is refused" event_with update.rollback_refused \
    '.detail.offered == 10000 and .detail.installed == 20000 and .detail.target == "gw/fw-1.bin"'
refused_counted() {
    for _ in $(seq 1 50); do
        "$KF" --dir "$T/d" rollout list --json |
            jq -e '[.[] | select(.release == "gw/fw-1.bin")] | last | .counts.refused == 1' >/dev/null &&
            return 0
        sleep 0.2
    done
    return 1
}
check "the rollout counts the device as refused (a downgrade)" refused_counted
equals "nothing else was installed" "$(wc -l <"$T/slot/installed")" 2
equals "the floor stays" "$(cat "$T/a1.data/update.floor")" 20000

# The image on the server replaced (same length): the device refuses it before installing.
release 5 4 "$T/fw-3.bin" gw/fw-3.bin 30000
offer_all gw/fw-3.bin
# (the agent may be quick: stop it, tamper, start it)
stop_agents
AGENT_PIDS=
for f in $(find "$T/d/updates/repo/targets/gw" -name "*.fw-3.bin"); do
    printf 'EVIL' | dd of="$f" bs=1 seek=4096 conv=notrunc 2>/dev/null
done
if grep -q "^30000 " "$T/slot/installed"; then
    # it was installed before the tampering: take the check out of the race
    echo "note: release 5 installed before the image was tampered with" >&2
    pass
else
    start_agent a1
    check "a tampered image is refused" event_with update.failed '.detail.reason == "hash" and .detail.version == 30000'
    check_not "and never installed" installed 30000
    # one device of one failed: over 2%, the rollout pauses itself
    check "the rollout paused itself" event_with update.rollout_paused \
        '.source == "server" and .detail.release == "gw/fw-3.bin" and .detail.failed == 1'
    kf rollout list --json
    R5=$(jq -r '[.[] | select(.release == "gw/fw-3.bin")] | last | .id' <<<"$OUT")
    kf rollout show "$R5"
    contains "rollout show says why it paused" "$OUT" "why: 1 of the 1 devices of phase 1 failed"
    stop_agents
    AGENT_PIDS=
    cp "$T/fw-3.bin" "$(find "$T/d/updates/repo/targets/gw" -name "*.fw-3.bin" | head -1)"
    for f in $(find "$T/d/updates/repo/targets/gw" -name "*.fw-3.bin"); do cp "$T/fw-3.bin" "$f"; done
    ok "the operator resumes it, the image fixed" rollout resume "$R5"
    start_agent a1
    check "the good image is installed once it is back" installed 30000
    stop_agents
    AGENT_PIDS=
fi
check "release 5's image" cmp "$T/slot/image" "$T/fw-3.bin"

# A broken download resumes: the first 600,000 bytes are there from before.
release 6 5 "$T/fw-5.bin" gw/fw-5.bin 50000
offer_all gw/fw-5.bin
head -c 600000 "$T/fw-5.bin" >"$T/a1.data/update.img.part"
start_agent a1
check "release 6 installed" installed 50000
check "resumed from byte 600000" event_with update.downloading '.detail.version == 50000 and .detail.from == 600000'
check "the resumed image is whole and right" cmp "$T/slot/image" "$T/fw-5.bin"
check "no part left behind" test ! -e "$T/a1.data/update.img.part"
# A device that was offline learns at its next connect, not at its next poll (an hour away).
stop_agents
AGENT_PIDS=
sed -i 's/^interval = 1$/interval = 3600/' "$T/a1.conf"
start_agent a1
sleep 2
stop_kfd
head -c 1234567 /dev/urandom >"$T/fw-7.bin"
release 7 6 "$T/fw-7.bin" gw/fw-7.bin 70000
offer_all gw/fw-7.bin
REUSE_PORTS=1 start_kfd
check "offline during the release, it installs it once it is back" installed 70000
check "release 7's image" cmp "$T/slot/image" "$T/fw-7.bin"
check "a downgrade was reported once, not at every check" \
    test "$(jq '[.[] | select(.type == "update.rollback_refused")] | length' <<<"$("$KF" --dir "$T/d" events list --json)")" -eq 1
stop_agents
AGENT_PIDS=
finish
