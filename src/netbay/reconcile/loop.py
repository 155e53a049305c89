"""The daemon's reconciler: a thread that sleeps in one select() until the kernel says
something of netbay's may have changed, the record changed (poke(): the daemon calls it
after every request that may have), a backed-off repair is due, or a timer fires.

Events coalesce (Timing.quiet after the last one, Timing.most after the first), and
passes that found nothing to repair keep to a share of one CPU (Timing.duty: after one that
took t, the next waits t * (1/duty - 1)), so a burst of attaches and detaches costs a few
passes, not one each, while a repair is never held back by the one before. Every
Timing.resync seconds a full pass runs whatever came (a sysctl changes without a
notification; a notification can be lost), and every Timing.sweep seconds the runtimes'
sandboxes whose namespace vanished are released.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .session import PassResult
from .state import Watched
from .watch import Watch

log = logging.getLogger("netbay.reconcile")


class ReconcilingHost(Protocol):
    def reconcile(self, *, full: bool = False) -> PassResult: ...
    def reconcile_watched(self) -> Watched: ...
    def release_vanished_sandboxes(self) -> list[str]: ...


@dataclass(frozen=True)
class Timing:
    quiet: float = 0.05
    most: float = 0.25
    # while requests keep changing the record, a pass waits up to this long for a lull: its
    # own changes are no drift, and a pass amid them would slow them (the GIL)
    busy_most: float = 1.5
    resync: float = 10.0
    sweep: float = 1.0
    duty: float = 0.1


class Schedule:
    """When the next pass runs (pure: given the times)."""

    def __init__(self, timing: Timing, now: float) -> None:
        self.timing = timing
        self.next_resync = now + timing.resync
        self.next_sweep = now + timing.sweep
        self.first_event: float | None = None
        self.last_event = 0.0
        self.busy = False  # the record changed since the last pass
        self.retry_at: float | None = None
        self.not_before = now  # the duty cap

    def event(self, now: float, *, record: bool = False) -> None:
        """A kernel event that may be drift, or (RECORD) a change of the record."""
        self.first_event = now if self.first_event is None else self.first_event
        self.last_event = now
        self.busy = self.busy or record

    def _pass_due(self) -> float | None:
        """When the events or a retry want a pass (None: nothing does)."""
        wanted = []
        if self.first_event is not None:
            most = self.timing.busy_most if self.busy else self.timing.most
            wanted.append(min(self.last_event + self.timing.quiet, self.first_event + most))
        if self.retry_at is not None:
            wanted.append(self.retry_at)
        return max(min(wanted), self.not_before) if wanted else None

    def deadline(self) -> float:
        due = self._pass_due()
        return min(self.next_resync, self.next_sweep, due if due is not None else float("inf"))

    def sweep_due(self, now: float) -> bool:
        if now < self.next_sweep:
            return False
        self.next_sweep = now + self.timing.sweep
        return True

    def pass_due(self, now: float) -> bool | None:
        """True: a full pass is due; False: an event-driven one; None: none."""
        if now >= self.next_resync:
            return True
        due = self._pass_due()
        return False if due is not None and now >= due else None

    def ran(
        self, started: float, ended: float, *, full: bool, repaired: bool,
        next_try: float | None,
    ) -> None:
        self.first_event, self.busy = None, False
        self.retry_at = next_try
        idle = 0.0 if repaired else (ended - started) * (1 / self.timing.duty - 1)
        self.not_before = ended + idle
        if full:
            self.next_resync = ended + self.timing.resync


class Reconciler:
    def __init__(
        self, host: ReconcilingHost, *, timing: Timing = Timing(),
        on_repair: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self._timing = timing
        self._on_repair = on_repair
        self._clock = clock
        self._stop = threading.Event()
        self._poked = threading.Event()
        self._watch: Watch | None = None
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def start(self) -> None:
        """Subscribe (nothing that changes after the first pass is missed), run the first
        pass now (the daemon serves after it: what changed while it was stopped is back),
        then the thread."""
        self._watch = Watch(self._host.reconcile_watched)
        self._pass(full=True)
        self._thread.start()

    def poke(self) -> None:
        """The record changed: compare soon (what is wanted, and so watched, changed too)."""
        self._poked.set()
        if self._watch is not None:
            self._watch.wake()

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.wake()
            self._thread.join(timeout=5)
            self._watch.close()

    def _run(self) -> None:
        assert self._watch is not None
        schedule = Schedule(self._timing, self._clock())
        while not self._stop.is_set():
            changed = self._watch.wait(max(0.0, schedule.deadline() - self._clock()))
            poked = self._poked.is_set()
            if changed or poked:
                self._poked.clear()
                schedule.event(self._clock(), record=poked)
            now = self._clock()
            if schedule.sweep_due(now):
                self._sweep()
            full = schedule.pass_due(now)
            if full is not None and not self._stop.is_set():
                started = self._clock()
                result = self._pass(full=full)
                schedule.ran(started, self._clock(), full=full,
                             repaired=bool(result and result.repaired),
                             next_try=result.next_try if result else None)

    def _pass(self, *, full: bool) -> PassResult | None:
        try:
            result = self._host.reconcile(full=full)
            if result.repaired and self._on_repair is not None:
                self._on_repair()
            return result
        except Exception:
            log.exception("reconciler pass failed (the next one runs at the resync)")
            return None

    def _sweep(self) -> None:
        try:
            self._host.release_vanished_sandboxes()
        except Exception:
            log.exception("releasing vanished sandboxes failed")
