#!/bin/bash
# Attacks on the signed-update files keyfleetd serves (/updates/ on the provisioning listener):
#   - reading them without a certificate of this deployment, with a factory certificate, or as a
#     revoked or disabled device: 403 forbidden and a provisioning.denied event;
#   - reaching outside the repository (the online keys!) with ../ and other paths: 404;
#   - ranges beyond the file: 416 with the file's length, never bytes from elsewhere;
#   - taking every download slot: beyond [provisioning] max_downloads, 503 with Retry-After;
#   - one device taking them all: beyond max_downloads_per_identity, 429 (and an event) for it,
#     while another device still downloads;
#   - holding a slot by never reading: the connection is closed after the request deadline and
#     the slot comes back.
. "$(dirname "$0")/lib.sh"

ok "init" init
D=$T/d
mkca fca
group_enroll factory fca

# A release to serve (vendor keys in clear: the vendor side is update_release's subject).
vendor_root
# Larger than loopback's socket buffers, so that a slow reader really holds its download.
SIZE=40000000
head -c $SIZE /dev/urandom >"$T/fw.bin"
vendor_targets "$T/t.json" --image "$T/fw.bin" --name fw.bin --hardware gw-a --version 1
ok "release add" release add --root "$V/root.json" --targets "$T/t.json" --image "fw.bin=$T/fw.bin"
H=$(sha256sum "$T/fw.bin" | cut -d' ' -f1)

conf_set provisioning max_downloads 2
conf_set provisioning max_downloads_per_identity 1
conf_set provisioning request_timeout_ms 1500
start_kfd || exit 1
provision dev-1
provision dev-2
provision dev-3
provision dev-4
ok "a service" service add --name mirror --role reader --key-out "$T/svc.key" --out "$T/svc.pem"
CA=(--cacert "$D/ca/root.crt")
get() { # get PATH [curl args...]: the status in HTTP, the body in $T/body
    HTTP=$(curl -s --path-as-is "${CA[@]}" -o "$T/body" -w '%{http_code}' "${@:2}" "$URL$1")
}
DEV1=(--cert "$T/dev-1.op.pem" --key "$T/dev-1.op.key")

get /updates/metadata/timestamp.json "${DEV1[@]}"
equals "a provisioned device reads the metadata" "$HTTP" 200
get /updates/metadata/1.root.json --cert "$T/svc.pem" --key "$T/svc.key"
equals "a service reads it too" "$HTTP" 200
get "/updates/targets/$H.fw.bin" "${DEV1[@]}"
equals "a device downloads the image" "$HTTP" 200
check "the image" cmp "$T/body" "$T/fw.bin"

# ---- who may read ----
get /updates/metadata/timestamp.json
equals "no certificate: 403" "$HTTP" 403
contains "... forbidden" "$(cat "$T/body")" '"error":"forbidden"'
get /updates/metadata/timestamp.json --cert "$T/dev-2.pem" --key "$T/dev-2.key"
equals "a factory certificate: 403" "$HTTP" 403
ok "disable dev-2" device disable dev-2
ok "revoke dev-3" device revoke dev-3
sleep 1.5 # the registry snapshot follows within a second
get /updates/metadata/timestamp.json --cert "$T/dev-2.op.pem" --key "$T/dev-2.op.key"
equals "a disabled device: 403" "$HTTP" 403
get "/updates/targets/$H.fw.bin" --cert "$T/dev-3.op.pem" --key "$T/dev-3.op.key"
equals "a revoked device: 403" "$HTTP" 403
check "the refusals are events" event_with provisioning.denied \
    '.detail.reason == "forbidden" and .detail.status == 403'

# ---- outside the repository ----
for p in /updates/targets/../keys/timestamp.key /updates/metadata/../keys/snapshot.key \
    /updates/targets/../../keyfleet.conf /updates/metadata/../../updates/keys/timestamp.key \
    "/updates/targets/%2e%2e/keys/timestamp.key" /updates/metadata/snapshot.json \
    /updates/metadata/1.root.json.bak /updates/metadata/ /updates/targets/ /updates/ \
    "/updates/targets//etc/passwd" /updates/metadata/01.root.json; do
    get "$p" "${DEV1[@]}"
    if [ "$HTTP" = 404 ] && ! grep -q "PRIVATE KEY\|\[store\]\|root:" "$T/body"; then pass; else fail "$p: $HTTP $(head -c 200 "$T/body")"; fi
