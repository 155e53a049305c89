"""Docker's `filters` query parameter for network lists."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..model import Network

FILTER_KEYS = ("driver", "id", "label", "name", "scope", "type", "dangling")


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """Accepts both the map form {"name": {"x": true}} and the list form {"name": ["x"]}."""
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
        if key not in FILTER_KEYS:
            raise ConfigError("filter", key, f"unknown filter (known: {', '.join(FILTER_KEYS)})")
        out[key] = list(values.keys() if isinstance(values, dict) else values)
    return out


def network_matches(
    network: Network, filters: dict[str, list[str]], in_use: Callable[[Network], bool]
) -> bool:
    def any_of(key: str, test: Callable[[str], bool]) -> bool:
        return key not in filters or any(test(v) for v in filters[key])

    def label(value: str) -> bool:
        key, sep, want = value.partition("=")
        return key in network.labels and (not sep or network.labels[key] == want)

    def kind(value: str) -> bool:
        if value not in ("builtin", "custom"):
            raise ConfigError("filter type", value, "expected builtin or custom")
        return (value == "builtin") == network.builtin

    def dangling(value: str) -> bool:
        want = value.lower() in ("1", "true")
        return (not network.builtin and not in_use(network)) == want

    checks: list[tuple[str, Any]] = [
        ("driver", lambda v: network.driver == v),
        ("id", lambda v: network.id.startswith(v)),
        ("name", lambda v: v in network.name),
        ("scope", lambda v: network.scope == v),
        ("label", label),
        ("type", kind),
        ("dangling", dangling),
    ]
    return all(any_of(key, test) for key, test in checks)
