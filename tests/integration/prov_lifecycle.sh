#!/bin/bash
# keyfleetd's life: start-up errors that say what is wrong, SIGHUP, graceful SIGTERM, and kill -9
# in the middle of an enrollment storm without losing or repeating a certificate.
. "$(dirname "$0")/lib.sh"

kfd_fails() { # kfd_fails DESC CODE NEEDLE ARGS...
    local desc=$1 code=$2 needle=$3
    shift 3
    timeout 20 "$KFD" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    equals "$desc: exit code" "$rc" "$code"
    contains "$desc: says why" "$(cat "$T/err")" "$needle"
}

kfd_fails "no deployment" 1 "no keyfleet deployment in $T/nowhere" --dir "$T/nowhere"
kfd_fails "bad option" 2 "usage: keyfleetd" --frob
"$KFD" --help >"$T/out" 2>&1
equals "--help" "$?" 0
contains "--help explains" "$(cat "$T/out")" "SIGHUP"

ok "init" init
D=$T/d
conf_set hub listen "127.0.0.1:$(free_port)"
cp "$D/keyfleet.conf" "$T/good.conf"
printf "[hub]\nbogus_key = 1\n" >>"$D/keyfleet.conf"
kfd_fails "config error" 1 "keyfleet.conf: line" --dir "$D"
contains "config error names the key" "$(cat "$T/err")" "unknown key 'bogus_key' in section [hub]"
cp "$T/good.conf" "$D/keyfleet.conf"
port=$(free_port)
conf_set provisioning listen "127.0.0.1:$port"
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',$port)); s.listen(); time.sleep(30)" &
blocker=$!
sleep 0.3
kfd_fails "port in use" 1 "cannot listen on 127.0.0.1:$port: Address already in use" --dir "$D"
kill $blocker 2>/dev/null
wait $blocker 2>/dev/null
cp "$D/server/server.key" "$T/server.key.good"
chmod u+w "$D/server/server.key"
echo "not a key" >"$D/server/server.key"
kfd_fails "unreadable server key" 1 "server.key" --dir "$D"
cp "$T/server.key.good" "$D/server/server.key"
mv "$D/ca/issuing.key" "$T/issuing.key.good"
kfd_fails "missing issuing key" 1 "cannot use the issuing CA" --dir "$D"
mv "$T/issuing.key.good" "$D/ca/issuing.key"
# --config: another file, paths still meaning the deployment.
cp "$D/keyfleet.conf" "$T/other.conf"
sed -i 's/^rate_burst = .*/rate_burst = 300/' "$T/other.conf"
ok "a hub" hub add --name h1 --endpoint h1.example:8883
KFD_CONF=$T/other.conf start_kfd || exit 1
# One listener per worker (SO_REUSEPORT), each with the whole backlog: a connection storm must
# not overflow a short accept queue (libevent's default would cut it to 128).
listeners=$(ss -Hltn "sport = :$KFD_PORT")
equals "a listener per worker" "$(wc -l <<<"$listeners")" "$(nproc)"
equals "each with a backlog of 4096" "$(awk '{print $3}' <<<"$listeners" | sort -u)" 4096
stop_kfd
equals "--config: starts and stops" "$KFD_STATUS" 0

# The storm: many devices at once, then kill -9 in the middle.
mkca factory
group_enroll fab factory
conf_set provisioning rate_per_ip 0
N=240
mkdir -p "$T/storm"
for i in $(seq 1 $N); do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/storm/f$i.key" \
        -out "$T/storm/f$i.csr" -subj "/CN=storm-$i" 2>/dev/null
    openssl x509 -req -in "$T/storm/f$i.csr" -CA "$T/factory.pem" -CAkey "$T/factory.key" -days 30 \
        -out "$T/storm/f$i.pem" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/storm/o$i.key" \
        -out "$T/storm/o$i.csr" -subj "/CN=storm-$i" 2>/dev/null
    jq -n --rawfile csr "$T/storm/o$i.csr" '{csr: $csr}' >"$T/storm/r$i.json"
