"""Cluster-wide networks through Docker's plugin (docker_plugin/cluster.py) on the fakes:
a node of a fake cluster whose etcd is a dict; CreateNetwork makes or adopts the network,
RequestPool answers the cluster's pool, RequestAddress an address of this node's share,
Join the gateway and routes, DeleteNetwork leaves the cluster network alone."""

from __future__ import annotations

import json
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from test_docker_plugin import ENDPOINT, NETWORK, SRC, Docker

from netbay.cluster.layout import GlobalNetwork
from netbay.drivers import cluster_driver
from netbay.model import Network, NetworkSpec, SubnetConfig
from netbay.testing import fake_host

OTHER = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"  # host 2's id
BLOCKS = {"overlay": IPv4Network("10.77.5.0/24"), "routed": IPv4Network("10.77.5.64/26")}


class FakeCluster:
    """The cluster agent of a joined node: global networks by name, this node's block."""

    def __init__(self) -> None:
        self.networks: dict[str, GlobalNetwork] = {}

    def joined(self) -> bool:
        return True

    def create_network(self, spec: NetworkSpec) -> GlobalNetwork:
        self.networks[spec.name] = GlobalNetwork(
            name=spec.name, id="c" * 64, subnet=spec.subnets[0].subnet, subnet_size=24,
            vni=7, created="", driver=spec.driver)
        return self.networks[spec.name]

    def global_network(self, name: str) -> GlobalNetwork | None:
        return self.networks.get(name)

    def global_networks(self) -> list[GlobalNetwork]:
        return list(self.networks.values())

    def withdraw_names(self, network: str) -> None:
        pass

    # engine.networks.ClusterNetworks: the share, as ClusterAgent.local_share makes it
    def local_share(self, name: str) -> tuple[NetworkSpec, str] | None:
        found = self.networks.get(name)
        if found is None:
            return None
        driver = cluster_driver(found.driver)
        return NetworkSpec(
            name=name, driver=found.driver, subnets=(SubnetConfig(BLOCKS[found.driver]),),
            options=driver.share_options(found.subnet, found.vni, {}, 1500),
        ), found.id

    def share_made(self, network: Network) -> None:
        pass

    def more_block(self, network: Network, version: int = 4) -> IPv4Network | None:
        return None


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def docker(tmp_path: Path, cluster: FakeCluster) -> Docker:
    fake = fake_host(tmp_path)
    fake.host.add_cluster_networks(cluster)
    return Docker(fake, cluster)


def overlay(name: str = "podnet") -> dict[str, str]:
    return {"netbay.driver": "overlay", "netbay.name": name}


def test_capabilities_are_global_on_a_joined_node(docker: Docker) -> None:
    assert docker.call("/NetworkDriver.GetCapabilities") == {
        "Scope": "local", "ConnectivityScope": "global"}


def test_create_makes_the_cluster_network_and_no_share_yet(
    docker: Docker, cluster: FakeCluster, tmp_path: Path
) -> None:
    assert docker.network(overlay(), pool="10.77.0.0/16") == {}
    made = cluster.networks["podnet"]
    assert (made.driver, str(made.subnet), dict(made.labels)) == ("overlay", "10.77.0.0/16", {})
    assert docker.fake.host.network_named("podnet") is None  # leased by the first endpoint
    mapping = docker.fake.host.paths.root / "docker-networks.json"
    assert json.loads(mapping.read_text()) == {NETWORK: "podnet"}


def test_second_host_adopts_and_a_mismatch_is_refused(
    docker: Docker, cluster: FakeCluster
) -> None:
    cluster.create_network(NetworkSpec(name="podnet", driver="overlay",
                                       subnets=(SubnetConfig(IPv4Network("10.77.0.0/16")),)))
    pool = docker.call("/IpamDriver.RequestPool", {"Pool": "10.77.0.0/16", "V6": False})
    assert pool == {"PoolID": "netbay/10.77.0.0/16", "Pool": "10.77.0.0/16", "Data": {}}
    assert docker.network(overlay(), "10.77.0.0/16", OTHER) == {}
    before = docker.fake.snapshot()
    assert docker.network(overlay(), "10.78.0.0/16", NETWORK) == {"Err": (
        "network podnet exists in the cluster with subnet 10.77.0.0/16, not 10.78.0.0/16 "
        "(docker network create --subnet 10.77.0.0/16)")}
    assert docker.network({"netbay.driver": "routed", "netbay.name": "podnet"},
                          "10.77.0.0/16", NETWORK) == {
        "Err": "network podnet exists in the cluster with driver overlay, not routed"}
    assert docker.fake.snapshot() == before


def test_overlay_endpoint_gets_an_address_of_this_nodes_block(docker: Docker) -> None:
    docker.network(overlay(), pool="10.77.0.0/16")
    created, joined = docker.endpoint(pool="10.77.0.0/16")
    share = docker.fake.host.network("podnet")
    assert [str(s.subnet) for s in share.subnets] == ["10.77.5.0/24"]
    attached = docker.fake.host.sandbox_attachment(ENDPOINT, SRC)
    assert attached is not None and attached[2].address == IPv4Interface("10.77.5.2/24")
    assert joined["Gateway"] == "10.77.5.1" and joined["StaticRoutes"] == []


def test_routed_endpoint_is_a_32_with_the_link_local_gateway(docker: Docker) -> None:
    docker.network({"netbay.driver": "routed", "netbay.name": "calico"}, pool="10.77.0.0/16")
    address = docker.call("/IpamDriver.RequestAddress",
                          {"PoolID": "netbay/10.77.0.0/16", "Address": "", "Options": {}})
    assert address == {"Address": "10.77.5.66/32", "Data": {}}
    docker.call("/IpamDriver.ReleaseAddress",
                {"PoolID": "netbay/10.77.0.0/16", "Address": address["Address"]})
    _, joined = docker.endpoint(pool="10.77.0.0/16")
    assert joined["Gateway"] == "169.254.1.1"
    assert joined["StaticRoutes"] == [{"Destination": "169.254.1.1/32", "RouteType": 1}]


def test_delete_network_removes_only_this_nodes_share_and_id(
    docker: Docker, cluster: FakeCluster, tmp_path: Path
) -> None:
    docker.network(overlay(), pool="10.77.0.0/16")
    docker.endpoint(pool="10.77.0.0/16")
    ids = {"NetworkID": NETWORK, "EndpointID": ENDPOINT}
    docker.call("/NetworkDriver.Leave", ids)
    docker.call("/NetworkDriver.DeleteEndpoint", ids)
    assert docker.call("/NetworkDriver.DeleteNetwork", {"NetworkID": NETWORK}) == {}
    assert docker.fake.host.network_named("podnet") is None and "podnet" in cluster.networks
    assert json.loads((docker.fake.host.paths.root / "docker-networks.json").read_text()) == {}
    assert docker.call("/NetworkDriver.DeleteNetwork", {"NetworkID": NETWORK}) == {}  # again
