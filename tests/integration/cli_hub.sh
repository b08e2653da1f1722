#!/bin/bash
# keyfleet hub, and the hub allocation of enrollments: hubs added, listed, shown with their devices,
# enabled, disabled, re-weighted and removed; enrollments given a static hub or hashed allocation
# at creation and later; every refusal with its exit code, a clear error and the store unchanged;
# every change in the audit log.
. "$(dirname "$0")/lib.sh"

ok "init" init
mkca factory
mkca other
mkdev dev-1 factory
openssl pkey -in "$T/dev-1.key" -pubout -out "$T/dev-1.pub" 2>/dev/null

# ---- hubs ----
kf hub list
equals "no hubs yet: exit 0" "$RC" 0
contains "no hubs yet: says so" "$ERR" "no hubs"
ok "empty list --json" hub list --json
equals "empty JSON list" "$(jq -c . <<<"$OUT")" "[]"

ok "add hub-a" hub add --name hub-a --endpoint MQTT-A.Example.com:8883
contains "add says so" "$OUT" "hub hub-a added: mqtt-a.example.com:8883, weight 1"
ok "add hub-b --json" hub add --name hub-b --endpoint '[2001:DB8:0:0::7]:08883' --weight 3 --json
equals "canonical IPv6 endpoint" "$(jq -r .endpoint <<<"$OUT")" "[2001:db8::7]:8883"
equals "weight given" "$(jq -r .weight <<<"$OUT")" 3
equals "enabled" "$(jq -r .enabled <<<"$OUT")" true
ok "add hub-c, weight 0" hub add --name hub-c --endpoint 192.0.2.10:1883 --weight 0
contains "weight 0 explained" "$OUT" "takes no new devices"

ok "list --json" hub list --json
equals "three hubs in name order" "$(jq -r 'map(.name) | join(",")' <<<"$OUT")" "hub-a,hub-b,hub-c"
equals "endpoints as stored" "$(jq -r 'map(.endpoint) | join(",")' <<<"$OUT")" \
    "mqtt-a.example.com:8883,[2001:db8::7]:8883,192.0.2.10:1883"
equals "weights" "$(jq -r 'map(.weight) | join(",")' <<<"$OUT")" "1,3,0"
equals "all enabled" "$(jq -r 'map(.enabled) | all' <<<"$OUT")" true
ok "list table" hub list
contains "table header" "$OUT" "NAME"
contains "table row" "$OUT" "mqtt-a.example.com:8883"
ok "show --json" hub show hub-a --json
equals "show name" "$(jq -r .name <<<"$OUT")" hub-a
equals "no devices yet" "$(jq -r .devices <<<"$OUT")" 0
equals "no static enrollments" "$(jq -c .static_enrollments <<<"$OUT")" "[]"
ok "show text" hub show --name hub-b
contains "show text endpoint" "$OUT" "[2001:db8::7]:8883"
contains "show text devices" "$OUT" "0 (0 active)"

# Refusals: exit 1 for what the service refuses, 2 for usage; the store as it was.
before=$(store_state)
refused "duplicate name" 1 "a hub named hub-a already exists" hub add --name hub-a --endpoint other.example:8883
refused "duplicate endpoint" 1 "hub hub-a already has endpoint mqtt-a.example.com:8883" \
    hub add --name hub-d --endpoint mqtt-a.example.com:8883
refused "no port" 1 "hub endpoint \"hub-d.example\" has no port" hub add --name hub-d --endpoint hub-d.example
refused "port 0" 1 "the port must be a number from 1 to 65535" hub add --name hub-d --endpoint hub-d.example:0
refused "port too big" 1 "the port must be a number from 1 to 65535" hub add --name hub-d --endpoint hub-d.example:65536
refused "bare IPv6" 1 "an IPv6 address goes in brackets" hub add --name hub-d --endpoint ::1:8883
refused "not IPv6 in brackets" 1 "what is in brackets is not an IPv6 address" hub add --name hub-d --endpoint '[10.0.0.1]:8883'
refused "wildcard" 1 "the host is a wildcard" hub add --name hub-d --endpoint '*.example.com:8883'
refused "bad host" 1 "\"bad_host\" is neither a DNS name nor an IPv4 address" hub add --name hub-d --endpoint bad_host:8883
refused "bad name" 1 "hub name \"Hub-D\" must start with a lower-case letter" hub add --name Hub-D --endpoint hub-d.example:8883
refused "weight too big" 2 "--weight must be a whole number from 0 to 1000" hub add --name hub-d --endpoint hub-d.example:8883 --weight 1001
refused "weight negative" 2 "--weight must be a whole number from 0 to 1000" hub add --name hub-d --endpoint hub-d.example:8883 --weight -1
refused "weight not a number" 2 "--weight must be a whole number" hub add --name hub-d --endpoint hub-d.example:8883 --weight many
refused "no --name" 2 "--name is required" hub add --endpoint hub-d.example:8883
refused "no --endpoint" 2 "--endpoint is required" hub add --name hub-d
refused "extra argument" 2 "unexpected argument 'x'" hub add --name hub-d --endpoint hub-d.example:8883 x
refused "show unknown" 1 "hub hub-z not found" hub show hub-z
refused "show without a name" 2 "which hub? give its NAME" hub show
refused "enable unknown" 1 "hub hub-z not found" hub enable hub-z
refused "weight of unknown" 1 "hub hub-z not found" hub weight hub-z 5
refused "weight without a value" 2 "give the new weight" hub weight hub-a
refused "weight out of range" 2 "the weight must be a whole number from 0 to 1000" hub weight hub-a 5000
refused "remove unknown" 1 "hub hub-z not found" hub remove hub-z
refused "unknown subcommand" 2 "hub has no subcommand 'rename'" hub rename hub-a
unchanged "every refusal above" "$before"

