#!/bin/bash
# keyfleet cert issue/list/show/revoke, device list/show/disable/enable/revoke and ca crl,
# judged by openssl verify and openssl crl.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
csr() { # csr ID [openssl req -newkey args]
    openssl req -new -newkey "${2:-ec}" ${3:+-pkeyopt "$3"} -nodes -keyout "$T/$1.key" -out "$T/$1.csr" \
        -subj "/CN=$1" 2>/dev/null
}
csr dev-1 ec ec_paramgen_curve:P-256
csr dev-2 ed25519

ok "issue to stdout" cert issue --device dev-1 --csr "$T/dev-1.csr"
printf '%s\n' "$OUT" >"$T/dev-1-chain.pem"
check "stdout holds the certificate and the issuing CA" sh -c "test \$(grep -c BEGIN '$T/dev-1-chain.pem') -eq 2"
openssl x509 -in "$T/dev-1-chain.pem" -out "$T/dev-1.pem"
check "device cert verifies as a TLS client" openssl verify -purpose sslclient -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$T/dev-1.pem"
check_not "device cert is no TLS server" openssl verify -purpose sslserver -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$T/dev-1.pem"
txt=$(openssl x509 -in "$T/dev-1.pem" -noout -text)
contains "URI SAN" "$txt" "URI:urn:keyfleet:device:dev-1"
contains "client auth" "$txt" "TLS Web Client Authentication"
contains "subject" "$txt" "Subject: O = keyfleet, CN = dev-1"
contains "not a CA" "$txt" "CA:FALSE"
contains "AKI" "$txt" "Authority Key Identifier"
contains "SKI" "$txt" "Subject Key Identifier"
check "the key in the cert is the CSR's" sh -c "test \"\$(openssl x509 -in '$T/dev-1.pem' -noout -pubkey)\" = \"\$(openssl req -in '$T/dev-1.csr' -noout -pubkey)\""
end=$(date -d "$(openssl x509 -in "$T/dev-1.pem" -noout -enddate | cut -d= -f2)" +%s)
check "30 days by default" test $((end - $(date +%s))) -gt $((29 * 86400)) -a $((end - $(date +%s))) -le $((30 * 86400 + 60))

ok "issue to a file, 7 days" cert issue --device dev-2 --csr "$T/dev-2.csr" --days 7 --out "$T/dev-2.pem"
contains "says where" "$OUT" "written to $T/dev-2.pem"
check "ed25519 device verifies" openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" "$T/dev-2.pem"
end=$(date -d "$(openssl x509 -in "$T/dev-2.pem" -noout -enddate | cut -d= -f2)" +%s)
check "7 days" test $((end - $(date +%s))) -le $((7 * 86400 + 60))
before=$(store_state)
refused "never overwrites --out" 1 "already exists" cert issue --device dev-2 --csr "$T/dev-2.csr" --out "$T/dev-2.pem"
unchanged "no certificate issued when --out exists" "$before"

ok "device list --json" device list --json
equals "two devices" "$(jq -r 'map(.id + ":" + .status) | join(",")' <<<"$OUT")" "dev-1:active,dev-2:active"
ok "device show --json" device show dev-1 --json
equals "one certificate" "$(jq '.certificates | length' <<<"$OUT")" 1
ok "cert list --device dev-1" cert list --device dev-1 --json
n1=$(jq length <<<"$OUT")
serial1=$(jq -r '.[0].serial' <<<"$OUT")
equals "serial matches openssl" "$(openssl x509 -in "$T/dev-1.pem" -noout -serial | cut -d= -f2 | tr A-F a-f | sed 's/^0*//')" "$serial1"
ok "cert show" cert show "$serial1" --json
equals "cert show status" "$(jq -r .status <<<"$OUT")" valid
equals "cert show device" "$(jq -r .device <<<"$OUT")" dev-1
ok "cert show --pem" cert show "$serial1" --pem
check "--pem is the certificate" sh -c "printf '%s\n' '$OUT' | openssl x509 -noout"
refused "cert show unknown" 1 "not found" cert show abcdef

# Bad CSRs: a clear error and nothing stored.
before=$(store_state)
csr dev-3 rsa:1024
refused "RSA-1024 CSR" 1 "RSA keys must have at least 2048 bits" cert issue --device dev-3 --csr "$T/dev-3.csr"
refused "CN is not the device id" 1 "is not the expected \"dev-9\"" cert issue --device dev-9 --csr "$T/dev-1.csr"
# A CSR whose self-signature is broken: flip a byte inside the signed subject.
openssl req -in "$T/dev-1.csr" -outform DER -out "$T/bad.der"
python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); i=b.find(b'dev-1'); b[i+4]=ord('2'); open(sys.argv[1],'wb').write(b)" "$T/bad.der"
refused "broken self-signature" 1 "self-signature does not verify" cert issue --device dev-2 --csr "$T/bad.der"
refused "a certificate where a CSR is expected" 1 "not a CERTIFICATE REQUEST" cert issue --device dev-1 --csr "$T/dev-1.pem"
head -c 200 "$T/dev-1.csr" >"$T/trunc.csr"
refused "truncated CSR" 1 "truncated PEM" cert issue --device dev-1 --csr "$T/trunc.csr"
refused "more days than the config allows" 1 "more than the 30 days" cert issue --device dev-1 --csr "$T/dev-1.csr" --days 31
refused "bad device id" 1 "device id \"Dev 1\"" cert issue --device "Dev 1" --csr "$T/dev-1.csr"
refused "--days not a number" 2 "--days must be a whole number" cert issue --device dev-1 --csr "$T/dev-1.csr" --days soon
unchanged "bad CSRs" "$before"

