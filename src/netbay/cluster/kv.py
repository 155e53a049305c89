"""What the etcd facade takes and returns: typed keys and values, transaction compares and
operations, watch events, lease and member status. No aetcd type leaves cluster/etcd.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

PUT, DELETE = "put", "delete"


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int  # 0: bound to none


@dataclass(frozen=True)
class Listing:
    """Every key under a prefix as of REVISION: a watch from REVISION + 1 misses nothing."""

    revision: int
    items: tuple[KeyValue, ...]


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # PUT or DELETE
    kv: KeyValue  # for DELETE: the key, an empty value and the deletion's revision

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True)
class LeaseTTL:
    remaining: int  # seconds; -1: the lease has expired or was revoked
    granted: int


@dataclass(frozen=True)
class MemberStatus:
    url: str
    healthy: bool
    error: str = ""
    member_id: int = 0
    leader: int = 0  # the leader's member id as this member knows it; 0: none
    revision: int = 0
    version: str = ""
    db_size: int = 0


# Transaction compares: all must hold for the operations to run.
@dataclass(frozen=True)
class Absent:
    key: str


@dataclass(frozen=True)
class Present:
    key: str


@dataclass(frozen=True)
class ModRevision:
    """The key was last written at REVISION (compare-and-swap on what was read)."""

    key: str
    revision: int


@dataclass(frozen=True)
class UnchangedSince:
    """No key under PREFIX was written (created or changed) after REVISION; deletions do not
    count."""

    prefix: str
    revision: int


Compare = Absent | Present | ModRevision | UnchangedSince


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False  # every key under KEY


Operation = Put | Delete


class KeyedState:
    """A pure picture of some of the record's keys, built from a listing and then kept
    current by the watch's events; put() and delete() are each picture's own (a key of no
    kind it keeps is ignored)."""

    def put(self, kv: KeyValue) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def load(self, items: Iterable[KeyValue]) -> Self:
        for kv in items:
            self.put(kv)
        return self

    def apply(self, event: WatchEvent) -> None:
        if event.kind == PUT:
            self.put(event.kv)
        else:
            self.delete(event.kv.key)
