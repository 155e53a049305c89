"""Starting and signalling container processes; no heavy imports (the CLI uses it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from .. import _linux


def launcher_argv(spec: Mapping[str, Any]) -> list[str]:
    return [sys.executable, "-m", "netbay.runtime.launch", json.dumps(dict(spec))]


def spawn(
    spec: Mapping[str, Any], stdout: IO[Any] | int | None = None, detach: bool = False
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        launcher_argv(spec),
        stdin=subprocess.DEVNULL if detach else None,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        start_new_session=detach,
        close_fds=True,
    )


def signal_container(pid: int, sig: int) -> None:
    """A detached container leads its own session and process group: signal all of its
    processes (as Docker does). A foreground one shares the terminal's group: only it."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def terminate(pid: int, start: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after TIMEOUT seconds; only while PID is still our process."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not _linux.process_alive(pid, start):
            return
        signal_container(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _linux.process_alive(pid, start):
                return
            time.sleep(0.02)
