#!/bin/bash
# Attack: TLS resumption on the hub skipped the certificate's expiry, and so revocation too. The
# session cache gave back the identity and serial; CONNECT checked the device's status and the
# CRL but never notAfter, and each resumed connection got a fresh ticket, so resumption chained
# without end: an expired certificate connected by resuming, and a revoked one that had since
# expired connected again once a routine CRL left it out. Now:
#   - no session (cache entry or stateless ticket) is resumed past its certificate's notAfter,
#     however it was chained, in either resumption mode (1- and 2-minute certificates here);
#   - a live connection ends when its certificate expires;
#   - a serial once revoked stays refused, whatever the CRL says (here: no CRL file at all, and a
#     routine CRL that no longer lists an expired certificate).
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
conf_set ca device_cert_minutes 1
# A second keyfleetd on the same deployment, with stateless tickets and 2-minute certificates.
cp "$D/keyfleet.conf" "$T/b.conf"
start_kfd || exit 1
A_HUB=$HUB_PORT A_URL=$URL
B_PORT=$(free_port) B_HUB=$(free_port)
KFD_CONF=$T/b.conf conf_set provisioning listen "127.0.0.1:$B_PORT"
KFD_CONF=$T/b.conf conf_set hub listen "127.0.0.1:$B_HUB"
KFD_CONF=$T/b.conf conf_set hub tls_resumption tickets
KFD_CONF=$T/b.conf conf_set ca device_cert_minutes 2
KEYFLEET_LOG=info "$KFD" --dir "$D" --config "$T/b.conf" >>"$T/kfd-b.log" 2>&1 &
B_PID=$!
stop_b() { kill -TERM "$B_PID" 2>/dev/null; wait "$B_PID" 2>/dev/null; return 0; }
CLEANUP_HOOKS="${CLEANUP_HOOKS:-} stop_b"
for _ in $(seq 1 100); do
    curl -s -o /dev/null --cacert "$D/ca/root.crt" "https://127.0.0.1:$B_PORT/healthz" && break
    sleep 0.05
done

provision dev-1
provision dev-3
provision dev-4
provision dev-5 # stays connected until its certificate ends
URL="https://127.0.0.1:$B_PORT" provision dev-2
not_after() { date -d "$(openssl x509 -in "$T/$1.op.pem" -noout -enddate | cut -d= -f2)" +%s; }
life=$(($(not_after dev-2) - $(date +%s)))
check "dev-2 has a 2-minute certificate from the second keyfleetd (${life} s left)" \
    test "$life" -gt 100 -a "$life" -le 120
life=$(($(not_after dev-1) - $(date +%s)))
check "dev-1 has a 1-minute certificate (${life} s left)" test "$life" -gt 40 -a "$life" -le 60
resume() { # resume NAME PORT WHO STEPS...: mqtt_resume.py in the background, output in $T/NAME.out
    local name=$1 port=$2 who=$3
    shift 3
    python3 "$(dirname "$0")/mqtt_resume.py" "$port" "$D/ca/root.crt" "$T/$who.op.pem" \
        "$T/$who.op.key" "$who" "$@" >"$T/$name.out" 2>&1 &
    eval "PID_$name=$!"
}
sleep_until() { local left=$(($1 - $(date +%s))); [ "$left" -gt 0 ] && sleep "$left"; return 0; }

resume r1 "$A_HUB" dev-1 connect sleep:3 resume resume "until:$T/go-1" resume
resume r2 "$B_HUB" dev-2 connect sleep:3 resume resume "until:$T/go-2" resume
resume r3 "$A_HUB" dev-3 connect "until:$T/go-3" resume
resume r4 "$A_HUB" dev-4 connect "until:$T/go-4" resume
# dev-5 stays connected, until its certificate ends
# (a client of its own: mosquitto_sub would only reconnect, and be refused)
timeout 150 python3 -c "
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations('$D/ca/root.crt')
ctx.load_cert_chain('$T/dev-5.op.pem', '$T/dev-5.op.key')
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', $A_HUB)))
cid = b'dev-5'
body = b'\\x00\\x04MQTT\\x04\\x02\\x00\\x00' + len(cid).to_bytes(2, 'big') + cid
s.sendall(bytes([0x10, len(body)]) + body)
print('connack', s.recv(4).hex(), flush=True)
while True:
    try:
        if not s.recv(4096):
            break
    except OSError:
        break
