"""The convergence section of docs/benchmarks.md (render.py calls it): container start to the
first reply from another node, a node's join to its reachability from all others, a killed
node's routes gone everywhere; and its plot. Pure rendering of convergence.py's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from render import Page, ms, table, verdict

Json = dict[str, Any]
REACH_TARGET_MS = 1000.0
KILL_MARGIN_S = 2.0  # over the TTL
BACKENDS = {"vxlan": "VXLAN", "host-gw": "host-gw"}
PROBE_LABELS = {"early": "from before `netbay run`", "late": "from run's return"}
# an early probe's reply this much later after run returned than a late one's: it waited for
# the kernel's ARP retry
ARP_RETRY_LAG_MS = 100.0


def quantile_cells(figures: Json, unit: str = "ms") -> list[str]:
    if unit == "s":
        return [f"{figures[q]:.2f}" for q in ("p50", "p99", "max")]
    return [ms(figures[q]) for q in ("p50", "p99", "max")]


def starts_table(data: Json) -> str:
    rows = []
    for backend, label in BACKENDS.items():
        entry = data["starts"][backend]
        for probe, how in PROBE_LABELS.items():
            figures = entry[probe]
            rows.append([f"{label} ({entry['node']} to {entry['from']})", how,
                         *quantile_cells(figures["first_reply_ms"]),
                         ms(figures["run_ms"]["p50"]), ms(figures["run_ms"]["p99"]),
                         ms(figures["after_run_ms"]["p50"]), ms(figures["after_run_ms"]["p99"]),
                         str(figures["first_reply_ms"]["lost"])])
    return table(["path", "probed", "first reply p50 ms", "p99 ms", "max ms",
                  "`netbay run` p50 ms", "p99 ms", "reply after run returned p50 ms",
                  "p99 ms", "no reply"], rows)


def joins_table(data: Json) -> str:
    joins = data["joins"]
    rows = [[label, *quantile_cells(joins[key])] for key, label in (
        ("join_ms", "`netbay cluster join` (the command)"),
        ("from_join_ms", "join issued to reachable from every node"),
        ("after_container_ms", "container exists to reachable from every node"),
        ("leave_gone_ms", "`cluster leave` issued to its route gone everywhere"))]
    return table(["", "p50 ms", "p99 ms", "max ms"], rows)


def kills_table(data: Json) -> str:
    kills = data["kills"]
    ttl = kills["ttl_s"]
    rows = [[str(number), s["victim"], s["block"], f"{s['gone_s']:.2f}",
             f"{s['gone_s'] - ttl:+.2f}", f"{s['back_s']:.2f}"]
            for number, s in enumerate(kills["samples"], 1)]
    gone, back = kills["gone_s"], kills["back_s"]
    rows.append(["p50 / p99", "", "", f"{gone['p50']:.2f} / {gone['p99']:.2f}",
                 f"{gone['p50'] - ttl:+.2f} / {gone['p99'] - ttl:+.2f}",
                 f"{back['p50']:.2f} / {back['p99']:.2f}"])
    return table(["round", "killed", "its block", "routes gone everywhere s", "vs TTL s",
                  "back after restart s"], rows)


def arp_note(data: Json) -> str | None:
    """What the early probes waited for, when it shows."""
    lags = {label: [data["starts"][backend][probe]["after_run_ms"]["p50"] for probe in
                    PROBE_LABELS] for backend, label in BACKENDS.items()}
    if min(early - late for early, late in lags.values()) < ARP_RETRY_LAG_MS:
        return None
    return ("Once `netbay run` had returned, the first reply came after "
            + ", ".join(f"{early:.0f} ms probed early, {late:.1f} ms probed late ({label})"
                        for label, (early, late) in lags.items())
            + " (medians). The early echoes reached the node's bridge before the container "
            "was there: the bridge's ARP entry for the address was INCOMPLETE when the "
            "container came (`ip neigh` on the node shows it), and the kernel asks again only "
            "after retrans_time (1 s), so early replies cluster just above 1 s from the first "
            "echo whatever run took. The route and the container were ready when run "
            "returned; the rest is the kernel's neighbour timer, which netbay could cut by "
            "announcing the container's address on attach (a gratuitous ARP, or the bridge's "
            "neighbour entry set).")


def tables(page: Page, data: Json) -> None:
    """The three tables, what they show, and the targets."""
    starts = data["starts"]
    count = starts["vxlan"]["early"]["first_reply_ms"]["count"]
    page.add(f"**A container started on node A, the first reply from h1** ({count} starts "
             "each way and path, interleaved):", starts_table(data))
    note = arp_note(data)
    if note:
        page.add(note)
    joins = data["joins"]
    first = joins["samples"][0]
    page.add(f"**A node joins** ({joins['node']}, {len(joins['samples'])} rounds; the first "
             "its first join ever, then after `cluster leave`): reachable means the first "
             "echo reply from every other node's container to its container. In round 1 the "
             f"container was reachable {ms(first['after_container_ms'])} ms after it "
             "existed.", joins_table(data))
    ttl = data["kills"]["ttl_s"]
    page.add(f"**A node killed** (SIGKILL to its netbayd; TTL {ttl} s; flannel's lease "
             "is 24 h): from the kill until no other node's `ip route show proto 57` shows "
             "its block (polled every 50 ms), and after the daemon's restart until every "
             "other node routes to it again. The lease lapses TTL after the node's last "
             f"renewal (every {ttl / 3:.1f} s), so a kill late in a renewal period shows under "
             "TTL.", kills_table(data))
    targets(page, data)


def targets(page: Page, data: Json) -> None:
    for backend, label in BACKENDS.items():
        p99 = data["starts"][backend]["early"]["first_reply_ms"]["p99"]
        page.target(f"convergence: container start to first reply, {label}, p99",
                    "<= 1 s", f"{p99:.0f} ms", p99 <= REACH_TARGET_MS)
    joined = data["joins"]["after_container_ms"]["p99"]
    page.target("convergence: node joins, reachable from all others after its container "
                "exists, p99", "<= 1 s", f"{joined:.0f} ms", joined <= REACH_TARGET_MS)
    kills = data["kills"]
    worst, goal = kills["gone_s"]["max"], kills["ttl_s"] + KILL_MARGIN_S
    page.target("convergence: node killed, its routes gone everywhere (worst)",
                f"<= TTL + 2 s ({goal:.0f} s)", f"{worst:.2f} s", worst <= goal)


def render(page: Page, data: Json, images: Path) -> None:
    hosts = ", ".join(f"{name} {h['address']} (segment {h['segment']})"
                      for name, h in data["hosts"].items())
    page.add(
        f"Real daemons on the multi-host harness (tests/cluster.py): {hosts}, segments a and "
        "b joined by a router, a 3-member etcd; an overlay network with backend auto "
        "(host-gw on a segment, VXLAN across the router); every node joined with "
        f"`--ttl {data['ttl_s']}`. Probes: an ICMP echo every millisecond from a container "
        "until the first reply, timed on the monotonic clock every namespace shares. What "
        "each figure measures exactly: benchmarks/convergence.py.",
        f"![convergence: starts, joins, kills]({images.name}/convergence.png)")
    tables(page, data)


def text(data: Json) -> str:
    """The section's tables and targets without the page around them (convergence.py)."""
    page = Page()
    tables(page, data)
    page.add(*(f"{what}: {figure} (target {goal}): {verdict(ok)}"
               for what, goal, figure, ok in page.targets))
    return "\n\n".join(page.parts)


