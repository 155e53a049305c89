"""The daemon's side of `netbay trace`: resolve SRC and DST, describe the static path from the
record and the routes, send the probe with the temporary trace chains in place (one nft
transaction in, one out), and hand everything to trace.assemble. A DST in another node's
block of an overlay network ends at the hop that leaves this node (the tunnel or the
underlay, peers.py): the remote side is not traced.

Either address family: an IPv6 literal, or `--family 6`, probes a container's IPv6 address
(ICMPv6 for icmp); without either, a container is probed at its IPv4 address when it has
one."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from ipaddress import IPv4Interface, IPv6Interface, ip_address
from typing import TYPE_CHECKING, Any

from ..drivers import capabilities
from ..errors import ConfigError, FirewallError, KernelError, NotFoundError
from ..model import READY, Container, Endpoint, Network
from . import facts, nft_events, probe
from .hops import Facts, Outcome, Party, Spec, assemble, matches, parse_spec, trace_chains
from .peers import ClusterNodes, known_nodes, leaving_hop, node_for, overlay_section
from .trace_request import IPAddress

if TYPE_CHECKING:
    from ..engine import Host

log = logging.getLogger("netbay.observe")
Json = dict[str, Any]
FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


def literal(ref: str) -> IPAddress | None:
    """REF as an IP address of either family (None: a name)."""
    try:
        return ip_address(ref.strip())
    except ValueError:
        return None


def address_of(endpoint: Endpoint, family: int) -> IPv4Interface | IPv6Interface | None:
    return endpoint.address6 if family == 6 else endpoint.address


def ruleset_text() -> str:
    """`nft -a -t list ruleset`: rules with their handles, sets without their elements (a
    listing context of its own: it deletes nothing, so closing it costs nothing)."""
    import nftables

    ctx = nftables.Nftables()
    ctx.set_handle_output(True)
    ctx.set_terse_output(True)
    rc, out, _ = ctx.cmd("list ruleset")
    return str(out) if rc == 0 else ""


class Tracer:
    def __init__(self, host: Host, cluster_nodes: ClusterNodes | None = None) -> None:
        self.host = host
        self.cluster_nodes = cluster_nodes  # the cluster agent's nodes (None: no agent)

    # --- who is who ------------------------------------------------------------------------
    def _endpoints(self, container: Container, family: int) -> list[tuple[Network, Endpoint]]:
        return [(n, e) for n, e in self.host.container_endpoints(container)
                if e.state == READY and address_of(e, family) is not None]

    def family(self, spec: Spec, source: str, destination: str) -> int:
        """The probe's address family: --family, else that of an address given, else the
        destination container's (IPv4 when it has both)."""
        given = [(field, ref, address) for field, ref in (("destination", destination),
                                                          ("source", source))
                 if (address := literal(ref)) is not None]
        wanted = spec.family or (given[0][2].version if given else None)
        for field, ref, address in given:
            if address.version != wanted:
                why = f" (--family {spec.family})" if spec.family else ""
                raise ConfigError(field, ref.strip(), f"an IPv{address.version} address, and "
                                  f"the probe is IPv{wanted}{why}")
        if wanted is not None:
            return wanted
        container = self.host.find_container(destination.strip())
        if container is not None and not self._endpoints(container, 4) \
                and self._endpoints(container, 6):
            return 6  # an IPv6-only container
        return 4

    def _container_party(self, container: Container, peer: Party | None, family: int) -> Party:
        if container.network_mode == "host":
            return Party("host", "host", detail=f"container {container.name} uses the host's")
        if not container.netns or container.state != "running":
            raise ConfigError("container", container.name,
                              f"is {container.state} with network mode {container.network_mode}:"
                              " nothing to trace")
        endpoints = self._endpoints(container, family)
        if not endpoints:
            other = 10 - family
            if self._endpoints(container, other):
                raise ConfigError("container", container.name, f"has no IPv{family} address "
                                  f"(its networks are IPv{other} only): trace it with -{other}")
            raise ConfigError("container", container.name, "has no network interface")
        chosen = endpoints[0]
        if peer is not None and peer.kind == "container":
            other_end = self.host.find_container(peer.name)
            shared = ({e.network_id for _, e in self._endpoints(other_end, family)}
                      if other_end else set())
            chosen = next(((n, e) for n, e in endpoints if n.id in shared), chosen)
        network, endpoint = chosen
        address = address_of(endpoint, family)
        assert address is not None
        return Party("container", container.name, address.ip, container.netns,
                     f"{endpoint.ifname} on network {network.name}")

    def _host_address(self, peer: Party | None) -> IPAddress | None:
        """The host as a container sees it: the gateway of the container's network (of the
        container's address's family)."""
        if peer is not None and peer.kind == "container" and peer.address is not None:
            for _, address in facts.read(None).addresses:
                if peer.address in address.network and address.ip != peer.address:
                    return address.ip
        return None

    def resolve(self, ref: str, peer: Party | None, as_source: bool, family: int = 4) -> Party:
        ref = ref.strip()
        field = "source" if as_source else "destination"
        if ref == "host":
            return Party("host", "host", self._host_address(peer))
        address = literal(ref)
        if address is None:
            container = self.host.find_container(ref)
            remote = None if container or as_source or family != 4 else self._remote(ref)
            if remote is not None:
                return remote
            if container is None:
                raise NotFoundError(f"no container {ref} (a {field} is a container, `host` or "
                                    "an IP address)")
            return self._container_party(container, peer, family)
        for endpoint in self.host.endpoints():
            if any(a.ip == address for a in endpoint.addresses):
                container = self.host.find_container(endpoint.container_id)
                if container is not None and container.state == "running" and container.netns:
                    network = self.host.find_network(endpoint.network_id)
                    return Party("container", container.name, address, container.netns,
                                 f"{endpoint.ifname} on network {network.name if network else '?'}")
        if any(a.ip == address for _, a in facts.read(None).addresses):
            return Party("host", "host", address)
        if as_source:
            raise ConfigError("source", ref, "not an address of a running container or of the "
                              "host: a probe must start somewhere netbay can enter")
        return Party("address", str(address), address)

    def _remote(self, name: str) -> Party | None:
        """A container on another node of the cluster, by the name it publishes there."""
        for remote in self.host.store.remote_names():
            entry = remote.entry
            if name == entry.name or name in entry.aliases:
                return Party("address", f"{entry.name} (on another node)", entry.address)
        return None

    # --- the static path -------------------------------------------------------------------
    def _attachment(self, address: IPAddress) -> tuple[Network, Endpoint, Container] | None:
        for endpoint in self.host.endpoints():
            if any(a.ip == address for a in endpoint.addresses):
                network = self.host.find_network(endpoint.network_id)
                container = self.host.find_container(endpoint.container_id)
                if network is not None and container is not None:
                    return network, endpoint, container
        return None

    def _hop_text(self, address: IPAddress | None, leaving: bool) -> tuple[str, str | None,
                                                                            str]:
        """How a container's address meets the host: (text, its bridge, the container)."""
        found = self._attachment(address) if address else None
        if found is None:
            return "", None, ""
        network, endpoint, container = found
        if capabilities(network.driver).host_bridge and endpoint.host_ifname:
            pair = f"{container.name}:{endpoint.ifname} ⇄ {endpoint.host_ifname} (host end)"
            if leaving:
                return (f"veth {pair}, a port of bridge {network.device} (network "
                        f"{network.name})", network.device, container.name)
            shown = next(a for a in endpoint.addresses if a.ip == address)
            return (f"bridge {network.device} (network {network.name}) -> port "
                    f"{endpoint.host_ifname} ⇄ veth {container.name}:{endpoint.ifname} "
                    f"{shown}", network.device, container.name)
        return (f"{network.driver} {container.name}:{endpoint.ifname} on parent "
                f"{network.device} (network {network.name}): no host hop in between",
                None, container.name)

    def _overlay_hop(self, address: IPAddress, host: facts.Namespace) -> tuple[str, str, str]:
        """(where, text, who) of the hop a packet to ADDRESS, in another node's block of an
        overlay network, leaves this node by; empty if ADDRESS is in none (overlay networks
        are IPv4's)."""
        if address.version != 4:
            return "", "", ""
        nodes = None
        for network in self.host.networks():
            if not capabilities(network.driver).cluster:
                continue
            nodes = known_nodes(self.cluster_nodes) if nodes is None else nodes
            section = overlay_section(network, host, nodes)
            node = node_for(section, address)
            if node is not None:
                where, text = leaving_hop(section, node)
                return where, text, f"{address} on node {node['name']}"
        return "", "", ""

    def _host_route(self, src: Party, dst: IPAddress, bridge: str | None,
                    egress: str | None) -> str:
        if bridge is None or src.address is None:
            return ""
        if bridge == egress:
            return f"bridged on {bridge} (same network: no routing)"
        route, why = probe.route_get(None, dst, src=src.address, iif=bridge)
        text = probe.route_text(dst, route, why)
        return f"{text} (arriving on {bridge})"

    # --- the probe -------------------------------------------------------------------------
    def _remove(self, remove: str) -> None:
        try:
            self.host.firewall_apply(remove)
        except FirewallError as exc:  # the table was rebuilt meanwhile: nothing left
            log.info("trace chains already gone: %s", exc)

    def _send(self, src: Party, dst: IPAddress, spec: Spec) -> tuple[
        probe.Probe, Outcome, list[nft_events.Event]
    ]:
        sent = probe.Probe.open(src.netns, spec.proto, dst, spec.port)
        request, reply = matches(spec, dst, sent.sport, sent.icmp_id)
        add, remove = trace_chains(secrets.token_hex(3), request, reply)
        try:
            with nft_events.TraceListener() as listener:
                self.host.firewall_apply(add)
                try:
                    outcome = sent.fire(spec.timeout)
                    events = listener.collect(quiet=0.2, deadline=time.monotonic() + 1.0)
                finally:
                    self._remove(remove)
        finally:
            sent.close()
        return sent, outcome, events

    @staticmethod
    def _next_hop(src: Party, dst: IPAddress, route: dict[str, Any] | None) -> tuple[str, str]:
        """The source's next hop towards DST and the state of its neighbour entry ("none":
        no entry): a probe that never reached the host may have had no one to go to."""
        if route is None or route["type"] != "unicast":
            return "", ""
        hop = ip_address(route["gateway"]) if route["gateway"] else dst
        try:
            inside = facts.read(src.netns, neighbours=True)
        except KernelError:
            return "", ""
        state = next((n.state for n in inside.neighbours if n.address == hop), "none")
        return str(hop), state

    def trace(self, body: dict[str, Any]) -> Json:
        spec = parse_spec(body)
        source, destination = str(body.get("Source") or ""), str(body.get("Destination") or "")
        family = self.family(spec, source, destination)
        spec = dataclasses.replace(spec, family=family)
        src = self.resolve(source, None, as_source=True, family=family)
        dst = self.resolve(destination, src, as_source=False, family=family)
        if dst.address is None:
            raise ConfigError("destination", dst.name, f"has no IPv{family} address to probe")
        if src.netns and src.netns == dst.netns:
            raise ConfigError("destination", dst.name, "is the source itself")
        route, why = probe.route_get(src.netns, dst.address)
        src_route = probe.route_text(dst.address, route, why)
        if src.address is None and route and route["prefsrc"]:
            src = dataclasses.replace(src, address=ip_address(route["prefsrc"]))
        src_hop, bridge, _ = self._hop_text(src.address, leaving=True)
        sent, outcome, events = self._send(src, dst.address, spec)
        next_hop = self._next_hop(src, dst.address, route) if not outcome.delivered else ("", "")
        conntrack = probe.flow(spec.proto, sent.sport, sent.icmp_id, dst.address)
        final = ip_address(conntrack[1][0]) if conntrack else dst.address
        host = facts.read(None, tunnels=True)
        dst_hop, egress, final_name = self._hop_text(final, leaving=False)
        dst_where = ""
        if not dst_hop:
            dst_where, dst_hop, final_name = self._overlay_hop(final, host)
        if src.address is None and outcome.source is not None:
            src = dataclasses.replace(src, address=outcome.source)
        rules, chains = nft_events.parse_ruleset(ruleset_text())
        found = Facts(
            src=src, dst=dst, spec=spec, outcome=outcome, sport=sent.sport,
            icmp_id=sent.icmp_id, src_route=src_route, src_hop=src_hop,
            src_hop_where="into the host" if bridge else "on the parent",
            host_route=self._host_route(src, final, bridge, egress)
            or ("the host's own packet: output hook, then postrouting" if src.kind == "host"
                else ""),
            dst_hop=dst_hop, dst_hop_where=dst_where,
            dst_name=final_name or dst.name,
            events=events, chains=chains, rules=rules,
            names={lk.index: lk.name for lk in host.links}, conntrack=conntrack,
            ip_forward=facts.sysctl(FORWARDING[family]) or "?", next_hop=next_hop,
        )
        return assemble(found)
