"""Raw HTTP/1.1 over a unix socket, for the tests of netbayd's server: exactly the bytes the
test writes go out, and the status, headers and body come back whatever the status (netbay's
own client raises on an error status and speaks only well-formed HTTP)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any


def connect(path: Path, timeout: float = 10) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))  # blocking: a full listen backlog makes it wait, not fail
    sock.settimeout(timeout)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of the first response in RAW."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return int(lines[0].split(" ")[1]), headers, rest[:length]


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Every response in RAW, in order: (status, body)."""
    out = []
    while raw:
        status, headers, body = parse(raw)
        out.append((status, body))
        raw = raw.partition(b"\r\n\r\n")[2][int(headers.get("content-length", "0")):]
    return out


def exchange(path: Path, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send DATA on a new connection, read until the server closes it, parse the response."""
    with connect(path, timeout) as sock:
        sock.sendall(data)
        return parse(read_to_end(sock))


def request(path: Path, method: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
    """(status, decoded JSON body, or the text) of one request with Connection: close."""
    head = f"{method} {target} HTTP/1.1\r\nHost: netbay\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    status, headers, data = exchange(path, head.encode() + b"\r\n" + (body or b""))
    if "json" in headers.get("content-type", ""):
        return status, json.loads(data or b"null")
    return status, data.decode()


def ping_seconds(path: Path) -> float:
    """How long GET /_ping takes on a new connection (asserting it answers OK)."""
    started = time.monotonic()
    status, body = request(path, "GET", "/_ping")
    assert (status, body) == (200, "OK")
    return time.monotonic() - started
