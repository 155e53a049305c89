"""Port publishing, side by side with the peers (issue 3's benchmarks). Not a test.

    .venv/bin/python benchmarks/publish.py [--quick] [--runs N]

1. Publish N ports (1, 10, 100, 1000) on one container: netbay attaching a container created
   with `-p A-B:A-B` (and that minus attaching one without ports: the publishing alone) vs
   netavark 1.4 setup with one range mapping (as podman passes `-p A-B:A-B`) and with N
   single mappings (up to 100).
2. TCP connect latency to a published port, with 1 port published vs 10,000 (10 containers x
   1,000): netbay's maps should make the two equal.
3. Attach and detach of a container with one published port: netbay (connect/disconnect
   through the library) vs the CNI chain bridge+host-local+portmap+firewall (ADD/DEL) vs
   netavark setup/teardown.
Everything runs in a throwaway namespace (sandbox.py); the LAN client is another namespace.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec, SubnetConfig  # noqa: E402
from netbay.ids import new_id  # noqa: E402
from netbay.kernel import netns  # noqa: E402
from sandbox import median, p, sandbox, sh  # noqa: E402

PROBE = str(Path(__file__).parent.parent / "tests" / "netprobe.py")


def publish_cost(host: Host, counts: list[int], runs: int) -> dict[int, tuple[float, float]]:
    """N -> (median ms of attaching a container with N published ports minus one without,
    median ms of the attach with them). An attach applies the container's mappings, so this
    is the same work as a netavark setup with N mappings: veth, address, route, firewall."""

    def attached_once(name: str, publish: tuple[str, ...]) -> str:
        spec = ContainerSpec(command=("sleep", "inf"), name=name,
                             networks=(AttachRequest("bench"),), publish=publish)
        container = host.create_container(spec)
        host.disconnect("bench", container.id)
        return container.id

    def attach(cid: str) -> float:
        ms = peers.timed(host.connect, "bench", cid)
        host.disconnect("bench", cid)
        return ms

    plain = attached_once("pub-none", ())
    out = {}
    for n in counts:
        cid = attached_once(f"pub{n}", (f"20000-{20000 + n - 1}:20000-{20000 + n - 1}",))
        with_ports, without = [], []
        for _ in range(runs):
            with_ports.append(attach(cid))
            without.append(attach(plain))
        host.remove_container(cid, force=True)
        out[n] = (median(with_ports) - median(without), median(with_ports))
    host.remove_container(plain, force=True)
    return out


def netavark_publish(workdir: Path, counts: list[int], runs: int) -> dict[int, tuple[float, float]]:
    """N -> (median setup ms with one range mapping, with N single mappings or nan)."""
    nv = peers.Netavark(workdir, IPv4Network("10.124.0.0/16"))
    out = {}
    for n in counts:
        ranged, singles = [], []
        for r in range(runs):
            for mode, sink in (("range", ranged), ("single", singles)):
                if mode == "single" and n > 100:
                    continue
                path = workdir / f"nv-{n}-{r}-{mode}"
                netns.create(path)
                ports = (
                    [{"hostPort": 20000, "containerPort": 20000, "protocol": "tcp", "range": n}]
                    if mode == "range"
                    else [
                        {"hostPort": 20000 + i, "containerPort": 20000 + i, "protocol": "tcp"}
                        for i in range(n)
                    ]
                )
                cid = new_id()
                sink.append(peers.timed(nv.setup, cid, "10.124.0.2", path, ports))
                nv.teardown(cid, "10.124.0.2", path, ports)
                netns.delete(path)
        out[n] = (median(ranged), median(singles))
    return out


def connect_latency(
    host: Host, lan_ns: Path, total_ports: int, samples: int
) -> tuple[float, float]:
    """Median and p99 ms of TCP connect+answer to one published port, with TOTAL_PORTS
    published across containers."""
    target = host.create_container(
        ContainerSpec(
            command=(sys.executable, PROBE, "tcp-serve", "80"),
            name=f"srv{total_ports}",
            networks=(AttachRequest("bench"),),
            publish=("18080:80",),
        )
    )
    host.start_container(target.id)
    fillers = []
    per = 1000
    for i in range(max(0, total_ports - 1) // per):
        base = 21000 + i * per
        fillers.append(
            host.create_container(
                ContainerSpec(
                    command=("sleep", "inf"),
                    name=f"fill{total_ports}-{i}",
                    networks=(AttachRequest("bench"),),
                    publish=(f"{base}-{base + per - 1}:80-{80 + per - 1}",),
                )
            )
        )
    client = (
        "import socket,time,sys\n"
        "n=int(sys.argv[1]);out=[]\n"
        "for _ in range(n):\n"
        "  t=time.perf_counter()\n"
        "  s=socket.create_connection(('198.51.100.1',18080),timeout=2); s.recv(64); s.close()\n"
        "  out.append((time.perf_counter()-t)*1000)\n"
        "print(' '.join(f'{x:.4f}' for x in out))\n"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["nsenter", f"--net={lan_ns}", sys.executable, PROBE, "tcp", "198.51.100.1", "18080"],
            capture_output=True,
        )
        if probe.returncode == 0:
            break
        time.sleep(0.1)
    result = subprocess.run(
        ["nsenter", f"--net={lan_ns}", sys.executable, "-c", client, str(samples)],
        capture_output=True,
        text=True,
        check=True,
    )
    values = [float(x) for x in result.stdout.split()]
    for c in [target, *fillers]:
        host.remove_container(c.id, force=True)
    return median(values), p(values, 0.99)


def attach_detach(
    host: Host, workdir: Path, count: int
) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """System -> (median attach ms, median detach ms) with one published port each; and
    system -> why it did not run."""
    out: dict[str, tuple[float, float]] = {}
    errors: dict[str, str] = {}
    containers = [
        host.create_container(
            ContainerSpec(
                command=("sleep", "inf"),
                name=f"ad{i}",
                networks=(AttachRequest("bench"),),
                publish=(f"{30000 + i}:80",),
            )
        )
        for i in range(count)
    ]
    for c in containers:
        host.disconnect("bench", c.id)
    attach, detach = [], []
    for c in containers:
        attach.append(peers.timed(host.connect, "bench", c.id))
    for c in containers:
        detach.append(peers.timed(host.disconnect, "bench", c.id))
    out["netbay (library)"] = (median(attach), median(detach))
    for c in containers:
        host.remove_container(c.id, force=True)

    ports = [{"hostPort": 40000, "containerPort": 80, "protocol": "tcp"}]
    if (why := peers.available("cni")) is None:
        chain = peers.CniChain(workdir, IPv4Network("10.125.0.0/16"))
        add, dele = [], []
        for i in range(count):
            path = workdir / f"cni{i}"
            netns.create(path)
            cid = new_id()
            mapping = [{**ports[0], "hostPort": 40000 + i}]
            start = time.perf_counter()
            result = chain.add(cid, path, mapping)
            add.append((time.perf_counter() - start) * 1000)
            dele.append(peers.timed(chain.delete, cid, path, result, mapping))
            netns.delete(path)
        out["CNI bridge+host-local+portmap+firewall"] = (median(add), median(dele))
    else:
        errors["CNI bridge+host-local+portmap+firewall"] = why
    if (why := peers.available("netavark")) is None:
        nv = peers.Netavark(workdir, IPv4Network("10.126.0.0/16"))
        add, dele = [], []
        for i in range(count):
            path = workdir / f"nv{i}"
            netns.create(path)
            cid, ip = new_id(), f"10.126.0.{i + 2}"
            mapping = [{**ports[0], "hostPort": 41000 + i}]
            add.append(peers.timed(nv.setup, cid, ip, path, mapping))
            dele.append(peers.timed(nv.teardown, cid, ip, path, mapping))
            netns.delete(path)
        out["netavark 1.4"] = (median(add), median(dele))
    else:
        errors["netavark 1.4"] = why
    return out, errors


def run(
    counts: list[int],
    big: int,
    samples: int,
    ad_count: int,
    runs: int,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every figure of this benchmark as JSON-able data (None where a peer did not run)."""
    nan_free = _none_if_nan
    out: dict[str, Any] = {"runs": runs}
    with sandbox() as paths, Host(paths) as host:
        work = paths.root / "peers"
        work.mkdir(parents=True)
        lan = paths.root / "lan"
        netns.create(lan)
        try:
            sh(
                f"ip link add ext0 type veth peer name lan0 && ip link set lan0 netns {lan} && "
                "ip addr add 198.51.100.1/24 dev ext0 && ip link set ext0 up"
            )
            sh(
                f"nsenter --net={lan} sh -c 'ip link set lo up; "
                "ip addr add 198.51.100.2/24 dev lan0; ip link set lan0 up'"
            )
            host.create_network(
                NetworkSpec(name="bench", subnets=(SubnetConfig(IPv4Network("10.123.0.0/16")),))
            )
            progress(f"publish: {', '.join(map(str, counts))} ports on one container")
            ours = publish_cost(host, counts, runs)
            why = peers.available("netavark")
            theirs = netavark_publish(work, counts, runs) if why is None else {}
            out["publish"] = {
                "netavark_error": why,
                "rows": [
                    {
                        "ports": n,
                        "netbay_ms": ours[n][0],
                        "netbay_total_ms": ours[n][1],
                        "netavark_range_ms": nan_free(theirs.get(n, (None, None))[0]),
                        "netavark_singles_ms": nan_free(theirs.get(n, (None, None))[1]),
                    }
                    for n in counts
                ],
            }
            progress(f"publish: TCP connect with 1 and {big} ports published")
            one = connect_latency(host, lan, 1, samples)
            many = connect_latency(host, lan, big, samples)
            out["connect"] = {
                "samples": samples,
                "few": 1,
                "many": big,
                "few_ms": {"median": one[0], "p99": one[1]},
                "many_ms": {"median": many[0], "p99": many[1]},
            }
            progress(f"publish: attach/detach with one published port ({ad_count} containers)")
            systems, errors = attach_detach(host, work, ad_count)
            out["attach_one_port"] = {
                "count": ad_count,
                "systems": {k: {"attach_ms": a, "detach_ms": d} for k, (a, d) in systems.items()},
                "errors": errors,
            }
        finally:
            netns.delete(lan)
    return out


