"""The overlay's data plane: how fast sync_overlay programs peers, and what the programmed
paths carry. Not a test. As root:

    .venv/bin/python benchmarks/overlay.py [--peers 100] [--seconds 3] [--runs 7] [--quick]

Sync (kernel/overlay.py through LinuxKernel, in a throwaway namespace with a veth as the
underlay): PEERS peers over VXLAN (a neighbour, an FDB entry and an onlink route each) and
over host-gw (a route each): the time to program them from empty, a sync with nothing to
change (median and least of 20), one peer back with a new address and VTEP MAC, and every
peer removed.

Throughput (iperf3, TCP, one stream, container to container unless said otherwise) between
two host namespaces joined by a veth (one L2 segment, MTU 1500):
  underlay       host to host over the veth (the floor);
  netbay_vxlan   netbay's plan and sync, backend vxlan, containers attached as the bridge
                 driver does (LinuxKernel.attach_veth);
  hand_vxlan     the same objects made by hand with iproute2, as flannel programs them (bridge,
                 veth, vxlan nolearning, permanent neighbour, FDB entry, onlink route);
  vxlan_pair     context: a bare point-to-point VXLAN pair (`remote`), host to host;
  netbay_hostgw  netbay's plan and sync, backend host-gw;
  plain_routing  the same by hand: bridges, veths and a static route via the other host.
Runs are interleaved so drift hits every path alike; the figures are medians of RUNS, the
ratios medians of each run's ratio (paths measured seconds apart). No nftables on any path
(the overlay driver's firewall comes on top of this).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from dataplane import MISSING, Target, in_ns, iperf3  # noqa: E402
from netbay.kernel import netns  # noqa: E402
from netbay.kernel.linux import LinuxKernel  # noqa: E402
from netbay.plan.overlay import (  # noqa: E402
    Backend,
    OverlayNode,
    OverlayPeer,
    OverlaySettings,
    OverlayState,
    plan_overlay,
    vtep_mac,
)
from sandbox import median, sandbox, sh  # noqa: E402

Json = dict[str, Any]
NETWORK_ID = "be0c4a7e5d1f2a3b4c5d"
SCALE_POOL = IPv4Network("10.128.0.0/9")  # room for 32,767 peers' /24s
SCALE_UNDERLAY = IPv4Interface("172.16.0.1/16")  # the peers' addresses are on its link
NO_CHANGE_SYNCS = 20
HOSTS = {"a": IPv4Address("192.0.2.1"), "b": IPv4Address("192.0.2.2")}  # only in the sandbox
RATIOS = (("netbay_vxlan", "hand_vxlan"), ("netbay_hostgw", "plain_routing"),
          ("netbay_vxlan", "underlay"), ("hand_vxlan", "underlay"), ("vxlan_pair", "underlay"),
          ("netbay_hostgw", "underlay"))


# --- sync ------------------------------------------------------------------------------
def scale_plan(count: int, backend: Backend, moved: int | None = None) -> OverlayState:
    """This node and COUNT peers on its underlay link; peer MOVED came back with a new
    underlay address and VTEP MAC."""
    settings = OverlaySettings(NETWORK_ID, SCALE_POOL, vni=1, backend=backend)
    first = int(SCALE_POOL.network_address)
    node = OverlayNode("bench-node", SCALE_UNDERLAY.ip, "und0", 1500,
                       IPv4Network((first, 24)))
    peers = [OverlayPeer(f"peer-{i}", SCALE_UNDERLAY.ip + 1 + i + (30000 if i == moved else 0),
                         IPv4Network((first + 256 * (i + 1), 24)),
                         vtep_mac(f"peer-{i}{'-new' if i == moved else ''}", 1),
                         same_segment=backend is Backend.HOST_GW)
             for i in range(count)]
    return plan_overlay(settings, node, peers)


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = step()
    return (time.perf_counter() - start) * 1000, value


def measure_sync(count: int, backend: Backend) -> Json:
    """Milliseconds (and writes) of each kind of sync, in a sandbox of its own."""
    with sandbox():
        sh(f"ip link add und0 type veth peer name und1 && ip link set und1 up && "
           f"ip addr add {SCALE_UNDERLAY} dev und0 && ip link set und0 up")
        kernel = LinuxKernel()
        try:
            state = scale_plan(count, backend)
            plan_ms, _ = timed(lambda: scale_plan(count, backend))
            program_ms, first = timed(lambda: kernel.sync_overlay(state))
            idle = [timed(lambda: kernel.sync_overlay(state)) for _ in range(NO_CHANGE_SYNCS)]
            assert all(not r.changes for _, r in idle), "a sync with nothing to do wrote"
            changed = scale_plan(count, backend, moved=count // 2)
            change_ms, one = timed(lambda: kernel.sync_overlay(changed))
            empty = scale_plan(0, backend)
            remove_ms, gone = timed(lambda: kernel.sync_overlay(empty))
        finally:
            kernel.close()
    return {"backend": backend.value, "peers": count, "plan_ms": plan_ms,
            "program_ms": program_ms, "program_writes": len(first.changes),
            "no_change_ms": median([ms for ms, _ in idle]),
            "no_change_min_ms": min(ms for ms, _ in idle), "one_change_ms": change_ms,
            "one_change_writes": len(one.changes), "remove_all_ms": remove_ms,
            "remove_all_writes": len(gone.changes)}


# --- throughput: building the paths -----------------------------------------------------
class World:
    """Two hosts on one veth, and what each path adds to them; close() undoes it all."""

    addresses: Mapping[str, IPv4Address] = HOSTS  # each host's on its eth0

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        self.directory = directory
        self.stack = stack
        self.hosts = {name: self.namespace(f"host-{name}") for name in self.addresses}
        self.wire()
        self.kernels = {name: self.kernel(path) for name, path in self.hosts.items()}

    def wire(self) -> None:
        """The underlay (a subclass wires another): eth0 of each host, forwarding on."""
        in_ns(self.hosts["a"], f"ip link add eth0 type veth peer name eth0 netns {self.hosts['b']}")
        for name, address in HOSTS.items():
            in_ns(self.hosts[name], "ip link set lo up", f"ip addr add {address}/24 dev eth0",
                  "ip link set eth0 up", "sysctl -qw net.ipv4.ip_forward=1")

    def namespace(self, name: str) -> Path:
        path = self.directory / name
        netns.create(path)
        self.stack.callback(netns.delete, path)
        return path

    def container(self, name: str, kernel: LinuxKernel) -> Path:
        """A container's namespace, made as netbay makes them (IPv6 off by default)."""
        path = self.directory / name
        kernel.create_netns(path)
        self.stack.callback(kernel.delete_netns, path)
        return path

    def kernel(self, host: Path) -> LinuxKernel:
        with netns.entered(host):
            kernel = LinuxKernel()
        self.stack.callback(kernel.close)
        return kernel


