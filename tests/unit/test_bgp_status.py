"""BGP status across the cluster (issue 15): the bgp/<node id> key and its JSON
(cluster/bgp_status.py), the sessions read from BIRD with each peer's AS from the
configuration, what is written to etcd and when, the view's copy of every node's; the
readiness rule of `cluster nodes` and the `bgp status` route (daemon/bgp_api.py), its table
(cli/bgp.py) and the BGP side of a routed network in `netbay topology` (observe/bgp.py).
Pure: fake etcd clients, speakers and agents stand in for the real ones
(tests/e2e/test_cluster_bgp_status.py runs it all on the multi-host harness)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, cast

import pytest
from test_bird_plan import SHOW_PROTOCOLS, TOR, settings
from test_cluster_names import FakeClient
from test_cluster_state import gone, kv, put

from helpers import wait_until
from netbay.cli.bgp import status_text
from netbay.cluster.bgp_status import (
    BgpBoard,
    Published,
    SessionStatus,
    decode_sessions,
    encode_sessions,
    peer_asns,
    publish,
    publish_bgp_status,
    read_sessions,
    session_statuses,
)
from netbay.cluster.endpoints import EtcdUnavailableError
from netbay.cluster.etcd import EtcdClient
from netbay.cluster.kv import KeyValue
from netbay.cluster.layout import BGP, GlobalNetwork, Layout, ParsedKey, encode_alive
from netbay.cluster.state import LOST, READY, ClusterState, NodeStatus
from netbay.cluster.view import ClusterView
from netbay.daemon.bgp_api import ROUTING, BgpRoutes, routing_state, status_json, with_routing
from netbay.drivers.routed import local_options
from netbay.engine.cluster import ClusterAgent
from netbay.errors import KernelError, NetbayError, NotFoundError, NotJoinedError
from netbay.kernel.bird import BgpSession, parse_sessions
from netbay.model import Network, SubnetConfig
from netbay.observe.bgp import BgpFacts, read_bgp
from netbay.observe.facts import Namespace, Route
from netbay.observe.topology import Inputs, build, render_text
from netbay.plan.bird import render
from netbay.plan.routed import Encapsulation

LAYOUT = Layout()
A, B, C = "a" * 32, "b" * 32, "c" * 32
UP = SessionStatus("node-b", "192.0.2.12", 64512, "Established", 1796140437, 1, 1)
DOWN = SessionStatus("node-c", "192.0.2.13", 64512, "Active", 1796140436, 0, 0)
EXTERNAL = SessionStatus("tor1", "192.0.2.1", 65001, "Established", 1796140438, 0, 1)
CALICO = GlobalNetwork("calico", "r" * 64, IPv4Network("10.88.0.0/16"), 26, 7, "t0",
                       driver="routed")
PODNET = GlobalNetwork("podnet", "o" * 64, IPv4Network("10.77.0.0/16"), 24, 8, "t1")


def status(ident: str, name: str, address: str, state: str = READY,
           **blocks: str) -> NodeStatus:
    return NodeStatus(ident, name, IPv4Address(address), state, "0.1.0",
                      MappingProxyType({k: IPv4Network(v) for k, v in blocks.items()}),
                      MappingProxyType({k: (IPv4Network(v),) for k, v in blocks.items()}))


NODE_A = status(A, "node-a", "192.0.2.11", calico="10.88.0.0/26")
NODE_B = status(B, "node-b", "192.0.2.12", calico="10.88.0.64/26")
NODE_C = status(C, "node-c", "192.0.2.13", podnet="10.77.3.0/24")
HOLDERS = {"192.0.2.11", "192.0.2.12"}


# --- the key and its value -----------------------------------------------------------------
def test_the_key_is_per_node_its_value_the_whole_list_and_the_state_ignores_it() -> None:
    assert LAYOUT.bgp(A) == f"/netbay/v1/bgp/{A}"
    assert LAYOUT.parse(LAYOUT.bgp(A)) == ParsedKey(BGP, A)
    assert LAYOUT.parse("/netbay/v1/bgp/") is None
    assert LAYOUT.parse(f"/netbay/v1/bgp/{A}/x") is None
    assert encode_sessions([UP]) == (
        b'[{"address":"192.0.2.12","asn":64512,"exported":1,"imported":1,"peer":"node-b",'
        b'"since":1796140437,"state":"Established"}]')
    assert decode_sessions(encode_sessions([UP, DOWN])) == (UP, DOWN)
    assert decode_sessions(b"[]") == ()
    state = ClusterState.from_listing(LAYOUT, [kv(LAYOUT.bgp(A), encode_sessions([UP]))])
    state.apply(gone(LAYOUT.bgp(A), 2))
    assert (state.nodes, state.alive, state.networks) == ({}, set(), {})


# --- what BIRD says, with the ASNs of its configuration ------------------------------------
def test_each_peers_asn_comes_from_the_configuration_netbay_wrote() -> None:
    assert peer_asns(render(settings(external=(TOR,)))) == {
        "192.0.2.11": 64512, "192.0.2.13": 64512, "192.0.2.1": 65001}
    assert peer_asns("") == {}


def test_birds_sessions_become_the_records_named_by_their_description() -> None:
    bird = parse_sessions(SHOW_PROTOCOLS)
    assert session_statuses(bird, {"192.0.2.12": 64512}) == (
        SessionStatus("node-b", "192.0.2.12", 64512, "Established", 1796140437, 2, 3),
        SessionStatus("node-gone", "192.0.2.99", 0, "Active", 1796140436, 0, 0),
    )
    unnamed = BgpSession("mesh_192_0_2_5", "", "192.0.2.5", "Idle", 5, "Idle", 0, 0)
    assert session_statuses([unnamed], {})[0].peer == "mesh_192_0_2_5"


@dataclass
class FakeSpeaker:
    """engine/bgp.py BgpSpeaker as far as its status is read."""

    config: Path
    running: bool = True
    answers: bool = True
    found: list[BgpSession] = field(default_factory=lambda: parse_sessions(SHOW_PROTOCOLS))

    @property
    def supervisor(self) -> Any:
        return SimpleNamespace(config=self.config)

    def sessions(self) -> list[BgpSession]:
        if not self.answers:
            raise KernelError("birdc show protocols all: Unable to connect to server")
        return self.found


def test_sessions_are_read_from_a_running_bird_only(tmp_path: Path) -> None:
    config = tmp_path / "bird.conf"
    config.write_text(render(settings(mesh=(), external=())) + "  neighbor 192.0.2.12 as 64512;\n")
    speaker = FakeSpeaker(config)
    assert [(s.peer, s.asn) for s in read_sessions(speaker) or ()] == [
        ("node-b", 64512), ("node-gone", 0)]
    config.unlink()  # BIRD runs what it read: only the ASNs are missing
    assert [s.asn for s in read_sessions(speaker) or ()] == [0, 0]
    speaker.running = False
    assert read_sessions(speaker) is None


# --- what is written to etcd -----------------------------------------------------------------
class FakeEtcd:
    """The writer's side of EtcdClient: keys with their leases, every call made."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[bytes, int]] = {}
        self.calls: list[str] = []
        self.down = False

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self._call("put")
        self.keys[key] = value, lease
        return 1

    def delete(self, key: str, prefix: bool = False) -> int:
        self._call("delete")
        return 1 if self.keys.pop(key, None) else 0

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise EtcdUnavailableError({"http://127.0.0.1:2379": "connection refused"})

    def published(self, key: str) -> Published | None:  # the key as the view holds it
        found = self.keys.get(key)
        return None if found is None else Published(found[1], decode_sessions(found[0]))


