"""rtnetlink's wire formats for links, addresses, routes, neighbours and bridge FDB entries
(linux/rtnetlink.h, if_link.h, if_addr.h, neighbour.h): request bodies and decoded replies,
pure functions unit-tested without a kernel. Decoded objects are small frozen dataclasses,
addresses are ipaddress objects, MACs are "02:42:ac:11:00:02" strings.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from .netlink import attr, attribute_map, be16, nested, read_string, read_u32, string, u32

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE = 1, 3, 5, 7

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_EXT_MASK = 16, 18, 28, 29
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT = 15  # big-endian
IFF_UP = 0x1
RTEXT_FILTER_SKIP_STATS = 1 << 3
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 253, 254, 255
RTN_UNICAST, RTN_BLACKHOLE = 1, 6  # a blackhole drops what it is the route for, silently
RTNH_F_ONLINK = 4  # the gateway is on the device's link, whatever its subnet says
RTPROT_STATIC = 4
# netbay's own routes carry this protocol, so that they can be listed and removed without
# touching anyone else's (`ip route show proto 57`). Values from 5 up mean nothing to the
# kernel; 57 is taken by no daemon we know: not in iproute2's rt_protos (0-4, 8-18 gated to
# keepalived, 42 babel, 99 openr, 186-189 and 192), nor FRR's (186-198, growing upward, so
# 199 is its next), nor Calico's (80), OVN's (84) or BIRD's (12).
RTPROT_NETBAY = 57

NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
NUD_PERMANENT, NUD_REACHABLE = 0x80, 0x02
NTF_SELF = 0x02  # an FDB entry of the device itself (a vxlan's remotes), not of its bridge
AF_BRIDGE = 7

IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBi")  # family, prefix length, flags, scope, index
# family, dst and src prefix lengths, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct("=BBBBBBBBI")
NDMSG = struct.Struct("=BxxxiHBB")  # family, index, state, flags, type


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# --- links -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinkKind:
    """The kind-specific part of a new link: IFLA_INFO_KIND and its IFLA_INFO_DATA."""

    kind: str
    data: bytes = b""

    def linkinfo(self) -> bytes:
        info = attr(IFLA_INFO_KIND, string(self.kind))
        if self.data:
            info += attr(IFLA_INFO_DATA, self.data)
        return attr(IFLA_LINKINFO, info)


BRIDGE = LinkKind("bridge")


def vxlan(vni: int, *, local: IPv4Address, underlay: int, port: int = 4789) -> LinkKind:
    """A VXLAN device for VNI, sending from LOCAL out of the UNDERLAY link (an ifindex) to
    UDP PORT. Learning is off: netbay writes the FDB and neighbour entries itself."""
    return LinkKind("vxlan", attr(IFLA_VXLAN_ID, u32(vni)) + attr(IFLA_VXLAN_LINK, u32(underlay))
                    + attr(IFLA_VXLAN_LOCAL, local.packed) + attr(IFLA_VXLAN_LEARNING, b"\0")
                    + attr(IFLA_VXLAN_PORT, be16(port)))


@dataclass(frozen=True)
class VxlanInfo:
    """A VXLAN device's settings, as its link's IFLA_INFO_DATA has them."""

    vni: int | None
    local: IPv4Address | None
    underlay: int | None  # the ifindex of the link it sends from
    port: int | None
    learning: bool


def decode_vxlan(payload: bytes) -> VxlanInfo | None:
    """The settings of the link in an RTM_NEWLINK message; None if it is not a vxlan."""
    info = attribute_map(attribute_map(payload, IFINFOMSG.size).get(IFLA_LINKINFO, b""))
    if read_string(info.get(IFLA_INFO_KIND, b"")) != "vxlan":
        return None
    data = attribute_map(info.get(IFLA_INFO_DATA, b""))
    local = data.get(IFLA_VXLAN_LOCAL)
    port = data.get(IFLA_VXLAN_PORT)
    return VxlanInfo(
        vni=read_u32(data[IFLA_VXLAN_ID]) if IFLA_VXLAN_ID in data else None,
        local=IPv4Address(local) if local is not None and len(local) == 4 else None,
        underlay=read_u32(data[IFLA_VXLAN_LINK]) if IFLA_VXLAN_LINK in data else None,
        port=int.from_bytes(port, "big") if port is not None else None,
        learning=data.get(IFLA_VXLAN_LEARNING, b"\1")[:1] != b"\0",
    )


def ifinfomsg(index: int = 0, up: bool = False) -> bytes:
    flags = IFF_UP if up else 0
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags)


def _link_attributes(
    name: str, parent: int | None, netns_fd: int | None, mac: str | None, mtu: int | None,
    master: int | None,
) -> bytes:
    out = attr(IFLA_IFNAME, string(name))
    if parent is not None:
        out += attr(IFLA_LINK, u32(parent))
    if netns_fd is not None:
        out += attr(IFLA_NET_NS_FD, u32(netns_fd))
    if mac:
        out += attr(IFLA_ADDRESS, mac_bytes(mac))
    if mtu:
        out += attr(IFLA_MTU, u32(mtu))
    if master is not None:
        out += attr(IFLA_MASTER, u32(master))
    return out


def newlink_body(
    name: str,
    kind: LinkKind,
    *,
    parent: int | None = None,
    netns_fd: int | None = None,
    mac: str | None = None,
    mtu: int | None = None,
    master: int | None = None,
    up: bool = False,
) -> bytes:
    """RTM_NEWLINK: a link of KIND on PARENT (an ifindex of the sender's namespace), born in
    the namespace of NETNS_FD if given, enslaved to MASTER if given."""
    return (ifinfomsg(up=up) + _link_attributes(name, parent, netns_fd, mac, mtu, master)
            + kind.linkinfo())


def veth(peer: str, *, netns_fd: int, mac: str | None, mtu: int | None) -> LinkKind:
    """A veth whose PEER end is born in the namespace of NETNS_FD (no move)."""
    peer_link = ifinfomsg() + _link_attributes(peer, None, netns_fd, mac, mtu, None)
    return LinkKind("veth", attr(VETH_INFO_PEER, peer_link))


def link_dump_body() -> bytes:
    return ifinfomsg() + attr(IFLA_EXT_MASK, u32(RTEXT_FILTER_SKIP_STATS))


def link_by_name(name: str) -> bytes:
    """RTM_GETLINK/RTM_DELLINK by name (a get leaves the statistics out)."""
    return link_dump_body() + attr(IFLA_IFNAME, string(name))


def setlink_body(
    index: int, *, master: int | None = None, mtu: int | None = None, mac: str | None = None
) -> bytes:
    """RTM_NEWLINK changing the existing link INDEX: enslaved to MASTER, its MTU, its MAC."""
    body = ifinfomsg(index)
    if master is not None:
        body += attr(IFLA_MASTER, u32(master))
    if mtu is not None:
        body += attr(IFLA_MTU, u32(mtu))
    if mac is not None:
        body += attr(IFLA_ADDRESS, mac_bytes(mac))
    return body


def hairpin_body(name: str) -> bytes:
    """RTM_NEWLINK as `ip link set NAME type bridge_slave hairpin on` sends it."""
    slave = nested(IFLA_LINKINFO, attr(IFLA_INFO_SLAVE_KIND, string("bridge")),
                   nested(IFLA_INFO_SLAVE_DATA, attr(IFLA_BRPORT_MODE, b"\x01")))
    return ifinfomsg() + attr(IFLA_IFNAME, string(name)) + slave


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None = None  # IFLA_INFO_KIND: "bridge", "veth", "vxlan"...; None: a plain one
    master: int | None = None  # the bridge it is a port of
    parent: int | None = None  # IFLA_LINK: a sub-interface's lower link, a veth's peer
    mac: str | None = None
    mtu: int | None = None
    up: bool = False  # administratively (IFF_UP)
    operstate: str = "unknown"  # RFC 2863: "up", "down", "lowerlayerdown"...
    hairpin: bool = False  # a bridge port that may send a frame back out where it came in


def link_index(payload: bytes) -> int:
    return int(IFINFOMSG.unpack_from(payload)[2])


def decode_link(payload: bytes) -> Link:
    """An RTM_NEWLINK/RTM_DELLINK message (a get's answer, a dump's entry, an event)."""
    _, _, index, flags, _ = IFINFOMSG.unpack_from(payload)
    found = attribute_map(payload, IFINFOMSG.size)
    info = attribute_map(found.get(IFLA_LINKINFO, b""))

    def number(key: int) -> int | None:
        return read_u32(found[key]) if key in found else None

    operstate = found.get(IFLA_OPERSTATE, b"\0")[0]
    port = attribute_map(info.get(IFLA_INFO_SLAVE_DATA, b""))
    return Link(
        index=index,
        name=read_string(found.get(IFLA_IFNAME, b"")),
        kind=read_string(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None,
        master=number(IFLA_MASTER),
        parent=number(IFLA_LINK),
        mac=mac_text(found[IFLA_ADDRESS]) if IFLA_ADDRESS in found else None,
        mtu=number(IFLA_MTU),
        up=bool(flags & IFF_UP),
        operstate=OPERSTATES[operstate] if operstate < len(OPERSTATES) else str(operstate),
        hairpin=port.get(IFLA_BRPORT_MODE, b"\0")[:1] == b"\1",
    )


# --- addresses ---------------------------------------------------------------------------
def address_body(index: int, address: IPv4Interface, scope: int = RT_SCOPE_UNIVERSE) -> bytes:
    ip = address.ip.packed
    body = IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, scope, index)
    return body + attr(IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip)


def decode_address(payload: bytes) -> tuple[int, IPv4Interface] | None:
    """(ifindex, address) of an RTM_NEWADDR/RTM_DELADDR message; None if it has no IPv4
    local address."""
    family, prefixlen, _, _, index = IFADDRMSG.unpack_from(payload)
    found = attribute_map(payload, IFADDRMSG.size)
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
    if family != socket.AF_INET or raw is None or len(raw) != 4:
        return None
    return index, IPv4Interface((IPv4Address(raw), prefixlen))


# --- routes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """An IPv4 route: to DESTINATION via GATEWAY and/or out of the device INDEX."""

    destination: IPv4Network
    gateway: IPv4Address | None = None
    index: int | None = None  # the output device (RTA_OIF)
    source: IPv4Address | None = None  # the preferred source address (RTA_PREFSRC)
    protocol: int = RTPROT_STATIC  # who made it; netbay's multi-host routes: RTPROT_NETBAY
    onlink: bool = False  # the gateway is reachable on INDEX's link without a subnet route
    table: int = RT_TABLE_MAIN
    type: int = RTN_UNICAST


DEFAULT = IPv4Network("0.0.0.0/0")


def route_body(route: Route, *, scope: int | None = None) -> bytes:
    """RTM_NEWROUTE/RTM_DELROUTE, scoped as `ip route add` does (a delete: RT_SCOPE_NOWHERE)."""
    if scope is None:  # link for a unicast route straight out of a device, else universe
        direct = route.gateway is None and route.type == RTN_UNICAST
        scope = RT_SCOPE_LINK if direct else RT_SCOPE_UNIVERSE
    table = route.table if route.table < 256 else 0
    body = RTMSG.pack(socket.AF_INET, route.destination.prefixlen, 0, 0, table, route.protocol,
                      scope, route.type, RTNH_F_ONLINK if route.onlink else 0)
    if route.destination.prefixlen:
        body += attr(RTA_DST, route.destination.network_address.packed)
    if route.gateway is not None:
        body += attr(RTA_GATEWAY, route.gateway.packed)
    if route.source is not None:
        body += attr(RTA_PREFSRC, route.source.packed)
    if route.index is not None:
        body += attr(RTA_OIF, u32(route.index))
    if table != route.table:
        body += attr(RTA_TABLE, u32(route.table))
    return body


def route_dump_body() -> bytes:
    return RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)


def decode_route(payload: bytes) -> Route | None:
    """An RTM_NEWROUTE/RTM_DELROUTE message; None if it is not IPv4."""
    family, dst_len, _, _, table, protocol, _, kind, flags = RTMSG.unpack_from(payload)
    if family != socket.AF_INET:
        return None
    found = attribute_map(payload, RTMSG.size)
    destination = IPv4Address(found.get(RTA_DST, bytes(4)))

    def address(key: int) -> IPv4Address | None:
        return IPv4Address(found[key]) if key in found else None

    return Route(
        destination=IPv4Network((destination, dst_len)),
        gateway=address(RTA_GATEWAY),
        index=read_u32(found[RTA_OIF]) if RTA_OIF in found else None,
        source=address(RTA_PREFSRC),
        protocol=protocol,
        onlink=bool(flags & RTNH_F_ONLINK),
        table=read_u32(found[RTA_TABLE]) if RTA_TABLE in found else table,
        type=kind,
    )


# --- neighbours and FDB entries ------------------------------------------------------------
@dataclass(frozen=True)
class Neighbour:
    """An IPv4 neighbour (ARP) entry: ADDRESS on device INDEX is at LLADDR."""

    index: int
    address: IPv4Address
    lladdr: str | None = None  # None: not resolved (yet)
    state: int = NUD_PERMANENT  # NUD_* bits

    @property
    def permanent(self) -> bool:
        return bool(self.state & NUD_PERMANENT)


@dataclass(frozen=True)
class FdbEntry:
    """A bridge forwarding entry of device INDEX: frames to LLADDR go to DESTINATION (for a
    vxlan device: the remote VTEP's IP; None for an entry that names no remote)."""

    index: int
    lladdr: str
    destination: IPv4Address | None = None
    state: int = NUD_PERMANENT
    flags: int = NTF_SELF  # NTF_* bits


def neighbour_body(index: int, address: IPv4Address, lladdr: str | None = None,
                   state: int = NUD_PERMANENT) -> bytes:
    """RTM_NEWNEIGH of an entry in STATE (with LLADDR) or RTM_DELNEIGH (without)."""
    body = NDMSG.pack(socket.AF_INET, index, state if lladdr else 0, 0, 0)
    body += attr(NDA_DST, address.packed)
    return body + attr(NDA_LLADDR, mac_bytes(lladdr)) if lladdr else body


def fdb_body(index: int, lladdr: str, destination: IPv4Address) -> bytes:
    """RTM_NEWNEIGH/RTM_DELNEIGH of device INDEX's own (NTF_SELF) permanent entry, as
    `bridge fdb add LLADDR dev DEVICE dst DESTINATION self permanent` sends it."""
    body = NDMSG.pack(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF, 0)
    return body + attr(NDA_LLADDR, mac_bytes(lladdr)) + attr(NDA_DST, destination.packed)


def neighbour_dump_body(family: int) -> bytes:
    return NDMSG.pack(family, 0, 0, 0, 0)


def device_neighbour_dump_body(index: int) -> bytes:
    """An IPv4 neighbour dump the kernel filters to device INDEX (NDA_IFINDEX)."""
    return neighbour_dump_body(socket.AF_INET) + attr(NDA_IFINDEX, u32(index))


def device_fdb_dump_body(index: int) -> bytes:
    """An FDB dump the kernel filters to device INDEX: the request's header read as an
    ifinfomsg, as iproute2's `bridge fdb show dev` sends it (without strict checking)."""
    return IFINFOMSG.pack(AF_BRIDGE, 0, index, 0, 0)


def decode_neighbour(payload: bytes) -> Neighbour | None:
    """An IPv4 RTM_NEWNEIGH/RTM_DELNEIGH message; None for another family."""
    family, index, state, _, _ = NDMSG.unpack_from(payload)
    found = attribute_map(payload, NDMSG.size)
    if family != socket.AF_INET or len(found.get(NDA_DST, b"")) != 4:
        return None
    lladdr = mac_text(found[NDA_LLADDR]) if NDA_LLADDR in found else None
    return Neighbour(index, IPv4Address(found[NDA_DST]), lladdr, state)


def decode_fdb(payload: bytes) -> FdbEntry | None:
    """An AF_BRIDGE RTM_NEWNEIGH/RTM_DELNEIGH message; None for another family."""
    family, index, state, flags, _ = NDMSG.unpack_from(payload)
    found = attribute_map(payload, NDMSG.size)
    if family != AF_BRIDGE or NDA_LLADDR not in found:
        return None
    raw = found.get(NDA_DST, b"")
    destination = IPv4Address(raw) if len(raw) == 4 else None
    return FdbEntry(index, mac_text(found[NDA_LLADDR]), destination, state, flags)
