"""Sandboxes: containers whose process and network namespace belong to a runtime (a CNI
runtime such as containerd, CRI-O or podman; podman through its netavark interface).

netbay records each one as a container, keyed by the runtime's own container id
(`config["external_id"]`), so every engine rule applies to it: IPAM leases, published ports
(`config["ports"]`), DNS names, the firewall. Its namespace is the runtime's
(`config["netns_owned"] = False`): removal never deletes it. Detach works from the record by
(runtime's id, interface name), whether or not the namespace still exists and whatever the
runtime passes; the record goes when its last endpoint does.

Networks netbay makes from a runtime's definition (a self-contained CNI config, a podman
network) carry the label `netbay.runtime` and go when their last endpoint does, as netavark
removes its bridge; networks made with netbay's own API are only ever used, never removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from ..clock import now_rfc3339
from ..errors import ConfigError, ConflictError, InUseError, NotFoundError
from ..ids import new_id, valid_name
from ..kernel.links import Netlink
from ..model import CREATING, READY, REMOVING, Container, Endpoint, Network, NetworkSpec
from ..plan import firewall as fw
from ..plan import ports as plan_ports
from .repair import GCReport, RepairOps

SANDBOX = "external"  # the state of a sandbox record: the runtime runs its processes
RUNTIME_LABEL = "netbay.runtime"  # on networks made from a runtime's definition


@dataclass(frozen=True)
class SandboxRequest:
    """One attachment a runtime asks for."""

    external_id: str  # the runtime's container id
    runtime: str  # "cni" or "netavark"
    netns: Path
    ifname: str
    ip: IPv4Address | None = None
    mac: str | None = None
    aliases: tuple[str, ...] = ()
    hostname: str = ""  # the runtime's name for the container: a DNS name on the network
    ports: tuple[plan_ports.Mapping, ...] = ()
    dns: tuple[str, ...] = ()  # servers netbay's DNS forwards other names to
    tag: str = ""  # the runtime's name for this attachment's network (the CNI network name)


def can_publish(network: Network) -> bool:
    return network.driver == "bridge" and not network.internal


def _hostname(name: str) -> str:
    """The runtime's container name when it can be a DNS label, else none."""
    ok = name and len(name) <= 63 and valid_name(name) and name[-1] not in ".-"
    return name if ok else ""


