"""The firewall on bridge networks, with real packets: egress NAT, isolation, internal
networks, port publishing (from the LAN, the host, other containers, hairpin), host-IP
binding, anti-spoofing, restoration after `nft flush ruleset`."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import PROBE, Env, Lan, api_get, sh, snapshot, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

SERVE = [
    "sh",
    "-c",
    f"{sys.executable} {PROBE} udp-serve 80 & exec {sys.executable} {PROBE} tcp-serve 80",
]


def start(env: Env, name: str, network: str, *extra: str) -> str:
    env.run(
        "run", "-d", "--name", name, "--hostname", name, "--network", network, *extra, "--", *SERVE
    )
    return ip_of(env, name, network)


def ip_of(env: Env, name: str, network: str) -> str:
    return str(env.json("inspect", name)[0]["NetworkSettings"]["Networks"][network]["IPAddress"])


def pid_of(env: Env, name: str) -> int:
    return env.host_pid(int(env.json("inspect", name)[0]["State"]["Pid"]))


def in_ns(env: Env, who: str, lan: Lan, *cmd: str) -> list[str]:
    """argv running CMD as WHO: a container (by name), "host" or "lan"."""
    if who == "host":
        return list(cmd)
    if who == "lan":
        return lan.argv(*cmd)
    return ["nsenter", "-t", str(pid_of(env, who)), "-n", *cmd]


def probe(argv: list[str]) -> tuple[bool, str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    return result.returncode == 0, result.stdout.strip()


def wait_listening(argv: list[str]) -> None:
    wait_until(lambda: probe(argv)[0], 10, f"an answer from {argv}", interval=0.1)


@pytest.fixture
def world(env: Env, lan: Lan) -> dict[str, str]:
    """3 networks (one internal) x 2 containers, the host and a LAN machine that routes the
    container subnets through the host (the hole Docker closed in 28.0)."""
    env.run("network", "create", "--subnet", "10.91.0.0/24", "neta")
    env.run("network", "create", "--subnet", "10.92.0.0/24", "netb")
    env.run("network", "create", "--internal", "--subnet", "10.93.0.0/24", "neti")
    addresses = {}
    for net, names in (("neta", ("a1", "a2")), ("netb", ("b1", "b2")), ("neti", ("i1", "i2"))):
        for name in names:
            addresses[name] = start(env, name, net)
    addresses["host"] = "198.51.100.1"
    addresses["lan"] = "198.51.100.2"
    lan.sh(
        "ip route add 10.91.0.0/16 via 198.51.100.1 && ip route add 10.92.0.0/16 via 198.51.100.1"
        " && ip route add 10.93.0.0/16 via 198.51.100.1"
    )
    lan.serve("tcp-serve", 80)
    host_server = subprocess.Popen([sys.executable, PROBE, "tcp-serve", "80"])
    env.cleanups.append(lambda: (host_server.kill(), host_server.wait()))
    for name in ("a1", "a2", "b1", "b2", "i1", "i2"):
        wait_listening(in_ns(env, "host", lan, sys.executable, PROBE, "tcp", addresses[name], "80"))
    wait_listening(lan.argv(sys.executable, PROBE, "tcp", "198.51.100.2", "80"))
    return addresses


# Who reaches whom. Containers reach their own network, the host's addresses and (unless
# internal) the LAN; internal containers have no route beyond their network; the host reaches
# every container over the bridges; the LAN reaches the host but no container.
NODES = ("a1", "a2", "b1", "b2", "i1", "i2", "host", "lan")
REACHABLE = {
    "a1": {"a2", "host", "lan"},
    "a2": {"a1", "host", "lan"},
    "b1": {"b2", "host", "lan"},
    "b2": {"b1", "host", "lan"},
    "i1": {"i2"},
    "i2": {"i1"},
    "host": {"a1", "a2", "b1", "b2", "i1", "i2", "lan"},
    "lan": {"host"},
}


def test_isolation_matrix_tcp_and_icmp(env: Env, lan: Lan, world: dict[str, str]) -> None:
    pairs = [(s, d) for s in NODES for d in NODES if s != d]

    def attempt(pair: tuple[str, str], kind: str) -> bool:
        src, dst = pair
        cmd = (
            ["ping", "-c", "1", "-W", "1", world[dst]]
            if kind == "icmp"
            else [sys.executable, PROBE, "tcp", world[dst], "80", "1"]
        )
        return probe(in_ns(env, src, lan, *cmd))[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for kind in ("tcp", "icmp"):
            kinds = [kind] * len(pairs)
            got = dict(zip(pairs, pool.map(attempt, pairs, kinds), strict=True))
            expected = {(s, d): d in REACHABLE[s] for s, d in pairs}
            wrong = {p: got[p] for p in pairs if got[p] != expected[p]}
            assert wrong == {}, f"{kind}: unexpected reachability (pair: reached?) {wrong}"


def test_egress_is_masqueraded_to_the_host_address(
    env: Env, lan: Lan, world: dict[str, str]
) -> None:
    ok, answer = probe(in_ns(env, "a1", lan, sys.executable, PROBE, "tcp", "198.51.100.2", "80"))
    assert ok and answer.endswith("saw 198.51.100.1")


def test_masquerade_off_and_fixed_snat_address(env: Env, lan: Lan) -> None:
    sh("ip addr add 198.51.100.9/24 dev ext0")
    env.run(
        "network",
        "create",
        "--subnet",
        "10.95.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "plain",
    )
    env.run(
        "network",
        "create",
        "--subnet",
        "10.96.0.0/24",
        "-o",
        "com.docker.network.host_ipv4=198.51.100.9",
        "fixed",
    )
    start(env, "p1", "plain")
    start(env, "f1", "fixed")
    lan.serve("tcp-serve", 81)
    lan.sh("ip route add 10.95.0.0/24 via 198.51.100.1")
    wait_listening(lan.argv(sys.executable, PROBE, "tcp", "198.51.100.2", "81"))
    ok, answer = probe(in_ns(env, "p1", lan, sys.executable, PROBE, "tcp", "198.51.100.2", "81"))
    assert ok and answer.endswith("saw 10.95.0.2"), answer
    ok, answer = probe(in_ns(env, "f1", lan, sys.executable, PROBE, "tcp", "198.51.100.2", "81"))
    assert ok and answer.endswith("saw 198.51.100.9"), answer


def test_icc_off_blocks_containers_of_one_network_but_not_the_host(env: Env, lan: Lan) -> None:
    env.run(
        "network",
        "create",
        "--subnet",
        "10.97.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "quiet",
    )
    ip1, ip2 = start(env, "q1", "quiet"), start(env, "q2", "quiet")
    wait_listening([sys.executable, PROBE, "tcp", ip2, "80"])
    assert not probe(in_ns(env, "q1", lan, sys.executable, PROBE, "tcp", ip2, "80", "1"))[0]
    assert not probe(in_ns(env, "q2", lan, "ping", "-c1", "-W1", ip1))[0]
    assert probe([sys.executable, PROBE, "tcp", ip1, "80"])[0]


def test_published_ports_reach_the_container_from_everywhere(env: Env, lan: Lan) -> None:
    env.run("network", "create", "--subnet", "10.98.0.0/24", "web")
    env.run("network", "create", "--subnet", "10.99.0.0/24", "other")
    sh("ip link set lo up")
    start(
        env,
        "srv",
        "web",
        "-p",
        "8080:80",
        "-p",
        "8081:80/udp",
        "-p",
        "127.0.0.1:8082:80",
        "-p",
        "198.51.100.1:8083:80",
    )
    start(env, "peer", "other")
    ports = env.run("port", "srv").stdout.splitlines()
    assert ports == [
        "80/tcp -> 0.0.0.0:8080",
        "80/tcp -> 127.0.0.1:8082",
        "80/tcp -> 198.51.100.1:8083",
        "80/udp -> 0.0.0.0:8081",
    ]
    tcp = [sys.executable, PROBE, "tcp"]
    wait_listening([*tcp, "198.51.100.1", "8080"])
    # from the LAN machine, by the host's address
    assert probe(lan.argv(*tcp, "198.51.100.1", "8080"))[1].startswith("srv saw 198.51.100.2")
    assert probe(lan.argv(sys.executable, PROBE, "udp", "198.51.100.1", "8081"))[0]
    assert probe(lan.argv(*tcp, "198.51.100.1", "8083"))[0]
    # from the host: its address and 127.0.0.1
    assert probe([*tcp, "198.51.100.1", "8080"])[0]
    assert probe([*tcp, "127.0.0.1", "8080"])[0]
    assert probe([*tcp, "127.0.0.1", "8082"])[0]
    assert not probe([*tcp, "127.0.0.1", "8083", "1"])[0]
    # from another container (another network) and from itself (hairpin)
    assert probe(in_ns(env, "peer", lan, *tcp, "198.51.100.1", "8080"))[0]
    assert probe(in_ns(env, "srv", lan, *tcp, "198.51.100.1", "8080"))[0]


def test_loopback_binding_is_not_reachable_from_a_neighbour_routing_127_via_us(
    env: Env, lan: Lan
) -> None:
    env.run("network", "create", "--subnet", "10.98.0.0/24", "web")
    sh("ip link set lo up")
    ip = start(env, "srv", "web", "-p", "127.0.0.1:8082:80")
    wait_listening([sys.executable, PROBE, "tcp", "127.0.0.1", "8082"])
    # The LAN machine sends to 127.0.0.1 through the host, and to the container directly.
    lan.sh(
        "ip addr flush dev lo; sysctl -qw net.ipv4.conf.all.route_localnet=1 "
        "net.ipv4.conf.lan0.route_localnet=1; ip route add 127.0.0.0/8 via 198.51.100.1 dev lan0;"
        " ip route add 10.98.0.0/24 via 198.51.100.1"
    )
    assert not probe(lan.argv(sys.executable, PROBE, "tcp", "127.0.0.1", "8082", "1"))[0]
    assert not probe(lan.argv(sys.executable, PROBE, "tcp", ip, "80", "1"))[0]
    assert not probe(lan.argv(sys.executable, PROBE, "udp", ip, "80", "0.3"))[0]


def test_removal_unpublishes_at_once_and_the_port_can_be_reused(env: Env, lan: Lan) -> None:
    env.run("network", "create", "--subnet", "10.98.0.0/24", "web")
    start(env, "old", "web", "-p", "8080:80/udp", "-p", "8090:80")
    udp = lan.argv(sys.executable, PROBE, "udp", "198.51.100.1", "8080")
    wait_listening(udp)
    assert probe(udp)[1].startswith("old saw")
    env.run("rm", "-f", "old")
    assert not probe(lan.argv(sys.executable, PROBE, "tcp", "198.51.100.1", "8090", "1"))[0]
    start(env, "new", "web", "-p", "8080:80/udp")
    wait_listening(udp)
    assert probe(udp)[1].startswith("new saw")


def test_spoofed_sources_are_dropped_at_the_bridge(env: Env, lan: Lan) -> None:
    env.run("network", "create", "--subnet", "10.98.0.0/24", "web")
    start(env, "victim", "web")
    ip = start(env, "liar", "web")
    victim = ip_of(env, "victim", "web")
    tcp = [sys.executable, PROBE, "tcp", victim, "80", "1"]
    assert probe(in_ns(env, "liar", lan, *tcp))[0]
    liar = ["nsenter", "-t", str(pid_of(env, "liar")), "-n"]

    def readdress(address: str) -> None:
        subprocess.run([*liar, "ip", "addr", "flush", "dev", "eth0"], check=True)
        subprocess.run([*liar, "ip", "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
        subprocess.run([*liar, "ip", "neigh", "flush", "all"], check=True)

    # a new address on eth0: its packets carry a source the container does not own
    readdress("10.98.0.200")
    assert not probe(in_ns(env, "liar", lan, *tcp))[0]
    # back to its own address: fine again; then a new MAC: dropped too
    readdress(ip)
    assert probe(in_ns(env, "liar", lan, *tcp))[0]
    subprocess.run([*liar, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:99"], check=True)
    subprocess.run([*liar, "ip", "neigh", "flush", "all"], check=True)
    assert not probe(in_ns(env, "liar", lan, *tcp))[0]


def test_firewall_is_restored_after_nft_flush_ruleset(env: Env, lan: Lan) -> None:
    env.run("network", "create", "--subnet", "10.98.0.0/24", "web")
    start(env, "srv", "web", "-p", "8080:80")
    tcp = lan.argv(sys.executable, PROBE, "tcp", "198.51.100.1", "8080")
    wait_listening(tcp)
    before = sh("nft -j list table inet netbay").stdout
    sh("nft flush ruleset")
    # the reconciler saw netbay's tables go and rebuilt them from its record (quicker than a
    # probe's process starts: whether the flush broke the port cannot be watched)
    wait_until(lambda: api_get(env.paths, "/system/audit")[1]["Reconciler"]["Repairs"].get(
        "firewall") == 1, 2, "netbay's tables rebuilt")
    wait_listening(tcp)
    assert _elements(sh("nft -j list table inet netbay").stdout) == _elements(before)
    sh("nft flush ruleset")
    env.run("system", "reload")
    assert probe(tcp)[0]


def _elements(listing: str) -> dict[str, object]:
    out = {}
    for item in json.loads(listing)["nftables"]:
        body = item.get("set") or item.get("map")
        if body:
            out[body["name"]] = body.get("elem", [])
    return out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-p", "70000:80"), "invalid publish '70000:80': port 70000 out of range 1-65535"),
        (("-p", "8080:80:90:1"), "invalid publish '8080:80:90:1'"),
        (("-p", "80/icmp"), "invalid publish '80/icmp': unknown protocol 'icmp'"),
        (("-p", "8080:80"), "invalid publish 8080/tcp: host port already published"),
        (
            ("-p", "127.0.0.1:8080:80"),
            "invalid publish 127.0.0.1:8080/tcp: host port already published",
        ),
        (("--network", "neti", "-p", "81"), "invalid publish '81': needs a bridge network"),
    ],
)
def test_bad_publish_is_refused_and_nothing_changes(
    env: Env, args: tuple[str, ...], message: str
) -> None:
    env.run("network", "create", "--subnet", "10.98.0.0/24", "web")
    env.run("network", "create", "--internal", "--subnet", "10.93.0.0/24", "neti")
    env.run("run", "-d", "--name", "srv", "--network", "web", "-p", "8080:80", "--", "sleep", "inf")
    before = snapshot(env.paths), sh("nft list ruleset").stdout
    if "--network" not in args:
        args = ("--network", "web", *args)
    result = env.run("run", "-d", *args, "--", "sleep", "inf", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: {message}"] or message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (snapshot(env.paths), sh("nft list ruleset").stdout) == before
