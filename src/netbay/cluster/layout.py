"""The cluster record in etcd: its key layout and the JSON of each value.

Under one root (default /netbay/v1/, so several clusters or versions can share an etcd):

    nodes/<node id>                   NodeRecord: name, address, VTEP MACs, leases, version
                                      (bound to the node's grace lease)
    alive/<node id>                   {"lease": id}, bound to the node's liveness lease (TTL):
                                      present = ready, absent = lost
    networks/<name>                   GlobalNetwork (no lease: it lives until removed)
    subnets/<network>/<a.b.c.d-len>   {"node": id}: who holds the block (grace lease)
    holders/<network>/<node id>       {"subnet": "a.b.c.d/len", "subnets": [...]}: the blocks
                                      a node holds, its first in "subnet" (what an older
                                      netbay reads), so a node finds its own by id; only a
                                      routed network's node holds more than one
    names/<network>/<node id>         [{"name", "aliases", "address", "container"}]: the DNS
                                      names of the node's ready endpoints there (grace lease)
    bgp/<node id>                     [{"peer", "address", "asn", "state", "since", "imported",
                                      "exported"}]: the node's BGP sessions as its BIRD last
                                      reported them (grace lease; cluster/bgp_status.py)
    bgp-reflectors/<node id>          {}: the node is a BGP route reflector
    bgp-peers/<node id|all>/<a.b.c.d> {"asn": N}: a router outside the cluster that node (or
                                      every node) peers with by eBGP (cluster/bgp_config.py)

A node's subnet keys are bound to its grace lease, kept alive with its liveness lease: a node
that stops is lost after the TTL, and etcd itself frees its subnets when the grace period
(the grace lease's TTL) ends after that; `leave` revokes both leases at once. Its names are
bound to the grace lease too: a lost node's containers may still run, so they stay resolvable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError
from ..name_entry import NameEntry

DEFAULT_ROOT = "/netbay/v1/"
NODES, ALIVE, NETWORKS, SUBNETS, HOLDERS = "nodes", "alive", "networks", "subnets", "holders"
NAMES, BGP = "names", "bgp"
BGP_REFLECTORS, BGP_PEERS = "bgp-reflectors", "bgp-peers"  # no lease: kept until removed
EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class NodeRecord:
    id: str
    name: str
    address: IPv4Address
    version: str
    grace_lease: int  # the lease this node's record and subnets are bound to
    ttl: int  # of the liveness lease
    grace: int  # of the grace lease
    vteps: Mapping[str, str] = field(default_factory=lambda: EMPTY)  # network -> VTEP MAC


@dataclass(frozen=True)
class GlobalNetworkSpec:
    """A request to create a cluster-wide network; a None subnet or VNI is chosen."""

    name: str
    subnet: IPv4Network | None = None
    subnet_size: int = 24
    vni: int | None = None
    internal: bool = False
    options: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    driver: str = "overlay"  # or "routed"


@dataclass(frozen=True)
class GlobalNetwork:
    name: str
    id: str  # the same on every node
    subnet: IPv4Network
    subnet_size: int  # each node's block is a /subnet_size of subnet
    vni: int
    created: str
    internal: bool = False
    options: Mapping[str, str] = field(default_factory=lambda: EMPTY)  # the driver's (backend..)
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    driver: str = "overlay"  # how its nodes reach each other: "overlay" or "routed" (BGP)


@dataclass(frozen=True)
class ParsedKey:
    kind: str  # NODES, ALIVE, NETWORKS, SUBNETS, HOLDERS, NAMES, BGP, BGP_REFLECTORS, BGP_PEERS
    name: str  # node id or network name (BGP_PEERS: the node id or bgp_config.ALL_NODES)
    item: str = ""  # the block (SUBNETS), the node id (HOLDERS, NAMES), the address (BGP_PEERS)


class Layout:
    """Key names under ROOT; the only place that spells them."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        if not root.startswith("/") or not root.endswith("/"):
            raise ConfigError("etcd prefix", root, "must start and end with '/'")
        self.root = root

    def prefix(self, kind: str, name: str | None = None) -> str:
        return f"{self.root}{kind}/" + (f"{name}/" if name is not None else "")

    def node(self, node_id: str) -> str:
        return self.prefix(NODES) + node_id

    def alive(self, node_id: str) -> str:
        return self.prefix(ALIVE) + node_id

    def network(self, name: str) -> str:
        return self.prefix(NETWORKS) + name

    def subnet(self, network: str, block: IPv4Network) -> str:
        return self.prefix(SUBNETS, network) + block_name(block)

    def holder(self, network: str, node_id: str) -> str:
        return self.prefix(HOLDERS, network) + node_id

    def names(self, network: str, node_id: str) -> str:
        return self.prefix(NAMES, network) + node_id

    def bgp(self, node_id: str) -> str:
        return self.prefix(BGP) + node_id

    def bgp_reflector(self, node_id: str) -> str:
        return self.prefix(BGP_REFLECTORS) + node_id

    def bgp_peer(self, scope: str, address: IPv4Address) -> str:
        """SCOPE: the node id the peer is for, or bgp_config.ALL_NODES."""
        return self.prefix(BGP_PEERS, scope) + str(address)

    def parse(self, key: str) -> ParsedKey | None:
        """What KEY is, or None for a key of no kind this version knows."""
        if not key.startswith(self.root):
            return None
        parts = key[len(self.root):].split("/")
        if len(parts) == 2 and parts[1] and parts[0] in (
                NODES, ALIVE, NETWORKS, BGP, BGP_REFLECTORS):
            return ParsedKey(parts[0], parts[1])
        if len(parts) == 3 and parts[1] and parts[2] and parts[0] in (
                SUBNETS, HOLDERS, NAMES, BGP_PEERS):
            return ParsedKey(parts[0], parts[1], parts[2])
        return None


