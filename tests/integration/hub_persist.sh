#!/bin/bash
# The hub's retained messages survive kill -9: a retained QoS 1 message is acknowledged only once
# the store holds it, so keyfleetd killed right after the PUBACK still gives it back; MQTT 5
# properties and the expiry come back with it; a cleared topic stays cleared; a restart with
# `persistence = 0` keeps nothing. mosquitto_pub / mosquitto_sub are the clients.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set hub flap_connects 100000
start_kfd || exit 1
provision dev-1
ok "a commander" service add --name ops --role commander --key-out "$T/ops.key" --out "$T/ops.pem"
ok "a reader" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"

# Acknowledged, then killed at once: the PUBACK came only after the commit.
pub ops -t devices/dev-1/commands/config -m '{"interval":5}' -q 1 -r
equals "a retained QoS 1 command is acknowledged" "$RC" 0
kill9_kfd
REUSE_PORTS=1 start_kfd || exit 1
contains "keyfleetd says it restored them" "$(cat "$T/kfd.log")" "retained messages restored"
timeout 5 mosquitto_sub $(as dev-1) -i dev-1 -t 'devices/dev-1/commands/#' -F '%t %r %p' -C 1 -W 4 >"$T/r1.out" 2>&1
equals "killed right after the PUBACK, it is back, retained" "$(cat "$T/r1.out")" 'devices/dev-1/commands/config 1 {"interval":5}'

# MQTT 5 properties, QoS 2, a QoS 0 one, and a topic cleared before the crash.
pub ops -V 5 -t devices/dev-1/commands/fw -m v2 -q 2 -r -D publish content-type text/plain \
    -D publish user-property build 42 -D publish message-expiry-interval 3600
equals "a retained QoS 2 command with properties" "$RC" 0
pub dev-1 -t devices/dev-1/telemetry/status -m online -q 0 -r
pub ops -t devices/dev-1/commands/old -m stale -q 1 -r
pub ops -t devices/dev-1/commands/old -n -q 1 -r
equals "and one cleared (an empty retained message)" "$RC" 0
sleep 1 # QoS 0 is acknowledged by nobody: give its write a moment
kill9_kfd
REUSE_PORTS=1 start_kfd || exit 1
timeout 5 mosquitto_sub $(as dev-1) -i dev-1 -V 5 -q 2 -t 'devices/dev-1/commands/#' -F '%t|%r|%q|%C|%P|%p' -W 3 >"$T/r2.out" 2>&1
contains "QoS 2 with its content type and user property" "$(cat "$T/r2.out")" "devices/dev-1/commands/fw|1|2|text/plain|build:42|v2"
contains "the first one still" "$(cat "$T/r2.out")" 'devices/dev-1/commands/config|1|1|'
check_not "the cleared topic stays cleared" grep -q "commands/old" "$T/r2.out"
timeout 5 mosquitto_sub $(as dash) -i dash -V 5 -t 'devices/+/telemetry/#' -F '%t %r %p %E' -C 1 -W 4 >"$T/r3.out" 2>&1
contains "a QoS 0 retained telemetry message too" "$(cat "$T/r3.out")" "devices/dev-1/telemetry/status 1 online"
timeout 5 mosquitto_sub $(as dev-1) -i dev-1 -V 5 -t 'devices/dev-1/commands/fw' -F '%E' -C 1 -W 4 >"$T/r4.out" 2>&1
check "the expiry kept counting down across the restart" sh -c "v=\$(cat '$T/r4.out'); [ \"\$v\" -gt 3000 ] && [ \"\$v\" -le 3600 ]"

# Off: nothing is restored, nothing kept.
stop_kfd
conf_set hub persistence 0 || exit 1
REUSE_PORTS=1 start_kfd || exit 1
timeout 5 mosquitto_sub $(as dev-1) -i dev-1 -t 'devices/dev-1/commands/#' -v -W 2 >"$T/r5.out" 2>&1
check_not "persistence 0: nothing given back" grep -q "commands/" "$T/r5.out"
stop_kfd
equals "keyfleetd stops cleanly" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
