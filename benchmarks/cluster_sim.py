"""The simulated cluster of cluster_scale.py: one etcd member, simulated nodes made of netbay's
real cluster parts over one shared client, and the recording data plane that timestamps what
each node's view delivers and what each node's watch receives. No figures are computed here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # etcd.py; last

from etcd import DIE_WITH_PARENT, loopback_addresses, start_etcd_cluster  # noqa: E402
from netbay.cluster import (  # noqa: E402
    ClusterView,
    EtcdClient,
    EtcdConfig,
    GlobalNetwork,
    Layout,
    Membership,
    Peer,
    SubnetLeases,
    WatchEvent,
    WatchHandle,
)

Target = Callable[[str, tuple[Peer, ...]], bool]
Sighting = tuple[str, str, bool]  # network, node, in its peer list (or out of it)
UNDERLAY = IPv4Address("198.18.0.0")  # the nodes' addresses: recorded, never reached
GRACE = 3600
WATCH_GRACE = 3.0


def never(network: str, peers: tuple[Peer, ...]) -> bool:
    return False


class Recorder:
    """Every view's on_peers and every watch's events. A view is known by its thread (it
    starts its watch and delivers its lists on it), a bare watch by its node id: when each
    first met the target, and when each received the key that makes the change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: Target = never
        self._key = ""
        self._needed = (0, 0)
        self.shown = threading.Event()  # every view showed it
        self.done = threading.Event()  # and every watch received it
        self.hits: dict[int, float] = {}
        self.receipts: dict[Hashable, float] = {}

    def expect(self, target: Target, views: int, watches: int = 0, key: str = "") -> None:
        """Until VIEWS views met TARGET and WATCHES watches received KEY."""
        with self._lock:
            self._target, self._needed, self._key = target, (views, watches), key
            self.hits, self.receipts = {}, {}
            self.shown.clear()
            self.done.clear()

    def wait(self, timeout: float) -> None:
        """Until every view showed it (at most TIMEOUT), then every watch received it (a few
        seconds more at most: a watch whose creation timed out may never)."""
        self.shown.wait(timeout)
        self.done.wait(WATCH_GRACE)
        with self._lock:
            self._target, self._key = never, ""

    def on_peers(self, network: str, peers: tuple[Peer, ...]) -> None:
        now, viewer = time.perf_counter(), threading.get_ident()
        with self._lock:
            if viewer not in self.hits and self._target(network, peers):
                self.hits[viewer] = now
                self._check()

    def received(self, watcher: Hashable, event: WatchEvent) -> None:
        if event.kv.key != self._key:
            return
        now = time.perf_counter()
        with self._lock:
            if event.kv.key == self._key and watcher not in self.receipts:
                self.receipts[watcher] = now
                self._check()

    def _check(self) -> None:
        views, watches = self._needed
        if len(self.hits) >= views:
            self.shown.set()
            if len(self.receipts) >= watches:
                self.done.set()


class RecordingClient(EtcdClient):
    """The nodes' one client; notes when each view's watch receives an event."""

    def __init__(self, config: EtcdConfig, recorder: Recorder) -> None:
        super().__init__(config)
        self.recorder = recorder

    def watch_prefix(self, prefix: str, start_revision: int,
                     on_event: Callable[[WatchEvent], None],
                     on_compacted: Callable[[int], None]) -> WatchHandle:
        viewer = threading.get_ident()

        def noted(event: WatchEvent) -> None:
            self.recorder.received(viewer, event)
            on_event(event)

        return super().watch_prefix(prefix, start_revision, noted, on_compacted)

    def bare_watch(self, node: str, start_revision: int) -> WatchHandle:
        """What a node's view watches, its events only noted (under NODE)."""
        return super().watch_prefix(Layout().root, start_revision,
                                    lambda event: self.recorder.received(node, event),
                                    lambda revision: None)


