"""IPv6 in the Docker-shaped entry points (issue 17), on the fakes: the Engine API's request
bodies (EnableIPv6, EnableIPv4, IPAM.Config of both families, IPAMConfig.IPv6Address of
container create and network connect), the remote NetworkDriver / IpamDriver protocol
(IPv6Data, RequestPool V6, AddressIPv6, GatewayIPv6), and netbayd's default bridge
settings (--ipv6, --fixed-cidr-v6)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Interface, IPv6Network, ip_network
from pathlib import Path
from typing import Any

import pytest

from netbay import NetworkSpec
from netbay.daemon import docker_json
from netbay.docker_plugin.cluster import DockerClusterNetworks
from netbay.docker_plugin.ipam import Ipam
from netbay.docker_plugin.network import NetworkDriver
from netbay.docker_plugin.server import PluginRoutes, staging_namespace
from netbay.engine import Host
from netbay.engine.default_bridge import BridgeDefaults, bridge_defaults
from netbay.errors import ConfigError, NetbayError
from netbay.model import AttachRequest
from netbay.testing import FakeHost, fake_host, fake_paths

NETWORK = "4c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170615243"
ENDPOINT = "9d1f0c3a5b7e4d2f8a6c1b3e5d7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f"
SRC = "nbd9d1f0c3a5b7e"
GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}
V6 = "fd12:3456::/64"


# --- the Engine API's requests -------------------------------------------------------------
def test_network_create_body_of_both_families() -> None:
    spec = docker_json.network_spec({
        "Name": "net6", "EnableIPv6": True, "IPAM": {"Driver": "default", "Config": [
            {"Subnet": "10.7.0.0/24"},
            {"Subnet": V6, "Gateway": "fd12:3456::fe", "IPRange": "fd12:3456::/80",
             "AuxiliaryAddresses": {"r": "fd12:3456::5"}}]}})
    assert (spec.ipv4, spec.ipv6) == (True, True)
    v4, v6 = spec.subnets
    assert (v4.subnet, v6.subnet, v6.gateway, v6.ip_range, dict(v6.aux_addresses)) == (
        ip_network("10.7.0.0/24"), IPv6Network(V6), IPv6Address("fd12:3456::fe"),
        IPv6Network("fd12:3456::/80"), {"r": IPv6Address("fd12:3456::5")})
    # API 1.47+: EnableIPv4 false is an IPv6-only network; absent or null, IPv4 is on
    only6 = docker_json.network_spec({"Name": "x", "EnableIPv4": False, "EnableIPv6": True})
    assert (only6.ipv4, only6.ipv6) == (False, True)
    assert docker_json.network_spec({"Name": "x", "EnableIPv4": None}).ipv4 is True


@pytest.mark.parametrize(("config", "message"), [
    ({"Subnet": "fd12::zz/64"}, "invalid subnet 'fd12::zz/64': not an IPv4 or IPv6 subnet in "
     "CIDR form"),
    ({"Subnet": "fd12::1/64"}, "invalid subnet 'fd12::1/64': host bits set (the subnet is "
     "fd12::/64)"),
    ({"Subnet": V6, "Gateway": "fd12:3456::g"}, "invalid gateway 'fd12:3456::g': not an IPv4 "
     "or IPv6 address"),
    ({"Subnet": V6, "IPRange": "fd12:3456::/8x"}, "invalid ip-range 'fd12:3456::/8x': not an "
     "IPv4 or IPv6 subnet in CIDR form"),
])
def test_bad_ipv6_ipam_config_names_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        docker_json.network_spec({"Name": "x", "IPAM": {"Config": [config]}})
    assert str(err.value) == message


def test_container_create_static_ipv6_in_both_shapes() -> None:
    own = docker_json.container_spec({"Cmd": ["true"], "Networks": [
        {"Network": "net6", "IPv6Address": "fd12:3456::10", "IPv4Address": "10.7.0.9"}]})
    assert own.networks == (AttachRequest("net6", ip=IPv4Address("10.7.0.9"),
                                          ip6=IPv6Address("fd12:3456::10")),)
    # Docker's (`docker create --network net6 --ip6 ... --network-alias web`)
    docker = docker_json.container_spec({
        "Image": "busybox", "Cmd": ["sleep", "9"], "Hostname": "", "Env": [],
        "HostConfig": {"NetworkMode": "net6", "Dns": ["fd12:3456::53"],
                       "ExtraHosts": ["gw:fd12:3456::1"]},
        "NetworkingConfig": {"EndpointsConfig": {"net6": {
            "IPAMConfig": {"IPv6Address": "fd12:3456::11"}, "Aliases": ["web"]}}},
    }, name="c1")
    assert (docker.name, docker.command, docker.networks) == ("c1", ("sleep", "9"), (
        AttachRequest("net6", ip6=IPv6Address("fd12:3456::11"), aliases=("web",)),))
    assert docker.dns == (IPv6Address("fd12:3456::53"),)
    assert docker.extra_hosts == (("gw", IPv6Address("fd12:3456::1")),)
    default = docker_json.container_spec({"Cmd": ["true"], "HostConfig": {}})
    assert default.networks == (AttachRequest("bridge"),)


def test_docker_port_bindings_become_publish_specs() -> None:
    """`docker run -p 8080:80 -p [fd00::1]::443 -p 127.0.0.1:53:53/udp -p 9000`."""
    spec = docker_json.container_spec({"Cmd": ["true"], "HostConfig": {"PortBindings": {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "443/tcp": [{"HostIp": "fd00::1", "HostPort": ""}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}],
        "9000/tcp": [{"HostIp": "", "HostPort": ""}]}}})
    assert spec.publish == ("8080:80/tcp", "[fd00::1]::443/tcp", "127.0.0.1:53:53/udp",
                            "9000/tcp")


def test_network_connect_ipv6_address() -> None:
    container, asked = docker_json.connect_request({
        "Container": "c1", "EndpointConfig": {"IPAMConfig": {"IPv6Address": "fd12:3456::7"},
                                              "Aliases": ["db"]}}, "net6")
    assert (container, asked) == ("c1", AttachRequest(
        "net6", ip6=IPv6Address("fd12:3456::7"), aliases=("db",)))
    for ipam, message in (({"IPv6Address": "10.0.0.7"}, "invalid ip6 '10.0.0.7': not an IPv6 "
                           "address"),
                          ({"IPv4Address": "fd12::7"}, "invalid ip 'fd12::7': not an IPv4 "
                           "address")):
        with pytest.raises(ConfigError) as err:
            docker_json.connect_request({"Container": "c", "EndpointConfig": {
                "IPAMConfig": ipam}}, "n")
        assert str(err.value) == message


# --- the remote driver protocol ------------------------------------------------------------
class Docker:
    """dockerd's side of the remote NetworkDriver and IpamDriver."""

    def __init__(self, fake: FakeHost) -> None:
        self.fake = fake
        clusters = DockerClusterNetworks(fake.host, NoCluster())
        ipam = Ipam(fake.host, clusters)
        self.routes = PluginRoutes(
            NetworkDriver(fake.host, ipam, staging_namespace(fake.host), clusters), ipam)

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, reply = self.routes.dispatch("POST", path, body)
        assert status == 200, reply
        assert isinstance(reply, dict)
        return reply

    def pool(self, pool: str, v6: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        got = self.call("/IpamDriver.RequestPool", {"AddressSpace": "netbay", "Pool": pool,
                                                    "SubPool": "", "Options": {}, "V6": v6})
        if "Error" in got:
            return got, {}
        gateway = self.call("/IpamDriver.RequestAddress",
                            {"PoolID": got["PoolID"], "Address": "", "Options": GATEWAY})
        return got, gateway

    def network(self, pool4: str | None, pool6: str | None,
                generic: dict[str, str] | None = None) -> dict[str, Any]:
        """`docker network create -d netbay --ipam-driver netbay [--ipv6] ...`."""
        data: dict[str, list[dict[str, str]]] = {"IPv4Data": [], "IPv6Data": []}
        for key, pool, v6 in (("IPv4Data", pool4, False), ("IPv6Data", pool6, True)):
            if pool is not None:
                got, gateway = self.pool(pool, v6)
                data[key].append({"AddressSpace": "netbay", "Pool": got["Pool"],
                                  "Gateway": gateway["Address"]})
        return self.call("/NetworkDriver.CreateNetwork", {
            "NetworkID": NETWORK, "Options": {
                "com.docker.network.enable_ipv6": pool6 is not None,
                "com.docker.network.generic": generic or {}}, **data})

    def endpoint(self, ip6: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
        """`docker run --network N [--ip6 IP6]`: RequestAddress of each pool, CreateEndpoint,
        Join."""
        interface = {"Address": "", "AddressIPv6": "", "MacAddress": ""}
        for s in self.fake.host.networks()[-1].subnets:
            wanted = ip6 if s.version == 6 else ""
            got = self.call("/IpamDriver.RequestAddress", {
                "PoolID": f"netbay/{s.subnet}", "Address": wanted, "Options": {}})
            assert "Error" not in got, got
            interface["Address" if s.version == 4 else "AddressIPv6"] = got["Address"]
        created = self.call("/NetworkDriver.CreateEndpoint", {
            "NetworkID": NETWORK, "EndpointID": ENDPOINT, "Options": {}, "Interface": interface})
        sandbox = self.fake.kernel.runtime_netns(self.fake.host.paths.root / "sandbox")
        joined = self.call("/NetworkDriver.Join", {"NetworkID": NETWORK, "EndpointID": ENDPOINT,
                                                  "SandboxKey": str(sandbox), "Options": {}})
        return created, joined


class NoCluster:
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


@pytest.fixture
def docker(tmp_path: Path) -> Docker:
    return Docker(fake_host(tmp_path))


def test_request_pool_v6_given_or_a_ula_64(docker: Docker) -> None:
    got, gateway = docker.pool(V6, v6=True)
    assert got == {"PoolID": f"netbay/{V6}", "Pool": V6, "Data": {}}
    assert gateway == {"Address": "fd12:3456::1/64", "Data": {}}
    chosen, _ = docker.pool("", v6=True)
    pool = IPv6Network(chosen["Pool"])
    assert pool.prefixlen == 64 and pool.subnet_of(IPv6Network("fd00::/8"))
    again, _ = docker.pool("", v6=True)  # a pool still pending is not handed out twice
    assert again["Pool"] != chosen["Pool"]
    refused, _ = docker.pool("10.7.0.0/24", v6=True)
    assert refused == {"Error": "invalid subnet '10.7.0.0/24': not an IPv6 subnet in CIDR form"}


def test_dual_stack_network_endpoint_and_join(docker: Docker) -> None:
    assert docker.network("10.77.0.0/24", V6) == {}
    [network] = [n for n in docker.fake.host.networks() if n.labels]
    assert [str(s.subnet) for s in network.subnets] == ["10.77.0.0/24", V6]
    created, joined = docker.endpoint(ip6="fd12:3456::9")
    assert created == {"Interface": {"MacAddress": "02:42:0a:4d:00:02"}}
    assert (joined["Gateway"], joined["GatewayIPv6"], joined["StaticRoutes"]) == (
        "10.77.0.1", "fd12:3456::1", [])
    sandbox = docker.fake.host.sandbox(ENDPOINT)
    assert sandbox is not None
    [(_, endpoint)] = docker.fake.host.container_endpoints(sandbox)
    assert (str(endpoint.address), endpoint.address6, endpoint.gateway6) == (
        "10.77.0.2/24", IPv6Interface("fd12:3456::9/64"), IPv6Address("fd12:3456::1"))
    assert SRC in docker.fake.kernel.links  # moved out for Docker, who sets both addresses
    # the address is leased now: asked again, it is refused
    taken = docker.call("/IpamDriver.RequestAddress", {
        "PoolID": f"netbay/{V6}", "Address": "fd12:3456::9", "Options": {}})
    assert taken == {"Error": "invalid ip6 'fd12:3456::9': already in use"}
    assert docker.call("/IpamDriver.ReleaseAddress", {
        "PoolID": f"netbay/{V6}", "Address": "fd12:3456::9/64"}) == {}


def test_ipv6_only_network(docker: Docker) -> None:
    assert docker.network(None, V6) == {}
    [network] = [n for n in docker.fake.host.networks() if n.labels]
    assert (network.ipv4, network.ipv6, [str(s.subnet) for s in network.subnets]) == (
        False, True, [V6])
    created, joined = docker.endpoint()
    assert created == {"Interface": {"MacAddress": "02:42:00:00:00:02"}}
    assert (joined["Gateway"], joined["GatewayIPv6"]) == ("", "fd12:3456::1")
    [(_, endpoint)] = docker.fake.host.container_endpoints(docker.fake.host.sandbox(ENDPOINT))
    assert (endpoint.address, str(endpoint.address6)) == (None, "fd12:3456::2/64")


def test_create_endpoint_needs_each_family_s_address(docker: Docker) -> None:
    docker.network("10.77.0.0/24", V6)
    reply = docker.call("/NetworkDriver.CreateEndpoint", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT, "Options": {},
        "Interface": {"Address": "10.77.0.5/24", "AddressIPv6": ""}})
    assert reply == {"Err": "invalid Interface.AddressIPv6 '': an address from an IPAM driver "
                     "is required (netbay's or Docker's default)"}
    reply = docker.call("/NetworkDriver.CreateEndpoint", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT, "Options": {},
        "Interface": {"Address": "10.77.0.5/24", "AddressIPv6": "fd99::5/64"}})
    assert reply == {"Err": "invalid ip6 'fd99::5': not inside the network's subnets "
                     "(fd12:3456::/64)"}


