"""Cluster-wide networks through Docker's plugin on the multi-host harness (tests/cluster.py):
two hosts of one netbay cluster on one segment, each netbayd serving the plugin, with an
IPv6 underlay address each (ipv6=True: IPv6 blocks go host-gw / BGP between them). On each
host the test makes dockerd's exact calls for `docker network create -d netbay --ipam-driver
netbay [--ipv6] --subnet S [--subnet S6] -o netbay.driver=overlay|routed -o netbay.name=NAME`
(Docker's ids differ per host) and for `docker run --network`, does Docker's part with the
link (moved into a namespace, named eth0, addressed, routed as Join says), and pings across
the hosts (over IPv6 too on a dual-stack network)."""

from __future__ import annotations

import json
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from test_docker_plugin_socket import Plugin

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]
CONTAINER = "ctr"  # the namespace that stands for the container, in each host's /run/netns
LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"  # a routed network's IPv6 gateway (Calico's)


class PluginHost(ClusterHost):
    """A host whose netbayd serves the plugin on a socket the test reaches from outside."""

    def __init__(self, name: str, directory: Path, segment: str, address: str) -> None:
        super().__init__(name, directory, segment, address)
        self.plugin = Plugin(directory / "plugins" / "netbay.sock")
        self.environ["NETBAY_DOCKER_PLUGIN"] = str(self.plugin.path)

    def ctr(self, *command: str, check: bool = True) -> str:
        return self.run(["ip", "netns", "exec", CONTAINER, *command], check=check).stdout


cluster = cluster_fixture(hosts=2, segments=["a", "a"], host_type=PluginHost, ipv6=True)


@pytest.fixture(scope="module")
def hosts(cluster: Cluster) -> list[PluginHost]:
    endpoints = ",".join(cluster.etcd.endpoints)
    joined = [h for h in cluster.hosts if isinstance(h, PluginHost)]
    for host in joined:
        host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address)
    return joined


