#!/usr/bin/env python3
"""Sends raw bytes to an MQTT-over-TLS server and prints what comes back, in hex.

usage: mqtt_raw.py PORT CA CERT KEY PACKET [PACKET ...]

Each PACKET is sent as one write, with a short pause between them: hex bytes (spaces allowed),
or cV:ID[:KEEPALIVE] for a well-formed CONNECT of MQTT version V (4 or 5) with client id ID
(CV:ID[:KEEPALIVE], capital C, the same with clean start off: a persistent session).
SRC in the environment binds the client to that source address (127.0.1.5, say); RAW_WAIT
sets the seconds of silence that end the reading (default 2); RAW_READY names a file made once
the TLS handshake is done (so a test can wait for a connection that says nothing).
Prints each packet received as "TYPE HEX" (TYPE the packet type number) and "closed" when the
server closes the connection, or "open" if it is still open after two seconds of silence.
Used by the hub tests to send what no well-behaved client would.
"""
import os
import socket
import ssl
import sys
import time

from mqtt_wire import varint


def main():
    port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.check_hostname = False
    src = os.environ.get("SRC")
    raw = socket.create_connection(("127.0.0.1", port), timeout=5,
                                   source_address=(src, 0) if src else None)
    try:
        s = ctx.wrap_socket(raw)
        if os.environ.get("RAW_READY"):
            open(os.environ["RAW_READY"], "w").close()
        for arg in sys.argv[5:]:
            s.sendall(packet(arg))
            time.sleep(0.1)
    except OSError:  # ssl.SSLError and the connection errors are OSErrors
        print("closed")
        return
    s.settimeout(float(os.environ.get("RAW_WAIT", "2")))
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except socket.timeout:
        report(buf)
        print("open")
        return
    except OSError:
        pass
    report(buf)
    print("closed")


def packet(arg):
    if not (len(arg) > 2 and arg[0] in "cC" and arg[1] in "45" and arg[2] == ":"):
        return bytes.fromhex(arg.replace(" ", ""))
    parts = arg[1:].split(":")
    version, cid = int(parts[0]), parts[1].encode()
    keep = int(parts[2]) if len(parts) > 2 else 60
    clean = arg[0] == "c"
    body = b"\x00\x04MQTT" + bytes([version, 0x02 if clean else 0x00]) + keep.to_bytes(2, "big")
    if version == 5:
        # a persistent session needs a session expiry (property 0x11) in MQTT 5
        body += b"\x00" if clean else b"\x05\x11\x00\x00\x0e\x10"
    body += len(cid).to_bytes(2, "big") + cid
    return bytes([0x10]) + varint(len(body)) + body


def report(buf):
    while buf:
        n, mul, i = 0, 1, 1
        while i < len(buf):
            n += (buf[i] & 127) * mul
            mul *= 128
            i += 1
            if not buf[i - 1] & 128:
                break
        pkt, buf = buf[: i + n], buf[i + n :]
        print(pkt[0] >> 4, pkt.hex())


if __name__ == "__main__":
    main()
