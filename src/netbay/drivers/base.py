"""The driver verbs: what a network of each kind needs from netbay (capabilities, the options
runtimes may set), its life (validate, claim, fit, setup, restore, teardown), its repair
(audit, orphan_ports, and desired: what the reconciler keeps in place) and its endpoints
(plan_endpoint, container_routes, attach, detach). The engine asks these; it never compares
driver names."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..errors import ConfigError
from ..model import CLUSTER_POOL, Endpoint, IPAddress, IPNetwork, Network, NetworkSpec
from ..plan.routed import BlockRoute, RoutedEndpoint
from ..reconcile.state import Desired

# (destination, next hop) of one family; None: straight out of the link, no gateway to go via
Route = tuple[IPNetwork, IPAddress | None]
DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")
DEFAULT_ROUTE6 = IPv6Network("::/0")
OPT_POOL = CLUSTER_POOL  # a cluster-wide network's whole subnet (every node's blocks)
# a dual-stack cluster-wide network's IPv6 subnet (every node's v6 blocks); absent: IPv4 only
OPT_POOL6 = "netbay.overlay.pool6"


class DriverKernel(Protocol):
    """What the drivers ask of the host's kernel (kernel.linux.LinuxKernel is one; tests fake it).
    LOCK (reentrant) serialises the changes."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    def ensure_bridge(
        self, key: str, name: str, mtu: int | None,
        addresses: Iterable[IPv4Interface | IPv6Interface],
    ) -> bool:
        """The bridge NAME up with ADDRESSES (with an IPv6 one: IPv6 on, static, on the
        bridge); True if it was made now. KEY names the cached index (the network's id)."""

    def forget_bridge(self, key: str) -> None: ...
    def learn_neighbour(
        self, bridge_key: str, bridge: str, address: IPv4Address, mac: str
    ) -> None:
        """The host's neighbour entry for a container on BRIDGE, as if just confirmed."""

    def enable_forwarding(self, version: int = 4) -> None:
        """net.ipv4.ip_forward, or (VERSION 6) net.ipv6.conf.all.forwarding, on."""

    def allow_localnet(self, device: str) -> None: ...
    def remove_link(self, name: str) -> bool:
        """True if there was such a link."""

    def link_exists(self, name: str) -> bool: ...
    def bridge_ports(self, bridge: str) -> set[str]: ...
    def attach_veth(
        self,
        *,
        bridge: str,
        bridge_key: str,
        host_ifname: str,
        ifname: str,
        netns: Path,
        mac: str | None,
        mtu: int | None,
        address: IPv4Interface | None,
        gateway: IPv4Address | None,
        address6: IPv6Interface | None = None,
        gateway6: IPv6Address | None = None,
    ) -> None:
        """A veth pair: its host end on BRIDGE, the other end in NETNS with ADDRESS (and
        the default route via GATEWAY) and, if given, ADDRESS6 (static IPv6: no RA, no
        autoconf, no DAD) and the IPv6 default route via GATEWAY6."""

    def attach_routed(self, endpoint: RoutedEndpoint, netns: Path) -> None:
        """A veth with no bridge, as plan/routed.py planned it."""

    def detach_routed(self, host_ifname: str) -> bool: ...
    def hold_block(self, held: BlockRoute) -> bool:
        """The block's blackhole route; True if it was added now."""

    def release_block(self, held: BlockRoute) -> bool: ...
    def hold_local_address(self, address: IPv4Address) -> None:
        """ADDRESS as a /32 on the host's loopback device: the host's own, on no link."""

    def release_local_address(self, address: IPv4Address) -> bool:
        """True if the host held ADDRESS on its loopback device."""


