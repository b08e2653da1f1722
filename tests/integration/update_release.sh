#!/bin/bash
# Signed updates, the vendor's and the operator's side (issue 15): keys made with
# keyfleet-release (encrypted, 0600), a 2-of-3 root signed by its holders apart and combined,
# 2-of-2 targets; keyfleet release add refusing what is not signed as the root says (nothing
# published then) and publishing what is; a root rotation as TUF says. The repository is then
# read by tuf-js, an independent TUF client, over HTTP from a mirror of it: it accepts every
# state keyfleet publishes, and refuses a server or mirror that lies: arbitrary installation,
# endless data, rollback (also with the online keys stolen), freeze, mix-and-match, metadata
# signed below the threshold, and targets signed with stolen online keys.
. "$(dirname "$0")/lib.sh"

R="$KF_BIN_DIR/src/release/keyfleet-release"
JS="$(cd "$(dirname "$0")/../js" && pwd)"
[ -d "$JS/node_modules/tuf-js" ] || { echo "tuf-js is not installed: sh scripts/npm.sh" >&2; exit 1; }
V="$T/vendor"
M="$T/mirror"
mkdir -p "$V" "$M"
echo "correct horse battery staple" >"$V/pass"

# rel DESC ARGS...: keyfleet-release must succeed; rel_fails DESC CODE NEEDLE ARGS...
rel() {
    desc=$1
    shift
    if "$R" "$@" >"$T/rout" 2>"$T/rerr"; then pass; else fail "$desc: $(cat "$T/rerr")"; fi
    OUT=$(cat "$T/rout")
}
rel_fails() {
    desc=$1 code=$2 needle=$3
    shift 3
    "$R" "$@" >"$T/rout" 2>"$T/rerr"
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        fail "$desc: exit $rc, expected $code: $(cat "$T/rerr")"
    elif ! grep -qF -- "$needle" "$T/rerr"; then
        fail "$desc: stderr lacks \"$needle\": $(cat "$T/rerr")"
    else pass; fi
}
sign() { # sign FILE KEY...
    f=$1
    shift
    for k in "$@"; do rel "sign $(basename "$f") with $k" sign --key "$V/$k.key" --passphrase-file "$V/pass" "$f"; done
}

# ---- the vendor's keys ----
for k in root1 root3 tg1 tg2 new1; do rel "keygen $k" keygen --out "$V/$k.key" --passphrase-file "$V/pass"; done
rel "keygen root2 (P-256)" keygen --type p256 --out "$V/root2.key" --passphrase-file "$V/pass"
equals "a key file is 0600" "$(stat -c %a "$V/root1.key")" 600
check "a key file is encrypted" grep -q "BEGIN ENCRYPTED PRIVATE KEY" "$V/root1.key"
rel_fails "a key in clear only when asked" 2 "--no-passphrase" keygen --out "$V/clear.key"
rel_fails "a key is never overwritten" 1 "never overwritten" keygen --out "$V/root1.key" --passphrase-file "$V/pass"
echo wrong >"$V/wrong"

# ---- the deployment's online keys ----
ok "init" init
ok "release keys" release keys --json
jq -c .timestamp <<<"$OUT" >"$V/ts.json"
jq -c .snapshot <<<"$OUT" >"$V/sn.json"
equals "online keys are ed25519" "$(jq -r .keytype "$V/ts.json")" ed25519
ok "release keys again" release keys --json
equals "the same keys the second time" "$(jq -c .timestamp <<<"$OUT")" "$(cat "$V/ts.json")"
equals "online key file 0600" "$(stat -c %a "$T/d/updates/keys/timestamp.key")" 600
equals "online key directory 0700" "$(stat -c %a "$T/d/updates/keys")" 700

