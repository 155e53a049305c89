"""rtnetlink notifications of one namespace as decoded events, for a reconciler to listen on.

    with Subscription(netns) as events:
        selector.register(events, selectors.EVENT_READ)  # or: events.poll(timeout)
        for event in events.poll(0):
            ...

An `EventsLost` in the stream means the socket overran (the kernel drops notifications it
cannot queue): whoever keeps state from events must read it afresh with a dump.
"""

from __future__ import annotations

import enum
import errno
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface

from ..errors import KernelError
from . import netlink
from .netlink import Netns, Resource
from .rtnl_wire import (
    IFINFOMSG,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTNLGRP_IPV4_IFADDR,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_LINK,
    RTNLGRP_NEIGH,
    FdbEntry,
    Link,
    Neighbour,
    Route,
    decode_address,
    decode_fdb,
    decode_link,
    decode_neighbour,
    decode_route,
)

ALL_GROUPS = (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_NEIGH)
_RECEIVE_BUFFER = 1 << 20  # room for a burst (a bridge's ports going at once)
_CHANGE_ALL = 0xFFFFFFFF  # ifi_change of a link the kernel has just registered


class Change(enum.Enum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"  # links only: flags, operstate, master, name...


@dataclass(frozen=True)
class Changed:
    change: Change


@dataclass(frozen=True)
class LinkEvent(Changed):
    link: Link


@dataclass(frozen=True)
class AddressEvent(Changed):
    index: int
    address: IPv4Interface


@dataclass(frozen=True)
class RouteEvent(Changed):
    route: Route


@dataclass(frozen=True)
class NeighbourEvent(Changed):
    neighbour: Neighbour


@dataclass(frozen=True)
class FdbEvent(Changed):
    entry: FdbEntry


@dataclass(frozen=True)
class EventsLost:
    """Notifications were dropped (ENOBUFS): resynchronise from a dump."""


Event = LinkEvent | AddressEvent | RouteEvent | NeighbourEvent | FdbEvent | EventsLost


def _link_event(kind: int, payload: bytes) -> LinkEvent | None:
    # a bridge also reports its ports as AF_BRIDGE link messages: the same links again
    if payload[0] != socket.AF_UNSPEC:
        return None
    if kind == RTM_DELLINK:
        change = Change.REMOVED
    else:
        fresh = IFINFOMSG.unpack_from(payload)[4] == _CHANGE_ALL
        change = Change.ADDED if fresh else Change.CHANGED
    return LinkEvent(change, decode_link(payload))


def _address_event(kind: int, payload: bytes) -> AddressEvent | None:
    found = decode_address(payload)
    if found is None:
        return None
    return AddressEvent(Change.ADDED if kind == RTM_NEWADDR else Change.REMOVED, *found)


def _route_event(kind: int, payload: bytes) -> RouteEvent | None:
    route = decode_route(payload)
    if route is None:
        return None
    return RouteEvent(Change.ADDED if kind == RTM_NEWROUTE else Change.REMOVED, route)


def _neighbour_event(kind: int, payload: bytes) -> NeighbourEvent | FdbEvent | None:
    change = Change.ADDED if kind == RTM_NEWNEIGH else Change.REMOVED
    neighbour = decode_neighbour(payload)
    if neighbour is not None:
        return NeighbourEvent(change, neighbour)
    entry = decode_fdb(payload)
    return None if entry is None else FdbEvent(change, entry)


_DECODERS = {
    RTM_NEWLINK: _link_event, RTM_DELLINK: _link_event,
    RTM_NEWADDR: _address_event, RTM_DELADDR: _address_event,
    RTM_NEWROUTE: _route_event, RTM_DELROUTE: _route_event,
    RTM_NEWNEIGH: _neighbour_event, RTM_DELNEIGH: _neighbour_event,
}


def decode_events(data: bytes) -> Iterator[Event]:
    """The events of one datagram of notifications (messages of other types left out)."""
    for kind, _, _, payload in netlink.messages(data):
        decoder = _DECODERS.get(kind)
        event = decoder(kind, payload) if decoder is not None else None
        if event is not None:
            yield event


class Subscription(Resource):
    """Subscribed on creation to GROUPS (RTNLGRP_* numbers) in NETNS (None: the caller's
    namespace): what changes from then on is reported, nothing from before."""

    def __init__(self, netns: Netns = None, groups: Sequence[int] = ALL_GROUPS) -> None:
        self._socket = netlink.route_socket(netns, groups=groups,
                                            receive_buffer=_RECEIVE_BUFFER)

    def fileno(self) -> int:
        """For select/selectors: readable when events are waiting."""
        return self._socket.fileno()

    def poll(self, timeout: float | None = 0) -> list[Event]:
        """The events that came within TIMEOUT seconds (0: only those waiting already; None:
        wait for a notification), and every one queued behind them; [] if none came in
        time, or only notifications of no decoded kind (an IPv6 neighbour...)."""
        events: list[Event] = []
        while True:
            try:
                data = self._socket.receive(timeout)
            except KernelError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                events.append(EventsLost())
                timeout = 0
                continue
            if data is None:
                return events
            events.extend(decode_events(data))
            timeout = 0

    def close(self) -> None:
        self._socket.close()
