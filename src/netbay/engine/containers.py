"""Container lifecycle: create (record, netns, endpoints, /etc files), start, stop, remove."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from .. import _linux, faults
from ..clock import now_rfc3339
from ..dns.records import serves
from ..drivers import get_driver
from ..drivers.parent import PARENT_DRIVERS
from ..errors import ConfigError, ConflictError, NotFoundError
from ..ids import new_id, random_name, valid_name
from ..ipam.allocator import pick_address
from ..model import CREATING, READY, REMOVING, Container, ContainerSpec, Endpoint, Network
from ..plan.ports import allocate, container_ports, parse_publish, record_ports
from ..runtime import files, process
from .endpoints import EndpointOps, check_aliases

CREATED, RUNNING, EXITED = "created", "running", "exited"


def local_port_range() -> tuple[int, int]:
    """Where automatically chosen host ports come from, as for the host's own sockets."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999
ETC_FILES = ("hosts", "hostname", "resolv.conf")


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


class ContainerOps(EndpointOps):
    # --- queries ---------------------------------------------------------------------
    def containers(self) -> list[Container]:
        return [self._refresh(c) for c in self.store.containers()]

    def container(self, ref: str) -> Container:
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

    def container_endpoints(self, container: Container) -> list[tuple[Network, Endpoint]]:
        out = []
        for endpoint in self.store.endpoints(container_id=container.id):
            network = self.store.find_network(endpoint.network_id)
            if network is not None:
                out.append((network, endpoint))
        return out

    # --- create ----------------------------------------------------------------------
    def create_container(self, spec: ContainerSpec) -> Container:
        if not spec.command:
            raise ConfigError("command", "", "a command to run is required")
        name = spec.name or random_name()
        if not valid_name(name):
            raise ConfigError("name", name, "use letters, digits, '_', '.', '-' (max 63)")
        hostname = spec.hostname or ""
        if len(hostname) > 63:
            raise ConfigError("hostname", hostname, "longer than 63 characters")
        networks, mode = self._resolve_networks(spec)
        for network, _, aliases in networks:  # refused before anything is made
            check_aliases(aliases)
            self.check_dns_names(name, network, aliases)
        publish = [parse_publish(p) for p in spec.publish]
        if publish and not any(n.driver == "bridge" and not n.internal for n, _, _ in networks):
            reason = "needs a bridge network that is not internal"
            direct = next((n for n, _, _ in networks if n.driver in PARENT_DRIVERS), None)
            if direct is not None:
                reason += (
                    f" ({direct.driver} network {direct.name} publishes no ports: its "
                    "containers are reached at their own addresses)"
                )
            raise ConfigError("publish", spec.publish[0], reason)
        container_id = new_id()
        container = Container(
            id=container_id,
            name=name,
            hostname=hostname or (container_id[:12] if mode != "host" else ""),
            command=spec.command,
            created=now_rfc3339(),
            netns=None if mode == "host" else str(self.paths.netns_path(container_id)),
            network_mode=mode,
            state=CREATING,
            owner=self.owner,
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
        with self.store.transaction():
            if self.store.container_named(name) is not None:
                raise ConflictError(f"the container name {name!r} is already in use")
            if publish:
                taken = [m for c in self.store.containers() for m in container_ports(c)]
                mappings = allocate(publish, taken, local_port_range())
                config = dict(container.config)
                config["ports"] = record_ports(mappings)
                container = dataclasses.replace(container, config=config)
            self.store.put_container(container)
        faults.point("container:recorded")
        try:
            self._make_container(container, networks, spec)
        except BaseException:
            self._destroy_container(container)
            raise
        self.store.update_container(container.id, state=CREATED, owner="")
        return dataclasses.replace(container, state=CREATED, owner="")

    def _resolve_networks(
        self, spec: ContainerSpec
    ) -> tuple[list[tuple[Network, IPv4Address | None, tuple[str, ...]]], str]:
        """Check every requested network and static address before anything is made."""
        resolved = []
        seen = set()
        for request in spec.networks:
            network = self.network(request.network)
            if network.id in seen:
                raise ConfigError("network", request.network, "given twice")
            seen.add(network.id)
            mode = get_driver(network.driver).mode
            if mode != "private" and len(spec.networks) > 1:
                raise ConfigError(
                    "network", request.network, "the host and none modes cannot be combined"
                )
            if mode != "private":
                if request.ip is not None:
                    raise ConfigError(
                        "ip", str(request.ip), f"not allowed with network {network.name}"
                    )
                return [], mode
            if request.ip is not None:  # fail before anything is made; rechecked under lock
                pick_address(network.subnets, self.store.used_addresses(network.id), request.ip)
            resolved.append((network, request.ip, request.aliases))
        return resolved, "private" if resolved else "none"

    def _make_container(
        self,
        container: Container,
        networks: list[tuple[Network, IPv4Address | None, tuple[str, ...]]],
        spec: ContainerSpec,
    ) -> None:
        directory = self.paths.container_dir(container.id)
        directory.mkdir(parents=True, exist_ok=True)
        if container.netns is not None:
            self.kernel.create_netns(Path(container.netns))
            faults.point("container:netns")
        for network, ip, aliases in networks:
            self.attach_endpoint(container, network, ip, aliases)
        self.refresh_resolv_conf(container)
        files.write_in_place(directory / "hostname", (container.hostname or "localhost") + "\n")
        self.refresh_hosts_file(container)

    def refresh_resolv_conf(self, container: Container) -> None:
        """On a bridge network: netbay's DNS server on the gateway of the first one, which
        forwards other names to --dns or the host's resolvers, as Docker's embedded DNS does
        (with ndots:0, so a container name is asked as it is before any search domain).
        Otherwise (none, host): the --dns servers or the host's, loopback ones left out."""
        dns, search, options = (
            _strings(container.config.get(key)) for key in ("dns", "dns_search", "dns_options")
        )
        served = [
            (network, endpoint.address.ip)
            for network, endpoint in self.container_endpoints(container)
            if serves(network) and endpoint.address is not None
        ]
        gateway = next(
            (
                s.gateway
                for network, address in served
                for s in network.subnets
                if s.gateway is not None and address in s.subnet
            ),
            None,
        )
        if gateway is None:
            text = files.render_resolv_conf(dns or files.host_nameservers(), search, options)
        else:
            if not any(o.startswith("ndots:") for o in options):
                options.insert(0, "ndots:0")
            if all(network.internal for network, _ in served):
                upstream = "none (internal network)"
            else:
                upstream = ", ".join(dns) or "the host's resolvers"
            text = files.render_resolv_conf(
                [str(gateway)], search, options,
                notes=[f"netbay DNS; other names are forwarded to: {upstream}"],
            )
        files.write_in_place(self.paths.container_dir(container.id) / "resolv.conf", text)

    def refresh_hosts_file(self, container: Container) -> None:
        names = [n for n in (container.hostname, container.name) if n]
        own = [(e.address.ip, names) for _, e in self.container_endpoints(container) if e.address]
        extra = [(h, IPv4Address(a)) for h, a in container.config.get("extra_hosts", [])]  # type: ignore[attr-defined]
        path = self.paths.container_dir(container.id) / "hosts"
        files.write_in_place(path, files.render_hosts(own, extra))

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

    def start_container(self, ref: str) -> tuple[Container, subprocess.Popen[bytes]]:
        """Start detached, output to the container's log file."""
        container = self.container(ref)
        if container.state == RUNNING:
            raise ConflictError(f"container {container.name} is already running")
        log = open(self.paths.container_dir(container.id) / "log", "ab")  # noqa: SIM115
        try:
            child = process.spawn(self.launch_spec(container), stdout=log, detach=True)
        finally:
            log.close()
        return self.mark_started(container.id, child.pid), child

    def mark_started(self, ref: str, pid: int) -> Container:
        container = self.container(ref)
        start = _linux.process_start_time(pid)
        self.store.update_container(
            container.id, state=RUNNING, pid=pid, pid_start=start, exit_code=None
        )
        return dataclasses.replace(container, state=RUNNING, pid=pid, pid_start=start)

    def mark_exited(self, ref: str, exit_code: int | None) -> None:
        container = self.store.find_container(ref)
        if container is not None and container.state == RUNNING:
            self.store.update_container(container.id, state=EXITED, exit_code=exit_code)

    def stop_container(self, ref: str, timeout: float = 10.0) -> Container:
        container = self.container(ref)
        if container.state == RUNNING:
            process.terminate(container.pid, container.pid_start, timeout)
            self.mark_exited(container.id, None)
        return self.container(container.id)

    # --- connect / disconnect --------------------------------------------------------
    def connect(
        self,
        network_ref: str,
        container_ref: str,
        ip: IPv4Address | None = None,
        aliases: tuple[str, ...] = (),
    ) -> Endpoint:
        container = self.container(container_ref)
        endpoint = self.attach_endpoint(container, self.network(network_ref), ip, aliases)
        self.refresh_hosts_file(container)
        self.refresh_resolv_conf(container)
        return endpoint

    def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        network = self.network(network_ref)
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
        self.detach_endpoint(network, endpoint)
        self.refresh_hosts_file(container)
        self.refresh_resolv_conf(container)

    # --- remove ----------------------------------------------------------------------
    def remove_container(self, ref: str, force: bool = False) -> None:
        container = self.container(ref)
        if container.state == RUNNING:
            if not force:
                raise ConflictError(
                    f"cannot remove running container {container.name}: stop it first or use -f"
                )
            process.terminate(container.pid, container.pid_start, 0.0)
        self.store.update_container(container.id, state=REMOVING, owner=self.owner)
        faults.point("container:removing")
        self._destroy_container(container)

    def _destroy_container(self, container: Container) -> None:
        """Best effort, in reverse order of creation; the record goes last."""
        errors: list[BaseException] = []
        for network, endpoint in self.container_endpoints(container):
            try:
                self.detach_endpoint(network, endpoint)
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

    def container_state_ok(self, container: Container) -> bool:
        return container.state not in (CREATING, REMOVING) and container.owner in ("", self.owner)


__all__ = ["ContainerOps", "CREATED", "RUNNING", "EXITED", "READY"]
