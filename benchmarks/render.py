"""docs/benchmarks.md and its PNG plots, from the report's results (report.py). Pure rendering:
it measures nothing, so a page can be re-rendered from benchmarks.json.
"""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cold_start
import dataplane
import scale


# --- formatting ------------------------------------------------------------------------------
def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ms(value: float | None, digits: int | None = None) -> str:
    """Milliseconds with sensible precision (2 decimals under 10, 1 under 100, else none)."""
    if value is None or value != value:
        return "-"
    if digits is None:
        digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:,.{digits}f}"


def ratio(theirs: float | None, ours: float | None) -> str:
    if not theirs or not ours or theirs != theirs or ours != ours:
        return "-"
    return f"**{theirs / ours:.1f}x**"


def verdict(ok: bool | None) -> str:
    """None: a figure shown beside the targets, not one (its section says why)."""
    return "context" if ok is None else "met" if ok else "**MISSED**"


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


class Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.targets: list[tuple[str, str, str, bool | None]] = []  # what, target, figure, met

    def add(self, *text: str) -> None:
        self.parts.extend(text)

    def target(self, what: str, goal: str, figure: str, ok: bool | None) -> None:
        self.targets.append((what, goal, figure, ok))


# --- sections --------------------------------------------------------------------------------
def render_scale(page: Page, data: dict[str, Any], images: Path) -> None:
    count = data["count"]
    marks = scale.checkpoints(count)
    systems = data["systems"]
    page.add(
        f"Each system in its own namespace standing in for a host, with one bridge network "
        f"growing from 0 to {count} containers, then shrinking back in reverse; one system "
        "at a time, into the same set of empty namespaces (netbay's library and CLI into "
        "netbay's own containers), nothing deleted until the end: run side by side, the "
        "systems slowed each other through the kernel's shared work (a first run had netbay's "
        "library at 10 ms with 1,000 containers), and the kernel frees deleted namespaces "
        "slowly (~10 a second), in the background of whatever runs next. A system whose "
        "attach time passed "
        f"{data['budget_s']:.0f} s would stop growing there. Cells: median ms of the "
        "operations that brought the network to that many containers (up to 50 of them); "
        "growth: median of the last tenth over the first tenth. N=1 is each system's first "
        "operation: netbay's daemon-backed entry points then also wait, once, for the DNS "
        "server that creating the network started (~80 ms).",
        f"![attach and detach latency against containers on the network]({images.name}/scale.png)",
    )
    for op in ("attach", "detach"):
        rows = []
        for entry in systems.values():
            samples = entry[f"{op}_ms"]
            if not samples:
                rows.append([entry["label"], *(["-"] * len(marks)), "-",
                             f"not run: {entry['error']}"])
                continue
            cells = [scale.summary(samples, m) for m in marks]
            g = scale.growth(samples)
            last = scale.summary(samples, len(samples))
            spread = f"{ms(last['p25'])}–{ms(last['p75'])}" if last else "-"
            note = entry["error"] or entry.get("note") or (
                f"stopped at {entry['reached']} (budget)" if entry["reached"] < count else "")
            rows.append([entry["label"], *(ms(c["median"]) if c else "-" for c in cells),
                         spread, f"{g:.2f}x" if g else "-", note])
        page.add(f"**{op.capitalize()}**, median ms with N containers on the network (p25–p75: "
                 "of the last window the system reached):",
                 table(["system", *(f"N={m}" for m in marks), "p25–p75", "growth", "note"],
                       rows))
    rows = []
    for ours, theirs in scale.PAIRS:
        a, b = systems.get(ours), systems.get(theirs)
        if not a or not b:
            continue
        for op in ("attach", "detach"):
            cells = []
            for m in marks:
                x, y = scale.summary(a[f"{op}_ms"], m), scale.summary(b[f"{op}_ms"], m)
                cells.append(ratio(y["median"], x["median"]) if x and y else "-")
            rows.append([f"{b['label']} / {a['label']}", op, *cells])
    page.add("Peer / netbay (how many times faster netbay is; both exec'd once per operation, "
             "as runtimes do):", table(["pair", "op", *(f"N={m}" for m in marks)], rows))
    lib = systems.get("library", {})
    floor = systems.get("floor", {}).get("attach_ms", [])
    if lib.get("attach_ms") and len(floor) >= 10:
        tenth = len(floor) // 10
        first, last = median(floor[:tenth]) or 0, median(floor[-tenth:]) or 0
        mine = lib["attach_ms"]
        start, end = median(mine[:tenth]) or 0, median(mine[-tenth:]) or 0
        page.add(
            f"The kernel floor (the attach's netlink requests alone) went from {first:.2f} to "
            f"{last:.2f} ms between the first and last tenth ({last / first:.2f}x), netbay's "
            f"library from {start:.2f} to {end:.2f} ms: the kernel's own work grows with the "
            "ports already on the bridge; netbay's share (the difference) went from "
            f"{start - first:.2f} to {end - last:.2f} ms.")
        page.add(*scale.explain(data))
    if lib.get("attach_ms"):
        attach, detach = lib["attach_ms"], lib["detach_ms"]
        g = scale.growth(attach) or float("nan")
        page.target("library attach, median", "<= 5 ms", f"{median(attach):.2f} ms",
                    (median(attach) or 99) <= 5)
        page.target(f"library attach growth over {len(attach)} containers", "<= 1.25x",
                    f"{g:.2f}x", g <= 1.25)
        if detach:
            page.target("library detach, median", "<= 5 ms", f"{median(detach):.2f} ms",
                        (median(detach) or 99) <= 5)