@dataclass(frozen=True)
class Capabilities:
    """What a driver's networks take from the rest of netbay. The engine, the firewall, DNS,
    the runtimes and the observers ask these; none of them compares driver names."""

    # netbay makes the endpoints' links (False: addresses only, another program links)
    makes_links: bool = False
    # a bridge per network on the host; endpoints are veth pairs plugged into it, and any
    # port on it that no record names is netbay's to remove
    host_bridge: bool = False
    # endpoints are sub-links (macvlan, ipvlan) of a parent link on the host
    parent_link: bool = False
    # netbay's nftables rules: isolation, egress NAT, anti-spoofing
    firewall: bool = False
    # `-p` port publishing (DNAT to the endpoint)
    publish: bool = False
    # the embedded DNS server listens on the network's gateway and answers its containers
    dns: bool = False
    # cluster-wide: the network's subnet here is this node's block of a pool (OPT_POOL) that
    # every node of the cluster shares; its containers reach the others' without NAT
    cluster: bool = False
    # a cluster-wide network whose nodes announce their blocks by BGP (BIRD 2 runs on a node
    # while it holds a share of one)
    bgp: bool = False
    # a node whose blocks of the cluster network are full claims another (Calico's IPAM); an
    # overlay keeps flannel's one lease per node, which its bridge's gateway needs
    more_blocks: bool = False
    # IPv6 subnets (dual stack or IPv6 only): its endpoints get an IPv6 address too
    ipv6: bool = False


@dataclass(frozen=True)
class RuntimeOptions:
    """Which of the driver's options carry the settings a runtime's own network definition
    has (podman's, netbay's CNI configuration): the host device the network uses (a bridge's
    name, a parent), a link mode, the MTU, masquerading. None: the driver has no such
    setting, and a runtime asking for it is refused."""

    device: str
    mode: str | None = None
    mtu: str | None = None
    masquerade: str | None = None


