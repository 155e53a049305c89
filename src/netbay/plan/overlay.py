"""One node's share of an overlay network, planned: from the node, its peers and the network's
settings, the kernel objects the node must hold; pure (kernel/overlay.py makes them so).

flannel's vxlan backend with DirectRouting is the model. The node's containers sit on a bridge
holding the first address of the node's subnet; a VXLAN device (learning off) carries the
traffic to peers behind a router: per peer a permanent neighbour (the peer's VTEP address,
`<subnet>.0`, at its VTEP MAC), an FDB entry (that MAC is behind the peer's underlay
address) and the onlink route to the peer's subnet through that VTEP address. A peer on the
node's own L2 segment needs none of that under `auto` (and `host-gw`): a plain route to its
subnet via its underlay address.

Dual stack: a node holds a v6 block of the network's pool6 too, and its peers' v6 blocks
come as peers of their own. The one VXLAN device (over the IPv4 underlay) carries v6 alike:
neighbour `<block6>::` at the peer's VTEP MAC, the onlink route through it, and
`<own block6>::/128` on the device. A v6 block goes host-gw only where both nodes have an
IPv6 underlay address (address6) and share the segment: via the peer's address6. Under
`auto` any other v6 block is tunnelled; under `host-gw` it is left out (rejected, with the
block named), the peer's v4 routes staying.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from ..errors import ConfigError
from ..model import IPNetwork
from .naming import bridge_device
from .overlay_model import (
    _MAC,
    DEFAULT_VXLAN_PORT,
    MAX_VNI,
    MIN_MTU,
    MIN_MTU6,
    VXLAN_OVERHEAD,
    Backend,
    BridgePlan,
    FdbPlan,
    NeighbourPlan,
    OverlayNode,
    OverlayPeer,
    OverlaySettings,
    OverlayState,
    RejectedPeer,
    RoutePlan,
    VxlanPlan,
    vtep_mac,
    vxlan_device,
)

# the vocabulary lives in overlay_model.py; its users import it from here
__all__ = [
    "DEFAULT_VXLAN_PORT",
    "MAX_VNI",
    "MIN_MTU",
    "MIN_MTU6",
    "VXLAN_OVERHEAD",
    "Backend",
    "BridgePlan",
    "FdbPlan",
    "NeighbourPlan",
    "OverlayNode",
    "OverlayPeer",
    "OverlaySettings",
    "OverlayState",
    "RejectedPeer",
    "RoutePlan",
    "VxlanPlan",
    "vtep_mac",
    "vxlan_device",
    "plan_overlay",
]


def plan_overlay(
    settings: OverlaySettings, node: OverlayNode, peers: Iterable[OverlayPeer]
) -> OverlayState:
    """This node's objects for the network. ConfigError if the node's own input cannot
    work; a peer whose record cannot is left out and listed in `rejected`.

    The veths' MTU is the tunnel's (underlay - 50) on any network that may use VXLAN, even
    towards peers reached with host-gw: a container's MTU is fixed when it is attached, and
    a peer behind a router may join at any time (flannel with DirectRouting does the same).
    Only a host-gw network, which never tunnels, gets the underlay's MTU."""
    gateway, gateway6 = _check_node(settings, node)
    tunnel = None if settings.backend is Backend.HOST_GW else _vxlan_plan(settings, node)
    mtu = node.mtu if tunnel is None else tunnel.mtu
    ordered = sorted(peers, key=lambda p: (p.node_id, p.subnet.version, p.subnet))
    v4 = [p for p in ordered if isinstance(p.subnet, IPv4Network)]
    reasons = _rejections(settings, node, v4)
    tunnelled = [p for p in v4 if p.node_id not in reasons and _tunnelled(settings, p)]
    through_tunnel = set(tunnelled)
    ways6, rejected6 = _plan_v6(settings, node, tunnelled, [
        p for p in ordered if isinstance(p.subnet, IPv6Network) and p.node_id not in reasons])
    out = _Entries()
    for peer in ordered:
        if peer.node_id in reasons:
            continue
        if isinstance(peer.subnet, IPv4Network):
            through = tunnel if peer in through_tunnel else None
        elif peer.subnet in ways6:
            through = tunnel if ways6[peer.subnet] else None
        else:
            continue
        out.add(peer, node.device, through)
    return OverlayState(
        pool=settings.pool, underlay=node.device,
        bridge=BridgePlan(bridge_device(settings.network_id), gateway, mtu, gateway6),
        vxlan=tunnel, veth_mtu=mtu, neighbours=tuple(out.neighbours), fdb=tuple(out.fdb),
        routes=tuple(out.routes),
        rejected=tuple(RejectedPeer(n, r) for n, r in sorted(reasons.items())) + rejected6,
        pool6=settings.pool6,
    )


