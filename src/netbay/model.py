"""Plain records: what the user asked for (specs) and what netbay made (records).

Addresses are ipaddress objects throughout; wire formats (Docker JSON, CLI JSON) live in
the daemon and CLI, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import MappingProxyType

EMPTY: Mapping[str, str] = MappingProxyType({})
CLUSTER_POOL = "netbay.cluster.pool"  # option of a global network's local record: its pool

# Record states. An object whose state is not READY was caught mid-operation by a crash
# if its owner process is gone; gc repairs it from the record.
CREATING = "creating"
READY = "ready"
REMOVING = "removing"
SANDBOX = "external"  # a runtime's container (CNI, podman), ready: the runtime runs it


@dataclass(frozen=True)
class SubnetConfig:
    """One IPAM pool of a network (Docker's IPAM.Config entry)."""

    subnet: IPv4Network
    gateway: IPv4Address | None = None
    ip_range: IPv4Network | None = None
    aux_addresses: Mapping[str, IPv4Address] = field(default_factory=dict)


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
    def scope(self) -> str:
        """Docker's: "global" for a cluster-wide network (this node's share holds the pool
        every node's block comes from), else "local"."""
        return "global" if CLUSTER_POOL in self.options else "local"


@dataclass(frozen=True)
class Endpoint:
    """A container's interface on a network; the address is its IPAM lease."""

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


@dataclass(frozen=True)
class AttachRequest:
    """Attach a container to a network, optionally with a fixed address."""

    network: str
    ip: IPv4Address | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    command: tuple[str, ...]
    name: str | None = None
    hostname: str | None = None
    networks: tuple[AttachRequest, ...] = (AttachRequest("bridge"),)
    dns: tuple[IPv4Address, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, IPv4Address], ...] = ()
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
