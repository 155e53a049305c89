"""A routed network dual stack, planned (plan/routed.py) and as the driver records it
(drivers/routed.py): a container's /128 via fe80::ecee:eeff:feee:eeee, the host end's IPv6
settings, IPv6 blocks held as blackholes, the 1280 MTU floor, the share's options; a v4-only
endpoint and share exactly as before. Pure: FakeKernel for the driver's kernel calls."""

from __future__ import annotations

import dataclasses
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

import pytest

from netbay.drivers import cluster_driver
from netbay.drivers.routed import OPT_POOL6, RoutedDriver, local_options
from netbay.errors import ConfigError
from netbay.model import Endpoint, Network, NetworkSpec, SubnetConfig
from netbay.plan.routed import (
    GATEWAY6,
    HOST_LINK_LOCAL,
    HOST_SYSCTLS,
    HOST_SYSCTLS_DUAL,
    BlockRoute,
    DeviceSysctl,
    Encapsulation,
    RoutePlan6,
    block_route,
    plan_endpoint,
    veth_mtu,
)

SUBNET, BLOCK = IPv4Network("10.244.0.0/16"), IPv4Network("10.244.3.64/26")
SUBNET6, BLOCK6 = IPv6Network("fd00:244::/48"), IPv6Network("fd00:244:0:3::40/122")


def plan(*, address6: str | None = "fd00:244:0:3::46", default_route: bool = True,
         mtu: int = 1450):
    return plan_endpoint(
        endpoint_id="0123456789abcdef0123", address=IPv4Address("10.244.3.70"), block=BLOCK,
        subnet=SUBNET, ifname="eth1", mtu=mtu, default_route=default_route,
        address6=None if address6 is None else IPv6Address(address6), block6=BLOCK6,
        subnet6=SUBNET6)


def test_the_gateway_is_the_eui64_link_local_of_the_host_ends_mac() -> None:
    assert IPv6Address("fe80::ecee:eeff:feee:eeee") == GATEWAY6
    assert IPv6Interface("fe80::ecee:eeff:feee:eeee/64") == HOST_LINK_LOCAL


def test_a_dual_stack_endpoint_gets_a_128_routed_via_the_link_local() -> None:
    endpoint = plan()
    assert endpoint.address6 == IPv6Interface("fd00:244:0:3::46/128")
    assert endpoint.host_route6 == RoutePlan6(IPv6Network("fd00:244:0:3::46/128"),
                                              "nbv0123456789ab")
    assert endpoint.container_routes6 == (
        RoutePlan6(IPv6Network("::/0"), "eth1", GATEWAY6),)
    assert endpoint.host_link_local == HOST_LINK_LOCAL
    assert endpoint.mtu == 1450  # the same as an IPv4-only endpoint's


def test_the_host_end_keeps_ipv6_on_without_addresses_of_its_own_or_router_adverts() -> None:
    assert plan().host_sysctls == HOST_SYSCTLS_DUAL == (
        DeviceSysctl("net/ipv4/conf", "proxy_arp", "1"),
        DeviceSysctl("net/ipv4/neigh", "proxy_delay", "0"),
        DeviceSysctl("net/ipv4/conf", "rp_filter", "1"),
        DeviceSysctl("net/ipv6/conf", "accept_ra", "0"),
        DeviceSysctl("net/ipv6/conf", "addr_gen_mode", "1"),
        DeviceSysctl("net/ipv6/conf", "forwarding", "1"),
        DeviceSysctl("net/ipv6/conf", "disable_ipv6", "0"),
    )


def test_a_v4_only_endpoint_is_exactly_what_it_was() -> None:
    endpoint = plan(address6=None)
    assert endpoint.host_sysctls == HOST_SYSCTLS
    assert HOST_SYSCTLS[-1] == DeviceSysctl("net/ipv6/conf", "disable_ipv6", "1")
    assert (endpoint.address6, endpoint.host_route6, endpoint.container_routes6,
            endpoint.host_link_local) == (None, None, (), None)


