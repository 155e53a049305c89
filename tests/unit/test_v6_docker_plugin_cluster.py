"""Dual-stack cluster networks through Docker's plugin (`docker network create -d netbay
--ipam-driver netbay --ipv6 --subnet V4 --subnet V6 -o netbay.driver=overlay|routed`) on the
fakes: CreateNetwork with IPv4Data and IPv6Data makes the cluster network dual stack or
adopts one whose driver, families and both subnets match (else one line naming the right
`docker network create`, and nothing changed); RequestPool V6 answers the cluster's IPv6
subnet, RequestAddress in it an address of this node's IPv6 block with the prefix the
container holds, the gateway request the gateway the container gets; Join gives GatewayIPv6
and, on a routed network, the link route Docker needs to reach Calico's link-local."""

from __future__ import annotations

import json
from ipaddress import IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from test_docker_cluster_networks import BLOCKS, OTHER, FakeCluster
from test_docker_plugin import ENDPOINT, GATEWAY, NETWORK, SRC, Docker

from netbay.cluster.layout import GlobalNetwork
from netbay.drivers import cluster_driver
from netbay.model import NetworkSpec, SubnetConfig
from netbay.testing import fake_host

POOL4, POOL6 = "10.77.0.0/16", "fd77::/48"
BLOCKS6 = {"overlay": IPv6Network("fd77:0:0:5::/64"), "routed": IPv6Network("fd77::140/122")}
LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"  # Calico's gateway (drivers/routed.py GATEWAY6)


class DualStackCluster(FakeCluster):
    """FakeCluster whose networks may have an IPv6 subnet, and this node an IPv6 block."""

    def create_network(self, spec: NetworkSpec) -> GlobalNetwork:
        v4 = next(s.subnet for s in spec.subnets if s.version == 4)
        v6 = next((s.subnet for s in spec.subnets if s.version == 6), None)
        assert isinstance(v4, IPv4Network) and (v6 is None or isinstance(v6, IPv6Network))
        self.networks[spec.name] = GlobalNetwork(
            name=spec.name, id="c" * 64, subnet=v4, subnet_size=24, vni=7, created="",
            driver=spec.driver, subnet6=v6 if spec.ipv6 or v6 else None)
        return self.networks[spec.name]

    def local_share(self, name: str) -> tuple[NetworkSpec, str] | None:
        found = self.networks.get(name)
        if found is None:
            return None
        blocks: list[SubnetConfig] = [SubnetConfig(BLOCKS[found.driver])]
        if found.subnet6 is not None:
            blocks.append(SubnetConfig(BLOCKS6[found.driver]))
        options = cluster_driver(found.driver).share_options(found.subnet, found.vni, {}, 1500,
                                                             found.subnet6)
        return NetworkSpec(name=name, driver=found.driver, subnets=tuple(blocks),
                           options=options, ipv6=found.subnet6 is not None), found.id


class DualDocker(Docker):
    def create(self, driver: str, pool4: str, pool6: str | None,
               network_id: str = NETWORK, name: str = "podnet") -> dict[str, Any]:
        """`docker network create ... [--ipv6 --subnet POOL6] -o netbay.driver=DRIVER`:
        RequestPool and the gateway's RequestAddress of each family, CreateNetwork; on a
        refusal Docker's releases (the gateways, the pools). The CreateNetwork reply."""
        data: dict[str, list[dict[str, str]]] = {"IPv4Data": [], "IPv6Data": []}
        pools = []
        for key, pool, v6 in (("IPv4Data", pool4, False), ("IPv6Data", pool6, True)):
            if pool is None:
                continue
            got = self.call("/IpamDriver.RequestPool", {"AddressSpace": "netbay", "Pool": pool,
                                                        "SubPool": "", "Options": {}, "V6": v6})
            assert got["Pool"] == pool, got
            gateway = self.call("/IpamDriver.RequestAddress",
                                {"PoolID": got["PoolID"], "Address": "", "Options": GATEWAY})
            data[key].append({"AddressSpace": "netbay", "Pool": pool,
                              "Gateway": gateway["Address"]})
            pools.append((got["PoolID"], gateway["Address"]))
        reply = self.call("/NetworkDriver.CreateNetwork", {
            "NetworkID": network_id, "Options": {
                "com.docker.network.enable_ipv6": pool6 is not None,
                "com.docker.network.generic": {"netbay.driver": driver, "netbay.name": name}},
            **data})
        for pool_id, gateway in pools if "Err" in reply else ():
            self.call("/IpamDriver.ReleaseAddress", {"PoolID": pool_id, "Address": gateway})
            self.call("/IpamDriver.ReleasePool", {"PoolID": pool_id})
        return reply

    def address(self, pool: str) -> str:
        got = self.call("/IpamDriver.RequestAddress",
                        {"PoolID": f"netbay/{pool}", "Address": "", "Options": {}})
        assert "Error" not in got, got
        return str(got["Address"])

    def run(self, network_id: str = NETWORK) -> tuple[str, str, dict[str, Any]]:
        """`docker run --network podnet`: an address of each pool, CreateEndpoint, Join."""
        interface = {"Address": self.address(POOL4), "AddressIPv6": self.address(POOL6),
                     "MacAddress": ""}
        self.call("/NetworkDriver.CreateEndpoint", {
            "NetworkID": network_id, "EndpointID": ENDPOINT, "Options": {},
            "Interface": interface})
        sandbox = self.fake.kernel.runtime_netns(self.fake.host.paths.root / "sandbox")
        joined = self.call("/NetworkDriver.Join", {
            "NetworkID": network_id, "EndpointID": ENDPOINT, "SandboxKey": str(sandbox),
            "Options": {}})
        assert "Err" not in joined, joined
        return interface["Address"], interface["AddressIPv6"], joined


