#!/bin/sh
# `make run`: a deployment in ./keyfleet-data (made once, never overwritten), the simulator's
# factory CA enrolled as a group with proof of possession, keyfleetd started on it, a fleet of
# DEVICES (default 1,000) virtual devices run through provisioning and the hub by keyfleet-sim,
# a vendor-signed release rolled out to them in phases (UPDATE_FAIL percent of the devices fail
# to install it and UPDATE_UNCONFIRMED never confirm it, so the rollout pauses itself; the demo
# resumes it as an operator would), a summary, and keyfleetd kept serving until Ctrl-C.
set -eu
BUILD=${1:-build}
KF="$BUILD/src/cli/keyfleet"
KFD="$BUILD/src/server/keyfleetd"
SIM="$BUILD/src/sim/keyfleet-sim"
REL="$BUILD/src/release/keyfleet-release"
UPDATE_FAIL=${UPDATE_FAIL:-3}
UPDATE_UNCONFIRMED=${UPDATE_UNCONFIRMED:-1}
DEVICES=${DEVICES:-1000}
SIM_SECONDS=${SIM_SECONDS:-10}
DIR=${KEYFLEET_DIR:-keyfleet-data}
DEMO="$DIR/demo"

if [ -e "$DIR/keyfleet.conf" ]; then
    echo "Using the deployment in $DIR (keyfleet never overwrites one; for a fresh one:"
    echo "rm -rf $DIR && make run)."
else
    "$KF" --dir "$DIR" init
    "$KF" --dir "$DIR" hub add --name hub-1 --endpoint localhost:8883 >/dev/null
    # The simulator's whole fleet comes from this one address, which the defaults would treat as
    # one peer taking more than its share; a real fleet comes from many. For the demo only:
    sed -i "s/^max_handshakes_per_ip = .*/max_handshakes_per_ip = 1000000/; \
s/^max_handshakes_per_net = .*/max_handshakes_per_net = 1000000/; \
s/^connect_rate_per_ip = .*/connect_rate_per_ip = 0/; s/^rate_per_ip = .*/rate_per_ip = 0/; \
s/^flap_connects = .*/flap_connects = 1000/" "$DIR/keyfleet.conf"
    echo "The demo raised the per-address limits in $DIR/keyfleet.conf: the simulated fleet"
    echo "shares one address (see docs/security.md for the defaults a real deployment keeps)."
fi

# The demo manufacturer: the simulator's factory CA, enrolled as a group once it proved it holds
# the CA's key, and one more device with a factory certificate under it to try by hand.
if [ ! -e "$DEMO/demo-1.factory.pem" ]; then
    mkdir -p "$DEMO"
    chmod 700 "$DEMO"
    q() { "$@" >/dev/null 2>&1 || { echo "run: failed: $*" >&2; exit 1; }; }
    q "$SIM" --make-factory-ca --dir "$DEMO"
    code=$("$KF" --dir "$DIR" --json enrollment group create --name demo-factory \
        --ca "$DEMO/factory-ca.pem" | sed -n 's/.*"verification_code": *"\([^"]*\)".*/\1/p')
    [ -n "$code" ] || { echo "run: no verification code" >&2; exit 1; }
    q openssl req -new -key "$DEMO/factory-ca.key" -subj "/CN=$code" -out "$DEMO/pop.csr"
    q openssl x509 -req -in "$DEMO/pop.csr" -CA "$DEMO/factory-ca.pem" \
        -CAkey "$DEMO/factory-ca.key" -days 1 -out "$DEMO/pop.pem"
    q "$KF" --dir "$DIR" enrollment group verify --name demo-factory --cert "$DEMO/pop.pem"
    q openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$DEMO/demo-1.factory.key" -out "$DEMO/demo-1.factory.csr" -subj "/CN=demo-1"
    q openssl x509 -req -in "$DEMO/demo-1.factory.csr" -CA "$DEMO/factory-ca.pem" \
        -CAkey "$DEMO/factory-ca.key" -days 3650 -out "$DEMO/demo-1.factory.pem"
    rm -f "$DEMO/pop.csr" "$DEMO/pop.pem" "$DEMO/demo-1.factory.csr"
    echo "Enrolled the simulator's factory CA ($DEMO/factory-ca.pem) as group demo-factory."
fi

