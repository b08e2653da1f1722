#!/bin/bash
# libkeyfleet's MQTT client against a second, independent broker: Debian's Mosquitto with TLS
# client certificates. Two agents (MQTT 3.1.1 and 5) provision from keyfleetd, then talk to
# Mosquitto: telemetry and events out, commands in, and back after Mosquitto restarts.
. "$(dirname "$0")/lib.sh"

fleet_up || exit 1
ok "a service identity for the watcher" service add --name watch --role reader --key-out "$T/watch.key" --out "$T/watch.pem"

MPORT=$(free_port)
cat "$T/d/ca/root.crt" "$T/d/ca/issuing.crt" >"$T/chain.pem"
cat >"$T/mosquitto.conf" <<EOF
per_listener_settings false
user $(id -un)
persistence false
log_dest file $T/mosquitto.log
log_type all
listener $MPORT 127.0.0.1
cafile $T/chain.pem
certfile $T/d/server/server.crt
keyfile $T/d/server/server.key
require_certificate true
use_identity_as_username true
EOF
start_mosquitto() {
    mosquitto -c "$T/mosquitto.conf" >>"$T/mosquitto.out" 2>&1 &
    MOSQ_PID=$!
    for _ in $(seq 1 50); do
        grep -q "Opening ipv4 listen socket on port $MPORT" "$T/mosquitto.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "mosquitto did not start: $(cat "$T/mosquitto.out")" >&2
    return 1
}
stop_mosquitto() {
    [ -n "${MOSQ_PID:-}" ] && kill "$MOSQ_PID" 2>/dev/null && wait "$MOSQ_PID" 2>/dev/null
    MOSQ_PID=
    return 0
}
CLEANUP_HOOKS="${CLEANUP_HOOKS:-} stop_mosquitto"
start_mosquitto || exit 1

cat >"$T/echo.sh" <<'EOF'
#!/bin/sh
echo "ran $1: $(cat)"
EOF
chmod 755 "$T/echo.sh"
for v in 4 5; do
    fdev "dev-m$v" fca
    touch "$T/auth-$v.log"
    # the MQTT 5 one enrolls by EST (simpleenroll), which assigns no hub: the config names it
    agent_conf "m$v" "$T/dev-m$v.pem" "$T/dev-m$v.key" "user = root" "hub = 127.0.0.1:$MPORT" \
        "mqtt_version = $v" "keep_alive = 5" "enroll = $([ $v = 5 ] && echo est || echo register)"
    cat >>"$T/m$v.conf" <<EOF
[telemetry]
temp = 1 echo '{"celsius": 21.$v}'
[commands]
echo = $T/echo.sh
[logwatch]
file = $T/auth-$v.log
EOF
done

mosquitto_sub -h 127.0.0.1 -p "$MPORT" --cafile "$T/d/ca/root.crt" --cert "$T/watch.pem" \
    --key "$T/watch.key" -i watch -t 'devices/#' -v -q 1 >"$T/w.out" 2>"$T/w.err" &
SUB_w=$!
sleep 0.5
start_agent m4
P4=$AGENT_PID
start_agent m5
P5=$AGENT_PID

for v in 4 5; do
    check "MQTT $v: telemetry reaches Mosquitto" wait_for w "devices/dev-m$v/telemetry/temp {\"celsius\": 21.$v}"
    check "MQTT $v: Mosquitto saw the device with its certificate's name" grep -q "as dev-m$v (p$([ $v = 4 ] && echo 2 || echo 5),.*u'dev-m$v')" "$T/mosquitto.log"
    mosquitto_pub -h 127.0.0.1 -p "$MPORT" --cafile "$T/d/ca/root.crt" --cert "$T/watch.pem" \
        --key "$T/watch.key" -i "cmd$v" -t "devices/dev-m$v/commands/echo" -m "hi$v" -q 1
    check "MQTT $v: a command through Mosquitto runs" wait_for w "\"output\":\"ran echo: hi$v"
    echo "sshd[1]: Failed password for user$v from 192.0.2.$v port 22 ssh2" >>"$T/auth-$v.log"
    check "MQTT $v: an event reaches Mosquitto" wait_for w "devices/dev-m$v/events {\"type\":\"device.login_failed\""
done

check "the 3.1.1 agent used the register API" grep -q "method=POST path=/api/v1/register status=200 .* id=dev-m4" "$T/kfd.log"
check "the 5.0 agent used EST simpleenroll" grep -q "method=POST path=/.well-known/est/simpleenroll status=200 .* id=dev-m5" "$T/kfd.log"
equals "EST gave it its certificate" "$(jq -r .deviceId "$T/m5.data/identity.json")" dev-m5

# Mosquitto goes away; events raised meanwhile arrive when it is back
stop_mosquitto
kill "$SUB_w" 2>/dev/null
echo "sshd[1]: Failed password for away4 from 192.0.2.9 port 22 ssh2" >>"$T/auth-4.log"
echo "sshd[1]: Failed password for away5 from 192.0.2.9 port 22 ssh2" >>"$T/auth-5.log"
check "the events wait on disk (3.1.1)" sh -c "for _ in \$(seq 1 30); do grep -q away4 '$T/m4.data/events.log' && exit 0; sleep 0.1; done; exit 1"
check "the events wait on disk (5)" sh -c "for _ in \$(seq 1 30); do grep -q away5 '$T/m5.data/events.log' && exit 0; sleep 0.1; done; exit 1"
sleep 1
start_mosquitto || exit 1
# delivered = Mosquitto acknowledged it: the agent then drops it from its log
for v in 4 5; do
    check "MQTT $v: reconnects and delivers what it queued" sh -c "for _ in \$(seq 1 100); do grep -q away$v '$T/m$v.data/events.log' || exit 0; sleep 0.1; done; exit 1"
    check "MQTT $v: Mosquitto received it" grep -q "Received PUBLISH from dev-m$v .*'devices/dev-m$v/events'" "$T/mosquitto.log"
done

kill -TERM "$P4" "$P5"
wait "$P4"
equals "clean exit (3.1.1)" "$?" 0
wait "$P5"
equals "clean exit (5)" "$?" 0
finish
