"""The UDP listener thread on loopback, with a stand-in server: answers sent back, a cached
answer with the query's own ID, strangers ignored, a failing answer not ending the listener,
stop() ending the thread and closing its socket, a zone that fails to load costing only its
burst. No root."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import pytest

from netbay.dns.records import Asker, View, Zone
from netbay.dns.udp import UdpListener


@dataclass
class Stand:
    """Answers every query for `client` with b"answer" plus the query; fails on b"boom"."""

    client: str
    view: View = field(default_factory=lambda: View(forward=True))
    asked: list[bytes] = field(default_factory=list)

    def fresh(self, *, reload: bool = False) -> Zone:
        zone = Zone()
        zone.askers["net"] = {self.client: Asker(self.view, (), "c1")}
        return zone

    def answer(
        self, sock: socket.socket, data: bytes, asker: Asker, zone: Zone, peer: tuple[str, int]
    ) -> bytes | None:
        self.asked.append(data)
        if data.endswith(b"boom"):
            raise RuntimeError("boom")
        return data[:2] + b"answer"


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2)
    return server, client


def ask(client: socket.socket, server: socket.socket, data: bytes) -> bytes:
    client.sendto(data, server.getsockname())
    return client.recv(512)


def test_answers_cached_answers_and_stop(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    stand = Stand("127.0.0.1")
    listener = UdpListener(server, "net", stand)
    listener.start()
    client.sendto(b"\x00\x01boom", server.getsockname())  # fails: no answer, listener lives
    assert ask(client, server, b"\x00\x02query") == b"\x00\x02answer"
    assert stand.asked == [b"\x00\x01boom", b"\x00\x02query"]
    stand.view.cache[b"same"] = b"cached"
    assert ask(client, server, b"\xab\xcdsame") == b"\xab\xcdcached"
    assert len(stand.asked) == 2  # the cached one was not asked
    listener.stop()
    deadline = time.monotonic() + 2
    while server.fileno() != -1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.fileno() == -1
    client.close()


def test_a_sender_that_is_no_asker_gets_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    stand = Stand("127.0.0.2")  # the only asker: not the client
    listener = UdpListener(server, "net", stand)
    listener.start()
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        ask(client, server, b"\x00\x03query")
    assert stand.asked == []
    listener.stop()
    client.close()


def test_a_zone_that_fails_to_load_costs_that_burst_only(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    stand = Stand("127.0.0.1")
    loads = {"failing": 1}

    def fresh(*, reload: bool = False) -> Zone:
        if loads["failing"]:
            loads["failing"] -= 1
            raise RuntimeError("database is locked")
        return Stand.fresh(stand)

    stand.fresh = fresh  # type: ignore[method-assign]
    listener = UdpListener(server, "net", stand)
    listener.start()
    client.sendto(b"\x00\x01first", server.getsockname())  # its burst's reload fails
    client.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.recv(512)
    client.settimeout(2)
    assert ask(client, server, b"\x00\x02query") == b"\x00\x02answer"
    listener.stop()
    client.close()
