"""Observability of dual-stack networks, pure: topology with IPv6 addresses (JSON, text, DOT,
HTML), trace's IPv6 requests, packets and verdicts, the doctor's IPv6 forwarding, accept_ra
and fast-path checks, over synthetic facts."""

from __future__ import annotations

import argparse
import dataclasses
import struct
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

import pytest

from netbay.cli import observe as cli_observe
from netbay.cli.main import build_parser
from netbay.errors import ConfigError, NotFoundError
from netbay.model import Container, Endpoint, Network, SubnetConfig
from netbay.observe import draw, health
from netbay.observe.doctor import DoctorFacts, check_overlaps, render
from netbay.observe.doctor_v6 import (
    Ipv6Facts,
    Uplink6,
    check_accept_ra,
    check_fast_path,
    check_ipv6_forwarding,
    findings,
    flowtable_devices,
    offload_rule,
)
from netbay.observe.facts import Link, Namespace, Route, Route6
from netbay.observe.hops import Facts, Outcome, Party, Spec, assemble, matches, parse_spec
from netbay.observe.hops import render as render_trace
from netbay.observe.nft_events import Event, Packet, decode_packet
from netbay.observe.observer import expected_nat, parse_nat, parse_published, published_of
from netbay.observe.probe import _icmp6_answer
from netbay.observe.reasons import netbay_reason, sets_named
from netbay.observe.topology import Inputs, Nat, Published, build, render_text
from netbay.observe.tracer import Tracer
from netbay.plan.firewall import PortRules
from topoparse import dot_objects, text_objects

# --- topology ------------------------------------------------------------------------------
DUAL = Network(id="d" * 64, name="dual", driver="bridge", created="", device="br-d",
               subnets=(SubnetConfig(IPv6Network("fd00:91::/64"), IPv6Address("fd00:91::1")),
                        SubnetConfig(IPv4Network("10.91.0.0/24"), IPv4Address("10.91.0.1"))))
C1 = Container(id="1" * 64, name="c1", hostname="c1", command=("sleep",), created="",
               netns="/run/netns/netbay-111", network_mode="private", state="running", pid=7)
E1 = Endpoint(id="e1" * 32, network_id=DUAL.id, container_id=C1.id, ifname="eth0",
              host_ifname="nbve1e1e1e1e1e1", mac="02:42:0a:5b:00:02",
              address=IPv4Interface("10.91.0.2/24"), gateway=IPv4Address("10.91.0.1"),
              address6=IPv6Interface("fd00:91::2/64"), gateway6=IPv6Address("fd00:91::1"))


def host_ns() -> Namespace:
    return Namespace(
        links=(Link("lo", 1, "", up=True), Link("br-d", 3, "bridge", mtu=1500, up=True),
               Link("nbve1e1e1e1e1e1", 4, "veth", mtu=1500, up=True, master=3, peer=2,
                    peer_netnsid=0)),
        addresses=(("br-d", IPv4Interface("10.91.0.1/24")),
                   ("br-d", IPv6Interface("fd00:91::1/64"))),
    )


def c1_ns(*addresses: IPv4Interface | IPv6Interface) -> Namespace:
    return Namespace(
        links=(Link("lo", 1, ""), Link("eth0", 2, "veth", mac="02:42:0a:5b:00:02", mtu=1500,
                                        up=True, peer=4, peer_netnsid=0)),
        addresses=tuple(("eth0", a) for a in addresses or (IPv4Interface("10.91.0.2/24"),
                                                            IPv6Interface("fd00:91::2/64"))),
        routes=(Route(None, "eth0", IPv4Address("10.91.0.1")),),
        routes6=(Route6(IPv6Network("fd00:91::/64"), "eth0"),
                 Route6(None, "eth0", IPv6Address("fd00:91::1"))),
    )


def inputs(**changes: object) -> Inputs:
    base: dict[str, object] = dict(
        networks=[DUAL], containers=[C1], endpoints=[E1], host=host_ns(),
        inside={C1.id: c1_ns()}, nat=[Nat(IPv4Network("10.91.0.0/24"))],
        expected_nat={DUAL.id: [Nat(IPv4Network("10.91.0.0/24"))]},
    )
    base.update(changes)
    return Inputs(**base)  # type: ignore[arg-type]


