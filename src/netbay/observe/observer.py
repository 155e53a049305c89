"""The daemon's side of seeing the network: gathers the record and the kernel's state (in the
daemon's host namespace, with its nft context) and hands them to the pure builders."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network, summarize_address_range
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.firewall import network_rules
from ..errors import ConfigError, FirewallError, KernelError, NotFoundError
from ..model import READY, REMOVING, Container, Endpoint, IPNetwork, Network
from ..plan import firewall as fw
from . import facts
from .bgp import BgpSessions, read_bgp
from .peers import ClusterNodes, known_nodes
from .steering import resolve
from .topology import Inputs, Nat, Published, build

if TYPE_CHECKING:
    from ..engine import Host

log = logging.getLogger("netbay.observe")
Json = dict[str, Any]
Listing = Sequence[dict[str, Any]]  # `nft -j list ...`


# --- netbay's nft maps and sets, as the kernel holds them (pure parsers) --------------------
def _elements(listing: Listing) -> list[Any]:
    for item in listing:
        body = item.get("map") or item.get("set")
        if body is not None:
            return list(body.get("elem") or [])
    return []


def _prefix(value: Any) -> IPNetwork:
    if isinstance(value, dict) and "prefix" in value:
        return ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}")
    if isinstance(value, dict) and "range" in value:
        low, high = value["range"]
        if ":" in str(low):
            return next(summarize_address_range(IPv6Address(low), IPv6Address(high)))
        return next(summarize_address_range(IPv4Address(low), IPv4Address(high)))
    return ip_network(str(value))


def parse_published(pub_any: Listing, pub_ip: Listing, pub_any6: Listing = (),
                    pub_ip6: Listing = ()) -> list[Published]:
    """The published ports of netbay's maps, IPv4's (PUB_ANY, PUB_IP) and IPv6's."""
    out = []
    for key, value in (e for m in (pub_any, pub_any6) for e in _elements(m)
                       if isinstance(e, list)):
        proto, port = key["concat"]
        target, target_port = value["concat"]
        out.append(Published(str(proto), None, int(port), ip_address(target), int(target_port)))
    for key, value in (e for m in (pub_ip, pub_ip6) for e in _elements(m)
                       if isinstance(e, list)):
        host_ip, proto, port = key["concat"]
        target, target_port = value["concat"]
        out.append(Published(str(proto), ip_address(host_ip), int(port), ip_address(target),
                             int(target_port)))
    return out


def parse_nat(masq: Listing, snat: Listing, masq6: Listing = ()) -> list[Nat]:
    out = [Nat(_prefix(e)) for e in _elements(masq)]
    out += [Nat(_prefix(k), IPv4Address(v)) for k, v in
            (e for e in _elements(snat) if isinstance(e, list))]
    return out + [Nat(_prefix(e)) for e in _elements(masq6)]


def expected_nat(network: Network) -> list[Nat]:
    rules = network_rules(network)
    if rules is None or rules.internal:
        return []
    # NAT66 whatever IPv4 does, unless the network's IPv6 is routed (gateway_mode_ipv6)
    nat66 = [Nat(s) for s in rules.subnets6] if rules.masquerade and not rules.routed6 else []
    if rules.snat_to is not None:
        return [Nat(s, rules.snat_to) for s in rules.subnets] + nat66
    return ([Nat(s) for s in rules.subnets] if rules.masquerade else []) + nat66


def published_of(rule: fw.PortRules) -> list[Published]:
    """What one published port puts in the maps, each family to the container's address of
    it (as plan/firewall.port_elements); `None` host: every address of that family."""
    host, out = rule.host_ip, []
    anywhere = host is None or host.is_unspecified
    if rule.target is not None and (host is None or host.version == 4):
        out.append(Published(rule.proto, None if anywhere else host, rule.host_port,
                             rule.target, rule.container_port))
    if rule.target6 is not None and (host is None or host.version == 6 and not host.is_loopback):
        out.append(Published(rule.proto, None if anywhere else host, rule.host_port,
                             rule.target6, rule.container_port))
    return out


