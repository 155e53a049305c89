"""Attach/detach latency through netbay.Host for many containers on one bridge network.

A benchmark, not a test. Run as root:

    .venv/bin/python benchmarks/attach_detach.py [--count N] [--runs N] [--quick] [--no-floor]

Everything happens in a throwaway network namespace standing in for the host (as the kernel
tests do), with a temporary state root and netns directory; the machine's root namespace is
never touched, and the sandbox is torn down even if the benchmark fails.

Containers are made once, before timing, each with its own netns and no endpoint; every run
then times host.attach_endpoint() for all of them in order (veth, address, default route and
the record), then host.detach_endpoint() in the same order. Each run then does the same
kernel work with no record, no checks and no IPAM, twice, so netbay's own share is visible:

  floor     netbay's netlink path alone (kernel.rtnetlink.Rtnetlink), the kernel's floor here;
  pyroute2  plain pyroute2 IPRoute calls (the peers' "raw netlink floor" in
            notes/peers.md): a long-lived host socket for the veth add, one socket opened in
            the container's namespace per attach, a synchronous link delete.

Both floors switch IPv6 off on both ends of the pair before it gets its carrier, as netbay
does, so all three do the same kernel work. Windows: the first, middle and last 100 containers
(count/5 if fewer than 500). "netbay - floor" rows are figure-by-figure differences.

Targets (issue): attach median <= 5 ms, median of the last 100 within 1.25x of the first
100 (1000 containers on one network); detach median <= 5 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from pyroute2 import IPRoute

sys.path.insert(0, str(Path(__file__).parent))

from netbay import Container, ContainerSpec, Host, Network, NetworkSpec, SubnetConfig  # noqa: E402
from netbay.kernel import sysctl
from netbay.kernel.netns import entered
from netbay.kernel.rtnetlink import Rtnetlink
from sandbox import sandbox  # noqa: E402

SUBNET = IPv4Network("10.123.0.0/20")  # room for 4,000 containers; only inside the sandbox
ATTACH_TARGET_MS = 5.0
DETACH_TARGET_MS = 5.0
GROWTH_TARGET = 1.25


# --- setup ------------------------------------------------------------------------------
def make_containers(host: Host, count: int) -> list[Container]:
    """COUNT containers, each with its own netns (lo up) and a record, but no endpoint.

    create_container() with no networks makes a "none"-mode container (netns, record, /etc
    files); the benchmark then marks it "private", the mode of a container whose endpoints are
    attached one by one, so that attach_endpoint() accepts it.
    """
    out = []
    for i in range(count):
        container = host.create_container(
            ContainerSpec(command=("true",), name=f"bench-{i}", networks=())
        )
        host.store.update_container(container.id, network_mode="private")
        out.append(dataclasses.replace(container, network_mode="private"))
    return out


# --- timed loops --------------------------------------------------------------------------
def _timed(calls: Sequence[Callable[[], object]]) -> list[float]:
    """Milliseconds per call, in order."""
    out = []
    clock = time.perf_counter_ns
    for call in calls:
        start = clock()
        call()
        out.append((clock() - start) / 1e6)
    return out


def netbay_run(
    host: Host, network: Network, containers: list[Container], profile: cProfile.Profile | None
) -> tuple[list[float], list[float]]:
    endpoints = []
    attach = []
    clock = time.perf_counter_ns
    if profile is not None:
        profile.enable()
    for container in containers:
        start = clock()
        endpoint = host.attach_endpoint(container, network)
        attach.append((clock() - start) / 1e6)
        endpoints.append(endpoint)
    if profile is not None:
        profile.disable()
    detach = _timed([partial(host.detach_endpoint, network, e) for e in endpoints])
    return attach, detach


def floor_attach(nl: Rtnetlink, conf: sysctl.ConfDir, master: int, name: str, netns: str,
                 address: IPv4Interface, gateway: IPv4Address) -> None:
    """An attach's kernel work as netbay does it, nothing else: veth NAME into NETNS on
    bridge MASTER, IPv6 off on the host end (CONF: the host's held-open conf directory; the
    container end is born with it off: NETNS has it off by default, as netbay makes them),
    link up, address, default route."""
    nl.add_veth(name, "eth0", netns, master=master, peer_mac=None, mtu=None)
    conf.write(name, "disable_ipv6", "1")
    with Rtnetlink(netns) as inside:
        index = inside.index("eth0")
        assert index is not None
        inside.set_up(index)
        inside.ensure_address(index, address)
        inside.ensure_default_route(gateway)


def floor_run(
    bridge: str, containers: list[Container], gateway: IPv4Address, use_pyroute2: bool
) -> tuple[list[float], list[float]]:
    """The same kernel work as an attach (veth into the netns on the bridge, IPv6 off on both
    ends, link up, address, default route) and a detach (link delete), with no record, no
    checks and no IPAM: through netbay's own netlink path (rtnetlink.Rtnetlink), or through plain
    pyroute2 IPRoute calls (a long-lived host socket, one socket opened in the container's
    namespace per attach, a synchronous link delete)."""
    hosts = list(SUBNET.hosts())
    conf = sysctl.ConfDir.open()
    with Rtnetlink(None) as nl, IPRoute() as ipr, contextlib.closing(conf):
        master = nl.index(bridge)
        assert master is not None

        def attach_netlink(i: int, netns: str) -> None:
            floor_attach(nl, conf, master, f"floor{i}", netns,
                         IPv4Interface((hosts[i + 1], SUBNET.prefixlen)), gateway)

        def attach_pyroute2(i: int, netns: str) -> None:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link(
                    "add",
                    ifname=f"floor{i}",
                    kind="veth",
                    master=master,
                    state="up",
                    peer={"ifname": "eth0", "net_ns_fd": fd},
                )
            finally:
                os.close(fd)
            sysctl.ensure(f"net.ipv6.conf.floor{i}.disable_ipv6", "1")
            with entered(netns):
                sysctl.ensure("net.ipv6.conf.eth0.disable_ipv6", "1")
                inside = IPRoute()
            with inside:
                index = inside.link("get", ifname="eth0")[0]["index"]
                inside.link("set", index=index, state="up")
                address = str(hosts[i + 1])
                inside.addr("add", index=index, address=address, prefixlen=SUBNET.prefixlen)
                inside.route("add", dst="0.0.0.0/0", gateway=str(gateway))

        attach = attach_pyroute2 if use_pyroute2 else attach_netlink
        up = _timed([partial(attach, i, str(c.netns)) for i, c in enumerate(containers)])

        def delete(name: str) -> object:
            return ipr.link("del", ifname=name) if use_pyroute2 else nl.remove_link(name)

        down = _timed([partial(delete, f"floor{i}") for i in range(len(containers))])
    return up, down


# --- report -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Summary:
    first: float  # the 1st container
    hundredth: float
    last: float  # the COUNT-th
    head: float  # median of the first window
    middle: float
    tail: float
    overall: float
    growth: float  # tail / head; over runs, the median of the runs' ratios


def windows(count: int) -> tuple[int, tuple[int, int, int]]:
    """Window size and the 0-based starts of the first, middle and last windows."""
    size = min(100, max(1, count // 5))
    return size, (0, max(0, count // 2 - size // 2), count - size)


def summarise(samples: list[float]) -> Summary:
    size, (a, b, c) = windows(len(samples))
    med = statistics.median
    return Summary(
        first=samples[0],
        hundredth=samples[min(99, len(samples) - 1)],
        last=samples[-1],
        head=med(samples[a : a + size]),
        middle=med(samples[b : b + size]),
        tail=med(samples[c : c + size]),
        overall=med(samples),
        growth=med(samples[c : c + size]) / med(samples[a : a + size]),
    )


def combine(summaries: list[Summary]) -> Summary:
    """Median over runs of each figure."""
    med = statistics.median
    return Summary(
        **{f.name: med(getattr(s, f.name) for s in summaries) for f in dataclasses.fields(Summary)}
    )


def difference(a: Summary, b: Summary) -> Summary:
    """Figure by figure A - B (netbay's own share: the record and the logic)."""
    return Summary(
        **{f.name: getattr(a, f.name) - getattr(b, f.name) for f in dataclasses.fields(Summary)}
    )


def header(count: int) -> str:
    size, (a, b, c) = windows(count)
    cols = [
        "#1",
        f"#{min(100, count)}",
        f"#{count}",
        f"{a + 1}-{a + size}",
        f"{b + 1}-{b + size}",
        f"{c + 1}-{c + size}",
        "all",
        "last/first",
    ]
    return f"{'':<24}" + "".join(f"{col:>11}" for col in cols)


def row(label: str, s: Summary, growth: bool = True) -> str:
    values = [s.first, s.hundredth, s.last, s.head, s.middle, s.tail, s.overall]
    ratio = f"{s.growth:>10.2f}x" if growth else ""
    return f"{label:<24}" + "".join(f"{v:>11.3f}" for v in values) + ratio


PHASES = {  # key: row label
    "attach": "netbay attach",
    "detach": "netbay detach",
    "floor_attach": "floor attach",
    "floor_detach": "floor detach",
    "pyroute2_attach": "pyroute2 attach",
    "pyroute2_detach": "pyroute2 detach",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="containers (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="50 containers")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the kernel floor and the pyroute2 figures"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the last attach loop")
    args = parser.parse_args(argv)
    count = 50 if args.quick else args.count
    if count < 1 or count > SUBNET.num_addresses - 3 or args.runs < 1:
        parser.error(f"--count must be 1..{SUBNET.num_addresses - 3}, --runs >= 1")
    if os.geteuid() != 0:
        print("needs root (it makes network namespaces)", file=sys.stderr)
        return 2

    results: dict[str, list[Summary]] = {key: [] for key in PHASES}
    profile = cProfile.Profile() if args.profile else None
    with sandbox() as paths, Host(paths) as host:
        network = host.create_network(NetworkSpec(name="bench", subnets=(SubnetConfig(SUBNET),)))
        assert network.device is not None and network.subnets[0].gateway is not None
        gateway = network.subnets[0].gateway
        start = time.perf_counter()
        containers = make_containers(host, count)
        print(
            f"setup: {count} containers (netns + record) in {time.perf_counter() - start:.1f} s; "
            f"network {network.name} ({network.device}, {SUBNET}); times in ms",
            flush=True,
        )
        print(header(count))
        for run in range(1, args.runs + 1):
            last = run == args.runs
            up, down = netbay_run(host, network, containers, profile if last else None)
            sums = {"attach": summarise(up), "detach": summarise(down)}
            if not args.no_floor:
                up, down = floor_run(network.device, containers, gateway, use_pyroute2=False)
                sums |= {"floor_attach": summarise(up), "floor_detach": summarise(down)}
                up, down = floor_run(network.device, containers, gateway, use_pyroute2=True)
                sums |= {"pyroute2_attach": summarise(up), "pyroute2_detach": summarise(down)}
            for key, value in sums.items():
                results[key].append(value)
                print(row(f"run {run} {PHASES[key]}", value), flush=True)
        with contextlib.suppress(Exception):  # best effort: the sandbox goes anyway
            host.remove_network(network.id)

    print(f"\nmedian over {args.runs} run(s) of each figure (last/first: of the runs' ratios):")
    print(header(count))
    final = {key: combine(v) for key, v in results.items() if v}
    for key, value in final.items():
        print(row(PHASES[key], value))
    attach, detach = final["attach"], final["detach"]
    if "floor_attach" in final:
        for op in ("attach", "detach"):
            own = difference(final[op], final[f"floor_{op}"])
            print(row(f"netbay {op} - floor", own, growth=False))
    print("\ntargets:")
    checks = [
        (
            f"attach median <= {ATTACH_TARGET_MS} ms",
            attach.overall <= ATTACH_TARGET_MS,
            f"{attach.overall:.3f} ms",
        ),
        (
            f"attach last/first window <= {GROWTH_TARGET}x",
            attach.growth <= GROWTH_TARGET,
            f"{attach.growth:.2f}x",
        ),
        (
            f"detach median <= {DETACH_TARGET_MS} ms",
            detach.overall <= DETACH_TARGET_MS,
            f"{detach.overall:.3f} ms",
        ),
    ]
    for what, ok, figure in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}: {figure}")
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(45)
        print("\nprofile of the last attach loop:\n" + out.getvalue())
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
