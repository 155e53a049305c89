"""A record made by an older netbay opens in this one: the columns added since are added, with
the value every older row then holds, and the rows read back as before. No root."""

from __future__ import annotations

import contextlib
import sqlite3
from ipaddress import IPv4Address
from pathlib import Path

from netbay.name_entry import NameEntry
from netbay.store.base import RemoteName
from netbay.store.sqlite import SQLiteStore

# the containers table as netbay made it before the namespace identity columns
OLD_CONTAINERS = """
CREATE TABLE containers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, hostname TEXT NOT NULL, command TEXT NOT NULL,
    created TEXT NOT NULL, netns TEXT, network_mode TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start INTEGER NOT NULL, exit_code INTEGER, state TEXT NOT NULL, owner TEXT NOT NULL,
    config TEXT NOT NULL
)
"""


def test_an_older_record_gets_the_new_columns_and_reads_back(tmp_path: Path) -> None:
    db = tmp_path / "netbay.db"
    with contextlib.closing(sqlite3.connect(db)) as old:
        old.execute(OLD_CONTAINERS)
        old.execute(
            "INSERT INTO containers VALUES ('c1', 'cni-x', '', '[]', '2024-01-01',"
            " '/proc/7/ns/net', 'private', 0, 0, NULL, 'external', '',"
            " '{\"external_id\": \"x\"}')"
        )
        old.commit()
    store = SQLiteStore(db)
    (container,) = store.containers()
    assert (container.name, container.netns, container.config) == (
        "cni-x", "/proc/7/ns/net", {"external_id": "x"})
    assert (container.netns_dev, container.netns_ino, container.netns_pid_start) == (0, 0, 0)
    store.update_container("c1", netns_dev=4, netns_ino=4026532182, netns_pid_start=99)
    store.close()
    again = SQLiteStore(db)  # opening once more adds nothing twice
    found = again.find_container("c1")
    assert found is not None
    assert (found.netns_dev, found.netns_ino, found.netns_pid_start) == (4, 4026532182, 99)
    again.close()


def test_an_older_record_gets_the_remote_names_table(tmp_path: Path) -> None:
    db = tmp_path / "netbay.db"
    with contextlib.closing(sqlite3.connect(db)) as old:
        old.execute(OLD_CONTAINERS)
        old.commit()
    store = SQLiteStore(db)
    assert store.remote_names() == []
    entry = NameEntry("web", ("www",), IPv4Address("10.5.2.2"), "c-web", "node-b")
    store.replace_remote_names("n1", [entry])
    store.close()
    again = SQLiteStore(db)
    assert again.remote_names() == [RemoteName("n1", entry)]
    again.close()
