#!/bin/bash
# scripts/run.sh, what `make run` runs after building: on a deployment of its own (free ports),
# it enrolls the simulator's factory CA with proof of possession, starts keyfleetd, brings a
# simulated fleet to life with a progress line and a summary, prints what to explore, and keeps
# keyfleetd serving until it is told to stop; and a vendor-signed release rolled out to the fleet
# in phases, pausing itself on the devices that fail to install it, resumed, completed.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

DEMO=$T/demo
"$KF" --dir "$DEMO" init >/dev/null 2>&1
PP=$(free_port)
HP=$(free_port)
KFD_CONF=$DEMO/keyfleet.conf conf_set provisioning listen "127.0.0.1:$PP" || exit 1
KFD_CONF=$DEMO/keyfleet.conf conf_set hub listen "127.0.0.1:$HP" || exit 1
"$KF" --dir "$DEMO" hub add --name hub-1 --endpoint "localhost:$HP" >/dev/null

(cd "$ROOT" && KEYFLEET_DIR="$DEMO" DEVICES=60 SIM_SECONDS=2 exec sh scripts/run.sh "$KF_BIN_DIR") \
    >"$T/run.out" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 600); do
    grep -q "keyfleetd keeps serving" "$T/run.out" && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.1
done
OUT=$(cat "$T/run.out")
contains "it enrolls the simulator's factory CA" "$OUT" "Enrolled the simulator's factory CA"
contains "starts keyfleetd" "$OUT" "keyfleetd is up"
contains "shows progress" "$OUT" "provisioned 60"
contains "and a summary" "$OUT" "keyfleet-sim: 60 devices"
contains "every device provisioned" "$OUT" "provisioned   60 (refused 0, failed 0"
contains "and connected" "$OUT" "connected     60 (failed 0"
contains "the vendor signs a release" "$OUT" "The demo vendor signed release sim/fw-2.0.bin"
contains "a phased rollout" "$OUT" "rollout 1: sim/fw-2.0.bin to 60 devices in 4 phases"
contains "with its progress line" "$OUT" "rollout 1: phase 2 of 4, offered 6 of 60"
# sim-0001..0060: 2 fail to install (the share is picked by the device id), 2 of 60 is over 2%
contains "it pauses itself on failures" "$OUT" "rollout 1 paused itself:"
contains "and completes once resumed" "$OUT" "[completed]"
contains "the devices' summary" "$OUT" "updates       58 confirmed, 2 failed, 0 reverted"
contains "what to explore" "$OUT" "device list"
contains "audit verify too" "$OUT" "audit verify"
check "keyfleetd still serves" curl -s -o /dev/null --cacert "$DEMO/ca/root.crt" "https://127.0.0.1:$PP/healthz"
"$KF" --dir "$DEMO" device list --json >"$T/devices.json"
equals "the fleet is in the store" "$(jq '[.[] | select(.id | startswith("sim-"))] | length' "$T/devices.json")" 60
check "the group is verified" sh -c "'$KF' --dir '$DEMO' --json enrollment group list | jq -e '.[] | select(.name == \"demo-factory\") | .verified == true' >/dev/null"
# (a background job of a script ignores SIGINT, so Ctrl-C's trap is driven with SIGTERM, which
# the same trap handles)
kill -TERM "$RUN_PID"
wait "$RUN_PID"
equals "stopping it is clean" "$?" 0
check_not "and keyfleetd with it" curl -s -o /dev/null --max-time 2 --cacert "$DEMO/ca/root.crt" "https://127.0.0.1:$PP/healthz"

# a second run reuses the deployment and the enrollment
(cd "$ROOT" && KEYFLEET_DIR="$DEMO" DEVICES=5 SIM_SECONDS=1 exec sh scripts/run.sh "$KF_BIN_DIR") \
    >"$T/run2.out" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 300); do
    grep -q "keyfleetd keeps serving" "$T/run2.out" && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.1
done
contains "the second run says it reuses the deployment" "$(cat "$T/run2.out")" "Using the deployment in $DEMO"
contains "and its devices come back" "$(cat "$T/run2.out")" "provisioned   5 (refused 0, failed 0"
kill -TERM "$RUN_PID"
wait "$RUN_PID"
equals "and stops again" "$?" 0
finish
