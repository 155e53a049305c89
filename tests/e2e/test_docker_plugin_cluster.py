"""Cluster-wide networks through Docker's plugin on the multi-host harness (tests/cluster.py):
two hosts of one netbay cluster on one segment, each netbayd serving the plugin. On each host
the test makes dockerd's exact calls for `docker network create -d netbay --ipam-driver
netbay --subnet S -o netbay.driver=overlay|routed -o netbay.name=NAME` (Docker's ids differ
per host) and for `docker run --network`, does Docker's part with the link (moved into a
namespace, named eth0, addressed, routed as Join says), and pings across the hosts."""

from __future__ import annotations

import json
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from test_docker_plugin_socket import Plugin

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]
CONTAINER = "ctr"  # the namespace that stands for the container, in each host's /run/netns


class PluginHost(ClusterHost):
    """A host whose netbayd serves the plugin on a socket the test reaches from outside."""

    def __init__(self, name: str, directory: Path, segment: str, address: str) -> None:
        super().__init__(name, directory, segment, address)
        self.plugin = Plugin(directory / "plugins" / "netbay.sock")
        self.environ["NETBAY_DOCKER_PLUGIN"] = str(self.plugin.path)

    def ctr(self, *command: str, check: bool = True) -> str:
        return self.run(["ip", "netns", "exec", CONTAINER, *command], check=check).stdout


cluster = cluster_fixture(hosts=2, segments=["a", "a"], host_type=PluginHost)


@pytest.fixture(scope="module")
def hosts(cluster: Cluster) -> list[PluginHost]:
    endpoints = ",".join(cluster.etcd.endpoints)
    joined = [h for h in cluster.hosts if isinstance(h, PluginHost)]
    for host in joined:
        host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address)
    return joined


def docker_network_create(host: PluginHost, docker_id: str, driver: str, name: str,
                          subnet: str) -> dict[str, Any]:
    """RequestPool, RequestAddress (the gateway), CreateNetwork; the pool."""
    plugin = host.plugin
    pool = plugin.call("IpamDriver.RequestPool", {"AddressSpace": "netbay", "Pool": subnet,
                                                  "SubPool": "", "Options": {}, "V6": False})
    assert pool["Pool"] == subnet  # Docker's view: the cluster's pool, on every host
    gateway = plugin.call("IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    plugin.call("NetworkDriver.CreateNetwork", {
        "NetworkID": docker_id,
        "Options": {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": {
            "netbay.driver": driver, "netbay.name": name}},
        "IPv4Data": [{"AddressSpace": "netbay", "Pool": subnet, "Gateway": gateway["Address"]}]})
    return dict(pool)


