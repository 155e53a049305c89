"""The host's netbay picture, built from the kernel as it is and checked against the record.

`build` is pure: it takes what the record holds and what the kernel reported (facts.py), and
returns a plain JSON-able dict; every object the two disagree on carries a `problems` list
(and the whole picture a flat one). `render_text` draws that dict as a tree. Both are used
by the daemon (build) and the thin CLI (render), so neither imports anything heavy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from ..model import READY, Container, Endpoint, IPAddress, IPNetwork, Network
from .bgp import BgpFacts, bgp_lines, bgp_problems, bgp_section
from .facts import Link, Namespace
from .peers import ClusterNode, overlay_lines, overlay_problems, overlay_section
from .trace_request import hostport
from .tree import addr_text, mark, tree

NETBAY_PREFIXES = ("nbv", "nbs")  # links netbay names: veth host ends, host-link shims
Json = dict[str, Any]


@dataclass(frozen=True)
class Published:
    """A port mapping: in netbay's nft maps (kernel) or derived from the record."""

    proto: str
    host_ip: IPAddress | None  # None: every host address of the target's family
    host_port: int
    target: IPAddress
    target_port: int

    def key(self) -> tuple[str, str, int]:
        anywhere = "::" if self.target.version == 6 else "0.0.0.0"
        return (self.proto, str(self.host_ip or anywhere), self.host_port)


@dataclass(frozen=True)
class Nat:
    """Egress NAT of one subnet: masquerade, or SNAT to a fixed address."""

    subnet: IPNetwork
    to: IPv4Address | None = None  # None: masquerade

    def text(self) -> str:
        what = f"snat to {self.to}" if self.to else "masquerade"
        return f"IPv6 {what}" if self.subnet.version == 6 else what


@dataclass
class Inputs:
    networks: Sequence[Network]
    containers: Sequence[Container]
    endpoints: Sequence[Endpoint]
    host: Namespace
    inside: Mapping[str, Namespace | None]  # container id -> its namespace (None: unreadable)
    published: Sequence[Published] = ()  # what the kernel's maps hold
    expected_ports: Mapping[str, Sequence[Published]] = field(default_factory=dict)  # by container
    nat: Sequence[Nat] = ()  # what the kernel's sets hold
    expected_nat: Mapping[str, Sequence[Nat]] = field(default_factory=dict)  # by network id
    orphan_netns: Sequence[str] = ()
    firewall: bool = True
    cluster_nodes: Sequence[ClusterNode] = ()  # the cluster agent's (none: not joined)
    bgp: BgpFacts = BgpFacts()  # this node's BIRD's sessions (for routed networks)


def _link_json(link: Link | None, host: Namespace, name: str = "") -> Json:
    if link is None:
        return {"name": name, "present": False, "problems": []}
    return {
        "name": link.name, "present": True, "kind": link.kind or "device", "mac": link.mac,
        "mtu": link.mtu, "up": link.up, "details": dict(link.details),
        "addresses": [str(a) for a in host.addresses_of(link.name)], "problems": [],
    }


def _endpoint_problems(
    endpoint: Endpoint, inside: Namespace | None, peer_index: int | None, kinds: Iterable[str]
) -> tuple[Json, list[str]]:
    """The container end of an endpoint as the kernel has it, and what disagrees."""
    problems = []
    end: Json = {"ifname": endpoint.ifname, "present": False, "addresses": []}
    if endpoint.state != READY:
        problems.append(f"endpoint is {endpoint.state} in the record")
    if inside is None:
        problems.append("container namespace missing")
        return end, problems
    link = inside.link(endpoint.ifname)
    if link is None:
        problems.append(f"{endpoint.ifname} missing in the container")
        return end, problems
    addresses = inside.addresses_of(link.name)
    end.update(present=True, kind=link.kind, mac=link.mac, mtu=link.mtu, up=link.up,
               addresses=[str(a) for a in addresses])
    if link.kind not in kinds:
        problems.append(f"{endpoint.ifname} is a {link.kind or 'device'}, not {'/'.join(kinds)}")
    if peer_index is not None and link.peer != peer_index:
        problems.append(f"{endpoint.ifname} is not the peer of the host end")
    for recorded in endpoint.addresses:
        if recorded not in addresses:
            problems.append(f"{recorded} (recorded) not on {endpoint.ifname}")
    if endpoint.mac and link.mac and endpoint.mac.lower() != link.mac.lower():
        problems.append(f"MAC {link.mac} differs from the recorded {endpoint.mac}")
    return end, problems


