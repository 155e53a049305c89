"""DNS wire format, as much as netbay's server needs: one question in, A, AAAA and PTR answers out,
EDNS(0) echoed, truncation for UDP, error responses. Pure; no I/O.

Hand-written rather than dnslib or dnspython: answering one A query costs ~3 us here against
~80 us (dnslib: parse, reply, pack) and ~165 us (dnspython), and the server must keep up with
aardvark-dns (~75,000 queries/s on this machine). Forwarded queries are relayed as bytes and
never decoded beyond their header and question.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

A, PTR, AAAA, OPT, ANY = 1, 12, 28, 41, 255
IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODE_NAMES = {
    NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN", NOTIMP: "NOTIMP", REFUSED: "REFUSED",
}

QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
MAX_UDP = 1232  # what we accept and advertise (the DNS flag day 2020 size)
REVERSE_SUFFIX = ".in-addr.arpa"
REVERSE6_SUFFIX = ".ip6.arpa"
_HEX = frozenset("0123456789abcdef")

_HEADER = struct.Struct("!6H")
_RR_A = struct.Struct("!HHIH")
# Our OPT record: root name, type OPT, class = UDP payload size, no extended flags, no data.
_OPT_RR = b"\x00" + struct.pack("!HHIH", OPT, MAX_UDP, 0, 0)


class WireError(ValueError):
    """The packet is not a query this server can parse; rcode says what to answer."""

    def __init__(self, message: str, rcode: int = FORMERR) -> None:
        super().__init__(message)
        self.rcode = rcode


class NotAQuery(ValueError):  # noqa: N818 - a condition, not a failure: the packet is dropped
    """Too short to answer, or a response: dropped without a word."""


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    name: str  # lower case, dotted, no trailing dot; "" is the root
    qtype: int
    qclass: int
    question: bytes  # the question section exactly as sent (its case kept)
    edns: bool
    udp_size: int  # the most a UDP answer may hold: 512 without EDNS


def parse_query(packet: bytes) -> Query:
    if len(packet) < 12:
        raise NotAQuery("shorter than a DNS header")
    qid, flags, qdcount, _, _, arcount = _HEADER.unpack_from(packet)
    if flags & QR:
        raise NotAQuery("a response")
    if (flags >> 11) & 0xF != 0:
        raise WireError("only standard queries", NOTIMP)
    if qdcount != 1:
        raise WireError("exactly one question expected")
    labels = []
    pos = 12
    try:
        while True:
            length = packet[pos]
            if length == 0:
                pos += 1
                break
            if length > 63:
                raise WireError("compressed or bad label in the question")
            label = packet[pos + 1 : pos + 1 + length]
            if len(label) != length:
                raise WireError("truncated name")
            labels.append(label)
            pos += 1 + length
        qtype, qclass = struct.unpack_from("!HH", packet, pos)
    except (IndexError, struct.error) as exc:
        raise WireError("truncated question") from exc
    end = pos + 4
    if end - 12 > 259:
        raise WireError("name too long")
    name = b".".join(labels).lower().decode("latin-1")
    if any(b"." in label for label in labels):
        name = "\x00"  # an escaped dot: matches no local name, still forwardable
    edns, udp_size = _edns(packet, end, arcount)
    return Query(qid, flags, name, qtype, qclass, packet[12:end], edns, udp_size)


def _edns(packet: bytes, pos: int, arcount: int) -> tuple[bool, int]:
    """An OPT record among the additional records (after no answer or authority records,
    as in every query): its UDP payload size."""
    if not arcount:
        return False, 512
    try:
        if packet[pos] == 0:
            rtype, size = struct.unpack_from("!HH", packet, pos + 1)
            if rtype == OPT:
                return True, min(max(size, 512), MAX_UDP)
    except (IndexError, struct.error):
        pass
    return False, 512


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            raw = label.encode("latin-1")
            if len(raw) > 63:
                raise ValueError(f"label too long in {name!r}")
            out += bytes((len(raw),)) + raw
    return out + b"\x00"


def a_record(address: bytes, ttl: int = 0) -> bytes:
    """An A answer for the question's name (a compression pointer to offset 12)."""
    return b"\xc0\x0c" + _RR_A.pack(A, IN, ttl, 4) + address


