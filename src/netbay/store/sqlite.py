"""SQLite store: one file under the state root, WAL, exclusive write transactions.

BEGIN IMMEDIATE takes the database's write lock at the start of a transaction, so IPAM's
read-pick-insert is atomic across threads and processes alike.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from ..errors import ConflictError
from ..model import Container, Endpoint, Network, SubnetConfig

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
"""


def _subnets_to_json(subnets: tuple[SubnetConfig, ...]) -> str:
    return json.dumps(
        [
            {
                "subnet": str(s.subnet),
                "gateway": str(s.gateway) if s.gateway else None,
                "ip_range": str(s.ip_range) if s.ip_range else None,
                "aux": {k: str(v) for k, v in s.aux_addresses.items()},
            }
            for s in subnets
        ]
    )


def _subnets_from_json(raw: str) -> tuple[SubnetConfig, ...]:
    return tuple(
        SubnetConfig(
            IPv4Network(s["subnet"]),
            IPv4Address(s["gateway"]) if s["gateway"] else None,
            IPv4Network(s["ip_range"]) if s["ip_range"] else None,
            {k: IPv4Address(v) for k, v in s["aux"].items()},
        )
        for s in json.loads(raw)
    )


def _network_row(n: Network) -> dict[str, Any]:
    row = {f.name: getattr(n, f.name) for f in fields(n)}
    row["subnets"] = _subnets_to_json(n.subnets)
    row["options"] = json.dumps(dict(n.options))
    row["labels"] = json.dumps(dict(n.labels))
    return row


def _network(row: sqlite3.Row) -> Network:
    d = dict(row)
    d["subnets"] = _subnets_from_json(d["subnets"])
    d["options"] = json.loads(d["options"])
    d["labels"] = json.loads(d["labels"])
    for flag in ("internal", "attachable", "builtin", "device_created"):
        d[flag] = bool(d[flag])
    return Network(**d)


def _container_row(c: Container) -> dict[str, Any]:
    row = asdict(c)
    row["command"] = json.dumps(list(c.command))
    row["config"] = json.dumps(dict(c.config))
    return row


def _container(row: sqlite3.Row) -> Container:
    d = dict(row)
    d["command"] = tuple(json.loads(d["command"]))
    d["config"] = json.loads(d["config"])
    return Container(**d)


def _endpoint_row(e: Endpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "network_id": e.network_id,
        "container_id": e.container_id,
        "ifname": e.ifname,
        "host_ifname": e.host_ifname,
        "mac": e.mac,
        "address": int(e.address.ip) if e.address else None,
        "prefixlen": e.address.network.prefixlen if e.address else None,
        "gateway": str(e.gateway) if e.gateway else None,
        "aliases": json.dumps(list(e.aliases)),
        "state": e.state,
        "owner": e.owner,
    }


