"""The control plane at scale: simulated nodes running netbay's real cluster code against one
real etcd. Not a test. As root or not:

    .venv/bin/python benchmarks/cluster_scale.py [--nodes 100 500 1000] [--changes 10]
                                                 [--quick|--tiny] [--json FILE]

A simulated node (cluster_worker.py) is what a daemon runs in the cluster, minus its kernel: a
Membership (its record and liveness lease, renewed at a third of the TTL by a thread of its
own, as the daemon's), SubnetLeases (its /24 of a global network, claimed in one transaction)
and what it watches the record with. The nodes run in worker processes of 125 at most (8 for
1,000), each with its own EtcdClient (one gRPC connection, one event loop); VIEWS of the nodes,
spread over them, run a real ClusterView (list, watch, level-triggered peer lists) whose
on_peers is a recording data plane: it notes when each view's peer list first shows a change;
every other node holds the same watch bare, its events timestamped. PROBES more views run
alone in processes of their own, as on a real host. One etcd member (Debian etcd-server 3.4)
on 127.0.0.1 with free ports, started and stopped by PID (tests/etcd.py), its data in a
temporary directory removed after; a fresh one, and fresh processes, for each size.

  join     N nodes register and claim a block of one global network, 16 at a time over all
           processes: from the start until all are in, and each node's own (p50/p99);
  views    the views list the record and deliver their peers; the other nodes' watches start
           at the revision of that moment;
  changes  CHANGES changes one after the other, alternately a new node joining and an existing
           node claiming its first block of a second network, each made by the node's own
           SubnetLeases in its process: from the start of the claim to each probe and view
           delivering the list with it, and to each of the N watches receiving the event
           (p50/p99 over every view or watch and change; "every node": each change's slowest);
  kill     one node stops renewing (its daemon killed): from then, and from its last renewal,
           to its absence from every view (target: TTL + 2 s);
  etcd     its CPU (utime + stime, /proc/PID/stat) and RSS in each phase, peak RSS at the end;
  renewals every keep-alive of every node's two leases from the start to the end of the kill:
           how many, their latency, how many failed or found the lease expired (zero
           expected: a node whose renewals fall behind is lost and registers again), and the
           longest time between two confirmed renewals of one lease (TTL/3 + latency: kept up).

How this differs from N real hosts: the nodes are threads of N/125 processes, not N daemons on
N machines: a process's nodes share its one gRPC connection (their watches multiplexed on one
stream, their renewals on one event loop), where N hosts have N connections, and every process
shares this machine's 2 CPUs with etcd and the others. A view's work on a change (apply the
event, rebuild its peer lists) is O(N); a host does its own, all hosts at once, but here N
views would queue on 2 CPUs (N x that work, and N listings of the whole record at start, so
the simulation would measure itself). So only VIEWS nodes run a view, and the figures that
carry over are the probes' (a view alone in its process, as a host's) and the watches'
receipt times (etcd's fan-out to N watchers, through N/125 connections: an upper bound) plus
one host's own work, measured alone (`host_work_ms`: the state update, the peer lists and
their comparison at N nodes). The joins, 16 at a time, each list the nodes (a name taken?)
and the blocks (a free one?): O(N) each, as on a host, but all on these 2 CPUs. etcd's load is
the real one (N lease pairs renewed every TTL/3, N watchers, N joins) but for the connections
(N/125) and the listings at start (VIEWS + PROBES, not N). The nodes' addresses are recorded,
never reached: there is no data plane.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from cluster_sim import (  # noqa: E402
    NODES_PER_WORKER,
    PROBES,
    Phases,
    Simulation,
    Worker,
    etcd_member,
    memory_mb,
    quantiles,
)
from cluster_worker import node_id  # noqa: E402
from machine import package_version  # noqa: E402
from netbay.cluster import (  # noqa: E402
    DEFAULT_TTL,
    ClusterState,
    EtcdClient,
    EtcdConfig,
    GlobalNetworks,
    GlobalNetworkSpec,
    KeyValue,
    Layout,
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
JOIN_WORKERS = 16  # nodes joining at once, over every process
HOST_WORK_REPEATS = 20
UNCLAIMED_BLOCK = 4095  # host_work's blocks count down from the last of SECOND: none claimed


# --- the phases --------------------------------------------------------------------------------
def join_all(sim: Simulation) -> Json:
    """Every process's nodes join at once, JOIN_WORKERS in flight over them all."""
    concurrency = max(1, JOIN_WORKERS // len(sim.workers))
    start = time.perf_counter()
    replies = sim.ask(sim.workers, "join", network=NETWORK, concurrency=concurrency)
    return {"joined_s": max(r["done"] for r in replies) - start,
            "join_ms": quantiles([ms for r in replies for ms in r["join_ms"]])}


def observe(sim: Simulation, revision: int, timeout: float) -> Json:
    """Every view and probe started at once, bare watches from REVISION on the other nodes;
    until each view has listed the record and delivered its lists."""
    start = time.perf_counter()
    replies = sim.ask(sim.everyone, "observe", revision=revision, timeout=timeout)
    return {"synced_s": max(r["synced"] for r in replies) - start,
            "missing": sum(r["missing"] for r in replies)}


@dataclass(frozen=True)
class Change:
    """NODE comes into NETWORK's peer lists (PRESENT) or leaves them, made by KEY's event."""

    network: str
    node: str
    present: bool
    key: str


def observed(sim: Simulation, change: Change, make: Callable[[], float],
             timeout: float) -> Json:
    """CHANGE expected by every process, then MAKE (it returns when the change began); until
    every view, watch and probe has it (at most TIMEOUT): ms for each."""
    sim.ask(sim.everyone, "expect", **asdict(change))
    start = make()
    replies = sim.ask(sim.everyone, "collect", timeout=timeout)
    nodes, probes = replies[:len(sim.workers)], replies[len(sim.workers):]

    def since(key: str, of: list[Json]) -> list[float]:
        return [(t - start) * 1000 for reply in of for t in reply[key]]

    return {"delivered_ms": since("views", nodes), "received_ms": since("watches", nodes),
            "probe_ms": since("views", probes),
            "missing": sum(r["missing_views"] for r in replies),
            "unreceived": sum(r["missing_watches"] for r in nodes)}


def changes(sim: Simulation, count: int, changes_count: int, timeout: float) -> list[Json]:
    """CHANGES_COUNT changes: even ones a newcomer joining NETWORK (registered before the
    views started; it watches nothing), odd ones an existing node, spread over the processes,
    claiming a block of SECOND (every view but its own shows it; every watch receives it)."""
    layout, done = Layout(), []
    for number in range(changes_count):
        if number % 2 == 0:
            index, network = count + number // 2, NETWORK
        else:
            index, network = number * (count // changes_count), SECOND
        node = node_id(index)
        change = Change(network, node, True, layout.holder(network, node))
        claim = functools.partial(claimed, sim.owner(index), node, network)
        done.append({"kind": "node joins" if network == NETWORK else "subnet claim"}
                    | observed(sim, change, claim, timeout))
    return done


def claimed(owner: Worker, node: str, network: str) -> float:
    """NODE (of OWNER) claims a block of NETWORK: when it began."""
    return float(owner.ask("claim", node=node, network=network)["start"])


def kill(sim: Simulation, count: int, ttl: int) -> Json:
    """The last node stops renewing, its view or watch first (a host gone); until no view
    lists it."""
    node = node_id(count - 1)
    killed = sim.owner(count - 1).ask("kill", node=node)
    change = Change(NETWORK, node, False, Layout().alive(node))
    result = observed(sim, change, lambda: float(killed["start"]), ttl + 30.0)
    seconds = {key: max(result.pop(key), default=float("nan")) / 1000
               for key in ("delivered_ms", "received_ms", "probe_ms")}
    return result | {"ttl_s": ttl, "gone_all_s": seconds["delivered_ms"],
                     "received_all_s": seconds["received_ms"], "probe_s": seconds["probe_ms"],
                     "since_renewal_s": seconds["delivered_ms"] + killed["since_renewal_s"]}


def renewals(sim: Simulation) -> Json:
    """Every node's lease renewals since the last call, over every process."""
    replies = sim.ask(sim.workers, "renewals")
    latencies = [ms for r in replies for ms in r["latency_ms"]]
    return {"count": len(latencies), "failed": sum(r["failed"] for r in replies),
            "expired": sum(r["expired"] for r in replies), "latency_ms": quantiles(latencies),
            "longest_gap_s": max(r["longest_gap_s"] for r in replies)}


def host_work(client: EtcdClient, count: int) -> float:
    """One host's share of a change at this size, alone: apply a block claimed on SECOND,
    rebuild the peer lists, compare them with the last delivered (median ms)."""
    layout = Layout()
    state = ClusterState.from_listing(layout, client.get_prefix(layout.root).items)
    me = node_id(0)
    before, times = state.peers(me), []
    for index in range(HOST_WORK_REPEATS):
        block = block_at(SUBNETS[SECOND], 24, UNCLAIMED_BLOCK - index)
        holder = node_id(count - 1 - index)
        kv = KeyValue(layout.subnet(SECOND, block), encode_subnet_holder(holder), 0, 0, 0)
        start = time.perf_counter()
        state.apply(WatchEvent(PUT, kv))
        after = state.peers(me)
        changed(before, after)
        times.append((time.perf_counter() - start) * 1000)
        before = after
    return median(times)


# --- one size, every size ---------------------------------------------------------------------
def measure_size(count: int, changes_count: int, ttl: int,
                 progress: Callable[[str], None]) -> Json:
    views, step = min(count, VIEWS), max(1, count // VIEWS)
    viewing = [i for i in range(count) if i % step == 0 and i // step < views]
    newcomers = list(range(count, count + (changes_count + 1) // 2))
    with etcd_member() as (endpoint, pid), EtcdClient(EtcdConfig((endpoint,))) as client:
        made = GlobalNetworks(client, Layout())
        for name, subnet in SUBNETS.items():
            made.create(GlobalNetworkSpec(name, subnet))
        with Simulation(endpoint, count, newcomers, viewing, ttl) as sim:
            progress(f"{count} nodes in {len(sim.workers)} processes, {views} views, "
                     f"{len(sim.probes)} probes: join")
            return {"views": views, "workers": len(sim.workers)} | in_cluster(
                client, sim, Phases(pid, sim.pids), count, changes_count, ttl, progress)


def in_cluster(client: EtcdClient, sim: Simulation, phases: Phases, count: int,
               changes_count: int, ttl: int, progress: Callable[[str], None]) -> Json:
    timeout = 30.0 + count * 0.05
    with phases.phase("join"):
        joined = join_all(sim)
    renewed = {"join": renewals(sim)}
    sim.ask(sim.workers, "register")
    progress(f"{count} nodes: views list the record, bare watches on the others")
    with phases.phase("views"):
        synced = observe(sim, client.revision(), timeout)
    progress(f"{count} nodes: {changes_count} changes")
    with phases.phase("changes"):
        done = changes(sim, count, changes_count, timeout)
    progress(f"{count} nodes: one killed, waiting out its {ttl} s lease")
    with phases.phase("kill"):
        killed = kill(sim, count, ttl)
    renewed["after"] = renewals(sim)
    work = host_work(client, count)
    db = max((m.db_size for m in client.status() if m.healthy), default=0)
    return {"nodes": count, **joined, **synced, **summary(done), "kill": killed,
            "renewals": renewed, "host_work_ms": work, "db_mb": db / 2**20,
            "etcd_cpu_s": phases.etcd_cpu_s, "etcd_rss_mb": phases.etcd_rss_mb,
            "sim_cpu_s": phases.sim_cpu_s, "wall_s": phases.wall_s, **memory_mb(phases.pid)}


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
                    "join_workers": JOIN_WORKERS, "max_views": VIEWS, "probes": PROBES,
                    "nodes_per_worker": NODES_PER_WORKER, "runs": [], "error": None}
    for count in nodes:
        result["runs"].append(measure_size(count, changes, ttl, progress))
    return result


def print_table(result: Json) -> None:
    print(f"\netcd {result['etcd']}, TTL {result['ttl_s']} s, {result['changes']} changes")
    print(f"{'nodes':>5} {'procs':>5} {'join s':>6} {'p99 ms':>7} {'sync s':>6} "
          f"{'probe p99':>9} {'watch p99':>9} {'view p99':>8} {'kill s':>6} "
          f"{'etcd cpu s':>10} {'RSS MB':>6} {'renewals':>8} {'failed':>6} {'gap s':>5}")
    for r in result["runs"]:
        renewed = r["renewals"].values()
        failed = sum(part["failed"] + part["expired"] for part in renewed)
        print(f"{r['nodes']:>5} {r['workers']:>5} {r['joined_s']:>6.1f} "
              f"{r['join_ms']['p99']:>7.1f} {r['synced_s']:>6.1f} {r['probe_ms']['p99']:>9.1f} "
              f"{r['received_ms']['p99']:>9.1f} {r['propagation_ms']['p99']:>8.1f} "
              f"{r['kill']['gone_all_s']:>6.1f} {sum(r['etcd_cpu_s'].values()):>10.1f} "
              f"{r['hwm_mb']:>6.0f} {sum(part['count'] for part in renewed):>8} {failed:>6} "
              f"{max(part['longest_gap_s'] for part in renewed):>5.1f}")


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
