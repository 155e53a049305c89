"""The real Docker engine on netbay's plugin vs Docker's own bridge driver (issue 16's
benchmarks). Not a test. As root, after scripts/install.sh --test:

    .venv/bin/python benchmarks/docker_engine.py [--runs N] [--ports N]

One dockerd 20.10 with its defaults (docker0, iptables, docker-proxy for published ports),
on a host of its own (tests/docker_env.py DockerHost: network, mount and PID namespaces,
its netbayd serving the plugin), so both drivers run on the same engine in the same run:
1. `docker run --rm --network X busybox true`, median of RUNS, X a user-defined network of
   Docker's bridge driver, of netbay's plugin, and `none` (the engine's own floor).
2. `docker network create` + `docker network rm`, median of RUNS each.
3. PORTS published ports on one `docker run -d`: the time it takes, `docker rm -f`'s, and
   what each driver left running for them (docker-proxy processes, iptables rules; netbay:
   nftables map elements). One run.
The two drivers alternate run by run, so machine noise falls on both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from docker_env import IMAGE, DockerHost, missing  # noqa: E402

Json = dict[str, Any]
NETBAY = ("-d", "netbay", "--ipam-driver", "netbay")
# driver label -> `docker network create` arguments; the subnets are the sandbox's own
DRIVERS = {"docker bridge": ("--subnet", "10.81.0.0/24"),
           "netbay plugin": (*NETBAY, "--subnet", "10.82.0.0/24")}
FIRST_PORT = 20000


def timed_ms(call: Callable[..., object], *args: str) -> float:
    start = time.perf_counter()
    call(*args)
    return (time.perf_counter() - start) * 1000


def drivers(host: DockerHost) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The drivers that can run on HOST, and why the others cannot."""
    why = host.plugin_missing
    usable = {label: args for label, args in DRIVERS.items()
              if why is None or label != "netbay plugin"}
    return usable, ({} if why is None else {"netbay plugin": why})


def run_rm(host: DockerHost, usable: dict[str, tuple[str, ...]], runs: int) -> Json:
    """Label -> ms of each `docker run --rm --network X busybox true`."""
    networks = {label: f"bench-{index}" for index, label in enumerate(usable)}
    for label, args in usable.items():
        host.docker("network", "create", *args, networks[label])
    samples: dict[str, list[float]] = {label: [] for label in [*usable, "none"]}
    for _ in range(runs):
        for label in samples:
            network = networks.get(label, "none")
            samples[label].append(timed_ms(host.docker, "run", "--rm", "--network", network,
                                           IMAGE, "true"))
    for network in networks.values():
        host.docker("network", "rm", network)
    return samples


def create_rm(host: DockerHost, usable: dict[str, tuple[str, ...]], runs: int) -> Json:
    """Label -> {"create": [ms...], "rm": [ms...]}."""
    samples: Json = {label: {"create": [], "rm": []} for label in usable}
    for index in range(runs):
        for label, args in usable.items():
            name = f"cr-{index}"
            samples[label]["create"].append(timed_ms(host.docker, "network", "create", *args,
                                                     name))
            samples[label]["rm"].append(timed_ms(host.docker, "network", "rm", name))
    return samples


def left_for_ports(host: DockerHost) -> Json:
    """What programs published ports now: docker-proxy processes, iptables rules naming
    a DNAT, elements of netbay's publishing maps."""
    processes = host.run(["ps", "-eo", "comm"]).stdout.split()
    rules = [line for line in host.run(["iptables-save", "-t", "nat"]).stdout.splitlines()
             if line.startswith("-A") and "DNAT" in line]
    nft = host.run(["nft", "list", "ruleset"]).stdout
    return {"docker_proxy": processes.count("docker-proxy"), "iptables_dnat": len(rules),
            "nft_port_lines": sum(f"{FIRST_PORT}" in line for line in nft.splitlines())}


def publish(host: DockerHost, usable: dict[str, tuple[str, ...]], ports: int) -> Json:
    """Label -> run ms, rm ms and what was left running, for PORTS ports on one container."""
    last = FIRST_PORT + ports - 1
    out: Json = {}
    for index, (label, args) in enumerate(usable.items()):
        network = f"pub-{index}"
        host.docker("network", "create", *args, network)
        run_ms = timed_ms(host.docker, "run", "-d", "--name", "pub", "--network", network,
                          "-p", f"{FIRST_PORT}-{last}:{FIRST_PORT}-{last}", IMAGE, "sleep",
                          "1000")
        running = left_for_ports(host)
        rm_ms = timed_ms(host.docker, "rm", "-f", "pub")
        host.docker("network", "rm", network)
        out[label] = {"run_ms": run_ms, "rm_ms": rm_ms, **running}
    return out


