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
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from ..errors import ConfigError
from ..model import Endpoint, Network, NetworkSpec, only_v4, only_v4_address
from ..plan.bird import MAX_ASN
from ..plan.overlay import Backend, vxlan_device
from ..plan.routed import (
    DEFAULT,
    GATEWAY,
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
LOCAL_OPTIONS = frozenset({OPT_POOL, OPT_ENCAP, OPT_MTU, OPT_ASN, OPT_VNI, OPT_BACKEND})
# how the overlay plane treats a share of each encapsulation: VXLAN to every peer, to peers
# on other subnets (its host-gw routes are left to BGP), to none
TUNNEL_BACKEND = {Encapsulation.ALWAYS: Backend.VXLAN, Encapsulation.CROSS_SUBNET: Backend.AUTO,
                  Encapsulation.NEVER: Backend.HOST_GW}
RTPROT_NETBAY = 57  # kernel/rtnl_wire.py's: the host's /32 route to each container
# what `network create -d routed -o ...` may set (the global record keeps them)
USER_OPTIONS = frozenset({"block_size", "encap", "asn"})
DEFAULT_BLOCK_SIZE = 26  # Calico's: 64 addresses a block
DEFAULT_ASN = 64512  # the first private 16-bit ASN, Calico's default too
LONGEST_BLOCK = 30  # room for two containers


def parse_encap(value: str) -> Encapsulation:
    return parse_choice(Encapsulation, "opt encap", value)


def local_options(
    pool: IPv4Network, vni: int, encap: Encapsulation, asn: int, mtu: int
) -> Mapping[str, str]:
    return {OPT_POOL: str(pool), OPT_VNI: str(vni), OPT_ENCAP: encap.value,
            OPT_BACKEND: TUNNEL_BACKEND[encap].value, OPT_ASN: str(asn), OPT_MTU: str(mtu)}


def _all_rp_filter() -> int:
    """net.ipv4.conf.all.rp_filter: the kernel applies the larger of it and a device's."""
    try:
        return int(Path("/proc/sys/net/ipv4/conf/all/rp_filter").read_text())
    except (OSError, ValueError):
        return 0


def blocks_of(network: Network) -> tuple[IPv4Network, ...]:
    """The node's blocks of the network: the first it claimed, then any it claimed when
    those were full."""
    return tuple(only_v4(s.subnet) for s in network.subnets)


def block_holding(network: Network, address: IPv4Address) -> IPv4Network:
    return next(b for b in blocks_of(network) if address in b)


def _held_blocks(network: Network) -> tuple[WantedBlackhole, ...]:
    """Every block of the share (a node may hold several of one network), as setup holds it."""
    owner = f"network {network.name}"
    return tuple(WantedBlackhole(block, owner) for block in blocks_of(network))


def _dns_addresses(network: Network) -> list[IPv4Address]:
    """Where the DNS server answers the share's containers (dns/records.py listen_points)."""
    return [g for s in network.subnets if (g := only_v4_address(s.gateway)) is not None]


class RoutedDriver:
    name = "routed"
    mode = "private"
    user_options = USER_OPTIONS
    caps = Capabilities(makes_links=True, firewall=True, publish=True, dns=True, cluster=True,
                        bgp=True, more_blocks=True)
    runtime = None  # a runtime names a routed network; only `network create` makes one

    def global_options(
        self, given: Mapping[str, str], subnet: IPv4Network | None
    ) -> GlobalOptions:
        encap = parse_encap(given.get("encap", Encapsulation.CROSS_SUBNET.value))
        asn = parse_int("opt asn", given.get("asn", str(DEFAULT_ASN)), 1, MAX_ASN)
        shortest = 8 if subnet is None else subnet.prefixlen
        size = parse_int("opt block_size", given.get("block_size", str(DEFAULT_BLOCK_SIZE)),
                         shortest, LONGEST_BLOCK)
        return GlobalOptions({"encap": encap.value, "asn": str(asn)}, size)

    def share_options(
        self, pool: IPv4Network, vni: int, options: Mapping[str, str], underlay_mtu: int
    ) -> Mapping[str, str]:
        encap = parse_encap(options.get("encap", Encapsulation.CROSS_SUBNET.value))
        asn = int(options.get("asn", DEFAULT_ASN))
        return local_options(pool, vni, encap, asn, veth_mtu(underlay_mtu, encap))

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        unknown = sorted(set(spec.options) - LOCAL_OPTIONS)
        if unknown or OPT_POOL not in spec.options:
            raise ConfigError("driver", self.name, "routed networks are cluster-wide: "
                              "create them through netbayd on a node that joined a cluster")
        pool = IPv4Network(spec.options[OPT_POOL])
        parse_encap(spec.options.get(OPT_ENCAP, Encapsulation.CROSS_SUBNET.value))
        mtu = parse_int(f"opt {OPT_MTU}", spec.options.get(OPT_MTU, "1500"), 68, 65535)
        if not spec.subnets or not all(only_v4(s.subnet).subnet_of(pool) for s in spec.subnets):
            raise ConfigError("subnet", [str(s.subnet) for s in spec.subnets],
                              f"a routed node holds blocks of {pool}")
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
        pool = IPv4Network(network.options[OPT_POOL])
        for block in blocks_of(network):
            kernel.hold_block(block_route(block, pool))
        for address in _dns_addresses(network):
            kernel.hold_local_address(address)
        return network

    def restore(self, kernel: DriverKernel, network: Network) -> Network:
        return self.setup(kernel, network)  # both steps accept what exists

    def teardown(self, kernel: DriverKernel, network: Network) -> None:
        kernel.remove_link(vxlan_device(network.id))  # the agent's tunnel, if it made one
        for address in _dns_addresses(network):
            kernel.release_local_address(address)
        pool = IPv4Network(network.options[OPT_POOL])
        for block in blocks_of(network):
            kernel.release_block(block_route(block, pool))

    def audit(self, network: Network, links: set[str]) -> list[str]:
        return []  # no device of its own: the endpoints' veths are audited as endpoints

    def orphan_ports(self, kernel: DriverKernel, network: Network, recorded: set[str]) -> list[str]:
        return []  # no bridge to find unrecorded ports on

    def desired(self, network: Network, endpoints: Sequence[Endpoint]) -> Desired:
        """Each endpoint's veth up with the network's MTU and its /32 route; forwarding on;
        and what setup holds for each of the node's blocks: its blackhole, its gateway on
        lo (where the DNS server answers)."""
        links, routes = [], []
        for e in endpoints:
            if not e.host_ifname or e.address is None:
                continue
            owner = f"endpoint {e.id[:12]}"
            links.append(WantedLink(e.host_ifname, owner, kind="veth", mtu=network.mtu))
            routes.append(WantedRoute(IPv4Network((e.address.ip, 32)), e.host_ifname, owner,
                                      protocol=RTPROT_NETBAY))
        owner = f"network {network.name}"
        sysctls = (WantedSysctl("net.ipv4.ip_forward", "1", owner),)
        return Desired(tuple(links), tuple(routes), sysctls, blackholes=_held_blocks(network),
                       local_addresses=tuple(WantedLocalAddress(a, owner)
                                             for a in _dns_addresses(network)))

    def upstream_routes(self, kernel: DriverKernel, network: Network) -> list[Route]:
        return []

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        """A /32, and 169.254.1.1 as the gateway of an endpoint that routes by default."""
        assert endpoint.address is not None
        return dataclasses.replace(
            endpoint, address=IPv4Interface((endpoint.address.ip, 32)),
            gateway=None if endpoint.gateway is None else GATEWAY,
        )

    def container_routes(self, network: Network, endpoint: Endpoint) -> list[Route]:
        return [] if endpoint.gateway is None else [(DEFAULT, GATEWAY)]

    def routed_endpoint(self, network: Network, endpoint: Endpoint) -> RoutedEndpoint:
        assert endpoint.address is not None and network.mtu is not None
        return plan_endpoint(
            endpoint_id=endpoint.id, address=endpoint.address.ip,
            block=block_holding(network, endpoint.address.ip),
            subnet=IPv4Network(network.options[OPT_POOL]), ifname=endpoint.ifname,
            mtu=network.mtu, default_route=endpoint.gateway is not None,
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
