"""Which sessions a node's BIRD gets (engine/bgp.py plan_settings): the full mesh by the
networks' encapsulation, route reflectors replacing it on every subnet, external peers; the
routes VXLAN carries kept out of the kernel. The cluster's BGP configuration in etcd's record
(cluster/bgp_config.py) as the view keeps it, and what a node checks of an external peer
(engine/bgp_cluster.py): no etcd, no BIRD, no kernel."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import SimpleNamespace
from typing import Any

import pytest

from netbay.cluster.bgp_config import (
    ALL_NODES,
    BgpConfig,
    BgpConfigState,
    ExternalPeerRecord,
    check_asn,
    encode_peer,
    parse_peer_address,
)
from netbay.cluster.kv import DELETE, PUT, KeyValue, WatchEvent
from netbay.cluster.layout import BGP_PEERS, BGP_REFLECTORS, GlobalNetwork, Layout, ParsedKey
from netbay.cluster.state import ClusterState
from netbay.drivers.routed import local_options
from netbay.engine.bgp import NodeBgp, NodeRef, plan_settings
from netbay.engine.bgp_cluster import ClusterBgp, Interfaces
from netbay.errors import ConfigError
from netbay.model import Network, SubnetConfig
from netbay.plan.bird import MAX_ASN, BgpSettings, ExternalPeer, render
from netbay.plan.routed import Encapsulation
from netbay.reconcile.state import LinkState, Observed

POOL, OTHER_POOL = IPv4Network("10.88.0.0/16"), IPv4Network("10.99.0.0/16")
SEGMENT_A = IPv4Network("198.18.1.0/24")
H1 = NodeRef("1" * 32, "h1", IPv4Address("198.18.1.11"))
H2 = NodeRef("2" * 32, "h2", IPv4Address("198.18.1.12"))
H3 = NodeRef("3" * 32, "h3", IPv4Address("198.18.2.13"))
H4 = NodeRef("4" * 32, "h4", IPv4Address("198.18.2.14"))
TOR = ExternalPeer("as65000-198.18.1.1", IPv4Address("198.18.1.1"), 65000)


def share(name: str = "calico", block: str = "10.88.0.0/26", pool: IPv4Network = POOL,
          encap: Encapsulation = Encapsulation.CROSS_SUBNET) -> Network:
    return Network(id=name * 2, name=name, driver="routed", created="",
                   subnets=(SubnetConfig(IPv4Network(block)),),
                   options=local_options(pool, 4096, encap, 64512, 1450))


def plan(me: NodeRef = H1, shares: Sequence[Network] = (share(),),
         holding: Sequence[NodeRef] = (H1, H2, H3), **fields: Any) -> BgpSettings | None:
    """ME's settings, every node of HOLDING with a block of `calico` (FIELDS: NodeBgp's)."""
    defaults: dict[str, Any] = {
        "underlay": (IPv4Network(f"{me.address}/24", strict=False),),
        "peers": {"calico": [p for p in holding if p != me]},
        "networks": {"calico": share().options},
    }
    defaults.update(fields)
    return plan_settings(NodeBgp(node=me.node, address=me.address, shares=shares, **defaults))


def sessions(settings: BgpSettings | None) -> list[tuple[str, bool]]:
    assert settings is not None
    return [(p.name, p.rr_client) for p in settings.mesh]


def test_the_full_mesh_under_cross_subnet_is_the_nodes_of_the_own_subnet() -> None:
    settings = plan()
    assert settings is not None
    assert sessions(settings) == [("h2", False)]
    assert settings.blocks == (IPv4Network("10.88.0.0/26"),) and settings.asn == 64512
    assert settings.underlay == (SEGMENT_A,)
    assert settings.cross_subnet == (POOL,) and settings.tunnelled == ()


def test_never_peers_with_every_node_and_always_with_none() -> None:
    never = share(encap=Encapsulation.NEVER)
    assert sessions(plan(shares=(never,), networks={"calico": never.options})) == [
        ("h2", False), ("h3", False)]
    always = share(encap=Encapsulation.ALWAYS)
    settings = plan(shares=(always,), networks={"calico": always.options})
    assert sessions(settings) == [] and settings is not None
    assert settings.tunnelled == (POOL,) and settings.cross_subnet == ()
    assert settings.blocks == (IPv4Network("10.88.0.0/26"),)  # still announced


def test_with_a_reflector_every_other_node_peers_with_it_only_on_any_subnet() -> None:
    assert sessions(plan(H1, reflectors=(H2,))) == [("h2", False)]
    assert sessions(plan(H3, reflectors=(H2,))) == [("h2", False)]  # across the router


def test_a_reflector_takes_every_other_node_as_its_client() -> None:
    assert sessions(plan(H2, reflectors=(H2,))) == [("h1", True), ("h3", True)]
    both = (H2, H4)
    assert sessions(plan(H2, reflectors=both, holding=(H1, H2, H3, H4))) == [
        ("h1", True), ("h3", True), ("h4", False)]
    assert sessions(plan(H1, reflectors=both, holding=(H1, H2, H3, H4))) == [
        ("h2", False), ("h4", False)]


def test_two_reflectors_share_one_cluster_id_on_every_session() -> None:
    both = (H2, H4)
    settings = plan(H2, reflectors=both, holding=(H1, H2, H3, H4))
    assert settings is not None and settings.cluster_id == min(H2.address, H4.address)
    text = render(settings)
    towards_h4 = text[text.index(f"neighbor {H4.address} "):].split("}", 1)[0]
    assert f"rr cluster id {settings.cluster_id};" in towards_h4  # the other reflector too
    assert "rr client;" not in towards_h4
    assert plan(H1, reflectors=both, holding=(H1, H2, H3, H4)).cluster_id is None  # type: ignore[union-attr]


def test_a_reflector_without_a_block_still_runs_bird_and_other_nodes_do_not() -> None:
    settings = plan(H2, shares=(), reflectors=(H2,))
    assert settings is not None and settings.blocks == () and settings.asn == 64512
    assert sessions(settings) == [("h1", True), ("h3", True)]
    assert plan(H1, shares=(), reflectors=(H2,)) is None
    always = share(encap=Encapsulation.ALWAYS).options
    assert plan(H2, shares=(), reflectors=(H2,), networks={"calico": always}) is None


def test_a_reflector_reflects_only_the_networks_bgp_carries() -> None:
    always = share("tunnelled", pool=OTHER_POOL, encap=Encapsulation.ALWAYS)
    settings = plan(H2, shares=(), reflectors=(H2,),
                    networks={"calico": share().options, "tunnelled": always.options},
                    peers={"calico": [H1], "tunnelled": [H3]})
    assert sessions(settings) == [("h1", True)]
    assert settings is not None and settings.tunnelled == (OTHER_POOL,)


def test_a_node_peering_only_through_vxlan_keeps_away_from_the_reflectors() -> None:
    always = share(encap=Encapsulation.ALWAYS)
    assert sessions(plan(H1, shares=(always,), reflectors=(H2,),
                         networks={"calico": always.options})) == []


def test_external_peers_are_added_and_names_made_unique() -> None:
    twin = NodeRef("5" * 32, "h2", IPv4Address("198.18.1.15"))
    settings = plan(H1, holding=(H1, H2, twin), external=(TOR,))
    assert settings is not None and settings.external == (TOR,)
    assert sessions(settings) == [(f"h2-{'2' * 12}", False), (f"h2-{'5' * 12}", False)]


def test_the_reflected_routes_of_other_subnets_stay_out_of_the_kernel() -> None:
    """h1 learns h3's block from the reflector h2 with h3's address as the next hop: under
    cross-subnet, VXLAN carries it, so BIRD must not install it beside the tunnel's route."""
    text = render(plan(H1, reflectors=(H2,)))  # type: ignore[arg-type]
    assert ("  if net ~ [ 10.88.0.0/16+ ] && !(bgp_next_hop ~ 198.18.1.0/24) then reject;"
            in text.splitlines())
    assert "    export filter netbay_install;" in text.splitlines()


