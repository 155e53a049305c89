"""The Store protocol's contract, run against SQLiteStore (a file) and MemoryStore alike, so
the two cannot drift: every method, its ordering, its conflicts (with SQLite's messages),
its transactions. No root."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from netbay.errors import ConflictError
from netbay.model import CREATING, READY, Container, Endpoint, Network, SubnetConfig
from netbay.name_entry import NameEntry
from netbay.store import MemoryStore, Store
from netbay.store.base import ContainerRow, EndpointRow, RemoteName
from netbay.store.sqlite import SQLiteStore

A = IPv4Address
NET_A = "aaaa" + "0" * 60
NET_B = "abcd" + "0" * 60
CTR_1 = "c1" + "0" * 62
CTR_2 = "c2" + "0" * 62


def network(
    nid: str = NET_A, name: str = "front", created: str = "2024-01-01", **kw: Any
) -> Network:
    third = int(nid[:4], 16) % 250
    subnet = SubnetConfig(
        IPv4Network(f"10.61.{third}.0/24"), A(f"10.61.{third}.1"),
        IPv4Network(f"10.61.{third}.128/25"), {"printer": A(f"10.61.{third}.9")},
    )
    return Network(id=nid, name=name, driver="bridge", created=created, subnets=(subnet,), **kw)


def container(
    cid: str = CTR_1, name: str = "env1", created: str = "2024-01-02", **kw: Any
) -> Container:
    return Container(
        id=cid, name=name, hostname=name + "-host", command=("sleep", "infinity"),
        created=created, netns=f"/run/netbay/netns/{cid}", network_mode="bridge", **kw,
    )


def endpoint(
    eid: str, nid: str = NET_A, cid: str = CTR_1, address: str | None = "10.61.0.2/24",
    ifname: str = "eth0", aliases: tuple[str, ...] = (), state: str = READY,
) -> Endpoint:
    return Endpoint(
        id=eid, network_id=nid, container_id=cid, ifname=ifname, host_ifname="nbv" + eid,
        mac="02:42:0a:3d:00:02", address=IPv4Interface(address) if address else None,
        gateway=A("10.61.0.1") if address else None, aliases=aliases, state=state,
    )


def open_sqlite(tmp_path: Path) -> Store:
    return SQLiteStore(tmp_path / "netbay.db")


def open_memory(tmp_path: Path) -> Store:
    return MemoryStore()


@pytest.fixture(params=[open_sqlite, open_memory], ids=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store = request.param(tmp_path)
    yield opened
    opened.close()


def fill(store: Store) -> Store:
    """Two networks, two containers; env1 on both, env2 on front."""
    store.put_network(network())
    store.put_network(network(NET_B, "back"))
    store.put_container(container(config={"dns": ["192.0.2.53"], "external_id": "podman-1"}))
    store.put_container(container(CTR_2, "env2"))
    store.put_endpoint(endpoint("e1", aliases=("db", "DB2")))
    store.put_endpoint(endpoint("e2", NET_B, address="10.61.1.2/24", ifname="eth1"))
    store.put_endpoint(endpoint("e3", cid=CTR_2, address="10.61.0.3/24"))
    return store


@pytest.fixture
def attached(store: Store) -> Store:
    return fill(store)


# --- networks and containers -------------------------------------------------------------
def test_network_reads_back_equal_and_in_creation_order(store: Store) -> None:
    late = network(NET_A, "zeta", "2024-03-01", internal=True, attachable=True, builtin=True,
                   options={"mtu": "1400"}, labels={"team": "x"}, device="br-zeta",
                   device_created=True, mtu=1400, state=CREATING, owner="1:2")
    early_b = network("b" * 64, "beta", "2024-02-01")
    early_a = network("c" * 64, "alpha", "2024-02-01")
    for n in (late, early_b, early_a):
        store.put_network(n)
    assert store.networks() == [early_a, early_b, late]
    assert store.find_network("zeta") == late


def test_containers_read_back_equal_in_creation_then_put_order(store: Store) -> None:
    first = container(CTR_2, "second", "2024-01-01", config={"ports": [{"host": 80}]}, pid=7)
    tie_1 = container("d" * 64, "tie1", "2024-01-05")
    tie_2 = container("a" * 64, "tie2", "2024-01-05")
    for c in (tie_1, first, tie_2):
        store.put_container(c)
    assert store.containers() == [first, tie_1, tie_2]
    assert store.container_named("second") == first


@pytest.mark.parametrize("kind", ["network", "container"])
def test_find_by_id_name_or_unique_prefix(store: Store, kind: str) -> None:
    def put(record_id: str, name: str) -> None:
        if kind == "network":
            store.put_network(network(record_id, name))
        else:
            store.put_container(container(record_id, name))

    find: Callable[[str], Network | Container | None] = (
        store.find_network if kind == "network" else store.find_container
    )
    put(NET_A, NET_B)  # named like the other's id
    put(NET_B, "b")
    put("ab" + "1" * 62, "a1")

    def found(ref: str) -> str | None:
        record = find(ref)
        return None if record is None else record.id

    assert found(NET_B) == NET_B  # the id wins over a name equal to it
    assert found("b") == NET_B
    assert found("aaaa") == NET_A
    assert found("ABCD") == NET_B  # a prefix in any case
    assert found("B") is None  # names are exact
    assert found("ab1") == "ab" + "1" * 62
    assert found("%") is None and found("a_cd") is None  # no wildcards
    assert found("") is None
    with pytest.raises(ConflictError, match=f"^'ab' matches more than one {kind}$"):
        find("ab")


def test_container_named_is_exact(store: Store) -> None:
    store.put_container(container())
    assert store.container_named("ENV1") is None
    assert store.container_named(CTR_1) is None
    assert store.container_named("env") is None


def test_container_by_external_id(attached: Store) -> None:
    found = attached.container_by_external_id("podman-1")
    assert found is not None and found.id == CTR_1
    assert attached.container_by_external_id("podman") is None


def test_a_network_gets_one_more_subnet(attached: Store) -> None:
    # a routed share whose block is full claims another (engine/blocks.py)
    net = attached.find_network(NET_A)
    assert net is not None
    more = SubnetConfig(IPv4Network("10.99.0.0/30"), IPv4Address("10.99.0.1"))
    attached.update_network(NET_A, subnets=(*net.subnets, more))
    grown = attached.find_network(NET_A)
    assert grown is not None and grown.subnets == (*net.subnets, more)


def test_updates_set_scalar_fields_and_config(attached: Store) -> None:
    attached.update_network(NET_A, state=CREATING, owner="9:9", device_created=True, mtu=9000)
    attached.update_container(CTR_2, pid=42, exit_code=None, config={"dns": ["192.0.2.1"]})
    attached.update_endpoint("e3", state=CREATING, host_ifname=None)
    attached.update_network("missing", state=READY)  # nothing to update: nothing happens
    net = attached.find_network(NET_A)
    assert net is not None and (net.state, net.owner, net.device_created, net.mtu) == (
        CREATING, "9:9", True, 9000
    )
    assert net.device_created is True
    ctr = attached.find_container(CTR_2)
    assert ctr is not None and (ctr.pid, ctr.config) == (42, {"dns": ["192.0.2.1"]})
    [e3] = attached.endpoints(container_id=CTR_2)
    assert (e3.state, e3.host_ifname) == (CREATING, None)
    assert [e.id for e in attached.endpoints()] == ["e1", "e2", "e3"]  # updates keep places


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (lambda s: s.update_network(NET_A, labels={}),
         r"cannot update network fields \['labels'\]"),
        (lambda s: s.update_container(CTR_1, command=("x",), bogus=1),
         r"cannot update container fields \['bogus', 'command'\]"),
        (lambda s: s.update_endpoint("e1", address=None),
         r"cannot update endpoint fields \['address'\]"),
        (lambda s: s.update_endpoint("e1"), r"cannot update endpoint fields \[\]"),
    ],
)
def test_updates_of_fields_not_stored_as_they_are_are_refused(
    attached: Store, update: Callable[[Store], None], message: str
) -> None:
    before = list(attached.dump())
    with pytest.raises(TypeError, match=f"^{message}$"):
        update(attached)
    assert list(attached.dump()) == before


# --- conflicts ---------------------------------------------------------------------------
UNIQUE = "record conflict: UNIQUE constraint failed: "
FOREIGN = "record conflict: FOREIGN KEY constraint failed"
CONFLICTS: list[tuple[str, Callable[[Store], None], str]] = [
    ("network id", lambda s: s.put_network(network(NET_A, "other")), UNIQUE + "networks.id"),
    ("network name and id", lambda s: s.put_network(network(NET_A)), UNIQUE + "networks.name"),
    ("renamed network", lambda s: s.update_network(NET_B, name="front"), UNIQUE + "networks.name"),
    ("container id", lambda s: s.put_container(container(name="x")), UNIQUE + "containers.id"),
    ("container name", lambda s: s.put_container(container("f" * 64)), UNIQUE + "containers.name"),
    ("renamed container", lambda s: s.update_container(CTR_2, name="env1"),
     UNIQUE + "containers.name"),
    ("endpoint id", lambda s: s.put_endpoint(endpoint("e1", NET_B, CTR_2, None, "eth7")),
     UNIQUE + "endpoints.id"),
    ("second endpoint on a network",
     lambda s: s.put_endpoint(endpoint("e9", address=None, ifname="eth5")),
     UNIQUE + "endpoints.network_id, endpoints.container_id"),
    ("interface name", lambda s: s.put_endpoint(endpoint("e9", NET_B, CTR_2, None)),
     UNIQUE + "endpoints.container_id, endpoints.ifname"),
    ("address and all", lambda s: s.put_endpoint(endpoint("e9")),
     UNIQUE + "endpoints.network_id, endpoints.address"),
    ("renamed interface", lambda s: s.update_endpoint("e2", ifname="eth0"),
     UNIQUE + "endpoints.container_id, endpoints.ifname"),
    ("endpoint id taken", lambda s: s.update_endpoint("e2", id="e1"), UNIQUE + "endpoints.id"),
    ("missing network",
     lambda s: s.put_endpoint(endpoint("e9", "n" * 64, CTR_2, None, "eth5")), FOREIGN),
    ("missing container", lambda s: s.put_endpoint(endpoint("e9", NET_B, "x" * 64, None)), FOREIGN),
    ("moved to a missing network", lambda s: s.update_endpoint("e3", network_id="nope"), FOREIGN),
    ("network in use", lambda s: s.delete_network(NET_B), FOREIGN),
    ("container in use", lambda s: s.delete_container(CTR_2), FOREIGN),
    ("network in use re-keyed", lambda s: s.update_network(NET_A, id="n2"), FOREIGN),
    ("container in use re-keyed", lambda s: s.update_container(CTR_1, id="c9"), FOREIGN),
]


@pytest.mark.parametrize(
    ("write", "message"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS]
)
def test_a_write_breaking_a_constraint_changes_nothing(
    attached: Store, write: Callable[[Store], None], message: str
) -> None:
    before, version = list(attached.dump()), attached.version()
    with pytest.raises(ConflictError) as refused:
        write(attached)
    assert str(refused.value) == message
    assert list(attached.dump()) == before
    assert attached.version() == version


def test_endpoints_without_address_do_not_collide(attached: Store) -> None:
    attached.put_container(container("d" * 64, "env3"))
    attached.put_endpoint(endpoint("e8", NET_B, "d" * 64, None))
    attached.update_endpoint("e2", id="e2b")  # not referenced: re-keying is fine
    assert [e.id for e in attached.endpoints(NET_B)] == ["e2b", "e8"]
    attached.delete_endpoint("e8")
    attached.delete_container("d" * 64)
    assert attached.find_container("env3") is None


# --- transactions ------------------------------------------------------------------------
def test_a_transaction_that_raises_undoes_all_its_writes(attached: Store) -> None:
    before, version = list(attached.dump()), attached.version()
    with pytest.raises(RuntimeError), attached.transaction():
        attached.put_network(network("d" * 64, "third"))
        attached.delete_endpoint("e3")
        attached.update_container(CTR_2, state=CREATING)
        raise RuntimeError("undo")
    assert list(attached.dump()) == before
    assert attached.version() == version


def test_nested_transactions_join_the_outermost(attached: Store) -> None:
    with attached.transaction():
        with pytest.raises(ConflictError), attached.transaction():
            attached.put_network(network("d" * 64, "third"))
            attached.put_network(network("e" * 64, "third"))  # refused, caught below
        attached.delete_endpoint("e3")
    assert [n.name for n in attached.networks()] == ["back", "front", "third"]
    assert [e.id for e in attached.endpoints()] == ["e1", "e2"]
    with pytest.raises(RuntimeError), attached.transaction():
        with attached.transaction():
            attached.delete_endpoint("e2")
        raise RuntimeError("the inner one's write goes too")
    assert [e.id for e in attached.endpoints()] == ["e1", "e2"]


def test_a_transaction_is_exclusive_across_threads(store: Store) -> None:
    seen: list[list[str]] = []
    reader = threading.Thread(target=lambda: seen.append([n.name for n in store.networks()]))
    with store.transaction():
        store.put_network(network())
        reader.start()
        time.sleep(0.2)
        assert reader.is_alive()  # waiting: it may not see a write not yet committed
        store.put_network(network(NET_B, "back"))
    reader.join(5)
    assert seen == [["back", "front"]]


def test_the_version_moves_with_each_committed_write_only(attached: Store) -> None:
    seen = [attached.version()]
    attached.networks()
    attached.dns_records()
    attached.used_addresses(NET_A)
    assert attached.version() == seen[-1]
    writes: list[Callable[[], None]] = [
        lambda: attached.update_endpoint("e1", state=CREATING),
        lambda: attached.delete_endpoint("e1"),
        lambda: attached.put_endpoint(endpoint("e1")),
    ]
    for write in writes:
        write()
        assert attached.version() not in seen
        seen.append(attached.version())


# --- endpoints and names -----------------------------------------------------------------
def test_endpoints_by_network_container_or_both_in_put_order(attached: Store) -> None:
    def ids(**where: str) -> list[str]:
        return [e.id for e in attached.endpoints(**where)]

    assert ids() == ["e1", "e2", "e3"]
    assert ids(network_id=NET_A) == ["e1", "e3"]
    assert ids(container_id=CTR_1) == ["e1", "e2"]
    assert ids(network_id=NET_B, container_id=CTR_1) == ["e2"]
    assert ids(network_id=NET_B, container_id=CTR_2) == []
    assert attached.endpoints(container_id=CTR_1)[0] == endpoint("e1", aliases=("db", "DB2"))


def test_used_addresses_are_the_leases_as_integers(attached: Store) -> None:
    attached.put_container(container("d" * 64, "env3"))
    attached.put_endpoint(endpoint("e4", cid="d" * 64, address=None, ifname="eth9"))
    used = attached.used_addresses(NET_A)
    assert used == {int(A("10.61.0.2")), int(A("10.61.0.3"))}
    used.add(1)  # the caller's copy
    attached.delete_endpoint("e3")
    assert attached.used_addresses(NET_A) == {int(A("10.61.0.2"))}
    assert attached.used_addresses("missing") == set()
    assert (attached.endpoint_count(NET_A), attached.endpoint_count(NET_B)) == (2, 1)
    assert attached.endpoint_count("missing") == 0


def test_leases_follow_every_put_and_delete_without_being_changed_in_hand(
    attached: Store,
) -> None:
    before = attached.leases(NET_A)
    assert list(before) == sorted(attached.used_addresses(NET_A))
    attached.put_container(container("d" * 64, "env3"))
    attached.put_endpoint(endpoint("e4", cid="d" * 64, address="10.61.0.9/24", ifname="eth9"))
    attached.delete_endpoint("e1")
    assert list(attached.leases(NET_A)) == [int(A("10.61.0.3")), int(A("10.61.0.9"))]
    assert list(before) == [int(A("10.61.0.2")), int(A("10.61.0.3"))]
    assert list(attached.leases("missing")) == []


def test_containers_called_and_aliased_fold_ascii_case_only(attached: Store) -> None:
    attached.put_container(container("d" * 64, "Ärger"))
    attached.put_endpoint(endpoint("e4", NET_B, "d" * 64, "10.61.1.4/24", aliases=("db", "Db")))
    assert sorted(attached.containers_called(NET_A, "ENV1")) == ["env1"]
    assert attached.containers_called(NET_B, "env2") == []
    assert attached.containers_called(NET_B, "ÄRGER") == ["Ärger"]
    assert attached.containers_called(NET_B, "ärger") == []  # SQLite's lower() is ASCII
    assert attached.containers_aliased(NET_A, "db2") == ["env1"]
    assert attached.containers_aliased(NET_A, "env1") == []
    assert attached.containers_aliased(NET_B, "DB") == ["Ärger", "Ärger"]  # once per alias


def test_dns_records_are_what_the_zone_is_built_from(attached: Store) -> None:
    attached.update_endpoint("e3", state=CREATING)
    records = attached.dns_records()
    assert sorted(n.name for n in records.networks) == ["back", "front"]
    assert sorted(records.containers, key=lambda c: c.id) == [
        ContainerRow(CTR_1, "env1", "env1-host", CREATING, ("192.0.2.53",)),
        ContainerRow(CTR_2, "env2", "env2-host", CREATING),
    ]
    assert records.endpoints == [
        EndpointRow(NET_A, CTR_1, A("10.61.0.2"), ("db", "DB2")),
        EndpointRow(NET_B, CTR_1, A("10.61.1.2")),
        EndpointRow(NET_A, CTR_2, A("10.61.0.3"), state=CREATING),
    ]


def test_dump_is_every_stored_row_by_column_name(attached: Store) -> None:
    rows = list(attached.dump())
    assert [(table, row["id"]) for table, row in rows] == [
        ("networks", NET_A), ("networks", NET_B), ("containers", CTR_1), ("containers", CTR_2),
        ("endpoints", "e1"), ("endpoints", "e2"), ("endpoints", "e3"),
    ]
    e1 = rows[4][1]
    assert e1 == {
        "id": "e1", "network_id": NET_A, "container_id": CTR_1, "ifname": "eth0",
        "host_ifname": "nbve1", "mac": "02:42:0a:3d:00:02", "address": int(A("10.61.0.2")),
        "prefixlen": 24, "gateway": "10.61.0.1", "aliases": '["db", "DB2"]', "state": READY,
        "owner": "", "address6": None, "gateway6": None,
    }


def test_both_stores_keep_the_same_rows(tmp_path: Path) -> None:
    dumps = []
    for make in (open_sqlite, open_memory):
        store = make(tmp_path)
        fill(store)
        store.update_network(NET_A, device_created=True, state=CREATING)
        store.update_container(CTR_1, config={"external_id": "x", "ports": [[80, "tcp"]]})
        store.delete_endpoint("e2")
        dumps.append(list(store.dump()))
        store.close()
    assert dumps[0] == dumps[1]


# --- remote names (other nodes' names on global networks) ---------------------------------
WEB = NameEntry("web", ("webhost", "www"), A("10.5.2.2"), "c-web", "node-b")
DB = NameEntry("db", (), A("10.5.2.3"), "c-db", "node-b")
API = NameEntry("api", ("gateway",), A("10.5.3.2"), "c-api", "node-c")


def test_remote_names_are_replaced_whole_per_network_and_move_the_version(
    attached: Store,
) -> None:
    version = attached.version()
    attached.replace_remote_names(NET_B, [API])
    attached.replace_remote_names(NET_A, [WEB, DB])  # not known locally yet: kept all the same
    assert attached.version() != version
    assert attached.remote_names() == [
        RemoteName(NET_A, WEB), RemoteName(NET_A, DB), RemoteName(NET_B, API)]
    version = attached.version()
    attached.replace_remote_names(NET_A, [DB])
    assert attached.version() != version
    assert attached.remote_names() == [RemoteName(NET_A, DB), RemoteName(NET_B, API)]
    attached.replace_remote_names(NET_B, [])
    assert attached.remote_names() == [RemoteName(NET_A, DB)]
    assert attached.dns_records().remote_names == [RemoteName(NET_A, DB)]
    attached.replace_remote_names("nowhere", [WEB])  # no local network: no reference
    attached.replace_remote_names("nowhere", [])
    assert attached.remote_names() == [RemoteName(NET_A, DB)]


def test_remote_names_are_dumped_and_undone_with_their_transaction(attached: Store) -> None:
    attached.replace_remote_names(NET_B, [WEB])
    rows = list(attached.dump())
    assert rows[-1] == ("remote_names", {
        "network_id": NET_B, "node": "node-b", "container": "c-web", "name": "web",
        "aliases": '["webhost", "www"]', "address": int(A("10.5.2.2")), "address6": None,
    })
    version = attached.version()
    with pytest.raises(RuntimeError), attached.transaction():
        attached.replace_remote_names(NET_B, [DB, API])
        attached.replace_remote_names(NET_A, [API])
        raise RuntimeError("undo")
    assert list(attached.dump()) == rows
    assert attached.version() == version


def test_both_stores_keep_the_same_remote_names(tmp_path: Path) -> None:
    dumps = []
    for make in (open_sqlite, open_memory):
        store = make(tmp_path)
        store.replace_remote_names(NET_B, [WEB, API])
        store.replace_remote_names(NET_A, [DB])
        store.replace_remote_names(NET_B, [API, WEB])
        dumps.append(list(store.dump()))
        store.close()
    assert dumps[0] == dumps[1]
    assert [(row["network_id"], row["name"]) for _, row in dumps[0]] == [
        (NET_A, "db"), (NET_B, "api"), (NET_B, "web")]


def test_a_read_only_sqlite_store_follows_the_writer(tmp_path: Path) -> None:
    writer = SQLiteStore(tmp_path / "netbay.db")
    reader = SQLiteStore(tmp_path / "netbay.db", read_only=True)
    version = reader.version()
    writer.put_network(network())
    assert reader.version() != version
    assert [n.id for n in reader.dns_records().networks] == [NET_A]
    with pytest.raises(Exception, match="readonly database"):
        reader.put_network(network(NET_B, "back"))
    reader.close()
    writer.close()
