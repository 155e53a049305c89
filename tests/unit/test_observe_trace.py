"""Trace: decoding nftables trace messages, rule texts, the trace chains, and the path
assembled from events (hops, NAT, the dropping rule and why); pure."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from netbay.errors import ConfigError
from netbay.observe import nft_events
from netbay.observe.hops import (
    Facts,
    Outcome,
    Party,
    Spec,
    assemble,
    matches,
    parse_spec,
    render,
    trace_chains,
)
from netbay.observe.nft_events import Chain, Event, Packet
from netbay.observe.peers import leaving_hop, node_for, overlay_section
from overlay_facts import NODES, PODNET, TUNNEL, node, overlay_host

# Two messages a 6.18 kernel sent to NFNLGRP_NFTRACE: an ICMP echo request marked by the
# `meta nftrace set 1` rule (handle 2) of `bridge tr tpre`, then dropped by rule handle 2 of
# `inet filt forw` (in: ifindex 2, out: ifindex 3).
MARKED = bytes.fromhex(
    "ac000000110a000000000000000000000700000008000f000000000708000400000000030800060026dbfa3d"
    "09000200747072650000000007000100747200000c00030000000000000000020c00050008000100ffffffff"
    "08000a000000000406000b0000010000180008004500005471e340004001b4bf0a0100020a02000218000900"
    "0800f38009ea000191020a6b0000000095530b001200070036a987e33b3b7a716c41044208000000")
DROPPED = bytes.fromhex(
    "c0000000110a000000000000000000000100000008000f00000000020800040000000003080006005f5d1641"
    "09000200666f7277000000000900010066696c74000000000c00030000000000000000020c00050008000100"
    "0000000008000a000000000206000b000001000008000c000000000306000d00000100001800080045000054"
    "71e340003f01b5bf0a0100020a020002180009000800f38009ea000191020a6b0000000095530b0012000700"
    "36a987e33b3b7a716c41044208000000")


def test_kernel_trace_messages_decode() -> None:
    marked = nft_events.decode(MARKED)
    assert marked is not None
    assert (marked.family, marked.table, marked.chain, marked.kind, marked.handle,
            marked.verdict, marked.iif) == ("bridge", "tr", "tpre", "rule", 2, "continue", 4)
    assert marked.packet == Packet("icmp", IPv4Address("10.1.0.2"), IPv4Address("10.2.0.2"),
                                   icmp_type=8, icmp_id=0x09EA)
    dropped = nft_events.decode(DROPPED)
    assert dropped is not None
    assert (dropped.family, dropped.table, dropped.chain, dropped.verdict, dropped.iif,
            dropped.oif) == ("inet", "filt", "forw", "drop", 2, 3)
    assert [m for m in nft_events.messages(MARKED + DROPPED)] == [MARKED, DROPPED]


RULESET = """table inet netbay { # handle 5
\tset bridges { # handle 6
\t\ttype ifname
\t}

\tchain forward { # handle 12
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname . oifname @same_bridge accept # handle 20
\t\toifname @bridges drop # handle 25
\t}

\tchain prerouting { # handle 2
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local dnat ip to meta l4proto . th dport map @pub_any # handle 16
\t}
}
table ip filter { # handle 9
\tchain FORWARD { # handle 1
\t\ttype filter hook forward priority filter; policy drop;
\t}
}
"""


def test_ruleset_with_handles_parses() -> None:
    rules, chains = nft_events.parse_ruleset(RULESET)
    assert rules == {
        ("inet", "netbay", 20): "iifname . oifname @same_bridge accept",
        ("inet", "netbay", 25): "oifname @bridges drop",
        ("inet", "netbay", 16): "fib daddr type local dnat ip to meta l4proto . th dport map "
                                "@pub_any",
    }
    assert chains[("ip", "filter", "FORWARD")] == Chain("ip", "filter", "FORWARD", "forward",
                                                        "filter", "filter", "drop")
    assert chains[("inet", "netbay", "prerouting")].kind == "nat"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Port": "x"}, "invalid port 'x': expected a port number"),
        ({"Port": "70000"}, "invalid port '70000': out of range 1-65535"),
        ({"Proto": "sctp"}, "invalid proto 'sctp': expected tcp, udp or icmp"),
        ({"Proto": "udp"}, "invalid port '': a udp probe needs --port"),
        ({"Proto": "icmp", "Port": "80"}, "invalid port 80: icmp has no ports"),
        ({"Timeout": "99"}, "invalid timeout 99.0: out of range 0.05-30 seconds"),
    ],
)
def test_bad_trace_requests(body: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_spec(body)
    assert str(caught.value).startswith(message)


def test_defaults_and_trace_chains() -> None:
    assert parse_spec({}) == Spec("icmp", None, 1.0)
    assert parse_spec({"Port": "80"}) == Spec("tcp", 80, 1.0)
    request, reply = matches(Spec("tcp", 80, 1), IPv4Address("10.0.0.2"), 40000, 0)
    assert request == ("ip daddr 10.0.0.2 tcp sport 40000 tcp dport 80 "
                       "tcp flags & (syn | ack) == syn")
    assert reply == "tcp dport 40000 tcp flags & (syn | rst) != 0"
    add, remove = trace_chains("abc", request, reply)
    assert add.count("add chain") == 3 and add.count("meta nftrace set 1") == 6
    assert "add chain bridge netbay trace_pre_abc { type filter hook prerouting priority -350;" \
        in add
    assert remove.splitlines() == ["delete chain inet netbay trace_pre_abc",
                                   "delete chain inet netbay trace_out_abc",
                                   "delete chain bridge netbay trace_pre_abc"]


def pkt(src: str, sport: int, dst: str, dport: int) -> Packet:
    return Packet("tcp", IPv4Address(src), IPv4Address(dst), sport, dport)


def facts(events: list[Event], outcome: Outcome, **kw: object) -> Facts:
    _, chains = nft_events.parse_ruleset(RULESET)
    rules, _ = nft_events.parse_ruleset(RULESET)
    base: dict[str, object] = dict(
        src=Party("container", "a1", IPv4Address("10.91.0.2"), "/ns/a1"),
        dst=Party("container", "b1", IPv4Address("10.92.0.2"), "/ns/b1"),
        spec=Spec("tcp", 80, 1.0), outcome=outcome, sport=40000,
        src_route="route 10.92.0.2 via 10.91.0.1 dev eth0", src_hop="veth a1:eth0 ⇄ nbv1",
        host_route="route 10.92.0.2 dev br-b", dst_hop="bridge br-b -> port nbv2",
        events=events, chains=chains, rules=rules, names={7: "br-a", 8: "br-b"},
    )
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


REQUEST = pkt("10.91.0.2", 40000, "10.92.0.2", 80)


def test_a_drop_by_isolation_names_the_rule_and_why() -> None:
    events = [
        Event(1, "netbay", "netbay", "trace_pre_x", "rule", "continue", 3, packet=REQUEST),
        Event(2, "inet", "netbay", "forward", "rule", "continue", None, 7, 8, REQUEST),
        Event(2, "inet", "netbay", "forward", "rule", "drop", 25, 7, 8),
    ]
    result = assemble(facts(events, Outcome("timeout", "no answer")))
    assert [h["where"] for h in result["hops"]] == ["a1", "into the host", "host", "b1"]
    forward = result["hops"][2]["rules"]
    assert forward == [{
        "family": "inet", "table": "netbay", "chain": "forward", "hook": "forward",
        "chain_type": "filter", "kind": "rule", "rule": "oifname @bridges drop",
        "verdict": "drop", "iif": "br-a", "oif": "br-b",
        "packet": "tcp 10.91.0.2:40000 -> 10.92.0.2:80"}]
    assert result["drop"]["where"] == "inet netbay forward"
    assert result["drop"]["rule"] == "rule `oifname @bridges drop`"
    assert result["drop"]["why"].startswith("network isolation")
    text = render(result)
    assert "✗ dropped (request) at inet netbay forward: rule `oifname @bridges drop`" in text


def test_a_published_port_shows_the_dnat_rewrite() -> None:
    before = pkt("10.92.0.2", 40000, "198.51.100.1", 8080)
    after = pkt("10.92.0.2", 40000, "10.91.0.3", 80)
    back = pkt("10.91.0.3", 80, "10.91.0.1", 40000)
    events = [
        Event(1, "inet", "netbay", "prerouting", "rule", "continue", None, 8, None, before),
        Event(1, "inet", "netbay", "prerouting", "rule", "accept", 16, 8),
        Event(2, "inet", "netbay", "forward", "policy", "accept", None, 8, 7, after),
        Event(3, "inet", "netbay", "forward", "policy", "accept", None, 7, 8, back),
    ]
    conntrack = (("10.92.0.2", 40000, "198.51.100.1", 8080), ("10.91.0.3", 80, "10.91.0.1",
                                                            40000))
    result = assemble(facts(events, Outcome("connected"), conntrack=conntrack,
                            dst=Party("host", "host", IPv4Address("198.51.100.1")),
                            dst_name="a2"))
    assert result["nat"] == [
        "DNAT 198.51.100.1:8080 -> 10.91.0.3:80 (by inet netbay prerouting: fib daddr type "
        "local dnat ip to meta l4proto . th dport map @pub_any)",
        "SNAT 10.92.0.2:40000 -> 10.91.0.1:40000 (conntrack: the destination sees 10.91.0.1)"]
    assert result["drop"] is None and result["reached"] == "a2"
    assert len(result["reply"]) == 1
    assert "✓ a2 got it" in render(result)


def test_a_silent_drop_points_at_ip_forward() -> None:
    events = [Event(2, "inet", "netbay", "prerouting", "policy", "accept", None, 7, None,
                    REQUEST)]
    result = assemble(facts(events, Outcome("timeout"), ip_forward="0"))
    assert result["drop"] == {"direction": "request", "where": "host routing", "rule": "",
                              "why": "the host did not forward it: net.ipv4.ip_forward is 0"}


def test_a_policy_drop_of_another_table_is_not_blamed_on_netbay() -> None:
    events = [Event(4, "ip", "filter", "FORWARD", "policy", "drop", None, 7, 8, REQUEST)]
    result = assemble(facts(events, Outcome("timeout")))
    assert result["drop"]["rule"] == "policy drop"
    assert result["drop"]["why"].startswith("the drop policy of table ip filter, chain FORWARD "
                                            "(not netbay's)")


def test_an_address_in_another_nodes_block_leaves_by_the_tunnel_or_the_underlay() -> None:
    section = overlay_section(PODNET, overlay_host(), NODES)
    h3 = node_for(section, IPv4Address("10.77.3.5"))
    h2 = node_for(section, IPv4Address("10.77.2.7"))
    assert h3 is not None and h2 is not None
    assert leaving_hop(section, h3) == ("tunnel", f"tunnel {TUNNEL} to node h3 (198.18.2.13) "
                                                  "VNI 4242")
    assert leaving_hop(section, h2) == ("underlay", "underlay eth0 to node h2 (198.18.1.12) "
                                                    "via host-gw")
    assert node_for(section, IPv4Address("10.77.1.5")) is None  # this node's own block
    assert node_for(section, IPv4Address("10.99.0.1")) is None
    lost = overlay_section(PODNET, overlay_host(routes=()), [node("h3", "198.18.2.13",
                                                                  "10.77.3.0/24", "lost")])
    unrouted = node_for(lost, IPv4Address("10.77.3.5"))
    assert unrouted is not None and leaving_hop(lost, unrouted) == (
        "cluster", "node h3 (198.18.2.13) holds 10.77.3.0/24, but this node has no route to it")


def test_a_trace_to_another_node_ends_at_the_hop_that_leaves_this_one() -> None:
    events = [Event(2, "inet", "netbay", "forward", "policy", "accept", None, 7, 12,
                    pkt("10.77.1.2", 40000, "10.77.3.2", 80))]
    result = assemble(facts(
        events, Outcome("connected"), dst=Party("address", "10.77.3.2", IPv4Address("10.77.3.2")),
        host_route=f"route 10.77.3.2 via 10.77.3.0 dev {TUNNEL} (arriving on br-a)",
        dst_hop=f"tunnel {TUNNEL} to node h3 (198.18.2.13) VNI 4242", dst_hop_where="tunnel",
        dst_name="10.77.3.2 on node h3"))
    assert [h["where"] for h in result["hops"]] == ["a1", "into the host", "host", "tunnel"]
    assert result["reached"] == "10.77.3.2 on node h3" and result["drop"] is None
    text = render(result)
    assert f"   4  tunnel          tunnel {TUNNEL} to node h3 (198.18.2.13) VNI 4242" in text
    assert "✓ 10.77.3.2 on node h3 got it" in text
