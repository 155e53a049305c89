"""netbay's cluster record on etcd: node identity and membership, subnet leases, global
networks and a watch-driven view of them (docs/design.md, "The record: host-local and
cluster-wide"; the key layout is in layout.py).

The daemon holds one ClusterNode (`ClusterNode.join` for `cluster join`, `.resume` at start,
`.leave`, `.close`); its parts are usable alone, over one EtcdClient:

    client = EtcdClient(EtcdConfig(("http://10.0.0.1:2379",)))
    networks = GlobalNetworks(client, Layout())
    view = ClusterView(client, Layout(), on_peers=lambda network, peers: ..., node=my_id)

Importing it loads aetcd and gRPC (~0.2 s): the daemon's business, not the CLI's.

Errors: EtcdUnavailableError (503) when no member answers, EtcdError (502) when etcd
refuses a request; ConfigError, ConflictError,
InUseError, NotFoundError and IPAMExhaustedError (netbay.errors) for refusals.
"""

from __future__ import annotations

from .carving import block_count, pick_free_block
from .endpoints import Endpoint, EtcdConfig, EtcdError, EtcdUnavailableError, parse_endpoints
from .etcd import EtcdClient, WatchHandle
from .identity import (
    DEFAULT_GRACE,
    DEFAULT_TTL,
    JoinSettings,
    forget_join,
    load_join,
    node_id,
    save_join,
    source_address,
)
from .kv import (
    Absent,
    Delete,
    KeyValue,
    LeaseTTL,
    Listing,
    MemberStatus,
    ModRevision,
    Present,
    Put,
    UnchangedSince,
    WatchEvent,
)
from .layout import DEFAULT_ROOT, GlobalNetwork, GlobalNetworkSpec, Layout, NodeRecord
from .membership import Membership, MembershipHealth
from .names import ClusterNames
from .networks import GlobalNetworks
from .node import ClusterNode, ClusterStatus
from .state import LOST, READY, ClusterState, NodeStatus, Peer
from .subnets import SubnetLeases
from .view import ClusterView, OnNames, OnPeers

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_ROOT",
    "DEFAULT_TTL",
    "LOST",
    "READY",
    "Absent",
    "ClusterNames",
    "ClusterNode",
    "ClusterState",
    "ClusterStatus",
    "ClusterView",
    "Delete",
    "Endpoint",
    "EtcdClient",
    "EtcdConfig",
    "EtcdError",
    "EtcdUnavailableError",
    "GlobalNetwork",
    "GlobalNetworkSpec",
    "GlobalNetworks",
    "JoinSettings",
    "KeyValue",
    "Layout",
    "LeaseTTL",
    "Listing",
    "MemberStatus",
    "Membership",
    "MembershipHealth",
    "ModRevision",
    "NodeRecord",
    "NodeStatus",
    "OnNames",
    "OnPeers",
    "Peer",
    "Present",
    "Put",
    "SubnetLeases",
    "UnchangedSince",
    "WatchEvent",
    "WatchHandle",
    "block_count",
    "forget_join",
    "load_join",
    "node_id",
    "parse_endpoints",
    "pick_free_block",
    "save_join",
    "source_address",
]
