#!/usr/bin/env python3
"""Floods an MQTT-over-TLS server with one packet, for the attack tests.

usage: mqtt_flood.py PORT CA CERT KEY CLIENT_ID VERSION SECONDS PACKET

Connects (MQTT VERSION 4 or 5, clean start), then writes PACKET (hex) as fast as the connection
takes it for SECONDS, reading what comes back; reconnects when the server closes the connection
(until SECONDS are up). Without CERT ("-") it only opens TLS handshakes with no client
certificate, as fast as it can. Prints one line: sent=N connections=N refused=N and, per packet
type received, type<T>=N; plus reason<HEX>=N for the reason codes of SUBACK and PUBACK packets.
SRC in the environment binds to that source address.
"""
import os
import socket
import ssl
import sys
import time
from collections import Counter

from mqtt_wire import packets


def connect_packet(cid, version):
    body = b"\x00\x04MQTT" + bytes([version, 0x02]) + b"\x00\x3c"
    if version == 5:
        body += b"\x00"
    body += len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def main():
    port, ca, cert, key, cid = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    version, seconds, pkt = int(sys.argv[6]), float(sys.argv[7]), bytes.fromhex(sys.argv[8])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    src = os.environ.get("SRC")
    end = time.time() + seconds
    got, reasons = Counter(), Counter()
    sent = conns = refused = 0
    while time.time() < end:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=2,
                                           source_address=(src, 0) if src else None)
        except OSError:
            refused += 1
            time.sleep(0.05)
            continue
        try:
            s = ctx.wrap_socket(raw)
            conns += 1
            if cert == "-":
                s.close()
                continue
            s.sendall(connect_packet(cid.encode(), version))
            s.setblocking(False)
            buf = b""
            while time.time() < end:
                try:
                    s.send(pkt)
                    sent += 1
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                try:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                done, buf = packets(buf)
                for p in done:
                    t = p[0] >> 4
                    got[t] += 1
                    if t == 9:  # SUBACK: the codes after packet id (and properties in v5)
                        body = p[2:] if p[1] < 128 else p[3:]
                        codes = body[2:]
                        if version == 5 and codes:
                            codes = codes[1 + codes[0]:]
                        for c in codes:
                            reasons[c] += 1
                    if t == 4 and version == 5 and len(p) >= 5:
                        reasons[p[4]] += 1
        except (ssl.SSLError, OSError):
            refused += 1
        finally:
            raw.close()
    fields = [f"sent={sent}", f"connections={conns}", f"refused={refused}"]
    fields += [f"type{t}={n}" for t, n in sorted(got.items())]
    fields += [f"reason{c:02x}={n}" for c, n in sorted(reasons.items())]
    print(" ".join(fields))


if __name__ == "__main__":
    main()
