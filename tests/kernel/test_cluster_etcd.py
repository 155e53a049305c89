"""The cluster record against a real 3-member etcd on 127.0.0.1 (tests/etcd.py): the facade's
calls and failover, global networks and their refusals, subnet claims under contention,
membership with its TTL and grace period, and the watch-driven view through a compaction, a
partition and a control plane that goes away and comes back. Each test works under a root
prefix of its own; tests that stop or kill members get a cluster of their own."""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from etcd import (
    EtcdCluster,
    TcpProxy,
    etcd_cluster,
    free_port,
    loopback_addresses,
    make_certificates,
)
from helpers import wait_until
from netbay.cluster import (
    LOST,
    READY,
    ClusterNode,
    ClusterView,
    EtcdClient,
    EtcdConfig,
    EtcdUnavailableError,
    GlobalNetwork,
    GlobalNetworks,
    GlobalNetworkSpec,
    JoinSettings,
    Layout,
    Membership,
    Peer,
    SubnetLeases,
    WatchEvent,
    load_join,
)
from netbay.cluster.layout import decode_subnet_holder
from netbay.errors import ConfigError, ConflictError, InUseError, IPAMExhaustedError, NotFoundError

pytestmark = pytest.mark.kernel

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
_roots = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    base = tmp_path_factory.mktemp("etcd")
    with etcd_cluster([base / f"m{i}" for i in range(3)], loopback_addresses(3)) as etcd:
        yield etcd


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A cluster this test may stop and kill members of."""
    with etcd_cluster([tmp_path / f"m{i}" for i in range(3)], loopback_addresses(3)) as etcd:
        yield etcd


@pytest.fixture
def layout() -> Layout:
    return Layout(f"/netbay-test-{time.monotonic_ns()}-{next(_roots)}/v1/")


@dataclass
class Node:
    client: EtcdClient
    membership: Membership
    subnets: SubnetLeases


class Recorder:
    """What a view delivered, per network, in order."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[Peer, ...]]] = {}
        self._lock = threading.Lock()

    def __call__(self, network: str, peers: tuple[Peer, ...]) -> None:
        with self._lock:
            self.calls.setdefault(network, []).append(peers)

    def latest(self, network: str) -> tuple[Peer, ...] | None:
        with self._lock:
            calls = self.calls.get(network)
            return calls[-1] if calls else None


class World:
    """Clients, nodes and views made by one test, all closed after it."""

    def __init__(self, etcd: EtcdCluster, layout: Layout) -> None:
        self.etcd = etcd
        self.layout = layout
        self._closers: list[Callable[[], None]] = []
        self.client = self.new_client()
        self.networks = GlobalNetworks(self.client, layout)

    def new_client(self, endpoints: tuple[str, ...] | None = None, call_timeout: float = 2.0,
                   retry_for: float = 10.0) -> EtcdClient:
        config = EtcdConfig(endpoints or self.etcd.endpoints, call_timeout=call_timeout,
                            retry_for=retry_for)
        client = EtcdClient(config)
        self._closers.append(client.close)
        return client

    def node(self, name: str, ttl: int = 15, grace: int = 3600, node_id: str | None = None,
             address: str = "192.0.2.1") -> Node:
        client = self.new_client()
        ident = node_id or f"{name:0<32}"[:32]
        membership = Membership(client, self.layout, ident, name, IPv4Address(address), ttl,
                                grace)
        membership.join()
        self._closers.append(membership.stop)
        return Node(client, membership, SubnetLeases(client, self.layout, ident,
                                                     lambda: membership.grace_lease))

    def view(self, on_peers: Recorder, node: str | None = None,
             client: EtcdClient | None = None) -> ClusterView:
        view = ClusterView(client or self.client, self.layout, on_peers, node)
        view.start()
        self._closers.append(view.stop)
        assert view.wait_synced(10)
        return view

    def network(self, name: str, subnet: str, size: int = 24, vni: int | None = None
                ) -> GlobalNetwork:
        return self.networks.create(GlobalNetworkSpec(name, IPv4Network(subnet), size, vni))

    def keys(self, under: str = "") -> list[str]:
        listing = self.client.get_prefix(self.layout.root + under, keys_only=True)
        return [kv.key[len(self.layout.root):] for kv in listing.items]

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


@contextlib.contextmanager
def _world(etcd: EtcdCluster, layout: Layout) -> Iterator[World]:
    made = World(etcd, layout)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def world(cluster: EtcdCluster, layout: Layout) -> Iterator[World]:
    with _world(cluster, layout) as made:
        yield made


