"""The cluster's BGP configuration in etcd: which nodes are route reflectors, and the routers
outside the cluster (a top-of-rack switch) the nodes peer with by eBGP, each for one node or
for every node (keys in layout.py). No lease binds them: they last until removed.

BgpConfigState is the configuration as a listing and the watch's events leave it (the
view keeps one, so every node's agent reads it without asking etcd); BgpConfigStore writes
it (`netbay cluster bgp ...`) and reads it back at one revision.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address

from ..errors import ConfigError
from ..plan.bird import MAX_ASN
from .etcd import EtcdClient
from .kv import KeyedState, KeyValue
from .layout import BGP_PEERS, BGP_REFLECTORS, Layout, ParsedKey

log = logging.getLogger("netbay.cluster")
ALL_NODES = "all"  # the scope of a peer of every node (a node id is 32 hex digits)


def parse_peer_address(text: str) -> IPv4Address:
    try:
        parsed = ip_address(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, IPv4Address):
        raise ConfigError("peer address", text, "not an IPv4 address")
    return parsed


def check_asn(asn: int) -> int:
    if not 1 <= asn <= MAX_ASN:
        raise ConfigError("asn", asn, f"out of range 1-{MAX_ASN}")
    return asn


@dataclass(frozen=True)
class ExternalPeerRecord:
    """An external BGP peer: the router at ADDRESS in AS ASN, for the node NODE (an id) or,
    when NODE is None, for every node."""

    address: IPv4Address
    asn: int
    node: str | None = None

    @property
    def scope(self) -> str:
        return self.node or ALL_NODES


@dataclass(frozen=True)
class BgpConfig:
    reflectors: frozenset[str] = frozenset()  # node ids
    peers: tuple[ExternalPeerRecord, ...] = ()  # sorted

    def peers_of(self, node: str) -> list[ExternalPeerRecord]:
        """NODE's external peers: those for it, and those for every node at an address it
        has none of its own for (one given for the node takes precedence)."""
        own = {p.address: p for p in self.peers if p.node == node}
        shared = [p for p in self.peers if p.node is None and p.address not in own]
        return _sorted([*own.values(), *shared])


def _sorted(peers: Iterable[ExternalPeerRecord]) -> list[ExternalPeerRecord]:
    return sorted(peers, key=lambda p: (p.address, p.scope))


def encode_peer(asn: int) -> bytes:
    return json.dumps({"asn": asn}, separators=(",", ":")).encode()


def decode_peer(parsed: ParsedKey, value: bytes) -> ExternalPeerRecord:
    return ExternalPeerRecord(IPv4Address(parsed.item), check_asn(int(json.loads(value)["asn"])),
                      None if parsed.name == ALL_NODES else parsed.name)


@dataclass
class BgpConfigState(KeyedState):
    """The configuration under LAYOUT's root, kept current by put() and delete(). Pure."""

    layout: Layout
    reflectors: set[str] = field(default_factory=set)
    peers: dict[tuple[str, IPv4Address], ExternalPeerRecord] = field(default_factory=dict)

    @classmethod
    def from_listing(cls, layout: Layout, items: Iterable[KeyValue]) -> BgpConfigState:
        return cls(layout).load(items)

    def put(self, kv: KeyValue) -> None:
        parsed = self.layout.parse(kv.key)
        if parsed is None or parsed.kind not in (BGP_REFLECTORS, BGP_PEERS):
            return
        if parsed.kind == BGP_REFLECTORS:
            self.reflectors.add(parsed.name)
            return
        try:
            peer = decode_peer(parsed, kv.value)
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            log.warning("cluster record %s is not readable, ignored: %s", kv.key, exc)
            return
        self.peers[(peer.scope, peer.address)] = peer

    def delete(self, key: str) -> None:
        parsed = self.layout.parse(key)
        if parsed is None:
            return
        if parsed.kind == BGP_REFLECTORS:
            self.reflectors.discard(parsed.name)
        elif parsed.kind == BGP_PEERS:
            with contextlib.suppress(ValueError):  # a key put() ignored as unreadable
                self.peers.pop((parsed.name, IPv4Address(parsed.item)), None)

    def config(self) -> BgpConfig:
        return BgpConfig(frozenset(self.reflectors), tuple(_sorted(self.peers.values())))


class BgpConfigStore:
    """The writes of `netbay cluster bgp ...`: each says whether it changed anything."""

    def __init__(self, client: EtcdClient, layout: Layout) -> None:
        self._client = client
        self._layout = layout

    def read(self) -> BgpConfig:
        found = [*self._client.get_prefix(self._layout.prefix(BGP_REFLECTORS)).items,
                 *self._client.get_prefix(self._layout.prefix(BGP_PEERS)).items]
        return BgpConfigState.from_listing(self._layout, found).config()

    def add_peer(self, peer: ExternalPeerRecord) -> bool:
        """False: a peer at that address is there already for that scope."""
        key = self._layout.bgp_peer(peer.scope, peer.address)
        return self._client.create(key, encode_peer(peer.asn))

    def remove_peer(self, address: IPv4Address, node: str | None) -> bool:
        return self._client.delete(self._layout.bgp_peer(node or ALL_NODES, address)) > 0

    def set_reflector(self, node: str, reflector: bool) -> bool:
        key = self._layout.bgp_reflector(node)
        if reflector:
            return self._client.create(key, b"{}")
        return self._client.delete(key) > 0

    def revision(self) -> int:
        """etcd's revision now: a view that reached it has seen the writes made before."""
        return self._client.revision()