print('closed-at', int(time.time()), flush=True)
" >"$T/live.out" 2>&1 &
LIVE=$!
sleep 4.5

# ---- revoked, and no CRL at all: the store still says so ----
serial() { openssl x509 -in "$T/$1.op.pem" -noout -serial | cut -d= -f2 | tr A-F a-f | sed 's/^0*//'; }
ok "revoke dev-3's certificate" cert revoke "$(serial dev-3)"
rm -f "$D/ca/crl.pem"
sleep 1 # keyfleetd notices the CRL file changed
touch "$T/go-3"
wait "$PID_r3"
contains "dev-3 connected before" "$(cat "$T/r3.out")" "connect resumed=0 connack=20020000"
check "a revoked certificate's session is not resumed, though no CRL lists it" \
    grep -q '^resume refused' "$T/r3.out"
check "hub.auth_failed revoked" event_with hub.auth_failed \
    '.detail.reason == "revoked" and .detail.id == "dev-3"'
metric() { curl -s --cacert "$D/ca/root.crt" "$A_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
equals "with no CRL file, keyfleetd says it checks against none" "$(metric keyfleet_crl_number)" 0
ok "a CRL again" ca crl
crl_n=$(openssl crl -in "$D/ca/crl.pem" -noout -crlnumber | cut -d= -f2)
for _ in $(seq 1 20); do [ "$(metric keyfleet_crl_number)" = "$((crl_n))" ] && break; sleep 0.1; done
equals "the running keyfleetd picks up keyfleet ca crl's CRL by itself, no SIGHUP" \
    "$(metric keyfleet_crl_number)" "$((crl_n))"
check "and says until when it is valid" test "$(metric keyfleet_crl_next_update_seconds)" -gt "$(date +%s)"

# ---- revoked, then expired, then a routine CRL without it ----
ok "revoke dev-4's certificate" cert revoke "$(serial dev-4)"

# ---- resumption works while the certificates stand ----
for r in r1 r2; do
    check "$r: a resumption within the certificate's life" grep -q '^resume resumed=1 connack=20020000' "$T/$r.out"
    equals "$r: chained twice" "$(grep -c '^resume resumed=1' "$T/$r.out")" 2
done

# ---- past dev-1's and dev-4's notAfter ----
sleep_until $(($(not_after dev-5) + 2))
ok "a routine CRL (it no longer lists dev-4, expired)" ca crl
check "the CRL indeed leaves dev-4 out" sh -c "! openssl crl -in '$D/ca/crl.pem' -noout -text | grep -qi 'Serial Number: 0*$(serial dev-4)\$'"
touch "$T/go-1" "$T/go-4"
wait "$PID_r1" "$PID_r4"
equals "dev-1: the chained session is not resumed past notAfter (cache)" \
    "$(tail -1 "$T/r1.out" | cut -d' ' -f1-2)" "resume refused"
check "hub.auth_failed expired for dev-1" event_with hub.auth_failed \
    '.detail.reason == "expired" and .detail.id == "dev-1"'
equals "dev-4: revoked and expired, after a routine CRL: refused" \
    "$(tail -1 "$T/r4.out" | cut -d' ' -f1-2)" "resume refused"
check "the live connection ended with its certificate" event_with hub.disconnected \
    '.detail.id == "dev-5" and .detail.reason == "certificate_expired"'
wait "$LIVE"
closed_at=$(sed -n 's/^closed-at //p' "$T/live.out")
contains "the live client was connected" "$(cat "$T/live.out")" "connack 20020000"
check "and the hub closed it when the certificate expired (at ${closed_at:-never}, notAfter $(not_after dev-5))" \
    test "${closed_at:-0}" -ge "$(not_after dev-5)" -a "${closed_at:-0}" -le $(($(not_after dev-5) + 3))

# ---- past dev-2's notAfter (stateless tickets) ----
sleep_until $(($(not_after dev-2) + 2))
touch "$T/go-2"
wait "$PID_r2"
equals "dev-2: the chained ticket is not resumed past notAfter (tickets)" \
    "$(tail -1 "$T/r2.out" | cut -d' ' -f1-2)" "resume refused"
check "hub.auth_failed expired for dev-2" event_with hub.auth_failed \
    '.detail.reason == "expired" and .detail.id == "dev-2"'

stop_b
stop_kfd
finish
