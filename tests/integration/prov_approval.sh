#!/bin/bash
# Deferred enrollment (RFC 7030 4.2.3: 202 and Retry-After) for enrollments with --approval
# manual, with `keyfleet enrollment pending | approve | reject`, their events and audit records;
# and proof of possession by TLS channel binding in the CSR's challengePassword (RFC 7030 3.5:
# tls-unique on TLS 1.2; RFC 9266: tls-exporter on TLS 1.3), checked when sent, required when the
# enrollment says so. curl, Python's ssl module and openssl s_client are the clients.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca factory
ok "a group that holds new devices" enrollment group create --name fab --ca "$T/factory.pem" --approval manual
code=$(jq -r .verification_code <<<"$("$KF" --dir "$D" --json enrollment show fab)")
openssl req -new -key "$T/factory.key" -subj "/CN=$code" -out "$T/pop.csr" 2>/dev/null
openssl x509 -req -in "$T/pop.csr" -CA "$T/factory.pem" -CAkey "$T/factory.key" -days 1 -out "$T/pop.pem" 2>/dev/null
ok "verify it" enrollment group verify --name fab --cert "$T/pop.pem"
ok "show" enrollment show fab --json
equals "approval manual shows" "$(jq -r .approval <<<"$OUT")" manual
refused "a bad approval mode" 2 "approval \"sometimes\" is unknown: it is auto or manual" \
    enrollment group create --name fab2 --ca "$T/factory.pem" --approval sometimes
conf_set provisioning approval_retry_after 7
start_kfd || exit 1

