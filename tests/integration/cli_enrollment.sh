#!/bin/bash
# keyfleet enrollment: individual and group enrollments, proof of possession, and every bad input
# refused with a clear error and the store left as it was.
. "$(dirname "$0")/lib.sh"

ok "init" init
mkca factory
mkca other
mkdev dev-1 factory
openssl pkey -in "$T/dev-1.key" -pubout -out "$T/dev-1.pub" 2>/dev/null

# Individual enrollments, by certificate and by public key.
ok "add by cert" enrollment add --id dev-1 --cert "$T/dev-1.pem"
contains "add says so" "$OUT" "enrollment dev-1 added"
ok "add by pubkey" enrollment add --id dev-2 --pubkey "$T/dev-1.pub" --networks 10.0.0.0/8,192.168.1.0/24
ok "show --json" enrollment show dev-1 --json
equals "kind" "$(jq -r .kind <<<"$OUT")" individual
equals "subject" "$(jq -r .subject <<<"$OUT")" "CN=dev-1"
equals "key fingerprint is the SPKI's SHA-256" "$(jq -r .key_fingerprint <<<"$OUT")" \
    "$(openssl pkey -pubin -in "$T/dev-1.pub" -outform DER | sha256sum | cut -d' ' -f1)"
ok "show dev-2" enrollment show --id dev-2 --json
equals "networks kept" "$(jq -r .networks <<<"$OUT")" "10.0.0.0/8,192.168.1.0/24"

# Group enrollment with proof of possession.
ok "group create" enrollment group create --name factory --ca "$T/factory.pem"
code=$(printf '%s' "$OUT" | sed -n 's/^verification code: //p')
check "code is 32 hex digits" sh -c "printf '%s' '$code' | grep -Eq '^[0-9A-F]{32}$'"
ok "group show" enrollment show factory --json
equals "unverified" "$(jq -r .verified <<<"$OUT")" false
equals "code shown" "$(jq -r .verification_code <<<"$OUT")" "$code"

# The proof: CN = code, signed by the CA's key.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/v.key" -subj "/CN=$code" -out "$T/v.csr" 2>/dev/null
openssl x509 -req -in "$T/v.csr" -CA "$T/factory.pem" -CAkey "$T/factory.key" -days 1 -out "$T/good-proof.pem" 2>/dev/null
openssl x509 -req -in "$T/v.csr" -CA "$T/other.pem" -CAkey "$T/other.key" -days 1 -out "$T/wrong-key.pem" 2>/dev/null
openssl req -new -key "$T/v.key" -subj "/CN=0000$code" -out "$T/w.csr" 2>/dev/null
openssl x509 -req -in "$T/w.csr" -CA "$T/factory.pem" -CAkey "$T/factory.key" -days 1 -out "$T/wrong-cn.pem" 2>/dev/null

before=$(store_state)
refused "proof signed by another key" 1 "is not signed by the key of group factory's CA" \
    enrollment group verify --name factory --cert "$T/wrong-key.pem"
unchanged "proof signed by another key" "$before"
refused "proof with the wrong CN" 1 "which is not the verification code of group factory" \
    enrollment group verify --name factory --cert "$T/wrong-cn.pem"
unchanged "proof with the wrong CN" "$before"
refused "proof for an individual" 1 "enrollment dev-1 is individual, not a group" \
    enrollment group verify --name dev-1 --cert "$T/good-proof.pem"
refused "proof for no group" 1 "not found" enrollment group verify --name nope --cert "$T/good-proof.pem"
unchanged "refused proofs" "$before"
ok "good proof" enrollment group verify --name factory --cert "$T/good-proof.pem"
ok "verified" enrollment show factory --json
equals "verified now" "$(jq -r .verified <<<"$OUT")" true
equals "code gone" "$(jq -r 'has("verification_code")' <<<"$OUT")" false
refused "verify twice" 1 "already verified" enrollment group verify --name factory --cert "$T/good-proof.pem"
refused "new code for a verified group" 1 "already verified" enrollment group code --name factory

