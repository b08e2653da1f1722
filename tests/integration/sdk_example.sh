#!/bin/bash
# docs/examples/device_example.c, the program docs/device-sdk.md walks through, built by the
# suite and run against keyfleetd: it provisions, reports device.booted, and its three readings
# reach a service.
. "$(dirname "$0")/lib.sh"
EX="$KF_BIN_DIR/docs/examples/device_example"
[ -x "$EX" ] || { echo "no example at $EX" >&2; exit 1; }

fleet_up || exit 1
fdev ex-1 fca
ok "reader service" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
sub tel dash -t 'devices/ex-1/telemetry/#' -v -q 1
timeout 30 "$EX" "$T/ex.data" "$URL" "$T/ex-1.pem" "$T/ex-1.key" "$T/d/ca/root.crt" once >"$T/ex.out" 2>&1
equals "the example exits 0" "$?" 0
contains "it provisioned" "$(cat "$T/ex.out")" "provisioned: 127.0.0.1:$HUB_PORT"
contains "it connected" "$(cat "$T/ex.out")" "connected"
contains "and delivered what it sent" "$(cat "$T/ex.out")" "device ex-1: 4 published, 4 delivered"
check "the readings arrive" wait_for tel 'devices/ex-1/telemetry {"celsius": 22.5}'
check "device.booted is stored" event_with device.booted '.device == "ex-1" and .detail.firmware == "1.0.0"'
"$EX" >/dev/null 2>&1
equals "usage error exits 2" "$?" 2
finish