# --- the record ------------------------------------------------------------------------
LAYOUT = Layout()


def kv(key: str, value: bytes = b"{}") -> KeyValue:
    return KeyValue(key, value, 1, 1, 0)


def test_the_keys_parse_back_and_the_cluster_state_ignores_them() -> None:
    reflector = LAYOUT.bgp_reflector(H2.node)
    peer = LAYOUT.bgp_peer(ALL_NODES, TOR.address)
    assert reflector == f"/netbay/v1/bgp-reflectors/{H2.node}"
    assert peer == "/netbay/v1/bgp-peers/all/198.18.1.1"
    assert LAYOUT.parse(reflector) == ParsedKey(BGP_REFLECTORS, H2.node)
    assert LAYOUT.parse(peer) == ParsedKey(BGP_PEERS, ALL_NODES, "198.18.1.1")
    state = ClusterState.from_listing(LAYOUT, [kv(reflector), kv(peer, encode_peer(65000))])
    assert state.nodes == {} and state.networks == {} and state.peers() == {}


def test_the_state_follows_puts_and_deletes() -> None:
    own = LAYOUT.bgp_peer(H1.node, TOR.address)
    shared = LAYOUT.bgp_peer(ALL_NODES, TOR.address)
    other = LAYOUT.bgp_peer(ALL_NODES, IPv4Address("198.18.2.1"))
    state = BgpConfigState.from_listing(LAYOUT, [
        kv(LAYOUT.bgp_reflector(H2.node)), kv(own, encode_peer(65001)),
        kv(shared, encode_peer(65000)), kv(other, encode_peer(65000))])
    config = state.config()
    assert config.reflectors == {H2.node}
    assert config.peers_of(H1.node) == [
        ExternalPeerRecord(TOR.address, 65001, H1.node),  # the node's own takes precedence
        ExternalPeerRecord(IPv4Address("198.18.2.1"), 65000)]
    assert config.peers_of(H3.node) == [ExternalPeerRecord(TOR.address, 65000),
                                        ExternalPeerRecord(IPv4Address("198.18.2.1"), 65000)]
    state.apply(WatchEvent(DELETE, kv(own, b"")))
    state.apply(WatchEvent(DELETE, kv(LAYOUT.bgp_reflector(H2.node), b"")))
    state.apply(WatchEvent(PUT, kv(LAYOUT.bgp_reflector(H3.node))))
    assert state.config().reflectors == {H3.node}
    assert [p.asn for p in state.config().peers_of(H1.node)] == [65000, 65000]


