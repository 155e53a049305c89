"""Output for people (aligned tables, relative times) and for scripts (JSON, Go-style templates)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_FIELD = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def template(fmt: str, item: Mapping[str, Any]) -> str:
    """The part of Go's text/template people use with docker: {{.Field}}, {{.A.B}}, {{json .X}}."""
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")

    def value(match: re.Match[str]) -> str:
        current: Any = item
        for part in filter(None, match.group(2).split(".")):
            current = current.get(part, "") if isinstance(current, Mapping) else ""
        if match.group(1) or isinstance(current, (dict, list)):
            return json.dumps(current)
        return str(current)

    return _FIELD.sub(value, fmt)


def emit(
    items: Sequence[Mapping[str, Any]],
    fmt: str | None,
    headers: Sequence[str],
    row: Any,
) -> None:
    """Print items as a table (default), one JSON object per line (json), or a template."""
    if fmt == "json":
        for item in items:
            print(json.dumps(item))
    elif fmt and fmt != "table":
        for item in items:
            print(template(fmt, item))
    else:
        print(table(headers, [row(i) for i in items]))


def inspected(found: Sequence[Mapping[str, Any]], fmt: str | None) -> None:
    """What `inspect` found: each through a --format template, else one JSON array."""
    if fmt:
        for item in found:
            print(template(fmt, item))
    else:
        dump_json(found)


def dump_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=4)
    sys.stdout.write("\n")


def ago(stamp: str) -> str:
    """'2026-11-27T21:09:46.6329Z' -> '3 minutes ago'."""
    try:
        when = datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return stamp
    return f"{duration((datetime.now(UTC) - when).total_seconds())} ago"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "Less than a second" if seconds < 1 else f"{seconds} second{'s' if seconds != 1 else ''}"


def each(refs: Sequence[str], action: Any) -> int:
    """Docker's way with several names: act on each, print it or its error, go on; 1 if any
    failed."""
    from ..errors import NetbayError

    failed = 0
    for ref in refs:
        try:
            action(ref)
            print(ref)
        except NetbayError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            failed = 1
    return failed