def test_the_list_is_written_on_the_grace_lease_only_when_it_changed() -> None:
    etcd, key, lease = FakeEtcd(), LAYOUT.bgp(A), [41]
    client = cast(EtcdClient, etcd)

    def sync(sessions: tuple[SessionStatus, ...] | None) -> None:
        publish(client, key, sessions, etcd.published(key), lambda: lease[0])

    sync((UP,))
    sync((UP,))
    assert etcd.keys[key] == (encode_sessions([UP]), 41) and etcd.calls == ["put"]
    sync((UP, DOWN))  # a route, a state, a since that changed
    lease[0] = 42  # the old grace lease expired: the key went, or goes, with it
    sync((UP, DOWN))
    assert etcd.keys[key] == (encode_sessions([UP, DOWN]), 42)
    sync(())  # BIRD without sessions: an empty list, not no key
    assert etcd.keys[key] == (b"[]", 42) and etcd.calls == ["put"] * 4
    sync(None)  # BIRD not running: no key
    sync(None)
    assert key not in etcd.keys and etcd.calls == ["put"] * 4 + ["delete"]


@dataclass
class FakeMembership:
    grace: int | None  # None: not registered yet

    @property
    def grace_lease(self) -> int:
        if self.grace is None:
            raise NetbayError("node node-a has not registered with etcd yet")
        return self.grace


