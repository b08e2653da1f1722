#!/bin/bash
# keyfleet init: what it makes, judged by openssl; what it refuses.
. "$(dirname "$0")/lib.sh"

ok "init" init --hostname kf.example.com --hostname 10.1.2.3
contains "init says where" "$OUT" "Created a keyfleet deployment in $T/d"
check_not "with an address named, no warning about addresses" grep -q "names no IP address" <<<"$OUT"
D=$T/d

# Files and modes.
equals "dir mode" "$(stat -c %a "$D")" 700
for k in ca/root.key ca/issuing.key server/server.key; do
    equals "$k mode" "$(stat -c %a "$D/$k")" 600
done
equals "store mode" "$(stat -c %a "$D/keyfleet.db")" 600
check "config is commented" grep -q '^# keyfleet deployment configuration' "$D/keyfleet.conf"
check "config names the issuing key" grep -q '^issuing_key = ca/issuing.key' "$D/keyfleet.conf"
check_not "no temporary directory is left" ls -d "$T"/d.init-*

# openssl as the judge: the chain verifies, each profile says what it should.
check "issuing CA verifies" openssl verify -CAfile "$D/ca/root.crt" "$D/ca/issuing.crt"
check "server cert verifies for a server" openssl verify -purpose sslserver -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$D/server/server.crt"
check "server cert has the hostname" openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" \
    -verify_hostname kf.example.com "$D/server/server.crt"
check "server cert has the IP" openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" \
    -verify_ip 10.1.2.3 "$D/server/server.crt"
check_not "server cert lacks other names" openssl verify -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" -verify_hostname other.example.com "$D/server/server.crt"
root_txt=$(openssl x509 -in "$D/ca/root.crt" -noout -text)
contains "root is a CA" "$root_txt" "CA:TRUE"
contains "root key usage" "$root_txt" "Certificate Sign, CRL Sign"
contains "root is P-256" "$root_txt" "NIST CURVE: P-256"
iss_txt=$(openssl x509 -in "$D/ca/issuing.crt" -noout -text)
contains "issuing pathlen 0" "$iss_txt" "CA:TRUE, pathlen:0"
contains "issuing AKI" "$iss_txt" "Authority Key Identifier"
srv_txt=$(openssl x509 -in "$D/server/server.crt" -noout -text)
contains "server EKU" "$srv_txt" "TLS Web Server Authentication"
contains "server not a CA" "$srv_txt" "CA:FALSE"
serial=$(openssl x509 -in "$D/server/server.crt" -noout -serial | cut -d= -f2)
check "serial is at most 128 bits" test "${#serial}" -le 34
check "serial is at least 64 bits" test "${#serial}" -ge 16
check "chain.pem holds issuing then root" sh -c "test \$(grep -c BEGIN '$D/ca/chain.pem') -eq 2"
check "server.crt carries the issuing CA" sh -c "test \$(grep -c BEGIN '$D/server/server.crt') -eq 2"
check "the CRL verifies" sh -c "openssl crl -in '$D/ca/crl.pem' -CAfile '$D/ca/issuing.crt' -noout 2>&1 | grep -q 'verify OK'"
check "the CRL is number 1" sh -c "openssl crl -in '$D/ca/crl.pem' -noout -crlnumber | grep -q 'crlNumber=0x01'"
check "server key matches its cert" sh -c "test \"\$(openssl pkey -in '$D/server/server.key' -pubout)\" = \"\$(openssl x509 -in '$D/server/server.crt' -noout -pubkey)\""

# What the CLI says about it.
ok "ca show --json" ca show --json
equals "root subject" "$(printf '%s' "$OUT" | jq -r .root.subject)" "CN=keyfleet Root CA,O=keyfleet"
equals "issuing key place" "$(printf '%s' "$OUT" | jq -r .issuing.key)" "file"
equals "crl number" "$(printf '%s' "$OUT" | jq -r .issuing.crl_number)" 1
equals "root fingerprint matches openssl" "$(printf '%s' "$OUT" | jq -r .root.sha256)" \
    "$(openssl x509 -in "$D/ca/root.crt" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)"
ok "audit list --json" audit list --json
equals "init audited 5 records" "$(printf '%s' "$OUT" | jq length)" 5
equals "first record" "$(printf '%s' "$OUT" | jq -r '.[0].action + " " + .[0].object')" "ca.create root"
ok "audit verify" audit verify
ok "cert list" cert list --json
equals "server and issuing certs recorded" "$(printf '%s' "$OUT" | jq -r 'map(.profile) | sort | join(",")')" "issuing-ca,server"

