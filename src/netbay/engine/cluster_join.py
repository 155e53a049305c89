"""Joining the cluster: the settings a `cluster join` request makes (the node's address as
given, or taken from the interface named), and the address of a node that gave neither,
followed at every sync."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError, NetbayError
from .overlay import OverlayPlane

if TYPE_CHECKING:
    from ..cluster import ClusterNode, JoinSettings

log = logging.getLogger("netbay.cluster")


class AddressKernel(Protocol):
    def addresses_in(self, path: Path, ifname: str) -> set[IPv4Interface] | None: ...


@dataclass(frozen=True)
class JoinRequest:
    etcd: tuple[str, ...]
    name: str | None = None  # default: the hostname
    address: IPv4Address | None = None
    interface: str | None = None  # the node address is this link's first IPv4 address
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    ttl: int | None = None
    grace: int | None = None


def join_settings(request: JoinRequest, kernel: AddressKernel) -> JoinSettings:
    from ..cluster import DEFAULT_GRACE, DEFAULT_TTL, JoinSettings, parse_endpoints

    endpoints = tuple(e.url for e in parse_endpoints(request.etcd))
    address = request.address or _interface_address(kernel, request.interface)
    return JoinSettings(
        endpoints=endpoints, name=request.name or socket.gethostname(),
        address=str(address) if address else None, ca=request.ca, cert=request.cert,
        key=request.key, ttl=request.ttl or DEFAULT_TTL,
        grace=DEFAULT_GRACE if request.grace is None else request.grace,
    )


def _interface_address(kernel: AddressKernel, interface: str | None) -> IPv4Address | None:
    """The first IPv4 address of INTERFACE (the lowest: the same at every join)."""
    if interface is None:
        return None
    found = kernel.addresses_in(Path("/proc/self/ns/net"), interface)
    if not found:
        raise ConfigError("interface", interface, "no such link with an IPv4 address")
    return min(found).ip


def follow_address(plane: OverlayPlane, node: ClusterNode) -> None:
    """A node joined without --address or --interface takes the source address towards
    etcd, again at every sync: when it changes (DHCP, a moved VM) the record follows
    and every peer replaces its routes, neighbour and FDB entries for this node."""
    from ..cluster import source_address

    if node.settings.address is not None:
        return
    try:
        address = source_address(node.client.endpoints[0])
    except ConfigError:
        return  # no route towards etcd just now: keep the last address
    if address == plane.address:
        return
    try:
        node.membership.set_address(address)
    except NetbayError as exc:  # etcd away: the next sync tries again
        log.info("cluster: new address %s not recorded yet: %s", address, exc)
        return
    log.info("cluster: this node's address changed from %s to %s", plane.address, address)
    plane.address = address


def follow_address6(plane: OverlayPlane, node: ClusterNode) -> None:
    """The node's IPv6 underlay address (the first global one on the link of its IPv4
    address), again at every sync: added, changed or gone, the record follows, and the
    peers' host-gw routes and BGP next hops with it."""
    from ..cluster.identity import source_address6

    address6 = source_address6(node.membership.address)
    if address6 != node.membership.address6:
        try:
            node.membership.set_address6(address6)
        except NetbayError as exc:  # etcd away: the next sync tries again
            log.info("cluster: new IPv6 address %s not recorded yet: %s", address6, exc)
            return
        log.info("cluster: this node's IPv6 address is now %s", address6 or "none")
    plane.address6 = address6
