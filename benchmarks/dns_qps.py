"""netbay's DNS server vs aardvark-dns 1.4, side by side with dnsperf (issues 4, 18). Not a test.

    .venv/bin/python benchmarks/dns_qps.py [--names 1000] [--seconds 3] [--rounds 5]
                                           [--rate 20000] [--quick]

One throwaway namespace stands in for the host (sandbox.py): a netbay bridge network with
NAMES containers (real ones: netns, veth, address, record) plus a client container. Both
servers answer on the network's gateway (netbay on port 53, aardvark on 5353), loaded with the
same names: netbay's reads them from its record; aardvark gets a config file with the same
containers, addresses and names (container name and hostname), as netavark writes it.
dnsperf runs inside the client container's namespace and asks for every container name, A
records, in a loop:

  saturated   dnsperf's default (1 client, up to 100 queries in flight) for SECONDS: the
              queries per second each server sustains; then again with -v (one line per
              answer, which slows dnsperf itself: lower qps) for the latency this load brings;
  at RATE/s   a fixed load (-Q RATE) that both sustain, for SECONDS (at least 2): the latency
              of one answer.

Fair on a shared 2-core machine: both servers start once and are warmed up (WARMUP seconds of
saturated load each, whatever SECONDS is: a run too short to warm up measured start-up), then
each round runs every phase in slices of SLICE seconds, each slice against one server and at
once against the other, in an order that alternates from round to round (a burst of someone
else's work then falls on both); the two are never loaded at once (the idle one only sleeps).
A phase's qps is its median slice; the table shows the median of the rounds. Latencies come
from dnsperf -v (one line per query); p50/p99/max over every answered query of the phase.
Resident memory (VmRSS, and VmHWM: the peak) of each server is read at the end of each round.

Targets (issue 18): netbay's qps >= 1.5x aardvark's, its p99 at RATE/s no worse, its RSS <= 40
MB with 1,000 names. Nothing leaves the sandbox: it has no interface but the bridge and
loopback, and only names the servers know are asked.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec, SubnetConfig  # noqa: E402
from netbay.kernel.netns import entered  # noqa: E402
from sandbox import p, sandbox  # noqa: E402

AARDVARK = Path("/usr/lib/podman/aardvark-dns")
SUBNET = IPv4Network("10.123.0.0/20")  # only inside the sandbox
GATEWAY = str(SUBNET.network_address + 1)
RSS_TARGET_MB = 40.0
QPS_TARGET = 1.5  # netbay / aardvark-dns
PORTS = {"netbay": 53, "aardvark": 5353}
WARMUP = 2.0  # seconds of saturated load on each server before the first round
SLICE = 0.5  # seconds of one dnsperf run: a phase is cut in slices, the servers alternating


@dataclass
class Round:
    server: str
    qps: float
    lost: int
    sat_p50: float  # ms
    sat_p99: float
    sat_max: float
    sat_qps: float  # with dnsperf printing every answer (-v), which slows dnsperf itself
    fixed_p50: float
    fixed_p99: float
    fixed_max: float
    fixed_qps: float
    rss_mb: float
    hwm_mb: float


# --- the world ---------------------------------------------------------------------------
def make_world(host: Host, count: int) -> tuple[list[tuple[str, str, str, str]], str]:
    """COUNT containers and a client on one network: (id, name, hostname, ip) of each, the
    client last; and the client's netns."""
    host.create_network(NetworkSpec(name="bench", subnets=(SubnetConfig(SUBNET),)))
    made = []
    for name in [*(f"svc{i}" for i in range(count)), "client"]:
        container = host.create_container(
            ContainerSpec(command=("true",), name=name, networks=(AttachRequest("bench"),))
        )
        endpoint = host.container_endpoints(container)[0][1]
        assert endpoint.address is not None
        made.append((container.id, container.name, container.hostname, str(endpoint.address.ip)))
    assert container.netns is not None
    return made, container.netns


def ready(netns: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something answers a query for svc0 on the gateway's PORT, asked from NETNS."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x04svc0\x00\x00\x01\x00\x01"
    with entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                sock.sendto(query, (GATEWAY, port))
                if sock.recv(512)[:2] == query[:2]:
                    return
            time.sleep(0.05)
    raise RuntimeError("the DNS server did not answer")


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)) / 1024, int(fields.get("VmHWM", 0)) / 1024


