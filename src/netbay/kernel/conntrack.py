"""Forget connection-tracking state that points at an address netbay stopped using, so no
packet of an old flow follows a removed port mapping to a stale container address.

A dump walks the kernel's whole conntrack table, every bucket of it (262,144 here: ~12 ms
for an empty table), in one stretch the kernel does not break, so an RCU grace period
waits for it: a link delete running meanwhile (a detach's veth) waited up to that long.
So a janitor thread does it off the detach path, and not at once: the addresses of a burst
of detaches wait until none came for QUIET (at most LONGEST), then go in one batch. New
flows already miss the removed elements; an address handed out again meanwhile waits for
its batch (`settle`), so its next owner never gets an old flow's replies.

Both families: ctnetlink dumps and deletes the entries of the family its request names,
so the janitor keeps a socket for each family of a batch.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from ipaddress import ip_address
from typing import Any

from ..errors import KernelError
from ..model import IPAddress
from .netlink import PyRoute2, open_conntrack

log = logging.getLogger("netbay.conntrack")

QUIET = 0.05  # s with no new address before a batch runs
LONGEST = 1.0  # s an address waits at most, in a burst that never pauses
# a batch of up to this many IPv4 addresses has the kernel match each (one table walk per
# address and side, parsing only the matches); a larger one, or IPv6's, one dump of every
# entry of the family, matched here (one walk, every entry parsed)
FILTERED_UP_TO = 4

Batch = Mapping[IPAddress, bool]  # address -> STARTED (its endpoint is gone)


def forget_address(ct: PyRoute2, address: IPAddress, started: bool = False) -> int:
    """Delete every entry whose reply comes from IPv4 ADDRESS (flows DNATed to it, or from
    it unNATed) and, with STARTED (its endpoint is gone), every entry it started (masqueraded
    out, or to another network): the address's next owner must not get their replies. The
    kernel matches (CT: open_conntrack(None, 4)'s); IPv6's filter is broken (_forget_all)."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple  # pyroute2: ~0.5 s

    match = NFCTAttrTuple(family=socket.AF_INET, saddr=str(address))
    sides = ["CTA_TUPLE_REPLY", "CTA_TUPLE_ORIG"] if started else ["CTA_TUPLE_REPLY"]
    removed = 0
    for side in sides:
        key = "tuple_reply" if side == "CTA_TUPLE_REPLY" else "tuple_orig"
        # raw messages, not dump_entries: an offloaded TCP entry (a flowtable's) comes without
        # its protoinfo, which pyroute2's entry parser cannot do without
        for msg in ct.dump(**{key: match}):
            if match.nla_eq(msg["nfgen_family"], msg.get_attr(side)):
                removed += _delete(ct, msg)
    return removed


def forget_batch(ct: PyRoute2, version: int, batch: Batch) -> int:
    """forget_address for every address of BATCH (all of family VERSION), the cheaper way
    for its size."""
    if version == 4 and len(batch) <= FILTERED_UP_TO:
        return sum(forget_address(ct, a, started) for a, started in batch.items())
    return _forget_all(ct, batch)


def _forget_all(ct: PyRoute2, batch: Batch) -> int:
    """One dump of every entry, each matched against BATCH here. (IPv6 always: the kernel's
    IPv6 filter, 6.18 here, matches the entries whose address DIFFERS: `!ipv6_addr_cmp` in
    ctnetlink_filter_match_tuple.)"""
    removed = 0
    for msg in ct.dump():
        answered = _source(msg, "CTA_TUPLE_REPLY")
        started = _source(msg, "CTA_TUPLE_ORIG")
        if answered in batch or (started is not None and batch.get(started, False)):
            removed += _delete(ct, msg)
    return removed


def _source(msg: Any, side: str) -> IPAddress | None:
    """The source address of MSG's tuple SIDE (a pyroute2 conntrack message)."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    tuple_ = msg.get_attr(side)
    if tuple_ is None:
        return None
    found = NFCTAttrTuple.from_netlink(msg["nfgen_family"], tuple_).saddr
    return ip_address(found) if found else None


def _delete(ct: PyRoute2, msg: Any) -> int:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    try:
        ct.entry("del", tuple_orig=NFCTAttrTuple.from_netlink(
            msg["nfgen_family"], msg.get_attr("CTA_TUPLE_ORIG")))
        return 1
    except KernelError:
        return 0  # gone meanwhile (a flow both started and answered by its address)


class FlowJanitor:
    """Runs forget_batch for the addresses given to it on one thread, with one socket per
    family, opened in the namespace of the thread that makes the janitor (the host's: its
    thread, started there, never leaves it). A socket, and pyroute2 with it, is opened for
    the first address of its family in a batch and closed when nothing waits: a daemon's
    start-up and its first container do without either."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._waiting: dict[IPAddress, bool] = {}
        self._working: set[IPAddress] = set()  # the batch being forgotten
        self._first = self._last = 0.0  # when the oldest and the newest waiting came
        self._hurry = False  # settle: the batch runs without its quiet
        self._closing = False
        self._ct: dict[int, PyRoute2] = {}  # by family: 4, 6
        self._thread = threading.Thread(target=self._run, name="flow-janitor", daemon=True)
        self._thread.start()

    def forget(self, address: IPAddress, started: bool = False) -> None:
        """ADDRESS's flows end (forget_address): those it answers, and with STARTED those
        it started."""
        with self._lock:
            now = time.monotonic()
            if not self._waiting:
                self._first = now
            self._last = now
            self._waiting[address] = self._waiting.get(address, False) or started
            self._lock.notify_all()

    def settle(self, addresses: Iterable[IPAddress]) -> None:
        """Return once no flow of ADDRESSES (about to be handed out again) waits to end."""
        wanted = set(addresses)
        with self._lock:
            while wanted & (self._waiting.keys() | self._working) and self._thread.is_alive():
                self._hurry = True
                self._lock.notify_all()
                self._lock.wait(0.1)

    def drain(self) -> None:
        """Wait until every address given is handled."""
        with self._lock:
            while (self._waiting or self._working) and self._thread.is_alive():
                self._hurry = True
                self._lock.notify_all()
                self._lock.wait(0.1)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._forget(batch)
            finally:
                with self._lock:
                    self._working.clear()
                    if not self._waiting:
                        self._close_sockets()
                    self._lock.notify_all()

    def _next_batch(self) -> dict[IPAddress, bool] | None:
        """The waiting addresses once none came for QUIET (or the oldest waited LONGEST, or
        someone settles); None when closing with none left."""
        with self._lock:
            while True:
                if not self._waiting:
                    if self._closing:
                        return None
                    self._lock.wait()
                    continue
                now = time.monotonic()
                due = min(self._last + QUIET, self._first + LONGEST)
                if self._hurry or self._closing or now >= due:
                    batch, self._waiting, self._hurry = self._waiting, {}, False
                    self._working = set(batch)
                    return batch
                self._lock.wait(due - now)

    def _forget(self, batch: dict[IPAddress, bool]) -> None:
        for version in (4, 6):
            mine = {a: s for a, s in batch.items() if a.version == version}
            if not mine:
                continue
            try:
                if version not in self._ct:
                    self._ct[version] = open_conntrack(None, version)
                forget_batch(self._ct[version], version, mine)
            except Exception as exc:  # stale flows are a nuisance, never a reason to stop
                log.warning("conntrack cleanup for %s failed: %s", sorted(mine, key=str), exc)

    def _close_sockets(self) -> None:
        while self._ct:
            self._ct.popitem()[1].close()

    def close(self, timeout: float = 30.0) -> None:
        """What waits is forgotten at once (up to TIMEOUT seconds), then the thread ends.
        Its sockets are its own: it closes them when nothing waits. A thread still busy
        after TIMEOUT keeps them, as closing them under it failed its dump ("fd -1"); it is
        a daemon thread, so it does not hold the process up."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(timeout=timeout)
