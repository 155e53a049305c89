"""The reconciler's ledger, pure (the times are given): repairs counted per kind, a drift
that keeps coming back backed off exponentially (capped) and reported flapping, a key left
alone long enough forgiven."""

from __future__ import annotations

from netbay.reconcile.compare import Drift
from netbay.reconcile.fixes import RemakeNetwork, SetLink
from netbay.reconcile.ledger import Flap, Ledger

BRIDGE = Drift("missing", "br-x", "network asgard: bridge br-x missing", RemakeNetwork("n1"))
PORT = Drift("down", "nbv1", "endpoint 1: nbv1 is down", SetLink("nbv1", up=True))


def keep_deleting(ledger: Ledger, until: float, step: float = 0.02) -> list[float]:
    """A bridge deleted every STEP seconds, the reconciler looking each time: when it
    repaired."""
    repaired = []
    for tick in range(int(until / step)):
        now = round(tick * step, 6)
        ledger.seen([BRIDGE], now)
        if ledger.due(BRIDGE, now):
            ledger.record(BRIDGE, now, ok=True)
            repaired.append(now)
    return repaired


def test_a_drift_that_keeps_coming_back_is_backed_off_exponentially() -> None:
    ledger = Ledger(base=0.5, cap=60.0, window=10.0)
    assert keep_deleting(ledger, until=8.0) == [0.0, 0.02, 0.52, 1.52, 3.52, 7.52]
    assert ledger.repairs == {"missing": 6}


def test_the_backoff_is_capped() -> None:
    ledger = Ledger(base=0.5, cap=2.0, window=10.0)
    times = keep_deleting(ledger, until=12.0)
    assert [round(b - a, 2) for a, b in zip(times, times[1:], strict=False)][-3:] == [2.0, 2.0, 2.0]


def test_from_the_third_repair_in_a_row_the_key_is_flapping() -> None:
    ledger = Ledger(base=0.5, window=10.0, flapping_after=3)
    for now in (0.0, 0.1):
        ledger.seen([BRIDGE], now)
        ledger.record(BRIDGE, now, ok=True)
        assert ledger.became_flapping(BRIDGE, now) is None
    ledger.seen([BRIDGE], 0.6)
    ledger.record(BRIDGE, 0.6, ok=True)
    assert ledger.became_flapping(BRIDGE, 0.6) == Flap(BRIDGE.what, 3, 1.0)
    assert [str(f) for f in ledger.flapping(1.1)] == [
        "flapping: network asgard: bridge br-x missing (repaired 3 times in a row; next repair "
        "in 0.5 s)"]
    assert ledger.status(1.1)["Flapping"] == [
        {"Drift": BRIDGE.what, "Repairs": 3, "NextTry": 0.5}]


def test_a_key_quiet_for_the_window_starts_afresh() -> None:
    ledger = Ledger(base=0.5, window=10.0)
    keep_deleting(ledger, until=2.0)
    assert ledger.flapping(2.0)
    ledger.seen([], 13.0)  # in sync since its last repair, for longer than the window
    assert ledger.flapping(13.0) == []
    ledger.seen([BRIDGE], 13.5)
    assert ledger.due(BRIDGE, 13.5)


def test_a_drift_back_after_the_window_is_a_new_streak() -> None:
    ledger = Ledger(base=0.5, window=10.0)
    for now in (0.0, 0.1, 0.6):
        ledger.seen([BRIDGE], now)
        ledger.record(BRIDGE, now, ok=True)
    ledger.seen([], 5.0)
    ledger.seen([BRIDGE], 20.0)  # came back long after its repair
    assert ledger.due(BRIDGE, 20.0)
    ledger.record(BRIDGE, 20.0, ok=True)
    assert ledger.flapping(20.0) == [] and ledger.due(BRIDGE, 20.0)


def test_a_streak_survives_a_backoff_longer_than_the_window() -> None:
    """The bridge is gone again at once, and stays gone through a 16 s wait."""
    ledger = Ledger(base=0.5, cap=16.0, window=10.0)
    keep_deleting(ledger, until=8.0)  # six repairs: the next waits 8 s
    ledger.seen([BRIDGE], 40.0)
    ledger.record(BRIDGE, 40.0, ok=True)
    assert ledger.flapping(40.0)[0].repairs == 7


def test_consequences_are_counted_but_paced_by_their_cause() -> None:
    ledger = Ledger()
    for now in (0.0, 0.1, 0.2, 0.3):
        ledger.seen([PORT], now)
        ledger.record(PORT, now, ok=True, consequence=True)
        assert ledger.due(PORT, now)
    assert ledger.repairs == {"down": 4} and ledger.flapping(0.3) == []


def test_a_fix_that_fails_is_counted_apart_and_backed_off_too() -> None:
    ledger = Ledger(base=0.5)
    for now in (0.0, 0.1):
        ledger.seen([PORT], now)
        ledger.record(PORT, now, ok=False)
    assert ledger.failures == {"down": 2} and ledger.repairs == {}
    assert not ledger.due(PORT, 0.5) and ledger.due(PORT, 0.6)
    assert ledger.next_try([PORT, BRIDGE]) == 0.6


def test_a_report_is_new_once_and_again_after_it_went_away() -> None:
    ledger = Ledger()
    assert ledger.new_reports(["a", "b"]) == ["a", "b"]
    assert ledger.new_reports(["a", "b"]) == []
    assert ledger.new_reports(["b"]) == []
    assert ledger.new_reports(["a", "b"]) == ["a"]