def _network_head(network: Network, nat: Sequence[Nat]) -> Json:
    kernel_nat = [n for n in nat if any(n.subnet == s.subnet for s in network.subnets)]
    subnets = network.subnets4 + network.subnets6  # IPv4 first, as everywhere it is shown
    return {
        "id": network.id, "name": network.name, "driver": network.driver,
        "builtin": network.builtin, "internal": network.internal, "state": network.state,
        "subnets": [str(s.subnet) for s in subnets],
        "gateways": [str(s.gateway) for s in subnets if s.gateway], "ipv6": network.ipv6,
        "mode": network.options.get("macvlan_mode") or network.options.get("ipvlan_mode") or "",
        "nat": [n.text() for n in kernel_nat],
        "device": None, "ports": [], "members": [], "shim": None, "overlay": None,
        "bgp": None, "problems": [],
    }


def _bridge_network(net: Json, network: Network, inp: Inputs, names: dict[str, str]) -> None:
    host = inp.host
    bridge = host.link(network.device or "")
    net["device"] = dict(_link_json(bridge, host, network.device or ""), role="bridge")
    if bridge is None:
        net["device"]["problems"].append("bridge missing in the kernel")
    elif bridge.kind != "bridge":
        net["device"]["problems"].append(f"{bridge.name} is a {bridge.kind}, not a bridge")
    else:
        for gateway in net["gateways"]:
            if not any(str(a.ip) == gateway for a in host.addresses_of(bridge.name)):
                net["device"]["problems"].append(f"gateway {gateway} not on {bridge.name}")
    mine = [e for e in inp.endpoints if e.network_id == network.id]
    recorded = {e.host_ifname for e in mine}
    for endpoint in mine:
        link = host.link(endpoint.host_ifname or "")
        port = _link_json(link, host, endpoint.host_ifname or "")
        port["container"] = names.get(endpoint.container_id, endpoint.container_id[:12])
        end, problems = _endpoint_problems(
            endpoint, inp.inside.get(endpoint.container_id), link.index if link else None,
            ("veth",),
        )
        port["end"] = end
        if link is None:
            problems.insert(0, f"{endpoint.host_ifname} in the record but not in the kernel")
        elif bridge is not None and link.master != bridge.index:
            problems.append(f"{link.name} is not a port of {bridge.name}")
        port["problems"] = problems
        net["ports"].append(port)
    if bridge is not None:
        for link in host.links:
            if link.master == bridge.index and link.name not in recorded:
                port = dict(_link_json(link, host), container=None, end=None)
                port["problems"] = ["a port of netbay's bridge that netbay's record lacks"]
                net["ports"].append(port)


def _parent_network(net: Json, network: Network, inp: Inputs, names: dict[str, str]) -> None:
    host = inp.host
    parent = host.link(network.device or "")
    net["device"] = dict(_link_json(parent, host, network.device or ""), role="parent")
    if parent is None:
        net["device"]["problems"].append("parent missing in the kernel")
    kind = network.driver
    for endpoint in (e for e in inp.endpoints if e.network_id == network.id):
        end, problems = _endpoint_problems(
            endpoint, inp.inside.get(endpoint.container_id), None, (kind,)
        )
        member = dict(end, container=names.get(endpoint.container_id, endpoint.container_id[:12]),
                      problems=problems)
        net["members"].append(member)
    shim_name = f"nbs{network.id[:12]}"
    shim = host.link(shim_name)
    if shim is not None or any(s.aux_addresses.get("host_link") for s in network.subnets):
        net["shim"] = _link_json(shim, host, shim_name)
        if shim is None:
            net["shim"]["problems"].append("host link missing in the kernel")


def _nat_problems(net: Json, network: Network, inp: Inputs) -> None:
    expected = inp.expected_nat.get(network.id, ())
    actual = {n for n in inp.nat if any(n.subnet == s.subnet for s in network.subnets)}
    for nat in expected:
        if nat not in actual:
            net["problems"].append(f"{nat.text()} of {nat.subnet} missing in nftables")
    for nat in actual - set(expected):
        net["problems"].append(f"nftables NATs {nat.subnet}, the record says it should not")


