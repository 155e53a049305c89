"""A thin client of netbayd over its unix socket; starts the daemon when it is not running.

Standard library only, and light: the CLI imports this for every command, so it speaks the
little HTTP/1.1 it needs on a plain `_socket` (http.client, socket and urllib.parse would
add ~40 ms of imports to each `netbay` command).
"""

from __future__ import annotations

import _socket
import json
import os
import time

from .errors import DaemonError, NetbayError
from .paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text: str) -> str:
    """Percent-encode everything but RFC 3986's unreserved characters (a path segment)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


class ApiError(NetbayError):
    def __init__(self, status: int, message: str) -> None:
        self.http_status = status
        super().__init__(message)


class Client:
    def __init__(self, paths: Paths | None = None, autostart: bool = True, timeout: float = 120):
        self.paths = paths or Paths.from_env()
        self.autostart = autostart and not os.environ.get("NETBAY_NO_AUTOSTART")
        self.timeout = timeout

    def close(self) -> None:
        """Nothing to release: each request has its own connection (a unix socket connect
        costs microseconds, and no idle kept-alive connection can be closed under us)."""

    def _raw(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: netbay\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self.paths.socket))
            sock.sendall(head.encode() + b"\r\n" + data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        finally:
            sock.close()
        status, ctype, raw = _response(b"".join(chunks))
        if status == 0:
            raise DaemonError(
                f"netbayd closed the connection during {method} {path}; "
                f"see {self.paths.daemon_log}"
            )
        text = raw.decode() if raw else ""
        payload = json.loads(text) if text and "json" in ctype else text
        return status, payload

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        if query:
            path += "?" + "&".join(
                f"{quote(k)}={quote(str(v))}" for k, v in query.items() if v is not None
            )
        try:
            status, payload = self._raw(method, path, body)
        except (FileNotFoundError, ConnectionRefusedError):
            if not self.autostart:
                raise DaemonError(
                    f"netbayd is not running (no socket at {self.paths.socket})"
                ) from None
            self.start_daemon()
            status, payload = self._raw(method, path, body)
        if status >= 400:
            message = payload.get("message") if isinstance(payload, dict) else str(payload)
            raise ApiError(status, message or f"HTTP {status}")
        return payload

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        return self.request("POST", path, body if body is not None else {}, **query)

    def delete(self, path: str, **query: Any) -> Any:
        return self.request("DELETE", path, **query)

    # --- daemon lifecycle --------------------------------------------------------------
    def ping(self) -> bool:
        try:
            status, _ = self._raw("GET", "/_ping")
            return status == 200
        except OSError:
            self.close()
            return False

    def start_daemon(self, wait: float = 30.0, options: Sequence[str] = ()) -> None:
        """Start netbayd detached (its own session, output to its log), with OPTIONS (its
        flags, e.g. --ipv6); wait for the socket.

        Many clients may race here: the daemon's lock lets one win, the rest exit quietly.
        """
        import subprocess  # only here: most commands find the daemon running
        import sys

        self.paths.root.mkdir(parents=True, exist_ok=True)
        with open(self.paths.daemon_log, "ab") as log:
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "netbay.daemon",
                    "--root",
                    str(self.paths.root),
                    "--socket",
                    str(self.paths.socket),
                    *options,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise DaemonError(f"netbayd did not start within {wait:.0f}s; see {self.paths.daemon_log}")


def path_of(*parts: str) -> str:
    return "/" + "/".join(quote(p) for p in parts)


def _response(data: bytes) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one whole HTTP/1.1 response read to the end of the
    connection; status 0 if there was none. The daemon always sends Content-Length."""
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[1].isdigit():
        return 0, "", b""
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    length = fields.get("content-length", "")
    if length.isdigit():
        body = body[: int(length)]
    return int(status[1]), fields.get("content-type", ""), body
