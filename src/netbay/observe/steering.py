"""The daemon's side of `netbay rps`: which interfaces a target names (a network's or a
container's veth ends on both sides, or a host interface), their masks as the kernel reports
them, and setting them: everything is checked before the first write."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, NotFoundError
from ..kernel import netsysfs
from ..model import READY, REMOVING, Container, Endpoint, Network
from ..plan.rps import RpsSetting, format_cpu_list, parse_cpu_list, parse_flows
from . import facts
from .rps import parse_softnet

if TYPE_CHECKING:
    from ..engine import Host

Json = dict[str, Any]


@dataclass(frozen=True)
class Target:
    namespace: str  # "host" or a container's name
    netns: str | None  # None: the daemon's (host) namespace
    name: str
    owner: str  # what the interface is to netbay


class Steering:
    def __init__(self, host: Host) -> None:
        self.host = host

    def _endpoint_targets(self, endpoint: Endpoint) -> list[Target]:
        container = self.host.find_container(endpoint.container_id)
        network = self.host.find_network(endpoint.network_id)
        if container is None or network is None or endpoint.state != READY:
            return []
        owner = f"{container.name} on {network.name}"
        out = []
        if endpoint.host_ifname:
            out.append(Target("host", None, endpoint.host_ifname, f"veth host end: {owner}"))
        if container.netns and Path(container.netns).exists():
            out.append(Target(container.name, container.netns, endpoint.ifname,
                              f"container end: {owner}"))
        return out

    def targets(self, ref: str | None) -> list[Target]:
        """A network or container's endpoint interfaces, or a host interface; None: every
        netbay interface (devices, veth ends on both sides)."""
        host = self.host
        if ref is None:
            out = [Target("host", None, n.device, f"{n.driver} of network {n.name}")
                   for n in host.networks() if n.device and n.state == READY]
            for endpoint in host.endpoints():
                out += self._endpoint_targets(endpoint)
            return out
        kind, obj = resolve(host, ref)
        if isinstance(obj, Network):
            return [t for e in host.endpoints(network_id=obj.id)
                    for t in self._endpoint_targets(e)]
        if isinstance(obj, Container):
            return [t for e in host.endpoints(container_id=obj.id)
                    for t in self._endpoint_targets(e)]
        if facts.read(None).link(ref) is not None:
            return [Target("host", None, ref, "host interface")]
        raise NotFoundError(f"no network, container or host interface {ref}")

    def _report(self, targets: Iterable[Target]) -> list[Json]:
        by_netns: dict[str | None, list[Target]] = {}
        for target in targets:
            by_netns.setdefault(target.netns, []).append(target)
        out = []
        for netns, group in by_netns.items():
            queues = netsysfs.read_queues(netns, [t.name for t in group])
            for target in group:
                q = queues.get(target.name)
                if q is None:
                    continue
                out.append({
                    "namespace": target.namespace, "name": target.name, "owner": target.owner,
                    "rx": [{"queue": f"rx-{i}", "cpus": format_cpu_list(c), "flow_cnt": f}
                           for i, (c, f) in enumerate(zip(q.rps_cpus, q.flow_cnt, strict=True))],
                    "tx": [{"queue": f"tx-{i}",
                            "cpus": None if c is None else format_cpu_list(c)}
                           for i, c in enumerate(q.xps_cpus)],
                })
        return out

    def show(self, ref: str | None) -> Json:
        try:
            softnet = Path("/proc/net/softnet_stat").read_text()
        except OSError:
            softnet = ""
        return {
            "interfaces": self._report(self.targets(ref)),
            "softnet": parse_softnet(softnet),
            "online": format_cpu_list(netsysfs.online_cpus()),
            "sock_flow_entries": netsysfs.sock_flow_entries_now(),
            "notes": [],
        }

    def set(self, body: dict[str, Any]) -> Json:
        ref = str(body.get("Target") or "")
        if not ref:
            raise ConfigError("target", ref, "name an interface, a network or a container")
        cpus = parse_cpu_list("cpus", str(body.get("Cpus", "")), netsysfs.online_cpus())
        flows_raw = body.get("Flows")
        flows = parse_flows("flows", flows_raw) if flows_raw not in (None, "") else (
            4096 if cpus else 0)
        targets = self.targets(ref)
        if not targets:
            raise ConfigError("target", ref, "has no interfaces (no containers attached?)")
        setting = RpsSetting(cpus, flows)
        by_netns: dict[str | None, dict[str, RpsSetting]] = {}
        for target in targets:
            by_netns.setdefault(target.netns, {})[target.name] = setting
        for netns, settings in by_netns.items():  # a missing device refuses before writing
            missing = sorted(set(settings) - set(netsysfs.read_queues(netns, settings)))
            if missing:
                raise NotFoundError(f"interface {missing[0]} of {ref} is not in the kernel")
        for netns, settings in by_netns.items():
            netsysfs.write_rps(netns, settings)
        report = self.show(ref)
        queues = sum(len(e["rx"]) for e in report["interfaces"])
        if flows:
            report["notes"].append(netsysfs.size_sock_flow_table([flows] * queues))
        return report


def resolve(store: Any, ref: str) -> tuple[str, Network | Container | None]:
    """A network or container by exact name or full id first, then by id prefix: "a1" is a
    container's name before it is the start of some network's id."""
    for network in store.networks():
        if ref in (network.name, network.id) and network.state != REMOVING:
            return "network", network
    container = store.container_named(ref)
    if container is None:
        container = next((c for c in store.containers() if c.id == ref), None)
    if container is not None and container.state != REMOVING:
        return "container", container
    network = store.find_network(ref)
    if network is not None and network.state != REMOVING:
        return "network", network
    container = store.find_container(ref)
    if container is not None and container.state != REMOVING:
        return "container", container
    return "", None
