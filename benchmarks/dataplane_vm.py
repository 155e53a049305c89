"""The data-plane offload (issue 18): the NAT paths with and without netbay's flowtable against
plain routing, on a kernel that has flowtables. Not a test.

    .venv/bin/python benchmarks/dataplane_vm.py [--seconds 3] [--runs 5] [--native]

This machine's kernel has no flowtables, so by default the measurement runs in Debian's
stock kernel under QEMU (virtme-ng, as scripts/vm-tests.sh boots it; one boot), `--native`
runs it here. Paths, as benchmarks/dataplane.py builds them (iperf3, TCP, one stream):

  masquerade  a container to a server in the LAN namespace, out through the masquerade;
  dnat        the LAN namespace to a container's published port;
  routed      the floor: two veth hops routed by a third namespace with no nftables.

Each run measures the three with the offload on (the table as netbay makes it) and off (its
`flow add` rule deleted: the ruleset of a kernel without flowtables), the order of the two
alternating from run to run; the LAN is the host's default route there, so both directions
of both NAT flows are offloaded. Under TCG emulation absolute figures mean nothing, but
ratios within one run are fair: every path pays the same emulation. Figures: each run's
path / routed, their median.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from dataplane import (  # noqa: E402
    LAN_HOST,
    LAN_PEER,
    PORT,
    Target,
    World,
    build_lan,
    build_pair,
    build_routed,
    iperf3,
    kernel_has_flowtables,
)
from netbay import Host  # noqa: E402
from netbay.plan import firewall as fw  # noqa: E402
from sandbox import median, sandbox, sh  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VNG = ROOT / ".venv/bin/vng"
BRIDGE_NET = IPv4Network("10.135.0.0/24")
PATHS = ("masquerade", "dnat", "routed")
MODES = ("on", "off")


def set_offload(host: Host, on: bool) -> None:
    """The forward chain's `flow add` rule inserted (ON) or deleted."""
    listed = host.firewall_listing(f"chain {fw.INET} {fw.TABLE} forward")
    handles = [o["rule"]["handle"] for o in listed
               if "rule" in o and any("flow" in e for e in o["rule"]["expr"])]
    if on and not handles:
        host.firewall_apply(f"insert rule {fw.INET} {fw.TABLE} forward {fw.OFFLOAD}")
    for handle in handles if not on else []:
        host.firewall_apply(f"delete rule {fw.INET} {fw.TABLE} forward handle {handle}")


def measure(seconds: int, runs: int) -> dict[str, Any]:
    """Build the world once, then RUNS x (on, off) x PATHS iperf3 tests, interleaved."""
    gbps: dict[str, dict[str, list[float]]] = {m: {p: [] for p in PATHS} for m in MODES}
    with sandbox() as paths, Host(paths) as host:
        world = World(host, paths.root / "dataplane")
        world.directory.mkdir(parents=True, exist_ok=True)
        try:
            lan = build_lan(world)
            sh(f"ip route add default via {LAN_PEER}")  # the LAN is the uplink
            pair = build_pair(world, "offload", BRIDGE_NET, None, (f"{PORT}:{PORT}",))
            targets = {"masquerade": Target(lan, pair.client_ns, LAN_PEER, PORT + 2),
                       "dnat": Target(pair.server_ns, lan, LAN_HOST),
                       "routed": build_routed(world)}
            devices = sh(f"nft list flowtable {fw.INET} {fw.TABLE} {fw.FLOWTABLE}")
            for r in range(runs):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    set_offload(host, mode == "on")
                    for key in PATHS:
                        print(f"run {r + 1}/{runs} offload {mode}: {key}", flush=True)
                        gbps[mode][key].append(iperf3(targets[key], seconds))
        finally:
            world.close()
    return {"kernel": os.uname().release, "seconds": seconds, "runs": runs, "gbps": gbps,
            "flowtable": devices.strip(), "load": os.getloadavg()}


