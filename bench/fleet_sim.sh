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
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
PP=$(free_port)
HP=$(free_port)
"$KF" --dir "$FD/d" init >/dev/null
"$KF" --dir "$FD/d" hub add --name hub-1 --endpoint "127.0.0.1:$HP" >/dev/null
# One address sends the whole fleet: no per-address limits for it (a real fleet has many).
sed -i "/^\[provisioning\]/,/^\[/ s/^listen = .*/listen = 127.0.0.1:$PP/; \
/^\[hub\]/,\$ s/^listen = .*/listen = 127.0.0.1:$HP/; s/^rate_per_ip = .*/rate_per_ip = 0/; \
s/^max_handshakes_per_ip = .*/max_handshakes_per_ip = 1000000/; s/^max_handshakes_per_net = .*/max_handshakes_per_net = 1000000/; \
s/^max_connections_per_net = .*/max_connections_per_net = 1000000/; s/^connect_rate_per_ip = .*/connect_rate_per_ip = 0/; s/^max_connections_per_ip = .*/max_connections_per_ip = 100000/; s/^flap_connects = .*/flap_connects = 1000000/; \
s/^msg_rate = .*/msg_rate = 0/; s/^byte_rate = .*/byte_rate = 0/" "$FD/d/keyfleet.conf"
"$SIM" --make-factory-ca --dir "$FD/sim" >/dev/null
code=$("$KF" --dir "$FD/d" --json enrollment group create --name sim --ca "$FD/sim/factory-ca.pem" |
    sed -n 's/.*"verification_code": *"\([^"]*\)".*/\1/p')
openssl req -new -key "$FD/sim/factory-ca.key" -subj "/CN=$code" -out "$FD/v.csr" 2>/dev/null
openssl x509 -req -in "$FD/v.csr" -CA "$FD/sim/factory-ca.pem" -CAkey "$FD/sim/factory-ca.key" \
    -days 1 -out "$FD/v.pem" 2>/dev/null
"$KF" --dir "$FD/d" enrollment group verify --name sim --cert "$FD/v.pem" >/dev/null
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
