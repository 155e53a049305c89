"""HTTP/1.1 over a unix socket, Docker-style: JSON bodies, {"message": ...} errors."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import NetbayError
from .api import Api
from .docker_json import API_VERSION

log = logging.getLogger("netbayd")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"netbay/{__version__}"
    server: UnixHTTPServer

    def address_string(self) -> str:  # unix sockets have no peer address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _read_body(self) -> bytes:
        """Content-Length or chunked (Go's client streams bodies of unknown length so)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        body: Any = None
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            return self._send(400, {"message": "malformed request body framing"})
        if raw:
            try:
                body = json.loads(raw) if raw.strip() else None
            except json.JSONDecodeError as exc:
                return self._send(400, {"message": f"invalid JSON body: {exc}"})
            if body is not None and not isinstance(body, dict):
                return self._send(400, {"message": "invalid JSON body: expected an object"})
        try:
            status, payload = self.server.api.dispatch(self.command, self.path, body)
        except NetbayError as exc:
            status, payload = exc.http_status, {"message": str(exc)}
        except Exception as exc:  # never leave the client without an answer
            log.exception("%s %s failed", self.command, self.path)
            status, payload = 500, {"message": f"internal error: {exc}"}
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        if payload is None:
            data = b""
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = json.dumps(payload).encode() + b"\n"
        self.send_response(status)
        ctype = "text/plain; charset=utf-8" if isinstance(payload, str) else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _handle


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # many thin clients (CLI, CNI, netavark) connect at once

    def __init__(self, socket_path: Path, api: Api) -> None:
        self.api = api
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        super().__init__(str(socket_path), _Handler)
        os.chmod(socket_path, 0o660)
