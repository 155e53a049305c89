"""The cluster agent: this daemon in the cluster (netbay.cluster on etcd) and its overlay data
plane (engine/overlay.py). It joins, resumes after a restart, leaves; creates and removes
the cluster-wide networks; makes this node's share of one when a container first needs it
(its block leased then, as flannel leases a node's subnet); feeds the plane the peers the
cluster view delivers; and keeps the shares in sync on a timer, so what was missed while
the daemon or etcd was down is put right without a restart.

Importing netbay.cluster loads aetcd and gRPC: done here, in the daemon, never in the CLI.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

from ..dns.records import published_names
from ..drivers.base import parse_int
from ..drivers.overlay import OPT_BACKEND, OPT_VNI, USER_OPTIONS, local_options, parse_backend
from ..errors import (
    ConfigError,
    ConflictError,
    InUseError,
    NetbayError,
    NotFoundError,
    NotJoinedError,
)
from ..model import Network, NetworkSpec, SubnetConfig
from ..name_entry import NameEntry
from ..plan.overlay import DEFAULT_VXLAN_PORT, Backend, vtep_mac, vxlan_device
from .overlay import OverlayKernel, OverlayPlane, PeerRecord, veth_mtu
from .overlay_events import OverlayEvents

if TYPE_CHECKING:
    from ..cluster import ClusterNode, ClusterStatus, GlobalNetwork, NodeStatus
    from .host import Host

log = logging.getLogger("netbay.cluster")
RESYNC = 5.0  # seconds between the timer's syncs of every share


@dataclass(frozen=True)
class JoinRequest:
    etcd: tuple[str, ...]
    name: str | None = None  # default: the hostname
    address: IPv4Address | None = None
    interface: str | None = None  # the node address is this link's first IPv4 address
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    ttl: int | None = None
    grace: int | None = None


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
        host.add_cluster_networks(self)

    # --- the node ------------------------------------------------------------------------
    def start(self) -> None:
        """Resume the join this node's state root holds (if any); start the timer."""
        from ..cluster import ClusterNode

        node = ClusterNode.resume(self.host.paths.root, self._on_peers, self._on_names)
        if node is not None:
            self._adopt(node)
        self._thread.start()
        self._events.start()

    def join(self, request: JoinRequest) -> NodeStatus:
        from ..cluster import DEFAULT_GRACE, DEFAULT_TTL, ClusterNode, JoinSettings, parse_endpoints

        with self._lock:
            if self.node is not None:
                joined = self.node.settings
                raise ConflictError(f"this node already joined a cluster as {joined.name} "
                                    f"({', '.join(joined.endpoints)}); leave first")
            endpoints = tuple(e.url for e in parse_endpoints(request.etcd))
            address = request.address or self._interface_address(request.interface)
            settings = JoinSettings(
                endpoints=endpoints, name=request.name or socket.gethostname(),
                address=str(address) if address else None, ca=request.ca, cert=request.cert,
                key=request.key, ttl=request.ttl or DEFAULT_TTL,
                grace=DEFAULT_GRACE if request.grace is None else request.grace,
            )
            self._adopt(ClusterNode.join(self.host.paths.root, settings, self._on_peers,
                                         self._on_names))
            return self._own_status()

    def _interface_address(self, interface: str | None) -> IPv4Address | None:
        if interface is None:
            return None
        found = self.host.kernel.addresses_in(Path("/proc/self/ns/net"), interface)
        if not found:
            raise ConfigError("interface", interface, "no such link with an IPv4 address")
        return min(found).ip

    def _adopt(self, node: ClusterNode) -> None:
        """NODE is this daemon's now. Its view may have delivered peers already (it starts
        inside join and resume): the new plane starts from those."""
        plane = OverlayPlane(self.host.store, self._kernel, node.node, node.membership.address)
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
            node.leave()
            with self._delivering:
                self.node = self.plane = None
                self._peers.clear()
                self._remote_names.clear()
            self._apply_names()  # no share left: the other nodes' names go from the record
            self._on_change()

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
        from ..cluster import GlobalNetworkSpec

        node = self._require()
        unknown = sorted(set(spec.options) - USER_OPTIONS)
        if unknown:
            raise ConfigError("opt", unknown[0], "unknown option for driver overlay (known: "
                              f"{', '.join(sorted(USER_OPTIONS))})")
        if len(spec.subnets) > 1:
            raise ConfigError("subnet", [str(s.subnet) for s in spec.subnets],
                              "an overlay network has one subnet")
        if self.host.find_network(spec.name) is not None:
            raise ConflictError(f"network with name {spec.name} already exists")
        options = self._overlay_options(spec.options)
        subnet = spec.subnets[0].subnet if spec.subnets else None
        if subnet is not None:
            self._check_local_overlap(subnet)
        size = int(spec.options.get("subnet_size", "24"))
        vni = int(spec.options["vni"]) if "vni" in spec.options else None
        return node.networks.create(GlobalNetworkSpec(
            name=spec.name, subnet=subnet, subnet_size=size, vni=vni, internal=spec.internal,
            options=options, labels=dict(spec.labels),
        ))

    def _overlay_options(self, given: Mapping[str, str]) -> dict[str, str]:
        """The global record's options from `-o`: checked here, before etcd is asked."""
        backend = parse_backend(given.get("backend", Backend.AUTO.value))
        port = parse_int("opt vxlan_port", given.get("vxlan_port", str(DEFAULT_VXLAN_PORT)),
                         1, 65535)
        if "subnet_size" in given:
            parse_int("opt subnet_size", given["subnet_size"], 8, 30)
        if "vni" in given:
            parse_int("opt vni", given["vni"], 1, (1 << 24) - 1)
        return {"backend": backend.value, "vxlan_port": str(port)}

    def _check_local_overlap(self, subnet: IPv4Network) -> None:
        for network in self.host.networks():
            for config in network.subnets:
                if config.subnet.overlaps(subnet):
                    raise ConflictError(f"subnet {subnet} overlaps network {network.name} "
                                        f"({config.subnet}) on this node")

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
        """engine.networks.ClusterNetworks: this node's share of NAME, its block leased now."""
        network = self.global_network(name)
        if network is None or self.node is None or self.plane is None:
            return None
        block = self.node.claim_subnet(name)
        backend = parse_backend(network.options.get("backend", Backend.AUTO.value))
        mtu = veth_mtu(backend, self.plane.underlay().mtu)
        port = int(network.options.get("vxlan_port", DEFAULT_VXLAN_PORT))
        spec = NetworkSpec(
            name=network.name, driver="overlay", subnets=(SubnetConfig(block),),
            internal=network.internal, labels=dict(network.labels),
            options=local_options(network.subnet, network.vni, backend.value, port, mtu),
        )
        self._wake.set()  # the new share gets its tunnel and routes without waiting
        return spec, network.id

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
                node.names.publish(network.name, published_names(records, network.id))
            except NetbayError as exc:  # etcd away: the next sync writes them
                log.info("overlay %s: names not published yet: %s", network.name, exc)

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
            self._follow_address(plane, node)
            for network in plane.shares():
                self._publish_vtep(network)
            plane.sync()
            self._publish_names(plane, node)
            self._apply_names()
            if node.view.wait_synced(0):
                self._drop_orphan_shares(plane, node)

    def _follow_address(self, plane: OverlayPlane, node: ClusterNode) -> None:
        """A node joined without --address or --interface takes the source address towards
        etcd, again at every sync: when it changes (DHCP, a moved VM) the record follows
        and every peer replaces its routes, neighbour and FDB entries for this node."""
        from ..cluster import source_address

        if node.settings.address is not None:
            return
        try:
            address = source_address(node.client.endpoints[0])
        except ConfigError:
            return  # no route towards etcd just now: keep the last address
        if address == plane.address:
            return
        try:
            node.membership.set_address(address)
        except NetbayError as exc:  # etcd away: the next sync tries again
            log.info("cluster: new address %s not recorded yet: %s", address, exc)
            return
        log.info("cluster: this node's address changed from %s to %s", plane.address, address)
        plane.address = address

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
        with self._lock:
            if self.node is not None:
                self.node.close()