@contextmanager
def etcd_member() -> Iterator[tuple[str, int]]:
    """One etcd member on loopback (tests/etcd.py): its client URL and PID; stopped by PID and
    its directory removed after."""
    directory = Path(tempfile.mkdtemp(prefix="netbay-bench-etcd-"))
    try:
        cluster = start_etcd_cluster([directory / "etcd0"], loopback_addresses(1))
        try:
            process = cluster.members[0].process
            assert process is not None
            yield cluster.endpoints[0], process.pid
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cpu_seconds(pid: int | None = None) -> float:
    """utime + stime of PID (None: this process, every thread)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "hwm_mb": int(status["VmHWM"].split()[0]) / 1024}


@dataclass
class Phases:
    """etcd's CPU seconds, this process's, and the wall time of each phase."""

    pid: int
    etcd_cpu_s: dict[str, float] = field(default_factory=dict)
    sim_cpu_s: dict[str, float] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        etcd, sim, wall = cpu_seconds(self.pid), cpu_seconds(), time.perf_counter()
        yield
        self.etcd_cpu_s[name] = cpu_seconds(self.pid) - etcd
        self.sim_cpu_s[name] = cpu_seconds() - sim
        self.wall_s[name] = time.perf_counter() - wall


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
            self.view = ClusterView(client, Layout(), client.recorder.on_peers, self.id)
            self.view.start()
        else:
            self.watch = client.bare_watch(self.id, revision)

    def blind(self) -> None:
        """Its view or watch stopped: the host is gone, or stopping."""
        if self.view is not None:
            self.view.stop()
            self.view = None
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None


def sim_node(client: EtcdClient, layout: Layout, index: int, ttl: int) -> SimNode:
    node = f"{index:032x}"
    membership = Membership(client, layout, node, f"node-{index}", UNDERLAY + index, ttl, GRACE)
    return SimNode(node, membership, SubnetLeases(client, layout, node,
                                                  lambda: membership.grace_lease))


def join(node: SimNode, network: GlobalNetwork) -> float:
    """Register and claim a block: the node's join, in ms."""
    start = time.perf_counter()
    node.membership.join()
    node.subnets.claim(network)
    return (time.perf_counter() - start) * 1000


def stop(nodes: Sequence[SimNode]) -> None:
    """A daemon stopping, for every node: views first, so none reacts to the others."""
    for node in nodes:
        node.blind()
    for node in nodes:
        node.membership.stop()


def quantiles(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    return {"p50": ordered[len(ordered) // 2], "p99": ordered[min(len(ordered) - 1,
                                                                  int(0.99 * len(ordered)))],
            "max": ordered[-1], "count": len(ordered)}


class Probe:
    """A view in a process of its own, as on a real host (`cluster_sim.py probe URL`): when its
    peer lists first showed, or stopped showing, each node."""

    def __init__(self, endpoint: str) -> None:
        self.seen: dict[Sighting, float] = {}
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [*DIE_WITH_PARENT, sys.executable, __file__, "probe", endpoint],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, name="probe-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line == "synced\n":
                self.ready.set()
                continue
            network, node, sign, when = line.split()
            self.seen.setdefault((network, node, sign == "+"), float(when))

    def wait_for(self, sighting: Sighting, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        while sighting not in self.seen and time.perf_counter() < deadline:
            time.sleep(0.005)
        return self.seen.get(sighting)

    def close(self) -> None:
        """Its stdin closed: it stops its view and exits; killed by PID if it does not."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)


def probe(endpoint: str) -> None:
    """The probe's side: one EtcdClient and one ClusterView; every node that comes into or
    leaves a peer list, with the time (CLOCK_MONOTONIC, as perf_counter is on Linux: the
    same clock in every process), until stdin closes."""
    client = EtcdClient(EtcdConfig((endpoint,)))
    known: dict[str, set[str]] = {}

    def on_peers(network: str, peers: tuple[Peer, ...]) -> None:
        now, nodes = time.perf_counter(), {peer.node for peer in peers}
        before = known.get(network, set())
        known[network] = nodes
        sys.stdout.write("".join([*(f"{network} {n} + {now}\n" for n in nodes - before),
                                  *(f"{network} {n} - {now}\n" for n in before - nodes)]))
        sys.stdout.flush()

    view = ClusterView(client, Layout(), on_peers)
    view.start()
    view.wait_synced(120)
    print("synced", flush=True)
    sys.stdin.read()
    view.stop()
    client.close()


if __name__ == "__main__" and sys.argv[1:2] == ["probe"]:
    probe(sys.argv[2])