def test_without_the_default_route_only_the_ipv6_subnet_goes_via_the_link_local() -> None:
    assert plan(default_route=False).container_routes6 == (
        RoutePlan6(SUBNET6, "eth1", GATEWAY6),)


@pytest.mark.parametrize(("address6", "message"), [
    ("fd00:244:0:4::1", "invalid address 'fd00:244:0:4::1': outside this node's block "
                        "fd00:244:0:3::40/122"),
])
def test_an_ipv6_address_outside_the_block_is_refused(address6: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        plan(address6=address6)
    assert str(refused.value) == message


def test_a_dual_stack_endpoint_needs_1280() -> None:
    with pytest.raises(ConfigError) as refused:
        plan(mtu=1200)
    assert str(refused.value) == "invalid mtu 1200: out of range 1280-65535 (IPv6)"


def test_the_veth_mtu_of_a_dual_stack_network_is_at_least_1280() -> None:
    assert veth_mtu(1500, Encapsulation.ALWAYS, ipv6=True) == 1450
    assert veth_mtu(1280, Encapsulation.NEVER, ipv6=True) == 1280
    assert veth_mtu(1300, Encapsulation.ALWAYS) == 1250  # IPv4 only: as before
    # cross-subnet: the veths keep the underlay's; the tunnel must still carry 1280
    assert veth_mtu(1330, Encapsulation.CROSS_SUBNET, ipv6=True) == 1330
    with pytest.raises(ConfigError) as refused:
        veth_mtu(1300, Encapsulation.CROSS_SUBNET, ipv6=True)
    assert str(refused.value) == ("invalid underlay MTU 1300: out of range 1330-65535 "
                                  "(IPv6 needs 1280)")


def test_an_ipv6_block_is_held_like_an_ipv4_one_and_must_be_of_the_ipv6_subnet() -> None:
    assert block_route(BLOCK6, SUBNET6) == BlockRoute(BLOCK6)
    with pytest.raises(ConfigError) as refused:
        block_route(BLOCK6, SUBNET)
    assert str(refused.value) == ("invalid block 'fd00:244:0:3::40/122': outside the "
                                  "network's subnet 10.244.0.0/16")


# --- the driver --------------------------------------------------------------------------
def share(*subnets: SubnetConfig, pool6: str | None = str(SUBNET6)) -> Network:
    options = dict(local_options(SUBNET, 7, Encapsulation.CROSS_SUBNET, 64512, 1450,
                                 None if pool6 is None else IPv6Network(pool6)))
    spec = NetworkSpec(name="calico", driver="routed", subnets=subnets, options=options)
    return RoutedDriver().validate(spec, "f" * 64)


DUAL = (SubnetConfig(BLOCK, IPv4Address("10.244.3.65")),
        SubnetConfig(BLOCK6, IPv6Address("fd00:244:0:3::41")))


def test_the_share_options_name_the_ipv6_pool_only_on_a_dual_stack_network() -> None:
    driver = cluster_driver("routed")
    v4 = driver.share_options(SUBNET, 7, {}, 1500)
    assert OPT_POOL6 not in v4 and OPT_POOL6 == "netbay.overlay.pool6"
    dual = driver.share_options(SUBNET, 7, {}, 1500, SUBNET6)  # type: ignore[call-arg]
    assert dict(dual) == {**v4, OPT_POOL6: "fd00:244::/48"}
    with pytest.raises(ConfigError):
        driver.share_options(SUBNET, 7, {}, 1300, SUBNET6)  # type: ignore[call-arg]


def test_the_ipv6_block_size_defaults_to_calicos_122() -> None:
    driver = cluster_driver("routed")
    assert driver.global_options({}, SUBNET).block_size6 == 122  # type: ignore[attr-defined]
    assert driver.global_options({"block_size6": "64"}, SUBNET).block_size6 == 64  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as refused:
        driver.global_options({"block_size6": "127"}, SUBNET)
    assert str(refused.value) == "invalid opt block_size6 '127': out of range 64-126"


def test_a_share_takes_ipv6_blocks_of_the_ipv6_pool_only() -> None:
    assert share(*DUAL).subnets == DUAL
    with pytest.raises(ConfigError):
        share(*DUAL, pool6=None)
    with pytest.raises(ConfigError):
        share(DUAL[0], SubnetConfig(IPv6Network("fd00:999::/122")))
    with pytest.raises(ConfigError):
        share(DUAL[1])  # IPv6 only: the IPv4 block comes first


class Recording:
    """The driver's kernel calls, as FakeKernel's would be (only the ones setup makes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *args: self.calls.append((name, args[0] if args else None))


def test_setup_and_teardown_hold_and_release_both_families_blackholes() -> None:
    kernel = Recording()
    network = share(*DUAL)
    RoutedDriver().setup(kernel, network)  # type: ignore[arg-type]
    assert kernel.calls == [
        ("enable_forwarding", None), ("enable_forwarding", 6),
        ("hold_block", BlockRoute(BLOCK)), ("hold_block", BlockRoute(BLOCK6)),
        ("hold_local_address", IPv4Address("10.244.3.65")),  # DNS: the IPv4 gateway only
    ]
    kernel.calls.clear()
    RoutedDriver().teardown(kernel, network)  # type: ignore[arg-type]
    assert [c for c in kernel.calls if c[0] == "release_block"] == [
        ("release_block", BlockRoute(BLOCK)), ("release_block", BlockRoute(BLOCK6))]


def test_the_reconciler_wants_both_families_blackholes_and_routes() -> None:
    driver, network = RoutedDriver(), share(*DUAL)
    endpoint = driver.plan_endpoint(network, Endpoint(
        id="e" * 64, network_id=network.id, container_id="c" * 64, ifname="eth0",
        host_ifname="nbveeeeeeeeeeee", mac=None, address=IPv4Interface("10.244.3.70/26"),
        gateway=None, address6=IPv6Interface("fd00:244:0:3::46/122")))
    desired = driver.desired(network, [endpoint])
    assert [hole.destination for hole in desired.blackholes] == [BLOCK, BLOCK6]
    assert [(r.destination, r.device, r.gateway) for r in desired.routes] == [
        (IPv4Network("10.244.3.70/32"), "nbveeeeeeeeeeee", None),
        (IPv6Network("fd00:244:0:3::46/128"), "nbveeeeeeeeeeee", None),
    ]


def test_an_endpoint_gets_a_128_and_the_link_local_gateway() -> None:
    driver, network = RoutedDriver(), dataclasses.replace(share(*DUAL), mtu=1450)
    endpoint = driver.plan_endpoint(network, Endpoint(
        id="e" * 64, network_id=network.id, container_id="c" * 64, ifname="eth0",
        host_ifname="nbveeeeeeeeeeee", mac=None, address=IPv4Interface("10.244.3.70/26"),
        gateway=IPv4Address("10.244.3.65"), address6=IPv6Interface("fd00:244:0:3::46/122"),
        gateway6=IPv6Address("fd00:244:0:3::41")))
    assert (endpoint.address6, endpoint.gateway6) == (
        IPv6Interface("fd00:244:0:3::46/128"), GATEWAY6)
    routed = driver.routed_endpoint(network, endpoint)
    assert routed.address6 == IPv6Interface("fd00:244:0:3::46/128")
    assert routed.container_routes6 == (RoutePlan6(IPv6Network("::/0"), "eth0", GATEWAY6),)
    v4 = driver.plan_endpoint(network, dataclasses.replace(endpoint, address6=None,
                                                           gateway6=None))
    assert (v4.address6, v4.gateway6) == (None, None)
    assert driver.routed_endpoint(network, v4).address6 is None
