"""One process of cluster_scale.py's simulation (cluster_sim.Worker starts it): simulated nodes
made of netbay's real cluster parts over one EtcdClient of this process's own (many nodes, or
one alone with its view: a host), answering the parent's commands on stdin and stdout, one
JSON line each way:

    cluster_worker.py '{"endpoint": URL, "ttl": S, "nodes": [I...], "newcomers": [I...],
                        "views": [I...], "nice": N}'

Each node is a Membership (its record and liveness lease, renewed at a third of the TTL by a
thread of its own), SubnetLeases, and what it watches the record with: a real ClusterView for
those in VIEWS (a host's one node), whose on_peers is a recording data plane, a bare watch of
the same prefix for the others. Times are time.perf_counter() (CLOCK_MONOTONIC on Linux: one
clock in every process), for the parent to subtract its own; no figures are computed here.
EOF on stdin stops every node and the process exits.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from netbay.cluster import (
    ClusterView,
    EtcdClient,
    EtcdConfig,
    GlobalNetwork,
    GlobalNetworks,
    Layout,
    Membership,
    Peer,
    SubnetLeases,
    WatchEvent,
    WatchHandle,
)
from netbay.errors import NetbayError

Json = dict[str, Any]
Sighting = tuple[str, str, bool]  # network, node, in its peer list (or out of it)
UNDERLAY = IPv4Address("198.18.0.0")  # the nodes' addresses: recorded, never reached
GRACE = 3600


def node_id(index: int) -> str:
    return f"{index:032x}"


class Recorder:
    """Every view's on_peers and every watch's events, from expect() to collect(): when each
    view (by node id) first showed the sighting, and when each watch (a view's by its thread,
    a bare one by its node id) received the key that makes the change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sighting: Sighting | None = None
        self._key = ""
        self._needed = (0, 0)
        self._done = threading.Event()  # every view showed it, every watch received it
        self._hits: dict[str, float] = {}
        self._receipts: dict[Hashable, float] = {}

    def expect(self, sighting: Sighting, key: str, views: int, watches: int) -> None:
        with self._lock:
            self._sighting, self._key, self._needed = sighting, key, (views, watches)
            self._hits, self._receipts = {}, {}
            self._done.clear()
            self._check()

    def collect(self, timeout: float) -> Json:
        """Until every view showed it and every watch received it (at most TIMEOUT): the
        times, and how many did not."""
        self._done.wait(timeout)
        with self._lock:
            self._sighting, self._key = None, ""
            views, watches = self._needed
            return {"views": list(self._hits.values()), "watches": list(self._receipts.values()),
                    "missing_views": views - len(self._hits),
                    "missing_watches": watches - len(self._receipts)}

    def on_peers(self, viewer: str, network: str, peers: tuple[Peer, ...]) -> None:
        now = time.perf_counter()
        with self._lock:
            if self._sighting is None or viewer in self._hits:
                return
            wanted, node, present = self._sighting
            if network == wanted and any(peer.node == node for peer in peers) == present:
                self._hits[viewer] = now
                self._check()

    def received(self, watcher: Hashable, event: WatchEvent) -> None:
        if event.kv.key != self._key:
            return
        now = time.perf_counter()
        with self._lock:
            if event.kv.key == self._key and watcher not in self._receipts:
                self._receipts[watcher] = now
                self._check()

    def _check(self) -> None:
        views, watches = self._needed
        if len(self._hits) >= views and len(self._receipts) >= watches:
            self._done.set()