# A fresh code replaces the old one.
ok "group 2" enrollment group create --name factory2 --ca "$T/other.pem"
old=$(printf '%s' "$OUT" | sed -n 's/^verification code: //p')
ok "new code" enrollment group code --name factory2 --json
new=$(jq -r .verification_code <<<"$OUT")
check "codes differ" test "$old" != "$new"
openssl req -new -key "$T/v.key" -subj "/CN=$old" -out "$T/o.csr" 2>/dev/null
openssl x509 -req -in "$T/o.csr" -CA "$T/other.pem" -CAkey "$T/other.key" -days 1 -out "$T/old-proof.pem" 2>/dev/null
refused "old code no longer works" 1 "not the verification code" enrollment group verify --name factory2 --cert "$T/old-proof.pem"
# An expired code (moved into the past in the store) is refused with what to do.
sqlite3 "$T/d/keyfleet.db" "UPDATE enrollments SET code_expires = 1000 WHERE id = 'factory2'"
openssl req -new -key "$T/v.key" -subj "/CN=$new" -out "$T/n.csr" 2>/dev/null
openssl x509 -req -in "$T/n.csr" -CA "$T/other.pem" -CAkey "$T/other.key" -days 1 -out "$T/new-proof.pem" 2>/dev/null
refused "expired code" 1 "keyfleet enrollment group code --name factory2" enrollment group verify --name factory2 --cert "$T/new-proof.pem"

# Listing, disabling, enabling, removing.
ok "list --json" enrollment list --json
equals "four enrollments" "$(jq -r 'map(.id) | join(",")' <<<"$OUT")" "dev-1,dev-2,factory,factory2"
ok "list groups" enrollment list --kind group --json
equals "two groups" "$(jq length <<<"$OUT")" 2
ok "list table" enrollment list
contains "table header" "$OUT" "ID"
ok "disable" enrollment disable dev-1
ok "disabled" enrollment show dev-1 --json
equals "enabled false" "$(jq -r .enabled <<<"$OUT")" false
ok "disable again is a no-op" enrollment disable dev-1
contains "says so" "$OUT" "was already disabled"
ok "enable" enrollment enable dev-1
ok "remove" enrollment remove dev-2
refused "show removed" 1 "not found" enrollment show dev-2
refused "remove again" 1 "not found" enrollment remove dev-2

# Bad input, each with a clear error and the store unchanged.
before=$(store_state)
refused "duplicate id" 1 "an enrollment named dev-1 already exists" enrollment add --id dev-1 --cert "$T/dev-1.pem"
refused "id with upper case" 1 "must start with a lower-case letter or a digit" enrollment add --id Dev-1 --cert "$T/dev-1.pem"
refused "id with a slash" 1 "holds '/' at position 4" enrollment add --id dev/1 --cert "$T/dev-1.pem"
refused "id too long" 1 "the limit is 128" enrollment add --id "$(printf 'a%.0s' $(seq 1 129))" --cert "$T/dev-1.pem"
refused "CN is not the id" 1 "has CN \"dev-1\", but the registration id is \"dev-9\"" enrollment add --id dev-9 --cert "$T/dev-1.pem"
refused "a certificate where a key is expected" 1 "holds a CERTIFICATE, not a PUBLIC KEY" enrollment add --id dev-9 --pubkey "$T/dev-1.pem"
refused "a private key where a certificate is expected" 1 "holds a PRIVATE KEY, not a certificate" enrollment add --id dev-9 --cert "$T/dev-1.key"
head -c 300 "$T/dev-1.pem" >"$T/trunc.pem"
refused "truncated PEM" 1 "truncated PEM" enrollment add --id dev-1x --cert "$T/trunc.pem"
{ echo "-----BEGIN CERTIFICATE-----"; echo "bm90IGEgY2VydGlmaWNhdGU="; echo "-----END CERTIFICATE-----"; } >"$T/corrupt.pem"
refused "corrupt PEM" 1 "not a valid X.509 certificate" enrollment add --id dev-1x --cert "$T/corrupt.pem"
echo "garbage" >"$T/garbage.pem"
refused "garbage file" 1 "garbage.pem" enrollment add --id dev-1x --cert "$T/garbage.pem"
refused "missing file" 1 "No such file" enrollment add --id dev-1x --cert "$T/missing.pem"
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/weak.key" -out "$T/weak-dev.pem" -subj /CN=weak -days 30 \
    -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
