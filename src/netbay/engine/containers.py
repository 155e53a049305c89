"""Container lifecycle: create (record, netns, endpoints, /etc files), start, stop, remove,
connect and disconnect."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from .. import _linux, faults
from ..clock import now_rfc3339
from ..drivers import capabilities, get_driver
from ..errors import ConfigError, ConflictError, NotFoundError
from ..ids import new_id, random_name, valid_name
from ..model import (
    CREATING,
    READY,
    REMOVING,
    AttachRequest,
    Container,
    ContainerSpec,
    Endpoint,
    Network,
)
from ..paths import Paths
from ..plan.ports import (
    PublishSpec,
    allocate,
    check_families,
    container_ports,
    parse_publish,
    record_ports,
)
from ..runtime import process
from ..store.base import Store
from .endpoints import Asked, Endpoints, check_aliases, pick_leases
from .etc_files import ETC_FILES, EtcFiles
from .firewall import can_publish, publish_families
from .kernel import Kernel
from .networks import Networks
from .records import container_endpoints
from .static_addresses import STATIC, asked_of

CREATED, RUNNING, EXITED = "created", "running", "exited"
# (network, static address, aliases) of each network a container joins
Joined = list[tuple[Network, AttachRequest]]


def local_port_range() -> tuple[int, int]:
    """Where automatically chosen host ports come from, as for the host's own sockets."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _check_names(spec: ContainerSpec) -> tuple[str, str]:
    """(name, hostname) of a new container."""
    if not spec.command:
        raise ConfigError("command", "", "a command to run is required")
    name = spec.name or random_name()
    if not valid_name(name):
        raise ConfigError("name", name, "use letters, digits, '_', '.', '-' (max 63)")
    hostname = spec.hostname or ""
    if len(hostname) > 63:
        raise ConfigError("hostname", hostname, "longer than 63 characters")
    return name, hostname


def _check_publish(spec: ContainerSpec, networks: Joined) -> list[PublishSpec]:
    publish = [parse_publish(p) for p in spec.publish]
    if publish and not any(can_publish(n) for n, _ in networks):
        reason = "needs a bridge network that is not internal"
        direct = next((n for n, _ in networks if capabilities(n.driver).parent_link), None)
        if direct is not None:
            reason += (
                f" ({direct.driver} network {direct.name} publishes no ports: its "
                "containers are reached at their own addresses)"
            )
        raise ConfigError("publish", spec.publish[0], reason)
    primary = next((n for n, _ in networks if can_publish(n)), None)
    if primary is not None:
        check_families(spec.publish, publish, publish_families(primary))
    return publish


def _new_record(
    spec: ContainerSpec, name: str, hostname: str, mode: str, paths: Paths, owner: str
) -> Container:
    container_id = new_id()
    return Container(
        id=container_id,
        name=name,
        hostname=hostname or (container_id[:12] if mode != "host" else ""),
        command=spec.command,
        created=now_rfc3339(),
        netns=None if mode == "host" else str(paths.netns_path(container_id)),
        network_mode=mode,
        state=CREATING,
        owner=owner,
        config={
            "dns": [str(a) for a in spec.dns],
            "dns_search": list(spec.dns_search),
            "dns_options": list(spec.dns_options),
            "extra_hosts": [[h, str(a)] for h, a in spec.extra_hosts],
            "env": dict(spec.env),
            "workdir": spec.workdir,
            "network": spec.networks[0].network if spec.networks else "none",
        },
    )


