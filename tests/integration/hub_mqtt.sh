#!/bin/bash
# The hub, driven by Debian's mosquitto_pub / mosquitto_sub with device and service certificates
# (MQTT 3.1.1 and, with -V 5, MQTT 5): telemetry device -> service, commands service -> device,
# cross-device access refused, retained and will messages, QoS 1 and 2 across a reconnect with a
# persistent session, identity checks at the handshake and at CONNECT, and `keyfleet device
# disable` closing a live connection within a second. Every refusal is checked in the events.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
CA=$D/ca/root.crt
mkca fca
group_enroll factory fca
# These tests reconnect the same devices far more often than a real one may (flapping is
# hub_limits' to test).
conf_set hub flap_connects 100000
start_kfd

provision dev-1
provision dev-2
ok "a reader" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
ok "a commander" service add --name ops --role commander --key-out "$T/ops.key" --out "$T/ops.pem"

# ---- telemetry flows device -> service ----
sub tele dash -t 'devices/+/telemetry/#' -v -q 1
pub dev-1 -t devices/dev-1/telemetry/temp -m '{"t":21.5}' -q 1
equals "a device publishes its telemetry" "$RC" 0
check "the reader receives it" wait_for tele 'devices/dev-1/telemetry/temp {"t":21.5}'
pub dev-2 -t devices/dev-2/telemetry -m 'plain' -q 0
check "QoS 0, and the telemetry topic itself" wait_for tele 'devices/dev-2/telemetry plain'
pub dev-1 -V 5 -t devices/dev-1/telemetry/hum -m 'v5' -q 1
check "MQTT 5 telemetry" wait_for tele 'devices/dev-1/telemetry/hum v5'
kill "$SUB_tele" 2>/dev/null
check "hub.connected events, with the identity" event_with hub.connected '.detail.id == "dash" and .detail.identity == "reader"'

# ---- MQTT 5 properties travel from device to service ----
sub props dash -V 5 -t 'devices/+/telemetry/#' -F '%t|%p|%P|%C|%R|%S|%E' -D subscribe subscription-identifier 7
pub dev-1 -V 5 -t devices/dev-1/telemetry/p -m props -q 1 -D publish user-property site lab \
    -D publish content-type application/json -D publish response-topic devices/dev-1/events \
    -D publish message-expiry-interval 60
check "user property, content type, response topic, subscription id and expiry reach the service" \
    wait_for props 'devices/dev-1/telemetry/p|props|site:lab|application/json|devices/dev-1/events|7|'
check "the expiry counts down, never up" grep -Eq '\|(5[0-9]|60)$' "$T/props.out"
# A topic alias: the first PUBLISH names the topic and alias 1, the next ones only the alias.
for n in 1 2 3; do echo "alias$n"; done | timeout 10 mosquitto_pub $(as dev-1) -V 5 -i dev-1 \
    -t devices/dev-1/telemetry/aliased -D publish topic-alias 1 -l -q 1 >"$T/x.out" 2>&1
check "messages sent by topic alias arrive under the topic" wait_for props 'devices/dev-1/telemetry/aliased|alias3|'
kill "$SUB_props" 2>/dev/null

# ---- commands flow service -> device ----
sub cmd dev-1 -t 'devices/dev-1/commands/#' -v -q 1
pub ops -t devices/dev-1/commands/reboot -m now -q 1
equals "a commander sends a command" "$RC" 0
check "the device receives it" wait_for cmd 'devices/dev-1/commands/reboot now'
kill "$SUB_cmd" 2>/dev/null

# ---- nobody is anybody else ----
pub dev-1 -t devices/dev-2/telemetry -m forged -q 1
check "a device publishing as another is cut off (3.1.1)" test "$RC" -ne 0
check "hub.acl_denied for the publish" event_with hub.acl_denied \
    '.device == "dev-1" and .detail.operation == "publish" and .detail.topic == "devices/dev-2/telemetry"'
pub dev-1 -V 5 -t devices/dev-2/telemetry -m forged -q 1
contains "MQTT 5: the PUBACK says not authorized" "$PUB_ERR" "Not authorized"
pub dev-1 -t devices/dev-1/commands/x -m self -q 1
check "a device may not command itself" test "$RC" -ne 0
pub dash -t devices/dev-1/commands/x -m nope -q 1
check "a reader may not command" test "$RC" -ne 0
timeout 5 mosquitto_sub $(as dev-1) -i dev-1 -t 'devices/dev-2/commands/#' -C 1 -W 2 >"$T/x.out" 2>&1
contains "subscribing to another device's commands is refused (SUBACK 0x80)" "$(cat "$T/x.out")" "denied"
timeout 5 mosquitto_sub $(as dev-1) -V 5 -i dev-1 -t 'devices/+/telemetry/#' -C 1 -W 2 >"$T/x.out" 2>&1
contains "MQTT 5: the SUBACK says why" "$(cat "$T/x.out")" "denied"
check "hub.acl_denied for the subscription" event_with hub.acl_denied \
    '.device == "dev-1" and .detail.operation == "subscribe" and .detail.topic == "devices/dev-2/commands/#"'
