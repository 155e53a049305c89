"""The overlay planner (plan/overlay.py): per peer host-gw or VXLAN, the VTEP MAC derived
from the node id, MTUs computed from the underlay, peers whose records cannot work left out
with a reason, and a changed peer record planned as a replacement."""

from __future__ import annotations

import dataclasses
import random
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from netbay.errors import ConfigError
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
POOL = IPv4Network("10.244.0.0/16")
NODE = OverlayNode("node-a", IPv4Address("192.0.2.11"), "eth0", 1500,
                   IPv4Network("10.244.1.0/24"))
NEIGHBOUR = OverlayPeer("node-b", IPv4Address("192.0.2.12"), IPv4Network("10.244.2.0/24"),
                        vtep_mac("node-b", 7), same_segment=True)
REMOTE = OverlayPeer("node-c", IPv4Address("198.51.100.13"), IPv4Network("10.244.3.0/24"),
                     vtep_mac("node-c", 7), same_segment=False)
VTEP_C = IPv4Address("10.244.3.0")
VXLAN = "nbx0123456789ab"


def settings(backend: Backend = Backend.AUTO, **fields: object) -> OverlaySettings:
    return dataclasses.replace(OverlaySettings(NETWORK_ID, POOL, vni=7, backend=backend),
                               **fields)


def plan(*peers: OverlayPeer, backend: Backend = Backend.AUTO,
         node: OverlayNode = NODE) -> OverlayState:
    return plan_overlay(settings(backend), node, peers)


def test_auto_routes_a_peer_on_the_segment_and_tunnels_to_one_behind_a_router() -> None:
    assert plan(REMOTE, NEIGHBOUR) == OverlayState(
        pool=POOL,
        underlay="eth0",
        bridge=BridgePlan("br-0123456789ab", IPv4Interface("10.244.1.1/24"), 1450),
        vxlan=VxlanPlan(VXLAN, 7, IPv4Address("192.0.2.11"), "eth0", 4789, vtep_mac("node-a", 7),
                        1450, IPv4Interface("10.244.1.0/32")),
        veth_mtu=1450,
        neighbours=(NeighbourPlan(VTEP_C, vtep_mac("node-c", 7)),),
        fdb=(FdbPlan(vtep_mac("node-c", 7), IPv4Address("198.51.100.13")),),
        routes=(
            RoutePlan(IPv4Network("10.244.2.0/24"), IPv4Address("192.0.2.12"), "eth0",
                      onlink=False),
            RoutePlan(IPv4Network("10.244.3.0/24"), VTEP_C, VXLAN, onlink=True),
        ),
    )


def test_backend_vxlan_tunnels_to_every_peer() -> None:
    state = plan(NEIGHBOUR, REMOTE, backend=Backend.VXLAN)
    assert [(r.destination, r.gateway, r.device, r.onlink) for r in state.routes] == [
        (IPv4Network("10.244.2.0/24"), IPv4Address("10.244.2.0"), VXLAN, True),
        (IPv4Network("10.244.3.0/24"), VTEP_C, VXLAN, True),
    ]
    assert [f.destination for f in state.fdb] == [IPv4Address("192.0.2.12"),
                                                  IPv4Address("198.51.100.13")]
    assert [n.address for n in state.neighbours] == [IPv4Address("10.244.2.0"), VTEP_C]


def test_backend_host_gw_has_no_tunnel_and_cannot_reach_across_a_router() -> None:
    state = plan(NEIGHBOUR, REMOTE, backend=Backend.HOST_GW)
    assert state.vxlan is None and state.neighbours == () and state.fdb == ()
    assert state.routes == (RoutePlan(IPv4Network("10.244.2.0/24"), IPv4Address("192.0.2.12"),
                                      "eth0", onlink=False),)
    assert state.rejected == (RejectedPeer("node-c", "is not on this node's L2 segment: host-gw "
                                                     "cannot reach it (vxlan or auto can)"),)
    assert (state.veth_mtu, state.bridge.mtu) == (1500, 1500)  # never tunnels: no overhead


