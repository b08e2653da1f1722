#!/bin/sh
# Installs the Debian 12 packages keyfleet needs to build, test and run.
# Idempotent: when everything is present it installs nothing and exits 0.
set -eu

PACKAGES="
build-essential cmake pkg-config clang libclang-rt-14-dev
libssl-dev openssl libevent-dev libsqlite3-dev sqlite3 libpq-dev libjansson-dev
libcmocka-dev
curl ca-certificates
swtpm swtpm-tools tpm2-tools tpm2-openssl tpm2-abrmd libtss2-tcti-tabrmd0 libtss2-dev dbus
softhsm2 opensc libengine-pkcs11-openssl libp11-dev libp11-kit-dev
mosquitto mosquitto-clients python3-paho-mqtt nginx
xxd procps iproute2 jq python3 sqlite3
"

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    "install ok installed") ;;
    *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "deps: missing packages:$missing; run as root or install sudo" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done" >&2
