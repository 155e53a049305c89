"""Sections re-measured with `report.py --only` after the full run: each keeps its own date,
whether the page before held one date for the last re-measure (its older shape) or one per
section."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import report  # noqa: E402


def test_an_older_page_keeps_its_sections_with_their_date() -> None:
    old = {"remeasured": {"sections": ["dns", "routed"], "date": "2026-12-03 15:41 UTC"}}
    assert report.remeasured(old) == {"dns": "2026-12-03 15:41 UTC",
                                      "routed": "2026-12-03 15:41 UTC"}


def test_each_section_keeps_the_date_of_its_own_re_measure() -> None:
    page = {"remeasured": {"routed": "2026-12-03 15:35 UTC"}}
    assert report.remeasured(page) == {"routed": "2026-12-03 15:35 UTC"}
    assert report.remeasured({}) == {}
