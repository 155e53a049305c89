"""The cluster agent: this daemon in the cluster (netbay.cluster on etcd) and its overlay data
plane (engine/overlay.py). It joins, resumes after a restart, leaves; creates and removes
the cluster-wide networks; makes this node's share of one when a container first needs it
(its block leased then, as flannel leases a node's subnet); feeds the plane the peers the
cluster view delivers; and keeps the shares in sync on a timer, so what was missed while
the daemon or etcd was down is put right without a restart (a block held in etcd that a
killed daemon did not record is adopted: engine/blocks.py). Until the view has listed the
record once, a sync changes nothing that needs it (BGP, the published BGP status, shares).

Importing netbay.cluster loads aetcd and gRPC: done here, in the daemon, never in the CLI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..dns.records import published_names
from ..drivers import cluster_driver
from ..drivers.overlay import OPT_BACKEND, OPT_VNI
from ..errors import (
    ConflictError,
    InUseError,
    NetbayError,
    NotFoundError,
    NotJoinedError,
)
from ..model import IPNetwork, Network, NetworkSpec, SubnetConfig
from ..name_entry import NameEntry
from ..plan.overlay import Backend, vtep_mac, vxlan_device
from .bgp import BgpSpeaker, require_bird
from .bgp_cluster import ClusterBgp
from .blocks import adopt_held
from .cluster_join import JoinRequest, follow_address, follow_address6, join_settings
from .cluster_networks import global_spec
from .overlay import OverlayKernel, OverlayPlane, PeerRecord
from .overlay_events import OverlayEvents

if TYPE_CHECKING:
    from ..cluster import ClusterNode, ClusterStatus, GlobalNetwork, NodeStatus
    from .host import Host

log = logging.getLogger("netbay.cluster")
RESYNC = 5.0  # seconds between the timer's syncs of every share
JOIN_FILE = "cluster.json"  # netbay.cluster.identity's (tests/unit/test_daemon_startup.py)


class ClusterAgent:
    def __init__(self, host: Host, kernel: OverlayKernel, on_change: Callable[[], None]):
        """ON_CHANGE: called when the agent changed the record (a share made or removed)."""
        self.host = host
        self._kernel = kernel
        self._on_change = on_change
        self.node: ClusterNode | None = None
        self.plane: OverlayPlane | None = None
        self._lock = threading.RLock()  # join and leave against everything else
        # what the view delivered, by network name (kept for a plane made after it)
        self._delivering = threading.Lock()
        self._peers: dict[str, tuple[PeerRecord, ...]] = {}
        self._remote_names: dict[str, tuple[NameEntry, ...]] = {}
        self._applied_names: dict[str, tuple[NameEntry, ...]] = {}  # by local network id
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netbay-cluster-agent",
                                        daemon=True)
        self._events = OverlayEvents(self._tunnels, self._wake.set, self._stopping)
        self.bgp = BgpSpeaker(host.paths.root / "bird")
        self.bgp_config = ClusterBgp(host.kernel, self._require, self.poke)  # `cluster bgp`
        host.add_cluster_networks(self)

    # --- the node ------------------------------------------------------------------------
    def start(self) -> None:
        """Resume the join this node's state root holds (if any); start the timer."""
        # netbay.cluster loads etcd's client (aetcd, grpc: ~0.4 s of imports), which a node
        # that never joined (no settings file) does not need at start-up
        if (self.host.paths.root / JOIN_FILE).exists():
            from ..cluster import ClusterNode

            node = ClusterNode.resume(self.host.paths.root, self._on_peers, self._on_names,
                                      self.poke)
            if node is not None:
                self._adopt(node)
        self._thread.start()
        self._events.start()

    def join(self, request: JoinRequest) -> NodeStatus:
        from ..cluster import ClusterNode

        with self._lock:
            if self.node is not None:
                joined = self.node.settings
                raise ConflictError(f"this node already joined a cluster as {joined.name} "
                                    f"({', '.join(joined.endpoints)}); leave first")
            settings = join_settings(request, self.host.kernel)
            self._adopt(ClusterNode.join(self.host.paths.root, settings, self._on_peers,
                                         self._on_names, self.poke))
            return self._own_status()

    def _adopt(self, node: ClusterNode) -> None:
        """NODE is this daemon's now. Its view may have delivered peers already (it starts
        inside join and resume): the new plane starts from those."""
        plane = OverlayPlane(self.host.store, self._kernel, node.node, node.membership.address,
                             node.membership.address6)
        with self._delivering:
            plane.seed(self._peers)
            self.node, self.plane = node, plane
        for network in plane.shares():
            self._publish_vtep(network)
        self._wake.set()

    def leave(self) -> None:
        """Release everything this node holds: refused while containers use a share."""
        with self._lock:
            node = self._require()
            assert self.plane is not None
            shares = self.plane.shares()
            used = [n.name for n in shares if self.host.members(n)]
            if used:
                raise InUseError(f"containers still use overlay networks {', '.join(used)} "
                                 "on this node; remove them first")
            for network in shares:
                self.host.remove_network(network.id)
            self.plane.sync()  # their routes to the peers go too
            node.leave()
            with self._delivering:
                self.node = self.plane = None
                self._peers.clear()
                self._remote_names.clear()
            self._apply_names()  # no share left: the other nodes' names go from the record
            self.bgp.sync(None)
            self._on_change()

    def joined(self) -> bool:
        return self.node is not None

    def status(self) -> tuple[str, ClusterStatus]:
        node = self._require()
        return node.settings.name, node.status()

    def nodes(self) -> list[NodeStatus]:
        return self._require().view.nodes()

    def _own_status(self) -> NodeStatus:
        node = self._require()
        node.view.wait_synced(2.0)
        mine = [n for n in node.view.nodes() if n.id == node.node]
        if mine:
            return mine[0]
        from ..cluster import READY, NodeStatus

        return NodeStatus(node.node, node.settings.name, node.membership.address, READY, "")

    def _require(self) -> ClusterNode:
        if self.node is None:
            raise NotJoinedError
        return self.node

    # --- the cluster-wide networks ---------------------------------------------------------
    def create_network(self, spec: NetworkSpec) -> GlobalNetwork:
        checked = global_spec(self.host, spec)  # bad input is bad, joined or not
        return self._require().networks.create(checked)

    def remove_network(self, name: str) -> None:
        """Remove a cluster-wide network: refused while containers on any node use it."""
        node = self._require()
        elsewhere = sorted({e.node for e in node.view.names(name)})
        if elsewhere:
            names = {n.id: n.name for n in node.view.nodes()}
            raise InUseError(f"network {name} has containers on nodes "
                             f"{', '.join(names.get(n, n) for n in elsewhere)}")
        with self._lock:
            share = self.host.network_named(name)
            if share is not None:
                self.host.remove_network(share.id)  # InUseError while containers use it
            node.subnets.release(name)
            node.networks.remove(name, force=True)
        if self.plane is not None:
            self.plane.sync(name)  # the share's routes to the peers
        self._on_change()

    def remote_names(self, network: str) -> tuple[NameEntry, ...]:
        """The containers the other nodes publish on NETWORK."""
        return () if self.node is None else self.node.view.names(network)

    def global_networks(self) -> list[GlobalNetwork]:
        return [] if self.node is None else self.node.view.networks()

    def global_network(self, name: str) -> GlobalNetwork | None:
        """The view's record of NAME; etcd is asked only while the view is connected (it
        may be a moment behind a create on another node). With etcd away, a name the view
        does not know is no network at once, not after the client's retries."""
        if self.node is None:
            return None
        view = self.node.view
        found = view.network(name)
        if found is not None or not view.connected:
            return found
        return self.node.networks.get(name)

    def local_share(self, name: str) -> tuple[NetworkSpec, str] | None:
        """engine.networks.ClusterNetworks: this node's share of NAME, its block (a block of
        each family, on a dual-stack network) leased now."""
        network = self.global_network(name)
        if network is None or self.node is None or self.plane is None:
            return None
        driver = cluster_driver(network.driver)
        if driver.caps.bgp:
            require_bird()
        blocks: list[IPNetwork] = [self.node.claim_subnet(name)]
        if network.subnet6 is not None:
            blocks.append(self.node.claim_subnet(name, 6))
        options = driver.share_options(network.subnet, network.vni, network.options,
                                       self.plane.underlay().mtu, network.subnet6)
        spec = NetworkSpec(
            name=network.name, driver=driver.name,
            subnets=tuple(SubnetConfig(block) for block in blocks),
            internal=network.internal, labels=dict(network.labels), options=options,
            ipv6=network.subnet6 is not None,
        )
        return spec, network.id

    def share_made(self, network: Network) -> None:
        self._wake.set()  # its tunnel, routes and BGP announcement without waiting

    def more_block(self, network: Network, version: int = 4) -> IPNetwork | None:
        """engine.networks.ClusterNetworks: another block of NETWORK (of family VERSION),
        claimed now."""
        if self.node is None or self.global_network(network.name) is None:
            return None
        return self.node.claim_more_subnet(network.name, version)

    def _publish_vtep(self, network: Network) -> None:
        if self.node is None or network.options.get(OPT_BACKEND) == Backend.HOST_GW.value:
            return
        vni = int(network.options[OPT_VNI])
        try:
            self.node.membership.publish_vtep(network.name, vtep_mac(self.node.node, vni))
        except NetbayError as exc:  # etcd away (or not registered yet): the next sync
            log.info("overlay %s: VTEP MAC not published yet: %s", network.name, exc)

    # --- the data plane --------------------------------------------------------------------
    def _on_peers(self, network: str, peers: Sequence[PeerRecord]) -> None:
        with self._delivering:
            self._peers[network] = tuple(peers)
            plane = self.plane
        if plane is not None:
            plane.set_peers(network, peers)
            self._sync_bgp(plane)

    def _on_names(self, network: str, entries: Sequence[NameEntry]) -> None:
        """The other nodes' names on NETWORK, for this node's DNS (kept while it has a
        share; the timer applies them to a share made later)."""
        self._remote_names[network] = tuple(entries)
        self._apply_names()

    def _apply_names(self) -> None:
        shares = {n.name: n.id for n in self.plane.shares()} if self.plane else {}
        wanted = {shares[name]: entries for name, entries in self._remote_names.items()
                  if name in shares}
        stale = {r.network_id for r in self.host.store.remote_names()} - set(wanted)
        wanted.update({network_id: () for network_id in stale})
        for network_id, entries in wanted.items():
            if self._applied_names.get(network_id) != entries:
                self.host.store.replace_remote_names(network_id, entries)
                self._applied_names[network_id] = entries

    def _publish_names(self, plane: OverlayPlane, node: ClusterNode) -> None:
        """This node's names on each share, for the others (unchanged lists cost nothing)."""
        records = self.host.store.dns_records()
        for network in plane.shares():
            try:
                node.names.publish(network.name,
                                   published_names(records, network.id, network.ipv6))
            except NetbayError as exc:  # etcd away: the next sync writes them
                log.info("overlay %s: names not published yet: %s", network.name, exc)

    def withdraw_names(self, network: str) -> None:
        """This node has no names on NETWORK any more, written now: a share removed before
        the next sync would otherwise leave them in etcd (and the network 'in use' here)."""
        if self.node is not None:
            self.node.names.publish(network, ())

    def _tunnels(self) -> frozenset[str]:
        plane = self.plane
        return frozenset(vxlan_device(n.id) for n in plane.shares()) if plane else frozenset()

    def poke(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(RESYNC)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._resync()
            except Exception:  # the timer must outlive anything
                log.exception("cluster agent: resync failed")

    def _resync(self) -> None:
        with self._lock:
            plane, node = self.plane, self.node
            if plane is None or node is None:
                return
            from ..cluster.bgp_status import publish_bgp_status  # etcd's client: joined only

            follow_address(plane, node)
            follow_address6(plane, node)
            for network in plane.shares():
                self._publish_vtep(network)
            synced = node.view.wait_synced(0)  # before, the view knows nothing of the cluster
            if synced and adopt_held(self.host, plane.shares(), node.view.blocks_of(node.node)):
                self._on_change()
            plane.sync()
            self._sync_bgp(plane)
            if synced:  # for `bgp status --node` and node readiness
                publish_bgp_status(node, self.bgp)
            self._publish_names(plane, node)
            self._apply_names()
            if synced:
                self._drop_orphan_shares(plane, node)

    def _sync_bgp(self, plane: OverlayPlane | None) -> None:
        """BIRD for the routed shares and the cluster's BGP configuration, with the peers as
        last delivered."""
        node = self.node
        if plane is None or node is None:
            self.bgp.sync(None)
            return
        if not node.view.wait_synced(0):
            return  # no reflector, network or peer known yet: BIRD stays as it was left
        with self._delivering:
            peers = dict(self._peers)
        try:
            settings = self.bgp_config.settings(node, plane, peers)
        except NetbayError as exc:
            log.warning("bgp: not configured: %s", exc)
            return
        self.bgp.sync(settings)

    def _drop_orphan_shares(self, plane: OverlayPlane, node: ClusterNode) -> None:
        """Shares of networks the cluster no longer has (removed from another node)."""
        known = {n.name for n in node.view.networks()}
        for network in plane.shares():
            if network.name in known:
                continue
            if self.host.members(network):
                log.warning("overlay %s: removed from the cluster, but containers here still "
                            "use it", network.name)
                continue
            log.info("overlay %s: removed from the cluster; removing this node's share",
                     network.name)
            try:
                self.host.remove_network(network.id)
            except (InUseError, NotFoundError):
                continue
            self._on_change()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._events.join(2)
        self.bgp.close()
        with self._lock:
            if self.node is not None:
                self.node.close()

