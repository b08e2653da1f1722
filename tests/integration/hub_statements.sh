#!/bin/bash
# More of MQTT 3.1.1 and 5.0 to the letter, through the real listener, with raw packets
# (mqtt_raw.py): what must come first and what a CONNECT may not carry, what CONNACK's session
# present says, SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK to the letter, DISCONNECT's flags and
# the will it discards, topic aliases refused, the client's receive maximum. docs/hub.md lists
# every statement of 3.1.1 beside the check that shows it.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set hub flap_connects 100000
start_kfd || exit 1
provision dev-1
provision dev-2
ok "a commander" service add --name ops --role commander --key-out "$T/ops.key" --out "$T/ops.pem"
ok "a reader" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
ok "another reader" service add --name dash2 --role reader --key-out "$T/dash2.key" --out "$T/dash2.pem"

# hex PYTHON_EXPR: the bytes a Python expression makes (helpers: s(str) is a UTF-8 string with
# its length, v(n) a variable byte integer, p(first, body) a packet), in hex
hex() {
    python3 -c '
import sys
sys.path.insert(0, sys.argv[2])
from mqtt_wire import varint as v, packet as p
def s(x):
    x = x.encode()
    return len(x).to_bytes(2, "big") + x
print(eval(sys.argv[1]).hex())' "$1" "$(dirname "$0")"
}

# ---- CONNECT comes first, and as the specifications say ----
raw dev-1 "c0 00"
equals "a PINGREQ before CONNECT: closed, nothing answered (MQTT-3.1.0-1)" "$RAW" "closed"
raw dev-1 "$(hex 'p(0x10, s("MQTX") + bytes([4, 2, 0, 60]) + s("dev-1"))')"
check "a protocol name other than MQTT: closed (MQTT-3.1.2-1)" grep -q '^closed$' <<<"$RAW"
raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([3, 2, 0, 60]) + s("dev-1"))')"
equals "3.1.1: protocol level 3: CONNACK 0x01, then closed (MQTT-3.1.2-2)" "$RAW" "2 20020001
closed"
raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([4, 0x42, 0, 60]) + s("dev-1") + s("pw"))')"
check "3.1.1: a password without a user name: closed (MQTT-3.1.2-22)" grep -q '^closed$' <<<"$RAW"

raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([4, 0x1e, 0, 60]) + s("dev-1") + s("devices/dev-1/telemetry/w") + s("x"))')"
equals "3.1.1: will QoS 3: closed, no CONNACK (MQTT-3.1.2-14)" "$RAW" "closed"
raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([4, 0x22, 0, 60]) + s("dev-1"))')"
equals "3.1.1: will retain without the will flag: closed, no CONNACK (MQTT-3.1.2-15)" "$RAW" "closed"
raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([4, 2, 0, 60]) + s("dev-2"))')"
equals "3.1.1: a client id its certificate does not name: CONNACK 0x02, closed (MQTT-3.1.3-9)" "$RAW" "2 20020002
closed"

# ---- session present ----
raw dev-1 c4:dev-1
contains "CleanSession 1: session present 0 (MQTT-3.2.2-1)" "$RAW" "2 20020000"
raw dev-1 C4:dev-1
contains "CleanSession 0, no session yet: session present 0 (MQTT-3.2.2-3)" "$RAW" "2 20020000"
raw dev-1 C4:dev-1
contains "CleanSession 0 again: session present 1 (MQTT-3.2.2-2)" "$RAW" "2 20020100"
raw dev-1 c4:dev-1
contains "CleanSession 1 ends it: session present 0 (MQTT-3.2.2-1)" "$RAW" "2 20020000"
raw dev-1 C5:dev-1
check "MQTT 5, clean start 0 after the clean one: no session (MQTT-3.2.2-3)" grep -Eq '^2 20[0-9a-f]{2}0000' <<<"$RAW"

