"""What netbay's DNS server knows, computed from the record: where it listens, who may ask,
and which names each asker may resolve. Pure except for `load`, which reads the store.

Scoping: an asker is a container endpoint; it resolves the names of the containers on the
networks its container is attached to (container name, hostname, the endpoint's aliases on
that network, and `NAME.NETWORK` for each), nothing else. Askers whose containers share the
same networks share one View (and its answer cache).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ..model import CREATING, READY, REMOVING, Network
from ..store.sqlite import _network
from .wire import reverse_name


@dataclass(frozen=True, order=True)
class ListenPoint:
    """The server answers on ADDRESS:53 for packets that came in through DEVICE."""

    address: IPv4Address
    device: str
    network_id: str = field(compare=False)


def serves(network: Network) -> bool:
    return network.state == READY and network.driver == "bridge" and bool(network.device)


def listen_points(networks: Iterable[Network], in_use: Callable[[str], bool]) -> list[ListenPoint]:
    """A bridge network needs the server once it has an endpoint: on its gateway addresses."""
    points = []
    for network in networks:
        if serves(network) and network.device and in_use(network.id):
            points += [
                ListenPoint(s.gateway, network.device, network.id)
                for s in network.subnets
                if s.gateway is not None
            ]
    return sorted(points)


@dataclass(frozen=True)
class ContainerRow:
    id: str
    name: str
    hostname: str
    state: str
    dns: tuple[str, ...] = ()  # its --dns servers; empty: the host's


@dataclass(frozen=True)
class EndpointRow:
    network_id: str
    container_id: str
    address: IPv4Address | None
    aliases: tuple[str, ...] = ()
    state: str = READY


class View:
    """The names one set of networks can see, and the answers already built for them."""

    __slots__ = ("names", "reverse", "forward", "cache")

    def __init__(self, forward: bool) -> None:
        self.names: dict[str, list[bytes]] = {}  # name -> packed IPv4 addresses
        self.reverse: dict[str, str] = {}  # d.c.b.a.in-addr.arpa -> NAME.NETWORK
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
    subnets: tuple[IPv4Network, ...] = ()  # every served network's subnets

    def in_our_subnets(self, address: IPv4Address) -> bool:
        return any(address in subnet for subnet in self.subnets)


def _names(container: ContainerRow, endpoint: EndpointRow) -> list[str]:
    out: list[str] = []
    for name in (container.name, container.hostname, *endpoint.aliases):
        low = name.lower().rstrip(".")
        if low and low not in out:
            out.append(low)
    return out


def build_zone(
    networks: Iterable[Network],
    containers: Iterable[ContainerRow],
    endpoints: Iterable[EndpointRow],
) -> Zone:
    nets = {n.id: n for n in networks if serves(n)}
    endpoints = list(endpoints)
    live = {c.id: c for c in containers if c.state not in (CREATING, REMOVING)}
    members = [
        e for e in endpoints
        if e.state == READY and e.address is not None and e.network_id in nets
        and e.container_id in live
    ]
    # per network: name -> addresses, reverse name -> target
    by_net: dict[str, dict[str, list[bytes]]] = {n: {} for n in nets}
    rev_by_net: dict[str, dict[str, str]] = {n: {} for n in nets}
    joined: dict[str, list[str]] = {}  # container -> its networks, in attach order
    for e in members:
        assert e.address is not None
        container, network = live[e.container_id], nets[e.network_id]
        packed = e.address.packed
        suffix = "." + network.name.lower()
        for name in _names(container, e):
            for key in (name, name + suffix):
                by_net[network.id].setdefault(key, []).append(packed)
        rev_by_net[network.id][reverse_name(e.address)] = container.name + "." + network.name
        joined.setdefault(e.container_id, []).append(e.network_id)

    views: dict[tuple[str, ...], View] = {}

    def view_of(net_ids: tuple[str, ...]) -> View:
        view = views.get(net_ids)
        if view is None:
            view = View(forward=any(not nets[n].internal for n in net_ids))
            for n in net_ids:
                for name, addresses in by_net[n].items():
                    have = view.names.setdefault(name, [])
                    have += [a for a in addresses if a not in have]
                view.reverse.update(rev_by_net[n])
            views[net_ids] = view
        return view

    in_use = {e.network_id for e in endpoints}  # any state: an attach under way too
    zone = Zone(
        listen=listen_points(nets.values(), in_use.__contains__),
        known=frozenset(k for names in by_net.values() for k in names),
        subnets=tuple(s.subnet for n in nets.values() for s in n.subnets),
    )
    for e in members:
        assert e.address is not None
        view = view_of(tuple(joined[e.container_id]))
        zone.askers.setdefault(e.network_id, {})[str(e.address)] = Asker(
            view, live[e.container_id].dns, e.container_id
        )
    return zone


# --- reading the store ------------------------------------------------------------------
def connect(db: str) -> sqlite3.Connection:
    """A read-only connection to the store (WAL: reads never block the daemon's writes)."""
    from pathlib import Path

    uri = Path(db).absolute().as_uri() + "?mode=ro"
    # WAL readers do not wait for writers; a short timeout keeps a rare busy moment (WAL
    # recovery) from stalling every query behind it
    conn = sqlite3.connect(
        uri, uri=True, timeout=1.0, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA query_only=ON")
    return conn


def data_version(conn: sqlite3.Connection) -> int:
    """Moves whenever another connection (the daemon) commits."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def load(conn: sqlite3.Connection) -> Zone:
    """The zone as the record has it now: one read transaction, so one consistent snapshot."""
    conn.execute("BEGIN")
    try:
        conn.row_factory = sqlite3.Row
        networks = [_network(r) for r in conn.execute("SELECT * FROM networks")]
        conn.row_factory = None
        containers = [
            ContainerRow(cid, name, hostname, state, tuple(json.loads(dns)) if dns else ())
            for cid, name, hostname, state, dns in conn.execute(
                "SELECT id, name, hostname, state, json_extract(config, '$.dns') FROM containers"
            )
        ]
        endpoints = [
            EndpointRow(
                nid, cid, IPv4Address(address) if address is not None else None,
                tuple(json.loads(aliases)), state,
            )
            for nid, cid, address, aliases, state in conn.execute(
                "SELECT network_id, container_id, address, aliases, state FROM endpoints"
                " ORDER BY rowid"
            )
        ]
    finally:
        conn.row_factory = None
        conn.execute("COMMIT")
    return build_zone(networks, containers, endpoints)