def render_publish(page: Page, data: dict[str, Any], images: Path) -> None:
    pub = data["publish"]
    page.add(
        "Publishing N ports on one container, `-p A-B:A-B`: netbay's attach of such a "
        "container (veth, address, route and the firewall for its ports: what a netavark setup "
        "does) vs netavark 1.4's setup with one range mapping (as podman passes it) and with N "
        "single mappings (up to 100). *publishing alone*: netbay's attach with the ports "
        f"minus one without. Medians of {data['runs']} run(s).",
        f"![publish time against ports]({images.name}/publish.png)",
    )
    if pub["netavark_error"]:
        page.add(f"netavark not run: {pub['netavark_error']}.")
    rows = [[str(r["ports"]), ms(r["netbay_total_ms"]), ms(r["netbay_ms"]),
             ms(r["netavark_range_ms"]), ratio(r["netavark_range_ms"], r["netbay_total_ms"]),
             ms(r["netavark_singles_ms"]), ratio(r["netavark_singles_ms"], r["netbay_total_ms"])]
            for r in pub["rows"]]
    page.add(table(["ports", "netbay attach ms", "publishing alone ms", "netavark range ms",
                    "ratio", "netavark singles ms", "ratio"], rows))
    last = pub["rows"][-1]
    page.target(f"publish {last['ports']} ports", "<= 50 ms (1,000 ports)",
                f"{last['netbay_ms']:.1f} ms", last["netbay_ms"] <= 50)
    c = data["connect"]
    r = c["many_ms"]["median"] / c["few_ms"]["median"]
    page.add(
        f"TCP connect + first byte from a LAN namespace to a published port, {c['samples']} "
        f"connections, with 1 port published vs {c['many']:,} (nftables maps: the lookup does "
        "not grow):",
        table(["ports published", "median ms", "p99 ms"], [
            [str(c["few"]), ms(c["few_ms"]["median"], 3), ms(c["few_ms"]["p99"], 3)],
            [f"{c['many']:,}", ms(c["many_ms"]["median"], 3), ms(c["many_ms"]["p99"], 3)]]),
    )
    page.target(f"connect latency, {c['many']:,} vs 1 port published", "<= 1.10x",
                f"{r:.2f}x", r <= 1.10)
    ad = data["attach_one_port"]
    rows = [[name, ms(f["attach_ms"]), ms(f["detach_ms"])] for name, f in ad["systems"].items()]
    rows += [[name, "-", f"not run: {why}"] for name, why in ad["errors"].items()]
    page.add(f"Attach and detach of a container with one published port ({ad['count']} "
             "containers, medians):", table(["system", "attach ms", "detach ms"], rows))