@pytest.mark.parametrize(("underlay", "tunnel"), [(1500, 1450), (9000, 8950), (1400, 1350)])
def test_mtus_are_the_underlays_less_the_vxlan_overhead(underlay: int, tunnel: int) -> None:
    state = plan(NEIGHBOUR, node=dataclasses.replace(NODE, mtu=underlay))
    assert state.vxlan is not None
    # auto: the veths take the tunnel's MTU even while every peer is reached by host-gw
    assert (state.vxlan.mtu, state.veth_mtu, state.bridge.mtu) == (tunnel, tunnel, tunnel)


def test_an_underlay_mtu_too_small_for_the_tunnel_is_refused() -> None:
    with pytest.raises(ConfigError) as small:
        plan(node=dataclasses.replace(NODE, mtu=117))
    assert str(small.value) == "invalid underlay MTU 117: out of range 118-65535"
    assert plan(node=dataclasses.replace(NODE, mtu=117), backend=Backend.HOST_GW).veth_mtu == 117


def test_the_vtep_mac_is_stable_unicast_locally_administered_and_distinct() -> None:
    # pinned: the same across restarts and upgrades (and as the cluster record's), so the
    # peers' FDB entries stay right
    assert vtep_mac("node-a", 7) == vtep_mac("node-a", 7) == "2e:76:db:c9:5c:e1"
    macs = {vtep_mac(f"node-{n}", vni) for n in range(2500) for vni in (1, 2)}
    assert len(macs) == 5000  # per node, and per network of one node
    for mac in macs:
        first = int(mac[:2], 16)
        assert len(mac) == 17 and mac == mac.lower()
        assert first & 0x01 == 0  # unicast
        assert first & 0x02 == 0x02  # locally administered


def test_a_peer_with_a_new_address_and_mac_is_replaced_not_added() -> None:
    moved = dataclasses.replace(REMOTE, address=IPv4Address("198.51.100.14"),
                                vtep_mac="02:00:00:00:0c:0c")
    before, after = plan(REMOTE), plan(moved)
    assert after.neighbours == (NeighbourPlan(VTEP_C, "02:00:00:00:0c:0c"),)
    assert after.fdb == (FdbPlan("02:00:00:00:0c:0c", IPv4Address("198.51.100.14")),)
    assert after.routes == before.routes  # the route goes via the VTEP address: unchanged


def test_a_peer_that_moved_onto_the_segment_switches_to_host_gw() -> None:
    state = plan(dataclasses.replace(REMOTE, same_segment=True))
    assert state.neighbours == () and state.fdb == ()
    assert state.routes == (RoutePlan(IPv4Network("10.244.3.0/24"),
                                      IPv4Address("198.51.100.13"), "eth0", onlink=False),)


def test_peers_are_planned_in_one_order_whatever_order_they_come_in() -> None:
    peers = [OverlayPeer(f"n{i:03}", IPv4Address(f"198.51.100.{i}"),
                         IPv4Network(f"10.244.{i}.0/24"), vtep_mac(f"n{i:03}", 7), i % 2 == 0)
             for i in range(2, 60)]
    shuffled = list(peers)
    random.Random(4).shuffle(shuffled)
    assert plan(*shuffled) == plan(*peers)
    assert [r.destination for r in plan(*shuffled).routes] == [p.subnet for p in peers]


def test_a_mac_given_in_capitals_is_programmed_as_the_kernel_reports_it() -> None:
    state = plan(dataclasses.replace(REMOTE, vtep_mac="02:AB:CD:EF:00:01"))
    assert state.neighbours == (NeighbourPlan(VTEP_C, "02:ab:cd:ef:00:01"),)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"node_id": "node-a"}, "is this node"),
        ({"address": IPv4Address("192.0.2.11")}, "has this node's underlay address 192.0.2.11"),
        ({"subnet": IPv4Network("10.99.3.0/24")},
         "subnet 10.99.3.0/24 is outside the network's subnet 10.244.0.0/16"),
        ({"subnet": IPv4Network("10.244.0.0/23")},
         "subnet 10.244.0.0/23 overlaps this node's 10.244.1.0/24"),
        ({"vtep_mac": "03:00:00:00:00:01"}, "VTEP MAC '03:00:00:00:00:01' is not a unicast MAC"),
        ({"vtep_mac": "00:00:00:00:00:00"}, "VTEP MAC '00:00:00:00:00:00' is not a unicast MAC"),
        ({"vtep_mac": "02:00:00:00:01"}, "VTEP MAC '02:00:00:00:01' is not a unicast MAC"),
        ({"vtep_mac": vtep_mac("node-a", 7)}, f"VTEP MAC {vtep_mac('node-a', 7)} is this node's"),
    ],
)
def test_a_peer_whose_record_cannot_work_is_left_out(change: dict[str, object],
                                                     reason: str) -> None:
    bad = dataclasses.replace(REMOTE, **change)  # type: ignore[arg-type]
    state = plan(NEIGHBOUR, bad)
    assert state.rejected == (RejectedPeer(bad.node_id, reason),)
    assert [r.destination for r in state.routes] == [NEIGHBOUR.subnet]
    assert state.neighbours == () and state.fdb == ()


