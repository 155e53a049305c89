"""Overlay networks across hosts (issue 14) on the multi-host harness (tests/cluster.py):
three hosts, h1 and h2 on one segment (host-gw between them under `auto`), h3 behind the
router (VXLAN), a 3-member etcd. The tests run in order on one cluster and each leaves it as
the next expects: joined with a TTL of 5 s (the default is 15; the shorter one keeps the
lost-node tests short), `podnet` with a container on every host."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture()
TTL = 5
POOL = "10.77.0.0/16"


def _address(host: ClusterHost, container: str, network: str = "podnet") -> str:
    found = json.loads(host.netbay("inspect", container).stdout)[0]
    return str(found["NetworkSettings"]["Networks"][network]["IPAddress"])


def _ping(
    host: ClusterHost, container: str, target: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return host.netbay("exec", container, "--", "ping", "-c", "1", "-W", "2", *extra, target,
                       check=False)


# prints the source address of the first datagram to port 7000
UDP_SERVER = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.bind(('0.0.0.0', 7000)); s.settimeout(5); print(s.recvfrom(64)[1][0])")


def _udp_send(address: str) -> str:
    return ("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            f".sendto(b'x', ('{address}', 7000))")


def _nodes(host: ClusterHost) -> list[dict[str, object]]:
    listed = host.netbay("cluster", "nodes", "--format", "json").stdout
    return [json.loads(line) for line in listed.splitlines()]


def _tunnel_entries(host: ClusterHost) -> str:
    """The neighbours and FDB entries of HOST's overlay tunnels."""
    tunnels = re.findall(r"^(nbx\w+)", host.run(["ip", "-br", "link"]).stdout, re.M)
    return "\n".join(host.run(["sh", "-c", f"ip neigh show dev {t}; bridge fdb show dev {t}"])
                     .stdout for t in tunnels)


def _routes(host: ClusterHost) -> str:
    return host.run(["ip", "route", "show", "proto", "57"]).stdout


