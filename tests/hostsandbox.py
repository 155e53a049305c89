"""A machine of its own for end-to-end tests, as a process tree in namespaces: network, mount,
UTS and PID. Used by the multi-host harness (tests/cluster.py) for each of its hosts, and
meant for any test that needs a host with its own /run, /sys and processes.

    host = HostSandbox("h1", tmp / "h1"); host.start()
    host.run(["ip", "-br", "link"])        # nsenter into all of its namespaces
    host.stop()                            # PID 1 killed: every process inside goes with it
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from netbay.kernel import netns

# TEST-NET-1: a resolver nobody answers, so no host sends queries off the machine
RESOLV_CONF = "nameserver 192.0.2.53\n"
# A process started with this prefix is killed when the thread that started it ends (a killed
# test run, where no teardown runs).
DIE_WITH_HARNESS = ("setpriv", "--pdeathsig", "KILL")

_INIT = r"""
set -e
# Copies of other namespaces' pins, made along with this mount namespace, would keep those
# namespaces alive as long as this host lives; the host has a /run/netns of its own.
awk '{ for (i = 7; $i != "-"; i++) ; if ($(i + 1) == "nsfs") print $5 }' /proc/self/mountinfo |
  while read -r pin; do umount -l "$pin" 2>/dev/null || :; done
if mountpoint -q /run/netns; then umount -l /run/netns; fi
mount -t tmpfs -o mode=0755 tmpfs /run
umount -l /sys  # with the runner's sysfs go the mounts under it (cgroups)
mount -t sysfs sysfs /sys
mount --bind "$2" /etc/resolv.conf
hostname "$1"
ip link set lo up
echo ready
exec tini -- sleep infinity >/dev/null
"""


def namespace_id(path: Path) -> str:
    """How /proc/PID/ns/net names the network namespace pinned at PATH: 'net:[inode]'."""
    return f"net:[{os.stat(path).st_ino}]"


def processes_in(namespaces: set[str]) -> list[int]:
    """PIDs of the processes whose network, mount or PID namespace is one of NAMESPACES
    ('net:[inode]', 'mnt:[...]', 'pid:[...]')."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            links = {os.readlink(f"{entry.path}/ns/{kind}") for kind in ("net", "mnt", "pid")}
            if links & namespaces:
                found.append(int(entry.name))
    return found


class HostSandbox:
    """A machine of its own: network, mount, UTS and PID namespaces, with a fresh /run
    (tmpfs), /sys (sysfs mounted from inside its network namespace), /proc, its name as
    hostname and an /etc/resolv.conf nobody answers. PID 1 inside is tini: killing it ends
    every process the host ran. The network namespace is pinned at DIRECTORY/net, so links
    can be moved in from outside."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.dir = directory
        self.netns = directory / "net"
        # what commands inside get (run()): none of the runner's netbay locations
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("NETBAY_")}
        self.init_pid = 0  # PID 1 inside, as the harness sees it
        self.namespaces: set[str] = set()  # its network, mount and PID namespaces
        self._unshare: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        resolv = self.dir / "resolv.conf"
        resolv.write_text(RESOLV_CONF)
        log = self.dir / "init.log"
        netns.create(self.netns)
        with open(log, "wb") as errors:
            self._unshare = subprocess.Popen(
                [*DIE_WITH_HARNESS, "nsenter", f"--net={self.netns}", "unshare", "--mount",
                 "--uts", "--pid", "--fork", "--kill-child", "--mount-proc",
                 # slave: what the runner unmounts later (others' pins) goes here too
                 "--propagation", "slave", "sh", "-c", _INIT, "init", self.name, str(resolv)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                start_new_session=True,  # a Ctrl-C meant for the harness is not for the host
            )
        assert self._unshare.stdout is not None
        with self._unshare.stdout as ready:
            if ready.readline() != b"ready\n":
                raise AssertionError(f"host {self.name} did not start: {log.read_text()}")
        children = Path(f"/proc/{self._unshare.pid}/task/{self._unshare.pid}/children")
        self.init_pid = int(children.read_text())
        self.namespaces = {os.readlink(f"/proc/{self.init_pid}/ns/{kind}")
                           for kind in ("net", "mnt", "pid")}

    def argv(self, argv: Sequence[str]) -> list[str]:
        """ARGV run inside the host (all its namespaces)."""
        return ["nsenter", "-t", str(self.init_pid), "-a", *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """ARGV inside; with CHECK, an AssertionError naming the host when it fails."""
        result = subprocess.run(self.argv(argv), env=self.environ, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.name}: {' '.join(argv)} failed ({result.returncode}): {result.stderr}"
            )
        return result

    def outer_pid(self, inner: int) -> int | None:
        """The PID the harness sees for the host's process INNER, None if it is not running."""
        pid_namespace = {ns for ns in self.namespaces if ns.startswith("pid:")}
        for pid in processes_in(pid_namespace):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
                if int(nspid.split()[-1]) == inner and "\nState:\tZ" not in status:
                    return pid
        return None

    def stop(self) -> None:
        """Kill PID 1 inside (the kernel kills the rest; unshare returns when all are gone),
        then unpin the network namespace. Safe to call on a host that failed to start."""
        process, self._unshare = self._unshare, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                if self.init_pid and process.poll() is None:
                    os.kill(self.init_pid, signal.SIGKILL)
                else:
                    process.kill()  # --kill-child takes PID 1 with it
            process.wait(timeout=30)
        netns.delete(self.netns)
