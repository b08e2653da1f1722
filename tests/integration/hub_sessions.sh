#!/bin/bash
# Persistent sessions survive kill -9: every QoS 1 and QoS 2 message the hub acknowledged to its
# publisher is delivered after the restart (QoS 2: exactly once), to a subscriber that stays
# connected through the crash (mosquitto_sub reconnects by itself, its session in memory) and to
# one that was offline, whose subscription came back with its session. The publisher writes down
# each acknowledgement it got (mqtt_count_pub.py); keyfleetd is killed in the middle of the flow.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set hub flap_connects 100000
conf_set hub msg_rate 100000
conf_set hub msg_burst 100000
# A slow machine acknowledges more than the default 1,000 a session may hold before the kill
# lands; what is checked here is that acknowledged messages survive, not the queue's bound
# (hub_limits.sh checks that), so the bound is above anything the flow can reach.
conf_set hub max_queued 100000
start_kfd || exit 1
provision dev-1
ok "a reader" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"

# flow NAME QOS TOPIC: dev-1 publishes 1..20000 to TOPIC at QOS; keyfleetd is killed once 400
# are acknowledged. The numbers acknowledged end up in $T/NAME.acked.
flow() {
    local name=$1 qos=$2 topic=$3
    : >"$T/$name.acked"
    python3 "$(dirname "$0")/mqtt_count_pub.py" "$HUB_PORT" "$D/ca/root.crt" "$T/dev-1.op.pem" \
        "$T/dev-1.op.key" dev-1 "$topic" "$qos" 1 20000 32 "$T/$name.acked" >"$T/$name.pub" 2>&1 &
    local pid=$!
    for _ in $(seq 1 300); do
        [ "$(wc -l <"$T/$name.acked")" -ge 400 ] && break
        sleep 0.05
    done
    kill9_kfd
    timeout 10 tail --pid="$pid" -f /dev/null
    contains "$name: the publisher lost its connection in the middle" "$(cat "$T/$name.pub")" "end=lost"
}

# missing NAME OUT: the acknowledged numbers of flow NAME that are not in file OUT.
missing() { comm -23 <(sort -u "$T/$1.acked") <(sort -u "$2") | wc -l; }

# wait_all NAME OUT: waits (up to 20 s) until every acknowledged number of NAME is in OUT.
wait_all() {
    for _ in $(seq 1 200); do
        [ "$(missing "$1" "$2")" = 0 ] && return 0
        sleep 0.1
    done
    return 1
}

# ---- a subscriber connected when it happens: Paho keeps its session in memory and reconnects
# by itself; what was in flight to it is sent again (dup), PUBRELs that were owed too ----
for q in 1 2; do
    /usr/bin/python3 "$(dirname "$0")/mqtt_count_sub.py" "$HUB_PORT" "$D/ca/root.crt" \
        "$T/dash.pem" "$T/dash.key" dash "devices/dev-1/telemetry/on$q" "$q" "$T/on$q.out" 120 \
        >"$T/on$q.sub" 2>&1 &
    SUBPID=$!
    for _ in $(seq 1 50); do
        pub dev-1 -t "devices/dev-1/telemetry/on$q" -m 0 -q 1
        grep -qx 0 "$T/on$q.out" 2>/dev/null && break
        sleep 0.1
    done
    flow "on$q" "$q" "devices/dev-1/telemetry/on$q"
    cp "$T/on$q.out" "$T/on$q.before"
    REUSE_PORTS=1 start_kfd || exit 1
    check "QoS $q, connected through the crash: every acknowledged message arrives" \
        wait_all "on$q" "$T/on$q.out"
    echo "QoS $q online: $(wc -l <"$T/on$q.acked") acknowledged, $(wc -l <"$T/on$q.before") received before the crash, $(wc -l <"$T/on$q.out") in all, $(grep -v '^0$' "$T/on$q.out" | sort | uniq -d | wc -l) twice" >&2
    if [ "$q" = 2 ]; then
        equals "QoS 2, connected through the crash: none of them twice" \
            "$(grep -v '^0$' "$T/on$q.out" | sort | uniq -d | wc -l)" 0
    fi
    kill "$SUBPID"
    timeout 5 tail --pid="$SUBPID" -f /dev/null
done
contains "keyfleetd says what it restored" "$(cat "$T/kfd.log")" "persistent sessions restored"

# ---- a subscriber offline while it happens: its session and subscription are in the store ----
timeout 5 mosquitto_sub $(as dash) -i dash -c -q 2 -t devices/dev-1/telemetry/off -W 1 >/dev/null 2>&1
flow off 2 devices/dev-1/telemetry/off
REUSE_PORTS=1 start_kfd || exit 1
pub dev-1 -i dev-1 -t devices/dev-1/telemetry/off -m after -q 1
equals "one more, published after the restart, while the subscriber is still away" "$RC" 0
timeout 30 mosquitto_sub $(as dash) -i dash -c -q 2 -t devices/dev-1/telemetry/off -F '%p' -W 10 \
    >"$T/off.out" 2>&1
check "QoS 2, offline: every acknowledged message is delivered" test "$(missing off "$T/off.out")" = 0
equals "QoS 2, offline: none twice" "$(sort "$T/off.out" | uniq -d | wc -l)" 0
contains "the subscription came back with the session: the message published after the restart" \
    "$(cat "$T/off.out")" after

# ---- what ends stays ended ----
timeout 5 mosquitto_sub $(as dash) -i dash -t devices/dev-1/telemetry/off -W 1 >/dev/null 2>&1
pub dev-1 -i dev-1 -t devices/dev-1/telemetry/off -m lost -q 1
kill9_kfd
REUSE_PORTS=1 start_kfd || exit 1
timeout 10 mosquitto_sub $(as dash) -i dash -c -q 1 -t devices/dev-1/telemetry/nothing -W 2 \
    -F '%t %p' >"$T/clean.out" 2>&1
check_not "a clean session ended the stored one: nothing is queued for it after the restart" \
    grep -q lost "$T/clean.out"

stop_kfd
equals "keyfleetd stops cleanly" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
