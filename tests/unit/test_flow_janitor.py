"""The conntrack janitor's thread and its sockets, with a fake conntrack socket: a close while
the thread is still busy leaves the socket to the thread (closing it under a running dump
failed with "fd -1" at a benchmark's end), and the thread closes it when it is done."""

from __future__ import annotations

import threading
import time
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from helpers import wait_until
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


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[dict[Any, bool]]:
    """What each forget_batch call got (its sockets fake)."""
    got: list[dict[Any, bool]] = []
    monkeypatch.setattr(conntrack, "open_conntrack", lambda *_: FakeSocket())
    monkeypatch.setattr(conntrack, "forget_batch", lambda _ct, _v, batch: got.append(batch))
    return got


def test_a_burst_of_addresses_is_one_batch_after_its_quiet(
    batches: list[dict[Any, bool]],
) -> None:
    """A dump walks the whole table (and holds an RCU grace period up): a burst of detaches
    costs one, run once they pause, not one each under the next detach."""
    janitor = conntrack.FlowJanitor()
    start = time.monotonic()
    for last in range(2, 8):
        janitor.forget(IPv4Address(f"10.0.0.{last}"), started=last % 2 == 0)
        time.sleep(conntrack.QUIET / 5)
    janitor.forget(IPv4Address("10.0.0.3"), started=True)  # again, now STARTED
    wait_until(lambda: batches, 5, "the burst's batch", interval=0.01)
    assert time.monotonic() - start >= conntrack.QUIET
    janitor.close()
    assert batches == [{IPv4Address(f"10.0.0.{n}"): n % 2 == 0 or n == 3 for n in range(2, 8)}]


def test_settle_runs_the_waiting_batch_at_once_and_returns_when_it_is_done(
    batches: list[dict[Any, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conntrack, "QUIET", 30.0)
    monkeypatch.setattr(conntrack, "LONGEST", 30.0)
    janitor = conntrack.FlowJanitor()
    janitor.forget(IPv4Address("10.0.0.9"))
    janitor.settle([IPv4Address("10.0.0.8")])  # nothing of it waits: no batch for it
    assert batches == []
    started = time.monotonic()
    janitor.settle([IPv4Address("10.0.0.9")])
    assert batches == [{IPv4Address("10.0.0.9"): False}] and time.monotonic() - started < 5
    janitor.close()


def test_a_batch_is_filtered_by_the_kernel_while_small_and_one_dump_when_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(conntrack, "forget_address", lambda _ct, a, s: calls.append(a) or 0)
    monkeypatch.setattr(conntrack, "_forget_all", lambda _ct, b: calls.append(sorted(b)) or 0)
    small = {IPv4Address(f"10.0.0.{n}"): False for n in range(conntrack.FILTERED_UP_TO)}
    conntrack.forget_batch(FakeSocket(), 4, small)
    assert calls == sorted(small)  # one filtered dump (per side) each
    calls.clear()
    large = {**small, IPv4Address("10.0.1.1"): True}
    conntrack.forget_batch(FakeSocket(), 4, large)
    assert calls == [sorted(large)]
    calls.clear()
    six = {IPv6Address("fd00::2"): True}
    conntrack.forget_batch(FakeSocket(), 6, six)  # IPv6's kernel filter is broken
    assert calls == [[IPv6Address("fd00::2")]]

