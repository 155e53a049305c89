"""nftables trace events (what `nft monitor trace` shows), read straight from netlink.

A socket of NETLINK_NETFILTER joined to NFNLGRP_NFTRACE receives one NFT_MSG_TRACE message
per chain a traced packet passes (and per rule that gives a verdict): table, chain, rule
handle, verdict, in/out interface and, once per chain evaluation, the packet's headers.
Joining the group before the trace rule exists means no event is missed (a subprocess of
`nft monitor trace` gives no sign of when it starts listening). Decoding is pure.
"""

from __future__ import annotations

import errno
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ..errors import KernelError
from ..kernel import netlink
from .trace_request import hostport

NFNLGRP_NFTRACE = 9
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_TRACE = 17
_NFGENMSG_SIZE = 4  # family, version, resource id
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
TRACE_TYPES = {1: "policy", 2: "return", 3: "rule"}
VERDICTS = {0: "drop", 1: "accept", 2: "stolen", 3: "queue", 4: "repeat", 5: "stop",
            -1: "continue", -2: "break", -3: "jump", -4: "goto", -5: "return"}
(A_TABLE, A_CHAIN, A_HANDLE, A_TYPE, A_VERDICT, A_ID, A_LL, A_NETWORK, A_TRANSPORT, A_IIF,
 _IIFTYPE, A_OIF, _OIFTYPE, A_MARK, A_NFPROTO, A_POLICY) = range(1, 17)
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
ICMP_KINDS = {"icmp": {8: "echo-request", 0: "echo-reply", 3: "unreachable"},
              "icmpv6": {128: "echo-request", 129: "echo-reply", 1: "unreachable"}}
IPV6_HEADER = 40


@dataclass(frozen=True)
class Packet:
    """The IP header fields a trace shows (of IPv4 or IPv6), as the packet was at that point."""

    proto: str  # icmp for IPv4's, icmpv6 for IPv6's
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    sport: int = 0  # for icmp: 0
    dport: int = 0
    icmp_type: int | None = None
    icmp_id: int | None = None

    def __str__(self) -> str:
        if self.proto in ICMP_KINDS:
            kind = ICMP_KINDS[self.proto].get(self.icmp_type or 0, f"type {self.icmp_type}")
            return f"{self.proto} {self.src} -> {self.dst} {kind} id {self.icmp_id}"
        return f"{self.proto} {hostport(self.src, self.sport)} -> {hostport(self.dst, self.dport)}"


@dataclass(frozen=True)
class Event:
    trace_id: int
    family: str
    table: str
    chain: str
    kind: str  # rule, policy, return
    verdict: str
    handle: int | None = None  # the rule's handle (kind "rule")
    iif: int | None = None
    oif: int | None = None
    packet: Packet | None = None  # present on the first event of a chain evaluation
    jump_target: str = ""


def decode_packet(network: bytes, transport: bytes) -> Packet | None:
    """IPv4 or IPv6 network header (+ transport header) as the trace carries them."""
    if len(network) >= IPV6_HEADER and network[0] >> 4 == 6:
        return _decode6(network, transport)
    if len(network) < 20 or network[0] >> 4 != 4:
        return None
    proto = PROTOCOLS.get(network[9], str(network[9]))
    src, dst = IPv4Address(network[12:16]), IPv4Address(network[16:20])
    if not transport and len(network) > (network[0] & 0x0F) * 4:
        transport = network[(network[0] & 0x0F) * 4:]
    return _transport(proto, src, dst, transport)


def _decode6(network: bytes, transport: bytes) -> Packet:
    """The fixed IPv6 header: a probe carries no extension headers, so its next header is
    the transport's (anything else is shown by number)."""
    proto = PROTOCOLS.get(network[6], str(network[6]))
    src, dst = IPv6Address(network[8:24]), IPv6Address(network[24:40])
    if not transport and len(network) > IPV6_HEADER:
        transport = network[IPV6_HEADER:]
    return _transport(proto, src, dst, transport)


def _transport(proto: str, src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address,
               transport: bytes) -> Packet:
    if proto in ICMP_KINDS and len(transport) >= 8:
        kind, _, _, ident = struct.unpack_from("!BBHH", transport)
        return Packet(proto, src, dst, icmp_type=kind, icmp_id=ident)
    if proto in ("tcp", "udp", "sctp") and len(transport) >= 4:
        sport, dport = struct.unpack_from("!HH", transport)
        return Packet(proto, src, dst, sport, dport)
    return Packet(proto, src, dst)


