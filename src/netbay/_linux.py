"""Thin ctypes wrappers for the namespace syscalls Python 3.11 lacks (setns, unshare, mount).

Kept free of heavy imports: the CLI, the launcher and `exec` use it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    src = source.encode() if source else None
    fs = fstype.encode() if fstype else None
    _check(_libc.mount(src, target.encode(), fs, flags, None), f"mount {target}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def is_mountpoint(path: str | os.PathLike[str]) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return any(line.split()[4] == target for line in info)


def process_start_time(pid: int) -> int:
    """Start time of PID in clock ticks since boot, or 0 if there is no such process."""
    try:  # os.read: a third of read_text's cost (runtime sandboxes are checked every second)
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def process_alive(pid: int, start_time: int) -> bool:
    """True if PID still names the process that started at start_time (and is not a zombie)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] != "Z" and int(fields[19]) == start_time


def owner_token() -> str:
    """Identifies this process across PID reuse: 'pid:starttime'."""
    pid = os.getpid()
    return f"{pid}:{process_start_time(pid)}"


def owner_alive(token: str) -> bool:
    if not token:
        return False
    pid, _, start = token.partition(":")
    return process_alive(int(pid), int(start or 0))
