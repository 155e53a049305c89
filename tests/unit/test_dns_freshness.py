"""The DNS server's look for a commit before each batch: the WAL-index header says when
nothing changed, so SQLite is asked only when something may have; every commit is seen, and
a reload starts every view with an empty answer cache. No root, no sockets."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netbay.dns import records
from netbay.dns.freshness import CommitWatch
from netbay.dns.server import DnsServer
from netbay.model import READY, Container, Endpoint, Network, SubnetConfig
from netbay.store.base import Store
from netbay.store.sqlite import SQLiteStore

FRONT = Network(
    id="n-front", name="front", driver="bridge", created="",
    subnets=(SubnetConfig(IPv4Network("10.61.1.0/24"), IPv4Address("10.61.1.1")),),
    device="br-nb-absent",  # no such bridge: the server lists it as failed, opens nothing
)


def add_container(store: SQLiteStore, n: int) -> None:
    store.put_container(Container(
        id=f"c{n}", name=f"env{n}", hostname=f"host{n}", command=("true",), created="",
        netns=None, network_mode="private", state="running", config={},
    ))
    store.put_endpoint(Endpoint(
        id=f"e{n}", network_id=FRONT.id, container_id=f"c{n}", ifname="eth0",
        host_ifname=f"nbv{n}", mac=None, address=IPv4Interface(f"10.61.1.{n + 1}/24"),
        gateway=FRONT.subnets[0].gateway, aliases=(), state=READY,
    ))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "netbay.db"
    store = SQLiteStore(path)
    store.put_network(FRONT)
    add_container(store, 1)
    store.close()
    return path


def looked(watch: CommitWatch) -> bool:
    """One look as the server makes it: unchanged, or else SQLite is asked (seen updated)."""
    if watch.unchanged():
        return True
    watch.open()
    watch.seen = watch.look()
    return False


def test_the_header_moves_with_every_commit_and_only_then(db: Path) -> None:
    writer, reader = SQLiteStore(db), records.connect(str(db))
    records.data_version(reader)  # the reader's first transaction: the -shm file is made
    watch = CommitWatch(db)
    assert watch.look() is None
    assert not looked(watch)  # opened: SQLite asked
    assert looked(watch)
    assert looked(watch)
    for n in range(2, 40):
        add_container(writer, n)
        assert not looked(watch), f"commit {n} not seen"
        assert looked(watch)
        if n % 10 == 0:  # the next commit restarts the WAL from its first frame
            with sqlite3.connect(db) as raw:
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            looked(watch)
    watch.close()
    writer.close()
    reader.close()


def test_without_a_shm_file_every_look_asks_sqlite(tmp_path: Path) -> None:
    watch = CommitWatch(tmp_path / "none.db")
    assert [looked(watch) for _ in range(3)] == [False, False, False]
    assert watch.look() is None


def test_a_shm_file_made_anew_is_followed(db: Path, tmp_path: Path) -> None:
    reader = records.connect(str(db))
    records.data_version(reader)
    watch = CommitWatch(db)
    looked(watch)
    assert looked(watch)
    watch.recheck()  # the same file: nothing to do
    assert looked(watch)
    other = tmp_path / "other"
    other.write_bytes(watch.path.read_bytes())
    other.replace(watch.path)
    watch.recheck()
    assert watch.look() is None
    assert not looked(watch)
    assert looked(watch)
    watch.close()
    reader.close()


def test_the_server_asks_sqlite_only_after_a_commit_and_drops_its_answers(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    real = records.data_version

    def counted(store: Store) -> int:
        asked.append(1)
        return real(store)

    monkeypatch.setattr(records, "data_version", counted)
    server = DnsServer(db, port=0)
    zone = server.fresh()
    view = zone.askers[FRONT.id]["10.61.1.2"].view
    view.cache[b"question"] = b"answer"
    for _ in range(3):  # the -shm file is opened, then its header read
        assert server.fresh() is zone
    looked = len(asked)
    for _ in range(20):
        assert server.fresh() is zone
    assert len(asked) == looked
    writer = SQLiteStore(db)
    add_container(writer, 2)
    fresh = server.fresh()
    assert len(asked) == looked + 1
    assert fresh is not zone
    assert "env2" in fresh.askers[FRONT.id]["10.61.1.2"].view.names
    assert fresh.askers[FRONT.id]["10.61.1.2"].view.cache == {}
    assert server.fresh(reload=True) is not fresh  # the daemon's "sync": reloaded regardless
    assert server.failed == {"10.61.1.1": "its bridge br-nb-absent is missing"}
    writer.close()
    server.conn.close()
