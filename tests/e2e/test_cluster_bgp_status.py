"""`netbay bgp status`, BGP readiness in `cluster nodes` and BGP in `netbay topology` (issue 15)
on the multi-host harness (tests/cluster.py): h1 and h2 on one segment peer by BGP, h3
behind the router has no session (encap cross-subnet: VXLAN). The tests run in order on one
cluster and each leaves it as the next expects: joined, `calico` with a container on every
host, every session up."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from ipaddress import IPv4Network
from typing import Any

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture()
TTL = 5
POOL = "10.89.0.0/16"
ASN = "64512"  # the routed driver's default
SESSION_KEYS = {"Peer", "Address", "Asn", "State", "Since", "Imported", "Exported"}


def _bgp(host: ClusterHost, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(host.netbay("bgp", "status", *args, "--format",
                                                   "json").stdout)
    return found


def _node_states(host: ClusterHost) -> dict[str, str]:
    """Each node's State in `cluster nodes --format json` (one object per line)."""
    lines = host.netbay("cluster", "nodes", "--format", "json").stdout.splitlines()
    return {n["Name"]: n["State"] for n in map(json.loads, lines)}


def _rows(host: ClusterHost, *args: str) -> list[list[str]]:
    """The table of `bgp status`, split in words (UPTIME is several: '3 seconds')."""
    lines = host.netbay("bgp", "status", *args).stdout.splitlines()
    assert lines[0].split() == ["PEER", "ADDRESS", "ASN", "STATE", "UPTIME", "ROUTES"], lines
    return [line.split() for line in lines[1:]]


def _converged(host: ClusterHost, *args: str) -> Callable[[], list[list[str]]]:
    """Whether HOST's table (with ARGS) shows one session, Established, routes 1/1."""

    def check() -> list[list[str]]:
        rows = _rows(host, *args)
        return rows if len(rows) == 1 and rows[0][3] == "Established" and rows[0][-1] == (
            "1/1") else []

    return check


def _block(host: ClusterHost) -> str:
    found = json.loads(host.netbay("inspect", f"c-{host.name}").stdout)[0]
    address = found["NetworkSettings"]["Networks"]["calico"]["IPAddress"]
    return str(IPv4Network(f"{address}/26", strict=False))


def test_a_node_is_routing_until_its_sessions_are_up_and_the_routes_in(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in cluster.hosts:
        host.start_daemon()
        host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address,
                    "--ttl", str(TTL))
    assert h1.netbay("bgp", "status").stdout == (
        "bird is not running on h1: no routed network here\n")
    h1.netbay("network", "create", "-d", "routed", "--subnet", POOL, "calico")
    for host in (h1, h3):
        host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", "calico", "--",
                    "sleep", "infinity")
    # h1 and h3 are alone on their segments: no session to wait for
    wait_until(lambda: _node_states(h1) == {"h1": "ready", "h2": "ready", "h3": "ready"},
               30, "h1 and h3 ready with their blocks")
    h2.netbay("run", "-d", "--name", "c-h2", "--network", "calico", "--", "sleep", "infinity")
    # h1 and h2 now peer: BIRD waits its connect delay (5 s) before the first connect
    def h2_routing() -> dict[str, str]:
        states = _node_states(h1)
        return states if states["h2"] == "routing" else {}

    assert wait_until(h2_routing, 10, "h2 routing while its session comes up")["h3"] == "ready"
    wait_until(lambda: set(_node_states(h1).values()) == {"ready"}, 60,
               "every node ready once BGP has the routes")
    assert set(_node_states(h3).values()) == {"ready"}
    for table in h1.netbay("cluster", "nodes").stdout.splitlines()[1:]:
        assert table.split()[2] == "ready", table


