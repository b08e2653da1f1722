#!/bin/bash
# The hub to the letter of the MQTT and TLS specifications, through the real listener: a TLS
# close_notify (and a record that cannot decrypt) from a client that keeps TCP open, on
# connections carried by keyfleet's own record layer and by OpenSSL; overlapping subscriptions
# with subscription identifiers (MQTT-3.3.4-4/5); an empty client id with CleanSession=0 in
# MQTT 3.1.1 (MQTT-3.1.3-8). docs/hub.md lists the statements and points here.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set hub flap_connects 100000
KFD_LOG=debug start_kfd || exit 1
provision dev-1
provision dev-2
ok "a reader" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"

close_as() { # close_as WHO MODE: mqtt_close.py as a provisioned device; output in CLOSE
    CLOSE=$(timeout 30 python3 "$(dirname "$0")/mqtt_close.py" "$HUB_PORT" "$D/ca/root.crt" \
        "$T/$1.op.pem" "$T/$1.op.key" "$2" "$1" "devices/$1/telemetry/will" 2>&1)
}
offloaded() { grep -c "TLS records taken over from OpenSSL.*id=dev-1" "$T/kfd.log"; }

for offload in on off; do
    if [ "$offload" = off ]; then
        stop_kfd
        conf_set hub tls_offload 0 || exit 1
        REUSE_PORTS=1 KFD_LOG=debug start_kfd || exit 1
    fi
    before=$(offloaded)
    sub wills dash -t 'devices/dev-1/telemetry/will' -v
    # close_notify, TCP left open: answered at once with ours, the will goes, TCP closes.
    close_as dev-1 close_notify
    contains "offload $offload: close_notify is answered with close_notify" "$CLOSE" "answered close_notify"
    contains "offload $offload: and the hub closes TCP" "$CLOSE" "tcp closed"
    check "offload $offload: the will is sent" wait_for wills "devices/dev-1/telemetry/will gone"
    if [ "$offload" = on ]; then
        check "offload on: that connection was carried by keyfleet's record layer" test "$(offloaded)" -gt "$before"
    else
        equals "offload off: carried by OpenSSL" "$(offloaded)" "$before"
    fi
    kill "$SUB_wills" 2>/dev/null
    # A record that cannot decrypt: bad_record_mac, the will, TCP closed.
    before=$(offloaded)
    sub wills dash -t 'devices/dev-1/telemetry/will' -v
    close_as dev-1 bad_record
    contains "offload $offload: a bad record is answered with bad_record_mac" "$CLOSE" "alert: SSLV3_ALERT_BAD_RECORD_MAC"
    contains "offload $offload: and TCP closes" "$CLOSE" "tcp closed"
    check "offload $offload: the will is sent after a bad record" wait_for wills "devices/dev-1/telemetry/will gone"
    [ "$offload" = on ] && check "offload on: (carried by the record layer)" test "$(offloaded)" -gt "$before"
    kill "$SUB_wills" 2>/dev/null
done
contains "the refused record is logged" "$(cat "$T/kfd.log")" "TLS record refused"

# ---- overlapping subscriptions with subscription identifiers (MQTT 5) ----
sub5() { # sub5 PACKET_ID SUB_ID FILTER [QOS]: a SUBSCRIBE in hex
    python3 -c '
import sys
pid, sid, f, q = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
body = pid.to_bytes(2, "big") + bytes([2, 0x0B, sid]) + len(f).to_bytes(2, "big") + f + bytes([q])
print((bytes([0x82, len(body)]) + body).hex())' "$1" "$2" "$3" "${4:-0}"
}
# (both SUBSCRIBEs in one write, the publish well after their SUBACKs)
(sleep 2.5 && pub dev-2 -t devices/dev-2/telemetry/x -m hi -q 1) &
publisher=$!
RAW_WAIT=5 raw dash c5:dash "$(sub5 1 7 'devices/+/telemetry/#')$(sub5 2 9 'devices/dev-2/telemetry/x' 1)"
wait "$publisher"
publishes=$(grep '^3 ' <<<"$RAW")
equals "two subscriptions with two identifiers: two copies" "$(wc -l <<<"$publishes")" 2
check "one carries identifier 7" grep -q "0b07" <<<"$publishes"
check "the other identifier 9" grep -q "0b09" <<<"$publishes"
check "each carries one identifier only" sh -c "! grep -q '0b07.*0b09\|0b09.*0b07' <<'EOF'
$publishes
EOF"
check "the copy for the QoS 1 subscription is QoS 1" grep -q "^3 32.*0b09" <<<"$publishes"
# The same identifier on both: one copy.
(sleep 2.5 && pub dev-2 -t devices/dev-2/telemetry/x -m hi -q 1) &
publisher=$!
RAW_WAIT=5 raw dash c5:dash "$(sub5 1 5 'devices/+/telemetry/#')$(sub5 2 5 'devices/dev-2/telemetry/#' 1)"
wait "$publisher"
equals "one identifier on both: one copy" "$(grep -c '^3 ' <<<"$RAW")" 1
check "at the higher QoS, with the identifier" grep -q "^3 32.*0b05" <<<"$RAW"