def ratios(result: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """mode -> path -> each run's path / routed (the same mode, the same run)."""
    out = {}
    for mode, paths in result["gbps"].items():
        out[mode] = {key: [a / b for a, b in zip(paths[key], paths["routed"], strict=True)]
                     for key in ("masquerade", "dnat")}
    return out


def print_table(result: dict[str, Any]) -> None:
    print(f"\n== offload, kernel {result['kernel']}: iperf3, 1 stream, {result['seconds']} s "
          f"x {result['runs']} runs (interleaved); load {result['load']}")
    each = ratios(result)
    print(f"{'path':<12} {'offload':<8} {'Gbit/s':>7} {'/ routed (median)':>18} {'min-max':>12}")
    for key in PATHS:
        for mode in MODES:
            values = result["gbps"][mode][key]
            ratio = each[mode].get(key, [])
            mid = f"{median(ratio) * 100:.0f}%" if ratio else "-"
            span = f"{min(ratio) * 100:.0f}-{max(ratio) * 100:.0f}%" if ratio else "-"
            print(f"{key:<12} {mode:<8} {median(values):>7.3f} {mid:>18} {span:>12}")


def stock_kernel() -> Path | None:
    """Debian's newest stock kernel image, the one scripts/vm-tests.sh boots."""
    found = sorted(Path("/boot").glob("vmlinuz-*-amd64"))
    return found[-1] if found else None


def in_vm(seconds: int, runs: int) -> dict[str, Any]:
    """This script's --inside run in one boot of the stock kernel (scripts/vm-tests.sh's
    recipe: ../shared/notes/kernel-vm.md); its JSON back through a shared directory."""
    kernel = stock_kernel()
    if kernel is None or not VNG.exists():
        raise SystemExit("no stock kernel or virtme-ng: scripts/vm-tests.sh --install")
    out = Path(tempfile.mkdtemp(prefix="netbay-offload-"))
    inner = (f"cd {shlex.quote(str(ROOT))} && PYTHONDONTWRITEBYTECODE=1 .venv/bin/python "
             f"benchmarks/dataplane_vm.py --inside {shlex.quote(str(out))} "
             f"--seconds {seconds} --runs {runs}")
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}"}
    subprocess.run(["timeout", "-k", "30", "3000", "vng", "--disable-kvm", "--force-9p",
                    "--run", str(kernel), "--user", "root", "--memory", "1G",
                    f"--rwdir={out}", "--exec", inner], stdin=subprocess.DEVNULL, env=env,
                   check=False)
    found = out / "offload.json"
    if not found.exists():
        raise SystemExit(f"the VM wrote no {found} (timeout, panic or a failure inside)")
    result: dict[str, Any] = json.loads(found.read_text())
    return result


def run(seconds: int = 3, runs: int = 5, progress: Any = print) -> dict[str, Any]:
    """report.py's section: here where the kernel has flowtables, else in the VM."""
    try:
        progress(f"offload: {runs} runs of {seconds} s, the NAT paths with and without it")
        native = kernel_has_flowtables()
        result = measure(seconds, runs) if native else in_vm(seconds, runs)
    except SystemExit as exc:
        return {"error": str(exc)}
    return {**result, "where": "here" if native else "Debian's stock kernel under QEMU (TCG)",
            "ratios": ratios(result), "error": None}


OFFLOAD_GOAL = 1.0  # issue 18: the NAT paths at least as fast as plain routing


def render(page: Any, data: dict[str, Any], images: Path) -> None:
    """This section of docs/benchmarks.md (render.py calls it; PAGE a render.Page)."""
    from render import table

    page.add(
        f"nftables flowtables (software offload, docs/design.md) on kernel {data['kernel']} "
        f"({data['where']}): iperf3, one stream, {data['seconds']} s, {data['runs']} runs "
        "with the offload rule on and off alternating; each run's path over plain routing "
        "through a third namespace with no rules, medians. This machine's own kernel has no "
        "flowtables; under emulation only the ratios within the run mean anything.")
    rows = []
    for key, label in (("masquerade", "container to the LAN (masquerade)"),
                       ("dnat", "LAN to a published port (DNAT)")):
        cells = [label]
        for mode in MODES:
            each = data["ratios"][mode][key]
            cells.append(f"{median(each):.1%} ({min(each):.0%}–{max(each):.0%})")
        rows.append(cells)
        mid = median(data["ratios"]["on"][key])
        page.target(f"throughput with the flowtable, {label}, vs plain routing",
                    f">= {OFFLOAD_GOAL:.0%}", f"{mid:.1%}", mid >= OFFLOAD_GOAL)
    page.add(table(["path / plain routing", "offload on", "offload off"], rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 -t")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--native", action="store_true", help="here, not in the VM")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # in the guest
    args = parser.parse_args()
    if args.inside is not None:
        result = measure(args.seconds, args.runs)
        (args.inside / "offload.json").write_text(json.dumps(result))
    else:
        result = measure(args.seconds, args.runs) if args.native else in_vm(args.seconds,
                                                                              args.runs)
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