# ---- SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK ----
raw dev-1 c5:dev-1 "$(hex 'p(0x80, bytes([0, 1, 0]) + s("devices/dev-1/commands/#") + bytes([1]))')"
check "SUBSCRIBE with flags 0000: DISCONNECT 0x81 (MQTT-3.8.1-1)" disconnected_with 81
raw dev-1 c5:dev-1 "82 03 00 01 00"
check "SUBSCRIBE with no topic filter: DISCONNECT (MQTT-3.8.3-3)" disconnected_with '(81|82)'
raw dev-1 c4:dev-1 "$(hex 'p(0x82, bytes([0x12, 0x34]) + s("devices/dev-1/commands/#") + bytes([1]) + s("devices/dev-2/commands/#") + bytes([2]) + s("devices/dev-1/commands/x") + bytes([2]))')"
contains "SUBACK: the SUBSCRIBE's packet id, a code per filter in their order: 1, refused, 2 (MQTT-3.8.4-2, -5, 3.9.3-1)" \
    "$RAW" "9 90051234018002"
raw dev-1 c4:dev-1 "$(hex 'p(0xa2, bytes([0, 0x2a]) + s("devices/dev-1/commands/none"))')"
contains "3.1.1: UNSUBACK for a filter never subscribed, with its packet id (MQTT-3.10.4-4, -5)" "$RAW" "11 b002002a"
raw dev-1 c5:dev-1 "$(hex 'p(0xa2, bytes([0, 0x2b, 0]) + s("devices/dev-1/commands/none"))')"
contains "MQTT 5: UNSUBACK 0x11, no subscription existed (MQTT 5 3.11.3)" "$RAW" "11 b004002b0011"

raw dev-1 c4:dev-1 "$(hex 'p(0x82, bytes([0, 1]) + s("devices/dev-1/commands/#") + bytes([3]))')"
equals "3.1.1: SUBSCRIBE asking QoS 3: closed (MQTT-3.8.3-4)" "$(tail -1 <<<"$RAW")" "closed"
raw dev-1 c4:dev-1 "$(hex 'p(0x82, bytes([0, 1]) + s("devices/dev-1/commands/#") + bytes([0x41]))')"
equals "3.1.1: SUBSCRIBE with a reserved option bit set: closed (MQTT-3.8.3-4)" "$(tail -1 <<<"$RAW")" "closed"
raw dev-1 c4:dev-1 "a2 02 00 01"
equals "3.1.1: UNSUBSCRIBE with no topic filter: closed (MQTT-3.10.3-2)" "$(tail -1 <<<"$RAW")" "closed"
raw dev-1 c4:dev-1 "e1 00"
equals "3.1.1: DISCONNECT with a reserved bit set: closed (MQTT-3.14.1-1)" "$(tail -1 <<<"$RAW")" "closed"
raw dev-1 c4:dev-1 "$(hex 'p(0x82, bytes([0, 5]) + s("devices/dev-1/commands/#") + bytes([1]))')" \
    "$(hex 'p(0x82, bytes([0, 6]) + s("devices/dev-1/commands/#") + bytes([2]))')"
contains "the same filter again: replaced, the new QoS granted (MQTT-3.8.4-3)" "$RAW" "9 9003000602"

# ---- a will is discarded on DISCONNECT, and goes when the connection just ends ----
sub wills dash -t 'devices/dev-1/telemetry/will' -v
will_connect=$(hex 'p(0x10, s("MQTT") + bytes([4, 0x06, 0, 60]) + s("dev-1") + s("devices/dev-1/telemetry/will") + s("gone"))')
raw dev-1 "$will_connect" "e0 00"
sleep 0.5
check_not "3.1.1: a will, then DISCONNECT: the will is discarded, not published (MQTT-3.14.4-3)" \
    grep -q gone "$T/wills.out"
raw dev-1 "$will_connect"
check "and without DISCONNECT, it is published (MQTT-3.1.2-8)" wait_for wills "devices/dev-1/telemetry/will gone"
kill "$SUB_wills" 2>/dev/null

