"""Names across nodes on the etcd side (netbay.cluster.names, the names kind of layout, state
and view): the key and its JSON, the names each node's state holds from a listing and from
watch events, what the view delivers to its consumer, and what ClusterNames writes. Pure:
a fake etcd client stands in for the real one (tests/kernel/test_cluster_names_etcd.py
runs them against etcd)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network
from types import SimpleNamespace
from typing import cast

import pytest
from test_cluster_state import gone, kv, node, put

from helpers import wait_until
from netbay.cluster.endpoints import EtcdUnavailableError
from netbay.cluster.etcd import EtcdClient
from netbay.cluster.kv import (
    Compare,
    KeyValue,
    LeaseTTL,
    Listing,
    Operation,
    Present,
    Put,
    WatchEvent,
)
from netbay.cluster.layout import (
    NAMES,
    GlobalNetwork,
    Layout,
    ParsedKey,
    decode_names,
    encode_alive,
    encode_names,
    encode_network,
    encode_node,
)
from netbay.cluster.names import ClusterNames
from netbay.cluster.state import ClusterState, changed
from netbay.cluster.view import ClusterView
from netbay.name_entry import NameEntry

LAYOUT = Layout()
A, B, C = "a" * 32, "b" * 32, "c" * 32
PODNET = GlobalNetwork("podnet", "n" * 64, IPv4Network("10.5.0.0/16"), 24, 1, "t0")
OTHER = GlobalNetwork("other", "o" * 64, IPv4Network("10.6.0.0/16"), 24, 2, "t1")
WEB = NameEntry("web", ("webhost", "www"), IPv4Address("10.5.2.2"), "c-web")
DB = NameEntry("db", (), IPv4Address("10.5.2.3"), "c-db")
API = NameEntry("api", ("gateway",), IPv4Address("10.5.3.2"), "c-api")
MINE = NameEntry("app", (), IPv4Address("10.5.1.2"), "c-app")


def on(node: str, *entries: NameEntry) -> tuple[NameEntry, ...]:
    """ENTRIES as read back from NODE's key."""
    return tuple(NameEntry(e.name, e.aliases, e.address, e.container, node) for e in entries)


def names_key(node: str, network: str = "podnet") -> str:
    return LAYOUT.names(network, node)


def listing() -> list[KeyValue]:
    """Nodes A (this one), B and C, all ready; B publishes two names on podnet, C one, A
    its own; a names key of a network that has no record, and of a node that has none."""
    return [
        kv(LAYOUT.network("podnet"), encode_network(PODNET)),
        *(kv(LAYOUT.node(n), encode_node(node(n, name, "192.0.2.1")))
          for n, name in ((A, "alpha"), (B, "beta"), (C, "gamma"))),
        *(kv(LAYOUT.alive(n), encode_alive(5)) for n in (A, B, C)),
        kv(names_key(A), encode_names([MINE])),
        kv(names_key(B), encode_names([WEB, DB])),
        kv(names_key(C), encode_names([API])),
        kv(names_key(B, "nowhere"), encode_names([WEB])),
        kv(names_key("d" * 32), encode_names([WEB])),
    ]


# -- the key and its value


def test_a_names_key_is_per_network_per_node_and_its_value_names_no_node() -> None:
    assert LAYOUT.names("podnet", A) == f"/netbay/v1/names/podnet/{A}"
    assert LAYOUT.parse(LAYOUT.names("podnet", A)) == ParsedKey(NAMES, "podnet", A)
    assert LAYOUT.parse("/netbay/v1/names/podnet") is None
    assert LAYOUT.parse("/netbay/v1/names/podnet/") is None
    assert encode_names([WEB, DB]) == (
        b'[{"address":"10.5.2.2","aliases":["webhost","www"],"container":"c-web","name":"web"},'
        b'{"address":"10.5.2.3","aliases":[],"container":"c-db","name":"db"}]')
    assert decode_names(encode_names([WEB, DB]), B) == on(B, WEB, DB)


# -- the state


def test_a_listing_gives_each_network_the_other_nodes_names_sorted() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    assert state.names_of(exclude=A) == {"podnet": on(C, API) + on(B, DB, WEB)}
    assert state.names_of(exclude=B) == {"podnet": on(C, API) + on(A, MINE)}
    assert state.names_of() == {"podnet": on(C, API) + on(A, MINE) + on(B, DB, WEB)}