done
get /updates/metadata/timestamp.json "${DEV1[@]}" -X POST
equals "only GET" "$HTTP" 405

# ---- ranges ----
get "/updates/targets/$H.fw.bin" "${DEV1[@]}" -r $SIZE-
equals "a range from the end of the file: 416" "$HTTP" 416
curl -s "${CA[@]}" "${DEV1[@]}" -D "$T/hdr" -o /dev/null -r 50000000-60000000 "$URL/updates/targets/$H.fw.bin"
check "416 says the length" grep -qi "^content-range: bytes \*/$SIZE" "$T/hdr"
get "/updates/targets/$H.fw.bin" "${DEV1[@]}" -r $((SIZE - 10))-99999999
equals "a range past the end is cut to the file" "$HTTP" 206
equals "... its last ten bytes" "$(wc -c <"$T/body")" 10
get "/updates/targets/$H.fw.bin" "${DEV1[@]}" -H "Range: bytes=5-1"
equals "a range backwards is ignored: the whole file" "$HTTP" 200
get "/updates/targets/$H.fw.bin" "${DEV1[@]}" -H "Range: bytes=0-1,5-6"
equals "several ranges: the whole file" "$HTTP" 200
get "/updates/targets/$H.fw.bin" "${DEV1[@]}" -H "Range: bytes=99999999999999999999999-"
equals "an overflowing range is ignored" "$HTTP" 200

# ---- download slots (max_downloads 2, max_downloads_per_identity 1) ----
DEV4=(--cert "$T/dev-4.op.pem" --key "$T/dev-4.op.key")
curl -s "${CA[@]}" "${DEV1[@]}" --limit-rate 100k -o "$T/slow" "$URL/updates/targets/$H.fw.bin" &
SLOW=$!
sleep 0.5
get "/updates/targets/$H.fw.bin" "${DEV1[@]}"
equals "one device holds its share: 429 for it" "$HTTP" 429
contains "... rate_limited, naming the setting" "$(cat "$T/body")" "max_downloads_per_identity"
check "... and an event naming the device" event_with provisioning.denied \
    '.device == "dev-1" and .detail.reason == "rate_limited" and .detail.status == 429'
get /updates/metadata/timestamp.json "${DEV4[@]}"
equals "another device is not starved" "$HTTP" 200
curl -s "${CA[@]}" "${DEV4[@]}" --limit-rate 100k -o "$T/slow4" "$URL/updates/targets/$H.fw.bin" &
SLOW4=$!
sleep 0.5
get /updates/metadata/timestamp.json --cert "$T/svc.pem" --key "$T/svc.key"
equals "every slot taken: 503 for anyone" "$HTTP" 503
curl -s "${CA[@]}" --cert "$T/svc.pem" --key "$T/svc.key" -D "$T/hdr" -o /dev/null "$URL/updates/metadata/timestamp.json"
check "... with Retry-After" grep -qi "^retry-after:" "$T/hdr"
kill "$SLOW" "$SLOW4" 2>/dev/null
wait "$SLOW" "$SLOW4" 2>/dev/null
sleep 0.3
get "/updates/targets/$H.fw.bin" "${DEV1[@]}"
equals "a client that went gives its slot back" "$HTTP" 200

# A client that asks and never reads keeps the slot only for the request deadline (1.5 s here).
python3 - "$KFD_PORT" "$T/dev-1.op.pem" "$T/dev-1.op.key" "$D/ca/root.crt" "/updates/targets/$H.fw.bin" >"$T/stall" 2>&1 <<'EOF' &
import socket, ssl, sys, time
port, cert, key, ca, path = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
start = time.time()
time.sleep(6)  # never reads: keyfleetd must give up on it
try:
    got = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
except Exception:
    pass
print("closed", "short" if got < 40000000 else "whole")
EOF
STALL=$!
sleep 0.5
get "/updates/targets/$H.fw.bin" "${DEV1[@]}"
equals "while the staller holds its device's slot: 429" "$HTTP" 429
ok=0
for _ in $(seq 1 40); do
    get /updates/metadata/timestamp.json "${DEV1[@]}"
    [ "$HTTP" = 200 ] && { ok=1; break; }
    sleep 0.2
done
equals "the staller's slot came back within the deadline" "$ok" 1
wait "$STALL"
contains "the staller was cut off, not served the whole image" "$(cat "$T/stall")" "closed short"

finish