def docker_run(host: PluginHost, docker_id: str, pool: dict[str, Any]) -> tuple[str, str]:
    """RequestAddress, CreateEndpoint, Join, then Docker's part; (address, endpoint id)."""
    plugin, endpoint = host.plugin, docker_id[::-1]
    address = plugin.call("IpamDriver.RequestAddress",
                          {"PoolID": pool["PoolID"], "Address": "", "Options": {}})["Address"]
    plugin.call("NetworkDriver.CreateEndpoint", {
        "NetworkID": docker_id, "EndpointID": endpoint, "Options": {},
        "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""}})
    host.run(["ip", "netns", "add", CONTAINER])
    joined = plugin.call("NetworkDriver.Join", {
        "NetworkID": docker_id, "EndpointID": endpoint, "SandboxKey": f"/run/netns/{CONTAINER}",
        "Options": {}})
    src = joined["InterfaceName"]["SrcName"]
    host.run(["ip", "link", "set", src, "netns", CONTAINER])
    host.ctr("ip", "link", "set", src, "name", "eth0")
    host.ctr("ip", "addr", "add", address, "dev", "eth0")
    host.ctr("ip", "link", "set", "eth0", "up")
    for route in joined["StaticRoutes"]:  # connected ones (RouteType 1) first, as Docker
        assert route["RouteType"] == 1, route
        host.ctr("ip", "route", "add", route["Destination"], "dev", "eth0", "scope", "link")
    host.ctr("ip", "route", "add", "default", "via", joined["Gateway"])
    return address, endpoint


def docker_rm(host: PluginHost, docker_id: str, endpoint: str, pool: dict[str, Any],
              address: str) -> None:
    """The container's end and `docker network rm`, as dockerd calls them."""
    plugin, ids = host.plugin, {"NetworkID": docker_id, "EndpointID": endpoint}
    plugin.call("NetworkDriver.Leave", ids)
    host.ctr("ip", "link", "set", "eth0", "down")
    host.ctr("ip", "link", "set", "eth0", "name", "nbd" + endpoint[:12])
    host.ctr("ip", "link", "set", "nbd" + endpoint[:12], "netns", "1")
    plugin.call("NetworkDriver.DeleteEndpoint", ids)
    plugin.call("IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": address})
    host.run(["ip", "netns", "del", CONTAINER])
    plugin.call("NetworkDriver.DeleteNetwork", {"NetworkID": docker_id})
    plugin.call("IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})


def listed(host: PluginHost) -> list[str]:
    return host.netbay("network", "ls", "--format",
                       "{{.Name}} {{.Driver}} {{.Scope}}").stdout.splitlines()


def host_addresses(host: PluginHost) -> str:
    return host.run(["ip", "-4", "-br", "addr"]).stdout


@pytest.mark.parametrize(("driver", "subnet", "prefix", "block", "gateway"), [
    ("overlay", "10.247.0.0/16", 24, 24, None),
    ("routed", "10.248.0.0/16", 32, 26, "169.254.1.1"),
])
def test_two_docker_hosts_make_one_cluster_network(
    hosts: list[PluginHost], driver: str, subnet: str, prefix: int, block: int,
    gateway: str | None,
) -> None:
    name = f"d{driver}"
    docker_ids = [f"{i}{driver[0]}" * 32 for i in (1, 2)]  # each dockerd's own id
    pools = [docker_network_create(h, i, driver, name, subnet)
             for h, i in zip(hosts, docker_ids, strict=True)]
    for host in hosts:
        assert listed(host).count(f"{name} {driver} global") == 1
        mapping = json.loads((host.state / "docker-networks.json").read_text())
        assert name in mapping.values()
    made = [docker_run(h, i, p) for h, i, p in zip(hosts, docker_ids, pools, strict=True)]
    addresses = [IPv4Interface(address) for address, _ in made]
    assert all(a.ip in IPv4Network(subnet) and a.network.prefixlen == prefix for a in addresses)
    for host, address in zip(hosts, addresses, strict=True):
        route = host.ctr("ip", "-4", "route", "show", "default")
        assert route.split()[2] == (gateway or str(next(address.network.hosts())))
    h1, h2 = hosts
    wait_until(lambda: "1 received" in h1.ctr("ping", "-c", "1", "-W", "1",
                                               str(addresses[1].ip), check=False),
               30, f"h1's container reaching h2's over {driver}", interval=0.5)
    assert "1 received" in h2.ctr("ping", "-c", "1", "-W", "2", str(addresses[0].ip))
    # the share's first address (the bridge's, or lo's for a routed block's DNS)
    h1_share = f"{next(IPv4Network((addresses[0].ip, block), strict=False).hosts())}/"
    assert h1_share in host_addresses(h1)

    # `docker network rm` on h1: h1's share goes, the cluster network and h2's stay
    docker_rm(h1, docker_ids[0], made[0][1], pools[0], made[0][0])
    assert h1.netbay("network", "inspect", name).returncode == 0  # the cluster's record
    assert json.loads((h1.state / "docker-networks.json").read_text()) == {}
    assert f"{name} {driver} global" in listed(h2)
    assert h1_share not in host_addresses(h1)
    docker_rm(h2, docker_ids[1], made[1][1], pools[1], made[1][0])
    # only netbay removes the cluster network (once h2's names are gone from etcd)
    wait_until(lambda: h1.netbay("network", "rm", name, check=False).returncode == 0, 20,
               f"netbay network rm {name}", interval=0.5)
    for host in hosts:
        assert not any(line.startswith(f"{name} ") for line in listed(host))
