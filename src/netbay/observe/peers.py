"""The other nodes of a cluster-wide (overlay) network as this node's kernel reaches them.

Per local share of such a network: its VXLAN device, and per block of another node the route
of netbay's protocol towards it with what that route needs (VXLAN: the neighbour entry of
the gateway `<block>.0` and the FDB entry behind its MAC; host-gw: the peer's underlay
address as the next hop), named after the node the cluster agent says holds the block. A
node the agent lists with a block but no route here is shown too (and marked, while it is
ready); a route whose block no node holds is shown by its next hop's address. Pure: the
daemon reads the kernel (facts.py) and the agent's node list; `netbay topology` draws the
result and `netbay trace` names the hop a packet leaves this node by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any, Protocol

from .tree import addr_text, mark

if TYPE_CHECKING:
    from ..model import Network
    from .facts import Namespace, Route

Json = dict[str, Any]


class ClusterNode(Protocol):
    """A node as the cluster agent knows it (netbay.cluster.NodeStatus)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> IPv4Address: ...
    @property
    def state(self) -> str: ...  # "ready" or "lost"
    @property
    def subnets(self) -> Mapping[str, IPv4Network]: ...  # network name -> its block
    @property
    def blocks(self) -> Mapping[str, tuple[IPv4Network, ...]]: ...  # network -> every block


ClusterNodes = Callable[[], Sequence[ClusterNode]]  # ClusterAgent.nodes


def known_nodes(source: ClusterNodes | None) -> list[ClusterNode]:
    """The agent's nodes; none when there is no agent or this node has not joined."""
    from ..errors import NotJoinedError

    if source is None:
        return []
    try:
        return list(source())
    except NotJoinedError:  # not joined: the overlay routes left (if any) are shown unnamed
        return []


# --- building ------------------------------------------------------------------------------
def overlay_section(network: Network, host: Namespace, nodes: Sequence[ClusterNode]) -> Json:
    """NETWORK's tunnel and the other nodes, from HOST (read with tunnels=True) and NODES."""
    from ..drivers.overlay import settings_of
    from ..kernel.rtnl_wire import RTPROT_NETBAY
    from ..plan.overlay import Backend, vxlan_device

    settings = settings_of(network)
    tunnel = vxlan_device(network.id)
    own = network.subnets[0].subnet if network.subnets else None
    mine = {s.subnet for s in network.subnets}
    section: Json = {
        "pool": str(settings.pool), "block": str(own or ""), "vni": settings.vni,
        "port": settings.port, "backend": settings.backend.value,
        "tunnel": _tunnel(host, tunnel, settings.vni, settings.backend is not Backend.HOST_GW),
        "nodes": [],
    }
    routes = sorted((r for r in host.routes if r.protocol == RTPROT_NETBAY and r.destination
                     and (r.destination.subnet_of(settings.pool) or r.device == tunnel)),
                    key=lambda r: r.destination or IPv4Network("0.0.0.0/0"))
    holders = {block: n for n in nodes for block in n.blocks.get(network.name, ())}
    for route in routes:
        assert route.destination is not None
        section["nodes"].append(_routed(route, tunnel, host, holders, bool(nodes)))
    routed = {r.destination for r in routes}
    for block, holder in sorted(holders.items(), key=lambda item: item[0]):
        if block not in mine and block not in routed:
            section["nodes"].append(_unrouted(block, holder))
    section["nodes"].sort(key=lambda n: (n["name"], n["block"]))
    return section


def _tunnel(host: Namespace, name: str, vni: int, expected: bool) -> Json | None:
    link = host.link(name)
    if link is None:
        return ({"name": name, "present": False, "problems": ["VXLAN device missing in the "
                                                             "kernel"]} if expected else None)
    found = int(link.detail("vni") or 0)
    return {
        "name": name, "present": True, "kind": link.kind, "vni": found,
        "local": link.detail("local") or "", "port": int(link.detail("dstport") or 0),
        "underlay": link.detail("dev") or "", "mac": link.mac, "mtu": link.mtu, "up": link.up,
        "addresses": [str(a) for a in host.addresses_of(name)],
        "problems": [f"{name} is a {link.kind or 'device'}, not a vxlan"] if link.kind != "vxlan"
        else [f"VNI {found}, the record says {vni}"] if found != vni else [],
    }


