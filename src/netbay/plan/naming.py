"""Names of the kernel objects netbay makes, derived from record ids (15-char IFNAMSIZ limit)."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address

DEFAULT_BRIDGE_DEVICE = "netbay0"


def bridge_device(network_id: str) -> str:
    return f"br-{network_id[:12]}"


def host_veth(endpoint_id: str) -> str:
    return f"nbv{endpoint_id[:12]}"


def mac_for(address: IPv4Address) -> str:
    """Docker's classic scheme: 02:42 then the IPv4 bytes; stable across restarts."""
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed)


def next_ifname(taken: Iterable[str], prefix: str = "eth") -> str:
    used = set(taken)
    n = 0
    while f"{prefix}{n}" in used:
        n += 1
    return f"{prefix}{n}"
