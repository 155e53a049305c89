"""The little HTTP/1.1 netbayd's API needs, parsed from a connection's receive buffer as bytes
arrive: the request line and headers (CRLF or a bare LF ends a line), a body by
Content-Length or chunked; every size bounded (Limits). What is wrong is an HttpError with
the status to answer; what is not complete yet is None, to be asked again with more bytes."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .. import __version__
from .docker_json import API_VERSION

MiB = 1024 * 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")


@dataclass(frozen=True)
class Limits:
    """The server's bounds, and why each is what it is.

    body: the largest real bodies are a netavark setup with 1,000 port mappings on 17
        networks (~125 KiB) and a CNI GC naming 10,000 attachments (~1 MiB); 4 MiB is room
        for 30x the one and 40,000 attachments.
    header: the request line and headers; the docker client sends under 1 KiB.
    idle: seconds a connection may wait for its next request. Go's client (docker) keeps
        idle connections 90 s and dials again when one was closed under it.
    request: seconds from a request's first byte to the end of its body; a local client
        takes well under a millisecond.
    write: seconds for the client to take its response.
    workers: requests handled at once. Few need to be (the engine serialises its kernel
        changes), but some handlers wait: `stop` for its timeout, trace for its probe.
    connections: an open connection costs a socket and a buffer, never a thread. At the
        limit the longest-idle one is closed for the new one; when none is idle new
        clients wait in the listen backlog, which the thin clients and docker ride out
        (connect waits, or is retried), where a 503 would fail their command.
    buffered: bytes received and not yet handled over all connections, the bound on the
        server's memory (connections times body alone would be 2 GiB).
    """

    body: int = 4 * MiB
    header: int = 64 * 1024
    idle: float = 30.0
    request: float = 10.0
    write: float = 10.0
    workers: int = 128
    connections: int = 512
    buffered: int = 64 * MiB


class HttpError(Exception):
    """A request refused before it reaches the API: answered with STATUS, then the
    connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Head:
    method: str
    target: str
    headers: dict[str, str]
    keep_alive: bool
    size: int  # bytes of the buffer it took, blank lines before it included


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    body: bytes
    keep_alive: bool


