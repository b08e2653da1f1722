#!/bin/bash
# Attack: /metrics was open to anyone who could reach the provisioning port: the fleet's size
# and load, its refusals, the state of the store. Now it is served to [provisioning]
# metrics_allow (default: loopback) and to clients with a keyfleet service certificate
# (metrics_certificate, default on); anyone else gets 403 forbidden. /healthz stays open (load
# balancers need it), and carries nothing.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca
start_kfd || exit 1
provision dev-1
ok "a service for Prometheus" service add --name prom --role reader --key-out "$T/prom.key" \
    --out "$T/prom.pem"
ok "a service to revoke" service add --name gone --role reader --key-out "$T/gone.key" \
    --out "$T/gone.pem"
ok "revoked" service revoke gone
metrics() { # metrics [curl args...]: the status of GET /metrics; the body in BODY
    HTTP=$(curl -s -o "$T/m" -w '%{http_code}' --cacert "$D/ca/root.crt" "$@" "$URL/metrics")
    BODY=$(cat "$T/m")
}

metrics
equals "the default: loopback reads /metrics" "$HTTP" 200
contains "... the metrics" "$BODY" "keyfleet_connections_open"

conf_set provisioning metrics_allow 127.0.0.2/32
kill -HUP "$KFD_PID"
sleep 0.5
metrics
expect_refusal "from an address not allowed" 403 forbidden "metrics_allow"
check_not "... and not a number of it leaks" grep -q keyfleet_ "$T/m"
metrics --interface 127.0.0.2
equals "from an allowed address" "$HTTP" 200
metrics --cert "$T/prom.pem" --key "$T/prom.key"
equals "with a keyfleet service certificate, from anywhere" "$HTTP" 200
metrics --cert "$T/dev-1.op.pem" --key "$T/dev-1.op.key"
expect_refusal "a device's certificate is not a service's" 403 forbidden "service certificate"
metrics --cert "$T/dev-1.pem" --key "$T/dev-1.key"
expect_refusal "nor is a factory certificate" 403 forbidden "service certificate"
metrics --cert "$T/gone.pem" --key "$T/gone.key"
expect_refusal "nor a revoked service's" 403 forbidden "service certificate"
conf_set provisioning metrics_certificate 0
kill -HUP "$KFD_PID"
sleep 0.5
metrics --cert "$T/prom.pem" --key "$T/prom.key"
expect_refusal "with metrics_certificate = 0, certificates do not open it" 403 forbidden "metrics_allow"
conf_set provisioning metrics_allow none
kill -HUP "$KFD_PID"
sleep 0.5
metrics --interface 127.0.0.2
expect_refusal "metrics_allow = none: nobody" 403 forbidden "metrics_allow"
HTTP=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$D/ca/root.crt" "$URL/healthz")
equals "/healthz stays open" "$HTTP" 200
conf_set provisioning metrics_allow "not-a-network"
kill -HUP "$KFD_PID"
sleep 0.5
contains "a bad list on SIGHUP is refused, naming the key" "$(cat "$T/kfd.log")" "provisioning.metrics_allow"

stop_kfd
finish
