"""The routed driver: one node's share of a cluster-wide routed network, Calico-style.

No bridge. Each container gets a veth whose container end holds its address as a /32, with
169.254.1.1 as its gateway (answered by proxy ARP on the host end); the host routes the /32
back out of that veth (plan/routed.py, kernel/routed.py). The node's block of the network's
subnet is held as a blackhole route, which the node's BGP speaker announces to the other
nodes; their blocks come back from BGP (same subnet) or from the cluster agent's VXLAN
(another subnet), never from this driver (engine/routed.py). The block's first address (its
gateway in the record, which IPAM never hands out) is held on the host's lo: netbay's DNS
server listens there, and the containers reach it through 169.254.1.1 like any address; BGP
exports the block alone, never that /32 (plan/bird.py).

The local record holds what it needs of the cluster as options the agent sets (the pool,
the encapsulation, the MTU); a user never writes them.

Dual stack: the share also holds IPv6 blocks of the global network's IPv6 subnet (OPT_POOL6),
after its IPv4 ones, each held as a blackhole the same way; a container gets an IPv6 /128
beside its /32, with fe80::ecee:eeff:feee:eeee as its IPv6 gateway (plan/routed.py). The IPv6
block's first address is its gateway in the record, never handed out and not put on lo: DNS
answers on the IPv4 gateway only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

from ..errors import ConfigError
from ..model import Endpoint, Network, NetworkSpec
from ..plan.bird import MAX_ASN
from ..plan.overlay import Backend, vxlan_device
from ..plan.routed import (
    DEFAULT,
    GATEWAY,
    GATEWAY6,
    BlockRoute,
    Encapsulation,
    RoutedEndpoint,
    block_route,
    plan_endpoint,
    veth_mtu,
)
from ..reconcile.state import (
    Desired,
    WantedBlackhole,
    WantedLink,
    WantedLocalAddress,
    WantedRoute,
    WantedSysctl,
)
from .base import (
    OPT_POOL,
    OPT_POOL6,
    Capabilities,
    DriverKernel,
    GlobalOptions,
    Route,
    parse_choice,
    parse_int,
)
from .overlay import OPT_BACKEND, OPT_VNI

log = logging.getLogger("netbay.routed")
OPT_ENCAP = "netbay.routed.encap"
OPT_MTU = "netbay.routed.mtu"
OPT_ASN = "netbay.routed.asn"
# the tunnel towards nodes on other subnets is an overlay's (engine/overlay.py)
LOCAL_OPTIONS = frozenset({OPT_POOL, OPT_POOL6, OPT_ENCAP, OPT_MTU, OPT_ASN, OPT_VNI,
                           OPT_BACKEND})
# how the overlay plane treats a share of each encapsulation: VXLAN to every peer, to peers
# on other subnets (its host-gw routes are left to BGP), to none
TUNNEL_BACKEND = {Encapsulation.ALWAYS: Backend.VXLAN, Encapsulation.CROSS_SUBNET: Backend.AUTO,
                  Encapsulation.NEVER: Backend.HOST_GW}
RTPROT_NETBAY = 57  # kernel/rtnl_wire.py's: the host's /32 route to each container
# what `network create -d routed -o ...` may set (the global record keeps them)
USER_OPTIONS = frozenset({"block_size", "block_size6", "encap", "asn"})
DEFAULT_BLOCK_SIZE = 26  # Calico's: 64 addresses a block
DEFAULT_BLOCK_SIZE6 = 122  # Calico's IPv6 block: 64 addresses too
DEFAULT_ASN = 64512  # the first private 16-bit ASN, Calico's default too
LONGEST_BLOCK = 30  # room for two containers
SHORTEST_BLOCK6, LONGEST_BLOCK6 = 64, 126


def parse_encap(value: str) -> Encapsulation:
    return parse_choice(Encapsulation, "opt encap", value)


def local_options(
    pool: IPv4Network, vni: int, encap: Encapsulation, asn: int, mtu: int,
    pool6: IPv6Network | None = None,
) -> Mapping[str, str]:
    options = {OPT_POOL: str(pool), OPT_VNI: str(vni), OPT_ENCAP: encap.value,
               OPT_BACKEND: TUNNEL_BACKEND[encap].value, OPT_ASN: str(asn), OPT_MTU: str(mtu)}
    if pool6 is not None:
        options[OPT_POOL6] = str(pool6)
    return options


def _all_rp_filter() -> int:
    """net.ipv4.conf.all.rp_filter: the kernel applies the larger of it and a device's."""
    try:
        return int(Path("/proc/sys/net/ipv4/conf/all/rp_filter").read_text())
    except (OSError, ValueError):
        return 0


def blocks_of(network: Network) -> tuple[IPv4Network, ...]:
    """The node's IPv4 blocks of the network: the first it claimed, then any it claimed when
    those were full."""
    return tuple(s.subnet for s in network.subnets if isinstance(s.subnet, IPv4Network))