def _none_if_nan(value: float | None) -> float | None:
    return None if value is None or value != value else value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = [1, 10, 100] if args.quick else [1, 10, 100, 1000]
    big = 2000 if args.quick else 10000
    samples = 200 if args.quick else 1000
    ad_count = 10 if args.quick else 50
    result = run(counts, big, samples, ad_count, args.runs)

    print("== 1. publish N ports on one container (median ms)")
    print(
        f"{'ports':>6} {'netbay publish':>15} {'netbay attach':>13} {'netavark range':>15}"
        f" {'netavark singles':>17}"
    )
    for r in result["publish"]["rows"]:
        cells = [r["netavark_range_ms"], r["netavark_singles_ms"]]
        nv = [f"{c:.1f}" if c is not None else "-" for c in cells]
        print(
            f"{r['ports']:>6} {r['netbay_ms']:>15.2f} {r['netbay_total_ms']:>13.2f}"
            f" {nv[0]:>15} {nv[1]:>17}"
        )
    if result["publish"]["netavark_error"]:
        print(f"netavark not run: {result['publish']['netavark_error']}")
    c = result["connect"]
    print(f"\n== 2. TCP connect to a published port from the LAN ({samples} samples)")
    print(f"  1 port published:      median {c['few_ms']['median']:.3f} ms"
          f"  p99 {c['few_ms']['p99']:.3f} ms")
    print(f"  {big} ports published: median {c['many_ms']['median']:.3f} ms"
          f"  p99 {c['many_ms']['p99']:.3f} ms")
    print(f"  ratio {c['many_ms']['median'] / c['few_ms']['median']:.3f} (target <= 1.10)")
    ad = result["attach_one_port"]
    print(f"\n== 3. attach / detach with one published port ({ad['count']} containers, median ms)")
    for system, figures in ad["systems"].items():
        print(f"  {system:<42} attach {figures['attach_ms']:8.2f}   detach "
              f"{figures['detach_ms']:8.2f}")
    for system, why in ad["errors"].items():
        print(f"  {system:<42} not run: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
