#!/bin/bash
# Attack: persistent sessions make every QoS 1 message a store write. Devices publish QoS 1
# telemetry as fast as their connections take it, to a reader whose session is persistent, while
# other devices provision. The store is shared: the hub keeps to its quarter of the store's queue
# (connections are paused, TCP pushes back), so every registration answers 200, the hub never
# falls back to "kept in memory only", and the reader is served.
. "$(dirname "$0")/lib.sh"
ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set hub msg_rate 100000 # the per-connection message rate is not the defence here
conf_set hub msg_burst 100000
conf_set hub flap_connects 100000
start_kfd || exit 1
for d in fl-1 fl-2 fl-3 fl-4; do provision "$d"; done
ok "a reader" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
/usr/bin/python3 "$(dirname "$0")/mqtt_count_sub.py" "$HUB_PORT" "$D/ca/root.crt" \
    "$T/dash.pem" "$T/dash.key" dash 'devices/+/telemetry/#' 1 "$T/dash.out" 25 >"$T/dash.sub" 2>&1 &
SUBPID=$!
sleep 1
registrations 20 "$T/rg.out" &
REGS=$!
for d in fl-1 fl-2 fl-3 fl-4; do
    # QoS 1 PUBLISH, packet id 1, to the device's telemetry (the flood does not wait for PUBACKs)
    pkt=$(python3 -c 'import sys; t = b"devices/%s/telemetry/x" % sys.argv[1].encode(); body = len(t).to_bytes(2, "big") + t + b"\x00\x01" + b"x" * 64; print((bytes([0x32, len(body)]) + body).hex())' "$d")
    SRC=127.0.4.1 timeout 30 python3 "$(dirname "$0")/mqtt_flood.py" "$HUB_PORT" "$D/ca/root.crt" \
        "$T/$d.op.pem" "$T/$d.op.key" "$d" 4 8 "$pkt" >"$T/fl-$d.out" 2>&1 &
done
wait "$REGS"
for d in fl-1 fl-2 fl-3 fl-4; do timeout 20 tail --pid="$(pgrep -f "mqtt_flood.py.*$d" | head -1)" -f /dev/null 2>/dev/null; done
equals "every registration during the flood answered 200" "$(sort -u "$T/rg.out")" 200
acked=$(cat "$T"/fl-fl-*.out | grep -o 'type4=[0-9]*' | cut -d= -f2 | awk '{ n += $1 } END { print n + 0 }')
check "the flooders were slowed, not refused: $acked PUBACKs" test "$acked" -gt 100
check_not "the hub never kept a message in memory only: its share of the store held" \
    grep -q "kept in memory only" "$T/kfd.log"
check "the reader was served meanwhile" test "$(wc -l <"$T/dash.out")" -gt 100
waits=$(curl -s --cacert "$D/ca/root.crt" "$URL/metrics" | awk '$1 == "keyfleet_hub_store_waits_total" {print $2}')
check "the defence engaged: the flooders' reading paused for the store ($waits times)" test "${waits:-0}" -gt 0
kill "$SUBPID" 2>/dev/null
stop_kfd
equals "keyfleetd stops cleanly" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