@pytest.fixture
def cluster() -> DualStackCluster:
    return DualStackCluster()


@pytest.fixture
def docker(tmp_path: Path, cluster: DualStackCluster) -> DualDocker:
    fake = fake_host(tmp_path)
    fake.host.add_cluster_networks(cluster)
    return DualDocker(fake, cluster)


def _made(cluster: DualStackCluster, driver: str, v6: bool = True) -> GlobalNetwork:
    """The cluster network podnet as another host (the CLI, or its dockerd) made it."""
    subnets = [SubnetConfig(IPv4Network(POOL4))]
    subnets += [SubnetConfig(IPv6Network(POOL6))] if v6 else []
    return cluster.create_network(NetworkSpec(name="podnet", driver=driver,
                                              subnets=tuple(subnets), ipv6=v6))


@pytest.mark.parametrize("driver", ["overlay", "routed"])
def test_create_makes_the_cluster_network_dual_stack(
    docker: DualDocker, cluster: DualStackCluster, driver: str
) -> None:
    assert docker.create(driver, POOL4, POOL6) == {}
    made = cluster.networks["podnet"]
    assert (made.driver, str(made.subnet), str(made.subnet6)) == (driver, POOL4, POOL6)
    assert docker.fake.host.network_named("podnet") is None  # leased by the first endpoint
    mapping = docker.fake.host.paths.root / "docker-networks.json"
    assert json.loads(mapping.read_text()) == {NETWORK: "podnet"}


def test_ipv6_pool_of_a_cluster_network_is_answered_as_it_is(
    docker: DualDocker, cluster: DualStackCluster
) -> None:
    _made(cluster, "overlay")
    pool = docker.call("/IpamDriver.RequestPool", {"Pool": POOL6, "V6": True})
    assert pool == {"PoolID": f"netbay/{POOL6}", "Pool": POOL6, "Data": {}}
    # a pool overlapping it is not the cluster's: Docker's create then names the right one
    other = docker.call("/IpamDriver.RequestPool", {"Pool": "fd77::/64", "V6": True})
    assert other["Pool"] == "fd77::/64"


def test_overlay_second_host_adopts_and_addresses_from_its_64(
    docker: DualDocker, cluster: DualStackCluster
) -> None:
    _made(cluster, "overlay")
    assert docker.create("overlay", POOL4, POOL6, OTHER) == {}
    share = docker.fake.host.network("podnet")  # made by the IPv6 gateway request
    assert [str(s.subnet) for s in share.subnets] == ["10.77.5.0/24", "fd77:0:0:5::/64"]
    gateway6 = docker.call("/IpamDriver.RequestAddress",
                           {"PoolID": f"netbay/{POOL6}", "Address": "", "Options": GATEWAY})
    assert gateway6 == {"Address": "fd77:0:0:5::1/48", "Data": {}}  # the /64's, not the /48's
    assert docker.call("/IpamDriver.RequestAddress", {
        "PoolID": f"netbay/{POOL4}", "Address": "", "Options": GATEWAY})["Address"] == \
        "10.77.0.1/16"  # IPv4's as before: the pool's first address
    address, address6, joined = docker.run(OTHER)
    assert (address, address6) == ("10.77.5.2/24", "fd77:0:0:5::2/64")
    assert (joined["Gateway"], joined["GatewayIPv6"], joined["StaticRoutes"]) == (
        "10.77.5.1", "fd77:0:0:5::1", [])
    attached = docker.fake.host.sandbox_attachment(ENDPOINT, SRC)
    assert attached is not None
    assert (attached[2].address6, attached[2].gateway6) == (
        IPv6Interface("fd77:0:0:5::2/64"), IPv6Address("fd77:0:0:5::1"))


