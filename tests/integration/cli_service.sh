#!/bin/bash
# Service identities for back-end applications on the hub: add (a key made here, or the
# service's own CSR), issue, list, show, revoke; judged by openssl, with every refusal leaving
# the store as it was.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d

# A new key made here: 0600, never over a file; the certificate carries the name and the role.
ok "add a reader" service add --name dashboard --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
contains "says what it made" "$OUT" "service dashboard (reader): certificate"
equals "the key is 0600" "$(stat -c %a "$T/dash.key")" 600
check "the key and the certificate belong together" sh -c \
    "test \"\$(openssl pkey -in '$T/dash.key' -pubout)\" = \"\$(openssl x509 -in '$T/dash.pem' -pubkey -noout)\""
check "openssl verifies it as a TLS client" openssl verify -purpose sslclient -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$T/dash.pem"
text=$(openssl x509 -in "$T/dash.pem" -noout -text)
contains "CN is the name" "$text" "CN = dashboard"
contains "OU is the role" "$text" "OU = reader"
contains "service URI SAN" "$text" "URI:urn:keyfleet:service:dashboard"
contains "role URI SAN" "$text" "URI:urn:keyfleet:role:reader"
contains "client authentication only" "$text" "TLS Web Client Authentication"
check_not "no device URI" grep -q "urn:keyfleet:device" <<<"$text"
nb=$(date -d "$(openssl x509 -in "$T/dash.pem" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -d "$(openssl x509 -in "$T/dash.pem" -noout -enddate | cut -d= -f2)" +%s)
check "service_cert_days (365)" test $((na - nb)) -ge $((365 * 86400)) -a $((na - nb)) -le $((365 * 86400 + 120))

# The service's own key, by CSR.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ops.key" \
    -out "$T/ops.csr" -subj /CN=ops 2>/dev/null
ok "add a commander from its CSR" service add --name ops --role commander --csr "$T/ops.csr" --json
equals "json: role" "$(jq -r .role <<<"$OUT")" commander
jq -r .pem <<<"$OUT" >"$T/ops.pem"
contains "commander role in the certificate" "$(openssl x509 -in "$T/ops.pem" -noout -ext subjectAltName)" \
    "urn:keyfleet:role:commander"
check "the chain is in the answer" sh -c "test \$(grep -c BEGIN '$T/ops.pem') -eq 2"

# Refusals: each says why and changes nothing.
before=$(store_state)
refused "duplicate name" 1 "service dashboard already exists" service add --name dashboard --role reader --key-out "$T/x.key"
check_not "no key left behind for a refusal" test -e "$T/x.key"
refused "unknown role" 2 "--role is reader or commander" service add --name x --role admin --key-out "$T/x.key"
refused "bad name" 1 "service name" service add --name "Not Valid" --role reader --key-out "$T/x.key"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/w.key" \
    -out "$T/w.csr" -subj /CN=someone-else 2>/dev/null
refused "CSR for another name" 1 "is not the expected \"web\"" service add --name web --role reader --csr "$T/w.csr"
openssl req -new -newkey rsa:1024 -nodes -keyout "$T/weak.key" -out "$T/weak.csr" -subj /CN=web 2>/dev/null
refused "a weak key" 1 "at least 2048 bits" service add --name web --role reader --csr "$T/weak.csr"
refused "no key source" 2 "give --csr FILE" service add --name web --role reader
refused "both key sources" 2 "give --csr FILE" service add --name web --role reader --csr "$T/w.csr" --key-out "$T/y.key"
refused "key file exists" 1 "dash.key" service add --name web --role reader --key-out "$T/dash.key"
refused "too long" 1 "more than the 365 days" service add --name web --role reader --key-out "$T/z.key" --days 400
refused "issue for nobody" 1 "service ghost not found" service issue ghost --key-out "$T/g.key"
unchanged "refusals change nothing" "$before"

# Another certificate; the listing and the record.
ok "issue a second certificate" service issue dashboard --key-out "$T/dash2.key" --out "$T/dash2.pem"
ok "list" service list --json
equals "two services" "$(jq length <<<"$OUT")" 2
equals "dashboard has two valid certificates" "$(jq '.[] | select(.name == "dashboard") | .valid_certificates' <<<"$OUT")" 2
ok "show" service show dashboard --json
equals "show: two certificates" "$(jq '.certificates | length' <<<"$OUT")" 2
equals "show: they are service certificates of it" "$(jq -r '[.certificates[].service] | unique | join(",")' <<<"$OUT")" dashboard
ok "table" service list
contains "table names the role" "$OUT" "dashboard  reader"

# Revocation: final, every certificate, in the CRL, audited.
s1=$(openssl x509 -in "$T/dash.pem" -noout -serial | cut -d= -f2)
s2=$(openssl x509 -in "$T/dash2.pem" -noout -serial | cut -d= -f2)
ok "revoke" service revoke dashboard --reason key-compromise
contains "revoke says how many" "$OUT" "2 certificates revoked; CRL published"
crl=$(openssl crl -in "$D/ca/crl.pem" -noout -text)
contains "first serial in the CRL" "$crl" "$s1"
contains "second serial in the CRL" "$crl" "$s2"
check_not "openssl refuses the revoked certificate" openssl verify -crl_check -CRLfile "$D/ca/crl.pem" \
    -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" "$T/dash.pem"
refused "revoked twice" 1 "service dashboard is already revoked" service revoke dashboard
refused "no certificate for a revoked service" 1 "service dashboard is revoked" service issue dashboard --key-out "$T/r.key"
ok "the other stays" service show ops --json
equals "ops active" "$(jq -r .status <<<"$OUT")" active
ok "audit" audit list --json
check "audited" sh -c "jq -e '[.[].action] | (index(\"service.add\") and index(\"service.revoke\"))' '$T/out' >/dev/null"
ok "audit verify" audit verify
# Bare file names mean the current directory.
mkdir "$T/here"
(cd "$T/here" && "$KF" --dir "$T/d" service add --name bare --role reader --key-out bare.key --out bare.pem) \
    >"$T/out" 2>&1
equals "bare file names are written in the current directory" "$?" 0
check "both files are there" test -s "$T/here/bare.key" -a -s "$T/here/bare.pem"
finish
