"""A global network's subnet carved into per-node blocks (/subnet_size each), and the choice of
a global network's subnet and VNI among those the cluster already uses. Pure functions, of
either family: a block is found by its index, so an IPv6 subnet of 2**74 blocks is never
enumerated."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from ipaddress import IPv4Network, IPv6Network
from typing import TypeVar

from ..errors import ConfigError
from ..model import IPNetwork

# a block needs a gateway and at least one container address
LONGEST_BLOCK_PREFIX = 30
LONGEST_BLOCK_PREFIX6 = 126  # the same for IPv6: a gateway and one address
# a dual-stack network's IPv6 subnet when none is given: a random ULA /48 (RFC 4193: the
# 40-bit global ID random, so two clusters' picks hardly ever collide)
ULA = IPv6Network("fd00::/8")
ULA_PREFIX = 48
# where a global network's subnet comes from when none is given: /16s of 10.64.0.0/10
DEFAULT_GLOBAL_POOL = IPv4Network("10.64.0.0/10")
DEFAULT_GLOBAL_PREFIX = 16
VNI_MAX = 2**24 - 1
# random picks before a scan: blocks are mostly free, and nodes claiming at once rarely
# pick the same one (the first free block would make every claimant collide)
RANDOM_TRIES = 32
N = TypeVar("N", IPv4Network, IPv6Network)


def check_block_size(subnet: IPNetwork, size: int) -> None:
    longest, what = ((LONGEST_BLOCK_PREFIX, "subnet_size") if subnet.version == 4
                     else (LONGEST_BLOCK_PREFIX6, "subnet_size6"))
    if not subnet.prefixlen <= size <= longest:
        raise ConfigError(
            what, size, f"must be between {subnet.prefixlen} and {longest} for {subnet}",
        )


def block_count(subnet: IPNetwork, size: int) -> int:
    return 1 << (size - subnet.prefixlen)


def block_at(subnet: N, size: int, index: int) -> N:
    step = 1 << (subnet.max_prefixlen - size)
    return type(subnet)((int(subnet.network_address) + index * step, size))


def is_block_of(subnet: IPNetwork, size: int, block: IPNetwork) -> bool:
    return (block.version == subnet.version and block.prefixlen == size
            and block.subnet_of(subnet))  # type: ignore[arg-type]


def pick_free_block(
    subnet: N, size: int, taken: Collection[IPNetwork],
    prefer: N | None = None, rng: random.Random | None = None,
) -> N | None:
    """A block of SUBNET nobody holds: PREFER if it is free, else a random one; None when
    every block is taken. TAKEN may hold blocks of other subnets and families."""
    if prefer is not None and is_block_of(subnet, size, prefer) and prefer not in taken:
        return prefer
    total = block_count(subnet, size)
    held = {b for b in taken if is_block_of(subnet, size, b)}
    if len(held) >= total:
        return None
    rng = rng or random.Random()
    for _ in range(RANDOM_TRIES):
        candidate = block_at(subnet, size, rng.randrange(total))
        if candidate not in held:
            return candidate
    start = rng.randrange(total)  # a free block exists: held has fewer than total
    blocks = (block_at(subnet, size, (start + i) % total) for i in range(total))
    return next(b for b in blocks if b not in held)


def overlapping(subnet: IPNetwork, others: Iterable[tuple[str, IPNetwork]]) -> str | None:
    """The name of the first of OTHERS (name, subnet) whose subnet overlaps SUBNET (one of
    another family never does)."""
    return next((name for name, other in others
                 if other.version == subnet.version and subnet.overlaps(other)), None)


def random_ula(taken: Iterable[IPv6Network], rng: random.Random | None = None) -> IPv6Network:
    """A random ULA /48 that overlaps no TAKEN subnet (RFC 4193, section 3.2)."""
    rng = rng or random.SystemRandom()
    taken = list(taken)
    while True:
        candidate = block_at(ULA, ULA_PREFIX, rng.randrange(block_count(ULA, ULA_PREFIX)))
        if not any(candidate.overlaps(t) for t in taken):
            return candidate


def default_subnet(taken: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first /16 of the default pool that overlaps no TAKEN subnet."""
    taken = list(taken)
    for candidate in DEFAULT_GLOBAL_POOL.subnets(new_prefix=DEFAULT_GLOBAL_PREFIX):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    return None


def check_vni(vni: int) -> None:
    if not 1 <= vni <= VNI_MAX:
        raise ConfigError("vni", vni, f"must be between 1 and {VNI_MAX}")


def free_vni(used: Collection[int]) -> int:
    """The smallest VNI no global network uses."""
    vni = 1
    while vni in used:
        vni += 1
    return vni
