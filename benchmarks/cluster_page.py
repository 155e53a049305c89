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
def seconds(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.1f}"


def scale_rows(runs: list[Json]) -> list[list[str]]:
    rows = []
    for r in runs:
        probe, watch, view = r["probe_ms"], r["received_ms"], r["propagation_ms"]
        rows.append([
            f"{r['nodes']:,}", seconds(r["wall_s"]["join"]),
            f"{ms(r['join_ms']['p50'])} / {ms(r['join_ms']['p99'])}", seconds(r["synced_s"]),
            f"{ms(probe['p50'])} / {ms(probe['p99'])}", f"{ms(watch['p50'])} / {ms(watch['p99'])}",
            f"{ms(view['p50'])} / {ms(view['p99'])} ({r['views']})", ms(r["host_work_ms"]),
            f"{seconds(r['kill']['gone_all_s'])} / {seconds(r['kill']['probe_s'])} "
            f"({seconds(r['kill']['since_renewal_s'])} after its last renewal)",
        ])
    return rows


def etcd_rows(runs: list[Json]) -> list[list[str]]:
    rows = []
    for r in runs:
        cpu, wall = r["etcd_cpu_s"], r["wall_s"]
        rows.append([f"{r['nodes']:,}", *(f"{cpu[p]:.1f} s ({cpu[p] / wall[p]:.0%})"
                                          for p in ("join", "views", "changes", "kill")),
                     f"{r['rss_mb']:.0f} / {r['hwm_mb']:.0f}", f"{r['db_mb']:.1f}",
                     f"{sum(r['sim_cpu_s'].values()):.0f} s"])
    return rows


def render_cluster_scale(page: Page, data: Json, images: Path) -> None:
    runs = data["runs"]
    page.add(
        "Simulated nodes running netbay's cluster code (Membership, SubnetLeases, ClusterView "
        f"with a recording data plane) against one etcd member (etcd-server {data['etcd']}) on "
        f"loopback, a fresh one per size; TTL {data['ttl_s']} s, {data['join_workers']} nodes "
        f"joining at once, {data['changes']} changes (alternately a new node joining and an "
        "existing node claiming its first block of a second network), then one node killed. "
        f"Every node watches the record; up to {data['max_views']} of them run a full view in "
        "the simulation's one process, and two more views run in processes of their own, as "
        "on a real host (*probe*). Propagation: from the start of the claim (which reads, "
        "then writes one transaction) to the probe's peer list showing it, to each node's "
        "watch receiving the event, and to each in-process view's list. The simulation's "
        "nodes share one Python process, one gRPC connection and this machine's 2 CPUs with "
        "etcd: its watch and view figures queue behind each other (an upper bound that grows "
        "with N for the simulation's sake); a real host sees about the probe's figure, its "
        "own work per change being the *host work* column (the state update and its peer "
        "lists rebuilt at N nodes). etcd's load is the real one but for the listings: N lease "
        "pairs renewed every TTL/3, N watchers.",
        f"![join time, propagation and etcd's CPU and memory against nodes]"
        f"({images.name}/cluster_scale.png)")
    page.add(table(["nodes", "join all, s", "join per node p50 / p99 ms", "views listed, s",
                    "probe p50 / p99 ms", "N watches p50 / p99 ms",
                    "in-process views p50 / p99 ms (views)", "host work ms",
                    "killed → gone: every view / probe, s"], scale_rows(runs)))
    page.add("etcd's CPU in each phase (its share of the phase's wall time), its memory at the "
             "end, and the simulation's own CPU:",
             table(["nodes", "join", "views listing", "changes", "kill (mostly renewals)",
                    "RSS / peak MB", "db MB", "simulation CPU"], etcd_rows(runs)))
    if max(r["nodes"] for r in runs) < ISSUE_SIZE:
        page.add(f"**{ISSUE_SIZE:,} nodes not measured**: in one Python process the "
                 "simulation could not keep that many nodes' leases renewed at a 15 s TTL "
                 "(their one event loop fell behind, renewals timed out, leases expired and "
                 "nodes registered again), so it would have measured itself; it needs the nodes "
                 "spread over several processes or machines.")
    lost = sum(r["missing"] + r["unreceived"] + r["kill"]["missing"] for r in runs)
    if lost:
        page.add(f"**{lost} view(s) or watch(es) never showed a change** within the time "
                 "allowed; the figures above leave them out.")
    scale_targets(page, data)


def scale_targets(page: Page, data: Json) -> None:
    for r in data["runs"]:
        p99 = r["probe_ms"]["p99"]
        page.target(f"cluster: one change to a node's view, p99, {r['nodes']:,} nodes (probe)",
                    f"<= {PROPAGATION_TARGET_MS / 1000:.0f} s", f"{ms(p99)} ms",
                    p99 is not None and p99 <= PROPAGATION_TARGET_MS)
        gone, limit = r["kill"]["gone_all_s"], r["kill"]["ttl_s"] + KILL_MARGIN_S
        page.target(f"cluster: node killed → gone from every view, {r['nodes']:,} nodes",
                    f"<= TTL + {KILL_MARGIN_S:.0f} s ({limit:.0f} s)", f"{seconds(gone)} s",
                    gone == gone and gone <= limit)


def plot_cluster_scale(data: Json, path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = data["runs"]
    x = [r["nodes"] for r in runs]
    fig, (join, spread, load) = plt.subplots(1, 3, figsize=(14, 4.2))
    join.plot(x, [r["wall_s"]["join"] for r in runs], marker="o", label="all nodes joined, s")
    join.plot(x, [r["synced_s"] for r in runs], marker="o", label="views listed, s")
    for key, label in (("probe_ms", "probe (own process)"), ("received_ms", "every watch"),
                       ("propagation_ms", "in-process views")):
        spread.plot(x, [r[key]["p99"] for r in runs], marker="o", label=label)
    spread.axhline(PROPAGATION_TARGET_MS, color="red", linestyle="--", linewidth=0.8,
                   label="target")
    total = [sum(r["etcd_cpu_s"].values()) / sum(r["wall_s"].values()) * 100 for r in runs]
    load.plot(x, total, marker="o", label="etcd CPU, % of one CPU (whole run)")
    load.plot(x, [r["hwm_mb"] for r in runs], marker="s", label="etcd peak RSS, MB")
    for ax, title in ((join, "join"), (spread, "one change, p99 ms"), (load, "etcd")):
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
        "path; no nftables on any path. Ratios: the median of each run's ratio.",
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
