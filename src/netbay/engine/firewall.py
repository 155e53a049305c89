"""The firewall side of the engine: netbay's nft table, derived from the record.

Every change is one nft transaction of set/map elements; anything unexpected (the table
flushed by someone, an element missing) falls back to rebuilding the whole table from the
record, which is always the truth.

The data-plane fast path (docs/design.md): where the kernel has flowtables (asked once per
Firewall, i.e. per namespace), the table also has one, hooked on the bridges and the
uplinks; its devices change with the networks, never with an attach.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

from ..drivers import capabilities
from ..drivers.base import OPT_POOL, OPT_POOL6, parse_bool
from ..errors import FirewallError
from ..kernel.uplinks import ForwardingLinks, forwarding_links
from ..model import REMOVING, Container, Endpoint, Network, only_v4
from ..plan import firewall as fw
from ..plan.ports import container_ports
from ..store.base import Store
from .kernel import Flows, Nftables

log = logging.getLogger("netbay.firewall")

OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_HOST_IPV4 = "com.docker.network.host_ipv4"


def network_rules(network: Network) -> fw.NetworkRules | None:
    caps = capabilities(network.driver)
    if not caps.firewall or not (network.device or (caps.cluster and not caps.host_bridge)):
        return None
    options = network.options
    snat = options.get(OPT_HOST_IPV4)
    pool = options.get(OPT_POOL) if capabilities(network.driver).cluster else None
    pool6 = options.get(OPT_POOL6) if capabilities(network.driver).cluster else None
    return fw.NetworkRules(
        device=network.device,
        subnets=tuple(only_v4(s.subnet) for s in network.subnets4),
        internal=network.internal,
        icc=parse_bool(OPT_ICC, options.get(OPT_ICC, "true")),
        masquerade=parse_bool(OPT_MASQ, options.get(OPT_MASQ, "true")),
        snat_to=IPv4Address(snat) if snat else None,
        pool=IPv4Network(pool) if pool else None,
        # a bridge network's, and a dual-stack cluster share's (overlay: a bridge; routed)
        subnets6=tuple(s.subnet for s in network.subnets6
                       if (network.device or pool6) and isinstance(s.subnet, IPv6Network)),
        routed6=fw.routed6(options),
        pool6=IPv6Network(pool6) if pool6 else None,
    )


def endpoint_rules(network: Network, endpoint: Endpoint) -> fw.EndpointRules | None:
    rules = network_rules(network)
    if rules is None or rules.device is None or not endpoint.host_ifname or not endpoint.mac \
            or not endpoint.addresses:
        return None  # a routed endpoint: rp_filter on its veth stops spoofing
    return fw.EndpointRules(
        endpoint.host_ifname, endpoint.mac, endpoint.address.ip if endpoint.address else None,
        rules.icc, endpoint.address6.ip if endpoint.address6 else None,
    )


@dataclass(frozen=True, eq=False)
class Firewall:
    """netbay's nft tables as the record says: element changes, a rebuild, the check."""

    store: Store
    nft: Nftables
    flows: Flows
    links: Callable[[], ForwardingLinks] = forwarding_links  # asked only with flowtables
    _flowtables: dict[str, bool] = field(default_factory=dict, init=False, repr=False)

    def _primary(
        self, networks: dict[str, Network], endpoints: Iterable[Endpoint]
    ) -> Endpoint | None:
        """Published ports lead to the first endpoint on a network that publishes (a bridge
        network that is not internal)."""
        for endpoint in endpoints:
            network = networks.get(endpoint.network_id)
            if network and can_publish(network) and endpoint.addresses:
                return endpoint
        return None

    def port_rules(
        self, container: Container, endpoints: Iterable[Endpoint], networks: dict[str, Network]
    ) -> list[fw.PortRules]:
        """The container's published ports to its primary endpoint's addresses (each host
        address to the container's address of its family)."""
        primary = self._primary(networks, endpoints)
        if primary is None:
            return []
        target = primary.address.ip if primary.address else None
        target6 = primary.address6.ip if primary.address6 else None
        return [
            fw.PortRules(m.proto, m.host_ip, m.host_port, target, m.container_port, target6)
            for m in container_ports(container)
        ]

    def rebuild(self) -> None:
        """Replace netbay's tables with what the record says, in one transaction."""
        networks = {n.id: n for n in self.store.networks() if n.state != REMOVING}
        net_rules = [r for r in map(network_rules, networks.values()) if r]
        ep_rules, port_rules = [], []
        containers = {c.id: c for c in self.store.containers() if c.state != REMOVING}
        by_container: dict[str, list[Endpoint]] = {}
        for endpoint in self.store.endpoints():
            network = networks.get(endpoint.network_id)
            if endpoint.state == REMOVING or network is None:
                continue
            rules = endpoint_rules(network, endpoint)
            if rules:
                ep_rules.append(rules)
            by_container.setdefault(endpoint.container_id, []).append(endpoint)
        for container_id, endpoints in by_container.items():
            if container_id in containers:
                port_rules += self.port_rules(containers[container_id], endpoints, networks)
        bridges = {r.device for r in net_rules if r.device}
        devices = self._fast_path_devices(bridges) if self.fast_path() else None
        self.nft.apply(fw.rebuild(net_rules, ep_rules, port_rules, devices))

    def fast_path(self) -> bool:
        """Whether the kernel has flowtables: one throwaway transaction, the first time."""
        if "answer" not in self._flowtables:
            try:
                self.nft.apply(fw.FLOWTABLE_PROBE)
                self._flowtables["answer"] = True
            except FirewallError as exc:
                log.info("no flowtables here (%s): no data-plane offload", exc)
                self._flowtables["answer"] = False
        return self._flowtables["answer"]

    def _fast_path_devices(self, bridges: set[str]) -> set[str]:
        """The flowtable's devices: BRIDGES and the uplinks, those that exist."""
        links = self.links()
        return (bridges | links.uplinks) & links.names

    def flowtable_devices(self) -> set[str]:
        """The devices the kernel has in netbay's flowtable (it drops a deleted link)."""
        listed = self.nft.list(f"flowtable {fw.INET} {fw.TABLE} {fw.FLOWTABLE}")
        found = [o["flowtable"].get("dev", []) for o in listed if "flowtable" in o]
        return {d for dev in found for d in ([dev] if isinstance(dev, str) else dev)}

    def _device_change(self, add: fw.Elements, remove: fw.Elements) -> str:
        """A network's bridge that comes or goes is hooked or unhooked, and the uplinks are
        looked at again; nothing for any other change (an attach)."""
        brought, gone = fw.bridges_changed(add, remove)
        if not (brought or gone) or not self.fast_path():
            return ""
        networks = (n for n in self.store.networks() if n.state != REMOVING)
        bridges = {r.device for r in map(network_rules, networks) if r and r.device}
        had = self.flowtable_devices()
        want = self._fast_path_devices((bridges | brought) - gone)
        return fw.flowtable_devices(want - had, had - want)

    def change(self, add: fw.Elements, remove: fw.Elements) -> None:
        """One transaction; if the table is not as expected, rebuild it from the record. The
        running flows of what goes end: the rules accept a tracked flow by its state alone
        (and a flow's offload ends with its conntrack entry)."""
        try:
            commands = fw.change(add, remove)
            self.nft.apply("\n".join(filter(None, [commands, self._device_change(add, remove)])))
        except FirewallError as exc:
            log.warning("nft change failed (%s); rebuilding netbay's table from the record", exc)
            self.rebuild()
        departed = fw.departed_addresses(add, remove)
        for address in sorted(fw.released_addresses(add, remove), key=lambda a: (a.version, a)):
            self.flows.forget(address, started=address in departed)

    def intact(self) -> bool:
        return self.nft.has_chain(fw.INET, fw.TABLE, "forward") and self.nft.has_chain(
            fw.BRIDGE, fw.TABLE, "prerouting"
        )

    def listing(self, what: str) -> list[dict[str, Any]]:
        """`nft list WHAT` as JSON objects."""
        return self.nft.list(what)

    def apply(self, commands: str) -> None:
        """Commands of netbay's own beyond the record's elements (the tracer's rules)."""
        self.nft.apply(commands)


def can_publish(network: Network) -> bool:
    return capabilities(network.driver).publish and not network.internal


def publish_families(network: Network) -> set[int]:
    """The address families a container's published ports reach on NETWORK (its primary):
    a host address of another family has nothing to map to."""
    return {s.version for s in network.subnets}


def hairpins(network: Network) -> bool:
    """A container reaching its own published port comes back through its bridge port, which
    must let it (hairpin); a routed veth has no bridge: the host routes it back."""
    return capabilities(network.driver).host_bridge
