"""An rtnetlink client: links, addresses, routes, neighbours and bridge FDB entries of one
network namespace (the objects `man 7 rtnetlink` covers), each request hand-encoded.

Everything is an `ensure`/`remove` verb where it can be: "already exists" is checked and
accepted, "already gone" is success (False), so setup can be retried and teardown is
idempotent. Failures are KernelError with the errno.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from pathlib import Path

from ..errors import KernelError
from . import netlink, unlink
from .netlink import (
    GONE,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    Netns,
    Resource,
    attr,
    u32,
)
from .rtnl_neighbours import NeighbourMethods
from .rtnl_wire import (
    BRIDGE,
    DEFAULT,
    IFADDRMSG,
    IFLA_NET_NS_FD,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    Link,
    LinkKind,
    Route,
    VxlanInfo,
    address_body,
    decode_address,
    decode_link,
    decode_route,
    decode_vxlan,
    hairpin_body,
    ifinfomsg,
    link_by_name,
    link_dump_body,
    link_index,
    mac_text,
    newlink_body,
    route_body,
    route_dump_body,
    setlink_body,
    veth,
    vxlan,
)
from .rtnl_wire6 import (
    Address6,
    Route6,
    addr_gen_mode_body,
    address6_body,
    address6_dump_body,
    decode_address6,
    decode_route6,
    link_setup,
    route6_body,
    route6_dump_body,
)

_ENSURE = NLM_F_CREATE | NLM_F_REPLACE
_CREATE = NLM_F_CREATE | NLM_F_EXCL


class Rtnetlink(NeighbourMethods, Resource):
    """The rtnetlink client of one network namespace, NETNS (None: the caller's own): one
    socket, bound to that namespace when opened; one request at a time. Its neighbour and
    FDB methods are NeighbourMethods' (rtnl_neighbours.py)."""

    def __init__(self, netns: Netns = None) -> None:
        self._netns = netns
        self._socket = netlink.route_socket(netns)

    def close(self) -> None:
        self._socket.close()

    # --- links -------------------------------------------------------------------------
    def _get_link(self, name: str) -> bytes | None:
        try:
            replies = self._socket.request(f"get link {name}", RTM_GETLINK, 0, link_by_name(name))
        except KernelError as exc:
            if exc.errno in GONE:
                return None
            raise
        return replies[0]

    def link(self, name: str) -> Link | None:
        found = self._get_link(name)
        return None if found is None else decode_link(found)

    def index(self, name: str) -> int | None:
        """The ifindex of NAME, None if there is no such link (one targeted request, its
        answer not decoded further)."""
        found = self._get_link(name)
        return None if found is None else link_index(found)

    def require_index(self, name: str, missing: str) -> int:
        """The ifindex of NAME; KernelError ENODEV saying MISSING if there is no such link."""
        index = self.index(name)
        if index is None:
            raise KernelError(missing, errno.ENODEV)
        return index

    def link_of_kind(self, name: str, kind: str) -> Link | None:
        """The link NAME, None if there is none; EEXIST if it is not a KIND link."""
        existing = self.link(name)
        if existing is not None and existing.kind != kind:
            raise KernelError(f"{name} exists and is not a {kind} link", errno.EEXIST)
        return existing

    def links(self) -> list[Link]:
        return [decode_link(p) for p in self._socket.dump("dump links", RTM_GETLINK,
                                                          link_dump_body())]

    def add_link(
        self, name: str, kind: LinkKind, *, parent: int | None = None,
        netns_fd: int | None = None, mac: str | None = None, mtu: int | None = None,
        master: int | None = None, up: bool = False,
    ) -> None:
        """A new link (EEXIST if NAME is taken); see rtnl_wire.newlink_body."""
        body = newlink_body(name, kind, parent=parent, netns_fd=netns_fd, mac=mac, mtu=mtu,
                            master=master, up=up)
        self._socket.request(f"create link {name}", RTM_NEWLINK, _CREATE, body)

    def ensure_bridge(self, name: str, mtu: int | None) -> tuple[int, bool]:
        """Return (index, created); a new bridge is up. An existing link of another kind is
        an error."""
        existing = self.link_of_kind(name, BRIDGE.kind)
        if existing is not None:
            return existing.index, False
        # A fixed MAC of its own: left random, the kernel gives the bridge the lowest MAC of
        # its ports, so adding or removing a container changes the gateway's MAC and the
        # other containers lose the gateway (DNS, egress) until their ARP entry times out.
        self.add_link(name, BRIDGE, mac=random_mac(), mtu=mtu)
        index = self.require_index(name, f"{name} vanished right after creation")
        self.set_up(index)
        return index, True

    def add_vxlan(
        self, name: str, *, vni: int, local: IPv4Address, underlay: str, port: int = 4789,
        mtu: int | None = None, mac: str | None = None, master: int | None = None,
        up: bool = True,
    ) -> int:
        """A VXLAN device, up unless told (learning off: see rtnl_wire.vxlan), on the UNDERLAY
        link; its index. ENODEV if UNDERLAY does not exist, EEXIST if NAME is taken."""
        lower = self.require_index(underlay, f"cannot create {name}: {underlay} does not exist")
        kind = vxlan(vni, local=local, underlay=lower, port=port)
        self.add_link(name, kind, mac=mac, mtu=mtu, master=master, up=up)
        return self.require_index(name, f"{name} vanished right after creation")

    def vxlan(self, name: str) -> tuple[Link, VxlanInfo] | None:
        """The VXLAN device NAME and its settings (one request); None if there is no such
        link, EEXIST if it is not a vxlan."""
        found = self._get_link(name)
        if found is None:
            return None
        info = decode_vxlan(found)
        if info is None:
            raise KernelError(f"{name} exists and is not a vxlan link", errno.EEXIST)
        return decode_link(found), info

    def add_veth(
        self, host_name: str, peer_name: str, peer_netns: Path | str, *, master: int | None,
        peer_mac: str | None, mtu: int | None, mac: str | None = None,
    ) -> None:
        """One request: the veth pair, its host end (with MAC if given) enslaved to MASTER
        if given and up, the peer born inside the container's namespace (no move), with its
        MAC. The peer cannot be brought up here (the kernel refuses to open a veth end
        before its pair is complete)."""
        fd = os.open(peer_netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer = veth(peer_name, netns_fd=fd, mac=peer_mac, mtu=mtu)
            self.add_link(host_name, peer, mac=mac, mtu=mtu, master=master, up=True)
        finally:
            os.close(fd)

    def set_up(self, index: int) -> None:
        self._socket.request(f"set link {index} up", RTM_NEWLINK, 0, ifinfomsg(index, up=True))

    def set_addr_gen_mode(self, index: int, mode: int) -> None:
        """How device INDEX makes its link-local address once IPv6 is on (rtnl_wire6's
        IN6_ADDR_GEN_MODE_*: NONE for a device that must have none); set before it is up."""
        self._socket.request(f"set link {index} addrgenmode {mode}", RTM_NEWLINK, 0,
                             addr_gen_mode_body(index, mode))

    def set_link(
        self, index: int, *, master: int | None = None, mtu: int | None = None,
        mac: str | None = None,
    ) -> None:
        """Change the existing link INDEX: enslave it to MASTER, set its MTU or its MAC."""
        self._socket.request(f"set link {index}", RTM_NEWLINK, 0,
                             setlink_body(index, master=master, mtu=mtu, mac=mac))

    def move_link(self, name: str, netns: Path | str) -> None:
        """Move the link NAME of this namespace into the one at NETNS (its addresses and
        routes stay behind, as the kernel drops them)."""
        index = self.require_index(name, f"{name} does not exist")
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._socket.request(f"move link {name} to {netns}", RTM_NEWLINK, 0,
                                 ifinfomsg(index) + attr(IFLA_NET_NS_FD, u32(fd)))
        finally:
            os.close(fd)

    def set_hairpin(self, name: str) -> None:
        """Let the bridge send a frame back out of the port it came in by: a container
        reaching its own published port (br_netfilter bridges the DNATed packet back)."""
        self._socket.request(f"hairpin on {name}", RTM_NEWLINK, 0, hairpin_body(name))

    def remove_link(self, name: str) -> bool:
        """Delete a link by name; True if it was there. Returns as soon as the kernel has
        unlisted it, not after the kernel's RCU wait (see unlink.py)."""
        return unlink.remove_link(self._netns, name, fallback=self.delete_link)

    def delete_link(self, name: str) -> bool:
        """Delete a link by name and wait for the kernel's ack; True if it was there."""
        return self._removed(f"delete link {name}", RTM_DELLINK, link_by_name(name))

    # --- addresses ---------------------------------------------------------------------
    def ensure_address(
        self, index: int, address: IPv4Interface | IPv6Interface,
        scope: int = RT_SCOPE_UNIVERSE,
    ) -> None:
        """ADDRESS on device INDEX (an IPv6 one without duplicate address detection: usable
        at once, see rtnl_wire6)."""
        try:
            self._socket.request(f"add address {address}", RTM_NEWADDR, _CREATE,
                                 _address_body(index, address, scope))
        except KernelError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def remove_address(self, index: int, address: IPv4Interface | IPv6Interface) -> bool:
        return self._removed(f"delete address {address}", RTM_DELADDR,
                             _address_body(index, address, RT_SCOPE_UNIVERSE))

    def addresses(self, index: int | None = None) -> list[IPv4Interface]:
        """The namespace's IPv4 addresses (only device INDEX's if given)."""
        return [a for i, a in self.indexed_addresses() if index is None or i == index]

    def indexed_addresses(self) -> list[tuple[int, IPv4Interface]]:
        """The namespace's IPv4 addresses, each with its device's index."""
        body = IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        found = (decode_address(p) for p in self._socket.dump("dump addresses", RTM_GETADDR,
                                                              body))
        return list(filter(None, found))

    def addresses6(self, index: int | None = None) -> list[Address6]:
        """The namespace's IPv6 addresses, with their flags (only device INDEX's if given)."""
        found = (decode_address6(p) for p in self._socket.dump(
            "dump IPv6 addresses", RTM_GETADDR, address6_dump_body()))
        return [a for a in filter(None, found) if index is None or a.index == index]

    def configure(
        self, index: int, addresses: Sequence[IPv4Interface | IPv6Interface],
        gateway: IPv4Address | None, gateway6: IPv6Address | None,
    ) -> None:
        """Device INDEX up with ADDRESSES and the default route via each gateway given, in
        one round trip (rtnl_wire6.link_setup); what exists already is fine."""
        self._socket.batch(link_setup(index, addresses, gateway, gateway6), accept=(errno.EEXIST,))

    # --- routes ------------------------------------------------------------------------
    def ensure_default_route(self, gateway: IPv4Address) -> None:
        try:
            self.add_route(Route(DEFAULT, gateway=gateway))
        except KernelError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def add_route(self, route: Route, *, replace: bool = False) -> None:
        """Add ROUTE; EEXIST if its destination is routed already, unless REPLACE."""
        self._socket.request(f"add route to {route.destination}", RTM_NEWROUTE,
                             _ENSURE if replace else _CREATE, route_body(route))

    def remove_route(self, route: Route) -> bool:
        """Delete the route to ROUTE's destination that has its protocol, gateway and
        device (someone else's route to the same place stays)."""
        return self._removed(f"delete route to {route.destination}", RTM_DELROUTE,
                             route_body(route, scope=RT_SCOPE_NOWHERE))

    def routes(self, *, protocol: int | None = None, table: int = RT_TABLE_MAIN) -> list[Route]:
        """IPv4 routes of TABLE (of PROTOCOL only, if given: RTPROT_NETBAY for netbay's)."""
        found = (decode_route(p) for p in self._socket.dump("dump routes", RTM_GETROUTE,
                                                            route_dump_body()))
        return [r for r in filter(None, found)
                if r.table == table and (protocol is None or r.protocol == protocol)]

    def add_route6(self, route: Route6, *, replace: bool = False) -> None:
        self._socket.request(f"add route to {route.destination}", RTM_NEWROUTE,
                             _ENSURE if replace else _CREATE, route6_body(route))

    def remove_route6(self, route: Route6) -> bool:
        """Delete the IPv6 route to ROUTE's destination that has its protocol, type, gateway
        and device (someone else's route to the same place stays); False if there was none."""
        return self._removed(f"delete route to {route.destination}", RTM_DELROUTE,
                             route6_body(route))

    def routes6(self, *, protocol: int | None = None, table: int = RT_TABLE_MAIN) -> list[Route6]:
        """IPv6 routes of TABLE (the kernel dumps every table's: filtered here)."""
        found = (decode_route6(p) for p in self._socket.dump("dump IPv6 routes", RTM_GETROUTE,
                                                             route6_dump_body()))
        return [r for r in filter(None, found)
                if r.table == table and (protocol is None or r.protocol == protocol)]


def _address_body(index: int, address: IPv4Interface | IPv6Interface, scope: int) -> bytes:
    if isinstance(address, IPv6Interface):
        return address6_body(index, address)
    return address_body(index, address, scope)


def random_mac() -> str:
    """A random unicast, locally administered MAC."""
    mac = bytearray(os.urandom(6))
    mac[0] = (mac[0] & 0xFE) | 0x02
    return mac_text(bytes(mac))
