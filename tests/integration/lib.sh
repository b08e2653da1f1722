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

# A fingerprint of everything in the store: rows of every table, in order.
store_state() {
    sqlite3 "$T/d/keyfleet.db" \
        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name" | while read -r tbl; do
        echo "== $tbl"
        sqlite3 "$T/d/keyfleet.db" "SELECT * FROM \"$tbl\" ORDER BY 1"
    done | sha256sum
}

# unchanged DESC BEFORE: the store must be as it was.
unchanged() {
    now=$(store_state)
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
    TPM_PORT=$(free_port)
    swtpm socket --tpm2 --server type=tcp,port="$TPM_PORT",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((TPM_PORT + 1)),bindaddr=127.0.0.1 --tpmstate dir="$TPM_DIR/state" \
        --flags not-need-init,startup-clear --pid file="$TPM_DIR/swtpm.pid" --daemon \
        || { echo "swtpm did not start" >&2; return 1; }
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

stop_tpm() {
    [ -n "${TPM_ABRMD_PID:-}" ] && kill "$TPM_ABRMD_PID" 2>/dev/null
    [ -f "$TPM_DIR/swtpm.pid" ] && kill "$(cat "$TPM_DIR/swtpm.pid")" 2>/dev/null
    [ -n "${TPM_DBUS_PID:-}" ] && kill "$TPM_DBUS_PID" 2>/dev/null
    wait 2>/dev/null
    return 0
}
