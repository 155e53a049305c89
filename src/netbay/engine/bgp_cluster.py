"""The cluster's BGP configuration on this node's agent: the requests of `netbay cluster bgp`
(route reflectors and external peers, written to etcd by cluster/bgp_config.py) and what this
node's speaker is planned from (engine/bgp.py plan_settings): the view's record, this node's
shares, the peers the view delivered and this node's interfaces.

A request is checked here before anything is written, and refused in one line: an unknown
node, an ASN out of range, a peer address that is no IPv4 address, is a node's own, or (when
the request concerns this node) is on none of its interfaces' networks, since eBGP peers
are directly connected. A peer given for another node is checked by that node: it logs the
peer and leaves it out of its configuration. After a write, the agent is poked once its view
has the change, so this node applies it at once; every other node applies it at its next sync.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import TYPE_CHECKING

from ..drivers import capabilities, cluster_driver
from ..drivers.base import OPT_POOL6
from ..errors import ConfigError, ConflictError, KernelError, NotFoundError
from ..plan.bird import BgpSettings, ExternalPeer
from ..reconcile.state import Observed
from .bgp import NodeBgp, NodeRef, plan_settings, routed_shares
from .kernel import Kernel
from .overlay import NodeAddress as BgpPeer
from .overlay import OverlayPlane

if TYPE_CHECKING:
    from ..cluster import ClusterNode, NodeStatus
    from ..cluster.bgp_config import BgpConfigStore, ExternalPeerRecord

log = logging.getLogger("netbay.bgp")
SETTLE = 2.0  # seconds to wait for the view to see this node's own write


@dataclass(frozen=True)
class Interfaces:
    """This node's addresses and their networks, and the link that holds its node address."""

    addresses: frozenset[IPv4Address]
    networks: tuple[IPv4Network, ...]  # of every interface but loopback, /32s left out
    underlay: tuple[IPv4Network, ...]  # of the link holding the node address
    mtu: int  # that link's
    underlay6: tuple[IPv6Network, ...] = ()  # that link's IPv6 subnets, link-local left out

    @classmethod
    def of(cls, observed: Observed, address: IPv4Address) -> Interfaces:
        # lo's 127.0.0.1/8 is nobody's network (lo may hold a routed gateway's /32 as well)
        # BGP here is IPv4: a link's IPv6 addresses take no part in choosing peers
        held = {name: kept for name, found in observed.addresses.items()
                if (kept := [a for a in found
                             if isinstance(a, IPv4Interface) and not a.ip.is_loopback])}
        link = next((name for name, found in held.items() if any(a.ip == address for a in found)),
                    None)
        if link is None:
            raise KernelError(f"no link holds the node address {address}", errno.EADDRNOTAVAIL)
        state = observed.links.get(link)
        underlay6 = {a.network for a in observed.addresses.get(link, ())
                     if isinstance(a, IPv6Interface) and not a.ip.is_link_local}
        return cls(
            addresses=frozenset(a.ip for found in held.values() for a in found),
            # a /32 (a routed network's host side) has nobody else on it
            networks=tuple(sorted({a.network for found in held.values() for a in found
                                   if a.network.prefixlen < 32})),
            underlay=tuple(sorted({a.network for a in held[link]})),
            mtu=(state.mtu if state is not None else None) or 1500,
            underlay6=tuple(sorted(underlay6)),
        )

    def refusal(self, peer: IPv4Address) -> str | None:
        """Why PEER cannot be an eBGP peer of this node; None: it can."""
        if peer in self.addresses:
            return "this node's own address"
        if not any(peer in network for network in self.networks):
            return ("not on any network of this node's interfaces ("
                    + ", ".join(map(str, self.networks)) + ")")
        return None


def _store(node: ClusterNode) -> BgpConfigStore:
    from ..cluster.bgp_config import BgpConfigStore

    return BgpConfigStore(node.client, node.layout)


def _node_named(node: ClusterNode, name: str) -> NodeStatus:
    """The node NAME (a ready one before a lost one of the same name)."""
    from ..cluster import READY

    found = [n for n in node.view.nodes() if n.name == name]
    if not found:
        raise ConfigError("node", name, "no such node in the cluster")
    return max(found, key=lambda n: n.state == READY)


