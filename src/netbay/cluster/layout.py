"""The cluster record in etcd: its key layout and the JSON of each value.

Under one root (default /netbay/v1/, so several clusters or versions can share an etcd):

    nodes/<node id>                   NodeRecord: name, address (and "address6" when it has
                                      one), VTEP MACs, leases, version (grace lease)
    alive/<node id>                   {"lease": id}, bound to the node's liveness lease (TTL):
                                      present = ready, absent = lost
    networks/<name>                   GlobalNetwork (no lease: it lives until removed); a
                                      dual-stack one has "subnet6" and "subnet_size6"
    subnets/<network>/<a.b.c.d-len>   {"node": id}: who holds the block (grace lease); an
                                      IPv6 block's key is spelled <fd12:3456::-64>
    holders/<network>/<node id>       {"subnet": "a.b.c.d/len", "subnets": [...]}: the blocks
                                      a node holds, its first in "subnet" (what an older
                                      netbay reads), so a node finds its own by id; only a
                                      routed network's node holds more than one; its IPv6
                                      blocks in "subnets6" (absent when it holds none)
    names/<network>/<node id>         [{"name", "aliases", "address", "container"}]: the DNS
                                      names of the node's ready endpoints there (grace lease),
                                      with "address6" for an endpoint that has one
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
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError
from ..model import IPNetwork
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
    # its IPv6 underlay address (on the link of ADDRESS; identity.source_address6), if any
    address6: IPv6Address | None = None


@dataclass(frozen=True)
class GlobalNetworkSpec:
    """A request to create a cluster-wide network; a None subnet or VNI is chosen. IPV6 (or
    a SUBNET6 given) makes it dual stack; a None SUBNET6 then is a random ULA /48."""

    name: str
    subnet: IPv4Network | None = None
    subnet_size: int = 24
    vni: int | None = None
    internal: bool = False
    options: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    driver: str = "overlay"  # or "routed"
    ipv6: bool = False
    subnet6: IPv6Network | None = None
    subnet_size6: int = 64

    @property
    def dual_stack(self) -> bool:
        return self.ipv6 or self.subnet6 is not None


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
    subnet6: IPv6Network | None = None  # None: IPv4 only
    subnet_size6: int = 64  # each node's IPv6 block is a /subnet_size6 of subnet6


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

    def subnet(self, network: str, block: IPNetwork) -> str:
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


def block_name(block: IPNetwork) -> str:
    """10.5.52.0/24 as a key segment: 10.5.52.0-24 (flannel's spelling); fd12::/64:
    fd12::-64."""
    return f"{block.network_address}-{block.prefixlen}"


def parse_block_name(name: str) -> IPNetwork:
    return ip_network(name.replace("-", "/", 1))


def _dump(value: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def encode_node(node: NodeRecord) -> bytes:
    value: dict[str, Any] = {
        "id": node.id, "name": node.name, "address": str(node.address),
        "version": node.version, "grace_lease": node.grace_lease, "ttl": node.ttl,
        "grace": node.grace, "vteps": dict(node.vteps),
    }
    if node.address6 is not None:  # absent otherwise: a node of IPv4 only writes as before
        value["address6"] = str(node.address6)
    return _dump(value)


def decode_node(data: bytes) -> NodeRecord:
    raw = json.loads(data)
    return NodeRecord(
        id=raw["id"], name=raw["name"], address=IPv4Address(raw["address"]),
        version=raw["version"], grace_lease=int(raw["grace_lease"]), ttl=int(raw["ttl"]),
        grace=int(raw["grace"]), vteps=MappingProxyType(dict(raw.get("vteps", {}))),
        address6=IPv6Address(raw["address6"]) if raw.get("address6") else None,
    )


def encode_network(network: GlobalNetwork) -> bytes:
    value: dict[str, Any] = {
        "name": network.name, "id": network.id, "subnet": str(network.subnet),
        "subnet_size": network.subnet_size, "vni": network.vni, "created": network.created,
        "internal": network.internal, "options": dict(network.options),
        "labels": dict(network.labels), "driver": network.driver,
    }
    if network.subnet6 is not None:  # absent otherwise: an IPv4-only record as before
        value["subnet6"] = str(network.subnet6)
        value["subnet_size6"] = network.subnet_size6
    return _dump(value)


def decode_network(data: bytes) -> GlobalNetwork:
    raw = json.loads(data)
    return GlobalNetwork(
        name=raw["name"], id=raw["id"], subnet=IPv4Network(raw["subnet"]),
        subnet_size=int(raw["subnet_size"]), vni=int(raw["vni"]), created=raw["created"],
        internal=bool(raw.get("internal", False)),
        options=MappingProxyType(dict(raw.get("options", {}))),
        labels=MappingProxyType(dict(raw.get("labels", {}))),
        driver=str(raw.get("driver", "overlay")),  # records from before routed networks
        subnet6=IPv6Network(raw["subnet6"]) if raw.get("subnet6") else None,
        subnet_size6=int(raw.get("subnet_size6", 64)),
    )


def encode_subnet_holder(node_id: str) -> bytes:
    return _dump({"node": node_id})


def decode_subnet_holder(data: bytes) -> str:
    return str(json.loads(data)["node"])


def encode_held_subnets(
    blocks: Sequence[IPv4Network], blocks6: Sequence[IPv6Network] = (),
) -> bytes:
    """BLOCKS (IPv4, at least one) and BLOCKS6 (IPv6; "subnets6" only when there are any,
    so an IPv4-only holder writes as before)."""
    value: dict[str, Any] = {"subnet": str(blocks[0]), "subnets": [str(b) for b in blocks]}
    if blocks6:
        value["subnets6"] = [str(b) for b in blocks6]
    return _dump(value)


def decode_held_subnets(data: bytes) -> tuple[IPv4Network, ...]:
    """A node's IPv4 blocks in the order it claimed them (a record of before "subnets":
    one)."""
    value = json.loads(data)
    return tuple(IPv4Network(b) for b in value.get("subnets", [value["subnet"]]))


def decode_held_subnets6(data: bytes) -> tuple[IPv6Network, ...]:
    """A node's IPv6 blocks in the order it claimed them (none in an IPv4-only record)."""
    return tuple(IPv6Network(b) for b in json.loads(data).get("subnets6", []))


def encode_alive(lease: int) -> bytes:
    return _dump({"lease": lease})


def encode_names(entries: Sequence[NameEntry]) -> bytes:
    return _dump([_name_value(e) for e in entries])


def _name_value(entry: NameEntry) -> dict[str, Any]:
    value: dict[str, Any] = {"name": entry.name, "aliases": list(entry.aliases),
                             "address": str(entry.address), "container": entry.container}
    if entry.address6 is not None:  # absent otherwise: an IPv4-only entry as before
        value["address6"] = str(entry.address6)
    return value


def decode_names(data: bytes, node_id: str) -> tuple[NameEntry, ...]:
    """NODE_ID's entries (the key names the node, the value does not)."""
    return tuple(
        NameEntry(name=str(raw["name"]), aliases=tuple(str(a) for a in raw["aliases"]),
                  address=IPv4Address(raw["address"]), container=str(raw["container"]),
                  node=node_id,
                  address6=IPv6Address(raw["address6"]) if raw.get("address6") else None)
        for raw in json.loads(data)
    )
