"""plan/routed.py: what attaching a container to a routed network makes, the veths' MTU and
the block's route; pure."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from netbay.errors import ConfigError
from netbay.kernel.rtnl_wire import RT_SCOPE_UNIVERSE, RTMSG, RTN_BLACKHOLE, Route, route_body
from netbay.plan.routed import (
    DEFAULT,
    GATEWAY,
    HOST_SYSCTLS,
    BlockRoute,
    DeviceSysctl,
    Encapsulation,
    RoutedEndpoint,
    RoutePlan,
    block_route,
    plan_endpoint,
    veth_mtu,
)

SUBNET = IPv4Network("10.244.0.0/16")
BLOCK = IPv4Network("10.244.3.64/26")


def plan(address: str = "10.244.3.70", *, default_route: bool = True) -> RoutedEndpoint:
    return plan_endpoint(endpoint_id="0123456789abcdef0123", address=IPv4Address(address),
                         block=BLOCK, subnet=SUBNET, ifname="eth1", mtu=1450,
                         default_route=default_route)


def test_an_endpoint_with_the_default_route_is_calicos_workload() -> None:
    assert plan() == RoutedEndpoint(
        host_ifname="nbv0123456789ab", ifname="eth1",
        address=IPv4Interface("10.244.3.70/32"), mac="02:42:0a:f4:03:46", mtu=1450,
        host_route=RoutePlan(IPv4Network("10.244.3.70/32"), "nbv0123456789ab"),
        container_routes=(RoutePlan(IPv4Network("169.254.1.1/32"), "eth1"),
                          RoutePlan(DEFAULT, "eth1", IPv4Address("169.254.1.1"))),
        host_mac="ee:ee:ee:ee:ee:ee",
    )


def test_the_host_end_answers_arp_by_proxy_at_once_strictly_and_without_ipv6() -> None:
    assert plan().host_sysctls == HOST_SYSCTLS == (
        DeviceSysctl("net/ipv4/conf", "proxy_arp", "1"),
        DeviceSysctl("net/ipv4/neigh", "proxy_delay", "0"),
        DeviceSysctl("net/ipv4/conf", "rp_filter", "1"),
        DeviceSysctl("net/ipv6/conf", "disable_ipv6", "1"),
    )


def test_without_the_default_route_only_the_subnet_goes_via_the_gateway_onlink() -> None:
    assert plan(default_route=False).container_routes == (
        RoutePlan(SUBNET, "eth1", GATEWAY, onlink=True),)


@pytest.mark.parametrize("address", ["10.244.3.64", "10.244.3.127"])
def test_every_address_of_the_block_is_a_containers(address: str) -> None:
    assert plan(address).address == IPv4Interface(f"{address}/32")


def test_an_address_outside_the_block_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        plan("10.244.3.128")
    assert str(raised.value) == (
        "invalid address '10.244.3.128': outside this node's block 10.244.3.64/26")


@pytest.mark.parametrize(("encapsulation", "mtu"), [
    (Encapsulation.NEVER, 9000), (Encapsulation.CROSS_SUBNET, 9000),
    (Encapsulation.ALWAYS, 8950)])
def test_the_veth_mtu_leaves_room_for_vxlan_where_every_packet_is_tunnelled(
    encapsulation: Encapsulation, mtu: int
) -> None:
    assert veth_mtu(9000, encapsulation) == mtu


@pytest.mark.parametrize(("underlay", "encapsulation", "reason"), [
    (117, Encapsulation.CROSS_SUBNET, "out of range 118-65535"),
    (67, Encapsulation.NEVER, "out of range 68-65535"),
    (65536, Encapsulation.NEVER, "out of range 68-65535")])
def test_an_underlay_mtu_that_cannot_carry_is_refused(
    underlay: int, encapsulation: Encapsulation, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        veth_mtu(underlay, encapsulation)
    assert str(raised.value) == f"invalid underlay MTU {underlay}: {reason}"


def test_the_block_route_is_a_block_of_the_subnet() -> None:
    assert block_route(BLOCK, SUBNET) == BlockRoute(BLOCK)
    with pytest.raises(ConfigError) as raised:
        block_route(IPv4Network("10.245.0.0/26"), SUBNET)
    assert str(raised.value) == (
        "invalid block '10.245.0.0/26': outside the network's subnet 10.244.0.0/16")
    with pytest.raises(ConfigError):
        plan_endpoint(endpoint_id="e" * 20, address=IPv4Address("10.245.0.1"),
                      block=IPv4Network("10.245.0.0/26"), subnet=SUBNET, ifname="eth0",
                      mtu=1450, default_route=True)


def test_a_blackhole_is_sent_with_universe_scope_as_ip_route_does() -> None:
    body = route_body(Route(BLOCK, protocol=57, type=RTN_BLACKHOLE))
    _, dst_len, _, _, _, protocol, scope, kind, _ = RTMSG.unpack_from(body)
    assert (dst_len, protocol, scope, kind) == (26, 57, RT_SCOPE_UNIVERSE, RTN_BLACKHOLE)
