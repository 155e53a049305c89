"""How fast the cluster's networks converge, overlay (issue 14) and routed (issue 15) side by
side in one run, on the multi-host harness (tests/cluster.py) with real daemons. Not a test.
As root:

    .venv/bin/python benchmarks/convergence.py [--quick|--tiny] [--starts N] [--blocks N]
                                               [--joins N] [--kills N] [--ttl 5] [--json FILE]

Sizes (report.py's): full 50 starts, 8 new blocks, 8 joins, 5 kills (about 5 minutes);
--quick 20, 4, 4, 2; --tiny 2, 1, 1, 1 (for the tests: the figures mean nothing).

The cluster: h1, h2 and h4 on underlay segment a, h3 on b behind the router, a 3-member etcd.
h1..h3 join with `--address` (their underlay address) and `--ttl TTL`; h1 creates two
networks, each with /24 blocks (one per node, claimed with its first container there):
`conv-overlay` (-d overlay, 10.100.0.0/16, backend auto: host-gw on a segment, VXLAN across
the router) and `conv-routed` (-d routed, 10.150.0.0/16, encap cross-subnet: BGP through BIRD
on a segment, VXLAN across). Each of h1..h3 runs `o-hN` on the one and `r-hN` on the other.
h4 runs its netbayd but stays out of the cluster until the join measurement. Probes are
first_reply.py inside a container (`netbay exec`): an ICMP echo every millisecond to an
address until the first reply, timed on CLOCK_MONOTONIC, which every namespace shares with
this process. Every measurement does each network in turn, round by round, so drift hits
both alike. Then:

  starts   a container started on node A, the first reply from node B: h1's container on the
           network (B) pings the new container's address in the tight loop from before
           `netbay run -d --ip ADDRESS --network NET` is issued on A until the first echo
           reply (probe "early", the target's figure); A is h2 (overlay: host-gw, routed:
           BGP, its block held already) and h3 (VXLAN on both). STARTS times each. Also
           `netbay run`'s own duration (CLI start-up included) and the reply's lag after it
           returned. Beside each early start a late one, probed from run's return (what the
           path needs once the container exists). Each start has an address of its own (.10
           up of A's block): no neighbour entry an earlier round left stands in the way.
           Target: p99 <= 1 s (issue 15: "reachable from every node at once").
  blocks   a new block: each round a new network of each driver (its own pool), a container
           on h1 first, then the network's first container on h2 and on h3 (each goes first
           every other round): each node's first, so its block is claimed by that `netbay
           run`; h1 probes its address from run's return (it is not known before). Measured:
           run issued to the first reply, and after run returned. Target: 2 s (issue 15).
           The rounds' containers are removed after each, their networks after the last.
  joins    a node joins, reachable from all others: h4's netbayd started (stopped before each
           round), `netbay cluster join`, `netbay run -d --network NET` there (its block
           claimed then, and for the routed network its BIRD started and peered); once run
           returned, its container's address is read from h4's API and the network's
           containers on h1..h3 probe it at once. Measured, per round: from the daemon's
           start, from the join and after the container exists, to the last of the three
           first replies. Targets: overlay, 1 s after the container exists (issue 14);
           routed, 5 s from the daemon's start (issue 15, BIRD's 1 s connect delay
           included). Between rounds: h4's container removed, `cluster leave`, its block's
           route gone from every other node (timed too: leave), netbayd stopped.
  kills    a node lost: SIGKILL to its netbayd and then to its BIRD (h3, h2, h1 in turn; its
           containers live on), then every other node's routes polled every 50 ms until none
           has a route to either of its blocks (by any protocol: netbay's 57, or `bird` for
           what BGP learned): the time from the kill, per network. The lease lapses TTL after
           the last renewal (renewed every TTL/3), so the overlay's falls between 2/3 TTL and
           TTL plus the time for every node to see it; BGP's routes to a routed block go
           when the agent takes the lost node out of BIRD's configuration (graceful restart
           keeps a dropped session's routes 30 s). Target: TTL + 2 s (flannel's lease:
           24 h). Then the daemon is restarted (it restarts BIRD) and the time until every
           other node has both blocks' routes back is measured as well.

Everything the harness built is removed at the end (Cluster's teardown fails otherwise).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # cluster.py; last

from cluster import Cluster, ClusterHost  # noqa: E402
from convergence_cluster import (  # noqa: E402
    BLOCK_PREFIX,
    NETWORKS,
    Json,
    Net,
    Prober,
    address_of,
    block_of,
    home_block,
    join_args,
    prepare,
    probe_all,
    quantiles,
    start,
    summary,
    wait_routes,
)

Progress = Callable[[str], None]
TTL = 5
FIRST_START_ADDRESS = 10  # starts take .10, .11, ... of the node's block, one each
PROBES = ("early", "late")  # from before `netbay run` is issued; from its return
START_KEYS = ("first_reply_ms", "run_ms", "after_run_ms")
MAX_BLOCK_ROUNDS = 49  # a round's pool is 10.(octet + round).0.0/16, below the next network's


def lags(issued: float, returned: float, replied: float | None) -> Json:
    """A start's figures: run issued to the first reply, run's duration, reply after run."""
    return {"first_reply_ms": None if replied is None else (replied - issued) * 1000,
            "run_ms": (returned - issued) * 1000,
            "after_run_ms": None if replied is None else (replied - returned) * 1000}


# --- starts -------------------------------------------------------------------------------
def start_round(prober: Prober, net: Net, node: ClusterHost, name: str,
                address: IPv4Address, early: bool) -> Json:
    """One start on NODE at ADDRESS; EARLY: the probe runs from before `netbay run` is
    issued (else from its return)."""
    if early:
        prober.probe(address)
        prober.probing()
    issued = time.monotonic()
    start(node, name, net.name, "--ip", str(address))
    returned = time.monotonic()
    if not early:
        prober.probe(address)
        prober.probing()
    return lags(issued, returned, prober.first_reply())


def measure_starts(cluster: Cluster, count: int, progress: Progress) -> Json:
    """COUNT starts probed early and COUNT probed late on each path of each network,
    interleaved, each from h1."""
    h1 = cluster.hosts[0]
    if FIRST_START_ADDRESS + 2 * count >= 2 ** (32 - BLOCK_PREFIX) - 1:
        raise ValueError(f"{count} starts do not fit in a /{BLOCK_PREFIX} block")
    targets = [(net, path, cluster.hosts[index]) for net in NETWORKS for path, index in net.paths]
    firsts = {(net.kind, path): home_block(node, net).network_address + FIRST_START_ADDRESS
              for net, path, node in targets}
    probers = {net.kind: Prober(h1, net.container(h1)) for net in NETWORKS}
    samples: dict[tuple[str, str, str], list[Json]] = {}
    try:
        for number in range(count):
            started: dict[str, list[str]] = {}  # node -> containers, removed in one command
            for (net, path, node), (offset, probe) in itertools.product(
                    targets, enumerate(PROBES)):
                address = firsts[net.kind, path] + 2 * number + offset
                name = f"start-{number}-{net.kind}-{probe}"
                samples.setdefault((net.kind, path, probe), []).append(start_round(
                    probers[net.kind], net, node, name, address, probe == "early"))
                started.setdefault(node.name, []).append(name)
            for node in {node.name: node for _, _, node in targets}.values():
                node.netbay("rm", "-f", *started[node.name])
            if (number + 1) % 10 == 0 or number + 1 == count:
                progress(f"   starts: {number + 1}/{count}")
    finally:
        for prober in probers.values():
            prober.close()
    return {net.kind: {path: {"node": cluster.hosts[index].name, "from": h1.name, **{
        probe: summary(samples[net.kind, path, probe], START_KEYS) for probe in PROBES}}
        for path, index in net.paths} for net in NETWORKS}


# --- new blocks ---------------------------------------------------------------------------
def first_containers(cluster: Cluster, net: Net, name: str, prober: Prober,
                     order: Sequence[tuple[str, int]]) -> dict[str, Json]:
    """NAME's first container on each node of ORDER (NET's paths), probed from h1 (PROBER)
    as soon as its `netbay run` returned: the node's new block reachable."""
    figures = {}
    for position, (path, index) in enumerate(order, 1):
        node = cluster.hosts[index]
        issued = time.monotonic()
        start(node, f"{name}-{node.name}", name)
        returned = time.monotonic()
        address = address_of(node, f"{name}-{node.name}", name)
        prober.probe(address)
        prober.probing()
        figures[path] = {**lags(issued, returned, prober.first_reply()),
                         "block": str(block_of(address)), "position": position}
    return figures


