"""netbay's DNS server: one process in the host's namespace (an asyncio loop and a thread per
UDP socket), started and supervised by the daemon (supervisor.py), answering on the gateway
addresses (IPv4 and IPv6) of each network in use.

- Listening: UDP and TCP on GATEWAY:53, each socket bound to its bridge (SO_BINDTODEVICE), so
  only packets that came in through that bridge reach it (a routed network has no bridge: its
  gateway is held on lo and its sockets take any device); and a query is answered only when
  its source is an endpoint of that network in the record. Anything else (the LAN routing to
  the gateway, the host itself, an unknown address) is dropped: not an open resolver.
- Freshness: the record is read-only here. Before answering, each received packet is checked
  against the record (freshness.py: the WAL-index header, then SQLite's `PRAGMA
  data_version` when it moved): a change reloads the zone, whose views start with empty
  answer caches, so no query received after a change is answered from the state before it.
- Hot path: one thread per UDP socket, a burst of queries per recvmmsg (udp.py); an answer built
  for the same query bytes and view is reused with the new ID. TCP, forwarding and the
  daemon's control socket run on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ..runtime.files import host_nameservers
from . import records
from .forward import forward
from .freshness import CommitWatch
from .listen import PORT, Key, Pair, key_of, open_socket
from .mmsg import Peer
from .records import Asker, ListenPoint, Zone
from .resolver import Forward, resolve
from .udp import UdpListener

log = logging.getLogger("netbay.dns")

CACHE_MAX = 20_000  # cached answers per view
MAX_FORWARDS = 512  # forwarded queries in flight; beyond, queries are dropped (clients retry)
MAX_TCP = 256
TCP_IDLE = 10.0
RETRY = 0.5  # seconds between attempts to bind a listen point that failed
RESOLV_CHECK = 1.0  # seconds between looks at the host's resolv.conf


class DnsServer:
    def __init__(self, db: Path, control: socket.socket | None = None, port: int = PORT,
                 adopted: dict[Key, Pair] | None = None) -> None:
        self.conn = records.connect(str(db))
        self._commits = CommitWatch(db)
        self._reloading = threading.Lock()
        self.control = control
        self.port = port
        self.version: int | None = None
        self.zone = Zone()
        self.upstream: tuple[str, ...] = ()
        self._resolv_stamp: tuple[float, int] | None = None
        self._sockets: dict[Key, tuple[UdpListener, socket.socket, str]] = {}
        # bound by the daemon before this process started (listen.py): used, not bound again
        self._adopted = dict(adopted or {})
        self.failed: dict[str, str] = {}  # listen address -> why it is not served
        self._forwards = 0
        self._tcp = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    # --- the record -----------------------------------------------------------------------
    def fresh(self, *, reload: bool = False) -> Zone:
        """The zone as of now: reloaded if the daemon committed anything since SQLite was
        last asked (RELOAD: in any case). Called from every UDP thread and the event loop."""
        header = self._commits.look()  # before SQLite is asked: a commit after it shows next
        if header is not None and header == self._commits.seen and not reload:
            return self.zone
        with self._reloading:
            moved = self._reload(force=reload)
            self._commits.seen = header  # after self.zone: a reader seeing it sees the zone
        if moved and {_safe_key(p) for p in self.zone.listen} != set(self._sockets):
            self._on_loop(self.reconcile)
        return self.zone

    def _reload(self, force: bool) -> bool:
        """Under _reloading: load the zone if the record moved; whether it did."""
        self._commits.open()
        version = records.data_version(self.conn)
        if version == self.version and not force:
            return False
        self.zone = records.load(self.conn)  # new views, each with an empty answer cache
        self.version = version
        # The zone lives until the next change and holds no cycles: keep the collector
        # from walking it again and again (its full passes were the latency tail).
        gc.freeze()
        self._refresh_upstream(force=True)
        return True

    def _on_loop(self, call: Callable[[], object]) -> None:
        """CALL now when on the event loop's thread (or with no loop), else soon on it."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            call()
        else:
            self._loop.call_soon_threadsafe(call)

    def _refresh_upstream(self, force: bool = False) -> None:
        """The host's resolvers, loopback ones too: we ask them from the host's namespace.
        Never ourselves."""
        path = os.environ.get("NETBAY_RESOLV_CONF") or "/etc/resolv.conf"
        try:
            st = os.stat(path)
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._resolv_stamp and not force:
            return
        self._resolv_stamp = stamp
        ours = {str(p.address) for p in self.zone.listen}
        servers = host_nameservers(path, include_loopback=True)
        self.upstream = tuple(s for s in servers if s not in ours)

    # --- sockets --------------------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Open sockets for new listen points, close those no longer wanted; the bound
        addresses. A point that cannot be bound is noted in `failed` and tried again."""
        wanted = self._wanted()
        for key in set(self._sockets) - set(wanted):
            self._close(key)
        for key, point in wanted.items():
            if key not in self._sockets:
                self._listen(key, point)
        for udp, tcp in self._adopted.values():  # for points the record no longer has
            udp.close()
            tcp.close()
        self._adopted.clear()
        if self.failed and self._loop is not None:
            self._loop.call_later(RETRY, self._retry)
        return self.listening()

    def listening(self) -> list[str]:
        return sorted(key[0] for key in self._sockets)

    def _wanted(self) -> dict[Key, ListenPoint]:
        wanted: dict[Key, ListenPoint] = {}
        self.failed = {}
        for point in self.zone.listen:
            try:
                wanted[key_of(point)] = point
            except OSError:
                log.warning("bridge %s of %s is missing", point.device, point.address)
                self.failed[str(point.address)] = f"its bridge {point.device} is missing"
        return wanted

    def _close(self, key: Key) -> None:
        udp, tcp, _ = self._sockets.pop(key)
        udp.stop()
        if self._loop is not None:
            self._loop.remove_reader(tcp.fileno())
        tcp.close()

    def _listen(self, key: Key, point: ListenPoint) -> None:
        pair = self._adopted.pop(key, None) or self._open(key, point)
        if pair is None:
            return
        udp, tcp = pair
        tcp.setblocking(False)
        listener = UdpListener(udp, point.network_id, self)
        self._sockets[key] = (listener, tcp, point.network_id)
        listener.start()
        if self._loop is not None:
            self._loop.add_reader(tcp.fileno(), self._on_accept, tcp, point.network_id)

    def _open(self, key: Key, point: ListenPoint) -> Pair | None:
        address, device = key[0], key[1]
        opened: list[socket.socket] = []
        for kind, proto in ((socket.SOCK_DGRAM, "udp"), (socket.SOCK_STREAM, "tcp")):
            try:
                opened.append(open_socket(point, kind, self.port))
            except OSError as exc:
                for sock in opened:
                    sock.close()
                log.warning("cannot listen on %s %s:%d (%s): %s", proto, address, self.port,
                            device or "any device", exc)
                self.failed[address] = f"{proto} {address}:{self.port}: {exc.strerror or exc}"
                return None
        return opened[0], opened[1]

    def _retry(self) -> None:
        if self.failed:
            self.reconcile()

    def close_sockets(self) -> None:
        self.zone = Zone()
        self.reconcile()

    # --- UDP: what the listeners (udp.py) do not answer themselves -------------------
    def answer(
        self, sock: socket.socket, data: bytes, asker: Asker, zone: Zone, peer: Peer
    ) -> bytes | None:
        """A query not answered before for this view (on a UDP listener's thread): the answer
        to send (kept for the next same query when it may be), or None when it is dropped or
        forwarded."""
        decision = resolve(data, asker, zone, self.upstream)
        if decision is None:
            return None
        if isinstance(decision, Forward):
            self._on_loop(lambda: self._forward_udp(sock, data, decision, peer))
            return None
        if decision.cacheable:
            cache = asker.view.cache
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[data[2:]] = decision.packet[2:]
        return decision.packet

    def _forward_udp(
        self, sock: socket.socket, data: bytes, decision: Forward, peer: Peer
    ) -> None:
        if self._forwards >= MAX_FORWARDS:
            return
        self._forwards += 1

        async def relay() -> None:
            try:
                answer = await forward(data, decision.query, decision.servers)
                with contextlib.suppress(OSError):
                    sock.sendto(answer, peer)
            finally:
                self._forwards -= 1

        self._spawn(relay())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- TCP --------------------------------------------------------------------------------
    def _on_accept(self, listener: socket.socket, network_id: str) -> None:
        for _ in range(16):
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            if self._tcp >= MAX_TCP or peer[0] not in self.fresh().askers.get(network_id, {}):
                conn.close()
                continue
            conn.setblocking(False)
            self._tcp += 1
            self._spawn(self._serve_tcp(conn, network_id, peer[0]))

    async def _serve_tcp(self, conn: socket.socket, network_id: str, ip: str) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                zone = self.fresh()
                asker = zone.askers.get(network_id, {}).get(ip)
                if asker is None:
                    return
                decision = resolve(data, asker, zone, self.upstream, udp=False)
                if decision is None:
                    return
                if isinstance(decision, Forward):
                    out = await forward(data, decision.query, decision.servers, tcp=True)
                else:
                    out = decision.packet
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tcp -= 1
            if writer is not None:
                writer.close()
            else:
                conn.close()

    # --- control and life -------------------------------------------------------------------
    def _on_control(self) -> None:
        """From the daemon: b"sync" (reload now, then say which addresses are served) or
        b"health" (what is served and what cannot be, as it stands: read on the loop that
        answers the queries, so a reply also says the loop is not stuck); an empty read
        means the daemon is gone, and so are we."""
        assert self.control is not None
        try:
            message = self.control.recv(64)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if not message:
            self._shutdown()
            return
        if message == b"sync":
            self.fresh(reload=True)
            reply = "ok " + ",".join(self.reconcile())
        elif message == b"health":
            reply = "health " + json.dumps({"listening": self.listening(), "failed": self.failed})
        else:
            return
        with contextlib.suppress(OSError):
            self.control.send(reply.encode())

    def _shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _tick(self) -> None:
        self._refresh_upstream()
        self._commits.recheck()
        assert self._loop is not None
        self._loop.call_later(RESOLV_CHECK, self._tick)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop = asyncio.Event()
        self.fresh()
        bound = self.reconcile()
        self._tick()
        if self.control is not None:
            self.control.setblocking(False)
            self._loop.add_reader(self.control.fileno(), self._on_control)
            self.control.send(("ready " + ",".join(bound)).encode())
        log.info("netbay-dns serving %s", ", ".join(bound) or "nothing yet")
        try:
            await self._stop.wait()
        finally:
            self.close_sockets()
            for task in list(self._tasks):
                task.cancel()
            self.conn.close()
            self._commits.close()

    def stop(self) -> None:
        self._shutdown()


def _safe_key(point: ListenPoint) -> Key | None:
    try:
        return key_of(point)
    except OSError:
        return None
