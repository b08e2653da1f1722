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
    opened = failed = 0
    counts = {"closed": 0, "closed_1s": 0}
    started = {}
    last = {"close": 0.0}

    def reap(timeout, since):
        """Counts the connections the server closed; called while opening too, so that a close
        is timed when it happens, not when the opening is over."""
        for key, _ in sel.select(timeout=timeout):
            s = key.fileobj
            try:
                data = s.recv(1)
            except OSError as e:
                data = b"" if e.errno in (errno.ECONNRESET, errno.EPIPE) else None
            if data == b"":
                now = time.time()
                counts["closed"] += 1
                if now - started[s] <= 1.0:
                    counts["closed_1s"] += 1
                if since is not None:
                    last["close"] = max(last["close"], now - since)
                sel.unregister(s)
                del started[s]
                s.close()

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
        if opened % 32 == 0:
            reap(0, None)
    all_open = time.time()
    if os.environ.get("READY"):
        open(os.environ["READY"], "w").close()
    end = all_open + seconds
    while started and time.time() < end:
        reap(0.1, all_open)
    closed, closed_1s, last_close = counts["closed"], counts["closed_1s"], last["close"]
    print(f"opened={opened} failed={failed} closed_1s={closed_1s} closed={closed} "
          f"open_end={len(started)} last_close_s={last_close:.1f}", flush=True)
    for s in list(started):
        s.close()


if __name__ == "__main__":
    main()
