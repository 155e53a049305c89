"""The topology picture from record + kernel facts, drawn as text, DOT and HTML; pure."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from netbay.errors import NotJoinedError
from netbay.model import Container, Endpoint, Network, SubnetConfig
from netbay.observe import draw
from netbay.observe.facts import Link, Namespace, Route
from netbay.observe.observer import expected_nat, parse_nat, parse_published
from netbay.observe.peers import known_nodes
from netbay.observe.topology import Inputs, Nat, Published, build, render_text
from overlay_facts import (
    H3_MAC,
    NETBAY,
    NODES,
    PODNET,
    ROUTE_H3,
    TUNNEL,
    TUNNEL_LINK,
    Node,
    node,
    overlay_host,
)
from topoparse import dot_objects, text_objects

NETA = Network(id="a" * 64, name="neta", driver="bridge", created="", device="br-a",
               subnets=(SubnetConfig(IPv4Network("10.91.0.0/24"), IPv4Address("10.91.0.1")),))
LANNET = Network(id="c" * 64, name="lan", driver="macvlan", created="", device="ext0",
                 options={"parent": "ext0", "macvlan_mode": "bridge"},
                 subnets=(SubnetConfig(IPv4Network("198.51.100.0/24"),
                                       IPv4Address("198.51.100.1")),))
HOSTNET = Network(id="h" * 64, name="host", driver="host", created="", subnets=(), builtin=True)
C1 = Container(id="1" * 64, name="c1", hostname="c1", command=("sleep",), created="",
               netns="/run/netns/netbay-111", network_mode="private", state="running", pid=7)
C2 = Container(id="2" * 64, name="c2", hostname="c2", command=("sleep",), created="",
               netns="/run/netns/netbay-222", network_mode="private", state="running", pid=8)
E1 = Endpoint(id="e1" * 32, network_id=NETA.id, container_id=C1.id, ifname="eth0",
              host_ifname="nbve1e1e1e1e1e1", mac="02:42:0a:5b:00:02",
              address=IPv4Interface("10.91.0.2/24"), gateway=IPv4Address("10.91.0.1"))
E2 = Endpoint(id="e2" * 32, network_id=LANNET.id, container_id=C2.id, ifname="eth0",
              host_ifname=None, mac="02:42:c6:33:64:05",
              address=IPv4Interface("198.51.100.5/24"), gateway=None)
PORT = Published("tcp", None, 8080, IPv4Address("10.91.0.2"), 80)


def host_ns(*extra: Link) -> Namespace:
    return Namespace(
        links=(Link("lo", 1, "", up=True), Link("ext0", 2, "veth", mtu=1500, up=True),
               Link("br-a", 3, "bridge", mtu=1500, up=True),
               Link("nbve1e1e1e1e1e1", 4, "veth", mtu=1500, up=True, master=3, peer=2,
                    peer_netnsid=0), *extra),
        addresses=(("ext0", IPv4Interface("198.51.100.1/24")),
                   ("br-a", IPv4Interface("10.91.0.1/24"))),
    )


def c1_ns(address: str = "10.91.0.2/24") -> Namespace:
    return Namespace(
        links=(Link("lo", 1, ""), Link("eth0", 2, "veth", mac="02:42:0a:5b:00:02", mtu=1500,
                                        up=True, peer=4, peer_netnsid=0)),
        addresses=(("eth0", IPv4Interface(address)),),
        routes=(Route(None, "eth0", IPv4Address("10.91.0.1")),),
    )


def c2_ns() -> Namespace:
    return Namespace(
        links=(Link("eth0", 5, "macvlan", mac="02:42:c6:33:64:05", mtu=1500, up=True, peer=2,
                    peer_netnsid=0, details=(("mode", "bridge"),)),),
        addresses=(("eth0", IPv4Interface("198.51.100.5/24")),),
    )


def inputs(**changes: object) -> Inputs:
    base = dict(
        networks=[HOSTNET, NETA, LANNET], containers=[C1, C2], endpoints=[E1, E2],
        host=host_ns(), inside={C1.id: c1_ns(), C2.id: c2_ns()}, published=[PORT],
        expected_ports={C1.id: [PORT]}, nat=[Nat(IPv4Network("10.91.0.0/24"))],
        expected_nat={NETA.id: [Nat(IPv4Network("10.91.0.0/24"))]},
    )
    base.update(changes)
    return Inputs(**base)  # type: ignore[arg-type]


def test_agreeing_record_and_kernel_draw_exactly_their_objects() -> None:
    topo = build(inputs())
    assert topo["problems"] == []
    text = render_text(topo)
    assert text_objects(text) == {
        "network": {"host", "neta", "lan"}, "bridge": {"br-a"},
        "veth": {"nbve1e1e1e1e1e1"}, "parent": {"ext0"}, "macvlan": {"c2:eth0"},
        "port": {"tcp 0.0.0.0:8080"}, "container": {"c1", "c2"},
    }
    assert "network neta  bridge  10.91.0.0/24  gw 10.91.0.1  nat masquerade" in text
    assert "⇄ container c1 eth0  10.91.0.2/24" in text
    assert "network host  host  (a network mode: no kernel objects of its own)" in text
    nodes, edges = dot_objects(draw.to_dot(topo))
    assert nodes == {
        "host": {"host"}, "network": {"host", "neta", "lan"},
        "mode": {"host"}, "bridge": {"br-a"}, "veth": {"nbve1e1e1e1e1e1"},
        "parent": {"ext0"}, "container": {"c1", "c2"}, "port": {"tcp:0.0.0.0:8080"},
    }
    assert ("veth:nbve1e1e1e1e1e1", "container:c1") in edges
    assert ("parent:ext0", "container:c2") in edges
    assert ("port:tcp:0.0.0.0:8080", "container:c1") in edges
    # the host network is drawn as the mode it is, from its driver's mode, not its name
    assert '"mode:host" [label="the host\'s own stack"' in draw.to_dot(topo)


def test_disagreements_are_marked_where_they_are() -> None:
    stray = Link("nbvdeadbeef0000", 9, "veth", mtu=1500, up=True, master=3)
    loose = Link("nbvfeedfeed0000", 10, "veth", mtu=1500)
    topo = build(inputs(
        host=host_ns(stray, loose),
        inside={C1.id: c1_ns("10.91.0.9/24"), C2.id: None},
        published=[], nat=[], orphan_netns=["netbay-333"],
    ))
    assert sorted(topo["problems"]) == sorted([
        "network neta: masquerade of 10.91.0.0/24 missing in nftables",
        "network neta: nbve1e1e1e1e1e1: 10.91.0.2/24 (recorded) not on eth0",
        "network neta: nbvdeadbeef0000: a port of netbay's bridge that netbay's record lacks",
        "network lan: c2:eth0: container namespace missing",
        "container c2: namespace /run/netns/netbay-222 missing",
        "port tcp 0.0.0.0:8080: in the record but not in nftables",
        "interface nbvfeedfeed0000: named like a netbay link, but netbay's record lacks it",
        "netns netbay-333: a netbay namespace no container of the record owns",
    ])
    text = render_text(topo)
    assert "veth nbvdeadbeef0000  mtu 1500  up  [! a port of netbay's bridge" in text
    assert "problems (record and kernel disagree)" in text
    dot = draw.to_dot(topo)
    stray_line = next(line for line in dot.splitlines() if '"veth:nbvdeadbeef0000"' in line)
    assert 'color="#c0392b"' in stray_line


def test_a_missing_veth_and_bridge() -> None:
    host = Namespace(links=(Link("lo", 1, ""),))
    topo = build(inputs(host=host))
    assert "network neta: br-a: bridge missing in the kernel" in topo["problems"]
    assert ("network neta: nbve1e1e1e1e1e1: nbve1e1e1e1e1e1 in the record but not in the "
            "kernel") in topo["problems"]


def test_html_is_one_page_with_cards_tables_and_the_graph() -> None:
    topo = build(inputs())
    page = draw.to_html(topo, '<?xml version="1.0"?><svg><g id="x"/></svg>')
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    assert "<?xml" not in page
    assert "network neta" in page and "c1" in page and "agree" in page


def test_nft_listings_parse_into_ports_and_nat() -> None:
    pub_any = [{"metainfo": {}}, {"map": {"name": "pub_any", "elem": [
        [{"concat": ["tcp", 8080]}, {"concat": ["10.9.0.2", 80]}]]}}]
    pub_ip = [{"map": {"name": "pub_ip", "elem": [
        [{"concat": ["127.0.0.1", "udp", 8081]}, {"concat": ["10.9.0.2", 81]}]]}}]
    assert parse_published(pub_any, pub_ip) == [
        Published("tcp", None, 8080, IPv4Address("10.9.0.2"), 80),
        Published("udp", IPv4Address("127.0.0.1"), 8081, IPv4Address("10.9.0.2"), 81)]
    masq = [{"set": {"elem": [{"prefix": {"addr": "10.9.0.0", "len": 24}}]}}]
    snat = [{"map": {"elem": [[{"prefix": {"addr": "10.8.0.0", "len": 24}}, "1.2.3.4"]]}}]
    assert parse_nat(masq, snat) == [Nat(IPv4Network("10.9.0.0/24")),
                                     Nat(IPv4Network("10.8.0.0/24"), IPv4Address("1.2.3.4"))]
    assert expected_nat(NETA) == [Nat(IPv4Network("10.91.0.0/24"))]
    assert expected_nat(LANNET) == []


# --- overlay networks: the tunnel and the other nodes ---------------------------------------
def overlay_inputs(host: Namespace | None = None, nodes: list[Node] | None = None) -> Inputs:
    return Inputs(networks=[PODNET], containers=[], endpoints=[],
                  host=host or overlay_host(), inside={},
                  cluster_nodes=NODES if nodes is None else nodes)


def remote(topo: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    net = next(n for n in topo["networks"] if n["name"] == "podnet")
    return [(n["name"], n["address"], n["state"], n["block"], n["via"])
            for n in net["overlay"]["nodes"]]


def test_an_overlay_network_shows_its_tunnel_and_the_other_nodes() -> None:
    topo = build(overlay_inputs())
    assert topo["problems"] == []
    assert remote(topo) == [("h2", "198.18.1.12", "ready", "10.77.2.0/24", "host-gw"),
                            ("h3", "198.18.2.13", "ready", "10.77.3.0/24", "vxlan")]
    section = topo["networks"][0]["overlay"]
    assert {k: section["tunnel"][k] for k in ("name", "vni", "local", "port", "mtu",
                                              "underlay")} == {
        "name": TUNNEL, "vni": 4242, "local": "198.18.1.11", "port": 4789, "mtu": 1450,
        "underlay": "eth0"}
    assert section["nodes"][1]["vtep_mac"] == H3_MAC
    assert [i["name"] for i in topo["interfaces"]] == ["eth0"]  # the tunnel is podnet's
    text = render_text(topo)
    assert text_objects(text)["node"] == {"h2", "h3"}
    assert text_objects(text)["tunnel"] == {TUNNEL}
    assert (f"tunnel {TUNNEL}  vxlan id 4242  local 198.18.1.11  dev eth0  dstport 4789  "
            "10.77.1.0/32  mtu 1450  up") in text
    assert ("node h2 (198.18.1.12)  ready  block 10.77.2.0/24  host-gw via 198.18.1.12 dev "
            "eth0") in text
    assert (f"node h3 (198.18.2.13)  ready  block 10.77.3.0/24  vxlan via 10.77.3.0 dev "
            f"{TUNNEL} lladdr {H3_MAC}") in text
    nodes, edges = dot_objects(draw.to_dot(topo))
    assert nodes["node"] == {"h2", "h3"} and nodes["tunnel"] == {TUNNEL}
    assert {("interface:eth0", "node:h2"), (f"tunnel:{TUNNEL}", "node:h3"),
            ("host", f"tunnel:{TUNNEL}")} <= edges
    page = draw.to_html(topo)
    assert "<b>node h3 (198.18.2.13)</b> ready block 10.77.3.0/24: vxlan via 10.77.3.0" in page
    assert f"tunnel <b>{TUNNEL}</b> VNI 4242" in page


def test_what_the_kernel_lacks_or_the_cluster_contradicts_is_marked() -> None:
    stray = Route(IPv4Network("10.77.9.0/24"), "eth0", IPv4Address("198.18.1.99"),
                  protocol=NETBAY)
    moved = Route(IPv4Network("10.77.2.0/24"), "eth0", IPv4Address("198.18.1.42"),
                  protocol=NETBAY)
    host = overlay_host(links=(dataclasses.replace(TUNNEL_LINK, details=(("vni", "7"),)),),
                        routes=(moved, ROUTE_H3, stray), fdb=())
    nodes = [*NODES, node("h4", "198.18.1.14", "10.77.4.0/24"),
             node("h5", "198.18.1.15", "10.77.5.0/24", state="lost")]
    topo = build(overlay_inputs(host, nodes))
    assert topo["problems"] == [
        f"network podnet: {TUNNEL}: VNI 7, the record says 4242",
        "network podnet: node 198.18.1.99: no node holds 10.77.9.0/24 in the cluster record",
        "network podnet: node h2: the kernel sends to 198.18.1.42, the cluster has h2 at "
        "198.18.1.12",
        f"network podnet: node h3: no FDB entry for {H3_MAC} on {TUNNEL}",
        "network podnet: node h4: no route to its block 10.77.4.0/24",
    ]
    assert remote(topo)[0] == ("198.18.1.99", "198.18.1.99", "unknown", "10.77.9.0/24",
                               "host-gw")
    assert remote(topo)[3:] == [("h4", "198.18.1.14", "ready", "10.77.4.0/24", ""),
                                ("h5", "198.18.1.15", "lost", "10.77.5.0/24", "")]
    dot = draw.to_dot(topo)
    h4 = next(line for line in dot.splitlines() if '-- "node:h4"' in line)
    assert h4.startswith('  "host" -- "node:h4"') and 'color="#c0392b"' in h4


def test_without_the_agent_peers_are_shown_by_address_and_a_missing_tunnel_is_marked() -> None:
    topo = build(overlay_inputs(overlay_host(links=(), neighbours=()), nodes=[]))
    assert remote(topo) == [("10.77.3.0/24", "", "unknown", "10.77.3.0/24", "vxlan"),
                            ("198.18.1.12", "198.18.1.12", "unknown", "10.77.2.0/24", "host-gw")]
    assert topo["problems"] == [
        f"network podnet: {TUNNEL}: VXLAN device missing in the kernel",
        f"network podnet: node 10.77.3.0/24: no neighbour entry for 10.77.3.0 on {TUNNEL}",
    ]
    assert f"tunnel {TUNNEL}  (missing)" in render_text(topo)


def test_the_agents_nodes_are_none_before_joining() -> None:
    def not_joined() -> list[Node]:
        raise NotJoinedError

    assert known_nodes(not_joined) == [] and known_nodes(None) == []
    assert known_nodes(lambda: NODES) == NODES