# Refusals: an existing deployment is never touched.
before=$(store_state)
sum_before=$(cd "$D" && find . -type f -exec sha256sum {} + | sort | sha256sum)
refused "init twice" 1 "already holds a keyfleet deployment; refusing to overwrite it" init
unchanged "init twice" "$before"
equals "no file changed" "$(cd "$D" && find . -type f -exec sha256sum {} + | sort | sha256sum)" "$sum_before"
mkdir -p "$T/full" && echo hi >"$T/full/x"
"$KF" --dir "$T/full" init >"$T/out" 2>"$T/err"
equals "non-empty dir refused" "$?" 1
contains "non-empty dir message" "$(cat "$T/err")" "is not empty"
mkdir -p "$T/empty"
"$KF" --dir "$T/empty/" init >/dev/null 2>"$T/err"
equals "an empty dir is fine (trailing slash too)" "$?" 0
check "empty dir got a deployment" test -f "$T/empty/keyfleet.conf"
"$KF" --dir "$T/k" init --key-type dsa >/dev/null 2>"$T/err"
equals "bad key type is a usage error" "$?" 2
contains "bad key type message" "$(cat "$T/err")" "unknown key type 'dsa'"
check_not "nothing made for a usage error" test -e "$T/k"
"$KF" --dir "$T/k" init --hostname 'bad name!' >/dev/null 2>"$T/err"
equals "bad hostname refused" "$?" 1
contains "bad hostname message" "$(cat "$T/err")" "--hostname \"bad name!\" is not a DNS name or IP address"
"$KF" --dir "$T/k" init --hostname 1.2.3.4.5 >/dev/null 2>"$T/err"
equals "a dotted number that is no IP refused" "$?" 1
"$KF" --dir "$T/k" init --hostname '' >/dev/null 2>"$T/err"
equals "an empty hostname refused" "$?" 1
long=$(printf 'a%.0s' $(seq 1 60)).$(printf 'b%.0s' $(seq 1 20)).example
"$KF" --dir "$T/longname" init --hostname "$long" --hostname "$long" --hostname 10.0.0.1 >/dev/null 2>"$T/err"
equals "a long first hostname is fine" "$?" 0
check "it is in the SANs" openssl verify -CAfile "$T/longname/ca/root.crt" -untrusted "$T/longname/ca/issuing.crt" \
    -verify_hostname "$long" "$T/longname/server/server.crt"
equals "duplicates dropped" "$(openssl x509 -in "$T/longname/server/server.crt" -noout -ext subjectAltName | grep -o "DNS:" | wc -l)" 1
# DNS names only: init says a device dialing an address would fail the name check.
"$KF" --dir "$T/dnsonly" init --hostname kf.example.com >"$T/out" 2>&1
equals "DNS names only: made" "$?" 0
contains "DNS names only: init warns" "$(cat "$T/out")" "the server certificate names no IP address: a device that dials one (127.0.0.1 too) fails the name check"
check "and it is true: openssl refuses 127.0.0.1" sh -c "! openssl verify -CAfile '$T/dnsonly/ca/root.crt' -untrusted '$T/dnsonly/ca/issuing.crt' -verify_ip 127.0.0.1 '$T/dnsonly/server/server.crt' >/dev/null 2>&1"
"$KF" --dir "$T/dnsonly2" --json init --hostname kf.example.com >"$T/out" 2>&1
contains "--json carries it in notes" "$(jq -r '.notes[0]' "$T/out")" "names no IP address"
check_not "nothing left after a failed init" sh -c "ls -d '$T'/k*"

# What an init killed midway left beside its target (keys!) is cleared by the next init; an
# init still running (its pid alive) is left alone.
mkdir -p "$T/again.init-AbC123/ca" "$T/again.init-Live42"
echo secret >"$T/again.init-AbC123/ca/root.key"
sh -c 'exit 0' &
dead=$!
wait $dead
echo "$dead" >"$T/again.init-AbC123/init.pid"
echo "$$" >"$T/again.init-Live42/init.pid"
"$KF" --dir "$T/again" init >/dev/null 2>"$T/err"
equals "init after an interrupted one" "$?" 0
check_not "the leftovers are gone" test -e "$T/again.init-AbC123"
check "a live init is left alone" test -d "$T/again.init-Live42"
contains "and it says so" "$(cat "$T/err")" "removed what an interrupted init left"
check_not "no init.pid in a deployment" test -e "$T/again/init.pid"
ln -s "$T/empty" "$T/link"
"$KF" --dir "$T/link" init >/dev/null 2>"$T/err"
equals "a symbolic link is refused" "$?" 1
contains "a symbolic link is refused, saying why" "$(cat "$T/err")" "is a symbolic link"

# Other key types, each judged by openssl.
for kt in p384 ed25519 rsa2048 rsa3072; do
    "$KF" --dir "$T/$kt" init --key-type $kt >/dev/null 2>"$T/err" || fail "init --key-type $kt: $(cat "$T/err")"
    check "$kt chain verifies" openssl verify -CAfile "$T/$kt/ca/root.crt" -untrusted "$T/$kt/ca/issuing.crt" "$T/$kt/server/server.crt"
done
contains "p384 root" "$(openssl x509 -in "$T/p384/ca/root.crt" -noout -text)" "NIST CURVE: P-384"
contains "ed25519 root" "$(openssl x509 -in "$T/ed25519/ca/root.crt" -noout -text)" "ED25519"

# Help and usage.
"$KF" --help >"$T/out" 2>&1
equals "--help exits 0" "$?" 0
contains "--help lists commands" "$(cat "$T/out")" "enrollment group create"
"$KF" init --help >"$T/out" 2>&1
equals "init --help exits 0" "$?" 0
contains "init --help explains" "$(cat "$T/out")" "--issuing-key URI"
"$KF" frobnicate >/dev/null 2>"$T/err"
equals "unknown command exits 2" "$?" 2
"$KF" device >/dev/null 2>"$T/err"
equals "missing subcommand exits 2" "$?" 2
"$KF" --dir "$T/nowhere" ca show >/dev/null 2>"$T/err"
equals "missing deployment exits 1" "$?" 1
contains "missing deployment message" "$(cat "$T/err")" "no keyfleet deployment in $T/nowhere (run: keyfleet init --dir $T/nowhere)"
KEYFLEET_DIR="$D" "$KF" ca show >/dev/null 2>&1
equals "KEYFLEET_DIR picks the deployment" "$?" 0

finish