def _plan_v6(
    settings: OverlaySettings, node: OverlayNode, tunnelled: Sequence[OverlayPeer],
    peers: Sequence[OverlayPeer],
) -> tuple[dict[IPNetwork, bool], tuple[RejectedPeer, ...]]:
    """Of the v6 blocks PEERS (of peers whose v4 record is fine; TUNNELLED: the v4 blocks
    that go through VXLAN), block -> whether it is tunnelled (False: host-gw), and the
    blocks left out. A v6 block is left out alone: its node's v4 routes stay."""
    rejected: list[RejectedPeer] = []

    def reject(peer: OverlayPeer, reason: str) -> None:
        assert isinstance(peer.subnet, IPv6Network)
        rejected.append(RejectedPeer(peer.node_id, reason, peer.subnet))

    candidates = []
    for peer in peers:
        reason = _fault6(settings, node, peer)
        if reason:
            reject(peer, reason)
        else:
            candidates.append(peer)
    overlapping = _overlaps(candidates)
    ways: dict[IPNetwork, bool] = {}
    for peer in candidates:
        direct = peer.same_segment and node.address6 is not None and peer.address6 is not None
        if peer.node_id in overlapping:
            reject(peer, overlapping[peer.node_id])
        elif settings.backend is Backend.HOST_GW and not direct:
            reject(peer, "host-gw carries a v6 block only between nodes on one L2 segment "
                         "that both have an IPv6 underlay address (vxlan or auto can)")
        else:
            ways[peer.subnet] = settings.backend is Backend.VXLAN or not direct
    through = [p for p in candidates if ways.get(p.subnet)]
    shared = _shared_macs(vtep_mac(node.node_id, settings.vni), [*tunnelled, *through])
    for peer in through:
        if peer.node_id in shared:
            del ways[peer.subnet]
            reject(peer, shared[peer.node_id])
    return ways, tuple(rejected)


def _fault6(settings: OverlaySettings, node: OverlayNode, peer: OverlayPeer) -> str | None:
    """What is wrong with PEER's v6 block on its own (against this node), if anything."""
    block = peer.subnet
    assert isinstance(block, IPv6Network)
    if peer.node_id == node.node_id:
        return "is this node"
    if settings.pool6 is None:
        return f"subnet {block}: the network has no IPv6 subnet"
    if node.subnet6 is None:
        return f"subnet {block}: this node holds no IPv6 block of the network"
    if not block.subnet_of(settings.pool6):
        return f"subnet {block} is outside the network's subnet {settings.pool6}"
    if block.overlaps(node.subnet6):
        return f"subnet {block} overlaps this node's {node.subnet6}"
    return _bad_mac(peer)


@dataclass
class _Entries:
    """The neighbours, FDB entries and routes of the plan, as the peers add them."""

    neighbours: list[NeighbourPlan] = field(default_factory=list)
    fdb: list[FdbPlan] = field(default_factory=list)
    routes: list[RoutePlan] = field(default_factory=list)

    def add(self, peer: OverlayPeer, underlay: str, tunnel: VxlanPlan | None) -> None:
        """PEER's block through TUNNEL, or (None) host-gw: via its underlay address of the
        block's family."""
        if tunnel is None:
            via = peer.address if isinstance(peer.subnet, IPv4Network) else peer.address6
            assert via is not None
            self.routes.append(RoutePlan(peer.subnet, via, underlay, onlink=False))
            return
        vtep = peer.subnet.network_address
        mac = peer.vtep_mac.lower()
        self.neighbours.append(NeighbourPlan(vtep, mac))
        if FdbPlan(mac, peer.address) not in self.fdb:  # once for a node of several blocks
            self.fdb.append(FdbPlan(mac, peer.address))
        self.routes.append(RoutePlan(peer.subnet, vtep, tunnel.name, onlink=True))


def _tunnelled(settings: OverlaySettings, peer: OverlayPeer) -> bool:
    return settings.backend is Backend.VXLAN or (
        settings.backend is Backend.AUTO and not peer.same_segment)


def _check_node(
    settings: OverlaySettings, node: OverlayNode
) -> tuple[IPv4Interface, IPv6Interface | None]:
    """The bridge's gateway addresses; ConfigError for a node that cannot hold the network."""
    if not node.subnet.subnet_of(settings.pool):
        raise ConfigError("subnet", str(node.subnet),
                          f"outside the network's subnet {settings.pool}")
    if node.subnet.num_addresses < 4:
        raise ConfigError("subnet", str(node.subnet), "too small for a gateway and a container")
    least = MIN_MTU + (0 if settings.backend is Backend.HOST_GW else VXLAN_OVERHEAD)
    if not least <= node.mtu <= 65535:
        raise ConfigError("underlay MTU", node.mtu, f"out of range {least}-65535")
    gateway = IPv4Interface((node.subnet.network_address + 1, node.subnet.prefixlen))
    if node.subnet6 is None:
        return gateway, None
    if settings.pool6 is None or not node.subnet6.subnet_of(settings.pool6):
        raise ConfigError("subnet", str(node.subnet6),
                          f"outside the network's IPv6 subnet {settings.pool6}")
    if node.subnet6.num_addresses < 4:
        raise ConfigError("subnet", str(node.subnet6), "too small for a gateway and a container")
    if node.mtu - (least - MIN_MTU) < MIN_MTU6:
        raise ConfigError("underlay MTU", node.mtu,
                          f"too small for IPv6 inside (at least {MIN_MTU6} after the tunnel's)")
    return gateway, IPv6Interface((node.subnet6.network_address + 1, node.subnet6.prefixlen))


