"""`netbay topology` and `netbay trace` on an overlay network (issue 14), on the multi-host
harness (tests/cluster.py): h1 and h2 share a segment (host-gw under `auto`), h3 is behind
the router (VXLAN). Seen from h1: the tunnel, the other nodes with their blocks and how they
are reached, and a trace that ends at the hop leaving h1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from ipaddress import IPv4Network
from typing import Any

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until
from topoparse import dot_objects

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture()


def _address(host: ClusterHost, container: str) -> str:
    found = json.loads(host.netbay("inspect", container).stdout)[0]
    return str(found["NetworkSettings"]["Networks"]["podnet"]["IPAddress"])


def _block(address: str) -> str:
    return str(IPv4Network(address + "/24", strict=False))


def _ping(host: ClusterHost, container: str, target: str) -> subprocess.CompletedProcess[str]:
    return host.netbay("exec", container, "--", "ping", "-c", "1", "-W", "2", target,
                       check=False)


def _reaches(host: ClusterHost, container: str, target: str) -> Callable[[], bool]:
    return lambda: _ping(host, container, target).returncode == 0


@pytest.fixture(scope="module")
def podnet(cluster: Cluster) -> Iterator[dict[str, str]]:
    """Every host joined, `podnet` with container c-<host> on each, h1 reaching both others;
    the containers' addresses by host name."""
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in cluster.hosts:
        host.netbay("cluster", "join", "--etcd", endpoints)
    h1 = cluster.hosts[0]
    h1.netbay("network", "create", "-d", "overlay", "--subnet", "10.66.0.0/16", "-o",
              "vni=4321", "podnet")
    for host in cluster.hosts:
        host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", "podnet", "--",
                    "sleep", "infinity")
    addresses = {h.name: _address(h, f"c-{h.name}") for h in cluster.hosts}
    for name in ("h2", "h3"):
        wait_until(_reaches(h1, "c-h1", addresses[name]), 15, f"c-h1 reaching c-{name}")
    yield addresses
    for host in cluster.hosts:
        host.netbay("rm", "-f", f"c-{host.name}")
    h1.netbay("network", "rm", "podnet")


def _podnet(topo: dict[str, Any]) -> dict[str, Any]:
    return next(n for n in topo["networks"] if n["name"] == "podnet")


def test_topology_on_h1_shows_the_tunnel_and_h2_by_host_gw_h3_by_vxlan(
    cluster: Cluster, podnet: dict[str, str],
) -> None:
    h1 = cluster.hosts[0]
    net = _podnet(json.loads(h1.netbay("topology", "--format", "json").stdout))
    overlay = net["overlay"]
    assert [(n["name"], n["address"], n["state"], n["block"], n["via"], n["device"])
            for n in overlay["nodes"]] == [
        ("h2", "198.18.1.12", "ready", _block(podnet["h2"]), "host-gw", "eth0"),
        ("h3", "198.18.2.13", "ready", _block(podnet["h3"]), "vxlan", overlay["tunnel"]["name"]),
    ]
    assert all(n["problems"] == [] for n in overlay["nodes"]) and net["problems"] == []
    tunnel = overlay["tunnel"]
    assert tunnel["name"] == f"nbx{net['id'][:12]}"
    details = h1.run(["ip", "-d", "link", "show", tunnel["name"]]).stdout
    assert "vxlan id 4321 local 198.18.1.11 dev eth0 " in details
    assert f" dstport {tunnel['port']} " in details
    assert (tunnel["vni"], tunnel["local"], tunnel["underlay"], tunnel["mtu"]) == (
        4321, "198.18.1.11", "eth0", 1450)
    h3 = overlay["nodes"][1]
    neighbours = h1.run(["ip", "neigh", "show", "dev", tunnel["name"]]).stdout
    assert f"{h3['gateway']} lladdr {h3['vtep_mac']} PERMANENT" in neighbours
    nodes, edges = dot_objects(h1.netbay("topology", "--format", "dot").stdout)
    assert nodes["node"] == {"h2", "h3"}
    assert ("interface:eth0", "node:h2") in edges
    assert (f"tunnel:{tunnel['name']}", "node:h3") in edges


def test_trace_from_c_h1_to_c_h3_ends_at_the_tunnel_to_h3(
    cluster: Cluster, podnet: dict[str, str],
) -> None:
    h1 = cluster.hosts[0]
    tunnel = _podnet(json.loads(h1.netbay("topology", "--format", "json").stdout))[
        "overlay"]["tunnel"]["name"]
    result = json.loads(h1.netbay("trace", "c-h1", podnet["h3"], "--format", "json").stdout)
    assert result["outcome"]["delivered"], result["outcome"]
    last = result["hops"][-1]
    assert (last["where"], last["text"]) == (
        "tunnel", f"tunnel {tunnel} to node h3 (198.18.2.13) VNI 4321")
    assert result["reached"] == f"{podnet['h3']} on node h3"
    assert any(line["oif"] == tunnel for hop in result["hops"] for line in hop["rules"])
    text = h1.netbay("trace", "c-h1", podnet["h2"]).stdout
    assert "underlay        underlay eth0 to node h2 (198.18.1.12) via host-gw" in text
    by_name = json.loads(wait_until(  # c-h3's name, as h3 publishes it for the cluster
        lambda: h1.netbay("trace", "c-h1", "c-h3", "--format", "json", check=False).stdout,
        10, "c-h3's name known on h1"))
    assert by_name["hops"][-1]["text"] == f"tunnel {tunnel} to node h3 (198.18.2.13) VNI 4321"
