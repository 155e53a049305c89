"""Docker's remote NetworkDriver and IpamDriver (docker_plugin/) on the fakes: every call
through the plugin's routes as dockerd makes it, the record and the fake kernel after each,
and bad input refused with netbay's one line and nothing changed."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from netbay import NetworkSpec
from netbay.docker_plugin.cluster import Cluster, DockerClusterNetworks
from netbay.docker_plugin.ipam import Ipam
from netbay.docker_plugin.network import NetworkDriver
from netbay.docker_plugin.server import PluginRoutes, staging_namespace
from netbay.model import SubnetConfig
from netbay.testing import FakeHost, fake_host

NETWORK = "4c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170615243"
ENDPOINT = "9d1f0c3a5b7e4d2f8a6c1b3e5d7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f"
SRC = "nbd9d1f0c3a5b7e"
GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}


class NoCluster:
    """A node that joined no cluster."""

    def joined(self) -> bool:
        return False

    def create_network(self, spec: NetworkSpec) -> Any:
        raise AssertionError("not joined")

    def global_network(self, name: str) -> Any:
        return None

    def global_networks(self) -> list[Any]:
        return []

    def withdraw_names(self, network: str) -> None:
        pass


class Docker:
    """dockerd's side: each call as its remote driver and remote IPAM send it."""

    def __init__(self, fake: FakeHost, cluster: Cluster | None = None) -> None:
        self.fake = fake
        staging = staging_namespace(fake.host)
        clusters = DockerClusterNetworks(fake.host, cluster or NoCluster())
        ipam = Ipam(fake.host, clusters)
        self.changes = 0
        self.routes = PluginRoutes(
            NetworkDriver(fake.host, ipam, staging, clusters), ipam, self._changed
        )

    def _changed(self) -> None:
        self.changes += 1

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, reply = self.routes.dispatch("POST", path, body)
        assert status == 200, reply
        assert isinstance(reply, dict)
        return reply

    def network(self, generic: dict[str, str], pool: str = "",
                network_id: str = NETWORK) -> dict[str, Any]:
        """`docker network create -d netbay --ipam-driver netbay [--subnet POOL] -o ...`:
        RequestPool, RequestAddress (gateway), CreateNetwork; the CreateNetwork reply."""
        got = self.call("/IpamDriver.RequestPool", {"AddressSpace": "netbay", "Pool": pool,
                                                    "SubPool": "", "Options": {}, "V6": False})
        gateway = self.call("/IpamDriver.RequestAddress",
                            {"PoolID": got["PoolID"], "Address": "", "Options": GATEWAY})
        return self.call("/NetworkDriver.CreateNetwork", {
            "NetworkID": network_id,
            "Options": {"com.docker.network.enable_ipv6": False,
                        "com.docker.network.generic": generic},
            "IPv4Data": [{"AddressSpace": "netbay", "Pool": got["Pool"],
                          "Gateway": gateway["Address"]}],
        })

    def endpoint(
        self, ip: str = "", mac: str = "", pool: str = ""
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`docker run --network N [--ip IP] [--mac-address MAC]`: RequestAddress,
        CreateEndpoint, Join; the CreateEndpoint and Join replies. POOL: Docker's view of
        the network (default: the subnet of the last network made)."""
        pool = pool or str(self.fake.host.networks()[-1].subnets[0].subnet)
        address = self.call("/IpamDriver.RequestAddress",
                            {"PoolID": f"netbay/{pool}", "Address": ip, "Options": {}})
        created = self.call("/NetworkDriver.CreateEndpoint", {
            "NetworkID": NETWORK, "EndpointID": ENDPOINT, "Options": {},
            "Interface": {"Address": address["Address"], "AddressIPv6": "", "MacAddress": mac},
        })
        sandbox = self.fake.kernel.runtime_netns(self.fake.host.paths.root / "sandbox")
        joined = self.call("/NetworkDriver.Join", {"NetworkID": NETWORK, "EndpointID": ENDPOINT,
                                                  "SandboxKey": str(sandbox), "Options": {}})
        return created, joined


@pytest.fixture
def docker(tmp_path: Path) -> Docker:
    return Docker(fake_host(tmp_path))


def test_activate_and_capabilities(docker: Docker) -> None:
    assert docker.call("/Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert docker.call("/NetworkDriver.GetCapabilities") == {
        "Scope": "local", "ConnectivityScope": "local"}
    assert docker.call("/IpamDriver.GetCapabilities") == {
        "RequiresMACAddress": False, "RequiresRequestReplay": False}
    assert docker.call("/IpamDriver.GetDefaultAddressSpaces") == {
        "LocalDefaultAddressSpace": "netbay", "GlobalDefaultAddressSpace": "netbay"}
    assert docker.call("/NetworkDriver.DiscoverNew", {"DiscoveryType": 1}) == {}
    assert docker.call("/NetworkDriver.DiscoverDelete", {"DiscoveryType": 1}) == {}


def test_unimplemented_calls_are_404(docker: Docker) -> None:
    status, reply = docker.routes.dispatch("POST", "/NetworkDriver.AllocateNetwork", {})
    assert (status, reply) == (
        404, {"Err": "/NetworkDriver.AllocateNetwork is not implemented by the netbay plugin"})


def test_create_network_records_a_netbay_network(docker: Docker) -> None:
    assert docker.network({"netbay.driver": "bridge", "com.docker.network.bridge.enable_icc":
                           "false"}, pool="10.77.0.0/24") == {}
    network = docker.fake.host.network(f"docker-{NETWORK[:12]}")
    assert network.driver == "bridge"
    assert network.labels == {"com.docker.network.id": NETWORK}
    assert network.options == {"com.docker.network.bridge.enable_icc": "false"}
    assert [(str(s.subnet), str(s.gateway)) for s in network.subnets] == [
        ("10.77.0.0/24", "10.77.0.1")]
    assert network.device in docker.fake.kernel.links


def test_network_name_from_option(docker: Docker) -> None:
    docker.network({"netbay.name": "web"})
    assert docker.fake.host.network("web").labels["com.docker.network.id"] == NETWORK


def test_pool_and_gateway_chosen_by_netbay(docker: Docker) -> None:
    got = docker.call("/IpamDriver.RequestPool", {"Pool": "", "V6": False})
    assert got == {"PoolID": "netbay/172.18.0.0/16", "Pool": "172.18.0.0/16", "Data": {}}
    second = docker.call("/IpamDriver.RequestPool", {"Pool": "", "V6": False})
    assert second["Pool"] != got["Pool"]  # the first is held until its network is made
    assert docker.call("/IpamDriver.RequestAddress", {
        "PoolID": got["PoolID"], "Address": "172.18.0.254", "Options": GATEWAY,
    }) == {"Address": "172.18.0.254/16", "Data": {}}


@pytest.mark.parametrize(("generic", "pool", "error"), [
    ({"netbay.driver": "nope"}, "", "invalid driver 'nope': unknown driver (known: bridge, "
     "external, host, ipvlan, macvlan, null, overlay, routed)"),
    ({"parent": "eth0"}, "", "invalid opt 'parent': unknown option for driver bridge"),
    ({"netbay.driver": "overlay"}, "", "invalid netbay.driver 'overlay': a cluster-wide "
     "network needs this node in a netbay cluster (netbay cluster join)"),
])
def test_bad_network_refused_with_nothing_changed(
    docker: Docker, generic: dict[str, str], pool: str, error: str
) -> None:
    before = docker.fake.snapshot()
    assert docker.network(generic, pool) == {"Err": error}
    assert docker.fake.snapshot() == before
    assert docker.changes == 0


def test_subnet_clash_refused_with_nothing_changed(docker: Docker) -> None:
    docker.fake.host.create_network(NetworkSpec(
        "mine", subnets=(SubnetConfig(IPv4Network("10.9.0.0/16")),)))
    before = docker.fake.snapshot()
    assert docker.call("/IpamDriver.RequestPool", {"Pool": "10.9.1.0/24", "V6": False}) == {
        "Error": "invalid subnet '10.9.1.0/24': overlaps 10.9.0.0/16 of network mine"}
    reply = docker.call("/NetworkDriver.CreateNetwork", {
        "NetworkID": NETWORK, "Options": {},
        "IPv4Data": [{"AddressSpace": "x", "Pool": "10.9.1.0/24", "Gateway": "10.9.1.1/24"}]})
    assert reply == {"Err": "invalid subnet '10.9.1.0/24': overlaps 10.9.0.0/16 of network mine"}
    assert docker.fake.snapshot() == before


def test_run_joins_through_the_staging_namespace(docker: Docker) -> None:
    docker.network({}, pool="10.77.0.0/24")
    created, joined = docker.endpoint()
    assert created == {"Interface": {"MacAddress": "02:42:0a:4d:00:02"}}
    assert joined == {"InterfaceName": {"SrcName": SRC, "DstPrefix": "eth"},
                      "Gateway": "10.77.0.1", "StaticRoutes": [],
                      "DisableGatewayService": True}
    host, kernel = docker.fake.host, docker.fake.kernel
    sandbox = host.sandbox(ENDPOINT)
    assert sandbox is not None and sandbox.state == "external"
    assert sandbox.netns == str(host.paths.root / "sandbox")
    assert (sandbox.name, sandbox.config["runtime"], sandbox.config["network"]) == (
        f"docker-{ENDPOINT}"[:63], "docker", NETWORK)
    [(network, endpoint)] = host.container_endpoints(sandbox)
    assert (endpoint.ifname, str(endpoint.address), endpoint.mac) == (
        SRC, "10.77.0.2/24", "02:42:0a:4d:00:02")
    # the link waits in the host's namespace for Docker to move it; its pair is on the bridge
    assert kernel.links[SRC].peer == ("", endpoint.host_ifname)
    assert kernel.links[str(endpoint.host_ifname)].master == network.device
    assert kernel.namespaces[str(host.paths.root / "docker-staging")].links.keys() == {"lo"}


def test_requested_ip_and_mac_honoured(docker: Docker) -> None:
    docker.network({}, pool="10.77.0.0/24")
    created, _ = docker.endpoint(ip="10.77.0.9", mac="02:aa:bb:cc:dd:ee")
    assert created == {}  # Docker gave both: the driver may not name them again
    sandbox = docker.fake.host.sandbox(ENDPOINT)
    assert sandbox is not None
    [(_, endpoint)] = docker.fake.host.container_endpoints(sandbox)
    assert (str(endpoint.address), endpoint.mac) == ("10.77.0.9/24", "02:aa:bb:cc:dd:ee")


def test_address_in_use_refused(docker: Docker) -> None:
    docker.network({}, pool="10.77.0.0/24")
    docker.endpoint(ip="10.77.0.9")
    reply = docker.call("/IpamDriver.RequestAddress",
                        {"PoolID": "netbay/10.77.0.0/24", "Address": "10.77.0.9", "Options": {}})
    assert reply == {"Error": "invalid ip '10.77.0.9': already in use"}


def test_ports_published_and_revoked(docker: Docker) -> None:
    docker.network({}, pool="10.77.0.0/24")
    docker.endpoint()
    portmap = [
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "127.0.0.1", "HostPort": 8080,
         "HostPortEnd": 8080},
        {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": 5353, "HostPortEnd": 5353},
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "::", "HostPort": 8080, "HostPortEnd": 8080},
    ]
    assert docker.call("/NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT,
        "Options": {"com.docker.network.portmap": portmap}}) == {}
    host = docker.fake.host
    port = host.sandbox_attachment(ENDPOINT, SRC)[2].host_ifname  # type: ignore[index]
    assert port is not None and docker.fake.kernel.links[port].hairpin  # its own port
    assert host.sandbox(ENDPOINT).config["ports"] == [  # type: ignore[union-attr]
        ["tcp", "127.0.0.1", 8080, 80], ["udp", "", 5353, 53]]
    assert published(docker) == (
        {"udp . 5353 : 10.77.0.2 . 53"}, {"127.0.0.1 . tcp . 8080 : 10.77.0.2 . 80"})
    assert docker.call("/NetworkDriver.EndpointOperInfo", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT})["Value"]["netbay.ports"] == [
        "80/tcp -> 127.0.0.1:8080", "53/udp -> 0.0.0.0:5353"]
    assert docker.call("/NetworkDriver.RevokeExternalConnectivity", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT}) == {}
    assert host.sandbox(ENDPOINT).config["ports"] == []  # type: ignore[union-attr]
    assert published(docker) == (set(), set())


def published(docker: Docker) -> tuple[set[str], set[str]]:
    """netbay's port maps: on every host address, on one."""
    table = docker.fake.nft.tables[("inet", "netbay")]
    return set(table.sets["pub_any"]), set(table.sets["pub_ip"])


def test_leave_then_delete_removes_everything(docker: Docker) -> None:
    docker.network({}, pool="10.77.0.0/24")
    docker.endpoint()
    network = docker.fake.host.network(f"docker-{NETWORK[:12]}")
    ids = {"NetworkID": NETWORK, "EndpointID": ENDPOINT}
    assert docker.call("/NetworkDriver.Leave", ids) == {}
    assert docker.fake.host.sandbox(ENDPOINT) is not None  # Docker moves the link out after
    assert docker.call("/NetworkDriver.DeleteEndpoint", ids) == {}
    assert docker.fake.host.sandbox(ENDPOINT) is None
    assert set(docker.fake.kernel.links) == {network.device}
    assert docker.call("/IpamDriver.ReleaseAddress",
                       {"PoolID": "netbay/10.77.0.0/24", "Address": "10.77.0.2/24"}) == {}
    assert docker.call("/NetworkDriver.DeleteNetwork", {"NetworkID": NETWORK}) == {}
    assert docker.fake.host.network_named(network.name) is None
    assert docker.call("/IpamDriver.ReleasePool", {"PoolID": "netbay/10.77.0.0/24"}) == {}
    assert docker.call("/NetworkDriver.DeleteNetwork", {"NetworkID": NETWORK}) == {}  # again


def test_join_of_unknown_endpoint_refused(docker: Docker) -> None:
    docker.network({}, pool="10.77.0.0/24")
    before = docker.fake.snapshot()
    assert docker.call("/NetworkDriver.Join", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT, "SandboxKey": "/nowhere"}) == {
        "Err": f"endpoint {ENDPOINT} not found"}
    assert docker.fake.snapshot() == before


def test_malformed_request_refused(docker: Docker) -> None:
    assert docker.call("/NetworkDriver.CreateNetwork", {"Options": {}}) == {
        "Err": "invalid NetworkID None: a non-empty string is required"}
