#!/bin/bash
# updates_vs_nginx.sh BUILD: update image downloads, keyfleetd beside Debian's nginx in one run.
#
# CLIENTS devices (default 100) download a 16 MiB image at once over mutual TLS 1.3: from
# keyfleetd's provisioning listener (/updates/targets/..., the device's certificate checked
# against the registry), and the same file from nginx on loopback with the same server
# certificate and key, client certificates required (ssl_verify_client on, the deployment's
# root), as many worker processes as keyfleetd has workers. Rounds alternate between the two.
# Each round prints the transfer's throughput, the server's CPU per download (from /proc) and
# its memory growth per download (peak RSS during the round less idle RSS).
#
#   BENCH_CLIENTS=100 BENCH_ROUNDS=3 sh bench/updates_vs_nginx.sh build-bench
set -eu
BUILD=$1
CLIENTS=${BENCH_CLIENTS:-100}
ROUNDS=${BENCH_ROUNDS:-3}
SIZE=$((16 * 1024 * 1024))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kfdl-XXXXXX")
KF="$BUILD/src/cli/keyfleet"
KFD="$BUILD/src/server/keyfleetd"
R="$BUILD/src/release/keyfleet-release"
LOAD="$BUILD/bench/dl_load"
KPID=""
NPID=""
cleanup() {
    [ -n "$KPID" ] && kill "$KPID" 2>/dev/null
    [ -n "$NPID" ] && kill "$NPID" 2>/dev/null
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT
command -v nginx >/dev/null || { echo "nginx is not installed (scripts/deps.sh)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
D=$WORK/d
V=$WORK/vendor
mkdir -p "$V"

# ---- a deployment with one release ----
"$KF" --dir "$D" init >/dev/null
"$KF" --dir "$D" release keys --json >"$V/keys.json"
jq -c .timestamp "$V/keys.json" >"$V/ts.json"
jq -c .snapshot "$V/keys.json" >"$V/sn.json"
"$R" keygen --out "$V/root.key" --no-passphrase >/dev/null
"$R" keygen --out "$V/tg.key" --no-passphrase >/dev/null
"$R" init-root --out "$V/root.json" --root "$V/root.key.pub" --root-threshold 1 \
    --targets "$V/tg.key.pub" --targets-threshold 1 --timestamp "$V/ts.json" --snapshot "$V/sn.json" >/dev/null
"$R" sign --key "$V/root.key" "$V/root.json" >/dev/null
head -c "$SIZE" /dev/urandom >"$WORK/image.bin"
SHA=$(sha256sum "$WORK/image.bin" | cut -d' ' -f1)
"$R" targets --out "$V/t.json" --image "$WORK/image.bin" --name image.bin --hardware bench --version 1 >/dev/null
"$R" sign --key "$V/tg.key" "$V/t.json" >/dev/null
"$KF" --dir "$D" release add --root "$V/root.json" --targets "$V/t.json" --image "image.bin=$WORK/image.bin" >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/dev.key" \
    -out "$WORK/dev.csr" -subj "/CN=bench-1" 2>/dev/null
"$KF" --dir "$D" cert issue --device bench-1 --csr "$WORK/dev.csr" --out "$WORK/dev.pem" >/dev/null

# ---- keyfleetd: the whole fleet comes from 127.0.0.1 here, so its per-address budgets go up ----
KPORT=$(free_port)
conf() { sed -i "/^\[$1\]/,/^\[/ s|^$2 = .*|$2 = $3|" "$D/keyfleet.conf"; }
conf provisioning listen "127.0.0.1:$KPORT"
conf hub listen off
conf provisioning max_handshakes_per_ip 100000
conf provisioning max_handshakes_per_net 100000
conf provisioning max_connections_per_ip 100000
conf provisioning max_connections_per_net 100000
conf provisioning max_handshakes 100000
conf provisioning rate_per_ip 0
conf provisioning max_downloads 100000
KEYFLEET_LOG=warn "$KFD" --dir "$D" >"$WORK/kfd.log" 2>&1 &
KPID=$!
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$D/ca/root.crt" "https://127.0.0.1:$KPORT/healthz" && break; sleep 0.05; done
WORKERS=$(nproc)

# ---- nginx: the same file, certificates and TLS version ----
NPORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
user root root;
worker_processes $WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NPORT ssl;
        ssl_certificate $D/server/server.crt;
        ssl_certificate_key $D/server/server.key;
        ssl_protocols TLSv1.3;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_client_certificate $D/ca/root.crt;
        location /updates/targets/ { alias $D/updates/repo/targets/; }
    }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NPID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$D/ca/root.crt" --cert "$WORK/dev.pem" --key "$WORK/dev.key" \
        "https://127.0.0.1:$NPORT/updates/targets/$SHA.image.bin" && break
    sleep 0.05
done

# CPU ticks of a process and its children's threads (nginx: master and workers)
ticks() {
    local t=0 p
    for p in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
rss_kb() {
    local t=0 p
    for p in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
        t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
# round NAME PID PORT: one round of CLIENTS downloads; prints NAME mib_per_s cpu_ms_per_download kib_per_download
round() {
    local name=$1 pid=$2 port=$3 t0 t1 idle peak out sampler
    idle=$(rss_kb "$pid")
    echo 0 >"$WORK/peak"
    (while :; do r=$(rss_kb "$pid"); [ "$r" -gt "$(cat "$WORK/peak")" ] && echo "$r" >"$WORK/peak"; sleep 0.05; done) &
    sampler=$!
    t0=$(ticks "$pid")
    out=$("$LOAD" --connect "127.0.0.1:$port" --path "/updates/targets/$SHA.image.bin" \
        --cacert "$D/ca/root.crt" --cert "$WORK/dev.pem" --key "$WORK/dev.key" \
        --clients "$CLIENTS" --length "$SIZE" --sha256 "$SHA")
    t1=$(ticks "$pid")
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null || true
    peak=$(cat "$WORK/peak")
    echo "$out" | grep -q "failed=0" || { echo "$name: $out" >&2; exit 1; }
    echo "$name $(echo "$out" | sed 's/.*mib_per_s=//') $(( (t1 - t0) * 1000 / HZ * 1000 / CLIENTS / 1000 )) $(( (peak - idle) / CLIENTS ))"
}
echo "clients=$CLIENTS image=16MiB rounds=$ROUNDS workers=$WORKERS (keyfleetd and nginx) cores=$(nproc)"
echo "server mib_per_s cpu_ms_per_download rss_kib_per_download"
for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) -eq 1 ]; then
        round keyfleetd "$KPID" "$KPORT"
        round nginx "$NPID" "$NPORT"
    else
        round nginx "$NPID" "$NPORT"
        round keyfleetd "$KPID" "$KPORT"
    fi
done | tee "$WORK/rounds"
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
k=$(awk '$1=="keyfleetd" {print $2}' "$WORK/rounds" | median)
n=$(awk '$1=="nginx" {print $2}' "$WORK/rounds" | median)
kc=$(awk '$1=="keyfleetd" {print $3}' "$WORK/rounds" | median)
nc=$(awk '$1=="nginx" {print $3}' "$WORK/rounds" | median)
km=$(awk '$1=="keyfleetd" {print $4}' "$WORK/rounds" | median)
nm=$(awk '$1=="nginx" {print $4}' "$WORK/rounds" | median)
echo "median: keyfleetd $k MiB/s, nginx $n MiB/s, ratio $(awk -v a="$k" -v b="$n" 'BEGIN {printf "%.2f", a / b}')x;" \
    "CPU per download keyfleetd $kc ms, nginx $nc ms; memory per download keyfleetd $km KiB, nginx $nm KiB"
