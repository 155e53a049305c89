"""Links that hang off a parent: macvlan and ipvlan endpoints and host shims, 802.1q VLAN
sub-interfaces and the dummy parent of internal networks.

Requests are encoded here by small pure functions (unit-tested without a kernel) and sent on
a plain rtnetlink socket opened in the namespace they concern. pyroute2's IPRoute is not used
here: its ipvlan support lacks IFLA_IPVLAN_FLAGS (the bridge/private/vepa flag), and on the
attach path its per-request overhead costs more than the kernel's work (see links.py).

Everything is an `ensure`/`remove` verb: "already exists" is checked and accepted where the
object is ours, "already gone" is success.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from ..errors import KernelError
from . import sysctl
from .links import Netlink
from .netns import entered

# --- rtnetlink wire format (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h) ----------
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO = 1, 3, 5, 18
IFLA_NET_NS_FD, IFLA_EXT_MASK = 28, 29
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN_MODE = 1  # u32
IFLA_IPVLAN_MODE, IFLA_IPVLAN_FLAGS = 1, 2  # u16 each
IFLA_VLAN_ID = 1  # u16
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC = 1, 4, 5, 7
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
IFF_UP = 0x1
RTEXT_FILTER_SKIP_STATS = 1 << 3

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBi")  # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst len, src len, tos, table, proto, scope, type
_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)

MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}
IPVLAN_FLAGS = {"bridge": 0, "private": 1, "vepa": 2}


def attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes(-size % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _u16(value: int) -> bytes:
    return struct.pack("=H", value)


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def attributes(payload: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each attribute from OFFSET on."""
    while offset + 4 <= len(payload):
        size, kind = struct.unpack_from("=HH", payload, offset)
        if size < 4:
            return
        yield kind & 0x3FFF, payload[offset + 4 : offset + size]
        offset += (size + 3) & ~3


# --- pure request builders -------------------------------------------------------------
@dataclass(frozen=True)
class LinkKind:
    """The kind-specific part of a new link: IFLA_INFO_KIND and its IFLA_INFO_DATA."""

    kind: str
    data: bytes = b""

    def linkinfo(self) -> bytes:
        info = attr(IFLA_INFO_KIND, _name(self.kind))
        if self.data:
            info += attr(IFLA_INFO_DATA, self.data)
        return attr(IFLA_LINKINFO, info)


def macvlan(mode: str) -> LinkKind:
    return LinkKind("macvlan", attr(IFLA_MACVLAN_MODE, _u32(MACVLAN_MODES[mode])))


def ipvlan(mode: str, flag: str) -> LinkKind:
    return LinkKind(
        "ipvlan",
        attr(IFLA_IPVLAN_MODE, _u16(IPVLAN_MODES[mode]))
        + attr(IFLA_IPVLAN_FLAGS, _u16(IPVLAN_FLAGS[flag])),
    )


def vlan(vid: int) -> LinkKind:
    return LinkKind("vlan", attr(IFLA_VLAN_ID, _u16(vid)))


DUMMY = LinkKind("dummy")


def ifinfomsg(index: int = 0, up: bool = False) -> bytes:
    flags = IFF_UP if up else 0
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags)


def newlink_body(
    name: str,
    kind: LinkKind,
    *,
    parent: int | None = None,
    netns_fd: int | None = None,
    mac: str | None = None,
    up: bool = False,
) -> bytes:
    """RTM_NEWLINK: a link of KIND on PARENT (an ifindex of the sender's namespace), born in
    the namespace of NETNS_FD if given."""
    body = ifinfomsg(up=up) + attr(IFLA_IFNAME, _name(name))
    if parent is not None:
        body += attr(IFLA_LINK, _u32(parent))
    if netns_fd is not None:
        body += attr(IFLA_NET_NS_FD, _u32(netns_fd))
    if mac:
        body += attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    return body + kind.linkinfo()


def address_body(index: int, address: IPv4Interface) -> bytes:
    ip = address.ip.packed
    body = IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, 0, index)
    return body + attr(IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip)