def run(runs: int = 20, ports: int = 100, progress: Callable[[str], None] = print) -> Json:
    """Every figure of this benchmark as JSON-able data."""
    why = missing()
    if why:
        return {"error": why}
    load_before = os.getloadavg()[0]  # the machine is shared: the figures say how busy it was
    with tempfile.TemporaryDirectory(prefix="netbay-bench-docker-") as work, \
            DockerHost("bench", Path(work) / "host", engine=()) as host:
        usable, not_run = drivers(host)
        progress(f"docker_engine: docker run --rm, {runs} runs per network")
        runs_ms = run_rm(host, usable, runs)
        progress(f"docker_engine: network create + rm, {runs} runs per driver")
        networks_ms = create_rm(host, usable, runs)
        progress(f"docker_engine: {ports} published ports on one docker run")
        published = publish(host, usable, ports)
    return {"runs": runs, "ports": ports, "not_run": not_run, "run_rm_ms": runs_ms,
            "load": [load_before, os.getloadavg()[0]],
            "network_ms": networks_ms, "publish": published}


def render(page: Any, data: Json, images: Path) -> None:
    """This section of docs/benchmarks.md (render.py calls it; PAGE a render.Page)."""
    from render import median, ms, ratio, table

    runs = data["run_rm_ms"]
    bridge, plugin = "docker bridge", "netbay plugin"
    page.add(
        "One dockerd 20.10 (Debian's) with its defaults (docker0, iptables, docker-proxy for "
        "published ports) on a host of its own (tests/docker_env.py: network, mount and PID "
        "namespaces, its netbayd serving the plugin), so both drivers run on the same engine "
        "in the same run, alternating; `none` is the engine's floor (no network at all). "
        "Every figure includes the docker client's start (~40 ms). The machine is shared: "
        f"its 1-minute load average was {data['load'][0]:.1f} at the start and "
        f"{data['load'][1]:.1f} at the end (2 cores).",
        table(["`docker run --rm --network X busybox true`", f"median ms of {data['runs']}"],
              ([label, ms(median(samples))] for label, samples in runs.items())),
        table(["driver", "`network create` ms", "`network rm` ms"],
              ([label, ms(median(samples["create"])), ms(median(samples["rm"]))]
               for label, samples in data["network_ms"].items())),
        table([f"{data['ports']} ports on one `docker run -d -p`", "run ms", "`rm -f` ms",
               "docker-proxy processes", "iptables DNAT rules"],
              ([label, ms(f["run_ms"]), ms(f["rm_ms"]), str(f["docker_proxy"]),
                str(f["iptables_dnat"])] for label, f in data["publish"].items())),
    )
    if bridge in data["publish"] and plugin in data["publish"]:
        page.add(f"Publishing {data['ports']} ports: netbay "
                 f"{ratio(data['publish'][bridge]['run_ms'], data['publish'][plugin]['run_ms'])}"
                 " faster than Docker's bridge driver at `docker run`.")
    for label, why in data["not_run"].items():
        page.add(f"**{label} not measured**: {why}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ports", type=int, default=100)
    args = parser.parse_args()
    result = run(args.runs, args.ports)
    if result.get("error"):
        print(f"not run: {result['error']}")
        return 1
    median = statistics.median
    print(f"== docker run --rm --network X busybox true (median of {args.runs}, ms)")
    for label, samples in result["run_rm_ms"].items():
        print(f"  {label:<14} {median(samples):8.1f}")
    print(f"== docker network create + rm (median of {args.runs}, ms)")
    for label, samples in result["network_ms"].items():
        print(f"  {label:<14} create {median(samples['create']):8.1f}   "
              f"rm {median(samples['rm']):8.1f}")
    print(f"== {args.ports} published ports on one docker run (one run)")
    for label, figures in result["publish"].items():
        print(f"  {label:<14} run {figures['run_ms']:8.1f} ms   rm {figures['rm_ms']:8.1f} ms"
              f"   docker-proxy {figures['docker_proxy']}   iptables DNAT "
              f"{figures['iptables_dnat']}")
    for label, reason in result["not_run"].items():
        print(f"  {label}: not run: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
