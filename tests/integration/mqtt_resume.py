#!/usr/bin/env python3
"""MQTT over TLS with TLS session resumption, step by step, for the hub's resumption tests.

usage: mqtt_resume.py PORT CA CERT KEY CLIENT_ID STEP [STEP ...]

Steps:
  connect      a new TLS connection (no session offered), CONNECT, CONNACK, DISCONNECT; keeps
               the session the server gave (TLS 1.3: its ticket)
  resume       the same, offering the last session kept (and keeping the new one it gets, so
               resumptions chain)
  sleep:N      wait N seconds
  until:FILE   wait (up to 300 s) until FILE exists: the shell's signal to go on
Each connect or resume prints one line: "STEP resumed=0|1 connack=HEX" when the server answered
CONNECT, or "STEP refused WHY" when the TLS handshake or the connection failed.
"""
import os
import socket
import ssl
import sys
import time


def connect_packet(cid):
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def attempt(name, port, ctx, cid, session):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, session=session)
        s.sendall(connect_packet(cid))
        ack = b""
        while len(ack) < 4:
            chunk = s.recv(4 - len(ack))
            if not chunk:
                break
            ack += chunk
        if len(ack) < 4:
            print(f"{name} refused closed-before-connack resumed={int(s.session_reused)}",
                  flush=True)
            return session
        # the ticket arrives after the handshake: read a little more so that Python has it
        s.settimeout(0.3)
        try:
            s.recv(1)
        except (socket.timeout, ssl.SSLError, OSError):
            pass
        kept = s.session
        print(f"{name} resumed={int(s.session_reused)} connack={ack.hex()}", flush=True)
        try:
            s.sendall(b"\xe0\x00")
            s.close()
        except OSError:
            pass
        return kept
    except (ssl.SSLError, OSError) as e:
        print(f"{name} refused {type(e).__name__}: {e}", flush=True)
        return session
    finally:
        raw.close()


def main():
    port, ca, cert, key, cid = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.check_hostname = False
    session = None
    for step in sys.argv[6:]:
        if step == "connect":
            session = attempt("connect", port, ctx, cid.encode(), None)
        elif step == "resume":
            session = attempt("resume", port, ctx, cid.encode(), session)
        elif step.startswith("sleep:"):
            time.sleep(float(step[6:]))
        elif step.startswith("until:"):
            for _ in range(3000):
                if os.path.exists(step[6:]):
                    break
                time.sleep(0.1)
        else:
            sys.exit(f"unknown step {step}")


if __name__ == "__main__":
    main()