def test_a_lost_node_keeps_its_names_and_one_without_a_record_has_none() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    state.apply(gone(LAYOUT.alive(B), 7))  # lost: its containers may still run
    assert state.names_of(exclude=A) == {"podnet": on(C, API) + on(B, DB, WEB)}
    state.apply(gone(LAYOUT.node(B), 8))  # its grace lease ran out
    assert state.names_of(exclude=A) == {"podnet": on(C, API)}


def test_events_replace_a_nodes_names_whole_and_a_deleted_key_takes_them() -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    state.apply(put(names_key(B), encode_names([DB]), 7))
    assert state.names_of(exclude=A) == {"podnet": on(C, API) + on(B, DB)}
    state.apply(gone(names_key(C), 8))
    assert state.names_of(exclude=A) == {"podnet": on(B, DB)}
    state.apply(put(LAYOUT.network("other"), encode_network(OTHER), 9))
    state.apply(put(names_key(C, "other"), encode_names([API]), 10))
    assert state.names_of(exclude=A) == {"podnet": on(B, DB), "other": on(C, API)}
    state.apply(gone(LAYOUT.network("podnet"), 11))
    assert state.names_of(exclude=A) == {"other": on(C, API)}


@pytest.mark.parametrize("value", [b"not json", b'{"name": "web"}', b'[{"name": "web"}]',
                                   b'[{"name": "x", "aliases": [], "address": "no",'
                                   b' "container": "c"}]'])
def test_an_unreadable_names_value_is_ignored_and_the_last_one_stays(value: bytes) -> None:
    state = ClusterState.from_listing(LAYOUT, listing())
    state.apply(put(names_key(C), value, 7))
    assert state.names_of(exclude=A) == {"podnet": on(C, API) + on(B, DB, WEB)}


def test_changed_names_are_the_networks_whose_list_differs() -> None:
    before = {"podnet": on(B, DB, WEB), "other": on(C, API)}
    assert changed(before, before) == {}
    assert changed(before, {"podnet": on(B, DB), "other": on(C, API)}) == {"podnet": on(B, DB)}
    assert changed(before, {"podnet": on(B, DB, WEB)}) == {"other": ()}


# -- the view, over a fake client


class FakeWatch:
    connected = True

    def cancel(self) -> None:
        """Nothing to cancel: the test sends the events."""


class FakeClient:
    """The view's side of EtcdClient: one listing, then the events the test sends."""

    config = SimpleNamespace(retry_for=1.0)

    def __init__(self, items: list[KeyValue]) -> None:
        self.items = items
        self.send: Callable[[WatchEvent], None] | None = None

    def get_prefix(self, prefix: str, keys_only: bool = False) -> Listing:
        return Listing(6, tuple(self.items))

    def watch_prefix(self, prefix: str, revision: int, on_event: Callable[[WatchEvent], None],
                     on_compacted: Callable[[int], None]) -> FakeWatch:
        self.send = on_event
        return FakeWatch()

    def time_to_live(self, lease: int) -> LeaseTTL:
        return LeaseTTL(-1, 0)


class Deliveries:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[str, tuple[NameEntry, ...]]] = []
        self.fail = fail  # the first FAIL calls raise
        self.lock = threading.Lock()

    def __call__(self, network: str, entries: tuple[NameEntry, ...]) -> None:
        with self.lock:
            self.calls.append((network, entries))
            if len(self.calls) <= self.fail:
                raise RuntimeError("the consumer failed")

    def after(self, count: int) -> list[tuple[str, tuple[NameEntry, ...]]]:
        wait_until(lambda: len(self.calls) >= count, 5, f"{count} deliveries")
        with self.lock:
            return list(self.calls)


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient(listing())


@contextlib.contextmanager
def started(fake: FakeClient, deliveries: Deliveries) -> Iterator[ClusterView]:
    view = ClusterView(cast(EtcdClient, fake), LAYOUT, None, A, on_names=deliveries)
    view.start()
    assert view.wait_synced(5)
    try:
        yield view
    finally:
        view.stop()


def test_the_view_delivers_each_change_of_the_other_nodes_names_whole(
    fake: FakeClient,
) -> None:
    deliveries = Deliveries()
    with started(fake, deliveries) as view:
        assert deliveries.after(1) == [("podnet", on(C, API) + on(B, DB, WEB))]
        assert fake.send is not None
        fake.send(put(names_key(A), encode_names([]), 7))  # its own: nothing to deliver
        fake.send(gone(LAYOUT.alive(C), 8))  # lost: its names stay
        fake.send(put(names_key(B), encode_names([WEB]), 9))
        assert deliveries.after(2)[1:] == [("podnet", on(C, API) + on(B, WEB))]
        assert view.names("podnet") == on(C, API) + on(B, WEB)
        fake.send(gone(LAYOUT.node(C), 10))  # its grace ran out: its names go
        assert deliveries.after(3)[2:] == [("podnet", on(B, WEB))]
        fake.send(gone(LAYOUT.network("podnet"), 11))  # a network gone has none
        fake.send(put(LAYOUT.network("other"), encode_network(OTHER), 12))
        assert sorted(deliveries.after(5)[3:]) == [("other", ()), ("podnet", ())]
        assert view.names("podnet") == ()


