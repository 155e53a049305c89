"""A real host for the e2e tier: a sandbox with its own network, mount and PID namespaces
whose /sys, /run and netbay state directory are its own, as a machine's are.

Layout (RealHost starts it; `python realhost.py STATE` is its launcher and PID 1):

    network namespace N   `lo` up; every link, route and nft table of the test
    mount namespace A     a private copy of the test runner's: a tmpfs on /run (the runner's
                          /run/netns mount removed first, as a booted host has none), a
                          sysfs mounted afresh from inside N on /sys, a tmpfs on STATE (the
                          daemon's state root); made shared within the sandbox only
    mount namespace B     a copy of A whose mounts are A's peers, plus a procfs of P on /proc
    PID namespace P       PID 1 (a reaper) lives in B; the CLI, the daemon, the runtimes'
                          plugins and the containers run here (`RealHost.enter`)

The test's thread joins N and A: its own /proc stays the runner's (it is not in P), while
links, mounts, files and sockets are the ones the daemon sees, mounts made on either side
showing on the other. PIDs in netbay's record are P's: `host_pid` turns them into the
test's. Nothing is made in the runner's namespaces; teardown kills PID 1 (the kernel then
kills all of P) and every other process left in N, A or B, so the namespaces, and every
mount, link and nft table in them, go with the last reference, whatever the test did.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from netbay import _linux

CLONE_FS = 0x00000200
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
READY_TIMEOUT = 30.0
SYS_FLAGS = _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC
# mounted afresh after a new sysfs: runc (podman) cannot start containers without them
CGROUPS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def _die_with_parent() -> None:
    """SIGKILL this process when the thread that started it ends (a killed test run)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _ns_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:  # gone, a zombie, or not ours to look at
        return None


# --- inside: the launcher and PID 1 ---------------------------------------------------------
def _mount_cgroups() -> None:
    root = "/sys/fs/cgroup"
    _linux.mount("tmpfs", root, "tmpfs", SYS_FLAGS)
    hierarchies = [(c, c) for c in CGROUPS] + [("systemd", "none,name=systemd")]
    for name, options in hierarchies:
        os.mkdir(f"{root}/{name}")
        subprocess.run(["mount", "-t", "cgroup", "-o", options, "cgroup", f"{root}/{name}"],
                       check=True)
    os.mkdir(f"{root}/unified")
    _linux.mount("cgroup2", f"{root}/unified", "cgroup2", SYS_FLAGS)


def _drop_foreign_pins() -> None:
    """The copies of namespace pins the runner had mounted (other tests', `ip netns`'):
    a booted host has none, and a copy would keep its namespace alive for its owner."""
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        pins = [f[4] for f in map(str.split, info) if f[f.index("-") + 1] == "nsfs"]
    for pin in pins:
        with contextlib.suppress(OSError):  # already gone with a detached parent
            _linux.umount(pin)


