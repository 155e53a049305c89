"""What to do with one query from one asker: answer it from the zone, or forward it. Pure.

- A name the asker's networks serve: its A records, its AAAA records (a family it has no
  address of, and other types: no data, so that a resolver asking for both A and AAAA is
  not sent elsewhere for the other half); ANY: both.
- A reverse name (in-addr.arpa, or ip6.arpa nibbles) of an address on those networks: PTR
  to NAME.NETWORK.
- A name another netbay network serves, or a reverse name inside any netbay subnet:
  NXDOMAIN, never forwarded (container names do not leak upstream, and isolated networks
  stay isolated). So is any other single-label name (no dot): that is what a container
  name looks like, and public DNS has no such names (systemd-resolved does not forward
  them either); a client with search domains goes on to NAME.DOMAIN, which is forwarded.
- Anything else goes to the container's --dns servers or else the host's resolvers; an asker
  whose networks are all internal gets REFUSED instead (no way out, not even for names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .message import (
    AAAA,
    ANY,
    IN,
    NOERROR,
    NXDOMAIN,
    PTR,
    REFUSED,
    SERVFAIL,
    A,
    NotAQuery,
    Query,
    WireError,
    a_record,
    aaaa_record,
    error_response,
    parse_query,
    ptr_record,
    response,
    reverse_address,
)
from .records import Asker, Zone


@dataclass(frozen=True, slots=True)
class Reply:
    packet: bytes
    cacheable: bool  # depends only on the query bytes and the asker's view


@dataclass(frozen=True, slots=True)
class Forward:
    query: Query
    servers: tuple[str, ...]


def resolve(
    packet: bytes, asker: Asker, zone: Zone, upstream: Sequence[str], *, udp: bool = True
) -> Reply | Forward | None:
    """None: drop the packet (a response, or too short to answer)."""
    try:
        query = parse_query(packet)
    except NotAQuery:
        return None
    except WireError as exc:
        error = error_response(packet, exc.rcode)
        return Reply(error, cacheable=False) if error else None
    view = asker.view
    limit = query.udp_size if udp else None
    if query.qclass in (IN, ANY):
        addresses = view.names.get(query.name)
        if addresses is not None:
            qtype = query.qtype
            answers = [a_record(a) for a in addresses] if qtype in (A, ANY) else []
            if qtype in (AAAA, ANY):
                answers += [aaaa_record(a) for a in view.names6.get(query.name, ())]
            return _local(query, NOERROR, answers, view.forward, limit)
        target = view.reverse.get(query.name)
        if target is not None:
            answers = [ptr_record(target)] if query.qtype in (PTR, ANY) else []
            return _local(query, NOERROR, answers, view.forward, limit)
        if query.name in zone.known or (query.name and "." not in query.name):
            return _local(query, NXDOMAIN, [], view.forward, limit)
        address = reverse_address(query.name)
        if address is not None and zone.in_our_subnets(address):
            return _local(query, NXDOMAIN, [], view.forward, limit)
    if not view.forward:
        return Reply(response(query, REFUSED, authoritative=False, recursion=False), True)
    servers = asker.servers or tuple(upstream)
    if not servers:
        return Reply(response(query, SERVFAIL, authoritative=False), cacheable=False)
    return Forward(query, servers)


def _local(
    query: Query, rcode: int, answers: list[bytes], recursion: bool, limit: int | None
) -> Reply:
    return Reply(response(query, rcode, answers, recursion=recursion, limit=limit), True)