def test_a_dual_stack_cluster_network_needs_this_node_in_a_cluster(docker: Docker) -> None:
    """IPv6Data on a cluster driver is taken (test_v6_docker_plugin_cluster): on a node
    outside any cluster it gets the line an IPv4 one gets, and nothing is made."""
    before = docker.fake.host.networks()
    reply = docker.network("10.77.0.0/24", V6, {"netbay.driver": "overlay"})
    assert reply == {"Err": "invalid netbay.driver 'overlay': a cluster-wide network needs "
                     "this node in a netbay cluster (netbay cluster join)"}
    assert docker.fake.host.networks() == before


def test_bad_ipv6_data_refused(docker: Docker) -> None:
    reply = docker.call("/NetworkDriver.CreateNetwork", {
        "NetworkID": NETWORK, "Options": {}, "IPv4Data": [],
        "IPv6Data": [{"Pool": "fd12::zz/64", "Gateway": "fd12::1/64"}]})
    assert reply == {"Err": "invalid IPv6Data.Pool 'fd12::zz/64': not an IPv6 subnet in CIDR "
                     "form"}
    reply = docker.call("/NetworkDriver.CreateNetwork", {
        "NetworkID": NETWORK, "Options": {}, "IPv4Data": [],
        "IPv6Data": [{"Pool": V6, "Gateway": "10.0.0.1/24"}]})
    assert reply == {"Err": "invalid IPv6Data.Gateway '10.0.0.1/24': not an IPv6 address with a "
                     "prefix length"}


