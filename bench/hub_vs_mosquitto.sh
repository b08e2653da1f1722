#!/bin/sh
# The hub beside Mosquitto, on the same certificates, the same load generator and the same run.
# Called by bench/run.sh (BUILD WORK); prints a Markdown fragment.
set -eu
BUILD=$1
WORK=$2
KF="$BUILD/src/cli/keyfleet"
KFD="$BUILD/src/server/keyfleetd"
HL="$BUILD/bench/hub_load"
HD="$WORK/hub"
IDLE=${BENCH_IDLE:-10000}
mkdir -p "$HD"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
field() { printf ' %s\n' "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }

"$KF" --dir "$HD/d" init >/dev/null
"$KF" --dir "$HD/d" service add --name bench-sub --role reader --key-out "$HD/sub.key" \
    --out "$HD/sub.pem" >/dev/null
PPORT=$(free_port)
KPORT=$(free_port)
MPORT=$(free_port)
# keyfleetd: its defaults, except the limits a load generator on one address would trip.
sed -i "/^\[provisioning\]/,/^\[/ s/^listen = .*/listen = 127.0.0.1:$PPORT/; \
/^\[hub\]/,\$ s/^listen = .*/listen = 127.0.0.1:$KPORT/; s/^flap_connects = .*/flap_connects = 1000000/; \
s/^max_handshakes_per_ip = .*/max_handshakes_per_ip = 1000000/; s/^max_handshakes_per_net = .*/max_handshakes_per_net = 1000000/; \
s/^max_connections_per_net = .*/max_connections_per_net = 1000000/; s/^connect_rate_per_ip = .*/connect_rate_per_ip = 0/; s/^max_connections_per_ip = .*/max_connections_per_ip = 1000000/; \
s/^msg_rate = .*/msg_rate = 0/; s/^byte_rate = .*/byte_rate = 0/" "$HD/d/keyfleet.conf"
# Mosquitto at its best: client certificates, identity as user name, TCP_NODELAY, no persistence.
cat "$HD/d/ca/root.crt" "$HD/d/ca/issuing.crt" >"$HD/chain.pem"
cat >"$HD/mosquitto.conf" <<CONF
per_listener_settings false
# Run as the invoking user: the deployment files are 0600 (as root, Mosquitto would switch to
# its own user, which cannot read them).
user $(id -un)
persistence false
log_dest none
listener $MPORT 127.0.0.1
cafile $HD/chain.pem
certfile $HD/d/server/server.crt
keyfile $HD/d/server/server.key
require_certificate true
use_identity_as_username true
set_tcp_nodelay true
max_connections -1
CONF
# The same Mosquitto with persistence on (its defaults: the in-memory state is written to
# mosquitto.db every autosave_interval, 1800 s, and at exit), for the persistent-session run.
MPPORT=$(free_port)
mkdir -p "$HD/mp"
sed "s/^persistence false/persistence true\npersistence_location $(printf '%s' "$HD/mp/" | sed 's/[\/&]/\\&/g')/; s/^listener $MPORT /listener $MPPORT /" \
    "$HD/mosquitto.conf" >"$HD/mosquitto-persist.conf"
ulimit -n 65536 2>/dev/null || true

# A second keyfleetd on the same deployment, resuming with stateless tickets instead of the
# session cache (hub tls_resumption = tickets): the other side of that trade, same run.
TPORT=$(free_port)
TPPORT=$(free_port)
sed "/^\[provisioning\]/,/^\[/ s/^listen = .*/listen = 127.0.0.1:$TPPORT/; \
/^\[hub\]/,\$ s/^listen = .*/listen = 127.0.0.1:$TPORT/; s/^tls_resumption = .*/tls_resumption = tickets/" \
    "$HD/d/keyfleet.conf" >"$HD/tickets.conf"
KEYFLEET_LOG=warn "$KFD" --dir "$HD/d" >"$HD/kfd.log" 2>&1 &
KFD_PID=$!
KEYFLEET_LOG=warn "$KFD" --dir "$HD/d" --config "$HD/tickets.conf" >"$HD/kfdt.log" 2>&1 &
KFDT_PID=$!
mosquitto -c "$HD/mosquitto.conf" >"$HD/mosq.log" 2>&1 &
MOSQ_PID=$!
mosquitto -c "$HD/mosquitto-persist.conf" >"$HD/mosqp.log" 2>&1 &
MOSQP_PID=$!
trap 'kill $KFD_PID $KFDT_PID $MOSQ_PID $MOSQP_PID 2>/dev/null || true' EXIT
sleep 1
kill -0 "$KFD_PID" && kill -0 "$KFDT_PID" && kill -0 "$MOSQ_PID" && kill -0 "$MOSQP_PID" ||
    { cat "$HD/kfd.log" "$HD/kfdt.log" "$HD/mosq.log" "$HD/mosqp.log" >&2; exit 1; }

load() { # load PORT ARGS...
    p=$1
    shift
    "$HL" --connect "127.0.0.1:$p" --cacert "$HD/d/ca/root.crt" --ca "$HD/d/ca/issuing.crt" \
        --ca-key "$HD/d/ca/issuing.key" "$@" || true
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

echo
echo "### Hub vs Mosquitto $(mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p'), same certificates, same load generator, same run"
echo
echo "Mosquitto: require_certificate, use_identity_as_username, set_tcp_nodelay, persistence off."
echo "keyfleetd: its defaults (2 workers), flapping and rate limits off for the one-address load."
echo "The load generator (bench/hub_load, one thread) shares the $(nproc) cores."
echo
echo "| measure | keyfleetd hub | Mosquitto | keyfleet / Mosquitto |"
echo "|---|---:|---:|---:|"
# Memory first, on brokers that have served nothing yet: a broker's heap keeps what earlier
# runs freed, and measuring on a warm heap would hide the connections' cost.
idle() { # idle PORT PID: bytes per idle connection at $IDLE connections
    p=$1
    pid=$2
    before=$(rss_kb "$pid")
    load "$p" --mode idle --devices "$IDLE" --concurrency 200 --seconds 6 >"$HD/idle.out" &
    lp=$!
    for _ in $(seq 1 600); do grep -q '^ready' "$HD/idle.out" 2>/dev/null && break; sleep 0.1; done
    sleep 2
    after=$(rss_kb "$pid")
    wait "$lp" || true
    awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }'
}
k=$(idle "$KPORT" "$KFD_PID")
t=$(idle "$TPORT" "$KFDT_PID")
m=$(idle "$MPORT" "$MOSQ_PID")
echo "| memory per idle mTLS connection at $IDLE connections, bytes of RSS | $k | $m | $(ratio "$k" "$m") |"
echo "| the same, keyfleetd with tls_resumption = tickets | $t | $m | $(ratio "$t" "$m") |"
# A storm, with the broker's CPU (user + system, read by the generator from /proc over the timed
# pass only) and the generator's own, per connection.
storm() { # storm PORT PID [--resume]: sets rate, broker_us, gen_us
    out=$(load "$1" --mode connect --devices 4000 --concurrency 200 --broker-pid "$2" ${3:-})
    rate=$(field "$out" connects_per_s)
    gen_us=$(field "$out" generator_cpu_us)
    broker_us=$(field "$out" broker_cpu_us)
}
# The machine's speed drifts by a third within minutes: the storms run in ROUNDS interleaved
# rounds (keyfleetd, Mosquitto, keyfleetd, ...) and each figure is the median, with the range.
ROUNDS=${BENCH_ROUNDS:-3}
med() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { printf "%s", v[int((NR + 1) / 2)] }'; }
spread() { # spread "LIST": "median (min–max)"
    printf '%s' "$1" | tr ' ' '\n' | grep . | sort -n |
        awk '{ v[NR] = $1 } END { if (NR > 1) printf "%s (%s–%s)", v[int((NR + 1) / 2)], v[1], v[NR]; else printf "%s", v[1] }'
}
# The floor is measured in the same rounds (see the ceiling below).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$HD/floor.key" \
    -out "$HD/floor.csr" -subj /CN=floor-1 2>/dev/null
openssl x509 -req -in "$HD/floor.csr" -CA "$HD/d/ca/issuing.crt" -CAkey "$HD/d/ca/issuing.key" \
    -days 1 -out "$HD/floor.pem" 2>/dev/null
floors=""
for resume in "" "--resume"; do
    ks="" ms="" kus="" mus="" kgs="" mgs=""
    for _ in $(seq 1 "$ROUNDS"); do
        storm "$KPORT" "$KFD_PID" $resume
        ks="$ks $rate" kus="$kus $broker_us" kgs="$kgs $gen_us"
        storm "$MPORT" "$MOSQ_PID" $resume
        ms="$ms $rate" mus="$mus $broker_us" mgs="$mgs $gen_us"
        if [ -z "$resume" ]; then
            # A bare mutual-TLS handshake over loopback TCP, both ends (the ceiling, below).
            f=$("$(dirname "$HL")/tls_floor" --tcp "$HD/d/server/server.crt" \
                "$HD/d/server/server.key" "$HD/floor.pem" "$HD/floor.key" "$HD/d/ca/root.crt" \
                2000 "$HD/d/ca/issuing.crt")
            floors="$floors $(field " $f" pair_us)"
        fi
    done
    k=$(printf '%s' "$ks" | med) m=$(printf '%s' "$ms" | med)
    k_us=$(printf '%s' "$kus" | med) m_us=$(printf '%s' "$mus" | med)
    [ -n "$resume" ] || { m_full=$m; k_full=$k; }
    what="reconnect storm from zero, mTLS connects/s (4,000 devices, 200 at a time${resume:+, TLS resumed}; median of $ROUNDS)"
    echo "| $what | $(spread "$ks") | $(spread "$ms") | $(ratio "$k" "$m") |"
    echo "| … broker CPU per connection, µs (user + system) | $(spread "$kus") | $(spread "$mus") | $(ratio "$k_us" "$m_us") |"
    echo "| … load generator CPU per connection, µs | $(spread "$kgs") | $(spread "$mgs") | |"
done
t=$(field "$(load "$TPORT" --mode connect --devices 4000 --concurrency 200)" connects_per_s)
t=$(field "$(load "$TPORT" --mode connect --devices 4000 --concurrency 200 --resume)" connects_per_s)
echo "| the resumed storm, keyfleetd with tls_resumption = tickets | $t | $m | $(ratio "$t" "$m") |"
for qos in 0 1; do
    k=$(field "$(load "$KPORT" --mode publish --qos $qos --devices 100 --seconds 5 --window 10 \
        --sub-cert "$HD/sub.pem" --sub-key "$HD/sub.key" --sub-id bench-sub)" delivered_per_s)
    m=$(field "$(load "$MPORT" --mode publish --qos $qos --devices 100 --seconds 5 --window 10 \
        --sub-cert "$HD/sub.pem" --sub-key "$HD/sub.key" --sub-id bench-sub)" delivered_per_s)
    echo "| QoS $qos messages/s delivered to one subscriber (100 devices publishing, 5 s) | $k | $m | $(ratio "$k" "$m") |"
done
# Persistence on in both: the subscriber's session outlives its connection, so keyfleetd
# commits every QoS 1 message to its store before it acknowledges or delivers it (group
# commit), and Mosquitto (persistence true) keeps it in memory until its next autosave.
k=$(field "$(load "$KPORT" --mode publish --qos 1 --devices 100 --seconds 5 --window 10 \
    --sub-cert "$HD/sub.pem" --sub-key "$HD/sub.key" --sub-id bench-sub --persistent)" delivered_per_s)
m=$(field "$(load "$MPPORT" --mode publish --qos 1 --devices 100 --seconds 5 --window 10 \
    --sub-cert "$HD/sub.pem" --sub-key "$HD/sub.key" --sub-id bench-sub --persistent)" delivered_per_s)
echo "| QoS 1 messages/s delivered to a persistent session (100 devices, 10 in flight each), persistence on: keyfleetd durable before the PUBACK, Mosquitto \`persistence true\` | $k | $m | $(ratio "$k" "$m") |"

# The ceiling under the full-handshake storm on this machine: a bare OpenSSL mutual-TLS handshake
# over a fresh loopback TCP connection, both ends in one thread (bench/tls_floor --tcp), the
# server checking the client's chain as both brokers do, and nothing else (no MQTT). A broker
# sharing these cores with an OpenSSL client cannot connect more devices a second than the cores
# divided by that cost.
# The fastest of the rounds: noise only ever adds to it.
pair_us=$(printf '%s\n' $floors | sort -n | head -1)
cores=$(nproc)
echo
awk -v p="$pair_us" -v c="$cores" -v m="$m_full" -v k="$k_full" 'BEGIN {
    cap = c * 1e6 / p
    printf "Ceiling in the same run: a bare mutual-TLS 1.3 handshake over a fresh loopback TCP connection, both ends, the server checking the client chain and doing nothing else (bench/tls_floor --tcp), costs %.0f µs of CPU (the fastest of the rounds). With the load generator on the same %d cores no broker can exceed %.0f full-handshake connects/s: %.2fx the %d/s Mosquitto reached above (median) on one core. keyfleetd reached %d/s, %.0f%% of that ceiling; 2x Mosquitto would be %.0f%% of it.\n", p, c, cap, cap / m, m, k, 100 * k / cap, 200 * m / cap }'
