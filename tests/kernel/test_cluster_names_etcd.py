"""Names across nodes against a real 3-member etcd on 127.0.0.1 (tests/etcd.py): two nodes,
each as the daemon puts one together (membership, ClusterNames, a view leaving itself out),
publish their names and each view delivers the other's; a list emptied or a network removed
deletes them; a lost node's stay, a left one's go; a new grace lease gets them written
again. Each test works under a root prefix of its own."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
from test_cluster_etcd import World

from etcd import EtcdCluster, etcd_cluster, loopback_addresses
from helpers import wait_until
from netbay.cluster import (
    LOST,
    ClusterView,
    Layout,
    Membership,
)
from netbay.cluster.names import ClusterNames
from netbay.name_entry import NameEntry

pytestmark = pytest.mark.kernel

WEB = NameEntry("web", ("webhost", "www"), IPv4Address("10.5.1.2"), "c-web")
DB = NameEntry("db", ("dbhost",), IPv4Address("10.5.2.2"), "c-db")
API = NameEntry("api", (), IPv4Address("10.5.2.3"), "c-api")
_roots = itertools.count()


def on(node: str, *entries: NameEntry) -> tuple[NameEntry, ...]:
    return tuple(NameEntry(e.name, e.aliases, e.address, e.container, node) for e in entries)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    base = tmp_path_factory.mktemp("etcd")
    with etcd_cluster([base / f"m{i}" for i in range(3)], loopback_addresses(3)) as etcd:
        yield etcd


Delivered = list[tuple[str, tuple[NameEntry, ...]]]  # (network, names), in order


def delivered(calls: Delivered, network: str) -> list[tuple[NameEntry, ...]]:
    return [entries for name, entries in list(calls) if name == network]


def wait_delivered(calls: Delivered, entries: tuple[NameEntry, ...], what: str) -> None:
    wait_until(lambda: delivered(calls, "podnet")[-1:] == [entries], 5, what)


@dataclass
class NamesNode:
    id: str
    membership: Membership
    names: ClusterNames
    view: ClusterView
    received: Delivered  # what its view gave on_names


class Nodes:
    """Nodes as the daemon puts one together, on test_cluster_etcd's World."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._views: list[ClusterView] = []
        world.network("podnet", "10.5.0.0/16")

    def node(self, name: str, ttl: int = 15, grace: int = 3600) -> NamesNode:
        made = self.world.node(name, ttl, grace)
        ident, membership = made.membership.node, made.membership
        names = ClusterNames(made.client, self.world.layout, ident,
                             lambda: membership.grace_lease)
        membership.on_new_grace_lease.append(names.republish)
        received: Delivered = []
        view = ClusterView(made.client, self.world.layout, None, ident,
                           on_names=lambda network, entries: received.append((network, entries)))
        view.start()
        self._views.append(view)
        assert view.wait_synced(10)
        return NamesNode(ident, membership, names, view, received)

    def close(self) -> None:
        for view in self._views:
            view.stop()


@pytest.fixture
def nodes(cluster: EtcdCluster) -> Iterator[Nodes]:
    world = World(cluster, Layout(f"/netbay-names-{time.monotonic_ns()}-{next(_roots)}/v1/"))
    made = Nodes(world)
    try:
        yield made
    finally:
        made.close()
        world.close()


def test_each_node_is_delivered_the_others_names_and_an_empty_list_deletes_them(
    nodes: Nodes,
) -> None:
    alpha, beta = nodes.node("alpha"), nodes.node("beta")
    wait_delivered(alpha.received, (), "alpha's first delivery: no names yet")
    alpha.names.publish("podnet", [WEB])
    beta.names.publish("podnet", [DB, API])
    wait_delivered(alpha.received, on(beta.id, API, DB), "beta's names at alpha")
    wait_delivered(beta.received, on(alpha.id, WEB), "alpha's names at beta")
    assert nodes.world.keys("names/") == [f"names/podnet/{alpha.id}", f"names/podnet/{beta.id}"]
    (kv,) = nodes.world.client.get_prefix(nodes.world.layout.names("podnet", alpha.id)).items
    assert kv.lease == alpha.membership.grace_lease
    assert kv.value == (b'[{"address":"10.5.1.2","aliases":["webhost","www"],'
                        b'"container":"c-web","name":"web"}]')

    beta.names.publish("podnet", [DB])
    wait_delivered(alpha.received, on(beta.id, DB), "beta's list replaced whole")
    alpha.names.publish("podnet", [])
    wait_delivered(beta.received, (), "alpha's names gone")
    assert nodes.world.keys("names/") == [f"names/podnet/{beta.id}"]
    assert alpha.view.names("podnet") == on(beta.id, DB)
    assert delivered(beta.received, "podnet") == [(), on(alpha.id, WEB), ()]

    nodes.world.networks.remove("podnet", force=True)
    wait_delivered(alpha.received, (), "the network gone, and its names with it")
    assert nodes.world.keys() == [f"alive/{alpha.id}", f"alive/{beta.id}", f"nodes/{alpha.id}",
                            f"nodes/{beta.id}"]
    beta.names.publish("podnet", [DB, API])  # no network: nothing written
    assert nodes.world.keys("names/") == []


def test_a_lost_nodes_names_stay_and_a_left_ones_go(nodes: Nodes) -> None:
    alpha, beta = nodes.node("alpha", ttl=2), nodes.node("beta")
    alpha.names.publish("podnet", [WEB])
    wait_delivered(beta.received, on(alpha.id, WEB), "alpha's names at beta")
    alpha.membership.stop()  # the daemon dies: its containers may still run
    wait_until(lambda: any(n.id == alpha.id and n.state == LOST for n in beta.view.nodes()),
               5, "alpha to be lost")
    assert beta.view.names("podnet") == on(alpha.id, WEB)
    assert delivered(beta.received, "podnet") == [(), on(alpha.id, WEB)]

    Membership(nodes.world.client, nodes.world.layout, alpha.id, "alpha",
               IPv4Address("192.0.2.1")).leave()  # `cluster leave` revokes its leases
    wait_delivered(beta.received, (), "alpha's names gone with its lease")
    assert nodes.world.keys("names/") == []


def test_a_new_grace_lease_gets_the_names_written_again(nodes: Nodes) -> None:
    alpha, beta = nodes.node("alpha", ttl=1, grace=2), nodes.node("beta")
    alpha.names.publish("podnet", [WEB])
    wait_delivered(beta.received, on(alpha.id, WEB), "alpha's names at beta")
    first = alpha.membership.grace_lease
    alpha.membership.stop()  # out of reach for longer than the grace: every lease runs out
    wait_delivered(beta.received, (), "alpha's names gone with its grace lease")
    alpha.membership.start()
    wait_until(lambda: nodes.world.keys("names/") == [f"names/podnet/{alpha.id}"], 10,
               "alpha's names written again on its new grace lease")
    assert alpha.membership.grace_lease != first
    (kv,) = nodes.world.client.get_prefix(nodes.world.layout.names("podnet", alpha.id)).items
    assert kv.lease == alpha.membership.grace_lease
    wait_delivered(beta.received, on(alpha.id, WEB), "alpha's names back at beta")