def test_a_dual_stack_network_and_endpoint_show_both_families_in_json() -> None:
    topo = build(inputs())
    assert topo["problems"] == []
    net = topo["networks"][0]
    # IPv4 first, whatever order the record has
    assert (net["subnets"], net["gateways"], net["ipv6"]) == (
        ["10.91.0.0/24", "fd00:91::/64"], ["10.91.0.1", "fd00:91::1"], True)
    assert net["device"]["addresses"] == ["10.91.0.1/24", "fd00:91::1/64"]
    assert net["ports"][0]["end"]["addresses"] == ["10.91.0.2/24", "fd00:91::2/64"]
    (iface,) = topo["containers"][0]["interfaces"]
    assert (iface["addresses"], iface["recorded"], iface["recorded6"]) == (
        ["10.91.0.2/24", "fd00:91::2/64"], "10.91.0.2/24", "fd00:91::2/64")
    assert topo["containers"][0]["routes"] == [
        "default via 10.91.0.1 dev eth0", "fd00:91::/64 dev eth0",
        "default via fd00:91::1 dev eth0"]


def test_a_dual_stack_topology_reads_as_text_dot_and_html() -> None:
    topo = build(inputs())
    text = render_text(topo)
    assert text_objects(text) == {"network": {"dual"}, "bridge": {"br-d"},
                                  "veth": {"nbve1e1e1e1e1e1"}, "container": {"c1"}}
    assert ("network dual  bridge  10.91.0.0/24, fd00:91::/64  gw 10.91.0.1, fd00:91::1  nat "
            "masquerade") in text
    assert "bridge br-d  10.91.0.1/24  fd00:91::1/64  mtu 1500  up" in text
    assert "⇄ container c1 eth0  10.91.0.2/24  fd00:91::2/64  mtu 1500  up" in text
    assert "eth0  10.91.0.2/24 fd00:91::2/64  network dual" in text
    assert "route default via fd00:91::1 dev eth0" in text
    dot = draw.to_dot(topo)
    nodes, edges = dot_objects(dot)
    assert nodes["bridge"] == {"br-d"} and ("veth:nbve1e1e1e1e1e1", "container:c1") in edges
    # each family on a line of its own: a dual-stack label stays narrow
    assert 'label="network dual (bridge)\\n10.91.0.0/24  nat masquerade\\nfd00:91::/64"' in dot
    assert '[label="bridge br-d\\n10.91.0.1/24\\nfd00:91::1/64"' in dot
    assert '"veth:nbve1e1e1e1e1e1" -- "container:c1" [label="eth0\\n10.91.0.2/24\\n' \
        'fd00:91::2/64"]' in dot
    assert '"host" -- "bridge:br-d" [label="10.91.0.1\\nfd00:91::1"]' in dot
    page = draw.to_html(topo)
    assert '<span class="chip">fd00:91::/64</span>' in page
    assert '<span class="chip">gw fd00:91::1</span>' in page
    assert "eth0 10.91.0.2/24 fd00:91::2/64 (dual)" in page


def test_a_recorded_ipv6_address_missing_in_the_kernel_is_a_problem() -> None:
    topo = build(inputs(inside={C1.id: c1_ns(IPv4Interface("10.91.0.2/24"))}))
    assert topo["problems"] == [
        "network dual: nbve1e1e1e1e1e1: fd00:91::2/64 (recorded) not on eth0"]
    gone = Namespace(links=host_ns().links, addresses=(("br-d", IPv4Interface("10.91.0.1/24")),))
    topo = build(inputs(host=gone))
    assert topo["problems"] == ["network dual: br-d: gateway fd00:91::1 not on br-d"]


def test_ipv4_only_topology_is_as_before() -> None:
    v4 = dataclasses.replace(DUAL, subnets=DUAL.subnets[1:])
    e1 = dataclasses.replace(E1, address6=None, gateway6=None)
    host = dataclasses.replace(host_ns(), addresses=host_ns().addresses[:1])
    topo = build(inputs(networks=[v4], endpoints=[e1], host=host,
                        inside={C1.id: c1_ns(IPv4Interface("10.91.0.2/24"))}))
    net = topo["networks"][0]
    assert (net["subnets"], net["gateways"], net["ipv6"]) == (["10.91.0.0/24"], ["10.91.0.1"],
                                                              False)
    assert topo["containers"][0]["interfaces"][0]["recorded6"] == ""
    assert "network dual  bridge  10.91.0.0/24  gw 10.91.0.1  nat masquerade" in render_text(topo)
    assert 'label="network dual (bridge)\\n10.91.0.0/24  nat masquerade"; ' in draw.to_dot(topo)