def fake_node(etcd: FakeEtcd, view: Any, grace_lease: int | None = 41) -> Any:
    return SimpleNamespace(client=etcd, layout=LAYOUT, node=A, view=view,
                           membership=FakeMembership(grace_lease))


def test_the_agents_publishing_logs_what_fails_and_raises_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    etcd = FakeEtcd()
    view = SimpleNamespace(bgp_status=lambda node: etcd.published(LAYOUT.bgp(node)))
    speaker = FakeSpeaker(tmp_path / "bird.conf")
    caplog.set_level(logging.INFO, "netbay.cluster")
    publish_bgp_status(fake_node(etcd, view), speaker)
    assert decode_sessions(etcd.keys[LAYOUT.bgp(A)][0])[0].peer == "node-b"
    speaker.answers = False
    publish_bgp_status(fake_node(etcd, view), speaker)  # the last list stays
    etcd.down, speaker.found = True, []
    speaker.answers = True
    publish_bgp_status(fake_node(etcd, view), speaker)
    publish_bgp_status(fake_node(etcd, view, grace_lease=None), speaker)
    assert [r.getMessage() for r in caplog.records] == [
        "bgp: status not published yet: birdc show protocols all: Unable to connect to server",
        "bgp: status not published yet: etcd unreachable: http://127.0.0.1:2379 "
        "(connection refused)",
        "bgp: status not published yet: node node-a has not registered with etcd yet",
    ]
    assert len(decode_sessions(etcd.keys[LAYOUT.bgp(A)][0])) == 2


# --- the view's copy of every node's ----------------------------------------------------------
def bgp_kv(node: str, sessions: list[SessionStatus], lease: int = 41) -> KeyValue:
    return KeyValue(LAYOUT.bgp(node), encode_sessions(sessions), 1, 1, lease)


def test_the_board_follows_the_listing_and_the_events_of_bgp_keys_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = BgpBoard.from_listing(LAYOUT, [bgp_kv(A, [UP]), bgp_kv(B, []),
                                           kv(LAYOUT.alive(A), encode_alive(5))])
    assert board.get(A) == Published(41, (UP,)) and board.get(B) == Published(41, ())
    board.apply(put(LAYOUT.bgp(A), encode_sessions([DOWN]), 7))
    board.apply(gone(LAYOUT.bgp(B), 8))
    board.apply(gone(LAYOUT.alive(A), 9))
    assert board.get(A) == Published(0, (DOWN,)) and board.get(B) is None
    board.apply(put(LAYOUT.bgp(A), b'[{"peer": "x"}]', 10))
    assert board.get(A) is None
    assert caplog.messages == [f"cluster record {LAYOUT.bgp(A)} is not readable, ignored: "
                               "'address'"]


@contextlib.contextmanager
def started(fake: FakeClient) -> Iterator[ClusterView]:
    view = ClusterView(cast(EtcdClient, fake), LAYOUT, None, A)
    view.start()
    assert view.wait_synced(5)
    try:
        yield view
    finally:
        view.stop()