def subnet_of(pool: str, host: str) -> IPv4Network:
    return IPv4Network(f"{pool}.{1 + list(HOSTS).index(host)}.0/24")


def build_netbay(world: World, pool: str, vni: int, backend: Backend) -> Target:
    """Plan and sync on both hosts, then one container on each, attached as the bridge
    driver attaches them."""
    settings = OverlaySettings(f"overlay{vni:05}{'0' * 8}", IPv4Network(f"{pool}.0.0/16"),
                               vni=vni, backend=backend)
    nodes = {name: OverlayNode(f"node-{name}", address, "eth0", 1500, subnet_of(pool, name))
             for name, address in world.addresses.items()}
    containers = {}
    for name, kernel in world.kernels.items():
        peers = [OverlayPeer(n.node_id, n.address, n.subnet, vtep_mac(n.node_id, vni), True)
                 for other, n in nodes.items() if other != name]
        state = plan_overlay(settings, nodes[name], peers)
        kernel.sync_overlay(state)
        containers[name] = world.container(f"nb-{backend.value}-{name}", kernel)
        gateway = state.bridge.gateway
        kernel.attach_veth(bridge=state.bridge.name, bridge_key=settings.network_id,
                           host_ifname=f"nbv{vni}{name}", ifname="eth0",
                           netns=containers[name], mac=None, mtu=state.veth_mtu,
                           address=IPv4Interface((gateway.ip + 1, 24)), gateway=gateway.ip)
    return Target(containers["b"], containers["a"], str(subnet_of(pool, "b")[2]))


