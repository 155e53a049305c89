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


def soak_section(round_two: dict[str, float]) -> dict[str, Any]:
    """Two rounds of 100 cycles, 4 clients; ROUND_TWO: what differs at the end of round 2."""
    import soak

    start = {key: 3 for key in soak.RESOURCES} | {key: 40.0 for key in soak.MEMORY}
    first = start | {"daemon_rss_mb": 50.0}

    def ended(end: dict[str, float]) -> dict[str, Any]:
        return {"cycles": 100, "seconds": 4.0, "rate": 25.0, "settle_s": 0.5, "end": end}

    data: dict[str, Any] = {
        "cycles": 100, "clients": 4, "rate": 25.0, "start": start,
        "rounds": [ended(first), ended(first | round_two)],
        "peak": {key: 9 for key in soak.RESOURCES} | {key: 60.0 for key in soak.MEMORY},
        "samples": [{"cycles": c, "daemon_fds": 3, "daemon_threads": 3, "daemon_rss_mb": 40.0,
                     "dns_fds": 3, "dns_rss_mb": 20.0} for c in (0, 100, 200)],
        "latency_ms": {"create": {"count": 200, "p50": 20.0, "p90": 30.0, "p99": 40.0,
                                  "max": 50.0}},
        "errors": [], "elapsed_s": 9.0, "sizes": {"cycles": 100}, "error": None}
    return data | {"returned": soak.returned(data)}


def test_the_soak_says_what_came_back(tmp_path: Path) -> None:
    page = render.write(result(soak=soak_section({})), tmp_path).read_text()
    lines = page.splitlines()
    assert "| leases (endpoint records) | 3 | 9 | 3 | 3 | returned |" in lines
    threads = next(x for x in lines if x.startswith("| netbayd threads |"))
    assert threads == "| netbayd threads | 3 | 9 | 3 | 3 | returned |"
    assert "| netbayd | 40.0 | 60.0 | 50.0 | 50.0 | +10.0 | +0.0 |" in lines
    assert "| soak: resources back at their start after 2 x 100 cycles | all | 17 of 17 | met |" \
        in lines
    assert ("| soak: netbayd RSS growth over the last round, per cycle | <= 1 KB | 0.00 KB "
            "(+0.0 MB) | met |") in lines


@pytest.mark.parametrize("round_two", [{"nft_elements": 4}, {"daemon_threads": 8},
                                       {"daemon_fds": 2}])
def test_a_resource_that_did_not_come_back_is_said_plainly(
    tmp_path: Path, round_two: dict[str, float]
) -> None:
    """One more element, more threads, one fd fewer: each is a miss."""
    import soak

    page = render.write(result(soak=soak_section(round_two)), tmp_path).read_text()
    (key,) = round_two
    row = next(x for x in page.splitlines() if x.startswith(f"| {soak.RESOURCES[key]} |"))
    assert row.endswith(f"| {round_two[key]} | **NOT RETURNED** |"), row
    assert "| soak: resources back at their start after 2 x 100 cycles | all | 16 of 17 | " \
           "**MISSED** |" in page


def test_memory_that_keeps_growing_misses_its_target(tmp_path: Path) -> None:
    page = render.write(result(soak=soak_section({"daemon_rss_mb": 55.5})), tmp_path).read_text()
    assert ("| soak: netbayd RSS growth over the last round, per cycle | <= 1 KB | 56.32 KB "
            "(+5.5 MB) | **MISSED** |") in page
    assert "+10.0 MB over round 1; +5.5 MB over round 2" in page
