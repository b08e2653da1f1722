#!/bin/bash
# keyfleet-sim against keyfleetd: a small fleet provisions, connects, sends telemetry and events,
# and renews; a factory CA that is not enrolled gets every device refused.
. "$(dirname "$0")/lib.sh"
SIM="$KF_BIN_DIR/src/sim/keyfleet-sim"

ok "init" init
KFD_LOG=warn start_kfd || exit 1
ok "hub" hub add --name hub-1 --endpoint "127.0.0.1:$HUB_PORT"

"$SIM" --make-factory-ca --dir "$T/sim" >"$T/make.out"
contains "the factory CA is made" "$(cat "$T/make.out")" "factory CA: $T/sim/factory-ca.pem"
cp "$T/sim/factory-ca.pem" "$T/simca.pem"
cp "$T/sim/factory-ca.key" "$T/simca.key"
equals "its key is 0600" "$(stat -c %a "$T/sim/factory-ca.key")" 600

# not enrolled yet: every device is refused, and the exit status says so
"$SIM" --devices 5 --provisioning "$URL" --trust "$T/d/ca/root.crt" --factory-ca "$T/simca.pem" \
    --factory-ca-key "$T/simca.key" --duration 0 --json --quiet >"$T/refused.json"
equals "refused fleet exits 1" "$?" 1
equals "all refused" "$(jq .refused "$T/refused.json")" 5
equals "none provisioned" "$(jq .provisioned "$T/refused.json")" 0

group_enroll simfactory simca
"$SIM" --devices 40 --provisioning "$URL" --trust "$T/d/ca/root.crt" --factory-ca "$T/simca.pem" \
    --factory-ca-key "$T/simca.key" --duration 3 --rate 2 --event-every 1 --renew-after 1 \
    --threads 4 --json >"$T/run.json" 2>"$T/progress"
equals "the fleet exits 0" "$?" 0
equals "provisioned" "$(jq .provisioned "$T/run.json")" 40
equals "connected" "$(jq .connected "$T/run.json")" 40
equals "renewed" "$(jq .renewed "$T/run.json")" 40
check "messages were sent" test "$(jq .messages "$T/run.json")" -ge 40
equals "and every one acknowledged" "$(jq .acked "$T/run.json")" "$(jq .messages "$T/run.json")"
check "latencies are reported" test "$(jq '.provisioning_ms.p99 > 0 and .connect_ms.p99 > 0' "$T/run.json")" = true
contains "a progress line" "$(cat "$T/progress")" "provisioned 40"
ok "device list" device list --json
equals "40 devices in the store" "$(jq '[.[] | select(.id | startswith("sim-"))] | length' <<<"$OUT")" 40
check "their security events are stored" event_with device.login_failed '.source == "device" and (.device | startswith("sim-"))'
check "renewals are in the audit log" sh -c "'$KF' --dir '$T/d' audit verify >/dev/null"

"$SIM" --devices 0 --provisioning "$URL" --trust "$T/d/ca/root.crt" >/dev/null 2>"$T/err"
equals "a bad flag is a usage error" "$?" 2
contains "and says why" "$(cat "$T/err")" "--devices takes"
finish
