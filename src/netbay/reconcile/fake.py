"""The reconciler's kernel verbs on netbay.testing's FakeKernel (its base class, kept here so
that module stays small): the snapshot as the kernel would show the fake's links, and the
repairs. Steps are recorded and fail on request like the FakeKernel's own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Interface
from typing import Protocol

from ..model import IPNetwork
from .state import (
    LOOPBACK,
    Interface,
    LinkState,
    Observed,
    RouteState,
    WantedRoute,
    WantedSysctl,
)


class _Link(Protocol):
    name: str
    kind: str
    up: bool
    master: str | None
    mtu: int | None
    mac: str | None
    addresses: list[Interface]
    hairpin: bool
    route_localnet: bool


class FakeReconcilingKernel:
    links: Mapping[str, _Link]
    forwarding: bool
    forwarding6: bool  # net.ipv6.conf.all.forwarding
    routes: set[RouteState]  # made by add_route
    unrouted: set[RouteState]  # an address's subnet route, removed
    blackholes: set[IPNetwork]  # the blocks held (hold_block), of both families
    local_addresses: set[IPv4Address]  # the /32s on lo (hold_local_address)

    def _step(self, step: str) -> None:
        raise NotImplementedError  # FakeKernel records the step, and fails it on request

    def observe(self, sysctls: Iterable[tuple[str, str | None]]) -> Observed:
        """Each up link's addresses route their subnet (unless remove_route took it), as
        the kernel's do, besides the routes add_route made; lo holds the local addresses."""
        connected = {
            RouteState(a.network, link.name)
            for link in self.links.values() if link.up for a in link.addresses
            if a.network.prefixlen < a.max_prefixlen  # a lone IPv6 address routes nothing
        }
        return Observed(
            links={
                name: LinkState(name, index, link.kind, link.master, link.up, link.mtu,
                                link.mac, link.hairpin)
                for index, (name, link) in enumerate(self.links.items(), start=2)
            },
            addresses={
                LOOPBACK: frozenset(IPv4Interface((a, 32)) for a in self.local_addresses),
                **{name: frozenset(link.addresses) for name, link in self.links.items()},
            },
            routes=frozenset((connected - self.unrouted) | self.routes),
            sysctls={where: self._sysctl(*where) for where in sysctls},
            blackholes=frozenset(self.blackholes),
        )

    def _sysctl(self, key: str, device: str | None) -> str | None:
        """ip_forward (both families'), and route_localnet of a device: the ones the fakes
        keep."""
        if device is None:
            on = {"net.ipv4.ip_forward": self.forwarding,
                  "net.ipv6.conf.all.forwarding": self.forwarding6}.get(key)
            return None if on is None else ("1" if on else "0")
        link = self.links.get(device)
        return None if link is None else ("1" if link.route_localnet else "0")

    def remove_route(self, route: RouteState) -> None:
        """As `ip route del` would."""
        self.routes.discard(route)
        self.unrouted.add(route)

    def set_link(
        self, name: str, *, master: str | None = None, up: bool = False,
        mtu: int | None = None, mac: str | None = None,
    ) -> None:
        self._step("set_link")
        link = self.links[name]
        link.master = master or link.master
        link.up = up or link.up
        link.mtu = mtu or link.mtu
        link.mac = mac or link.mac

    def add_address(self, name: str, address: Interface) -> None:
        self._step("add_address")
        self.links[name].addresses.append(address)

    def add_route(self, route: WantedRoute) -> None:
        self._step("add_route")
        found = RouteState(route.destination, route.device, route.gateway)
        self.unrouted.discard(found)
        self.routes.add(found)

    def write_sysctl(self, wanted: WantedSysctl) -> None:
        self._step("write_sysctl")
        if wanted.device is not None:
            self.links[wanted.device].route_localnet = wanted.value == "1"
        elif wanted.key == "net.ipv6.conf.all.forwarding":
            self.forwarding6 = wanted.value == "1"
        else:
            self.forwarding = wanted.value == "1"