def _networks(inp: Inputs, names: dict[str, str]) -> list[Json]:
    from ..drivers import capabilities, find_driver  # not at the top: the CLI needs neither
    out = []
    for network in sorted(inp.networks, key=lambda n: (not n.builtin, n.name)):
        net = _network_head(network, inp.nat)
        net["netns_mode"] = getattr(find_driver(network.driver), "mode", "private")
        if network.state != READY:
            net["problems"].append(f"network is {network.state} in the record")
        if capabilities(network.driver).host_bridge and network.device:  # none: not used yet
            _bridge_network(net, network, inp, names)
            if capabilities(network.driver).cluster:
                net["overlay"] = overlay_section(network, inp.host, inp.cluster_nodes)
        elif network.device:
            _parent_network(net, network, inp, names)
        if capabilities(network.driver).bgp:
            net["bgp"] = bgp_section(network, inp.host, inp.bgp, inp.cluster_nodes)
        if inp.firewall:
            _nat_problems(net, network, inp)
        out.append(net)
    return out


def _containers(inp: Inputs, networks: dict[str, str]) -> list[Json]:
    out = []
    for container in sorted(inp.containers, key=lambda c: c.name):
        entry: Json = {
            "id": container.id, "name": container.name, "state": container.state,
            "pid": container.pid if container.state == "running" else 0,
            "netns": container.netns or "", "mode": container.network_mode,
            "interfaces": [], "routes": [], "problems": [],
        }
        inside = inp.inside.get(container.id)
        if container.netns and inside is None:
            entry["problems"].append(f"namespace {container.netns} missing")
        for endpoint in (e for e in inp.endpoints if e.container_id == container.id):
            link = inside.link(endpoint.ifname) if inside else None
            entry["interfaces"].append({
                "ifname": endpoint.ifname, "network": networks.get(endpoint.network_id, "?"),
                "host_ifname": endpoint.host_ifname or "",
                "addresses": [str(a) for a in inside.addresses_of(endpoint.ifname)]
                if inside and link else [],
                "recorded": str(endpoint.address) if endpoint.address else "",
                "recorded6": str(endpoint.address6) if endpoint.address6 else "",
                "mac": link.mac if link else "",
            })
        if inside is not None:
            entry["routes"] = [str(r) for r in inside.routes + inside.routes6]
        out.append(entry)
    return out


def _published(inp: Inputs, names: dict[str, str]) -> list[Json]:
    owners = {p.key(): cid for cid, ports in inp.expected_ports.items() for p in ports}
    expected = {p.key(): p for ports in inp.expected_ports.values() for p in ports}
    actual = {p.key(): p for p in inp.published}
    out = []
    for key in sorted(set(expected) | set(actual), key=lambda k: (k[2], k[0], k[1])):
        port = actual.get(key) or expected[key]
        entry: Json = {
            "proto": port.proto, "host_ip": key[1], "host_port": port.host_port,
            "host": hostport(key[1], port.host_port), "to": hostport(port.target, port.target_port),
            "target": str(port.target), "target_port": port.target_port,
            "container": names.get(owners.get(key, ""), ""), "problems": [],
        }
        want = expected.get(key)
        if key not in actual:
            entry["problems"].append("in the record but not in nftables")
        elif want is None:
            entry["problems"].append("in nftables but not in the record")
        elif (want.target, want.target_port) != (port.target, port.target_port):
            entry["problems"].append(
                f"nftables sends it to {hostport(port.target, port.target_port)}, the record to "
                f"{hostport(want.target, want.target_port)}"
            )
        out.append(entry)
    return out


def _host_interfaces(inp: Inputs, used: set[str]) -> list[Json]:
    out = []
    for link in inp.host.links:
        if link.name == "lo" or link.name in used or link.master is not None:
            continue
        entry = _link_json(link, inp.host)
        if link.name.startswith(NETBAY_PREFIXES):
            entry["problems"].append("named like a netbay link, but netbay's record lacks it")
        out.append(entry)
    return out


def _collect_problems(topo: Json) -> list[str]:
    found = []
    for net in topo["networks"]:
        found += [f"network {net['name']}: {p}" for p in net["problems"]]
        for part in (net["device"], net["shim"]):
            if part:
                found += [f"network {net['name']}: {part['name']}: {p}" for p in part["problems"]]
        for port in net["ports"] + net["members"]:
            label = port.get("name") or f"{port.get('container')}:{port.get('ifname')}"
            found += [f"network {net['name']}: {label}: {p}" for p in port["problems"]]
        found += [f"network {net['name']}: {p}" for p in overlay_problems(net) + bgp_problems(net)]
    for c in topo["containers"]:
        found += [f"container {c['name']}: {p}" for p in c["problems"]]
    for p in topo["published"]:
        found += [f"port {p['proto']} {p['host']}: {x}" for x in p["problems"]]
    for i in topo["interfaces"]:
        found += [f"interface {i['name']}: {x}" for x in i["problems"]]
    found += [f"netns {n}: a netbay namespace no container of the record owns"
              for n in topo["orphan_netns"]]
    if not topo["firewall"]:
        found.append("netbay's nftables tables are missing")
    return found


