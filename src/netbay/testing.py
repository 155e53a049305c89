"""Fakes of the engine's outside world, so its logic runs without root, a kernel or nftables:

    from netbay.testing import fake_host
    fake = fake_host(tmp_path)            # a Host on MemoryStore, FakeKernel, FakeNft, FakeFlows
    fake.host.create_network(NetworkSpec(name="asgard"))
    fake.kernel.links["nb-..."].kind      # "bridge"
    fake.nft.elements("inet", "bridges")  # {'"nb-..."'}

FakeKernel keeps the host's links and the namespaces in dicts, and fails a named step on
request (`fail("attach_veth", errno.EEXIST)`); FakeNft applies netbay's nft text to sets of
elements, all or nothing like nftables; FakeFlows records the addresses whose flows would
be ended. Namespace files are real (empty) files, so the engine's checks of a namespace's
path see them.
"""

from __future__ import annotations

import copy
import errno
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface
from pathlib import Path
from typing import Any

from .engine import Host
from .errors import KernelError
from .model import IPAddress, IPNetwork
from .paths import Paths
from .plan.routed import BlockRoute, RoutedEndpoint
from .reconcile.fake import FakeReconcilingKernel
from .reconcile.state import Interface, RouteState
from .store.memory import MemoryStore
from .testing_nft import FakeNft

MAX_BRIDGE_PORTS = 1023  # as the kernel numbers bridge ports


@dataclass
class FakeLink:
    name: str
    kind: str  # "bridge", "veth", "loopback"
    up: bool = True
    master: str | None = None  # the bridge a port is plugged into
    peer: tuple[str, str] | None = None  # a veth's other end: (namespace path, name)
    mac: str | None = None
    mtu: int | None = None
    addresses: list[Interface] = field(default_factory=list)  # IPv4's first
    gateway: IPv4Address | None = None  # a default route through this link
    gateway6: IPv6Address | None = None  # the IPv6 default route through this link
    hairpin: bool = False
    route_localnet: bool = False


@dataclass
class FakeNamespace:
    links: dict[str, FakeLink] = field(
        default_factory=lambda: {"lo": FakeLink("lo", "loopback", up=False)}
    )

    @property
    def gateway(self) -> IPv4Address | None:
        """The default route's (it goes with its link)."""
        return next((link.gateway for link in self.links.values() if link.gateway), None)

    @property
    def gateway6(self) -> IPv6Address | None:
        """The IPv6 default route's."""
        return next((link.gateway6 for link in self.links.values() if link.gateway6), None)


