"""The routed section of the report page: its figures, ratios and targets, from hand-made
results (pure rendering; the real run is tests/e2e/test_benchmarks.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import render  # noqa: E402


def routed_section(lan_routed: list[float], cross_routed: list[float]) -> dict[str, Any]:
    gbps = {"lan_underlay": [20.0, 20.0], "lan_routed": lan_routed, "lan_plain": [10.0, 10.0],
            "lan_overlay_hostgw": [9.0, 9.0], "lan_overlay_vxlan": [8.0, 8.0],
            "cross_underlay": [16.0, 16.0], "cross_routed": cross_routed,
            "cross_vxlan_pair": [8.0, 8.0], "cross_overlay_vxlan": [7.0, 7.0]}
    pairs = (("lan_routed", "lan_plain"), ("cross_routed", "cross_vxlan_pair"),
             ("lan_routed", "lan_overlay_hostgw"), ("lan_routed", "lan_overlay_vxlan"),
             ("cross_routed", "cross_overlay_vxlan"))
    ratios = {f"{a}/{b}": sorted(x / y for x, y in zip(gbps[a], gbps[b], strict=True))[0]
              for a, b in pairs}  # the lower of two runs stands in for the median
    return {"error": None, "underlay_mtu": 1500, "routed_mtu": 1450, "elapsed_s": 60.0,
            "sizes": {"seconds": 1.0, "runs": 2},
            "throughput": {"seconds": 1, "runs": 2, "gbps": gbps, "ratios": ratios,
                           "median_gbps": {k: sum(v) / 2 for k, v in gbps.items()}}}


def page_of(tmp_path: Path, section: dict[str, Any]) -> list[str]:
    result = {"mode": "quick", "date": "2026-12-01 12:00 UTC", "elapsed_s": 60.0,
              "machine": {"CPU": "2 x test"}, "versions": {"netbay": "0.1.0"},
              "sections": {"routed": section}}
    return render.write(result, tmp_path).read_text().splitlines()


@pytest.mark.parametrize(("lan", "cross", "verdicts"), [
    ([9.7, 9.9], [7.6, 8.0], ("97.0% | met |", "95.0% | met |")),
    ([9.6, 10.0], [7.5, 8.0], ("96.0% | **MISSED** |", "93.8% | **MISSED** |")),
])
def test_the_routed_targets_against_the_hand_made(
    tmp_path: Path, lan: list[float], cross: list[float], verdicts: tuple[str, str]
) -> None:
    lines = page_of(tmp_path, routed_section(lan, cross))
    same = next(x for x in lines if x.startswith("| routed throughput, one LAN, vs plain routing"))
    assert same.endswith(f"| >= 97% of the hand-made | {verdicts[0]}"), same
    across = next(x for x in lines
                  if x.startswith("| routed throughput, two subnets, vs a VXLAN pair by hand"))
    assert across.endswith(f"| >= 95% of the hand-made | {verdicts[1]}"), across
    assert not any(x.startswith("**Within the noise**") for x in lines)


def test_the_routed_section_shows_every_path_and_each_runs_spread(tmp_path: Path) -> None:
    lines = page_of(tmp_path, routed_section([9.0, 11.0], [8.0, 8.8]))
    assert "## Multi-host: routed networks' data plane" in lines
    for row in ("| one LAN | netbay routed (BGP's route to the block) | 10.00 | 9.00–11.00 | 50% |",
                "| two subnets | by hand: veths, static routes, a VXLAN pair | 8.00 | 8.00–8.00 "
                "| 50% |",
                "| one LAN: routed / plain routing | 90.0% | 95.0%–105.0% | 90.0%–110.0% |",
                "| two subnets: routed / overlay VXLAN | 114.3% | 117.1%–122.9% | 114.3%–125.7% |"):
        assert row in lines, row
    claim = next(x for x in lines if x.startswith("Routed against the overlay"))
    assert claim.endswith("routed carries 100.0% of overlay host-gw on one LAN; 112.5% of "
                          "overlay VXLAN on one LAN; 114.3% of overlay VXLAN on two subnets."), \
        claim
    assert "![routed throughput per path](benchmarks/routed.png)" in lines
    caveat = next(x for x in lines if x.startswith("**Within the noise**"))
    assert "for one LAN: routed / plain routing (95.0%–105.0% around 97%). " in caveat, caveat
    assert "two subnets" not in caveat
    assert any("MTU 1450: the tunnel's" in x for x in lines)
