#!/bin/bash
# keyfleet-agent installs updates into the inactive slot of an A/B pair (two directories here),
# switches to it, and confirms it only when the health check passes within confirm_within: the
# installed version rises then. A release whose health check does not pass in time, or that is
# still unconfirmed when the agent comes back after the deadline (a restart that never came up),
# is reverted to the previous slot, reported (update.reverted), and not offered again.
. "$(dirname "$0")/lib.sh"

fleet_up || exit 1
fdev dev-1 fca
vendor_root
N=0
release() { # release IMAGE NAME VERSION
    local from=()
    [ "$N" -eq 0 ] || from=(--from "$V/t$N.json")
    N=$((N + 1))
    vendor_targets "$V/t$N.json" "${from[@]}" --image "$1" --name "$2" --hardware gw-a --version "$3"
    ok "release $3" release add --root "$V/root.json" --targets "$V/t$N.json" --image "$2=$1"
    offer_all "$2"
}
for n in 1 2 3 4; do echo "firmware $n" >"$T/fw-$n.bin"; done

chmod 755 "$T"
mkdir -m 777 "$T/slot-a" "$T/slot-b"
echo "firmware 0" >"$T/slot-a/image"
chmod 666 "$T/slot-a/image" # the agent runs as nobody
cat >"$T/install.sh" <<'EOF'
#!/bin/sh
# install FILE VERSION NAME SLOT_DIR
cp "$1" "$4/image" && echo "$2 $(basename "$4")" >>"$(dirname "$0")/installs"
EOF
cat >"$T/health.sh" <<'EOF'
#!/bin/sh
# health SLOT_DIR VERSION: the new software is up when the test says so
[ "$(cat "$(dirname "$0")/healthy")" = yes ] && [ -f "$1/image" ]
EOF
chmod 755 "$T/install.sh" "$T/health.sh"
touch "$T/installs"
chmod 666 "$T/installs"
echo yes >"$T/healthy"
chmod 644 "$T/healthy"
update_agent a1 "$T/dev-1.pem" "$T/dev-1.key" "slot_a = $T/slot-a" "slot_b = $T/slot-b" \
    "health = $T/health.sh" "confirm_within = 3"
wait_for_event() { # wait_for_event TYPE JQ-FILTER
    event_with "$1" "$2" || { sleep 3; event_with "$1" "$2"; }
}
active() { readlink "$T/a1.data/active-slot"; }
floor() { cat "$T/a1.data/update.floor" 2>/dev/null || echo 0; }

start_agent a1
check "the agent provisioned" wait_file "$T/a1.data/identity.json"
release "$T/fw-1.bin" gw/fw-1.bin 10000
check "release 1 confirmed" wait_for_event update.confirmed '.detail.version == 10000 and .detail.slot == "b"'
equals "installed into the inactive slot, b" "$(cat "$T/slot-b/image")" "firmware 1"
equals "slot a untouched" "$(cat "$T/slot-a/image")" "firmware 0"
equals "slot b is active" "$(active)" "$T/slot-b"
equals "the installed version rose once confirmed" "$(floor)" 10000

# Release 2 never comes up: reverted after confirm_within, and not tried again.
echo no >"$T/healthy"
release "$T/fw-2.bin" gw/fw-2.bin 20000
check "release 2 installed into slot a" wait_for_event update.installed '.detail.version == 20000 and .detail.slot == "a"'
check "release 2 reverted" wait_for_event update.reverted '.detail.version == 20000 and .detail.slot == "b" and .detail.reason == "not_confirmed"'
equals "back on slot b" "$(active)" "$T/slot-b"
equals "the installed version stayed" "$(floor)" 10000
sleep 3
equals "release 2 was not tried again" "$(grep -c '^20000 ' "$T/installs")" 1

# Release 3: the agent stops while it is pending and comes back after the deadline: reverted,
# even though its health check would pass by then (nothing confirmed it in time).
release "$T/fw-3.bin" gw/fw-3.bin 30000
for _ in $(seq 1 100); do grep -q '^30000 ' "$T/installs" && break; sleep 0.1; done
stop_agents
AGENT_PIDS=
equals "stopped with release 3 pending on slot a" "$(jq -r '.pending.version' "$T/a1.data/update.slots")" 30000
sleep 3.5
echo yes >"$T/healthy"
start_agent a1
check "release 3 reverted at start" wait_for_event update.reverted '.detail.version == 30000'
equals "back on slot b again" "$(active)" "$T/slot-b"
equals "the installed version still 10000" "$(floor)" 10000

# Release 4 comes up: confirmed, into slot a.
release "$T/fw-4.bin" gw/fw-4.bin 40000
check "release 4 confirmed" wait_for_event update.confirmed '.detail.version == 40000 and .detail.slot == "a"'
equals "slot a holds it" "$(cat "$T/slot-a/image")" "firmware 4"
equals "slot a active" "$(active)" "$T/slot-a"
equals "the installed version 40000" "$(floor)" 40000
kf events list --json
# (then, at its next check, perhaps already, update.current: it runs what its rollout offers)
equals "release 4's steps in order" \
    "$(jq -r '[.[] | select((.type | startswith("update.")) and .type != "update.current" and .detail.version == 40000)] | sort_by(.id) | map(.type) | join(",")' <<<"$OUT")" \
    "update.downloading,update.verified,update.installing,update.installed,update.confirmed"
stop_agents
AGENT_PIDS=

# A handler that takes longer than handler_timeout is killed: update.failed, nothing switched.
sed -i 's/^confirm_within = 3$/confirm_within = 3\nhandler_timeout = 1/' "$T/a1.conf"
cat >"$T/install.sh" <<'EOF'
#!/bin/sh
sleep 5
EOF
start_agent a1
release "$T/fw-1.bin" gw/fw-5.bin 50000
check "a handler past handler_timeout is killed: update.failed" wait_for_event update.failed \
    '.detail.version == 50000 and .detail.reason == "handler_failed" and .detail.status == -1'
equals "slot a still active" "$(active)" "$T/slot-a"
equals "the installed version stays 40000" "$(floor)" 40000
stop_agents
AGENT_PIDS=
finish
