"""The overlay planner with dual-stack peers (plan/overlay.py): v6 blocks tunnelled over
the IPv4 underlay or routed host-gw via the peers' IPv6 underlay addresses, per the
backend; a v6 block that cannot work left out alone (its node's v4 routes stay); a v4-only
plan exactly as before. Also the overlay driver's dual-stack record and options."""

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

from netbay.drivers.base import OPT_POOL, OPT_POOL6
from netbay.drivers.overlay import OPT_VNI, OverlayDriver, settings_of
from netbay.errors import ConfigError
from netbay.model import NetworkSpec, SubnetConfig
from netbay.plan.overlay import (
    Backend,
    BridgePlan,
    FdbPlan,
    NeighbourPlan,
    OverlayNode,
    OverlayPeer,
    OverlaySettings,
    OverlayState,
    RejectedPeer,
    RoutePlan,
    VxlanPlan,
    plan_overlay,
    vtep_mac,
)

NETWORK_ID = "0123456789abcdef0123"
VXLAN = "nbx0123456789ab"
POOL, POOL6 = IPv4Network("10.244.0.0/16"), IPv6Network("fd12:3456:789a::/48")
NODE = OverlayNode("node-a", IPv4Address("192.0.2.11"), "eth0", 1500,
                   IPv4Network("10.244.1.0/24"), IPv6Network("fd12:3456:789a:1::/64"),
                   IPv6Address("2001:db8::11"))
# b: on the segment, with an IPv6 underlay address; c: behind a router; d: on the segment
# without an IPv6 underlay address
B4 = OverlayPeer("node-b", IPv4Address("192.0.2.12"), IPv4Network("10.244.2.0/24"),
                 vtep_mac("node-b", 7), True, IPv6Address("2001:db8::12"))
B6 = dataclasses.replace(B4, subnet=IPv6Network("fd12:3456:789a:2::/64"))
C4 = OverlayPeer("node-c", IPv4Address("198.51.100.13"), IPv4Network("10.244.3.0/24"),
                 vtep_mac("node-c", 7), False, IPv6Address("2001:db8:1::13"))
C6 = dataclasses.replace(C4, subnet=IPv6Network("fd12:3456:789a:3::/64"))
D4 = OverlayPeer("node-d", IPv4Address("192.0.2.14"), IPv4Network("10.244.4.0/24"),
                 vtep_mac("node-d", 7), True)
D6 = dataclasses.replace(D4, subnet=IPv6Network("fd12:3456:789a:4::/64"))


def plan(*peers: OverlayPeer, backend: Backend = Backend.AUTO,
         node: OverlayNode = NODE) -> OverlayState:
    settings = OverlaySettings(NETWORK_ID, POOL, vni=7, backend=backend, pool6=POOL6)
    return plan_overlay(settings, node, peers)


def routes6(state: OverlayState) -> list[tuple[object, object, str, bool]]:
    return [(r.destination, r.gateway, r.device, r.onlink) for r in state.routes
            if isinstance(r.destination, IPv6Network)]


def test_a_v6_block_behind_a_router_is_tunnelled_to_its_vtep_address_onlink() -> None:
    state = plan(C6, C4)
    vtep6 = IPv6Address("fd12:3456:789a:3::")
    assert state.neighbours == (NeighbourPlan(IPv4Address("10.244.3.0"), C4.vtep_mac),
                                NeighbourPlan(vtep6, C4.vtep_mac))
    assert state.fdb == (FdbPlan(C4.vtep_mac, C4.address),)  # one per MAC, both families
    assert state.routes == (
        RoutePlan(C4.subnet, IPv4Address("10.244.3.0"), VXLAN, onlink=True),
        RoutePlan(C6.subnet, vtep6, VXLAN, onlink=True))
    assert state.vxlan is not None
    assert state.vxlan.address6 == IPv6Interface("fd12:3456:789a:1::/128")
    assert state.bridge is not None
    assert state.bridge.gateway6 == IPv6Interface("fd12:3456:789a:1::1/64")
    assert (state.pool6, state.rejected) == (POOL6, ())


def test_host_gw_carries_a_v6_block_via_the_peers_address6_when_both_have_one() -> None:
    state = plan(B4, B6)
    assert state.routes == (
        RoutePlan(B4.subnet, B4.address, "eth0", onlink=False),
        RoutePlan(B6.subnet, IPv6Address("2001:db8::12"), "eth0", onlink=False))
    assert state.neighbours == () and state.fdb == ()
    host_gw = plan(B4, B6, backend=Backend.HOST_GW)
    assert host_gw.routes == state.routes and host_gw.vxlan is None
    assert host_gw.bridge is not None and host_gw.bridge.gateway6 is not None


