#!/bin/bash
# Attack: whoever can write the database rewrites an audit record and recomputes the (unkeyed)
# SHA-256 chain; `keyfleet audit verify` said intact (and, given --head, "cut off" rather than
# rewritten). Now the issuing CA's signer signs checkpoints of the chain's head (keyfleetd every
# [audit] checkpoint_s, the CLI after a command that added records, init at once), checked with
# the issuing CA's certificate from the deployment's files; verify says "rewritten" when the
# chain verifies but a signed checkpoint does not, "forged" for a checkpoint the key did not
# sign, and "cut off" for records gone from under a checkpoint. SIGHUP reloads are audited with
# what changed.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
ok "verify after init" audit verify --json
equals "init checkpointed its own records" "$(jq -r '.checkpoint_seq == .records' <<<"$OUT")" true
mkca fca
group_enroll factory fca
ok "verify" audit verify --json
equals "the CLI checkpoints what its commands added" "$(jq -r '.checkpoint_seq == .records' <<<"$OUT")" true
equals "... nothing left to the chain alone" "$(jq -r .uncovered <<<"$OUT")" 0
before=$(jq -r .records <<<"$OUT")
conf_set audit checkpoint_s 1
start_kfd || exit 1
provision dev-1 # keyfleetd adds cert.issue records
for _ in $(seq 1 30); do
    kf audit verify --json
    [ "$(jq -r '.uncovered' <<<"$OUT")" = 0 ] && [ "$(jq -r '.records' <<<"$OUT")" -gt "$before" ] && break
    sleep 0.1
done
equals "keyfleetd checkpointed its own records within a second or two" "$(jq -r .uncovered <<<"$OUT")" 0
records=$(jq -r .records <<<"$OUT")
ok "text output names the newest checkpoint" audit verify
contains "... in words" "$OUT" "signed checkpoints:"

# ---- SIGHUP reloads are audited ----
conf_set hub msg_rate 5
kill -HUP "$KFD_PID"
sleep 0.5
ok "audit list" audit list --json
equals "config.reload, with what changed" \
    "$(jq -c '[.[] | select(.action == "config.reload")][0].detail.changed' <<<"$OUT")" \
    '{"hub.msg_rate":{"from":1000,"to":5}}'
equals "... by keyfleetd" "$(jq -r '[.[] | select(.action == "config.reload")][0].actor' <<<"$OUT")" keyfleetd
echo "nonsense_key = 1" >>"$D/keyfleet.conf"
kill -HUP "$KFD_PID"
sleep 0.5
sed -i '/^nonsense_key = 1$/d' "$D/keyfleet.conf"
ok "audit list" audit list --json
contains "a refused reload is audited with the error" \
    "$(jq -r '[.[] | select(.action == "config.reload_refused")][0].detail.error' <<<"$OUT")" \
    "unknown key 'nonsense_key'"
stop_kfd
ok "verify before any attack" audit verify --json
good_head=$(jq -r .head <<<"$OUT")
equals "intact" "$(jq -r .intact <<<"$OUT")" true

# ---- the rewrite: record 3 changed, the chain recomputed ----
cp "$D/keyfleet.db" "$T/pristine.db"
new_head=$(python3 "$(dirname "$0")/audit_rewrite.py" "$D/keyfleet.db" 3 '{"forged":true}')
check "the attacker's chain is self-consistent (it differs from the real one)" test "$new_head" != "$good_head"
refused "audit verify catches the rewrite without an external head" 1 "rewritten" audit verify
range_from=$(sed -n 's/.*the change is in records \([0-9]*\) to \([0-9]*\).*/\1/p' <<<"$ERR")
range_to=$(sed -n 's/.*the change is in records \([0-9]*\) to \([0-9]*\).*/\2/p' <<<"$ERR")
check "... and says where the change is (records $range_from to $range_to, record 3 among them)" \
    test "${range_from:-99}" -le 3 -a "${range_to:-0}" -ge 3
kf audit verify --json
equals "--json says rewritten" "$(jq -r .fault <<<"$OUT")" rewritten
refused "with --head it says rewritten too, not cut off" 1 "rewritten" audit verify --head "$good_head"

# ---- a forged checkpoint for the rewritten head ----
sqlite3 "$D/keyfleet.db" "INSERT INTO audit_checkpoints (seq, head, time_ms, signer, signature) VALUES ($((records + 50)), '$new_head', 1, 'x', '3045022100ff')"
last=$(sqlite3 "$D/keyfleet.db" "SELECT max(seq) FROM audit")
sqlite3 "$D/keyfleet.db" "DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints WHERE seq <= $last"
refused "a checkpoint the issuing CA's key did not sign is forged" 1 "forged" audit verify

# ---- cut off: records removed from under a checkpoint ----
cp "$T/pristine.db" "$D/keyfleet.db"
rm -f "$D/keyfleet.db-wal" "$D/keyfleet.db-shm"
ok "the pristine copy verifies" audit verify
sqlite3 "$D/keyfleet.db" "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 5"
refused "records cut off under a signed checkpoint" 1 "cut off" audit verify
kf audit verify --json
equals "--json says truncated" "$(jq -r .fault <<<"$OUT")" truncated

finish