def test_the_view_holds_what_each_node_published() -> None:
    fake = FakeClient([bgp_kv(B, [UP], lease=43)])
    with started(fake) as view:
        assert view.bgp_status(B) == Published(43, (UP,)) and view.bgp_status(A) is None
        assert fake.send is not None
        fake.send(put(LAYOUT.bgp(A), encode_sessions([DOWN]), 7))
        fake.send(gone(LAYOUT.bgp(B), 8))
        wait_until(lambda: view.bgp_status(B) is None, 5, "B's status gone")
        assert view.bgp_status(A) == Published(0, (DOWN,))


# --- readiness: `cluster nodes` ------------------------------------------------------------
@pytest.mark.parametrize(("node", "sessions", "expected"), [
    (NODE_A, (UP,), READY),  # every session up, a route from the peer that holds a block
    (NODE_A, (), READY),  # alone on its subnet (cross-subnet): nothing to wait for
    (NODE_A, (UP, EXTERNAL), READY),  # a router need not send anything
    (NODE_A, None, ROUTING),  # its BIRD not running (or not published yet)
    (NODE_A, (UP, DOWN), ROUTING),  # a session not up
    (NODE_A, (SessionStatus("node-b", "192.0.2.12", 64512, "Established", 5, 0, 1),),
     ROUTING),  # up, but the peer's block not received yet
    (NODE_C, None, READY),  # no block of a routed network: the overlay's readiness
    (status(A, "node-a", "192.0.2.11", LOST, calico="10.88.0.0/26"), (UP,), LOST),
])
def test_a_node_with_a_routed_block_is_routing_until_bgp_has_its_routes(
    node: NodeStatus, sessions: tuple[SessionStatus, ...] | None, expected: str,
) -> None:
    assert routing_state(node, sessions, {"calico"}, HOLDERS) == expected


def fake_agent(published: dict[str, Published], nodes: list[NodeStatus],
               networks: list[GlobalNetwork], speaker: Any = None) -> ClusterAgent:
    view = SimpleNamespace(bgp_status=published.get, nodes=lambda: nodes)
    joined = SimpleNamespace(view=view, settings=SimpleNamespace(name="node-a"))
    return cast(ClusterAgent, SimpleNamespace(node=joined, global_networks=lambda: networks,
                                              bgp=speaker))


def test_cluster_nodes_shows_the_routed_nodes_by_their_published_sessions() -> None:
    nodes = [NODE_A, NODE_B, NODE_C]
    agent = fake_agent({A: Published(41, (UP,)), B: Published(41, (DOWN,))}, nodes,
                       [CALICO, PODNET])
    assert [n.state for n in with_routing(agent, nodes)] == [READY, ROUTING, READY]
    assert with_routing(fake_agent({}, nodes, [PODNET]), nodes) == nodes  # no routed network
    unjoined = cast(ClusterAgent, SimpleNamespace(node=None, global_networks=lambda: []))
    assert with_routing(unjoined, nodes) == nodes


# --- the route and its table -------------------------------------------------------------
def test_bgp_status_reads_this_nodes_bird_or_what_another_node_published(
    tmp_path: Path,
) -> None:
    nodes = [NODE_A, NODE_B, NODE_C]
    routes = BgpRoutes(fake_agent({B: Published(41, (UP, DOWN))}, nodes, [CALICO],
                                  FakeSpeaker(tmp_path / "bird.conf")))
    assert routes.status({"node": "node-b"}) == (200, {
        "Node": "node-b", "Live": False, "Running": True, "Sessions": [
            {"Peer": "node-b", "Address": "192.0.2.12", "Asn": 64512, "State": "Established",
             "Since": 1796140437, "Imported": 1, "Exported": 1},
            {"Peer": "node-c", "Address": "192.0.2.13", "Asn": 64512, "State": "Active",
             "Since": 1796140436, "Imported": 0, "Exported": 0}]})
    assert routes.status({"node": C}) == (200, status_json("node-c", False, None))
    code, live = routes.status({})
    assert (code, live["Node"], live["Live"], [s["Peer"] for s in live["Sessions"]]) == (
        200, "node-a", True, ["node-b", "node-gone"])
    with pytest.raises(NotFoundError, match="^no node named node-x in the cluster$"):
        routes.status({"node": "node-x"})
    unjoined = BgpRoutes(cast(ClusterAgent, SimpleNamespace(node=None)))
    with pytest.raises(NotJoinedError):
        unjoined.status({})


