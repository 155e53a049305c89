"""Names of the kernel objects netbay makes, derived from record ids (15-char IFNAMSIZ limit)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

DEFAULT_BRIDGE_DEVICE = "netbay0"
IFNAME_RULE = "1-15 characters of ASCII letters, digits, '_', '-' and '.'"
# Stricter than the kernel (which takes anything but '/', ':', whitespace, '.' and '..'):
# every name netbay handles may end up in an nftables set, where '+' or '*' would be a
# wildcard and quotes would break the ruleset. The only interface-name rule in netbay.
# cni/plugin.py runs without netbay and keeps a copy; tests/unit/test_ifname.py holds them equal.
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def valid_ifname(name: str) -> bool:
    return _IFNAME.fullmatch(name) is not None and name not in (".", "..")


def bridge_device(network_id: str) -> str:
    return f"br-{network_id[:12]}"


def host_veth(endpoint_id: str) -> str:
    return f"nbv{endpoint_id[:12]}"


def mac_for(address: IPv4Address | IPv6Address | None) -> str | None:
    """Docker's classic scheme: 02:42 then the IPv4 bytes; stable across restarts. An
    IPv6-only endpoint's: 02:42 then the last four bytes of its IPv6 address (unique on its
    /64 for the lowest-free addresses netbay picks). None for no address: the kernel's."""
    if address is None:
        return None
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed[-4:])


def next_ifname(taken: Iterable[str], prefix: str = "eth") -> str:
    used = set(taken)
    n = 0
    while f"{prefix}{n}" in used:
        n += 1
    return f"{prefix}{n}"


def link_local(mac: str) -> IPv6Address:
    """The EUI-64 link-local address the kernel gives a link of MAC (addr_gen_mode 0, as
    netbay sets it on a container's IPv6 interface): fe80:: and the MAC with ff:fe in its
    middle and the universal/local bit flipped."""
    raw = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([raw[0] ^ 0x02]) + raw[1:3] + b"\xff\xfe" + raw[3:6]
    return IPv6Address(b"\xfe\x80" + bytes(6) + eui)