@dataclass(frozen=True, eq=False)
class Containers:
    """netbay's own containers (and, through Sandboxes, the runtimes' records)."""

    paths: Paths
    store: Store
    kernel: Kernel
    networks: Networks
    endpoints: Endpoints
    files: EtcFiles
    owner: str

    # --- queries ---------------------------------------------------------------------
    def all(self) -> list[Container]:
        return [self._refresh(c) for c in self.store.containers()]

    def get(self, ref: str) -> Container:
        container = self.store.find_container(ref)
        if container is None or container.state in (CREATING, REMOVING):
            raise NotFoundError(f"no such container: {ref}")
        return self._refresh(container)

    def _refresh(self, container: Container) -> Container:
        """A running container whose process is gone has exited."""
        if container.state == RUNNING and not _linux.process_alive(
            container.pid, container.pid_start
        ):
            return dataclasses.replace(container, state=EXITED)
        return container

    def members(self, network: Network) -> list[tuple[Container, Endpoint | None]]:
        """The containers on NETWORK with their endpoint there; those of a network mode
        (host, none) with none."""
        containers = {c.id: c for c in self.all()}
        members: list[tuple[Container, Endpoint | None]] = [
            (containers[e.container_id], e)
            for e in self.store.endpoints(network_id=network.id)
            if e.container_id in containers and e.state == READY
        ]
        mode = get_driver(network.driver).mode
        if network.builtin and mode != "private":
            members += [(c, None) for c in containers.values() if c.network_mode == mode]
        return members

    # --- create ----------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> Container:
        name, hostname = _check_names(spec)
        networks, mode = self._resolve_networks(spec)
        for network, request in networks:  # refused before anything is made
            check_aliases(request.aliases)
            self.endpoints.check_dns_names(name, network, request.aliases)
        publish = _check_publish(spec, networks)
        record = _new_record(spec, name, hostname, mode, self.paths, self.owner)
        static = asked_of((n.id, r.ip, r.ip6) for n, r in networks)
        if static:  # what it asked for, in the same write (inspect's IPAMConfig)
            record = dataclasses.replace(record, config={**record.config, STATIC: static})
        container = self._record(record, publish)
        faults.point("container:recorded")
        try:
            self._make(container, networks)
        except BaseException:
            self.destroy(container)
            raise
        self.store.update_container(container.id, state=CREATED, owner="")
        return dataclasses.replace(container, state=CREATED, owner="")

    def _record(self, container: Container, publish: list[PublishSpec]) -> Container:
        """The new record with its host ports chosen, under the name and port checks."""
        with self.store.transaction():
            if self.store.container_named(container.name) is not None:
                raise ConflictError(f"the container name {container.name!r} is already in use")
            if publish:
                taken = [m for c in self.store.containers() for m in container_ports(c)]
                mappings = allocate(publish, taken, local_port_range())
                config = dict(container.config)
                config["ports"] = record_ports(mappings)
                container = dataclasses.replace(container, config=config)
            self.store.put_container(container)
        return container

    def _resolve_networks(self, spec: ContainerSpec) -> tuple[Joined, str]:
        """Check every requested network and static address before anything is made."""
        resolved = []
        seen = set()
        for request in spec.networks:
            network = self.networks.usable(request.network)
            if network.id in seen:
                raise ConfigError("network", request.network, "given twice")
            seen.add(network.id)
            mode = get_driver(network.driver).mode
            if mode != "private" and len(spec.networks) > 1:
                raise ConfigError(
                    "network", request.network, "the host and none modes cannot be combined"
                )
            if mode != "private":
                for name, asked in (("ip", request.ip), ("ip6", request.ip6)):
                    if asked is not None:
                        raise ConfigError(
                            name, str(asked), f"not allowed with network {network.name}"
                        )
                return [], mode
            # fail before anything is made; rechecked under lock
            pick_leases(self.store, network, Asked(request.ip, request.ip6))
            resolved.append((network, request))
        return resolved, "private" if resolved else "none"

    def _make(self, container: Container, networks: Joined) -> None:
        directory = self.paths.container_dir(container.id)
        directory.mkdir(parents=True, exist_ok=True)
        if container.netns is not None:
            self.kernel.create_netns(Path(container.netns))
            faults.point("container:netns")
        for network, request in networks:
            self.endpoints.attach(container, network, request.ip, request.aliases,
                                  ip6=request.ip6)
        self.files.write_all(container)

    # --- start / stop ----------------------------------------------------------------
    def launch_spec(self, container: Container) -> dict[str, Any]:
        directory = self.paths.container_dir(container.id)
        return {
            "netns": container.netns,
            "hostname": container.hostname if container.network_mode != "host" else "",
            "files": {f"/etc/{f}": str(directory / f) for f in ETC_FILES},
            "command": list(container.command),
            "env": container.config.get("env") or {},
            "workdir": container.config.get("workdir"),
        }

    def start(self, ref: str) -> tuple[Container, subprocess.Popen[bytes]]:
        """Start detached, output to the container's log file."""
        container = self.get(ref)
        if container.state == RUNNING:
            raise ConflictError(f"container {container.name} is already running")
        log = open(self.paths.container_dir(container.id) / "log", "ab")  # noqa: SIM115
        try:
            child = process.spawn(self.launch_spec(container), stdout=log, detach=True)
        finally:
            log.close()
        return self.mark_started(container.id, child.pid), child

    def mark_started(self, ref: str, pid: int) -> Container:
        container = self.get(ref)
        start = _linux.process_start_time(pid)
        self.store.update_container(
            container.id, state=RUNNING, pid=pid, pid_start=start, exit_code=None
        )
        return dataclasses.replace(container, state=RUNNING, pid=pid, pid_start=start)

    def mark_exited(self, ref: str, exit_code: int | None) -> None:
        container = self.store.find_container(ref)
        if container is not None and container.state == RUNNING:
            self.store.update_container(container.id, state=EXITED, exit_code=exit_code)

    def stop(self, ref: str, timeout: float = 10.0) -> Container:
        container = self.get(ref)
        if container.state == RUNNING:
            process.terminate(container.pid, container.pid_start, timeout)
            self.mark_exited(container.id, None)
        return self.get(container.id)

    # --- connect / disconnect --------------------------------------------------------
    def connect(
        self,
        network_ref: str,
        container_ref: str,
        ip: IPv4Address | None = None,
        aliases: tuple[str, ...] = (),
        ip6: IPv6Address | None = None,
    ) -> Endpoint:
        container = self.get(container_ref)
        endpoint = self.endpoints.attach(container, self.networks.usable(network_ref), ip,
                                         aliases, ip6=ip6)
        self.files.refresh(container)
        return endpoint

    def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        network = self.networks.get(network_ref)
        container = self.store.find_container(container_ref)
        if container is None:
            if not force:
                raise NotFoundError(f"no such container: {container_ref}")
            return
        endpoint = next((e for e in self.store.endpoints(network.id, container.id)), None)
        if endpoint is None:
            raise NotFoundError(
                f"container {container.name} is not connected to network {network.name}"
            )
        self.endpoints.detach(network, endpoint)
        self.files.refresh(container)

    # --- remove ----------------------------------------------------------------------
    def remove(self, ref: str, force: bool = False) -> None:
        container = self.get(ref)
        if container.state == RUNNING:
            if not force:
                raise ConflictError(
                    f"cannot remove running container {container.name}: stop it first or use -f"
                )
            process.terminate(container.pid, container.pid_start, 0.0)
        self.store.update_container(container.id, state=REMOVING, owner=self.owner)
        faults.point("container:removing")
        self.destroy(container)

    def destroy(self, container: Container) -> None:
        """Best effort, in reverse order of creation; the record goes last."""
        errors: list[BaseException] = []
        for network, endpoint in container_endpoints(self.store, container):
            try:
                self.endpoints.detach(network, endpoint)
            except Exception as exc:  # keep going: collect and report together
                errors.append(exc)
        # a runtime's sandbox (CNI, podman): the namespace is the runtime's, never ours
        if container.netns is not None and container.config.get("netns_owned", True):
            try:
                self.kernel.delete_netns(Path(container.netns))
            except Exception as exc:
                errors.append(exc)
        shutil.rmtree(self.paths.container_dir(container.id), ignore_errors=True)
        if errors:
            raise errors[0]
        self.store.delete_container(container.id)


__all__ = ["CREATED", "Containers", "EXITED", "RUNNING"]
