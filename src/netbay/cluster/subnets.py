"""Subnet leases: each node claims a block (/subnet_size) of a global network's subnet when it
first needs one, and, on a routed network whose blocks are full, another (Calico's IPAM; an
overlay keeps flannel's one lease per node). A first claim is one transaction that writes the
block's key and the node's holder key only if neither exists (and the network still does);
a further claim writes the block's key only if it is absent and the holder key only if it is
unchanged since it was read: two nodes never hold one block, and two claims of one node never
lose each other's block. Every key is bound to the node's grace lease. A node asking again (a
restart) gets the blocks its holder key names; claiming twice after a lost reply finds its
own claim.

A dual-stack network's IPv6 blocks (/subnet_size6 of its subnet6) are claimed the same way,
under the same subnets/ keys, and listed in the same holder key ("subnets6"): a first IPv6
claim is a further claim of a node that holds its IPv4 block (claimed first if it holds
none), so the holder key always names an IPv4 block as an older netbay expects."""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from typing import Literal, overload

from ..errors import ConflictError, IPAMExhaustedError, NotFoundError
from ..model import IPNetwork
from .carving import block_count, pick_free_block
from .etcd import EtcdClient
from .kv import Absent, Compare, Delete, ModRevision, Present, Put
from .layout import (
    HOLDERS,
    SUBNETS,
    GlobalNetwork,
    Layout,
    decode_held_subnets,
    decode_held_subnets6,
    encode_held_subnets,
    encode_subnet_holder,
    parse_block_name,
)

# Each lost race means another node took a block since the listing: with random picks even
# a thousand nodes claiming at once settle in a few rounds.
CLAIM_ATTEMPTS = 64
# a holder key's blocks: (IPv4, IPv6), each in the order claimed
Held = tuple[tuple[IPv4Network, ...], tuple[IPv6Network, ...]]
NONE_HELD: Held = ((), ())


def _decode_held(data: bytes) -> Held:
    return decode_held_subnets(data), decode_held_subnets6(data)


