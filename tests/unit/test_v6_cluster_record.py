"""The cluster record dual stack: IPv6 fields of nodes, networks, holders and names and their
encoding (absent, byte for byte as before, on IPv4-only records), carving IPv6 subnets, peers
of both families, and remote names answering AAAA (netbay.cluster.layout, carving, state,
identity; netbay.name_entry; netbay.dns.records)."""

from __future__ import annotations

import json
import random
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from types import MappingProxyType

import pytest

from dnsprobe import build_query, parse_answer
from netbay.cluster.carving import (
    block_at,
    block_count,
    check_block_size,
    is_block_of,
    overlapping,
    pick_free_block,
    random_ula,
)
from netbay.cluster.identity import pick_address6
from netbay.cluster.kv import KeyValue
from netbay.cluster.layout import (
    GlobalNetwork,
    GlobalNetworkSpec,
    Layout,
    NodeRecord,
    block_name,
    decode_held_subnets,
    decode_held_subnets6,
    decode_names,
    decode_network,
    decode_node,
    encode_alive,
    encode_held_subnets,
    encode_names,
    encode_network,
    encode_node,
    encode_subnet_holder,
    parse_block_name,
)
from netbay.cluster.state import ClusterState, Peer
from netbay.dns.message import reverse_name
from netbay.dns.records import ContainerRow, EndpointRow, Zone, build_zone, published_names
from netbay.dns.resolver import Reply, resolve
from netbay.errors import ConfigError
from netbay.kernel.rtnl_wire6 import IFA_F_PERMANENT, IFA_F_TENTATIVE, Address6
from netbay.model import Network, SubnetConfig
from netbay.name_entry import NameEntry
from netbay.store.base import DnsRecords, RemoteName

NODE = "0123456789abcdef0123456789abcdef"
A, B = "a" * 32, "b" * 32
BLOCK = IPv4Network("10.5.52.0/24")
SUBNET6 = IPv6Network("fd12:3456:789a::/48")
BLOCK6 = IPv6Network("fd12:3456:789a:1::/64")
CREATED = "2026-01-01T00:00:00.000000000Z"
LAYOUT = Layout()


def v4_network() -> GlobalNetwork:
    return GlobalNetwork("podnet", "f" * 64, IPv4Network("10.5.0.0/16"), 24, 42, CREATED, True,
                         MappingProxyType({"backend": "vxlan"}), MappingProxyType({"a": "b"}))


def dual_network(size6: int = 64) -> GlobalNetwork:
    return GlobalNetwork("podnet", "f" * 64, IPv4Network("10.5.0.0/16"), 24, 42, CREATED,
                         driver="routed", subnet6=SUBNET6, subnet_size6=size6)


# --- encoding ------------------------------------------------------------------------------
def test_ipv4_only_records_encode_byte_for_byte_as_before() -> None:
    node = NodeRecord(NODE, "alpha", IPv4Address("192.0.2.1"), "0.1.0", 7, 15, 3600)
    assert encode_node(node) == (
        b'{"address":"192.0.2.1","grace":3600,"grace_lease":7,"id":"' + NODE.encode()
        + b'","name":"alpha","ttl":15,"version":"0.1.0","vteps":{}}')
    assert encode_network(v4_network()) == (
        b'{"created":"2026-01-01T00:00:00.000000000Z","driver":"overlay","id":"' + b"f" * 64
        + b'","internal":true,"labels":{"a":"b"},"name":"podnet","options":{"backend":'
        b'"vxlan"},"subnet":"10.5.0.0/16","subnet_size":24,"vni":42}')
    assert encode_held_subnets([BLOCK]) == b'{"subnet":"10.5.52.0/24","subnets":["10.5.52.0/24"]}'
    entry = NameEntry("web", ("www",), IPv4Address("10.5.52.2"), "c1")
    assert encode_names([entry]) == (
        b'[{"address":"10.5.52.2","aliases":["www"],"container":"c1","name":"web"}]')


def test_dual_stack_records_carry_their_ipv6_fields_both_ways() -> None:
    node = NodeRecord(NODE, "alpha", IPv4Address("192.0.2.1"), "0.1.0", 7, 15, 3600,
                      address6=IPv6Address("2001:db8::1"))
    assert json.loads(encode_node(node))["address6"] == "2001:db8::1"
    assert decode_node(encode_node(node)) == node
    network = dual_network(122)
    raw = json.loads(encode_network(network))
    assert (raw["subnet6"], raw["subnet_size6"]) == ("fd12:3456:789a::/48", 122)
    assert decode_network(encode_network(network)) == network
    # an older record reads as IPv4 only
    assert decode_network(encode_network(v4_network())).subnet6 is None
    assert decode_node(encode_node(NodeRecord(NODE, "a", IPv4Address("192.0.2.1"), "0", 1, 2,
                                              3))).address6 is None


