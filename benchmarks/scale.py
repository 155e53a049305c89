"""Attach/detach latency against the number of containers already on the network, for every
way in and every peer, in one run (issue 7). Not a test. Run as root:

    .venv/bin/python benchmarks/scale.py [--count N] [--budget SECONDS] [--quick]

Systems, each in its own throwaway namespace standing in for a host (so one's rules never
slow another), each with one bridge network that grows from 0 to COUNT containers:

  kernel floor     the attach's netlink requests alone, through netbay's own netlink path (no
                   record, firewall or IPAM): the kernel's share and its growth;
  netbay library   netbay.Host.connect / disconnect in this process;
  netbay CLI       `netbay network connect|disconnect bench cN` against its netbayd;
  netbay CNI       netbay's CNI plugin, exec'd as libcni does (ADD/DEL), its netbayd running;
  netbay netavark  netbay's netavark-compatible executable (setup/teardown);
  CNI chain        the reference plugins bridge + host-local + portmap + firewall (ADD/DEL);
  netavark         netavark 1.4 setup/teardown, static IPs as podman passes them.

A Linux bridge takes at most 1,023 ports: past PER_BRIDGE (1,000) containers the floor, the
library and the CLI go on with a second bridge (network bench2), so the record, netbay's nft
sets and the host's links keep growing to COUNT; the other systems stop at 1,000.

One system at a time (run side by side, each slowed the others through the kernel's shared
work): containers 1..COUNT are attached, then detached in reverse, so detach sample j is
taken with j+1 containers on the network. The runtime-style systems attach into one shared
set of COUNT namespaces in turn, the library and the CLI into netbay's own COUNT containers;
nothing is deleted until the end, and the benchmark waits for the kernel to free it all.
Containers (netns, and for the library/CLI the record) are made before timing. A system
whose attach time passes BUDGET seconds stops growing there; the page says how far it got
(its detach still runs, untimed budget, to clean up).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402
from attach_detach import floor_attach  # noqa: E402
from cni_netavark import Daemon, NetbayCni, NetbayNetavark  # noqa: E402
from netbay import ContainerSpec, Host, NetworkSpec, Paths, SubnetConfig  # noqa: E402
from netbay.install import install_cni, install_netavark  # noqa: E402
from netbay.kernel import netns, sysctl  # noqa: E402
from netbay.kernel.rtnetlink import Rtnetlink  # noqa: E402
from sandbox import median, p, sandbox, sh  # noqa: E402

SUBNET = IPv4Network("10.140.0.0/20")  # room for 4,000 containers; only inside each namespace
SUBNET2 = IPv4Network("10.141.0.0/20")  # the second bridge network's
# A Linux bridge takes at most 1,023 ports: past this many containers, the systems that can
# (the floor, the library, the CLI) go on with a second bridge, the others stop there
PER_BRIDGE = 1000
NETBAY_CLI = Path(sys.executable).with_name("netbay")


class System(Protocol):
    label: str
    one_bridge: bool  # stops at PER_BRIDGE containers


    def attach(self, i: int) -> None: ...
    def detach(self, i: int) -> None: ...
    def close(self) -> None: ...


@dataclasses.dataclass
class Place:
    """One system's stand-in host: a namespace, a state root, a scratch directory."""

    ns: Path
    work: Path
    pool: Path  # the runtime namespaces c0..cN-1, shared by the systems that take a netns

    @property
    def paths(self) -> Paths:
        return Paths(root=self.work / "state", socket=self.work / "netbay.sock",
                     netns_dir=self.work / "netns")

    @property
    def environ(self) -> dict[str, str]:
        paths = self.paths
        return {**os.environ, "NETBAY_ROOT": str(paths.root), "NETBAY_SOCKET": str(paths.socket),
                "NETBAY_NETNS_DIR": str(paths.netns_dir)}

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        with netns.entered(self.ns):
            yield

    def container_ns(self, i: int) -> Path:
        return self.pool / f"c{i}"


def make_place(root: Path, key: str, pool: Path) -> Place:
    work = root / key
    if (work / "hostns").exists():  # the library and the CLI share netbay's host and state
        return Place(work / "hostns", work, pool)
    work.mkdir(parents=True)
    place = Place(work / "hostns", work, pool)
    netns.create(place.ns)
    with place.inside(), Rtnetlink(None) as nl:
        nl.set_up(1)
    return place