def test_ipv6_published_ports_and_nat66_from_nft_and_the_record() -> None:
    pub_any6 = [{"map": {"name": "pub_any6", "elem": [
        [{"concat": ["tcp", 8080]}, {"concat": ["fd00:91::2", 80]}]]}}]
    pub_ip6 = [{"map": {"name": "pub_ip6", "elem": [
        [{"concat": ["fd00:1::1", "udp", 53]}, {"concat": ["fd00:91::2", 53]}]]}}]
    ports = parse_published([], [], pub_any6, pub_ip6)
    assert ports == [Published("tcp", None, 8080, IPv6Address("fd00:91::2"), 80),
                     Published("udp", IPv6Address("fd00:1::1"), 53, IPv6Address("fd00:91::2"),
                               53)]
    masq6 = [{"set": {"elem": [{"prefix": {"addr": "fd00:91::", "len": 64}}]}}]
    assert parse_nat([], [], masq6) == [Nat(IPv6Network("fd00:91::/64"))]
    assert expected_nat(DUAL) == [Nat(IPv4Network("10.91.0.0/24")),
                                  Nat(IPv6Network("fd00:91::/64"))]
    routed = dataclasses.replace(DUAL, options={"com.docker.network.bridge.gateway_mode_ipv6":
                                                "routed"})
    assert expected_nat(routed) == [Nat(IPv4Network("10.91.0.0/24"))]
    # -p 8080:80 of a dual-stack container: both families' maps, each to its own address
    rule = PortRules("tcp", None, 8080, IPv4Address("10.91.0.2"), 80, IPv6Address("fd00:91::2"))
    v4 = Published("tcp", None, 8080, IPv4Address("10.91.0.2"), 80)
    assert published_of(rule) == [v4, ports[0]]
    assert published_of(dataclasses.replace(rule, host_ip=IPv6Address("::1"))) == []
    assert published_of(dataclasses.replace(rule, host_ip=IPv4Address("0.0.0.0"))) == [v4]

    nat = [Nat(IPv4Network("10.91.0.0/24")), Nat(IPv6Network("fd00:91::/64"))]
    topo = build(inputs(published=[v4, ports[0]], expected_ports={C1.id: [v4, ports[0]]},
                        nat=nat, expected_nat={DUAL.id: nat}))
    assert topo["problems"] == []
    assert topo["networks"][0]["nat"] == ["masquerade", "IPv6 masquerade"]
    text = render_text(topo)
    assert "port tcp 0.0.0.0:8080 -> c1 10.91.0.2:80" in text
    assert "port tcp [::]:8080 -> c1 [fd00:91::2]:80" in text
    assert "gw 10.91.0.1, fd00:91::1  nat masquerade, IPv6 masquerade" in text
    assert text_objects(text)["port"] == {"tcp 0.0.0.0:8080", "tcp [::]:8080"}
    assert 'label="DNAT [fd00:91::2]:80"' in draw.to_dot(topo)
    missing = build(inputs(published=[v4], expected_ports={C1.id: [v4, ports[0]]}, nat=nat[:1],
                           expected_nat={DUAL.id: nat}))
    assert missing["problems"] == [
        "network dual: IPv6 masquerade of fd00:91::/64 missing in nftables",
        "port tcp [::]:8080: in the record but not in nftables"]


# --- trace: the request --------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "family"), [(None, None), ("", None), ("6", 6), (4, 4),
                                             ("ipv6", 6)])
def test_the_family_of_a_trace_request(raw: object, family: int | None) -> None:
    assert parse_spec({"Family": raw}).family == family


def test_a_bad_family_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_spec({"Family": "5"})
    assert str(caught.value) == "invalid family '5': expected 4 or 6"


def test_ipv6_probes_are_matched_by_ip6_and_icmpv6() -> None:
    dst = IPv6Address("fd00:91::3")
    assert matches(Spec("icmp", None, 1), dst, 0, 77) == (
        "ip6 daddr fd00:91::3 icmpv6 type echo-request icmpv6 id 77",
        "icmpv6 type echo-reply icmpv6 id 77")
    assert matches(Spec("tcp", 80, 1), dst, 40000, 0)[0] == (
        "ip6 daddr fd00:91::3 tcp sport 40000 tcp dport 80 tcp flags & (syn | ack) == syn")
    assert matches(Spec("udp", 53, 1), dst, 40000, 0) == (
        "ip6 daddr fd00:91::3 udp sport 40000 udp dport 53", "udp dport 40000")


