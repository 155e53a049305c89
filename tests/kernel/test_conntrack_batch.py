"""The conntrack janitor's ways of forgetting a batch of addresses, against the kernel's own
table: entries made with ctnetlink in a throwaway namespace, one batch forgotten, the rest
left as they were. A small IPv4 batch is matched by the kernel (a filtered dump per address
and side), a larger one and IPv6's in one dump of every entry."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from netbay.kernel.conntrack import FILTERED_UP_TO, forget_batch
from netbay.kernel.netlink import open_conntrack
from netbay.model import IPAddress

pytestmark = pytest.mark.kernel

OUTSIDE = {4: IPv4Address("198.51.100.7"), 6: IPv6Address("2001:db8::7")}


def add_flow(ct: Any, client: IPAddress, server: IPAddress, sport: int) -> None:
    """A UDP entry CLIENT:SPORT -> SERVER:53 and its reply."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    family = socket.AF_INET if client.version == 4 else socket.AF_INET6
    ct.entry("add", timeout=120,
             tuple_orig=NFCTAttrTuple(family=family, saddr=str(client), daddr=str(server),
                                      proto=17, sport=sport, dport=53),
             tuple_reply=NFCTAttrTuple(family=family, saddr=str(server), daddr=str(client),
                                       proto=17, sport=53, dport=sport))


def flows(ct: Any) -> set[tuple[IPAddress, IPAddress]]:
    """Every entry's original (source, destination)."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    found = set()
    for msg in ct.dump():
        orig = NFCTAttrTuple.from_netlink(msg["nfgen_family"], msg.get_attr("CTA_TUPLE_ORIG"))
        found.add((ip_address(orig.saddr), ip_address(orig.daddr)))
    return found


@pytest.mark.parametrize(("version", "size"), [(4, 2), (4, FILTERED_UP_TO + 2), (6, 3)])
def test_a_batch_ends_what_its_addresses_answer_and_what_the_gone_ones_started(
    host_ns: Path, version: int, size: int
) -> None:
    ct = open_conntrack(None, version)
    try:
        prefix = "10.77.0." if version == 4 else "fd00:77::"
        addresses = [ip_address(f"{prefix}{n}") for n in range(2, size + 3)]  # the last: kept
        outside = OUTSIDE[version]
        for n, address in enumerate(addresses):
            add_flow(ct, outside, address, 40000 + n)  # answered by ADDRESS (DNATed to it)
            add_flow(ct, address, outside, 50000 + n)  # started by ADDRESS (masqueraded out)
        batch = {a: n % 2 == 0 for n, a in enumerate(addresses[:-1])}  # even: endpoint gone
        before = flows(ct)
        removed = forget_batch(ct, version, batch)
        gone = {(outside, a) for a in batch} | {(a, outside) for a, s in batch.items() if s}
        assert flows(ct) == before - gone and gone <= before
        assert removed == len(gone)
    finally:
        ct.close()
