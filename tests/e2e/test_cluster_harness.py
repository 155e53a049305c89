"""The multi-host harness itself (tests/cluster.py): the underlay's two paths, etcd from every
host, each host's own /sys, netbayd and state, partitions, a lost etcd leader, and a teardown
that leaves nothing, also after a failed test."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import link_names, wait_until
from hostsandbox import namespace_id, processes_in
from netbay import _linux
from netbay.kernel.rtnetlink import Rtnetlink

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture()


def _reply_ttl(host: ClusterHost, address: str) -> int:
    out = host.run(["ping", "-c", "1", "-W", "2", address]).stdout
    found = re.search(r"ttl=(\d+)", out)
    assert found, out
    return int(found.group(1))


def _mac(host: ClusterHost) -> str:
    with Rtnetlink(host.netns) as nl:
        mac = next(link.mac for link in nl.links() if link.name == "eth0")
    assert mac, host.name
    return mac


def _etcdctl(host: ClusterHost, endpoints: list[str] | tuple[str, ...], *args: str,
             check: bool = True) -> str:
    """etcdctl on HOST; what it reports (etcdctl 3.4 writes health results to stderr)."""
    result = host.run(["etcdctl", f"--endpoints={','.join(endpoints)}", "--dial-timeout=2s",
                       "--command-timeout=3s", *args], check=check, timeout=30)
    return result.stdout + result.stderr


def test_hosts_on_one_segment_reach_each_other_directly(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    assert (h1.segment, h2.segment) == ("a", "a")
    assert _reply_ttl(h1, h2.address) == 64  # no router hop
    neighbour = h1.run(["ip", "neigh", "show", h2.address, "dev", "eth0"]).stdout
    assert f"lladdr {_mac(h2)}" in neighbour  # h2 itself answered ARP, not the router


def test_hosts_on_different_segments_reach_each_other_through_the_router(
    cluster: Cluster,
) -> None:
    h1, h3 = cluster.hosts[0], cluster.hosts[2]
    assert (h1.segment, h3.segment) == ("a", "b")
    assert _reply_ttl(h1, h3.address) == 63
    assert _reply_ttl(h3, h1.address) == 63
    route = h1.run(["ip", "route", "get", h3.address]).stdout
    assert f"via {cluster.gateway('a')} dev eth0" in route


def test_every_host_reaches_every_etcd_member(cluster: Cluster) -> None:
    endpoints = cluster.etcd.endpoints
    on_segment_b = [url for url in endpoints if url.startswith("http://198.18.2.")]
    assert len(endpoints) == 3 and len(on_segment_b) == 1  # members on both segments
    for host in cluster.hosts:
        report = _etcdctl(host, endpoints, "endpoint", "health")
        healthy = sorted(re.findall(r"^(\S+) is healthy", report, re.MULTILINE))
        assert healthy == sorted(endpoints), (host.name, report)


def test_each_host_lists_only_its_own_links_in_sys(cluster: Cluster) -> None:
    macs = set()
    for host in cluster.hosts:
        listed = host.run(["ls", "/sys/class/net"]).stdout.split()
        assert sorted(listed) == sorted(link_names(host.netns)) == ["eth0", "lo"]
        # every host has an eth0: its MAC tells whose /sys this is
        shown = host.run(["cat", "/sys/class/net/eth0/address"]).stdout.strip()
        assert shown == _mac(host)
        macs.add(shown)
    assert len(macs) == len(cluster.hosts)


def test_each_host_runs_its_own_netbayd_with_its_own_state(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    for host in cluster.hosts:
        pid = host.daemon_pid()
        assert pid is not None, host.name
        assert os.readlink(f"/proc/{pid}/ns/net") == namespace_id(host.netns)
        assert str(host.state) in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        assert (host.state / "netbay.db").exists()
        assert "bridge" in host.netbay("network", "ls").stdout
    h1.netbay("network", "create", "only-h1")
    try:
        assert "only-h1" in h1.netbay("network", "ls").stdout
        assert "only-h1" not in h2.netbay("network", "ls").stdout
    finally:
        h1.netbay("network", "rm", "only-h1")


def test_a_killed_netbayd_is_started_again_by_the_next_command(cluster: Cluster) -> None:
    host = cluster.hosts[2]
    pid = host.daemon_pid()
    assert pid is not None
    start = _linux.process_start_time(pid)
    assert host.kill_daemon() == pid
    assert not _linux.process_alive(pid, start) and host.daemon_pid() is None
    host.netbay("network", "ls")
    assert host.daemon_pid() not in (None, pid)


def test_a_partitioned_host_is_cut_off_until_healed(cluster: Cluster) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    cluster.partition(h2)
    try:
        assert h1.run(["ping", "-c", "1", "-W", "1", h2.address], check=False).returncode != 0
        assert h2.run(["cat", "/sys/class/net/eth0/carrier"]).stdout.strip() == "0"
        assert h2.address in h2.run(["ip", "-br", "addr", "show", "eth0"]).stdout
    finally:
        cluster.heal(h2)
    wait_until(lambda: h1.run(["ping", "-c", "1", "-W", "1", h2.address],
                              check=False).returncode == 0, 10, "h2 reachable after heal")


def test_killing_the_etcd_leader_leaves_two_healthy_members(cluster: Cluster) -> None:
    etcd, host = cluster.etcd, cluster.hosts[2]
    leader = etcd.leader()
    etcd.kill(leader)
    try:
        assert etcd.leader() != leader
        alive = [url for index, url in enumerate(etcd.endpoints) if index != leader]
        report = _etcdctl(host, alive, "endpoint", "health")
        assert sorted(re.findall(r"^(\S+) is healthy", report, re.MULTILINE)) == sorted(alive)
        _etcdctl(host, alive, "put", "/harness/quorum", "two-of-three")
        assert _etcdctl(host, alive, "get", "--print-value-only", "/harness/quorum").split() \
            == ["two-of-three"]
        lost = _etcdctl(host, [etcd.endpoints[leader]], "endpoint", "health", check=False)
        assert f"{etcd.endpoints[leader]} is unhealthy" in lost
    finally:
        etcd.start_all()
    report = _etcdctl(host, etcd.endpoints, "endpoint", "health")
    assert len(re.findall(r" is healthy", report)) == 3


def test_teardown_leaves_nothing_even_after_a_failed_test(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    with pytest.raises(RuntimeError, match="the test failed"), \
            Cluster(hosts=2, segments=["a", "b"], mtu=9000) as built:
        h1, h2 = built.hosts
        # the underlay's MTU is the one asked for: the largest DF packet crosses the router
        h1.run(["ping", "-M", "do", "-c", "1", "-W", "2", "-s", "8972", h2.address])
        too_big = h1.run(["ping", "-M", "do", "-c", "1", "-s", "8973", h2.address], check=False)
        assert too_big.returncode != 0 and "mtu=9000" in too_big.stdout + too_big.stderr
        pids = [*(host.init_pid for host in built.hosts),
                *(host.daemon_pid() or 0 for host in built.hosts),
                *(member.process.pid if member.process else 0 for member in built.etcd.members)]
        processes = [(pid, _linux.process_start_time(pid)) for pid in pids]
        pins = built.pins()
        namespaces = {namespace_id(pin) for pin in pins}.union(
            *(host.namespaces for host in built.hosts))  # with the hosts' mount and PID
        raise RuntimeError("the test failed")
    assert len(pins) == 2 + 3 + 2 and 0 not in pids and len(set(pids)) == 2 + 2 + 3
    assert not [pid for pid, start in processes if _linux.process_alive(pid, start)]
    assert not processes_in(namespaces)
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        assert not [line for line in info if str(built.work) in line]
    assert not built.work.exists()
    with capsys.disabled():
        print(f"\ncluster of 2 hosts and 3 etcd members: setup {built.setup_seconds:.2f} s, "
              f"teardown {built.teardown_seconds:.2f} s")
