"""Subnet leases: each node claims a block (/subnet_size) of a global network's subnet when it
first needs one, and, on a routed network whose blocks are full, another (Calico's IPAM; an
overlay keeps flannel's one lease per node). A first claim is one transaction that writes the
block's key and the node's holder key only if neither exists (and the network still does);
a further claim writes the block's key only if it is absent and the holder key only if it is
unchanged since it was read: two nodes never hold one block, and two claims of one node never
lose each other's block. Every key is bound to the node's grace lease. A node asking again (a
restart) gets the blocks its holder key names; claiming twice after a lost reply finds its
own claim."""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Network

from ..errors import ConflictError, IPAMExhaustedError, NotFoundError
from .carving import block_count, pick_free_block
from .etcd import EtcdClient
from .kv import Absent, Compare, Delete, ModRevision, Present, Put
from .layout import (
    HOLDERS,
    SUBNETS,
    GlobalNetwork,
    Layout,
    decode_held_subnets,
    encode_held_subnets,
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
        # asked for again if they were lost
        self._previous: dict[str, tuple[IPv4Network, ...]] = {}
        self._random = random.Random()

    def held(self, network: str) -> tuple[IPv4Network, ...]:
        """The blocks this node holds on NETWORK (first claimed first), found by node id."""
        found = self._client.get(self._layout.holder(network, self._node))
        return () if found is None else decode_held_subnets(found.value)

    def holders(self, network: str) -> dict[str, tuple[IPv4Network, ...]]:
        """Every node's blocks on NETWORK, by node id."""
        listing = self._client.get_prefix(self._layout.prefix(HOLDERS, network))
        return {kv.key.rsplit("/", 1)[1]: decode_held_subnets(kv.value) for kv in listing.items}

    def claim(self, network: GlobalNetwork) -> IPv4Network:
        """This node's first block on NETWORK: the one it holds, else a free one claimed now."""
        previous = self._previous.get(network.name, ())
        for _ in range(CLAIM_ATTEMPTS):
            mine = self.held(network.name)
            if mine:
                self._previous[network.name] = mine
                return mine[0]
            block = self._free_block(network, previous[0] if previous else None)
            if self._try_claim(network, block, [Absent(self._holder(network))], ()):
                self._previous[network.name] = (block,)
                return block
            self._require(network)
        raise self._too_busy(network)

    def claim_more(self, network: GlobalNetwork) -> IPv4Network:
        """Another block on NETWORK for a node that holds one already (claim() first)."""
        for _ in range(CLAIM_ATTEMPTS):
            found = self._client.get(self._holder(network))
            if found is None:
                raise NotFoundError(f"this node holds no block of global network {network.name}")
            mine = decode_held_subnets(found.value)
            block = self._free_block(network, None)
            unchanged = ModRevision(found.key, found.mod_revision)
            if self._try_claim(network, block, [unchanged], mine):
                self._previous[network.name] = (*mine, block)
                return block
            self._require(network)
        raise self._too_busy(network)

    def reclaim(self, networks: Callable[[str], GlobalNetwork | None]) -> None:
        """Claim again, the same blocks where they are free, what this node held before its
        grace lease ran out (NETWORKS looks a network up by name)."""
        for name, before in list(self._previous.items()):
            network = networks(name)
            if network is None:
                continue
            self.claim(network)
            for block in before:
                if block not in self.held(name):
                    self._claim_again(network, block)

    def release(self, network: str) -> bool:
        """Give NETWORK's blocks back; False if this node held none."""
        found = self._client.get(self._layout.holder(network, self._node))
        self._previous.pop(network, None)
        if found is None:
            return False
        blocks = decode_held_subnets(found.value)
        return self._client.txn([Present(found.key)], [
            Delete(found.key), *(Delete(self._layout.subnet(network, b)) for b in blocks),
        ])

    def _claim_again(self, network: GlobalNetwork, block: IPv4Network) -> None:
        """BLOCK again for this node if no other took it meanwhile (else it stays lost)."""
        found = self._client.get(self._holder(network))
        if found is not None:
            self._try_claim(network, block, [ModRevision(found.key, found.mod_revision)],
                            decode_held_subnets(found.value))

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

    def _free_block(self, network: GlobalNetwork, prefer: IPv4Network | None) -> IPv4Network:
        listing = self._client.get_prefix(self._layout.prefix(SUBNETS, network.name), True)
        taken = {parse_block_name(kv.key.rsplit("/", 1)[1]) for kv in listing.items}
        block = pick_free_block(network.subnet, network.subnet_size, taken, prefer,
                                self._random)
        if block is None:
            count = block_count(network.subnet, network.subnet_size)
            raise IPAMExhaustedError(
                f"global network {network.name} ({network.subnet}) has no free "
                f"/{network.subnet_size} left: all {count} are held")
        return block

    def _try_claim(
        self, network: GlobalNetwork, block: IPv4Network, holder_unchanged: list[Compare],
        mine: tuple[IPv4Network, ...],
    ) -> bool:
        lease = self._grace_lease()
        subnet_key = self._layout.subnet(network.name, block)
        return self._client.txn(
            [Present(self._layout.network(network.name)), Absent(subnet_key), *holder_unchanged],
            [Put(subnet_key, encode_subnet_holder(self._node), lease),
             Put(self._holder(network), encode_held_subnets((*mine, block)), lease)],
        )