class Driver(Protocol):
    name: str
    # "private": containers get their own netns and endpoints; "host"/"none": a network mode.
    mode: str
    caps: Capabilities
    # the options runtimes may set; None: runtimes do not make networks of this driver
    runtime: RuntimeOptions | None

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        """Parse and check the spec into the record to create; no I/O, raises ConfigError."""

    def claim(self, kernel: DriverKernel, network: Network) -> Network:
        """Check what only the kernel knows (raises ConfigError) and note in the record which
        devices netbay is about to create (before it does, so a crash mid-setup still knows
        what to remove); reads the kernel, changes nothing."""

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        """Check the completed record against the other networks (a shared bridge or parent)
        and fill in what depends on them; pure, raises ConflictError or ConfigError."""

    def setup(self, kernel: DriverKernel, network: Network) -> Network:
        """Make the network's kernel objects; returns the record with what was made."""

    def restore(self, kernel: DriverKernel, network: Network) -> Network:
        """At daemon start, re-make what a reboot or a manual deletion removed of a ready
        network; returns the record with what was made. What the network can live without
        (a parent that is not netbay's) is logged, not raised."""

    def teardown(self, kernel: DriverKernel, network: Network) -> None:
        """Remove what setup made; missing objects are success."""

    def audit(self, network: Network, links: set[str]) -> list[str]:
        """What of the network's own objects is missing, one line each, given the names of
        the host's LINKS; pure."""

    def orphan_ports(self, kernel: DriverKernel, network: Network, recorded: set[str]) -> list[str]:
        """Host links plugged into the network's device that no endpoint record names
        (RECORDED: the host links the records name); reads the kernel."""

    def desired(self, network: Network, endpoints: Sequence[Endpoint]) -> Desired:
        """What of the ready network and its ready ENDPOINTS lives in the host's namespace
        as netbay made it (links and their state, routes, sysctls): the reconciler puts it
        back when it drifts; pure."""

    def upstream_routes(self, kernel: DriverKernel, network: Network) -> list[Route]:
        """Routes a router upstream of the host needs to reach the network's containers
        (ipvlan L3: each subnet via the host's address on the parent); usually none."""

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        """The endpoint record as this driver will make it (its host-side link name, MAC),
        from the engine's default; pure."""

    def container_routes(self, network: Network, endpoint: Endpoint) -> list[Route]:
        """The routes attach gives the endpoint's link in the container, beyond its own
        subnet's (the default route when the endpoint has a gateway); pure."""

    def attach(
        self,
        kernel: DriverKernel,
        network: Network,
        endpoint: Endpoint,
        netns: Path,
        default_route: bool,
    ) -> None: ...

    def detach(
        self, kernel: DriverKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        """Remove the endpoint's links; NETNS is the container's (None: it has none left)."""


@dataclass(frozen=True)
class GlobalOptions:
    """What `network create -o ...` of a cluster-wide network puts in its global record."""

    options: Mapping[str, str]
    block_size: int  # each node's block of the network's subnet is a /block_size
    block_size6: int = 64  # each node's v6 block of the network's subnet6 is a /block_size6


class ClusterDriver(Driver, Protocol):
    """A driver of cluster-wide networks (caps.cluster): what the cluster agent asks of it to
    make a global record and, on each node, the local record of its share."""

    user_options: frozenset[str]  # what `-o` may set

    def global_options(
        self, given: Mapping[str, str], subnet: IPv4Network | None
    ) -> GlobalOptions:
        """GIVEN checked (raises ConfigError), before etcd is asked."""

    def share_options(
        self, pool: IPv4Network, vni: int, options: Mapping[str, str], underlay_mtu: int,
        pool6: IPv6Network | None = None,
    ) -> Mapping[str, str]:
        """The local record's options of this node's share, from the global record's (with
        OPT_POOL6 when the network has an IPv6 subnet, POOL6)."""


def gateway_route(endpoint: Endpoint) -> list[Route]:
    """The default route of each family via the endpoint's gateway of that family, if it has
    one: IPv4's (0.0.0.0/0) first, then IPv6's (::/0)."""
    routes: list[Route] = []
    if endpoint.gateway is not None:
        routes.append((DEFAULT_ROUTE, endpoint.gateway))
    if endpoint.gateway6 is not None:
        routes.append((DEFAULT_ROUTE6, endpoint.gateway6))
    return routes


def network_record(spec: NetworkSpec, network_id: str, driver: str, **fields: Any) -> Network:
    """The record `validate` returns: the spec's own fields, and FIELDS the driver decided
    (options, device, mtu, internal...)."""
    base: dict[str, Any] = {
        "subnets": spec.subnets, "internal": spec.internal, "attachable": spec.attachable,
        "options": dict(spec.options), "labels": dict(spec.labels),
    }
    base.update(fields)
    return Network(id=network_id, name=spec.name, driver=driver, created="", **base)


def parse_bool(field: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(field, value, "expected true or false")


def parse_int(field: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(field, value, "expected a whole number") from None
    if not low <= number <= high:
        raise ConfigError(field, value, f"out of range {low}-{high}")
    return number


E = TypeVar("E", bound=enum.Enum)


def parse_choice(kind: type[E], field: str, value: str) -> E:
    """VALUE as a member of the enum KIND (by value), else a ConfigError naming FIELD."""
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(str(member.value) for member in kind)
        raise ConfigError(field, value, f"expected one of {known}") from None


def check_known_options(options: Mapping[str, str], known: frozenset[str], driver: str) -> None:
    for key in options:
        if key not in known:
            raise ConfigError("opt", key, f"unknown option for driver {driver}")


class NoKernelObjects:
    """Verbs of a driver that makes nothing in the kernel for the network itself (host and
    none modes, address-only networks): each is a no-op, and nothing can be missing."""

    runtime: RuntimeOptions | None = None

    def claim(self, kernel: DriverKernel, network: Network) -> Network:
        return network

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        return network

    def setup(self, kernel: DriverKernel, network: Network) -> Network:
        return network

    def restore(self, kernel: DriverKernel, network: Network) -> Network:
        return network

    def teardown(self, kernel: DriverKernel, network: Network) -> None:
        return None

    def audit(self, network: Network, links: set[str]) -> list[str]:
        return []

    def orphan_ports(self, kernel: DriverKernel, network: Network, recorded: set[str]) -> list[str]:
        return []

    def desired(self, network: Network, endpoints: Sequence[Endpoint]) -> Desired:
        return Desired()

    def upstream_routes(self, kernel: DriverKernel, network: Network) -> list[Route]:
        return []

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        return endpoint

    def container_routes(self, network: Network, endpoint: Endpoint) -> list[Route]:
        return []  # netbay makes no link in the container to route through

    def detach(
        self, kernel: DriverKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        return None