listen=$(sed -n '/^\[provisioning\]/,/^\[/ s/^listen = //p' "$DIR/keyfleet.conf")
hub_listen=$(sed -n '/^\[hub\]/,/^\[/ s/^listen = //p' "$DIR/keyfleet.conf")
port=${listen##*:}
URL="https://localhost:$port"

# keyfleetd in the background while the fleet comes alive, then in the foreground until Ctrl-C.
"$KFD" --dir "$DIR" >>"$DIR/keyfleetd.log" 2>&1 &
KFD_PID=$!
trap 'kill -TERM $KFD_PID 2>/dev/null; wait $KFD_PID 2>/dev/null; exit 0' INT TERM
i=0
until curl -s -o /dev/null --cacert "$DIR/ca/root.crt" "https://localhost:$port/healthz"; do
    i=$((i + 1))
    if ! kill -0 $KFD_PID 2>/dev/null || [ $i -gt 100 ]; then
        echo "run: keyfleetd did not start:" >&2
        tail -5 "$DIR/keyfleetd.log" >&2
        exit 1
    fi
    sleep 0.1
done
# The vendor, once: offline keys (without passphrases: a demo; docs/updates.md has the real
# ceremony), a root trusting this deployment's online keys, and release 2.0 for hardware "sim".
V="$DEMO/vendor"
if [ ! -e "$V/published" ]; then
    rm -rf "$V" # what a run cut short left
    mkdir -p "$V"
    chmod 700 "$V"
    q() { "$@" >/dev/null 2>&1 || { echo "run: failed: $*" >&2; exit 1; }; }
    "$KF" --dir "$DIR" --json release keys >"$V/online.json"
    jq -c .timestamp "$V/online.json" >"$V/ts.json"
    jq -c .snapshot "$V/online.json" >"$V/sn.json"
    q "$REL" keygen --out "$V/root.key" --no-passphrase
    q "$REL" keygen --out "$V/targets.key" --no-passphrase
    q "$REL" init-root --out "$V/root.json" --root "$V/root.key.pub" --root-threshold 1 \
        --targets "$V/targets.key.pub" --targets-threshold 1 --timestamp "$V/ts.json" \
        --snapshot "$V/sn.json"
    q "$REL" sign --key "$V/root.key" "$V/root.json"
    head -c 262144 /dev/urandom >"$V/fw-2.0.bin"
    q "$REL" targets --out "$V/targets.json" --image "$V/fw-2.0.bin" --name sim/fw-2.0.bin \
        --hardware sim --version 2
    q "$REL" sign --key "$V/targets.key" "$V/targets.json"
    q "$KF" --dir "$DIR" release add --root "$V/root.json" --targets "$V/targets.json" \
        --image "sim/fw-2.0.bin=$V/fw-2.0.bin"
    touch "$V/published"
    echo "The demo vendor signed release sim/fw-2.0.bin offline; keyfleet published it ($V)."
fi

# The fleet: keyfleet-sim in the background (its progress shown here), its devices' update
# state in a directory of this run (so that each run installs the release again).
echo "keyfleetd is up (log: $DIR/keyfleetd.log). Bringing $DEVICES simulated devices to life:"
STATE=$(mktemp -d)
"$SIM" --devices "$DEVICES" --provisioning "https://localhost:$port" --trust "$DIR/ca/root.crt" \
    --factory-ca "$DEMO/factory-ca.pem" --factory-ca-key "$DEMO/factory-ca.key" \
    --duration 3600 --dir "$STATE" --update-root "$V/root.json" --update-fail "$UPDATE_FAIL" \
    --update-unconfirmed "$UPDATE_UNCONFIRMED" >"$STATE/summary" 2>"$STATE/progress" &
SIM_PID=$!
trap 'kill -TERM $SIM_PID $KFD_PID 2>/dev/null; wait $KFD_PID 2>/dev/null; rm -rf "$STATE"; exit 0' INT TERM
shown=
i=0
while kill -0 $SIM_PID 2>/dev/null; do
    line=$(grep identities "$STATE/progress" 2>/dev/null | tail -n 1)
    [ -n "$line" ] && [ "$line" != "$shown" ] && echo "  $line" && shown=$line
    case "$line" in *"connected $DEVICES "*) break ;; esac
    i=$((i + 1))
    [ $i -gt 1200 ] && break
    sleep 0.5
done
sleep "$SIM_SECONDS"

# The rollout: 1%, 10%, 50%, then all, each phase soaking 3 seconds, pausing over 2% failures.
if kill -0 $SIM_PID 2>/dev/null; then
    n=1
    while [ $n -le "$DEVICES" ]; do
        printf 'sim-%04d\n' $n
        n=$((n + 1))
    done >"$STATE/ids"
    out=$("$KF" --dir "$DIR" rollout create --release sim/fw-2.0.bin --devices "$STATE/ids" \
        --phases 1,10,50,100 --soak 3s --max-failures 2%) || out=
    id=$(echo "$out" | sed -n 's/^rollout \([0-9]*\):.*/\1/p')
