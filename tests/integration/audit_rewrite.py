#!/usr/bin/env python3
"""The attacker's tool for the audit tests: rewrites an audit record in a keyfleet SQLite store
and recomputes the hash chain from it to the end, as someone who can write the database can.

usage: audit_rewrite.py DB SEQ NEW_DETAIL_JSON

The hash is keyfleet's (store.c kf_audit_hash): SHA-256 over "keyfleet-audit-v1", seq, time_ms,
actor, action, object, detail and prev_hash, each preceded by its length as 8 big-endian bytes
(integers as 8 big-endian bytes). The append-only triggers are dropped for the edit and put back.
"""
import hashlib
import sqlite3
import struct
import sys


def field(b):
    return struct.pack(">Q", len(b)) + b


def record_hash(seq, time_ms, actor, action, obj, detail, prev):
    h = hashlib.sha256()
    h.update(field(b"keyfleet-audit-v1"))
    h.update(field(struct.pack(">q", seq)))
    h.update(field(struct.pack(">q", time_ms)))
    for s in (actor, action, obj, detail, prev):
        h.update(field(s.encode()))
    return h.hexdigest()


def main():
    db, seq, detail = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    con = sqlite3.connect(db)
    triggers = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'"
    ).fetchall()
    for name, _ in triggers:
        con.execute(f"DROP TRIGGER {name}")
    con.execute("UPDATE audit SET detail = ? WHERE seq = ?", (detail, seq))
    rows = con.execute(
        "SELECT seq, time_ms, actor, action, object, detail, prev_hash FROM audit "
        "WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
    prev = rows[0][6]
    for s, t, actor, action, obj, d, _ in rows:
        h = record_hash(s, t, actor, action, obj, d, prev)
        con.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, s))
        prev = h
    for _, sql in triggers:
        con.execute(sql)
    con.commit()
    print(prev)


if __name__ == "__main__":
    main()
