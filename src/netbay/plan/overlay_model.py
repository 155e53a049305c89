"""The overlay planner's vocabulary (plan/overlay.py plans with it, and re-exports it): its
settings, its input (this node, its peers' blocks) and its output (the kernel objects one
node holds for one overlay network), pure data.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from ..errors import ConfigError
from ..model import IPAddress, IPNetwork

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 bytes
DEFAULT_VXLAN_PORT = 4789  # IANA's; the Linux default (and flannel's) 8472 is selectable
MAX_VNI = (1 << 24) - 1
MIN_MTU = 68  # the least an IPv4 link may carry (RFC 791)
MIN_MTU6 = 1280  # the least an IPv6 link may carry (RFC 8200): a v6 block's veths need it
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
    pool6: IPv6Network | None = None  # the network's IPv6 subnet (None: IPv4 only)

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
    subnet6: IPv6Network | None = None  # its lease in pool6, if it holds one
    address6: IPv6Address | None = None  # its IPv6 underlay address (host-gw for v6 blocks)


@dataclass(frozen=True)
class OverlayPeer:
    """Another node's block of the same network (one peer per block: a v6 block is a peer
    too), as the cluster record has it."""

    node_id: str
    address: IPv4Address  # its underlay address
    subnet: IPNetwork  # its lease (of the pool, or of pool6)
    vtep_mac: str  # of its VXLAN device for the network (vtep_mac(its id, vni) if netbay's)
    same_segment: bool  # ADDRESS is on this node's L2 segment: reachable with no router between
    address6: IPv6Address | None = None  # its IPv6 underlay address, if it has one


# --- output: the kernel objects this node must hold ---------------------------------------
@dataclass(frozen=True)
class BridgePlan:
    name: str
    gateway: IPv4Interface  # the first address of the node's subnet, with its prefix
    mtu: int
    gateway6: IPv6Interface | None = None  # the first address of the node's v6 block


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
    # <block6>::/128 (no DAD; IPv6 on, no link-local: addr_gen_mode none), if it holds one
    address6: IPv6Interface | None = None


@dataclass(frozen=True)
class NeighbourPlan:
    """A permanent neighbour on the VXLAN device: a peer's VTEP address is at its MAC."""

    address: IPAddress
    lladdr: str


@dataclass(frozen=True)
class FdbPlan:
    """A forwarding entry of the VXLAN device: frames to LLADDR go to DESTINATION."""

    lladdr: str
    destination: IPv4Address


@dataclass(frozen=True)
class RoutePlan:
    """A route of netbay's protocol to a peer's subnet (of either family)."""

    destination: IPNetwork
    gateway: IPAddress
    device: str
    onlink: bool  # through the VXLAN device, to a gateway no subnet of it covers


@dataclass(frozen=True)
class RejectedPeer:
    """A peer the plan leaves out, and why (its record is inconsistent, or out of reach);
    with SUBNET, only that v6 block of it is left out."""

    node_id: str
    reason: str
    subnet: IPv6Network | None = None


@dataclass(frozen=True)
class OverlayState:
    """Everything one node holds for one overlay network. Routes of netbay's protocol to
    destinations in POOL or POOL6 (or through the VXLAN device), and the neighbours and FDB
    entries of the VXLAN device, are this network's: whatever of them is not here goes."""

    pool: IPv4Network
    underlay: str
    bridge: BridgePlan | None  # None: a routed network's share, which has none
    vxlan: VxlanPlan | None  # None: backend host-gw, no tunnel
    veth_mtu: int  # of every container veth on the network
    neighbours: tuple[NeighbourPlan, ...] = ()
    fdb: tuple[FdbPlan, ...] = ()
    routes: tuple[RoutePlan, ...] = ()  # neighbours and FDB entries go in first
    rejected: tuple[RejectedPeer, ...] = ()
    # routes of netbay's inside them are not this plan's (a routed share's /32 or /128 per
    # container, its blocks' blackholes)
    own_blocks: tuple[IPNetwork, ...] = ()
    pool6: IPv6Network | None = None  # None: an IPv4-only network, no IPv6 object at all


TUNNEL_PREFIX = "nbx"  # every VXLAN device of netbay's (plan/ruleset.py matches on it)


def vxlan_device(network_id: str) -> str:
    return f"{TUNNEL_PREFIX}{network_id[:12]}"


def vtep_mac(node_id: str, vni: int) -> str:
    """The MAC of a node's VXLAN device for network VNI: from the node id, so it survives
    restarts and reboots and the peers' FDB entries stay right (flannel's changed at boot:
    its #533), and one of its own per network; unicast, locally administered. The cluster
    record publishes the same value (cluster/identity.py derives it alike)."""
    digest = bytearray(hashlib.sha256(f"{node_id}/{vni}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)
