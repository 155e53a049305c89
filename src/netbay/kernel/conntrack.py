"""Forget connection-tracking state that points at an address netbay stopped using, so no
packet of an old flow follows a removed port mapping to a stale container address.

Dumping and deleting entries costs milliseconds (and a netlink socket closed after deletes
waits for the kernel), so a janitor thread with one long-lived socket does it right after the
mapping is gone, off the detach path: new flows already miss the removed map element, and
the janitor ends the old ones within milliseconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from ipaddress import IPv4Address

from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from ..errors import KernelError
from .netlink import PyRoute2, open_conntrack

log = logging.getLogger("netbay.conntrack")


def forget_address(ct: PyRoute2, address: IPv4Address) -> int:
    """Delete every entry whose reply comes from ADDRESS (flows DNATed to it, or from it);
    CT: open_conntrack()'s."""
    removed = 0
    for entry in ct.dump_entries(tuple_reply=NFCTAttrTuple(saddr=str(address))):
        try:
            ct.entry("del", tuple_orig=entry.tuple_orig)
            removed += 1
        except KernelError:
            continue  # gone meanwhile
    return removed


class FlowJanitor:
    """Runs forget_address for queued addresses on one thread and one socket, opened in
    the namespace of the thread that makes the janitor (the host's)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[IPv4Address | None] = queue.Queue()
        self._ct = open_conntrack()
        self._thread = threading.Thread(target=self._run, name="flow-janitor", daemon=True)
        self._thread.start()

    def forget(self, address: IPv4Address) -> None:
        self._queue.put(address)

    def drain(self) -> None:
        """Wait until every queued address is handled."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            address = self._queue.get()
            try:
                if address is None:
                    return
                forget_address(self._ct, address)
            except Exception as exc:  # stale flows are a nuisance, never a reason to stop
                log.warning("conntrack cleanup for %s failed: %s", address, exc)
            finally:
                self._queue.task_done()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._ct.close()
