"""HTTP/1.1 over netbayd's unix socket, Docker-style: JSON bodies, {"message": ...} errors.

One thread (serve_forever's) waits on every connection with epoll and hands a connection
whose bytes arrived to a worker thread. The worker reads what is there; when that completes
a request it handles it and writes the response. No one ever blocks on a client (every
socket is non-blocking): a request or a response not complete yet goes back to waiting. So
an idle, slow or stuck client holds a socket and a buffer, never a thread, and a request
costs one hand-off between threads (GET /_ping on a new connection: ~0.2 ms, against ~0.35
ms for the thread-per-connection http.server before). Every wait on a client has a
deadline and every buffer a size (http1.Limits).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import NetbayError
from .http1 import CONTINUE, HttpError, Limits, Parser, Request, response
from .json_shape import decode_body
from .workers import Workers

log = logging.getLogger("netbayd")
SHUTDOWN_GRACE = 5.0  # seconds for running requests to finish and be answered at shutdown
LINGER = 2.0  # seconds a refused request's input is drained after its answer (see _finish)
_TICK = 0.25  # seconds between deadline checks
_READ = 256 * 1024
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT


class Dispatcher(Protocol):
    def dispatch(self, method: str, target: str, body: Any) -> tuple[int, Any]: ...


@dataclass(eq=False)
class _Connection:
    """Owned by the reactor while armed (waiting in epoll, one-shot), else by one worker."""

    sock: socket.socket
    parser: Parser
    fd: int = -1
    buffer: bytearray = field(default_factory=bytearray)  # received, not yet handled
    started: float = 0.0  # when the first byte of the request in the buffer came
    outgoing: memoryview | None = None  # response bytes the socket has not taken yet
    after_write: str = "read"  # then: "read" the next request, "close", or "linger"
    lingering: bool = False  # input is read and dropped until the client closes
    armed: bool = False
    closed: bool = False
    deadline: float = 0.0
    idle_since: float | None = None  # waiting for a request since; None: not idle

    def __post_init__(self) -> None:
        self.fd = self.sock.fileno()


class ApiServer:
    def __init__(self, sock: socket.socket, api: Dispatcher, limits: Limits | None = None):
        self.limits = limits or Limits()
        self._listener = sock
        self._api = api
        self._workers = Workers(self.limits.workers)
        self._lock = threading.Lock()  # connections' ownership, the table, the byte count
        self._conns: dict[int, _Connection] = {}
        self._buffered = 0
        self._accepting = True
        self._stopping = False
        self._ended = False  # the wake-up pipe is closed
        self._next_check = 0.0
        self._epoll = select.epoll()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        sock.setblocking(False)
        self._epoll.register(sock.fileno(), _IN)
        self._epoll.register(self._wake_read, _IN)

    # --- lifecycle -----------------------------------------------------------------------
    def serve_forever(self) -> None:
        try:
            while not self._stopping:
                self._poll()
            self._wind_down()
        finally:
            with self._lock:
                for conn in list(self._conns.values()):
                    self._close_locked(conn)
                self._ended = True
                os.close(self._wake_read)
                os.close(self._wake_write)
            self._epoll.close()
            self._workers.stop()

    def shutdown(self) -> None:
        """Any thread: serve_forever returns once running requests are answered (at most
        SHUTDOWN_GRACE seconds); idle connections are closed."""
        self._stopping = True
        with self._lock, contextlib.suppress(BlockingIOError):
            if not self._ended:
                os.write(self._wake_write, b"x")

    def _wind_down(self) -> None:
        """Close what waits for a request; answers being handled or written may finish."""
        with self._lock:
            self._watch_listener(False)
            waiting = [c for c in self._conns.values() if c.armed and c.outgoing is None]
            for conn in waiting:
                self._close_locked(conn)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self._conns and time.monotonic() < deadline:
            self._poll()

    # --- the reactor ---------------------------------------------------------------------
    def _poll(self) -> None:
        for fd, _ in self._epoll.poll(_TICK):
            if fd == self._listener.fileno():
                self._accept()
            elif fd == self._wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 64)
            else:
                self._ready(fd)
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + _TICK
            self._expire(now)

    def _ready(self, fd: int) -> None:
        with self._lock:
            conn = self._conns.get(fd)
            if conn is None or not conn.armed:
                return
            conn.armed = False
        self._workers.submit(lambda: self._step(conn))

    def _accept(self) -> None:
        while True:
            with self._lock:
                # at the limit the longest-idle connection makes room for one that came;
                # when none is idle, new clients wait in the listen backlog until one ends
                full = len(self._conns) >= self.limits.connections
                if full and not self._idle_connections():
                    self._watch_listener(False)
                    return
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again at the next tick
                log.warning("API socket: accept: %s", exc)
                with self._lock:
                    self._watch_listener(False)
                return
            sock.setblocking(False)
            conn = _Connection(sock, Parser(self.limits))
            with self._lock:
                if full and (idle := self._idle_connections()):
                    self._close_locked(min(idle, key=lambda c: c.idle_since or 0.0))
                self._conns[conn.fd] = conn
                self._epoll.register(conn.fd, 0)
                self._arm_locked(conn, _IN)

    def _idle_connections(self) -> list[_Connection]:
        return [c for c in self._conns.values() if c.armed and c.idle_since is not None]

    def _watch_listener(self, on: bool) -> None:
        if on != self._accepting:
            self._accepting = on
            self._epoll.modify(self._listener.fileno(), _IN if on else 0)

    def _expire(self, now: float) -> None:
        with self._lock:
            if not self._stopping:  # paused at the limit or by EMFILE: _accept checks again
                self._watch_listener(True)
            late = [c for c in self._conns.values() if c.armed and c.deadline <= now]
            for conn in late:
                conn.armed = False  # taken, as _ready takes one for a worker
        message = f"request not received within {self.limits.request:g} s"
        for conn in late:
            if conn.buffer and conn.outgoing is None and not conn.lingering:
                self._workers.submit(functools.partial(self._refuse, conn, 408, message))
            else:  # idle too long, a response not taken, or a refused client lingering
                self._close(conn)

    # --- a worker, owning the connection ------------------------------------------------
    def _step(self, conn: _Connection) -> None:
        try:
            if conn.outgoing is not None:
                if not self._flush(conn):
                    return self._rearm(conn, _OUT)
                if conn.after_write != "read":
                    return self._finish(conn)
            if conn.lingering:
                return self._drop_input(conn)
            self._serve_buffered(conn, self._receive(conn))
        except HttpError as exc:
            self._refuse(conn, exc.status, exc.message)
        except Exception:
            log.exception("API connection failed")
            self._close(conn)

    def _serve_buffered(self, conn: _Connection, closed_by_client: bool) -> None:
        """Handle every whole request in the buffer (a client may send several at once)."""
        while (found := conn.parser.next(conn.buffer)) is not None:
            request, size = found
            del conn.buffer[:size]
            self._release(size)
            conn.started = time.monotonic()
            data, keep_alive = self._respond(request)
            conn.outgoing = memoryview(data)
            conn.after_write = "read" if keep_alive else "close"
            if not self._flush(conn):
                return self._rearm(conn, _OUT)
            if conn.after_write != "read":  # not kept alive, or the client went away
                return self._close(conn)
        if closed_by_client:
            return self._close(conn)
        if conn.parser.expects_continue:
            conn.parser.expects_continue = False
            with contextlib.suppress(OSError):
                conn.sock.send(CONTINUE)
        self._rearm(conn, _IN)

    def _receive(self, conn: _Connection) -> bool:
        """Read what has arrived (up to one whole request's worth); whether the client has
        closed its side."""
        room = self.limits.header + self.limits.body - len(conn.buffer)
        while room > 0:
            try:
                chunk = conn.sock.recv(min(_READ, room))
            except (BlockingIOError, InterruptedError):
                return False
            except ConnectionError:
                return True
            if not chunk:
                return True
            if not conn.buffer:
                conn.started = time.monotonic()
            self._reserve(len(chunk))
            conn.buffer += chunk
            room -= len(chunk)
        return False

    def _flush(self, conn: _Connection) -> bool:
        """Send what the socket takes now; whether nothing is left to send."""
        data = conn.outgoing
        while data:
            try:
                data = data[conn.sock.send(data):]
            except (BlockingIOError, InterruptedError):
                conn.outgoing = data
                return False
            except OSError:  # the client went away: nothing more to say to it
                conn.after_write = "close"
                break
        conn.outgoing = None
        return True

    def _refuse(self, conn: _Connection, status: int, message: str) -> None:
        log.debug("refused a request: %d %s", status, message)
        conn.outgoing = memoryview(response("GET", status, {"message": message}, False))
        conn.after_write = "linger"
        if self._flush(conn):
            self._finish(conn)
        else:
            self._rearm(conn, _OUT)

    def _finish(self, conn: _Connection) -> None:
        """After the last response: close, or linger. Closing a unix socket with input
        unread makes the client's next read fail with ECONNRESET, before the end of what it
        was sent: so after refusing a request whose body may still be coming, netbayd
        shuts its side (the client reads the answer, then EOF) and drops what arrives until
        the client closes, or LINGER seconds."""
        if conn.after_write == "close":
            return self._close(conn)
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        self._release(len(conn.buffer))
        conn.buffer.clear()
        conn.lingering = True
        conn.started = time.monotonic()
        self._drop_input(conn)

    def _drop_input(self, conn: _Connection) -> None:
        for _ in range(4):  # 1 MiB a turn at most: a client that floods cannot keep a worker
            try:
                if not conn.sock.recv(_READ):
                    return self._close(conn)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return self._close(conn)
        self._rearm(conn, _IN)

    def _respond(self, request: Request) -> tuple[bytes, bool]:
        """The response, and whether the connection stays open for another request."""
        status, payload = self._dispatch(request)
        log.debug("%s %s %d", request.method, request.target, status)
        keep_alive = request.keep_alive and not self._stopping
        return response(request.method, status, payload, keep_alive), keep_alive

    def _dispatch(self, request: Request) -> tuple[int, Any]:
        try:
            return self._api.dispatch(request.method, request.target, decode_body(request.body))
        except NetbayError as exc:
            return exc.http_status, {"message": str(exc)}
        except Exception as exc:  # never leave the client without an answer
            log.exception("%s %s failed", request.method, request.target)
            return 500, {"message": f"internal error: {exc}"}

    # --- ownership and bookkeeping (under the lock) --------------------------------------
    def _rearm(self, conn: _Connection, events: int) -> None:
        with self._lock:
            if conn.closed:
                return
            if self._stopping and events == _IN and not conn.buffer:
                return self._close_locked(conn)
            self._arm_locked(conn, events)

    def _arm_locked(self, conn: _Connection, events: int) -> None:
        now = time.monotonic()
        conn.idle_since = None
        if conn.lingering:
            conn.deadline = conn.started + LINGER
        elif events == _OUT:
            conn.deadline = now + self.limits.write
        elif conn.buffer:
            conn.deadline = conn.started + self.limits.request
        else:
            conn.deadline, conn.idle_since = now + self.limits.idle, now
        conn.armed = True
        self._epoll.modify(conn.fd, events | select.EPOLLONESHOT)

    def _close(self, conn: _Connection) -> None:
        with self._lock:
            self._close_locked(conn)

    def _close_locked(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed, conn.armed = True, False
        del self._conns[conn.fd]
        self._buffered -= len(conn.buffer)
        conn.buffer.clear()
        with contextlib.suppress(OSError):
            self._epoll.unregister(conn.fd)
        conn.sock.close()
        if not self._stopping:
            self._watch_listener(True)

    def _reserve(self, count: int) -> None:
        with self._lock:
            if self._buffered + count > self.limits.buffered:
                raise HttpError(503, f"netbayd holds {self._buffered} bytes of requests not "
                                     f"yet handled (at most {self.limits.buffered}); try again")
            self._buffered += count

    def _release(self, count: int) -> None:
        with self._lock:
            self._buffered -= count