refused "RSA-1024 device key" 1 "RSA 1024: RSA keys must have at least 2048 bits" enrollment add --id weak --cert "$T/weak-dev.pem"
refused "CA as an individual" 1 "is a CA certificate" enrollment add --id factory --cert "$T/factory.pem"
refused "non-CA group certificate" 1 "is not a CA" enrollment group create --name g2 --ca "$T/dev-1.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/noca.key" -out "$T/noca.pem" -subj /CN=noca -days 30 -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
refused "CA:FALSE group certificate" 1 "is not a CA: basicConstraints CA:FALSE" enrollment group create --name g2 --ca "$T/noca.pem"
# An expired CA, made with `openssl ca` (OpenSSL 3.0's x509 cannot set dates in the past).
openssl req -new -key "$T/other.key" -subj /CN=old-ca -out "$T/old.csr" 2>/dev/null
mkdir -p "$T/ca-db" && : >"$T/ca-db/index" && echo 01 >"$T/ca-db/serial"
cat >"$T/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $T/ca-db/index
serial = $T/ca-db/serial
new_certs_dir = $T/ca-db
default_md = sha256
policy = p
x509_extensions = e
[p]
commonName = supplied
[e]
basicConstraints = critical,CA:TRUE
keyUsage = keyCertSign
CNF
openssl ca -batch -config "$T/ca.cnf" -selfsign -keyfile "$T/other.key" -in "$T/old.csr" \
    -startdate 20200101000000Z -enddate 20200102000000Z -out "$T/expired-ca.pem" >/dev/null 2>&1
refused "expired group CA" 1 "expired on 2020-01-02T00:00:00Z" enrollment group create --name g2 --ca "$T/expired-ca.pem"
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/weakca.key" -out "$T/weak-ca.pem" -subj /CN=weakca -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign" 2>/dev/null
refused "RSA-1024 group CA" 1 "RSA keys must have at least 2048 bits" enrollment group create --name g2 --ca "$T/weak-ca.pem"
refused "same CA in two groups" 1 "group factory already uses this CA" enrollment group create --name g3 --ca "$T/factory.pem"
refused "keyfleet's own issuing CA as a group" 1 "that is keyfleet's own issuing CA" enrollment group create --name g4 --ca "$T/d/ca/issuing.crt"
refused "keyfleet's own root CA as a group" 1 "that is keyfleet's own root CA" enrollment group create --name g4 --ca "$T/d/ca/root.crt"
long_nets=$(for i in $(seq 4096 4127); do printf '2001:db8:aaaa:bbbb:cccc:dddd:eeee:%x/128,' "$i"; done | sed 's/,$//')
refused "bad networks" 1 "has host bits set" enrollment add --id dev-7 --cert "$T/dev-1.pem" --networks 10.0.0.1/8
refused "group name syntax" 1 "group name \"Bad Name\"" enrollment group create --name "Bad Name" --ca "$T/factory.pem"
unchanged "every refusal above" "$before"

# The longest network list is kept whole (it was once cut short, which could widen it).
kf enrollment add --id dev-nets --pubkey "$T/dev-1.pub" --networks "$long_nets"
equals "32 networks accepted" "$RC" 0
ok "show them" enrollment show dev-nets --json
equals "all 32 kept, exactly" "$(jq -r .networks <<<"$OUT")" "$long_nets"
kf enrollment remove dev-nets
before=$(store_state)

# Usage errors exit 2.
refused "no --id" 2 "--id is required" enrollment add --cert "$T/dev-1.pem"
refused "both --cert and --pubkey" 2 "exactly one of --cert and --pubkey" enrollment add --id x --cert a --pubkey b
refused "unknown option" 2 "unknown option" enrollment list --frob
refused "bad --kind" 2 "--kind is individual or group" enrollment list --kind both
unchanged "usage errors" "$before"

# Every change above is in the audit log, and the chain is whole.
ok "audit" audit list --json
for a in enrollment.add enrollment.group.create enrollment.group.verify enrollment.group.code \
    enrollment.disable enrollment.enable enrollment.remove; do
    check "audited $a" sh -c "jq -e 'map(.action) | index(\"$a\")' '$T/out' >/dev/null"
done
ok "audit verify" audit verify

finish