@pytest.mark.parametrize(("argv", "family"), [
    ([], None), (["-6"], "6"), (["-4"], "4"), (["--family", "6"], "6"),
])
def test_the_cli_sends_the_family(argv: list[str], family: str | None) -> None:
    args = build_parser().parse_args(["trace", "a1", "fd00::2", *argv])
    sent: dict[str, Any] = {}

    class Client:
        def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
            sent.update(body, path=path)
            return {"outcome": {"delivered": True}}

    args.format = "json"
    assert cli_observe.trace(Client(), args) == 0  # type: ignore[arg-type]
    assert (sent["path"], sent["Destination"], sent["Family"]) == ("/netbay/trace", "fd00::2",
                                                                   family)


def test_the_cli_takes_one_family() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["trace", "a1", "a2", "-4", "-6"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["trace", "a1", "a2", "--family", "5"])


# --- trace: who is probed --------------------------------------------------------------------
A1 = dataclasses.replace(C1, name="a1")
A2 = dataclasses.replace(C1, id="2" * 64, name="a2", netns="/run/netns/netbay-222")
V6 = dataclasses.replace(C1, id="3" * 64, name="v6only", netns="/run/netns/netbay-333")
E_A1 = E1
E_A2 = dataclasses.replace(E1, id="e2" * 32, container_id=A2.id, address=IPv4Interface(
    "10.91.0.3/24"), address6=IPv6Interface("fd00:91::3/64"), host_ifname="nbve2")
E_V6 = dataclasses.replace(E1, id="e3" * 32, container_id=V6.id, address=None, gateway=None,
                           address6=IPv6Interface("fd00:91::4/64"), host_ifname="nbve3")


class FakeHost:
    """The record's side of a Host, as Tracer asks it."""

    containers = {c.name: c for c in (A1, A2, V6)}
    records = (E_A1, E_A2, E_V6)

    def find_container(self, ref: str) -> Container | None:
        return self.containers.get(ref) or next(
            (c for c in self.containers.values() if c.id == ref), None)

    def container_endpoints(self, container: Container) -> list[tuple[Network, Endpoint]]:
        return [(DUAL, e) for e in self.records if e.container_id == container.id]

    def endpoints(self) -> list[Endpoint]:
        return list(self.records)

    def find_network(self, ref: str) -> Network | None:
        return DUAL if ref == DUAL.id else None


def tracer() -> Tracer:
    return Tracer(FakeHost())  # type: ignore[arg-type]


@pytest.mark.parametrize(("source", "destination", "family", "wanted"), [
    ("a1", "a2", None, 4),  # both families: IPv4
    ("a1", "a2", 6, 6),
    ("a1", "fd00:91::3", None, 6),  # an IPv6 literal decides
    ("fd00:91::2", "a2", None, 6),
    ("a1", "v6only", None, 6),  # an IPv6-only container
])
def test_the_family_of_a_probe(source: str, destination: str, family: int | None,
                               wanted: int) -> None:
    assert tracer().family(Spec("icmp", None, 1, family), source, destination) == wanted


def test_a_literal_of_the_other_family_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        tracer().family(Spec("icmp", None, 1, 4), "a1", "fd00:91::3")
    assert str(caught.value) == ("invalid destination 'fd00:91::3': an IPv6 address, and the "
                                 "probe is IPv4 (--family 4)")
    with pytest.raises(ConfigError) as caught:
        tracer().family(Spec("icmp", None, 1), "10.91.0.2", "fd00:91::3")
    assert str(caught.value) == ("invalid source '10.91.0.2': an IPv4 address, and the probe "
                                 "is IPv6")


def test_containers_resolve_to_their_address_of_the_family() -> None:
    t = tracer()
    src = t.resolve("a1", None, as_source=True, family=6)
    assert (src.address, src.detail) == (IPv6Address("fd00:91::2"), "eth0 on network dual")
    assert t.resolve("a2", src, as_source=False, family=6).address == IPv6Address("fd00:91::3")
    assert t.resolve("a2", src, as_source=False, family=4).address == IPv4Address("10.91.0.3")
    found = t.resolve("fd00:91::3", src, as_source=False, family=6)
    assert (found.kind, found.name) == ("container", "a2")
    with pytest.raises(ConfigError) as caught:
        t.resolve("v6only", src, as_source=False, family=4)
    assert str(caught.value) == ("invalid container 'v6only': has no IPv4 address (its networks "
                                 "are IPv6 only): trace it with -6")
    with pytest.raises(NotFoundError) as missing:
        t.resolve("nosuch", src, as_source=False, family=6)
    assert str(missing.value) == ("no container nosuch (a destination is a container, `host` or "
                                  "an IP address)")


