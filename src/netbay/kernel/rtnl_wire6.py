"""rtnetlink's IPv6 wire formats (linux/if_addr.h, rtnetlink.h, neighbour.h): addresses
with their flags, routes and neighbours. The IPv4 ones stay in rtnl_wire.py, whose
IPv4-typed results (IPv4Interface, IPv4Network) many callers rely on; these are their IPv6
counterparts, pure functions unit-tested without a kernel.

netbay's IPv6 addresses are static: added with IFA_F_NODAD, so the kernel marks them usable
at once (never "tentative"), and neither sends a neighbour solicitation for them nor waits.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, IPv6Network

from .netlink import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    Request,
    attr,
    attribute_map,
    nested,
    read_u32,
    u32,
)
from .rtnl_wire import (
    DEFAULT,
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDRMSG,
    NDA_DST,
    NDA_IFINDEX,
    NDA_LLADDR,
    NDMSG,
    NUD_PERMANENT,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_TABLE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMSG,
    RTN_BLACKHOLE,
    RTN_UNICAST,
    RTNH_F_ONLINK,
    RTPROT_STATIC,
    Route,
    address_body,
    ifinfomsg,
    mac_bytes,
    mac_text,
    route_body,
)

IFA_FLAGS = 8  # all 32 flag bits (ifa_flags, the header's byte, holds only the low 8)
IFA_F_NODAD, IFA_F_DADFAILED, IFA_F_TENTATIVE, IFA_F_PERMANENT = 0x02, 0x08, 0x40, 0x80
RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE = 9, 11
DEFAULT6 = IPv6Network("::/0")
IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE = 26, 8
IN6_ADDR_GEN_MODE_EUI64, IN6_ADDR_GEN_MODE_NONE = 0, 1
_LINK_LOCAL, _MULTICAST = IPv6Network("fe80::/10"), IPv6Network("ff00::/8")


@dataclass(frozen=True)
class Address6:
    """An IPv6 address of device INDEX, with its IFA_F_* flags and scope."""

    index: int
    address: IPv6Interface
    flags: int = IFA_F_PERMANENT | IFA_F_NODAD
    scope: int = RT_SCOPE_UNIVERSE

    @property
    def tentative(self) -> bool:
        """Still in (or failed) duplicate address detection: not usable as a source yet."""
        return bool(self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED))


def address6_body(index: int, address: IPv6Interface, flags: int = IFA_F_NODAD) -> bytes:
    """RTM_NEWADDR/RTM_DELADDR of ADDRESS on device INDEX; FLAGS both in the header's byte
    and in IFA_FLAGS (the kernel reads the attribute when it is there; iproute2 sends it
    only for flags above 0xFF, the byte alone being enough for older kernels)."""
    ip = address.ip.packed
    body = IFADDRMSG.pack(socket.AF_INET6, address.network.prefixlen, flags & 0xFF,
                          RT_SCOPE_UNIVERSE, index)
    return body + attr(IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip) + attr(IFA_FLAGS, u32(flags))


def addr_gen_mode_body(index: int, mode: int) -> bytes:
    """RTM_NEWLINK as `ip link set DEVICE addrgenmode none|eui64` sends it: how the kernel
    makes device INDEX's link-local address when IPv6 comes up on it (NONE: it makes none).
    The kernel refuses it in the message that creates the link (the device has no IPv6
    state yet): set it on the new link before bringing it up."""
    mode_attr = attr(IFLA_INET6_ADDR_GEN_MODE, bytes([mode]))
    return ifinfomsg(index) + nested(IFLA_AF_SPEC, nested(socket.AF_INET6, mode_attr))


def address6_dump_body() -> bytes:
    return IFADDRMSG.pack(socket.AF_INET6, 0, 0, 0, 0)


def decode_address6(payload: bytes) -> Address6 | None:
    """An RTM_NEWADDR/RTM_DELADDR message; None if it is not an IPv6 address."""
    family, prefixlen, flags, scope, index = IFADDRMSG.unpack_from(payload)
    found = attribute_map(payload, IFADDRMSG.size)
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
    if family != socket.AF_INET6 or raw is None or len(raw) != 16:
        return None
    if IFA_FLAGS in found:
        flags = read_u32(found[IFA_FLAGS])
    return Address6(index, IPv6Interface((IPv6Address(raw), prefixlen)), flags, scope)


@dataclass(frozen=True)
class Route6:
    """An IPv6 route: to DESTINATION via GATEWAY and/or out of the device INDEX; a
    blackhole (type RTN_BLACKHOLE) has neither."""

    destination: IPv6Network
    gateway: IPv6Address | None = None
    index: int | None = None  # the output device (RTA_OIF)
    protocol: int = RTPROT_STATIC
    table: int = RT_TABLE_MAIN
    type: int = RTN_UNICAST
    onlink: bool = False  # the gateway is reachable on INDEX's link without a subnet route


def route6_body(route: Route6) -> bytes:
    """RTM_NEWROUTE/RTM_DELROUTE (IPv6 routes have no scope: always universe)."""
    table = route.table if route.table < 256 else 0
    body = RTMSG.pack(socket.AF_INET6, route.destination.prefixlen, 0, 0, table,
                      route.protocol, RT_SCOPE_UNIVERSE, route.type,
                      RTNH_F_ONLINK if route.onlink else 0)
    if route.destination.prefixlen:
        body += attr(RTA_DST, route.destination.network_address.packed)
    if route.gateway is not None:
        body += attr(RTA_GATEWAY, route.gateway.packed)
    if route.index is not None:
        body += attr(RTA_OIF, u32(route.index))
    if table != route.table:
        body += attr(RTA_TABLE, u32(route.table))
    return body


def route6_dump_body() -> bytes:
    return RTMSG.pack(socket.AF_INET6, 0, 0, 0, 0, 0, 0, 0, 0)


def decode_route6(payload: bytes) -> Route6 | None:
    """An RTM_NEWROUTE/RTM_DELROUTE message; None if it is not IPv6. A blackhole decodes
    without a device: the kernel reports lo's, which no one asked for."""
    family, dst_len, _, _, table, protocol, _, kind, flags = RTMSG.unpack_from(payload)
    if family != socket.AF_INET6:
        return None
    found = attribute_map(payload, RTMSG.size)
    gateway = found.get(RTA_GATEWAY)
    destination = IPv6Address(found.get(RTA_DST, bytes(16)))
    device = RTA_OIF in found and kind != RTN_BLACKHOLE
    return Route6(
        destination=IPv6Network((destination, dst_len), strict=False),
        gateway=IPv6Address(gateway) if gateway is not None and len(gateway) == 16 else None,
        index=read_u32(found[RTA_OIF]) if device else None,
        protocol=protocol,
        table=read_u32(found[RTA_TABLE]) if RTA_TABLE in found else table,
        type=kind,
        onlink=bool(flags & RTNH_F_ONLINK),
    )


