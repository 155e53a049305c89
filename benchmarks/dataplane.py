"""netbay's data plane: TCP throughput along each path a packet takes, and RPS. Not a test.

    .venv/bin/python benchmarks/dataplane.py [--seconds 5] [--runs 3] [--quick]

iperf3 (TCP, one stream, client to server, `-t SECONDS`; iperf3 takes whole seconds) over:

  veth        a raw veth pair between two fresh namespaces: no bridge, no netbay (the floor);
  bridge      container to container on a netbay bridge network;
  dnat        a "LAN" namespace to a container's published port (198.51.100.1:5201);
  masquerade  a container to a server in the LAN namespace, out through the masquerade;
  macvlan     a container on a macvlan network whose parent is a veth into the LAN namespace;
  plain_bridge  context, not netbay: two namespaces on a Linux bridge in a third with no
              nftables rules, the kernel's own cost of the bridge path;
  routed      context, not netbay: the two veth hops of dnat/masquerade routed by a third
              namespace with ip_forward and no nftables, so netbay's firewall cost is told
              apart from the routing cost.

Each of veth, bridge, dnat, masquerade and routed has an IPv6 twin beside it (veth6, bridge6,
dnat6, masquerade6, routed6: dataplane6.py builds them, on a dual-stack network of their own,
NAT66 for masquerade6); an IPv6 path's share of the floor is of veth6.

RPS: 4 flows (`-P 4`) from one container into another on the same bridge network, with RPS
off (a plain network) and with netbay's `-o rps=auto` (RPS over every online CPU on both
ends of each veth, RFS table sized). Per run: throughput and the spread of receive softirq
work over the CPUs, from /proc/net/softnet_stat deltas (machine-wide, per CPU): the share of
packets each CPU processed, and the RPS IPIs (packets handed to another CPU). iperf3 3.12 is
single-threaded: the 4 flows share one sending and one receiving thread, so this shows where
the softirq work lands more than what a many-threaded receiver would gain. A packet counts
once whatever its size (a GSO data segment or an ACK); RFS needs the global
net.core.rps_sock_flow_entries, which only the root namespace can set: it is read, not set.

Ratios (issue 18's fast path): each run's netbay path over its floor from the same run,
their median: bridge / plain_bridge (>= 97%), masquerade / routed and dnat / routed (>= 100%:
the NAT paths against plain routing with no rules). The firewall's fast path (docs/design.md)
is what they measure: a forwarded flow accepted by its conntrack state, bridged traffic
between containers untracked. The IPv6 ratios are context rows, not targets: each IPv6 path
over its IPv4 twin (bridge6 / bridge, dnat6 / dnat, masquerade6 / masquerade: 90% shown as
the mark) and the IPv6 NAT paths over IPv6 routing (dnat6 / routed6, masquerade6 / routed6:
100%, as for IPv4).

The figure is the client's `end.sum_received.bits_per_second`. The world is built once;
runs are interleaved (every path, then RPS off and on, per run) so drift hits all alike. All
of it happens in a throwaway namespace (sandbox.py) and namespaces made under its directory;
traffic only flows between them. A path that cannot be built gets a one-line error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).parent))

from netbay import (  # noqa: E402
    AttachRequest,
    Container,
    ContainerSpec,
    Host,
    NetworkSpec,
    SubnetConfig,
)
from netbay.kernel import netns, netsysfs  # noqa: E402
from netbay.observe.rps import parse_softnet  # noqa: E402
from netbay.plan import firewall as fw  # noqa: E402
from netbay.plan.rps import cpu_mask  # noqa: E402
from sandbox import median, sandbox, sh  # noqa: E402

T = TypeVar("T")
Json = dict[str, Any]

MISSING = "iperf3 not installed (scripts/install.sh --bench)"
PATHS = (
    ("veth", "raw veth pair, two namespaces (floor)"),
    ("veth6", "raw veth pair over IPv6 (IPv6 floor)"),
    ("bridge", "container to container, netbay bridge"),
    ("bridge6", "container to container over IPv6"),
    ("dnat", "LAN to a published port (DNAT)"),
    ("dnat6", "LAN to a published port over IPv6"),
    ("masquerade", "container to the LAN (masquerade)"),
    ("masquerade6", "container to the LAN over IPv6 (NAT66)"),
    ("macvlan", "macvlan container to the LAN"),
    ("plain_bridge", "context: plain Linux bridge, no netbay"),
    ("routed", "context: routed via a 3rd netns, no netbay"),
    ("routed6", "context: routed over IPv6, no netbay"),
)
# the order of measuring: each path beside the floor it is held against (routed between the
# two NAT paths), so that the machine's drift, which is large here, falls on both alike
MEASURE_ORDER = ("veth", "veth6", "bridge6", "bridge", "plain_bridge", "masquerade", "routed",
                 "dnat", "dnat6", "routed6", "masquerade6", "macvlan")
IPV6_PATHS = frozenset({"veth6", "bridge6", "dnat6", "masquerade6", "routed6"})
# (netbay's path, the floor it is held against, the share of the floor it must reach)
FAST_PATH_RATIOS = (("bridge", "plain_bridge", 0.97), ("masquerade", "routed", 1.0),
                    ("dnat", "routed", 1.0))
# context, not targets: IPv6 against its IPv4 twin, the IPv6 NAT paths against IPv6 routing
IPV6_RATIOS = (("bridge6", "bridge", 0.9), ("dnat6", "dnat", 0.9),
               ("masquerade6", "masquerade", 0.9), ("dnat6", "routed6", 1.0),
               ("masquerade6", "routed6", 1.0))
RATIOS = FAST_PATH_RATIOS + IPV6_RATIOS
# the NAT paths' targets assume the flowtable: on a kernel without one they are context here,
# and held in the offload section (dataplane_vm.py), on Debian's kernel
OFFLOADED = ("masquerade", "dnat")
FLOWS = 4
RPS_SETTING = "auto"
PORT = 5201
CONNECT_WAIT = 5.0  # seconds the client retries while the server comes up
SOFTNET = Path("/proc/net/softnet_stat")
SOCK_FLOW_ENTRIES = Path("/proc/sys/net/core/rps_sock_flow_entries")

# Only ever inside the sandbox.
LAN_HOST, LAN_PEER = "198.51.100.1", "198.51.100.2"
BRIDGE_NET = IPv4Network("10.131.0.0/24")
MACVLAN_NET, MACVLAN_PEER = IPv4Network("10.132.0.0/24"), "10.132.0.1"
RPS_OFF_NET, RPS_ON_NET = IPv4Network("10.133.0.0/24"), IPv4Network("10.134.0.0/24")
VETH = ("192.0.2.1", "192.0.2.2")  # /26
ROUTED_LEFT = ("192.0.2.65", "192.0.2.66")  # router, client /26
ROUTED_RIGHT = ("192.0.2.129", "192.0.2.130")  # router, server /26
PLAIN_BRIDGE = ("192.0.2.193", "192.0.2.194")  # client, server /26


@dataclass(frozen=True)
class Target:
    """One iperf3 test: the server's namespace, the client's, and what the client dials."""

    server_ns: Path
    client_ns: Path
    address: str
    port: int = PORT


@dataclass(frozen=True)
class Failed:
    """Why a path (or what it needs) could not be built: one line."""

    why: str


@dataclass
class World:
    """Everything the benchmark builds, so that close() can take it down again."""

    host: Host
    directory: Path
    namespaces: list[Path] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def namespace(self, name: str) -> Path:
        path = self.directory / name
        netns.create(path)
        self.namespaces.append(path)
        return path

    def network(self, name: str, subnet: IPv4Network, driver: str = "bridge",
                options: dict[str, str] | None = None) -> None:
        spec = NetworkSpec(name=name, driver=driver, subnets=(SubnetConfig(subnet),),
                           options=options or {})
        self.host.create_network(spec)
        self.networks.append(name)

    def container(self, name: str, network: str, publish: tuple[str, ...] = ()) -> Container:
        """A container that is only a namespace: iperf3 is run in it with nsenter."""
        spec = ContainerSpec(command=("sleep", "inf"), name=name,
                             networks=(AttachRequest(network),), publish=publish)
        container = self.host.create_container(spec)
        self.containers.append(container.id)
        return container

    def close(self) -> None:
        """Best effort, newest first; the sandbox sweeps up whatever is left."""
        for cid in reversed(self.containers):
            with contextlib.suppress(Exception):
                self.host.remove_container(cid, force=True)
        for name in reversed(self.networks):
            with contextlib.suppress(Exception):
                self.host.remove_network(name)
        for path in reversed(self.namespaces):
            with contextlib.suppress(Exception):
                netns.delete(path)


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def build(step: Callable[..., T], *needs: object) -> T | Failed:
    """STEP(*NEEDS), or why not: the first failed need's error, else STEP's own."""
    for need in needs:
        if isinstance(need, Failed):
            return need
    try:
        return step(*needs)
    except Exception as exc:  # recorded against the path, the rest still run
        return Failed(one_line(exc))


def in_ns(ns: Path, *commands: str) -> None:
    sh(f"nsenter --net={ns} sh -ec '{'; '.join(commands)}'")


def cable(a: Path, a_if: str, b: Path, b_if: str) -> None:
    """A veth pair made here and moved into namespaces A and B."""
    sh(f"ip link add {a_if} type veth peer name {b_if} && ip link set {a_if} netns {a} && "
       f"ip link set {b_if} netns {b}")


# --- building the paths ------------------------------------------------------------------
def build_veth(world: World) -> Target:
    client, server = world.namespace("veth-a"), world.namespace("veth-b")
    cable(client, "va0", server, "vb0")
    in_ns(client, "ip link set lo up", f"ip addr add {VETH[0]}/26 dev va0", "ip link set va0 up")
    in_ns(server, "ip link set lo up", f"ip addr add {VETH[1]}/26 dev vb0", "ip link set vb0 up")
    return Target(server, client, VETH[1])


def build_routed(world: World) -> Target:
    client, router, server = (world.namespace(f"routed-{n}") for n in ("c", "r", "s"))
    cable(client, "rc0", router, "rl0")
    cable(router, "rr0", server, "rs0")
    in_ns(router, "ip link set lo up", f"ip addr add {ROUTED_LEFT[0]}/26 dev rl0",
          f"ip addr add {ROUTED_RIGHT[0]}/26 dev rr0", "ip link set rl0 up",
          "ip link set rr0 up", "sysctl -qw net.ipv4.ip_forward=1")
    in_ns(client, "ip link set lo up", f"ip addr add {ROUTED_LEFT[1]}/26 dev rc0",
          "ip link set rc0 up", f"ip route add default via {ROUTED_LEFT[0]}")
    in_ns(server, "ip link set lo up", f"ip addr add {ROUTED_RIGHT[1]}/26 dev rs0",
          "ip link set rs0 up", f"ip route add default via {ROUTED_RIGHT[0]}")
    return Target(server, client, ROUTED_RIGHT[1])


def build_plain_bridge(world: World) -> Target:
    """Two namespaces on a Linux bridge in a third, which has no nftables rules: the kernel's
    own cost of the bridge path (two veth hops and a bridge), to hold netbay's against."""
    client, hub, server = (world.namespace(f"plain-{n}") for n in ("c", "hub", "s"))
    cable(client, "pc0", hub, "hc0")
    cable(server, "ps0", hub, "hs0")
    in_ns(hub, "ip link set lo up", "ip link add br0 type bridge", "ip link set br0 up",
          "ip link set hc0 master br0", "ip link set hs0 master br0", "ip link set hc0 up",
          "ip link set hs0 up")
    in_ns(client, "ip link set lo up", f"ip addr add {PLAIN_BRIDGE[0]}/26 dev pc0",
          "ip link set pc0 up")
    in_ns(server, "ip link set lo up", f"ip addr add {PLAIN_BRIDGE[1]}/26 dev ps0",
          "ip link set ps0 up")
    return Target(server, client, PLAIN_BRIDGE[1])


