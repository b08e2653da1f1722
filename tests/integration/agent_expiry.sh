#!/bin/bash
# keyfleet-agent when the server says "later" and when keyfleetd stays away: it honours a 429's
# Retry-After; with keyfleetd down for a two-minute certificate's whole life it reports
# device.renewal_failed, then device.cert_expiring, then device.cert_expired, provisions again
# with its factory identity once keyfleetd is back, and every one of those reports arrives.
. "$(dirname "$0")/lib.sh"

ok "init" init
conf_set ca device_cert_minutes 2 || exit 1
# one request a second from an address: the agent's first request is told to come back
conf_set provisioning rate_per_ip 1 || exit 1
conf_set provisioning rate_burst 1 || exit 1
KFD_LOG=info start_kfd || exit 1
ok "hub" hub add --name hub-1 --endpoint "127.0.0.1:$HUB_PORT"
mkca fca
group_enroll factory fca
fdev dev-x fca
agent_conf x "$T/dev-x.pem" "$T/dev-x.key" "user = root"

# spend this second's request, then start the agent at once: 429 with Retry-After
curl -s -o /dev/null --cacert "$T/d/ca/root.crt" "$URL/healthz"
start_agent x
check "provisioned in the end" wait_file "$T/x.data/identity.json" 20
check "after a 429" grep -q 'refused register with HTTP 429' "$T/x.log"
t429=$(grep -m1 'HTTP 429' "$T/x.log" | sed 's/^time=\([^ ]*\).*/\1/')
tok=$(grep -m1 'msg=provisioned' "$T/x.log" | sed 's/^time=\([^ ]*\).*/\1/')
waited=$(python3 -c "import datetime as d,sys; p=lambda s: d.datetime.fromisoformat(s.replace('Z','+00:00')); print(int((p(sys.argv[2])-p(sys.argv[1])).total_seconds()*1000))" "$t429" "$tok")
check "no sooner than the Retry-After (waited ${waited} ms)" test "$waited" -ge 1000
check "connected" event_with hub.connected '.detail.id == "dev-x"'
nb=$(date -d "$(jq -r .notAfter "$T/x.data/identity.json")" +%s)

# keyfleetd goes away for longer than the certificate lives
stop_kfd
wait_ev() { # wait_ev TYPE SECONDS: the event is in the agent's log on disk
    for _ in $(seq 1 $(($2 * 10))); do
        grep -q "\"type\":\"$1\"" "$T/x.data/events.log" && return 0
        sleep 0.1
    done
    return 1
}
check "renewal fails and is reported" wait_ev device.renewal_failed 90
check "device.cert_expiring before it expires" wait_ev device.cert_expiring 60
check "reported while the certificate was still valid" test "$(date +%s)" -lt "$nb"
check "device.cert_expired once it has" wait_ev device.cert_expired 60
check "then it tries to provision again with its factory identity" wait_log x "the certificate expired: provisioning again" 5

REUSE_PORTS=1 start_kfd || exit 1
for _ in $(seq 1 150); do
    [ "$(jq -r .generation "$T/x.data/identity.json" 2>/dev/null)" = 2 ] && break
    sleep 0.2
done
equals "provisioned anew" "$(jq -r .generation "$T/x.data/identity.json")" 2
check "a valid certificate again" test "$(date -d "$(jq -r .notAfter "$T/x.data/identity.json")" +%s)" -gt "$(date +%s)"
for ev in device.renewal_failed device.cert_expiring device.cert_expired; do
    check "$ev reached the fleet" event_with "$ev" '.device == "dev-x"'
done
check "cert_expiring says how long was left" event_with device.cert_expiring '.detail.seconds_left > 0 and .detail.seconds_left <= 30'
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
equals "clean exit" "$?" 0
finish
