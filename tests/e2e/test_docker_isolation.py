"""The firewall's isolation matrix (tests/e2e/test_firewall.py) for networks the real dockerd
made through netbay's plugin: two networks and an internal one, two containers on each, the
Docker host and a LAN machine routing the containers' subnets through it. Every pair is tried
over TCP and ICMP from inside its source's network namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from docker_env import IMAGE, DockerHost, docker_host_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

PROBE = str(Path(__file__).resolve().parents[1] / "netprobe.py")
HOST, LAN = "198.51.100.1", "198.51.100.2"
NETWORKS = {"da": ("10.81.0.0/24", ()), "db": ("10.82.0.0/24", ()),
            "di": ("10.83.0.0/24", ("--internal",))}
CONTAINERS = {"a1": "da", "a2": "da", "b1": "db", "b2": "db", "i1": "di", "i2": "di"}
NODES = (*CONTAINERS, "host", "lan")
# as for netbay's own networks: a network's containers reach each other, the host and (unless
# internal) the LAN; the host reaches every container; the LAN reaches the host, no container
REACHABLE = {
    "a1": {"a2", "host", "lan"}, "a2": {"a1", "host", "lan"},
    "b1": {"b2", "host", "lan"}, "b2": {"b1", "host", "lan"},
    "i1": {"i2"}, "i2": {"i1"},
    "host": {"a1", "a2", "b1", "b2", "i1", "i2", "lan"},
    "lan": {"host"},
}

docker_host = docker_host_fixture()


def _pid(host: DockerHost, container: str) -> int:
    return int(json.loads(host.docker("inspect", container).stdout)[0]["State"]["Pid"])


def _enter(host: DockerHost, who: str) -> list[str]:
    """The prefix that runs a command in WHO's network namespace, inside the Docker host."""
    if who == "host":
        return []
    if who == "lan":
        return ["ip", "netns", "exec", "client"]
    return ["nsenter", "-t", str(_pid(host, who)), "-n"]


def _serve(host: DockerHost, who: str) -> int:
    """A TCP server on port 80 in WHO's namespace; its PID (in the Docker host)."""
    started = host.run(["sh", "-c", f"{' '.join(_enter(host, who))} python3 {PROBE} "
                                    "tcp-serve 80 >/dev/null 2>&1 & echo $!"])
    return int(started.stdout)


@pytest.fixture(scope="module")
def world(docker_host: DockerHost) -> Iterator[dict[str, str]]:
    host = docker_host
    if host.plugin_missing:
        pytest.skip(host.plugin_missing)
    for name, (subnet, extra) in NETWORKS.items():
        host.docker("network", "create", "-d", "netbay", "--ipam-driver", "netbay",
                    "--subnet", subnet, *extra, name)
    routes = " && ".join(f"ip -n client route add {s} via {HOST}" for s, _ in NETWORKS.values())
    host.run(["sh", "-c", f"""set -e
        ip netns add client
        ip link add ext0 type veth peer name eth0 netns client
        ip addr add {HOST}/24 dev ext0; ip link set ext0 up
        ip -n client addr add {LAN}/24 dev eth0; ip -n client link set eth0 up
        ip -n client link set lo up; {routes}"""])
    servers: list[int] = []
    try:
        addresses = {"host": HOST, "lan": LAN}
        for name, network in CONTAINERS.items():
            host.docker("run", "-d", "--name", name, "--network", network, IMAGE,
                        "sleep", "1000")
            inspected = json.loads(host.docker("inspect", name).stdout)[0]
            addresses[name] = inspected["NetworkSettings"]["Networks"][network]["IPAddress"]
        servers = [_serve(host, who) for who in NODES]
        for who in NODES:  # every server answers the host, which reaches them all
            wait_until(lambda w=who: _reaches(host, "host", addresses[w], "tcp"), 10,
                       f"{who}'s server listening")
        yield addresses
    finally:
        host.run(["kill", *map(str, servers)], check=False)
        host.docker("rm", "-f", *CONTAINERS, check=False)
        host.run(["ip", "netns", "del", "client"], check=False)
        host.run(["ip", "link", "del", "ext0"], check=False)
        for name in NETWORKS:
            host.docker("network", "rm", name, check=False)


def _reaches(host: DockerHost, source: str, address: str, kind: str) -> bool:
    probe = (["ping", "-c", "1", "-W", "1", address] if kind == "icmp"
             else ["python3", PROBE, "tcp", address, "80", "1"])
    return host.run([*_enter(host, source), *probe], check=False).returncode == 0


def test_isolation_matrix_of_docker_made_networks(
    docker_host: DockerHost, world: dict[str, str]
) -> None:
    pairs = [(s, d) for s in NODES for d in NODES if s != d]
    for kind in ("tcp", "icmp"):
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = dict(zip(pairs, pool.map(
                lambda pair, k=kind: _reaches(docker_host, pair[0], world[pair[1]], k), pairs),
                strict=True))
        wrong = {p: got[p] for p in pairs if got[p] != (p[1] in REACHABLE[p[0]])}
        assert wrong == {}, f"{kind}: unexpected reachability (pair: reached?) {wrong}"