@pytest.fixture
def own_world(own_cluster: EtcdCluster, layout: Layout) -> Iterator[World]:
    with _world(own_cluster, layout) as made:
        yield made


def names(peers: tuple[Peer, ...] | None) -> list[str]:
    return [p.name for p in peers or ()]


# -- the facade


def test_transactions_create_only_if_absent_and_swap_only_on_the_revision_read(
    world: World,
) -> None:
    key = world.layout.root + "k"
    client = world.client
    assert client.create(key, b"one") is True
    assert client.create(key, b"two") is False
    first = client.get(key)
    assert first is not None and first.value == b"one"
    assert client.compare_and_swap(key, b"three", first.mod_revision) is True
    assert client.compare_and_swap(key, b"four", first.mod_revision) is False
    now = client.get(key)
    assert now is not None and now.value == b"three" and now.mod_revision > first.mod_revision
    assert client.delete(key) == 1 and client.get(key) is None


def test_a_watch_replays_from_its_revision_and_a_compacted_one_says_so(world: World) -> None:
    client, root = world.client, world.layout.root
    revisions = [client.put(root + f"w{i}", str(i).encode()) for i in range(3)]
    seen: list[WatchEvent] = []
    compacted: list[int] = []
    watch = client.watch_prefix(root, revisions[1], seen.append, compacted.append)
    client.delete(root + "w0")
    wait_until(lambda: len(seen) == 3, 5, "the watch to replay two puts and see a delete")
    assert [(e.kind, e.kv.key[len(root):], e.kv.value) for e in seen] == [
        ("put", "w1", b"1"), ("put", "w2", b"2"), ("delete", "w0", b"")]
    watch.cancel()
    client.compact(client.revision())
    old = client.watch_prefix(root, revisions[0], seen.append, compacted.append)
    wait_until(lambda: compacted, 5, "a watch from a compacted revision to be told so")
    assert compacted == [client.revision()] and len(seen) == 3
    old.cancel()


def test_a_call_to_no_member_fails_within_its_bound_naming_each_endpoint(world: World) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        quiet = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = world.new_client((refused, quiet), call_timeout=1.0, retry_for=3.0)
        started = time.monotonic()
        with pytest.raises(EtcdUnavailableError) as caught:
            client.put("/x", b"")
        elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 4.0
    # the silent one: gRPC's own words once its handshake gave up, else the deadline's
    assert re.fullmatch(
        rf"etcd unreachable: {refused} \(connection refused\), {quiet} \((no answer within "
        r"[0-9.]+ s|connection attempt timed out before receiving SETTINGS frame)\)",
        str(caught.value))


@pytest.mark.parametrize("silent_member", [False, True])
def test_join_with_an_unreachable_etcd_fails_within_5_s_in_one_line(
    tmp_path: Path, silent_member: bool,
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1] if silent_member else free_port()
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        with pytest.raises(EtcdUnavailableError) as caught:
            ClusterNode.join(tmp_path / "state", JoinSettings((url,), "alpha", "192.0.2.1"))
        elapsed = time.monotonic() - started
    assert elapsed < 5.0
    why = (r"(no answer within [0-9.]+ s|connection attempt timed out before receiving "
           r"SETTINGS frame)" if silent_member else "connection refused")
    assert re.fullmatch(rf"etcd unreachable: {url} \({why}\)", str(caught.value))
    assert load_join(tmp_path / "state") is None


def test_tls_files_are_passed_through_to_etcd(tmp_path: Path) -> None:
    tls = make_certificates(tmp_path / "tls")
    stranger = make_certificates(tmp_path / "stranger")
    with etcd_cluster([tmp_path / "m0"], loopback_addresses(1), tls=tls.members) as etcd:
        (url,) = etcd.endpoints
        config = EtcdConfig((url,), ca=tls.ca, cert=tls.client_cert, key=tls.client_key)
        with EtcdClient(config) as client:
            client.put("/tls/k", b"v")
            found = client.get("/tls/k")
            assert found is not None and found.value == b"v"
        refusals = [
            (EtcdConfig((url,), ca=tls.ca), "TLS: the server broke off the handshake (client "
             "certificate missing or refused?)"),
            (EtcdConfig((url,), ca=stranger.ca, cert=tls.client_cert, key=tls.client_key),
             "TLS: certificate verify failed (unable to get local issuer certificate)"),
        ]
        for refused, why in refusals:
            quick = EtcdConfig(refused.endpoints, refused.ca, refused.cert, refused.key,
                               call_timeout=1.0, retry_for=2.0)
            with EtcdClient(quick) as client, pytest.raises(EtcdUnavailableError) as caught:
                client.get("/tls/k")
            assert str(caught.value) == f"etcd unreachable: {url} ({why})"
        with pytest.raises(ConfigError, match="is plain http while TLS is in use"):
            EtcdClient(EtcdConfig((url.replace("https", "http"),), ca=tls.ca))


