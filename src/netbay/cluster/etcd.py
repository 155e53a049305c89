"""A synchronous facade over aetcd (which is asyncio): one event-loop thread owned by whoever
made the client (the daemon), typed calls, and failover between members inside each call.

A call tries one member for at most CALL_TIMEOUT; a member that does not answer or has no
leader (requests carry etcd's "hasleader" metadata, so a member cut off from the quorum
refuses rather than serving stale reads or parking writes) makes it go on to the next, for
up to RETRY_FOR in all; then EtcdUnavailableError names every endpoint and why (any other
error etcd answers with is an EtcdError; no aetcd or gRPC exception leaves). Writes that
may be retried after a lost reply are written by callers to be safe to run twice (a create
that finds its own key, a compare-and-swap re-read). Watches never fail on a member going
away: they resume on another from the next revision; only a compaction past that revision
ends one (RevisionCompactedError: the caller relists).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import aetcd
import grpc
from aetcd import rpc

from .endpoints import (
    EtcdConfig,
    EtcdError,
    EtcdUnavailableError,
    channel_credentials,
    describe_failure,
)
from .kv import (
    Absent,
    Compare,
    KeyValue,
    LeaseTTL,
    Listing,
    MemberStatus,
    ModRevision,
    Operation,
    Put,
    WatchEvent,
)
from .member import Member, to_compare, to_event, to_kv, to_operation

log = logging.getLogger("netbay.cluster")
T = TypeVar("T")
RETRYABLE = (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, TimeoutError)
# the same two failures from a stub called directly (aetcd translates the ones it makes)
RETRYABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in RETRYABLE_CODES
    return isinstance(error, RETRYABLE)
class WatchHandle:
    """A running watch. NEXT_REVISION is the first it has not delivered; CONNECTED is false
    while it looks for a member to resume on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, start_revision: int) -> None:
        self.next_revision = start_revision
        self.connected = False
        self._loop = loop
        self._task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)


def _deliver(callback: Callable[[T], None], value: T) -> None:
    try:
        callback(value)
    except Exception:
        log.exception("etcd watch callback failed")


