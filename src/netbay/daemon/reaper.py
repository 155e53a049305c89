"""Reaps the daemon's detached container processes and records their exit codes."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable


class Reaper:
    def __init__(self, on_exit: Callable[[str, int], None], interval: float = 0.2) -> None:
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._on_exit = on_exit
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._thread.start()

    def watch(self, container_id: str, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children[container_id] = child

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                items = list(self._children.items())
            for container_id, child in items:
                code = child.poll()
                if code is not None:
                    with self._lock:
                        self._children.pop(container_id, None)
                    with contextlib.suppress(Exception):  # the container may be gone
                        self._on_exit(container_id, code)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
