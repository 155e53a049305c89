"""Routed networks across hosts (issue 15) on the multi-host harness (tests/cluster.py): h1 and
h2 on one segment reach each other's blocks by BGP (BIRD on every node, plain routing), h3
behind the router by VXLAN (encap cross-subnet). The tests run in order on one cluster and
each leaves it as the next expects: joined, `calico` with a container on every host."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture()
TTL = 5
POOL = "10.88.0.0/16"


def _address(host: ClusterHost, container: str, network: str = "calico") -> str:
    found = json.loads(host.netbay("inspect", container).stdout)[0]
    return str(found["NetworkSettings"]["Networks"][network]["IPAddress"])


def _block(host: ClusterHost) -> str:
    return str(IPv4Network(_address(host, f"c-{host.name}") + "/26", strict=False))


def _ping(host: ClusterHost, container: str, target: str) -> bool:
    return host.netbay("exec", container, "--", "ping", "-c", "1", "-W", "2", target,
                       check=False).returncode == 0


def _bird_routes(host: ClusterHost) -> str:
    return host.run(["ip", "route", "show", "proto", "bird"]).stdout


def _bird_pid(host: ClusterHost) -> int:
    """BIRD's PID in HOST's PID namespace; 0 while none runs (between a death and a restart)."""
    try:
        return int((host.state / "bird" / "bird.pid").read_text().split()[0])
    except FileNotFoundError:
        return 0


def test_every_host_joins_and_a_routed_network_is_cluster_wide(cluster: Cluster) -> None:
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in cluster.hosts:
        host.start_daemon()
        host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address,
                    "--ttl", str(TTL))
    h1 = cluster.hosts[0]
    h1.netbay("network", "create", "-d", "routed", "--subnet", POOL, "calico")
    for host in cluster.hosts:
        listed = host.netbay("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
        assert "calico routed global" in listed.stdout.splitlines()
        host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", "calico", "--",
                    "sleep", "infinity")
    blocks = {_block(h) for h in cluster.hosts}
    assert len(blocks) == 3 and all(IPv4Network(b).subnet_of(IPv4Network(POOL)) for b in blocks)


def test_a_container_has_a_32_the_link_local_gateway_and_no_bridge(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    inside = h1.netbay("exec", "c-h1", "--", "sh", "-c", "ip -4 -o addr show dev eth0; "
                       "ip route").stdout
    address = _address(h1, "c-h1")
    assert f"inet {address}/32 " in inside
    assert "default via 169.254.1.1 dev eth0" in inside
    assert "169.254.1.1 dev eth0" in inside
    assert "bridge" not in h1.run(["ip", "-d", "link", "show", "type", "bridge"]).stdout
    host_routes = h1.run(["ip", "route", "show", "proto", "57"]).stdout
    assert re.search(rf"^{re.escape(address)} dev nbv\w+ ", host_routes, re.M), host_routes
    assert f"blackhole {_block(h1)} proto 57" in h1.run(["ip", "route"]).stdout


def test_same_subnet_by_bgp_and_other_subnets_by_vxlan(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    c2, c3 = _address(h2, "c-h2"), _address(h3, "c-h3")
    wait_until(lambda: f"{_block(h2)} via {h2.address} dev eth0" in _bird_routes(h1), 20,
               "h2's block learned by BGP on h1")
    assert f"{_block(h1)} via {h1.address} dev eth0" in _bird_routes(h2)
    assert _block(h3) not in _bird_routes(h1)  # another subnet: not BGP's
    assert re.search(rf"{_block(h3)} via \S+ dev nbx\w+ onlink",
                     h1.run(["ip", "route", "show", "proto", "57"]).stdout)
    assert _ping(h1, "c-h1", c2)
    wait_until(lambda: _ping(h1, "c-h1", c3), 10, "c-h1 reaching c-h3")
    assert _ping(h3, "c-h3", c2)
    assert _ping(h2, "c-h2", _address(h1, "c-h1"))


def _tcpdump(host: ClusterHost, expression: str, action: Callable[[], object]) -> list[str]:
    """The packets matching EXPRESSION on HOST's underlay while ACTION ran three times (the
    capture ends by itself: a signal to nsenter would not reach tcpdump inside)."""
    dump = host.popen(["timeout", "-s", "INT", "8", "tcpdump", "-l", "-n", "-i", "eth0",
                       expression])
    try:
        assert dump.stderr is not None
        said = ""
        while "listening on eth0" not in said:  # tcpdump captures from this line on
            line = dump.stderr.readline()
            assert line, f"tcpdump did not start: {said}"
            said += line
        for _ in range(3):
            action()
        out, _ = dump.communicate(timeout=15)
    finally:
        dump.kill()
    return [line for line in out.splitlines() if " IP " in line]


def test_the_capture_shows_no_vxlan_on_the_segment_and_only_vxlan_across(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    c1, c2, c3 = _address(h1, "c-h1"), _address(h2, "c-h2"), _address(h3, "c-h3")
    to_h2 = lambda: _ping(h1, "c-h1", c2)  # noqa: E731
    to_h3 = lambda: _ping(h1, "c-h1", c3)  # noqa: E731
    plain = _tcpdump(h1, f"icmp and host {c2}", to_h2)
    assert sum(f"{c1} > {c2}: ICMP echo request" in line for line in plain) == 3, plain
    assert _tcpdump(h1, "udp port 4789", to_h2) == []
    tunnelled = _tcpdump(h1, "udp port 4789", to_h3)
    assert sum(f"{h1.address}." in line and f"> {h3.address}.4789: VXLAN" in line
               for line in tunnelled) == 3, tunnelled
    assert _tcpdump(h1, "icmp", to_h3) == []  # nothing of it unencapsulated on the underlay


def test_bird_killed_is_restarted_and_the_routes_stay(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    pid = _bird_pid(h1)
    h1.run(["kill", "-KILL", str(pid)])  # the PID file's number is in h1's PID namespace
    wait_until(lambda: _bird_pid(h1) not in (0, pid), 10, "bird restarted on h1")
    assert f"{_block(h2)} via {h2.address}" in _bird_routes(h1)  # kept while it restarted
    assert _ping(h1, "c-h1", _address(h2, "c-h2"))


# prints the source address of the first datagram to port 7000
UDP_SERVER = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.bind(('0.0.0.0', 7000)); s.settimeout(5); print(s.recvfrom(64)[1][0])")


def _udp_send(address: str) -> list[str]:
    return ["python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            f".sendto(b'x', ('{address}', 7000))"]


def _source_seen(receiver: ClusterHost, listen: list[str], sender: ClusterHost,
                 send: list[str]) -> str:
    listening = receiver.popen(listen)
    try:
        time.sleep(0.5)
        sender.netbay(*send)
        out, _ = listening.communicate(timeout=10)
    finally:
        listening.kill()
    return out.strip()


def test_nodes_see_containers_own_addresses_and_egress_is_masqueraded(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    c1, c2 = _address(h1, "c-h1"), _address(h2, "c-h2")
    in_c2 = h2.netbay_argv("exec", "c-h2", "--", "python3", "-c", UDP_SERVER)
    assert _source_seen(h2, in_c2, h1, ["exec", "c-h1", "--", *_udp_send(c2)]) == c1
    on_h3 = ["python3", "-c", UDP_SERVER]  # h3 itself: outside the network's pool
    assert _source_seen(h3, on_h3, h1, ["exec", "c-h1", "--", *_udp_send(h3.address)]) \
        == h1.address


# prints the MSS its peer's SYN left it (TCP_MAXSEG: less 12 bytes of timestamps), then
# how many bytes arrived
MSS_SERVER = ("import socket; s = socket.create_server(('0.0.0.0', 7002)); s.settimeout(5); "
              "c = s.accept()[0]; print(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)); "
              "n = 0\nwhile (d := c.recv(65536)): n += len(d)\nprint(n)")


def _mss_and_bytes(sender: ClusterHost, receiver: ClusterHost) -> tuple[int, int]:
    """A megabyte from SENDER's container to RECEIVER's: the receiver's MSS and the bytes."""
    client = ("import socket; c = socket.create_connection(("
              f"'{_address(receiver, 'c-' + receiver.name)}', 7002), 5); "
              "c.sendall(b'x' * 1000000); c.close()")
    listen = receiver.netbay_argv("exec", f"c-{receiver.name}", "--", "python3", "-c",
                                  MSS_SERVER)
    mss, received = _source_seen(receiver, listen, sender,
                                 ["exec", f"c-{sender.name}", "--", "python3", "-c",
                                  client]).split()
    return int(mss), int(received)


