"""A request body decoded (one JSON object), then checked against the shape its route
declares before anything reads it: a wrong type anywhere is one 400 line naming the field's
path and its value, worded like the Go decoder's error dockerd answers with ("invalid JSON:
json: cannot unmarshal string into Go struct field CreateRequest.IPAM of type network.IPAM").

As in Go: unknown fields are ignored, and a field that is null is as if absent. Unlike Go,
null is refused as an item of an array or a value of a map (Go would read "" or 0 there).
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from ..errors import ConfigError, NetbayError

_INT64 = 1 << 63
_EXPECTED = {str: "string", bool: "boolean", int: "integer", dict: "object", list: "array"}


class MapOf:
    """An object whose keys are free (Labels, Options) and whose values all have SHAPE."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape


# a type (str, bool, int), an object's known fields, [the shape of every item], or MapOf
Shape: TypeAlias = type | dict[str, "Shape"] | list["Shape"] | MapOf


def _kind(value: object) -> str:
    """What the JSON value is, in Go's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class InvalidJson(NetbayError):
    """A request body that is not JSON: dockerd's "invalid JSON: <the decoder's error>"."""

    http_status = 400


class JsonTypeError(ConfigError):
    """A field of the wrong JSON type (FIELD: its path, "" for the body itself)."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(field or "request body", value, f"expected {expected}")
        where = f"field {field}" if field else "the request body"
        shown = "" if value is None else " " + _shown(value)
        self.args = (f"invalid JSON: cannot unmarshal {_kind(value)}{shown} "
                     f"into {where} of type {expected}",)


def check(value: Any, shape: Shape, field: str = "") -> None:
    """Raise JsonTypeError where VALUE (at path FIELD) does not have SHAPE."""
    if isinstance(shape, dict):
        _expect(value, dict, field)
        for key, sub in shape.items():
            if value.get(key) is not None:
                check(value[key], sub, f"{field}.{key}" if field else key)
    elif isinstance(shape, list):
        _expect(value, list, field)
        for index, item in enumerate(value):
            check(item, shape[0], f"{field}[{index}]")
    elif isinstance(shape, MapOf):
        _expect(value, dict, field)
        for key, item in value.items():
            check(item, shape.shape, f"{field}.{key}")
    else:
        _expect(value, shape, field)


def _expect(value: Any, kind: type, field: str) -> None:
    if kind is int:  # JSON has numbers; Go's int is a 64-bit integer, never a bool or 1.5
        fits = isinstance(value, int) and not isinstance(value, bool) \
            and -_INT64 <= value < _INT64
    else:
        fits = isinstance(value, kind)
    if not fits:
        raise JsonTypeError(field, value, _EXPECTED[kind])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_body(raw: bytes) -> dict[str, Any] | None:
    """A request body: nothing, or one JSON object."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidJson(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise JsonTypeError("", body, "object")
    return body