# ---- a new device waits: 202 with Retry-After (EST), "pending" (register) ----
fdev dev-1 factory
ocsr dev-1
est simpleenroll "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1.op.csr"
equals "EST: 202 while it waits" "$HTTP" 202
curl -s -o /dev/null -D "$T/h" --cacert "$D/ca/root.crt" --cert "$T/dev-1.pem" --key "$T/dev-1.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$T/req.b64" "$URL/.well-known/est/simpleenroll"
contains "EST: Retry-After as configured" "$(cat "$T/h")" "Retry-After: 7"
register "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1.op.csr"
equals "register: 202 too" "$HTTP" 202
equals "register: status pending" "$(jq -r .status <<<"$BODY")" pending
equals "register: retryAfter" "$(jq -r .retryAfter <<<"$BODY")" 7
contains "register: says what to do" "$(jq -r .message <<<"$BODY")" "keyfleet enrollment approve dev-1"
ok "pending lists it" enrollment pending --json
equals "one waits" "$(jq length <<<"$OUT")" 1
equals "it is dev-1, of fab" "$(jq -r '.[0].device + " " + .[0].enrollment + " " + .[0].state' <<<"$OUT")" "dev-1 fab pending"
equals "three requests counted" "$(jq -r '.[0].requests' <<<"$OUT")" 3
fp=$(openssl x509 -in "$T/dev-1.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
equals "the key that asked" "$(jq -r '.[0].key_fingerprint' <<<"$OUT")" "$fp"
ok "no device yet" device list --json
equals "no device was made" "$(jq length <<<"$OUT")" 0
check "a provisioning.pending event" event_with provisioning.pending '.device == "dev-1"'
ok "audit" audit list --json
check "an approval.request audit record" jq -e '[.[] | select(.action == "approval.request" and .object == "device:dev-1")] | length == 1' <<<"$OUT"

# ---- another key for the same id is refused while dev-1's request stands ----
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/imp.key" \
    -out "$T/imp.fcsr" -subj "/CN=dev-1" 2>/dev/null
openssl x509 -req -in "$T/imp.fcsr" -CA "$T/factory.pem" -CAkey "$T/factory.key" -days 30 -out "$T/imp.pem" 2>/dev/null
register "$T/imp.pem" "$T/imp.key" "$T/dev-1.op.csr"
expect_refusal "another factory key for a held id" 409 approval_conflict "waits for approval (or was decided) with another factory key"

# ---- approve: the next request gets its certificate ----
ok "approve" enrollment approve dev-1
contains "approve says so" "$OUT" "device dev-1 approved (enrollment fab): it gets its certificate when it next asks"
ok "approve again" enrollment approve dev-1
contains "approving twice changes nothing" "$OUT" "was already approved"
register "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1.op.csr"
equals "approved: 200" "$HTTP" 200
equals "approved: a certificate" "$(jq -r .deviceId <<<"$BODY")" dev-1
ok "pending is empty" enrollment pending
contains "nothing waits" "$OUT" "no device waits for approval"
ok "pending --all" enrollment pending --all --json
equals "dev-1 approved, by the operator" "$(jq -r '.[0].state + " " + .[0].decided_by' <<<"$OUT")" "approved $("$KF" --dir "$D" --json audit list | jq -r '[.[] | select(.action == "approval.approve")][0].actor')"
check "a provisioning.approved event" event_with provisioning.approved '.device == "dev-1"'

# ---- reject: refused from then on ----
fdev dev-2 factory
ocsr dev-2
register "$T/dev-2.pem" "$T/dev-2.key" "$T/dev-2.op.csr"
equals "dev-2 waits" "$HTTP" 202
ok "reject" enrollment reject dev-2
register "$T/dev-2.pem" "$T/dev-2.key" "$T/dev-2.op.csr"
expect_refusal "rejected" 403 approval_rejected "device dev-2 was rejected by"
check "a provisioning.rejected event" event_with provisioning.rejected '.device == "dev-2"'
ok "audit" audit list --json
check "approval.approve and approval.reject audited" jq -e '([.[] | select(.action == "approval.approve")] | length) == 1 and ([.[] | select(.action == "approval.reject" and .object == "device:dev-2")] | length) == 1' <<<"$OUT"
refused "a device that never asked" 1 "device nobody has not asked for approval" enrollment approve nobody
ok "audit verify" audit verify

# ---- auto approval is untouched; existing devices of a group switched to manual pass ----
ok "back to auto" enrollment set fab --approval auto
fdev dev-3 factory
ocsr dev-3
register "$T/dev-3.pem" "$T/dev-3.key" "$T/dev-3.op.csr"
equals "auto: 200 at once" "$HTTP" 200
ok "manual again" enrollment set fab --approval manual
register "$T/dev-3.pem" "$T/dev-3.key" "$T/dev-3.op.csr"
equals "a device that exists already is not held" "$HTTP" 200

# ---- channel binding: checked when sent ----
bind() { # bind ID TLS MODE: est_binding.py as device ID (a fresh factory certificate)
    BIND=$(timeout 40 python3 "$(dirname "$0")/est_binding.py" 127.0.0.1 "$KFD_PORT" "$D/ca/root.crt" \
        "$T/$1.pem" "$T/$1.key" "$1" "$2" "$3" 2>&1)
}
ok "auto for these" enrollment set fab --approval auto
for tls in 1.2 1.3; do
    kind=tls-unique
    [ "$tls" = 1.3 ] && kind=tls-exporter
    id=b${tls/./}
    fdev "$id-r" factory
    bind "$id-r" "$tls" right
    contains "TLS $tls: the right $kind binding: 200" "$BIND" "HTTP/1.1 200"
    fdev "$id-w" factory
    bind "$id-w" "$tls" wrong
    contains "TLS $tls: another connection's binding: 400" "$BIND" "HTTP/1.1 400"
    contains "TLS $tls: says which binding" "$BIND" "is not this TLS connection's $kind channel binding (RFC 7030 3.5)"
    fdev "$id-n" factory
    bind "$id-n" "$tls" none
    contains "TLS $tls: none, not required: 200" "$BIND" "HTTP/1.1 200"
done
# a password where the binding belongs is refused too
fdev pw factory
printf '[req]\ndistinguished_name=dn\nattributes=a\nprompt=no\n[dn]\nCN=pw\n[a]\nchallengePassword=hunter22\n' >"$T/pw.cnf"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/pw.op.key" \
    -out "$T/pw.op.csr" -config "$T/pw.cnf" 2>/dev/null
est simpleenroll "$T/pw.pem" "$T/pw.key" "$T/pw.op.csr"
expect_refusal "a challengePassword that is a password" 400 csr_rejected "keyfleet takes no passwords"

# ---- required by the enrollment ----
ok "require it" enrollment set fab --require-binding
for tls in 1.2 1.3; do
    id=q${tls/./}
    fdev "$id-n" factory
    bind "$id-n" "$tls" none
    contains "required, TLS $tls, none: 400" "$BIND" "HTTP/1.1 400"
    contains "required: says so" "$BIND" "enrollment fab requires proof of possession"
    fdev "$id-r" factory
    bind "$id-r" "$tls" right
    contains "required, TLS $tls, right: 200" "$BIND" "HTTP/1.1 200"
done
ok "no longer" enrollment set fab --no-require-binding
ok "show" enrollment show fab --json
equals "require_binding off again" "$(jq -r .require_binding <<<"$OUT")" false
finish