# ---- root version 1: 2 of 3, signed apart and combined ----
root_args=(--root "$V/root1.key.pub" --root "$V/root2.key.pub" --root "$V/root3.key.pub"
    --root-threshold 2 --targets "$V/tg1.key.pub" --targets "$V/tg2.key.pub" --targets-threshold 2
    --timestamp "$V/ts.json" --snapshot "$V/sn.json")
rel "init-root" init-root --out "$V/root.json" "${root_args[@]}"
cp "$V/root.json" "$V/root-a.json"
cp "$V/root.json" "$V/root-b.json"
sign "$V/root-a.json" root1
sign "$V/root-b.json" root2
rel "combine" combine --out "$V/root1.json" "$V/root-a.json" "$V/root-b.json"
contains "two signatures" "$OUT" "2 signatures"
rel "verify the combined root" verify --root "$V/root1.json" "$V/root1.json"
rel_fails "one signature is below the threshold" 1 "signatures" verify --root "$V/root1.json" "$V/root-a.json"
rel_fails "a wrong passphrase" 1 "passphrase is wrong" sign --key "$V/root3.key" --passphrase-file "$V/wrong" "$V/root-a.json"
"$R" init-root --out "$V/other.json" "${root_args[@]}" --root-threshold 3 >/dev/null
rel_fails "combine refuses other contents" 1 "other contents" combine --out "$V/x.json" "$V/root-a.json" "$V/other.json"
rel_fails "a threshold above the keys" 2 "more than its 2 keys" init-root --out "$V/y.json" "${root_args[@]}" --targets-threshold 3

# ---- targets version 1 ----
head -c 1500000 /dev/urandom >"$T/fw-1.bin"
head -c 2500000 /dev/urandom >"$T/fw-2.bin"
head -c 1500000 /dev/urandom >"$T/evil.bin"
rel "targets v1" targets --out "$V/t1.json" --image "$T/fw-1.bin" --name gw/fw-1.0.bin --hardware gw-a --version 10000
cp "$V/t1.json" "$V/t1-one.json"
sign "$V/t1.json" tg1 tg2
sign "$V/t1-one.json" tg1
rel "verify targets" verify --root "$V/root1.json" "$V/t1.json"

# ---- publishing: refusals change nothing ----
refused "targets with one of two signatures" 1 "signatures" \
    release add --root "$V/root1.json" --targets "$V/t1-one.json" --image "gw/fw-1.0.bin=$T/fw-1.bin"
refused "an image that is not the one signed" 1 "is not target gw/fw-1.0.bin as signed (hash)" \
    release add --root "$V/root1.json" --targets "$V/t1.json" --image "gw/fw-1.0.bin=$T/evil.bin"
refused "a target without its image" 1 "has no image" \
    release add --root "$V/root1.json" --targets "$V/t1.json"
refused "an image for no target" 1 "no such target" \
    release add --root "$V/root1.json" --targets "$V/t1.json" --image "gw/fw-1.0.bin=$T/fw-1.bin" --image "gw/x.bin=$T/fw-1.bin"
refused "a root signed by one of its keys" 1 "signatures" \
    release add --root "$V/root-a.json" --targets "$V/t1.json" --image "gw/fw-1.0.bin=$T/fw-1.bin"
"$R" keygen --out "$V/ts-own.key" --no-passphrase >/dev/null
"$R" init-root --out "$V/root-own.json" --root "$V/root1.key.pub" --root-threshold 1 \
    --targets "$V/tg1.key.pub" --targets-threshold 1 --timestamp "$V/ts-own.key.pub" --snapshot "$V/sn.json" >/dev/null
sign "$V/root-own.json" root1
refused "a root that does not trust this deployment's online keys" 1 "does not trust this deployment's timestamp key" \
    release add --root "$V/root-own.json" --targets "$V/t1.json" --image "gw/fw-1.0.bin=$T/fw-1.bin"
check "nothing was published" test ! -e "$T/d/updates/repo/metadata/timestamp.json"
check "no image was kept" sh -c "! find '$T/d/updates/repo/targets' -type f 2>/dev/null | grep -q ."
ok "nothing to list" release list
contains "says nothing is published" "$ERR$OUT" "nothing published"

