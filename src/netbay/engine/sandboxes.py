"""Sandboxes: containers whose process and network namespace belong to a runtime (a CNI
runtime such as containerd, CRI-O or podman; podman through its netavark interface).

netbay records each one as a container, keyed by the runtime's own container id
(`config["external_id"]`), so every engine rule applies to it: IPAM leases, published ports
(`config["ports"]`), DNS names, the firewall. Its namespace is the runtime's
(`config["netns_owned"] = False`): removal never deletes it. Detach works from the record by
(runtime's id, interface name), whether or not the namespace still exists and whatever the
runtime passes; the record goes when its last endpoint does.

The runtimes' own networks: engine/runtime_networks.py.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from .. import faults
from ..clock import now_rfc3339
from ..drivers import capabilities
from ..errors import ConfigError, ConflictError, NetbayError
from ..ids import new_id, valid_name
from ..model import CREATING, REMOVING, SANDBOX, Container, Endpoint, Network, NetworkSpec
from ..plan import firewall as fw
from ..plan import ports as plan_ports
from ..store.base import Store
from .containers import Containers
from .endpoints import Endpoints
from .firewall import Firewall, can_publish
from .kernel import Kernel
from .records import container_endpoints
from .runtime_networks import RuntimeNetworks
from .sandbox_ports import added_ports, forget
from .sandbox_ports import attachments as _attachments
from .vanished import namespace_vanished, netns_identity, release_sandbox

log = logging.getLogger("netbay.sandboxes")


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
    name: str = ""  # the runtime's name for the container as its users know it (`netbay ps`)
    ports: tuple[plan_ports.Mapping, ...] = ()
    dns: tuple[str, ...] = ()  # servers netbay's DNS forwards other names to
    tag: str = ""  # the runtime's name for this attachment's network (the CNI network name)
    links_in: Path | None = None  # where the link is made, if the runtime moves it (Docker)
    ip6: IPv6Address | None = None  # a static IPv6 address the runtime asks for


@dataclass(frozen=True)
class RuntimeAttachment:
    """One attachment of a runtime's setup: the network, as a ready network's name or the
    runtime's definition of one (made if missing), and the request to make on it (raises to
    refuse the network found)."""

    network: str | NetworkSpec
    request: Callable[[Network], SandboxRequest]


def _hostname(name: str) -> str:
    """The runtime's container name when it can be a DNS label, else none."""
    ok = name and len(name) <= 63 and valid_name(name) and name[-1] not in ".-"
    return name if ok else ""