class FakeKernel(FakeReconcilingKernel):
    """The engine's Kernel (and the drivers'), in memory. `calls` lists every change asked
    for, in order; `fail(step)` makes the next call of that step raise KernelError. Steps
    are the method names, and `attach_veth:configure` (after the pair exists, so a failed
    attach leaves the pair to the engine to remove, as the kernel would)."""

    def __init__(
        self, *, taken: Iterable[IPNetwork] = (), max_ports: int = MAX_BRIDGE_PORTS
    ) -> None:
        self.lock = threading.RLock()
        self.links: dict[str, FakeLink] = {}
        self.namespaces: dict[str, FakeNamespace] = {}
        self.taken = list(taken)  # subnets the host uses outside netbay
        self.max_ports = max_ports
        self.forwarding = False
        self.forwarding6 = False
        self.routes: set[RouteState] = set()  # made by add_route
        self.unrouted: set[RouteState] = set()  # an address's subnet route, removed
        self.neighbours: dict[tuple[str, IPv4Address], str] = {}  # (bridge, address) -> MAC
        self.host_routes: dict[IPv4Network, str] = {}  # a routed container's /32 -> its veth
        self.blackholes: set[IPNetwork] = set()  # the routed blocks this node holds
        self.local_addresses: set[IPv4Address] = set()  # the /32s held on lo
        self.closed = False
        self.calls: list[str] = []
        self._failures: dict[str, int] = {}

    def fail(self, step: str, error: int = errno.EIO) -> None:
        """The next STEP raises KernelError with errno ERROR."""
        self._failures[step] = error

    def _step(self, step: str) -> None:
        self.calls.append(step)
        error = self._failures.pop(step, None)
        if error is not None:
            raise KernelError(f"injected failure at {step}", error)

    def close(self) -> None:
        self.closed = True

    # --- networks --------------------------------------------------------------------
    def ensure_bridge(
        self, key: str, name: str, mtu: int | None, addresses: Iterable[Interface]
    ) -> bool:
        self._step("ensure_bridge")
        link = self.links.get(name)
        if link is not None and link.kind != "bridge":
            raise KernelError(f"{name} exists and is not a bridge", errno.EEXIST)
        created = link is None
        if link is None:
            link = self.links[name] = FakeLink(name, "bridge", mtu=mtu)
        link.addresses += [a for a in addresses if a not in link.addresses]
        return created

    def forget_bridge(self, key: str) -> None:
        """Nothing cached here."""

    def enable_forwarding(self, version: int = 4) -> None:
        if version == 6:
            self.forwarding6 = True
        else:
            self.forwarding = True

    def allow_localnet(self, device: str) -> None:
        self.links[device].route_localnet = True

    def remove_link(self, name: str) -> bool:
        self._step("remove_link")
        link = self.links.pop(name, None)
        if link is None:
            return False
        if link.peer is not None:  # a veth pair goes as one
            namespace = self.namespaces.get(link.peer[0])
            if namespace is not None:
                namespace.links.pop(link.peer[1], None)
            elif link.peer[0] == "":  # both ends in the host's namespace
                self.links.pop(link.peer[1], None)
        for port in self.links.values():
            if port.master == name:
                port.master = None
        return True

    def link_exists(self, name: str) -> bool:
        return name in self.links

    def link_names(self) -> set[str]:
        return set(self.links)

    def bridge_ports(self, bridge: str) -> set[str]:
        return {link.name for link in self.links.values() if link.master == bridge}

    def taken_networks(self) -> list[IPNetwork]:
        own: list[IPNetwork] = [a.network for link in self.links.values() for a in link.addresses]
        return [*self.taken, *own]

    def learn_neighbour(
        self, bridge_key: str, bridge: str, address: IPv4Address, mac: str
    ) -> None:
        self.neighbours[(bridge, address)] = mac

    # --- endpoints -------------------------------------------------------------------
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
        self._step("attach_veth")
        namespace = self._namespace(netns)
        if bridge not in self.links:
            raise KernelError(f"bridge {bridge} does not exist", errno.ENODEV)
        if len(self.bridge_ports(bridge)) >= self.max_ports:
            raise KernelError("Exchange full", errno.EXFULL)
        if host_ifname in self.links or ifname in namespace.links:
            raise KernelError("File exists", errno.EEXIST)
        self.links[host_ifname] = FakeLink(
            host_ifname, "veth", master=bridge, peer=(str(netns), ifname), mtu=mtu
        )
        inside = namespace.links[ifname] = FakeLink(
            ifname, "veth", peer=("", host_ifname), mac=mac, mtu=mtu
        )
        self._step("attach_veth:configure")
        inside.addresses = [a for a in (address, address6) if a is not None]
        inside.gateway, inside.gateway6 = gateway, gateway6

    def attach_routed(self, endpoint: RoutedEndpoint, netns: Path) -> None:
        self._step("attach_routed")
        namespace = self._namespace(netns)
        if endpoint.host_ifname in self.links or endpoint.ifname in namespace.links:
            raise KernelError("File exists", errno.EEXIST)
        self.links[endpoint.host_ifname] = FakeLink(
            endpoint.host_ifname, "veth", peer=(str(netns), endpoint.ifname), mtu=endpoint.mtu,
            mac=endpoint.host_mac,
        )
        inside = namespace.links[endpoint.ifname] = FakeLink(
            endpoint.ifname, "veth", peer=("", endpoint.host_ifname), mac=endpoint.mac,
            mtu=endpoint.mtu,
        )
        self._step("attach_routed:configure")
        inside.addresses = [endpoint.address]
        inside.gateway = next((r.gateway for r in endpoint.container_routes
                               if r.destination.prefixlen == 0), None)
        self.host_routes[endpoint.host_route.destination] = endpoint.host_ifname

    def detach_routed(self, host_ifname: str) -> bool:
        for destination, device in list(self.host_routes.items()):
            if device == host_ifname:
                del self.host_routes[destination]
        return self.remove_link(host_ifname)

    def hold_block(self, held: BlockRoute) -> bool:
        self._step("hold_block")
        if held.block in self.blackholes:
            return False
        self.blackholes.add(held.block)
        return True

    def release_block(self, held: BlockRoute) -> bool:
        if held.block not in self.blackholes:
            return False
        self.blackholes.discard(held.block)
        return True

    def hold_local_address(self, address: IPv4Address) -> None:
        self._step("hold_local_address")
        self.local_addresses.add(address)

    def release_local_address(self, address: IPv4Address) -> bool:
        held = address in self.local_addresses
        self.local_addresses.discard(address)
        return held

    def set_hairpin(self, port: str) -> None:
        self.links[port].hairpin = True

    # --- namespaces ------------------------------------------------------------------
    def runtime_netns(self, path: Path) -> Path:
        """A namespace a runtime made (CNI, podman), pinned at PATH."""
        path.touch()
        self.namespaces[str(path)] = FakeNamespace()
        return path

    def _namespace(self, path: Path) -> FakeNamespace:
        namespace = self.namespaces.get(str(path))
        if namespace is None:
            raise KernelError(f"network namespace {path} does not exist", errno.ENOENT)
        return namespace

    def ensure_netns_dir(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    def create_netns(self, path: Path) -> None:
        self._step("create_netns")
        if path.exists():
            raise KernelError(f"cannot create network namespace {path}: exists", errno.EEXIST)
        path.touch()
        self.namespaces[str(path)] = FakeNamespace()
        self.namespaces[str(path)].links["lo"].up = True

    def delete_netns(self, path: Path) -> None:
        """As the kernel does: the namespace's veth ends go, and so their host ends."""
        self._step("delete_netns")
        namespace = self.namespaces.pop(str(path), None)
        path.unlink(missing_ok=True)
        for link in namespace.links.values() if namespace else ():
            if link.peer is not None:
                self.links.pop(link.peer[1], None)

    def loopback_up(self, path: Path) -> None:
        self._namespace(path).links["lo"].up = True

    def move_to_host(self, path: Path, ifname: str) -> None:
        """As the kernel moves a link: its addresses and routes stay behind."""
        self._step("move_to_host")
        namespace = self._namespace(path)
        if ifname not in namespace.links:
            raise KernelError(f"{ifname} does not exist", errno.ENODEV)
        if ifname in self.links:
            raise KernelError("File exists", errno.EEXIST)
        link = self.links[ifname] = namespace.links.pop(ifname)
        link.addresses, link.gateway, link.gateway6, link.up = [], None, None, False
        if link.peer is not None and link.peer[1] in self.links:
            self.links[link.peer[1]].peer = ("", ifname)

    def addresses_in(self, path: Path, ifname: str) -> set[IPv4Interface] | None:
        """IFNAME's IPv4 addresses, as the kernel's lists them."""
        namespace = self.namespaces.get(str(path))
        if namespace is None or ifname not in namespace.links:
            return None
        return {a for a in namespace.links[ifname].addresses if isinstance(a, IPv4Interface)}

    def addresses6_in(self, path: Path, ifname: str) -> set[IPv6Interface] | None:
        namespace = self.namespaces.get(str(path))
        if namespace is None or ifname not in namespace.links:
            return None
        return {a for a in namespace.links[ifname].addresses if isinstance(a, IPv6Interface)}


class FakeFlows:
    """Records the addresses whose tracked flows the engine asks to end."""

    def __init__(self) -> None:
        self.forgotten: list[IPAddress] = []
        self.departed: list[IPAddress] = []  # forgotten with the flows they started
        self.settled: list[IPAddress] = []  # handed out again: their waiting flows ended
        self.closed = False

    def forget(self, address: IPAddress, started: bool = False) -> None:
        self.forgotten.append(address)
        if started:
            self.departed.append(address)

    def settle(self, addresses: Iterable[IPAddress]) -> None:
        self.settled.extend(addresses)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeHost:
    host: Host
    store: MemoryStore
    kernel: FakeKernel
    nft: FakeNft
    flows: FakeFlows

    def snapshot(self) -> tuple[Any, ...]:
        """What a refused or failed request must leave as it was: the record, the host's
        links and namespaces, the nft tables."""
        return (
            list(self.store.dump()),
            copy.deepcopy(self.kernel.links),
            copy.deepcopy(self.kernel.namespaces),
            copy.deepcopy(self.nft.tables),
        )


def fake_paths(root: Path) -> Paths:
    return Paths(root=root / "state", socket=root / "netbay.sock", netns_dir=root / "netns")


def fake_host(
    root: Path, *, kernel: FakeKernel | None = None, owner: str | None = None
) -> FakeHost:
    """A Host with its state under ROOT, on a MemoryStore and the fakes."""
    store, nft, flows = MemoryStore(), FakeNft(), FakeFlows()
    kernel = kernel or FakeKernel()
    host = Host(fake_paths(root), store=store, kernel=kernel, nft=nft, flows=flows, owner=owner)
    return FakeHost(host, store, kernel, nft, flows)
