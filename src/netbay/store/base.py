"""The Store protocol: what the engine and the DNS server need from a record, whatever keeps
it; no other module runs SQL. SQLiteStore keeps this host's record (local networks,
containers, endpoints with their veths and leases, this node's kernel objects); MemoryStore
the same rows in a process's memory, for tests. A cluster-wide store (etcd: global networks,
nodes, address blocks, the endpoints of global networks) will sit beside SQLite behind this
protocol, in a composite routing by network scope: its transactions compare-and-swap on the
revisions they read (re-run when they lose), and its version() adds etcd's revision, kept
current by a watch (docs/design.md, "The record: host-local and cluster-wide").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

from ..ipam.leases import Leases
from ..model import READY, Container, Endpoint, Network
from ..name_entry import NameEntry


@dataclass(frozen=True)
class ContainerRow:
    """What DNS reads of a container."""

    id: str
    name: str
    hostname: str
    state: str
    dns: tuple[str, ...] = ()  # its --dns servers; empty: the host's


@dataclass(frozen=True)
class EndpointRow:
    """What DNS reads of an endpoint."""

    network_id: str
    container_id: str
    address: IPv4Address | None
    aliases: tuple[str, ...] = ()
    state: str = READY
    address6: IPv6Address | None = None


@dataclass(frozen=True)
class RemoteName:
    """A name another node publishes on a global network (netbay.cluster), by the id of the
    network (the same on every node)."""

    network_id: str
    entry: NameEntry


@dataclass(frozen=True)
class DnsRecords:
    """Everything DNS builds its zone from, as of one commit; endpoints in attach order."""

    networks: list[Network]
    containers: list[ContainerRow]
    endpoints: list[EndpointRow]
    remote_names: list[RemoteName] = field(default_factory=list)


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """An exclusive write transaction, serialised across threads and processes. Nested
        ones join the outermost (store/transactions.py); every write outside one is its own.
        A write that breaks a constraint (a taken id, name or address, an endpoint of a
        missing network or container, removing one an endpoint uses) raises ConflictError
        and changes nothing; the transaction around it goes on."""

    def close(self) -> None: ...

    def version(self) -> int:
        """A number that moves whenever a write was committed (by anyone) since it was last
        read. Cheap: the DNS server asks before each batch of queries."""

    # Lookups by REF: an exact id or name first (an id equal to another's name wins); else
    # a unique id prefix (ConflictError if it is not unique); else None.
    # update_*: FIELDS are the record's scalar fields (str, int, bool, None) and a
    # container's config; any other field is a TypeError. An unknown id changes nothing.

    # networks
    def networks(self) -> list[Network]:
        """By creation time, then name."""

    def find_network(self, ref: str) -> Network | None: ...
    def put_network(self, network: Network) -> None: ...
    def update_network(self, network_id: str, **fields: Any) -> None: ...
    def delete_network(self, network_id: str) -> None: ...

    # containers
    def containers(self) -> list[Container]:
        """By creation time, then the order they were put."""

    def find_container(self, ref: str) -> Container | None: ...
    def container_named(self, name: str) -> Container | None:
        """Exact name only (never an id prefix): for uniqueness checks."""

    def container_by_external_id(self, external_id: str) -> Container | None:
        """The sandbox record a runtime (CNI, podman) attached under its own container id."""

    def put_container(self, container: Container) -> None: ...
    def update_container(self, container_id: str, **fields: Any) -> None: ...
    def delete_container(self, container_id: str) -> None: ...

    # endpoints (an endpoint's address is its lease)
    def endpoints(
        self, network_id: str | None = None, container_id: str | None = None
    ) -> list[Endpoint]:
        """In the order they were put."""

    def put_endpoint(self, endpoint: Endpoint) -> None: ...
    def update_endpoint(self, endpoint_id: str, **fields: Any) -> None: ...
    def delete_endpoint(self, endpoint_id: str) -> None: ...
    def used_addresses(self, network_id: str, version: int = 4) -> set[int]:
        """The addresses of family VERSION the network's endpoints hold, as integers (a copy:
        IPAM's to keep)."""

    def leases(self, network_id: str, version: int = 4) -> Leases:
        """The same addresses, sorted and immutable: no copy, and the lowest free one is a
        binary search (what attach picks from)."""

    def endpoint_count(self, network_id: str) -> int: ...
    def containers_called(self, network_id: str, name: str) -> list[str]:
        """Names of the containers on a network called NAME (in any ASCII case)."""

    def containers_aliased(self, network_id: str, name: str) -> list[str]:
        """Names of the containers whose endpoint on a network has NAME (in any ASCII case)
        among its aliases, once per such alias."""

    # the names other nodes publish on global networks: a copy of the cluster's record, kept
    # for the DNS server (which reads only this store); no reference to the networks table,
    # since the cluster may know a network before this host has a record of it
    def replace_remote_names(self, network_id: str, entries: Sequence[NameEntry]) -> None:
        """NETWORK_ID's remote names are ENTRIES now, in that order (none: it has none)."""

    def remote_names(self) -> list[RemoteName]:
        """By network id, then in the order they were given."""

    def dns_records(self) -> DnsRecords:
        """What the DNS server builds its zone from, in one consistent read."""

    def dump(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every stored row of every table (networks, containers, endpoints, each by id;
        remote names as remote_names() orders them), by column name: for before/after
        comparisons and tests that read the record."""
