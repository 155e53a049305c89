"""ClusterView: the cluster record kept current in memory, for this node's data plane and
its `cluster nodes/status`. It lists everything under the root at one revision, watches from
that revision + 1, and after a compaction lists again and compares everything (address,
block, VTEP MAC; flannel compares subnets only and keeps a stale MAC). Level-triggered: for
each network whose peers differ from what it last delivered, ON_PEERS gets the full list
now, never a delta; a list the consumer failed on is delivered again with the next change.
ON_NAMES gets the other nodes' names of each network the same way (for this node's DNS).

Control plane down: the watch looks for a member to resume on and the view keeps its last
state (nothing is torn down for want of news); when etcd answers again the watch resumes
from where it stood, or the view relists. Callbacks run on the view's own thread, so a slow
consumer delays only the view, never the lease renewals.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import TypeVar

from ..errors import NetbayError
from ..name_entry import NameEntry
from .bgp_config import BgpConfig, BgpConfigState
from .bgp_status import BgpBoard, Published
from .etcd import EtcdClient, WatchHandle
from .kv import WatchEvent
from .layout import GlobalNetwork, Layout
from .state import ClusterState, NameLists, NodeStatus, Peer, PeerLists, changed

log = logging.getLogger("netbay.cluster")
T = TypeVar("T")
OnPeers = Callable[[str, tuple[Peer, ...]], None]
OnNames = Callable[[str, tuple[NameEntry, ...]], None]
OnSynced = Callable[[], None]
RELIST_PAUSE = 0.5  # between listings that failed


@dataclass(frozen=True)
class _Compacted:
    revision: int


_STOP = object()


class ClusterView:
    def __init__(
        self, client: EtcdClient, layout: Layout, on_peers: OnPeers | None = None,
        node: str | None = None, *, on_names: OnNames | None = None,
        on_synced: OnSynced | None = None,
    ) -> None:
        """NODE: this node's id, left out of every peer list and of the names; ON_SYNCED:
        called after each listing's deliveries (the first makes wait_synced true)."""
        self._client = client
        self._layout = layout
        self._on_peers = on_peers
        self._on_names = on_names
        self._on_synced = on_synced
        self._node = node
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue()
        self._lock = threading.Lock()
        self._state = ClusterState(layout)
        self._bgp = BgpBoard(layout)  # what each node publishes of its BGP sessions
        self._bgp_config = BgpConfigState(layout)  # route reflectors, external peers
        self._delivered: PeerLists = {}
        self._delivered_names: NameLists = {}
        self._last_seen: dict[str, float] = {}
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._watch: WatchHandle | None = None
        self._generation = 0  # of the watch; items of an older one are dropped
        self._thread = threading.Thread(target=self._run, name="netbay-cluster-view",
                                        daemon=True)
        self.revision = 0  # the store revision the view reflects
        self.relists = 0

    # -- for the daemon

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put((self._generation, _STOP))
        if self._thread.is_alive():
            self._thread.join(self._client.config.retry_for + 2)
        if self._watch is not None:
            self._watch.cancel()

    def wait_synced(self, timeout: float) -> bool:
        """Whether the view has listed the record once (before that it knows nothing, and
        its consumer should change nothing)."""
        return self._synced.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._watch is not None and self._watch.connected

    def peers(self, network: str) -> tuple[Peer, ...]:
        with self._lock:
            return self._state.peers(self._node).get(network, ())

    def names(self, network: str) -> tuple[NameEntry, ...]:
        """The names the other nodes publish on NETWORK."""
        with self._lock:
            return self._state.names_of(self._node).get(network, ())

    def network(self, name: str) -> GlobalNetwork | None:
        with self._lock:
            return self._state.networks.get(name)

    def networks(self) -> list[GlobalNetwork]:
        with self._lock:
            return sorted(self._state.networks.values(), key=lambda n: (n.created, n.name))

    def blocks_of(self, node: str) -> dict[str, tuple[IPv4Network, ...]]:
        """NODE's IPv4 blocks of each network (lowest first), as their keys in etcd say."""
        with self._lock:
            return self._state.blocks_of(node)

    def blocks6_of(self, node: str) -> dict[str, tuple[IPv6Network, ...]]:
        """NODE's IPv6 blocks of each dual-stack network (lowest first)."""
        with self._lock:
            return self._state.blocks6_of(node)

    def nodes(self) -> list[NodeStatus]:
        with self._lock:
            return self._state.statuses(self._last_seen, time.time())

    def bgp_status(self, node: str) -> Published | None:
        """The BGP sessions NODE (an id) published; None: it publishes none."""
        with self._lock:
            return self._bgp.get(node)

    def bgp_config(self) -> BgpConfig:
        with self._lock:
            return self._bgp_config.config()

    # -- the view's thread

    def _run(self) -> None:
        self._relist()
        while not self._stopping.is_set():
            items = [self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            current = [item for generation, item in items if generation == self._generation]
            if any(item is _STOP for item in current):
                return
            try:
                self._handle(current)
            except Exception:  # the view must outlive anything: start over from a listing
                log.exception("cluster view: an update failed; relisting")
                self._relist()

    def _handle(self, items: list[object]) -> None:
        if any(isinstance(item, _Compacted) for item in items):
            log.info("cluster view: etcd history compacted past revision %d; relisting",
                     self.revision)
            self._relist()
        else:
            self._apply([item for item in items if isinstance(item, WatchEvent)])

    def _apply(self, events: list[WatchEvent]) -> None:
        with self._lock:  # a transaction's events share one revision: apply them all
            for event in events:
                self._state.apply(event)
                self._bgp.apply(event)
                self._bgp_config.apply(event)
                self.revision = max(self.revision, event.revision)
        self._publish()

    def _relist(self) -> None:
        while not self._stopping.is_set():
            try:
                listing = self._client.get_prefix(self._layout.root)
            except NetbayError as exc:
                log.warning("cluster view: cannot list the cluster record: %s", exc)
                self._stopping.wait(RELIST_PAUSE)
                continue
            if self._watch is not None:
                self._watch.cancel()
            with self._lock:
                self._state = ClusterState.from_listing(self._layout, listing.items)
                self._bgp = BgpBoard.from_listing(self._layout, listing.items)
                self._bgp_config = BgpConfigState.from_listing(self._layout, listing.items)
                self.revision = listing.revision
                self._generation += 1
            self._watch = self._start_watch(listing.revision + 1, self._generation)
            self.relists += 1
            self._publish()
            self._synced.set()
            if self._on_synced is not None:
                try:
                    self._on_synced()
                except Exception:
                    log.exception("cluster view: the consumer of the listing failed")
            return

    def _start_watch(self, revision: int, generation: int) -> WatchHandle:
        def on_event(event: WatchEvent) -> None:
            self._queue.put((generation, event))

        def on_compacted(compacted: int) -> None:
            self._queue.put((generation, _Compacted(compacted)))

        return self._client.watch_prefix(self._layout.root, revision, on_event, on_compacted)

    def _publish(self) -> None:
        self._note_lost()
        with self._lock:
            peers = self._state.peers(self._node)
            names = self._state.names_of(self._node)
        self._delivered = _deliver(self._on_peers, "peers", self._delivered, peers)
        self._delivered_names = _deliver(self._on_names, "names", self._delivered_names, names)

    def _note_lost(self) -> None:
        """When each newly lost node was last seen: its grace lease is renewed with its
        liveness lease, so the grace it has used up is the time since its last renewal."""
        with self._lock:
            lost = {n: self._state.nodes[n].grace_lease for n in self._state.lost()}
            for node in set(self._last_seen) - set(lost):
                del self._last_seen[node]
            unknown = {n: lease for n, lease in lost.items() if n not in self._last_seen}
        for node, lease in unknown.items():
            try:
                ttl = self._client.time_to_live(lease)
            except NetbayError:
                continue
            if ttl.remaining >= 0:
                with self._lock:
                    self._last_seen[node] = time.time() - (ttl.granted - ttl.remaining)


def _deliver(
    consumer: Callable[[str, tuple[T, ...]], None] | None, what: str,
    delivered: Mapping[str, tuple[T, ...]], lists: Mapping[str, tuple[T, ...]],
) -> Mapping[str, tuple[T, ...]]:
    """Give CONSUMER each of LISTS that differs from what it was last DELIVERED; what it has
    been delivered now."""
    now = dict(lists)
    for network, items in changed(delivered, lists).items():
        if consumer is None:
            continue
        try:
            consumer(network, items)
        except Exception:
            log.exception("cluster view: the consumer of %s's %s failed", network, what)
            now.pop(network, None)  # so the next change delivers it again
    return now