RUNTIME_PAIRS = (
    ("CNI ADD", "netbay ADD", "chain ADD", 3.0),
    ("CNI DEL", "netbay DEL", "chain DEL", 5.0),
    ("netavark setup", "netbay setup", "netavark setup", 2.0),
    ("netavark teardown", "netbay teardown", "netavark teardown", 2.0),
)


def render_runtimes(page: Page, data: dict[str, Any], images: Path) -> None:
    times = data["times"]
    page.add(
        f"One container with one port mapping, {data['runs']} interleaved iterations, a daemon "
        "already running and one other container attached on each side. netbay's CNI plugin vs "
        "the reference chain bridge + host-local + portmap + firewall; netbay's "
        "netavark-compatible executable vs netavark 1.4.")
    rows = []
    for label, ours, theirs, goal in RUNTIME_PAIRS:
        a, b = median(times[ours]), median(times[theirs])
        rows.append([label, ms(a), ms(b), ratio(b, a), f">= {goal:.0f}x"])
        if a and b:
            page.target(f"{label} vs the peer", f">= {goal:.0f}x faster", f"{b / a:.1f}x",
                        b / a >= goal)
    page.add(table(["operation", "netbay ms", "peer ms", "peer / netbay", "target"], rows))
    page.add("Start-up alone:", table(["what", "median ms"], [
        [label, ms(median(values))] for label, values in data["startup"].items()]))
    if "first" in data:
        render_first_operation(page, data)


def render_first_operation(page: Page, data: dict[str, Any]) -> None:
    """The first operation after boot: the target with netbayd started at boot, as
    `netbay daemon install` sets it up; with no netbayd running, context (design.md)."""
    first, rows = data["first"], []
    for label, ours, theirs in (("first CNI ADD", "netbay CNI ADD", "chain ADD"),
                                ("first netavark setup", "netbay netavark setup",
                                 "netavark setup")):
        cold, peer = median(first[ours]), median(first[theirs])
        up = median(first.get(f"{ours}{cold_start.UP}") or [])
        if up is None:  # a page from before the netbayd-up rows: the cold one was the target
            rows.append([label, ms(cold), ms(peer), ratio(peer, cold), "no slower"])
            page.target(f"{label} on a fresh host vs the peer's", "no slower",
                        f"{peer / cold:.2f}x", peer >= cold)
            continue
        rows.append([f"{label} after boot, netbayd started at boot", ms(up), ms(peer),
                     ratio(peer, up), "no slower"])
        rows.append([f"{label}, no netbayd running (the plugin starts it)", ms(cold),
                     ms(peer), ratio(peer, cold), "(context)"])
        page.target(f"{label} after boot (netbayd started at boot) vs the peer's",
                    "no slower", f"{peer / up:.2f}x", peer >= up)
        page.target(f"{label} with no netbayd running (the plugin starts it) vs the peer's",
                    "context", f"{peer / cold:.2f}x", None)
    page.add(f"The first operation on a fresh host, {data['first_rounds']} rounds, medians, "
             "against the peer's first operation on a namespace where it never ran "
             "(benchmarks/cold_start.py); the operation makes the network. After boot: "
             "netbayd serving an empty state root, as on a host whose netbayd starts at boot "
             "(`netbay daemon install`, README), the way dockerd and containerd run. With no "
             "netbayd running, the plugin starts it and waits for it: context, since most of "
             "that is CPython importing the daemon (docs/design.md).",
             table(["operation", "netbay ms", "peer ms", "peer / netbay", "target"], rows))


