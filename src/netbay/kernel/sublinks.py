"""Links that hang off a parent: macvlan and ipvlan endpoints and host shims, 802.1q VLAN
sub-interfaces and the dummy parent of internal networks.

The kind-specific parts (LinkKind) are built here by small pure functions (unit-tested
without a kernel); the requests go out through rtnetlink.Rtnetlink in the namespace they
concern. pyroute2 is not used: its ipvlan support lacks IFLA_IPVLAN_FLAGS (the
bridge/private/vepa flag), and on the attach path its per-request overhead costs more than
the kernel's work (see netlink.py).

Everything is an `ensure`/`remove` verb: "already exists" is checked and accepted where the
object is ours, "already gone" is success.
"""

from __future__ import annotations

import errno
import os
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

from ..errors import KernelError
from ..model import IPNetwork
from . import sysctl
from .netlink import attr, u16, u32
from .netns import entered
from .rtnetlink import Rtnetlink
from .rtnl_wire import DEFAULT, Route
from .rtnl_wire import LinkKind as LinkKind  # the drivers' type of a link kind
from .rtnl_wire6 import DEFAULT6, Route6

IFLA_MACVLAN_MODE = 1  # u32
IFLA_IPVLAN_MODE, IFLA_IPVLAN_FLAGS = 1, 2  # u16 each
IFLA_VLAN_ID = 1  # u16

MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}
IPVLAN_FLAGS = {"bridge": 0, "private": 1, "vepa": 2}

# a host shim's route: the containers' range, and the shim's address in that subnet
ShimRoute = tuple[IPNetwork, IPv4Interface | IPv6Interface]


def macvlan(mode: str) -> LinkKind:
    return LinkKind("macvlan", attr(IFLA_MACVLAN_MODE, u32(MACVLAN_MODES[mode])))


def ipvlan(mode: str, flag: str) -> LinkKind:
    return LinkKind(
        "ipvlan",
        attr(IFLA_IPVLAN_MODE, u16(IPVLAN_MODES[mode]))
        + attr(IFLA_IPVLAN_FLAGS, u16(IPVLAN_FLAGS[flag])),
    )


def vlan(vid: int) -> LinkKind:
    return LinkKind("vlan", attr(IFLA_VLAN_ID, u16(vid)))


DUMMY = LinkKind("dummy")


# --- the operations drivers use ---------------------------------------------------------
def link_exists(name: str) -> bool:
    with Rtnetlink() as rtnl:
        return rtnl.link(name) is not None


def ensure_parent(name: str, kind: LinkKind, lower: str | None, ipv6: bool = False) -> bool:
    """A parent netbay makes (a VLAN sub-interface of LOWER, or a dummy), up; True if it was
    made now. An existing link of another kind is an error. IPv6 is off on a new one unless
    IPV6 (the host routes IPv6 out of it: ipvlan L3), where it is the host's default, for
    the host's own address there to be added as on any of its links."""
    with Rtnetlink() as rtnl:
        existing = rtnl.link_of_kind(name, kind.kind)
        if existing is not None:
            rtnl.set_up(existing.index)
            return False
        parent = None
        if lower is not None:
            parent = rtnl.require_index(lower, f"cannot create {name}: {lower} does not exist")
        rtnl.add_link(name, kind, parent=parent)
        if not ipv6:
            sysctl.disable_ipv6(name)
        rtnl.set_up(rtnl.require_index(name, f"{name} vanished right after creation"))
        return True


def remove_link(name: str, netns: Path) -> bool:
    """Delete NAME in NETNS; a missing link or namespace is success. (Returns as soon as the
    link is unlisted, not after the kernel's ~16 ms RCU wait: see unlink.py.)"""
    try:
        with Rtnetlink(netns) as inside:
            return inside.remove_link(name)
    except KernelError as exc:
        if exc.errno == errno.ENOENT:  # the namespace is gone, and the link with it
            return False
        raise


