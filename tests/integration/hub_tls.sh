#!/bin/bash
# The hub's TLS after the handshake: idle TLS 1.3 connections are carried by keyfleetd's own
# record layer (tls_offload), with either kind of resumption (tls_resumption = cache or
# tickets); TLS 1.2 clients stay with OpenSSL; both keep working end to end.
. "$(dirname "$0")/lib.sh"

for mode in cache tickets; do
    rm -rf "$T/d" "$T"/*.data "$T"/dash.* "$T"/kfd.log
    ok "init ($mode)" init
    conf_set hub tls_resumption "$mode" || exit 1
    KFD_LOG=debug start_kfd || exit 1
    ok "hub" hub add --name hub-1 --endpoint "127.0.0.1:$HUB_PORT"
    mkca fca
    group_enroll factory fca
    fdev "dev-$mode" fca
    ok "reader service" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
    sub tel dash -t 'devices/+/telemetry/#' -v -q 1
    agent_conf "a-$mode" "$T/dev-$mode.pem" "$T/dev-$mode.key" "user = root" "keep_alive = 5"
    printf '[telemetry]\nt = 1 echo {}\n' >>"$T/a-$mode.conf"
    AGENT_LOG=debug start_agent "a-$mode"
    check "$mode: telemetry flows" wait_for tel "devices/dev-$mode/telemetry/t {}"
    check "$mode: the connections were taken over from OpenSSL" \
        sh -c "for _ in \$(seq 1 50); do grep -q 'TLS records taken over from OpenSSL' '$T/kfd.log' && exit 0; sleep 0.1; done; exit 1"
    n=$(metric keyfleet_hub_tls_offloaded_total)
    check "$mode: /metrics counts them ($n)" test "${n:-0}" -ge 2
    # keep-alive pings go through the record layer for a while
    sleep 6
    check "$mode: still alive after keep-alive pings" wait_for tel "devices/dev-$mode/telemetry/t {}"
    check "$mode: no record refused" sh -c "! grep -q 'TLS record refused' '$T/kfd.log'"
    # the operator's disable closes it; enable and the device comes back, resuming TLS
    ok "$mode: disable" device disable "dev-$mode"
    check "$mode: the hub closes it" wait_log "a-$mode" "msg=disconnected" 5
    ok "$mode: enable" device enable "dev-$mode"
    check "$mode: back, with a resumed TLS session" wait_log "a-$mode" "resumed=yes" 10
    # a TLS 1.2 client stays with OpenSSL and works all the same (it takes dash's place)
    kill "$SUB_tel" 2>/dev/null
    mosquitto_sub $(as dash) -i dash --tls-version tlsv1.2 -t 'devices/+/telemetry/#' -v \
        >"$T/tel12.out" 2>&1 &
    SUB12=$!
    check "$mode: a TLS 1.2 subscriber gets the telemetry too" wait_for tel12 "devices/dev-$mode/telemetry/t {}"
    kill "$SUB12" 2>/dev/null
    # a resumed session brings the identity back, and revocation still applies to it
    ok "$mode: revoke" device revoke "dev-$mode"
    check "$mode: a revoked device is refused, resumed or not" \
        event_with hub.auth_failed ".detail.id == \"dev-$mode\" and (.detail.reason == \"revoked\" or .detail.reason == \"device_revoked\")"
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID"
    equals "$mode: the agent's clean exit" "$?" 0
    kill "$SUB_tel" 2>/dev/null
    stop_kfd
    equals "$mode: keyfleetd stops cleanly" "$KFD_STATUS" 0
done
finish
