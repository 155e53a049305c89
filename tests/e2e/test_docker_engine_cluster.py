"""Multi-host Docker without swarm: two Docker hosts of one netbay cluster (tests/cluster.py
with host_type=DockerHost: each host its netbayd, containerd and dockerd; etcd on the
underlay). `docker network create -d netbay -o netbay.driver=overlay` with the same name on
each is one cluster network, and containers the two dockerd start reach each other."""

from __future__ import annotations

import json

import pytest

from cluster import Cluster, cluster_fixture
from docker_env import IMAGE, DockerHost, missing

pytestmark = [pytest.mark.kernel, pytest.mark.e2e,
              pytest.mark.skipif(missing() is not None, reason=str(missing()))]

cluster = cluster_fixture(hosts=2, segments=["a", "a"], host_type=DockerHost)
SUBNET = "10.246.0.0/16"


def _joined(cluster: Cluster) -> list[DockerHost]:
    hosts = [host for host in cluster.hosts if isinstance(host, DockerHost)]
    if hosts[0].plugin_missing:
        pytest.skip(hosts[0].plugin_missing)
    endpoints = ",".join(cluster.etcd.endpoints)
    for host in hosts:
        if not (host.state / "cluster.json").exists():
            host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address)
    return hosts


@pytest.mark.parametrize(("driver", "subnet"), [("overlay", "10.246.0.0/16"),
                                                ("routed", "10.247.0.0/16")])
def test_a_network_made_by_two_dockerd_is_one_cluster_network(
    cluster: Cluster, driver: str, subnet: str,
) -> None:
    hosts = _joined(cluster)
    name = f"d-{driver}"
    ids = [host.docker("network", "create", "-d", "netbay", "--ipam-driver", "netbay",
                       "--subnet", subnet, "-o", f"netbay.driver={driver}", "-o",
                       f"netbay.name={name}", name).stdout.strip()
           for host in hosts]
    h1, h2 = hosts
    # one netbay network, named by -o netbay.name (each dockerd has its own id for it)
    for host, docker_id in zip(hosts, ids, strict=True):
        listed = host.netbay("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
        assert listed.stdout.splitlines().count(f"{name} {driver} global") == 1
        mapping = json.loads((host.state / "docker-networks.json").read_text())
        assert mapping.get(docker_id) == name, mapping
    h2.docker("run", "-d", "--name", "far", "--network", name, IMAGE, "sleep", "1000")
    try:
        far = json.loads(h2.docker("inspect", "far").stdout)[0]["NetworkSettings"][
            "Networks"][name]["IPAddress"]
        out = h1.docker("run", "--rm", "--network", name, IMAGE, "sh", "-c",
                        f"ip -4 -o addr show dev eth0; ip route; ping -c 3 -W 2 {far}").stdout
        assert "packets received" in out and " 0 packets received" not in out, out
        assert out.split()[3].startswith(subnet.split(".0.0/")[0] + "."), out
        if driver == "routed":
            assert "/32 " in out.splitlines()[0] and "default via 169.254.1.1" in out, out
    finally:
        h2.docker("rm", "-f", "far")
    for host in hosts:
        host.docker("network", "rm", name)
    # Docker never removes the cluster network: another host's dockerd may still use it
    assert name in h1.netbay("network", "ls", "--format", "{{.Name}}").stdout.split()
    h1.netbay("network", "rm", name)
