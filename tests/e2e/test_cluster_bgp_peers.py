"""External BGP peers and route reflectors (issue 15) on the multi-host harness
(tests/cluster.py) with four hosts: h1, h2 and h4 on segment a, h3 behind the router on b. The
router runs a BIRD of the test's own as a top-of-rack switch (AS 65000) that the nodes peer
with (`netbay cluster bgp peer add`): it learns every node's block, and a client behind it
reaches the containers by their own addresses. Then h2 becomes a route reflector: the mesh
goes, every node peers with h2 only, and the routes and the traffic stay. The tests run in
order on one cluster; each leaves it as the next expects."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture(hosts=4)
TTL = 5
POOL = "10.87.0.0/16"
TOR_ASN = 65000
CLIENT = "198.18.99.1"  # the client behind the router: an address of the router's own
CONVERGED = 40  # seconds: a reconfigured session restarts after BIRD's connect delay (5 s)


def _address(host: ClusterHost) -> str:
    found = json.loads(host.netbay("inspect", f"c-{host.name}").stdout)[0]
    return str(found["NetworkSettings"]["Networks"]["calico"]["IPAddress"])


def _block(host: ClusterHost) -> str:
    return str(IPv4Network(_address(host) + "/26", strict=False))


def _bird_routes(host: ClusterHost) -> str:
    return host.run(["ip", "route", "show", "proto", "bird"]).stdout


def _birdc(host: ClusterHost, *command: str) -> str:
    return host.run(["birdc", "-s", str(host.state / "bird" / "bird.ctl"), *command]).stdout


def _config(host: ClusterHost) -> str:
    path = host.state / "bird" / "bird.conf"
    return path.read_text() if path.exists() else ""


def _sessions(host: ClusterHost, kind: str = "mesh") -> list[str]:
    """The BGP sessions of KIND in HOST's bird.conf, by neighbour address."""
    return re.findall(rf"^protocol bgp {kind}_(\S+) {{", _config(host), re.M)


def _dotted(*hosts: ClusterHost) -> list[str]:
    return sorted(h.address.replace(".", "_") for h in hosts)


def _ping(host: ClusterHost, target: str) -> bool:
    return host.netbay("exec", f"c-{host.name}", "--", "ping", "-c", "1", "-W", "2", target,
                       check=False).returncode == 0


def _tor_routes(cluster: Cluster) -> str:
    return cluster.router.sh("ip route show proto bird")


def _tor_config(cluster: Cluster, directory: Path) -> str:
    """A top-of-rack BIRD: eBGP with every node from its side of the router, everything
    learned into the router's kernel, nothing announced."""
    lines = [f'log "{directory / "tor.log"}" all;', f"router id {cluster.gateway('a')};",
             "protocol device {", "}", "protocol kernel {",
             "  ipv4 { import none; export all; };", "}"]
    for host in cluster.hosts:
        lines += [f"protocol bgp {host.name} {{",
                  f"  local {cluster.gateway(host.segment)} as {TOR_ASN};",
                  f"  neighbor {host.address} as 64512;", "  connect delay time 1;",
                  "  ipv4 { import all; export none; };", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tor(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The router's BIRD (its control socket), killed by its PID at the end."""
    directory = tmp_path_factory.mktemp("tor")
    (directory / "bird.conf").write_text(_tor_config(cluster, directory))
    socket = directory / "bird.ctl"
    bird = cluster.router_popen(["bird", "-f", "-c", str(directory / "bird.conf"), "-s",
                                 str(socket)])
    try:
        wait_until(socket.exists, 10, "the router's BIRD listening")
        yield socket
    finally:
        os.kill(bird.pid, signal.SIGTERM)
        try:
            bird.wait(10)
        except subprocess.TimeoutExpired:
            bird.kill()
            bird.wait(5)


def test_every_host_joins_and_runs_a_container_on_a_routed_network(cluster: Cluster) -> None:
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in cluster.hosts:
        host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address,
                    "--ttl", str(TTL))
    h1, h2, h3, h4 = cluster.hosts
    h1.netbay("network", "create", "-d", "routed", "--subnet", POOL, "calico")
    for host in cluster.hosts:
        host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", "calico", "--",
                    "sleep", "infinity")
    wait_until(lambda: all(f"{_block(p)} via {p.address} dev eth0" in _bird_routes(h1)
                           for p in (h2, h4)), CONVERGED, "the full mesh's routes on h1")
    assert _sessions(h1) == _dotted(h2, h4)  # same subnet only: h3 is behind VXLAN
    assert _sessions(h3) == []