def test_a_holder_lists_its_ipv6_blocks_beside_the_ipv4_ones() -> None:
    second6 = IPv6Network("fd12:3456:789a:7::/64")
    data = encode_held_subnets([BLOCK], [BLOCK6, second6])
    assert json.loads(data) == {"subnet": "10.5.52.0/24", "subnets": ["10.5.52.0/24"],
                                "subnets6": ["fd12:3456:789a:1::/64", "fd12:3456:789a:7::/64"]}
    assert decode_held_subnets(data) == (BLOCK,)
    assert decode_held_subnets6(data) == (BLOCK6, second6)
    assert decode_held_subnets6(b'{"subnet":"10.5.52.0/24"}') == ()


def test_an_ipv6_block_has_its_key_under_the_same_subnets_prefix() -> None:
    assert block_name(BLOCK6) == "fd12:3456:789a:1::-64"
    assert parse_block_name("fd12:3456:789a:1::-64") == BLOCK6
    assert parse_block_name("10.5.52.0-24") == BLOCK
    key = LAYOUT.subnet("podnet", BLOCK6)
    assert key == "/netbay/v1/subnets/podnet/fd12:3456:789a:1::-64"
    parsed = LAYOUT.parse(key)
    assert parsed is not None and (parsed.kind, parsed.item) == ("subnets",
                                                                 "fd12:3456:789a:1::-64")


def test_name_entries_carry_address6_only_when_set() -> None:
    dual = NameEntry("web", (), IPv4Address("10.5.52.2"), "c1",
                     address6=IPv6Address("fd12:3456:789a:1::2"))
    four = NameEntry("db", ("sql",), IPv4Address("10.5.52.3"), "c2")
    data = encode_names([dual, four])
    assert [e.get("address6") for e in json.loads(data)] == ["fd12:3456:789a:1::2", None]
    assert "address6" not in json.loads(data)[1]
    assert decode_names(data, A) == (
        NameEntry("web", (), IPv4Address("10.5.52.2"), "c1", A,
                  IPv6Address("fd12:3456:789a:1::2")),
        NameEntry("db", ("sql",), IPv4Address("10.5.52.3"), "c2", A))


def test_name_entries_order_as_before_and_never_compare_none_with_an_address() -> None:
    base = NameEntry("web", (), IPv4Address("10.5.52.2"), "c1")
    with6 = NameEntry("web", (), IPv4Address("10.5.52.2"), "c1",
                      address6=IPv6Address("fd12::2"))
    other = NameEntry("app", ("z",), IPv4Address("10.5.52.9"), "c9")
    assert sorted([with6, base, other]) == [other, base, with6]
    assert base != with6 and base < with6 and with6 > base and base <= base


# --- a spec --------------------------------------------------------------------------------
def test_a_spec_is_dual_stack_with_ipv6_or_a_subnet6() -> None:
    assert not GlobalNetworkSpec("n").dual_stack
    assert GlobalNetworkSpec("n", ipv6=True).dual_stack
    assert GlobalNetworkSpec("n", subnet6=SUBNET6).dual_stack


# --- carving IPv6 --------------------------------------------------------------------------
def test_ipv6_blocks_are_found_by_index_even_in_a_huge_subnet() -> None:
    assert block_count(SUBNET6, 64) == 65536
    assert block_count(SUBNET6, 122) == 2**74
    assert block_at(SUBNET6, 64, 1) == BLOCK6
    last = IPv6Network("fd12:3456:789a:ffff:ffff:ffff:ffff:ffc0/122")
    assert block_at(SUBNET6, 122, 2**74 - 1) == last
    assert is_block_of(SUBNET6, 64, BLOCK6)
    assert not is_block_of(SUBNET6, 64, IPv6Network("fd12:3456:789b::/64"))
    assert not is_block_of(SUBNET6, 24, BLOCK)  # another family is never a block of it
    assert not is_block_of(IPv4Network("10.5.0.0/16"), 64, BLOCK6)


