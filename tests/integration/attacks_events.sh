#!/bin/bash
# Attacks on the security-event store.
#  1. One device floods refused SUBSCRIBE filters (each was a stored hub.acl_denied event, 256 to
#     a packet, outside the message rates: 233,000 events in 4 s, and registrations got 503).
#     Now SUBSCRIBE counts against the rates, repeats are aggregated into one event with a count
#     per interval, and events have a store queue of their own: enrollments go on meanwhile.
#  2. One device writes valid events of its own as fast as it can: a per-device event rate (a
#     refused one gets MQTT 5 reason 0x97) and a retention policy (age and rows).
#  3. Unauthenticated peers write events (handshakes without a certificate, registrations without
#     one, certificates that claim another device's name): an identity that did not verify is
#     recorded as claimed, never as the device, and refusals are aggregated per source.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set hub rate_action drop # the attacker keeps its connection: the harder case
start_kfd || exit 1
provision dev-f
provision dev-e
provision dev-1
events_of() { sqlite3 "$D/keyfleet.db" "SELECT count(*) FROM security_events WHERE type = '$1'"; }
flood() { # flood WHO VERSION SECONDS PACKET: mqtt_flood.py as WHO; its line in FLOOD
    local who=$1 cert key
    shift
    if [ "$who" = - ]; then cert=- key=-; else cert=$T/$who.op.pem key=$T/$who.op.key; fi
    FLOOD=$(python3 "$(dirname "$0")/mqtt_flood.py" "$HUB_PORT" "$D/ca/root.crt" "$cert" "$key" \
        "$who" "$@" 2>&1)
}
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$FLOOD"; }

