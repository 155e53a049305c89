"""MemoryStore: the Store protocol in a process's memory, for tests of the engine without
root or a file (as httpx's MockTransport stands in for the network).

It keeps the very rows SQLiteStore keeps (store/rows.py) and enforces the same constraints
with the same messages, in the order SQLite checks them; tests/unit/test_store_contract.py
runs every protocol method against both. What it cannot share is the file: its record lives
and dies with the object, and its transactions are exclusive across threads, not processes.

    host = Host(paths, store=MemoryStore())
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from ipaddress import IPv4Address, IPv6Interface
from typing import Any

from ..errors import ConflictError
from ..ipam.leases import Leases
from ..model import Container, Endpoint, Network
from . import rows as codec
from .base import ContainerRow, DnsRecords, EndpointRow
from .transactions import FlatTransactions

Table = dict[str, dict[str, Any]]  # id -> row, in the order put (SQLite's rowid)

# SQLite checks a table's unique keys newest first, and its foreign keys after them
_UNIQUE: dict[str, tuple[tuple[str, ...], ...]] = {
    "networks": (("name",), ("id",)),
    "containers": (("name",), ("id",)),
    "endpoints": (
        ("network_id", "address6"), ("network_id", "address"), ("container_id", "ifname"),
        ("network_id", "container_id"), ("id",),
    ),
}
_REFERENCES = {"network_id": "networks", "container_id": "containers"}  # endpoints'
_FOREIGN_KEY = "record conflict: FOREIGN KEY constraint failed"
# SQLite's lower() folds ASCII only
_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _fold(text: str) -> str:
    return text.translate(_FOLD)


class MemoryStore(codec.RowStore):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tx = FlatTransactions(self._lock, self._begin, self._commit, self._rollback)
        self._tables: dict[str, Table] = {table: {} for table in codec.TABLES}
        self._remote: list[dict[str, Any]] = []  # remote name rows, in the order put
        self._version = 0
        self._saved: tuple[dict[str, Table], list[dict[str, Any]], int] | None = None

    def close(self) -> None:
        """Nothing to release: the record lives as long as the object."""

    def transaction(self) -> AbstractContextManager[None]:
        return self._tx.join()

    def _begin(self) -> None:
        # rows are replaced, never changed in place: a copy of each table's index will do
        self._saved = (
            {t: dict(rows) for t, rows in self._tables.items()}, list(self._remote), self._version
        )

    def _commit(self) -> None:
        self._saved = None

    def _rollback(self) -> None:
        assert self._saved is not None
        (self._tables, self._remote, self._version), self._saved = self._saved, None

    def version(self) -> int:
        with self._lock:
            return self._version

    # --- writes: check every constraint, then change ---------------------------------------
    def _check_unique(self, table: str, row: dict[str, Any], replacing: str | None) -> None:
        for key in _UNIQUE[table]:
            value = tuple(row[column] for column in key)
            if None in value:
                continue  # NULLs are never equal
            for other in self._tables[table].values():
                if other["id"] != replacing and tuple(other[c] for c in key) == value:
                    columns = ", ".join(f"{table}.{column}" for column in key)
                    raise ConflictError(f"record conflict: UNIQUE constraint failed: {columns}")

    def _check_references(self, table: str, row: dict[str, Any]) -> None:
        if table == "endpoints" and any(
            row[column] not in self._tables[target] for column, target in _REFERENCES.items()
        ):
            raise ConflictError(_FOREIGN_KEY)

    def _check_unreferenced(self, table: str, record_id: str) -> None:
        if table == "endpoints":
            return
        column = "network_id" if table == "networks" else "container_id"
        if any(e[column] == record_id for e in self._tables["endpoints"].values()):
            raise ConflictError(_FOREIGN_KEY)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        with self.transaction():
            self._check_unique(table, row, None)
            self._check_references(table, row)
            self._tables[table][row["id"]] = row
            self._version += 1

    def _update(self, table: str, record_id: str, values: dict[str, Any]) -> None:
        with self.transaction():
            old = self._tables[table].get(record_id)
            if old is None:
                return
            row = {**old, **values}
            self._check_unique(table, row, record_id)
            self._check_references(table, row)
            if row["id"] != record_id:
                self._check_unreferenced(table, record_id)
            # re-keyed in place: an update keeps the row's place, as SQLite's rowid does
            self._tables[table] = {
                (row["id"] if key == record_id else key): (row if key == record_id else other)
                for key, other in self._tables[table].items()
            }
            self._version += 1

    def _delete(self, table: str, record_id: str) -> None:
        with self.transaction():
            if record_id not in self._tables[table]:
                return
            self._check_unreferenced(table, record_id)
            del self._tables[table][record_id]
            self._version += 1

    # --- reads ----------------------------------------------------------------------------
    def _rows(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._tables[table].values())

    def _find(self, table: str, ref: str) -> dict[str, Any] | None:
        with self._lock:
            rows = self._tables[table]
            exact = rows.get(ref) or next((r for r in rows.values() if r["name"] == ref), None)
            if exact is not None or not ref:
                return exact
            prefix = _fold(ref)
            found = [r for r in rows.values() if _fold(r["id"]).startswith(prefix)]
            if len(found) > 1:
                raise ConflictError(f"{ref!r} matches more than one {table[:-1]}")
            return found[0] if found else None

    # networks
    def networks(self) -> list[Network]:
        rows = sorted(self._rows("networks"), key=lambda r: (r["created"], r["name"]))
        return [codec.network(r) for r in rows]

    def delete_network(self, network_id: str) -> None:
        self._delete("networks", network_id)

    # containers
    def containers(self) -> list[Container]:
        rows = sorted(self._rows("containers"), key=lambda r: r["created"])
        return [codec.container(r) for r in rows]

    def container_named(self, name: str) -> Container | None:
        rows = [r for r in self._rows("containers") if r["name"] == name]
        return codec.container(rows[0]) if rows else None

    def container_by_external_id(self, external_id: str) -> Container | None:
        rows = [
            r for r in self._rows("containers")
            if json.loads(r["config"]).get("external_id") == external_id
        ]
        return codec.container(rows[0]) if rows else None

    def delete_container(self, container_id: str) -> None:
        self._delete("containers", container_id)

    # endpoints
    def _endpoint_rows(self, network_id: str) -> list[dict[str, Any]]:
        return [r for r in self._rows("endpoints") if r["network_id"] == network_id]

    def endpoints(
        self, network_id: str | None = None, container_id: str | None = None
    ) -> list[Endpoint]:
        return [
            codec.endpoint(r) for r in self._rows("endpoints")
            if network_id in (None, r["network_id"]) and container_id in (None, r["container_id"])
        ]

    def put_endpoint(self, endpoint: Endpoint) -> None:
        self._insert("endpoints", codec.endpoint_row(endpoint))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._delete("endpoints", endpoint_id)

    def used_addresses(self, network_id: str, version: int = 4) -> set[int]:
        rows = self._endpoint_rows(network_id)
        if version == 6:
            return {codec.lease6(r["address6"]) or 0 for r in rows if r["address6"]}
        return {r["address"] for r in rows if r["address"] is not None}

    def leases(self, network_id: str, version: int = 4) -> Leases:
        return Leases(self.used_addresses(network_id, version))

    def endpoint_count(self, network_id: str) -> int:
        return len(self._endpoint_rows(network_id))

    def _names_on(self, network_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(container name, endpoint row) for each endpoint of the network."""
        with self._lock:
            containers = self._tables["containers"]
            endpoints = self._endpoint_rows(network_id)
            return [(containers[e["container_id"]]["name"], e) for e in endpoints]

    def containers_called(self, network_id: str, name: str) -> list[str]:
        return [held for held, _ in self._names_on(network_id) if _fold(held) == _fold(name)]

    def containers_aliased(self, network_id: str, name: str) -> list[str]:
        return [
            held for held, e in self._names_on(network_id)
            for alias in json.loads(e["aliases"]) if _fold(alias) == _fold(name)
        ]

    # remote names
    def _replace_remote_rows(self, network_id: str, rows: list[dict[str, Any]]) -> None:
        with self.transaction():
            self._remote = [r for r in self._remote if r["network_id"] != network_id] + rows
            self._version += 1

    def _remote_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self._remote, key=lambda r: str(r["network_id"]))  # stable

    def dns_records(self) -> DnsRecords:
        with self._lock:
            return DnsRecords(
                [codec.network(r) for r in self._rows("networks")],
                [
                    ContainerRow(
                        r["id"], r["name"], r["hostname"], r["state"],
                        tuple(json.loads(r["config"]).get("dns") or ()),
                    )
                    for r in self._rows("containers")
                ],
                [
                    EndpointRow(
                        r["network_id"], r["container_id"],
                        None if r["address"] is None else IPv4Address(r["address"]),
                        tuple(json.loads(r["aliases"])), r["state"],
                        IPv6Interface(r["address6"]).ip if r["address6"] else None,
                    )
                    for r in self._rows("endpoints")
                ],
                self.remote_names(),
            )

    def dump(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._lock:
            tables = {t: sorted(rows.items()) for t, rows in self._tables.items()}
        for table in codec.TABLES:
            for _, row in tables[table]:
                yield table, dict(row)
        for row in self._remote_rows():
            yield "remote_names", dict(row)
