"""The API server's worker threads: a bounded pool, grown as requests need it."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("netbayd")


class Workers:
    """Up to SIZE threads, each started when a job finds none idle, kept for the next ones
    and retired after IDLE seconds without one, so a burst of clients leaves no threads
    behind. Daemon threads: SIGTERM ends the process even while a handler is stuck.

    Every decision is taken under one condition's lock, and a worker retires only when the
    queue is empty under that lock, so a job is never left without a worker to run it."""

    def __init__(self, size: int, idle: float = 10.0) -> None:
        self._size = size
        self._idle_for = idle
        self._started = 0
        self._idle = 0  # workers waiting for a job
        self._stopping = False
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._wake = threading.Condition()

    def submit(self, job: Callable[[], None]) -> None:
        with self._wake:
            self._jobs.append(job)
            if self._idle:
                self._wake.notify()
                return
            if self._started >= self._size:
                return  # every worker busy: the first to finish takes it
            self._started += 1
            name = f"api-{self._started}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def stop(self) -> None:
        """Each worker ends after the jobs already queued."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                job()
            except BaseException:  # a job handles its own errors; this worker must go on
                log.exception("API worker")

    def _next_job(self) -> Callable[[], None] | None:
        """The next job, or None (and this worker no longer counted) to retire: stop()
        asked and nothing is queued, or IDLE seconds passed with nothing to do."""
        with self._wake:
            while not self._jobs and not self._stopping:
                self._idle += 1
                woken = self._wake.wait(self._idle_for)
                self._idle -= 1
                if not woken and not self._jobs:
                    break
            if self._jobs:
                return self._jobs.popleft()
            self._started -= 1
            return None
