#!/bin/bash
# Attacks with what a device sends to provisioning: a CSR whose P-256 key carries explicit curve
# parameters (it passed the CSR check and was refused by the signer, answered "HTTP/1.1 0
# Unknown"), CSRs signed with SHA-1, and a CA:TRUE certificate under a group CA presented as a
# factory identity. Each is refused with its code and a sentence, recorded as an event with the
# real status, and leaves the store as it was.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
start_kfd || exit 1

# ---- explicit curve parameters ----
fdev dev-x fca
openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout -out "$T/explicit.key"
openssl req -new -key "$T/explicit.key" -subj /CN=dev-x -out "$T/explicit.csr" 2>/dev/null
check "the CSR really carries explicit parameters" sh -c \
    "openssl req -in '$T/explicit.csr' -noout -text | grep -q 'Field Type: prime-field'"
before=$(store_state security_events sqlite_sequence audit_checkpoints)
register "$T/dev-x.pem" "$T/dev-x.key" "$T/explicit.csr"
raw_status=$(curl -s -o /dev/null -D - --cacert "$D/ca/root.crt" --cert "$T/dev-x.pem" \
    --key "$T/dev-x.key" -H 'Content-Type: application/json' --data-binary @"$T/req.json" \
    "$URL/api/v1/register" | head -1 | tr -d '\r')
equals "the status line is a real one" "$raw_status" "HTTP/1.1 400 Bad Request"
expect_refusal "explicit parameters (register)" 400 csr_rejected "without a named curve"
est simpleenroll "$T/dev-x.pem" "$T/dev-x.key" "$T/explicit.csr"
expect_refusal "explicit parameters (EST)" 400 csr_rejected "without a named curve"
check "provisioning.denied with status 400, not 0" event_with provisioning.denied \
    '.detail.reason == "csr_rejected" and .detail.status == 400 and (.detail.message | test("named curve"))'
kf events list --type provisioning.denied --json
equals "no event carries status 0" "$(jq '[.[] | select(.detail.status == 0)] | length' <<<"$OUT")" 0

# ---- SHA-1 ----
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/sha1.key" \
    -subj /CN=dev-x -sha1 -out "$T/sha1.csr" 2>/dev/null
register "$T/dev-x.pem" "$T/dev-x.key" "$T/sha1.csr"
expect_refusal "an ECDSA-with-SHA1 CSR" 400 csr_rejected "SHA-256 or stronger"
openssl req -new -newkey rsa:2048 -nodes -keyout "$T/sha1r.key" -subj /CN=dev-x -sha1 \
    -sigopt rsa_padding_mode:pss -out "$T/sha1r.csr" 2>/dev/null
est simpleenroll "$T/dev-x.pem" "$T/dev-x.key" "$T/sha1r.csr"
expect_refusal "an RSA-PSS SHA-1 CSR over EST" 400 csr_rejected "signed with SHA1"

# ---- a CA certificate under the group CA, as a factory identity ----
# (Devices under an intermediate CA of the group's are fine: the chain reaches the group. What is
# refused is a CA certificate itself standing as a device.)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/subca.key" \
    -subj /CN=dev-ca -out "$T/subca.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,digitalSignature\n' >"$T/subca.ext"
openssl x509 -req -in "$T/subca.csr" -CA "$T/fca.pem" -CAkey "$T/fca.key" -days 30 \
    -extfile "$T/subca.ext" -out "$T/subca.pem" 2>/dev/null
ocsr dev-ca
register "$T/subca.pem" "$T/subca.key" "$T/dev-ca.op.csr"
expect_refusal "a CA:TRUE factory certificate" 401 certificate_invalid "is a CA certificate"
check "provisioning.denied for the CA certificate" event_with provisioning.denied \
    '.detail.reason == "certificate_invalid" and (.detail.message | test("CA certificate"))'
unchanged "every refusal above left the store as it was (events aside)" "$before" security_events sqlite_sequence audit_checkpoints

# A good CSR still works, after all that.
ocsr dev-x
register "$T/dev-x.pem" "$T/dev-x.key" "$T/dev-x.op.csr"
equals "a good CSR from the same device: 200" "$HTTP" 200

stop_kfd
finish