timeout 5 mosquitto_sub $(as dash) -i dash -t 'devices/#' -C 1 -W 2 >"$T/x.out" 2>&1
contains "a reader may not take everything under devices/" "$(cat "$T/x.out")" "denied"

# ---- the client id is the certificate's ----
pub dev-1 -i dev-2 -t devices/dev-2/telemetry -m x
check "dev-1 cannot connect as dev-2" test "$RC" -ne 0
check "hub.auth_failed client_id_mismatch" event_with hub.auth_failed \
    '.device == "dev-1" and .detail.reason == "client_id_mismatch"'
pub dash -i ops -t devices/dev-1/commands/x -m x
check "a service cannot take another's name" test "$RC" -ne 0
# A factory certificate is not an operational one: refused in the handshake.
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$HUB_PORT" --cafile "$CA" --cert "$T/dev-1.pem" \
    --key "$T/dev-1.key" -i dev-1 -t devices/dev-1/telemetry -m x >"$T/x.out" 2>&1
check "a factory certificate is refused" test $? -ne 0
check "hub.auth_failed unknown_ca" event_with hub.auth_failed '.detail.reason == "unknown_ca"'
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$HUB_PORT" --cafile "$CA" -i dev-1 \
    -t devices/dev-1/telemetry -m x >"$T/x.out" 2>&1
check "no certificate at all is refused" test $? -ne 0
check "hub.auth_failed no_certificate" event_with hub.auth_failed '.detail.reason == "no_certificate"'

# ---- retained messages ----
pub ops -t devices/dev-2/commands/config -m '{"interval":5}' -q 1 -r
equals "a retained command" "$RC" 0
timeout 5 mosquitto_sub $(as dev-2) -i dev-2 -t 'devices/dev-2/commands/#' -C 1 -W 3 -v >"$T/x.out" 2>&1
contains "a device subscribing later gets the retained command" "$(cat "$T/x.out")" \
    'devices/dev-2/commands/config {"interval":5}'
pub ops -t devices/dev-2/commands/config -m '' -q 1 -r
timeout 5 mosquitto_sub $(as dev-2) -i dev-2 -t 'devices/dev-2/commands/#' -C 1 -W 2 -v >"$T/x.out" 2>&1
check_not "an empty retained message clears it" grep -q interval "$T/x.out"

# ---- the last will ----
sub wills dash -t 'devices/+/events' -v
mosquitto_sub $(as dev-2) -i dev-2 -t 'devices/dev-2/commands/#' -k 5 \
    --will-topic devices/dev-2/events --will-payload '{"type":"device.offline","severity":"warning"}' \
    >/dev/null 2>&1 &
dying=$!
sleep 0.5
kill -9 "$dying"
check "the will goes out when the device vanishes" wait_for wills 'devices/dev-2/events {"type":"device.offline"'
check "and is stored as a device event" event_with device.offline '.device == "dev-2" and .source == "device"'
kill "$SUB_wills" 2>/dev/null
# MQTT 5 will delay: the will waits; a client back in time cancels it.
sub delayed dash -V 5 -t 'devices/+/telemetry/status' -v
mosquitto_sub $(as dev-2) -V 5 -i dev-2 -c -x 60 -t 'devices/dev-2/commands/#' \
    --will-topic devices/dev-2/telemetry/status --will-payload gone -D will will-delay-interval 2 \
    >/dev/null 2>&1 &
dying=$!
sleep 0.5
kill -9 "$dying"
sleep 1
check_not "a delayed will is not sent at once" grep -q gone "$T/delayed.out"
check "but after its delay" wait_for delayed 'devices/dev-2/telemetry/status gone'
: >"$T/delayed.out"
mosquitto_sub $(as dev-2) -V 5 -i dev-2 -c -x 60 -t 'devices/dev-2/commands/#' \
    --will-topic devices/dev-2/telemetry/status --will-payload back -D will will-delay-interval 2 \
    >/dev/null 2>&1 &