# --- trace: packets and verdicts -------------------------------------------------------------
A1_6, A2_6, B1_6 = IPv6Address("fd00:91::2"), IPv6Address("fd00:91::3"), IPv6Address("fd00:92::2")


def ipv6_header(src: IPv6Address, dst: IPv6Address, next_header: int, length: int) -> bytes:
    return struct.pack("!IHBB", 6 << 28, length, next_header, 64) + src.packed + dst.packed


def test_ipv6_headers_of_a_trace_decode() -> None:
    echo = struct.pack("!BBHHH", 128, 0, 0, 0x1234, 1)
    packet = decode_packet(ipv6_header(A1_6, B1_6, 58, 8), echo)
    assert packet == Packet("icmpv6", A1_6, B1_6, icmp_type=128, icmp_id=0x1234)
    assert str(packet) == "icmpv6 fd00:91::2 -> fd00:92::2 echo-request id 4660"
    # the transport header in the network attribute (no transport attribute of its own)
    tcp = decode_packet(ipv6_header(A1_6, B1_6, 6, 20) + struct.pack("!HH", 40000, 80), b"")
    assert tcp == Packet("tcp", A1_6, B1_6, 40000, 80)
    assert str(tcp) == "tcp [fd00:91::2]:40000 -> [fd00:92::2]:80"


def test_an_icmpv6_echo_reply_and_error_answer_the_probe() -> None:
    reply = struct.pack("!BBHHH", 129, 0, 0, 77, 1)
    assert _icmp6_answer(reply, 77, "fd00:91::3") == Outcome("answered",
                                                            "echo reply from fd00:91::3")
    assert _icmp6_answer(reply, 78, "fd00:91::3") is None
    quoted = ipv6_header(A1_6, B1_6, 58, 8) + struct.pack("!BBHHH", 128, 0, 0, 77, 1)
    error = struct.pack("!BBHI", 1, 3, 0, 0) + quoted
    assert _icmp6_answer(error, 77, "fd00:91::1") == Outcome(
        "unreachable", "destination unreachable (code 3) from fd00:91::1")
    assert _icmp6_answer(struct.pack("!BBHI", 135, 0, 0, 0), 77, "fe80::1") is None  # NDP


RULES = {("inet", "netbay", 25): "oifname @bridges drop",
         ("inet", "netbay", 20): "iifname . oifname @same_bridge accept"}


def v6_facts(events: list[Event], outcome: Outcome, **kw: object) -> Facts:
    base: dict[str, object] = dict(
        src=Party("container", "a1", A1_6, "/ns/a1"), dst=Party("container", "b1", B1_6, "/ns/b1"),
        spec=Spec("icmp", None, 1.0, 6), outcome=outcome, icmp_id=77,
        src_route="route fd00:92::2 via fd00:91::1 dev eth0",
        host_route="route fd00:92::2 dev br-b (arriving on br-a)",
        events=events, rules=RULES, names={7: "br-a", 8: "br-b"})
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


ECHO6 = Packet("icmpv6", A1_6, B1_6, icmp_type=128, icmp_id=77)


def test_an_ipv6_probe_dropped_by_isolation_names_the_rule() -> None:
    events = [Event(2, "inet", "netbay", "forward", "rule", "continue", None, 7, 8, ECHO6),
              Event(2, "inet", "netbay", "forward", "rule", "drop", 25, 7, 8)]
    result = assemble(v6_facts(events, Outcome("timeout", "no echo reply within 1s")))
    assert result["family"] == 6 and result["probe"] == "icmpv6 echo fd00:91::2 -> fd00:92::2 id 77"
    assert result["drop"]["where"] == "inet netbay forward"
    assert result["drop"]["rule"] == "rule `oifname @bridges drop`"
    assert result["drop"]["why"].startswith("network isolation")
    assert result["hops"][1]["rules"][0]["packet"] == (
        "icmpv6 fd00:91::2 -> fd00:92::2 echo-request id 77")
    text = render_trace(result)
    assert text.splitlines()[0] == ("trace a1 (fd00:91::2) -> b1 (fd00:92::2), icmpv6: no "
                                    "answer")
    assert "✗ dropped (request) at inet netbay forward: rule `oifname @bridges drop`" in text