def network_of(i: int) -> str:
    """The network container I joins: the second one past PER_BRIDGE."""
    return "bench" if i < PER_BRIDGE else "bench2"


def make_pool(directory: Path, count: int) -> None:
    """COUNT empty namespaces that every runtime-style system attaches into in turn, as a
    runtime would hand them over, with IPv6 off by default as netbay makes its own: one set
    for all, since the kernel frees deleted namespaces slowly (~10 a second) and that work
    would land on whatever is measured next."""
    directory.mkdir()
    for i in range(count):
        path = directory / f"c{i}"
        netns.create(path)
        with netns.entered(path):
            sysctl.ensure("net.ipv6.conf.default.disable_ipv6", "1")


def make_containers(host: Host, count: int) -> None:
    """COUNT containers with a netns and a record but no endpoint yet (as the library
    benchmark does: a "none" container marked "private", the mode that takes endpoints)."""
    host.create_network(NetworkSpec(name="bench", subnets=(SubnetConfig(SUBNET),)))
    if count > PER_BRIDGE:
        host.create_network(NetworkSpec(name="bench2", subnets=(SubnetConfig(SUBNET2),)))
    for i in range(count):
        container = host.create_container(
            ContainerSpec(command=("true",), name=f"c{i}", networks=()))
        host.store.update_container(container.id, network_mode="private")


# --- the systems -----------------------------------------------------------------------------
class Library:
    label = "netbay library"
    one_bridge = False

    def __init__(self, place: Place, count: int) -> None:
        self.place = place
        with place.inside():
            self.host = Host(place.paths)
            if not self.host.containers():
                make_containers(self.host, count)

    def attach(self, i: int) -> None:
        self.host.connect(network_of(i), f"c{i}")

    def detach(self, i: int) -> None:
        self.host.disconnect(network_of(i), f"c{i}")

    def close(self) -> None:
        with self.place.inside():
            self.host.close()


class Cli:
    label = "netbay CLI"
    one_bridge = False

    def __init__(self, place: Place, count: int) -> None:
        self.place = place
        with place.inside():
            with Host(place.paths) as host:
                if not host.containers():  # the library system made them already
                    make_containers(host, count)
            self.daemon = Daemon(place.paths, place.environ)
        self.environ = place.environ

    def _run(self, verb: str, i: int) -> None:
        out = subprocess.run([str(NETBAY_CLI), "network", verb, network_of(i), f"c{i}"],
                             env=self.environ, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"netbay network {verb} c{i}: {out.stderr.strip()}")

    def attach(self, i: int) -> None:
        self._run("connect", i)

    def detach(self, i: int) -> None:
        self._run("disconnect", i)

    def close(self) -> None:
        self.daemon.stop()


class Plugin:
    """netbay's CNI plugin or its netavark-compatible executable, with a netbayd."""

    one_bridge = True

    def __init__(self, place: Place, count: int, netavark: bool) -> None:
        self.place = place
        self.label = "netbay netavark" if netavark else "netbay CNI"
        with place.inside():
            self.daemon = Daemon(place.paths, place.environ)
        paths, bin_dir = place.paths, place.work / "bin"
        bin_dir.mkdir()
        environ = place.environ
        self.ids = [f"{i:08x}" * 8 for i in range(count)]
        if netavark:
            exe = install_netavark(bin_dir, socket=str(paths.socket), root=str(paths.root))
            self.nv = NetbayNetavark(place.work, SUBNET, exe, environ)
        else:
            exe = install_cni(bin_dir, socket=str(paths.socket), root=str(paths.root))[0]
            self.cni = NetbayCni(exe, environ)
            self.daemon.client.post("/networks/create", {
                "Name": "bench", "IPAM": {"Config": [{"Subnet": str(SUBNET)}]}})
        self.netavark = netavark

    def _ip(self, i: int) -> str:
        return str(SUBNET.network_address + 2 + i)

    def attach(self, i: int) -> None:
        if self.netavark:
            self.nv.setup(self.ids[i], self._ip(i), self.place.container_ns(i), [])
        else:
            self.cni.add(self.ids[i], self.place.container_ns(i), [])

    def detach(self, i: int) -> None:
        if self.netavark:
            self.nv.teardown(self.ids[i], self._ip(i), self.place.container_ns(i), [])
        else:
            self.cni.delete(self.ids[i], self.place.container_ns(i), [])

    def close(self) -> None:
        self.daemon.stop()