@dataclass(frozen=True, eq=False)
class Sandboxes:
    store: Store
    kernel: Kernel
    firewall: Firewall
    endpoints: Endpoints
    containers: Containers
    runtime_networks: RuntimeNetworks
    owner: str

    # --- sandboxes ---------------------------------------------------------------------
    def get(self, external_id: str) -> Container | None:
        return self.store.container_by_external_id(external_id)

    def attachment(
        self, external_id: str, ifname: str
    ) -> tuple[Container, Network, Endpoint] | None:
        sandbox = self.get(external_id)
        if sandbox is None:
            return None
        for network, endpoint in container_endpoints(self.store, sandbox):
            if endpoint.ifname == ifname:
                return sandbox, network, endpoint
        return None

    def attachment_tag(self, sandbox: Container, ifname: str) -> str | None:
        entry = _attachments(sandbox).get(ifname)
        return None if entry is None else str(entry.get("tag", ""))

    def attach(
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
            faults.point("sandbox:claimed")
            try:
                self._publish_added(sandbox, before)
                faults.point("sandbox:published")
                endpoint = self.endpoints.attach(
                    sandbox, network, request.ip, request.aliases,
                    ifname=request.ifname, mac=request.mac, links_in=request.links_in,
                    ip6=request.ip6,
                )
            except BaseException:
                self._unclaim_sandbox(sandbox, before)
                raise
            faults.point("sandbox:attached")
            sandbox = self._settle(sandbox, request.ifname)
        return sandbox, endpoint

    def _settle(self, sandbox: Container, ifname: str) -> Container:
        """The attachment is made: no longer pending; a new sandbox is the runtime's now."""
        entries = _attachments(sandbox)
        entries[ifname].pop("owner", None)
        changes: dict[str, Any] = {"config": {**sandbox.config, "attachments": entries}}
        if sandbox.state != SANDBOX:
            changes.update(state=SANDBOX, owner="")
        self.store.update_container(sandbox.id, **changes)
        return dataclasses.replace(sandbox, **changes)

    def _drop_stale_sandbox(self, request: SandboxRequest) -> None:
        """A record for this id whose namespace is gone (its path names nothing, or another
        namespace: a reused /proc/PID): the runtime made a new namespace (a restart) without
        DEL. Its attachments are dead."""
        old = self.get(request.external_id)
        if old is None or old.netns is None:
            return
        if namespace_vanished(old) is None:
            if old.netns != str(request.netns):
                raise ConflictError(
                    f"container {request.external_id} is attached in network namespace "
                    f"{old.netns}, not {request.netns}"
                )
            return
        release_sandbox(self.store, self.containers, self.runtime_networks, old, self.owner)

    def _claim_sandbox(self, request: SandboxRequest) -> tuple[Container, Container | None]:
        """(the sandbox with this attachment's ports and tag recorded, the record as it
        was before: None if made now)."""
        with self.store.transaction():
            before = self.get(request.external_id)
            taken = [
                m for c in (self.store.containers() if request.ports else [])
                if before is None or c.id != before.id
                for m in plan_ports.container_ports(c)
            ]
            for mapping in request.ports:
                if any(plan_ports.clashes(mapping, other) for other in taken):
                    where = f"{plan_ports.host_text(mapping.host_ip)}:" if mapping.host_ip \
                        else ""
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
            attachments[request.ifname] = self._attachment_entry(request)
            config["attachments"] = attachments
            self.store.update_container(before.id, config=config)
            return dataclasses.replace(before, config=config), before

    def _attachment_entry(self, request: SandboxRequest) -> dict[str, Any]:
        """The record of one attachment: its network's tag, the ports it publishes (they go
        with it), and while it is being made, its owner (gc undoes it if that one died)."""
        ports = plan_ports.record_ports(request.ports)
        return {"tag": request.tag, "ports": ports, "owner": self.owner}

    def _new_sandbox(self, request: SandboxRequest) -> Container:
        name = f"{request.runtime}-{request.external_id}"[:63]
        if not valid_name(name):
            raise ConfigError("container id", request.external_id, "not a valid container id")
        if self.store.container_named(name) is not None:
            raise ConflictError(f"the container name {name!r} is already in use")
        netns_dev, netns_ino, netns_pid_start = netns_identity(request.netns)
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
                "name": request.name,
                "netns_owned": False,
                "ports": plan_ports.record_ports(request.ports),
                "attachments": {request.ifname: self._attachment_entry(request)},
                "dns": list(request.dns),
                "network": request.tag,
            },
            netns_dev=netns_dev,
            netns_ino=netns_ino,
            netns_pid_start=netns_pid_start,
        )

    def _added_ports(self, sandbox: Container, before: Container | None) -> fw.Elements:
        return added_ports(self.store, self.firewall, sandbox, before)

    def _publish_added(self, sandbox: Container, before: Container | None) -> None:
        added = self._added_ports(sandbox, before)
        if added:
            self.firewall.change(added, {})

    def _unclaim_sandbox(self, sandbox: Container, before: Container | None) -> None:
        """Undo _claim_sandbox after a failed attach."""
        if before is None:
            if not self.store.endpoints(container_id=sandbox.id):
                self.store.delete_container(sandbox.id)
            return
        added = self._added_ports(sandbox, before)
        if added:
            self.firewall.change({}, added)
        self.store.update_container(sandbox.id, config=dict(before.config))

    def detach(self, external_id: str, ifname: str, tag: str | None = None) -> bool:
        """Detach the runtime's (EXTERNAL_ID, IFNAME) from the record, namespace or not; with
        TAG, only if the attachment was made for that network. True if there was one. The
        sandbox record goes with its last endpoint, a runtime's network with its last user."""
        with self.kernel.lock:
            found = self.attachment(external_id, ifname)
            if found is None:
                return False
            sandbox, network, endpoint = found
            recorded = self.attachment_tag(sandbox, ifname)
            if tag is not None and recorded is not None and recorded != tag:
                return False
            self.endpoints.detach(network, endpoint)
            faults.point("sandbox:detached")
            self._forget_attachment(sandbox, ifname)
            self.runtime_networks.release(network)
        return True

    def _forget_attachment(self, sandbox: Container, ifname: str) -> None:
        if not self.store.endpoints(container_id=sandbox.id):
            self.store.update_container(sandbox.id, state=REMOVING, owner=self.owner)
            faults.point("sandbox:removing")
            self.containers.destroy(sandbox)
            return
        forget(self.store, self.firewall, sandbox, [ifname])

    def attachments(self, runtime: str, tag: str) -> list[tuple[str, str]]:
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

    def collect(
        self, runtime: str, tag: str, valid: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[Exception]]:
        """GC: detach what the runtime made for TAG that is not among VALID; keeps going
        past failures and reports them together."""
        keep = set(valid)
        removed, errors = [], []
        for attachment in self.attachments(runtime, tag):
            if attachment in keep:
                continue
            try:
                if self.detach(*attachment, tag=tag):
                    removed.append(attachment)
            except Exception as exc:  # keep going; reported together
                errors.append(exc)
        return removed, errors

    # --- a runtime's setup and teardown ------------------------------------------------
    def setup(
        self, runtime: str, wanted: Sequence[RuntimeAttachment]
    ) -> list[tuple[Network, Endpoint]]:
        """Every network found or made first, then each attachment, under one hold of the
        lock (no other request releases a network in between). When one fails, what was
        done is undone, as netavark does, and the error raised."""
        networks: list[Network] = []
        done: list[tuple[SandboxRequest, Network, Endpoint]] = []
        with self.kernel.lock:
            try:
                for item in wanted:
                    networks.append(self.runtime_networks.resolve(item.network, runtime))
                for item, network in zip(wanted, networks, strict=True):
                    request = item.request(network)
                    done.append((request, network, self.attach(network, request)[1]))
            except BaseException:
                self._undo(done, networks)
                raise
        # as recorded after the attach (the default bridge has its device only since then)
        return [
            (self.store.find_network(network.id) or network, endpoint)
            for _, network, endpoint in done
        ]

    def _undo(
        self, done: list[tuple[SandboxRequest, Network, Endpoint]], networks: list[Network]
    ) -> None:
        for request, _, endpoint in reversed(done):
            try:
                self.detach(request.external_id, endpoint.ifname)
            except NetbayError as exc:
                log.error("undoing setup of %s: %s", request.external_id, exc)
        for network in networks:
            try:
                self.runtime_networks.release(network)
            except NetbayError as exc:
                log.error("undoing setup of network %s: %s", network.name, exc)

    def teardown(
        self, external_id: str, attachments: Iterable[tuple[str, str]]
    ) -> list[tuple[str, NetbayError]]:
        """Detach each (interface name, tag) of the runtime's container, under one hold of
        the lock, past failures: (tag, error) of each that failed."""
        errors = []
        with self.kernel.lock:
            for ifname, tag in attachments:
                try:
                    self.detach(external_id, ifname, tag=tag)
                except NetbayError as exc:
                    errors.append((tag, exc))
        return errors

    def problems(self, network: Network, endpoint: Endpoint, netns: Path) -> list[str]:
        """Where an attachment is not as recorded: its links, its firewall."""
        problems = []
        addresses = self.kernel.addresses_in(netns, endpoint.ifname)
        if addresses is None:
            problems.append(f"{endpoint.ifname} missing in {netns}")
        elif endpoint.address is not None and endpoint.address not in addresses:
            problems.append(f"{endpoint.address} missing on {endpoint.ifname}")
        if addresses is not None and endpoint.address6 is not None:  # one more dump for IPv6
            found6 = self.kernel.addresses6_in(netns, endpoint.ifname) or set()
            if endpoint.address6 not in found6:
                problems.append(f"{endpoint.address6} missing on {endpoint.ifname}")
        with self.kernel.lock:
            if endpoint.host_ifname and not self.kernel.link_exists(endpoint.host_ifname):
                problems.append(f"host interface {endpoint.host_ifname} missing")
            if capabilities(network.driver).firewall and not self.firewall.intact():
                problems.append("netbay's firewall tables are missing")
        return problems


__all__ = ["RuntimeAttachment", "SANDBOX", "SandboxRequest", "Sandboxes"]
