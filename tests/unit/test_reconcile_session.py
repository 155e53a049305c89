"""One reconciliation pass on a minimal model: a bridge deleted again and again, where the
repair that makes the streak flapping fails (deleted again while being re-made). The
flapping line is logged all the same, once."""

from __future__ import annotations

import contextlib
import logging

import pytest

from netbay.errors import KernelError
from netbay.reconcile.compare import Drift
from netbay.reconcile.fixes import RemakeNetwork
from netbay.reconcile.ledger import Ledger
from netbay.reconcile.session import run_pass

BRIDGE = Drift("missing", "br-x", "network asgard: bridge br-x missing", RemakeNetwork("n1"))


class DeletedBridge:
    """A bridge that is always missing; re-making it fails on the tries in FAILING."""

    def __init__(self, failing: set[int]) -> None:
        self.lock = contextlib.nullcontext()
        self.tries = 0
        self.failing = failing

    def drifts(self) -> list[Drift]:
        return [BRIDGE]

    def remake_network(self, network_id: str) -> None:
        self.tries += 1
        if self.tries in self.failing:
            raise KernelError("bridge br-x vanished while being re-made")


def keep_passing(model: DeletedBridge, ledger: Ledger, until: float) -> None:
    for tick in range(int(until / 0.02)):
        now = tick * 0.02
        run_pass(model, ledger, lambda now=now: now)  # type: ignore[arg-type, misc]


@pytest.mark.parametrize("failing", [set(), {3}, {1, 2, 3}])
def test_flapping_is_logged_once_whether_the_third_try_worked_or_failed(
    failing: set[int], caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = Ledger(base=0.5)
    with caplog.at_level(logging.WARNING, logger="netbay.reconcile"):
        keep_passing(DeletedBridge(failing), ledger, until=4.0)
    lines = [r.getMessage() for r in caplog.records if "keeps changing it" in r.getMessage()]
    assert lines == ["flapping: network asgard: bridge br-x missing (repaired 3 times in a "
                     "row; next repair in 1.0 s): something on this host keeps changing it; "
                     "repairs back off"]
    assert ledger.failures["missing"] == len(failing)
