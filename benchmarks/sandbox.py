"""A throwaway network namespace standing in for the host, for benchmarks.

This thread (and every process it starts) moves into a fresh namespace with its own netbay
state root and netns directory; on the way out everything is unmounted and deleted, even
after a failure, so the machine's root namespace is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from netbay import Paths, _linux
from netbay.kernel import netns
from netbay.kernel.rtnetlink import Rtnetlink


def cleanup_mounts(directory: Path) -> None:
    """Unmount every mount left under DIRECTORY, deepest first (not the sandbox's own host
    pin, which netns.delete() removes last)."""
    prefix = str(directory) + "/"
    pin = str(directory / "hostns")
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        targets = [line.split()[4] for line in info if line.split()[4].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        if target != pin:
            with contextlib.suppress(OSError):
                _linux.umount(target)


@contextlib.contextmanager
def sandbox() -> Iterator[Paths]:
    tmp = Path(tempfile.mkdtemp(prefix="netbay-bench-"))
    hostns = tmp / "hostns"
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        netns.create(hostns)
        fd = os.open(hostns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _linux.setns(fd, _linux.CLONE_NEWNET)
        finally:
            os.close(fd)
        with Rtnetlink(None) as nl:
            nl.set_up(1)
        resolv = tmp / "resolv.conf"
        resolv.write_text("# benchmark sandbox: no resolver\n")
        os.environ["NETBAY_RESOLV_CONF"] = str(resolv)
        yield Paths(root=tmp / "state", socket=tmp / "netbay.sock", netns_dir=tmp / "netns")
    finally:
        _linux.setns(home, _linux.CLONE_NEWNET)
        os.close(home)
        os.environ.pop("NETBAY_RESOLV_CONF", None)
        cleanup_mounts(tmp)
        netns.delete(hostns)
        shutil.rmtree(tmp, ignore_errors=True)


def sh(command: str) -> str:
    """Set-up commands inside the sandbox (never on a timed path)."""
    return subprocess.run(
        ["bash", "-c", command], check=True, capture_output=True, text=True
    ).stdout


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
