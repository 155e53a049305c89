"""The performance report (benchmarks/report.py) runs once, tiny, to keep the benchmark code
working: every section measured against its real peer, the page and plots written, nothing
left behind. Its timings are never asserted on (benchmarks are not tests); the soak's counts
are: every resource it used is back at its start value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from helpers import link_names
from pngcheck import png_stats

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"
TOOLS = {"iperf3", "aardvark-dns", "dnsperf", "netavark"}


def processes(sandboxes: Path) -> set[tuple[int, str]]:
    """(pid, command line) of every process that could be a benchmark's leftover: the load
    tools and peers, and anything started with a path under SANDBOXES (netbayd)."""
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
        if Path(argv[0]).name in TOOLS or str(sandboxes) in line:
            out.add((int(proc.name), line))
    return out


def bench_mounts(sandboxes: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(sandboxes) in line]


def soak_came_back(soak: dict[str, Any]) -> None:
    """Every cycle ran, concurrently, and left nothing: each count back at its start value
    after both rounds (netbayd's threads too: idle API workers retire)."""
    assert soak["errors"] == []
    cycles = soak["cycles"] * len(soak["rounds"])
    latency = soak["latency_ms"]
    assert latency["create"]["count"] == latency["remove"]["count"] == cycles
    assert latency["network create"]["count"] == latency["network remove"]["count"] == cycles // 10
    assert latency["connect"]["count"] == latency["disconnect"]["count"] > cycles // 10
    start, peak = soak["start"], soak["peak"]
    counted = {"daemon_fds", "daemon_threads", "daemon_children", "dns_fds", "leases",
               "containers", "networks", "nft_elements", "links", "veths", "netns_pins",
               "netns_mounts", "container_dirs"}
    assert counted <= set(soak["returned"])
    for key in ("daemon_children", "leases", "containers", "veths", "netns_pins"):
        assert peak[key] > start[key] == 0, key
    assert peak["nft_elements"] > start["nft_elements"] > 0
    for end in (r["end"] for r in soak["rounds"]):
        for key in set(soak["returned"]) - {"daemon_threads"}:
            assert end[key] == start[key], (key, start[key], end[key])
        # an API worker busy at the start sample may have retired since
        assert end["daemon_threads"] <= start["daemon_threads"]
    assert all(soak["returned"].values()), soak["returned"]


def test_tiny_report_measures_every_section_against_its_peer(
    tmp_path: Path, host_ns: Path
) -> None:
    # the sandboxes' temp directories, apart from other benchmarks running on the machine;
    # short, as unix socket paths live under it
    sandboxes = Path(tempfile.mkdtemp(prefix="nbt-"))
    links, procs = link_names(), processes(sandboxes)
    out = tmp_path / "docs"
    run = subprocess.run([sys.executable, str(REPORT), "--tiny", "--out", str(out)],
                         env={**os.environ, "TMPDIR": str(sandboxes)},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    result = json.loads((out / "benchmarks.json").read_text())
    sections = result["sections"]
    assert set(sections) == {"scale", "dual_stack", "publish", "runtimes", "dns", "dataplane",
                             "soak", "convergence", "cluster_scale", "overlay", "routed",
                             "bgp_scale", "docker_engine"}
    assert all(s["error"] is None for s in sections.values()), sections
    # both networks grew to 3 containers and shrank again
    for kind in ("v4", "dual"):
        assert [len(s) for s in sections["dual_stack"]["samples"][kind]["attach_ms"]] == [3]
    # every system grew its network to 3 containers and shrank it again, the peers included
    for key, system in sections["scale"]["systems"].items():
        assert system["error"] is None, (key, system["error"])
        assert len(system["attach_ms"]) == 3 and len(system["detach_ms"]) == 3, key
    assert {"netbay (library)", "CNI bridge+host-local+portmap+firewall", "netavark 1.4"} == set(
        sections["publish"]["attach_one_port"]["systems"])
    assert all(r["netavark_range_ms"] for r in sections["publish"]["publish"]["rows"])
    assert {r["server"] for r in sections["dns"]["rounds"]} == {"netbay", "aardvark"}
    assert all(r["lost"] == 0 and r["qps"] > 0 for r in sections["dns"]["rounds"])
    # real bytes crossed every data-plane path, the IPv6 twins' too, and every ratio was taken
    dataplane = sections["dataplane"]
    assert [p["key"] for p in dataplane["paths"]] == [
        "veth", "veth6", "bridge", "bridge6", "dnat", "dnat6", "masquerade", "masquerade6",
        "macvlan", "plain_bridge", "routed", "routed6"]
    for path in dataplane["paths"]:
        assert path["error"] is None and path["gbps"] and min(path["gbps"]) > 0, path
    assert set(dataplane["ratios"]) == {
        "bridge/plain_bridge", "masquerade/routed", "dnat/routed", "bridge6/bridge",
        "dnat6/dnat", "masquerade6/masquerade", "dnat6/routed6", "masquerade6/routed6"}
    assert all(len(each) == 1 and min(each) > 0 for each in dataplane["ratios"].values())
    assert all(min(gbps) > 0 for gbps in sections["routed"]["throughput"]["gbps"].values())
    rps = sections["dataplane"]["rps"]
    assert rps["error"] is None and min(rps["on"]["gbps"]) > 0
    soak_came_back(sections["soak"])
    # on both networks a new block reached across hosts, a node joined and one killed: every
    # round answered
    convergence = sections["convergence"]
    for kind in ("overlay", "routed"):
        for measured in (convergence["blocks"][kind]["vxlan"]["first_reply_ms"],
                         convergence["joins"][kind]["after_container_ms"],
                         convergence["kills"]["gone_s"][kind]):
            assert measured["count"] >= 1 and measured["lost"] == 0, measured
    # BIRD on every simulated node, both topologies: each configured session established
    bgp = sections["bgp_scale"]
    for topology, runs in bgp["samples"].items():
        for run in runs:
            assert run["established"] == run["configured"] and min(run["configured"]) > 0
            assert len(run["node_converge_s"]) == bgp["nodes"], topology

    page = (out / "benchmarks.md").read_text()
    for title in ("## The machine", "## Versions", "## Targets", "## Attach and detach",
                  "## Publishing ports", "## CNI plugin", "## Embedded DNS", "## Data plane",
                  "## Soak", "## Convergence across hosts"):
        assert title in page, title
    assert "not installed" not in page and "Not measured" not in page
    for label in ("raw veth pair over IPv6 (IPv6 floor)", "container to container over IPv6",
                  "LAN to a published port over IPv6", "container to the LAN over IPv6 (NAT66)",
                  "context: routed over IPv6, no netbay"):
        assert re.search(rf"^\| {re.escape(label)} \| [\d.]+ \|", page, re.M), label
    # context, not targets: the IPv6 ratios (5), the veth-pair marks (2, in the path table and
    # again in Targets) and, on a kernel without flowtables, the NAT ratios (2, twice too)
    assert isinstance(dataplane["flowtable"], bool)
    assert page.count("| context (~ ") == 5 + 2 * 2 + (0 if dataplane["flowtable"] else 2 * 2)
    for label in ("netbay library", "netbay CLI", "netbay CNI", "netbay netavark", "CNI chain",
                  "netavark"):
        assert re.search(rf"^\| {label} \| [\d,.]+ \|", page, re.M), label
    assert re.search(r"^\| leases \(endpoint records\) \| 0 \| [1-9]\d* \| 0 \| 0 \| returned \|$",
                     page, re.M)
    for image in ("scale", "publish", "dataplane", "soak"):
        assert f"](benchmarks/{image}.png)" in page
        width, height, colours, ink = png_stats(out / "benchmarks" / f"{image}.png")
        assert width > 300 and height > 150 and colours > 3 and ink > 0.01, image

    # nothing left: links of the namespace it ran in, mounts, processes
    assert link_names() == links
    assert bench_mounts(sandboxes) == []
    assert processes(sandboxes) == procs
    sandboxes.rmdir()  # every sandbox removed its directory