def test_bad_input_is_one_line_and_changes_nothing(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    before, record = h1.kernel_state(), cluster.record()
    config = _config(h1)
    for args, error in (
        (["peer", "add", "--address", "198.18.1.1", "--asn", "0"],
         "invalid asn 0: out of range 1-4294967295"),
        (["peer", "add", "--address", "198.18.1.1", "--asn", "4294967296"],
         "invalid asn 4294967296: out of range 1-4294967295"),
        (["peer", "add", "--address", "tor1", "--asn", "65000"],
         "invalid peer address 'tor1': not an IPv4 address"),
        (["peer", "add", "--address", "198.18.2.1", "--asn", "65000"],
         "invalid peer address '198.18.2.1': not on any network of this node's interfaces "
         "(198.18.1.0/24)"),
        (["peer", "add", "--address", "198.18.2.1", "--asn", "65000", "--node", "h1"],
         "invalid peer address '198.18.2.1': not on any network of this node's interfaces "
         "(198.18.1.0/24)"),
        (["peer", "add", "--address", "198.18.1.12", "--asn", "65000"],
         "invalid peer address '198.18.1.12': node h2's address: the nodes peer with each "
         "other by themselves"),
        (["peer", "add", "--address", "198.18.1.1", "--asn", "65000", "--node", "h9"],
         "invalid node 'h9': no such node in the cluster"),
        (["peer", "rm", "--address", "198.18.1.1"], "no BGP peer 198.18.1.1 for every node"),
        (["reflector", "h9"], "invalid node 'h9': no such node in the cluster"),
        (["reflector", "h2", "--remove"], "node h2 is not a route reflector"),
    ):
        refused = h1.netbay("cluster", "bgp", *args, check=False)
        assert refused.returncode == 1, args
        assert refused.stderr == f"Error: {error}\n", args
    assert h1.kernel_state() == before and cluster.record() == record
    assert _config(h1) == config


def test_a_top_of_rack_router_learns_every_block(cluster: Cluster, tor: Path) -> None:
    h1, h2, h3, h4 = cluster.hosts
    for host in (h1, h2, h4):
        added = h1.netbay("cluster", "bgp", "peer", "add", "--address", "198.18.1.1",
                          "--asn", str(TOR_ASN), "--node", host.name)
        assert added.stdout == f"peering with 198.18.1.1 (AS 65000) on node {host.name}\n"
    h1.netbay("cluster", "bgp", "peer", "add", "--address", "198.18.2.1", "--asn",
              str(TOR_ASN), "--node", "h3")  # h3's to check: it is on h3's segment
    again = h1.netbay("cluster", "bgp", "peer", "add", "--address", "198.18.1.1", "--asn",
                      "65001", "--node", "h2", check=False)
    assert again.returncode == 1
    assert again.stderr == "Error: BGP peer 198.18.1.1 exists already for node h2\n"
    listed = [json.loads(line) for line in
              h3.netbay("cluster", "bgp", "peer", "ls", "--format", "json").stdout.splitlines()]
    assert sorted((p["Address"], p["ASN"], p["Node"]) for p in listed) == [
        ("198.18.1.1", 65000, "h1"), ("198.18.1.1", 65000, "h2"), ("198.18.1.1", 65000, "h4"),
        ("198.18.2.1", 65000, "h3")]
    assert _sessions(h1, "peer") == ["198_18_1_1"]  # h1 applied its own at once
    wait_until(lambda: all(f"{_block(h)} via {h.address} dev eth-{h.segment}"
                           in _tor_routes(cluster) for h in cluster.hosts), CONVERGED,
               "every node's block in the router's kernel, via that node")
    shown = cluster.router.sh(f"birdc -s {tor} show route")
    assert all(_block(h) in shown for h in cluster.hosts), shown
    assert _sessions(h3, "peer") == ["198_18_2_1"]


def _received_from_client(cluster: Cluster, host: ClusterHost) -> str:
    """What a UDP receiver in HOST's container reports as the source of a datagram that the
    client behind the router sent to the container's own address."""
    server = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.bind(('0.0.0.0', 7000)); s.settimeout(8); print(s.recvfrom(64)[1][0])")
    send = ("import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.bind(('{CLIENT}', 0))\nfor _ in range(10):\n"
            f"    s.sendto(b'x', ('{_address(host)}', 7000)); time.sleep(0.3)\n")
    listening = host.popen(host.netbay_argv("exec", f"c-{host.name}", "--", "python3", "-c",
                                            server))
    try:
        time.sleep(0.5)
        cluster.router.sh(f"python3 -c \"{send}\"")
        out, _ = listening.communicate(timeout=15)
    finally:
        listening.kill()
    return out.strip()


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> Iterator[str]:
    """CLIENT on the router's loopback: a machine whose route to the containers is the
    router's BGP routes, and the nodes' way back their default route."""
    cluster.router.ip("link set lo up", f"addr add {CLIENT}/32 dev lo")
    try:
        yield CLIENT
    finally:
        cluster.router.ip(f"addr del {CLIENT}/32 dev lo")


def test_a_client_behind_the_router_reaches_containers_by_their_own_addresses(
    cluster: Cluster, tor: Path, client: str,
) -> None:
    for host in (cluster.hosts[0], cluster.hosts[2]):  # one on each segment
        assert _received_from_client(cluster, host) == client, host.name  # no NAT either way


def test_a_peer_another_node_cannot_reach_is_logged_there_and_left_out(
    cluster: Cluster,
) -> None:
    h1, h2 = cluster.hosts[:2]
    h1.netbay("cluster", "bgp", "peer", "add", "--address", "198.18.2.1", "--asn", "65000",
              "--node", "h2")
    log = h2.state / "netbayd.log"
    wait_until(lambda: "bgp: external peer 198.18.2.1 (AS 65000) left out on this node: not on "
               "any network of this node's interfaces (198.18.1.0/24)" in log.read_text(), 15,
               "h2 logging the peer it cannot reach")
    assert _sessions(h2, "peer") == ["198_18_1_1"]
    removed = h1.netbay("cluster", "bgp", "peer", "rm", "--address", "198.18.2.1", "--node", "h2")
    assert removed.stdout == "no longer peering with 198.18.2.1 on node h2\n"
    assert all(p["Node"] != "h2" or p["Address"] != "198.18.2.1" for p in (
        json.loads(line) for line in
        h1.netbay("cluster", "bgp", "peer", "ls", "--format", "json").stdout.splitlines()))


def test_a_route_reflector_replaces_the_mesh_and_the_routes_stay(
    cluster: Cluster, tor: Path, client: str,
) -> None:
    h1, h2, h3, h4 = cluster.hosts
    made = h1.netbay("cluster", "bgp", "reflector", "h2")
    assert made.stdout == "h2 is a route reflector\n"
    assert h3.netbay("cluster", "bgp", "reflector", "--format", "{{.Name}}").stdout == "h2\n"
    for host in (h1, h3, h4):
        wait_until(lambda host=host: _sessions(host) == _dotted(h2), 15,
                   f"{host.name} peering with the reflector only")
    wait_until(lambda: _sessions(h2) == _dotted(h1, h3, h4), 15, "h2 taking every node")
    assert _config(h2).count("  rr client;") == 3
    # h4's block reflected to h1 with h4's own address as the next hop: direct on the segment
    wait_until(lambda: f"{_block(h4)} via {h4.address} dev eth0" in _bird_routes(h1),
               CONVERGED, "h4's block on h1 through the reflector")
    assert f"{_block(h2)} via {h2.address} dev eth0" in _bird_routes(h1)
    # h3's block reaches h1 through the reflector too, but VXLAN carries it: not installed
    wait_until(lambda: _block(h3) in _birdc(h1, "show", "route"), CONVERGED,
               "h3's block reflected to h1")
    assert _block(h3) not in _bird_routes(h1)
    assert re.search(rf"^{re.escape(_block(h3))} via \S+ dev nbx\w+ .*onlink",
                     h1.run(["ip", "route", "show", "proto", "57"]).stdout, re.M)
    assert _block(h1) not in _bird_routes(h3) and _block(h4) not in _bird_routes(h3)
    established = _birdc(h1, "show", "protocols")
    assert re.search(rf"^mesh_{_dotted(h2)[0]}\s+BGP\s.*Established", established, re.M)
    for source, target in ((h1, h4), (h1, h3), (h3, h1), (h4, h2)):
        assert _ping(source, _address(target)), (source.name, target.name)
    assert _received_from_client(cluster, h4) == client


def test_without_reflectors_the_full_mesh_is_back(cluster: Cluster) -> None:
    h1, h2, h3, h4 = cluster.hosts
    removed = h1.netbay("cluster", "bgp", "reflector", "h2", "--remove")
    assert removed.stdout == "h2 is no route reflector any more\n"
    wait_until(lambda: _sessions(h1) == _dotted(h2, h4) and _sessions(h3) == [], 15,
               "the mesh back on h1 and h3")
    wait_until(lambda: f"{_block(h4)} via {h4.address} dev eth0" in _bird_routes(h1),
               CONVERGED, "h4's block on h1 from h4 itself")
    assert _ping(h1, _address(h4)) and _ping(h1, _address(h3))
