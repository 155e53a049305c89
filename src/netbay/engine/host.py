"""Host: netbay's engine on one machine. The typed library API that every entry point calls.

A thin facade over the engine's parts, each a class with its dependencies passed in:

    Firewall(store, nft, flows)                       netbay's nft tables from the record
    Networks(store, kernel, firewall, owner)          network lifecycle, start-up restore
    Endpoints(store, kernel, firewall, owner, networks)
                                                      attach/detach (the hot path)
    EtcFiles(paths, store)                            a container's /etc files
    Containers(paths, store, kernel, networks, endpoints, files, owner)
    RuntimeNetworks(store, kernel, networks)          networks a runtime defines
    Sandboxes(store, kernel, firewall, endpoints, containers, runtime_networks, owner)
    Collector(paths, store, kernel, networks, endpoints, containers, runtime_networks)
    Reconcile(store, kernel, firewall, networks)     the record's desired state vs the kernel
    VanishedSandboxes(store, kernel, containers, runtime_networks, owner, grace)
                                                      sandboxes whose namespace is gone

Every method that changes the kernel takes the kernel's (reentrant) lock itself: callers
never do.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from .. import _linux
from ..drivers import Route
from ..errors import NetbayError
from ..kernel.conntrack import FlowJanitor
from ..kernel.linux import LinuxKernel
from ..kernel.nft import Nft
from ..model import Container, ContainerSpec, Endpoint, Network, NetworkSpec
from ..paths import Paths
from ..plan import firewall as fw
from ..plan import ports as plan_ports
from ..reconcile.session import PassResult
from ..reconcile.state import Watched
from ..store.base import Store
from ..store.sqlite import SQLiteStore
from . import sandbox_ports
from .containers import Containers, local_port_range
from .default_bridge import BridgeDefaults
from .endpoints import Endpoints
from .etc_files import EtcFiles
from .firewall import Firewall
from .kernel import Flows, Kernel, Nftables
from .networks import ClusterNetworks, Networks
from .reconcile import Reconcile
from .records import container_endpoints
from .repair import Collector, GCReport
from .runtime_networks import RuntimeNetworks
from .sandboxes import RuntimeAttachment, Sandboxes, SandboxRequest
from .static_addresses import STATIC, note_static
from .vanished import VanishedSandboxes, vanished_grace_from_env


class Host:
    """Networks, containers and endpoints of this host.

    Thread-safe: kernel changes are serialised by one lock; the store serialises writes
    across threads and processes. Defaults: the SQLite record under PATHS, the host's
    kernel, one libnftables context, a conntrack janitor; tests pass fakes
    (netbay.testing) for any of them.
    """

    def __init__(
        self,
        paths: Paths | None = None,
        *,
        store: Store | None = None,
        kernel: Kernel | None = None,
        nft: Nftables | None = None,
        flows: Flows | None = None,
        owner: str | None = None,
        vanished_grace: float | None = None,
        clock: Callable[[], float] = time.monotonic,  # the reconciler's (its backoff)
        bridge_defaults: BridgeDefaults | None = None,  # netbayd's --ipv6, --fixed-cidr-v6
    ) -> None:
        self.paths = paths or Paths.from_env()
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.containers.mkdir(exist_ok=True)
        self.kernel: Kernel = kernel if kernel is not None else LinuxKernel()
        self.kernel.ensure_netns_dir(self.paths.netns_dir)
        self.store: Store = store if store is not None else SQLiteStore(self.paths.db)
        self.owner = owner or _linux.owner_token()
        self._firewall = Firewall(
            self.store,
            nft if nft is not None else Nft(),
            flows if flows is not None else FlowJanitor(),
        )
        defaults = bridge_defaults or BridgeDefaults()
        self._networks = Networks(self.store, self.kernel, self._firewall, self.owner, [], defaults)
        self._endpoints = Endpoints(self.store, self.kernel, self._firewall, self.owner,
                                    self._networks)
        self._containers = Containers(
            self.paths, self.store, self.kernel, self._networks, self._endpoints,
            EtcFiles(self.paths, self.store), self.owner,
        )
        self._runtime_networks = RuntimeNetworks(self.store, self.kernel, self._networks)
        self._sandboxes = Sandboxes(
            self.store, self.kernel, self._firewall, self._endpoints, self._containers,
            self._runtime_networks, self.owner,
        )
        self._collector = Collector(
            self.paths, self.store, self.kernel, self._networks, self._endpoints,
            self._containers, self._runtime_networks,
        )
        self._vanished = VanishedSandboxes(
            self.store, self.kernel, self._containers, self._runtime_networks, self.owner,
            vanished_grace_from_env() if vanished_grace is None else vanished_grace,
        )
        self._reconcile = Reconcile(self.store, self.kernel, self._firewall, self._networks,
                                    clock)
        self._networks.restore()
        self.firewall_rebuild()

    def close(self) -> None:
        self._firewall.flows.close()
        self.kernel.close()
        self.store.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the record, read ------------------------------------------------------------
    def endpoints(
        self, network_id: str | None = None, container_id: str | None = None
    ) -> list[Endpoint]:
        """Endpoint records in any state."""
        return self.store.endpoints(network_id, container_id)

    def find_network(self, ref: str) -> Network | None:
        """The record of a network by id, id prefix or name, in any state."""
        return self.store.find_network(ref)

    def find_container(self, ref: str) -> Container | None:
        """The record of a container by id, id prefix or name, in any state."""
        return self.store.find_container(ref)

    def container_named(self, name: str) -> Container | None:
        return self.store.container_named(name)

    # --- networks ----------------------------------------------------------------------
    def networks(self) -> list[Network]:
        return self._networks.all()

    def network(self, ref: str) -> Network:
        return self._networks.get(ref)

    def usable_network(self, ref: str) -> Network:
        """REF for a container to join: a cluster-wide network's share made now if need be."""
        return self._networks.usable(ref)

    def network_named(self, name: str) -> Network | None:
        return self._networks.named(name)

    def members(self, network: Network) -> list[tuple[Container, Endpoint | None]]:
        return self._containers.members(network)

    def add_cluster_networks(self, source: ClusterNetworks) -> None:
        """Networks not in the record that containers may join (the cluster agent's)."""
        self._networks.cluster.append(source)

    def create_network(self, spec: NetworkSpec) -> Network:
        return self._networks.create(spec)

    def remove_network(self, ref: str) -> None:
        self._networks.remove(ref)

    def prune_networks(self) -> list[str]:
        return self._networks.prune()

    def upstream_routes(self, network: Network) -> list[Route]:
        return self._networks.upstream_routes(network)

    def has_free_address(self, network: Network) -> bool:
        return self._networks.has_free_address(network)

    def device_wanted(self, network: Network) -> bool:
        """Whether the network's device should exist now, as recorded (the default bridge's
        only while containers use it): a repair re-makes only such devices."""
        return self._networks.device_wanted(network)

    def ensure_runtime_network(self, spec: NetworkSpec, runtime: str) -> Network:
        return self._runtime_networks.ensure(spec, runtime)

    def release_runtime_network(self, network: Network) -> bool:
        return self._runtime_networks.release(network)

    # --- containers --------------------------------------------------------------------
    def containers(self) -> list[Container]:
        return self._containers.all()

    def container(self, ref: str) -> Container:
        return self._containers.get(ref)

    def container_endpoints(self, container: Container) -> list[tuple[Network, Endpoint]]:
        return container_endpoints(self.store, container)

    def create_container(self, spec: ContainerSpec) -> Container:
        return self._containers.create(spec)

    def _note_static(self, container_id: str, network_ref: str, ip: IPv4Address | None,
                     ip6: IPv6Address | None) -> None:
        note_static(self.store, container_id, self._networks.get(network_ref).id, ip, ip6)

    def start_container(self, ref: str) -> tuple[Container, subprocess.Popen[bytes]]:
        return self._containers.start(ref)

    def mark_started(self, ref: str, pid: int) -> Container:
        return self._containers.mark_started(ref, pid)

    def mark_exited(self, ref: str, exit_code: int | None) -> None:
        self._containers.mark_exited(ref, exit_code)

    def stop_container(self, ref: str, timeout: float = 10.0) -> Container:
        return self._containers.stop(ref, timeout)

    def remove_container(self, ref: str, force: bool = False) -> None:
        self._containers.remove(ref, force)

    def connect(
        self,
        network_ref: str,
        container_ref: str,
        ip: IPv4Address | None = None,
        aliases: tuple[str, ...] = (),
        ip6: IPv6Address | None = None,
    ) -> Endpoint:
        endpoint = self._containers.connect(network_ref, container_ref, ip, aliases, ip6=ip6)
        if ip is not None or ip6 is not None:
            self._note_static(endpoint.container_id, network_ref, ip, ip6)
        return endpoint

    def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        self._containers.disconnect(network_ref, container_ref, force)
        container = self.store.find_container(container_ref)
        if container is not None and container.config.get(STATIC):
            self._note_static(container.id, network_ref, None, None)

    # --- endpoints ---------------------------------------------------------------------
    def attach_endpoint(
        self,
        container: Container,
        network: Network,
        ip: IPv4Address | None = None,
        aliases: tuple[str, ...] = (),
        *,
        ifname: str | None = None,
        mac: str | None = None,
        ip6: IPv6Address | None = None,
    ) -> Endpoint:
        return self._endpoints.attach(container, network, ip, aliases, ifname=ifname, mac=mac,
                                      ip6=ip6)

    def detach_endpoint(self, network: Network, endpoint: Endpoint) -> None:
        self._endpoints.detach(network, endpoint)

    # --- sandboxes (a runtime's containers) --------------------------------------------
    def loopback_up(self, netns: Path) -> None:
        self.kernel.loopback_up(netns)

    def sandbox(self, external_id: str) -> Container | None:
        return self._sandboxes.get(external_id)

    def sandbox_attachment(
        self, external_id: str, ifname: str
    ) -> tuple[Container, Network, Endpoint] | None:
        return self._sandboxes.attachment(external_id, ifname)

    def attachment_tag(self, sandbox: Container, ifname: str) -> str | None:
        return self._sandboxes.attachment_tag(sandbox, ifname)

    def attach_sandbox(
        self, network: Network, request: SandboxRequest
    ) -> tuple[Container, Endpoint]:
        return self._sandboxes.attach(network, request)

    def detach_sandbox(self, external_id: str, ifname: str, tag: str | None = None) -> bool:
        return self._sandboxes.detach(external_id, ifname, tag)

    def publish_sandbox_ports(
        self, external_id: str, ifname: str, specs: Sequence[plan_ports.PublishSpec]
    ) -> list[plan_ports.Mapping]:
        """What the attachment (EXTERNAL_ID, IFNAME) publishes, replaced by SPECS (a runtime
        that asks after the attach); the mappings chosen."""
        with self.kernel.lock:
            chosen = sandbox_ports.publish(self.store, self._firewall, external_id, ifname,
                                           specs, local_port_range())
            attached = self._sandboxes.attachment(external_id, ifname)
            if chosen and attached is not None:
                sandbox_ports.hairpin(self.kernel, *attached[1:])
            return chosen

    def unpublish_sandbox_ports(self, external_id: str, ifname: str) -> bool:
        with self.kernel.lock:
            return sandbox_ports.unpublish(self.store, self._firewall, external_id, ifname)

    def move_to_host(self, netns: Path, ifname: str) -> None:
        """IFNAME moved from the namespace at NETNS into netbay's own, for a runtime that
        moves it into its container itself (Docker)."""
        self.kernel.move_to_host(netns, ifname)

    def remove_host_link(self, name: str) -> bool:
        """A link a runtime handed back into netbay's namespace (Docker) removed; True if it
        was there."""
        with self.kernel.lock:
            return self.kernel.remove_link(name)

    def setup_sandbox(
        self, runtime: str, wanted: Sequence[RuntimeAttachment]
    ) -> list[tuple[Network, Endpoint]]:
        return self._sandboxes.setup(runtime, wanted)

    def teardown_sandbox(
        self, external_id: str, attachments: Iterable[tuple[str, str]]
    ) -> list[tuple[str, NetbayError]]:
        return self._sandboxes.teardown(external_id, attachments)

    def sandbox_problems(self, network: Network, endpoint: Endpoint, netns: Path) -> list[str]:
        return self._sandboxes.problems(network, endpoint, netns)

    def release_vanished_sandboxes(self) -> list[str]:
        """Release the sandboxes whose namespace has been gone for the grace period (a
        runtime that never sends DEL); their names. Cheap: call it every second."""
        return self._vanished.release()

    def collect_sandboxes(
        self, runtime: str, tag: str, valid: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[Exception]]:
        return self._sandboxes.collect(runtime, tag, valid)

    # --- repair ------------------------------------------------------------------------
    def gc(self) -> GCReport:
        return self._collector.gc()

    def audit(self) -> list[str]:
        """Where the record and the kernel disagree, and what keeps drifting (empty: they
        agree)."""
        problems = self._collector.audit()
        return problems + [f for f in self._reconcile.findings() if f not in problems]

    def reconcile(self, *, full: bool = False) -> PassResult:
        """Compare the kernel with the record and put back what drifted (reconcile/)."""
        return self._reconcile.run(full=full)

    def reconcile_status(self) -> dict[str, object]:
        """The reconciler's counters: repairs and failures per kind, what is flapping."""
        return self._reconcile.status()

    def reconcile_watched(self) -> Watched:
        return self._reconcile.watched()

    # --- firewall ----------------------------------------------------------------------
    def firewall_rebuild(self) -> None:
        with self.kernel.lock:
            self._firewall.rebuild()

    def firewall_intact(self) -> bool:
        return self._firewall.intact()

    def restore_firewall(self) -> bool:
        """Rebuild netbay's tables if they are gone (flushed by someone); True if they were."""
        with self.kernel.lock:
            if self._firewall.intact():
                return False
            self._firewall.rebuild()
            return True

    def port_rules(
        self, container: Container, endpoints: Iterable[Endpoint], networks: dict[str, Network]
    ) -> list[fw.PortRules]:
        return self._firewall.port_rules(container, endpoints, networks)

    def firewall_listing(self, what: str) -> list[dict[str, Any]]:
        return self._firewall.listing(what)

    def firewall_apply(self, commands: str) -> None:
        self._firewall.apply(commands)