def _routed(route: Route, tunnel: str, host: Namespace,
            holders: Mapping[IPv4Network, ClusterNode], cluster_known: bool) -> Json:
    """The node behind ROUTE (of netbay's protocol): how this node reaches it, and what of
    that the kernel lacks or the cluster record contradicts."""
    assert route.destination is not None
    problems: list[str] = []
    mac, underlay = "", route.gateway
    if route.device == tunnel:
        via = "vxlan"
        mac = next((n.mac for n in host.neighbours
                    if n.device == tunnel and n.address == route.gateway), "")
        underlay = next((e.destination for e in host.fdb
                         if e.device == tunnel and e.mac == mac), None) if mac else None
        if not mac:
            problems.append(f"no neighbour entry for {route.gateway} on {tunnel}")
        elif underlay is None:
            problems.append(f"no FDB entry for {mac} on {tunnel}")
    else:
        via = "host-gw"
    holder = holders.get(route.destination)
    if holder is None:
        holder = next((n for n in holders.values() if n.address == underlay), None)
        if cluster_known:
            problems.append(f"no node holds {route.destination} in the cluster record")
    elif underlay is not None and holder.address != underlay:
        problems.append(f"the kernel sends to {underlay}, the cluster has {holder.name} at "
                        f"{holder.address}")
    address = underlay or (holder.address if holder else None)
    return {
        "name": holder.name if holder else str(address or route.destination),
        "id": holder.id if holder else "", "address": str(address or ""),
        "state": holder.state if holder else "unknown", "block": str(route.destination),
        "via": via, "device": route.device, "gateway": str(route.gateway or ""),
        "vtep_mac": mac, "route": str(route), "problems": problems,
    }


def _unrouted(block: IPv4Network, holder: ClusterNode) -> Json:
    return {
        "name": holder.name, "id": holder.id, "address": str(holder.address),
        "state": holder.state, "block": str(block), "via": "", "device": "", "gateway": "",
        "vtep_mac": "", "route": "",
        # a lost node's routes go on purpose; a ready one's must be here
        "problems": [f"no route to its block {block}"] if holder.state == "ready" else [],
    }


def overlay_problems(net: Json) -> list[str]:
    section = net.get("overlay")
    if not section:
        return []
    found = []
    if section["tunnel"]:
        found += [f"{section['tunnel']['name']}: {p}" for p in section["tunnel"]["problems"]]
    for node in section["nodes"]:
        found += [f"node {node['name']}: {p}" for p in node["problems"]]
    return found


# --- trace ---------------------------------------------------------------------------------
def node_for(section: Json, address: IPv4Address) -> Json | None:
    """The node of SECTION whose block holds ADDRESS, if one does."""
    return next((n for n in section["nodes"] if address in IPv4Network(n["block"])), None)


def node_label(node: Json) -> str:
    """`node h3 (198.18.2.13)`; a node only known by its address is that address."""
    shown = node["address"] and node["address"] != node["name"]
    return f"node {node['name']}" + (f" ({node['address']})" if shown else "")


def leaving_hop(section: Json, node: Json) -> tuple[str, str]:
    """(where, text) of the hop by which a packet to NODE's block leaves this node."""
    if node["via"] == "vxlan":
        return "tunnel", f"tunnel {node['device']} to {node_label(node)} VNI {section['vni']}"
    if node["via"] == "host-gw":
        return "underlay", f"underlay {node['device']} to {node_label(node)} via host-gw"
    return "cluster", f"{node_label(node)} holds {node['block']}, but this node has no route to it"


# --- text ----------------------------------------------------------------------------------
def overlay_lines(net: Json) -> list[tuple[int, str]]:
    """The tunnel and the other nodes, as lines of the topology tree (depth 1: the network's
    own devices' depth)."""
    section = net.get("overlay")
    if not section:
        return []
    lines = []
    tunnel = section["tunnel"]
    if tunnel and tunnel["present"]:
        lines.append((1, f"tunnel {tunnel['name']}  vxlan id {tunnel['vni']}  local "
                         f"{tunnel['local']}  dev {tunnel['underlay']}  dstport {tunnel['port']}"
                         f"  {addr_text(tunnel)}" + mark(tunnel["problems"])))
    elif tunnel:
        lines.append((1, f"tunnel {tunnel['name']}  (missing)" + mark(tunnel["problems"])))
    for node in section["nodes"]:
        how = {"vxlan": f"vxlan via {node['gateway']} dev {node['device']}"
                        + (f" lladdr {node['vtep_mac']}" if node["vtep_mac"] else ""),
               "host-gw": f"host-gw via {node['gateway']} dev {node['device']}"}.get(
                   node["via"], "no route")
        lines.append((1, f"{node_label(node)}  {node['state']}  block {node['block']}  {how}"
                         + mark(node["problems"])))
    return lines
