"""Reading netbay's topology drawings back (text tree and Graphviz DOT), for tests."""

from __future__ import annotations

import re
from collections import defaultdict

_GLYPHS = re.compile(r"^[\s│├└─]*")
_NODE = re.compile(r'^\s*"(?P<kind>[a-z]+):(?P<name>[^"]+)" \[')
_HOST = re.compile(r'^\s*"host" \[')
_CLUSTER = re.compile(r'^\s*subgraph "cluster:network:(?P<name>[^"]+)" \{')
_EDGE = re.compile(r'^\s*"(?P<a>[^"]+)" -- "(?P<b>[^"]+)"')


def text_objects(text: str) -> dict[str, set[str]]:
    """kind -> names, from the lines of `netbay topology` ("kind name ..." after the tree)."""
    found: dict[str, set[str]] = defaultdict(set)
    section = ""
    for line in text.splitlines():
        if not line.startswith(("│", "├", "└", " ")):
            section = line.split()[0] if line.strip() else section
            continue
        words = _GLYPHS.sub("", line).split()
        if len(words) < 2 or words[0] == "!":
            continue
        kind, name = words[0], words[1]
        if kind == "port":
            name = f"{words[1]} {words[2]}"
        if section == "containers" and kind not in ("container",):
            continue
        found[kind].add(name)
    return dict(found)


def dot_objects(dot: str) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """(kind -> names of nodes and network clusters, edges as (node id, node id))."""
    found: dict[str, set[str]] = defaultdict(set)
    edges = set()
    for line in dot.splitlines():
        if m := _CLUSTER.match(line):
            found["network"].add(m["name"])
        elif m := _EDGE.match(line):
            edges.add((m["a"], m["b"]))
        elif m := _NODE.match(line):
            found[m["kind"]].add(m["name"])
        elif _HOST.match(line):
            found["host"].add("host")
    return dict(found), edges
