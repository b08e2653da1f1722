#!/bin/bash
# Attack: a device whose id is a service's name takes over that service's MQTT session. The
# broker keyed sessions by the bare client id, so a device provisioned as "dash", connecting with
# clean start off, got session_present=1 and every device's telemetry that the reader service
# "dash" had subscribed to, and could kick the service off at will. Now:
#   - provisioning, `enrollment add`, `cert issue` refuse a device id that is a service's name,
#     and `service add` a name that is a device's id, each with a clear error and an event;
#   - where both exist anyway (a store from before the rule), the hub keeps them apart: no shared
#     session, queue, will, flapping counter or ban.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
start_kfd || exit 1
ok "the reader service dash" service add --name dash --role reader --key-out "$T/dash.key" \
    --out "$T/dash.pem"

# ---- a device may not take a service's name ----
fdev dash fca
ocsr dash
before=$(store_state security_events sqlite_sequence audit_checkpoints)
register "$T/dash.pem" "$T/dash.key" "$T/dash.op.csr"
expect_refusal "provisioning the device id dash" 409 name_conflict "is the name of a service"
est simpleenroll "$T/dash.pem" "$T/dash.key" "$T/dash.op.csr"
expect_refusal "... over EST" 409 name_conflict "device ids and service names are never the same"
unchanged "the store is unchanged" "$before" security_events sqlite_sequence audit_checkpoints
check "provisioning.denied name_conflict" event_with provisioning.denied \
    '.detail.reason == "name_conflict" and .detail.id == "dash"'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ind.key" \
    -out "$T/ind.pem" -subj /CN=dash -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
refused "enrollment add --id dash" 1 "is the name of a service" enrollment add --id dash \
    --cert "$T/ind.pem"
refused "cert issue --device dash" 1 "is the name of a service" cert issue --device dash \
    --csr "$T/dash.op.csr"

# ---- a service may not take a device's name ----
provision dev-1
refused "service add --name dev-1" 1 "is the id of a device" service add --name dev-1 \
    --role commander --key-out "$T/svc.key"
check "registry.name_conflict for the service" event_with registry.name_conflict \
    '.detail.name == "dev-1" and .detail.wanted_as == "service" and .detail.actor != null'
check "registry.name_conflict for the individual enrollment" event_with registry.name_conflict \
    '.detail.name == "dash" and .detail.wanted_as == "device"'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/i2.key" \
    -out "$T/i2.pem" -subj /CN=ind-2 -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
ok "an individual enrollment ind-2" enrollment add --id ind-2 --cert "$T/i2.pem"
refused "service add --name ind-2 (an enrolled registration id)" 1 \
    "registration id of an individual enrollment" service add --name ind-2 --role reader \
    --key-out "$T/svc.key"

# ---- a store from before the rule: a device and a service both named "shared" ----
ok "service shared" service add --name shared --role reader --key-out "$T/svc-shared.key" \
    --out "$T/svc-shared.pem"
row=$(sqlite3 "$D/keyfleet.db" "SELECT quote(name), quote(role), quote(status), created, updated FROM services WHERE name = 'shared'")
sqlite3 "$D/keyfleet.db" "DELETE FROM services WHERE name = 'shared'"
fdev shared fca
ocsr shared
register "$T/shared.pem" "$T/shared.key" "$T/shared.op.csr"
equals "(the old rules let a device shared in)" "$HTTP" 200
jq -r .certificate <<<"$BODY" >"$T/shared.op.pem"
sqlite3 "$D/keyfleet.db" "INSERT INTO services (name, role, status, created, updated) VALUES ($(tr '|' , <<<"$row"))"
equals "both exist" "$(sqlite3 "$D/keyfleet.db" "SELECT count(*) FROM services WHERE name='shared'")$(sqlite3 "$D/keyfleet.db" "SELECT count(*) FROM devices WHERE id='shared'")" 11
provision dev-2

# The service subscribes with a persistent session, then goes away; dev-2's telemetry queues.
timeout 5 mosquitto_sub -h 127.0.0.1 -p "$HUB_PORT" --cafile "$D/ca/root.crt" --cert "$T/svc-shared.pem" \
    --key "$T/svc-shared.key" -i shared -c -q 1 -t 'devices/+/telemetry' -W 1 >/dev/null 2>&1
pub dev-2 -t devices/dev-2/telemetry -m secret-telemetry -q 1
equals "dev-2 publishes" "$RC" 0
# The device "shared" asks for its persistent session: it must get a session of its own.
raw shared C4:shared
contains "the device's CONNACK says no session was present" "$RAW" "2 20020000"
check_not "and it is given none of the service's queued telemetry" grep -q '^3 ' <<<"$RAW"
raw shared C5:shared
check "MQTT 5: accepted, resuming the device's own session (from the line above)" \
    grep -Eq '^2 20..0100' <<<"$RAW"
check_not "... with nothing of the service's in it" grep -q '^3 ' <<<"$RAW"
# The service's session is intact: its queued message is still there for it.
timeout 5 mosquitto_sub -h 127.0.0.1 -p "$HUB_PORT" --cafile "$D/ca/root.crt" --cert "$T/svc-shared.pem" \
    --key "$T/svc-shared.key" -i shared -c -q 1 -t 'devices/+/telemetry' -W 2 >"$T/svc.out" 2>&1
contains "the service still gets what was queued for it" "$(cat "$T/svc.out")" secret-telemetry

# The device cannot kick the connected service off.
mosquitto_sub -h 127.0.0.1 -p "$HUB_PORT" --cafile "$D/ca/root.crt" --cert "$T/svc-shared.pem" \
    --key "$T/svc-shared.key" -i shared -t 'devices/+/telemetry' -q 1 >"$T/svc.out" 2>&1 &
SUB_svc=$!
sleep 0.5
raw shared c4:shared
pub dev-2 -t devices/dev-2/telemetry -m after-the-device -q 1
check "the service stays connected and receives" wait_for svc after-the-device
check_not "no session_taken_over for the service" event_with hub.disconnected \
    '.detail.identity == "reader" and .detail.reason == "session_taken_over"'
kill "$SUB_svc" 2>/dev/null

# Nor share its flapping ban: the device flaps, the service still connects.
conf_set hub flap_connects 5
conf_set hub flap_ban_s 60
kill -HUP "$KFD_PID"
sleep 0.5
for n in 1 2 3 4; do raw shared c4:shared "e0 00"; done
check "the device shared is banned for flapping" event_with hub.flapping '.device == "shared"'
raw shared c4:shared
contains "the device is refused while banned" "$RAW" "2 20020005"
kf events list --type hub.connected --json
svc_connects=$(jq '[.[] | select(.detail.id == "shared" and .detail.identity == "reader")] | length' <<<"$OUT")
timeout 5 mosquitto_sub -h 127.0.0.1 -p "$HUB_PORT" --cafile "$D/ca/root.crt" --cert "$T/svc-shared.pem" \
    --key "$T/svc-shared.key" -i shared -t 'devices/+/telemetry' -W 1 >"$T/svc2.out" 2>&1
check "the service shared is not banned" event_with hub.connected \
    "[.detail.id, .detail.identity] == [\"shared\", \"reader\"]" 
kf events list --type hub.connected --json
equals "... it connected once more" \
    "$(jq '[.[] | select(.detail.id == "shared" and .detail.identity == "reader")] | length' <<<"$OUT")" \
    $((svc_connects + 1))

stop_kfd
finish
