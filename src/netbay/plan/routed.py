"""A container on a routed network, planned: from its address (a /32 out of a block this node
holds), what attaching it makes; and the route the node holds for each of its blocks. Pure
(kernel/routed.py makes them so).

Calico's workload model is the anchor. No bridge: a veth whose container end holds ADDRESS/32
and knows one neighbour, 169.254.1.1, that no machine holds: a link route to it and the default
route via it. The host end holds no address; it answers the container's ARP for 169.254.1.1
by proxy with its MAC, ee:ee:ee:ee:ee:ee (the same on every veth: nothing else is ever on that
link), so whatever the container sends enters the host's routing, which sends the packets
for ADDRESS back out of the veth by a /32 route of netbay's protocol. The /32s stay on the
node; BGP exports the node's blocks, each held as a blackhole route (the /32s under it win,
and an address of the block nobody holds ends there instead of looping back out).

A dual-stack endpoint is Calico's too: ADDRESS6/128 (no DAD) on the container end, whose
default route is via fe80::ecee:eeff:feee:eeee, the EUI-64 link-local of ee:ee:ee:ee:ee:ee,
held (no DAD, so usable at once) by the host end, which keeps IPv6 on for it but makes no
address of its own and takes no router's advertisement; the host routes ADDRESS6/128 back out
of the veth. A v4-only endpoint's host end keeps IPv6 off, as before.
"""

from __future__ import annotations

import dataclasses
import enum
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
from ..model import IPNetwork
from .naming import host_veth, mac_for
from .overlay import MIN_MTU, VXLAN_OVERHEAD, OverlayState

GATEWAY = IPv4Address("169.254.1.1")  # Calico's: link-local, so never a real machine's
HOST_MAC = "ee:ee:ee:ee:ee:ee"
DEFAULT = IPv4Network("0.0.0.0/0")
# the EUI-64 link-local of HOST_MAC: the host end holds it, the container routes via it
GATEWAY6 = IPv6Address("fe80::ecee:eeff:feee:eeee")
HOST_LINK_LOCAL = IPv6Interface((GATEWAY6, 64))
DEFAULT6 = IPv6Network("::/0")
MIN_MTU6 = 1280  # the least an IPv6 link may carry (RFC 8200)


class Encapsulation(enum.Enum):
    """When a packet to another node goes through VXLAN: to nodes on other subnets only
    (plain routing on the node's own), always, or never (one L2 segment, or routers that
    know the blocks)."""

    CROSS_SUBNET = "cross-subnet"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class DeviceSysctl:
    """A per-device setting: /proc/sys/TREE/<device>/KEY."""

    tree: str  # "net/ipv4/conf", "net/ipv4/neigh", "net/ipv6/conf"
    key: str
    value: str


# Of the host end, written before it gets its carrier (so before the container can send).
HOST_SYSCTLS = (
    # answer the container's ARP for GATEWAY with the host end's MAC
    DeviceSysctl("net/ipv4/conf", "proxy_arp", "1"),
    # ... at once: ARP requests are broadcasts, and a proxy answers a broadcast only after a
    # random delay of up to proxy_delay (0.8 s by default), the container's first packet's wait
    DeviceSysctl("net/ipv4/neigh", "proxy_delay", "0"),
    # strict: a packet in from the veth must come from an address routed to it, so a
    # container cannot send as another (systemd's default of 2, loose, would allow it)
    DeviceSysctl("net/ipv4/conf", "rp_filter", "1"),
    # netbay's networks are IPv4: no autoconfiguration, no IPv6 timers per veth
    DeviceSysctl("net/ipv6/conf", "disable_ipv6", "1"),
)
# ... of a dual-stack endpoint's: IPv6 on for the one link-local kernel/routed.py adds, but no
# address of its own making (addr_gen_mode 1, none), no router's advertisements, forwarding
HOST_SYSCTLS_DUAL = (
    *HOST_SYSCTLS[:3],
    DeviceSysctl("net/ipv6/conf", "accept_ra", "0"),
    DeviceSysctl("net/ipv6/conf", "addr_gen_mode", "1"),
    DeviceSysctl("net/ipv6/conf", "forwarding", "1"),
    DeviceSysctl("net/ipv6/conf", "disable_ipv6", "0"),
)