def blocks6_of(network: Network) -> tuple[IPv6Network, ...]:
    """The node's IPv6 blocks of the network, in the order it claimed them."""
    return tuple(s.subnet for s in network.subnets if isinstance(s.subnet, IPv6Network))


def pool6_of(network: Network) -> IPv6Network | None:
    """The global network's IPv6 subnet (None: an IPv4-only network)."""
    pool6 = network.options.get(OPT_POOL6)
    return None if pool6 is None else IPv6Network(pool6)


def block_holding(network: Network, address: IPv4Address) -> IPv4Network:
    return next(b for b in blocks_of(network) if address in b)


def block6_holding(network: Network, address: IPv6Address) -> IPv6Network | None:
    return next((b for b in blocks6_of(network) if address in b), None)


def _held_blocks(network: Network) -> tuple[WantedBlackhole, ...]:
    """Every block of the share, of both families (a node may hold several of one
    network), as setup holds it."""
    owner = f"network {network.name}"
    return tuple(WantedBlackhole(held.block, owner) for held in _block_routes(network))


def _block_routes(network: Network) -> list[BlockRoute]:
    """The blackholes setup holds: each IPv4 block's, then each IPv6 block's."""
    pool, pool6 = IPv4Network(network.options[OPT_POOL]), pool6_of(network)
    routes = [block_route(block, pool) for block in blocks_of(network)]
    if pool6 is not None:
        routes += [block_route(block, pool6) for block in blocks6_of(network)]
    return routes


def _dns_addresses(network: Network) -> list[IPv4Address]:
    """Where the DNS server answers the share's containers (dns/records.py listen_points):
    the IPv4 blocks' gateways only."""
    return [s.gateway for s in network.subnets if isinstance(s.gateway, IPv4Address)]


def _blocks_of_pools(spec: NetworkSpec, pool: IPv4Network, pool6: IPv6Network | None) -> bool:
    """SPEC's subnets: an IPv4 block of POOL first, every one a block of POOL or POOL6."""
    if not spec.subnets or not isinstance(spec.subnets[0].subnet, IPv4Network):
        return False
    for config in spec.subnets:
        subnet = config.subnet
        if isinstance(subnet, IPv4Network) and subnet.subnet_of(pool):
            continue
        if not (isinstance(subnet, IPv6Network) and pool6 is not None
                and subnet.subnet_of(pool6)):
            return False
    return True


