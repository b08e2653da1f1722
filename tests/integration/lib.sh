# Shared by the integration tests: a private temporary directory, the keyfleet binary, and
# assertions that say what went wrong. Source it; KF_BIN_DIR is set by ctest.
set -u

: "${KF_BIN_DIR:?KF_BIN_DIR must point at the build directory}"
KF="$KF_BIN_DIR/src/cli/keyfleet"
[ -x "$KF" ] || { echo "no keyfleet binary at $KF: build first" >&2; exit 1; }
T=$(mktemp -d "${KF_TEST_TMP:-/tmp}/kfit-XXXXXX")
FAILS=0
CHECKS=0

cleanup() {
    for hook in ${CLEANUP_HOOKS:-}; do "$hook" || true; done
    if [ "$FAILS" -eq 0 ] && [ -z "${KF_TEST_KEEP:-}" ]; then rm -rf "$T"; else echo "kept $T"; fi
}
trap cleanup EXIT

fail() {
    FAILS=$((FAILS + 1))
    echo "FAIL: $*" >&2
}

pass() {
    CHECKS=$((CHECKS + 1))
}

# kf ARGS...: runs keyfleet on the test deployment; output in $OUT, errors in $ERR, code in $RC.
kf() {
    "$KF" --dir "$T/d" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}

# ok DESC ARGS...: keyfleet must succeed.
ok() {
    desc=$1
    shift
    kf "$@"
    if [ "$RC" -ne 0 ]; then fail "$desc: exit $RC: $ERR"; else pass; fi
}

# refused DESC CODE NEEDLE ARGS...: keyfleet must exit CODE with NEEDLE in its error output.
refused() {
    desc=$1 code=$2 needle=$3
    shift 3
    kf "$@"
    if [ "$RC" -ne "$code" ]; then
        fail "$desc: exit $RC, expected $code (stderr: $ERR)"
    elif ! printf '%s' "$ERR" | grep -qF -- "$needle"; then
        fail "$desc: stderr lacks \"$needle\": $ERR"
    else
        pass
    fi
}

# contains DESC HAYSTACK NEEDLE
contains() {
    if printf '%s' "$2" | grep -qF -- "$3"; then pass; else fail "$1: lacks \"$3\" in: $2"; fi
}

# equals DESC GOT WANT
equals() {
    if [ "$2" = "$3" ]; then pass; else fail "$1: got \"$2\", want \"$3\""; fi
}

# check DESC COMMAND...: a shell command that must succeed.
check() {
    desc=$1
    shift
    if "$@" >"$T/check.out" 2>&1; then pass; else fail "$desc: $(cat "$T/check.out")"; fi
}

# check_not DESC COMMAND...: a shell command that must fail.
check_not() {
    desc=$1
    shift
    if "$@" >"$T/check.out" 2>&1; then fail "$desc: succeeded but should not"; else pass; fi
}

# A fingerprint of everything in the store: rows of every table, in order. Tables named as
# arguments are left out (store_state security_events: all but the events).
store_state() {
    sqlite3 "$T/d/keyfleet.db" \
        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name" | while read -r tbl; do
        case " $* " in *" $tbl "*) continue ;; esac
        echo "== $tbl"
        sqlite3 "$T/d/keyfleet.db" "SELECT * FROM \"$tbl\" ORDER BY 1"
    done | sha256sum
}

# unchanged DESC BEFORE [TABLES LEFT OUT]: the store must be as it was.
unchanged() {
    now=$(store_state "${@:3}")
    if [ "$now" = "$2" ]; then pass; else fail "$1: the store changed"; fi
}

# A CA made with openssl: mkca NAME [extra openssl req args]
mkca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.key" \
        -out "$T/$1.pem" -subj "/CN=$1" -days 365 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign" \
        "${@:2}" 2>/dev/null
}

# A device certificate for ID signed by CA: mkdev ID CA [days]
mkdev() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.key" \
        -out "$T/$1.csr" -subj "/CN=$1" 2>/dev/null
    openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2.key" -days "${3:-100}" \
        -out "$T/$1.pem" 2>/dev/null
}

