#!/usr/bin/env python3
"""Opens many TCP connections that never send a byte, and watches the server close them.

usage: tcp_hold.py PORT COUNT SECONDS SRC [SRC ...]

Opens COUNT connections to 127.0.0.1:PORT, from the source addresses SRC in turn, as fast as it
can, and holds each until the server closes it or SECONDS have passed. Writes the file named by
READY in the environment (if set) once all are opened. Prints one line: opened=N (connect
succeeded) failed=N (connect refused or timed out) closed_1s=N (closed by the server within a
second of opening: refused by a limit) closed=N (closed by the server at all) open_end=N (still
open at the end) last_close_s=X (when, after the last was opened, the server closed the last).
"""
import errno
import os
import selectors
import socket
import sys
import time


def main():
    port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    srcs = sys.argv[4:]
    sel = selectors.DefaultSelector()
    opened = failed = closed = closed_1s = 0
    started = {}
    for i in range(count):
        s = socket.socket()
        s.bind((srcs[i % len(srcs)], 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            failed += 1
            s.close()
            continue
        s.setblocking(False)
        opened += 1
        started[s] = time.time()
        sel.register(s, selectors.EVENT_READ)
    all_open = time.time()
    if os.environ.get("READY"):
        open(os.environ["READY"], "w").close()
    last_close = 0.0
    end = all_open + seconds
    while started and time.time() < end:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                data = s.recv(1)
            except OSError as e:
                data = b"" if e.errno in (errno.ECONNRESET, errno.EPIPE) else None
            if data == b"":
                closed += 1
                now = time.time()
                if now - started[s] <= 1.0:
                    closed_1s += 1
                last_close = max(last_close, now - all_open)
                sel.unregister(s)
                del started[s]
                s.close()
    print(f"opened={opened} failed={failed} closed_1s={closed_1s} closed={closed} "
          f"open_end={len(started)} last_close_s={last_close:.1f}", flush=True)
    for s in list(started):
        s.close()


if __name__ == "__main__":
    main()