def test_an_ipv6_tcp_probe_that_arrives_and_its_reply() -> None:
    syn = Packet("tcp", A1_6, A2_6, 40000, 80)
    back = Packet("tcp", A2_6, A1_6, 80, 40000)
    events = [Event(2, "inet", "netbay", "forward", "rule", "continue", None, 7, 7, syn),
              Event(2, "inet", "netbay", "forward", "rule", "accept", 20, 7, 7),
              Event(3, "inet", "netbay", "forward", "policy", "accept", None, 7, 7, back)]
    result = assemble(v6_facts(events, Outcome("connected", "the TCP handshake completed"),
                               dst=Party("container", "a2", A2_6, "/ns/a2"),
                               spec=Spec("tcp", 80, 1.0, 6), sport=40000))
    assert result["drop"] is None and len(result["reply"]) == 1
    assert result["probe"] == "tcp [fd00:91::2]:40000 -> [fd00:91::3]:80"
    assert "✓ a2 got it: the TCP handshake completed" in render_trace(result)


def test_a_silent_ipv6_drop_points_at_ipv6_forwarding() -> None:
    events = [Event(2, "inet", "netbay", "prerouting", "policy", "accept", None, 7, None, ECHO6)]
    result = assemble(v6_facts(events, Outcome("timeout"), ip_forward="0"))
    assert result["drop"]["why"] == ("the host did not forward it: "
                                     "net.ipv6.conf.all.forwarding is 0")
    nothing = assemble(v6_facts([], Outcome("timeout")))
    assert "no NDP answer" in nothing["drop"]["why"]
    # the source never found its next hop (neighbour discovery blocked)
    stuck = assemble(v6_facts([], Outcome("timeout"), next_hop=("fd00:91::1", "incomplete")))
    assert stuck["drop"] == {
        "direction": "request", "where": "a1", "rule": "",
        "why": "the packet never left a1: its neighbour entry for the next hop fd00:91::1 is "
               "incomplete (no NDP answer: neighbour discovery did not get through, or nothing "
               "has that address)"}
    reachable = assemble(v6_facts([], Outcome("timeout"), next_hop=("fd00:91::1", "reachable")))
    assert reachable["drop"]["where"] == "before the host"


def line(family: str, chain: str, rule: str, kind: str = "rule") -> dict[str, str]:
    return {"family": family, "table": "netbay", "chain": chain, "rule": rule, "kind": kind}


@pytest.mark.parametrize(("where", "rule", "why"), [
    # today's rules, and IPv6 twins of them as a firewall of both families may write them
    (("inet", "forward"), "oifname @bridges drop", "network isolation: a container network"),
    (("inet", "forward"), "oifname @bridges6 drop", "network isolation: a container network"),
    (("inet", "forward"), "ip6 daddr @subnets6 oifname @bridges drop", "network isolation: a c"),
    (("inet", "forward"), "iifname @internal drop", "the source network is internal"),
    (("inet", "forward"), "oifname @internal_v6 drop", "the destination network is internal"),
    (("bridge", "prerouting"), "drop", "anti-spoofing"),
    (("bridge", "prerouting"), "iifname . ether saddr . ip6 saddr != @endpoints6 drop",
     "anti-spoofing"),
    (("bridge", "forward"), "iifname @icc_off_ports drop", "inter-container traffic is off"),
    (("bridge", "prerouting"), "icmpv6 type { nd-router-advert, nd-redirect } drop",
     "anti-spoofing: a container is no router"),
    (("bridge", "prerouting"), "icmpv6 type nd-neighbor-advert iifname . ether saddr . "
     "@th,64,128 != @nd_targets6 drop", "anti-spoofing: a container advertises only its own"),
    (("inet", "forward"), "iifname @bridges ip6 daddr @overlay_pools6 drop",
     "network isolation: a cluster-wide network"),
    (("inet", "raw_prerouting"), 'ip daddr 127.0.0.0/8 iifname != "lo" drop',
     "127.0.0.0/8 is accepted only from lo"),
    (("inet", "raw_prerouting"), 'ip6 daddr ::1 iifname != "lo" drop',
     "::1 is accepted only from lo"),
    (("inet", "forward"), "ip6 nexthdr 43 drop", "a rule of netbay's own table (inet netbay "
                                                 "forward)"),
])
def test_netbay_drops_are_named_by_what_the_rule_does(where: tuple[str, str], rule: str,
                                                      why: str) -> None:
    assert netbay_reason(line(*where, rule)).startswith(why)


def test_set_names_lose_their_family_mark() -> None:
    assert sets_named("iifname . ip6 saddr @bridged6 ip daddr @pub_ip oifname @masq_nets_v6") \
        == {"bridged", "pub_ip", "masq_nets"}