finish() {
    if [ "$FAILS" -ne 0 ]; then
        echo "$FAILS of $((CHECKS + FAILS)) checks failed" >&2
        exit 1
    fi
    echo "all $CHECKS checks passed"
    exit 0
}

# A free TCP port on loopback (the kernel picks it; a race with other programs is unlikely).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Starts a throw-away TPM 2.0 (swtpm on loopback) behind tpm2-abrmd on a private D-Bus session
# bus, and points tpm2-tools and the OpenSSL tpm2 provider at it. Stopped at exit.
start_tpm() {
    TPM_DIR="$T/tpm"
    mkdir -p "$TPM_DIR/state"
    # swtpm needs two ports, P and P+1; P+1 may be taken (another test, an outgoing connection),
    # so try a few
    local started=0
    for _ in 1 2 3 4 5; do
        TPM_PORT=$(free_port)
        if swtpm socket --tpm2 --server type=tcp,port="$TPM_PORT",bindaddr=127.0.0.1 \
            --ctrl type=tcp,port=$((TPM_PORT + 1)),bindaddr=127.0.0.1 --tpmstate dir="$TPM_DIR/state" \
            --flags not-need-init,startup-clear --pid file="$TPM_DIR/swtpm.pid" --daemon \
            2>>"$TPM_DIR/swtpm.err"; then
            started=1
            break
        fi
    done
    [ "$started" = 1 ] || { echo "swtpm did not start: $(cat "$TPM_DIR/swtpm.err")" >&2; return 1; }
    CLEANUP_HOOKS="${CLEANUP_HOOKS:-} stop_tpm"
    dbus-daemon --session --fork --print-address=1 --print-pid=1 >"$TPM_DIR/dbus" \
        || { echo "dbus-daemon did not start" >&2; return 1; }
    DBUS_SESSION_BUS_ADDRESS=$(sed -n 1p "$TPM_DIR/dbus")
    TPM_DBUS_PID=$(sed -n 2p "$TPM_DIR/dbus")
    export DBUS_SESSION_BUS_ADDRESS
    TPM_BUS="com.intel.tss2.Tabrmd.kf$$"
    tpm2-abrmd --session --dbus-name="$TPM_BUS" --allow-root \
        --tcti "swtpm:host=127.0.0.1,port=$TPM_PORT" >"$TPM_DIR/abrmd.log" 2>&1 &
    TPM_ABRMD_PID=$!
    export TPM2TOOLS_TCTI="tabrmd:bus_name=$TPM_BUS,bus_type=session"
    export TPM2OPENSSL_TCTI="$TPM2TOOLS_TCTI"
    for _ in $(seq 1 50); do
        tpm2_getrandom 4 >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the TPM resource manager did not come up: $(cat "$TPM_DIR/abrmd.log")" >&2
    return 1
}

# tpm_key HANDLE: an ECC P-256 signing key made inside the TPM and made persistent at HANDLE.
tpm_key() {
    tpm2_createprimary -C o -g sha256 -G ecc256 -c "$T/primary.ctx" >/dev/null || return 1
    tpm2_create -C "$T/primary.ctx" -G ecc256:ecdsa \
        -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign" \
        -u "$T/key.pub" -r "$T/key.priv" >/dev/null || return 1
    tpm2_load -C "$T/primary.ctx" -u "$T/key.pub" -r "$T/key.priv" -c "$T/key.ctx" >/dev/null || return 1
    tpm2_evictcontrol -C o -c "$T/key.ctx" "$1" >/dev/null || return 1
    tpm2_flushcontext -t >/dev/null 2>&1 || true
}

