"""Network lifecycle: create (validate all, record, make, mark ready), remove, prune, and
the built-in networks and every network's kernel objects restored at start-up.

The default bridge (`bridge`, device netbay0) is recorded at start-up but has a device only
while containers use it: made with its first endpoint, removed with its last. A host where
netbay only serves podman, CNI or Docker as their backend then holds no 172.17.0.0/16 route
that would make podman refuse that range or a Docker engine move docker0 away. Until it is
used, its subnet is provisional: an explicit subnet of a new network may take it, and the
first use moves it off whatever the host or another network took meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Protocol

from .. import faults
from ..clock import now_rfc3339
from ..drivers import get_driver
from ..drivers.base import Route
from ..errors import (
    ConfigError,
    ConflictError,
    InUseError,
    NetbayError,
    NotFoundError,
)
from ..ids import new_id, valid_name
from ..ipam.allocator import check_no_overlap, complete, has_free_address
from ..ipam.pools import overlaps_any
from ..model import CREATING, READY, REMOVING, IPNetwork, Network, NetworkSpec
from ..plan import firewall as fw
from ..plan.naming import DEFAULT_BRIDGE_DEVICE
from ..store.base import Store
from .blocks import with_room
from .default_bridge import BridgeDefaults, default_bridge_subnets, follow_defaults
from .families import families, with_default_subnets
from .firewall import Firewall, network_rules
from .kernel import Kernel

log = logging.getLogger("netbay.networks")
_MODE_NETWORKS = {"host": "host", "none": "null"}  # Docker's built-in modes: name -> driver
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"


def is_default_bridge(network: Network) -> bool:
    return network.builtin and network.options.get(OPT_DEFAULT_BRIDGE) == "true"


def device_wanted(network: Network) -> bool:
    """Whether the network's device should exist now, by this record: a ready network's
    recorded device (the default bridge records one only while it has endpoints)."""
    return network.state == READY and network.device is not None


def _provisional(network: Network) -> bool:
    """The default bridge before its first use: its subnet is not held yet."""
    return is_default_bridge(network) and network.device is None


class ClusterNetworks(Protocol):
    def local_share(self, name: str) -> tuple[NetworkSpec, str] | None:
        """The local network (spec, id) this node needs for the cluster-wide network NAME,
        with this node's block leased for it; None if the cluster has no such network."""

    def share_made(self, network: Network) -> None:
        """NETWORK, a share local_share asked for, exists now: its data plane is due."""

    def more_block(self, network: Network, version: int = 4) -> IPNetwork | None:
        """Another block of family VERSION for NETWORK, this node's share whose blocks of
        it are full, claimed now; None if NETWORK is not this source's."""


