"""NameEntry: one container endpoint's DNS names on a global network, as its node publishes
them in the cluster record (netbay.cluster.names) and every other node's DNS answers them
(the store's remote names, dns/records.py).

A module of its own, free of gRPC: the store and the DNS server import it, and importing
netbay.cluster loads aetcd.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address


@dataclass(frozen=True, order=True)
class NameEntry:
    name: str  # the container's name
    aliases: tuple[str, ...]  # its other names on the network (hostname, --network-alias)
    address: IPv4Address
    container: str  # the container's id
    node: str = ""  # the id of the node it runs on: filled when read from the record
