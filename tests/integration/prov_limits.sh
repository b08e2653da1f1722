#!/bin/bash
# keyfleetd's limits, each pushed past with real clients: body and header size, slow clients,
# connections per address, requests per second per address (429), handshakes in flight (closed),
# and a SIGHUP that changes them without dropping a connection.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
conf_set provisioning max_body_bytes 2048
conf_set provisioning max_header_bytes 1024
conf_set provisioning request_timeout_ms 1500
conf_set provisioning max_connections_per_ip 3
conf_set provisioning rate_per_ip 0
conf_set provisioning max_handshakes 2
conf_set provisioning retry_after 7
start_kfd || exit 1
CURL="curl -s --cacert $D/ca/root.crt"

# Request body (the CSR) too large: 413 before the body is even read.
head -c 4096 /dev/zero | tr '\0' 'A' >"$T/big"
HTTP=$($CURL -o "$T/resp" -w '%{http_code}' -H 'Content-Type: application/pkcs10' --data-binary @"$T/big" "$URL/.well-known/est/simpleenroll")
BODY=$(cat "$T/resp")
expect_refusal "body over max_body_bytes" 413 body_too_large "body too large"

# Request head too large: 431.
long=$(head -c 2000 /dev/zero | tr '\0' 'x')
HTTP=$($CURL -o "$T/resp" -w '%{http_code}' -H "X-Filler: $long" "$URL/healthz")
BODY=$(cat "$T/resp")
expect_refusal "head over max_header_bytes" 431 header_too_large "too large"

# A slow client is dropped: half a request, then nothing; keyfleetd answers 408 and closes.
mkfifo "$T/slowin"
(printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n'; sleep 6) >"$T/slowin" &
writer=$!
start=$(date +%s%N)
timeout 10 openssl s_client -quiet -connect "127.0.0.1:$KFD_PORT" -CAfile "$D/ca/root.crt" <"$T/slowin" >"$T/slow" 2>/dev/null
took=$((($(date +%s%N) - start) / 1000000))
kill $writer 2>/dev/null
wait $writer 2>/dev/null
contains "slow client: 408" "$(cat "$T/slow")" "HTTP/1.1 408"
contains "slow client: says why" "$(cat "$T/slow")" "request_timeout"
check "slow client: dropped after the deadline, not after the client gave up" test "$took" -lt 3800
# A client that never even starts TLS is dropped too.
start=$(date +%s%N)
timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KFD_PORT; cat <&3 >/dev/null" 2>/dev/null
took=$((($(date +%s%N) - start) / 1000000))
check "silent client dropped at the deadline" test "$took" -ge 1000 -a "$took" -lt 5000

# Handshakes in flight: two raw connections that never say hello hold the budget (from two
# networks: one network may hold only half of it); the next client is closed at once, before any
# TLS work (the hub does the same: the budget bounds the handshakes keyfleetd works on, so it
# finishes none just to refuse it), counted and logged; once the holders go, clients come back.
refused_before=$(metric 'keyfleet_refusals_total{reason="connection_limit"}')
python3 -c "
import socket, time
s = [socket.create_connection(('127.0.0.1', $KFD_PORT), source_address=(a, 0))
     for a in ('127.0.8.1', '127.0.9.1')]
open('$T/held', 'w').close()
time.sleep(1.5)
" &
holder=$!
for _ in $(seq 1 100); do [ -e "$T/held" ] && break; sleep 0.05; done
# (keyfleetd accepts them on its own time: a client is asked again while they are held)
for _ in $(seq 1 20); do
    HTTP=$($CURL -o "$T/resp" -w '%{http_code}' "$URL/healthz")
    [ "$HTTP" = "000" ] && break
    sleep 0.05
done
equals "beyond max_handshakes: closed before TLS, no answer" "$HTTP" "000"
contains "... and logged" "$(cat "$T/kfd.log")" "too many TLS handshakes in flight"
wait "$holder"
HTTP=$($CURL -o "$T/resp" -w '%{http_code}' "$URL/healthz")
equals "once the holders are gone, clients are served" "$HTTP" "200"
refused_after=$(metric 'keyfleet_refusals_total{reason="connection_limit"}')
check "... and counted in keyfleet_refusals_total{reason=\"connection_limit\"}" \
    test "${refused_after:-0}" -gt "${refused_before:-0}"
# Connections per address: three that finished their handshakes hold; a fourth is cut. (With
# a longer request deadline and room for handshakes, so that slow handshakes, under a sanitizer
# say, race neither.)
conf_set provisioning request_timeout_ms 10000
conf_set provisioning max_handshakes 100
kill -HUP "$KFD_PID"
sleep 0.5
rm -f "$T/held"
python3 -c "
import socket, ssl, time
ctx = ssl.create_default_context(cafile='$D/ca/root.crt')
ctx.check_hostname = False
s = [ctx.wrap_socket(socket.create_connection(('127.0.0.1', $KFD_PORT))) for _ in range(3)]
open('$T/held', 'w').close()
time.sleep(3)
" &
holder=$!
for _ in $(seq 1 100); do [ -e "$T/held" ] && break; sleep 0.05; done
check_not "beyond max_connections_per_ip: refused at once" $CURL --max-time 3 -o /dev/null "$URL/healthz"
wait "$holder"
sleep 0.3
HTTP=$($CURL -o /dev/null -w '%{http_code}' "$URL/healthz")
equals "room again once they close" "$HTTP" 200
metrics=$($CURL "$URL/metrics")
contains "connection refusals counted" "$metrics" 'keyfleet_refusals_total{reason="connection_limit"}'
contains "timeouts counted" "$metrics" 'keyfleet_refusals_total{reason="request_timeout"}'

# Requests per second per address: a keep-alive connection survives a SIGHUP that turns on a
# rate limit, and the limit holds from then on, with Retry-After. A fresh keyfleetd with a
# generous request deadline, so that the connection's idle pauses cannot race the 1.5 s one.
stop_kfd
equals "SIGTERM: exit 0" "$KFD_STATUS" 0
conf_set provisioning request_timeout_ms 10000
conf_set provisioning max_connections_per_ip 100
start_kfd || exit 1
conf_set provisioning rate_per_ip 2
conf_set provisioning rate_burst 2
conf_set provisioning max_handshakes 100
(
    printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'
    sleep 0.5
    kill -HUP "$KFD_PID"
    sleep 1
    for _ in 1 2 3 4 5; do printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'; done
    printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
    sleep 1
) | timeout 15 openssl s_client -quiet -connect "127.0.0.1:$KFD_PORT" -CAfile "$D/ca/root.crt" >"$T/keep" 2>/dev/null
answers=$(grep -o 'HTTP/1.1 [0-9]*' "$T/keep" | wc -l)
equals "one connection, all seven answered across the SIGHUP" "$answers" 7
check "the rate limit took effect: 429" grep -q "HTTP/1.1 429" "$T/keep"
check "429 says when to come back" grep -q "^Retry-After: [1-9]" "$T/keep"
check "within the burst: 200" test "$(grep -o 'HTTP/1.1 200' "$T/keep" | wc -l)" -ge 3
contains "the reload is logged" "$(cat "$T/kfd.log")" "msg=reloaded"

stop_kfd
equals "SIGTERM: exit 0" "$KFD_STATUS" 0
check_not "nothing went wrong in keyfleetd" grep -E "level=error|Sanitizer|runtime error" "$T/kfd.log"
finish
