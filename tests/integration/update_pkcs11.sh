#!/bin/bash
# The vendor's keys in a PKCS#11 token (issue 15; SoftHSM2 in a private token directory):
# keyfleet-release pub exports a token key's public half for the root, and sign signs inside the
# token (RFC 7512 URI, PIN from a file). A 2-of-2 targets threshold with one key in the token and
# one in a passphrase-protected file: keyfleet release add accepts the release only with both;
# a wrong PIN signs nothing; the token key's signature verifies as ecdsa-sha2-nistp256.
# keyfleet's own online keys (timestamp, snapshot) in the token too ([ca] update_*_key, as
# issuing_key may be): no key file, the published metadata signed inside the token, renewed.
. "$(dirname "$0")/lib.sh"

softhsm_token vendor 1234 carol || exit 1
echo -n 1234 >"$T/pin"
chmod 600 "$T/pin"
URI="pkcs11:token=vendor;object=carol;type=private?module-path=$MODULE&pin-source=file:$T/pin"
ok "init" init
# the online keys: two more P-256 keys in the token, the module and PIN from the environment
for k in ts:02 sn:03; do
    pkcs11-tool --module "$MODULE" --token-label vendor --login --pin 1234 --keypairgen \
        --key-type EC:prime256v1 --id "${k#*:}" --label "${k%:*}" >/dev/null 2>&1
done
export KEYFLEET_PKCS11_MODULE=$MODULE KEYFLEET_PKCS11_PIN=1234
conf_set ca update_timestamp_key "pkcs11:token=vendor;object=ts;type=private"
conf_set ca update_snapshot_key "pkcs11:token=vendor;object=sn;type=private"
V=$T/vendor
mkdir -p "$V"
ok "online keys" release keys --json
jq -c .timestamp <<<"$OUT" >"$V/ts.json"
jq -c .snapshot <<<"$OUT" >"$V/sn.json"
equals "the online keys are the token's (P-256)" "$(jq -r '[.timestamp.keytype, .snapshot.scheme] | join(" ")' <<<"$OUT")" \
    "ecdsa ecdsa-sha2-nistp256"
check_not "no online key file" test -e "$T/d/updates/keys/timestamp.key"

rel() { # rel ARGS...: keyfleet-release, its output in ROUT and status in RRC
    ROUT=$("$REL" "$@" 2>&1)
    RRC=$?
}
rel pub --key "$URI" --out "$V/carol.pub"
equals "pub exports the token key's public half" "$RRC" 0
check "as a PEM public key" openssl pkey -pubin -in "$V/carol.pub" -noout
pkcs11-tool --module "$MODULE" --token-label vendor --read-object --type pubkey --label carol -o "$T/tok.der" >/dev/null 2>&1
check "the token's own key" sh -c "test \"\$(openssl pkey -pubin -inform DER -in '$T/tok.der' -outform DER | sha256sum)\" = \"\$(openssl pkey -pubin -in '$V/carol.pub' -outform DER | sha256sum)\""
CAROL=$(sed -n 's/.*public key \([0-9a-f]*\)$/\1/p' <<<"$ROUT")
printf 'erin secret\n' >"$V/erin.pass"
chmod 600 "$V/erin.pass"
"$REL" keygen --out "$V/erin.key" --type p256 --passphrase-file "$V/erin.pass" >/dev/null
"$REL" keygen --out "$V/root.key" --no-passphrase >/dev/null
"$REL" init-root --out "$V/root.json" --root "$V/root.key.pub" --root-threshold 1 \
    --targets "$V/carol.pub" --targets "$V/erin.key.pub" --targets-threshold 2 \
    --timestamp "$V/ts.json" --snapshot "$V/sn.json" >/dev/null
"$REL" sign --key "$V/root.key" "$V/root.json" >/dev/null
head -c 300000 /dev/urandom >"$T/fw.bin"
"$REL" targets --out "$V/t.json" --image "$T/fw.bin" --name gw/fw.bin --hardware gw-a --version 1 >/dev/null

# a wrong PIN: nothing signed
echo -n 9999 >"$T/badpin"
chmod 600 "$T/badpin"
rel sign --key "pkcs11:token=vendor;object=carol;type=private?module-path=$MODULE&pin-source=file:$T/badpin" "$V/t.json"
equals "a wrong PIN is refused" "$RRC" 1
contains "saying so" "$ROUT" "wrong or missing PIN"
equals "and signs nothing" "$(jq '.signatures | length' "$V/t.json")" 0

rel sign --key "$URI" "$V/t.json"
equals "signed inside the token" "$RRC" 0
contains "by the token key" "$ROUT" "signed by $CAROL"
refused "one of two targets keys is not enough" 1 "refused (signatures)" \
    release add --root "$V/root.json" --targets "$V/t.json" --image "gw/fw.bin=$T/fw.bin"
rel sign --key "$V/erin.key" --passphrase-file "$V/erin.pass" "$V/t.json"
equals "the second key holder signs (a passphrase-protected file)" "$RRC" 0
rel verify --root "$V/root.json" "$V/t.json"
equals "keyfleet-release verify: a threshold" "$RRC" 0
ok "published with the token's signature" release add --root "$V/root.json" --targets "$V/t.json" --image "gw/fw.bin=$T/fw.bin"
M=$T/d/updates/repo/metadata
rel verify --root "$V/root.json" "$M/timestamp.json" "$M/1.snapshot.json"
equals "timestamp and snapshot signed inside the token" "$RRC" 0
ok "renewed through the token" release refresh
rel verify --root "$V/root.json" "$M/timestamp.json" "$M/2.snapshot.json"
equals "... and they verify" "$RRC" 0
equals "timestamp version 2" "$(jq .signed.version "$M/timestamp.json")" 2
conf_set ca update_timestamp_key "pkcs11:token=vendor;object=nosuch;type=private"
refused "an online key that is not there" 1 "the timestamp key pkcs11:token=vendor;object=nosuch" release refresh
equals "nothing published then" "$(jq .signed.version "$M/timestamp.json")" 2
conf_set ca update_timestamp_key "pkcs11:token=vendor;object=ts;type=private"
# The token's signature by hand: ECDSA P-256 over SHA-256 of the canonical signed part.
python3 - "$V/t.json" "$CAROL" >"$T/signed.bin" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sys.stdout.write(json.dumps(d["signed"], sort_keys=True, separators=(",", ":"), ensure_ascii=False))
PY
jq -r --arg k "$CAROL" '.signatures[] | select(.keyid == $k) | .sig' "$V/t.json" | xxd -r -p >"$T/sig.der"
check "openssl verifies the token's signature" openssl dgst -sha256 -verify "$V/carol.pub" -signature "$T/sig.der" "$T/signed.bin"
finish