class Chain:
    label = "CNI chain"
    one_bridge = True

    def __init__(self, place: Place, count: int) -> None:
        self.place = place
        self.chain = peers.CniChain(place.work, SUBNET)
        self.results: dict[int, Any] = {}

    def attach(self, i: int) -> None:
        self.results[i] = self.chain.add(f"{i:08x}" * 8, self.place.container_ns(i), [])

    def detach(self, i: int) -> None:
        self.chain.delete(f"{i:08x}" * 8, self.place.container_ns(i), self.results.pop(i), [])

    def close(self) -> None:
        pass


class Netavark:
    label = "netavark"
    one_bridge = True

    def __init__(self, place: Place, count: int) -> None:
        self.place = place
        self.nv = peers.Netavark(place.work, SUBNET)

    def attach(self, i: int) -> None:
        self.nv.setup(f"{i:08x}" * 8, str(SUBNET.network_address + 2 + i),
                      self.place.container_ns(i), [])

    def detach(self, i: int) -> None:
        self.nv.teardown(f"{i:08x}" * 8, str(SUBNET.network_address + 2 + i),
                         self.place.container_ns(i), [])

    def close(self) -> None:
        pass


class Floor:
    """The kernel's share alone: the attach's netlink requests through netbay's own netlink
    path (attach_detach.floor_attach), no record, no firewall, no IPAM."""

    label = "kernel floor"
    one_bridge = False

    def __init__(self, place: Place, count: int) -> None:
        self.place = place
        self.hosts = list(SUBNET.hosts())
        self.masters: list[int] = []
        with place.inside():
            self.nl = Rtnetlink(None)
            self.conf = sysctl.ConfDir.open()
            for k in range(-(-count // PER_BRIDGE)):
                sh(f"ip link add nbfloor{k} type bridge && ip link set nbfloor{k} up")
                master = self.nl.index(f"nbfloor{k}")
                assert master is not None
                self.masters.append(master)

    def attach(self, i: int) -> None:
        """Each veth into a namespace of its own, as netbay's are: the kernel's work grows
        with the namespaces a host's links lead into (it looks their ids up one by one)."""
        floor_attach(self.nl, self.conf, self.masters[i // PER_BRIDGE], f"fl{i}",
                     str(self.place.container_ns(i)),
                     IPv4Interface((self.hosts[i + 1], SUBNET.prefixlen)), self.hosts[0])

    def detach(self, i: int) -> None:
        self.nl.remove_link(f"fl{i}")

    def close(self) -> None:
        self.nl.close()
        self.conf.close()


# key -> (label, peer kind needed or None, factory)
SYSTEMS: dict[str, tuple[str, str | None, Callable[[Place, int], System]]] = {
    "floor": ("kernel floor", None, Floor),
    "library": ("netbay library", None, Library),
    "cli": ("netbay CLI", None, Cli),
    "cni": ("netbay CNI", None, lambda place, n: Plugin(place, n, netavark=False)),
    "nbnetavark": ("netbay netavark", None, lambda place, n: Plugin(place, n, netavark=True)),
    "chain": ("CNI chain", "cni", Chain),
    "netavark": ("netavark", "netavark", Netavark),
}
# the peer each netbay entry point is compared with (both exec'd once per operation)
PAIRS = (("cni", "chain"), ("nbnetavark", "netavark"))


# --- the run ---------------------------------------------------------------------------------
def _timed(call: Callable[[int], None], i: int) -> float:
    start = time.perf_counter_ns()
    call(i)
    return (time.perf_counter_ns() - start) / 1e6


def run(count: int, budget: float, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Per system: attach_ms[k] taken with k containers already on the network, detach_ms[j]
    with j+1 on it; 'reached' (how many were attached within the budget) or 'error'."""
    out: dict[str, Any] = {"count": count, "budget_s": budget, "systems": {}}
    baseline = live_namespaces()
    with sandbox() as paths:
        root = paths.root.parent
        progress(f"scale: making {count} namespaces for the runtime-style systems")
        make_pool(root / "pool", count)
        for key, (label, peer, factory) in SYSTEMS.items():
            entry: dict[str, Any] = {"label": label, "attach_ms": [], "detach_ms": [],
                                     "reached": 0, "error": None}
            out["systems"][key] = entry
            why = peers.available(peer) if peer else None
            if why is not None:
                entry["error"] = f"not installed: {why}"
                continue
            progress(f"scale: {label}")
            place = make_place(root, "netbay" if key in ("library", "cli") else key,
                               root / "pool")
            measure_one(place, factory, count, budget, entry, progress)
    settle(baseline, progress)
    return out


def live_namespaces() -> int | None:
    """Network namespaces the kernel still holds (freed or not yet), from the slab
    allocator's count; None where the cache is merged with others and cannot be told."""
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines():
            if line.startswith("net_namespace "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def settle(baseline: int | None, progress: Callable[[str], None], limit: float = 600) -> None:
    """Wait until the kernel has freed the namespaces just deleted: it does so in the
    background, ~10 a second here, and that work would land on the next benchmark. The
    slab count is approximate (objects cached per CPU count as live), so: until it is back
    near the baseline, or has not moved for 3 s."""
    if baseline is None:
        time.sleep(5)
        return
    start = last_change = time.monotonic()
    last = live_namespaces()
    while last is not None and last > baseline + 64:
        time.sleep(0.5)
        now = live_namespaces()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > 3 or time.monotonic() - start > limit:
            break
    progress(f"scale: the kernel freed the namespaces in {time.monotonic() - start:.0f} s")


def measure_one(place: Place, factory: Callable[[Place, int], System], count: int,
                budget: float, entry: dict[str, Any], progress: Callable[[str], None]) -> None:
    """One system, the only one working: the others' containers are detached (their
    namespaces empty) before it starts."""
    try:
        system = factory(place, count)
    except Exception as exc:  # reported on the page, never silently left out
        entry["error"] = f"could not start: {exc}"
        return
    try:
        _grow(place, system, entry, count, budget, progress)
        _shrink(place, system, entry, progress)
    finally:
        with contextlib.suppress(Exception), place.inside():
            system.close()


def _grow(place: Place, system: System, entry: dict[str, Any], count: int, budget: float,
          progress: Callable[[str], None]) -> None:
    spent = 0.0
    for i in range(min(count, PER_BRIDGE) if system.one_bridge else count):
        if i and i % max(1, count // 5) == 0:
            progress(f"scale: {entry['label']}: {i}/{count} attached")
        with place.inside():
            try:
                ms = _timed(system.attach, i)
            except Exception as exc:
                entry["error"] = f"attach #{i + 1} failed: {exc}"
                return
        entry["attach_ms"].append(ms)
        entry["reached"] = i + 1
        spent += ms / 1000
        if spent > budget:
            return
    if entry["reached"] < count:
        entry["note"] = f"stopped at {entry['reached']}: one bridge (at most 1,023 ports)"


def _shrink(place: Place, system: System, entry: dict[str, Any],
            progress: Callable[[str], None]) -> None:
    progress(f"scale: {entry['label']}: detaching {entry['reached']}")
    for i in reversed(range(entry["reached"])):
        with place.inside():
            try:
                ms = _timed(system.detach, i)
            except Exception as exc:
                entry["error"] = entry["error"] or f"detach failed: {exc}"
                continue
        entry["detach_ms"].insert(0, ms)


# --- summaries ---------------------------------------------------------------------------------
def checkpoints(count: int) -> list[int]:
    marks = [c for c in (1, 10, 100, 500, 1000) if c < count]
    return [*marks, count]


def window(samples: list[float], upto: int) -> list[float]:
    """The samples of the operations that brought the network to UPTO containers (attach) or
    were taken with UPTO..UPTO-w+1 on it (detach): the last w before UPTO."""
    width = max(1, min(50, upto // 2))
    return samples[max(0, upto - width):upto]


def summary(samples: list[float], upto: int) -> dict[str, float] | None:
    if len(samples) < upto:
        return None
    values = window(samples, upto)
    return {"median": median(values), "p25": p(values, 0.25), "p75": p(values, 0.75)}


def growth(samples: list[float]) -> float | None:
    """Median of the last tenth of the samples over the median of the first tenth."""
    if len(samples) < 10:
        return None
    size = max(1, len(samples) // 10)
    return median(samples[-size:]) / median(samples[:size])


def shares(result: dict[str, Any], op: str = "attach") -> dict[int, float]:
    """netbay's own share of an operation by checkpoint: the library's median minus the
    kernel floor's over the same window."""
    systems = result["systems"]
    mine = systems.get("library", {}).get(f"{op}_ms", [])
    floor = systems.get("floor", {}).get(f"{op}_ms", [])
    out = {}
    for mark in checkpoints(result["count"]):
        a, b = summary(mine, mark), summary(floor, mark)
        if a and b:
            out[mark] = a["median"] - b["median"]
    return out


WHY = (
    "Why netbay's share grew, and what changed (issue 18): counted per operation (Python "
    "lines run, SQLite VM steps and statements, nft transactions and bytes: "
    "`benchmarks/ab_attach.py TREE --counts 10,999,1999`, figures no load can blur), the "
    "only work of netbay's own that grew with the containers on the network was IPAM: the "
    "lowest free address was found by walking up from the start of the subnet past every "
    "lease, after copying the network's lease set (3,818 lines per attach with 10 containers "
    "on the network, 5,796 with 999). The store now keeps each network's leases sorted and "
    "immutable (ipam/leases.py), hands them out without a copy, and the first free address "
    "is a binary search: 3,868 lines with 10, 3,892 with 999 and with 1,999 on the host. "
    "SQL (16 statements, 407 VM steps), nft (one transaction of ~146 bytes) and netlink "
    "were flat already, and so is detach (2,362-2,369 lines, 12 statements). What still "
    "grows is the kernel's: per-port walks of the bridge (port numbers, adjacency lists, "
    "static FDB entries) and the lookup of each peer namespace's id, one by one; perf "
    "samples show the same kernel functions in the floor and in netbay's attach, with more "
    "time in them after netbay's own work (cold caches) than in the floor measured alone. "
    "A Linux bridge takes at most 1,023 ports, so from 1,000 containers the floor, the "
    "library and the CLI continue on a second bridge network (the record, nft sets, the "
    "host's links and namespaces keep growing); the other systems stop at 1,000."
)


def explain(result: dict[str, Any]) -> list[str]:
    """The page's paragraphs on netbay's own share: why it grew, and as measured here."""
    out = [WHY]
    for op in ("attach", "detach"):
        share = shares(result, op)
        base = share.get(10)
        if not base or base <= 0:
            continue
        cells = ", ".join(f"{share[m]:.2f} ms at {m}" for m in share if m >= 10)
        ratios = ", ".join(f"{share[m] / base:.2f}x at {m}" for m in share if m >= 100)
        target = " (target: within 1.15x)" if op == "attach" else ""
        out.append(f"netbay's own share of the {op} (library minus floor, window medians): "
                   f"{cells}; against its share at 10: {ratios}{target}.")
    return out


def report(result: dict[str, Any]) -> str:
    marks = checkpoints(result["count"])
    lines = []
    for op in ("attach", "detach"):
        lines.append(f"{op} median ms, by containers on the network")
        lines.append(f"{'':18}" + "".join(f"{m:>10}" for m in marks) + f"{'growth':>9}")
        for entry in result["systems"].values():
            if entry["error"] and not entry[f"{op}_ms"]:
                lines.append(f"{entry['label']:18}  {entry['error']}")
                continue
            samples = entry[f"{op}_ms"]
            cells = [summary(samples, m) for m in marks]
            g = growth(samples)
            lines.append(f"{entry['label']:18}" + "".join(
                f"{c['median']:>10.2f}" if c else f"{'-':>10}" for c in cells)
                + (f"{g:>8.2f}x" if g else f"{'-':>9}"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=150.0,
                        help="seconds of attach time after which a system stops growing")
    parser.add_argument("--quick", action="store_true", help="100 containers, 20 s budget")
    parser.add_argument("--json", type=Path, help="also write the raw samples here")
    args = parser.parse_args()
    if args.quick:
        args.count, args.budget = 100, 20.0
    if os.geteuid() != 0:
        print("needs root (it makes network namespaces)", file=sys.stderr)
        return 2
    result = run(args.count, args.budget)
    if args.json:
        args.json.write_text(json.dumps(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