class Renewals:
    """Every lease renewal of this process: its latency, whether it failed (no member answered
    in time) or found the lease expired, and per lease the time between confirmed ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies_ms: list[float] = []
        self._failed = self._expired = 0
        self._last: dict[int, float] = {}
        self._longest_gap = 0.0

    def note(self, lease: int, started: float, ttl: int | None) -> None:
        """TTL: what etcd answered (0: expired), None: it did not answer."""
        now = time.perf_counter()
        with self._lock:
            self._latencies_ms.append(round((now - started) * 1000, 2))
            if ttl is None:
                self._failed += 1
            elif ttl == 0:
                self._expired += 1
            else:
                if lease in self._last:
                    self._longest_gap = max(self._longest_gap, now - self._last[lease])
                self._last[lease] = now

    def figures(self) -> Json:
        """Since the last call (the gaps run on across it)."""
        with self._lock:
            figures = {"latency_ms": self._latencies_ms, "failed": self._failed,
                       "expired": self._expired, "longest_gap_s": self._longest_gap}
            self._latencies_ms, self._failed, self._expired = [], 0, 0
            self._longest_gap = 0.0
            return figures


class RecordingClient(EtcdClient):
    """A process's one client: notes when each view's watch receives an event, and every
    lease renewal."""

    def __init__(self, config: EtcdConfig, recorder: Recorder, renewals: Renewals) -> None:
        super().__init__(config)
        self.recorder = recorder
        self.renewals = renewals

    def watch_prefix(self, prefix: str, start_revision: int,
                     on_event: Callable[[WatchEvent], None],
                     on_compacted: Callable[[int], None]) -> WatchHandle:
        viewer = threading.get_ident()  # a view starts its watch on its own thread

        def noted(event: WatchEvent) -> None:
            self.recorder.received(viewer, event)
            on_event(event)

        return super().watch_prefix(prefix, start_revision, noted, on_compacted)

    def bare_watch(self, node: str, start_revision: int) -> WatchHandle:
        """What a node's view watches, its events only noted (under NODE)."""
        return super().watch_prefix(Layout().root, start_revision,
                                    lambda event: self.recorder.received(node, event),
                                    lambda revision: None)

    def keep_alive(self, lease: int, retry_for: float | None = None) -> int:
        started = time.perf_counter()
        try:
            ttl = super().keep_alive(lease, retry_for)
        except NetbayError:
            self.renewals.note(lease, started, None)
            raise
        self.renewals.note(lease, started, ttl)
        return ttl


@dataclass
class SimNode:
    """A node: its record and leases, its block, and a view or a bare watch."""

    id: str
    membership: Membership
    subnets: SubnetLeases
    view: ClusterView | None = None
    watch: WatchHandle | None = None

    def observe(self, client: RecordingClient, revision: int, full: bool) -> None:
        """A view of its own (FULL), else a bare watch from REVISION."""
        if full:
            self.view = ClusterView(client, Layout(),
                                    functools.partial(client.recorder.on_peers, self.id), self.id)
            self.view.start()
        else:
            self.watch = client.bare_watch(self.id, revision)

    @property
    def watching(self) -> bool:
        """Its view's or bare watch streams, if it has one."""
        if self.view is not None:
            return self.view.connected
        return self.watch is None or self.watch.connected

    def blind(self) -> None:
        """Its view or watch stopped: the host is gone, or stopping."""
        if self.view is not None:
            self.view.stop()
            self.view = None
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None


def sim_node(client: EtcdClient, layout: Layout, index: int, ttl: int) -> SimNode:
    node = node_id(index)
    membership = Membership(client, layout, node, f"node-{index}", UNDERLAY + index, ttl, GRACE)
    return SimNode(node, membership, SubnetLeases(client, layout, node,
                                                  lambda: membership.grace_lease))


def join(node: SimNode, network: GlobalNetwork) -> float:
    """Register and claim a block: the node's join, in ms."""
    start = time.perf_counter()
    node.membership.join()
    node.subnets.claim(network)
    return (time.perf_counter() - start) * 1000