def hand_container(world: World, host: str, pool: str, bridge: str, mtu: int) -> Path:
    """A bridge holding <subnet>.1 and a container on it at .2, by hand with iproute2."""
    subnet = subnet_of(pool, host)
    container = world.namespace(f"{bridge}-{host}")
    in_ns(world.hosts[host], f"ip link add {bridge} mtu {mtu} type bridge",
          f"ip addr add {subnet[1]}/24 dev {bridge}", f"ip link set {bridge} up",
          f"ip link add v{bridge} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {container}",
          f"ip link set v{bridge} master {bridge} up")
    in_ns(container, "ip link set lo up", f"ip addr add {subnet[2]}/24 dev eth0",
          "ip link set eth0 up", f"ip route add default via {subnet[1]}")
    return container


def build_hand_vxlan(world: World) -> Target:
    """flannel's programming, typed in: the VTEP MACs are fixed by hand here."""
    pool, macs = "10.245", {"a": "02:00:00:45:00:01", "b": "02:00:00:45:00:02"}
    containers = {}
    for host, other in (("a", "b"), ("b", "a")):
        there = subnet_of(pool, other)
        in_ns(world.hosts[host],
              f"ip link add vxh address {macs[host]} mtu 1450 type vxlan id 2 "
              f"local {HOSTS[host]} dev eth0 dstport 4789 nolearning",
              f"ip addr add {subnet_of(pool, host)[0]}/32 dev vxh", "ip link set vxh up",
              f"ip neigh add {there[0]} lladdr {macs[other]} dev vxh nud permanent",
              f"bridge fdb append {macs[other]} dev vxh dst {HOSTS[other]} self permanent",
              f"ip route add {there} via {there[0]} dev vxh onlink")
        containers[host] = hand_container(world, host, pool, "brh", 1450)
    return Target(containers["b"], containers["a"], str(subnet_of(pool, "b")[2]))


def build_vxlan_pair(world: World) -> Target:
    for host, other in (("a", "b"), ("b", "a")):
        in_ns(world.hosts[host],
              f"ip link add vxp type vxlan id 3 local {world.addresses[host]} "
              f"remote {world.addresses[other]} "
              "dev eth0 dstport 4789 nolearning",
              f"ip addr add {pair_address(host)}/24 dev vxp", "ip link set vxp up")
    return Target(world.hosts["b"], world.hosts["a"], pair_address("b"))


def pair_address(host: str) -> str:
    """HOST's address on the VXLAN pair."""
    return f"10.249.0.{1 + list(HOSTS).index(host)}"


def build_plain_routing(world: World) -> Target:
    pool = "10.247"
    containers = {}
    for host, other in (("a", "b"), ("b", "a")):
        in_ns(world.hosts[host], f"ip route add {subnet_of(pool, other)} via {HOSTS[other]}")
        containers[host] = hand_container(world, host, pool, "brp", 1500)
    return Target(containers["b"], containers["a"], str(subnet_of(pool, "b")[2]))


def build_paths(world: World) -> dict[str, Target]:
    return {
        "underlay": Target(world.hosts["b"], world.hosts["a"], str(HOSTS["b"])),
        "netbay_vxlan": build_netbay(world, "10.244", 1, Backend.VXLAN),
        "hand_vxlan": build_hand_vxlan(world),
        "vxlan_pair": build_vxlan_pair(world),
        "netbay_hostgw": build_netbay(world, "10.246", 4, Backend.HOST_GW),
        "plain_routing": build_plain_routing(world),
    }