fi
if [ -n "${id:-}" ]; then
    echo "$out"
    shown=
    i=0
    while [ $i -lt 600 ]; do
        j=$("$KF" --dir "$DIR" rollout show "$id" --json) || j='{}'

        line=$(echo "$j" | jq -r '"  rollout \(.id): phase \(.phase) of \(.phases | length), offered \(.offered) of \(.devices), confirmed \(.counts.confirmed), failed \(.counts.failed), reverted \(.counts.reverted)  [\(.state)]"')
        [ "$line" != "$shown" ] && echo "$line" && shown=$line
        state=$(echo "$j" | jq -r '.state // "?"')
        if [ "$state" = paused ]; then
            echo "  rollout $id paused itself: $(echo "$j" | jq -r .reason)"
            echo "  (the demo resumes it, as an operator who has looked at the failures would:"
            echo "   $KF --dir $DIR rollout resume $id)"
            "$KF" --dir "$DIR" rollout resume "$id" >/dev/null || true
        fi
        # completed: once every device has said how it went (or 20 seconds more)
        if [ "$state" = completed ]; then
            left=$(echo "$j" | jq '.counts.pending + .counts.downloading + .counts.verified + .counts.installing + .counts.installed')
            [ "$left" -eq 0 ] && break
            done_at=${done_at:-$i}
            [ $((i - done_at)) -gt 40 ] && break
        fi
        i=$((i + 1))
        sleep 0.5
    done
    echo "Rollout $id: see $KF --dir $DIR rollout show $id"
    "$KF" --dir "$DIR" rollout show "$id" | sed 's/^/  /' || true
else
    echo "run: no rollout (the fleet did not come up)"
fi
kill -TERM $SIM_PID 2>/dev/null
wait $SIM_PID || echo "run: some simulated devices did not make it (see above)"
grep identities "$STATE/progress" | tail -n 1 | sed 's/^/  /'
cat "$STATE/summary"
rm -rf "$STATE"
trap 'kill -TERM $KFD_PID 2>/dev/null; wait $KFD_PID 2>/dev/null; exit 0' INT TERM
cat <<EOF

keyfleetd serves provisioning at $URL (listen = $listen):
  GET  /.well-known/est/cacerts         the CA certificates (EST)
  GET  /.well-known/est/csrattrs        what a CSR should hold
  POST /.well-known/est/simpleenroll    a first certificate, factory identity in TLS
  POST /.well-known/est/simplereenroll  a renewal, current certificate in TLS
  POST /api/v1/register                 one round trip: device id, hub, certificate, trust
  GET  /healthz, /metrics

Enroll the demo device by hand, in another shell:
  cd $DEMO
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout demo-1.key \\
      -subj /CN=demo-1 -out demo-1.csr
  jq -n --rawfile csr demo-1.csr '{csr: \$csr}' | curl -s --cacert ../ca/root.crt \\
      --cert demo-1.factory.pem --key demo-1.factory.key \\
      -H 'Content-Type: application/json' --data-binary @- $URL/api/v1/register |
      tee demo-1.json | jq .
  # or with EST:
  openssl req -in demo-1.csr -outform DER | openssl base64 | curl -s --cacert ../ca/root.crt \\
      --cert demo-1.factory.pem --key demo-1.factory.key -H 'Content-Type: application/pkcs10' \\
      --data-binary @- $URL/.well-known/est/simpleenroll | openssl base64 -d |
      openssl pkcs7 -inform DER -print_certs
Then: $KF --dir $DIR device list, ... audit verify, ... events list

The hub serves MQTT 3.1.1 and 5.0 over mutual TLS (listen = $hub_listen). With the
certificate the register call returned, the device sends telemetry to a service that reads it:
  jq -r .certificate demo-1.json >demo-1.pem
  $KF --dir $DIR service add --name dash --role reader --key-out dash.key --out dash.pem
  mosquitto_sub -h localhost -p ${hub_listen##*:} --cafile ../ca/root.crt --cert dash.pem \\
      --key dash.key -i dash -t 'devices/+/telemetry/#' -v &
  mosquitto_pub -h localhost -p ${hub_listen##*:} --cafile ../ca/root.crt --cert demo-1.pem \\
      --key demo-1.key -i demo-1 -t devices/demo-1/telemetry -m '{"t":21.5}'

EOF
cat <<EOF

Explore what just happened:
  $KF --dir $DIR device list             the fleet, each device with its hub
  $KF --dir $DIR rollout list            the rollout, phase by phase (docs/updates.md)
  $KF --dir $DIR events list             security events (the devices' own, and the hub's)
  $KF --dir $DIR audit verify            the audit chain of every certificate issued
  curl -s --cacert $DIR/ca/root.crt https://localhost:$port/metrics | grep keyfleet_
A real device: $BUILD/src/agent/keyfleet-agent --config FILE (docs/device-sdk.md).

keyfleetd keeps serving; Ctrl-C stops it.
EOF
wait $KFD_PID
