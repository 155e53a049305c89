"""A thin client of netbayd over its unix socket; starts the daemon when it is not running.

Standard library only: the CLI (and later the CNI plugin and podman backend) import this,
and must start fast.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote, urlencode

from .errors import DaemonError, NetbayError
from .paths import Paths


class ApiError(NetbayError):
    def __init__(self, status: int, message: str) -> None:
        self.http_status = status
        super().__init__(message)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    def __init__(self, paths: Paths | None = None, autostart: bool = True, timeout: float = 120):
        self.paths = paths or Paths.from_env()
        self.autostart = autostart and not os.environ.get("NETBAY_NO_AUTOSTART")
        self.timeout = timeout
        self._conn: _UnixConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _raw(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = _UnixConnection(str(self.paths.socket), self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and not attempt:
                    continue  # an idle kept-alive connection the daemon closed: safe to resend
                raise DaemonError(
                    f"netbayd closed the connection during {method} {path}; "
                    f"see {self.paths.daemon_log}"
                ) from exc
            except OSError:
                self.close()
                raise
        text = raw.decode() if raw else ""
        ctype = response.getheader("Content-Type", "")
        payload = json.loads(text) if text and "json" in ctype else text
        return response.status, payload

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
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

    def start_daemon(self, wait: float = 30.0) -> None:
        """Start netbayd detached (its own session, output to its log); wait for the socket.

        Many clients may race here: the daemon's lock lets one win, the rest exit quietly.
        """
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
    return "/" + "/".join(quote(p, safe="") for p in parts)
