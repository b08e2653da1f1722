#!/bin/bash
# The issuing CA's key in a PKCS#11 token (SoftHSM2, private token directory): keyfleet init
# --issuing-key pkcs11:..., then certificates signed inside the token that openssl verify accepts,
# and no issuing key file anywhere.
. "$(dirname "$0")/lib.sh"

softhsm_token kf-test 1234 issuing || exit 1
echo -n 1234 >"$T/pin"
chmod 600 "$T/pin"
URI="pkcs11:token=kf-test;object=issuing;type=private?module-path=$MODULE&pin-source=file:$T/pin"

ok "init with the issuing key in the token" init --issuing-key "$URI"
contains "init says where the key is" "$OUT" "key in pkcs11"
D=$T/d
check_not "no issuing key file" test -e "$D/ca/issuing.key"
check "the config names the token" grep -qF "issuing_key = pkcs11:token=kf-test;object=issuing" "$D/keyfleet.conf"
check "the issuing CA verifies" openssl verify -CAfile "$D/ca/root.crt" "$D/ca/issuing.crt"
# The issuing certificate certifies the token's key.
pkcs11-tool --module "$MODULE" --token-label kf-test --read-object --type pubkey --label issuing -o "$T/tokpub.der" >/dev/null 2>&1
check "the certified key is the token's" sh -c "test \"\$(openssl pkey -pubin -inform DER -in '$T/tokpub.der' -outform DER | sha256sum)\" = \"\$(openssl x509 -in '$D/ca/issuing.crt' -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)\""
check "the server cert was signed in the token" openssl verify -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$D/server/server.crt"
check "the first CRL was signed in the token" sh -c "openssl crl -in '$D/ca/crl.pem' -CAfile '$D/ca/issuing.crt' -noout 2>&1 | grep -q 'verify OK'"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev.key" -out "$T/dev.csr" -subj /CN=hsm-dev-1 2>/dev/null
ok "issue a device certificate" cert issue --device hsm-dev-1 --csr "$T/dev.csr" --out "$T/dev.pem"
check "openssl verify accepts it" openssl verify -purpose sslclient -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$T/dev.pem"
ok "revoke it (a CRL signed in the token)" cert revoke "$(openssl x509 -in "$T/dev.pem" -noout -serial | cut -d= -f2 | tr A-F a-f)"
check_not "openssl refuses it with the new CRL" openssl verify -crl_check -CRLfile "$D/ca/crl.pem" \
    -CAfile "$D/ca/root.crt" -untrusted "$D/ca/issuing.crt" "$T/dev.pem"
ok "ca show" ca show --json
equals "ca show says pkcs11" "$(jq -r .issuing.key <<<"$OUT")" pkcs11

# A PIN given in the URI is never printed, and the store keeps only a redacted URI.
"$KF" --dir "$T/pinv" init --issuing-key "pkcs11:token=kf-test;object=issuing;type=private?module-path=$MODULE&pin-value=1234" >"$T/out" 2>"$T/err"
equals "init with pin-value" "$?" 0
check_not "the PIN is not printed" grep -q 1234 "$T/out" "$T/err"
contains "printed redacted" "$(cat "$T/out")" "pin-value=***"
check_not "the store holds no PIN" sh -c "sqlite3 '$T/pinv/keyfleet.db' 'SELECT key_uri FROM cas' | grep -q 1234"
check "the config keeps it (0600)" test "$(stat -c %a "$T/pinv/keyfleet.conf")" = 600

# A wrong PIN or a missing object: a clear error, nothing made.
echo -n 9999 >"$T/wrongpin"
chmod 600 "$T/wrongpin"
"$KF" --dir "$T/bad" init --issuing-key "pkcs11:token=kf-test;object=issuing;type=private?module-path=$MODULE&pin-source=file:$T/wrongpin" >/dev/null 2>"$T/err"
equals "wrong PIN refused" "$?" 1
contains "wrong PIN message" "$(cat "$T/err")" "cannot load private key pkcs11:token=kf-test;object=issuing;type=private"
check_not "the PIN is not printed" grep -q 9999 "$T/err"
check_not "nothing made" sh -c "ls -d '$T'/bad '$T'/bad.init-*"
"$KF" --dir "$T/bad" init --issuing-key "pkcs11:token=kf-test;object=nope;type=private?module-path=$MODULE&pin-source=file:$T/pin" >/dev/null 2>"$T/err"
equals "missing object refused" "$?" 1
chmod 644 "$T/wrongpin"
"$KF" --dir "$T/bad" init --issuing-key "pkcs11:token=kf-test;object=issuing;type=private?module-path=$MODULE&pin-source=file:$T/wrongpin" >/dev/null 2>"$T/err"
equals "a PIN file others can read is refused" "$?" 1
contains "saying why" "$(cat "$T/err")" "can be read by others (mode 0644): chmod 600 it"
"$KF" --dir "$T/bad" init --issuing-key "pkcs11:token=kf-test;object=issuing;type=private" >/dev/null 2>"$T/err"
equals "no module refused" "$?" 1
contains "no module message" "$(cat "$T/err")" "names no module"
finish
