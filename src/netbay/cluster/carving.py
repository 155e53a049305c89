"""A global network's subnet carved into per-node blocks (/subnet_size each), and the choice of
a global network's subnet and VNI among those the cluster already uses. Pure functions."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from ipaddress import IPv4Network

from ..errors import ConfigError

# a block needs a gateway and at least one container address
LONGEST_BLOCK_PREFIX = 30
# where a global network's subnet comes from when none is given: /16s of 10.64.0.0/10
DEFAULT_GLOBAL_POOL = IPv4Network("10.64.0.0/10")
DEFAULT_GLOBAL_PREFIX = 16
VNI_MAX = 2**24 - 1
# random picks before a scan: blocks are mostly free, and nodes claiming at once rarely
# pick the same one (the first free block would make every claimant collide)
RANDOM_TRIES = 32


def check_block_size(subnet: IPv4Network, size: int) -> None:
    if not subnet.prefixlen <= size <= LONGEST_BLOCK_PREFIX:
        raise ConfigError(
            "subnet_size", size,
            f"must be between {subnet.prefixlen} and {LONGEST_BLOCK_PREFIX} for {subnet}",
        )


def block_count(subnet: IPv4Network, size: int) -> int:
    return 1 << (size - subnet.prefixlen)


def block_at(subnet: IPv4Network, size: int, index: int) -> IPv4Network:
    step = 1 << (32 - size)
    return IPv4Network((int(subnet.network_address) + index * step, size))


def is_block_of(subnet: IPv4Network, size: int, block: IPv4Network) -> bool:
    return block.prefixlen == size and block.subnet_of(subnet)


def pick_free_block(
    subnet: IPv4Network, size: int, taken: Collection[IPv4Network],
    prefer: IPv4Network | None = None, rng: random.Random | None = None,
) -> IPv4Network | None:
    """A block of SUBNET nobody holds: PREFER if it is free, else a random one; None when
    every block is taken."""
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


def overlapping(subnet: IPv4Network, others: Iterable[tuple[str, IPv4Network]]) -> str | None:
    """The name of the first of OTHERS (name, subnet) whose subnet overlaps SUBNET."""
    return next((name for name, other in others if subnet.overlaps(other)), None)


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
