#!/bin/bash
# instructions.sh BUILD [N]: the instructions keyfleetd executes per enrollment (register, full
# TLS 1.3 handshake, 4 in flight) and per resumed hub connection, counted by callgrind over the
# timed part only. Unlike CPU time these repeat to a fraction of a percent on a noisy machine, so
# two builds can be compared run against run (how issue 14's before/after was checked):
#   sh bench/instructions.sh build-bench-before; sh bench/instructions.sh build-bench
# keyfleetd runs with one worker and long deadlines (valgrind is ~50x slower). Needs valgrind.
set -eu
BUILD=$1
N=${2:-200}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kfinstr-XXXXXX")
KF="$BUILD/src/cli/keyfleet"
KFD="$BUILD/src/server/keyfleetd"
VPID=""
trap '[ -n "$VPID" ] && kill "$VPID" 2>/dev/null; sleep 1; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { printf ' %s\n' "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
# counted DIR: the instructions callgrind dumped into DIR/cg.out*
counted() {
    local total=0 s f
    for f in "$1"/cg.out*; do
        s=$(grep -m1 '^summary:' "$f" 2>/dev/null | awk '{print $2}')
        total=$((total + ${s:-0}))
    done
    echo "$total"
}
# start DIR: keyfleetd on DIR/d under callgrind, instrumentation off until the timed part
start() {
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$1/cg.out" "$KFD" \
        --dir "$1/d" >"$1/kfd.log" 2>&1 &
    VPID=$!
    for _ in $(seq 1 600); do grep -q "msg=serving" "$1/kfd.log" && return 0; sleep 0.1; done
    echo "keyfleetd did not start under valgrind: $(tail -3 "$1/kfd.log")" >&2
    return 1
}
stop() { kill "$VPID" 2>/dev/null || true; wait "$VPID" 2>/dev/null || true; VPID=""; }
conf() { # conf DIR PPORT HPORT
    sed -i "/^\[provisioning\]/,/^\[/ s/^listen = .*/listen = 127.0.0.1:$2/; \
/^\[hub\]/,\$ s/^listen = .*/listen = 127.0.0.1:$3/; s/^rate_per_ip = .*/rate_per_ip = 0/; \
s/^flap_connects = .*/flap_connects = 1000000/; s/^max_handshakes_per_ip = .*/max_handshakes_per_ip = 1000000/; \
s/^max_handshakes_per_net = .*/max_handshakes_per_net = 1000000/; s/^max_connections_per_net = .*/max_connections_per_net = 1000000/; \
s/^connect_rate_per_ip = .*/connect_rate_per_ip = 0/; s/^max_connections_per_ip = .*/max_connections_per_ip = 1000000/; \
s/^hello_timeout_ms = .*/hello_timeout_ms = 60000/; s/^handshake_timeout_ms = .*/handshake_timeout_ms = 60000/; \
s/^request_timeout_ms = .*/request_timeout_ms = 60000/; s/^connect_timeout_ms = .*/connect_timeout_ms = 60000/; \
s/^workers = .*/workers = 1/" "$1/d/keyfleet.conf"
}

# ---- provisioning ----
P="$WORK/prov"
mkdir -p "$P"
"$KF" --dir "$P/d" init >/dev/null
"$KF" --dir "$P/d" hub add --name hub-1 --endpoint hub-1.example:8883 >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/fca.key" \
    -out "$P/fca.pem" -subj /CN=bench-factory -days 30 -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=keyCertSign 2>/dev/null
code=$("$KF" --dir "$P/d" --json enrollment group create --name fab --ca "$P/fca.pem" |
    sed -n 's/.*"verification_code": *"\([^"]*\)".*/\1/p')
openssl req -new -key "$P/fca.key" -subj "/CN=$code" -out "$P/v.csr" 2>/dev/null
openssl x509 -req -in "$P/v.csr" -CA "$P/fca.pem" -CAkey "$P/fca.key" -days 1 -out "$P/v.pem" 2>/dev/null
"$KF" --dir "$P/d" enrollment group verify --name fab --cert "$P/v.pem" >/dev/null
PPORT=$(free_port)
conf "$P" "$PPORT" "$(free_port)"
start "$P"
callgrind_control -i on "$VPID" >/dev/null 2>&1
out=$("$BUILD/bench/prov_load" --connect "127.0.0.1:$PPORT" --cacert "$P/d/ca/root.crt" \
    --ca "$P/fca.pem" --ca-key "$P/fca.key" --prefix i --concurrency 4 --devices "$N" || true)
callgrind_control -d "$VPID" >/dev/null 2>&1
stop
ok=$(field "$out" ok)
echo "provisioning: enrollments=$ok failed=$(field "$out" failed) instructions_per_enrollment=$(($(counted "$P") / ${ok:-1}))"

# ---- the hub: resumed connections ----
H="$WORK/hub"
mkdir -p "$H"
"$KF" --dir "$H/d" init >/dev/null
HPORT=$(free_port)
conf "$H" "$(free_port)" "$HPORT"
start "$H"
"$BUILD/bench/hub_load" --connect "127.0.0.1:$HPORT" --cacert "$H/d/ca/root.crt" \
    --ca "$H/d/ca/issuing.crt" --ca-key "$H/d/ca/issuing.key" --mode connect --devices "$N" \
    --concurrency 4 --resume --announce 2>&1 |
    while IFS= read -r line; do
        case "$line" in *"timed pass starts"*) callgrind_control -i on "$VPID" >/dev/null 2>&1 ;; esac
        echo "$line" >>"$H/load.out"
    done
callgrind_control -d "$VPID" >/dev/null 2>&1
stop
out=$(tail -1 "$H/load.out")
echo "hub: resumed=$(field "$out" resumed) failed=$(field "$out" failed) instructions_per_resumed_connection=$(($(counted "$H") / N))"
