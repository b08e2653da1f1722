#!/bin/bash
# keyfleet-agent with its factory key inside a TPM 2.0 (swtpm behind tpm2-abrmd on a private
# D-Bus session, started here): it provisions, makes its operational key in the same TPM,
# connects to the hub with it, renews into the TPM again, and no private key exists in any file
# it wrote.
. "$(dirname "$0")/lib.sh"

start_tpm || exit 1
HANDLE=0x81000011
tpm_key $HANDLE || exit 1

fleet_up || exit 1
# the factory certificate for the TPM's key, as a factory would make it
openssl req -provider tpm2 -provider default -propquery '?provider=tpm2,tpm2.digest!=yes' -new \
    -key handle:$HANDLE -subj /CN=tpm-dev -out "$T/tpm-dev.csr" 2>"$T/req.err"
check "a CSR signed inside the TPM" test -s "$T/tpm-dev.csr"
openssl x509 -req -in "$T/tpm-dev.csr" -CA "$T/fca.pem" -CAkey "$T/fca.key" -days 30 \
    -out "$T/tpm-dev.pem" 2>/dev/null
ok "reader service" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"

agent_conf tpm "$T/tpm-dev.pem" "tpm2:handle:$HANDLE" "user = root"
cat >>"$T/tpm.conf" <<'CONF'
[telemetry]
t = 1 echo '{"in":"tpm"}'
CONF
"$AGENT" --config "$T/tpm.conf" --check >"$T/check.out" 2>&1
contains "--check sees the key in the TPM" "$(cat "$T/check.out")" "factory key in tpm2"
sub tel dash -t 'devices/tpm-dev/telemetry/#' -v
start_agent tpm
check "provisioned with the TPM's factory key" wait_file "$T/tpm.data/identity.json" 20
equals "the operational key is a TPM key" "$(jq -r .key "$T/tpm.data/identity.json" | cut -c1-5)" "tpm2:"
check "held as a TSS2 blob" grep -q "BEGIN TSS2 PRIVATE KEY" "$T/tpm.data/op-1.tss2"
check_not "which is no key without its TPM" openssl pkey -in "$T/tpm.data/op-1.tss2" -noout
check "connected to the hub with it" event_with hub.connected '.detail.id == "tpm-dev"'
check "telemetry flows" wait_for tel 'devices/tpm-dev/telemetry/t {"in":"tpm"}'
jq -r .certificate "$T/tpm.data/identity.json" >"$T/op.pem"
openssl pkey -provider tpm2 -provider default -in "$T/tpm.data/op-1.tss2" -pubout -out "$T/op.pub" 2>/dev/null
check "the certificate is for the TPM key" sh -c "test \"\$(openssl x509 -in '$T/op.pem' -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)\" = \"\$(openssl pkey -pubin -in '$T/op.pub' -outform DER | sha256sum)\""
kill -USR1 "$AGENT_PID"
for _ in $(seq 1 100); do
    [ "$(jq -r .generation "$T/tpm.data/identity.json" 2>/dev/null)" = 2 ] && break
    sleep 0.1
done
equals "renewed with a new key in the TPM" "$(jq -r .generation "$T/tpm.data/identity.json")" 2
check "op-2.tss2" test -s "$T/tpm.data/op-2.tss2"
check_not "the old blob is gone" test -e "$T/tpm.data/op-1.tss2"
check "connected again after the renewal" wait_log tpm "switching to the renewed certificate" 5
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
equals "clean exit" "$?" 0
check_not "no private key in any file the agent wrote" \
    grep -rlE -- "-----BEGIN (EC |ENCRYPTED |RSA |)PRIVATE KEY-----" "$T/tpm.data"
kill "$SUB_tel" 2>/dev/null
finish
