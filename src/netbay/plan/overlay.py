"""One node's share of an overlay network, planned: from the node, its peers and the network's
settings, the kernel objects the node must hold; pure (kernel/overlay.py makes them so).

flannel's vxlan backend with DirectRouting is the model. The node's containers sit on a bridge
holding the first address of the node's subnet; a VXLAN device (learning off) carries the
traffic to peers behind a router: per peer a permanent neighbour (the peer's VTEP address,
`<subnet>.0`, at its VTEP MAC), an FDB entry (that MAC is behind the peer's underlay
address) and the onlink route to the peer's subnet through that VTEP address. A peer on the
node's own L2 segment needs none of that under `auto` (and `host-gw`): a plain route to its
subnet via its underlay address.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from ..errors import ConfigError
from .naming import bridge_device

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 bytes
DEFAULT_VXLAN_PORT = 4789  # IANA's; the Linux default (and flannel's) 8472 is selectable
MAX_VNI = (1 << 24) - 1
MIN_MTU = 68  # the least an IPv4 link may carry (RFC 791)
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class Backend(enum.Enum):
    """How packets reach a peer: VXLAN always, a plain route via the peer's underlay address
    always (peers on one L2 segment only), or per peer (host-gw where it works)."""

    VXLAN = "vxlan"
    HOST_GW = "host-gw"
    AUTO = "auto"


# --- input: what the driver and the cluster store know ----------------------------------
@dataclass(frozen=True)
class OverlaySettings:
    """One overlay network, as every node sees it."""

    network_id: str
    pool: IPv4Network  # the network's subnet: every node's lease lies in it
    vni: int
    port: int = DEFAULT_VXLAN_PORT  # UDP destination port of the VXLAN packets
    backend: Backend = Backend.AUTO

    def __post_init__(self) -> None:
        if not 1 <= self.vni <= MAX_VNI:
            raise ConfigError("vni", self.vni, f"out of range 1-{MAX_VNI}")
        if not 1 <= self.port <= 65535:
            raise ConfigError("vxlan_port", self.port, "out of range 1-65535")


@dataclass(frozen=True)
class OverlayNode:
    """This node, for one overlay network."""

    node_id: str  # its identity (kept in its state root; never its address)
    address: IPv4Address  # its underlay address: VXLAN's source, the peers' next hop
    device: str  # the underlay link holding ADDRESS
    mtu: int  # that link's MTU
    subnet: IPv4Network  # its lease in the network's pool


@dataclass(frozen=True)
class OverlayPeer:
    """Another node holding a lease in the same network, as the cluster record has it."""

    node_id: str
    address: IPv4Address  # its underlay address
    subnet: IPv4Network  # its lease
    vtep_mac: str  # of its VXLAN device for the network (vtep_mac(its id, vni) if netbay's)
    same_segment: bool  # ADDRESS is on this node's L2 segment: reachable with no router between


# --- output: the kernel objects this node must hold ---------------------------------------
@dataclass(frozen=True)
class BridgePlan:
    name: str
    gateway: IPv4Interface  # the first address of the node's subnet, with its prefix
    mtu: int


@dataclass(frozen=True)
class VxlanPlan:
    name: str
    vni: int
    local: IPv4Address
    underlay: str  # the link it sends from
    port: int
    mac: str
    mtu: int
    address: IPv4Interface  # <subnet>.0/32: the source of what the node itself sends across


@dataclass(frozen=True)
class NeighbourPlan:
    """A permanent neighbour on the VXLAN device: a peer's VTEP address is at its MAC."""

    address: IPv4Address
    lladdr: str


@dataclass(frozen=True)
class FdbPlan:
    """A forwarding entry of the VXLAN device: frames to LLADDR go to DESTINATION."""

    lladdr: str
    destination: IPv4Address


@dataclass(frozen=True)
class RoutePlan:
    """A route of netbay's protocol to a peer's subnet."""

    destination: IPv4Network
    gateway: IPv4Address
    device: str
    onlink: bool  # through the VXLAN device, to a gateway no subnet of it covers


@dataclass(frozen=True)
class RejectedPeer:
    """A peer the plan leaves out, and why (its record is inconsistent, or out of reach)."""

    node_id: str
    reason: str


@dataclass(frozen=True)
class OverlayState:
    """Everything one node holds for one overlay network. Routes of netbay's protocol to
    destinations in POOL (or through the VXLAN device), and the neighbours and FDB entries
    of the VXLAN device, are this network's: whatever of them is not here goes."""

    pool: IPv4Network
    underlay: str
    bridge: BridgePlan | None  # None: a routed network's share, which has none
    vxlan: VxlanPlan | None  # None: backend host-gw, no tunnel
    veth_mtu: int  # of every container veth on the network
    neighbours: tuple[NeighbourPlan, ...] = ()
    fdb: tuple[FdbPlan, ...] = ()
    routes: tuple[RoutePlan, ...] = ()  # neighbours and FDB entries go in first
    rejected: tuple[RejectedPeer, ...] = ()
    # routes of netbay's inside them are not this plan's (a routed share's /32 per container)
    own_blocks: tuple[IPv4Network, ...] = ()


def vxlan_device(network_id: str) -> str:
    return f"nbx{network_id[:12]}"


