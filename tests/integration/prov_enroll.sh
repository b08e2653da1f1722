#!/bin/bash
# keyfleetd provisioning, with curl and openssl as the devices: EST and the register API, group
# and individual enrollments, re-enrollment, and every refusal with its code, status and event.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
ok "a hub" hub add --name hub-a --endpoint hub-a.example:8883
mkca factory
mkca stranger
# The group, with proof of possession.
group_enroll fab factory
start_kfd || exit 1

# ---- the public EST endpoints ----
HTTP=$(curl -s -o "$T/cacerts" -D "$T/h" -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/.well-known/est/cacerts")
equals "cacerts answers" "$HTTP" 200
contains "cacerts content type" "$(cat "$T/h")" "application/pkcs7-mime"
subjects=$(openssl base64 -d -in "$T/cacerts" | openssl pkcs7 -inform DER -print_certs -noout | grep subject)
contains "cacerts has the issuing CA" "$subjects" "CN = keyfleet Issuing CA"
contains "cacerts has the root CA" "$subjects" "CN = keyfleet Root CA"
HTTP=$(curl -s -o "$T/attrs" -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/.well-known/est/csrattrs")
equals "csrattrs answers" "$HTTP" 200
check "csrattrs is DER the RFC way" sh -c "openssl base64 -d -in '$T/attrs' | openssl asn1parse -inform DER | grep -q prime256v1"
HTTP=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/healthz")
equals "healthz" "$HTTP" 200

# ---- a group device registers ----
fdev dev-1 factory
ocsr dev-1
register "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1.op.csr"
equals "register: 200" "$HTTP" 200
equals "deviceId" "$(jq -r .deviceId <<<"$BODY")" dev-1
equals "status" "$(jq -r .status <<<"$BODY")" assigned
equals "hub" "$(jq -r .hub <<<"$BODY")" hub-a.example:8883
jq -r .certificate <<<"$BODY" >"$T/dev-1.op.pem"
jq -j .trustBundle <<<"$BODY" >"$T/bundle.pem"
check "the trust bundle is the root" cmp -s "$T/bundle.pem" "$D/ca/root.crt"
check "the certificate verifies as a TLS client" openssl verify -purpose sslclient -CAfile "$T/bundle.pem" \
    -untrusted "$D/ca/issuing.crt" "$T/dev-1.op.pem"
check "the chain is in the answer" sh -c "test \$(grep -c BEGIN '$T/dev-1.op.pem') -eq 2"
contains "URI SAN" "$(openssl x509 -in "$T/dev-1.op.pem" -noout -ext subjectAltName)" "urn:keyfleet:device:dev-1"
check "the key certified is the CSR's" sh -c "test \"\$(openssl x509 -in '$T/dev-1.op.pem' -noout -pubkey)\" = \"\$(openssl req -in '$T/dev-1.op.csr' -noout -pubkey)\""
renew=$(date -d "$(jq -r .renewAfter <<<"$BODY")" +%s)
nb=$(date -d "$(openssl x509 -in "$T/dev-1.op.pem" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -d "$(openssl x509 -in "$T/dev-1.op.pem" -noout -enddate | cut -d= -f2)" +%s)
check "30 days" test $((na - nb)) -ge $((30 * 86400)) -a $((na - nb)) -le $((30 * 86400 + 120))
check "renewAfter at two thirds" test $((renew - nb - (na - nb) * 2 / 3)) -ge -2 -a $((renew - nb - (na - nb) * 2 / 3)) -le 2
serial1=$(openssl x509 -in "$T/dev-1.op.pem" -noout -serial | cut -d= -f2)

# Registering again: the same answer from the registration record, a fresh certificate.
ocsr dev-1b dev-1
register "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1b.op.csr"
equals "again: 200" "$HTTP" 200
equals "again: same device" "$(jq -r .deviceId <<<"$BODY")" dev-1
equals "again: same hub" "$(jq -r .hub <<<"$BODY")" hub-a.example:8883
serial2=$(jq -r .certificate <<<"$BODY" | openssl x509 -noout -serial | cut -d= -f2)
check "again: a new certificate" test "$serial1" != "$serial2"
ok "device show" device show dev-1 --json
equals "registered twice" "$(jq -r .registration.count <<<"$OUT")" 2
equals "device enrollment" "$(jq -r .enrollment <<<"$OUT")" fab
equals "device hub" "$(jq -r .hub <<<"$OUT")" hub-a
equals "two certificates" "$(jq '.certificates | length' <<<"$OUT")" 2
equals "registration source address" "$(jq -r .registration.source_ip <<<"$OUT")" 127.0.0.1

# ---- EST by hand ----
fdev dev-2 factory
ocsr dev-2
est simpleenroll "$T/dev-2.pem" "$T/dev-2.key" "$T/dev-2.op.csr"
equals "simpleenroll: 200" "$HTTP" 200
check "simpleenroll: openssl verifies it" openssl verify -purpose sslclient -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$EST_CERT"
cp "$EST_CERT" "$T/dev-2.op.pem"
old_serial=$(openssl x509 -in "$T/dev-2.op.pem" -noout -serial | cut -d= -f2 | tr A-F a-f | sed 's/^0*//')
# Re-enrollment with the operational certificate: same subject, the old one stays valid.
ocsr dev-2r dev-2
est simplereenroll "$T/dev-2.op.pem" "$T/dev-2.op.key" "$T/dev-2r.op.csr"
equals "simplereenroll: 200" "$HTTP" 200
equals "same subject" "$(openssl x509 -in "$EST_CERT" -noout -subject)" "$(openssl x509 -in "$T/dev-2.op.pem" -noout -subject)"
check "simplereenroll: openssl verifies it" openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" "$EST_CERT"
cp "$EST_CERT" "$T/dev-2.op2.pem"
ok "old certificate" cert show "$old_serial" --json
equals "the old certificate keeps working" "$(jq -r .status <<<"$OUT")" valid

# ---- individual enrollments win over groups ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ind-1.key" -out "$T/ind-1.pem" \
    -subj /CN=ind-1 -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
ok "individual by certificate" enrollment add --id ind-1 --cert "$T/ind-1.pem"
ocsr ind-1
register "$T/ind-1.pem" "$T/ind-1.key" "$T/ind-1.op.csr"
equals "individual: 200" "$HTTP" 200
ok "ind-1" device show ind-1 --json
equals "individual: its enrollment" "$(jq -r .enrollment <<<"$OUT")" ind-1
# Same CN, signed by the group's CA: the individual enrollment wins, and this is not its certificate.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ind-1x.key" \
    -subj /CN=ind-1 -out "$T/ind-1x.fcsr" 2>/dev/null
openssl x509 -req -in "$T/ind-1x.fcsr" -CA "$T/factory.pem" -CAkey "$T/factory.key" -days 30 -out "$T/ind-1x.pem" 2>/dev/null
register "$T/ind-1x.pem" "$T/ind-1x.key" "$T/ind-1.op.csr"
expect_refusal "individual wins over the group" 401 certificate_invalid "not the factory certificate enrolled for ind-1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/pk-1.key" -out "$T/pk-1.pem" \
    -subj /CN=pk-1 -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
openssl pkey -in "$T/pk-1.key" -pubout -out "$T/pk-1.pub"
ok "individual by public key" enrollment add --id pk-1 --pubkey "$T/pk-1.pub"
ocsr pk-1
register "$T/pk-1.pem" "$T/pk-1.key" "$T/pk-1.op.csr"
equals "by public key: 200" "$HTTP" 200

# ---- refusals: code, status, sentence, event ----
register "" "" "$T/dev-1.op.csr"
expect_refusal "no client certificate" 401 client_certificate_required "needs a client certificate"
fdev who-1 stranger
ocsr who-1
register "$T/who-1.pem" "$T/who-1.key" "$T/who-1.op.csr"
expect_refusal "unknown issuer, no enrollment" 404 enrollment_not_found "no enrollment for registration id who-1"
mkdir -p "$T/ca-db" && : >"$T/ca-db/index" && echo 01 >"$T/ca-db/serial"
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s/ca-db/index\nserial=%s/ca-db/serial\nnew_certs_dir=%s/ca-db\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' "$T" "$T" "$T" >"$T/ca.cnf"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/old-1.key" -out "$T/old-1.fcsr" -subj /CN=old-1 2>/dev/null
openssl ca -batch -config "$T/ca.cnf" -cert "$T/factory.pem" -keyfile "$T/factory.key" -in "$T/old-1.fcsr" \
    -startdate 20200101000000Z -enddate 20200102000000Z -out "$T/old-1.pem" >/dev/null 2>&1
ocsr old-1
register "$T/old-1.pem" "$T/old-1.key" "$T/old-1.op.csr"
expect_refusal "expired factory certificate" 401 certificate_invalid "expired"
ocsr dev-1-wrong dev-9
register "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1-wrong.op.csr"
expect_refusal "CSR for another id" 400 csr_rejected "is not the expected \"dev-1\""
openssl req -new -newkey rsa:1024 -nodes -keyout "$T/weak.key" -out "$T/weak.csr" -subj /CN=dev-1 2>/dev/null
register "$T/dev-1.pem" "$T/dev-1.key" "$T/weak.csr"
expect_refusal "RSA-1024 CSR" 400 csr_rejected "at least 2048 bits"
echo '{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}' >"$T/req.json"
HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$D/ca/root.crt" --cert "$T/dev-1.pem" --key "$T/dev-1.key" \
    -H 'Content-Type: application/json' --data-binary @"$T/req.json" "$URL/api/v1/register")
BODY=$(cat "$T/resp")
expect_refusal "garbage CSR" 400 csr_invalid "is not a PKCS#10 request"
HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$D/ca/root.crt" --cert "$T/dev-1.pem" --key "$T/dev-1.key" \
    -H 'Content-Type: application/json' --data-binary 'not json' "$URL/api/v1/register")
BODY=$(cat "$T/resp")
expect_refusal "not JSON" 400 bad_request "must be a JSON object"
HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$D/ca/root.crt" --cert "$T/dev-1.pem" --key "$T/dev-1.key" \
    -H 'Content-Type: text/plain' --data-binary @"$T/req.b64" "$URL/.well-known/est/simpleenroll")
BODY=$(cat "$T/resp")
expect_refusal "wrong content type" 415 unsupported_media_type "application/pkcs10"
HTTP=$(curl -s -o "$T/resp" -D "$T/h" -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/.well-known/est/simpleenroll")
BODY=$(cat "$T/resp")
equals "GET on a POST endpoint" "$HTTP" 405
contains "Allow header" "$(cat "$T/h")" "Allow: POST"
HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/nothing/here")
BODY=$(cat "$T/resp")
expect_refusal "unknown endpoint" 404 not_found "no such endpoint"

# Disabled enrollment, unverified group, network allow-list.
mkca factory2
ok "unverified group" enrollment group create --name fab2 --ca "$T/factory2.pem"
fdev u-1 factory2
ocsr u-1
register "$T/u-1.pem" "$T/u-1.key" "$T/u-1.op.csr"
expect_refusal "unverified group" 403 group_unverified "group fab2 has not proven possession"
ok "disable the group" enrollment disable fab
fdev dev-3 factory
ocsr dev-3
register "$T/dev-3.pem" "$T/dev-3.key" "$T/dev-3.op.csr"
expect_refusal "disabled enrollment" 403 enrollment_disabled "enrollment fab is disabled"
ok "enable it again" enrollment enable fab
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/net-1.key" -out "$T/net-1.pem" \
    -subj /CN=net-1 -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
ok "an enrollment for 10.0.0.0/8 only" enrollment add --id net-1 --cert "$T/net-1.pem" --networks 10.0.0.0/8
ocsr net-1
register "$T/net-1.pem" "$T/net-1.key" "$T/net-1.op.csr"
expect_refusal "outside the allowed networks" 403 network_denied "source address 127.0.0.1 is outside the networks enrollment net-1 allows"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/net-2.key" -out "$T/net-2.pem" \
    -subj /CN=net-2 -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
ok "an enrollment for loopback" enrollment add --id net-2 --cert "$T/net-2.pem" --networks 127.0.0.0/8,::1
ocsr net-2
register "$T/net-2.pem" "$T/net-2.key" "$T/net-2.op.csr"
equals "inside the allowed networks: 200" "$HTTP" 200

# Disabled and revoked devices.
ok "disable dev-1" device disable dev-1
ocsr dev-1c dev-1
register "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1c.op.csr"
expect_refusal "disabled device" 403 device_disabled "device dev-1 is disabled"
est simplereenroll "$T/dev-1.op.pem" "$T/dev-1.op.key" "$T/dev-1c.op.csr"
expect_refusal "disabled device cannot renew" 403 device_disabled "device dev-1 is disabled"
ok "enable dev-1" device enable dev-1
ok "revoke dev-2" device revoke dev-2 --reason key-compromise
ocsr dev-2c dev-2
register "$T/dev-2.pem" "$T/dev-2.key" "$T/dev-2c.op.csr"
expect_refusal "revoked device" 403 device_revoked "device dev-2 is revoked"
est simplereenroll "$T/dev-2.op2.pem" "$T/dev-2r.op.key" "$T/dev-2c.op.csr"
equals "a revoked certificate cannot renew: status" "$HTTP" 403
# Re-enrollment needs an operational certificate, for the same subject.
est simplereenroll "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1c.op.csr"
expect_refusal "factory certificate for re-enrollment" 401 certificate_invalid "re-enrollment needs a current certificate"
est simplereenroll "$T/dev-1.op.pem" "$T/dev-1.op.key" "$T/dev-1-wrong.op.csr"
expect_refusal "another subject" 409 subject_mismatch "re-enrollment keeps the subject"
ok "revoke dev-1's newest certificate" cert revoke "$(openssl x509 -in "$T/dev-1.op.pem" -noout -serial | cut -d= -f2)"
est simplereenroll "$T/dev-1.op.pem" "$T/dev-1.op.key" "$T/dev-1c.op.csr"
expect_refusal "revoked certificate" 403 certificate_revoked "revoked"

# SIGHUP reloads the CRL: a CRL published by hand (signed with the issuing key elsewhere, the
# store knowing nothing of it) takes effect on renewals once keyfleetd is told.
fdev dev-5 factory
ocsr dev-5
est simpleenroll "$T/dev-5.pem" "$T/dev-5.key" "$T/dev-5.op.csr"
equals "dev-5 enrolls" "$HTTP" 200
cp "$EST_CERT" "$T/dev-5.op.pem"
s5=$(openssl x509 -in "$T/dev-5.op.pem" -noout -serial | cut -d= -f2)
mkdir -p "$T/crl-db" && echo 1000 >"$T/crl-db/crlnumber"
printf 'R\t%s\t%s\t%s\tunknown\t/CN=dev-5\n' "$(date -u -d '+30 days' +%y%m%d%H%M%SZ)" \
    "$(date -u +%y%m%d%H%M%SZ)" "$s5" >"$T/crl-db/index"
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s/crl-db/index\ncrlnumber=%s/crl-db/crlnumber\ndefault_md=sha256\ndefault_crl_days=1\n' \
    "$T" "$T" >"$T/crl.cnf"
check "a CRL made with openssl" openssl ca -gencrl -config "$T/crl.cnf" -cert "$D/ca/issuing.crt" \
    -keyfile "$D/ca/issuing.key" -out "$T/hand.crl"
ocsr dev-5r dev-5
est simplereenroll "$T/dev-5.op.pem" "$T/dev-5.op.key" "$T/dev-5r.op.csr"
equals "before the new CRL: renewal works" "$HTTP" 200
chmod u+w "$D/ca/crl.pem" 2>/dev/null
cp "$T/hand.crl" "$D/ca/crl.pem"
reloads=$(grep -c 'msg=reloaded' "$T/kfd.log")
kill -HUP "$KFD_PID"
for _ in $(seq 1 100); do
    [ "$(grep -c 'msg=reloaded' "$T/kfd.log")" -gt "$reloads" ] && break
    sleep 0.05
done
est simplereenroll "$T/dev-5.op.pem" "$T/dev-5.op.key" "$T/dev-5r.op.csr"
expect_refusal "after SIGHUP: the CRL applies" 403 certificate_revoked "revoked"
ok "the store never heard of it" cert show "$(tr A-F a-f <<<"$s5" | sed 's/^0*//')" --json
equals "still valid in the store" "$(jq -r .status <<<"$OUT")" valid

# Every policy refusal left a provisioning.denied event naming the reason, the id and the address.
ok "events list" events list --type provisioning.denied --json
events=$OUT
for r in client_certificate_required enrollment_not_found certificate_invalid csr_rejected group_unverified \
    enrollment_disabled network_denied device_disabled device_revoked subject_mismatch certificate_revoked; do
    check "event for $r" sh -c "jq -e 'map(.detail.reason) | index(\"$r\")' <<'J'
$events
J"
done
check "events are warnings from the server" sh -c "jq -e 'all(.severity == \"warning\" and .source == \"server\")' <<'J'
$events
J"
check "an identity that did not verify is recorded as claimed, never as the device" sh -c \
    "jq -e 'map(select(.claimed == \"who-1\" and .device == \"\")) | length > 0' <<'J'
$events
J"
check "no refusal of an unverified identity names a device" sh -c \
    "jq -e 'map(select(.detail.reason == \"enrollment_not_found\" or .detail.reason == \"client_certificate_required\" or .detail.reason == \"certificate_invalid\") | select(.device != \"\")) | length == 0' <<'J'
$events
J"
check "events name the address" sh -c "jq -e 'map(select(.ip == \"127.0.0.1\")) | length == (. | length)' <<'J'
$events
J"
ok "assigned events" events list --type provisioning.assigned --device dev-1 --json
equals "assigned events too: dev-1 registered twice" "$(jq length <<<"$OUT")" 2
# Certificates keyfleetd issued are audited as keyfleetd, and the log is whole.
ok "audit" audit list --json
check "audited by keyfleetd" sh -c "jq -e 'map(select(.actor == \"keyfleetd\" and .action == \"cert.issue\")) | length >= 6' '$T/out' >/dev/null"
ok "audit verify" audit verify

# Metrics count what happened.
metrics=$(curl -s --cacert "$D/ca/root.crt" "$URL/metrics")
contains "enrollments counted" "$metrics" 'keyfleet_enrollments_total{kind="register"}'
contains "refusals counted" "$metrics" 'keyfleet_refusals_total{reason="group_unverified"} 1'
contains "requests counted" "$metrics" 'keyfleet_http_requests_total{endpoint="register",status="200"}'
contains "handshakes counted" "$metrics" 'keyfleet_tls_handshakes_total{result="full"}'
contains "latency histogram" "$metrics" 'keyfleet_request_duration_seconds_bucket{le="+Inf"}'
commits=$(sed -n 's/^keyfleet_store_commits_total //p' <<<"$metrics")
writes=$(sed -n 's/^keyfleet_store_writes_total //p' <<<"$metrics")
check "store commits counted" test "${commits:-0}" -gt 0
check "every enrollment and refusal event was a store write" test "${writes:-0}" -ge 20

stop_kfd
equals "SIGTERM: exit 0" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