def render_dns(page: Page, data: dict[str, Any], images: Path) -> None:
    page.add(
        f"dnsperf from a container asks for {data['names']} container names (A) in a loop; the "
        "servers answer on the network's gateway in turn. Saturated: dnsperf's default (up to "
        "100 queries in flight); p99 with every answer logged (-v); fixed: "
        f"{data['rate']:,} queries/s. Both warmed up first, then each phase against one and at "
        "once the other (order alternating); median of the rounds.")
    if data["aardvark_error"]:
        page.add(f"aardvark-dns not run: {data['aardvark_error']}.")
    if data.get("load"):
        page.add("Load average (1 min) at the start and end: "
                 + " and ".join(f"{x:.1f}" for x in data["load"]) + " (2 cores, shared)."
                 + (f" {data['note']}" if data.get("note") else ""))
    med: dict[str, dict[str, float]] = {}
    for server in ("netbay", "aardvark"):
        mine = [r for r in data["rounds"] if r["server"] == server]
        if mine:
            med[server] = {k: statistics.median(r[k] for r in mine)
                           for k in ("qps", "sat_p99", "fixed_p99", "hwm_mb", "lost")}
    rows = [[name, f"{m['qps']:,.0f}", ms(m["sat_p99"], 2), ms(m["fixed_p99"], 3),
             f"{m['hwm_mb']:.1f}", f"{m['lost']:.0f}"] for name, m in med.items()]
    page.add(table(["server", "queries/s", "p99 ms, saturated", f"p99 ms at {data['rate']:,}/s",
                    "peak RSS MB", "lost"], rows))
    if "netbay" in med and "aardvark" in med:
        ours, theirs = med["netbay"], med["aardvark"]
        page.add(f"netbay / aardvark-dns: {ours['qps'] / theirs['qps']:.2f}x the queries per "
                 f"second; p99 saturated {ours['sat_p99']:.2f} vs {theirs['sat_p99']:.2f} ms.")
        page.target("DNS queries/s vs aardvark-dns", ">= 1.5x",
                    f"{ours['qps'] / theirs['qps']:.2f}x", ours["qps"] >= 1.5 * theirs["qps"])
        page.target("DNS p99 (saturated) vs aardvark-dns", "no worse",
                    f"{ours['sat_p99']:.2f} vs {theirs['sat_p99']:.2f} ms",
                    ours["sat_p99"] <= theirs["sat_p99"])
        page.target(f"DNS p99 at {data['rate']:,}/s vs aardvark-dns", "no worse",
                    f"{ours['fixed_p99']:.3f} vs {theirs['fixed_p99']:.3f} ms",
                    ours["fixed_p99"] <= theirs["fixed_p99"])
    if "netbay" in med:
        page.target("DNS server peak RSS", "<= 40 MB", f"{med['netbay']['hwm_mb']:.1f} MB",
                    med["netbay"]["hwm_mb"] <= 40)


# The first marks, against the veth pair: context since issue 18 holds these paths against the
# floors that leave out the kernel's own cost (the plain bridge, plain routing). A bridged path
# has two veth hops and a bridge, the pair one hop: the plain bridge alone is at ~82% of it.
VETH_MARKS = {"bridge": 0.95, "dnat": 0.90}


def render_fast_path(page: Page, data: dict[str, Any]) -> None:
    """The fast path's targets (issue 18): each netbay path over its floor of the same run;
    the IPv6 ratios beside them are context, not targets, and so are the NAT paths on a
    kernel without flowtables (the offload section holds their target)."""
    labels = {p["key"]: p["label"] for p in data["paths"]}
    no_flowtable = data.get("flowtable") is False  # None: a page from before it was recorded
    rows = []
    for ours, floor, goal in dataplane.RATIOS:
        each = (data.get("ratios") or {}).get(f"{ours}/{floor}") or []
        if not each or ours not in labels or floor not in labels:
            continue  # a page from before the IPv6 paths has no such ratio
        mid = statistics.median(each)
        unoffloaded = no_flowtable and ours in dataplane.OFFLOADED
        context = (ours, floor, goal) in dataplane.IPV6_RATIOS or unoffloaded
        rows.append([f"{labels[ours]} / {labels[floor]}", f"{mid:.1%}",
                     f"{min(each):.1%}–{max(each):.1%}",
                     f"context (~ {goal:.0%})" if context else f">= {goal:.0%}"])
        what = f"{labels[ours]}, vs {labels[floor].split(': ', 1)[-1]}"
        if unoffloaded:
            page.target(f"throughput without a flowtable (this kernel has none), {what}",
                        f"context (~ {goal:.0%})", f"{mid:.1%}", None)
        elif not context:
            page.target(f"throughput, {what}", f">= {goal:.0%}", f"{mid:.1%}", mid >= goal)
    if rows:
        page.add("Held against the floor of the same run (the median of each run's ratio): "
                 "netbay's bridge against the plain bridge, the NAT paths against plain "
                 "routing through a third namespace with no rules. The IPv6 rows are context, "
                 "not targets: each IPv6 path against its IPv4 twin, the IPv6 NAT paths "
                 "against plain IPv6 routing."
                 + (" This kernel has no flowtables, so its NAT paths go through conntrack "
                    "and the hooks packet by packet: context here; their target is held "
                    "with the flowtable, in the offload section." if no_flowtable else ""),
                 table(["netbay / floor", "median of the runs' ratios", "min–max", "target"],
                       rows))


