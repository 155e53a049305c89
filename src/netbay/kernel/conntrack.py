"""Forget connection-tracking state that points at an address netbay stopped using, so no
packet of an old flow follows a removed port mapping to a stale container address.

Dumping and deleting entries costs milliseconds (and a netlink socket closed after deletes
waits for the kernel), so a janitor thread with one socket per burst does it right after the
mapping is gone, off the detach path: new flows already miss the removed map element, and
the janitor ends the old ones within milliseconds.

Both families: ctnetlink dumps and deletes the entries of the family its request names,
so the janitor keeps a socket for each family it met in a burst.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading

from ..errors import KernelError
from ..model import IPAddress
from .netlink import PyRoute2, open_conntrack

log = logging.getLogger("netbay.conntrack")


def forget_address(ct: PyRoute2, address: IPAddress, started: bool = False) -> int:
    """Delete every entry whose reply comes from ADDRESS (flows DNATed to it, or from it
    unNATed) and, with STARTED (its endpoint is gone), every entry it started (masqueraded
    out, or to another network): the address's next owner must not get their replies.
    CT: open_conntrack(None, ADDRESS.version)'s."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple  # pyroute2: ~0.5 s

    # raw messages, not dump_entries: an offloaded TCP entry (a flowtable's) comes without
    # its protoinfo, which pyroute2's entry parser cannot do without
    match = NFCTAttrTuple(family=socket.AF_INET if address.version == 4 else socket.AF_INET6,
                          saddr=str(address))
    sides = ["CTA_TUPLE_REPLY", "CTA_TUPLE_ORIG"] if started else ["CTA_TUPLE_REPLY"]
    removed = 0
    for side in sides:
        key = "tuple_reply" if side == "CTA_TUPLE_REPLY" else "tuple_orig"
        # IPv6: every entry, matched here: the kernel's IPv6 filter (6.18 here) matches the
        # entries whose address DIFFERS (`!ipv6_addr_cmp` in ctnetlink_filter_match_tuple)
        for msg in ct.dump(**{key: match}) if address.version == 4 else ct.dump():
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
    """Runs forget_address for queued addresses on one thread and one socket per family,
    opened in the namespace of the thread that makes the janitor (the host's: its thread,
    started there, never leaves it). A socket, and pyroute2 with it, is opened for the first
    address of its family in a burst and closed when the queue is empty: a daemon's start-up
    and its first container do without either."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[IPAddress, bool] | None] = queue.Queue()
        self._ct: dict[int, PyRoute2] = {}  # by family: 4, 6
        self._thread = threading.Thread(target=self._run, name="flow-janitor", daemon=True)
        self._thread.start()

    def forget(self, address: IPAddress, started: bool = False) -> None:
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
                address, started = item
                if address.version not in self._ct:
                    self._ct[address.version] = open_conntrack(None, address.version)
                forget_address(self._ct[address.version], address, started)
            except Exception as exc:  # stale flows are a nuisance, never a reason to stop
                log.warning("conntrack cleanup for %s failed: %s", item, exc)
            finally:
                self._idle()
                self._queue.task_done()

    def _idle(self) -> None:
        """The sockets closed once nothing is queued: an idle daemon holds no descriptor
        for them (the soak counts them), and the next burst of detaches opens them again."""
        if self._queue.empty():
            self._close_sockets()

    def _close_sockets(self) -> None:
        while self._ct:
            self._ct.popitem()[1].close()

    def close(self, timeout: float = 30.0) -> None:
        """The queue finished (up to TIMEOUT seconds), then the thread ends. Its sockets are
        its own: it closes them when its queue is empty. A thread still busy after TIMEOUT
        (thousands of detaches queued) keeps them, as closing them under it failed its
        dump ("fd -1"); it is a daemon thread, so it does not hold the process up."""
        self._queue.put(None)
        self._thread.join(timeout=timeout)