# Disable and enable.
ok "disable" device disable dev-2
refused "no certificate for a disabled device" 1 "device dev-2 is disabled" cert issue --device dev-2 --csr "$T/dev-2.csr"
ok "list disabled" device list --status disabled --json
equals "dev-2 disabled" "$(jq -r 'map(.id) | join(",")' <<<"$OUT")" dev-2
ok "enable" device enable dev-2
ok "issue again after enable" cert issue --device dev-2 --csr "$T/dev-2.csr"

# Revoke one certificate: it lands in the CRL and openssl refuses it.
ok "cert revoke" cert revoke "$serial1" --reason key-compromise
refused "revoke twice" 1 "already revoked" cert revoke "$serial1"
crl_txt=$(openssl crl -in "$D/ca/crl.pem" -noout -text)
contains "CRL lists it" "$crl_txt" "$(tr a-f A-F <<<"$serial1")"
contains "with its reason" "$crl_txt" "Key Compromise"
check "CRL verifies" sh -c "openssl crl -in '$D/ca/crl.pem' -CAfile '$D/ca/issuing.crt' -noout 2>&1 | grep -q 'verify OK'"
check_not "openssl refuses the revoked cert" openssl verify -crl_check -CRLfile "$D/ca/crl.pem" \
    -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" "$T/dev-1.pem"
check "openssl accepts the other" openssl verify -crl_check -CRLfile "$D/ca/crl.pem" \
    -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" "$T/dev-2.pem"
# Serials as openssl prints them (upper case, maybe a leading zero) are accepted as they are.
refused "a CA certificate is not revoked" 1 "is a CA certificate" cert revoke \
    "$(openssl x509 -in "$D/ca/issuing.crt" -noout -serial | cut -d= -f2)"
ok "cert show takes openssl's spelling" cert show "0$(tr a-f A-F <<<"$serial1")" --json
equals "same certificate" "$(jq -r .serial <<<"$OUT")" "$serial1"
ok "and colons" cert show "$(sed 's/../&:/g; s/:$//' <<<"$serial1")" --json
refused "a serial that is not hex" 2 "is not a hexadecimal number" cert show zz-top
refused "bad reason" 2 "unknown reason 'oops'" cert revoke "$serial1" --reason oops

# Revoke a device: all its valid certificates go.
ok "device revoke" device revoke dev-2 --reason cessation-of-operation
contains "counts" "$OUT" "2 certificates revoked"
ok "dev-2 certs" cert list --device dev-2 --status valid --json
equals "none valid" "$(jq length <<<"$OUT")" 0
check_not "openssl refuses dev-2 now" openssl verify -crl_check -CRLfile "$D/ca/crl.pem" \
    -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" "$T/dev-2.pem"
contains "CRL reason" "$(openssl crl -in "$D/ca/crl.pem" -noout -text)" "Cessation Of Operation"
refused "revoked is final" 1 "revocation is final" device enable dev-2
refused "no new cert for a revoked device" 1 "device dev-2 is revoked" cert issue --device dev-2 --csr "$T/dev-2.csr"
refused "revoke twice" 1 "already revoked" device revoke dev-2
refused "unknown device" 1 "not found" device disable nobody

# ca crl: a fresh, higher-numbered CRL, to a file.
n_before=$(openssl crl -in "$D/ca/crl.pem" -noout -crlnumber | cut -d= -f2)
ok "ca crl --out" ca crl --out "$T/crl.pem"
n_after=$(openssl crl -in "$T/crl.pem" -noout -crlnumber | cut -d= -f2)
check "the number grows" test $((n_after)) -gt $((n_before))
check "published too" cmp -s "$T/crl.pem" "$D/ca/crl.pem"
equals "three revoked" "$(openssl crl -in "$T/crl.pem" -noout -text | grep -c 'Serial Number')" 3
ok "ca crl to stdout" ca crl
check "stdout is a CRL" sh -c "printf '%s\n' '$OUT' | openssl crl -noout"

ok "audit verify" audit verify
ok "audit list" audit list --json
for a in cert.issue cert.revoke device.disable device.enable device.revoke crl.publish; do
    check "audited $a" sh -c "jq -e 'map(.action) | index(\"$a\")' '$T/out' >/dev/null"
done
finish