def block_name(block: IPv4Network) -> str:
    """10.5.52.0/24 as a key segment: 10.5.52.0-24 (flannel's spelling)."""
    return f"{block.network_address}-{block.prefixlen}"


def parse_block_name(name: str) -> IPv4Network:
    return IPv4Network(name.replace("-", "/", 1))


def _dump(value: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def encode_node(node: NodeRecord) -> bytes:
    return _dump({
        "id": node.id, "name": node.name, "address": str(node.address),
        "version": node.version, "grace_lease": node.grace_lease, "ttl": node.ttl,
        "grace": node.grace, "vteps": dict(node.vteps),
    })


def decode_node(data: bytes) -> NodeRecord:
    raw = json.loads(data)
    return NodeRecord(
        id=raw["id"], name=raw["name"], address=IPv4Address(raw["address"]),
        version=raw["version"], grace_lease=int(raw["grace_lease"]), ttl=int(raw["ttl"]),
        grace=int(raw["grace"]), vteps=MappingProxyType(dict(raw.get("vteps", {}))),
    )


def encode_network(network: GlobalNetwork) -> bytes:
    return _dump({
        "name": network.name, "id": network.id, "subnet": str(network.subnet),
        "subnet_size": network.subnet_size, "vni": network.vni, "created": network.created,
        "internal": network.internal, "options": dict(network.options),
        "labels": dict(network.labels), "driver": network.driver,
    })


def decode_network(data: bytes) -> GlobalNetwork:
    raw = json.loads(data)
    return GlobalNetwork(
        name=raw["name"], id=raw["id"], subnet=IPv4Network(raw["subnet"]),
        subnet_size=int(raw["subnet_size"]), vni=int(raw["vni"]), created=raw["created"],
        internal=bool(raw.get("internal", False)),
        options=MappingProxyType(dict(raw.get("options", {}))),
        labels=MappingProxyType(dict(raw.get("labels", {}))),
        driver=str(raw.get("driver", "overlay")),  # records from before routed networks
    )


def encode_subnet_holder(node_id: str) -> bytes:
    return _dump({"node": node_id})


def decode_subnet_holder(data: bytes) -> str:
    return str(json.loads(data)["node"])


def encode_held_subnets(blocks: Sequence[IPv4Network]) -> bytes:
    return _dump({"subnet": str(blocks[0]), "subnets": [str(b) for b in blocks]})


def decode_held_subnets(data: bytes) -> tuple[IPv4Network, ...]:
    """A node's blocks in the order it claimed them (a record of before "subnets": one)."""
    value = json.loads(data)
    return tuple(IPv4Network(b) for b in value.get("subnets", [value["subnet"]]))


def encode_alive(lease: int) -> bytes:
    return _dump({"lease": lease})


def encode_names(entries: Sequence[NameEntry]) -> bytes:
    return _dump([
        {"name": e.name, "aliases": list(e.aliases), "address": str(e.address),
         "container": e.container} for e in entries
    ])


def decode_names(data: bytes, node_id: str) -> tuple[NameEntry, ...]:
    """NODE_ID's entries (the key names the node, the value does not)."""
    return tuple(
        NameEntry(name=str(raw["name"]), aliases=tuple(str(a) for a in raw["aliases"]),
                  address=IPv4Address(raw["address"]), container=str(raw["container"]),
                  node=node_id)
        for raw in json.loads(data)
    )
