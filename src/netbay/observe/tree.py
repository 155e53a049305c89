"""The text tree `netbay topology` draws: (depth, text) items with box-drawing branches, and
the marks and summaries its lines share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Json = dict[str, Any]


def mark(problems: Sequence[str]) -> str:
    return "".join(f"  [! {p}]" for p in problems)


def addr_text(item: Json) -> str:
    parts = list(item.get("addresses") or [])
    if item.get("mtu"):
        parts.append(f"mtu {item['mtu']}")
    if "up" in item:
        parts.append("up" if item["up"] else "DOWN")
    return "  ".join(parts)


def tree(items: list[tuple[int, str]]) -> list[str]:
    """(depth, text) items, depth 0 = roots, drawn with box-drawing branches."""
    out = []
    for i, (depth, text) in enumerate(items):
        if depth == 0:
            out.append(text)
            continue
        prefix = ""
        for level in range(1, depth):
            rest = [d for d, _ in items[i + 1:]]
            more = next((d for d in rest if d <= level), 0) == level
            prefix += "│   " if more else "    "
        rest = [d for d, _ in items[i + 1:]]
        last = next((d for d in rest if d <= depth), 0) != depth
        out.append(prefix + ("└── " if last else "├── ") + text)
    return out
