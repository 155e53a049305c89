"""The BGP scale benchmark's topologies (what each simulated node's BIRD is told), its medians
and its section of the report page, from hand-made samples (the real run, BIRD on every
node, is tests/e2e/test_benchmarks.py)."""

from __future__ import annotations

import sys
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bgp_scale  # noqa: E402
import bgp_scale_page  # noqa: E402
import render  # noqa: E402
from bgp_scale import Node, settings_of  # noqa: E402
from netbay.plan.bird import render as render_conf  # noqa: E402
from pngcheck import png_stats  # noqa: E402

NODES = [Node(n, Path(f"/nonexistent/node{n}")) for n in range(1, 6)]


def peers(topology: str, number: int) -> dict[str, bool]:
    settings = settings_of(topology, NODES[number - 1], NODES)
    return {str(p.address): p.rr_client for p in settings.mesh}


def test_the_mesh_peers_every_other_node_and_the_reflectors_their_clients() -> None:
    assert peers("mesh", 3) == {f"198.18.0.{n}": False for n in (1, 2, 4, 5)}
    assert peers("reflectors", 1) == {"198.18.0.2": False, "198.18.0.3": True,
                                      "198.18.0.4": True, "198.18.0.5": True}
    assert peers("reflectors", 4) == {"198.18.0.1": False, "198.18.0.2": False}
    node = settings_of("mesh", NODES[2], NODES)
    assert node.blocks == (IPv4Network("198.19.0.128/26"),)
    assert (node.router_id, node.underlay, node.cross_subnet) == (
        NODES[2].address, (bgp_scale.SEGMENT,), (bgp_scale.POOL,))


def test_the_rendered_configurations_reflect_only_on_the_reflectors() -> None:
    reflector, client = (render_conf(settings_of("reflectors", NODES[n - 1], NODES))
                         for n in (1, 4))
    assert reflector.count("  rr client;") == 3
    # the id both reflectors share, on the three client sessions and the other reflector's
    assert reflector.count("  rr cluster id 198.18.0.1;") == 4
    other = render_conf(settings_of("reflectors", NODES[1], NODES))
    assert other.count("  rr cluster id 198.18.0.1;") == 4
    assert "export filter netbay_reflect;" in reflector
    assert "rr client" not in client and "netbay_reflect" not in client
    assert client.count("protocol bgp ") == 2 and client.count("  passive on;") == 2
    mesh = render_conf(settings_of("mesh", NODES[2], NODES))
    assert mesh.count("protocol bgp ") == 4 and mesh.count("  passive on;") == 2


def sample(converge: list[float], rss: list[float], steady: float = 0.1) -> dict[str, Any]:
    count = len(converge)
    return {"topology": "reflectors", "launch_s": 0.05, "converge_s": max(converge),
            "node_converge_s": converge, "cpu_converge_s": [0.02] * count,
            "cpu_steady_s": [steady] * count, "steady_s": 10.0, "rss_mb": rss,
            "anon_mb": [r - 4.0 for r in rss], "steady_route_events": 0, "listen_overflows": 0,
            "bird_errors": [],
            "configured": [4, 4, 2, 2, 2], "established": [4, 4, 2, 2, 2],
            "imported": [7, 7, 8, 8, 8]}


ROLES = ["reflector", "reflector", "client", "client", "client"]
NEXT_HOP_ERROR = "mesh_198_18_0_3: Invalid NEXT_HOP attribute - neighbor address 198.18.0.3"


def test_the_summary_takes_the_median_run_and_the_median_node_of_each_role() -> None:
    runs = [sample([1.0, 1.1, 1.2, 1.3, 3.0], [6.0, 7.0, 5.0, 5.2, 5.4]),
            sample([1.0, 1.0, 1.0, 1.0, 2.0], [6.0, 6.0, 5.0, 5.0, 5.0]),
            sample([2.0, 2.0, 2.0, 2.0, 4.0], [8.0, 8.0, 5.6, 5.6, 5.6], steady=0.3)]
    figures = bgp_scale_page.summary(runs, ROLES)
    assert figures["converge_s"] == 3.0
    assert figures["node_converge_s"] == 1.2
    assert figures["sessions"] == 7.0
    assert figures["cpu_steady_s"] == 0.5
    assert figures["roles"]["reflector"]["rss_mb"] == 6.5
    assert figures["roles"]["client"]["rss_mb"] == 5.2
    assert figures["roles"]["client"]["count"] == 3
    assert figures["roles"]["client"]["imported"] == 8