# --- the servers -----------------------------------------------------------------------------
@contextlib.contextmanager
def netbay_server(root: Path, port: int) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "netbay.dns", "--root", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def aardvark_server(
    workdir: Path, names: list[tuple[str, str, str, str]], port: int
) -> Iterator[int]:
    """aardvark-dns as netavark runs it: a config directory, one file per network; it forks
    into the background and writes its pid there."""
    config = workdir / "aardvark"
    config.mkdir(exist_ok=True)
    lines = [GATEWAY]
    lines += [f"{cid} {ip}  {name},{hostname}" for cid, name, hostname, ip in names]
    (config / "bench").write_text("\n".join(lines) + "\n")
    pid_file = config / "aardvark.pid"
    pid_file.unlink(missing_ok=True)
    subprocess.run(
        [str(AARDVARK), "--config", str(config), "-p", str(port), "run"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError("aardvark-dns wrote no pid file")
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- dnsperf ---------------------------------------------------------------------------------
_LINE = re.compile(r"^> (\S+) \S+ \S+ (\d+\.\d+)$")


@dataclass
class Sample:
    """One dnsperf run: its queries per second, queries lost, each answer's latency (ms)."""

    qps: float
    lost: float
    latencies: list[float]


def dnsperf(
    netns: str, queries: Path, port: int, seconds: float, rate: int | None, verbose: bool = True
) -> Sample:
    argv = ["nsenter", f"--net={netns}", "dnsperf", "-s", GATEWAY, "-p", str(port),
            "-d", str(queries), "-l", f"{seconds:g}", *(["-v"] if verbose else [])]
    if rate:
        argv += ["-Q", str(rate)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    latencies = [float(m.group(2)) * 1000 for m in map(_LINE.match, out.splitlines()) if m]
    codes = {m.group(1) for m in map(_LINE.match, out.splitlines()) if m}
    if codes - {"NOERROR"}:
        raise RuntimeError(f"unexpected answers: {codes}")

    def stat(name: str) -> float:
        found = re.search(rf"{name}:\s+([\d.]+)", out)
        return float(found.group(1)) if found else float("nan")

    return Sample(stat("Queries per second"), stat("Queries lost"), latencies)


def merged(samples: list[Sample]) -> dict[str, float]:
    """A phase's figures from its slices: the median slice's qps, latencies over them all."""
    latencies = [ms for sample in samples for ms in sample.latencies]
    return {
        "qps": statistics.median(sample.qps for sample in samples),
        "lost": sum(sample.lost for sample in samples),
        "p50": p(latencies, 0.50),
        "p99": p(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
    }


@dataclass
class Bench:
    """The phases of a round, each cut in slices of about SLICE seconds that go to every
    server in turn: a burst of other work on the shared machine (seconds long) then falls on
    both, not on whichever ran a whole phase during it."""

    netns: str
    queries: Path
    seconds: float
    rate: int

    def warm_up(self, server: str, seconds: float) -> None:
        ready(self.netns, PORTS[server])
        dnsperf(self.netns, self.queries, PORTS[server], seconds, None, verbose=False)

    def round(self, pids: dict[str, int]) -> list[Round]:
        """One round: each phase against every server of PIDS, in that order."""
        phases: dict[str, dict[str, dict[str, float]]] = {s: {} for s in pids}
        for phase, seconds, rate, verbose in (("plain", self.seconds, None, False),
                                              ("sat", self.seconds, None, True),
                                              ("fixed", max(2.0, self.seconds), self.rate, True)):
            slices = max(1, round(seconds / SLICE))
            samples: dict[str, list[Sample]] = {s: [] for s in pids}
            for _ in range(slices):
                for server in pids:
                    samples[server].append(dnsperf(
                        self.netns, self.queries, PORTS[server], seconds / slices, rate, verbose))
            for server in pids:
                phases[server][phase] = merged(samples[server])
        return [_round(server, phases[server], pid) for server, pid in pids.items()]


def _round(server: str, phases: dict[str, dict[str, float]], pid: int) -> Round:
    plain, sat, fixed = phases["plain"], phases["sat"], phases["fixed"]
    rss, hwm = memory(pid)
    return Round(
        server, plain["qps"], int(plain["lost"] + sat["lost"]), sat["p50"], sat["p99"],
        sat["max"], sat["qps"],
        fixed["p50"], fixed["p99"], fixed["max"], fixed["qps"], rss, hwm,
    )


# --- report ------------------------------------------------------------------------------------
def report(rounds: list[Round], names: int, rate: int) -> int:
    print(f"\n{names} names on one bridge network; dnsperf from a container, A queries for "
          f"every name in a loop")
    print(f"{'server':10} {'round':>5} {'qps':>9} {'lost':>5} | saturated, -v: {'qps':>7} "
          f"{'p50':>6} {'p99':>6} {'max':>6} | at {rate}/s ms: {'p50':>6} {'p99':>6} "
          f"{'max':>6} | {'RSS MB':>6} {'peak':>6}")
    seen: dict[str, int] = {}
    for r in rounds:
        seen[r.server] = seen.get(r.server, 0) + 1
        print(f"{r.server:10} {seen[r.server]:>5} {r.qps:>9.0f} {r.lost:>5} | {'':14}"
              f"{r.sat_qps:>7.0f} {r.sat_p50:>6.3f} {r.sat_p99:>6.3f} {r.sat_max:>6.2f} | "
              f"{'':12}"
              f"{r.fixed_p50:>6.3f} {r.fixed_p99:>6.3f} {r.fixed_max:>6.2f} | "
              f"{r.rss_mb:>6.1f} {r.hwm_mb:>6.1f}")
    med: dict[str, dict[str, float]] = {}
    for server in PORTS:
        mine = [r for r in rounds if r.server == server]
        if mine:
            med[server] = {
                key: statistics.median(getattr(r, key) for r in mine)
                for key in ("qps", "sat_p99", "fixed_p99", "rss_mb", "hwm_mb")
            }
    print("\nmedians:")
    for server, m in med.items():
        print(f"  {server:9} qps {m['qps']:>8.0f}  p99 saturated {m['sat_p99']:.3f} ms  "
              f"p99 at {rate}/s {m['fixed_p99']:.3f} ms  RSS {m['rss_mb']:.1f} MB "
              f"(peak {m['hwm_mb']:.1f})")
    if "aardvark" not in med:
        print("targets: aardvark-dns not measured")
        return 0
    ours, theirs = med["netbay"], med["aardvark"]
    checks = [
        (f"qps >= {QPS_TARGET}x aardvark's", ours["qps"] >= QPS_TARGET * theirs["qps"]),
        ("p99 (saturated) no worse", ours["sat_p99"] <= theirs["sat_p99"]),
        (f"p99 (at {rate}/s) no worse", ours["fixed_p99"] <= theirs["fixed_p99"]),
        (f"RSS <= {RSS_TARGET_MB:.0f} MB", ours["hwm_mb"] <= RSS_TARGET_MB),
    ]
    print(f"qps ratio {ours['qps'] / theirs['qps']:.2f}x; targets: "
          + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in checks))
    return 0


def run(
    names: int, seconds: float, rounds: int, rate: int, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Both servers up at once, each loaded in turn; 'aardvark_error' says why it did not
    run."""
    out: dict[str, Any] = {"names": names, "seconds": seconds, "rate": rate, "rounds": [],
                           "warmup_s": WARMUP, "load": [os.getloadavg()[0]],
                           "aardvark_error": None if AARDVARK.exists() else
                           f"{AARDVARK} not installed (scripts/install.sh --bench)"}
    with sandbox() as paths, tempfile.TemporaryDirectory(prefix="netbay-dnsbench-") as tmp:
        work = Path(tmp)
        with Host(paths) as host:
            progress(f"dns: {names} containers on one network")
            world, client = make_world(host, names)
            queries = work / "queries.txt"
            queries.write_text("".join(f"{name} A\n" for _, name, _, _ in world[:-1]))
            bench = Bench(client, queries, seconds, rate)
            with contextlib.ExitStack() as servers:
                pids = {"netbay": servers.enter_context(
                    netbay_server(paths.root, PORTS["netbay"]))}
                if out["aardvark_error"] is None:
                    pids["aardvark"] = servers.enter_context(
                        aardvark_server(work, world, PORTS["aardvark"]))
                for server in pids:
                    bench.warm_up(server, WARMUP)
                for i in range(rounds):
                    progress(f"dns: round {i + 1}/{rounds}")
                    order = list(pids) if i % 2 == 0 else list(reversed(pids))
                    out["rounds"] += bench.round({s: pids[s] for s in order})
            for container in host.containers():
                host.remove_container(container.id, force=True)
            host.remove_network("bench")
    out["rounds"] = [dataclasses.asdict(r) for r in out["rounds"]]
    out["load"].append(os.getloadavg()[0])  # others share the machine: say how much
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=int, default=20000, help="queries/s of the fixed load")
    parser.add_argument("--quick", action="store_true", help="200 names, 1.5 s, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.names, args.seconds, args.rounds = 200, 1.5, 3
    if os.geteuid() != 0:
        print("run as root (namespaces)", file=sys.stderr)
        return 1
    missing = [t for t in ("dnsperf", "nsenter") if not _which(t)]
    if missing:
        print(f"missing {', '.join(missing)} (scripts/install.sh --bench)", file=sys.stderr)
        return 1
    rounds = [Round(**r) for r in run(args.names, args.seconds, args.rounds, args.rate)["rounds"]]
    return report(rounds, args.names, args.rate)


def _which(tool: str) -> bool:
    return any(
        os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":")
    )


if __name__ == "__main__":
    sys.exit(main())
