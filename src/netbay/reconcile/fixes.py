"""The repairs a drift can get, as values (a test compares them), each applied through a
RepairTarget: the engine's part (engine/reconcile.py) on the real kernel or the fakes.

New kinds of state (other hosts' routes, neighbour and FDB entries) add a fix here and a
verb to RepairTarget; the comparison and the loop stay as they are."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from ..model import IPNetwork
from .state import Interface, WantedRoute, WantedSysctl


class RepairTarget(Protocol):
    """Where fixes land. Called with the kernel lock held; each verb changes one thing."""

    def remake_network(self, network_id: str) -> None:
        """Re-make the network's devices as its driver restores them at start-up."""

    def set_link(
        self, name: str, *, master: str | None = None, up: bool = False,
        mtu: int | None = None, mac: str | None = None,
    ) -> None: ...
    def set_hairpin(self, port: str) -> None: ...
    def add_address(self, name: str, address: Interface) -> None: ...
    def add_route(self, route: WantedRoute) -> None: ...
    def hold_blackhole(self, destination: IPNetwork) -> None: ...
    def hold_local_address(self, address: IPv4Address) -> None:
        """ADDRESS/32 on lo, scope host."""

    def write_sysctl(self, sysctl: WantedSysctl) -> None: ...
    def rebuild_firewall(self) -> None: ...


@dataclass(frozen=True)
class RemakeNetwork:
    network_id: str
    done = "re-made the network's devices"

    def apply(self, target: RepairTarget) -> None:
        target.remake_network(self.network_id)


@dataclass(frozen=True)
class SetLink:
    """One attribute of an existing link put back: its bridge, up, its MTU or its MAC."""

    link: str
    master: str | None = None
    up: bool = False
    mtu: int | None = None
    mac: str | None = None

    @property
    def done(self) -> str:
        if self.master is not None:
            return f"put it back on {self.master}"
        if self.mtu is not None:
            return f"set MTU {self.mtu}"
        if self.mac is not None:
            return f"set MAC {self.mac}"
        return "set it up"

    def apply(self, target: RepairTarget) -> None:
        target.set_link(self.link, master=self.master, up=self.up, mtu=self.mtu, mac=self.mac)


@dataclass(frozen=True)
class SetHairpin:
    link: str
    done = "hairpin on"

    def apply(self, target: RepairTarget) -> None:
        target.set_hairpin(self.link)


@dataclass(frozen=True)
class AddAddress:
    link: str
    address: Interface

    @property
    def done(self) -> str:
        return f"added {self.address}"

    def apply(self, target: RepairTarget) -> None:
        target.add_address(self.link, self.address)


@dataclass(frozen=True)
class AddRoute:
    route: WantedRoute
    done = "added it again"

    def apply(self, target: RepairTarget) -> None:
        target.add_route(self.route)


@dataclass(frozen=True)
class HoldBlackhole:
    destination: IPNetwork
    done = "added it again"

    def apply(self, target: RepairTarget) -> None:
        target.hold_blackhole(self.destination)


@dataclass(frozen=True)
class HoldLocalAddress:
    address: IPv4Address

    @property
    def done(self) -> str:
        return f"added {self.address}/32 (scope host)"

    def apply(self, target: RepairTarget) -> None:
        target.hold_local_address(self.address)


@dataclass(frozen=True)
class WriteSysctl:
    sysctl: WantedSysctl

    @property
    def done(self) -> str:
        return f"set it to {self.sysctl.value}"

    def apply(self, target: RepairTarget) -> None:
        target.write_sysctl(self.sysctl)


@dataclass(frozen=True)
class RebuildFirewall:
    done = "rebuilt them from the record"

    def apply(self, target: RepairTarget) -> None:
        target.rebuild_firewall()


Fix = (RemakeNetwork | SetLink | SetHairpin | AddAddress | AddRoute | HoldBlackhole
       | HoldLocalAddress | WriteSysctl | RebuildFirewall)
