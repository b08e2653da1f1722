#!/usr/bin/env python3
"""Fails on an include cycle between keyfleet's modules.

usage: check_includes.py [SRC_DIR]

A module is a source file and its header (src/server/hub.c and hub.h are server/hub). A module
includes another when any of its files includes the other's header. The modules of one group
below are taken as one (they are one layer's parts and may use one another); between the rest,
and between groups, the includes must go one way: a cycle is printed, with an include that
makes it, and the exit status is 1.
"""
import os
import re
import sys

# Parts of one layer, counted as one module.
GROUPS = {
    "common/pki": ("common/pki_", "common/ossl"),
    "server/store": ("server/store",),
}


def unit(mod):
    for name, prefixes in GROUPS.items():
        if any(mod == p or mod.startswith(p) for p in prefixes):
            return name
    return mod


def graph(root):
    g, where = {}, {}
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(d, f)
            mod = unit(os.path.splitext(os.path.relpath(path, root))[0])
            with open(path, errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    m = re.match(r'\s*#\s*include\s+"([^"]+)\.h"', line)
                    if not m:
                        continue
                    to = unit(m.group(1))
                    if to != mod:
                        g.setdefault(mod, set()).add(to)
                        where.setdefault((mod, to), f"{os.path.relpath(path, root)}:{n}")
    return g, where


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
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    g, where = graph(root)
    found = cycles(g)
    for comp in found:
        inside = [f"  {a} -> {b} ({where[(a, b)]})" for a in comp for b in sorted(g.get(a, ())) if b in comp]
        print("include cycle among " + ", ".join(comp) + ":\n" + "\n".join(inside))
    if found:
        return 1
    print(f"no include cycles among {len(g)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
