"""The addresses a netbay container asked for on each network (`--ip`, `--ip6`): Docker's
IPAMConfig, which `inspect` shows beside the addresses the container got. Kept in the
container's config under STATIC, {network id: {"IPv4Address", "IPv6Address"}}; only a
container that asks pays the write."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from ..store.base import Store

STATIC = "static"


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
            asked = {"IPv4Address": str(ip) if ip else "", "IPv6Address": str(ip6) if ip6 else ""}
            static[network_id] = {k: v for k, v in asked.items() if v}
        store.update_container(container_id, config={**current.config, STATIC: static})
