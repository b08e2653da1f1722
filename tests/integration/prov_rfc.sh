#!/bin/bash
# Provisioning to the letter of RFC 7030 / RFC 8951 / RFC 9110, with curl and openssl as the
# standard clients: the subject rules of enrollment and re-enrollment (4.2.1, 4.2.2), the
# /cacerts media type (4.1.3), the 401 challenge. docs/provisioning.md lists the statements.
. "$(dirname "$0")/lib.sh"

ok "init" init --name acme
D=$T/d
mkca factory
group_enroll fab factory
start_kfd || exit 1

# ---- /cacerts: Content-Type application/pkcs7-mime, exactly (4.1.3) ----
curl -s -o /dev/null -D "$T/h" --cacert "$D/ca/root.crt" "$URL/.well-known/est/cacerts"
equals "cacerts: the whole Content-Type value" "$(grep -i '^content-type:' "$T/h" | cut -d' ' -f2- | tr -d '\r')" "application/pkcs7-mime"
# the enroll answers keep their smime-type parameter (4.2.3)
fdev dev-1 factory
ocsr dev-1
est simpleenroll "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1.op.csr"
equals "simpleenroll: 200" "$HTTP" 200
curl -s -o /dev/null -D "$T/h" --cacert "$D/ca/root.crt" --cert "$T/dev-1.pem" --key "$T/dev-1.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$T/req.b64" "$URL/.well-known/est/simpleenroll"
equals "simpleenroll: certs-only" "$(grep -i '^content-type:' "$T/h" | cut -d' ' -f2- | tr -d '\r')" "application/pkcs7-mime; smime-type=certs-only"

# ---- 401: a challenge, and the body says why ----
est simpleenroll "" "" "$T/dev-1.op.csr"
expect_refusal "no client certificate" 401 client_certificate_required "needs a client certificate"
curl -s -o /dev/null -D "$T/h" --cacert "$D/ca/root.crt" -H 'Content-Type: application/pkcs10' \
    --data-binary @"$T/req.b64" "$URL/.well-known/est/simpleenroll"
contains "401 carries WWW-Authenticate (RFC 9110 15.5.2)" "$(cat "$T/h")" 'WWW-Authenticate: ClientCertificate realm="keyfleet provisioning"'
est simplereenroll "$T/dev-1.pem" "$T/dev-1.key" "$T/dev-1.op.csr"
expect_refusal "re-enrollment with a factory certificate" 401 certificate_invalid "re-enrollment needs a current certificate from this keyfleet"
curl -s -o /dev/null -D "$T/h" --cacert "$D/ca/root.crt" --cert "$T/dev-1.pem" --key "$T/dev-1.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$T/req.b64" "$URL/.well-known/est/simplereenroll"
contains "that 401 carries the challenge too" "$(cat "$T/h")" "WWW-Authenticate: ClientCertificate"

# ---- first enrollment: O and OU accepted and replaced; anything else refused ----
fdev dev-2 factory
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev-2.op.key" \
    -out "$T/dev-2.op.csr" -subj "/O=Factory Template/OU=line 4/CN=dev-2" 2>/dev/null
est simpleenroll "$T/dev-2.pem" "$T/dev-2.key" "$T/dev-2.op.csr"
equals "first enrollment with O and OU: 200" "$HTTP" 200
equals "the certificate's subject is keyfleet's: O=<deployment>, CN=<id>" \
    "$(openssl x509 -in "$EST_CERT" -noout -subject -nameopt compat)" "subject=/O=acme/CN=dev-2"
cp "$EST_CERT" "$T/dev-2.op.pem"
fdev dev-3 factory
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev-3.op.key" \
    -out "$T/dev-3.op.csr" -subj "/C=DE/O=acme/CN=dev-3" 2>/dev/null
est simpleenroll "$T/dev-3.pem" "$T/dev-3.key" "$T/dev-3.op.csr"
expect_refusal "first enrollment with C" 400 csr_rejected "its subject holds C; only CN (and O, OU, which keyfleet replaces) is allowed"

# ---- re-enrollment repeats the current subject exactly (4.2.2) ----
subject=$(openssl x509 -in "$T/dev-2.op.pem" -noout -subject -nameopt compat | sed 's/^subject=//')
equals "(the current subject)" "$subject" "/O=acme/CN=dev-2"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev-2r.op.key" \
    -out "$T/dev-2r.op.csr" -subj "$subject" 2>/dev/null
est simplereenroll "$T/dev-2.op.pem" "$T/dev-2.op.key" "$T/dev-2r.op.csr"
equals "re-enrollment with the certificate's subject (O and CN): 200" "$HTTP" 200
equals "the same subject again" "$(openssl x509 -in "$EST_CERT" -noout -subject -nameopt compat)" "subject=$subject"
cp "$EST_CERT" "$T/dev-2r.op.pem"
# CN alone still works (keyfleet's own agent sends it)
ocsr dev-2c dev-2
est simplereenroll "$T/dev-2r.op.pem" "$T/dev-2r.op.key" "$T/dev-2c.op.csr"
equals "re-enrollment with CN alone: 200" "$HTTP" 200
# another O is not the current subject
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev-2x.key" \
    -out "$T/dev-2x.csr" -subj "/O=other/CN=dev-2" 2>/dev/null
est simplereenroll "$T/dev-2r.op.pem" "$T/dev-2r.op.key" "$T/dev-2x.csr"
expect_refusal "re-enrollment with another O" 400 csr_rejected "is not the subject of the certificate being renewed; re-enrollment repeats that subject exactly (RFC 7030 4.2.2)"
# the order is part of the subject
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev-2y.key" \
    -out "$T/dev-2y.csr" -subj "/CN=dev-2/O=acme" 2>/dev/null
est simplereenroll "$T/dev-2r.op.pem" "$T/dev-2r.op.key" "$T/dev-2y.csr"
expect_refusal "re-enrollment with the attributes reordered" 400 csr_rejected "RFC 7030 4.2.2"

# ---- CA labels (RFC 7030 3.2.2): /.well-known/est/<group>/... ----
mkca other
group_enroll line2 other
HTTP=$(curl -s -o "$T/lc" -D "$T/h" -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/.well-known/est/fab/cacerts")
equals "cacerts under a label: 200" "$HTTP" 200
check "the same CA certificates" sh -c "curl -s --cacert '$D/ca/root.crt' '$URL/.well-known/est/cacerts' | cmp -s - '$T/lc'"
HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/.well-known/est/nosuch/cacerts")
BODY=$(cat "$T/resp")
expect_refusal "an unknown label" 404 not_found 'no CA label "nosuch": a label is the name of a group enrollment'
HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/.well-known/est/fab/nosuch")
equals "a label before an unknown operation: 404" "$HTTP" 404
fdev dev-9 factory
ocsr dev-9
openssl req -in "$T/dev-9.op.csr" -outform DER | openssl base64 >"$T/req.b64"
lab() { # lab LABEL OP CERT KEY: an EST request under a label; HTTP, BODY
    HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$D/ca/root.crt" --cert "$3" --key "$4" \
        -H 'Content-Type: application/pkcs10' --data-binary @"$T/req.b64" "$URL/.well-known/est/$1/$2")
    BODY=$(cat "$T/resp")
}
lab line2 simpleenroll "$T/dev-9.pem" "$T/dev-9.key"
expect_refusal "a device of fab under the label line2" 404 enrollment_not_found "device dev-9 is not of group line2, the CA label this request came under (it belongs to enrollment fab)"
lab fab simpleenroll "$T/dev-9.pem" "$T/dev-9.key"
equals "under its own group's label: 200" "$HTTP" 200
finish
