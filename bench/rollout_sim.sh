#!/bin/sh
# A signed-update rollout to a keyfleet-sim fleet (issue 15): DEVICES (default 1,000) virtual
# devices, connected to keyfleetd's hub, take part in a rollout of a 1 MiB release: each is told
# on MQTT, asks /updates/assigned, walks the TUF metadata (root, timestamp, snapshot, targets),
# downloads and verifies the image over mutual TLS, "installs" it, confirms it, and reports each
# step as an event that keyfleetd's engine applies. Two rollouts: one phase, then
# 1,10,50,100 with no soak. Prints the time from `rollout create` to every device confirmed,
# keyfleetd's CPU per device and per HTTPS request (from /proc), the simulator's CPU beside it
# (the load generator shares the cores), and, as the ceiling, the server side of one bare mutual
# TLS handshake measured in the same run (tls_floor).
#   sh bench/rollout_sim.sh BUILD WORK
set -eu
BUILD=${1:-build-bench}
WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/kfroll-XXXXXX")}
DEVICES=${BENCH_ROLLOUT_DEVICES:-1000}
KF="$BUILD/src/cli/keyfleet"
KFD="$BUILD/src/server/keyfleetd"
SIM="$BUILD/src/sim/keyfleet-sim"
REL="$BUILD/src/release/keyfleet-release"
RD="$WORK/rollout"
V="$RD/vendor"
mkdir -p "$RD" "$V"
. "$(dirname "$0")/sim_deployment.sh"
sim_deployment "$RD"

# The vendor: two releases of a 1 MiB image for hardware "sim".
"$KF" --dir "$RD/d" --json release keys >"$V/keys.json"
jq -c .timestamp "$V/keys.json" >"$V/ts.json"
jq -c .snapshot "$V/keys.json" >"$V/sn.json"
"$REL" keygen --out "$V/root.key" --no-passphrase >/dev/null
"$REL" keygen --out "$V/tg.key" --no-passphrase >/dev/null
"$REL" init-root --out "$V/root.json" --root "$V/root.key.pub" --root-threshold 1 \
    --targets "$V/tg.key.pub" --targets-threshold 1 --timestamp "$V/ts.json" \
    --snapshot "$V/sn.json" >/dev/null
"$REL" sign --key "$V/root.key" "$V/root.json" >/dev/null
prev=
for n in 1 2; do
    head -c 1048576 /dev/urandom >"$V/fw-$n.bin"
    "$REL" targets --out "$V/t$n.json" ${prev:+--from "$prev"} --image "$V/fw-$n.bin" \
        --name "sim/fw-$n.bin" --hardware sim --version "$n" >/dev/null
    "$REL" sign --key "$V/tg.key" "$V/t$n.json" >/dev/null
    "$KF" --dir "$RD/d" release add --root "$V/root.json" --targets "$V/t$n.json" \
        --image "sim/fw-$n.bin=$V/fw-$n.bin" >/dev/null
    prev=$V/t$n.json
done

KEYFLEET_LOG=warn "$KFD" --dir "$RD/d" >"$RD/kfd.log" 2>&1 &
KFD_PID=$!
SIM_PID=
trap 'kill $KFD_PID $SIM_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -s -o /dev/null --cacert "$RD/d/ca/root.crt" "https://127.0.0.1:$PP/healthz" && break
    sleep 0.05
done
"$SIM" --devices "$DEVICES" --provisioning "https://127.0.0.1:$PP" --trust "$RD/d/ca/root.crt" \
    --factory-ca "$RD/sim/factory-ca.pem" --factory-ca-key "$RD/sim/factory-ca.key" \
    --duration 3600 --rate 0 --event-every 0 --threads 32 --dir "$RD/sim" \
    --update-root "$V/root.json" --confirm-within 0 --json --quiet >"$RD/sim.json" 2>"$RD/sim.err" &
SIM_PID=$!
up=0
for _ in $(seq 1 1200); do
    up=$("$KF" --dir "$RD/d" --json device list 2>/dev/null | jq length)
    [ "$up" -ge "$DEVICES" ] && break
    sleep 0.25
done
sleep 3 # connected, and asked once already (nothing offered)

TICK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
requests() {
    curl -s --cacert "$RD/d/ca/root.crt" "https://127.0.0.1:$PP/metrics" |
        awk '$1 ~ /^keyfleet_http_requests_total/ {s += $2} END {print s + 0}'
}
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$RD/floor.key" \
    -out "$RD/floor.csr" -subj /CN=floor-1 2>/dev/null
"$KF" --dir "$RD/d" cert issue --device floor-1 --csr "$RD/floor.csr" --out "$RD/floor.pem" >/dev/null
floor=$("$BUILD/bench/tls_floor" "$RD/d/server/server.crt" "$RD/d/server/server.key" \
    "$RD/floor.pem" "$RD/floor.key" "$RD/d/ca/root.crt" 500 2>/dev/null |
    sed -n 's/.*server_us=\([0-9.]*\).*/\1/p')

echo
echo "### A rollout to $DEVICES keyfleet-sim devices, keyfleetd and the simulator on the same $(nproc) cores"
echo
echo "Each device is told on MQTT, asks /updates/assigned, verifies timestamp, snapshot and targets"
echo "metadata (TUF), downloads and verifies a 1 MiB image, \"installs\" and confirms it: its own"
echo "HTTPS requests over mutual TLS (a new connection each) and 5 events. Time from"
echo "\`keyfleet rollout create\` to every device confirmed (keyfleetd's engine applies reports"
echo "once a second); CPU from /proc over that time."
echo
echo "| rollout | devices | to all confirmed, s | keyfleetd CPU per device | HTTPS requests per device | keyfleetd CPU per request | one bare mTLS handshake, server side (tls_floor) | simulator CPU per device |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
n=0
for spec in "sim/fw-1.bin 100" "sim/fw-2.bin 1,10,50,100"; do
    set -- $spec
    n=$((n + 1))
    k0=$(ticks "$KFD_PID")
    s0=$(ticks "$SIM_PID")
    q0=$(requests)
    t0=$(date +%s.%N)
    "$KF" --dir "$RD/d" rollout create --release "$1" --enrollment sim --phases "$2" --soak 0 \
        --max-failures 100% >/dev/null
    done_n=0
    for _ in $(seq 1 2400); do
        done_n=$("$KF" --dir "$RD/d" rollout show "$n" --json | jq .counts.confirmed)
        [ "$done_n" -ge "$DEVICES" ] && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    k1=$(ticks "$KFD_PID")
    s1=$(ticks "$SIM_PID")
    q1=$(requests)
    awk -v t0="$t0" -v t1="$t1" -v k0="$k0" -v k1="$k1" -v s0="$s0" -v s1="$s1" -v q0="$q0" \
        -v q1="$q1" -v tick="$TICK" -v d="$DEVICES" -v c="$done_n" -v p="$2" -v f="${floor:-0}" \
        'BEGIN { k = (k1 - k0) / tick; r = q1 - q0;
                 printf "| phases %s | %d of %d | %.1f | %.1f ms | %.1f | %.0f µs | %.0f µs | %.1f ms |\n",
                        p, c, d, t1 - t0, 1000 * k / d, r / d, r ? 1e6 * k / r : 0, f,
                        1000 * (s1 - s0) / tick / d }'
done