def block_round(cluster: Cluster, net: Net, number: int, made: list[str]) -> dict[str, Json]:
    """A network of its own (added to MADE): NET's new blocks on its paths' nodes; its
    containers are removed after it, the network itself after the last round."""
    h1 = cluster.hosts[0]
    name = f"blk-{net.kind}-{number}"
    net.create(h1, name, 1 + number)
    made.append(name)
    nodes = [h1, *(cluster.hosts[index] for _, index in net.paths)]
    try:
        start(h1, f"{name}-{h1.name}", name)
        prober = Prober(h1, f"{name}-{h1.name}")
        try:
            # the first node's block comes while h1 is still busy with its own new share:
            # each node goes first every other round
            order = net.paths if number % 2 == 0 else net.paths[::-1]
            return first_containers(cluster, net, name, prober, order)
        finally:
            prober.close()
    finally:
        for node in nodes:
            node.netbay("rm", "-f", f"{name}-{node.name}", check=False)


def remove_networks(host: ClusterHost, names: Sequence[str]) -> None:
    for name in names:
        deadline = time.monotonic() + 10  # the nodes' shares go as they see the containers go
        while host.netbay("network", "rm", name, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not removed in 10 s")
            time.sleep(0.2)


def measure_blocks(cluster: Cluster, rounds: int, progress: Progress) -> Json:
    """ROUNDS new networks of each driver. A new network takes the lowest free VNI, and a
    node that still has a VXLAN device of a removed one (a removal raced by a sync can leave
    it) refuses that VNI to the next (EEXIST): so none is removed before the last round."""
    if rounds > MAX_BLOCK_ROUNDS:
        raise ValueError(f"at most {MAX_BLOCK_ROUNDS} new-block rounds, not {rounds}")
    samples: dict[tuple[str, str], list[Json]] = {}
    made: list[str] = []
    try:
        for number in range(rounds):
            for net in NETWORKS:
                for path, figures in block_round(cluster, net, number, made).items():
                    samples.setdefault((net.kind, path), []).append(figures)
            progress(f"   new blocks: {number + 1}/{rounds}")
    finally:
        remove_networks(cluster.hosts[0], made)
    return {net.kind: {path: {"node": cluster.hosts[index].name, "from": cluster.hosts[0].name,
                              **summary(samples.get((net.kind, path), []), START_KEYS)}
                       for path, index in net.paths} for net in NETWORKS}


# --- joins --------------------------------------------------------------------------------
def join_round(cluster: Cluster, net: Net, probers: Sequence[Prober], ttl: int) -> Json:
    newcomer = cluster.hosts[3]
    issued = time.monotonic()
    newcomer.start_daemon()
    started = time.monotonic()
    newcomer.netbay(*join_args(cluster, newcomer, ttl))
    joined = time.monotonic()
    start(newcomer, net.container(newcomer), net.name)
    exists = time.monotonic()
    target = address_of(newcomer, net.container(newcomer), net.name)
    probe_all(probers, target)
    replies = {prober.where: prober.first_reply() for prober in probers}
    newcomer.netbay("rm", "-f", net.container(newcomer))
    left = time.monotonic()
    newcomer.netbay("cluster", "leave")
    gone = wait_routes(cluster.hosts[:3], {net.kind: block_of(target)}, False, left)
    newcomer.kill_daemon(signal.SIGTERM)  # `daemon stop` returns before it is gone
    got = [r for r in replies.values() if r is not None]
    last = max(got) if len(got) == len(replies) else None

    def until_reached(since: float) -> float | None:
        return None if last is None else (last - since) * 1000

    return {"daemon_start_ms": (started - issued) * 1000, "join_ms": (joined - started) * 1000,
            "run_ms": (exists - joined) * 1000, "from_start_ms": until_reached(issued),
            "from_join_ms": until_reached(started), "after_container_ms": until_reached(exists),
            "reached_ms": {k: None if v is None else (v - exists) * 1000
                           for k, v in replies.items()},
            "block": str(block_of(target)), "leave_gone_ms": max(gone[net.kind].values()) * 1000}


JOIN_KEYS = ("daemon_start_ms", "join_ms", "from_start_ms", "from_join_ms",
             "after_container_ms", "leave_gone_ms")


def measure_joins(cluster: Cluster, rounds: int, ttl: int, progress: Progress) -> Json:
    cluster.hosts[3].kill_daemon(signal.SIGTERM)  # each round starts it
    probers = {net.kind: [Prober(host, net.container(host)) for host in cluster.hosts[:3]]
               for net in NETWORKS}
    samples: dict[str, list[Json]] = {net.kind: [] for net in NETWORKS}
    try:
        for number in range(rounds):
            for net in NETWORKS:
                samples[net.kind].append(join_round(cluster, net, probers[net.kind], ttl))
            progress(f"   joins: {number + 1}/{rounds}")
    finally:
        for prober in itertools.chain.from_iterable(probers.values()):
            prober.close()
        cluster.hosts[3].start_daemon()
    return {net.kind: {"node": cluster.hosts[3].name, **summary(samples[net.kind], JOIN_KEYS)}
            for net in NETWORKS}


# --- kills --------------------------------------------------------------------------------
def bird_pid(host: ClusterHost) -> int:
    """HOST's BIRD, as its PID namespace numbers it (kill it from inside)."""
    return int((host.state / "bird" / "bird.pid").read_text().split()[0])


def kill_round(victim: ClusterHost, others: Sequence[ClusterHost]) -> Json:
    blocks = {net.kind: home_block(victim, net) for net in NETWORKS}
    daemon, bird = victim.daemon_pid(), bird_pid(victim)
    if daemon is None:
        raise AssertionError(f"{victim.name}: netbayd is not running")
    killed = time.monotonic()
    os.kill(daemon, signal.SIGKILL)  # first: its supervisor would restart BIRD
    victim.run(["kill", "-KILL", str(bird)])
    gone = wait_routes(others, blocks, False, killed)
    restarted = time.monotonic()
    victim.start_daemon()
    back = wait_routes(others, blocks, True, restarted)
    return {"victim": victim.name, "blocks": {k: str(b) for k, b in blocks.items()},
            "gone_s": {k: max(by_node.values()) for k, by_node in gone.items()},
            "gone_by_node_s": gone,
            "back_s": {k: max(by_node.values()) for k, by_node in back.items()}}


def measure_kills(cluster: Cluster, rounds: int, ttl: int, progress: Progress) -> Json:
    members = cluster.hosts[:3]
    victims = [members[-1 - number % len(members)] for number in range(rounds)]
    samples = []
    for number, victim in enumerate(victims):
        samples.append(kill_round(victim, [h for h in members if h is not victim]))
        progress(f"   kills: {number + 1}/{rounds} ({victim.name}: routes gone after "
                 + ", ".join(f"{s:.2f} s ({k})" for k, s in samples[-1]["gone_s"].items())
                 + ")")
    return {"ttl_s": ttl, "samples": samples, **{
        key: {net.kind: quantiles([s[key][net.kind] for s in samples]) for net in NETWORKS}
        for key in ("gone_s", "back_s")}}


# --- the whole ------------------------------------------------------------------------------
def run(starts: int = 50, blocks: int = 8, joins: int = 8, kills: int = 5, ttl: int = TTL,
        progress: Progress = print) -> Json:
    """One cluster of 4 hosts for every measurement, removed at the end."""
    with Cluster(hosts=4) as cluster:
        progress(f"   cluster up in {cluster.setup_seconds:.1f} s")
        prepare(cluster, ttl)
        result: Json = {
            "ttl_s": ttl, "setup_s": cluster.setup_seconds, "block_prefix": BLOCK_PREFIX,
            "hosts": {h.name: {"address": h.address, "segment": h.segment}
                      for h in cluster.hosts},
            "networks": {net.kind: {"name": net.name, "pool": net.pool(), "paths": {
                path: cluster.hosts[index].name for path, index in net.paths}}
                for net in NETWORKS},
            "starts": measure_starts(cluster, starts, progress),
            "blocks": measure_blocks(cluster, blocks, progress),
            "joins": measure_joins(cluster, joins, ttl, progress),
            "kills": measure_kills(cluster, kills, ttl, progress),
            "error": None,
        }
    result["teardown_s"] = cluster.teardown_seconds
    return result


def main() -> int:
    import convergence_page  # the page's tables, as text
    import report  # the sizes: full, --quick, --tiny

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    counts = ("starts", "blocks", "joins", "kills")
    for count in counts:
        parser.add_argument(f"--{count}", type=int, help="default: the size's (report.py)")
    parser.add_argument("--ttl", type=int, default=TTL, help="the liveness lease, s")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    sizes = report.SIZES[mode]["convergence"] | {
        count: getattr(args, count) for count in counts if getattr(args, count) is not None}
    result = run(**sizes, ttl=args.ttl)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(convergence_page.text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
