"""netbayd's HTTP server against a stand-in API, over a real unix socket: framing, limits
(413, 431, 408, idle and connection bounds, buffered bytes), keep-alive, pipelining, the
bounded workers, shutdown. Short limits keep it fast; the real daemon's: tests/e2e."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netbay.daemon.http1 import Limits
from netbay.daemon.listener import bind
from netbay.daemon.server import ApiServer
from rawhttp import connect, exchange, read_to_end, request, responses

SHORT = Limits(body=1000, header=400, idle=0.5, request=0.5, write=0.5, workers=2,
               connections=4, buffered=1500)


class Echo:
    """The API: answers what it was sent; /slow waits for `release`, /boom raises."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.release = threading.Event()
        self.running = 0

    def dispatch(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        self.calls.append((method, target, body))
        if target == "/boom":
            raise RuntimeError("kaput")
        if target == "/slow":
            self.running += 1
            self.release.wait(10)
        if target == "/_ping":
            return 200, "OK"
        return 200, {"method": method, "target": target, "body": body}


Serve = Callable[..., tuple[Path, Echo, ApiServer]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    started: list[tuple[ApiServer, threading.Thread, Echo]] = []

    def start(limits: Limits = SHORT) -> tuple[Path, Echo, ApiServer]:
        path = tmp_path / f"api{len(started)}.sock"
        echo = Echo()
        server = ApiServer(bind(path), echo, limits)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread, echo))
        return path, echo, server

    yield start
    for server, thread, echo in started:
        echo.release.set()
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()


def get(target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def test_keep_alive_pipelining_and_connection_close(serve: Serve) -> None:
    path, echo, _ = serve()
    with connect(path) as sock:
        sock.sendall(get("/a") + get("/b") + get("/c", "Connection: close\r\n"))
        got = responses(read_to_end(sock))
    assert [json.loads(body)["target"] for _, body in got] == ["/a", "/b", "/c"]
    assert [call[1] for call in echo.calls] == ["/a", "/b", "/c"]


def test_bare_lf_lines_and_blank_lines_before_the_request(serve: Serve) -> None:
    path, _, _ = serve()
    data = b"\r\n\nGET /lf HTTP/1.1\nHost: x\nConnection: close\n\n"
    status, headers, body = exchange(path, data)
    assert status == 200 and json.loads(body)["target"] == "/lf"
    assert headers["connection"] == "close" and headers["api-version"]


def test_chunked_body_and_expect_100_continue(serve: Serve) -> None:
    path, echo, _ = serve()
    with connect(path) as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b'5;ext=1\r\n{"a":\r\n3\r\n 1}\r\n0\r\nTrailer: x\r\n\r\n')
        status, body = responses(read_to_end(sock))[0]
    assert status == 200 and json.loads(body)["body"] == {"a": 1}


def test_head_answers_without_a_body(serve: Serve) -> None:
    path, _, _ = serve()
    with connect(path) as sock:
        sock.sendall(b"HEAD /_ping HTTP/1.1\r\nConnection: close\r\n\r\n")
        raw = read_to_end(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 2\r\n" in raw
    assert raw.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(("data", "status", "message"), [
    (b"POST /x HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n{\"a\"", 413,
     "request body of 100000000 bytes over netbayd's limit of 1000 bytes (0.000953674 MiB)"),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n", 413,
     "chunked request body over netbayd's limit of 1000 bytes (0.000953674 MiB)"),
    (b"GET /x HTTP/1.1\r\nX-Long: " + b"a" * 500, 431, "request header fields over 400 bytes"),
    (b"GET /x\r\n\r\n", 400, "malformed request line 'GET /x'"),
    (b"GET /x HTTP/2.0\r\n\r\n", 505, "HTTP version 'HTTP/2.0' not supported (HTTP/1.1 is)"),
    (b"GET /x HTTP/1.1\r\nno colon\r\n\r\n", 400, "malformed header line 'no colon'"),
    (b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length '-1'"),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
     "conflicting Content-Length headers"),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "both Content-Length and Transfer-Encoding"),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "Transfer-Encoding 'gzip' not supported (chunked is)"),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "malformed chunk size b'zz'"),
])
def test_refused_requests_get_one_line_then_eof(
    serve: Serve, data: bytes, status: int, message: str
) -> None:
    """The answer is readable to its end and then EOF, not ECONNRESET, although the client
    sent input the server never read (it drains it before closing: see server._finish)."""
    path, echo, _ = serve()
    with connect(path) as sock:
        sock.sendall(data)
        time.sleep(0.05)
        sock.sendall(b"more input the server never reads")
        got = responses(read_to_end(sock))
    assert got == [(status, json.dumps({"message": message}).encode() + b"\n")]
    assert echo.calls == []