def attach_sublink(
    *,
    parent: str,
    kind: LinkKind,
    ifname: str,
    netns: Path,
    mac: str | None,
    address: IPv4Interface | None,
    gateway: IPv4Address | None,
    device_route: bool,
    address6: IPv6Interface | None = None,
    gateway6: IPv6Address | None = None,
    device_route6: bool = False,
) -> None:
    """A KIND link on PARENT, born inside NETNS as IFNAME (no rename, no move), then there:
    IPv6 off, up, ADDRESS, and a default route via GATEWAY or, with DEVICE_ROUTE, straight
    out of IFNAME (ipvlan L3: the parent routes, nothing answers ARP). With ADDRESS6, IPv6
    is on instead, static (sysctl.STATIC_IPV6, before the link is up: no router
    solicitation, no DAD), with ADDRESS6 and `::/0` via GATEWAY6 or, with DEVICE_ROUTE6,
    out of IFNAME.

    Netlink round trips: parent lookup and link add on the host; then in NETNS: index, up,
    address, default route (and for IPv6 one more of each of the last two)."""
    with Rtnetlink() as host:
        lower = host.require_index(parent, f"parent {parent} does not exist")
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            host.add_link(ifname, kind, parent=lower, netns_fd=fd, mac=mac)
        finally:
            os.close(fd)
    with entered(netns):
        if address6 is None:
            sysctl.disable_ipv6(ifname)
        else:
            sysctl.enable_static_ipv6(ifname)
        inside = Rtnetlink()
    with inside:
        index = inside.require_index(ifname, f"{ifname} did not appear in {netns}")
        inside.set_up(index)
        if address is not None:
            inside.ensure_address(index, address)
        if gateway is not None:
            inside.add_route(Route(DEFAULT, gateway=gateway))
        elif device_route:
            inside.add_route(Route(DEFAULT, index=index))
        if address6 is not None:
            _configure6(inside, index, address6, gateway6, device_route6)


def _configure6(
    inside: Rtnetlink, index: int, address: IPv6Interface, gateway: IPv6Address | None,
    device_route: bool,
) -> None:
    """ADDRESS on the container's link INDEX, and `::/0` via GATEWAY or out of the link."""
    inside.ensure_address(index, address)
    if gateway is not None:
        inside.add_route6(Route6(DEFAULT6, gateway=gateway))
    elif device_route:
        inside.add_route6(Route6(DEFAULT6, index=index))


def ensure_shim(
    name: str,
    *,
    parent: str,
    kind: LinkKind,
    routes: list[ShimRoute],
) -> bool:
    """The host's own link on PARENT (a sibling of the containers' links, so the host can
    reach them), up, holding each route's source address, with a route to each destination
    through it. True if it was made now. A destination the host routes already is an error
    when the shim is new (its route would never be used); an existing shim keeps its own.
    With an IPv6 route, IPv6 is on on the shim, static (no RA, no DAD); else off. (An IPv6
    route carries no source: the kernel prefers the shim's own address, the outgoing
    link's.)"""
    ipv6 = any(source.version == 6 for _, source in routes)
    with Rtnetlink() as host:
        created = host.link_of_kind(name, kind.kind) is None
        if created:
            lower = host.require_index(parent, f"parent {parent} does not exist")
            host.add_link(name, kind, parent=lower)
            if not ipv6:
                sysctl.disable_ipv6(name)
        if ipv6:  # also on an existing shim: its IPv6 addresses need IPv6 on
            sysctl.enable_static_ipv6(name)
        index = host.require_index(name, f"{name} vanished right after creation")
        host.set_up(index)
        for destination, source in routes:
            host.ensure_address(index, host_address(source))
            try:
                if isinstance(destination, IPv6Network):
                    host.add_route6(Route6(destination, index=index))
                else:
                    assert isinstance(source, IPv4Interface)
                    host.add_route(Route(destination, index=index, source=source.ip))
            except KernelError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                if created:
                    raise KernelError(
                        f"host_link: this host routes {destination} already; give the network "
                        "an --ip-range it does not route, for the shim to route just that",
                        errno.EEXIST,
                    ) from None
        return created


def host_address(address: IPv4Interface | IPv6Interface) -> IPv4Interface | IPv6Interface:
    """ADDRESS as the shim holds it: alone (/32, /128), so the shim adds no subnet route
    beside the containers' range's."""
    if isinstance(address, IPv4Interface):
        return IPv4Interface((address.ip, 32))
    return IPv6Interface((address.ip, 128))


def ipv6_addresses(name: str) -> list[IPv6Interface]:
    """NAME's IPv6 addresses (link-local ones too), in the calling thread's namespace (none
    if NAME is gone)."""
    with Rtnetlink() as rtnl:
        index = rtnl.index(name)
        return [] if index is None else [a.address for a in rtnl.addresses6(index)]


def ipv4_addresses(name: str) -> list[IPv4Interface]:
    """NAME's IPv4 addresses, in the calling thread's namespace (none if NAME is gone)."""
    with Rtnetlink() as rtnl:
        index = rtnl.index(name)
        return [] if index is None else rtnl.addresses(index)