# ---- topic aliases (MQTT 5) ----
raw dev-1 c5:dev-1 "$(hex 'p(0x30, s("devices/dev-1/telemetry") + bytes([3, 0x23, 0, 0]) + b"x")')"
check "topic alias 0: DISCONNECT 0x94 (MQTT-3.3.2-8)" disconnected_with 94
raw dev-1 c5:dev-1 "$(hex 'p(0x30, s("devices/dev-1/telemetry") + bytes([3, 0x23, 0, 17]) + b"x")')"
check "a topic alias above the maximum the hub gave (16): DISCONNECT 0x94 (MQTT-3.3.2-9)" disconnected_with 94
raw dev-1 c5:dev-1 "$(hex 'p(0x30, s("") + bytes([3, 0x23, 0, 5]) + b"x")')"
check "an alias never set, with an empty topic: DISCONNECT 0x82 (MQTT 5 3.3.2.3.4)" disconnected_with 82
raw dev-1 c5:dev-1 "$(hex 'p(0x30, s("") + bytes([0]) + b"x")')"
check "an empty topic and no alias: DISCONNECT 0x82 or 0x90 (MQTT-4.7.3-1)" disconnected_with '(82|90)'
raw dev-1 c4:dev-1 "$(hex 'p(0x30, s("") + b"x")')"
check "3.1.1: an empty topic: closed (MQTT-4.7.3-1)" grep -q '^closed$' <<<"$RAW"

# ---- the client's receive maximum (MQTT 5): no more unacknowledged QoS 1 than it allows ----
for n in 1 2 3; do pub ops -t "devices/dev-1/commands/r$n" -m "r$n" -q 1 -r; done
RAW_WAIT=1 raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([5, 2, 0, 60, 3, 0x21, 0, 1]) + s("dev-1"))')" \
    "$(hex 'p(0x82, bytes([0, 1, 0]) + s("devices/dev-1/commands/#") + bytes([1]))')"
equals "receive maximum 1, three retained QoS 1 messages: one PUBLISH until it is acknowledged (MQTT-3.3.4-9)" \
    "$(grep -c '^3 ' <<<"$RAW")" 1

# ---- more of MQTT 5 ----
raw dev-1 c5:dev-1 "$(hex 'p(0x32, s("devices/dev-1/telemetry") + bytes([0, 1, 2, 0x0b, 7]) + b"x")')"
check "a client's PUBLISH with a subscription identifier: DISCONNECT 0x82 (MQTT-3.3.4-6)" disconnected_with 82
raw dev-1 c5:dev-1 "$(hex 'p(0x30, s("devices/dev-1/telemetry") + bytes([6, 0x08]) + s("a/#") + b"x")')"
check "a response topic with a wildcard: DISCONNECT 0x82 (MQTT-3.3.2-14)" disconnected_with 82
pub ops -t devices/dev-1/commands/q2 -m two -q 2 -r
RAW_WAIT=1 raw dev-1 c5:dev-1 "$(hex 'p(0x82, bytes([0, 1, 0]) + s("devices/dev-1/commands/q2") + bytes([2]))')" \
    "$(hex 'p(0x50, bytes([0, 2, 0x80, 0]))')"
check "the retained QoS 2 command comes (packet id 2)" grep -q "^3 3.*0002" <<<"$RAW"
check_not "PUBREC 0x80: the message is acknowledged, no PUBREL follows (MQTT-4.3.3-4, 4.4.0-2)" \
    grep -q "^6 " <<<"$RAW"
pub ops -t devices/dev-1/commands/q2 -n -q 1 -r
pub ops -t devices/dev-1/commands/small -m s -q 1 -r
pub ops -t devices/dev-1/commands/big -m "$(head -c 200 /dev/zero | tr '\0' b)" -q 1 -r
RAW_WAIT=1 raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([5, 2, 0, 60, 5, 0x27, 0, 0, 0, 80]) + s("dev-1"))')" \
    "$(hex 'p(0x82, bytes([0, 1, 0]) + s("devices/dev-1/commands/#") + bytes([0]))')"
check "maximum packet size 80: the small retained command goes" grep -q "^3 .*$(printf 'small' | xxd -p)" <<<"$RAW"
check_not "and the 200-byte one is discarded, not sent (MQTT-3.1.2-24, -25)" grep -q "^3 .*$(printf 'big' | xxd -p)" <<<"$RAW"
RAW_WAIT=1 raw dev-1 c5:dev-1 "$(hex 'p(0x82, bytes([0, 1, 0]) + s("devices/dev-1/commands/small") + bytes([0x20 | 1]))')"
check_not "retain handling 2: no retained message on subscribing (MQTT-3.3.1-11)" grep -q "^3 " <<<"$RAW"
RAW_WAIT=1 raw dev-1 c5:dev-1 "$(hex 'p(0x82, bytes([0, 1, 0]) + s("devices/dev-1/commands/small") + bytes([0x10 | 1]))')"
check "retain handling 1, a new subscription: the retained message comes (MQTT-3.3.1-10)" grep -q "^3 " <<<"$RAW"