# -- global networks


def test_global_network_refusals_are_one_line_and_change_nothing(world: World) -> None:
    podnet = world.network("podnet", "10.5.0.0/16", vni=7)
    assert world.networks.all() == [podnet] and podnet.vni == 7
    world.node("alpha")
    world.node("beta")
    world.node("gamma")
    before = world.client.revision()
    refusals = [
        (GlobalNetworkSpec("podnet", IPv4Network("10.6.0.0/16")), ConflictError,
         "global network podnet already exists"),
        (GlobalNetworkSpec("other", IPv4Network("10.5.128.0/17")), ConflictError,
         "subnet 10.5.128.0/17 overlaps global network podnet"),
        (GlobalNetworkSpec("other", IPv4Network("10.6.0.0/16"), vni=7), ConflictError,
         "VNI 7 is used by global network podnet"),
        (GlobalNetworkSpec("other", IPv4Network("10.6.0.0/23")), ConfigError,
         "invalid subnet '10.6.0.0/23': has room for 2 /24 subnets; the cluster has 3 nodes"),
        (GlobalNetworkSpec("other", IPv4Network("10.6.0.0/16"), subnet_size=12), ConfigError,
         "invalid subnet_size 12: must be between 16 and 30 for 10.6.0.0/16"),
        (GlobalNetworkSpec("bad/name"), ConfigError, "invalid network name 'bad/name'"),
    ]
    for spec, error, message in refusals:
        with pytest.raises(error) as caught:
            world.networks.create(spec)
        assert str(caught.value).startswith(message)
    assert world.client.revision() == before
    chosen = world.networks.create(GlobalNetworkSpec("chosen"))
    assert (chosen.subnet, chosen.vni) == (IPv4Network("10.64.0.0/16"), 1)


