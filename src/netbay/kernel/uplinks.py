"""A node's underlay link (the one holding its cluster address, and the subnets on it), and
the links a flowtable may hook in the caller's namespace: those that exist (a kernel of
before 6.16 refuses a flowtable device that does not), and the uplinks, the devices of
the default routes of both families, where forwarded flows leave for the rest of the world
(an IPv6 uplink may be another link than IPv4's)."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from ..errors import KernelError
from .rtnetlink import Rtnetlink
from .rtnl_wire import DEFAULT
from .rtnl_wire6 import DEFAULT6


@dataclass(frozen=True)
class Underlay:
    device: str
    mtu: int
    segments: tuple[IPv4Network, ...]
    segments6: tuple[IPv6Network, ...] = ()  # its global IPv6 subnets

    def same_segment(self, address: IPv4Address | IPv6Address) -> bool:
        """Whether ADDRESS is on-link (of either family): a route via it needs no router."""
        if isinstance(address, IPv6Address):
            return any(address in segment for segment in self.segments6)
        return any(address in segment for segment in self.segments)


def underlay_of(rtnl: Rtnetlink, address: IPv4Address) -> Underlay:
    """The link holding ADDRESS (this node's underlay address), its MTU and the subnets of
    both families on it: a peer in one of those is on this node's L2 segment."""
    held = rtnl.indexed_addresses()
    index = next((i for i, a in held if a.ip == address), None)
    link = next((k for k in rtnl.links() if k.index == index), None)
    if link is None:
        raise KernelError(f"no link holds the node address {address}", errno.EADDRNOTAVAIL)
    segments = tuple(a.network for i, a in held if i == index)
    held6 = rtnl.addresses6(link.index)
    segments6 = tuple(a.address.network for a in held6 if not a.address.is_link_local)
    return Underlay(link.name, link.mtu or 1500, segments, segments6)


@dataclass(frozen=True)
class ForwardingLinks:
    names: frozenset[str]  # every link of the namespace
    uplinks: frozenset[str]


def forwarding_links() -> ForwardingLinks:
    """One link dump and a route dump of each family, of the calling thread's namespace."""
    with Rtnetlink() as rtnl:
        names = {link.index: link.name for link in rtnl.links()}
        defaults = {r.index for r in rtnl.routes() if r.destination == DEFAULT}
        defaults |= {r.index for r in rtnl.routes6() if r.destination == DEFAULT6}
    return ForwardingLinks(frozenset(names.values()),
                           frozenset(names[i] for i in defaults if i in names))
