"""What the kernel says about one network namespace: links, addresses, routes, neighbours
(and the FDB entries of its VXLAN devices).

Read with one pyroute2 socket opened inside the namespace (a thread steps in, opens it and
steps back); the results are plain frozen records, so everything that interprets them
(topology, doctor, trace) is pure and tested without a kernel. IPv6 addresses and routes are
read too, but not the link-local ones: every interface with IPv6 has them, and nothing netbay
makes is reached by them.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)
from typing import Any

from ..errors import KernelError
from ..kernel.netlink import open_iproute
from ..kernel.netns import entered
from ..kernel.rtnetlink import Rtnetlink

MACVLAN_MODES = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
IPVLAN_MODES = {0: "l2", 1: "l3", 2: "l3s"}
NUD_STATES = {
    0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay", 0x10: "probe",
    0x20: "failed", 0x40: "noarp", 0x80: "permanent",
}
RT_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable",
            8: "prohibit"}
RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE = 0
RTPROT_RA = 9  # a route the kernel learnt from a router advertisement
IFA_F_PERMANENT = 0x80  # an address configured by hand (not SLAAC's, not DHCPv6's)
IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: str  # "veth", "bridge", "macvlan", "vxlan"...; "" for a plain device
    mac: str = ""
    mtu: int = 0
    up: bool = False
    master: int | None = None  # index of the bridge it is a port of
    peer: int | None = None  # IFLA_LINK: a veth's peer, a macvlan's parent (index)
    peer_netnsid: int | None = None  # set when the peer/parent lives in another namespace
    details: tuple[tuple[str, str], ...] = ()  # kind-specific: vni, mode, remote...

    def detail(self, key: str) -> str | None:
        return dict(self.details).get(key)


@dataclass(frozen=True)
class Route:
    destination: IPv4Network | None  # None: the default route
    device: str
    gateway: IPv4Address | None = None
    source: IPv4Address | None = None
    kind: str = "unicast"
    protocol: int = 0  # who made it (RTPROT_*): netbay's multi-host routes have RTPROT_NETBAY
    onlink: bool = False

    def __str__(self) -> str:
        return _route_text(self)


@dataclass(frozen=True)
class Route6:
    """An IPv6 route (a type of its own: the IPv4 code reads Route's addresses as IPv4)."""

    destination: IPv6Network | None  # None: the default route
    device: str
    gateway: IPv6Address | None = None  # mostly a router's link-local address
    source: IPv6Address | None = None
    kind: str = "unicast"
    protocol: int = 0  # RTPROT_RA: learnt from a router advertisement
    onlink: bool = False

    def __str__(self) -> str:
        return _route_text(self)


def _route_text(route: Route | Route6) -> str:
    parts = [str(route.destination or "default")]
    if route.kind != "unicast":
        parts.insert(0, route.kind)
    if route.gateway is not None:
        parts.append(f"via {route.gateway}")
    if route.device:
        parts.append(f"dev {route.device}")
    if route.onlink:
        parts.append("onlink")
    if route.source is not None:
        parts.append(f"src {route.source}")
    return " ".join(parts)


@dataclass(frozen=True)
class Neighbour:
    address: IPAddress
    mac: str
    device: str
    state: str


@dataclass(frozen=True)
class Fdb:
    """A forwarding entry of a VXLAN device: frames to MAC go to the VTEP at DESTINATION."""

    mac: str
    destination: IPv4Address
    device: str


@dataclass(frozen=True)
class Namespace:
    """Everything read from one namespace."""

    links: tuple[Link, ...] = ()
    addresses: tuple[tuple[str, IPInterface], ...] = ()  # (device, address): IPv4 first
    routes: tuple[Route, ...] = ()  # IPv4
    neighbours: tuple[Neighbour, ...] = ()
    fdb: tuple[Fdb, ...] = ()  # of the VXLAN devices
    routes6: tuple[Route6, ...] = ()  # IPv6, main table, link-local ones left out
    dynamic6: tuple[str, ...] = ()  # devices with an IPv6 address not set by hand (SLAAC...)

    def link(self, name: str) -> Link | None:
        return next((lk for lk in self.links if lk.name == name), None)

    def addresses_of(self, name: str) -> list[IPInterface]:
        return [a for dev, a in self.addresses if dev == name]

    def addresses4(self) -> list[tuple[str, IPv4Interface]]:
        return [(d, a) for d, a in self.addresses if isinstance(a, IPv4Interface)]


def _details(kind: str, data: Any) -> tuple[tuple[str, str], ...]:
    if data is None:
        return ()
    out: list[tuple[str, str]] = []
    if kind == "vxlan":
        for key, attr in (("vni", "IFLA_VXLAN_ID"), ("remote", "IFLA_VXLAN_GROUP"),
                          ("local", "IFLA_VXLAN_LOCAL"), ("dstport", "IFLA_VXLAN_PORT"),
                          ("dev", "IFLA_VXLAN_LINK")):
            value = data.get(attr)
            if value not in (None, "", 0):
                out.append((key, str(value)))
    elif kind in ("macvlan", "macvtap"):
        mode = data.get("IFLA_MACVLAN_MODE")
        if mode is not None:
            # pyroute2 decodes some modes to names already ('bridge'), others not
            out.append(("mode", MACVLAN_MODES.get(mode, str(mode)) if isinstance(mode, int)
                        else str(mode)))
    elif kind == "ipvlan":
        mode = data.get("IFLA_IPVLAN_MODE")
        if mode is not None:
            out.append(("mode", IPVLAN_MODES.get(mode, str(mode)) if isinstance(mode, int)
                        else str(mode)))
    elif kind == "vlan":
        vid = data.get("IFLA_VLAN_ID")
        if vid is not None:
            out.append(("vid", str(vid)))
    return tuple(out)


def _link(msg: Any) -> Link:
    info = msg.get("IFLA_LINKINFO")
    kind = (info.get("IFLA_INFO_KIND") if info is not None else None) or ""
    data = info.get("IFLA_INFO_DATA") if info is not None else None
    master = msg.get("IFLA_MASTER")
    peer = msg.get("IFLA_LINK")
    netnsid = msg.get("IFLA_LINK_NETNSID")
    return Link(
        name=str(msg.get("IFLA_IFNAME")),
        index=int(msg["index"]),
        kind=str(kind),
        mac=str(msg.get("IFLA_ADDRESS") or ""),
        mtu=int(msg.get("IFLA_MTU") or 0),
        up=bool(msg["flags"] & 1),
        master=int(master) if master else None,
        peer=int(peer) if peer and int(peer) != int(msg["index"]) else None,
        peer_netnsid=int(netnsid) if netnsid is not None else None,
        details=_details(str(kind), data),
    )


def _lower_by_name(link: Link, names: dict[int, str]) -> Link:
    """A VXLAN's lower device by name (the kernel gives its index)."""
    lower = link.detail("dev")
    if lower is None or not lower.isdigit():
        return link
    details = tuple((k, names.get(int(v), v) if k == "dev" else v) for k, v in link.details)
    return dataclasses.replace(link, details=details)


def _route_fields(msg: Any, names: dict[int, str]) -> dict[str, Any] | None:
    """A main-table route's fields as text (the family's types come after)."""
    if msg.get("RTA_TABLE", msg.get("table")) != 254:
        return None
    dst_len = int(msg["dst_len"])
    return {
        "destination": f"{msg.get('RTA_DST')}/{dst_len}" if dst_len else None,
        "device": names.get(int(msg.get("RTA_OIF") or 0), ""),
        "gateway": msg.get("RTA_GATEWAY") or None, "source": msg.get("RTA_PREFSRC") or None,
        "kind": RT_TYPES.get(int(msg["type"]), str(msg["type"])),
        "protocol": int(msg["proto"]), "onlink": bool(int(msg["flags"]) & RTNH_F_ONLINK),
    }


def _route(msg: Any, names: dict[int, str]) -> Route | None:
    f = _route_fields(msg, names)
    if f is None:
        return None
    return Route(
        IPv4Network(f["destination"]) if f["destination"] else None, f["device"],
        IPv4Address(f["gateway"]) if f["gateway"] else None,
        IPv4Address(f["source"]) if f["source"] else None, f["kind"], f["protocol"], f["onlink"])


def _route6(msg: Any, names: dict[int, str]) -> Route6 | None:
    f = _route_fields(msg, names)
    if f is None:
        return None
    return Route6(
        IPv6Network(f["destination"]) if f["destination"] else None, f["device"],
        IPv6Address(f["gateway"]) if f["gateway"] else None,
        IPv6Address(f["source"]) if f["source"] else None, f["kind"], f["protocol"], f["onlink"])


def _state_name(state: int) -> str:
    return next((n for bit, n in NUD_STATES.items() if state & bit), str(state))


def _neighbour(msg: Any, names: dict[int, str]) -> Neighbour | None:
    address = msg.get("NDA_DST")
    if not address:
        return None
    return Neighbour(
        address=ip_address(address),
        mac=str(msg.get("NDA_LLADDR") or ""),
        device=names.get(int(msg["ifindex"]), ""),
        state=_state_name(int(msg["state"])),
    )


def tunnel_entries(
    netns: str | os.PathLike[str] | None, tunnels: list[Link]
) -> tuple[tuple[Neighbour, ...], tuple[Fdb, ...]]:
    """The neighbours and FDB entries of the VXLAN devices TUNNELS (each dump filtered to
    one device by the kernel: the host's bridges hold many entries of no interest here)."""
    neighbours: list[Neighbour] = []
    fdb: list[Fdb] = []
    with Rtnetlink(netns) as rtnl:
        for tunnel in tunnels:
            neighbours += [Neighbour(n.address, n.lladdr or "", tunnel.name, _state_name(n.state))
                           for n in rtnl.neighbours(tunnel.index)]
            fdb += [Fdb(e.lladdr, e.destination, tunnel.name) for e in rtnl.fdb(tunnel.index)
                    if e.destination is not None]
    return tuple(neighbours), tuple(fdb)


def _addresses6(ipr: Any, names: dict[int, str]) -> tuple[list[tuple[str, IPInterface]],
                                                           list[str]]:
    """The IPv6 addresses of global scope (none link-local, not ::1), and the devices where
    one of them was not set by hand (SLAAC's, DHCPv6's)."""
    found: list[tuple[str, IPInterface]] = []
    dynamic: list[str] = []
    for m in ipr.addr("dump", family=socket.AF_INET6):
        if int(m["scope"]) != RT_SCOPE_UNIVERSE:
            continue
        device = names.get(int(m["index"]), "")
        found.append((device, IPv6Interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")))
        flags = m.get("IFA_FLAGS")
        if not int(flags if flags is not None else m["flags"]) & IFA_F_PERMANENT:
            dynamic.append(device)
    return found, sorted(set(dynamic))


def _routes6(ipr: Any, names: dict[int, str]) -> list[Route6]:
    routes = (_route6(m, names) for m in ipr.route("dump", family=socket.AF_INET6))
    return [r for r in routes if r is not None and not (
        r.destination is not None and (r.destination.is_link_local or r.destination.is_multicast))]


def _neighbours(ipr: Any, names: dict[int, str], family: int) -> list[Neighbour]:
    return [n for n in (_neighbour(m, names) for m in ipr.neigh("dump", family=family))
            if n is not None]


def _read_ipv6(ipr: Any, names: dict[int, str], neighbours: bool) -> tuple[
    list[tuple[str, IPInterface]], list[str], list[Route6], list[Neighbour]
]:
    """What IPv6 the namespace has (nothing where the kernel has no IPv6)."""
    try:
        addresses, dynamic = _addresses6(ipr, names)
        routes = _routes6(ipr, names)
        neigh = _neighbours(ipr, names, socket.AF_INET6) if neighbours else []
    except KernelError:
        return [], [], [], []
    return addresses, dynamic, routes, neigh


def read(
    netns: str | os.PathLike[str] | None = None, *, neighbours: bool = False,
    tunnels: bool = False,
) -> Namespace:
    """Links, addresses, main-table routes (and neighbours) of NETNS (None: ours), IPv4's
    and IPv6's; with TUNNELS, the neighbours and FDB entries of its VXLAN devices too."""
    ipr = open_iproute(netns)  # its failures are KernelError
    try:
        links = tuple(_link(m) for m in ipr.link("dump"))
        names = {lk.index: lk.name for lk in links}
        links = tuple(_lower_by_name(lk, names) for lk in links)
        addresses: list[tuple[str, IPInterface]] = [
            (names.get(int(m["index"]), ""),
             IPv4Interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"))
            for m in ipr.addr("dump", family=socket.AF_INET)
        ]
        routes = tuple(
            r for r in (_route(m, names) for m in ipr.route("dump", family=socket.AF_INET))
            if r is not None
        )
        neigh = tuple(_neighbours(ipr, names, socket.AF_INET)) if neighbours else ()
        addresses6, dynamic6, routes6, neigh6 = _read_ipv6(ipr, names, neighbours)
    finally:
        ipr.close()
    neigh += tuple(neigh6)
    fdb: tuple[Fdb, ...] = ()
    if tunnels:
        vxlans = [lk for lk in links if lk.kind == "vxlan"]
        tunnel_neigh, fdb = tunnel_entries(netns, vxlans) if vxlans else ((), ())
        neigh += tuple(n for n in tunnel_neigh if n not in neigh)
    return Namespace(links, tuple(addresses + addresses6), routes, neigh, fdb, tuple(routes6),
                     tuple(dynamic6))


def sysctl(key: str, netns: str | os.PathLike[str] | None = None) -> str | None:
    """A sysctl of NETNS (net.* keys are per namespace: /proc/sys shows the reader's)."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with entered(netns), open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, KernelError):
        return None


def interface_sysctl(device: str, key: str, tree: str = "ipv4") -> str | None:
    """net.TREE.conf.DEVICE.KEY of this thread's namespace (device names may hold dots)."""
    try:
        with open(f"/proc/sys/net/{tree}/conf/{device}/{key}", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None