def test_auto_tunnels_a_v6_block_on_the_segment_when_an_address6_is_missing() -> None:
    state = plan(D4, D6)  # the peer has none
    assert routes6(state) == [(D6.subnet, IPv6Address("fd12:3456:789a:4::"), VXLAN, True)]
    assert state.routes[0] == RoutePlan(D4.subnet, D4.address, "eth0", onlink=False)
    assert state.fdb == (FdbPlan(D4.vtep_mac, D4.address),)
    no_own = plan(B4, B6, node=dataclasses.replace(NODE, address6=None))  # this node has none
    assert routes6(no_own) == [(B6.subnet, IPv6Address("fd12:3456:789a:2::"), VXLAN, True)]
    assert [r.device for r in no_own.routes] == ["eth0", VXLAN]


def test_backend_vxlan_tunnels_v6_even_where_host_gw_could() -> None:
    state = plan(B4, B6, backend=Backend.VXLAN)
    assert routes6(state) == [(B6.subnet, IPv6Address("fd12:3456:789a:2::"), VXLAN, True)]


def test_backend_host_gw_leaves_out_only_the_v6_block_it_cannot_route() -> None:
    state = plan(D4, D6, B4, B6, backend=Backend.HOST_GW)
    assert state.routes == (
        RoutePlan(B4.subnet, B4.address, "eth0", onlink=False),
        RoutePlan(B6.subnet, IPv6Address("2001:db8::12"), "eth0", onlink=False),
        RoutePlan(D4.subnet, D4.address, "eth0", onlink=False))  # d's v4 route stays
    assert state.rejected == (RejectedPeer(
        "node-d", "host-gw carries a v6 block only between nodes on one L2 segment that both "
        "have an IPv6 underlay address (vxlan or auto can)", D6.subnet),)


def test_overlapping_v6_blocks_are_left_out_per_family() -> None:
    twin = OverlayPeer("node-e", IPv4Address("198.51.100.20"), IPv4Network("10.244.5.0/24"),
                       vtep_mac("node-e", 7), False)
    twin6 = dataclasses.replace(twin, subnet=IPv6Network("fd12:3456:789a:3::/80"))
    state = plan(C4, C6, twin, twin6)
    assert [r.destination for r in state.routes] == [C4.subnet, twin.subnet]
    assert {(r.node_id, r.subnet) for r in state.rejected} == {
        ("node-c", C6.subnet), ("node-e", twin6.subnet)}
    assert [n.address for n in state.neighbours] == [IPv4Address("10.244.3.0"),
                                                     IPv4Address("10.244.5.0")]


@pytest.mark.parametrize(("block", "reason"), [
    (IPv6Network("fd99::/64"), "subnet fd99::/64 is outside the network's subnet "
                               "fd12:3456:789a::/48"),
    (IPv6Network("fd12:3456:789a:1::/64"), "subnet fd12:3456:789a:1::/64 overlaps this "
                                           "node's fd12:3456:789a:1::/64"),
])
def test_a_bad_v6_block_is_rejected_alone(block: IPv6Network, reason: str) -> None:
    state = plan(C4, dataclasses.replace(C6, subnet=block))
    assert state.rejected == (RejectedPeer("node-c", reason, block),)
    assert [r.destination for r in state.routes] == [C4.subnet]


def test_v6_blocks_wait_for_this_nodes_own_v6_block() -> None:
    state = plan(C4, C6, node=dataclasses.replace(NODE, subnet6=None))
    assert [r.destination for r in state.routes] == [C4.subnet]
    assert state.rejected == (RejectedPeer(
        "node-c", f"subnet {C6.subnet}: this node holds no IPv6 block of the network",
        C6.subnet),)
    assert state.vxlan is not None and state.vxlan.address6 is None
    assert state.bridge is not None and state.bridge.gateway6 is None


def test_a_v6_only_tunnelled_peer_sharing_this_nodes_mac_loses_its_v6_block_only() -> None:
    clash4 = dataclasses.replace(D4, vtep_mac=vtep_mac("node-a", 7))
    clash6 = dataclasses.replace(D6, vtep_mac=vtep_mac("node-a", 7))
    state = plan(clash4, clash6)  # v4 host-gw (no MAC needed), v6 would tunnel
    assert state.routes == (RoutePlan(D4.subnet, D4.address, "eth0", onlink=False),)
    assert state.rejected == (RejectedPeer(
        "node-d", f"VTEP MAC {vtep_mac('node-a', 7)} is this node's", D6.subnet),)