class Worker:
    """This process's nodes and the parent's commands on them."""

    def __init__(self, spec: Json) -> None:
        self.client = RecordingClient(EtcdConfig((spec["endpoint"],)), Recorder(), Renewals())
        layout = Layout()
        self.joining = [node_id(i) for i in spec["nodes"]]
        self.nodes = {node_id(i): sim_node(self.client, layout, i, spec["ttl"])
                      for i in [*spec["nodes"], *spec["newcomers"]]}
        self.viewing = {node_id(i) for i in spec["views"]}

    def commands(self) -> dict[str, Callable[..., Json]]:
        return {"join": self.join, "observe": self.observe, "register": self.register,
                "expect": self.expect, "claim": self.claim, "collect": self.collect,
                "kill": self.kill, "renewals": self.renewals}

    def join(self, network: str, concurrency: int) -> Json:
        """Every node but the newcomers registers and claims a block, CONCURRENCY at once."""
        found = GlobalNetworks(self.client, Layout()).get(network)
        assert found is not None, network
        with ThreadPoolExecutor(concurrency) as pool:
            join_ms = list(pool.map(lambda n: join(self.nodes[n], found), self.joining))
        return {"join_ms": join_ms, "done": time.perf_counter()}

    def observe(self, revision: int, timeout: float) -> Json:
        """The views started, bare watches from REVISION on the other nodes; until every view
        has listed the record and delivered its lists, and every watch streams."""
        for node in self.joining:
            self.nodes[node].observe(self.client, revision, node in self.viewing)
        deadline = time.perf_counter() + timeout
        synced = [view.wait_synced(timeout) for view in self._views()]
        while not all(node.watching for node in self.nodes.values()):
            if time.perf_counter() > deadline:
                break
            time.sleep(0.01)
        return {"synced": time.perf_counter(), "missing": synced.count(False),
                "unconnected": sum(not node.watching for node in self.nodes.values())}

    def register(self) -> Json:
        """The newcomers register, untimed: their join is a change to come."""
        for node in self.nodes.values():
            if node.id not in self.joining:
                node.membership.join()
        return {}

    def expect(self, network: str, node: str, present: bool, key: str) -> Json:
        """Every view but NODE's own is to show NODE in (PRESENT) or out of NETWORK's peer
        list, every watch to receive KEY."""
        views = [view for view in self._views() if view is not self._view_of(node)]
        watches = sum(1 for n in self.nodes.values()
                      if n.view is not None or n.watch is not None)
        self.client.recorder.expect((network, node, present), key, len(views), watches)
        return {}

    def claim(self, node: str, network: str) -> Json:
        """NODE claims a block of NETWORK: when it started."""
        found = GlobalNetworks(self.client, Layout()).get(network)
        assert found is not None, network
        start = time.perf_counter()
        self.nodes[node].subnets.claim(found)
        return {"start": start}

    def collect(self, timeout: float) -> Json:
        return self.client.recorder.collect(timeout)

    def kill(self, node: str) -> Json:
        """NODE stops renewing, its view or watch first (a host gone): when, and how long
        after its last renewal."""
        killed = self.nodes[node]
        killed.blind()
        last = killed.membership.health.last_renewal or time.time()
        start, since_renewal = time.perf_counter(), time.time() - last
        killed.membership.stop()
        return {"start": start, "since_renewal_s": since_renewal}

    def renewals(self) -> Json:
        return self.client.renewals.figures()

    def close(self) -> None:
        """Every daemon stopping: views first, so none reacts to the others."""
        for node in self.nodes.values():
            node.blind()
        for node in self.nodes.values():
            node.membership.stop()
        self.client.close()

    def _views(self) -> list[ClusterView]:
        return [n.view for n in self.nodes.values() if n.view is not None]

    def _view_of(self, node: str) -> ClusterView | None:
        return self.nodes[node].view if node in self.nodes else None


def serve(spec: Json) -> None:
    os.nice(spec["nice"])
    worker = Worker(spec)
    answer({"ready": True})
    try:
        for line in sys.stdin:
            command = json.loads(line)
            try:
                answer(worker.commands()[command.pop("op")](**command))
            except Exception as exc:  # the parent raises it; this process goes on to EOF
                traceback.print_exc()
                answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        worker.close()


def answer(reply: Json) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