@dataclass
class Parser:
    """One connection's request being received: its head once complete, the body so far."""

    limits: Limits
    head: Head | None = None
    expects_continue: bool = False  # the client waits for "100 Continue" before its body
    _chunks: list[bytes] = field(default_factory=list)
    _chunked_at: int = 0  # where the next chunk's size line starts
    _chunked_size: int = 0  # bytes of the chunks so far

    def next(self, buffer: bytes | bytearray) -> tuple[Request, int] | None:
        """The request at the start of BUFFER and how many bytes it took, or None."""
        if self.head is None:
            self.head = parse_head(buffer, self.limits.header)
            if self.head is None:
                return None
            length = int(self.head.headers.get("content-length", "0"))
            if length > self.limits.body:  # refused before a byte of it is read
                raise _too_large(f"request body of {length} bytes", self.limits.body)
            self.expects_continue = self.head.headers.get("expect", "").lower() == \
                "100-continue"
            self._chunked_at = self.head.size
        head = self.head
        framed = self._body(head, buffer)
        if framed is None:
            return None
        body, end = framed
        self.head, self.expects_continue = None, False
        self._chunks, self._chunked_size = [], 0
        return Request(head.method, head.target, body, head.keep_alive), end

    def _body(self, head: Head, buffer: bytes | bytearray) -> tuple[bytes, int] | None:
        encoding = head.headers.get("transfer-encoding")
        if encoding is not None:
            return self._chunked(buffer)
        length = int(head.headers.get("content-length", "0"))
        end = head.size + length
        return (bytes(buffer[head.size:end]), end) if len(buffer) >= end else None

    def _chunked(self, buffer: bytes | bytearray) -> tuple[bytes, int] | None:
        """The chunks complete so far are kept: each is read once however slowly it comes."""
        while True:
            line_end = buffer.find(b"\n", self._chunked_at)
            if line_end < 0:
                return None
            size = _chunk_size(buffer[self._chunked_at:line_end])
            if size == 0:
                return self._trailers(buffer, line_end + 1)
            if self._chunked_size + size > self.limits.body:  # before its data is read
                raise _too_large("chunked request body", self.limits.body)
            data_end = line_end + 1 + size
            if len(buffer) < data_end + 2:
                return None
            after = buffer[data_end:data_end + 2]
            if after != b"\r\n" and after[:1] != b"\n":
                raise HttpError(400, "malformed chunk: its data is not followed by CRLF")
            self._chunks.append(bytes(buffer[line_end + 1:data_end]))
            self._chunked_size += size
            self._chunked_at = data_end + (2 if after == b"\r\n" else 1)

    def _trailers(self, buffer: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
        """Trailer fields after the last chunk are skipped, up to the blank line."""
        while True:
            line_end = buffer.find(b"\n", start)
            if line_end < 0:
                return None
            if not buffer[start:line_end].strip():
                return b"".join(self._chunks), line_end + 1
            start = line_end + 1


def _chunk_size(line: bytes | bytearray) -> int:
    text = bytes(line).split(b";", 1)[0].strip()
    if not _CHUNK_SIZE.fullmatch(text):
        raise HttpError(400, f"malformed chunk size {text[:20]!r}")
    return int(text, 16)


def parse_head(buffer: bytes | bytearray, limit: int) -> Head | None:
    """The request line and headers at the start of BUFFER; None until they are complete.
    Blank lines before the request line are skipped, as RFC 9112 (2.2) says."""
    window = bytes(buffer[:limit])
    start = len(window) - len(window.lstrip(b"\r\n"))
    match = _END_OF_HEAD.search(buffer, start)
    if match is None or match.start() > limit:
        if len(buffer) > limit or match is not None:
            raise HttpError(431, f"request header fields over {limit} bytes")
        return None
    lines = bytes(buffer[start:match.start()]).decode("latin-1").split("\n")
    method, target, version = _request_line(lines[0].rstrip("\r"))
    headers = _headers([line.rstrip("\r") for line in lines[1:]])
    _check_framing(headers)
    return Head(method, target, headers, _keep_alive(version, headers), match.end())


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError(400, f"malformed request line {line[:100]!r}")
    if parts[2] not in _VERSIONS:
        raise HttpError(505, f"HTTP version {parts[2][:20]!r} not supported (HTTP/1.1 is)")
    return parts[0], parts[1], parts[2]


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name or "\t" in name:
            raise HttpError(400, f"malformed header line {line[:100]!r}")
        key, value = name.lower(), value.strip(" \t")
        if key not in headers:
            headers[key] = value
        elif key == "content-length":
            if headers[key] != value:
                raise HttpError(400, "conflicting Content-Length headers")
        else:
            headers[key] += ", " + value
    return headers


def _check_framing(headers: dict[str, str]) -> None:
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if "content-length" in headers:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if encoding.lower() != "chunked":
            raise HttpError(501, f"Transfer-Encoding {encoding[:40]!r} not supported "
                                 "(chunked is)")
    text = headers.get("content-length", "0")
    if not (text.isascii() and text.isdigit()):
        raise HttpError(400, f"invalid Content-Length {text[:40]!r}")


def _too_large(what: str, limit: int) -> HttpError:
    return HttpError(413, f"{what} over netbayd's limit of {limit} bytes ({limit / MiB:g} MiB)")


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    return "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def response(method: str, status: int, payload: Any, keep_alive: bool) -> bytes:
    """The whole response: JSON (or text, for a str PAYLOAD), with dockerd's headers."""
    if payload is None:
        data = b""
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = json.dumps(payload).encode() + b"\n"
    ctype = "text/plain; charset=utf-8" if isinstance(payload, str) else "application/json"
    head = (
        f"HTTP/1.1 {status} {_phrase(status)}\r\n"
        f"Server: netbay/{__version__}\r\n"
        f"Date: {_http_date(time.gmtime())}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Api-Version: {API_VERSION}\r\n"
        "Docker-Experimental: false\r\n"
        "Ostype: linux\r\n"
        f"Content-Length: {len(data)}\r\n"
    )
    if not keep_alive:
        head += "Connection: close\r\n"
    if method == "HEAD" or status == 204:
        data = b""
    return head.encode() + b"\r\n" + data


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date(t: time.struct_time) -> str:
    """RFC 9110's IMF-fixdate, as email.utils.formatdate(usegmt=True) writes it (that
    module costs the daemon's start ~10 ms of imports)."""
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
