"""The data-plane benchmark measures its paths in reverse order every other run, so a drift
of the machine over a run falls on a path and on its floor alike (pure logic: iperf3 is
replaced by a recorder; the real run is tests/e2e/test_benchmarks.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import dataplane  # noqa: E402


def test_every_other_run_goes_backwards(monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[str] = []

    def iperf3(target: Any, seconds: int) -> float:
        measured.append(target)
        return 1.0

    monkeypatch.setattr(dataplane, "iperf3", iperf3)
    keys = list(dataplane.MEASURE_ORDER)
    targets: dict[str, Any] = {key: key for key in keys}
    targets[keys[1]] = dataplane.Failed("not built")  # skipped in both directions
    entries: dict[str, Any] = {key: {"gbps": [], "error": None} for key in keys}
    for run in range(2):
        dataplane.measure_paths(targets, entries, 1, f"run {run}", lambda _: None, run % 2 == 1)
    forward = [key for key in keys if key != keys[1]]
    assert measured == forward + forward[::-1]
    assert entries[keys[0]]["gbps"] == [1.0, 1.0] and entries[keys[1]]["gbps"] == []


def test_every_path_is_measured_beside_the_floor_it_is_held_against() -> None:
    order = dataplane.MEASURE_ORDER
    assert sorted(order) == sorted(key for key, _ in dataplane.PATHS)
    for ours, floor, _ in dataplane.FAST_PATH_RATIOS:
        assert abs(order.index(ours) - order.index(floor)) == 1, (ours, floor)