class ClusterBgp:
    def __init__(self, kernel: Kernel, joined: Callable[[], ClusterNode],
                 poke: Callable[[], None]) -> None:
        """JOINED: this node in the cluster (NotJoinedError if it is in none); POKE: make the
        agent sync now."""
        self._kernel = kernel
        self._joined = joined
        self._poke = poke
        self._skipped: set[ExternalPeerRecord] = set()  # external peers logged as left out

    # --- the requests ------------------------------------------------------------------
    def reflectors(self) -> list[NodeStatus]:
        node = self._joined()
        reflectors = _store(node).read().reflectors
        return [n for n in node.view.nodes() if n.id in reflectors]

    def set_reflector(self, name: str, reflector: bool) -> NodeStatus:
        node = self._joined()
        target = _node_named(node, name)
        store = _store(node)
        if not store.set_reflector(target.id, reflector) and not reflector:
            raise NotFoundError(f"node {target.name} is not a route reflector")
        self._settle(node, store)
        return target

    def peers(self) -> list[tuple[ExternalPeerRecord, str | None]]:
        """Every external peer, with the name of the node it is for (None: every node)."""
        node = self._joined()
        names = {n.id: n.name for n in node.view.nodes()}
        return [(p, None if p.node is None else names.get(p.node, p.node))
                for p in _store(node).read().peers]

    def add_peer(self, address: str, asn: int, on: str | None) -> ExternalPeerRecord:
        """The router at ADDRESS in AS ASN, for the node named ON (None: for every node)."""
        from ..cluster.bgp_config import ExternalPeerRecord, check_asn, parse_peer_address

        node = self._joined()
        peer = parse_peer_address(address)
        check_asn(asn)
        target = None if on is None else _node_named(node, on)
        nodes = {n.address: n.name for n in node.view.nodes()}
        if peer in nodes:
            raise ConfigError("peer address", address, f"node {nodes[peer]}'s address: the "
                              "nodes peer with each other by themselves")
        if target is None or target.id == node.node:
            refusal = self._interfaces(node.membership.address).refusal(peer)
            if refusal is not None:
                raise ConfigError("peer address", address, refusal)
        record = ExternalPeerRecord(peer, asn, None if target is None else target.id)
        store = _store(node)
        if not store.add_peer(record):
            raise ConflictError(f"BGP peer {peer} exists already for "
                                + ("every node" if target is None else f"node {target.name}"))
        self._settle(node, store)
        return record

    def remove_peer(self, address: str, on: str | None) -> None:
        from ..cluster.bgp_config import parse_peer_address

        node = self._joined()
        peer = parse_peer_address(address)
        target = None if on is None else _node_named(node, on)
        store = _store(node)
        if not store.remove_peer(peer, None if target is None else target.id):
            raise NotFoundError(f"no BGP peer {peer} for "
                                + ("every node" if target is None else f"node {target.name}"))
        self._settle(node, store)

    def _settle(self, node: ClusterNode, store: BgpConfigStore) -> None:
        revision = store.revision()
        deadline = time.monotonic() + SETTLE
        while node.view.revision < revision and time.monotonic() < deadline:
            time.sleep(0.02)
        self._poke()

    def _interfaces(self, address: IPv4Address) -> Interfaces:
        return Interfaces.of(self._kernel.observe(()), address)

    # --- the speaker's plan ------------------------------------------------------------
    def settings(self, node: ClusterNode, plane: OverlayPlane,
                 peers: Mapping[str, Sequence[BgpPeer]]) -> BgpSettings | None:
        """This node's BGP speaker now; None: no BIRD (no routed share, not a reflector)."""
        config = node.view.bgp_config()
        shares = routed_shares(plane.shares())
        if not shares and node.node not in config.reflectors:
            return None
        interfaces = self._interfaces(plane.address)
        nodes = node.view.nodes()
        networks = {
            n.name: cluster_driver(n.driver).share_options(n.subnet, n.vni, n.options,
                                                           interfaces.mtu, n.subnet6)
            for n in node.view.networks() if capabilities(n.driver).bgp
        }
        return plan_settings(NodeBgp(
            node=node.node, address=plane.address, underlay=interfaces.underlay,
            shares=shares, networks=networks, peers=peers,
            reflectors=[NodeRef(n.id, n.name, n.address) for n in nodes
                        if n.id in config.reflectors],
            external=self._external(config.peers_of(node.node), interfaces, nodes),
            # the node's IPv6 underlay address: only a dual-stack routed network needs it
            address6=(node.membership.address6
                      if any(OPT_POOL6 in options for options in networks.values()) else None),
            underlay6=interfaces.underlay6,
        ))

    def _external(self, records: Sequence[ExternalPeerRecord], interfaces: Interfaces,
                  nodes: Sequence[NodeStatus]) -> list[ExternalPeer]:
        """The RECORDS this node can peer with; the others logged (once) and left out."""
        taken = {n.address: n.name for n in nodes}
        usable, skipped = [], set()
        for record in records:
            refusal = (f"node {taken[record.address]}'s address" if record.address in taken
                       else interfaces.refusal(record.address))
            if refusal is None:
                usable.append(ExternalPeer(f"as{record.asn}-{record.address}", record.address,
                                           record.asn))
                continue
            skipped.add(record)
            if record not in self._skipped:
                log.warning("bgp: external peer %s (AS %d) left out on this node: %s",
                            record.address, record.asn, refusal)
        self._skipped = skipped
        return usable
