"""netbay's performance report: every benchmark, netbay beside its peers on this machine in the
same run, written to docs/benchmarks.md with PNG plots (issue 7). Not a test. As root:

    ./scripts/bench.sh [--quick]          (installs the peers, then runs this)
    .venv/bin/python benchmarks/report.py [--quick|--tiny] [--out DIR] [--only SECTION...]
    .venv/bin/python benchmarks/report.py --render-only [--out DIR]

Sections (each in its own throwaway namespaces, one after the other, never at once):
  scale      attach/detach latency against containers on the network (scale.py)
  dual_stack  dual-stack attach/detach beside IPv4-only, to 1,000 containers (dual_stack.py)
  publish    publishing N ports, connect latency, attach with a port (publish.py)
  runtimes   CNI plugin and netavark start-up (cni_netavark.py)
  dns        queries per second and p99 with dnsperf (dns_qps.py)
  dataplane  iperf3 throughput per path, RPS off vs on (dataplane.py)
  soak       8 clients, 5,000 container cycles twice: every resource back at its start (soak.py)
  cluster_scale  simulated nodes on one etcd: join, propagation, etcd CPU/RSS (cluster_scale.py)
  overlay    sync_overlay timings; iperf3 across hosts, VXLAN and host-gw vs by hand (overlay.py)
  convergence  overlay and routed: container start, new block, node join, node lost (convergence.py)
  routed     iperf3 across nodes, routed vs by hand and vs the overlay, one LAN and two (routed.py)
  bgp_scale  BIRD on 50 simulated nodes, full mesh vs 2 route reflectors: convergence, CPU, RSS
             (bgp_scale.py)
  docker_engine  dockerd with netbay's plugin vs Docker's bridge driver: run, network create,
             100 published ports (docker_engine.py)

Writes OUT/benchmarks.md, OUT/benchmarks.json (every sample, so the page can be re-rendered
with --render-only) and OUT/benchmarks/*.png. A section that fails, or a peer that cannot run,
is reported on the page with the reason; nothing is silently left out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import machine  # noqa: E402
import render  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"

# mode -> section -> keyword arguments of that section's run()
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "scale": {"count": 2000, "budget": 120.0},
        "dual_stack": {"count": 1000, "runs": 3},
        "publish": {"counts": [1, 10, 100, 1000], "big": 10000, "samples": 1000,
                    "ad_count": 30, "runs": 3},
        "runtimes": {"runs": 20},
        "dns": {"names": 1000, "seconds": 3.0, "rounds": 5, "rate": 20000},
        "dataplane": {"seconds": 3.0, "runs": 8},  # even: as many runs in each order
        "offload": {"seconds": 3, "runs": 8},
        "soak": {"cycles": 5000, "clients": 8, "rounds": 2},
        "convergence": {"starts": 50, "blocks": 8, "joins": 8, "kills": 5},
        "cluster_scale": {"nodes": [100, 500, 1000], "changes": 10},
        "overlay": {"peers": 100, "seconds": 3.0, "runs": 7},
        "routed": {"seconds": 2.0, "runs": 15},
        "bgp_scale": {"nodes": 50, "runs": 3, "steady": 30.0},
        "docker_engine": {"runs": 20, "ports": 100},
    },
    "quick": {  # under 3 minutes on a quiet machine: every section, at its smallest sizes
        "scale": {"count": 16, "budget": 8.0},
        "dual_stack": {"count": 100, "runs": 1},
        "publish": {"counts": [1, 10], "big": 1001, "samples": 100, "ad_count": 3,
                    "runs": 1},
        "runtimes": {"runs": 2},
        "dns": {"names": 100, "seconds": 1.0, "rounds": 1, "rate": 20000},
        "dataplane": {"seconds": 1.0, "runs": 1},
        # one round: each waits ~10 s for the daemon's idle worker threads to retire
        "soak": {"cycles": 100, "clients": 8, "rounds": 1},
        "convergence": {"starts": 3, "blocks": 1, "joins": 1, "kills": 1},
        "cluster_scale": {"nodes": [100], "changes": 6, "ttl": 5},
        "overlay": {"peers": 100, "seconds": 1.0, "runs": 1},
        "routed": {"seconds": 1.0, "runs": 1},
        "bgp_scale": {"nodes": 10, "runs": 1, "steady": 2.0},
        "docker_engine": {"runs": 1, "ports": 100},
    },
    "tiny": {  # the test suite: keeps the code working, the figures mean nothing
        "scale": {"count": 3, "budget": 5.0},
        "dual_stack": {"count": 3, "runs": 1},
        "publish": {"counts": [1, 10], "big": 1001, "samples": 10, "ad_count": 1, "runs": 1},
        "runtimes": {"runs": 1},
        "dns": {"names": 3, "seconds": 1.0, "rounds": 1, "rate": 1000},
        "dataplane": {"seconds": 1.0, "runs": 1},
        "soak": {"cycles": 40, "clients": 8, "rounds": 2},
        "convergence": {"starts": 2, "blocks": 1, "joins": 1, "kills": 1},
        "cluster_scale": {"nodes": [20], "changes": 4, "ttl": 5},
        "overlay": {"peers": 10, "seconds": 1.0, "runs": 1},
        "routed": {"seconds": 1.0, "runs": 1},
        "bgp_scale": {"nodes": 5, "runs": 1, "steady": 1.0},
        "docker_engine": {"runs": 1, "ports": 3},
    },
}


def runner(section: str) -> Callable[..., dict[str, Any]]:
    """The section's run(); imported late so one broken module fails only its section."""
    module = {"scale": "scale", "dual_stack": "dual_stack", "publish": "publish",
              "runtimes": "cni_netavark",
              "dns": "dns_qps", "dataplane": "dataplane", "offload": "dataplane_vm", "soak": "soak",
              "convergence": "convergence", "cluster_scale": "cluster_scale",
              "overlay": "overlay", "routed": "routed", "bgp_scale": "bgp_scale",
              "docker_engine": "docker_engine"}[section]
    run: Callable[..., dict[str, Any]] = __import__(module).run
    return run


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def measure(mode: str, only: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {
        "mode": mode,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.machine(),
        "versions": machine.versions(),
        "sections": {},
    }
    for section, kwargs in SIZES[mode].items():
        if only and section not in only:
            continue
        progress(f"== {section}")
        start = time.monotonic()
        try:
            data = runner(section)(**kwargs, progress=progress)
            data["error"] = data.get("error")
        except Exception as exc:  # the page says so; the other sections still run
            traceback.print_exc()
            data = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        data["elapsed_s"] = time.monotonic() - start
        data["sizes"] = kwargs
        result["sections"][section] = data
        progress(f"   {section} took {data['elapsed_s']:.0f} s"
                 + (f"; FAILED: {data['error']}" if data["error"] else ""))
    result["elapsed_s"] = time.monotonic() - started
    return result


def remeasured(result: dict[str, Any]) -> dict[str, str]:
    """Section -> when it was last re-measured by `--only` since the full run (an older page
    kept one date for the last re-measure's sections)."""
    again = result.get("remeasured") or {}
    if "sections" in again:
        return dict.fromkeys(again["sections"], again["date"])
    return dict(again)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Run every benchmark beside the peers and write docs/benchmarks.md.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes: under 3 minutes")
    mode.add_argument("--tiny", action="store_true",
                      help="tiny sizes, for the test suite (figures mean nothing)")
    mode.add_argument("--render-only", action="store_true",
                      help="re-render the page from OUT/benchmarks.json, measure nothing")
    parser.add_argument("--out", type=Path, default=DOCS, help="directory (default docs/)")
    parser.add_argument("--only", action="append", choices=list(SIZES["full"]), default=[],
                        help="run only this section (repeatable)")
    args = parser.parse_args()
    # SIGTERM unwinds like an exception, so every sandbox's finally block removes what it made
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data_file = args.out / "benchmarks.json"
    if args.render_only:
        result = json.loads(data_file.read_text())
    else:
        if os.geteuid() != 0:
            print("benchmarks need root (they make network namespaces)", file=sys.stderr)
            return 2
        chosen = "quick" if args.quick else "tiny" if args.tiny else "full"
        result = measure(chosen, args.only)
        if args.only and data_file.exists():  # the other sections stay as they were measured
            earlier = json.loads(data_file.read_text())
            if earlier.get("mode") == chosen:
                fresh = result["sections"]
                merged = {**earlier["sections"], **fresh}
                earlier["sections"] = {k: merged[k] for k in SIZES[chosen] if k in merged}
                earlier["remeasured"] = {**remeasured(earlier), **dict.fromkeys(
                    sorted(fresh), result["date"])}
                result = earlier
        args.out.mkdir(parents=True, exist_ok=True)
        data_file.write_text(json.dumps(result, separators=(",", ":")) + "\n")
    page = render.write(result, args.out)
    progress(f"wrote {page} (and {data_file.name}, plots in {page.with_suffix('')}/)")
    failed = [s for s, d in result["sections"].items() if d.get("error")]
    if failed:
        progress(f"sections that did not run: {', '.join(failed)} (reasons on the page)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