def build_lan(world: World) -> Path:
    """The LAN namespace on the sandbox host's ext0, as publish.py has it."""
    lan = world.namespace("lan")
    sh(f"ip link add ext0 type veth peer name lan0 && ip link set lan0 netns {lan} && "
       f"ip addr add {LAN_HOST}/24 dev ext0 && ip link set ext0 up")
    in_ns(lan, "ip link set lo up", f"ip addr add {LAN_PEER}/24 dev lan0", "ip link set lan0 up")
    return lan


def ns_of(container: Container) -> Path:
    if container.netns is None:
        raise RuntimeError(f"container {container.name} has no namespace of its own")
    return Path(container.netns)


def ip_of(host: Host, container: Container) -> str:
    address = host.container_endpoints(container)[0][1].address
    if address is None:
        raise RuntimeError(f"container {container.name} got no IPv4 address")
    return str(address.ip)


@dataclass(frozen=True)
class Pair:
    """Two containers on one bridge network: the client's namespace, the server's, its IP."""

    client_ns: Path
    server_ns: Path
    server_ip: str


def build_pair(world: World, network: str, subnet: IPv4Network,
               options: dict[str, str] | None = None, publish: tuple[str, ...] = ()) -> Pair:
    world.network(network, subnet, options=options)
    client = world.container(f"{network}-client", network)
    server = world.container(f"{network}-server", network, publish=publish)
    return Pair(ns_of(client), ns_of(server), ip_of(world.host, server))


