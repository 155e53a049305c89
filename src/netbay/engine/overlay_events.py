"""The kernel's notifications that concern the overlay plane, so that what someone deletes
of it is put back at once rather than at the next timer sync: a route of netbay's protocol
removed, a neighbour or FDB entry of a tunnel removed (the kernel's own ARP entries on the
other links come and go all the time), a tunnel changed or gone. A lost notification
counts: only a sync can tell what it was."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from ..errors import KernelError
from ..kernel.events import (
    Change,
    Event,
    EventsLost,
    FdbEvent,
    LinkEvent,
    NeighbourEvent,
    RouteEvent,
    Subscription,
)
from ..kernel.rtnl_wire import (
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_LINK,
    RTNLGRP_NEIGH,
    RTPROT_NETBAY,
)

log = logging.getLogger("netbay.overlay")


def concerns(event: Event, names: frozenset[str], tunnels: frozenset[int]) -> bool:
    """Whether EVENT may have undone part of the overlay plane: NAMES are its tunnels,
    TUNNELS their indices (a removed neighbour is reported unresolved, so its device is
    what tells)."""
    if isinstance(event, EventsLost):
        return True
    if isinstance(event, RouteEvent):
        return event.change is Change.REMOVED and event.route.protocol == RTPROT_NETBAY
    if isinstance(event, NeighbourEvent):
        return event.change is Change.REMOVED and event.neighbour.index in tunnels
    if isinstance(event, FdbEvent):
        return event.change is Change.REMOVED and event.entry.index in tunnels
    if isinstance(event, LinkEvent):
        return event.change is not Change.ADDED and event.link.name in names
    return False


def _indices(names: frozenset[str]) -> frozenset[int]:
    found = set()
    for name in names:
        with contextlib.suppress(OSError):  # not made yet, or gone: the sync remakes it
            found.add(socket.if_nametoindex(name))
    return frozenset(found)


class OverlayEvents:
    """A thread calling WAKE when the host namespace reports something that CONCERNS the
    tunnels TUNNELS() names, until STOPPING is set."""

    def __init__(self, tunnels: Callable[[], frozenset[str]], wake: Callable[[], None],
                 stopping: threading.Event) -> None:
        self._tunnels = tunnels
        self._wake = wake
        self._stopping = stopping
        self._thread = threading.Thread(target=self._run, name="netbay-overlay-events",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            with Subscription(None, (RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_NEIGH)) as events:
                while not self._stopping.is_set():
                    found = events.poll(0.5)
                    names = self._tunnels() if found else frozenset()
                    indices = _indices(names)
                    if any(concerns(event, names, indices) for event in found):
                        self._wake()
        except KernelError as exc:  # the timer still syncs; only the quick repair is lost
            log.warning("overlay: kernel notifications unavailable: %s", exc)
