"""Subnet leases: each node claims one block (/subnet_size) of a global network's subnet when
it first needs one. A claim is one transaction that writes the block's key and the node's
holder key only if neither exists (and the network still does): two nodes never hold one
block, and a node never holds two. Both keys are bound to the node's grace lease. A node
asking again (a restart) gets the block its holder key names; claiming twice after a lost
reply finds its own claim."""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Network

from ..errors import ConflictError, IPAMExhaustedError, NotFoundError
from .carving import block_count, pick_free_block
from .etcd import EtcdClient
from .kv import Absent, Delete, Present, Put
from .layout import (
    HOLDERS,
    SUBNETS,
    GlobalNetwork,
    Layout,
    decode_held_subnet,
    encode_held_subnet,
    encode_subnet_holder,
    parse_block_name,
)

# Each lost race means another node took a block since the listing: with random picks even
# a thousand nodes claiming at once settle in a few rounds.
CLAIM_ATTEMPTS = 64


class SubnetLeases:
    def __init__(
        self, client: EtcdClient, layout: Layout, node: str, grace_lease: Callable[[], int],
    ) -> None:
        self._client = client
        self._layout = layout
        self._node = node
        self._grace_lease = grace_lease
        self._previous: dict[str, IPv4Network] = {}  # asked for again if it was lost
        self._random = random.Random()

    def held(self, network: str) -> IPv4Network | None:
        """The block this node holds on NETWORK, found by node id."""
        found = self._client.get(self._layout.holder(network, self._node))
        return None if found is None else decode_held_subnet(found.value)

    def holders(self, network: str) -> dict[str, IPv4Network]:
        """Every node's block on NETWORK, by node id."""
        listing = self._client.get_prefix(self._layout.prefix(HOLDERS, network))
        return {kv.key.rsplit("/", 1)[1]: decode_held_subnet(kv.value) for kv in listing.items}

    def claim(self, network: GlobalNetwork) -> IPv4Network:
        """This node's block on NETWORK: the one it holds, else a free one claimed now."""
        for _ in range(CLAIM_ATTEMPTS):
            mine = self.held(network.name)
            if mine is not None:
                self._previous[network.name] = mine
                return mine
            block = self._free_block(network)
            if self._try_claim(network, block):
                self._previous[network.name] = block
                return block
            if self._client.get(self._layout.network(network.name)) is None:
                raise NotFoundError(f"global network {network.name} not found")
        raise ConflictError(
            f"no subnet of global network {network.name} could be claimed in "
            f"{CLAIM_ATTEMPTS} tries: too many nodes claiming at once")

    def reclaim(self, networks: Callable[[str], GlobalNetwork | None]) -> None:
        """Claim again, the same blocks if they are free, what this node held before its
        grace lease ran out (NETWORKS looks a network up by name)."""
        for name in list(self._previous):
            network = networks(name)
            if network is not None:
                self.claim(network)

    def release(self, network: str) -> bool:
        """Give NETWORK's block back; False if this node held none."""
        mine = self.held(network)
        self._previous.pop(network, None)
        if mine is None:
            return False
        holder = self._layout.holder(network, self._node)
        return self._client.txn([Present(holder)], [
            Delete(holder), Delete(self._layout.subnet(network, mine)),
        ])

    def _free_block(self, network: GlobalNetwork) -> IPv4Network:
        listing = self._client.get_prefix(self._layout.prefix(SUBNETS, network.name), True)
        taken = {parse_block_name(kv.key.rsplit("/", 1)[1]) for kv in listing.items}
        block = pick_free_block(network.subnet, network.subnet_size, taken,
                                self._previous.get(network.name), self._random)
        if block is None:
            count = block_count(network.subnet, network.subnet_size)
            raise IPAMExhaustedError(
                f"global network {network.name} ({network.subnet}) has no free "
                f"/{network.subnet_size} left: all {count} are held")
        return block

    def _try_claim(self, network: GlobalNetwork, block: IPv4Network) -> bool:
        lease = self._grace_lease()
        subnet_key = self._layout.subnet(network.name, block)
        holder_key = self._layout.holder(network.name, self._node)
        return self._client.txn(
            [Present(self._layout.network(network.name)), Absent(subnet_key), Absent(holder_key)],
            [Put(subnet_key, encode_subnet_holder(self._node), lease),
             Put(holder_key, encode_held_subnet(block), lease)],
        )
