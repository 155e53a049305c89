"""More room on a cluster share: on a network whose driver claims more blocks (routed, as
Calico's IPAM does), a node whose blocks are full gets another from the cluster (a claim in
etcd, engine/cluster.py) and adds it here: one more subnet in the share's record, then its
kernel objects (the block's blackhole route, its gateway on lo) and firewall elements.

The record is written first: a daemon killed before the kernel objects are made restores
them at start (drivers' restore); one killed between the claim in etcd and the record
leaves the block held in etcd and unused until the share goes, which releases every block
the holder key names."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from .. import faults
from ..drivers import capabilities, get_driver
from ..ipam.allocator import complete, has_free_address
from ..model import Network, SubnetConfig
from ..plan import firewall as fw
from ..store.base import Store
from .firewall import Firewall, network_rules
from .kernel import Kernel

if TYPE_CHECKING:
    from .networks import ClusterNetworks


def with_room(
    store: Store, kernel: Kernel, firewall: Firewall, sources: Sequence[ClusterNetworks],
    network: Network,
) -> Network:
    """NETWORK, and if it is a cluster share whose blocks are full that may claim more,
    with one more block from the first of SOURCES that has NETWORK."""
    if not (sources and capabilities(network.driver).more_blocks) or has_free_address(
            network.subnets, store.leases(network.id)):
        return network
    for source in sources:
        block = source.more_block(network)
        if block is not None:
            grown = add_block(store, kernel, firewall, network, block)
            source.share_made(grown)  # the new block announced without waiting
            return grown
    return network


def add_block(
    store: Store, kernel: Kernel, firewall: Firewall, network: Network, block: IPv4Network
) -> Network:
    """NETWORK's share with BLOCK as one more subnet (as it is, if it has BLOCK already)."""
    with kernel.lock:
        current = store.find_network(network.id) or network
        if any(s.subnet == block for s in current.subnets):
            return current
        grown = dataclasses.replace(
            current, subnets=(*current.subnets, complete(SubnetConfig(block))))
        store.update_network(current.id, subnets=grown.subnets)
        faults.point("network:grown")
        get_driver(grown.driver).setup(kernel, grown)  # accepts what exists
        _add_elements(firewall, current, grown)
    return grown


def _add_elements(firewall: Firewall, before: Network, after: Network) -> None:
    old_rules, new_rules = network_rules(before), network_rules(after)
    if new_rules is None:
        return
    old = {} if old_rules is None else fw.network_elements(old_rules)
    new = fw.network_elements(new_rules)
    firewall.change({k: [e for e in v if e not in old.get(k, [])] for k, v in new.items()}, {})
