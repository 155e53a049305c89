"""The multi-host sections of docs/benchmarks.md (render.py calls them): the control plane at
scale (cluster_scale.py) and the overlay's data plane (overlay.py), their tables, targets and
plots. Pure rendering of those modules' figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from render import Page, median, ms, plot_dataplane, table

Json = dict[str, Any]
PROPAGATION_TARGET_MS = 1000.0
ISSUE_SIZE = 1000  # the nodes issue 14 asks for
KILL_MARGIN_S = 2.0  # gone from every view within the TTL and this
THROUGHPUT_TARGET = 0.95  # of the hand-made equivalent
OVERLAY_PATHS = {
    "underlay": "underlay: host to host over the veth (floor)",
    "netbay_vxlan": "netbay VXLAN, container to container",
    "hand_vxlan": "VXLAN by hand with iproute2 (flannel's objects)",
    "vxlan_pair": "context: bare VXLAN pair, host to host",
    "netbay_hostgw": "netbay host-gw, container to container",
    "plain_routing": "plain routing by hand (bridges, static route)",
}
OVERLAY_PAIRS = (("netbay_vxlan", "hand_vxlan"), ("netbay_hostgw", "plain_routing"))


# --- the control plane at scale ------------------------------------------------------------
PHASES = {"join": "join", "views": "views listing", "changes": "changes",
          "kill": "kill (mostly renewals)"}


def seconds(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.1f}"


def pair(quantiles: Json) -> str:
    return f"{ms(quantiles['p50'])} / {ms(quantiles['p99'])}"


def scale_rows(runs: list[Json]) -> list[list[str]]:
    return [[f"{r['nodes']:,}", f"{r['hosts']} + {r['workers']}", seconds(r["joined_s"]),
             pair(r["join_ms"]), seconds(r["synced_s"]), pair(r["view_ms"]),
             pair(r["received_ms"]), ms(r["host_work_ms"]),
             f"{seconds(r['kill']['gone_all_s'])} ({seconds(r['kill']['since_renewal_s'])} "
             "after its last renewal)"] for r in runs]


def etcd_rows(runs: list[Json]) -> list[list[str]]:
    rows = []
    for r in runs:
        cpu, rss, wall = r["etcd_cpu_s"], r["etcd_rss_mb"], r["wall_s"]
        rows.append([f"{r['nodes']:,}", *(f"{cpu[p]:.1f} s ({cpu[p] / wall[p]:.0%}), "
                                          f"{rss[p]:.0f} MB" for p in PHASES),
                     f"{r['hwm_mb']:.0f}", f"{r['db_mb']:.1f}",
                     f"{sum(r['sim_cpu_s'].values()):.0f} s ({r['sim_cpu_s']['join']:.0f} s)"])
    return rows


def failed_renewals(part: Json) -> int:
    return int(part["failed"] + part["expired"])


def renewal_rows(runs: list[Json]) -> list[list[str]]:
    rows = []
    for r in runs:
        for part, label in (("join", "during the join"), ("after", "after it")):
            figures = r["renewals"][part]
            gap = figures["longest_gap_s"]
            rows.append([f"{r['nodes']:,}", label, f"{figures['count']:,}",
                         str(failed_renewals(figures)), pair(figures["latency_ms"]),
                         seconds(gap) if gap else "-"])
    return rows


def render_cluster_scale(page: Page, data: Json, images: Path) -> None:
    runs, ttl = data["runs"], data["ttl_s"]
    page.add(
        "Simulated nodes running netbay's cluster code (Membership renewing its two leases at "
        "a third of the TTL, SubnetLeases, ClusterView with a recording data plane) against "
        f"one etcd member (etcd-server {data['etcd']}) on loopback, a fresh one per size; TTL "
        f"{ttl} s. {data['hosts']} of the nodes are *hosts*: each alone in a process with its "
        "view, as a daemon. The others run up to "
        f"{data['nodes_per_worker']} to a process (*packed*, at nice {data['niceness']}, so "
        "that their work, which N machines would share, does not slow etcd and the hosts), "
        "each process with its own etcd client, each node with a bare watch of the record. "
        f"{data['join_workers']} nodes join at once over the packed processes, the hosts with "
        f"them; {data['changes']} changes follow (alternately a new node joining and an "
        "existing node claiming its first block of a second network), then one node killed. "
        "A change: from the start of the claim (which reads, then writes one transaction) to "
        "each host's peer list showing it and to each of the N watches receiving the event. "
        "The *host work* is one host's own work on a change at that size, alone (the state "
        "update and its peer lists rebuilt). What differs from N real hosts: N/"
        f"{data['nodes_per_worker']} connections to etcd rather than N, the hosts' listings "
        "only at the start, and every process on this machine's 2 CPUs with etcd (the joins, "
        "each listing the nodes and the blocks, are bound by them).",
        f"![join time, propagation and etcd's CPU and memory against nodes]"
        f"({images.name}/cluster_scale.png)")
    page.add(table(["nodes", "processes (hosts + packed)", "join all, s",
                    "join per node p50 / p99 ms", "views listed, s",
                    "one change → host views p50 / p99 ms", "→ N watches p50 / p99 ms",
                    "host work ms", "killed → gone from every host's view, s"],
                   scale_rows(runs)))
    page.add("etcd's CPU in each phase (its share of the phase's wall time) and its RSS at the "
             "phase's end, its peak RSS, and the simulation's own CPU (all its processes; in "
             "brackets, the join's):",
             table(["nodes", *PHASES.values(), "peak RSS MB", "db MB", "simulation CPU"],
                   etcd_rows(runs)))
    page.add("Lease renewals (two leases a node, each every TTL/3), during the join and after "
             "it (to the end of the kill): how many, how many failed or found their lease "
             "expired (a node then lost and registered again), their latency, and the "
             f"longest time between two confirmed renewals of one lease (TTL/3 = {ttl / 3:.0f} "
             f"s: kept up; {ttl} s: expired):",
             table(["nodes", "", "renewals", "failed or expired", "latency p50 / p99 ms",
                    "longest between two, s"], renewal_rows(runs)))
    scale_notes(page, runs)
    scale_targets(page, data)


def scale_notes(page: Page, runs: list[Json]) -> None:
    if max(r["nodes"] for r in runs) < ISSUE_SIZE:
        sizes = ", ".join(f"{r['nodes']:,}" for r in runs)
        page.add(f"**{ISSUE_SIZE:,} nodes not measured in this run** (sizes: {sizes}).")
    lost = sum(r["unsynced"] + r["unconnected"] + r["missing"] + r["unreceived"]
               + r["kill"]["missing"] + r["kill"]["unreceived"] for r in runs)
    if lost:
        page.add(f"**{lost} view(s) or watch(es) never listed, streamed or showed a change** "
                 "within the time allowed; the figures above leave them out.")


def scale_targets(page: Page, data: Json) -> None:
    for r in data["runs"]:
        p99 = r["view_ms"]["p99"]
        page.target(f"cluster: one change to a host's view, p99, {r['nodes']:,} nodes",
                    f"<= {PROPAGATION_TARGET_MS / 1000:.0f} s", f"{ms(p99)} ms",
                    p99 is not None and p99 <= PROPAGATION_TARGET_MS)
        gone, limit = r["kill"]["gone_all_s"], r["kill"]["ttl_s"] + KILL_MARGIN_S
        page.target(f"cluster: node killed → gone from every view, {r['nodes']:,} nodes",
                    f"<= TTL + {KILL_MARGIN_S:.0f} s ({limit:.0f} s)", f"{seconds(gone)} s",
                    gone == gone and gone <= limit)
        failed = sum(failed_renewals(part) for part in r["renewals"].values())
        page.target(f"cluster: lease renewals failed or expired, {r['nodes']:,} nodes", "0",
                    f"{failed}", failed == 0)


def plot_cluster_scale(data: Json, path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = data["runs"]
    x = [r["nodes"] for r in runs]
    fig, (join, spread, cpu, memory) = plt.subplots(1, 4, figsize=(17, 4.2))
    join.plot(x, [r["joined_s"] for r in runs], marker="o", label="all nodes joined, s")
    join.plot(x, [r["join_ms"]["p99"] / 1000 for r in runs], marker="o",
              label="one node's join p99, s")
    join.plot(x, [r["synced_s"] for r in runs], marker="o", label="views listed, s")
    for key, label in (("view_ms", "host views"), ("received_ms", "every watch")):
        spread.plot(x, [r[key]["p99"] for r in runs], marker="o", label=label)
    spread.axhline(PROPAGATION_TARGET_MS, color="red", linestyle="--", linewidth=0.8,
                   label="target")
    for phase, label in PHASES.items():
        cpu.plot(x, [r["etcd_cpu_s"][phase] / r["wall_s"][phase] * 100 for r in runs],
                 marker="o", label=label)
        memory.plot(x, [r["etcd_rss_mb"][phase] for r in runs], marker="o",
                    label=f"after {label}")
    memory.plot(x, [r["hwm_mb"] for r in runs], marker="s", linestyle="--", label="peak")
    for ax, title in ((join, "join"), (spread, "one change, p99 ms"),
                      (cpu, "etcd CPU, % of one CPU"), (memory, "etcd RSS, MB")):
        ax.set_xlabel("nodes")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the overlay's data plane ---------------------------------------------------------------
def render_overlay(page: Page, data: Json, images: Path) -> None:
    page.add(
        "netbay's overlay data plane (plan/overlay.py through LinuxKernel.sync_overlay) in "
        "throwaway namespaces. Sync: PEERS peers programmed from empty (VXLAN: a neighbour, "
        "an FDB entry and an onlink route each; host-gw: a route each), a sync with nothing "
        "to change (median and least of 20), one peer back with a new address and VTEP MAC, "
        "every peer removed; ms, kernel writes in brackets.",
        table(["backend", "peers", "plan ms", "program ms", "no change ms (least)",
               "one change ms", "remove all ms"], [
            [s["backend"], f"{s['peers']:,}", ms(s["plan_ms"]),
             f"{ms(s['program_ms'])} [{s['program_writes']}]",
             f"{ms(s['no_change_ms'])} ({ms(s['no_change_min_ms'])})",
             f"{ms(s['one_change_ms'])} [{s['one_change_writes']}]",
             f"{ms(s['remove_all_ms'])} [{s['remove_all_writes']}]"] for s in data["sync"]]))
    through = data["throughput"]
    floor = through["median_gbps"]["underlay"]
    page.add(
        f"Throughput across two hosts (namespaces joined by a veth, MTU 1500), iperf3, TCP, "
        f"one stream, {through['seconds']} s x {through['runs']} runs interleaved path by "
        "path, in reverse order every other run; no nftables on any path. Ratios: the "
        "median of each run's ratio.",
        f"![overlay throughput per path]({images.name}/overlay.png)",
        table(["path", "Gbit/s (median)", "min–max", "of underlay"], [
            [label, f"{median(through['gbps'][key]) or 0:.2f}",
             f"{min(through['gbps'][key]):.2f}–{max(through['gbps'][key]):.2f}",
             f"{through['median_gbps'][key] / floor:.0%}" if floor else "-"]
            for key, label in OVERLAY_PATHS.items()]),
        table(["ratio", "median of the runs' ratios"],
              [[name, f"{value:.1%}"] for name, value in through["ratios"].items()]))
    for ours, theirs in OVERLAY_PAIRS:
        value = through["ratios"][f"{ours}/{theirs}"]
        page.target(f"overlay throughput, {OVERLAY_PATHS[ours].split(',')[0]} vs "
                    f"{OVERLAY_PATHS[theirs].split(' (')[0]}",
                    f">= {THROUGHPUT_TARGET:.0%} of the hand-made", f"{value:.1%}",
                    value >= THROUGHPUT_TARGET)


def plot_overlay(data: Json, path: Path) -> None:
    """The data plane's bars, one per overlay path."""
    gbps = data["throughput"]["gbps"]
    plot_dataplane({"paths": [{"label": label, "gbps": gbps[key]}
                              for key, label in OVERLAY_PATHS.items()]}, path)
