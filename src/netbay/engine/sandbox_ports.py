"""The ports of runtime attachments (engine/sandboxes.py).

Each attachment of a sandbox records the ports it asked for (CNI's portMappings belong to one
attachment, as the reference portmap plugin keeps them); the sandbox publishes their union,
and an attachment's ports go with it when it is detached. An attachment recorded but never
made, its owner killed between the record and the endpoint, is forgotten the same way by gc:
otherwise the runtime's DEL, which finds no endpoint, would leave its ports published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import NotFoundError
from ..model import Container, Endpoint, Network
from ..plan import firewall as fw
from ..plan import ports as plan_ports
from ..store.base import Store
from .firewall import Firewall, hairpins
from .kernel import Kernel


def attachments(container: Container) -> dict[str, dict[str, Any]]:
    """ifname -> {"tag", "ports", and "owner" while it is being made} of a sandbox."""
    raw = container.config.get("attachments")
    return {str(k): dict(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def port_elements(
    store: Store, firewall: Firewall, sandbox: Container, mappings: list[plan_ports.Mapping]
) -> fw.Elements:
    """The firewall elements of MAPPINGS of SANDBOX, to its endpoints as recorded now."""
    if not mappings:
        return {}
    networks = {n.id: n for n in store.networks()}
    only = dataclasses.replace(
        sandbox, config={**sandbox.config, "ports": plan_ports.record_ports(mappings)}
    )
    rules = firewall.port_rules(only, store.endpoints(container_id=sandbox.id), networks)
    return fw.merge(*map(fw.port_elements, rules))


def added_ports(
    store: Store, firewall: Firewall, sandbox: Container, before: Container | None
) -> fw.Elements:
    """The firewall elements of the ports an attachment adds to a sandbox that already has a
    target for them (the attach replaces only what it changes)."""
    if before is None:
        return {}
    have = plan_ports.container_ports(before)
    added = [m for m in plan_ports.container_ports(sandbox) if m not in have]
    return port_elements(store, firewall, sandbox, added)


def _union(entries: Iterable[dict[str, Any]], legacy: list[Any]) -> list[Any]:
    """The ports of ENTRIES, each once; LEGACY (the sandbox's) when one was recorded before
    ports were kept per attachment."""
    union: list[Any] = []
    for entry in entries:
        if "ports" not in entry:
            return legacy
        union += [p for p in entry["ports"] if p not in union]
    return union


def forget(store: Store, firewall: Firewall, sandbox: Container, ifnames: Iterable[str]) -> None:
    """Drop IFNAMES' attachments from SANDBOX's record (it keeps others), and unpublish the
    ports none of the remaining ones asks for."""
    kept = attachments(sandbox)
    for ifname in ifnames:
        kept.pop(ifname, None)
    have = plan_ports.container_ports(sandbox)
    ports = _union(kept.values(), plan_ports.record_ports(have))
    gone = [m for m in have if plan_ports.record_ports([m])[0] not in ports]
    elements = port_elements(store, firewall, sandbox, gone)
    store.update_container(
        sandbox.id, config={**sandbox.config, "attachments": kept, "ports": ports}
    )
    if elements:
        firewall.change({}, elements)


def forget_unmade(
    store: Store, firewall: Firewall, sandbox: Container, alive: Callable[[str], bool]
) -> list[str]:
    """gc: forget SANDBOX's attachments that have no endpoint and no live owner making one
    (a crash between the record and the endpoint, or between the endpoint's removal and the
    record's). Their interface names."""
    made = {e.ifname for e in store.endpoints(container_id=sandbox.id)}
    unmade = [ifname for ifname, entry in attachments(sandbox).items()
              if ifname not in made and not alive(str(entry.get("owner", "")))]
    if unmade:
        forget(store, firewall, sandbox, unmade)
    return unmade


def publish(
    store: Store, firewall: Firewall, external_id: str, ifname: str,
    specs: Iterable[plan_ports.PublishSpec], local_range: tuple[int, int],
) -> list[plan_ports.Mapping]:
    """Publish SPECS for the attachment IFNAME of the runtime's EXTERNAL_ID (a runtime that
    asks after the attach: Docker's ProgramExternalConnectivity), in place of what it
    published: host ports chosen and checked in one transaction, then one nft change."""
    with store.transaction():
        sandbox = store.container_by_external_id(external_id)
        if sandbox is None or ifname not in attachments(sandbox):
            raise NotFoundError(f"endpoint {external_id} not found")
        taken = [m for c in store.containers() if c.id != sandbox.id
                 for m in plan_ports.container_ports(c)]
        chosen = plan_ports.allocate(specs, taken, local_range)
        _set_ports(store, firewall, sandbox, ifname, chosen)
    return chosen


def hairpin(kernel: Kernel, network: Network, endpoint: Endpoint) -> None:
    """Hairpin on the attachment's bridge port once it publishes (as an attach with ports
    sets it): the container reaching its own published port comes back out of that port."""
    if endpoint.host_ifname and hairpins(network):
        kernel.set_hairpin(endpoint.host_ifname)


def unpublish(store: Store, firewall: Firewall, external_id: str, ifname: str) -> bool:
    """The attachment IFNAME of EXTERNAL_ID publishes nothing any more; False if there is no
    such attachment."""
    with store.transaction():
        sandbox = store.container_by_external_id(external_id)
        if sandbox is None or ifname not in attachments(sandbox):
            return False
        _set_ports(store, firewall, sandbox, ifname, [])
    return True


def _set_ports(
    store: Store, firewall: Firewall, sandbox: Container, ifname: str,
    mappings: list[plan_ports.Mapping],
) -> None:
    entries = attachments(sandbox)
    entries[ifname]["ports"] = plan_ports.record_ports(mappings)
    have = plan_ports.container_ports(sandbox)
    ports = _union(entries.values(), plan_ports.record_ports(have))
    kept = [m for m in have if plan_ports.record_ports([m])[0] in ports]
    changed = dataclasses.replace(
        sandbox, config={**sandbox.config, "attachments": entries, "ports": ports}
    )
    gone = port_elements(store, firewall, sandbox, [m for m in have if m not in kept])
    added = port_elements(store, firewall, changed, [m for m in mappings if m not in have])
    store.update_container(sandbox.id, config=dict(changed.config))
    if gone or added:
        firewall.change(added, gone)
