"""Docker's default address pools (IPv4, and a ULA /48 for IPv6) and the choice of a free
subnet among them."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network, IPv6Network

from ..errors import IPAMExhaustedError
from ..model import IPNetwork

DEFAULT_BRIDGE_POOL = IPv4Network("172.17.0.0/16")


def default_pools() -> Iterator[IPv4Network]:
    """172.18-31.0.0/16, then 192.168.0.0/16 in /20s; 172.17/16 is the default bridge's."""
    for second in range(18, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def overlaps_any(candidate: IPNetwork, taken: Iterable[IPNetwork]) -> bool:
    return any(candidate.overlaps(net) for net in taken)


def choose_subnet(
    taken: Iterable[IPNetwork], candidates: Iterable[IPv4Network] | None = None
) -> IPv4Network:
    """The first candidate pool that overlaps nothing taken (networks, host addresses, routes)."""
    taken = list(taken)
    for pool in default_pools() if candidates is None else candidates:
        if not overlaps_any(pool, taken):
            return pool
    raise IPAMExhaustedError("no free subnet left in the default address pools")


def host_id() -> bytes:
    """This host's stable identity (systemd's machine id), for the ULA pool's global id."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, "rb") as f:
                found = f.read().strip()
        except OSError:
            continue
        if found:
            return found
    return socket.gethostname().encode()


def ula_pool(identity: bytes) -> IPv6Network:
    """A unique local /48 (RFC 4193: fd00::/8 and a 40-bit global id) whose global id is a
    hash of IDENTITY, so it stays the same across restarts and differs between hosts
    (Docker 27's default IPv6 pool)."""
    global_id = hashlib.sha256(identity).digest()[:5]
    return IPv6Network((b"\xfd" + global_id + bytes(10), 48))


def default_pools6(identity: bytes) -> Iterator[IPv6Network]:
    """The /64s of this host's ULA /48, lowest first."""
    return ula_pool(identity).subnets(new_prefix=64)


def choose_subnet6(taken: Iterable[IPNetwork], identity: bytes | None = None) -> IPv6Network:
    """The first /64 of the ULA pool that overlaps nothing taken."""
    taken6 = [net for net in taken if net.version == 6]
    for pool in default_pools6(host_id() if identity is None else identity):
        if not any(pool.overlaps(net) for net in taken6):
            return pool
    raise IPAMExhaustedError("no free IPv6 subnet left in the default pool")