# ---- publishing ----
ok "release add v1" release add --root "$V/root1.json" --targets "$V/t1.json" --image "gw/fw-1.0.bin=$T/fw-1.bin"
contains "versions" "$OUT" "root 1, targets 1, snapshot 1, timestamp 1 (1 new images)"
ok "release list" release list --json
equals "listed target" "$(jq -r '.targets[0] | [.name, .hardware, .version, .length] | join(" ")' <<<"$OUT")" \
    "gw/fw-1.0.bin gw-a 10000 1500000"
ok "audit" audit list --json
equals "audited: keys and the release" "$(jq -r '[.[] | .action | select(startswith("release."))] | join(",")' <<<"$OUT")" \
    "release.keys,release.add"
ok "the audit chain holds" audit verify
refused "the same targets version again" 1 "rollback" \
    release add --root "$V/root1.json" --targets "$V/t1.json"

# ---- tuf-js reads the repository from a mirror ----
PORT=$(free_port)
mirror() { rm -rf "$M" && cp -a "$T/d/updates/repo" "$M"; }
mirror
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$M" >/dev/null 2>&1 &
HTTP_PID=$!
stop_http() { kill "$HTTP_PID" 2>/dev/null; }
CLEANUP_HOOKS="${CLEANUP_HOOKS:-} stop_http"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/metadata/root.json" >/dev/null && break; sleep 0.1; done
# tuf DEVICE TARGET: tuf-js as device DEVICE (its trusted metadata in $T/DEVICE, first the root
# it shipped with); the result line in $TUF
tuf() {
    [ -d "$T/$1" ] || { mkdir -p "$T/$1" && cp "$T/d/updates/repo/metadata/1.root.json" "$T/$1/root.json"; }
    rm -f "$T/$1.got"
    TUF=$(node "$JS/tuf_client.mjs" "$T/$1" "http://127.0.0.1:$PORT/metadata" "http://127.0.0.1:$PORT/targets" "$2" "$T/$1.got" 2>&1)
}
tuf dev1 gw/fw-1.0.bin
contains "tuf-js accepts release 1" "$TUF" 'OK gw/fw-1.0.bin 1500000 {"hardware":"gw-a","version":10000}'
check "tuf-js got the image" cmp "$T/dev1.got" "$T/fw-1.bin"
rel "keyfleet's verifier agrees" verify --root "$T/d/updates/repo/metadata/root.json" \
    "$T/d/updates/repo/metadata/1.targets.json" "$T/d/updates/repo/metadata/1.snapshot.json" "$T/d/updates/repo/metadata/timestamp.json"
cp "$M/metadata/timestamp.json" "$T/timestamp-1.json"
cp "$M/metadata/1.snapshot.json" "$T/snapshot-1.json"

# ---- release 2 ----
rel "targets v2" targets --from "$V/t1.json" --out "$V/t2.json" --image "$T/fw-2.bin" --name gw/fw-2.0.bin --hardware gw-a --version 20000
sign "$V/t2.json" tg1 tg2
ok "release add v2" release add --root "$V/root1.json" --targets "$V/t2.json" --image "gw/fw-2.0.bin=$T/fw-2.bin"
contains "versions 2" "$OUT" "root 1, targets 2, snapshot 2, timestamp 2 (1 new images)"
mirror
tuf dev1 gw/fw-2.0.bin
contains "tuf-js accepts release 2" "$TUF" "OK gw/fw-2.0.bin 2500000"
check "tuf-js got image 2" cmp "$T/dev1.got" "$T/fw-2.bin"

# ---- root rotation: root1's key goes, new1 comes ----
rot_args=(--root "$V/root2.key.pub" --root "$V/root3.key.pub" --root "$V/new1.key.pub"
    --root-threshold 2 --targets "$V/tg1.key.pub" --targets "$V/tg2.key.pub" --targets-threshold 2
    --timestamp "$V/ts.json" --snapshot "$V/sn.json")