# retain as published: a subscription with it, and one without, while a retained message comes
(RAW_WAIT=3 raw dash c5:dash "$(hex 'p(0x82, bytes([0, 1, 0]) + s("devices/dev-1/telemetry/rap/#") + bytes([0x08 | 1]))')"
    echo "$RAW" >"$T/rap.raw") &
rap=$!
sub norap dash2 -V 5 -t 'devices/dev-1/telemetry/rap/#' -F '%t %r'
sleep 0.5
pub dev-1 -V 5 -t devices/dev-1/telemetry/rap/1 -m x -q 1 -r
timeout 10 tail --pid="$rap" -f /dev/null
check "retain as published 1: the message keeps RETAIN 1 (MQTT-3.3.1-13)" grep -q "^3 33" "$T/rap.raw" ||
    cat "$T/rap.raw" >&2
check "retain as published 0: RETAIN 0 to an established subscription (MQTT-3.3.1-12)" wait_for norap "devices/dev-1/telemetry/rap/1 0"
kill "$SUB_norap" 2>/dev/null
pub dev-1 -t devices/dev-1/telemetry/rap/1 -n -q 1 -r
# MQTT 5 DISCONNECT 0x04: with its will
sub wills5 dash -V 5 -t 'devices/dev-1/telemetry/will5' -v
raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([5, 0x06, 0, 60, 0]) + s("dev-1") + bytes([0]) + s("devices/dev-1/telemetry/will5") + s("bye"))')" \
    "e0 02 04 00"
check "MQTT 5 DISCONNECT 0x04 (disconnect with will): the will is published (MQTT-3.14.4-3)" \
    wait_for wills5 "devices/dev-1/telemetry/will5 bye"
kill "$SUB_wills5" 2>/dev/null
# a BOM in a topic is kept
sub bom dash -t 'devices/dev-1/telemetry/#' -F '%t'
raw dev-1 c4:dev-1 "$(hex 'p(0x30, s("devices/dev-1/telemetry/\ufeffb") + b"x")')"
sleep 0.5
check "a topic with U+FEFF reaches the subscriber with it, not stripped (MQTT-1.5.3-3, 1.5.4-3)" \
    grep -q "efbbbf" <<<"$(xxd -p "$T/bom.out" | tr -d '\n')"
kill "$SUB_bom" 2>/dev/null
raw dev-1 "$(hex 'p(0x10, s("MQTT") + bytes([5, 2, 0, 60, 8, 0x15]) + s("SCRAM") + s("dev-1"))')"
check "an authentication method (no enhanced authentication): CONNACK 0x8C, closed (MQTT-4.12.0-1)" \
    grep -Eq '^2 20[0-9a-f]{2}008c' <<<"$RAW"
raw dev-1 c5:dev-1 "$(hex 'p(0x82, bytes([0, 1, 0]) + s("$share/g/devices/dev-1/commands/#") + bytes([1]))')"
contains "a shared subscription: SUBACK 0x9E, not supported (MQTT-4.8.2)" "$RAW" "9 90040001009e"
conf_set hub max_inflight 2
kill -HUP "$KFD_PID"
sleep 0.5
raw dev-1 c5:dev-1 "$(hex 'p(0x34, s("devices/dev-1/telemetry") + bytes([0, 1, 0]) + b"a")')" \
    "$(hex 'p(0x34, s("devices/dev-1/telemetry") + bytes([0, 2, 0]) + b"b")')" \
    "$(hex 'p(0x34, s("devices/dev-1/telemetry") + bytes([0, 3, 0]) + b"c")')"
check "a third QoS 2 message unreleased, receive maximum 2: DISCONNECT 0x93 (MQTT-3.3.4-7)" disconnected_with 93 ||
    echo "$RAW" >&2

stop_kfd
equals "keyfleetd stops cleanly" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
