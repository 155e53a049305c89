"""BGP at scale (issue 15): NODES simulated nodes, each running its own BIRD 2 with the
configuration netbay renders (plan/bird.py), as a full iBGP mesh and with two route
reflectors: how long until every node has every other node's block, and what BIRD costs in
sessions, routes, CPU and memory. Not a test. As root:

    .venv/bin/python benchmarks/bgp_scale.py [--nodes 50] [--runs 3] [--steady 30] [--quick]

The nodes: network namespaces on one L2 segment (a bridge in a fabric namespace, a veth per
node: eth0, 198.18.0.N/24 for node N, IPv6 off); node N holds the Nth /26 of 198.19.0.0/16.
Their neighbours are static (permanent entries, as ARP would resolve them): the machine's
namespaces share one neighbour table of at most 1,024 dynamic entries (gc_thresh3), which a
mesh of 50 (2,450) overflows, losing the SYNs of the sessions whose neighbour it cannot add;
real nodes have a table each, and permanent entries do not count against the limit.
Each node's settings are what engine/bgp.py plans for a routed network under the defaults
(AS 64512, encap=cross-subnet, every node on this subnet): BgpSettings with the node's block,
its underlay subnet and the pool as cross-subnet, rendered by plan/bird.render, checked by
`bird -p` (kernel/bird.py).
  mesh        every node peers with the NODES-1 others (MeshPeer; the higher address of each
              pair passive, as the planner has it);
  reflectors  nodes 1 and 2 are route reflectors, as engine/bgp.py plans `netbay cluster bgp
              reflector`: each peers with the other reflector and, as MeshPeer(rr_client=
              True), with every other node; the others peer with the two reflectors only. The
              reflectors share one cluster id, the lower reflector's address (as the agent).
Per run, every BIRD is started at once (`nsenter --net=NS bird -f -c CONF -s SOCK`, tracked
and stopped by PID) and measured:
  converge     from the first start to each node's main table holding exactly the other
               blocks as `proto bird` routes via their owners (every namespace's route events,
               read in this process: nothing polls by starting processes);
  CPU          utime + stime of every BIRD (/proc/PID/stat) to convergence, then over STEADY
               seconds of steady state (whose route events are counted: none is expected);
  memory       VmRSS of every BIRD after the steady state, and RssAnon (its private part:
               what sessions and routes take; the rest is the shared binary and libraries);
  sessions     per node, established BGP sessions and routes imported (`birdc show protocols
               all`, kernel/bird.parse_sessions), after the steady state.
Runs alternate the topologies (mesh, reflectors, mesh...) so drift hits both alike; between
runs every BIRD is stopped and the routes it leaves in the kernel (`persist`) removed. All in
namespaces pinned under a temporary directory, removed at the end even after a failure;
nothing leaves them (the bridge has no uplink).
"""

from __future__ import annotations

import argparse
import json
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from cluster_sim import cpu_seconds  # noqa: E402
from netbay.drivers.routed import DEFAULT_ASN, DEFAULT_BLOCK_SIZE  # noqa: E402
from netbay.kernel import netns  # noqa: E402
from netbay.kernel.bird import BgpSession, BirdSupervisor, parse_sessions  # noqa: E402
from netbay.kernel.events import Change, EventsLost, RouteEvent, Subscription  # noqa: E402
from netbay.kernel.rtnetlink import Rtnetlink  # noqa: E402
from netbay.kernel.rtnl_wire import RT_TABLE_MAIN, RTNLGRP_IPV4_ROUTE  # noqa: E402
from netbay.plan.bird import RTPROT_BIRD, BgpSettings, MeshPeer, render  # noqa: E402

Json = dict[str, Any]
Table = dict[IPv4Network, IPv4Address | None]  # a node's BIRD routes: block -> next hop
SEGMENT = IPv4Network("198.18.0.0/24")  # RFC 2544's benchmarking range, as the harness uses
POOL = IPv4Network("198.19.0.0/16")  # the routed network: 1,024 blocks of /26
TOPOLOGIES = ("mesh", "reflectors")
REFLECTORS = 2  # nodes 1 and 2
MAX_NODES = 250  # on the /24, a MAC byte each
NO_IPV6 = "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
CONVERGE_TIMEOUT = 90.0  # seconds: BIRD retries a refused connect after 5 s, errors 1-30 s
STOP_WAIT = 10.0  # seconds after SIGTERM before SIGKILL
MISSING = "BIRD 2 not installed (scripts/install.sh --cluster)"