# ---- MQTT 3.1.1: an empty client id needs CleanSession=1 ----
raw dev-1 C4:
equals "empty client id, CleanSession=0: CONNACK 0x02 (identifier rejected), then closed" "$RAW" "2 20020002
closed"
raw dev-1 c4:
contains "empty client id, CleanSession=1: accepted, the certificate names it" "$RAW" "2 20020000"

# ---- more statements, each with a packet no well-behaved client sends ----
raw dev-1 c5:dev-1 c5:dev-1
check "a second CONNECT: DISCONNECT 0x82 (MQTT-3.1.0-2)" disconnected_with 82
raw dev-1 c5:dev-1 "30 07 00 03 61 2f 2b 00 78"
check "a wildcard in a topic name: DISCONNECT (MQTT-3.3.2-2)" disconnected_with '(82|90)'
raw dev-1 c5:dev-1 "32 08 00 03 61 2f 62 00 00 00"
check "QoS 1 with packet id 0: DISCONNECT (MQTT-2.2.1-3)" disconnected_with '(81|82)'
raw dev-1 c5:dev-1 "82 0b 00 01 00 00 05 61 2f 23 2f 62 00"
contains "a filter with # not last: SUBACK 0x8F, connection open (MQTT-4.7.1-1)" "$RAW" "9 90040001008f"
raw dev-1 c4:dev-1 "82 0a 00 01 00 05 61 2f 23 2f 62 00"
contains "MQTT 3.1.1: SUBACK 0x80" "$RAW" "9 9003000180"
raw dev-1 c4:dev-1 "c0 00"
contains "PINGREQ: PINGRESP (MQTT-3.12.4-1)" "$RAW" "13 d000"
raw dev-1 "10 11 00 04 4d 51 54 54 04 03 00 3c 00 05 64 65 76 2d 31"
equals "CONNECT with its reserved flag set: closed, no CONNACK (MQTT-3.1.2-3)" "$RAW" "closed"

raw dev-1 c5:dev-1 "38 06 00 03 61 2f 62 78"
check "DUP set on a QoS 0 PUBLISH: DISCONNECT (MQTT-3.3.1-2)" disconnected_with '(81|82)'
raw dev-1 c5:dev-1 "36 08 00 03 61 2f 62 00 01 78"
check "QoS 3: DISCONNECT 0x81 (MQTT-3.3.1-4)" disconnected_with 81
raw dev-1 c5:dev-1 "62 03 00 01 00"
contains "PUBREL with its flags 0010: answered with PUBCOMP" "$RAW" "7 70"
raw dev-1 c5:dev-1 "60 03 00 01 00"
check "PUBREL with flags 0000: DISCONNECT 0x81 (MQTT-3.6.1-1)" disconnected_with 81
raw dev-1 c5:dev-1 "a0 08 00 01 00 00 03 61 2f 62"
check "UNSUBSCRIBE with flags 0000: DISCONNECT 0x81 (MQTT-3.10.1-1)" disconnected_with 81
raw dev-1 "10 11 00 04 4d 51 54 54 04 12 00 3c 00 05 64 65 76 2d 31"
equals "will QoS 2 without the will flag: closed (MQTT-3.1.2-11)" "$RAW" "closed"

# ---- acknowledgements in the order of their PUBLISHes (MQTT-4.6.0-2), also when the first
# waits for the store (a retained QoS 1 message is acknowledged once durable) ----
pub5() { # pub5 FLAGS PACKET_ID TOPIC PAYLOAD: a PUBLISH (QoS 1 or 2) in hex
    python3 -c '
import sys
flags, pid, t, m = int(sys.argv[1], 16), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4].encode()
body = len(t).to_bytes(2, "big") + t + pid.to_bytes(2, "big") + b"\x00" + m
print((bytes([flags, len(body)]) + body).hex())' "$@"
}
both=$(pub5 33 1 devices/dev-1/telemetry/r kept)$(pub5 32 2 devices/dev-1/telemetry/n plain)$(pub5 33 3 devices/dev-1/telemetry/r2 kept)$(pub5 32 4 devices/dev-1/telemetry/n plain)
raw dev-1 c5:dev-1 "$both"
acks=$(grep '^4 ' <<<"$RAW" | cut -c3-10 | tr '\n' ' ')
equals "PUBACKs 1, 2, 3, 4 in order, though 1 and 3 waited for the store" "$acks" "40030001 40030002 40030003 40030004 "

# ---- MQTT 5: a session that ends with its connection cannot be made to last at DISCONNECT ----
raw dev-1 c5:dev-1 "e00700051100000e10"
check "session expiry set at DISCONNECT after 0 at CONNECT: DISCONNECT 0x82 (MQTT-3.14.2-2)" grep -Eq '^14 e0[0-9a-f]{2}82' <<<"$RAW"
contains "and the connection is closed" "$RAW" "closed"
raw dev-1 C5:dev-1
check "no session was kept for it" grep -Eq '^2 20[0-9a-f]{2}00' <<<"$RAW"

stop_kfd
equals "keyfleetd stops cleanly" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
