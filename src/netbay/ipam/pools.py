"""Docker's default address pools and the choice of a free subnet among them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network

from ..errors import IPAMExhaustedError

DEFAULT_BRIDGE_POOL = IPv4Network("172.17.0.0/16")


def default_pools() -> Iterator[IPv4Network]:
    """172.18-31.0.0/16, then 192.168.0.0/16 in /20s; 172.17/16 is the default bridge's."""
    for second in range(18, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def overlaps_any(candidate: IPv4Network, taken: Iterable[IPv4Network]) -> bool:
    return any(candidate.overlaps(net) for net in taken)


def choose_subnet(
    taken: Iterable[IPv4Network], candidates: Iterable[IPv4Network] | None = None
) -> IPv4Network:
    """The first candidate pool that overlaps nothing taken (networks, host addresses, routes)."""
    taken = list(taken)
    for pool in default_pools() if candidates is None else candidates:
        if not overlaps_any(pool, taken):
            return pool
    raise IPAMExhaustedError("no free subnet left in the default address pools")
