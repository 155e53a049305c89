"""The cluster record as one node sees it, rebuilt from a listing and kept current by watch
events, and what a node's data plane wants from it: per global network, the peers now
(every other ready node holding a block there, with its address, block and VTEP MAC: one
peer per block, of either family), and what its DNS wants: the names the other nodes
publish there. Pure: no etcd, no threads."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from types import MappingProxyType
from typing import TypeVar

from ..model import IPNetwork
from ..name_entry import NameEntry
from .kv import KeyedState, KeyValue
from .layout import (
    ALIVE,
    NAMES,
    NETWORKS,
    NODES,
    SUBNETS,
    GlobalNetwork,
    Layout,
    NodeRecord,
    ParsedKey,
    decode_names,
    decode_network,
    decode_node,
    decode_subnet_holder,
    parse_block_name,
)

log = logging.getLogger("netbay.cluster")
READY, LOST = "ready", "lost"
T = TypeVar("T")


@dataclass(frozen=True)
class Peer:
    node: str
    name: str
    address: IPv4Address
    subnet: IPNetwork  # one of the node's blocks, of either family
    vtep_mac: str | None  # None: the node published none on this network (host-gw only)
    address6: IPv6Address | None = None  # the node's IPv6 underlay address, if it has one

    def sort_key(self) -> tuple[str, int, IPNetwork]:
        """By node, then its IPv4 blocks before its IPv6 ones (blocks of two families do
        not compare)."""
        return self.node, self.subnet.version, self.subnet


@dataclass(frozen=True)
class NodeStatus:
    id: str
    name: str
    address: IPv4Address
    state: str  # READY or LOST
    version: str
    subnets: Mapping[str, IPv4Network] = field(default_factory=dict)  # network -> block
    # network -> every block (a routed network's node claims more when its are full)
    blocks: Mapping[str, tuple[IPv4Network, ...]] = field(default_factory=dict)
    vteps: Mapping[str, str] = field(default_factory=dict)  # network -> VTEP MAC
    last_seen: float | None = None  # time.time(); None: not known
    # network -> every IPv6 block (of the dual-stack networks it holds one of)
    blocks6: Mapping[str, tuple[IPv6Network, ...]] = field(default_factory=dict)
    address6: IPv6Address | None = None


PeerLists = Mapping[str, tuple[Peer, ...]]
NameLists = Mapping[str, tuple[NameEntry, ...]]


class ClusterState(KeyedState):
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.nodes: dict[str, NodeRecord] = {}
        self.alive: set[str] = set()
        self.networks: dict[str, GlobalNetwork] = {}
        self.subnets: dict[str, dict[IPNetwork, str]] = {}  # network -> block -> node id
        self.names: dict[str, dict[str, tuple[NameEntry, ...]]] = {}  # network -> node -> ...

    @classmethod
    def from_listing(cls, layout: Layout, items: Iterable[KeyValue]) -> ClusterState:
        return cls(layout).load(items)

    def put(self, kv: KeyValue) -> None:
        parsed = self.layout.parse(kv.key)
        if parsed is None:
            return
        try:
            self._put(parsed, kv.value)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("cluster record %s is not readable, ignored: %s", kv.key, exc)

    def _put(self, parsed: ParsedKey, value: bytes) -> None:
        if parsed.kind == NODES:
            self.nodes[parsed.name] = decode_node(value)
        elif parsed.kind == ALIVE:
            self.alive.add(parsed.name)
        elif parsed.kind == NETWORKS:
            self.networks[parsed.name] = decode_network(value)
        elif parsed.kind == SUBNETS:
            blocks = self.subnets.setdefault(parsed.name, {})
            blocks[parse_block_name(parsed.item)] = decode_subnet_holder(value)
        elif parsed.kind == NAMES:
            self.names.setdefault(parsed.name, {})[parsed.item] = decode_names(
                value, parsed.item)

    def delete(self, key: str) -> None:
        parsed = self.layout.parse(key)
        if parsed is None:
            return
        if parsed.kind == NODES:
            self.nodes.pop(parsed.name, None)
        elif parsed.kind == ALIVE:
            self.alive.discard(parsed.name)
        elif parsed.kind == NETWORKS:
            self.networks.pop(parsed.name, None)
        elif parsed.kind == SUBNETS:
            with contextlib.suppress(ValueError):  # a key put() ignored as unreadable
                self.subnets.get(parsed.name, {}).pop(parse_block_name(parsed.item), None)
        elif parsed.kind == NAMES:
            self.names.get(parsed.name, {}).pop(parsed.item, None)

    def blocks_of(self, node: str) -> dict[str, tuple[IPv4Network, ...]]:
        """NODE's IPv4 blocks of each network, lowest first."""
        found: dict[str, tuple[IPv4Network, ...]] = {}
        for network, blocks in self.subnets.items():
            mine = sorted(block for block, holder in blocks.items()
                          if holder == node and isinstance(block, IPv4Network))
            if mine and network in self.networks:
                found[network] = tuple(mine)
        return found

    def blocks6_of(self, node: str) -> dict[str, tuple[IPv6Network, ...]]:
        """NODE's IPv6 blocks of each network, lowest first."""
        found: dict[str, tuple[IPv6Network, ...]] = {}
        for network, blocks in self.subnets.items():
            mine = sorted(block for block, holder in blocks.items()
                          if holder == node and isinstance(block, IPv6Network))
            if mine and network in self.networks:
                found[network] = tuple(mine)
        return found

    def peers(self, exclude: str | None = None) -> dict[str, tuple[Peer, ...]]:
        """Every global network's peers (by node id, then IPv4 blocks first): a peer for
        each block of the ready nodes but EXCLUDE."""
        lists: dict[str, tuple[Peer, ...]] = {}
        for network in self.networks:
            peers = []
            for block, holder in self.subnets.get(network, {}).items():
                node = self.nodes.get(holder)
                if node is None or holder == exclude or holder not in self.alive:
                    continue
                peers.append(Peer(holder, node.name, node.address, block,
                                  node.vteps.get(network), node.address6))
            lists[network] = tuple(sorted(peers, key=Peer.sort_key))
        return lists

    def names_of(self, exclude: str | None = None) -> dict[str, tuple[NameEntry, ...]]:
        """Every global network's names (sorted) that nodes but EXCLUDE publish there. A
        lost node's stay (its containers may still run) until its record goes with its
        grace lease."""
        return {
            network: tuple(sorted(
                entry for node, entries in self.names.get(network, {}).items()
                if node != exclude and node in self.nodes for entry in entries
            )) for network in self.networks
        }

    def lost(self) -> set[str]:
        return set(self.nodes) - self.alive

    def statuses(self, last_seen: Mapping[str, float], now: float) -> list[NodeStatus]:
        """Every node (ready, or lost within its grace period), by name; a ready node was
        last seen NOW, a lost one when LAST_SEEN says."""
        statuses = []
        for node in self.nodes.values():
            blocks = self.blocks_of(node.id)
            statuses.append(NodeStatus(
                id=node.id, name=node.name, address=node.address,
                state=READY if node.id in self.alive else LOST, version=node.version,
                subnets=MappingProxyType({n: b[0] for n, b in blocks.items()}),
                blocks=MappingProxyType(blocks), vteps=node.vteps,
                last_seen=now if node.id in self.alive else last_seen.get(node.id),
                blocks6=MappingProxyType(self.blocks6_of(node.id)), address6=node.address6,
            ))
        return sorted(statuses, key=lambda s: (s.name, s.id))


def changed(
    before: Mapping[str, tuple[T, ...]], after: Mapping[str, tuple[T, ...]],
) -> dict[str, tuple[T, ...]]:
    """The networks whose list (of peers, of names) is not what was last delivered (BEFORE),
    with their list now; a network gone has none. A network never delivered counts as
    changed."""
    lists = {name: peers for name, peers in after.items()
             if name not in before or before[name] != peers}
    lists.update({name: () for name in before if name not in after})
    return lists