class EtcdClient:
    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self.endpoints = config.parsed()
        self._credentials = channel_credentials(config)
        self._members: list[Member | None] = [None] * len(self.endpoints)
        self._current = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netbay-etcd",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._close_members())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _close_members(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for member in self._members:
            if member is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(member.close(), self.config.call_timeout)

    # -- running calls on the loop, with failover

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("EtcdClient called from its own event loop")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _call(self, op: Callable[[Member], Awaitable[T]], retry_for: float | None = None) -> T:
        return self._run(self._failover(op, retry_for or self.config.retry_for))

    def _member(self, index: int) -> Member:
        member = self._members[index]
        if member is None:
            member = self._members[index] = Member(self.endpoints[index], self._credentials)
        return member

    def _next_member(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.endpoints)

    async def _failover(self, op: Callable[[Member], Awaitable[T]], retry_for: float) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_for
        failures: dict[str, str] = {}
        for attempt in itertools.count(1):
            index = self._current
            budget = min(self.config.call_timeout, deadline - loop.time())
            try:
                return await asyncio.wait_for(op(self._member(index)), budget)
            except (aetcd.ClientError, grpc.aio.AioRpcError, TimeoutError) as exc:
                if not _retryable(exc):
                    url = self.endpoints[index].url
                    raise EtcdError(f"etcd at {url}: {describe_failure(exc, budget)}") from exc
                failures[self.endpoints[index].url] = describe_failure(exc, budget)
            self._next_member(index)
            rounds, tried_all = divmod(attempt, len(self.endpoints))
            pause = 0.05 * 2 ** min(rounds, 4) if tried_all == 0 else 0.0
            if loop.time() + pause >= deadline - 0.05:
                break
            await asyncio.sleep(pause)
        ordered = {e.url: failures[e.url] for e in self.endpoints if e.url in failures}
        raise EtcdUnavailableError(ordered)

    # -- keys

    def get(self, key: str) -> KeyValue | None:
        async def op(member: Member) -> KeyValue | None:
            found = await member.get(key.encode())
            return None if found is None else to_kv(found)

        return self._call(op)

    def get_prefix(self, prefix: str, keys_only: bool = False) -> Listing:
        async def op(member: Member) -> Listing:
            found = await member.get_prefix(prefix.encode(), keys_only=keys_only)
            return Listing(int(found.header.revision), tuple(to_kv(raw) for raw in found.kvs))

        return self._call(op)

    def revision(self, retry_for: float | None = None) -> int:
        """The store's current revision (RETRY_FOR: how long to go on trying)."""

        async def op(member: Member) -> int:
            await member.connect()
            reply = await member.kvstub.Range(rpc.RangeRequest(key=b"\0", count_only=True),
                                              metadata=member.metadata)
            return int(reply.header.revision)

        return self._call(op, retry_for)

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """The revision the write made."""

        async def op(member: Member) -> int:
            reply = await member.put(key.encode(), value, lease=lease)
            return int(reply.header.revision)

        return self._call(op)

    def delete(self, key: str, prefix: bool = False) -> int:
        """How many keys went (KEY itself, or every key under it)."""

        async def op(member: Member) -> int:
            if prefix:
                return int((await member.delete_prefix(key.encode())).deleted)
            return 0 if await member.delete(key.encode()) is None else 1

        return self._call(op)

    def txn(self, compares: Sequence[Compare], operations: Sequence[Operation]) -> bool:
        """Run OPERATIONS if every compare holds; whether they ran."""

        async def op(member: Member) -> bool:
            succeeded, _ = await member.transaction(
                compare=[to_compare(c) for c in compares],
                success=[to_operation(o) for o in operations], failure=[],
            )
            return bool(succeeded)

        return self._call(op)

    def create(self, key: str, value: bytes, lease: int = 0) -> bool:
        """Write KEY only if it does not exist."""
        return self.txn([Absent(key)], [Put(key, value, lease)])

    def compare_and_swap(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> bool:
        """Write KEY only if it is still as it was at MOD_REVISION."""
        return self.txn([ModRevision(key, mod_revision)], [Put(key, value, lease)])

    def compact(self, revision: int) -> None:
        async def op(member: Member) -> None:
            await member.compact(revision)

        self._call(op)

    # -- leases

    def grant(self, ttl: int) -> int:
        async def op(member: Member) -> int:
            return int((await member.lease(ttl)).id)

        return self._call(op)

    def keep_alive(self, lease: int, retry_for: float | None = None) -> int:
        """The lease's TTL after renewal; 0 if it had already expired (or was revoked)."""

        async def op(member: Member) -> int:
            reply = await member.refresh_lease(lease)
            return 0 if reply is None else int(reply.TTL)

        return self._call(op, retry_for)

    def time_to_live(self, lease: int) -> LeaseTTL:
        async def op(member: Member) -> LeaseTTL:
            reply = await member.get_lease_info(lease, keys=False)
            return LeaseTTL(int(reply.TTL), int(reply.grantedTTL))

        return self._call(op)

    def revoke(self, lease: int) -> bool:
        """Whether the lease was still there to revoke (its keys go with it)."""

        async def op(member: Member) -> bool:
            try:
                await member.revoke_lease(lease)
            except aetcd.ClientError as exc:
                if "lease not found" not in str(exc):
                    raise
                return False
            return True

        return self._call(op)

    # -- members

    def status(self) -> list[MemberStatus]:
        """Every endpoint asked once, each for at most CALL_TIMEOUT, in the order given."""
        return self._run(self._statuses())

    async def _statuses(self) -> list[MemberStatus]:
        return list(await asyncio.gather(*(self._status(i) for i in range(len(self.endpoints)))))

    async def _status(self, index: int) -> MemberStatus:
        url, member = self.endpoints[index].url, self._member(index)

        async def ask() -> Any:
            await member.connect()
            return await member.maintenancestub.Status(rpc.StatusRequest())

        try:
            reply = await asyncio.wait_for(ask(), self.config.call_timeout)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            return MemberStatus(url, False, describe_failure(exc, self.config.call_timeout))
        return MemberStatus(
            url, True, member_id=int(reply.header.member_id), leader=int(reply.leader),
            revision=int(reply.header.revision), version=str(reply.version),
            db_size=int(reply.dbSize),
        )

    # -- watches

    def watch_prefix(
        self, prefix: str, start_revision: int, on_event: Callable[[WatchEvent], None],
        on_compacted: Callable[[int], None],
    ) -> WatchHandle:
        """Every change under PREFIX from START_REVISION on, to ON_EVENT in order (called on
        the client's loop thread: it must not block). If history up to where the watch
        stands is compacted, ON_COMPACTED gets the compaction revision and the watch ends."""
        handle = WatchHandle(self._loop, start_revision)

        async def start() -> asyncio.Task[None]:
            return asyncio.create_task(self._watch(handle, prefix, on_event, on_compacted))

        handle._task = self._run(start())
        return handle

    async def _watch(
        self, handle: WatchHandle, prefix: str, on_event: Callable[[WatchEvent], None],
        on_compacted: Callable[[int], None],
    ) -> None:
        failures = 0  # in a row, since the watch last streamed
        while True:
            index = self._current
            try:
                await self._stream(handle, index, prefix, on_event)
            except aetcd.RevisionCompactedError as exc:
                handle.connected = False
                _deliver(on_compacted, int(exc.compacted_revision))
                return
            except Exception as exc:  # a watch outlives any failure but a compaction
                log.info("etcd watch on %s stopped (%s); resuming at revision %d",
                         self.endpoints[index].url, describe_failure(exc, 0), handle.next_revision)
            failures = 1 if handle.connected else failures + 1
            handle.connected = False
            self._next_member(index)
            await asyncio.sleep(min(0.05 * 2 ** failures, 1.0))

    async def _stream(
        self, handle: WatchHandle, index: int, prefix: str,
        on_event: Callable[[WatchEvent], None],
    ) -> None:
        watch = await asyncio.wait_for(
            self._member(index).watch_prefix(prefix.encode(), start_revision=handle.next_revision),
            self.config.call_timeout,
        )
        handle.connected = True
        try:
            async for raw in watch:
                event = to_event(raw)
                handle.next_revision = event.revision + 1
                _deliver(on_event, event)
        finally:
            with contextlib.suppress(Exception):
                await watch.cancel()
