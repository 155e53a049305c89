"""What netbay wants in the host's namespace (Desired: from the record, pure) and what the
kernel has there (Observed: one snapshot). Both are plain values, so the comparison is a
pure function (compare.py) and tests build either side by hand.

A wanted object names who wants it (OWNER: "network web", "endpoint 0123456789ab") for the
one line that says what drifted. Only what netbay set is wanted: an extra address or route
on netbay's bridge is someone's business, not drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

from ..model import IPAddress, IPNetwork

RTPROT_KERNEL, RTPROT_STATIC = 2, 4  # rtnetlink's protocols: an address's subnet, `ip route`
Interface = IPv4Interface | IPv6Interface  # an address on a link, of either family
LOOPBACK = "lo"


@dataclass(frozen=True)
class WantedLink:
    """A link of the host as netbay made it. REMAKE: the network whose devices netbay
    re-makes when the link is gone (None: not netbay's to make, so a missing one is
    reported). LOWER: a link it hangs off (a shim's parent); while that one is missing,
    nothing of this one is checked."""

    name: str
    owner: str
    role: str = ""  # "bridge", "host link", "parent": how the missing line names it
    kind: str | None = None  # "bridge", "veth", "macvlan"...; None: any
    master: str | None = None  # the bridge it is a port of
    up: bool = True
    mtu: int | None = None
    mac: str | None = None  # None: any (the record does not hold it)
    addresses: frozenset[Interface] = frozenset()
    hairpin: bool = False  # a published port's target: frames may leave by the port they came
    remake: str | None = None
    lower: str | None = None


@dataclass(frozen=True)
class WantedRoute:
    """A route of the main table, of either family: to DESTINATION out of DEVICE (via
    GATEWAY, from SOURCE; an IPv6 route has no SOURCE: the kernel takes the link's)."""

    destination: IPNetwork
    device: str
    owner: str
    source: IPAddress | None = None
    gateway: IPAddress | None = None
    protocol: int = RTPROT_STATIC  # as it is put back; any protocol matches

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"route {self.destination}{via} dev {self.device}"


@dataclass(frozen=True)
class WantedBlackhole:
    """`blackhole DESTINATION` in the main table: a routed network's block, where an address
    of it that no container holds ends (instead of going back out by the default route).
    Of either family: an IPv6 block is held as an IPv4 one is."""

    destination: IPNetwork
    owner: str

    def __str__(self) -> str:
        return f"blackhole {self.destination}"


@dataclass(frozen=True)
class WantedLocalAddress:
    """ADDRESS/32 on lo, scope host: an address the host answers on whichever link a packet
    came in by (a routed network's DNS, on its block's gateway)."""

    address: IPv4Address
    owner: str

    @property
    def interface(self) -> IPv4Interface:
        return IPv4Interface((self.address, 32))

    def __str__(self) -> str:
        return f"{self.interface} on {LOOPBACK}"


@dataclass(frozen=True)
class WantedSysctl:
    """net.ipv4.conf.DEVICE.KEY when DEVICE is given (device names may hold dots), else the
    dotted KEY itself."""

    key: str
    value: str
    owner: str
    device: str | None = None

    @property
    def name(self) -> str:
        return f"net.ipv4.conf.{self.device}.{self.key}" if self.device else self.key

    @property
    def where(self) -> tuple[str, str | None]:
        return (self.key, self.device)


@dataclass(frozen=True)
class Desired:
    """Everything netbay wants in one namespace; networks' parts add up with +."""

    links: tuple[WantedLink, ...] = ()
    routes: tuple[WantedRoute, ...] = ()
    sysctls: tuple[WantedSysctl, ...] = ()
    firewall: bool = False  # netbay's nftables tables
    blackholes: tuple[WantedBlackhole, ...] = ()
    local_addresses: tuple[WantedLocalAddress, ...] = ()

    def __add__(self, other: Desired) -> Desired:
        return Desired(
            self.links + other.links,
            self.routes + other.routes,
            _unique(self.sysctls + other.sysctls),
            self.firewall or other.firewall,
            self.blackholes + other.blackholes,
            self.local_addresses + other.local_addresses,
        )

    def with_hairpin(self, ports: Iterable[str]) -> Desired:
        """The links named PORTS (published ports' targets) with hairpin on."""
        names = set(ports)
        links = tuple(replace(w, hairpin=True) if w.name in names else w for w in self.links)
        return replace(self, links=links)

    def with_macs(self, macs: Mapping[str, str]) -> Desired:
        """Links whose MAC the record does not hold, wanted with the MAC they had (MACS by
        name): a re-made bridge keeps the gateway MAC its containers have in their caches."""
        links = tuple(
            replace(w, mac=macs[w.name]) if w.mac is None and w.name in macs else w
            for w in self.links
        )
        return replace(self, links=links)

    def sysctl_keys(self) -> list[tuple[str, str | None]]:
        return [s.where for s in self.sysctls]


def _unique(sysctls: tuple[WantedSysctl, ...]) -> tuple[WantedSysctl, ...]:
    """One entry per sysctl (every bridge network wants ip_forward): the first owner's."""
    seen: dict[tuple[str, str | None], WantedSysctl] = {}
    for sysctl in sysctls:
        seen.setdefault(sysctl.where, sysctl)
    return tuple(seen.values())


@dataclass(frozen=True)
class LinkState:
    name: str
    index: int
    kind: str | None = None
    master: str | None = None  # the name of the bridge it is a port of
    up: bool = True
    mtu: int | None = None
    mac: str | None = None
    hairpin: bool = False


@dataclass(frozen=True)
class RouteState:
    destination: IPNetwork
    device: str | None
    gateway: IPAddress | None = None


@dataclass(frozen=True)
class Observed:
    """One namespace as the kernel has it (a snapshot taken without the kernel lock)."""

    links: Mapping[str, LinkState] = field(default_factory=dict)
    addresses: Mapping[str, frozenset[Interface]] = field(default_factory=dict)
    routes: frozenset[RouteState] = frozenset()
    # the wanted sysctls' values; None: no such sysctl (its device is gone)
    sysctls: Mapping[tuple[str, str | None], str | None] = field(default_factory=dict)
    firewall: bool = True
    blackholes: frozenset[IPNetwork] = frozenset()  # the main tables' blackhole routes

    def routed(self, route: WantedRoute) -> bool:
        return RouteState(route.destination, route.device, route.gateway) in self.routes


@dataclass(frozen=True)
class Watched:
    """What the last pass wanted, for telling the kernel's events that concern netbay from
    the rest: the wanted links' (and routes' and local addresses' devices') names, the
    indices they had, and the wanted blackholes (a route of no device)."""

    names: frozenset[str] = frozenset()
    indices: frozenset[int] = frozenset()
    blackholes: frozenset[IPNetwork] = frozenset()

    @classmethod
    def of(cls, desired: Desired, observed: Observed) -> Watched:
        names = {w.name for w in desired.links} | {r.device for r in desired.routes}
        names |= {LOOPBACK} if desired.local_addresses else set()
        indices = {link.index for name, link in observed.links.items() if name in names}
        blackholes = {b.destination for b in desired.blackholes}
        return cls(frozenset(names), frozenset(indices), frozenset(blackholes))
