"""recvmmsg/sendmmsg batches (dns/mmsg.py) on loopback, both families: a burst taken in one
call, each answer back to its own sender, more queries than slots taken over two calls, a
failing send not losing the rest of the burst, shutdown seen. No root."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from netbay.dns.mmsg import SLOTS, Batches, Shutdown

FAMILIES = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]


def bound(family: int, address: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    sock.settimeout(2)
    return sock


@pytest.mark.parametrize(("family", "address"), FAMILIES)
def test_a_burst_is_one_call_and_each_answer_goes_to_its_sender(
    family: int, address: str
) -> None:
    server = bound(family, address)
    clients = [bound(family, address) for _ in range(3)]
    for n, client in enumerate(clients):
        client.sendto(b"query %d" % n, server.getsockname()[:2])
    batches = Batches(family)
    assert batches.receive(server.fileno()) == 3
    got = {batches.query(slot): batches.peer(slot) for slot in range(3)}
    assert got == {b"query %d" % n: c.getsockname() for n, c in enumerate(clients)}
    assert batches.peer_address(0) == socket.inet_pton(family, address)
    for slot in (2, 0):  # answered out of order, one left unanswered
        batches.answer(slot, b"answer to " + batches.query(slot))
    batches.send(server.fileno())
    senders = {batches.peer(slot): batches.query(slot) for slot in range(3)}
    for client in clients:
        asked = senders[client.getsockname()]
        if asked == batches.query(1):
            client.settimeout(0.2)
            with pytest.raises(TimeoutError):
                client.recv(100)
        else:
            assert client.recv(100) == b"answer to " + asked


def test_more_queries_than_slots_take_two_calls() -> None:
    server, client = bound(*FAMILIES[0]), bound(*FAMILIES[0])
    for n in range(SLOTS + 5):
        client.sendto(b"%d" % n, server.getsockname())
    batches = Batches(socket.AF_INET)
    first = batches.receive(server.fileno())
    second = batches.receive(server.fileno())
    assert (first, second) == (SLOTS, 5)
    assert [batches.query(slot) for slot in range(5)] == [b"%d" % n for n in range(SLOTS,
                                                                                   SLOTS + 5)]


def test_a_failing_answer_is_dropped_and_the_rest_of_the_burst_still_goes() -> None:
    server, client = bound(*FAMILIES[0]), bound(*FAMILIES[0])
    for n in range(3):
        client.sendto(b"%d" % n, server.getsockname())
    batches = Batches(socket.AF_INET)
    assert batches.receive(server.fileno()) == 3
    batches._names[2:4] = b"\0\0"  # the first sender's port 0: its sendmmsg fails (EINVAL)
    for slot in range(3):
        batches.answer(slot, b"answer %d" % slot)
    batches.send(server.fileno())
    assert [client.recv(100) for _ in range(2)] == [b"answer 1", b"answer 2"]
    assert batches.pending == 0


def test_a_shut_down_socket_ends_the_wait() -> None:
    server = bound(*FAMILIES[0])
    server.setblocking(True)  # as the listener's: the call waits
    batches = Batches(socket.AF_INET)

    def shut() -> None:
        time.sleep(0.2)
        with contextlib.suppress(OSError):  # ENOTCONN on UDP, after it did its work
            server.shutdown(socket.SHUT_RDWR)

    waker = threading.Thread(target=shut)
    waker.start()
    with pytest.raises(Shutdown):
        batches.receive(server.fileno())
    waker.join()
