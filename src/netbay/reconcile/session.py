"""One reconciliation pass over a Model (the engine's part): compare without the kernel
lock, and only if something is due for repair, take the lock, compare again (an attach or
a removal may have changed the record or the kernel meanwhile: a bridge being removed is
never re-made) and repair in rounds. A round's repairs can show drifts that were hidden
behind them (the ports of a bridge re-made, the hairpin of a port re-plugged): the next
round repairs those, as consequences that do not extend a backoff streak."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import NetbayError
from .compare import Drift
from .fixes import RepairTarget
from .ledger import Ledger

log = logging.getLogger("netbay.reconcile")
MAX_ROUNDS = 4  # a bridge, its ports, their hairpin: three; one to spare


class Model(RepairTarget, Protocol):
    """What a reconciler keeps in line: its drifts now, and the verbs that fix them."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held by every change of the kernel; repairs take it too."""

    def drifts(self) -> list[Drift]:
        """The record's desired state against the kernel's, read now (without the lock)."""


@dataclass
class PassResult:
    repaired: list[Drift] = field(default_factory=list)
    failed: list[Drift] = field(default_factory=list)
    waiting: list[Drift] = field(default_factory=list)  # backed off, or reported only
    next_try: float | None = None  # when the earliest backed-off drift is due


def run_pass(model: Model, ledger: Ledger, clock: Callable[[], float]) -> PassResult:
    now = clock()
    drifts = model.drifts()
    ledger.seen(drifts, now)
    result = PassResult()
    if any(d.fix is not None and ledger.due(d, now) for d in drifts):
        with model.lock:
            drifts = _repair(model, ledger, clock, result)
    result.waiting = drifts
    result.next_try = ledger.next_try(d for d in drifts if d.fix is not None)
    return result


def _repair(
    model: Model, ledger: Ledger, clock: Callable[[], float], result: PassResult
) -> list[Drift]:
    """Rounds of repairs; the drifts that remain."""
    before: set[tuple[str, str]] = set()
    for round_number in range(MAX_ROUNDS):
        now = clock()
        drifts = model.drifts()
        fixable = [d for d in drifts if d.fix is not None]
        if round_number == 0:
            todo = [d for d in fixable if ledger.due(d, now)]
        else:
            todo = [d for d in fixable if d.key not in before]
        if not todo:
            return drifts
        for drift in todo:
            _apply(model, ledger, drift, now, consequence=round_number > 0, result=result)
        before = {d.key for d in fixable}
    return model.drifts()


def _apply(
    model: Model, ledger: Ledger, drift: Drift, now: float, *, consequence: bool,
    result: PassResult,
) -> None:
    assert drift.fix is not None
    try:
        drift.fix.apply(model)
    except NetbayError as exc:
        ledger.record(drift, now, ok=False, consequence=consequence)
        result.failed.append(drift)
        log.error("drift not repaired: %s: %s", drift.what, exc)
    else:
        ledger.record(drift, now, ok=True, consequence=consequence)
        result.repaired.append(drift)
        log.warning("drift repaired: %s: %s", drift.what, drift.fix.done)
    # A failed try counts in the streak too (something deleted the bridge again while it
    # was being re-made), so the streak can turn flapping on either path.
    flap = ledger.became_flapping(drift, now)
    if flap is not None:
        log.warning("%s: something on this host keeps changing it; repairs back off", flap)