done
start_kfd || exit 1
storm() { # storm FROM TO: registers those devices, 24 at a time, each answer kept
    seq "$1" "$2" | xargs -P 24 -I{} sh -c "curl -s --max-time 20 -o '$T/storm/a{}.json' -w '%{http_code}' \
        --cacert '$D/ca/root.crt' --cert '$T/storm/f{}.pem' --key '$T/storm/f{}.key' \
        -H 'Content-Type: application/json' --data-binary @'$T/storm/r{}.json' '$URL/api/v1/register' \
        >'$T/storm/s{}' 2>/dev/null; true"
}
answered() { grep -lx 200 "$T/storm"/s* 2>/dev/null | wc -l; }
# Waits until the storm is under way: AT answers received (or five seconds).
under_way() {
    for _ in $(seq 1 250); do
        [ "$(answered)" -ge "$1" ] && return 0
        sleep 0.02
    done
}
storm 1 $N &
stormer=$!
under_way 40
kill -9 "$KFD_PID"
wait "$KFD_PID" 2>/dev/null
KFD_PID=
wait $stormer
got=0
for i in $(seq 1 $N); do
    if [ "$(cat "$T/storm/s$i" 2>/dev/null)" = 200 ] && jq -r .certificate "$T/storm/a$i.json" 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | cut -d= -f2 >>"$T/storm/serials"; then
        got=$((got + 1))
    fi
done
check "some devices got certificates before kill -9" test "$got" -gt 0
check "and kill -9 stopped others" test "$got" -lt "$N"
echo "kill -9 after $got of $N enrollments answered"
start_kfd || exit 1
missing=0
while read -r s; do
    "$KF" --dir "$D" cert show "$s" >/dev/null 2>&1 || missing=$((missing + 1))
done <"$T/storm/serials"
equals "every certificate a client received is in the store" "$missing" 0
equals "no serial was given twice" "$(sort "$T/storm/serials" | uniq -d | wc -l)" 0
equals "no serial twice in the store" "$(sqlite3 "$D/keyfleet.db" 'SELECT serial FROM certificates' | sort | uniq -d | wc -l)" 0
ok "the audit log survived kill -9 whole" audit verify

# Graceful SIGTERM in the middle of a storm: every answer that arrives is whole, exit 0.
rm -f "$T/storm/s"* "$T/storm/a"*
storm 1 $N &
stormer=$!
under_way 40
kill -TERM "$KFD_PID"
wait "$KFD_PID"
KFD_STATUS=$?
KFD_PID=
wait $stormer
equals "SIGTERM mid-storm: exit 0" "$KFD_STATUS" 0
bad=0
for i in $(seq 1 $N); do
    s=$(cat "$T/storm/s$i" 2>/dev/null)
    case "$s" in
    200) jq -e .certificate "$T/storm/a$i.json" >/dev/null 2>&1 || bad=$((bad + 1)) ;;
    503 | 000 | "") ;; # turned away while stopping, or refused once closed
    *) bad=$((bad + 1)) ;;
    esac
done
equals "SIGTERM: no answer cut short or wrong" "$bad" 0
contains "SIGTERM: it said it was stopping" "$(cat "$T/kfd.log")" "stopping: finishing requests in flight"
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"

# SIGTERM with no time to drain: what is still in flight is cut off, and nothing of it (TLS
# state freed while the loop stood still) is left behind; under ASan a leak fails the exit code.
conf_set provisioning drain_timeout_ms 0
start_kfd || exit 1
rm -f "$T/storm/s"* "$T/storm/a"*
storm 1 $N &
stormer=$!
under_way 20
kill -TERM "$KFD_PID"
wait "$KFD_PID"
KFD_STATUS=$?
KFD_PID=
wait $stormer
equals "SIGTERM, no drain time: exit 0" "$KFD_STATUS" 0
contains "it said it cut the rest off" "$(cat "$T/kfd.log")" "drain timeout: closing what is left"
check_not "and nothing went wrong" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
