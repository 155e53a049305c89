"""The reconciler keeps a routed share's host side (issue 15): every block's blackhole and
every block gateway's /32 on lo (where the DNS server answers), from the driver's desired()
through the comparison to the repairs on the fakes, the audit's lines and the events that
wake the loop."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netbay import NetworkSpec
from netbay.drivers import get_driver
from netbay.drivers.routed import local_options
from netbay.kernel.events import AddressEvent, Change, RouteEvent
from netbay.kernel.rtnl_wire import RTN_BLACKHOLE, Route
from netbay.model import Network, SubnetConfig
from netbay.plan.routed import Encapsulation
from netbay.reconcile.compare import ADDRESS, BLACKHOLE, Drift, compare
from netbay.reconcile.fixes import HoldBlackhole, HoldLocalAddress
from netbay.reconcile.state import (
    LinkState,
    Observed,
    WantedBlackhole,
    WantedLocalAddress,
    Watched,
)
from netbay.reconcile.watch import relevant
from netbay.testing import FakeHost, fake_host

POOL = IPv4Network("10.70.0.0/16")
BLOCKS = (IPv4Network("10.70.3.0/26"), IPv4Network("10.70.9.64/26"))
GATEWAYS = (IPv4Address("10.70.3.1"), IPv4Address("10.70.9.65"))
OWNER = "network calico"


def share(subnets: tuple[SubnetConfig, ...]) -> Network:
    return Network(id="n1", name="calico", driver="routed", created="", subnets=subnets,
                   options=dict(local_options(POOL, 7, Encapsulation.CROSS_SUBNET, 64512,
                                              1450)), mtu=1450)


TWO_BLOCKS = share(tuple(SubnetConfig(b, g) for b, g in zip(BLOCKS, GATEWAYS, strict=True)))


def test_desired_holds_every_block_and_every_gateway_of_the_share() -> None:
    desired = get_driver("routed").desired(TWO_BLOCKS, [])
    assert desired.blackholes == tuple(WantedBlackhole(b, OWNER) for b in BLOCKS)
    assert desired.local_addresses == tuple(WantedLocalAddress(g, OWNER) for g in GATEWAYS)


def test_a_block_without_a_gateway_wants_its_blackhole_only() -> None:
    desired = get_driver("routed").desired(share((SubnetConfig(BLOCKS[0]),)), [])
    assert desired.blackholes == (WantedBlackhole(BLOCKS[0], OWNER),)
    assert desired.local_addresses == ()


LO = {"lo": LinkState("lo", 1, None)}
HELD = Observed(links=LO, addresses={"lo": frozenset(
    {IPv4Interface("127.0.0.1/8"), *(IPv4Interface((g, 32)) for g in GATEWAYS)})},
    blackholes=frozenset(BLOCKS))


def test_nothing_drifts_while_the_kernel_holds_them() -> None:
    assert compare(get_driver("routed").desired(TWO_BLOCKS, []), HELD) == []


def test_a_lost_blackhole_and_a_lost_lo_address_are_each_put_back() -> None:
    observed = Observed(links=LO, addresses={"lo": frozenset({IPv4Interface("127.0.0.1/8"),
                                                              IPv4Interface("10.70.3.1/32")})},
                        blackholes=frozenset({BLOCKS[0]}))
    assert compare(get_driver("routed").desired(TWO_BLOCKS, []), observed) == [
        Drift(BLACKHOLE, "blackhole 10.70.9.64/26",
              "network calico: blackhole 10.70.9.64/26 missing", HoldBlackhole(BLOCKS[1])),
        Drift(ADDRESS, "10.70.9.65/32 on lo", "network calico: lo lost its address "
              "10.70.9.65/32", HoldLocalAddress(GATEWAYS[1])),
    ]


def test_the_loop_wakes_for_a_removed_blackhole_and_a_removed_lo_address() -> None:
    watched = Watched.of(get_driver("routed").desired(TWO_BLOCKS, []), HELD)
    assert relevant(RouteEvent(Change.REMOVED, Route(BLOCKS[1], type=RTN_BLACKHOLE)), watched)
    assert relevant(AddressEvent(Change.REMOVED, 1, IPv4Interface("10.70.3.1/32")), watched)
    other = Route(IPv4Network("10.71.0.0/26"), type=RTN_BLACKHOLE)
    assert not relevant(RouteEvent(Change.REMOVED, other), watched)
    assert not relevant(RouteEvent(Change.ADDED, Route(BLOCKS[1], type=RTN_BLACKHOLE)),
                        watched)


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(
        name="calico", driver="routed", subnets=(SubnetConfig(BLOCKS[0]),),
        options=local_options(POOL, 7, Encapsulation.CROSS_SUBNET, 64512, 1450)))
    return fake


def test_the_engine_reports_and_repairs_them_on_the_fakes(fake: FakeHost) -> None:
    assert fake.host.reconcile().repaired == []
    fake.kernel.blackholes.clear()
    fake.kernel.local_addresses.clear()
    assert fake.host.audit() == [
        "network calico: blackhole 10.70.3.0/26 missing",
        "network calico: lo lost its address 10.70.3.1/32",
    ]
    assert [d.kind for d in fake.host.reconcile().repaired] == [BLACKHOLE, ADDRESS]
    assert fake.kernel.blackholes == {BLOCKS[0]}
    assert fake.kernel.local_addresses == {GATEWAYS[0]}
    assert fake.host.audit() == []