class RoutedDriver:
    name = "routed"
    mode = "private"
    user_options = USER_OPTIONS
    caps = Capabilities(makes_links=True, firewall=True, publish=True, dns=True, cluster=True,
                        bgp=True, more_blocks=True, ipv6=True)
    runtime = None  # a runtime names a routed network; only `network create` makes one

    def global_options(
        self, given: Mapping[str, str], subnet: IPv4Network | None
    ) -> GlobalOptions:
        encap = parse_encap(given.get("encap", Encapsulation.CROSS_SUBNET.value))
        asn = parse_int("opt asn", given.get("asn", str(DEFAULT_ASN)), 1, MAX_ASN)
        shortest = 8 if subnet is None else subnet.prefixlen
        size = parse_int("opt block_size", given.get("block_size", str(DEFAULT_BLOCK_SIZE)),
                         shortest, LONGEST_BLOCK)
        size6 = parse_int("opt block_size6",
                          given.get("block_size6", str(DEFAULT_BLOCK_SIZE6)),
                          SHORTEST_BLOCK6, LONGEST_BLOCK6)
        return GlobalOptions({"encap": encap.value, "asn": str(asn)}, size, block_size6=size6)

    def share_options(
        self, pool: IPv4Network, vni: int, options: Mapping[str, str], underlay_mtu: int,
        pool6: IPv6Network | None = None,
    ) -> Mapping[str, str]:
        """POOL6 (a dual-stack network): the veths' MTU must carry IPv6 (1280 at least)."""
        encap = parse_encap(options.get("encap", Encapsulation.CROSS_SUBNET.value))
        asn = int(options.get("asn", DEFAULT_ASN))
        mtu = veth_mtu(underlay_mtu, encap, ipv6=pool6 is not None)
        return local_options(pool, vni, encap, asn, mtu, pool6)

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        unknown = sorted(set(spec.options) - LOCAL_OPTIONS)
        if unknown or OPT_POOL not in spec.options:
            raise ConfigError("driver", self.name, "routed networks are cluster-wide: "
                              "create them through netbayd on a node that joined a cluster")
        pool = IPv4Network(spec.options[OPT_POOL])
        parse_encap(spec.options.get(OPT_ENCAP, Encapsulation.CROSS_SUBNET.value))
        mtu = parse_int(f"opt {OPT_MTU}", spec.options.get(OPT_MTU, "1500"), 68, 65535)
        pool6 = spec.options.get(OPT_POOL6)
        pools = f"{pool}" if pool6 is None else f"{pool} and {pool6}"
        if not _blocks_of_pools(spec, pool, None if pool6 is None else IPv6Network(pool6)):
            raise ConfigError("subnet", [str(s.subnet) for s in spec.subnets],
                              f"a routed node holds blocks of {pools}")
        return Network(id=network_id, name=spec.name, driver=self.name, created="",
                       subnets=spec.subnets, internal=spec.internal,
                       attachable=spec.attachable, options=dict(spec.options),
                       labels=dict(spec.labels), mtu=mtu)

    def claim(self, kernel: DriverKernel, network: Network) -> Network:
        return network

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        return network

    def setup(self, kernel: DriverKernel, network: Network) -> Network:
        if _all_rp_filter() > 1:
            log.warning("network %s: net.ipv4.conf.all.rp_filter is loose (2), which makes "
                        "every routed veth's strict check loose: a container could send as "
                        "another's address (netbay doctor)", network.name)
        kernel.enable_forwarding()
        if pool6_of(network) is not None:
            kernel.enable_forwarding(6)
        for held in _block_routes(network):
            kernel.hold_block(held)
        for address in _dns_addresses(network):
            kernel.hold_local_address(address)
        return network

    def restore(self, kernel: DriverKernel, network: Network) -> Network:
        return self.setup(kernel, network)  # both steps accept what exists

    def teardown(self, kernel: DriverKernel, network: Network) -> None:
        kernel.remove_link(vxlan_device(network.id))  # the agent's tunnel, if it made one
        for address in _dns_addresses(network):
            kernel.release_local_address(address)
        for held in _block_routes(network):
            kernel.release_block(held)

    def audit(self, network: Network, links: set[str]) -> list[str]:
        return []  # no device of its own: the endpoints' veths are audited as endpoints

    def orphan_ports(self, kernel: DriverKernel, network: Network, recorded: set[str]) -> list[str]:
        return []  # no bridge to find unrecorded ports on

    def desired(self, network: Network, endpoints: Sequence[Endpoint]) -> Desired:
        """Each endpoint's veth up with the network's MTU and its /32 route (and /128);
        forwarding on; and what setup holds for each of the node's blocks: its blackhole
        (IPv6 blocks' too), its gateway on lo (where the DNS server answers)."""
        links, routes = [], []
        for e in endpoints:
            if not e.host_ifname or e.address is None:
                continue
            owner = f"endpoint {e.id[:12]}"
            links.append(WantedLink(e.host_ifname, owner, kind="veth", mtu=network.mtu))
            routes.append(WantedRoute(IPv4Network((e.address.ip, 32)), e.host_ifname, owner,
                                      protocol=RTPROT_NETBAY))
            if e.address6 is not None:
                routes.append(WantedRoute(IPv6Network((e.address6.ip, 128)), e.host_ifname,
                                          owner, protocol=RTPROT_NETBAY))
        owner = f"network {network.name}"
        sysctls = (WantedSysctl("net.ipv4.ip_forward", "1", owner),)
        return Desired(tuple(links), tuple(routes), sysctls, blackholes=_held_blocks(network),
                       local_addresses=tuple(WantedLocalAddress(a, owner)
                                             for a in _dns_addresses(network)))

    def upstream_routes(self, kernel: DriverKernel, network: Network) -> list[Route]:
        return []

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        """A /32, and 169.254.1.1 as the gateway of an endpoint that routes by default; with
        an IPv6 address, a /128 too, fe80::ecee:eeff:feee:eeee its IPv6 gateway."""
        assert endpoint.address is not None
        address6 = endpoint.address6
        return dataclasses.replace(
            endpoint, address=IPv4Interface((endpoint.address.ip, 32)),
            gateway=None if endpoint.gateway is None else GATEWAY,
            address6=None if address6 is None else IPv6Interface((address6.ip, 128)),
            gateway6=None if endpoint.gateway6 is None else GATEWAY6,
        )

    def container_routes(self, network: Network, endpoint: Endpoint) -> list[Route]:
        return [] if endpoint.gateway is None else [(DEFAULT, GATEWAY)]

    def routed_endpoint(self, network: Network, endpoint: Endpoint) -> RoutedEndpoint:
        assert endpoint.address is not None and network.mtu is not None
        address6 = None if endpoint.address6 is None else endpoint.address6.ip
        return plan_endpoint(
            endpoint_id=endpoint.id, address=endpoint.address.ip,
            block=block_holding(network, endpoint.address.ip),
            subnet=IPv4Network(network.options[OPT_POOL]), ifname=endpoint.ifname,
            mtu=network.mtu, default_route=endpoint.gateway is not None,
            address6=address6,
            block6=None if address6 is None else block6_holding(network, address6),
            subnet6=pool6_of(network),
        )

    def attach(
        self, kernel: DriverKernel, network: Network, endpoint: Endpoint, netns: Path,
        default_route: bool,
    ) -> None:
        kernel.attach_routed(self.routed_endpoint(network, endpoint), netns)

    def detach(
        self, kernel: DriverKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        if endpoint.host_ifname:
            kernel.detach_routed(endpoint.host_ifname)


DRIVERS = (RoutedDriver(),)