@dataclass(frozen=True)
class Node:
    number: int  # from 1
    netns: Path

    @property
    def name(self) -> str:
        return f"node{self.number}"

    @property
    def address(self) -> IPv4Address:
        return SEGMENT.network_address + self.number

    @property
    def mac(self) -> str:
        return f"02:00:c6:12:00:{self.number:02x}"

    @property
    def block(self) -> IPv4Network:
        size = 1 << (32 - DEFAULT_BLOCK_SIZE)
        return IPv4Network((int(POOL.network_address) + (self.number - 1) * size,
                            DEFAULT_BLOCK_SIZE))


# --- what each node's BIRD is told ----------------------------------------------------------
def role(topology: str, node: Node) -> str:
    if topology == "mesh":
        return "node"
    return "reflector" if node.number <= REFLECTORS else "client"


def settings_of(topology: str, node: Node, nodes: Sequence[Node]) -> BgpSettings:
    """NODE's speaker as engine/bgp.plan_settings has it in TOPOLOGY."""
    mine = role(topology, node)
    others = [o for o in nodes if o != node and (mine != "client" or o.number <= REFLECTORS)]
    mesh = tuple(MeshPeer(o.name, o.address, DEFAULT_ASN,
                          rr_client=mine == "reflector" and role(topology, o) == "client")
                 for o in others)
    reflectors = [o.address for o in nodes if role(topology, o) == "reflector"]
    return BgpSettings(router_id=node.address, asn=DEFAULT_ASN, blocks=(node.block,), mesh=mesh,
                       underlay=(SEGMENT,), cross_subnet=(POOL,),
                       cluster_id=min(reflectors) if mine == "reflector" else None)


def write_configs(topology: str, nodes: Sequence[Node], directory: Path) -> dict[str, Path]:
    """Each node's bird.conf for TOPOLOGY in DIRECTORY, checked by `bird -p`."""
    directory.mkdir()
    configs = {}
    for node in nodes:
        config = directory / f"{node.name}.conf"
        config.write_text(render(settings_of(topology, node, nodes)))
        BirdSupervisor(config, config.with_suffix(".ctl"), config.with_suffix(".log")).check(config)
        configs[node.name] = config
    return configs


# --- the segment ----------------------------------------------------------------------------
def ip_batch(ns: Path, commands: Sequence[str]) -> None:
    """`ip` COMMANDS in the namespace NS, in one process (`ip -b -`), after the sysctls that
    keep IPv6 off there (links made or moved in later get no IPv6 either)."""
    done = subprocess.run(["nsenter", f"--net={ns}", "sh", "-ec", f"{NO_IPV6}; ip -b -"],
                          input="\n".join(commands) + "\n", capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"setting up {ns.name}: {done.stderr.strip()}")


class Segment:
    """COUNT nodes on one bridge, each with a netlink socket and a route subscription in its
    namespace; what it makes is undone by STACK."""

    def __init__(self, count: int, directory: Path, stack: ExitStack) -> None:
        if not 1 < count <= MAX_NODES:
            raise ValueError(f"{count} nodes: 2 to {MAX_NODES}")
        fabric = self._namespace(directory / "fabric", stack)
        self.nodes = [Node(n, self._namespace(directory / f"node{n}", stack))
                      for n in range(1, count + 1)]
        for n in self.nodes:
            ip_batch(n.netns, ["link set lo up"])
        ip_batch(fabric, ["link set lo up", "link add br0 type bridge", "link set br0 up",
                          *(f"link add n{n.number} type veth peer name eth0 address {n.mac} "
                            f"netns {n.netns}" for n in self.nodes),
                          *(f"link set n{n.number} master br0 up" for n in self.nodes)])
        for n in self.nodes:
            ip_batch(n.netns, [f"addr add {n.address}/{SEGMENT.prefixlen} dev eth0",
                               "link set eth0 up",
                               *(f"neigh replace {o.address} lladdr {o.mac} dev eth0 nud permanent"
                                 for o in self.nodes if o != n)])
        self.links = {n.name: stack.enter_context(Rtnetlink(n.netns)) for n in self.nodes}
        self.events = selectors.DefaultSelector()
        stack.callback(self.events.close)
        for n in self.nodes:
            watch = stack.enter_context(Subscription(n.netns, (RTNLGRP_IPV4_ROUTE,)))
            self.events.register(watch, selectors.EVENT_READ, n)

    @staticmethod
    def _namespace(path: Path, stack: ExitStack) -> Path:
        netns.create(path)
        stack.callback(netns.delete, path)
        return path

    def table(self, node: Node) -> Table:
        routes = self.links[node.name].routes(protocol=RTPROT_BIRD)
        return {r.destination: r.gateway for r in routes}

    def flush(self) -> None:
        """Every node's BIRD routes removed (they outlive BIRD), their events read."""
        for node in self.nodes:
            for route in self.links[node.name].routes(protocol=RTPROT_BIRD):
                self.links[node.name].remove_route(route)
        self.drain()
        left = {n.name: len(t) for n in self.nodes if (t := self.table(n))}
        assert not left, f"BIRD routes left after the flush: {left}"

    def listen_overflows(self) -> int:
        """Connects dropped for a full listen queue, every node's count so far (TcpExt)."""
        total = 0
        for node in self.nodes:
            with netns.entered(node.netns):  # /proc/thread-self/net: this thread's namespace
                lines = Path("/proc/thread-self/net/netstat").read_text().splitlines()
            names, values = (line.split() for line in lines if line.startswith("TcpExt:"))
            total += int(dict(zip(names, values, strict=True))["ListenOverflows"])
        return total

    def changed(self, timeout: float) -> Iterator[tuple[Node, Sequence[object]]]:
        """(node, its events) for each node with route events within TIMEOUT seconds."""
        for key, _ in self.events.select(timeout):
            subscription: Subscription = key.fileobj  # type: ignore[assignment]
            yield key.data, subscription.poll(0)

    def drain(self) -> int:
        """How many BIRD route events are waiting (read and dropped; an overrun counts one)."""
        return sum(1 for _, events in self.changed(0) for e in events
                   if isinstance(e, EventsLost)
                   or isinstance(e, RouteEvent) and e.route.protocol == RTPROT_BIRD)