# Enable, disable, weight.
ok "disable" hub disable hub-b --json
equals "disabled, changed" "$(jq -c '[.enabled, .changed]' <<<"$OUT")" "[false,true]"
ok "disable again" hub disable hub-b
contains "says it already was" "$OUT" "hub hub-b was already disabled"
ok "shows disabled" hub show hub-b --json
equals "enabled false" "$(jq -r .enabled <<<"$OUT")" false
ok "enable" hub enable hub-b
contains "enable says so" "$OUT" "hub hub-b enabled"
ok "weight" hub weight hub-c 10 --json
equals "new weight, changed" "$(jq -c '[.weight, .changed]' <<<"$OUT")" "[10,true]"
ok "same weight" hub weight hub-c 10
contains "says it already had it" "$OUT" "already had weight 10"
ok "weight by option" hub weight --name hub-c --weight 0
ok "weight kept" hub show hub-c --json
equals "weight 0" "$(jq -r .weight <<<"$OUT")" 0

# ---- enrollments and their allocation ----
ok "add with --hub" enrollment add --id dev-1 --cert "$T/dev-1.pem" --hub hub-a
contains "add says static" "$OUT" "static allocation to hub hub-a"
ok "show --json" enrollment show dev-1 --json
equals "static" "$(jq -r .allocation <<<"$OUT")" static
equals "hub named" "$(jq -r .hub <<<"$OUT")" hub-a
ok "show text" enrollment show dev-1
contains "text allocation" "$OUT" "allocation       static"
contains "text hub" "$OUT" "hub              hub-a"
ok "add hashed by default" enrollment add --id dev-2 --pubkey "$T/dev-1.pub" --json
equals "hashed" "$(jq -r .allocation <<<"$OUT")" hashed
equals "no hub" "$(jq -r .hub <<<"$OUT")" null
ok "group with a static hub" enrollment group create --name fab --ca "$T/factory.pem" --allocation static --hub hub-b --json
equals "group allocation" "$(jq -r .allocation <<<"$OUT")" static
ok "group shows its hub" enrollment show fab --json
equals "group hub" "$(jq -r .hub <<<"$OUT")" hub-b

before=$(store_state)
refused "static without a hub" 2 "static allocation needs a hub: give --hub NAME" \
    enrollment add --id dev-3 --pubkey "$T/dev-1.pub" --allocation static
refused "hashed with a hub" 2 "it does not go with --allocation hashed" \
    enrollment add --id dev-3 --pubkey "$T/dev-1.pub" --allocation hashed --hub hub-a
refused "unknown allocation" 2 "--allocation is hashed or static" \
    enrollment add --id dev-3 --pubkey "$T/dev-1.pub" --allocation sticky
refused "a hub that does not exist" 1 "hub hub-z does not exist" \
    enrollment add --id dev-3 --pubkey "$T/dev-1.pub" --hub hub-z
refused "a bad hub name" 1 "hub name \"Hub A\"" enrollment add --id dev-3 --pubkey "$T/dev-1.pub" --hub "Hub A"
refused "group: a hub that does not exist" 1 "hub hub-z does not exist" \
    enrollment group create --name fab2 --ca "$T/other.pem" --hub hub-z
refused "verify takes no --hub" 2 "go with group create" enrollment group verify --name fab --cert x --hub hub-a
refused "remove a hub named by an enrollment" 1 \
    "hub hub-a is the static hub of enrollment dev-1; give that enrollment another hub first" hub remove hub-a
refused "set: nothing to change" 2 "nothing to change" enrollment set dev-1
refused "set: networks and any" 2 "give --networks or --any-network, not both" \
    enrollment set dev-1 --networks 10.0.0.0/8 --any-network
refused "set: static without a hub" 2 "static allocation needs a hub" enrollment set dev-2 --allocation static
refused "set: hashed with a hub" 2 "it does not go with --allocation hashed" enrollment set dev-1 --allocation hashed --hub hub-b
refused "set: no such hub" 1 "hub hub-z does not exist" enrollment set dev-1 --hub hub-z
refused "set: no such enrollment" 1 "enrollment dev-9 not found" enrollment set dev-9 --hub hub-a
refused "set: bad networks" 1 "has host bits set" enrollment set dev-1 --networks 10.0.0.1/8
refused "set: no id" 2 "which enrollment? give its ID" enrollment set --hub hub-a
unchanged "every refusal above" "$before"

