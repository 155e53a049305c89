"""Test helpers: run the CLI, snapshot kernel and store state, kill recorded processes, wait
for a condition."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from netbay import _linux
from netbay.paths import Paths

if TYPE_CHECKING:
    from realhost import RealHost

T = TypeVar("T")


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """PREDICATE's first truthy value, asked every INTERVAL seconds for up to TIMEOUT
    seconds; else its last (falsy) one. For a wait that goes on either way; wait_until fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str, *, interval: float = 0.05
) -> T:
    """PREDICATE's first truthy value within TIMEOUT seconds; an AssertionError saying it
    waited for WHAT when none comes."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"waited {timeout:g} s for {what}: it did not happen")
    return value


def kill_recorded_processes(db: Path) -> None:
    """SIGKILL the container processes the record names (PID and start time both match)."""
    if not db.exists():
        return
    with contextlib.closing(sqlite3.connect(str(db), timeout=30)) as conn:
        rows = conn.execute("SELECT pid, pid_start FROM containers WHERE pid > 0").fetchall()
    for pid, start in rows:
        if _linux.process_alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)  # the container's whole process group
                else:
                    os.kill(pid, signal.SIGKILL)


def link_names(netns: Path | None = None) -> set[str]:
    from netbay.kernel.rtnetlink import Rtnetlink

    with Rtnetlink(netns) as nl:
        return {link.name for link in nl.links()}


class Env:
    """The CLI and daemon of one test, all inside the test's host: the real host's sandbox
    (HOST) when there is one, else a throwaway network namespace."""

    def __init__(self, paths: Paths, tmp: Path, host: RealHost | None = None) -> None:
        self.paths = paths
        self.tmp = tmp
        self.host = host
        # what runs a command where the daemon runs (runtimes' plugins take it too)
        self.enter: tuple[str, ...] = host.enter if host is not None else ()
        self.environ = dict(os.environ)
        self.environ.update(
            NETBAY_ROOT=str(paths.root),
            NETBAY_SOCKET=str(paths.socket),
            NETBAY_NETNS_DIR=str(paths.netns_dir),
        )
        self.cleanups: list[Any] = []

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.enter, sys.executable, "-m", "netbay", *args],
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"netbay {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def host_pid(self, pid: int) -> int:
        """PID as netbay records it (the daemon's view) turned into this test's view; a
        LookupError if no such process runs on the real host (never a pid to signal)."""
        if self.host is None:
            return pid
        found = self.host.host_pid(pid)
        if found is None:
            raise LookupError(f"no process {pid} on the test's real host")
        return found

    def _pid_file(self) -> int | None:
        try:
            return int((self.paths.root / "netbayd.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def daemon_pid(self) -> int | None:
        """The daemon's pid as this test sees it (None: no pid file, or no such process on
        the real host)."""
        pid = self._pid_file()
        if pid is None or self.host is None:
            return pid
        return self.host.host_pid(pid)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        if self.host is None:  # the real host's end stops everything in it at once
            self.stop_daemon()

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        if self._pid_file() is None and self.paths.daemon_log.exists():
            # a daemon may be starting: it writes its pid file right after taking its lock
            poll(self._pid_file, 3)
        pid = self.daemon_pid()
        if pid is None:
            return
        start = _linux.process_start_time(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        poll(lambda: not _linux.process_alive(pid, start), 10, interval=0.02)
        if _linux.process_alive(pid, start):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)

    def in_container(
        self, name: str, *cmd: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run("exec", name, "--", *cmd, check=check)


def api_get(paths: Paths, path: str) -> tuple[int, Any]:
    """GET PATH from netbayd's socket: (status, JSON body) whatever the status (netbay's own
    client raises on an error status)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    conn = http.client.HTTPConnection("netbay")
    conn.sock = sock
    try:
        sock.connect(str(paths.socket))
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def store_rows(db: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(str(db), timeout=30)) as conn:
        out = []
        for table in ("networks", "containers", "endpoints"):
            out += [(table, *r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
        return out


def netns_files(paths: Paths) -> set[str]:
    return {p.name for p in paths.netns_dir.iterdir()} if paths.netns_dir.exists() else set()


def snapshot(paths: Paths) -> dict[str, Any]:
    """Kernel and store state of the test host, to compare before and after a refused call."""
    return {
        "links": link_names(),
        "netns": netns_files(paths),
        "store": store_rows(paths.db) if paths.db.exists() else [],
    }


PROBE = str(Path(__file__).with_name("netprobe.py"))


def tcp_answer(address: str, port: int) -> str:
    """What netprobe's TCP client got from ADDRESS:PORT ("HOST saw PEER" from a tcp-serve)."""
    return subprocess.run([sys.executable, PROBE, "tcp", address, str(port)],
                          capture_output=True, text=True).stdout


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A shell command in the test's host namespace (test set-up only, never netbay's path)."""
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{command!r} failed: {result.stderr}")
    return result


class Lan:
    """Another machine, as a network namespace: commands and servers run inside it."""

    def __init__(self, netns: Path) -> None:
        self.netns = netns
        self._servers: list[subprocess.Popen[bytes]] = []

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net={self.netns}", *cmd]

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(f"nsenter --net={self.netns} bash -c {shlex.quote(command)}", check)

    def serve(self, mode: str, port: int) -> None:
        self._servers.append(subprocess.Popen(self.argv(sys.executable, PROBE, mode, str(port))))

    def stop(self) -> None:
        for server in self._servers:
            server.kill()
            server.wait()
