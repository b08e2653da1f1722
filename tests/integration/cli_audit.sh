#!/bin/bash
# keyfleet audit: the hash chain catches an edited, deleted, re-ordered or cut-off record.
. "$(dirname "$0")/lib.sh"

ok "init" init
mkca factory
for i in 1 2 3; do
    mkdev dev-$i factory
    ok "add dev-$i" enrollment add --id dev-$i --cert "$T/dev-$i.pem"
done
ok "disable" enrollment disable dev-2
ok "verify" audit verify --json
equals "intact" "$(jq -r .intact <<<"$OUT")" true
equals "records" "$(jq -r .records <<<"$OUT")" 9
head=$(jq -r .head <<<"$OUT")
ok "verify with the head" audit verify --head "$head"
ok "list" audit list --json
equals "actor is the operator" "$(jq -r '.[5].actor' <<<"$OUT")" "operator:$(id -un)"
equals "detail is JSON" "$(jq -r '.[5].detail.kind' <<<"$OUT")" individual
equals "links" "$(jq -r '.[6].prev_hash' <<<"$OUT")" "$(jq -r '.[5].hash' <<<"$OUT")"
ok "list --since the future" audit list --since 2999-01-01 --json
equals "nothing since" "$(jq length <<<"$OUT")" 0
refused "bad --since" 2 "is not RFC 3339" audit list --since yesterday
refused "bad --head" 2 "64 lower-case hex digits" audit verify --head xyz

DB=$T/d/keyfleet.db
cp "$DB" "$T/pristine.db"
restore() { cp "$T/pristine.db" "$DB"; rm -f "$DB-wal" "$DB-shm"; }
# The store refuses to update or delete audit records; someone with the file can drop that
# guard, so the chain must catch what they do next.
sqlite3 "$DB" "UPDATE audit SET actor = 'x' WHERE seq = 1" 2>"$T/guard.err"
contains "the store guards the log" "$(cat "$T/guard.err")" "append-only"
tamper() { sqlite3 "$DB" "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; $1"; }

# An edited record.
tamper "UPDATE audit SET detail = '{\"kind\":\"group\"}' WHERE seq = 7"
refused "edited detail" 1 "record 7" audit verify
"$KF" --dir "$T/d" audit verify --json >"$T/v.json" 2>/dev/null
equals "exit 1 with --json" "$?" 1
equals "fault" "$(jq -r .fault "$T/v.json")" altered
equals "seq" "$(jq -r .seq "$T/v.json")" 7
restore
tamper "UPDATE audit SET actor = 'operator:mallory' WHERE seq = 2"
refused "edited actor" 1 "record 2 was altered" audit verify
restore

# A deleted record.
tamper "DELETE FROM audit WHERE seq = 4"
refused "deleted record" 1 "record 4" audit verify
"$KF" --dir "$T/d" audit verify --json >"$T/v.json" 2>/dev/null
equals "fault deleted" "$(jq -r .fault "$T/v.json")" deleted
restore

# Re-ordered records: swap the contents of 5 and 6.
tamper "UPDATE audit SET seq = 1005 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 6; UPDATE audit SET seq = 6 WHERE seq = 1005"
"$KF" --dir "$T/d" audit verify --json >"$T/v.json" 2>/dev/null
equals "re-ordered exits 1" "$?" 1
equals "fault reordered" "$(jq -r .fault "$T/v.json")" reordered
equals "first wrong record" "$(jq -r .seq "$T/v.json")" 5
restore

# An edited record whose hash was recomputed by the forger: the next link breaks.
tamper "UPDATE audit SET hash = '$(printf 'f%.0s' $(seq 1 64))' WHERE seq = 3"
"$KF" --dir "$T/d" audit verify --json >"$T/v.json" 2>/dev/null
equals "forged hash exits 1" "$?" 1
check "reported at 3 or 4" sh -c "test \$(jq -r .seq '$T/v.json') -ge 3 -a \$(jq -r .seq '$T/v.json') -le 4"
restore

# The last records cut off: the chain alone is whole, but a signed checkpoint of them (the CLI
# made one after its last command), and the recorded head, catch it.
tamper "DELETE FROM audit WHERE seq = 9"
refused "a signed checkpoint catches it" 1 "cut off" audit verify
refused "the head catches it" 1 "cut off" audit verify --head "$head"
restore
ok "restored" audit verify --head "$head"
finish
