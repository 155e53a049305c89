"""The cluster the convergence benchmark (convergence.py) measures on the multi-host harness:
the networks side by side, prepared; the probers (first_reply.py in a container), the daemons'
API from out here, and the nodes' routes to a block as `ip route` shows them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from cluster import Cluster, ClusterHost
from netbay.client import Client, path_of
from netbay.paths import Paths
from sandbox import median, p

Json = dict[str, Any]
PROBER = Path(__file__).resolve().parent / "first_reply.py"
PROBE_TIMEOUT_S = 20.0
POLL_S = 0.05
SETTLE_TIMEOUT_S = 30.0
BLOCK_PREFIX = 24  # both networks' block size: 256 addresses, room for 2 x 50 starts


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


def reaches(prober: Prober, address: IPv4Address) -> bool:
    """One probe of ADDRESS answered (within PROBE_TIMEOUT_S)."""
    prober.probe(address)
    prober.probing()
    return prober.first_reply() is not None


def api(host: ClusterHost) -> Client:
    """HOST's daemon API, from out here: its socket through its PID 1's root (no CLI start)."""
    socket = Path(f"/proc/{host.init_pid}/root/run/netbay/netbay.sock")
    return Client(Paths(root=host.state, socket=socket, netns_dir=host.dir), autostart=False)


def address_of(host: ClusterHost, container: str, network: str) -> IPv4Address:
    """CONTAINER's address on NETWORK, from HOST's daemon."""
    found = api(host).get(path_of("containers", container, "json"))
    return IPv4Address(found["NetworkSettings"]["Networks"][network]["IPAddress"])


def route_protocols(host: ClusterHost) -> dict[str, str]:
    """HOST's routes in its main table: destination -> protocol (`57`, `bird`, ...)."""
    found = {}
    for line in host.run(["ip", "-o", "route", "show"]).stdout.splitlines():
        words = line.split()
        if "proto" in words:
            found[words[0]] = words[words.index("proto") + 1]
    return found


def wait_routes(hosts: Sequence[ClusterHost], blocks: Mapping[str, IPv4Network],
                present: bool, since: float) -> dict[str, dict[str, float]]:
    """Seconds from SINCE until each of HOSTS had (PRESENT) or no longer had a route to each
    of BLOCKS (key -> block; by any protocol: netbay's, or BGP's through BIRD), polled every
    POLL_S: key -> host -> seconds."""
    seen: dict[str, dict[str, float]] = {key: {} for key in blocks}
    deadline = since + SETTLE_TIMEOUT_S
    while any(len(by_host) < len(hosts) for by_host in seen.values()):
        for host in hosts:
            routes = route_protocols(host)
            for key, block in blocks.items():
                if host.name not in seen[key] and (str(block) in routes) == present:
                    seen[key][host.name] = time.monotonic() - since
        if time.monotonic() > deadline:
            late = {key: sorted({h.name for h in hosts} - set(by_host))
                    for key, by_host in seen.items() if len(by_host) < len(hosts)}
            raise AssertionError(f"routes {'not back' if present else 'still there'}: "
                                 f"{late} ({dict(blocks)})")
        time.sleep(POLL_S)
    return seen


def quantiles(values: Sequence[float | None]) -> Json:
    """p50/p99/max of the values (ms or s), and how many probes got no reply at all."""
    got = [v for v in values if v is not None]
    return {"count": len(values), "lost": len(values) - len(got), "p50": median(got),
            "p99": p(got, 0.99), "max": max(got, default=float("nan"))}


def summary(samples: Sequence[Json], keys: Sequence[str]) -> Json:
    """SAMPLES and the quantiles of each of their KEYS."""
    return {"samples": list(samples), **{key: quantiles([s[key] for s in samples])
                                         for key in keys}}


# --- the networks -------------------------------------------------------------------------
@dataclass(frozen=True)
class Net:
    """One of the networks measured side by side."""

    kind: str  # the figures' key, and its driver
    octet: int  # its pool is 10.OCTET.0.0/16, the new-block rounds' the next ones up
    block_option: str  # the driver's option for its blocks' prefix length
    paths: tuple[tuple[str, int], ...]  # (path from h1, the node's index) of starts, blocks

    @property
    def name(self) -> str:
        return f"conv-{self.kind}"

    def pool(self, offset: int = 0) -> str:
        return f"10.{self.octet + offset}.0.0/16"

    def create(self, host: ClusterHost, name: str, offset: int = 0) -> None:
        host.netbay("network", "create", "-d", self.kind, "--subnet", self.pool(offset),
                    "-o", f"{self.block_option}={BLOCK_PREFIX}", name)

    def container(self, host: ClusterHost) -> str:
        return f"{self.kind[0]}-{host.name}"


NETWORKS = (
    Net("overlay", 100, "subnet_size", (("host-gw", 1), ("vxlan", 2))),
    Net("routed", 150, "block_size", (("bgp", 1), ("vxlan", 2))),
)


def block_of(address: IPv4Address) -> IPv4Network:
    return IPv4Network((address, BLOCK_PREFIX), strict=False)


def home_block(host: ClusterHost, net: Net) -> IPv4Network:
    """HOST's block of NET: where its container there has its address."""
    return block_of(address_of(host, net.container(host), net.name))


def start(host: ClusterHost, name: str, network: str, *args: str) -> None:
    host.netbay("run", "-d", "--name", name, "--network", network, *args, "--", "sleep",
                "infinity")


def join_args(cluster: Cluster, host: ClusterHost, ttl: int) -> list[str]:
    return ["cluster", "join", "--etcd", ",".join(cluster.etcd.endpoints), "--address",
            host.address, "--ttl", str(ttl)]


# --- the cluster ------------------------------------------------------------------------
def prepare(cluster: Cluster, ttl: int) -> None:
    """h1..h3 joined, the networks, a container of each on each, h1's reaching the others."""
    members = cluster.hosts[:3]
    for host in members:
        host.netbay(*join_args(cluster, host, ttl))
    for net in NETWORKS:
        net.create(members[0], net.name)
        for host in members:
            start(host, net.container(host), net.name)
    for net in NETWORKS:
        prober = Prober(members[0], net.container(members[0]))
        try:
            for target in members[1:]:
                if not reaches(prober, address_of(target, net.container(target), net.name)):
                    raise AssertionError(f"{net.name}: h1 does not reach {target.name}")
        finally:
            prober.close()
