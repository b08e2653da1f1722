#!/bin/bash
# The issuing CA's key inside a TPM 2.0 (swtpm behind tpm2-abrmd, started here): keyfleet init
# --issuing-key tpm2:handle:..., certificates signed by the TPM that openssl verify accepts.
. "$(dirname "$0")/lib.sh"

start_tpm || exit 1
HANDLE=0x81000010
tpm_key $HANDLE || exit 1

ok "init with the issuing key in the TPM" init --issuing-key tpm2:handle:$HANDLE
contains "init says where the key is" "$OUT" "key in tpm2"
D=$T/d
check_not "no issuing key file" test -e "$D/ca/issuing.key"
check "the issuing CA verifies" openssl verify -CAfile "$D/ca/root.crt" "$D/ca/issuing.crt"
tpm2_readpublic -c $HANDLE -f pem -o "$T/tpmpub.pem" >/dev/null
check "the certified key is the TPM's" sh -c "test \"\$(openssl pkey -pubin -in '$T/tpmpub.pem' -outform DER | sha256sum)\" = \"\$(openssl x509 -in '$D/ca/issuing.crt' -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)\""
check "the server cert was signed by the TPM" openssl verify -purpose sslserver -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$D/server/server.crt"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev.key" -out "$T/dev.csr" -subj /CN=tpm-dev-1 2>/dev/null
ok "issue a device certificate" cert issue --device tpm-dev-1 --csr "$T/dev.csr" --out "$T/dev.pem"
check "openssl verify accepts it" openssl verify -purpose sslclient -CAfile "$D/ca/root.crt" \
    -untrusted "$D/ca/issuing.crt" "$T/dev.pem"
ok "a CRL signed by the TPM" ca crl --out "$T/crl.pem"
check "the CRL verifies" sh -c "openssl crl -in '$T/crl.pem' -CAfile '$D/ca/issuing.crt' -noout 2>&1 | grep -q 'verify OK'"
ok "ca show" ca show --json
equals "ca show says tpm2" "$(jq -r .issuing.key <<<"$OUT")" tpm2

"$KF" --dir "$T/bad" init --issuing-key tpm2:handle:0x81000099 >/dev/null 2>"$T/err"
equals "a missing handle is refused" "$?" 1
contains "missing handle message" "$(cat "$T/err")" "tpm2:handle:0x81000099"
check_not "nothing made" sh -c "ls -d '$T'/bad '$T'/bad.init-*"
finish
