"""What the reconciler did: repairs counted per kind, and the backoff that keeps it from
looping. Pure (every method is given the time).

A drift that comes back within WINDOW seconds of its repair extends its key's streak; the
n-th repair of a streak waits BASE * 2^(n-2) seconds after the one before (the first two go
at once, capped at CAP), and from FLAPPING_AFTER repairs on the key is reported as
flapping: something on the host fights netbay over it. A key quiet for WINDOW seconds
after its last repair starts afresh. A fix that fails is backed off the same way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .compare import Drift


@dataclass
class _Streak:
    what: str
    repairs: int = 0  # in this streak
    last_repair: float = -math.inf
    redrift: float | None = None  # first seen drifting again after the last repair
    next_try: float = 0.0

    def flap(self, now: float) -> Flap:
        return Flap(self.what, self.repairs, max(0.0, self.next_try - now))


@dataclass(frozen=True)
class Flap:
    what: str
    repairs: int  # in a row, each drift back within the window of the repair before
    next_try: float  # seconds from now; 0: as soon as it drifts again

    def __str__(self) -> str:
        wait = f"next repair in {self.next_try:.1f} s" if self.next_try else "repairing"
        return f"flapping: {self.what} (repaired {self.repairs} times in a row; {wait})"

    def as_json(self) -> dict[str, object]:
        return {"Drift": self.what, "Repairs": self.repairs,
                "NextTry": round(self.next_try, 1)}


@dataclass
class Ledger:
    base: float = 0.5
    cap: float = 60.0
    window: float = 10.0
    flapping_after: int = 3
    repairs: Counter[str] = field(default_factory=Counter)  # per kind of drift
    failures: Counter[str] = field(default_factory=Counter)
    passes: int = 0
    _streaks: dict[tuple[str, str], _Streak] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)

    def seen(self, drifts: Iterable[Drift], now: float) -> None:
        """The drifts of a pass: a key drifting again extends its streak when repaired; a
        key in sync long enough is forgotten."""
        self.passes += 1
        drifting = {d.key for d in drifts}
        for key, streak in list(self._streaks.items()):
            if key in drifting:
                if streak.redrift is None:
                    streak.redrift = now
            elif now - streak.last_repair > self.window:
                del self._streaks[key]
            else:
                streak.redrift = None

    def due(self, drift: Drift, now: float) -> bool:
        streak = self._streaks.get(drift.key)
        return streak is None or now >= streak.next_try

    def next_try(self, drifts: Iterable[Drift]) -> float | None:
        """When the earliest backed-off drift of DRIFTS may be repaired."""
        times = [s.next_try for d in drifts if (s := self._streaks.get(d.key)) is not None]
        return min(times, default=None)

    def delay(self, repairs: int) -> float:
        return 0.0 if repairs <= 1 else min(self.base * 2 ** (repairs - 2), self.cap)

    def record(self, drift: Drift, now: float, *, ok: bool, consequence: bool = False) -> None:
        """A fix applied (OK) or failed. A CONSEQUENCE (the ports of a bridge re-made just
        now) is counted but does not extend a streak: its cause's backoff paces it."""
        (self.repairs if ok else self.failures)[drift.kind] += 1
        streak = self._streaks.setdefault(drift.key, _Streak(drift.what))
        if not consequence:
            recurring = (streak.redrift is not None
                         and streak.redrift - streak.last_repair <= self.window)
            streak.repairs = streak.repairs + 1 if recurring else 1
            streak.next_try = now + self.delay(streak.repairs)
        streak.what, streak.last_repair, streak.redrift = drift.what, now, None

    def flapping(self, now: float) -> list[Flap]:
        return [s.flap(now) for s in self._streaks.values() if s.repairs >= self.flapping_after]

    def became_flapping(self, drift: Drift, now: float) -> Flap | None:
        """DRIFT's key, if the repair just recorded made it flapping."""
        streak = self._streaks.get(drift.key)
        if streak is None or streak.repairs != self.flapping_after:
            return None
        return streak.flap(now)

    def new_reports(self, lines: Iterable[str]) -> list[str]:
        """Of the drifts netbay reports but does not fight, those not reported before (one
        that went away and came back is new again)."""
        current = set(lines)
        fresh = sorted(current - self._reported)
        self._reported = current
        return fresh

    def status(self, now: float) -> dict[str, object]:
        return {
            "Repairs": dict(sorted(self.repairs.items())),
            "Failures": dict(sorted(self.failures.items())),
            "Flapping": [f.as_json() for f in self.flapping(now)],
            "Passes": self.passes,
        }
