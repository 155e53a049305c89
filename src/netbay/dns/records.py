"""What netbay's DNS server knows, computed from the record: where it listens, who may ask,
and which names each asker may resolve. Pure except for `load`, which reads the store
(through the Store protocol: `dns_records`, and `version` before each batch).

Scoping: an asker is a container endpoint; it resolves the names of the containers on the
networks its container is attached to (container name, hostname, the endpoint's aliases on
that network, and `NAME.NETWORK` for each), nothing else. Askers whose containers share the
same networks share one View (and its answer cache). On a global network the names other
nodes publish there (the store's remote names) resolve too.

Families: a name answers A with its endpoints' IPv4 addresses and AAAA with their IPv6 ones;
a name with addresses of one family only has no data of the other (NOERROR, no answers).
An endpoint asks from either of its addresses, through the gateway of either family, and
gets the same view. Remote names answer A with their IPv4 address and, on a dual-stack
cluster network, AAAA with their IPv6 one (NameEntry.address6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..drivers import capabilities
from ..model import CREATING, READY, REMOVING, Endpoint, IPAddress, IPNetwork, Network
from ..name_entry import NameEntry
from ..store.base import ContainerRow, DnsRecords, EndpointRow, RemoteName, Store
from ..store.sqlite import SQLiteStore
from .message import reverse_name

__all__ = [
    "Asker", "ContainerRow", "EndpointRow", "ListenPoint", "RemoteName", "View", "Zone",
    "build_zone", "connect", "data_version", "dns_address", "dns_server_for", "listen_points",
    "load", "published_names", "serves",
]


@dataclass(frozen=True)
class ListenPoint:
    """The server answers on ADDRESS:53 (IPv4 or IPv6) for packets that came in through
    DEVICE; None: by any device (a routed network's gateway, held on lo: each container
    comes in by its own veth, so only the source check stands between it and the rest).
    Not ordered (addresses of two families do not compare): `listen_points` sorts them."""

    address: IPAddress
    device: str | None
    network_id: str = field(compare=False)

    def sort_key(self) -> tuple[int, int, str]:
        """IPv4 points first, then by address and device."""
        return self.address.version, int(self.address), self.device or ""


def serves(network: Network) -> bool:
    """A ready network of a DNS driver; one on a host bridge once the bridge exists (the
    default bridge is made for its first container)."""
    caps = capabilities(network.driver)
    return network.state == READY and caps.dns and bool(network.device or not caps.host_bridge)


def dns_address(network: Network, address: IPAddress) -> IPAddress | None:
    """Where a container at ADDRESS on NETWORK asks for names, if the server serves it: the
    gateway of its subnet, of ADDRESS's family (not the endpoint's gateway: a routed one's
    is 169.254.1.1)."""
    if not serves(network):
        return None
    return next((s.gateway for s in network.subnets if address in s.subnet), None)


def dns_server_for(network: Network, endpoint: Endpoint) -> IPAddress | None:
    """Where the container of ENDPOINT asks for names through it: the IPv4 gateway of its
    subnet when it has an IPv4 address (as before IPv6 came), else the IPv6 one."""
    for interface in endpoint.addresses:  # IPv4 first
        server = dns_address(network, interface.ip)
        if server is not None:
            return server
    return None


def listen_points(networks: Iterable[Network], in_use: Callable[[str], bool]) -> list[ListenPoint]:
    """A network DNS serves needs the server once it has an endpoint: on its gateway
    addresses, of both families."""
    points = []
    for network in networks:
        if serves(network) and in_use(network.id):
            points += [
                ListenPoint(s.gateway, network.device, network.id)
                for s in network.subnets
                if s.gateway is not None
            ]
    return sorted(points, key=ListenPoint.sort_key)


class View:
    """The names one set of networks can see, and the answers already built for them."""

    __slots__ = ("names", "names6", "reverse", "forward", "cache")

    def __init__(self, forward: bool) -> None:
        # every name: its packed IPv4 addresses (none for a name with IPv6 ones only)
        self.names: dict[str, list[bytes]] = {}
        self.names6: dict[str, list[bytes]] = {}  # the names with IPv6 addresses: those
        self.reverse: dict[str, str] = {}  # in-addr.arpa / ip6.arpa name -> NAME.NETWORK
        self.forward = forward  # may other names go upstream (not internal-only)
        self.cache: dict[bytes, bytes] = {}  # query minus its ID -> answer minus its ID


@dataclass(frozen=True)
class Asker:
    view: View
    servers: tuple[str, ...]  # the container's --dns servers; empty: the host's
    container: str


@dataclass
class Zone:
    listen: list[ListenPoint] = field(default_factory=list)
    askers: dict[str, dict[str, Asker]] = field(default_factory=dict)  # network -> ip -> asker
    known: frozenset[str] = frozenset()  # every name served on any network
    subnets: tuple[IPNetwork, ...] = ()  # every served network's subnets, both families

    def in_our_subnets(self, address: IPAddress) -> bool:
        return any(address in subnet for subnet in self.subnets)


def _names(name: str, aliases: Iterable[str]) -> list[str]:
    out: list[str] = []
    for each in (name, *aliases):
        low = each.lower().rstrip(".")
        if low and low not in out:
            out.append(low)
    return out


def _live(containers: Iterable[ContainerRow]) -> dict[str, ContainerRow]:
    return {c.id: c for c in containers if c.state not in (CREATING, REMOVING)}


def _answering(endpoint: EndpointRow, live: dict[str, ContainerRow]) -> bool:
    """An endpoint whose names DNS answers: ready, with an address of either family, of a
    live container."""
    return (endpoint.state == READY and endpoint.container_id in live
            and (endpoint.address is not None or endpoint.address6 is not None))


class _Members:
    """The live endpoints of the served networks, and the names each network holds."""

    def __init__(
        self,
        nets: dict[str, Network],
        containers: Iterable[ContainerRow],
        endpoints: Iterable[EndpointRow],
    ) -> None:
        self.nets = nets
        self.live = _live(containers)
        self.endpoints = [
            e for e in endpoints if e.network_id in nets and _answering(e, self.live)
        ]
        # per network: name -> IPv4 / IPv6 addresses, reverse name -> target
        self.names: dict[str, dict[str, list[bytes]]] = {n: {} for n in nets}
        self.names6: dict[str, dict[str, list[bytes]]] = {n: {} for n in nets}
        self.reverse: dict[str, dict[str, str]] = {n: {} for n in nets}
        self.joined: dict[str, list[str]] = {}  # container -> its networks, in attach order
        for e in self.endpoints:
            self._add(e)
            self.joined.setdefault(e.container_id, []).append(e.network_id)

    def _add(self, e: EndpointRow) -> None:
        """E's names on its network, with its address of each family it has."""
        container, network = self.live[e.container_id], self.nets[e.network_id]
        names = self.names[network.id]
        suffix = "." + network.name.lower()
        keys = [key for name in _names(container.name, (container.hostname, *e.aliases))
                for key in (name, name + suffix)]
        if e.address is not None:
            packed = e.address.packed
            for key in keys:
                names.setdefault(key, []).append(packed)
        else:  # IPv6 only: the names exist (A has no data), with no IPv4 address
            for key in keys:
                names.setdefault(key, [])
        target = container.name + "." + network.name
        reverse = self.reverse[network.id]
        if e.address is not None:
            reverse[reverse_name(e.address)] = target
        if e.address6 is not None:
            names6, packed6 = self.names6[network.id], e.address6.packed
            for key in keys:
                names6.setdefault(key, []).append(packed6)
            reverse[reverse_name(e.address6)] = target

    def add_remote(self, remote: Iterable[RemoteName]) -> None:
        """Other nodes' names on the served networks. A name a container of this host holds
        on the network stays its own (Docker, too, answers from its own containers first);
        names only other nodes hold get all their addresses, as a shared alias does here."""
        local = {n: set(names) for n, names in self.names.items()}
        for item in remote:
            network = self.nets.get(item.network_id)
            if network is None:
                continue
            entry, names = item.entry, self.names[network.id]
            suffix = "." + network.name.lower()
            names6 = self.names6[network.id]
            for name in _names(entry.name, entry.aliases):
                for key in (name, name + suffix):
                    if key not in local[network.id]:
                        names.setdefault(key, []).append(entry.address.packed)
                        if entry.address6 is not None:
                            names6.setdefault(key, []).append(entry.address6.packed)
            target = entry.name + "." + network.name
            self.reverse[network.id].setdefault(reverse_name(entry.address), target)
            if entry.address6 is not None:
                self.reverse[network.id].setdefault(reverse_name(entry.address6), target)

    def view(self, net_ids: tuple[str, ...]) -> View:
        """The names a container on NET_IDS sees."""
        view = View(forward=any(not self.nets[n].internal for n in net_ids))
        for n in net_ids:
            for name, addresses in self.names[n].items():
                have = view.names.setdefault(name, [])
                have += [a for a in addresses if a not in have]
            for name, addresses in self.names6[n].items():
                have = view.names6.setdefault(name, [])
                have += [a for a in addresses if a not in have]
            view.reverse.update(self.reverse[n])
        return view


