#!/usr/bin/env python3
"""Fails on an include that points up a layer, across front ends, or round a cycle.

usage: check_includes.py [DIR ...]     (default: the repository's src and include)

Every file under SRC_DIR belongs to the layer of its folder (the longest folder in LAYERS that
holds it), and may include only the headers of the layers LAYERS lists for it: its own and those
below. The two front ends (server/provision, server/hub) never include each other; only the
daemon's own files (server/*.c beside keyfleetd.c) see both. The public headers of libkeyfleet
(include/keyfleet/) count as the layer "keyfleet".

A module is a source file and its header (src/server/hub/hub.c and hub.h are server/hub/hub).
Within a layer the includes between modules must still go one way: a cycle is printed, with an
include that makes it. The modules of one group in GROUPS are taken as one (one module's parts).

Exit status 1 on any finding, each printed as FILE:LINE and what is wrong; 0 otherwise.
"""
import os
import re
import sys

STORE = ("common", "server/store")
CA = STORE + ("server/ca",)
OPS = CA + ("server/ops",)
NET = ("common", "server/net")
FRONT = OPS + ("server/net",)
# A front end's section of keyfleet.conf (its struct and its keys) sits below the CA layer, whose
# config.h holds the whole file: it sees only common and net's limit structs, never the front end.
SECTION = ("common", "server/net")

# layer -> the layers its files may include (its own first). Order does not matter.
LAYERS = {
    "keyfleet": ("keyfleet",),
    "common": ("common", "keyfleet"),
    "server/store": STORE,
    "server/ca": CA + ("server/provision/conf", "server/hub/conf"),
    "server/ops": OPS,
    "server/net": NET,
    "server/provision/conf": ("server/provision/conf",) + SECTION,
    "server/hub/conf": ("server/hub/conf",) + SECTION,
    "server/provision": ("server/provision", "server/provision/conf") + FRONT,
    "server/hub": ("server/hub", "server/hub/conf") + FRONT,
    "server": ("server", "server/provision", "server/hub", "server/provision/conf",
               "server/hub/conf") + FRONT,
    "device": ("device", "common", "keyfleet"),
    "agent": ("agent", "device", "common", "keyfleet"),
    "sim": ("sim", "device", "common", "keyfleet"),
    "cli": ("cli",) + OPS,
    "release": ("release", "common", "keyfleet"),
}

# Parts of one module, counted as one in the cycle check.
GROUPS = {
    "common/pki": ("common/pki_", "common/ossl"),
    # the engine and its back ends: store.c calls a back end through backend.h, which builds on
    # store.h's types
    "server/store/store": ("server/store/store", "server/store/backend", "server/store/sqlite"),
    # the hub's API and the internals its files share
    "server/hub/hub": ("server/hub/hub", "server/hub/hub_internal"),
    # the daemon: its subsystem table makes the workers, which read what the daemon shares
    "server/daemon": ("server/daemon", "server/worker"),
}


def layer_of(mod):
    """The layer of a module path such as server/hub/hub (None: in no layer)."""
    best = None
    for name in LAYERS:
        if (mod.startswith(name + "/") or mod == name) and (best is None or len(name) > len(best)):
            best = name
    return best


def unit(mod):
    for name, prefixes in GROUPS.items():
        if any(mod == p or mod.startswith(p) for p in prefixes):
            return name
    return mod


def scan(root):
    """Yields (file relative to root, line number, module of the file, module included)."""
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(d, f)
            rel = os.path.relpath(path, root)
            mod = os.path.splitext(rel)[0]
            with open(path, errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    m = re.match(r'\s*#\s*include\s+"([^"]+)\.h"', line)
                    if m:
                        yield rel, n, mod, m.group(1)


def cycles(g):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    roots = sys.argv[1:] or [os.path.join(top, "src"), os.path.join(top, "include")]
    bad = 0
    g, where = {}, {}
    files = set()
    for rel, n, mod, inc in (x for root in roots for x in scan(root)):
        files.add(rel)
        here, there = layer_of(mod), layer_of(inc)
        if here is None:
            print(f"{rel}: in no layer (add its folder to LAYERS in {os.path.basename(__file__)})")
            bad += 1
        elif there is None or there not in LAYERS[here]:
            what = "a folder in no layer" if there is None else f"layer {there}"
            print(f"{rel}:{n}: includes {inc}.h, of {what}, which layer {here} may not include "
                  f"(it may include: {', '.join(LAYERS[here])})")
            bad += 1
        a, b = unit(mod), unit(inc)
        if a != b:
            g.setdefault(a, set()).add(b)
            where.setdefault((a, b), f"{rel}:{n}")
    for comp in cycles(g):
        inside = [f"  {a} -> {b} ({where[(a, b)]})" for a in comp for b in sorted(g.get(a, ()))
                  if b in comp]
        print("include cycle among " + ", ".join(comp) + ":\n" + "\n".join(inside))
        bad += 1
    if bad:
        return 1
    print(f"{len(files)} files in {len(LAYERS)} layers: every include points down its layers, "
          f"and none of {len(g)} modules is in a cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