def test_a_list_the_consumer_failed_on_is_delivered_again_with_the_next_change(
    fake: FakeClient,
) -> None:
    deliveries = Deliveries(fail=1)
    with started(fake, deliveries):
        deliveries.after(1)
        assert fake.send is not None
        fake.send(put(LAYOUT.network("other"), encode_network(OTHER), 7))
        assert deliveries.after(3) == [
            ("podnet", on(C, API) + on(B, DB, WEB)),
            ("podnet", on(C, API) + on(B, DB, WEB)), ("other", ()),
        ]


# -- publishing, over a fake client


class FakeStore:
    """The writer's side of EtcdClient: keys with their leases, every call made."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[bytes, int]] = {
            LAYOUT.network("podnet"): (encode_network(PODNET), 0)}
        self.calls: list[str] = []
        self.down = False

    def txn(self, compares: Sequence[Compare], operations: Sequence[Operation]) -> bool:
        self._call("txn")
        if not all(c.key in self.keys for c in compares if isinstance(c, Present)):
            return False
        for op in operations:
            assert isinstance(op, Put)
            self.keys[op.key] = op.value, op.lease
        return True

    def delete(self, key: str, prefix: bool = False) -> int:
        self._call("delete")
        return 1 if self.keys.pop(key, None) else 0

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise EtcdUnavailableError({"http://127.0.0.1:2379": "connection refused"})


@pytest.fixture
def etcd() -> FakeStore:
    return FakeStore()


def publisher(etcd: FakeStore, lease: list[int]) -> ClusterNames:
    return ClusterNames(cast(EtcdClient, etcd), LAYOUT, A, lambda: lease[0])


def test_publish_writes_the_list_whole_on_the_grace_lease_once(etcd: FakeStore) -> None:
    names = publisher(etcd, [41])
    names.publish("podnet", [WEB, DB])
    names.publish("podnet", on(B, DB, WEB))  # the same names, read back from elsewhere
    assert etcd.keys[names_key(A)] == (encode_names([DB, WEB]), 41)
    assert etcd.calls == ["txn"]
    names.publish("podnet", [WEB])
    assert etcd.keys[names_key(A)] == (encode_names([WEB]), 41)
    assert etcd.calls == ["txn", "txn"]


def test_publishing_none_deletes_the_key_once(etcd: FakeStore) -> None:
    names = publisher(etcd, [41])
    names.publish("podnet", [WEB])
    names.publish("podnet", [])
    names.publish("podnet", [])
    assert names_key(A) not in etcd.keys
    assert etcd.calls == ["txn", "delete"]
    publisher(etcd, [41]).publish("podnet", [])  # a restarted daemon deletes what may be left
    assert etcd.calls == ["txn", "delete", "delete"]


def test_a_network_without_a_record_gets_no_names(etcd: FakeStore) -> None:
    publisher(etcd, [41]).publish("nowhere", [WEB])
    assert list(etcd.keys) == [LAYOUT.network("podnet")]


def test_a_failed_write_raises_and_is_made_again(etcd: FakeStore) -> None:
    names = publisher(etcd, [41])
    etcd.down = True
    with pytest.raises(EtcdUnavailableError, match="^etcd unreachable: http://127.0.0.1:2379"):
        names.publish("podnet", [WEB])
    etcd.down = False
    names.publish("podnet", [WEB])
    assert etcd.keys[names_key(A)] == (encode_names([WEB]), 41)


def test_a_new_grace_lease_gets_every_list_again(etcd: FakeStore) -> None:
    lease = [41]
    names = publisher(etcd, lease)
    etcd.keys[LAYOUT.network("other")] = encode_network(OTHER), 0
    names.publish("podnet", [WEB])
    names.publish("other", [API])
    names.publish("other", [])
    lease[0] = 42
    etcd.keys.pop(names_key(A))  # went with the old lease
    names.republish()
    assert {k: v for k, v in etcd.keys.items() if k.startswith(LAYOUT.prefix(NAMES))} == {
        names_key(A): (encode_names([WEB]), 42)}
    assert etcd.calls == ["txn", "txn", "delete", "txn"]