# --- the default bridge ---------------------------------------------------------------------
def test_bridge_settings_parsed_and_checked() -> None:
    assert bridge_defaults({}) == BridgeDefaults()
    assert bridge_defaults({"NETBAY_IPV6": "true"}) == BridgeDefaults(True, None)
    assert bridge_defaults({"NETBAY_IPV6": "1", "NETBAY_FIXED_CIDR_V6": "fd00:b::/64"}) == \
        BridgeDefaults(True, IPv6Network("fd00:b::/64"))
    for environ, message in (
        ({"NETBAY_IPV6": "maybe"}, "invalid ipv6 'maybe': expected true or false"),
        ({"NETBAY_FIXED_CIDR_V6": "fd00:b::/64"}, "invalid fixed-cidr-v6 'fd00:b::/64': needs "
         "--ipv6 (the default bridge is IPv4 only without it)"),
        ({"NETBAY_IPV6": "true", "NETBAY_FIXED_CIDR_V6": "fd00:b::1/64"},
         "invalid fixed-cidr-v6 'fd00:b::1/64': not an IPv6 subnet in CIDR form"),
    ):
        with pytest.raises(ConfigError) as err:
            bridge_defaults(environ)
        assert str(err.value) == message


def _bridge(fake: FakeHost, defaults: BridgeDefaults) -> list[str]:
    """The default bridge's subnets after a (re)start of netbayd with DEFAULTS."""
    host = Host(fake_paths(fake.host.paths.root.parent), store=fake.store, kernel=fake.kernel,
                nft=fake.nft, flows=fake.flows, bridge_defaults=defaults)
    return [str(s.subnet) for s in host.network("bridge").subnets]


