#!/bin/bash
# The hub's protections: malformed packets (truncated remaining length, bad UTF-8, reserved
# flags, oversize, a first packet that is not CONNECT) close the connection with the MQTT 5
# reason and are counted; keep-alive; session take-over; per-connection message rates (disconnect,
# then drop after SIGHUP) and byte rates; new connections per second and connections per address;
# TLS handshakes in flight; the queue of an offline session; flapping bans; the allow/deny list; and a
# device showing up from a new network. Each limit's event is checked.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set hub max_packet_bytes 1024
conf_set hub flap_connects 100000
conf_set hub max_connections_per_ip 3
conf_set hub connect_rate_per_ip 0
# each limit's event is looked at within seconds: repeats are counted for one second only
conf_set events aggregate_s 1
start_kfd
provision dev-1
provision dev-2
provision dev-3
provision dev-4
provision dev-5
ok "a reader" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
ok "a commander" service add --name ops --role commander --key-out "$T/ops.key" --out "$T/ops.pem"


# ---- malformed packets ----
raw dev-1 c5:dev-1
check "a well-formed CONNECT is accepted (CONNACK, reason 0)" grep -Eq '^2 20..0000' <<<"$RAW"
before=$(metric keyfleet_hub_malformed_total)
raw dev-1 c5:dev-1 "30 ff ff ff ff 01"
check "truncated remaining length: DISCONNECT 0x81" disconnected_with 81
raw dev-1 c5:dev-1 "30 0a 00 05 c0 80 61 62 63 00 78 79"
check "a topic that is not UTF-8: DISCONNECT" disconnected_with '(81|90)'
raw dev-1 c5:dev-1 "80 0a 00 01 00 00 04 61 2f 62 63 01"
check "SUBSCRIBE with reserved flags 0000: DISCONNECT 0x81" disconnected_with 81
raw dev-1 c5:dev-1 "30 d0 0f 00 0f"
check "oversize (2,000 of 1,024 bytes), before its bytes: DISCONNECT 0x95" disconnected_with 95
raw dev-1 c4:dev-1 "30 d0 0f 00 0f"
check "MQTT 3.1.1: the connection is just closed" grep -q '^closed$' <<<"$RAW"
check_not "... with no DISCONNECT" grep -q '^14 ' <<<"$RAW"
raw dev-1 "c0 00"
check "a first packet that is not CONNECT closes" grep -q '^closed$' <<<"$RAW"
raw dev-1 "10 10 00 04 4d 51 54 54 07 02 00 3c 00 04 64 65 76 31"
contains "an unknown protocol level: CONNACK 0x01 (3.1.1)" "$RAW" "2 20020001"
after=$(metric keyfleet_hub_malformed_total)
equals "each is counted in keyfleet_hub_malformed_total" "$((after - before))" 7

# ---- keep-alive ----
raw dev-1 c4:dev-1:1
check "silent past 1.5 keep-alive periods: closed" grep -q '^closed$' <<<"$RAW"
check "hub.disconnected keep_alive_timeout" event_with hub.disconnected \
    '.device == "dev-1" and .detail.reason == "keep_alive_timeout"'

# ---- session take-over ----
sub first dev-1 -V 5 -t 'devices/dev-1/commands/#'
pub dev-1 -V 5 -t devices/dev-1/telemetry -m x
check "a second connection with the same id takes the session over" event_with hub.disconnected \
    '.device == "dev-1" and .detail.reason == "session_taken_over"'