def render_dataplane(page: Page, data: dict[str, Any], images: Path) -> None:
    page.add(
        f"iperf3, TCP, one stream, {data['seconds']:.0f} s per measurement, {data['runs']} "
        "run(s) interleaved path by path, in reverse order every other run; Gbit/s "
        "received. The raw veth pair between two namespaces is the floor of the kernel path "
        "(of an IPv6 path: the pair over IPv6).",
        f"![throughput per path]({images.name}/dataplane.png)")
    paths = data["paths"]
    floors = {p["key"]: median(p["gbps"]) for p in paths if p["key"] in ("veth", "veth6")}
    floor = floors.get("veth")
    rows = []
    for path in paths:
        mid = median(path["gbps"])
        if mid is None:
            rows.append([path["label"], "-", "-", "-", f"not run: {path['error']}"])
            continue
        of = floors.get(dataplane.floor_of(path["key"]))
        share = mid / of if of else None
        goal = VETH_MARKS.get(path["key"])
        rows.append([path["label"], f"{mid:.2f}", f"{min(path['gbps']):.2f}–"
                     f"{max(path['gbps']):.2f}", f"{share:.0%}" if share else "-",
                     f"context (~ {goal:.0%} of veth)" if goal else ""])
        if goal and share is not None:
            page.target(f"throughput, {path['label']}, of the veth pair",
                        f"context (~ {goal:.0%})", f"{share:.0%}", None)
    plain = next((median(p["gbps"]) for p in paths if p["key"] == "plain_bridge"), None)
    ours = next((median(p["gbps"]) for p in paths if p["key"] == "bridge"), None)
    if plain and ours and floor:
        page.add(f"The kernel's own bridge path (a plain Linux bridge, no rules) ran at "
                 f"{plain / floor:.0%} of the veth pair in this run, netbay's bridge at "
                 f"{ours / plain:.0%} of the plain bridge: the veth floor has one veth hop, "
                 "every bridge path two and a bridge. Run-to-run spread on this machine is "
                 "about ±10% (min–max column), so differences below that are noise.")
    page.add(table(["path", "Gbit/s (median)", "min–max", "of veth (IPv6: veth6)", "target"],
                   rows))
    render_fast_path(page, data)
    rps = data.get("rps") or {}
    if rps.get("error"):
        page.add(f"RPS not measured: {rps['error']}.")
    elif rps:
        rows = []
        for state in ("off", "on"):
            r = rps[state]
            shares = [statistics.median(run[cpu] for run in r["share"])
                      for cpu in range(len(r["share"][0]))] if r["share"] else []
            rows.append([f"RPS {state}", f"`{r.get('rps_cpus')}`",
                         f"{median(r['gbps']) or 0:.2f}",
                         " / ".join(f"{s:.0%}" for s in shares),
                         f"{median(r['rps_ipis']) or 0:,.0f}"])
        page.add(
            f"**RPS.** A container receiving {rps['flows']} TCP flows (iperf3 -P "
            f"{rps['flows']}, one thread) from a neighbour on the same bridge, on a network "
            f"without RPS and on one with `-o rps={rps['setting']}` ({rps['cpus']} CPUs). "
            "Receive softirq work per CPU from /proc/net/softnet_stat (packets processed by "
            "each CPU over the run; machine-wide). RFS also needs the global "
            "net.core.rps_sock_flow_entries, which only the root namespace can set: here it "
            f"was {rps.get('rps_sock_flow_entries')}.",
            table(["", "rps_cpus of eth0", "Gbit/s", "packets processed per CPU (CPU0 / CPU1 "
                   "...)", "RPS IPIs"], rows))


