"""The reconciler's model of this host (reconcile/session.py's Model): the record's desired
state against the kernel's, and the verbs that put netbay's objects back.

Desired, from the record: every ready network whose device is wanted now (the default
bridge's only while it has containers) asks its driver (`desired`: links, routes, sysctls),
with its ready endpoints; the engine adds what it sets itself: hairpin on a published
port's target, netbay's nftables tables, and the MAC each device netbay re-makes had (the
record does not hold a bridge's MAC; the containers' ARP caches do). The containers' own
side (the address of their interface) is compared too, and only reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from pathlib import Path
from typing import Any

from ..drivers import capabilities, find_driver, get_driver
from ..errors import NetbayError
from ..model import READY, REMOVING, Container, Endpoint, IPNetwork, Network
from ..plan.ports import container_ports
from ..plan.routed import BlockRoute
from ..reconcile.compare import Drift, compare
from ..reconcile.ledger import Ledger
from ..reconcile.session import PassResult, run_pass
from ..reconcile.state import Desired, Observed, WantedRoute, WantedSysctl, Watched
from ..store.base import Store
from .firewall import Firewall, hairpins
from .kernel import Kernel
from .networks import Networks

log = logging.getLogger("netbay.reconcile")
CONTAINER = "container"  # the kind of a drift on the container's side: reported only


@dataclass(eq=False)
class Reconcile:
    store: Store
    kernel: Kernel
    firewall: Firewall
    networks: Networks
    clock: Callable[[], float] = time.monotonic
    ledger: Ledger = field(default_factory=Ledger)
    _macs: dict[str, str] = field(default_factory=dict)  # of the devices netbay re-makes
    _watched: Watched = field(default_factory=Watched)
    _host_links: frozenset[str] = frozenset()  # as the last comparison saw them
    # one pass (or audit) at a time: the ledger and the learned MACs are shared
    _passing: threading.Lock = field(default_factory=threading.Lock)

    @property
    def lock(self) -> AbstractContextManager[Any]:
        return self.kernel.lock

    # --- the comparison -------------------------------------------------------------
    def desired(self) -> Desired:
        networks = {n.id: n for n in self.store.networks() if n.state == READY}
        endpoints = [e for e in self.store.endpoints()
                     if e.state == READY and e.network_id in networks]
        desired = Desired(firewall=True)
        for network in networks.values():
            driver = find_driver(network.driver)
            # a network with no device of its own (routed) wants its share whenever ready
            wanted = network.device is None or self.networks.device_wanted(network)
            if driver is not None and wanted:
                mine = [e for e in endpoints if e.network_id == network.id]
                desired += driver.desired(network, mine)
        return desired.with_hairpin(self._hairpin_ports(networks, endpoints)).with_macs(
            self._macs)

    def _hairpin_ports(self, networks: dict[str, Network], endpoints: list[Endpoint]) -> set[str]:
        """The host ends of published ports' targets (attach sets hairpin on them)."""
        ports = set()
        for container in self.store.containers():
            if container.state == REMOVING or not container_ports(container):
                continue
            mine = [e for e in endpoints if e.container_id == container.id]
            targets = {t for p in self.firewall.port_rules(container, mine, networks)
                       for t in (p.target, p.target6) if t is not None}
            ports |= {e.host_ifname for e in mine
                      if e.host_ifname and any(a.ip in targets for a in e.addresses)
                      and e.network_id in networks and hairpins(networks[e.network_id])}
        return ports

    def drifts(self) -> list[Drift]:
        desired = self.desired()
        observed = replace(self.kernel.observe(desired.sysctl_keys()),
                           firewall=self.firewall.intact())
        self._learn_macs(desired, observed)
        self._watched = Watched.of(desired, observed)
        self._host_links = frozenset(observed.links)
        return compare(desired, observed)

    def _learn_macs(self, desired: Desired, observed: Observed) -> None:
        """The first MAC seen of each device netbay re-makes is the one it keeps."""
        macs = {}
        for wanted in desired.links:
            link = observed.links.get(wanted.name)
            mac = self._macs.get(wanted.name) or (link.mac if link else None)
            if wanted.remake and mac:
                macs[wanted.name] = mac
        self._macs = macs

    def container_drifts(self) -> list[Drift]:
        """The containers' side of their endpoints: an address the container changed, an
        interface it removed. Theirs to change: reported, never reverted. (A veth whose
        host end is gone has lost both ends: the host side's drift says so.)"""
        networks = {n.id: n for n in self.store.networks() if n.state == READY}
        containers = {c.id: c for c in self.store.containers() if c.netns}
        out = []
        for endpoint in self.store.endpoints():
            network = networks.get(endpoint.network_id)
            container = containers.get(endpoint.container_id)
            if (endpoint.state == READY and network is not None and container is not None
                    and capabilities(network.driver).makes_links
                    and endpoint.host_ifname in (None, *self._host_links)):
                out += self._container_side(container, endpoint)
        return out

    def _container_side(self, container: Container, endpoint: Endpoint) -> list[Drift]:
        if endpoint.address is None:
            return []
        subject, who = f"{container.name} {endpoint.ifname}", f"container {container.name}"
        try:
            found = self.kernel.addresses_in(Path(str(container.netns)), endpoint.ifname)
        except NetbayError:
            return []  # its namespace is gone: the audit says so
        if found is None:
            return [Drift(CONTAINER, subject, f"{who}: {endpoint.ifname} missing (the "
                          "container's side: reported, not repaired)")]
        if endpoint.address in found:
            return []
        has = ", ".join(map(str, sorted(found))) or "no address"
        return [Drift(CONTAINER, subject, f"{who}: {endpoint.ifname} has {has}, netbay gave "
                      f"it {endpoint.address} (the container's own side: reported, not "
                      "reverted)")]

    # --- the repairs (reconcile.fixes.RepairTarget) ---------------------------------
    def remake_network(self, network_id: str) -> None:
        network = self.store.find_network(network_id)
        if network is None or network.state != READY or not self.networks.device_wanted(network):
            return  # the comparison under the lock just wanted it: a guard, not a path
        get_driver(network.driver).restore(self.kernel, network)

    def set_link(
        self, name: str, *, master: str | None = None, up: bool = False,
        mtu: int | None = None, mac: str | None = None,
    ) -> None:
        self.kernel.set_link(name, master=master, up=up, mtu=mtu, mac=mac)

    def set_hairpin(self, port: str) -> None:
        self.kernel.set_hairpin(port)

    def add_address(self, name: str, address: IPv4Interface | IPv6Interface) -> None:
        self.kernel.add_address(name, address)

    def add_route(self, route: WantedRoute) -> None:
        self.kernel.add_route(route)

    def hold_blackhole(self, destination: IPNetwork) -> None:
        self.kernel.hold_block(BlockRoute(destination))

    def hold_local_address(self, address: IPv4Address) -> None:
        self.kernel.hold_local_address(address)

    def write_sysctl(self, sysctl: WantedSysctl) -> None:
        self.kernel.write_sysctl(sysctl)

    def rebuild_firewall(self) -> None:
        self.firewall.rebuild()

    # --- passes, and what they tell --------------------------------------------------
    def run(self, *, full: bool = False) -> PassResult:
        """One pass; a FULL one also compares the containers' side, and logs each drift
        that is reported but not repaired once (when first seen)."""
        with self._passing:
            result = run_pass(self, self.ledger, self.clock)
            if full:
                reports = [d.what for d in result.waiting if d.fix is None]
                reports += [d.what for d in self.container_drifts()]
                for line in self.ledger.new_reports(reports):
                    log.warning("drift reported, not repaired: %s", line)
        return result

    def findings(self) -> list[str]:
        """What is not as recorded now, one line each, and what keeps drifting."""
        with self._passing:
            lines = [d.what for d in self.drifts() + self.container_drifts()]
            return lines + [str(f) for f in self.ledger.flapping(self.clock())]

    def status(self) -> dict[str, object]:
        with self._passing:
            return self.ledger.status(self.clock())

    def watched(self) -> Watched:
        return self._watched
