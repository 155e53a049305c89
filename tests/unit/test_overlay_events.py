"""Which kernel notifications wake the overlay plane (engine/overlay_events.py): pure."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from netbay.engine.overlay_events import concerns
from netbay.kernel.events import Change, EventsLost, FdbEvent, LinkEvent, NeighbourEvent, RouteEvent
from netbay.kernel.rtnl_wire import FdbEntry, Link, Neighbour, Route

NAMES, TUNNELS = frozenset({"nbx0123456789ab"}), frozenset({7})


def _route(protocol: int) -> Route:
    return Route(IPv4Network("10.77.3.0/24"), IPv4Address("10.77.3.0"), 7, protocol=protocol)


def test_removals_of_netbays_routes_and_the_tunnels_entries_wake_it() -> None:
    for event in (
        RouteEvent(Change.REMOVED, _route(57)),
        NeighbourEvent(Change.REMOVED, Neighbour(7, IPv4Address("10.77.3.0"), None, 32)),
        FdbEvent(Change.REMOVED, FdbEntry(7, "02:00:00:00:00:01", IPv4Address("198.18.2.13"))),
        LinkEvent(Change.REMOVED, Link(7, "nbx0123456789ab", kind="vxlan")),
        LinkEvent(Change.CHANGED, Link(7, "nbx0123456789ab", kind="vxlan")),
        EventsLost(),
    ):
        assert concerns(event, NAMES, TUNNELS), event


def test_other_routes_other_devices_and_additions_do_not() -> None:
    for event in (
        RouteEvent(Change.REMOVED, _route(4)),  # someone's static route
        RouteEvent(Change.ADDED, _route(57)),  # netbay's own write
        NeighbourEvent(Change.REMOVED, Neighbour(2, IPv4Address("198.18.1.1"), None, 32)),
        NeighbourEvent(Change.ADDED, Neighbour(7, IPv4Address("10.77.3.0"), "02:00:00:00:00:01")),
        FdbEvent(Change.REMOVED, FdbEntry(3, "02:00:00:00:00:09")),  # a bridge's learned MAC
        LinkEvent(Change.REMOVED, Link(9, "veth9", kind="veth")),
        LinkEvent(Change.ADDED, Link(7, "nbx0123456789ab", kind="vxlan")),
    ):
        assert not concerns(event, NAMES, TUNNELS), event
