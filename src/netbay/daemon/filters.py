"""Docker's `filters` query parameter for network lists and prunes, with moby's semantics:
`driver` and `scope` match exactly, `name` and `id` match exactly or as a regular expression
searched anywhere, every `label` must match (and no `label!` may), `until` keeps networks
created at or before a time (a Go duration ago, a unix timestamp or an RFC 3339 date)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import ConfigError
from ..model import Network

FILTER_KEYS = ("driver", "id", "label", "name", "scope", "type", "dangling")
PRUNE_FILTER_KEYS = ("label", "label!", "until")


def parse_filters(raw: str | None, accepted: tuple[str, ...] = FILTER_KEYS) -> dict[str, list[str]]:
    """Accepts both the map form {"name": {"x": true}} and the list form {"name": ["x"]};
    checks keys and the values of `type`, `dangling` and `until` before anything is matched."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError("filters", raw, "not JSON") from None
    if not isinstance(data, dict):
        raise ConfigError("filters", raw, "expected an object")
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if key not in accepted:
            raise ConfigError("filter", key, f"unknown filter (known: {', '.join(accepted)})")
        if not isinstance(values, dict | list):
            raise ConfigError("filter", key, "expected a list or an object of values")
        out[key] = [str(v) for v in (values.keys() if isinstance(values, dict) else values)]
    for value in out.get("type", []):
        if value not in ("builtin", "custom"):
            raise ConfigError("filter type", value, "expected builtin or custom")
    if len(out.get("dangling", [])) > 1:
        raise ConfigError("filter dangling", out["dangling"], "give one value")
    for value in out.get("dangling", []):
        if value.lower() not in ("1", "true", "0", "false"):
            raise ConfigError("filter dangling", value, "expected true (or 1) or false (or 0)")
    if len(out.get("until", [])) > 1:
        raise ConfigError("filter until", out["until"], "give one value")
    for value in out.get("until", []):
        parse_until(value)
    return out


def network_matches(
    network: Network, filters: dict[str, list[str]], in_use: Callable[[Network], bool]
) -> bool:
    def any_of(key: str, test: Callable[[str], bool]) -> bool:
        return key not in filters or any(test(v) for v in filters[key])

    def dangling(value: str) -> bool:
        want = value.lower() in ("1", "true")
        return (not network.builtin and not in_use(network)) == want

    def until(value: str) -> bool:
        return created_at(network) <= parse_until(value)

    checks: list[tuple[str, Any]] = [
        ("driver", lambda v: network.driver == v),
        ("id", lambda v: pattern_matches(v, network.id)),
        ("name", lambda v: pattern_matches(v, network.name)),
        ("scope", lambda v: network.scope == v),
        ("type", lambda v: (v == "builtin") == network.builtin),
        ("dangling", dangling),
        ("until", until),
    ]
    if "label" in filters and not labels_match(filters["label"], network.labels):
        return False
    if "label!" in filters and labels_match(filters["label!"], network.labels):
        return False
    return all(any_of(key, test) for key, test in checks)


def pattern_matches(pattern: str, value: str) -> bool:
    """moby's Args.Match: equal, or the pattern (a regular expression) found in the value."""
    if pattern == value:
        return True
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False


def labels_match(wanted: list[str], labels: Any) -> bool:
    """moby's MatchKVList: every KEY or KEY=VALUE term holds (none given: true)."""
    for term in wanted:
        key, sep, value = term.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def created_at(network: Network) -> datetime:
    try:
        return datetime.fromisoformat(network.created)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIX_TIME = re.compile(r"-?\d+(?:\.\d{0,20})?")


def _go_duration(value: str) -> timedelta | None:
    sign, body = (-1, value[1:]) if value[:1] == "-" else (1, value.lstrip("+"))
    if not body or body == "0":
        return timedelta(0) if body == "0" else None
    pos, seconds = 0, 0.0
    while pos < len(body):
        match = _DURATION.match(body, pos)
        if not match:
            return None
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return timedelta(seconds=sign * seconds)


def parse_until(value: str, now: datetime | None = None) -> datetime:
    """moby's timestamp.Parse: "10m" (that long ago), "1700000000[.5]", "2024-05-01",
    "2024-05-01T12:00:00Z" or with an offset; a time without a zone is local time."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if not text:
        raise ConfigError("filter until", value, "empty")
    duration = _go_duration(text) if text != "0" else None
    if duration is not None:
        return now - duration
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is not None and "-" in text:
        return parsed if parsed.tzinfo else parsed.astimezone()
    if _UNIX_TIME.fullmatch(text):
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    raise ConfigError(
        "filter until", value, "expected a duration (10m, 1h30m), a unix timestamp or a date"
    )