ok "set: another hub" enrollment set dev-1 --hub hub-b --json
equals "set: changed" "$(jq -r .changed <<<"$OUT")" true
equals "set: the new hub" "$(jq -r .hub <<<"$OUT")" hub-b
ok "set: the same again" enrollment set dev-1 --hub hub-b --json
equals "set: unchanged" "$(jq -r .changed <<<"$OUT")" false
ok "set: networks" enrollment set dev-1 --networks "192.168.0.0/16, 10.0.0.0/8"
contains "set: says so" "$OUT" "networks 192.168.0.0/16,10.0.0.0/8"
ok "set: any network" enrollment set dev-1 --any-network --json
equals "set: networks gone" "$(jq -r .networks <<<"$OUT")" null
ok "set: hashed" enrollment set dev-1 --allocation hashed
ok "set: hashed shown" enrollment show dev-1 --json
equals "hashed now" "$(jq -r .allocation <<<"$OUT")" hashed
equals "hub cleared" "$(jq -r .hub <<<"$OUT")" null
ok "set: a group's hub, positional id" enrollment set fab --hub hub-c
ok "hub-c named by fab" hub show hub-c --json
equals "static enrollments of hub-c" "$(jq -c .static_enrollments <<<"$OUT")" '["fab"]'

# ---- devices on a hub (as keyfleetd's provisioning records them) ----
sqlite3 "$T/d/keyfleet.db" "INSERT INTO devices (id, enrollment, status, hub, created, updated) VALUES
    ('d-1', NULL, 'active', 'hub-a', 1, 1), ('d-2', NULL, 'disabled', 'hub-a', 1, 1),
    ('d-3', NULL, 'active', 'hub-a', 1, 1), ('d-4', NULL, 'active', 'hub-b', 1, 1)"
ok "show counts devices" hub show hub-a --json
equals "devices on hub-a" "$(jq -r .devices <<<"$OUT")" 3
equals "active devices on hub-a" "$(jq -r .active_devices <<<"$OUT")" 2
ok "show text counts devices" hub show hub-a
contains "text counts" "$OUT" "3 (2 active)"

# Removing: hub-a is no longer named by dev-1, so it goes; its devices keep the name until they
# next register.
ok "remove hub-a" hub remove hub-a
contains "remove says what happens to its devices" "$OUT" "its devices get another hub when they next register"
refused "removed" 1 "hub hub-a not found" hub show hub-a
ok "device keeps the hub name" device show d-1 --json
equals "device hub" "$(jq -r .hub <<<"$OUT")" hub-a
ok "remove --json" hub remove hub-b --json
equals "removed" "$(jq -r .removed <<<"$OUT")" true
ok "two hubs gone" hub list --json
equals "one hub left" "$(jq -r 'map(.name) | join(",")' <<<"$OUT")" hub-c

# ---- help ----
ok "hub --help" hub --help
contains "lists hub add" "$OUT" "add"
contains "lists hub weight" "$OUT" "set a hub's share of hashed allocation"
ok "hub add --help" hub add --help
contains "explains the weight" "$OUT" "0 takes no new"
ok "enrollment set --help" enrollment set --help
contains "explains --any-network" "$OUT" "--any-network"
ok "top-level help" --help
contains "overview lists hub show" "$OUT" "hub show"

# ---- the audit log ----
ok "audit" audit list --json
for a in hub.add hub.remove hub.enable hub.disable hub.weight enrollment.update; do
    check "audited $a" sh -c "jq -e 'map(.action) | index(\"$a\")' '$T/out' >/dev/null"
done
equals "hub.add detail" "$(jq -c '[.[] | select(.action == "hub.add" and .object == "hub:hub-b")][0].detail' "$T/out")" \
    '{"enabled":true,"endpoint":"[2001:db8::7]:8883","weight":3}'
equals "hub.weight details" "$(jq -c '[.[] | select(.action == "hub.weight") | .detail]' "$T/out")" \
    '[{"previous":0,"weight":10},{"previous":10,"weight":0}]'
equals "hub.remove detail" "$(jq -c '[.[] | select(.action == "hub.remove")][0].detail' "$T/out")" \
    '{"enabled":true,"endpoint":"mqtt-a.example.com:8883","weight":1}'
equals "one hub.disable, one hub.enable" \
    "$(jq -c '[.[] | select(.action == "hub.disable" or .action == "hub.enable") | .action]' "$T/out")" \
    '["hub.disable","hub.enable"]'
equals "enrollment.update details" \
    "$(jq -c '[.[] | select(.action == "enrollment.update" and .object == "enrollment:dev-1") | .detail]' "$T/out")" \
    '[{"hub":"hub-b"},{"networks":"192.168.0.0/16,10.0.0.0/8"},{"networks":null},{"allocation":"hashed","hub":null}]'
equals "enrollment.add records the allocation" \
    "$(jq -c '[.[] | select(.action == "enrollment.add" and .object == "enrollment:dev-1")][0].detail | [.allocation, .hub]' "$T/out")" \
    '["static","hub-a"]'
ok "audit verify" audit verify

finish