def _host_mounts(state: Path, cgroups: bool) -> None:
    """Mount namespace A, as a booted machine has it (see the module's docstring)."""
    _drop_foreign_pins()
    with contextlib.suppress(OSError):  # EINVAL: /run/netns is no mount point here
        _linux.umount("/run/netns")
    _linux.mount("tmpfs", "/run", "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV)
    _linux.umount("/sys")
    _linux.mount("sysfs", "/sys", "sysfs", SYS_FLAGS)  # this thread is in N: N's devices
    if cgroups:
        _mount_cgroups()
    state.mkdir(parents=True, exist_ok=True)
    _linux.mount("tmpfs", str(state), "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Shared within the sandbox (A and B are peers); the runner's mounts were made private
    # by the launcher, so nothing propagates out. /proc stays apart: B mounts P's over it.
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_SHARED)
    _linux.mount(None, "/proc", None, _linux.MS_REC | _linux.MS_PRIVATE)


def _reap_forever() -> None:
    """PID 1's one duty: every orphan of P is reparented here and must be waited for."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        signal.sigwait({signal.SIGCHLD})


def _init(state: Path, cgroups: bool) -> None:
    _die_with_parent()
    host_pid = int(os.readlink("/proc/self"))  # the runner's procfs: the pid the test sees
    _host_mounts(state, cgroups)
    mount_a = os.open("/proc/self/ns/mnt", os.O_RDONLY)  # kept open: the test joins A
    _linux.unshare(_linux.CLONE_NEWNS)
    _linux.mount("proc", "/proc", "proc", SYS_FLAGS)
    print(host_pid, mount_a, flush=True)
    _reap_forever()


def launch(state: Path, cgroups: bool) -> int:
    """The launcher: new namespaces, then PID 1 as its child; exits when PID 1 does."""
    _die_with_parent()
    _linux.unshare(_linux.CLONE_NEWNS | _linux.CLONE_NEWNET | CLONE_NEWPID)
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
    child = os.fork()
    if child == 0:
        try:
            _init(state, cgroups)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


# --- outside: the test's side -------------------------------------------------------------
class RealHost:
    """The sandbox of one test; the test's thread is inside (N, A) between start and stop."""

    def __init__(self, state: Path, cgroups: bool = False) -> None:
        self.state = state
        self.cgroups = cgroups
        self.pid = 0  # PID 1 of the sandbox, as the test sees it
        self._start = 0
        self._launcher: subprocess.Popen[bytes] | None = None
        self._fds: dict[str, int] = {}
        self._inodes: dict[str, int] = {}
        self._cwd = os.getcwd()

    @property
    def netns(self) -> Path:
        """The sandbox's network namespace, as a path any process of the test can open."""
        return Path(f"/proc/{self.pid}/ns/net")

    @property
    def enter(self) -> tuple[str, ...]:
        """The argv prefix that runs a command inside: mount namespace B and PID namespace P
        (the network namespace is the test thread's already)."""
        return ("nsenter", "-t", str(self.pid), "-a", f"--wd={self._cwd}")

    def start(self) -> None:
        argv = [sys.executable, __file__, str(self.state)] + (["--cgroups"] if self.cgroups
                                                              else [])
        self._launcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._launcher.stdout is not None
        ready, _, _ = select.select([self._launcher.stdout], [], [], READY_TIMEOUT)
        line = self._launcher.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the real-host sandbox did not start: {self._errors()}")
        pid, mount_fd = map(int, line.split())
        self.pid, self._start = pid, _linux.process_start_time(pid)
        # Held open until stop() ends: a namespace's inode number is reused as soon as it is
        # freed, and teardown finds the sandbox's processes by these numbers.
        for name, path in (("mnt-a", f"fd/{mount_fd}"), ("mnt-b", "ns/mnt"),
                           ("net", "ns/net"), ("pid", "ns/pid")):
            self._fds[name] = os.open(f"/proc/{pid}/{path}", os.O_RDONLY | os.O_CLOEXEC)
            self._inodes[name] = os.fstat(self._fds[name]).st_ino
        self._join()

    def _errors(self) -> str:
        if self._launcher is None or self._launcher.stderr is None:
            return ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._launcher.wait(5)
        return self._launcher.stderr.read().decode(errors="replace")[-2000:]

    def _join(self) -> None:
        """This thread into N and A (setns into a mount namespace needs a private fs)."""
        self._fds["home-net"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds["home-mnt"] = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        _linux.unshare(CLONE_FS)
        _linux.setns(self._fds["net"], _linux.CLONE_NEWNET)
        _linux.setns(self._fds["mnt-a"], _linux.CLONE_NEWNS)
        os.chdir(self._cwd)  # setns put this thread at the namespace's root

    def _leave(self) -> None:
        if "home-mnt" in self._fds:
            _linux.unshare(CLONE_FS)  # threads the test started share this thread's again
            _linux.setns(self._fds["home-net"], _linux.CLONE_NEWNET)
            _linux.setns(self._fds["home-mnt"], _linux.CLONE_NEWNS)
            os.chdir(self._cwd)

    def host_pid(self, pid: int) -> int | None:
        """The test's pid of the process that is PID in the sandbox (None: no such process)."""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or _ns_inode(entry.name, "pid") != self._inodes["pid"]:
                continue
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            ids = status.partition("NSpid:")[2].split("\n", 1)[0].split()
            if ids and int(ids[-1]) == pid:
                return int(entry.name)
        return None

    def _inside(self, pid: int | str) -> bool:
        ours = set(self._inodes.values())
        return any(_ns_inode(pid, kind) in ours for kind in ("mnt", "net", "pid"))

    def leftovers(self) -> list[int]:
        """Processes, as the test sees them, in any namespace of the sandbox."""
        return [int(e.name) for e in os.scandir("/proc")
                if e.name.isdigit() and int(e.name) != os.getpid() and self._inside(e.name)]

    def _kill(self, pid: int) -> None:
        """SIGKILL PID if it is still one of the sandbox's: checked after taking a pidfd, so
        a pid reused meanwhile by another process is never signalled."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            if self._inside(pid):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    def _kill_leftovers(self) -> None:
        """What the test started inside from its own PID namespace (servers in the
        sandbox's namespaces, a runtime): until they are gone, so are not the mounts."""
        deadline = time.monotonic() + 10
        while (left := self.leftovers()) and time.monotonic() < deadline:
            for pid in left:
                self._kill(pid)
            time.sleep(0.02)
        if left:
            raise RuntimeError(f"processes {left} outlived the real-host sandbox")

    def stop(self) -> None:
        """Leave, kill PID 1 (with it all of P), then what the test started in N, A or B."""
        self._leave()
        if self.pid and _linux.process_alive(self.pid, self._start):
            os.kill(self.pid, signal.SIGKILL)
        if self._launcher is not None:
            self._launcher.wait(30)
            for stream in (self._launcher.stdout, self._launcher.stderr):
                if stream is not None:
                    stream.close()
        if self._inodes:
            self._kill_leftovers()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


if __name__ == "__main__":
    sys.exit(launch(Path(sys.argv[1]), "--cgroups" in sys.argv[2:]))