# --- plots ------------------------------------------------------------------------------------
def rolling(values: Sequence[float], width: int) -> list[float]:
    return [statistics.median(values[max(0, i - width + 1):i + 1]) for i in range(len(values))]


def plot_scale(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, op in zip(axes, ("attach", "detach"), strict=True):
        for entry in data["systems"].values():
            samples = entry[f"{op}_ms"]
            if not samples:
                continue
            x = list(range(1, len(samples) + 1))
            width = max(1, len(samples) // 40)
            line = ax.plot(x, rolling(samples, width), label=entry["label"], linewidth=1.6)
            ax.scatter(x, samples, s=2, alpha=0.15, color=line[0].get_color())
        ax.set_yscale("log")
        ax.set_xlabel("containers on the network")
        ax.set_title(f"{op} latency (rolling median; dots: every operation)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (log scale)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_publish(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = data["publish"]["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for key, label in (("netbay_total_ms", "netbay attach (-p A-B:A-B)"),
                       ("netavark_range_ms", "netavark, one range mapping"),
                       ("netavark_singles_ms", "netavark, N single mappings")):
        points = [(r["ports"], r[key]) for r in rows if r[key] is not None and r[key] > 0]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ports published on one container")
    ax.set_ylabel("ms (log scale)")
    ax.set_title("attach a container with N published ports")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_dataplane(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    paths = [p for p in data["paths"] if p["gbps"]]
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(paths) + 1.4))
    mids = [statistics.median(p["gbps"]) for p in paths]
    low = [m - min(p["gbps"]) for m, p in zip(mids, paths, strict=True)]
    high = [max(p["gbps"]) - m for m, p in zip(mids, paths, strict=True)]
    labels = [p["label"] for p in paths]
    ax.barh(labels, mids, xerr=[low, high], color="#4a7ab5", capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel("Gbit/s (median; bars: min-max)")
    ax.set_title("iperf3 TCP throughput per path")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_soak(page: Page, data: dict[str, Any], images: Path) -> None:
    import soak_page  # imported here: it imports this module

    soak_page.render(page, data, images)


def plot_soak(data: dict[str, Any], path: Path) -> None:
    import soak_page

    soak_page.plot(data, path)


def render_convergence(page: Page, data: dict[str, Any], images: Path) -> None:
    import convergence_page  # imported here: it imports this module

    convergence_page.render(page, data, images)


def plot_convergence(data: dict[str, Any], path: Path) -> None:
    import convergence_page

    convergence_page.plot(data, path)


def from_cluster_page(name: str) -> Callable[..., None]:
    return from_page("cluster_page", name)


def from_page(module: str, name: str) -> Callable[..., None]:
    """Function NAME of the page module MODULE, imported when called: it imports this one."""
    def call(*args: Any) -> None:
        getattr(importlib.import_module(module), name)(*args)

    return call


# --- the page ----------------------------------------------------------------------------------
TITLES = {
    "scale": "Attach and detach against containers on the network",
    "dual_stack": "Dual stack: attach beside IPv4 only",
    "publish": "Publishing ports",
    "runtimes": "CNI plugin and netavark backend start-up",
    "dns": "Embedded DNS",
    "dataplane": "Data plane and RPS",
    "offload": "Data plane: the flowtable offload",
    "soak": "Soak: what the daemon holds comes back",
    "convergence": "Convergence across hosts: overlay and routed",
    "cluster_scale": "Multi-host: the control plane at scale",
    "overlay": "Multi-host: the overlay's data plane",
    "routed": "Multi-host: routed networks' data plane",
    "bgp_scale": "BGP scale",
    "docker_engine": "The Docker engine: netbay's plugin vs Docker's bridge driver",
}
PLOTS = {"scale": plot_scale, "publish": plot_publish, "dataplane": plot_dataplane,
         "soak": plot_soak, "convergence": plot_convergence,
         "cluster_scale": from_cluster_page("plot_cluster_scale"),
         "overlay": from_cluster_page("plot_overlay"), "routed": from_page("routed_page", "plot"),
         "bgp_scale": from_page("bgp_scale_page", "plot")}
RENDERERS = {"scale": render_scale, "publish": render_publish, "runtimes": render_runtimes,
             "dns": render_dns, "dataplane": render_dataplane, "soak": render_soak,
             "convergence": render_convergence,
             "cluster_scale": from_cluster_page("render_cluster_scale"),
             "overlay": from_cluster_page("render_overlay"),
             "routed": from_page("routed_page", "render"),
             "bgp_scale": from_page("bgp_scale_page", "render"),
             "docker_engine": from_page("docker_engine", "render"),
             "offload": from_page("dataplane_vm", "render"),
             "dual_stack": from_page("dual_stack", "render")}


def write(result: dict[str, Any], out: Path) -> Path:
    """Write OUT/benchmarks.md and its plots in OUT/benchmarks/; return the page's path."""
    images = out / "benchmarks"
    images.mkdir(parents=True, exist_ok=True)
    page = Page()
    sections = result["sections"]
    for name, data in sections.items():
        page.add(f"## {TITLES[name]}")
        if data.get("error"):
            page.add(f"**Not measured**: {data['error']}")
            continue
        if name in PLOTS:
            try:
                PLOTS[name](data, images / f"{name}.png")
            except ImportError as exc:  # matplotlib: scripts/install.sh --bench
                page.add(f"(plot not drawn: {exc})")
        RENDERERS[name](page, data, images)
        page.add(f"*{data['elapsed_s']:.0f} s; sizes: "
                 + ", ".join(f"{k}={v}" for k, v in data["sizes"].items()) + "*")
    head = [
        "# netbay benchmarks",
        f"Measured {result['date']} by `./scripts/bench.sh"
        + ("" if result["mode"] == "full" else f" --{result['mode']}")
        + f"` in {result['elapsed_s'] / 60:.1f} minutes: netbay beside its peers on the same "
        "machine in the same run, every system in its own throwaway network namespaces. "
        "Absolute times depend on the machine; the ratios are what carries over. "
        "Raw samples: [benchmarks.json](benchmarks.json).",
    ]
    if result.get("remeasured"):
        again = result["remeasured"]  # section -> when (report.remeasured)
        head.append("Re-measured after a change (`report.py --only`): " + "; ".join(
            f"{section} {date}" for section, date in again.items()) + ".")
    if result["mode"] != "full":
        head.append(f"**This page came from a `--{result['mode']}` run: small sizes, few runs; "
                    "`./scripts/bench.sh` gives the real figures.**")
    head += ["## The machine", table(["", ""], ([k, v] for k, v in result["machine"].items())),
             "## Versions", table(["", "version"], (
                 [k, v if v else "**not installed** (scripts/install.sh --bench): its figures "
                  "are marked not run"] for k, v in result["versions"].items()))]
    if page.targets:
        held = [t for t in page.targets if t[3] is not None]
        missed = [t for t in held if not t[3]]
        head += ["## Targets", table(["what", "target", "measured", ""], (
            [what, goal, figure, verdict(ok)] for what, goal, figure, ok in page.targets)),
            f"{len(held) - len(missed)} of {len(held)} targets met"
            + (": " + "; ".join(t[0] for t in missed) + " missed." if missed else ".")]
    text = "\n\n".join([*head, *page.parts]) + "\n"
    path = out / "benchmarks.md"
    path.write_text(text)
    return path
