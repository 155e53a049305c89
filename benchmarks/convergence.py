"""How fast the overlay converges (issue 14), on the multi-host harness (tests/cluster.py) with
real daemons. Not a test. As root:

    .venv/bin/python benchmarks/convergence.py [--quick|--tiny] [--starts N] [--joins N]
                                               [--kills N] [--ttl 5] [--json FILE]

Sizes (report.py's): full 50 starts, 10 joins, 5 kills (about 4 minutes); --quick 20, 5, 2;
--tiny 3, 2, 1 (for the tests: the figures mean nothing).

The cluster: h1, h2 and h4 on underlay segment a, h3 on b behind the router, a 3-member etcd.
h1..h3 join with `--ttl TTL`, h1 creates the overlay network `convnet` (10.77.0.0/16, backend
auto: host-gw on a segment, VXLAN across the router) and each of them runs `c-hN`. h4 runs
its netbayd but stays out of the cluster until the join measurement. Probes are
first_reply.py inside a container (`netbay exec`): an ICMP echo every millisecond to an
address until the first reply, timed on CLOCK_MONOTONIC, which every namespace shares with
this process. Then:

  starts   a container started on node A, the first reply from node B: c-h1 on h1 (B) pings
           the new container's address in the tight loop from before `netbay run -d --ip
           ADDRESS --network convnet` is issued on A (h3: VXLAN, h2: host-gw) until the first
           echo reply (probe "early", the target's figure); STARTS times each. Also
           `netbay run`'s own duration (CLI start-up included) and the reply's lag after it
           returned. Beside each early start a late one, probed from run's return: the early
           probe's packets reach A's bridge before the container exists, so the bridge's ARP
           entry for the address is INCOMPLETE when it appears and the first reply waits for
           the kernel's next ARP retry (every second); the late one shows the path without
           that. Each start has an address of its own (.10 up of A's block): no neighbour
           entry an earlier round left stands in the way or helps. Target: p99 <= 1 s.
  joins    a node joins, reachable from all others: `netbay cluster join` on h4 (the first
           round its first join ever, then after `cluster leave`), then `netbay run -d
           --network convnet` there (its block claimed then); once run returned, its
           container's address is read from h4's API and c-h1..c-h3 probe it at once.
           Measured, per round: join (the command's duration), to every node (from the join
           being issued to the last of the three first replies) and after the container
           exists (from `netbay run` having returned to that last reply). Target: the
           latter's p99 <= 1 s. Between rounds: h4's container removed, `cluster leave`, and
           its block's route gone from every other node (timed too: leave).
  kills    a node killed: SIGKILL to its netbayd (h3, h2, h1 in turn; its containers live on),
           then `ip route show proto 57` polled on every other node every 50 ms until none
           shows its block: the time from the kill (resolution: the poll's period and the
           `ip` calls). The lease lapses TTL after the last renewal (renewed every TTL/3), so
           it falls between 2/3 TTL and TTL plus the time for every node to see it. Target:
           TTL + 2 s (flannel's lease: 24 h). Then the daemon is restarted and the time until
           every other node has the block's route back is measured as well.

Everything the harness built is removed at the end (Cluster's teardown fails otherwise).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # cluster.py; last

from cluster import Cluster, ClusterHost  # noqa: E402
from netbay.client import Client, path_of  # noqa: E402
from netbay.paths import Paths  # noqa: E402
from sandbox import median, p  # noqa: E402

Json = dict[str, Any]
Progress = Callable[[str], None]
NETWORK = "convnet"
POOL = "10.77.0.0/16"
TTL = 5
PROBER = Path(__file__).resolve().parent / "first_reply.py"
PROBE_TIMEOUT_S = 20.0
POLL_S = 0.05
FIRST_START_ADDRESS = 10  # starts take .10, .11, ... of the node's block, one each
PROBES = ("early", "late")  # from before `netbay run` is issued; from its return
SETTLE_TIMEOUT_S = 30.0


class Prober:
    """first_reply.py running in CONTAINER on HOST: probe(address), then first_reply()."""

    def __init__(self, host: ClusterHost, container: str) -> None:
        self.where = f"{container} on {host.name}"
        argv = host.netbay_argv("exec", container, "--", "python3", "-u", str(PROBER))
        self._process = subprocess.Popen(host.argv(argv), env=host.environ, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _line(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line:
            raise AssertionError(f"the prober in {self.where} ended ({self._process.wait()})")
        return line

    def probe(self, address: IPv4Address) -> None:
        """Start pinging ADDRESS (probing() says when the first echo is out)."""
        assert self._process.stdin is not None
        self._process.stdin.write(f"{address} {PROBE_TIMEOUT_S}\n")
        self._process.stdin.flush()

    def probing(self) -> None:
        if (said := self._line()) != "probing":
            raise AssertionError(f"the prober in {self.where} said {said!r}")

    def first_reply(self) -> float | None:
        """The monotonic time of the first reply; None if none came in PROBE_TIMEOUT_S."""
        said = self._line()
        return None if said == "timeout" else float(said.removeprefix("reply "))

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def probe_all(probers: Sequence[Prober], address: IPv4Address) -> None:
    for prober in probers:
        prober.probe(address)
    for prober in probers:
        prober.probing()


def api(host: ClusterHost) -> Client:
    """HOST's daemon API, from out here: its socket through its PID 1's root (no CLI start)."""
    socket = Path(f"/proc/{host.init_pid}/root/run/netbay/netbay.sock")
    return Client(Paths(root=host.state, socket=socket, netns_dir=host.dir), autostart=False)


def address_of(host: ClusterHost, container: str) -> IPv4Interface:
    found = api(host).get(path_of("containers", container, "json"))
    settings = found["NetworkSettings"]["Networks"][NETWORK]
    return IPv4Interface(f"{settings['IPAddress']}/{settings['IPPrefixLen']}")


def block_of(host: ClusterHost) -> IPv4Network:
    """HOST's block of the network: where its container c-HOST's address is."""
    return address_of(host, f"c-{host.name}").network


def has_route(host: ClusterHost, block: IPv4Network) -> bool:
    shown = host.run(["ip", "route", "show", "proto", "57"]).stdout
    return any(line.split()[:1] == [str(block)] for line in shown.splitlines())


def wait_routes(hosts: Sequence[ClusterHost], block: IPv4Network, present: bool,
                since: float) -> dict[str, float]:
    """Seconds from SINCE until each of HOSTS had (PRESENT) or no longer had a route to
    BLOCK, polled every POLL_S."""
    seen: dict[str, float] = {}
    deadline = since + SETTLE_TIMEOUT_S
    while len(seen) < len(hosts):
        for host in hosts:
            if host.name not in seen and has_route(host, block) == present:
                seen[host.name] = time.monotonic() - since
        if time.monotonic() > deadline:
            raise AssertionError(f"{block}'s route {'not back' if present else 'still'} on "
                                 f"{sorted({h.name for h in hosts} - set(seen))}")
        time.sleep(POLL_S)
    return seen


def timed(host: ClusterHost, *args: str) -> float:
    """Seconds `netbay ARGS` took on HOST."""
    started = time.monotonic()
    host.netbay(*args)
    return time.monotonic() - started


def quantiles(values: Sequence[float | None]) -> Json:
    """p50/p99/max of the values (ms or s), and how many probes got no reply at all."""
    got = [v for v in values if v is not None]
    return {"count": len(values), "lost": len(values) - len(got), "p50": median(got),
            "p99": p(got, 0.99), "max": max(got, default=float("nan"))}


# --- the cluster ------------------------------------------------------------------------
def prepare(cluster: Cluster, ttl: int) -> None:
    """h1..h3 joined, the network, a container on each, every one reaching the others."""
    h1, h2, h3 = cluster.hosts[:3]
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in (h1, h2, h3):
        host.netbay("cluster", "join", "--etcd", endpoints, "--ttl", str(ttl))
    h1.netbay("network", "create", "-d", "overlay", "--subnet", POOL, NETWORK)
    for host in (h1, h2, h3):
        host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", NETWORK, "--",
                    "sleep", "infinity")
    prober = Prober(h1, "c-h1")
    try:
        for target in (h2, h3):
            prober.probe(address_of(target, f"c-{target.name}").ip)
            prober.probing()
            if prober.first_reply() is None:
                raise AssertionError(f"c-h1 does not reach c-{target.name}")
    finally:
        prober.close()


# --- starts -------------------------------------------------------------------------------
def start_round(prober: Prober, node: ClusterHost, name: str, address: IPv4Address,
                early: bool) -> Json:
    """One start on NODE at ADDRESS; EARLY: the probe runs from before `netbay run` is
    issued (else from its return)."""
    if early:
        prober.probe(address)
        prober.probing()
    issued = time.monotonic()
    node.netbay("run", "-d", "--name", name, "--network", NETWORK, "--ip", str(address), "--",
                "sleep", "infinity")
    returned = time.monotonic()
    if not early:
        prober.probe(address)
        prober.probing()
    replied = prober.first_reply()
    node.netbay("rm", "-f", name)
    return {"first_reply_ms": None if replied is None else (replied - issued) * 1000,
            "run_ms": (returned - issued) * 1000,
            "after_run_ms": None if replied is None else (replied - returned) * 1000}


def measure_starts(cluster: Cluster, count: int, progress: Progress) -> Json:
    """COUNT starts probed early and COUNT probed late on h3 (VXLAN) and on h2 (host-gw),
    interleaved, each from h1."""
    h1, h2, h3 = cluster.hosts[:3]
    nodes = {"vxlan": h3, "host-gw": h2}
    blocks = {backend: block_of(node) for backend, node in nodes.items()}
    if any(FIRST_START_ADDRESS + 2 * count >= b.num_addresses - 1 for b in blocks.values()):
        raise ValueError(f"{count} starts do not fit in a block of {NETWORK}: {blocks}")
    samples: dict[tuple[str, str], list[Json]] = {}
    prober = Prober(h1, "c-h1")
    try:
        for number in range(count):
            for (backend, node), (offset, probe) in itertools.product(
                    nodes.items(), enumerate(PROBES)):
                address = blocks[backend].network_address + FIRST_START_ADDRESS + 2 * number
                samples.setdefault((backend, probe), []).append(start_round(
                    prober, node, f"start-{number}-{probe}", address + offset,
                    probe == "early"))
            if (number + 1) % 10 == 0 or number + 1 == count:
                progress(f"   starts: {number + 1}/{count}")
    finally:
        prober.close()
    return {backend: {"node": node.name, "from": h1.name, **{
        probe: {"samples": samples[backend, probe],
                **{key: quantiles([s[key] for s in samples[backend, probe]])
                   for key in ("first_reply_ms", "run_ms", "after_run_ms")}}
        for probe in PROBES}} for backend, node in nodes.items()}


# --- joins --------------------------------------------------------------------------------
def join_round(cluster: Cluster, probers: Sequence[Prober], ttl: int) -> Json:
    newcomer = cluster.hosts[3]
    issued = time.monotonic()
    newcomer.netbay("cluster", "join", "--etcd", ",".join(cluster.etcd.endpoints),
                    "--ttl", str(ttl))
    joined = time.monotonic()
    newcomer.netbay("run", "-d", "--name", "c-h4", "--network", NETWORK, "--", "sleep",
                    "infinity")
    exists = time.monotonic()
    target = address_of(newcomer, "c-h4")
    probe_all(probers, target.ip)
    probing = time.monotonic()
    replies = {prober.where: prober.first_reply() for prober in probers}
    newcomer.netbay("rm", "-f", "c-h4")
    left = time.monotonic()
    newcomer.netbay("cluster", "leave")
    gone = wait_routes(cluster.hosts[:3], target.network, False, left)
    got = [r for r in replies.values() if r is not None]
    last = max(got) if len(got) == len(replies) else None
    return {"join_ms": (joined - issued) * 1000, "run_ms": (exists - joined) * 1000,
            "probing_ms": (probing - exists) * 1000,
            "from_join_ms": None if last is None else (last - issued) * 1000,
            "after_container_ms": None if last is None else (last - exists) * 1000,
            "reached_ms": {k: None if v is None else (v - exists) * 1000
                           for k, v in replies.items()},
            "block": str(target.network), "leave_gone_ms": max(gone.values()) * 1000}


def measure_joins(cluster: Cluster, rounds: int, ttl: int, progress: Progress) -> Json:
    probers = [Prober(host, f"c-{host.name}") for host in cluster.hosts[:3]]
    samples = []
    try:
        for number in range(rounds):
            samples.append(join_round(cluster, probers, ttl))
            progress(f"   joins: {number + 1}/{rounds}")
    finally:
        for prober in probers:
            prober.close()
    return {"node": cluster.hosts[3].name, "samples": samples,
            **{key: quantiles([s[key] for s in samples])
               for key in ("join_ms", "from_join_ms", "after_container_ms", "leave_gone_ms")}}


# --- kills --------------------------------------------------------------------------------
def kill_round(victim: ClusterHost, others: Sequence[ClusterHost]) -> Json:
    block = block_of(victim)
    pid = victim.daemon_pid()
    if pid is None:
        raise AssertionError(f"{victim.name}: netbayd is not running")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    gone = wait_routes(others, block, False, killed)
    restarted = time.monotonic()
    victim.start_daemon()
    back = wait_routes(others, block, True, restarted)
    return {"victim": victim.name, "block": str(block), "gone_s": max(gone.values()),
            "gone_by_node_s": gone, "back_s": max(back.values())}


def measure_kills(cluster: Cluster, rounds: int, ttl: int, progress: Progress) -> Json:
    members = cluster.hosts[:3]
    victims = [members[-1 - number % len(members)] for number in range(rounds)]
    samples = []
    for number, victim in enumerate(victims):
        samples.append(kill_round(victim, [h for h in members if h is not victim]))
        progress(f"   kills: {number + 1}/{rounds} ({victim.name}: routes gone after "
                 f"{samples[-1]['gone_s']:.2f} s)")
    return {"ttl_s": ttl, "samples": samples,
            **{key: quantiles([s[key] for s in samples]) for key in ("gone_s", "back_s")}}


# --- the whole ------------------------------------------------------------------------------
def run(starts: int = 50, joins: int = 10, kills: int = 5, ttl: int = TTL,
        progress: Progress = print) -> Json:
    """One cluster of 4 hosts for all three measurements, removed at the end."""
    with Cluster(hosts=4) as cluster:
        progress(f"   cluster up in {cluster.setup_seconds:.1f} s")
        prepare(cluster, ttl)
        result: Json = {
            "ttl_s": ttl, "setup_s": cluster.setup_seconds,
            "hosts": {h.name: {"address": h.address, "segment": h.segment}
                      for h in cluster.hosts},
            "starts": measure_starts(cluster, starts, progress),
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
    for count in ("starts", "joins", "kills"):
        parser.add_argument(f"--{count}", type=int, help="default: the size's (report.py)")
    parser.add_argument("--ttl", type=int, default=TTL, help="the liveness lease, s")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    sizes = report.SIZES[mode]["convergence"] | {
        count: getattr(args, count) for count in ("starts", "joins", "kills")
        if getattr(args, count) is not None}
    result = run(**sizes, ttl=args.ttl)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(convergence_page.text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