rel "init-root v2" init-root --out "$V/root2.json" --version 2 "${rot_args[@]}"
rel "targets v3 (the same, signed again)" targets --from "$V/t2.json" --out "$V/t3.json"
sign "$V/t3.json" tg1 tg2
cp "$V/root2.json" "$V/root2-new.json"
sign "$V/root2-new.json" new1 root3
refused "root 2 without a threshold of root 1's keys" 1 "signatures" \
    release add --root "$V/root2-new.json" --targets "$V/t3.json"
sign "$V/root2.json" root1 root2
refused "root 2 without a threshold of its own keys" 1 "signatures" \
    release add --root "$V/root2.json" --targets "$V/t3.json"
sign "$V/root2.json" new1
ok "root 2 signed by both thresholds" release add --root "$V/root2.json" --targets "$V/t3.json"
contains "versions after the rotation" "$OUT" "root 2, targets 3, snapshot 3, timestamp 3 (0 new images)"
check "every root version is kept" test -f "$T/d/updates/repo/metadata/1.root.json" -a -f "$T/d/updates/repo/metadata/2.root.json"
mirror
tuf dev1 gw/fw-2.0.bin
contains "tuf-js follows the rotation" "$TUF" "OK gw/fw-2.0.bin"
equals "tuf-js trusts root 2 now" "$(jq -r .signed.version "$T/dev1/root.json")" 2
tuf dev2 gw/fw-1.0.bin
contains "a device still on root 1 walks the chain" "$TUF" "OK gw/fw-1.0.bin"
check "the renewed snapshot and timestamp verify" "$R" verify --root "$T/d/updates/repo/metadata/root.json" "$T/d/updates/repo/metadata/timestamp.json"
ok "release refresh" release refresh
contains "refreshed" "$OUT" "renewed"
# keyfleetd renews the timestamp on its own once less than half its life is left: one that
# expires in an hour (signed with the online key, as keyfleetd would) is replaced at start.
TSV=$(jq -r .signed.version "$T/d/updates/repo/metadata/timestamp.json")
jq --arg e "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)" '.signed.expires=$e | .signatures=[]' \
    "$T/d/updates/repo/metadata/timestamp.json" >"$T/ts.soon"
"$R" sign --key "$T/d/updates/keys/timestamp.key" "$T/ts.soon" >/dev/null
cp "$T/ts.soon" "$T/d/updates/repo/metadata/timestamp.json"
start_kfd
for _ in $(seq 100); do
    [ "$(jq -r .signed.version "$T/d/updates/repo/metadata/timestamp.json")" -gt "$TSV" ] && break
    sleep 0.1
done
equals "keyfleetd renewed the timestamp" "$(jq -r .signed.version "$T/d/updates/repo/metadata/timestamp.json")" $((TSV + 1))
check "for a day" test "$(jq -r .signed.expires "$T/d/updates/repo/metadata/timestamp.json")" \> "$(date -u -d '+23 hours' +%Y-%m-%dT%H:%M:%SZ)"
check "and said so" grep -q "renewed the repository's timestamp" "$T/kfd.log"
stop_kfd
mirror

# ---- keyfleetd serves the repository over mutual TLS; tuf-js reads it as a device ----
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/gw-1.key" \
    -out "$T/gw-1.csr" -subj "/CN=gw-1" 2>/dev/null