def apply(table: Table, events: Sequence[object], reread: Callable[[], Table]) -> Table:
    """TABLE after EVENTS (all of it read again after a lost event)."""
    for event in events:
        if isinstance(event, EventsLost):
            return reread()
        if (isinstance(event, RouteEvent) and event.route.protocol == RTPROT_BIRD
                and event.route.table == RT_TABLE_MAIN):
            if event.change is Change.REMOVED:
                table.pop(event.route.destination, None)
            else:
                table[event.route.destination] = event.route.gateway
    return table


# --- the BIRDs ------------------------------------------------------------------------------
class Bird:
    """NODE's BIRD, started now inside its namespace (nsenter execs it: the PID is BIRD's)."""

    def __init__(self, node: Node, config: Path) -> None:
        self.node = node
        self.socket = config.with_suffix(".ctl")
        self.log = config.with_suffix(".log")
        with open(self.log, "wb") as log:  # this run's alone: errors() reads it
            self.process = subprocess.Popen(
                ["nsenter", f"--net={node.netns}", "bird", "-f", "-c", str(config),
                 "-s", str(self.socket)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> None:
        if self.process.poll() is not None:
            log = self.log.read_text(errors="replace").strip()
            raise RuntimeError(f"{self.node.name}'s BIRD exited ({self.process.returncode}): "
                               f"{log.splitlines()[-1] if log else 'no output'}")

    def errors(self) -> list[str]:
        """What BIRD logged as errors, without the time."""
        return [line.split(" <ERR> ", 1)[1] for line in
                self.log.read_text(errors="replace").splitlines() if " <ERR> " in line]

    def cpu_s(self) -> float:
        return cpu_seconds(self.process.pid)

    def memory_mb(self) -> tuple[float, float]:
        """VmRSS and RssAnon."""
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{self.process.pid}/status").read_text().splitlines())
        return (int(status["VmRSS"].split()[0]) / 1024,
                int(status["RssAnon"].split()[0]) / 1024)

    def sessions(self) -> list[BgpSession]:
        done = subprocess.run(["birdc", "-s", str(self.socket), "show", "protocols", "all"],
                              capture_output=True, text=True, timeout=30, check=True)
        return parse_sessions(done.stdout)


def stop_all(birds: Sequence[Bird]) -> None:
    """SIGTERM to each by PID, then SIGKILL to any still there after STOP_WAIT."""
    for bird in birds:
        if bird.process.poll() is None:
            bird.process.terminate()
    for bird in birds:
        try:
            bird.process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            bird.process.kill()
            bird.process.wait()


# --- one run --------------------------------------------------------------------------------
def converge(segment: Segment, birds: Sequence[Bird], started: float) -> list[float]:
    """Seconds from STARTED until each node's table held exactly the other nodes' blocks via
    their owners (in node order)."""
    nodes = segment.nodes
    expected = {n.name: {o.block: o.address for o in nodes if o != n} for n in nodes}
    tables: dict[str, Table] = {n.name: {} for n in nodes}
    done: dict[str, float] = {}
    while len(done) < len(nodes):
        waited = time.monotonic() - started
        if waited > CONVERGE_TIMEOUT:
            short = {n: f"{len(tables[n])}/{len(nodes) - 1}" for n in tables if n not in done}
            raise RuntimeError(f"not converged after {waited:.0f} s: {short}")
        for node, events in segment.changed(0.5):
            tables[node.name] = apply(tables[node.name], events, partial(segment.table, node))
            if node.name not in done and tables[node.name] == expected[node.name]:
                done[node.name] = time.monotonic() - started
        for bird in birds:
            bird.alive()
    return [done[n.name] for n in nodes]


def one_run(segment: Segment, topology: str, configs: dict[str, Path], steady: float) -> Json:
    segment.flush()
    overflows = segment.listen_overflows()
    birds: list[Bird] = []
    with ExitStack() as stack:
        stack.callback(stop_all, birds)
        started = time.monotonic()
        birds.extend(Bird(node, configs[node.name]) for node in segment.nodes)
        launched = time.monotonic() - started
        node_converge = converge(segment, birds, started)
        cpu_at_converge = [b.cpu_s() for b in birds]
        wall = time.monotonic()
        time.sleep(steady)
        cpu_steady = [b.cpu_s() - c for b, c in zip(birds, cpu_at_converge, strict=True)]
        steady_wall = time.monotonic() - wall
        memory = [b.memory_mb() for b in birds]
        steady_events = segment.drain()
        short = [n.name for n in segment.nodes if len(segment.table(n)) != len(birds) - 1]
        assert not short, f"routes lost during the steady state: {short}"
        sessions = [b.sessions() for b in birds]
    errors = [line for b in birds for line in b.errors()]
    return {"topology": topology, "launch_s": launched, "converge_s": max(node_converge),
            "node_converge_s": node_converge, "cpu_converge_s": cpu_at_converge,
            "cpu_steady_s": cpu_steady, "steady_s": steady_wall,
            "rss_mb": [rss for rss, _ in memory], "anon_mb": [anon for _, anon in memory],
            "steady_route_events": steady_events, "bird_errors": errors,
            "listen_overflows": segment.listen_overflows() - overflows,
            "configured": [len(s) for s in sessions],
            "established": [sum(x.established for x in s) for s in sessions],
            "imported": [sum(x.imported for x in s) for s in sessions]}


# --- the benchmark -------------------------------------------------------------------------
def run(nodes: int = 50, runs: int = 3, steady: float = 30.0,
        progress: Callable[[str], None] = print) -> Json:
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        return {"error": MISSING}
    said = subprocess.run(["bird", "--version"], capture_output=True, text=True, check=False)
    directory = Path(tempfile.mkdtemp(prefix="netbay-bench-bgp-"))
    samples: dict[str, list[Json]] = {t: [] for t in TOPOLOGIES}
    try:
        with ExitStack() as stack:
            segment = Segment(nodes, directory, stack)
            configs = {t: write_configs(t, segment.nodes, directory / t) for t in TOPOLOGIES}
            lines = {t: {role(t, n): len(configs[t][n.name].read_text().splitlines())
                         for n in segment.nodes} for t in TOPOLOGIES}
            roles = {t: [role(t, n) for n in segment.nodes] for t in TOPOLOGIES}
            timers = settings_of("mesh", segment.nodes[0], segment.nodes)
            for number in range(runs):
                for topology in TOPOLOGIES:
                    record = one_run(segment, topology, configs[topology], steady)
                    samples[topology].append(record)
                    progress(f"bgp_scale run {number + 1}/{runs} {topology}: converged in "
                             f"{record['converge_s']:.2f} s")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"error": None, "nodes": nodes, "runs": runs, "steady_s": steady,
            "bird": (said.stdout or said.stderr).strip(), "asn": DEFAULT_ASN,
            "segment": str(SEGMENT), "pool": str(POOL), "block_prefix": DEFAULT_BLOCK_SIZE,
            "reflectors": REFLECTORS, "connect_delay_s": timers.connect_delay,
            "kernel_scan_s": timers.kernel_scan, "config_lines": lines, "roles": roles,
            "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady state")
    parser.add_argument("--quick", action="store_true", help="one run, 10 s of steady state")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: every BIRD stopped
    if args.quick:
        args.runs, args.steady = 1, 10.0
    result = run(args.nodes, args.runs, args.steady)
    if result["error"] is not None:
        print(result["error"], file=sys.stderr)
        return 1
    from bgp_scale_page import summaries  # the page's medians; only the CLI prints them

    print(json.dumps(summaries(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
