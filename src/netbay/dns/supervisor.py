"""The daemon's side of the DNS server: start it when the first user-defined bridge network
exists (in the background, so the network's first container does not wait ~0.1 s for a
Python process to start), make it listen on a network's gateway before that network's first
container can ask, restart it when it dies. When a change needs listen points before any
server ran (one request made the network and its first container: a CNI ADD, a netavark
setup, a daemon restarted with containers), the daemon binds their sockets itself and starts
the server with them (`_start_bound`), so that change returns without waiting ~0.3 s for the
server to load; queries sent meanwhile wait in the sockets' queues.

The server is a child process (`python -m netbay.dns`), spawned by one long-lived thread (a
child's PR_SET_PDEATHSIG fires when the thread that forked it exits). A SEQPACKET socket pair
joins them: the server says "ready ADDRS" once it serves what the record holds; `sync()`
sends "sync" and waits for "ok ADDRS" whenever the set of listen points changes. Names
themselves need no message: the server rereads the record whenever it changed. `health()`
sends "health" and gets back what the server serves and what it cannot (the reply comes
from the loop that answers queries), for `netbay doctor` and GET /netbay/dns/health.

Phases: idle (nothing needs it yet) -> starting -> running; a server that dies or fails to
start puts it in backoff (0.05 s, doubling up to 5 s while it keeps dying young), then
starting again. API calls never wait out a backoff: the restarted server loads the whole
record, so nothing done meanwhile is missed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..model import Network
from ..paths import Paths
from ..store.base import Store
from .listen import PORT, Key, Pair, handoff_arg, key_of, open_pair
from .records import ListenPoint, listen_points, serves

log = logging.getLogger("netbayd")

READY_TIMEOUT = 10.0
SYNC_TIMEOUT = 5.0
HEALTH_TIMEOUT = 1.0  # a server that takes longer to read its control socket is stuck
BACKOFF_MIN, BACKOFF_MAX = 0.05, 5.0
STABLE = 10.0  # a server that lived this long resets the back-off
IDLE, STARTING, RUNNING, BACKOFF, CLOSED = "idle", "starting", "running", "backoff", "closed"


@dataclass(frozen=True)
class Exit:
    """How the last server ended (or failed to begin)."""

    pid: int | None
    how: str  # "was killed by SIGKILL", "exited with status 1", "did not start (...)"
    at: float  # time.monotonic()


def exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _addresses(text: str) -> list[str]:
    return [a for a in text.split(",") if a]


class DnsSupervisor:
    def __init__(self, paths: Paths, store: Store, *, port: int | None = None) -> None:
        self.paths = paths
        self.store = store
        self.port = port
        self.pid_file = paths.root / "netbay-dns.pid"
        self._cond = threading.Condition()
        self._sync_lock = threading.Lock()
        self._control_lock = threading.Lock()  # one request and its reply at a time
        self._phase = IDLE
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._served: list[str] | None = None  # what the running server said it serves
        self._started_at = 0.0  # time.monotonic() when the running server said ready
        self._retry_at = 0.0  # time.monotonic() when a backoff ends
        self._restarts = 0
        self._last_exit: Exit | None = None
        self._handoff: dict[Key, Pair] = {}  # bound here for the next server to serve
        self._thread = threading.Thread(target=self._run, name="dns-supervisor", daemon=True)
        self._thread.start()

    # --- called by the API after each change ------------------------------------------------
    def wanted_points(self, networks: list[Network] | None = None) -> list[ListenPoint]:
        """Where the record needs the server to listen (of NETWORKS, default: all of them)."""
        chosen = self.store.networks() if networks is None else networks
        return listen_points(chosen, lambda nid: self.store.endpoint_count(nid) > 0)

    def sync(self) -> None:
        """Return once the server listens on every gateway the record needs (or log why not).
        Never raises: name resolution must not fail the change that came before it."""
        try:
            self._sync()
        except Exception:
            log.exception("netbay-dns sync failed")

    def _sync(self) -> None:
        with self._sync_lock:
            points = self.wanted_points()
            wanted = sorted({str(p.address) for p in points})
            if self._phase == IDLE:
                if wanted:
                    self._start_bound(points)
                elif any(serves(n) and not n.builtin for n in self.store.networks()):
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

    def _start_bound(self, points: list[ListenPoint]) -> None:
        """Bind POINTS' sockets here and start the server with them (listen.py): a query
        sent before the server has loaded (~0.3 s of imports) waits in its socket, so the
        change that needs it does not wait for the server. A point that cannot be bound
        here is left to the server, which retries and reports it."""
        bound = {}
        for point in points:
            with contextlib.suppress(OSError):
                bound[key_of(point)] = open_pair(point, PORT if self.port is None else self.port)
        with self._cond:
            self._handoff = bound
        self._set(STARTING)

    def _wait_running(self) -> bool:
        with self._cond:
            if self._phase == IDLE:
                self._phase = STARTING
                self._cond.notify_all()
            self._cond.wait_for(lambda: self._phase != STARTING, READY_TIMEOUT)
            return self._phase == RUNNING

    def _ask_sync(self) -> list[str] | None:
        reply = self._request(b"sync", "ok", SYNC_TIMEOUT)
        if reply is None:
            return None
        self._served = _addresses(reply)
        return self._served

    def _request(self, message: bytes, tag: str, timeout: float) -> str | None:
        """Send MESSAGE to the server; the text of its reply after TAG, or None when it is
        gone or did not answer within TIMEOUT. A late reply to an earlier request that gave
        up waiting is skipped."""
        with self._control_lock:
            control = self._control
            if control is None:
                return None
            deadline = time.monotonic() + timeout
            try:
                control.settimeout(timeout)
                control.send(message)
                while reply := control.recv(65536).decode():
                    if reply.startswith(tag + " "):
                        return reply[len(tag) + 1:]
                    control.settimeout(max(deadline - time.monotonic(), 0.001))
            except OSError:
                pass
            return None

    # --- health -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The server as of now: the supervisor's phase; the running server's pid, what it
        says it serves and cannot serve, against what the record needs (address -> network
        name); how the last one ended and when the next start comes. `healthy`: it answers
        on every address the record needs, or nothing needs it yet."""
        networks = self.store.networks()
        names = {n.id: n.name for n in networks}
        wanted = {str(p.address): names[p.network_id] for p in self.wanted_points(networks)}
        with self._cond:
            phase, proc = self._phase, self._proc
        report: dict[str, Any] = {
            "phase": phase, "pid": None, "alive": False, "answered": False, "uptime": None,
            "wanted": wanted, "listening": [], "failed": {}, "restarts": self._restarts,
            "retry_in": None, "log": str(self.paths.daemon_log),
        }
        if phase == RUNNING and proc is not None:
            report.update(self._ask_health(proc))
        elif phase == BACKOFF:
            report["retry_in"] = round(max(self._retry_at - time.monotonic(), 0.0), 2)
        last = self._last_exit
        report["last_exit"] = None if last is None else {
            "pid": last.pid, "how": last.how, "ago": round(time.monotonic() - last.at, 2)}
        missing = set(wanted) - set(report["listening"])
        report["healthy"] = (report["answered"] and not missing) or (phase == IDLE and not wanted)
        return report

    def _ask_health(self, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        if proc.poll() is not None:  # died since the supervising thread last looked
            self._record_exit(proc.pid, exit_text(proc.returncode))
            return {"pid": proc.pid}
        reply = self._request(b"health", "health", HEALTH_TIMEOUT)
        out: dict[str, Any] = {"pid": proc.pid, "alive": True, "answered": reply is not None,
                               "uptime": round(time.monotonic() - self._started_at, 1)}
        if reply is not None:
            status = json.loads(reply)
            out.update(listening=status["listening"], failed=status["failed"])
        return out

    def _record_exit(self, pid: int | None, how: str) -> None:
        with self._cond:
            last = self._last_exit
            if pid is None or last is None or last.pid != pid:
                self._last_exit = Exit(pid, how, time.monotonic())

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
            self._restarts += 1
            self._retry_at = time.monotonic() + backoff
            self._set(BACKOFF)
            with self._cond:
                if self._cond.wait_for(lambda: self._phase == CLOSED, backoff):
                    return
            self._set(STARTING)

    def _start(self) -> subprocess.Popen[bytes] | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = self._spawn(theirs)
        if proc is None:
            ours.close()
            return None
        self._proc = proc
        ours.settimeout(READY_TIMEOUT)
        try:
            hello = ours.recv(65536).decode()
        except OSError:
            hello = ""
        if not hello.startswith("ready"):
            code = proc.poll()
            log.error("netbay-dns did not start (exit %s)", code)
            if code is None:
                self._record_exit(proc.pid, f"did not say ready within {READY_TIMEOUT:g} s")
            else:
                self._record_exit(proc.pid, f"did not start ({exit_text(code)})")
            self._stop(proc)
            ours.close()
            return None
        self.pid_file.write_text(f"{proc.pid}\n")
        with self._cond:
            self._served = _addresses(hello[6:])
            self._control = ours
            self._started_at = time.monotonic()
        self._set(RUNNING)
        log.info("netbay-dns started (pid %d), serving %s", proc.pid, hello[6:] or "nothing")
        return proc

    def _spawn(self, control: socket.socket) -> subprocess.Popen[bytes] | None:
        """The server's process, with CONTROL and the sockets bound for it (closed here
        either way: the child holds its copies)."""
        with self._cond:
            handoff, self._handoff = self._handoff, {}
        argv = [
            sys.executable, "-m", "netbay.dns", "--root", str(self.paths.root),
            "--control-fd", str(control.fileno()), "--parent", str(os.getpid()),
        ]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        for key, pair in handoff.items():
            argv += ["--listen", handoff_arg(key, pair)]
        inherited = [control, *(sock for pair in handoff.values() for sock in pair)]
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True,
                                    pass_fds=[sock.fileno() for sock in inherited])
        except OSError as exc:
            log.error("cannot start netbay-dns: %s", exc)
            self._record_exit(None, f"could not be started: {exc}")
            return None
        finally:
            for sock in inherited:
                sock.close()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        while proc.poll() is None:
            with self._cond:
                if self._cond.wait_for(lambda: self._phase == CLOSED, 0.1):
                    break
        with self._cond:
            control, self._control, self._served = self._control, None, None
        if control is not None:
            with self._control_lock:  # not under a request still waiting for its reply
                control.close()
        if self._phase != CLOSED:
            log.warning("netbay-dns (pid %d) exited with %s; restarting", proc.pid, proc.poll())
            self._record_exit(proc.pid, exit_text(proc.returncode))

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
        for pair in self._handoff.values():  # bound for a server that never started
            for sock in pair:
                sock.close()
        self.pid_file.unlink(missing_ok=True)
