#!/bin/bash
# keyfleet-agent end to end with keyfleetd: provisions with a factory certificate, connects to
# the hub, drops root, publishes telemetry from a command, runs only allowed commands, turns
# failed logins into events, exits cleanly on SIGTERM, reports a crash, and keeps the events it
# raised while the hub was down until the hub is back (in order, none twice).
. "$(dirname "$0")/lib.sh"

fleet_up || exit 1
fdev dev-1 fca
ok "reader service" service add --name dash --role reader --key-out "$T/dash.key" --out "$T/dash.pem"
ok "commander service" service add --name ops --role commander --key-out "$T/ops.key" --out "$T/ops.pem"

# The agent drops to nobody: what it runs and writes must be reachable for nobody.
chmod 755 "$T"
mkdir -m 777 "$T/work"
cat >"$T/count.sh" <<'EOF'
#!/bin/sh
n=$(cat "$1" 2>/dev/null || echo 0); n=$((n + 1)); echo $n >"$1"; echo "{\"n\": $n}"
EOF
cat >"$T/echo.sh" <<'EOF'
#!/bin/sh
echo "ran $1: $(cat)"
EOF
chmod 755 "$T/count.sh" "$T/echo.sh"
touch "$T/auth.log"
agent_conf a1 "$T/dev-1.pem" "$T/dev-1.key"
cat >>"$T/a1.conf" <<EOF
[telemetry]
count = 1 $T/count.sh $T/work/count
[commands]
echo = $T/echo.sh
[logwatch]
file = $T/auth.log
EOF

sub tel dash -t 'devices/+/telemetry/#' -v -q 1
AGENT_LOG=debug start_agent a1
check "the agent provisioned" wait_file "$T/a1.data/identity.json"
equals "device id" "$(jq -r .deviceId "$T/a1.data/identity.json")" dev-1
equals "assigned hub" "$(jq -r .hub "$T/a1.data/identity.json")" "127.0.0.1:$HUB_PORT"
ok "device list" device list --json
equals "the device is registered" "$(jq -r '.[] | select(.id == "dev-1") | .status' <<<"$OUT")" active
check "connected to the hub" event_with hub.connected '.detail.id == "dev-1"'
check "telemetry from the source arrives" wait_for tel 'devices/dev-1/telemetry/count {"n":'
equals "the agent runs as nobody" "$(ps -o user= -p "$AGENT_PID" | tr -d ' ')" nobody
equals "identity.json is 0600" "$(stat -c %a "$T/a1.data/identity.json")" 600
equals "the key is 0600" "$(stat -c %a "$T/a1.data/op-1.key")" 600
equals "the data belongs to nobody" "$(stat -c %U "$T/a1.data/identity.json")" nobody
check "the operational certificate verifies" sh -c "jq -r .certificate '$T/a1.data/identity.json' >'$T/op.pem' && openssl verify -purpose sslclient -CAfile '$T/d/ca/root.crt' -untrusted '$T/op.pem' '$T/op.pem'"
check "the certificate is for the key on disk" sh -c "test \"\$(openssl x509 -in '$T/op.pem' -noout -pubkey | sha256sum)\" = \"\$(openssl pkey -in '$T/a1.data/op-1.key' -pubout | sha256sum)\""

# commands: allowed ones run with the payload on stdin, their result comes back as telemetry
pub ops -t devices/dev-1/commands/echo -m hello -q 1
equals "command published" "$RC" 0
check "the command ran and answered" wait_for tel '"output":"ran echo: hello'
pub ops -t devices/dev-1/commands/rm-everything -m now -q 1
check "a command not on the allow-list is refused and reported" \
    event_with device.command_refused '.device == "dev-1" and .source == "device" and .detail.command == "rm-everything"'
check_not "and nothing answered it" grep -q 'rm-everything' "$T/tel.out"

# failed logins become events
echo "Dec  2 00:00:01 host sshd[42]: Failed password for invalid user admin from 203.0.113.9 port 2222 ssh2" >>"$T/auth.log"
check "a failed login is a device.login_failed event" \
    event_with device.login_failed '.device == "dev-1" and .detail.user == "admin" and .detail.from == "203.0.113.9"'

# disabled by the operator: the hub closes the connection; enabled again, the agent comes back
# on its own (resuming its TLS session)
ok "disable" device disable dev-1
check "the hub dropped it" wait_log a1 "msg=disconnected" 5
ok "enable" device enable dev-1
check "it reconnects by itself" sh -c "for _ in \$(seq 1 100); do [ \$(grep -c 'msg=connected' '$T/a1.log') -ge 2 ] && exit 0; sleep 0.1; done; exit 1"
check "resuming its TLS session" wait_log a1 "resumed=yes" 5

# SIGTERM: clean exit, no crash reported next time
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
equals "SIGTERM exits 0" "$?" 0
check_not "no running marker after a clean stop" test -e "$T/a1.data/running"
check "the agent said goodbye" event_with hub.disconnected '.detail.id == "dev-1"'

# kill -9: the next start reports the crash
start_agent a1
check "running again" wait_log a1 "msg=connected" 10
sleep 0.5
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
check "a running marker is left by the crash" test -e "$T/a1.data/running"
start_agent a1
check "the crash is reported" event_with device.crash_recovered '.device == "dev-1"'

# offline: events raised while the hub is down arrive after it is back, in order, none twice
stop_kfd
sleep 0.5
for u in off1 off2 off3; do
    echo "sshd[7]: Failed password for $u from 198.51.100.7 port 1 ssh2" >>"$T/auth.log"
    sleep 0.3
done
check "the events wait on disk" sh -c "grep -c 'off[123]' '$T/a1.data/events.log' | grep -qx 3"
REUSE_PORTS=1 start_kfd || exit 1
for _ in $(seq 1 100); do
    n=$("$KF" --dir "$T/d" events list --type device.login_failed --json | jq '[.[] | select(.detail.user | test("off"))] | length')
    [ "$n" -ge 3 ] && break
    sleep 0.2
done
"$KF" --dir "$T/d" events list --type device.login_failed --json >"$T/offline.json"
equals "each offline event arrived once, in the order raised" \
    "$(jq -r '[.[] | select(.detail.user | test("off"))] | sort_by(.id) | map(.detail.user) | join(",")' "$T/offline.json")" "off1,off2,off3"
check "nothing left on disk" sh -c "for _ in \$(seq 1 50); do grep -q off '$T/a1.data/events.log' || exit 0; sleep 0.1; done; exit 1"

kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
equals "SIGTERM exits 0 again" "$?" 0
kill "$SUB_tel" 2>/dev/null
finish
