"""Cluster networks dual stack (issue 17) on the multi-host harness with an IPv6 underlay
(tests/cluster.py, ipv6=True): h1 and h2 on segment a, h3 behind the router on b, every
host with an IPv4 and an IPv6 underlay address. An overlay network carries IPv6 between h1
and h2 by host-gw (a route via the peer's IPv6 address) and to h3 through the VXLAN tunnel
over the IPv4 underlay; a routed network carries it by BGP (BIRD's ipv6 channel over the
IPv4 session) on the segment and by VXLAN across. The tests run in order on one cluster."""

from __future__ import annotations

import json
import re
import time
from ipaddress import IPv6Address, IPv6Network

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture(ipv6=True)
TTL = 5
OVERLAY6 = "fd97:1::/48"
ROUTED6 = "fd98:1::/48"


def _addresses(host: ClusterHost, container: str, network: str) -> tuple[str, str]:
    found = json.loads(host.netbay("inspect", container).stdout)[0]
    settings = found["NetworkSettings"]["Networks"][network]
    return str(settings["IPAddress"]), str(settings["GlobalIPv6Address"])


def _ping6(host: ClusterHost, container: str, target: str) -> bool:
    return host.netbay("exec", container, "--", "ping", "-6", "-c", "1", "-W", "2", target,
                       check=False).returncode == 0


def _routes6(host: ClusterHost) -> str:
    return host.run(["ip", "-6", "route", "show"]).stdout


def _block6(address: str, size: int) -> str:
    return str(IPv6Network(f"{address}/{size}", strict=False))


def _record_value(cluster: Cluster, kind: str, name: str) -> str:
    """The value of KIND/NAME in etcd, as cluster.record() shows it (leases left out)."""
    found = [v for k, v in cluster.record() if k.endswith(f"/{kind}/{name}")]
    assert len(found) == 1, (kind, name)
    return found[0]


def test_every_host_joins_with_its_ipv6_address(cluster: Cluster) -> None:
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in cluster.hosts:
        host.netbay("cluster", "join", "--etcd", endpoints, "--ttl", str(TTL))
    nodes = [json.loads(line) for line in
             cluster.hosts[0].netbay("cluster", "nodes", "--format", "json").stdout.splitlines()]
    ids = {n["Name"]: n["Id"] for n in nodes}
    for host in cluster.hosts:
        record = _record_value(cluster, "nodes", str(ids[host.name]))
        assert f'"address":"{host.address}","address6":"{host.address6}"' in record, record
    assert sorted((n["Name"], n["Address6"]) for n in nodes) == [
        (h.name, h.address6) for h in cluster.hosts]


