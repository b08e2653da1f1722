#!/bin/bash
# keyfleet-agent against bad input: a provisioning server its trust anchor does not vouch for, a
# hub that presents another name, a corrupt stored certificate, a bad configuration. Each is
# refused, reported, and leaves the device's state intact.
. "$(dirname "$0")/lib.sh"

ok "init" init
# the hub also answers on 127.0.0.2, a name its certificate does not carry
KFD_HUB_ADDR=0.0.0.0 start_kfd || exit 1
ok "hub" hub add --name hub-1 --endpoint "127.0.0.1:$HUB_PORT"
mkca fca
group_enroll factory fca
mkca other
fdev dev-b fca

# 1. a provisioning server that does not chain to the trust anchor
AGENT_ANCHOR="$T/other.pem" agent_conf t1 "$T/dev-b.pem" "$T/dev-b.key" "user = root"
start_agent t1
check "the server is refused" wait_log t1 "device.tls_failed" 10
contains "naming the certificate problem" "$(cat "$T/t1.log")" "unable to get local issuer certificate"
check "device.tls_failed is queued for the fleet" grep -q '"type":"device.tls_failed".*"peer":"provisioning"' "$T/t1.data/events.log"
check "device.provisioning_failed too" grep -q '"type":"device.provisioning_failed"' "$T/t1.data/events.log"
check_not "no identity was made" test -e "$T/t1.data/identity.json"
check_not "no key was left behind" sh -c "ls '$T/t1.data' | grep -q '\\.key\$'"
ok "device list" device list --json
equals "keyfleetd issued nothing" "$(jq '[.[] | select(.id == "dev-b")] | length' <<<"$OUT")" 0
sleep 2
equals "a repeated failure is reported once" "$(grep -c '"type":"device.tls_failed"' "$T/t1.data/events.log")" 1
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"

# 2. a hub that presents another name than the one the device was sent to
agent_conf t2 "$T/dev-b.pem" "$T/dev-b.key" "user = root" "hub = 127.0.0.2:$HUB_PORT"
start_agent t2
check "provisioned" wait_file "$T/t2.data/identity.json"
cp "$T/t2.data/identity.json" "$T/t2.identity.before"
check "the hub is refused" wait_log t2 "device.tls_failed" 10
contains "for its name" "$(cat "$T/t2.log")" "IP address mismatch"
check "reported with the hub as the peer" grep -q '"peer":"hub"' "$T/t2.data/events.log"
check_not "the hub saw no MQTT session" event_with hub.connected '.detail.id == "dev-b"'
check "the identity is untouched" cmp "$T/t2.identity.before" "$T/t2.data/identity.json"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
equals "still a clean exit" "$?" 0

# ... and once pointed at the right name, the queued reports reach the fleet
agent_conf t2 "$T/dev-b.pem" "$T/dev-b.key" "user = root"
start_agent t2
check "connects under its real name" event_with hub.connected '.detail.id == "dev-b"'
check "the queued hub failure arrives" event_with device.tls_failed '.device == "dev-b" and .detail.peer == "hub"'
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"

# 3. a corrupt stored certificate: set aside, reported, and the factory identity provisions anew
sed -i 's/MII/MIX/' "$T/t2.data/identity.json"
cp "$T/t2.data/identity.json" "$T/t2.corrupt.before"
start_agent t2
check "it says the stored identity is unusable" wait_log t2 "the stored identity is unusable" 10
check "the corrupt file is kept aside as it was" cmp "$T/t2.corrupt.before" "$T/t2.data/identity.json.corrupt"
check "a new identity" wait_log t2 "msg=provisioned" 10
check "which verifies" sh -c "jq -r .certificate '$T/t2.data/identity.json' >'$T/new.pem' && openssl verify -CAfile '$T/d/ca/root.crt' -untrusted '$T/new.pem' '$T/new.pem'"
check "device.identity_corrupt reaches the fleet" event_with device.identity_corrupt '.device == "dev-b"'
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"

# 4. bad configuration and flags: clear errors, nothing started
printf '[device]\nprovisioning_url = http://x\n' >"$T/bad.conf"
"$AGENT" --config "$T/bad.conf" >/dev/null 2>"$T/err"
equals "an incomplete config exits 1" "$?" 1
contains "naming what is missing" "$(cat "$T/err")" "needs provisioning_url, factory_cert"
printf '[device]\nkeep_alive = 1\n' >"$T/bad.conf"
"$AGENT" --config "$T/bad.conf" >/dev/null 2>"$T/err"
contains "a bad value names its line" "$(cat "$T/err")" "line 2"
printf '[commands]\nreboot = reboot\n' >"$T/bad.conf"
"$AGENT" --config "$T/bad.conf" >/dev/null 2>"$T/err"
contains "a handler must be a path" "$(cat "$T/err")" "absolute path"
agent_conf t4 "$T/dev-b.pem" "$T/missing.key"
"$AGENT" --config "$T/t4.conf" >/dev/null 2>"$T/err"
equals "a missing factory key exits 1" "$?" 1
contains "naming it" "$(cat "$T/err")" "$T/missing.key"
"$AGENT" --bogus >/dev/null 2>&1
equals "a bad flag exits 2" "$?" 2
"$AGENT" --help >"$T/help"
contains "--help explains" "$(cat "$T/help")" "SIGUSR1 renews"
agent_conf t5 "$T/dev-b.pem" "$T/dev-b.key"
"$AGENT" --config "$T/t5.conf" --check >"$T/out"
equals "--check passes a good config" "$?" 0
contains "and says where the key is" "$(cat "$T/out")" "factory key in file"
finish
