"""More room on a cluster share: on a network whose driver claims more blocks (routed, as
Calico's IPAM does), a node whose blocks are full gets another from the cluster (a claim in
etcd, engine/cluster.py) and adds it here: one more subnet in the share's record, then its
kernel objects (the block's blackhole route, its gateway on lo) and firewall elements.

The record is written first: a daemon killed before the kernel objects are made restores
them at start (drivers' restore); one killed between the claim in etcd and the record
leaves the block held in etcd but not recorded, and the next daemon adopts it into the
record (adopt_held, at each of the agent's syncs once its cluster view has listed the
record). Kept rather than released: the other nodes may route it to this node already (its
key is in etcd), and a release could take a block from a claim still under way, where an
adoption of a block that claim records meanwhile changes nothing."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .. import faults
from ..drivers import capabilities, get_driver
from ..ipam.allocator import complete, has_free_address
from ..model import READY, IPNetwork, Network, SubnetConfig
from ..plan import firewall as fw
from ..store.base import Store
from .firewall import Firewall, network_rules
from .kernel import Kernel

if TYPE_CHECKING:
    from .host import Host
    from .networks import ClusterNetworks

log = logging.getLogger("netbay.cluster")


def with_room(
    store: Store, kernel: Kernel, firewall: Firewall, sources: Sequence[ClusterNetworks],
    network: Network,
) -> Network:
    """NETWORK, and if it is a cluster share whose blocks of a family are full that may claim
    more, with one more block of that family from the first of SOURCES that has NETWORK."""
    if not (sources and capabilities(network.driver).more_blocks):
        return network
    for version in sorted({s.subnet.version for s in network.subnets}):
        family = tuple(s for s in network.subnets if s.subnet.version == version)
        if not has_free_address(family, store.leases(network.id, version)):
            network = _one_more(store, kernel, firewall, sources, network, version)
    return network


def _one_more(
    store: Store, kernel: Kernel, firewall: Firewall, sources: Sequence[ClusterNetworks],
    network: Network, version: int,
) -> Network:
    for source in sources:
        block = source.more_block(network, version)
        if block is not None:
            faults.point("network:block-claimed")  # held in etcd, not recorded yet
            grown = add_block(store, kernel, firewall, network, block)
            source.share_made(grown)  # the new block announced without waiting
            return grown
    return network


def add_block(
    store: Store, kernel: Kernel, firewall: Firewall, network: Network, block: IPNetwork
) -> Network:
    """NETWORK's share with BLOCK as one more subnet (as it is, if it has BLOCK already)."""
    with kernel.lock:
        current = store.find_network(network.id) or network
        if any(s.subnet == block for s in current.subnets):
            return current
        grown = _grow(store, kernel, current, [block])
        _add_elements(firewall, current, grown)
    return grown


def adopt_held(
    host: Host, shares: Iterable[Network], held: Mapping[str, Sequence[IPNetwork]]
) -> list[Network]:
    """Each of SHARES whose driver claims more blocks, grown by the blocks this node HOLDS
    (by network name, from the cluster record) that its record lacks; the grown ones (their
    firewall elements rebuilt from the record)."""
    grown = []
    for share in shares:
        if capabilities(share.driver).more_blocks:
            adopted = adopt_blocks(host.store, host.kernel, share, held.get(share.name, ()))
            if adopted is not None:
                grown.append(adopted)
    if grown:
        host.firewall_rebuild()
    return grown


def adopt_blocks(
    store: Store, kernel: Kernel, network: Network, held: Sequence[IPNetwork]
) -> Network | None:
    """NETWORK's share with each of HELD (the blocks this node holds in etcd) that its record
    lacks, and their kernel objects; None if it lacks none, or is gone. The firewall's
    elements are the caller's to rebuild from the record."""
    with kernel.lock:
        current = store.find_network(network.id)
        if current is None or current.state != READY:
            return None
        recorded = {s.subnet for s in current.subnets}
        missing = [block for block in held if block not in recorded]
        if not missing:
            return None
        log.warning("network %s: adopting blocks held in etcd but not recorded: %s",
                    current.name, ", ".join(map(str, missing)))
        return _grow(store, kernel, current, missing)


def _grow(store: Store, kernel: Kernel, current: Network,
          blocks: Sequence[IPNetwork]) -> Network:
    added = (complete(SubnetConfig(block)) for block in blocks)
    grown = dataclasses.replace(current, subnets=tuple(sorted(  # IPv4's first, as made
        (*current.subnets, *added), key=lambda s: s.version)))
    store.update_network(current.id, subnets=grown.subnets)
    faults.point("network:grown")
    get_driver(grown.driver).setup(kernel, grown)  # accepts what exists
    return grown


def _add_elements(firewall: Firewall, before: Network, after: Network) -> None:
    old_rules, new_rules = network_rules(before), network_rules(after)
    if new_rules is None:
        return
    old = {} if old_rules is None else fw.network_elements(old_rules)
    new = fw.network_elements(new_rules)
    firewall.change({k: [e for e in v if e not in old.get(k, [])] for k, v in new.items()}, {})
