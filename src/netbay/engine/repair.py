"""Garbage collection from netbay's own record: finish or undo what a crash interrupted.

A record whose state is not READY and whose owner process is gone was caught mid-operation.
Undoing is always safe because every step is idempotent and removal works from the record.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import _linux
from ..drivers import get_driver
from ..model import CREATING, READY, REMOVING
from ..paths import Paths
from ..store.base import Store
from .containers import Containers
from .endpoints import Endpoints
from .kernel import Kernel
from .networks import Networks, device_wanted
from .runtime_networks import RuntimeNetworks
from .sandbox_ports import forget_unmade
from .sandboxes import SANDBOX


@dataclass
class GCReport:
    endpoints: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    orphan_links: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "Endpoints": self.endpoints,
            "Containers": self.containers,
            "Networks": self.networks,
            "OrphanLinks": self.orphan_links,
        }


@dataclass(frozen=True, eq=False)
class Collector:
    """gc (finish or undo what a crash interrupted) and audit, from the record."""

    paths: Paths
    store: Store
    kernel: Kernel
    networks: Networks
    endpoints: Endpoints
    containers: Containers
    runtime_networks: RuntimeNetworks
    # whether the process an owner token names still runs
    alive: Callable[[str], bool] = _linux.owner_alive

    def _abandoned(self, state: str, owner: str) -> bool:
        return state in (CREATING, REMOVING) and not self.alive(owner)

    def gc(self) -> GCReport:
        report = GCReport()
        with self.kernel.lock:
            self._collect_interrupted(report)
            report.orphan_links = self._remove_orphan_ports()
            self._remove_orphan_container_dirs()
            self._collect_sandboxes(report)
        return report

    def _collect_interrupted(self, report: GCReport) -> None:
        networks = {n.id: n for n in self.store.networks()}
        for container in self.store.containers():
            if self._abandoned(container.state, container.owner):
                self.containers.destroy(container)
                report.containers.append(container.name)
        for endpoint in self.store.endpoints():
            if self._abandoned(endpoint.state, endpoint.owner):
                network = networks.get(endpoint.network_id)
                if network is not None:
                    self.endpoints.drop(network, endpoint)
                else:
                    self.store.delete_endpoint(endpoint.id)
                report.endpoints.append(endpoint.host_ifname or endpoint.id[:12])
        for network in networks.values():
            abandoned = self._abandoned(network.state, network.owner)
            if abandoned and not self.store.endpoint_count(network.id):
                self.networks.drop(network)
                report.networks.append(network.name)

    def _collect_sandboxes(self, report: GCReport) -> None:
        """Sandboxes left without endpoints (an attach interrupted by a crash) or whose
        namespace the runtime removed without DEL (their leases and ports would otherwise
        stay taken), attachments recorded but never made (engine/sandbox_ports.py), runtime
        networks left without users."""
        for container in self.store.containers():
            if "external_id" not in container.config or container.state != SANDBOX:
                continue
            gone = container.netns is not None and not Path(container.netns).exists()
            if gone or not self.store.endpoints(container_id=container.id):
                self.containers.destroy(container)
                report.containers.append(container.name)
                continue
            firewall = self.endpoints.firewall
            for ifname in forget_unmade(self.store, firewall, container, self.alive):
                report.endpoints.append(f"{container.name} {ifname}")
        for network in self.store.networks():
            if network.state == READY and self.runtime_networks.release(network):
                report.networks.append(network.name)

    def _remove_orphan_ports(self) -> list[str]:
        """Links plugged into netbay-made devices that no endpoint record names (a veth whose
        record was lost): they belong to netbay's own device, so they are ours to remove."""
        recorded = {e.host_ifname for e in self.store.endpoints() if e.host_ifname}
        removed = []
        for network in self.store.networks():
            if not network.device_created:
                continue
            for port in get_driver(network.driver).orphan_ports(self.kernel, network, recorded):
                self.kernel.remove_link(port)
                removed.append(port)
        return removed

    def _remove_orphan_container_dirs(self) -> None:
        known = {c.id for c in self.store.containers()}
        if self.paths.containers.is_dir():
            for directory in self.paths.containers.iterdir():
                if directory.name not in known:
                    shutil.rmtree(directory, ignore_errors=True)

    def audit(self) -> list[str]:
        """Where the record and the kernel disagree (empty when they agree)."""
        problems = []
        links = self.kernel.link_names()
        for endpoint in self.store.endpoints():
            if endpoint.state != READY:
                problems.append(f"endpoint {endpoint.id[:12]} is {endpoint.state}")
            elif endpoint.host_ifname and endpoint.host_ifname not in links:
                problems.append(f"endpoint {endpoint.id[:12]}: {endpoint.host_ifname} missing")
        for container in self.store.containers():
            if container.netns and not Path(container.netns).exists():
                problems.append(f"container {container.name}: netns {container.netns} missing")
        networks = self.store.networks()
        for network in networks:
            if network.state == READY and not device_wanted(network):
                continue  # no device of its own now (the default bridge before it is used)
            problems += get_driver(network.driver).audit(network, links)
        recorded = {e.host_ifname for e in self.store.endpoints() if e.host_ifname}
        for network in networks:
            if network.device in links:
                orphans = get_driver(network.driver).orphan_ports(self.kernel, network, recorded)
                problems += [f"orphan port {port} on {network.device}" for port in orphans]
        return problems