# softhsm_token LABEL PIN KEYLABEL: a SoftHSM2 token in a private directory ($SOFTHSM2_CONF
# exported) holding an EC P-256 key pair KEYLABEL (id 01); sets MODULE.
softhsm_token() {
    MODULE=/usr/lib/softhsm/libsofthsm2.so
    [ -f "$MODULE" ] || { echo "SoftHSM2 module missing: run scripts/deps.sh" >&2; return 1; }
    mkdir -p "$T/tokens"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T" \
        >"$T/softhsm2.conf"
    export SOFTHSM2_CONF="$T/softhsm2.conf"
    softhsm2-util --init-token --free --label "$1" --so-pin 87654321 --pin "$2" >/dev/null || return 1
    pkcs11-tool --module "$MODULE" --token-label "$1" --login --pin "$2" --keypairgen \
        --key-type EC:prime256v1 --id 01 --label "$3" >/dev/null 2>&1
}

stop_tpm() {
    [ -n "${TPM_ABRMD_PID:-}" ] && kill "$TPM_ABRMD_PID" 2>/dev/null
    [ -f "$TPM_DIR/swtpm.pid" ] && kill "$(cat "$TPM_DIR/swtpm.pid")" 2>/dev/null
    [ -n "${TPM_DBUS_PID:-}" ] && kill "$TPM_DBUS_PID" 2>/dev/null
    # only its own child: a bare wait would also wait for keyfleetd, stopped by a later hook
    [ -n "${TPM_ABRMD_PID:-}" ] && wait "$TPM_ABRMD_PID" 2>/dev/null
    return 0
}

# ---- keyfleetd ----

KFD="$KF_BIN_DIR/src/server/keyfleetd"

# conf_set SECTION KEY VALUE: sets a key of the test deployment's configuration (KFD_CONF, by
# default its keyfleet.conf).
conf_set() {
    local f=${KFD_CONF:-$T/d/keyfleet.conf}
    sed -i "/^\[$1\]/,/^\[/ s|^$2 = .*|$2 = $3|" "$f"
    grep -q "^$2 = $3\$" "$f" || { echo "conf_set $1.$2 failed" >&2; return 1; }
}

# Starts keyfleetd on the test deployment, on a free loopback port, and waits until it answers.
# With KFD_CONF set, keyfleetd reads that configuration (--config). It logs at info (one line a
# request) unless KFD_LOG says otherwise. Sets KFD_PID, KFD_PORT and URL; stopped at exit.
# With REUSE_PORTS=1 it listens on the ports of the previous start (a restart); the hub listens
# on KFD_HUB_ADDR (default 127.0.0.1).
start_kfd() {
    if [ -z "${REUSE_PORTS:-}" ] || [ -z "${KFD_PORT:-}" ]; then
        KFD_PORT=$(free_port)
        HUB_PORT=$(free_port)
    fi
    conf_set provisioning listen "127.0.0.1:$KFD_PORT" || return 1
    conf_set hub listen "${KFD_HUB_ADDR:-127.0.0.1}:$HUB_PORT" || return 1
    URL="https://127.0.0.1:$KFD_PORT"
    KEYFLEET_LOG=${KFD_LOG:-info} "$KFD" --dir "$T/d" ${KFD_CONF:+--config "$KFD_CONF"} "$@" \
        >>"$T/kfd.log" 2>&1 &
    KFD_PID=$!
    case " ${CLEANUP_HOOKS:-} " in *" stop_kfd "*) ;; *) CLEANUP_HOOKS="${CLEANUP_HOOKS:-} stop_kfd" ;; esac
    for _ in $(seq 1 200); do
        curl -s -o /dev/null --cacert "$T/d/ca/root.crt" "$URL/healthz" && return 0
        kill -0 "$KFD_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "keyfleetd did not start: $(cat "$T/kfd.log")" >&2
    return 1
}

# Stops keyfleetd with SIGTERM and waits; KFD_STATUS is its exit status.
stop_kfd() {
    [ -n "${KFD_PID:-}" ] || return 0
    kill -TERM "$KFD_PID" 2>/dev/null
    wait "$KFD_PID" 2>/dev/null
    KFD_STATUS=$?
    KFD_PID=
    return 0
}

# Kills keyfleetd with SIGKILL (a crash) and waits for it.
kill9_kfd() {
    kill -9 "$KFD_PID"
    wait "$KFD_PID" 2>/dev/null
    KFD_PID=
}

