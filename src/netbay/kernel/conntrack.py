"""Forget connection-tracking state that points at an address netbay stopped using, so no
packet of an old flow follows a removed port mapping to a stale container address.

Dumping and deleting entries costs milliseconds (and a netlink socket closed after deletes
waits for the kernel), so a janitor thread with one socket per burst does it right after the
mapping is gone, off the detach path: new flows already miss the removed map element, and
the janitor ends the old ones within milliseconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from ipaddress import IPv4Address

from ..errors import KernelError
from .netlink import PyRoute2, open_conntrack

log = logging.getLogger("netbay.conntrack")


def forget_address(ct: PyRoute2, address: IPv4Address, started: bool = False) -> int:
    """Delete every entry whose reply comes from ADDRESS (flows DNATed to it, or from it
    unNATed) and, with STARTED (its endpoint is gone), every entry it started (masqueraded
    out, or to another network): the address's next owner must not get their replies.
    CT: open_conntrack()'s."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple  # pyroute2: ~0.5 s

    # raw messages, not dump_entries: an offloaded TCP entry (a flowtable's) comes without
    # its protoinfo, which pyroute2's entry parser cannot do without
    match = NFCTAttrTuple(saddr=str(address))
    sides = ["CTA_TUPLE_REPLY", "CTA_TUPLE_ORIG"] if started else ["CTA_TUPLE_REPLY"]
    removed = 0
    for side in sides:
        key = "tuple_reply" if side == "CTA_TUPLE_REPLY" else "tuple_orig"
        for msg in ct.dump(**{key: match}):
            family = msg["nfgen_family"]
            if not match.nla_eq(family, msg.get_attr(side)):
                continue
            try:
                ct.entry("del", tuple_orig=NFCTAttrTuple.from_netlink(
                    family, msg.get_attr("CTA_TUPLE_ORIG")))
                removed += 1
            except KernelError:
                continue  # gone meanwhile (a flow both started and answered by ADDRESS)
    return removed


class FlowJanitor:
    """Runs forget_address for queued addresses on one thread and one socket, opened in
    the namespace of the thread that makes the janitor (the host's: its thread, started
    there, never leaves it). The socket, and pyroute2 with it, is opened for the first
    address of a burst and closed when the queue is empty: a daemon's start-up and its first
    container do without either."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[IPv4Address, bool] | None] = queue.Queue()
        self._ct: PyRoute2 | None = None
        self._thread = threading.Thread(target=self._run, name="flow-janitor", daemon=True)
        self._thread.start()

    def forget(self, address: IPv4Address, started: bool = False) -> None:
        """ADDRESS's flows end (forget_address): those it answers, and with STARTED those
        it started."""
        self._queue.put((address, started))

    def drain(self) -> None:
        """Wait until every queued address is handled."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._ct is None:
                    self._ct = open_conntrack()
                forget_address(self._ct, *item)
            except Exception as exc:  # stale flows are a nuisance, never a reason to stop
                log.warning("conntrack cleanup for %s failed: %s", item, exc)
            finally:
                self._idle()
                self._queue.task_done()

    def _idle(self) -> None:
        """The socket closed once nothing is queued: an idle daemon holds no descriptor for
        it (the soak counts them), and the next burst of detaches opens one again."""
        if self._ct is not None and self._queue.empty():
            self._ct.close()
            self._ct = None

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        if self._ct is not None:
            self._ct.close()
