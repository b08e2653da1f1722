#!/usr/bin/env python3
"""Ends an MQTT-over-TLS connection at the TLS layer while TCP stays open, and says what came back.

usage: mqtt_close.py PORT CA CERT KEY MODE CLIENT_ID WILL_TOPIC

Connects (TLS 1.3, MQTT 3.1.1, persistent session off) as CLIENT_ID with a will on WILL_TOPIC,
waits for CONNACK, lets the connection go quiet for a second (so that the server's own record
layer may take it over), then, by MODE:
  close_notify  sends a TLS close_notify and keeps the TCP connection open; prints
                "answered close_notify" when the server's close_notify comes back (within 5 s),
                else "no answer"
  bad_record    writes an application-data record that cannot decrypt straight onto the socket;
                prints "alert: REASON" for the TLS alert the server answers with, else "no alert"
Then prints "tcp closed" or "tcp open" (whether the server closed TCP within 5 s).
"""
import os
import socket
import ssl
import sys
import time


def connect_packet(cid, will_topic):
    cid, wt, wp = cid.encode(), will_topic.encode(), b"gone"
    flags = 0x02 | 0x04  # clean session, will (QoS 0)
    body = b"\x00\x04MQTT" + bytes([4, flags]) + (60).to_bytes(2, "big")
    for part in (cid, wt, wp):
        body += len(part).to_bytes(2, "big") + part
    return bytes([0x10, len(body)]) + body


def tcp_closed(sock):
    sock.settimeout(5)
    end = time.time() + 5
    try:
        while time.time() < end:
            if not sock.recv(4096):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
    return False


def main():
    port, ca, cert, key, mode, cid, will = sys.argv[1:8]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    s = ctx.wrap_socket(raw)
    s.sendall(connect_packet(cid, will))
    ack = s.recv(4)
    if ack[:1] != b"\x20" or ack[3:4] != b"\x00":
        print("refused", ack.hex())
        return
    time.sleep(1)
    if mode == "close_notify":
        s.settimeout(5)
        try:
            plain = s.unwrap()  # sends close_notify, returns once the server's has come
            print("answered close_notify")
        except (ssl.SSLError, OSError) as e:
            print("no answer", e)
            return
        print("tcp closed" if tcp_closed(plain) else "tcp open")
    else:
        # 32 bytes of ciphertext the server's keys cannot open
        os.write(s.fileno(), b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        s.settimeout(5)
        try:
            got = s.recv(4096)
            print("no alert", got.hex())
        except ssl.SSLError as e:
            print("alert:", e.reason)
        except OSError as e:
            print("no alert", e)
        print("tcp closed" if tcp_closed(raw_of(s)) else "tcp open")


def raw_of(s):
    return socket.socket(fileno=socket.dup(s.fileno()))


if __name__ == "__main__":
    main()
