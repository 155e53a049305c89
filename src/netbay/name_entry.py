"""NameEntry: one container endpoint's DNS names on a global network, as its node publishes
them in the cluster record (netbay.cluster.names) and every other node's DNS answers them
(the store's remote names, dns/records.py).

A module of its own, free of gRPC: the store and the DNS server import it, and importing
netbay.cluster loads aetcd.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering
from ipaddress import IPv4Address, IPv6Address


@total_ordering
@dataclass(frozen=True)
class NameEntry:
    """Ordered by its fields in turn, as a tuple of them; an entry without ADDRESS6 comes
    before the same entry with one (None and an address never compare)."""

    name: str  # the container's name
    aliases: tuple[str, ...]  # its other names on the network (hostname, --network-alias)
    address: IPv4Address
    container: str  # the container's id
    node: str = ""  # the id of the node it runs on: filled when read from the record
    address6: IPv6Address | None = None  # its IPv6 address on a dual-stack network

    def _order(self) -> tuple[str, tuple[str, ...], IPv4Address, str, str, int]:
        return (self.name, self.aliases, self.address, self.container, self.node,
                -1 if self.address6 is None else int(self.address6))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, NameEntry):
            return NotImplemented
        return self._order() < other._order()