def test_peers_claiming_overlapping_subnets_are_all_left_out() -> None:
    twin = OverlayPeer("node-d", IPv4Address("198.51.100.20"), IPv4Network("10.244.3.128/25"),
                       vtep_mac("node-d", 7), same_segment=False)
    state = plan(NEIGHBOUR, REMOTE, twin)
    assert state.rejected == (
        RejectedPeer("node-c", "subnet 10.244.3.0/24 overlaps node node-d's"),
        RejectedPeer("node-d", "subnet 10.244.3.128/25 overlaps node node-c's"),
    )
    assert [r.destination for r in state.routes] == [NEIGHBOUR.subnet]


def test_tunnelled_peers_sharing_a_vtep_mac_are_left_out() -> None:
    twin = dataclasses.replace(REMOTE, node_id="node-d", address=IPv4Address("198.51.100.20"),
                               subnet=IPv4Network("10.244.4.0/24"))
    on_segment = dataclasses.replace(NEIGHBOUR, vtep_mac=REMOTE.vtep_mac)  # no FDB entry
    state = plan(on_segment, REMOTE, twin)
    clash = f"VTEP MAC {REMOTE.vtep_mac} is held by nodes node-c, node-d"
    assert state.rejected == (RejectedPeer("node-c", clash), RejectedPeer("node-d", clash))
    assert [r.destination for r in state.routes] == [NEIGHBOUR.subnet]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vni": 0}, "invalid vni 0: out of range 1-16777215"),
        ({"vni": 1 << 24}, "invalid vni 16777216: out of range 1-16777215"),
        ({"port": 0}, "invalid vxlan_port 0: out of range 1-65535"),
        ({"port": 65536}, "invalid vxlan_port 65536: out of range 1-65535"),
    ],
)
def test_settings_out_of_range(fields: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError) as bad:
        settings(**fields)
    assert str(bad.value) == message


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("10.245.1.0/24", "invalid subnet '10.245.1.0/24': outside the network's subnet "
                          "10.244.0.0/16"),
        ("10.244.1.0/31", "invalid subnet '10.244.1.0/31': too small for a gateway and a "
                          "container"),
    ],
)
def test_a_node_lease_that_cannot_hold_the_network(subnet: str, message: str) -> None:
    with pytest.raises(ConfigError) as bad:
        plan(node=dataclasses.replace(NODE, subnet=IPv4Network(subnet)))
    assert str(bad.value) == message


def test_a_vxlan_port_for_flannel_interop_and_device_names_fit_ifnamsiz() -> None:
    state = plan_overlay(settings(port=8472), NODE, [REMOTE])
    assert state.vxlan is not None and state.vxlan.port == 8472
    assert len(state.vxlan.name) == len(state.bridge.name) == 15


def test_a_peer_holding_two_blocks_is_one_vtep_with_a_route_to_each() -> None:
    # a routed network's node claims another block when its own are full
    second = dataclasses.replace(REMOTE, subnet=IPv4Network("10.244.9.0/24"))
    state = plan(second, REMOTE, backend=Backend.VXLAN)
    assert state.rejected == ()
    assert state.fdb == (FdbPlan(REMOTE.vtep_mac, REMOTE.address),)
    assert state.neighbours == (NeighbourPlan(VTEP_C, REMOTE.vtep_mac),
                                NeighbourPlan(IPv4Address("10.244.9.0"), REMOTE.vtep_mac))
    assert [(r.destination, r.gateway) for r in state.routes] == [
        (REMOTE.subnet, VTEP_C), (second.subnet, IPv4Address("10.244.9.0"))]
