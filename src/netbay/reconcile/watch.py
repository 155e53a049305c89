"""The kernel's notifications that say "look now", from the host's namespace:

- rtnetlink link, IPv4 address and route changes (a port leaving its bridge is a link
  "changed" event with the new master): relevant when they concern what the last pass
  wanted (Watched), and only removals and changes (what netbay adds itself is no drift);
- IPv6 addresses and routes removed from a watched link, and IPv6 blackholes removed (a
  bridge's IPv6 gateway, a routed /128 or IPv6 block; decoded here, as the IPv4-typed
  Subscription leaves IPv6 out);
- IPv4 and IPv6 netconf: `net.ipv4.ip_forward` or `net.ipv6.conf.all.forwarding` turned (the
  kernel reports them for "all" devices; other sysctls send nothing, so the periodic
  resync finds those);
- nftables: a table, chain, rule or set of netbay's tables deleted (`nft flush ruleset`,
  an nftables service reload); additions and set elements (every attach) are not drift.

A lost notification (the socket overran) is relevant: only a comparison can tell.
"""

from __future__ import annotations

import errno
import functools
import os
import selectors
import time
from collections.abc import Callable

from ..errors import KernelError
from ..kernel import netlink
from ..kernel.events import (
    AddressEvent,
    Change,
    Event,
    EventsLost,
    LinkEvent,
    RouteEvent,
    Subscription,
)
from ..kernel.rtnl_wire import (
    RTM_DELADDR,
    RTM_DELROUTE,
    RTNLGRP_IPV4_IFADDR,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_LINK,
)
from ..kernel.rtnl_wire6 import (
    RTNLGRP_IPV6_IFADDR,
    RTNLGRP_IPV6_ROUTE,
    decode_address6,
    decode_route6,
)
from ..plan.firewall import TABLE as NETBAY_TABLE
from .state import Watched

RTNLGRP_IPV4_NETCONF, RTNLGRP_IPV6_NETCONF, RTM_NEWNETCONF = 24, 25, 80
NETCONFA_IFINDEX, NETCONFA_IFINDEX_ALL = 1, -1
_NETCONFMSG_SIZE = 4  # ncm_family, padded
NFNLGRP_NFTABLES, NFNL_SUBSYS_NFTABLES = 7, 10
# NFT_MSG_DELTABLE, DELCHAIN, DELRULE, DELSET; each names its table in attribute 1
_NFT_DELETIONS = frozenset({2, 5, 8, 11})
_NFTA_TABLE = 1
_NFGENMSG_SIZE = 4
_RECEIVE_BUFFER = 1 << 20
# after the first notification, the rest of its burst (an attach sends about five) is let in
# before reading: one wake-up of this thread per burst, not one per notification, so the
# threads doing the attach are not kept waiting for the interpreter lock
BATCH = 0.01


def relevant(event: Event, watched: Watched) -> bool:
    """Whether EVENT may have made netbay's objects drift."""
    if isinstance(event, EventsLost):
        return True
    if isinstance(event, LinkEvent):
        return event.change != Change.ADDED and event.link.name in watched.names
    if isinstance(event, AddressEvent):
        return event.change == Change.REMOVED and event.index in watched.indices
    if isinstance(event, RouteEvent):
        return event.change == Change.REMOVED and (
            event.route.index in watched.indices
            or event.route.destination in watched.blackholes)
    return False


def forwarding_changed(kind: int, payload: bytes) -> bool:
    if kind != RTM_NEWNETCONF:
        return False
    found = netlink.attribute_map(payload, _NETCONFMSG_SIZE).get(NETCONFA_IFINDEX)
    return found is not None and int.from_bytes(found[:4], "little", signed=True) == (
        NETCONFA_IFINDEX_ALL)


def ipv6_removed(kind: int, payload: bytes, watched: Watched) -> bool:
    """An IPv6 address or route of a watched link deleted, or a watched IPv6 blackhole."""
    if kind == RTM_DELADDR:
        found = decode_address6(payload)
        return found is not None and found.index in watched.indices
    if kind == RTM_DELROUTE:
        route = decode_route6(payload)
        return route is not None and (
            route.index in watched.indices or route.destination in watched.blackholes)
    return False


def netbay_table_touched(kind: int, payload: bytes) -> bool:
    if kind >> 8 != NFNL_SUBSYS_NFTABLES or kind & 0xFF not in _NFT_DELETIONS:
        return False
    table = netlink.attribute_map(payload, _NFGENMSG_SIZE).get(_NFTA_TABLE)
    return table is not None and netlink.read_string(table) == NETBAY_TABLE


def _drain(sock: netlink.NetlinkSocket, matches: Callable[[int, bytes], bool]) -> bool:
    """Read every waiting datagram of SOCK; whether any message MATCHES (or some were lost)."""
    found = False
    while True:
        try:
            data = sock.receive(0)
        except KernelError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            found = True
            continue
        if data is None:
            return found
        found = found or any(matches(kind, payload)
                             for kind, _, _, payload in netlink.messages(data))


class Watch(netlink.Resource):
    """Subscribed on creation: what changes from then on is seen."""

    def __init__(self, watched: Callable[[], Watched]) -> None:
        self._watched = watched
        self._links = Subscription(
            None, groups=(RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE))
        self._ipv6 = netlink.route_socket(
            None, groups=(RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE),
            receive_buffer=_RECEIVE_BUFFER)
        self._netconf = netlink.route_socket(
            None, groups=(RTNLGRP_IPV4_NETCONF, RTNLGRP_IPV6_NETCONF),
            receive_buffer=_RECEIVE_BUFFER)
        self._nft = netlink.netfilter_socket(
            groups=(NFNLGRP_NFTABLES,), receive_buffer=_RECEIVE_BUFFER)
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        for source in (self._links, self._ipv6, self._netconf, self._nft, self._wake_read):
            self._selector.register(source, selectors.EVENT_READ)

    def wait(self, timeout: float | None) -> bool:
        """Wait up to TIMEOUT seconds (None: until something comes); True if what came may
        concern netbay's objects. wake() ends a wait early."""
        found = False
        ready = self._selector.select(timeout)
        if ready and any(key.fileobj is not self._wake_read for key, _ in ready):
            time.sleep(BATCH)
            ready = self._selector.select(0)
        for key, _ in ready:
            source = key.fileobj
            if source is self._links:
                watched = self._watched()
                found = any([relevant(e, watched) for e in self._links.poll(0)]) or found
            elif source is self._ipv6:
                removed = functools.partial(ipv6_removed, watched=self._watched())
                found = _drain(self._ipv6, removed) or found
            elif source is self._netconf:
                found = _drain(self._netconf, forwarding_changed) or found
            elif source is self._nft:
                found = _drain(self._nft, netbay_table_touched) or found
            else:
                os.read(self._wake_read, 4096)
        return found

    def wake(self) -> None:
        os.write(self._wake_write, b"\0")

    def close(self) -> None:
        self._selector.close()
        for source in (self._links, self._ipv6, self._netconf, self._nft):
            source.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
