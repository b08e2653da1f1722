#!/usr/bin/env python3
"""Sends raw bytes to an MQTT-over-TLS server and prints what comes back, in hex.

usage: mqtt_raw.py PORT CA CERT KEY HEX [HEX ...]

Each HEX argument is sent as one write (spaces allowed), with a short pause between them.
Prints each packet received as "TYPE HEX" (TYPE the packet type number) and "closed" when the
server closes the connection, or "open" if it is still open after two seconds of silence.
Used by the hub tests to send what no well-behaved client would.
"""
import socket
import ssl
import sys
import time


def main():
    port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    s = ctx.wrap_socket(raw)
    for h in sys.argv[5:]:
        s.sendall(bytes.fromhex(h.replace(" ", "")))
        time.sleep(0.1)
    s.settimeout(2)
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
    except (ssl.SSLError, ConnectionResetError):
        pass
    report(buf)
    print("closed")


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