def test_routed_endpoint_is_a_128_via_calicos_link_local(
    docker: DualDocker, cluster: DualStackCluster
) -> None:
    assert docker.create("routed", POOL4, POOL6) == {}  # the first host: made here
    gateway6 = docker.call("/IpamDriver.RequestAddress",
                           {"PoolID": f"netbay/{POOL6}", "Address": "", "Options": GATEWAY})
    assert gateway6 == {"Address": f"{LINK_LOCAL}/48", "Data": {}}
    address, address6, joined = docker.run()
    assert (address, address6) == ("10.77.5.66/32", "fd77::142/128")
    assert (joined["Gateway"], joined["GatewayIPv6"]) == ("169.254.1.1", LINK_LOCAL)
    assert joined["StaticRoutes"] == [{"Destination": "169.254.1.1/32", "RouteType": 1},
                                      {"Destination": f"{LINK_LOCAL}/128", "RouteType": 1}]
    attached = docker.fake.host.sandbox_attachment(ENDPOINT, SRC)
    assert attached is not None and attached[2].address6 == IPv6Interface("fd77::142/128")


@pytest.mark.parametrize(("driver", "v6", "pools", "message"), [
    ("overlay", True, (POOL4, "fd78::/48"), "network podnet exists in the cluster with subnet "
     "fd77::/48, not fd78::/48 (docker network create --ipv6 --subnet 10.77.0.0/16 --subnet "
     "fd77::/48)"),
    ("routed", True, ("10.78.0.0/16", POOL6), "network podnet exists in the cluster with "
     "subnet 10.77.0.0/16, not 10.78.0.0/16 (docker network create --ipv6 --subnet "
     "10.77.0.0/16 --subnet fd77::/48)"),
    ("overlay", True, (POOL4, None), "network podnet exists in the cluster dual stack, and "
     "Docker would give its containers no IPv6 address (docker network create --ipv6 --subnet "
     "10.77.0.0/16 --subnet fd77::/48)"),
    ("overlay", False, (POOL4, POOL6), "network podnet exists in the cluster IPv4 only, not "
     "dual stack (docker network create --subnet 10.77.0.0/16, without --ipv6)"),
])
def test_a_mismatch_of_either_family_is_one_line_and_changes_nothing(
    docker: DualDocker, cluster: DualStackCluster, driver: str, v6: bool,
    pools: tuple[str, str | None], message: str,
) -> None:
    _made(cluster, driver, v6)
    record, before = dict(cluster.networks), docker.fake.snapshot()
    assert docker.create(driver, *pools, OTHER) == {"Err": message}
    # the share the IPv6 gateway request made goes with Docker's ReleasePool
    assert cluster.networks == record and docker.fake.snapshot() == before
    assert not (docker.fake.host.paths.root / "docker-networks.json").exists()


def test_an_ipv6_only_docker_network_is_refused(
    docker: DualDocker, cluster: DualStackCluster
) -> None:
    before = docker.fake.snapshot()
    reply = docker.call("/NetworkDriver.CreateNetwork", {
        "NetworkID": NETWORK, "Options": {"com.docker.network.generic": {
            "netbay.driver": "overlay", "netbay.name": "podnet"}},
        "IPv4Data": [], "IPv6Data": [{"AddressSpace": "netbay", "Pool": POOL6}]})
    assert reply == {"Err": "invalid ipv4 False: a cluster-wide network needs IPv4: its nodes "
                     "reach each other over the IPv4 underlay"}
    assert cluster.networks == {} and docker.fake.snapshot() == before


def test_docker_network_rm_removes_the_dual_stack_share(
    docker: DualDocker, cluster: DualStackCluster
) -> None:
    docker.create("overlay", POOL4, POOL6)
    address, address6, _ = docker.run()
    ids = {"NetworkID": NETWORK, "EndpointID": ENDPOINT}
    docker.call("/NetworkDriver.Leave", ids)
    docker.call("/NetworkDriver.DeleteEndpoint", ids)
    for pool, held in ((POOL4, address), (POOL6, address6)):
        docker.call("/IpamDriver.ReleaseAddress", {"PoolID": f"netbay/{pool}", "Address": held})
    assert docker.call("/NetworkDriver.DeleteNetwork", {"NetworkID": NETWORK}) == {}
    for pool in (POOL4, POOL6):
        assert docker.call("/IpamDriver.ReleasePool", {"PoolID": f"netbay/{pool}"}) == {}
    assert docker.fake.host.network_named("podnet") is None and "podnet" in cluster.networks