def test_a_free_ipv6_block_is_picked_among_taken_ones_of_both_families() -> None:
    taken: set[IPv4Network | IPv6Network] = {BLOCK, IPv4Network("10.5.1.0/24"), BLOCK6}
    rng = random.Random(7)
    for _ in range(50):
        picked = pick_free_block(SUBNET6, 122, taken, rng=rng)
        assert picked is not None and picked.prefixlen == 122 and picked.subnet_of(SUBNET6)
    assert pick_free_block(SUBNET6, 64, taken, prefer=BLOCK6) != BLOCK6  # taken
    free = IPv6Network("fd12:3456:789a:2::/64")
    assert pick_free_block(SUBNET6, 64, taken, prefer=free) == free
    tiny = IPv6Network("fd12::/63")
    assert pick_free_block(tiny, 64, {IPv6Network("fd12::/64")}) == IPv6Network("fd12:0:0:1::/64")
    assert pick_free_block(tiny, 64, {IPv6Network("fd12::/64"),
                                      IPv6Network("fd12:0:0:1::/64")}) is None


def test_an_ipv6_block_size_must_fit_its_subnet() -> None:
    check_block_size(SUBNET6, 64)
    check_block_size(SUBNET6, 126)
    with pytest.raises(ConfigError, match=r"^invalid subnet_size6 40: must be between 48 and "
                                          r"126 for fd12:3456:789a::/48$"):
        check_block_size(SUBNET6, 40)
    with pytest.raises(ConfigError, match="^invalid subnet_size6 127:"):
        check_block_size(SUBNET6, 127)
    with pytest.raises(ConfigError, match="^invalid subnet_size 31:"):
        check_block_size(IPv4Network("10.0.0.0/16"), 31)  # the IPv4 rule as before


def test_overlap_is_checked_within_a_family_and_a_default_is_a_free_ula_48() -> None:
    others: list[tuple[str, IPv4Network | IPv6Network]] = [
        ("four", IPv4Network("10.0.0.0/8")), ("six", SUBNET6)]
    assert overlapping(IPv6Network("fd12:3456:789a:5::/64"), others) == "six"
    assert overlapping(IPv6Network("fd99::/48"), others) is None
    assert overlapping(IPv4Network("10.1.0.0/16"), others) == "four"
    rng = random.Random(1)
    first = random_ula([], random.Random(1))
    assert first.prefixlen == 48 and first.subnet_of(IPv6Network("fd00::/8"))
    again = random_ula([first], rng)  # the same draw comes first: taken, so the next one
    assert again != first and again.prefixlen == 48 and not again.overlaps(first)


# --- peers of both families ----------------------------------------------------------------
def kv(key: str, value: bytes) -> KeyValue:
    return KeyValue(key, value, 1, 1, 0)


def test_ipv6_blocks_are_peers_too_sorted_by_node_then_family() -> None:
    second6 = IPv6Network("fd12:3456:789a:0::/64")
    b_block, b_block6 = IPv4Network("10.5.2.0/24"), IPv6Network("fd12:3456:789a:3::/64")
    address6 = IPv6Address("2001:db8::a")
    nodes = [
        NodeRecord(A, "alpha", IPv4Address("192.0.2.1"), "0", 9, 15, 3600,
                   MappingProxyType({"podnet": "02:00:00:00:00:0a"}), address6),
        NodeRecord(B, "beta", IPv4Address("192.0.2.2"), "0", 9, 15, 3600),
    ]
    items = [kv(LAYOUT.network("podnet"), encode_network(dual_network()))]
    items += [kv(LAYOUT.node(n.id), encode_node(n)) for n in nodes]
    items += [kv(LAYOUT.alive(n.id), encode_alive(5)) for n in nodes]
    for block, holder in ((BLOCK6, A), (b_block6, B), (BLOCK, A), (second6, A), (b_block, B)):
        items.append(kv(LAYOUT.subnet("podnet", block), encode_subnet_holder(holder)))
    state = ClusterState.from_listing(LAYOUT, reversed(items))
    mac = "02:00:00:00:00:0a"
    a4 = IPv4Address("192.0.2.1")
    assert state.peers() == {"podnet": (
        Peer(A, "alpha", a4, BLOCK, mac, address6),
        Peer(A, "alpha", a4, second6, mac, address6),
        Peer(A, "alpha", a4, BLOCK6, mac, address6),
        Peer(B, "beta", IPv4Address("192.0.2.2"), b_block, None),
        Peer(B, "beta", IPv4Address("192.0.2.2"), b_block6, None),
    )}
    assert state.blocks_of(A) == {"podnet": (BLOCK,)}  # IPv4 only, as before
    assert state.blocks6_of(A) == {"podnet": (second6, BLOCK6)}
    alpha = next(s for s in state.statuses({}, 0.0) if s.id == A)
    assert alpha.blocks == {"podnet": (BLOCK,)} and alpha.subnets == {"podnet": BLOCK}
    assert alpha.blocks6 == {"podnet": (second6, BLOCK6)} and alpha.address6 == address6
    state.delete(LAYOUT.subnet("podnet", BLOCK6))
    assert [p.subnet for p in state.peers(exclude=B)["podnet"]] == [BLOCK, second6]


