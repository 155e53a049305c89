"""doctor's reconciler check, pure: what netbayd put back, what it could not, and what keeps
drifting (with what to look for)."""

from __future__ import annotations

import dataclasses
from typing import Any

from test_observe_doctor import clean

from netbay.observe.doctor import Finding, check_reconciler


def status(**kw: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"Repairs": {}, "Failures": {}, "Flapping": [], "Passes": 3}
    found.update(kw)
    return found


def reconciler(**kw: Any) -> list[Finding]:
    return check_reconciler(dataclasses.replace(clean(), reconciler=status(**kw)))


def test_without_counters_there_is_no_finding() -> None:
    assert check_reconciler(clean()) == []


def test_no_drift_and_repaired_drift_are_fine() -> None:
    assert reconciler() == [Finding("reconciler", "ok", "no drift since netbayd started")]
    assert reconciler(Repairs={"missing": 1, "port": 2}) == [Finding(
        "reconciler", "ok",
        "netbayd repaired 3 drift(s) since it started (missing 1, port 2); each is in its log")]


def test_flapping_is_a_warning_that_says_what_to_look_for() -> None:
    (finding,) = reconciler(Repairs={"missing": 5}, Flapping=[
        {"Drift": "network asgard: bridge br-x missing", "Repairs": 5, "NextTry": 3.5}])
    assert finding.status == "warn"
    assert finding.message == (
        "keeps drifting, so netbayd backs off: network asgard: bridge br-x missing (repaired 5 "
        "times in a row, next try in 3.5 s)")
    assert "ip monitor link address route" in finding.fix


def test_repairs_that_failed_are_a_warning() -> None:
    (finding,) = reconciler(Failures={"port": 2})
    assert (finding.status, finding.message) == ("warn", "netbayd could not repair: port 2")