def _endpoint(row: sqlite3.Row) -> Endpoint:
    address = None
    if row["address"] is not None:
        address = IPv4Interface((IPv4Address(row["address"]), row["prefixlen"]))
    return Endpoint(
        id=row["id"],
        network_id=row["network_id"],
        container_id=row["container_id"],
        ifname=row["ifname"],
        host_ifname=row["host_ifname"],
        mac=row["mac"],
        address=address,
        gateway=IPv4Address(row["gateway"]) if row["gateway"] else None,
        aliases=tuple(json.loads(row["aliases"])),
        state=row["state"],
        owner=row["owner"],
    )


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        # Network id -> the addresses its endpoints hold. IPAM reads them on every attach and
        # fetching 1,000 rows costs ~0.8 ms, so they are kept here while PRAGMA data_version
        # (it moves when another connection commits) stays at _used_version. This
        # connection's own writes keep them current; a rollback or failed commit drops them.
        self._used: dict[str, set[int]] = {}
        self._used_version: int | None = None
        self._db = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (what SIGKILL tests); only power loss
        # could drop the last commits, and gc repairs the kernel side from what remains.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._used.clear()
                self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except BaseException:
                    self._used.clear()
                    raise
            finally:
                self._depth = 0

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

    def _update(self, table: str, key: str, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self._write(f"UPDATE {table} SET {sets} WHERE id = ?", *values.values(), key)

    def _find(self, table: str, ref: str) -> sqlite3.Row | None:
        rows = self._query(f"SELECT * FROM {table} WHERE id = ? OR name = ?", ref, ref)
        if not rows and ref:
            rows = self._query(f"SELECT * FROM {table} WHERE id LIKE ? || '%'", ref.lower())
            if len(rows) > 1:
                raise ConflictError(f"{ref!r} matches more than one {table[:-1]}")
        if len(rows) > 1:  # a name equal to another object's id: the id wins, as in Docker
            rows = [r for r in rows if r["id"] == ref]
        return rows[0] if rows else None

    # networks
    def networks(self) -> list[Network]:
        return [_network(r) for r in self._query("SELECT * FROM networks ORDER BY created, name")]

    def find_network(self, ref: str) -> Network | None:
        row = self._find("networks", ref)
        return None if row is None else _network(row)

    def put_network(self, network: Network) -> None:
        self._insert("networks", _network_row(network))

    def update_network(self, network_id: str, **values: Any) -> None:
        self._update("networks", network_id, values)

    def delete_network(self, network_id: str) -> None:
        self._write("DELETE FROM networks WHERE id = ?", network_id)
        self._used.pop(network_id, None)

    # containers
    def containers(self) -> list[Container]:
        return [_container(r) for r in self._query("SELECT * FROM containers ORDER BY created")]

    def find_container(self, ref: str) -> Container | None:
        row = self._find("containers", ref)
        return None if row is None else _container(row)

    def container_named(self, name: str) -> Container | None:
        """Exact name only (never an id prefix): for uniqueness checks."""
        rows = self._query("SELECT * FROM containers WHERE name = ?", name)
        return _container(rows[0]) if rows else None

    def container_by_external_id(self, external_id: str) -> Container | None:
        rows = self._query(
            "SELECT * FROM containers WHERE json_extract(config, '$.external_id') = ?",
            external_id,
        )
        return _container(rows[0]) if rows else None

    def put_container(self, container: Container) -> None:
        self._insert("containers", _container_row(container))

    def update_container(self, container_id: str, **values: Any) -> None:
        if "config" in values:
            values["config"] = json.dumps(dict(values["config"]))
        self._update("containers", container_id, values)

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
        return [_endpoint(r) for r in self._query(sql + " ORDER BY rowid", *args)]

    def put_endpoint(self, endpoint: Endpoint) -> None:
        with self.transaction():
            self._insert("endpoints", _endpoint_row(endpoint))
            if endpoint.address is not None and endpoint.network_id in self._used:
                self._used[endpoint.network_id].add(int(endpoint.address.ip))

    def update_endpoint(self, endpoint_id: str, **values: Any) -> None:
        with self.transaction():
            self._update("endpoints", endpoint_id, values)
            if values.keys() & {"network_id", "address"}:
                self._used.clear()

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.transaction():
            rows = self._db.execute(
                "DELETE FROM endpoints WHERE id = ? RETURNING network_id, address", (endpoint_id,)
            ).fetchall()
            for network_id, address in rows:
                self._used.get(network_id, set()).discard(address)

    def used_addresses(self, network_id: str) -> set[int]:
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._used_version:
                self._used.clear()
                self._used_version = version
            if network_id not in self._used:
                rows = self._query(
                    "SELECT address FROM endpoints WHERE network_id = ? AND address IS NOT NULL",
                    network_id,
                )
                self._used[network_id] = {r[0] for r in rows}
            return set(self._used[network_id])

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

    def dump(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        for table in ("networks", "containers", "endpoints"):
            for row in self._query(f"SELECT * FROM {table} ORDER BY id"):
                yield table, tuple(row)
