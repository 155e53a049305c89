"""The conntrack janitor's thread and its sockets, with a fake conntrack socket: a close while
the thread is still busy leaves the socket to the thread (closing it under a running dump
failed with "fd -1" at a benchmark's end), and the thread closes it when it is done."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address
from typing import Any

import pytest

from netbay.kernel import conntrack


class FakeSocket:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def busy(monkeypatch: pytest.MonkeyPatch) -> tuple[list[FakeSocket], threading.Event]:
    """Every socket the janitor opens, and the event a forget waits for before it ends."""
    opened: list[FakeSocket] = []
    release = threading.Event()

    def open_conntrack(*_: Any) -> FakeSocket:
        opened.append(FakeSocket())
        return opened[-1]

    monkeypatch.setattr(conntrack, "open_conntrack", open_conntrack)
    monkeypatch.setattr(conntrack, "forget_address", lambda *_: release.wait(10))
    return opened, release


def test_a_close_while_the_thread_works_leaves_it_its_socket(
    busy: tuple[list[FakeSocket], threading.Event],
) -> None:
    opened, release = busy
    janitor = conntrack.FlowJanitor()
    janitor.forget(IPv4Address("10.0.0.2"))
    janitor.forget(IPv4Address("10.0.0.3"))
    janitor.close(timeout=0.1)
    assert len(opened) == 1 and opened[0].closed == 0  # still in use by the thread
    release.set()
    janitor._thread.join(5)
    assert not janitor._thread.is_alive() and opened[0].closed == 1


def test_an_idle_janitor_closes_its_socket_and_its_thread_ends(
    busy: tuple[list[FakeSocket], threading.Event],
) -> None:
    opened, release = busy
    release.set()
    janitor = conntrack.FlowJanitor()
    janitor.forget(IPv4Address("10.0.0.2"))
    janitor.drain()
    assert [s.closed for s in opened] == [1]  # the queue ran empty: closed at once
    janitor.close()
    assert not janitor._thread.is_alive() and [s.closed for s in opened] == [1]