def test_an_unreadable_peer_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    bad = [kv(LAYOUT.bgp_peer(ALL_NODES, IPv4Address("198.18.1.1")), b"{}"),
           kv(LAYOUT.prefix(BGP_PEERS, ALL_NODES) + "not-an-address", encode_peer(1)),
           kv(LAYOUT.bgp_peer(ALL_NODES, IPv4Address("198.18.1.2")), encode_peer(0))]
    with caplog.at_level(logging.WARNING):
        state = BgpConfigState.from_listing(LAYOUT, bad)
    assert state.config() == BgpConfig()
    assert caplog.text.count("is not readable, ignored") == 3
    state.delete(LAYOUT.prefix(BGP_PEERS, ALL_NODES) + "not-an-address")  # no error


@pytest.mark.parametrize(("call", "message"), [
    (lambda: check_asn(0), f"invalid asn 0: out of range 1-{MAX_ASN}"),
    (lambda: check_asn(MAX_ASN + 1), f"invalid asn {MAX_ASN + 1}: out of range 1-{MAX_ASN}"),
    (lambda: parse_peer_address("tor1"), "invalid peer address 'tor1': not an IPv4 address"),
    (lambda: parse_peer_address("fe80::1"),
     "invalid peer address 'fe80::1': not an IPv4 address"),
])
def test_bad_input_is_one_line_naming_the_field(call: Any, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        call()
    assert str(refused.value) == message


# --- what a node checks ----------------------------------------------------------------
OBSERVED = Observed(
    links={"lo": LinkState("lo", 1), "eth0": LinkState("eth0", 2, mtu=9000),
           "eth1": LinkState("eth1", 3)},
    addresses={"lo": frozenset({IPv4Interface("127.0.0.1/8")}),
               "eth0": frozenset({IPv4Interface("198.18.1.11/24")}),
               "eth1": frozenset({IPv4Interface("10.1.0.5/24")}),
               "nbx0": frozenset({IPv4Interface("10.88.0.0/32")})},
)


def test_the_interfaces_give_the_underlay_and_what_is_directly_connected() -> None:
    found = Interfaces.of(OBSERVED, H1.address)
    assert found.underlay == (SEGMENT_A,) and found.mtu == 9000
    assert found.networks == (IPv4Network("10.1.0.0/24"), SEGMENT_A)
    assert found.refusal(IPv4Address("198.18.1.1")) is None
    assert found.refusal(IPv4Address("10.1.0.1")) is None
    assert found.refusal(H1.address) == "this node's own address"
    assert found.refusal(IPv4Address("198.18.2.1")) == (
        "not on any network of this node's interfaces (10.1.0.0/24, 198.18.1.0/24)")


class FakeAgent:
    """A joined node as ClusterBgp sees it: its view (nodes, networks, the BGP
    configuration), its plane and its kernel; the store's writes kept in WRITES."""

    def __init__(self, config: BgpConfig) -> None:
        statuses = [SimpleNamespace(id=n.node, name=n.name, address=n.address, state="ready")
                    for n in (H1, H2, H3)]
        network = GlobalNetwork("calico", "c" * 64, POOL, 26, 4096, "", driver="routed",
                                options={"encap": "cross-subnet", "asn": "64512"})
        view = SimpleNamespace(bgp_config=lambda: config, nodes=lambda: statuses,
                               networks=lambda: [network], revision=0)
        self.node = SimpleNamespace(node=H1.node, view=view,
                                    membership=SimpleNamespace(address=H1.address))
        self.plane = SimpleNamespace(address=H1.address, shares=lambda: [share()])
        self.kernel = SimpleNamespace(observe=lambda sysctls: OBSERVED)
        self.pokes = 0

    def bgp(self) -> ClusterBgp:
        def poke() -> None:
            self.pokes += 1

        return ClusterBgp(self.kernel, lambda: self.node, poke)  # type: ignore[arg-type]


def test_a_node_leaves_out_the_external_peers_it_cannot_reach_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = BgpConfig(peers=(ExternalPeerRecord(TOR.address, 65000),
                              ExternalPeerRecord(IPv4Address("198.18.2.1"), 65000),
                              ExternalPeerRecord(H2.address, 65000)))
    agent = FakeAgent(config)
    bgp = agent.bgp()
    with caplog.at_level(logging.WARNING, "netbay.bgp"):
        for _ in range(2):
            settings = bgp.settings(agent.node, agent.plane, {"calico": [H2, H3]})  # type: ignore[arg-type]
    assert settings is not None and settings.external == (TOR,)
    assert sessions(settings) == [("h2", False)]
    assert caplog.messages == [
        "bgp: external peer 198.18.1.12 (AS 65000) left out on this node: node h2's address",
        "bgp: external peer 198.18.2.1 (AS 65000) left out on this node: not on any network "
        "of this node's interfaces (10.1.0.0/24, 198.18.1.0/24)"]


def test_a_node_with_no_routed_share_that_is_no_reflector_runs_no_bird() -> None:
    agent = FakeAgent(BgpConfig(reflectors=frozenset({H2.node})))
    agent.plane.shares = lambda: []
    assert agent.bgp().settings(agent.node, agent.plane, {}) is None  # type: ignore[arg-type]


def test_requests_are_checked_before_anything_is_written() -> None:
    bgp = FakeAgent(BgpConfig()).bgp()
    for call, error, message in (
        (lambda: bgp.add_peer("198.18.1.1", 0, None), ConfigError,
         f"invalid asn 0: out of range 1-{MAX_ASN}"),
        (lambda: bgp.add_peer("tor", 65000, None), ConfigError,
         "invalid peer address 'tor': not an IPv4 address"),
        (lambda: bgp.add_peer("198.18.1.1", 65000, "h9"), ConfigError,
         "invalid node 'h9': no such node in the cluster"),
        (lambda: bgp.add_peer("198.18.1.12", 65000, None), ConfigError,
         "invalid peer address '198.18.1.12': node h2's address: the nodes peer with each "
         "other by themselves"),
        (lambda: bgp.add_peer("198.18.2.1", 65000, "h1"), ConfigError,
         "invalid peer address '198.18.2.1': not on any network of this node's interfaces "
         "(10.1.0.0/24, 198.18.1.0/24)"),
        (lambda: bgp.set_reflector("h9", True), ConfigError,
         "invalid node 'h9': no such node in the cluster"),
    ):
        with pytest.raises(error) as refused:
            call()
        assert str(refused.value) == message
    # the etcd store is reached only past the checks (the fake node has no client): a peer
    # for another node is that node's to check
    with pytest.raises(AttributeError, match="client"):
        bgp.add_peer("198.18.2.1", 65000, "h3")
