#!/bin/bash
# Renewal with two-minute certificates: keyfleet-agent re-enrolls (EST simplereenroll) at
# renewAfter, switches its hub connection to the new certificate, and loses no telemetry on the
# way; when renewal fails it reports device.renewal_failed and keeps trying.
. "$(dirname "$0")/lib.sh"

ok "init" init
conf_set ca device_cert_minutes 2 || exit 1
start_kfd || exit 1
ok "hub" hub add --name hub-1 --endpoint "127.0.0.1:$HUB_PORT"
mkca fca
group_enroll factory fca
fdev dev-r fca
ok "reader service" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"

cat >"$T/count.sh" <<'EOF'
#!/bin/sh
n=$(cat "$1" 2>/dev/null || echo 0); n=$((n + 1)); echo $n >"$1"; echo "{\"n\": $n}"
EOF
chmod 755 "$T/count.sh"
agent_conf r "$T/dev-r.pem" "$T/dev-r.key" "user = root" "keep_alive = 10"
cat >>"$T/r.conf" <<EOF
[telemetry]
count = 1 $T/count.sh $T/count
EOF

# A persistent QoS 1 subscription: what the device sent reaches it even across the switch.
sub tel dash -t 'devices/dev-r/telemetry/count' -q 1 -c
start_agent r
ID=$T/r.data/identity.json
check "provisioned" wait_file "$ID"
equals "first certificate" "$(jq -r .generation "$ID")" 1
life=$(( $(date -d "$(jq -r .notAfter "$ID")" +%s) - $(date +%s) ))
check "the certificate lives two minutes" test "$life" -le 120 -a "$life" -ge 100
jq -r .certificate "$ID" >"$T/gen1.pem"

# renewAfter is two thirds into the life (about a minute from now), plus a little jitter
for _ in $(seq 1 100); do
    [ "$(jq -r .generation "$ID" 2>/dev/null)" = 2 ] && break
    sleep 1
done
equals "renewed at renewAfter" "$(jq -r .generation "$ID")" 2
jq -r .certificate "$ID" >"$T/gen2.pem"
check "a new certificate" test "$(openssl x509 -in "$T/gen1.pem" -noout -serial)" != "$(openssl x509 -in "$T/gen2.pem" -noout -serial)"
check "with a new key" test "$(openssl x509 -in "$T/gen1.pem" -noout -pubkey)" != "$(openssl x509 -in "$T/gen2.pem" -noout -pubkey)"
equals "same device" "$(openssl x509 -in "$T/gen2.pem" -noout -subject -nameopt RFC2253)" "$(openssl x509 -in "$T/gen1.pem" -noout -subject -nameopt RFC2253)"
check "the new certificate verifies" openssl verify -purpose sslclient -CAfile "$T/d/ca/root.crt" -untrusted "$T/gen2.pem" "$T/gen2.pem"
check_not "the old key is gone" test -e "$T/r.data/op-1.key"
check "the new key is there" test -e "$T/r.data/op-2.key"
check "the connection switched to it" wait_log r "switching to the renewed certificate"
at_switch=$(cat "$T/count")
for _ in $(seq 1 100); do
    [ "$(cat "$T/count")" -gt $((at_switch + 3)) ] && break
    sleep 0.1
done
check "and came back" wait_for tel "{\"n\": $((at_switch + 3))}"
check "the hub saw the new certificate" sh -c "test \$('$KF' --dir '$T/d' events list --type hub.connected --json | jq '[.[] | select(.detail.id == \"dev-r\")] | length') -ge 2"

# renewal that fails (keyfleetd down): reported, retried, and it works once keyfleetd is back
stop_kfd
kill -USR1 "$AGENT_PID"
check "the failure is queued as device.renewal_failed" sh -c "for _ in \$(seq 1 100); do grep -q device.renewal_failed '$T/r.data/events.log' && exit 0; sleep 0.1; done; exit 1"
REUSE_PORTS=1 start_kfd || exit 1
for _ in $(seq 1 100); do
    [ "$(jq -r .generation "$ID" 2>/dev/null)" = 3 ] && break
    sleep 0.2
done
equals "the retry renewed" "$(jq -r .generation "$ID")" 3
check "device.renewal_failed reached the fleet" event_with device.renewal_failed '.device == "dev-r" and .detail.stage == "simplereenroll"'

kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
equals "clean exit" "$?" 0
sleep 1
kill "$SUB_tel" 2>/dev/null
wait "$SUB_tel" 2>/dev/null
last=$(cat "$T/count")
# what the subscriber got before keyfleetd's restart (its session lived in the hub's memory):
# every message up to the restart, none missing
got=$(grep -o '"n": [0-9]*' "$T/tel.out" | awk '{print $2}' | sort -n | uniq)
first_gap=$(echo "$got" | awk 'NR != $1 {print NR; exit}')
equals "no message lost across the switch (1..$((at_switch + 3)) all there)" \
    "$(echo "$got" | awk -v m=$((at_switch + 3)) '$1 <= m' | wc -l)" "$((at_switch + 3))"
[ -n "$first_gap" ] && echo "first gap at $first_gap of $last (after keyfleetd restarted)"
finish
