"""Plain records: what the user asked for (specs) and what netbay made (records).

Addresses are ipaddress objects throughout; wire formats (Docker JSON, CLI JSON) live in
the daemon and CLI, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from types import MappingProxyType

EMPTY: Mapping[str, str] = MappingProxyType({})
CLUSTER_POOL = "netbay.cluster.pool"  # option of a global network's local record: its pool

# Record states. An object whose state is not READY was caught mid-operation by a crash
# if its owner process is gone; gc repairs it from the record.
CREATING = "creating"
READY = "ready"
REMOVING = "removing"
SANDBOX = "external"  # a runtime's container (CNI, podman), ready: the runtime runs it

# Either family: a network's subnets may be IPv4, IPv6 or both (dual stack)
IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def only_v4(net: IPNetwork) -> IPv4Network:
    """NET as IPv4, for the code of IPv4-only drivers (no caps.ipv6): an IPv6 subnet there is
    refused, naming it."""
    if not isinstance(net, IPv4Network):
        from .errors import ConfigError  # errors imports nothing of netbay's; model is first

        raise ConfigError("subnet", str(net), "IPv6, and this network takes IPv4 only")
    return net


def only_v4_address(address: IPAddress | None) -> IPv4Address | None:
    if address is not None and not isinstance(address, IPv4Address):
        from .errors import ConfigError

        raise ConfigError("gateway", str(address), "IPv6, and this network takes IPv4 only")
    return address


@dataclass(frozen=True)
class SubnetConfig:
    """One IPAM pool of a network (Docker's IPAM.Config entry), of either family; the
    gateway, range and auxiliary addresses are of the subnet's family."""

    subnet: IPNetwork
    gateway: IPAddress | None = None
    ip_range: IPNetwork | None = None
    aux_addresses: Mapping[str, IPAddress] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return self.subnet.version


@dataclass(frozen=True)
class NetworkSpec:
    """A request to create a network, as `network create` or the API gives it."""

    name: str
    driver: str = "bridge"
    subnets: tuple[SubnetConfig, ...] = ()
    internal: bool = False
    attachable: bool = False
    options: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    # Docker's EnableIPv6 / EnableIPv4: a family without a subnet given gets one from the
    # default pools; a family switched off may have none
    ipv6: bool = False
    ipv4: bool = True


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    created: str
    subnets: tuple[SubnetConfig, ...]
    internal: bool = False
    attachable: bool = False
    builtin: bool = False
    options: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    device: str | None = None  # the bridge (or parent) netbay manages for it
    device_created: bool = False  # netbay made the device, so netbay removes it
    mtu: int | None = None
    state: str = READY
    owner: str = ""

    @property
    def subnets4(self) -> tuple[SubnetConfig, ...]:
        return tuple(s for s in self.subnets if s.subnet.version == 4)

    @property
    def subnets6(self) -> tuple[SubnetConfig, ...]:
        return tuple(s for s in self.subnets if s.subnet.version == 6)

    @property
    def ipv6(self) -> bool:
        """Docker's EnableIPv6: the network has an IPv6 subnet."""
        return any(s.subnet.version == 6 for s in self.subnets)

    @property
    def ipv4(self) -> bool:
        """Docker's EnableIPv4 (False: an IPv6-only network)."""
        return any(s.subnet.version == 4 for s in self.subnets) or not self.ipv6

    @property
    def scope(self) -> str:
        """Docker's: "global" for a cluster-wide network (this node's share holds the pool
        every node's block comes from), else "local"."""
        return "global" if CLUSTER_POOL in self.options else "local"


@dataclass(frozen=True)
class Endpoint:
    """A container's interface on a network; the addresses are its IPAM leases (ADDRESS of
    the network's IPv4 subnets, ADDRESS6 of its IPv6 ones), each family with its gateway
    when this endpoint carries the container's default route of that family."""

    id: str
    network_id: str
    container_id: str
    ifname: str
    host_ifname: str | None
    mac: str | None
    address: IPv4Interface | None
    gateway: IPv4Address | None
    aliases: tuple[str, ...] = ()
    state: str = READY
    owner: str = ""
    address6: IPv6Interface | None = None
    gateway6: IPv6Address | None = None

    @property
    def addresses(self) -> tuple[IPv4Interface | IPv6Interface, ...]:
        """Both families' addresses, IPv4 first."""
        return tuple(a for a in (self.address, self.address6) if a is not None)


@dataclass(frozen=True)
class AttachRequest:
    """Attach a container to a network, optionally with fixed addresses."""

    network: str
    ip: IPv4Address | None = None
    aliases: tuple[str, ...] = ()
    ip6: IPv6Address | None = None


@dataclass(frozen=True)
class ContainerSpec:
    command: tuple[str, ...]
    name: str | None = None
    hostname: str | None = None
    networks: tuple[AttachRequest, ...] = (AttachRequest("bridge"),)
    dns: tuple[IPAddress, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, IPAddress], ...] = ()
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    publish: tuple[str, ...] = ()  # `-p` specs: [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    hostname: str
    command: tuple[str, ...]
    created: str
    netns: str | None  # None: shares the host's network namespace
    network_mode: str  # "bridge"-like (own netns), "host" or "none"
    pid: int = 0
    pid_start: int = 0  # /proc/PID/stat start time, so a reused PID is not mistaken for ours
    exit_code: int | None = None
    state: str = CREATING
    owner: str = ""
    config: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    # A runtime's namespace as it was when attached, so that a path naming another namespace
    # now (a reused /proc/PID, a pin made again) is not taken for it: os.stat of the path
    # (st_dev, st_ino), and for a /proc/PID path that process's start time. 0: not noted
    netns_dev: int = 0
    netns_ino: int = 0
    netns_pid_start: int = 0