def test_this_nodes_v6_block_is_checked() -> None:
    with pytest.raises(ConfigError, match="outside the network's IPv6 subnet"):
        plan(node=dataclasses.replace(NODE, subnet6=IPv6Network("fd99::/64")))
    with pytest.raises(ConfigError, match="too small for IPv6 inside"):
        plan(node=dataclasses.replace(NODE, mtu=1300))  # 1250 left inside the tunnel
    assert plan(node=dataclasses.replace(NODE, mtu=1330)).veth_mtu == 1280


def test_a_v4_only_plan_is_exactly_what_it_was() -> None:
    node = OverlayNode("node-a", IPv4Address("192.0.2.11"), "eth0", 1500,
                       IPv4Network("10.244.1.0/24"))
    peers = [dataclasses.replace(p, address6=None) for p in (C4, B4)]
    state = plan_overlay(OverlaySettings(NETWORK_ID, POOL, vni=7), node, peers)
    assert state == OverlayState(
        pool=POOL, underlay="eth0",
        bridge=BridgePlan("br-0123456789ab", IPv4Interface("10.244.1.1/24"), 1450),
        vxlan=VxlanPlan(VXLAN, 7, IPv4Address("192.0.2.11"), "eth0", 4789,
                        vtep_mac("node-a", 7), 1450, IPv4Interface("10.244.1.0/32")),
        veth_mtu=1450,
        neighbours=(NeighbourPlan(IPv4Address("10.244.3.0"), C4.vtep_mac),),
        fdb=(FdbPlan(C4.vtep_mac, C4.address),),
        routes=(RoutePlan(B4.subnet, B4.address, "eth0", onlink=False),
                RoutePlan(C4.subnet, IPv4Address("10.244.3.0"), VXLAN, onlink=True)),
    )
    assert state.pool6 is None and state.vxlan is not None and state.vxlan.address6 is None
    # a dual-stack plan holds the same v4 entries, in the same order
    dual = plan(C6, C4, B6, B4)
    assert [r for r in dual.routes if isinstance(r.destination, IPv4Network)] == list(
        state.routes)


def test_a_v6_block_of_a_v4_only_network_is_refused() -> None:
    state = plan_overlay(OverlaySettings(NETWORK_ID, POOL, vni=7),
                         dataclasses.replace(NODE, subnet6=None), [C4, C6])
    assert state.rejected == (RejectedPeer(
        "node-c", f"subnet {C6.subnet}: the network has no IPv6 subnet", C6.subnet),)
    assert [r.destination for r in state.routes] == [C4.subnet]


# --- the driver ------------------------------------------------------------------------------
def test_the_overlay_driver_takes_one_block_of_each_pool() -> None:
    driver = OverlayDriver()
    assert driver.caps.ipv6
    options = driver.share_options(POOL, 7, {}, 1500, POOL6)
    assert options[OPT_POOL6] == str(POOL6)
    assert OPT_POOL6 not in driver.share_options(POOL, 7, {}, 1500)
    spec = NetworkSpec("ov", "overlay", (SubnetConfig(IPv4Network("10.244.1.0/24")),
                                         SubnetConfig(IPv6Network("fd12:3456:789a:1::/64"))),
                       options=options, ipv6=True)
    record = driver.validate(spec, NETWORK_ID)
    assert [c.subnet for c in record.subnets] == [c.subnet for c in spec.subnets]
    assert settings_of(record).pool6 == POOL6
    assert settings_of(dataclasses.replace(record, options={
        k: v for k, v in options.items() if k != OPT_POOL6})).pool6 is None
    outside = dataclasses.replace(spec, subnets=(spec.subnets[0], SubnetConfig(
        IPv6Network("fd99::/64"))))
    with pytest.raises(ConfigError, match="one block of 10.244.0.0/16 and at most one of"):
        driver.validate(outside, NETWORK_ID)
    no_pool6 = dataclasses.replace(spec, options={OPT_POOL: str(POOL), OPT_VNI: "7"})
    with pytest.raises(ConfigError, match="an overlay node holds one block of 10.244.0.0/16"):
        driver.validate(no_pool6, NETWORK_ID)


@pytest.mark.parametrize(("given", "size6"), [({}, 64), ({"subnet_size6": "80"}, 80),
                                               ({"subnet_size6": "124"}, 124)])
def test_the_v6_block_size_is_read_from_subnet_size6(given: dict[str, str], size6: int) -> None:
    assert OverlayDriver().global_options(given, None).block_size6 == size6


@pytest.mark.parametrize("size6", ["48", "63", "125", "x"])
def test_a_v6_block_size_a_bridge_cannot_hold_is_refused(size6: str) -> None:
    with pytest.raises(ConfigError, match="opt subnet_size6"):
        OverlayDriver().global_options({"subnet_size6": size6}, None)