def decode(message: bytes) -> Event | None:
    """One netlink message (header included) into an Event; None if it is not a trace."""
    kind, _, _, payload = netlink.parse_message(message)
    if kind != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE):
        return None
    family = payload[0]
    a = netlink.attribute_map(payload, _NFGENMSG_SIZE)

    def text(key: int) -> str:
        return a.get(key, b"").rstrip(b"\0").decode(errors="replace")

    def u32(key: int) -> int | None:
        return struct.unpack("!I", a[key][:4])[0] if key in a else None

    verdict, target = "", ""
    if A_VERDICT in a:
        nested = netlink.attribute_map(a[A_VERDICT])
        code = struct.unpack("!i", nested[1][:4])[0] if 1 in nested else 0
        verdict = VERDICTS.get(code, str(code))
        target = nested.get(2, b"").rstrip(b"\0").decode(errors="replace")
    elif A_POLICY in a:
        verdict = VERDICTS.get(u32(A_POLICY) or 0, "?")
    packet = None
    if A_NETWORK in a:
        packet = decode_packet(a[A_NETWORK], a.get(A_TRANSPORT, b""))
    handle = struct.unpack("!Q", a[A_HANDLE][:8])[0] if A_HANDLE in a else None
    return Event(
        trace_id=u32(A_ID) or 0, family=FAMILIES.get(family, str(family)), table=text(A_TABLE),
        chain=text(A_CHAIN), kind=TRACE_TYPES.get(u32(A_TYPE) or 0, "?"), verdict=verdict,
        handle=handle, iif=u32(A_IIF), oif=u32(A_OIF), packet=packet, jump_target=target,
    )


def messages(data: bytes) -> Iterator[bytes]:
    return netlink.split_messages(data)


class TraceListener(netlink.Resource):
    """Subscribed on creation, in the calling thread's network namespace."""

    def __init__(self) -> None:
        self._socket = netlink.netfilter_socket(groups=(NFNLGRP_NFTRACE,),
                                                receive_buffer=4 << 20)

    def collect(self, quiet: float, deadline: float) -> list[Event]:
        """Events until none came for QUIET seconds (or DEADLINE, a monotonic time)."""
        events: list[Event] = []
        while (now := time.monotonic()) < deadline:
            try:
                data = self._socket.receive(max(0.001, min(quiet, deadline - now)))
            except KernelError as exc:
                if exc.errno == errno.ENOBUFS:  # events were lost; keep what came
                    continue
                raise
            if data is None:
                break
            events += [e for e in map(decode, messages(data)) if e is not None]
        return events

    def close(self) -> None:
        self._socket.close()


# --- rule texts: `list ruleset` with handles, parsed -----------------------------------------
_TABLE = re.compile(r"^table (\S+) (\S+) \{")
_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_HOOK = re.compile(r"type (\S+) hook (\S+) priority ([^;]+);(?: policy (\S+);)?")
_RULE = re.compile(r"^\s*(.*\S) # handle (\d+)$")


@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str
    hook: str = ""  # empty: a regular chain (jumped to)
    kind: str = ""
    priority: str = ""
    policy: str = ""


def parse_ruleset(text: str) -> tuple[dict[tuple[str, str, int], str], dict[tuple[str, str, str],
                                                                            Chain]]:
    """(family, table, handle) -> rule text, and (family, table, chain) -> Chain, from the
    text of `nft -a list ruleset`."""
    rules: dict[tuple[str, str, int], str] = {}
    chains: dict[tuple[str, str, str], Chain] = {}
    family = table = chain = ""
    for line in text.splitlines():
        if m := _TABLE.match(line):
            family, table, chain = m.group(1), m.group(2), ""
            continue
        if m := _CHAIN.match(line):
            chain = m.group(1)
            chains[(family, table, chain)] = Chain(family, table, chain)
            continue
        if line.strip() == "}":
            chain = "" if line.startswith("\t") or line.startswith(" ") else chain
            continue
        if not chain:
            continue
        if m := _HOOK.search(line):
            chains[(family, table, chain)] = Chain(family, table, chain, m.group(2), m.group(1),
                                                   m.group(3).strip(), m.group(4) or "accept")
        elif m := _RULE.match(line):
            rules[(family, table, int(m.group(2)))] = m.group(1)
    return rules, chains