def route_body(
    destination: IPv4Network,
    *,
    oif: int | None = None,
    gateway: IPv4Address | None = None,
    source: IPv4Address | None = None,
) -> bytes:
    """A main-table route: via GATEWAY, or straight out of OIF (scope link) when none."""
    scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
    body = RTMSG.pack(
        socket.AF_INET, destination.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, scope,
        RTN_UNICAST, 0,
    )
    if destination.prefixlen:
        body += attr(RTA_DST, destination.network_address.packed)
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway.packed)
    if source is not None:
        body += attr(RTA_PREFSRC, source.packed)
    if oif is not None:
        body += attr(RTA_OIF, _u32(oif))
    return body


@dataclass(frozen=True)
class LinkInfo:
    index: int
    kind: str | None
    parent: int | None  # IFLA_LINK


def parse_link(payload: bytes) -> LinkInfo:
    index = int(IFINFOMSG.unpack_from(payload)[2])
    kind: str | None = None
    parent: int | None = None
    for found, value in attributes(payload, IFINFOMSG.size):
        if found == IFLA_LINK:
            parent = int(struct.unpack_from("=I", value)[0])
        elif found == IFLA_LINKINFO:
            for inner, data in attributes(value):
                if inner == IFLA_INFO_KIND:
                    kind = data.rstrip(b"\0").decode()
    return LinkInfo(index, kind, parent)


def parse_address(payload: bytes) -> tuple[int, IPv4Interface] | None:
    """(ifindex, address) of an RTM_NEWADDR message, None if it has no local address."""
    _, prefixlen, _, _, index = IFADDRMSG.unpack_from(payload)
    found = dict(attributes(payload, IFADDRMSG.size))
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
    if raw is None or len(raw) != 4:
        return None
    return index, IPv4Interface((IPv4Address(raw), prefixlen))