@dataclass(frozen=True, eq=False)
class Networks:
    """Network lifecycle on the record, the kernel (through the drivers) and the firewall."""

    store: Store
    kernel: Kernel
    firewall: Firewall
    owner: str
    # where networks not in the record may come from (the cluster agent, once joined)
    cluster: list[ClusterNetworks] = field(default_factory=list)
    bridge_defaults: BridgeDefaults = BridgeDefaults()  # netbayd's --ipv6, --fixed-cidr-v6

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

    def usable(self, ref: str) -> Network:
        """The network REF for a container to join: a local one, else this node's share of
        a cluster-wide network of that name, made now (its block leased) if it has none."""
        try:
            return self._with_room(self.get(ref))
        except NotFoundError:
            for source in self.cluster:
                wanted = source.local_share(ref)
                if wanted is None:
                    continue
                with self.kernel.lock:
                    found = self.named(ref)
                    if found is not None:
                        return found
                    made = self.create(*wanted)
                source.share_made(made)
                return made
            raise

    def _with_room(self, network: Network) -> Network:
        return with_room(self.store, self.kernel, self.firewall, self.cluster, network)

    def create(self, spec: NetworkSpec, network_id: str | None = None) -> Network:
        """Validate everything, record the network, make its kernel objects, mark it ready.
        NETWORK_ID: the id a cluster-wide network has on every node (default: a new one)."""
        if not valid_name(spec.name):
            raise ConfigError("name", spec.name, "use letters, digits, '_', '.', '-' (max 63)")
        driver = get_driver(spec.driver)
        network = driver.validate(spec, network_id or new_id())
        with self.kernel.lock:
            with self.store.transaction():
                network = driver.claim(
                    self.kernel, self._complete_new_network(network, *families(spec, driver))
                )
                self.store.put_network(network)
            faults.point("network:recorded")
            try:
                network = self._make_objects(network)
            except BaseException:
                self.drop(network)
                raise
            self.store.update_network(
                network.id, state=READY, owner="", device_created=network.device_created
            )
        return dataclasses.replace(network, state=READY, owner="")

    def _complete_new_network(self, network: Network, ipv4: bool, ipv6: bool) -> Network:
        """NETWORK's subnets completed: a family it has without a subnet given gets a free
        one of the default pools (IPv4: Docker's; IPv6: this host's ULA /48)."""
        existing = self.store.networks()
        for other in existing:
            if other.name == network.name:
                raise ConflictError(f"network with name {network.name} already exists")
        subnets = with_default_subnets(
            network.subnets, ipv4, ipv6,
            lambda: [s.subnet for n in existing for s in n.subnets] + self.kernel.taken_networks(),
        )
        completed = tuple(complete(s) for s in subnets)
        # the default bridge's device name is held even while it has no device
        as_used = [
            dataclasses.replace(n, device=DEFAULT_BRIDGE_DEVICE) if _provisional(n) else n
            for n in existing
        ]
        network = get_driver(network.driver).fit(
            dataclasses.replace(network, subnets=completed), as_used
        )
        check_no_overlap(
            network.subnets,
            {n.name: [s.subnet for s in n.subnets] for n in existing if not _provisional(n)},
        )
        return dataclasses.replace(
            network, created=now_rfc3339(), state=CREATING, owner=self.owner
        )

    def drop(self, network: Network) -> None:
        """Undo a network: firewall and kernel objects first, then the record."""
        try:
            self._unmake_objects(self._hand_over_device(network))
        finally:
            self.store.delete_network(network.id)

    def _make_objects(self, network: Network) -> Network:
        """The network's kernel objects and firewall elements; the record with what was made."""
        network = get_driver(network.driver).setup(self.kernel, network)
        rules = network_rules(network)
        if rules is not None:
            self.firewall.change(fw.network_elements(rules), {})
        return network

    def _unmake_objects(self, network: Network) -> None:
        rules = network_rules(network)
        if rules is not None:
            self.firewall.change({}, fw.network_elements(rules))
        get_driver(network.driver).teardown(self.kernel, network)

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
        return has_free_address(network.subnets, self.store.leases(network.id))

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
        """At start-up: Docker's three (`bridge`, `host`, `none`) recorded, every network's
        kernel objects re-made after a reboot or manual deletion, and the default bridge's
        device there only if it has endpoints."""
        with self.kernel.lock:
            with self.store.transaction():
                names = {n.name for n in self.store.networks()}
                if "bridge" not in names:
                    self.store.put_network(self._default_bridge_record())
                else:
                    follow_defaults(self.store, self.bridge_defaults, self.kernel.taken_networks)
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
        if is_default_bridge(network):
            if not self.store.endpoint_count(network.id):
                # a crash between its last endpoint and its removal, or an older netbay's
                self.release_unused_device(network)
                return
            network = self.ensure_device(network)
        made = get_driver(network.driver).restore(self.kernel, network)
        if made.device_created and not network.device_created:
            self.store.update_network(network.id, device_created=True)

    def _default_bridge_record(self) -> Network:
        taken = [s.subnet for n in self.store.networks() for s in n.subnets]
        taken += self.kernel.taken_networks()
        return Network(
            id=new_id(),
            name="bridge",
            driver="bridge",
            created=now_rfc3339(),
            subnets=default_bridge_subnets(self.bridge_defaults, taken),
            builtin=True,
            options={
                OPT_DEFAULT_BRIDGE: "true",
                "com.docker.network.bridge.name": DEFAULT_BRIDGE_DEVICE,
            },
        )

    # --- the default bridge's device -------------------------------------------------
    def device_wanted(self, network: Network) -> bool:
        """Whether NETWORK's device should exist now, as the record says at this moment (the
        default bridge's only while it has endpoints): what a repair may re-make."""
        current = self.store.find_network(network.id)
        return current is not None and device_wanted(current)

    def ensure_device(self, network: Network) -> Network:
        """NETWORK as recorded, with its device: the default bridge's is made at its first
        use (every other network has had its own since it was created)."""
        if not is_default_bridge(network):
            return network
        with self.kernel.lock:
            current = self.store.find_network(network.id)
            if current is None or current.device is not None:
                return current or network
            with self.store.transaction():
                claimed = self._claim_default_bridge(current)
            try:
                made = self._make_objects(claimed)
            except BaseException:
                self._release_device(claimed)
                raise
            if made.device_created and not claimed.device_created:
                self.store.update_network(made.id, device_created=True)
        log.info("default bridge %s (%s) made for its first container", made.device,
                 ", ".join(str(s.subnet) for s in made.subnets))
        return made

    def _claim_default_bridge(self, network: Network) -> Network:
        """The record with its device, noted before the device is made (a crash in between
        still knows what to remove), and its subnet moved off what the host or another
        network took since it was recorded, while no endpoint holds an address in it."""
        taken = [s.subnet for n in self.store.networks() if n.id != network.id
                 for s in n.subnets]
        taken += self.kernel.taken_networks()
        subnets = network.subnets
        if not self.store.endpoint_count(network.id) and any(
            overlaps_any(s.subnet, taken) for s in subnets
        ):
            subnets = default_bridge_subnets(self.bridge_defaults, taken)
        claimed = get_driver(network.driver).claim(
            self.kernel,
            dataclasses.replace(network, device=DEFAULT_BRIDGE_DEVICE, subnets=subnets),
        )
        if subnets == network.subnets:
            self.store.update_network(
                network.id, device=claimed.device, device_created=claimed.device_created
            )
        else:  # subnets are no updatable field: put again (no endpoint refers to it yet)
            self.store.delete_network(network.id)
            self.store.put_network(claimed)
        return claimed

    def release_unused_device(self, network: Network) -> None:
        """The default bridge's device goes with its last endpoint. A failure to remove it
        is logged, not raised (the detach that led here is done); the device stays
        recorded, so the next start-up removes it."""
        if not is_default_bridge(network):
            return
        with self.kernel.lock:
            current = self.store.find_network(network.id)
            if current is None or current.device is None or self.store.endpoint_count(
                current.id
            ):
                return
            try:
                self._release_device(current)
            except NetbayError as exc:
                log.error("default bridge %s kept: %s", current.device, exc)
                return
        log.info("default bridge %s removed: no container uses it", current.device)

    def _release_device(self, network: Network) -> None:
        self._unmake_objects(network)
        self.store.update_network(network.id, device=None, device_created=False)
