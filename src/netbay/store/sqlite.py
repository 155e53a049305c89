"""SQLite store: one file under the state root, WAL, exclusive write transactions.

BEGIN IMMEDIATE takes the database's write lock at the start of a transaction, so IPAM's
read-pick-insert is atomic across threads and processes alike. A read-only store (the DNS
server's) never blocks the daemon's writes: WAL readers see the last commit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from ipaddress import IPv4Address, IPv6Interface
from pathlib import Path
from typing import Any

from ..errors import ConflictError
from ..ipam.leases import Leases
from ..model import Container, Endpoint, Network
from . import rows as codec
from .base import ContainerRow, DnsRecords, EndpointRow
from .transactions import FlatTransactions

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, driver TEXT NOT NULL, created TEXT NOT NULL,
    subnets TEXT NOT NULL, internal INTEGER NOT NULL, attachable INTEGER NOT NULL,
    builtin INTEGER NOT NULL, options TEXT NOT NULL, labels TEXT NOT NULL, device TEXT,
    device_created INTEGER NOT NULL, mtu INTEGER, state TEXT NOT NULL, owner TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, hostname TEXT NOT NULL, command TEXT NOT NULL,
    created TEXT NOT NULL, netns TEXT, network_mode TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start INTEGER NOT NULL, exit_code INTEGER, state TEXT NOT NULL, owner TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY, network_id TEXT NOT NULL REFERENCES networks(id),
    container_id TEXT NOT NULL REFERENCES containers(id), ifname TEXT NOT NULL,
    host_ifname TEXT, mac TEXT, address INTEGER, prefixlen INTEGER, gateway TEXT,
    aliases TEXT NOT NULL, state TEXT NOT NULL, owner TEXT NOT NULL,
    UNIQUE (network_id, container_id), UNIQUE (container_id, ifname), UNIQUE (network_id, address)
);
CREATE INDEX IF NOT EXISTS endpoints_by_container ON endpoints(container_id);
-- dns_name_holders runs on every attach: without these it reads every endpoint of the
-- network (~0.5 ms at 1,000), with them a handful of rows
CREATE INDEX IF NOT EXISTS containers_by_lower_name ON containers(lower(name));
CREATE INDEX IF NOT EXISTS endpoints_with_aliases ON endpoints(network_id) WHERE aliases != '[]';
-- the sandboxes of runtimes (CNI, podman) are found by the runtime's own container id
CREATE INDEX IF NOT EXISTS containers_by_external_id
    ON containers(json_extract(config, '$.external_id'))
    WHERE json_extract(config, '$.external_id') IS NOT NULL;
-- the names other nodes publish (Store.replace_remote_names), also made on opening a record
-- an older netbay made
CREATE TABLE IF NOT EXISTS remote_names (
    network_id TEXT NOT NULL, node TEXT NOT NULL, container TEXT NOT NULL, name TEXT NOT NULL,
    aliases TEXT NOT NULL, address INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS remote_names_by_network ON remote_names(network_id);
"""
# Columns added since the first schema: (table, column, definition), added on opening to a
# database that lacks them (a new one, or one an older netbay made: its rows get the default)
ADDED_COLUMNS = (
    ("containers", "netns_dev", "INTEGER NOT NULL DEFAULT 0"),
    ("containers", "netns_ino", "INTEGER NOT NULL DEFAULT 0"),
    ("containers", "netns_pid_start", "INTEGER NOT NULL DEFAULT 0"),
    ("endpoints", "address6", "TEXT"),  # an IPv6 interface, as text ("fd00::2/64")
    ("endpoints", "gateway6", "TEXT"),
    ("remote_names", "address6", "TEXT"),  # an IPv6 address, as text (cluster dual stack)
)
# Made once the columns above exist: one endpoint per IPv6 address of a network
AFTER_COLUMNS = """
CREATE UNIQUE INDEX IF NOT EXISTS endpoints_by_address6 ON endpoints(network_id, address6)
    WHERE address6 IS NOT NULL
"""


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:
        # WAL readers do not wait for writers; a short timeout keeps a rare busy moment (WAL
        # recovery) from stalling every query behind it
        db = sqlite3.connect(
            path.absolute().as_uri() + "?mode=ro", uri=True, timeout=1.0,
            isolation_level=None, check_same_thread=False,
        )
        db.execute("PRAGMA query_only=ON")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (what SIGKILL tests); only power loss
        # could drop the last commits, and gc repairs the kernel side from what remains.
        db.execute("PRAGMA synchronous=NORMAL")
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SQLiteStore(codec.RowStore):
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._lock = threading.RLock()
        self._tx = FlatTransactions(self._lock, self._begin, self._commit, self._rollback)
        # Network id -> the addresses its endpoints hold. IPAM reads them on every attach and
        # fetching 1,000 rows costs ~0.8 ms, so they are kept here while PRAGMA data_version
        # (it moves when another connection commits) stays at _used_version. This
        # connection's own writes keep them current; a rollback or failed commit drops them.
        # Immutable (Leases): handed out as they are, replaced on each change.
        self._used: dict[tuple[str, int], Leases] = {}  # by (network id, family)
        self._used_version: int | None = None
        self._commits = 0  # ours: data_version counts only other connections' commits
        self._db = _connect(path, read_only)
        if not read_only:
            with self.transaction():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._add_missing_columns()
                self._db.execute(AFTER_COLUMNS)

    def _add_missing_columns(self) -> None:
        for table, column, definition in ADDED_COLUMNS:
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def transaction(self) -> AbstractContextManager[None]:
        return self._tx.join()

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except BaseException:
            self._used.clear()
            raise
        self._commits += 1

    def _rollback(self) -> None:
        self._used.clear()
        self._db.execute("ROLLBACK")

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction, so several queries see one commit (a write transaction of
        ours already is one)."""
        with self._lock:
            if self._tx.active:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0]) + self._commits

    def _query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, *args: Any) -> None:
        with self.transaction():
            try:
                self._db.execute(sql, args)
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"record conflict: {exc}") from exc

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._write(f"INSERT INTO {table} ({cols}) VALUES ({marks})", *row.values())

    def _update(self, table: str, record_id: str, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction():
            self._write(f"UPDATE {table} SET {sets} WHERE id = ?", *values.values(), record_id)
            if table == "endpoints" and "network_id" in values:
                self._used.clear()  # a lease moved between networks

    def _find(self, table: str, ref: str) -> sqlite3.Row | None:
        rows = self._query(f"SELECT * FROM {table} WHERE id = ? OR name = ?", ref, ref)
        if not rows and ref:
            rows = self._query(
                f"SELECT * FROM {table} WHERE id LIKE ? || '%' ESCAPE '\\'", _escape_like(ref)
            )
            if len(rows) > 1:
                raise ConflictError(f"{ref!r} matches more than one {table[:-1]}")
        if len(rows) > 1:  # a name equal to another object's id: the id wins, as in Docker
            rows = [r for r in rows if r["id"] == ref]
        return rows[0] if rows else None

    # networks
    def networks(self) -> list[Network]:
        return [
            codec.network(r) for r in self._query("SELECT * FROM networks ORDER BY created, name")
        ]

    def delete_network(self, network_id: str) -> None:
        self._write("DELETE FROM networks WHERE id = ?", network_id)
        for family in (4, 6):
            self._used.pop((network_id, family), None)

    # containers
    def containers(self) -> list[Container]:
        rows = self._query("SELECT * FROM containers ORDER BY created, rowid")
        return [codec.container(r) for r in rows]

    def container_named(self, name: str) -> Container | None:
        rows = self._query("SELECT * FROM containers WHERE name = ?", name)
        return codec.container(rows[0]) if rows else None

    def container_by_external_id(self, external_id: str) -> Container | None:
        rows = self._query(
            "SELECT * FROM containers WHERE json_extract(config, '$.external_id') = ?",
            external_id,
        )
        return codec.container(rows[0]) if rows else None

    def delete_container(self, container_id: str) -> None:
        self._write("DELETE FROM containers WHERE id = ?", container_id)

    # endpoints
    def endpoints(
        self, network_id: str | None = None, container_id: str | None = None
    ) -> list[Endpoint]:
        sql, args = "SELECT * FROM endpoints WHERE 1", list[str]()
        if network_id is not None:
            sql, args = sql + " AND network_id = ?", [*args, network_id]
        if container_id is not None:
            sql, args = sql + " AND container_id = ?", [*args, container_id]
        return [codec.endpoint(r) for r in self._query(sql + " ORDER BY rowid", *args)]

    def put_endpoint(self, endpoint: Endpoint) -> None:
        with self.transaction():
            self._insert("endpoints", codec.endpoint_row(endpoint))
            for family, address in ((4, endpoint.address), (6, endpoint.address6)):
                leases = self._used.get((endpoint.network_id, family))
                if address is not None and leases is not None:
                    self._used[(endpoint.network_id, family)] = leases.with_lease(int(address.ip))

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.transaction():
            rows = self._db.execute(
                "DELETE FROM endpoints WHERE id = ? RETURNING network_id, address, address6",
                (endpoint_id,),
            ).fetchall()
            for network_id, address, address6 in rows:
                for family, lease in ((4, address), (6, codec.lease6(address6))):
                    leases = self._used.get((network_id, family))
                    if leases is not None and lease is not None:
                        self._used[(network_id, family)] = leases.without(lease)

    def used_addresses(self, network_id: str, version: int = 4) -> set[int]:
        return set(self.leases(network_id, version))

    def leases(self, network_id: str, version: int = 4) -> Leases:
        with self._lock:
            data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if data_version != self._used_version:
                self._used.clear()
                self._used_version = data_version
            key = (network_id, version)
            if key not in self._used:
                column = "address6" if version == 6 else "address"
                rows = self._query(
                    f"SELECT {column} FROM endpoints WHERE network_id = ? AND {column} IS NOT NULL",
                    network_id,
                )
                found = (codec.lease6(r[0]) if version == 6 else r[0] for r in rows)
                self._used[key] = Leases(v for v in found if v is not None)
            return self._used[key]

    def endpoint_count(self, network_id: str) -> int:
        return int(
            self._query("SELECT count(*) FROM endpoints WHERE network_id = ?", network_id)[0][0]
        )

    def containers_called(self, network_id: str, name: str) -> list[str]:
        rows = self._query(
            "SELECT c.name FROM endpoints e JOIN containers c ON c.id = e.container_id"
            " WHERE e.network_id = ? AND lower(c.name) = lower(?)",
            network_id, name,
        )
        return [r[0] for r in rows]

    def containers_aliased(self, network_id: str, name: str) -> list[str]:
        rows = self._query(
            "SELECT c.name FROM endpoints e JOIN containers c ON c.id = e.container_id,"
            " json_each(e.aliases) a WHERE e.network_id = ? AND e.aliases != '[]'"
            " AND lower(a.value) = lower(?)",
            network_id, name,
        )
        return [r[0] for r in rows]

    # remote names
    def _replace_remote_rows(self, network_id: str, rows: list[dict[str, Any]]) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM remote_names WHERE network_id = ?", (network_id,))
            self._db.executemany(
                "INSERT INTO remote_names (network_id, node, container, name, aliases, address,"
                " address6) VALUES (:network_id, :node, :container, :name, :aliases, :address,"
                " :address6)", rows,
            )

    def _remote_rows(self) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM remote_names ORDER BY network_id, rowid")

    def dns_records(self) -> DnsRecords:
        with self._snapshot():
            networks = [codec.network(r) for r in self._db.execute("SELECT * FROM networks")]
            # plain tuples: ~1,000 rows each, read whenever anything changed
            cursor = self._db.cursor()
            cursor.row_factory = None
            containers = [
                ContainerRow(cid, name, hostname, state, tuple(json.loads(dns)) if dns else ())
                for cid, name, hostname, state, dns in cursor.execute(
                    "SELECT id, name, hostname, state, json_extract(config, '$.dns')"
                    " FROM containers"
                )
            ]
            endpoints = [
                EndpointRow(
                    nid, cid, IPv4Address(address) if address is not None else None,
                    tuple(json.loads(aliases)), state,
                    IPv6Interface(address6).ip if address6 else None,
                )
                for nid, cid, address, aliases, state, address6 in cursor.execute(
                    "SELECT network_id, container_id, address, aliases, state, address6"
                    " FROM endpoints ORDER BY rowid"
                )
            ]
            remote = self.remote_names()
        return DnsRecords(networks, containers, endpoints, remote)

    def dump(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for table in codec.TABLES:
            for row in self._query(f"SELECT * FROM {table} ORDER BY id"):
                yield table, dict(row)
        for row in self._remote_rows():
            yield "remote_names", dict(row)