def test_default_bridge_follows_the_settings_while_unused(tmp_path: Path) -> None:
    fake = fake_host(tmp_path)
    assert [str(s.subnet) for s in fake.host.network("bridge").subnets] == ["172.17.0.0/16"]
    fixed = BridgeDefaults(True, IPv6Network("fd00:b::/64"))
    assert _bridge(fake, fixed) == ["172.17.0.0/16", "fd00:b::/64"]
    chosen = _bridge(fake, BridgeDefaults(True))  # no fixed subnet: the one it has is kept
    assert chosen == ["172.17.0.0/16", "fd00:b::/64"]
    assert _bridge(fake, BridgeDefaults()) == ["172.17.0.0/16"]
    ula = _bridge(fake, BridgeDefaults(True))[1]
    assert IPv6Network(ula).prefixlen == 64 and ula.startswith("fd")


def test_default_bridge_kept_while_a_container_uses_it(tmp_path: Path) -> None:
    from netbay import ContainerSpec

    fake = fake_host(tmp_path)
    host = Host(fake_paths(tmp_path), store=fake.store, kernel=fake.kernel, nft=fake.nft,
                flows=fake.flows, bridge_defaults=BridgeDefaults(True, IPv6Network(V6)))
    host.create_container(ContainerSpec(command=("true",), name="c1"))
    [(_, endpoint)] = host.container_endpoints(host.container("c1"))
    assert (str(endpoint.address), str(endpoint.address6)) == (
        "172.17.0.2/16", "fd12:3456::2/64")
    assert _bridge(fake, BridgeDefaults()) == ["172.17.0.0/16", V6]


def test_default_bridge_fixed_subnet_that_overlaps_is_refused(tmp_path: Path) -> None:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec("net6", subnets=docker_json.network_spec(
        {"Name": "x", "IPAM": {"Config": [{"Subnet": V6}]}}).subnets))
    with pytest.raises(NetbayError) as err:
        _bridge(fake, BridgeDefaults(True, IPv6Network("fd12:3456::/80")))
    assert str(err.value) == "invalid fixed-cidr-v6 'fd12:3456::/80': overlaps fd12:3456::/64"