class SubnetLeases:
    def __init__(
        self, client: EtcdClient, layout: Layout, node: str, grace_lease: Callable[[], int],
    ) -> None:
        self._client = client
        self._layout = layout
        self._node = node
        self._grace_lease = grace_lease
        self._previous: dict[str, Held] = {}  # asked for again if they were lost
        self._random = random.Random()

    @overload
    def held(self, network: str, version: Literal[4] = 4) -> tuple[IPv4Network, ...]: ...
    @overload
    def held(self, network: str, version: Literal[6]) -> tuple[IPv6Network, ...]: ...
    @overload
    def held(self, network: str, version: int) -> tuple[IPNetwork, ...]: ...

    def held(self, network: str, version: int = 4) -> tuple[IPNetwork, ...]:
        """The blocks of VERSION this node holds on NETWORK (first claimed first), found by
        node id."""
        found = self._client.get(self._layout.holder(network, self._node))
        return () if found is None else _decode_held(found.value)[version == 6]

    def holders(self, network: str, version: int = 4) -> dict[str, tuple[IPNetwork, ...]]:
        """Every node's blocks of VERSION on NETWORK, by node id."""
        listing = self._client.get_prefix(self._layout.prefix(HOLDERS, network))
        return {kv.key.rsplit("/", 1)[1]: _decode_held(kv.value)[version == 6]
                for kv in listing.items}

    @overload
    def claim(self, network: GlobalNetwork, version: Literal[4] = 4) -> IPv4Network: ...
    @overload
    def claim(self, network: GlobalNetwork, version: Literal[6]) -> IPv6Network: ...
    @overload
    def claim(self, network: GlobalNetwork, version: int) -> IPNetwork: ...

    def claim(self, network: GlobalNetwork, version: int = 4) -> IPNetwork:
        """This node's first block of VERSION on NETWORK: the one it holds, else a free one
        claimed now (an IPv6 one after the IPv4 one)."""
        before = self._previous.get(network.name, NONE_HELD)[version == 6]
        return self._claim(network, version, before[0] if before else None)

    def _claim(self, network: GlobalNetwork, version: int, prefer: IPNetwork | None
               ) -> IPNetwork:
        """claim(), PREFER the block to take if this node holds none and it is free."""
        _family(network, version)
        for _ in range(CLAIM_ATTEMPTS):
            found = self._client.get(self._holder(network))
            if found is None and version == 6:
                self.claim(network, 4)
                continue
            held = NONE_HELD if found is None else _decode_held(found.value)
            if held[version == 6]:
                self._previous[network.name] = held
                return held[version == 6][0]
            block = self._free_block(network, version, prefer)
            unchanged = (Absent(self._holder(network)) if found is None
                         else ModRevision(found.key, found.mod_revision))
            if self._try_claim(network, block, [unchanged], held):
                return block
            self._require(network)
        raise self._too_busy(network)

    @overload
    def claim_more(self, network: GlobalNetwork, version: Literal[4] = 4) -> IPv4Network: ...
    @overload
    def claim_more(self, network: GlobalNetwork, version: Literal[6]) -> IPv6Network: ...
    @overload
    def claim_more(self, network: GlobalNetwork, version: int) -> IPNetwork: ...

    def claim_more(self, network: GlobalNetwork, version: int = 4) -> IPNetwork:
        """Another block of VERSION on NETWORK for a node that holds one of it already
        (claim() first)."""
        _family(network, version)
        for _ in range(CLAIM_ATTEMPTS):
            found = self._client.get(self._holder(network))
            held = NONE_HELD if found is None else _decode_held(found.value)
            if found is None or not held[version == 6]:
                which = "IPv6 block" if version == 6 else "block"
                raise NotFoundError(
                    f"this node holds no {which} of global network {network.name}")
            block = self._free_block(network, version, None)
            if self._try_claim(network, block, [ModRevision(found.key, found.mod_revision)],
                               held):
                return block
            self._require(network)
        raise self._too_busy(network)

    def reclaim(self, networks: Callable[[str], GlobalNetwork | None]) -> None:
        """Claim again, the same blocks where they are free, what this node held before its
        grace lease ran out (NETWORKS looks a network up by name), of both families."""
        for name, (before, before6) in list(self._previous.items()):
            network = networks(name)
            if network is None:
                continue
            self._claim(network, 4, before[0] if before else None)
            if before6 and network.subnet6 is not None:
                self._claim(network, 6, before6[0])
            blocks: list[IPNetwork] = [*before, *before6]
            for block in blocks:
                if block not in self.held(name, block.version):
                    self._claim_again(network, block)

    def release(self, network: str) -> bool:
        """Give NETWORK's blocks back, of both families; False if this node held none."""
        found = self._client.get(self._layout.holder(network, self._node))
        self._previous.pop(network, None)
        if found is None:
            return False
        blocks, blocks6 = _decode_held(found.value)
        every: list[IPNetwork] = [*blocks, *blocks6]
        return self._client.txn([Present(found.key)], [
            Delete(found.key), *(Delete(self._layout.subnet(network, b)) for b in every),
        ])

    def _claim_again(self, network: GlobalNetwork, block: IPNetwork) -> None:
        """BLOCK again for this node if no other took it meanwhile (else it stays lost)."""
        found = self._client.get(self._holder(network))
        if found is not None:
            self._try_claim(network, block, [ModRevision(found.key, found.mod_revision)],
                            _decode_held(found.value))

    def _holder(self, network: GlobalNetwork) -> str:
        return self._layout.holder(network.name, self._node)

    def _require(self, network: GlobalNetwork) -> None:
        if self._client.get(self._layout.network(network.name)) is None:
            raise NotFoundError(f"global network {network.name} not found")

    @staticmethod
    def _too_busy(network: GlobalNetwork) -> ConflictError:
        return ConflictError(
            f"no subnet of global network {network.name} could be claimed in "
            f"{CLAIM_ATTEMPTS} tries: too many nodes claiming at once")

    def _free_block(
        self, network: GlobalNetwork, version: int, prefer: IPNetwork | None,
    ) -> IPNetwork:
        listing = self._client.get_prefix(self._layout.prefix(SUBNETS, network.name), True)
        taken = {parse_block_name(kv.key.rsplit("/", 1)[1]) for kv in listing.items}
        subnet, size = _family(network, version)
        block = _pick(subnet, size, taken, prefer, self._random)
        if block is None:
            count = block_count(subnet, size)
            raise IPAMExhaustedError(
                f"global network {network.name} ({subnet}) has no free /{size} left: all "
                f"{count} are held")
        return block

    def _try_claim(
        self, network: GlobalNetwork, block: IPNetwork, holder_unchanged: list[Compare],
        held: Held,
    ) -> bool:
        """BLOCK for this node, added to what it HELD; remembered when etcd took it."""
        blocks, blocks6 = held
        if isinstance(block, IPv4Network):
            blocks = (*blocks, block)
        else:
            blocks6 = (*blocks6, block)
        lease = self._grace_lease()
        subnet_key = self._layout.subnet(network.name, block)
        claimed = self._client.txn(
            [Present(self._layout.network(network.name)), Absent(subnet_key), *holder_unchanged],
            [Put(subnet_key, encode_subnet_holder(self._node), lease),
             Put(self._holder(network), encode_held_subnets(blocks, blocks6), lease)],
        )
        if claimed:
            self._previous[network.name] = blocks, blocks6
        return claimed


def _family(network: GlobalNetwork, version: int) -> tuple[IPNetwork, int]:
    """NETWORK's subnet and block size of VERSION."""
    if version == 4:
        return network.subnet, network.subnet_size
    if version == 6 and network.subnet6 is not None:
        return network.subnet6, network.subnet_size6
    raise NotFoundError(f"global network {network.name} has no IPv{version} subnet")


def _pick(
    subnet: IPNetwork, size: int, taken: set[IPNetwork], prefer: IPNetwork | None,
    rng: random.Random,
) -> IPNetwork | None:
    """pick_free_block for a subnet of either family (PREFER of another: no preference)."""
    if isinstance(subnet, IPv4Network):
        return pick_free_block(subnet, size, taken,
                               prefer if isinstance(prefer, IPv4Network) else None, rng)
    return pick_free_block(subnet, size, taken,
                           prefer if isinstance(prefer, IPv6Network) else None, rng)
