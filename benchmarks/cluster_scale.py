"""The control plane at scale: simulated nodes running netbay's real cluster code against one
real etcd. Not a test. As root or not:

    .venv/bin/python benchmarks/cluster_scale.py [--nodes 100 500 1000] [--changes 10]
                                                 [--quick|--tiny] [--json FILE]

A simulated node (cluster_worker.py) is what a daemon runs in the cluster, minus its kernel: a
Membership (its record and liveness lease, renewed at a third of the TTL by a thread of its
own, as in the daemon), SubnetLeases (its /24 of a global network, claimed in one
transaction) and what it watches the record with. HOSTS of the N nodes, spread over them, are
whole: each alone in a process with a real ClusterView (list, watch, level-triggered peer
lists) whose on_peers is a recording data plane, noting when its peer list first shows a
change. The others are packed NODES_PER_WORKER at most to a process (8 processes for 1,000),
each process with its own EtcdClient (one gRPC connection, one event loop) and at nice
NODES_NICENESS, each node holding a bare watch of the record, its events timestamped. One
etcd member (Debian etcd-server 3.4) on 127.0.0.1 with free ports, started and stopped by
PID (tests/etcd.py), its data in a temporary directory removed after; a fresh one, and fresh
processes, for each size.

  join     N nodes register and claim a block of one global network, JOIN_WORKERS at a time
           over the packed processes, the hosts with them: from the start until all are in,
           and each node's own (p50/p99); then the newcomers register (their join is to come);
  views    the hosts' views list the record and deliver their peers; the other nodes'
           watches start at the revision of that moment; until all stream;
  changes  CHANGES changes one after the other, alternately a newcomer joining (claiming its
           block) and an existing node claiming its first block of a second network, each
           made by the node's own SubnetLeases in its process: from the start of the claim to
           each host's view delivering the list with it, and to each of the N watches
           receiving the event (p50/p99 over every view or watch and change; "every node":
           each change's slowest);
  kill     one node stops renewing (its daemon killed): from then, and from its last renewal,
           to its absence from every host's view (target: TTL + 2 s);
  etcd     its CPU (utime + stime, /proc/PID/stat) and RSS in each phase, peak RSS at the end;
  renewals every keep-alive of every node's two leases, during the join and after it (to the
           end of the kill): how many, their latency, how many failed or found their lease
           expired (zero expected: a node whose renewals fall behind is lost and registers
           again), and the longest time between two confirmed renewals of one lease (TTL/3
           and a little: kept up). The TTL is the daemon's default (15 s).

How this differs from N real hosts. The packed nodes are threads of N/125 processes, not N
daemons on N machines: a process's nodes share its one gRPC connection (their watches on one
stream, their renewals on one event loop), where N hosts have N connections; and every
process shares this machine's 2 CPUs with etcd and the others. The packed processes run at
nice 10 so that their work, which N machines would share, does not take the CPU from etcd
and the hosts (each of which stands for a machine of its own): the hosts' figures are the
ones that carry over to a real host, the watches' an upper bound of etcd's fan-out to N
watchers. Only the hosts run a view: a view's work on a change (apply the event, rebuild its
peer lists) is O(N), and N of them on 2 CPUs would measure the simulation, so one host's own
work is measured alone too (`host_work_ms`: the state update, the peer lists and their
comparison at N nodes). Each join lists the nodes (is the name taken?) and the blocks (which
are free?): O(N), as on a host, but all N on these 2 CPUs, so the time for all to join is
bound by them (the simulation's CPU in the join is reported). etcd's load is the real one (N
lease pairs renewed every TTL/3, N watchers, N joins) but for the connections (N/125 + HOSTS)
and the listings at start (HOSTS, not N). The nodes' addresses are recorded, never reached:
there is no data plane.
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
    HOSTS,
    NODES_NICENESS,
    NODES_PER_WORKER,
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
JOIN_WORKERS = 16  # nodes joining at once over the packed processes
HOST_WORK_REPEATS = 20
WATCH_GRACE = 3.0  # s for the watches, once every host's view showed a change
UNCLAIMED_BLOCK = 4095  # host_work's blocks count down from the last of SECOND: none claimed


# --- the phases --------------------------------------------------------------------------------
def join_all(sim: Simulation) -> Json:
    """Every process's nodes join at once: JOIN_WORKERS in flight over the packed processes,
    and each host's own."""
    concurrency = max(1, JOIN_WORKERS // len(sim.workers))
    start = time.perf_counter()
    replies = sim.ask(sim.everyone, "join", network=NETWORK, concurrency=concurrency)
    return {"joined_s": max(r["done"] for r in replies) - start,
            "join_ms": quantiles([ms for r in replies for ms in r["join_ms"]])}


def observe(sim: Simulation, revision: int, timeout: float) -> Json:
    """Every host's view started at once, bare watches from REVISION on the other nodes;
    until each view has listed the record and delivered its lists, and every watch streams."""
    start = time.perf_counter()
    replies = sim.ask(sim.everyone, "observe", revision=revision, timeout=timeout)
    return {"synced_s": max(r["synced"] for r in replies) - start,
            "unsynced": sum(r["missing"] for r in replies),
            "unconnected": sum(r["unconnected"] for r in replies)}


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
    every host's view has it (at most TIMEOUT), then every other node's watch (WATCH_GRACE
    more at most: a watch whose creation failed may never): ms for each."""
    sim.ask(sim.everyone, "expect", **asdict(change))
    start = make()
    replies = [*sim.ask(sim.hosts, "collect", timeout=timeout),
               *sim.ask(sim.workers, "collect", timeout=WATCH_GRACE)]

    def since(key: str) -> list[float]:
        return [(t - start) * 1000 for reply in replies for t in reply[key]]

    return {"view_ms": since("views"), "received_ms": since("watches"),
            "missing": sum(r["missing_views"] for r in replies),
            "unreceived": sum(r["missing_watches"] for r in replies)}


def changes(sim: Simulation, count: int, changes_count: int, timeout: float) -> list[Json]:
    """CHANGES_COUNT changes: even ones a newcomer joining NETWORK (registered before the
    views started; it watches nothing), odd ones an existing node, spread over the processes,
    claiming a block of SECOND (every host's view but its own shows it; every watch receives
    it)."""
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
    """The last node stops renewing, its watch first (its daemon gone); until no host's view
    lists it."""
    node = node_id(count - 1)
    killed = sim.owner(count - 1).ask("kill", node=node)
    change = Change(NETWORK, node, False, Layout().alive(node))
    result = observed(sim, change, lambda: float(killed["start"]), ttl + 30.0)
    gone, received = (max(result.pop(key), default=float("nan")) / 1000
                      for key in ("view_ms", "received_ms"))
    return result | {"ttl_s": ttl, "gone_all_s": gone, "received_all_s": received,
                     "since_renewal_s": gone + killed["since_renewal_s"]}


def renewals(sim: Simulation) -> Json:
    """Every node's lease renewals since the last call, over every process."""
    replies = sim.ask(sim.everyone, "renewals")
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
    newcomers = list(range(count, count + (changes_count + 1) // 2))
    with etcd_member() as (endpoint, pid), EtcdClient(EtcdConfig((endpoint,))) as client:
        made = GlobalNetworks(client, Layout())
        for name, subnet in SUBNETS.items():
            made.create(GlobalNetworkSpec(name, subnet))
        with Simulation(endpoint, count, newcomers, ttl) as sim:
            progress(f"{count} nodes: {len(sim.hosts)} hosts and {len(sim.workers)} processes "
                     "of the others: join")
            return {"hosts": len(sim.hosts), "workers": len(sim.workers)} | in_cluster(
                client, sim, Phases(pid, sim.pids), count, changes_count, ttl, progress)


def in_cluster(client: EtcdClient, sim: Simulation, phases: Phases, count: int,
               changes_count: int, ttl: int, progress: Callable[[str], None]) -> Json:
    timeout = 30.0 + count * 0.05
    with phases.phase("join"):
        joined = join_all(sim)
    renewed = {"join": renewals(sim)}
    sim.ask(sim.workers, "register")
    progress(f"{count} nodes: the hosts' views list the record, bare watches on the others")
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
        "view_ms": quantiles(pooled("view_ms")),
        "received_ms": quantiles(pooled("received_ms")),
        "every_view_ms": quantiles(slowest("view_ms")),
        "every_watch_ms": quantiles(slowest("received_ms")),
        "missing": sum(c["missing"] for c in done),
        "unreceived": sum(c["unreceived"] for c in done),
        "changes": [{"kind": c["kind"], "view_ms": quantiles(c["view_ms"]),
                     "received_ms": quantiles(c["received_ms"])} for c in done],
    }


def run(nodes: Sequence[int] = (100, 500, 1000), changes: int = 10, ttl: int = DEFAULT_TTL,
        progress: Callable[[str], None] = print) -> Json:
    """Every size in turn, each against an etcd of its own."""
    if shutil.which("etcd") is None:
        return {"error": "etcd not installed (scripts/install.sh --cluster)", "runs": []}
    result: Json = {"etcd": package_version("etcd-server"), "ttl_s": ttl, "changes": changes,
                    "join_workers": JOIN_WORKERS, "hosts": HOSTS,
                    "nodes_per_worker": NODES_PER_WORKER, "niceness": NODES_NICENESS,
                    "runs": [], "error": None}
    for count in nodes:
        result["runs"].append(measure_size(count, changes, ttl, progress))
    return result


def print_table(result: Json) -> None:
    print(f"\netcd {result['etcd']}, TTL {result['ttl_s']} s, {result['changes']} changes")
    print(f"{'nodes':>5} {'procs':>5} {'join s':>6} {'p99 ms':>7} {'sync s':>6} "
          f"{'view p50':>8} {'p99':>6} {'watch p50':>9} {'p99':>6} {'kill s':>6} "
          f"{'etcd cpu s':>10} {'RSS MB':>6} {'renewals':>8} {'failed':>6} {'gap s':>5}")
    for r in result["runs"]:
        view, watch, renewed = r["view_ms"], r["received_ms"], r["renewals"].values()
        failed = sum(part["failed"] + part["expired"] for part in renewed)
        print(f"{r['nodes']:>5} {r['workers'] + r['hosts']:>5} {r['joined_s']:>6.1f} "
              f"{r['join_ms']['p99']:>7.1f} {r['synced_s']:>6.1f} {view['p50']:>8.1f} "
              f"{view['p99']:>6.1f} {watch['p50']:>9.1f} {watch['p99']:>6.1f} "
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
