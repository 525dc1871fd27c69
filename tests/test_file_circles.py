#!/usr/bin/env python3
"""test_file_circles - no more than three files of a daemon call each other
in a circle (issue 12's shape: the loop and its handlers may know each
other; the rest stands above or below).

Reads the built objects with nm: file A calls file B when A uses a symbol
(function or data) that B defines. The strongly connected components of
that graph are the circles; each must have at most MAX files. Prints the
graph and the circles either way, so a failure says which files to untie.

usage: test_file_circles.py SOURCE_DIR OBJECT_DIR [MAX]
"""
import glob
import os
import subprocess
import sys


def graph(source_dir, object_dir):
    defined, used = {}, {}
    for path in sorted(glob.glob(os.path.join(source_dir, "*.c"))):
        name = os.path.basename(path)[:-2]
        obj = os.path.join(object_dir, name + ".c.o")
        if not os.path.exists(obj):
            sys.exit(f"no object for {path}: {obj}")
        listing = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
        used[name] = set()
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] in "TDBR":
                defined[fields[2]] = name
            elif len(fields) == 2 and fields[0] == "U":
                used[name].add(fields[1])
    return {name: sorted({defined[s] for s in symbols if defined.get(s, name) != name})
            for name, symbols in used.items()}


def circles(edges):
    """Tarjan's strongly connected components, without recursion."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, next_edge = work.pop()
            if next_edge == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            for i in range(next_edge, len(edges[node])):
                other = edges[node][i]
                if other not in index:
                    work.append((node, i + 1))
                    work.append((other, 0))
                    break
                if other in on_stack:
                    low[node] = min(low[node], index[other])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return [c for c in found if len(c) > 1]


def main():
    source_dir, object_dir = sys.argv[1], sys.argv[2]
    most = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    edges = graph(source_dir, object_dir)
    for name in sorted(edges):
        print(f"{name:10} -> {' '.join(edges[name])}")
    found = circles(edges)
    for circle in found:
        print(f"circle of {len(circle)}: {' '.join(circle)}")
    too_big = [c for c in found if len(c) > most]
    if too_big:
        print(f"FAIL: circles of more than {most} files: {too_big}")
        return 1
    print(f"ok: no circle of more than {most} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