@dataclass(frozen=True)
class Neighbour6:
    """An IPv6 neighbour (neighbour discovery) entry: ADDRESS on device INDEX is at LLADDR."""

    index: int
    address: IPv6Address
    lladdr: str | None = None  # None: not resolved (yet)
    state: int = NUD_PERMANENT  # NUD_* bits

    @property
    def permanent(self) -> bool:
        return bool(self.state & NUD_PERMANENT)


def neighbour6_body(index: int, address: IPv6Address, lladdr: str | None = None,
                    state: int = NUD_PERMANENT) -> bytes:
    """RTM_NEWNEIGH of an IPv6 entry in STATE (with LLADDR) or RTM_DELNEIGH (without)."""
    body = NDMSG.pack(socket.AF_INET6, index, state if lladdr else 0, 0, 0)
    body += attr(NDA_DST, address.packed)
    return body + attr(NDA_LLADDR, mac_bytes(lladdr)) if lladdr else body


def neighbour6_dump_body(index: int | None = None) -> bytes:
    """An IPv6 neighbour dump, which the kernel filters to device INDEX if given."""
    body = NDMSG.pack(socket.AF_INET6, 0, 0, 0, 0)
    return body if index is None else body + attr(NDA_IFINDEX, u32(index))


def decode_neighbour6(payload: bytes) -> Neighbour6 | None:
    """An IPv6 RTM_NEWNEIGH/RTM_DELNEIGH message; None for another family."""
    family, index, state, _, _ = NDMSG.unpack_from(payload)
    found = attribute_map(payload, NDMSG.size)
    if family != socket.AF_INET6 or len(found.get(NDA_DST, b"")) != 16:
        return None
    lladdr = mac_text(found[NDA_LLADDR]) if NDA_LLADDR in found else None
    return Neighbour6(index, IPv6Address(found[NDA_DST]), lladdr, state)


def global_networks(networks: Iterable[IPv6Network]) -> list[IPv6Network]:
    """NETWORKS (a host's addresses' and routes') but the default route and the link-local,
    multicast and loopback ones: what a new network's subnet could collide with."""
    return [n for n in networks if n.prefixlen and not n.subnet_of(_LINK_LOCAL)
            and not n.subnet_of(_MULTICAST) and not n.network_address.is_loopback]


def link_setup(
    index: int, addresses: Sequence[IPv4Interface | IPv6Interface],
    gateway: IPv4Address | None, gateway6: IPv6Address | None,
) -> list[Request]:
    """The requests that set device INDEX up with ADDRESSES (IPv6 ones without DAD) and the
    default route via each gateway given, in the order the kernel must do them (a route's
    gateway is reachable once the link is up with an address of its subnet): one batch."""
    create = NLM_F_CREATE | NLM_F_EXCL
    out = [Request(f"set link {index} up", RTM_NEWLINK, 0, ifinfomsg(index, up=True))]
    for address in addresses:
        body = (address6_body(index, address) if isinstance(address, IPv6Interface)
                else address_body(index, address))
        out.append(Request(f"add address {address}", RTM_NEWADDR, create, body))
    if gateway is not None:
        out.append(Request(f"add default route via {gateway}", RTM_NEWROUTE, create,
                           route_body(Route(DEFAULT, gateway=gateway))))
    if gateway6 is not None:
        out.append(Request(f"add default route via {gateway6}", RTM_NEWROUTE, create,
                           route6_body(Route6(DEFAULT6, gateway=gateway6))))
    return out