class Observer:
    """Reads what the pictures, traces and checks need; one per daemon."""

    def __init__(self, host: Host, cluster_nodes: ClusterNodes | None = None,
                 bgp_sessions: BgpSessions | None = None) -> None:
        self.host = host
        self.cluster_nodes = cluster_nodes  # the cluster agent's nodes (None: no agent)
        self.bgp_sessions = bgp_sessions  # this node's BIRD's (None: no agent)

    # --- record ----------------------------------------------------------------------------
    def live_endpoints(self) -> list[Endpoint]:
        return [e for e in self.host.endpoints() if e.state != REMOVING]

    def expected_ports(self, networks: dict[str, Network]) -> dict[str, list[Published]]:
        by_container: dict[str, list[Endpoint]] = {}
        for endpoint in self.live_endpoints():
            by_container.setdefault(endpoint.container_id, []).append(endpoint)
        out = {}
        for container in self.host.containers():
            if container.state == REMOVING:
                continue
            rules = self.host.port_rules(container, by_container.get(container.id, []), networks)
            out[container.id] = [p for r in rules for p in published_of(r)]
        return out

    # --- kernel ----------------------------------------------------------------------------
    def _nft(self, what: str) -> list[dict[str, Any]]:
        try:
            return self.host.firewall_listing(what)
        except FirewallError:
            return []

    def kernel_ports(self) -> list[Published]:
        return parse_published(*(self._nft(f"map inet {fw.TABLE} {name}")
                                 for name in ("pub_any", "pub_ip", "pub_any6", "pub_ip6")))

    def kernel_nat(self) -> list[Nat]:
        return parse_nat(self._nft(f"set inet {fw.TABLE} masq_nets"),
                         self._nft(f"map inet {fw.TABLE} snat_nets"),
                         self._nft(f"set inet {fw.TABLE} masq_nets6"))

    @staticmethod
    def inside(container: Container) -> facts.Namespace | None:
        if not container.netns or not Path(container.netns).exists():
            return None
        try:
            return facts.read(container.netns, neighbours=True)
        except KernelError as exc:
            log.info("cannot read %s: %s", container.netns, exc)
            return None

    def orphan_netns(self, containers: Iterable[Container]) -> list[str]:
        directory = self.host.paths.netns_dir
        known = {Path(c.netns).name for c in containers if c.netns}
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir()
                      if p.name.startswith("netbay-") and p.name not in known)

    # --- pictures --------------------------------------------------------------------------
    def topology(self) -> Json:
        networks = self.host.networks()
        containers = self.host.containers()
        inputs = Inputs(
            networks=networks,
            containers=containers,
            endpoints=self.host.endpoints(),
            host=facts.read(None, tunnels=True),
            inside={c.id: self.inside(c) for c in containers if c.netns},
            published=self.kernel_ports(),
            expected_ports=self.expected_ports({n.id: n for n in networks}),
            nat=self.kernel_nat(),
            expected_nat={n.id: expected_nat(n) for n in networks},
            orphan_netns=self.orphan_netns(containers),
            firewall=self.host.firewall_intact(),
            cluster_nodes=known_nodes(self.cluster_nodes),
            bgp=read_bgp(self.bgp_sessions),
        )
        return build(inputs)

    def container_extras(self, container: Container) -> Json:
        """Routes and neighbour table of a container, of both families (netbay's addition to
        inspect)."""
        inside = self.inside(container)
        if inside is None:
            return {}
        return {
            "Routes": [
                {"Destination": str(r.destination or "default"),
                 "Gateway": str(r.gateway or ""), "Interface": r.device,
                 "Source": str(r.source or ""), "Type": r.kind}
                for r in inside.routes + inside.routes6
            ],
            "Neighbors": [
                {"IPAddress": str(n.address), "MacAddress": n.mac, "Interface": n.device,
                 "State": n.state}
                for n in inside.neighbours
            ],
        }

    def find(self, ref: str) -> tuple[str, Network | Container]:
        """A network or a container by name or id (networks first, as `network` verbs)."""
        kind, obj = resolve(self.host, ref)
        if obj is None:
            raise NotFoundError(f"no network or container {ref}")
        return kind, obj

    def capture_target(self, ref: str, network_ref: str | None) -> Json:
        from .capture import target_for_endpoint, target_for_network

        kind, found = self.find(ref)
        if isinstance(found, Network):
            return target_for_network({"name": found.name, "driver": found.driver,
                                       "device": found.device})
        container = found
        if container.network_mode == "host":
            raise ConfigError("capture", container.name, "uses the host's network: capture on "
                              "a host interface with tcpdump -i")
        pairs = [(n, e) for n, e in self.host.container_endpoints(container) if e.state == READY]
        if network_ref:
            pairs = [(n, e) for n, e in pairs if network_ref in (n.name, n.id)]
        if not pairs:
            where = f" on network {network_ref}" if network_ref else ""
            raise NotFoundError(f"container {container.name} has no interface{where}")
        network, endpoint = pairs[0]
        target = target_for_endpoint(container.name, {
            "host_ifname": endpoint.host_ifname, "ifname": endpoint.ifname,
            "network": network.name}, container.netns or "")
        if len(pairs) > 1:
            target["what"] += (f"; also on {', '.join(n.name for n, _ in pairs[1:])} "
                               "(--network picks)")
        return target
