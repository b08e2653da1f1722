#!/bin/bash
# Attack: a few devices fill the hub's global retained-message store (64 MiB), and then every
# other device's retained messages were dropped silently (MQTT 5 PUBACK 0x10, no event). Now each
# identity has a quota of its own (max_retained_per_id, max_retained_bytes_per_id), and a retained
# message that cannot be kept, for the quota or because the store is full, is refused whole with
# PUBACK 0x97 (quota exceeded) and a hub.retained_refused event.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set events aggregate_s 1
start_kfd || exit 1
for d in hog-1 hog-2 dev-b dev-c; do provision "$d"; done
# retained_packets DEVICE FIRST LAST BYTES: MQTT 5 PUBLISH QoS 1 retain packets, as hex, to
# devices/DEVICE/telemetry/N for N in FIRST..LAST, each with BYTES of payload (a fifth argument:
# not retained)
retained_packets() {
    python3 -c '
import sys
dev, first, last, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
flags = 0x33 if len(sys.argv) < 6 else 0x32
def varint(n):
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (128 if n else 0)])
        if not n:
            return out
for i in range(first, last + 1):
    t = ("devices/%s/telemetry/%d" % (dev, i)).encode()
    body = len(t).to_bytes(2, "big") + t + i.to_bytes(2, "big") + b"\x00" + b"r" * size
    print((bytes([flags]) + varint(len(body)) + body).hex())' "$@"
}
# pubacks: the reason codes of the PUBACKs in $RAW, in order
pubacks() { sed -n 's/^4 40..\(....\)\(..\).*/\2/p' <<<"$RAW" | tr '\n' ' '; }

# ---- one identity's quota (default: 100 messages, 64 KiB) ----
raw hog-1 c5:hog-1 $(retained_packets hog-1 1 8 10000)
equals "six 10 KB retained messages fit the 64 KiB quota, then 0x97" "$(pubacks)" \
    "10 10 10 10 10 10 97 97 "
check "hub.retained_refused names the quota" event_with hub.retained_refused \
    '.device == "hog-1" and (.detail.reason | test("its share")) and .detail.topic == "devices/hog-1/telemetry/7"'
raw hog-1 c5:hog-1 $(retained_packets hog-1 1 1 10000)
equals "replacing one of its own is fine" "$(pubacks)" "10 "
raw dev-b c5:dev-b $(retained_packets dev-b 1 2 10000)
equals "another device's retained messages are unaffected" "$(pubacks)" "10 10 "

# ---- the store full: refused, never dropped in silence ----
conf_set hub max_retained 10
kill -HUP "$KFD_PID"
sleep 0.5
raw hog-2 c5:hog-2 $(retained_packets hog-2 1 3 100)
equals "hog-2 takes the last two of the hub's 10, then the hub is full" "$(pubacks)" "10 10 97 "
raw dev-c c5:dev-c $(retained_packets dev-c 1 1 100)
equals "then a retained message of dev-c: 0x97, not 0x10" "$(pubacks)" "97 "
check "hub.retained_refused: the hub is full" event_with hub.retained_refused \
    '.device == "dev-c" and (.detail.reason | test("max_retained"))'
raw dev-c c5:dev-c $(retained_packets dev-c 1 1 100 not-retained)
equals "a message that is not retained still goes through" "$(pubacks)" "10 "
raw hog-1 c5:hog-1 $(retained_packets hog-1 1 6 0)
equals "the hog clears its retained messages (empty payloads)" "$(pubacks)" "10 10 10 10 10 10 "
raw dev-c c5:dev-c $(retained_packets dev-c 1 1 500)
equals "and dev-c's retained message fits again" "$(pubacks)" "10 "

# ---- retained writes cannot starve the store: four devices replace a retained message as fast
# as they can, while devices from another address register ----
for d in fl-1 fl-2 fl-3 fl-4; do provision "$d"; done
conf_set hub msg_rate 100000 # the per-connection message rate is not the defence here
conf_set hub msg_burst 100000
stop_kfd
REUSE_PORTS=1 start_kfd || exit 1
registrations 20 "$T/rg.out" &
REGS=$!
for d in fl-1 fl-2 fl-3 fl-4; do
    pkt=$(python3 -c 'import sys; t = b"devices/%s/telemetry/s" % sys.argv[1].encode(); body = len(t).to_bytes(2, "big") + t + b"x" * 64; print((bytes([0x31, len(body)]) + body).hex())' "$d")
    SRC=127.0.4.1 timeout 30 python3 "$(dirname "$0")/mqtt_flood.py" "$HUB_PORT" "$D/ca/root.crt" \
        "$T/$d.op.pem" "$T/$d.op.key" "$d" 4 4 "$pkt" >"$T/fl-$d.out" 2>&1 &
done
wait "$REGS"
sleep 4
equals "every registration during the flood answered 200" "$(sort -u "$T/rg.out")" 200
check "the flood's retained writes beyond the share are refused, with an event" \
    event_with hub.retained_refused '.detail.reason | test("store is busy")'
stop_kfd
finish