def test_the_veths_carry_the_underlays_mtu_and_the_tunnel_is_fitted_on_the_host(
    cluster: Cluster,
) -> None:
    """encap cross-subnet: full-size packets to a node of this subnet (plain routing); into
    the tunnel, TCP's MSS is clamped at the SYN and a larger packet is told the tunnel's MTU
    by the container's own host."""
    h1, h2, h3 = cluster.hosts
    link = h1.netbay("exec", "c-h1", "--", "ip", "-o", "link", "show", "eth0").stdout
    assert " mtu 1500 " in link
    for host in cluster.hosts:  # no path MTU the containers learnt before (its SYN says it)
        host.netbay("exec", f"c-{host.name}", "--", "ip", "route", "flush", "cache")
    assert _mss_and_bytes(h1, h2) == (1500 - 40 - 12, 1000000)
    assert _mss_and_bytes(h1, h3) == (1450 - 40 - 12, 1000000)  # h1 clamped c-h1's SYN
    assert _mss_and_bytes(h3, h1) == (1450 - 40 - 12, 1000000)  # h3 clamped c-h3's
    c2, c3 = _address(h2, "c-h2"), _address(h3, "c-h3")
    assert h1.ping_unfragmented("c-h1", c2, 1500 - 28).returncode == 0
    too_big = h1.ping_unfragmented("c-h1", c3, 1500 - 28)
    assert too_big.returncode != 0
    assert re.search(r"mtu ?= ?1450", too_big.stdout + too_big.stderr), too_big
    assert h1.ping_unfragmented("c-h1", c3, 1450 - 28).returncode == 0