def _attachments(container: Container) -> dict[str, dict[str, Any]]:
    raw = container.config.get("attachments")
    return {str(k): dict(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


_DEVICE_OPTIONS = ("com.docker.network.bridge.name", "parent")
_DEFAULTS = {
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "macvlan_mode": "bridge",
}


def network_differences(network: Network, spec: NetworkSpec) -> list[str]:
    """How an existing network differs from a runtime's definition of it (empty: it fits).
    What the definition leaves out (no subnet, no device name) is not compared."""
    out = []
    if network.driver != spec.driver:
        out.append(f"driver {network.driver}, not {spec.driver}")
    if spec.subnets:
        have = [(s.subnet, s.gateway) for s in network.subnets]
        want = [(s.subnet, s.gateway) for s in spec.subnets]
        if any(gateway is None for _, gateway in want):  # a default gateway: compare subnets
            have, want = [(s, None) for s, _ in have], [(s, None) for s, _ in want]
        if have != want:
            out.append(
                "subnets " + ", ".join(str(s.subnet) for s in network.subnets)
                + ", not " + ", ".join(str(s.subnet) for s in spec.subnets)
            )
    if spec.internal != network.internal:
        out.append("internal" if network.internal else "not internal")
    for key, value in spec.options.items():
        if key in _DEVICE_OPTIONS:
            current = network.device
        else:
            current = network.options.get(key, _DEFAULTS.get(key))
        if current != value:
            out.append(f"option {key}={current}, not {value}")
    return out


class SandboxOps(RepairOps):
    # --- networks a runtime defines ------------------------------------------------------
    def network_named(self, name: str) -> Network | None:
        """Exact name only (a runtime's name is never an id prefix)."""
        try:
            found = self.store.find_network(name)
        except ConflictError:  # an ambiguous id prefix: then it is no network's name
            return None
        if found is not None and found.name == name:
            return found
        return None

    def ensure_runtime_network(self, spec: NetworkSpec, runtime: str) -> Network:
        """The network SPEC defines: the existing one if it fits (ConflictError if it does
        not), else made now, labelled as the runtime's."""
        with self.kernel.lock:
            existing = self.network_named(spec.name)
            if existing is not None and existing.state != REMOVING:
                if existing.state != READY:
                    raise ConflictError(f"network {spec.name} is being {existing.state[:-3]}ed")
                differences = network_differences(existing, spec)
                if differences:
                    raise ConflictError(
                        f"network {spec.name} exists with other settings: "
                        + "; ".join(differences)
                    )
                return existing
            labels = {**spec.labels, RUNTIME_LABEL: runtime}
            return self.create_network(dataclasses.replace(spec, labels=labels))

    def release_runtime_network(self, network: Network) -> bool:
        """Remove a network netbay made for a runtime once nothing is attached to it."""
        if RUNTIME_LABEL not in network.labels:
            return False
        with self.kernel.lock:
            if self.store.endpoint_count(network.id):
                return False
            try:
                self.remove_network(network.id)
            except (InUseError, NotFoundError):
                return False
        return True

    # --- sandboxes ---------------------------------------------------------------------
    def loopback_up(self, netns: Path) -> None:
        """`lo` up in a runtime's namespace (podman leaves that to its network backend)."""
        with Netlink(netns) as inside:
            inside.set_up(1)

    def sandbox(self, external_id: str) -> Container | None:
        return self.store.container_by_external_id(external_id)

    def sandbox_attachment(
        self, external_id: str, ifname: str
    ) -> tuple[Container, Network, Endpoint] | None:
        sandbox = self.sandbox(external_id)
        if sandbox is None:
            return None
        for network, endpoint in self.container_endpoints(sandbox):
            if endpoint.ifname == ifname:
                return sandbox, network, endpoint
        return None

    def attachment_tag(self, sandbox: Container, ifname: str) -> str | None:
        entry = _attachments(sandbox).get(ifname)
        return None if entry is None else str(entry.get("tag", ""))

    def attach_sandbox(
        self, network: Network, request: SandboxRequest
    ) -> tuple[Container, Endpoint]:
        """Attach the runtime's container to NETWORK: its sandbox record found or made, its
        ports published. On failure nothing of this attachment is left."""
        if request.ports and not can_publish(network):
            raise ConfigError(
                "portMappings", plan_ports.record_ports(request.ports),
                f"{network.driver} network {network.name} publishes no ports (a bridge "
                "network that is not internal does)",
            )
        with self.kernel.lock:
            self._drop_stale_sandbox(request)
            sandbox, before = self._claim_sandbox(request)
            try:
                self._publish_added(sandbox, before)
                endpoint = self.attach_endpoint(
                    sandbox, network, request.ip, request.aliases,
                    ifname=request.ifname, mac=request.mac,
                )
            except BaseException:
                self._unclaim_sandbox(sandbox, before)
                raise
            if before is None:
                self.store.update_container(sandbox.id, state=SANDBOX, owner="")
                sandbox = dataclasses.replace(sandbox, state=SANDBOX, owner="")
        return sandbox, endpoint

    def _drop_stale_sandbox(self, request: SandboxRequest) -> None:
        """A record for this id whose namespace is gone and is not the one asked for: the
        runtime made a new namespace (a restart) without DEL. Its attachments are dead."""
        old = self.sandbox(request.external_id)
        if old is None or old.netns is None or old.netns == str(request.netns):
            return
        if Path(old.netns).exists():
            raise ConflictError(
                f"container {request.external_id} is attached in network namespace "
                f"{old.netns}, not {request.netns}"
            )
        networks = [n for n, _ in self.container_endpoints(old)]
        self._destroy_container(old)
        for network in networks:
            self.release_runtime_network(network)

    def _claim_sandbox(self, request: SandboxRequest) -> tuple[Container, Container | None]:
        """(the sandbox with this attachment's ports and tag recorded, the record as it
        was before: None if made now)."""
        with self.store.transaction():
            before = self.sandbox(request.external_id)
            taken = [
                m for c in (self.store.containers() if request.ports else [])
                if before is None or c.id != before.id
                for m in plan_ports.container_ports(c)
            ]
            for mapping in request.ports:
                if any(plan_ports.clashes(mapping, other) for other in taken):
                    where = f"{mapping.host_ip}:" if mapping.host_ip else ""
                    raise ConflictError(
                        f"invalid publish {where}{mapping.host_port}/{mapping.proto}: "
                        "host port already published"
                    )
            if before is None:
                sandbox = self._new_sandbox(request)
                self.store.put_container(sandbox)
                return sandbox, None
            if before.state in (CREATING, REMOVING):
                raise ConflictError(f"container {request.external_id} is being set up or removed")
            config = dict(before.config)
            have = plan_ports.container_ports(before)
            config["ports"] = plan_ports.record_ports(
                [*have, *(m for m in request.ports if m not in have)]
            )
            attachments = _attachments(before)
            attachments[request.ifname] = {"tag": request.tag}
            config["attachments"] = attachments
            self.store.update_container(before.id, config=config)
            return dataclasses.replace(before, config=config), before

    def _new_sandbox(self, request: SandboxRequest) -> Container:
        name = f"{request.runtime}-{request.external_id}"[:63]
        if not valid_name(name):
            raise ConfigError("container id", request.external_id, "not a valid container id")
        if self.store.container_named(name) is not None:
            raise ConflictError(f"the container name {name!r} is already in use")
        return Container(
            id=new_id(),
            name=name,
            hostname=_hostname(request.hostname),
            command=(),
            created=now_rfc3339(),
            netns=str(request.netns),
            network_mode="private",
            state=CREATING,
            owner=self.owner,
            config={
                "external_id": request.external_id,
                "runtime": request.runtime,
                "netns_owned": False,
                "ports": plan_ports.record_ports(request.ports),
                "attachments": {request.ifname: {"tag": request.tag}},
                "dns": list(request.dns),
                "network": request.tag,
            },
        )

    def _publish_added(self, sandbox: Container, before: Container | None) -> None:
        """Ports this attachment adds to a sandbox that already has a target for them go to
        the firewall now (the attach replaces only what it changes)."""
        if before is None:
            return
        have = plan_ports.container_ports(before)
        added = [m for m in plan_ports.container_ports(sandbox) if m not in have]
        if not added:
            return
        networks = {n.id: n for n in self.store.networks()}
        only_added = dataclasses.replace(
            sandbox, config={**sandbox.config, "ports": plan_ports.record_ports(added)}
        )
        rules = self.port_rules(
            only_added, self.store.endpoints(container_id=sandbox.id), networks
        )
        if rules:
            self.firewall_change(fw.merge(*map(fw.port_elements, rules)), {})

    def _unclaim_sandbox(self, sandbox: Container, before: Container | None) -> None:
        """Undo _claim_sandbox after a failed attach."""
        if before is None:
            if not self.store.endpoints(container_id=sandbox.id):
                self.store.delete_container(sandbox.id)
            return
        have = plan_ports.container_ports(before)
        added = [m for m in plan_ports.container_ports(sandbox) if m not in have]
        if added:
            networks = {n.id: n for n in self.store.networks()}
            only_added = dataclasses.replace(
                sandbox, config={**sandbox.config, "ports": plan_ports.record_ports(added)}
            )
            rules = self.port_rules(
                only_added, self.store.endpoints(container_id=sandbox.id), networks
            )
            if rules:
                self.firewall_change({}, fw.merge(*map(fw.port_elements, rules)))
        self.store.update_container(sandbox.id, config=dict(before.config))

    def detach_sandbox(self, external_id: str, ifname: str, tag: str | None = None) -> bool:
        """Detach the runtime's (EXTERNAL_ID, IFNAME) from the record, namespace or not; with
        TAG, only if the attachment was made for that network. True if there was one. The
        sandbox record goes with its last endpoint, a runtime's network with its last user."""
        with self.kernel.lock:
            found = self.sandbox_attachment(external_id, ifname)
            if found is None:
                return False
            sandbox, network, endpoint = found
            recorded = self.attachment_tag(sandbox, ifname)
            if tag is not None and recorded is not None and recorded != tag:
                return False
            self.detach_endpoint(network, endpoint)
            self._forget_attachment(sandbox, ifname)
            self.release_runtime_network(network)
        return True

    def _forget_attachment(self, sandbox: Container, ifname: str) -> None:
        if not self.store.endpoints(container_id=sandbox.id):
            self.store.update_container(sandbox.id, state=REMOVING, owner=self.owner)
            self._destroy_container(sandbox)
            return
        attachments = _attachments(sandbox)
        attachments.pop(ifname, None)
        config = {**sandbox.config, "attachments": attachments}
        self.store.update_container(sandbox.id, config=config)

    def sandbox_attachments(self, runtime: str, tag: str) -> list[tuple[str, str]]:
        """(runtime's id, interface name) of every attachment a runtime made for the
        network it calls TAG."""
        out = []
        for container in self.store.containers():
            if container.config.get("runtime") != runtime or "external_id" not in container.config:
                continue
            for ifname, entry in _attachments(container).items():
                if entry.get("tag") == tag:
                    out.append((str(container.config["external_id"]), ifname))
        return out

    def collect_sandboxes(
        self, runtime: str, tag: str, valid: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[Exception]]:
        """GC: detach what the runtime made for TAG that is not among VALID; keeps going
        past failures and reports them together."""
        keep = set(valid)
        removed, errors = [], []
        for attachment in self.sandbox_attachments(runtime, tag):
            if attachment in keep:
                continue
            try:
                if self.detach_sandbox(*attachment, tag=tag):
                    removed.append(attachment)
            except Exception as exc:  # keep going; reported together
                errors.append(exc)
        return removed, errors

    # --- repair ------------------------------------------------------------------------
    def gc(self) -> GCReport:
        """As RepairOps, and: sandboxes left without endpoints (an attach interrupted by a
        crash) or whose namespace the runtime removed without DEL (their leases and ports
        would otherwise stay taken), runtime networks left without users."""
        report = super().gc()
        with self.kernel.lock:
            for container in self.store.containers():
                if "external_id" not in container.config or container.state != SANDBOX:
                    continue
                gone = container.netns is not None and not Path(container.netns).exists()
                if gone or not self.store.endpoints(container_id=container.id):
                    self._destroy_container(container)
                    report.containers.append(container.name)
            for network in self.store.networks():
                if network.state == READY and self.release_runtime_network(network):
                    report.networks.append(network.name)
        return report


__all__ = [
    "RUNTIME_LABEL",
    "SANDBOX",
    "SandboxOps",
    "SandboxRequest",
    "can_publish",
    "network_differences",
]
