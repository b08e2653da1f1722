#!/usr/bin/env python3
"""Publishes numbered messages over MQTT 3.1.1 + TLS and writes down each one the server
acknowledged, for the hub's crash tests.

usage: mqtt_count_pub.py PORT CA CERT KEY CLIENT_ID TOPIC QOS FIRST LAST WINDOW ACKED_FILE

Connects with a clean session, then publishes the payloads "FIRST" .. "LAST" to TOPIC at QOS
(1 or 2), keeping up to WINDOW of them unacknowledged. Each message the server acknowledged
(QoS 1: PUBACK; QoS 2: PUBREC, after which it answers PUBREL) is appended to ACKED_FILE as one
line, its number, at once (flushed). Exits when every message is acknowledged (and, at QoS 2,
completed), or when the connection ends (the server was killed); prints one line:
"acked=N sent=N end=done|lost".
"""
import socket
import ssl
import sys

from mqtt_wire import packet, packets


def main():
    port, ca, cert, key, cid, topic = sys.argv[1:7]
    qos, first, last, window = (int(x) for x in sys.argv[7:11])
    acked_file = sys.argv[11]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=10))
    c = cid.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(c).to_bytes(2, "big") + c
    sock.sendall(packet(0x10, body))
    buf = b""
    t = topic.encode()
    pending = {}  # packet id -> message number, not yet acknowledged
    releasing = set()  # QoS 2: PUBREL sent, PUBCOMP awaited
    nxt, acked, sent, end = first, 0, 0, "lost"
    connected = False
    out = open(acked_file, "a")
    try:
        while True:
            if connected:
                while nxt <= last and len(pending) + len(releasing) < window:
                    pid = (nxt - first) % 65535 + 1
                    body = len(t).to_bytes(2, "big") + t + pid.to_bytes(2, "big") + str(nxt).encode()
                    sock.sendall(packet(0x30 | (qos << 1), body))
                    pending[pid] = nxt
                    nxt += 1
                    sent += 1
                if nxt > last and not pending and not releasing:
                    end = "done"
                    break
            data = sock.recv(65536)
            if not data:
                break
            buf += data
            got, buf = packets(buf)
            for p in got:
                kind = p[0] >> 4
                pid = int.from_bytes(p[2:4], "big") if len(p) >= 4 else 0
                if kind == 2:
                    if p[3] != 0:
                        print("refused connack=%02x" % p[3])
                        return 1
                    connected = True
                elif kind in (4, 5) and pid in pending:  # PUBACK, PUBREC
                    out.write("%d\n" % pending.pop(pid))
                    out.flush()
                    acked += 1
                    if kind == 5:
                        sock.sendall(packet(0x62, pid.to_bytes(2, "big")))
                        releasing.add(pid)
                elif kind == 7:  # PUBCOMP
                    releasing.discard(pid)
    except (OSError, ssl.SSLError):
        pass
    print("acked=%d sent=%d end=%s" % (acked, sent, end))
    return 0


if __name__ == "__main__":
    sys.exit(main())