def aaaa_record(address: bytes, ttl: int = 0) -> bytes:
    """An AAAA answer (ADDRESS: 16 packed bytes) for the question's name."""
    return b"\xc0\x0c" + _RR_A.pack(AAAA, IN, ttl, 16) + address


def ptr_record(target: str, ttl: int = 0) -> bytes:
    rdata = encode_name(target)
    return b"\xc0\x0c" + _RR_A.pack(PTR, IN, ttl, len(rdata)) + rdata


def response(
    query: Query,
    rcode: int,
    answers: list[bytes] | tuple[bytes, ...] = (),
    *,
    authoritative: bool = True,
    recursion: bool = True,
    limit: int | None = None,
) -> bytes:
    """The answer to QUERY; with LIMIT (UDP), answers that do not fit are left out and TC set."""
    flags = QR | (query.flags & RD) | rcode
    if authoritative:
        flags |= AA
    if recursion:
        flags |= RA
    opt = _OPT_RR if query.edns else b""
    answers = list(answers)
    if limit is not None:
        room = limit - 12 - len(query.question) - len(opt)
        size = sum(map(len, answers))
        while answers and size > room:
            size -= len(answers.pop())
            flags |= TC
    header = _HEADER.pack(query.id, flags, 1, len(answers), 0, 1 if opt else 0)
    return b"".join((header, query.question, *answers, opt))


def error_response(packet: bytes, rcode: int) -> bytes | None:
    """FORMERR or NOTIMP for a packet whose question we could not take: the header back, with
    no question. None if not even the header is there."""
    if len(packet) < 12:
        return None
    qid, flags = struct.unpack_from("!HH", packet)
    return _HEADER.pack(qid, QR | (flags & (RD | 0x7800)) | rcode, 0, 0, 0, 0)


def reverse_address(name: str) -> IPv4Address | IPv6Address | None:
    """The address of a `d.c.b.a.in-addr.arpa` or a full nibble `...ip6.arpa` name (lower
    case, as parse_query gives it), or None."""
    if name.endswith(REVERSE6_SUFFIX):
        return _reverse_address6(name[: -len(REVERSE6_SUFFIX)])
    if not name.endswith(REVERSE_SUFFIX):
        return None
    parts = name[: -len(REVERSE_SUFFIX)].split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    try:
        return IPv4Address(".".join(reversed(parts)))
    except ValueError:
        return None


def _reverse_address6(nibbles: str) -> IPv6Address | None:
    """32 one-digit labels, least significant first; anything shorter is a zone, not an
    address (as for in-addr.arpa, such names are not ours)."""
    parts = nibbles.split(".")
    if len(parts) != 32 or not all(len(p) == 1 and p in _HEX for p in parts):
        return None
    return IPv6Address(int("".join(reversed(parts)), 16))


def reverse_name(address: IPv4Address | IPv6Address) -> str:
    """`d.c.b.a.in-addr.arpa`, or the 32 nibbles of `...ip6.arpa` (lower case)."""
    if address.version == 6:
        return address.reverse_pointer
    return ".".join(reversed(str(address).split("."))) + REVERSE_SUFFIX


def question_of(packet: bytes) -> bytes | None:
    """The question section of a message with one question (for matching an upstream's answer
    to what we asked), or None."""
    pos = 12
    try:
        while packet[pos]:
            if packet[pos] > 63:
                return None
            pos += packet[pos] + 1
    except IndexError:
        return None
    end = pos + 5
    return packet[12:end] if len(packet) >= end else None
