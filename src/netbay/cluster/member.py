"""aetcd on one side, netbay's typed records (kv.py) on the other: aetcd's client for one
member, opened over TLS when credentials are given (aetcd itself only opens plain channels),
and the conversions both ways. Only etcd.py imports this module."""

from __future__ import annotations

from typing import Any

import aetcd
import grpc
from aetcd import rpc
from aetcd import transactions as etcd_txn

from .endpoints import CHANNEL_OPTIONS, Endpoint
from .kv import (
    DELETE,
    PUT,
    Absent,
    Compare,
    KeyValue,
    ModRevision,
    Operation,
    Present,
    Put,
    WatchEvent,
)

# etcd's "require leader" metadata: a member cut off from the quorum refuses requests (and
# ends watches) instead of serving stale reads or parking writes until it rejoins
HAS_LEADER = (("hasleader", "true"),)


class Member(aetcd.Client):  # type: ignore[misc]  # aetcd ships no type information
    def __init__(self, endpoint: Endpoint, credentials: grpc.ChannelCredentials | None):
        super().__init__(host=endpoint.host, port=endpoint.port)
        self._target = endpoint.target
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._credentials is not None:
            self.channel = grpc.aio.secure_channel(self._target, self._credentials,
                                                   CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.insecure_channel(self._target, CHANNEL_OPTIONS)
        self.metadata = HAS_LEADER
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.Watcher(rpc.WatchStub(self.channel), metadata=self.metadata)
        self._connected.set()


def to_kv(raw: Any) -> KeyValue:
    return KeyValue(raw.key.decode(), bytes(raw.value), int(raw.create_revision),
                    int(raw.mod_revision), int(raw.lease))


def to_event(raw: Any) -> WatchEvent:
    return WatchEvent(PUT if raw.kind == "PUT" else DELETE, to_kv(raw.kv))


def range_end(prefix: str) -> bytes:
    return bytes(aetcd.utils.prefix_range_end(prefix.encode()))


def to_compare(compare: Compare) -> Any:
    if isinstance(compare, Absent):
        return etcd_txn.Version(compare.key.encode()) == 0
    if isinstance(compare, Present):
        return etcd_txn.Version(compare.key.encode()) > 0
    if isinstance(compare, ModRevision):
        return etcd_txn.Mod(compare.key.encode()) == compare.revision
    return etcd_txn.Mod(compare.prefix.encode(), range_end(compare.prefix)) < compare.revision + 1


def to_operation(operation: Operation) -> Any:
    if isinstance(operation, Put):
        return etcd_txn.Put(operation.key.encode(), operation.value, lease=operation.lease)
    end = range_end(operation.key) if operation.prefix else None
    return etcd_txn.Delete(operation.key.encode(), range_end=end)
