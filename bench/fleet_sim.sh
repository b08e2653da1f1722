#!/bin/sh
# The whole device lifecycle at fleet scale, driven by keyfleet-sim (the load generator make run
# and the tests use): N devices make factory identities, provision, connect to the hub, send
# QoS 1 telemetry and events, renew, and disconnect. Prints a Markdown fragment.
#   sh bench/fleet_sim.sh BUILD WORK
set -eu
BUILD=${1:-build-bench}
WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/kffleet-XXXXXX")}
KF="$BUILD/src/cli/keyfleet"
KFD="$BUILD/src/server/keyfleetd"
SIM="$BUILD/src/sim/keyfleet-sim"
FD="$WORK/fleet"
mkdir -p "$FD"
. "$(dirname "$0")/sim_deployment.sh"
sim_deployment "$FD"
KEYFLEET_LOG=warn "$KFD" --dir "$FD/d" >"$FD/kfd.log" 2>&1 &
KFD_PID=$!
trap 'kill $KFD_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -s -o /dev/null --cacert "$FD/d/ca/root.crt" "https://127.0.0.1:$PP/healthz" && break
    sleep 0.05
done
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))" "$@"; }

echo
echo "### The whole lifecycle with keyfleet-sim, keyfleetd and the simulator on the same $(nproc) cores"
echo
echo "Each device: a factory identity made, POST /api/v1/register over mTLS, an MQTT connection to"
echo "the hub over mTLS, QoS 1 telemetry at 1 message/s and a security event every 5 s for 10 s,"
echo "an EST simplereenroll renewal 3 to 4.5 s after connecting, with the connection switched to the"
echo "new certificate; 32 simulator threads."
echo
echo "| devices | up in s | provisioned | connected | renewed | messages acked / sent | provisioning p50 / p99 ms | connect p50 / p99 ms | PUBACK p50 / p99 ms |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in 100 1000; do
    "$SIM" --devices "$n" --provisioning "https://127.0.0.1:$PP" --trust "$FD/d/ca/root.crt" \
        --factory-ca "$FD/sim/factory-ca.pem" --factory-ca-key "$FD/sim/factory-ca.key" \
        --prefix "b$n" --duration 10 --rate 1 --event-every 5 --renew-after 3 --threads 32 \
        --json --quiet >"$FD/r$n.json" || true
    total=$(j "$FD/r$n.json" 'round(seconds, 1)')
    up=$(awk -v t="$total" 'BEGIN{printf "%.1f", t - 10}')
    echo "| $n | $up | $(j "$FD/r$n.json" provisioned) | $(j "$FD/r$n.json" connected) | $(j "$FD/r$n.json" renewed) | $(j "$FD/r$n.json" acked) / $(j "$FD/r$n.json" messages) | $(j "$FD/r$n.json" 'round(provisioning_ms["p50"],1)') / $(j "$FD/r$n.json" 'round(provisioning_ms["p99"],1)') | $(j "$FD/r$n.json" 'round(connect_ms["p50"],1)') / $(j "$FD/r$n.json" 'round(connect_ms["p99"],1)') | $(j "$FD/r$n.json" 'round(puback_ms["p50"],1)') / $(j "$FD/r$n.json" 'round(puback_ms["p99"],1)') |"
done
