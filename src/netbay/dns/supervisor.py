"""The daemon's side of the DNS server: start it when the first user-defined bridge network
exists (in the background, so the network's first container does not wait ~0.1 s for a
Python process to start), make it listen on a network's gateway before that network's first
container can ask, restart it when it dies.

The server is a child process (`python -m netbay.dns`), spawned by one long-lived thread (a
child's PR_SET_PDEATHSIG fires when the thread that forked it exits). A SEQPACKET socket pair
joins them: the server says "ready ADDRS" once it serves what the record holds; `sync()`
sends "sync" and waits for "ok ADDRS" whenever the set of listen points changes. Names
themselves need no message: the server rereads the record whenever it changed.

Phases: idle (nothing needs it yet) -> starting -> running; a server that dies or fails to
start puts it in backoff (0.05 s, doubling up to 5 s while it keeps dying young), then
starting again. API calls never wait out a backoff: the restarted server loads the whole
record, so nothing done meanwhile is missed.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time

from ..paths import Paths
from ..store.base import Store
from .records import ListenPoint, listen_points, serves

log = logging.getLogger("netbayd")

READY_TIMEOUT = 10.0
SYNC_TIMEOUT = 5.0
BACKOFF_MIN, BACKOFF_MAX = 0.05, 5.0
STABLE = 10.0  # a server that lived this long resets the back-off
IDLE, STARTING, RUNNING, BACKOFF, CLOSED = "idle", "starting", "running", "backoff", "closed"


class DnsSupervisor:
    def __init__(self, paths: Paths, store: Store, *, port: int | None = None) -> None:
        self.paths = paths
        self.store = store
        self.port = port
        self.pid_file = paths.root / "netbay-dns.pid"
        self._cond = threading.Condition()
        self._sync_lock = threading.Lock()
        self._phase = IDLE
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._served: list[str] | None = None  # what the running server said it serves
        self._thread = threading.Thread(target=self._run, name="dns-supervisor", daemon=True)
        self._thread.start()

    # --- called by the API after each change ------------------------------------------------
    def wanted_points(self) -> list[ListenPoint]:
        return listen_points(self.store.networks(), lambda nid: self.store.endpoint_count(nid) > 0)

    def sync(self) -> None:
        """Return once the server listens on every gateway the record needs (or log why not).
        Never raises: name resolution must not fail the change that came before it."""
        try:
            self._sync()
        except Exception:
            log.exception("netbay-dns sync failed")

    def _sync(self) -> None:
        with self._sync_lock:
            wanted = sorted({str(p.address) for p in self.wanted_points()})
            if not wanted and self._phase == IDLE:
                if any(serves(n) and not n.builtin for n in self.store.networks()):
                    self._set(STARTING)  # warm it up; nothing waits for it yet
                return
            if not self._wait_running():
                log.warning("netbay-dns is not running; names will resolve once it is back")
                return
            if self._served == wanted:
                return
            served = self._ask_sync()
            if served is None and self._wait_running():
                served = self._served  # it died meanwhile: the restarted one loaded everything
            if served is not None and set(wanted) - set(served):
                log.warning("netbay-dns does not listen on %s", sorted(set(wanted) - set(served)))

    def _wait_running(self) -> bool:
        with self._cond:
            if self._phase == IDLE:
                self._phase = STARTING
                self._cond.notify_all()
            self._cond.wait_for(lambda: self._phase != STARTING, READY_TIMEOUT)
            return self._phase == RUNNING

    def _ask_sync(self) -> list[str] | None:
        control = self._control
        if control is None:
            return None
        try:
            control.settimeout(SYNC_TIMEOUT)
            control.send(b"sync")
            reply = control.recv(65536).decode()
        except OSError:
            return None
        if not reply.startswith("ok"):
            return None
        self._served = [a for a in reply[3:].split(",") if a]
        return self._served

    # --- the supervising thread -------------------------------------------------------------
    def _set(self, phase: str) -> None:
        with self._cond:
            if self._phase != CLOSED:
                self._phase = phase
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._phase in (STARTING, CLOSED))
                if self._phase == CLOSED:
                    return
            started = time.monotonic()
            proc = self._start()
            if proc is not None:
                self._watch(proc)
            if self._phase == CLOSED:
                if proc is not None:  # stopped here: this thread's exit would SIGKILL it
                    self._stop(proc)
                return
            lived = time.monotonic() - started
            backoff = BACKOFF_MIN if lived > STABLE else min(backoff * 2, BACKOFF_MAX)
            self._set(BACKOFF)
            with self._cond:
                if self._cond.wait_for(lambda: self._phase == CLOSED, backoff):
                    return
            self._set(STARTING)

    def _start(self) -> subprocess.Popen[bytes] | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [
            sys.executable, "-m", "netbay.dns", "--root", str(self.paths.root),
            "--control-fd", str(theirs.fileno()), "--parent", str(os.getpid()),
        ]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), close_fds=True
            )
        except OSError as exc:
            log.error("cannot start netbay-dns: %s", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        self._proc = proc
        ours.settimeout(READY_TIMEOUT)
        try:
            hello = ours.recv(65536).decode()
        except OSError:
            hello = ""
        if not hello.startswith("ready"):
            log.error("netbay-dns did not start (exit %s)", proc.poll())
            self._stop(proc)
            ours.close()
            return None
        self.pid_file.write_text(f"{proc.pid}\n")
        with self._cond:
            self._served = [a for a in hello[6:].split(",") if a]
            self._control = ours
        self._set(RUNNING)
        log.info("netbay-dns started (pid %d), serving %s", proc.pid, hello[6:] or "nothing")
        return proc

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        while proc.poll() is None:
            with self._cond:
                if self._cond.wait_for(lambda: self._phase == CLOSED, 0.1):
                    break
        with self._cond:
            control, self._control, self._served = self._control, None, None
        if control is not None:
            control.close()
        if self._phase != CLOSED:
            log.warning("netbay-dns (pid %d) exited with %s; restarting", proc.pid, proc.poll())

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        with self._cond:
            self._phase = CLOSED
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self.pid_file.unlink(missing_ok=True)