# --- doctor ----------------------------------------------------------------------------------
def network(name: str, *, ipv6: bool = True, internal: bool = False) -> dict[str, Any]:
    return {"name": name, "driver": "bridge", "internal": internal, "ipv6": ipv6,
            "subnets": ["10.91.0.0/24", "fd00:91::/64"] if ipv6 else ["10.91.0.0/24"],
            "device": {"name": f"br-{name}", "mtu": 1500, "present": True, "problems": [],
                       "role": "bridge"},
            "shim": None, "ports": [], "members": [], "problems": []}


def topo(*networks: dict[str, Any]) -> dict[str, Any]:
    return {"networks": list(networks), "interfaces": [], "problems": []}


def test_ipv6_forwarding_is_checked_when_a_network_has_ipv6() -> None:
    off = check_ipv6_forwarding(topo(network("dual")), "0")
    assert (off.status, off.message) == (
        "fail", "net.ipv6.conf.all.forwarding is 0: containers of dual reach nothing beyond "
        "their own network over IPv6 (net.ipv4.ip_forward does not cover IPv6)")
    assert off.fix.startswith("sysctl -w net.ipv6.conf.all.forwarding=1")
    assert off.as_json()["details"] == {"forwarding": "0"}
    assert check_ipv6_forwarding(topo(network("dual")), "1").status == "ok"
    assert check_ipv6_forwarding(topo(network("v4", ipv6=False)), "0").as_json() == {
        "check": "ipv6 forwarding", "status": "ok", "message": "no network has an IPv6 subnet",
        "fix": "", "details": {"forwarding": "0"}}
    assert check_ipv6_forwarding(topo(network("in", internal=True)), "0").status == "ok"
    assert check_ipv6_forwarding(topo(network("dual")), None).status == "fail"


RA_UPLINK = Uplink6("eth0", "1", "1", ra_route=True, dynamic=True, gateway="fe80::1")


@pytest.mark.parametrize(("uplink", "status", "start"), [
    (dataclasses.replace(RA_UPLINK, accept_ra="2"), "ok", "uplink eth0 takes router "
     "advertisements with forwarding on (accept_ra=2)"),
    (RA_UPLINK, "fail", "net.ipv6.conf.eth0.accept_ra is 1 and IPv6 forwarding is on: the "
     "kernel ignores router advertisements on eth0, yet its default route (via fe80::1) came "
     "from a router advertisement and an address on it is SLAAC's or DHCPv6's"),
    (dataclasses.replace(RA_UPLINK, ra_route=False), "fail", "net.ipv6.conf.eth0.accept_ra is "
     "1 and IPv6 forwarding is on: the kernel ignores router advertisements on eth0, yet an "
     "address on it is SLAAC's or DHCPv6's"),
    (dataclasses.replace(RA_UPLINK, accept_ra="0"), "ok", "accept_ra is 0 on eth0"),
    (dataclasses.replace(RA_UPLINK, ra_route=False, dynamic=False), "ok",
     "uplink eth0 is configured by hand"),
])
def test_accept_ra_of_an_uplink_with_forwarding_on(uplink: Uplink6, status: str,
                                                   start: str) -> None:
    (finding,) = check_accept_ra("1", [uplink])
    assert finding.status == status and finding.message.startswith(start), finding
    if status == "fail":
        assert finding.fix == ("sysctl -w net.ipv6.conf.eth0.accept_ra=2 (and keep it in "
                               "/etc/sysctl.d/)")
        assert finding.as_json()["details"]["accept_ra"] == "1"


def test_accept_ra_does_not_matter_with_forwarding_off() -> None:
    for value in ("0", None):
        (finding,) = check_accept_ra(value, [RA_UPLINK])
        assert (finding.status, finding.message) == (
            "ok", "IPv6 forwarding is off: router advertisements are taken as each "
            "interface's accept_ra says")
    (none,) = check_accept_ra("1", [])
    assert none.status == "ok" and none.message.startswith("no IPv6 default route")


