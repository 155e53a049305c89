"""This node's data plane of the cluster-wide networks: for each local share of one (a record
of the overlay driver), the tunnel, neighbours, FDB entries and routes towards the other
nodes that hold blocks of it, as plan/overlay.py plans them from the cluster's peers.

Level-triggered: every sync plans from the peers as last delivered and lets
kernel/overlay.py diff, so a sync with nothing new writes nothing. It runs when the peers of
a network change, when a share is made, and on the agent's timer, which also removes
netbay's entries that no peer backs any more (events missed while the daemon was down).
Until the cluster view has delivered a network's peers once, its entries are left as they
are: a daemon restarted while etcd is out of reach keeps the data plane it had.

Dual stack: the share's v6 block (its record's IPv6 SubnetConfig), the pool6 of its options,
the peers' v6 blocks and IPv6 underlay addresses, and this node's (address6, which the
cluster agent keeps up to date) go into the plan too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any, Protocol

from ..drivers import capabilities
from ..drivers.overlay import settings_of
from ..drivers.routed import OPT_ENCAP, parse_encap
from ..errors import NetbayError
from ..model import READY, IPNetwork, Network, only_v4
from ..plan.overlay import (
    OverlayNode,
    OverlayPeer,
    OverlayState,
    plan_overlay,
    vtep_mac,
)
from ..plan.routed import routed_tunnels
from ..store.base import Store

log = logging.getLogger("netbay.overlay")


class Underlay(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def mtu(self) -> int: ...

    def same_segment(self, address: IPv4Address | IPv6Address) -> bool: ...


class OverlayKernel(Protocol):
    """What the plane asks of the kernel (kernel.linux.LinuxKernel)."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    def underlay(self, address: IPv4Address) -> Underlay: ...
    def sync_overlay(self, desired: OverlayState) -> Synced: ...
    def remove_overlay(self, desired: OverlayState) -> Synced: ...


class Synced(Protocol):
    @property
    def changes(self) -> tuple[str, ...]: ...
    @property
    def conflicts(self) -> tuple[str, ...]: ...


class NodeAddress(Protocol):
    """A node of the cluster: its id, name and cluster address."""

    @property
    def node(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> IPv4Address: ...


class PeerRecord(NodeAddress, Protocol):
    """A peer as the cluster record has it (netbay.cluster.Peer): a node holding a block."""

    @property
    def subnet(self) -> IPNetwork: ...  # one of its blocks, of either family
    @property
    def vtep_mac(self) -> str | None: ...
    @property
    def address6(self) -> IPv6Address | None: ...


class OverlayPlane:
    def __init__(self, store: Store, kernel: OverlayKernel, node: str, address: IPv4Address,
                 address6: IPv6Address | None = None):
        self._store = store
        self._kernel = kernel
        self.node = node
        self.address = address
        self.address6 = address6  # this node's IPv6 underlay address (the agent updates it)
        self._peers: dict[str, tuple[PeerRecord, ...]] = {}  # by network name, as delivered
        self._lock = threading.Lock()  # one sync at a time
        self.last_changes: dict[str, tuple[str, ...]] = {}  # network -> the last sync's writes
        self._rejected: dict[str, frozenset[str]] = {}  # network -> what was logged
        # network id -> (name, the plan last synced): what to remove once the share is gone
        self._planned: dict[str, tuple[str, OverlayState]] = {}

    def underlay(self) -> Underlay:
        return self._kernel.underlay(self.address)

    def seed(self, peers: Mapping[str, Sequence[PeerRecord]]) -> None:
        """Peers delivered before this plane existed; synced at the next sync."""
        self._peers.update((network, tuple(found)) for network, found in peers.items())

    def set_peers(self, network: str, peers: Sequence[PeerRecord]) -> None:
        self._peers[network] = tuple(peers)
        self.sync(network)

    def shares(self) -> list[Network]:
        return [n for n in self._store.networks()
                if n.state == READY and capabilities(n.driver).cluster]

    def sync(self, name: str | None = None) -> None:
        """Sync the share of network NAME (None: every share) with its peers; a share gone
        since its last sync loses its routes to the peers (its bridge and tunnel went with
        it, the host-gw routes via the underlay would stay)."""
        with self._lock:
            shares = self.shares()
            for network in shares:
                if name is None or network.name == name:
                    self._sync_one(network)
            live = {n.id for n in shares}
            for network_id, (network_name, plan) in list(self._planned.items()):
                if network_id not in live and name in (None, network_name):
                    self._remove_one(network_id, network_name, plan)

    def _remove_one(self, network_id: str, name: str, plan: OverlayState) -> None:
        try:
            with self._kernel.lock:
                current = self._store.find_network(network_id)
                if current is None or current.state != READY:
                    result = self._kernel.remove_overlay(plan)
                    if result.changes:
                        log.info("overlay %s: share removed: %s", name, "; ".join(result.changes))
        except NetbayError as exc:  # kept: the next sync tries again
            log.warning("overlay %s: removing its routes failed: %s", name, exc)
            return
        self._planned.pop(network_id, None)

    def desired(self, network: Network) -> OverlayState | None:
        """The plan for NETWORK's share; None until its peers were delivered."""
        peers = self._peers.get(network.name)
        if peers is None or not network.subnets:
            return None
        settings = settings_of(network)
        underlay = self.underlay()
        subnet6 = next((s.subnet for s in network.subnets
                        if isinstance(s.subnet, IPv6Network)), None)
        node = OverlayNode(self.node, self.address, underlay.device, underlay.mtu,
                           only_v4(network.subnets[0].subnet), subnet6, self.address6)
        # a peer's IPv6 address that is not on-link here cannot be a host-gw next hop: the
        # plan sees none (its v6 block is tunnelled under auto, refused under host-gw)
        state = plan_overlay(settings, node, (
            OverlayPeer(p.node, p.address, p.subnet, p.vtep_mac or vtep_mac(p.node, settings.vni),
                        underlay.same_segment(p.address),
                        p.address6 if p.address6 and underlay.same_segment(p.address6) else None)
            for p in peers
        ))
        encap = network.options.get(OPT_ENCAP)
        if encap is None:
            return state
        blocks = tuple(s.subnet for s in network.subnets)
        return routed_tunnels(state, parse_encap(encap), blocks)

    def _sync_one(self, network: Network) -> None:
        try:
            desired = self.desired(network)
            if desired is None:
                return
            with self._kernel.lock:  # held by a share's removal, from record to kernel
                current = self._store.find_network(network.id)
                if current is None or current.state != READY:
                    return  # removed since it was listed: making it again would leave it
                result = self._kernel.sync_overlay(desired)
            self._planned[network.id] = (network.name, desired)
        except NetbayError as exc:
            log.warning("overlay %s: sync failed: %s", network.name, exc)
            return
        rejected = frozenset(
            f"node {p.node_id} left out: {p.reason}" if p.subnet is None
            else f"node {p.node_id}'s block {p.subnet} left out: {p.reason}"
            for p in desired.rejected)
        for line in sorted(rejected - self._rejected.get(network.name, frozenset())):
            log.warning("overlay %s: %s", network.name, line)
        self._rejected[network.name] = rejected
        if result.changes:
            self.last_changes[network.name] = result.changes
            log.info("overlay %s: %s", network.name, "; ".join(result.changes))
        for conflict in result.conflicts:
            log.warning("overlay %s: %s", network.name, conflict)