ok "a device certificate" cert issue --device gw-1 --csr "$T/gw-1.csr" --out "$T/gw-1.pem"
start_kfd
DEV=(--cert "$T/gw-1.pem" --key "$T/gw-1.key" --cacert "$T/d/ca/root.crt")
code=$(curl -s "${DEV[@]}" -o "$T/ts.got" -w '%{http_code} %{content_type}' "$URL/updates/metadata/timestamp.json")
equals "timestamp.json over mTLS" "$code" "200 application/json"
check "the published bytes" cmp "$T/ts.got" "$T/d/updates/repo/metadata/timestamp.json"
curl -s "${DEV[@]}" -D "$T/hdr" -o /dev/null "$URL/updates/metadata/timestamp.json"
check "metadata is not cached" grep -qi "^cache-control: no-store" "$T/hdr"
TFILE=$(find "$T/d/updates/repo/targets/gw" -name "*.fw-2.0.bin" | head -1)
TURL="$URL/updates/targets/gw/$(basename "$TFILE")"
code=$(curl -s "${DEV[@]}" -o "$T/part1" -w '%{http_code}' -r 0-999999 "$TURL")
equals "the first part: 206" "$code" 206
code=$(curl -s "${DEV[@]}" -o "$T/part2" -w '%{http_code}' -r 1000000- "$TURL")
equals "the rest, resumed: 206" "$code" 206
cat "$T/part1" "$T/part2" >"$T/whole"
check "the two parts are the image" cmp "$T/whole" "$T/fw-2.bin"
curl -s "${DEV[@]}" -D "$T/hdr" -o /dev/null -r -1000 "$TURL"
check "a suffix range names its bytes" grep -qi "^content-range: bytes 2499000-2499999/2500000" "$T/hdr"
code=$(curl -s "${DEV[@]}" -o /dev/null -w '%{http_code}' "$TURL")
equals "the whole image: 200" "$code" 200
rm -rf "$T/dev3"
mkdir -p "$T/dev3" && cp "$T/d/updates/repo/metadata/1.root.json" "$T/dev3/root.json"
TUF=$(TUF_CERT="$T/gw-1.pem" TUF_KEY="$T/gw-1.key" TUF_CA="$T/d/ca/root.crt" \
    node "$JS/tuf_client.mjs" "$T/dev3" "$URL/updates/metadata" "$URL/updates/targets" gw/fw-2.0.bin "$T/dev3.got" 2>&1)
contains "tuf-js through keyfleetd's mTLS listener (root chain 1 -> 2)" "$TUF" "OK gw/fw-2.0.bin 2500000"
check "its image" cmp "$T/dev3.got" "$T/fw-2.bin"
stop_kfd

# ---- a lying server or mirror: tuf-js refuses each ----
tuf dev1 gw/fw-2.0.bin
contains "dev1 is up to date before the attacks" "$TUF" "OK gw/fw-2.0.bin"
# attack DESC WHY [fresh]: tuf-js, as a copy of dev1 (it trusts the current metadata: a rollback is
# one for it), or as a new device (fresh: only root 1), asks for gw/fw-2.0.bin from the tampered
# mirror: it must refuse, for WHY (in its error), and write no file. Then the mirror is made good again. dev1 itself
# never sees an attack.
attack() {
    rm -rf "$T/devx"
    [ -n "${3:-}" ] || cp -a "$T/dev1" "$T/devx"
    tuf devx gw/fw-2.0.bin
    if [[ "$TUF" == REFUSED*"$2"* ]] && [ ! -e "$T/devx.got" ]; then pass; else fail "$1: tuf-js said: $TUF"; fi
    mirror
}
for f in $(find "$M/targets/gw" -name "*.fw-2.0.bin"); do
    printf 'X' | dd of="$f" bs=1 seek=1000 conv=notrunc 2>/dev/null
done
attack "arbitrary installation: the image changed" LengthOrHashMismatchError
for f in $(find "$M/targets/gw" -name "*.fw-2.0.bin"); do head -c 100000 /dev/zero >>"$f"; done
attack "endless data: the image longer than signed" DownloadLengthMismatchError
cp "$T/timestamp-1.json" "$M/metadata/timestamp.json"
attack "rollback: an older timestamp" "New timestamp version 1 is less than current"
# A mix: the timestamp names the snapshot by hash; another snapshot under its name.
cur=$(jq -r '.signed.meta["snapshot.json"].version' "$M/metadata/timestamp.json")
cp "$T/snapshot-1.json" "$M/metadata/$cur.snapshot.json"
attack "mix-and-match: another snapshot under the current one's name" "Expected length" fresh

