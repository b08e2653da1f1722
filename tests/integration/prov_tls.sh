#!/bin/bash
# keyfleetd's TLS and assignment policy, judged by openssl s_client and curl: protocol versions and
# ciphers, session resumption (with the policy applied again on a resumed session), hub
# allocation (static and hashed, a disabled hub), and the certificate lifetime from the config.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
ok "hub a" hub add --name hub-a --endpoint hub-a.example:8883
ok "hub b" hub add --name hub-b --endpoint hub-b.example:8883
mkca factory
group_enroll fab factory
conf_set ca device_cert_days 7
start_kfd || exit 1
# -nocommands: a chunk of input that starts with Q, R or k would be a command to s_client.
S_CLIENT="openssl s_client -nocommands -connect 127.0.0.1:$KFD_PORT -CAfile $D/ca/root.crt -verify_return_error"

# ---- protocol versions and ciphers ----
out=$(echo | $S_CLIENT 2>&1)
contains "TLS 1.3 by default" "$out" "New, TLSv1.3"
contains "the server's chain verifies" "$out" "Verify return code: 0 (ok)"
out=$(echo | $S_CLIENT -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' 2>&1)
contains "TLS 1.1 refused" "$out" "alert protocol version"
out=$(echo | $S_CLIENT -tls1 -cipher 'DEFAULT:@SECLEVEL=0' 2>&1)
contains "TLS 1.0 refused" "$out" "alert protocol version"
for c in ECDHE-ECDSA-AES128-SHA ECDHE-ECDSA-AES256-SHA384 AES128-GCM-SHA256; do
    out=$(echo | $S_CLIENT -tls1_2 -cipher "$c" 2>&1)
    contains "TLS 1.2 without AEAD or ECDHE refused: $c" "$out" "Cipher is (NONE)"
done
for c in ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-CHACHA20-POLY1305; do
    out=$(echo | $S_CLIENT -tls1_2 -cipher "$c" 2>&1)
    contains "TLS 1.2 with ECDHE and AEAD: $c" "$out" "Cipher is $c"
done

# ---- session resumption, with the policy applied on the resumed session ----
fdev res-1 factory
ocsr res-1
jq -n --rawfile csr "$T/res-1.op.csr" '{csr: $csr}' >"$T/res.json"
request() { # request FILE: an HTTP POST /api/v1/register with FILE as its body
    printf 'POST /api/v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' \
        "$(stat -c %s "$1")"
    cat "$1"
    sleep 1
}
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >"$T/get"
(cat "$T/get"; sleep 0.5) | $S_CLIENT -cert "$T/res-1.pem" -key "$T/res-1.key" -sess_out "$T/sess" >"$T/first" 2>&1
contains "first connection: a full handshake" "$(cat "$T/first")" "New, TLSv1.3"
request "$T/res.json" | $S_CLIENT -cert "$T/res-1.pem" -key "$T/res-1.key" -sess_in "$T/sess" >"$T/second" 2>&1
contains "second connection: resumed" "$(cat "$T/second")" "Reused, TLSv1.3"
contains "a resumed session still enrolls with the factory certificate" "$(cat "$T/second")" "HTTP/1.1 200 OK"
ok "the device exists" device show res-1 --json
equals "and came in through its group" "$(jq -r .enrollment <<<"$OUT")" fab
# Disable the device: the same session, resumed again, is refused by the policy.
ok "disable res-1" device disable res-1
request "$T/res.json" | $S_CLIENT -cert "$T/res-1.pem" -key "$T/res-1.key" -sess_in "$T/sess" >"$T/third" 2>&1
contains "resumed again" "$(cat "$T/third")" "Reused, TLSv1.3"
contains "but the device is disabled now" "$(cat "$T/third")" "device_disabled"
metrics=$(curl -s --cacert "$D/ca/root.crt" "$URL/metrics")
resumed=$(sed -n 's/^keyfleet_tls_handshakes_total{result="resumed"} //p' <<<"$metrics")
check "resumptions counted" test "${resumed:-0}" -ge 2

# ---- hub allocation ----
# Hashed (the default): stable for a device, spread over the hubs.
declare -A seen
for i in $(seq 1 12); do
    fdev h-$i factory
    ocsr h-$i
    register "$T/h-$i.pem" "$T/h-$i.key" "$T/h-$i.op.csr"
    equals "h-$i enrolls" "$HTTP" 200
    hub=$(jq -r .hub <<<"$BODY")
    seen[$hub]=1
    eval "first_$i=\$hub"
done
equals "hashed allocation uses both hubs" "${#seen[@]}" 2
ocsr h-1b h-1
register "$T/h-1.pem" "$T/h-1.key" "$T/h-1b.op.csr"
equals "registering again keeps the hub" "$(jq -r .hub <<<"$BODY")" "$first_1"
# Disable the hub of h-1: it moves to the other one, and the record says so.
old_hub=$(jq -r .hub <<<"$BODY")
old_name=${old_hub%%.*}
ok "disable its hub" hub disable "$old_name"
register "$T/h-1.pem" "$T/h-1.key" "$T/h-1b.op.csr"
check "a disabled hub gives its device up" test "$(jq -r .hub <<<"$BODY")" != "$old_hub"
ok "h-1" device show h-1 --json
check "the device record has the new hub" test "$(jq -r .hub <<<"$OUT")" != "$old_name"
ok "enable it again" hub enable "$old_name"
# Static: every device of the enrollment to the one hub it names.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/st-1.key" -out "$T/st-1.pem" \
    -subj /CN=st-1 -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
ok "a static enrollment" enrollment add --id st-1 --cert "$T/st-1.pem" --hub hub-b
ocsr st-1
register "$T/st-1.pem" "$T/st-1.key" "$T/st-1.op.csr"
equals "static: the named hub" "$(jq -r .hub <<<"$BODY")" hub-b.example:8883
ok "move it" enrollment set st-1 --hub hub-a
register "$T/st-1.pem" "$T/st-1.key" "$T/st-1.op.csr"
equals "static: moved with its enrollment" "$(jq -r .hub <<<"$BODY")" hub-a.example:8883
# No enabled hub: provisioned all the same, unassigned.
ok "disable hub a" hub disable hub-a
ok "disable hub b" hub disable hub-b
fdev nohub-1 factory
ocsr nohub-1
register "$T/nohub-1.pem" "$T/nohub-1.key" "$T/nohub-1.op.csr"
equals "no hub: still 200" "$HTTP" 200
equals "no hub: unassigned" "$(jq -r .status <<<"$BODY")" unassigned
equals "no hub: null" "$(jq -r .hub <<<"$BODY")" null

# ---- the certificate's lifetime comes from the configuration ----
jq -r .certificate <<<"$BODY" >"$T/nohub.pem"
nb=$(date -d "$(openssl x509 -in "$T/nohub.pem" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -d "$(openssl x509 -in "$T/nohub.pem" -noout -enddate | cut -d= -f2)" +%s)
renew=$(date -d "$(jq -r .renewAfter <<<"$BODY")" +%s)
check "device_cert_days = 7" test $((na - nb)) -ge $((7 * 86400)) -a $((na - nb)) -le $((7 * 86400 + 120))
check "renewAfter at two thirds of 7 days" test $((renew - nb - (na - nb) * 2 / 3)) -ge -2 -a $((renew - nb - (na - nb) * 2 / 3)) -le 2

stop_kfd
equals "SIGTERM: exit 0" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
