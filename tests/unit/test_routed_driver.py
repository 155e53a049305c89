"""The routed driver on the engine's fakes: a share made as the cluster agent makes it, a
container attached with a /32 and 169.254.1.1, the block held as a blackhole, egress NAT by
address, DNS on the block's gateway held on lo; and what a user may not do with it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netbay import AttachRequest, ContainerSpec, NetworkSpec
from netbay.dns.records import ListenPoint, load
from netbay.drivers import cluster_driver
from netbay.drivers.routed import local_options
from netbay.errors import ConfigError
from netbay.model import Network, SubnetConfig
from netbay.plan.routed import Encapsulation
from netbay.testing import FakeHost, fake_host

POOL = IPv4Network("10.70.0.0/16")
BLOCK = IPv4Network("10.70.3.0/26")
DNS = IPv4Address("10.70.3.1")  # the block's gateway in the record


def share(fake: FakeHost, encap: Encapsulation = Encapsulation.CROSS_SUBNET) -> None:
    fake.host.create_network(NetworkSpec(
        name="calico", driver="routed", subnets=(SubnetConfig(BLOCK),),
        options=local_options(POOL, 7, encap, 64512, 1450)))


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    fake = fake_host(tmp_path)
    share(fake)
    return fake


def test_a_container_gets_a_32_and_the_link_local_gateway_and_no_bridge(fake: FakeHost) -> None:
    fake.host.create_container(ContainerSpec(command=("sleep", "inf"), name="web",
                                             networks=(AttachRequest("calico"),)))
    container = fake.host.container("web")
    [(network, endpoint)] = fake.host.container_endpoints(container)
    assert network.device is None and network.scope == "global"
    assert endpoint.address == IPv4Interface("10.70.3.2/32")
    assert endpoint.gateway == IPv4Address("169.254.1.1")
    host_end = fake.kernel.links[endpoint.host_ifname]
    assert host_end.master is None and host_end.mac == "ee:ee:ee:ee:ee:ee"
    assert host_end.mtu == 1450
    inside = fake.kernel.namespaces[str(container.netns)].links["eth0"]
    assert inside.addresses == [IPv4Interface("10.70.3.2/32")]
    assert inside.gateway == IPv4Address("169.254.1.1")
    assert fake.kernel.host_routes == {IPv4Network("10.70.3.2/32"): endpoint.host_ifname}
    assert fake.kernel.blackholes == {BLOCK}
    assert not [link for link in fake.kernel.links.values() if link.kind == "bridge"]


def test_egress_is_masqueraded_by_address_and_pools_talk_unnatted(fake: FakeHost) -> None:
    assert fake.nft.elements("inet", "masq_nets") == {str(BLOCK)}
    assert fake.nft.elements("inet", "overlay_pools") == {str(POOL)}
    assert fake.nft.elements("inet", "bridges") == set()


def test_detach_and_remove_take_the_route_and_the_blackhole(fake: FakeHost) -> None:
    fake.host.create_container(ContainerSpec(command=("sleep", "inf"), name="web",
                                             networks=(AttachRequest("calico"),)))
    fake.host.remove_container("web", force=True)
    assert fake.kernel.host_routes == {}
    fake.host.remove_network("calico")
    assert fake.kernel.blackholes == set()
    assert fake.nft.elements("inet", "masq_nets") == set()


def test_dns_listens_on_the_gateway_held_on_lo_and_resolv_conf_names_it(
    fake: FakeHost,
) -> None:
    assert fake.kernel.local_addresses == {DNS}
    fake.host.create_container(ContainerSpec(command=("sleep", "inf"), name="web",
                                             networks=(AttachRequest("calico"),)))
    container = fake.host.container("web")
    resolv = (fake.host.paths.container_dir(container.id) / "resolv.conf").read_text()
    assert [line for line in resolv.splitlines() if not line.startswith("#")] == [
        "nameserver 10.70.3.1", "options ndots:0"]
    [(network, _)] = fake.host.container_endpoints(container)
    zone = load(fake.store)
    assert zone.listen == [ListenPoint(DNS, None, network.id)]  # by any device: no bridge
    assert set(zone.askers[network.id]) == {"10.70.3.2"}  # the container's /32, none else
    fake.host.remove_container("web", force=True)
    fake.host.remove_network("calico")
    assert fake.kernel.local_addresses == set()


def test_a_routed_network_is_not_made_by_hand(tmp_path: Path) -> None:
    fake = fake_host(tmp_path)
    before = fake.snapshot()
    with pytest.raises(ConfigError, match="routed networks are cluster-wide"):
        fake.host.create_network(NetworkSpec(name="calico", driver="routed"))
    assert fake.snapshot() == before


@pytest.mark.parametrize(("given", "subnet", "message"), [
    ({"block_size": "20"}, "10.70.0.0/24", "invalid opt block_size '20': out of range 24-30"),
    ({"block_size": "31"}, None, "invalid opt block_size '31': out of range 8-30"),
    ({"asn": "0"}, None, "invalid opt asn '0': out of range 1-4294967295"),
    ({"asn": "4294967296"}, None, "invalid opt asn '4294967296': out of range 1-4294967295"),
    ({"encap": "ipip"}, None,
     "invalid opt encap 'ipip': expected one of cross-subnet, always, never"),
])
def test_bad_options_are_one_line_naming_the_field(
    given: dict[str, str], subnet: str | None, message: str,
) -> None:
    driver = cluster_driver("routed")
    with pytest.raises(ConfigError) as raised:
        driver.global_options(given, IPv4Network(subnet) if subnet else None)
    assert str(raised.value) == message


def test_the_global_record_keeps_encap_and_asn_and_the_block_size() -> None:
    checked = cluster_driver("routed").global_options({}, IPv4Network("10.70.0.0/16"))
    assert dict(checked.options) == {"encap": "cross-subnet", "asn": "64512"}
    assert checked.block_size == 26


class OneMoreBlock:
    """The cluster agent's side of engine.networks.ClusterNetworks: the next block is MORE."""

    def __init__(self, more: IPv4Network) -> None:
        self.more = more
        self.claimed: list[str] = []
        self.made: list[str] = []

    def local_share(self, name: str) -> None:
        return None

    def share_made(self, network: Network) -> None:
        self.made.append(network.name)

    def more_block(self, network: Network, version: int = 4) -> IPv4Network:
        self.claimed.append(network.name)
        return self.more