def plot(data: Json, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (starts, joins, kills) = plt.subplots(1, 3, figsize=(14, 4.3))
    series = [(f"{label}, {probe}", [s["first_reply_ms"] for s in data["starts"][backend][
        probe]["samples"] if s["first_reply_ms"] is not None])
        for backend, label in BACKENDS.items() for probe in PROBE_LABELS]
    starts.boxplot([values for _, values in series], showfliers=True)
    starts.set_xticks(range(1, len(series) + 1), [name for name, _ in series], fontsize=8)
    starts.axhline(REACH_TARGET_MS, color="red", linestyle="--", linewidth=0.8,
                   label="target p99")
    starts.set_ylabel("ms from `netbay run` issued")
    starts.set_title("container start: first reply from h1")
    rounds = range(1, len(data["joins"]["samples"]) + 1)
    for key, label in (("from_join_ms", "from the join"),
                       ("after_container_ms", "after its container exists")):
        joins.plot(rounds, [s[key] for s in data["joins"]["samples"]], marker="o", label=label)
    joins.axhline(REACH_TARGET_MS, color="red", linestyle="--", linewidth=0.8, label="target")
    joins.xaxis.set_major_locator(MaxNLocator(integer=True))
    joins.set_xlabel("round")
    joins.set_ylabel("ms")
    joins.set_title("node joins: reachable from every node")
    samples = data["kills"]["samples"]
    ttl = data["kills"]["ttl_s"]
    kills.bar([f"{n} ({s['victim']})" for n, s in enumerate(samples, 1)],
              [s["gone_s"] for s in samples], color="#4a7ab5")
    kills.axhline(ttl, color="grey", linestyle=":", label=f"TTL {ttl} s")
    kills.axhline(ttl + KILL_MARGIN_S, color="red", linestyle="--", linewidth=0.8,
                  label="target TTL + 2 s")
    kills.set_ylabel("s from SIGKILL")
    kills.set_title("node killed: its routes gone everywhere")
    for ax in (starts, joins, kills):
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
