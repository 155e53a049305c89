"""UDP, the hot path: one thread per listening socket, blocked in recvmmsg (mmsg.py).

Each call takes every query waiting (up to mmsg.SLOTS) and one sendmmsg sends their answers:
two system calls per burst, where recvfrom and sendto made two per query (and the asyncio
reader before them four, plus a pass of its loop). At a fixed, low rate each burst is one
query, and the cost is that of recvfrom and sendto; under saturation the calls are shared by
the burst (measured in docs/design.md, "The DNS server's hot path"). The thread holds the GIL
only between those calls; the event loop (TCP, forwarding, the daemon's control socket) takes
it whenever it has work.

Each burst is checked against the record (the server's `fresh()`, nearly free: see
freshness.py) after it was received, so no query sent after a change is answered from the
state before it. Forwarded queries go to the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Mapping
from typing import Protocol

from .mmsg import BUFFER, Batches, Peer, Shutdown
from .records import Asker, Zone

log = logging.getLogger("netbay.dns")
_NO_ASKERS: Mapping[str, Asker] = {}
_NAMES_MAX = 4096


class Answerer(Protocol):
    def fresh(self, *, reload: bool = False) -> Zone: ...

    def answer(
        self, sock: socket.socket, data: bytes, asker: Asker, zone: Zone, peer: Peer
    ) -> bytes | None: ...


class UdpListener:
    """Serves SOCK (bound to NETWORK_ID's gateway) until stop(); the socket is its own."""

    def __init__(self, sock: socket.socket, network_id: str, server: Answerer) -> None:
        sock.setblocking(True)
        self.sock = sock
        self.network_id = network_id
        self._server = server
        self._names: dict[bytes, str] = {}  # packed peer address -> its text
        self._thread = threading.Thread(
            target=self._run, name=f"dns-udp-{network_id[:12]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Wake the thread (a shut-down socket reads as empty, with no sender); it closes the
        socket on its way out."""
        with contextlib.suppress(OSError):  # ENOTCONN on UDP, after it did its work
            self.sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        batches = Batches(self.sock.family)
        try:
            fd = self.sock.fileno()
            while True:
                count = batches.receive(fd)
                try:
                    self._serve(batches, count)
                except Exception:  # a failed reload (fresh()) must not end the listener
                    log.exception("answering on %s", self.network_id)
                batches.send(fd)
        except Shutdown:
            return
        except OSError as exc:
            log.warning("UDP listener of %s stopped: %s", self.network_id, exc)
        finally:
            self.sock.close()

    def _serve(self, batches: Batches, count: int) -> None:
        """Answer the COUNT queries of a burst, from the zone as it is now: every one of them
        arrived before this check, so none was sent after a change it would not see."""
        zone = self._server.fresh()
        askers = zone.askers.get(self.network_id, _NO_ASKERS)
        names = self._names
        for slot in range(count):
            packed = batches.peer_address(slot)
            host = names.get(packed)
            if host is None:
                host = self._name(packed)
            asker = askers.get(host)
            if asker is None:
                continue  # not a container of this network: not ours to answer
            data = batches.query(slot)
            out = asker.view.cache.get(data[2:])
            if out is None:
                try:
                    out = self._server.answer(self.sock, data, asker, zone,
                                              batches.peer(slot))
                except Exception:  # one bad packet must not end the listener, nor its burst
                    log.exception("answering %s", host)
                    continue
                if out is None:
                    continue
            else:
                out = data[:2] + out
            if len(out) > BUFFER:  # not from this server (MAX_UDP), but never cut short
                self._send_alone(out, batches.peer(slot))
            else:
                batches.answer(slot, out)

    def _name(self, packed: bytes) -> str:
        """The text of a packed peer address, remembered (a network's containers are few,
        and their addresses come back in every burst)."""
        if len(self._names) >= _NAMES_MAX:
            self._names.clear()
        host = socket.inet_ntop(self.sock.family, packed)
        self._names[packed] = host
        return host

    def _send_alone(self, out: bytes, peer: Peer) -> None:
        with contextlib.suppress(OSError):  # a full send buffer: the client retries
            self.sock.sendto(out, peer)
