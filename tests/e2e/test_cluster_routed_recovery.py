"""A routed network through a daemon's death at the worst moments (issue 15's leftovers), on the
multi-host harness (tests/cluster.py), h1 and h2 on one segment. A netbayd SIGKILLed between
the etcd claim of a further block and its record: the next one adopts the block (record,
blackhole, gateway on lo, firewall element, BGP's announcement) and the next container uses it,
no third block claimed; `cluster nodes` lists both blocks. A route reflector holding no
block whose netbayd restarts while etcd is away: its BIRD runs on, its sessions never drop,
and the netbayd adopts it once etcd answers."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture(hosts=2)
POOL = "10.95.0.0/27"  # eight /30 blocks of one container each
RESYNC = 5.0  # engine/cluster.py's timer: the agent's syncs while etcd is away


@pytest.fixture(scope="module")
def small(cluster: Cluster) -> Iterator[Cluster]:
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in cluster.hosts:
        host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address)
    cluster.hosts[0].netbay("network", "create", "-d", "routed", "--subnet", POOL, "-o",
                            "block_size=30", "small")
    yield cluster


def _run(host: ClusterHost, name: str, check: bool = True) -> int:
    return host.netbay("run", "-d", "--name", name, "--network", "small", "--", "sleep",
                       "infinity", check=check).returncode


def _block_of(host: ClusterHost, container: str) -> str:
    return str(IPv4Network(host.container_address(container, "small") + "/30", strict=False))


def _blackholes(host: ClusterHost) -> list[str]:
    return sorted(re.findall(r"^blackhole (10\.95\.\S+) proto 57",
                             host.run(["ip", "route"]).stdout, re.M))


def _held(cluster: Cluster, node: str) -> list[str]:
    """The blocks of small whose key in etcd names NODE (an id)."""
    return sorted(key.rsplit("/", 1)[1].replace("-", "/") for key, value in cluster.record()
                  if key.startswith("/netbay/v1/subnets/small/") and json.loads(value) ==
                  {"node": node})


def _node_id(host: ClusterHost) -> str:
    found = host.netbay("cluster", "nodes", "--format", "json").stdout.splitlines()
    return str(next(n["Id"] for n in map(json.loads, found) if n["Name"] == host.name))


def _since(host: ClusterHost, peer: ClusterHost) -> int:
    """When HOST's session with PEER came up, as HOST's BIRD says (0: it is not up)."""
    said = host.run(["birdc", "-s", str(host.state / "bird" / "bird.ctl"), "show",
                     "protocols"], check=False).stdout
    up = re.search(rf"^mesh_{peer.address.replace('.', '_')}\s+BGP\s+\S+\s+up\s+(\d+)\s+"
                   "Established", said, re.M)
    return int(up.group(1)) if up else 0


def test_a_block_claimed_by_a_daemon_killed_before_recording_it_is_adopted(
    small: Cluster,
) -> None:
    h1, h2 = small.hosts
    _run(h1, "s1")
    first = _block_of(h1, "s1")
    me = _node_id(h1)
    h1.kill_daemon(signal.SIGTERM)
    h1.environ["NETBAY_FAULT"] = "network:block-claimed"
    try:
        h1.start_daemon()
        daemon = h1.daemon_pid()
        assert _run(h1, "s2", check=False) != 0  # the daemon died claiming s2's block
        wait_until(lambda: h1.daemon_pid() != daemon, 10, "h1's netbayd killed at the point")
    finally:
        del h1.environ["NETBAY_FAULT"]
    held = _held(small, me)
    [second] = [b for b in held if b != first]
    assert len(held) == 2 and _blackholes(h1) == [first]  # held in etcd, not on h1
    h1.start_daemon()
    wait_until(lambda: _blackholes(h1) == sorted([first, second]), 15,
               "the held block adopted with its blackhole")
    gateway = str(IPv4Network(second)[1])
    assert f"inet {gateway}/32 scope host lo" in h1.run(["ip", "-4", "addr", "show", "lo"]).stdout
    wait_until(lambda: second in h1.run(["nft", "list", "set", "inet", "netbay",
                                         "masq_nets"]).stdout, 5, "its firewall element")
    # announced (h2 holds no block: h1 has no peer to announce it to yet)
    wait_until(lambda: f"route {second} blackhole;" in (
        h1.state / "bird" / "bird.conf").read_text(), 5, "the block in h1's bird.conf")
    h1.netbay("rm", "-f", "s2", check=False)  # whatever the killed run left of it
    _run(h1, "s2")  # the record's block now: no third claimed
    assert _block_of(h1, "s2") == second and _held(small, me) == held
    rows = h2.netbay("cluster", "nodes").stdout.splitlines()
    lowest_first = ",".join(sorted([first, second], key=IPv4Network))
    assert any(row.startswith("h1 ") and f"small {lowest_first}" in row for row in rows), rows


def test_a_reflector_restarted_while_etcd_is_away_keeps_bird_and_its_sessions(
    small: Cluster,
) -> None:
    h1, h2 = small.hosts
    assert _blackholes(h2) == []  # h2 holds no block: its BIRD is a reflector's only
    h1.netbay("cluster", "bgp", "reflector", "h2")
    wait_until(lambda: _since(h1, h2) and _since(h2, h1), 20, "h1 peering with reflector h2")
    bird, since = h2.bird_pid(), _since(h1, h2)
    small.etcd.stop_all()
    try:
        h2.kill_daemon(signal.SIGTERM)
        h2.start_daemon()
        time.sleep(RESYNC + 2)  # the agent's first syncs, with a view that never listed
        assert h2.bird_pid() == bird and _since(h2, h1), "h2's BIRD stopped before its sync"
    finally:
        small.etcd.start_all()
    wait_until(lambda: f"bird (pid {bird}) adopted" in (h2.state / "netbayd.log").read_text(),
               20, "h2's netbayd adopting its BIRD")
    time.sleep(1)
    assert h2.bird_pid() == bird and _since(h1, h2) == since  # the session never dropped