def _vxlan_plan(settings: OverlaySettings, node: OverlayNode) -> VxlanPlan:
    return VxlanPlan(
        name=vxlan_device(settings.network_id), vni=settings.vni, local=node.address,
        underlay=node.device, port=settings.port, mac=vtep_mac(node.node_id, settings.vni),
        mtu=node.mtu - VXLAN_OVERHEAD,
        address=IPv4Interface((node.subnet.network_address, 32)),
        address6=(IPv6Interface((node.subnet6.network_address, 128))
                  if node.subnet6 is not None else None),
    )


def _rejections(
    settings: OverlaySettings, node: OverlayNode, peers: Sequence[OverlayPeer]
) -> dict[str, str]:
    """node id -> why the peer cannot be programmed (the first reason found)."""
    reasons: dict[str, str] = {}
    for peer in peers:
        reason = _own_fault(settings, node, peer)
        if reason:
            reasons.setdefault(peer.node_id, reason)
    candidates = [p for p in peers if p.node_id not in reasons]
    for node_id, reason in _overlaps(candidates).items():
        reasons.setdefault(node_id, reason)
    tunnelled = [p for p in candidates if p.node_id not in reasons and _tunnelled(settings, p)]
    for node_id, reason in _shared_macs(vtep_mac(node.node_id, settings.vni), tunnelled).items():
        reasons.setdefault(node_id, reason)
    return reasons


def _own_fault(settings: OverlaySettings, node: OverlayNode, peer: OverlayPeer) -> str | None:
    """What is wrong with PEER's record on its own (against this node), if anything."""
    if peer.node_id == node.node_id:
        return "is this node"
    if peer.address == node.address:
        return f"has this node's underlay address {node.address}"
    block = peer.subnet
    assert isinstance(block, IPv4Network)
    if not block.subnet_of(settings.pool):
        return f"subnet {block} is outside the network's subnet {settings.pool}"
    if block.overlaps(node.subnet):
        return f"subnet {block} overlaps this node's {node.subnet}"
    if settings.backend is Backend.HOST_GW and not peer.same_segment:
        return "is not on this node's L2 segment: host-gw cannot reach it (vxlan or auto can)"
    return _bad_mac(peer)


def _bad_mac(peer: OverlayPeer) -> str | None:
    mac = peer.vtep_mac.lower()
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        return f"VTEP MAC {peer.vtep_mac!r} is not a unicast MAC"
    return None


def _overlaps(peers: Sequence[OverlayPeer]) -> dict[str, str]:
    """Peers whose subnets overlap another's: all of them, since the record cannot say which
    one holds the addresses (flannel's #1289: a subnet given to two nodes). PEERS' subnets
    are of one family (compared as integers)."""
    reasons: dict[str, str] = {}
    by_start = sorted(peers, key=lambda p: (int(p.subnet.network_address), p.subnet.prefixlen))
    widest: OverlayPeer | None = None  # the earlier subnet reaching furthest
    for peer in by_start:
        if widest is not None and (int(peer.subnet.network_address)
                                   <= int(widest.subnet.broadcast_address)):
            reasons[peer.node_id] = f"subnet {peer.subnet} overlaps node {widest.node_id}'s"
            reasons.setdefault(widest.node_id,
                               f"subnet {widest.subnet} overlaps node {peer.node_id}'s")
        if widest is None or (int(peer.subnet.broadcast_address)
                              > int(widest.subnet.broadcast_address)):
            widest = peer
    return reasons


def _shared_macs(own: str, peers: Sequence[OverlayPeer]) -> dict[str, str]:
    """Tunnelled peers whose VTEP MAC is this node's or another such peer's: one FDB entry
    per MAC cannot point at two hosts."""
    holders: defaultdict[str, list[str]] = defaultdict(list)
    for peer in peers:  # a node with several blocks (routed) is one holder of its MAC
        if peer.node_id not in holders[peer.vtep_mac.lower()]:
            holders[peer.vtep_mac.lower()].append(peer.node_id)
    reasons: dict[str, str] = {}
    for mac, node_ids in holders.items():
        if mac == own:
            reasons.update((n, f"VTEP MAC {mac} is this node's") for n in node_ids)
        elif len(node_ids) > 1:
            reasons.update((n, f"VTEP MAC {mac} is held by nodes {', '.join(node_ids)}")
                           for n in node_ids)
    return reasons