# A factory certificate for ID under CA (made with mkca): fdev ID CA [openssl x509 args...]
fdev() {
    local id=$1 ca=$2
    shift 2
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$id.key" \
        -out "$T/$id.fcsr" -subj "/CN=$id" 2>/dev/null
    openssl x509 -req -in "$T/$id.fcsr" -CA "$T/$ca.pem" -CAkey "$T/$ca.key" -days 30 \
        -out "$T/$id.pem" "$@" 2>/dev/null
}

# group_enroll NAME CA: a group enrollment NAME for CA (made with mkca), verified by proof of
# possession (a certificate whose CN is the verification code, signed by the CA's key).
group_enroll() {
    local code
    ok "group $1" enrollment group create --name "$1" --ca "$T/$2.pem" --json
    code=$(jq -r .verification_code <<<"$OUT")
    openssl req -new -key "$T/$2.key" -subj "/CN=$code" -out "$T/pop-$1.csr" 2>/dev/null
    openssl x509 -req -in "$T/pop-$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2.key" -days 1 \
        -out "$T/pop-$1.pem" 2>/dev/null
    ok "verify group $1" enrollment group verify --name "$1" --cert "$T/pop-$1.pem"
}

# An operational CSR for ID with a new key: ocsr ID [CN]
ocsr() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.op.key" \
        -out "$T/$1.op.csr" -subj "/CN=${2:-$1}" 2>/dev/null
}

# register CERT KEY CSR: POST /api/v1/register; sets HTTP (status) and BODY.
register() {
    jq -n --rawfile csr "$3" '{csr: $csr}' >"$T/req.json"
    HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$T/d/ca/root.crt" \
        ${1:+--cert "$1" --key "$2"} -H 'Content-Type: application/json' \
        --data-binary @"$T/req.json" "$URL/api/v1/register")
    BODY=$(cat "$T/resp")
}

# est simpleenroll|simplereenroll CERT KEY CSR: an EST enrollment by hand with curl; sets HTTP,
# BODY, and EST_CERT (the file holding the certificate it returned, when 200).
est() {
    openssl req -in "$4" -outform DER | openssl base64 >"$T/req.b64"
    HTTP=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$T/d/ca/root.crt" \
        ${2:+--cert "$2" --key "$3"} -H 'Content-Type: application/pkcs10' \
        --data-binary @"$T/req.b64" "$URL/.well-known/est/$1")
    BODY=$(cat "$T/resp")
    EST_CERT="$T/est-$RANDOM.pem"
    [ "$HTTP" = 200 ] && openssl base64 -d -in "$T/resp" | openssl pkcs7 -inform DER -print_certs \
        -out "$EST_CERT" 2>/dev/null
    return 0
}

# registrations N OUT: N devices (rg-1 .. rg-N, factory certificates under fca) register one
# after another, 0.1 s apart, each HTTP status a line of OUT: provisioning's traffic beside an
# attack (run it in the background).
registrations() {
    for n in $(seq 1 "$1"); do
        fdev "rg-$n" fca
        ocsr "rg-$n"
        jq -n --rawfile csr "$T/rg-$n.op.csr" '{csr: $csr}' >"$T/rg-$n.json"
        curl -s -o /dev/null -w '%{http_code}\n' --cacert "$T/d/ca/root.crt" --cert "$T/rg-$n.pem" \
            --key "$T/rg-$n.key" -H 'Content-Type: application/json' \
            --data-binary @"$T/rg-$n.json" "https://127.0.0.1:$KFD_PORT/api/v1/register"
        sleep 0.1
    done >"$2"
}

# expect_refusal DESC STATUS CODE NEEDLE: checks the last answer was that refusal.
expect_refusal() {
    equals "$1: status" "$HTTP" "$2"
    equals "$1: error code" "$(jq -r .error <<<"$BODY" 2>/dev/null)" "$3"
    contains "$1: message" "$(jq -r .message <<<"$BODY" 2>/dev/null)" "$4"
}

# ---- the hub (after start_kfd, with a group enrollment "factory" for CA fca) ----

