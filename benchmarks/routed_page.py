"""The routed section of docs/benchmarks.md (render.py calls it): routed networks' throughput
beside plain routing, a VXLAN pair made by hand and the overlay, its targets and its plot.
Pure rendering of routed.py's figures."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render import Page, median, table

Json = dict[str, Any]
SETUPS = {"lan": "one LAN", "cross": "two subnets"}
COLOURS = {"netbay routed": "#4a7ab5", "by hand (floor)": "#5a9e5a",
           "netbay overlay": "#e08a3c", "underlay (context)": "#b8b8b8"}


@dataclass(frozen=True)
class Shown:
    label: str  # in the table and the plot
    short: str  # in ratios and targets
    kind: str  # a key of COLOURS


PATHS = {
    "lan_underlay": Shown("underlay: node to node", "the underlay", "underlay (context)"),
    "lan_routed": Shown("netbay routed (BGP's route to the block)", "routed",
                        "netbay routed"),
    "lan_plain": Shown("plain routing by hand: veths, static routes", "plain routing",
                       "by hand (floor)"),
    "lan_plain_tunnel_mtu": Shown("plain routing by hand at the tunnel's MTU (1450)",
                                  "plain routing at MTU 1450", "by hand (floor)"),
    "lan_overlay_hostgw": Shown("netbay overlay, host-gw (bridge)", "overlay host-gw",
                                "netbay overlay"),
    "lan_overlay_vxlan": Shown("netbay overlay, VXLAN (bridge)", "overlay VXLAN",
                               "netbay overlay"),
    "lan_routed_fw": Shown("netbay routed, netbay's firewall loaded (fast path)",
                           "routed with its firewall", "netbay routed"),
    "cross_underlay": Shown("underlay: node to node through the router", "the underlay",
                            "underlay (context)"),
    "cross_routed": Shown("netbay routed (VXLAN to the other subnet)", "routed",
                          "netbay routed"),
    "cross_vxlan_pair": Shown("by hand: veths, static routes, a VXLAN pair",
                              "a VXLAN pair by hand", "by hand (floor)"),
    "cross_overlay_vxlan": Shown("netbay overlay, VXLAN (bridge)", "overlay VXLAN",
                                 "netbay overlay"),
}
# (ours, theirs): at least this share of theirs
# (routed with its firewall / plain routing is context: the firewall is every network
# type's, and its fast path, flowtables, issue 18's; see firewall_note)
TARGETS = {("lan_routed", "lan_plain"): 0.97,
           ("cross_routed", "cross_vxlan_pair"): 0.95}
CLAIMS = (("lan_routed", "lan_overlay_hostgw"), ("lan_routed", "lan_overlay_vxlan"),
          ("cross_routed", "cross_overlay_vxlan"))


def setup_of(path: str) -> str:
    return SETUPS[path.split("_", 1)[0]]


def run_ratios(through: Json, ours: str, theirs: str) -> list[float]:
    gbps = through["gbps"]
    return [a / b for a, b in zip(gbps[ours], gbps[theirs], strict=True)]


def middle_half(values: Sequence[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles (of one value: it, twice)."""
    if len(values) < 2:
        return values[0], values[0]
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return quartiles[0], quartiles[2]


def name_of(ours: str, theirs: str) -> str:
    return f"{setup_of(ours)}: {PATHS[ours].short} / {PATHS[theirs].short}"


def mtu_is(data: Json) -> str:
    """Whose MTU the routed veths had in DATA's run (before 2026-12-03: the tunnel's)."""
    if data["routed_mtu"] < data["underlay_mtu"]:
        return "the tunnel's"
    return ("the underlay's; what goes into the tunnel is fitted by the node: TCP's MSS "
            "clamped by netbay's firewall, else the path MTU the tunnel device tells")


def description(data: Json) -> str:
    through = data["throughput"]
    return (
        "Two worlds of two nodes each, every node a namespace. *One LAN*: the overlay "
        "section's two hosts on one veth (MTU 1500), each with its default route via the other. "
        "*Two subnets*: nodes 198.18.1.11/24 and 198.18.2.13/24 with a router namespace "
        "between, as the cluster harness has h1 and h3. On each node, netbay's routed share as "
        "the agent and the routed driver make it under the default encap=cross-subnet: the "
        "overlay plane's plan cut to its VXLAN part (plan/routed.routed_tunnels) through "
        "LinuxKernel.sync_overlay, the node's /26 held as a blackhole, one container attached "
        "by LinuxKernel.attach_routed (veth, no bridge, a /32, 169.254.1.1 by proxy ARP, MTU "
        f"{data['routed_mtu']}: {mtu_is(data)}, as on every veth of a cross-subnet network). On "
        "the LAN, the route to the other node's block is typed in as BIRD installs it "
        "(`BLOCK via NODE proto 12`; no BIRD runs: nothing of BGP is on the data path). The "
        "floors, by hand with iproute2: a veth from each node to a container namespace, no "
        "bridge (node end <subnet>.1/24, container end .2/24 with its default route via .1), "
        "and a static route to the other node's subnet: via that node on the LAN (MTU "
        f"{data['underlay_mtu']}); across, via the other end of a VXLAN pair (`ip link add "
        "vxp type vxlan id 3 local A remote B dev eth0 dstport 4789`, veths and pair at MTU "
        f"{data.get('tunnel_mtu', data['routed_mtu'])}). The overlay: the overlay section's "
        "netbay paths (bridge, "
        "veths, host-gw or VXLAN). iperf3, TCP, one stream, container to container, "
        f"{through['seconds']} s x {through['runs']} runs interleaved path by path (in "
        "reverse order every other run); no nftables on any path but the one marked "
        "firewall loaded (netbay's tables for a routed network on both nodes, in a third "
        "world of the same two nodes). One stream through veths is CPU-bound here, so "
        "throughput is the inverse of what a path costs per byte. Ratios: the median of "
        "each run's ratio (p25–p75 and min–max: of the runs').")


