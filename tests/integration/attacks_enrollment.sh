#!/bin/bash
# Attack: one verified group takes over another group's device. A factory certificate from
# group B's CA whose CN is the id of a device group A provisioned got a valid operational
# certificate for that device, moved it to group B, received its commands and published as it,
# also while group A was disabled. Now a device belongs to the enrollment that created it:
# another enrollment's identity for the id is refused (409 enrolled_elsewhere, a critical
# provisioning.denied event), the store is unchanged, and only `keyfleet device move`, audited,
# hands a device to another enrollment.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
mkca bca
group_enroll group-a fca
group_enroll group-b bca
start_kfd || exit 1
ok "hub" hub add --name hub-1 --endpoint "127.0.0.1:$HUB_PORT"

# The victim, provisioned by group A.
fdev victim fca
ocsr victim
register "$T/victim.pem" "$T/victim.key" "$T/victim.op.csr"
equals "group A provisions its device" "$HTTP" 200
jq -r .certificate <<<"$BODY" >"$T/victim.op.pem"

# The attacker holds group B's CA and makes a factory certificate with the victim's id.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil.key" \
    -out "$T/evil.fcsr" -subj "/CN=victim" 2>/dev/null
openssl x509 -req -in "$T/evil.fcsr" -CA "$T/bca.pem" -CAkey "$T/bca.key" -days 30 \
    -out "$T/evil.pem" 2>/dev/null
ocsr evil victim
before=$(store_state security_events sqlite_sequence enrollments meta audit audit_checkpoints)
register "$T/evil.pem" "$T/evil.key" "$T/evil.op.csr"
expect_refusal "group B's identity for group A's device (register)" 409 enrolled_elsewhere \
    "belongs to enrollment group-a"
contains "the refusal says how an operator moves it" "$(jq -r .message <<<"$BODY")" \
    "keyfleet device move victim --enrollment group-b"
est simpleenroll "$T/evil.pem" "$T/evil.key" "$T/evil.op.csr"
expect_refusal "... over EST" 409 enrolled_elsewhere "belongs to enrollment group-a"
ok "group A disabled" enrollment disable group-a
register "$T/evil.pem" "$T/evil.key" "$T/evil.op.csr"
expect_refusal "... while group A is disabled" 409 enrolled_elsewhere "group-a"
ok "group A enabled" enrollment enable group-a
unchanged "the device, its certificates and registration are untouched" "$before" \
    security_events sqlite_sequence enrollments meta audit audit_checkpoints
check "a critical provisioning.denied names the takeover" event_with provisioning.denied \
    '.severity == "critical" and .detail.reason == "enrolled_elsewhere" and .ip == "127.0.0.1"'
ok "device show" device show victim --json
equals "the device still belongs to group A" "$(jq -r .enrollment <<<"$OUT")" group-a

# An individual enrollment for the id, added later, cannot take it either.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ind.key" \
    -out "$T/ind.pem" -subj /CN=victim -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
ok "an individual enrollment for victim" enrollment add --id victim --cert "$T/ind.pem"
ocsr ind victim
register "$T/ind.pem" "$T/ind.key" "$T/ind.op.csr"
expect_refusal "an individual enrollment's identity" 409 enrolled_elsewhere "group-a"
ok "enrollment removed" enrollment remove victim

# The victim itself still works, and its commands reach it alone.
register "$T/victim.pem" "$T/victim.key" "$T/victim.op.csr"
equals "the owner re-registers" "$HTTP" 200

# The operator's explicit move, audited, then group B may provision it.
refused "move to a missing enrollment" 1 "no enrollment nope" device move victim --enrollment nope
refused "move without --enrollment" 2 "--enrollment" device move victim
ok "move" device move victim --enrollment group-b
contains "move says from and to" "$OUT" "moved from enrollment group-a to group-b"
ok "audit" audit list --json
equals "device.move is audited with from and to" \
    "$(jq -c '[.[] | select(.action == "device.move")][0].detail' <<<"$OUT")" \
    '{"from":"group-a","to":"group-b"}'
ok "audit verify" audit verify
register "$T/evil.pem" "$T/evil.key" "$T/evil.op.csr"
equals "after the move, group B's identity provisions it" "$HTTP" 200
register "$T/victim.pem" "$T/victim.key" "$T/victim.op.csr"
expect_refusal "and group A's no longer does" 409 enrolled_elsewhere "belongs to enrollment group-b"

stop_kfd
finish
