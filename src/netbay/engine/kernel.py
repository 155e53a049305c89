"""What the engine needs from the kernel, the nftables context and the conntrack janitor: the
protocols its parts (and the drivers) are written against, so a fake (netbay.testing) can
stand in for each without root. kernel.linux.LinuxKernel is the real kernel."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path
from typing import Any, Protocol

from ..drivers.base import DriverKernel
from ..model import IPAddress, IPNetwork
from ..reconcile.state import Observed, WantedRoute, WantedSysctl


class Kernel(DriverKernel, Protocol):
    """The host's links and the containers' namespaces: what the drivers ask (LOCK, the
    reentrant lock that serialises the changes, bridges, veths), and the engine's own
    steps. Every change the engine and the drivers make goes through one of these."""

    def close(self) -> None: ...
    def link_names(self) -> set[str]: ...
    def taken_networks(self) -> list[IPNetwork]:
        """Subnets the host uses already (its addresses' networks, its routes), of both
        families (IPv6's link-local, multicast and loopback ones left out)."""

    def set_hairpin(self, port: str) -> None: ...

    # the reconciler (reconcile/): a snapshot read without the lock, and its repairs
    def observe(self, sysctls: Iterable[tuple[str, str | None]]) -> Observed:
        """The host namespace as it is, with the values of SYSCTLS ((key, device) pairs)."""

    def set_link(
        self, name: str, *, master: str | None = None, up: bool = False,
        mtu: int | None = None, mac: str | None = None,
    ) -> None: ...
    def add_address(self, name: str, address: IPv4Interface | IPv6Interface) -> None: ...
    def add_route(self, route: WantedRoute) -> None: ...
    def write_sysctl(self, wanted: WantedSysctl) -> None: ...

    # namespaces
    def ensure_netns_dir(self, directory: Path) -> None:
        """The directory the containers' namespaces are pinned in, as a shared mount."""

    def create_netns(self, path: Path) -> None: ...
    def delete_netns(self, path: Path) -> None: ...
    def loopback_up(self, path: Path) -> None:
        """`lo` up in a runtime's namespace."""

    def move_to_host(self, path: Path, ifname: str) -> None:
        """IFNAME moved from the namespace at PATH into netbay's own (a runtime that moves
        the link into its container itself takes it from there: Docker)."""

    def addresses_in(self, path: Path, ifname: str) -> set[IPv4Interface] | None:
        """The addresses of IFNAME in the namespace at PATH; None if it has no IFNAME."""

    def addresses6_in(self, path: Path, ifname: str) -> set[IPv6Interface] | None:
        """addresses_in of IPv6 (link-local ones too); None if it has no IFNAME."""


class Nftables(Protocol):
    """One nftables context: each apply is one transaction (kernel/nft.py)."""

    def apply(self, commands: str) -> None: ...
    def list(self, what: str) -> list[dict[str, Any]]: ...
    def has_chain(self, family: str, table: str, chain: str) -> bool: ...


class Flows(Protocol):
    """Ends the tracked flows of addresses that lost their port mappings, or their endpoint
    (STARTED: the flows the address started too), asynchronously."""

    def forget(self, address: IPAddress, started: bool = False) -> None: ...
    def settle(self, addresses: Iterable[IPAddress]) -> None: ...
    def close(self) -> None: ...