# --- the socket ------------------------------------------------------------------------
class Rtnl:
    """A plain rtnetlink socket in one namespace (None: the calling thread's)."""

    def __init__(self, netns: Path | str | None = None) -> None:
        with entered(netns):
            self.sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
            )
        try:
            self.sock.bind((0, 0))
        except OSError:
            self.sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, what: str, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; return the payloads of its replies (a dump's messages). A
        failure raises KernelError with the errno."""
        self._seq += 1
        seq = self._seq
        flags |= NLM_F_REQUEST | NLM_F_ACK
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind, flags, seq, 0) + body)
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, found, _, found_seq, _ = HEADER.unpack_from(data, offset)
                if length < HEADER.size:
                    break
                payload = data[offset + HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if found_seq != seq:
                    continue
                if found == NLMSG_DONE:
                    return replies
                if found != NLMSG_ERROR:
                    replies.append(payload)
                    continue
                code = -int(struct.unpack_from("=i", payload)[0])
                if code:
                    raise KernelError(f"{what}: {os.strerror(code)}", code)
                return replies

    # --- links -------------------------------------------------------------------------
    def link(self, name: str) -> LinkInfo | None:
        body = (
            ifinfomsg()
            + attr(IFLA_IFNAME, _name(name))
            + attr(IFLA_EXT_MASK, _u32(RTEXT_FILTER_SKIP_STATS))
        )
        try:
            replies = self.request(f"get link {name}", RTM_GETLINK, 0, body)
        except KernelError as exc:
            if exc.errno in _GONE:
                return None
            raise
        return parse_link(replies[0])

    def index(self, name: str) -> int | None:
        found = self.link(name)
        return None if found is None else found.index

    def add_link(self, name: str, body: bytes) -> None:
        self.request(f"create link {name}", RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def set_up(self, index: int) -> None:
        self.request(f"set link {index} up", RTM_NEWLINK, 0, ifinfomsg(index, up=True))

    # --- addresses and routes ----------------------------------------------------------
    def ensure_address(self, index: int, address: IPv4Interface) -> None:
        try:
            self.request(
                f"add address {address}", RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                address_body(index, address),
            )
        except KernelError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def add_route(self, destination: IPv4Network, body: bytes) -> None:
        """Add a route; EEXIST (the destination is routed already) is raised."""
        self.request(f"add route to {destination}", RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)

    def addresses(self) -> list[tuple[int, IPv4Interface]]:
        body = IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        found = (parse_address(p) for p in self.request("dump addresses", RTM_GETADDR,
                                                        NLM_F_DUMP, body))
        return [a for a in found if a is not None]


# --- the operations drivers use ---------------------------------------------------------
def link_exists(name: str) -> bool:
    with Rtnl() as rtnl:
        return rtnl.link(name) is not None


def ensure_parent(name: str, kind: LinkKind, lower: str | None) -> bool:
    """A parent netbay makes (a VLAN sub-interface of LOWER, or a dummy), up; True if it was
    made now. An existing link of another kind is an error."""
    with Rtnl() as rtnl:
        existing = rtnl.link(name)
        if existing is not None:
            if existing.kind != kind.kind:
                raise KernelError(f"{name} exists and is not a {kind.kind} link", errno.EEXIST)
            rtnl.set_up(existing.index)
            return False
        parent = None
        if lower is not None:
            parent = rtnl.index(lower)
            if parent is None:
                raise KernelError(f"cannot create {name}: {lower} does not exist", errno.ENODEV)
        rtnl.add_link(name, newlink_body(name, kind, parent=parent))
        sysctl.disable_ipv6(name)
        index = rtnl.index(name)
        if index is None:
            raise KernelError(f"{name} vanished right after creation", errno.ENODEV)
        rtnl.set_up(index)
        return True


def remove_link(name: str, netns: Path) -> bool:
    """Delete NAME in NETNS; a missing link or namespace is success. (links.Netlink returns
    as soon as the link is unlisted, not after the kernel's ~16 ms RCU wait.)"""
    try:
        with Netlink(netns) as netlink:
            return netlink.remove_link(name)
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
) -> None:
    """A KIND link on PARENT, born inside NETNS as IFNAME (no rename, no move), then there:
    IPv6 off, up, ADDRESS, and a default route via GATEWAY or, with DEVICE_ROUTE, straight
    out of IFNAME (ipvlan L3: the parent routes, nothing answers ARP).

    Netlink round trips: parent lookup and link add on the host; then in NETNS: index, up,
    address, default route."""
    with Rtnl() as host:
        lower = host.index(parent)
        if lower is None:
            raise KernelError(f"parent {parent} does not exist", errno.ENODEV)
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            host.add_link(ifname, newlink_body(ifname, kind, parent=lower, netns_fd=fd, mac=mac))
        finally:
            os.close(fd)
    with entered(netns):
        sysctl.disable_ipv6(ifname)
        inside = Rtnl()
    with inside:
        index = inside.index(ifname)
        if index is None:
            raise KernelError(f"{ifname} did not appear in {netns}", errno.ENODEV)
        inside.set_up(index)
        if address is not None:
            inside.ensure_address(index, address)
        default = IPv4Network("0.0.0.0/0")
        if gateway is not None:
            inside.add_route(default, route_body(default, gateway=gateway))
        elif device_route:
            inside.add_route(default, route_body(default, oif=index))


def ensure_shim(
    name: str,
    *,
    parent: str,
    kind: LinkKind,
    routes: list[tuple[IPv4Network, IPv4Interface]],
) -> bool:
    """The host's own link on PARENT (a sibling of the containers' links, so the host can
    reach them), up, holding each route's source address, with a route to each destination
    through it. True if it was made now. A destination the host routes already is an error
    when the shim is new (its route would never be used); an existing shim keeps its own."""
    with Rtnl() as host:
        existing = host.link(name)
        if existing is not None and existing.kind != kind.kind:
            raise KernelError(f"{name} exists and is not a {kind.kind} link", errno.EEXIST)
        created = existing is None
        if created:
            lower = host.index(parent)
            if lower is None:
                raise KernelError(f"parent {parent} does not exist", errno.ENODEV)
            host.add_link(name, newlink_body(name, kind, parent=lower))
            sysctl.disable_ipv6(name)
        index = host.index(name)
        if index is None:
            raise KernelError(f"{name} vanished right after creation", errno.ENODEV)
        host.set_up(index)
        for destination, source in routes:
            host.ensure_address(index, IPv4Interface((source.ip, 32)))
            try:
                host.add_route(destination, route_body(destination, oif=index, source=source.ip))
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


def ipv4_addresses(name: str) -> list[IPv4Interface]:
    """NAME's IPv4 addresses, in the calling thread's namespace (none if NAME is gone)."""
    with Rtnl() as rtnl:
        index = rtnl.index(name)
        if index is None:
            return []
        return [a for i, a in rtnl.addresses() if i == index]