def measured(through: Json) -> dict[str, Shown]:
    """PATHS that THROUGH has (a run from before a path was added lacks it)."""
    return {key: shown for key, shown in PATHS.items() if key in through["gbps"]}


def targets(through: Json) -> dict[tuple[str, str], float]:
    return {pair: goal for pair, goal in TARGETS.items() if "/".join(pair) in through["ratios"]}


def paths_table(through: Json) -> str:
    gbps, medians = through["gbps"], through["median_gbps"]
    rows = []
    for key, shown in measured(through).items():
        floor = medians[f"{key.split('_', 1)[0]}_underlay"]
        rows.append([setup_of(key), shown.label, f"{median(gbps[key]) or 0:.2f}",
                     f"{min(gbps[key]):.2f}–{max(gbps[key]):.2f}",
                     f"{medians[key] / floor:.0%}" if floor else "-"])
    return table(["setup", "path", "Gbit/s (median)", "min–max", "of the underlay"], rows)


def ratios_table(through: Json) -> str:
    rows = []
    for name in through["ratios"]:
        ours, theirs = name.split("/")
        each = run_ratios(through, ours, theirs)
        low, high = middle_half(each)
        rows.append([name_of(ours, theirs), f"{through['ratios'][name]:.1%}",
                     f"{low:.1%}–{high:.1%}", f"{min(each):.1%}–{max(each):.1%}"])
    return table(["ratio", "median of the runs' ratios", "p25–p75", "min–max"], rows)


def noise(through: Json) -> str | None:
    """Which targets the middle half of the runs' ratios straddles: their verdict is this
    run's noise as much as netbay's cost."""
    straddled = []
    for (ours, theirs), goal in targets(through).items():
        low, high = middle_half(run_ratios(through, ours, theirs))
        if low < goal < high:
            straddled.append(f"{name_of(ours, theirs)} ({low:.1%}–{high:.1%} around "
                             f"{goal:.0%})")
    if not straddled:
        return None
    return ("**Within the noise**: the middle half of the runs' ratios straddles the target "
            "for " + "; ".join(straddled) + ". The runs' spread is the machine's load "
            "(other work on its CPUs during the run), which no ratio of paths measured apart "
            "cancels; re-measure on a quiet machine to tell.")


def claim(through: Json) -> str:
    """The user's "more efficient" (no VXLAN to unpack on one LAN, no bridge), measured."""
    parts = [f"{through['ratios'][f'{ours}/{theirs}']:.1%} of {PATHS[theirs].short} "
             f"on {setup_of(ours)}" for ours, theirs in CLAIMS]
    return ("Routed against the overlay on the same nodes (the claim that routing is the more "
            "efficient, measured as throughput): routed carries " + "; ".join(parts) + ".")


def firewall_note(through: Json) -> str | None:
    """What the firewall row is (context, not the issue's target) and where its cost goes."""
    if "lan_routed_fw/lan_plain" not in through["ratios"]:
        return None
    return ("**The firewall row is context.** The issue's target holds the routed path against "
            "plain routing; netbay's tables are the same for every network type, and on this "
            "kernel every packet of a forwarded flow passes their hooks (about 8% of the "
            "path's CPU here, of which about 2% is the hooks being there at all: docs/design.md, "
            "\"A routed network's own traffic stays tracked\"). Where the kernel has "
            "flowtables, offloaded flows skip them; that fast path is issue 18's.")


def render(page: Page, data: Json, images: Path) -> None:
    through = data["throughput"]
    page.add(description(data), f"![routed throughput per path]({images.name}/routed.png)",
             paths_table(through), ratios_table(through), claim(through))
    for note in (firewall_note(through), noise(through)):
        if note:
            page.add(note)
    for (ours, theirs), goal in targets(through).items():
        value = through["ratios"][f"{ours}/{theirs}"]
        what = "" if PATHS[ours].short == "routed" else f", {PATHS[ours].short}"
        page.target(f"routed throughput, {setup_of(ours)}{what}, vs {PATHS[theirs].short}",
                    f">= {goal:.0%} of the hand-made", f"{value:.1%}", value >= goal)


def plot(data: Json, path: Path) -> None:
    """Per setup, a bar per path: the median, min-max whiskers, coloured by kind."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    gbps = data["throughput"]["gbps"]
    fig, axes = plt.subplots(1, len(SETUPS), figsize=(13, 3.6), sharex=True)
    for ax, prefix in zip(axes, SETUPS, strict=True):
        keys = [k for k in measured(data["throughput"]) if k.startswith(f"{prefix}_")
                and gbps[k]]
        mids = [median(gbps[k]) or 0.0 for k in keys]
        ax.barh([PATHS[k].label for k in keys], mids,
                color=[COLOURS[PATHS[k].kind] for k in keys],
                xerr=[[m - min(gbps[k]) for m, k in zip(mids, keys, strict=True)],
                      [max(gbps[k]) - m for m, k in zip(mids, keys, strict=True)]], capsize=3)
        ax.invert_yaxis()
        ax.set_title(SETUPS[prefix])
        ax.set_xlabel("Gbit/s (median; bars: min-max)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="y", labelsize=8)
    fig.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], fontsize=8,
               loc="lower center", ncol=len(COLOURS))
    fig.suptitle("iperf3 TCP throughput, routed vs by hand vs the overlay")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
