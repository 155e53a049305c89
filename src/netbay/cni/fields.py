"""Small typed readers of CNI configuration fields: a wrong type or value is a CniError
naming the field (code 7, or 2 for what netbay does not support). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import AddressValueError, NetmaskValueError, ip_address, ip_network
from typing import Any

from ..model import IPAddress, IPNetwork
from .plugin import INVALID_CONFIG, UNSUPPORTED_FIELD, CniError


def read_bool(section: Mapping[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected true or false", repr(value))
    return value


def read_int(section: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CniError(
            INVALID_CONFIG, f"invalid {key}: expected a number {low}-{high}", repr(value)
        )
    return value


def read_str(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected a string", repr(value))
    return value


def read_ip(key: str, value: Any) -> IPAddress:
    """An address of either family (a range's gateway, start or end; a route's gateway)."""
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected an IP address", repr(value))
    try:
        return ip_address(value)
    except ValueError:
        raise CniError(INVALID_CONFIG, f"invalid {key}: not an IP address", value) from None


def read_subnet(key: str, value: Any) -> IPNetwork:
    """A CIDR of either family."""
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected a CIDR", repr(value))
    try:
        return ip_network(value, strict=False)
    except (AddressValueError, NetmaskValueError, ValueError):
        raise CniError(INVALID_CONFIG, f"invalid {key}: not a CIDR", value) from None


def refuse_unsupported(section: Mapping[str, Any], keys: tuple[str, ...], why: str) -> None:
    for key in keys:
        value = section.get(key)
        if value not in (None, False, 0, "", [], {}):
            raise CniError(UNSUPPORTED_FIELD, f"unsupported field {key}: {value!r}", why)




def read_strings(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected a list of strings", repr(value))
    return tuple(value)