def test_dual_stack_bad_input_is_one_line_and_changes_nothing(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    h1.netbay("network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.96.0.0/16",
              "--subnet", "fd96:1::/48", "other6")
    before, record = h1.kernel_state(), cluster.record()
    for driver, args, error in (
        ("overlay", ["--ipv6", "--ipv4=false"], "a cluster-wide network needs IPv4"),
        ("overlay", ["--subnet", "fd95:1::/48", "--subnet", "fd95:2::/48"],
         "a cluster-wide network has one subnet of each address family"),
        ("overlay", ["--subnet", "fd96:1::/40"], "overlaps global network other6"),
        ("overlay", ["--ipv6", "-o", "subnet_size6=60"], "subnet_size6"),
        ("routed", ["--ipv6", "-o", "block_size6=127"], "block_size6"),
        ("overlay", ["--ipv6", "--subnet", "10.95.0.0/16", "--subnet", "fd96:1:0:2::/64"],
         "overlaps global network other6"),
    ):
        made = h1.netbay("network", "create", "-d", driver, *args, "bad", check=False)
        assert made.returncode == 1, args
        assert made.stderr.count("\n") == 1 and made.stderr.startswith("Error: "), made.stderr
        assert error in made.stderr, made.stderr
    assert h1.kernel_state() == before and cluster.record() == record
    h1.netbay("network", "rm", "other6")


def test_an_overlay_network_carries_ipv6_by_host_gw_and_vxlan(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    h1.netbay("network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.97.0.0/16",
              "--subnet", OVERLAY6, "podnet6")
    for host in cluster.hosts:
        host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", "podnet6", "--",
                    "sleep", "infinity")
    found = {h.name: _addresses(h, f"c-{h.name}", "podnet6") for h in cluster.hosts}
    blocks = {name: _block6(v6, 64) for name, (_, v6) in found.items()}
    assert len(set(blocks.values())) == 3
    assert all(IPv6Network(b).subnet_of(IPv6Network(OVERLAY6)) for b in blocks.values())
    inside = h1.netbay("exec", "c-h1", "--", "ip", "-6", "route", "show", "default").stdout
    assert f"via {IPv6Network(blocks['h1'])[1]} dev eth0" in inside
    wait_until(lambda: f"{blocks['h2']} via {h2.address6} dev eth0 proto 57" in _routes6(h1),
               15, "h2's IPv6 block by host-gw on h1")
    tunnel = re.compile(rf"{re.escape(blocks['h3'])} via {IPv6Network(blocks['h3'])[0]} "
                        r"dev nbx\w+ proto 57 .*onlink")
    wait_until(lambda: tunnel.search(_routes6(h1)) is not None, 15,
               "h3's IPv6 block through the tunnel on h1")
    for source, target in (("h1", "h2"), ("h1", "h3"), ("h3", "h2"), ("h2", "h1")):
        host = next(h for h in cluster.hosts if h.name == source)
        wait_until(lambda h=host, s=source, t=target: _ping6(h, f"c-{s}", found[t][1]), 10,
                   f"c-{source} reaching c-{target} over IPv6")
    assert h1.netbay("exec", "c-h1", "--", "ping", "-c", "1", "-W", "2",
                     found["h3"][0]).returncode == 0


def test_the_vxlan_carries_ipv6_inside_ipv4(cluster: Cluster) -> None:
    """A capture on h3's underlay: the ping from c-h1 arrives as UDP to the VXLAN port over
    IPv4, never as IPv6 on the wire."""
    h1, _, h3 = cluster.hosts
    target = _addresses(h3, "c-h3", "podnet6")[1]
    capture = h3.popen(["tcpdump", "-nli", "eth0", "-c", "1", "--immediate-mode",
                        "udp and (port 4789 or port 8472)"])
    try:
        wait_until(lambda: _ping6(h1, "c-h1", target) and capture.poll() is not None, 10,
                   "a VXLAN datagram on h3's underlay")
        out = capture.stdout.read() if capture.stdout else ""
    finally:
        if capture.poll() is None:
            capture.kill()
        capture.wait()
    assert f"IP {cluster.hosts[0].address}." in out and "VXLAN" in out, out
    assert "IP6 " in out and "ICMP6" in out, out


def test_names_answer_aaaa_across_hosts(cluster: Cluster) -> None:
    h1, _, h3 = cluster.hosts
    c3 = _addresses(h3, "c-h3", "podnet6")[1]

    def resolved() -> str:
        found = h1.netbay("exec", "c-h1", "--", "getent", "ahostsv6", "c-h3", check=False)
        return found.stdout.split()[0] if found.returncode == 0 else ""

    wait_until(lambda: resolved() == c3, 15, "c-h3's AAAA on h1")


def test_a_routed_network_carries_ipv6_by_bgp_and_vxlan(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    h1.netbay("network", "create", "-d", "routed", "--ipv6", "--subnet", "10.98.0.0/16",
              "--subnet", ROUTED6, "calico6")
    for host in cluster.hosts:
        host.netbay("run", "-d", "--name", f"r-{host.name}", "--network", "calico6", "--",
                    "sleep", "infinity")
    found = {h.name: _addresses(h, f"r-{h.name}", "calico6") for h in cluster.hosts}
    blocks = {name: _block6(v6, 122) for name, (_, v6) in found.items()}
    assert all(IPv6Network(b).subnet_of(IPv6Network(ROUTED6)) for b in blocks.values())
    inside = h1.netbay("exec", "r-h1", "--", "ip", "-6", "route", "show", "default").stdout
    assert "via fe80::ecee:eeff:feee:eeee dev eth0" in inside
    addr = h1.netbay("exec", "r-h1", "--", "ip", "-6", "-br", "addr", "show", "dev",
                     "eth0").stdout
    assert f"{found['h1'][1]}/128" in addr and "tentative" not in addr
    assert f"blackhole {blocks['h1']}" in _routes6(h1)
    wait_until(lambda: f"{blocks['h2']} via {h2.address6} dev eth0 proto bird" in _routes6(h1),
               20, "h2's IPv6 block learnt by BGP on h1")
    assert IPv6Address(found["h3"][1]) not in IPv6Network(blocks["h2"])
    wait_until(lambda: re.search(rf"{re.escape(blocks['h3'])} via \S+ dev nbx\w+",
                                 _routes6(h1)) is not None, 15,
               "h3's IPv6 block through the tunnel on h1")
    for source, target in (("h1", "h2"), ("h1", "h3"), ("h3", "h1"), ("h2", "h3")):
        host = next(h for h in cluster.hosts if h.name == source)
        wait_until(lambda h=host, s=source, t=target: _ping6(h, f"r-{s}", found[t][1]), 10,
                   f"r-{source} reaching r-{target} over IPv6")
    # the veths have the underlay's MTU; into the tunnel, h1 tells r-h1 the tunnel's (no
    # router fragments IPv6: "packet too big" comes from the container's own host)
    largest = {"h2": 1500 - 48, "h3": 1450 - 48}
    assert h1.ping_unfragmented("r-h1", found["h2"][1], largest["h2"]).returncode == 0
    too_big = h1.ping_unfragmented("r-h1", found["h3"][1], largest["h2"])
    assert too_big.returncode != 0
    assert re.search(r"mtu ?= ?1450", too_big.stdout + too_big.stderr), too_big
    assert h1.ping_unfragmented("r-h1", found["h3"][1], largest["h3"]).returncode == 0


def test_a_routed_container_cannot_send_as_another_ipv6_address(cluster: Cluster) -> None:
    """IPv6 has no rp_filter: netbay's raw prerouting drops what a routed veth sends from an
    address not routed back to it (here one of the node's block that no container holds)."""
    h1, h2, _ = cluster.hosts
    target = _addresses(h2, "r-h2", "calico6")[1]
    own = _addresses(h1, "r-h1", "calico6")[1]
    spoofed = str(IPv6Network(f"{own}/122", strict=False)[60])
    h1.netbay("exec", "r-h1", "--", "ip", "addr", "add", f"{spoofed}/128", "dev", "eth0",
              "nodad")

    def seen_on_the_underlay(source: str) -> bool:
        capture = h1.popen(["timeout", "3", "tcpdump", "-nli", "eth0", "-c", "1",
                            f"icmp6 and src {source}"])
        try:
            for _ in range(5):
                h1.netbay("exec", "r-h1", "--", "ping", "-6", "-c", "1", "-W", "1", "-I",
                          source, target, check=False)
        finally:
            code = capture.wait()
        return code == 0

    try:
        assert seen_on_the_underlay(own)  # the real address passes: the capture works
        assert not seen_on_the_underlay(spoofed)
    finally:
        h1.netbay("exec", "r-h1", "--", "ip", "addr", "del", f"{spoofed}/128", "dev", "eth0")


def test_a_deleted_ipv6_route_and_blackhole_are_back_within_2_s(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    own = _addresses(h1, "r-h1", "calico6")[1]
    block = _block6(own, 122)
    route = re.search(rf"^{re.escape(own)} dev (\S+) proto 57", _routes6(h1), re.M)
    assert route is not None and f"blackhole {block} " in _routes6(h1)
    h1.run(["ip", "-6", "route", "del", own, "dev", route[1]])
    h1.run(["ip", "-6", "route", "del", "blackhole", block, "proto", "57"])
    deleted = time.monotonic()
    wait_until(lambda: f"{own} dev {route[1]} proto 57" in _routes6(h1)
               and f"blackhole {block} " in _routes6(h1), 2.0,
               "h1's /128 and IPv6 blackhole put back", interval=0.02)
    assert time.monotonic() - deleted < 2.0
    assert _ping6(cluster.hosts[1], "r-h2", own)


def test_everything_goes_and_nothing_is_left(cluster: Cluster) -> None:
    for host in cluster.hosts:
        host.netbay("rm", "-f", f"c-{host.name}", f"r-{host.name}")
    h1 = cluster.hosts[0]
    for network in ("podnet6", "calico6"):
        wait_until(lambda n=network: h1.netbay("network", "rm", n, check=False).returncode == 0,
                   15, f"{network} removed")
    for host in cluster.hosts:
        host.netbay("cluster", "leave")
        routes = _routes6(host) + host.run(["ip", "route", "show"]).stdout
        assert "proto 57" not in routes and "proto bird" not in routes, routes
        assert "nbx" not in host.run(["ip", "-br", "link"]).stdout
    assert not [k for k, _ in cluster.record() if "/subnets/" in k or "/holders/" in k]