def test_bodies_that_are_not_a_json_object(serve: Serve) -> None:
    path, _, _ = serve()
    for body, message in (
        (b"{bad", "invalid JSON: Expecting property name enclosed in double quotes: line 1 "
                  "column 2 (char 1)"),
        (b"[1, 2]", "invalid JSON: cannot unmarshal array [1, 2] into the request body of "
                    "type object"),
        (b'{"a": NaN}', "invalid JSON: NaN is not JSON"),
        (b"\xff", "invalid JSON: 'utf-8' codec can't decode byte 0xff in position 0: "
                  "invalid start byte"),
    ):
        assert request(path, "POST", "/x", body) == (400, {"message": message})


def test_a_failing_handler_answers_500_in_one_line(serve: Serve) -> None:
    path, _, _ = serve()
    assert request(path, "GET", "/boom") == (500, {"message": "internal error: kaput"})


def test_slow_request_gets_408_and_idle_connection_is_closed(serve: Serve) -> None:
    path, _, _ = serve()
    with connect(path) as slow, connect(path) as idle:
        slow.sendall(b"GET /x HTTP/1.1\r\n")
        started = time.monotonic()
        got = responses(read_to_end(slow))
        assert got == [(408, b'{"message": "request not received within 0.5 s"}\n')]
        assert 0.5 <= time.monotonic() - started < 1.5
        assert read_to_end(idle) == b""  # closed by the idle limit, with no answer


def test_at_the_connection_limit_the_longest_idle_one_makes_room(serve: Serve) -> None:
    path, _, _ = serve(Limits(idle=30, connections=4))
    idle = [connect(path) for _ in range(4)]
    try:
        time.sleep(0.1)
        assert request(path, "GET", "/_ping") == (200, "OK")
        assert read_to_end(idle[0]) == b""  # the oldest went
        idle[1].sendall(get("/still-here"))
        assert idle[1].recv(1000).startswith(b"HTTP/1.1 200 OK")
    finally:
        for sock in idle:
            sock.close()


def test_when_no_connection_is_idle_a_new_one_waits_for_room(serve: Serve) -> None:
    path, _, _ = serve(Limits(connections=2))
    busy = [connect(path) for _ in range(2)]
    for sock in busy:
        sock.sendall(b"GET /x HTTP/1.1\r\n")  # mid-request: not idle, not evictable
    time.sleep(0.1)
    waiting = connect(path)  # accepted by the kernel: it waits in the backlog
    waiting.sendall(get("/_ping", "Connection: close\r\n"))
    waiting.settimeout(0.5)
    with pytest.raises(TimeoutError):
        waiting.recv(100)
    busy[0].close()
    waiting.settimeout(5)
    assert read_to_end(waiting).startswith(b"HTTP/1.1 200 OK")
    busy[1].close()
    waiting.close()


def test_bytes_held_over_all_connections_are_bounded(serve: Serve) -> None:
    path, _, _ = serve()
    with connect(path) as first:
        first.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 900)
        time.sleep(0.1)  # 940 of the 1,500 bytes held for it
        status, body = request(path, "POST", "/y", b"y" * 600)
    assert status == 503
    assert body["message"].startswith("netbayd holds ") and "(at most 1500)" in body["message"]


def test_workers_are_bounded_and_requests_queue(serve: Serve) -> None:
    path, echo, _ = serve(Limits(workers=2))
    threads = threading.active_count()
    socks = [connect(path) for _ in range(4)]
    for sock in socks:
        sock.sendall(get("/slow", "Connection: close\r\n"))
    deadline = time.monotonic() + 5
    while echo.running < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert echo.running == 2
    assert threading.active_count() - threads == 2
    echo.release.set()
    for sock in socks:
        assert read_to_end(sock).startswith(b"HTTP/1.1 200 OK")
        sock.close()
    assert echo.running == 4


def test_shutdown_answers_the_running_request_then_returns(serve: Serve) -> None:
    path, echo, server = serve()
    with connect(path) as sock:
        sock.sendall(get("/slow"))  # kept alive: shutdown closes it after the answer
        while echo.running < 1:
            time.sleep(0.01)
        server.shutdown()
        time.sleep(0.1)
        echo.release.set()
        raw = read_to_end(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK") and b"Connection: close\r\n" in raw