# ---- 1. refused SUBSCRIBE filters, as fast as one device can ----
sub=$(python3 -c '
f = b"".join(len(b"zz/%d" % i).to_bytes(2, "big") + b"zz/%d" % i + b"\x00" for i in range(256))
body = b"\x00\x01" + f
n, v = len(body), b""
while True:
    b, n = n % 128, n // 128
    v += bytes([b | (128 if n else 0)])
    if not n: break
print((b"\x82" + v + body).hex())')
db_size() { cat "$D/keyfleet.db" "$D/keyfleet.db-wal" 2>/dev/null | wc -c; }
db_before=$(db_size)
acl_before=$(events_of hub.acl_denied)
# registrations from another address while the flood runs: none may be refused
(
    for n in $(seq 1 20); do
        fdev "reg-$n" fca
        ocsr "reg-$n"
        jq -n --rawfile csr "$T/reg-$n.op.csr" '{csr: $csr}' >"$T/reg-$n.json"
        curl -s -o /dev/null -w '%{http_code}\n' --cacert "$D/ca/root.crt" --cert "$T/reg-$n.pem" \
            --key "$T/reg-$n.key" -H 'Content-Type: application/json' \
            --data-binary @"$T/reg-$n.json" "https://127.0.0.1:$KFD_PORT/api/v1/register"
        sleep 0.1
    done >"$T/regs.out"
) &
REGS=$!
SRC=127.0.3.1 flood dev-f 4 4 "$sub"
wait "$REGS"
echo "flood: $FLOOD"
check "the device sent many SUBSCRIBEs ($(field sent))" test "$(field sent)" -gt 100
equals "every registration during the flood succeeded" "$(sort -u "$T/regs.out" | tr '\n' ' ')" "200 "
check "over the rate, SUBSCRIBEs were refused with SUBACK failure codes" test "$(field reason80)" -gt 0
sleep 12 # one aggregation interval, for the summaries
stored=$(($(events_of hub.acl_denied) - acl_before))
check "hub.acl_denied events stored: $stored (aggregated, not one per filter)" test "$stored" -ge 1 -a "$stored" -le 6
check "an aggregated event counts the repeats" event_with hub.acl_denied \
    '.device == "dev-f" and .detail.repeats > 100 and .detail.interval_s == 10'
check "SUBSCRIBE counted against the rates: hub.rate_limited subscribe" event_with hub.rate_limited \
    '.device == "dev-f" and .detail.limit == "subscribe"'
grow=$(($(db_size) - db_before))
check "the database grew by $grow bytes (< 2 MB)" test "$grow" -lt 2000000

# ---- 2. a device's own events, as fast as it can ----
evpub=$(python3 -c '
import json
t = b"devices/dev-e/events"
p = json.dumps({"type": "device.test", "severity": "info", "detail": {"n": 1}}).encode()
body = len(t).to_bytes(2, "big") + t + b"\x00\x01" + b"\x00" + p
print((bytes([0x32, len(body)]) + body).hex())')
before=$(events_of device.test)
flood dev-e 5 3 "$evpub"
echo "device events: $FLOOD"
stored=$(($(events_of device.test) - before))
check "of $(field sent) device events, $stored were stored (burst 20 + 1/s)" test "$stored" -ge 20 -a "$stored" -le 26
check "the rest were refused with PUBACK 0x97 quota exceeded ($(field reason97))" test "$(field reason97)" -gt 10
check "hub.rate_limited device_events" event_with hub.rate_limited \
    '.device == "dev-e" and .detail.limit == "device_events"'
pub dev-e -t devices/dev-e/events -m '{"type":"device.later","severity":"info"}' -q 1
sleep 2.5
pub dev-e -t devices/dev-e/events -m '{"type":"device.later","severity":"info"}' -q 1
check "the rate refills: a later event is stored" event_with device.later '.device == "dev-e"'
# Retention: by age, and by rows.
now_ms=$(($(date +%s) * 1000))
sqlite3 "$D/keyfleet.db" "INSERT INTO security_events (time_ms, type, severity, device, source, ip, detail) VALUES ($((now_ms - 40 * 86400000)), 'device.ancient', 'info', 'dev-e', 'device', '', '{}')"
equals "an event 40 days old is there" "$(events_of device.ancient)" 1
conf_set events max_rows 40
kill -HUP "$KFD_PID"
for _ in $(seq 1 150); do
    [ "$(sqlite3 "$D/keyfleet.db" 'SELECT count(*) FROM security_events')" -le 40 ] && break
    sleep 0.1
done
equals "retention_days (30): the old event is gone" "$(events_of device.ancient)" 0
check "max_rows: at most 40 events kept" test "$(sqlite3 "$D/keyfleet.db" 'SELECT count(*) FROM security_events')" -le 40
conf_set events max_rows 1000000
kill -HUP "$KFD_PID"

# ---- 3. unauthenticated peers ----
failed_before=$(events_of hub.auth_failed)
pids=
for a in 1 2 3 4 5; do
    (SRC=127.0.4.$a flood - 4 2 00; echo "$FLOOD" >"$T/nocert-$a.out") &
    pids="$pids $!"
done
wait $pids
handshakes=$(cat "$T"/nocert-*.out | sed -n 's/.*connections=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
check "handshakes without a certificate were made ($handshakes)" test "${handshakes:-0}" -gt 20
# a certificate that claims to be dev-1, from a CA keyfleet does not know
mkca evil
fdev dev-1 evil
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/spoof.key" \
    -out "$T/spoof.csr" -subj "/CN=dev-1" 2>/dev/null
printf 'subjectAltName=URI:urn:keyfleet:device:dev-1\n' >"$T/spoof.ext"
openssl x509 -req -in "$T/spoof.csr" -CA "$T/evil.pem" -CAkey "$T/evil.key" -days 3 \
    -extfile "$T/spoof.ext" -out "$T/spoof.pem" 2>/dev/null
for n in 1 2 3 4 5 6 7 8; do
    SRC=127.0.5.1 timeout 10 python3 "$(dirname "$0")/mqtt_raw.py" "$HUB_PORT" "$D/ca/root.crt" \
        "$T/spoof.pem" "$T/spoof.key" c4:dev-1 >/dev/null 2>&1
done
for n in $(seq 1 30); do register "" "" "$T/dev-f.op.csr"; done
equals "a registration without a certificate is refused" "$HTTP" 401
register "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-f.op.csr"
sleep 11.5
stored=$(($(events_of hub.auth_failed) - failed_before))
check "hub.auth_failed stored: $stored for $handshakes handshakes from 5 addresses and 8 spoofs" \
    test "$stored" -le 14
check "the spoofed certificate's name is recorded as claimed, not as the device" \
    event_with hub.auth_failed '.claimed == "dev-1" and .device == "" and .ip == "127.0.5.1"'
kf events list --json
equals "no refusal names dev-1 as the device" \
    "$(jq '[.[] | select(.type == "hub.auth_failed" and .device == "dev-1")] | length' <<<"$OUT")" 0
check "the spoof's repeats are counted in one event" event_with hub.auth_failed \
    '.claimed == "dev-1" and .detail.repeats >= 6'
equals "registrations without a certificate: one event and one summary at most" \
    "$(jq '[.[] | select(.type == "provisioning.denied" and .detail.reason == "client_certificate_required")] | length' <<<"$OUT")" 2
check "a factory certificate from an unknown CA: the id is claimed" event_with provisioning.denied \
    '.claimed == "dev-1" and .device == "" and .detail.reason == "enrollment_not_found"'
contains "the hub's connect_rate_per_ip has a protective default" "$(cat "$D/keyfleet.conf")" \
    "connect_rate_per_ip = 50"

stop_kfd
finish