# --- the node's IPv6 underlay address ------------------------------------------------------
def test_the_ipv6_underlay_address_is_the_first_usable_global_one_of_the_ipv4_link() -> None:
    address = IPv4Address("192.0.2.10")
    v4 = [(1, IPv4Interface("127.0.0.1/8")), (3, IPv4Interface("192.0.2.10/24"))]
    link_local = Address6(3, IPv6Interface("fe80::1/64"), IFA_F_PERMANENT, 253)
    elsewhere = Address6(2, IPv6Interface("2001:db8:2::1/64"))
    tentative = Address6(3, IPv6Interface("2001:db8::7/64"), IFA_F_TENTATIVE)
    deprecated = Address6(3, IPv6Interface("2001:db8::8/64"), IFA_F_PERMANENT | 0x20)
    usable = Address6(3, IPv6Interface("2001:db8::9/64"))
    later = Address6(3, IPv6Interface("2001:db8::a/64"))
    found = [link_local, elsewhere, tentative, deprecated, usable, later]
    assert pick_address6(address, v4, found) == IPv6Address("2001:db8::9")
    assert pick_address6(address, v4, [link_local, elsewhere, tentative]) is None
    assert pick_address6(IPv4Address("198.51.100.1"), v4, found) is None  # not this host's


# --- remote names answer AAAA ---------------------------------------------------------------
def _dns_zone(remote: list[RemoteName]) -> Zone:
    dual = Network(id="n-dual", name="dual", driver="overlay", created="", device="nbx-dual",
                   subnets=(SubnetConfig(IPv4Network("10.61.1.0/24"), IPv4Address("10.61.1.1")),
                            SubnetConfig(IPv6Network("fd00:61:1::/64"),
                                         IPv6Address("fd00:61:1::1"))))
    containers = [ContainerRow("c-here", "here", "herehost", "running")]
    endpoints = [EndpointRow("n-dual", "c-here", IPv4Address("10.61.1.2"),
                             address6=IPv6Address("fd00:61:1::2"))]
    return build_zone([dual], containers, endpoints, remote)


def _ask(zone: Zone, name: str, qtype: str) -> list[str]:
    _, packet = build_query(name, qtype)
    decision = resolve(packet, zone.askers["n-dual"]["fd00:61:1::2"], zone, ["10.99.99.53"])
    assert isinstance(decision, Reply), decision
    reply = parse_answer(decision.packet)
    assert reply["rcode"] == "NOERROR", reply
    answers = reply["answers"]
    assert isinstance(answers, list)
    return [str(a) for a in answers]


def test_a_remote_name_with_address6_answers_aaaa_and_its_ptr() -> None:
    far6 = IPv6Address("fd00:61:1:0:1::5")
    remote = [
        RemoteName("n-dual", NameEntry("far", ("yonder",), IPv4Address("10.61.1.50"), "c-far",
                                       B, far6)),
        RemoteName("n-dual", NameEntry("old", (), IPv4Address("10.61.1.51"), "c-old", B)),
        # a name this host holds stays its own, in both families
        RemoteName("n-dual", NameEntry("here", (), IPv4Address("10.61.1.52"), "c-x", B,
                                       IPv6Address("fd00:61:1::52"))),
    ]
    zone = _dns_zone(remote)
    assert _ask(zone, "far", "A") == ["10.61.1.50"]
    assert _ask(zone, "yonder.dual", "AAAA") == [str(far6)]
    assert _ask(zone, reverse_name(far6), "PTR") == ["far.dual"]
    assert _ask(zone, "old", "AAAA") == []  # IPv4 only: no AAAA, as before
    assert _ask(zone, "here", "AAAA") == ["fd00:61:1::2"]
    assert _ask(zone, "here", "A") == ["10.61.1.2"]


def test_published_names_carry_address6_only_when_asked() -> None:
    dual = DnsRecords(
        [Network(id="n-dual", name="dual", driver="overlay", created="", subnets=(),
                 device="nbx-dual")],
        [ContainerRow("c-here", "here", "herehost", "running")],
        [EndpointRow("n-dual", "c-here", IPv4Address("10.61.1.2"), ("svc",),
                     address6=IPv6Address("fd00:61:1::2"))])
    v4 = NameEntry("here", ("herehost", "svc"), IPv4Address("10.61.1.2"), "c-here")
    assert published_names(dual, "n-dual") == [v4]  # as before
    assert published_names(dual, "n-dual", ipv6=True) == [
        NameEntry("here", ("herehost", "svc"), IPv4Address("10.61.1.2"), "c-here",
                  address6=IPv6Address("fd00:61:1::2"))]