def build(inp: Inputs) -> Json:
    names = {c.id: c.name for c in inp.containers}
    networks = _networks(inp, names)
    used = {n["device"]["name"] for n in networks if n["device"]}
    used |= {n["shim"]["name"] for n in networks if n["shim"]}
    used |= {p["name"] for n in networks for p in n["ports"]}
    used |= {e.host_ifname for e in inp.endpoints if e.host_ifname}  # routed: no bridge
    used |= {n["overlay"]["tunnel"]["name"] for n in networks
             if n["overlay"] and n["overlay"]["tunnel"]}
    published = _published(inp, names)
    topo: Json = {
        "networks": networks,
        "containers": _containers(inp, {n.id: n.name for n in inp.networks}),
        "published": published,
        "interfaces": _host_interfaces(inp, used),
        "orphan_netns": list(inp.orphan_netns),
        "firewall": inp.firewall,
    }
    topo["problems"] = _collect_problems(topo)
    return topo


# --- text ----------------------------------------------------------------------------------
def _network_line(net: Json) -> str:
    parts = [f"network {net['name']}", net["driver"] + (f" {net['mode']}" if net["mode"] else "")]
    if net["subnets"]:
        parts.append(", ".join(net["subnets"]))
    if net["gateways"]:
        parts.append("gw " + ", ".join(net["gateways"]))
    if net["internal"]:
        parts.append("internal")
    if net["nat"]:
        parts.append("nat " + ", ".join(net["nat"]))
    if net.get("netns_mode", "private") != "private":
        parts.append("(a network mode: no kernel objects of its own)")
    return "  ".join(parts) + mark(net["problems"])


def _device_lines(net: Json) -> list[tuple[int, str]]:
    device = net["device"]
    if not device:
        return []
    lines = [(1, f"{device['role']} {device['name']}  {addr_text(device)}"
                 + ("" if device["present"] else "  (missing)") + mark(device["problems"]))]
    for port in net["ports"]:
        end = port.get("end")
        where = (f"  ⇄ container {port['container']} {end['ifname']}  {addr_text(end)}"
                 if end else f"  {addr_text(port)}")
        kind = port.get("kind") or "veth"
        lines.append((2, f"{kind} {port['name']}{where}" + mark(port["problems"])))
    for member in net["members"]:
        lines.append((2, f"{net['driver']} {member['container']}:{member['ifname']}  "
                         f"{addr_text(member)}" + mark(member["problems"])))
    if net["shim"]:
        shim = net["shim"]
        lines.append((2, f"shim {shim['name']}  {addr_text(shim)}" + mark(shim["problems"])))
    return lines


def render_text(topo: Json) -> str:
    items: list[tuple[int, str]] = [(0, "host")]
    for iface in topo["interfaces"]:
        items.append((1, f"interface {iface['name']}  {iface.get('kind', '')}  {addr_text(iface)}"
                         + mark(iface["problems"])))
    for net in topo["networks"]:
        items.append((1, _network_line(net)))
        items += [(d + 1, t) for d, t in _device_lines(net) + overlay_lines(net) + bgp_lines(net)]
    for port in topo["published"]:
        target = f"{port['container'] or '?'} {port['to']}"
        items.append((1, f"port {port['proto']} {port['host']} -> "
                         f"{target}" + mark(port["problems"])))
    items.append((0, "containers"))
    for c in topo["containers"]:
        state = c["state"] + (f" pid {c['pid']}" if c["pid"] else "")
        items.append((1, f"container {c['name']}  {state}  mode {c['mode']}"
                         + mark(c["problems"])))
        for i in c["interfaces"]:
            items.append((2, f"{i['ifname']}  {' '.join(i['addresses']) or '-'}  "
                             f"network {i['network']}"))
        items += [(2, f"route {r}") for r in c["routes"]]
    if topo["problems"]:
        items.append((0, "problems (record and kernel disagree)"))
        items += [(1, f"! {p}") for p in topo["problems"]]
    return "\n".join(tree(items))