@dataclass(frozen=True)
class RoutePlan:
    """A route out of DEVICE (the container end, or the host end), via GATEWAY if set."""

    destination: IPv4Network
    device: str
    gateway: IPv4Address | None = None
    onlink: bool = False  # GATEWAY is on DEVICE's link, though no route says so


@dataclass(frozen=True)
class RoutePlan6:
    """An IPv6 route out of DEVICE, via GATEWAY (a link-local: no onlink needed) if set."""

    destination: IPv6Network
    device: str
    gateway: IPv6Address | None = None


@dataclass(frozen=True)
class RoutedEndpoint:
    """What attaching one container to a routed network makes on this node."""

    host_ifname: str  # the host end: no bridge, no address
    ifname: str  # the container end
    address: IPv4Interface  # the container's, a /32: no subnet shared with anyone
    mac: str  # the container end's, and the host's permanent neighbour entry for ADDRESS
    mtu: int  # of both ends
    host_route: RoutePlan  # ADDRESS/32 out of the host end, of netbay's protocol
    container_routes: tuple[RoutePlan, ...]  # in the order they must be added
    host_mac: str = HOST_MAC
    host_sysctls: tuple[DeviceSysctl, ...] = HOST_SYSCTLS
    # dual stack: the container's /128, the host's route to it, the container's IPv6 routes
    # and the host end's link-local (None, (), None on a v4-only endpoint)
    address6: IPv6Interface | None = None
    host_route6: RoutePlan6 | None = None
    container_routes6: tuple[RoutePlan6, ...] = ()
    host_link_local: IPv6Interface | None = None


@dataclass(frozen=True)
class BlockRoute:
    """A block this node holds (of either family), as the node's kernel holds it:
    `blackhole BLOCK proto 57`, the route BGP exports for it."""

    block: IPv4Network | IPv6Network


def veth_mtu(underlay_mtu: int, encapsulation: Encapsulation, ipv6: bool = False) -> int:
    """The container veths' MTU: the underlay's, less VXLAN's 50 bytes where every packet
    to another node is tunnelled (encap=always). Under cross-subnet the veths keep the
    underlay's: the plain-routed path to this subnet's nodes is the common one (about 9% more
    throughput than at the tunnel's MTU, docs/benchmarks.md), and what goes through the
    tunnel is fitted to it on this node: TCP's MSS clamped at its SYN (plan/ruleset.py's
    forward chain), anything else larger told so by the kernel (the tunnel device's MTU:
    ICMP "fragmentation needed" / "packet too big" to the container, from its own host, so
    no firewall between drops it). The tunnel must still carry IPv4's 68 bytes, or IPv6's
    1280 on a dual-stack network (IPV6)."""
    overhead = VXLAN_OVERHEAD if encapsulation is Encapsulation.ALWAYS else 0
    tunnel = 0 if encapsulation is Encapsulation.NEVER else VXLAN_OVERHEAD
    least = (MIN_MTU6 if ipv6 else MIN_MTU) + tunnel
    if not least <= underlay_mtu <= 65535:
        why = f"out of range {least}-65535" + (" (IPv6 needs 1280)" if ipv6 else "")
        raise ConfigError("underlay MTU", underlay_mtu, why)
    return underlay_mtu - overhead