def test_the_table_has_a_row_per_session_with_uptime_and_routes() -> None:
    found = status_json("node-a", True, (UP, DOWN))
    assert status_text(found, now=1796140437 + 3 * 3600 + 5).splitlines() == [
        "PEER     ADDRESS      ASN     STATE         UPTIME    ROUTES",
        "node-b   192.0.2.12   64512   Established   3 hours   1/1",
        "node-c   192.0.2.13   64512   Active        3 hours   0/0",
    ]
    unknown_asn = status_json("node-a", True, (SessionStatus("x", "192.0.2.9", 0, "Idle", 100,
                                                             0, 0),))
    assert status_text(unknown_asn, now=130).splitlines()[1].split() == [
        "x", "192.0.2.9", "-", "Idle", "30", "seconds", "0/0"]
    assert status_text(status_json("node-a", True, None), 0) == (
        "bird is not running on node-a: no routed network here")
    assert status_text(status_json("node-c", False, None), 0) == (
        "node-c publishes no BGP sessions: its bird is not running")


# --- topology --------------------------------------------------------------------------------
SHARE = Network(id="r" * 64, name="calico", driver="routed", created="",
                options=dict(local_options(IPv4Network("10.88.0.0/16"), 7,
                                           Encapsulation.CROSS_SUBNET, 64512, 1500)),
                subnets=(SubnetConfig(IPv4Network("10.88.0.0/26")),))
LEARNED = Route(IPv4Network("10.88.0.64/26"), "eth0", IPv4Address("192.0.2.12"), protocol=12)


def routed_topology(bgp: BgpFacts, *routes: Route) -> dict[str, Any]:
    return build(Inputs(networks=[SHARE], containers=[], endpoints=[],
                        host=Namespace(routes=routes), inside={},
                        cluster_nodes=[NODE_A, NODE_B, NODE_C], bgp=bgp))


def test_a_routed_network_shows_its_block_and_the_sessions_with_the_peers_blocks() -> None:
    topo = routed_topology(BgpFacts((UP, EXTERNAL)), LEARNED)
    assert topo["problems"] == []
    section = topo["networks"][0]["bgp"]
    assert (section["block"], section["running"]) == ("10.88.0.0/26", True)
    assert [(s["peer"], s["blocks"]) for s in section["sessions"]] == [
        ("node-b", ["10.88.0.64/26"]), ("tor1", [])]
    lines = render_text(topo).splitlines()
    assert "    ├── block 10.88.0.0/26  announced by bgp" in lines
    assert ("    ├── session node-b  192.0.2.12  AS 64512  Established  routes 1/1  block "
            "10.88.0.64/26") in lines
    assert "    └── session tor1  192.0.2.1  AS 65001  Established  routes 0/1" in lines


def test_a_session_down_a_route_missing_and_no_bird_are_problems() -> None:
    not_learned = Route(IPv4Network("10.88.0.64/26"), "eth0", IPv4Address("192.0.2.12"),
                        protocol=57)  # another protocol's: not BGP's
    assert routed_topology(BgpFacts((UP, DOWN)), not_learned)["problems"] == [
        "network calico: bgp session node-b: no route from BGP to its block 10.88.0.64/26",
        "network calico: bgp session node-c: session Active, not Established",
    ]
    stopped = routed_topology(BgpFacts())
    assert stopped["problems"] == ["network calico: bgp: bird is not running"]
    assert "bird  not running  [! bird is not running]" in render_text(stopped)


def test_a_bird_that_does_not_answer_is_a_problem_not_a_failed_picture() -> None:
    def failing() -> tuple[SessionStatus, ...]:
        raise KernelError("birdc show protocols all: Unable to connect to server")

    assert read_bgp(None) == BgpFacts()
    assert read_bgp(lambda: (UP,)) == BgpFacts((UP,))
    topo = routed_topology(read_bgp(failing))
    assert topo["problems"] == ["network calico: bgp: bird does not answer: birdc show "
                                "protocols all: Unable to connect to server"]