def test_bad_input_before_joining_changes_nothing(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    h1.start_daemon()
    before, record = h1.kernel_state(), cluster.record()
    made = h1.netbay("network", "create", "-d", "overlay", "podnet", check=False)
    assert made.returncode == 1
    assert made.stderr.strip() == ("Error: this node has not joined a cluster (netbay cluster "
                                   "join --etcd URL)")
    for verb in ("nodes", "status", "leave"):
        refused = h1.netbay("cluster", verb, check=False)
        assert refused.returncode == 1 and refused.stderr == made.stderr, verb
    started = time.monotonic()
    joined = h1.netbay("cluster", "join", "--etcd", "http://198.18.1.199:2379", check=False)
    assert time.monotonic() - started < 5.5
    assert joined.returncode == 1
    assert "198.18.1.199:2379" in joined.stderr and joined.stderr.count("\n") == 1
    assert not (h1.state / "cluster.json").exists()
    assert h1.kernel_state() == before and cluster.record() == record


def test_every_host_joins_and_lists_the_others(cluster: Cluster) -> None:
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in cluster.hosts:
        joined = host.netbay("cluster", "join", "--etcd", endpoints, "--ttl", str(TTL))
        assert joined.stdout.startswith(f"joined as {host.name} ({host.address}), node id ")
    again = cluster.hosts[0].netbay("cluster", "join", "--etcd", endpoints, check=False)
    assert again.returncode == 1 and "already joined a cluster as h1" in again.stderr
    nodes = [json.loads(line) for line in
             cluster.hosts[0].netbay("cluster", "nodes", "--format", "json").stdout.splitlines()]
    assert sorted((n["Name"], n["Address"], n["State"]) for n in nodes) == [
        (h.name, h.address, "ready") for h in cluster.hosts]
    status = json.loads(cluster.hosts[2].netbay("cluster", "status", "--format", "json").stdout)
    assert sorted(e["Url"] for e in status["Endpoints"] if e["Healthy"]) == sorted(
        cluster.etcd.endpoints)
    assert sum(e["Leader"] for e in status["Endpoints"]) == 1


def test_overlay_bad_input_is_one_line_and_changes_nothing(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    h1.netbay("network", "create", "-d", "overlay", "--subnet", "10.78.0.0/16", "-o", "vni=42",
              "other")
    before, record = h1.kernel_state(), cluster.record()
    for args, error in (
        (["--subnet", "10.78.128.0/17"], "subnet 10.78.128.0/17 overlaps global network other"),
        (["--subnet", "10.79.0.0/27", "-o", "subnet_size=28"],
         "invalid subnet '10.79.0.0/27': has room for 2 /28 subnets; the cluster has 3 nodes"),
        (["-o", "vni=42"], "VNI 42 is used by global network other"),
        (["-o", "backend=gre"], "invalid opt backend 'gre': expected one of vxlan, host-gw, auto"),
        (["-o", "mtu=9000"], "invalid opt 'mtu': unknown option for driver overlay"),
    ):
        made = h1.netbay("network", "create", "-d", "overlay", *args, "bad", check=False)
        assert made.returncode == 1, args
        assert made.stderr.strip().startswith("Error: ") and error in made.stderr, made.stderr
    assert h1.kernel_state() == before and cluster.record() == record
    h1.netbay("network", "rm", "other")


def test_every_host_lists_the_network_and_runs_a_container(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    h1.netbay("network", "create", "-d", "overlay", "--subnet", POOL, "podnet")
    for host in cluster.hosts:
        listed = host.netbay("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
        assert "podnet overlay global" in listed.stdout.splitlines()
        host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", "podnet", "--",
                    "sleep", "infinity")
    blocks = {IPv4Network(_address(h, f"c-{h.name}") + "/24", strict=False)
              for h in cluster.hosts}
    assert len(blocks) == 3 and all(b.subnet_of(IPv4Network(POOL)) for b in blocks)
    found = json.loads(h1.netbay("network", "inspect", "podnet").stdout)[0]
    assert found["Scope"] == "global" and found["IPAM"]["Config"] == [{"Subnet": POOL}]
    assert sorted(n["Node"] for n in found["Cluster"]["Nodes"]) == ["h1", "h2", "h3"]

    def remote_containers() -> dict[str, list[str]]:
        inspected = json.loads(h1.netbay("network", "inspect", "podnet").stdout)[0]
        return {n["Node"]: [c["Name"] for c in n["Containers"]]
                for n in inspected["Cluster"]["Nodes"]}

    # every node's containers: h1's own under Containers, the others' as they publish them
    wait_until(lambda: remote_containers() == {"h1": [], "h2": ["c-h2"], "h3": ["c-h3"]}, 10,
               "h2's and h3's containers in h1's inspect")
    assert [c["Name"] for c in found["Containers"].values()] == ["c-h1"]


def test_containers_reach_each_other_host_gw_on_a_segment_vxlan_across(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    c2, c3 = _address(h2, "c-h2"), _address(h3, "c-h3")
    wait_until(lambda: _ping(h1, "c-h1", c2).returncode == 0, 10, "c-h1 reaching c-h2")
    wait_until(lambda: _ping(h1, "c-h1", c3).returncode == 0, 10, "c-h1 reaching c-h3")
    assert _ping(h3, "c-h3", c2).returncode == 0
    block2 = str(IPv4Network(c2 + "/24", strict=False))
    block3 = str(IPv4Network(c3 + "/24", strict=False))
    routes = _routes(h1)
    assert f"{block2} via {h2.address} dev eth0" in routes  # same segment: host-gw
    assert re.search(rf"{block3} via \S+ dev nbx\w+ onlink", routes)  # across: VXLAN


def test_names_resolve_from_every_node(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    c2, c3 = _address(h2, "c-h2"), _address(h3, "c-h3")

    def resolved(host: ClusterHost, container: str, name: str) -> str:
        found = host.netbay("exec", container, "--", "getent", "hosts", name, check=False)
        return found.stdout.split()[0] if found.returncode == 0 else ""

    wait_until(lambda: resolved(h1, "c-h1", "c-h3") == c3, 10, "c-h3 resolved on h1")
    assert resolved(h1, "c-h1", "c-h2.podnet") == c2
    assert resolved(h3, "c-h3", "c-h2") == c2
    assert _ping(h3, "c-h3", "c-h1").returncode == 0  # by name, across the router


def test_containers_see_each_others_own_addresses(cluster: Cluster) -> None:
    h1, h3 = cluster.hosts[0], cluster.hosts[2]
    c1, c3 = _address(h1, "c-h1"), _address(h3, "c-h3")
    listening = h3.popen(h3.netbay_argv("exec", "c-h3", "--", "python3", "-c", UDP_SERVER))
    try:
        time.sleep(0.5)
        h1.netbay("exec", "c-h1", "--", "python3", "-c", _udp_send(c3))
        out, _ = listening.communicate(timeout=10)
    finally:
        listening.kill()
    assert out.strip() == c1  # no NAT between nodes


def test_egress_to_the_underlay_is_masqueraded_on_the_containers_node(
    cluster: Cluster,
) -> None:
    h1, h3 = cluster.hosts[0], cluster.hosts[2]
    listening = h3.popen(["python3", "-c", UDP_SERVER])  # on h3 itself, not in a container
    try:
        time.sleep(0.5)
        h1.netbay("exec", "c-h1", "--", "python3", "-c", _udp_send(h3.address))
        out, _ = listening.communicate(timeout=10)
    finally:
        listening.kill()
    assert out.strip() == h1.address  # left the overlay's subnet: NAT to the node's address


def test_a_published_port_answers_on_the_containers_node(cluster: Cluster) -> None:
    h1, h3 = cluster.hosts[0], cluster.hosts[2]
    h3.run_web("web-h3", "podnet", "8080:7001")
    try:
        assert h1.fetch(h3.address, 8080) == "from web-h3"
    finally:
        h3.netbay("rm", "-f", "web-h3")


def test_the_mtu_is_the_tunnels_and_a_df_ping_of_that_size_passes(cluster: Cluster) -> None:
    h1, h3 = cluster.hosts[0], cluster.hosts[2]
    c3 = _address(h3, "c-h3")
    link = h1.netbay("exec", "c-h1", "--", "ip", "-o", "link", "show", "eth0").stdout
    assert " mtu 1450 " in link
    largest = 1450 - 28  # IPv4 and ICMP headers
    assert _ping(h1, "c-h1", c3, "-M", "do", "-s", str(largest)).returncode == 0
    refused = _ping(h1, "c-h1", c3, "-M", "do", "-s", str(largest + 1))
    assert refused.returncode != 0 and "message too long" in refused.stdout + refused.stderr


def test_networks_stay_isolated_across_nodes(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    h1.netbay("network", "create", "-d", "overlay", "--subnet", "10.88.0.0/16", "othernet")
    h2.netbay("run", "-d", "--name", "o-h2", "--network", "othernet", "--", "sleep", "infinity")
    h1.netbay("network", "create", "--subnet", "10.99.0.0/24", "localnet")
    h1.netbay("run", "-d", "--name", "l-h1", "--network", "localnet", "--", "sleep", "infinity")
    try:
        wait_until(lambda: h1.netbay("network", "rm", "othernet", check=False).stderr.strip()
                   == "Error: network othernet has containers on nodes h2", 10,
                   "othernet's removal refused on h1 while h2 runs a container on it")
        c1 = _address(h1, "c-h1")
        assert _ping(h2, "c-h2", c1).returncode == 0  # the same network: reached
        assert _ping(h2, "o-h2", c1).returncode != 0  # another overlay network on another node
        assert _ping(h1, "l-h1", _address(h2, "c-h2")).returncode != 0  # a local network
    finally:
        h2.netbay("rm", "-f", "o-h2")
        h1.netbay("rm", "-f", "l-h1")
        h1.netbay("network", "rm", "localnet")
        h1.netbay("network", "rm", "othernet")


def test_a_killed_node_is_lost_its_routes_go_and_come_back_after_restart(
    cluster: Cluster,
) -> None:
    h1, h3 = cluster.hosts[0], cluster.hosts[2]
    c3 = _address(h3, "c-h3")
    block3 = str(IPv4Network(c3 + "/24", strict=False))
    mac = {n["Name"]: n["VtepMacs"] for n in _nodes(h1)}["h3"]["podnet"]
    assert f"lladdr {mac} PERMANENT" in _tunnel_entries(h1)
    h3.kill_daemon(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: block3 not in _routes(h1), TTL + 5, "h3's route gone from h1", interval=0.2)
    assert time.monotonic() - killed <= TTL + 2 + 1.0  # TTL + 2 s, and the poll's step
    assert mac not in _tunnel_entries(h1)  # its neighbour and FDB entries went with it
    assert {n["Name"]: n["State"] for n in _nodes(h1)}["h3"] == "lost"
    h3.start_daemon()  # the same node id: its block back, its container's address kept
    wait_until(lambda: block3 in _routes(h1), 10, "h3's route back on h1")
    assert _address(h3, "c-h3") == c3
    assert {n["Name"]: n["VtepMacs"] for n in _nodes(h1)}["h3"]["podnet"] == mac  # stable
    wait_until(lambda: _ping(h1, "c-h1", c3).returncode == 0, 10, "c-h1 reaching c-h3 again")


def test_a_node_whose_address_changes_is_reached_at_the_new_one(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    block2 = str(IPv4Network(_address(h2, "c-h2") + "/24", strict=False))
    old, new = h2.address, "198.18.1.22"
    # the added address takes over when the first goes (else it would go with it)
    h2.run(["sysctl", "-q", "net.ipv4.conf.eth0.promote_secondaries=1"])
    h2.run(["ip", "addr", "add", f"{new}/24", "dev", "eth0"])
    h2.run(["ip", "addr", "del", f"{old}/24", "dev", "eth0"])
    h2.run(["ip", "route", "replace", "default", "via", cluster.gateway("a")])
    try:
        wait_until(lambda: f"{block2} via {new} dev eth0" in _routes(h1), 12,
                   "h1's route to h2's block via h2's new address", interval=0.2)
        assert f"via {old} " not in _routes(h1)  # replaced, not added beside
        assert {n["Name"]: n["Address"] for n in _nodes(h1)}["h2"] == new
        wait_until(lambda: _ping(h1, "c-h1", _address(h2, "c-h2")).returncode == 0, 10,
                   "c-h1 reaching c-h2 at h2's new address")
    finally:
        h2.run(["ip", "addr", "add", f"{old}/24", "dev", "eth0"])
        h2.run(["ip", "addr", "del", f"{new}/24", "dev", "eth0"])
        h2.run(["ip", "route", "replace", "default", "via", cluster.gateway("a")])
    wait_until(lambda: f"{block2} via {old} dev eth0" in _routes(h1), 12,
               "h1's route to h2's block back via the old address", interval=0.2)


def test_deleted_entries_come_back_at_once_and_stale_ones_go_on_the_timer(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    block2 = str(IPv4Network(_address(h2, "c-h2") + "/24", strict=False))
    tunnel = re.search(r"dev (nbx\w+)", _routes(h1))
    assert tunnel, _routes(h1)
    neighbour = h1.run(["ip", "neigh", "show", "dev", tunnel.group(1), "nud", "permanent"])
    vtep = neighbour.stdout.split()[0]
    h1.run(["ip", "route", "del", block2])
    h1.run(["ip", "neigh", "del", vtep, "dev", tunnel.group(1)])
    # a deletion is noticed (netlink) and put back at once, not at the next timer sync
    wait_until(lambda: block2 in _routes(h1) and vtep in h1.run(
        ["ip", "neigh", "show", "dev", tunnel.group(1)]).stdout, 2,
               "the deleted route and neighbour back", interval=0.1)
    h1.run(["ip", "route", "add", "10.77.250.0/24", "via", h2.address, "proto", "57"])
    wait_until(lambda: "10.77.250.0" not in _routes(h1), 8,
               "the stale route gone on the timer", interval=0.2)


def test_the_data_plane_outlives_etcd_and_resyncs_when_it_is_back(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    c3 = _address(h3, "c-h3")
    cluster.etcd.stop_all()
    try:
        time.sleep(TTL + 1)  # longer than any lease: nothing may be torn down for it
        assert _ping(h1, "c-h1", c3).returncode == 0
        h1.netbay("run", "-d", "--name", "n-h1", "--network", "podnet", "--", "sleep",
                  "infinity")  # h1 holds its block: no etcd needed
        assert _ping(h1, "n-h1", c3).returncode == 0
        started = time.monotonic()  # a name no network has: refused at once, etcd or not
        typo = h1.netbay("run", "-d", "--network", "podnte", "--", "true", check=False)
        assert typo.returncode == 1 and "network podnte not found" in typo.stderr
        assert time.monotonic() - started < 3
    finally:
        cluster.etcd.start_all()
    h1.netbay("rm", "-f", "n-h1")
    wait_until(lambda: {n["State"] for n in _nodes(h2)} == {"ready"}, 20,
               "every node ready again", interval=0.5)
    assert _ping(h2, "c-h2", c3).returncode == 0


def test_a_cni_runtime_gets_cluster_wide_networking(cluster: Cluster, tmp_path: Path) -> None:
    h1, h3 = cluster.hosts[0], cluster.hosts[2]
    h1.netbay("cni", "install", "--dir", str(tmp_path))
    h1.run(["ip", "netns", "add", "pod1"])
    try:
        h1.run(["ip", "netns", "exec", "pod1", "ip", "link", "set", "lo", "up"])
        result = h1.cni(tmp_path, "ADD", "pod1", "podnet")
        ips = result["ips"]
        assert isinstance(ips, list) and len(ips) == 1
        address = str(ips[0]["address"]).split("/")[0]
        block = IPv4Network(_address(h1, "c-h1") + "/24", strict=False)
        assert IPv4Network(address).subnet_of(block)  # h1's block of podnet
        ping = h1.run(["ip", "netns", "exec", "pod1", "ping", "-c", "1", "-W", "2",
                       _address(h3, "c-h3")], check=False)
        assert ping.returncode == 0, ping.stdout
        assert _ping(h3, "c-h3", address).returncode == 0
        h1.cni(tmp_path, "DEL", "pod1", "podnet")
        assert _ping(h3, "c-h3", address).returncode != 0
    finally:
        h1.run(["ip", "netns", "del", "pod1"], check=False)


def test_killing_the_etcd_leader_is_invisible(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    cluster.etcd.kill(cluster.etcd.leader())
    try:
        made = h2.netbay("network", "create", "-d", "overlay", "--subnet", "10.66.0.0/16",
                         "afterleader")
        assert made.returncode == 0
        assert {n["State"] for n in _nodes(h1)} == {"ready"}
        assert _ping(h1, "c-h1", _address(h2, "c-h2")).returncode == 0
        h1.netbay("network", "rm", "afterleader")
    finally:
        cluster.etcd.start_all()


def test_leave_is_refused_while_containers_run_then_releases_everything(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    refused = h3.netbay("cluster", "leave", check=False)
    assert refused.returncode == 1 and "containers still use overlay networks podnet" in (
        refused.stderr)
    block3 = str(IPv4Network(_address(h3, "c-h3") + "/24", strict=False))
    h2.kill_daemon(signal.SIGKILL)  # h2 misses the leave (flannel's #2554: stale routes)
    h3.netbay("rm", "-f", "c-h3")
    h3.netbay("cluster", "leave")
    wait_until(lambda: block3 not in _routes(h1), 5, "h3's route gone from h1 after it left")
    assert block3 in _routes(h2)  # what h2's kernel had, kept while its daemon is down
    h2.start_daemon()
    wait_until(lambda: block3 not in _routes(h2), 10, "h3's route gone from h2 after restart",
               interval=0.2)
    assert [n["Name"] for n in _nodes(h1)] == ["h1", "h2"]
    assert "nbx" not in h3.run(["ip", "-br", "link"]).stdout
    assert not (h3.state / "cluster.json").exists()
