"""The control plane at scale: simulated nodes running netbay's real cluster code against one
real etcd. Not a test. As root or not:

    .venv/bin/python benchmarks/cluster_scale.py [--nodes 100 500 1000] [--changes 10]
                                                 [--quick|--tiny] [--json FILE]

A simulated node (cluster_sim.py) is what a daemon runs in the cluster, minus its kernel: a
Membership (its record and liveness lease, renewed at a third of the TTL), SubnetLeases (its
/24 of a global network, claimed in one transaction) and what it watches the record with.
VIEWS of the nodes, spread over them, run a real ClusterView (list, watch, level-triggered
peer lists) whose on_peers is a recording data plane: it notes when each view's peer list
first shows a change; every other node holds the same watch bare, its events timestamped. One
etcd member (Debian etcd-server 3.4) on 127.0.0.1 with free ports, started and stopped by PID
(tests/etcd.py), its data in a temporary directory removed after; a fresh one for each size.

  join     N nodes register and claim a block of one global network, 16 at a time: the time
           until all are in, and each node's own (p50/p99);
  views    the views list the record and deliver their N-1 peers; the other nodes' watches
           start at the revision of that moment;
  changes  CHANGES changes one after the other, alternately a new node joining and an existing
           node claiming its first block of a second network: from the start of the claim to
           each view delivering the list with it, and to each of the N watches receiving the
           event (p50/p99 over every view or watch and change; "every node": each change's
           slowest);
  kill     one node stops renewing (its daemon killed): from then, and from its last renewal,
           to its absence from every view (target: TTL + 2 s);
  etcd     its CPU (utime + stime, /proc/PID/stat) in each phase, RSS and peak RSS at the end.

How this differs from N real hosts: the nodes are threads of one Python process sharing one
EtcdClient (one gRPC connection and event loop; every watch multiplexed on one stream, where N
hosts have N connections) and this machine's 2 CPUs with etcd. A view's work on a change
(apply the event, rebuild its peer lists) is O(N); a host does its own, all hosts at once,
but here N views would queue under one GIL (N x that work, and N listings of the whole record
at start, starving the lease renewals of the rest: the simulation would measure itself). So
only VIEWS nodes run a view; the figures that carry over are the watches' receipt times (etcd's
fan-out to N watchers, through this process's one loop: an upper bound) plus one host's own
work, measured alone (`host_work_ms`: the state update, the peer lists and their comparison at
N nodes). etcd's load is the real one but for the listings: N lease pairs renewed every TTL/3,
N watchers, VIEWS listings.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from cluster_sim import (  # noqa: E402
    Phases,
    Probe,
    Recorder,
    RecordingClient,
    SimNode,
    etcd_member,
    join,
    memory_mb,
    quantiles,
    sim_node,
    stop,
)
from machine import package_version  # noqa: E402
from netbay.cluster import (  # noqa: E402
    DEFAULT_TTL,
    ClusterState,
    EtcdConfig,
    GlobalNetwork,
    GlobalNetworks,
    GlobalNetworkSpec,
    KeyValue,
    Layout,
    Peer,
    WatchEvent,
)
from netbay.cluster.carving import block_at  # noqa: E402
from netbay.cluster.kv import PUT  # noqa: E402
from netbay.cluster.layout import encode_subnet_holder  # noqa: E402
from netbay.cluster.state import changed  # noqa: E402
from sandbox import median  # noqa: E402

Json = dict[str, Any]
NETWORK, SECOND = "podnet", "podnet2"
SUBNETS = {NETWORK: IPv4Network("10.64.0.0/12"), SECOND: IPv4Network("10.80.0.0/12")}  # 4,096 /24s
VIEWS = 50  # nodes with a full ClusterView (all of them below that)
PROBES = 2  # views in processes of their own
JOIN_WORKERS = 16  # nodes joining at once
HOST_WORK_REPEATS = 20
UNCLAIMED_BLOCK = 4095  # host_work's blocks count down from the last of SECOND: none claimed


# --- the phases --------------------------------------------------------------------------------
def observe(nodes: Sequence[SimNode], client: RecordingClient, views: int,
            observers: Observers) -> Json:
    """VIEWS views (every len/VIEWS-th node) started at once, bare watches on the others;
    until each view has delivered its N-1 peers (and each probe has listed)."""
    step = max(1, len(nodes) // views)
    revision = client.revision()
    client.recorder.expect(
        lambda network, peers: network == NETWORK and len(peers) == len(nodes) - 1, views)
    start = time.perf_counter()
    for index, node in enumerate(nodes):
        node.observe(client, revision, index % step == 0 and index // step < views)
    client.recorder.wait(observers.timeout)
    for probe in observers.probes:
        probe.ready.wait(observers.timeout)
    return {"synced_s": time.perf_counter() - start,
            "missing": views - len(client.recorder.hits)}


@dataclass(frozen=True)
class Change:
    """NODE comes into NETWORK's peer lists (PRESENT) or leaves them, made by KEY's event;
    VIEWS views must show it and WATCHES watches receive it."""

    network: str
    node: str
    present: bool
    key: str
    views: int
    watches: int

    def shown(self, network: str, peers: tuple[Peer, ...]) -> bool:
        return network == self.network and any(
            peer.node == self.node for peer in peers) == self.present


@dataclass(frozen=True)
class Observers:
    recorder: Recorder
    probes: list[Probe]
    timeout: float


def timed_change(observers: Observers, change: Change, write: Callable[[], object]) -> Json:
    """WRITE; until every view, watch and probe has it: ms for each."""
    observers.recorder.expect(change.shown, change.views, change.watches, change.key)
    start = time.perf_counter()
    write()
    observers.recorder.wait(observers.timeout)
    sighting = (change.network, change.node, change.present)
    probed = [probe.wait_for(sighting, observers.timeout) for probe in observers.probes]
    hits, receipts = observers.recorder.hits, observers.recorder.receipts
    return {"delivered_ms": [(t - start) * 1000 for t in hits.values()],
            "received_ms": [(t - start) * 1000 for t in receipts.values()],
            "probe_ms": [(t - start) * 1000 for t in probed if t is not None],
            "missing": change.views - len(hits), "unreceived": change.watches - len(receipts)}


def changes(nodes: Sequence[SimNode], newcomers: Sequence[SimNode], count: int, views: int,
            networks: dict[str, GlobalNetwork], observers: Observers) -> list[Json]:
    """COUNT changes: even ones a newcomer joining NETWORK (registered first, untimed; it
    watches nothing), odd ones an existing node claiming a block of SECOND (every view but its
    own shows it; every watch receives it)."""
    layout, done = Layout(), []
    for number in range(count):
        if number % 2 == 0:
            node, network = newcomers[number // 2], NETWORK
            node.membership.join()
        else:
            node, network = nodes[number], SECOND
        change = Change(network, node.id, True, layout.holder(network, node.id),
                        views - (node.view is not None), len(nodes))
        done.append({"kind": "node joins" if network == NETWORK else "subnet claim"}
                    | timed_change(observers, change,
                                   functools.partial(node.subnets.claim, networks[network])))
    return done


def kill(node: SimNode, views: int, watches: int, observers: Observers, ttl: int) -> Json:
    """NODE stops renewing, its view or watch first (a host gone); until no view lists it."""
    change = Change(NETWORK, node.id, False, Layout().alive(node.id),
                    views - (node.view is not None), watches - 1)
    node.blind()
    since_renewal = time.time() - (node.membership.health.last_renewal or time.time())
    result = timed_change(replace(observers, timeout=ttl + 30.0), change, node.membership.stop)
    seconds = {key: max(result.pop(key), default=float("nan")) / 1000
               for key in ("delivered_ms", "received_ms", "probe_ms")}
    return result | {"ttl_s": ttl, "gone_all_s": seconds["delivered_ms"],
                     "received_all_s": seconds["received_ms"], "probe_s": seconds["probe_ms"],
                     "since_renewal_s": seconds["delivered_ms"] + since_renewal}


def host_work(client: RecordingClient, nodes: Sequence[SimNode]) -> float:
    """One host's share of a change at this size, alone: apply a block claimed on SECOND,
    rebuild the peer lists, compare them with the last delivered (median ms)."""
    layout = Layout()
    state = ClusterState.from_listing(layout, client.get_prefix(layout.root).items)
    me, before = nodes[0].id, state.peers(nodes[0].id)
    times = []
    for index, node in enumerate(nodes[-HOST_WORK_REPEATS:]):
        block = block_at(SUBNETS[SECOND], 24, UNCLAIMED_BLOCK - index)
        kv = KeyValue(layout.subnet(SECOND, block), encode_subnet_holder(node.id), 0, 0, 0)
        start = time.perf_counter()
        state.apply(WatchEvent(PUT, kv))
        after = state.peers(me)
        changed(before, after)
        times.append((time.perf_counter() - start) * 1000)
        before = after
    return median(times)


# --- one size, every size --------------------------------------------------------------------
def measure_size(count: int, changes_count: int, ttl: int,
                 progress: Callable[[str], None]) -> Json:
    with etcd_member() as (endpoint, pid):
        client = RecordingClient(EtcdConfig((endpoint,)), Recorder())
        probes: list[Probe] = []
        try:
            probes.extend(Probe(endpoint) for _ in range(PROBES))
            observers = Observers(client.recorder, probes, 30.0 + count * 0.05)
            return in_cluster(client, Phases(pid), observers, count, changes_count, ttl,
                              progress)
        finally:
            for probe in probes:
                probe.close()
            client.close()


def in_cluster(client: RecordingClient, phases: Phases, observers: Observers, count: int,
               changes_count: int, ttl: int, progress: Callable[[str], None]) -> Json:
    layout, views = Layout(), min(count, VIEWS)
    made = GlobalNetworks(client, layout)
    networks = {name: made.create(GlobalNetworkSpec(name, subnet))
                for name, subnet in SUBNETS.items()}
    nodes = [sim_node(client, layout, i, ttl) for i in range(count)]
    newcomers = [sim_node(client, layout, count + i, ttl) for i in range((changes_count + 1) // 2)]
    try:
        progress(f"{count} nodes: join")
        with phases.phase("join"), ThreadPoolExecutor(JOIN_WORKERS) as pool:
            join_ms = list(pool.map(lambda node: join(node, networks[NETWORK]), nodes))
        progress(f"{count} nodes: {views} views, {count - views} bare watches")
        with phases.phase("views"):
            synced = observe(nodes, client, views, observers)
        progress(f"{count} nodes: {changes_count} changes")
        with phases.phase("changes"):
            done = changes(nodes, newcomers, changes_count, views, networks, observers)
        progress(f"{count} nodes: one killed, waiting out its {ttl} s lease")
        with phases.phase("kill"):
            killed = kill(nodes[-1], views, count, observers, ttl)
        work = host_work(client, nodes)
        db = max((m.db_size for m in client.status() if m.healthy), default=0)
    finally:
        stop([*nodes, *newcomers])
    return {"nodes": count, "views": views, "join_ms": quantiles(join_ms), **synced,
            **summary(done), "kill": killed, "host_work_ms": work, "db_mb": db / 2**20,
            "etcd_cpu_s": phases.etcd_cpu_s, "sim_cpu_s": phases.sim_cpu_s,
            "wall_s": phases.wall_s, **memory_mb(phases.pid)}


def summary(done: list[Json]) -> Json:
    """The changes' figures pooled (every view or watch of every change) and per change."""
    def pooled(key: str) -> list[float]:
        return [ms for change in done for ms in change[key]]

    def slowest(key: str) -> list[float]:
        return [max(change[key], default=float("nan")) for change in done]

    return {
        "propagation_ms": quantiles(pooled("delivered_ms")),
        "received_ms": quantiles(pooled("received_ms")),
        "every_view_ms": quantiles(slowest("delivered_ms")),
        "every_watch_ms": quantiles(slowest("received_ms")),
        "probe_ms": quantiles(pooled("probe_ms")),
        "missing": sum(c["missing"] for c in done),
        "unreceived": sum(c["unreceived"] for c in done),
        "changes": [{"kind": c["kind"], "delivered_ms": quantiles(c["delivered_ms"]),
                     "received_ms": quantiles(c["received_ms"]),
                     "probe_ms": quantiles(c["probe_ms"])} for c in done],
    }