def build_zone(
    networks: Iterable[Network],
    containers: Iterable[ContainerRow],
    endpoints: Iterable[EndpointRow],
    remote: Iterable[RemoteName] = (),
) -> Zone:
    nets = {n.id: n for n in networks if serves(n)}
    endpoints = list(endpoints)
    members = _Members(nets, containers, endpoints)
    members.add_remote(remote)
    in_use = {e.network_id for e in endpoints}  # any state: an attach under way too
    zone = Zone(
        listen=listen_points(nets.values(), in_use.__contains__),
        known=frozenset(k for names in members.names.values() for k in names),
        subnets=tuple(s.subnet for n in nets.values() for s in n.subnets),
    )
    views: dict[tuple[str, ...], View] = {}  # containers on the same networks share one
    for e in members.endpoints:
        net_ids = tuple(members.joined[e.container_id])
        view = views.get(net_ids)
        if view is None:
            view = views[net_ids] = members.view(net_ids)
        asker = Asker(view, members.live[e.container_id].dns, e.container_id)
        askers = zone.askers.setdefault(e.network_id, {})
        for address in (e.address, e.address6):  # it may ask from either
            if address is not None:
                askers[str(address)] = asker
    return zone


# --- reading the store ------------------------------------------------------------------
def connect(db: str) -> Store:
    """The record, read-only (WAL: reads never block the daemon's writes)."""
    return SQLiteStore(Path(db), read_only=True)


def data_version(store: Store) -> int:
    """Moves whenever the record changed (the daemon committed)."""
    return store.version()


def load(store: Store) -> Zone:
    """The zone as the record has it now: one consistent read."""
    records = store.dns_records()
    return build_zone(records.networks, records.containers, records.endpoints,
                      records.remote_names)


def published_names(
    records: DnsRecords, network_id: str, ipv6: bool = False,
) -> list[NameEntry]:
    """What this host publishes for the cluster on a global network: the names its DNS
    answers for each endpoint there with an IPv4 address (the container's name; its hostname
    and the endpoint's aliases as aliases), in attach order; IPV6 (a dual-stack network):
    with the endpoint's IPv6 address too."""
    live = _live(records.containers)
    entries = []
    for e in records.endpoints:
        if e.network_id == network_id and e.address is not None and _answering(e, live):
            container = live[e.container_id]
            aliases = _names(container.name, (container.hostname, *e.aliases))[1:]
            address6 = e.address6 if ipv6 else None
            entries.append(NameEntry(container.name, tuple(aliases), e.address, container.id,
                                     address6=address6))
    return entries