def test_two_nodes_creating_clashing_networks_at_once_make_exactly_one(world: World) -> None:
    specs = [GlobalNetworkSpec(f"net{i}", IPv4Network(f"10.7.{i}.0/24"), subnet_size=28)
             for i in range(2)] + [GlobalNetworkSpec("net-wide", IPv4Network("10.7.0.0/16"))]
    clients = [world.new_client() for _ in specs]
    barrier = threading.Barrier(len(specs))
    outcomes: dict[str, str] = {}

    def create(index: int) -> None:
        barrier.wait()
        try:
            GlobalNetworks(clients[index], world.layout).create(specs[index])
            outcomes[specs[index].name] = "made"
        except ConflictError as exc:
            outcomes[specs[index].name] = str(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(specs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = sorted(n.name for n in world.networks.all())
    assert made in (["net-wide"], ["net0", "net1"])
    assert sorted(k for k, v in outcomes.items() if v == "made") == made


def test_a_network_with_held_subnets_is_removed_only_by_force(world: World) -> None:
    podnet = world.network("podnet", "10.5.0.0/16")
    alpha = world.node("alpha")
    alpha.subnets.claim(podnet)
    with pytest.raises(InUseError, match="^global network podnet has subnets held by nodes alpha$"):
        world.networks.remove("podnet")
    assert world.networks.get("podnet") == podnet
    world.networks.remove("podnet", force=True)
    assert world.keys("networks/") == [] and world.keys("subnets/") == []
    assert world.keys("holders/") == []
    with pytest.raises(NotFoundError, match="^global network podnet not found$"):
        world.networks.remove("podnet")


# -- subnet leases


def _claim_at_once(world: World, nodes: list[Node], network: GlobalNetwork
                   ) -> dict[str, IPv4Network | str]:
    barrier = threading.Barrier(len(nodes))
    results: dict[str, IPv4Network | str] = {}

    def claim(node: Node) -> None:
        barrier.wait()
        try:
            results[node.membership.name] = node.subnets.claim(network)
        except IPAMExhaustedError as exc:
            results[node.membership.name] = str(exc)

    threads = [threading.Thread(target=claim, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_ten_nodes_claiming_at_once_never_share_a_subnet(world: World) -> None:
    podnet = world.network("podnet", "10.5.0.0/20")
    scarce = world.network("scarce", "10.6.0.0/22")  # 4 blocks for 10 nodes
    nodes = [world.node(f"node{i}") for i in range(10)]

    claimed = _claim_at_once(world, nodes, podnet)
    assert len(claimed) == 10 and len(set(claimed.values())) == 10
    assert all(isinstance(b, IPv4Network) and b.subnet_of(podnet.subnet) and b.prefixlen == 24
               for b in claimed.values())
    assert len(world.keys("subnets/podnet/")) == 10
    holders = SubnetLeases(world.client, world.layout, "", lambda: 0).holders("podnet")
    by_name = {n.membership.node: n.membership.name for n in nodes}
    assert {by_name[node]: blocks for node, blocks in holders.items()} == {
        name: (block,) for name, block in claimed.items()}
    assert {n.membership.name: n.subnets.claim(podnet) for n in nodes} == claimed

    outcome = _claim_at_once(world, nodes, scarce)
    won = {name: b for name, b in outcome.items() if isinstance(b, IPv4Network)}
    assert sorted(won.values()) == list(scarce.subnet.subnets(new_prefix=24))
    refusal = "global network scarce (10.6.0.0/22) has no free /24 left: all 4 are held"
    assert sorted(set(outcome.values()) - set(won.values())) == [refusal]


def test_a_node_claims_one_subnet_and_gives_it_back(world: World) -> None:
    podnet = world.network("podnet", "10.5.0.0/16")
    alpha = world.node("alpha")
    block = alpha.subnets.claim(podnet)
    assert alpha.subnets.held("podnet") == (block,)
    me = alpha.membership.node
    assert sorted(world.keys()) == [
        f"alive/{me}", f"holders/podnet/{me}", "networks/podnet", f"nodes/{me}",
        f"subnets/podnet/{block.network_address}-24"]
    assert alpha.subnets.release("podnet") is True
    assert alpha.subnets.held("podnet") == () and world.keys("subnets/") == []
    assert alpha.subnets.release("podnet") is False
    with pytest.raises(NotFoundError, match="^global network gone not found$"):
        alpha.subnets.claim(GlobalNetwork("gone", "x", IPv4Network("10.9.0.0/16"), 24, 9, ""))


def test_a_node_whose_blocks_are_full_claims_more_and_gives_all_back(world: World) -> None:
    scarce = world.network("scarce", "10.6.0.0/22")  # 4 blocks
    alpha, beta = world.node("alpha"), world.node("beta")
    first = alpha.subnets.claim(scarce)
    with pytest.raises(NotFoundError, match="^this node holds no block of global network "
                       "scarce$"):
        beta.subnets.claim_more(scarce)  # a first block comes from claim()
    theirs = beta.subnets.claim(scarce)
    more = [alpha.subnets.claim_more(scarce), alpha.subnets.claim_more(scarce)]
    assert alpha.subnets.held("scarce") == (first, *more)
    assert alpha.subnets.claim(scarce) == first  # the first stays the first
    assert sorted((first, theirs, *more)) == list(scarce.subnet.subnets(new_prefix=24))
    with pytest.raises(IPAMExhaustedError, match=r"^global network scarce \(10.6.0.0/22\) "
                       "has no free /24 left: all 4 are held$"):
        alpha.subnets.claim_more(scarce)
    me = alpha.membership.node
    listing = world.client.get_prefix(world.layout.root + "subnets/scarce/")
    mine = sorted(kv.key.rsplit("/", 1)[1] for kv in listing.items
                  if decode_subnet_holder(kv.value) == me)
    assert mine == sorted(f"{b.network_address}-24" for b in (first, *more))
    assert alpha.subnets.release("scarce") is True
    assert world.keys("subnets/scarce/") == [f"subnets/scarce/{theirs.network_address}-24"]
    assert beta.subnets.held("scarce") == (theirs,)


def test_two_claims_of_one_node_at_once_keep_both_blocks(world: World) -> None:
    podnet = world.network("podnet", "10.5.0.0/20")
    alpha = world.node("alpha")
    first = alpha.subnets.claim(podnet)
    barrier = threading.Barrier(4)
    more: list[IPv4Network] = []

    def claim() -> None:
        barrier.wait()
        more.append(alpha.subnets.claim_more(podnet))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(more)) == 4 and first not in more
    assert sorted(alpha.subnets.held("podnet")) == sorted((first, *more))


# -- membership


def _status(view: ClusterView, name: str) -> str | None:
    return next((n.state for n in view.nodes() if n.name == name), None)


def test_a_stopped_node_is_lost_after_its_ttl_and_its_subnet_free_after_the_grace(
    world: World,
) -> None:
    ttl, grace = 2, 6
    tiny = world.network("tiny", "10.9.0.0/24")  # one block
    recorder = Recorder()
    view = world.view(recorder, node="observer")
    alpha = world.node("alpha", ttl=ttl, grace=grace)
    block = alpha.subnets.claim(tiny)
    wait_until(lambda: names(recorder.latest("tiny")) == ["alpha"], 5, "alpha as tiny's peer")

    alpha.membership.stop()  # the daemon dies: nothing is revoked
    stopped, stopped_wall = time.monotonic(), time.time()
    wait_until(lambda: _status(view, "alpha") == LOST, ttl + 2, "alpha to be lost")
    lost_after = time.monotonic() - stopped
    assert ttl - ttl / 3 - 0.5 < lost_after < ttl + 2
    # the view delivers on its own thread, just after its state changed
    wait_until(lambda: recorder.latest("tiny") == (), 1, "alpha gone from tiny's peers")
    (status,) = view.nodes()
    assert dict(status.subnets) == {"tiny": block}
    assert status.last_seen is not None and abs(status.last_seen - stopped_wall) < 1.5

    beta = world.node("beta")
    with pytest.raises(IPAMExhaustedError, match=r"tiny \(10.9.0.0/24\) has no free /24 left"):
        beta.subnets.claim(tiny)  # still reserved for alpha
    wait_until(lambda: world.keys("subnets/") == [], grace + 2, "alpha's subnet to be freed")
    assert grace - ttl / 3 - 1 < time.monotonic() - stopped < grace + 2
    assert world.keys("nodes/") == [f"nodes/{beta.membership.node}"]
    assert beta.subnets.claim(tiny) == block
    wait_until(lambda: [n.name for n in view.nodes()] == ["beta"], 2, "only beta listed")


def test_a_restarted_node_gets_its_subnet_back_and_updates_its_address(
    world: World, tmp_path: Path,
) -> None:
    world.network("podnet", "10.5.0.0/16")
    recorder = Recorder()
    world.view(recorder, node="observer")
    root = tmp_path / "state"
    settings = JoinSettings(world.etcd.endpoints, "alpha", "192.0.2.10", ttl=2, grace=60,
                            prefix=world.layout.root)
    first = ClusterNode.join(root, settings)
    block = first.claim_subnet("podnet")
    grace_lease = first.membership.grace_lease
    first.close()  # a daemon restart: the node goes lost, its subnet stays
    wait_until(lambda: recorder.latest("podnet") == (), 5, "alpha to drop out of the peers")

    moved = JoinSettings(**{**settings.__dict__, "address": "192.0.2.20"})
    ClusterNode.join(root, moved).close()  # saves the new settings, as `cluster join` would
    second = ClusterNode.resume(root)
    assert second is not None
    try:
        wait_until(lambda: second.membership.registered, 10, "the resumed node to register")
        assert second.node == first.node
        assert second.membership.grace_lease == grace_lease
        assert second.subnets.held("podnet") == (block,)
        assert second.claim_subnet("podnet") == block
        wait_until(lambda: [(p.name, str(p.address)) for p in recorder.latest("podnet") or ()]
                   == [("alpha", "192.0.2.20")], 5, "the peer list with alpha's new address")
        second.membership.set_address(IPv4Address("192.0.2.30"))
        wait_until(lambda: [str(p.address) for p in recorder.latest("podnet") or ()]
                   == ["192.0.2.30"], 5, "alpha's address replaced, not added")
    finally:
        second.close()


def test_leave_frees_everything_at_once(world: World, tmp_path: Path) -> None:
    podnet = world.network("podnet", "10.5.0.0/16")
    recorder = Recorder()
    world.view(recorder, node="observer")
    settings = JoinSettings(world.etcd.endpoints, "alpha", "192.0.2.10",
                            prefix=world.layout.root)
    node = ClusterNode.join(tmp_path / "state", settings)
    node.claim_subnet("podnet")
    wait_until(lambda: names(recorder.latest("podnet")) == ["alpha"], 5, "alpha as a peer")
    node.leave()
    assert world.keys() == ["networks/podnet"]
    assert load_join(tmp_path / "state") is None
    wait_until(lambda: recorder.latest("podnet") == (), 2, "alpha gone from the peers")

    beta = world.node("beta")
    beta.subnets.claim(podnet)
    beta.membership.stop()  # a daemon gone; its successor leaves before it registered
    Membership(world.client, world.layout, beta.membership.node, "beta",
               IPv4Address("192.0.2.2")).leave()
    assert world.keys() == ["networks/podnet"]


def test_two_ready_nodes_cannot_share_a_name(world: World) -> None:
    world.node("alpha", node_id="a" * 32)
    with pytest.raises(ConflictError, match="^node name alpha is taken by node a{32} at "):
        world.node("alpha", node_id="b" * 32)


# -- the view


def test_after_a_compaction_the_view_relists_and_sees_a_changed_vtep_mac(world: World) -> None:
    podnet = world.network("podnet", "10.5.0.0/16")
    alpha = world.node("alpha")
    alpha.subnets.claim(podnet)
    alpha.membership.publish_vtep("podnet", MAC1)
    proxy = TcpProxy(("127.0.0.1", world.etcd.members[0].address.client_port))
    try:
        cut_off = world.new_client((f"http://{proxy.address}",), retry_for=3.0)
        recorder = Recorder()
        view = world.view(recorder, node="observer", client=cut_off)
        assert [p.vtep_mac for p in recorder.latest("podnet") or ()] == [MAC1]
        proxy.cut()
        wait_until(lambda: not view.connected, 5, "the view's watch to lose its member")
        alpha.membership.publish_vtep("podnet", MAC2)
        world.client.put(world.layout.root + "unrelated", b"")
        world.client.compact(world.client.revision())
        assert [p.vtep_mac for p in view.peers("podnet")] == [MAC1]  # kept while cut off
        proxy.restore()
        wait_until(lambda: [p.vtep_mac for p in recorder.latest("podnet") or ()] == [MAC2], 10,
                   "the view to relist and see the new MAC")
        assert view.relists == 2
        assert [[p.vtep_mac for p in peers] for peers in recorder.calls["podnet"]] == [
            [MAC1], [MAC2]]
    finally:
        proxy.close()


def test_with_every_member_stopped_the_view_keeps_its_state_and_resyncs(
    own_world: World, own_cluster: EtcdCluster,
) -> None:
    ttl = 3
    podnet = own_world.network("podnet", "10.5.0.0/16")
    alpha = own_world.node("alpha", ttl=ttl)
    alpha.subnets.claim(podnet)
    alpha.membership.publish_vtep("podnet", MAC1)
    recorder = Recorder()
    view = own_world.view(recorder, node="observer")
    wait_until(lambda: [p.vtep_mac for p in recorder.latest("podnet") or ()] == [MAC1], 5,
               "alpha with its first MAC")
    delivered = recorder.calls["podnet"][:]
    for index in range(3):
        own_cluster.stop_member(index)
    time.sleep(ttl + 2)  # longer than alpha's TTL
    assert recorder.calls["podnet"] == delivered and names(view.peers("podnet")) == ["alpha"]
    assert _status(view, "alpha") == READY and alpha.membership.health.failures > 0
    for index in range(3):
        own_cluster.start_member(index)
    own_cluster.wait_healthy()
    alpha.membership.publish_vtep("podnet", MAC2)
    wait_until(lambda: [p.vtep_mac for p in recorder.latest("podnet") or ()] == [MAC2], 15,
               "the view to resync")
    wait_until(lambda: alpha.membership.health.failures == 0, 10, "alpha's renewals to resume")
    assert _status(view, "alpha") == READY and view.connected


def test_killing_the_leader_is_invisible_to_a_client_claiming_in_a_loop(
    own_world: World, own_cluster: EtcdCluster,
) -> None:
    leader = own_cluster.leader()
    endpoints = own_cluster.endpoints
    client = own_world.new_client((endpoints[leader], *endpoints[:leader],
                                   *endpoints[leader + 1:]))
    podnet = own_world.network("podnet", "10.5.0.0/16")
    lease = client.grant(600)
    blocks, latencies = [], []
    for i in range(30):
        if i == 10:
            own_cluster.kill(leader)
        started = time.monotonic()
        blocks.append(SubnetLeases(client, own_world.layout, f"node{i:02}", lambda: lease)
                      .claim(podnet))
        latencies.append(time.monotonic() - started)
    assert len(set(blocks)) == 30
    assert max(latencies) < client.config.retry_for
    assert own_cluster.leader() != leader
    assert len(own_world.keys("subnets/podnet/")) == 30