def run(nodes: Sequence[int] = (100, 500, 1000), changes: int = 10, ttl: int = DEFAULT_TTL,
        progress: Callable[[str], None] = print) -> Json:
    """Every size in turn, each against an etcd of its own."""
    if shutil.which("etcd") is None:
        return {"error": "etcd not installed (scripts/install.sh --cluster)", "runs": []}
    result: Json = {"etcd": package_version("etcd-server"), "ttl_s": ttl, "changes": changes,
                    "join_workers": JOIN_WORKERS, "max_views": VIEWS, "runs": [],
                    "error": None}
    for count in nodes:
        result["runs"].append(measure_size(count, changes, ttl, progress))
    return result


def print_table(result: Json) -> None:
    print(f"\netcd {result['etcd']}, TTL {result['ttl_s']} s, {result['changes']} changes")
    print(f"{'nodes':>5} {'views':>5} {'join s':>7} {'p99 ms':>7} {'sync s':>6} "
          f"{'view p50':>8} {'p99':>7} {'watch p50':>9} {'p99':>7} {'probe p99':>9} "
          f"{'kill s':>6} {'etcd cpu s':>10} {'RSS MB':>6}")
    for r in result["runs"]:
        prop, recv = r["propagation_ms"], r["received_ms"]
        print(f"{r['nodes']:>5} {r['views']:>5} {r['wall_s']['join']:>7.1f} "
              f"{r['join_ms']['p99']:>7.1f} {r['synced_s']:>6.1f} {prop['p50']:>8.1f} "
              f"{prop['p99']:>7.1f} {recv['p50']:>9.1f} {recv['p99']:>7.1f} "
              f"{r['probe_ms']['p99']:>9.1f} {r['kill']['gone_all_s']:>6.1f} "
              f"{sum(r['etcd_cpu_s'].values()):>10.1f} {r['rss_mb']:>6.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="the liveness lease, s")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="100 nodes")
    size.add_argument("--tiny", action="store_true", help="20 nodes, a 5 s TTL, 4 changes")
    args = parser.parse_args()
    if args.quick:
        args.nodes = [100]
    if args.tiny:
        args.nodes, args.ttl, args.changes = [20], 5, 4
    result = run(args.nodes, args.changes, args.ttl)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if result["error"]:
        print(result["error"], file=sys.stderr)
        return 1
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