def test_the_uplinks_are_the_default_routes_devices_and_those_with_slaac() -> None:
    here = Namespace(
        links=(Link("eth0", 2, ""), Link("wlan0", 3, ""), Link("br-d", 4, "bridge")),
        routes6=(Route6(None, "eth0", IPv6Address("fe80::1"), protocol=9),
                 Route6(IPv6Network("fd00:91::/64"), "br-d")),
        dynamic6=("wlan0", "nbv1234"))
    sysctls = {("eth0", "accept_ra"): "1", ("eth0", "forwarding"): "1",
               ("wlan0", "accept_ra"): "2", ("wlan0", "forwarding"): "1"}

    def fake(device: str, key: str, tree: str = "ipv4") -> str | None:
        assert tree == "ipv6"
        return sysctls.get((device, key))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(health.facts, "interface_sysctl", fake)
        uplinks = health._uplinks6(here, {"br-d"})
    assert uplinks == (Uplink6("eth0", "1", "1", ra_route=True, gateway="fe80::1"),
                       Uplink6("wlan0", "2", "1", dynamic=True))
    statuses = [f.status for f in check_accept_ra("1", uplinks)]
    assert statuses == ["fail", "ok"]


FLOWTABLE = [{"metainfo": {"version": "1.0.6"}},
             {"flowtable": {"family": "inet", "name": "ft", "table": "netbay", "handle": 9,
                            "hook": "ingress", "prio": 0, "dev": ["br-dual", "ext0"]}}]
RULESET = [{"rule": {"family": "inet", "table": "netbay", "chain": "forward", "handle": 30,
                     "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                         "right": "@bridges"}},
                              {"flow": {"op": "add", "flowtable": "@ft"}}]}}]


def test_the_fast_path_line() -> None:
    assert flowtable_devices(FLOWTABLE) == ["br-dual", "ext0"]
    assert flowtable_devices([{"flowtable": {"name": "ft", "dev": "ext0"}}]) == ["ext0"]
    assert flowtable_devices([]) is None
    assert offload_rule(RULESET, "ft") and not offload_rule([], "ft")
    on = check_fast_path(["br-dual", "ext0"], True, ["br-dual", "br-other"])
    assert (on.status, on.message) == (
        "ok", "on: flowtable inet netbay ft offloads established TCP/UDP flows of br-dual, ext0; "
        "not of br-other (their flows walk the forward chain)")
    assert on.as_json()["details"] == {"flowtable": "ft", "devices": ["br-dual", "ext0"],
                                       "offload_rule": True}
    off = check_fast_path(None, False, ["br-dual"])
    assert off.status == "ok" and off.message.startswith("off: table inet netbay has no "
                                                         "flowtable")
    assert check_fast_path(["ext0"], False, []).message == (
        "off: flowtable inet netbay ft exists but the forward chain sends no flow to it")


def test_the_ipv6_findings_render_as_doctor_lines() -> None:
    found = findings(topo(network("dual")), Ipv6Facts("0", (RA_UPLINK,), None, False))
    text = render([f.as_json() for f in found])
    assert text.splitlines()[0].startswith("[FAIL] ipv6 forwarding: net.ipv6.conf.all."
                                           "forwarding is 0")
    assert "[ok  ] accept_ra: IPv6 forwarding is off" in text
    assert "[ok  ] fast path: off: table inet netbay has no flowtable" in text
    found = findings(topo(network("dual")), Ipv6Facts("1", (RA_UPLINK,), None, False))
    text = render([f.as_json() for f in found])
    assert "[FAIL] accept_ra: net.ipv6.conf.eth0.accept_ra is 1 and IPv6 forwarding is on" in text
    assert "       fix: sysctl -w net.ipv6.conf.eth0.accept_ra=2" in text
    assert text.endswith("1 problem(s) found")


def test_an_ipv6_subnet_overlaps_no_ipv4_host_route() -> None:
    facts = DoctorFacts(
        ip_forward="1", bridge_nf={}, rp_filter={}, forward_chains=[],
        routes=[(IPv4Network("10.0.0.0/8"), "ext0")], uplink_mtu=None,
        topology=topo(dict(network("dual"), subnets=["fd00:91::/64"])), audit=[], daemon={},
        dns=None)
    assert [f.status for f in check_overlaps(facts)] == ["ok"]


def test_doctor_json_keeps_its_shape_without_details() -> None:
    assert set(check_fast_path(None, False, []).as_json()) == {"check", "status", "message",
                                                              "fix", "details"}
    from netbay.observe.doctor import Finding

    assert Finding("x", "ok", "m").as_json() == {"check": "x", "status": "ok", "message": "m",
                                                 "fix": ""}


def test_argparse_namespace_of_trace_has_a_family_default() -> None:
    args = build_parser().parse_args(["trace", "a1", "a2"])
    assert isinstance(args, argparse.Namespace) and args.family is None
