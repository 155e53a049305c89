"""Addresses and subnets as the entry points receive them (text, of either family) parsed
into ipaddress objects, each refusal one line naming the field and the value.

Light on purpose: the CLI imports it for every `network create`, `run` and `connect`."""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)

from ..errors import ConfigError

_FAMILY = {None: "an IPv4 or IPv6", 4: "an IPv4", 6: "an IPv6"}


def subnet(field: str, value: object, version: int | None = None) -> IPv4Network | IPv6Network:
    """A subnet in CIDR form (10.1.0.0/24, fd12:3456::/64); host bits set are refused with
    the subnet meant, as dockerd does."""
    text = str(value)
    try:
        parsed = ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(field, value, f"not {_FAMILY[version]} subnet in CIDR form") from None
    if "%" in text:
        raise ConfigError(field, value, "a subnet has no zone index")
    if version is not None and parsed.version != version:
        raise ConfigError(field, value, f"not {_FAMILY[version]} subnet in CIDR form")
    if parsed.network_address != ip_address(text.partition("/")[0]):
        raise ConfigError(field, value, f"host bits set (the subnet is {parsed})")
    return parsed


def address(field: str, value: object, version: int | None = None) -> IPv4Address | IPv6Address:
    """One address of either family, or of VERSION's only."""
    try:
        parsed = ip_address(str(value))
    except ValueError:
        raise ConfigError(field, value, f"not {_FAMILY[version]} address") from None
    if version is not None and parsed.version != version:
        raise ConfigError(field, value, f"not {_FAMILY[version]} address")
    if isinstance(parsed, IPv6Address) and parsed.scope_id:
        raise ConfigError(field, value, "an address with a zone index (use a global one)")
    return parsed


def address4(field: str, value: object) -> IPv4Address:
    found = address(field, value, 4)
    assert isinstance(found, IPv4Address)
    return found


def address6(field: str, value: object) -> IPv6Address:
    found = address(field, value, 6)
    assert isinstance(found, IPv6Address)
    return found


def interface(field: str, value: object, version: int) -> IPv4Interface | IPv6Interface:
    """An address with its prefix length, as Docker's remote driver sends them."""
    text = str(value)
    try:
        parsed = ip_interface(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.version != version or "/" not in text:
        raise ConfigError(field, value, f"not {_FAMILY[version]} address with a prefix length")
    return parsed