def plan_endpoint(
    *,
    endpoint_id: str,
    address: IPv4Address,
    block: IPv4Network,
    subnet: IPv4Network,
    ifname: str,
    mtu: int,
    default_route: bool,
    address6: IPv6Address | None = None,
    block6: IPv6Network | None = None,
    subnet6: IPv6Network | None = None,
) -> RoutedEndpoint:
    """The endpoint ENDPOINT_ID with ADDRESS (in BLOCK, one of this node's blocks of the
    network's SUBNET) as IFNAME in its container. With DEFAULT_ROUTE the container's default
    route is via GATEWAY; without (the container's default route is another network's) only
    SUBNET is, onlink: the link route to GATEWAY would clash with the other network's.
    ADDRESS6 (in BLOCK6 of SUBNET6): a dual-stack endpoint, the same for IPv6 via GATEWAY6."""
    block_route(block, subnet)
    if address not in block:
        raise ConfigError("address", str(address), f"outside this node's block {block}")
    inside: tuple[RoutePlan, ...]
    if default_route:
        inside = (RoutePlan(IPv4Network((GATEWAY, 32)), ifname),
                  RoutePlan(DEFAULT, ifname, GATEWAY))
    else:
        inside = (RoutePlan(subnet, ifname, GATEWAY, onlink=True),)
    host_ifname = host_veth(endpoint_id)
    endpoint = RoutedEndpoint(
        host_ifname=host_ifname, ifname=ifname, address=IPv4Interface((address, 32)),
        mac=mac_for(address) or "", mtu=mtu,
        host_route=RoutePlan(IPv4Network((address, 32)), host_ifname),
        container_routes=inside,
    )
    if address6 is None:
        return endpoint
    if block6 is None or subnet6 is None:
        raise ConfigError("address", str(address6), "no IPv6 block of this node holds it")
    return _dual(endpoint, address6, block6, subnet6, default_route)


def _dual(endpoint: RoutedEndpoint, address6: IPv6Address, block6: IPv6Network,
          subnet6: IPv6Network, default_route: bool) -> RoutedEndpoint:
    block_route(block6, subnet6)
    if address6 not in block6:
        raise ConfigError("address", str(address6), f"outside this node's block {block6}")
    if endpoint.mtu < MIN_MTU6:
        raise ConfigError("mtu", endpoint.mtu, f"out of range {MIN_MTU6}-65535 (IPv6)")
    ifname = endpoint.ifname
    return dataclasses.replace(
        endpoint, host_sysctls=HOST_SYSCTLS_DUAL, address6=IPv6Interface((address6, 128)),
        host_route6=RoutePlan6(IPv6Network((address6, 128)), endpoint.host_ifname),
        container_routes6=(RoutePlan6(DEFAULT6 if default_route else subnet6, ifname,
                                      GATEWAY6),),
        host_link_local=HOST_LINK_LOCAL,
    )


def block_route(block: IPNetwork, subnet: IPNetwork) -> BlockRoute:
    """The route for BLOCK, a block of the network's SUBNET (of its family: SUBNET is the
    network's IPv6 subnet for an IPv6 block); ConfigError if it is not one."""
    if not _inside(block, subnet):
        raise ConfigError("block", str(block), f"outside the network's subnet {subnet}")
    return BlockRoute(block)


def _inside(block: IPNetwork, subnet: IPNetwork) -> bool:
    if isinstance(block, IPv4Network):
        return isinstance(subnet, IPv4Network) and block.subnet_of(subnet)
    return isinstance(subnet, IPv6Network) and block.subnet_of(subnet)


def routed_tunnels(state: OverlayState, encapsulation: Encapsulation,
                   blocks: tuple[IPNetwork, ...]) -> OverlayState:
    """Of an overlay plan for a routed share (BLOCKS this node's, of both families), what
    netbay programs itself: no bridge, and only the VXLAN part (neighbours, FDB entries,
    onlink routes through the tunnel); the routes to peers on this node's subnet are BGP's
    (an IPv6 block's only where both nodes have an IPv6 underlay address: the overlay plan
    tunnels the others). Never: nothing at all, BGP (and the routers it peers with) carries
    every block."""
    own = tuple(blocks)  # the routes of netbay's inside them are the share's /32s and /128s
    if encapsulation is Encapsulation.NEVER or state.vxlan is None:
        return dataclasses.replace(state, bridge=None, vxlan=None, neighbours=(), fdb=(),
                                   routes=(), rejected=(), own_blocks=own)
    tunnel = state.vxlan.name
    return dataclasses.replace(
        state, bridge=None, routes=tuple(r for r in state.routes if r.device == tunnel),
        own_blocks=own,
    )