def build_macvlan(world: World, lan: Path) -> Target:
    """A macvlan network on ext1, a veth whose peer (the macvlan gateway) is in the LAN."""
    sh(f"ip link add ext1 type veth peer name lan1 && ip link set lan1 netns {lan} && "
       "ip link set ext1 up")
    in_ns(lan, f"ip addr add {MACVLAN_PEER}/{MACVLAN_NET.prefixlen} dev lan1",
          "ip link set lan1 up")
    world.network("mv", MACVLAN_NET, driver="macvlan", options={"parent": "ext1"})
    client = world.container("mv-client", "mv")
    return Target(lan, ns_of(client), MACVLAN_PEER, PORT + 3)


def rps_mask(netns_path: Path) -> str | None:
    """The rps_cpus mask of the first receive queue of eth0 in NETNS_PATH, as sysfs has it."""
    try:
        queues = netsysfs.read_queues(netns_path, ["eth0"])["eth0"]
    except Exception:  # a figure to show, not one to fail over
        return None
    return cpu_mask(queues.rps_cpus[0]) if queues.rps_cpus else None


# --- measuring ---------------------------------------------------------------------------
def iperf3(target: Target, seconds: int, streams: int = 1) -> float:
    """Gbit/s the server received in one iperf3 test (the server serves one and exits)."""
    server = subprocess.Popen(
        ["nsenter", f"--net={target.server_ns}", "iperf3", "-s", "-1", "-p", str(target.port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    finished = False
    try:
        report = client(target, seconds, streams)
        finished = True
    finally:
        stop(server, patient=finished)
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


def client(target: Target, seconds: int, streams: int) -> Json:
    """The client's JSON report, retrying the connection while the server starts to listen."""
    command = ["nsenter", f"--net={target.client_ns}", "iperf3", "-J", "-c", target.address,
               "-p", str(target.port), "-t", str(seconds), "-P", str(streams)]
    deadline = time.monotonic() + CONNECT_WAIT
    while True:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
        try:
            report: Json = json.loads(done.stdout)
        except ValueError:
            report = {"error": (done.stderr.strip() or f"exit {done.returncode}").splitlines()[0]}
        error = report.get("error")
        if not error and done.returncode == 0:
            return report
        if "unable to connect" not in str(error) or time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 to {target.address}:{target.port}: {error}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], patient: bool) -> None:
    """The server exits after its one test (PATIENT: give it the time); make sure of it."""
    try:
        process.wait(timeout=5 if patient else 0.1)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def softnet() -> dict[int, tuple[int, int]]:
    """CPU -> (packets processed, RPS IPIs received) so far."""
    rows = parse_softnet(SOFTNET.read_text())
    return {row["cpu"]: (row["processed"], row["rps"]) for row in rows}


def measure_rps(target: Target, seconds: int, sink: Json) -> None:
    """One run of FLOWS flows: throughput, each CPU's share of packets processed, RPS IPIs."""
    before = softnet()
    sink["gbps"].append(iperf3(target, seconds, FLOWS))
    after = softnet()
    processed = [after[c][0] - before.get(c, (0, 0))[0] for c in sorted(after)]
    total = sum(processed) or 1
    sink["share"].append([round(n / total, 4) for n in processed])
    sink["rps_ipis"].append(sum(after[c][1] - before.get(c, (0, 0))[1] for c in after))


# --- the benchmark -----------------------------------------------------------------------
def kernel_has_flowtables() -> bool:
    """Whether this kernel takes netbay's flowtable (one probe in a throwaway namespace)."""
    probe = subprocess.run(["unshare", "-n", "nft", fw.FLOWTABLE_PROBE], capture_output=True)
    return probe.returncode == 0


def empty_result(seconds: int, runs: int) -> Json:
    flow_entries = None
    with contextlib.suppress(OSError, ValueError):  # global; visible only in the root netns
        flow_entries = int(SOCK_FLOW_ENTRIES.read_text())
    modes: Json = {mode: {"gbps": [], "share": [], "rps_ipis": [], "rps_cpus": None}
             for mode in ("off", "on")}
    return {
        "seconds": seconds,
        "runs": runs,
        "flowtable": kernel_has_flowtables(),
        "paths": [{"key": k, "label": label, "gbps": [], "error": None} for k, label in PATHS],
        "rps": {"cpus": len(netsysfs.online_cpus()), "flows": FLOWS, "setting": RPS_SETTING,
                "rps_sock_flow_entries": flow_entries, **modes, "error": None},
    }


def run_ratios(result: Json) -> dict[str, list[float]]:
    """'ours/floor' -> each run's ratio (runs where both were measured)."""
    gbps = {entry["key"]: entry["gbps"] for entry in result["paths"]}
    return {f"{ours}/{floor}": [a / b for a, b in zip(gbps[ours], gbps[floor], strict=False)
                                if b > 0] for ours, floor, _ in RATIOS}


def build_paths(world: World) -> dict[str, Target | Failed]:
    """Path key -> its target, or why it could not be built."""
    import dataplane6  # imported here: it builds on this module

    lan = build(build_lan, world)
    pair = build(build_pair, world, "bench", BRIDGE_NET, None, (f"{PORT}:{PORT}",))
    ipv4 = {
        "veth": build(build_veth, world),
        "bridge": build(lambda p: Target(p.server_ns, p.client_ns, p.server_ip), pair),
        "dnat": build(lambda la, p: Target(p.server_ns, la, LAN_HOST), lan, pair),
        "masquerade": build(lambda la, p: Target(la, p.client_ns, LAN_PEER, PORT + 2), lan, pair),
        "macvlan": build(build_macvlan, world, lan),
        "plain_bridge": build(build_plain_bridge, world),
        "routed": build(build_routed, world),
    }
    return ipv4 | dataplane6.build_paths6(world, lan)


def build_rps(world: World, rps: Json) -> dict[str, Target]:
    """RPS mode -> its target; a failure is recorded in RPS["error"] (then {} is returned)."""
    targets = {}
    for mode, subnet, options in (("off", RPS_OFF_NET, None),
                                  ("on", RPS_ON_NET, {"rps": RPS_SETTING})):
        pair = build(build_pair, world, f"rps-{mode}", subnet, options)
        if isinstance(pair, Failed):
            rps["error"] = f"rps {mode}: {pair.why}"
            return {}
        rps[mode]["rps_cpus"] = rps_mask(pair.server_ns)
        targets[mode] = Target(pair.server_ns, pair.client_ns, pair.server_ip)
    return targets


def measure_paths(targets: dict[str, Target | Failed], entries: dict[str, Json], seconds: int,
                  label: str, progress: Callable[[str], None], backwards: bool = False) -> None:
    """One run over every path, each beside its floor (MEASURE_ORDER), BACKWARDS on every
    other run, so that a drift of the machine over a run falls on a path and on its floor
    alike; a path that fails stops being measured, with its error."""
    for key in reversed(MEASURE_ORDER) if backwards else MEASURE_ORDER:
        target = targets[key]
        if isinstance(target, Failed):
            continue
        progress(f"{label}: {key}")
        try:
            entries[key]["gbps"].append(iperf3(target, seconds))
        except Exception as exc:  # keep measuring the others
            entries[key]["error"] = one_line(exc)
            targets[key] = Failed(entries[key]["error"])


def measure_rps_run(targets: dict[str, Target], rps: Json, seconds: int, label: str,
                    progress: Callable[[str], None]) -> None:
    for mode, target in targets.items():
        if rps["error"]:
            return
        progress(f"{label}: rps {mode}")
        try:
            measure_rps(target, seconds, rps[mode])
        except Exception as exc:
            rps["error"] = f"rps {mode}: {one_line(exc)}"


def run(seconds: float, runs: int, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the world once, measure every path and RPS off/on RUNS times, interleaved."""
    duration = max(1, round(seconds))  # iperf3 -t takes whole seconds
    result = empty_result(duration, runs)
    entries = {entry["key"]: entry for entry in result["paths"]}
    rps = result["rps"]
    if shutil.which("iperf3") is None:
        for entry in result["paths"]:
            entry["error"] = MISSING
        rps["error"] = MISSING
        return result
    with sandbox() as paths, Host(paths) as host:
        directory = paths.root / "dataplane"
        directory.mkdir(parents=True, exist_ok=True)
        world = World(host, directory)
        try:
            targets = build_paths(world)
            for key, target in targets.items():
                if isinstance(target, Failed):
                    entries[key]["error"] = target.why
            rps_targets = build_rps(world, rps)
            for r in range(runs):
                label = f"dataplane run {r + 1}/{runs}"
                measure_paths(targets, entries, duration, label, progress, r % 2 == 1)
                measure_rps_run(rps_targets, rps, duration, label, progress)
        finally:
            world.close()
    result["ratios"] = run_ratios(result)
    return result


# --- the table ---------------------------------------------------------------------------
def spread(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def shares(rows: Sequence[Sequence[float]]) -> str:
    """Median share of each CPU over the runs: 'cpu0 55% cpu1 45%'."""
    if not rows:
        return "-"
    return " ".join(f"cpu{i} {median([row[i] for row in rows]) * 100:.0f}%"
                    for i in range(len(rows[0])))


def floor_of(key: str) -> str:
    """The veth pair a path's share is of: the IPv6 one for an IPv6 path."""
    return "veth6" if key in IPV6_PATHS else "veth"


def print_table(result: Json) -> None:
    print(f"\n== TCP throughput, iperf3, 1 stream, {result['seconds']} s x {result['runs']} runs"
          " (% floor: of veth, an IPv6 path's of veth6)")
    floors = {p["key"]: median(p["gbps"]) if p["gbps"] else 0.0 for p in result["paths"]
              if p["key"] in ("veth", "veth6")}
    print(f"{'path':<12} {'what':<44} {'Gbit/s':>7} {'min-max':>12} {'% floor':>7}")
    for entry in result["paths"]:
        gbps, floor = entry["gbps"], floors.get(floor_of(entry["key"]), 0.0)
        mid = f"{median(gbps):.2f}" if gbps else "-"
        pct = f"{median(gbps) / floor * 100:.0f}%" if gbps and floor > 0 else "-"
        print(f"{entry['key']:<12} {entry['label']:<44} {mid:>7} {spread(gbps):>12} {pct:>7}")
        if entry["error"]:
            print(f"{'':<12} error: {entry['error']}")
    print(f"\n{'ratio':<26} {'median of runs':>14} {'min-max':>14} {'target':>7}")
    for ours, base, goal in RATIOS:
        each = result["ratios"][f"{ours}/{base}"]
        mid = f"{median(each) * 100:.1f}%" if each else "-"
        span = f"{min(each) * 100:.0f}-{max(each) * 100:.0f}%" if each else "-"
        context = "  context" if (ours, base, goal) in IPV6_RATIOS else ""
        print(f"{ours + ' / ' + base:<26} {mid:>14} {span:>14} {goal * 100:>6.0f}%{context}")
    rps = result["rps"]
    print(f"\n== RPS: {rps['flows']} flows into one container (bridge), {rps['cpus']} CPUs, "
          f"-o rps={rps['setting']} (rps_sock_flow_entries: {rps['rps_sock_flow_entries']})")
    print(f"{'rps':<5} {'rps_cpus':>8} {'Gbit/s':>7} {'min-max':>12} {'RPS IPIs':>10}  "
          "packets processed per CPU (median)")
    for mode in ("off", "on"):
        m = rps[mode]
        ipis = f"{median(m['rps_ipis']):.0f}" if m["rps_ipis"] else "-"
        mid = f"{median(m['gbps']):.2f}" if m["gbps"] else "-"
        print(f"{mode:<5} {m['rps_cpus'] or '-':>8} {mid:>7} "
              f"{spread(m['gbps']):>12} {ipis:>10}  {shares(m['share'])}")
    if rps["error"]:
        print(f"error: {rps['error']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 -t (whole seconds)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s")
    args = parser.parse_args()
    seconds, runs = (2.0, 1) if args.quick else (args.seconds, args.runs)
    print_table(run(seconds, runs))
    return 0


if __name__ == "__main__":
    sys.modules["dataplane"] = sys.modules[__name__]  # dataplane6's import: not a 2nd copy
    sys.exit(main())