def request_pool(host: PluginHost, subnet: str, v6: bool = False) -> tuple[dict[str, Any], str]:
    """RequestPool and RequestAddress (the gateway) of one family; the pool and the gateway."""
    pool = host.plugin.call("IpamDriver.RequestPool", {
        "AddressSpace": "netbay", "Pool": subnet, "SubPool": "", "Options": {}, "V6": v6})
    assert pool["Pool"] == subnet  # Docker's view: the cluster's pool, on every host
    gateway = host.plugin.call("IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    return dict(pool), str(gateway["Address"])


def create_network(host: PluginHost, docker_id: str, driver: str, name: str,
                   data: dict[str, list[dict[str, str]]]) -> None:
    host.plugin.call("NetworkDriver.CreateNetwork", {
        "NetworkID": docker_id,
        "Options": {"com.docker.network.enable_ipv6": bool(data.get("IPv6Data")),
                    "com.docker.network.generic": {"netbay.driver": driver, "netbay.name": name}},
        **data})


def docker_network_create(host: PluginHost, docker_id: str, driver: str, name: str,
                          subnet: str) -> dict[str, Any]:
    """RequestPool, RequestAddress (the gateway), CreateNetwork; the pool."""
    pool, gateway = request_pool(host, subnet)
    create_network(host, docker_id, driver, name, {
        "IPv4Data": [{"AddressSpace": "netbay", "Pool": subnet, "Gateway": gateway}]})
    return pool


def docker_network_create6(host: PluginHost, docker_id: str, driver: str, name: str,
                           subnet: str, subnet6: str) -> tuple[list[dict[str, Any]], str]:
    """`docker network create --ipv6 --subnet SUBNET --subnet SUBNET6`: the pool and gateway
    of each family (IPv4's first, as dockerd asks), CreateNetwork with IPv4Data and
    IPv6Data; the pools and the IPv6 gateway netbay's IPAM gave."""
    pool, gateway = request_pool(host, subnet)
    pool6, gateway6 = request_pool(host, subnet6, v6=True)
    create_network(host, docker_id, driver, name, {
        "IPv4Data": [{"AddressSpace": "netbay", "Pool": subnet, "Gateway": gateway}],
        "IPv6Data": [{"AddressSpace": "netbay", "Pool": subnet6, "Gateway": gateway6}]})
    return [pool, pool6], gateway6


def docker_run(host: PluginHost, docker_id: str, pool: dict[str, Any]) -> tuple[str, str]:
    """RequestAddress, CreateEndpoint, Join, then Docker's part; (address, endpoint id)."""
    [address], endpoint = docker_run_pools(host, docker_id, [pool])
    return address, endpoint


def docker_run_pools(host: PluginHost, docker_id: str,
                     pools: list[dict[str, Any]]) -> tuple[list[str], str]:
    """RequestAddress of each of POOLS (IPv4's, then IPv6's if there is one), CreateEndpoint,
    Join, then Docker's part as libnetwork's osl does it: the link moved in and named eth0,
    its addresses (IPv6 switched on for it, its address without DAD), up, Join's connected
    routes, then each family's default route via its gateway, on the link a route lookup of
    the gateway finds. The addresses and the endpoint id."""
    plugin, endpoint = host.plugin, docker_id[::-1]
    addresses = [plugin.call("IpamDriver.RequestAddress",
                             {"PoolID": p["PoolID"], "Address": "", "Options": {}})["Address"]
                 for p in pools]
    address6 = addresses[1] if len(addresses) > 1 else ""
    plugin.call("NetworkDriver.CreateEndpoint", {
        "NetworkID": docker_id, "EndpointID": endpoint, "Options": {},
        "Interface": {"Address": addresses[0], "AddressIPv6": address6, "MacAddress": ""}})
    host.run(["ip", "netns", "add", CONTAINER])
    joined = plugin.call("NetworkDriver.Join", {
        "NetworkID": docker_id, "EndpointID": endpoint, "SandboxKey": f"/run/netns/{CONTAINER}",
        "Options": {}})
    src = joined["InterfaceName"]["SrcName"]
    host.run(["ip", "link", "set", src, "netns", CONTAINER])
    host.ctr("ip", "link", "set", src, "name", "eth0")
    host.ctr("ip", "addr", "add", addresses[0], "dev", "eth0")
    if address6:
        host.ctr("sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0")
        host.ctr("ip", "addr", "add", address6, "dev", "eth0", "nodad")
    host.ctr("ip", "link", "set", "eth0", "up")
    for route in joined["StaticRoutes"]:  # connected ones (RouteType 1) first, as Docker
        assert route["RouteType"] == 1, route
        host.ctr("ip", "route", "add", route["Destination"], "dev", "eth0", "scope", "link")
    host.ctr("ip", "route", "add", "default", "via", joined["Gateway"])
    if address6:
        gateway6 = joined["GatewayIPv6"]
        found = host.ctr("ip", "-6", "route", "get", gateway6).split()
        device = found[found.index("dev") + 1]  # Docker's RouteGet of the gateway
        host.ctr("ip", "-6", "route", "add", "default", "via", gateway6, "dev", device)
    return addresses, endpoint


def docker_rm(host: PluginHost, docker_id: str, endpoint: str, pool: dict[str, Any],
              address: str) -> None:
    """The container's end and `docker network rm`, as dockerd calls them."""
    docker_rm_pools(host, docker_id, endpoint, [(pool, address)])


def docker_rm_pools(host: PluginHost, docker_id: str, endpoint: str,
                    held: list[tuple[dict[str, Any], str]]) -> None:
    """docker_rm of an endpoint with an address of each pool HELD names."""
    plugin, ids = host.plugin, {"NetworkID": docker_id, "EndpointID": endpoint}
    plugin.call("NetworkDriver.Leave", ids)
    host.ctr("ip", "link", "set", "eth0", "down")
    host.ctr("ip", "link", "set", "eth0", "name", "nbd" + endpoint[:12])
    host.ctr("ip", "link", "set", "nbd" + endpoint[:12], "netns", "1")
    plugin.call("NetworkDriver.DeleteEndpoint", ids)
    for pool, address in held:
        plugin.call("IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": address})
    host.run(["ip", "netns", "del", CONTAINER])
    plugin.call("NetworkDriver.DeleteNetwork", {"NetworkID": docker_id})
    for pool, _ in held:
        plugin.call("IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})


def listed(host: PluginHost) -> list[str]:
    return host.netbay("network", "ls", "--format",
                       "{{.Name}} {{.Driver}} {{.Scope}}").stdout.splitlines()


def host_addresses(host: PluginHost, family: str = "-4") -> str:
    return host.run(["ip", family, "-br", "addr"]).stdout


def pings(host: PluginHost, target: str, family: str = "-4") -> bool:
    return "1 received" in host.ctr("ping", family, "-c", "1", "-W", "1", target, check=False)


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


def share6_held(host: PluginHost, driver: str, block6: IPv6Network) -> bool:
    """Whether HOST holds its share's IPv6 block: an overlay share's bridge has the block's
    first address, a routed one's block is a blackhole route."""
    if driver == "overlay":
        return f"{block6[1]}/{block6.prefixlen}" in host_addresses(host, "-6")
    return f"blackhole {block6} " in host.run(["ip", "-6", "route"]).stdout


@pytest.mark.parametrize(("driver", "subnet", "subnet6", "prefix6", "block6", "gateway6"), [
    ("overlay", "10.245.0.0/16", "fd45:1::/48", 64, 64, None),
    ("routed", "10.246.0.0/16", "fd46:1::/48", 128, 122, LINK_LOCAL),
])
def test_two_docker_hosts_make_one_dual_stack_cluster_network(
    cluster: Cluster, hosts: list[PluginHost], driver: str, subnet: str, subnet6: str,
    prefix6: int, block6: int, gateway6: str | None,
) -> None:
    name = f"d6{driver}"
    docker_ids = [f"{i}{driver[0]}" * 32 for i in (3, 4)]
    created = [docker_network_create6(h, i, driver, name, subnet, subnet6)
               for h, i in zip(hosts, docker_ids, strict=True)]
    [record] = [json.loads(v) for k, v in cluster.record() if k.endswith(f"/networks/{name}")]
    assert (record["driver"], record["subnet"], record["subnet6"]) == (driver, subnet, subnet6)
    for host in hosts:
        assert listed(host).count(f"{name} {driver} global") == 1
    made = [docker_run_pools(h, i, pools)
            for h, i, (pools, _) in zip(hosts, docker_ids, created, strict=True)]
    addresses6 = [IPv6Interface(addresses[1]) for addresses, _ in made]
    assert all(a.ip in IPv6Network(subnet6) and a.network.prefixlen == prefix6
               for a in addresses6), addresses6
    blocks6 = [IPv6Network((a.ip, block6), strict=False) for a in addresses6]
    assert blocks6[0] != blocks6[1]
    # the IPv6 gateway: the second host's IPAM gave the one its container really uses
    real6 = [gateway6 or str(block[1]) for block in blocks6]
    assert created[1][1] == f"{real6[1]}/{IPv6Network(subnet6).prefixlen}"
    for host, gateway in zip(hosts, real6, strict=True):
        route = host.ctr("ip", "-6", "route", "show", "default").split()
        assert route[:3] == ["default", "via", gateway], route
    h1, h2 = hosts
    v4 = [IPv4Interface(addresses[0]).ip for addresses, _ in made]
    wait_until(lambda: pings(h1, str(addresses6[1].ip), "-6"), 40,
               f"h1's container reaching h2's over {driver} by IPv6", interval=0.5)
    assert pings(h2, str(addresses6[0].ip), "-6")
    wait_until(lambda: pings(h1, str(v4[1])), 30,
               f"h1's container reaching h2's over {driver} by IPv4", interval=0.5)
    assert pings(h2, str(v4[0]))
    assert share6_held(h1, driver, blocks6[0])

    # `docker network rm` on h1: h1's share goes (both families), the cluster network stays
    docker_rm_pools(h1, docker_ids[0], made[0][1], list(zip(created[0][0], made[0][0],
                                                            strict=True)))
    assert json.loads((h1.state / "docker-networks.json").read_text()) == {}
    assert f"{name} {driver} global" in listed(h2)
    assert not share6_held(h1, driver, blocks6[0])
    docker_rm_pools(h2, docker_ids[1], made[1][1], list(zip(created[1][0], made[1][0],
                                                            strict=True)))
    wait_until(lambda: h1.netbay("network", "rm", name, check=False).returncode == 0, 20,
               f"netbay network rm {name}", interval=0.5)
    for host in hosts:
        assert not any(line.startswith(f"{name} ") for line in listed(host))
