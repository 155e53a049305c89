"""The addresses a netbay container asked for on each network (`--ip`, `--ip6`): Docker's
IPAMConfig, which `inspect` shows beside the addresses the container got. Kept in the
container's config under STATIC, {network id: {"IPv4Address", "IPv6Address"}}: in the
container's first record write for the networks it is created on (asked_of), by a write of
its own for `network connect` and `disconnect` (note_static)."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

from ..store.base import Store

STATIC = "static"


def _asked(ip: IPv4Address | None, ip6: IPv6Address | None) -> dict[str, str]:
    both = {"IPv4Address": str(ip) if ip else "", "IPv6Address": str(ip6) if ip6 else ""}
    return {k: v for k, v in both.items() if v}


def asked_of(requests: Iterable[tuple[str, IPv4Address | None, IPv6Address | None]]
             ) -> dict[str, dict[str, str]]:
    """STATIC's value for REQUESTS ((network id, ip, ip6) each): the networks with an
    address asked for."""
    return {network_id: _asked(ip, ip6) for network_id, ip, ip6 in requests if ip or ip6}


def note_static(store: Store, container_id: str, network_id: str,
                ip: IPv4Address | None, ip6: IPv6Address | None) -> None:
    """Record what the container asked of the network; none asked: forget it."""
    with store.transaction():
        current = store.find_container(container_id)
        if current is None:
            return
        static = dict(current.config.get(STATIC) or {})  # type: ignore[call-overload]
        if ip is None and ip6 is None:
            if static.pop(network_id, None) is None:
                return
        else:
            static[network_id] = _asked(ip, ip6)
        store.update_container(container_id, config={**current.config, STATIC: static})