def test_a_published_port_answers_on_the_containers_node(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    h1.run_web("web-h1", "calico", "8080:7001")
    try:
        assert h2.fetch(h1.address, 8080) == "from web-h1"
    finally:
        h1.netbay("rm", "-f", "web-h1")


def test_a_published_port_answers_the_networks_own_containers_on_its_node_and_others(
    cluster: Cluster,
) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    h1.run_web("web-pool", "calico", "8081:7001")
    try:
        assert h1.fetch(h1.address, 8081, container="c-h1") == "from web-pool"
        assert h2.fetch(h1.address, 8081, container="c-h2") == "from web-pool"
    finally:
        h1.netbay("rm", "-f", "web-pool")


def test_a_new_container_in_a_held_block_is_reachable_from_every_node_at_once(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    h2.netbay("run", "-d", "--name", "late-h2", "--network", "calico", "--", "sleep",
              "infinity")
    try:
        late = _address(h2, "late-h2")
        assert IPv4Network(late).subnet_of(IPv4Network(_block(h2)))  # the block h2 holds
        # no wait, no retry: the block's route is there already, on both paths
        assert _ping(h1, "c-h1", late)
        assert _ping(h3, "c-h3", late)
    finally:
        h2.netbay("rm", "-f", "late-h2")


def test_a_new_block_is_reachable_within_2_s_and_networks_stay_apart(
    cluster: Cluster,
) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    h1.netbay("network", "create", "-d", "routed", "--subnet", "10.89.0.0/16", "other")
    try:
        h1.netbay("run", "-d", "--name", "o-h1", "--network", "other", "--", "sleep",
                  "infinity")
        h2.netbay("run", "-d", "--name", "o-h2", "--network", "other", "--", "sleep",
                  "infinity")
        started = time.monotonic()
        target = _address(h2, "o-h2", "other")
        block = str(IPv4Network(target + "/26", strict=False))
        wait_until(lambda: f"{block} via {h2.address}" in _bird_routes(h1), 5,
                   "h2's new block on h1", interval=0.05)
        took = time.monotonic() - started
        assert took < 2.0, took  # announced by BGP as soon as it is held
        assert _ping(h1, "o-h1", target)
        assert not _ping(h1, "c-h1", target)  # calico's container: another network
        assert not _ping(h2, "o-h2", _address(h1, "c-h1"))
    finally:
        for host, name in ((h1, "o-h1"), (h2, "o-h2")):
            host.netbay("rm", "-f", name, check=False)
        wait_until(lambda: h1.netbay("network", "rm", "other", check=False).returncode == 0,
                   10, "other removed")


def test_a_node_whose_block_is_full_claims_another_until_the_pool_is_full(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    # four /30 blocks of one container each
    h1.netbay("network", "create", "-d", "routed", "--subnet", "10.90.0.0/28", "-o",
              "block_size=30", "small")
    made = [(h2, "s1-h2"), (h2, "s2-h2"), (h1, "s-h1"), (h3, "s-h3")]
    try:
        for host, name in made:
            host.netbay("run", "-d", "--name", name, "--network", "small", "--", "sleep",
                        "infinity")
        held = re.findall(r"^blackhole (10\.90\.\S+) proto 57", h2.run(["ip", "route"]).stdout,
                          re.M)
        first, second = _address(h2, "s1-h2", "small"), _address(h2, "s2-h2", "small")
        blocks = [str(IPv4Network(f"{a}/30", strict=False)) for a in (first, second)]
        assert sorted(held) == sorted(blocks) and blocks[0] != blocks[1], held
        for block in blocks:  # both announced by BGP, both tunnelled to h3
            wait_until(lambda b=block: f"{b} via {h2.address}" in _bird_routes(h1), 5,
                       f"h2's block {block} on h1", interval=0.05)
        assert _ping(h1, "s-h1", second)
        wait_until(lambda: _ping(h3, "s-h3", second), 10, "s-h3 reaching s2-h2")
        before = cluster.record(), h2.kernel_state()
        full = h2.netbay("run", "-d", "--name", "s3-h2", "--network", "small", "--", "sleep",
                         "infinity", check=False)
        assert full.returncode != 0
        assert full.stderr.strip().splitlines()[-1].endswith(
            "global network small (10.90.0.0/28) has no free /30 left: all 4 are held"), \
            full.stderr
        assert (cluster.record(), h2.kernel_state()) == before
    finally:
        for host, name in made:
            host.netbay("rm", "-f", name, check=False)
        wait_until(lambda: h1.netbay("network", "rm", "small", check=False).returncode == 0,
                   10, "small removed")
    # h2's share goes when it sees the network gone: every block's blackhole with it
    wait_until(lambda: "10.90.0." not in h2.run(["ip", "route"]).stdout, 10,
               "h2's blocks released")


def test_a_lost_node_is_withdrawn_and_its_routes_come_back_when_it_does(
    cluster: Cluster,
) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    route = f"{_block(h2)} via {h2.address}"
    cluster.partition(h2)
    try:
        lost = time.monotonic()
        wait_until(lambda: route not in _bird_routes(h1), TTL + 10, "h2's block withdrawn on h1",
                   interval=0.2)
        assert time.monotonic() - lost <= TTL + 3  # etcd's TTL, then BIRD drops the session
    finally:
        cluster.heal(h2)
    wait_until(lambda: route in _bird_routes(h1), 15, "h2's block back on h1")
    assert _ping(h1, "c-h1", _address(h2, "c-h2"))


def test_a_rebooted_node_has_its_routes_back_in_seconds(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    bird = _bird_pid(h2)
    h2.kill_daemon(signal.SIGKILL)
    h2.run(["kill", "-KILL", str(bird)])
    h2.run(["ip", "route", "flush", "proto", "bird"])  # what a reboot loses
    assert _block(h1) not in _bird_routes(h2)
    started = time.monotonic()
    h2.start_daemon()
    wait_until(lambda: f"{_block(h1)} via {h1.address}" in _bird_routes(h2), 20,
               "h1's block back on h2")
    back = time.monotonic() - started
    assert back < 15, f"routes back after {back:.1f} s"  # BIRD's 240 s wait: minutes
    wait_until(lambda: _ping(h2, "c-h2", _address(h1, "c-h1")), 10, "c-h2 reaching c-h1")


def test_a_cni_runtime_gets_a_routed_pod(cluster: Cluster, tmp_path: Path) -> None:
    h1, h2, h3 = cluster.hosts
    h1.netbay("cni", "install", "--dir", str(tmp_path))
    h1.run(["ip", "netns", "add", "pod1"])
    try:
        result = h1.cni(tmp_path, "ADD", "pod1", "calico")
        [ip] = result["ips"]
        address = str(ip["address"]).split("/")[0]
        assert str(ip["address"]).endswith("/32") and ip["gateway"] == "169.254.1.1"
        assert IPv4Network(address).subnet_of(IPv4Network(_block(h1)))
        inside = h1.run(["ip", "netns", "exec", "pod1", "ip", "route"]).stdout
        assert "default via 169.254.1.1 dev eth0" in inside
        for host in (h2, h3):  # by BGP, and through the tunnel
            assert _ping(host, f"c-{host.name}", address)
        h1.cni(tmp_path, "DEL", "pod1", "calico")
        assert not _ping(h2, "c-h2", address)
    finally:
        h1.run(["ip", "netns", "del", "pod1"], check=False)


def test_names_resolve_from_every_node_through_the_blocks_gateway(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    c2, c3 = _address(h2, "c-h2"), _address(h3, "c-h3")

    def resolved(name: str) -> str:
        found = h1.netbay("exec", "c-h1", "--", "getent", "hosts", name, check=False)
        return found.stdout.split()[0] if found.returncode == 0 else ""

    wait_until(lambda: resolved("c-h3") == c3, 10, "c-h3 resolved on h1")
    assert resolved("c-h2") == c2
    gateway = str(IPv4Network(_block(h1))[1])
    resolv = h1.netbay("exec", "c-h1", "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {gateway}" in resolv.splitlines()
    held = h1.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"]).stdout
    assert f"inet {gateway}/32 scope host lo" in held
    # scope host: the host still reaches its containers from its own address, not that one
    towards = h1.run(["ip", "route", "get", _address(h1, "c-h1")]).stdout
    assert f" src {gateway} " not in towards, towards
    assert not re.search(rf"^{re.escape(gateway)} ", _bird_routes(h2), re.M)  # the block only


def _doctor_rp_filter(host: ClusterHost) -> dict[str, str]:
    found = json.loads(host.netbay("doctor", "--format", "json", check=False).stdout)
    return next(f for f in found if f["check"] == "rp_filter routed")


def test_doctor_reports_a_loose_rp_filter_on_routed_veths(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    assert _doctor_rp_filter(h1)["status"] == "ok"
    before = h1.run(["sysctl", "-n", "net.ipv4.conf.all.rp_filter"]).stdout.strip()
    h1.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"])
    try:
        found = _doctor_rp_filter(h1)
        assert found["status"] == "warn"
        assert found["message"].startswith("net.ipv4.conf.all.rp_filter makes reverse-path "
                                           "filtering loose on nbv")
    finally:
        h1.run(["sysctl", "-qw", f"net.ipv4.conf.all.rp_filter={before}"])


def test_bad_input_is_one_line_and_changes_nothing(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    before, record = h1.kernel_state(), cluster.record()
    for args, error in (
        (["--subnet", "10.90.0.0/24", "-o", "block_size=20"],
         "invalid opt block_size '20': out of range 24-30"),
        (["-o", "block_size=31"], "invalid opt block_size '31': out of range 8-30"),
        (["-o", "asn=0"], "invalid opt asn '0': out of range 1-4294967295"),
        (["-o", "asn=4294967296"], "invalid opt asn '4294967296': out of range 1-4294967295"),
        (["-o", "asn=65001"], "asn 65001: the cluster's routed networks use AS 64512 "
                              "(network calico); a node has one"),
        (["-o", "encap=ipip"],
         "invalid opt encap 'ipip': expected one of cross-subnet, always, never"),
        (["--subnet", POOL], f"subnet {POOL} overlaps network calico ("),  # h1's share
    ):
        made = h1.netbay("network", "create", "-d", "routed", *args, "bad", check=False)
        assert made.returncode == 1, args
        assert made.stderr.startswith(f"Error: {error}") and made.stderr.count("\n") == 1, \
            made.stderr
    assert h1.kernel_state() == before and cluster.record() == record


def test_without_bird_a_routed_network_is_refused_in_one_line(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    h1.kill_daemon(signal.SIGTERM)
    saved = h1.environ.get("PATH", "")
    h1.environ["PATH"] = "/usr/bin:/bin"  # the daemon's: no /usr/sbin, so no bird
    try:
        h1.start_daemon()
        h1.environ["PATH"] = saved
        before, record = h1.kernel_state(), cluster.record()
        made = h1.netbay("network", "create", "-d", "routed", "bad", check=False)
        assert made.returncode == 1
        assert made.stderr.strip() == ("Error: invalid driver 'routed': needs BIRD 2 (bird not "
                                       "found): install Debian's bird2 (scripts/install.sh "
                                       "--cluster)")
        assert h1.kernel_state() == before and cluster.record() == record
    finally:
        h1.kill_daemon(signal.SIGTERM)
        h1.environ["PATH"] = saved
        h1.start_daemon()
    wait_until(lambda: _ping(h1, "c-h1", _address(cluster.hosts[1], "c-h2")), 20,
               "c-h1 reaching c-h2 after the restarts")