# Devices get their operational certificates through provisioning, as in the field.
provision() {
    fdev "$1" fca
    ocsr "$1"
    register "$T/$1.pem" "$T/$1.key" "$T/$1.op.csr"
    equals "$1 provisioned" "$HTTP" 200
    jq -r .certificate <<<"$BODY" >"$T/$1.op.pem"
}
# as WHO: the TLS options for a device (its operational certificate) or a service.
as() {
    if [ -f "$T/$1.op.pem" ]; then
        echo "-h 127.0.0.1 -p $HUB_PORT --cafile $T/d/ca/root.crt --cert $T/$1.op.pem --key $T/$1.op.key"
    else
        echo "-h 127.0.0.1 -p $HUB_PORT --cafile $T/d/ca/root.crt --cert $T/$1.pem --key $T/$1.key"
    fi
}
# sub NAME WHO ARGS...: a subscriber in the background, its output in $T/NAME.out.
sub() {
    local name=$1 who=$2
    shift 2
    # shellcheck disable=SC2046
    mosquitto_sub $(as "$who") -i "$who" "$@" >"$T/$name.out" 2>"$T/$name.err" &
    eval "SUB_$name=$!"
    sleep 0.4
}
# pub WHO ARGS...: one publish; sets RC and PUB_ERR.
pub() {
    local who=$1
    shift
    # shellcheck disable=SC2046
    timeout 10 mosquitto_pub $(as "$who") -i "$who" "$@" >"$T/pub.out" 2>"$T/pub.err"
    RC=$?
    PUB_ERR=$(cat "$T/pub.out" "$T/pub.err")
}
# raw WHO PACKET...: mqtt_raw.py as WHO (see there); its output in RAW.
raw() {
    local who=$1 cert key
    shift
    if [ -f "$T/$who.op.pem" ]; then cert=$T/$who.op.pem key=$T/$who.op.key; else cert=$T/$who.pem key=$T/$who.key; fi
    RAW=$(timeout 20 python3 "$(dirname "${BASH_SOURCE[0]}")/mqtt_raw.py" "$HUB_PORT" "$T/d/ca/root.crt" \
        "$cert" "$key" "$@" 2>&1)
}
# disconnected_with REASON_RE: the last raw answer was an MQTT 5 DISCONNECT with that reason
# (a regex over its hex), then the close.
disconnected_with() { grep -Eq "^14 e0..$1" <<<"$RAW" && grep -q '^closed$' <<<"$RAW"; }
# metric NAME: the value of NAME in keyfleetd's /metrics (after start_kfd), "" when absent.
metric() { curl -s --cacert "$T/d/ca/root.crt" "$URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# wait_for NAME NEEDLE: waits (up to 5 s) until a subscriber's output holds NEEDLE.
wait_for() {
    for _ in $(seq 1 50); do
        grep -qF -- "$2" "$T/$1.out" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# event_with TYPE JQ: waits (up to 5 s) for an event of TYPE for which the jq filter holds.
event_with() {
    for _ in $(seq 1 50); do
        "$KF" --dir "$T/d" events list --type "$1" --json >"$T/ev.json" 2>/dev/null
        [ "$(jq "[.[] | select($2)] | length" "$T/ev.json" 2>/dev/null)" -gt 0 ] 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ---- keyfleet-agent (after start_kfd) ----

# A deployment serving provisioning and a hub, with a group enrollment "factory" for the CA fca
# (made with mkca): what the device-side tests start from.
fleet_up() {
    ok "init" init
    start_kfd || return 1
    ok "hub" hub add --name hub-1 --endpoint "127.0.0.1:$HUB_PORT"
    mkca fca
    group_enroll factory fca
}

AGENT="$KF_BIN_DIR/src/agent/keyfleet-agent"

# agent_conf NAME FACTORY_CERT FACTORY_KEY [extra [device] lines]: writes $T/NAME.conf for an
# agent with data directory $T/NAME.data, provisioning from this keyfleetd.
agent_conf() {
    local name=$1 cert=$2 key=$3
    shift 3
    {
        echo "[device]"
        echo "provisioning_url = $URL"
        echo "factory_cert = $cert"
        echo "factory_key = $key"
        echo "trust_anchor = ${AGENT_ANCHOR:-$T/d/ca/root.crt}"
        echo "data_dir = $T/$name.data"
        for line in "$@"; do echo "$line"; done
    } >"$T/$name.conf"
}
# start_agent NAME: runs the agent of $T/NAME.conf in the background (log in $T/NAME.log);
# sets AGENT_PID. Stopped at exit.
start_agent() {
    KEYFLEET_LOG=${AGENT_LOG:-info} KEYFLEET_AGENT_BACKOFF_MAX_MS=${AGENT_BACKOFF_MAX_MS:-2000} \
        "$AGENT" --config "$T/$1.conf" >>"$T/$1.log" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS="${AGENT_PIDS:-} $AGENT_PID"
    case " ${CLEANUP_HOOKS:-} " in *" stop_agents "*) ;; *) CLEANUP_HOOKS="stop_agents ${CLEANUP_HOOKS:-}" ;; esac
}
stop_agents() {
    for p in ${AGENT_PIDS:-}; do kill -TERM "$p" 2>/dev/null; done
    for p in ${AGENT_PIDS:-}; do wait "$p" 2>/dev/null; done
    return 0
}
# wait_file PATH [SECONDS]: waits until PATH exists.
wait_file() {
    for _ in $(seq 1 $((${2:-10} * 10))); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
# wait_log NAME NEEDLE [SECONDS]: waits until the agent's log holds NEEDLE.
wait_log() {
    for _ in $(seq 1 $((${3:-10} * 10))); do
        grep -qF -- "$2" "$T/$1.log" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ---- signed updates ----

REL="$KF_BIN_DIR/src/release/keyfleet-release"

# vendor_root: a vendor in $V (keys in clear, one root and one targets key) and its root,
# $V/root.json, signed, trusting this deployment's online keys (update_release.sh does the
# ceremony with encrypted keys and thresholds).
vendor_root() {
    V=${V:-$T/vendor}
    mkdir -p "$V"
    ok "online keys" release keys --json
    jq -c .timestamp <<<"$OUT" >"$V/ts.json"
    jq -c .snapshot <<<"$OUT" >"$V/sn.json"
    "$REL" keygen --out "$V/root.key" --no-passphrase >/dev/null
    "$REL" keygen --out "$V/tg.key" --no-passphrase --type p256 >/dev/null
    "$REL" init-root --out "$V/root.json" --root "$V/root.key.pub" --root-threshold 1 \
        --targets "$V/tg.key.pub" --targets-threshold 1 --timestamp "$V/ts.json" \
        --snapshot "$V/sn.json" >/dev/null
    "$REL" sign --key "$V/root.key" "$V/root.json" >/dev/null
}

# vendor_targets OUT ARGS...: targets metadata made by keyfleet-release targets ARGS and signed
# with the vendor's targets key.
vendor_targets() {
    local out=$1
    shift
    "$REL" targets --out "$out" "$@" >/dev/null || fail "keyfleet-release targets $*"
    "$REL" sign --key "$V/tg.key" "$out" >/dev/null
}

# offer_all TARGET: a rollout of the published TARGET to every active device, one phase, no soak.
offer_all() {
    ok "rollout of $1" rollout create --release "$1" --all --phases 100 --soak 0
}

# update_agent NAME FACTORY_CERT FACTORY_KEY [extra [update] lines]: $T/NAME.conf for an agent
# that updates itself (hardware gw-a, handler $T/install.sh, checks every second) from the root
# the vendor made (vendor_root), shipped as $T/shipped-root.json.
update_agent() {
    local name=$1 cert=$2 key=$3
    shift 3
    cp "$V/root.json" "$T/shipped-root.json"
    chmod 644 "$T/shipped-root.json"
    agent_conf "$name" "$cert" "$key"
    {
        echo "[update]"
        echo "root = $T/shipped-root.json"
        echo "hardware = gw-a"
        echo "handler = $T/install.sh"
        echo "interval = 1"
        for line in "$@"; do echo "$line"; done
    } >>"$T/$name.conf"
}