# mosquitto_sub reconnects when its session is taken over: it must be gone, and the hub must have
# let go of every earlier socket, before the per-address count below starts from zero.
kill "$SUB_first" 2>/dev/null
wait "$SUB_first" 2>/dev/null
# open_sockets N: waits (up to 5 s) until the hub holds N sockets (what its per-address limit counts).
open_sockets() {
    for _ in $(seq 1 50); do
        [ "$(metric keyfleet_hub_connections_open)" = "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
check "every earlier connection is gone" open_sockets 0

# ---- connections per address ----
# Three connections that finish the handshake and say nothing (they stay until connect_timeout).
# Each says when its handshake is done: on a loaded machine Python alone can take longer to start
# than any fixed pause, and a fourth connection made before the three are up is rightly accepted.
for n in 1 2 3; do
    RAW_READY=$T/hold.$n timeout 20 python3 "$(dirname "$0")/mqtt_raw.py" "$HUB_PORT" \
        "$D/ca/root.crt" "$T/dash.pem" "$T/dash.key" >/dev/null 2>&1 &
    eval "HOLD_$n=$!"
done
check "three silent connections are up" wait_file "$T/hold.1" 15
check "... the second" wait_file "$T/hold.2" 15
check "... the third" wait_file "$T/hold.3" 15
check "keyfleet_hub_connections_open counts them" open_sockets 3
pub dev-2 -t devices/dev-2/telemetry -m x
check "a fourth connection from one address is refused" test "$RC" -ne 0
contains "and logged" "$(cat "$T/kfd.log")" "too many connections from this address"
wait "$HOLD_1" "$HOLD_2" "$HOLD_3" 2>/dev/null
sleep 0.3

# ---- message rate: disconnect, then (after SIGHUP) drop ----
conf_set hub msg_rate 5
conf_set hub msg_burst 5
kill -HUP "$KFD_PID"
sleep 0.5
seq 1 40 | timeout 10 mosquitto_pub $(as dev-1) -i dev-1 -t devices/dev-1/telemetry -l -q 1 >"$T/x.out" 2>&1
check "over the message rate: disconnected" event_with hub.disconnected \
    '.device == "dev-1" and .detail.reason == "message_rate_too_high"'
check "hub.rate_limited (disconnect)" event_with hub.rate_limited '.device == "dev-1" and .detail.action == "disconnect"'
conf_set hub rate_action drop
kill -HUP "$KFD_PID"
sleep 0.5
sub tele dash -t 'devices/+/telemetry'
seq 1 40 | timeout 10 mosquitto_pub $(as dev-2) -i dev-2 -t devices/dev-2/telemetry -l -q 0 >"$T/x.out" 2>&1
equals "with rate_action = drop the connection stays" "$?" 0
sleep 0.5
got=$(wc -l <"$T/tele.out")
check "and what is over the rate is dropped ($got of 40 delivered)" test "$got" -ge 5 -a "$got" -lt 40
check "hub.rate_limited (drop)" event_with hub.rate_limited '.device == "dev-2" and .detail.action == "drop"'
kill "$SUB_tele" 2>/dev/null
conf_set hub msg_rate 1000
conf_set hub msg_burst 2000

# ---- byte rate ----
conf_set hub byte_rate 2000
conf_set hub byte_burst 4000
conf_set hub rate_action disconnect
kill -HUP "$KFD_PID"
sleep 0.5
big=$(head -c 600 /dev/zero | tr '\0' x)
pub dev-2 -t devices/dev-2/telemetry -m "$big" -q 1
equals "a message within the byte burst passes" "$RC" 0
for n in 1 2 3 4 5 6 7 8 9 10; do echo "$big"; done | timeout 10 mosquitto_pub $(as dev-2) -i dev-2 \
    -t devices/dev-2/telemetry -l -q 1 >"$T/x.out" 2>&1
check "over the byte rate: disconnected" event_with hub.disconnected \
    '.device == "dev-2" and .detail.reason == "message_rate_too_high"'
check "hub.rate_limited names the byte rate" event_with hub.rate_limited \
    '.device == "dev-2" and .detail.byte_rate == 2000'
conf_set hub byte_rate 4194304
conf_set hub byte_burst 8388608

# ---- new connections per second from one address ----
conf_set hub connect_rate_per_ip 1
conf_set hub connect_burst 2
kill -HUP "$KFD_PID"
sleep 1.2
pub dev-1 -t devices/dev-1/telemetry -m a
r1=$RC
pub dev-1 -t devices/dev-1/telemetry -m b
r2=$RC
pub dev-1 -t devices/dev-1/telemetry -m c
equals "a burst of two connections is allowed" "$r1$r2" 00
check "the third at once is refused" test "$RC" -ne 0
contains "and logged" "$(cat "$T/kfd.log")" "too many new connections per second from this address"
conf_set hub connect_rate_per_ip 0
kill -HUP "$KFD_PID"
sleep 0.5

# ---- messages queued for an offline session ----
conf_set hub max_queued 5
kill -HUP "$KFD_PID"
sleep 0.5
timeout 5 mosquitto_sub $(as dev-5) -i dev-5 -c -q 1 -t 'devices/dev-5/commands/#' -W 1 >/dev/null 2>&1
dropped_before=$(metric keyfleet_hub_messages_dropped_total)
for n in 1 2 3 4 5 6 7 8; do echo "m$n"; done | timeout 10 mosquitto_pub $(as ops) -i ops \
    -t devices/dev-5/commands/x -l -q 1 >/dev/null 2>&1
timeout 5 mosquitto_sub $(as dev-5) -i dev-5 -c -q 1 -t 'devices/dev-5/commands/#' -W 2 >"$T/x.out" 2>&1
equals "the session kept max_queued (5) of 8" "$(grep -c '^m' "$T/x.out")" 5
equals "the first five, in order" "$(grep '^m' "$T/x.out" | tr '\n' ' ')" "m1 m2 m3 m4 m5 "
equals "the other three are counted as dropped" \
    "$(( $(metric keyfleet_hub_messages_dropped_total) - dropped_before ))" 3
conf_set hub max_queued 1000
kill -HUP "$KFD_PID"
sleep 0.5

# ---- TLS handshakes in flight ----
conf_set hub max_handshakes 2
kill -HUP "$KFD_PID"
sleep 0.5
# Two connections that never start their handshake hold the whole budget.
python3 -c "
import socket, time
s = [socket.create_connection(('127.0.0.1', $HUB_PORT)) for _ in range(2)]
open('$T/held', 'w').close()
time.sleep(3)
" &
holder=$!
for _ in $(seq 1 100); do [ -e "$T/held" ] && break; sleep 0.05; done
sleep 0.3 # for keyfleetd to accept them
pub dev-1 -t devices/dev-1/telemetry -m x
check "beyond max_handshakes a connection is closed at once" test "$RC" -ne 0
contains "and logged" "$(cat "$T/kfd.log")" "too many TLS handshakes in flight"
wait "$holder"
sleep 0.3
pub dev-1 -t devices/dev-1/telemetry -m x
equals "once they are gone, devices connect again" "$RC" 0
conf_set hub max_handshakes 4096
kill -HUP "$KFD_PID"
sleep 0.5

# ---- flapping ----
conf_set hub flap_connects 3
conf_set hub flap_window_s 60
conf_set hub flap_ban_s 2
kill -HUP "$KFD_PID"
sleep 0.5
for n in 1 2 3; do pub dev-3 -t devices/dev-3/telemetry -m "$n"; done
equals "three connects in the window are fine" "$RC" 0
pub dev-3 -t devices/dev-3/telemetry -m 4
check "the fourth bans the id" test "$RC" -ne 0
check "hub.flapping" event_with hub.flapping '.device == "dev-3" and .detail.ban_s == 2'
pub dev-4 -t devices/dev-4/telemetry -m x
equals "another device is not affected" "$RC" 0
sleep 2.2
pub dev-3 -t devices/dev-3/telemetry -m 5
equals "after the ban the device connects again" "$RC" 0
conf_set hub flap_connects 100000
kill -HUP "$KFD_PID"
sleep 0.5

# ---- a new network ----
SRC=127.0.1.5 raw dev-1 c4:dev-1 "e0 00"
contains "dev-1 from 127.0.1.5 is accepted" "$RAW" "2 20020000"
check "hub.unusual_ip: a network dev-1 has not used" event_with hub.unusual_ip \
    '.device == "dev-1" and .ip == "127.0.1.5"'

# ---- the allow/deny list ----
conf_set hub deny 127.0.2.0/24
kill -HUP "$KFD_PID"
sleep 0.5
SRC=127.0.2.9 raw dev-1 c4:dev-1
check "a denied network cannot even start TLS" grep -q '^closed$' <<<"$RAW"
check_not "... and gets no CONNACK" grep -q '^2 ' <<<"$RAW"
contains "logged with the reason" "$(cat "$T/kfd.log")" "the address is on the deny list"
conf_set hub deny none
conf_set hub allow 127.0.0.1/32
kill -HUP "$KFD_PID"
sleep 0.5
SRC=127.0.1.5 raw dev-1 c4:dev-1
check "only the allowed network may connect" grep -q '^closed$' <<<"$RAW"
raw dev-1 c4:dev-1 "e0 00"
contains "the allowed one still can" "$RAW" "2 20020000"
conf_set hub allow "not-a-network"
kill -HUP "$KFD_PID"
sleep 0.5
contains "a bad list on SIGHUP is refused with the file and line" "$(cat "$T/kfd.log")" "hub.allow"
raw dev-1 c4:dev-1 "e0 00"
contains "and the running hub keeps its list" "$RAW" "2 20020000"

stop_kfd
equals "keyfleetd stops cleanly" "$KFD_STATUS" 0
finish
