"""Garbage collection from netbay's own record: finish or undo what a crash interrupted.

A record whose state is not READY and whose owner process is gone was caught mid-operation.
Undoing is always safe because every step is idempotent and removal works from the record.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import _linux
from ..drivers.parent import PARENT_DRIVERS, host_link_addresses, shim_name
from ..model import CREATING, READY, REMOVING, Container, Network
from .containers import ContainerOps


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


class RepairOps(ContainerOps):
    @staticmethod
    def _abandoned(state: str, owner: str) -> bool:
        return state in (CREATING, REMOVING) and not _linux.owner_alive(owner)

    def gc(self) -> GCReport:
        report = GCReport()
        with self.kernel.lock:
            networks = {n.id: n for n in self.store.networks()}
            for container in self.store.containers():
                if self._abandoned(container.state, container.owner):
                    self._destroy_container(container)
                    report.containers.append(container.name)
            for endpoint in self.store.endpoints():
                if self._abandoned(endpoint.state, endpoint.owner):
                    network = networks.get(endpoint.network_id)
                    if network is not None:
                        self._drop_endpoint(network, endpoint)
                    else:
                        self.store.delete_endpoint(endpoint.id)
                    report.endpoints.append(endpoint.host_ifname or endpoint.id[:12])
            for network in networks.values():
                abandoned = self._abandoned(network.state, network.owner)
                if abandoned and not self.store.endpoint_count(network.id):
                    self._drop_network(network)
                    report.networks.append(network.name)
            report.orphan_links = self._remove_orphan_ports()
            self._remove_orphan_container_dirs()
        return report

    def _remove_orphan_ports(self) -> list[str]:
        """Ports on netbay-made bridges that no endpoint record names (a veth whose record
        was lost): they belong to netbay's own device, so they are ours to remove."""
        recorded = {e.host_ifname for e in self.store.endpoints() if e.host_ifname}
        removed = []
        for network in self.store.networks():
            if network.driver != "bridge" or not network.device_created or not network.device:
                continue
            for port in self.kernel.bridge_ports(network.device) - recorded:
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
        for network in self.store.networks():
            if network.driver == "bridge" and network.device not in links:
                problems.append(f"network {network.name}: bridge {network.device} missing")
            if network.driver in PARENT_DRIVERS and network.state == READY:
                problems += self._audit_parent_network(network, links)
        recorded = {e.host_ifname for e in self.store.endpoints()}
        for network in self.store.networks():
            if network.driver == "bridge" and network.device in links and network.device:
                for port in self.kernel.bridge_ports(network.device) - recorded:
                    problems.append(f"orphan port {port} on {network.device}")
        return problems

    @staticmethod
    def _audit_parent_network(network: Network, links: set[str]) -> list[str]:
        problems = []
        if network.device not in links:
            problems.append(f"network {network.name}: parent {network.device} missing")
        if host_link_addresses(network) and shim_name(network.id) not in links:
            problems.append(f"network {network.name}: host link {shim_name(network.id)} missing")
        return problems

    def is_running(self, container: Container) -> bool:
        return container.state == "running"