@contextmanager
def two_hosts() -> Iterator[dict[str, Target]]:
    with sandbox() as paths, ExitStack() as stack:
        directory = paths.root.parent / "overlay"
        directory.mkdir()
        yield build_paths(World(directory, stack))


# --- the benchmark -----------------------------------------------------------------------
def measure_throughput(seconds: int, runs: int, progress: Callable[[str], None]) -> Json:
    with two_hosts() as targets:
        return interleaved(targets, RATIOS, seconds, runs, progress)


def interleaved(targets: Mapping[str, Target], ratios: Sequence[tuple[str, str]], seconds: int,
                runs: int, progress: Callable[[str], None]) -> Json:
    """iperf3 along every target's path in turn, RUNS times; medians, and RATIOS (a/b)."""
    gbps: dict[str, list[float]] = {path: [] for path in targets}
    order = list(targets.items())
    for r in range(runs):
        # every other run goes in reverse, so a path measured early (a cooler, quieter
        # machine) is measured late next time: a drift over the run cancels out of a ratio
        for path, target in order if r % 2 == 0 else reversed(order):
            progress(f"throughput run {r + 1}/{runs}: {path}")
            gbps[path].append(iperf3(target, seconds))
    # a ratio per run, of paths measured seconds apart, then their median: the load of a
    # shared machine swings between runs far more than within one
    paired = {f"{a}/{b}": median([x / y for x, y in zip(gbps[a], gbps[b], strict=True)])
              for a, b in ratios}
    return {"seconds": seconds, "runs": runs, "gbps": gbps,
            "median_gbps": {path: median(values) for path, values in gbps.items()},
            "ratios": paired}


def run(peers: int = 100, seconds: float = 3.0, runs: int = 7,
        progress: Callable[[str], None] = print) -> Json:
    result: Json = {"sync": [], "throughput": None, "error": None}
    for backend in (Backend.VXLAN, Backend.HOST_GW):
        progress(f"sync: {peers} peers, {backend.value}")
        result["sync"].append(measure_sync(peers, backend))
    if shutil.which("iperf3") is None:
        result["error"] = MISSING
        return result
    result["throughput"] = measure_throughput(max(1, round(seconds)), runs, progress)
    return result


def print_table(result: Json) -> None:
    print("\n== sync_overlay (ms; writes in brackets)")
    print(f"{'backend':<8} {'peers':>5} {'plan':>7} {'program':>14} {'no change':>10} "
          f"{'(least)':>8} {'one change':>14} {'remove all':>14}")
    for s in result["sync"]:
        print(f"{s['backend']:<8} {s['peers']:>5} {s['plan_ms']:>7.1f} "
              f"{s['program_ms']:>8.1f} [{s['program_writes']:>3}] {s['no_change_ms']:>10.2f} "
              f"{s['no_change_min_ms']:>8.2f} "
              f"{s['one_change_ms']:>8.2f} [{s['one_change_writes']:>3}] "
              f"{s['remove_all_ms']:>8.1f} [{s['remove_all_writes']:>3}]")
    through = result["throughput"]
    if through is None:
        print(f"\nthroughput: {result['error']}")
        return
    print_throughput(through)


def print_throughput(through: Json) -> None:
    print(f"\n== iperf3, 1 TCP stream, {through['seconds']} s x {through['runs']} runs (Gbit/s)")
    for path in through["gbps"]:
        values = through["gbps"][path]
        print(f"{path:<14} {median(values):>7.2f}   runs: "
              + " ".join(f"{v:.2f}" for v in values))
    print()
    for name, ratio in through["ratios"].items():
        print(f"{name:<30} {ratio * 100:>6.1f}%  (median of the runs' ratios)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0, help="iperf3 -t (whole seconds)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="10 peers, 1 run of 1 s")
    args = parser.parse_args()
    if args.quick:
        args.peers, args.seconds, args.runs = 10, 1.0, 1
    print_table(run(args.peers, args.seconds, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
