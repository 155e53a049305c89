"""Forget connection-tracking state that points at an address netbay stopped using, so no
packet of an old flow follows a removed port mapping to a stale container address."""

from __future__ import annotations

from ipaddress import IPv4Address

from pyroute2 import Conntrack
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from ..errors import KernelError


def forget_address(address: IPv4Address) -> int:
    """Delete every entry whose reply comes from ADDRESS (flows DNATed to it, or from it)."""
    removed = 0
    try:
        with Conntrack() as ct:
            entries = list(ct.dump_entries(tuple_reply=NFCTAttrTuple(saddr=str(address))))
            for entry in entries:
                try:
                    ct.entry("del", tuple_orig=entry.tuple_orig)
                    removed += 1
                except OSError:
                    continue  # gone meanwhile
    except OSError as exc:
        raise KernelError(f"conntrack cleanup for {address}: {exc}", exc.errno or 0) from exc
    return removed