def test_a_node_whose_block_is_full_claims_another_and_holds_it(tmp_path: Path) -> None:
    fake = fake_host(tmp_path)
    small, more = IPv4Network("10.70.3.0/30"), IPv4Network("10.70.9.0/30")  # one container each
    fake.host.create_network(NetworkSpec(
        name="calico", driver="routed", subnets=(SubnetConfig(small),),
        options=local_options(POOL, 7, Encapsulation.CROSS_SUBNET, 64512, 1450)))
    source = OneMoreBlock(more)
    fake.host.add_cluster_networks(source)
    for name in ("a", "b"):
        fake.host.create_container(ContainerSpec(command=("sleep", "inf"), name=name,
                                                 networks=(AttachRequest("calico"),)))
    assert source.claimed == ["calico"] and source.made == ["calico"]
    network = fake.host.network("calico")
    assert [s.subnet for s in network.subnets] == [small, more]
    assert [s.gateway for s in network.subnets] == [IPv4Address("10.70.3.1"),
                                                    IPv4Address("10.70.9.1")]
    [(_, second)] = fake.host.container_endpoints(fake.host.container("b"))
    assert second.address == IPv4Interface("10.70.9.2/32")
    assert fake.kernel.blackholes == {small, more}
    assert fake.nft.elements("inet", "masq_nets") == {str(small), str(more)}
    assert fake.kernel.local_addresses == {IPv4Address("10.70.3.1"), IPv4Address("10.70.9.1")}
    fake.host.remove_container("a", force=True)
    fake.host.remove_container("b", force=True)
    fake.host.remove_network("calico")
    assert fake.kernel.blackholes == set() and fake.kernel.local_addresses == set()