dying=$!
sleep 0.5
kill -9 "$dying"
timeout 5 mosquitto_sub $(as dev-2) -V 5 -i dev-2 -c -x 60 -t 'devices/dev-2/commands/#' -W 1 >/dev/null 2>&1
sleep 2.5
check_not "a client back within the delay cancels its will" grep -q back "$T/delayed.out"
kill "$SUB_delayed" 2>/dev/null
timeout 10 mosquitto_sub $(as dev-2) -i dev-2 -t 'devices/dev-2/commands/#' -W 1 \
    --will-topic devices/dev-1/events --will-payload x >"$T/x.out" 2>&1
check "a will on another device's topic is refused" grep -qi "not authori" "$T/x.out"

# ---- device security events are validated and stored ----
pub dev-1 -t devices/dev-1/events -m '{"type":"device.login_failed","severity":"warning","detail":{"user":"root"}}' -q 1
equals "a device reports a security event" "$RC" 0
check "stored with source=device and its detail" event_with device.login_failed \
    '.device == "dev-1" and .source == "device" and .detail.user == "root"'
pub dev-1 -V 5 -t devices/dev-1/events -m 'not json' -q 1
contains "MQTT 5: a malformed event is refused as such" "$PUB_ERR" "Payload format invalid"

# ---- QoS 1 and 2 across a reconnect, persistent session ----
timeout 5 mosquitto_sub $(as dev-1) -i dev-1 -c -q 2 -t 'devices/dev-1/commands/#' -W 1 >/dev/null 2>&1
pub ops -t devices/dev-1/commands/a -m one -q 1
pub ops -t devices/dev-1/commands/b -m two -q 2
pub ops -t devices/dev-1/commands/c -m three -q 0
timeout 5 mosquitto_sub $(as dev-1) -i dev-1 -c -q 2 -t 'devices/dev-1/commands/#' -C 2 -W 3 -v >"$T/x.out" 2>&1
out=$(cat "$T/x.out")
contains "QoS 1 message kept for the offline session" "$out" "devices/dev-1/commands/a one"
contains "QoS 2 message kept for the offline session" "$out" "devices/dev-1/commands/b two"
check_not "QoS 0 is not kept for an offline session" grep -q three "$T/x.out"
# MQTT 5: session expiry instead of clean session.
timeout 5 mosquitto_sub $(as dev-2) -V 5 -i dev-2 -c -x 60 -q 1 -t 'devices/dev-2/updates/#' -W 1 >/dev/null 2>&1
pub ops -t devices/dev-2/commands/x -m ignored -q 1
timeout 5 mosquitto_sub $(as dev-2) -V 5 -i dev-2 -c -x 60 -q 1 -t 'devices/dev-2/updates/#' -W 1 >/dev/null 2>&1
check_not "MQTT 5 persistent session: nothing it did not subscribe to" grep -q ignored "$T/x.out"

# ---- disable closes the live connection within a second; revoke refuses the handshake ----
sub live dev-1 -t 'devices/dev-1/commands/#' -v
# The hub's side of live connections (mosquitto_sub itself retries for a second before it exits).
hub_conns() { ss -Htn state established "( sport = :$HUB_PORT )" | wc -l; }
equals "dev-1 is connected" "$(hub_conns)" 1
ok "disable dev-1" device disable dev-1
start=$(date +%s%N)
for _ in $(seq 1 40); do [ "$(hub_conns)" -eq 0 ] && break; sleep 0.025; done
gone=$(( ($(date +%s%N) - start) / 1000000 ))
equals "its connection is closed" "$(hub_conns)" 0
check "within a second of the command (${gone} ms)" test "$gone" -lt 1000
kill "$SUB_live" 2>/dev/null
check "hub.disconnected with the reason" event_with hub.disconnected \
    '.device == "dev-1" and .detail.reason == "device_disabled"'
pub dev-1 -t devices/dev-1/telemetry -m x
check "a disabled device cannot connect" test "$RC" -ne 0
check "hub.auth_failed device_disabled" event_with hub.auth_failed '.detail.reason == "device_disabled"'
ok "enable dev-1" device enable dev-1
sleep 0.5
pub dev-1 -t devices/dev-1/telemetry -m x
equals "enabled again, it connects" "$RC" 0
ok "revoke dev-2" device revoke dev-2
sleep 0.6
pub dev-2 -t devices/dev-2/telemetry -m x
check "a revoked device is refused" test "$RC" -ne 0
check "hub.auth_failed revoked" event_with hub.auth_failed '.detail.reason == "revoked" or .detail.reason == "device_revoked"'

stop_kfd
equals "keyfleetd stops cleanly" "$KFD_STATUS" 0
finish
