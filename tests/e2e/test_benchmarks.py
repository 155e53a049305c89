"""The performance report (benchmarks/report.py) runs once, tiny, to keep the benchmark code
working: every section measured against its real peer, the page and plots written, nothing
left behind. Its figures are never asserted on (benchmarks are not tests)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import link_names
from pngcheck import png_stats

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"
TOOLS = {"iperf3", "aardvark-dns", "dnsperf", "netavark"}


def processes() -> set[tuple[int, str]]:
    """(pid, command line) of every process that could be a benchmark's leftover: the load
    tools and peers, and anything started with a sandbox's temp directory (netbayd)."""
    out = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0")]
        line = " ".join(argv)
        if Path(argv[0]).name in TOOLS or "netbay-bench" in line or "netbay-dnsbench" in line:
            out.add((int(proc.name), line))
    return out


def bench_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if "netbay-bench" in line]


def test_tiny_report_measures_every_section_against_its_peer(
    tmp_path: Path, host_ns: Path
) -> None:
    links, procs = link_names(), processes()
    out = tmp_path / "docs"
    run = subprocess.run([sys.executable, str(REPORT), "--tiny", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    result = json.loads((out / "benchmarks.json").read_text())
    sections = result["sections"]
    assert set(sections) == {"scale", "publish", "runtimes", "dns", "dataplane"}
    assert all(s["error"] is None for s in sections.values()), sections
    # every system grew its network to 3 containers and shrank it again, the peers included
    for key, system in sections["scale"]["systems"].items():
        assert system["error"] is None, (key, system["error"])
        assert len(system["attach_ms"]) == 3 and len(system["detach_ms"]) == 3, key
    assert {"netbay (library)", "CNI bridge+host-local+portmap+firewall", "netavark 1.4"} == set(
        sections["publish"]["attach_one_port"]["systems"])
    assert all(r["netavark_range_ms"] for r in sections["publish"]["publish"]["rows"])
    assert {r["server"] for r in sections["dns"]["rounds"]} == {"netbay", "aardvark"}
    assert all(r["lost"] == 0 and r["qps"] > 0 for r in sections["dns"]["rounds"])
    # real bytes crossed every data-plane path
    for path in sections["dataplane"]["paths"]:
        assert path["error"] is None and path["gbps"] and min(path["gbps"]) > 0, path
    rps = sections["dataplane"]["rps"]
    assert rps["error"] is None and min(rps["on"]["gbps"]) > 0

    page = (out / "benchmarks.md").read_text()
    for title in ("## The machine", "## Versions", "## Targets", "## Attach and detach",
                  "## Publishing ports", "## CNI plugin", "## Embedded DNS", "## Data plane"):
        assert title in page, title
    assert "not installed" not in page and "Not measured" not in page
    for label in ("netbay library", "netbay CLI", "netbay CNI", "netbay netavark", "CNI chain",
                  "netavark"):
        assert re.search(rf"^\| {label} \| [\d,.]+ \|", page, re.M), label
    for image in ("scale", "publish", "dataplane"):
        assert f"](benchmarks/{image}.png)" in page
        width, height, colours, ink = png_stats(out / "benchmarks" / f"{image}.png")
        assert width > 300 and height > 150 and colours > 3 and ink > 0.01, image

    # nothing left: links of the namespace it ran in, mounts, processes
    assert link_names() == links
    assert bench_mounts() == []
    assert processes() == procs
