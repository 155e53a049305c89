"""Records as stored rows: one column per scalar field, JSON for lists and mappings, an
endpoint's address as an integer and a prefix length. SQLite keeps these rows in its tables
and MemoryStore in dicts, so both read back, dump and compare exactly alike.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import fields
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address, ip_network
from typing import Any, Protocol

from ..model import Container, Endpoint, Network, SubnetConfig
from ..name_entry import NameEntry
from .base import RemoteName

TABLES = ("networks", "containers", "endpoints")


class Row(Protocol):
    """A stored row by column name: a dict, or an sqlite3.Row."""

    def keys(self) -> Iterable[str]: ...
    def __getitem__(self, column: str) -> Any: ...


# Fields kept as JSON or split into columns: update_* cannot set them (a runtime's config
# and a network's subnets excepted, which update_container and update_network encode).
_ENCODED = frozenset({
    "subnets", "options", "labels", "command", "address", "gateway", "aliases", "address6",
    "gateway6",
})
UPDATABLE = {
    table: frozenset(f.name for f in fields(record)) - _ENCODED | extra
    for table, record, extra in zip(
        TABLES, (Network, Container, Endpoint), ({"subnets"}, set(), set()), strict=True)
}


def update_values(table: str, values: dict[str, Any]) -> dict[str, Any]:
    """The columns an update_* call sets: scalar fields as they are, a container's config as
    JSON. A field stored otherwise, or none at all, is refused before anything changes."""
    refused = values.keys() - UPDATABLE[table]
    if refused or not values:
        raise TypeError(f"cannot update {table[:-1]} fields {sorted(refused)}")
    if "config" in values:
        values = {**values, "config": json.dumps(dict(values["config"]))}
    if "subnets" in values:
        values = {**values, "subnets": _subnets_to_json(tuple(values["subnets"]))}
    return values


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


@functools.lru_cache(maxsize=1024)
def _subnets_from_json(raw: str) -> tuple[SubnetConfig, ...]:
    """Parsed once per distinct text (the configs are frozen; their aux maps are never
    changed in place): every attach reads its network's row, and parsing its addresses cost
    more than the query (a dual-stack network's twice an IPv4 one's), besides the
    addresses' cached properties (a subnet's broadcast address, which IPAM asks)."""
    return tuple(
        SubnetConfig(
            ip_network(s["subnet"]),
            ip_address(s["gateway"]) if s["gateway"] else None,
            ip_network(s["ip_range"]) if s["ip_range"] else None,
            {k: ip_address(v) for k, v in s["aux"].items()},
        )
        for s in json.loads(raw)
    )


def _fields(record: Network | Container) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def network_row(n: Network) -> dict[str, Any]:
    row = _fields(n)
    row["subnets"] = _subnets_to_json(n.subnets)
    row["options"] = json.dumps(dict(n.options))
    row["labels"] = json.dumps(dict(n.labels))
    return row


def network(row: Row) -> Network:
    d = dict(row)
    d["subnets"] = _subnets_from_json(d["subnets"])
    d["options"] = json.loads(d["options"])
    d["labels"] = json.loads(d["labels"])
    for flag in ("internal", "attachable", "builtin", "device_created"):
        d[flag] = bool(d[flag])
    return Network(**d)


def container_row(c: Container) -> dict[str, Any]:
    row = _fields(c)  # not asdict, which deep-copies: a MappingProxyType config cannot be
    row["command"] = json.dumps(list(c.command))
    row["config"] = json.dumps(dict(c.config))
    return row


def container(row: Row) -> Container:
    d = dict(row)
    d["command"] = tuple(json.loads(d["command"]))
    d["config"] = json.loads(d["config"])
    return Container(**d)


def endpoint_row(e: Endpoint) -> dict[str, Any]:
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
        # text: an IPv6 address is wider than SQLite's integers
        "address6": str(e.address6) if e.address6 else None,
        "gateway6": str(e.gateway6) if e.gateway6 else None,
    }


def endpoint(row: Row) -> Endpoint:
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
        address6=IPv6Interface(row["address6"]) if row["address6"] else None,
        gateway6=IPv6Address(row["gateway6"]) if row["gateway6"] else None,
    )


def lease6(address6: str | None) -> int | None:
    """An endpoint row's IPv6 lease as an integer (what IPAM picks among)."""
    return None if address6 is None else int(IPv6Interface(address6).ip)


def remote_name_row(network_id: str, entry: NameEntry) -> dict[str, Any]:
    return {
        "network_id": network_id,
        "node": entry.node,
        "container": entry.container,
        "name": entry.name,
        "aliases": json.dumps(list(entry.aliases)),
        "address": int(entry.address),
        "address6": None if entry.address6 is None else str(entry.address6),
    }


def remote_name(row: Row) -> RemoteName:
    return RemoteName(row["network_id"], NameEntry(
        name=row["name"], aliases=tuple(json.loads(row["aliases"])),
        address=IPv4Address(row["address"]), container=row["container"], node=row["node"],
        address6=IPv6Address(row["address6"]) if row["address6"] else None,
    ))


class RowStore(ABC):
    """The Store methods that only turn records into rows and back, the same for every store
    that keeps these rows; each store finds, inserts and updates rows its own way."""

    @abstractmethod
    def _find(self, table: str, ref: str) -> Row | None:
        """By exact id, exact name (the id wins), then unique id prefix."""

    @abstractmethod
    def _insert(self, table: str, row: dict[str, Any]) -> None: ...

    @abstractmethod
    def _update(self, table: str, record_id: str, values: dict[str, Any]) -> None:
        """Set VALUES (columns, from update_values) on the row with that id, if any."""

    @abstractmethod
    def _replace_remote_rows(self, network_id: str, rows: list[dict[str, Any]]) -> None:
        """NETWORK_ID's remote name rows are ROWS now, in one write."""

    @abstractmethod
    def _remote_rows(self) -> Sequence[Row]:
        """By network id, then in the order put."""

    def replace_remote_names(self, network_id: str, entries: Sequence[NameEntry]) -> None:
        self._replace_remote_rows(network_id, [remote_name_row(network_id, e) for e in entries])

    def remote_names(self) -> list[RemoteName]:
        return [remote_name(row) for row in self._remote_rows()]

    def find_network(self, ref: str) -> Network | None:
        row = self._find("networks", ref)
        return None if row is None else network(row)

    def put_network(self, network: Network) -> None:
        self._insert("networks", network_row(network))

    def update_network(self, network_id: str, **fields: Any) -> None:
        self._update("networks", network_id, update_values("networks", fields))

    def find_container(self, ref: str) -> Container | None:
        row = self._find("containers", ref)
        return None if row is None else container(row)

    def put_container(self, container: Container) -> None:
        self._insert("containers", container_row(container))

    def update_container(self, container_id: str, **fields: Any) -> None:
        self._update("containers", container_id, update_values("containers", fields))

    def update_endpoint(self, endpoint_id: str, **fields: Any) -> None:
        self._update("endpoints", endpoint_id, update_values("endpoints", fields))