def test_bgp_status_on_h1_shows_its_session_with_h2_and_none_with_h3(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    rows = wait_until(_converged(h1), 30, "h1's session with h2 up, one route each way")
    assert rows[0][:4] == ["h2", h2.address, ASN, "Established"]
    assert re.fullmatch(r"\d+ (second|minute)s?", " ".join(rows[0][4:-1])), rows  # uptime
    assert h3.netbay("bgp", "status").stdout.splitlines()[1:] == []  # across the router


def test_node_shows_what_that_node_published(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    rows = wait_until(_converged(h1, "--node", "h2"), 30, "h2's published session with h1")
    assert rows[0][:4] == ["h1", h1.address, ASN, "Established"]
    assert [r[:4] + r[-1:] for r in _rows(h3, "--node", "h2")] == [  # any node, any node's
        ["h1", h1.address, ASN, "Established", "1/1"]]
    published = _bgp(h3, "--node", "h2")
    live = _bgp(h2)
    assert (published["Live"], live["Live"]) == (False, True)
    assert published["Sessions"] == live["Sessions"]  # nothing changed since h2 wrote it


def test_the_json_shape(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.hosts
    found = _bgp(h1)
    assert set(found) == {"Node", "Live", "Running", "Sessions"}
    assert (found["Node"], found["Live"], found["Running"]) == ("h1", True, True)
    [session] = found["Sessions"]
    assert set(session) == SESSION_KEYS
    assert (session["Peer"], session["Address"], session["Asn"], session["State"],
            session["Imported"], session["Exported"]) == ("h2", h2.address, 64512,
                                                           "Established", 1, 1)
    assert isinstance(session["Since"], int) and session["Since"] > 1_700_000_000
    assert _bgp(h1, "--node", "h3") == {"Node": "h3", "Live": False, "Running": True,
                                        "Sessions": []}
    nodes = [json.loads(line) for line in
             h1.netbay("cluster", "nodes", "--format", "json").stdout.splitlines()]
    assert [(n["Name"], n["State"]) for n in nodes] == [("h1", "ready"), ("h2", "ready"),
                                                        ("h3", "ready")]


def test_an_unknown_node_is_one_line(cluster: Cluster) -> None:
    h1 = cluster.hosts[0]
    refused = h1.netbay("bgp", "status", "--node", "h9", check=False)
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1, "", "Error: no node named h9 in the cluster\n")


def test_topology_shows_the_block_and_the_sessions(cluster: Cluster) -> None:
    h1, h2, _ = cluster.hosts
    shown = h1.netbay("topology", "--format", "json", check=False)
    topo = json.loads(shown.stdout)
    assert (shown.returncode, topo["problems"]) == (0, [])
    net = next(n for n in topo["networks"] if n["name"] == "calico")
    section = net["bgp"]
    assert (section["block"], section["running"], section["problems"]) == (_block(h1), True, [])
    assert [(s["peer"], s["address"], s["state"], s["blocks"], s["problems"])
            for s in section["sessions"]] == [("h2", h2.address, "Established", [_block(h2)], [])]
    text = h1.netbay("topology").stdout
    assert f"block {_block(h1)}  announced by bgp" in text
    assert (f"session h2  {h2.address}  AS {ASN}  Established  routes 1/1  block "
            f"{_block(h2)}") in text


def _birdc(host: ClusterHost, *command: str) -> str:
    return host.run(["birdc", "-s", str(host.state / "bird" / "bird.ctl"), *command]).stdout


def test_a_session_taken_down_makes_both_ends_routing_until_it_is_back(
    cluster: Cluster,
) -> None:
    h1, h2, h3 = cluster.hosts
    protocol = "mesh_" + h2.address.replace(".", "_")  # plan/bird.py protocol_name
    assert "disabled" in _birdc(h1, "disable", protocol)
    wait_until(lambda: _node_states(h3) == {"h1": "routing", "h2": "routing", "h3": "ready"},
               20, "h1 and h2 routing without their session")
    assert [r[:4] + r[-1:] for r in _rows(h1)] == [["h2", h2.address, ASN, "Down", "0/0"]]
    [published] = _bgp(h3, "--node", "h2")["Sessions"]
    assert (published["Peer"], published["Imported"]) == ("h1", 0)
    assert published["State"] != "Established"
    assert "enabled" in _birdc(h1, "enable", protocol)
    wait_until(lambda: set(_node_states(h3).values()) == {"ready"}, 60,
               "every node ready with the session back")
    assert _converged(h2)() and _converged(h1)()
