"""Network lifecycle: create (validate all, record, make, mark ready), remove, prune, and
the built-in networks and every network's kernel objects restored at start-up."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from ipaddress import IPv4Network

from .. import faults
from ..clock import now_rfc3339
from ..drivers import get_driver
from ..drivers.base import Route
from ..errors import ConfigError, ConflictError, InUseError, IPAMExhaustedError, NotFoundError
from ..ids import new_id, valid_name
from ..ipam.allocator import check_no_overlap, complete, pick_address
from ..ipam.pools import DEFAULT_BRIDGE_POOL, choose_subnet, overlaps_any
from ..model import CREATING, READY, REMOVING, Network, NetworkSpec, SubnetConfig
from ..plan import firewall as fw
from ..plan.naming import DEFAULT_BRIDGE_DEVICE
from ..store.base import Store
from .firewall import Firewall, network_rules
from .kernel import Kernel

log = logging.getLogger("netbay.networks")
_MODE_NETWORKS = {"host": "host", "none": "null"}  # Docker's built-in modes: name -> driver


@dataclass(frozen=True, eq=False)
class Networks:
    """Network lifecycle on the record, the kernel (through the drivers) and the firewall."""

    store: Store
    kernel: Kernel
    firewall: Firewall
    owner: str

    def all(self) -> list[Network]:
        return self.store.networks()

    def get(self, ref: str) -> Network:
        network = self.store.find_network(ref)
        if network is None or network.state == REMOVING:
            raise NotFoundError(f"network {ref} not found")
        return network

    def named(self, name: str) -> Network | None:
        """Exact name only (a runtime's name is never an id prefix)."""
        try:
            found = self.store.find_network(name)
        except ConflictError:  # an ambiguous id prefix: then it is no network's name
            return None
        if found is not None and found.name == name:
            return found
        return None

    def create(self, spec: NetworkSpec) -> Network:
        """Validate everything, record the network, make its kernel objects, mark it ready."""
        if not valid_name(spec.name):
            raise ConfigError("name", spec.name, "use letters, digits, '_', '.', '-' (max 63)")
        driver = get_driver(spec.driver)
        network = driver.validate(spec, new_id())
        with self.kernel.lock:
            with self.store.transaction():
                network = driver.claim(self.kernel, self._complete_new_network(network))
                self.store.put_network(network)
            faults.point("network:recorded")
            try:
                network = driver.setup(self.kernel, network)
                rules = network_rules(network)
                if rules is not None:
                    self.firewall.change(fw.network_elements(rules), {})
            except BaseException:
                self.drop(network)
                raise
            self.store.update_network(
                network.id, state=READY, owner="", device_created=network.device_created
            )
        return dataclasses.replace(network, state=READY, owner="")

    def _complete_new_network(self, network: Network) -> Network:
        existing = self.store.networks()
        for other in existing:
            if other.name == network.name:
                raise ConflictError(f"network with name {network.name} already exists")
        subnets = network.subnets
        if not subnets:
            taken = [s.subnet for n in existing for s in n.subnets]
            taken += self.kernel.taken_networks()
            subnets = (SubnetConfig(choose_subnet(taken)),)
        completed = tuple(complete(s) for s in subnets)
        network = get_driver(network.driver).fit(
            dataclasses.replace(network, subnets=completed), existing
        )
        check_no_overlap(
            network.subnets, {n.name: [s.subnet for s in n.subnets] for n in existing}
        )
        return dataclasses.replace(
            network, created=now_rfc3339(), state=CREATING, owner=self.owner
        )

    def drop(self, network: Network) -> None:
        """Undo a network: firewall and kernel objects first, then the record."""
        try:
            rules = network_rules(network)
            if rules is not None:
                self.firewall.change({}, fw.network_elements(rules))
            network = self._hand_over_device(network)
            get_driver(network.driver).teardown(self.kernel, network)
        finally:
            self.store.delete_network(network.id)

    def _hand_over_device(self, network: Network) -> Network:
        """A device netbay made for this network that another network also uses (a VLAN
        sub-interface as the parent of two networks) stays: the other network's record
        becomes its owner, in one transaction with this record giving it up."""
        if not (network.device and network.device_created):
            return network
        with self.store.transaction():
            heir = next(
                (
                    n for n in self.store.networks()
                    if n.id != network.id and n.device == network.device
                ),
                None,
            )
            if heir is None:
                return network
            self.store.update_network(heir.id, device_created=True)
            self.store.update_network(network.id, device_created=False)
        return dataclasses.replace(network, device_created=False)

    def upstream_routes(self, network: Network) -> list[Route]:
        """Routes a router upstream of the host needs to reach the network's containers
        (ipvlan L3: each subnet via the host's address on the parent); usually none."""
        if network.state != READY:
            return []
        return get_driver(network.driver).upstream_routes(self.kernel, network)

    def has_free_address(self, network: Network) -> bool:
        try:
            pick_address(network.subnets, self.store.used_addresses(network.id))
        except IPAMExhaustedError:
            return False
        return True

    def remove(self, ref: str) -> None:
        with self.kernel.lock:
            with self.store.transaction():
                network = self.get(ref)
                if network.builtin:
                    raise InUseError(
                        f"{network.name} is a pre-defined network and cannot be removed"
                    )
                if self.store.endpoint_count(network.id):
                    raise InUseError(
                        f"error while removing network: network {network.name} id "
                        f"{network.id} has active endpoints"
                    )
                self.store.update_network(network.id, state=REMOVING, owner=self.owner)
            faults.point("network:removing")
            self.drop(network)

    def prune(self) -> list[str]:
        removed = []
        for network in self.store.networks():
            if network.builtin or network.state != READY:
                continue
            try:
                self.remove(network.id)
            except (InUseError, NotFoundError):
                continue
            removed.append(network.name)
        return removed

    # --- built-ins and start-up ------------------------------------------------------
    def restore(self) -> None:
        """At start-up: Docker's three (`bridge` with device netbay0, `host`, `none`) recorded,
        and every network's kernel objects re-made after a reboot or manual deletion."""
        with self.kernel.lock:
            with self.store.transaction():
                names = {n.name for n in self.store.networks()}
                if "bridge" not in names:
                    self.store.put_network(self._default_bridge_record())
                for name, driver in _MODE_NETWORKS.items():
                    if name not in names:
                        self.store.put_network(
                            Network(
                                id=new_id(),
                                name=name,
                                driver=driver,
                                created=now_rfc3339(),
                                subnets=(),
                                builtin=True,
                            )
                        )
            for network in self.store.networks():
                if network.state == READY:
                    self._restore(network)
    def _restore(self, network: Network) -> None:
        made = get_driver(network.driver).restore(self.kernel, network)
        if made.device_created and not network.device_created:
            self.store.update_network(network.id, device_created=True)

    def _default_bridge_record(self) -> Network:
        taken = [s.subnet for n in self.store.networks() for s in n.subnets]
        taken += self.kernel.taken_networks()
        subnet: IPv4Network = DEFAULT_BRIDGE_POOL
        if overlaps_any(subnet, taken):
            subnet = choose_subnet(taken)
        return Network(
            id=new_id(),
            name="bridge",
            driver="bridge",
            created=now_rfc3339(),
            subnets=(complete(SubnetConfig(subnet)),),
            builtin=True,
            options={
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.name": DEFAULT_BRIDGE_DEVICE,
            },
            device=DEFAULT_BRIDGE_DEVICE,
        )
