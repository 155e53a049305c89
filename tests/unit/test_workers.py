"""The API server's worker pool: grows with concurrent jobs, never past its size, and
retires idle workers, so a burst of clients leaves no threads behind (issue 13's soak)."""

from __future__ import annotations

import threading
import time

from helpers import wait_until
from netbay.daemon.workers import Workers


def _api_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("api-"))


def test_workers_grow_to_their_size_and_retire_when_idle() -> None:
    before = _api_threads()
    pool = Workers(3, idle=0.2)
    release = threading.Event()
    done: list[int] = []
    lock = threading.Lock()

    def job(n: int) -> None:
        release.wait(5)
        with lock:
            done.append(n)

    for n in range(5):
        pool.submit(lambda n=n: job(n))
    wait_until(lambda: _api_threads() - before == 3, 5, "three workers busy")
    release.set()
    wait_until(lambda: len(done) == 5, 5, "all five jobs, two of them queued")
    wait_until(lambda: _api_threads() == before, 5, "idle workers retired")
    # a job after the pool emptied starts a worker again
    ran = threading.Event()
    pool.submit(ran.set)
    assert ran.wait(5)
    pool.stop()
    wait_until(lambda: _api_threads() == before, 5, "workers ended by stop()")


def test_a_job_submitted_as_a_worker_times_out_still_runs() -> None:
    pool = Workers(1, idle=0.05)
    for _ in range(40):
        ran = threading.Event()
        pool.submit(ran.set)
        assert ran.wait(5)
        time.sleep(0.05)  # around the idle timeout: the retire race
    pool.stop()
