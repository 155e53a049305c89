"""BIRD 2 run by netbay: its configuration checked (`bird -p`) before it replaces the old one,
the daemon started as netbay's own child (tracked by PID, never looked up by name), reloaded
(`birdc configure`), restarted when it dies, stopped; its BGP sessions read back from its
control socket (`birdc show protocols all`).

BIRD outlives the netbayd that started it (detach(): a daemon stopping, or killed, is no
reason for the peers to withdraw this node's routes), and the next netbayd adopts it through
its PID file: the PID, its start time (against PID reuse), /proc/PID/exe a BIRD and its
command line naming this configuration. Only stop() ends it.

BIRD runs in the network namespace of the thread that calls start() (the daemon's): the
thread that restarts it is started by start(), and a thread begins in its creator's
namespace. A restarted BIRD is started with -R (graceful restart recovery): the routes the
dead one installed are still in the kernel (the configuration makes them persist), and the
new one keeps them until its sessions are back, for at most the configured wait.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import _linux
from ..errors import ConfigError, KernelError

log = logging.getLogger("netbayd")

READY_TIMEOUT = 10.0  # for a started BIRD to answer on its control socket
COMMAND_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0  # after SIGTERM, before SIGKILL
RESTART_MIN, RESTART_MAX = 0.5, 30.0  # the pause before a restart, doubling while it dies young
STABLE = 60.0  # a BIRD that lived this long resets the pause
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with its NUL
_PARSE_ERROR = re.compile(r"(?:bird: )?(?:.*?):(\d+):(\d+) (.*)")
_PROTOCOL_LINE = re.compile(
    r"(?P<name>\S+)\s+(?P<proto>\S+)\s+\S+\s+\S+\s+(?P<since>\d+)\s*(?P<info>.*)")
_ROUTES = re.compile(r"Routes:\s+(\d+) imported, (?:(\d+) filtered, )?(\d+) exported")


@dataclass(frozen=True)
class BgpSession:
    """One BGP session, as BIRD reports it."""

    name: str  # BIRD's protocol name (plan/bird.py protocol_name)
    description: str  # the peer's name
    neighbor: str  # the peer's address
    state: str  # Idle, Connect, Active, OpenSent, OpenConfirm or Established
    since: int  # unix time of its last change of state
    info: str  # BIRD's summary: the state and, if any, the last error
    imported: int  # routes received and accepted
    exported: int  # routes announced

    @property
    def established(self) -> bool:
        return self.state == "Established"


def parse_sessions(text: str) -> list[BgpSession]:
    """The BGP sessions of `birdc show protocols all` TEXT (the configuration's timeformat
    gives `since` in unix seconds)."""
    sessions: list[BgpSession] = []
    fields: dict[str, str] = {}
    routes: list[str] = []  # "Routes:" recurs, once per channel (ipv4, ipv6)

    def flush() -> None:
        if fields.get("proto") == "BGP":
            sessions.append(_session(fields, routes))
        fields.clear()
        routes.clear()

    for line in text.splitlines():
        head = _PROTOCOL_LINE.fullmatch(line) if line[:1].strip() else None
        if head is not None:
            flush()
            fields.update(head.groupdict())
        elif fields and ":" in line:
            key, _, value = line.strip().partition(":")
            fields.setdefault(key, value.strip())  # the first of a key the channels repeat
            if key == "Routes":
                routes.append(value.strip())
    flush()
    return sessions


def _session(fields: dict[str, str], routes: list[str]) -> BgpSession:
    """FIELDS of one session; its routes counted over all its channels (ROUTES)."""
    counts = [found for line in routes if (found := _ROUTES.match("Routes: " + line))]
    imported = sum(int(found.group(1)) for found in counts)
    exported = sum(int(found.group(3)) for found in counts)
    return BgpSession(
        name=fields["name"], description=fields.get("Description", ""),
        neighbor=fields.get("Neighbor address", ""),
        state=fields.get("BGP state", fields["info"].split(" ", 1)[0]),
        since=int(fields["since"]), info=" ".join(fields["info"].split()),
        imported=imported, exported=exported)


def _missing(program: str, exc: OSError) -> KernelError:
    return KernelError(f"{program} is not installed (Debian: apt-get install bird2)",
                       exc.errno or 0)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
    except FileNotFoundError as exc:
        raise _missing(argv[0], exc) from exc


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class _Bird:
    """The supervised BIRD: netbay's child (PROC), or one an earlier netbayd started (watched
    by PID and start time: it is not this process's child to wait for)."""

    def __init__(
        self, pid: int, started: int, proc: subprocess.Popen[bytes] | None = None
    ) -> None:
        self.pid, self.started, self.proc = pid, started, proc

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return _linux.process_alive(self.pid, self.started)

    def status(self) -> str:
        return "unknown" if self.proc is None else str(self.proc.returncode)

    def end(self) -> None:
        """SIGTERM, then SIGKILL; returns once it is gone."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc is not None:
                self.proc.send_signal(sig)  # nothing once it was reaped: its PID may be reused
            elif self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
            if self._gone(STOP_TIMEOUT):
                return

    def _gone(self, timeout: float) -> bool:
        if self.proc is None:
            return _wait_gone(self.pid, self.started, timeout)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False


class BirdSupervisor:
    """One BIRD: configuration at CONFIG, control socket at CONTROL_SOCKET, its output
    (the configuration logs to stderr) appended to LOG."""

    def __init__(self, config: Path, control_socket: Path, log_file: Path, *,
                 bird: str = "bird", birdc: str = "birdc") -> None:
        if len(os.fsencode(control_socket)) > MAX_SOCKET_PATH:
            raise ConfigError("control socket", str(control_socket),
                              f"longer than {MAX_SOCKET_PATH} bytes")
        self.config = config
        self.control_socket = control_socket
        self.log_file = log_file
        self.pid_file = config.with_suffix(".pid")
        self._bird_program, self._birdc_program = bird, birdc
        self._lock = threading.RLock()  # one change of the process or its configuration at a time
        self._bird: _Bird | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running BIRD's PID (None while there is none)."""
        bird = self._bird
        return bird.pid if bird is not None and bird.alive() else None

    # --- configuration ------------------------------------------------------------------
    def apply(self, text: str) -> None:
        """Make TEXT the configuration: checked first (a bad one raises a one-line
        ConfigError and changes nothing, neither the file nor the running BIRD), then put in
        place of the old one atomically and loaded by the running BIRD, if there is one."""
        with self._lock:
            candidate = self.config.with_name(self.config.name + ".new")
            try:
                with open(candidate, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                self.check(candidate)
                os.replace(candidate, self.config)
            finally:
                candidate.unlink(missing_ok=True)
            if self.pid is not None:
                self._configure()

    def check(self, path: Path) -> None:
        """`bird -p`: raise a ConfigError naming the line BIRD refused in PATH."""
        done = _run([self._bird_program, "-p", "-c", str(path)])
        if done.returncode == 0:
            return
        said = _last_line(done.stderr + done.stdout)
        where = _PARSE_ERROR.fullmatch(said)
        reason = f"line {where[1]} column {where[2]}: {where[3]}" if where else said
        raise ConfigError("bird configuration", str(self.config), reason)

    def _configure(self) -> None:
        said = self._birdc("configure")
        if "Reconfigured" not in said and "Reconfiguration in progress" not in said:
            raise KernelError(f"bird did not take {self.config}: {_last_line(said)}")

    def _birdc(self, *command: str) -> str:
        done = _run([self._birdc_program, "-s", str(self.control_socket), *command])
        if done.returncode != 0:
            raise KernelError(f"birdc {' '.join(command)}: {_last_line(done.stderr + done.stdout)}")
        return done.stdout

    def sessions(self) -> list[BgpSession]:
        """Every BGP session of the running BIRD (KernelError if none answers)."""
        return parse_sessions(self._birdc("show", "protocols", "all"))

    # --- the process --------------------------------------------------------------------
    def start(self) -> None:
        """Keep BIRD running with the configuration applied last, until stop() or detach():
        the one an earlier netbayd left running (adopted and reconfigured), else a new one
        (recovering by graceful restart if one had run)."""
        with self._lock:
            if self._watcher is not None:
                return
            recover = self.pid_file.exists()
            self._bird = self._left_running()
            if self._bird is not None and not self._adopted():
                self._end()
            if self._bird is None:
                self._spawn(recover)
            self._stopping.clear()
            self._watcher = threading.Thread(target=self._watch, name="bird-supervisor",
                                             daemon=True)
            self._watcher.start()

    def _left_running(self) -> _Bird | None:
        """The BIRD of this configuration that the PID file names, if it still runs: the
        same PID and start time, /proc/PID/exe a BIRD, its command line `-c CONFIG`."""
        try:
            pid, started = (int(f) for f in self.pid_file.read_text().split())
            exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")  # upgraded
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        config = os.fsencode(self.config)
        ours = Path(exe).name == Path(self._bird_program).name and any(
            flag == b"-c" and value == config for flag, value in itertools.pairwise(argv))
        return _Bird(pid, started) if ours and _linux.process_alive(pid, started) else None

    def _adopted(self) -> bool:
        """Whether the BIRD left running took the current configuration."""
        assert self._bird is not None
        try:
            self._configure()
        except KernelError as exc:
            log.warning("the BIRD (pid %d) a previous netbayd left running does not answer "
                        "(%s): replacing it", self._bird.pid, exc)
            return False
        log.info("bird (pid %d) adopted from a previous netbayd", self._bird.pid)
        return True

    def _spawn(self, recover: bool) -> None:
        argv = [self._bird_program, "-f", "-c", str(self.config), "-s", str(self.control_socket)]
        with open(self.log_file, "ab") as output:
            try:  # a session of its own: it outlives netbayd, and a Ctrl-C meant for it
                proc = subprocess.Popen(argv + (["-R"] if recover else []),
                                        stdin=subprocess.DEVNULL, stdout=output,
                                        stderr=subprocess.STDOUT, close_fds=True,
                                        start_new_session=True)
            except FileNotFoundError as exc:
                raise _missing(self._bird_program, exc) from exc
        started = _linux.process_start_time(proc.pid)
        self._bird = _Bird(proc.pid, started, proc)
        # whole or not at all: a reader (the next netbayd) never sees it empty
        partial = self.pid_file.with_name(self.pid_file.name + ".new")
        partial.write_text(f"{proc.pid} {started}\n")
        os.replace(partial, self.pid_file)
        if not self._ready(proc):
            self._end()
            raise KernelError(f"bird did not start: {self._log_tail()}")
        log.info("bird started (pid %d)%s", proc.pid, " recovering" if recover else "")

    def _ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """Wait until BIRD greets on its control socket; False if PROC exits or never does."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
                control.settimeout(1.0)
                with contextlib.suppress(OSError):
                    control.connect(str(self.control_socket))
                    if control.recv(256).startswith(b"0001 "):  # "0001 BIRD 2.0.12 ready."
                        return True
            try:
                proc.wait(0.05)
                return False
            except subprocess.TimeoutExpired:
                pass
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return _last_line(self.log_file.read_text(errors="replace")) or "no output"
        return "no output"

    def _watch(self) -> None:
        pause, started = RESTART_MIN, time.monotonic()
        while not self._stopping.is_set():
            bird = self._bird
            if bird is not None and bird.alive():
                self._stopping.wait(0.1)
                continue
            if bird is not None:
                log.warning("bird (pid %d) ended (status %s): %s", bird.pid, bird.status(),
                            self._log_tail())
            if time.monotonic() - started > STABLE:
                pause = RESTART_MIN
            if self._stopping.wait(pause):
                return
            self._restart()
            pause, started = min(pause * 2, RESTART_MAX), time.monotonic()

    def _restart(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self.restarts += 1
            try:
                self._spawn(recover=True)
            except KernelError as exc:  # the watcher tries again after a longer pause
                log.error("%s", exc)
                self._bird = None

    def detach(self) -> None:
        """Stop supervising and leave BIRD running, its PID file naming it for the next
        netbayd: the peers keep this node's routes, the kernel keeps theirs."""
        self._stop_watching()
        with self._lock:
            bird, self._bird = self._bird, None
        if bird is not None and bird.alive():
            log.info("bird (pid %d) left running", bird.pid)

    def stop(self) -> None:
        """Stop BIRD (SIGTERM, then SIGKILL), also one an earlier netbayd left running, and
        its watcher; the kernel keeps its routes."""
        self._stop_watching()
        with self._lock:
            self._bird = self._bird or self._left_running()
            self._end()

    def _stop_watching(self) -> None:
        self._stopping.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join(timeout=STOP_TIMEOUT + READY_TIMEOUT)

    def _end(self) -> None:
        bird, self._bird = self._bird, None
        if bird is not None:
            bird.end()
        self.pid_file.unlink(missing_ok=True)


def _wait_gone(pid: int, started: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _linux.process_alive(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