# With the online keys stolen (the server is the attacker): it can sign snapshots and
# timestamps, but not targets.
TSK="$T/d/updates/keys/timestamp.key"
SNK="$T/d/updates/keys/snapshot.key"
ts_v=$(jq -r .signed.version "$M/metadata/timestamp.json")
sn_v=$(jq -r '.signed.meta["snapshot.json"].version' "$M/metadata/timestamp.json")
tg_v=$(jq -r '.signed.meta["targets.json"].version' "$M/metadata/$sn_v.snapshot.json")
later=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
# forge TARGETS_VERSION [EXPIRES]: a snapshot naming that targets version and a timestamp naming
# the snapshot, both signed with the stolen online keys, into the mirror
forge() {
    jq --argjson v $((sn_v + 1)) --argjson t "$1" --arg e "$later" \
        '.signed.version=$v | .signed.expires=$e | .signed.meta={"targets.json": {"version": $t}} | .signatures=[]' \
        "$M/metadata/$sn_v.snapshot.json" >"$M/metadata/$((sn_v + 1)).snapshot.json"
    "$R" sign --key "$SNK" "$M/metadata/$((sn_v + 1)).snapshot.json" >/dev/null
    jq --argjson v $((ts_v + 1)) --argjson s $((sn_v + 1)) --arg e "${2:-$later}" \
        '.signed.version=$v | .signed.expires=$e | .signed.meta={"snapshot.json": {"version": $s}} | .signatures=[]' \
        "$M/metadata/timestamp.json" >"$T/ts.forged"
    mv "$T/ts.forged" "$M/metadata/timestamp.json"
    "$R" sign --key "$TSK" "$M/metadata/timestamp.json" >/dev/null
}
forge "$tg_v"
rm -rf "$T/devx" && cp -a "$T/dev1" "$T/devx"
tuf devx gw/fw-2.0.bin
contains "the forger's snapshot and timestamp alone change nothing the device installs" "$TUF" "OK gw/fw-2.0.bin"
check "the same vendor-signed image" cmp "$T/devx.got" "$T/fw-2.bin"
mirror
"$R" targets --from "$V/t3.json" --out "$M/metadata/$((tg_v + 1)).targets.json" --image "$T/evil.bin" \
    --name gw/fw-2.0.bin --hardware gw-a --version 99999 >/dev/null
"$R" sign --key "$SNK" "$M/metadata/$((tg_v + 1)).targets.json" >/dev/null
forge $((tg_v + 1))
attack "stolen online keys: targets signed with the snapshot key" "targets was signed by 0/2 keys"
cp "$V/t1.json" "$M/metadata/1.targets.json"
forge 1
attack "stolen online keys: back to targets version 1 (rollback)" "New version 1 of targets.json is less than current"
"$R" targets --from "$V/t3.json" --out "$M/metadata/$((tg_v + 1)).targets.json" >/dev/null
"$R" sign --key "$V/tg1.key" --passphrase-file "$V/pass" "$M/metadata/$((tg_v + 1)).targets.json" >/dev/null
forge $((tg_v + 1))
attack "one vendor targets key stolen: below the threshold" "targets was signed by 1/2 keys"
forge "$tg_v" "2020-01-01T00:00:00Z"
attack "freeze: an expired timestamp" ExpiredMetadataError
tuf dev1 gw/fw-2.0.bin
contains "after every attack the device still updates from the good repository" "$TUF" "OK gw/fw-2.0.bin"
check "and gets the good image" cmp "$T/dev1.got" "$T/fw-2.bin"

finish