def vtep_mac(node_id: str, vni: int) -> str:
    """The MAC of a node's VXLAN device for network VNI: from the node id, so it survives
    restarts and reboots and the peers' FDB entries stay right (flannel's changed at boot:
    its #533), and one of its own per network; unicast, locally administered. The cluster
    record publishes the same value (cluster/identity.py derives it alike)."""
    digest = bytearray(hashlib.sha256(f"{node_id}/{vni}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def plan_overlay(
    settings: OverlaySettings, node: OverlayNode, peers: Iterable[OverlayPeer]
) -> OverlayState:
    """This node's objects for the network. ConfigError if the node's own input cannot
    work; a peer whose record cannot is left out and listed in `rejected`.

    The veths' MTU is the tunnel's (underlay - 50) on any network that may use VXLAN, even
    towards peers reached with host-gw: a container's MTU is fixed when it is attached, and
    a peer behind a router may join at any time (flannel with DirectRouting does the same).
    Only a host-gw network, which never tunnels, gets the underlay's MTU."""
    gateway = _check_node(settings, node)
    tunnel = None if settings.backend is Backend.HOST_GW else _vxlan_plan(settings, node)
    mtu = node.mtu if tunnel is None else tunnel.mtu
    ordered = sorted(peers, key=lambda p: (p.node_id, p.subnet))
    reasons = _rejections(settings, node, ordered)
    neighbours, fdb, routes = [], [], []
    for peer in ordered:
        if peer.node_id in reasons:
            continue
        if tunnel is None or not _tunnelled(settings, peer):
            routes.append(RoutePlan(peer.subnet, peer.address, node.device, onlink=False))
            continue
        vtep = peer.subnet.network_address
        mac = peer.vtep_mac.lower()
        neighbours.append(NeighbourPlan(vtep, mac))
        if FdbPlan(mac, peer.address) not in fdb:  # once for a node of several blocks
            fdb.append(FdbPlan(mac, peer.address))
        routes.append(RoutePlan(peer.subnet, vtep, tunnel.name, onlink=True))
    return OverlayState(
        pool=settings.pool, underlay=node.device,
        bridge=BridgePlan(bridge_device(settings.network_id), gateway, mtu),
        vxlan=tunnel, veth_mtu=mtu, neighbours=tuple(neighbours), fdb=tuple(fdb),
        routes=tuple(routes),
        rejected=tuple(RejectedPeer(n, r) for n, r in sorted(reasons.items())),
    )


def _tunnelled(settings: OverlaySettings, peer: OverlayPeer) -> bool:
    return settings.backend is Backend.VXLAN or (
        settings.backend is Backend.AUTO and not peer.same_segment)


def _check_node(settings: OverlaySettings, node: OverlayNode) -> IPv4Interface:
    """The bridge's gateway address; ConfigError for a node that cannot hold the network."""
    if not node.subnet.subnet_of(settings.pool):
        raise ConfigError("subnet", str(node.subnet),
                          f"outside the network's subnet {settings.pool}")
    if node.subnet.num_addresses < 4:
        raise ConfigError("subnet", str(node.subnet), "too small for a gateway and a container")
    least = MIN_MTU + (0 if settings.backend is Backend.HOST_GW else VXLAN_OVERHEAD)
    if not least <= node.mtu <= 65535:
        raise ConfigError("underlay MTU", node.mtu, f"out of range {least}-65535")
    return IPv4Interface((node.subnet.network_address + 1, node.subnet.prefixlen))


def _vxlan_plan(settings: OverlaySettings, node: OverlayNode) -> VxlanPlan:
    return VxlanPlan(
        name=vxlan_device(settings.network_id), vni=settings.vni, local=node.address,
        underlay=node.device, port=settings.port, mac=vtep_mac(node.node_id, settings.vni),
        mtu=node.mtu - VXLAN_OVERHEAD,
        address=IPv4Interface((node.subnet.network_address, 32)),
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
    if not peer.subnet.subnet_of(settings.pool):
        return f"subnet {peer.subnet} is outside the network's subnet {settings.pool}"
    if peer.subnet.overlaps(node.subnet):
        return f"subnet {peer.subnet} overlaps this node's {node.subnet}"
    if settings.backend is Backend.HOST_GW and not peer.same_segment:
        return "is not on this node's L2 segment: host-gw cannot reach it (vxlan or auto can)"
    mac = peer.vtep_mac.lower()
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        return f"VTEP MAC {peer.vtep_mac!r} is not a unicast MAC"
    return None


def _overlaps(peers: Sequence[OverlayPeer]) -> dict[str, str]:
    """Peers whose subnets overlap another's: all of them, since the record cannot say which
    one holds the addresses (flannel's #1289: a subnet given to two nodes)."""
    reasons: dict[str, str] = {}
    by_start = sorted(peers, key=lambda p: (p.subnet.network_address, p.subnet.prefixlen))
    widest: OverlayPeer | None = None  # the earlier subnet reaching furthest
    for peer in by_start:
        if widest is not None and peer.subnet.network_address <= widest.subnet.broadcast_address:
            reasons[peer.node_id] = f"subnet {peer.subnet} overlaps node {widest.node_id}'s"
            reasons.setdefault(widest.node_id,
                               f"subnet {widest.subnet} overlaps node {peer.node_id}'s")
        if widest is None or peer.subnet.broadcast_address > widest.subnet.broadcast_address:
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
