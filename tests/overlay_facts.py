"""Hand-made kernel facts and cluster nodes of one node's share of an overlay network, for the
pure topology and trace tests: this node h1 (198.18.1.11) holds 10.77.1.0/24 of podnet;
h2 (same segment) is reached with host-gw, h3 (behind a router) through the VXLAN device."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from netbay.drivers.overlay import local_options
from netbay.model import Network, SubnetConfig
from netbay.observe.facts import Fdb, Link, Namespace, Neighbour, Route

NETBAY = 57  # RTPROT_NETBAY
POOL = IPv4Network("10.77.0.0/16")
PODNET = Network(
    id="d" * 64, name="podnet", driver="overlay", created="", device="br-dddddddddddd",
    options=dict(local_options(POOL, 4242, "auto", 4789, 1450)),
    subnets=(SubnetConfig(IPv4Network("10.77.1.0/24"), IPv4Address("10.77.1.1")),),
)
TUNNEL = "nbxdddddddddddd"
H3_MAC = "02:aa:bb:cc:dd:03"
TUNNEL_LINK = Link(TUNNEL, 12, "vxlan", mac="02:aa:bb:cc:dd:01", mtu=1450, up=True,
                   details=(("vni", "4242"), ("local", "198.18.1.11"), ("dstport", "4789"),
                            ("dev", "eth0")))
ROUTE_H2 = Route(IPv4Network("10.77.2.0/24"), "eth0", IPv4Address("198.18.1.12"),
                 protocol=NETBAY)
ROUTE_H3 = Route(IPv4Network("10.77.3.0/24"), TUNNEL, IPv4Address("10.77.3.0"),
                 protocol=NETBAY, onlink=True)
NEIGHBOUR_H3 = Neighbour(IPv4Address("10.77.3.0"), H3_MAC, TUNNEL, "permanent")
FDB_H3 = Fdb(H3_MAC, IPv4Address("198.18.2.13"), TUNNEL)


@dataclass(frozen=True)
class Node:
    """What the cluster agent reports of a node (netbay.cluster.NodeStatus's fields here)."""

    id: str
    name: str
    address: IPv4Address
    state: str = "ready"
    subnets: Mapping[str, IPv4Network] = field(default_factory=dict)
    blocks: Mapping[str, tuple[IPv4Network, ...]] = field(default_factory=dict)


def node(name: str, address: str, block: str | None, state: str = "ready") -> Node:
    subnets = {"podnet": IPv4Network(block)} if block else {}
    return Node(f"id-{name}", name, IPv4Address(address), state, subnets,
                {k: (v,) for k, v in subnets.items()})


NODES = [node("h1", "198.18.1.11", "10.77.1.0/24"), node("h2", "198.18.1.12", "10.77.2.0/24"),
         node("h3", "198.18.2.13", "10.77.3.0/24")]


def overlay_host(
    *, links: tuple[Link, ...] = (TUNNEL_LINK,), routes: tuple[Route, ...] = (ROUTE_H2, ROUTE_H3),
    neighbours: tuple[Neighbour, ...] = (NEIGHBOUR_H3,), fdb: tuple[Fdb, ...] = (FDB_H3,),
) -> Namespace:
    """h1's host namespace: eth0 on the underlay, podnet's bridge and (by default) its VXLAN
    device with the routes, neighbour and FDB entry towards h2 and h3."""
    return Namespace(
        links=(Link("lo", 1, "", up=True), Link("eth0", 2, "", mtu=1500, up=True),
               Link("br-dddddddddddd", 11, "bridge", mtu=1450, up=True), *links),
        addresses=(("eth0", IPv4Interface("198.18.1.11/24")),
                   ("br-dddddddddddd", IPv4Interface("10.77.1.1/24")),
                   (TUNNEL, IPv4Interface("10.77.1.0/32"))),
        routes=(Route(None, "eth0", IPv4Address("198.18.1.1")), *routes),
        neighbours=neighbours, fdb=fdb,
    )