def section() -> dict[str, Any]:
    mesh = {**sample([1.5] * 5, [6.0] * 5), "topology": "mesh", "listen_overflows": 3,
            "configured": [4] * 5, "established": [4] * 5, "imported": [4] * 5}
    reflectors = {**sample([1.0, 1.1, 1.2, 1.3, 1.4], [5.6, 5.6, 5.0, 5.0, 5.0]),
                  "bird_errors": [NEXT_HOP_ERROR]}
    roles = {"mesh": ["node"] * 5, "reflectors": ROLES}
    samples = {"mesh": [mesh], "reflectors": [reflectors]}
    return {"error": None, "nodes": 5, "runs": 1, "steady_s": 10.0, "bird": "BIRD version 2.0.12",
            "asn": 64512, "segment": "198.18.0.0/24", "pool": "198.19.0.0/16",
            "block_prefix": 26, "reflectors": 2, "connect_delay_s": 1, "kernel_scan_s": 10,
            "config_lines": {"mesh": {"node": 90}, "reflectors": {"reflector": 95, "client": 50}},
            "roles": roles, "samples": samples, "elapsed_s": 30.0,
            "sizes": {"nodes": 5, "runs": 1, "steady": 10.0}}


def test_the_section_shows_both_topologies_side_by_side_with_its_plot(tmp_path: Path) -> None:
    result = {"mode": "quick", "date": "2026-12-01 12:00 UTC", "elapsed_s": 30.0,
              "machine": {"CPU": "2 x test"}, "versions": {"netbay": "0.1.0"},
              "sections": {"bgp_scale": section()}}
    lines = render.write(result, tmp_path).read_text().splitlines()
    assert "## BGP scale" in lines
    for row in ("|  | full iBGP mesh | 2 route reflectors |",
                "| BGP sessions in the cluster | 10 | 7 |",
                "| sessions per node | 4 | 2; reflectors: 4 |",
                "| routes BIRD imports per node | 4 | 8; reflectors: 7 |",
                "| bird.conf lines per node | 90 | 50; reflectors: 95 |",
                "| converged, all nodes, s (each run) | 1.50 (1.50) | 1.40 (1.40) |",
                "| all BIRDs started within, s (each run) | 0.05 | 0.05 |",
                "| BIRD RSS per node, MB (private) | 6.0 (2.0) "
                "| 5.0 (1.0); reflectors: 5.6 (1.6) |",
                "| BIRD CPU in 10 s of steady state, all nodes, s (share of one CPU) "
                "| 0.50 (5.0%) | 0.50 (5.0%) |",
                "| connects dropped by a full listen queue (backlog 8), all nodes (each run) "
                "| 3 | 0 |",
                "| error lines BIRD logged, all nodes (each run) | 0 | 1 |"):
        assert row in lines, row
    comparison = next(x for x in lines if x.startswith("With two reflectors"))
    assert comparison.startswith("With two reflectors the cluster has 1.4x fewer sessions (10 "
                                 "against 7); a client's BIRD holds 1.0 MB of private memory "
                                 "against a mesh node's 2.0 MB (a reflector 1.6 MB)"), comparison
    assert any(x.startswith("The mesh's slowest run (1.50 s) waited on listen queues: node N")
               and "3 connects found a queue full in that run" in x for x in lines)
    assert any(x.startswith(f"The errors the reflectors log (for example `{NEXT_HOP_ERROR}`)")
               for x in lines)
    assert "![convergence, CPU and memory of BIRD, mesh against reflectors]" \
           "(benchmarks/bgp_scale.png)" in lines
    width, height, colours, ink = png_stats(tmp_path / "benchmarks" / "bgp_scale.png")
    assert width > 1000 and height > 300 and colours > 3 and ink > 0.01
