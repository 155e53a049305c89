"""The report page says plainly what was not measured and which targets were missed (pure
rendering of hand-made results; the real run is tests/e2e/test_benchmarks.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import render  # noqa: E402


def result(**sections: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "quick", "date": "2026-11-27 12:00 UTC", "elapsed_s": 90.0,
            "machine": {"CPU": "2 x test"}, "sections": sections,
            "versions": {"netbay": "0.1.0", "netavark": None}}


def scale_section(chain_error: str | None) -> dict[str, Any]:
    def system(label: str, attach: list[float], error: str | None = None) -> dict[str, Any]:
        return {"label": label, "attach_ms": attach, "detach_ms": attach[::-1],
                "reached": len(attach), "error": error}

    systems = {
        "library": system("netbay library", [2.0] * 20),
        "cni": system("netbay CNI", [10.0] * 20),
        "chain": system("CNI chain", [] if chain_error else [40.0] * 12, chain_error),
    }
    return {"count": 20, "budget_s": 5.0, "systems": systems, "elapsed_s": 1.0,
            "sizes": {"count": 20}, "error": None}


def dataplane_section(bridge: float) -> dict[str, Any]:
    def path(key: str, gbps: list[float], error: str | None = None) -> dict[str, Any]:
        return {"key": key, "label": key, "gbps": gbps, "error": error}

    return {"seconds": 1, "runs": 2, "elapsed_s": 1.0, "sizes": {}, "error": None, "rps": {},
            "paths": [path("veth", [10.0, 10.0]), path("bridge", [bridge, bridge]),
                      path("macvlan", [], "iperf3 not installed (scripts/install.sh --bench)")]}


def test_unavailable_peers_and_failed_sections_are_named_on_the_page(tmp_path: Path) -> None:
    page = render.write(result(
        scale=scale_section("not installed: missing bridge in /usr/lib/cni"),
        dns={"error": "RuntimeError: dnsperf not found", "elapsed_s": 0.0, "sizes": {}},
        dataplane=dataplane_section(9.9),
    ), tmp_path).read_text()
    assert "| netavark | **not installed** (scripts/install.sh --bench)" in page
    assert "not run: not installed: missing bridge in /usr/lib/cni" in page
    assert "## Embedded DNS\n\n**Not measured**: RuntimeError: dnsperf not found" in page
    assert "not run: iperf3 not installed (scripts/install.sh --bench)" in page
    assert "This page came from a `--quick` run" in page


@pytest.mark.parametrize(("bridge", "verdict"), [(9.9, "| met |"), (9.0, "| **MISSED** |")])
def test_a_missed_target_is_said_plainly(tmp_path: Path, bridge: float, verdict: str) -> None:
    page = render.write(result(dataplane=dataplane_section(bridge)), tmp_path).read_text()
    line = next(x for x in page.splitlines() if x.startswith("| throughput, bridge |"))
    assert line.endswith(verdict), line
    assert f"{bridge / 10:.0%} |" in line


def test_a_system_that_stopped_at_its_budget_says_so(tmp_path: Path) -> None:
    page = render.write(result(scale=scale_section(None)), tmp_path).read_text()
    chain = next(x for x in page.splitlines() if x.startswith("| CNI chain | 40.0 |"))
    assert chain.endswith("| 40.0–40.0 | 1.00x | stopped at 12 (budget) |")
    ratio = next(x for x in page.splitlines() if x.startswith("| CNI chain / netbay CNI | attach"))
    assert "**4.0x**" in ratio
