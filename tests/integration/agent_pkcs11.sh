#!/bin/bash
# keyfleet-agent with its factory key in a PKCS#11 token (SoftHSM2, private token directory): it
# provisions, makes its operational key in the same token (sensitive, not extractable), connects
# to the hub with it, renews into the token again, and no private key exists in any file it wrote.
. "$(dirname "$0")/lib.sh"

softhsm_token kf-dev 4321 factory || exit 1
echo -n 4321 >"$T/pin"
chmod 600 "$T/pin"
URI="pkcs11:token=kf-dev;object=factory;type=private?module-path=$MODULE&pin-source=file:$T/pin"

fleet_up || exit 1
# the factory certifies the token's public key, as a factory line would
pkcs11-tool --module "$MODULE" --token-label kf-dev --read-object --type pubkey --label factory \
    -o "$T/factory.pub.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$T/factory.pub.der" -out "$T/factory.pub.pem"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/throwaway.key" \
    -subj /CN=hsm-dev -out "$T/hsm-dev.csr" 2>/dev/null
openssl x509 -req -in "$T/hsm-dev.csr" -force_pubkey "$T/factory.pub.pem" -CA "$T/fca.pem" \
    -CAkey "$T/fca.key" -days 30 -out "$T/hsm-dev.pem" 2>/dev/null
rm -f "$T/throwaway.key"
check "a factory certificate for the token's key" test -s "$T/hsm-dev.pem"

agent_conf hsm "$T/hsm-dev.pem" "$URI" "user = root"
"$AGENT" --config "$T/hsm.conf" --check >"$T/check.out" 2>&1
contains "--check sees the key in the token" "$(cat "$T/check.out")" "factory key in pkcs11"
start_agent hsm
ID=$T/hsm.data/identity.json
check "provisioned with the token's factory key" wait_file "$ID" 20
equals "the operational key is in the token" "$(jq -r .key "$ID")" "pkcs11:token=kf-dev;object=keyfleet-op-1;type=private"
check_not "no PIN is stored" grep -qE '"4321"|"pin"|pin-(value|source)' "$ID"
pkcs11-tool --module "$MODULE" --token-label kf-dev --login --pin 4321 --list-objects --type privkey >"$T/objs" 2>&1
contains "the token holds it" "$(cat "$T/objs")" "keyfleet-op-1"
check "sensitive and never extractable" sh -c "sed -n '/keyfleet-op-1/,/^Private\\|^\$/p' '$T/objs' | grep -q 'never extractable\\|sensitive'"
check "connected to the hub with it" event_with hub.connected '.detail.id == "hsm-dev"'
jq -r .certificate "$ID" >"$T/op.pem"
pkcs11-tool --module "$MODULE" --token-label kf-dev --read-object --type pubkey --label keyfleet-op-1 \
    -o "$T/op.pub.der" >/dev/null 2>&1
check "the certificate is for the token's key" sh -c "test \"\$(openssl x509 -in '$T/op.pem' -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)\" = \"\$(openssl pkey -pubin -inform DER -in '$T/op.pub.der' -outform DER | sha256sum)\""

kill -USR1 "$AGENT_PID"
for _ in $(seq 1 100); do
    [ "$(jq -r .generation "$ID" 2>/dev/null)" = 2 ] && break
    sleep 0.1
done
equals "renewed with a new key in the token" "$(jq -r .key "$ID")" "pkcs11:token=kf-dev;object=keyfleet-op-2;type=private"
pkcs11-tool --module "$MODULE" --token-label kf-dev --login --pin 4321 --list-objects >"$T/objs2" 2>&1
check_not "the old key is destroyed" grep -q "keyfleet-op-1" "$T/objs2"
contains "the factory key is untouched" "$(cat "$T/objs2")" "label:      factory"
check "connected again" wait_log hsm "switching to the renewed certificate" 5
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
equals "clean exit" "$?" 0
check_not "no private key in any file the agent wrote" \
    grep -rlE -- "PRIVATE KEY-----" "$T/hsm.data"
finish
