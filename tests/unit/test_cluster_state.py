"""The cluster record as one node sees it, and the peer lists it delivers
(netbay.cluster.state): built from a listing, moved by watch events, diffed level-triggered."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType

from netbay.cluster.kv import DELETE, PUT, KeyValue, WatchEvent
from netbay.cluster.layout import (
    GlobalNetwork,
    Layout,
    NodeRecord,
    encode_alive,
    encode_network,
    encode_node,
    encode_subnet_holder,
)
from netbay.cluster.state import LOST, READY, ClusterState, Peer, changed

LAYOUT = Layout()
A, B, C = "a" * 32, "b" * 32, "c" * 32
BLOCK_A, BLOCK_B = IPv4Network("10.5.1.0/24"), IPv4Network("10.5.2.0/24")
PODNET = GlobalNetwork("podnet", "n" * 64, IPv4Network("10.5.0.0/16"), 24, 1, "t0")


def node(ident: str, name: str, address: str, mac: str | None = None) -> NodeRecord:
    vteps = MappingProxyType({"podnet": mac} if mac else {})
    return NodeRecord(ident, name, IPv4Address(address), "0.1.0", 99, 15, 3600, vteps)


def kv(key: str, value: bytes, revision: int = 1) -> KeyValue:
    return KeyValue(key, value, revision, revision, 0)


def put(key: str, value: bytes, revision: int) -> WatchEvent:
    return WatchEvent(PUT, kv(key, value, revision))


def gone(key: str, revision: int) -> WatchEvent:
    return WatchEvent(DELETE, kv(key, b"", revision))


def listing() -> list[KeyValue]:
    return [
        kv(LAYOUT.network("podnet"), encode_network(PODNET)),
        kv(LAYOUT.node(A), encode_node(node(A, "alpha", "192.0.2.1", "02:00:00:00:00:0a"))),
        kv(LAYOUT.node(B), encode_node(node(B, "beta", "192.0.2.2"))),
        kv(LAYOUT.alive(A), encode_alive(5)),
        kv(LAYOUT.alive(B), encode_alive(6)),
        kv(LAYOUT.subnet("podnet", BLOCK_A), encode_subnet_holder(A)),
        kv(LAYOUT.subnet("podnet", BLOCK_B), encode_subnet_holder(B)),
        kv(LAYOUT.holder("podnet", A), b'{"subnet":"10.5.1.0/24"}'),
        kv("/netbay/v2/nodes/" + C, b"from a later version"),
    ]


PEER_A = Peer(A, "alpha", IPv4Address("192.0.2.1"), BLOCK_A, "02:00:00:00:00:0a")
PEER_B = Peer(B, "beta", IPv4Address("192.0.2.2"), BLOCK_B, None)


def test_a_listing_gives_every_network_its_ready_peers_but_this_node() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    assert state.peers() == {"podnet": (PEER_A, PEER_B)}
    assert state.peers(exclude=B) == {"podnet": (PEER_A,)}


def test_lost_nodes_and_subnets_without_a_node_or_network_are_no_peers() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    state.apply(gone(LAYOUT.alive(B), 7))
    orphan = LAYOUT.subnet("podnet", IPv4Network("10.5.3.0/24"))  # node C has no record
    state.apply(put(orphan, encode_subnet_holder(C), 8))
    unknown = LAYOUT.subnet("other", IPv4Network("10.6.0.0/24"))  # no such network
    state.apply(put(unknown, encode_subnet_holder(A), 9))
    assert state.peers() == {"podnet": (PEER_A,)}
    assert state.lost() == {B}
    assert state.blocks_of(A) == {"podnet": (BLOCK_A,)}


def test_events_replace_a_nodes_address_and_mac_and_removal_empties_a_network() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    moved = node(A, "alpha", "192.0.2.9", "02:00:00:00:00:0b")
    state.apply(put(LAYOUT.node(A), encode_node(moved), 7))
    (first, second) = state.peers()["podnet"]
    assert (first.address, first.vtep_mac) == (IPv4Address("192.0.2.9"), "02:00:00:00:00:0b")
    assert second == PEER_B
    state.apply(gone(LAYOUT.network("podnet"), 8))
    assert state.peers() == {}


def test_an_unreadable_value_is_ignored_and_the_rest_stays() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    state.apply(put(LAYOUT.node(B), b"not json", 7))
    state.apply(put(LAYOUT.subnet("podnet", BLOCK_B).replace("10.5.2.0-24", "junk"), b"{}", 8))
    state.apply(gone(LAYOUT.prefix("subnets", "podnet") + "junk", 9))
    assert state.peers() == {"podnet": (PEER_A, PEER_B)}


def test_statuses_list_ready_and_lost_nodes_with_when_they_were_seen() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    state.apply(gone(LAYOUT.alive(B), 7))
    alpha, beta = state.statuses({B: 1000.0}, now=2000.0)
    assert (alpha.name, alpha.state, alpha.last_seen, dict(alpha.subnets)) == (
        "alpha", READY, 2000.0, {"podnet": BLOCK_A})
    assert (beta.name, beta.state, beta.last_seen, dict(beta.subnets)) == (
        "beta", LOST, 1000.0, {"podnet": BLOCK_B})
    assert dict(alpha.vteps) == {"podnet": "02:00:00:00:00:0a"}


def test_only_networks_whose_list_changed_are_delivered_each_whole() -> None:
    moved = Peer(A, "alpha", IPv4Address("192.0.2.9"), BLOCK_A, PEER_A.vtep_mac)
    remac = Peer(A, "alpha", PEER_A.address, BLOCK_A, "02:00:00:00:00:0b")
    before = {"podnet": (PEER_A, PEER_B), "quiet": (PEER_B,), "gone": (PEER_A,)}
    assert changed(before, before) == {}
    assert changed(before, {**before, "podnet": (moved, PEER_B)}) == {"podnet": (moved, PEER_B)}
    assert changed(before, {**before, "podnet": (remac, PEER_B)}) == {"podnet": (remac, PEER_B)}
    after = {"podnet": (PEER_A, PEER_B), "quiet": (PEER_B,), "new": ()}
    assert changed(before, after) == {"gone": (), "new": ()}
